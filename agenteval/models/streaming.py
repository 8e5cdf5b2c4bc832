"""The part of a streamed model call that every provider shares: bookkeeping of
calls in flight, retries with backoff for transient failures only, the time
budget (a partial answer is kept once the answer began), and turning HTTP
statuses and transport failures into classified ``ModelCallError``s; and the
settings every HTTP client holds (``HTTPChatClient``)."""

from __future__ import annotations

import json
import random
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from agenteval.config import DEFAULT_SAMPLING
from agenteval.models.base import ChatModel, ModelSpec, TokenCounter
from agenteval.models.chat import (CallStop, ChatResponse, Closable, Failure, ModelCallError, ToolCall, cut,
                                   http_failure, retried, tracked)
from agenteval.models.telemetry import RepetitionGuard, StreamClock, rate
from agenteval.records import ModelCall, ToolProtocol

# Fills the token counts a server did not send: (call, answer, reasoning).
FillCounts = Callable[[ModelCall, str, str], None]


@dataclass
class CallLog:
    """Numbers calls and counts those in flight (the concurrency recorded with each)."""

    label: str
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_flight: int = 0
    _calls: int = 0

    @contextmanager
    def call(self) -> Iterator[ModelCall]:
        with self._lock:
            self._in_flight += 1
            self._calls += 1
            call = ModelCall(index=self._calls - 1, model=self.label, concurrency=self._in_flight)
        try:
            yield call
        finally:
            with self._lock:
                self._in_flight -= 1


@dataclass
class Retry:
    """Backoff for transient failures (connection refused while a server starts, 5xx, 429)."""

    max_retries: int = 4
    backoff_s: float = 0.5
    sleep: Callable[[float], None] = time.sleep

    def wait(self, attempt: int, retry_after: str | None, deadline: float) -> None:
        wait = self.backoff_s * (2**attempt) * (0.75 + 0.5 * random.random())
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            wait = max(wait, float(retry_after))
        self.sleep(max(0.0, min(wait, deadline - time.monotonic())))


class HTTPChatClient(ChatModel):
    """A chat model a server answers over HTTP: the sampling sent with every call, the call's time
    budget, retries, the model's tokenizer where the engine knows it, the tool protocol, and the
    calls in flight. Start and stop are no-ops: the server is the user's, or a ``ServedModel``'s."""

    def __init__(self, spec: ModelSpec, base_url: str, *, sampling: Mapping[str, object] | None, timeout_s: float,
                 max_retries: int, backoff_s: float, token_counter: TokenCounter | None, tool_protocol: ToolProtocol,
                 sleep: Callable[[float], None]) -> None:
        self.spec = spec
        self.base_url = base_url.rstrip("/")
        self.sampling = dict(DEFAULT_SAMPLING if sampling is None else sampling)
        self.timeout_s = timeout_s
        self.retry = Retry(max_retries, backoff_s, sleep)
        self.token_counter = token_counter
        self.tool_protocol = tool_protocol
        self.calls = CallLog(spec.label)


class OutOfTime(Exception):
    """Raised by a reader that sees the call's deadline pass between two pieces of the stream."""


class StreamReader(ABC):
    """Reads one streamed answer and keeps what has arrived, so that a stop (the time budget,
    the loop guard, the client's token cap) returns the partial answer with its telemetry
    instead of losing it. A provider writes ``read``; ``fill_counts`` fills the token counts
    the server did not send (from a tokenizer, marked estimated)."""

    def __init__(self, call: ModelCall, clock: StreamClock, fill_counts: FillCounts) -> None:
        self.call = call
        self.clock = clock
        self.fill_counts = fill_counts
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: list[ToolCall] = []
        self.finish: str | None = None
        self.guard = RepetitionGuard()

    @abstractmethod
    def read(self, lines: Iterator[str], deadline: float) -> ChatResponse:
        """The whole answer, or a partial one; raises OutOfTime or ModelCallError."""

    def pending(self) -> tuple[str, str]:
        """Text a reader holds back (a possibly split tag) as (reasoning, answer), once the stream ends."""
        return "", ""

    def text(self, reasoning: str = "", answer: str = "") -> None:
        """Take streamed text: time it, and watch it for loops (see ``looping``)."""
        if reasoning:
            self.reasoning.append(reasoning)
            self.clock.token(answer=False)
        if answer:
            self.content.append(answer)
            self.clock.token(answer=True)

    def looping(self, text: str) -> bool:
        return self.guard.feed(text)

    def parse(self, data: str, what: str, server: str) -> dict[str, object]:
        """One streamed JSON object (``what``: 'chunk', 'line'); a malformed one, or one carrying the
        server's ``error``, ends the call as ``Failure.malformed`` with what was measured so far."""
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise ModelCallError(f"malformed stream {what}: {data[:120]!r}", Failure.malformed,
                                 self.clock.finish(self.call))
        if "error" in obj:
            raise ModelCallError(f"{server} error mid-stream: {str(obj['error'])[:200]}", Failure.malformed,
                                 self.clock.finish(self.call))
        return obj

    def response(self, stop: CallStop = CallStop.complete) -> ChatResponse:
        r, a = self.pending()
        thought, answer = "".join(self.reasoning) + r, "".join(self.content) + a
        call = self.call
        if stop is CallStop.repetition:
            call.finish_reason = "repetition"
        elif stop is CallStop.budget:
            call.finish_reason = "budget"
        else:
            call.finish_reason = self.finish
        self.clock.finish(call)  # before counting, which may ask the server: not part of the call's time
        self.fill_counts(call, answer, thought)
        rate(call)
        return ChatResponse(content=answer, reasoning=thought, tool_calls=self.tool_calls,
                            finish_reason=call.finish_reason, call=call, stop=stop)


