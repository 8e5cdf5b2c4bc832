"""The quantization ladder page: one source model quantized to several rungs, every rung run
on the same tasks as one run (``agenteval ladder``), each compared with the reference rung.

A rung is compared with the reference on paired units only (a sample, or a task variant whose
samples are not independent draws: ``ladder_pairs``), so a unit one of them lacks changes
nothing; the test is McNemar's exact test, as on the pair pages. Trials of infra, sandbox or
verifier errors are in neither the pairs nor pass@1. The page says its result in one computed
sentence (``verdict``), and shows every figure a rung has, "-" where one is missing, never 0.

A run has a ladder when ``ladder_rungs`` holds rows for it; every other run costs one query.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agenteval.records import RungRecord, ServingRecord
from agenteval.report.chart import RATE_AXIS, Datum, Plot, scatter, value_axis
from agenteval.report.ladder_pairs import (
    MIN_PAIRS, NOT_THE_MODEL, PAIRING_TEXT, TRIALS_SQL, Paired, ladder_pairing, outcomes, pair_with_reference,
)
from agenteval.report.rows import Pairing, TrialRow, trial_rows
from agenteval.report.stats import Interval, Rate, quantile

if TYPE_CHECKING:
    import jinja2

    from agenteval.store import Store

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")

@dataclass(frozen=True)
class Speed:
    """Medians over a rung's model calls. ``decode_tps`` is the server's figure where it sent one,
    else agenteval's own (first to last token), and then ``decode_own`` says so."""

    prompt_tps: float | None = None
    decode_tps: float | None = None
    decode_own: bool = False
    ttft_s: float | None = None
    own_tps: float | None = None  # agenteval's own decode figure, kept to compare rungs measured alike


@dataclass(frozen=True)
class RungView:
    """One rung as the page shows it."""

    rung: RungRecord
    overall: Rate
    tasks: dict[str, Rate]
    paired: Paired | None  # None for the reference itself
    speed: Speed
    tokens_med: float | None
    reasoning_med: float | None
    load_s: float | None
    peak_rss_bytes: int | None
    left_out: int = 0  # trials of infra, sandbox or verifier errors, in neither pairs nor pass@1

    @property
    def name(self) -> str:
        return rung_name(self.rung)

    @property
    def note(self) -> str:
        """What must follow the rung's label wherever it appears: a requantized rung's provenance."""
        return self.rung.provenance if self.rung.requantized else ""


@dataclass(frozen=True)
class Ladder:
    run_id: str
    page: str
    rungs: list[RungView]
    tasks: list[str]
    front: frozenset[str]  # models on the Pareto front of file size against pass rate
    sentence: str
    charts: dict[str, Plot | None]
    pairing: Pairing

    @property
    def reference(self) -> RungView | None:
        return next((r for r in self.rungs if r.rung.reference), None)

    @property
    def per_sample(self) -> bool:
        return self.pairing == "seeded"

    @property
    def quantized(self) -> list[RungView]:
        """The rungs served from a file of their own: not the reference, nor its file with another K/V cache."""
        ref = self.reference
        return [r for r in self.rungs if not r.rung.reference and (ref is None or
                                                                    r.rung.file_sha256 != ref.rung.file_sha256)]

    def made_with(self, attr: Literal["quantizer", "imatrix_sha256"]) -> list[tuple[str | None, list[str]]]:
        """Each distinct quantizer or importance matrix of the quantized rungs with the rungs it made,
        in rung order, "none" (None) last; an unrecorded quantizer is left out."""
        groups: dict[str | None, list[str]] = {}
        for r in self.quantized:
            value = getattr(r.rung, attr)
            if value is not None or attr == "imatrix_sha256":
                groups.setdefault(value, []).append(r.name)
        return sorted(groups.items(), key=lambda g: g[0] is None)

    @property
    def kl_methods(self) -> list[str]:
        """How the measured rungs' divergence was taken (the reference's own is "reference")."""
        return list(dict.fromkeys(r.rung.kl_method for r in self.rungs if not r.rung.reference and r.rung.kl_method))

    @property
    def kl_text_rung(self) -> RungRecord | None:
        """The rung whose record names the divergence text: a measured one where one names it."""
        named = [r.rung for r in self.rungs if r.rung.kl_text_origin]
        return next((r for r in named if not r.reference), named[0] if named else None)

    @property
    def own_timing(self) -> bool:
        return any(r.speed.decode_own for r in self.rungs)

    def perplexity(self, r: RungView) -> float | None:
        """A rung's perplexity; the reference's may be recorded only beside the other rungs."""
        if r.rung.perplexity is not None or not r.rung.reference:
            return r.rung.perplexity
        return next((o.rung.reference_perplexity for o in self.rungs if o.rung.reference_perplexity is not None), None)


