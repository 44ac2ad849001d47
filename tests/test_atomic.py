"""core/atomic.py: a folder or a file appears whole or not at all, with the user's umask, and leaves nothing behind."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nlp_pipeline.core import atomic
from nlp_pipeline.core.errors import ConfigError, OutputError


def _fill_with(files: dict[str, str]):
    def fill(staging: Path) -> None:
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)
    return fill


def _contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_new_folder_appears_whole(tmp_path):
    target = tmp_path / "deep" / "out"
    assert atomic.replace_folder(target, _fill_with({"a.txt": "1", "sub/b.txt": "2"})) == target
    assert _contents(target) == {"a.txt": "1", "sub/b.txt": "2"}
    assert _hidden(target.parent) == []


def test_an_existing_folder_is_replaced_whole(tmp_path):
    target = tmp_path / "out"
    atomic.replace_folder(target, _fill_with({"old.txt": "old", "kept-name.txt": "old"}))
    atomic.replace_folder(target, _fill_with({"kept-name.txt": "new"}))
    assert _contents(target) == {"kept-name.txt": "new"}                # nothing of the old folder is mixed in
    assert _hidden(tmp_path) == []                                       # the old folder moved aside was removed


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device", "x"), ConfigError("bad value"),
                                     KeyboardInterrupt()])
def test_a_failure_mid_fill_leaves_the_old_folder_and_no_staging(tmp_path, failure):
    target = tmp_path / "out"
    atomic.replace_folder(target, _fill_with({"a.txt": "old"}))

    def fill(staging: Path) -> None:
        (staging / "a.txt").write_text("half")
        raise failure

    with pytest.raises((OutputError, ConfigError, KeyboardInterrupt)) as raised:
        atomic.replace_folder(target, fill)
    assert _contents(target) == {"a.txt": "old"} and _hidden(tmp_path) == []
    if isinstance(failure, OSError):
        message = str(raised.value)
        assert raised.type is OutputError and str(target) in message and "No space left" in message
        assert "\n" not in message and "free some space" in message
    else:
        assert raised.value is failure


def test_a_nested_write_error_names_the_outer_folder(tmp_path):
    target = tmp_path / "run"

    def fill(staging: Path) -> None:
        def write(handle):
            raise OSError(errno.EFBIG, "File too large", str(staging / "model" / "w"))
        atomic.replace_folder(staging / "model", lambda inner: atomic.write_file(inner / "w", write))

    with pytest.raises(OutputError) as raised:
        atomic.replace_folder(target, fill, error=lambda t, exc: OutputError(f"run folder {t}: {exc.strerror}"))
    assert str(raised.value) == f"run folder {target}: File too large"
    assert not target.exists() and _hidden(tmp_path) == []


def test_modes_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.replace_folder(tmp_path / "out", _fill_with({"a.txt": "1"}))
        atomic.write_file(tmp_path / "single.bin", lambda handle: handle.write(b"xyz"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750     # not mkdtemp's 0700
    assert stat.S_IMODE((tmp_path / "out" / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "single.bin").stat().st_mode) == 0o640  # not mkstemp's 0600


def test_a_file_appears_whole_or_the_old_one_stays(tmp_path):
    path = tmp_path / "f.txt"
    assert atomic.write_file(path, lambda handle: handle.write(b"first")) == 5
    assert atomic.write_file(path, lambda handle: handle.write(b"second!")) == 7 and path.read_bytes() == b"second!"

    def failing(handle):
        handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"could not write .*f\.txt: No space left on device"):
        atomic.write_file(path, failing)
    assert path.read_bytes() == b"second!" and _hidden(tmp_path) == []


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_leftovers_of_dead_processes_are_cleaned_and_a_lost_folder_restored(tmp_path):
    host, dead, alive = atomic.host_tag(), _dead_pid(), os.getpid()
    stale = tmp_path / f".out.staging.{dead}@{host}.ab12"
    live = tmp_path / f".out.staging.{alive}@{host}.cd34"
    foreign = tmp_path / f".out.staging.{dead}@another-host.ef56"
    other_label = tmp_path / f".other.staging.{dead}@{host}.gh78"
    lost = tmp_path / f".lost.old.{dead}@{host}.ij90"                     # killed between the two renames
    for folder in (stale, live, foreign, other_label, lost):
        folder.mkdir()
        (folder / "f").write_text("x")
    atomic.replace_folder(tmp_path / "out", _fill_with({"a.txt": "1"}))
    assert not stale.exists() and live.exists() and foreign.exists() and other_label.exists()
    assert sorted(atomic.clean_leftovers(tmp_path)) == sorted([other_label, lost])
    assert not other_label.exists() and not lost.exists() and (tmp_path / "lost" / "f").read_text() == "x"
