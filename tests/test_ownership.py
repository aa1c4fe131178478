"""What segkit may delete or replace: the folder lock, claims, foreign files and links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_convert import add_sample, tree_hashes

import segkit
from segkit._io import is_temp_name, remove_temp_files
from segkit.errors import FolderBusyError, OptionError, SegkitNote
from segkit.lock import LOCK_NAME, folder_lock
from segkit.ownership import claim_path, output_folder, read_claim, write_claim


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segkit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


# -- lock and claims (units) -----------------------------------------------------------


def test_the_lock_refuses_a_second_holder_naming_it_and_is_gone_afterwards(
    tmp_path: Path,
) -> None:
    with folder_lock(tmp_path):
        details = json.loads((tmp_path / LOCK_NAME).read_text())
        assert details["pid"] == os.getpid()
        with pytest.raises(FolderBusyError, match=f"pid {os.getpid()}"), folder_lock(tmp_path):
            pass
    assert not (tmp_path / LOCK_NAME).exists()
    with folder_lock(tmp_path):  # free again
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_note(tmp_path: Path) -> None:
    pid = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "command": "segkit weights"}))
    with (
        pytest.warns(SegkitNote, match=f"took over the lock left by pid {pid}"),
        folder_lock(tmp_path),
    ):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_that_outlives_its_killed_parent_does_not_hold_the_lock(
    tmp_path: Path,
) -> None:
    # A DataLoader or pool worker is forked while the stage holds the lock; when the
    # stage is SIGKILLed the worker may live on for seconds. The rerun must get the lock.
    script = (
        "import os, sys, time\n"
        "from segkit.lock import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n"
        "    if os.fork() == 0:\n"
        "        os.write(1, b'child\\n'); time.sleep(30); os._exit(0)\n"
        "    os.write(1, b'locked\\n'); time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Both lines: a child that has printed has run its at-fork hooks (until then it
        # still holds its inherited copy of the lock, for microseconds in real life).
        assert holder.stdout is not None
        assert {holder.stdout.readline().strip() for _ in range(2)} == {"locked", "child"}
        with pytest.raises(FolderBusyError), folder_lock(tmp_path):
            pass
        holder.kill()
        holder.wait(30)
        with pytest.warns(SegkitNote, match="took over the lock"), folder_lock(tmp_path):
            pass
    finally:
        os.killpg(holder.pid, 9)  # the sleeping child too


def test_output_folder_refuses_linked_sub_folders_and_cleans_only_its_temp_files(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / "ImageSets").mkdir(parents=True)
    (out / "ImageSets" / "Segmentation").symlink_to(elsewhere)
    with (
        pytest.raises(OptionError, match="is a symbolic link"),
        output_folder(out, subfolders=("ImageSets/Segmentation",)),
    ):
        pass
    (out / "ImageSets" / "Segmentation").unlink()
    ours, theirs = out / ".train.txt.0a1b2c3d.tmp", out / ".draft.tmp"
    for path in (ours, theirs):
        path.write_text("x")
    with output_folder(out, subfolders=("ImageSets/Segmentation",)) as folder:
        assert folder == out and (out / LOCK_NAME).exists()
    assert not ours.exists() and theirs.exists()
    assert [is_temp_name(n) for n in (".a.npy.0123abcd.tmp", ".a.tmp", "a.0123abcd.tmp")] == [
        True,
        False,
        False,
    ]
    assert remove_temp_files(tmp_path / "missing") == 0


def test_claims_round_trip_and_belong_to_one_stage(tmp_path: Path) -> None:
    write_claim(tmp_path, "convert", pending_ids=["a"])
    assert read_claim(tmp_path, "convert") == {"stage": "convert", "pending_ids": ["a"]}
    assert read_claim(tmp_path, "split") is None
    claim_path(tmp_path, "split").write_text('{"stage": "convert"}')  # not split's
    assert read_claim(tmp_path, "split") is None


# -- --force next to files segkit did not write (real CLI) -----------------------------


def test_convert_force_keeps_foreign_files_and_refuses_linked_folders(tmp_path: Path) -> None:
    source = tmp_path / "in"
    for name in ("a", "b", "c"):
        add_sample(source, name)
    out = tmp_path / "out"
    planted = {
        "notes.txt": b"mine",
        "JPEGImages/a.png": b"my own a",  # same id, another suffix
        "JPEGImages/b.jpg": b"my own b",  # exactly where b's image would go
        "SegmentationClass/other.png": b"unrelated",
    }
    for relative, data in planted.items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_bytes(data)
    result = _cli("convert", source, "-o", out, "--workers", "1", "--force")
    assert result.returncode == 1  # b cannot be written without replacing the user's file
    assert "Traceback" not in result.stderr
    for relative, data in planted.items():
        assert (out / relative).read_bytes() == data
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "JPEGImages/a.png" in notes[0] and "JPEGImages/b.jpg" in notes[0]
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "JPEGImages/b.jpg exists and was not written by segkit" in error
    samples = json.loads((out / "segkit.json").read_text())["samples"]
    assert [s["id"] for s in samples] == ["a", "c"]
    assert not claim_path(out, "convert").exists()

    # An output sub-folder that links to the input: refused before anything is written.
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "JPEGImages").symlink_to(source)
    before = tree_hashes(source)
    result = _cli("convert", source, "-o", linked, "--workers", "1", "--force")
    assert result.returncode == 2  # an output path of the wrong kind: a usage error
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "JPEGImages: is a symbolic link" in line
    assert tree_hashes(source) == before
    assert sorted(p.name for p in linked.iterdir()) == ["JPEGImages"]


def test_weights_and_split_force_keep_foreign_files_and_refuse_linked_folders(
    tmp_path: Path,
) -> None:
    source, root = tmp_path / "in", tmp_path / "ds"
    for name in ("s_0", "s_1", "s_2", "s_3"):
        add_sample(source, name)
    segkit.convert(source, root, workers=1)
    segkit.split_dataset(root, group_by=r"^(s_\d)$", val=0.25, test=0.25, workers=1)
    segkit.compute_weights(root, segkit.WeightsOptions(border=True, workers=1))
    user_map = root / "SegmentationWeights" / "my_old_unet_maps_s_9999.npy"
    user_fold = root / "ImageSets" / "Segmentation" / "fold7_val.txt"
    user_map.write_bytes(b"mine")
    user_fold.write_text("s_0\n")

    result = _cli("weights", root, "--border", "--force", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert user_map.read_bytes() == b"mine"
    assert "my_old_unet_maps_s_9999.npy" in result.stderr and "note:" in result.stderr
    result = _cli("split", root, "--group-by", r"^(s_\d)$", "--reshuffle", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert user_fold.read_text() == "s_0\n" and "fold7_val.txt" in result.stderr

    # A maps folder that links elsewhere is never written or cleaned through.
    elsewhere = tmp_path / "elsewhere"
    (root / "SegmentationWeights").rename(elsewhere)
    (root / "SegmentationWeights").symlink_to(elsewhere)
    before = tree_hashes(elsewhere)
    result = _cli("weights", root, "--border", "--force", "--workers", "1")
    assert result.returncode == 2 and "is a symbolic link" in result.stderr
    assert tree_hashes(elsewhere) == before
