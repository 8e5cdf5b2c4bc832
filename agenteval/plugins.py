"""Entry-point registries: built-ins and plugins register the same way.

A registry is an entry point group (``agenteval.models``, ``agenteval.executors``)
whose entries name a factory as ``module:attr``. agenteval's own entries are
declared once, in pyproject.toml; a source checkout that was never
pip-installed reads them from the pyproject.toml beside the package (and they
win over an installed copy's, which may be older). Nothing is imported until a
name is used.
"""

from __future__ import annotations

import importlib
import tomllib
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from agenteval.errors import BadInputError

MODELS = "agenteval.models"
EXECUTORS = "agenteval.executors"
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@lru_cache(maxsize=None)
def registered(group: str) -> dict[str, str]:
    """Every name in ``group``, to the ``module:attr`` of its factory."""
    found = {ep.name: ep.value for ep in entry_points(group=group)}
    found.update(_source_checkout(group))
    return found


def _source_checkout(group: str) -> dict[str, str]:
    if not _PYPROJECT.is_file():
        return {}
    project = tomllib.loads(_PYPROJECT.read_text(encoding="utf-8")).get("project", {})
    if project.get("name") != "agenteval":
        return {}
    entries = project.get("entry-points", {}).get(group, {})
    return {str(name): str(target) for name, target in entries.items()}


def load_factory(group: str, name: str) -> Callable[..., object]:
    """The factory ``name`` names in ``group``. Raises BadInputError when it cannot be imported
    (an extra that is not installed) or is not callable; unknown names are the caller's to report."""
    module, _, attr = registered(group)[name].partition(":")
    try:
        factory: object = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise BadInputError(f"{group} entry {name!r} ({module}:{attr}) cannot be imported ({e}); "
                            f"is its extra installed?") from None
    except AttributeError:
        raise BadInputError(f"{group} entry {name!r}: {module} defines no {attr}") from None
    if not callable(factory):
        raise BadInputError(f"{group} entry {name!r}: {module}:{attr} is not callable")
    return factory
