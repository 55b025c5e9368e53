"""Multi-tensor arithmetic whose scalar may be a Python number or a 0-d tensor.

On the eager path hyperparameters are Python numbers, and these helpers call the exact
``torch._foreach_*`` op that torch.optim uses (same rounding, hence parity to the last bit or
so). On the fused path they are 0-d tensors, which the ``alpha=``/``value=`` arguments of those
ops do not accept; the helpers then spell the same arithmetic with tensor operands, which
``torch.compile`` fuses into the surrounding kernel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

Scalar = Any
"""A Python number, a 0-d tensor, or a per-tensor list of either."""


def _is_number(scale: Scalar) -> bool:
    return isinstance(scale, (int, float)) and not isinstance(scale, bool)


def _numbers(scales: Scalar) -> bool:
    if isinstance(scales, list):
        return all(_is_number(s) for s in scales)
    return _is_number(scales)


def add_scaled_(targets: list[Tensor], sources: list[Tensor], scale: Scalar) -> None:
    """``targets[i] += scale[i] * sources[i]`` (``scale`` one value or one per tensor)."""
    if not targets:
        return
    if _numbers(scale):
        scales = scale if isinstance(scale, list) else [scale]
        if len(set(scales)) == 1:
            torch._foreach_add_(targets, sources, alpha=scales[0])
        else:
            for target, source, factor in zip(targets, sources, scales, strict=True):
                target.add_(source, alpha=factor)
        return
    torch._foreach_add_(targets, torch._foreach_mul(sources, scale))


def addcmul_(
    targets: list[Tensor], first: list[Tensor], second: list[Tensor], value: Scalar
) -> None:
    """``targets[i] += value * first[i] * second[i]``."""
    if _is_number(value):
        torch._foreach_addcmul_(targets, first, second, value=value)
        return
    product = torch._foreach_mul(first, second)
    torch._foreach_mul_(product, value)
    torch._foreach_add_(targets, product)


def lerp_(targets: list[Tensor], ends: list[Tensor], weight: Scalar) -> None:
    """``targets[i] += weight * (ends[i] - targets[i])``."""
    if _is_number(weight):
        torch._foreach_lerp_(targets, ends, weight)
        return
    difference = torch._foreach_sub(ends, targets)
    torch._foreach_mul_(difference, weight)
    torch._foreach_add_(targets, difference)


def sqrt(value: Scalar) -> Scalar:
    """The square root of a number (``math.sqrt``), a numpy array or a tensor."""
    if _is_number(value):
        return math.sqrt(value)
    return np.sqrt(value) if isinstance(value, np.ndarray) else torch.sqrt(value)


def add_scalar(tensors: list[Tensor], value: Scalar) -> list[Tensor]:
    """``tensors[i] + value`` for one number or 0-d tensor (an ``eps``).

    A 0-d tensor goes in as a list holding it once per tensor: given to ``_foreach_add`` as its
    scalar, ``torch.compile`` (torch 2.13) bakes the tensor's value at compile time into the
    program as a constant, without a guard, so a changed ``eps`` was silently ignored by a
    fused step (so are ``_foreach_sub_`` and ``_foreach_maximum_`` with a 0-d tensor; ``mul``
    and ``div`` read it as an input).
    """
    if isinstance(value, Tensor):
        return torch._foreach_add(tensors, [value] * len(tensors))
    return torch._foreach_add(tensors, value)


def mul_scalars_(targets: list[Tensor], factors: list[Any]) -> None:
    """``targets[i] *= factors[i]`` in place; no pass at all when every factor is the number
    1 (a rule's switch that is on for every parameter, as RAdam's after its first steps)."""
    if all(not isinstance(f, Tensor) and f == 1.0 for f in factors):
        return
    torch._foreach_mul_(targets, factors)


def add_scalar_(targets: list[Tensor], value: Scalar) -> None:
    """``targets[i] += value`` in place; see :func:`add_scalar`."""
    if isinstance(value, Tensor):
        torch._foreach_add_(targets, [value] * len(targets))
    else:
        torch._foreach_add_(targets, value)


def accumulation_dtype(tensors: list[Tensor]) -> torch.dtype:
    """The dtype norms of ``tensors`` are accumulated in: theirs, and at least float32."""
    dtype = tensors[0].dtype if tensors else torch.float32
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def norms(tensors: list[Tensor]) -> list[Tensor]:
    """The L2 norm of each tensor as a 0-d tensor, accumulated in at least float32.

    ``torch._foreach_norm``, one multi-tensor call; inside a traced program (the fused step, or
    a caller's ``torch.compile``), one ``vector_norm`` per tensor instead: a reduction inductor
    can fuse into the loop that produces the tensor (LAMB's update: its norm is accumulated
    while it is written), where ``_foreach_norm`` is an opaque library call that would read the
    tensor back. The same norms, written as the compiler needs them, as the other helpers here
    spell their arithmetic for tensor scalars.
    """
    if not tensors:
        return []
    dtype = accumulation_dtype(tensors)
    if torch.compiler.is_compiling():
        return [torch.linalg.vector_norm(tensor, dtype=dtype) for tensor in tensors]
    return list(torch._foreach_norm(tensors, 2, dtype=dtype))
