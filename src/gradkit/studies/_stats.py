r"""Means with 95% confidence intervals over seeds, and the decision rule of a claim.

The interval is Student's t interval :math:`\bar x \pm t_{0.975,\,n-1}\, s/\sqrt n`.

A claim compares an arm with a baseline on seeds they share: for each seed the difference
:math:`d_s` (arm minus baseline, sign-flipped when lower is better, so :math:`d > 0` always
means "the arm is better"), then the 95% t interval :math:`[l, h]` of the mean difference.

- ``superior`` with margin :math:`m`: **reproduced** if :math:`l > m` (better by more than the
  margin, with 95% confidence); **not reproduced** if :math:`h < m + \delta` (the interval
  excludes a gain of the smallest effect of interest :math:`\delta` beyond the margin: worse,
  equal, or better by too little to matter); otherwise **inconclusive**. :math:`\delta = 0`
  (the default) is the plain superiority test, which a true difference of zero never settles;
  :math:`\delta > 0` makes it a minimum-effect test (Lakens, Scheel & Isager 2018,
  doi:10.1177/2515245918770963), the one-sided counterpart of the equivalence band below.
- ``equivalent`` with margin :math:`m`: **reproduced** if :math:`-m < l` and :math:`h < m`
  (the interval lies inside the band); **not reproduced** if :math:`l > m` or :math:`h < -m`
  (it lies outside); otherwise **inconclusive**.
- ``noninferior`` with margin :math:`m` ("matches or beats", worse by less than :math:`m`):
  **reproduced** if :math:`l > -m`; **not reproduced** if :math:`h < -m` (worse by more than
  the margin, with 95% confidence); otherwise **inconclusive**. The non-inferiority test of
  clinical trials (Schumi & Wittes 2011, doi:10.1186/1745-6215-12-106): one end of the
  equivalence band, for a claim that an arm is at least as good, where being better by more
  than the margin does not refute it.

Fewer than two shared seeds is always inconclusive: there is no interval.

An inconclusive verdict carries ``detectable``: the smallest true mean difference (counted from
the margin, or from the band's edge for ``equivalent`` and ``noninferior``) that the paired
two-sided 95% t test over the same number of seeds would detect with 80% power, given the
observed standard deviation of the per-seed differences (the noncentral t of
:mod:`scipy.stats`). Next to the margin it says how far the design is from settling the
claim; more seeds shrink it about as :math:`1/\sqrt n`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import optimize, stats

__all__ = [
    "INCONCLUSIVE",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "TESTS",
    "Verdict",
    "detectable_difference",
    "mean_ci",
    "paired_t_power",
    "t_quantile",
    "verdict",
]

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"

TESTS = ("superior", "equivalent", "noninferior")
CONFIDENCE = 0.95
POWER = 0.80


def t_quantile(df: int) -> float:
    """The two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"t_quantile: invalid df={df!r}; expected an integer >= 1")
    return float(stats.t.ppf(1 - (1 - CONFIDENCE) / 2, df))


def paired_t_power(effect: float, sd: float, n: int) -> float:
    r"""The power of the two-sided 95% paired t test with ``n`` pairs against a true mean
    difference ``effect`` when the differences have standard deviation ``sd``:
    :math:`P(|T| > t_{0.975,n-1})` with :math:`T` noncentral t, noncentrality
    :math:`\delta\sqrt n / s`."""
    critical = t_quantile(n - 1)
    noncentrality = effect * math.sqrt(n) / sd
    distribution = stats.nct(n - 1, noncentrality)
    # far in the tails scipy's noncentral t can return NaN where the probability is 0
    upper, lower = (float(p) for p in (distribution.sf(critical), distribution.cdf(-critical)))
    return (upper if math.isfinite(upper) else 1.0) + (lower if math.isfinite(lower) else 0.0)


