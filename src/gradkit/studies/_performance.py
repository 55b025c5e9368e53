r"""Time-to-target across workloads: AlgoPerf's performance profile (arXiv 2306.07179, Sec. 4.5).

For each workload :math:`w` and arm :math:`a` with time to target :math:`t_{w,a}` (``inf`` when
the arm never reached the target), the performance ratio is
:math:`r_{w,a} = t_{w,a} / \min_{a'} t_{w,a'}`, and the profile of arm :math:`a` at
:math:`\tau \ge 1` is the fraction of workloads with :math:`r_{w,a} \le \tau`: 1 at
:math:`\tau = 1` for an arm that is the fastest everywhere, and never 1 for an arm that missed
a target. A workload on which no arm reached the target counts against every arm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["performance_profile", "performance_ratios"]


def performance_ratios(times: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``{workload: {arm: time / fastest time on that workload}}`` (``inf`` when not reached)."""
    ratios: dict[str, dict[str, float]] = {}
    for workload, by_arm in times.items():
        for arm, time in by_arm.items():
            if isinstance(time, bool) or not isinstance(time, (int, float)) or not time > 0:
                raise ValueError(
                    f"performance_profile: workload {workload!r}, arm {arm!r}: time "
                    f"{time!r} must be a number > 0 or inf (target not reached)"
                )
        fastest = min(by_arm.values(), default=math.inf)
        ratios[workload] = {
            arm: time / fastest if math.isfinite(fastest) and math.isfinite(time) else math.inf
            for arm, time in by_arm.items()
        }
    return ratios


def performance_profile(
    times: Mapping[str, Mapping[str, float]], taus: Sequence[float]
) -> dict[str, list[float]]:
    """``{arm: [fraction of workloads with ratio <= tau, for each tau]}``.

    ``times`` is ``{workload: {arm: time}}``; every workload must time the same arms.
    """
    ratios = performance_ratios(times)
    arms = sorted({arm for by_arm in times.values() for arm in by_arm})
    for workload, by_arm in times.items():
        if sorted(by_arm) != arms:
            raise ValueError(
                f"performance_profile: workload {workload!r} times {sorted(by_arm)}, "
                f"expected every arm: {arms}"
            )
    for tau in taus:
        if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not tau >= 1:
            raise ValueError(f"performance_profile: tau {tau!r} must be a number >= 1")
    count = len(ratios)
    return {
        arm: [
            sum(ratios[w][arm] <= tau for w in ratios) / count if count else math.nan
            for tau in taus
        ]
        for arm in arms
    }
