"""One trial as the report reads it (``TrialRow``), whatever the page: the lists and
comparisons, a trial's own page, a ladder's pairs. Every query fills it by column name
(``trial_rows``), so a column a query reorders or adds goes where its name says, and a
name the row does not have is an error, never a value in the wrong place.

Columns a query does not select keep their defaults: the identity and outcome of a trial are
always there; the sums of its model calls, its phases and transcript, and the ladder's pairing
are there where the page that reads them selected them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias

if TYPE_CHECKING:
    import duckdb

# A value parsed from a JSON column: transcripts, fingerprints, tool-call arguments.
JSON: TypeAlias = "str | int | float | bool | None | list[JSON] | dict[str, JSON]"
# How the samples of a trial were drawn, from its fingerprint (``ladder_pairs``).
Pairing = Literal["greedy", "unrecorded", "unseeded", "seeded"]


class CallRow(NamedTuple):
    """One model call as its trial page's telemetry table shows it (numbered by its place in the trial)."""

    prompt_tokens: int | None
    completion_tokens: int | None
    tokens_estimated: bool
    reasoning_tokens: int | None
    ttft_s: float | None
    ttfat_s: float | None
    decode_tokens_per_s: float | None
    e2e_s: float | None
    finish_reason: str | None
    concurrency: int | None
    retries: int | None
    error: str | None


class CheckRow(NamedTuple):
    """One verifier check on a trial page."""

    name: str
    passed: bool
    message: str


class ExecRow(NamedTuple):
    """One sandbox command on a trial page."""

    phase: str
    user: str
    command: str
    exit_code: int | None
    duration_s: float | None
    timed_out: bool
    oom_killed: bool
    stdout: str
    stderr: str
    stdout_bytes: int | None
    truncated: bool


class TrialRow(NamedTuple):
    """A trial: its identity and outcome, and what the query that read it selected besides."""

    trial_id: str
    run_id: str
    key: str
    model: str
    task: str
    variant: str
    sample: int
    passed: bool
    failure_mode: str | None
    error: str | None
    score: float
    duration_s: float | None
    # sums over its model calls (the store's trial_totals view)
    calls: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None
    # its page: phases, what the agent did, and the rows of its checks, calls and commands
    setup_s: float | None = None
    agent_s: float | None = None
    verify_s: float | None = None
    teardown_s: float | None = None
    started_at: datetime | None = None
    agent_stop: str | None = None
    agent_steps: int | None = None
    tool_protocol: str | None = None
    actions_run: int | None = None
    transcript: Sequence[JSON] = ()
    artifacts: Sequence[JSON] = ()
    fingerprint: str | None = None  # as stored: JSON text (see ``fragments.fingerprint_text``)
    checks: Sequence[CheckRow] = ()  # empty when the verifier wrote no verdict
    model_calls: Sequence[CallRow] = ()
    execs: Sequence[ExecRow] = ()
    # a ladder's: how its samples pair across rungs
    pairing: Pairing | None = None

    @property
    def outcome(self) -> str:
        return "passed" if self.passed else (self.failure_mode or "failed")

    @property
    def provenance(self) -> str | None:
        """"requantized from Q4_1" where the trial's model was (see ``requantized_from``)."""
        fingerprint = json.loads(self.fingerprint) if self.fingerprint else None
        return requantized_from(fingerprint) if isinstance(fingerprint, dict) else None


def trial_rows(con: "duckdb.DuckDBPyConnection", sql: str, params: Sequence[Any],
               complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> list[TrialRow]:
    """The trials ``sql`` selects, each filled by column name; ``complete`` turns one's columns
    into the row's fields where they differ (parsed JSON, rows read apart)."""
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description or ()]
    if complete is None:
        return [TrialRow(**dict(zip(names, row))) for row in cursor.fetchall()]
    return [TrialRow(**complete(dict(zip(names, row)))) for row in cursor.fetchall()]


def columns_of(row_type: type[CallRow] | type[CheckRow] | type[ExecRow]) -> str:
    """The SELECT list that reads ``row_type`` in its fields' order (each name quoted: "user" is a
    keyword)."""
    return ", ".join(f'"{name}"' for name in row_type._fields)


def requantized_from(fingerprint: dict[str, JSON]) -> str | None:
    """The provenance of a model made from an already quantized file ("requantized from Q4_1"),
    which must be said beside its name: its figures are not those of a quantization of the source."""
    info = fingerprint.get("model_info")
    provenance = info.get("provenance") if isinstance(info, dict) else None
    return provenance if isinstance(provenance, str) and provenance.startswith("requantized") else None
