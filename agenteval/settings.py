"""The base of every model a user writes by hand (task.toml, agenteval.toml), and how a
mistake in one is said.

Unknown keys are errors (``extra="forbid"``), so a typo names its file and key
instead of being silently ignored; values are frozen once read.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictSettings(BaseModel):
    """A table of user-written settings: every key declared, typed and described once."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe_validation_error(error: ValidationError, model: type[BaseModel]) -> str:
    """First problem of a pydantic error as one line: the key and what is wrong with it."""
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        allowed = _allowed_keys(model, first["loc"][:-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        more = f"; did you mean {hint[0]!r}?" if hint else f" (allowed: {', '.join(sorted(allowed))})"
        return f"unknown key {loc!r}{more}"
    if first["type"] == "missing":
        return f"missing key {loc!r}"
    return f"key {loc!r}: {first['msg']}"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Keys allowed at ``loc``: walk models, list items and dict values down the path."""
    current: Any = model
    dict_key_pending = False
    for part in loc:
        if isinstance(part, int) or dict_key_pending:
            dict_key_pending = False
            continue
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return []
        ann = field.annotation
        args = typing.get_args(ann)
        dict_key_pending = typing.get_origin(ann) is dict
        current = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(current.model_fields) if current else []
