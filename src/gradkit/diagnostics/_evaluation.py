r"""What the model diagnostics share: datasets as batches, the dataset loss, parameter snapshots.

A dataset (:data:`Data`) is a ``DataLoader`` (or any iterable of ``(inputs, targets)`` batches),
a ``TensorDataset`` of ``(inputs, targets)``, or the pair of tensors itself. The dataset loss is
the mean over samples,

.. math:: L(\theta) = \frac1N \sum_b n_b\, \ell_b(\theta),

where :math:`\ell_b` is the mean loss of batch :math:`b` of :math:`n_b` samples, so it does not
depend on how the data are batched (batches of unequal size included). The diagnostics evaluate
it in evaluation mode (running batch-norm statistics, no dropout) and leave the model's
parameters, gradients and modes as they found them (:func:`preserved`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

Data = Iterable[tuple[Tensor, Tensor]] | TensorDataset | tuple[Tensor, Tensor]
"""A dataset: a ``DataLoader`` (any iterable of batches), a ``TensorDataset`` or the tensors."""

LossFunction = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(outputs, targets)``: the mean loss of a batch (e.g. ``F.cross_entropy``)."""

DEFAULT_LOSS: LossFunction = F.cross_entropy


def check_positive_integer(function: str, name: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is an integer ``>= minimum``, else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{function}: invalid {name}={value!r}; expected an integer >= {minimum}")
    return value


def check_positive(function: str, name: str, value: object) -> float:
    """``value`` if it is a finite number ``> 0``, else a ``ValueError`` naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{function}: invalid {name}={value!r}; expected a finite number > 0")
    return float(value)


def batches(data: Data, batch_size: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    r"""The ``(inputs, targets)`` batches of ``data``, in order.

    Tensors and ``TensorDataset``\ s are cut into consecutive slices of ``batch_size`` (all at once
    when ``None``); a ``DataLoader`` or other iterable yields its own batches.
    """
    if isinstance(data, TensorDataset):
        data = tuple(data.tensors)  # type: ignore[assignment]
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        inputs, targets = data
        if len(inputs) != len(targets) or len(inputs) == 0:
            raise ValueError(
                f"data: inputs ({len(inputs)}) and targets ({len(targets)}) must be "
                "non-empty and of equal length"
            )
        size = len(inputs) if batch_size is None else batch_size
        for start in range(0, len(inputs), size):
            yield inputs[start : start + size], targets[start : start + size]
        return
    for batch in data:  # type: ignore[union-attr]
        inputs, targets = batch[0], batch[1]
        yield inputs, targets


def dataset_loss(
    model: nn.Module,
    data: Data,
    loss_fn: LossFunction = DEFAULT_LOSS,
    *,
    batch_size: int | None = None,
    accuracy: bool = False,
) -> tuple[float, float]:
    """The dataset loss :math:`L(\\theta)` (no gradients), and the accuracy when asked for.

    The accuracy (fraction of argmax predictions equal to integer targets) is ``nan`` unless
    ``accuracy`` is set and the outputs are ``(batch, classes)`` logits.
    """
    total, correct, count = 0.0, 0, 0
    has_accuracy = accuracy
    with torch.no_grad():
        for inputs, targets in batches(data, batch_size):
            outputs = model(inputs)
            total += float(loss_fn(outputs, targets)) * len(targets)
            count += len(targets)
            if has_accuracy and outputs.dim() == 2 and not targets.is_floating_point():
                correct += int((outputs.argmax(dim=1) == targets).sum())
            else:
                has_accuracy = False
    if count == 0:
        raise ValueError("data: the dataset has no samples")
    return total / count, (correct / count if has_accuracy else math.nan)


def loss_and_gradient(
    model: nn.Module,
    data: Data,
    parameters: list[Tensor],
    loss_fn: LossFunction = DEFAULT_LOSS,
    *,
    batch_size: int | None = None,
) -> tuple[float, list[Tensor]]:
    """:math:`L(\\theta)` and :math:`\\nabla L(\\theta)` over ``parameters``, batch by batch."""
    gradient = [torch.zeros_like(p) for p in parameters]
    total, count = 0.0, 0
    for inputs, targets in batches(data, batch_size):
        loss = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(loss, parameters, allow_unused=True)
        for accumulated, grad in zip(gradient, grads, strict=True):
            if grad is not None:
                accumulated.add_(grad, alpha=len(targets))
        total += float(loss.detach()) * len(targets)
        count += len(targets)
    if count == 0:
        raise ValueError("data: the dataset has no samples")
    return total / count, [g / count for g in gradient]


def trainable(model: nn.Module) -> list[tuple[str, Tensor]]:
    """The named parameters that require gradients, in ``named_parameters`` order."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"{type(model).__name__} has no parameters that require gradients")
    return named


@contextlib.contextmanager
def preserved(model: nn.Module, *, train: bool = False) -> Iterator[None]:
    """Run the body in evaluation mode (or training mode with ``train``), then restore exactly
    the model's parameters, gradients, buffers and per-module modes, whatever the body raised."""
    modes = {module: module.training for module in model.modules()}
    parameters = [(p, p.detach().clone()) for p in model.parameters()]
    gradients = [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        model.train(train)
        yield
    finally:
        with torch.no_grad():
            for p, value in parameters:
                p.copy_(value)
            for b, value in buffers:
                b.copy_(value)
        for p, grad in gradients:
            p.grad = grad
        for module, mode in modes.items():
            module.training = mode


def flatten(tensors: Iterable[Tensor]) -> Tensor:
    """The tensors as one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: list[Tensor]) -> list[Tensor]:
    """Cut a flat vector into tensors shaped like ``like``."""
    pieces, start = [], 0
    for tensor in like:
        pieces.append(vector[start : start + tensor.numel()].view_as(tensor))
        start += tensor.numel()
    return pieces
