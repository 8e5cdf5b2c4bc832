"""Whole runs against the real engine: verdicts, hostile solutions, cleanup, interrupts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agenteval.console import report_run
from agenteval.records import FailureMode, RunStatus, TrialRecord
from agenteval.runner import RunOptions, execute_run
from agenteval.sandbox.cleanup import LABEL
from agenteval.store import Store
from agenteval.task import load_task
from tests.conftest import FIXTURES, REPO, leftovers

pytestmark = pytest.mark.docker


def run(workdir: Path, tasks: list[str], models: list[str], **kw: Any) -> list[TrialRecord]:
    opts = RunOptions(task_paths=tasks, models=models, db=workdir / "db.duckdb", out=workdir / "reports", **kw)
    result = execute_run(opts, log=lambda m: None)
    assert result.run.status == "completed"
    assert report_run(result).is_file()
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
    # no network: python's connect fails at once and its traceback exits 1
    assert solve["network"].exit_code == 1 and "Network is unreachable" in solve["network"].stderr
    assert "BlockingIOError: [Errno 11] Resource temporarily unavailable" in solve["forkbomb"].stderr  # pids cap
    assert leftovers(docker_client) == ([], [])


def test_solution_cannot_forge_a_verdict(workdir: Path, python_image: str) -> None:
    [r] = run(workdir, [str(FIXTURES / "tasks" / "fooler")], ["oracle"])
    assert not r.passed and r.failure_mode is FailureMode.verify_failed
    assert r.verdict is not None and [c.name for c in r.verdict.checks] == ["answer.txt says correct"]
    verify_exec = next(e for e in r.execs if e.phase == "verify")
    assert "forged" not in verify_exec.stdout  # the cheat found no verdict path to write
    assert "PASSED" in next(e for e in r.execs if e.phase == "agent").stdout


class CliRun:
    """``agenteval run`` in a child process whose stderr is read as it comes, so a test waits on what
    the run says (one line per recorded trial where no terminal shows a progress bar)."""

    def __init__(self, workdir: Path, *args: str) -> None:
        env = {**os.environ, "AGENTEVAL_SANDBOXES": str(REPO / "sandboxes"), "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "agenteval", "run", *args, "--db",
                                      str(workdir / "db.duckdb"), "--out", str(workdir / "reports")],
                                     cwd=workdir, env=env, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def recorded(self) -> int:
        return sum(line.startswith("trial ") and " recorded: " in line for line in self.lines)

    def wait_recorded(self, n: int, timeout: float = 120) -> None:
        """Until the run has said it recorded ``n`` trials (it says so after each commit)."""
        with self._changed:
            ok = self._changed.wait_for(lambda: self.recorded() >= n or self.proc.poll() is not None, timeout)
        assert ok and self.recorded() >= n, f"{self.recorded()} trials recorded: {''.join(self.lines)[-3000:]}"

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig) if sig == signal.SIGKILL else self.proc.send_signal(sig)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out = self.proc.stdout.read() if self.proc.stdout else ""
        self.proc.wait(timeout)
        self._reader.join(10)
        return self.proc.returncode, out, "".join(self.lines)


def held_task(workdir: Path) -> Path:
    """A copy of the ``held`` fixture whose trials wait in solve.sh until released."""
    task = workdir / "held"
    shutil.copytree(FIXTURES / "tasks" / "held", task)
    (task / "environment").mkdir()
    (task / "environment" / "hold").write_text("")
    return task


def run_containers(client: Any, proc: subprocess.Popen[str], n: int, gone: list[str] = [],
                   timeout: float = 120) -> list[str]:
    """Wait until exactly ``n`` sandboxes exist, every one running, and none of ``gone`` is left;
    their ids. (The low-level listing: a container removed while listed is not an error.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended early"
        boxes = client.api.containers(all=True, filters={"label": LABEL})
        ids = [b["Id"] for b in boxes]
        if len(boxes) == n and all(b["State"] == "running" for b in boxes) and not set(gone) & set(ids):
            return ids
        time.sleep(0.05)
    pytest.fail(f"{n} running sandboxes never appeared")


def release(client: Any, boxes: list[str]) -> None:
    """Let the held trials in these sandboxes finish (the solve.sh loop ends on /tmp/release)."""
    for box in boxes:
        exec_id = client.api.exec_create(box, ["touch", "/tmp/release"], user="1000")["Id"]
        client.api.exec_start(exec_id)
        assert client.api.exec_inspect(exec_id)["ExitCode"] == 0


def interrupted_after_two(workdir: Path, client: Any, sig: int) -> tuple[CliRun, Path]:
    """A run of 6 held trials at -j 2: the first two released and recorded, the next two held in their
    sandboxes, then ``sig``. Nothing here depends on how fast the machine is."""
    task = held_task(workdir)
    run = CliRun(workdir, str(task), "--model", "oracle", "-j", "2")
    first = run_containers(client, run.proc, 2)
    release(client, first)
    run.wait_recorded(2)
    run_containers(client, run.proc, 2, gone=first)
    run.signal(sig)
    return run, task


def test_ctrl_c_removes_sandboxes_keeps_records_and_resumes(workdir: Path, docker_client: Any, python_image: str) -> None:
    run_, task = interrupted_after_two(workdir, docker_client, signal.SIGINT)
    code, _, err = run_.finish()
    assert code == 130, err
    assert "resume with: agenteval run --resume" in err
    assert leftovers(docker_client) == ([], [])
    with Store(workdir / "db.duckdb") as store:
        run_id = store.latest_run_id()
        assert store.run(run_id).status == "interrupted"
        done = store.trials(run_id)
    assert len(done) == 2 and all(r.passed for r in done)  # the held two were cut, not recorded

    (task / "environment" / "hold").unlink()
    records = run(workdir, [], [], resume=run_id, concurrency=3)
    assert len(records) == 6 and all(r.passed for r in records)
    assert len({r.key for r in records}) == 6
    assert {r.trial_id for r in done} <= {r.trial_id for r in records}  # nothing ran twice


def test_kill_9_then_prune_leaves_nothing(workdir: Path, docker_client: Any, python_image: str) -> None:
    run_, _ = interrupted_after_two(workdir, docker_client, signal.SIGKILL)
    run_.finish(30)
    containers, volumes = leftovers(docker_client)
    assert len(containers) == 2 and volumes  # a killed runner cannot clean up...
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pruned = subprocess.run([sys.executable, "-m", "agenteval", "sandbox", "prune"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed {len(containers)} containers" in pruned.stdout
    assert leftovers(docker_client) == ([], [])  # ...and prune removes what it left
    with Store(workdir / "db.duckdb") as store:  # the store survives a kill -9
        run_id = store.latest_run_id()
        [(stored,)] = store.con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchall()
        assert stored == "running" and store.run(run_id).status is RunStatus.abandoned  # its process is gone
    listed = subprocess.run([sys.executable, "-m", "agenteval", "runs", "--db", str(workdir / "db.duckdb")],
                            capture_output=True, text=True, env=env, timeout=120)
    [line] = [ln for ln in listed.stdout.splitlines() if run_id in ln]
    assert "abandoned" in line and "running" not in line


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
