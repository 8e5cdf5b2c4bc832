"""The DuckDB store: derived schema, migrations, atomic commits, exact round trips."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from agenteval.errors import StoreError
from agenteval.records import (
    Check, ExecRecord, FailureMode, Fingerprint, RunRecord, TrialRecord, Verdict, utcnow,
)
from agenteval.store import MIGRATIONS, Store, sql_type


def trial(run_id: str = "r1", key: str = "t/v/oracle/0", passed: bool = True) -> TrialRecord:
    now = utcnow()
    verdict = Verdict.from_checks([Check(name="a", passed=True), Check(name="b", passed=passed, message="<b>")])
    return TrialRecord(
        trial_id=key.replace("/", "-") + run_id, run_id=run_id, key=key, task="t", task_path="tasks/t",
        task_hash="abc", variant="v", sample=0, model="oracle", passed=passed, score=verdict.score,
        failure_mode=None if passed else FailureMode.verify_failed, started_at=now, finished_at=now,
        duration_s=1.5, verdict=verdict,
        execs=[ExecRecord(phase="agent", user="1000", command="echo hi", exit_code=0, duration_s=0.1, stdout="hi\n"),
               ExecRecord(phase="verify", user="1001", command="python3 verify.py", exit_code=None,
                          duration_s=9.0, timed_out=True)],
        fingerprint=Fingerprint(agenteval_version="0", host="h", platform="p", model="oracle", provider="oracle",
                                model_info={"kind": "x"}),
    )


def run(run_id: str = "r1") -> RunRecord:
    return RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version="0", models=["oracle"], tasks=["t"],
                     samples=1, concurrency=1, config={"task_paths": ["tasks/t"]})


def test_round_trip_is_exact(tmp_path: Path) -> None:
    rec = trial(passed=False)
    with Store(tmp_path / "db.duckdb") as store:
        store.save_run(run())
        store.commit_trial(rec)
        assert store.trials("r1") == [rec]
        assert store.committed_keys("r1") == {rec.key}
        assert store.run("r1").config == {"task_paths": ["tasks/t"]}


def test_child_tables_hold_checks_and_execs(tmp_path: Path) -> None:
    with Store(tmp_path / "db.duckdb") as store:
        store.save_run(run())
        store.commit_trial(trial())
        assert store.con.execute("SELECT count(*) FROM trial_checks").fetchone() == (2,)
        assert store.con.execute("SELECT count(*) FROM trial_execs WHERE timed_out").fetchone() == (1,)
        # the verdict column does not duplicate its checks
        assert "checks" not in store.con.execute("SELECT verdict FROM trials").fetchone()[0]


def test_same_key_twice_in_a_run_is_refused_and_nothing_partial_is_left(tmp_path: Path) -> None:
    with Store(tmp_path / "db.duckdb") as store:
        store.save_run(run())
        store.commit_trial(trial())
        dup = trial().model_copy(update={"trial_id": "other"})
        with pytest.raises(StoreError, match="could not record trial"):
            store.commit_trial(dup)
        assert store.con.execute("SELECT count(*) FROM trial_execs WHERE trial_id = 'other'").fetchone() == (0,)
        assert len(store.trials("r1")) == 1


def test_migrations_recorded_once_and_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    with Store(path) as store:
        store.save_run(run())
        store.commit_trial(trial())
    with Store(path) as store:
        versions = store.con.execute("SELECT version FROM schema_migrations").fetchall()
        assert [v[0] for v in versions] == [m[0] for m in MIGRATIONS]
        assert len(store.trials("r1")) == 1


def test_new_record_field_becomes_a_column(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    with Store(path):
        pass
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE runs DROP COLUMN concurrency")
    con.close()
    with Store(path) as store:
        cols = {r[0] for r in store.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
        assert "concurrency" in cols


def test_read_only_missing_db_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such database"):
        Store(tmp_path / "none.duckdb", read_only=True)


def test_unknown_run(tmp_path: Path) -> None:
    with Store(tmp_path / "db.duckdb") as store, pytest.raises(StoreError, match="no run 'x'"):
        store.run("x")


def test_sql_types_follow_annotations() -> None:
    assert sql_type(int) == "BIGINT"
    assert sql_type(float | None) == "DOUBLE"
    assert sql_type(FailureMode | None) == "VARCHAR"
    assert sql_type(list[str]) == "JSON"
