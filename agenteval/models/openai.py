"""``openai``: any OpenAI-compatible server (llama.cpp's server, llama-cpp-python,
vLLM, LM Studio, SGLang, ``transformers serve``, Ollama's /v1), streamed with httpx.

Reasoning arrives as ``reasoning_content`` or ``reasoning`` deltas, or as
``<think>...</think>`` in the text; tool calls as indexed deltas; usage in the
last chunk (``stream_options.include_usage``); llama.cpp adds ``timings``.
A stream stopped early (time budget, loop guard, a server ignoring max_tokens)
still returns its partial answer, with ``ChatResponse.stop`` saying why.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator, Mapping

from agenteval.errors import ModelSpecError
from agenteval.logs import Log
from agenteval.models.base import ModelRequest, ModelSpec, TokenCounter, ToolSupport
from agenteval.models.chat import (CallStop, ChatResponse, Failure, Message, ModelCallError, ToolCall, ToolSchema,
                                   as_list, as_object, as_text)
from agenteval.models.sampling import for_this_sample
from agenteval.models.server_probe import ServerProbe
from agenteval.models.streaming import FillCounts, HTTPChatClient, OutOfTime, StreamReader, stream_call
from agenteval.models.telemetry import StreamClock, ThinkSplitter, usage_into
from agenteval.records import ModelCall, ToolProtocol

Sleep = Callable[[float], None]
DEFAULT_URL = "http://127.0.0.1:8080/v1"


class OpenAICompatClient(HTTPChatClient):
    """Streams /chat/completions and measures each call. Start and stop are no-ops: the
    server is the user's, or a ``ServedModel``'s engine. What the server is (and its
    tokenizer endpoint, for servers that stream no usage) is probed once, on first need."""

    def __init__(self, spec: ModelSpec, base_url: str | None = None, *, api_key: str | None = None,
                 sampling: Mapping[str, object] | None = None, timeout_s: float = 600.0, max_retries: int = 4,
                 backoff_s: float = 0.5, token_counter: TokenCounter | None = None,
                 tool_protocol: ToolProtocol = ToolProtocol.auto, sleep: Sleep = time.sleep) -> None:
        super().__init__(spec, base_url or spec.base_url or DEFAULT_URL, sampling=sampling, timeout_s=timeout_s,
                         max_retries=max_retries, backoff_s=backoff_s, token_counter=token_counter,
                         tool_protocol=tool_protocol, sleep=sleep)
        self.api_key = api_key or os.environ.get("AGENTEVAL_API_KEY") or "none"
        self.headers = {"Authorization": f"Bearer {self.api_key}"}
        self.probe = ServerProbe(self.base_url, spec.name or "default", self.headers)

    def preflight(self, log: Log) -> None:
        if ":11434" in self.base_url:
            log(f"warning: {self.spec.label} uses Ollama's /v1 endpoint, which silently truncates prompts at "
                f"Ollama's default context; use ollama:{self.spec.name} (native API, num_ctx set) instead")
        warning = self.probe.facts().fallback_warning(self.spec.label)
        if warning:
            log(warning)

    def tool_support(self) -> ToolSupport:
        supports = self.probe.facts().supports_tools
        return ToolSupport.unknown if supports is None else ToolSupport.yes if supports else ToolSupport.no

    # -- one call ------------------------------------------------------------
    def chat(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
             max_tokens: int | None = None, timeout_s: float | None = None) -> ChatResponse:
        budget = timeout_s or self.timeout_s
        body: dict[str, object] = {"model": self.spec.name or "default", "messages": messages, "stream": True,
                                   "stream_options": {"include_usage": True}, **for_this_sample(self.sampling)}
        if tools:
            body["tools"] = tools
        if max_tokens:
            body["max_tokens"] = max_tokens

        def fill(call: ModelCall, answer: str, thought: str) -> None:
            self._fill_counts(call, messages, answer, thought)

        with self.calls.call() as call:
            return stream_call(f"{self.base_url}/chat/completions", body, call, budget, self.retry,
                               reader=lambda clock: _OpenAIStream(call, clock, fill, max_tokens),
                               server="server", headers=self.headers)

    def _fill_counts(self, call: ModelCall, messages: list[Message], answer: str, thought: str) -> None:
        """Counts the server did not send (it streams no usage, or the stream was stopped early):
        the model's tokenizer where the engine knows it, else the server's tokenize endpoint;
        marked estimated."""
        count: Callable[[str], int | None] = self.token_counter or self.probe.count
        if call.completion_tokens is None and (answer or thought):
            call.completion_tokens = count(answer + thought)
            call.reasoning_tokens = count(thought) if thought else 0
            call.tokens_estimated = call.completion_tokens is not None
        elif call.reasoning_tokens is None and thought:
            call.reasoning_tokens = count(thought)
            call.tokens_estimated = call.tokens_estimated or call.reasoning_tokens is not None
        if call.prompt_tokens is None:
            call.prompt_tokens = self.probe.count_prompt(messages) if self.token_counter is None else \
                sum(self.token_counter(str(m.get("content") or "")) for m in messages)
            call.tokens_estimated = call.tokens_estimated or call.prompt_tokens is not None

    def fingerprint_info(self) -> dict[str, object]:
        return {"base_url": self.base_url, "sampling": self.sampling, **self.probe.facts().info()}


class _OpenAIStream(StreamReader):
    """One /chat/completions SSE stream: reasoning and answer deltas, indexed tool-call
    deltas, usage and llama.cpp's ``timings`` in the last chunks."""

    def __init__(self, call: ModelCall, clock: StreamClock, fill: FillCounts, max_tokens: int | None) -> None:
        super().__init__(call, clock, fill)
        self.max_tokens = max_tokens
        self.think = ThinkSplitter()
        self.slots: dict[int, dict[str, str]] = {}

    def pending(self) -> tuple[str, str]:
        return self.think.flush()

    def response(self, stop: CallStop = CallStop.complete) -> ChatResponse:
        self.tool_calls = [ToolCall(id=t["id"] or f"call_{i}", name=t["name"], arguments=t["arguments"])
                           for i, t in sorted(self.slots.items())]
        return super().response(stop)

    def read(self, lines: Iterator[str], deadline: float) -> ChatResponse:
        call, clock = self.call, self.clock
        done = False
        pieces = 0  # a piece holds at least one token: more pieces than max_tokens means the cap is ignored
        for line in lines:
            if time.monotonic() > deadline:
                raise OutOfTime
            if not line.startswith("data:"):
                continue  # SSE comments, event names, keep-alives
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            chunk = self.parse(data, "chunk", "server")
            usage_into(call, chunk.get("usage"))
            timings = chunk.get("timings")
            if isinstance(timings, dict):
                call.server_timings = timings
            for choice in map(as_object, as_list(chunk.get("choices"))):
                delta = as_object(choice.get("delta"))
                r = as_text(delta.get("reasoning_content")) or as_text(delta.get("reasoning"))
                text_r, text_a = self.think.feed(as_text(delta.get("content")))
                self.text(r + text_r, text_a)
                pieces += bool(r or text_r or text_a)
                for tc in map(as_object, as_list(delta.get("tool_calls"))):
                    index = tc.get("index")
                    slot = self.slots.setdefault(index if isinstance(index, int) else len(self.slots),
                                                 {"id": "", "name": "", "arguments": ""})
                    fn = as_object(tc.get("function"))
                    slot["id"] = as_text(tc.get("id")) or slot["id"]
                    slot["name"] += as_text(fn.get("name"))
                    slot["arguments"] += as_text(fn.get("arguments"))
                    clock.token(answer=True)
                if as_text(choice.get("finish_reason")):
                    self.finish = as_text(choice.get("finish_reason"))
                if self.max_tokens and pieces > self.max_tokens:
                    self.finish = "length"  # the server ignored max_tokens: stop reading
                    return self.response(CallStop.length)
                if self.looping(r + text_r + text_a):
                    return self.response(CallStop.repetition)
        if not done and self.finish is None:
            raise ModelCallError("the stream ended before the answer did", Failure.stream_cut, clock.finish(call))
        return self.response(CallStop.length if self.finish == "length" else CallStop.complete)


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
