"""Atomic output: whole files or nothing, normal permissions, no stray temp files (a SIGKILL's included)."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gipc.errors import ImageError, OutputExistsError
from gipc.files import (
    SETTLE_S,
    atomic_path,
    check_output_folder,
    check_readable,
    check_writable,
    remove_leftovers,
    replace_dir,
    sha256_file,
    staging_dir,
    write_text,
)


def test_failure_inside_the_block_leaves_neither_target_nor_temp(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_survives_a_failed_rewrite(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "good")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert target.read_text() == "good" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode  # open()'s 0o666 less the umask


def test_write_text_that_fails_midway_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_text(target, "good")
    with pytest.raises(UnicodeEncodeError):
        write_text(target, "\udcff")  # a lone surrogate: UTF-8 cannot encode it, after the file was opened
    assert target.read_text() == "good" and list(tmp_path.iterdir()) == [target]


def test_a_write_makes_the_missing_folders(tmp_path: Path) -> None:
    write_text(tmp_path / "new" / "deep" / "a.txt", "x")
    assert (tmp_path / "new" / "deep" / "a.txt").read_text() == "x"


def test_only_this_outputs_leftovers_go_even_with_glob_characters_in_its_name(tmp_path: Path) -> None:
    old = time.time() - SETTLE_S - 1
    names = [".a[1].png.x1.tmp.png", ".a1.png.x2.tmp.png", ".a[1].png.bak"]  # ours; another output's; a user's file
    for name in names:
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (old, old))
    write_text(tmp_path / "a[1].png", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a[1].png", *names[1:]])


def test_check_writable_protects_inputs_and_existing_outputs(tmp_path):
    src = tmp_path / "a.png"
    src.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(src)
    (tmp_path / "sub").mkdir()
    for alias in (tmp_path / "sub" / ".." / "a.png", tmp_path / "link.png"):  # the same file by another name
        with pytest.raises(OutputExistsError, match="one of the inputs"):
            check_writable(alias, overwrite=True, protected=(src,))
    with pytest.raises(OutputExistsError, match="already exists"):
        check_writable(src)
    check_writable(src, overwrite=True)



def test_output_folder_new_or_empty_and_apart_from_the_inputs(tmp_path):
    inputs = [tmp_path / "data" / "pairs"]
    inputs[0].mkdir(parents=True)
    check_output_folder(tmp_path / "new", inputs=inputs)
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", inputs=inputs)
    check_output_folder(inputs[0] / "fused", inputs=inputs)  # a new folder inside an input folder is fine: nothing is replaced
    (inputs[0] / "A").mkdir()
    (inputs[0] / "A" / "x.png").write_bytes(b"")
    for out in (inputs[0] / "A", inputs[0] / "A" / "sub"):  # but not one of its folders of files: they would be read as input
        with pytest.raises(OutputExistsError, match=r"is a folder of the input .*pairs; choose a folder outside the inputs$"):
            check_output_folder(out, overwrite=True, inputs=inputs)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="output folder .*file is a file; choose a folder"):
        check_output_folder(tmp_path / "file")
    for out in (inputs[0], tmp_path / "data", tmp_path / "data" / ".." / "data"):
        with pytest.raises(OutputExistsError, match=r"holds the input .*pairs; choose a folder outside the inputs"):
            check_output_folder(out, overwrite=True, inputs=inputs)
    (tmp_path / "empty" / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="output folder .*empty is not empty; choose a new folder or pass --overwrite"):
        check_output_folder(tmp_path / "empty")
    check_output_folder(tmp_path / "empty", overwrite=True)


def test_sha256_of_known_strings(tmp_path: Path) -> None:
    # FIPS 180-2 test vectors: "abc" and one million "a".
    (tmp_path / "abc").write_bytes(b"abc")
    assert sha256_file(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    (tmp_path / "a").write_bytes(b"a" * 1_000_000)
    assert sha256_file(tmp_path / "a") == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"


def test_sha256_of_a_file_of_several_blocks_is_that_of_its_whole_content(tmp_path: Path) -> None:
    content = os.urandom(3 * (1 << 20) + 7)
    (tmp_path / "big").write_bytes(content)
    assert sha256_file(tmp_path / "big") == hashlib.sha256(content).hexdigest()


def test_replace_dir_swaps_a_finished_folder_in_and_restores_the_old_one_if_that_fails(tmp_path, monkeypatch):
    out, staging = tmp_path / "report", tmp_path / ".staging"
    for folder, text in ((out, "old"), (staging, "new")):
        folder.mkdir()
        (folder / "table.md").write_text(text)
    replace_dir(staging, out)
    assert (out / "table.md").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["report"]

    staging.mkdir()
    (staging / "table.md").write_text("newer")
    real_replace = os.replace

    def failing(src, dst):
        if Path(src) == staging:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        replace_dir(staging, out)
    assert (out / "table.md").read_text() == "new"  # the old folder is back, and nothing is left aside
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging", "report"]

    def both_fail(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", lambda src, dst: both_fail(src, dst) if Path(src) != out else real_replace(src, dst))
    with pytest.raises(OSError, match="disk gone"):
        replace_dir(staging, out)
    (aside,) = tmp_path.glob(".report.old-*")  # the old folder could not go back: it is kept, not deleted
    assert (aside / "report" / "table.md").read_text() == "new"


_HOLD = (  # enters the block in a child process, says where, then waits to be killed
    "import sys, time\n"
    "from gipc.files import atomic_path, staging_dir\n"
    "with {cm}(sys.argv[1]) as path:\n"
    "    (path / 'half.png' if path.is_dir() else path).write_text('half')\n"
    "    print(path, flush=True)\n"
    "    time.sleep(60)\n"
)


def _holder(cm: str, target: Path) -> tuple[subprocess.Popen, Path]:
    child = subprocess.Popen([sys.executable, "-c", _HOLD.format(cm=cm), str(target)], stdout=subprocess.PIPE, text=True)
    return child, Path(child.stdout.readline().strip())


@pytest.mark.parametrize("cm", ["staging_dir", "atomic_path"])
def test_what_a_sigkill_leaves_goes_with_the_next_write_and_a_live_writer_keeps_its_own(tmp_path, monkeypatch, cm):
    monkeypatch.setattr("gipc.files.SETTLE_S", 0.0)
    target = tmp_path / "out.png"
    dead, left = _holder(cm, target)
    dead.kill()
    dead.wait()
    live, kept = _holder(cm, target)
    try:
        assert left.exists() and left.name.startswith(".out.png.")  # the dead one's, not yet removed
        write_text(tmp_path / "other.png", "x")  # another output's write leaves it
        assert left.exists()
        with (staging_dir if cm == "staging_dir" else atomic_path)(target):
            assert not left.exists() and kept.exists()
    finally:
        live.kill()
        live.wait()
    written = ["out.png"] if cm == "atomic_path" else []  # the staging block moved nothing into place
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["other.png", kept.name, *written])


def test_a_leftover_seconds_old_is_left_for_its_writer_to_lock(tmp_path):
    (tmp_path / ".out.staging-abc").mkdir()
    assert remove_leftovers(tmp_path, ".out.staging-") == []
    old = time.time() - SETTLE_S - 1
    os.utime(tmp_path / ".out.staging-abc", (old, old))
    assert remove_leftovers(tmp_path, ".out.staging-") == [tmp_path / ".out.staging-abc"]


def test_an_input_that_cannot_be_read_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    check_readable(image)
    for path, message in ((tmp_path / "gone.png", "gone.png: no such file"), (tmp_path, f"{tmp_path.name}: is a folder, not an image")):
        with pytest.raises(ImageError, match=f"{message}$"):
            check_readable(path)
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.R_OK)  # root reads every file: the refusal by hand
    with pytest.raises(ImageError, match="a.png: permission denied$"):
        check_readable(image)