def detectable_difference(sd: float, n: int, *, power: float = POWER) -> float:
    """The smallest true mean difference the two-sided 95% paired t test over ``n`` seeds
    detects with probability ``power``, for differences of standard deviation ``sd``.

    NaN with fewer than 2 seeds or a non-finite ``sd``; 0 when ``sd`` is 0 (no spread).
    """
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    high = sd
    while paired_t_power(high, sd, n) < power:
        high *= 2
    return float(
        optimize.brentq(lambda e: paired_t_power(e, sd, n) - power, 0.0, high, xtol=1e-12 * sd)
    )


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, half-width)`` of the 95% t interval; the half-width is NaN for one value.

    Non-finite values (a diverged run) make the mean and the interval NaN as well.
    """
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n == 1:
        return mean, math.nan
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, t_quantile(n - 1) * math.sqrt(variance / n)


@dataclass(frozen=True)
class Verdict:
    """The outcome of a claim and the numbers that decided it."""

    outcome: str
    difference: float
    low: float
    high: float
    seeds: int
    rule: str
    detectable: float | None = None


def verdict(
    arm: Sequence[float],
    baseline: Sequence[float],
    *,
    higher_is_better: bool = True,
    test: str = "superior",
    margin: float = 0.0,
    smallest_effect: float = 0.0,
) -> Verdict:
    """Decide a claim from per-seed values of the arm and the baseline (paired by position).

    See the module docstring for the rule.
    """
    if len(arm) != len(baseline):
        raise ValueError(
            f"verdict: the arm has {len(arm)} values and the baseline {len(baseline)}; "
            "they must be paired by seed"
        )
    if test not in TESTS:
        raise ValueError(f"verdict: invalid test={test!r}; expected one of {', '.join(TESTS)}")
    if not smallest_effect >= 0 or (smallest_effect and test != "superior"):
        raise ValueError(
            f"verdict: invalid smallest_effect={smallest_effect!r}; expected a number >= 0, "
            f"and 0 for an {test!r} test"
        )
    refute = margin + smallest_effect
    sign = 1.0 if higher_is_better else -1.0
    differences = [sign * (a - b) for a, b in zip(arm, baseline, strict=True)]
    mean, half = mean_ci(differences)
    low, high = mean - half, mean + half
    n = len(differences)
    direction = "higher" if higher_is_better else "lower"
    if test == "superior":
        rule = (
            f"paired difference over {n} seeds (arm - baseline, {direction} is better), 95% t "
            f"interval [{low:.4g}, {high:.4g}]: reproduced if its low end > {margin:g}, "
            f"not reproduced if its high end < {refute:g}"
            + (f" (margin + smallest effect {smallest_effect:g})" if smallest_effect else "")
            + ", else inconclusive"
        )
    elif test == "noninferior":
        rule = (
            f"paired difference over {n} seeds (arm - baseline, {direction} is better), 95% t "
            f"interval [{low:.4g}, {high:.4g}]: reproduced if its low end > -{margin:g} (not "
            f"worse by the margin), not reproduced if its high end < -{margin:g}, else "
            "inconclusive"
        )
    else:
        rule = (
            f"paired difference over {n} seeds, 95% t interval [{low:.4g}, {high:.4g}]: "
            f"reproduced if inside (-{margin:g}, {margin:g}), not reproduced if wholly "
            "outside, else inconclusive"
        )
    if n < 2 or not (math.isfinite(low) and math.isfinite(high)):
        outcome = INCONCLUSIVE
        rule += " (fewer than 2 seeds with finite values: no interval)"
    elif test == "superior":
        outcome = REPRODUCED if low > margin else NOT_REPRODUCED if high < refute else INCONCLUSIVE
    elif test == "noninferior":
        outcome = (
            REPRODUCED if low > -margin else NOT_REPRODUCED if high < -margin else INCONCLUSIVE
        )
    elif -margin < low and high < margin:
        outcome = REPRODUCED
    elif low > margin or high < -margin:
        outcome = NOT_REPRODUCED
    else:
        outcome = INCONCLUSIVE
    detectable = None
    if outcome == INCONCLUSIVE:
        finite = n >= 2 and all(math.isfinite(d) for d in differences)
        spread = statistics.stdev(differences) if finite else math.nan
        detectable = detectable_difference(spread, n)
        rule += (
            f"; the design detects a true difference {detectable:.4g} away from the "
            f"{'margin' if test == 'superior' else 'band edge'} with {POWER:.0%} power"
        )
    return Verdict(outcome, mean, low, high, n, rule, detectable)
