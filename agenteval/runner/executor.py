"""Executors run trials; the driver process alone records them.

``LocalExecutor`` runs trials on threads of this process. Other executors
(``ray``: trials as Ray tasks across a cluster) register by name the same way
plugins do, through the ``agenteval.executors`` entry point group, and are
built from one frozen ``ExecutorRequest``.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Protocol, cast

from agenteval import plugins
from agenteval.errors import BadInputError
from agenteval.logs import Log
from agenteval.records import TrialRecord
from agenteval.runner.trial import TrialEnv, TrialSpec, run_trial

if TYPE_CHECKING:
    from agenteval.agent.solver import AgentModel
    from agenteval.config import ProjectConfig
    from agenteval.task import Task

# Executors that run sandboxes in this process; the others never touch Docker on the driver.
IN_PROCESS = {"local"}


class Executor(Protocol):
    def submit(self, spec: TrialSpec, env: TrialEnv) -> "Future[TrialRecord]":
        """Start one trial; the future holds its record, or raises TrialInterrupted."""

    def shutdown(self, cancel_pending: bool) -> None:
        """Wait for (or cancel) what was submitted and release resources. Idempotent."""


@dataclass(frozen=True)
class ExecutorRequest:
    """What a run asks of an executor, known before any trial starts (frozen: new
    fields never break plugins)."""

    name: str
    concurrency: int
    address: str | None
    tasks: tuple["Task", ...]
    images: Mapping[str, str]  # task name -> sandbox image tag
    models: Mapping[str, "AgentModel"]  # model label -> the driver's model object
    config: "ProjectConfig | None" = None  # where the models' aliases came from
    log: Log = print


class LocalExecutor:
    """At most ``concurrency`` trials at once, each on its own thread."""

    def __init__(self, concurrency: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="trial")

    def submit(self, spec: TrialSpec, env: TrialEnv) -> "Future[TrialRecord]":
        return self._pool.submit(run_trial, spec, env)

    def shutdown(self, cancel_pending: bool) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel_pending)


def create_local(request: ExecutorRequest) -> LocalExecutor:
    return LocalExecutor(request.concurrency)


def executors() -> dict[str, str]:
    return plugins.registered(plugins.EXECUTORS)


def check_executor_name(name: str) -> None:
    if name not in executors():
        raise BadInputError(f"unknown executor {name!r} (known: {', '.join(sorted(executors()))})")


def create_executor(request: ExecutorRequest) -> Executor:
    """The executor ``request.name`` names, built by its registered factory."""
    check_executor_name(request.name)
    return cast(Executor, plugins.load_factory(plugins.EXECUTORS, request.name)(request))
