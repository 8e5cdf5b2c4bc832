"""What a scorecard shows, queried from DuckDB (never from a run's memory).

Aggregates (counts, medians, p90s) are SQL over the store's views
``trial_totals`` and ``call_telemetry``; the estimators DuckDB lacks (pass@k,
Wilson, McNemar) come from ``stats``. One call of ``load_scorecard`` serves a
leaderboard of any number of runs; ``load_trial_pages`` reads what trial pages show.
Trials come back as ``rows.TrialRow``, filled by column name.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations, groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from agenteval.report.rows import (JSON, CallRow, CheckRow, ExecRow, TrialRow, columns_of, requantized_from,
                                  trial_rows)
from agenteval.report.stats import Interval, mcnemar_exact, mean_pass_at_k, pass_rate, wilson

if TYPE_CHECKING:
    from agenteval.records import RunRecord
    from agenteval.store import Store

ALL_TASKS = ""  # the task of a model's row over every task


def slug(text: str) -> str:
    """A file name for a model or task label: readable, safe, and unique by its hash."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:48] or "x"
    return f"{readable}-{hashlib.sha1(text.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


@dataclass(frozen=True)
class CellStats:
    """One model on one task (or on all of them): pass rates with their uncertainty, and speed."""

    model: str
    task: str
    trials: int
    passed: int
    interval: Interval
    pass_at: dict[int, float]
    ttft_med: float | None = None
    ttft_p90: float | None = None
    tps_med: float | None = None
    tps_p90: float | None = None
    calls: int = 0
    tokens_med: float | None = None
    time_med: float | None = None
    solve_tokens_med: float | None = None
    solve_time_med: float | None = None
    estimated: bool = False

    @property
    def rate(self) -> float:
        return pass_rate(self.passed, self.trials)


@dataclass(frozen=True)
class PairStats:
    """Two models on the trials they share (same task, variant and sample index)."""

    a: str
    b: str
    pairs: int
    both: int
    neither: int
    only_a: list[tuple[TrialRow, TrialRow]]
    only_b: list[tuple[TrialRow, TrialRow]]
    p_value: float
    tasks_a: list[str]
    tasks_b: list[str]
    tasks_tied: list[str]


@dataclass
class Scorecard:
    run_ids: list[str]
    runs: list[RunRecord]
    models: list[str]
    tasks: list[str]
    cells: dict[tuple[str, str], CellStats]
    variants: dict[str, list[str]]
    variant_counts: dict[tuple[str, str, str], tuple[int, int]]
    outcomes: dict[str, dict[str, int]]
    fingerprints: dict[str, dict[str, JSON]]
    images: dict[str, list[str]]  # every sandbox image a model's trials used (one per task image)
    trials: list[TrialRow]
    random_models: set[str] = field(default_factory=set)
    provenance: dict[str, str] = field(default_factory=dict)  # model -> "requantized from Q4_1", only requantized
    _pairs: dict[tuple[str, str], PairStats] = field(default_factory=dict, repr=False)

    def cell(self, model: str, task: str = ALL_TASKS) -> CellStats | None:
        return self.cells.get((model, task))

    def ranked(self) -> list[str]:
        """Models by pass rate over every task, the faster first among equals."""
        def key(m: str) -> tuple[float, float, str]:
            c = self.cells[(m, ALL_TASKS)]
            return (-c.rate, -(c.tps_med or 0.0), m)
        return sorted(self.models, key=key)

    def shown_ks(self) -> list[int]:
        """The k of pass@k worth a column: 1, 2, 3, 5, 10, ... and the largest any model allows."""
        most = max((max(c.pass_at, default=0) for (_, t), c in self.cells.items() if t == ALL_TASKS), default=0)
        return sorted({k for k in (1, 2, 3, 5, 10, 20, 50, 100) if k <= most} | ({most} if most else set()))

    def pair(self, a: str, b: str) -> PairStats:
        """A and B compared (once: the leaderboard, their page and `compare` all ask)."""
        if (a, b) not in self._pairs:
            self._pairs[(a, b)] = compare_models(self.trials, a, b)
        return self._pairs[(a, b)]

    def pairs(self) -> list[tuple[str, str]]:
        return list(combinations(self.models, 2))


