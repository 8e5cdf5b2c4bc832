"""task.toml, declared once: every key is a typed field with a description.

Unknown keys are rejected (``extra="forbid"``) so a typo is an error naming
the file and the key instead of a silently ignored setting.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agenteval.settings import StrictSettings

WORKDIR = "/workspace"  # the agent's folder (sandbox.base.WORKSPACE); here so the task layer imports no sandbox
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


_RESERVED = ("/agenteval", "/tmp", "/logs", "/tests", "/solution", "/proc", "/sys", "/dev")


class SandboxSpec(StrictSettings):
    """[sandbox]: the container a trial runs in and its limits."""

    image: str | None = Field(default="python", description="Name of a folder under sandboxes/ (or an image tag "
                              "with ':'); with build, a prebuilt tag tried before building.")
    build: str | None = Field(default=None, description="Folder of the task that is the image's Docker build "
                              "context (Dockerfile inside), built on demand and tagged by its content hash; "
                              "it is not copied into the workspace.")
    build_timeout_sec: float = Field(default=600, gt=0, description="Wall-clock limit of building the image.")
    workdir: str | None = Field(default=WORKDIR, description="Where the agent's commands start; None: the image's "
                                "WORKDIR (/workspace where it has none). Any path but /workspace is the same "
                                "writable folder as /workspace.")
    layout: Literal["agenteval", "harbor"] = Field(default="agenteval", description="harbor: the workdir starts with "
                                                   "the image's files there (owned by the agent), and the sandbox "
                                                   "has /logs/agent, /logs/artifacts, /logs/verifier, /tests and "
                                                   "/solution, as Harbor tasks expect.")
    internet: bool = Field(default=False, description="The task may use the network. A run grants it only with "
                           "--allow-internet; otherwise the sandbox has none.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables of the container.")
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

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str | None) -> str | None:
        if v is None:
            return v
        norm = posixpath.normpath(v)
        if not v.startswith("/") or norm == "/" or any(norm == r or norm.startswith(r + "/") for r in _RESERVED):
            raise ValueError(f"workdir {v!r} must be an absolute folder outside / itself and {', '.join(_RESERVED)}")
        return norm

    @model_validator(mode="after")
    def _image_or_build(self) -> "SandboxSpec":
        if not self.image and not self.build:
            raise ValueError("give image or build")
        return self


class AgentSpec(StrictSettings):
    """[agent]: budgets for the agent phase (overridable on the command line)."""

    max_steps: int = Field(default=30, ge=1, description="Model turns before the agent is stopped.")
    max_total_tokens: int = Field(default=200_000, ge=1, description="Prompt + completion tokens over the trial.")
    timeout_sec: float = Field(default=900, gt=0, description="Wall-clock budget of the whole agent phase.")


class VerifierSpec(StrictSettings):
    """[verifier]: the hidden checks, run from tests/ after the agent is done."""

    protocol: Literal["verdict", "reward"] = Field(default="verdict", description="verdict: the command writes "
                                                   "agenteval's verdict (agenteval_verifier); reward: Harbor's, the "
                                                   "command runs from the workdir with tests/ at /tests and writes "
                                                   "/logs/verifier/reward.txt or reward.json.")
    command: str = Field(default="python3 verify.py", description="Run in the copied tests/ folder as the verifier "
                         "user (reward protocol: in the workdir, as described in the README).")
    timeout_sec: float = Field(default=120, gt=0, description="Wall-clock limit of the verifier.")
    pass_threshold: float = Field(default=1.0, description="reward protocol: the trial passes when its reward is at "
                                  "least this (--pass-threshold overrides).")
    env: dict[str, str] = Field(default_factory=dict, description="reward protocol: environment of the command.")


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
    instruction: Literal["jinja2", "plain"] = Field(default="jinja2", description="instruction.md is a Jinja2 "
                                                    "template, or plain text used as written.")
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
        if self.verifier.protocol == "reward" and self.sandbox.layout != "harbor":
            raise ValueError("verifier.protocol 'reward' needs sandbox.layout 'harbor' (/tests and /logs/verifier)")
        return self

    def effective_variants(self) -> list[VariantSpec]:
        """Variants with the shared params merged under each one's own."""
        variants = self.variants or [VariantSpec(id="default")]
        return [v.model_copy(update={"params": {**self.params, **v.params}}) for v in variants]
