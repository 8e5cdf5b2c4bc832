"""``ollama``: Ollama's native API (/api/chat), which reports what its /v1
endpoint hides: load, prompt-eval and eval durations, and lets a run set the
context size (``options.num_ctx``; /v1 silently truncates prompts at
Ollama's default context), thinking (``think``) and ``keep_alive``.

Spec: ``ollama:NAME[@BASE_URL]`` (default http://127.0.0.1:11434).
"""

from __future__ import annotations

import json
import time
from typing import Callable, Iterator, Mapping

from agenteval.errors import ModelSpecError
from agenteval.models.base import ModelRequest, ModelSpec, TokenCounter
from agenteval.models.chat import (CallStop, ChatResponse, Failure, Message, ModelCallError, ToolCall, ToolSchema,
                                   as_count, as_list, as_object, as_text)
from agenteval.models.sampling import for_this_sample
from agenteval.models.streaming import HTTPChatClient, OutOfTime, StreamReader, stream_call
from agenteval.records import ModelCall, ToolProtocol

DEFAULT_URL = "http://127.0.0.1:11434"
DEFAULT_NUM_CTX = 8192
NS = 1e9


class OllamaClient(HTTPChatClient):
    """Streams /api/chat and measures each call. Start and stop are no-ops: Ollama loads
    and unloads models itself (``keep_alive``)."""

    def __init__(self, spec: ModelSpec, *, num_ctx: int = DEFAULT_NUM_CTX, think: bool | None = None,
                 keep_alive: str | int = "5m", sampling: Mapping[str, object] | None = None, timeout_s: float = 600.0,
                 max_retries: int = 4, backoff_s: float = 0.5, token_counter: TokenCounter | None = None,
                 tool_protocol: ToolProtocol = ToolProtocol.auto, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(spec, spec.base_url or DEFAULT_URL, sampling=sampling, timeout_s=timeout_s,
                         max_retries=max_retries, backoff_s=backoff_s, token_counter=token_counter,
                         tool_protocol=tool_protocol, sleep=sleep)
        self.num_ctx = num_ctx
        self.think = think
        self.keep_alive = keep_alive

    def chat(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
             max_tokens: int | None = None, timeout_s: float | None = None) -> ChatResponse:
        budget = timeout_s or self.timeout_s
        options: dict[str, object] = {"num_ctx": self.num_ctx, **for_this_sample(self.sampling)}
        if max_tokens:
            options["num_predict"] = max_tokens
        body: dict[str, object] = {"model": self.spec.name, "messages": to_ollama_messages(messages),
                                   "stream": True, "options": options, "keep_alive": self.keep_alive}
        if tools:
            body["tools"] = tools
        if self.think is not None:
            body["think"] = self.think
        with self.calls.call() as call:
            return stream_call(f"{self.base_url}/api/chat", body, call, budget, self.retry,
                               reader=lambda clock: _OllamaStream(call, clock, self._fill_counts),
                               server="ollama")

    def _fill_counts(self, call: ModelCall, answer: str, thought: str) -> None:
        """Ollama counts prompt and completion (eval) itself; the reasoning share, and the counts of
        a stream stopped before its final object, come from the model's tokenizer (estimated)."""
        counter = self.token_counter
        if counter is None:
            return
        if call.completion_tokens is None and (answer or thought):
            call.completion_tokens = counter(answer + thought)
            call.tokens_estimated = True
        if thought and call.reasoning_tokens is None:
            call.reasoning_tokens = counter(thought)
            call.tokens_estimated = True

    def describe(self) -> dict[str, object]:
        """Server version, quantization, parameter size, context, memory: for the fingerprint."""
        import httpx

        info: dict[str, object] = {"server": "ollama", "base_url": self.base_url, "num_ctx": self.num_ctx,
                                "keep_alive": self.keep_alive, "sampling": self.sampling}
        try:
            with httpx.Client(timeout=10) as client:
                info["server_version"] = client.get(f"{self.base_url}/api/version").json().get("version")
                show = client.post(f"{self.base_url}/api/show", json={"model": self.spec.name}).json()
                details = show.get("details") or {}
                info.update({"quantization": details.get("quantization_level"),
                             "parameter_size": details.get("parameter_size"), "family": details.get("family"),
                             "format": details.get("format")})
                model_info = show.get("model_info") or {}
                ctx = [v for k, v in model_info.items() if k.endswith(".context_length")]
                if ctx:
                    info["trained_context"] = ctx[0]
                if show.get("template"):
                    import hashlib
                    info["chat_template_sha256"] = hashlib.sha256(show["template"].encode()).hexdigest()[:16]
                for m in client.get(f"{self.base_url}/api/ps").json().get("models") or []:
                    if m.get("name") == self.spec.name or m.get("model") == self.spec.name:
                        info.update({"size_bytes": m.get("size"), "size_vram_bytes": m.get("size_vram")})
        except (httpx.HTTPError, ValueError) as e:
            info["describe_error"] = str(e)[:200]
        return info

    def fingerprint_info(self) -> dict[str, object]:
        return self.describe()


class _OllamaStream(StreamReader):
    """One /api/chat NDJSON stream; the final object (``done``) carries counts and durations."""

    def read(self, lines: Iterator[str], deadline: float) -> ChatResponse:
        call, clock = self.call, self.clock
        final: dict[str, object] | None = None
        for line in lines:
            if not line.strip():
                continue
            if time.monotonic() > deadline:
                raise OutOfTime
            obj = self.parse(line, "line", "ollama")
            msg = as_object(obj.get("message"))
            thought, text = as_text(msg.get("thinking")), as_text(msg.get("content"))
            self.text(thought, text)
            for tc in map(as_object, as_list(msg.get("tool_calls"))):
                fn = as_object(tc.get("function"))
                args = fn.get("arguments")
                self.tool_calls.append(ToolCall(id=as_text(tc.get("id")) or f"call_{len(self.tool_calls)}",
                                                name=as_text(fn.get("name")),
                                                arguments=args if isinstance(args, str) else json.dumps(args or {})))
                clock.token(answer=True)
            if self.looping(thought + text):
                return self.response(CallStop.repetition)
            if obj.get("done"):
                final = obj
                break
        if final is None:
            raise ModelCallError("the stream ended before the answer did", Failure.stream_cut, clock.finish(call))
        call.prompt_tokens = as_count(final.get("prompt_eval_count"))
        call.completion_tokens = as_count(final.get("eval_count"))
        self.finish = as_text(final.get("done_reason")) or "stop"
        call.server_timings = {k: final[k] for k in ("total_duration", "load_duration", "prompt_eval_count",
                                                      "prompt_eval_duration", "eval_count", "eval_duration")
                               if k in final}
        evals, eval_ns = as_count(final.get("eval_count")), as_count(final.get("eval_duration"))
        if evals and eval_ns:
            call.server_timings["eval_tokens_per_s"] = evals / (eval_ns / NS)
        return self.response(CallStop.length if self.finish == "length" else CallStop.complete)


def to_ollama_messages(messages: list[Message]) -> list[Message]:
    """OpenAI-shaped messages to Ollama's: tool-call arguments are objects, tool results name their tool."""
    names: dict[str, str] = {}
    out: list[Message] = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls: list[object] = []
            for tc in map(as_object, as_list(m["tool_calls"])):
                fn = dict(as_object(tc.get("function")))
                names[as_text(tc.get("id"))] = as_text(fn.get("name"))
                arguments = fn.get("arguments")
                if isinstance(arguments, str):
                    try:
                        fn["arguments"] = json.loads(arguments or "{}")
                    except ValueError:
                        fn["arguments"] = {}
                calls.append({"function": fn})
            m["tool_calls"] = calls
        if m.get("role") == "tool":
            m["tool_name"] = names.get(as_text(m.pop("tool_call_id", "")), as_text(m.get("name")))
        out.append(m)
    return out


def create(request: ModelRequest) -> OllamaClient:
    """``ollama:NAME[@BASE_URL]``, or an alias (``context`` becomes num_ctx)."""
    spec, cfg = request.spec, request.settings
    if not spec.name:
        raise ModelSpecError("ollama needs a model name: ollama:NAME[@BASE_URL], e.g. ollama:qwq:32b")
    if cfg is None:
        return OllamaClient(spec)
    return OllamaClient(spec, num_ctx=cfg.context, think=cfg.think, keep_alive=cfg.keep_alive, sampling=cfg.sampling,
                        token_counter=request.token_counter, tool_protocol=ToolProtocol(cfg.tools))
