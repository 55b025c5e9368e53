"""Expand a study into runs: arms x grid points x sweep points x seeds, each a full config.

Values are derived in this order: the base config, the arm's ``set``, the grid point, the
sweep point, then the ``scale.*`` keys (``train.steps`` from ``scale.epochs``; ``optim.lr``
scaled by ``train.batch_size / scale.reference_batch`` under ``scale.lr``), and last the
placeholders in strings: ``"warmup({steps // 10}) >> cosine({steps})"`` may use ``steps``
(``train.steps``), ``batch`` (``train.batch_size``) and integer arithmetic.

A run's id is a hash of its whole config and measures: the same run in a changed study keeps
its id (and its stored result); a run whose config changed gets a new one.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import itertools
import json
import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gradkit.schedules import scale_learning_rate
from gradkit.studies._definitions import SCALE_KEYS, StudySpec
from gradkit.studies._errors import SpecError
from gradkit.train import Config, ConfigError, config_from_dict, config_to_dict

__all__ = ["RunPlan", "expand", "format_point"]


@dataclass(frozen=True)
class RunPlan:
    """One run of a study.

    Attributes:
        run_id: the hash of ``config`` and ``measures`` (the store's key).
        arm: the arm's name.
        grid: the grid point (``{key: value}``), reported side by side.
        sweep: the sweep point, among which the best on validation is selected.
        seed: ``train.seed``.
        config: the run's validated config as nested tables (``config_from_dict`` reads it).
        measures: what to measure on the final model besides the training metrics.
        keep_weights: store the final weights (the arm is an end of an interpolation); not
            part of ``run_id``.
    """

    run_id: str
    arm: str
    grid: Mapping[str, Any]
    sweep: Mapping[str, Any]
    seed: int
    config: Mapping[str, Any]
    measures: tuple[str, ...] = field(default_factory=tuple)
    keep_weights: bool = False


def format_point(point: Mapping[str, Any]) -> str:
    """``{"optim.lr": 0.01, "train.batch_size": 32}`` -> ``"lr=0.01, batch_size=32"``."""
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in point.items())


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _points(axes: Mapping[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


def expand(spec: StudySpec) -> list[RunPlan]:
    """Every run of ``spec``, in a stable order (arm, grid point, sweep point, seed).

    For a tuned study (``[tuning]``): the first tuning runs, every arm's search space on the
    tuning seeds; :mod:`gradkit.studies._protocol` adds widened trials and the report runs of
    the selected settings as the results come in.
    """
    plans: list[RunPlan] = []
    seeds = spec.tuning.seeds if spec.tuning is not None else spec.seeds
    ends = {arm for i in spec.interpolations for arm in (i.from_arm, i.to_arm)}
    for arm in spec.arms:
        for grid in _points(spec.grid):
            for sweep in _points(arm.sweep):
                settings = {**arm.overrides, **grid, **sweep}
                for seed in seeds:
                    where = f"{spec.source}: arm {arm.name!r}" + (
                        f" at {format_point({**grid, **sweep})}" if grid or sweep else ""
                    )
                    tables = resolve(spec.base, settings, seed, where)
                    plans.append(
                        RunPlan(
                            run_id=run_id(tables, spec.measures),
                            arm=arm.name,
                            grid=grid,
                            sweep=sweep,
                            seed=seed,
                            config=tables,
                            measures=spec.measures,
                            keep_weights=arm.name in ends,
                        )
                    )
    return plans


def run_id(tables: Mapping[str, Any], measures: tuple[str, ...]) -> str:
    """A stable hash of a run's config tables and measures."""
    text = json.dumps({"config": tables, "measures": list(measures)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(
    base: Mapping[str, Any], settings: Mapping[str, Any], seed: int, where: str
) -> dict[str, Any]:
    """The validated config tables of one run (see the module docstring for the order)."""
    tables: dict[str, Any] = copy.deepcopy(dict(base))
    scale = {key: value for key, value in settings.items() if key in SCALE_KEYS}
    for key, value in settings.items():
        if key in SCALE_KEYS:
            continue
        section, name, *option = key.split(".")
        table = tables.setdefault(section, {})
        if not isinstance(table, dict):
            raise SpecError(f"{where}: [{section}] must be a table")
        if option:
            table[name] = {**(table.get(name) or {}), option[0]: copy.deepcopy(value)}
        else:
            table[name] = copy.deepcopy(value)
    tables.setdefault("train", {})["seed"] = seed
    full = config_to_dict(Config())
    for section, table in tables.items():
        if section in full and isinstance(table, dict):
            full[section].update(table)
        else:
            full[section] = table  # config_from_dict names what is wrong with it
    try:
        if isinstance(full.get("train"), dict):
            _apply_scale(full, scale, where)
        full = _fill_placeholders(full, where)
        return config_to_dict(config_from_dict(full))
    except ConfigError as error:
        raise SpecError(f"{where}: {error}") from None


def _apply_scale(tables: dict[str, Any], scale: Mapping[str, Any], where: str) -> None:
    train = tables["train"]
    if "scale.epochs" in scale:
        epochs, samples = scale["scale.epochs"], scale.get("scale.train_samples")
        if not isinstance(samples, int) or samples < 1:
            raise SpecError(f"{where}: scale.epochs needs scale.train_samples (an integer >= 1)")
        if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or epochs <= 0:
            raise SpecError(f"{where}: scale.epochs must be a number > 0, got {epochs!r}")
        train["steps"] = max(1, math.ceil(epochs * samples / train["batch_size"]))
    rule = scale.get("scale.lr", "none")
    if rule != "none":
        reference = scale.get("scale.reference_batch")
        if not isinstance(reference, int) or reference < 1:
            raise SpecError(f"{where}: scale.lr needs scale.reference_batch (an integer >= 1)")
        try:
            tables["optim"]["lr"] = scale_learning_rate(
                tables["optim"]["lr"], train["batch_size"], reference, rule
            )
        except ValueError as error:
            raise SpecError(f"{where}: scale.lr: {error}") from None


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Div: operator.truediv,
}


def _evaluate(node: ast.AST, names: Mapping[str, int], text: str) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, names, text)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left, names, text), _evaluate(node.right, names, text)
        return _OPERATORS[type(node.op)](left, right)
    raise ValueError(
        f"placeholder {{{text}}}: only numbers, {', '.join(names)} and + - * / // are allowed"
    )


def _fill_placeholders(tables: dict[str, Any], where: str) -> dict[str, Any]:
    names = {"steps": tables["train"]["steps"], "batch": tables["train"]["batch_size"]}

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if not isinstance(value, str):
            return value

        def one(match: re.Match[str]) -> str:
            text = match.group(1)
            try:
                result = _evaluate(ast.parse(text.strip(), mode="eval"), names, text)
            except (SyntaxError, ValueError, ZeroDivisionError) as error:
                raise SpecError(f"{where}: {error}") from None
            return str(int(result)) if float(result).is_integer() else repr(float(result))

        return _PLACEHOLDER.sub(one, value)

    return {section: fill(table) for section, table in tables.items()}
