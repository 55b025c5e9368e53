"""The metric names a study's runs record, checked when the spec loads.

A run's metrics are, in the store, what the training engine evaluates last (the fields of
:data:`gradkit.train.EVAL_FIELDS`: ``test_*`` always, ``val_*`` with a validation split,
``ensemble_*`` with ``checkpoint.snapshot_ensemble``), the numbers of the study's measures
(:data:`MEASURE_METRICS`), and what the analysis derives from every run (``seconds``, ``steps``,
and ``steps_to_target``, ``seconds_to_target``, ``target_missed`` with a ``target_accuracy``,
see :mod:`gradkit.studies._analysis`). A claim may also compare ``good_region``.

A name outside these would train every run and then decide nothing (``inconclusive, nan``),
so :func:`check_metric_names` makes it a :class:`SpecError` up front.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gradkit._lookup import did_you_mean
from gradkit.studies._definitions import StudySpec
from gradkit.studies._errors import SpecError
from gradkit.studies._expand import RunPlan

__all__ = ["CLAIM_METRICS", "DERIVED_METRICS", "MEASURE_METRICS", "TARGET_METRICS"]

MEASURE_METRICS: Mapping[str, tuple[str, ...]] = {
    "sharpness": ("sharpness",),
    "hessian": ("hessian_top",),
    "signal_propagation": ("spp_last_squared_mean", "spp_last_variance", "spp_variance_growth"),
    "weight_norm": ("weight_norm",),
}
"""The metrics (numbers, not profiles) that each measure of :data:`MEASURES` records."""

DERIVED_METRICS = ("seconds", "steps")
"""Derived by the analysis from every finished run."""
TARGET_METRICS = ("steps_to_target", "seconds_to_target", "target_missed")
"""Derived by the analysis when the study sets ``target_accuracy``."""
CLAIM_METRICS = ("good_region",)
"""Computed by the analysis for a claim only (not a per-run metric)."""


def _engine_metrics(config: Mapping[str, Any]) -> list[str]:
    """What the training engine's last evaluation holds, for one run's config tables."""
    from gradkit.train import EVAL_FIELDS

    validation = bool(config.get("data", {}).get("validation_fraction", 0))
    ensemble = bool(config.get("checkpoint", {}).get("snapshot_ensemble", 0))
    averaged = bool(config.get("optim", {}).get("average"))  # iterate_*: the unaveraged weights
    return [
        name
        for name in EVAL_FIELDS
        if (validation or "val_" not in name)
        and (ensemble or not name.startswith("ensemble_"))
        and (averaged or not name.startswith("iterate_"))
    ]


def recorded_metrics(spec: StudySpec, plan: RunPlan) -> list[str]:
    """The metric names one run of ``spec`` has in the store (and its analysis)."""
    names = [*_engine_metrics(plan.config), *DERIVED_METRICS]
    if spec.target_accuracy is not None:
        names += TARGET_METRICS
    for measure in plan.measures:
        names += MEASURE_METRICS.get(measure, ())
    return names


def _common(spec: StudySpec, plans: Iterable[RunPlan]) -> list[str]:
    """The names every one of ``plans`` records, in a stable order."""
    common: list[str] | None = None
    for plan in plans:
        names = recorded_metrics(spec, plan)
        common = names if common is None else [n for n in common if n in names]
    return common or []


def _needs(name: str) -> str:
    """What a study must set for a run to record ``name`` ("" if nothing would)."""
    if name.startswith("ensemble_"):
        return "checkpoint.snapshot_ensemble > 0"
    if "val_" in name:
        return "data.validation_fraction > 0"
    if name in TARGET_METRICS:
        return "[study] target_accuracy"
    for measure, names in MEASURE_METRICS.items():
        if name in names:
            return f'[study] measures = ["{measure}"]'
    return ""


def _refuse(where: str, key: str, name: Any, allowed: Sequence[str], whose: str) -> SpecError:
    from gradkit.train import EVAL_FIELDS

    everything = {*EVAL_FIELDS, *DERIVED_METRICS, *TARGET_METRICS, *CLAIM_METRICS}
    everything.update(n for names in MEASURE_METRICS.values() for n in names)
    needs = _needs(name) if isinstance(name, str) and name in everything else ""
    reason = f"; it needs {needs}" if needs else did_you_mean(str(name), allowed, n=1)
    return SpecError(
        f"{where}: {f'{key} ' if key else ''}{name!r} is not recorded by {whose}{reason} "
        f"(recorded: {', '.join(allowed)})"
    )


def check_metric_names(spec: StudySpec, plans: Sequence[RunPlan]) -> None:
    """Raise :class:`SpecError` for a claim, ``metrics`` or ``select_metric`` name that the
    runs it is about do not record."""
    source = spec.source
    every = _common(spec, plans)
    union = list(dict.fromkeys(n for plan in plans for n in recorded_metrics(spec, plan)))
    for name in spec.metrics:
        if name not in union:
            raise _refuse(f"{source}: [study] metrics", "", name, union, "any run")
    if any(arm.sweep for arm in spec.arms) and spec.select_metric not in every:
        allowed = [n for n in every if n.startswith("val_")]
        raise _refuse(
            f"{source}: [study]", "select_metric", spec.select_metric, allowed, "every run"
        )
    for number, claim in enumerate(spec.claims, 1):
        baseline = claim.baseline_metric or claim.metric
        for key, arm, name in (
            ("metric", claim.arm, claim.metric),
            ("baseline_metric" if baseline != claim.metric else "metric", claim.baseline, baseline),
        ):
            runs = [
                p
                for p in plans
                if p.arm == arm and all(p.grid.get(k) == v for k, v in claim.at.items())
            ]
            allowed = [*_common(spec, runs), *CLAIM_METRICS]
            if name not in allowed:
                raise _refuse(
                    f"{source}: claim {number}", key, name, allowed, f"the runs of arm {arm!r}"
                )
