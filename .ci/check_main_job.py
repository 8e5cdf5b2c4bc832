"""Whether the README's main job did what the README says it does. Run by .ci/main-job.sh in the
main job's folder, with the venv the job made (so it reads DuckDB with what the job installed).

    python3 check_main_job.py COMMAND_FILE

Fails (exit 1, one line a problem) unless: the latest run is completed; it holds every trial
the command asks for (models x variants, one sample each); the reference solution (oracle)
passed every trial; every other model ran at least one command of its own in the sandbox; the
run's report exists."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import duckdb


def asked(command: str) -> tuple[list[str], list[str]]:
    """The --model and --variant values of the agenteval run in the command."""
    words = shlex.split(command.split("agenteval run", 1)[1].split("&&")[0])
    models = [words[i + 1] for i, w in enumerate(words) if w in ("--model", "-m")]
    variants = [words[i + 1] for i, w in enumerate(words) if w == "--variant"]
    return models, variants


def main(command_file: str) -> int:
    models, variants = asked(Path(command_file).read_text())
    problems: list[str] = []
    db = Path("reports/agenteval.duckdb")
    if not db.is_file():
        print(f"main job: no {db}", file=sys.stderr)
        return 1
    con = duckdb.connect(str(db), read_only=True)
    run_id, status = con.execute("SELECT run_id, status FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    rows = con.execute("SELECT model, task || '/' || variant, passed, coalesce(actions_run, 0), failure_mode "
                       "FROM trials WHERE run_id = ?", [run_id]).fetchall()
    if status != "completed":
        problems.append(f"run {run_id} is {status}, not completed")
    expected = {(m, v) for m in models for v in variants}
    got = {(m, v) for m, v, *_ in rows}
    if got != expected or len(rows) != len(expected):
        problems.append(f"{len(rows)} trials, expected {len(expected)} ({len(models)} models x {len(variants)} "
                        f"variants); missing {sorted(expected - got)}")
    for m, v, passed, _, mode in rows:
        if m == "oracle" and not passed:
            problems.append(f"the reference solution failed {v} ({mode})")
    for m in models:
        if m in ("oracle", "nop"):
            continue
        acted = sum(a for model, _, _, a, _ in rows if model == m)
        if not acted:
            problems.append(f"model {m} ran no command of its own in any trial")
        else:
            print(f"main job: {m} ran {acted} commands of its own over {sum(r[0] == m for r in rows)} trials")
    if not (Path("reports") / run_id / "index.html").is_file():
        problems.append(f"no reports/{run_id}/index.html")
    for p in problems:
        print(f"main job: {p}", file=sys.stderr)
    if not problems:
        print(f"main job: run {run_id} completed, {len(rows)} trials, the reference passed all of its "
              f"{sum(r[0] == 'oracle' for r in rows)}, report written")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
