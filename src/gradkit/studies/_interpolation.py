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
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradkit.diagnostics import interpolate, preserved
from gradkit.studies._definitions import Interpolation
from gradkit.studies._store import Store

__all__ = ["compute_interpolations", "interpolation_curve"]


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
