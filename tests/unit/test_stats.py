"""The scorecard's statistics against values worked out by hand or published."""

from __future__ import annotations

import math
import random

import duckdb
import pytest

from agenteval.report.stats import mcnemar_exact, mean_pass_at_k, pass_at_k, pass_rate, quantile, wilson


def test_pass_rate_is_passed_over_total_and_zero_without_trials() -> None:
    assert pass_rate(3, 4) == 0.75
    assert pass_rate(0, 5) == 0.0 and pass_rate(5, 5) == 1.0
    assert pass_rate(0, 0) == 0.0


def test_pass_at_k_matches_the_combinatorial_definition() -> None:
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12), (n, c, k)


def test_pass_at_k_known_values() -> None:
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - 21 / 45)  # 1 - C(7,2)/C(10,2)
    assert pass_at_k(5, 0, 5) == 0.0
    assert pass_at_k(5, 1, 5) == 1.0
    assert pass_at_k(200, 13, 100) == pytest.approx(1 - math.comb(187, 100) / math.comb(200, 100))


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_mean_pass_at_k_averages_problems_and_needs_k_samples_each() -> None:
    assert mean_pass_at_k([(4, 4), (4, 0)], 1) == pytest.approx(0.5)
    assert mean_pass_at_k([(4, 2), (2, 1)], 3) is None
    assert mean_pass_at_k([], 1) is None


@pytest.mark.parametrize(("x", "n", "low", "high"), [
    (0, 10, 0.0, 0.2775),     # the rule-of-three-like upper bound of Wilson at 0/10
    (10, 10, 0.7225, 1.0),
    (5, 10, 0.2366, 0.7634),
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), table I: 81/263
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_interval_known_values(x: int, n: int, low: float, high: float) -> None:
    got = wilson(x, n)
    assert got.low == pytest.approx(low, abs=6e-5) and got.high == pytest.approx(high, abs=6e-5)


def test_wilson_with_no_trials_is_uninformative() -> None:
    assert (wilson(0, 0).low, wilson(0, 0).high) == (0.0, 1.0)


@pytest.mark.parametrize(("b", "c", "p"), [
    (0, 0, 1.0),
    (1, 6, 0.125),               # 2 * (1 + 7) / 2**7
    (2, 10, 2 * 79 / 4096),      # 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12
    (5, 5, 1.0),
    (0, 20, 2 / 2 ** 20),
])
def test_mcnemar_exact_known_values(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p)
    assert mcnemar_exact(c, b) == pytest.approx(p), "symmetric in A and B"


def test_mcnemar_with_thousands_of_pairs() -> None:
    assert mcnemar_exact(2000, 2000) == pytest.approx(1.0)
    assert mcnemar_exact(1000, 1200) == pytest.approx(
        min(1.0, 2 * sum(math.comb(2200, i) for i in range(1001)) / 2 ** 2200), rel=1e-9)
    assert 0 <= mcnemar_exact(3000, 5000) < 1e-50


def test_quantiles_agree_with_duckdb() -> None:
    rng = random.Random(7)
    values = [rng.uniform(0, 100) for _ in range(37)]
    median, p90 = duckdb.sql(f"SELECT median(v), quantile_cont(v, 0.9) FROM (SELECT unnest({values}::DOUBLE[]) AS v)").fetchall()[0]
    assert quantile(values, 0.5) == pytest.approx(median)
    assert quantile(values, 0.9) == pytest.approx(p90)
    assert quantile([], 0.5) is None
