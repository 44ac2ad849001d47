"""The artifact store: one folder per stage instance, `<root>/<stage>/<key>/{artifact.pkl, *.npy, meta.json}`.

- Saves are atomic: files go to a temporary sibling folder, meta.json is written last, then the folder is
  renamed into place. A folder without meta.json does not exist as far as the store is concerned.
- Large numpy arrays (and torch tensors) are written as `.npy` files beside a small pickle and come back
  memory-mapped (read-only), so token ids and vectors cost no copy to load.
- Pickle runs code when loaded, so nothing is unpickled unless meta.json carries a valid HMAC made with a
  secret private to this cache (`<root>/.secret`) and every file's sha256 matches meta.json. Each file is
  opened once: the bytes that were hashed are the bytes unpickled (a `.npy` is memory-mapped from the file
  descriptor it was hashed through), so a file swapped after the check is never the one loaded. A truncated,
  corrupted or planted artifact is reported as corrupt and recomputed, never loaded.
- The secret is trusted only as a regular file of 32 bytes, owned by this user, mode 0600, in a root folder
  owned by this user that neither group nor others can write; anything else is a one-line CacheError naming
  the path and the fix (a new secret invalidates every cached artifact: they are refused and recomputed).
  Folders and files are created without group or other write permission whatever the umask (0755 and 0644
  at most; the secret and the lock files 0600).
- `lock()` serialises the computation of one key across processes (flock on `.locks/<stage>-<key>.lock`, opened
  with O_NOFOLLOW and never truncated), so concurrent runs compute each artifact once; `on_wait` is called
  once when another process holds the lock.
- OS failures (disk full, a stage folder that is a file or not writable, a read-only cache) are one-line
  CacheErrors, and leave nothing that a later run trusts.
- `clean_temporaries()` and `clean_locks()` remove what killed processes left: save folders no live process
  holds (a save keeps an flock on its temporary folder), `.secret-*` / `.probe-*` files of dead processes,
  lock files nobody holds. `clean_checkpoints()` removes the resumable state of interrupted training.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import io
import json
import os
import pickle
import secrets
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from nlp_pipeline.core.errors import CacheError
from nlp_pipeline.core.hashing import canonical_json

ARTIFACT_FILE = "artifact.pkl"
META_FILE = "meta.json"
SECRET_FILE = ".secret"
SECRET_BYTES = 32
LOCK_DIR = ".locks"
NPY_MIN_BYTES = 1 << 16  # arrays at least this large are stored as .npy files beside the pickle
META_MAX_BYTES = 16 << 20  # a meta.json larger than this is not one the store wrote
DIR_MODE, FILE_MODE = 0o755, 0o644
STALE_SECONDS = 3600  # a `.secret-*` / `.probe-*` / unlocked `.tmp-*` this old is a leftover whatever its PID says
_CHUNK = 1 << 20


class CorruptArtifact(Exception):
    """An artifact folder failed its signature or checksum; the caller recomputes it."""


def default_cache_dir() -> Path:
    """NLP_PIPELINE_CACHE if set, else $XDG_CACHE_HOME/nlp-pipeline, else ~/.cache/nlp-pipeline."""
    env = os.environ.get("NLP_PIPELINE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nlp-pipeline"


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading without following a symlink and without blocking on a planted FIFO; OSError
    (ELOOP for a symlink) or CorruptArtifact if it is not a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CorruptArtifact(f"{path.name} is not a regular file")
    return os.fdopen(fd, "rb")


def _hash_handle(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    handle.seek(0)
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    """True if a process with this PID exists on this machine (a PID of another machine may look alive: the
    callers only use this to keep things, never to remove them)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _pid_in(name: str, index: int) -> int:
    """The PID field of a temporary's name (`.tmp-KEY-PID-HEX`: index 2; `.secret-PID-HEX`: index 1); -1 if none."""
    try:
        return int(name.split("-")[index])
    except (IndexError, ValueError):
        return -1


def _leftover(path: Path, pid: int) -> bool:
    """A temporary made by process `pid` that is gone (on this machine), or older than STALE_SECONDS."""
    try:
        old = time.time() - path.lstat().st_mtime > STALE_SECONDS
    except FileNotFoundError:
        return False
    return old or not _pid_alive(pid)


