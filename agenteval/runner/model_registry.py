"""Model providers by name, and the model a run's ``--model`` names. Built-ins and plugins
register the same way: an ``agenteval.models`` entry point naming a factory
``create(request: ModelRequest) -> ChatModel | DirectSolver`` (``agenteval.models.base``,
``agenteval.agent.solver``).

``--model provider[:name][@url]`` and an agenteval.toml alias resolve here, through
the same factories: an alias names any registered provider, and its ``engine``
(a server agenteval starts, ``agenteval.serving``) works with any provider whose
factory builds a chat model for the server's URL. Here because it joins the three:
the model contract, the solvers and the servers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from agenteval import plugins
from agenteval.agent.solver import AgentModel, DirectSolver, ModelFactory
from agenteval.errors import ModelSpecError
from agenteval.models.base import ChatModel, ModelRequest, ModelSpec
from agenteval.serving.engines import create_engine
from agenteval.serving.served import ServedModel

if TYPE_CHECKING:
    from agenteval.config import ModelConfig, ProjectConfig


def providers() -> dict[str, str]:
    """Every provider name, to the ``module:attr`` of its factory."""
    return plugins.registered(plugins.MODELS)


def provider_factory(provider: str, config: "ProjectConfig | None" = None, text: str | None = None) -> ModelFactory:
    known = providers()
    if provider not in known:
        aliases = f"; aliases in agenteval.toml: {', '.join(sorted(config.models))}" if config and config.models else ""
        raise ModelSpecError(f"unknown model provider {provider!r} in {text or provider!r} "
                             f"(known: {', '.join(sorted(known))}{aliases})")
    factory = plugins.load_factory(plugins.MODELS, provider)

    def create(request: ModelRequest) -> AgentModel:
        model = factory(request)
        if not isinstance(model, (ChatModel, DirectSolver)):
            raise ModelSpecError(f"model provider {provider!r} ({known[provider]}) built a {type(model).__name__}, "
                                 f"which is neither a ChatModel nor a DirectSolver (agenteval.models.base, "
                                 f"agenteval.agent.solver)")
        return model

    return create


def create_model(text: str, config: "ProjectConfig | None" = None) -> AgentModel:
    """Build the model ``--model`` names: an agenteval.toml alias, or provider[:name][@url].

    Chat models come back as a ``ServedModel`` (the settings applied around every call,
    warm-up, the server agenteval starts for an alias with an ``engine``).
    """
    if config is not None and text in config.models:
        return create_alias(text, config.models[text], config)
    spec = ModelSpec.parse(text)
    model = provider_factory(spec.provider, config, text)(ModelRequest(spec))
    return model if isinstance(model, DirectSolver) else ServedModel(spec, model)


def create_alias(alias: str, cfg: "ModelConfig", project: "ProjectConfig") -> AgentModel:
    """The model an agenteval.toml alias names; with an ``engine``, the provider's client is
    built once the server has started and its URL is known."""
    factory = provider_factory(cfg.provider, project, alias)
    server = create_engine(alias, cfg, project.resolve(cfg.path, alias) if cfg.path else None)
    spec = ModelSpec(cfg.provider, cfg.name or alias, cfg.base_url)
    label = replace(spec, alias=alias)
    counter = server.token_counter() if server else None
    request = ModelRequest(spec, cfg, counter)
    if server is None:
        model = factory(request)
        return model if isinstance(model, DirectSolver) else ServedModel(label, model, cfg)

    def client_for(base_url: str) -> ChatModel:
        assert server is not None
        model = factory(replace(request, spec=replace(spec, name=server.served_name(), base_url=base_url)))
        if not isinstance(model, ChatModel):
            raise ModelSpecError(f"model {alias!r}: provider {cfg.provider!r} builds no chat model, so agenteval "
                                 f"has nothing to start engine {cfg.engine!r} for")
        return model

    return ServedModel(label, None, cfg, server, client_for, token_counter=counter)


def build_served(alias: str, cfg: "ModelConfig", project: "ProjectConfig") -> ServedModel:
    """The chat model an agenteval.toml alias names, for callers that need its server and
    settings (benchmarks, tests); the runner uses ``create_model``."""
    model = create_alias(alias, cfg, project)
    if not isinstance(model, ServedModel):
        raise ModelSpecError(f"model {alias!r}: provider {cfg.provider!r} serves no chat model")
    return model
