"""The run driver: plans the matrix, runs trials through an executor, commits
each record as it arrives (this process is the only writer), survives Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import secrets
import signal
import tempfile
import threading
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, TypedDict, cast

from agenteval import __version__
from agenteval.config import ProjectConfig, load_config
from agenteval.errors import (AgentEvalError, BadInputError, InterruptedRunError, RunFailedError, SandboxError,
                              ServerStartError)
from agenteval.models.base import AgentModel, ModelSpec, base_fingerprint
from agenteval.models.chat import ModelCallError, close_all_streams
from agenteval.models.registry import create_model
from agenteval.processes import owner_gone, this_process
from agenteval.records import FailureMode, Fingerprint, RunRecord, RunStatus, ServingRecord, TrialRecord, utcnow
from agenteval.runner.executor import IN_PROCESS, Executor, ExecutorRequest, check_executor_name, create_executor
from agenteval.runner.trial import TrialEnv, TrialInterrupted, TrialSpec, failed_record
from agenteval.sandbox.base import Sandbox
from agenteval.paths import DEFAULT_DB, REPORTS_DIR
from agenteval.store import Store
from agenteval.task import Task, expand_task_paths, load_task

if TYPE_CHECKING:
    from docker import DockerClient


class Budgets(TypedDict, total=False):
    """Command-line budgets that replace task.toml's [agent] values."""

    max_steps: int
    max_total_tokens: int
    timeout_sec: float


def budgets_from_flags(max_steps: int | None, max_tokens: int | None, timeout_sec: float | None) -> Budgets:
    """The budgets the command line gave (--max-steps, --max-tokens, --agent-timeout)."""
    budgets: Budgets = {}
    if max_steps is not None:
        budgets["max_steps"] = max_steps
    if max_tokens is not None:
        budgets["max_total_tokens"] = max_tokens
    if timeout_sec is not None:
        budgets["timeout_sec"] = timeout_sec
    return budgets


class StoredOptions(TypedDict):
    """RunOptions as recorded in runs.config, what --resume reads back."""

    task_paths: list[str]
    models: list[str]
    samples: int | None
    concurrency: int
    variants: list[str]
    config: str | None
    budgets: Budgets
    out: str
    executor: str
    ray_address: str | None
    allow_internet: bool
    pass_threshold: float | None
    ladder: dict[str, Any] | None


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for. ``None`` means not given: the default, or on --resume the resumed run's value."""

    task_paths: list[str]
    models: list[str]
    samples: int | None = None
    concurrency: int | None = None  # trials at once (default 1)
    variants: list[str] = field(default_factory=list)
    db: Path = DEFAULT_DB
    out: Path = REPORTS_DIR
    resume: str | None = None
    config: Path | None = None
    retry_errors: bool = False
    budgets: Budgets = field(default_factory=Budgets)
    executor: str | None = None  # 'local' (threads here, the default) or 'ray' (tasks on a Ray cluster)
    ray_address: str | None = None  # with executor='ray': HOST:PORT, ray://..., 'auto' or 'local'
    allow_internet: bool = False  # network for the tasks that allow it (Harbor's allow_internet); none otherwise
    pass_threshold: float | None = None  # reward protocol: passing reward, in place of the tasks' own (1)
    ladder: dict[str, Any] | None = None  # a ladder run's own options, what `agenteval ladder --resume` reads

    @property
    def jobs(self) -> int:
        return self.concurrency or 1

    @property
    def executor_name(self) -> str:
        return self.executor or "local"

    def to_config(self) -> StoredOptions:
        return {"task_paths": self.task_paths, "models": self.models, "samples": self.samples,
                "concurrency": self.jobs, "variants": self.variants,
                "config": str(self.config) if self.config else None, "budgets": self.budgets,
                "out": str(self.out), "executor": self.executor_name, "ray_address": self.ray_address,
                "allow_internet": self.allow_internet, "pass_threshold": self.pass_threshold, "ladder": self.ladder}

    def resumed(self, stored: Mapping[str, Any]) -> "RunOptions":
        """The options of the run being resumed, with every flag given now winning over its stored value."""
        cfg = cast(StoredOptions, {**self.to_config(), **stored})
        return dataclasses.replace(
            self, task_paths=cfg["task_paths"], models=cfg["models"], samples=cfg["samples"],
            variants=cfg["variants"], budgets=cfg["budgets"] or {},
            concurrency=self.concurrency if self.concurrency is not None else cfg["concurrency"],
            config=self.config or (Path(cfg["config"]) if cfg["config"] else None),
            executor=self.executor if self.executor is not None else cfg["executor"],
            ray_address=self.ray_address or cfg["ray_address"],
            allow_internet=self.allow_internet or bool(cfg["allow_internet"]),
            pass_threshold=self.pass_threshold if self.pass_threshold is not None else cfg["pass_threshold"],
            ladder=self.ladder or cfg["ladder"])


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
    run: RunRecord
    records: list[TrialRecord]
    report: Path | None
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


