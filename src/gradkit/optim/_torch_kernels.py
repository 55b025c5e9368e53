r"""torch.optim's own kernels for a chain that *is* one of torch's algorithms.

A gradkit step walks the chain with several multi-tensor passes over the data. Where a param
group's chain, with the settings the group has at this step, computes exactly torch.optim's
Adam/AdamW (and AMSGrad), SGD (momentum, dampening, Nesterov) or Adagrad, the eager step hands
that group to torch's functional implementation (``torch.optim.adam.adam``,
``torch.optim.sgd.sgd``, ``torch.optim.adagrad.adagrad``): on CPU with ``fused=True``, one
pass per tensor (7x faster than the chain for Adam at 10M parameters in 255 tensors,
``benchmarks/RESULTS.md``); on CUDA fused
for SGD and ``foreach=True`` for Adam and Adagrad (see :func:`kernel_for`; the CUDA paths are
tested here only through the same functional on CPU tensors). Anything else runs the chain.

The chain is recognised by the types of its transformations and the group's values, never by
the optimizer's class, so a user's own ``chain(add_decayed_weights(), scale_by_adam(),
scale_by_learning_rate())`` is Adam too. A transformation that does nothing with this group's
values is left out first: ``clip_by_agc`` or ``clip_by_global_norm`` switched off (``None`` or
0), weight decay 0, momentum 0, a ``when``/``unless`` branch not taken. What remains must be
one of

.. math::
    [\lambda]\,\text{adam}\,\eta \;(\text{Adam, L2}),\quad
    \text{adam}\,\lambda\,\eta \;(\text{AdamW}),\quad
    [\lambda]\,\text{adagrad}\,\eta,\quad [\lambda]\,[\text{trace}]\,\eta \;(\text{SGD})

with :math:`\lambda` = :func:`add_decayed_weights` and :math:`\eta` =
:func:`scale_by_learning_rate`. Other conditions: numeric hyperparameters are numbers or
one-element CPU tensors; every gradient and state array has its parameter's strides (torch's
fused CPU kernels walk the raw memory: a transposed gradient of a contiguous parameter gave a
wrong step); not inside a caller's ``torch.compile``.

The state is gradkit's (``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``sum``,
``momentum_buffer``, ``step``; torch's names), passed to torch by reference and updated in
place: the state the chain and the ``fused=True`` path keep, so ``state_dict``, resuming,
switching the dispatch on and off mid-run and param schedulers see one state. ``p.grad`` is not
modified: torch's fused and foreach paths negate (``maximize``) and decay into copies. The
numbers are those of the chain up to float rounding (float64: relative 1e-15 over 100 steps; in
bfloat16/float16 torch's fused kernels compute in float32 and round once, the chain rounds
after each pass).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.optim.adagrad as torch_adagrad
import torch.optim.adam as torch_adam
import torch.optim.sgd as torch_sgd
from torch import Tensor

from gradkit.optim._adam import ScaleByAdam
from gradkit.optim._adaptive import ScaleByAdagrad
from gradkit.optim._basic import AddDecayedWeights, ScaleByLearningRate, Trace
from gradkit.optim._clipping import ClipByAgc, ClipByGlobalNorm
from gradkit.optim._core import Bucket, Chain, Conditional, GradientTransformation, is_off

# What each transformation type that may be skipped needs to be off, by its param-group key.
_OFF_WHEN = {
    ClipByAgc: "agc_clipping",
    ClipByGlobalNorm: "max_grad_norm",
    AddDecayedWeights: "weight_decay",
    Trace: "momentum",
}
# The transformations of torch's algorithms (exact types: a subclass may compute otherwise).
_KNOWN = (ScaleByAdam, ScaleByAdagrad, ScaleByLearningRate, AddDecayedWeights, Trace)

# The active transformations, by type, of each algorithm torch has a kernel for, and where
# the weight decay sits.
_ADAM, _ADAGRAD, _SGD = "adam", "adagrad", "sgd"
_PATTERNS: dict[tuple[type, ...], tuple[str, str | None]] = {
    (ScaleByAdam, ScaleByLearningRate): (_ADAM, None),
    (AddDecayedWeights, ScaleByAdam, ScaleByLearningRate): (_ADAM, "coupled"),
    (ScaleByAdam, AddDecayedWeights, ScaleByLearningRate): (_ADAM, "decoupled"),
    (ScaleByAdagrad, ScaleByLearningRate): (_ADAGRAD, None),
    (AddDecayedWeights, ScaleByAdagrad, ScaleByLearningRate): (_ADAGRAD, "coupled"),
    (ScaleByLearningRate,): (_SGD, None),
    (AddDecayedWeights, ScaleByLearningRate): (_SGD, "coupled"),
    (Trace, ScaleByLearningRate): (_SGD, None),
    (AddDecayedWeights, Trace, ScaleByLearningRate): (_SGD, "coupled"),
}


def active_transformations(
    transformation: GradientTransformation, group: dict[str, Any]
) -> list[GradientTransformation] | None:
    """The transformations that act on ``group`` this step, flattened; ``None`` if any of
    them is not one of torch's algorithms' (so the chain must run)."""
    if type(transformation) is Chain:
        found: list[GradientTransformation] = []
        for inner in transformation.transformations:
            part = active_transformations(inner, group)
            if part is None:
                return None
            found += part
        return found
    if type(transformation) is Conditional:
        taken = bool(group.get(transformation.key, False)) is transformation.value
        return active_transformations(transformation.inner, group) if taken else []
    kind = type(transformation)
    off_key = _OFF_WHEN.get(kind)
    if off_key is not None and is_off(group[off_key]):
        return []
    return [transformation] if kind in _KNOWN else None


_INTEGERS = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def _number(value: Any) -> float | None:
    """A hyperparameter as a Python float: a number, or a one-element CPU tensor."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if (
        isinstance(value, Tensor)
        and value.device.type == "cpu"
        and value.numel() == 1
        and (value.is_floating_point() or value.dtype in _INTEGERS)
    ):
        return float(value)
    return None


