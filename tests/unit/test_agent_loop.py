"""The agent loop's decisions, with a queue-driven model and an in-memory sandbox:
protocol switches, the one reminder, cut answers, and what AgentOutcome says.
(tests/integration/test_agent_graph.py runs the same paths against a real
sandbox and a scripted HTTP server.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agenteval.agent import run_agent
from agenteval.agent.solver import AgentContext, AgentOutcome, AgentStatus
from agenteval.models.base import ChatModel, ModelSpec, ToolSupport
from agenteval.models.chat import CallStop, ChatResponse, Failure, Message, ModelCallError, ToolCall, ToolSchema
from agenteval.records import ExecRecord, ModelCall, StopReason, ToolProtocol
from agenteval.sandbox.base import AGENT_UID, FileEntry, Sandbox, TreeEntry
from agenteval.task import load_task
from agenteval.task.spec import AgentSpec
from tests.conftest import FIXTURES


class MemorySandbox(Sandbox):
    """Records commands; keeps written files in a dict."""

    def __init__(self) -> None:
        self.execs: list[ExecRecord] = []
        self.files: dict[str, bytes] = {}

    def start(self) -> None: ...

    def exec(self, command: str, *, uid: int = AGENT_UID, workdir: str = "/workspace",
             env: dict[str, str] | None = None, timeout_s: float | None = None, phase: str = "agent") -> ExecRecord:
        record = ExecRecord(phase=phase, user=str(uid), command=command, exit_code=0, duration_s=0.0, stdout="ran\n")
        self.execs.append(record)
        return record

    def write_files(self, dest: str, files: dict[str, FileEntry], *, uid: int = AGENT_UID, dir_mode: int = 0o755) -> None:
        self.files.update({f"{dest}/{k}": v.content for k, v in files.items()})

    def write_tree(self, dest: str, src: Path, *, uid: int = AGENT_UID, every_file: bool = False) -> None: ...

    def read_file(self, path: str, max_bytes: int = 1 << 24) -> bytes | None:
        return self.files.get(path)

    def read_entries(self, path: str, max_bytes: int = 1 << 25) -> list[TreeEntry] | None:
        return None

    def kill_processes(self, uid: int) -> None: ...

    def close(self) -> None: ...


Script = list[ChatResponse | ModelCallError]


class QueueModel(ChatModel):
    """Answers from a queue; keeps what each call was sent."""

    def __init__(self, script: Script, protocol: ToolProtocol = ToolProtocol.auto,
                 support: ToolSupport = ToolSupport.unknown) -> None:
        self.spec, self.script, self.tool_protocol, self.support = ModelSpec("queue"), list(script), protocol, support
        self.sent: list[tuple[list[Message], list[ToolSchema] | None]] = []

    def tool_support(self) -> ToolSupport:
        return self.support

    def chat(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
             max_tokens: int | None = None, timeout_s: float | None = None) -> ChatResponse:
        self.sent.append((list(messages), tools))
        item = self.script.pop(0)
        if isinstance(item, ModelCallError):
            raise item
        return item

    def fingerprint_info(self) -> dict[str, object]:
        return {}


def answer(content: str = "", tools: list[tuple[str, dict[str, Any]]] | None = None,
           stop: CallStop = CallStop.complete, reasoning: str = "") -> ChatResponse:
    calls = [ToolCall(f"call_{i}", name, json.dumps(args)) for i, (name, args) in enumerate(tools or [])]
    return ChatResponse(content, reasoning, calls, "tool_calls" if calls else "stop",
                        ModelCall(prompt_tokens=10, completion_tokens=5), stop)


def refused(status: int) -> ModelCallError:
    return ModelCallError(f"server refused the request with tools ({status})", Failure.tools_rejected, ModelCall(),
                          status=status)


def run(model: QueueModel, **budget: Any) -> tuple[AgentOutcome, MemorySandbox]:
    task = load_task(FIXTURES / "tasks" / "short")
    box = MemorySandbox()
    ctx = AgentContext(task=task, variant=task.variants()[0], instruction="Write hello.txt.", sandbox=box,
                       budget=AgentSpec(**budget))
    return run_agent(model, ctx), box


def events(outcome: AgentOutcome) -> list[object]:
    return [m.get("event") for m in outcome.transcript if m["role"] == "agent"]


def test_native_tool_calls_run_and_the_outcome_says_what_the_agent_did() -> None:
    model = QueueModel([answer(tools=[("bash", {"command": "echo hi > hello.txt"})]),
                        answer(tools=[("done", {"summary": "ok"})])], support=ToolSupport.yes)
    outcome, box = run(model)
    assert [e.command for e in box.execs] == ["echo hi > hello.txt"]
    assert (outcome.stop, outcome.steps, outcome.tool_protocol, outcome.actions_run) == (
        StopReason.done, 2, ToolProtocol.native, 1)
    assert model.sent[0][1] and "bash(command)" in str(model.sent[0][0][0]["content"])


def test_bash_blocks_without_tool_calls_switch_the_trial_to_text_and_run() -> None:
    model = QueueModel([answer("I will do it.\n```bash\necho hi > hello.txt\n```\n"), answer("DONE")])
    outcome, box = run(model)
    assert [e.command for e in box.execs] == ["echo hi > hello.txt\n"]
    assert (outcome.stop, outcome.steps, outcome.tool_protocol, outcome.actions_run) == (
        StopReason.done, 2, ToolProtocol.text, 1)
    assert events(outcome) == ["protocol", "protocol_switch"]
    second, tools = model.sent[1]
    switch = [i for i, m in enumerate(outcome.transcript) if m.get("event") == "protocol_switch"][0]
    assert outcome.transcript[switch - 1]["role"] == "assistant"  # the answer, then the switch it caused
    assert tools is None and second[0]["content"] == outcome.transcript[switch + 1]["content"]  # the text prompt
    assert "```bash" in str(second[0]["content"]) and "[bash] exit code 0\nran" in str(second[-1]["content"])


def test_a_refusal_of_tools_falls_back_within_the_same_step() -> None:
    model = QueueModel([refused(500), answer("~~~file:hello.txt\nhello\n~~~\nDONE\n")])
    outcome, box = run(model)
    assert box.files == {"/workspace/hello.txt": b"hello\n"}
    assert (outcome.stop, outcome.steps, outcome.tool_protocol, outcome.actions_run) == (
        StopReason.done, 1, ToolProtocol.text, 1)
    assert model.sent[0][1] is not None and model.sent[1][1] is None and len(outcome.model_calls) == 2
    switch = [m for m in outcome.transcript if m.get("event") == "protocol_switch"]
    assert len(switch) == 1 and "HTTP 500" in str(switch[0]["content"])


def test_the_server_telling_no_tools_starts_in_text() -> None:
    model = QueueModel([answer("DONE")], support=ToolSupport.no)
    outcome, _ = run(model)
    assert model.sent[0][1] is None and outcome.tool_protocol is ToolProtocol.text and outcome.actions_run == 0


def test_forced_native_never_runs_text_blocks_and_reminds_once() -> None:
    model = QueueModel([answer("```bash\ntouch x\n```"), answer("```bash\ntouch y\n```")], protocol=ToolProtocol.native)
    outcome, box = run(model)
    assert box.execs == [] and outcome.tool_protocol is ToolProtocol.native and outcome.actions_run == 0
    assert (outcome.stop, outcome.steps) == (StopReason.done, 2) and events(outcome) == ["protocol", "reminder"]


def test_an_answer_that_does_nothing_gets_exactly_one_reminder() -> None:
    model = QueueModel([answer("Let me think about it."), answer("```python\nopen('hello.txt','w')\n```"),
                        answer("still nothing")], protocol=ToolProtocol.text)
    outcome, box = run(model)
    assert len(model.sent) == 2 and box.execs == [] and box.files == {}
    assert events(outcome).count("reminder") == 1 and outcome.stop is StopReason.done and outcome.steps == 2
    reminder = model.sent[1][0][-1]
    assert reminder["role"] == "user" and "Nothing ran" in str(reminder["content"])


def test_python_blocks_next_to_actions_are_reported_not_run() -> None:
    model = QueueModel([answer("```python\nprint(1)\n```\n```\nls\n```\n```sh\nls\n```"), answer("DONE")],
                       protocol=ToolProtocol.text)
    outcome, box = run(model)
    assert [e.command for e in box.execs] == ["ls\n"]
    results = str(model.sent[1][0][-1]["content"])
    assert "Not run: 2 block(s) (```python, untagged)" in results and outcome.actions_run == 1


def test_a_budget_cut_answer_is_kept_but_does_not_act() -> None:
    model = QueueModel([answer("```bash\ntouch late\n```\n```bash\ntouch la", stop=CallStop.budget)],
                       protocol=ToolProtocol.text)
    outcome, box = run(model)
    assert box.execs == [] and outcome.status is AgentStatus.limit and outcome.stop is StopReason.time_limit
    cut = [m for m in outcome.transcript if m["role"] == "assistant"][0]
    assert cut["stop"] == "budget" and "touch la" in str(cut["content"])
    assert outcome.model_calls[0].completion_tokens == 5 and outcome.steps == 1 and outcome.actions_run == 0
    assert "not_run" in events(outcome) and "did not run" in outcome.message


def test_a_repetition_stop_keeps_the_repeated_text_and_is_a_limit() -> None:
    model = QueueModel([answer("hello " * 50, tools=[("bash", {"command": "true"})], stop=CallStop.repetition)])
    outcome, box = run(model)
    assert box.execs == [] and outcome.status is AgentStatus.limit and outcome.stop is StopReason.repetition
    assert [m for m in outcome.transcript if m["role"] == "assistant"][0]["content"] == "hello " * 50


def test_reasoning_never_acts() -> None:
    model = QueueModel([answer("Nothing here.", reasoning="```bash\ntouch pwned\n```\nDONE"), answer("DONE")],
                       protocol=ToolProtocol.text)
    outcome, box = run(model)
    assert box.execs == [] and events(outcome) == ["protocol", "reminder"]
    assert len(model.sent) == 2  # the answer and the reminder's turn
    assert all("pwned" not in str(m["content"]) for sent, _ in model.sent for m in sent)


def test_hostile_paths_are_refused_and_do_not_count() -> None:
    model = QueueModel([answer("~~~file:../../etc/passwd\nroot\n~~~\n~~~file:/ok.txt\nfine\n~~~\nDONE")],
                       protocol=ToolProtocol.text)
    outcome, box = run(model)
    assert box.files == {"/workspace/ok.txt": b"fine\n"} and outcome.actions_run == 1
    assert any("leaves its folder" in str(m["content"]) for m in outcome.transcript if m["role"] == "tool")


def test_the_step_budget_counts_the_reminded_answer() -> None:
    model = QueueModel([answer("hmm"), answer("hmm")], protocol=ToolProtocol.text)
    outcome, _ = run(model, max_steps=1)
    assert outcome.stop is StopReason.step_limit and outcome.steps == 1 and len(model.sent) == 1
