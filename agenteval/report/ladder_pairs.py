"""How a quantization ladder pairs a rung's outcomes with the reference's for McNemar's test.

The unit (``Pairing``) is the sample where every trial was a draw at temperature > 0 sent a seed
of its own (sample i gets seed + i on every rung, ``model_info["sample_seeds"]``): such samples
are independent and pair across rungs by seed. Otherwise the samples of a task variant repeat
one decode (greedy), share a seed, or may do either (temperature unrecorded), so each (task,
variant) is one unit, passed when most of its samples passed (a tie fails). Pass@1 and its
Wilson interval count the same units as the test, so an interval treats as independent only
what is.

Trials that failed for infra_error, sandbox_error or verify_error say nothing about the model:
they are left out of the pairs and of pass@1, and counted per rung.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import get_args

from agenteval.records import FailureMode
from agenteval.report.rows import Pairing, TrialRow
from agenteval.report.stats import mcnemar_exact, pass_rate

ALPHA = 0.05  # the significance level the page's sentence uses
# failures of the harness, not of the model: left out of pairs and pass rates
NOT_THE_MODEL = frozenset(m.value for m in (FailureMode.infra_error, FailureMode.sandbox_error,
                                            FailureMode.verify_error))

# How the samples of a trial were drawn (``Pairing``, from its fingerprint): all but "seeded" pair per
# task variant; the first one any trial has wins.
PAIRING_TEXT: dict[Pairing, str] = {
    "seeded": "one pair per sample: each sample has its own seed, the same on every rung",
    "greedy": "one pair per task variant: greedy decoding repeats one outcome across samples",
    "unrecorded": "one pair per task variant: the sampling temperature was not recorded, so the samples are taken "
                  "for repeats of one decode",
    "unseeded": "one pair per task variant: the samples at temperature > 0 were not each sent a seed of their own "
                "(they share one, or none was set), so they cannot be paired by seed across rungs",
}
Unit = tuple[str, str, int | None]  # task, variant, sample (None: the variant's samples as one)
MIN_PAIRS = next(n for n in range(1, 64) if mcnemar_exact(n, 0) < ALPHA)  # 6 at the 5% level


_INFO = "t.fingerprint->'model_info'"
_TEMPERATURE = f"TRY_CAST({_INFO}->'sampling'->>'temperature' AS DOUBLE)"
TRIALS_SQL = f"""
SELECT tt.trial_id, tt.run_id, tt.key, tt.model, tt.task, tt.variant, tt.sample, tt.passed, tt.failure_mode,
       tt.error, tt.score, tt.duration_s, tt.total_tokens, tt.reasoning_tokens,
       CASE WHEN {_TEMPERATURE} IS NULL THEN 'unrecorded' WHEN {_TEMPERATURE} <= 0 THEN 'greedy'
            WHEN {_INFO}->>'sample_seeds' = 'true'
                 AND json_type({_INFO}->'sampling'->'seed') IN ('BIGINT', 'UBIGINT') THEN 'seeded'
            ELSE 'unseeded' END AS pairing
FROM trial_totals tt JOIN trials t USING (trial_id) WHERE tt.run_id = ?"""


@dataclass(frozen=True)
class Paired:
    """A rung against the reference on the units both ran: ``ref_only`` (b) passed only on the
    reference, ``rung_only`` (c) only on the rung."""

    pairs: int
    both: int
    ref_only: int
    rung_only: int
    per_sample: bool = True  # False: one pair per task variant

    @property
    def p_value(self) -> float | None:
        """None without pairs: no test was made, which is not the same as p = 1."""
        return mcnemar_exact(self.ref_only, self.rung_only) if self.pairs else None

    @property
    def worse(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA and self.ref_only > self.rung_only

    @property
    def better(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA and self.rung_only > self.ref_only

    @property
    def testable(self) -> bool:
        """Whether these many pairs could show a difference at all: with fewer than 6, even a rung
        that failed every pair the reference passed has p >= 0.05."""
        return self.pairs > 0 and mcnemar_exact(self.pairs, 0) < ALPHA

    @property
    def rung_rate(self) -> float:
        return pass_rate(self.both + self.rung_only, self.pairs)

    @property
    def ref_rate(self) -> float:
        return pass_rate(self.both + self.ref_only, self.pairs)

    @property
    def pairs_text(self) -> str:
        """"20 paired trials", or "4 paired task variants" where a variant's samples are one unit."""
        n = self.pairs
        return f"{n} paired {'trial' if self.per_sample else 'task variant'}{'s' if n != 1 else ''}"


def ladder_pairing(trials: list[TrialRow]) -> Pairing:
    """One pairing for the whole ladder, so every rung's rate and test count the same units: by
    sample only if every trial was a seeded draw; else the first reason any trial gives, in the
    order of ``Pairing`` (no trials: "unrecorded")."""
    found = {t.pairing for t in trials}
    return next((p for p in get_args(Pairing) if p in found and p != "seeded"),
                "seeded" if found else "unrecorded")


def outcomes(trials: list[TrialRow], per_sample: bool) -> dict[Unit, bool]:
    """A rung's outcome per unit: each trial by its sample, or each task variant by the majority
    of its samples (a tie fails: as many failures as passes is no evidence that it passes)."""
    if per_sample:
        return {(t.task, t.variant, t.sample): t.passed for t in trials}
    votes: dict[Unit, list[int]] = defaultdict(lambda: [0, 0])
    for t in trials:
        votes[(t.task, t.variant, None)][0] += t.passed
        votes[(t.task, t.variant, None)][1] += 1
    return {unit: 2 * passed > n for unit, (passed, n) in votes.items()}


def pair_with_reference(rung: dict[Unit, bool], reference: dict[Unit, bool], per_sample: bool = True) -> Paired:
    """Count the rung's units that the reference has too; a unit without its partner is left out,
    never counted as a failure."""
    both = ref_only = rung_only = pairs = 0
    for unit, passed in rung.items():
        ref_passed = reference.get(unit)
        if ref_passed is None:
            continue
        pairs += 1
        both += ref_passed and passed
        ref_only += ref_passed and not passed
        rung_only += passed and not ref_passed
    return Paired(pairs, both, ref_only, rung_only, per_sample)
