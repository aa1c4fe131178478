"""Worker pools under every multiprocessing start method: right results, no orphans."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_convert import add_sample, run, shape, tree_hashes
from helpers_parallel import (
    SET_AFTER_IMPORT,
    count_set_after_import,
    gone_within,
    running,
    square_and_parent,
)

from segkit import parallel
from segkit.parallel import ProcessIdentity, parallel_map, pool_context, worker_pool

METHODS = [
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
]
LINUX = sys.platform.startswith("linux")


@pytest.mark.parametrize("method", METHODS)
def test_parallel_map_is_right_under_every_start_method(
    monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    monkeypatch.setattr(parallel, "START_METHOD", method)
    assert pool_context().get_start_method() == method
    results = parallel_map(square_and_parent, range(9), workers=2)
    assert [square for square, _ in results] == [i * i for i in range(9)]
    parents = {parent for _, parent in results}
    # Under forkserver a worker's parent is the fork server: the case the owner watch is for.
    assert (parents == {os.getpid()}) == (method != "forkserver"), parents


@pytest.mark.skipif(not LINUX, reason="fork is the choice on Linux only")
def test_pools_fork_on_linux_by_default() -> None:
    assert parallel.START_METHOD is None
    assert pool_context().get_start_method() == "fork"
    SET_AFTER_IMPORT.append(1)
    try:
        with worker_pool(2) as pool:
            assert pool is not None
            seen = [pool.submit(count_set_after_import, None).result() for _ in range(2)]
    finally:
        SET_AFTER_IMPORT.clear()
    assert seen == [1, 1]  # the workers hold this process's state: forked


def test_other_platforms_get_their_default_start_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.sys, "platform", "darwin")
    assert pool_context() is multiprocessing.get_context()


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_a_process_identity_tells_a_reused_pid_from_its_owner() -> None:
    me = ProcessIdentity.current()
    assert me.pid == os.getpid() and me.start is not None and me.alive()
    assert not ProcessIdentity(me.pid, me.start + 1).alive()  # same pid, later process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    assert not ProcessIdentity(child.pid, me.start).alive()
    assert ProcessIdentity(me.pid).alive()  # pid alone, as off Linux
    assert not ProcessIdentity(child.pid).alive()


_OWNER_SCRIPT = """
import os, sys, time
from segkit import parallel

if __name__ == "__main__":
    parallel.START_METHOD = sys.argv[1]
    with parallel.worker_pool(2) as pool:
        pid = pool.submit(os.getpid).result()
        with open(sys.argv[2] + ".tmp", "w") as handle:
            handle.write(str(pid))
        os.replace(sys.argv[2] + ".tmp", sys.argv[2])
        time.sleep(60)  # until the test kills this process
"""


@pytest.mark.skipif(not LINUX, reason="reads /proc")
@pytest.mark.parametrize("method", [m for m in METHODS if m != "fork"])
def test_a_pool_worker_ends_when_the_pools_owner_is_killed(tmp_path: Path, method: str) -> None:
    # fork: tests/test_parallel.py (test_a_worker_ends_when_its_parent_is_killed).
    pid_file = tmp_path / "worker.pid"
    owner = subprocess.Popen([sys.executable, "-c", _OWNER_SCRIPT, method, str(pid_file)])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists():
            assert time.monotonic() < deadline and owner.poll() is None
            time.sleep(0.01)
        worker = int(pid_file.read_text())
        assert running(worker)
    finally:
        owner.kill()
        owner.wait(10)
    assert gone_within(worker, 3 + parallel.PARENT_POLL_SECONDS)


_CLI_WITH_START_METHOD = """
import sys
from segkit import parallel
from segkit.cli import entry_point

parallel.START_METHOD = sys.argv.pop(1)
entry_point()
"""


def test_convert_through_the_cli_with_forkserver_workers_writes_what_one_worker_writes(
    tmp_path: Path,
) -> None:
    # parallel.py builds every pool: convert stands for validate, split and weights.
    source = tmp_path / "in"
    for index in range(4):
        add_sample(source, f"img{index}", [shape("cat", "point", [[3 + index, 5]])])
    one = run("convert", source, "-o", tmp_path / "one", "--workers", "1")
    assert one.exit_code == 0, one.output
    command = ["convert", str(source), "-o", str(tmp_path / "two"), "--workers", "2"]
    two = subprocess.run(
        [sys.executable, "-c", _CLI_WITH_START_METHOD, "forkserver", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert two.returncode == 0, two.stderr
    assert tree_hashes(tmp_path / "two") == tree_hashes(tmp_path / "one")
