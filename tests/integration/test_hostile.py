"""The hostile corpus against the real engine: solution code that fights its verifier.

Every workspace under tests/fixtures/hostile/ attacks the verifier of
tests/fixtures/tasks/guarded (which runs the solution's main.py and judges what
it printed) instead of doing the work. Each goes through ``agenteval verify``
and must fail on the named check (or on the interference check, where the
attack may cost the verifier its life), within the verifier's budget plus 10 s,
leaving no container, volume or sandbox process behind. The messages show what
the attack itself saw, so a test also proves that the attack found nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agenteval.verify import INTERFERENCE_CHECK
from tests.conftest import FIXTURES, REPO, leftovers

pytestmark = pytest.mark.docker

TASK = FIXTURES / "tasks" / "guarded"
CORPUS = FIXTURES / "hostile"
VERIFIER_BUDGET_S = 40.0
RAN, ANSWER = "main.py ran", "prints the answer"

# case -> (checks one of which must fail, text the failing messages must hold: what the attack saw)
CASES: dict[str, tuple[set[str], str]] = {
    "chmod_verdict_folder": ({ANSWER}, "no chmod /agenteval/out Operation not permitted"),
    "ptrace_chain": ({ANSWER}, "nothing reachable"),
    "kill_verifier": ({ANSWER}, "still here"),
    "stop_parents": ({ANSWER}, "stopped?"),
    "swap_out": ({ANSWER}, "cannot move /agenteval/out Permission denied"),
    "sys_path_write": ({ANSWER}, "cannot plant /agenteval/tests/judge.py Permission denied"),
    "fork_bomb": ({RAN, INTERFERENCE_CHECK}, ""),
    "memory_bomb": ({RAN, INTERFERENCE_CHECK}, ""),
    "disk_fill": ({ANSWER}, "/agenteval/out 0 MiB"),
    "output_flood": ({RAN}, "still running after 8 s"),
    "sigterm_hang": ({RAN}, "still running after 8 s"),
    "double_fork_daemon": ({ANSWER}, "printed b'41\\n'"),
    "network_probe": ({ANSWER}, "isolated []"),
    "symlink_secret": ({RAN}, "exit status 2"),
}


def _verify(solution: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "COLUMNS": "2000", "AGENTEVAL_SANDBOXES": str(REPO / "sandboxes")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "agenteval", "verify", str(TASK), "--solution", str(solution)],
                          capture_output=True, text=True, env=env, timeout=VERIFIER_BUDGET_S + 60)
    return proc, time.monotonic() - t0


def _sandbox_processes() -> list[str]:
    """Processes still alive in any Docker container (their cgroup names it), as the host sees them."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "docker" in cgroup and "dockerd" not in cmd and "containerd" not in cmd:
            left.append(f"{pid}: {cmd[:120]}")
    return left


def _failed_rows(output: str) -> dict[str, str]:
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) == 3 and cells[0] == "FAIL":
            rows[cells[1]] = cells[2]
    return rows


def test_the_honest_solution_passes(docker_client: Any, python_image: str) -> None:
    proc, _ = _verify(TASK / "solution" / "workspace")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pass: 2 checks" in proc.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_solution_fails_on_its_check(case: str, docker_client: Any, python_image: str) -> None:
    must_fail, evidence = CASES[case]
    proc, took = _verify(CORPUS / case)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "verify_error" not in out, out
    failed = _failed_rows(proc.stdout)
    assert failed and set(failed) & must_fail, out
    assert "forged" not in out, out
    if evidence:
        assert any(evidence in msg for msg in failed.values()), out
    assert took <= VERIFIER_BUDGET_S + 10, f"{case} took {took:.1f} s"
    assert leftovers(docker_client) == ([], [])
    assert _sandbox_processes() == []


DISTURBED = FIXTURES / "tasks" / "disturbed"


@pytest.mark.parametrize("variant, interfered", [
    ("killed-after-start", True), ("timeout-after-start", True), ("verdict-folder-opened-after-start", True),
    ("stray-file-after-start", True), ("killed-before-start", False), ("stray-file-before-start", False),
    ("undisturbed", None)])
def test_a_disturbed_verifier_fails_the_solution_only_after_it_ran_solution_code(
        variant: str, interfered: bool | None, docker_client: Any, python_image: str) -> None:
    from agenteval.runner.solution import verify_solution

    outcome = verify_solution(DISTURBED, DISTURBED / "solution" / "workspace", variant, log=lambda m: None)
    if interfered is None:
        assert outcome.verdict is not None and outcome.verdict.passed, outcome
    elif interfered:
        assert outcome.verdict is not None and not outcome.verdict.passed and outcome.error is None
        [check] = outcome.verdict.checks
        assert check.name == INTERFERENCE_CHECK and "after the verifier started the solution's code" in check.message
    else:
        assert outcome.verdict is None and outcome.error, outcome
    assert leftovers(docker_client) == ([], [])


def test_interference_is_recorded_as_verify_failed_and_an_early_death_as_verify_error(
        docker_client: Any, workdir: Path) -> None:
    from agenteval.records import FailureMode
    from agenteval.runner import RunOptions, execute_run

    result = execute_run(RunOptions(task_paths=[str(DISTURBED)], models=["oracle"],
                                    variants=["killed-after-start", "killed-before-start"]), None, lambda m: None)
    modes = {r.variant: r.failure_mode for r in result.records}
    assert modes == {"killed-after-start": FailureMode.verify_failed, "killed-before-start": FailureMode.verify_error}
