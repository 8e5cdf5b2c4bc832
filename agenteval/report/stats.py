"""The statistics a scorecard reports, each small enough to check by hand.

pass@k uses the unbiased estimator of Chen et al. (2021, "Evaluating Large
Language Models Trained on Code"); the interval on a pass rate is Wilson's
score interval, which behaves at 0/n and n/n where the normal one does not;
paired models are compared with McNemar's exact test (a two-sided binomial
test on the discordant pairs). Quantiles interpolate linearly, as DuckDB's
``quantile_cont`` and numpy's default do, so figures agree across tools.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agenteval.records import pass_rate as pass_rate  # one definition, beside the records it counts

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that at least one of k samples drawn from n (c of them correct) passes."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    # 1 - C(n-c, k) / C(n, k), as a product so large n stays exact enough
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float | None:
    """pass@k averaged over problems given as (n, c); None when a problem has fewer than k samples."""
    values = []
    for n, c in counts:
        if n < k:
            return None
        values.append(pass_at_k(n, c, k))
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class Rate:
    """Passed of trials, with the Wilson 95% interval (the shape the report's ``rate`` macro shows)."""

    passed: int
    trials: int

    @property
    def rate(self) -> float:
        return pass_rate(self.passed, self.trials)

    @property
    def interval(self) -> Interval:
        return wilson(self.passed, self.trials)


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval of a binomial proportion (95% by default)."""
    if n <= 0:
        return Interval(0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..n (got {successes} of {n})")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b (A only) and c (B only)."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    n = b + c
    if n == 0:
        return 1.0
    term = total = 1  # C(n, 0); exact integers, so thousands of pairs neither overflow nor round
    for i in range(1, min(b, c) + 1):
        term = term * (n - i + 1) // i
        total += term
    tail = total / (1 << n)  # int / int: Python rounds the exact quotient, however large
    return min(1.0, 2 * tail)


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile (DuckDB ``quantile_cont``); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))
