"""The static report as a browser sees it: every page loads clean, every link
lands on a file of the site, the leaderboard is drawn, and a trial full of
hostile model output stays inert text.

Needs Chromium, chromedriver and selenium (``tests/setup-browser.sh``), not
Docker; without them the requirement gate (tests/conftest.py) skips, or fails in CI.
"""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import pytest

from agenteval.records import (
    Artifact, Check, ExecRecord, FailureMode, Fingerprint, ModelCall, RungRecord, RunRecord, ServingRecord,
    TrialRecord, Verdict, utcnow,
)
from agenteval.report import render_report
from agenteval.store import Store
from tests.conftest import missing
from tests.browser import browser_missing, console_errors, decode_png, full_page_screenshot, headless_chromium, page_links

RUN_ID = "browser-run-1"
MODELS = ["tiny-a", "tiny-b", "oracle"]
TASKS = ["edit-file", "fix-bug"]
VARIANTS = ["v1", "v2"]
SAMPLES = 3
HOSTILE_KEY = "fix-bug/v2/tiny-b/2"
SHOT_KEY = "edit-file/v1/oracle/0"
SHOT_SIZE = (48, 32)

SCRIPT = "<script>window.__pwned=1</script>"
HOSTILE = "\n".join([
    SCRIPT,
    '<img src=x onerror="window.__pwned=2">',
    '<a href="javascript:window.__pwned=3">click</a>',
    '<svg onload="window.__pwned=4">',
    '"><script>window.__pwned=5</script>',
    "lone surrogate \ud800 and a NUL \x00 byte",
])
HUGE_LINE = "<b>" + "y" * 1_000_000 + "</b>"  # one line of a million characters


@dataclass
class BuiltSite:
    root: Path
    index: Path
    trial_ids: dict[str, str]  # key -> trial_id
    pages: list[Path]
    tmp: Path

    def trial_page(self, key: str) -> Path:
        return self.root / "trials" / f"{self.trial_ids[key]}.html"


@dataclass
class Visit:
    """What one page showed the browser."""

    seconds: float
    errors: list[str]
    links: list[str]
    scripts: int
    handlers: list[str]
    ids: set[str] = field(default_factory=set)
    overflow: int = 0  # pixels the page is wider than the window


