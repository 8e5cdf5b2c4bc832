"""Model providers: ``oracle`` and ``nop`` here; served chat models plug in by name."""

from agenteval.models.base import AgentContext, AgentOutcome, DirectSolver, ModelSpec
from agenteval.models.registry import create_model, providers

__all__ = ["AgentContext", "AgentOutcome", "DirectSolver", "ModelSpec", "create_model", "providers"]
