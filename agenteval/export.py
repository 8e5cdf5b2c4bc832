"""Export runs out of the store: Parquet for notebooks, JSON Lines for pipelines,
JUnit XML so a CI system shows each trial as a test. ``read_jsonl`` reads JSON Lines
back, checking each record's ``schema_version``.

The store stays the source of truth; every format is derived from it and can be
written again at any time.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, Callable, Iterator

from agenteval.errors import BadInputError, ReportError
from agenteval.records import SCHEMA_VERSION, FailureMode, TrialRecord
from agenteval.store import VIEWS, NewerSchemaError, Store, valid_text

FORMATS = ("parquet", "jsonl", "junit")
# The tables notebooks join, and the views that save them the joins.
PARQUET_TABLES = ("runs", "trials", "trial_checks", "trial_execs", "trial_model_calls", "servings", "ladder_rungs",
                  *VIEWS)
# Whatever broke around the agent is an error; whatever the agent got wrong is a failure.
ERROR_MODES = frozenset({FailureMode.infra_error, FailureMode.sandbox_error, FailureMode.verify_error})
MAX_TEXT = 64 * 1024  # characters per XML text or attribute: a model can print megabytes
_BATCH = 500  # trials held in memory at once while streaming

# Characters XML 1.0 forbids anywhere, even escaped: a parser rejects the whole file.
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def export_runs(store: Store, run_ids: list[str], fmt: str, out: Path | None) -> Path | None:
    """Write the trials of ``run_ids`` as ``fmt`` to ``out`` (a folder for parquet, a file
    otherwise; None means stdout). Returns what was written, or None for stdout."""
    if fmt not in FORMATS:
        raise BadInputError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None:
        raise BadInputError("parquet needs --out DIR (a folder that gets one file per table)")
    for run_id in run_ids:
        store.run(run_id)  # an unknown id raises StoreError before anything is written
    if fmt == "parquet":
        assert out is not None
        return _write_parquet(store, run_ids, out)
    write = _write_jsonl if fmt == "jsonl" else _write_junit
    if out is None:
        write(store, run_ids, sys.stdout)
        return None
    return _write_atomically(out, lambda stream: write(store, run_ids, stream))


def _write_atomically(path: Path, write: Callable[[IO[str]], None]) -> Path:
    """Write beside ``path`` and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8", newline="\n") as stream:
            write(stream)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ReportError(f"{path}: cannot write export ({e.strerror or e})") from e
    return path


# -- parquet -------------------------------------------------------------------
def _write_parquet(store: Store, run_ids: list[str], folder: Path) -> Path:
    """DuckDB writes Parquet itself: no pandas, types kept as stored. Run ids go in as a
    parameter; the file name cannot (duckdb 1.0 refuses ``TO $path``), so it is a SQL
    literal with its quotes doubled, the only escape a DuckDB string literal has."""
    import duckdb

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"{folder}: cannot create export folder ({e.strerror or e})") from e
    trial_ids = "SELECT trial_id FROM trials WHERE run_id IN (SELECT unnest($runs))"
    for name in PARQUET_TABLES:
        has_run_id = name in ("runs", "trials", "servings", "ladder_rungs", *VIEWS)
        where = "run_id IN (SELECT unnest($runs))" if has_run_id else f"trial_id IN ({trial_ids})"
        target, tmp = folder / f"{name}.parquet", folder / f".{name}.parquet.tmp"
        try:
            store.con.execute(f"COPY (SELECT * FROM {name} WHERE {where}) TO {_sql_literal(str(tmp))} "
                              "(FORMAT parquet)", {"runs": run_ids})
            os.replace(tmp, target)
        except (duckdb.Error, OSError) as e:
            tmp.unlink(missing_ok=True)
            raise ReportError(f"{target}: cannot write Parquet ({str(e).splitlines()[0]})") from e
    return folder


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- jsonl ---------------------------------------------------------------------
def _records(store: Store, run_ids: list[str]) -> Iterator[TrialRecord]:
    """Trials by run, task, variant, model, sample; a batch at a time, so 10k trials
    never sit in memory together."""
    for run_id in run_ids:
        ids = store.trial_ids(run_id)
        for start in range(0, len(ids), _BATCH):
            for row in store.trial_rows(ids[start:start + _BATCH]):
                yield TrialRecord.model_validate(row)


def _write_jsonl(store: Store, run_ids: list[str], stream: IO[str]) -> None:
    for record in _records(store, run_ids):
        stream.write(json_line(record))
        stream.write("\n")


def json_line(record: TrialRecord) -> str:
    """The record as JSON; a lone surrogate (broken UTF-8 from a model) becomes U+FFFD,
    since no JSON parser takes one back."""
    try:
        return record.model_dump_json()
    except ValueError:  # PydanticSerializationError
        import pydantic_core

        text = json.dumps(pydantic_core.to_jsonable_python(record), ensure_ascii=False, separators=(",", ":"))
        return str(valid_text(text))


