"""Stream measurement helpers: think-tag splitting, repetition, timings."""

from __future__ import annotations

import time

import random
import string
from pathlib import Path

import pytest

from agenteval.models.telemetry import (
                                        RepetitionGuard,
                                        StreamClock,
                                        ThinkSplitter,
                                        looping,
                                        repeated_unit,
                                        usage_into,
)
from agenteval.records import ModelCall


def split_all(chunks: list[str]) -> tuple[str, str]:
    s = ThinkSplitter()
    reasoning, answer = "", ""
    for c in chunks:
        r, a = s.feed(c)
        reasoning, answer = reasoning + r, answer + a
    r, a = s.flush()
    return reasoning + r, answer + a


def test_think_tags_split_across_chunks() -> None:
    text = "<think>I should write a file.</think>Here it is: x < y"
    whole = split_all([text])
    for cut in range(1, len(text)):
        assert split_all([text[:cut], text[cut:]]) == whole
    assert whole == ("I should write a file.", "Here it is: x < y")
    assert split_all(list(text)) == whole


def test_unclosed_think_is_reasoning() -> None:
    assert split_all(["<think>still thinking", " and more"]) == ("still thinking and more", "")


def test_no_think_is_all_answer() -> None:
    assert split_all(["plain ", "answer <thin", "k"]) == ("", "plain answer <think")


def test_repetition() -> None:
    assert looping("intro " + "the same line\n" * 60)
    assert looping("x" * 500)
    assert not looping("".join(f"line {i}\n" for i in range(200)))
    guard = RepetitionGuard()
    assert not any(guard.feed(f"token {i} ") for i in range(300))
    assert any(guard.feed("again and again ") for _ in range(100))


def _unit(length: int) -> str:
    rnd = random.Random(length)
    return "".join(rnd.choice(string.ascii_letters + string.digits + " \n.,") for _ in range(length))


def _first_stop(text: str, piece: int = 7) -> int | None:
    """Where a fresh guard fed ``text`` in pieces stops it, or None."""
    guard = RepetitionGuard()
    for i in range(0, len(text), piece):
        if guard.feed(text[i:i + piece]):
            return i + piece
    return None


@pytest.mark.parametrize("length", [5, 13, 64, 199, 200, 206, 333, 1000, 1999, 2000])
def test_repeated_units_up_to_2000_chars_are_caught(length: int) -> None:
    unit = _unit(length)
    reps = max(4, -(-800 // length))
    text = "Sure, here is the plan:\n" + unit * reps + unit[: length // 2]
    assert repeated_unit(text) == length
    stop = _first_stop(text)
    assert stop is not None and stop <= len("Sure, here is the plan:\n") + max(400, 3 * length) + 64 + 7
    assert _first_stop("Sure, here is the plan:\n" + unit * 2 + unit[: length // 2]) is None  # twice is no loop


def test_a_unit_repeated_only_twice_is_no_loop() -> None:
    unit = _unit(1500)
    assert repeated_unit("intro " + unit * 2) is None


def test_whitespace_runs_are_no_loop() -> None:
    assert not looping("text\n" + " " * 3000)


def test_no_false_positives_on_long_code_prose_and_tables() -> None:
    code = "".join(p.read_text() for p in sorted((Path(__file__).parents[2] / "agenteval").rglob("*.py")))
    table = "| n | square | parity |\n|---|---|---|\n" + "".join(
        f"| {i} | {i * i} | {'odd' if i % 2 else 'even'} |\n" for i in range(3000))
    csv = "".join(f"2024-01-{1 + i % 28:02d},sensor-{i % 7},{(i * 37) % 101}.0\n" for i in range(4000))
    prose = " ".join(f"Step {i}: the agent reads file_{i}.py and checks its output." for i in range(1500))
    for text in (code, table, csv, prose):
        assert _first_stop(text) is None


def test_clock_and_usage() -> None:
    clock = StreamClock()
    time.sleep(0.02)
    clock.token(answer=False)
    time.sleep(0.02)
    clock.token(answer=True)
    time.sleep(0.02)
    clock.token(answer=True)
    call = ModelCall()
    usage_into(call, {"prompt_tokens": 10, "completion_tokens": 40,
                      "completion_tokens_details": {"reasoning_tokens": 12}})
    clock.finish(call)
    assert call.ttft_s is not None and call.ttfat_s is not None and call.decode_s is not None
    assert 0.015 < call.ttft_s < call.ttfat_s < call.e2e_s
    assert call.decode_tokens_per_s is not None
    assert abs(call.decode_tokens_per_s * call.decode_s - call.completion_tokens) < 1e-6
    assert (call.prompt_tokens, call.reasoning_tokens) == (10, 12)


def test_llama_perf_report_is_parsed() -> None:
    from agenteval.serving.engines.llamacpp import parse_llama_perf

    log = """noise
Llama.generate: 1 prefix-match hit, remaining 17 prompt tokens to eval
llama_perf_context_print:        load time =       0.20 ms
llama_perf_context_print: prompt eval time =       0.03 ms /    18 tokens (    0.00 ms per token, 600000.00 tokens per second)
llama_perf_context_print:        eval time =       2.61 ms /    19 runs   (    0.14 ms per token,  7288.07 tokens per second)
llama_perf_context_print:       total time =      73.22 ms /    37 tokens
"""
    t = parse_llama_perf(log)
    assert (t["prompt_n"], t["prompt_ms"], t["eval_n"], t["eval_ms"]) == (18, 0.03, 19, 2.61)
    assert (t["prompt_cached_n"], t["prompt_total_n"]) == (1, 18)
    assert abs(t["generation_tokens_per_s"] - 19 / ((73.22 - 0.03) / 1000)) < 1e-6
    assert abs(t["eval_tokens_per_s"] - 19 / 0.00261) < 1e-6
    assert parse_llama_perf("nothing here") == {}


def test_a_burst_stream_never_divides_by_zero() -> None:
    clock = StreamClock()
    clock.token(answer=True)
    clock.last = clock.first_any + 1e-9 if clock.first_any is not None else None  # two tokens 1 ns apart
    call = ModelCall(completion_tokens=5)
    clock.finish(call)
    assert call.decode_s is not None and call.decode_s > 0
    assert call.decode_tokens_per_s is not None and call.decode_tokens_per_s > 1e6
