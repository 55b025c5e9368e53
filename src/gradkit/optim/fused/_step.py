"""The fused step: a whole optimizer step compiled by ``torch.compile`` into few kernels.

The eager path runs each transformation as multi-tensor ops, so every parameter's bytes cross
memory once per op. The fused path traces the same chain (the same Python code) with
``torch.compile``; inductor fuses the element-wise work of every transformation into a kernel
per parameter (C++/OpenMP on CPU, Triton on GPU), so each array is read and written about once.

What keeps it from recompiling: every numeric hyperparameter enters as a 0-d tensor (one per
group and key, refilled in place before each step; added as a list, since ``torch.compile``
bakes a 0-d tensor given to ``_foreach_add_`` as its scalar into the program), the step
counters do not enter it at all (only the per-step scalars computed from them do), and only
structural facts (which keys are 0 or ``None``, booleans such as ``nesterov``, the set of state
entries) are Python values that the compiled code is specialized on. A new ``lr``,
``momentum`` or ``betas`` therefore never triggers a recompilation; switching ``momentum``
between 0 and non-zero does, once.

Per-step scalars (bias corrections, NAdam's and RAdam's schedules) are computed before the
compiled program, with numpy on one array of step counts per bucket, and enter it as inputs:
inside it, inductor would inline them into every element-wise loop and recompute them per
vector. Numpy, not torch: after a step over a large model the caches hold its arrays, not the
operator dispatcher, and each small torch operation then costs 20-50 us (a numpy one a few).
The step counters themselves are views of one vector per bucket, incremented with one numpy
operation and never handed to the compiled program.

The program is compiled by inductor with a few settings of its own (see
:func:`compiled_copy`) and, through its compile backend, heuristics of its own
(:func:`~gradkit.optim.fused._torch_private.step_choices_class`): inductor's defaults fused
loops of different parameters because they read the same hyperparameters, and refused to fuse
the loops of one parameter when a multi-tensor program over many parameters put them far apart.

What a step costs besides its arithmetic: the buckets are kept between steps and checked by
identity (:mod:`gradkit.optim._plan`), and once dynamo has run the program through its
guards, later steps call it directly while their structure and inputs match
(:mod:`gradkit.optim.fused._direct`). Divisions by per-step scalars become multiplications by
their reciprocals (:meth:`Bucket.per_step_reciprocal`): the compiled loops would otherwise divide
every vector.

Compiled code is cached on disk by inductor (its FX graph cache) and reused by later processes
with the same chain, shapes and torch version; :attr:`FusedStep.compile_seconds` reports the
time spent in calls that compiled.
"""

from __future__ import annotations

import functools
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradkit.optim._core import Bucket, GradientTransformation, counter_keys, is_off, leaves
from gradkit.optim._plan import StepPlan
from gradkit.optim._workspaces import Kept
from gradkit.optim.fused._bucket import FusedBucket
from gradkit.optim.fused._direct import (
    DirectCall,
    gather_inputs,
    record,
    run_recorded,
    structure,
    trusted,
)
from gradkit.optim.fused._torch_private import (
    compile_with_inductor,
    known_inductor_options,
    step_choices,
)
from gradkit.optim.fused._trust_ratio import LOWERINGS, needs_workspace


def _precompute(transformation: GradientTransformation, buckets: Sequence[FusedBucket]) -> None:
    """Every transformation's per-step scalars, eagerly, before the compiled program.

    A few numpy operations per bucket on ``bucket.counts`` (the step counts as one array), with
    the hyperparameters as Python floats (``bucket.numbers``): cheaper than a second compiled
    call or than tensor operations. The compiled program never sees the counters.
    """
    for leaf, chosen in leaves(transformation, buckets):
        for bucket in chosen:
            values = leaf.scalars(bucket)
            if values is not None:
                bucket.scalars[leaf.name] = {
                    key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                    for key, value in values.items()
                }
    for bucket in buckets:
        bucket.numbers = None  # from here on, bucket.value gives the tensors


