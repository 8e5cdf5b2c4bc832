"""``nop``: does nothing. Every verifier must fail it (a task a do-nothing
agent passes measures nothing)."""

from __future__ import annotations

from agenteval.agent.solver import AgentContext, AgentOutcome, AgentStatus, DirectSolver
from agenteval.models.base import ModelRequest, ModelSpec


class NopSolver(DirectSolver):
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def fingerprint_info(self) -> dict[str, object]:
        return {"kind": "does nothing"}

    def solve(self, ctx: AgentContext) -> AgentOutcome:
        return AgentOutcome(AgentStatus.done, "did nothing")


def create(request: ModelRequest) -> NopSolver:
    return NopSolver(request.spec)
