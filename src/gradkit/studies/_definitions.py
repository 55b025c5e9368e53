"""The parsed study: its arms, claims, interpolations, tuning protocol and the spec itself.

Plain frozen dataclasses with no behaviour beyond look-ups, so that every module of the
studies package (expansion, metrics, analysis) can name them without importing the parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCALE_KEYS", "Arm", "Claim", "Interpolation", "SearchAxis", "StudySpec", "Tuning"]

SCALE_KEYS = ("scale.lr", "scale.reference_batch", "scale.epochs", "scale.train_samples")
"""Derived-value keys: ``scale.lr`` (``"none"``, ``"linear"`` or ``"sqrt"``) scales
``optim.lr`` by the batch relative to ``scale.reference_batch``; ``scale.epochs`` sets
``train.steps`` to that many passes over ``scale.train_samples`` samples."""


@dataclass(frozen=True)
class Interpolation:
    """A line between the solutions of two arms (see :mod:`gradkit.studies._interpolation`)."""

    name: str
    from_arm: str
    to_arm: str
    alphas: tuple[float, ...]
    description: str = ""


@dataclass(frozen=True)
class SearchAxis:
    """One key of an arm's search space: its values, and whether they are a log grid.

    A log grid (``{ low, high, points }`` in the spec) is geometric, so it can be widened by
    whole steps of its ratio when the best value lies at one of its ends; a list is a set of
    choices and is never widened.
    """

    key: str
    values: tuple[Any, ...]
    log: bool = False
    integer: bool = False

    @property
    def ratio(self) -> float:
        """The factor between neighbouring values of a log grid."""
        return float(self.values[1]) / float(self.values[0])


@dataclass(frozen=True)
class Tuning:
    """The tuning protocol of a study (the ``[tuning]`` table).

    Attributes:
        budget: trials per arm and grid point before any widening, the same for every arm.
        seeds: the tuning seeds (validation split only); disjoint from the report seeds.
        widen: log-grid steps added beyond an end when the best value lies there.
        max_widenings: how often a cell's range may be widened before the arm is reported
            as "not tuned: best at the edge".
    """

    budget: int
    seeds: tuple[int, ...]
    widen: int = 1
    max_widenings: int = 2


@dataclass(frozen=True)
class Arm:
    """One technique of a study: config overrides and the sweep searched for it."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    sweep: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    description: str = ""
    search: tuple[SearchAxis, ...] = ()


@dataclass(frozen=True)
class Claim:
    """A claim of the literature, tested by comparing ``arm`` with ``baseline`` on ``metric``.

    Attributes:
        test: ``"superior"`` (the arm beats the baseline by more than ``margin``),
            ``"equivalent"`` (they differ by less than ``margin`` either way) or
            ``"noninferior"`` (the arm is not worse by ``margin`` or more: "matches or
            beats").
        smallest_effect: for a ``superior`` claim, the smallest gain beyond ``margin`` that
            would matter (the smallest effect of interest of a minimum-effect test); an
            interval whose high end stays below ``margin + smallest_effect`` rules such a gain
            out and the claim is *not reproduced*. 0 (the default): only an interval wholly
            below the margin is.
        higher_is_better: the metric's direction (default: from its name; losses, sharpness,
            Hessian eigenvalues, steps and seconds are lower-is-better).
        at: the grid point the claim is about (needed when the study has a grid).
        baseline_metric: the baseline's metric, when it differs from the arm's (a snapshot
            ensemble's ``ensemble_test_accuracy`` against a single model's ``test_accuracy``).
        paper_finding: what the paper itself reports for the claim (with its table or
            figure), shown beside the verdict in the summary of studies.
        scale_note: why the claim may not be testable at the study's scale, if it may not.
    """

    text: str
    arm: str
    baseline: str
    metric: str
    higher_is_better: bool
    test: str = "superior"
    margin: float = 0.0
    smallest_effect: float = 0.0
    at: Mapping[str, Any] = field(default_factory=dict)
    baseline_metric: str = ""
    paper_finding: str = ""
    scale_note: str = ""


@dataclass(frozen=True)
class StudySpec:
    """A parsed, validated study (see the module docstring for the file format)."""

    name: str
    base: Mapping[str, Any]
    arms: tuple[Arm, ...]
    grid: Mapping[str, tuple[Any, ...]]
    seeds: tuple[int, ...]
    metrics: tuple[str, ...] = ("test_accuracy",)
    claims: tuple[Claim, ...] = ()
    interpolations: tuple[Interpolation, ...] = ()
    select_metric: str = "val_accuracy"
    target_accuracy: float | None = None
    measures: tuple[str, ...] = ()
    title: str = ""
    paper: str = ""
    description: str = ""
    source: str = ""
    tuning: Tuning | None = None
    preset: str = ""

    def arm(self, name: str) -> Arm:
        """The arm called ``name``."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)
