"""The store's schema history: numbered migrations of fixed DDL, each written once.

A migration is never edited after it lands, because files in the wild were
migrated by it. A new record field comes with a new migration appended here
(``ALTER TABLE trials ADD COLUMN ...``, filling old rows with the field's
default); ``tests/unit/test_schema_history.py`` fails, naming the column and
the DDL to add, until the migrations produce the tables the record models
describe. Every released schema is kept in ``tests/fixtures/schemas``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

from agenteval.errors import StoreError
from agenteval.records import SCHEMA_VERSION, utcnow

if TYPE_CHECKING:
    import duckdb


class NewerSchemaError(StoreError):
    """The file, or a record in it, was written by a newer agenteval than this one. Exit code 1."""


class OutdatedSchemaError(StoreError):
    """A read-only open of an older file that cannot be shown without migrating it. Exit code 1."""


class Migration(NamedTuple):
    version: int
    name: str
    statements: tuple[str, ...]
    # A reader can show a file lacking this migration as if it had it, in memory, without
    # writing: true for migrations that only add tables, columns, indexes and views.
    read_through: bool = True


# -- 1: as agenteval 47a050b..74755d2 created it -------------------------------------
# Until the migrations were frozen, 1 meant "the tables today's record models describe":
# agenteval 55fc516 recorded it without trial_model_calls and trials.transcript.
# Migration 2 adds those where they are missing.
_MODEL_CALLS = (
    '(trial_id VARCHAR, idx INTEGER, "index" BIGINT, model VARCHAR, started_at TIMESTAMPTZ, '
    "prompt_tokens BIGINT, completion_tokens BIGINT, reasoning_tokens BIGINT, tokens_estimated BOOLEAN, "
    "ttft_s DOUBLE, ttfat_s DOUBLE, decode_s DOUBLE, decode_tokens_per_s DOUBLE, e2e_s DOUBLE, "
    'finish_reason VARCHAR, concurrency BIGINT, retries BIGINT, server_timings JSON, "error" VARCHAR, '
    "error_kind VARCHAR, PRIMARY KEY(trial_id, idx))")
_M1 = (
    "CREATE TABLE runs(schema_version BIGINT, run_id VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, "
    "status VARCHAR, agenteval_version VARCHAR, models JSON, tasks JSON, samples BIGINT, concurrency BIGINT, "
    "config JSON, PRIMARY KEY(run_id))",
    'CREATE TABLE trials(schema_version BIGINT, trial_id VARCHAR, run_id VARCHAR, "key" VARCHAR, task VARCHAR, '
    'task_path VARCHAR, task_hash VARCHAR, variant VARCHAR, "sample" BIGINT, model VARCHAR, passed BOOLEAN, '
    'score DOUBLE, failure_mode VARCHAR, "error" VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, '
    "duration_s DOUBLE, setup_s DOUBLE, agent_s DOUBLE, verify_s DOUBLE, teardown_s DOUBLE, verdict JSON, "
    "transcript JSON, artifacts JSON, fingerprint JSON, PRIMARY KEY(trial_id))",
    'CREATE TABLE trial_execs(trial_id VARCHAR, idx INTEGER, phase VARCHAR, "user" VARCHAR, command VARCHAR, '
    'exit_code BIGINT, duration_s DOUBLE, timed_out BOOLEAN, oom_killed BOOLEAN, "stdout" VARCHAR, '
    "stderr VARCHAR, stdout_bytes BIGINT, stderr_bytes BIGINT, truncated BOOLEAN, PRIMARY KEY(trial_id, idx))",
    'CREATE TABLE trial_checks(trial_id VARCHAR, idx INTEGER, "name" VARCHAR, passed BOOLEAN, message VARCHAR, '
    "weight DOUBLE, PRIMARY KEY(trial_id, idx))",
    f"CREATE TABLE trial_model_calls{_MODEL_CALLS}",
    'CREATE UNIQUE INDEX trials_run_key ON trials(run_id, "key")',
)

# -- 2: report views (agenteval 95d4d58) ---------------------------------------------
# What the report and notebooks ask most: one row per trial with its model-call totals,
# and every call with the trial's run, model and task beside it.
_TRIAL_TOTALS_2 = """
    SELECT t.trial_id, t.run_id, t.key, t.model, t.task, t.variant, t.sample, t.passed, t.score,
           t.failure_mode, t.error, t.duration_s, t.agent_s, t.started_at,
           count(c.idx) AS calls,
           sum(c.prompt_tokens) AS prompt_tokens,
           sum(c.completion_tokens) AS completion_tokens,
           sum(c.reasoning_tokens) AS reasoning_tokens,
           CASE WHEN count(c.idx) = 0 THEN NULL
                ELSE coalesce(sum(c.prompt_tokens), 0) + coalesce(sum(c.completion_tokens), 0) END AS total_tokens,
           coalesce(bool_or(c.tokens_estimated), false) AS tokens_estimated,
           sum(c.e2e_s) AS model_time_s
    FROM trials t LEFT JOIN trial_model_calls c USING (trial_id)
    GROUP BY ALL"""
_CALL_TELEMETRY_2 = """
    SELECT t.run_id, t.model, t.task, t.variant, t.passed AS trial_passed, c.model AS call_model,
           c.* EXCLUDE (model)
    FROM trial_model_calls c JOIN trials t USING (trial_id)"""
_M2 = (
    # a 55fc516 file (ledger 1) lacks these two; one that a later release half-upgraded has a NULL transcript
    f"CREATE TABLE IF NOT EXISTS trial_model_calls{_MODEL_CALLS}",
    "ALTER TABLE trials ADD COLUMN IF NOT EXISTS transcript JSON",
    "UPDATE trials SET transcript = '[]' WHERE transcript IS NULL",
    "CREATE INDEX IF NOT EXISTS trials_run ON trials(run_id)",
    f"CREATE OR REPLACE VIEW trial_totals AS {_TRIAL_TOTALS_2}",
    f"CREATE OR REPLACE VIEW call_telemetry AS {_CALL_TELEMETRY_2}",
)

# -- 3: what the agent did (records schema 2) -----------------------------------------
# Older trials keep NULL: how their agent ended was not recorded.
# total_tokens is NULL (unknown) when no call of the trial reported a count, not 0.
_TRIAL_TOTALS_3 = """
    SELECT t.trial_id, t.run_id, t.key, t.model, t.task, t.variant, t.sample, t.passed, t.score,
           t.failure_mode, t.error, t.duration_s, t.agent_s, t.started_at,
           count(c.idx) AS calls,
           sum(c.prompt_tokens) AS prompt_tokens,
           sum(c.completion_tokens) AS completion_tokens,
           sum(c.reasoning_tokens) AS reasoning_tokens,
           CASE WHEN count(c.prompt_tokens) + count(c.completion_tokens) = 0 THEN NULL
                ELSE coalesce(sum(c.prompt_tokens), 0) + coalesce(sum(c.completion_tokens), 0) END AS total_tokens,
           coalesce(bool_or(c.tokens_estimated), false) AS tokens_estimated,
           sum(c.e2e_s) AS model_time_s
    FROM trials t LEFT JOIN trial_model_calls c USING (trial_id)
    GROUP BY ALL"""
_M3 = (
    "ALTER TABLE trials ADD COLUMN IF NOT EXISTS agent_stop VARCHAR",
    "ALTER TABLE trials ADD COLUMN IF NOT EXISTS agent_steps BIGINT",
    "ALTER TABLE trials ADD COLUMN IF NOT EXISTS tool_protocol VARCHAR",
    "ALTER TABLE trials ADD COLUMN IF NOT EXISTS actions_run BIGINT",
    f"CREATE OR REPLACE VIEW trial_totals AS {_TRIAL_TOTALS_3}",
)

# -- 4: servings and quantization ladders ---------------------------------------------
# Load time and peak memory of each served model (any run), and the rungs of a ladder run.
_M4 = (
    "CREATE TABLE servings(run_id VARCHAR, model VARCHAR, started_at TIMESTAMPTZ, stopped_at TIMESTAMPTZ, "
    "load_s DOUBLE, peak_rss_bytes BIGINT, trials BIGINT, PRIMARY KEY(run_id, model, started_at))",
    'CREATE TABLE ladder_rungs(run_id VARCHAR, model VARCHAR, quant VARCHAR, kv_cache VARCHAR, "reference" BOOLEAN, '
    'provenance VARCHAR, requantized BOOLEAN, "source" VARCHAR, source_quant VARCHAR, source_sha256 VARCHAR, '
    '"path" VARCHAR, file_bytes BIGINT, file_sha256 VARCHAR, params BIGINT, bits_per_weight DOUBLE, '
    "imatrix_sha256 VARCHAR, quantizer VARCHAR, quantize_s DOUBLE, kl_mean DOUBLE, kl_median DOUBLE, "
    "kl_p99 DOUBLE, kl_max DOUBLE, top1_agreement DOUBLE, kl_tokens BIGINT, perplexity DOUBLE, "
    "reference_perplexity DOUBLE, kl_method VARCHAR, kl_s DOUBLE, kl_text_sha256 VARCHAR, kl_text_origin VARCHAR, "
    'kl_error VARCHAR, PRIMARY KEY(run_id, model))',
)

# -- 5: failed runs, and who runs a run ----------------------------------------------
# A run an error stopped says why; a running run names its process, so readers can tell one
# that is gone (kill -9) from one still running.
_M5 = (
    'ALTER TABLE runs ADD COLUMN IF NOT EXISTS "error" VARCHAR',
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS owner VARCHAR",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tables derived from the record models", _M1),
    Migration(2, "views trial_totals and call_telemetry, index on trials.run_id", _M2),
    Migration(3, "trials: agent_stop, agent_steps, tool_protocol, actions_run; unknown token totals NULL", _M3),
    Migration(4, "tables servings and ladder_rungs", _M4),
    Migration(5, "runs: error, owner", _M5),
)
LATEST = MIGRATIONS[-1].version

# The views as the latest migration defines them, for a reader that shows an older file
# without writing it. A migration that changes a view points its entry at the new text.
VIEWS: dict[str, str] = {"trial_totals": _TRIAL_TOTALS_3, "call_telemetry": _CALL_TELEMETRY_2}

LEDGER_DDL = ("CREATE TABLE IF NOT EXISTS schema_migrations "
              "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)")


# -- opening a file of any released schema --------------------------------------------
_DUCKDB_NAMES = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}  # how duckdb_columns() spells a type


def file_tables(con: "duckdb.DuckDBPyConnection") -> dict[str, dict[str, str]]:
    """The file's own tables, not temporary ones: name -> column -> type as DuckDB spells it."""
    out: dict[str, dict[str, str]] = {}
    for table, column, typ in con.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() c "
            "JOIN duckdb_tables() t USING (database_name, schema_name, table_name) "
            "WHERE c.database_name = current_database() AND c.schema_name = 'main' "
            "ORDER BY c.column_index").fetchall():
        out.setdefault(str(table), {})[str(column)] = str(typ)
    return out


