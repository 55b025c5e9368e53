"""The ``[tuning]`` table, the arms' ``search`` spaces and the ``[presets]`` of a study file.

The protocol of the optimizer benchmarks (AlgoPerf, arXiv 2306.07179; DeepOBS, arXiv
1903.05499; Schmidt et al. 2021, arXiv 2007.01547)::

    [study]
    seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]    # the report seeds (at least 10)

    [tuning]
    budget = 5                 # trials per arm (and grid point): the same for every arm
    seeds = [100, 101]         # tuning seeds: validation split only, disjoint from [study] seeds
    widen = 1                  # log-grid steps added beyond an end the best value lies at
    max_widenings = 2          # then the arm is reported "not tuned: best at the edge"

    [[arms]]
    name = "sgd"
    set = { "optim.name" = "sgd" }
    search = { "optim.lr" = { low = 1e-3, high = 1e-1 } }     # a log grid of budget points

A search axis is a log grid ``{ low, high, points }`` or a list of choices. The trials are the
product of the axes, and it must equal the budget; one log grid may leave out ``points``, which
is then the budget divided by the other axes' sizes. Only log grids are widened (lists are
choices without an order).

``[presets.quick]`` shrinks the study for a smoke run (``gradkit study run --preset quick``):
the first 2 report seeds, the first tuning seed, no widening, and what it holds: ``base``
(merged into ``[base]``, key by key), ``set`` (applied to every arm, after its own), ``arms``
(the names of the arms to keep; claims and interpolations about the others are dropped),
``grid`` (replaces ``[grid]``; claims ``at`` a dropped point are dropped) and ``tuning``
(merged into ``[tuning]``, e.g. a smaller budget, which the log grids without ``points``
follow).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

from gradkit.studies._definitions import SearchAxis, Tuning
from gradkit.studies._errors import SpecError, check_table, is_finite_number

__all__ = ["MIN_REPORT_SEEDS", "PRESETS", "apply_preset", "parse_search", "parse_tuning"]

MIN_REPORT_SEEDS = 10
"""Report seeds a tuned study needs (Schmidt et al. 2021 rerun the best setting on 10)."""
PRESETS = ("quick",)
_TUNING_KEYS = ("budget", "seeds", "widen", "max_widenings")
_LOG_KEYS = ("low", "high", "points")
_PRESET_KEYS = ("base", "set", "arms", "grid", "tuning")


def _integer(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def parse_tuning(
    table: Any, report_seeds: tuple[int, ...], source: str, *, min_report_seeds: int
) -> Tuning:
    """Validate ``[tuning]`` against the study's report seeds."""
    where = f"{source}: [tuning]"
    table = check_table(table, _TUNING_KEYS, where)
    budget = table.get("budget")
    if not _integer(budget, 1):
        raise SpecError(f"{where} budget must be an integer >= 1 (trials per arm), got {budget!r}")
    seeds = table.get("seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(_integer(s, -(2**63)) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise SpecError(
            f"{where} seeds must be a non-empty list of distinct integers, got {seeds!r}"
        )
    shared = sorted(set(seeds) & set(report_seeds))
    if shared:
        raise SpecError(
            f"{where} seeds {shared} are also report seeds ([study] seeds); a setting "
            "is reported on fresh seeds only, so the two lists must be disjoint"
        )
    if len(report_seeds) < min_report_seeds:
        raise SpecError(
            f"{source}: [study] seeds has {len(report_seeds)} report seeds, a tuned study "
            f"needs at least {min_report_seeds}"
        )
    widen = table.get("widen", 1)
    if not _integer(widen, 1):
        raise SpecError(f"{where} widen must be an integer >= 1 (log-grid steps), got {widen!r}")
    widenings = table.get("max_widenings", 2)
    if not _integer(widenings, 0):
        raise SpecError(f"{where} max_widenings must be an integer >= 0, got {widenings!r}")
    return Tuning(budget, tuple(seeds), widen, widenings)


def log_grid(low: float, high: float, points: int, *, integer: bool) -> tuple[Any, ...]:
    """``points`` values from ``low`` to ``high``, equally spaced in log."""
    ratio = (high / low) ** (1 / (points - 1))
    values = [low * ratio**i for i in range(points)]
    values[-1] = high
    return tuple(round(v) if integer else float(f"{v:.6g}") for v in values)


