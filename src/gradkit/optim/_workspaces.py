"""What a step keeps between steps besides the state: parameter-shaped workspaces, for steps
that hold a whole update in memory, and the state's 0-d counters as views of one vector."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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


@dataclass
class _Vector:
    views: list[Tensor]
    array: np.ndarray  # the vector's memory


class CounterVectors:
    """A bucket's 0-d counters ``state[key]`` as views of one CPU vector, kept between steps.

    A 0-d tensor per parameter costs a dispatch per parameter for every operation on it
    (incrementing 255 step counters with ``torch._foreach_add_`` takes 0.4 ms on CPU, 70 of
    them more than a small model's whole fused step). So the counters of a bucket are made
    views of one vector, once, and later steps update them all with one numpy operation on its
    memory. The views stay in the state (a state dict saves them as 0-d tensors). Whenever a
    counter is not the view made here (a new parameter, a ``load_state_dict``, a replaced
    entry), the vector is made again from the state.
    """

    def __init__(self) -> None:
        self._vectors: dict[tuple[Any, ...], _Vector] = {}

    def array(
        self, group_index: int, params: list[Tensor], states: list[dict[str, Any]], key: str
    ) -> np.ndarray:
        """The counters ``state[key]`` of one bucket's ``states`` as one array whose elements
        they are (the bucket: ``params`` of param group ``group_index``)."""
        entries = [state[key] for state in states]
        index = (group_index, params[0].device, params[0].dtype, key)
        known = self._vectors.get(index)
        if (
            known is None
            or len(known.views) != len(entries)
            or not all(map(operator.is_, known.views, entries))
        ):
            vector = torch.stack(entries).detach().cpu()
            views = list(vector.unbind())
            for state, view in zip(states, views, strict=True):
                state[key] = view
            known = self._vectors[index] = _Vector(views, vector.numpy())
        return known.array


@dataclass(frozen=True)
class Kept:
    """An optimizer's buffers kept between steps, shared by its default path and its fused
    backend (one workspace per parameter and one counter vector per bucket, whichever path
    steps)."""

    workspaces: Workspaces = field(default_factory=Workspaces)
    counters: CounterVectors = field(default_factory=CounterVectors)
