"""Run a function over many items in worker processes, reporting each result as it lands."""

from __future__ import annotations

import contextlib
import functools
import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import (
    Executor,
    Future,
    InvalidStateError,
    ProcessPoolExecutor,
    as_completed,
)
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Called after each item with the number of items finished so far and the total.
ProgressCallback = Callable[[int, int], None]
_MAX_CHUNK = 16
# glibc mallopt parameters (malloc.h): keep freed memory instead of returning it.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_FREED_BYTES, _HEAP_ALLOCATIONS_UP_TO = 256 << 20, 32 << 20
# prctl(2): deliver a signal to this process when the thread that forked it ends.
_PR_SET_PDEATHSIG = 1
#: How often a worker without a parent-death signal checks that its owner lives.
PARENT_POLL_SECONDS = 0.5
#: How worker processes start; None: ``pool_context``'s choice. Tests set it to try others.
START_METHOD: str | None = None
#: How long a stopped pool's workers get to exit after SIGTERM before SIGKILL.
_TERMINATE_GRACE_SECONDS = 2.0


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


def pool_context() -> BaseContext:
    """The multiprocessing context worker pools start their processes with.

    ``fork`` on Linux: a forked worker starts in milliseconds with everything this
    process imported (numpy, PIL, segkit), where ``spawn`` and ``forkserver`` (Linux's
    default from Python 3.14) start a fresh interpreter that imports them again, about
    0.2 s per worker, and a resource-tracker process besides. Workers only run segkit
    code on their own items, so inheriting this process's state is safe. Elsewhere the
    platform's default: macOS's system frameworks are not fork-safe (Python defaults to
    ``spawn`` there), and Windows has only ``spawn``. ``START_METHOD`` overrides this.
    """
    if START_METHOD is not None:
        return multiprocessing.get_context(START_METHOD)
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _start_time(pid: int) -> int | None:
    """When a live process started (clock ticks after boot); None if gone or unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name in parentheses may hold spaces: fields are counted after it.
    fields = stat[stat.rindex(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):  # a zombie has ended
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessIdentity:
    """A process, told apart from a later one that reuses its pid.

    On Linux the start time read from ``/proc`` tells them apart. Elsewhere only the pid
    is compared: a process that reuses it, or an exited process its parent has not yet
    reaped, counts as alive.
    """

    pid: int
    start: int | None = None

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process."""
        pid = os.getpid()
        return cls(pid, _start_time(pid) if sys.platform.startswith("linux") else None)

    def alive(self) -> bool:
        """Whether this process still runs."""
        if self.start is not None:
            return _start_time(self.pid) == self.start
        if os.name != "posix":  # Windows' os.kill ends a process: no probe there
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: the pid was reused
            return False
        return True


def _set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent ends; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (ImportError, OSError, AttributeError):
        return False


def _is_parent(pid: int) -> bool:
    return os.getppid() == pid


def _watch(alive: Callable[[], bool]) -> None:
    while alive():
        threading.Event().wait(PARENT_POLL_SECONDS)
    os._exit(1)


def die_with_owner(owner: ProcessIdentity, *, signal_ok: bool = True) -> None:
    """End this process as soon as process ``owner`` is gone, whatever ended it.

    ``owner`` is the process that asked for this one: the main process that built a
    worker pool. A worker left behind would go on writing into a folder another run may
    own, and hold the caller's pipes open. When ``owner`` is the direct parent (``fork``,
    ``spawn``), Linux sends SIGKILL the moment it dies (``signal_ok``: it forked from its
    main thread, which lives as long as the process); elsewhere a daemon thread polls
    the parent's pid. Under ``forkserver`` the direct parent is the fork server, whose
    death signal would say nothing about ``owner``: a daemon thread polls ``owner``
    itself, told apart from a process that reuses its pid (see ``ProcessIdentity``).
    """
    alive: Callable[[], bool] = owner.alive
    polled = True
    if os.getppid() == owner.pid:
        alive = functools.partial(_is_parent, owner.pid)
        polled = not (signal_ok and _set_parent_death_signal())
    if not alive():  # it died before the signal was armed, or the watch started
        os._exit(1)
    if polled:
        threading.Thread(target=_watch, args=(alive,), daemon=True).start()


def _init_worker(owner: ProcessIdentity, signal_ok: bool) -> None:
    # Ctrl-C reaches the whole process group; the main process decides what it means
    # and stops the pool, so a worker never dies half-way through with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_owner(owner, signal_ok=signal_ok)
    prepare_worker_process()


def _process_pool(workers: int) -> ProcessPoolExecutor:
    # Workers start (fork, spawn) in the thread that submits work: the one building the pool.
    signal_ok = threading.current_thread() is threading.main_thread()
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=pool_context(),
        initializer=_init_worker,
        initargs=(ProcessIdentity.current(), signal_ok),
    )


