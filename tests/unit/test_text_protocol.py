"""The text protocol's rule (what in an answer acts), the prompts, and how a trial's
tool protocol is chosen before its first call."""

from __future__ import annotations

import pytest

from agenteval.agent.prompts import NATIVE_SYSTEM, TEXT_SYSTEM, system_prompt
from agenteval.agent.protocol import remember_refusal, starting_protocol
from agenteval.agent.single_shot import extract_files
from agenteval.agent.text_protocol import ignored_note, parse_text_actions, pending_calls
from agenteval.models.base import ChatModel, ModelSpec, ToolSupport
from agenteval.models.chat import ChatResponse, Message, ToolSchema
from agenteval.records import ToolProtocol


def calls(answer: str) -> list[tuple[str, dict[str, object]]]:
    return [(c["name"], dict(c["arguments"])) for c in pending_calls(parse_text_actions(answer))
            if isinstance(c["arguments"], dict)]


@pytest.mark.parametrize("tag", ["bash", "sh", "shell", "Bash", "bash title"])
def test_shell_blocks_run(tag: str) -> None:
    assert calls(f"Sure.\n```{tag}\necho hi > hello.txt\n```\n") == [("bash", {"command": "echo hi > hello.txt\n"})]


def test_blocks_act_in_the_order_written_and_done_comes_last() -> None:
    answer = ("DONE\n```bash\ncat a.txt\n```\n~~~file:a.txt\nfirst\n```bash\nnot a block of its own\n```\n~~~\n"
              "```sh\nls\n```")
    assert calls(answer) == [("bash", {"command": "cat a.txt\n"}),
                             ("write_file", {"path": "a.txt", "content": "first\n```bash\nnot a block of its own\n```\n"}),
                             ("bash", {"command": "ls\n"}), ("done", {})]


@pytest.mark.parametrize("block", ["```python\nprint(1)\n```", "```\necho hi > hello.txt\n```", "```py\nx\n```",
                                   "```json\n{}\n```", "```console\n$ ls\n```"])
def test_python_untagged_and_other_blocks_never_act_and_are_named(block: str) -> None:
    actions = parse_text_actions(f"Here:\n{block}\n")
    assert not actions.acts and not actions.done and len(actions.ignored) == 1
    note = ignored_note(actions.ignored)
    assert "Not run: 1 block(s)" in note and ("untagged" in note or "```" + actions.ignored[0] in note)


def test_unclosed_blocks_and_done_inside_blocks_do_nothing() -> None:
    assert calls("```bash\nrm -rf /workspace/x\n") == []  # cut before the fence closed
    assert calls("~~~file:notes.txt\nDONE\n~~~\n") == [("write_file", {"path": "notes.txt", "content": "DONE\n"})]
    assert calls("I am DONE now") == [] and calls("  DONE  \n") == [("done", {})]


def test_file_paths_are_passed_as_written_and_checked_when_run() -> None:
    # run_tool refuses them through safe_relpath; single-shot refuses them before writing
    assert calls("~~~file:../../etc/passwd\nx\n~~~\n")[0][1]["path"] == "../../etc/passwd"
    files, refused = extract_files("~~~file:../x\nx\n~~~\n```file:/abs/ok.sh\necho\n```\n~~~file:a\n1\n~~~\n~~~file:a\n2\n~~~")
    assert refused == ["../x"] and set(files) == {"abs/ok.sh", "a"}
    assert files["a"].content == b"2\n" and files["abs/ok.sh"].mode == 0o755


def test_the_prompts_describe_every_tool_and_the_text_rule() -> None:
    for name in ("bash(command)", "write_file(path, content)", "read_file(path)", "done(summary)"):
        assert name in NATIVE_SYSTEM
    assert "```bash" not in NATIVE_SYSTEM and "```bash" in system_prompt(ToolProtocol.native, may_switch=True)
    assert "```bash" in TEXT_SYSTEM and "~~~file:" in TEXT_SYSTEM and "```python" in TEXT_SYSTEM


class Stub(ChatModel):
    def __init__(self, protocol: ToolProtocol, support: ToolSupport) -> None:
        self.spec, self.tool_protocol, self.support = ModelSpec("stub"), protocol, support

    def tool_support(self) -> ToolSupport:
        return self.support

    def chat(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
             max_tokens: int | None = None, timeout_s: float | None = None) -> ChatResponse:
        raise AssertionError("not called")

    def fingerprint_info(self) -> dict[str, object]:
        return {}


@pytest.mark.parametrize("protocol, support, expected", [
    (ToolProtocol.auto, ToolSupport.yes, ToolProtocol.native), (ToolProtocol.auto, ToolSupport.no, ToolProtocol.text),
    (ToolProtocol.auto, ToolSupport.unknown, ToolProtocol.native),
    (ToolProtocol.native, ToolSupport.no, ToolProtocol.native), (ToolProtocol.text, ToolSupport.yes, ToolProtocol.text),
])
def test_the_protocol_is_chosen_before_the_first_call(protocol: ToolProtocol, support: ToolSupport,
                                                     expected: ToolProtocol) -> None:
    assert starting_protocol(Stub(protocol, support))[0] is expected


def test_a_refusal_is_remembered_for_the_later_trials_of_that_model_only() -> None:
    refused, other = Stub(ToolProtocol.auto, ToolSupport.unknown), Stub(ToolProtocol.auto, ToolSupport.unknown)
    remember_refusal(refused)
    assert starting_protocol(refused) == (ToolProtocol.text, "the server refused a request with tools in an earlier trial")
    assert starting_protocol(other)[0] is ToolProtocol.native