def _numbers(group: dict[str, Any], keys: Sequence[str]) -> dict[str, float] | None:
    values = {}
    for key in keys:
        number = _number(group[key])
        if number is None:
            return None
        values[key] = number
    return values


def kernel_for(device: torch.device, algorithm: str) -> str | None:
    """torch's path for ``algorithm`` on ``device``: "fused", "foreach" or None (the chain).

    CPU: fused. CUDA: fused for SGD, which keeps no counter; foreach for Adam, whose fused
    CUDA kernel wants its ``step`` counters on the device (gradkit's are on the CPU), and for
    Adagrad, which has no fused CUDA kernel.
    """
    if device.type == "cpu":
        return "fused"
    if device.type == "cuda":
        return "fused" if algorithm == _SGD else "foreach"
    return None


def _same_layout(params: list[Tensor], arrays: Sequence[list[Tensor]]) -> bool:
    """Whether each of ``arrays`` (gradients, state; an empty list is left out) has its
    parameter's memory layout.

    All contiguous is the common case and the cheap test (a C method mapped over the lists,
    a few microseconds for 255 tensors); otherwise the strides must be equal.
    """
    contiguous = Tensor.is_contiguous
    if all(map(contiguous, params)) and all(all(map(contiguous, array)) for array in arrays):
        return True
    strides = [param.stride() for param in params]
    return all(not array or [t.stride() for t in array] == strides for array in arrays)


def _mode(kernel: str) -> dict[str, bool]:
    return {"fused": kernel == "fused", "foreach": kernel == "foreach"}


def _adam(bucket: Bucket, decay: str | None, kernel: str) -> bool:
    group = bucket.group
    numbers = _numbers(group, ("lr", "eps") + (("weight_decay",) if decay else ()))
    betas = group["betas"]
    if numbers is None or not isinstance(betas, (tuple, list)) or len(betas) != 2:
        return False
    beta1, beta2 = _number(betas[0]), _number(betas[1])
    amsgrad = group["amsgrad"]
    if beta1 is None or beta2 is None or not isinstance(amsgrad, bool):
        return False
    states = bucket.states
    if amsgrad:
        for state in states:
            if "max_exp_avg_sq" not in state:
                # As the chain starts it (also when the layout test below sends it there).
                state["max_exp_avg_sq"] = torch.zeros_like(
                    state["exp_avg_sq"], memory_format=torch.preserve_format
                )
    exp_avgs = [state["exp_avg"] for state in states]
    exp_avg_sqs = [state["exp_avg_sq"] for state in states]
    maxima = [state["max_exp_avg_sq"] for state in states] if amsgrad else []
    if not _same_layout(bucket.params, [bucket.updates, exp_avgs, exp_avg_sqs, maxima]):
        return False
    torch_adam.adam(
        bucket.params,
        bucket.updates,
        exp_avgs,
        exp_avg_sqs,
        maxima,
        [state["step"] for state in states],
        **_mode(kernel),
        decoupled_weight_decay=decay == "decoupled",
        amsgrad=amsgrad,
        beta1=beta1,
        beta2=beta2,
        lr=numbers["lr"],
        weight_decay=numbers.get("weight_decay", 0.0),
        eps=numbers["eps"],
        maximize=group["maximize"],
    )
    return True


