"""The run driver: plans the matrix, runs trials through an executor, commits
each record as it arrives (this process is the only writer), survives Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import secrets
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Protocol

from agenteval import __version__
from agenteval.config import ProjectConfig, load_config
from agenteval.errors import BadInputError, ServerStartError
from agenteval.models.base import AgentModel, ModelSpec, base_fingerprint
from agenteval.models.chat import ModelCallError, close_all_streams
from agenteval.models.registry import create_model
from agenteval.records import FailureMode, Fingerprint, RunRecord, TrialRecord, utcnow
from agenteval.runner.executor import IN_PROCESS, Executor, ExecutorRequest, check_executor_name, create_executor
from agenteval.runner.trial import TrialEnv, TrialInterrupted, TrialSpec, failed_record
from agenteval.sandbox.base import Sandbox
from agenteval.store import DEFAULT_DB, Store
from agenteval.task import Task, load_task


@dataclass
class RunOptions:
    task_paths: list[str]
    models: list[str]
    samples: int | None = None
    concurrency: int = 1
    variants: list[str] = field(default_factory=list)
    db: Path = DEFAULT_DB
    out: Path = Path("reports")
    resume: str | None = None
    config: Path | None = None
    retry_errors: bool = False
    budgets: dict[str, Any] = field(default_factory=dict)  # max_steps / max_total_tokens / timeout_sec
    executor: str = "local"  # 'local' (threads here) or 'ray' (tasks on a Ray cluster)
    ray_address: str | None = None  # with executor='ray': HOST:PORT, ray://..., 'auto' or 'local'

    def to_config(self) -> dict[str, Any]:
        return {"task_paths": self.task_paths, "models": self.models, "samples": self.samples,
                "concurrency": self.concurrency, "variants": self.variants,
                "config": str(self.config) if self.config else None, "budgets": self.budgets,
                "out": str(self.out), "executor": self.executor, "ray_address": self.ray_address}


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


def with_budgets(task: Task, budgets: dict[str, Any]) -> Task:
    """The task with command-line budgets in place of task.toml's [agent] values."""
    if not budgets:
        return task
    agent = task.spec.agent.model_copy(update=budgets)
    return dataclasses.replace(task, spec=task.spec.model_copy(update={"agent": agent}))


def prepare(opts: RunOptions, log: Callable[[str], None]
            ) -> tuple[list[Task], dict[str, AgentModel], Any, dict[str, str], ProjectConfig]:
    """Validate everything a user can get wrong before any container starts. Returns the
    tasks, models, Docker client (None where another executor runs the sandboxes), image tags
    and project config."""
    if not opts.task_paths:
        raise BadInputError("no task given: agenteval run tasks/folder --model oracle")
    if not opts.models:
        raise BadInputError("no model given: add --model oracle (or provider:name[@url])")
    if opts.concurrency < 1:
        raise BadInputError("--concurrency must be at least 1")
    check_executor_name(opts.executor)
    tasks = [with_budgets(load_task(p), opts.budgets) for p in opts.task_paths]
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

    from agenteval.sandbox.engine import connect
    from agenteval.sandbox.images import ensure_image, find_sandboxes_dir, image_tag

    in_process = opts.executor in IN_PROCESS
    client = connect() if in_process else None
    for model in models.values():  # slow checks last: engine installed, model file there (or built)
        model.preflight(log)
    if client is not None:
        images = {t.name: ensure_image(client, t.spec.sandbox.image, find_sandboxes_dir(t.path), log) for t in tasks}
    else:  # the nodes build and hold the images; the tag names the content they must have
        images = {t.name: t.spec.sandbox.image if ":" in t.spec.sandbox.image
                  else image_tag(t.spec.sandbox.image, find_sandboxes_dir(t.path)) for t in tasks}
    return tasks, models, client, images, config


def execute_run(opts: RunOptions, observer: RunObserver | None = None,
                log: Callable[[str], None] = print, executor: Executor | None = None) -> RunResult:
    observer = observer or _Silent()
    with Store(opts.db) as store:
        if opts.resume:
            previous = store.run(opts.resume)
            cfg = previous.config
            opts = RunOptions(task_paths=cfg["task_paths"], models=cfg["models"], samples=cfg["samples"],
                              concurrency=opts.concurrency if opts.concurrency > 1 else cfg["concurrency"],
                              variants=cfg["variants"], db=opts.db, out=opts.out, resume=opts.resume,
                              config=opts.config or (Path(cfg["config"]) if cfg.get("config") else None),
                              retry_errors=opts.retry_errors, budgets=cfg.get("budgets") or {},
                              executor=opts.executor if opts.executor != "local" else cfg.get("executor", "local"),
                              ray_address=opts.ray_address or cfg.get("ray_address"))
        tasks, models, client, images, config = prepare(opts, log)
        executor = executor or create_executor(ExecutorRequest(
            name=opts.executor, concurrency=opts.concurrency, address=opts.ray_address, tasks=tuple(tasks),
            images=images, models=models, config=config, log=log))
        try:
            return _execute(opts, store, tasks, models, client, images, executor, observer, log)
        finally:
            executor.shutdown(cancel_pending=True)