def rung_name(rung: RungRecord) -> str:
    """A rung's label, with "(requantized from X)" for a rung made from an already quantized file."""
    return f"{rung.model} ({rung.provenance})" if rung.requantized else rung.model


# -- reading ------------------------------------------------------------------------------

def _timing(key: str) -> str:
    return f"TRY_CAST(server_timings->>'{key}' AS DOUBLE)"


# Server figures: llama-server sends prompt_per_second / predicted_per_second; llama-cpp-python's
# log gives prompt_n + prompt_ms and eval_tokens_per_s; Ollama prompt_eval_count + _duration (ns).
_SPEED_SQL = f"""
SELECT model, median(ttft_s), median(own) FILTER (WHERE isfinite(own) AND own > 0),
       median(pt) FILTER (WHERE isfinite(pt) AND pt > 0), median(dt) FILTER (WHERE isfinite(dt) AND dt > 0)
FROM (SELECT model, ttft_s, decode_tokens_per_s AS own,
             coalesce({_timing('prompt_per_second')},
                      {_timing('prompt_n')} * 1000 / nullif({_timing('prompt_ms')}, 0),
                      {_timing('prompt_eval_count')} * 1e9 / nullif({_timing('prompt_eval_duration')}, 0)) AS pt,
             coalesce({_timing('predicted_per_second')}, {_timing('eval_tokens_per_s')}) AS dt
      FROM call_telemetry WHERE run_id = ?)
GROUP BY model"""


def ladder_run_ids(store: Store, run_ids: list[str]) -> list[str]:
    """The runs among these that are ladders, in the order given: the one query other runs pay."""
    found = {r for (r,) in store.con.execute(
        "SELECT DISTINCT run_id FROM ladder_rungs WHERE run_id IN (SELECT unnest(?))", [list(run_ids)]).fetchall()}
    return [r for r in dict.fromkeys(run_ids) if r in found]


def ladder_page(run_id: str, alone: bool) -> str:
    """``ladder.html`` for the only ladder of a site, ``ladder-<run>.html`` for each of several."""
    if alone:
        return "ladder.html"
    from agenteval.report.data import slug

    return f"ladder-{run_id if _SAFE_NAME.match(run_id) else slug(run_id)}.html"


def load_ladders(store: Store, run_ids: list[str]) -> list[Ladder]:
    found = ladder_run_ids(store, run_ids)
    return [load_ladder(store, r, ladder_page(r, len(found) == 1)) for r in found]


def load_ladder(store: Store, run_id: str, page: str = "ladder.html") -> Ladder:
    rungs = store.rungs(run_id)
    trials = trial_rows(store.con, TRIALS_SQL, [run_id])
    speeds = {m: Speed(pt, dt if dt is not None else own, dt is None and own is not None, ttft, own)
              for m, ttft, own, pt, dt in store.con.execute(_SPEED_SQL, [run_id]).fetchall()}
    served = _served(store.servings(run_id))
    mine = [t for t in trials if t.model in {r.model for r in rungs}]
    pairing = ladder_pairing(mine)
    views = _views(rungs, mine, speeds, served, per_sample := pairing == "seeded")
    front = pareto_front(views)
    return Ladder(run_id, page, views, sorted({t.task for t in mine}), front, verdict(views),
                  _charts(views, front, per_sample), pairing)


def _served(servings: list[ServingRecord]) -> dict[str, tuple[float | None, int | None]]:
    """Model -> (load seconds of the serving that ran the most trials, the largest peak memory of
    any serving). A resumed run serves a model again; the serving that ran its trials tells its
    load time, and the most memory it ever held is its peak."""
    by_model: dict[str, list[ServingRecord]] = defaultdict(list)
    for s in servings:
        by_model[s.model].append(s)
    out = {}
    for model, rows in by_model.items():
        main = max(rows, key=lambda s: (s.trials, s.started_at))
        peaks = [s.peak_rss_bytes for s in rows if s.peak_rss_bytes is not None]
        out[model] = (main.load_s, max(peaks) if peaks else None)
    return out


