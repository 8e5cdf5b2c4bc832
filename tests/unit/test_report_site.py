"""The static scorecard site from real DuckDB files: pages, links, figures, hostile text."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from agenteval.records import (
    Artifact, Check, ExecRecord, FailureMode, Fingerprint, ModelCall, RunRecord, TrialRecord, Verdict, utcnow,
)
from agenteval.report import fragments, render_report
from agenteval.report import site as site_module
from agenteval.report.data import load_scorecard
from agenteval.store import Store

HOSTILE = ('<script>window.__pwned=1</script><img src=x onerror="alert(2)">'
           '<a href="javascript:alert(3)">x</a>"><svg onload=alert(4)>')


def record(run_id: str, model: str, task: str, variant: str, sample: int, passed: bool, **extra: object) -> TrialRecord:
    now = utcnow() + timedelta(seconds=sample)
    checks = [Check(name="file exists", passed=True), Check(name="content", passed=passed, message="expected a")]
    calls = [ModelCall(index=0, model=model, prompt_tokens=100, completion_tokens=50, ttft_s=0.2,
                       decode_tokens_per_s=40.0 if model == "fast" else 10.0, e2e_s=1.5)] if model != "oracle" else []
    data: dict[str, object] = dict(
        trial_id=f"{run_id}-{model}-{task}-{variant}-{sample}", run_id=run_id,
        key=f"{task}/{variant}/{model}/{sample}", task=task, task_path=f"tasks/{task}", task_hash="h",
        variant=variant, sample=sample, model=model, passed=passed, score=1.0 if passed else 0.5,
        failure_mode=None if passed else FailureMode.verify_failed, started_at=now, finished_at=now, duration_s=3.0,
        verdict=Verdict.from_checks(checks), model_calls=calls,
        transcript=[{"role": "user", "content": "make a.txt"},
                    {"role": "assistant", "content": "", "reasoning": "think",
                     "tool_calls": [{"id": "1", "name": "write_file",
                                     "arguments": '{"path": "a.txt", "content": "hello file"}'}]},
                    {"role": "tool", "name": "write_file", "content": "wrote 10 bytes to a.txt"}],
        execs=[ExecRecord(phase="verify", user="1001", command="python3 verify.py", exit_code=0, duration_s=0.2)],
        fingerprint=Fingerprint(agenteval_version="0", host="h", platform="p", model=model, provider="openai",
                                model_info={"server": "llama.cpp", "quantization": "Q4_K_M", "context": 4096}))
    data.update(extra)
    return TrialRecord.model_validate(data)


def hostile(run_id: str) -> TrialRecord:
    long_line = "A" * 1_000_000
    return record(run_id, "fast", "folder", "v1", 9, False, error=HOSTILE, transcript=[
        {"role": "assistant", "content": HOSTILE + long_line, "reasoning": HOSTILE,
         "tool_calls": [{"id": "1", "name": HOSTILE, "arguments": HOSTILE}]},
        {"role": HOSTILE, "content": "\ud800 broken \x00"}],
        execs=[ExecRecord(phase="agent", user="1000", command=HOSTILE, exit_code=1, duration_s=0.1, stdout=HOSTILE)],
        artifacts=[Artifact(name="evil", path="javascript:alert(1)", size=1, media_type="image/png")])


def build(tmp_path: Path, extra: list[TrialRecord] | None = None) -> Path:
    db = tmp_path / "db.duckdb"
    with Store(db) as store:
        store.save_run(RunRecord(run_id="r1", started_at=utcnow(), agenteval_version="0", models=["fast", "slow"],
                                 tasks=["folder", "flappy"], samples=2, concurrency=1, config={"out": str(tmp_path)}))
        records = [record("r1", m, t, v, s, passed=(m == "fast" or s == 0))
                   for m in ("fast", "slow", "oracle") for t in ("folder", "flappy") for v in ("v1", "v2")
                   for s in range(2)]
        store.commit_trials(records + (extra or []))
    return db


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.refs.append(value)


def test_site_pages_exist_and_every_link_resolves(tmp_path: Path) -> None:
    db = build(tmp_path, [hostile("r1")])
    with Store(db, read_only=True) as store:
        index = render_report(store, ["r1"], tmp_path / "site")
    site = index.parent
    pages = sorted(site.rglob("*.html"))
    assert {p.relative_to(site).parts[0] for p in pages} == {"index.html", "tasks", "pairs", "trials"}
    assert len(list((site / "trials").glob("r1-*.html"))) == 25
    for page in pages:
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        assert parser.scripts == 0, page
        for ref in parser.refs:
            assert not re.match(r"^[a-z]+:", ref), f"{page}: {ref} leaves the site"
            target = (page.parent / ref.split("#")[0]).resolve()
            assert ref.startswith("#") or target.is_file(), f"{page}: {ref} is broken"


def test_hostile_output_is_inert_text(tmp_path: Path) -> None:
    db = build(tmp_path, [hostile("r1")])
    with Store(db, read_only=True) as store:
        index = render_report(store, ["r1"], tmp_path / "site")
    page = (index.parent / "trials" / "r1-fast-folder-v1-9.html").read_text(encoding="utf-8")
    assert "<script" not in page and "onerror=" not in page.replace("onerror=&#34;", "")
    assert 'href="javascript:' not in page and "javascript:alert(1)" not in re.findall(r'(?:href|src)="([^"]*)"', page)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert "\ufffd broken" in page  # the lone surrogate became U+FFFD
    assert len(page) < 200_000, "a megabyte line is clipped"
    assert "more characters not shown" in page
    assert "evil (path not shown)" in page


def test_figures_on_the_leaderboard(tmp_path: Path) -> None:
    db = build(tmp_path)
    with Store(db, read_only=True) as store:
        card = load_scorecard(store, ["r1"])
        index = render_report(store, ["r1"], tmp_path / "site")
    fast, slow = card.cell("fast"), card.cell("slow")
    assert fast is not None and slow is not None
    assert (fast.passed, fast.trials, slow.passed, slow.trials) == (8, 8, 4, 8)
    assert slow.pass_at == {1: pytest.approx(0.5), 2: pytest.approx(1.0)}
    assert slow.interval.low == pytest.approx(0.2152, abs=1e-4) and slow.tps_med == 10.0
    assert card.ranked() == ["fast", "slow", "oracle"]  # slow ties the oracle at 50% and is faster
    pair = card.pair("fast", "slow")
    assert (pair.pairs, len(pair.only_a), len(pair.only_b), pair.p_value) == (8, 4, 0, pytest.approx(0.125))
    assert pair.tasks_a == ["flappy", "folder"] and pair.tasks_b == []
    html = index.read_text()
    assert 'id="chart"' in html and html.count("<circle") == 2  # oracle has no decode speed
    assert '<td>Q4_K_M</td>\n<td class="num">4096</td>' in html  # the fingerprint's quantization and context


def test_trial_page_shows_files_written_and_checks(tmp_path: Path) -> None:
    db = build(tmp_path)
    with Store(db, read_only=True) as store:
        index = render_report(store, ["r1"], tmp_path / "site")
    page = (index.parent / "trials" / "r1-slow-folder-v1-1.html").read_text()
    assert "Files written (1)" in page and "hello file" in page
    assert 'class="fail">fail</td><td>content</td><td>expected a</td>' in page


def test_pagination_and_reuse_of_rendered_trial_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(site_module, "PAGE_SIZE", 5)
    db = build(tmp_path)
    with Store(db, read_only=True) as store:
        index = render_report(store, ["r1"], tmp_path / "site")
        pages = sorted((index.parent / "trials").glob("page-*.html"))
        assert len(pages) == 5  # 24 trials, 5 a page
        assert 'href="page-5.html"' in pages[0].read_text()
        one = index.parent / "trials" / "r1-fast-folder-v1-0.html"
        one.write_text("kept")
        render_report(store, ["r1"], tmp_path / "site")
        assert one.read_text() == "kept", "an unchanged trial page is not rendered again"
        monkeypatch.setattr(site_module, "_template_stamp", lambda: "other templates")
        render_report(store, ["r1"], tmp_path / "site")
        assert one.read_text().startswith("<!doctype html>")


def test_helper_processes_render_the_same_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = build(tmp_path)
    with Store(db, read_only=True) as store:
        alone = render_report(store, ["r1"], tmp_path / "alone").parent
        monkeypatch.setattr(site_module, "PARALLEL_FROM", 1)
        monkeypatch.setattr(site_module, "CHUNK", 4)
        monkeypatch.setattr(site_module.os, "cpu_count", lambda: 3)
        together = render_report(store, ["r1"], tmp_path / "together").parent
    names = sorted(p.name for p in (alone / "trials").glob("r1-*.html"))
    assert names == sorted(p.name for p in (together / "trials").glob("r1-*.html")) and len(names) == 24
    for name in names:
        assert (alone / "trials" / name).read_bytes() == (together / "trials" / name).read_bytes()


def test_fragments_escape_text_exactly_as_jinja_autoescape_does() -> None:
    # the trial page's long lists are built in Python: their escaping must be Jinja's, byte for byte
    for value in (HOSTILE, "a & b <c> 'd' \"e\"", "\ud800 broken \x00", "&amp; stays escaped once more", "", 5, None):
        assert fragments.text(value) == str(escape(value))
        assert fragments.escape_text(str(value)) == str(escape(value))


def test_trial_page_lists_model_calls_and_sandbox_commands(tmp_path: Path) -> None:
    # index 4: the model's fifth call of the run, this trial's first (and only) one: shown as call 1
    calls = [ModelCall(index=4, model="fast", prompt_tokens=None, completion_tokens=7, tokens_estimated=True,
                       ttft_s=0.25, e2e_s=2.5, finish_reason=HOSTILE, error=HOSTILE, retries=2)]
    execs = [ExecRecord(phase="agent", user="1000", command="make", exit_code=None, duration_s=1.5, timed_out=True,
                        stdout="out", truncated=True, stdout_bytes=99, stderr=HOSTILE)]
    db = build(tmp_path, [record("r1", "fast", "folder", "v1", 7, False, model_calls=calls, execs=execs)])
    with Store(db, read_only=True) as store:
        index = render_report(store, ["r1"], tmp_path / "site")
    page = (index.parent / "trials" / "r1-fast-folder-v1-7.html").read_text(encoding="utf-8")
    assert ('<tr><td class="num">1</td><td class="num">-</td>\n<td class="num">7*</td>\n<td class="num">-</td>'
            '<td class="num">250 ms</td><td class="num">-</td>\n'
            '<td class="num">-</td><td class="num">2.50 s</td>') in page
    assert '<td class="num">1</td><td class="num">2</td><td>&lt;script&gt;' in page
    assert "exit killed (timed out) 1.50 s</code> <code>make</code>" in page
    assert "<pre>out[output capped by the sandbox: 99 bytes of stdout in all]</pre><pre>&lt;script&gt;" in page
    assert "<script" not in page


@pytest.mark.parametrize("extra, shown", [
    (dict(agent_stop="step_limit", agent_steps=5, tool_protocol="text", actions_run=0),
     ["stopped: <strong>step_limit</strong>", "5 model turns", "text tool protocol",
      '<strong class="fail">nothing the model wrote ever ran</strong>']),
    (dict(agent_stop="done", agent_steps=2, tool_protocol="native", actions_run=3),
     ["stopped: <strong>done</strong>", "2 model turns", "native tool protocol", "3 actions run in the sandbox"]),
    (dict(agent_stop="solver", agent_steps=0, actions_run=1), ["No agent loop"]),
    ({}, ["The agent phase was not recorded"]),
])
def test_trial_page_says_what_the_agent_did(tmp_path: Path, extra: dict[str, object], shown: list[str]) -> None:
    db = build(tmp_path, [record("r1", "fast", "folder", "v1", 7, False, **extra)])
    with Store(db, read_only=True) as store:
        index = render_report(store, ["r1"], tmp_path / "site")
    page = (index.parent / "trials" / "r1-fast-folder-v1-7.html").read_text(encoding="utf-8")
    agent = page[page.index('id="agent"'):].split("</p>", 1)[0]
    assert shown and all(s in agent for s in shown), agent
    assert ("nothing the model wrote ever ran" in agent) == (extra.get("actions_run") == 0 and "tool_protocol" in extra)


def test_unknown_token_counts_show_as_unknown_and_every_image_is_named(tmp_path: Path) -> None:
    def uncounted(task: str, sample: int, image: str) -> TrialRecord:
        rec = record("r1", "mute", task, "v1", sample, True,
                     model_calls=[ModelCall(index=0, model="mute", ttft_s=0.2, e2e_s=1.0)])  # no usage sent
        fp = rec.fingerprint.model_copy(update={"image": image})
        return rec.model_copy(update={"fingerprint": fp})

    db = build(tmp_path, [uncounted("folder", 0, "agenteval/python:aaa"), uncounted("flappy", 1, "agenteval/pygame:bbb")])
    with Store(db, read_only=True) as store:
        card = load_scorecard(store, ["r1"])
        index = render_report(store, ["r1"], tmp_path / "site")
    mute, fast = card.cell("mute"), card.cell("fast")
    assert mute is not None and mute.tokens_med is None  # not 0: no call reported a count
    assert fast is not None and fast.tokens_med == 150
    assert card.images["mute"] == ["agenteval/pygame:bbb", "agenteval/python:aaa"]
    html = index.read_text()
    assert "<code>agenteval/pygame:bbb</code>" in html and "<code>agenteval/python:aaa</code>" in html


def test_a_requantized_model_is_named_with_its_provenance(tmp_path: Path) -> None:
    def made(model: str, provenance: str, sample: int) -> TrialRecord:
        fingerprint = Fingerprint(agenteval_version="0", host="h", platform="p", model=model, provider="openai",
                                  model_info={"server": "llama.cpp", "provenance": provenance})
        return record("r1", model, "folder", "v1", sample, True, fingerprint=fingerprint)

    note = ' <span class="warn">(requantized from Q4_1, K/V cache q8_0)</span>'
    db = build(tmp_path, [made("Q4_K_M", "requantized from Q4_1, K/V cache q8_0", 0),
                          made("Q8_0", "quantized from F16", 0), made("F16", "reference (F16)", 0)])
    with Store(db, read_only=True) as store:
        card = load_scorecard(store, ["r1"])
        index = render_report(store, ["r1"], tmp_path / "site")
    assert card.provenance == {"Q4_K_M": "requantized from Q4_1, K/V cache q8_0"}
    html = index.read_text()
    assert f"<th>Q4_K_M{note}</th>" in html  # the leaderboard, and the speed and fingerprint tables
    assert html.count(note) >= 3 and "(quantized from F16)" not in html and "(reference (F16))" not in html
    task = next((index.parent / "tasks").glob("folder-*.html")).read_text()
    assert f"<th>Q4_K_M{note}</th>" in task and "<th>Q8_0</th>" in task


def test_trial_and_pair_pages_name_a_requantized_model_with_its_provenance(tmp_path: Path) -> None:
    fingerprint = Fingerprint(agenteval_version="0", host="h", platform="p", model="Q4_K_M", provider="openai",
                              model_info={"provenance": "requantized from Q4_1"})
    db = build(tmp_path, [record("r1", "Q4_K_M", "folder", "v1", 0, True, fingerprint=fingerprint)])
    with Store(db, read_only=True) as store:
        index = render_report(store, ["r1"], tmp_path / "site")
    note = 'Q4_K_M <span class="warn">(requantized from Q4_1)</span>'
    assert note in (index.parent / "trials" / "r1-Q4_K_M-folder-v1-0.html").read_text()
    pairs = list((index.parent / "pairs").glob("*Q4_K_M*.html"))
    assert len(pairs) == 3 and all(note in p.read_text() for p in pairs)  # against fast, slow and oracle
