"""Single-shot mode: the model answers once; every file it writes comes back in
a fenced block ``file:PATH`` and is written into /workspace before the verifier
judges it. An answer cut by the time budget or the repetition guard is kept in
the transcript but writes nothing (as in the agent loop: ``graph.py``)."""

from __future__ import annotations

from agenteval.agent.solver import AgentContext, AgentOutcome
from agenteval.agent.state import Stop
from agenteval.agent.text_protocol import fenced_blocks
from agenteval.models.base import ChatModel
from agenteval.models.chat import CallStop, ChatResponse, ErrorKind, Message, ModelCallError
from agenteval.records import ModelCall, StopReason
from agenteval.sandbox.base import WORKSPACE, FileEntry, safe_relpath

SINGLE_SHOT_SYSTEM = """You are an expert software engineer completing a task in a Linux workspace (/workspace).
You cannot run commands. Answer with the complete content of every file you create, each in its own
fenced block whose info string is `file:` and the path relative to /workspace, like this:

~~~file:src/main.py
print("hello")
~~~

Use ~~~ fences (so ``` inside a file is safe). Files are written exactly as given; nothing else is."""

MAX_SINGLE_SHOT_TOKENS = 8192


def extract_files(answer: str) -> tuple[dict[str, FileEntry], list[str]]:
    """Files named in ``file:PATH`` blocks (last one wins) and the paths refused."""
    files: dict[str, FileEntry] = {}
    refused: list[str] = []
    for block in fenced_blocks(answer):
        if block.file_path is None:
            continue
        try:
            path = safe_relpath(block.file_path)
        except ValueError:
            refused.append(block.file_path)
            continue
        files[path] = FileEntry(block.body.encode("utf-8"), 0o755 if path.endswith(".sh") else 0o644)
    return files, refused


def single_shot(model: ChatModel, ctx: AgentContext) -> AgentOutcome:
    messages: list[Message] = [{"role": "system", "content": SINGLE_SHOT_SYSTEM},
                               {"role": "user", "content": ctx.instruction}]
    transcript: list[dict[str, object]] = list(messages)
    try:
        resp = model.chat(messages, max_tokens=min(ctx.budget.max_total_tokens, MAX_SINGLE_SHOT_TOKENS),
                          timeout_s=ctx.budget.timeout_sec)
    except ModelCallError as e:
        reason = StopReason.infra_error if e.kind is ErrorKind.infra else StopReason.model_error
        return _outcome(reason, str(e), e.call, transcript, steps=0)
    files, refused = extract_files(resp.content)
    entry: dict[str, object] = {
        "role": "assistant", "content": resp.content, "reasoning": resp.reasoning,
        "tool_calls": [{"id": f"file_{i}", "name": "write_file",
                        "arguments": {"path": path, "content": entry.content.decode("utf-8", "replace")}}
                       for i, (path, entry) in enumerate(files.items())]}
    if resp.stop is not CallStop.complete:
        entry["stop"] = resp.stop.value
    transcript.append(entry)
    if resp.stop in (CallStop.budget, CallStop.repetition):
        cut = f"the answer was cut ({resp.stop.value}); its {len(files)} file(s) were not written"
        reason = StopReason.time_limit if resp.stop is CallStop.budget else StopReason.repetition
        return _outcome(reason, f"limit: {cut}", resp.call, transcript)
    if files:
        ctx.sandbox.write_files(WORKSPACE, files)
    note = f"wrote {len(files)} files" + (f"; refused paths {refused}" if refused else "")
    reason = StopReason.answer_cut if _cut_at_length(resp) and not files else StopReason.done
    return _outcome(reason, note, resp.call, transcript, written=len(files))


def _cut_at_length(resp: ChatResponse) -> bool:
    return resp.stop is CallStop.length or resp.finish_reason == "length"


def _outcome(reason: StopReason, message: str, call: ModelCall, transcript: list[dict[str, object]], *,
             steps: int = 1, written: int = 0) -> AgentOutcome:
    return AgentOutcome(Stop(reason, message).status, message, model_calls=[call], transcript=transcript,
                        stop=reason, steps=steps, tool_protocol=None, actions_run=written)
