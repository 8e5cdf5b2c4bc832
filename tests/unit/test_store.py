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


def test_a_column_dropped_outside_the_ledger_is_not_put_back_behind_its_back(tmp_path: Path) -> None:
    """Tables change only through numbered migrations (test_schema_history checks that they
    make the tables the records describe); no open alters a table the ledger knows nothing of."""
    path = tmp_path / "db.duckdb"
    with Store(path):
        pass
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE runs DROP COLUMN concurrency")
    con.close()
    with Store(path) as store:
        cols = {r[0] for r in store.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
        assert "concurrency" not in cols
        assert [v for (v,) in store.con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()] \
            == [m.version for m in MIGRATIONS]


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


def _with_calls(key: str, passed: bool, tokens: tuple[int, int]) -> TrialRecord:
    from agenteval.records import ModelCall

    calls = [ModelCall(index=i, prompt_tokens=p, completion_tokens=c, decode_tokens_per_s=10.0 * (i + 1), ttft_s=0.5)
             for i, (p, c) in enumerate([tokens, tokens])]
    return trial(key=key, passed=passed).model_copy(update={"model_calls": calls})


def test_commit_trials_is_one_transaction(tmp_path: Path) -> None:
    with Store(tmp_path / "db.duckdb") as store:
        store.save_run(run())
        good = trial(key="t/v/oracle/0")
        clash = trial(key="t/v/oracle/0").model_copy(update={"trial_id": "other"})
        with pytest.raises(StoreError, match="could not record 2 trials"):
            store.commit_trials([good, clash])
        assert store.con.execute("SELECT count(*) FROM trials").fetchall() == [(0,)]
        assert store.con.execute("SELECT count(*) FROM trial_execs").fetchall() == [(0,)]
        store.commit_trials([good, trial(key="t/v/oracle/1")])
        assert store.committed_keys("r1") == {"t/v/oracle/0", "t/v/oracle/1"}


def test_views_total_each_trials_calls(tmp_path: Path) -> None:
    with Store(tmp_path / "db.duckdb") as store:
        store.save_run(run())
        store.commit_trials([_with_calls("t/v/oracle/0", True, (100, 20)), trial(key="t/v/oracle/1")])
        rows = store.con.execute("SELECT key, calls, prompt_tokens, completion_tokens, total_tokens "
                                 "FROM trial_totals ORDER BY key").fetchall()
        assert rows == [("t/v/oracle/0", 2, 200, 40, 240), ("t/v/oracle/1", 0, None, None, None)]
        assert store.con.execute("SELECT count(*), max(decode_tokens_per_s), any_value(run_id) "
                                 "FROM call_telemetry").fetchall() == [(2, 20.0, "r1")]


def test_run_summaries_count_in_one_query(tmp_path: Path) -> None:
    with Store(tmp_path / "db.duckdb") as store:
        store.save_run(run("r1"))
        store.save_run(run("r2"))
        store.commit_trials([trial("r1", "t/v/oracle/0"), trial("r1", "t/v/oracle/1", passed=False)])
        got = {s.run_id: (s.trials, s.passed, s.pass_rate, s.models) for s in store.run_summaries()}
        assert got == {"r1": (2, 1, 0.5, ["oracle"]), "r2": (0, 0, None, ["oracle"])}
        assert store.latest_run_with("oracle") == "r1"
        with pytest.raises(StoreError, match="no run has trials of model 'x'"):
            store.latest_run_with("x")


def test_broken_utf8_is_stored_not_lost(tmp_path: Path) -> None:
    """A lone surrogate (what broken UTF-8 decodes to) must not cost the trial."""
    rec = trial(passed=False).model_copy(update={
        "error": "bad \ud800 byte", "transcript": [{"role": "assistant", "content": "x\udcff"}]})
    rec.execs[0].stdout = "out \udc80\n"
    with Store(tmp_path / "db.duckdb") as store:
        store.save_run(run())
        store.commit_trial(rec)
        back = store.trials("r1")[0]
    assert back.error is not None and back.error.startswith("bad ") and "byte" in back.error
    assert back.execs[0].stdout.startswith("out ")
    assert back.transcript[0]["content"].startswith("x")


def test_read_only_open_brings_an_old_file_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    with Store(path) as store:
        store.save_run(run())
        store.commit_trial(trial())
    con = duckdb.connect(str(path))  # as agenteval 0.1 left it: migration 1 only
    for view in ("trial_totals", "call_telemetry"):
        con.execute(f"DROP VIEW {view}")
    con.execute("DELETE FROM schema_migrations WHERE version > 1")
    con.close()
    with Store(path, read_only=True) as store:
        assert store.read_only
        assert store.con.execute("SELECT count(*) FROM trial_totals").fetchall() == [(1,)]


def test_a_running_run_whose_process_is_gone_is_shown_abandoned(tmp_path: Path) -> None:
    import subprocess
    import sys

    from agenteval.processes import this_process
    from agenteval.records import RunRecord, RunStatus, utcnow

    child = subprocess.run([sys.executable, "-c", "from agenteval.processes import this_process; "
                            "print(this_process())"], capture_output=True, text=True, check=True)
    gone = child.stdout.strip()
    with Store(tmp_path / "db.duckdb") as store:
        for run_id, owner in (("alive", this_process()), ("gone", gone), ("unknown", None),
                              ("elsewhere", "another-host:1:1")):
            store.save_run(RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version="0", models=[], tasks=[],
                                     samples=1, concurrency=1, owner=owner))
        store.save_run(RunRecord(run_id="ended", started_at=utcnow(), agenteval_version="0", models=[], tasks=[],
                                 samples=1, concurrency=1, owner=gone, status=RunStatus.completed))
        shown = {s.run_id: s.status for s in store.run_summaries()}
        assert shown == {"alive": RunStatus.running, "gone": RunStatus.abandoned, "unknown": RunStatus.running,
                         "elsewhere": RunStatus.running, "ended": RunStatus.completed}
        assert store.run("gone").status is RunStatus.abandoned and store.run("alive").status is RunStatus.running
        # readers never write: the row still says running
        assert store.con.execute("SELECT status FROM runs WHERE run_id = 'gone'").fetchone() == ("running",)


def test_a_pid_given_to_another_process_is_not_the_owner() -> None:
    import os
    import socket

    from agenteval.processes import owner_gone, this_process

    assert owner_gone(this_process()) is False
    assert owner_gone(f"{socket.gethostname()}:{os.getpid()}:1") is True  # same pid, another start time
    assert owner_gone(f"{socket.gethostname()}:{os.getpid()}") is False  # no start time: the pid decides
    assert owner_gone("another-host:1:1") is None and owner_gone("not an owner") is None
