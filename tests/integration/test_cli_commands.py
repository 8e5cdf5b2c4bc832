"""`agenteval verify` and `agenteval tasks validate` against the real engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agenteval.runner import RunOptions, execute_run
from agenteval.runner.validate import VariantValidation
from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.docker
FOLDER = REPO / "tasks" / "folder"


def agenteval(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTEVAL_SANDBOXES": str(REPO / "sandboxes"), "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "agenteval", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


@pytest.fixture
def oracle_tree(tmp_path: Path) -> Path:
    """The oracle's workspace for folder/executable-script, built on the host."""
    spec = tomllib.loads((FOLDER / "task.toml").read_text())
    params = next(v["params"] for v in spec["variants"] if v["id"] == "executable-script")
    tree = tmp_path / "tree"
    tree.mkdir()
    env = {**os.environ, "AGENTEVAL_SOLUTION": str(FOLDER / "solution"), "AGENTEVAL_VARIANT": json.dumps(params),
           "AGENTEVAL_VARIANT_ID": "executable-script", "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run(["bash", str(FOLDER / "solution" / "solve.sh")], cwd=tree, env=env, check=True)
    return tree


def test_verify_passes_the_oracle_tree(oracle_tree: Path, python_image: str) -> None:
    proc = agenteval("verify", str(FOLDER), "--solution", str(oracle_tree), "--variant", "executable-script")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^pass: [1-9]\d* checks$", proc.stdout, re.M) and "FAIL" not in proc.stdout, proc.stdout


def test_verify_fails_a_mutated_tree_and_names_the_check(oracle_tree: Path, python_image: str) -> None:
    script = next(p for p in oracle_tree.rglob("*.sh"))
    script.chmod(0o644)
    proc = agenteval("verify", str(FOLDER), "--solution", str(oracle_tree), "--variant", "executable-script")
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and f"mode {script.relative_to(oracle_tree)}" in proc.stdout


def test_verify_bad_input(oracle_tree: Path, tmp_path: Path) -> None:
    several = agenteval("verify", str(FOLDER), "--solution", str(oracle_tree))
    assert several.returncode == 2 and "choose one with --variant" in several.stderr
    missing = agenteval("verify", str(FOLDER), "--solution", str(tmp_path / "nope"), "--variant", "one-file")
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_validate_ok_and_flags_a_lenient_verifier(tmp_path: Path, python_image: str) -> None:
    ok = agenteval("tasks", "validate", str(FIXTURES / "tasks" / "envcopy"), "--repeat", "2", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all 2 variants ok" in ok.stdout
    bad = agenteval("tasks", "validate", str(FIXTURES / "tasks" / "lenient"), cwd=tmp_path)
    assert bad.returncode == 1
    assert "nop passes" in bad.stdout and "accepts an untouched workspace" in bad.stderr


def test_validation_status() -> None:
    assert VariantValidation("t", "v", 3, oracle_passed=3).status == "ok"
    assert VariantValidation("t", "v", 3, oracle_passed=2).status == "flaky"
    assert VariantValidation("t", "v", 3, oracle_passed=0).status == "oracle fails"
    assert VariantValidation("t", "v", 1, oracle_passed=1, nop_passed=1, nop_total=1).status == "nop passes"


def test_environment_and_variant_folders_arrive_with_modes(workdir: Path, python_image: str) -> None:
    opts = RunOptions(task_paths=[str(FIXTURES / "tasks" / "envcopy")], models=["oracle"], db=workdir / "db.duckdb",
                      out=workdir / "reports")
    records = execute_run(opts, log=lambda m: None).records
    assert [r.variant for r in records] == ["a", "b"]
    assert all(r.passed for r in records), [r.error for r in records]


def test_every_repository_task_validates(tmp_path: Path, docker_client: Any) -> None:
    """What CI requires of every task: oracle passes, nop fails, on every variant."""
    tasks = sorted(str(p.parent) for p in (REPO / "tasks").glob("*/task.toml"))
    proc = agenteval("tasks", "validate", *tasks, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "variants ok" in proc.stdout


@pytest.mark.parametrize("stray", ["__pycache__/tree.cpython-311.pyc", ".DS_Store", ".pytest_cache/v/cache/x"])
def test_verify_judges_the_folder_as_it_is(stray: str, oracle_tree: Path, python_image: str) -> None:
    """Caches and desktop files are part of a verified folder: the folder task forbids any entry
    it did not ask for, so each stray one fails, named."""
    path = oracle_tree / stray
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00stray")
    proc = agenteval("verify", str(FOLDER), "--solution", str(oracle_tree), "--variant", "executable-script")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout and f"extra {stray.split('/')[0]}" in proc.stdout


def test_verify_refuses_a_folder_it_cannot_copy_as_it_is(oracle_tree: Path, python_image: str) -> None:
    os.mkfifo(oracle_tree / "pipe")
    proc = agenteval("verify", str(FOLDER), "--solution", str(oracle_tree), "--variant", "executable-script")
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "pipe: not a regular file, folder or symlink" in line
