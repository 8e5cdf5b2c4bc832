"""The native Ollama client against protocol fixtures (Ollama cannot be
installed here; the scripted server is a test double named as such)."""

from __future__ import annotations

import pytest

from agenteval.models.base import ModelSpec
from agenteval.models.chat import CallStop, ModelCallError
from agenteval.models.ollama import OllamaClient, to_ollama_messages
from tests.fixtures.protocols import ollama_stream as fx
from tests.scripted_server import Reply, ScriptedServer, free_port


def client(url: str, **kw: object) -> OllamaClient:
    return OllamaClient(ModelSpec("ollama", "qwq:32b", url), sleep=lambda s: None, **kw)  # type: ignore[arg-type]


def test_thinking_answer_and_durations() -> None:
    with ScriptedServer([Reply.ndjson(fx.THINKING_THEN_ANSWER)]) as srv:
        r = client(srv.url, num_ctx=16384, think=True, keep_alive="10m",
                   token_counter=lambda t: len(t.split())).chat([{"role": "user", "content": "why?"}], max_tokens=99)
    assert (r.reasoning, r.content, r.finish_reason) == ("Let me think. Done thinking.", "The sky is blue.", "stop")
    c = r.call
    assert (c.prompt_tokens, c.completion_tokens) == (26, 282)
    assert c.reasoning_tokens == 5 and c.tokens_estimated
    assert c.server_timings["load_duration"] == 1334875000
    assert c.server_timings["eval_tokens_per_s"] == pytest.approx(282 / 3.535599)
    assert c.ttft_s is not None and c.ttfat_s is not None and c.ttft_s <= c.ttfat_s
    body = srv.requests[0][2]
    assert srv.requests[0][1] == "/api/chat"
    assert body["options"] == {"num_ctx": 16384, "num_predict": 99, "temperature": 0.0, "seed": 0}
    assert body["think"] is True
    assert body["keep_alive"] == "10m" and body["stream"] is True


def test_tool_calls_arrive_as_objects() -> None:
    with ScriptedServer([Reply.ndjson(fx.TOOL_CALL)]) as srv:
        r = client(srv.url).chat([{"role": "user", "content": "x"}], tools=[{"type": "function"}])
    assert [(t.name, t.parsed_arguments()) for t in r.tool_calls] == [("write_file", {"path": "a.txt", "content": "hi\n"})]


def test_messages_are_converted() -> None:
    msgs = [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"ls\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"}]
    out = to_ollama_messages(msgs)
    assert out[0]["tool_calls"] == [{"function": {"name": "bash", "arguments": {"command": "ls"}}}]
    assert out[1] == {"role": "tool", "content": "a.txt", "tool_name": "bash"}


def test_describe_reads_show_ps_version() -> None:
    with ScriptedServer() as srv:
        srv.routes = {"/api/version": Reply.json(fx.VERSION), "/api/show": Reply.json(fx.SHOW),
                      "/api/ps": Reply.json(fx.PS)}
        info = client(srv.url).describe()
    assert info["server_version"] == "0.9.0" and info["quantization"] == "Q4_K_M"
    assert info["parameter_size"] == "32.8B" and info["trained_context"] == 131072
    assert info["size_vram_bytes"] == 21_000_000_000 and info["num_ctx"] == 8192


def test_faults() -> None:
    with pytest.raises(ModelCallError) as e:
        client(f"http://127.0.0.1:{free_port()}", max_retries=1).chat([])
    assert e.value.kind == "infra"
    with ScriptedServer([Reply.ndjson(fx.THINKING_THEN_ANSWER[:2])]) as srv:
        with pytest.raises(ModelCallError, match="ended before"):
            client(srv.url).chat([])
    with ScriptedServer([Reply.json({"error": "boom"}, status=503), Reply.ndjson(fx.TOOL_CALL)]) as srv:
        assert client(srv.url).chat([]).call.retries == 1
    with ScriptedServer([Reply.ndjson([{"error": "model runner crashed"}])]) as srv:
        with pytest.raises(ModelCallError, match="mid-stream") as e:
            client(srv.url).chat([])
    assert e.value.kind == "infra"


def test_repetition_and_budget_stops_keep_the_partial_answer() -> None:
    loop = [fx.part("round and round we go. ") for _ in range(200)] + [fx.FINAL]
    with ScriptedServer([Reply.ndjson(loop)]) as srv:
        r = client(srv.url, token_counter=lambda t: len(t.split())).chat([])
    assert r.stop is CallStop.repetition and r.content.startswith("round and round") and r.call.error is None
    assert r.call.completion_tokens == len(r.content.split()) and r.call.tokens_estimated
    slow = [fx.part(f"w{i} ") for i in range(30)] + [fx.FINAL]
    with ScriptedServer([Reply.ndjson(slow, delays=[0.0] + [0.1] * 31)]) as srv:
        r = client(srv.url, token_counter=lambda t: len(t.split())).chat([], timeout_s=0.5)
    assert r.stop is CallStop.budget and r.content.startswith("w0 w1") and r.call.completion_tokens
    assert r.call.decode_tokens_per_s


def test_length_stop() -> None:
    with ScriptedServer([Reply.ndjson([fx.part("cut"), {**fx.FINAL, "done_reason": "length"}])]) as srv:
        r = client(srv.url).chat([], max_tokens=1)
    assert (r.stop, r.call.completion_tokens) == (CallStop.length, 282)


def test_a_plain_ollama_model_gets_the_sampling_defaults() -> None:
    from agenteval.runner.model_registry import create_model

    model = create_model("ollama:qwq:32b@http://127.0.0.1:1")
    assert model.fingerprint_info()["sampling"] == {"temperature": 0.0, "seed": 0}