def _run_chain(transformation: GradientTransformation, buckets: Sequence[FusedBucket]) -> None:
    """The element-wise program: copy the gradient, transform, apply.

    Each part of the chain runs its own rule, or where the backend has one, its lowering
    (:data:`~gradkit.optim.fused._trust_ratio.LOWERINGS`): the same values in a form that
    inductor fuses.
    """
    for bucket in buckets:
        if bucket.group["maximize"]:
            bucket.updates = torch._foreach_neg(bucket.updates)
        else:
            bucket.updates = [grad.clone() for grad in bucket.updates]
    for leaf, chosen in leaves(transformation, buckets):
        lowering = LOWERINGS.get(type(leaf))
        if lowering is None:
            leaf.update(chosen)
        else:
            lowering(leaf, chosen)
    for bucket in buckets:
        torch._foreach_add_(bucket.params, bucket.updates)
        # Let no intermediate escape the graph: an update list left on the bucket would be a
        # graph output that inductor must write to memory.
        bucket.updates = []


_MIN_CHUNK = 32768
"""Elements per thread below which a compiled loop is not parallelized."""

_SHARED_BYTES_TO_FUSE = 256
"""Bytes two loops must read in common for inductor to fuse them into one (more than the 0-d
hyperparameters every loop reads; a megabyte, tried first, kept the two norms and the update
of a parameter under 256k elements in separate loops)."""


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float, Tensor)) and not isinstance(value, bool)


INDUCTOR_OPTIONS: dict[str, Any] = {
    "size_asserts": False,
    "alignment_asserts": False,
    "cpp.min_chunk_size": _MIN_CHUNK,
    "score_fusion_memory_threshold": _SHARED_BYTES_TO_FUSE,
    # In the cache key, so that programs compiled with inductor's own heuristics are not
    # taken for these; the heuristics themselves are installed by compile_with_inductor.
    "inductor_choices_class": step_choices,
}
"""The inductor settings of the step's program (why each, in :func:`compiled_copy`)."""


@dataclass
class CallLog:
    """What the step's compile backend saw: each guarded call of a program, and compilations."""

    calls: list[Any] = field(default_factory=list)
    compilations: int = 0


def compiled_copy(
    function: Any, log: CallLog, *, guard_filter_fn: Callable[..., Any] | None = None
) -> Any:
    """``torch.compile`` of a private copy of ``function``, noting its calls in ``log``.

    Dynamo caches compiled code per code object; two optimizers with different chains must not
    share (and exhaust) one cache, so each compiles its own copy. ``guard_filter_fn`` is
    ``torch.compile``'s public guard filter (``benchmarks/fused_guards.py`` compares them);
    the step itself keeps every guard.
    """
    code = function.__code__.replace()
    copy = types.FunctionType(code, function.__globals__, function.__name__)
    # Dynamo's guards already check every input's shape, stride and dtype before the call;
    # inductor's own asserts would check them again, one Python call per tensor per step.
    # Inductor opens an OpenMP parallel region for any loop of more than 2 x 512 elements: for a
    # network's many small biases and gains, and above all for the norms of LAMB and LARS, the
    # wake-up and join of the threads cost more than the loop (64 vectors of 1.5k elements made
    # LAMB 2x slower at 10M parameters); below 2 x 32k elements a loop runs on one thread.
    # Inductor fuses two loops that read a common buffer of at least 10 bytes; two parameters
    # of the same size read the same 0-d hyperparameters (lr and momentum: 16 bytes), so their
    # loops became one loop over 2 x 5 streams of memory at once, which the prefetchers serve
    # worse than two loops in turn (momentum SGD 2-8% slower at 10M parameters). Only loops
    # sharing more than the hyperparameters (at most a few dozen bytes) may fuse: in practice,
    # loops over the same parameter, down to a 64-element bias.
    options = known_inductor_options(INDUCTOR_OPTIONS)
    backend = functools.partial(_inductor_backend, options=options, log=log)
    extra = {} if guard_filter_fn is None else {"options": {"guard_filter_fn": guard_filter_fn}}
    return torch.compile(copy, fullgraph=True, dynamic=False, backend=backend, **extra)


