"""task.toml, declared once: every key is a typed field with a description.

Unknown keys are rejected (``extra="forbid"``) so a typo is an error naming
the file and the key instead of a silently ignored setting.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agenteval.settings import StrictSettings

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: str | int) -> int:
    """'512m', '1g', '64k' or a byte count -> bytes (binary units, as Docker reads them)."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (write e.g. '512m', '2g', '64k')")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


class SandboxSpec(StrictSettings):
    """[sandbox]: the container a trial runs in and its limits."""

    image: str = Field(default="python", description="Name of a folder under sandboxes/ (or an image tag with ':').")
    memory: str = Field(default="1g", description="Memory cap; swap is capped to the same value.")
    cpus: float = Field(default=1.0, gt=0, description="CPU quota in cores.")
    pids: int = Field(default=256, ge=16, description="Maximum number of processes and threads.")
    workspace_size: str = Field(default="256m", description="Size cap of the writable /workspace.")
    tmp_size: str = Field(default="64m", description="Size cap of /tmp.")
    exec_timeout_sec: float = Field(default=120, gt=0, description="Default wall-clock limit of one command.")
    output_limit: str = Field(default="256k", description="Bytes kept of each command's stdout and of its stderr.")

    @field_validator("memory", "workspace_size", "tmp_size", "output_limit")
    @classmethod
    def _size(cls, v: str) -> str:
        parse_size(v)
        return v


class AgentSpec(StrictSettings):
    """[agent]: budgets for the agent phase (overridable on the command line)."""

    max_steps: int = Field(default=30, ge=1, description="Model turns before the agent is stopped.")
    max_total_tokens: int = Field(default=200_000, ge=1, description="Prompt + completion tokens over the trial.")
    timeout_sec: float = Field(default=900, gt=0, description="Wall-clock budget of the whole agent phase.")


class VerifierSpec(StrictSettings):
    """[verifier]: the hidden checks, run from tests/ after the agent is done."""

    command: str = Field(default="python3 verify.py", description="Run in the copied tests/ folder as the verifier user.")
    timeout_sec: float = Field(default=120, gt=0, description="Wall-clock limit of the verifier.")


class VariantSpec(StrictSettings):
    """One [[variants]] entry: a parameter set; variant x sample is one trial."""

    id: str = Field(description="Stable id, used in trial keys and --variant.")
    description: str = Field(default="", description="What this variant asks for.")
    params: dict[str, Any] = Field(default_factory=dict, description="Template variables for instruction.md and the verifier.")
    environment: str | None = Field(default=None, description="Folder of the task copied into /workspace for this variant only, after environment/.")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"variant id {v!r} must be letters, digits, '_', '.', '-'")
        return v


class TaskSpec(StrictSettings):
    """The whole of task.toml."""

    name: str = Field(description="Task name, shown in reports; defaults to the folder name.")
    description: str = Field(default="", description="One paragraph on what the task measures.")
    mode: Literal["agent", "single-shot"] = Field(default="agent", description="Tool-using agent loop or one answer.")
    samples: int = Field(default=1, ge=1, description="Samples per variant when --samples is not given.")
    tags: list[str] = Field(default_factory=list, description="Free-form labels for filtering.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters shared by every variant.")
    sandbox: SandboxSpec = Field(default_factory=SandboxSpec)
    agent: AgentSpec = Field(default_factory=AgentSpec)
    verifier: VerifierSpec = Field(default_factory=VerifierSpec)
    variants: list[VariantSpec] = Field(default_factory=list, description="Parameter sets; none means one 'default'.")

    @model_validator(mode="after")
    def _unique_variants(self) -> "TaskSpec":
        ids = [v.id for v in self.variants]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate variant ids: {', '.join(dupes)}")
        return self

    def effective_variants(self) -> list[VariantSpec]:
        """Variants with the shared params merged under each one's own."""
        variants = self.variants or [VariantSpec(id="default")]
        return [v.model_copy(update={"params": {**self.params, **v.params}}) for v in variants]
