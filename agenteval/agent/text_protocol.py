"""The text protocol: actions a model writes as fenced blocks in its answer.

The rule, for every block in the answer's text (never its reasoning), in the
order written:

- ```` ```bash ````, ```` ```sh ````, ```` ```shell ```` (also with ``~~~``): its
  body runs as one shell command in /workspace.
- ``~~~file:PATH`` (or ```` ```file:PATH ````): its body is written to PATH,
  which must stay inside /workspace (checked by ``safe_relpath`` when run).
- any other block (```` ```python ````, an untagged block, ```` ```json ````...)
  is shown text, not an action: it never runs, and the model is told so
  (``ignored`` lists them). Guessing what an untagged block means would run
  file contents, program output or prose as commands; a model that wants
  Python run writes it to a file and runs it from a bash block.
- a line ``DONE`` outside any block ends the trial after the answer's blocks ran.

A block must be closed: an answer cut in the middle of a block (token cap)
leaves that block out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agenteval.agent.state import PendingCall

SHELL_TAGS = frozenset({"bash", "sh", "shell"})
_FENCE = re.compile(r"^[ ]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*?)[ \t]*\n(?P<body>.*?)^[ ]{0,3}(?P=fence)[ \t]*$",
                    re.MULTILINE | re.DOTALL)
_DONE = re.compile(r"^[ \t]*DONE[ \t]*$", re.MULTILINE)
_FILE = re.compile(r"^file:[ \t]*(?P<path>.+)$")


@dataclass(frozen=True)
class Block:
    """One closed fenced block: its info string (``bash``, ``file:src/a.py``, ``''``) and body."""

    info: str
    body: str  # ends with a newline unless empty

    @property
    def tag(self) -> str:
        """The block's language word, lower-cased (``''`` for an untagged block)."""
        return self.info.split(None, 1)[0].lower() if self.info else ""

    @property
    def file_path(self) -> str | None:
        m = _FILE.match(self.info)
        return m["path"].strip() if m else None


def fenced_blocks(text: str) -> list[Block]:
    """Every closed fenced block, outermost only (a ``` inside a ~~~ block belongs to it)."""
    return [Block(m["info"], m["body"]) for m in _FENCE.finditer(text)]


def outside_blocks(text: str) -> str:
    """The text with every closed block removed."""
    return _FENCE.sub("", text)


@dataclass
class TextActions:
    """What one answer asks for under the text protocol."""

    calls: list[PendingCall] = field(default_factory=list)  # bash and write_file, in the order written
    done: bool = False  # a DONE line outside the blocks
    ignored: list[str] = field(default_factory=list)  # the tag of each block that is no action ('' untagged)

    @property
    def acts(self) -> bool:
        """Whether the answer runs or writes anything (DONE alone does not)."""
        return bool(self.calls)


def parse_text_actions(answer: str) -> TextActions:
    out = TextActions(done=bool(_DONE.search(outside_blocks(answer))))
    for block in fenced_blocks(answer):
        path = block.file_path
        if path is not None:
            args: dict[str, object] = {"path": path, "content": block.body}
            out.calls.append(PendingCall(id=f"text_{len(out.calls)}", name="write_file", arguments=args))
        elif block.tag in SHELL_TAGS:
            out.calls.append(PendingCall(id=f"text_{len(out.calls)}", name="bash", arguments={"command": block.body}))
        else:
            out.ignored.append(block.tag)
    return out


def pending_calls(actions: TextActions) -> list[PendingCall]:
    """The calls to run, ``done`` last."""
    return actions.calls + ([PendingCall(id=f"text_{len(actions.calls)}", name="done", arguments={})]
                            if actions.done else [])


def ignored_note(ignored: list[str]) -> str:
    """What the model is told about blocks that did not run ('' when none)."""
    if not ignored:
        return ""
    kinds = sorted({f"```{tag}" if tag else "untagged" for tag in ignored})
    return (f"Not run: {len(ignored)} block(s) ({', '.join(kinds)}). Only ```bash, ```sh and ```shell blocks run "
            "and ~~~file:PATH blocks write files; to run Python, write it to a file and run it from a bash block.")
