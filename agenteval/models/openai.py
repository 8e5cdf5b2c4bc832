"""``openai``: any OpenAI-compatible server (llama.cpp's server, llama-cpp-python,
vLLM, LM Studio, SGLang, ``transformers serve``, Ollama's /v1), streamed with httpx.

Reasoning arrives as ``reasoning_content`` or ``reasoning`` deltas, or as
``<think>...</think>`` in the text; tool calls as indexed deltas; usage in the
last chunk (``stream_options.include_usage``); llama.cpp adds ``timings``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterator

from agenteval.models.base import ModelSpec
from agenteval.models.chat import ChatResponse, ModelCallError, ToolCall
from agenteval.models.streaming import CallLog, Retry, stream_call
from agenteval.models.telemetry import RepetitionGuard, StreamClock, ThinkSplitter, usage_into
from agenteval.records import ModelCall

Sleep = Callable[[float], None]


class OpenAICompatClient:
    """Streams /chat/completions and measures each call."""

    def __init__(self, spec: ModelSpec, base_url: str | None = None, *, api_key: str | None = None,
                 sampling: dict[str, Any] | None = None, timeout_s: float = 600.0, max_retries: int = 4,
                 backoff_s: float = 0.5, token_counter: Callable[[str], int] | None = None,
                 sleep: Sleep = time.sleep) -> None:
        self.spec = spec
        self.base_url = (base_url or spec.base_url or "http://127.0.0.1:8080/v1").rstrip("/")
        self.api_key = api_key or os.environ.get("AGENTEVAL_API_KEY") or "none"
        self.sampling = dict(sampling or {})
        self.timeout_s = timeout_s
        self.retry = Retry(max_retries, backoff_s, sleep)
        self.token_counter = token_counter
        self.calls = CallLog(spec.label)

    # -- one call ------------------------------------------------------------
    def chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None,
             max_tokens: int | None = None, timeout_s: float | None = None) -> ChatResponse:
        budget = timeout_s or self.timeout_s
        body: dict[str, Any] = {"model": self.spec.name or "default", "messages": messages, "stream": True,
                                "stream_options": {"include_usage": True}, **self.sampling}
        if tools:
            body["tools"] = tools
        if max_tokens:
            body["max_tokens"] = max_tokens
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with self.calls.call() as call:
            return stream_call(
                f"{self.base_url}/chat/completions", body, call, budget, self.retry,
                read=lambda lines, clock, deadline: self._read_stream(lines, call, clock, deadline, budget, max_tokens),
                http_error=lambda resp, clock: _http_error(resp, call, clock), headers=headers)

    def _read_stream(self, lines: Iterator[str], call: ModelCall, clock: StreamClock, deadline: float,
                     budget: float, max_tokens: int | None) -> ChatResponse:
        think = ThinkSplitter()
        guard = RepetitionGuard()
        content: list[str] = []
        reasoning: list[str] = []
        tools: dict[int, dict[str, str]] = {}
        finish: str | None = None
        done = False
        pieces = 0  # a piece holds at least one token: more pieces than max_tokens means the cap is ignored
        for line in lines:
            if time.monotonic() > deadline:
                raise ModelCallError(f"the answer ran past the {budget:g} s budget", "model", clock.finish(call))
            if not line.startswith("data:"):
                continue  # SSE comments, event names, keep-alives
            data = line[5:].strip()
            if data == "[DONE]" or done:
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ModelCallError(f"malformed stream chunk: {data[:120]!r}", "infra", clock.finish(call)) from None
            if not isinstance(chunk, dict):
                raise ModelCallError(f"malformed stream chunk: {data[:120]!r}", "infra", clock.finish(call))
            if "error" in chunk:
                raise ModelCallError(f"server error mid-stream: {str(chunk['error'])[:200]}", "infra",
                                     clock.finish(call))
            usage_into(call, chunk.get("usage"))
            if isinstance(chunk.get("timings"), dict):
                call.server_timings = chunk["timings"]
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                r = delta.get("reasoning_content") or delta.get("reasoning") or ""
                text_r, text_a = think.feed(delta.get("content") or "")
                r += text_r
                if r:
                    reasoning.append(r)
                    clock.token(answer=False)
                if text_a:
                    content.append(text_a)
                    clock.token(answer=True)
                pieces += bool(r or text_a)
                for tc in delta.get("tool_calls") or []:
                    slot = tools.setdefault(int(tc.get("index", len(tools))), {"id": "", "name": "", "arguments": ""})
                    fn = tc.get("function") or {}
                    slot["id"] = tc.get("id") or slot["id"]
                    slot["name"] += fn.get("name") or ""
                    slot["arguments"] += fn.get("arguments") or ""
                    clock.token(answer=True)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if max_tokens and pieces > max_tokens:
                    finish, done = "length", True  # the server ignored max_tokens: stop reading
                    break
                if guard.feed(r + text_a):
                    call.finish_reason = "repetition"
                    self._estimate(call, "".join(content), "".join(reasoning))
                    raise ModelCallError("the model kept repeating the same text", "model", clock.finish(call))
        if not done and finish is None:
            raise ModelCallError("the stream ended before the answer did", "infra", clock.finish(call))
        r, a = think.flush()
        reasoning.append(r)
        content.append(a)
        call.finish_reason = finish
        answer, thought = "".join(content), "".join(reasoning)
        self._estimate(call, answer, thought)
        clock.finish(call)
        tool_calls = [ToolCall(id=t["id"] or f"call_{i}", name=t["name"], arguments=t["arguments"])
                      for i, t in sorted(tools.items())]
        return ChatResponse(content=answer, reasoning=thought, tool_calls=tool_calls, finish_reason=finish, call=call)

    def _estimate(self, call: ModelCall, answer: str, thought: str) -> None:
        """Counts the server did not send, from the model's tokenizer when known (marked estimated)."""
        if self.token_counter is None:
            return
        if call.completion_tokens is None:
            call.completion_tokens = self.token_counter(answer + thought)
            call.reasoning_tokens = self.token_counter(thought) if thought else 0
            call.tokens_estimated = True
        elif call.reasoning_tokens is None and thought:
            call.reasoning_tokens = self.token_counter(thought)
            call.tokens_estimated = True

    def fingerprint_info(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "sampling": self.sampling}


def _http_error(resp: Any, call: ModelCall, clock: StreamClock) -> ModelCallError:
    text = resp.text[:300].replace("\n", " ")
    lowered = text.lower()
    if resp.status_code in (400, 413) and any(w in lowered for w in ("context", "too long", "exceed", "n_ctx")):
        return ModelCallError(f"the prompt does not fit the model's context ({resp.status_code}): {text}",
                              "model", clock.finish(call))
    return ModelCallError(f"server answered {resp.status_code}: {text}", "infra", clock.finish(call))


def create(spec: ModelSpec) -> OpenAICompatClient:
    return OpenAICompatClient(spec)
