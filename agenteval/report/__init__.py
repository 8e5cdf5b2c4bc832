"""Static HTML reports rendered from the DuckDB store (never from memory).

Templates autoescape everything: model output is untrusted text.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agenteval.records import TrialRecord
from agenteval.store import Store

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Cell:
    """Pass counts of one model x task cell."""

    model: str
    task: str
    passed: int
    total: int

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


def summarize(records: list[TrialRecord]) -> list[Cell]:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        c = counts[(r.model, r.task)]
        c[0] += int(r.passed)
        c[1] += 1
    return [Cell(m, t, p, n) for (m, t), (p, n) in sorted(counts.items())]


@dataclass(frozen=True)
class Throughput:
    """Median speed of one model's calls in a run (telemetry from the server's usage)."""

    model: str
    calls: int
    ttft_s: float | None
    ttfat_s: float | None
    decode_tps: float | None
    completion_tokens: float | None
    estimated: bool
    random_weights: bool


def throughput(records: list[TrialRecord]) -> list[Throughput]:
    from statistics import median

    def med(values: list[float | None]) -> float | None:
        clean = [v for v in values if v is not None]
        return median(clean) if clean else None

    out = []
    for model in sorted({r.model for r in records}):
        mine = [r for r in records if r.model == model]
        calls = [c for r in mine for c in r.model_calls]
        if not calls:
            continue
        out.append(Throughput(
            model=model, calls=len(calls), ttft_s=med([c.ttft_s for c in calls]),
            ttfat_s=med([c.ttfat_s for c in calls]), decode_tps=med([c.decode_tokens_per_s for c in calls]),
            completion_tokens=med([float(c.completion_tokens) if c.completion_tokens is not None else None
                                   for c in calls]),
            estimated=any(c.tokens_estimated for c in calls),
            random_weights=any(r.fingerprint.model_info.get("random_weights") for r in mine)))
    return out


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["seconds"] = lambda v: f"{v:.2f} s" if v is not None else "-"
    env.filters["pct"] = lambda v: f"{100 * v:.0f}%"
    env.filters["num"] = lambda v, fmt="%.1f": (fmt % v) if v is not None else "-"
    return env


def render_run(store: Store, run_id: str, out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` for one run and return its path."""
    run = store.run(run_id)
    records = store.trials(run_id)
    cells = summarize(records)
    models = sorted({c.model for c in cells})
    tasks = sorted({c.task for c in cells})
    grid = {(c.model, c.task): c for c in cells}
    modes: dict[str, int] = defaultdict(int)
    for r in records:
        modes[r.failure_mode.value if r.failure_mode else "passed"] += 1
    html = _environment().get_template("run.html.j2").render(
        run=run, records=records, models=models, tasks=tasks, grid=grid, modes=dict(sorted(modes.items())),
        fingerprints={(r.model, r.task): r.fingerprint for r in records},
        speeds=throughput(records),
        random_models={r.model for r in records if r.fingerprint.model_info.get("random_weights")},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
