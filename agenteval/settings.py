"""The base of every model a user writes by hand (task.toml, agenteval.toml).

Unknown keys are errors (``extra="forbid"``), so a typo names its file and key
instead of being silently ignored; values are frozen once read.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictSettings(BaseModel):
    """A table of user-written settings: every key declared, typed and described once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
