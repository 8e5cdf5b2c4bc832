"""What a model is to agenteval, and how ``--model`` names one.

Every model, built-in or plugin, is a ``Model``: it can refuse a task before any
trial (``check_task``), check what is slow to check (``preflight``), has a
lifecycle the runner brackets its trials with (``serving``: start, health,
warm-up, then stop; each a no-op where there is nothing to do, as for a server
the user runs) and a ``fingerprint_info`` for the records. A ``ChatModel`` is a
streamed chat (with tools or not) the agent graph drives, with the tool protocol
it wants (``ToolProtocol``); the other kind, a solver that works the sandbox
itself (oracle, nop), is the agent's (``agenteval.agent.solver.DirectSolver``).

A provider is a factory ``create(request: ModelRequest) -> ChatModel |
DirectSolver`` registered under the ``agenteval.models`` entry point group
(``agenteval.runner.model_registry``); ``--model provider:name`` and agenteval.toml
aliases both reach it there. The servers agenteval starts for a model are
``agenteval.serving``'s, never this package's.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Callable, Iterator, TypeAlias

from agenteval.errors import ModelSpecError
from agenteval.logs import Log
from agenteval.models.chat import ChatResponse, Message, ToolSchema
from agenteval.records import ToolProtocol

if TYPE_CHECKING:
    from agenteval.config import ModelConfig
    from agenteval.task import Task

TokenCounter: TypeAlias = Callable[[str], int]  # tokens in a text, by the model's own tokenizer
_SPEC = re.compile(r"^(?P<provider>[a-z][a-z0-9_-]*)(?::(?P<name>[^@]+))?(?:@(?P<url>\S+))?$")
WARM_UP: list[Message] = [{"role": "user", "content": "Reply with OK."}]


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
class ModelRequest:
    """What a provider's factory gets (frozen: new fields never break plugins)."""

    spec: ModelSpec  # provider, the name to send, and the server's URL (for a started server: its URL)
    settings: "ModelConfig | None" = None  # the agenteval.toml alias's table; None for --model provider:name
    token_counter: TokenCounter | None = None  # the model's tokenizer, where the engine knows it


class ToolSupport(StrEnum):
    """Whether a server honours native tool calls, as far as it can be known before the first call."""

    yes = "yes"  # it says so (llama-server's /props chat_template_caps) or answered a tool call
    no = "no"  # it drops or refuses tools (llama-cpp-python ignores them; a template without tool support)
    unknown = "unknown"  # nothing tells: try native, fall back on what the first answers show


class Model(ABC):
    """What the runner needs of every model. Lifecycle, in the runner's order: ``check_task``
    for every task and ``preflight`` before any container starts; then, per model,
    ``serving()`` around its trials. Only ``fingerprint_info`` must be written."""

    spec: ModelSpec

    def check_task(self, task: "Task") -> None:
        """Raise BadInputError before any trial when this model cannot attempt ``task``."""

    def preflight(self, log: Log) -> None:
        """Slow checks before any trial (engine installed, model file there); raise BadInputError."""

    def start(self, log: Log) -> None:
        """Start what serves the model. Raises ServerStartError."""

    def health(self) -> None:
        """Raise ServerStartError or ModelCallError when the model cannot answer now."""

    def warm_up(self) -> None:
        """Load the model before the first measured call. Raises ModelCallError."""

    def stop(self) -> None:
        """Stop what ``start`` started. Idempotent; never raises."""

    @abstractmethod
    def fingerprint_info(self) -> dict[str, object]:
        """What identifies this model's setup in the records (server, version, quantization, ...)."""

    @contextmanager
    def serving(self, log: Log = print) -> Iterator[None]:
        """Start, check health, warm up; stop on the way out, whatever happened."""
        try:
            self.start(log)
            self.health()
            self.warm_up()
            yield
        finally:
            self.stop()


class ChatModel(Model):
    """A model served for chat, which the agent graph drives."""

    tool_protocol: ToolProtocol = ToolProtocol.auto

    @abstractmethod
    def chat(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
             max_tokens: int | None = None, timeout_s: float | None = None) -> ChatResponse:
        """One streamed call, measured. ``timeout_s`` is the whole call's budget. Raises
        ModelCallError (its ``call`` holds what was measured)."""

    def tool_support(self) -> ToolSupport:
        """What the server is known to do with native tools (ask after ``start``); providers that can tell override."""
        return ToolSupport.unknown

    def warm_up(self) -> None:
        self.chat(WARM_UP, max_tokens=8, timeout_s=120)