def _execute(opts: RunOptions, store: Store, tasks: list[Task], models: dict[str, AgentModel], client: Any,
             images: dict[str, str], executor: Executor, observer: RunObserver,
             log: Callable[[str], None]) -> RunResult:
    """Record the run, drive its trials model by model, render the report."""
    if opts.resume and opts.retry_errors:  # after every check passed: nothing is lost to a typo
        n = store.forget_trials(opts.resume, "infra_error")
        log(f"running {n} trials that ended in infra_error again")
    from agenteval.sandbox.docker import DockerSandbox, close_all_live
    from agenteval.sandbox.engine import server_version

    run_id = opts.resume or new_run_id()
    run = RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version=__version__,
                    models=[m.spec.label for m in models.values()], tasks=[t.name for t in tasks],
                    samples=opts.samples or max(t.spec.samples for t in tasks),
                    concurrency=opts.concurrency, config=opts.to_config())
    if opts.resume:
        run = run.model_copy(update={"started_at": store.run(run_id).started_at})
    store.save_run(run)
    trials = plan(tasks, [m.spec for m in models.values()], opts.samples, opts.variants)
    done = store.committed_keys(run_id)
    todo = [t for t in trials if t.key not in done]
    observer.planned(len(todo), len(trials) - len(todo))

    docker_version = server_version(client) if client is not None else None
    image_ids = {t.name: client.images.get(images[t.name]).id if client is not None else None for t in tasks}
    fingerprints: dict[tuple[str, str], Fingerprint] = {}

    def fingerprint(model: AgentModel) -> None:
        for task in tasks:
            fingerprints[(model.spec.label, task.name)] = base_fingerprint(
                model.spec, docker_version=docker_version, image=images[task.name],
                image_id=image_ids[task.name], model_info=model.fingerprint_info())

    def make_sandbox(task: Task, labels: dict[str, str]) -> Sandbox:
        return DockerSandbox.for_spec(client, images[task.name], task.spec.sandbox, labels)

    out_dir = opts.out / run_id
    env = TrialEnv(run_id=run_id, make_sandbox=make_sandbox, models=models, fingerprints=fingerprints,
                   artifacts_root=out_dir / "artifacts")
    interrupted = False
    try:
        for label, model in models.items():  # one model at a time: one server on the GPU
            group = [t for t in todo if t.model.label == label]
            if not group:
                continue
            interrupted = _run_model(model, group, env, executor, store, observer, fingerprint, log,
                                     close_all_live)
            if interrupted:
                break
    finally:
        executor.shutdown(cancel_pending=True)
    store.finish_run(run_id, "interrupted" if interrupted else "completed")
    from agenteval.report import render_run

    report = render_run(store, run_id, out_dir)
    return RunResult(run=store.run(run_id), records=store.trials(run_id), report=report,
                     interrupted=interrupted, skipped=len(trials) - len(todo))


def _run_model(model: AgentModel, group: list[TrialSpec], env: TrialEnv, executor: Executor, store: Store,
               observer: RunObserver, fingerprint: Callable[[AgentModel], None], log: Callable[[str], None],
               close_all_live: Callable[[], int]) -> bool:
    """Serve one model (start its server, warm up), run its trials, stop. True when interrupted."""
    try:
        with model.serving(log):
            fingerprint(model)
            return _drive(group, env, executor, store, observer, close_all_live)
    except (ServerStartError, ModelCallError) as e:
        log(f"{model.spec.label}: {e}; its {len(group)} trials are recorded as infra_error")
        fingerprint(model)
        for spec in group:
            record = failed_record(spec, env, FailureMode.infra_error, f"model unavailable: {e}")
            store.commit_trial(record)
            observer.trial_done(record)
        return False


def _drive(todo: list[TrialSpec], env: TrialEnv, executor: Executor, store: Store,
           observer: RunObserver, close_all_live: Callable[[], int]) -> bool:
    """Submit trials and commit each as it finishes. Returns True when interrupted."""
    pending: set[Future[TrialRecord]] = {executor.submit(spec, env) for spec in todo}
    previous = _sigterm_as_interrupt()
    try:
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                _commit(fut, store, observer)
        return False
    except KeyboardInterrupt:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        try:
            env.cancel.set()
            for fut in pending:
                fut.cancel()
            close_all_live()
            close_all_streams()
            executor.shutdown(cancel_pending=True)
            for fut in pending:
                if fut.done() and not fut.cancelled():
                    _commit(fut, store, observer)
            close_all_live()
        finally:
            signal.signal(signal.SIGINT, old)
        return True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _commit(fut: "Future[TrialRecord]", store: Store, observer: RunObserver) -> None:
    try:
        record = fut.result()
    except TrialInterrupted:
        return  # cut short by Ctrl-C: not a result; --resume runs it again
    store.commit_trial(record)
    observer.trial_done(record)


def _sigterm_as_interrupt() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)
