"""The report's charts, drawn as inline SVG: the leaderboard's pass rate against decode
speed, and the ladder page's scatter plots (``scatter``).

Inline SVG needs no script and no network, prints, and scales; the template
escapes every label. Each model is a point with its Wilson interval as a
vertical bar; the models no other model beats on both axes (the Pareto front:
nothing is both faster and more often right) are marked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from agenteval.report.data import ALL_TASKS, Scorecard

WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 24, 16, 44


@dataclass(frozen=True)
class Point:
    label: str
    href: str
    x: float
    y: float
    y_low: float
    y_high: float
    tps: float
    rate: float
    front: bool


@dataclass(frozen=True)
class Tick:
    pos: float
    text: str


@dataclass(frozen=True)
class Frame:
    """An SVG drawing's size and the margins around its plotting area, in pixels."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int


@dataclass(frozen=True)
class Chart(Frame):
    points: list[Point]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    log_x: bool
    left_out: list[str]


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = max(hi - lo, 1e-9)
    step = 10 ** math.floor(math.log10(span / count))
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= count:
            step *= mult
            break
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 2) if start + i * step <= hi + 1e-9]


def speed_chart(card: Scorecard, href: dict[str, str]) -> Chart | None:
    """None when fewer than one model has decode figures (the oracle and nop have none)."""
    data = []
    left_out = []
    for m in card.models:
        cell = card.cell(m, ALL_TASKS)
        if cell is None or cell.tps_med is None or cell.tps_med <= 0:
            left_out.append(m)
            continue
        data.append((m, cell.tps_med, cell.rate, cell.interval.low, cell.interval.high))
    if not data:
        return None
    xs = [d[1] for d in data]
    log_x = max(xs) / min(xs) > 20
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    lo = hi = 0
    top = max(xs) * 1.15
    if log_x:
        lo, hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
        hi = max(hi, lo + 1)
    else:
        top = max(top, _nice_ticks(0, top)[-1])

    def fx(v: float) -> float:
        if log_x:
            return LEFT + plot_w * (math.log10(v) - lo) / (hi - lo)
        return LEFT + plot_w * v / top

    def fy(v: float) -> float:
        return TOP + plot_h * (1 - v)

    if log_x:
        x_ticks = [Tick(fx(10.0 ** e), f"{10.0 ** e:g}") for e in range(lo, hi + 1)]
    else:
        x_ticks = [Tick(fx(t), f"{t:g}") for t in _nice_ticks(0, top)]
    points = []
    for m, tps, rate, low, high in data:
        front = not any(o_tps >= tps and o_rate >= rate and (o_tps > tps or o_rate > rate)
                        for _, o_tps, o_rate, _, _ in data)
        points.append(Point(m, href[m], fx(tps), fy(rate), fy(low), fy(high), tps, rate, front))
    y_ticks = [Tick(fy(v / 100), f"{v}%") for v in range(0, 101, 25)]
    return Chart(WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM, points, x_ticks, y_ticks, log_x, left_out)


# -- scatter plots of the ladder page ---------------------------------------------------
# One plot kind serves every ladder chart: labelled points in data units, optional whiskers,
# optional line through the highlighted points (a Pareto front), others dimmed.

SCATTER_TOP = 28  # room for the label of a point at the top of the plot
LOG_FROM = 20  # a value axis spanning more than this ratio is drawn on a log scale


@dataclass(frozen=True)
class Datum:
    """One point in data units. ``note`` is a second line under the label (a requantized
    rung's provenance, which must show wherever the rung does)."""

    label: str
    note: str
    title: str
    x: float
    y: float
    low: float | None = None
    high: float | None = None
    highlight: bool = True


@dataclass(frozen=True)
class Mark:
    """A datum where it is drawn, in pixels, with where its label goes."""

    datum: Datum
    x: float
    y: float
    low: float | None
    high: float | None
    label_x: float
    label_y: float
    anchor: str


@dataclass(frozen=True)
class Axis:
    lo: float
    hi: float
    log: bool

    def frac(self, v: float) -> float:
        if self.log:
            return (math.log10(v) - self.lo) / (self.hi - self.lo)
        return (v - self.lo) / (self.hi - self.lo)

    def values(self) -> list[float]:
        if self.log:
            return [10.0 ** e for e in range(int(self.lo), int(self.hi) + 1)]
        return [t for t in _nice_ticks(self.lo, self.hi) if self.lo - 1e-9 <= t <= self.hi + 1e-9]