class _ArrayPickler(pickle.Pickler):
    """Pickles everything normally except large arrays and tensors, which it writes as .npy files."""

    def __init__(self, file: io.BytesIO, folder: Path):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.folder = folder
        self.count = 0

    def persistent_id(self, obj: Any) -> Any:
        kind = None
        if isinstance(obj, np.ndarray) and obj.dtype != object and obj.nbytes >= NPY_MIN_BYTES:
            array, kind = obj, "numpy"
        elif "torch" in sys.modules and isinstance(obj, sys.modules["torch"].Tensor) and obj.numel() * obj.element_size() >= NPY_MIN_BYTES:
            array, kind = obj.detach().cpu().contiguous().numpy(), "torch"
        if kind is None:
            return None
        name = f"array_{self.count:04d}.npy"
        self.count += 1
        np.save(self.folder / name, np.ascontiguousarray(array), allow_pickle=False)
        return (kind, name)


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves the .npy references from files already opened and hashed (name -> open handle)."""

    def __init__(self, file: io.BytesIO, handles: dict[str, BinaryIO]):
        super().__init__(file)
        self.handles = handles

    def persistent_load(self, pid: Any) -> Any:
        kind, name = pid
        handle = self.handles.get(name)
        if handle is None:
            raise pickle.UnpicklingError(f"{name!r} is not a file of this artifact")
        if kind == "numpy":
            return _memmap_npy(handle)
        if kind == "torch":
            import torch

            handle.seek(0)
            return torch.from_numpy(np.load(handle, allow_pickle=False))
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def _memmap_npy(handle: BinaryIO) -> np.memmap:
    """A read-only memory map of the .npy file open in `handle` (the very file that was hashed, not its path)."""
    handle.seek(0)
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    if dtype.hasobject:
        raise ValueError(".npy file holds Python objects")
    return np.memmap(handle, dtype=dtype, mode="r", shape=shape, order="F" if fortran_order else "C",
                     offset=handle.tell())


class ArtifactStore:
    """Reads and writes artifacts under `root`; see the module docstring for the guarantees."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    # -- paths, permissions and the secret --------------------------------------------------------------
    def folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def checkpoint_folder(self, stage: str, key: str) -> Path:
        """Where a long computation of (stage, key) keeps its resumable state (core/checkpoints.py); a dot
        folder, so listings, verify and gc never take it for an artifact."""
        return self.root / stage / f".checkpoint-{key}"

    def ensure_writable(self, stage: str | None = None) -> None:
        """Create the root (and `stage`'s folder) if needed, check the root is ours and private (see
        check_root), and prove it (and the stage folder) writable, or raise a one-line CacheError."""
        self._writable_dir(self.root, f"cache directory {self.root}", parents=True, check=self.check_root)
        if stage is not None:
            folder = self.root / stage
            self._writable_dir(folder, f"cache folder {folder}")

    def _writable_dir(self, folder: Path, what: str, parents: bool = False, check: Callable[[], None] | None = None) -> None:
        """mkdir, then `check()`, then a probe file written and deleted; a one-line CacheError if any fails."""
        elsewhere = "pass --cache-dir DIR or set NLP_PIPELINE_CACHE to a writable folder"
        in_the_way = elsewhere if parents else "move or delete that file (the cache recreates the folder)"
        unwritable = elsewhere if parents else f"fix its permissions (chmod u+rwx {folder}) or {elsewhere}"
        try:
            folder.mkdir(mode=DIR_MODE, parents=parents, exist_ok=True)
        except FileExistsError:  # exist_ok still raises when something other than a folder is there
            raise CacheError(f"{what} is not a folder (a file is in the way); {in_the_way}") from None
        except OSError as exc:
            raise CacheError(f"{what} is not writable ({_why(exc)}); {unwritable}") from None
        if check is not None:
            check()
        probe = folder / f".probe-{os.getpid()}-{secrets.token_hex(4)}"  # unique across machines too
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
            os.close(fd)
        except OSError as exc:
            if exc.errno == errno.ENOTDIR:
                raise CacheError(f"{what} is not a folder ({_why(exc)}); {in_the_way}") from None
            raise CacheError(f"{what} is not writable ({_why(exc)}); {unwritable}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)

    def check_root(self) -> None:
        """Refuse a root folder owned by another user or writable by group or others: whoever can write it can
        replace the secret or the files between checks. Group/other *read* is fine (the secret is 0600)."""
        try:
            info = os.stat(self.root)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CacheError(f"cache directory {self.root} cannot be read ({_why(exc)}); pass --cache-dir DIR") from None
        uid = os.getuid()
        if info.st_uid != uid:
            raise CacheError(
                f"cache directory {self.root} is owned by uid {info.st_uid}, not by you (uid {uid}), who could make "
                f"it run code in your process; use a cache folder of your own (--cache-dir DIR or NLP_PIPELINE_CACHE)"
            )
        if info.st_mode & 0o022:
            who = "group and others" if info.st_mode & 0o022 == 0o022 else "group" if info.st_mode & 0o020 else "others"
            raise CacheError(
                f"cache directory {self.root} is writable by {who} (mode {stat.S_IMODE(info.st_mode):04o}), who could "
                f"plant artifacts; run: chmod go-w {self.root}"
            )

    def _secret(self, create: bool) -> bytes | None:
        """The cache's HMAC secret after the checks of the module docstring; None if there is none (and not
        `create`). Raises a one-line CacheError for a secret that cannot be trusted or created."""
        path = self.root / SECRET_FILE
        if not create and not self.root.is_dir():
            return None
        self.check_root()
        secret = self._read_secret(path)
        if secret is not None or not create:
            return secret
        self.ensure_writable()
        tmp = self.root / f".secret-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(SECRET_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)  # first writer wins; others read the winner's secret
            except FileExistsError:
                pass
        except OSError as exc:
            raise CacheError(f"could not create the cache secret {path} ({_why(exc)}); check free space and "
                             f"permissions of {self.root}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return self._read_secret(path)

    def _read_secret(self, path: Path) -> bytes | None:
        restart = "delete it to start a new cache secret (every cached artifact is then refused and recomputed)"
        try:
            handle = _open_regular(path)
        except FileNotFoundError:
            return None
        except CorruptArtifact:
            raise CacheError(f"cache secret {path} is not a regular file; {restart}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CacheError(f"cache secret {path} is a symbolic link; {restart}") from None
            raise CacheError(f"cache secret {path} cannot be read ({_why(exc)}); fix its permissions (chmod 600 "
                             f"{path}) or {restart}") from None
        with handle:
            info = os.fstat(handle.fileno())
            uid = os.getuid()
            if info.st_uid != uid:
                raise CacheError(f"cache secret {path} is owned by uid {info.st_uid}, not by you (uid {uid}); {restart}")
            if info.st_mode & 0o077:
                raise CacheError(
                    f"cache secret {path} has mode {stat.S_IMODE(info.st_mode):04o} (group or others may read it and "
                    f"forge artifacts); {restart}, or run `chmod 600 {path}` if no one else could have read it"
                )
            data = handle.read(SECRET_BYTES + 1)
        if len(data) != SECRET_BYTES:
            raise CacheError(f"cache secret {path} holds {max(len(data), info.st_size)} bytes, not {SECRET_BYTES}; "
                             f"{restart}")
        return data

    def _sign(self, meta: dict, secret: bytes) -> str:
        body = {k: v for k, v in meta.items() if k != "signature"}
        return hmac.new(secret, canonical_json(body).encode("utf-8"), hashlib.sha256).hexdigest()

    # -- queries that load nothing ----------------------------------------------------------------------
    def exists(self, stage: str, key: str) -> bool:
        return (self.folder(stage, key) / META_FILE).is_file()

    def read_meta(self, stage: str, key: str) -> Any:
        """meta.json as parsed (unchecked: may be any JSON value); OSError or ValueError if unreadable."""
        try:
            with _open_regular(self.folder(stage, key) / META_FILE) as handle:
                data = handle.read(META_MAX_BYTES + 1)
        except CorruptArtifact as exc:
            raise ValueError(str(exc)) from None
        if len(data) > META_MAX_BYTES:
            raise ValueError(f"meta.json is larger than {META_MAX_BYTES >> 20} MB")
        return json.loads(data.decode("utf-8"))

    def entries(self) -> Iterator[tuple[str, str, Path]]:
        """(stage, key, folder) of every complete artifact, sorted."""
        if not self.root.is_dir():
            return
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for folder in sorted(p for p in stage_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if (folder / META_FILE).is_file():
                    yield stage_dir.name, folder.name, folder

    # -- verify, load, save -----------------------------------------------------------------------------
    def read_signed_meta(self, stage: str, key: str) -> dict:
        """meta.json after checking its HMAC (cheap: the artifact files are not hashed); else CorruptArtifact.
        CacheError if the secret itself cannot be trusted."""
        try:
            meta = self.read_meta(stage, key)
        except (OSError, ValueError) as exc:
            raise CorruptArtifact(f"meta.json unreadable: {exc}") from None
        secret = self._secret(create=False)
        if secret is None:
            raise CorruptArtifact(f"this cache has no secret ({self.root / SECRET_FILE} was deleted), so its signature "
                                  "cannot be checked")
        if not isinstance(meta, dict) or "signature" not in meta:
            raise CorruptArtifact("meta.json is not signed by this cache")
        if not hmac.compare_digest(str(meta["signature"]), self._sign(meta, secret)):
            raise CorruptArtifact("meta.json signature does not match (edited or planted, or the cache secret was "
                                  "replaced)")
        if meta.get("stage") != stage or meta.get("key") != key:
            raise CorruptArtifact("meta.json names another stage or key (moved folder)")
        return meta

    def _checked_files(self, stage: str, key: str) -> tuple[bytes, dict[str, BinaryIO]]:
        """The artifact's files after the signature and sha256 checks, each opened once: the pickle's bytes (read
        once, hashed, returned: the bytes checked are the bytes unpickled) and every other file as a handle it was
        hashed through (positioned at 0; the caller closes them). CorruptArtifact, with every handle closed,
        unless all match meta.json."""
        folder = self.folder(stage, key)
        meta = self.read_signed_meta(stage, key)
        listed = meta.get("files")
        if not isinstance(listed, dict) or ARTIFACT_FILE not in listed:
            raise CorruptArtifact(f"meta.json does not list {ARTIFACT_FILE}")
        try:
            present = {p.name for p in folder.iterdir() if p.name != META_FILE}
        except OSError as exc:
            raise CorruptArtifact(f"folder unreadable: {_why(exc)}") from None
        if set(listed) != present:
            raise CorruptArtifact(f"files differ from meta.json: {sorted(set(listed) ^ present)}")
        data = b""
        handles: dict[str, BinaryIO] = {}
        try:
            for name, info in sorted(listed.items()):
                expected = info.get("sha256") if isinstance(info, dict) else None
                try:
                    handle = _open_regular(folder / name)
                    if name == ARTIFACT_FILE:
                        with handle:
                            data = handle.read()
                        digest = hashlib.sha256(data).hexdigest()
                    else:
                        handles[name] = handle
                        digest = _hash_handle(handle)
                        handle.seek(0)
                except OSError as exc:
                    raise CorruptArtifact(f"{name} unreadable: {_why(exc)}") from None
                if digest != expected:
                    raise CorruptArtifact(f"{name} does not match its sha256 (truncated or corrupted)")
        except BaseException:
            for handle in handles.values():
                handle.close()
            raise
        return data, handles

    def verify(self, stage: str, key: str) -> None:
        """Raise CorruptArtifact unless the signature and every file's sha256 check out."""
        for handle in self._checked_files(stage, key)[1].values():
            handle.close()

    def load(self, stage: str, key: str) -> Any:
        """Verify, then unpickle the very bytes that were verified (and memory-map the .npy files from the
        descriptors they were hashed through). Raises CorruptArtifact if anything fails to check out."""
        data, handles = self._checked_files(stage, key)
        try:
            return _ArrayUnpickler(io.BytesIO(data), handles).load()
        except Exception as exc:  # a verified pickle that fails to load: e.g. a class renamed without a bump
            raise CorruptArtifact(f"artifact could not be loaded ({type(exc).__name__}: {exc})") from None
        finally:
            for handle in handles.values():  # a memory map keeps its own reference to the file
                handle.close()

    def save(self, stage: str, key: str, artifact: Any, meta: dict) -> Path:
        """Write artifact atomically; returns the final folder. `meta` gets files, key and signature added.
        OS failures (disk full, permissions) raise a one-line CacheError and leave no temporary folder."""
        self.ensure_writable(stage)
        secret = self._secret(create=True)
        final = self.folder(stage, key)
        tmp = final.parent / f".tmp-{key[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
        held = None
        try:
            tmp.mkdir(mode=DIR_MODE)
            held = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(held, fcntl.LOCK_EX)  # tells clean_temporaries that this folder is in use
            buffer = io.BytesIO()
            _ArrayPickler(buffer, tmp).dump(artifact)
            (tmp / ARTIFACT_FILE).write_bytes(buffer.getvalue())
            files = {}
            for p in sorted(tmp.iterdir()):
                os.chmod(p, stat.S_IMODE(p.stat().st_mode) & ~0o022)  # the umask's reading rights, never group write
                with open(p, "rb") as handle:
                    files[p.name] = {"sha256": _hash_handle(handle), "bytes": os.fstat(handle.fileno()).st_size}
                    os.fsync(handle.fileno())
            full = dict(meta, stage=stage, key=key, files=files, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            full["signature"] = self._sign(full, secret)
            fd = os.open(tmp / META_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(full, indent=2, sort_keys=True))
                handle.flush()
                os.fsync(handle.fileno())
            if final.exists():  # a corrupt leftover, or a racing writer under a broken lock
                self.remove(stage, key)
            os.rename(tmp, final)
        except CacheError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CacheError(f"could not save the {stage} artifact in {final.parent} ({_why(exc)}); check free space "
                             "and permissions") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if held is not None:
                os.close(held)
        return final

    def remove(self, stage: str, key: str) -> None:
        """Delete one artifact folder: renamed aside first, so it stops existing in one atomic step."""
        folder = self.folder(stage, key)
        if not folder.exists():
            return
        trash = folder.parent / f".trash-{key[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.rename(folder, trash)
        except FileNotFoundError:
            return  # removed meanwhile by another process
        except OSError as exc:
            raise CacheError(f"could not remove {folder} ({_why(exc)}); check the permissions of {folder.parent}") from None
        shutil.rmtree(trash, ignore_errors=True)

    # -- leftovers ----------------------------------------------------------------------------------------
    def _stage_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))

    def clean_temporaries(self) -> int:
        """Remove what killed processes left: `.tmp-*` save folders no live save holds (it keeps an flock on
        its folder), `.trash-*` folders, and `.secret-*` / `.probe-*` files of processes that are gone.
        Returns how many."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for p in sorted(self.root.iterdir()):
            if p.name.startswith((".secret-", ".probe-")) and not p.is_dir() and _leftover(p, _pid_in(p.name, 1)):
                removed += self._unlink(p)
        for stage_dir in self._stage_dirs():
            for p in sorted(stage_dir.iterdir()):
                if p.name.startswith(".trash-"):
                    self._rmtree(p)
                    removed += 1
                elif p.name.startswith(".probe-") and not p.is_dir() and _leftover(p, _pid_in(p.name, 1)):
                    removed += self._unlink(p)
                elif p.name.startswith(".tmp-") and self._remove_unheld_tmp(p):
                    removed += 1
        return removed

    def _remove_unheld_tmp(self, folder: Path) -> bool:
        """Remove a `.tmp-*` save folder unless a save holds its flock (or, in the instant between a save's
        mkdir and its flock, its process is alive); True if removed."""
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError:  # not a folder (or a symlink): nothing a save made; remove the entry itself
            return bool(self._unlink(folder))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a save in progress
            if not _leftover(folder, _pid_in(folder.name, 2)):
                return False
            self._rmtree(folder)
            return True
        finally:
            os.close(fd)

    def clean_locks(self) -> int:
        """Remove lock files that no process holds (taken, then unlinked while held: a process that opened the
        old file meanwhile notices and takes the new one, see _acquire). Returns how many."""
        lock_dir = self.root / LOCK_DIR
        if not lock_dir.is_dir() or lock_dir.is_symlink():
            return 0
        removed = 0
        for path in sorted(lock_dir.iterdir()):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError:  # a planted symlink or something unopenable: not a lock of ours
                removed += self._unlink(path)
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # held: a computation in progress or waiting
                if self._same_file(path, fd):
                    removed += self._unlink(path)
            finally:
                os.close(fd)
        return removed

    def clean_checkpoints(self) -> tuple[int, int]:
        """Remove `.checkpoint-*` folders (the resumable state of interrupted training) that no running process
        holds; returns (how many, bytes). A computation in progress holds its key's lock, so its checkpoint stays."""
        removed, size = 0, 0
        for stage_dir in self._stage_dirs():
            for folder in sorted(stage_dir.glob(".checkpoint-*")):
                key = folder.name[len(".checkpoint-"):]
                fd = self._acquire(stage_dir.name, key, blocking=False)
                if fd is None:
                    continue  # being trained right now
                try:
                    bytes_ = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                    trash = stage_dir / f".trash-{key[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
                    try:
                        os.rename(folder, trash)
                    except OSError as exc:
                        raise CacheError(f"could not remove {folder} ({_why(exc)}); check the permissions of "
                                         f"{stage_dir}") from None
                    shutil.rmtree(trash, ignore_errors=True)
                    removed, size = removed + 1, size + bytes_
                finally:
                    os.close(fd)
        return removed, size

    def _rmtree(self, folder: Path) -> None:
        """Rename aside (so a half-deleted folder never keeps its name), then delete; CacheError if not allowed."""
        trash = folder
        if not folder.name.startswith(".trash-"):
            trash = folder.parent / f".trash-{folder.name.lstrip('.')[:24]}-{secrets.token_hex(4)}"
            try:
                os.rename(folder, trash)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise CacheError(f"could not remove {folder} ({_why(exc)}); check the permissions of {folder.parent}") from None
        shutil.rmtree(trash, ignore_errors=True)

    def _unlink(self, path: Path) -> int:
        """Delete one file; 1 if deleted, 0 if already gone; CacheError if not allowed."""
        try:
            os.unlink(path)
            return 1
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise CacheError(f"could not remove {path} ({_why(exc)}); check the permissions of {path.parent}") from None

    # -- locks ---------------------------------------------------------------------------------------------
    def _lock_path(self, stage: str, key: str) -> Path:
        return self.root / LOCK_DIR / f"{stage}-{key[:32]}.lock"

    @staticmethod
    def _same_file(path: Path, fd: int) -> bool:
        try:
            on_disk = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def _acquire(self, stage: str, key: str, blocking: bool, on_wait: Callable[[], None] | None = None) -> int | None:
        """(stage, key)'s lock as an open descriptor (closing it releases the lock); None when not `blocking` and
        another process holds it. The file is opened with O_NOFOLLOW and never truncated: a planted symlink is
        refused, not followed."""
        path = self._lock_path(stage, key)
        try:
            path.parent.mkdir(mode=DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create the lock folder {path.parent} ({_why(exc)}); check the permissions of "
                             f"{self.root}") from None
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise CacheError(f"lock file {path} is a symbolic link (planted?); delete it") from None
                raise CacheError(f"cannot open lock file {path} ({_why(exc)}); check the permissions of "
                                 f"{path.parent}") from None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not blocking:
                        os.close(fd)
                        return None
                    if on_wait is not None:
                        on_wait()
                        on_wait = None
                    fcntl.flock(fd, fcntl.LOCK_EX)
                if self._same_file(path, fd):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # clean_locks removed the file meanwhile: lock the new one

    @contextlib.contextmanager
    def lock(self, stage: str, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold an exclusive inter-process lock on (stage, key) while it is computed and saved; `on_wait()` is
        called once if another process holds it (then this waits). Checks first that the stage folder is usable,
        so a folder that is a file or not writable fails before the computation, not after."""
        self.ensure_writable(stage)
        fd = self._acquire(stage, key, blocking=True, on_wait=on_wait)
        try:
            yield
        finally:
            os.close(fd)
