"""Runner features against the real engine: kill -9 then --resume, --retry-errors,
--fail-under, and the per-model limit on requests in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agenteval.config import ModelConfig, ProjectConfig
from agenteval.records import FailureMode
from agenteval.runner import RunOptions, execute_run
from agenteval.runner.model_registry import build_served
from agenteval.store import Store
from tests.conftest import FIXTURES, REPO
from tests.integration.test_agent_graph import WARM_UP, text_reply, tool_reply
from tests.integration.test_run import interrupted_after_two
from tests.scripted_server import ScriptedServer, free_port

pytestmark = pytest.mark.docker
SHORT = str(FIXTURES / "tasks" / "short")


def test_kill_9_then_resume_runs_exactly_the_missing_trials(workdir: Path, docker_client: Any,
                                                            python_image: str) -> None:
    run_, task = interrupted_after_two(workdir, docker_client, signal.SIGKILL)
    run_.finish(30)
    subprocess.run([sys.executable, "-m", "agenteval", "sandbox", "prune"], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    with Store(workdir / "db.duckdb") as store:  # intact after kill -9
        run_id = store.latest_run_id()
        before = {r.key: r.trial_id for r in store.trials(run_id)}
    assert len(before) == 2
    (task / "environment" / "hold").unlink()
    result = execute_run(RunOptions(task_paths=[], models=[], db=workdir / "db.duckdb", out=workdir / "reports",
                                    resume=run_id, concurrency=3), log=lambda m: None)
    after = {r.key: r.trial_id for r in result.records}
    assert len(result.records) == len(after) == 6 and all(r.passed for r in result.records)
    assert all(after[k] == v for k, v in before.items())  # committed trials were not run again
    assert result.skipped == len(before) and result.run.status == "completed"


def test_retry_errors_runs_infra_errors_again(workdir: Path, docker_client: Any, python_image: str) -> None:
    port = free_port()
    model = f"openai:m@http://127.0.0.1:{port}/v1"
    first = execute_run(RunOptions(task_paths=[SHORT], models=[model], db=workdir / "db.duckdb",
                                   out=workdir / "reports"), log=lambda m: None)
    [failed] = first.records
    assert failed.failure_mode is FailureMode.infra_error and "model unavailable" in (failed.error or "")
    script = [WARM_UP, tool_reply("write_file", {"path": "hello.txt", "content": "hello\n"}),
              tool_reply("done", {"summary": "ok"})]
    with ScriptedServer(script, port=port):
        plain = execute_run(RunOptions(task_paths=[], models=[], db=workdir / "db.duckdb", out=workdir / "reports",
                                       resume=first.run.run_id), log=lambda m: None)
        assert [r.trial_id for r in plain.records] == [failed.trial_id]  # resume alone keeps the error
        retried = execute_run(RunOptions(task_paths=[], models=[], db=workdir / "db.duckdb",
                                         out=workdir / "reports", resume=first.run.run_id, retry_errors=True),
                              log=lambda m: None)
    [again] = retried.records
    assert again.passed and again.trial_id != failed.trial_id


def test_fail_under(workdir: Path, python_image: str) -> None:
    env = {**os.environ, "AGENTEVAL_SANDBOXES": str(REPO / "sandboxes"), "PYTHONPATH": str(REPO)}

    def cli(*models: str) -> subprocess.CompletedProcess[str]:
        args = [a for m in models for a in ("--model", m)]
        return subprocess.run([sys.executable, "-m", "agenteval", "run", SHORT, *args, "--fail-under", "0.5",
                               "--db", str(workdir / "db.duckdb"), "--out", str(workdir / "r")],
                              capture_output=True, text=True, env=env, cwd=workdir, timeout=300)

    low = cli("oracle", "nop")
    assert low.returncode == 1 and "pass rate under 0.5: nop 0.00" in low.stderr
    ok = cli("oracle")
    assert ok.returncode == 0, ok.stderr


def test_requests_in_flight_are_limited_per_model() -> None:
    replies = [text_reply("a") for _ in range(6)]
    for r in replies:
        r.delays = [0.15]
    with ScriptedServer(replies) as srv:
        cfg = ModelConfig(base_url=f"{srv.url}/v1", max_in_flight=1)
        model = build_served("m", cfg, ProjectConfig(models={"m": cfg}))
        calls: list[Any] = []
        threads = [threading.Thread(target=lambda: calls.append(model.chat([{"role": "user", "content": "x"}]).call))
                   for _ in range(3)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(calls) == 3 and all(c.concurrency == 1 for c in calls)
    assert time.monotonic() - t0 >= 0.45  # one after another