def value_axis(values: list[float], allow_log: bool = True) -> Axis:
    """An axis from zero to a round number above the largest value, or a log axis of whole
    decades where the values span more than ``LOG_FROM`` times (KL divergence does)."""
    positive = [v for v in values if v > 0]
    if allow_log and positive and len(positive) == len(values) and max(positive) / min(positive) > LOG_FROM:
        lo, hi = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
        return Axis(lo, max(hi, lo + 1), True)
    top = max(values, default=0.0) * 1.1 or 1.0
    return Axis(0.0, max(top, _nice_ticks(0, top)[-1]), False)


RATE_AXIS = Axis(0.0, 1.0, False)


@dataclass(frozen=True)
class Plot(Frame):
    marks: list[Mark]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    x_label: str
    y_label: str
    line: str  # SVG polyline points through the highlighted marks, left to right ('' for none)
    left_out: list[str]


def scatter(data: list[Datum], x_axis: Axis, y_axis: Axis, x_label: str, y_label: str,
            y_text: Callable[[float], str] = "{:g}".format, connect: bool = False, left_out: list[str] | None = None) -> Plot | None:
    """None when there is nothing to draw. Each label takes the first place beside its point
    that stays inside the plot and clear of the points and the labels placed before it."""
    if not data:
        return None
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - SCATTER_TOP - BOTTOM

    def fx(v: float) -> float:
        return LEFT + plot_w * x_axis.frac(v)

    def fy(v: float) -> float:
        return SCATTER_TOP + plot_h * (1 - y_axis.frac(v))

    ordered = sorted(data, key=lambda d: (d.x, d.y))
    spots = [(fx(d.x), fy(d.y)) for d in ordered]
    taken: list[_Box] = [(x - 7, y - 7, x + 7, y + 7) for x, y in spots]  # the points themselves
    marks = []
    for d, (x, y) in zip(ordered, spots):
        label_x, label_y, anchor = _place_label(d, x, y, taken)
        marks.append(Mark(d, x, y, None if d.low is None else fy(d.low), None if d.high is None else fy(d.high),
                          label_x, label_y, anchor))
    line = " ".join(f"{m.x:.1f},{m.y:.1f}" for m in marks if m.datum.highlight) if connect else ""
    return Plot(WIDTH, HEIGHT, LEFT, RIGHT, SCATTER_TOP, BOTTOM, marks,
                [Tick(fx(v), f"{v:g}") for v in x_axis.values()],
                [Tick(fy(v), y_text(v)) for v in y_axis.values()],
                x_label, y_label, line, left_out or [])



_Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels
CHAR_W, LINE_H = 6.4, 13  # an 11 px label's average character width and line height
_SPOTS = ((8, -8), (8, 15), (-8, -8), (-8, 15), (8, -22), (-8, -22), (8, 29), (-8, 29), (0, -14), (0, 24))


def _place_label(d: Datum, x: float, y: float, taken: list[_Box]) -> tuple[float, float, str]:
    """Where ``d``'s label goes (x, baseline y, text-anchor); the least crowded spot when none is clear.
    Widths are estimated (no script measures text), generously."""
    width = CHAR_W * max(len(d.label), len(d.note) + 2 if d.note else 0)
    height = LINE_H * (2 if d.note else 1)
    best: tuple[float, float, float, str, _Box] = (math.inf, x, y, "start", (x, y, x, y))
    for dx, dy in _SPOTS:
        anchor = "middle" if dx == 0 else "start" if dx > 0 else "end"
        left = x + dx - (width / 2 if dx == 0 else width if dx < 0 else 0)
        box = (left, y + dy - LINE_H + 3, left + width, y + dy - LINE_H + 3 + height)
        outside = max(0.0, LEFT - box[0]) + max(0.0, box[2] - (WIDTH - RIGHT)) + max(0.0, -box[1]) \
            + max(0.0, box[3] - (HEIGHT - BOTTOM))
        crowding = 1000 * outside + sum(_overlap(box, t) for t in taken)
        if crowding < best[0]:
            best = (crowding, x + dx, y + dy, anchor, box)
        if crowding == 0:
            break
    taken.append(best[4])
    return best[1], best[2], best[3]


def _overlap(a: _Box, b: _Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
