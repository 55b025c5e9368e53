r"""The steps :mod:`gradkit.optim._torch_kernels` hands a recognised param group to.

Each takes a bucket (its ``updates`` still the gradients, ``step`` not yet incremented), the
place of the weight decay (``"coupled"``, ``"decoupled"`` or ``None``), torch's path
(``"fused"`` or ``"foreach"``) and the optimizer's :class:`~gradkit.optim._workspaces.Kept` buffers;
it steps the bucket and returns True, or returns False having changed nothing (a value that is
not a number, a layout torch's fused kernels would misread), and the chain takes the bucket.

Adam/AdamW, Adagrad and SGD are torch's functional optimizers on gradkit's state. LAMB and LARS
have no torch kernel; their element-wise part is torch's Adam or SGD kernel run on a kept
workspace instead of on the parameter:

- LAMB (arXiv 1904.00962): the workspace is zeroed and stepped by Adam with a learning rate of
  -1, which leaves Adam's direction :math:`\hat m / (\sqrt{\hat v} + \epsilon)` in it (and
  updates ``exp_avg``, ``exp_avg_sq``, ``step`` in place, as the chain does); then
  :math:`u = d + \lambda\theta`, the trust ratio of :func:`~gradkit.optim._layerwise.lamb_ratios`
  and :math:`\theta \mathrel{+}= -\eta\, r\, u`. About 72 bytes per float32 parameter,
  where the chain moves 140 and allocates the update anew at every step.
- LARS (arXiv 1708.03888, the chain ``trust ratio -> learning rate -> momentum``): with
  :math:`s = -\eta\lambda` (:func:`~gradkit.optim._layerwise.lars_ratios`) and
  :math:`d = g + \beta\theta`, torch's SGD is called once per tensor (the factors are each
  tensor's own) on the gradient itself: heavy ball with a rate of -1 and a dampening of
  :math:`1 - s(1 - \tau)`, so that the kernel's buffer is :math:`\mu b + (1-\tau) s d`, the
  chain's; without momentum with a rate of :math:`-s`. Two norms and torch's kernel, where the
  chain makes seven passes. Nesterov (whose step adds :math:`s d` itself) and, with heavy
  ball, a buffer that starts now (torch starts it undamped), float64 and factors too small for
  the dampening to carry (:func:`_lars_direct`) take a workspace instead: it holds
  :math:`s g` and torch's SGD, with a rate of -1 and a weight decay of :math:`s\beta`, adds
  :math:`s g + s\beta\theta` through the buffer.

The numbers are the chain's up to float rounding (a factor multiplied once instead of twice, a
product distributed over a sum): in float64 about 3e-16 relative over 60 steps, against the
1e-12 that ``tests/optim/test_torch_kernels.py`` asserts; 1e-7 in float32.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import torch
import torch.optim.adadelta as torch_adadelta
import torch.optim.adagrad as torch_adagrad
import torch.optim.adam as torch_adam
import torch.optim.adamax as torch_adamax
import torch.optim.nadam as torch_nadam
import torch.optim.radam as torch_radam
import torch.optim.rmsprop as torch_rmsprop
import torch.optim.sgd as torch_sgd
from torch import Tensor

from gradkit.optim._core import Bucket, is_off
from gradkit.optim._layerwise import lamb_ratios, lars_ratios
from gradkit.optim._workspaces import Kept

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


def _betas(group: dict[str, Any]) -> tuple[float, float] | None:
    """The group's ``betas`` as two numbers, or None."""
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        return None
    beta1, beta2 = _number(betas[0]), _number(betas[1])
    return None if beta1 is None or beta2 is None else (beta1, beta2)


def _listed(bucket: Bucket, *keys: str) -> list[list[Tensor]]:
    """The state arrays under each of ``keys``, one list per key, in the bucket's order."""
    return [[state[key] for state in bucket.states] for key in keys]


def _real(bucket: Bucket) -> bool:
    """torch's loops view a complex parameter as pairs of reals (``|g|^2`` becomes the
    squares of the parts); the chain does not, so a complex bucket stays on the chain."""
    return not any(map(torch.is_complex, bucket.params))


