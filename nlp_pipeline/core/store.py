"""The artifact store: one folder per stage instance, `<root>/<stage>/<key>/{artifact.pkl, *.npy, meta.json}`.

- Saves are atomic: files go to a temporary sibling folder, meta.json is written last, then the folder is
  renamed into place. A folder without meta.json does not exist as far as the store is concerned.
- Large numpy arrays (and torch tensors) are written as `.npy` files beside a small pickle and come back
  memory-mapped (read-only), so token ids and vectors cost no copy to load.
- Pickle runs code when loaded, so nothing is unpickled unless meta.json carries a valid HMAC made with a
  secret private to this cache (`<root>/.secret`, mode 0600) and every file's sha256 matches meta.json.
  A truncated, corrupted or planted artifact is reported as corrupt and recomputed, never loaded.
- `lock()` serialises the computation of one key across processes (fcntl lock file), so concurrent runs
  of the same pipeline compute each artifact once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import io
import json
import os
import pickle
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from nlp_pipeline.core.errors import CacheError
from nlp_pipeline.core.hashing import canonical_json, file_sha256

ARTIFACT_FILE = "artifact.pkl"
META_FILE = "meta.json"
SECRET_FILE = ".secret"
NPY_MIN_BYTES = 1 << 16  # arrays at least this large are stored as .npy files beside the pickle


class CorruptArtifact(Exception):
    """An artifact folder failed its signature or checksum; the caller recomputes it."""


def default_cache_dir() -> Path:
    """NLP_PIPELINE_CACHE if set, else $XDG_CACHE_HOME/nlp-pipeline, else ~/.cache/nlp-pipeline."""
    env = os.environ.get("NLP_PIPELINE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nlp-pipeline"


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
    def __init__(self, file: io.BytesIO, folder: Path):
        super().__init__(file)
        self.folder = folder

    def persistent_load(self, pid: Any) -> Any:
        kind, name = pid
        if kind == "numpy":
            return np.load(self.folder / name, mmap_mode="r", allow_pickle=False)
        if kind == "torch":
            import torch

            return torch.from_numpy(np.load(self.folder / name, allow_pickle=False))
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


class ArtifactStore:
    """Reads and writes artifacts under `root`; see the module docstring for the guarantees."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    # -- paths and the secret -------------------------------------------------------------------------
    def folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def checkpoint_folder(self, stage: str, key: str) -> Path:
        """Where a long computation of (stage, key) keeps its resumable state (core/checkpoints.py); a dot
        folder, so listings, verify and gc never take it for an artifact."""
        return self.root / stage / f".checkpoint-{key}"

    def ensure_writable(self) -> None:
        """Create the root if needed and prove it is writable, or raise a one-line CacheError."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{os.getpid()}-{secrets.token_hex(4)}"  # unique across machines too
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise CacheError(
                f"cache directory {self.root} is not writable ({exc.strerror or exc}); "
                "pass --cache-dir DIR or set NLP_PIPELINE_CACHE to a writable folder"
            ) from None

    def _secret(self, create: bool) -> bytes | None:
        path = self.root / SECRET_FILE
        if path.exists():
            return path.read_bytes()
        if not create:
            return None
        self.ensure_writable()
        tmp = self.root / f".secret-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)  # first writer wins; others read the winner's secret
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_bytes()

    def _sign(self, meta: dict, secret: bytes) -> str:
        body = {k: v for k, v in meta.items() if k != "signature"}
        return hmac.new(secret, canonical_json(body).encode("utf-8"), hashlib.sha256).hexdigest()

    # -- queries that load nothing ----------------------------------------------------------------------
    def exists(self, stage: str, key: str) -> bool:
        return (self.folder(stage, key) / META_FILE).is_file()

    def read_meta(self, stage: str, key: str) -> dict:
        return json.loads((self.folder(stage, key) / META_FILE).read_text(encoding="utf-8"))

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
        """meta.json after checking its HMAC (cheap: the artifact files are not hashed); else CorruptArtifact."""
        try:
            meta = self.read_meta(stage, key)
        except (OSError, ValueError) as exc:
            raise CorruptArtifact(f"meta.json unreadable: {exc}") from None
        secret = self._secret(create=False)
        if secret is None or not isinstance(meta, dict) or "signature" not in meta:
            raise CorruptArtifact("meta.json is not signed by this cache")
        if not hmac.compare_digest(str(meta["signature"]), self._sign(meta, secret)):
            raise CorruptArtifact("meta.json signature does not match (edited or planted)")
        if meta.get("stage") != stage or meta.get("key") != key:
            raise CorruptArtifact("meta.json names another stage or key (moved folder)")
        return meta

    def verify(self, stage: str, key: str) -> None:
        """Raise CorruptArtifact unless the signature and every file's sha256 check out."""
        folder = self.folder(stage, key)
        meta = self.read_signed_meta(stage, key)
        listed = meta.get("files", {})
        present = {p.name for p in folder.iterdir() if p.name != META_FILE}
        if set(listed) != present:
            raise CorruptArtifact(f"files differ from meta.json: {sorted(set(listed) ^ present)}")
        for name, info in listed.items():
            if file_sha256(folder / name) != info["sha256"]:
                raise CorruptArtifact(f"{name} does not match its sha256 (truncated or corrupted)")

    def load(self, stage: str, key: str) -> Any:
        """Verify, then unpickle. Raises CorruptArtifact if anything fails to check out."""
        self.verify(stage, key)
        folder = self.folder(stage, key)
        data = (folder / ARTIFACT_FILE).read_bytes()
        try:
            return _ArrayUnpickler(io.BytesIO(data), folder).load()
        except Exception as exc:  # a verified pickle that fails to load: e.g. a class renamed without a bump
            raise CorruptArtifact(f"artifact could not be loaded ({type(exc).__name__}: {exc})") from None

    def save(self, stage: str, key: str, artifact: Any, meta: dict) -> Path:
        """Write artifact atomically; returns the final folder. `meta` gets files, key and signature added."""
        self.ensure_writable()
        secret = self._secret(create=True)
        final = self.folder(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{key[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            buffer = io.BytesIO()
            _ArrayPickler(buffer, tmp).dump(artifact)
            (tmp / ARTIFACT_FILE).write_bytes(buffer.getvalue())
            files = {
                p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size}
                for p in sorted(tmp.iterdir())
            }
            full = dict(meta, stage=stage, key=key, files=files, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            full["signature"] = self._sign(full, secret)
            (tmp / META_FILE).write_text(json.dumps(full, indent=2, sort_keys=True), encoding="utf-8")
            for p in tmp.iterdir():
                with open(p, "rb") as handle:
                    os.fsync(handle.fileno())
            if final.exists():  # a corrupt leftover, or a racing writer under a broken lock
                self.remove(stage, key)
            os.rename(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CacheError(f"could not save {stage} artifact in {self.root} ({exc}); check free space and permissions") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def remove(self, stage: str, key: str) -> None:
        """Delete one artifact folder: renamed aside first, so it stops existing in one atomic step."""
        folder = self.folder(stage, key)
        if not folder.exists():
            return
        trash = folder.parent / f".trash-{key[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def clean_temporaries(self) -> int:
        """Remove `.tmp-*` and `.trash-*` folders left by killed runs; returns how many."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for stage_dir in self.root.iterdir():
            if stage_dir.is_dir() and not stage_dir.name.startswith("."):
                for p in stage_dir.iterdir():
                    if p.name.startswith((".tmp-", ".trash-")):
                        shutil.rmtree(p, ignore_errors=True)
                        removed += 1
        return removed

    def clean_checkpoints(self) -> tuple[int, int]:
        """Remove `.checkpoint-*` folders (the resumable state of interrupted training) that no running process
        holds; returns (how many, bytes). A computation in progress holds its key's lock, so its checkpoint stays."""
        removed, size = 0, 0
        if not self.root.is_dir():
            return 0, 0
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for folder in sorted(stage_dir.glob(".checkpoint-*")):
                key = folder.name[len(".checkpoint-"):]
                handle = self._try_lock(stage_dir.name, key)
                if handle is None:
                    continue  # being trained right now
                with handle:
                    bytes_ = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                    trash = stage_dir / f".trash-{key[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
                    os.rename(folder, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                    removed, size = removed + 1, size + bytes_
        return removed, size

    def _try_lock(self, stage: str, key: str) -> Any:
        """(stage, key)'s lock taken without waiting, as an open file (closing it releases the lock); None when
        another process holds it."""
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(exist_ok=True)
        handle = open(lock_dir / f"{stage}-{key[:32]}.lock", "a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        return handle

    @contextlib.contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold an exclusive inter-process lock on (stage, key) while it is computed and saved."""
        self.ensure_writable()
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(exist_ok=True)
        with open(lock_dir / f"{stage}-{key[:32]}.lock", "w") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
