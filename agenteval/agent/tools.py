"""The tools an agent gets, run in the trial's sandbox as the agent user.

Declared once as OpenAI-style function schemas (native tool calling; the
system prompts describe them in words from here too); executed by ``run_tool``,
which treats every argument as hostile: paths are checked by ``safe_relpath``,
commands run only inside the sandbox, as the agent user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from agenteval.errors import SandboxFileError
from agenteval.models.chat import ToolSchema, as_object, as_text
from agenteval.sandbox.base import WORKSPACE, FileEntry, Sandbox, safe_relpath

MAX_TOOL_OUTPUT = 8000  # characters of a tool result the model sees
MAX_READ_BYTES = 256 * 1024


def _fn(name: str, description: str, **properties: str) -> ToolSchema:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {k: {"type": "string", "description": v}
                                                        for k, v in properties.items()},
                       "required": list(properties)}}}


TOOLS: list[ToolSchema] = [
    _fn("bash", "Run a shell command in /workspace (no network). Returns exit code and output.",
        command="The command line, run with sh -c."),
    _fn("write_file", "Write a file (parents are created), replacing it if it exists.",
        path="Path relative to /workspace.", content="The complete content of the file."),
    _fn("read_file", "Read a text file.", path="Path relative to /workspace."),
    _fn("done", "Call when the task is complete. Nothing after it runs.", summary="What you did, in a sentence."),
]
TOOL_NAMES = tuple(as_text(as_object(t["function"]).get("name")) for t in TOOLS)


@dataclass
class ToolResult:
    content: str
    done: bool = False
    acted: bool = False  # a command ran or a file was written (``AgentOutcome.actions_run``)


def truncate(text: str, limit: int = MAX_TOOL_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... output truncated: {len(text) - limit} more characters not shown]"


def run_tool(sandbox: Sandbox, name: str, arguments: str | dict[str, object], timeout_s: float) -> ToolResult:
    """Execute one call; bad arguments come back to the model as an error message, never raise."""
    try:
        args = json.loads(arguments or "{}") if isinstance(arguments, str) else dict(arguments)
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
    except ValueError as e:
        return ToolResult(f"error: the arguments of {name} are not valid JSON ({e})")
    try:
        if name == "bash":
            r = sandbox.exec(str(args.get("command", "")), timeout_s=max(1.0, timeout_s))
            status = "timed out" if r.timed_out else f"exit code {r.exit_code}"
            out = r.stdout + (("\n[stderr]\n" + r.stderr) if r.stderr else "")
            if r.truncated:
                out += f"\n[output capped by the sandbox: {r.stdout_bytes + r.stderr_bytes} bytes in all]"
            return ToolResult(truncate(f"{status}\n{out}"), acted=True)
        if name == "write_file":
            path = safe_relpath(str(args.get("path", "")))
            content = str(args.get("content", ""))
            sandbox.write_files(WORKSPACE, {path: FileEntry(content.encode("utf-8"))})
            return ToolResult(f"wrote {len(content.encode('utf-8'))} bytes to {path}", acted=True)
        if name == "read_file":
            path = safe_relpath(str(args.get("path", "")))
            data = sandbox.read_file(f"{WORKSPACE}/{path}", max_bytes=MAX_READ_BYTES)
            if data is None:
                return ToolResult(f"error: {path} does not exist")
            return ToolResult(truncate(data.decode("utf-8", errors="replace")))
        if name == "done":
            return ToolResult("done", done=True)
    except ValueError as e:
        return ToolResult(f"error: {e}")
    except SandboxFileError as e:  # the sandbox works; the model asked for what cannot be done
        return ToolResult(f"error: {e}")
    return ToolResult(f"error: no tool named {name!r} (tools: {', '.join(sorted(TOOL_NAMES))})")
