"""Bad input at the command line: one clear line on stderr and exit code 2.
These stop before any container starts, so they need no Docker engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def agenteval(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agenteval", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80", **(env or {})}, cwd=cwd or REPO, timeout=60)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def write_task(root: Path, toml: str, instruction: bool = True) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "solution").mkdir()
    (root / "solution" / "solve.sh").write_text("true\n")
    (root / "task.toml").write_text(toml)
    if instruction:
        (root / "instruction.md").write_text("Do it.\n")
    return root


def test_typo_key(tmp_path: Path) -> None:
    task = write_task(tmp_path / "t", "[verifier]\ncomand = 'x'\n")
    proc = agenteval("run", str(task), "--model", "oracle", "--db", str(tmp_path / "db"))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "task.toml" in line and "verifier.comand" in line and "did you mean 'command'" in line


def test_missing_instruction(tmp_path: Path) -> None:
    task = write_task(tmp_path / "t", "", instruction=False)
    proc = agenteval("run", str(task), "--model", "oracle", "--db", str(tmp_path / "db"))
    assert proc.returncode == 2 and "instruction.md: missing" in one_error_line(proc)


def test_unknown_task_path(tmp_path: Path) -> None:
    proc = agenteval("run", str(tmp_path / "nope"), "--model", "oracle", "--db", str(tmp_path / "db"))
    assert proc.returncode == 2 and "no such task folder" in one_error_line(proc)


@pytest.mark.parametrize("model,expected", [("gpt5:big", "unknown model provider 'gpt5'"), ("Bad Name", "bad model")])
def test_unknown_model(tmp_path: Path, model: str, expected: str) -> None:
    proc = agenteval("run", "tasks/folder", "--model", model, "--db", str(tmp_path / "db"))
    assert proc.returncode == 2 and expected in one_error_line(proc)


def test_no_model(tmp_path: Path) -> None:
    proc = agenteval("run", "tasks/folder", "--db", str(tmp_path / "db"))
    assert proc.returncode == 2 and "no model given" in one_error_line(proc)


def test_no_engine(tmp_path: Path) -> None:
    proc = agenteval("run", "tasks/folder", "--model", "oracle", "--db", str(tmp_path / "db"),
                     env={"DOCKER_HOST": f"unix://{tmp_path}/no-such-engine.sock"})
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "no Docker engine answers" in line and "setup-engine.sh" in line


def test_prune_without_engine(tmp_path: Path) -> None:
    proc = agenteval("sandbox", "prune", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert proc.returncode == 2 and "no Docker engine answers" in one_error_line(proc)


def test_help_does_not_import_the_model_stack() -> None:
    code = ("import sys; from typer.testing import CliRunner; from agenteval.cli import app; "
            "r = CliRunner().invoke(app, ['run', '--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('torch', 'transformers', 'langgraph', 'docker', 'duckdb') if m in sys.modules]; "
            "print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_help_lists_commands() -> None:
    proc = agenteval("--help")
    assert proc.returncode == 0
    for cmd in ("run", "report", "runs", "sandbox", "tasks"):
        assert cmd in proc.stdout


def test_runs_without_db(tmp_path: Path) -> None:
    proc = agenteval("runs", "--db", str(tmp_path / "none.duckdb"))
    assert proc.returncode == 1 and "no such database" in one_error_line(proc)


def test_error_text_with_brackets_is_printed_whole(tmp_path: Path) -> None:
    proc = agenteval("run", "tasks/folder", "--model", "Bad Name", "--db", str(tmp_path / "db"))
    assert proc.returncode == 2 and "provider:name[@base_url]" in one_error_line(proc)
