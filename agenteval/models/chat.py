"""What a served chat model returns, and how its failures are told apart.

A failed call raises ``ModelCallError`` with a ``Failure`` (what went wrong,
decided where it happened: an HTTP status, a transport exception, a clock, a
stream that stopped making sense) and the HTTP status when there was one. The
failure decides the ``ErrorKind``: ``infra`` (the server or the network) or
``model`` (its output or its speed). The trial record keeps the call's
telemetry in both cases.
"""

from __future__ import annotations

import json
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterator, Protocol

from agenteval.errors import AgentEvalError
from agenteval.records import ModelCall

# A chat message or tool schema as the OpenAI chat API shapes it; servers get it as JSON.
Message = dict[str, object]
ToolSchema = dict[str, object]


class ErrorKind(StrEnum):
    """Who is to blame for a failed call (stored as ``ModelCall.error_kind``)."""

    infra = "infra"  # the server or the network: the trial says nothing about the model
    model = "model"  # the model's output or speed


class Failure(StrEnum):
    """What went wrong in one call."""

    unreachable = "unreachable"  # no connection, after the retries
    server_error = "server_error"  # an HTTP error status that names no fault of the prompt
    tools_rejected = "tools_rejected"  # a request carrying tools was refused (any error status)
    prompt_rejected = "prompt_rejected"  # a request without tools was refused (400, 413): the prompt, e.g. too long
    stream_cut = "stream_cut"  # the connection dropped, or the stream ended before the answer
    malformed = "malformed"  # the stream is not what the protocol says, or the server sent an error in it
    timeout = "timeout"  # no (complete) answer within the time budget
    repetition = "repetition"  # the model kept repeating itself

    @property
    def kind(self) -> ErrorKind:
        return ErrorKind.model if self in _MODEL_FAILURES else ErrorKind.infra


_MODEL_FAILURES = frozenset({Failure.prompt_rejected, Failure.timeout, Failure.repetition})
REFUSED_PROMPT = frozenset({400, 413})
BUSY_STATUS = frozenset({429, 503})  # "try again later" (rate limit, model loading): retried, even with tools


def http_failure(status: int, sent_tools: bool) -> Failure:
    """The failure an HTTP error status means for a chat request. A request carrying tools that
    is refused is ``tools_rejected`` whatever the status: servers refuse tools with 400, 422 or
    501, and llama.cpp's server without --jinja with 500 ('tools param requires --jinja flag').
    Only ``BUSY_STATUS`` is retried first (``retried``)."""
    if sent_tools:
        return Failure.tools_rejected
    if status in REFUSED_PROMPT:
        return Failure.prompt_rejected
    return Failure.server_error


def retried(status: int, sent_tools: bool) -> bool:
    """Whether an HTTP error status is worth retrying: a busy server, or a 5xx for a request
    without tools (a request with tools is retried without them by the agent instead)."""
    return status in BUSY_STATUS or (not sent_tools and status in (500, 502, 504))


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text as the model wrote it; may be invalid

    def parsed_arguments(self) -> dict[str, object]:
        """The arguments as a dict; raises ValueError when the model wrote no valid JSON object."""
        value = json.loads(self.arguments or "{}")
        if not isinstance(value, dict):
            raise ValueError("tool arguments are not a JSON object")
        return value


class CallStop(StrEnum):
    """Why an answer ended. Every stop but ``complete`` keeps what the model produced so far."""

    complete = "complete"  # the model finished its answer (or called tools)
    length = "length"  # the token cap (max_tokens), by the server or by the client
    budget = "budget"  # the call's time budget ran out after the answer had begun
    repetition = "repetition"  # the loop guard stopped a model repeating itself


@dataclass
class ChatResponse:
    """One answer, whole or partial (``stop`` says which); ``call`` holds its telemetry."""

    content: str
    reasoning: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    call: ModelCall
    stop: CallStop = CallStop.complete


class ModelCallError(AgentEvalError):
    """A model call failed; ``call`` holds what was measured before it did."""

    def __init__(self, message: str, failure: Failure, call: ModelCall, *, status: int | None = None) -> None:
        super().__init__(message)
        self.failure = failure
        self.status = status  # the HTTP status, when the server answered with one
        self.call = call
        call.error, call.error_kind = message, failure.kind.value

    @property
    def kind(self) -> ErrorKind:
        return self.failure.kind


class Closable(Protocol):
    def close(self) -> None: ...


_open: set[Closable] = set()
_open_lock = threading.Lock()


@contextmanager
def tracked(response: Closable) -> Iterator[Closable]:
    """Register a streaming response so Ctrl-C can cut it (``close_all_streams``)."""
    with _open_lock:
        _open.add(response)
    try:
        yield response
    finally:
        with _open_lock:
            _open.discard(response)


def cut(response: Closable) -> None:
    """Close a stream from another thread so that its reader wakes at once: the socket is
    shut down first, because closing alone does not wake a thread blocked reading it (it
    would wait for the server's next bytes)."""
    extensions: object = getattr(response, "extensions", None)
    stream: object = extensions.get("network_stream") if isinstance(extensions, dict) else None
    get_extra_info: object = getattr(stream, "get_extra_info", None)
    sock: object = get_extra_info("socket") if callable(get_extra_info) else None
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        response.close()
    except Exception:  # noqa: BLE001 - closing from another thread may race; the reader stops either way
        pass


def close_all_streams() -> int:
    """Close every model stream in flight; their readers fail at once. Returns how many."""
    with _open_lock:
        streams = list(_open)
    for r in streams:
        cut(r)
    return len(streams)


def as_object(value: object) -> dict[str, object]:
    """``value`` if a server sent a JSON object there, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def as_text(value: object) -> str:
    return value if isinstance(value, str) else ""


def as_count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
