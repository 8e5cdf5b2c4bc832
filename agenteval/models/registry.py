"""Model providers by name. Built-ins and plugins register the same way: an
``agenteval.models`` entry point naming a factory ``create(spec) -> model``.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Callable

from agenteval.errors import ModelSpecError
from agenteval.models.base import ModelSpec

ENTRY_POINT_GROUP = "agenteval.models"
# The same declarations as pyproject's entry points, so a source checkout that
# was never pip-installed still finds the built-ins.
BUILTINS = {
    "oracle": "agenteval.models.oracle:create",
    "nop": "agenteval.models.nop:create",
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


def create_model(text: str) -> Any:
    """Parse ``--model`` text and build the model it names."""
    spec = ModelSpec.parse(text)
    known = providers()
    if spec.provider not in known:
        raise ModelSpecError(f"unknown model provider {spec.provider!r} in {text!r} "
                             f"(known: {', '.join(sorted(known))})")
    return _load(known[spec.provider])(spec)