def _quiet_cancelled_future_race(args: threading.ExceptHookArgs) -> None:
    # CPython < 3.12 (gh-107219): the pool's manager thread, finding the workers we
    # ended, sets an exception on futures we had cancelled and prints a traceback.
    if (
        args.exc_type is InvalidStateError
        and type(args.thread).__name__ == "_ExecutorManagerThread"
    ):
        return
    _excepthooks_before[-1](args)


_excepthooks_before = [threading.excepthook]


def stop_pool(pool: Executor, futures: Iterable[Future] = ()) -> None:
    """Cancel ``futures`` and end ``pool``'s workers now, without waiting for their work.

    Used when the main process is interrupted: a plain ``shutdown()`` would wait for
    every queued item. Outputs are written atomically, so a killed worker leaves at
    most a temporary file, which the next run removes.
    """
    if sys.version_info < (3, 12) and threading.excepthook is not _quiet_cancelled_future_race:
        _excepthooks_before.append(threading.excepthook)
        threading.excepthook = _quiet_cancelled_future_race
    for future in futures:
        future.cancel()
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join(_TERMINATE_GRACE_SECONDS)
            if process.is_alive():
                process.kill()
                process.join(_TERMINATE_GRACE_SECONDS)


@contextlib.contextmanager
def _owned_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool that is stopped at once, not drained, when the block raises."""
    pool = _process_pool(workers)
    try:
        yield pool
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def worker_pool(workers: int | None = None) -> Iterator[Executor | None]:
    """A process pool to share between several ``parallel_map`` calls (``None`` for 1 worker).

    Starting worker processes costs tens of milliseconds; a stage with two passes over
    its files pays it once. Workers ignore SIGINT and end when this process ends; an
    exception (Ctrl-C included) in the block stops them at once.
    """
    workers = default_workers() if workers is None else max(1, workers)
    if workers == 1:
        yield None
        return
    with _owned_pool(workers) as pool:
        yield pool


def parallel_map(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    stop: Callable[[R], bool] | None = None,
    pool: Executor | None = None,
    into: list[R | None] | None = None,
) -> list[R | None]:
    """``[func(item) for item in items]`` across ``workers`` processes, in input order.

    ``func`` must be a module-level function (it is pickled). With one worker, or one
    item, everything runs in this process, which keeps tests and debugging simple.
    Exceptions propagate; callers that want to collect per-item failures should make
    ``func`` return them instead of raising. When ``stop(result)`` is true, pending
    items are cancelled and their slots stay ``None`` (``--fail-fast``). ``into``, a list
    of ``None`` as long as ``items``, is filled in place as results arrive and returned:
    a caller interrupted half-way (Ctrl-C) still holds the finished ones.
    """
    todo: Sequence[T] = list(items)
    workers = default_workers() if workers is None else max(1, workers)
    results: list[R | None] = [None] * len(todo) if into is None else into
    if len(results) != len(todo):
        raise ValueError(f"into holds {len(results)} slots for {len(todo)} items")
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
    with _owned_pool(min(workers, len(todo))) as own_pool:
        return _run(own_pool, workers, func, todo, results, progress, stop)


def _apply(func: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    """``func`` over a chunk in a worker, the cyclic garbage collector paused during items.

    An item builds thousands of containers that stay alive while it runs (a parsed
    labelme file: a list per point); the collector would walk them again every 700
    allocations, a tenth of the parse. Collecting the youngest generation after each
    item instead frees the cycles that item left, as the automatic collection would.
    """
    if not gc.isenabled():
        return [func(item) for item in chunk]
    results = []
    gc.disable()
    try:
        for item in chunk:
            results.append(func(item))
            gc.collect(0)
    finally:
        gc.enable()
    return results


def chunk_bounds(count: int, workers: int) -> list[tuple[int, int]]:
    """(start, stop) of the chunks ``count`` items travel in to ``workers`` workers.

    One round trip per item costs the main process more than the work for small
    files, so items travel in chunks of up to ``_MAX_CHUNK``. Each chunk is a quarter
    of what is left per worker (guided scheduling): chunks shrink towards the end, so
    the workers finish together instead of one idling while another works through a
    last large chunk.

    >>> [stop - start for start, stop in chunk_bounds(40, 2)]
    [5, 5, 4, 4, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    """
    bounds = []
    start = 0
    while start < count:
        size = min(_MAX_CHUNK, -(-(count - start) // (4 * max(1, workers))))
        bounds.append((start, start + size))
        start += size
    return bounds


def _run(
    pool: Executor,
    workers: int,
    func: Callable[[T], R],
    todo: Sequence[T],
    results: list[R | None],
    progress: ProgressCallback | None,
    stop: Callable[[R], bool] | None,
) -> list[R | None]:
    futures = {
        pool.submit(_apply, func, todo[start:stop]): start
        for start, stop in chunk_bounds(len(todo), workers)
    }
    done = 0
    try:
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
    except BaseException:
        # Interrupted, or an item raised: queued chunks must not run on (and write)
        # after the caller has moved on; a shared pool is not reusable afterwards.
        stop_pool(pool, futures)
        raise
    return results
