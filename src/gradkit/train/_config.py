"""The training config: frozen dataclasses, read from TOML plus ``section.key=value`` overrides.

Every key is checked up front: an unknown section or key, or a value of the wrong type, is a
:class:`ConfigError` that names the key and suggests the closest valid one. The config is saved
beside each run as ``config.toml`` (:func:`save_config`) and reads back to an equal object.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gradkit._io import atomic_output
from gradkit._lookup import did_you_mean
from gradkit.train._sections import (
    DEFAULT_MODEL_OPTIONS,
    CheckpointConfig,
    ConfigError,
    DataConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport
    import tomli as tomllib

__all__ = [
    "DEFAULT_MODEL_OPTIONS",
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "LogConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "load_config",
    "parse_override",
    "save_config",
]


@dataclass(frozen=True)
class Config:
    """A whole training run; :func:`load_config` builds it, ``gradkit train`` runs it.

    The defaults are gradkit's recipe for the MNIST-1D CNN (95.2% test accuracy, measured in
    ``benchmarks/RESULTS.md``): width 64, AdamW (lr 1e-2, weight decay 0.2 on weights only),
    200 steps of warm-up then cosine decay, batch 100, 6000 steps. The MNIST-1D paper's recipe
    is ``optim.name=adam optim.weight_decay=0 schedule.lr="constant()" model.options={}``.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def updated(self, changes: Mapping[str, Any]) -> Config:
        """A validated copy with ``section.key`` values changed: ``updated({"optim.lr": 0.1})``."""
        values = config_to_dict(self)
        for key, value in changes.items():
            section, _, name = key.partition(".")
            if section not in values or not name:
                raise ConfigError(
                    f"config: unknown key {key!r}{did_you_mean(key, _all_keys(), n=1)}"
                )
            values[section][name] = value
        return config_from_dict(values)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
    "checkpoint": CheckpointConfig,
    "log": LogConfig,
}
# Keys whose values must also pass a range check: (predicate, wording of the allowed range).
_RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "data.validation_fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optim.lr": (lambda v: v >= 0, "a number >= 0"),
    "optim.weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "optim.clip_grad_norm": (lambda v: v > 0, "a number > 0 (or absent for no clipping)"),
    "optim.agc": (lambda v: v > 0, "a number > 0 (or absent for no AGC)"),
    "optim.agc_eps": (lambda v: v >= 0, "a number >= 0"),
    "optim.sam_rho": (lambda v: v > 0, "a number > 0 (or absent for no SAM)"),
    "schedule.max_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "train.steps": (lambda v: v >= 1, "an integer >= 1"),
    "train.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "train.micro_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "train.eval_every": (lambda v: v >= 0, "an integer >= 0"),
    "train.max_skipped": (lambda v: v >= 1, "an integer >= 1"),
    "train.eval_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "train.threads": (lambda v: v >= 1, "an integer >= 1"),
    "train.distributed_timeout": (lambda v: v > 0, "a number > 0"),
    "checkpoint.every": (lambda v: v >= 0, "an integer >= 0"),
    "checkpoint.snapshot_ensemble": (lambda v: v >= 0, "an integer >= 0"),
    "log.every": (lambda v: v >= 1, "an integer >= 1"),
}


def _all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)]


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(annotation: Any) -> str:
    """``int | None`` -> 'an integer (or absent)', ``Literal['a','b']`` -> "one of 'a', 'b'"."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        return "a table"
    if origin is tuple:
        return "a list of strings"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return f"{_describe(inner[0])} (or absent)"
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        dict: "a table",
    }.get(annotation, str(annotation))


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """``value`` checked against ``annotation``; raises :class:`ConfigError` naming ``key``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (
            _coerce(key, value, inner[0])
            if _fits(value, inner[0])
            else _wrong(key, value, annotation)
        )
    if origin is Literal:
        if value in typing.get_args(annotation) and isinstance(value, str):
            return value
        return _wrong(key, value, annotation)
    if origin is tuple:
        return tuple(value) if _fits(value, annotation) else _wrong(key, value, annotation)
    if typing.get_origin(annotation) is dict or annotation is dict:
        annotation = dict
    if not _fits(value, annotation):
        return _wrong(key, value, annotation)
    if annotation is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config: {key} must be a finite number, got {value!r}")
    return value