def _inductor_backend(
    graph: Any, example_inputs: Any, *, options: dict[str, Any], log: CallLog
) -> Any:
    """Inductor with ``options`` and the step's heuristics; counts the compilation.

    A backend, so that the heuristics are in place while a program compiles and cost nothing
    on the calls that run it. Dynamo calls it once per program it traces, and again when it
    restarts a trace; each program it returns is what :attr:`FusedStep.compilations` counts
    (inductor's on-disk cache may still make it quick).
    Each guarded call of the program is noted in ``log``, so that the step can call it directly
    afterwards (:mod:`gradkit.optim.fused._direct`).
    """
    # Counted once the program exists: dynamo may abandon a trace inside the backend and trace
    # the frame again (with a cold inductor cache, its pass that turns Python floats into
    # tensors restarts the analysis once), and that first call returns nothing.
    program = compile_with_inductor(graph, example_inputs, options)
    log.compilations += 1
    return run_recorded(program, log.calls)


@dataclass
class _Holder:
    """A hyperparameter's 0-d tensor, its memory as a numpy array, and the value it holds."""

    tensor: Tensor
    array: np.ndarray
    value: float | None = None


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return any(map(_holds_tensor, value))
    return isinstance(value, Tensor)


def _number(value: Any) -> Any:
    """A hyperparameter as Python floats (a tuple of them for a tuple)."""
    if isinstance(value, (tuple, list)):
        return type(value)(_number(v) for v in value)
    return float(value)


