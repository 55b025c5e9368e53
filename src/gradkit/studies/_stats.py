r"""Means with 95% confidence intervals over seeds, and the decision rule of a claim.

The interval is Student's t interval :math:`\bar x \pm t_{0.975,\,n-1}\, s/\sqrt n`.

A claim compares an arm with a baseline on seeds they share: for each seed the difference
:math:`d_s` (arm minus baseline, sign-flipped when lower is better, so :math:`d > 0` always
means "the arm is better"), then the 95% t interval :math:`[l, h]` of the mean difference.

- ``superior`` with margin :math:`m`: **reproduced** if :math:`l > m` (better by more than the
  margin, with 95% confidence); **not reproduced** if :math:`h < m` (the interval excludes an
  effect as large as the margin: worse, equal, or better by too little); otherwise
  **inconclusive** (the interval straddles the margin).
- ``equivalent`` with margin :math:`m`: **reproduced** if :math:`-m < l` and :math:`h < m`
  (the interval lies inside the band); **not reproduced** if :math:`l > m` or :math:`h < -m`
  (it lies outside); otherwise **inconclusive**.

Fewer than two shared seeds is always inconclusive: there is no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "INCONCLUSIVE",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "Verdict",
    "mean_ci",
    "t_quantile",
    "verdict",
]

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"

# The 0.975 quantile of Student's t with 1..30 degrees of freedom.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile(df: int) -> float:
    """The two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"t_quantile: invalid df={df!r}; expected an integer >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    # Beyond 30: the normal quantile plus the first terms of the Cornish-Fisher expansion.
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


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
) -> Verdict:
    """Decide a claim from per-seed values of the arm and the baseline (paired by position).

    See the module docstring for the rule.
    """
    if len(arm) != len(baseline):
        raise ValueError(
            f"verdict: the arm has {len(arm)} values and the baseline {len(baseline)}; "
            "they must be paired by seed"
        )
    if test not in ("superior", "equivalent"):
        raise ValueError(f"verdict: invalid test={test!r}; expected 'superior' or 'equivalent'")
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
            f"not reproduced if its high end < {margin:g}, else inconclusive"
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
        outcome = REPRODUCED if low > margin else NOT_REPRODUCED if high < margin else INCONCLUSIVE
    elif -margin < low and high < margin:
        outcome = REPRODUCED
    elif low > margin or high < -margin:
        outcome = NOT_REPRODUCED
    else:
        outcome = INCONCLUSIVE
    return Verdict(outcome, mean, low, high, n, rule)