def _fits(value: Any, annotation: Any) -> bool:
    if typing.get_origin(annotation) is dict:
        annotation = dict
    if typing.get_origin(annotation) is tuple:
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typing.get_origin(annotation) is Literal:
        return value in typing.get_args(annotation)
    return isinstance(value, annotation)


def _wrong(key: str, value: Any, annotation: Any) -> Any:
    raise ConfigError(
        f"config: {key} must be {_describe(annotation)}, got {value!r} ({type(value).__name__})"
    )


def config_from_dict(values: Mapping[str, Any], overrides: Iterable[str] = ()) -> Config:
    """Build and validate a :class:`Config` from nested tables plus ``section.key=value`` texts."""
    tree: dict[str, Any] = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"config: expected a table of sections, got {values!r}")
    for section, table in values.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"config: unknown section {section!r}{did_you_mean(section, _SECTIONS)} "
                f"(sections: {', '.join(_SECTIONS)})"
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"config: [{section}] must be a table, got {table!r}")
        tree[section] = dict(table)
    for text in overrides:
        key, value = parse_override(text)
        section, _, rest = key.partition(".")
        if section not in _SECTIONS:
            raise ConfigError(
                f"config: unknown key {key!r}{did_you_mean(key, _all_keys(), n=1)} "
                f"in override {text!r}"
            )
        name, _, option = rest.partition(".")
        table = tree.setdefault(section, {})
        if option:
            annotation = _field_types(_SECTIONS[section]).get(name)
            if not _is_table(annotation):
                raise ConfigError(
                    f"config: unknown key {key!r}{did_you_mean(key, _all_keys(), n=1)}"
                )
            table[name] = {**dict(table.get(name) or {}), option: value}  # replaces the recipe's
        else:
            table[rest] = value
    sections = {}
    for section, cls in _SECTIONS.items():
        table = tree.get(section, {})
        annotations = _field_types(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        arguments = {}
        for name, value in table.items():
            key = f"{section}.{name}"
            if name not in known:
                raise ConfigError(
                    f"config: unknown key {key!r}{did_you_mean(key, _all_keys(), n=1)}"
                )
            value = _coerce(key, value, annotations[name])
            check = _RANGES.get(key)
            if check is not None and value is not None and not check[0](value):
                raise ConfigError(f"config: {key} must be {check[1]}, got {value!r}")
            arguments[name] = value
        sections[section] = cls(**arguments)
    config = Config(**sections)
    _check_relations(config)
    return config


def _is_table(annotation: Any) -> bool:
    """Whether a field holds a table (``dict`` or ``dict | None``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_table(a) for a in typing.get_args(annotation))
    return annotation is dict or typing.get_origin(annotation) is dict


def _check_relations(config: Config) -> None:
    """Checks that involve the registries or more than one key."""
    from gradkit.models import MODELS
    from gradkit.optim import OPTIMIZERS, SCHEDULE_FREE
    from gradkit.schedules import ScheduleSyntaxError, parse

    if config.model.name.lower() not in MODELS:
        raise ConfigError(
            f"config: model.name: unknown model {config.model.name!r}"
            f"{did_you_mean(config.model.name.lower(), MODELS)} (known: {', '.join(MODELS)})"
        )
    known = {**OPTIMIZERS, **SCHEDULE_FREE}
    if config.optim.name.lower() not in known:
        raise ConfigError(
            f"config: optim.name: unknown optimizer {config.optim.name!r}"
            f"{did_you_mean(config.optim.name.lower(), known)} "
            f"(known: {', '.join(known)})"
        )
    for key in ("lr", "batch"):
        text = getattr(config.schedule, key)
        if text is None:
            continue
        try:
            parse(text)
        except (ScheduleSyntaxError, ValueError, TypeError) as error:
            raise ConfigError(f"config: schedule.{key}: {error}") from None
    if config.optim.name.lower() in SCHEDULE_FREE:
        _check_schedule_free(config)
    if config.optim.average is not None:
        from gradkit.train._average import check_average

        check_average(config.optim.average, config.train.steps)
    micro = config.train.micro_batch_size
    if micro is not None and micro > config.train.batch_size:
        raise ConfigError(
            f"config: train.micro_batch_size={micro} is larger than "
            f"train.batch_size={config.train.batch_size}"
        )
    if config.checkpoint.snapshot_ensemble and not parse(config.schedule.lr).cycle_ends(
        config.train.steps
    ):
        raise ConfigError(
            f"config: checkpoint.snapshot_ensemble={config.checkpoint.snapshot_ensemble} needs "
            f'an lr schedule with cycles (e.g. schedule.lr = "sgdr(1000)"); '
            f"{config.schedule.lr!r} has no cycle end within {config.train.steps} steps"
        )


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.1"`` -> ``("optim.lr", 0.1)``; the value is read as TOML, else as text."""
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not key or "." not in key:
        raise ConfigError(
            f"config: invalid override {text!r}; expected section.key=value, e.g. optim.lr=0.1"
        )
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: model.name=cnn
    return key, value


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()
) -> Config:
    """Read a TOML config (``None``: the defaults) and apply ``section.key=value`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as stream:
                values = tomllib.load(stream)
        except FileNotFoundError:
            raise ConfigError(f"config: no such file {str(path)!r}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config: {path} is not valid TOML: {error}") from None
    return config_from_dict(values, overrides)


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Nested tables of every key (``None`` values included)."""
    return {name: dataclasses.asdict(getattr(config, name)) for name in _SECTIONS}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
            + "}"
        )
    raise ConfigError(f"config: cannot write {value!r} ({type(value).__name__}) to TOML")


