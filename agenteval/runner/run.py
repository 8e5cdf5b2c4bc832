"""The run driver: plans the matrix, runs trials through an executor, commits
each record as it arrives (this process is the only writer), survives Ctrl-C.
A run always ends ``completed``, ``interrupted`` or ``failed``; what a command does with
a recorded run afterwards (its report) runs under the same rules (``after_run``).
"""

from __future__ import annotations

import os
import platform
import secrets
import signal
import socket
import tempfile
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, TypeVar

from agenteval import __version__
from agenteval.agent.solver import AgentModel
from agenteval.config import ProjectConfig, load_config
from agenteval.errors import (AgentEvalError, BadInputError, InterruptedRunError, RunFailedError, SandboxError,
                              ServerStartError)
from agenteval.logs import Log
from agenteval.models.base import ModelSpec
from agenteval.models.chat import ModelCallError, close_all_streams
from agenteval.processes import owner_gone, sigterm_as_interrupt, this_process
from agenteval.records import FailureMode, Fingerprint, RunRecord, RunStatus, ServingRecord, TrialRecord, utcnow
from agenteval.runner.executor import IN_PROCESS, Executor, ExecutorRequest, check_executor_name, create_executor
from agenteval.runner.model_registry import create_model
from agenteval.runner.options import RunOptions, with_run_settings
from agenteval.runner.trial import TrialEnv, TrialInterrupted, TrialSpec, failed_record
from agenteval.sandbox.base import Sandbox
from agenteval.serving.served import ServedModel
from agenteval.store import Store
from agenteval.task.folder import Task
from agenteval.task.loader import expand_task_paths, load_task

if TYPE_CHECKING:
    from docker import DockerClient


@dataclass(frozen=True)
class RunPlan:
    """Everything checked before any container starts: what runs, on what, where."""

    opts: RunOptions
    tasks: list[Task]
    models: dict[str, AgentModel]  # by label, in the order given
    client: "DockerClient | None"  # None where another executor runs the sandboxes
    images: dict[str, str]  # task name -> image tag
    config: ProjectConfig


@dataclass
class RunResult:
    """A run as it ended: its row, its trials, and the options it ran with (a resumed run's own)."""

    run: RunRecord
    records: list[TrialRecord]
    opts: RunOptions
    interrupted: bool = False
    skipped: int = 0


class RunObserver(Protocol):
    """What a progress display implements; every call comes from the driver thread."""

    def planned(self, total: int, skipped: int) -> None: ...

    def trial_done(self, record: TrialRecord) -> None: ...


class _Silent:
    def planned(self, total: int, skipped: int) -> None: ...

    def trial_done(self, record: TrialRecord) -> None: ...


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def plan(tasks: list[Task], models: list[ModelSpec], samples: int | None, variants: list[str]) -> list[TrialSpec]:
    """Every cell of models x tasks x variants x samples, in a stable order."""
    return [TrialSpec(task, variant, s, model)
            for model in models for task in tasks for variant in task.variants(variants or None)
            for s in range(samples or task.spec.samples)]


def warn_ignored_keys(tasks: list[Task], log: Log) -> None:
    """One line naming every Harbor key agenteval does not use, with how many tasks set it."""
    counts: dict[str, int] = {}
    for task in tasks:
        for key in task.ignored_keys:
            counts[key] = counts.get(key, 0) + 1
    if counts:
        log("warning: Harbor task keys agenteval does not use (ignored): " +
            ", ".join(f"{k} ({n} task{'s' if n > 1 else ''})" for k, n in sorted(counts.items())))