def _median(values: list[float | None]) -> float | None:
    return quantile([v for v in values if v is not None], 0.5)


def _views(rungs: list[RungRecord], trials: list[TrialRow], speeds: dict[str, Speed],
           served: dict[str, tuple[float | None, int | None]], per_sample: bool) -> list[RungView]:
    by_model: dict[str, list[TrialRow]] = defaultdict(list)
    for t in trials:
        by_model[t.model].append(t)
    units = {m: outcomes([t for t in ts if t.failure_mode not in NOT_THE_MODEL], per_sample)
             for m, ts in by_model.items()}
    ref = next((r for r in rungs if r.reference), None)
    ref_units = units.get(ref.model, {}) if ref else {}
    views = []
    for rung in rungs:
        mine, passed = by_model.get(rung.model, []), units.get(rung.model, {})
        per_task: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (task, _, _), ok in passed.items():
            per_task[task][0] += ok
            per_task[task][1] += 1
        load_s, peak = served.get(rung.model, (None, None))
        views.append(RungView(
            rung, Rate(sum(passed.values()), len(passed)), {k: Rate(p, n) for k, (p, n) in per_task.items()},
            None if rung.reference or ref is None else pair_with_reference(passed, ref_units, per_sample),
            speeds.get(rung.model, Speed()), _median([t.total_tokens for t in mine]),
            _median([t.reasoning_tokens for t in mine]), load_s, peak,
            left_out=sum(t.failure_mode in NOT_THE_MODEL for t in mine)))
    return views


def pareto_front(views: list[RungView]) -> frozenset[str]:
    """The rungs no other rung beats on both file size and pass rate (smaller or equal, and right as
    often or more, one of them strictly). Rungs without trials have no pass rate and are not on it."""
    ran = [v for v in views if v.overall.trials]
    return frozenset(v.rung.model for v in ran if not any(
        o.rung.file_bytes <= v.rung.file_bytes and o.overall.rate >= v.overall.rate
        and (o.rung.file_bytes < v.rung.file_bytes or o.overall.rate > v.overall.rate) for o in ran))


# -- the sentence ---------------------------------------------------------------------------

