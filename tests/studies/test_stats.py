"""The decision rule on constructed data, and the 95% interval against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradkit.studies import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    mean_ci,
    t_quantile,
    verdict,
)

BASELINE = [0.80, 0.81, 0.79, 0.80, 0.80]


def test_mean_ci_matches_the_t_interval_by_hand() -> None:
    mean, half = mean_ci([1.0, 2.0, 3.0])
    # s = 1, n = 3: half-width t(0.975, 2) / sqrt(3) = 4.303 / 1.732
    assert mean == 2.0
    assert half == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)
    assert math.isnan(mean_ci([5.0])[1])
    assert t_quantile(31) == pytest.approx(2.0395, abs=2e-4)


def test_clearly_better_is_reproduced() -> None:
    arm = [b + 0.05 + 0.002 * i for i, b in enumerate(BASELINE)]
    result = verdict(arm, BASELINE)
    assert result.outcome == REPRODUCED
    assert result.low > 0
    assert result.difference == pytest.approx(0.054)


def test_clearly_worse_is_not_reproduced() -> None:
    arm = [b - 0.05 + 0.002 * i for i, b in enumerate(BASELINE)]
    assert verdict(arm, BASELINE).outcome == NOT_REPRODUCED


def test_overlapping_is_inconclusive() -> None:
    arm = [b + d for b, d in zip(BASELINE, [0.03, -0.03, 0.02, -0.02, 0.01], strict=True)]
    result = verdict(arm, BASELINE)
    assert result.outcome == INCONCLUSIVE
    assert result.low < 0 < result.high


def test_better_by_less_than_the_margin_is_not_reproduced() -> None:
    arm = [b + 0.01 + 0.001 * i for i, b in enumerate(BASELINE)]
    assert verdict(arm, BASELINE).outcome == REPRODUCED
    assert verdict(arm, BASELINE, margin=0.05).outcome == NOT_REPRODUCED


def test_a_smallest_effect_settles_a_null_difference_as_not_reproduced() -> None:
    # differences +-0.003 around 0: interval [-0.0047, 0.0047] by hand (s = 0.0038 over 5 seeds)
    arm = [b + d for b, d in zip(BASELINE, [0.003, -0.003, 0.004, -0.004, 0.0], strict=True)]
    plain = verdict(arm, BASELINE)
    assert plain.outcome == INCONCLUSIVE  # the plain superiority test never settles a null
    decided = verdict(arm, BASELINE, smallest_effect=0.01)
    assert decided.outcome == NOT_REPRODUCED  # a 1-point gain is ruled out
    assert decided.high < 0.01 and (decided.low, decided.high) == (plain.low, plain.high)
    assert "smallest effect 0.01" in decided.rule
    # too small a smallest effect leaves it open; a clear gain is reproduced whatever it is
    assert verdict(arm, BASELINE, smallest_effect=0.002).outcome == INCONCLUSIVE
    better = [b + 0.05 + 0.002 * i for i, b in enumerate(BASELINE)]
    assert verdict(better, BASELINE, smallest_effect=0.01).outcome == REPRODUCED
    with pytest.raises(ValueError, match="smallest_effect"):
        verdict(arm, BASELINE, test="equivalent", margin=0.01, smallest_effect=0.01)


def test_lower_is_better_flips_the_sign() -> None:
    lower = [b - 0.05 - 0.002 * i for i, b in enumerate(BASELINE)]
    assert verdict(lower, BASELINE, higher_is_better=False).outcome == REPRODUCED
    assert verdict(lower, BASELINE).outcome == NOT_REPRODUCED


def test_equivalence() -> None:
    close = [b + d for b, d in zip(BASELINE, [0.001, -0.001, 0.002, 0.0, -0.002], strict=True)]
    far = [b + 0.1 + 0.001 * i for i, b in enumerate(BASELINE)]
    assert verdict(close, BASELINE, test="equivalent", margin=0.01).outcome == REPRODUCED
    assert verdict(far, BASELINE, test="equivalent", margin=0.01).outcome == NOT_REPRODUCED
    wide = [b + d for b, d in zip(BASELINE, [0.03, -0.03, 0.02, -0.02, 0.01], strict=True)]
    assert verdict(wide, BASELINE, test="equivalent", margin=0.01).outcome == INCONCLUSIVE


def test_noninferiority_takes_one_end_of_the_band() -> None:
    # differences (arm - baseline) with mean d and the spread of these offsets:
    # s = 0.001581, n = 5, t(0.975, 4) = 2.776: half-width 0.001963
    offsets = [0.001, -0.001, 0.002, 0.0, -0.002]

    def shifted(d: float) -> list[float]:
        return [b + d + o for b, o in zip(BASELINE, offsets, strict=True)]

    # far better: reproduced (an equivalence test would call this "not reproduced")
    assert verdict(shifted(0.05), BASELINE, test="noninferior", margin=0.01).outcome == REPRODUCED
    assert verdict(shifted(0.05), BASELINE, test="equivalent", margin=0.01).outcome == (
        NOT_REPRODUCED
    )
    # worse by 0.007: the interval [-0.00896, -0.00504] stays above -0.01
    assert verdict(shifted(-0.007), BASELINE, test="noninferior", margin=0.01).outcome == (
        REPRODUCED
    )
    # worse by 0.009: the interval [-0.01096, -0.00704] reaches below -0.01
    inconclusive = verdict(shifted(-0.009), BASELINE, test="noninferior", margin=0.01)
    assert inconclusive.outcome == INCONCLUSIVE
    assert inconclusive.detectable is not None and inconclusive.detectable > 0
    assert "band edge" in inconclusive.rule
    # worse by 0.02: the interval lies wholly below -0.01
    assert verdict(shifted(-0.02), BASELINE, test="noninferior", margin=0.01).outcome == (
        NOT_REPRODUCED
    )
    # lower is better: the sign flips before the test
    assert (
        verdict(
            shifted(0.05), BASELINE, test="noninferior", margin=0.01, higher_is_better=False
        ).outcome
        == NOT_REPRODUCED
    )


def test_one_seed_or_a_diverged_run_is_inconclusive() -> None:
    assert verdict([0.9], [0.1]).outcome == INCONCLUSIVE
    assert verdict([0.9, math.nan], [0.1, 0.1]).outcome == INCONCLUSIVE


def test_unpaired_values_are_an_error() -> None:
    with pytest.raises(ValueError, match="must be paired by seed"):
        verdict([0.9, 0.8], [0.1])


def test_detectable_difference_has_80_percent_power_by_simulation() -> None:
    from scipy import stats

    from gradkit.studies import detectable_difference

    sd, n = 0.02, 10
    effect = detectable_difference(sd, n)
    generator = np.random.default_rng(0)
    samples = generator.normal(effect, sd, size=(20000, n))
    rejected = stats.ttest_1samp(samples, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.80, abs=0.01)
    # many seeds: the normal approximation (z_0.975 + z_0.8) s / sqrt(n)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert detectable_difference(sd, 4000) == pytest.approx(z * sd / math.sqrt(4000), rel=1e-3)
    assert detectable_difference(sd, 40) < effect  # more seeds detect less
    assert math.isnan(detectable_difference(sd, 1))


def test_an_inconclusive_verdict_states_its_detectable_difference() -> None:
    from gradkit.studies import detectable_difference

    differences = [0.01, -0.02, 0.03, 0.0, -0.01, 0.02]
    arm = [b + d for b, d in zip([0.8] * 6, differences, strict=True)]
    result = verdict(arm, [0.8] * 6, margin=0.0)
    assert result.outcome == INCONCLUSIVE
    assert result.detectable == pytest.approx(
        detectable_difference(float(np.std(np.array(arm) - 0.8, ddof=1)), 6)
    )
    decided = verdict([b + 0.05 + 0.002 * i for i, b in enumerate(BASELINE)], BASELINE)
    assert decided.detectable is None
