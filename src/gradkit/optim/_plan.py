"""A step plan: last step's buckets, kept while nothing they came from changed.

Sorting the parameters into buckets (by group, device and dtype), looking up each one's state
and gathering its gradient cost a 255-tensor model 0.15 ms per step with warm caches and
0.3-0.4 ms with cold ones, as at every step of a training run: 5-7% of a momentum SGD step of
10M parameters, and as much as the compiled arithmetic of a small model. Between two steps of
a training run none of it changes but the gradient tensors themselves. So both the default
path (:meth:`gradkit.optim.ChainedOptimizer.step`) and the fused backend keep their buckets
and, at the next step, only check by identity that they still describe the optimizer:

- the same param groups, holding the same parameters;
- the same state dicts (``optimizer.state[p]`` replaced or deleted, ``load_state_dict``, a
  state entry added or removed all show);
- a dense gradient exactly where there was one;
- each bucket's parameters still of its dtype and on its device (``param.data = ...``, as
  ``module.to()`` does, keeps the parameter but may change both).

Anything else makes the optimizer sort its parameters again.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any, Generic, TypeVar

from torch import Tensor

from gradkit.optim._core import Bucket

B = TypeVar("B", bound=Bucket)

_grad = operator.attrgetter("grad")
_dtype = operator.attrgetter("dtype")
_is_sparse = operator.attrgetter("is_sparse")
_device = operator.attrgetter("device")
_is_cpu = operator.attrgetter("is_cpu")  # a bool: no torch.device object made per parameter


class StepPlan(Generic[B]):
    """The buckets of one step and what they were built from.

    Args:
        groups: the optimizer's param groups at that step.
        state: the optimizer's state mapping (``optimizer.state``).
        buckets: the buckets built from them (every parameter state already created; none
            empty).
    """

    def __init__(
        self,
        groups: Sequence[dict[str, Any]],
        state: Mapping[Tensor, Any],
        buckets: list[B],
    ) -> None:
        self.groups = list(groups)
        self.group_params = [list(group["params"]) for group in groups]
        self.state = state
        self.state_values = list(state.values())
        self.buckets = buckets
        self.states = [entry for bucket in buckets for entry in bucket.states]
        self.state_keys = [tuple(entry) for entry in self.states]
        """Each state dict's keys, in the order the fused backend gathers its inputs."""
        self.state_sizes = list(map(len, self.state_keys))
        self.kinds = [(bucket.params[0].dtype, bucket.params[0].device) for bucket in buckets]
        included = {id(param) for bucket in buckets for param in bucket.params}
        self.without_grad = [
            param for params in self.group_params for param in params if id(param) not in included
        ]

    def reuse(self, groups: Sequence[dict[str, Any]], state: Mapping[Tensor, Any]) -> bool:
        """Whether the buckets still describe this step; if so, give them this step's gradients.

        Gradients must be where they were, dense; a parameter that gained or lost one, a sparse
        gradient (which the optimizer rejects with its own message), a parameter whose dtype or
        device changed, or any change to the groups or the state dicts means False, and the
        caller builds the buckets anew.
        """
        if state is not self.state or len(groups) != len(self.groups):
            return False
        if not all(map(operator.is_, groups, self.groups)):
            return False
        for group, params in zip(groups, self.group_params, strict=True):
            current = group["params"]
            if len(current) != len(params) or not all(map(operator.is_, current, params)):
                return False
        if len(state) != len(self.state_values):
            return False
        if not all(map(operator.is_, state.values(), self.state_values)):
            return False
        if list(map(len, self.states)) != self.state_sizes:
            return False
        if not all(map(operator.is_, map(_grad, self.without_grad), repeat(None))):
            return False
        grads_by_bucket = []
        for bucket, (dtype, device) in zip(self.buckets, self.kinds, strict=True):
            params = bucket.params
            grads = list(map(_grad, params))
            if not all(map(operator.is_not, grads, repeat(None))) or any(map(_is_sparse, grads)):
                return False
            if not all(map(operator.is_, map(_dtype, params), repeat(dtype))):
                return False
            if device.type == "cpu":
                if not all(map(_is_cpu, params)):
                    return False
            elif not all(map(operator.eq, map(_device, params), repeat(device))):
                return False
            grads_by_bucket.append(grads)
        for bucket, grads in zip(self.buckets, grads_by_bucket, strict=True):
            bucket.updates = grads
        return True
