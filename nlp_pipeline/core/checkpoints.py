"""Checkpoints of a long computation, so that an interrupted run resumes instead of starting over.

    with checkpoints.scope(store.root / "finetune_lm" / ".checkpoint-<key>"):   # the runner, around one stage
        state = checkpoints.load_bytes()        # the training loop: None, or the last saved bytes
        checkpoints.save_bytes(blob)            # ... and every few minutes, atomically

Takes and returns opaque bytes (models/training.py serialises its own state); knows nothing of torch.
The runner opens a scope per computed stage instance, keyed by its cache key, and calls `discard()` once
the artifact is saved. Outside a scope (a stage function called directly) saving and loading do nothing,
so stages stay pure functions. Limits: one checkpoint file per scope (the newest wins); a checkpoint is as
trustworthy as the cache folder that holds it, so the loop must load it without executing code
(torch.load(weights_only=True)).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

CHECKPOINT_FILE = "state.bin"
_current: contextvars.ContextVar[Path | None] = contextvars.ContextVar("nlp_pipeline_checkpoint_dir", default=None)


@contextlib.contextmanager
def scope(folder: str | Path | None) -> Iterator[None]:
    """Within this block, save_bytes/load_bytes use `folder` (None: checkpoints off)."""
    token = _current.set(Path(folder) if folder is not None else None)
    try:
        yield
    finally:
        _current.reset(token)


def active() -> bool:
    """True inside a scope with a folder: a save would be kept."""
    return _current.get() is not None


def save_bytes(data: bytes) -> bool:
    """Replace the scope's checkpoint with `data` atomically (temporary file, fsync, rename); False outside a scope."""
    folder = _current.get()
    if folder is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHECKPOINT_FILE}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / CHECKPOINT_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def load_bytes() -> bytes | None:
    """The scope's last checkpoint, or None (no scope, nothing saved yet)."""
    folder = _current.get()
    if folder is None:
        return None
    path = folder / CHECKPOINT_FILE
    return path.read_bytes() if path.is_file() else None


def discard(folder: str | Path) -> None:
    """Delete a scope's folder once its result is saved (or is being recomputed from scratch)."""
    shutil.rmtree(folder, ignore_errors=True)
