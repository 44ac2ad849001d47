"""A disk that fills during a save, a cache or runs folder that cannot be written, a path where a file is in the way.

Each is one `error: ...` line naming the path, a non-zero exit code, and no traceback; nothing half-written is
left that a later run trusts: once the fault is gone, the next run completes with the results of a clean run,
`cache verify` is clean and `cache gc` finds no leftover.

Disk full is simulated twice: a file size limit on the process (RLIMIT_FSIZE: a write past it fails with EFBIG,
"File too large"), and a small tmpfs (ENOSPC) when this machine lets the tests mount one (root). An unwritable
folder is a read-only bind mount (which binds root too) or, without mounting, a process of another user.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import faultkit


def _no_stage_ran(done: faultkit.Done) -> bool:
    return not any(" running " in f" {line} " for line in done.stderr.splitlines())


def _recovers(ref, cache: Path, runs: Path, workdir: Path) -> None:
    """Once the fault is gone: the run completes like a clean one, verify is clean, gc leaves nothing."""
    again = faultkit.cli(faultkit.run_args(ref.corpus, runs), cache, cwd=workdir)
    assert again.returncode == 0, again.describe()
    assert faultkit.matches_reference(ref, runs / "tiny", "A") == []
    assert faultkit.hidden_entries(runs) == []
    assert faultkit.verified_clean(cache) == []
    gc = faultkit.cli(["cache", "gc", "--runs-dir", str(runs)], cache, cwd=workdir)
    assert gc.returncode == 0, gc.describe()
    assert faultkit.cache_leftovers(cache) == []


# The run folder's bundle does not fit: checked in two parts, the folder and the rerun, and the one-line message.
RUN_FOLDER_PARTS = ["state", "one_line"]


def _run_folder_fault(done: faultkit.Done, part: str, runs: Path) -> bool:
    """The one_line part: the error line names the run folder and the cause (returns False: nothing more to
    check). The state part: the run failed, nothing else is asked of its output (returns True)."""
    if part == "one_line":
        line = faultkit.error_line(done)
        assert str(runs / "tiny") in line and any(s in line for s in ("File too large", "No space left", "free some space")), line
        return False
    assert done.returncode not in (0, -9), done.describe()
    return True


# --- disk full during a save -------------------------------------------------------------------------------------

def test_file_size_limit_during_a_cache_save(reference, workdir):
    """The language model's .npy (the largest cache file) cannot be written: the save stops part-way. (The
    cache holds what comes before the language model, so the test spends its time where the fault is.)"""
    cache = faultkit.copy_cache(reference.cache, workdir / "cache", keep=("corpus", "tokenization", "numericalization",
                                                                         "lsa"))
    runs = workdir / "runs"
    largest = max(size for path, size in reference.sizes.items() if path.startswith("cache/"))
    done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir,
                        preexec_fn=faultkit.set_file_size_limit(largest - 1))
    line = faultkit.error_line(done)
    assert str(cache) in line and ("File too large" in line or "free space" in line), line
    saved = faultkit.artifact_keys(cache)
    assert "finetune_lm" not in saved and "classifier" not in saved and not (runs / "tiny").exists()
    assert [p for p in faultkit.cache_leftovers(cache) if ".tmp-" in p or ".trash-" in p] == []  # no half save
    assert faultkit.verified_clean(cache) == []
    _recovers(reference, cache, runs, workdir)


@pytest.mark.parametrize("part", RUN_FOLDER_PARTS)
def test_file_size_limit_while_writing_the_run_folder(reference, workdir, part):
    """Every artifact is cached; the bundle or a plot does not fit: the previous run folder (config B) stays
    exactly as it was and the rerun writes A's model, not B's."""
    cache, runs = faultkit.fresh_copy(reference, workdir, with_runs=False)
    shutil.copytree(reference.run_dir_b, runs / "tiny")
    before = faultkit.snapshot(runs / "tiny")
    largest_cache = max(size for path, size in reference.sizes.items() if path.startswith("cache/"))
    done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir,
                        preexec_fn=faultkit.set_file_size_limit(largest_cache + 1))
    if not _run_folder_fault(done, part, runs):
        return
    assert faultkit.snapshot(runs / "tiny") == before
    assert faultkit.hidden_entries(runs) == []
    _recovers(reference, cache, runs, workdir)


@pytest.fixture
def tmpfs(workdir):
    """mount(size) -> a fresh tmpfs of that many bytes under workdir; remount(size) resizes it. Skips where this
    machine does not let the tests mount (not root, no CAP_SYS_ADMIN)."""
    mounted = []

    def mount(size: int, name: str = "disk") -> Path:
        point = workdir / name
        point.mkdir()
        if not faultkit.mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)):
            pytest.skip("cannot mount a tmpfs here (needs root); the RLIMIT_FSIZE tests cover a full disk")
        mounted.append(point)
        return point

    def remount(point: Path, size: int) -> None:
        assert faultkit.mount("-o", f"remount,size={size}", str(point))

    yield mount, remount
    for point in mounted:
        faultkit.umount(point)


@pytest.mark.slow
def test_full_disk_under_the_cache(reference, workdir, tmpfs):
    """The cache lies on a disk with room for about half of the run's artifacts."""
    mount, remount = tmpfs
    cache_bytes = sum(size for path, size in reference.sizes.items() if path.startswith("cache/"))
    disk = mount(max(64 << 10, cache_bytes // 2))
    cache, runs = disk / "cache", workdir / "runs"
    done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir)
    line = faultkit.error_line(done)
    assert str(cache) in line and ("No space left on device" in line or "free space" in line), line
    assert not (runs / "tiny").exists()
    assert [p for p in faultkit.cache_leftovers(cache) if ".tmp-" in p or ".secret-" in p] == []
    assert faultkit.verified_clean(cache) == []
    remount(disk, 64 << 20)
    _recovers(reference, cache, runs, workdir)


def test_disk_full_before_the_first_save(reference, workdir, tmpfs):
    """Not even the cache's secret fits (finding 6: a traceback, and a .secret-PID-* left behind)."""
    mount, remount = tmpfs
    disk = mount(4096)
    cache = disk / "cache"
    cache.mkdir()
    _fill(disk)
    done = faultkit.cli(faultkit.run_args(reference.corpus, workdir / "runs", "--until", "corpus"), cache, cwd=workdir)
    line = faultkit.error_line(done)
    assert str(cache) in line and ("No space left on device" in line or "free space" in line), line
    assert [p.name for p in cache.rglob(".secret*")] == [] and faultkit.artifact_keys(cache) == {}
    (disk / "filler").unlink()
    remount(disk, 64 << 20)
    again = faultkit.cli(faultkit.run_args(reference.corpus, workdir / "runs", "--until", "corpus"), cache, cwd=workdir)
    assert again.returncode == 0, again.describe()
    assert faultkit.verified_clean(cache) == []


def _fill(disk: Path) -> None:
    """Take every free byte of a tmpfs."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("part", RUN_FOLDER_PARTS)
def test_full_disk_under_the_runs_folder(reference, workdir, tmpfs, part):
    """Every artifact is cached; the runs folder's disk has room for little more than one plot."""
    mount, remount = tmpfs
    cache, _ = faultkit.fresh_copy(reference, workdir, with_runs=False)
    disk = mount(64 << 10, "runsdisk")
    runs = disk / "runs"
    done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir)
    if not _run_folder_fault(done, part, runs):
        return
    assert not (runs / "tiny").exists() and faultkit.hidden_entries(runs) == []
    remount(disk, 64 << 20)
    _recovers(reference, cache, runs, workdir)


