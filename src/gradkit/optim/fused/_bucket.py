"""The fused backend's bucket: the same rules, read through tensors, arrays and numpy counters.

A rule reads a bucket through five methods (:meth:`~gradkit.optim._core.Bucket.value`,
``is_off``, ``per_step``, ``advance_counters``, ``step_scalars``); the eager
:class:`~gradkit.optim._core.Bucket` answers them from the param group and the step counts.
:class:`FusedBucket` answers the same questions the way a compiled program needs, so that one
rule serves both paths without asking which it is on:

- ``value``: while the per-step scalars are computed (before the program), the group's numbers
  as Python floats; inside the program, 0-d tensors that are refilled in place before each
  step, so a new ``lr`` or ``betas`` is an input and never a recompilation;
- ``is_off``: decided outside the program (which keys are ``None`` or 0 chooses which code is
  traced, not what it computes);
- ``per_step``: the function applied once to the step counts as one float64 numpy array;
- ``advance_counters``: one numpy operation on an array whose elements *are* the state's 0-d
  counters;
- ``step_scalars``: the scalars computed before the program, which it takes as inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from gradkit.optim._core import Bucket

if TYPE_CHECKING:
    from gradkit.optim._core import GradientTransformation


@dataclass
class FusedBucket(Bucket):
    """A :class:`~gradkit.optim._core.Bucket` of the fused step (see the module docstring).

    Attributes (besides the bucket's own):
        hypers: the numeric hyperparameters as 0-d tensors (what :meth:`value` gives inside
            the compiled program).
        numbers: while the per-step scalars are computed, the same as Python floats (what
            :meth:`value` gives then); ``None`` inside the program.
        off: the keys whose value is ``None`` or 0.
        scalars: each transformation's per-step numbers, by its name, computed before the
            program.
        counts: this step's counts as one float64 numpy array.
        counters: the 0-d counters of the state (``step`` and each key of
            :func:`~gradkit.optim._core.counter_keys`) as one numpy array per key, whose
            elements are the parameters' entries (``state[key]`` is a view of the same memory).
        workspaces: one parameter-shaped buffer per parameter, kept between steps, where a
            lowering of the backend holds a whole update (LAMB's,
            :mod:`gradkit.optim.fused._trust_ratio`); ``None`` where none does.
    """

    hypers: dict[str, Any] = field(default_factory=dict)
    numbers: dict[str, Any] | None = None
    off: frozenset[str] = frozenset()
    scalars: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: np.ndarray | None = None
    counters: dict[str, np.ndarray] = field(default_factory=dict)
    workspaces: list[Tensor] | None = None

    @classmethod
    def of(cls, bucket: Bucket) -> FusedBucket:
        """The fused bucket of an eager one's parameters, updates and states."""
        return cls(bucket.group, bucket.group_index, bucket.params, bucket.updates, bucket.states)

    def value(self, key: str) -> Any:
        if self.numbers is not None:
            return self.numbers[key]
        return self.hypers[key]

    def is_off(self, key: str) -> bool:
        return key in self.off

    def per_step(self, function: Callable[[Any], Any]) -> Any:
        if self.counts is None:
            raise RuntimeError("FusedBucket.per_step: the step must set bucket.counts first")
        return function(self.counts)

    def advance_counters(self, key: str, factors: Any) -> Any:
        counters = self.counters[key]
        counters *= factors.astype(counters.dtype)
        return counters.astype(np.float64)

    def step_scalars(self, transformation: GradientTransformation) -> dict[str, Any]:
        values = self.scalars.get(transformation.name)
        return super().step_scalars(transformation) if values is None else values
