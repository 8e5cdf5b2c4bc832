"""Models: the ``Model`` contract (``base``: ``Model``, ``ChatModel``, how ``--model`` names one)
and the HTTP clients of its built-in chat providers (``openai``, ``ollama``; ``chat``,
``streaming``, ``telemetry``, ``server_probe``, ``sampling``). Starting servers is
``agenteval.serving``'s; the solvers that act on a sandbox are ``agenteval.agent``'s; names
resolve in ``agenteval.runner.model_registry``."""

from agenteval.models.base import ChatModel, Model, ModelRequest, ModelSpec, ToolSupport
from agenteval.records import ToolProtocol

__all__ = ["ChatModel", "Model", "ModelRequest", "ModelSpec", "ToolProtocol", "ToolSupport"]
