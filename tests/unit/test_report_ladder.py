"""The quantization ladder page from real DuckDB files: the sentence in each case, the pairing
behind McNemar's test, the Pareto front, "-" for what was not measured, and hostile text."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agenteval.records import (
    FailureMode, Fingerprint, ModelCall, RungRecord, RunRecord, ServingRecord, TrialRecord, utcnow,
)
from agenteval.report import render_report
from agenteval.report.ladder import load_ladder, load_ladders
from agenteval.report.ladder_pairs import MIN_PAIRS
from agenteval.store import Store

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="alert(2)">'
TASKS = ("folder", "translate")
VARIANTS = ("v1", "v2")
GB = 10**9
# how ``agenteval ladder`` serves rungs at temperature > 0: sample i is sent seed i on every rung
SEEDED: dict[str, Any] = {"sampling": {"temperature": 0.7, "seed": 0}, "sample_seeds": True}
GREEDY: dict[str, Any] = {"sampling": {"temperature": 0.0, "seed": 0}, "sample_seeds": True}
# label -> (quant, bits per weight, file bytes)
RUNGS = {"F16": ("F16", 16.0, 16 * GB), "Q8_0": ("Q8_0", 8.5, 8 * GB), "Q4_K_M": ("Q4_K_M", 4.9, 5 * GB),
         "Q2_K": ("Q2_K", 2.6, 3 * GB)}


def rung(run_id: str, model: str, **extra: Any) -> RungRecord:
    quant, bpw, size = RUNGS.get(model, ("Q3_K_M", 3.9, 4 * GB))
    data: dict[str, Any] = dict(
        run_id=run_id, model=model, quant=quant, reference=model == "F16",
        provenance="reference (F16)" if model == "F16" else "quantized from F16", source="m-f16.gguf",
        source_quant="F16", source_sha256="ab" * 32, path=f"/cache/{model}.gguf", file_bytes=size,
        file_sha256=hashlib.sha256(model.encode()).hexdigest(), params=8 * GB, bits_per_weight=bpw,
        quantize_s=None if model == "F16" else 42.0)
    data.update(extra)
    return RungRecord.model_validate(data)


def trial(run_id: str, model: str, task: str, variant: str, sample: int, passed: bool,
          timings: dict[str, Any] | None = None, own_tps: float | None = 10.0,
          model_info: dict[str, Any] | None = None, failure: FailureMode | None = None) -> TrialRecord:
    now = utcnow() + timedelta(seconds=sample)
    key = f"{task}/{variant}/{model}/{sample}"
    call = ModelCall(model=model, prompt_tokens=100, completion_tokens=50, reasoning_tokens=20, ttft_s=0.25,
                     decode_tokens_per_s=own_tps, e2e_s=2.0, server_timings=timings or {})
    return TrialRecord(
        trial_id=f"{run_id}-{key}".replace("/", "-"), run_id=run_id, key=key, task=task, task_path=f"tasks/{task}",
        task_hash="h", variant=variant, sample=sample, model=model, passed=passed,
        failure_mode=None if passed else failure or FailureMode.verify_failed, started_at=now, finished_at=now,
        duration_s=3.0, model_calls=[call],
        fingerprint=Fingerprint(agenteval_version="0", host="h", platform="p", model=model, provider="openai",
                                model_info=SEEDED if model_info is None else model_info))


def server(decode: float) -> dict[str, Any]:
    """llama-server's timings of one call."""
    return {"prompt_n": 100, "prompt_ms": 100.0, "prompt_per_second": 1000.0, "predicted_n": 50,
            "predicted_ms": 50_000 / decode, "predicted_per_second": decode, "cache_n": 0}


