"""The leaderboard's chart: pass rate against decode speed, drawn as inline SVG.

Inline SVG needs no script and no network, prints, and scales; the template
escapes every label. Each model is a point with its Wilson interval as a
vertical bar; the models no other model beats on both axes (the Pareto front:
nothing is both faster and more often right) are marked.
"""

from __future__ import annotations

import math
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
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
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
