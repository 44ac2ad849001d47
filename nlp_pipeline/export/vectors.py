"""Word vectors to and from files: word2vec text / binary format (which gensim's KeyedVectors.load_word2vec_format,
the original C tools and most libraries read), and gensim KeyedVectors built from a WordVectors artifact.

Takes WordVectors (or keys + a float matrix); writes one file atomically (core.atomic.write_file: a hidden
sibling renamed into place, so a failed export leaves nothing half-written). Text output formats every float32
with its shortest round-trip decimal form (pyarrow's C++ CSV writer, in threads), so 100k x 300 vectors take a
few seconds. Reading (`read_vectors`, for embeddings.pretrained.path) lives in the embeddings stage, which may
not import this layer; it is re-exported here.

Limits: word2vec files cannot hold words with whitespace, so such characters are written visibly
(`escape_token`: a space becomes '␣', a tab '\\t'); the number of changed keys is reported. Two keys that
become equal after escaping raise DataError.
"""

from __future__ import annotations

import io
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nlp_pipeline.artifacts import WordVectors
from nlp_pipeline.core.atomic import write_file
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.stages.embeddings import read_vectors

__all__ = ["escape_token", "export_word_vectors", "format_float_rows", "read_vectors", "to_keyed_vectors", "write_word2vec"]

VISIBLE_SPACE = "\u2423"  # '␣', the conventional visible space
EMPTY_TOKEN = "<empty>"
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_LINE_BREAKS = {"\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"}


def _escape_char(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char == " ":
        return VISIBLE_SPACE
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_token(token: str, spaces: bool = True) -> str:
    """A token as one visible, single-line field with no tab or newline.

    Control and line-break characters become backslash escapes; whitespace-only tokens are always written
    visibly; with spaces=True every whitespace character is (word2vec keys), with spaces=False inner spaces
    stay (projector labels). '' -> '<empty>', ' ' -> '␣', 'a\\tb' -> 'a\\\\tb', 'new york' -> 'new␣york'
    (spaces=False: 'new york'), '\\u00a0' -> '\\\\xa0'.
    """
    if token == "":
        return EMPTY_TOKEN
    whitespace_only = token.isspace()
    out = []
    for char in token:
        if char in _NAMED or char in _LINE_BREAKS or unicodedata.category(char) == "Cc":
            out.append(_escape_char(char))
        elif char == " ":
            out.append(VISIBLE_SPACE if spaces or whitespace_only else char)
        elif char.isspace():
            out.append(_escape_char(char))  # other Unicode spaces (no-break, em...) are invisible: always escaped
        else:
            out.append(char)
    return "".join(out)


def format_float_rows(matrix: np.ndarray, delimiter: str = " ", prefixes: list[str] | None = None,
                      threads: int = 2, rows_per_chunk: int = 8192):
    """Yield bytes chunks of text lines, one per row: optional prefix, then each float32 value in its shortest
    round-trip decimal form, separated by `delimiter`: [[0.1, 1.0]] with prefixes ['a'] -> b'a 0.1 1\\n'.

    Prefixes must already be escaped (no delimiter, tab, newline or control character).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    matrix = np.asarray(matrix, dtype=np.float32)
    options = pacsv.WriteOptions(include_header=False, delimiter=delimiter, quoting_style="none")

    def render(bounds: tuple[int, int]) -> bytes:
        start, stop = bounds
        columns = {}
        if prefixes is not None:
            # the CSV writer refuses quotes when not quoting; they travel as NUL (escaped keys hold none) and come back
            columns["key"] = pa.array([p.replace('"', "\x00") for p in prefixes[start:stop]], type=pa.string())
        block = np.ascontiguousarray(matrix[start:stop].T)  # (dim, rows): one contiguous column per dimension
        for d in range(matrix.shape[1]):
            columns[f"v{d}"] = block[d]
        buffer = io.BytesIO()
        pacsv.write_csv(pa.table(columns), buffer, options)
        text = buffer.getvalue()
        return text.replace(b"\x00", b'"') if prefixes is not None else text

    bounds = [(s, min(s + rows_per_chunk, len(matrix))) for s in range(0, len(matrix), rows_per_chunk)]
    with ThreadPoolExecutor(max(1, threads)) as pool:  # pyarrow formats without holding the GIL
        yield from pool.map(render, bounds)


def _escaped_keys(keys: list[str]) -> tuple[list[str], int]:
    escaped = [escape_token(k, spaces=True) for k in keys]
    changed = sum(a != b for a, b in zip(keys, escaped))
    if changed and len(set(escaped)) != len(escaped):
        seen: dict[str, str] = {}
        for original, new in zip(keys, escaped):
            if new in seen:
                raise DataError(f"keys {seen[new]!r} and {original!r} both become {new!r} once whitespace is escaped "
                                "for the word2vec format; rename one of them")
            seen[new] = original
    return escaped, changed


def _atomic_write(path: Path, overwrite: bool, write) -> int:
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; choose another output path or allow overwriting")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a file path for the vectors")
    return write_file(path, write)


def write_word2vec(path: str | Path, keys: list[str], vectors: np.ndarray, binary: bool = False,
                   overwrite: bool = False, threads: int = 2) -> dict:
    """Write keys and vectors in word2vec format ('n dim' header, then 'word v1 ... vdim' lines, or in binary
    'word ' + dim little-endian float32 + '\\n' per record, as the original C tool does).

    Returns {'path', 'words', 'dim', 'bytes', 'escaped_keys'}; raises ConfigError if the file exists and
    overwrite is False, DataError on a shape mismatch or non-finite values.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) != len(keys):
        raise DataError(f"vectors of shape {vectors.shape} do not match {len(keys)} keys; expected ({len(keys)}, dim)")
    if not np.isfinite(vectors).all():
        raise DataError("vectors hold NaN or infinite values; the word2vec format cannot carry them")
    escaped, changed = _escaped_keys(list(keys))
    vectors32 = np.ascontiguousarray(vectors, dtype="<f4")
    header = f"{len(escaped)} {vectors.shape[1]}\n".encode("ascii")

    def write(handle) -> None:
        handle.write(header)
        if binary:
            record = vectors32.shape[1] * 4
            data = memoryview(vectors32.reshape(-1).view(np.uint8))  # row i is data[i * record:(i + 1) * record]
            for start in range(0, len(escaped), 65536):
                parts: list = []
                for i, key in enumerate(escaped[start:start + 65536], start):
                    parts += (key.encode("utf-8") + b" ", data[i * record:(i + 1) * record], b"\n")
                handle.write(b"".join(parts))
        else:
            for chunk in format_float_rows(vectors32, " ", escaped, threads):
                handle.write(chunk)

    size = _atomic_write(Path(path), overwrite, write)
    return {"path": str(path), "words": len(escaped), "dim": int(vectors.shape[1]), "bytes": size, "escaped_keys": changed}


