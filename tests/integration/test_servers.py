"""Real model servers started by agenteval's lifecycle code: `transformers serve`
on the tiny random-weight model, and llama-cpp-python's server on its Q4_K_M GGUF.

They need the serve and llamacpp extras (the requirement gate in tests/conftest.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from agenteval.config import ModelConfig, ProjectConfig
from agenteval.errors import ServerStartError
from agenteval.runner.model_registry import build_served
from agenteval.serving.engines import create_engine
from agenteval.serving.served import ServedModel
from agenteval.serving.servers import ManagedServer
from tests.conftest import FIXTURES, REPO, requires
from tests.streamed import chunks, record_streams, tool_call_count

TOOLS = [{"type": "function", "function": {"name": "write_file", "description": "Write a file",
                                           "parameters": {"type": "object", "properties": {
                                               "path": {"type": "string"}, "content": {"type": "string"}},
                                               "required": ["path", "content"]}}}]
MESSAGES = [{"role": "user", "content": "Write hello into a.txt"}]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    requires("serve")
    requires("llamacpp")
    from agenteval.serving.testmodel import create_test_model

    directory = tmp_path_factory.mktemp("tiny")
    create_test_model(directory, gguf="Q4_K_M")
    return directory


def served(alias: str, cfg: ModelConfig) -> ServedModel:
    return build_served(alias, cfg, ProjectConfig(models={alias: cfg}))


@pytest.fixture(params=["transformers", "llamacpp"])
def engine_model(request: pytest.FixtureRequest, tiny_model: Path) -> Iterator[ServedModel]:
    path = tiny_model if request.param == "transformers" else tiny_model / "model-Q4_K_M.gguf"
    model = served(f"tiny-{request.param}", ModelConfig(engine=request.param, path=str(path), context=8192))
    with model.serving(log=lambda m: None):
        yield model
    assert model.server is not None and model.server.proc is None  # stopped


def test_stream_usage_and_consistent_telemetry(engine_model: ServedModel) -> None:
    r = engine_model.chat(MESSAGES, max_tokens=48, timeout_s=120)
    c = r.call
    assert r.finish_reason in ("length", "stop", "repetition") and r.content
    assert c.completion_tokens is not None and 0 < c.completion_tokens <= 48
    assert c.ttft_s is not None and c.ttfat_s is not None and c.decode_s is not None
    assert 0 < c.ttft_s <= c.ttfat_s <= c.e2e_s
    assert c.decode_tokens_per_s is not None
    assert c.decode_tokens_per_s * c.decode_s == pytest.approx(c.completion_tokens)
    assert c.error is None and c.concurrency == 1
    assert c.prompt_tokens and not c.tokens_estimated
    if engine_model.cfg and engine_model.cfg.engine == "llamacpp":
        # llama-cpp-python streams no usage: the counts and timings come from llama.cpp's own report
        assert abs(c.server_timings["eval_n"] - c.completion_tokens) <= 1
        assert c.server_timings["eval_tokens_per_s"] > 0


def test_tool_definitions_are_accepted(engine_model: ServedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = record_streams(monkeypatch)
    r = engine_model.chat(MESSAGES, tools=TOOLS, max_tokens=16, timeout_s=120)
    streamed = chunks(lines)
    assert r.call.error is None and streamed  # the request with tools was answered by a stream
    # A random model rarely calls a tool, so none may come: each call the server streamed is one
    # parsed call, and each parsed call is named and has an id.
    assert len(r.tool_calls) == tool_call_count(streamed), (r.tool_calls, streamed)
    assert [t for t in r.tool_calls if not (t.id and t.name)] == []


def test_fingerprint(engine_model: ServedModel) -> None:
    info = engine_model.fingerprint_info()
    assert info["random_weights"] is True and info["load_s"] > 0 and info["warm_up_s"] > 0
    assert info["server_version"] and info["file_sha256"] and info["chat_template_sha256"]
    assert info["context"] == 8192 and info["sampling"] == {"temperature": 0.0, "seed": 0}
    if engine_model.cfg and engine_model.cfg.engine == "llamacpp":
        assert info["server"] == "llama-cpp-python" and info["quantization"] == "Q4_K_M"
    else:
        assert info["server"] == "transformers serve"


def _engine(alias: str, cfg: ModelConfig, log_dir: Path) -> ManagedServer:
    server = create_engine(alias, cfg, None, log_dir=log_dir)
    assert server is not None
    return server


def test_a_server_that_dies_while_starting_is_one_clear_error(tmp_path: Path) -> None:
    cfg = ModelConfig(engine="command", command=f"{sys.executable} -c \"print('bad flag'); raise SystemExit(3)\"")
    server = _engine("broken", cfg, tmp_path)
    with pytest.raises(ServerStartError, match=r"exited with code 3 while starting: bad flag"):
        server.start()


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    cfg = ModelConfig(engine="command", command=f"{sys.executable} -c \"import time; time.sleep(60)\"",
                      startup_timeout_sec=1.5)
    server = _engine("silent", cfg, tmp_path)
    t0 = time.monotonic()
    with pytest.raises(ServerStartError, match="did not answer"):
        server.start()
    assert time.monotonic() - t0 < 10 and server.proc is None


def test_server_dies_with_a_killed_runner(tmp_path: Path) -> None:
    """kill -9 of the process that started a server must not leave the server running."""
    pidfile = tmp_path / "server.pid"
    script = (
        "import sys, time\n"
        "from agenteval.config import ModelConfig\n"
        "from agenteval.serving.engines import create_engine\n"
        f"cfg = ModelConfig(engine='command', health_path='/', command='{sys.executable} -m http.server {{port}} --bind 127.0.0.1')\n"
        f"s = create_engine('web', cfg, None, log_dir=__import__('pathlib').Path({str(tmp_path)!r}))\n"
        "s.start()\n"
        f"open({str(pidfile)!r}, 'w').write(str(s.proc.pid))\n"
        "time.sleep(60)\n")
    runner = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 30
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    server_pid = int(pidfile.read_text())
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(server_pid):
        time.sleep(0.1)
    assert not _alive(server_pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


@pytest.mark.docker
def test_run_end_to_end_with_served_models(workdir: Path, tiny_model: Path, python_image: str,
                                           docker_client: Any) -> None:
    """The README's main job in small: oracle plus the tiny model on both engines, real telemetry recorded."""
    from agenteval.console import report_run
    from agenteval.runner import RunOptions, execute_run

    (workdir / "agenteval.toml").write_text(
        f'[models.tf]\nengine = "transformers"\npath = "{tiny_model}"\n\n'
        f'[models.q4]\nengine = "llamacpp"\npath = "{tiny_model / "model-Q4_K_M.gguf"}"\ncontext = 8192\n')
    opts = RunOptions(task_paths=[str(FIXTURES / "tasks" / "short")], models=["oracle", "tf", "q4"], samples=2,
                      db=workdir / "db.duckdb", out=workdir / "reports", config=workdir / "agenteval.toml")
    result = execute_run(opts, log=lambda m: None)
    by_model = {m: [r for r in result.records if r.model == m] for m in ("oracle", "tf", "q4")}
    assert len(by_model["oracle"]) == 2 and all(r.passed for r in by_model["oracle"])
    for model in ("tf", "q4"):
        records = by_model[model]
        assert len(records) == 2
        for r in records:
            assert r.model_calls, r.error
            call = r.model_calls[0]
            assert call.e2e_s > 0 and call.completion_tokens and call.completion_tokens <= 200
            assert r.failure_mode is None or r.failure_mode.value in ("verify_failed", "model_error", "agent_limit")
            assert r.fingerprint.model_info["random_weights"] is True
            # the agent's own notes (role "agent": the protocol it chose, ...) aside
            assert [m["role"] for m in r.transcript if m["role"] != "agent"] == ["system", "user", "assistant"]
    html = report_run(result).read_text()
    # each model is a row of the leaderboard, the served ones marked: a label matched whole, not "tf" in "utf-8"
    rows = re.findall(r'<tr id="m-[^"]+"><td class="num">\d+</td><th>([^<]+)', html)
    assert sorted(r.strip() for r in rows) == ["oracle", "q4", "tf"], rows
    for m in ("tf", "q4"):
        assert f'<th>{m} <span class="warn">(random weights)</span>' in html, m
    assert _server_processes(str(tiny_model)) == []  # each server stopped after its model's trials


def _server_processes(model_path: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if model_path in ln and not ln.startswith("Z")]
