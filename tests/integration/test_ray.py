"""``--executor ray`` on a real Ray cluster on loopback: a head node (no Docker
slots, where the driver connects) and two worker nodes with ``docker: 2`` each,
started with ``ray start`` and stopped with ``ray stop --force``.

Needs Ray (the requirement gate in tests/conftest.py skips without it, or fails in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from agenteval.console import report_run
from agenteval.records import TrialRecord
from agenteval.runner import RunOptions, execute_run
from agenteval.sandbox.cleanup import LABEL, OWNER_LABEL
from tests.conftest import REPO, requires

pytestmark = pytest.mark.docker
TASK = REPO / "tasks" / "folder"
VARIANTS = ["one-file", "nested", "empty-dirs"]
START_TIMEOUT_S = 90


@dataclass
class Cluster:
    address: str
    temp_dir: Path
    worker_ports: list[int] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray(*args: str, env: dict[str, str]) -> None:
    proc = subprocess.run(["ray", *args], env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S,
                          start_new_session=True)
    assert proc.returncode == 0, f"ray {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    requires("ray")
    temp_dir = Path(tempfile.mkdtemp(prefix="aeray-", dir="/tmp"))  # short: Ray's socket paths must fit
    env = _ray_env(temp_dir / "home")
    port = _free_port()
    c = Cluster(address=f"127.0.0.1:{port}", temp_dir=temp_dir)
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        _ray("start", "--head", f"--port={port}", *common, "--include-dashboard=false", f"--temp-dir={temp_dir}",
             env=env)
        for _ in range(2):
            c.worker_ports.append(_free_port())
            _ray("start", f"--address={c.address}", *common, f"--node-manager-port={c.worker_ports[-1]}",
                 "--resources=" + json.dumps({"docker": 2}), env=env)
        yield c
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _ray_env(home: Path) -> dict[str, str]:
    """The environment of a hand-started cluster: a home of its own, so no ~/.ray of the machine
    (an auth token another tool left) changes how its nodes authenticate."""
    home.mkdir(parents=True, exist_ok=True)
    drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"RAY_USAGE_STATS_ENABLED": "0",
                                                                     "HOME": str(home)}


def _run(workdir: Path, name: str, **kw: Any) -> Any:
    opts = RunOptions(task_paths=[str(TASK)], models=["oracle", "nop"], samples=2, concurrency=4,
                      variants=VARIANTS, db=workdir / f"{name}.duckdb", out=workdir / "reports", **kw)
    return execute_run(opts, log=lambda m: None)


def _outcomes(records: list[TrialRecord]) -> dict[str, tuple[bool, str | None]]:
    return {r.key: (r.passed, r.failure_mode.value if r.failure_mode else None) for r in records}


def test_ray_run_matches_local_run(cluster: Cluster, docker_client: Any, workdir: Path) -> None:
    local = _run(workdir, "local")
    remote = _run(workdir, "ray", executor="ray", ray_address=cluster.address)
    assert len(remote.records) == 2 * 2 * len(VARIANTS)
    assert _outcomes(remote.records) == _outcomes(local.records)
    by_model = {m: [r for r in remote.records if r.model == m] for m in ("oracle", "nop")}
    assert len(by_model["oracle"]) == len(by_model["nop"]) == 2 * len(VARIANTS)
    assert all(r.passed for r in by_model["oracle"]) and not any(r.passed for r in by_model["nop"])
    assert remote.run.status == "completed" and remote.run.config["executor"] == "ray"
    assert {r.task_path for r in remote.records} == {r.task_path for r in local.records}
    assert all(r.fingerprint.image_id and r.fingerprint.docker_version for r in remote.records)
    assert report_run(remote).is_file()
    run_label = {"label": f"agenteval.run={remote.run.run_id}"}
    assert docker_client.api.containers(all=True, filters=run_label) == []


def test_ray_unreachable_address_is_one_clear_error(workdir: Path, cluster: Cluster) -> None:
    from agenteval.errors import ClusterError

    with pytest.raises(ClusterError, match="no Ray cluster answers at '127.0.0.1:"):
        _run(workdir, "nowhere", executor="ray", ray_address=f"127.0.0.1:{_free_port()}")


def _node_processes(node_manager_port: int) -> list[Any]:
    """The raylet serving on ``node_manager_port`` and every process under it."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].endswith("raylet") and f"--node_manager_port={node_manager_port}" in cmd:
            return [p, *p.children(recursive=True)]
    return []


def _sandbox_up(client: Any, procs: list[Any]) -> bool:
    """A process of the node owns a running sandbox: the node is inside a trial."""
    pids = {str(p.pid) for p in procs}
    for box in client.api.containers(filters={"label": LABEL}):  # running ones; never a race with removal
        if (box.get("Labels") or {}).get(OWNER_LABEL, "").rpartition(":")[2] in pids:
            return True
    return False


def test_killed_worker_node_still_records_every_trial_once(cluster: Cluster, docker_client: Any,
                                                          workdir: Path) -> None:
    """Kill one worker node (raylet and workers, SIGKILL) while it runs trials."""
    import duckdb

    victim = cluster.worker_ports[-1]
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            if _sandbox_up(docker_client, _node_processes(victim)):
                for p in _node_processes(victim):
                    try:
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append(p.pid)
                    except ProcessLookupError:
                        pass
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = _run(workdir, "kill", executor="ray", ray_address=cluster.address)
    finally:
        stop.set()
        thread.join(10)
    assert killed, "no sandbox of the worker node was ever seen, so nothing was killed"
    expected = 2 * 2 * len(VARIANTS)
    assert result.run.status == "completed"
    assert len(result.records) == expected
    with duckdb.connect(str(workdir / "kill.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT key, count(*) FROM trials WHERE run_id = ? GROUP BY key",
                           [result.run.run_id]).fetchall()
    assert len(rows) == expected and all(n == 1 for _, n in rows)
    for r in result.records:  # retried elsewhere, or recorded as infra_error: never lost
        assert r.passed == (r.model == "oracle") or r.failure_mode and r.failure_mode.value == "infra_error", r
    run_label = {"label": f"agenteval.run={result.run.run_id}"}
    assert docker_client.api.containers(all=True, filters=run_label) == []
    # the killed workers' artifacts folders, in this machine's temp folder all nodes share, are swept too
    assert sorted(Path(tempfile.gettempdir()).glob(f"agenteval-artifacts-{result.run.run_id}-*")) == []

