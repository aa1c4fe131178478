"""_io.py: atomic writes leave either the old file or the whole new one, nothing else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import segkit._io as io_module
from segkit._io import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_makes_folders_and_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.bin"
    atomic_write_bytes(target, b"\x00\x01payload")
    assert target.read_bytes() == b"\x00\x01payload"
    assert _listing(target.parent) == ["x.bin"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_ordinary_permissions_not_temp_file_ones(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "b.bin", b"x")
        atomic_write_text(tmp_path / "t.txt", "x")
        atomic_write_json(tmp_path / "j.json", {"a": 1})
    finally:
        os.umask(old)
    for name in ("b.bin", "t.txt", "j.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_partial_system_writes_are_continued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    monkeypatch.setattr(io_module.os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    atomic_write_bytes(tmp_path / "x", bytes(range(256)) * 3)
    assert (tmp_path / "x").read_bytes() == bytes(range(256)) * 3


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("new, but never finished")
        raise RuntimeError
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["x.txt"]


def test_failed_rename_removes_the_temporary(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "child").write_text("keeps the folder non-empty")
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "taken", b"data")
    assert _listing(tmp_path) == ["taken"]


def test_temporary_names_do_not_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(io_module.secrets, "token_hex", lambda _: next(names))
    (tmp_path / ".x.aaaa.tmp").write_text("someone else's")
    atomic_write_bytes(tmp_path / "x", b"mine")
    assert (tmp_path / "x").read_bytes() == b"mine"
    assert (tmp_path / ".x.aaaa.tmp").read_text() == "someone else's"


def test_folder_made_by_a_concurrent_writer_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers find the folder missing; the other one creates it first."""
    folder = tmp_path / "masks"
    real_open, calls = os.open, []

    def racing_open(name: str, flags: int, mode: int = 0o777) -> int:
        calls.append(name)
        if len(calls) == 1:
            folder.mkdir()  # the other worker wins the race
            raise FileNotFoundError(name)
        return real_open(name, flags, mode)

    monkeypatch.setattr(io_module.os, "open", racing_open)
    atomic_write_bytes(folder / "a.png", b"png")
    assert (folder / "a.png").read_bytes() == b"png"


def test_missing_folder_that_cannot_be_made_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "file" / "sub" / "x", b"")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_handle_that_cannot_be_opened_leaks_no_descriptor_or_file(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError), atomic_open(tmp_path / "x", "not a mode"):
        pass  # pragma: no cover - never entered
    assert len(os.listdir("/proc/self/fd")) == before
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("name", ["n" * 250 + ".png", "é" * 125 + ".jpg"])
def test_names_near_the_255_byte_limit_can_be_written(tmp_path: Path, name: str) -> None:
    # The temporary name adds 14 bytes: it is cut to fit, the output keeps its name.
    atomic_write_bytes(tmp_path / name, b"data")
    atomic_write_text(tmp_path / "sub" / name, "text")
    assert (tmp_path / name).read_bytes() == b"data"
    assert (tmp_path / "sub" / name).read_text(encoding="utf-8") == "text"
    assert _listing(tmp_path) == sorted([name, "sub"])