def prepare(opts: RunOptions, log: Log) -> RunPlan:
    """Validate everything a user can get wrong before any container starts."""
    if not opts.task_paths:
        raise BadInputError("no task given: agenteval run tasks/folder --model oracle")
    if not opts.models:
        raise BadInputError("no model given: add --model oracle (or provider:name[@url])")
    if opts.jobs < 1:
        raise BadInputError("--concurrency must be at least 1")
    check_executor_name(opts.executor_name)
    tasks = [with_run_settings(load_task(p), opts) for p in expand_task_paths(opts.task_paths)]
    warn_ignored_keys(tasks, log)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise BadInputError(f"two task folders share the name {max(names, key=names.count)!r}")
    config = load_config(opts.config)
    models: dict[str, AgentModel] = {}
    for text in opts.models:
        model = create_model(text, config)
        models[model.spec.label] = model
        for task in tasks:
            model.check_task(task)
    for task in tasks:
        task.variants(opts.variants or None)
    stray = [v for v in opts.variants if "/" in v and v.split("/", 1)[0] not in names]
    if stray:
        raise BadInputError(f"--variant {stray[0]!r} names no task of this run (tasks: {', '.join(names)})")

    from agenteval.sandbox.engine import connect
    from agenteval.sandbox.images import ensure_task_image, task_image_tag

    client = connect() if opts.executor_name in IN_PROCESS else None
    for model in models.values():  # slow checks last: engine installed, model file there (or built)
        model.preflight(log)
    if client is not None:
        images = {t.name: ensure_task_image(client, t.path, t.spec.sandbox, log) for t in tasks}
    else:  # the nodes build and hold the images; the tag names the content they must have
        images = {t.name: task_image_tag(t.path, t.spec.sandbox) for t in tasks}
    return RunPlan(opts, tasks, models, client, images, config)


def execute_run(opts: RunOptions, observer: RunObserver | None = None,
                log: Log = print, executor: Executor | None = None) -> RunResult:
    """Run every trial ``opts`` asks for (on --resume, those the run lacks) and record each; no
    report (a command that wants one renders it after, ``after_run``)."""
    observer = observer or _Silent()
    with Store(opts.db) as store:
        if opts.resume:
            opts = opts.resumed(store.run(opts.resume).config)
        run_plan = prepare(opts, log)
        executor = executor or create_executor(ExecutorRequest(
            name=opts.executor_name, concurrency=opts.jobs, address=opts.ray_address, tasks=tuple(run_plan.tasks),
            images=run_plan.images, models=run_plan.models, config=run_plan.config, log=log))
        try:
            return _execute(run_plan, _Committer(store, observer, executor, log))
        finally:
            executor.shutdown(cancel_pending=True)


@dataclass(frozen=True)
class _Committer:
    """Where finished trials go and what drives them: the one writer's side of a run."""

    store: Store
    observer: RunObserver
    executor: Executor
    log: Log


def _execute(run_plan: RunPlan, sink: _Committer) -> RunResult:
    """Record the run and drive its trials model by model. The run always ends ``completed``,
    ``interrupted`` or ``failed``: Ctrl-C outside the trials raises InterruptedRunError, any other
    error RunFailedError, both with the run recorded as such (``ended_as_recorded``)."""
    opts, store, tasks, models = run_plan.opts, sink.store, run_plan.tasks, run_plan.models
    run_id = opts.resume or new_run_id()
    run = RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version=__version__,
                    models=list(models), tasks=[t.name for t in tasks],
                    samples=opts.samples or max(t.spec.samples for t in tasks),
                    concurrency=opts.jobs, config=dict(opts.to_config()), owner=this_process())
    if opts.resume:
        previous = store.run(run_id)
        owner = previous.owner  # a ladder records its run first, then hands it over from this very process
        if previous.status is RunStatus.running and owner and owner != run.owner and owner_gone(owner) is False:
            raise BadInputError(f"run {run_id} is still running (process {previous.owner}); wait for it, "
                                f"or stop it first")
        run = run.model_copy(update={"started_at": previous.started_at})
        if opts.retry_errors:  # after every check passed: nothing is lost to a typo
            n = store.forget_trials(opts.resume, "infra_error")
            sink.log(f"running {n} trials that ended in infra_error again")
    store.save_run(run)
    with ended_as_recorded(store, opts, run_id):
        interrupted, skipped = _run_trials(run_plan, sink, run_id, opts.out / run_id)
        store.finish_run(run_id, RunStatus.interrupted if interrupted else RunStatus.completed)
    return RunResult(run=store.run(run_id), records=store.trials(run_id), opts=opts,
                     interrupted=interrupted, skipped=skipped)


