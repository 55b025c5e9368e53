"""The study spec: a TOML file with a base config, arms, grid and sweep axes, seeds and claims.

Layout (every table but ``[study]`` and ``[base]`` is optional)::

    [study]
    name = "warmup"                      # default: the file's stem
    title = "Warm-up lets Adam train at high learning rates"
    paper = "arXiv 1908.03265"
    seeds = [0, 1, 2]
    metrics = ["test_accuracy"]          # compared in the report's table
    select_metric = "val_accuracy"       # picks each arm's best sweep point (a val_* metric)
    target_accuracy = 0.6                # time-to-accuracy is measured against this
    measures = ["sharpness"]             # measured on the final model (see MEASURES)

    [base]                               # a gradkit training config (gradkit train's sections)
    data = { name = "mnist1d", validation_fraction = 0.2 }
    optim = { name = "adam", lr = 1e-3, weight_decay = 0.0 }

    [grid]                               # crossed with every arm; reported side by side
    "train.batch_size" = [32, 256]

    [sweep]                              # searched per arm; the best point on validation is kept
    "optim.lr" = [1e-3, 3e-3, 1e-2]

    [[arms]]
    name = "adamw"
    set = { "optim.name" = "adamw" }     # overrides of this arm
    sweep = { "optim.lr" = [3e-3, 1e-2] }  # replaces [sweep] for this arm

    [tuning]                             # the protocol (see gradkit.studies._tuning_spec):
    budget = 8                           # trials per arm, the same for every arm
    seeds = [100, 101]                   # tuning seeds, disjoint from [study] seeds (>= 10)

    [[arms]]                             # in a tuned study every arm has a search space
    name = "sgd"
    search = { "optim.lr" = { low = 1e-3, high = 1e-1 }, "optim.weight_decay" = [0.0, 1e-4] }

    [presets.quick]                      # what --preset quick shrinks (arms, grid, sizes)
    base = { train = { steps = 10 } }

    [[claims]]
    text = "AdamW beats Adam with L2 regularization"
    arm = "adamw"
    baseline = "adam"
    metric = "test_accuracy"
    margin = 0.0                         # the effect that counts (see gradkit.studies.verdict)

    [[interpolations]]                   # see gradkit.studies._interpolation
    name = "small_to_large"
    from = "small_batch"
    to = "large_batch"
    alphas = { start = -0.5, stop = 1.5, points = 21 }

Keys of ``set``, ``[grid]`` and ``[sweep]`` are config keys (``section.key``, or
``section.key.option`` inside a table such as ``model.options.width``) or the ``scale.*`` keys
that :mod:`gradkit.studies._expand` derives values from (learning-rate scaling with the batch,
steps from epochs). Every metric the spec names (a claim's ``metric`` and ``baseline_metric``,
``metrics``, ``select_metric``) must be one that the runs concerned record
(:mod:`gradkit.studies._metrics`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradkit._lookup import did_you_mean
from gradkit.studies._definitions import (
    SCALE_KEYS,
    Arm,
    Claim,
    Interpolation,
    SearchAxis,
    StudySpec,
    Tuning,
)
from gradkit.studies._errors import SpecError, check_table, named_tables
from gradkit.studies._expand import expand
from gradkit.studies._measures import MEASURES
from gradkit.studies._metrics import check_metric_names
from gradkit.studies._stats import TESTS
from gradkit.studies._tuning_spec import MIN_REPORT_SEEDS, apply_preset, parse_search, parse_tuning
from gradkit.train import Config, config_to_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport
    import tomli as tomllib

__all__ = [
    "SCALE_KEYS",
    "Arm",
    "Claim",
    "SpecError",
    "StudySpec",
    "load_spec",
    "parse_spec",
]

_TABLES = {
    "study": (
        "name",
        "title",
        "paper",
        "description",
        "seeds",
        "metrics",
        "select_metric",
        "target_accuracy",
        "measures",
    ),
    "arm": ("name", "set", "sweep", "search", "description"),
    "claim": (
        "text",
        "arm",
        "baseline",
        "metric",
        "baseline_metric",
        "higher_is_better",
        "test",
        "margin",
        "smallest_effect",
        "at",
        "paper_finding",
        "scale_note",
    ),
}
_TOP = ("study", "base", "grid", "sweep", "tuning", "arms", "claims", "interpolations", "presets")
_LOWER_IS_BETTER = ("loss", "sharpness", "hessian", "steps_to", "seconds_to", "seconds")


def _config_keys() -> list[str]:
    tables = config_to_dict(Config())
    return [f"{s}.{k}" for s, keys in tables.items() for k in keys]


def _check_key(key: Any, where: str) -> str:
    """A valid override key, or a :class:`SpecError` with the closest valid one."""
    keys = _config_keys()
    if not isinstance(key, str):
        raise SpecError(f"{where}: keys must be strings, got {key!r}")
    if key in keys or key in SCALE_KEYS:
        return key
    head = key.rsplit(".", 1)[0]
    if key.count(".") == 2 and head in ("model.options", "optim.options", "data.options"):
        return key
    hint = did_you_mean(key, [*keys, *SCALE_KEYS], n=1)
    raise SpecError(f"{where}: unknown key {key!r}{hint}")


def _axes(table: Any, where: str) -> dict[str, tuple[Any, ...]]:
    """``{key: (values...)}`` from a table of non-empty lists without repeats."""
    if not isinstance(table, Mapping):
        raise SpecError(f"{where} must be a table of key = [values], got {table!r}")
    axes: dict[str, tuple[Any, ...]] = {}
    for key, values in table.items():
        key = _check_key(key, where)
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where}: axis {key!r} must be a non-empty list, got {values!r}")
        if len({repr(v) for v in values}) != len(values):
            raise SpecError(f"{where}: axis {key!r} repeats a value: {values!r}")
        axes[key] = tuple(values)
    return axes


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


def _higher_is_better(metric: str) -> bool:
    return not any(word in metric for word in _LOWER_IS_BETTER)


def parse_spec(
    values: Mapping[str, Any], *, source: str = "spec", name: str = "", preset: str = ""
) -> StudySpec:
    """Validate the tables of a study file; ``source`` names it in error messages.

    ``preset`` (``"quick"``) shrinks the study first (see :mod:`gradkit.studies._tuning_spec`).
    """
    check_table(values, _TOP, source)
    if preset:
        values = apply_preset(values, preset, source)
    if "study" not in values:
        raise SpecError(f"{source}: missing table [study]")
    study = check_table(values["study"], _TABLES["study"], f"{source}: [study]")
    base = values.get("base", {})
    if not isinstance(base, Mapping):
        raise SpecError(f"{source}: [base] must be a table of config sections, got {base!r}")
    seeds = study.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise SpecError(
            f"{source}: [study] seeds must be a non-empty list of distinct integers, got {seeds!r}"
        )
    grid = _axes(values.get("grid", {}), f"{source}: [grid]")
    sweep = _axes(values.get("sweep", {}), f"{source}: [sweep]")
    tuning = None
    if "tuning" in values:
        if sweep:
            raise SpecError(
                f"{source}: [sweep] and [tuning] both choose settings; a tuned study gives "
                "each arm a search space ([[arms]] search) instead"
            )
        tuning = parse_tuning(
            values["tuning"],
            tuple(seeds),
            source,
            min_report_seeds=2 if preset else MIN_REPORT_SEEDS,
        )
    arms = _parse_arms(values.get("arms", [{"name": "base"}]), sweep, source, tuning)
    for arm in arms:
        for key in (*arm.sweep, *arm.overrides):
            if key in grid:
                raise SpecError(
                    f"{source}: arm {arm.name!r} sets {key!r}, which is a [grid] axis; "
                    "an axis key is set by the grid only"
                )
    select = study.get("select_metric", "val_accuracy")
    if any(arm.sweep for arm in arms):
        if not isinstance(select, str) or not select.startswith("val_"):
            raise SpecError(
                f"{source}: [study] select_metric must be a validation metric (val_*), never "
                f"a test one, got {select!r}"
            )
        fraction = base.get("data", {}).get("validation_fraction", 0) if base else 0
        if not fraction:
            raise SpecError(
                f"{source}: a sweep selects on the validation split; set "
                "[base.data] validation_fraction > 0"
            )
    target = study.get("target_accuracy")
    if target is not None and (not isinstance(target, (int, float)) or not 0 < target <= 1):
        raise SpecError(f"{source}: [study] target_accuracy must be in (0, 1], got {target!r}")
    measures = _string_list(study.get("measures", []), f"{source}: [study] measures")
    for measure in measures:
        if measure not in MEASURES:
            raise SpecError(
                f"{source}: [study] unknown measure {measure!r}"
                f"{did_you_mean(measure, MEASURES, n=1)} (known: {', '.join(MEASURES)})"
            )
    spec = StudySpec(
        name=str(study.get("name", name or "study")),
        base=dict(base),
        arms=arms,
        grid=grid,
        seeds=tuple(seeds),
        metrics=_string_list(study.get("metrics", ["test_accuracy"]), f"{source}: metrics"),
        select_metric=select,
        target_accuracy=None if target is None else float(target),
        measures=measures,
        title=str(study.get("title", "")),
        paper=str(study.get("paper", "")),
        description=str(study.get("description", "")),
        source=source,
        tuning=tuning,
        preset=preset,
    )
    claims = values.get("claims", [])
    if not isinstance(claims, list):
        raise SpecError(f"{source}: claims must be an array of tables ([[claims]])")
    spec = dataclasses.replace(
        spec,
        claims=tuple(
            _parse_claim(c, spec, f"{source}: claim {i + 1}") for i, c in enumerate(claims)
        ),
    )
    spec = dataclasses.replace(
        spec,
        interpolations=parse_interpolations(
            values.get("interpolations", []), [arm.name for arm in arms], source
        ),
    )
    plans = expand(spec)  # every run's config must validate now, not an hour into the study
    check_metric_names(spec, plans)  # and every metric named must be one its runs record
    return spec


def _parse_arms(
    arms: Any, sweep: dict[str, tuple[Any, ...]], source: str, tuning: Tuning | None
) -> tuple[Arm, ...]:
    if not isinstance(arms, list) or not arms:
        raise SpecError(f"{source}: arms must be a non-empty array of tables ([[arms]])")
    parsed: list[Arm] = []
    for where, name, table in named_tables(arms, _TABLES["arm"], "arm", source):
        overrides = table.get("set", {})
        if not isinstance(overrides, Mapping):
            raise SpecError(f"{where}: set must be a table of key = value, got {overrides!r}")
        overrides = {_check_key(k, f"{where} set"): v for k, v in overrides.items()}
        search: tuple[SearchAxis, ...] = ()
        if tuning is None:
            if "search" in table:
                raise SpecError(
                    f"{where}: search needs a tuning budget; add [tuning] with budget and seeds"
                )
            arm_sweep = _axes(table["sweep"], f"{where} sweep") if "sweep" in table else sweep
        else:
            if "sweep" in table:
                raise SpecError(f"{where}: a tuned study searches, it does not sweep; use search")
            if "search" not in table:
                raise SpecError(
                    f"{where}: needs search (its search space, e.g. search = "
                    '{ "optim.lr" = { low = 1e-4, high = 1e-1 } }): the study has a [tuning] '
                    f"budget of {tuning.budget} trials per arm"
                )
            search = parse_search(table["search"], tuning.budget, where, _check_key)
            arm_sweep = {axis.key: axis.values for axis in search}
        for key in arm_sweep:
            if key in overrides:
                raise SpecError(f"{where}: {key!r} is both set and swept")
        parsed.append(Arm(name, overrides, arm_sweep, str(table.get("description", "")), search))
    return tuple(parsed)


def _parse_claim(table: Any, spec: StudySpec, where: str) -> Claim:
    table = check_table(table, _TABLES["claim"], where)
    for key in ("text", "arm", "baseline", "metric"):
        if not isinstance(table.get(key), str):
            raise SpecError(f"{where}: needs {key} (a string)")
    names = [arm.name for arm in spec.arms]
    for key in ("arm", "baseline"):
        if table[key] not in names:
            raise SpecError(
                f"{where}: {key} {table[key]!r} is not an arm"
                f"{did_you_mean(table[key], names, n=1)} (arms: {', '.join(names)})"
            )
    test = table.get("test", "superior")
    if test not in TESTS:
        raise SpecError(f"{where}: test must be one of {', '.join(map(repr, TESTS))}, got {test!r}")
    margin = table.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise SpecError(f"{where}: margin must be a number >= 0, got {margin!r}")
    if test != "superior" and margin == 0:
        raise SpecError(f"{where}: a {test!r} test needs a margin > 0")
    smallest = table.get("smallest_effect", 0.0)
    if isinstance(smallest, bool) or not isinstance(smallest, (int, float)) or not smallest >= 0:
        raise SpecError(f"{where}: smallest_effect must be a number >= 0, got {smallest!r}")
    if test != "superior" and smallest:
        raise SpecError(
            f"{where}: smallest_effect = {smallest!r} applies to a 'superior' claim only; "
            f"an {test!r} claim's margin already says which difference matters"
        )
    at = table.get("at", {})
    if not isinstance(at, Mapping):
        raise SpecError(f"{where}: at must be a table of grid key = value, got {at!r}")
    for key, value in at.items():
        if key not in spec.grid:
            raise SpecError(f"{where}: at: {key!r} is not a [grid] axis")
        if value not in spec.grid[key]:
            raise SpecError(f"{where}: at: {key} = {value!r} is not on the grid")
    missing = [key for key in spec.grid if len(spec.grid[key]) > 1 and key not in at]
    if missing:
        raise SpecError(
            f"{where}: the study has a grid; say at which point, e.g. at = "
            f"{{{', '.join(f'{k!r} = {spec.grid[k][0]!r}' for k in missing)}}}"
        )
    for key in ("paper_finding", "scale_note"):
        if not isinstance(table.get(key, ""), str):
            raise SpecError(f"{where}: {key} must be a string, got {table[key]!r}")
    higher = table.get("higher_is_better", _higher_is_better(table["metric"]))
    if not isinstance(higher, bool):
        raise SpecError(f"{where}: higher_is_better must be true or false, got {higher!r}")
    return Claim(
        text=table["text"],
        arm=table["arm"],
        baseline=table["baseline"],
        metric=table["metric"],
        higher_is_better=higher,
        test=test,
        margin=float(margin),
        smallest_effect=float(smallest),
        at=dict(at),
        baseline_metric=str(table.get("baseline_metric", table["metric"])),
        paper_finding=table.get("paper_finding", ""),
        scale_note=table.get("scale_note", ""),
    )


# ---------------------------------------------------------------- interpolations

INTERPOLATION_KEYS = ("name", "from", "to", "alphas", "description")
"""The keys of an ``[[interpolations]]`` table."""
_RANGE_KEYS = ("start", "stop", "points")
_DECIMALS = 12  # alphas are rounded, so that linspace's 1.0000000000000002 is 1


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _alphas(value: Any, where: str) -> tuple[float, ...]:
    """The coordinates of ``alphas``: a table ``{start, stop, points}`` or a list of numbers."""
    if isinstance(value, Mapping):
        unknown = [key for key in value if key not in _RANGE_KEYS]
        if unknown or set(value) != set(_RANGE_KEYS):
            raise SpecError(
                f"{where}: alphas must be a table with start, stop and points, got {dict(value)!r}"
            )
        start, stop, points = value["start"], value["stop"], value["points"]
        if not _number(start) or not _number(stop) or not start < stop:
            raise SpecError(
                f"{where}: alphas needs numbers start < stop, got start={start!r}, stop={stop!r}"
            )
        if isinstance(points, bool) or not isinstance(points, int) or points < 2:
            raise SpecError(f"{where}: alphas points must be an integer >= 2, got {points!r}")
        step = (stop - start) / (points - 1)
        values = [start + i * step for i in range(points)]
    elif isinstance(value, list):
        if len(value) < 2 or not all(_number(v) for v in value):
            raise SpecError(f"{where}: alphas must list at least 2 finite numbers, got {value!r}")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise SpecError(f"{where}: alphas must increase, got {value!r}")
        values = list(value)
    else:
        raise SpecError(
            f"{where}: alphas must be {{ start = ..., stop = ..., points = ... }} or a list "
            f"of numbers, got {value!r}"
        )
    alphas = tuple(round(float(v), _DECIMALS) + 0.0 for v in values)
    if 0.0 not in alphas or 1.0 not in alphas:
        raise SpecError(
            f"{where}: alphas must contain 0 and 1 (the two solutions), got "
            f"{', '.join(f'{a:g}' for a in alphas)}"
        )
    return alphas


def parse_interpolations(
    tables: Any, arms: Sequence[str], source: str
) -> tuple[Interpolation, ...]:
    """Validate the ``[[interpolations]]`` tables of a study file against its ``arms``."""
    if not isinstance(tables, list):
        raise SpecError(f"{source}: interpolations must be an array of tables ([[interpolations]])")
    parsed: list[Interpolation] = []
    for where, name, table in named_tables(tables, INTERPOLATION_KEYS, "interpolation", source):
        for key in ("from", "to"):
            arm = table.get(key)
            if not isinstance(arm, str):
                raise SpecError(f"{where}: needs {key} (the name of an arm), got {arm!r}")
            if arm not in arms:
                raise SpecError(
                    f"{where}: {key} {arm!r} is not an arm{did_you_mean(arm, arms, n=1)} "
                    f"(arms: {', '.join(arms)})"
                )
        if table["from"] == table["to"]:
            raise SpecError(f"{where}: from and to are the same arm {table['from']!r}")
        if "alphas" not in table:
            raise SpecError(
                f"{where}: needs alphas, e.g. {{ start = -0.5, stop = 1.5, points = 21 }}"
            )
        parsed.append(
            Interpolation(
                name,
                table["from"],
                table["to"],
                _alphas(table["alphas"], where),
                str(table.get("description", "")),
            )
        )
    return tuple(parsed)


def load_spec(path: str | os.PathLike[str], *, preset: str = "") -> StudySpec:
    """Read and validate a study file (shrunk by ``preset``); errors are :class:`SpecError`
    naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            values = tomllib.load(stream)
    except FileNotFoundError:
        raise SpecError(f"study: no such file {str(path)!r}") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML: {error}") from None
    return parse_spec(values, source=str(path), name=path.stem, preset=preset)