def _ids(run_ids: Sequence[str]) -> list[list[str]]:
    return [list(run_ids)]


def load_scorecard(store: Store, run_ids: list[str]) -> Scorecard:
    runs = [store.run(r) for r in run_ids]
    con = store.con
    where = "WHERE run_id IN (SELECT unnest(?))"
    trial_sql = (f"SELECT model, coalesce(task, ''), count(*), count(*) FILTER (WHERE passed), "
                 "median(total_tokens), median(duration_s), median(total_tokens) FILTER (WHERE passed), "
                 f"median(duration_s) FILTER (WHERE passed), bool_or(tokens_estimated) FROM trial_totals {where} "
                 "GROUP BY GROUPING SETS ((model, task), (model))")
    call_sql = (f"SELECT model, coalesce(task, ''), count(*), median(ttft_s), quantile_cont(ttft_s, 0.9), "
                "median(decode_tokens_per_s), quantile_cont(decode_tokens_per_s, 0.9) "
                f"FROM call_telemetry {where} GROUP BY GROUPING SETS ((model, task), (model))")
    speed = {(m, t): rest for m, t, *rest in con.execute(call_sql, _ids(run_ids)).fetchall()}
    counts: dict[tuple[str, str, str], tuple[int, int]] = {}
    for model, task, variant, n, c in con.execute(
            f"SELECT model, task, variant, count(*), count(*) FILTER (WHERE passed) FROM trials {where} "
            "GROUP BY ALL", _ids(run_ids)).fetchall():
        counts[(model, task, variant)] = (n, c)
    cells: dict[tuple[str, str], CellStats] = {}
    for model, task, n, c, tok, dur, s_tok, s_dur, est in con.execute(trial_sql, _ids(run_ids)).fetchall():
        problems = [nc for (m, t, _), nc in counts.items() if m == model and (task == ALL_TASKS or t == task)]
        max_k = min(n_ for n_, _ in problems)
        pass_at = {k: v for k in range(1, max_k + 1) if (v := mean_pass_at_k(problems, k)) is not None}
        calls, ttft, ttft90, tps, tps90 = speed.get((model, task), (0, None, None, None, None))
        cells[(model, task)] = CellStats(model, task, n, c, wilson(c, n), pass_at, ttft, ttft90, tps, tps90, calls,
                                         tok, dur, s_tok, s_dur, bool(est))
    outcomes: dict[str, dict[str, int]] = defaultdict(dict)
    for model, outcome, n in con.execute(
            f"SELECT model, coalesce(failure_mode, 'passed'), count(*) FROM trials {where} GROUP BY ALL ORDER BY ALL",
            _ids(run_ids)).fetchall():
        outcomes[model][outcome] = n
    fingerprints = {m: json.loads(fp) if isinstance(fp, str) else (fp or {}) for m, fp in con.execute(
        f"SELECT model, arg_max(fingerprint, started_at) FROM trials {where} GROUP BY model", _ids(run_ids)).fetchall()}
    images = {m: [i for i in imgs if i] for m, imgs in con.execute(
        f"SELECT model, list(DISTINCT fingerprint->>'image' ORDER BY fingerprint->>'image') FROM trials {where} "
        "GROUP BY model", _ids(run_ids)).fetchall()}
    trials = trial_rows(con, "SELECT trial_id, run_id, key, model, task, variant, sample, passed, failure_mode, error, "
                        f"score, duration_s, calls, total_tokens FROM trial_totals {where} "
                        "ORDER BY task, variant, model, sample, started_at", _ids(run_ids))
    variants: dict[str, list[str]] = defaultdict(list)
    for _, task, variant in sorted(counts):
        if variant not in variants[task]:
            variants[task].append(variant)
    models = sorted({m for m, _ in cells})
    return Scorecard(
        run_ids=list(run_ids), runs=runs, models=models, tasks=sorted({t for _, t in cells if t != ALL_TASKS}),
        cells=cells, variants=dict(variants), variant_counts=counts, outcomes=dict(outcomes),
        fingerprints=fingerprints, images=images, trials=trials,
        random_models={m for m, fp in fingerprints.items() if _random_weights(fp)},
        provenance={m: p for m, fp in fingerprints.items() if (p := requantized_from(fp))})