def _adagrad(bucket: Bucket, decay: str | None, kernel: str) -> bool:
    group = bucket.group
    numbers = _numbers(group, ("lr", "lr_decay", "eps") + (("weight_decay",) if decay else ()))
    if numbers is None:
        return False
    states = bucket.states
    sums = [state["sum"] for state in states]
    if not _same_layout(bucket.params, [bucket.updates, sums]):
        return False
    torch_adagrad.adagrad(
        bucket.params,
        bucket.updates,
        sums,
        [state["step"] for state in states],
        **_mode(kernel),
        lr=numbers["lr"],
        weight_decay=numbers.get("weight_decay", 0.0),
        lr_decay=numbers["lr_decay"],
        eps=numbers["eps"],
        maximize=group["maximize"],
    )
    return True


def _sgd(bucket: Bucket, decay: str | None, kernel: str) -> bool:
    group = bucket.group
    with_momentum = not is_off(group["momentum"])
    keys = ("lr",) + (("weight_decay",) if decay else ())
    keys += ("momentum", "dampening") if with_momentum else ()
    numbers = _numbers(group, keys)
    if numbers is None:
        return False
    states = bucket.states
    buffers = [state.get("momentum_buffer") for state in states]
    # A buffer that starts now is made by torch in the gradient's layout.
    present = [param if b is None else b for param, b in zip(bucket.params, buffers, strict=True)]
    if not _same_layout(bucket.params, [bucket.updates, present]):
        return False
    # SGD's functional keeps no counter; gradkit's state has one.
    torch._foreach_add_([state["step"] for state in states], 1)
    settings = {
        **_mode(kernel),
        "weight_decay": numbers.get("weight_decay", 0.0),
        "momentum": numbers.get("momentum", 0.0),
        "lr": numbers["lr"],
        "dampening": numbers.get("dampening", 0.0),
        "nesterov": bool(group["nesterov"]) if with_momentum else False,
        "maximize": group["maximize"],
    }
    if not with_momentum:
        count = len(bucket.params)
        torch_sgd.sgd(bucket.params, bucket.updates, [None] * count, **settings)
        return True
    fresh = [i for i, buffer in enumerate(buffers) if buffer is None]
    # torch's fused SGD starts buffers only when every one is missing: one call for the
    # parameters that have a buffer and one for those that start theirs now.
    taken = set(fresh)
    for indices in ([i for i in range(len(buffers)) if i not in taken], fresh):
        if not indices:
            continue
        chosen = [buffers[i] for i in indices]
        torch_sgd.sgd(
            [bucket.params[i] for i in indices],
            [bucket.updates[i] for i in indices],
            chosen,
            **settings,
        )
        for i, buffer in zip(indices, chosen, strict=True):
            states[i]["momentum_buffer"] = buffer
    return True


_RUNNERS: dict[str, Callable[[Bucket, str | None, str], bool]] = {
    _ADAM: _adam,
    _ADAGRAD: _adagrad,
    _SGD: _sgd,
}


def recognise(
    transformation: GradientTransformation, group: dict[str, Any]
) -> tuple[str, str | None] | None:
    """torch's algorithm that ``transformation`` computes on ``group`` this step ("adam",
    "adagrad" or "sgd") and where its weight decay sits ("coupled", "decoupled" or None for
    none), or None when it is not one of them."""
    active = active_transformations(transformation, group)
    if active is None:
        return None
    return _PATTERNS.get(tuple(type(t) for t in active))


def run_torch_kernels(
    transformation: GradientTransformation, buckets: Sequence[Bucket]
) -> list[Bucket]:
    """Step every bucket that torch's kernels can take; return the others, for the chain.

    The buckets are those of :meth:`ChainedOptimizer._buckets`: state created (``step`` not
    yet incremented), ``updates`` still the gradients themselves.
    """
    if torch.compiler.is_compiling():
        return list(buckets)
    left: list[Bucket] = []
    matches: dict[int, tuple[str, str | None] | None] = {}
    for bucket in buckets:
        if bucket.group_index not in matches:
            matches[bucket.group_index] = recognise(transformation, bucket.group)
        match = matches[bucket.group_index]
        if match is None or not bucket.params:
            left.append(bucket)
            continue
        algorithm, decay = match
        kernel = kernel_for(bucket.params[0].device, algorithm)
        if kernel is None or not _RUNNERS[algorithm](bucket, decay, kernel):
            left.append(bucket)
    return left
