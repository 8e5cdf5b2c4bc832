""".ci/check_main_job.py fails on each way the README's main job can fall short of what the
README says (the run not completed, a trial missing, the reference failing, a model that never
acted, no report), and passes a run that has none of them."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[2]
COMMAND = ("bash sandboxes/setup-engine.sh && python3 -m agenteval run tasks/folder tasks/flappy "
           "--variant folder/one-file --variant flappy/classic --model oracle --model smollm2 --max-steps 6")
RUN = "20261207-120000-abcd"


def check_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_main_job", REPO / ".ci" / "check_main_job.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job(folder: Path, *, status: str = "completed", drop: str | None = None, oracle_fails: bool = False,
        smollm2_acts: int = 2, report: bool = True) -> None:
    """A main job's folder as the command leaves it: reports/agenteval.duckdb and the run's site."""
    (folder / "reports" / RUN).mkdir(parents=True)
    if report:
        (folder / "reports" / RUN / "index.html").write_text("<html></html>")
    con = duckdb.connect(str(folder / "reports" / "agenteval.duckdb"))
    con.execute("CREATE TABLE runs(run_id VARCHAR, started_at TIMESTAMP, status VARCHAR)")
    con.execute("CREATE TABLE trials(run_id VARCHAR, model VARCHAR, task VARCHAR, variant VARCHAR, passed BOOLEAN, "
                "actions_run BIGINT, failure_mode VARCHAR)")
    con.execute("INSERT INTO runs VALUES ('older', '2026-01-01', 'failed'), (?, '2026-12-07 12:00', ?)", [RUN, status])
    for model in ("oracle", "smollm2"):
        for task, variant in (("folder", "one-file"), ("flappy", "classic")):
            if drop == f"{model}/{task}/{variant}":
                continue
            passed = model == "oracle" and not (oracle_fails and task == "flappy")
            acts = 0 if model == "oracle" else (smollm2_acts if task == "folder" else 0)
            con.execute("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [RUN, model, task, variant, passed, acts, None if passed else "verify_failed"])
    con.close()


@pytest.mark.parametrize(("how", "says"), [
    ({"status": "interrupted"}, f"run {RUN} is interrupted, not completed"),
    ({"drop": "smollm2/flappy/classic"},
     "3 trials, expected 4 (2 models x 2 variants); missing [('smollm2', 'flappy/classic')]"),
    ({"oracle_fails": True}, "the reference solution failed flappy/classic (verify_failed)"),
    ({"smollm2_acts": 0}, "model smollm2 ran no command of its own in any trial"),
    ({"report": False}, f"no reports/{RUN}/index.html"),
])
def test_each_shortfall_fails_the_check(how: dict[str, object], says: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    job(tmp_path, **how)  # type: ignore[arg-type]
    (tmp_path / "command.sh").write_text(COMMAND)
    monkeypatch.chdir(tmp_path)
    assert check_module().main(str(tmp_path / "command.sh")) == 1
    assert capsys.readouterr().err.splitlines() == [f"main job: {says}"]


def test_a_job_that_did_what_the_readme_says_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    job(tmp_path)
    (tmp_path / "command.sh").write_text(COMMAND)
    monkeypatch.chdir(tmp_path)
    assert check_module().main(str(tmp_path / "command.sh")) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert "main job: smollm2 ran 2 commands of its own over 2 trials" in out.out.splitlines()


def test_the_models_and_variants_are_read_from_the_readme_command() -> None:
    readme_command = subprocess.run(
        ["python3", str(REPO / ".ci" / "readme.py"), "get", "main-job"], capture_output=True, text=True, check=True,
        cwd=REPO).stdout
    models, variants = check_module().asked(readme_command)
    assert models[0] == "oracle" and len(models) >= 2  # the reference beside at least one real model
    assert len(variants) == len(set(variants)) >= 1
    assert [v for v in variants if v.count("/") != 1] == []  # each a task/variant
