r"""torch.optim's own kernels for a chain that *is* one of torch's algorithms, or LAMB or LARS.

A gradkit step walks the chain with several multi-tensor passes over the data. Where a param
group's chain, with the settings the group has at this step, computes exactly one of
torch.optim's algorithms, the eager step hands that group to torch's functional
implementation (``torch.optim.adam.adam``, ``torch.optim.nadam.nadam``, ...) on gradkit's
state, by the fastest path torch has for it (see :func:`kernel_for`):

- Adam/AdamW (and AMSGrad), SGD (momentum, dampening, Nesterov) and Adagrad: torch's fused
  CPU kernel, one pass per tensor (7x faster than the chain for Adam at 10M parameters in 255
  tensors, ``benchmarks/RESULTS.md``); on CUDA fused for SGD and ``foreach=True`` for Adam and
  Adagrad. SGD (and LARS) in float16 or bfloat16 on CPU take torch's single-tensor loop
  instead: its fused CPU SGD gives wrong numbers there (:func:`kernel_for`).
- RMSprop (plain or centered, heavy-ball momentum), Adadelta, Adamax, NAdam and RAdam, which
  torch has no fused kernel for: its single-tensor loop on CPU, its default there and 2-3x
  faster than the chain (and than its own foreach path), because each tensor's passes run
  while the tensor is in cache; ``foreach=True`` on CUDA.

The CUDA paths are tested here only through the same functionals on CPU tensors. Anything
else runs the chain.

The chain is recognised by the types of its transformations and the group's values, never by
the optimizer's class, so a user's own ``chain(add_decayed_weights(), scale_by_adam(),
scale_by_learning_rate())`` is Adam too. A transformation that does nothing with this group's
values is left out first: ``clip_by_agc`` or ``clip_by_global_norm`` switched off (``None`` or
0), weight decay 0, momentum 0, a ``when``/``unless`` branch not taken. What remains must be
one of

.. math::
    [\lambda]\,\text{adam}\,\eta \;(\text{Adam, L2}),\quad
    \text{adam}\,\lambda\,\eta \;(\text{AdamW}),\quad
    [\lambda]\,\text{adagrad}\,\eta,\quad [\lambda]\,[\text{trace}]\,\eta \;(\text{SGD}),\quad
    \text{adam}\,[\lambda]\,\rho_\text{LAMB}\,\eta,\quad
    \rho_\text{LARS}\,\eta\,[\text{trace}],

.. math::
    [\lambda]\,\text{rms}\,[\text{trace}]\,\eta,\quad
    [\lambda]\,\{\text{adadelta}, \text{adamax}\}\,\eta,\quad
    [\lambda]\,\{\text{nadam}, \text{radam}\}\,\eta,\quad
    \{\text{nadam}, \text{radam}\}\,\lambda\,\eta

with :math:`\lambda` = :func:`add_decayed_weights`, :math:`\eta` =
:func:`scale_by_learning_rate` and :math:`\rho` = :func:`scale_by_trust_ratio` in its LAMB or
LARS form. LAMB and LARS have no torch kernel: their element-wise part runs as torch's Adam or
SGD kernel, LAMB's on a workspace kept between steps, LARS's on the gradients themselves where
it can (:mod:`gradkit.optim._kernel_steps`).

Other conditions: numeric hyperparameters are numbers or one-element CPU tensors; for a fused
kernel, every gradient and state array has its parameter's strides (torch's fused CPU kernels
walk the raw memory: a transposed gradient of a contiguous parameter gave a wrong step); for
the single-tensor and foreach loops, real parameters (they view a complex one as pairs of
reals, which the chain does not) and, for RMSprop's momentum, no dampening and no Nesterov
(torch's has neither); not inside a caller's ``torch.compile``.

The state is gradkit's (``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``exp_inf``,
``mu_product``, ``sum``, ``square_avg``, ``grad_avg``, ``acc_delta``, ``momentum_buffer``,
``step``; torch's names), passed to torch by reference and updated in
place: the state the chain and the ``fused=True`` path keep, so ``state_dict``, resuming,
switching the dispatch on and off mid-run and param schedulers see one state. ``p.grad`` is not
modified: torch's fused and foreach paths negate (``maximize``) and decay into copies. The
numbers are those of the chain up to float rounding (float64: relative 1e-15 over 100 steps; in
bfloat16/float16 torch's fused kernels compute in float32 and round once, the chain rounds
after each pass; the single-tensor loop equals ``torch.optim.X()``'s CPU default bit for
bit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from gradkit.optim._adam import ScaleByAdam, ScaleByAdamax, ScaleByNadam, ScaleByRadam
from gradkit.optim._adaptive import ScaleByAdadelta, ScaleByAdagrad, ScaleByRms
from gradkit.optim._basic import AddDecayedWeights, ScaleByLearningRate, Trace
from gradkit.optim._clipping import ClipByAgc, ClipByGlobalNorm
from gradkit.optim._core import Bucket, Chain, Conditional, GradientTransformation, is_off
from gradkit.optim._kernel_steps import (
    adadelta_step,
    adagrad_step,
    adam_step,
    adamax_step,
    lamb_step,
    lars_step,
    nadam_step,
    radam_step,
    rmsprop_step,
    sgd_step,
)
from gradkit.optim._layerwise import ScaleByTrustRatio
from gradkit.optim._workspaces import Kept

# What each transformation type that may be skipped needs to be off, by its param-group key.
_OFF_WHEN = {
    ClipByAgc: "agc_clipping",
    ClipByGlobalNorm: "max_grad_norm",
    AddDecayedWeights: "weight_decay",
    Trace: "momentum",
}
# The transformations of torch's algorithms and of LAMB and LARS (exact types: a subclass may
# compute otherwise).
_KNOWN = (
    ScaleByAdam,
    ScaleByAdagrad,
    ScaleByRms,
    ScaleByAdadelta,
    ScaleByAdamax,
    ScaleByNadam,
    ScaleByRadam,
    ScaleByLearningRate,
    AddDecayedWeights,
    Trace,
    ScaleByTrustRatio,
)
# The trust ratio in each of its forms.
_LAMB_RATIO, _LARS_RATIO = "trust_ratio_lamb", "trust_ratio_lars"

# The active transformations, by type, of each algorithm torch has a kernel for, and where
# the weight decay sits.
_ADAM, _ADAGRAD, _SGD, _LAMB, _LARS = "adam", "adagrad", "sgd", "lamb", "lars"
_RMSPROP, _ADADELTA, _ADAMAX, _NADAM, _RADAM = "rmsprop", "adadelta", "adamax", "nadam", "radam"
# The algorithms torch has a fused CPU kernel for (LAMB and LARS run torch's Adam and SGD).
_FUSED_ON_CPU = (_ADAM, _ADAGRAD, _SGD, _LAMB, _LARS)
_FULL_PRECISION = (torch.float32, torch.float64)
_PATTERNS: dict[tuple[type | str, ...], tuple[str, str | None]] = {
    (ScaleByAdam, ScaleByLearningRate): (_ADAM, None),
    (AddDecayedWeights, ScaleByAdam, ScaleByLearningRate): (_ADAM, "coupled"),
    (ScaleByAdam, AddDecayedWeights, ScaleByLearningRate): (_ADAM, "decoupled"),
    (ScaleByAdagrad, ScaleByLearningRate): (_ADAGRAD, None),
    (AddDecayedWeights, ScaleByAdagrad, ScaleByLearningRate): (_ADAGRAD, "coupled"),
    (ScaleByLearningRate,): (_SGD, None),
    (AddDecayedWeights, ScaleByLearningRate): (_SGD, "coupled"),
    (Trace, ScaleByLearningRate): (_SGD, None),
    (AddDecayedWeights, Trace, ScaleByLearningRate): (_SGD, "coupled"),
    (ScaleByAdam, _LAMB_RATIO, ScaleByLearningRate): (_LAMB, None),
    (ScaleByAdam, AddDecayedWeights, _LAMB_RATIO, ScaleByLearningRate): (_LAMB, "decoupled"),
    (_LARS_RATIO, ScaleByLearningRate): (_LARS, None),
    (_LARS_RATIO, ScaleByLearningRate, Trace): (_LARS, None),
    (ScaleByRms, ScaleByLearningRate): (_RMSPROP, None),
    (AddDecayedWeights, ScaleByRms, ScaleByLearningRate): (_RMSPROP, "coupled"),
    (ScaleByRms, Trace, ScaleByLearningRate): (_RMSPROP, None),
    (AddDecayedWeights, ScaleByRms, Trace, ScaleByLearningRate): (_RMSPROP, "coupled"),
    (ScaleByAdadelta, ScaleByLearningRate): (_ADADELTA, None),
    (AddDecayedWeights, ScaleByAdadelta, ScaleByLearningRate): (_ADADELTA, "coupled"),
    (ScaleByAdamax, ScaleByLearningRate): (_ADAMAX, None),
    (AddDecayedWeights, ScaleByAdamax, ScaleByLearningRate): (_ADAMAX, "coupled"),
    (ScaleByNadam, ScaleByLearningRate): (_NADAM, None),
    (AddDecayedWeights, ScaleByNadam, ScaleByLearningRate): (_NADAM, "coupled"),
    (ScaleByNadam, AddDecayedWeights, ScaleByLearningRate): (_NADAM, "decoupled"),
    (ScaleByRadam, ScaleByLearningRate): (_RADAM, None),
    (AddDecayedWeights, ScaleByRadam, ScaleByLearningRate): (_RADAM, "coupled"),
    (ScaleByRadam, AddDecayedWeights, ScaleByLearningRate): (_RADAM, "decoupled"),
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


def kernel_for(device: torch.device, dtype: torch.dtype, algorithm: str) -> str | None:
    """torch's path for ``algorithm`` on parameters of ``dtype`` on ``device``: "fused",
    "foreach", "single" (torch's single-tensor loop) or None (the chain).

    CPU: fused where torch has a fused CPU kernel (Adam, Adagrad, SGD; LAMB and LARS through
    Adam's and SGD's), else the single-tensor loop, torch's CPU default and its fastest path
    there. But SGD and LARS in float16 and bfloat16 take the single-tensor loop: torch's fused
    CPU SGD kernel (2.12 and 2.13 at least) skips or garbles the update of every whole vector
    block of a low-precision tensor, that is of any tensor of 8 elements or more
    (pytorch/pytorch#191763), and which torch has the fix cannot be told from its version
    alone. CUDA: fused for SGD and LARS (torch's SGD), which keep no counter; foreach for the
    others: Adam and LAMB (torch's Adam), whose fused CUDA kernel wants its ``step`` counters on
    the device (gradkit's are on the CPU), and the algorithms without a fused CUDA kernel.
    """
    if device.type == "cpu":
        if algorithm in (_SGD, _LARS) and dtype not in _FULL_PRECISION:
            return "single"
        return "fused" if algorithm in _FUSED_ON_CPU else "single"
    if device.type == "cuda":
        return "fused" if algorithm in (_SGD, _LARS) else "foreach"
    return None


_RUNNERS: dict[str, Callable[[Bucket, str | None, str, Kept], bool]] = {
    _ADAM: adam_step,
    _ADAGRAD: adagrad_step,
    _SGD: sgd_step,
    _LAMB: lamb_step,
    _LARS: lars_step,
    _RMSPROP: rmsprop_step,
    _ADADELTA: adadelta_step,
    _ADAMAX: adamax_step,
    _NADAM: nadam_step,
    _RADAM: radam_step,
}


def _kind(transformation: GradientTransformation) -> type | str:
    """A transformation's entry in a pattern: its type, or the trust ratio's form."""
    if type(transformation) is ScaleByTrustRatio:
        return _LAMB_RATIO if transformation.form == "lamb" else _LARS_RATIO
    return type(transformation)


def recognise(
    transformation: GradientTransformation, group: dict[str, Any]
) -> tuple[str, str | None] | None:
    """torch's algorithm (or LAMB, LARS) that ``transformation`` computes on ``group`` this
    step ("adam", "sgd", "rmsprop", ...: the keys of ``_RUNNERS``) and where its weight
    decay sits ("coupled", "decoupled" or None for none), or None when it is not one of
    them."""
    active = active_transformations(transformation, group)
    if active is None:
        return None
    return _PATTERNS.get(tuple(_kind(t) for t in active))


def run_torch_kernels(
    transformation: GradientTransformation, buckets: Sequence[Bucket], kept: Kept
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
        first = bucket.params[0]
        kernel = kernel_for(first.device, first.dtype, algorithm)
        if kernel is None or not _RUNNERS[algorithm](bucket, decay, kernel, kept):
            left.append(bucket)
    return left
