"""Studies (floor 4): put techniques side by side, over seeds, and decide a claim.

A study is a TOML file (:func:`load_spec`; the format is in :mod:`gradkit.studies._spec`): a
base training config, arms (each a set of overrides and a sweep searched on the validation
split), grid axes crossed with every arm, seeds, the metrics to compare and the claims.
A tuned study (``[tuning]``, :mod:`gradkit.studies._protocol`) gives every arm the same budget of
trials over its own search space on tuning seeds, widens a range whose best value is at an end,
and reruns the selected setting on at least 10 fresh report seeds, the only runs reported.
An inconclusive verdict states the smallest difference its design detects
(:func:`detectable_difference`); time-to-target across grid points gives AlgoPerf's
:func:`performance_profile`.
:func:`run_study` expands it into runs (:func:`expand`), skips what its SQLite :class:`Store`
holds, and trains the rest in worker processes; :func:`write_report` writes ``REPORT.md``,
``report.html`` and ``report.json`` with a table of arms (mean and 95% interval over seeds),
learning curves, heatmaps, time-to-accuracy and a :func:`verdict` per claim; and, where the
spec asks, the interpolation between two arms' solutions (``[[interpolations]]``) and the
per-block signal propagation at initialisation.

Example:
    >>> outcome = run_study("studies/warmup.toml", "studies/warmup", workers=2)
    >>> write_report("studies/warmup")["markdown"]
"""

from gradkit.studies._analysis import Analysis, Cell, analyze
from gradkit.studies._dask import SchedulerError
from gradkit.studies._definitions import Interpolation
from gradkit.studies._expand import RunPlan, expand, format_point
from gradkit.studies._index import write_index
from gradkit.studies._interpolation import interpolation_curve
from gradkit.studies._lock import LOCK_NAME, StudyDirectoryError, StudyLock, StudyLockedError
from gradkit.studies._measures import MEASURES, Measure
from gradkit.studies._performance import performance_profile, performance_ratios
from gradkit.studies._report import format_estimate, write_report
from gradkit.studies._runner import (
    PRESET_NAME,
    SPEC_NAME,
    STORE_NAME,
    StudyOutcome,
    run_plan,
    run_study,
)
from gradkit.studies._spec import (
    SCALE_KEYS,
    Arm,
    Claim,
    SpecError,
    StudySpec,
    load_spec,
    parse_spec,
)
from gradkit.studies._stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Verdict,
    detectable_difference,
    mean_ci,
    paired_t_power,
    t_quantile,
    verdict,
)
from gradkit.studies._store import InterpolationRecord, RunRecord, Store
from gradkit.studies._worker import RunOutcome, train_plan

__all__ = [
    "INCONCLUSIVE",
    "LOCK_NAME",
    "MEASURES",
    "NOT_REPRODUCED",
    "PRESET_NAME",
    "REPRODUCED",
    "SCALE_KEYS",
    "SPEC_NAME",
    "STORE_NAME",
    "Analysis",
    "Arm",
    "Cell",
    "Claim",
    "Interpolation",
    "InterpolationRecord",
    "Measure",
    "RunOutcome",
    "RunPlan",
    "RunRecord",
    "SchedulerError",
    "SpecError",
    "Store",
    "StudyDirectoryError",
    "StudyLock",
    "StudyLockedError",
    "StudyOutcome",
    "StudySpec",
    "Verdict",
    "analyze",
    "detectable_difference",
    "expand",
    "format_estimate",
    "format_point",
    "interpolation_curve",
    "load_spec",
    "mean_ci",
    "paired_t_power",
    "parse_spec",
    "performance_profile",
    "performance_ratios",
    "run_plan",
    "run_study",
    "t_quantile",
    "train_plan",
    "verdict",
    "write_index",
    "write_report",
]