def verdict(views: list[RungView]) -> str:
    """The ladder's result in one sentence, decided by the first rule that applies.

    Pairs and pass rates count units (trials, or task variants where samples are not independent
    draws; see the module's docstring), and trials of infra, sandbox or verifier errors are none.

    1. No reference rung, or no other rung: there is nothing to compare, and it says so.
    2. No rung (the reference included) has a trial, or none passed a trial: task success cannot
       rank the rungs; the sentence ranks them by mean KL divergence instead (closest and
       farthest), or says none was measured.
    3. No rung has a unit paired with a reference unit: nothing can be concluded about task
       success; KL as in 2.
    4. No rung has enough pairs for McNemar's exact test to reach p < 0.05 even if every pair
       went against it (fewer than ``MIN_PAIRS``): says how many pairs and that nothing can be
       concluded; KL as in 2.
    5. Among the rungs with enough pairs, those not significantly worse than the reference
       (McNemar p >= 0.05, or a rung significantly better: b < c) are candidates; the smallest
       by file size wins (then fewer bits per weight, then the higher pass rate on its pairs, as
       between one file served with two KV cache types, then label). The sentence gives its p and
       pairs, size ratio = reference file bytes / rung file bytes ("x smaller"; "x larger" below
       1) and speed ratio = rung decode tok/s / reference decode tok/s ("x faster"; "x slower"
       below 1), on the server's figures where both rungs have them, else on agenteval's own
       where both have those (said so), else it says speed was not compared. A winner served
       from the reference's own file (same sha256, another K/V cache) is called "the reference
       file with a q8_0 K/V cache": "same size", the speed ratio, and that every smaller rung
       tested is significantly worse where one was.
    6. Otherwise every testable rung is significantly worse; the sentence names the best (the
       highest pass rate on its paired trials, then the highest p) beside the reference's rate
       on the same pairs.

    A requantized rung is named with its provenance ("Q4_K_M (requantized from Q4_1)")."""
    ref = next((v for v in views if v.rung.reference), None)
    if ref is None:
        return "No reference rung was recorded for this ladder, so its rungs cannot be compared with one."
    others = [v for v in views if not v.rung.reference]
    if not others:
        return f"Only the reference, {ref.name}, was run: there is no rung to compare with it."
    kl = _kl_clause(ref, others)
    if not any(v.overall.trials for v in views):
        if left_out := sum(v.left_out for v in views):
            return (f"Every trial was left out ({left_out}: infra/sandbox/verifier errors), so task success "
                    f"cannot rank the rungs; {kl}")
        return f"No trials were recorded, so task success cannot rank the rungs; {kl}"
    if not any(v.overall.passed for v in views):
        return f"No rung passed any trial, so task success cannot rank them; {kl}"
    paired = [(v, v.paired) for v in others if v.paired is not None and v.paired.pairs]
    if not paired:
        per_sample = all(v.paired is None or v.paired.per_sample for v in others)
        same = "task, variant and sample" if per_sample else "task and variant"
        return (f"No rung has a trial paired with one of {ref.name}'s (same {same}), "
                f"so nothing can be concluded about task success; {kl}")
    testable = [(v, p) for v, p in paired if p.testable]
    if not testable:
        most = max(paired, key=lambda vp: vp[1].pairs)[1]
        return (f"With at most {most.pairs_text} per rung against {ref.name}, "
                f"McNemar's exact test cannot show a difference at the 5% level (that takes at least "
                f"{MIN_PAIRS}), so nothing can be concluded about task success; {kl}")
    fine = [(v, p) for v, p in testable if not p.worse]
    if fine:
        v, p = min(fine, key=lambda vp: (vp[0].rung.file_bytes, vp[0].rung.bits_per_weight, -vp[1].rung_rate,
                                         vp[0].rung.model))
        test = f"({'significantly better: ' if p.better else ''}McNemar p = {_p(p.p_value)} on {p.pairs_text})"
        if v.rung.file_sha256 == ref.rung.file_sha256:
            cache = f"a {v.rung.kv_cache}" if v.rung.kv_cache else "the default"
            smaller = any(o.rung.file_bytes < v.rung.file_bytes for o, _ in testable)
            return (f"The reference file with {cache} K/V cache ({v.name}) is not significantly worse than "
                    f"{ref.name} {test}: same size, {_speed_ratio(v, ref)}"
                    f"{'; every smaller rung tested is significantly worse' if smaller else ''}.")
        return (f"{v.name} is the smallest rung not significantly worse than {ref.name} {test}: "
                f"{_size_ratio(v, ref)}, {_speed_ratio(v, ref)}.")
    v, p = max(testable, key=lambda vp: (vp[1].rung_rate, vp[1].p_value or 0.0, vp[0].rung.file_bytes))
    who = "Every rung" if len(testable) == len(others) else "Every rung with enough paired trials to test"
    return (f"{who} is significantly worse than {ref.name} on these tasks; the best, {v.name}, passed "
            f"{_pct(p.rung_rate)} of its {p.pairs_text} to {ref.name}'s {_pct(p.ref_rate)} "
            f"(McNemar p = {_p(p.p_value)}).")


def _p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _kl_clause(ref: RungView, others: list[RungView]) -> str:
    measured = sorted((v for v in others if v.rung.kl_mean is not None), key=lambda v: v.rung.kl_mean or 0.0)
    if not measured:
        return "no KL divergence was measured either."
    lo, hi = measured[0], measured[-1]
    if lo is hi:
        return f"by KL divergence {lo.name} is {lo.rung.kl_mean:.2g} from {ref.name}."
    return (f"by KL divergence {lo.name} is closest to {ref.name} ({lo.rung.kl_mean:.2g}) "
            f"and {hi.name} farthest ({hi.rung.kl_mean:.2g}).")


def _size_ratio(v: RungView, ref: RungView) -> str:
    if v.rung.file_bytes <= 0 or ref.rung.file_bytes <= 0:
        return "file size unknown"
    r = ref.rung.file_bytes / v.rung.file_bytes
    return f"{r:.1f}x smaller" if r >= 1 else f"{1 / r:.1f}x larger"


