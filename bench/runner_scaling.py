"""How the runner scales: 40 oracle trials of tasks/folder at concurrency 1, 2
and 4. Prints trials per second and the time per trial outside sandbox start,
stop and commands (file copies in and out, the verdict read, bookkeeping).
Prints figures; asserts nothing.

    python3 bench/runner_scaling.py [--trials 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agenteval.console import report_run
from agenteval.runner import RunOptions, execute_run

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    task = REPO / "tasks" / "folder"
    variants = 6
    samples = -(-args.trials // variants)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for conc in (1, 2, 4):
            rates, framework = [], []
            for r in range(args.rounds):
                opts = RunOptions(task_paths=[str(task)], models=["oracle"], samples=samples, concurrency=conc,
                                  db=Path(tmp) / f"c{conc}-{r}.duckdb", out=Path(tmp) / "reports")
                t0 = time.perf_counter()
                result = execute_run(opts, log=lambda m: None)
                report_run(result)  # what `agenteval run` does after the trials
                wall = time.perf_counter() - t0
                assert all(t.passed for t in result.records)
                rates.append(len(result.records) / wall)
                for t in result.records:
                    sandbox_work = t.setup_s + t.teardown_s + sum(e.duration_s for e in t.execs)
                    framework.append(t.duration_s - sandbox_work)
            rows.append((conc, statistics.median(rates), statistics.median(framework)))
    print(f"{samples * variants} oracle trials of tasks/folder per run, {args.rounds} runs per concurrency "
          f"(wall time includes start-up and the report)")
    base = rows[0][1]
    for conc, rate, fw in rows:
        print(f"-j {conc}: {rate:5.2f} trials/s ({rate / base:.2f}x of -j 1); time outside sandbox start/stop "
              f"and commands, median {fw * 1000:6.1f} ms per trial")


if __name__ == "__main__":
    main()
