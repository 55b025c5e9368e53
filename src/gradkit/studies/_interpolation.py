r"""Cross-run interpolations: the loss on the line between two arms' solutions.

Keskar et al. (arXiv 1609.04836, Fig. 3) plot the loss and accuracy along

.. math:: \theta(\alpha) = (1 - \alpha)\,\theta_{\text{from}} + \alpha\,\theta_{\text{to}}

between a small-batch and a large-batch solution. A study asks for it with::

    [[interpolations]]
    name = "small_to_large"
    from = "small_batch"                                 # an arm: alpha = 0
    to = "large_batch"                                   # an arm: alpha = 1
    alphas = { start = -0.5, stop = 1.5, points = 21 }   # or a list; must contain 0 and 1

The runner keeps the final weights of the runs of ``from`` and ``to`` (in the store, with the
run's result) and, once the runs are done, computes the curve for every pair of finished runs
of the two arms with the same seed and grid point (every pair of their sweep points: the
report shows the pair selected on validation). A pair already in the store with the same
alphas is skipped; a failure is recorded with its error and leaves the runs alone.

Each curve holds the loss and accuracy at each alpha on the first
:data:`~gradkit.studies._measures.MEASURE_SAMPLES` samples of the training split (as the
other measures) and on the whole test split, in evaluation mode.

Buffers: the curve is :func:`gradkit.diagnostics.interpolate` with ``buffers=True``: the
floating-point buffers (batch-norm running mean and variance) are interpolated with the same
alpha, as Keskar et al.'s code interpolates all of a Keras model's weights, so both ends are
exactly the two runs' own final models; integer buffers (``num_batches_tracked``) are the
nearer end's. Beyond [0, 1] an extrapolated running variance can turn negative, and the loss
there is ``nan``.
"""

from __future__ import annotations

import io
import itertools
import math
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradkit._lookup import did_you_mean
from gradkit.studies._spec import SpecError, named_tables

__all__ = ["INTERPOLATION_KEYS", "Interpolation", "compute_interpolations", "interpolation_curve"]

INTERPOLATION_KEYS = ("name", "from", "to", "alphas", "description")
"""The keys of an ``[[interpolations]]`` table."""
_RANGE_KEYS = ("start", "stop", "points")
_DECIMALS = 12  # alphas are rounded, so that linspace's 1.0000000000000002 is 1


@dataclass(frozen=True)
class Interpolation:
    """A line between the solutions of two arms (see the module docstring)."""

    name: str
    from_arm: str
    to_arm: str
    alphas: tuple[float, ...]
    description: str = ""


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


# ---------------------------------------------------------------- computing


def interpolation_curve(
    model: nn.Module,
    start: Mapping[str, Tensor],
    end: Mapping[str, Tensor],
    splits: Mapping[str, tuple[Tensor, Tensor]],
    alphas: Sequence[float],
    *,
    batch_size: int = 1000,
) -> dict[str, list[float]]:
    """Loss and accuracy of ``model`` at :math:`(1-\\alpha)` ``start`` :math:`+ \\alpha` ``end``.

    Args:
        model: the architecture; its state is restored afterwards.
        start, end: two ``state_dict``\\ s of ``model`` (parameters and buffers).
        splits: ``{split: (inputs, labels)}``; the curve has ``{split}_loss`` and
            ``{split}_accuracy`` for each, and ``alpha``.
    """
    from gradkit.diagnostics import interpolate
    from gradkit.diagnostics._evaluation import preserved

    expected = {key: value.shape for key, value in model.state_dict().items()}
    for name, state in (("start", start), ("end", end)):
        shapes = {key: value.shape for key, value in state.items()}
        if shapes != expected:
            differ = sorted(set(shapes) ^ set(expected)) or sorted(
                key for key in shapes if shapes[key] != expected[key]
            )
            raise ValueError(
                f"interpolation_curve: {name} is not a state_dict of the model "
                f"({type(model).__name__}); these entries differ: {', '.join(differ[:4])}"
            )
    curve: dict[str, list[float]] = {"alpha": [float(a) for a in alphas]}
    with preserved(model):
        model.load_state_dict(start)  # what the line does not move (frozen parameters)
        for split, data in splits.items():
            result = interpolate(
                model, start, end, data, alphas=alphas, batch_size=batch_size, buffers=True
            )
            curve[f"{split}_loss"] = [float(v) for v in result.loss]
            curve[f"{split}_accuracy"] = [float(v) for v in result.accuracy]
    return curve