# --- folders that cannot be written -----------------------------------------------------------------------------

def _read_only(path: Path):
    """A read-only bind mount of path, or a skip where mounting is not allowed (then _as_other_user covers it)."""
    ro = faultkit.ReadOnly(path).__enter__()
    if not ro.mounted:
        pytest.skip("cannot bind-mount read-only here (needs root)")
    return ro


def test_read_only_cache(reference, workdir):
    cache, runs = workdir / "cache", workdir / "runs"
    cache.mkdir()
    ro = _read_only(cache)
    try:
        done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir)
    finally:
        ro.__exit__()
    line = faultkit.error_line(done)
    assert str(cache) in line and "not writable" in line, line
    assert _no_stage_ran(done) and not runs.exists()
    assert list(cache.iterdir()) == []  # nothing was written, so nothing half-written


@pytest.mark.parametrize("how", ["mode_0555", "owned_by_another_user"])
@pytest.mark.parametrize("target", ["cache", "runs"])
def test_folder_this_user_cannot_write(reference, workdir, target, how):
    """The cache or the runs folder is not writable by this user: read-only (mode 0555), or another user's
    (uid 65534, mode 0755). As root the process runs without the capabilities that bypass permission bits."""
    prefix = faultkit.unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: permission bits cannot bind this process")
    if how == "owned_by_another_user" and os.getuid() != 0:
        pytest.skip("only root can give a folder to another user")
    cache, runs = workdir / "cache", workdir / "runs"
    blocked = cache if target == "cache" else runs
    blocked.mkdir()
    if how == "mode_0555":
        os.chmod(blocked, 0o555)
    else:
        os.chown(blocked, faultkit.NOBODY, faultkit.NOBODY)
    try:
        done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir, prefix=prefix)
    finally:
        os.chmod(blocked, 0o755)
        os.chown(blocked, os.getuid(), os.getgid())
    line = faultkit.error_line(done)
    assert str(blocked) in line, line
    assert _no_stage_ran(done) and faultkit.artifact_keys(cache) == {}
    assert list(blocked.iterdir()) == []


