"""Per-trial overhead of agenteval against a bare Docker SDK baseline.

Prints figures; asserts nothing. Both sides do the same container work for
20 oracle trials of tasks/folder: create and start a container, copy the
solution in, run it, copy the tests in, run them, remove the container.
agenteval adds its hardening, two tmpfs volumes, stopping the agent's
processes, reading the verdict and committing a record to DuckDB.

    python3 bench/trial_overhead.py [--trials 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from agenteval.runner import RunOptions, execute_run
from agenteval.sandbox.engine import connect
from agenteval.sandbox.images import ensure_image
from agenteval.task import load_task
from agenteval.verify import HARNESS

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "folder"


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def bare_trial(client, image: str, solution: bytes, tests: bytes, variant: str, params: str,
               network: str = "default") -> float:
    api = client.api
    t0 = time.perf_counter()
    host_config = api.create_host_config(init=True, **({"network_mode": "none"} if network == "none" else {}))
    cid = api.create_container(image, ["sleep", "infinity"], host_config=host_config, working_dir="/workspace")["Id"]
    api.start(cid)
    api.put_archive(cid, "/opt", solution)

    def run(cmd: str, env: dict[str, str]) -> None:
        eid = api.exec_create(cid, ["sh", "-c", cmd], environment=env)["Id"]
        api.exec_start(eid)

    run("mkdir -p /workspace && cd /workspace && bash /opt/sol/solve.sh",
        {"AGENTEVAL_SOLUTION": "/opt/sol", "AGENTEVAL_VARIANT_ID": variant, "AGENTEVAL_VARIANT": params})
    api.put_archive(cid, "/opt", tests)
    run("cd /opt/tests && python3 verify.py", {"PYTHONPATH": "/opt/tests", "AGENTEVAL_VARIANT": params,
                                              "AGENTEVAL_WORKSPACE": "/workspace"})
    api.remove_container(cid, force=True)
    return time.perf_counter() - t0


def agenteval_trials(trials: int, concurrency: int, variant: str, work: Path) -> tuple[float, list[float]]:
    opts = RunOptions(task_paths=[str(TASK)], models=["oracle"], samples=trials, concurrency=concurrency,
                      variants=[variant], db=work / f"bench-{time.monotonic_ns()}.duckdb", out=work / "reports")
    t0 = time.perf_counter()
    result = execute_run(opts, log=lambda m: None)
    wall = time.perf_counter() - t0
    assert all(r.passed for r in result.records), [r.error for r in result.records if not r.passed]
    return wall, [r.duration_s for r in result.records]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    client = connect()
    image = ensure_image(client, "python", REPO / "sandboxes")
    task = load_task(TASK)
    variant = task.variants()[-1]
    params = json.dumps(variant.params)
    sol_files = {f"sol/{p.relative_to(task.solution_dir)}": p.read_bytes()
                 for p in task.solution_dir.rglob("*") if p.is_file()}
    test_files = {f"tests/{p.relative_to(task.tests_dir)}": p.read_bytes()
                  for p in task.tests_dir.rglob("*") if p.is_file()}
    test_files["tests/agenteval_verifier.py"] = HARNESS.read_bytes()
    solution, tests = tar_of(sol_files), tar_of(test_files)

    bare: list[float] = []
    bare_nonet: list[float] = []
    ours: list[float] = []
    walls: dict[int, list[float]] = {1: [], 2: [], 4: []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for _ in range(args.rounds):
            bare += [bare_trial(client, image, solution, tests, variant.id, params) for _ in range(args.trials)]
            bare_nonet += [bare_trial(client, image, solution, tests, variant.id, params, "none")
                           for _ in range(args.trials)]
            for conc in walls:
                wall, durations = agenteval_trials(args.trials, conc, variant.id, work)
                walls[conc].append(wall)
                if conc == 1:
                    ours += durations
    b, bn, o = statistics.median(bare), statistics.median(bare_nonet), statistics.median(ours)
    print(f"machine: {__import__('os').cpu_count()} cores; {args.rounds} rounds of {args.trials} trials "
          f"(tasks/folder variant {variant.id})")
    print(f"bare Docker SDK baseline, median per trial:   {b * 1000:7.1f} ms")
    print(f"  the same with --network none:               {bn * 1000:7.1f} ms")
    print(f"agenteval (concurrency 1), median per trial:  {o * 1000:7.1f} ms   "
          f"ratio {o / b:.2f}x, {o / bn:.2f}x vs --network none (target <= 1.1x vs the bare baseline)")
    for conc, ws in walls.items():
        print(f"agenteval {args.trials} trials end to end, -j {conc}: median wall {statistics.median(ws):6.2f} s "
              f"(incl. start-up; target <= 6 s)")


if __name__ == "__main__":
    main()
