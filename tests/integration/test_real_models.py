"""Real quantized models on real servers, no Docker: SmolLM2 135M Instruct (Q4_1, ChatML)
and Gemma 3 270M base (Q4_K_M, no chat template), from PyPI, on llama-cpp-python and on
llama.cpp's own llama-server, both as a server the user started (``openai:NAME@URL``)
and as agenteval's built-in aliases (``smollm2``, ``gemma3-ls``).

They need the downloads (``bash .ci/real-models.sh``; the folder it prints, or
$AGENTEVAL_REAL_MODELS) and the llama-server build (``bash .ci/llama-server.sh``, or
$AGENTEVAL_LLAMA_SERVER); without them the requirement gate
(tests/conftest.py) skips with the reason, or fails in CI."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from agenteval.config import BUILTIN_MODELS, ModelConfig, ProjectConfig, model_cache_dir
from agenteval.models import ChatModel
from agenteval.models.base import ToolSupport
from agenteval.models.chat import CallStop, Failure, ModelCallError
from agenteval.runner.model_registry import build_served, create_model
from agenteval.serving.downloads import DOWNLOADS
from agenteval.serving.engines.llama_server import find_binary
from agenteval.serving.served import ServedModel
from agenteval.serving.servers import free_port
from tests.conftest import missing
from tests.streamed import chunks, record_streams, tool_call_count

SMOL, GEMMA = DOWNLOADS["smollm2"].file, DOWNLOADS["gemma3"].file
POEM = [{"role": "user", "content": "Write a short poem about the sea."}]
LONG = [{"role": "user", "content": "List the numbers from 1 to 1000, separated by commas."}]
TOOLS = [{"type": "function", "function": {"name": "bash", "description": "Run a command", "parameters": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]
# A ChatML template that renders tools and tool calls, so llama-server reports supports_tool_calls.
TOOL_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nTools: {{ tools | tojson }}\nCall one as <tool_call>{\"name\": NAME, "
    "\"arguments\": ARGS}</tool_call><|im_end|>\n{% endif %}"
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n"
    "{%- if message.tool_calls %}{% for tc in message.tool_calls %}<tool_call>{\"name\": \"{{ tc.function.name }}\", "
    "\"arguments\": {{ tc.function.arguments | tojson }}}</tool_call>{% endfor %}"
    "{%- else %}{{ message.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="session")
def real_models() -> Path:
    folder = Path(os.environ.get("AGENTEVAL_REAL_MODELS") or model_cache_dir())
    for spec in DOWNLOADS.values():
        f = folder / spec.file
        if not f.is_file() or f.stat().st_size != spec.size:
            missing("real-models", f"the real models are not in {folder} (run: bash .ci/real-models.sh, and set "
                     f"AGENTEVAL_REAL_MODELS to the folder it prints)")
    return folder


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    found = find_binary()
    if found is None or not os.access(found, os.X_OK):
        missing("llama-server", "no llama-server binary (run: bash .ci/llama-server.sh, and set AGENTEVAL_LLAMA_SERVER to the "
                 "folder it prints)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def llama_cpp_python() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        missing("llamacpp", "llama_cpp is not installed")


def _serve(argv: list[str], port: int, log: Path) -> Iterator[str]:
    """A server started the way a user starts one; yields its /v1 URL."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        else:
            pytest.fail(f"{argv[0]} did not answer: {log.read_text()[-2000:]}")
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def user_llama_cpp_python(real_models: Path, llama_cpp_python: None,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server --model SmolLM2...gguf`` (the model's name is its path)."""
    port = free_port()
    yield from _serve([sys.executable, "-m", "llama_cpp.server", "--model", str(real_models / SMOL), "--host",
                       "127.0.0.1", "--port", str(port), "--n_ctx", "4096"], port,
                      tmp_path_factory.mktemp("lcp") / "server.log")


def _user_llama_server(binary: Path, model: Path, tmp: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    yield from _serve([str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", "4096",
                       "-np", "1", *extra], port, tmp / "server.log")


@pytest.fixture(scope="module")
def user_llama_server(real_models: Path, llama_server_binary: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``llama-server -m gemma-3-270m-q4_k_m.gguf`` (no chat template: the server falls back to ChatML)."""
    yield from _user_llama_server(llama_server_binary, real_models / GEMMA, tmp_path_factory.mktemp("ls"))


def _chat_model(text: str) -> ChatModel:
    model = create_model(text)
    assert isinstance(model, ChatModel)
    return model


def _assert_measured(call_tokens: int | None, rate: float | None) -> None:
    assert call_tokens is not None and call_tokens > 0
    assert rate is not None and rate > 0


def test_tokens_per_s_from_a_user_started_llama_cpp_python(user_llama_cpp_python: str) -> None:
    """It streams no usage: the counts come from its /extras/tokenize, marked estimated."""
    model = _chat_model(f"openai:smol@{user_llama_cpp_python}")
    r = model.chat(POEM, max_tokens=48, timeout_s=120)
    c = r.call
    assert r.content and r.stop in (CallStop.complete, CallStop.length)
    _assert_measured(c.completion_tokens, c.decode_tokens_per_s)
    assert c.prompt_tokens and c.tokens_estimated and c.completion_tokens <= 49
    info = model.fingerprint_info()
    assert (info["server"], info["quantization"], info["tokenizer_endpoint"]) == ("llama-cpp-python", "Q4_1",
                                                                                  "/extras/tokenize")
    assert info["server_version"] and info["chat_template_sha256"] and info["sampling"] == {"temperature": 0.0,
                                                                                            "seed": 0}
    assert model.tool_support() is ToolSupport.no


def test_tokens_per_s_and_timings_from_a_user_started_llama_server(user_llama_server: str) -> None:
    model = _chat_model(f"openai:gemma@{user_llama_server}")
    r = model.chat(POEM, max_tokens=32, timeout_s=120)
    c = r.call
    _assert_measured(c.completion_tokens, c.decode_tokens_per_s)
    assert not c.tokens_estimated and c.prompt_tokens
    t = c.server_timings
    assert {"prompt_n", "prompt_ms", "predicted_n", "predicted_per_second", "cache_n"} <= set(t)
    assert t["predicted_n"] == c.completion_tokens
    info = model.fingerprint_info()
    assert (info["server"], info["quantization"]) == ("llama-server", "Q4_K_M")
    assert info["chat_template_fallback"] is True and info["server_version"]
    lines: list[str] = []
    model.preflight(lines.append)
    assert any("no chat template" in line for line in lines)
    props = httpx.get(user_llama_server.removesuffix("/v1") + "/props", timeout=10).json()
    expected = ToolSupport.yes if props["chat_template_caps"]["supports_tool_calls"] else ToolSupport.no
    assert model.tool_support() is expected


def test_tool_support_from_props_of_a_template_with_tools(real_models: Path, llama_server_binary: Path,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = tmp_path / "tools.jinja"
    template.write_text(TOOL_TEMPLATE)
    for url in _user_llama_server(llama_server_binary, real_models / SMOL, tmp_path, "--jinja",
                                  "--chat-template-file", str(template)):
        model = _chat_model(f"openai:smol@{url}")
        assert model.tool_support() is ToolSupport.yes
        lines = record_streams(monkeypatch)
        r = model.chat(POEM, tools=TOOLS, max_tokens=16, timeout_s=120)
        streamed = chunks(lines)
        assert r.call.error is None and streamed  # the request with tools was answered by a stream
        # SmolLM2 asked for a poem calls no tool: what counts is that each call llama-server streamed
        # is one parsed call, named and with an id
        assert len(r.tool_calls) == tool_call_count(streamed), (r.tool_calls, streamed)
        assert [t for t in r.tool_calls if not (t.id and t.name)] == []


def test_tools_refused_without_jinja_are_not_retried(real_models: Path, llama_server_binary: Path,
                                                     tmp_path: Path) -> None:
    for url in _user_llama_server(llama_server_binary, real_models / SMOL, tmp_path, "--no-jinja"):
        model = _chat_model(f"openai:smol@{url}")
        t0 = time.monotonic()
        with pytest.raises(ModelCallError) as e:
            model.chat(POEM, tools=TOOLS, max_tokens=16, timeout_s=60)
        assert e.value.failure is Failure.tools_rejected and e.value.call.retries == 0
        assert time.monotonic() - t0 < 5
        assert model.chat(POEM, max_tokens=8, timeout_s=60).content  # without tools it answers


def _budget_stop(model: ChatModel) -> None:
    warm = model.chat(LONG, max_tokens=4, timeout_s=120).call  # loads and caches the prompt
    budget = 2.0 + 2 * (warm.ttft_s or 0)
    r = model.chat(LONG, max_tokens=4000, timeout_s=budget)
    c = r.call
    assert r.stop is CallStop.budget and c.finish_reason == "budget" and c.error is None
    assert r.content.startswith("1, 2, 3")
    _assert_measured(c.completion_tokens, c.decode_tokens_per_s)
    assert c.tokens_estimated and c.prompt_tokens and budget <= c.e2e_s < budget + 1.5


def test_a_budget_stop_keeps_the_partial_answer_on_llama_cpp_python(user_llama_cpp_python: str) -> None:
    _budget_stop(_chat_model(f"openai:smol@{user_llama_cpp_python}"))


def test_a_budget_stop_keeps_the_partial_answer_on_llama_server(real_models: Path, llama_server_binary: Path,
                                                                tmp_path: Path) -> None:
    for url in _user_llama_server(llama_server_binary, real_models / SMOL, tmp_path):
        _budget_stop(_chat_model(f"openai:smol@{url}"))


def _sha256(path: Path) -> str:
    """The file's own hash, not the pinned one agenteval's download table holds."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _builtin(alias: str, real_models: Path) -> ServedModel:
    cfg: ModelConfig = BUILTIN_MODELS[alias].model_copy(update={"path": str(real_models / Path(
        str(BUILTIN_MODELS[alias].path)).name)})
    return build_served(alias, cfg, ProjectConfig(models={alias: cfg}))


def test_builtin_smollm2_on_llama_cpp_python(real_models: Path, llama_cpp_python: None) -> None:
    model = _builtin("smollm2", real_models)
    lines: list[str] = []
    model.preflight(lines.append)
    assert lines == []  # the model file has its own template
    with model.serving(log=lambda m: None):
        c = model.chat(POEM, max_tokens=32, timeout_s=120).call
        info = model.fingerprint_info()
        assert model.tool_support() is ToolSupport.no
    _assert_measured(c.completion_tokens, c.decode_tokens_per_s)
    assert not c.tokens_estimated and c.server_timings["eval_tokens_per_s"] > 0  # llama.cpp's own report
    assert (info["server"], info["quantization"], info["chat_template"]) == ("llama-cpp-python", "Q4_1", "gguf")
    assert info["file_sha256"] == _sha256(real_models / SMOL)[:16] and info["random_weights"] is False


def test_builtin_gemma3_on_llama_server_gets_chatml_and_loops_are_stopped(real_models: Path,
                                                                          llama_server_binary: Path) -> None:
    model = _builtin("gemma3-ls", real_models)
    lines: list[str] = []
    model.preflight(lines.append)
    assert lines == []  # the alias gives the template: no warning
    with model.serving(log=lambda m: None):
        assert model.server is not None and "gemma3-ls" in model.server.log_path.name
        short = model.chat(POEM, max_tokens=16, timeout_s=120)
        # Gemma base, greedy, echoes this prompt over and over: the loop guard stops it, the text is kept
        r = model.chat([{"role": "user", "content": "Write the word hello 500 times."}], max_tokens=400,
                       timeout_s=180)
        info = model.fingerprint_info()
    c = short.call
    _assert_measured(c.completion_tokens, c.decode_tokens_per_s)
    assert {"prompt_n", "prompt_ms", "predicted_n", "predicted_per_second", "cache_n"} <= set(c.server_timings)
    assert not c.tokens_estimated and c.server_timings["predicted_n"] == c.completion_tokens
    assert r.stop is CallStop.repetition and r.call.finish_reason == "repetition" and len(r.content) >= 400
    _assert_measured(r.call.completion_tokens, r.call.decode_tokens_per_s)
    assert r.call.tokens_estimated and r.call.error is None
    assert (info["server"], info["quantization"]) == ("llama-server", "Q4_K_M")
    assert info["chat_template"] == "chatml (agenteval.toml chat_template)" and info["chat_template_fallback"] is False
    assert info["file_sha256"] == _sha256(real_models / GEMMA)[:16]


def test_builtin_gemma3_asked_as_an_agent_answers_nothing_that_runs(real_models: Path,
                                                                   llama_cpp_python: None) -> None:
    """What the README says to explain why the main job runs SmolLM2 only: Gemma 3 270M base, given
    ChatML, answers the agent's first turn greedily with text and no block (here it repeats the request)."""
    from agenteval.agent.prompts import TEXT_SYSTEM
    from agenteval.agent.text_protocol import parse_text_actions

    model = _builtin("gemma3", real_models)
    task = "Create the directory `notes` in /workspace and, inside it, the file `todo.txt` holding `buy coffee`."
    with model.serving(log=lambda m: None):
        r = model.chat([{"role": "system", "content": TEXT_SYSTEM}, {"role": "user", "content": task}],
                       max_tokens=64, timeout_s=120)
    assert r.content.strip() and r.call.completion_tokens, r  # it answered, and was measured
    actions = parse_text_actions(r.content)
    assert (actions.calls, actions.done) == ([], False), r.content


def test_the_header_reader_agrees_with_the_gguf_package_on_real_models(real_models: Path) -> None:
    """SmolLM2 (49k-token vocabulary) and Gemma 3 (262k): the fingerprint's facts from the header
    reader, the same as the gguf package's full reader gives, in a small part of its time."""
    import gguf

    from agenteval.gguf.header import read_header

    for spec in DOWNLOADS.values():
        path = real_models / spec.file
        header, reader = read_header(path), gguf.GGUFReader(str(path))
        assert {k: v for k, v in header.fields.items()} == {k: reader.fields[k].contents() for k in header.fields}
        assert header.arrays == {k: len(reader.fields[k].data) for k in header.arrays}
        assert [(t.name, t.n_elements, header.tensor_bytes(t)) for t in header.tensors] == \
            [(t.name, int(t.n_elements), int(t.n_bytes)) for t in reader.tensors]
