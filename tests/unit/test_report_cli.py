"""`agenteval runs`, `report`, `compare` and `export` on a real DuckDB file, as a user types them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from agenteval.records import RunRecord, utcnow
from agenteval.store import Store
from tests.unit.test_report_site import record


def agenteval(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agenteval", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(Path(__file__).parents[2])},
                          timeout=120)


def two_runs(cwd: Path) -> None:
    with Store(cwd / "reports" / "agenteval.duckdb") as store:
        for run_id, model, rate in (("r-old", "slow", 0), ("r-new", "fast", 1)):
            store.save_run(RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version="0", models=[model],
                                     tasks=["folder"], samples=3, concurrency=1, config={"out": "reports"}))
            store.commit_trials([record(run_id, model, "folder", "v1", s, passed=bool(rate) or s == 0)
                                 for s in range(3)])


def test_runs_lists_counts_and_pass_rate(tmp_path: Path) -> None:
    two_runs(tmp_path)
    proc = agenteval(tmp_path, "runs")
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split("│")[1].strip(): ln for ln in proc.stdout.splitlines() if "│ r-" in ln}
    assert set(lines) == {"r-old", "r-new"}
    assert "33%" in lines["r-old"] and "100%" in lines["r-new"]


def test_runs_piped_into_a_narrow_terminal_keeps_whole_run_ids(tmp_path: Path) -> None:
    run_id = "20261207-011500-3f9a"  # as agenteval names runs
    with Store(tmp_path / "reports" / "agenteval.duckdb") as store:
        store.save_run(RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version="0",
                                 models=["openai:qwq-32b-q4_k_m@http://127.0.0.1:8080/v1", "oracle", "nop"],
                                 tasks=["folder", "flappy", "translate"], samples=3, concurrency=1, config={}))
        store.commit_trials([record(run_id, "oracle", "folder", "v1", s, passed=True) for s in range(2)])
    proc = subprocess.run([sys.executable, "-m", "agenteval", "runs"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "80", "PYTHONPATH": str(Path(__file__).parents[2])},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert run_id in proc.stdout and "100%" in proc.stdout, proc.stdout


def test_report_of_several_runs_and_compare(tmp_path: Path) -> None:
    two_runs(tmp_path)
    proc = agenteval(tmp_path, "report", "--run", "r-old", "--run", "r-new", "--out", "site")
    assert proc.returncode == 0, proc.stderr
    index = (tmp_path / "site" / "index.html").read_text()
    assert "run <code>r-old</code>" in index and "run <code>r-new</code>" in index
    ranked = re.findall(r'<tr id="m-[^"]+"><td class="num">(\d+)</td><th>([^<]+)</th>', index)
    assert ranked == [("1", "fast"), ("2", "slow")]  # both runs' models on one leaderboard, best first
    proc = agenteval(tmp_path, "compare", "slow", "fast")
    assert proc.returncode == 0, proc.stderr
    assert "only slow 0, only fast 2" in proc.stdout and "p = 0.5" in proc.stdout
    page = Path(tmp_path / proc.stdout.split("page: ")[1].strip())
    assert page.is_file() and "p = 0.5" in page.read_text()
    proc = agenteval(tmp_path, "compare", "slow", "nobody")
    assert proc.returncode == 2 and "no run has trials of model 'nobody'" in proc.stderr


def test_export_formats_from_the_command_line(tmp_path: Path) -> None:
    two_runs(tmp_path)
    proc = agenteval(tmp_path, "export", "--format", "jsonl", "--run", "r-old")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert len(lines) == 3 and {ln["run_id"] for ln in lines} == {"r-old"} and lines[0]["schema_version"] >= 1
    proc = agenteval(tmp_path, "export", "--format", "junit", "--out", "junit.xml")
    assert proc.returncode == 0 and (tmp_path / "junit.xml").is_file(), proc.stderr
    proc = agenteval(tmp_path, "export", "--format", "parquet")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "reports" / "r-new" / "parquet" / "trials.parquet").is_file()
    proc = agenteval(tmp_path, "export", "--format", "csv")
    assert proc.returncode == 2 and proc.stderr.startswith("error:")