def config_to_toml(config: Config) -> str:
    """The config as TOML text; keys that are ``None`` are left out (absent means ``None``)."""
    lines = ["# gradkit training config (gradkit train CONFIG.toml key=value ...)"]
    for section, table in config_to_dict(config).items():
        lines.append(f"\n[{section}]")
        lines += [
            f"{key} = {_toml_value(value)}" for key, value in table.items() if value is not None
        ]
    return "\n".join(lines) + "\n"


def save_config(config: Config, path: str | os.PathLike[str]) -> Path:
    """Write ``config`` as TOML, atomically; returns the path."""
    with atomic_output(path) as temporary:
        temporary.write_text(config_to_toml(config), encoding="utf-8")
    return Path(path)


def _check_schedule_free(config: Config) -> None:
    """A schedule-free optimizer takes no decaying lr schedule and no second average.

    Defazio et al. (arXiv 2405.15682) replace the schedule by the average: its weights follow
    the largest rate so far, so a decay would shrink the steps without the averaging that the
    method's guarantees rest on. A warm-up (a schedule that never decreases) is allowed.
    """
    from gradkit.schedules import parse

    name = config.optim.name
    if config.optim.average is not None:
        raise ConfigError(
            f"config: optim.average={config.optim.average!r} with optim.name={name!r}: a "
            "schedule-free optimizer already evaluates an average of its iterates; remove "
            "optim.average"
        )
    schedule = parse(config.schedule.lr)
    steps = config.train.steps
    stride = max(1, steps // 4096)
    peak = low = (0, schedule(0))
    for step in (*range(0, steps, stride), steps - 1):
        value = schedule(step)
        if value > peak[1] and low[1] >= peak[1]:
            peak = low = (step, value)
        elif value < low[1]:
            low = (step, value)
    if low[1] < peak[1] * (1 - 1e-9):
        raise ConfigError(
            f"config: schedule.lr={config.schedule.lr!r} decays (from {peak[1]:.4g} at step "
            f"{peak[0]} to {low[1]:.4g} at step {low[0]}), but optim.name={name!r} replaces "
            "the schedule by averaging (arXiv 2405.15682): use one that never decreases, e.g. "
            "schedule.lr='constant()' or 'warmup(200)', or the optimizer's own "
            "optim.options.warmup_steps"
        )