def _png(width: int, height: int) -> bytes:
    """A real RGB PNG with a gradient, written without Pillow."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 5 % 256, y * 7 % 256, 128))
                   for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _fingerprint(model: str, host: str = "bench-host") -> Fingerprint:
    return Fingerprint(agenteval_version="0.test", host=host, platform="linux", cpu_count=4, docker_version="27.0",
                       image="agenteval/python:test", model=model, provider="oracle" if model == "oracle" else "openai",
                       model_info={} if model == "oracle" else {"server": "llama.cpp", "quantization": "Q4_K_M"})


def _calls(model: str, sample: int) -> list[ModelCall]:
    if model == "oracle":
        return []
    tps = 42.0 + sample if model == "tiny-a" else 118.0 + 2 * sample
    ttft = 0.21 if model == "tiny-a" else 0.48
    return [ModelCall(index=i, model=model, prompt_tokens=300 + 50 * i, completion_tokens=80, ttft_s=ttft,
                      ttfat_s=ttft + 0.1, decode_s=80 / tps, decode_tokens_per_s=tps, e2e_s=ttft + 80 / tps,
                      finish_reason="stop") for i in range(2)]


def _passes(model: str, variant: str, sample: int) -> bool:
    return model == "oracle" or (model == "tiny-a" and sample != 2) or (model == "tiny-b" and variant == "v1" and sample == 0)


def _trial(key: str, trial_id: str, started: Any) -> TrialRecord:
    task, variant, model, sample_text = key.split("/")
    sample = int(sample_text)
    passed = _passes(model, variant, sample)
    checks = [Check(name="file out.txt exists", passed=True),
              Check(name="file out.txt content", passed=passed, message="" if passed else "expected 'hi', found 'ho'")]
    failure = None if passed else [FailureMode.verify_failed, FailureMode.agent_limit, FailureMode.model_error][sample]
    return TrialRecord(
        trial_id=trial_id, run_id=RUN_ID, key=key, task=task, task_path=f"tasks/{task}", task_hash="abc123",
        variant=variant, sample=sample, model=model, passed=passed, score=Verdict.from_checks(checks).score,
        failure_mode=failure, error=None if failure is None else f"{failure.value}: see the checks",
        started_at=started, finished_at=started + timedelta(seconds=3), duration_s=3.0, setup_s=0.5, agent_s=2.0,
        verify_s=0.4, teardown_s=0.1, verdict=Verdict.from_checks(checks),
        execs=[ExecRecord(phase="agent", user="1000", command="cat out.txt", exit_code=0, duration_s=0.05, stdout="hi\n")],
        model_calls=_calls(model, sample),
        transcript=[{"role": "system", "content": "You are an agent."},
                    {"role": "user", "content": f"Do task {task} ({variant})."},
                    {"role": "assistant", "content": "Writing the file.",
                     "tool_calls": [{"name": "write_file", "arguments": {"path": "out.txt", "content": "hi\n"}}]},
                    {"role": "tool", "name": "write_file", "content": "wrote 3 bytes"}],
        fingerprint=_fingerprint(model),
    )


def _hostile(record: TrialRecord) -> TrialRecord:
    """The same trial, with model, verifier and sandbox output written to break the page."""
    checks = [Check(name="hostile " + HOSTILE, passed=False, message=HOSTILE + "\n" + HUGE_LINE),
              Check(name="plain", passed=True)]
    # validated like any record the runner commits (model_copy would skip validation)
    return TrialRecord.model_validate({**record.model_dump(), **{
        "passed": False, "failure_mode": FailureMode.verify_failed, "score": 0.5,
        "error": HOSTILE + HUGE_LINE,
        "verdict": Verdict.from_checks(checks),
        "execs": [ExecRecord(phase="verify", user="1001", command="echo " + HOSTILE, exit_code=1, duration_s=0.2,
                             stdout=HOSTILE + "\n" + HUGE_LINE, stderr=HOSTILE, stdout_bytes=1_000_100)],
        "model_calls": [c.model_copy(update={"error": HOSTILE, "finish_reason": HOSTILE}) for c in record.model_calls],
        "transcript": [
            {"role": "user", "content": HOSTILE},
            {"role": "assistant", "content": HOSTILE + "\n" + HUGE_LINE, "reasoning": HOSTILE,
             "tool_calls": [{"name": "write_file", "arguments": {"path": HOSTILE, "content": HOSTILE + HUGE_LINE}},
                            {"name": "run " + HOSTILE, "arguments": '{"cmd": "' + SCRIPT + '"}'}]},
            {"role": HOSTILE, "name": HOSTILE, "content": HOSTILE},
        ],
        "artifacts": [Artifact(name=HOSTILE, path="javascript:window.__pwned=7", size=1, media_type="image/png"),
                      Artifact(name="passwd", path="../../../../etc/passwd", size=1, media_type="text/plain")],
        # the latest trial of its model: the leaderboard's fingerprint table shows this one
        "fingerprint": _fingerprint(record.model, host=HOSTILE),
        "started_at": record.started_at + timedelta(hours=1),
        "finished_at": record.finished_at + timedelta(hours=1),
    }})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    tmp = tmp_path_factory.mktemp("report-browser")
    reports = tmp / "reports"
    start = utcnow()
    keys = [f"{t}/{v}/{m}/{s}" for t in TASKS for v in VARIANTS for m in MODELS for s in range(SAMPLES)]
    ids = {k: "t" + hashlib.sha1(k.encode()).hexdigest()[:12] for k in keys}
    records = [_trial(k, ids[k], start + timedelta(seconds=i)) for i, k in enumerate(keys)]
    records = [_hostile(r) if r.key == HOSTILE_KEY else r for r in records]
    shot = _png(*SHOT_SIZE)
    shot_dir = reports / RUN_ID / "artifacts" / ids[SHOT_KEY]
    shot_dir.mkdir(parents=True)
    (shot_dir / "shot.png").write_bytes(shot)
    records = [r.model_copy(update={"artifacts": [Artifact(name="shot.png", path=f"artifacts/{r.trial_id}/shot.png",
                                                            size=len(shot), media_type="image/png")]})
               if r.key == SHOT_KEY else r for r in records]
    with Store(tmp / "agenteval.duckdb") as store:
        store.save_run(RunRecord(run_id=RUN_ID, started_at=start, finished_at=start + timedelta(minutes=5),
                                 status="completed", agenteval_version="0.test", models=MODELS, tasks=TASKS,
                                 samples=SAMPLES, concurrency=2, config={"out": str(reports)}))
        store.commit_trials(records)
        index = render_report(store, [RUN_ID], tmp / "site")
    root = index.parent
    pages = sorted(root.rglob("*.html"))
    return BuiltSite(root=root, index=index, trial_ids=ids, pages=pages, tmp=tmp)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    reason = browser_missing()
    if reason:
        missing("browser", reason)
    with headless_chromium() as d:
        yield d


_INSPECT = """
const all = Array.from(document.querySelectorAll('*'));
return [document.querySelectorAll('script').length,
        all.flatMap(e => Array.from(e.attributes).filter(a => a.name.toLowerCase().startsWith('on'))
                              .map(a => e.tagName + ' ' + a.name)),
        all.map(e => e.id).filter(i => i),
        document.documentElement.scrollWidth - document.documentElement.clientWidth];
