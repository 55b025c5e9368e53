"""The one call a :class:`~gradkit.optim.ChainedOptimizer` makes to the fused backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from gradkit.optim._core import GradientTransformation
from gradkit.optim._workspaces import Kept
from gradkit.optim.fused._step import FusedStep

if TYPE_CHECKING:
    from gradkit.optim._optimizer import ChainedOptimizer


class FusedBackend:
    """Takes an optimizer's steps as one compiled program, where it can.

    Args:
        transformation: the optimizer's chain.
        hyper_keys: every param-group key the chain reads (and ``maximize``).
        kept: the optimizer's workspaces and counter vectors, shared with its default path.

    :meth:`try_step` takes a step or declines it; a declined step is the optimizer's to take
    eagerly, which it is at the first step of new state (so that the program is compiled for
    the steady-state structure).
    """

    def __init__(
        self, transformation: GradientTransformation, hyper_keys: Sequence[str], kept: Kept
    ) -> None:
        self._step = FusedStep(transformation, kept)
        self._hyper_keys = tuple(hyper_keys)

    # The step compiles and runs its own program, and keeps Python-side caches that a caller's
    # torch.compile(opt.step) cannot trace (dynamo failed inside it with "Guard failed on the
    # same frame it was created"): it always runs as Python, whoever calls it.
    @torch.compiler.disable
    def try_step(self, optimizer: ChainedOptimizer) -> bool:
        """Take ``optimizer``'s step (its gradients, groups and state); False if it cannot.

        It cannot when a parameter's state is created at this step. It reads
        ``optimizer.param_groups`` and ``optimizer.state``, and builds its buckets with
        ``optimizer._buckets()`` when those changed since its last step.
        """
        fused = self._step
        if fused.plan is not None:
            if fused.plan.reuse(optimizer.param_groups, optimizer.state):
                fused.step(fused.plan, self._hyper_keys)
                return True
            fused.plan = None
        buckets, fresh = optimizer._buckets()
        if fresh:
            return False
        if buckets:
            plan = fused.plan_for(optimizer.param_groups, optimizer.state, buckets)
            fused.step(plan, self._hyper_keys)
        return True

    @property
    def compile_seconds(self) -> float:
        """Wall time of the calls that compiled (0 when inductor's cache had everything)."""
        return self._step.compile_seconds

    @property
    def compilations(self) -> int:
        """How many calls compiled a new program."""
        return self._step.compilations

    @property
    def direct_steps(self) -> int:
        """How many steps called the compiled program without dynamo's guards."""
        return self._step.direct_steps
