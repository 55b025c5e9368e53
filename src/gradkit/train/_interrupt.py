"""Ctrl-C or SIGTERM during training: finish the step, checkpoint it, stop; a second stops at once.

SIGTERM is what a batch system (Slurm at its time limit or on preemption) and ``kill`` send: in
a single process it is handled like Ctrl-C, so the run resumes exactly. Under ``torchrun`` it
keeps its default effect: the agent sends it to every rank when one fails, and a rank that
finished its step would wait forever in the next collective for the one that died.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType

import torch

from gradkit.train._distributed import Distributed

__all__ = ["StopOnInterrupt"]


SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a run after its step (SIGTERM only outside ``torchrun``)."""


class StopOnInterrupt:
    """While active, SIGINT (and SIGTERM, in one process) set a flag that the loop reads
    between steps.

    The first signal only asks to stop (and puts back the default handlers, so a second SIGINT
    raises :class:`KeyboardInterrupt` wherever the process is, and a second SIGTERM ends it);
    :attr:`received` is the first signal's number. Under DDP every process must stop after
    the same step, so :meth:`requested` sums the flags over the processes (one tiny
    all-reduce per step); each process of a ``torchrun`` job gets the signal of a Ctrl-C.
    Outside the main thread signals cannot be caught, and Ctrl-C keeps its usual effect.
    """

    def __init__(self, dist: Distributed) -> None:
        self.dist = dist
        self.flag = False
        self.received: int = signal.SIGINT
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS if not self.dist.enabled else (signal.SIGINT,):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)  # type: ignore[arg-type]
        self._previous = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if not self.flag:
            self.flag, self.received = True, number
        for installed in self._previous:
            signal.signal(
                installed,
                signal.default_int_handler if installed == signal.SIGINT else signal.SIG_DFL,
            )
        if self.dist.is_main:
            name = "Ctrl-C" if number == signal.SIGINT else signal.Signals(number).name
            # os.write: a signal handler must not re-enter sys.stderr's buffer.
            text = f"\ngradkit: {name}: stopping after this step (again to stop at once)\n"
            os.write(2, text.encode())

    def requested(self) -> bool:
        """Whether any process was interrupted (a collective call under DDP)."""
        if not self.dist.enabled:
            return self.flag
        flags = torch.tensor([float(self.flag)], device=self.dist.device)
        return bool(self.dist.all_reduce_sum(flags).item() > 0)
