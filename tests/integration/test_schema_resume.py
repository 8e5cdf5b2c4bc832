"""`agenteval run --resume` on a file of every released schema: it migrates the file through
the numbered migrations, runs exactly the missing trial, and the read-only commands then
read the result without writing it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agenteval import cli as cli_module
from agenteval.cli import app
from agenteval.migrations import MIGRATIONS
from agenteval.store import Store
from tests.conftest import REPO
from tests.unit.test_schema_history import RELEASED, files, from_fixture, run_id

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("fixture", RELEASED, ids=lambda p: p.stem)
def test_resume_migrates_a_released_file_and_runs_the_missing_trial(
        fixture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker_client: Any, python_image: str) -> None:
    monkeypatch.chdir(REPO)  # the run's config names its task as tests/fixtures/tasks/short
    monkeypatch.setenv("AGENTEVAL_SANDBOXES", str(REPO / "sandboxes"))
    monkeypatch.setattr(cli_module.console, "width", 200)
    db = from_fixture(fixture, tmp_path / "db" / "agenteval.duckdb")
    rid = run_id(fixture)
    with Store(db, read_only=True) as store:
        before = {t.key: t for t in store.trials(rid)}
    assert len(before) == 3  # each release's fixture: three trials recorded, one still to run
    cli = CliRunner()
    result = cli.invoke(app, ["run", "--resume", rid, "--db", str(db), "--out", str(tmp_path / "reports")])
    assert result.exit_code == 0, result.output
    with Store(db, read_only=True) as store:
        ledger = [v for (v,) in store.con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()]
        assert ledger == [m.version for m in MIGRATIONS]
        after = {t.key: t for t in store.trials(rid)}
        assert store.run(rid).status == "completed"
    assert set(after) - set(before) == {"short/default/oracle/1"} and after["short/default/oracle/1"].passed
    assert all(after[k] == t for k, t in before.items())  # recorded trials kept as they were

    migrated = files(db.parent)
    for args in (["runs"], ["report", "--out", str(tmp_path / "site")],
                 ["export", "--format", "jsonl", "--out", str(tmp_path / "t.jsonl")],
                 ["export", "--format", "parquet", "--out", str(tmp_path / "pq")],
                 ["compare", "oracle", "nop", "--out", str(tmp_path / "cmp")]):
        result = cli.invoke(app, [*args, "--db", str(db)])
        assert result.exit_code == 0, (args, result.output)
    assert files(db.parent) == migrated
    assert len((tmp_path / "t.jsonl").read_text().splitlines()) == 4
