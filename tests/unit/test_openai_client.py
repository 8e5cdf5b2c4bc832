"""The OpenAI-compatible client against protocol fixtures replayed by a scripted
server (a test double for llama.cpp / vLLM; the real servers are tested in
integration). Faults end in the right classified outcome with telemetry kept."""

from __future__ import annotations

import json
import threading
import time

import pytest

from agenteval.models.base import ChatModel, ModelSpec, ToolSupport
from agenteval.models.chat import CallStop, Failure, ModelCallError
from agenteval.models.openai import OpenAICompatClient
from tests.fixtures.protocols import llama_servers as llama
from tests.fixtures.protocols import openai_stream as fx
from tests.scripted_server import Reply, ScriptedServer, free_port

MESSAGES = [{"role": "user", "content": "hi"}]


def client(url: str, **kw: object) -> OpenAICompatClient:
    return OpenAICompatClient(ModelSpec("openai", "m", url + "/v1"), sleep=lambda s: None, **kw)  # type: ignore[arg-type]


def close_when_open(caller: threading.Thread, timeout: float = 30) -> int:
    """Close the model streams as soon as ``caller`` has one open (it has got the reply's headers)."""
    from agenteval.models.chat import close_all_streams

    deadline = time.monotonic() + timeout
    while caller.is_alive() and time.monotonic() < deadline:
        closed = close_all_streams()
        if closed:
            return closed
        time.sleep(0.01)
    return 0


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
    assert e.value.kind == "infra" and e.value.status == 500 and "answered 500" in str(e.value)
    assert len(srv.requests) == 3


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
    with ScriptedServer([Reply.sse(fx.VLLM_REASONING_FIELD, delays=[6.0])]) as srv:
        t0 = time.monotonic()
        with pytest.raises(ModelCallError) as e:
            client(srv.url).chat(MESSAGES, timeout_s=0.5)
    assert e.value.failure is Failure.timeout and e.value.kind == "model" and "first token" in str(e.value)
    assert time.monotonic() - t0 < 4  # cut at the budget; the first token would come at 6 s


def test_endless_repetition_is_stopped_and_the_text_kept() -> None:
    loop = [fx.chunk({"content": "I will now write the file. "}) for _ in range(400)]
    with ScriptedServer([Reply.sse(loop)]) as srv:
        r = client(srv.url, token_counter=lambda t: len(t.split())).chat(MESSAGES)
    assert r.stop is CallStop.repetition and r.call.finish_reason == "repetition" and r.call.error is None
    assert r.content.startswith("I will now write the file. I will") and r.content.count("write the file") < 60
    assert r.call.completion_tokens == len(r.content.split()) and r.call.tokens_estimated


@pytest.mark.parametrize("unit_len", [206, 700, 2000])
def test_long_repeated_units_are_caught(unit_len: int) -> None:
    import random
    import string

    rnd = random.Random(unit_len)
    unit = "".join(rnd.choice(string.ascii_letters + "  \n") for _ in range(unit_len))
    text = "Here is my plan.\n" + unit * 6
    chunks = [fx.chunk({"content": text[i:i + 5]}) for i in range(0, len(text), 5)]
    with ScriptedServer([Reply.sse(chunks + [fx.chunk({}, finish="stop")])]) as srv:
        r = client(srv.url).chat(MESSAGES)
    assert r.stop is CallStop.repetition and unit * 3 in r.content and len(r.content) < len(text)


def _slow_words(n: int, delay: float) -> Reply:
    return Reply.sse([fx.chunk({"content": f"word{i} "}) for i in range(n)] + [fx.chunk({}, finish="stop")],
                     delays=[0.0] + [delay] * (n + 1))


def test_the_time_budget_keeps_the_partial_answer_and_its_counts() -> None:
    with ScriptedServer([_slow_words(40, 0.2)]) as srv:  # the whole answer would take 8 s
        srv.routes = {"/v1/models": Reply.json(llama.llama_cpp_python_models("smol")),
                      "/openapi.json": Reply.json(llama.LLAMA_CPP_PYTHON_OPENAPI),
                      "/extras/tokenize": Reply.json(llama.tokens(7))}
        t0 = time.monotonic()
        r = client(srv.url).chat(MESSAGES, timeout_s=0.75)
    assert time.monotonic() - t0 < 4
    assert r.stop is CallStop.budget and r.call.finish_reason == "budget" and r.call.error is None
    assert r.content.startswith("word0 word1 ") and "word39" not in r.content
    c = r.call
    assert (c.completion_tokens, c.prompt_tokens, c.tokens_estimated) == (7, 7, True)
    assert c.decode_s and c.decode_tokens_per_s == pytest.approx(7 / c.decode_s)
    assert c.ttft_s is not None and 0.7 <= c.e2e_s < 4