def export_word_vectors(vectors: WordVectors, path: str | Path, binary: bool = False, overwrite: bool = False,
                        threads: int = 2) -> dict:
    """Write a WordVectors artifact in word2vec format (see write_word2vec); fastText n-gram vectors are not
    part of that format and are left out (the report says so under 'ngram_vectors_dropped')."""
    report = write_word2vec(path, vectors.keys, vectors.vectors, binary, overwrite, threads)
    report["method"] = vectors.method
    report["ngram_vectors_dropped"] = vectors.ngram_vectors is not None
    return report


def to_keyed_vectors(vectors: WordVectors):
    """A gensim KeyedVectors (FastTextKeyedVectors when n-gram vectors are present, so unseen words get vectors)
    with the artifact's keys, vectors and counts (vecattr 'count')."""
    from gensim.models.fasttext import FastTextKeyedVectors
    from gensim.models.keyedvectors import KeyedVectors

    matrix = np.array(vectors.vectors, dtype=np.float32)
    dim = matrix.shape[1]
    if vectors.ngram_vectors is not None:
        settings = vectors.ngram_settings
        kv = FastTextKeyedVectors(dim, settings["min_n"], settings["max_n"], settings["bucket"])
        kv.add_vectors(list(vectors.keys), matrix)
        kv.vectors_vocab = matrix.copy()
        kv.vectors_ngrams = np.array(vectors.ngram_vectors, dtype=np.float32)
        kv.recalc_char_ngram_buckets()
    else:
        kv = KeyedVectors(dim, count=0)
        kv.add_vectors(list(vectors.keys), matrix)
    kv.allocate_vecattrs(attrs=["count"], types=[np.int64])
    kv.expandos["count"][:] = np.asarray(vectors.counts, dtype=np.int64)
    return kv
