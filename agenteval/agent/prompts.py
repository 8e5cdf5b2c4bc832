"""What the agent is told, per tool protocol. The tools are described in words
under both protocols (from ``tools.TOOLS``), so a model whose server drops the
tool schemas still knows them."""

from __future__ import annotations

from agenteval.agent.tools import TOOLS
from agenteval.models.chat import as_object, as_text
from agenteval.records import ToolProtocol

_ROLE = """You are an expert software engineer working in a Linux sandbox. Your working directory
is /workspace; there is no network."""

_TEXT_RULES = """You act by writing fenced blocks in your answer; nothing else you write is run.

To run shell commands, write a ```bash block (```sh and ```shell work too):
```bash
ls -la
```
To write a file, write a block whose info string is file: and the path relative to /workspace, with ~~~ fences:
~~~file:src/main.py
print("hello")
~~~
Other blocks (```python, blocks without a language) are not run: to run Python, write it to a file
and run it from a bash block. You get each block's result back. Check your work by running it.
When the task is complete, write DONE on a line of its own."""

_TEXT_FALLBACK = """If you cannot make tool calls, act with fenced blocks instead: a ```bash block runs its
commands, a ~~~file:PATH block writes the file, and a line DONE ends the task."""


def tool_list() -> str:
    """One line per tool: its name, parameters and description."""
    lines = []
    for tool in TOOLS:
        fn = as_object(tool.get("function"))
        params = ", ".join(as_object(as_object(fn.get("parameters")).get("properties")))
        lines.append(f"- {as_text(fn.get('name'))}({params}): {as_text(fn.get('description'))}")
    return "\n".join(lines)


def system_prompt(protocol: ToolProtocol, *, may_switch: bool = False) -> str:
    """The system prompt of a protocol; ``may_switch``: native, and text blocks would be run too."""
    if protocol is ToolProtocol.text:
        return f"{_ROLE}\n{_TEXT_RULES}"
    native = (f"{_ROLE} Do the task with these tools:\n{tool_list()}\n"
              "Call them as tool calls. Check your work by running it. When the task is complete, call done.")
    return f"{native}\n{_TEXT_FALLBACK}" if may_switch else native


NATIVE_SYSTEM = system_prompt(ToolProtocol.native)
TEXT_SYSTEM = system_prompt(ToolProtocol.text)


def reminder(protocol: ToolProtocol, *, may_switch: bool = False, ignored_note: str = "") -> str:
    """The one reminder a model gets when an answer did nothing."""
    if protocol is ToolProtocol.text:
        text = ("Nothing ran: your answer has no ```bash block and no ~~~file:PATH block. Act now with such a "
                "block, or write DONE on a line of its own if the task is complete.")
    else:
        text = ("Nothing ran: your answer called no tool. Call bash, write_file or read_file to work on the task, "
                "or call done if it is complete." + (" (A ```bash block works too.)" if may_switch else ""))
    return f"{text}\n{ignored_note}" if ignored_note else text
