"""Whole runs against the real engine: verdicts, hostile solutions, cleanup, interrupts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agenteval.records import FailureMode, TrialRecord
from agenteval.runner import RunOptions, execute_run
from agenteval.store import Store
from agenteval.task import load_task
from tests.conftest import FIXTURES, REPO, leftovers

pytestmark = pytest.mark.docker


def run(workdir: Path, tasks: list[str], models: list[str], **kw: Any) -> list[TrialRecord]:
    opts = RunOptions(task_paths=tasks, models=models, db=workdir / "db.duckdb", out=workdir / "reports", **kw)
    result = execute_run(opts, log=lambda m: None)
    assert result.run.status == "completed"
    assert result.report is not None and result.report.is_file()
    return result.records


def test_oracle_passes_and_nop_fails_every_folder_variant(workdir: Path, docker_client: Any, python_image: str) -> None:
    folder = str(REPO / "tasks" / "folder")
    variants = [v.id for v in load_task(folder).variants()]
    assert len(variants) >= 3
    records = run(workdir, [folder], ["oracle", "nop"], concurrency=2)
    by_model = {m: {r.variant: r for r in records if r.model == m} for m in ("oracle", "nop")}
    assert sorted(by_model["oracle"]) == sorted(variants) == sorted(by_model["nop"])
    for r in by_model["oracle"].values():
        assert r.passed and r.failure_mode is None and r.verdict and r.verdict.score == 1.0, r.error
    for r in by_model["nop"].values():
        assert not r.passed and r.failure_mode is FailureMode.verify_failed
        assert r.verdict and any("missing" in c.message.lower() for c in r.verdict.checks if not c.passed)
    assert leftovers(docker_client) == ([], [])


def test_hostile_solutions_fail_and_the_run_goes_on(workdir: Path, docker_client: Any, python_image: str) -> None:
    records = {r.variant: r for r in run(workdir, [str(FIXTURES / "tasks" / "hostile")], ["oracle"], concurrency=2)}
    assert records["good"].passed
    for variant in ("memory", "forkbomb", "sleep", "flood", "diskfill", "network"):
        r = records[variant]
        assert not r.passed and r.failure_mode is not None, variant
        assert r.verdict is not None, f"{variant}: the verifier must still run ({r.error})"
    solve = {v: next(e for e in records[v].execs if e.phase == "agent") for v in records}
    assert solve["memory"].oom_killed and solve["memory"].exit_code == 137
    assert solve["sleep"].timed_out and records["sleep"].failure_mode is FailureMode.agent_limit
    assert solve["sleep"].duration_s < 3 + 8
    assert solve["flood"].truncated and solve["flood"].stdout_bytes == 100_000_000
    assert len(solve["flood"].stdout) == 64 * 1024
    assert "No space left on device" in solve["diskfill"].stderr
    assert solve["network"].exit_code != 0
    assert "fork" in solve["forkbomb"].stderr.lower() or solve["forkbomb"].exit_code != 0
    assert leftovers(docker_client) == ([], [])


def test_solution_cannot_forge_a_verdict(workdir: Path, python_image: str) -> None:
    [r] = run(workdir, [str(FIXTURES / "tasks" / "fooler")], ["oracle"])
    assert not r.passed and r.failure_mode is FailureMode.verify_failed
    assert r.verdict is not None and [c.name for c in r.verdict.checks] == ["answer.txt says correct"]
    verify_exec = next(e for e in r.execs if e.phase == "verify")
    assert "forged" not in verify_exec.stdout  # the cheat found no verdict path to write
    assert "PASSED" in next(e for e in r.execs if e.phase == "agent").stdout


def _start_cli(workdir: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENTEVAL_SANDBOXES": str(REPO / "sandboxes"), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "agenteval", "run", *args, "--db", str(workdir / "db.duckdb"),
                             "--out", str(workdir / "reports")], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_containers(client: Any, proc: subprocess.Popen[str], n: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(leftovers(client)[0]) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    pytest.fail("no sandbox appeared")


def _wait_for_sandboxes(client: Any, proc: subprocess.Popen[str], n: int, timeout: float = 90) -> None:
    """Wait until the runner has started its n-th sandbox; with -j 2 and n = 4, the first two trials
    have finished (their slots were reused) and, a moment later, are committed."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < n:
        assert proc.poll() is None, proc.communicate()
        seen.update(leftovers(client)[0])
        time.sleep(0.05)
    assert len(seen) >= n, f"only {len(seen)} sandboxes started"
    time.sleep(1.5)  # the driver commits finished trials within its 0.5 s poll


def test_ctrl_c_removes_sandboxes_keeps_records_and_resumes(workdir: Path, docker_client: Any, python_image: str) -> None:
    slow = str(FIXTURES / "tasks" / "slow")
    proc = _start_cli(workdir, slow, "--model", "oracle", "-j", "2")
    _wait_for_sandboxes(docker_client, proc, 4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with: agenteval run --resume" in err
    assert leftovers(docker_client) == ([], [])
    with Store(workdir / "db.duckdb") as store:
        run_id = store.latest_run_id()
        assert store.run(run_id).status == "interrupted"
        done = store.trials(run_id)
    assert 2 <= len(done) < 6 and all(r.passed for r in done)

    records = run(workdir, [], [], resume=run_id, concurrency=3)
    assert len(records) == 6 and all(r.passed for r in records)
    assert len({r.key for r in records}) == 6
    assert {r.trial_id for r in done} <= {r.trial_id for r in records}  # nothing ran twice


def test_kill_9_then_prune_leaves_nothing(workdir: Path, docker_client: Any, python_image: str) -> None:
    proc = _start_cli(workdir, str(FIXTURES / "tasks" / "slow"), "--model", "oracle", "-j", "2")
    _wait_for_containers(docker_client, proc, 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    containers, volumes = leftovers(docker_client)
    assert containers and volumes  # a killed runner cannot clean up...
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pruned = subprocess.run([sys.executable, "-m", "agenteval", "sandbox", "prune"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed {len(containers)} containers" in pruned.stdout
    assert leftovers(docker_client) == ([], [])  # ...and prune removes what it left
    with Store(workdir / "db.duckdb") as store:  # the store survives a kill -9
        assert store.run(store.latest_run_id()).status == "running"


def test_prune_spares_sandboxes_of_live_runs(docker_client: Any, python_image: str) -> None:
    from agenteval.sandbox.base import SandboxLimits
    from agenteval.sandbox.docker import DockerSandbox, prune

    box = DockerSandbox(docker_client, python_image, SandboxLimits())
    box.start()
    try:
        assert prune(docker_client) == (0, 0)  # its owner (this process) is alive
        assert leftovers(docker_client)[0]
    finally:
        box.close()
