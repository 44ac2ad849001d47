"""Write a folder or a file whole or not at all: built under a hidden sibling, then renamed into place.

    replace_folder(target, fill)          # fill(staging) writes the new contents; target is swapped in whole
    write_file(path, write)               # write(handle) writes the bytes; path appears whole; returns its size
    clean_leftovers(parent, label)        # the temporaries of dead processes beside parent/label

- Temporaries are hidden siblings `.LABEL.KIND.PID@HOST.RAND` (KIND one of KINDS), so a later call can tell a
  dead process's leftovers from a live one's. The staging folder is made by mkdir and the temporary file by open:
  what appears has the modes of anything the user writes (0o777 / 0o666 minus the umask), never 0700 / 0600.
- replace_folder: clean_leftovers for the label, fill(staging), then the current target (if any) is moved aside
  (`.LABEL.old...`), staging renamed into place and the old one removed. When another writer puts its folder at
  target in between, that one is moved aside too and the rename tried again.
- An error or Ctrl-C before the rename leaves target as it was and removes the temporary; a kill leaves it for
  clean_leftovers. An OSError becomes one OutputError naming target (error(target, exc) chooses the words; the
  default names the cause and a fix); an OutputError of a nested atomic write inside fill is worded anew for
  the outer target. Other NlpPipelineErrors pass unchanged.
- clean_leftovers(parent, label=None): removes the entries of this host whose process is gone; an `old` folder
  whose target is missing (a kill between the two renames) is renamed back instead. Other hosts' entries and
  live processes' are left alone.
What may be replaced (refusing a folder of the user's) is the caller's check, made before calling.
Limits: atomic against a killed process, not against power loss (nothing is fsynced; a caller that needs it
fsyncs inside fill); between the two renames (microseconds) target does not exist; two writers of one target
both finish and the last rename wins; the liveness check is POSIX only (elsewhere no leftover is removed).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import IO, Callable

from nlp_pipeline.core.errors import NlpPipelineError, OutputError

KINDS = ("staging", "old", "probe", "live")
TEMPORARY = re.compile(r"\.(?P<label>.+)\.(?P<kind>" + "|".join(KINDS) + r")\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[A-Za-z0-9_]+")
HINTS = {
    errno.EACCES: "fix its permissions or choose another path",
    errno.EPERM: "fix its permissions or choose another path",
    errno.EROFS: "choose a path on a writable disk",
    errno.ENOSPC: "free some space or choose another path",
    errno.EDQUOT: "free some space or choose another path",
    errno.EFBIG: "free some space or choose another path",
    errno.ENOTDIR: "a file is in the way; choose another path",
    errno.EEXIST: "a file is in the way; choose another path",
}

ErrorFactory = Callable[[Path, OSError], OutputError]


def host_tag() -> str:
    """This machine's name as it appears in temporary names (letters, digits and '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:40] or "host"


def temporary_name(label: str, kind: str) -> str:
    """`.LABEL.KIND.PID@HOST.RAND`: a hidden name clean_leftovers recognises once this process is gone."""
    return f".{label}.{kind}.{os.getpid()}@{host_tag()}.{secrets.token_hex(4)}"


def reason(exc: OSError) -> str:
    """The cause of an OSError with the path it concerns: 'No space left on device (/x/y)'."""
    text = exc.strerror or str(exc)
    return f"{text} ({exc.filename})" if exc.filename else text


def default_error(target: Path, exc: OSError) -> OutputError:
    return OutputError(f"could not write {target}: {reason(exc)}; {HINTS.get(exc.errno, 'choose another path')} "
                       f"(the previous {target.name}, if any, is unchanged)")


def replace_folder(target: str | Path, fill: Callable[[Path], None], error: ErrorFactory = default_error) -> Path:
    """Build the new folder with fill(staging) beside target and swap it into place (see the module notes);
    returns target."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(target.parent, target.name)
        staging = _make_folder(target.parent, target.name)
    except OSError as exc:
        raise _worded(target, exc, error) from None
    try:
        fill(staging)
        swap(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _worded(target, exc, error) from None
        raise
    return target


def write_file(path: str | Path, write: Callable[[IO[bytes]], None], error: ErrorFactory = default_error) -> int:
    """Write a file with write(handle) under a hidden sibling, then rename it into place; returns its size."""
    path = Path(path)
    temporary = path.parent / temporary_name(path.name, "staging")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "xb") as handle:
            write(handle)
        size = temporary.stat().st_size
        os.replace(temporary, path)
        return size
    except BaseException as exc:
        try:
            temporary.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _worded(path, exc, error) from None
        raise


def _worded(target: Path, exc: OSError, error: ErrorFactory) -> BaseException:
    """The OutputError for exc at target: a nested atomic write's error re-worded for target; other
    NlpPipelineErrors (a CacheError, ...) as they are."""
    cause = getattr(exc, "os_error", None) if isinstance(exc, NlpPipelineError) else exc
    if cause is None:
        return exc
    worded = error(target, cause)
    worded.os_error = cause  # type: ignore[attr-defined]
    return worded


def swap(staging: Path, target: Path) -> None:
    """Move target aside, rename staging to target, remove the old folder. When another writer puts its folder at
    target in between, that one is moved aside too and the rename tried again."""
    for _ in range(10):
        aside = None
        if os.path.lexists(target):
            aside = target.parent / temporary_name(target.name, "old")
            try:
                os.rename(target, aside)
            except FileNotFoundError:  # another writer moved it first
                aside = None
        try:
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # another writer's folder took the place meanwhile
                if aside is not None:
                    shutil.rmtree(aside, ignore_errors=True)
                continue
            if aside is not None:
                rename_quietly(aside, target)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, "other writers kept replacing it", str(target))


def _make_folder(parent: Path, label: str) -> Path:
    while True:
        folder = parent / temporary_name(label, "staging")
        try:
            folder.mkdir()  # mode 0o777 & ~umask, like any folder the user creates
            return folder
        except FileExistsError:
            continue


def clean_leftovers(parent: Path, label: str | None = None) -> list[Path]:
    """Remove (or, for a moved-aside folder whose place is empty, restore) the temporaries of dead processes of
    this host in parent, of `label` only when given; returns what was removed or restored."""
    done: list[Path] = []
    host = host_tag()
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return done
    for entry in entries:
        match = TEMPORARY.fullmatch(entry.name)
        if not match or (label is not None and match["label"] != label):
            continue
        if match["host"] != host or alive(int(match["pid"])):
            continue
        done.append(entry)
        if match["kind"] == "old" and not os.path.lexists(entry.parent / match["label"]):
            rename_quietly(entry, entry.parent / match["label"])
        else:
            remove(entry)
    return done


def alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (True when that cannot be told)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def remove(path: Path) -> None:
    """Delete a folder tree, a file or a link; what cannot be deleted stays."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def rename_quietly(source: Path, destination: Path) -> None:
    try:
        os.rename(source, destination)
    except OSError:
        pass
