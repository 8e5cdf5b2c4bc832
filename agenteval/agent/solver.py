"""The agent phase's contract: what it gets (``AgentContext``), how it ends (``AgentOutcome``,
``AgentStatus``), and ``DirectSolver``, a model that works the sandbox itself instead of through
the agent graph (``oracle`` replays the reference solution, ``nop`` does nothing).

``AgentModel`` is what the runner accepts: a ``ChatModel`` (``agenteval.models.base``), which the
graph drives, or a ``DirectSolver``. Providers build one of the two (``ModelFactory``).
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable, TypeAlias

from agenteval.models.base import ChatModel, Model, ModelRequest
from agenteval.records import ModelCall, StopReason, ToolProtocol
from agenteval.sandbox.base import Sandbox
from agenteval.task.folder import Task
from agenteval.task.spec import AgentSpec, VariantSpec


class AgentStatus(StrEnum):
    """How the agent phase ended (``classify`` turns it into a failure mode)."""

    done = "done"
    limit = "limit"  # a budget ran out (steps, tokens, time) or the answer was cut at the token cap
    model_error = "model_error"
    infra_error = "infra_error"


@dataclass(frozen=True)
class AgentContext:
    """Everything one agent phase gets; frozen so new fields never break solvers."""

    task: Task
    variant: VariantSpec
    instruction: str
    sandbox: Sandbox
    budget: AgentSpec
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class AgentOutcome:
    """How the agent phase ended; the verifier runs in every case."""

    status: AgentStatus = AgentStatus.done
    message: str = ""
    model_calls: list[ModelCall] = field(default_factory=list)
    transcript: list[dict[str, object]] = field(default_factory=list)
    stop: StopReason = StopReason.solver  # why it ended, finer than ``status``
    steps: int = 0  # model turns
    tool_protocol: ToolProtocol | None = None  # the protocol it ended with (None: no chat loop)
    actions_run: int = 0  # commands run and files written on the model's behalf

    def __post_init__(self) -> None:
        self.status = AgentStatus(self.status)  # a plain 'done' is accepted and checked


class DirectSolver(Model):
    """A model that works the sandbox itself instead of through a chat loop."""

    @abstractmethod
    def solve(self, ctx: AgentContext) -> AgentOutcome:
        """Act on ``ctx.sandbox``; raises SandboxError only when the sandbox itself broke."""


AgentModel: TypeAlias = ChatModel | DirectSolver
ModelFactory = Callable[[ModelRequest], AgentModel]
