"""DuckDB as the source of truth. Column names and types derive from the record
models; the tables themselves come from the numbered, frozen migrations in
``agenteval.migrations``, recorded in ``schema_migrations``. Each trial is committed
in one transaction. Only the runner's process writes; a read-only open never does.
"""

from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TypeAlias, TypeVar, overload

from pydantic import BaseModel

from agenteval.errors import StoreError, UnknownRecordError
from agenteval.migrations import (
    MIGRATIONS, VIEWS, NewerSchemaError, OutdatedSchemaError, applied, migrate, read_through, refuse_newer,
)
from agenteval.paths import DEFAULT_DB
from agenteval.processes import owner_gone
from agenteval.records import (Check, ExecRecord, ModelCall, RungRecord, RunRecord, RunStatus, ServingRecord,
                               TrialRecord, pass_rate, utcnow)

if TYPE_CHECKING:
    import duckdb
    import pyarrow

__all__ = ["MIGRATIONS", "VIEWS", "NewerSchemaError", "OutdatedSchemaError", "RunSummary", "Store",
           "StoredRow", "sql_type", "valid_text"]


# What a column holds once read back: scalars, and JSON columns parsed into lists and dicts.
Scalar: TypeAlias = "str | int | float | bool | datetime | None"
StoredValue: TypeAlias = "Scalar | list[StoredValue] | dict[str, StoredValue]"
StoredRow: TypeAlias = "dict[str, StoredValue]"
Column: TypeAlias = "list[Scalar]"  # one column's values, on their way into DuckDB
_T = TypeVar("_T")


@dataclass(frozen=True)
class Child:
    """A list inside a record stored as rows of its own table."""

    table: str
    model: type[BaseModel]
    path: tuple[str, ...]  # where the list sits in the parent's dump


@dataclass(frozen=True)
class Table:
    name: str
    model: type[BaseModel]
    key: tuple[str, ...]
    children: tuple[Child, ...] = ()

    def own_fields(self) -> list[str]:
        skip = {c.path[0] for c in self.children if len(c.path) == 1}
        return [f for f in self.model.model_fields if f not in skip]


TABLES = (
    Table("runs", RunRecord, key=("run_id",)),
    Table("trials", TrialRecord, key=("trial_id",), children=(
        Child("trial_execs", ExecRecord, ("execs",)),
        Child("trial_checks", Check, ("verdict", "checks")),
        Child("trial_model_calls", ModelCall, ("model_calls",)),
    )),
    Table("servings", ServingRecord, key=("run_id", "model", "started_at")),
    Table("ladder_rungs", RungRecord, key=("run_id", "model")),
)
_TRIALS = TABLES[1]
_SERVINGS, _RUNGS = TABLES[2], TABLES[3]
_SURROGATE = re.compile("[\ud800-\udfff]")
_ARROW_TYPES = {"BOOLEAN": "bool_", "BIGINT": "int64", "INTEGER": "int32", "DOUBLE": "float64"}


