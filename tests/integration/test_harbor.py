"""Harbor task folders run as they are, against the real engine: images built from environment/,
the oracle passes and nop fails, an early reward never counts, limits and the network as declared."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agenteval.cli import app
from agenteval.errors import ImageBuildError
from agenteval.records import FailureMode, TrialRecord
from agenteval.runner import RunOptions, execute_run
from agenteval.runner.solution import verify_solution
from agenteval.sandbox.docker import DockerSandbox
from agenteval.sandbox.images import ensure_task_image
from agenteval.store import Store
from agenteval.task import load_task
from tests.conftest import FIXTURES, leftovers

pytestmark = pytest.mark.docker

HARBOR = FIXTURES / "harbor"
SUITE = HARBOR / "suite"


def run(workdir: Path, tasks: list[Path], models: list[str], **kw: Any) -> list[TrialRecord]:
    opts = RunOptions(task_paths=[str(t) for t in tasks], models=models, db=workdir / "db.duckdb",
                      out=workdir / "reports", concurrency=3, **kw)
    result = execute_run(opts, log=lambda m: None)
    assert result.run.status == "completed"
    return result.records


def test_oracle_passes_and_nop_fails_every_harbor_task(workdir: Path, docker_client: Any) -> None:
    records = run(workdir, [SUITE], ["oracle", "nop"])
    got = {(r.task, r.model): r for r in records}
    assert sorted(got) == sorted((t, m) for t in ("fix-median", "sum-csv", "word-count") for m in ("oracle", "nop"))
    for (task, model), r in got.items():
        assert r.verdict is not None and r.verdict.rewards is not None, r.error
        assert r.passed is (model == "oracle"), (r.key, r.error, r.verdict.checks)
        assert r.failure_mode is (None if model == "oracle" else FailureMode.verify_failed)
        assert r.fingerprint.network == "none" and r.fingerprint.image and "agenteval/task-" in r.fingerprint.image
        [verify] = [e for e in r.execs if e.phase == "verify"]
        assert verify.stdout, "the tests' output is kept in the record"
    assert got[("word-count", "oracle")].verdict.rewards == {"reward": 1.0, "words": 1.0, "lines": 1.0}  # type: ignore[union-attr]
    median = got[("fix-median", "nop")]
    assert "2 failed" in median.execs[-1].stdout and "2 passed, 2 failed of 4" in median.verdict.checks[0].message  # type: ignore[union-attr]
    names = {a.name for a in got[("fix-median", "oracle")].artifacts} | {a.name for a in got[("sum-csv", "oracle")].artifacts}
    assert {"verifier-ctrf.json", "verifier-reward.txt", "artifacts-totals.txt"} <= names
    oracle = got[("sum-csv", "oracle")]
    assert (workdir / "reports" / oracle.run_id / "artifacts" / oracle.trial_id / "artifacts-totals.txt").read_text() \
        == "east 3\nnorth 17\nsouth 7\n"
    with Store(workdir / "db.duckdb", read_only=True) as store:  # what the trial page is made from
        assert {t.key: t.verdict for t in store.trials(oracle.run_id)} == {r.key: r.verdict for r in records}
    assert leftovers(docker_client) == ([], [])


def test_a_reward_written_before_the_tests_never_counts(workdir: Path, docker_client: Any) -> None:
    [r] = run(workdir, [HARBOR / "hostile" / "early-reward"], ["oracle"])
    assert not r.passed and r.failure_mode is FailureMode.verify_failed and r.verdict is not None
    assert r.verdict.rewards == {"reward": 0.0}, r.verdict.checks
    [solve] = [e for e in r.execs if e.phase == "agent"]
    said = solve.stdout + solve.stderr
    for refused in ("cannot write the reward early", "cannot write reward.json early", "cannot plant tests"):
        assert refused in said
    [verify] = [e for e in r.execs if e.phase == "verify"]
    assert "already there" not in verify.stdout


def test_limits_workdir_and_folders_as_declared(docker_client: Any) -> None:
    task = load_task(SUITE / "sum-csv")
    image = ensure_task_image(docker_client, task.path, task.spec.sandbox, lambda m: None)
    with DockerSandbox.for_spec(docker_client, image, task.spec.sandbox, {"agenteval.run": "test"}) as box:
        host = docker_client.api.inspect_container(box.container_id)["HostConfig"]
        assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == \
            (512 * 1024**2, 512 * 1024**2, 10**9, 1024)
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"]

        def sh(command: str) -> str:
            r = box.exec(command)
            return (r.stdout + r.stderr).strip()

        assert sh("pwd; id -u") == "/app\n1000"
        assert sh("stat -c '%u %n' /app/data/sales.csv; cat /app/data/sales.csv | wc -l") == \
            "1000 /app/data/sales.csv\n6"
        assert sh("echo x > /app/new.txt && cat /workspace/new.txt") == "x"  # one folder, two names
        assert 60_000 <= int(sh("df -k --output=size /app | tail -1")) <= 70_000  # storage_mb = 64
        for path in ("/logs/verifier/reward.txt", "/tests/test.sh", "/solution/solve.sh", "/etc/x"):
            assert "ermission denied" in sh(f"echo 1 > {path}") or "Read-only" in sh(f"echo 1 > {path}"), path
        assert sh("echo 1 > /logs/agent/a && echo 2 > /logs/artifacts/b && cat /logs/agent/a /logs/artifacts/b") == "1\n2"
    assert leftovers(docker_client) == ([], [])


def test_the_network_only_with_allow_internet(workdir: Path, docker_client: Any) -> None:
    [denied] = run(workdir, [SUITE / "word-count"], ["oracle"])
    [granted] = run(workdir, [SUITE / "word-count"], ["oracle"], allow_internet=True)
    assert denied.passed and granted.passed
    assert (denied.fingerprint.network, granted.fingerprint.network) == ("none", "internet")
    task = load_task(SUITE / "word-count")
    image = ensure_task_image(docker_client, task.path, task.spec.sandbox, lambda m: None)
    with DockerSandbox.for_spec(docker_client, image, task.spec.sandbox, {"agenteval.run": "test"}) as box:
        assert docker_client.api.inspect_container(box.container_id)["HostConfig"]["NetworkMode"] != "none"
        assert "eth0" in box.exec("cat /proc/net/dev").stdout


def test_pass_threshold_decides_a_partial_reward(tmp_path: Path, docker_client: Any) -> None:
    solution = tmp_path / "solution"
    solution.mkdir()
    (solution / "words.txt").write_text("9\n")  # lines.txt missing: reward 0.5
    partial = verify_solution(SUITE / "word-count", solution, log=lambda m: None)
    assert partial.verdict is not None and not partial.verdict.passed and partial.verdict.rewards
    assert partial.verdict.rewards["reward"] == 0.5
    lenient = verify_solution(SUITE / "word-count", solution, log=lambda m: None, pass_threshold=0.5)
    assert lenient.verdict is not None and lenient.verdict.passed and lenient.verdict.score == 0.5


def test_tasks_validate_and_list_take_a_folder_of_harbor_tasks(workdir: Path, docker_client: Any) -> None:
    result = CliRunner().invoke(app, ["tasks", "validate", str(SUITE), "-j", "3"])
    assert result.exit_code == 0, result.output
    assert "all 3 variants ok" in result.output


def _sleeping() -> list[str]:
    return [pid for pid in filter(str.isdigit, os.listdir("/proc"))
            if _cmdline(pid) == b"sleep\x0030\x00"]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_build_timeout_is_honoured(tmp_path: Path, docker_client: Any) -> None:
    root = tmp_path / "slow-build"
    shutil.copytree(HARBOR / "slow-build", root)
    (root / "environment" / "nonce").write_text(uuid.uuid4().hex)  # never a cached layer
    dockerfile = root / "environment" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("RUN", "COPY nonce /nonce\nRUN"))
    task = load_task(root)
    before = _dangling(docker_client)
    t0 = time.monotonic()
    with pytest.raises(ImageBuildError, match=r"build_timeout_sec \(3 s\)"):
        ensure_task_image(docker_client, task.path, task.spec.sandbox, lambda m: None)
    assert time.monotonic() - t0 < 15
    deadline = time.monotonic() + 15  # the step sleeps 30 s: gone well before, or it was not stopped
    while _sleeping() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sleeping() == [], "the build's RUN step goes on after the timeout"
    assert _dangling(docker_client) - before == set(), "the finished COPY step's image is left untagged"


def test_a_failed_build_leaves_no_untagged_image(tmp_path: Path, docker_client: Any) -> None:
    root = tmp_path / "failing-build"
    shutil.copytree(HARBOR / "slow-build", root)
    (root / "environment" / "nonce").write_text(uuid.uuid4().hex)  # a step image no earlier build made
    (root / "environment" / "Dockerfile").write_text("FROM debian:bookworm-slim\nCOPY nonce /nonce\n"
                                                     "RUN echo made > /made\nRUN exit 3\n")
    task = load_task(root)
    before = {i["Id"] for i in docker_client.api.images(all=True)}  # intermediate step images included
    with pytest.raises(ImageBuildError, match="returned a non-zero code: 3"):
        ensure_task_image(docker_client, task.path, task.spec.sandbox, lambda m: None)
    assert {i["Id"] for i in docker_client.api.images(all=True)} - before == set()


def _dangling(client: Any) -> set[str]:
    return {i["Id"] for i in client.api.images(filters={"dangling": True})}


def test_a_base_image_that_cannot_be_pulled_is_named(tmp_path: Path, docker_client: Any) -> None:
    root = tmp_path / "pulled"
    shutil.copytree(HARBOR / "slow-build", root)
    shutil.rmtree(root / "environment")
    (root / "task.toml").write_text('version = "1.0"\n[environment]\ndocker_image = "agenteval-test/absent:1"\n')
    task = load_task(root)
    with pytest.raises(ImageBuildError) as e:
        ensure_task_image(docker_client, task.path, task.spec.sandbox, lambda m: None)
    assert "agenteval-test/absent:1" in str(e.value) and "\n" not in str(e.value)
