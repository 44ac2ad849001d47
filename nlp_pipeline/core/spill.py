"""Growing arrays whose memory is bounded: appended in chunks, held in memory up to a limit, then on disk.

    writer = ArrayWriter(np.int32)          # what a stage fills chunk by chunk (token ids, text bytes)
    writer.append(np.array([1, 2, 3]))      # any number of times; each chunk is converted to the dtype
    ids = writer.finish()                   # (n,) read-only ndarray: in memory, or mapped from the spill file

Takes chunks of one dtype; returns one flat array with exactly their values in order, whatever the limit, so
an artifact built from it is byte-identical to one built in memory (the store saves both as the same `.npy`).
Past `memory_limit` bytes (SPILL_BYTES, 64 MiB by default) everything goes to a temporary file in
`spill_dir()` (NLP_PIPELINE_SPILL_DIR, else the system temporary folder: TMPDIR). The file is unlinked as soon
as it is created, so it never outlives the process, and the array returned maps it: memory then holds only
the pages the kernel chooses to cache (clean, file-backed, dropped under pressure), not the whole array.
Limits: the spill folder needs room for the array (a tmpfs /tmp is RAM: point NLP_PIPELINE_SPILL_DIR at a
disk); the array is read-only.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from typing import Any

import numpy as np

SPILL_BYTES = 64 << 20  # arrays larger than this go to disk


def spill_dir() -> str:
    """Where spill files go: NLP_PIPELINE_SPILL_DIR when set, else tempfile.gettempdir() (TMPDIR)."""
    return os.environ.get("NLP_PIPELINE_SPILL_DIR") or tempfile.gettempdir()


class ArrayWriter:
    """Append-only 1-D array of one dtype, in memory up to `memory_limit` bytes and in an unlinked file beyond.

    w = ArrayWriter(np.int64, memory_limit=16); w.append([1, 2]); w.append([3]); w.finish() -> array([1, 2, 3])
    (the third value crossed 16 bytes, so the result maps a spill file).
    """

    def __init__(self, dtype: Any, memory_limit: int | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.memory_limit = SPILL_BYTES if memory_limit is None else memory_limit
        self.parts: list[bytes] = []
        self.held = 0                 # bytes in self.parts
        self.count = 0                # values appended in all
        self.file: Any = None         # the unlinked spill file, once past the limit

    def append(self, values: Any) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype).tobytes()
        self.count += len(data) // self.dtype.itemsize
        if self.file is None and self.held + len(data) <= self.memory_limit:
            self.parts.append(data)
            self.held += len(data)
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile(dir=spill_dir(), prefix="nlp-pipeline-spill-")  # unlinked at once
            for part in self.parts:
                self.file.write(part)
            self.parts, self.held = [], 0
        self.file.write(data)

    def __len__(self) -> int:
        return self.count

    def finish(self) -> np.ndarray:
        """The values appended, in order, as one read-only (n,) array; the writer is spent afterwards."""
        if self.file is None:
            out = np.frombuffer(b"".join(self.parts), dtype=self.dtype)
            self.parts = []
            return out
        self.file.flush()
        if self.count == 0:
            return np.zeros(0, self.dtype)
        mapped = mmap.mmap(self.file.fileno(), self.count * self.dtype.itemsize, access=mmap.ACCESS_READ)
        self.file.close()             # the mapping keeps the (unlinked) file alive
        self.file = None
        return np.frombuffer(mapped, dtype=self.dtype)   # a plain ndarray (not np.memmap): pickles as one
