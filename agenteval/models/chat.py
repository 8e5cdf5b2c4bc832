"""What a served chat model returns, and how its failures are told apart.

A failure is either ``infra`` (the server or the network: not running, 5xx
after retries, a cut stream, a malformed chunk) or ``model`` (its output or
its speed: context overflow, past the time budget, looping). The trial
record keeps the call's telemetry in both cases.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from agenteval.errors import AgentEvalError
from agenteval.records import ModelCall

ErrorKind = Literal["infra", "model"]


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text as the model wrote it; may be invalid

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; raises ValueError when the model wrote no valid JSON object."""
        value = json.loads(self.arguments or "{}")
        if not isinstance(value, dict):
            raise ValueError("tool arguments are not a JSON object")
        return value


@dataclass
class ChatResponse:
    content: str
    reasoning: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    call: ModelCall
    raw_message: dict[str, Any] = field(default_factory=dict)


class ModelCallError(AgentEvalError):
    """A model call failed; ``call`` holds what was measured before it did."""

    def __init__(self, message: str, kind: ErrorKind, call: ModelCall) -> None:
        super().__init__(message)
        self.kind = kind
        self.call = call
        call.error, call.error_kind = message, kind


_open: set[Any] = set()
_open_lock = threading.Lock()


@contextmanager
def tracked(response: Any) -> Any:
    """Register a streaming response so Ctrl-C can cut it (``close_all_streams``)."""
    with _open_lock:
        _open.add(response)
    try:
        yield response
    finally:
        with _open_lock:
            _open.discard(response)


def close_all_streams() -> int:
    """Close every model stream in flight; their readers fail at once. Returns how many."""
    with _open_lock:
        streams = list(_open)
    for r in streams:
        try:
            r.close()
        except Exception:  # noqa: BLE001 - closing from another thread may race; the reader fails either way
            pass
    return len(streams)


class ChatModel(Protocol):
    """A served model the agent graph talks to."""

    def chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
             max_tokens: int | None = None, timeout_s: float | None = None) -> ChatResponse: ...
