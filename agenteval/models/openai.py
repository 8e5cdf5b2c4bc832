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
from typing import Callable, Iterator, Mapping

from agenteval.errors import ModelSpecError
from agenteval.models.base import ChatModel, Log, ModelRequest, ModelSpec, TokenCounter
from agenteval.records import ToolProtocol
from agenteval.models.chat import (
    ChatResponse,
    Failure,
    Message,
    ModelCallError,
    ToolCall,
    ToolSchema,
    as_list,
    as_object,
    as_text,
)
from agenteval.models.streaming import CallLog, Retry, stream_call
from agenteval.models.telemetry import RepetitionGuard, StreamClock, ThinkSplitter, usage_into
from agenteval.records import ModelCall

Sleep = Callable[[float], None]
DEFAULT_URL = "http://127.0.0.1:8080/v1"


class OpenAICompatClient(ChatModel):
    """Streams /chat/completions and measures each call. Start and stop are no-ops: the
    server is the user's, or a ``ServedModel``'s engine."""

    def __init__(self, spec: ModelSpec, base_url: str | None = None, *, api_key: str | None = None,
                 sampling: Mapping[str, object] | None = None, timeout_s: float = 600.0, max_retries: int = 4,
                 backoff_s: float = 0.5, token_counter: TokenCounter | None = None,
                 tool_protocol: ToolProtocol = ToolProtocol.auto, sleep: Sleep = time.sleep) -> None:
        self.spec = spec
        self.base_url = (base_url or spec.base_url or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("AGENTEVAL_API_KEY") or "none"
        self.sampling = dict(sampling or {})
        self.timeout_s = timeout_s
        self.retry = Retry(max_retries, backoff_s, sleep)
        self.token_counter = token_counter
        self.tool_protocol = tool_protocol
        self.calls = CallLog(spec.label)

    def preflight(self, log: Log) -> None:
        if ":11434" in self.base_url:
            log(f"warning: {self.spec.label} uses Ollama's /v1 endpoint, which silently truncates prompts at "
                f"Ollama's default context; use ollama:{self.spec.name} (native API, num_ctx set) instead")

    # -- one call ------------------------------------------------------------
    def chat(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
             max_tokens: int | None = None, timeout_s: float | None = None) -> ChatResponse:
        budget = timeout_s or self.timeout_s
        body: dict[str, object] = {"model": self.spec.name or "default", "messages": messages, "stream": True,
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
                server="server", headers=headers)

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
                raise ModelCallError(f"the answer ran past the {budget:g} s budget", Failure.timeout,
                                     clock.finish(call))
            if not line.startswith("data:"):
                continue  # SSE comments, event names, keep-alives
            data = line[5:].strip()
            if data == "[DONE]" or done:
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ModelCallError(f"malformed stream chunk: {data[:120]!r}", Failure.malformed,
                                     clock.finish(call)) from None
            if not isinstance(chunk, dict):
                raise ModelCallError(f"malformed stream chunk: {data[:120]!r}", Failure.malformed, clock.finish(call))
            if "error" in chunk:
                raise ModelCallError(f"server error mid-stream: {str(chunk['error'])[:200]}", Failure.malformed,
                                     clock.finish(call))
            usage_into(call, chunk.get("usage"))
            if isinstance(chunk.get("timings"), dict):
                call.server_timings = chunk["timings"]
            for choice in map(as_object, as_list(chunk.get("choices"))):
                delta = as_object(choice.get("delta"))
                r = as_text(delta.get("reasoning_content")) or as_text(delta.get("reasoning"))
                text_r, text_a = think.feed(as_text(delta.get("content")))
                r += text_r
                if r:
                    reasoning.append(r)
                    clock.token(answer=False)
                if text_a:
                    content.append(text_a)
                    clock.token(answer=True)
                pieces += bool(r or text_a)
                for tc in map(as_object, as_list(delta.get("tool_calls"))):
                    index = tc.get("index")
                    slot = tools.setdefault(index if isinstance(index, int) else len(tools),
                                            {"id": "", "name": "", "arguments": ""})
                    fn = as_object(tc.get("function"))
                    slot["id"] = as_text(tc.get("id")) or slot["id"]
                    slot["name"] += as_text(fn.get("name"))
                    slot["arguments"] += as_text(fn.get("arguments"))
                    clock.token(answer=True)
                if as_text(choice.get("finish_reason")):
                    finish = as_text(choice.get("finish_reason"))
                if max_tokens and pieces > max_tokens:
                    finish, done = "length", True  # the server ignored max_tokens: stop reading
                    break
                if guard.feed(r + text_a):
                    call.finish_reason = "repetition"
                    self._estimate(call, "".join(content), "".join(reasoning))
                    raise ModelCallError("the model kept repeating the same text", Failure.repetition,
                                         clock.finish(call))
        if not done and finish is None:
            raise ModelCallError("the stream ended before the answer did", Failure.stream_cut, clock.finish(call))
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

    def fingerprint_info(self) -> dict[str, object]:
        return {"base_url": self.base_url, "sampling": self.sampling}


def create(request: ModelRequest) -> OpenAICompatClient:
    """``openai:NAME@BASE_URL``, or an alias with ``base_url`` or an ``engine``."""
    cfg, spec = request.settings, request.spec
    if cfg is None:
        return OpenAICompatClient(spec)
    if not spec.base_url:
        raise ModelSpecError(f"openai model {spec.name!r}: give 'base_url' (a server you run) or 'engine' "
                             f"(a server agenteval starts)")
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    return OpenAICompatClient(spec, spec.base_url, api_key=api_key, sampling=cfg.sampling,
                              token_counter=request.token_counter, tool_protocol=ToolProtocol(cfg.tools))
