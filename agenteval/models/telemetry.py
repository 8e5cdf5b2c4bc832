"""Measuring a streamed model call honestly.

Times come from this process's monotonic clock; token counts come from the
server's usage (a stream chunk can hold several tokens), and only where a
server sends none are they counted with a tokenizer and marked estimated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agenteval.models.chat import as_count, as_object
from agenteval.records import ModelCall

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass
class StreamClock:
    """First token, first answer token, last token, relative to the request."""

    t0: float = field(default_factory=time.monotonic)
    first_any: float | None = None
    first_answer: float | None = None
    last: float | None = None

    def token(self, answer: bool) -> None:
        now = time.monotonic()
        if self.first_any is None:
            self.first_any = now
        if answer and self.first_answer is None:
            self.first_answer = now
        self.last = now

    def finish(self, call: ModelCall) -> ModelCall:
        end = time.monotonic()
        call.e2e_s = round(end - self.t0, 6)
        if self.first_any is not None:
            call.ttft_s = round(self.first_any - self.t0, 6)
        if self.first_answer is not None:
            call.ttfat_s = round(self.first_answer - self.t0, 6)
        if self.first_any is not None and self.last is not None and self.last > self.first_any:
            call.decode_s = self.last - self.first_any  # unrounded: a fast stream can take under a microsecond
        return rate(call)


def rate(call: ModelCall) -> ModelCall:
    """Decode tokens/s from the call's counts and decode time (again after counts were filled in)."""
    if call.decode_s and call.completion_tokens:
        call.decode_tokens_per_s = call.completion_tokens / call.decode_s
    return call


class ThinkSplitter:
    """Splits streamed text into reasoning (inside <think>...</think>) and answer,
    across chunk boundaries; a model that opens with thinking but no tag is
    handled by servers that send reasoning in its own field."""

    def __init__(self) -> None:
        self.inside = False
        self.pending = ""

    def feed(self, text: str) -> tuple[str, str]:
        """Returns (reasoning, answer) parts of the text seen so far that are certain."""
        buf = self.pending + text
        reasoning: list[str] = []
        answer: list[str] = []
        while buf:
            tag = THINK_CLOSE if self.inside else THINK_OPEN
            i = buf.find(tag)
            if i >= 0:
                (reasoning if self.inside else answer).append(buf[:i])
                buf = buf[i + len(tag):]
                self.inside = not self.inside
                continue
            keep = _partial_suffix(buf, tag)  # a tag may be split across chunks
            (reasoning if self.inside else answer).append(buf[: len(buf) - keep])
            buf = buf[len(buf) - keep:]
            break
        self.pending = buf
        return "".join(reasoning), "".join(answer)

    def flush(self) -> tuple[str, str]:
        rest, self.pending = self.pending, ""
        return (rest, "") if self.inside else ("", rest)


def _partial_suffix(text: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class RepetitionGuard:
    """Notices a model stuck repeating the same text (a common failure of small
    quantized models) so the call can be stopped instead of burning the budget.
    Units of any length up to ``max_unit`` characters are caught (Gemma 3 270M's
    real loop was a 206-character unit); the window kept is what the longest
    unit needs."""

    def __init__(self, min_span: int = 400, max_unit: int = 2000, min_repeats: int = 3,
                 check_every: int = 64) -> None:
        self.min_span = min_span
        self.max_unit = max_unit
        self.min_repeats = min_repeats
        self.check_every = check_every
        self.window = max(min_span, min_repeats * max_unit) + check_every
        self.tail = ""
        self.since_check = 0

    def feed(self, text: str) -> bool:
        self.tail = (self.tail + text)[-self.window:]
        self.since_check += len(text)
        if self.since_check < self.check_every or len(self.tail) < self.min_span:
            return False
        self.since_check = 0
        return repeated_unit(self.tail, self.min_span, self.max_unit, self.min_repeats) is not None


def repeated_unit(text: str, min_span: int = 400, max_unit: int = 2000, min_repeats: int = 3) -> int | None:
    """The length of the shortest unit that the end of ``text`` repeats, at least ``min_repeats``
    times and over at least ``min_span`` characters; None when it repeats none.

    Candidate lengths are the distances back to earlier copies of the last few characters
    (``str.rfind``), so long non-repeating text costs a handful of comparisons, not one per
    possible length. The end may stop part-way through a unit."""
    n = len(text)
    key_len = min(16, n)
    if key_len == 0:
        return None
    key = text[n - key_len:]
    pos = text.rfind(key, 0, n - 1)
    while pos >= 0:
        unit = n - key_len - pos
        if unit > max_unit:
            return None
        span = max(min_span, min_repeats * unit)
        if span > n:
            return None
        # periodic with period ``unit`` over the last ``span`` characters
        if text[n - span + unit:] == text[n - span:n - unit] and text[n - unit:].strip():
            return unit
        pos = text.rfind(key, 0, pos + key_len - 1)
    return None


def looping(text: str, min_span: int = 400, max_unit: int = 2000) -> bool:
    """True when the end of ``text`` is one unit repeated over at least ``min_span`` chars."""
    return repeated_unit(text, min_span, max_unit) is not None


def usage_into(call: ModelCall, usage: object) -> None:
    """Fill token counts from an OpenAI-style usage object (what is missing stays as it was)."""
    usage = as_object(usage)
    prompt, completion = as_count(usage.get("prompt_tokens")), as_count(usage.get("completion_tokens"))
    call.prompt_tokens = call.prompt_tokens if prompt is None else prompt
    call.completion_tokens = call.completion_tokens if completion is None else completion
    reasoning = as_count(as_object(usage.get("completion_tokens_details")).get("reasoning_tokens"))
    if reasoning is not None:
        call.reasoning_tokens = reasoning