def build(tmp_path: Path, passes: dict[str, int], run_id: str = "lad", samples: int = 5,
          rungs: list[RungRecord] | None = None, decode: dict[str, float] | None = None,
          db: Path | None = None, model_info: dict[str, Any] | None = None) -> Path:
    """A ladder run: each rung passes its first ``passes[model]`` trials (in task, variant, sample
    order) of len(TASKS) x len(VARIANTS) x samples."""
    db = db or tmp_path / "db.duckdb"
    rungs = rungs or [rung(run_id, m) for m in passes]
    decode = decode or {"F16": 20.0, "Q8_0": 30.0, "Q4_K_M": 50.0, "Q2_K": 70.0}
    with Store(db) as store:
        store.save_run(RunRecord(run_id=run_id, started_at=utcnow(), agenteval_version="0", models=list(passes),
                                 tasks=list(TASKS), samples=samples, concurrency=1, config={"out": str(tmp_path)}))
        for r in rungs:
            store.save_rung(r)
        records = []
        for model, n in passes.items():
            cells = [(t, v, s) for t in TASKS for v in VARIANTS for s in range(samples)]
            records += [trial(run_id, model, t, v, s, i < n, server(decode.get(model, 10.0)), model_info=model_info)
                        for i, (t, v, s) in enumerate(cells)]
        store.commit_trials(records)
    return db


def sentence(db: Path, run_id: str = "lad") -> str:
    with Store(db, read_only=True) as store:
        return load_ladder(store, run_id).sentence


def render(db: Path, tmp_path: Path, run_ids: list[str] | None = None) -> Path:
    with Store(db, read_only=True) as store:
        return render_report(store, run_ids or ["lad"], tmp_path / "site").parent