def _adam_arrays(bucket: Bucket, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """The arguments of ``torch.optim.adam.adam`` but the parameters and the gradients: the
    state's arrays and the group's ``keys``, betas and ``amsgrad`` as numbers; None when a
    value is not a number or an array is laid out otherwise than its parameter."""
    group = bucket.group
    numbers, betas, amsgrad = _numbers(group, keys), _betas(group), group["amsgrad"]
    if numbers is None or betas is None or not isinstance(amsgrad, bool):
        return None
    beta1, beta2 = betas
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
        return None
    return {
        "exp_avgs": exp_avgs,
        "exp_avg_sqs": exp_avg_sqs,
        "max_exp_avg_sqs": maxima,
        "state_steps": [state["step"] for state in states],
        "amsgrad": amsgrad,
        "beta1": beta1,
        "beta2": beta2,
        **numbers,
    }


def adam_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    """torch's Adam (coupled weight decay) or AdamW (decoupled)."""
    arrays = _adam_arrays(bucket, ("lr", "eps") + (("weight_decay",) if decay else ()))
    if arrays is None:
        return False
    arrays.setdefault("weight_decay", 0.0)
    torch_adam.adam(
        bucket.params,
        bucket.updates,
        **arrays,
        **_mode(kernel),
        decoupled_weight_decay=decay == "decoupled",
        maximize=bucket.group["maximize"],
    )
    return True


def lamb_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    """LAMB: Adam's direction from torch's kernel into a workspace, then the trust ratio."""
    group = bucket.group
    arrays = _adam_arrays(bucket, ("lr", "eps") + (("weight_decay",) if decay else ()))
    bounds = _bounds(group["weight_norm_bounds"])
    if arrays is None or bounds is False or not isinstance(group["layer_adaptation"], bool):
        return False
    lr, weight_decay = arrays.pop("lr"), arrays.pop("weight_decay", 0.0)
    updates = kept.workspaces(bucket.params)
    torch._foreach_zero_(updates)
    # Stepped with a rate of -1 from zero, the workspace is Adam's direction.
    torch_adam.adam(
        updates,
        bucket.updates,
        **arrays,
        **_mode(kernel),
        lr=-1.0,
        weight_decay=0.0,
        decoupled_weight_decay=False,
        maximize=group["maximize"],
    )
    if weight_decay:
        torch._foreach_add_(updates, bucket.params, alpha=weight_decay)
    if group["layer_adaptation"]:
        ratios = lamb_ratios(bucket.params, updates, bounds)
        torch._foreach_mul_(updates, list((ratios * -lr).unbind()))
        torch._foreach_add_(bucket.params, updates)
    else:
        torch._foreach_add_(bucket.params, updates, alpha=-lr)
    return True


def adagrad_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    """torch's Adagrad (coupled weight decay)."""
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


_buffer = operator.methodcaller("get", "momentum_buffer")


def _missing(buffers: list[Tensor | None]) -> bool:
    """Whether a buffer is None (by identity: ``None in buffers`` calls ``Tensor.__eq__`` on
    each, 3 ms for 255 tensors)."""
    return not all(map(operator.is_not, buffers, repeat(None)))


def _momentum(
    bucket: Bucket, grads: list[Tensor], keys: tuple[str, ...]
) -> tuple[dict[str, Any], list[Tensor | None]] | None:
    """The settings of ``torch.optim.sgd.sgd`` for this group (``keys`` and, where momentum is
    on, ``momentum``, ``dampening`` and ``nesterov`` as numbers) and the momentum buffers
    (None where one starts now); None when a value is not a number or ``grads`` or a buffer is
    laid out otherwise than its parameter."""
    group = bucket.group
    with_momentum = not is_off(group["momentum"])
    keys += ("momentum", "dampening") if with_momentum else ()
    numbers = _numbers(group, keys)
    if numbers is None:
        return None
    buffers: list[Tensor | None] = list(map(_buffer, bucket.states)) if with_momentum else []
    if _missing(buffers):
        # A buffer that starts now is made by torch in the gradient's layout.
        present = [
            param if buffer is None else buffer
            for param, buffer in zip(bucket.params, buffers, strict=True)
        ]
    else:
        present = buffers  # type: ignore[assignment]
    if not _same_layout(bucket.params, [grads, present]):
        return None
    settings = {
        "weight_decay": 0.0,
        "momentum": 0.0,
        "dampening": 0.0,
        **numbers,
        "nesterov": bool(group["nesterov"]) if with_momentum else False,
    }
    return settings, buffers


def _torch_sgd(
    bucket: Bucket,
    grads: list[Tensor],
    settings: dict[str, Any],
    buffers: list[Tensor | None],
    indices: Sequence[int] | None = None,
) -> None:
    """torch's SGD on the bucket's parameters (those at ``indices``, default all) with
    ``grads`` and the momentum ``buffers`` of :func:`_momentum` (new ones are put in the
    state); the step counters are the caller's."""
    params = bucket.params
    momentum = bool(settings["momentum"])
    if indices is None:
        if not momentum or not _missing(buffers):
            torch_sgd.sgd(params, grads, buffers if momentum else [None] * len(params), **settings)
            return
        indices = range(len(params))
    if not momentum:
        chosen = [params[i] for i in indices], [grads[i] for i in indices], [None] * len(indices)
        torch_sgd.sgd(*chosen, **settings)
        return
    # torch's fused SGD starts buffers only when every one is missing: one call for the
    # parameters that have a buffer and one for those that start theirs now.
    fresh = [i for i in indices if buffers[i] is None]
    old = [i for i in indices if buffers[i] is not None]
    states = bucket.states
    for group in (old, fresh):
        if not group:
            continue
        listed = [buffers[i] for i in group]
        torch_sgd.sgd([params[i] for i in group], [grads[i] for i in group], listed, **settings)
        for i, buffer in zip(group, listed, strict=True):
            states[i]["momentum_buffer"] = buffer
            buffers[i] = buffer


def _advance_steps(bucket: Bucket, kept: Kept) -> None:
    """SGD's functional keeps no counter; gradkit's state has one: advanced as one vector
    (:class:`~gradkit.optim._workspaces.CounterVectors`; a ``torch._foreach_add_`` on 255
    counters costs 0.4 ms, 7% of a momentum SGD step of 10M parameters)."""
    steps = kept.counters.array(bucket.group_index, bucket.params, bucket.states, "step")
    steps += 1


def sgd_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    """torch's SGD: plain, heavy ball or Nesterov, with coupled weight decay."""
    keys = ("lr",) + (("weight_decay",) if decay else ())
    found = _momentum(bucket, bucket.updates, keys)
    if found is None:
        return False
    settings, buffers = found
    _advance_steps(bucket, kept)
    settings.update(_mode(kernel), maximize=bucket.group["maximize"])
    _torch_sgd(bucket, bucket.updates, settings, buffers)
    return True


def lars_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    r"""LARS: torch's SGD on :math:`s(g + \beta\theta)`, :math:`s = -\eta\lambda`, through
    the momentum buffer (see the module docstring)."""
    group = bucket.group
    grads = bucket.updates
    found = _momentum(bucket, grads, ("lr",))
    numbers = _numbers(group, ("trust_coefficient", "weight_decay", "eps"))
    flags = (group["layer_adaptation"], group["unit_ratio_on_zero_grad"])
    if found is None or numbers is None or not all(isinstance(f, bool) for f in flags):
        return False
    settings, buffers = found
    lr, weight_decay = settings.pop("lr"), numbers["weight_decay"]
    params = bucket.params
    if group["layer_adaptation"]:
        ratios = lars_ratios(
            params,
            grads,
            numbers["trust_coefficient"],
            weight_decay,
            numbers["eps"],
            group["unit_ratio_on_zero_grad"],
        )
        scales = ratios * -lr
    else:
        scales = torch.full((len(params),), -lr, dtype=torch.float64)
    _advance_steps(bucket, kept)
    settings.update(_mode(kernel))
    factors = scales.double().tolist()
    direct = _lars_direct(bucket, settings, buffers, factors)
    maximize = group["maximize"]
    call = {**settings, "weight_decay": weight_decay, "maximize": maximize, "lr": -1.0}
    undamped = 1.0 - settings["dampening"]
    for index in (i for i, on in enumerate(direct) if on):
        # theta <- theta + s d (no momentum: a rate of -s), or b <- mu b + s (1 - tau) d with
        # theta <- theta + b (heavy ball: a dampening of 1 - s (1 - tau)); d = g + beta theta,
        # -g + beta theta under maximize, computed by the kernel, which leaves p.grad alone.
        if settings["momentum"]:
            call["dampening"] = 1.0 - factors[index] * undamped
        else:
            call["lr"] = -factors[index]
        buffer = buffers[index] if buffers else None
        torch_sgd.sgd([params[index]], [grads[index]], [buffer], **call)
    rest = [i for i, on in enumerate(direct) if not on]
    if not rest:
        return True
    # The others (Nesterov, a buffer that starts now, a factor too small for the dampening to
    # carry in this dtype): p -= (-1) * b, b = mu b + (1 - tau) u (or u + mu b) with u = s g +
    # s beta theta, the chain's trace after its rate. The workspace holds s g (-s g under
    # maximize) and torch's kernel adds weight_decay * theta to it: with s beta, one call per
    # tensor computes u in the kernel (which writes it back into the workspace, not p.grad).
    updates = kept.workspaces(params)
    sign = -1.0 if maximize else 1.0
    for index in rest:
        torch.mul(grads[index], sign * factors[index], out=updates[index])
    settings.update(lr=-1.0, maximize=False)
    if not weight_decay:
        _torch_sgd(bucket, updates, settings, buffers, rest)
        return True
    for index in rest:
        settings["weight_decay"] = factors[index] * weight_decay
        _torch_sgd(bucket, updates, settings, buffers, (index,))
    return True


def _lars_direct(
    bucket: Bucket, settings: dict[str, Any], buffers: list[Tensor | None], factors: list[float]
) -> list[bool]:
    r"""Which tensors LARS steps on their gradients, with no workspace.

    Without momentum every tensor: the factor :math:`s` is the kernel's rate. With heavy-ball
    momentum, a tensor whose buffer exists (torch starts a buffer as the gradient itself,
    undamped) and whose :math:`c = s(1 - \tau)`, passed as the dampening :math:`1 - c`, comes
    back from the kernel's :math:`1 - (1 - c)` (exact: Sterbenz) with an error of at most
    :math:`2^{-53}` that is below :math:`2^{-10}` of the dtype's rounding. So never in float64,
    where the workspace keeps the chain's numbers to 1e-15; in float32 where
    :math:`|c| \ge 2^{-20}`. Not with Nesterov, whose step adds :math:`s d`, which the kernel's
    rate cannot scale without scaling the buffer too.
    """
    count = len(factors)
    if not settings["momentum"]:
        return [True] * count
    if settings["nesterov"]:
        return [False] * count
    least = 2.0**-43 / torch.finfo(bucket.params[0].dtype).eps
    undamped = 1.0 - settings["dampening"]
    return [
        buffer is not None and abs(factor * undamped) >= least
        for buffer, factor in zip(buffers, factors, strict=True)
    ]


def _bounds(value: Any) -> tuple[float, float] | bool | None:
    """LAMB's weight-norm bounds as numbers, None for none, False when not numbers."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return False
    low, high = _number(value[0]), _number(value[1])
    return False if low is None or high is None else (low, high)


# torch's algorithms without a fused CPU kernel: its single-tensor loop on CPU (its default
# there, 2-3x faster than the chain and than its own foreach path at 10M parameters, because
# each tensor's passes run while it is in cache; benchmarks/RESULTS.md), foreach on CUDA. Both
# compute out of place where they change the gradient (maximize, coupled decay), and neither
# reads raw memory, so any layout is taken.


def _decay_keys(decay: str | None) -> tuple[str, ...]:
    return ("weight_decay",) if decay else ()


def rmsprop_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    """torch's RMSprop, plain or centered, with heavy-ball momentum and coupled weight decay.

    torch's momentum has no dampening and no Nesterov form; a group with either stays on the
    chain. torch adds the first update to a zero buffer, which is exactly the chain's first
    buffer (the update itself), so a missing buffer is made as zeros.
    """
    group = bucket.group
    with_momentum = not is_off(group["momentum"])
    keys = ("lr", "alpha", "eps", *_decay_keys(decay))
    numbers = _numbers(group, keys + (("momentum", "dampening") if with_momentum else ()))
    centered = group["centered"]
    if numbers is None or not isinstance(centered, bool) or not _real(bucket):
        return False
    if with_momentum and (numbers.pop("dampening") != 0.0 or group["nesterov"]):
        return False
    for key, wanted in (("grad_avg", centered), ("momentum_buffer", with_momentum)):
        if wanted:
            for param, state in zip(bucket.params, bucket.states, strict=True):
                if key not in state:
                    state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)
    square_avgs, steps = _listed(bucket, "square_avg", "step")
    torch_rmsprop.rmsprop(
        bucket.params,
        bucket.updates,
        square_avgs,
        _listed(bucket, "grad_avg")[0] if centered else [],
        _listed(bucket, "momentum_buffer")[0] if with_momentum else [],
        steps,
        foreach=kernel == "foreach",
        maximize=group["maximize"],
        centered=centered,
        **{"weight_decay": 0.0, "momentum": 0.0, **numbers},
    )
    return True


def adadelta_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    """torch's Adadelta, with coupled weight decay."""
    group = bucket.group
    numbers = _numbers(group, ("lr", "rho", "eps", *_decay_keys(decay)))
    if numbers is None or not _real(bucket):
        return False
    torch_adadelta.adadelta(
        bucket.params,
        bucket.updates,
        *_listed(bucket, "square_avg", "acc_delta", "step"),
        foreach=kernel == "foreach",
        maximize=group["maximize"],
        **{"weight_decay": 0.0, **numbers},
    )
    return True


def adamax_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    """torch's Adamax, with coupled weight decay."""
    group = bucket.group
    numbers, betas = _numbers(group, ("lr", "eps", *_decay_keys(decay))), _betas(group)
    if numbers is None or betas is None or not _real(bucket):
        return False
    torch_adamax.adamax(
        bucket.params,
        bucket.updates,
        *_listed(bucket, "exp_avg", "exp_inf", "step"),
        foreach=kernel == "foreach",
        maximize=group["maximize"],
        beta1=betas[0],
        beta2=betas[1],
        **{"weight_decay": 0.0, **numbers},
    )
    return True


def nadam_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    """torch's NAdam, coupled or decoupled weight decay; ``mu_product`` is gradkit's counter,
    advanced by torch in place."""
    group = bucket.group
    numbers = _numbers(group, ("lr", "eps", "momentum_decay", *_decay_keys(decay)))
    betas = _betas(group)
    if numbers is None or betas is None or not _real(bucket):
        return False
    torch_nadam.nadam(
        bucket.params,
        bucket.updates,
        *_listed(bucket, "exp_avg", "exp_avg_sq", "mu_product", "step"),
        decoupled_weight_decay=decay == "decoupled",
        foreach=kernel == "foreach",
        maximize=group["maximize"],
        beta1=betas[0],
        beta2=betas[1],
        **{"weight_decay": 0.0, **numbers},
    )
    return True


def radam_step(bucket: Bucket, decay: str | None, kernel: str, kept: Kept) -> bool:
    """torch's RAdam, coupled or decoupled weight decay."""
    group = bucket.group
    numbers, betas = _numbers(group, ("lr", "eps", *_decay_keys(decay))), _betas(group)
    if numbers is None or betas is None or not _real(bucket):
        return False
    torch_radam.radam(
        bucket.params,
        bucket.updates,
        *_listed(bucket, "exp_avg", "exp_avg_sq", "step"),
        decoupled_weight_decay=decay == "decoupled",
        foreach=kernel == "foreach",
        maximize=group["maximize"],
        beta1=betas[0],
        beta2=betas[1],
        **{"weight_decay": 0.0, **numbers},
    )
    return True
