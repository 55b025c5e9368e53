"""The Dask executor: a study's runs as tasks on a cluster (``pip install 'gradkit[cluster]'``).

``gradkit study run SPEC --scheduler tcp://HOST:8786`` (or ``run_study(..., scheduler=...)``
with an address, a ``distributed.Client`` or a cluster object such as ``LocalCluster`` or
``dask_jobqueue.SLURMCluster``) sends every run the store lacks to the cluster as one task
that trains it (:func:`gradkit.studies._worker.train_plan`) and returns its record; the driver
writes each record as it comes back, so the store never leaves the driver's machine.

- Each task has a unique key and ``pure=False``: the same run submitted again (by a second
  call after a crash) is a new task, never a cached result.
- A worker lost mid-run (killed, out of memory, its node gone) has its task rescheduled by the
  scheduler on another worker; the driver sees one result, so the run is recorded once. After
  ``distributed.scheduler.allowed-failures`` (3) lost workers the scheduler gives up on it
  (``KilledWorker``) and the run is recorded failed with that reason.
- A run trains in its worker's temporary directory (the workers' file systems are their own),
  with ``threads`` intra-op threads (default 1, as a Dask worker pins its BLAS to one thread).
- The connection is made, and answered, before anything is written: an address that does not
  answer is a :class:`SchedulerError` after ``timeout`` seconds.

Dask is imported only here, and only when a scheduler is asked for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["SchedulerError", "connect", "run_on_dask"]


class SchedulerError(Exception):
    """The Dask scheduler cannot be reached, its workers cannot run gradkit, or it was lost.

    Its message is one line that says what to change (the CLI prints it and exits with 2).
    """


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as error:
        raise SchedulerError(
            "a Dask scheduler needs the 'distributed' package: pip install 'gradkit[cluster]' "
            f"({error})"
        ) from None
    return distributed


@contextlib.contextmanager
def connect(scheduler: Any, timeout: float = 10.0) -> Iterator[Any]:
    """A ``distributed.Client`` of ``scheduler`` for the ``with`` block.

    ``scheduler`` is an address (``tcp://host:8786``), a cluster object with a
    ``scheduler_address`` (``LocalCluster``, ``SLURMCluster``) or a ``Client``, which is used as
    it is and left open. The workers present are asked which gradkit and torch they run.

    Raises:
        SchedulerError: nothing answers as a Dask scheduler at the address within ``timeout``
            seconds, or a worker cannot import gradkit or runs other versions of gradkit or
            torch than this process.
    """
    distributed = _distributed()
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise SchedulerError(f"invalid connect timeout {timeout!r}; expected seconds > 0")
    if isinstance(scheduler, distributed.Client):
        _check_workers(scheduler)
        yield scheduler
        return
    address = getattr(scheduler, "scheduler_address", scheduler)
    if not isinstance(address, str):
        raise SchedulerError(
            f"invalid scheduler {scheduler!r}; expected an address such as tcp://HOST:8786, a "
            "distributed.Client or a Dask cluster object"
        )
    _probe(distributed, address, timeout)
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except Exception as error:  # the probe answered, the client did not: say why, in one line
        raise SchedulerError(_unreachable(address, timeout, error)) from None
    try:
        _check_workers(client)
        yield client
    finally:
        client.close()


def _probe(distributed: Any, address: str, timeout: float) -> None:
    """Open and close one connection to ``address`` (a failed ``Client()`` leaves a client that
    complains when collected; a plain connection leaves nothing behind)."""

    async def handshake() -> None:
        comm = await distributed.comm.connect(address, timeout=timeout)
        await comm.close()

    try:
        asyncio.run(asyncio.wait_for(handshake(), timeout + 1.0))
    except Exception as error:
        raise SchedulerError(_unreachable(address, timeout, error)) from None


def _reason(error: BaseException) -> str:
    """An exception as one line."""
    return " ".join(str(error).split()) or type(error).__name__


def _unreachable(address: str, timeout: float, error: BaseException) -> str:
    reason = _reason(error)
    return (
        f"--scheduler {address}: no Dask scheduler answered within {timeout:g} s ({reason}); "
        "check the address, that `dask scheduler` runs there and that its port is reachable"
    )


def _versions() -> tuple[str, str]:
    import torch

    import gradkit

    return gradkit.__version__, torch.__version__


def _check_workers(client: Any) -> None:
    """Refuse workers that cannot import gradkit or run other gradkit or torch versions: their
    runs would fail one by one, or differ from this machine's."""
    try:
        found = client.run(_versions)
    except OSError as error:  # CommClosedError and the like: the connection, not the workers
        raise SchedulerError(
            f"lost the Dask scheduler while asking its workers their versions ({_reason(error)})"
        ) from None
    except Exception as error:
        raise SchedulerError(
            f"the Dask workers cannot run gradkit ({type(error).__name__}: {_reason(error)}); "
            "install the same gradkit and torch on every worker"
        ) from None
    mine = _versions()
    for worker, theirs in sorted(found.items()):
        if tuple(theirs) != mine:
            raise SchedulerError(
                f"Dask worker {worker} runs gradkit {theirs[0]} with torch {theirs[1]}, this "
                f"process gradkit {mine[0]} with torch {mine[1]}; install the same on every worker"
            )


def run_on_dask(
    client: Any,
    function: Callable[..., Any],
    plans: Sequence[Any],
    arguments: tuple[Any, ...],
    *,
    study: str,
    record: Callable[[Any], None],
    lost: Callable[[Any, BaseException], Any],
) -> None:
    """``record(function(plan, *arguments))`` for every plan, each as a task on ``client``'s
    cluster, in the order they finish.

    A task the scheduler gave up on (``KilledWorker``) or that could not run on its worker
    (e.g. an argument that does not unpickle there) is recorded as ``record(lost(plan, error))``.
    An exception in ``record``, an interrupt or a lost scheduler cancels the tasks not finished
    and is raised (the lost scheduler as :class:`SchedulerError`).
    """
    distributed = _distributed()
    tag = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            function, plan, *arguments, key=f"gradkit-{study}-{plan.run_id}-{tag}", pure=False
        ): plan
        for plan in plans
    }
    try:
        for future in distributed.as_completed(list(futures), loop=client.loop):
            plan = futures[future]
            try:
                result = future.result()
            except concurrent.futures.CancelledError as error:
                raise SchedulerError(
                    f"lost the Dask scheduler ({_reason(error)}); the runs that "
                    "finished are stored: run the study again to resume"
                ) from None
            except Exception as error:  # KilledWorker, or the task failed outside train_plan
                result = lost(plan, error)
            record(result)
    finally:
        pending = [future for future in futures if not future.done()]
        if pending:
            with contextlib.suppress(Exception):
                client.cancel(pending, force=True)
