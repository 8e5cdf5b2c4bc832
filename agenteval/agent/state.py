"""The agent graph's state (what LangGraph carries between nodes), why it stops,
and the runtime (what a trial's graph records and decides beyond it). A task's
own graph.py builds over these too: its nodes end the loop by setting ``stop``
to a ``Stop``."""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal, TypedDict

from agenteval.models.base import AgentStatus
from agenteval.models.chat import Message
from agenteval.records import ModelCall
from agenteval.records import StopReason as StopReason  # re-exported for task graph.py files


_STATUS = {StopReason.done: AgentStatus.done, StopReason.step_limit: AgentStatus.limit,
           StopReason.token_limit: AgentStatus.limit, StopReason.time_limit: AgentStatus.limit,
           StopReason.answer_cut: AgentStatus.limit, StopReason.model_error: AgentStatus.model_error,
           StopReason.infra_error: AgentStatus.infra_error, StopReason.interrupted: AgentStatus.infra_error,
           StopReason.repetition: AgentStatus.limit, StopReason.solver: AgentStatus.done}


@dataclass(frozen=True)
class Stop:
    """A stop reason and the sentence the trial record keeps (``TrialRecord.error``)."""

    reason: StopReason
    message: str = "done"

    @property
    def status(self) -> AgentStatus:
        return _STATUS[self.reason]


class PendingCall(TypedDict):
    """A tool call the model asked for, not yet run."""

    id: str
    name: str
    arguments: str | dict[str, object]  # JSON text (native calls) or already parsed (text protocol)


class AgentState(TypedDict):
    messages: Annotated[list[Message], operator.add]
    pending: list[PendingCall]
    steps: int
    tokens: int
    stop: Stop | None


class AgentUpdate(TypedDict, total=False):
    """What a node returns: the keys of ``AgentState`` it changes."""

    messages: list[Message]
    pending: list[PendingCall]
    steps: int
    tokens: int
    stop: Stop | None


@dataclass
class AgentRuntime:
    """What one trial's graph records and decides beyond its state."""

    protocol: Literal["native", "text"] = "native"
    deadline: float = 0.0
    calls: list[ModelCall] = field(default_factory=list)
    transcript: list[dict[str, object]] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()
