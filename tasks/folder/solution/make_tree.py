"""Build a variant's tree (the ``entries`` of its params) in the current directory.

The oracle runs this through solve.sh in /workspace. Contents are written as
bytes so newlines stay exactly as spec'd, and modes are set with chmod so the
result does not depend on the caller's umask.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def make_tree(entries: list[dict[str, Any]], root: Path) -> None:
    """Create every entry under ``root``: directories 0755, files with their content and mode."""
    for entry in entries:
        path = root / entry["path"].rstrip("/")
        if entry["type"] == "dir":
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry["content"].encode("utf-8"))
            path.chmod(int(entry.get("mode", "0644"), 8))


def main() -> int:
    params = json.loads(os.environ["AGENTEVAL_VARIANT"])
    make_tree(params["entries"], Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