def read_jsonl(source: Path | IO[str]) -> Iterator[TrialRecord]:
    """Trial records back from ``agenteval export --format jsonl``, a line at a time.

    Each line's ``schema_version`` is read before the record: one newer than this
    agenteval's ``SCHEMA_VERSION`` is refused with one line (``NewerSchemaError``)
    rather than read wrongly; older known versions are read as they are; a line
    without one is not an agenteval trial record (``BadInputError``)."""
    if isinstance(source, Path):
        try:
            with open(source, encoding="utf-8") as stream:
                yield from read_jsonl(stream)
        except OSError as e:
            raise BadInputError(f"{source}: cannot read ({e.strerror or e})") from e
        return
    name = getattr(source, "name", "<jsonl>")
    for n, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as e:
            raise BadInputError(f"{name}:{n}: not JSON ({e})") from None
        version = data.get("schema_version") if isinstance(data, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BadInputError(f"{name}:{n}: not an agenteval trial record (no schema_version)")
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(f"{name}:{n}: trial record of schema_version {version}, written by a newer "
                                   f"agenteval (this one reads up to {SCHEMA_VERSION}): upgrade agenteval to read it")
        try:
            yield TrialRecord.model_validate(data)
        except ValueError as e:  # pydantic.ValidationError
            raise BadInputError(f"{name}:{n}: not a valid trial record ({str(e).splitlines()[0]})") from None


# -- junit ---------------------------------------------------------------------
def xml_text(value: object, limit: int = MAX_TEXT) -> str:
    """Text an XML 1.0 parser accepts and a person can still read: forbidden characters
    dropped, long texts cut with a note of how much was cut."""
    text = _XML_FORBIDDEN.sub("", str(value))
    if len(text) > limit:
        text = f"{text[:limit]}... [{len(text) - limit} more characters cut]"
    return text


def _element(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    node = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        node.text = xml_text(text)
    return node


def _testcase(suite: ET.Element, record: TrialRecord) -> str | None:
    """Add one trial; returns 'failure', 'error' or None (passed)."""
    case = _element(suite, "testcase", classname=f"{record.model}.{record.task}",
                    name=f"{record.variant}/{record.sample}", time=f"{record.duration_s:.3f}")
    props = _element(case, "properties")
    for name, value in _telemetry(record).items():
        _element(props, "property", name=name, value=value)
    if record.passed:
        return None
    mode = record.failure_mode
    kind = "error" if mode in ERROR_MODES else "failure"
    mode_name = mode.value if mode else "failed"
    failed = [f"FAIL {c.name}: {c.message}" for c in (record.verdict.checks if record.verdict else [])
              if not c.passed]
    text = "\n".join(failed) or (record.error or mode_name)
    message = f"{mode_name}: {record.error}" if record.error else mode_name
    _element(case, kind, text, message=message, type=mode_name)
    return kind


def _telemetry(record: TrialRecord) -> dict[str, str]:
    calls = record.model_calls
    tokens = [(c.prompt_tokens or 0) + (c.completion_tokens or 0) for c in calls]
    rates = [c.decode_tokens_per_s for c in calls if c.decode_tokens_per_s is not None]
    props = {"run_id": record.run_id, "trial_id": record.trial_id, "score": f"{record.score:.4g}",
             "model_calls": str(len(calls))}
    if any(c.prompt_tokens is not None or c.completion_tokens is not None for c in calls):
        props["total_tokens"] = str(sum(tokens))  # no property where no call reported a count: unknown, not 0
    if rates:
        props["median_decode_tokens_per_s"] = f"{statistics.median(rates):.1f}"
    agent = {"agent_stop": record.agent_stop.value if record.agent_stop else None, "agent_steps": record.agent_steps,
             "tool_protocol": record.tool_protocol.value if record.tool_protocol else None,
             "actions_run": record.actions_run}
    props.update({name: str(value) for name, value in agent.items() if value is not None})
    return props


def _write_junit(store: Store, run_ids: list[str], stream: IO[str]) -> None:
    root = ET.Element("testsuites", {"name": "agenteval"})
    suites: dict[tuple[str, str], ET.Element] = {}
    totals: dict[ET.Element, dict[str, float]] = {root: {}}
    for record in _records(store, run_ids):
        key = (record.model, record.task)
        if key not in suites:
            suites[key] = _element(root, "testsuite", name=f"{record.model} / {record.task}")
            totals[suites[key]] = {}
        outcome = _testcase(suites[key], record)
        for node in (root, suites[key]):
            counts = totals[node]
            counts["tests"] = counts.get("tests", 0) + 1
            counts["time"] = counts.get("time", 0.0) + record.duration_s
            if outcome:
                counts[outcome + "s"] = counts.get(outcome + "s", 0) + 1
    for node, counts in totals.items():
        for name in ("tests", "failures", "errors"):
            node.set(name, str(int(counts.get(name, 0))))
        node.set("time", f"{counts.get('time', 0.0):.3f}")
    ET.indent(root)
    stream.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    ET.ElementTree(root).write(stream, encoding="unicode")
    stream.write("\n")
