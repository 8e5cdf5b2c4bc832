"""Model providers by name. Built-ins and plugins register the same way: an
``agenteval.models`` entry point naming a factory ``create(spec) -> model``.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable

from agenteval.errors import ModelSpecError
from agenteval.models.base import ModelSpec

if TYPE_CHECKING:
    from agenteval.config import ProjectConfig

ENTRY_POINT_GROUP = "agenteval.models"
# The same declarations as pyproject's entry points, so a source checkout that
# was never pip-installed still finds the built-ins.
BUILTINS = {
    "oracle": "agenteval.models.oracle:create",
    "nop": "agenteval.models.nop:create",
    "openai": "agenteval.models.openai:create",
    "ollama": "agenteval.models.ollama:create",
}


@lru_cache(maxsize=1)
def providers() -> dict[str, str]:
    found = dict(BUILTINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def _load(target: str) -> Callable[[ModelSpec], Any]:
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
    except ImportError as e:
        raise ModelSpecError(f"model provider {target!r} cannot be imported ({e}); is its extra installed?") from None


def create_model(text: str, config: "ProjectConfig | None" = None) -> Any:
    """Build the model ``--model`` names: an agenteval.toml alias, or provider[:name][@url].

    Chat clients come back wrapped in a ``ServedModel`` (warm-up, server lifecycle).
    """
    from agenteval.models.base import DirectSolver
    from agenteval.models.served import ServedModel, build_served

    if config is not None and text in config.models:
        return build_served(text, config.models[text], config)
    spec = ModelSpec.parse(text)
    known = providers()
    if spec.provider not in known:
        aliases = f"; aliases in agenteval.toml: {', '.join(sorted(config.models))}" if config and config.models else ""
        raise ModelSpecError(f"unknown model provider {spec.provider!r} in {text!r} "
                             f"(known: {', '.join(sorted(known))}{aliases})")
    model = _load(known[spec.provider])(spec)
    if isinstance(model, DirectSolver):
        return model
    return ServedModel(spec, model)