@pytest.mark.parametrize("where", ["is_a_file", "under_a_file"])
def test_cache_path_blocked_by_a_file(reference, workdir, where):
    blocker = workdir / "blocker"
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    cache = blocker if where == "is_a_file" else blocker / "cache"
    runs = workdir / "runs"
    done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir)
    line = faultkit.usage_error_line(done)
    assert str(cache) in line or str(blocker) in line, line
    assert _no_stage_ran(done) and not runs.exists()
    assert blocker.read_text(encoding="utf-8") == "a file where a folder should be"
    for command in (["cache", "ls"], ["cache", "verify"], ["cache", "gc", "--runs-dir", str(runs), "--allow-no-runs"]):
        other = faultkit.cli(command, cache, cwd=workdir)
        faultkit.no_traceback(other)
        if other.returncode != 0:
            faultkit.usage_error_line(other)
        assert blocker.read_text(encoding="utf-8") == "a file where a folder should be"


def test_stage_folder_that_is_a_file(reference, workdir):
    """cache/lsa is a file: refused before any stage computes (finding 6 said: after the tokenizer ran)."""
    cache, runs = workdir / "cache", workdir / "runs"
    cache.mkdir(mode=0o755)
    (cache / "lsa").write_text("in the way", encoding="utf-8")
    done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir)
    line = faultkit.error_line(done)
    assert str(cache / "lsa") in line, line
    assert _no_stage_ran(done) and faultkit.artifact_keys(cache) == {}
    assert (cache / "lsa").read_text(encoding="utf-8") == "in the way"


def test_read_only_runs_folder(reference, workdir):
    """Checked before any stage runs (finding 6: only after the whole pipeline had run)."""
    cache, runs = workdir / "cache", workdir / "runs"
    shutil.copytree(reference.run_dir_b, runs / "tiny")
    before = faultkit.snapshot(runs)
    ro = _read_only(runs)
    try:
        done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir)
    finally:
        ro.__exit__()
    line = faultkit.error_line(done)
    assert str(runs) in line, line
    assert _no_stage_ran(done) and faultkit.artifact_keys(cache) == {}
    assert faultkit.snapshot(runs) == before


@pytest.mark.parametrize("where", ["is_a_file", "under_a_file"])
def test_runs_folder_blocked_by_a_file(reference, workdir, where):
    blocker = workdir / "blocker"
    blocker.write_text("a file where a folder should be", encoding="utf-8")
    runs = blocker if where == "is_a_file" else blocker / "runs"
    cache = workdir / "cache"
    done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir)
    line = faultkit.usage_error_line(done)
    assert str(runs) in line or str(blocker) in line, line
    assert _no_stage_ran(done) and faultkit.artifact_keys(cache) == {}
    assert blocker.read_text(encoding="utf-8") == "a file where a folder should be"
