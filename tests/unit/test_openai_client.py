"""The OpenAI-compatible client against protocol fixtures replayed by a scripted
server (a test double for llama.cpp / vLLM; the real servers are tested in
integration). Faults end in the right classified outcome with telemetry kept."""

from __future__ import annotations

import json
import time

import pytest

from agenteval.models.base import ModelSpec
from agenteval.models.chat import ModelCallError
from agenteval.models.openai import OpenAICompatClient
from tests.fixtures.protocols import openai_stream as fx
from tests.scripted_server import Reply, ScriptedServer, free_port

MESSAGES = [{"role": "user", "content": "hi"}]


def client(url: str, **kw: object) -> OpenAICompatClient:
    return OpenAICompatClient(ModelSpec("openai", "m", url + "/v1"), sleep=lambda s: None, **kw)  # type: ignore[arg-type]


def test_llamacpp_reasoning_tool_call_usage_and_timings() -> None:
    with ScriptedServer([Reply.sse(fx.LLAMACPP_REASONING_TOOLS)]) as srv:
        r = client(srv.url).chat(MESSAGES, tools=[{"type": "function", "function": {"name": "write_file"}}])
    assert r.reasoning == "The user wants a file. I will call write_file."
    assert r.content == ""
    assert [(t.id, t.name, t.parsed_arguments()) for t in r.tool_calls] == [
        ("call_abc", "write_file", {"path": "a.txt", "content": "hi\n"})]
    assert r.finish_reason == "tool_calls"
    c = r.call
    assert (c.prompt_tokens, c.completion_tokens, c.tokens_estimated) == (57, 31, False)
    assert c.server_timings["predicted_per_second"] == 99.84
    assert c.ttft_s is not None and c.ttfat_s is not None and c.ttft_s <= c.ttfat_s <= c.e2e_s
    method, path, body = srv.requests[0]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["tools"][0]["function"]["name"] == "write_file"


def test_reasoning_field_and_reasoning_tokens() -> None:
    with ScriptedServer([Reply.sse(fx.VLLM_REASONING_FIELD)]) as srv:
        r = client(srv.url).chat(MESSAGES)
    assert (r.reasoning, r.content, r.call.reasoning_tokens) == ("Short thought.", "Done: ok.", 3)


def test_think_tags_are_separated() -> None:
    with ScriptedServer([Reply.sse(fx.THINK_TAGS_IN_TEXT)]) as srv:
        r = client(srv.url).chat(MESSAGES)
    assert (r.reasoning, r.content) == ("Let me see.", "The answer is 4.")


def test_parallel_tool_calls() -> None:
    with ScriptedServer([Reply.sse(fx.TWO_PARALLEL_TOOL_CALLS)]) as srv:
        r = client(srv.url).chat(MESSAGES)
    assert [t.name for t in r.tool_calls] == ["bash", "done"]


def test_decode_rate_is_consistent_with_tokens_and_time() -> None:
    chunks = [fx.chunk({"content": f"w{i} "}) for i in range(10)] + [
        fx.chunk({}, finish="stop"), fx.chunk(None, usage={"prompt_tokens": 4, "completion_tokens": 10})]
    with ScriptedServer([Reply.sse(chunks, delays=[0.05] + [0.02] * 11)]) as srv:
        c = client(srv.url).chat(MESSAGES).call
    assert c.decode_s is not None and c.decode_tokens_per_s is not None and c.ttft_s is not None
    assert c.ttft_s >= 0.05 and c.decode_s >= 0.15
    assert c.decode_tokens_per_s * c.decode_s == pytest.approx(10)


def test_no_usage_counts_with_tokenizer_and_marks_estimate() -> None:
    with ScriptedServer([Reply.sse(fx.NO_USAGE)]) as srv:
        r = client(srv.url, token_counter=lambda text: len(text.split())).chat(MESSAGES)
    assert (r.call.completion_tokens, r.call.tokens_estimated) == (4, True)


def test_server_not_running_is_infra() -> None:
    c = client(f"http://127.0.0.1:{free_port()}", max_retries=2)
    with pytest.raises(ModelCallError) as e:
        c.chat(MESSAGES)
    assert e.value.kind == "infra" and "cannot reach" in str(e.value) and e.value.call.retries == 2


def test_500_is_retried_then_infra() -> None:
    with ScriptedServer([Reply.json({"error": "boom"}, status=500)] * 3) as srv:
        with pytest.raises(ModelCallError) as e:
            client(srv.url, max_retries=2).chat(MESSAGES)
    assert e.value.kind == "infra" and "500" in str(e.value) and len(srv.requests) == 3