@contextmanager
def ended_as_recorded(store: Store, opts: RunOptions, run_id: str) -> Iterator[None]:
    """Work on a recorded run (its trials, its report) that leaves it ``interrupted`` on Ctrl-C
    (InterruptedRunError: nothing is half-done) and ``failed`` on any other error (RunFailedError,
    ``mark_failed``); both messages say how to resume."""
    try:
        yield
    except KeyboardInterrupt:  # outside the trials (a server starting, the report): nothing half-done
        store.finish_run(run_id, RunStatus.interrupted)
        raise InterruptedRunError(f"run {run_id} interrupted; every finished trial is kept; resume with: "
                                  f"{opts.resume_command(run_id)}") from None
    except Exception as e:
        raise mark_failed(store, run_id, opts.out / run_id, e, opts.resume_command(run_id)) from e


_Done = TypeVar("_Done")


def after_run(result: RunResult, step: Callable[[Store, Path], _Done]) -> _Done:
    """``step(store, run folder)`` on a run that ended (a command's report of it), under the run's
    own rules (``ended_as_recorded``): an error there fails the run as one in its trials would."""
    run_id = result.run.run_id
    with Store(result.opts.db) as store, ended_as_recorded(store, result.opts, run_id):
        return step(store, result.opts.out / run_id)


def _run_trials(run_plan: RunPlan, sink: _Committer, run_id: str, out_dir: Path) -> tuple[bool, int]:
    """Every trial the run still lacks, model by model. (interrupted, trials already recorded)."""
    opts, tasks, models = run_plan.opts, run_plan.tasks, run_plan.models
    trials = plan(tasks, [m.spec for m in models.values()], opts.samples, opts.variants)
    done = sink.store.committed_keys(run_id)
    todo = [t for t in trials if t.key not in done]
    sink.observer.planned(len(todo), len(trials) - len(todo))
    env = TrialEnv(run_id=run_id, make_sandbox=_sandbox_factory(run_plan), models=models,
                   fingerprints={}, artifacts_root=out_dir / "artifacts")
    fingerprint = _fingerprinter(run_plan, env.fingerprints)
    interrupted = False
    try:
        for label, model in models.items():  # one model at a time: one server on the GPU
            group = [t for t in todo if t.model.label == label]
            if group:
                interrupted = _run_model(model, group, env, sink, fingerprint)
            if interrupted:
                break
    finally:
        sink.executor.shutdown(cancel_pending=True)
    return interrupted, len(trials) - len(todo)


def mark_failed(store: Store, run_id: str, out_dir: Path, error: BaseException, resume: str) -> RunFailedError:
    """Mark the run failed with ``error`` and say so in one line: the error, the file holding its
    traceback, the command that resumes the run."""
    line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    line = line if isinstance(error, AgentEvalError) and line else f"{type(error).__name__}: {line}".rstrip(": ")
    trace = "".join(traceback.format_exception(error))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "traceback.txt"
        path.write_text(trace)
    except OSError:  # the run's folder is what failed (a full disk, no permission): the temp folder
        with tempfile.NamedTemporaryFile("w", prefix=f"agenteval-{run_id}-", suffix="-traceback.txt",
                                         delete=False) as f:
            f.write(trace)
            path = Path(f.name)
    try:
        store.finish_run(run_id, RunStatus.failed, line)
        marked = ""
    except Exception as e:  # noqa: BLE001 - the store may be what failed; say so instead of hiding the first error
        marked = f" (and it could not be marked failed: {str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return RunFailedError(f"run {run_id} failed: {line}{marked}; traceback: {path}; resume with: {resume}",
                          run_id, str(path))


def _sandbox_factory(run_plan: RunPlan) -> Callable[[Task, dict[str, str]], Sandbox]:
    from agenteval.sandbox.docker import DockerSandbox

    client, images = run_plan.client, run_plan.images

    def make_sandbox(task: Task, labels: dict[str, str]) -> Sandbox:
        if client is None:
            raise SandboxError("this executor starts sandboxes on its own nodes, not in the driver")
        return DockerSandbox.for_spec(client, images[task.name], task.spec.sandbox, labels)

    return make_sandbox