def _random_weights(fingerprint: dict[str, JSON]) -> bool:
    info = fingerprint.get("model_info")
    return isinstance(info, dict) and bool(info.get("random_weights"))


def compare_models(trials: list[TrialRow], a: str, b: str) -> PairStats:
    """Pair A's and B's trials by task, variant and sample order; McNemar on the discordant pairs."""
    mine: dict[str, dict[tuple[str, str], list[TrialRow]]] = {a: defaultdict(list), b: defaultdict(list)}
    for t in trials:
        if t.model in mine:
            mine[t.model][(t.task, t.variant)].append(t)
    only_a: list[tuple[TrialRow, TrialRow]] = []
    only_b: list[tuple[TrialRow, TrialRow]] = []
    both = neither = 0
    per_task: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for cell, ta in mine[a].items():
        for x, y in zip(ta, mine[b].get(cell, [])):
            per_task[cell[0]][0] += int(x.passed)
            per_task[cell[0]][1] += int(y.passed)
            if x.passed and y.passed:
                both += 1
            elif x.passed:
                only_a.append((x, y))
            elif y.passed:
                only_b.append((x, y))
            else:
                neither += 1
    return PairStats(
        a=a, b=b, pairs=both + neither + len(only_a) + len(only_b), both=both, neither=neither,
        only_a=only_a, only_b=only_b, p_value=mcnemar_exact(len(only_a), len(only_b)),
        tasks_a=sorted(t for t, (x, y) in per_task.items() if x > y),
        tasks_b=sorted(t for t, (x, y) in per_task.items() if y > x),
        tasks_tied=sorted(t for t, (x, y) in per_task.items() if x == y))


_PAGE_COLUMNS = ("trial_id, run_id, key, model, task, variant, sample, passed, failure_mode, error, score, duration_s, "
                 "setup_s, agent_s, verify_s, teardown_s, started_at, agent_stop, agent_steps, tool_protocol, "
                 "actions_run, verdict, transcript, artifacts, fingerprint")
_IN = "WHERE trial_id IN (SELECT unnest(?))"
_Row = TypeVar("_Row", CheckRow, CallRow, ExecRow)


def _json(value: JSON) -> JSON:
    return json.loads(value) if isinstance(value, str) else value


def load_trial_pages(store: Store, trial_ids: Sequence[str]) -> list[TrialRow]:
    """The pages of these trials, in the order given: four queries, whatever their number."""
    con, ids = store.con, [list(trial_ids)]

    def children(table: str, row_type: type[_Row]) -> dict[str, list[_Row]]:
        rows = con.execute(f"SELECT trial_id, {columns_of(row_type)} FROM {table} {_IN} ORDER BY trial_id, idx",
                           ids).fetchall()
        return {trial_id: [row_type._make(r[1:]) for r in group] for trial_id, group in groupby(rows, itemgetter(0))}

    checks, calls = children("trial_checks", CheckRow), children("trial_model_calls", CallRow)
    execs = children("trial_execs", ExecRow)

    def page(columns: dict[str, Any]) -> dict[str, Any]:
        trial_id, transcript, artifacts = columns["trial_id"], _json(columns["transcript"]), _json(columns["artifacts"])
        # a verdict's checks are rows of their own; without a verdict there are none to show
        shown = checks.get(trial_id, []) if _json(columns.pop("verdict")) else []
        return {**columns, "transcript": transcript if isinstance(transcript, list) else [],
                "artifacts": artifacts if isinstance(artifacts, list) else [], "checks": shown,
                "model_calls": calls.get(trial_id, []), "execs": execs.get(trial_id, [])}

    pages = {t.trial_id: t for t in trial_rows(con, f"SELECT {_PAGE_COLUMNS} FROM trials {_IN}", ids, page)}
    return [pages[i] for i in trial_ids if i in pages]
