"""Schedule-free optimizers in the engine: evaluate and checkpoint the average, train at y.

A schedule-free optimizer (:class:`gradkit.optim.ScheduleFreeAdamW`, arXiv 2405.15682) keeps in
the parameters the point :math:`y` where gradients are taken; the weights it recommends are
the average :math:`x`, which ``optimizer.eval()`` puts in their place. The engine therefore
switches to :math:`x` for every evaluation (so ``best.pt`` is selected on it) and every
checkpoint (so ``last.pt`` and ``best.pt`` hold the weights to use, with the optimizer's state
in eval mode), and back with ``optimizer.train()`` before the next step. A resumed run makes
the same switch after loading, so it goes on exactly as the uninterrupted run did. At the end
of training the model keeps :math:`x`, the weights of the last checkpoint.

Batch-norm statistics gathered during training belong to :math:`y`; before each evaluation
they are recomputed at :math:`x` on the training inputs, as for SWA (torch's ``update_bn``
replaces them, so the statistics of :math:`y` never reach a result).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from gradkit.train._average import recompute_batch_norm

__all__ = ["ScheduleFreeModes", "is_schedule_free"]


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` switches its parameters with ``train()``/``eval()``."""
    return callable(getattr(optimizer, "eval", None)) and callable(
        getattr(optimizer, "train", None)
    )


class ScheduleFreeModes:
    """The engine's switch of a schedule-free optimizer between :math:`y` and :math:`x`."""

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        self.optimizer = optimizer
        self.model = model
        self.holding = False

    @contextlib.contextmanager
    def average(self, train_x: Tensor | None = None, batch_size: int = 0) -> Iterator[None]:
        """:math:`x` in the parameters for the block (with batch-norm statistics recomputed
        on ``train_x`` when given), :math:`y` again after it (not after :meth:`hold`)."""
        self.optimizer.eval()  # type: ignore[attr-defined]
        try:
            if train_x is not None:
                recompute_batch_norm(self.model, train_x, batch_size)
            yield
        finally:
            if not self.holding:
                self.optimizer.train()  # type: ignore[attr-defined]

    def after_load(self) -> None:
        """A checkpoint was loaded (its parameters are :math:`x`): back to :math:`y`."""
        self.optimizer.train()  # type: ignore[attr-defined]

    def hold(self) -> None:
        """After the last step: :math:`x` stays in the model (what the last evaluation and
        checkpoint see, and what the caller gets), with no switch back to :math:`y`."""
        self.holding = True
        self.optimizer.eval()  # type: ignore[attr-defined]
