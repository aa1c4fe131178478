"""parallel.py: order-preserving maps over worker processes, and the workers' set-up."""

from __future__ import annotations

import gc
import multiprocessing
import resource
import subprocess
import sys
import time
import weakref
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers_parallel import gone_within, running
from hypothesis import given
from hypothesis import strategies as st

from segkit.parallel import (
    _MAX_CHUNK,
    chunk_bounds,
    parallel_map,
    prepare_worker_process,
    worker_pool,
)

_BUFFER_BYTES = 1 << 20
_BUFFERS_PER_ROUND = 3


def _square(value: int) -> int:
    return value * value


def _faults_while_reallocating(rounds: int) -> int:
    """Page faults taken while allocating, touching and freeing a few buffers ``rounds`` times.

    As ``segkit convert`` does per image: several image-sized buffers live at once,
    then all are freed.
    """
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        buffers = [np.zeros(_BUFFER_BYTES, dtype=np.uint8) for _ in range(_BUFFERS_PER_ROUND)]
        for buffer in buffers:
            buffer[::4096] = 1
        del buffers, buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _frozen_objects(_: object) -> int:
    return gc.get_freeze_count()


class _Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


_EARLIER_CYCLES: list[weakref.ref] = []


def _leave_a_cycle(_: object) -> tuple[bool, bool]:
    """Whether the collector runs during an item, and whether the cycles earlier items
    left in this worker are gone."""
    earlier_gone = all(ref() is None for ref in _EARLIER_CYCLES)
    _EARLIER_CYCLES.append(weakref.ref(_Node()))
    return gc.isenabled(), earlier_gone


def test_workers_collect_each_items_cycles_with_the_collector_paused_during_items() -> None:
    results = parallel_map(_leave_a_cycle, range(40), workers=2)
    assert results == [(False, True)] * 40


def test_parallel_map_keeps_input_order_across_workers() -> None:
    items = list(range(103))
    assert parallel_map(_square, items, workers=2) == [i * i for i in items]
    with worker_pool(2) as pool:
        assert parallel_map(_square, items, workers=2, pool=pool) == [i * i for i in items]
    assert parallel_map(_square, items, workers=1) == [i * i for i in items]


@given(count=st.integers(0, 5000), workers=st.integers(1, 64))
def test_chunks_cover_the_items_in_order_and_shrink_to_single_items(
    count: int, workers: int
) -> None:
    bounds = chunk_bounds(count, workers)
    assert [start for start, _ in bounds] == [0, *(stop for _, stop in bounds)][: len(bounds)]
    assert (bounds[-1][1] if bounds else 0) == count
    sizes = [stop - start for start, stop in bounds]
    assert all(1 <= size <= _MAX_CHUNK for size in sizes)
    assert sizes == sorted(sizes, reverse=True)
    # The last chunk of each worker is a single item: they finish together.
    assert sizes[-min(workers, count) :] == [1] * min(workers, count)


def test_stop_cancels_what_is_left() -> None:
    results = parallel_map(_square, range(10), workers=1, stop=lambda r: r >= 9)
    assert results[:4] == [0, 1, 4, 9] and results[4:] == [None] * 6


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_prepared_workers_reuse_freed_memory_instead_of_faulting_it_back() -> None:
    pages = _BUFFERS_PER_ROUND * _BUFFER_BYTES // 4096  # touched per round
    # Fresh interpreters: a forked worker inherits this process's (test-dependent) heap.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as plain:
        untuned = plain.submit(_faults_while_reallocating, 20).result()
    if untuned < 10 * pages:  # pragma: no cover - allocators other than glibc
        pytest.skip(f"this allocator keeps freed memory by itself ({untuned} faults)")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=prepare_worker_process) as prepared:
        tuned = prepared.submit(_faults_while_reallocating, 20).result()
    assert tuned < 3 * pages, (tuned, untuned)


def test_pool_workers_freeze_inherited_objects() -> None:
    with worker_pool(2) as pool:
        assert pool is not None
        counts = [pool.submit(_frozen_objects, None).result() for _ in range(2)]
    assert min(counts) > 1000  # every imported module's objects


_ORPHAN_SCRIPT = """
import multiprocessing, os, sys, time
from segkit.parallel import ProcessIdentity, die_with_owner

def child(owner, signal_ok, pid_file):
    die_with_owner(owner, signal_ok=signal_ok)
    with open(pid_file, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(60)

if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    owner = ProcessIdentity.current()
    ctx.Process(target=child, args=(owner, sys.argv[1] == "1", sys.argv[2])).start()
    time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signal_ok", [True, False], ids=["pdeathsig", "parent-watch"])
def test_a_worker_ends_when_its_parent_is_killed(tmp_path: Path, signal_ok: bool) -> None:
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, "1" if signal_ok else "0", str(pid_file)]
    )
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.01)
    child = int(pid_file.read_text())
    assert running(child)
    parent.kill()
    parent.wait(10)
    assert gone_within(child, 5)


def test_stop_pool_silences_only_the_cancelled_future_race_of_old_pythons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    from concurrent.futures import InvalidStateError
    from concurrent.futures.process import _ExecutorManagerThread

    from segkit import parallel

    seen: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_type))
    monkeypatch.setattr(parallel, "_excepthooks_before", [threading.excepthook])
    monkeypatch.setattr(parallel.sys, "version_info", (3, 11, 7))
    with parallel._owned_pool(1) as pool:
        parallel.stop_pool(pool)
    hook = threading.excepthook
    assert hook is parallel._quiet_cancelled_future_race

    manager = object.__new__(_ExecutorManagerThread)
    other = threading.Thread()

    def args(exc_type: type[BaseException], thread: object) -> threading.ExceptHookArgs:
        return threading.ExceptHookArgs([exc_type, exc_type(), None, thread])

    hook(args(InvalidStateError, manager))  # the CPython race: not printed
    hook(args(InvalidStateError, other))
    hook(args(ValueError, manager))
    assert seen == [InvalidStateError, ValueError]
