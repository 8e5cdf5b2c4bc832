"""Every released schema still opens: read-only without a byte written, read-write through
the numbered migrations. The released schemas are frozen in tests/fixtures/schemas."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from agenteval import cli as cli_module
from agenteval import migrations
from agenteval.cli import app
from agenteval.errors import StoreError
from agenteval.export import export_runs, read_jsonl
from agenteval.migrations import LATEST, MIGRATIONS, Migration
from agenteval.records import SCHEMA_VERSION, TrialRecord
from agenteval.store import _COLUMNS, NewerSchemaError, OutdatedSchemaError, Store

SCHEMAS = Path(__file__).parents[1] / "fixtures" / "schemas"
RELEASED = sorted(SCHEMAS.glob("*.sql"))
LATEST_RELEASE = SCHEMAS / "45de63c.sql"
RECORD_VERSION = {"7e17bc0": 2, "cc06a2b": 2, "45de63c": 2}  # the records' schema_version each release wrote (1 where not named)
_DUCKDB_NAMES = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}


def from_fixture(fixture: Path, path: Path) -> Path:
    """A DuckDB file exactly as that release left it: its DDL, ledger and rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute(fixture.read_text(encoding="utf-8"))
    con.close()
    return path


def run_id(fixture: Path) -> str:
    return "run-" + fixture.stem.split("-")[0]


