"""``--ray-address local``: a private Ray cluster that leaves nothing behind. Apart from
test_ray.py, whose module-scoped cluster must be gone first (``ray stop --force`` stops every
Ray process of the machine)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.conftest import requires
from tests.integration.test_ray import _free_port, _ray, _ray_env

pytestmark = pytest.mark.docker


def test_local_mode_leaves_nothing_that_breaks_a_later_cluster(tmp_path: Path, docker_client: Any,
                                                             python_image: str) -> None:
    """``--ray-address local`` starts a private cluster and removes it: no ~/.ray/auth_token (Ray
    2.59+ writes one for a new local cluster), no /tmp/ray, no Ray process; afterwards a cluster
    started by hand on the same machine, head and worker, still forms."""
    requires("ray")
    home, temp = tmp_path / "home", Path(tempfile.mkdtemp(prefix="ae-", dir="/tmp"))  # short: socket paths
    env = _ray_env(home) | {"TMPDIR": str(temp), "PYTHONPATH": str(REPO), "AGENTEVAL_SANDBOXES": str(REPO / "sandboxes")}
    try:
        proc = subprocess.run([sys.executable, "-m", "agenteval", "run", str(REPO / "tests" / "fixtures" / "tasks" / "short"),
                               "--model", "oracle", "--executor", "ray", "--ray-address", "local",
                               "--db", str(tmp_path / "db.duckdb"), "--out", str(tmp_path / "reports")],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "1/1 passed" in proc.stdout
        assert not (home / ".ray").exists()
        assert sorted(p.name for p in temp.iterdir()) == []  # its cluster folder and task cache are gone
        port = _free_port()
        common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
        _ray("start", "--head", f"--port={port}", *common, "--include-dashboard=false",
             f"--temp-dir={temp}", env=env)
        _ray("start", f"--address=127.0.0.1:{port}", *common, f"--node-manager-port={_free_port()}", env=env)
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(temp, ignore_errors=True)
