"""Weight averaging in the engine: ``optim.average = "ema(0.999)"`` or
``"swa(start=4000, every=100)"``.

The averaged weights (:class:`gradkit.optim.EMA`, :class:`gradkit.optim.SWA`) are updated after
optimizer steps, are what evaluation measures (``test_*``/``val_*``; the last iterate's go to
``iterate_*`` in ``evals.jsonl``) and so what ``best.pt`` is selected on, and are saved in every
checkpoint, so a resumed run goes on exactly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradkit.optim import EMA, SWA, update_bn
from gradkit.train._sections import ConfigError

__all__ = ["AverageSpec", "WeightAveraging", "parse_average", "recompute_batch_norm"]

_FORM = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$")
_USAGE = 'expected "ema(decay)" such as "ema(0.999)", or "swa(start=STEP, every=STEPS)"'


@dataclass(frozen=True)
class AverageSpec:
    """A parsed ``optim.average``: ``kind`` ``"ema"`` (with ``decay``) or ``"swa"`` (averaging
    after step ``start``, then every ``every`` steps: steps start, start + every, ...)."""

    kind: str
    decay: float = 0.999
    start: int = 0
    every: int = 1


def _number(text: str, key: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"config: optim.average={spec!r}: {key}={text!r} is not a number; {_USAGE}"
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"config: optim.average={spec!r}: {key}={text!r} must be finite")
    return value


def _integer(text: str, key: str, spec: str, low: int) -> int:
    value = _number(text, key, spec)
    if value != int(value) or value < low:
        raise ConfigError(
            f"config: optim.average={spec!r}: {key}={text} must be an integer >= {low}"
        )
    return int(value)


def parse_average(spec: str) -> AverageSpec:
    """``"ema(0.999)"``, ``"ema(decay=0.99)"``, ``"swa(start=1000)"``, ``"swa(1000, every=50)"``.

    Raises:
        ConfigError: a spec that does not parse, an unknown kind or argument, a value out of
            range; the message names the spec and what is allowed.
    """
    match = _FORM.match(spec)
    if match is None:
        raise ConfigError(f"config: optim.average={spec!r} does not parse; {_USAGE}")
    kind, inside = match.group(1).lower(), match.group(2).strip()
    names = {"ema": ("decay",), "swa": ("start", "every")}
    if kind not in names:
        raise ConfigError(
            f"config: optim.average={spec!r}: unknown averaging {match.group(1)!r}; {_USAGE}"
        )
    values: dict[str, str] = {}
    parts = [part.strip() for part in inside.split(",")] if inside else []
    keyword_seen = False
    for position, part in enumerate(parts):
        key, equals, value = part.partition("=")
        keyword_seen = keyword_seen or bool(equals)
        if not equals:
            if position >= len(names[kind]) or keyword_seen:
                raise ConfigError(
                    f"config: optim.average={spec!r}: unexpected argument {part!r}; {_USAGE}"
                )
            key, value = names[kind][position], part
        key, value = key.strip(), value.strip()
        if key not in names[kind]:
            raise ConfigError(
                f"config: optim.average={spec!r}: {kind} has no argument {key!r} "
                f"(it takes {', '.join(names[kind])})"
            )
        if key in values:
            raise ConfigError(f"config: optim.average={spec!r}: {key} is given twice")
        values[key] = value
    if kind == "ema":
        decay = _number(values.get("decay", "0.999"), "decay", spec)
        if not 0.0 < decay < 1.0:
            raise ConfigError(
                f"config: optim.average={spec!r}: decay={decay} must be in (0, 1) "
                "(0 is the last iterate, 1 never moves)"
            )
        return AverageSpec("ema", decay=decay)
    if "start" not in values:
        raise ConfigError(
            f"config: optim.average={spec!r}: swa needs start=STEP, the step of its first "
            "average (e.g. 75% of train.steps)"
        )
    start = _integer(values["start"], "start", spec, 0)
    every = _integer(values.get("every", "1"), "every", spec, 1)
    return AverageSpec("swa", start=start, every=every)


def check_average(spec: str, steps: int) -> AverageSpec:
    """:func:`parse_average`, and an SWA that starts within the run's ``steps``."""
    parsed = parse_average(spec)
    if parsed.kind == "swa" and parsed.start > steps:
        raise ConfigError(
            f"config: optim.average={spec!r} starts at step {parsed.start}, after the run's "
            f"end (train.steps={steps}); it would average nothing: start at most {steps}"
        )
    return parsed


def recompute_batch_norm(module: nn.Module, train_x: Tensor, batch_size: int) -> None:
    """The batch-norm statistics of ``module``'s weights, rebuilt on ``train_x`` in batches of
    ``batch_size`` (:func:`gradkit.optim.update_bn`; a module without batch norm is left
    alone)."""
    batches = [train_x[i : i + batch_size] for i in range(0, len(train_x), batch_size)]
    with torch.no_grad():
        update_bn(batches, module)


class WeightAveraging:
    """The engine's averager of ``model``: when to update, what to evaluate, its state."""

    def __init__(self, spec: AverageSpec, model: nn.Module) -> None:
        self.spec = spec
        self.averager: EMA | SWA
        if spec.kind == "ema":
            # BatchNorm statistics are averaged too (as timm's ModelEmaV3 does).
            self.averager = EMA(model, spec.decay, average_buffers=True)
        else:
            self.averager = SWA(model)
        self._has_batch_norm = any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
        )
        self._bn_step: int | None = None

    def after_step(self, step: int) -> None:
        """Average the model in after optimizer step ``step`` (1-based) when the spec says."""
        spec = self.spec
        if spec.kind == "ema" or (step >= spec.start and (step - spec.start) % spec.every == 0):
            self.averager.update()

    @property
    def started(self) -> bool:
        return self.averager.n_averaged > 0

    def model_for_evaluation(self, step: int, train_x: Tensor, batch_size: int) -> nn.Module:
        """The averaged module; an SWA's batch-norm statistics recomputed on the training
        inputs first (arXiv 1803.05407), once per step."""
        module = self.averager.module
        if self.spec.kind == "swa" and self._has_batch_norm and self._bn_step != step:
            recompute_batch_norm(module, train_x, batch_size)
            self._bn_step = step
        return module

    def state_dict(self) -> dict[str, object]:
        return self.averager.state_dict()

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.averager.load_state_dict(state)
        self._bn_step = None