def test_429_then_success() -> None:
    with ScriptedServer([Reply.json({"error": "busy"}, status=429), Reply.sse(fx.VLLM_REASONING_FIELD)]) as srv:
        r = client(srv.url).chat(MESSAGES)
    assert r.content == "Done: ok." and r.call.retries == 1 and len(srv.requests) == 2


def test_context_overflow_is_not_retried_and_is_the_models() -> None:
    err = {"error": {"code": 400, "message": "the request exceeds the available context size (n_ctx 4096)"}}
    with ScriptedServer([Reply.json(err, status=400)]) as srv:
        with pytest.raises(ModelCallError) as e:
            client(srv.url).chat(MESSAGES)
    assert e.value.kind == "model" and "context" in str(e.value) and len(srv.requests) == 1


def test_other_4xx_not_retried() -> None:
    with ScriptedServer([Reply.json({"error": "no such model"}, status=404)]) as srv:
        with pytest.raises(ModelCallError) as e:
            client(srv.url).chat(MESSAGES)
    assert e.value.kind == "infra" and len(srv.requests) == 1


def test_stream_cut_midway_is_infra_and_keeps_telemetry() -> None:
    with ScriptedServer([Reply.sse(fx.VLLM_REASONING_FIELD, cut_after=2)]) as srv:
        with pytest.raises(ModelCallError) as e:
            client(srv.url).chat(MESSAGES)
    assert e.value.kind == "infra" and e.value.call.ttft_s is not None and e.value.call.error


def test_stream_without_end_is_infra() -> None:
    with ScriptedServer([Reply.sse([fx.chunk({"content": "half"})], done=False)]) as srv:
        with pytest.raises(ModelCallError, match="ended before the answer"):
            client(srv.url).chat(MESSAGES)


def test_malformed_chunk_is_infra() -> None:
    with ScriptedServer([Reply.sse([fx.chunk({"content": "a"}), "{not json"])]) as srv:
        with pytest.raises(ModelCallError) as e:
            client(srv.url).chat(MESSAGES)
    assert e.value.kind == "infra" and "malformed" in str(e.value)


def test_slow_first_token_past_budget_is_the_models() -> None:
    with ScriptedServer([Reply.sse(fx.VLLM_REASONING_FIELD, delays=[2.0])]) as srv:
        t0 = time.monotonic()
        with pytest.raises(ModelCallError) as e:
            client(srv.url).chat(MESSAGES, timeout_s=0.5)
    assert e.value.kind == "model" and "budget" in str(e.value) and time.monotonic() - t0 < 1.9


def test_endless_repetition_is_stopped() -> None:
    loop = [fx.chunk({"content": "I will now write the file. "}) for _ in range(400)]
    with ScriptedServer([Reply.sse(loop)]) as srv:
        with pytest.raises(ModelCallError) as e:
            client(srv.url).chat(MESSAGES)
    assert e.value.kind == "model" and e.value.call.finish_reason == "repetition"


def test_sampling_and_max_tokens_are_sent() -> None:
    with ScriptedServer([Reply.sse(fx.NO_USAGE)]) as srv:
        client(srv.url, sampling={"temperature": 0.0, "seed": 7}).chat(MESSAGES, max_tokens=64)
    body = srv.requests[0][2]
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.0, 7, 64)
    assert json.dumps(body["messages"]) == json.dumps(MESSAGES)


def test_close_all_streams_cuts_a_call_in_flight() -> None:
    import threading

    from agenteval.models.chat import close_all_streams

    slow = [fx.chunk({"content": f"w{i} "}) for i in range(50)]
    with ScriptedServer([Reply.sse(slow, delays=[0.0] + [0.2] * 50)]) as srv:
        c = client(srv.url)
        errors: list[ModelCallError] = []

        def call() -> None:
            try:
                c.chat(MESSAGES)
            except ModelCallError as e:
                errors.append(e)

        t = threading.Thread(target=call)
        t0 = time.monotonic()
        t.start()
        time.sleep(0.5)
        assert close_all_streams() == 1
        t.join(5)
    assert not t.is_alive() and time.monotonic() - t0 < 3
    assert errors and errors[0].kind == "infra"


def test_a_server_that_ignores_max_tokens_is_cut_off() -> None:
    chunks = [fx.chunk({"content": f"t{i} "}) for i in range(300)]
    with ScriptedServer([Reply.sse(chunks)]) as srv:
        r = client(srv.url).chat(MESSAGES, max_tokens=20)
    assert r.finish_reason == "length" and r.content.count("t") <= 21
