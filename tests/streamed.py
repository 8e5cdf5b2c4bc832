"""What a model server streamed, recorded beside agenteval's client, so a test checks the client's
parsed answer against the server's own chunks rather than against the parser itself."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest


def record_streams(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every line read with ``httpx.Response.iter_lines`` from now on (how agenteval reads a
    stream), in order; what the client stopped reading early is not there either."""
    lines: list[str] = []
    real = httpx.Response.iter_lines

    def iter_lines(self: httpx.Response) -> Iterator[str]:
        for line in real(self):
            lines.append(line)
            yield line

    monkeypatch.setattr(httpx.Response, "iter_lines", iter_lines)
    return lines


def chunks(lines: list[str]) -> list[dict[str, Any]]:
    """The JSON chunks of SSE ``data:`` lines, ``[DONE]`` left out."""
    data = [line[5:].strip() for line in lines if line.startswith("data:")]
    return [json.loads(d) for d in data if d != "[DONE]"]


def tool_call_count(streamed: list[dict[str, Any]]) -> int:
    """How many tool calls the server streamed: one per tool-call index of each choice (a delta
    without an index opens a call where it carries an id)."""
    calls: set[tuple[int, object]] = set()
    for chunk in streamed:
        for choice in chunk.get("choices") or []:
            for tc in (choice.get("delta") or {}).get("tool_calls") or []:
                index = tc.get("index")
                if index is not None:
                    calls.add((choice.get("index", 0), index))
                elif tc.get("id"):
                    calls.add((choice.get("index", 0), tc["id"]))
    return len(calls)
