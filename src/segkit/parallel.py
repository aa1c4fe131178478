"""Run a function over many items in worker processes, reporting each result as it lands."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Called after each item with the number of items finished so far and the total.
ProgressCallback = Callable[[int, int], None]
_MAX_CHUNK = 16
# glibc mallopt parameters (malloc.h): keep freed memory instead of returning it.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_FREED_BYTES, _HEAP_ALLOCATIONS_UP_TO = 256 << 20, 32 << 20


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def prepare_worker_process() -> None:
    """Set up a worker process for many similar, allocation-heavy items.

    Each item allocates and frees the same few large buffers (image-sized canvases,
    deflate state). glibc returns such memory to the kernel on free and faults it
    back in, zeroed page by page, for the next item: a tenth of a worker's time in
    ``segkit convert``. Worker processes are ours, so they keep freed memory (heap
    allocations up to 32 MiB, up to 256 MiB kept, so a worker's memory stays at its
    peak until the pool ends). ``gc.freeze`` moves the objects the worker inherited
    to the permanent generation, so garbage collections between items do not walk
    every imported module. No effect beyond speed.
    """
    gc.freeze()
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # here: Pythons built without ctypes still import segkit

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):  # musl has no mallopt: nothing to tune
        return
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, _HEAP_ALLOCATIONS_UP_TO)
    mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES)


def _process_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, initializer=prepare_worker_process)


@contextlib.contextmanager
def worker_pool(workers: int | None = None) -> Iterator[Executor | None]:
    """A process pool to share between several ``parallel_map`` calls (``None`` for 1 worker).

    Starting worker processes costs tens of milliseconds; a stage with two passes over
    its files pays it once.
    """
    workers = default_workers() if workers is None else max(1, workers)
    if workers == 1:
        yield None
        return
    with _process_pool(workers) as pool:
        yield pool


def parallel_map(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    stop: Callable[[R], bool] | None = None,
    pool: Executor | None = None,
) -> list[R | None]:
    """``[func(item) for item in items]`` across ``workers`` processes, in input order.

    ``func`` must be a module-level function (it is pickled). With one worker, or one
    item, everything runs in this process, which keeps tests and debugging simple.
    Exceptions propagate; callers that want to collect per-item failures should make
    ``func`` return them instead of raising. When ``stop(result)`` is true, pending
    items are cancelled and their slots stay ``None`` (``--fail-fast``).
    """
    todo: Sequence[T] = list(items)
    workers = default_workers() if workers is None else max(1, workers)
    results: list[R | None] = [None] * len(todo)
    if pool is not None:
        return _run(pool, workers, func, todo, results, progress, stop)
    if workers == 1 or len(todo) <= 1:
        for index, item in enumerate(todo):
            results[index] = result = func(item)
            if progress:
                progress(index + 1, len(todo))
            if stop is not None and stop(result):
                break
        return results
    with _process_pool(min(workers, len(todo))) as own_pool:
        return _run(own_pool, workers, func, todo, results, progress, stop)


def _apply(func: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [func(item) for item in chunk]


def _run(
    pool: Executor,
    workers: int,
    func: Callable[[T], R],
    todo: Sequence[T],
    results: list[R | None],
    progress: ProgressCallback | None,
    stop: Callable[[R], bool] | None,
) -> list[R | None]:
    # Items travel in small chunks: one round trip per item costs the main process
    # more than the work for small files. ~8 chunks per worker keeps progress smooth.
    size = max(1, min(_MAX_CHUNK, len(todo) // (8 * workers)))
    starts = range(0, len(todo), size)
    futures = {pool.submit(_apply, func, todo[start : start + size]): start for start in starts}
    done = 0
    for future in as_completed(futures):
        start = futures[future]
        chunk_results = future.result()
        results[start : start + len(chunk_results)] = chunk_results
        done += len(chunk_results)
        if progress:
            progress(done, len(todo))
        if stop is not None and any(stop(result) for result in chunk_results):
            for pending in futures:
                pending.cancel()
            break
    return results