def test_a_server_gone_quiet_after_the_first_token_is_cut_at_the_budget() -> None:
    reply = Reply.sse([fx.chunk({"content": "Hello"}), fx.chunk({"content": " world"}, finish="stop")],
                      delays=[0.0, 5.0])
    with ScriptedServer([reply]) as srv:
        t0 = time.monotonic()
        r = client(srv.url, token_counter=lambda t: len(t.split())).chat(MESSAGES, timeout_s=0.6)
    assert time.monotonic() - t0 < 3.5  # cut at the budget; the rest would come at 5 s
    assert (r.stop, r.content, r.call.completion_tokens) == (CallStop.budget, "Hello", 1)


def test_reasoning_cut_at_the_budget_is_kept_as_reasoning() -> None:
    chunks = [fx.chunk({"reasoning_content": f"step {i}. "}) for i in range(30)] + [fx.chunk({}, finish="stop")]
    with ScriptedServer([Reply.sse(chunks, delays=[0.0] + [0.1] * 31)]) as srv:
        r = client(srv.url, token_counter=lambda t: len(t.split())).chat(MESSAGES, timeout_s=0.5)
    assert r.stop is CallStop.budget and r.reasoning.startswith("step 0. ") and r.content == ""
    assert r.call.reasoning_tokens == r.call.completion_tokens and r.call.completion_tokens


