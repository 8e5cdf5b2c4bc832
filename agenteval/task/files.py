"""Which files of a task folder are the task's: one rule for hashing, copying and shipping it."""

from __future__ import annotations

from pathlib import PurePath

# Caches and desktop litter: never part of a task, whoever copies or hashes it.
IGNORED_NAMES = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".DS_Store"})


def task_file(rel: PurePath) -> bool:
    """Whether ``rel`` (a path relative to a task folder or one of its subfolders) belongs to the task."""
    return not IGNORED_NAMES.intersection(rel.parts)
