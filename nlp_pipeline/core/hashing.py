"""Cache keys: the only place they are computed.

A key is the sha256 of the canonical JSON of a small dict (stage name, version, store format, the config
fields that can change the output, the upstream keys). Canonical JSON sorts keys and has no spaces, so the
same dict gives the same key in every process, whatever PYTHONHASHSEED is. Only JSON types are accepted:
anything else raises ConfigError rather than hashing something unstable such as a repr with an address.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from nlp_pipeline.core.errors import ConfigError

STORE_FORMAT = 1  # bump when the on-disk layout of artifacts changes: every key changes with it


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where} is {value}; only finite numbers can be part of a config")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where} has a non-string key {k!r}; config keys must be strings")
            _check_json(item, f"{where}.{k}")
        return
    raise ConfigError(f"{where} is a {type(value).__name__}; config values must be JSON types (str, number, bool, list, table)")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: {'b': 1, 'a': [1.0, 'x']} -> '{"a":[1.0,"x"],"b":1}'."""
    _check_json(value, "value")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def key(payload: dict) -> str:
    """sha256 hex of canonical_json(payload); the identity of a stage instance's output."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """sha256 hex of a file's bytes, read in chunks so large files cost no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(path: str | Path) -> str:
    """A content hash of a file, or of a folder (relative names and contents of every file, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(child.relative_to(path).as_posix().encode("utf-8") + b"\0")
        digest.update(file_sha256(child).encode("ascii") + b"\0")
    return digest.hexdigest()