def test_no_usage_and_no_tokenizer_of_ours_counts_with_the_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-cpp-python streams no usage: completion and prompt come from /extras/tokenize, probed once."""
    with ScriptedServer([Reply.sse(fx.NO_USAGE), Reply.sse(fx.NO_USAGE)]) as srv:
        srv.routes = {"/v1/models": Reply.json(llama.llama_cpp_python_models("/m/SmolLM2-135M-Instruct.Q4_1.gguf")),
                      "/openapi.json": Reply.json(llama.LLAMA_CPP_PYTHON_OPENAPI),
                      "/extras/tokenize": Reply.json(llama.tokens(4))}
        c = client(srv.url)
        calls = [c.chat(MESSAGES).call for _ in range(2)]
        info = c.fingerprint_info()
    assert [(x.completion_tokens, x.tokens_estimated) for x in calls] == [(4, True), (4, True)]
    assert all(x.decode_tokens_per_s for x in calls)
    assert sum(1 for m, path, _ in srv.requests if path == "/openapi.json") == 1  # probed once
    assert (info["server"], info["server_version"], info["quantization"]) == ("llama-cpp-python", "0.3.16", "Q4_1")
    assert c.tool_support() is ToolSupport.no


def test_a_server_with_neither_usage_nor_tokenizer_leaves_counts_unknown() -> None:
    with ScriptedServer([Reply.sse(fx.NO_USAGE)]) as srv:
        call = client(srv.url).chat(MESSAGES).call
    assert (call.completion_tokens, call.tokens_estimated, call.decode_tokens_per_s) == (None, False, None)


def test_llama_server_props_tell_tools_template_and_quantization() -> None:
    with ScriptedServer() as srv:
        srv.routes = {"/v1/models": Reply.json(llama.llama_server_models()), "/props": Reply.json(llama.props())}
        c = client(srv.url)
        support, info = c.tool_support(), c.fingerprint_info()
    assert support is ToolSupport.yes
    assert (info["server"], info["server_version"], info["quantization"]) == ("llama-server", "b6500-abcdef12", "Q4_K_M")
    assert info["context"] == 4096 and info["chat_template_fallback"] is False and info["chat_template_sha256"]
    assert info["model_n_params"] == 268098176


def test_llama_server_default_template_is_flagged_and_warned() -> None:
    with ScriptedServer() as srv:
        srv.routes = {"/v1/models": Reply.json(llama.llama_server_models()), "/props": Reply.json(llama.FALLBACK_PROPS)}
        c = client(srv.url)
        lines: list[str] = []
        c.preflight(lines.append)
        support, info = c.tool_support(), c.fingerprint_info()
    assert support is ToolSupport.no and info["chat_template_fallback"] is True
    assert len(lines) == 1 and "no chat template" in lines[0] and "chatml" in lines[0]


def test_an_unknown_server_has_unknown_tool_support() -> None:
    with ScriptedServer() as srv:
        srv.routes = {"/v1/models": Reply.json({"data": [{"id": "m", "owned_by": "vllm"}]})}
        assert client(srv.url).tool_support() is ToolSupport.unknown
    assert client(f"http://127.0.0.1:{free_port()}").tool_support() is ToolSupport.unknown


@pytest.mark.parametrize("status", [400, 422, 500, 501])
def test_a_request_with_tools_refused_with_any_status_is_not_retried(status: int) -> None:
    with ScriptedServer([Reply.json(llama.NO_JINJA_TOOLS, status=status)] * 5) as srv:
        with pytest.raises(ModelCallError) as e:
            client(srv.url).chat(MESSAGES, tools=[{"type": "function", "function": {"name": "bash"}}])
    assert e.value.failure is Failure.tools_rejected and e.value.status == status and len(srv.chats) == 1


def test_a_busy_server_is_retried_even_with_tools() -> None:
    with ScriptedServer([Reply.json({"error": "loading"}, status=503), Reply.sse(fx.TWO_PARALLEL_TOOL_CALLS)]) as srv:
        r = client(srv.url).chat(MESSAGES, tools=[{"type": "function", "function": {"name": "bash"}}])
    assert r.call.retries == 1 and [t.name for t in r.tool_calls] == ["bash", "done"]


def test_a_plain_model_sends_the_same_sampling_defaults_as_an_alias() -> None:
    from agenteval.config import DEFAULT_SAMPLING
    from agenteval.runner.model_registry import create_model

    with ScriptedServer([Reply.sse(fx.VLLM_REASONING_FIELD)]) as srv:
        model = create_model(f"openai:m@{srv.url}/v1")
        assert isinstance(model, ChatModel)
        model.chat(MESSAGES)
        info = model.fingerprint_info()
    assert {k: srv.chats[0][k] for k in DEFAULT_SAMPLING} == DEFAULT_SAMPLING == {"temperature": 0.0, "seed": 0}
    assert info["sampling"] == DEFAULT_SAMPLING


def test_sampling_and_max_tokens_are_sent() -> None:
    with ScriptedServer([Reply.sse(fx.NO_USAGE)]) as srv:
        client(srv.url, sampling={"temperature": 0.0, "seed": 7}).chat(MESSAGES, max_tokens=64)
    body = srv.requests[0][2]
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.0, 7, 64)
    assert json.dumps(body["messages"]) == json.dumps(MESSAGES)


def test_close_all_streams_cuts_a_call_in_flight() -> None:
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
        t.start()
        assert close_when_open(t) == 1
        t0 = time.monotonic()
        t.join(5)
    assert not t.is_alive() and time.monotonic() - t0 < 2  # the reply would take 10 s more
    assert errors and errors[0].kind == "infra"


def test_close_all_streams_wakes_a_reader_waiting_on_a_silent_server() -> None:
    reply = Reply.sse([fx.chunk({"content": "Hi"}), fx.chunk({}, finish="stop")], delays=[0.0, 8.0])
    with ScriptedServer([reply]) as srv:
        errors: list[ModelCallError] = []

        def call() -> None:
            try:
                client(srv.url).chat(MESSAGES, timeout_s=30)
            except ModelCallError as e:
                errors.append(e)

        t = threading.Thread(target=call)
        t.start()
        assert close_when_open(t) == 1
        t0 = time.monotonic()
        t.join(5)
        assert time.monotonic() - t0 < 2
    assert errors and errors[0].failure is Failure.stream_cut


def test_a_server_that_ignores_max_tokens_is_cut_off() -> None:
    chunks = [fx.chunk({"content": f"t{i} "}) for i in range(300)]
    with ScriptedServer([Reply.sse(chunks)]) as srv:
        r = client(srv.url).chat(MESSAGES, max_tokens=20)
    assert r.finish_reason == "length" and r.stop is CallStop.length and r.content.count("t") <= 21


def test_the_servers_length_stop_is_a_length_stop() -> None:
    chunks = [fx.chunk({"content": "a b"}), fx.chunk({}, finish="length"),
              fx.chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 2})]
    with ScriptedServer([Reply.sse(chunks)]) as srv:
        r = client(srv.url).chat(MESSAGES, max_tokens=2)
    assert (r.stop, r.content, r.call.completion_tokens, r.call.tokens_estimated) == (CallStop.length, "a b", 2, False)
