"""A whole quantization ladder, timed: six rungs of SmolLM2-135M-Instruct (requantized from
its Q4_1 file, the only one PyPI has; labelled so) plus the reference, on one variant of each
seed task, one sample each.

Prints figures; asserts nothing. Each round starts with an empty rung cache, so quantizing
is measured too. The harness's own share is the wall time that is none of: quantizing,
measuring divergence (llama-perplexity), servers loading and warming up, model calls,
commands in the sandbox and the verifier.

    python3 bench/ladder.py [--rounds 1] [--engine llama-server] [--quants Q8_0,Q6_K,...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agenteval.config import model_cache_dir
from agenteval.serving.downloads import DOWNLOADS
from agenteval.store import Store

REPO = Path(__file__).resolve().parents[1]
QUANTS = "Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K"
VARIANTS = ("folder/one-file", "translate/de-cache-runbook", "flappy/classic")


def one_round(work: Path, engine: str, quants: str) -> dict[str, float]:
    smol = model_cache_dir() / DOWNLOADS["smollm2"].file
    db = work / "db.duckdb"
    argv = [sys.executable, "-m", "agenteval", "ladder", str(smol), *(str(REPO / "tasks" / t) for t in
                                                                      ("folder", "translate", "flappy")),
            "--quants", quants, "--allow-requantize", "--samples", "1", "--engine", engine,
            "--max-steps", "6", "--agent-timeout", "90", "--db", str(db), "--out", str(work / "reports")]
    for v in VARIANTS:
        argv += ["--variant", v]
    env = {**os.environ, "AGENTEVAL_LADDER_CACHE": str(work / "cache")}
    t0 = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"ladder failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    with Store(db, read_only=True) as store:
        [run_id] = [r.run_id for r in store.run_summaries()]
        rungs = store.rungs(run_id)
        servings = store.servings(run_id)
        trials = store.trials(run_id)
        con = store.con
        row = con.execute("SELECT coalesce(sum(e.duration_s), 0) FROM trial_execs e JOIN trials t USING (trial_id) "
                          "WHERE t.run_id = ?", [run_id]).fetchone()
        exec_s = float(row[0]) if row else 0.0
    quantize = {r.model: r.quantize_s or 0.0 for r in rungs if not r.reference}
    kl = sum(r.kl_s or 0.0 for r in rungs)
    load = sum(s.load_s or 0.0 for s in servings)
    warm = sum(float(t.fingerprint.model_info.get("warm_up_s") or 0.0) for t in {t.model: t for t in trials}.values())
    calls = sum(c.e2e_s or 0.0 for t in trials for c in t.model_calls)
    verify = sum(t.verify_s for t in trials)  # the verifier's own commands are in the execs too: count once
    verify_execs = sum(e.duration_s or 0.0 for t in trials for e in t.execs if e.phase == "verify")
    accounted = sum(quantize.values()) + kl + load + warm + calls + exec_s - verify_execs + verify
    sandbox = sum(t.setup_s + t.teardown_s for t in trials)  # containers started and removed
    print(f"  wall {wall:.1f} s for {len(rungs)} rungs x {len(VARIANTS)} trials "
          f"({sum(t.passed for t in trials)}/{len(trials)} passed)")
    print("  quantize s per rung: " + ", ".join(f"{m} {s:.1f}" for m, s in quantize.items()))
    print(f"  divergence {kl:.1f} s, server load {load:.1f} s, warm-up {warm:.1f} s, model calls {calls:.1f} s, "
          f"sandbox commands {exec_s - verify_execs:.1f} s, verifier {verify:.1f} s, sandbox start and stop "
          f"{sandbox:.1f} s")
    harness = max(0.0, wall - accounted)
    outside = wall - sum(t.duration_s for t in trials) - sum(quantize.values()) - kl - load - warm
    print(f"  outside trials and the measured steps (start-up, images, task loading, report): {outside:.1f} s")
    return {"wall": wall, "quantize": sum(quantize.values()), "kl": kl, "harness": harness, "share": harness / wall,
            "share_without_sandbox": max(0.0, harness - sandbox) / wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--engine", default="llama-server", choices=("llama-server", "llamacpp"))
    parser.add_argument("--quants", default=QUANTS)
    args = parser.parse_args()
    results = []
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}")
        with tempfile.TemporaryDirectory(prefix="agenteval-ladder-bench-") as tmp:
            results.append(one_round(Path(tmp), args.engine, args.quants))
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"median of {len(results)}: total wall {med['wall'] / 60:.2f} min (target <= 10), quantizing "
          f"{med['quantize']:.1f} s, divergence {med['kl']:.1f} s, harness's own share "
          f"{100 * med['share']:.1f}% ({med['harness']:.1f} s) including sandbox start and stop, "
          f"{100 * med['share_without_sandbox']:.1f}% without")


if __name__ == "__main__":
    main()