def sql_type(annotation: object) -> str:
    """DuckDB type of a field annotation; anything nested is JSON."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return sql_type(args[0]) if len(args) == 1 else "JSON"
    if annotation is bool:
        return "BOOLEAN"
    if annotation is int:
        return "BIGINT"
    if annotation is float:
        return "DOUBLE"
    if annotation is datetime:
        return "TIMESTAMPTZ"
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return "VARCHAR"
    return "JSON"


def columns(model: type[BaseModel], fields: list[str]) -> dict[str, str]:
    return {f: sql_type(model.model_fields[f].annotation) for f in fields}


def _child_columns(child: Child) -> dict[str, str]:
    return {"trial_id": "VARCHAR", "idx": "INTEGER", **columns(child.model, list(child.model.model_fields))}


def shown_status(status: RunStatus, owner: str | None) -> RunStatus:
    """A run's status as a reader shows it: ``abandoned`` where it is stored ``running`` and the
    process that ran it is gone (on this host; another host's is taken at its word)."""
    if status is RunStatus.running and owner and owner_gone(owner):
        return RunStatus.abandoned
    return status


def shown(run: RunRecord) -> RunRecord:
    return run.model_copy(update={"status": shown_status(run.status, run.owner)})


@dataclass(frozen=True)
class RunSummary:
    """One line of `agenteval runs`."""

    run_id: str
    started_at: datetime
    status: RunStatus
    models: list[str]
    tasks: list[str]
    trials: int
    passed: int

    @property
    def pass_rate(self) -> float | None:
        """None for a run with no trials yet (shown as '-', not as 0 %)."""
        return pass_rate(self.passed, self.trials) if self.trials else None


class Store:
    """One DuckDB file. Open it with a ``with`` block; the runner holds it for a run.

    Read-write opens apply the pending migrations. Read-only opens never write: a file
    an older agenteval wrote is shown as the current schema through temporary, in-memory
    tables and views (``migrations.read_through``). A newer agenteval's file is refused."""

    def __init__(self, path: str | Path = DEFAULT_DB, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no such database (run `agenteval run` first, or pass --db)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = self._connect(read_only)
        try:
            done = applied(self.con)
            refuse_newer(self.con, self.path, done)
            pending = [m for m in MIGRATIONS if m.version not in done]
            if not read_only:
                self.migrate()
            elif pending:
                read_through(self.con, self.path, pending, _COLUMNS, _default_sql)
        except BaseException:
            self.con.close()
            raise

    def _connect(self, read_only: bool) -> "duckdb.DuckDBPyConnection":
        import duckdb

        try:
            return duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as e:
            raise StoreError(f"{self.path}: cannot open ({str(e).splitlines()[0]}); "
                             "is another agenteval run writing it?") from None
        except duckdb.Error as e:  # not a DuckDB file, or one of a newer storage format
            raise StoreError(f"{self.path}: cannot open ({str(e).splitlines()[0]})") from None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # -- schema ------------------------------------------------------------
    def migrate(self) -> None:
        """Apply the pending migrations in order, each in one transaction with its ledger row."""
        migrate(self.con, self.path)

    # -- writes ------------------------------------------------------------
    def save_run(self, run: RunRecord) -> None:
        self.con.begin()
        self.con.execute("DELETE FROM runs WHERE run_id = ?", [run.run_id])
        self._append("runs", _values([run], _COLUMNS["runs"]))
        self.con.commit()

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        """End a run: ``completed``, ``interrupted``, or ``failed`` with ``error`` (one line)."""
        self.con.execute("UPDATE runs SET status = ?, finished_at = ?, \"error\" = ? WHERE run_id = ?",
                         [status.value, utcnow(), error, run_id])

    def commit_serving(self, record: ServingRecord) -> None:
        self._append(_SERVINGS.name, _values([record], _COLUMNS[_SERVINGS.name]))

    def save_rung(self, rung: RungRecord) -> None:
        """Record a ladder rung, replacing what an earlier (interrupted) attempt recorded of it."""
        self.con.begin()
        try:
            self.con.execute("DELETE FROM ladder_rungs WHERE run_id = ? AND model = ?", [rung.run_id, rung.model])
            self._append(_RUNGS.name, _values([rung], _COLUMNS[_RUNGS.name]))
            self.con.commit()
        except Exception as e:
            self.con.rollback()
            raise StoreError(f"could not record rung {rung.model}: {str(e).splitlines()[0]}") from e

    def commit_trial(self, record: TrialRecord) -> None:
        """Write a trial and its child rows in one transaction: all of it or none."""
        self.commit_trials([record])

    def commit_trials(self, records: Sequence[TrialRecord]) -> None:
        """Write trials and their child rows in one transaction: all of them or none.

        Values are read straight off the record objects, a column at a time, and
        handed to DuckDB as Arrow tables: a row-by-row INSERT costs about 1 ms a
        row, which a 10,000-trial import cannot afford."""
        if not records:
            return
        try:
            self.con.begin()
            self._append(_TRIALS.name, _values(records, _COLUMNS[_TRIALS.name], _NESTED_CHILDREN))
            for child in _TRIALS.children:
                owners: Column = []
                index: Column = []
                items: list[BaseModel] = []
                for record in records:
                    for i, item in enumerate(_children(record, child.path)):
                        owners.append(record.trial_id)
                        index.append(i)
                        items.append(item)
                cols = _COLUMNS[child.table]
                self._append(child.table, {"trial_id": owners, "idx": index,
                                           **_values(items, {c: t for c, t in cols.items() if c not in ("trial_id", "idx")})})
            self.con.commit()
        except Exception as e:
            self.con.rollback()
            what = f"trial {records[0].key}" if len(records) == 1 else f"{len(records)} trials"
            raise StoreError(f"could not record {what}: {str(e).splitlines()[0]}") from e

    def _append(self, name: str, values: dict[str, Column]) -> None:
        if not next(iter(values.values())):
            return
        table = _arrow_table(_COLUMNS[name], values)
        names = ", ".join(f'"{c}"' for c in values)
        self.con.register("_agenteval_ingest", table)
        try:
            self.con.execute(f"INSERT INTO {name} ({names}) SELECT {names} FROM _agenteval_ingest")
        finally:
            self.con.unregister("_agenteval_ingest")

    # -- reads -------------------------------------------------------------
    def run_summaries(self) -> list["RunSummary"]:
        """Every run with its trial and pass counts, newest first, in one query."""
        rows = self.con.execute(
            "SELECT r.run_id, r.started_at, r.status, r.owner, r.models, r.tasks, count(t.trial_id), "
            "count(t.trial_id) FILTER (WHERE t.passed) FROM runs r LEFT JOIN trials t USING (run_id) "
            "GROUP BY ALL ORDER BY r.started_at DESC").fetchall()
        return [RunSummary(run_id, started, shown_status(RunStatus(status), owner), json.loads(models),
                           json.loads(tasks), n, passed)
                for run_id, started, status, owner, models, tasks, n, passed in rows]

    def latest_run_with(self, model: str) -> str:
        """The newest run that holds trials of ``model``."""
        row = self.con.execute("SELECT r.run_id FROM runs r JOIN trials t USING (run_id) WHERE t.model = ? "
                               "ORDER BY r.started_at DESC LIMIT 1", [model]).fetchone()
        if not row:
            raise UnknownRecordError(f"{self.path}: no run has trials of model {model!r} (see `agenteval runs`)")
        return str(row[0])

    def run(self, run_id: str) -> RunRecord:
        rows = self._select(TABLES[0], "WHERE run_id = ?", [run_id])
        if not rows:
            raise UnknownRecordError(f"{self.path}: no run {run_id!r} (see `agenteval runs`)")
        return shown(RunRecord.model_validate(rows[0]))

    def servings(self, run_id: str) -> list[ServingRecord]:
        """Every time the run served a model (a resumed run serves it again), in order."""
        return [ServingRecord.model_validate(r) for r in self._select(_SERVINGS, "WHERE run_id = ? ORDER BY started_at",
                                                                      [run_id])]

    def rungs(self, run_id: str) -> list[RungRecord]:
        """A ladder run's rungs, the reference first, then by falling bits per weight; none for other runs."""
        return [RungRecord.model_validate(r) for r in self._select(
            _RUNGS, 'WHERE run_id = ? ORDER BY "reference" DESC, bits_per_weight DESC, model', [run_id])]

    def latest_run_id(self) -> str:
        row = self.con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        if not row:
            raise StoreError(f"{self.path}: holds no runs yet")
        return str(row[0])

    def forget_trials(self, run_id: str, failure_mode: str) -> int:
        """Delete a run's trials of one failure mode (and their rows), so they run again."""
        ids = [r[0] for r in self.con.execute("SELECT trial_id FROM trials WHERE run_id = ? AND failure_mode = ?",
                                              [run_id, failure_mode]).fetchall()]
        if not ids:
            return 0
        self.con.begin()
        for table in TABLES[1:]:
            for child in table.children:
                self.con.execute(f"DELETE FROM {child.table} WHERE trial_id IN (SELECT unnest(?))", [ids])
        self.con.execute("DELETE FROM trials WHERE trial_id IN (SELECT unnest(?))", [ids])
        self.con.commit()
        return len(ids)

    def committed_keys(self, run_id: str) -> set[str]:
        return {r[0] for r in self.con.execute("SELECT key FROM trials WHERE run_id = ?", [run_id]).fetchall()}

    def trials(self, run_id: str) -> list[TrialRecord]:
        return [TrialRecord.model_validate(d) for d in self.trial_rows(self.trial_ids(run_id))]

    def trial_ids(self, run_id: str) -> list[str]:
        """A run's trials in report order: task, variant, model, sample."""
        return [r[0] for r in self.con.execute(
            "SELECT trial_id FROM trials WHERE run_id = ? ORDER BY task, variant, model, sample", [run_id]).fetchall()]

    def trial_rows(self, trial_ids: Sequence[str]) -> list[StoredRow]:
        """Whole trials as plain dicts shaped like ``TrialRecord`` dumps, in the order given."""
        trials = self._select(_TRIALS, "WHERE trial_id IN (SELECT unnest(?))", [list(trial_ids)])
        by_id = {str(t["trial_id"]): t for t in trials}
        for child in _TRIALS.children:
            sql = f"SELECT * FROM {child.table} WHERE trial_id IN (SELECT unnest(?)) ORDER BY trial_id, idx"
            for row in self._rows(sql, [list(trial_ids)], _COLUMNS[child.table]):
                holder: StoredValue = by_id[str(row.pop("trial_id"))]
                row.pop("idx")
                for part in child.path[:-1]:
                    holder = holder.get(part) if isinstance(holder, dict) else None
                if isinstance(holder, dict):
                    items = holder.setdefault(child.path[-1], [])
                    if isinstance(items, list):
                        items.append(row)
        return [by_id[i] for i in trial_ids if i in by_id]

    def _select(self, table: Table, where: str, params: list[object] | None = None) -> list[StoredRow]:
        cols = _COLUMNS[table.name]
        names = ", ".join(f'"{c}"' for c in cols)
        return self._rows(f"SELECT {names} FROM {table.name} {where}", params or [], cols)

    def _rows(self, sql: str, params: list[object], cols: dict[str, str]) -> list[StoredRow]:
        cur = self.con.execute(sql, params)
        names = [d[0] for d in cur.description]
        nested = [c for c in names if cols.get(c) == "JSON"]
        out: list[StoredRow] = []
        for row in cur.fetchall():
            d: StoredRow = dict(zip(names, row))
            for c in nested:
                text = d[c]
                if isinstance(text, str):
                    d[c] = json.loads(text)
            out.append(d)
        return out


def _table_columns() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for table in TABLES:
        out[table.name] = columns(table.model, table.own_fields())
        for child in table.children:
            out[child.table] = _child_columns(child)
    return out


_COLUMNS = _table_columns()


# a field that holds a child list keeps the rest of its value: trials.verdict without its checks
_NESTED_CHILDREN = {c.path[0]: {c.path[1]} for c in _TRIALS.children if len(c.path) == 2}


def _children(record: BaseModel, path: tuple[str, ...]) -> list[BaseModel]:
    holder: object = record
    for part in path:
        holder = getattr(holder, part, None)
        if holder is None:
            return []
    return list(typing.cast("list[BaseModel]", holder))


def _values(objs: Sequence[BaseModel], cols: dict[str, str],
            exclude: dict[str, set[str]] | None = None) -> dict[str, Column]:
    """Column name -> the values of that field across ``objs``, nested ones as JSON text."""
    out: dict[str, Column] = {}
    fields = [o.__dict__ for o in objs]  # pydantic keeps field values here; getattr is slower
    for col, typ in cols.items():
        values: Column = [f[col] for f in fields]
        if typ == "JSON":
            skip = (exclude or {}).get(col)
            values = [None if v is None else _json_text(v, skip) for v in values]
        elif typ == "VARCHAR":
            values = [v.value if isinstance(v, Enum) else v for v in values]
        out[col] = values
    return out


def _json_text(value: object, exclude: set[str] | None = None) -> str:
    import pydantic_core

    try:
        if isinstance(value, BaseModel):
            return value.model_dump_json(exclude=exclude)
        return pydantic_core.to_json(value).decode("utf-8")
    except (UnicodeError, ValueError):
        # lone surrogates (broken UTF-8 from a model or a process), which JSON cannot hold: U+FFFD
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="python", exclude=exclude)
        return json.dumps(_valid_nested(pydantic_core.to_jsonable_python(value, fallback=repr)))


def _arrow_table(types: dict[str, str], values: dict[str, Column]) -> "pyarrow.Table":
    import pyarrow as pa

    arrays = []
    for col, vals in values.items():
        typ = types[col]
        arrow_type = pa.timestamp("us", tz="UTC") if typ == "TIMESTAMPTZ" else \
            getattr(pa, _ARROW_TYPES.get(typ, "string"))()
        try:
            arrays.append(pa.array(vals, type=arrow_type))
        except (UnicodeError, pa.ArrowException):
            arrays.append(pa.array([valid_text(v) for v in vals], type=arrow_type))
    return pa.table(arrays, names=list(values))


def _valid_nested(value: object) -> object:
    if isinstance(value, dict):
        return {valid_text(k): _valid_nested(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_nested(v) for v in value]
    return valid_text(value)


@overload
def valid_text(value: str) -> str: ...
@overload
def valid_text(value: _T) -> _T: ...
def valid_text(value: object) -> object:
    """Text that UTF-8 can hold: lone surrogates become U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    return value


_MODELS: dict[str, type[BaseModel]] = {t.name: t.model for t in TABLES} | \
    {c.table: c.model for t in TABLES for c in t.children}


def _default_sql(table: str, column: str, typ: str) -> str | None:
    """What a column holds where a row has no value, as SQL: its field's default, for a field
    that cannot be None (rows written before the column existed; migrations fill the same)."""
    field = _MODELS[table].model_fields.get(column)
    if field is None or field.is_required() or _nullable(field.annotation) or typ == "TIMESTAMPTZ":
        return None  # a "now" default would invent a time
    value = field.get_default(call_default_factory=True)
    text = _json_text(value) if typ == "JSON" else str(value.value if isinstance(value, Enum) else value)
    return f"CAST('{text.replace(chr(39), chr(39) * 2)}' AS {typ})"


def _nullable(annotation: object) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and \
        type(None) in typing.get_args(annotation)
