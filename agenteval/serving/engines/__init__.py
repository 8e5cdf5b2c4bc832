"""The servers agenteval can start for a model, one module per engine, named as
the engine is in agenteval.toml (``engine = "llamacpp"``): ``transformers``
(`transformers serve`), ``llamacpp`` (llama-cpp-python's server), ``llama-server``
(llama.cpp's own server), ``command``
(any command line). The alias of every provider can name any engine."""

from __future__ import annotations

from pathlib import Path

from agenteval.config import EngineName, ModelConfig
from agenteval.serving.servers import ManagedServer


def engine_class(name: EngineName) -> type[ManagedServer]:
    if name == "transformers":
        from agenteval.serving.engines.transformers import TransformersServer

        return TransformersServer
    if name == "llamacpp":
        from agenteval.serving.engines.llamacpp import LlamaCppServer

        return LlamaCppServer
    if name == "llama-server":
        from agenteval.serving.engines.llama_server import LlamaServer

        return LlamaServer
    from agenteval.serving.engines.command import CommandServer

    return CommandServer


def create_engine(alias: str, cfg: ModelConfig, model_path: Path | None,
                  log_dir: Path | None = None) -> ManagedServer | None:
    """The server agenteval starts for ``alias``, or None when the user runs it (no ``engine``)."""
    if cfg.engine is None:
        return None
    return engine_class(cfg.engine)(alias, cfg, model_path, log_dir)
