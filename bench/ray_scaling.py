"""The Ray executor against the local one: oracle trials of tasks/folder on a
Ray cluster of 1, 2 and 4 worker nodes on this machine (``docker: 1`` each,
started with ``ray start`` on loopback), at -j equal to the node count, and
the local executor at the same -j. Prints trials per second over the whole
run (connect, pre-flight and report included) and over the trials alone
(first start to last finish), and the ratio to local. Prints figures; asserts
nothing.

    python3 bench/ray_scaling.py [--trials 24] [--rounds 2] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from agenteval.console import report_run
from agenteval.runner import RunOptions, execute_run

REPO = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray(*args: str) -> None:
    subprocess.run(["ray", *args], env=ENV, check=True, capture_output=True, timeout=120, start_new_session=True)


def start_cluster(workers: int, temp_dir: Path) -> str:
    """A head (no Docker slots) and ``workers`` nodes with one slot each; returns the address."""
    port = _free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    _ray("start", "--head", f"--port={port}", *common, "--include-dashboard=false", f"--temp-dir={temp_dir}")
    for _ in range(workers):
        _ray("start", f"--address=127.0.0.1:{port}", *common, "--resources=" + json.dumps({"docker": 1}))
    return f"127.0.0.1:{port}"


def stop_cluster() -> None:
    subprocess.run(["ray", "stop", "--force"], env=ENV, capture_output=True, timeout=120)


def measure(opts: RunOptions) -> tuple[float, float]:
    """(trials/s over the whole run, trials/s from the first trial's start to the last's end)."""
    t0 = time.perf_counter()
    result = execute_run(opts, log=lambda m: None)
    report_run(result)  # what `agenteval run` does after the trials
    wall = time.perf_counter() - t0
    assert all(t.passed for t in result.records), [t.error for t in result.records if not t.passed][:3]
    span = (max(t.finished_at for t in result.records) - min(t.started_at for t in result.records)).total_seconds()
    return len(result.records) / wall, len(result.records) / span


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    task = REPO / "tasks" / "folder"
    variants = 6
    samples = -(-args.trials // variants)
    rows: list[tuple[int, Any, Any, Any, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.workers:
            local: list[tuple[float, float]] = []
            remote: list[tuple[float, float]] = []
            for r in range(args.rounds):
                local.append(measure(RunOptions(task_paths=[str(task)], models=["oracle"], samples=samples,
                                                concurrency=n, db=Path(tmp) / f"l{n}-{r}.duckdb",
                                                out=Path(tmp) / "reports")))
            ray_tmp = Path(tempfile.mkdtemp(prefix="aeray-", dir="/tmp"))
            try:
                address = start_cluster(n, ray_tmp)
                for r in range(args.rounds):
                    remote.append(measure(RunOptions(task_paths=[str(task)], models=["oracle"], samples=samples,
                                                     concurrency=n, db=Path(tmp) / f"r{n}-{r}.duckdb",
                                                     out=Path(tmp) / "reports", executor="ray",
                                                     ray_address=address)))
            finally:
                stop_cluster()
                shutil.rmtree(ray_tmp, ignore_errors=True)
            rows.append((n, statistics.median(x[0] for x in local), statistics.median(x[1] for x in local),
                         statistics.median(x[0] for x in remote), statistics.median(x[1] for x in remote)))
    print(f"{samples * variants} oracle trials of tasks/folder per run, {args.rounds} runs each, medians; "
          f"'run' counts the whole run (Ray: connect, pre-flight, report), 'trials' first start to last finish; "
          f"{os.cpu_count()} CPUs")
    for n, l_run, l_trials, r_run, r_trials in rows:
        print(f"{n} worker(s), -j {n}: local {l_run:5.2f} trials/s run, {l_trials:5.2f} trials; "
              f"ray {r_run:5.2f} trials/s run ({r_run / l_run:.2f}x local), {r_trials:5.2f} trials "
              f"({r_trials / l_trials:.2f}x local)")


if __name__ == "__main__":
    main()
