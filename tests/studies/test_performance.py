"""AlgoPerf's performance profile on a constructed table with known fractions."""

from __future__ import annotations

import math

import pytest

from gradkit.studies import performance_profile

INF = math.inf
TIMES = {
    "mnist1d": {"adam": 10.0, "sgd": 20.0, "lamb": 12.0},
    "digits": {"adam": 30.0, "sgd": 15.0, "lamb": INF},
    "mnist1d_large": {"adam": 5.0, "sgd": 5.0, "lamb": 40.0},
    "unreached": {"adam": INF, "sgd": INF, "lamb": INF},
}


def test_profile_counts_workloads_within_tau_of_the_fastest() -> None:
    # ratios: adam 1, 2, 1, inf; sgd 2, 1, 1, inf; lamb 1.2, inf, 8, inf
    profile = performance_profile(TIMES, [1.0, 1.5, 2.0, 10.0])
    assert profile["adam"] == [0.5, 0.5, 0.75, 0.75]
    assert profile["sgd"] == [0.5, 0.5, 0.75, 0.75]
    assert profile["lamb"] == [0.0, 0.25, 0.25, 0.5]


def test_profile_refuses_a_missing_arm_a_bad_time_and_tau_below_one() -> None:
    with pytest.raises(ValueError, match="expected every arm"):
        performance_profile({"a": {"x": 1.0, "y": 2.0}, "b": {"x": 1.0}}, [1.0])
    with pytest.raises(ValueError, match=r"must be a number > 0 or inf"):
        performance_profile({"a": {"x": 0.0}}, [1.0])
    with pytest.raises(ValueError, match=r"tau 0\.5 must be a number >= 1"):
        performance_profile(TIMES, [0.5])


def test_the_report_draws_the_profile_only_where_it_says_something(tmp_path) -> None:
    from types import SimpleNamespace

    from gradkit.studies._report import _performance_plot

    taus = [1.0, 2.0]
    times = {"a": {"x": 10.0, "y": 30.0}, "b": {"x": 20.0, "y": 10.0}}
    steps = {"times": times, "profile": performance_profile(times, taus)}
    two = SimpleNamespace(performance={"taus": taus, "steps": steps})
    path = _performance_plot(two, tmp_path / "profile.png")
    assert path is not None and path.stat().st_size > 0
    one = SimpleNamespace(performance={"taus": taus, "steps": {**steps, "times": {"a": {}}}})
    assert _performance_plot(one, tmp_path / "one.png") is None
    never = {"a": {"x": math.inf, "y": math.inf}, "b": {"x": math.inf, "y": math.inf}}
    unreached = {"times": never, "profile": performance_profile(never, taus)}
    none = SimpleNamespace(performance={"taus": taus, "steps": unreached})
    assert _performance_plot(none, tmp_path / "none.png") is None
    assert _performance_plot(SimpleNamespace(performance={}), tmp_path / "x.png") is None
