"""What a model is to agenteval, and how ``--model`` names one.

Two kinds of model exist. A ``DirectSolver`` acts on the sandbox itself
(``oracle`` replays the reference solution, ``nop`` does nothing); chat models
served by Ollama, llama.cpp, vLLM and friends are driven by the agent graph.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agenteval.errors import ModelSpecError
from agenteval.records import Fingerprint, ModelCall
from agenteval.sandbox.base import Sandbox
from agenteval.task import Task, VariantSpec
from agenteval.task.spec import AgentSpec

_SPEC = re.compile(r"^(?P<provider>[a-z][a-z0-9_-]*)(?::(?P<name>[^@]+))?(?:@(?P<url>\S+))?$")


@dataclass(frozen=True)
class ModelSpec:
    """``provider[:name][@base_url]`` as given on the command line."""

    provider: str
    name: str = ""
    base_url: str | None = None
    alias: str | None = None  # the agenteval.toml name, when the model came from one

    @property
    def label(self) -> str:
        if self.alias:
            return self.alias
        text = self.provider + (f":{self.name}" if self.name else "")
        return text + (f"@{self.base_url}" if self.base_url else "")

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        m = _SPEC.match(text.strip())
        if not m:
            raise ModelSpecError(f"bad model {text!r}: write provider:name[@base_url], e.g. ollama:qwq:32b or oracle")
        return cls(m["provider"], m["name"] or "", m["url"])


@dataclass(frozen=True)
class AgentContext:
    """Everything one agent phase gets; frozen so new fields never break solvers."""

    task: Task
    variant: VariantSpec
    instruction: str
    sandbox: Sandbox
    budget: AgentSpec
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class AgentOutcome:
    """How the agent phase ended; the verifier runs in every case."""

    status: str = "done"  # 'done' | 'limit' | 'model_error' | 'infra_error'
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    model_calls: list[ModelCall] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class DirectSolver(Protocol):
    """A model that works the sandbox itself instead of through a chat loop."""

    spec: ModelSpec

    def solve(self, ctx: AgentContext) -> AgentOutcome: ...

    def check_task(self, task: Task) -> None:
        """Raise BadInputError before any trial when this model cannot attempt ``task``."""

    def fingerprint_info(self) -> dict[str, Any]: ...


def base_fingerprint(spec: ModelSpec, **kw: Any) -> Fingerprint:
    import os
    import platform
    import socket

    from agenteval import __version__

    return Fingerprint(agenteval_version=__version__, host=socket.gethostname(),
                       platform=platform.platform(), cpu_count=os.cpu_count(),
                       model=spec.label, provider=spec.provider, **kw)
