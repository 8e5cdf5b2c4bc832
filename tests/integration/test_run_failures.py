"""An error at any phase of a run (a server starting, a trial, a commit, the report) marks the run
``failed`` with the error, stops the server agenteval started, removes every sandbox, prints one
red line naming the error and the traceback file, exits 1; ``--resume`` then finishes the run."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner

from agenteval.cli import app
from agenteval.errors import StoreError
from agenteval.records import RunStatus
from agenteval.serving.servers import ManagedServer
from agenteval.store import Store
from tests.conftest import FIXTURES, REPO, leftovers

pytestmark = pytest.mark.docker
SHORT = str(FIXTURES / "tasks" / "short")


def _config(workdir: Path, mark: str) -> Path:
    server = REPO / "tests" / "fixtures" / "servers" / "done_server.py"
    path = workdir / "agenteval.toml"
    path.write_text(f'[models.done]\nprovider = "openai"\nengine = "command"\ntools = "text"\n'
                    f'command = "{sys.executable} {server} {{port}} {mark}"\n')
    return path


def _servers(mark: str) -> list[int]:
    """Live processes of the test's model server (its command line carries ``mark``)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if mark.encode() in Path(f"/proc/{pid}/cmdline").read_bytes() and \
                    Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1] != "Z":
                pids.append(int(pid))
        except OSError:
            pass
    return pids


def _raise(message: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(message)
    return fail


def _second_commit_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Store.commit_trials
    calls: list[int] = []

    def commit(self: Store, records: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise StoreError("injected at the second commit")
        real(self, records)

    monkeypatch.setattr(Store, "commit_trials", commit)


INJECTIONS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "server start": lambda mp: mp.setattr("agenteval.serving.servers.ManagedServer._wait_healthy",
                                          _raise("injected while the server started")),
    "trial": lambda mp: mp.setattr("agenteval.runner.executor.run_trial", _raise("injected in a trial")),
    "commit": _second_commit_fails,
    "report render": lambda mp: mp.setattr("agenteval.report.render_run", _raise("injected in the report")),
}
# Trials recorded before the error, of the four (two of "done", then two of oracle, one at a time): none
# when "done"'s server or its first trial fails, the first when the second commit does, all four when
# only the report is left.
KEPT = {"server start": 0, "trial": 0, "commit": 1, "report render": 4}


@pytest.mark.parametrize("phase", list(INJECTIONS))
def test_an_error_marks_the_run_failed_and_resume_finishes_it(phase: str, workdir: Path, docker_client: Any,
                                                              python_image: str) -> None:
    mark = f"aeserver-{uuid.uuid4().hex[:8]}"
    config = _config(workdir, mark)
    args = ["run", SHORT, "--model", "done", "--model", "oracle", "-n", "2", "--config", str(config),
            "--db", str(workdir / "db.duckdb"), "--out", str(workdir / "reports")]
    started: list[int] = []
    with pytest.MonkeyPatch.context() as mp:
        real_start = ManagedServer.start

        def start(self: ManagedServer) -> str:
            try:
                return real_start(self)
            finally:
                started.append(self.proc.pid if self.proc else -1)

        mp.setattr(ManagedServer, "start", start)
        INJECTIONS[phase](mp)
        failed = CliRunner().invoke(app, args)
    assert started and started[0] > 0, "the model's server was never started"
    assert failed.exit_code == 1, failed.output
    errors = [line for line in failed.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in failed.output, failed.output
    assert "injected" in errors[0] and " failed: " in errors[0], errors[0]
    run_id = errors[0].split("error: run ", 1)[1].split()[0]
    trace = Path(errors[0].split("traceback: ", 1)[1].split(";")[0])
    assert "injected" in trace.read_text() and "Traceback" in trace.read_text()
    assert errors[0].endswith(f"resume with: agenteval run --resume {run_id}")
    with Store(workdir / "db.duckdb", read_only=True) as store:
        run = store.run(run_id)
        kept = {r.key: r.trial_id for r in store.trials(run_id)}
    assert len(kept) == KEPT[phase], sorted(kept)
    assert run.status is RunStatus.failed and run.error and "injected" in run.error
    assert _servers(mark) == [], "the model server agenteval started is still running"
    assert leftovers(docker_client) == ([], [])

    resumed = CliRunner().invoke(app, ["run", "--resume", run_id, "--config", str(config),
                                       "--db", str(workdir / "db.duckdb")])
    assert resumed.exit_code == 0, resumed.output
    with Store(workdir / "db.duckdb", read_only=True) as store:
        assert store.run(run_id).status is RunStatus.completed
        done = {r.key: r.trial_id for r in store.trials(run_id)}
    assert len(done) == 4 and {k: done[k] for k in kept} == kept  # nothing ran twice
    assert (workdir / "reports" / run_id / "index.html").is_file()
    assert _servers(mark) == []
    assert leftovers(docker_client) == ([], [])


def test_a_crash_in_tasks_validate_is_one_line_and_keeps_its_traceback(workdir: Path, docker_client: Any,
                                                                       python_image: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agenteval.runner.executor.run_trial", _raise("injected in a trial"))
    result = CliRunner().invoke(app, ["tasks", "validate", SHORT])
    assert result.exit_code == 1, result.output
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: task validation failed: run ") and "injected in a trial" in line
    assert "resume with" not in line  # a validation's scratch run cannot be resumed
    trace = Path(line.split("traceback: ", 1)[1])
    try:
        assert "injected in a trial" in trace.read_text()
    finally:
        trace.unlink()
    assert leftovers(docker_client) == ([], [])
