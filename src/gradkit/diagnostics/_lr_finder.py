r"""The learning-rate range test (Smith, arXiv 1506.01186, Sec. 3.3).

Train for ``steps`` mini-batches while the learning rate grows exponentially from
:math:`\eta_{\min}` to :math:`\eta_{\max}`,

.. math:: \eta_i = \eta_{\min} \left( \eta_{\max} / \eta_{\min} \right)^{i / (\mathrm{steps} - 1)},

and record the loss of each batch. The raw losses are noisy, so they are smoothed by a
bias-corrected exponential moving average,

.. math:: m_i = \beta m_{i-1} + (1 - \beta)\,\ell_i, \qquad \hat\ell_i = m_i / (1 - \beta^{i+1}),

and the sweep stops once the loss diverges: :math:`\hat\ell_i > k \min_{j \le i} \hat\ell_j`
(or a loss is not finite). A rate is then suggested by one of two rules, both reported:

- ``"steepest"``: the rate where the smoothed loss falls fastest,
  :math:`\arg\min_i d\hat\ell / d\log\eta`, searched before the minimum of :math:`\hat\ell`;
- ``"minimum"``: the rate at the minimum of :math:`\hat\ell`, divided by 10 (the minimum sits at
  the edge of stability; a tenth of it is a safe, still fast rate).

The model (parameters, buffers, gradients, modes), the optimizer (state and every group's
hyperparameters) and torch's global random state are restored exactly afterwards, so the test
can run before training on the very objects that will train.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from gradkit._io import atomic_output
from gradkit.diagnostics._evaluation import (
    DEFAULT_LOSS,
    Data,
    LossFunction,
    check_positive,
    check_positive_integer,
    preserved,
)

_RULES = {
    "steepest": "the steepest descent of the smoothed loss (min d loss / d log lr, before its "
    "minimum)",
    "minimum": "the rate at the minimum of the smoothed loss, divided by 10",
}


@dataclass(frozen=True)
class LRRangeTest:
    """The outcome of :func:`lr_range_test`.

    Attributes:
        lrs: the rate of each step taken.
        losses: the raw loss of each step's batch.
        smoothed: the bias-corrected moving average of ``losses``.
        suggestion: the suggested learning rate, by ``rule``.
        rule: how ``suggestion`` was chosen, in words.
        steepest: the rate of steepest descent of the smoothed loss.
        minimum: the rate at the minimum of the smoothed loss, divided by 10.
        diverged: whether the sweep stopped early on divergence.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    rule: str
    steepest: float
    minimum: float
    diverged: bool


def _cycle(
    data: Data, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless batches: shuffled slices of tensors, or a loader's batches again and again."""
    if isinstance(data, TensorDataset):
        data = tuple(data.tensors)  # type: ignore[assignment]
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        inputs, targets = data
        if len(inputs) == 0 or len(inputs) != len(targets):
            raise ValueError("lr_range_test: inputs and targets must be non-empty, equal length")
        while True:
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(inputs), batch_size):
                index = order[start : start + batch_size]
                yield inputs[index], targets[index]
    while True:
        empty = True
        for batch in data:  # type: ignore[union-attr]
            empty = False
            yield batch[0], batch[1]
        if empty:
            raise ValueError("lr_range_test: the data loader yielded no batches")


def _suggest(lrs: np.ndarray, smoothed: np.ndarray) -> tuple[float, float]:
    """The steepest-descent rate and the minimum / 10 rate."""
    best = int(np.argmin(smoothed))
    minimum = float(lrs[best]) / 10
    if best < 2:
        return float(lrs[0]), minimum
    slope = np.gradient(smoothed[: best + 1], np.log(lrs[: best + 1]))
    return float(lrs[int(np.argmin(slope))]), minimum


