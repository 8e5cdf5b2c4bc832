"""Models: the ``Model`` interface (``base``), its providers (``openai``, ``ollama``,
``oracle``, ``nop``, and plugins) found by name (``registry``), and the servers
agenteval starts for them (``servers``, ``engines``)."""

from agenteval.models.base import (
                                   AgentContext,
                                   AgentModel,
                                   AgentOutcome,
                                   AgentStatus,
                                   ChatModel,
                                   DirectSolver,
                                   Model,
                                   ModelRequest,
                                   ModelSpec,
)
from agenteval.records import ToolProtocol
from agenteval.models.registry import create_model, providers

__all__ = ["AgentContext", "AgentModel", "AgentOutcome", "AgentStatus", "ChatModel", "DirectSolver", "Model",
           "ModelRequest", "ModelSpec", "ToolProtocol", "create_model", "providers"]
