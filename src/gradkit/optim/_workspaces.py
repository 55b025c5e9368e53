"""Parameter-shaped buffers kept between steps, for steps that hold a whole update in memory."""

from __future__ import annotations

import operator

import torch
from torch import Tensor
from torch.utils.weak import WeakTensorKeyDictionary

_KEPT_LISTS = 16
"""How many lists of parameters :class:`Workspaces` remembers (a step asks for one per bucket)."""


class Workspaces:
    """One buffer per parameter, in its shape, dtype and strides, kept between steps.

    LAMB needs every update's norm before it can scale any update, so the update is held in
    memory between two passes. A buffer allocated anew at each step is returned to the system
    and faulted in again at every step when it is large (10k page faults of 4 KB for 40 MB);
    a kept one is not. Buffers live as long as their owner (an optimizer, which holds its
    parameters anyway), are never saved in a state dict, and hold scratch: whoever asks for
    one writes it before reading it.
    """

    def __init__(self) -> None:
        self._buffers = WeakTensorKeyDictionary()
        # The lists asked for, with their buffers: a step asks for the same lists each time
        # (one per bucket), and 255 weak-dictionary lookups cost 1.3 ms where comparing a
        # list costs tens of microseconds.
        self._lists: dict[tuple[int, ...], tuple[list[Tensor], list[Tensor]]] = {}

    def __call__(self, params: list[Tensor]) -> list[Tensor]:
        """The buffers of ``params`` (made on first use, or when a parameter's layout changed)."""
        key = tuple(map(id, params))
        known = self._lists.get(key)
        if (
            known is not None
            and all(map(operator.is_, known[0], params))
            and all(map(_fits, known[1], params))
        ):
            return known[1]
        buffers = [self._one(param) for param in params]
        if len(self._lists) >= _KEPT_LISTS:
            self._lists.clear()
        self._lists[key] = (list(params), buffers)
        return buffers

    def _one(self, param: Tensor) -> Tensor:
        buffer = self._buffers.get(param)
        if buffer is None or not _fits(buffer, param):
            buffer = self._buffers[param] = torch.empty_like(
                param, memory_format=torch.preserve_format
            )
        return buffer


def _fits(buffer: Tensor, param: Tensor) -> bool:
    """Whether ``buffer`` has ``param``'s shape, strides, dtype and device."""
    return (
        buffer.shape == param.shape
        and buffer.stride() == param.stride()
        and buffer.dtype == param.dtype
        and buffer.device == param.device
    )
