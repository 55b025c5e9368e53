r"""Schedule-free SGD and AdamW (Defazio et al., "The Road Less Scheduled", arXiv 2405.15682).

Schedule-free methods replace the learning-rate schedule by averaging. Three sequences:
gradients are taken at :math:`y`, the base step moves :math:`z`, and :math:`x` is the running
average of the :math:`z` iterates that is evaluated:

.. math::
    y_t = (1 - \beta)\, z_t + \beta\, x_t,\qquad
    z_{t+1} = z_t - \gamma_t\, d_t(y_t),\qquad
    x_{t+1} = (1 - c_{t+1})\, x_t + c_{t+1}\, z_{t+1},\qquad
    c_{t+1} = \frac{w_t}{\sum_{i \le t} w_i},\quad w_t = (t+1)^r\,\gamma_{\max,t}^{p}

with :math:`d_t` the SGD or Adam direction (Alg. 1 of the paper), :math:`\gamma_t` the
learning rate after the optional linear warm-up, and :math:`\gamma_{\max,t}` the largest one so
far. Only :math:`z` is stored (as the ``schedulefree`` package does): the parameters hold
:math:`y` in train mode and :math:`x` in eval mode, :math:`x = (y - (1-\beta) z)/\beta`, and one
step in terms of :math:`y` alone is

.. math::
    y_{t+1} = (1 - c_{t+1})\, y_t + c_{t+1}\, z_t + \gamma_t\,(\beta (1 - c_{t+1}) - 1)\, d_t
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from gradkit.optim._hyper import Hyper, non_negative, unit_interval, validate_group


def _open_unit_interval(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        return "a number in (0, 1) (the interpolation between z and x needs beta > 0)"
    return None


def _schedule_free_betas(value: Any) -> str | None:
    message = "a pair (beta1, beta2) with beta1 in (0, 1) and beta2 in [0, 1)"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return message
    if _open_unit_interval(value[0]) is not None or unit_interval(value[1]) is not None:
        return message
    return None


def _steps(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "an integer >= 0"
    return None


_COMMON = {
    "lr": Hyper("lr", None, non_negative),
    "weight_decay": Hyper("weight_decay", 0.0, non_negative),
    "warmup_steps": Hyper("warmup_steps", 0, _steps),
    "r": Hyper("r", 0.0, non_negative),
    "weight_lr_power": Hyper("weight_lr_power", 2.0, non_negative),
}


class _ScheduleFree(torch.optim.Optimizer):
    """The averaging, the warm-up and the train/eval switch; subclasses give the direction."""

    _hypers: ClassVar[dict[str, Hyper]]

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        validate_group(type(self).__name__, defaults, self._hypers, None)
        defaults = {**defaults, "step": 0, "weight_sum": 0.0, "lr_max": -1.0, "train_mode": True}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        merged = {**self.defaults, **param_group}
        validate_group(type(self).__name__, merged, self._hypers, len(self.param_groups))
        super().add_param_group(param_group)

    @staticmethod
    def _beta(group: dict[str, Any]) -> float:
        raise NotImplementedError

    def _directions(
        self, group: dict[str, Any], params: list[Tensor], step: int
    ) -> list[Tensor] | tuple[Tensor, ...]:
        raise NotImplementedError

    @property
    def training(self) -> bool:
        """True when the parameters hold :math:`y` (train mode), False for :math:`x`."""
        return all(group["train_mode"] for group in self.param_groups)

    @torch.no_grad()
    def train(self, mode: bool = True) -> None:
        """Put :math:`y` (where gradients are taken) in the parameters; ``train(False)`` is
        :meth:`eval`. Call it before training, with ``model.train()``; a no-op when already
        in train mode."""
        if not mode:
            self.eval()
            return
        for group in self.param_groups:
            if not group["train_mode"]:
                # y = (1 - beta) z + beta x
                self._interpolate(group, 1.0 - self._beta(group))
                group["train_mode"] = True

    @torch.no_grad()
    def eval(self) -> None:
        """Put the average :math:`x` in the parameters, for evaluation and checkpoints. Call it
        with ``model.eval()``; batch-norm statistics then need :func:`update_bn` (they were
        gathered at :math:`y`)."""
        for group in self.param_groups:
            if group["train_mode"]:
                # x = (y - (1 - beta) z) / beta = lerp(y, z, 1 - 1/beta)
                self._interpolate(group, 1.0 - 1.0 / self._beta(group))
                group["train_mode"] = False

    def _interpolate(self, group: dict[str, Any], weight: float) -> None:
        for p in group["params"]:
            z = self.state[p].get("z")
            if z is not None:
                p.lerp_(z.to(p.device), weight)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        if not self.training:
            raise RuntimeError(
                f"{type(self).__name__}.step: the optimizer is in eval mode (the parameters "
                "hold the average x); call optimizer.train() before training"
            )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            step = group["step"]
            warmup = group["warmup_steps"]
            lr = float(group["lr"]) * (min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0)
            group["scheduled_lr"] = lr
            group["lr_max"] = lr_max = max(lr, group["lr_max"])
            weight = (step + 1) ** group["r"] * lr_max ** group["weight_lr_power"]
            group["weight_sum"] = weight_sum = group["weight_sum"] + weight
            average = weight / weight_sum if weight_sum > 0.0 else 0.0
            group["step"] = step + 1
            if not params:
                continue
            for p in params:
                if "z" not in self.state[p]:
                    self.state[p]["z"] = p.detach().clone(memory_format=torch.preserve_format)
            z = [self.state[p]["z"] for p in params]
            directions = self._directions(group, params, step)
            beta = self._beta(group)
            torch._foreach_lerp_(params, z, average)
            torch._foreach_add_(params, directions, alpha=lr * (beta * (1.0 - average) - 1.0))
            torch._foreach_add_(z, directions, alpha=-lr)
        return loss


class ScheduleFreeSGD(_ScheduleFree):
    r"""Schedule-free SGD (Defazio et al., arXiv 2405.15682): the module docstring's three
    sequences with :math:`d_t = \nabla f(y_t) + \lambda y_t` (``weight_decay`` as an L2 term at
    :math:`y`) and :math:`\beta` = ``momentum``.

    Equal to ``schedulefree.SGDScheduleFree`` with the same settings (warm-up, ``r``,
    ``weight_lr_power``, its defaults ``lr=1.0, momentum=0.9``), tested to 1e-10 in float64.
    Departures: a step never modifies ``p.grad`` (the package adds the decay into it); the
    optimizer starts in train mode (before the first step :math:`x = y = z`, so both modes hold
    the same weights, and the package's required first ``train()`` is a no-op here); ``step``
    in eval mode raises ``RuntimeError``.

    Use no learning-rate schedule (the paper's point; the weights :math:`c_t` follow
    :math:`\gamma_{\max}`, the largest learning rate so far, so a decaying schedule would not
    lower them), and switch modes with the model::

        opt = ScheduleFreeSGD(model.parameters(), lr=1.0, momentum=0.9, warmup_steps=100)
        model.train(); opt.train()   # ... training steps ...
        model.eval(); opt.eval()     # evaluate or save x; opt.train() to go on

    ``state_dict`` holds :math:`z`, the step count, :math:`\sum w` and :math:`\gamma_{\max}` and
    the mode; save it with the model's weights (in either mode) and they resume exactly. The
    switch :math:`y \to x \to y` is exact up to rounding (about 1e-16 relative in float64).
    """

    _hypers: ClassVar[dict[str, Hyper]] = {
        **_COMMON,
        "momentum": Hyper("momentum", 0.9, _open_unit_interval),
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        momentum: float = 0.9,
        *,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "r": r,
            "weight_lr_power": weight_lr_power,
        }
        super().__init__(params, defaults)

    @staticmethod
    def _beta(group: dict[str, Any]) -> float:
        return float(group["momentum"])

    def _directions(
        self, group: dict[str, Any], params: list[Tensor], step: int
    ) -> list[Tensor] | tuple[Tensor, ...]:
        grads = [p.grad for p in params]
        if group["weight_decay"] == 0:
            return grads  # type: ignore[return-value]
        return torch._foreach_add(grads, params, alpha=float(group["weight_decay"]))  # type: ignore[arg-type]


class ScheduleFreeAdamW(_ScheduleFree):
    r"""Schedule-free AdamW (Defazio et al., arXiv 2405.15682, Alg. 1): the module docstring's
    three sequences with :math:`\beta = \beta_1` and the direction

    .. math::
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2,\qquad
        d_t = \frac{g_t}{\sqrt{v_t / (1 - \beta_2^{t})} + \epsilon} + \lambda\, y_t

    (:math:`g_t = \nabla f(y_t)`; the decay is decoupled and taken at :math:`y`, as in the
    paper). There is no first moment: :math:`\beta_1` is the interpolation of :math:`y`.

    Equal to ``schedulefree.AdamWScheduleFree`` with the same settings, tested to 1e-10 in
    float64. The paper folds the bias correction into the learning rate
    (:math:`\gamma_t = \gamma\sqrt{1-\beta_2^t}`, so :math:`\epsilon` sits outside the
    correction); this follows the package (and torch's Adam), which differ from the paper only
    in the scale of :math:`\epsilon`. Other departures, mode switching and the advice against an
    lr schedule are as in :class:`ScheduleFreeSGD`::

        opt = ScheduleFreeAdamW(model.parameters(), lr=0.0025, warmup_steps=100)
        model.train(); opt.train()   # ... training steps ...
        model.eval(); opt.eval()     # evaluate or save x
    """

    _hypers: ClassVar[dict[str, Hyper]] = {
        **_COMMON,
        "betas": Hyper("betas", (0.9, 0.999), _schedule_free_betas),
        "eps": Hyper("eps", 1e-8, non_negative),
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        *,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "r": r,
            "weight_lr_power": weight_lr_power,
        }
        super().__init__(params, defaults)

    @staticmethod
    def _beta(group: dict[str, Any]) -> float:
        return float(group["betas"][0])

    def _directions(
        self, group: dict[str, Any], params: list[Tensor], step: int
    ) -> list[Tensor] | tuple[Tensor, ...]:
        beta2 = float(group["betas"][1])
        for p in params:
            if "exp_avg_sq" not in self.state[p]:
                self.state[p]["exp_avg_sq"] = torch.zeros_like(
                    p, memory_format=torch.preserve_format
                )
        grads = [p.grad for p in params]
        squares = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_mul_(squares, beta2)
        torch._foreach_addcmul_(squares, grads, grads, value=1.0 - beta2)  # type: ignore[arg-type]
        denominators = torch._foreach_div(squares, 1.0 - beta2 ** (step + 1))
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, float(group["eps"]))
        directions = torch._foreach_div(grads, denominators)  # type: ignore[arg-type]
        if group["weight_decay"] != 0:
            torch._foreach_add_(directions, params, alpha=float(group["weight_decay"]))
        return directions
