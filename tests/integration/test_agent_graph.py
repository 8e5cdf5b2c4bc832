"""The LangGraph agent against a scripted OpenAI-compatible server (a test double
for a model: it replays a given sequence of answers) and the real engine: tool
calls, the text protocol and the switch to it, the one reminder, answers cut by
the time budget or the loop guard, and what the record says the agent did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agenteval.records import FailureMode, StopReason, ToolProtocol, TrialRecord
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
        bodies = srv.chats[1:]
    assert record.passed, (record.error, record.verdict)
    assert len(record.model_calls) == 5 and all(c.prompt_tokens == 30 for c in record.model_calls)
    tool_results = [m for m in record.transcript if m["role"] == "tool"]
    assert [m["name"] for m in tool_results] == ["write_file", "read_file", "write_file", "bash", "done"]
    assert tool_results[1]["content"] == half and tool_results[3]["content"].startswith("exit code 0\nparsed")
    assert bodies[0]["tools"] and {t["function"]["name"] for t in bodies[0]["tools"]} == {
        "bash", "write_file", "read_file", "done"}
    assert bodies[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_write_file",
                                         "content": f"wrote {len(half.encode())} bytes to flappy.py"}
    assert "write_file(path, content)" in bodies[0]["messages"][0]["content"]  # the tools in words too
    assert (record.agent_stop, record.agent_steps, record.tool_protocol, record.actions_run) == (
        StopReason.done, 5, ToolProtocol.native, 3)


def test_budget_stops_a_model_that_never_finishes(workdir: Path, docker_client: Any, tmp_path: Path) -> None:
    task = tmp_path / "looping"
    (task / "tests").mkdir(parents=True)
    shutil_copy(FIXTURES / "tasks" / "short" / "tests" / "verify.py", task / "tests" / "verify.py")
    (task / "instruction.md").write_text("Write hello into hello.txt.\n")
    (task / "task.toml").write_text("[agent]\nmax_steps = 3\n")
    with ScriptedServer([WARM_UP] + [tool_reply("bash", {"command": "true"}) for _ in range(10)]) as srv:
        record, _ = run(workdir, task, f"openai:loop@{srv.url}/v1")
        asked = len(srv.chats) - 1
    assert record.failure_mode is FailureMode.agent_limit and "3 steps" in (record.error or "")
    assert (record.agent_stop, record.agent_steps, record.actions_run) == (StopReason.step_limit, 3, 3)
    assert asked == 3 and len(record.model_calls) == 3
    assert record.verdict is not None  # the verifier still ran on what exists


def test_text_protocol_for_a_model_without_tools(workdir: Path, docker_client: Any) -> None:
    answer = ("Let me write it.\n~~~file:hello.txt\nhello\n~~~\n```bash\ncat hello.txt\n```\n")
    with ScriptedServer([WARM_UP, text_reply(answer), text_reply("Looks right.\nDONE\n")]) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "short", "plain",
                        config=f'[models.plain]\nbase_url = "{srv.url}/v1"\ntools = "text"\n')
        bodies = srv.chats[1:]
    assert record.passed, record.error
    assert record.tool_protocol is ToolProtocol.text and record.actions_run == 2
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
        assert len(srv.chats) == 4, (record.error, [c.error for c in record.model_calls])
        listing = srv.chats[3]["messages"][-1]["content"]
    assert record.passed, record.error
    assert "evil.txt" not in listing and "pwned" not in listing and "hello.txt" in listing
    assistant = [m for m in record.transcript if m["role"] == "assistant"][0]
    assert "evil.txt" in assistant["reasoning"] and "evil.txt" not in assistant["content"]


def shutil_copy(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes())


def test_a_task_graph_py_replaces_the_default_graph(workdir: Path, docker_client: Any) -> None:
    with ScriptedServer([WARM_UP, text_reply("hi")]) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "customgraph", f"openai:custom@{srv.url}/v1")
        bodies = srv.chats[1:]
    assert record.passed, record.error
    assert len(bodies) == 1 and "tools" not in bodies[0]  # the default graph would have offered tools
    assert record.transcript[-1] == {"role": "tool", "name": "write_file", "content": "wrote 6 bytes to hello.txt"}
    assert (record.agent_stop, record.agent_steps, record.actions_run) == (StopReason.done, 1, 1)


def short_task(tmp_path: Path, agent: str) -> Path:
    """The short task (write hello.txt) with its own [agent] budgets."""
    task = tmp_path / "task"
    (task / "tests").mkdir(parents=True)
    shutil_copy(FIXTURES / "tasks" / "short" / "tests" / "verify.py", task / "tests" / "verify.py")
    (task / "instruction.md").write_text("Write the text hello and a newline into hello.txt.\n")
    (task / "task.toml").write_text(f"[agent]\n{agent}\n")
    return task


def agent_commands(record: TrialRecord) -> list[str]:
    return [e.command for e in record.execs if e.phase == "agent"]


def test_bash_blocks_answered_while_tools_were_offered_run_in_the_sandbox(workdir: Path, docker_client: Any) -> None:
    answer = "I'll create the file.\n```bash\nprintf 'hello\\n' > hello.txt && id -u\n```\n"
    with ScriptedServer([WARM_UP, text_reply(answer), text_reply("DONE")]) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "short", f"openai:blocks@{srv.url}/v1")
        bodies = srv.chats[1:]
    assert record.passed, (record.error, record.transcript)
    [ran] = [e for e in record.execs if e.phase == "agent"]
    assert ran.command == "printf 'hello\\n' > hello.txt && id -u\n" and ran.stdout == "1000\n" and ran.user.startswith("1000")
    assert bodies[0]["tools"] and "tools" not in bodies[1]  # switched: no tools offered after the answer
    assert "[bash] exit code 0\n1000" in bodies[1]["messages"][-1]["content"]
    events = [m for m in record.transcript if m["role"] == "agent"]
    assert [m["event"] for m in events] == ["protocol", "protocol_switch"]
    assert "acted with text blocks" in events[1]["content"]
    assert (record.agent_stop, record.agent_steps, record.tool_protocol, record.actions_run) == (
        StopReason.done, 2, ToolProtocol.text, 1)


def test_a_500_on_requests_with_tools_falls_back_to_text(workdir: Path, docker_client: Any) -> None:
    refusal = Reply.json({"error": {"code": 500, "message": "tools param requires --jinja flag"}}, status=500)
    script = [WARM_UP, text_reply("```sh\necho hello > hello.txt\n```\nDONE\n")]
    with ScriptedServer(script, refuse_tools=refusal) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "short", f"openai:nojinja@{srv.url}/v1")
        with_tools = [b for b in srv.chats if "tools" in b]
    assert record.passed, (record.error, record.transcript)
    assert len(with_tools) == 1, "a refusal of tools is not retried with tools"
    assert [c.error is not None for c in record.model_calls] == [True, False]
    assert agent_commands(record) == ["echo hello > hello.txt\n"]
    switch = [m for m in record.transcript if m.get("event") == "protocol_switch"]
    assert len(switch) == 1 and "HTTP 500" in switch[0]["content"]
    assert (record.agent_stop, record.agent_steps, record.tool_protocol, record.actions_run) == (
        StopReason.done, 1, ToolProtocol.text, 1)


def test_an_answer_without_action_gets_exactly_one_reminder(workdir: Path, docker_client: Any) -> None:
    second = ("```python\nopen('hello.txt', 'w').write('hello\\n')\n```\n"
              "```\necho hello > hello.txt\n```\n")
    with ScriptedServer([WARM_UP, text_reply("I would write hello into hello.txt."), text_reply(second),
                         text_reply("```bash\necho never > asked.txt\n```")]) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "short", "plain",
                        config=f'[models.plain]\nbase_url = "{srv.url}/v1"\ntools = "text"\n')
        bodies = srv.chats[1:]
    assert len(bodies) == 2, "the trial ends after the second answer that does nothing"
    reminders = [m for m in bodies[1]["messages"] if str(m["content"]).startswith("Nothing ran")]
    assert len(reminders) == 1 and bodies[1]["messages"][-1] == reminders[0]
    assert record.failure_mode is FailureMode.verify_failed  # python and untagged blocks never ran
    assert agent_commands(record) == [] and record.actions_run == 0
    assert [m.get("event") for m in record.transcript if m["role"] == "agent"].count("reminder") == 1
    assert (record.agent_stop, record.agent_steps) == (StopReason.done, 2)


def test_python_and_untagged_blocks_are_named_and_only_shell_blocks_run(workdir: Path, docker_client: Any) -> None:
    answer = ("```python\nopen('py.txt', 'w').write('x')\n```\n```\ntouch untagged.txt\n```\n"
              "```shell\necho hello > hello.txt; ls\n```\n")
    with ScriptedServer([WARM_UP, text_reply(answer), text_reply("DONE")]) as srv:
        record, _ = run(workdir, FIXTURES / "tasks" / "short", "plain",
                        config=f'[models.plain]\nbase_url = "{srv.url}/v1"\ntools = "text"\n')
        results = srv.chats[2]["messages"][-1]["content"]
    assert record.passed, record.error
    assert agent_commands(record) == ["echo hello > hello.txt; ls\n"]
    assert "[bash] exit code 0\nhello.txt\n" in results  # nothing else was created
    assert "Not run: 2 block(s) (```python, untagged)" in results


def test_an_answer_cut_by_the_time_budget_is_kept_and_is_agent_limit(workdir: Path, docker_client: Any,
                                                                      tmp_path: Path) -> None:
    partial = "~~~file:hello.txt\nhello\n~~~\n```bash\ntouch late.txt\n```\nAnd now"
    stalled = Reply.stalled([chunk({"role": "assistant", "content": partial})], stall_s=30)
    with ScriptedServer([WARM_UP, stalled]) as srv:
        srv.routes["/tokenize"] = Reply.json({"tokens": [1, 2, 3, 4, 5, 6, 7]})
        record, _ = run(workdir, short_task(tmp_path, "timeout_sec = 3"), "plain",
                        config=f'[models.plain]\nbase_url = "{srv.url}/v1"\ntools = "text"\n')
    assert record.failure_mode is FailureMode.agent_limit and record.agent_stop is StopReason.time_limit
    assert record.agent_s < 15, "the stalled stream was cut at the budget"
    [cut] = [m for m in record.transcript if m["role"] == "assistant"]
    assert cut["content"] == partial and cut["stop"] == "budget"
    assert agent_commands(record) == [] and record.actions_run == 0  # a cut answer does not act
    assert not record.passed and "did not run" in (record.error or "")
    [call] = record.model_calls
    assert call.error is None and call.completion_tokens == 7 and call.tokens_estimated


def test_a_repetition_stop_keeps_the_repeated_text_and_is_agent_limit(workdir: Path, docker_client: Any) -> None:
    unit = "```bash\necho again >> loop.txt\n```\n"
    looping = Reply.sse([chunk({"role": "assistant", "content": unit}) for _ in range(120)]
                        + [chunk({}, finish="stop"), chunk(None, usage=USAGE)])
    with ScriptedServer([WARM_UP, looping]) as srv:
        srv.routes["/tokenize"] = Reply.json({"tokens": [1, 2, 3]})
        record, _ = run(workdir, FIXTURES / "tasks" / "short", "plain",
                        config=f'[models.plain]\nbase_url = "{srv.url}/v1"\ntools = "text"\n')
    assert record.failure_mode is FailureMode.agent_limit and record.agent_stop is StopReason.repetition
    [kept] = [m for m in record.transcript if m["role"] == "assistant"]
    assert kept["stop"] == "repetition" and kept["content"].count(unit) >= 3
    assert agent_commands(record) == [] and record.actions_run == 0
    assert record.model_calls[0].completion_tokens is not None


def test_each_sample_is_sent_its_own_seed(workdir: Path, docker_client: Any) -> None:
    """Sample i of a variant is sent seed + i, the same on every model, so samples at temperature > 0
    are independent draws paired across models by seed; the warm-up keeps the configured seed."""
    config = ('[models.m]\nprovider = "openai"\nname = "scripted"\nbase_url = "{url}/v1"\n'
              'sampling = {{ temperature = 0.7, seed = 40 }}\n')
    script = [WARM_UP] + [tool_reply("done", {"summary": "nothing"}) for _ in range(3)]
    with ScriptedServer(script) as srv:
        cfg = workdir / "agenteval.toml"
        cfg.write_text(config.format(url=srv.url))
        opts = RunOptions(task_paths=[str(FIXTURES / "tasks" / "short")], models=["m"], samples=3,
                          db=workdir / "db.duckdb", out=workdir / "reports", config=cfg)
        result = execute_run(opts, log=lambda m: None)
        bodies = srv.chats
    assert [b["seed"] for b in bodies] == [40, 40, 41, 42]  # warm-up, then samples 0, 1, 2
    assert all(b["temperature"] == 0.7 for b in bodies)
    assert sorted(r.sample for r in result.records) == [0, 1, 2]
    assert all(r.fingerprint.model_info["sample_seeds"] is True for r in result.records)