def row(page: str, table: str, label: str) -> list[str]:
    """The cells of ``label``'s row in the table with id ``table``, tags stripped."""
    body = page.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
        if cells and cells[0].split(" (")[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in {table}")


def test_a_clear_winner_is_the_smallest_rung_not_significantly_worse(tmp_path: Path) -> None:
    db = build(tmp_path, {"F16": 20, "Q8_0": 20, "Q4_K_M": 18, "Q2_K": 0})
    assert sentence(db) == ("Q4_K_M is the smallest rung not significantly worse than F16 "
                            "(McNemar p = 0.5 on 20 paired trials): 3.2x smaller, 2.5x faster.")


def test_a_significantly_better_rung_counts_as_not_worse(tmp_path: Path) -> None:
    db = build(tmp_path, {"F16": 0, "Q8_0": 0, "Q2_K": 20})
    assert sentence(db).startswith("Q2_K is the smallest rung not significantly worse than F16 "
                                   "(significantly better: McNemar p = 1.9e-06 on 20 paired trials): 5.3x smaller")


def test_every_rung_significantly_worse(tmp_path: Path) -> None:
    db = build(tmp_path, {"F16": 20, "Q8_0": 5, "Q4_K_M": 0, "Q2_K": 0})
    assert sentence(db) == ("Every rung is significantly worse than F16 on these tasks; the best, Q8_0, passed 25% "
                            "of its 20 paired trials to F16's 100% (McNemar p = 6.1e-05).")


def test_every_rung_failing_every_trial_ranks_by_kl(tmp_path: Path) -> None:
    rungs = [rung("lad", "F16"), rung("lad", "Q8_0", kl_mean=0.0012), rung("lad", "Q4_K_M", kl_mean=0.05),
             rung("lad", "Q2_K", kl_mean=0.85)]
    db = build(tmp_path, {"F16": 0, "Q8_0": 0, "Q4_K_M": 0, "Q2_K": 0}, rungs=rungs)
    assert sentence(db) == ("No rung passed any trial, so task success cannot rank them; by KL divergence Q8_0 "
                            "is closest to F16 (0.0012) and Q2_K farthest (0.85).")


def test_too_few_pairs_to_tell_says_how_many(tmp_path: Path) -> None:
    db = build(tmp_path, {"F16": 4, "Q8_0": 0}, samples=1)  # 4 pairs: even 4 of 4 against it is p = 0.125
    assert MIN_PAIRS == 6
    assert sentence(db) == ("With at most 4 paired trials per rung against F16, McNemar's exact test cannot show "
                            "a difference at the 5% level (that takes at least 6), so nothing can be concluded "
                            "about task success; no KL divergence was measured either.")


def test_no_paired_trials(tmp_path: Path) -> None:
    db = tmp_path / "db.duckdb"
    with Store(db) as store:
        store.save_run(RunRecord(run_id="lad", started_at=utcnow(), agenteval_version="0", models=["F16", "Q8_0"],
                                 tasks=["a", "b"], samples=1, concurrency=1))
        store.save_rung(rung("lad", "F16"))
        store.save_rung(rung("lad", "Q8_0", kl_mean=0.002))
        store.commit_trials([trial("lad", "F16", "a", "v", 0, True), trial("lad", "Q8_0", "b", "v", 0, True)])
    assert sentence(db) == ("No rung has a trial paired with one of F16's (same task, variant and sample), so "
                            "nothing can be concluded about task success; by KL divergence Q8_0 is 0.002 from F16.")


def test_requantized_rung_is_labelled_everywhere_it_appears(tmp_path: Path) -> None:
    note = "requantized from Q4_1"
    rungs = [rung("lad", "F16"), rung("lad", "Q8_0", kl_mean=0.001),
             rung("lad", "Q4_K_M", provenance=note, requantized=True, kl_mean=0.03), rung("lad", "Q2_K", kl_mean=0.9)]
    db = build(tmp_path, {"F16": 20, "Q8_0": 20, "Q4_K_M": 18, "Q2_K": 0}, rungs=rungs)
    assert sentence(db).startswith(f"Q4_K_M ({note}) is the smallest rung not significantly worse than F16")
    page = (render(db, tmp_path) / "ladder.html").read_text()
    for table in ("ladder-rungs", "ladder-success", "ladder-speed", "ladder-kl"):
        assert row(page, table, "Q4_K_M")[0] == f"Q4_K_M ({note})", table
    for chart in ("chart-pass", "chart-decode", "chart-kl", "chart-pareto"):
        svg = page.split(f'id="{chart}"', 1)[1].split("</svg>", 1)[0]
        assert "Q4_K_M<tspan" in svg and f"({note})</tspan>" in svg, chart
        assert svg.count(note) == 2, chart  # the label's second line and the point's title
    assert note not in row(page, "ladder-rungs", "Q8_0")[0]


def test_pairs_only_count_trials_both_rungs_ran(tmp_path: Path) -> None:
    db = tmp_path / "db.duckdb"
    with Store(db) as store:
        store.save_run(RunRecord(run_id="lad", started_at=utcnow(), agenteval_version="0", models=["F16", "Q8_0"],
                                 tasks=["a"], samples=3, concurrency=1))
        store.save_rung(rung("lad", "F16"))
        store.save_rung(rung("lad", "Q8_0"))
        store.commit_trials([
            trial("lad", "F16", "a", "v", 0, True), trial("lad", "Q8_0", "a", "v", 0, False),  # b
            trial("lad", "F16", "a", "v", 1, False), trial("lad", "Q8_0", "a", "v", 1, True),  # c
            trial("lad", "F16", "a", "v", 2, True), trial("lad", "Q8_0", "a", "v", 2, True),  # both
            trial("lad", "F16", "a", "v", 3, True),  # the rung never ran sample 3: no pair
            trial("lad", "Q8_0", "a", "v", 4, False),  # the reference never ran sample 4: no pair
            trial("lad", "Q8_0", "a", "w", 0, False),  # another variant: no pair
        ])
    with Store(db, read_only=True) as store:
        ladder = load_ladder(store, "lad")
    q8 = ladder.rungs[1]
    assert q8.paired is not None and ladder.rungs[0].paired is None
    assert (q8.paired.pairs, q8.paired.both, q8.paired.ref_only, q8.paired.rung_only) == (3, 1, 1, 1)
    assert q8.paired.p_value == 1.0 and not q8.paired.testable
    assert (q8.overall.passed, q8.overall.trials) == (2, 5)  # pass@1 counts every trial, paired or not


def test_pareto_front_of_file_size_against_pass_rate(tmp_path: Path) -> None:
    rungs = [rung("lad", m) for m in ("F16", "Q8_0", "Q4_K_M", "Q3_K_M", "Q2_K")]
    db = build(tmp_path, {"F16": 20, "Q8_0": 20, "Q4_K_M": 18, "Q3_K_M": 0, "Q2_K": 0}, rungs=rungs)
    with Store(db, read_only=True) as store:
        ladder = load_ladder(store, "lad")
    # F16: as often right as Q8_0 but larger; Q3_K_M: as often wrong as Q2_K but larger
    assert ladder.front == {"Q8_0", "Q4_K_M", "Q2_K"}
    pareto = ladder.charts["pareto"]
    assert pareto is not None and {m.datum.label: m.datum.highlight for m in pareto.marks} == {
        "F16": False, "Q8_0": True, "Q4_K_M": True, "Q3_K_M": False, "Q2_K": True}
    xs = [float(p.split(",")[0]) for p in pareto.line.split()]
    assert len(xs) == 3 and xs == sorted(xs)


def test_missing_figures_show_a_dash_and_server_figures_win(tmp_path: Path) -> None:
    db = tmp_path / "db.duckdb"
    now = utcnow()
    with Store(db) as store:
        store.save_run(RunRecord(run_id="lad", started_at=now, agenteval_version="0",
                                 models=["F16", "Q8_0", "Q4_K_M"], tasks=["a"], samples=2, concurrency=1))
        for m in ("F16", "Q8_0"):
            store.save_rung(rung("lad", m))
        store.save_rung(rung("lad", "Q4_K_M", quantize_s=None))
        llama_cpp_python = {"prompt_n": 200, "prompt_ms": 100.0, "eval_n": 40, "eval_ms": 1000.0,
                            "eval_tokens_per_s": 40.0}
        store.commit_trials([trial("lad", "F16", "a", "v", s, True, server(20.0)) for s in range(2)]
                            + [trial("lad", "Q8_0", "a", "v", s, True, llama_cpp_python) for s in range(2)]
                            + [trial("lad", "Q4_K_M", "a", "v", s, True, None, own_tps=33.0) for s in range(2)])
        # a resumed run served F16 twice: load time of the serving with most trials, the larger peak
        for trials, load, peak, minutes in ((1, 9.0, 3 * GB, 0), (5, 4.0, 2 * GB, 5)):
            store.commit_serving(ServingRecord(run_id="lad", model="F16", started_at=now + timedelta(minutes=minutes),
                                               stopped_at=now, load_s=load, peak_rss_bytes=peak, trials=trials))
    site = render(db, tmp_path)
    page = (site / "ladder.html").read_text()
    assert row(page, "ladder-rungs", "F16")[5:] == ["-", "4.00 s", "3.00 GB"]
    assert row(page, "ladder-rungs", "Q4_K_M")[5:] == ["-", "-", "-"]
    assert row(page, "ladder-speed", "F16")[1:3] == ["1000.0", "20.0"]
    assert row(page, "ladder-speed", "Q8_0")[1:3] == ["2000.0", "40.0"]  # llama-cpp-python's figures
    assert row(page, "ladder-speed", "Q4_K_M")[1:3] == ["-", "33.0*"]  # agenteval's own, marked
    assert row(page, "ladder-speed", "F16")[3:] == ["250 ms", "150", "20"]
    assert row(page, "ladder-kl", "Q8_0")[1:7] == ["-"] * 6
    assert "agenteval's own decode figure" in page
    assert 'id="chart-kl-none"' in page  # no KL measured: said, not drawn at 0


def test_index_links_the_ladder_and_a_plain_run_has_none(tmp_path: Path) -> None:
    db = build(tmp_path, {"F16": 20, "Q8_0": 20, "Q4_K_M": 18, "Q2_K": 0})
    with Store(db) as store:
        store.save_run(RunRecord(run_id="plain", started_at=utcnow(), agenteval_version="0", models=["m"],
                                 tasks=["folder"], samples=1, concurrency=1))
        store.commit_trials([trial("plain", "m", "folder", "v1", 0, True)])
    site = render(db, tmp_path)
    index = (site / "index.html").read_text()
    assert '<a href="ladder.html">Quantization ladder</a>' in index
    assert "Q4_K_M is the smallest rung not significantly worse than F16" in index
    ladder = (site / "ladder.html").read_text()
    assert "<script" not in ladder and ladder.count("<svg") == 3 and 'id="chart-kl-none"' in ladder  # no KL
    plain = tmp_path / "plain"
    with Store(db, read_only=True) as store:
        assert load_ladders(store, ["plain"]) == []
        render_report(store, ["plain"], plain)
    assert not list(plain.glob("ladder*.html")) and "ladder" not in (plain / "index.html").read_text()


def test_several_ladders_get_a_page_each(tmp_path: Path) -> None:
    db = build(tmp_path, {"F16": 20, "Q8_0": 20}, run_id="one")
    build(tmp_path, {"F16": 20, "Q2_K": 0}, run_id="two", db=db)
    site = render(db, tmp_path, ["one", "two"])
    assert sorted(p.name for p in site.glob("ladder*.html")) == ["ladder-one.html", "ladder-two.html"]
    index = (site / "index.html").read_text()
    assert 'href="ladder-one.html"' in index and 'href="ladder-two.html"' in index


def test_hostile_rung_text_is_escaped(tmp_path: Path) -> None:
    rungs = [rung("lad", "F16"), rung("lad", HOSTILE, provenance="requantized from " + HOSTILE, requantized=True,
                                      kl_error=HOSTILE, kv_cache=HOSTILE, quantizer=HOSTILE)]
    db = build(tmp_path, {"F16": 20, HOSTILE: 20}, rungs=rungs)
    site = render(db, tmp_path)
    for name in ("ladder.html", "index.html"):
        page = (site / name).read_text()
        assert "<script" not in page and "<img" not in page, name
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page, name
    page = (site / "ladder.html").read_text()
    assert page.count("&lt;script&gt;") >= 10  # tables, charts, the error, the sentence


@pytest.mark.parametrize("passes", [{"F16": 20}, {}])
def test_a_ladder_of_only_the_reference_says_so(tmp_path: Path, passes: dict[str, int]) -> None:
    db = build(tmp_path, passes or {"F16": 0}, rungs=[rung("lad", "F16")])
    assert sentence(db) == "Only the reference, F16, was run: there is no rung to compare with it."
    assert (render(db, tmp_path) / "ladder.html").is_file()


def test_speed_ratio_compares_like_with_like(tmp_path: Path) -> None:
    # the winner is slower than the reference; its server sent no timings, so agenteval's own figures are compared
    db = tmp_path / "db.duckdb"
    with Store(db) as store:
        store.save_run(RunRecord(run_id="lad", started_at=utcnow(), agenteval_version="0", models=["F16", "Q8_0"],
                                 tasks=["a"], samples=6, concurrency=1))
        store.save_rung(rung("lad", "F16"))
        store.save_rung(rung("lad", "Q8_0"))
        store.commit_trials([trial("lad", "F16", "a", "v", s, True, server(50.0), own_tps=40.0) for s in range(6)]
                            + [trial("lad", "Q8_0", "a", "v", s, True, None, own_tps=20.0) for s in range(6)])
    assert sentence(db) == ("Q8_0 is the smallest rung not significantly worse than F16 (McNemar p = 1 on 6 paired "
                            "trials): 2.0x smaller, 2.0x slower by agenteval's own decode timing.")


def variants(model: str, passed: list[list[bool]], model_info: dict[str, Any],
             failures: dict[tuple[int, int], FailureMode] | None = None) -> list[TrialRecord]:
    """Trials of one task "a": variant v<i> has one sample per entry of ``passed[i]``;
    ``failures[(i, s)]`` says why a failing sample failed."""
    return [trial("lad", model, "a", f"v{i}", s, ok, model_info=model_info, failure=(failures or {}).get((i, s)))
            for i, samples in enumerate(passed) for s, ok in enumerate(samples)]


def ladder_of(tmp_path: Path, records: list[TrialRecord], rungs: list[RungRecord] | None = None) -> Path:
    db = tmp_path / "db.duckdb"
    rungs = rungs or [rung("lad", "F16"), rung("lad", "Q8_0")]
    with Store(db) as store:
        store.save_run(RunRecord(run_id="lad", started_at=utcnow(), agenteval_version="0",
                                 models=[r.model for r in rungs], tasks=["a"], samples=3, concurrency=1))
        for r in rungs:
            store.save_rung(r)
        store.commit_trials(records)
    return db


NOT_WORSE = "Q8_0 is the smallest rung not significantly worse than F16 (McNemar p = 1 on 8 paired task variants)"
PER_VARIANT = "one pair per task variant"


@pytest.mark.parametrize("model_info, per_sample, why", [
    (SEEDED, True, "one pair per sample: each sample has its own seed, the same on every rung"),
    (GREEDY, False, f"{PER_VARIANT}: greedy decoding repeats one outcome across samples"),
    ({"sampling": {"temperature": 0.0}}, False, f"{PER_VARIANT}: greedy decoding repeats one outcome across samples"),
    ({}, False, f"{PER_VARIANT}: the sampling temperature was not recorded"),
    ({"sampling": {"temperature": 0.7, "seed": 0}}, False,
     f"{PER_VARIANT}: the samples at temperature &gt; 0 were not each sent a seed of their own"),
])
def test_samples_pair_one_by_one_only_when_each_has_its_own_seed(
        tmp_path: Path, model_info: dict[str, Any], per_sample: bool, why: str) -> None:
    # 8 variants of 3 samples: the reference passes all 24; the rung 2 of 3 in every variant
    db = ladder_of(tmp_path, variants("F16", [[True] * 3] * 8, model_info)
                   + variants("Q8_0", [[True, True, False]] * 8, model_info))
    with Store(db, read_only=True) as store:
        ladder = load_ladder(store, "lad")
    q8 = ladder.rungs[1]
    assert q8.paired is not None
    if per_sample:  # 8 independent discordant pairs of 24
        assert (q8.paired.pairs, q8.paired.ref_only, q8.overall.passed, q8.overall.trials) == (24, 8, 16, 24)
        assert ladder.sentence.startswith("Every rung is significantly worse than F16")
    else:  # each variant passed by the majority of its samples: 8 concordant pairs
        assert (q8.paired.pairs, q8.paired.ref_only, q8.overall.passed, q8.overall.trials) == (8, 0, 8, 8)
        assert ladder.sentence.startswith(NOT_WORSE)
    page = (render(db, tmp_path) / "ladder.html").read_text()
    assert why in page.split('id="ladder-pairing"', 1)[1].split("</p>", 1)[0]
    assert f'<th class="num">paired {"trials" if per_sample else "task variants"}</th>' in page


def test_a_tied_majority_counts_as_a_failure(tmp_path: Path) -> None:
    db = ladder_of(tmp_path, variants("F16", [[True, True]] * 8, GREEDY)
                   + variants("Q8_0", [[True, False]] * 8, GREEDY))
    assert sentence(db) == ("Every rung is significantly worse than F16 on these tasks; the best, Q8_0, passed 0% of "
                            "its 8 paired task variants to F16's 100% (McNemar p = 0.0078).")


def test_greedy_replicates_are_too_few_pairs(tmp_path: Path) -> None:
    # 20 greedy trials per rung are 4 task variants: no test can reach p < 0.05
    db = build(tmp_path, {"F16": 20, "Q2_K": 0}, model_info=GREEDY)
    assert sentence(db).startswith("With at most 4 paired task variants per rung against F16, McNemar's exact test "
                                   "cannot show a difference at the 5% level")
    page = (render(db, tmp_path) / "ladder.html").read_text()
    assert row(page, "ladder-success", "Q2_K")[1].endswith("0/4") and row(page, "ladder-success", "Q2_K")[2] == "4"


def test_infrastructure_failures_are_left_out_of_pairs_and_pass_rates(tmp_path: Path) -> None:
    failures = {(0, 6): FailureMode.infra_error, (0, 7): FailureMode.sandbox_error}
    db = ladder_of(tmp_path, variants("F16", [[True] * 7 + [False]], SEEDED, {(0, 7): FailureMode.verify_error})
                   + variants("Q8_0", [[True] * 6 + [False, False]], SEEDED, failures))
    with Store(db, read_only=True) as store:
        ladder = load_ladder(store, "lad")
    f16, q8 = ladder.rungs
    assert (f16.overall.passed, f16.overall.trials, f16.left_out) == (7, 7, 1)
    assert (q8.overall.passed, q8.overall.trials, q8.left_out) == (6, 6, 2)
    assert q8.paired is not None and (q8.paired.pairs, q8.paired.both, q8.paired.ref_only) == (6, 6, 0)
    page = (render(db, tmp_path) / "ladder.html").read_text()
    assert "2 trials left out: infra/sandbox/verifier errors" in row(page, "ladder-success", "Q8_0")[1]
    assert "1 trial left out: infra/sandbox/verifier errors" in row(page, "ladder-success", "F16")[1]


def test_header_names_the_quantizer_imatrix_and_method_of_the_quantized_rungs(tmp_path: Path) -> None:
    method = "llama-perplexity --kl-divergence"
    rungs = [rung("lad", "F16", kl_method="reference", kl_mean=0.0, kl_text_origin="the tasks' prompts"),
             rung("lad", "Q8_0", quantizer="llama-quantize b5000", kl_method=method, kl_mean=0.001,
                  kl_text_origin="the tasks' prompts"),
             rung("lad", "Q4_K_M", quantizer="llama-quantize b5000", imatrix_sha256="ef" * 32, kl_method=method,
                  kl_mean=0.02, kl_text_origin="the tasks' prompts"),
             rung("lad", "Q2_K", quantizer="llama-quantize b5001", kl_error="crashed", kl_method=None)]
    db = build(tmp_path, {"F16": 20, "Q8_0": 20, "Q4_K_M": 18, "Q2_K": 0}, rungs=rungs)
    page = (render(db, tmp_path) / "ladder.html").read_text()
    header = page.split("<h1>", 1)[1].split('id="ladder-verdict"', 1)[0]
    assert "quantized with llama-quantize b5000 (Q8_0, Q4_K_M), llama-quantize b5001 (Q2_K)" in header
    assert "importance matrix <code>efefefefefefefef</code> (Q4_K_M), none (Q8_0, Q2_K)" in header
    kl = page.split('id="ladder-kl"', 1)[1].split("<h2>", 1)[0]
    assert f"by {method}." in kl and "by reference" not in kl

    plain = [rung("lad", "F16", kl_method="reference"), rung("lad", "Q8_0", quantizer="llama-quantize b5000")]
    db = build(tmp_path / "plain", {"F16": 20, "Q8_0": 20}, rungs=plain)
    page = (render(db, tmp_path / "plain") / "ladder.html").read_text()
    header = page.split("<h1>", 1)[1].split('id="ladder-verdict"', 1)[0]
    assert "quantized with llama-quantize b5000 &middot; importance matrix none &middot;" in header
    assert "by reference" not in page


def test_a_kv_cache_rung_of_the_reference_file_is_not_called_smaller(tmp_path: Path) -> None:
    f16 = rung("lad", "F16")
    kv = rung("lad", "F16@kv=q8_0", quant="F16", kv_cache="q8_0", bits_per_weight=16.0, file_bytes=16 * GB,
              file_sha256=f16.file_sha256, provenance="reference (F16), K/V cache q8_0", quantize_s=None)
    db = build(tmp_path, {"F16": 20, "F16@kv=q8_0": 20, "Q2_K": 0}, rungs=[f16, kv, rung("lad", "Q2_K")],
               decode={"F16": 20.0, "F16@kv=q8_0": 24.0, "Q2_K": 70.0})
    assert sentence(db) == ("The reference file with a q8_0 K/V cache (F16@kv=q8_0) is not significantly worse than "
                            "F16 (McNemar p = 1 on 20 paired trials): same size, 1.2x faster; every smaller rung "
                            "tested is significantly worse.")


def test_a_ladder_of_only_infrastructure_failures_says_so(tmp_path: Path) -> None:
    broken = {(0, s): FailureMode.infra_error for s in range(2)}
    db = ladder_of(tmp_path, variants("F16", [[False, False]], SEEDED, broken)
                   + variants("Q8_0", [[False, False]], SEEDED, broken))
    assert sentence(db) == ("Every trial was left out (4: infra/sandbox/verifier errors), so task success cannot "
                            "rank the rungs; no KL divergence was measured either.")
