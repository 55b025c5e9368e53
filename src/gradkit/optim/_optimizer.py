"""``ChainedOptimizer``: a ``torch.optim.Optimizer`` that runs a transformation chain."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from gradkit.optim._core import Bucket, GradientTransformation, counter_keys, scalar_dtype
from gradkit.optim._hyper import Hyper, boolean, validate_group
from gradkit.optim._plan import StepPlan
from gradkit.optim._torch_kernels import run_torch_kernels
from gradkit.optim._workspaces import Kept

if TYPE_CHECKING:
    from gradkit.optim.fused import FusedBackend

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


class ChainedOptimizer(torch.optim.Optimizer):
    r"""Runs a chain of gradient transformations on every param group.

    Per step, for the parameters that have a gradient:

    .. math::
        u \leftarrow \pm g \;(\text{a copy; } -g \text{ if maximize}),\qquad
        u \leftarrow T_k \circ \dots \circ T_1(u),\qquad \theta \leftarrow \theta + u

    The last transformation of a chain is normally :func:`scale_by_learning_rate`, which turns
    the direction into a step :math:`-\eta\,u`.

    Hyperparameters live in the param groups and are read at every step, so
    ``torch.optim.lr_scheduler`` and schedules of momentum or betas work; a group may override
    any of them. State is kept per parameter in ``self.state[p]`` (with a ``step`` counter like
    torch.optim's), created on the first step that parameter has a gradient. ``p.grad`` is never
    modified.

    With ``fused=True`` the whole step (all transformations, all groups) is compiled by
    ``torch.compile`` into a few fused kernels (see :mod:`gradkit.optim.fused`). It gives the
    same numbers as the eager path up to float rounding and moves each array about once per
    step, close to the memory-bandwidth floor (``benchmarks/RESULTS.md``). Where it loses:

    - the first compiled step takes 5-60 s on 2 CPU cores (much less when inductor's on-disk
      cache already has the program), so short runs and quick experiments should stay eager;
    - each step pays a fixed cost on CPU (checking that the step's structure is unchanged,
      the per-step scalars, the call of the compiled program), for a model of ~70 parameter
      tensors about 0.3 ms when the caches are warm and 0.5-0.6 ms in training, where every
      step starts with caches full of activations: about what torch's fused kernels cost.
      From 10K to 1M parameters fused Adam, AdamW, AMSGrad and Adagrad take 0.8-1.12x the
      time of torch.optim's fused kernels, plain and momentum SGD 1.0-1.6x; at 10M and 50M
      fused is 1.0-1.14x torch's fused kernels (their element-wise loops are a few percent
      faster), and it beats torch's foreach path for the algorithms torch has no fused
      kernel for (1.8-2.9x at 1M, 2.5-6.7x from 10M on);
    - fused LAMB keeps one parameter-sized workspace between steps (not in the state dict;
      so does the eager step of LAMB, and of LARS where it needs one, below).

    The default is therefore eager. The first step of new state runs eagerly, so that the
    compiled program sees the steady-state structure.

    On the eager path, a param group whose chain is, with this step's settings, exactly
    torch.optim's Adam/AdamW, SGD, Adagrad, RMSprop, Adadelta, Adamax, NAdam or RAdam is
    stepped by torch's own implementation, by its fastest path (on CPU the fused kernel where
    torch has one, else its single-tensor loop; on CUDA fused or foreach), on gradkit's state,
    with the chain's numbers up to float rounding; see :mod:`gradkit.optim._torch_kernels`;
    so is the element-wise part of LAMB and LARS (see :mod:`gradkit.optim._kernel_steps`).
    The eager step keeps its buckets between steps while nothing they came from changed
    (:mod:`gradkit.optim._plan`). ``torch_kernels=False`` (or setting the attribute) runs the
    chain everywhere.

    Args:
        params: parameters, or param-group dicts.
        transformation: the chain (or single transformation) to run.
        fused: compile the step (default False: eager multi-tensor ops).
        torch_kernels: on the eager path, hand the groups that are one of torch's algorithms
            to torch's kernels (default True).
        **defaults: values for the chain's hyperparameters (and ``maximize``); keys the chain
            does not read are rejected.
    """

    def __init__(
        self,
        params: ParamsT,
        transformation: GradientTransformation,
        *,
        fused: bool = False,
        torch_kernels: bool = True,
        **defaults: Any,
    ) -> None:
        if not isinstance(transformation, GradientTransformation):
            raise TypeError(
                f"{type(self).__name__}: transformation must be a GradientTransformation "
                f"(build one with gradkit.optim.chain), got {transformation!r}"
            )
        hypers = dict(transformation.hypers)
        hypers.setdefault("maximize", Hyper("maximize", False, boolean))
        unknown = sorted(set(defaults) - set(hypers))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}: unexpected hyperparameter {unknown[0]!r}; "
                f"this chain reads {sorted(hypers)}"
            )
        if not isinstance(fused, bool):
            raise ValueError(
                f"{type(self).__name__}: invalid fused={fused!r}; expected True or False"
            )
        self.torch_kernels = torch_kernels
        self._transformation = transformation
        self._hypers = hypers
        self._hyper_keys = tuple(hypers)
        self._kept = Kept()
        self._plan: StepPlan[Bucket] | None = None
        self._fused = (
            _fused_backend(transformation, self._hyper_keys, self._kept) if fused else None
        )
        merged = {key: hyper.default for key, hyper in hypers.items()}
        merged.update(defaults)
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of tensors or of dicts, "
                f"got a single tensor; pass [tensor] or model.parameters()"
            )
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: params is an empty parameter list")
        super().__init__(params, merged)

    @property
    def transformation(self) -> GradientTransformation:
        """The chain this optimizer runs."""
        return self._transformation

    @property
    def fused(self) -> bool:
        """Whether steps are compiled."""
        return self._fused is not None

    @property
    def torch_kernels(self) -> bool:
        """Whether eager steps hand torch's algorithms to torch's kernels."""
        return self._torch_kernels

    @torch_kernels.setter
    def torch_kernels(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(
                f"{type(self).__name__}: invalid torch_kernels={value!r}; expected True or False"
            )
        self._torch_kernels = value

    @property
    def compile_seconds(self) -> float:
        """Wall time spent in fused steps that compiled (0.0 on the eager path)."""
        return 0.0 if self._fused is None else self._fused.compile_seconds

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            index = len(self.param_groups) - 1
            validate_group(type(self).__name__, group, self._hypers, index)
            self._transformation.validate(dict(enumerate(self.param_groups)), type(self).__name__)
            for index, param in enumerate(group["params"]):
                if param.is_complex():
                    raise TypeError(
                        f"{type(self).__name__}: complex parameters are not supported "
                        f"(parameter {index} of param group {len(self.param_groups) - 1} "
                        f"is {param.dtype}); use torch.view_as_real"
                    )
                if not param.is_floating_point():
                    raise TypeError(
                        f"{type(self).__name__}: parameters must be floating point "
                        f"(parameter {index} of param group {len(self.param_groups) - 1} "
                        f"is {param.dtype})"
                    )
        except (ValueError, TypeError):
            self.param_groups.pop()
            raise

    def _buckets(self) -> tuple[list[Bucket], bool]:
        """The buckets of this step, and whether any parameter's state was just created."""
        buckets: list[Bucket] = []
        fresh = False
        for group_index, group in enumerate(self.param_groups):
            by_kind: dict[tuple[torch.device, torch.dtype], Bucket] = {}
            for index, param in enumerate(group["params"]):
                grad = param.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise TypeError(
                        f"{type(self).__name__} does not support sparse gradients "
                        f"(parameter {index} of param group {group_index}); use "
                        f"torch.optim.SparseAdam or a dense embedding (sparse=False)"
                    )
                kind = (param.device, param.dtype)
                bucket = by_kind.get(kind)
                if bucket is None:
                    bucket = by_kind[kind] = Bucket(group, group_index, [], [], [])
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=scalar_dtype())
                    self._transformation.init_state(param, state, group)
                    fresh = True
                elif "step" not in state:
                    # Loaded from a torch.optim state dict that keeps no counter (SGD's).
                    state["step"] = torch.zeros((), dtype=scalar_dtype())
                bucket.params.append(param)
                bucket.updates.append(grad)
                bucket.states.append(state)
            buckets.extend(by_kind.values())
        return buckets, fresh

    def _planned_buckets(self) -> list[Bucket]:
        """This step's buckets: last step's when nothing they came from changed (checked by
        identity, :mod:`gradkit.optim._plan`), else built anew and kept for the next step."""
        if torch.compiler.is_compiling():
            # Traced by the caller's torch.compile: no Python-side cache to guard on.
            return self._buckets()[0]
        plan = self._plan
        if plan is not None and plan.reuse(self.param_groups, self.state):
            return plan.buckets
        buckets, fresh = self._buckets()
        # State made now may gain entries in this step (a momentum buffer): plan from the next.
        self._plan = None if fresh else StepPlan(self.param_groups, self.state, buckets)
        return buckets

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Perform one optimization step; ``closure`` re-evaluates the loss (optional)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Cross-group settings may have been edited since construction; check before any
        # state changes, so that a failed step leaves no trace.
        self._transformation.validate(dict(enumerate(self.param_groups)), type(self).__name__)
        if self._fused is not None and self._fused.try_step(self):
            return loss
        buckets = self._planned_buckets()
        try:
            left = buckets
            if self._torch_kernels:
                left = run_torch_kernels(self._transformation, buckets, self._kept)
            self._eager_step(left)
        finally:
            for bucket in buckets:
                # Kept buckets must not keep this step's gradients (freed by
                # zero_grad(set_to_none=True)) or updates alive until the next step.
                bucket.updates, bucket.steps = [], []
        return loss

    def _eager_step(self, buckets: list[Bucket]) -> None:
        """The eager multi-tensor step (also the fused path's first step of new state)."""
        if not buckets:
            return
        for bucket in buckets:
            # The update starts as a copy of the gradient so that p.grad is never modified.
            if bucket.group["maximize"]:
                bucket.updates = torch._foreach_neg(bucket.updates)
            else:
                bucket.updates = [grad.clone() for grad in bucket.updates]
            step_counters = [state["step"] for state in bucket.states]
            torch._foreach_add_(step_counters, 1)
            if torch.compiler.is_compiling():
                # Traced by the caller's torch.compile: float() of a counter would break the
                # graph and bake each count in. Keep the counts tensors, in float64 like Python
                # floats' arithmetic (torch.optim's _get_value keeps them tensors there too).
                bucket.steps = [counter.to(torch.float64) for counter in step_counters]
            else:
                bucket.steps = [float(counter) for counter in step_counters]
        self._transformation.update(buckets)
        for bucket in buckets:
            torch._foreach_add_(bucket.params, bucket.updates)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load state saved by :meth:`state_dict`; 0-d counters keep their exact values.

        torch.optim casts every floating state tensor but ``step`` to the parameter's dtype
        on load; for a bfloat16 parameter that would round counters such as NAdam's
        ``mu_product``. They are restored in :func:`scalar_dtype` instead.
        """
        groups = [{**self.defaults, **group} for group in state_dict["param_groups"]]
        keys = counter_keys(self._transformation, groups)
        saved = {
            (param_id, key): value.detach().clone()
            for param_id, entry in state_dict["state"].items()
            for key, value in entry.items()
            if key in keys and isinstance(value, Tensor)
        }
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            # A state dict saved by torch.optim lacks keys gradkit adds (e.g. RMSprop's nesterov).
            for key in self._hypers:
                group.setdefault(key, self.defaults[key])
        if not saved:
            return
        ids = [pid for group in state_dict["param_groups"] for pid in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        by_id = dict(zip(ids, params, strict=True))
        for (param_id, key), value in saved.items():
            self.state[by_id[param_id]][key] = value.to(dtype=scalar_dtype())

    def __getstate__(self) -> dict[str, Any]:
        """What ``copy.deepcopy`` and ``pickle`` keep: torch.optim's three entries and the chain.

        torch.optim keeps only ``defaults``, ``state`` and ``param_groups``; the chain is kept
        too. The fused path's compiled program and caches are not: a copy compiles its own
        (its first fused step compiles, or finds the program in inductor's on-disk cache).
        """
        return {
            **super().__getstate__(),
            "_transformation": self._transformation,
            "_hypers": self._hypers,
            "_hyper_keys": self._hyper_keys,
            "_fused": self._fused is not None,
            "_torch_kernels": self._torch_kernels,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_transformation" not in state:
            # torch.optim's load_state_dict passes only the new state and param groups.
            super().__setstate__(state)
            return
        state = dict(state)
        fused = state.pop("_fused", False)
        # Pickled before the dispatch existed: on, as for a new optimizer.
        state.setdefault("_torch_kernels", True)
        had_differentiable = "differentiable" in state["defaults"]
        super().__setstate__(state)
        if not had_differentiable:
            # torch.optim adds this key for its own optimizers; no gradkit chain reads it.
            self.defaults.pop("differentiable", None)
        self._kept = Kept()
        self._plan = None
        self._fused = (
            _fused_backend(self._transformation, self._hyper_keys, self._kept) if fused else None
        )

    def __repr__(self) -> str:
        return super().__repr__() + f"\n[{self._transformation!r}]"


def _fused_backend(
    transformation: GradientTransformation, hyper_keys: tuple[str, ...], kept: Kept
) -> FusedBackend:
    """The fused backend (imported here: the eager path never imports it)."""
    from gradkit.optim.fused import FusedBackend

    return FusedBackend(transformation, hyper_keys, kept)