"""


def _visit(driver: Any, page: Path) -> Visit:
    driver.get_log("browser")  # drop what earlier pages logged
    began = time.monotonic()
    driver.get(page.as_uri())
    seconds = time.monotonic() - began
    scripts, handlers, ids, overflow = driver.execute_script(_INSPECT)
    return Visit(seconds=seconds, errors=console_errors(driver), links=page_links(driver), scripts=scripts,
                 handlers=handlers, ids=set(ids), overflow=overflow)


@pytest.fixture(scope="module")
def visits(built: BuiltSite, driver: Any) -> dict[str, Visit]:
    """Every page of the site, loaded once in Chromium (the tests over every page need some)."""
    pages = {p.relative_to(built.root).as_posix(): _visit(driver, p) for p in built.pages}
    assert {"index.html", "trials/page-1.html"} <= set(pages) and len(pages) > 5, sorted(pages)
    return pages


def test_the_site_has_every_kind_of_page(built: BuiltSite) -> None:
    names = {p.relative_to(built.root).as_posix() for p in built.pages}
    assert "index.html" in names and "trials/page-1.html" in names
    assert len([n for n in names if n.startswith("tasks/")]) == len(TASKS)
    assert len([n for n in names if n.startswith("pairs/")]) == 3  # every pair of three models
    assert {f"trials/{i}.html" for i in built.trial_ids.values()} <= names


def test_every_page_loads_without_console_errors(visits: dict[str, Visit]) -> None:
    errors = {page: v.errors for page, v in visits.items() if v.errors}
    assert not errors, f"console errors: {errors}"


def test_every_page_has_its_landmark(visits: dict[str, Visit]) -> None:
    wanted = {"index.html": {"leaderboard", "chart"}, "trials/page-1.html": {"trial-list"}}
    for page, v in visits.items():
        need = wanted.get(page) or ({"p-value"} if page.startswith("pairs/") else
                                    {"outcome", "checks"} if page.startswith("trials/t") else {"variants"})
        assert need <= v.ids, f"{page} lacks {need - v.ids}"


def test_no_page_has_a_script_or_an_event_handler(visits: dict[str, Visit]) -> None:
    bad = {page: (v.scripts, v.handlers) for page, v in visits.items() if v.scripts or v.handlers}
    assert not bad, f"pages with <script> elements or on* attributes: {bad}"


def test_no_page_is_wider_than_the_window(visits: dict[str, Visit]) -> None:
    # long unbroken text (a minified file, a base64 blob) wraps or scrolls in its box, not the whole page
    wide = {page: f"{v.overflow} px too wide" for page, v in visits.items() if v.overflow > 0}
    assert not wide, f"pages that scroll sideways at 1280 px: {wide}"


def test_every_link_and_image_is_a_file_of_the_site(built: BuiltSite, visits: dict[str, Visit]) -> None:
    root = built.root.resolve()
    broken = []
    for page, v in visits.items():
        assert v.links, f"{page} has no links at all"
        here = (built.root / page).parent
        for link in v.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                broken.append(f"{page}: {link!r} is not a relative link")
                continue
            target = (here / unquote(parts.path)).resolve() if parts.path else (built.root / page).resolve()
            if not target.is_relative_to(root) or not target.is_file():
                broken.append(f"{page}: {link!r} -> {target} is not a file of the site")
            elif parts.fragment and f'id="{parts.fragment}"' not in target.read_text(errors="replace"):
                broken.append(f"{page}: {link!r}: no element with id {parts.fragment!r} in {target.name}")
    assert not broken, "\n".join(broken)


def test_leaderboard_shows_three_models_and_the_chart(built: BuiltSite, driver: Any, visits: dict[str, Visit]) -> None:
    driver.get(built.index.as_uri())
    rows = driver.execute_script("return Array.from(document.querySelectorAll('#leaderboard tr[id]'), "
                                 "r => r.querySelector('th').innerText.trim());")
    assert sorted(rows) == sorted(MODELS)
    assert rows[0] == "oracle"  # it passed everything
    circles = driver.execute_script("return document.querySelectorAll('#chart circle').length;")
    assert circles == 2  # tiny-a and tiny-b report decode speed; the oracle calls no model
    box = driver.execute_script("const r = document.querySelector('#chart').getBoundingClientRect(); "
                                "return [r.width, r.height];")
    assert box[0] > 200 and box[1] > 100, f"the chart is drawn {box[0]}x{box[1]}"
    # a model's name wraps at most at word-ish widths, never one letter a line (seen at 1400 px)
    widths = driver.execute_script("return Array.from(document.querySelectorAll('#leaderboard tr[id] th'), "
                                   "th => th.getBoundingClientRect().width);")
    assert min(widths) >= 90, f"model names squeezed to {min(widths):.0f} px"


def test_leaderboard_screenshot_is_not_blank(built: BuiltSite, driver: Any) -> None:
    driver.get(built.index.as_uri())
    shot = built.tmp / "leaderboard.png"
    full_page_screenshot(driver, str(shot))
    size = driver.get_window_size()
    driver.get("about:blank")
    blank = built.tmp / "blank.png"
    driver.set_window_size(size["width"], size["height"])
    driver.save_screenshot(str(blank))
    assert shot.read_bytes() != blank.read_bytes()
    blank_px = decode_png(blank.read_bytes())
    assert len(blank_px.colours()) == 1 and blank_px.non_white() == 0  # the decoder sees a blank page as blank
    px = decode_png(shot.read_bytes())
    assert px.width >= 1000 and px.height >= size["height"]
    colours = px.colours()
    assert len(colours) > 64, f"only {len(colours)} colours in {shot}"
    assert px.non_white() > 0.01 * px.width * px.height, f"{shot} is nearly all white"
    assert {b"\x2d\xa4\x4e", b"\x1a\x7f\x37"} & colours, "none of the report's greens (pass bars, text) is drawn"


def test_hostile_trial_stays_text(built: BuiltSite, driver: Any, visits: dict[str, Visit]) -> None:
    page = built.trial_page(HOSTILE_KEY)
    rel = page.relative_to(built.root).as_posix()
    v = visits[rel]
    assert v.seconds < 5, f"the hostile trial's page took {v.seconds:.1f} s to load"
    assert page.stat().st_size < 300_000, f"the million-character line was not clipped: {page.stat().st_size} bytes"
    driver.get(page.as_uri())
    assert driver.execute_script("return window.__pwned") is None
    assert console_errors(driver) == []
    text = driver.execute_script("return document.body.innerText")
    assert SCRIPT in text
    assert '<img src=x onerror="window.__pwned=2">' in text
    assert "more characters not shown" in text
    assert driver.execute_script("return document.querySelectorAll('script').length") == 0
    assert driver.execute_script("return document.querySelectorAll('a[href^=\"javascript:\" i]').length") == 0
    assert driver.execute_script("return document.querySelectorAll('svg[onload], img[onerror]').length") == 0
    assert v.handlers == [] and v.scripts == 0


def test_hostile_text_is_inert_on_every_page_that_shows_it(built: BuiltSite, visits: dict[str, Visit]) -> None:
    # the trial list shows the error and the leaderboard the latest fingerprint: both hostile
    for rel in ("trials/page-1.html", "index.html"):
        assert "&lt;script&gt;window.__pwned=1" in (built.root / rel).read_text(errors="replace"), rel
        links = visits[rel].links
        assert links and not any("javascript:" in link.lower() for link in links), rel


def test_screenshot_of_a_trial_loads_from_the_copied_artifacts(built: BuiltSite, driver: Any) -> None:
    trial_id = built.trial_ids[SHOT_KEY]
    copied = built.root / "artifacts" / trial_id / "shot.png"
    assert copied.is_file(), "the screenshot was not copied into the site"
    driver.get(built.trial_page(SHOT_KEY).as_uri())
    size = driver.execute_script("const i = document.querySelector('img.shot'); "
                                 "return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null;")
    assert size == list(SHOT_SIZE)


# -- the quantization ladder page ------------------------------------------------------------
# label -> (bits per weight, GB, passes of 12, decode tok/s, mean KL); a KV-cache rung and a requantized one
LADDER = {"F16": (16.0, 16.1, 12, 21.0, None), "Q8_0": (8.5, 8.5, 12, 36.0, 0.0012),
          "Q5_K_M": (5.7, 5.7, 11, 48.0, 0.01), "Q4_K_M": (4.9, 4.9, 11, 55.0, 0.03),
          "Q4_K_M@kv=q8_0": (4.9, 4.9, 10, 53.0, 0.035), "Q2_K": (2.6, 3.0, 1, 70.0, 0.85)}
REQUANTIZED = "Q5_K_M"


def _ladder_trial(model: str, task: str, sample: int, passed: bool, start: Any) -> TrialRecord:
    decode = LADDER[model][3]
    call = ModelCall(model=model, prompt_tokens=400, completion_tokens=90, reasoning_tokens=30, ttft_s=0.3,
                     decode_tokens_per_s=decode * 0.9, e2e_s=2.0,
                     server_timings={"prompt_n": 400, "prompt_ms": 200.0, "prompt_per_second": 2000.0,
                                     "predicted_n": 90, "predicted_ms": 90_000 / decode,
                                     "predicted_per_second": decode, "cache_n": 0})
    key = f"{task}/v1/{model}/{sample}"
    return TrialRecord(
        trial_id="l" + hashlib.sha1(key.encode()).hexdigest()[:12], run_id="ladder-run", key=key, task=task,
        task_path=f"tasks/{task}", task_hash="abc", variant="v1", sample=sample, model=model, passed=passed,
        failure_mode=None if passed else FailureMode.verify_failed, started_at=start, finished_at=start,
        duration_s=2.0, model_calls=[call], fingerprint=_fingerprint(model).model_copy(
            update={"model_info": {"sampling": {"temperature": 0.7, "seed": 0}, "sample_seeds": True}}))


@pytest.fixture(scope="module")
def ladder_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ladder")
    start = utcnow()
    with Store(tmp / "agenteval.duckdb") as store:
        store.save_run(RunRecord(run_id="ladder-run", started_at=start, agenteval_version="0.test",
                                 models=list(LADDER), tasks=TASKS, samples=6, concurrency=1, config={"out": str(tmp)}))
        records = []
        for model, (bpw, gb, passes, _, kl) in LADDER.items():
            requantized = model == REQUANTIZED
            store.save_rung(RungRecord(
                run_id="ladder-run", model=model, quant=model.split("@")[0], reference=model == "F16",
                kv_cache="q8_0" if "@kv=" in model else None,
                provenance="reference (F16)" if model == "F16" else
                "requantized from Q8_0" if requantized else "quantized from F16", requantized=requantized,
                source="tiny-f16.gguf", source_quant="F16", source_sha256="ab" * 32, path=f"{model}.gguf",
                file_bytes=int(gb * 1e9), file_sha256=hashlib.sha256(model.split("@")[0].encode()).hexdigest(),
                params=8_000_000_000, bits_per_weight=bpw,
                quantize_s=None if model == "F16" else 30.0, kl_mean=kl, top1_agreement=None if kl is None else 1 - kl,
                kl_tokens=None if kl is None else 4096, kl_error=HOSTILE if model == "Q2_K" else None))
            store.commit_serving(ServingRecord(run_id="ladder-run", model=model, started_at=start, stopped_at=start,
                                               load_s=3.5, peak_rss_bytes=int(gb * 1.1e9), trials=12))
            records += [_ladder_trial(model, t, s, i < passes, start + timedelta(seconds=i))
                        for i, (t, s) in enumerate((t, s) for t in TASKS for s in range(6))]
        store.commit_trials(records)
        index = render_report(store, ["ladder-run"], tmp / "site")
    return index.parent / "ladder.html"


def test_ladder_page_draws_its_charts_and_a_readable_table(ladder_page: Path, driver: Any) -> None:
    index = ladder_page.parent / "index.html"
    v = _visit(driver, index)
    assert "ladder.html" in v.links and "ladder-link" in v.ids
    v = _visit(driver, ladder_page)
    assert v.errors == [] and v.scripts == 0 and v.handlers == []
    assert v.overflow <= 0, f"the ladder page is {v.overflow} px wider than the window"
    assert {"ladder-verdict", "ladder-rungs", "ladder-success", "ladder-speed", "ladder-kl"} <= v.ids
    for link in v.links:
        assert not urlsplit(link).scheme and (ladder_page.parent / unquote(urlsplit(link).path)).is_file(), link
    charts = driver.execute_script(
        "return Array.from(document.querySelectorAll('svg.ladder-chart'), s => { const r = s.getBoundingClientRect();"
        " return [s.id, r.width, r.height, s.querySelectorAll('circle').length]; });")
    assert [c[0] for c in charts] == ["chart-pass", "chart-decode", "chart-kl", "chart-pareto"]
    for chart_id, width, height, points in charts:
        assert width > 200 and height > 100, f"{chart_id} is drawn {width}x{height}"
        assert points == (len(LADDER) - 1 if chart_id == "chart-kl" else len(LADDER)), chart_id
    # every rung's label is on one line, in every table, the KV-cache rung's included
    labels = driver.execute_script(
        "return Array.from(document.querySelectorAll('table span.rung'), "
        "s => [s.innerText, s.getClientRects().length, s.closest('th').getBoundingClientRect().width]);")
    assert len(labels) == 4 * len(LADDER)
    squeezed = [(text, lines, width) for text, lines, width in labels if lines != 1 or width < 80]
    assert not squeezed, f"rung names squeezed: {squeezed}"
    notes = driver.execute_script(
        "return Array.from(document.querySelectorAll('svg.ladder-chart'), s => Array.from(s.querySelectorAll('text'),"
        " t => t.textContent).filter(t => t.includes('requantized from Q8_0')));")
    assert notes == [[f"{REQUANTIZED}(requantized from Q8_0)"]] * 4  # its point's label in every chart
    rows = driver.execute_script("return Array.from(document.querySelectorAll('table tr > th:first-child'), "
                                 "th => th.innerText).filter(t => t.startsWith('Q5_K_M'));")
    assert rows == [f"{REQUANTIZED} (requantized from Q8_0)"] * 4  # and its row in every table
    text = driver.execute_script("return document.body.innerText")
    assert SCRIPT in text and driver.execute_script("return window.__pwned") is None
    sentence = driver.execute_script("return document.getElementById('ladder-verdict').innerText")
    # Q4_K_M and its q8_0-cache twin share a file: the one more often right on its pairs wins the tie
    assert sentence.startswith("Q4_K_M is the smallest rung not significantly worse than F16 (McNemar p = 1 on 12 ")
