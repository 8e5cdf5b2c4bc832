"""``nop``: does nothing. Every verifier must fail it (a task a do-nothing
agent passes measures nothing)."""

from __future__ import annotations

from typing import Any

from agenteval.models.base import AgentContext, AgentOutcome, ModelSpec
from agenteval.task import Task


class NopSolver:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def check_task(self, task: Task) -> None:
        return None

    def fingerprint_info(self) -> dict[str, Any]:
        return {"kind": "does nothing"}

    def solve(self, ctx: AgentContext) -> AgentOutcome:
        return AgentOutcome("done", "did nothing")


def create(spec: ModelSpec) -> NopSolver:
    return NopSolver(spec)