def applied(con: "duckdb.DuckDBPyConnection") -> set[int]:
    """The versions the file's ledger records; none for a new file."""
    if "schema_migrations" not in file_tables(con):
        return set()
    return {int(r[0]) for r in con.execute("SELECT version FROM schema_migrations").fetchall()}


def refuse_newer(con: "duckdb.DuckDBPyConnection", path: Path, done: set[int]) -> None:
    """A newer agenteval's file is one clear line, before anything is read or written:
    its ledger holds a migration this agenteval lacks, or a record a newer ``schema_version``."""
    from agenteval import __version__

    newest = max(done, default=0)
    if newest > LATEST:
        raise NewerSchemaError(f"{path}: written by a newer agenteval (store schema {newest}; agenteval "
                               f"{__version__} reads up to {LATEST}): upgrade agenteval to open it")
    tables = file_tables(con)
    for name in ("runs", "trials"):
        if "schema_version" in tables.get(name, {}):
            row = con.execute(f"SELECT max(schema_version) FROM {name}").fetchone()
            if row and row[0] is not None and int(row[0]) > SCHEMA_VERSION:
                raise NewerSchemaError(f"{path}: holds {name} of record schema_version {row[0]}; agenteval "
                                       f"{__version__} reads up to {SCHEMA_VERSION}: upgrade agenteval to read it")


