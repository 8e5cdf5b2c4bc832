"""Scorecards rendered from the DuckDB store (never from memory): a static site
(``site``), the figures behind it (``data``, ``stats``) and its chart.

Model output is untrusted text: templates autoescape everything, and the trial
page's long lists, built in Python (``fragments``), escape every value the same way.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from agenteval.logs import Log
from agenteval.records import TrialRecord
from agenteval.report.stats import pass_rate
from agenteval.store import Store


@dataclass(frozen=True)
class Cell:
    """Pass counts of one model x task cell (the terminal's summary table)."""

    model: str
    task: str
    passed: int
    total: int

    @property
    def rate(self) -> float:
        return pass_rate(self.passed, self.total)


def summarize(records: list[TrialRecord]) -> list[Cell]:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        c = counts[(r.model, r.task)]
        c[0] += int(r.passed)
        c[1] += 1
    return [Cell(m, t, p, n) for (m, t), (p, n) in sorted(counts.items())]


def render_report(store: Store, run_ids: list[str], out_dir: Path, log: Log = lambda m: None,
                  pairs: list[tuple[str, str]] | None = None) -> Path:
    """Write the static site of one or more runs into ``out_dir``; returns its index.html.

    ``pairs`` adds comparison pages in that order (A, B) beside those of every pair."""
    from agenteval.report.site import render_site

    return render_site(store, run_ids, out_dir, log, pairs or [])


def render_run(store: Store, run_id: str, out_dir: Path) -> Path:
    """The site of one run, in the run's own folder (what ``agenteval run`` writes at the end)."""
    return render_report(store, [run_id], out_dir)