class _Watchdog:
    """Closes the response at the deadline, so a server that goes quiet cannot hold the call
    past its budget (httpx's read timeout is per read, not per call)."""

    def __init__(self, response: Closable, seconds: float) -> None:
        self.fired = False
        self._response = response
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        cut(self._response)

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def out_of_time(reader: StreamReader, budget: float) -> ChatResponse:
    """The budget ran out: the partial answer once anything arrived, else a timeout."""
    if reader.clock.first_any is None:
        raise ModelCallError(f"no first token within the {budget:g} s budget", Failure.timeout,
                             reader.clock.finish(reader.call))
    return reader.response(CallStop.budget)


def stream_call(url: str, body: dict[str, object], call: ModelCall, budget: float, retry: Retry,
                reader: Callable[[StreamClock], StreamReader], server: str,
                headers: dict[str, str] | None = None) -> ChatResponse:
    """POST ``body`` and hand the streamed lines to a fresh ``reader``; retry only what is
    transient. ``server`` names the server in error messages."""
    import httpx

    deadline = time.monotonic() + budget
    sent_tools = "tools" in body
    for attempt in range(retry.max_retries + 1):
        call.retries = attempt
        clock = StreamClock()
        current = reader(clock)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ModelCallError(f"no answer within the {budget:g} s budget", Failure.timeout, clock.finish(call))
        watchdog: _Watchdog | None = None
        try:
            with httpx.Client(timeout=httpx.Timeout(remaining, connect=min(10.0, remaining))) as client, \
                    client.stream("POST", url, json=body, headers=headers) as resp:
                if resp.status_code >= 400 and retried(resp.status_code, sent_tools) and attempt < retry.max_retries:
                    retry.wait(attempt, resp.headers.get("retry-after"), deadline)
                    continue
                if resp.status_code >= 400:
                    resp.read()
                    raise _http_error(server, resp.status_code, resp.text, sent_tools, clock.finish(call))
                with tracked(resp), _Watchdog(resp, deadline - time.monotonic()) as watchdog:
                    return current.read(resp.iter_lines(), deadline)
        except OutOfTime:
            return out_of_time(current, budget)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            if attempt < retry.max_retries and time.monotonic() < deadline:
                retry.wait(attempt, None, deadline)
                continue
            raise ModelCallError(f"cannot reach {url}: {e}", Failure.unreachable, clock.finish(call)) from None
        except httpx.ReadTimeout:
            return out_of_time(current, budget)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamError) as e:
            if watchdog is not None and watchdog.fired:
                return out_of_time(current, budget)
            raise ModelCallError(f"the stream was cut: {e}", Failure.stream_cut, clock.finish(call)) from None
    raise AssertionError("unreachable")


def _http_error(server: str, status: int, text: str, sent_tools: bool, call: ModelCall) -> ModelCallError:
    failure = http_failure(status, sent_tools)
    text = text[:300].replace("\n", " ")
    refused = {Failure.tools_rejected: "the request with tools", Failure.prompt_rejected: "the prompt"}
    message = (f"{server} refused {refused[failure]} ({status}): {text}" if failure in refused
               else f"{server} answered {status}: {text}")
    return ModelCallError(message, failure, call, status=status)
