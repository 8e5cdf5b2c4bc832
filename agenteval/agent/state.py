"""The agent graph's state (what LangGraph carries between nodes), why it stops,
and the runtime (what a trial's graph records and decides beyond it). A task's
own graph.py builds over these too: its nodes end the loop by setting ``stop``
to a ``Stop``."""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, TypedDict

from agenteval.agent.solver import AgentStatus
from agenteval.models.chat import Message
from agenteval.records import ModelCall, ToolProtocol
from agenteval.records import StopReason as StopReason  # re-exported for task graph.py files

if TYPE_CHECKING:
    from agenteval.agent.tools import ToolResult


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


class AgentEvent(StrEnum):
    """What the agent itself did, kept in the transcript as ``{"role": "agent", "event": ..., "content": why}``."""

    protocol = "protocol"  # the tool protocol the trial starts with, and why
    protocol_switch = "protocol_switch"  # native -> text during the trial, and why
    reminder = "reminder"  # the one reminder after an answer that did nothing
    not_run = "not_run"  # an answer cut by the time budget or the repetition guard: its actions were not run


@dataclass
class AgentRuntime:
    """What one trial's graph records and decides beyond its state. A task's graph.py
    records the tools it runs through ``record_tool`` so ``actions_run`` counts them."""

    protocol: ToolProtocol = ToolProtocol.native  # native or text: the one in force now
    deadline: float = 0.0
    calls: list[ModelCall] = field(default_factory=list)
    transcript: list[dict[str, object]] = field(default_factory=list)
    actions_run: int = 0  # commands run and files written on the model's behalf
    may_switch: bool = False  # native now, and text blocks in an answer without tool calls switch to text
    reminded: bool = False  # the one reminder was sent
    results_note: str = ""  # said after the next tool results (blocks that were not run)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def note(self, event: AgentEvent, content: str) -> None:
        self.transcript.append({"role": "agent", "event": event.value, "content": content})

    def record_tool(self, name: str, result: "ToolResult") -> None:
        self.transcript.append({"role": "tool", "name": name, "content": result.content})
        self.actions_run += result.acted
