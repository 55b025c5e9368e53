"""Ctrl-C during training: finish the step, checkpoint it, stop; a second Ctrl-C stops at once."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType

import torch

from gradkit.train._distributed import Distributed

__all__ = ["StopOnInterrupt"]


class StopOnInterrupt:
    """While active, SIGINT sets a flag that the loop reads between steps.

    The first SIGINT only asks to stop (and puts back Python's handler, so a second one raises
    :class:`KeyboardInterrupt` wherever the process is). Under DDP every process must stop after
    the same step, so :meth:`requested` sums the flags over the processes (one tiny
    all-reduce per step); each process of a ``torchrun`` job gets the signal of a Ctrl-C.
    Outside the main thread signals cannot be caught, and Ctrl-C keeps its usual effect.
    """

    def __init__(self, dist: Distributed) -> None:
        self.dist = dist
        self.flag = False
        self._previous: object = None
        self._installed = False

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._installed = False

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.flag = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if self.dist.is_main:
            # os.write: a signal handler must not re-enter sys.stderr's buffer.
            os.write(2, b"\ngradkit: stopping after this step (Ctrl-C again to stop at once)\n")

    def requested(self) -> bool:
        """Whether any process was interrupted (a collective call under DDP)."""
        if not self.dist.enabled:
            return self.flag
        flags = torch.tensor([float(self.flag)], device=self.dist.device)
        return bool(self.dist.all_reduce_sum(flags).item() > 0)
