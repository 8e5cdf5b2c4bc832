"""Exports: Parquet read back by DuckDB, JSON Lines round trips, JUnit XML that parses
even when a model printed hostile text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb
import pytest

from agenteval.errors import BadInputError, StoreError
from agenteval.export import PARQUET_TABLES, export_runs, json_line, read_jsonl, xml_text
from agenteval.records import (
    SCHEMA_VERSION, Check, ExecRecord, FailureMode, Fingerprint, ModelCall, RungRecord, RunRecord, ServingRecord,
    TrialRecord, Verdict, utcnow,
)
from agenteval.store import Store

HOSTILE = "\x00\x1b[31m red \ud800 ]]> <script>alert(1)</script> \ufffe end"


def trial(run_id: str, task: str, sample: int = 0, mode: FailureMode | None = None,
          checks: list[Check] | None = None, error: str | None = None,
          calls: list[ModelCall] | None = None, model: str = "m1") -> TrialRecord:
    now = utcnow()
    verdict = Verdict.from_checks(checks) if checks is not None else None
    key = f"{task}/v/{model}/{sample}"
    return TrialRecord(
        trial_id=f"{run_id}-{key.replace('/', '-')}", run_id=run_id, key=key, task=task, task_path=f"tasks/{task}",
        task_hash="abc", variant="v", sample=sample, model=model, passed=mode is None,
        score=verdict.score if verdict else 0.0, failure_mode=mode, error=error, started_at=now,
        finished_at=now, duration_s=2.5, verdict=verdict,
        execs=[ExecRecord(phase="agent", user="1000", command="echo hi", exit_code=0, duration_s=0.1)],
        model_calls=calls or [],
        fingerprint=Fingerprint(agenteval_version="0", host="h", platform="p", model=model, provider="x"),
    )


def calls() -> list[ModelCall]:
    return [ModelCall(index=i, model="m1", prompt_tokens=100, completion_tokens=20 * (i + 1),
                      decode_s=1.0, decode_tokens_per_s=float(10 * (i + 1)), e2e_s=1.2) for i in range(3)]


def run_record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version="0", models=["m1"], tasks=["a", "b"],
                     samples=1, concurrency=1)


def fill(store: Store, run_id: str) -> list[TrialRecord]:
    """Four trials: passed with calls, verify_failed with checks, infra_error, agent_limit."""
    records = [
        trial(run_id, "a", 0, calls=calls(), checks=[Check(name="ok", passed=True)]),
        trial(run_id, "a", 1, FailureMode.verify_failed, error="2 of 3 checks failed",
              checks=[Check(name="ok", passed=True), Check(name="file x", passed=False, message="missing"),
                      Check(name="exit", passed=False, message="got 1")]),
        trial(run_id, "b", 0, FailureMode.infra_error, error="server 502"),
        trial(run_id, "b", 1, FailureMode.agent_limit, error="50 steps", model="m2"),
    ]
    store.save_run(run_record(run_id))
    store.commit_trials(records)
    now = utcnow()
    store.commit_serving(ServingRecord(run_id=run_id, model="m1", started_at=now, stopped_at=now, load_s=1.5,
                                       peak_rss_bytes=1 << 20, trials=3))
    store.save_rung(RungRecord(run_id=run_id, model="m1", quant="F16", reference=True, provenance="reference (F16)",
                               source="m.gguf", source_quant="F16", source_sha256="ab", path="m.gguf",
                               file_bytes=100, file_sha256="ab", params=50, bits_per_weight=16.0))
    return records


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "db.duckdb")
    fill(s, "r1")
    fill(s, "r2")
    return s


def count(path: Path) -> int:
    quoted = str(path).replace("'", "''")
    row = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{quoted}')").fetchall()
    return int(row[0][0])


# -- parquet ------------------------------------------------------------------
def test_parquet_writes_every_table_filtered_to_the_runs(store: Store, tmp_path: Path) -> None:
    both = export_runs(store, ["r1", "r2"], "parquet", tmp_path / "both")
    one = export_runs(store, ["r1"], "parquet", tmp_path / "one")
    assert both == tmp_path / "both" and one == tmp_path / "one"
    expected = {"runs": 1, "trials": 4, "trial_checks": 4, "trial_execs": 4, "trial_model_calls": 3,
                "servings": 1, "ladder_rungs": 1, "trial_totals": 4, "call_telemetry": 3}
    assert set(PARQUET_TABLES) == set(expected)
    for name, n in expected.items():
        assert count(one / f"{name}.parquet") == n, name
        assert count(tmp_path / "both" / f"{name}.parquet") == 2 * n, name
    row = duckdb.connect().execute(f"SELECT DISTINCT run_id FROM '{one / 'trials.parquet'}'").fetchall()
    assert row == [("r1",)]
    assert not list(one.glob(".*tmp"))


def test_parquet_path_with_a_quote(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "it's here\\'); DROP TABLE trials; --"
    export_runs(store, ["r2"], "parquet", folder)
    assert count(folder / "trials.parquet") == 4
    assert store.con.execute("SELECT count(*) FROM trials").fetchone() == (8,)


def test_parquet_needs_a_folder(store: Store) -> None:
    with pytest.raises(BadInputError, match="parquet needs --out DIR"):
        export_runs(store, ["r1"], "parquet", None)


# -- jsonl --------------------------------------------------------------------
def test_jsonl_round_trips_every_trial_in_order(store: Store, tmp_path: Path) -> None:
    out = export_runs(store, ["r2", "r1"], "jsonl", tmp_path / "sub" / "trials.jsonl")
    assert out == tmp_path / "sub" / "trials.jsonl"
    got = list(read_jsonl(out))  # the reader checks each line's schema_version
    assert got == store.trials("r2") + store.trials("r1")
    assert len(got) == 8 and got[0].schema_version == SCHEMA_VERSION == 2
    assert [(t.run_id, t.task, t.sample) for t in got[:4]] == [("r2", "a", 0), ("r2", "a", 1),
                                                               ("r2", "b", 0), ("r2", "b", 1)]


def test_jsonl_to_stdout(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert export_runs(store, ["r1"], "jsonl", None) is None
    lines = capsys.readouterr().out.splitlines()
    assert [TrialRecord.model_validate_json(line) for line in lines] == store.trials("r1")


def test_jsonl_line_stays_parseable_with_a_lone_surrogate() -> None:
    rec = trial("r1", "a").model_copy(update={"transcript": [{"role": "assistant", "content": "x\ud800y"}]})
    back = TrialRecord.model_validate_json(json_line(rec))
    assert back.transcript == [{"role": "assistant", "content": "x\ufffdy"}]
    assert back.model_copy(update={"transcript": rec.transcript}) == rec


def test_jsonl_reader_takes_a_stream_and_refuses_a_newer_record() -> None:
    import io

    from agenteval.records import SCHEMA_VERSION
    from agenteval.store import NewerSchemaError

    rec = trial("r1", "a")
    assert list(read_jsonl(io.StringIO(json_line(rec) + "\n"))) == [rec]
    newer = json_line(rec.model_copy(update={"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(NewerSchemaError, match=f"<jsonl>:2: .*schema_version {SCHEMA_VERSION + 1}"):
        list(read_jsonl(io.StringIO(json_line(rec) + "\n" + newer + "\n")))


# -- junit --------------------------------------------------------------------
def test_junit_counts_and_failure_vs_error(store: Store, tmp_path: Path) -> None:
    out = export_runs(store, ["r1"], "junit", tmp_path / "junit.xml")
    assert out is not None
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("name") == "agenteval"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "2", "1")
    assert root.get("time") == "10.000"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"m1 / a", "m1 / b", "m2 / b"}
    assert (suites["m1 / a"].get("tests"), suites["m1 / a"].get("failures")) == ("2", "1")
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    passed = cases[("m1.a", "v/0")]
    assert passed.find("failure") is None and passed.find("error") is None
    assert passed.get("time") == "2.500"
    props = {p.get("name"): p.get("value") for p in passed.iter("property")}
    assert props["run_id"] == "r1" and props["model_calls"] == "3"
    assert props["total_tokens"] == str(300 + 20 + 40 + 60) and props["median_decode_tokens_per_s"] == "20.0"
    failed = cases[("m1.a", "v/1")].find("failure")
    assert failed is not None and failed.get("type") == "verify_failed"
    assert failed.get("message") == "verify_failed: 2 of 3 checks failed"
    assert failed.text == "FAIL file x: missing\nFAIL exit: got 1"
    infra = cases[("m1.b", "v/0")]
    assert infra.find("failure") is None
    error = infra.find("error")
    assert error is not None and error.get("type") == "infra_error" and error.text == "server 502"
    limit = cases[("m2.b", "v/1")].find("failure")
    assert limit is not None and limit.get("type") == "agent_limit"


def test_junit_survives_hostile_model_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = "y" * 1_000_000
    rec = trial("r1", "a", 0, FailureMode.verify_failed, error=HOSTILE + big,
                checks=[Check(name="c<1>", passed=False, message=HOSTILE), Check(name="long", passed=False,
                                                                                 message=big)])
    with Store(tmp_path / "db.duckdb") as store:
        store.save_run(run_record("r1"))
        store.commit_trial(rec)
        assert export_runs(store, ["r1"], "junit", None) is None
    xml = capsys.readouterr().out
    root = ET.fromstring(xml)
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.text is not None
    message = failure.get("message") or ""
    for text in (failure.text, message):
        assert "[31m red" in text and "]]> <script>alert(1)</script>" in text and " end" in text
        assert "\x00" not in text and "\x1b" not in text and "\ud800" not in text
    assert "FAIL c<1>:" in failure.text
    assert "more characters cut" in message and len(message) < 70_000
    assert len(xml) < 300_000


def test_xml_text_drops_only_forbidden_characters() -> None:
    assert xml_text("a\tb\nc\rd\x00\x08\x0b\x1f\ud800\udfff\ufffe\uffff\U0001f600é") == "a\tb\nc\rd\U0001f600é"
    assert xml_text("x" * 10, limit=4) == "xxxx... [6 more characters cut]"


# -- input --------------------------------------------------------------------
def test_unknown_format_lists_the_formats(store: Store) -> None:
    with pytest.raises(BadInputError, match="parquet, jsonl, junit"):
        export_runs(store, ["r1"], "csv", None)


def test_unknown_run_id_is_a_store_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="nope"):
        export_runs(store, ["r1", "nope"], "jsonl", tmp_path / "t.jsonl")
    assert not (tmp_path / "t.jsonl").exists()


def test_junit_says_what_the_agent_did_and_leaves_unknown_tokens_out(tmp_path: Path) -> None:
    from agenteval.records import StopReason, ToolProtocol

    acted = trial("r1", "a", 0, calls=calls()).model_copy(update=dict(
        agent_stop=StopReason.step_limit, agent_steps=30, tool_protocol=ToolProtocol.text, actions_run=0))
    mute = trial("r1", "a", 1, calls=[ModelCall(index=0, model="m1", e2e_s=1.0)])
    with Store(tmp_path / "db.duckdb") as s:
        s.save_run(run_record("r1"))
        s.commit_trials([acted, mute])
        out = export_runs(s, ["r1"], "junit", tmp_path / "junit.xml")
    assert out is not None
    cases = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
             for c in ET.parse(out).getroot().iter("testcase")}
    assert {k: cases["v/0"][k] for k in ("agent_stop", "agent_steps", "tool_protocol", "actions_run")} == {
        "agent_stop": "step_limit", "agent_steps": "30", "tool_protocol": "text", "actions_run": "0"}
    assert "total_tokens" not in cases["v/1"] and "agent_stop" not in cases["v/1"]
    assert cases["v/1"]["model_calls"] == "1"
