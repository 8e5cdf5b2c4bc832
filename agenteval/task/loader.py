"""Reading a task folder into a ``Task``, whichever its format: agenteval's own
(``native``) or Harbor's (Terminal-Bench 2, ``harbor``), recognised by its task.toml.
Downstream knows only the ``Task`` and its typed spec, never the format.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from agenteval.errors import TaskError
from agenteval.task.folder import Task
from agenteval.task.harbor import is_harbor_toml, load_harbor_task
from agenteval.task.native import load_native_task


def load_task(path: str | Path) -> Task:
    """Load and validate one task folder; raise TaskError naming file and key."""
    root = Path(path)
    if not root.is_dir():
        raise TaskError(f"{root}: no such task folder")
    toml_path = root / "task.toml"
    if not toml_path.is_file():
        raise TaskError(f"{toml_path}: missing (every task folder needs a task.toml)")
    try:
        raw = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TaskError(f"{toml_path}: not valid TOML: {e}") from None
    if is_harbor_toml(raw, root):
        return load_harbor_task(root, raw)
    return load_native_task(root, raw)


def expand_task_paths(paths: list[str]) -> list[str]:
    """Task folders as given; a folder without task.toml but with task folders inside stands for those."""
    out: list[str] = []
    for p in paths:
        root = Path(p)
        inner = sorted(str(d.parent) for d in root.glob("*/task.toml")) if root.is_dir() else []
        out.extend(inner if inner and not (root / "task.toml").exists() else [p])
    return out
