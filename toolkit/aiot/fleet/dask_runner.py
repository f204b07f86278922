"""Installations on a Dask cluster: one task per installation (train its model, build its
image, stream its history), mapped by the same per-file workers the local process pool runs.

    mapper = dask_mapper("tcp://scheduler:8786")     # or "local": a LocalCluster here
    for outcome in mapper(fn, items): ...            # in the order of ``items``

A task that raises (a bug, a worker that died three times: Dask's KilledWorker) comes back
as an error outcome naming its installation, like a file that cannot be commissioned, so
the rest of the fleet finishes. Dask is the optional ``fleet`` extra."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from aiot.errors import ToolkitError

#: What the per-file workers return for a failed file: ("error", message, hint, exit code, skippable).
ERROR = "error"


def _require_dask():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ToolkitError("--scheduler needs Dask, which is not installed",
                           hint="pip install 'aiot-toolkit[fleet]' (or pip install 'dask[distributed]'), or leave "
                                "--scheduler out to run on local processes") from None


@contextmanager
def client_for(scheduler: str, workers: int | None = None, connect_timeout: float = 10.0) -> Iterator[object]:
    """A Dask client: ``local`` starts a LocalCluster of ``workers`` processes (one thread
    each: TensorFlow trains on the worker's cores) for the block; anything else is a
    scheduler address (tcp://HOST:8786) to connect to."""
    _require_dask()
    from distributed import Client, LocalCluster

    if scheduler == "local":
        # The caller's environment is given back as it was: the workers' PYTHONPATH below, and
        # what Dask's nanny puts in os.environ for its workers (OMP_NUM_THREADS=1,
        # PYTHONHASHSEED, ...), which would hold for everything this process runs afterwards.
        saved = dict(os.environ)
        # workers are new processes: they must import aiot from where this one did
        import aiot

        root = os.path.dirname(os.path.dirname(aiot.__file__))
        path = os.environ.get("PYTHONPATH", "")
        if root not in path.split(os.pathsep):
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, path) if p)
        try:
            cluster = LocalCluster(n_workers=workers or max(1, min(4, os.cpu_count() or 1)), threads_per_worker=1,
                                   processes=True, dashboard_address=":0",
                                   silence_logs=logging.WARNING)  # any free port, no INFO lines
            try:
                with Client(cluster) as client:
                    yield client
            finally:
                cluster.close()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return
    if "://" not in scheduler:
        raise ToolkitError(f"--scheduler {scheduler}: not a scheduler address",
                           hint="give tcp://HOST:8786 (dask scheduler), or local for a cluster on this machine")
    try:
        client = Client(scheduler, timeout=f"{connect_timeout}s")
    except (OSError, TimeoutError) as e:
        raise ToolkitError(f"cannot reach the Dask scheduler at {scheduler}: {e}",
                           hint="is `dask scheduler` running there (and `dask worker " + scheduler + "` on the "
                                "workers)? Or use --scheduler local") from None
    try:
        yield client
    finally:
        client.close()


def _guarded(fn: Callable, item, name: str):
    """``fn(item)``; an exception comes back as an error outcome naming the installation."""
    try:
        return fn(item)
    except ToolkitError as e:
        return (ERROR, e.message if e.message.startswith(name) else f"{name}: {e.message}", e.hint, e.exit_code, True)
    except Exception as e:  # noqa: BLE001 -- one installation's bug must not stop the fleet
        return (ERROR, f"{name}: its task failed: {type(e).__name__}: {e}",
                "run this file alone (aiot evaluate --data FILE ...) to see the whole error", 1, True)


def local_mapper(jobs: int):
    """A ``mapper(fn, items)`` on ``jobs`` local processes started with spawn, not fork
    (TensorFlow state must not be forked); in this process when ``jobs`` <= 1."""
    def mapper(fn: Callable, items: Iterable) -> Iterator:
        items = list(items)
        if jobs <= 1 or len(items) <= 1:
            yield from map(fn, items)
            return
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(min(jobs, len(items)), mp_context=get_context("spawn")) as pool:
            yield from pool.map(fn, items)

    return mapper


def dask_mapper(scheduler: str, workers: int | None = None,
                name_of: Callable[[object], str] = lambda item: getattr(item[0], "name", str(item[0]))):
    """A ``mapper(fn, items)`` for :func:`aiot.evaluate.pipeline.run`: ``fn`` over ``items`` as
    one Dask task each, outcomes yielded in the order of ``items`` as they complete."""
    _require_dask()

    def mapper(fn: Callable, items: Iterable) -> Iterator:
        items = list(items)
        with client_for(scheduler, workers) as client:
            names = [name_of(it) for it in items]
            futures = client.map(_guarded, [fn] * len(items), items, names, pure=False)
            for name, fut in zip(names, futures):
                try:
                    yield fut.result()
                except Exception as e:  # noqa: BLE001 -- KilledWorker, a lost scheduler: this one failed
                    yield (ERROR, f"{name}: its task failed on the cluster: {type(e).__name__}: {e}",
                           "a worker died running it (memory?); the other installations are unaffected", 1, True)

    return mapper