def _pairs(interpolation: Interpolation, runs: Sequence[Any]) -> list[tuple[Any, Any]]:
    """The ``(from run, to run)`` pairs with the same seed and grid point."""
    ends = [r for r in runs if r.status == "done"]
    return [
        (first, last)
        for first in ends
        if first.arm == interpolation.from_arm
        for last in ends
        if last.arm == interpolation.to_arm and last.seed == first.seed and last.grid == first.grid
    ]


def _load_state(data: bytes | None, run_id: str) -> dict[str, Tensor]:
    if data is None:
        raise LookupError(
            f"run {run_id} has no stored weights (it finished before an interpolation named "
            "its arm; run the study again to retrain it)"
        )
    return torch.load(io.BytesIO(data), weights_only=True)


def _data_of(config: Mapping[str, Any], cache: dict[str, Any]) -> Any:
    """``(train samples, test split, input shape, classes)`` of a run's data, cached."""
    from gradkit.data import load_dataset
    from gradkit.studies._measures import MEASURE_SAMPLES
    from gradkit.train import config_from_dict

    parsed = config_from_dict(dict(config))
    key = repr((parsed.data.name, parsed.data.root, sorted(parsed.data.options.items())))
    if key not in cache:
        splits = load_dataset(parsed.data.name, root=parsed.data.root, **parsed.data.options)
        train_x, train_y = splits.train.tensors[:2]
        test_x, test_y = splits.test.tensors[:2]
        classes = getattr(splits, "classes", None)
        if isinstance(classes, Sequence) and not isinstance(classes, str):
            classes = len(classes)
        cache[key] = (
            {
                "train": (train_x[:MEASURE_SAMPLES], train_y[:MEASURE_SAMPLES]),
                "test": (test_x, test_y),
            },
            tuple(train_x.shape[1:]),
            classes,
        )
    return parsed, cache[key]


def compute_interpolations(
    interpolations: Sequence[Interpolation],
    store_path: str | Path,
    *,
    retry_failed: bool = False,
) -> tuple[list[tuple[str, str, str]], dict[tuple[str, str, str], str]]:
    """Compute every interpolation the store lacks (and the failed ones with ``retry_failed``);
    returns ``(computed, failed)``.

    ``computed`` lists ``(name, from_run, to_run)`` of the interpolations computed now;
    ``failed`` maps those that failed to their error (recorded in the store as well).
    """
    from gradkit.studies._store import Store
    from gradkit.train import build_model

    computed: list[tuple[str, str, str]] = []
    failed: dict[tuple[str, str, str], str] = {}
    cache: dict[str, Any] = {}
    with Store(store_path) as store:
        runs = store.runs()
        stored = {(r.name, r.from_run, r.to_run): r for r in store.interpolations()}
        for interpolation in interpolations:
            for first, last in _pairs(interpolation, runs):
                key = (interpolation.name, first.run_id, last.run_id)
                old = stored.get(key)
                if (
                    old is not None
                    and tuple(old.alphas) == interpolation.alphas
                    and not (retry_failed and old.status == "failed")
                ):
                    continue
                started = time.perf_counter()
                computed.append(key)
                try:
                    config, (splits, shape, classes) = _data_of(first.config, cache)
                    model = build_model(config, shape, classes)
                    curve = interpolation_curve(
                        model,
                        _load_state(store.weights(first.run_id), first.run_id),
                        _load_state(store.weights(last.run_id), last.run_id),
                        splits,
                        interpolation.alphas,
                    )
                except Exception as error:
                    text = f"{type(error).__name__}: {error}"
                    failed[key] = text
                    tail = "".join(traceback.format_exception(error)[-3:])
                    store.record_interpolation(
                        *key,
                        alphas=interpolation.alphas,
                        error=f"{text}\n{tail}",
                        seconds=time.perf_counter() - started,
                    )
                    continue
                store.record_interpolation(
                    *key,
                    alphas=interpolation.alphas,
                    curve=curve,
                    seconds=time.perf_counter() - started,
                )
    return computed, failed