def with_budgets(task: Task, budgets: Budgets) -> Task:
    """The task with command-line budgets in place of task.toml's [agent] values."""
    if not budgets:
        return task
    agent = task.spec.agent.model_copy(update=dict(budgets))
    return dataclasses.replace(task, spec=task.spec.model_copy(update={"agent": agent}))


def with_run_settings(task: Task, opts: RunOptions) -> Task:
    """The task as this run runs it: budgets, the pass threshold, and network only where the task allows
    it and the run grants it (--allow-internet)."""
    task = with_budgets(task, opts.budgets)
    asked = task.spec.sandbox.internet
    sandbox = task.spec.sandbox.model_copy(update={"internet": asked and opts.allow_internet})
    verifier = task.spec.verifier
    if opts.pass_threshold is not None:
        verifier = verifier.model_copy(update={"pass_threshold": opts.pass_threshold})
    return dataclasses.replace(task, spec=task.spec.model_copy(update={"sandbox": sandbox, "verifier": verifier}),
                               internet_withheld=asked and not opts.allow_internet)


def warn_ignored_keys(tasks: list[Task], log: Callable[[str], None]) -> None:
    """One line naming every Harbor key agenteval does not use, with how many tasks set it."""
    counts: dict[str, int] = {}
    for task in tasks:
        for key in task.ignored_keys:
            counts[key] = counts.get(key, 0) + 1
    if counts:
        log("warning: Harbor task keys agenteval does not use (ignored): " +
            ", ".join(f"{k} ({n} task{'s' if n > 1 else ''})" for k, n in sorted(counts.items())))


def prepare(opts: RunOptions, log: Callable[[str], None]) -> RunPlan:
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
                log: Callable[[str], None] = print, executor: Executor | None = None) -> RunResult:
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
    log: Callable[[str], None]


def _execute(run_plan: RunPlan, sink: _Committer) -> RunResult:
    """Record the run, drive its trials model by model, render the report. The run always ends
    ``completed``, ``interrupted`` or ``failed``: Ctrl-C outside the trials raises
    InterruptedRunError, any other error RunFailedError, both with the run recorded as such."""
    opts, store, tasks, models = run_plan.opts, sink.store, run_plan.tasks, run_plan.models
    run_id = opts.resume or new_run_id()
    run = RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version=__version__,
                    models=list(models), tasks=[t.name for t in tasks],
                    samples=opts.samples or max(t.spec.samples for t in tasks),
                    concurrency=opts.jobs, config=dict(opts.to_config()), owner=this_process())
    if opts.resume:
        previous = store.run(run_id)
        if previous.status is RunStatus.running and previous.owner and owner_gone(previous.owner) is False:
            raise BadInputError(f"run {run_id} is still running (process {previous.owner}); wait for it, "
                                f"or stop it first")
        run = run.model_copy(update={"started_at": previous.started_at})
        if opts.retry_errors:  # after every check passed: nothing is lost to a typo
            n = store.forget_trials(opts.resume, "infra_error")
            sink.log(f"running {n} trials that ended in infra_error again")
    store.save_run(run)
    out_dir = opts.out / run_id
    try:
        interrupted, skipped = _run_trials(run_plan, sink, run_id, out_dir)
        store.finish_run(run_id, RunStatus.interrupted if interrupted else RunStatus.completed)
        from agenteval.report import render_run

        report = render_run(store, run_id, out_dir)
    except KeyboardInterrupt:  # outside the trials (a server starting, the report): nothing half-done
        store.finish_run(run_id, RunStatus.interrupted)
        raise InterruptedRunError(f"run {run_id} interrupted; every finished trial is kept; resume with: "
                                  f"{resume_command(opts, run_id)}") from None
    except Exception as e:
        raise mark_failed(store, run_id, out_dir, e, resume_command(opts, run_id)) from e
    return RunResult(run=store.run(run_id), records=store.trials(run_id), report=report,
                     interrupted=interrupted, skipped=skipped)


def resume_command(opts: RunOptions, run_id: str) -> str:
    return f"agenteval {'ladder' if opts.ladder else 'run'} --resume {run_id}"


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
            into[(model.spec.label, task.name)] = base_fingerprint(
                model.spec, docker_version=docker_version, image=images[task.name],
                image_id=image_ids[task.name], model_info=model.fingerprint_info(),
            ).model_copy(update={"network": "internet" if task.spec.sandbox.internet else "none"})

    return fingerprint


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
        server = model.server
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
    previous = _sigterm_as_interrupt()
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
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


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


def _sigterm_as_interrupt() -> "signal._HANDLER":
    """Let SIGTERM stop a run as Ctrl-C does (records kept, sandboxes removed); the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)