def lr_range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.98,
    divergence: float = 4.0,
    rule: str = "minimum",
    loss_fn: LossFunction = DEFAULT_LOSS,
    batch_size: int = 64,
    seed: int = 0,
) -> LRRangeTest:
    """Sweep the learning rate exponentially and suggest one (see the module docstring).

    Every param group gets the same rate :math:`\\eta_i`. The model trains in training mode.

    Args:
        model, optimizer: the objects to test; both are restored afterwards.
        data: a ``DataLoader`` (cycled), or tensors / a ``TensorDataset`` cut into shuffled
            batches of ``batch_size`` from a generator seeded with ``seed``.
        smoothing: :math:`\\beta` of the moving average (0 disables smoothing).
        divergence: :math:`k`; stop when the smoothed loss exceeds ``k`` times its minimum.
        rule: ``"minimum"`` (default) or ``"steepest"``, which rule gives ``suggestion``.

    Example:
        >>> result = lr_range_test(model, torch.optim.Adam(model.parameters()), (x, y))
        >>> result.suggestion, result.rule
    """
    check_positive("lr_range_test", "min_lr", min_lr)
    check_positive("lr_range_test", "max_lr", max_lr)
    if max_lr <= min_lr:
        raise ValueError(
            f"lr_range_test: invalid max_lr={max_lr!r}; expected more than min_lr={min_lr!r}"
        )
    check_positive_integer("lr_range_test", "steps", steps, 2)
    check_positive_integer("lr_range_test", "batch_size", batch_size)
    if not 0 <= smoothing < 1:
        raise ValueError(f"lr_range_test: invalid smoothing={smoothing!r}; expected 0 <= it < 1")
    if not divergence > 1:
        raise ValueError(f"lr_range_test: invalid divergence={divergence!r}; expected > 1")
    if rule not in _RULES:
        raise ValueError(f"lr_range_test: unknown rule={rule!r}; expected one of {tuple(_RULES)}")
    schedule = min_lr * (max_lr / min_lr) ** (np.arange(steps) / (steps - 1))
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = torch.get_rng_state()
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    diverged = False
    try:
        with preserved(model, train=True):
            batches = _cycle(data, batch_size, torch.Generator().manual_seed(seed))
            average, best = 0.0, math.inf
            for index, lr in enumerate(schedule):
                for group in optimizer.param_groups:
                    group["lr"] = float(lr)
                inputs, targets = next(batches)
                optimizer.zero_grad()
                loss = loss_fn(model(inputs), targets)
                loss.backward()
                optimizer.step()
                value = float(loss.detach())
                if not math.isfinite(value):
                    diverged = True
                    break
                average = smoothing * average + (1 - smoothing) * value
                estimate = average / (1 - smoothing ** (index + 1))
                lrs.append(float(lr))
                losses.append(value)
                smoothed.append(estimate)
                best = min(best, estimate)
                if index > 0 and estimate > divergence * best:
                    diverged = True
                    break
    finally:
        optimizer.load_state_dict(saved_optimizer)
        torch.set_rng_state(saved_rng)
    if len(lrs) < 2:
        raise ValueError(
            f"lr_range_test: the loss diverged at once (lr={schedule[0]:g}); lower min_lr"
        )
    rates, smooth = np.asarray(lrs), np.asarray(smoothed)
    steepest, minimum = _suggest(rates, smooth)
    suggestion = steepest if rule == "steepest" else minimum
    return LRRangeTest(
        rates, np.asarray(losses), smooth, suggestion, _RULES[rule], steepest, minimum, diverged
    )


def plot_lr_range_test(
    result: LRRangeTest, path: str | os.PathLike[str], *, title: str = "", dpi: int = 120
) -> None:
    """Plot raw and smoothed loss against the learning rate (log x) with the suggestions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), layout="constrained")
    axes.plot(result.lrs, result.losses, color="C0", alpha=0.3, linewidth=1, label="loss")
    axes.plot(result.lrs, result.smoothed, color="C0", linewidth=1.8, label="smoothed loss")
    axes.axvline(result.steepest, color="C2", linestyle="--", linewidth=1.2,
                 label=f"steepest descent: {result.steepest:.2g}")  # fmt: skip
    axes.axvline(result.minimum, color="C3", linestyle=":", linewidth=1.4,
                 label=f"minimum / 10: {result.minimum:.2g}")  # fmt: skip
    axes.set_xscale("log")
    low, high = float(result.smoothed.min()), float(result.smoothed.max())
    span = high - low if high > low else max(abs(high), 1.0)
    axes.set_ylim(low - 0.05 * span, high + 0.05 * span)  # the raw losses may spike beyond
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, which="both")
    axes.set_title(title or f"LR range test; suggested {result.suggestion:.2g}", fontsize=10)
    suffix = os.fspath(path).rsplit(".", 1)[-1].lower() if "." in os.fspath(path) else "png"
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format=suffix, dpi=dpi)
    plt.close(figure)
