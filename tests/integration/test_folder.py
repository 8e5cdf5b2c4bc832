"""tasks/folder against the real engine and image: hand-made correct trees of
different shape pass, broken ones fail with the check that names the damage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, Callable

import pytest

from agenteval.runner.solution import verify_solution
from tests.conftest import REPO

pytestmark = pytest.mark.docker
TASK = REPO / "tasks" / "folder"
VARIANT = "python-project"
PARAMS = next(v["params"] for v in tomllib.loads((TASK / "task.toml").read_text())["variants"] if v["id"] == VARIANT)


def oracle_tree(dest: Path) -> Path:
    dest.mkdir()
    env = {**os.environ, "AGENTEVAL_SOLUTION": str(TASK / "solution"), "AGENTEVAL_VARIANT": json.dumps(PARAMS),
           "AGENTEVAL_VARIANT_ID": VARIANT, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(["bash", str(TASK / "solution" / "solve.sh")], cwd=dest, env=env, check=True)
    return dest


def shell_built(dest: Path) -> Path:
    """Another shape: built by a shell script with printf/install, files written in reverse order."""
    dest.mkdir()
    lines = ["set -e"]
    for e in PARAMS["entries"]:
        if e["type"] == "dir":
            lines.append(f"mkdir -p {_q(e['path'])}")
    for e in reversed([e for e in PARAMS["entries"] if e["type"] == "file"]):
        lines.append(f"printf '%s' {_q(e['content'])} > {_q(e['path'])} && chmod {e['mode']} {_q(e['path'])}")
    subprocess.run(["bash", "-c", "\n".join(lines)], cwd=dest, check=True)
    return dest


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def group_writable_dirs(dest: Path) -> Path:
    """Another shape: directories 0775 (a umask 002 user), files still exact."""
    tree = oracle_tree(dest)
    for d in [tree, *[p for p in tree.rglob("*") if p.is_dir()]]:
        d.chmod(0o775)
    return tree


def old_timestamps(dest: Path) -> Path:
    """Another shape: every entry with a 1990s mtime, as from an archive."""
    tree = oracle_tree(dest)
    for p in tree.rglob("*"):
        os.utime(p, (650000000, 650000000), follow_symlinks=False)
    return tree


@pytest.mark.parametrize("build", [oracle_tree, shell_built, group_writable_dirs, old_timestamps],
                         ids=["oracle", "shell-built", "group-writable-dirs", "old-timestamps"])
def test_correct_trees_pass(tmp_path: Path, python_image: str, build: Callable[[Path], Path]) -> None:
    outcome = verify_solution(TASK, build(tmp_path / "ws"), VARIANT, log=lambda m: None)
    assert outcome.verdict is not None, outcome.error
    assert outcome.verdict.passed, [c for c in outcome.verdict.checks if not c.passed]


def _script(tree: Path) -> Path:
    return tree / next(e["path"] for e in PARAMS["entries"] if e.get("mode") == "0755")


def _readme(tree: Path) -> Path:
    return tree / "README.md"


BROKEN: list[tuple[str, Callable[[Path], Any], str]] = [
    ("missing file", lambda t: _readme(t).unlink(), "file README.md"),
    ("extra file", lambda t: (t / "notes.txt").write_text("x\n"), "extra notes.txt"),
    ("changed byte", lambda t: _readme(t).write_bytes(_readme(t).read_bytes().replace(b"e", b"E", 1)),
     "content README.md"),
    ("no final newline", lambda t: _readme(t).write_bytes(_readme(t).read_bytes().rstrip(b"\n")), "content README.md"),
    ("script not executable", lambda t: _script(t).chmod(0o644), "mode scripts/run.sh"),
    ("symlink instead of file", lambda t: (_readme(t).unlink(), _readme(t).symlink_to("pyproject.toml")),
     "file README.md"),
    ("directory instead of file", lambda t: (_readme(t).unlink(), _readme(t).mkdir()), "file README.md"),
]


@pytest.mark.parametrize("name,damage,check", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_trees_fail_with_the_named_check(tmp_path: Path, python_image: str, name: str,
                                                damage: Callable[[Path], Any], check: str) -> None:
    tree = oracle_tree(tmp_path / "ws")
    damage(tree)
    outcome = verify_solution(TASK, tree, VARIANT, log=lambda m: None)
    assert outcome.verdict is not None and not outcome.verdict.passed
    failed = {c.name: c.message for c in outcome.verdict.checks if not c.passed}
    assert check in failed, failed
    assert "tree matches the spec" in failed


def test_script_path_is_what_the_spec_says() -> None:
    assert any(e["path"] == "scripts/run.sh" and e["mode"] == "0755" for e in PARAMS["entries"])
    assert shutil.which("bash")