def parse_search(
    table: Any, budget: int, where: str, check_key: Callable[[Any, str], str]
) -> tuple[SearchAxis, ...]:
    """An arm's ``search`` table, with ``budget`` trials in all."""
    if not isinstance(table, Mapping) or not table:
        raise SpecError(
            f"{where} search must be a non-empty table of key = list or "
            f"{{ low, high, points }}, got {table!r}"
        )
    sizes: dict[str, int] = {}
    open_grid = ""
    for key, value in table.items():
        key = check_key(key, f"{where} search")
        if isinstance(value, list):
            if not value or len({repr(v) for v in value}) != len(value):
                raise SpecError(
                    f"{where} search: {key!r} must be a non-empty list without repeats, got "
                    f"{value!r}"
                )
            sizes[key] = len(value)
            continue
        log = check_table(value, _LOG_KEYS, f"{where} search {key!r}")
        low, high = log.get("low"), log.get("high")
        if not (is_finite_number(low) and is_finite_number(high) and 0 < low < high):
            raise SpecError(
                f"{where} search {key!r}: a log grid needs 0 < low < high, got low={low!r}, "
                f"high={high!r}"
            )
        if "points" in log:
            if not _integer(log["points"], 2):
                raise SpecError(
                    f"{where} search {key!r}: points must be an integer >= 2, got {log['points']!r}"
                )
            sizes[key] = log["points"]
        elif open_grid:
            raise SpecError(
                f"{where} search: {open_grid!r} and {key!r} both leave out points; at most one "
                "log grid takes its size from the budget"
            )
        else:
            open_grid = key
    fixed = math.prod(sizes.values())
    if open_grid:
        if budget % fixed or budget // fixed < 2:
            raise SpecError(
                f"{where} search: {open_grid!r} takes the budget's points, but [tuning] budget "
                f"= {budget} is not at least 2 x {fixed} (the other axes' trials)"
            )
        sizes[open_grid] = budget // fixed
    trials = math.prod(sizes.values())
    if trials != budget:
        raise SpecError(
            f"{where} search has {' x '.join(map(str, sizes.values()))} = {trials} trials, "
            f"[tuning] budget = {budget}; every arm gets the budget, no more, no less"
        )
    axes = []
    for key, value in table.items():
        if isinstance(value, list):
            axes.append(SearchAxis(key, tuple(value)))
            continue
        integer = isinstance(value["low"], int) and isinstance(value["high"], int)
        values = log_grid(value["low"], value["high"], sizes[key], integer=integer)
        if len(set(values)) != len(values):
            raise SpecError(
                f"{where} search {key!r}: the integer log grid repeats a value: {values}"
            )
        axes.append(SearchAxis(key, values, log=True, integer=integer))
    return tuple(axes)


def apply_preset(values: Mapping[str, Any], preset: str, source: str) -> dict[str, Any]:
    """The study file's tables with ``preset`` applied (see the module docstring)."""
    if preset not in PRESETS:
        raise SpecError(f"{source}: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    values = copy.deepcopy(dict(values))
    presets = values.get("presets", {})
    if not isinstance(presets, Mapping):
        raise SpecError(f"{source}: [presets] must be a table of presets, got {presets!r}")
    chosen = check_table(presets.get(preset, {}), _PRESET_KEYS, f"{source}: [presets.{preset}]")
    study = values.get("study")
    if isinstance(study, dict) and isinstance(study.get("seeds"), list):
        study["seeds"] = study["seeds"][:2]
    tuning = values.get("tuning")
    if isinstance(tuning, dict):
        if isinstance(tuning.get("seeds"), list):
            tuning["seeds"] = tuning["seeds"][:1]
        tuning["max_widenings"] = 0
    base = chosen.get("base", {})
    if not isinstance(base, Mapping):
        raise SpecError(f"{source}: [presets.{preset}] base must be a table, got {base!r}")
    merged = values.setdefault("base", {})
    for section, table in base.items():
        if isinstance(table, Mapping) and isinstance(merged.get(section), dict):
            merged[section] = _merge(merged[section], table)
        else:
            merged[section] = copy.deepcopy(table)
    keep = chosen.get("arms")
    if keep is not None:
        names = [a.get("name") for a in values.get("arms", []) if isinstance(a, dict)]
        if not isinstance(keep, list) or not keep or any(k not in names for k in keep):
            raise SpecError(
                f"{source}: [presets.{preset}] arms must be a non-empty list of arm names "
                f"(arms: {', '.join(map(str, names))}), got {keep!r}"
            )
        values["arms"] = [a for a in values["arms"] if a.get("name") in keep]
        values["claims"] = [
            c
            for c in values.get("claims", [])
            if isinstance(c, dict) and c.get("arm") in keep and c.get("baseline") in keep
        ]
        values["interpolations"] = [
            i
            for i in values.get("interpolations", [])
            if isinstance(i, dict) and i.get("from") in keep and i.get("to") in keep
        ]
    if "grid" in chosen:
        grid = chosen["grid"]
        if not isinstance(grid, Mapping):
            raise SpecError(f"{source}: [presets.{preset}] grid must be a table, got {grid!r}")
        values["grid"] = copy.deepcopy(dict(grid))
        values["claims"] = [
            c
            for c in values.get("claims", [])
            if not isinstance(c, dict)
            or all(v in grid.get(k, [v]) for k, v in dict(c.get("at", {})).items())
        ]
    if "tuning" in chosen and isinstance(tuning, dict):
        extra = chosen["tuning"]
        if not isinstance(extra, Mapping):
            raise SpecError(f"{source}: [presets.{preset}] tuning must be a table, got {extra!r}")
        tuning.update(copy.deepcopy(dict(extra)))
    overrides = chosen.get("set", {})
    if not isinstance(overrides, Mapping):
        raise SpecError(f"{source}: [presets.{preset}] set must be a table, got {overrides!r}")
    if overrides:
        for arm in values.get("arms", [{"name": "base"}]):
            if isinstance(arm, dict):
                arm["set"] = {**arm.get("set", {}), **overrides}
        if "arms" not in values:
            values["arms"] = [{"name": "base", "set": dict(overrides)}]
    return values


def _merge(into: dict[str, Any], table: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(into)
    for key, value in table.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
