"""Scorecards at scale: 10,000 synthetic trials with 100,000 model calls.

Times the DuckDB ingest (``Store.commit_trials``, target <= 2 s), the full
static-site render from a cold folder (``agenteval report``'s work: leaderboard,
task, pair and list pages and one page per trial; target <= 3 s), the same
render again (trial pages of unchanged trials are kept), and prints the size of
the index page, which must stay small however many trials a run has. The CPU
time of the render (this process and its helper processes) is printed beside
its wall time: on a shared machine it moves far less with the load of others.

    python3 bench/report_scale.py [--trials 10000] [--calls 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agenteval.records import (  # noqa: E402
    Check, ExecRecord, FailureMode, Fingerprint, ModelCall, RunRecord, TrialRecord, Verdict, utcnow,
)
from agenteval.report import render_report  # noqa: E402
from agenteval.store import Store  # noqa: E402

MODELS = ["ollama:qwq:32b", "openai:r1-q4@http://127.0.0.1:8080/v1", "llamacpp-q8", "tiny", "oracle"]
TASKS = {"folder": 6, "flappy": 4, "translate": 4, "refactor": 6, "sql": 5}


def synthesize(run_id: str, n_trials: int, calls: int, seed: int = 0) -> list[TrialRecord]:
    rng = random.Random(seed)
    now = utcnow()
    cells = [(m, t, f"v{v}") for m in MODELS for t, nv in TASKS.items() for v in range(nv)]
    skill = {m: 0.2 + 0.15 * i for i, m in enumerate(MODELS)}
    records = []
    for i in range(n_trials):
        model, task, variant = cells[i % len(cells)]
        sample = i // len(cells)
        passed = rng.random() < skill[model]
        checks = [Check(name=f"check {j}", passed=passed or j < 2, message="" if passed else "expected x, found y")
                  for j in range(4)]
        model_calls = [ModelCall(index=j, model=model, prompt_tokens=800 + 40 * j, completion_tokens=rng.randint(50, 600),
                                 reasoning_tokens=rng.randint(0, 300), ttft_s=rng.uniform(0.05, 1.5),
                                 decode_s=rng.uniform(1, 10), decode_tokens_per_s=rng.uniform(10, 80) * (1 + MODELS.index(model)),
                                 e2e_s=rng.uniform(1, 12), finish_reason="tool_calls", server_timings={"predicted_ms": 1234.5})
                       for j in range(calls)]
        transcript: list[dict[str, object]] = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "Do the task."}]
        for j in range(calls):
            transcript.append({"role": "assistant", "content": f"step {j}", "reasoning": "thinking " * 20,
                               "tool_calls": [{"id": f"c{j}", "name": "bash", "arguments": '{"command": "ls -la"}'}]})
            transcript.append({"role": "tool", "name": "bash", "content": "exit code 0\nfile.txt\n"})
        start = now + timedelta(seconds=i)
        records.append(TrialRecord(
            trial_id=f"{run_id}-{i:06d}", run_id=run_id, key=f"{task}/{variant}/{model}/{sample}", task=task,
            task_path=f"tasks/{task}", task_hash="h", variant=variant, sample=sample, model=model, passed=passed,
            score=sum(c.passed for c in checks) / 4, failure_mode=None if passed else FailureMode.verify_failed,
            error=None if passed else "2 check(s) failed", started_at=start, finished_at=start + timedelta(seconds=30),
            duration_s=rng.uniform(5, 60), verdict=Verdict.from_checks(checks),
            execs=[ExecRecord(phase="agent", user="1000", command="ls -la", exit_code=0, duration_s=0.07, stdout="x\n"),
                   ExecRecord(phase="verify", user="1001", command="python3 verify.py", exit_code=0, duration_s=0.5)],
            model_calls=model_calls, transcript=transcript,
            fingerprint=Fingerprint(agenteval_version="0", host="bench", platform="linux", model=model, provider="openai",
                                    model_info={"server": "llama.cpp", "quantization": "Q4_K_M", "context": 16384})))
    return records


def cpu_seconds() -> float:
    """User and system time of this process and of its waited-for children (the render's helpers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=10, help="model calls per trial")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run_id = "bench-run"
    t = time.perf_counter()
    records = synthesize(run_id, args.trials, args.calls)
    print(f"synthesized {len(records)} trials with {sum(len(r.model_calls) for r in records)} model calls "
          f"in {time.perf_counter() - t:.1f} s")
    ingest, render, render_cpu, again, sizes = [], [], [], [], []
    for _ in range(args.rounds):
        tmp = Path(tempfile.mkdtemp(prefix="agenteval-bench-"))
        try:
            with Store(tmp / "db.duckdb") as store:
                store.save_run(RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version="0", models=MODELS,
                                         tasks=list(TASKS), samples=1, concurrency=1, config={"out": str(tmp)}))
                t = time.perf_counter()
                store.commit_trials(records)
                ingest.append(time.perf_counter() - t)
            with Store(tmp / "db.duckdb", read_only=True) as store:
                t, cpu = time.perf_counter(), cpu_seconds()
                index = render_report(store, [run_id], tmp / "site")
                render.append(time.perf_counter() - t)
                render_cpu.append(cpu_seconds() - cpu)
                t = time.perf_counter()
                render_report(store, [run_id], tmp / "site")  # unchanged trials: their pages are kept
                again.append(time.perf_counter() - t)
            sizes.append(index.stat().st_size)
            pages = sum(1 for _ in (tmp / "site").rglob("*.html"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"rounds: {args.rounds}")
    print(f"DuckDB ingest, median:  {statistics.median(ingest):.2f} s  (target <= 2 s)  all: "
          + ", ".join(f"{v:.2f}" for v in ingest))
    print(f"site render, median:    {statistics.median(render):.2f} s  (target <= 3 s)  all: "
          + ", ".join(f"{v:.2f}" for v in render))
    print(f"site render CPU, median: {statistics.median(render_cpu):.2f} s  (all processes)  all: "
          + ", ".join(f"{v:.2f}" for v in render_cpu))
    print(f"render again, median:   {statistics.median(again):.2f} s  (trial pages kept)  all: "
          + ", ".join(f"{v:.2f}" for v in again))
    print(f"pages written: {pages}; index.html: {statistics.median(sizes) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
