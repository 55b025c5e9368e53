"""Calling a fused step's compiled program directly, once dynamo has chosen it.

A call of a ``torch.compile``'d function first runs dynamo's guards: for a step over 70
parameters, some 280 tensor checks reached through attribute and dictionary accessors on the
buckets and state dicts, plus the frame evaluation around them. With cold caches, as at every
step of a training run, that is about 170 us of a 70-tensor model's step, twice what the
compiled program itself costs (``benchmarks/compile_call_overhead.py``).

The fused step does not need them at every step: its plan (:mod:`gradkit.optim._plan`)
knows, by identity, that the Python structure the program was traced on is unchanged. So after
a guarded call the step records which compiled program dynamo ran and with which inputs, and
later steps call that program themselves when

- the structure is the same: the plan's bucket layout and state keys, which hyperparameters
  are 0 or ``None``, and every one that is not a number (booleans such as ``nesterov``),
  compared by value; numbers enter the program as tensors, so only their kind counts;
- the inputs gathered from the buckets, in the same places, pass the same tensor checks dynamo
  makes (dtype, device, shape, strides, dispatch keys, ``requires_grad``: one C++ call over all
  of them), no two of them are the same tensor, and torch's global state (grad mode, default
  dtype, deterministic mode, ...) is what it was;
- every transformation of the chain declares ``guard_free = True`` on its own class (see
  :class:`~gradkit.optim.GradientTransformation`): its traced code depends on nothing else.
  gradkit's own do; a user's transformation may read any Python value, so it runs guarded
  unless it declares itself.

Anything else, or a torch whose internals differ from what this module expects, falls back to
the guarded call, which may recompile as usual and is then recorded in its turn.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from gradkit.optim._core import Chain, Conditional, GradientTransformation
from gradkit.optim._plan import StepPlan
from gradkit.optim.fused._bucket import FusedBucket
from gradkit.optim.fused._torch_private import global_state_snapshot, tensor_checks


def trusted(transformation: GradientTransformation) -> bool:
    """Whether the traced code of ``transformation`` depends only on what the step checks.

    A chain or a conditional is, if what it runs is; any other transformation is, if its own
    class (not a base) declares ``guard_free = True``: a subclass may read more than its base.
    """
    kind = type(transformation)
    if kind is Chain:
        return all(map(trusted, transformation.transformations))  # type: ignore[attr-defined]
    if kind is Conditional:
        return trusted(transformation.inner)  # type: ignore[attr-defined]
    return kind.guard_free is True


def _structural(value: Any) -> Any:
    """What of a hyperparameter the traced program is specialized on.

    gradkit's transformations read numbers only through :meth:`Bucket.value`, which hands the
    program 0-d tensors: so a number counts by its kind alone (whether it is 0 is in
    ``bucket.off``), a tensor by its dtype, device and shape, and anything else (a boolean,
    ``None``, a string) by its value.
    """
    if isinstance(value, Tensor):
        return (Tensor, value.dtype, value.device, value.shape)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float
    if isinstance(value, (tuple, list)):
        return tuple(map(_structural, value))
    return value


def structure(plan: StepPlan[FusedBucket], hypers: Sequence[str]) -> tuple[Any, ...]:
    """What the compiled program was specialized on, beyond the tensors' own metadata."""
    return (
        plan.state_keys,
        tuple(
            (
                bucket.group_index,
                len(bucket.params),
                bucket.off,
                bucket.workspaces is not None,
                *(_structural(bucket.group.get(key)) for key in hypers),
            )
            for bucket in plan.buckets
        ),
    )


def gather_inputs(plan: StepPlan[FusedBucket]) -> list[Tensor] | None:
    """Every tensor the program may read, always in the same order; None if one is missing.

    Parameters, this step's gradients (``bucket.updates`` before the program), each state
    entry (by the plan's keys), the hyperparameter tensors, the per-step scalars and the
    workspaces. The program's inputs are a subset, picked by position.
    """
    inputs: list[Tensor] = []
    keys = iter(plan.state_keys)
    for bucket in plan.buckets:
        inputs += bucket.params
        inputs += bucket.updates
        for entry in bucket.states:
            for key in next(keys):
                value = entry.get(key)
                if not isinstance(value, Tensor):
                    return None
                inputs.append(value)
        for value in bucket.hypers.values() if bucket.hypers else ():
            if isinstance(value, Tensor):
                inputs.append(value)
            else:
                inputs += value  # a tuple of tensors (betas)
        for values in bucket.scalars.values():
            for value in values.values():
                if not isinstance(value, Tensor):
                    return None  # a Python number: the program would be specialized on it
                inputs.append(value)
        if bucket.workspaces is not None:
            inputs += bucket.workspaces
    return inputs


@dataclass
class DirectCall:
    """A compiled program and how to feed it: which gathered inputs, under which checks."""

    program: Callable[..., Any]
    structure: tuple[Any, ...]
    size: int
    pick: Callable[[list[Tensor]], tuple[Tensor, ...]]
    tensor_checks: Any  # from _torch_private.tensor_checks
    global_state: Any  # from _torch_private.global_state_snapshot

    def __call__(self, structure: tuple[Any, ...], inputs: list[Tensor] | None) -> bool:
        """Run the program if the step matches what it was compiled for; whether it ran."""
        if inputs is None or len(inputs) != self.size or structure != self.structure:
            return False
        arguments = self.pick(inputs)
        if len(set(map(id, arguments))) != len(arguments):
            return False  # two places hold one tensor: the program assumed them distinct
        if not self.global_state.check() or not self.tensor_checks.check(*arguments):
            return False
        self.program(*arguments)
        return True


def record(
    program: Callable[..., Any],
    arguments: Sequence[Any],
    result: Any,
    inputs: list[Tensor] | None,
    structure: tuple[Any, ...],
) -> DirectCall | None:
    """The direct call for ``program``, which dynamo just ran on ``arguments``; None if the
    call cannot be repeated without dynamo.

    It cannot when the program returns anything (dynamo would store it: a state entry
    created inside the step), when an argument is not one of the gathered ``inputs`` (or is
    not a tensor), or when two inputs are the same tensor.
    """
    if inputs is None or result or any(not isinstance(a, Tensor) for a in arguments):
        return None
    position = {id(tensor): index for index, tensor in enumerate(inputs)}
    if len(position) != len(inputs):
        return None
    order = [position.get(id(argument)) for argument in arguments]
    if None in order or not order:
        return None
    try:
        checks = tensor_checks(arguments)
        global_state = global_state_snapshot()
        if not (checks.check(*arguments) and global_state.check()):
            return None
    except (ImportError, AttributeError, TypeError, RuntimeError):
        return None  # a torch whose guard classes differ: stay on dynamo's guards
    getter = operator.itemgetter(*order)
    pick = (lambda xs: (getter(xs),)) if len(order) == 1 else getter
    return DirectCall(program, structure, len(inputs), pick, checks, global_state)


def run_recorded(program: Callable[..., Any], log: list[Any]) -> Callable[..., Any]:
    """``program``, noting each call's arguments and result in ``log`` (for :func:`record`)."""

    def recorded(*arguments: Any) -> Any:
        result = program(*arguments)
        log.append((program, arguments, result))
        return result

    return recorded
