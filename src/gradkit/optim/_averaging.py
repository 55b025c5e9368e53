"""Weight averaging for any optimizer: exponential moving average (EMA) and SWA, and
:func:`update_bn`, which recomputes batch-norm statistics for averaged weights.

An averager keeps a copy of the model whose parameters are an average of the model's weights
along the run. It never touches the optimizer, so it works with any of them in a user's own
loop::

    ema = gradkit.optim.EMA(model, decay=0.999)
    for x, y in loader:
        ...; optimizer.step()
        ema.update()
    evaluate(ema.module)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn


def _is_float(tensor: Tensor) -> bool:
    return torch.is_floating_point(tensor) or torch.is_complex(tensor)


class _WeightAverage:
    """The averaged copy of a model and its bookkeeping; subclasses give the averaging rule."""

    _kind = "average"

    def __init__(
        self,
        model: nn.Module,
        *,
        average_buffers: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"{type(self).__name__}: model must be a torch.nn.Module, got {model!r}"
            )
        if not isinstance(average_buffers, bool):
            raise TypeError(
                f"{type(self).__name__}: invalid average_buffers={average_buffers!r}; "
                "expected True or False"
            )
        self.model = model
        self.average_buffers = average_buffers
        self.module: nn.Module = copy.deepcopy(model)
        if device is not None:
            self.module.to(device)
        self.module.requires_grad_(False)
        self.n_averaged = 0
        """How many times :meth:`update` has averaged the model in (the first call copies it)."""

    def _pairs(self, model: nn.Module) -> Iterator[tuple[Tensor, Tensor, bool]]:
        """(averaged tensor, model tensor, averaged?) for every parameter and buffer."""
        params = zip(self.module.parameters(), model.parameters(), strict=True)
        for mine, theirs in params:
            yield mine, theirs, True
        buffers = zip(self.module.buffers(), model.buffers(), strict=True)
        for mine, theirs in buffers:
            # Integer buffers (BatchNorm's num_batches_tracked) are counts, never averaged.
            yield mine, theirs, self.average_buffers and _is_float(mine)

    def _weight(self) -> float:
        """The weight of the model in the new average: ``avg <- lerp(avg, model, weight)``."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, model: nn.Module | None = None) -> None:
        """Average the model's current weights in (``model`` defaults to the one given at
        construction). The first call copies them, as ``torch.optim.swa_utils`` does."""
        source = self.model if model is None else model
        weight = 1.0 if self.n_averaged == 0 else self._weight()
        averaged: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
        for mine, theirs, average in self._pairs(source):
            value = theirs.detach().to(mine.device)
            if not average or weight == 1.0:
                mine.copy_(value)
            else:
                mine_list, theirs_list = averaged.setdefault((mine.device, mine.dtype), ([], []))
                mine_list.append(mine)
                theirs_list.append(value)
        for mine_list, theirs_list in averaged.values():
            torch._foreach_lerp_(mine_list, theirs_list, weight)
        self.n_averaged += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the count: all a resumed run needs to go on exactly."""
        return {
            "kind": self._kind,
            "n_averaged": self.n_averaged,
            "module": self.module.state_dict(),
            **self._settings(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        name = type(self).__name__
        kind = state_dict.get("kind")
        if kind != self._kind:
            raise ValueError(
                f"{name}.load_state_dict: the state is of a {kind!r} averager, expected "
                f"{self._kind!r}"
            )
        for key, value in self._settings().items():
            if state_dict.get(key) != value:
                raise ValueError(
                    f"{name}.load_state_dict: the state has {key}={state_dict.get(key)!r}, this "
                    f"averager {key}={value!r}; build it with the saved setting"
                )
        n_averaged = state_dict.get("n_averaged")
        if isinstance(n_averaged, bool) or not isinstance(n_averaged, int) or n_averaged < 0:
            raise ValueError(
                f"{name}.load_state_dict: invalid n_averaged={n_averaged!r}; expected an "
                "integer >= 0"
            )
        self.module.load_state_dict(state_dict["module"])
        self.n_averaged = n_averaged

    def _settings(self) -> dict[str, Any]:
        return {"average_buffers": self.average_buffers}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The averaged model's forward."""
        return self.module(*args, **kwargs)


