"""DuckDB as the source of truth. Tables derive from the record models;
migrations are numbered functions recorded in ``schema_migrations``; each
trial is committed in one transaction. Only the runner's process writes.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from agenteval.errors import StoreError
from agenteval.records import Check, ExecRecord, ModelCall, RunRecord, TrialRecord, utcnow

DEFAULT_DB = Path("reports") / "agenteval.duckdb"


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
)
_TRIALS = TABLES[1]


def sql_type(annotation: Any) -> str:
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


def _create_tables(con: Any) -> None:
    for table in TABLES:
        cols = columns(table.model, table.own_fields())
        ddl = ", ".join(f'"{c}" {t}' for c, t in cols.items())
        con.execute(f'CREATE TABLE IF NOT EXISTS {table.name} ({ddl}, PRIMARY KEY ({", ".join(table.key)}))')
        for child in table.children:
            ddl = ", ".join(f'"{c}" {t}' for c, t in _child_columns(child).items())
            con.execute(f"CREATE TABLE IF NOT EXISTS {child.table} ({ddl}, PRIMARY KEY (trial_id, idx))")
    con.execute("CREATE UNIQUE INDEX IF NOT EXISTS trials_run_key ON trials (run_id, key)")


MIGRATIONS: list[tuple[int, str, Callable[[Any], None]]] = [
    (1, "tables derived from the record models", _create_tables),
]


class Store:
    """One DuckDB file. Open it with a ``with`` block; the runner holds it for a run."""

    def __init__(self, path: str | Path = DEFAULT_DB, read_only: bool = False) -> None:
        import duckdb

        self.path = Path(path)
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no such database (run `agenteval run` first, or pass --db)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as e:
            raise StoreError(f"{self.path}: cannot open ({str(e).splitlines()[0]}); "
                             "is another agenteval run writing it?") from None
        if not read_only:
            self.migrate()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # -- schema ------------------------------------------------------------
    def migrate(self) -> None:
        self.con.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)")
        done = {r[0] for r in self.con.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, name, fn in MIGRATIONS:
            if version in done:
                continue
            self.con.begin()
            fn(self.con)
            self.con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, utcnow()])
            self.con.commit()
        self._add_new_columns()

    def _add_new_columns(self) -> None:
        """Fields added to a record later become nullable columns, with no migration to write."""
        wanted: dict[str, dict[str, str]] = {}
        for table in TABLES:
            wanted[table.name] = columns(table.model, table.own_fields())
            for child in table.children:
                wanted[child.table] = _child_columns(child)
        for name, cols in wanted.items():
            have = {r[0] for r in self.con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [name]).fetchall()}
            for col, typ in cols.items():
                if col not in have:
                    self.con.execute(f'ALTER TABLE {name} ADD COLUMN "{col}" {typ}')

    # -- writes ------------------------------------------------------------
    def save_run(self, run: RunRecord) -> None:
        self.con.begin()
        self.con.execute("DELETE FROM runs WHERE run_id = ?", [run.run_id])
        self._insert(TABLES[0], run.model_dump(mode="json"))
        self.con.commit()

    def finish_run(self, run_id: str, status: str) -> None:
        self.con.execute("UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", [status, utcnow(), run_id])

    def commit_trial(self, record: TrialRecord) -> None:
        """Write a trial and its child rows in one transaction: all of it or none."""
        data = record.model_dump(mode="json")
        child_rows = {child: _pop(data, child.path) for child in _TRIALS.children}
        try:
            self.con.begin()
            self._insert(_TRIALS, data)
            for child, rows in child_rows.items():
                for i, row in enumerate(rows):
                    self._insert_row(child.table, _child_columns(child), {"trial_id": record.trial_id, "idx": i, **row})
            self.con.commit()
        except Exception as e:
            self.con.rollback()
            raise StoreError(f"could not record trial {record.key}: {e}") from e

    def _insert(self, table: Table, data: dict[str, Any]) -> None:
        self._insert_row(table.name, columns(table.model, table.own_fields()), data)

    def _insert_row(self, name: str, cols: dict[str, str], data: dict[str, Any]) -> None:
        values = [json.dumps(data.get(c)) if t == "JSON" else data.get(c) for c, t in cols.items()]
        names = ", ".join(f'"{c}"' for c in cols)
        self.con.execute(f"INSERT INTO {name} ({names}) VALUES ({', '.join('?' * len(cols))})", values)

    # -- reads -------------------------------------------------------------
    def runs(self) -> list[RunRecord]:
        return [RunRecord.model_validate(d) for d in self._select(TABLES[0], "ORDER BY started_at DESC")]

    def run(self, run_id: str) -> RunRecord:
        rows = self._select(TABLES[0], "WHERE run_id = ?", [run_id])
        if not rows:
            raise StoreError(f"{self.path}: no run {run_id!r} (see `agenteval runs`)")
        return RunRecord.model_validate(rows[0])

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
        trials = self._select(_TRIALS, "WHERE run_id = ? ORDER BY task, variant, model, sample", [run_id])
        by_id = {t["trial_id"]: t for t in trials}
        for child in _TRIALS.children:
            cols = _child_columns(child)
            sql = (f"SELECT c.* FROM {child.table} c JOIN trials t USING (trial_id) "
                   "WHERE t.run_id = ? ORDER BY c.trial_id, c.idx")
            for row in self._rows(sql, [run_id], cols):
                holder: Any = by_id[row.pop("trial_id")]
                row.pop("idx")
                for part in child.path[:-1]:
                    holder = holder.get(part) if isinstance(holder, dict) else None
                if isinstance(holder, dict):
                    holder.setdefault(child.path[-1], []).append(row)
        return [TrialRecord.model_validate(t) for t in trials]

    def _select(self, table: Table, where: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cols = columns(table.model, table.own_fields())
        names = ", ".join(f'"{c}"' for c in cols)
        return self._rows(f"SELECT {names} FROM {table.name} {where}", params or [], cols)

    def _rows(self, sql: str, params: list[Any], cols: dict[str, str]) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params)
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(names, row))
            for c, t in cols.items():
                if t == "JSON" and isinstance(d.get(c), str):
                    d[c] = json.loads(d[c])
            out.append(d)
        return out


def _pop(data: dict[str, Any], path: tuple[str, ...]) -> list[dict[str, Any]]:
    """Take a child list out of a dumped record (it is stored in its own table)."""
    holder: Any = data
    for part in path[:-1]:
        holder = holder.get(part) if isinstance(holder, dict) else None
    if not isinstance(holder, dict):
        return []
    return list(holder.pop(path[-1], None) or [])