def files(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` with its content hash and mtime: what a reader must not change."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def ddl(path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [sql for (sql,) in con.execute(
            "SELECT sql FROM duckdb_tables() WHERE table_name <> 'schema_migrations' UNION ALL "
            "SELECT sql FROM duckdb_indexes() UNION ALL "
            "SELECT sql FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
    finally:
        con.close()


def table_columns(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for table, column, typ in con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() JOIN duckdb_tables() "
            "USING (database_name, schema_name, table_name) WHERE database_name = current_database() "
            "AND table_name <> 'schema_migrations' ORDER BY column_index").fetchall():
        out.setdefault(table, {})[column] = typ
    return out


def expected_columns() -> dict[str, dict[str, str]]:
    return {t: {c: _DUCKDB_NAMES.get(typ, typ) for c, typ in cols.items()} for t, cols in _COLUMNS.items()}


# -- the migrations themselves ---------------------------------------------------------
def test_migrations_are_numbered_one_by_one_and_fixed_text() -> None:
    assert len(MIGRATIONS) == LATEST and [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    assert all(isinstance(s, str) and s.strip() for m in MIGRATIONS for s in m.statements)


def test_a_new_file_has_exactly_the_schema_of_the_latest_release(tmp_path: Path) -> None:
    with Store(tmp_path / "new.duckdb"):
        pass
    assert ddl(tmp_path / "new.duckdb") == ddl(from_fixture(LATEST_RELEASE, tmp_path / "released.duckdb"))


def test_migrations_make_the_tables_the_record_models_describe(tmp_path: Path) -> None:
    """A new record field comes with a new numbered migration; this says which DDL to add."""
    with Store(tmp_path / "db.duckdb") as store:
        have = table_columns(store.con)
        for view in migrations.VIEWS:
            store.con.execute(f"SELECT * FROM {view} LIMIT 0")
    want = expected_columns()
    todo = [f"ALTER TABLE {t} ADD COLUMN \"{c}\" {_COLUMNS[t][c]}" for t, cols in want.items() for c in cols
            if c not in have.get(t, {})]
    assert not todo, f"record fields without a column: add Migration({LATEST + 1}, ...) with {todo}"
    assert have == want


# -- every released schema -----------------------------------------------------------
@pytest.mark.parametrize("fixture", RELEASED, ids=lambda p: p.stem)
def test_read_only_open_reads_everything_and_writes_nothing(fixture: Path, tmp_path: Path) -> None:
    db = from_fixture(fixture, tmp_path / "db" / "agenteval.duckdb")
    before = files(db.parent)
    with Store(db, read_only=True) as store:
        assert store.read_only
        [summary] = store.run_summaries()
        got = (summary.run_id, summary.status, summary.trials, summary.passed)
        assert got == (run_id(fixture), "interrupted", 3, 1)
        trials = {t.key: t for t in store.trials(run_id(fixture))}
        assert set(trials) == {"short/default/oracle/0", "short/default/nop/0", "short/default/nop/1"}
        nop = trials["short/default/nop/1"]
        assert nop.verdict is not None and [c.passed for c in nop.verdict.checks] == [True, False]
        assert [e.command for e in nop.execs] == ["sh solve.sh", "python3 verify.py"]
        assert store.latest_run_with("nop") == run_id(fixture)
        totals = store.con.execute("SELECT count(*), count(*) FILTER (WHERE passed) FROM trial_totals").fetchall()
        assert totals == [(3, 1)]
        export_runs(store, [run_id(fixture)], "parquet", tmp_path / "parquet")
        export_runs(store, [run_id(fixture)], "jsonl", tmp_path / "trials.jsonl")
    assert files(db.parent) == before
    assert len(list(read_jsonl(tmp_path / "trials.jsonl"))) == 3
    assert (tmp_path / "parquet" / "call_telemetry.parquet").is_file()


@pytest.mark.parametrize("fixture", RELEASED, ids=lambda p: p.stem)
def test_read_write_open_migrates_through_the_ledger_to_what_a_reader_saw(fixture: Path, tmp_path: Path) -> None:
    with Store(from_fixture(fixture, tmp_path / "ro.duckdb"), read_only=True) as store:
        seen = store.trials(run_id(fixture))
        seen_run = store.run(run_id(fixture))
    db = from_fixture(fixture, tmp_path / "rw.duckdb")
    with Store(db) as store:
        ledger = store.con.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert [v for v, _ in ledger] == [m.version for m in MIGRATIONS]
        assert {t: set(cols.items()) for t, cols in table_columns(store.con).items()} == \
            {t: set(cols.items()) for t, cols in expected_columns().items()}
        assert store.trials(run_id(fixture)) == seen and store.run(run_id(fixture)) == seen_run
        assert len(seen) == 3 and all(t.transcript is not None for t in seen)  # each release's fixture has three
    with Store(db) as store:  # a second open finds nothing to do
        assert store.con.execute("SELECT count(*) FROM schema_migrations").fetchone() == (LATEST,)
    before = files(tmp_path)
    with Store(db, read_only=True) as store:
        assert len(store.trials(run_id(fixture))) == 3
    assert files(tmp_path) == before


@pytest.mark.parametrize("fixture", RELEASED, ids=lambda p: p.stem)
def test_read_only_commands_on_every_released_schema(fixture: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_module.console, "width", 200)
    db = from_fixture(fixture, tmp_path / "db" / "agenteval.duckdb")
    before = files(db.parent)
    cli = CliRunner()

    def agenteval(*args: str) -> str:
        result = cli.invoke(app, [*args, "--db", str(db)])
        assert result.exit_code == 0, result.output
        return result.output

    assert run_id(fixture) in agenteval("runs")
    agenteval("report", "--out", "site")
    assert run_id(fixture) in (tmp_path / "site" / "index.html").read_text()
    lines = [json.loads(ln) for ln in agenteval("export", "--format", "jsonl").splitlines() if ln.startswith("{")]
    assert len(lines) == 3 and {ln["schema_version"] for ln in lines} == {RECORD_VERSION.get(fixture.stem, 1)}
    agenteval("export", "--format", "parquet", "--out", "pq")
    assert (tmp_path / "pq" / "trials.parquet").is_file()
    assert "paired trials" in agenteval("compare", "oracle", "nop", "--out", "cmp")
    assert files(db.parent) == before


# -- what this agenteval cannot read -----------------------------------------------------
def newer_file(path: Path, how: str) -> Path:
    with Store(path) as store:
        if how == "ledger":
            store.con.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', now())", [LATEST + 1])
        else:
            store.con.execute(f"INSERT INTO runs (schema_version, run_id) VALUES ({SCHEMA_VERSION + 1}, 'future')")
    return path


@pytest.mark.parametrize("how", ["ledger", "record"])
@pytest.mark.parametrize("read_only", [True, False])
def test_a_newer_agentevals_file_is_one_line_and_left_alone(tmp_path: Path, how: str, read_only: bool) -> None:
    db = newer_file(tmp_path / "db.duckdb", how)
    before = files(tmp_path)
    with pytest.raises(NewerSchemaError, match="newer") as err:
        Store(db, read_only=read_only)
    assert "\n" not in str(err.value) and "upgrade agenteval" in str(err.value)
    assert files(tmp_path) == before


def test_a_newer_file_through_the_cli_is_one_line_exit_1(tmp_path: Path) -> None:
    db = newer_file(tmp_path / "db.duckdb", "ledger")
    result = CliRunner().invoke(app, ["runs", "--db", str(db)])
    assert result.exit_code == 1
    assert result.output.startswith("error:") and "newer agenteval" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_older_file_a_reader_cannot_see_through_says_how_to_migrate(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    db = from_fixture(LATEST_RELEASE, tmp_path / "db.duckdb")
    rename = Migration(LATEST + 1, "a change a reader cannot see through", ("CREATE TABLE notes (note VARCHAR)",),
                       read_through=False)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, rename))
    monkeypatch.setattr(migrations, "LATEST", LATEST + 1)
    monkeypatch.setattr("agenteval.store.MIGRATIONS", (*MIGRATIONS, rename))
    before = files(tmp_path)
    with pytest.raises(OutdatedSchemaError, match="open.* read-write") as err:
        Store(db, read_only=True)
    assert "\n" not in str(err.value)
    assert files(tmp_path) == before
    with Store(db) as store:
        assert store.con.execute("SELECT max(version) FROM schema_migrations").fetchone() == (LATEST + 1,)
    with Store(db, read_only=True) as store:
        assert len(store.trials(run_id(LATEST_RELEASE))) == 3


def test_a_failing_migration_is_a_store_error_and_leaves_the_ledger(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    db = from_fixture(LATEST_RELEASE, tmp_path / "db.duckdb")
    broken = Migration(LATEST + 1, "broken", ("ALTER TABLE trials ADD COLUMN extra INTEGER", "SELECT nope"))
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(migrations, "LATEST", LATEST + 1)
    with pytest.raises(StoreError, match=f"migration {LATEST + 1} \\(broken\\) failed"):
        Store(db)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT max(version) FROM schema_migrations").fetchone() == (LATEST,)
    assert "extra" not in table_columns(con)["trials"]
    con.close()


# -- JSON Lines ----------------------------------------------------------------------
def test_jsonl_reader_checks_schema_version(tmp_path: Path) -> None:
    from agenteval.errors import BadInputError
    from tests.unit.test_store import trial

    line = trial().model_dump_json()
    (tmp_path / "ok.jsonl").write_text(line + "\n\n" + line + "\n")
    assert [r.schema_version for r in read_jsonl(tmp_path / "ok.jsonl")] == [SCHEMA_VERSION, SCHEMA_VERSION]
    newer = json.dumps({**json.loads(line), "schema_version": SCHEMA_VERSION + 1})
    (tmp_path / "new.jsonl").write_text(line + "\n" + newer + "\n")
    with pytest.raises(NewerSchemaError, match="new.jsonl:2: .*newer agenteval") as err:
        list(read_jsonl(tmp_path / "new.jsonl"))
    assert "\n" not in str(err.value)
    (tmp_path / "none.jsonl").write_text(json.dumps({"trial_id": "x"}) + "\n")
    with pytest.raises(BadInputError, match="no schema_version"):
        list(read_jsonl(tmp_path / "none.jsonl"))
    with pytest.raises(BadInputError, match="cannot read"):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    assert isinstance(next(read_jsonl(tmp_path / "ok.jsonl")), TrialRecord)