class EMA(_WeightAverage):
    r"""Exponential moving average of a model's weights (Polyak averaging with exponential
    weights; the EMA of timm's ``ModelEmaV3`` and of ``torch.optim.swa_utils``).

    .. math::
        \bar\theta_1 = \theta_1,\qquad
        \bar\theta_{n+1} = \beta\,\bar\theta_n + (1 - \beta)\,\theta_{n+1}

    where :math:`\theta_n` are the model's weights at the :math:`n`-th :meth:`update` and
    :math:`\beta` is ``decay``. The first update copies the weights, as
    ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))`` does; timm instead starts
    the average from the weights at construction (the same thing if you construct it, then
    update it right away).

    ``average_buffers=False`` (torch's ``use_buffers=False``): the averaged module's buffers
    (batch-norm statistics) are copied from the model at each update; then run
    :func:`update_bn` for statistics that match the averaged weights. ``True``: floating-point
    buffers are averaged like the parameters; integer buffers (``num_batches_tracked``) are
    copied (torch would average them too, and truncate).

    ``device`` keeps the average elsewhere (e.g. ``"cpu"`` for a model on a GPU).

    Example::

        ema = EMA(model, decay=0.999)
        optimizer.step(); ema.update()
        accuracy = evaluate(ema.module)
    """

    _kind = "ema"

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.999,
        *,
        average_buffers: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if (
            isinstance(decay, bool)
            or not isinstance(decay, (int, float))
            or not 0.0 <= float(decay) <= 1.0
        ):
            raise ValueError(f"EMA: invalid decay={decay!r}; expected a number in [0, 1]")
        super().__init__(model, average_buffers=average_buffers, device=device)
        self.decay = float(decay)

    def _weight(self) -> float:
        return 1.0 - self.decay

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "decay": self.decay}

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay}, n_averaged={self.n_averaged})"


class SWA(_WeightAverage):
    r"""Stochastic weight averaging (Izmailov et al., arXiv 1803.05407, Alg. 1): the equal
    average of the weights at each :meth:`update`.

    .. math::
        \bar\theta_{n+1} = \bar\theta_n + \frac{\theta_{n+1} - \bar\theta_n}{n + 1}

    with :math:`n` = :attr:`n_averaged` (the first update copies), as
    ``torch.optim.swa_utils.AveragedModel(model)`` does. When to update is the caller's choice:
    the paper averages once per cycle of a cyclic learning rate, or once per epoch from a start
    epoch on with a constant one (``torch.optim.swa_utils.SWALR``). Batch-norm statistics of the
    averaged weights come from :func:`update_bn` after the last update; ``average_buffers`` and
    ``device`` are as in :class:`EMA`.

    Example::

        swa = SWA(model)
        if epoch >= swa_start: swa.update()
        update_bn(train_loader, swa.module)
    """

    _kind = "swa"

    def _weight(self) -> float:
        return 1.0 / (self.n_averaged + 1)

    def __repr__(self) -> str:
        return f"SWA(n_averaged={self.n_averaged})"


@torch.no_grad()
def update_bn(
    loader: Iterable[Any], model: nn.Module, device: torch.device | str | None = None
) -> None:
    """Recompute the running statistics of every batch-norm layer of ``model`` from ``loader``.

    Averaged weights need their own statistics: those of the last iterate do not fit them
    (arXiv 1803.05407, Sec. 3.2). Each layer's statistics are reset and rebuilt as the equal
    average over the batches (momentum ``None`` for the pass), in training mode; the layers'
    momenta and the model's mode are restored after. A batch is a tensor or a list or tuple
    whose first element is the input (as ``torch.optim.swa_utils.update_bn`` takes them);
    ``device`` moves it there first. A model without batch norm is left alone.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"update_bn: model must be a torch.nn.Module, got {model!r}")
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momenta = {layer: layer.momentum for layer in layers}
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()
    batches = 0
    try:
        for batch in loader:
            inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
            if not isinstance(inputs, Tensor):
                raise TypeError(
                    "update_bn: each batch must be a tensor or a list/tuple whose first element "
                    f"is one, got {type(inputs).__name__}"
                )
            model(inputs if device is None else inputs.to(device))
            batches += 1
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        model.train(was_training)
    if batches == 0:
        raise ValueError("update_bn: the loader gave no batches; the statistics would be empty")
