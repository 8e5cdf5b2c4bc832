"""The part of a streamed model call that every provider shares: bookkeeping of
calls in flight, retries with backoff for transient failures only, the time
budget, and turning HTTP statuses and transport failures into classified
``ModelCallError``s."""

from __future__ import annotations

import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from agenteval.models.chat import ChatResponse, Failure, ModelCallError, http_failure, tracked
from agenteval.models.telemetry import StreamClock
from agenteval.records import ModelCall

TRANSIENT_STATUS = {429, 500, 502, 503, 504}


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


def stream_call(url: str, body: dict[str, object], call: ModelCall, budget: float, retry: Retry,
                read: Callable[[Iterator[str], StreamClock, float], ChatResponse], server: str,
                headers: dict[str, str] | None = None) -> ChatResponse:
    """POST ``body`` and hand the streamed lines to ``read``; retry only what is transient.
    ``server`` names the server in error messages."""
    import httpx

    deadline = time.monotonic() + budget
    for attempt in range(retry.max_retries + 1):
        call.retries = attempt
        clock = StreamClock()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ModelCallError(f"no answer within the {budget:g} s budget", Failure.timeout, clock.finish(call))
        try:
            with httpx.Client(timeout=httpx.Timeout(remaining, connect=min(10.0, remaining))) as client, \
                    client.stream("POST", url, json=body, headers=headers) as resp:
                if resp.status_code in TRANSIENT_STATUS and attempt < retry.max_retries:
                    retry.wait(attempt, resp.headers.get("retry-after"), deadline)
                    continue
                if resp.status_code >= 400:
                    resp.read()
                    raise _http_error(server, resp.status_code, resp.text, "tools" in body, clock.finish(call))
                with tracked(resp):
                    return read(resp.iter_lines(), clock, deadline)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            if attempt < retry.max_retries and time.monotonic() < deadline:
                retry.wait(attempt, None, deadline)
                continue
            raise ModelCallError(f"cannot reach {url}: {e}", Failure.unreachable, clock.finish(call)) from None
        except httpx.ReadTimeout:
            what = "first token" if clock.first_any is None else "answer"
            raise ModelCallError(f"no {what} within the {budget:g} s budget", Failure.timeout,
                                 clock.finish(call)) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamError) as e:
            raise ModelCallError(f"the stream was cut: {e}", Failure.stream_cut, clock.finish(call)) from None
    raise AssertionError("unreachable")


def _http_error(server: str, status: int, text: str, sent_tools: bool, call: ModelCall) -> ModelCallError:
    failure = http_failure(status, sent_tools)
    text = text[:300].replace("\n", " ")
    refused = {Failure.tools_rejected: "the request with tools", Failure.prompt_rejected: "the prompt"}
    message = (f"{server} refused {refused[failure]} ({status}): {text}" if failure in refused
               else f"{server} answered {status}: {text}")
    return ModelCallError(message, failure, call, status=status)
