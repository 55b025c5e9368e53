"""Executors: where the runs of a study train, apart from the driver that records them.

The driver (:func:`gradkit.studies.run_study`) decides what to run and is the only writer of
the store; an executor only calls ``function(plan, *arguments)`` for each plan somewhere and
hands each result back to ``record`` in the driver's process, in the order they finish.
:func:`run_in_processes` is the local one: a pool of spawned processes on this machine, which
die with their driver (:mod:`gradkit.studies._lifeline`); :mod:`gradkit.studies._dask` runs
the same function on a Dask cluster.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gradkit.studies._lifeline import die_with_parent

__all__ = ["run_in_processes"]


def run_in_processes(
    function: Callable[..., Any],
    plans: Sequence[Any],
    arguments: tuple[Any, ...],
    *,
    workers: int,
    threads: int,
    record: Callable[..., None],
) -> None:
    """``record(function(plan, *arguments))`` for every plan, ``function`` running in up to
    ``workers`` processes of ``threads`` intra-op threads each.

    The pool is created and fed from the calling thread, which outlives it: on Linux the
    workers' death signal follows the thread that spawned them (see
    :mod:`gradkit.studies._lifeline`). An exception in ``record`` (or an interrupt) cancels the
    runs not started yet and is raised.
    """
    with _worker_environment(threads):
        context = multiprocessing.get_context("spawn")  # fork + torch threads can hang
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(workers, len(plans)),
            mp_context=context,
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(function, plan, *arguments) for plan in plans]
            try:
                for future in concurrent.futures.as_completed(futures):
                    record(future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise


@contextlib.contextmanager
def _worker_environment(threads: int) -> Iterator[None]:
    """Thread counts for the worker processes, which read them when they start."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(threads) for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
