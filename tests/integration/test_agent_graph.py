"""The LangGraph agent against a scripted OpenAI-compatible server (a test double
for a model: it replays a given sequence of answers) and the real engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agenteval.records import FailureMode, TrialRecord
from agenteval.runner import RunOptions, execute_run
from tests.conftest import FIXTURES, REPO
from tests.fixtures.protocols.openai_stream import chunk
from tests.scripted_server import Reply, ScriptedServer

pytestmark = pytest.mark.docker
USAGE = {"prompt_tokens": 30, "completion_tokens": 10, "total_tokens": 40}  # small: the short task allows 200


def tool_reply(name: str, args: dict[str, Any], content: str = "") -> Reply:
    chunks = []
    if content:
        chunks.append(chunk({"role": "assistant", "content": content}))
    chunks += [chunk({"tool_calls": [{"index": 0, "id": f"call_{name}", "type": "function",
                                      "function": {"name": name, "arguments": json.dumps(args)}}]}),
               chunk({}, finish="tool_calls"), chunk(None, usage=USAGE)]
    return Reply.sse(chunks)


def text_reply(content: str) -> Reply:
    return Reply.sse([chunk({"role": "assistant", "content": content}), chunk({}, finish="stop"),
                      chunk(None, usage=USAGE)])


WARM_UP = text_reply("OK")


def run(workdir: Path, task: Path, model: str, config: str | None = None) -> tuple[TrialRecord, Any]:
    cfg = None
    if config:
        cfg = workdir / "agenteval.toml"
        cfg.write_text(config)
    opts = RunOptions(task_paths=[str(task)], models=[model], db=workdir / "db.duckdb", out=workdir / "reports",
                      config=cfg)
    result = execute_run(opts, log=lambda m: None)
    assert len(result.records) == 1
    return result.records[0], result


def test_the_loop_writes_flappy_over_several_steps_and_passes(workdir: Path, docker_client: Any) -> None:
    game = (REPO / "tasks" / "flappy" / "solution" / "workspace" / "flappy.py").read_text()
    half = game[: len(game) // 2]
    script = [WARM_UP,
              tool_reply("write_file", {"path": "flappy.py", "content": half}, "I'll start the game file."),
              tool_reply("read_file", {"path": "flappy.py"}),
              tool_reply("write_file", {"path": "flappy.py", "content": game}),
              tool_reply("bash", {"command": "python3 -c \"import ast; ast.parse(open('flappy.py').read())\" && echo parsed"}),
              tool_reply("done", {"summary": "wrote flappy.py"})]
    with ScriptedServer(script) as srv:
        record, _ = run(workdir, REPO / "tasks" / "flappy", f"openai:scripted@{srv.url}/v1")
        bodies = [b for _, _, b in srv.requests[1:]]
    assert record.passed, (record.error, record.verdict)
    assert len(record.model_calls) == 5 and all(c.prompt_tokens == 30 for c in record.model_calls)
    tool_results = [m for m in record.transcript if m["role"] == "tool"]
    assert [m["name"] for m in tool_results] == ["write_file", "read_file", "write_file", "bash", "done"]
    assert tool_results[1]["content"] == half and tool_results[3]["content"].startswith("exit code 0\nparsed")
    assert bodies[0]["tools"] and {t["function"]["name"] for t in bodies[0]["tools"]} == {
        "bash", "write_file", "read_file", "done"}
    assert bodies[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_write_file",
                                         "content": f"wrote {len(half.encode())} bytes to flappy.py"}


def test_budget_stops_a_model_that_never_finishes(workdir: Path, docker_client: Any, tmp_path: Path) -> None:
    task = tmp_path / "looping"
    (task / "tests").mkdir(parents=True)
    shutil_copy(FIXTURES / "tasks" / "short" / "tests" / "verify.py", task / "tests" / "verify.py")
    (task / "instruction.md").write_text("Write hello into hello.txt.\n")
    (task / "task.toml").write_text("[agent]\nmax_steps = 3\n")
    with ScriptedServer([WARM_UP] + [tool_reply("bash", {"command": "true"}) for _ in range(10)]) as srv:
        record, _ = run(workdir, task, f"openai:loop@{srv.url}/v1")
        asked = len(srv.requests) - 1
    assert record.failure_mode is FailureMode.agent_limit and "3 steps" in (record.error or "")
    assert asked == 3 and len(record.model_calls) == 3
    assert record.verdict is not None  # the verifier still ran on what exists


def test_text_protocol_for_a_model_without_tools(workdir: Path, docker_client: Any) -> None:
    answer = ("Let me write it.\n~~~file:hello.txt\nhello\n~~~\n```bash\ncat hello.txt\n```\n")
    with ScriptedServer([WARM_UP, text_reply(answer), text_reply("Looks right.\nDONE\n")]) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "short", "plain",
                        config=f'[models.plain]\nbase_url = "{srv.url}/v1"\ntools = "text"\n')
        bodies = [b for _, _, b in srv.requests[1:]]
    assert record.passed, record.error
    assert "tools" not in bodies[0]
    results = bodies[1]["messages"][-1]
    assert results["role"] == "user" and "[write_file] wrote 6 bytes to hello.txt" in results["content"]
    assert "[bash] exit code 0\nhello" in results["content"]


def test_a_server_that_rejects_tools_falls_back_to_text(workdir: Path, docker_client: Any) -> None:
    rejected = Reply.json({"error": {"message": "this model does not support tools"}}, status=400)
    with ScriptedServer([WARM_UP, rejected, text_reply("~~~file:hello.txt\nhello\n~~~\nDONE\n")]) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "short", f"openai:notools@{srv.url}/v1")
    assert record.passed, record.error
    assert record.model_calls[0].error and len(record.model_calls) == 2


def test_thinking_never_reaches_tools_or_files(workdir: Path, docker_client: Any) -> None:
    thought = "<think>~~~file:evil.txt\nleak\n~~~\nDONE\n```bash\ntouch pwned\n```</think>"
    answer = thought + "~~~file:hello.txt\nhello\n~~~\n"
    with ScriptedServer([WARM_UP, text_reply(answer), text_reply("```bash\nls\n```\n"),
                         text_reply("DONE")]) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "short", "plain",
                        config=f'[models.plain]\nbase_url = "{srv.url}/v1"\ntools = "text"\n')
        assert len(srv.requests) == 4, (record.error, [c.error for c in record.model_calls])
        listing = srv.requests[3][2]["messages"][-1]["content"]
    assert record.passed, record.error
    assert "evil.txt" not in listing and "pwned" not in listing and "hello.txt" in listing
    assistant = [m for m in record.transcript if m["role"] == "assistant"][0]
    assert "evil.txt" in assistant["reasoning"] and "evil.txt" not in assistant["content"]


def shutil_copy(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes())


def test_a_task_graph_py_replaces_the_default_graph(workdir: Path, docker_client: Any) -> None:
    with ScriptedServer([WARM_UP, text_reply("hi")]) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "customgraph", f"openai:custom@{srv.url}/v1")
        bodies = [b for _, _, b in srv.requests[1:]]
    assert record.passed, record.error
    assert len(bodies) == 1 and "tools" not in bodies[0]  # the default graph would have offered tools
    assert record.transcript[-1] == {"role": "tool", "name": "write_file", "content": "wrote 6 bytes to hello.txt"}
