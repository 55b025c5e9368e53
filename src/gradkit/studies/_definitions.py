"""The parsed study: its arms, claims, interpolations, tuning protocol and the spec itself.

Plain frozen dataclasses with no behaviour beyond look-ups, so that every module of the
studies package (expansion, metrics, analysis) can name them without importing the parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCALE_KEYS", "Arm", "Claim", "Interpolation", "StudySpec"]

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
class Arm:
    """One technique of a study: config overrides and the sweep searched for it."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    sweep: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Claim:
    """A claim of the literature, tested by comparing ``arm`` with ``baseline`` on ``metric``.

    Attributes:
        test: ``"superior"`` (the arm beats the baseline by more than ``margin``) or
            ``"equivalent"`` (they differ by less than ``margin`` either way).
        higher_is_better: the metric's direction (default: from its name; losses, sharpness,
            Hessian eigenvalues, steps and seconds are lower-is-better).
        at: the grid point the claim is about (needed when the study has a grid).
        baseline_metric: the baseline's metric, when it differs from the arm's (a snapshot
            ensemble's ``ensemble_test_accuracy`` against a single model's ``test_accuracy``).
    """

    text: str
    arm: str
    baseline: str
    metric: str
    higher_is_better: bool
    test: str = "superior"
    margin: float = 0.0
    at: Mapping[str, Any] = field(default_factory=dict)
    baseline_metric: str = ""


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

    def arm(self, name: str) -> Arm:
        """The arm called ``name``."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)
