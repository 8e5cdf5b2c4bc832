"""The agent graph's state (what LangGraph carries between nodes) and runtime
(what a trial's graph records and decides beyond it). A task's own graph.py
builds over these too."""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from agenteval.records import ModelCall


class AgentState(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]
    pending: list[dict[str, Any]]
    steps: int
    tokens: int
    stop: str | None


@dataclass
class AgentRuntime:
    """What one trial's graph records and decides beyond its state."""

    protocol: Literal["native", "text"] = "native"
    deadline: float = 0.0
    calls: list[ModelCall] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()
