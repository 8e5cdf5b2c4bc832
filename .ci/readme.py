"""The README's command blocks, as CI runs them: README and CI cannot drift.

Every fenced block of commands in README.md (untagged or ``bash``, starting with a command)
carries a marker on the line before its fence:

    <!-- ci: run NAME -->              CI runs it (.ci/run: tests, main-job, after-main-job)
    <!-- ci: not run: REASON -->       CI cannot run it here, and says why

    python3 .ci/readme.py check        every command block is marked (exit 1 naming the first that is not)
    python3 .ci/readme.py get NAME     the block marked ``run NAME``, as written
    python3 .ci/readme.py not-run      the blocks CI does not run, with the reason of each
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"```(?P<lang>[a-z]*)")
SHELL = ("", "bash", "sh", "shell")
MARKER = re.compile(r"<!-- ci: (run (?P<name>[a-z0-9-]+)|not run: (?P<reason>.+?)) -->")
COMMANDS = ("agenteval ", "bash ", "python3 ", "pip ", "git ", "docker ", "ray ")


def blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, marker text or '', body) of every command block."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        fence = FENCE.fullmatch(lines[i])
        if fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == "```"), None)
            if end is None:
                raise SystemExit(f"README.md:{i + 1}: a fenced block that never ends")
            body = "\n".join(lines[i + 1:end])
            if fence["lang"] in SHELL and body.lstrip().startswith(COMMANDS):
                marker = lines[i - 1].strip() if i and MARKER.fullmatch(lines[i - 1].strip()) else ""
                out.append((i + 1, marker, body))
            i = end + 1
        else:
            i += 1
    return out


def main(argv: list[str]) -> int:
    found = blocks(README.read_text(encoding="utf-8"))
    if not found:
        print("readme: no command block in README.md", file=sys.stderr)
        return 1
    if argv[:1] == ["check"]:
        for line, marker, body in found:
            if not marker:
                print(f"README.md:{line}: a command block with no '<!-- ci: run NAME -->' or "
                      f"'<!-- ci: not run: REASON -->' marker: {body.splitlines()[0][:80]}", file=sys.stderr)
                return 1
        return 0
    if argv[:1] == ["get"] and len(argv) == 2:
        named = [body for _, marker, body in found if (m := MARKER.fullmatch(marker)) and m["name"] == argv[1]]
        if len(named) != 1:
            print(f"readme: {len(named)} blocks marked 'run {argv[1]}' (want one)", file=sys.stderr)
            return 1
        print(named[0])
        return 0
    if argv[:1] == ["not-run"]:
        for line, marker, body in found:
            m = MARKER.fullmatch(marker)
            if m and m["reason"]:
                print(f"README.md:{line}: not run in CI ({m['reason']}): {body.splitlines()[0][:100]}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