class FusedStep:
    """Runs one optimizer's chain compiled; holds its hyperparameter tensors and compile time.

    A step is the per-step scalars (bias corrections; see
    :meth:`GradientTransformation.scalars`), computed eagerly with numpy, then one compiled
    program that takes them as inputs: its element-wise kernels read them instead of recomputing
    them for every vector of every parameter. The buckets are kept between steps
    (:attr:`plan`), and once dynamo has run the program through its guards, later steps call
    it directly while the step's structure and inputs match (:mod:`gradkit.optim.fused._direct`).
    """

    def __init__(self, transformation: GradientTransformation, kept: Kept) -> None:
        self.transformation = transformation
        self._log = CallLog()
        self._compiled = compiled_copy(_run_chain, self._log)
        self._tensors: dict[tuple[int, str], _Holder] = {}
        self._wants_workspace = needs_workspace(transformation)
        self._workspaces = kept.workspaces
        self._counter_keys: tuple[str, ...] = ("step",)  # and the chain's own (plan_for)
        self._counters = kept.counters
        self._trusted = trusted(transformation)
        self._prepared: dict[int, tuple[tuple[Any, ...], Any]] = {}
        self._direct: DirectCall | None = None
        self.plan: StepPlan[FusedBucket] | None = None
        """The buckets of the last step, reused while they still describe the optimizer."""
        self.compile_seconds = 0.0
        """Wall time of the calls that compiled (0 when inductor's cache had everything)."""
        self.compilations = 0
        """How many calls compiled a new program."""
        self.direct_steps = 0
        """How many steps called the compiled program without dynamo's guards."""

    def _tensor(self, index: int, key: str, value: Any) -> Any:
        """The 0-d tensor standing for ``value`` (refilled in place, never re-created).

        Written through its numpy view, and only when the value changed: a ``fill_`` is a
        dispatch through the whole operator stack, tens of microseconds once a large step
        has pushed it out of the caches.
        """
        if isinstance(value, (tuple, list)):
            return type(value)(self._tensor(index, f"{key}[{i}]", v) for i, v in enumerate(value))
        if isinstance(value, Tensor):
            return value
        holder = self._tensors.get((index, key))
        if holder is None:
            tensor = torch.zeros((), dtype=torch.float64)
            holder = self._tensors[(index, key)] = _Holder(tensor, tensor.numpy())
        number = float(value)
        if number != holder.value:
            holder.array[()] = number
            holder.value = number
        return holder.tensor

    def _hyperparameters(
        self, bucket: FusedBucket, hypers: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, Any], frozenset[str]]:
        """The bucket's hyperparameters as tensors and as floats, and its off-keys.

        Made again only when a value in the group changed: between the steps of a run most
        groups keep every value (a schedule changes ``lr`` alone), and for a dozen keys the
        checks cost more than the one comparison of all values at once. A group holding a
        tensor is read afresh at every step (the tensor may change in place).
        """
        values = tuple(map(bucket.group.get, hypers))
        known = self._prepared.get(bucket.group_index)
        if known is not None and known[0] == values:
            return known[1]
        tensors: dict[str, Any] = {}
        numbers: dict[str, Any] = {}
        off = set()
        for key, value in zip(hypers, values, strict=True):
            if is_off(value):
                off.add(key)
            if _numeric(value) or (
                isinstance(value, (tuple, list)) and value and all(map(_numeric, value))
            ):
                tensors[key] = self._tensor(bucket.group_index, key, value)
                numbers[key] = _number(value)
        made = (tensors, numbers, frozenset(off))
        if not any(map(_holds_tensor, values)):
            self._prepared[bucket.group_index] = (values, made)
        else:
            self._prepared.pop(bucket.group_index, None)
        return made

    def prepare(self, buckets: Sequence[FusedBucket], hypers: Sequence[str]) -> None:
        """Give each bucket its hyperparameters (as tensors for the compiled program, as
        floats for the scalars), its off-keys, its counters and workspaces; count the step."""
        for bucket in buckets:
            bucket.hypers, bucket.numbers, bucket.off = self._hyperparameters(bucket, hypers)
            bucket.scalars = {}
            bucket.counters = {
                key: self._counters.array(bucket.group_index, bucket.params, bucket.states, key)
                for key in self._counter_keys
            }
            steps = bucket.counters["step"]
            steps += 1
            bucket.counts = steps.astype(np.float64)
            if self._wants_workspace and bucket.workspaces is None:
                bucket.workspaces = self._workspaces(bucket.params)

    def plan_for(
        self, groups: Sequence[dict[str, Any]], state: Any, buckets: list[Bucket]
    ) -> StepPlan[FusedBucket]:
        """The plan of freshly built buckets (made :class:`FusedBucket`), their parameters put
        smallest first.

        Inductor opens one OpenMP parallel region at the first loop large enough to split
        between threads; every smaller loop after it runs as ``omp single``, followed by a
        barrier. A network's biases and gains after its matrices cost one barrier each
        (64 per step in the benchmark's layout); in front of them they run before the region
        opens, with none.
        """
        fused = []
        for bucket in buckets:
            order = sorted(range(len(bucket.params)), key=lambda i: bucket.params[i].numel())
            bucket.params = [bucket.params[i] for i in order]
            bucket.updates = [bucket.updates[i] for i in order]
            bucket.states = [bucket.states[i] for i in order]
            fused.append(FusedBucket.of(bucket))
        self._counter_keys = ("step", *counter_keys(self.transformation, groups))
        self.plan = StepPlan(groups, state, fused)
        return self.plan

    def step(self, plan: StepPlan[FusedBucket], hypers: Sequence[str]) -> None:
        """One fused step over the plan's buckets (their ``updates`` hold the gradients)."""
        buckets = plan.buckets
        self.prepare(buckets, hypers)
        _precompute(self.transformation, buckets)
        shape, inputs = None, None
        if self._trusted:
            shape = structure(plan, hypers)
            inputs = gather_inputs(plan)
            if self._direct is not None and self._direct(shape, inputs):
                for bucket in buckets:
                    bucket.updates = []  # what the traced program leaves (see _run_chain)
                self.direct_steps += 1
                return
        before = self._log.compilations
        start = time.perf_counter()
        self._log.calls.clear()
        self._compiled(self.transformation, buckets)
        if self._log.compilations != before:
            self.compilations += self._log.compilations - before
            self.compile_seconds += time.perf_counter() - start
        self._direct = None
        if shape is not None and len(self._log.calls) == 1:
            self._direct = record(*self._log.calls[0], inputs, shape)
        self._log.calls.clear()