def _fingerprinter(run_plan: RunPlan, into: dict[tuple[str, str], Fingerprint]) -> Callable[[AgentModel], None]:
    """Records a model's fingerprint for every task (after its server started: it reports what it serves)."""
    from agenteval.sandbox.engine import server_version

    client, images = run_plan.client, run_plan.images
    docker_version = server_version(client) if client is not None else None
    image_ids = {t.name: client.images.get(images[t.name]).id if client is not None else None
                 for t in run_plan.tasks}

    def fingerprint(model: AgentModel) -> None:
        for task in run_plan.tasks:
            into[(model.spec.label, task.name)] = _base_fingerprint(
                model.spec, docker_version=docker_version, image=images[task.name],
                image_id=image_ids[task.name], model_info=model.fingerprint_info(),
            ).model_copy(update={"network": "internet" if task.spec.sandbox.internet else "none"})

    return fingerprint


def _base_fingerprint(spec: ModelSpec, *, docker_version: str | None, image: str, image_id: str | None,
                      model_info: dict[str, object]) -> Fingerprint:
    return Fingerprint(agenteval_version=__version__, host=socket.gethostname(),
                       platform=platform.platform(), cpu_count=os.cpu_count(), model=spec.label,
                       provider=spec.provider, docker_version=docker_version, image=image, image_id=image_id,
                       model_info=model_info)


def _run_model(model: AgentModel, group: list[TrialSpec], env: TrialEnv, sink: _Committer,
               fingerprint: Callable[[AgentModel], None]) -> bool:
    """Serve one model (start its server, warm up), run its trials, stop. True when interrupted."""
    started, done_before = utcnow(), len(sink.store.committed_keys(env.run_id))
    try:
        with model.serving(sink.log):
            fingerprint(model)
            return _drive(group, env, sink)
    except (ServerStartError, ModelCallError) as e:
        sink.log(f"{model.spec.label}: {e}; its {len(group)} trials are recorded as infra_error")
        fingerprint(model)
        for spec in group:
            record = failed_record(spec, env, FailureMode.infra_error, f"model unavailable: {e}")
            sink.store.commit_trial(record)
            sink.observer.trial_done(record)
        return False
    finally:
        server = model.server if isinstance(model, ServedModel) else None
        if server is not None and server.load_s is not None:  # a server agenteval started and saw answer
            sink.store.commit_serving(ServingRecord(
                run_id=env.run_id, model=model.spec.label, started_at=started, stopped_at=utcnow(),
                load_s=server.load_s, peak_rss_bytes=server.peak_rss_bytes,
                trials=len(sink.store.committed_keys(env.run_id)) - done_before))


def _drive(todo: list[TrialSpec], env: TrialEnv, sink: _Committer) -> bool:
    """Submit trials and commit each as it finishes. Returns True when interrupted; any other error
    stops the trials still running (their sandboxes removed) and goes on up."""
    executor = sink.executor
    pending: set[Future[TrialRecord]] = {executor.submit(spec, env) for spec in todo}
    with sigterm_as_interrupt():
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in finished:
                    _commit(fut, sink)
            return False
        except KeyboardInterrupt:
            _stop_trials(pending, env, sink, commit=True)
            return True
        except BaseException:
            _stop_trials(pending, env, sink, commit=False)
            raise


def _stop_trials(pending: set["Future[TrialRecord]"], env: TrialEnv, sink: _Committer, commit: bool) -> None:
    """Cancel what has not started, cut what runs (sandboxes removed, model streams closed), and
    with ``commit`` record what finished meanwhile."""
    from agenteval.sandbox.docker import close_all_live

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
    try:
        env.cancel.set()
        for fut in pending:
            fut.cancel()
        close_all_live()
        close_all_streams()
        sink.executor.shutdown(cancel_pending=True)
        for fut in pending if commit else ():
            if fut.done() and not fut.cancelled():
                _commit(fut, sink)
        close_all_live()
    finally:
        signal.signal(signal.SIGINT, old)


def _commit(fut: "Future[TrialRecord]", sink: _Committer) -> None:
    try:
        record = fut.result()
    except TrialInterrupted:
        return  # cut short by Ctrl-C: not a result; --resume runs it again
    sink.store.commit_trial(record)
    sink.observer.trial_done(record)
