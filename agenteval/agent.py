"""The agent phase: composes a model with a task inside a sandbox.

Models that act on the sandbox themselves (``DirectSolver``: oracle, nop) are
called directly; chat models are driven by an agent graph (LangGraph), built
by a factory per trial.
"""

from __future__ import annotations

from typing import Any

from agenteval.errors import ModelSpecError
from agenteval.models.base import AgentContext, AgentOutcome, DirectSolver


def run_agent(model: Any, ctx: AgentContext) -> AgentOutcome:
    if isinstance(model, DirectSolver):
        return model.solve(ctx)
    raise ModelSpecError(f"model {getattr(model, 'spec', model)!r} cannot drive an agent yet")