def _speed_ratio(v: RungView, ref: RungView) -> str:
    """Server figures against server figures, else agenteval's against agenteval's: a server's
    decode rate leaves out the streaming that agenteval's own timing includes."""
    a, b, own = v.speed.decode_tps, ref.speed.decode_tps, False
    if v.speed.decode_own or ref.speed.decode_own or a is None or b is None:
        a, b, own = v.speed.own_tps, ref.speed.own_tps, True
    if a is None or b is None:
        return "decode speed not compared (not measured for both)"
    how = " by agenteval's own decode timing" if own else ""
    return (f"{a / b:.1f}x faster" if a >= b else f"{b / a:.1f}x slower") + how


# -- the charts -----------------------------------------------------------------------------

def _charts(views: list[RungView], front: frozenset[str], per_sample: bool) -> dict[str, Plot | None]:
    """Pass rate, decode speed and KL divergence against bits per weight; file size against pass rate."""
    def rate_text(r: Rate) -> str:
        i = r.interval
        unit = "trials" if per_sample else "task variants"
        return f"{_pct(r.rate)} [{_pct(i.low)}-{_pct(i.high)}] of {r.trials} {unit}"

    ran = [v for v in views if v.overall.trials]
    bpw = value_axis([v.rung.bits_per_weight for v in views], allow_log=False)
    fast = [v for v in views if v.speed.decode_tps]
    kl = [v for v in views if not v.rung.reference and v.rung.kl_mean is not None]
    not_ran = [v.name for v in views if not v.overall.trials]
    return {
        "pass": scatter([_datum(v, v.rung.bits_per_weight, v.overall.rate, rate_text(v.overall),
                                v.overall.interval) for v in ran], bpw, RATE_AXIS, "bits per weight", "pass rate",
                        _pct, left_out=not_ran),
        "decode": scatter([_datum(v, v.rung.bits_per_weight, v.speed.decode_tps or 0.0,
                                  f"{v.speed.decode_tps or 0:.1f} tok/s" + (" (agenteval's own timing)"
                                                                            if v.speed.decode_own else ""))
                           for v in fast], bpw, value_axis([v.speed.decode_tps or 0.0 for v in fast], allow_log=False),
                          "bits per weight", "median decode tokens/s",
                          left_out=[v.name for v in views if not v.speed.decode_tps]),
        "kl": scatter([_datum(v, v.rung.bits_per_weight, v.rung.kl_mean or 0.0, f"mean KL {v.rung.kl_mean:.4g}")
                       for v in kl], bpw, value_axis([v.rung.kl_mean or 0.0 for v in kl]), "bits per weight",
                      "mean KL divergence", left_out=[v.name for v in views if not v.rung.reference and v not in kl]),
        "pareto": scatter([_datum(v, v.rung.file_bytes / 1e9, v.overall.rate,
                                  f"{rate_text(v.overall)}, {v.rung.file_bytes / 1e9:.2f} GB",
                                  highlight=v.rung.model in front) for v in ran],
                          value_axis([v.rung.file_bytes / 1e9 for v in ran], allow_log=False), RATE_AXIS,
                          "file size (GB)", "pass rate", _pct, connect=True, left_out=not_ran),
    }


def _datum(v: RungView, x: float, y: float, what: str, interval: Interval | None = None,
           highlight: bool = True) -> Datum:
    label = v.rung.model if len(v.rung.model) <= 32 else v.rung.model[:31] + "…"
    return Datum(label, v.note, f"{v.name}: {what} at {v.rung.bits_per_weight:.2f} bits/weight", x, y,
                 None if interval is None else interval.low, None if interval is None else interval.high, highlight)


# -- the page ------------------------------------------------------------------------------

def render_ladders(env: jinja2.Environment, ladders: list[Ladder], out_dir: Path,
                   write: Callable[[Path, str], None], common: dict[str, Any]) -> None:
    """Each ladder's page at the site's root, beside index.html."""
    template = env.get_template("ladder.html.j2")
    for ladder in ladders:
        write(out_dir / ladder.page, template.render(root="", ladder=ladder, MIN_PAIRS=MIN_PAIRS,
                                                      PAIRING_TEXT=PAIRING_TEXT, **common))