def migrate(con: "duckdb.DuckDBPyConnection", path: Path) -> None:
    """Apply the pending migrations in order, each in one transaction with its ledger row."""
    import duckdb

    con.execute(LEDGER_DDL)
    done = applied(con)
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        con.begin()
        try:
            for statement in migration.statements:
                con.execute(statement)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [migration.version, migration.name, utcnow()])
            con.commit()
        except duckdb.Error as e:
            con.rollback()
            raise StoreError(f"{path}: migration {migration.version} ({migration.name}) failed: "
                             f"{str(e).splitlines()[0]}") from e


def read_through(con: "duckdb.DuckDBPyConnection", path: Path, pending: list[Migration],
                 columns: dict[str, dict[str, str]], fill: Callable[[str, str, str], str | None]) -> None:
    """Show an older file as the current schema without writing it: a missing table is an
    empty temporary one, a table is a temporary view that adds missing columns and puts
    ``fill`` (a field's default as SQL, what migrations fill old rows with) where a row has
    no value, and the views are the latest. Temporary objects live in the connection's
    memory and shadow the file's."""
    have = file_tables(con)
    retyped = [f"{name}.{c}" for name, cols in columns.items() for c, t in cols.items()
               if c in have.get(name, {}) and have[name][c] != _DUCKDB_NAMES.get(t, t)]
    if retyped or not all(m.read_through for m in pending):
        from agenteval import __version__

        raise OutdatedSchemaError(
            f"{path}: agenteval {__version__} cannot read this older store without migrating it, and a read-only "
            f"command never writes: migrate it by opening it once read-write, e.g. "
            f"`agenteval run --resume RUN_ID --db {path}`")
    row = con.execute("SELECT current_database()").fetchone()
    source = quote(str(row[0]) if row else "main")
    statements = []
    for name, cols in columns.items():
        if name not in have:
            statements.append(f"CREATE TEMP TABLE {name} ({', '.join(f'{quote(c)} {t}' for c, t in cols.items())})")
            continue
        defaults = {c: fill(name, c, t) for c, t in cols.items()}
        added = [f"{defaults[c] or f'CAST(NULL AS {t})'} AS {quote(c)}" for c, t in cols.items() if c not in have[name]]
        filled = [f"coalesce({quote(c)}, {d}) AS {quote(c)}" for c, d in defaults.items() if d and c in have[name]]
        if added or filled:
            replace = f" REPLACE ({', '.join(filled)})" if filled else ""
            statements.append(f"CREATE TEMP VIEW {name} AS SELECT *{replace}{''.join(', ' + a for a in added)} "
                              f"FROM {source}.main.{name}")
    statements += [f"CREATE TEMP VIEW {name} AS {sql}" for name, sql in VIEWS.items()]
    for statement in statements:
        con.execute(statement)


def quote(name: str) -> str:
    """An SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
