"""Sharpness-aware minimization as a wrapper over any optimizer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gradkit.optim._hyper import Hyper, boolean, non_negative, validate_group


class SAM(torch.optim.Optimizer):
    r"""Sharpness-aware minimization (Foret et al., arXiv 2010.01412, Alg. 1) over any optimizer.

    Each step takes two gradients: at :math:`\theta` and at the worst nearby point

    .. math::
        \hat\epsilon = \rho\,\frac{T_\theta^2\, g}{\lVert T_\theta\, g\rVert_2},\qquad
        g_{\text{SAM}} = \nabla L(\theta + \hat\epsilon)

    and the wrapped optimizer steps from :math:`\theta` with :math:`g_{\text{SAM}}` (in a group
    with ``maximize=True``, :math:`\hat\epsilon` points the other way: SAM then maximizes the
    worst nearby value).
    :math:`T_\theta = I` for SAM; with ``adaptive=True``, :math:`T_\theta = |\theta| + \eta`
    element-wise (ASAM, Kwon et al., arXiv 2102.11600). ``eta`` defaults to 0, the common
    implementation (davda54/sam); the authors' code uses :math:`\eta = 0.01` and leaves biases
    unnormalized (give their param group ``adaptive=False``). The norm is global, over every
    parameter with a gradient; ``rho``, ``adaptive`` and ``eta`` may differ per param group.
    A tiny ``eps`` keeps a zero gradient from dividing by zero (:math:`\hat\epsilon = 0`).

    The wrapper shares the inner optimizer's ``param_groups`` (so learning-rate schedulers work
    on either) and its ``state``: ``state_dict()`` holds the inner optimizer's full state.

    Use with a closure that zeroes the gradients, computes the loss and calls ``backward``; it
    runs twice per step, and :meth:`step` returns the loss of the first pass (at
    :math:`\theta`)::

        opt = SAM(gradkit.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), rho=0.05)

        def closure():
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss

        loss = opt.step(closure)

    For control over each pass (mixed precision, ``no_sync`` in DDP, a trainer that calls
    ``optimizer.step()`` itself, such as Hugging Face's ``Trainer``) take the two passes
    yourself. :meth:`first_step` moves to :math:`\theta + \hat\epsilon`; :meth:`step` with
    no closure after it (or :meth:`second_step`, the same) restores :math:`\theta` and runs the
    inner step::

        loss_fn(model(x), y).backward()          # gradient at theta
        opt.first_step()                          # theta -> theta + e
        opt.zero_grad()
        loss_fn(model(x), y).backward()          # gradient at theta + e
        opt.step()                                # theta + e -> theta, then the inner step
        opt.zero_grad()

    ``step()`` with no closure and no :meth:`first_step` before it is an error. A
    non-finite first gradient (an inf or nan in any parameter's gradient) gives no perturbation
    (:math:`\hat\epsilon = 0`): the second pass is then taken at :math:`\theta`, and in
    mixed precision it overflows as the first did, so ``GradScaler`` skips the step.

    Mixed precision: ``torch.amp.GradScaler`` works with the recipe above, scaling both losses::

        scaler.scale(loss_fn(model(x), y)).backward()
        opt.first_step()                          # e is the same for scaled gradients
        opt.zero_grad()
        scaler.scale(loss_fn(model(x), y)).backward()
        scaler.step(opt)                          # restores theta; skips the inner step on inf
        scaler.update()

    :math:`\hat\epsilon` does not change when the gradient is scaled (up to ``eps``), so the
    first gradient needs no unscaling. SAM sets ``_step_supports_amp_scaling``, torch's flag
    for optimizers that handle the scale themselves: ``scaler.step`` then always calls
    :meth:`step` (a plain optimizer's is skipped when a gradient is inf or nan), with the
    scale and the inf check of the second gradients as the attributes ``grad_scale`` and
    ``found_inf``. :meth:`step` restores :math:`\theta` in either case, so a skipped step leaves
    the weights exactly where they were before :meth:`first_step`; otherwise it unscales the
    gradients in place (as ``scaler.unscale_`` does; not again after a ``scaler.unscale_(opt)``
    for clipping) and runs the inner step. A closure cannot be used under the scaler.

    ``copy.deepcopy`` (of the model and the optimizer together, so that the copy steps the
    copied parameters) and ``pickle`` keep the inner optimizer and the pass in progress.
    """

    _step_supports_amp_scaling = True
    """GradScaler calls :meth:`step` even when it skips the step (see above)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.0,
        eps: float = 1e-12,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"SAM: optimizer must be a torch.optim.Optimizer instance, got {optimizer!r}"
            )
        if isinstance(optimizer, SAM):
            raise TypeError("SAM: optimizer is already a SAM; wrap the inner optimizer once")
        checks = {
            "rho": non_negative,
            "adaptive": boolean,
            "eta": non_negative,
            "eps": non_negative,
        }
        validate_group(
            "SAM",
            {"rho": rho, "adaptive": adaptive, "eta": eta, "eps": eps},
            {key: Hyper(key, None, check) for key, check in checks.items()},
            None,
        )
        self.base_optimizer = optimizer
        self.defaults = {**optimizer.defaults, "rho": rho, "adaptive": adaptive, "eta": eta}
        self._eps = eps
        for group in optimizer.param_groups:
            group.setdefault("rho", rho)
            group.setdefault("adaptive", adaptive)
            group.setdefault("eta", eta)
        self._originals: dict[Tensor, Tensor] = {}
        self._first_step_taken = False
        # torch.optim.Optimizer.__init__ would build new groups and state; SAM shares the inner
        # optimizer's instead, so it sets up only the hook tables and the step wrapper.
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()
        self._patch_step_function()

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base_optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.base_optimizer.param_groups = value

    @property  # type: ignore[override]
    def state(self) -> Any:
        return self.base_optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.base_optimizer.state = value

    @torch.no_grad()
    def first_step(self) -> None:
        r"""Move to :math:`\theta + \hat\epsilon` using the current gradients.

        A non-finite gradient norm leaves the weights where they are (:math:`\hat\epsilon = 0`).
        """
        if self._first_step_taken:
            raise RuntimeError("SAM.first_step called twice without second_step in between")
        self._first_step_taken = True
        with_grad = [
            (group, p) for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if not with_grad:
            return
        # T g with T = |theta| + eta (ASAM) or the identity (SAM).
        scales = [
            p.abs().add_(group["eta"]) if group["adaptive"] else None for group, p in with_grad
        ]
        scaled = [
            p.grad if scale is None else p.grad * scale
            for (_, p), scale in zip(with_grad, scales, strict=True)
        ]
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in scaled])
        )
        if not bool(torch.isfinite(norm)):
            # An overflowed (mixed precision) or diverged gradient has no direction to follow.
            return
        for (group, p), g, scale in zip(with_grad, scaled, scales, strict=True):
            # The worst nearby point of the objective the inner optimizer minimizes: for a
            # group that maximizes f, that objective is -f and the ascent direction is -grad.
            sign = -1.0 if group.get("maximize", False) else 1.0
            factor = sign * group["rho"] / (norm + self._eps)
            perturbation = (g if scale is None else g * scale) * factor.to(g.dtype)
            # Keep the exact weights: (theta + e) - e need not round back to theta.
            self._originals[p] = p.detach().clone()
            p.add_(perturbation)

    @torch.no_grad()
    def second_step(self) -> None:
        """Return to :math:`\\theta` and let the wrapped optimizer step with the SAM gradient.

        Under ``GradScaler`` (called as ``scaler.step(opt)``), the inner step is skipped when the
        scaler found an inf or nan, and the gradients are unscaled in place before it otherwise.
        """
        self._restore()
        found_inf = getattr(self, "found_inf", None)
        if found_inf is not None and bool(found_inf):
            return
        grad_scale = getattr(self, "grad_scale", None)
        if grad_scale is not None:
            self._unscale(grad_scale)
        self.base_optimizer.step()

    @torch.no_grad()
    def _unscale(self, grad_scale: Tensor) -> None:
        # The reciprocal GradScaler.unscale_ multiplies by: computed in float64, kept in float32.
        inverse = grad_scale.double().reciprocal().float()
        on_device: dict[torch.device, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    device = p.grad.device
                    if device not in on_device:
                        on_device[device] = inverse.to(device)
                    p.grad.mul_(on_device[device])

    @torch.no_grad()
    def _restore(self) -> None:
        for p, original in self._originals.items():
            p.copy_(original)
        self._originals.clear()
        self._first_step_taken = False

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Two passes of ``closure`` (at θ, then at θ + ε̂), then the inner step.

        Without a closure, after :meth:`first_step`: the same as :meth:`second_step`.
        """
        if closure is None:
            if not self._first_step_taken:
                raise ValueError(
                    "SAM.step needs a closure that zeroes the gradients, computes the loss and "
                    "calls backward, or a call of first_step (after the first backward) before "
                    "step(); got neither"
                )
            self.second_step()
            return None
        if getattr(self, "grad_scale", None) is not None:
            raise ValueError(
                "SAM.step: a closure cannot be used under GradScaler; call first_step after "
                "the first scaled backward, then scaler.step(opt) after the second"
            )
        if self._first_step_taken:
            raise RuntimeError(
                "SAM.step got a closure after first_step; call step() without one to finish "
                "the step in progress"
            )
        with torch.enable_grad():
            loss = closure()
        self.first_step()
        try:
            with torch.enable_grad():
                closure()
        except BaseException:
            # Leave the parameters where they were, whatever the closure raised.
            self._restore()
            raise
        self.second_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        param_group.setdefault("rho", self.defaults["rho"])
        param_group.setdefault("adaptive", self.defaults["adaptive"])
        param_group.setdefault("eta", self.defaults["eta"])
        self.base_optimizer.add_param_group(param_group)

    def __getstate__(self) -> dict[str, Any]:
        """What ``copy.deepcopy`` and ``pickle`` keep: the inner optimizer and SAM's own entries
        (torch.optim's would keep only the shared ``defaults``, ``state`` and ``param_groups``)."""
        return {
            "base_optimizer": self.base_optimizer,
            "defaults": self.defaults,
            "_eps": self._eps,
            "_originals": self._originals,
            "_first_step_taken": self._first_step_taken,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for table in (
            "_optimizer_step_pre_hooks",
            "_optimizer_step_post_hooks",
            "_optimizer_state_dict_pre_hooks",
            "_optimizer_state_dict_post_hooks",
            "_optimizer_load_state_dict_pre_hooks",
            "_optimizer_load_state_dict_post_hooks",
        ):
            setattr(self, table, OrderedDict())
        self._patch_step_function()

    def __repr__(self) -> str:
        return f"SAM({self.base_optimizer!r})"
