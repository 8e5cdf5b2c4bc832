"""Single-shot mode: the model answers once; every file it writes comes back in
a fenced block ``file:PATH`` and is written into /workspace before the verifier
judges it."""

from __future__ import annotations

import re

from agenteval.models.base import AgentContext, AgentOutcome, AgentStatus, ChatModel
from agenteval.models.chat import ErrorKind, Message, ModelCallError
from agenteval.sandbox.base import WORKSPACE, FileEntry, safe_relpath

SINGLE_SHOT_SYSTEM = """You are an expert software engineer completing a task in a Linux workspace (/workspace).
You cannot run commands. Answer with the complete content of every file you create, each in its own
fenced block whose info string is `file:` and the path relative to /workspace, like this:

~~~file:src/main.py
print("hello")
~~~

Use ~~~ fences (so ``` inside a file is safe). Files are written exactly as given; nothing else is."""

_FILE_BLOCK = re.compile(r"^(?P<fence>~{3,}|`{3,})[ \t]*file:[ \t]*(?P<path>[^\n`~]+?)[ \t]*\n(?P<body>.*?)\n(?P=fence)[ \t]*$",
                         re.MULTILINE | re.DOTALL)
MAX_SINGLE_SHOT_TOKENS = 8192


def extract_files(answer: str) -> tuple[dict[str, FileEntry], list[str]]:
    """Files named in ``file:PATH`` blocks (last one wins) and the paths refused."""
    files: dict[str, FileEntry] = {}
    refused: list[str] = []
    for m in _FILE_BLOCK.finditer(answer):
        try:
            path = safe_relpath(m["path"].strip())
        except ValueError:
            refused.append(m["path"].strip())
            continue
        files[path] = FileEntry((m["body"] + "\n").encode("utf-8"), 0o755 if path.endswith(".sh") else 0o644)
    return files, refused


def single_shot(model: ChatModel, ctx: AgentContext) -> AgentOutcome:
    messages: list[Message] = [{"role": "system", "content": SINGLE_SHOT_SYSTEM},
                               {"role": "user", "content": ctx.instruction}]
    transcript: list[dict[str, object]] = list(messages)
    try:
        resp = model.chat(messages, max_tokens=min(ctx.budget.max_total_tokens, MAX_SINGLE_SHOT_TOKENS),
                          timeout_s=ctx.budget.timeout_sec)
    except ModelCallError as e:
        status = AgentStatus.infra_error if e.kind is ErrorKind.infra else AgentStatus.model_error
        return AgentOutcome(status, str(e), model_calls=[e.call], transcript=transcript)
    files, refused = extract_files(resp.content)
    transcript.append({"role": "assistant", "content": resp.content, "reasoning": resp.reasoning,
                       "tool_calls": [{"id": f"file_{i}", "name": "write_file",
                                       "arguments": {"path": path, "content": entry.content.decode("utf-8", "replace")}}
                                      for i, (path, entry) in enumerate(files.items())]})
    if files:
        ctx.sandbox.write_files(WORKSPACE, files)
    note = f"wrote {len(files)} files" + (f"; refused paths {refused}" if refused else "")
    status = AgentStatus.limit if resp.finish_reason == "length" and not files else AgentStatus.done
    return AgentOutcome(status, note, model_calls=[resp.call], transcript=transcript)
