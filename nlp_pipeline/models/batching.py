"""Batching for the two training regimes, on numpy int arrays (torch tensors are made by the training loop).

- Language model: documents (each already starting with xxbos) are concatenated into one stream, cut into
  `batch_size` contiguous rows, and read left to right in windows of (variable) BPTT length, so that row b
  of batch k+1 continues row b of batch k and the recurrent state can be carried over.
- Classifier: "sortish" batches (fastai's SortishSampler idea): a shuffled order is cut into chunks of
  `chunk_batches` batches, each chunk sorted by length, so a batch holds documents of similar length (little
  padding) while batch composition still changes every epoch. Padding goes at the END of each document.
- Backward (ULMFiT's backward LM): reverse_documents flips every document before the stream is cut; the
  classifier's nets flip their padded batches themselves (models/heads.reverse_padded).
Limits: the stream drops the last len % batch_size tokens; documents longer than max_length are truncated
to their first max_length tokens (fine for sentences and paragraphs; long reviews lose their ends).
- Several processes (models/distributed.py): every process draws the same stream or batches (same seed)
  and keeps its `shard` of the rows, so the global batch stays batch_size.
- Bounded memory: concat_documents and layout_stream are lazy (DocumentStream, StreamRows): an epoch's stream
  is never built; each BPTT window gathers its (B, T) ids from the documents' starts and lengths (16 bytes
  per document), so a process reads only the windows of its own rows, whatever the corpus size.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from nlp_pipeline.core.errors import DataError


def pad_id(vocab) -> int:
    """The id of the padding token xxpad in a Vocab; a DataError when the vocabulary lacks it."""
    pad = vocab.stoi.get("xxpad")
    if pad is None:
        raise DataError("the vocabulary has no 'xxpad' token; build it with the numericalization stage (specials first)")
    return pad


class DocumentStream:
    """Documents in a given order read as one int64 stream, without building it: positions are looked up.

    Behaves like the 1-D int64 array it stands for where the training loops need it (len, slicing, np.asarray,
    tolist), but holds only the order's document starts and lengths (16 bytes per document), so an epoch over a
    corpus of any size costs memory per window, not per corpus. np.asarray(stream) builds the whole array.
    """

    dtype = np.dtype(np.int64)
    ndim = 1

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, order: np.ndarray) -> None:
        self.ids, offsets = ids, np.asarray(offsets)
        order = np.asarray(order, dtype=np.int64)
        self.starts = offsets[order].astype(np.int64)                       # (n_docs,) where each document begins in ids
        self.lengths = (offsets[order + 1] - offsets[order]).astype(np.int64) if len(order) else np.zeros(0, np.int64)
        self.ends = np.cumsum(self.lengths)                                 # (n_docs,) stream position after each document

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """int64 ids at these stream positions (any shape): [0, 3] of documents [6] + [7, 8, 5] -> [6, 5]."""
        positions = np.asarray(positions, dtype=np.int64)
        doc = np.searchsorted(self.ends, positions, side="right")          # the document holding each position
        within = positions - (self.ends[doc] - self.lengths[doc])
        return np.asarray(self.ids[self.starts[doc] + within], dtype=np.int64) if positions.size else \
            np.zeros(positions.shape, np.int64)

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("a DocumentStream is read by slices: stream[a:b]")
        return self.take(np.arange(*index.indices(len(self))))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.take(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def tolist(self) -> list[int]:
        return np.asarray(self).tolist()


def concat_documents(ids: np.ndarray, offsets: np.ndarray, order: np.ndarray) -> DocumentStream:
    """Documents in `order` joined into one int64 stream (lazy: see DocumentStream).

    concat_documents(np.array([5, 6, 7, 8]), np.array([0, 1, 4]), np.array([1, 0])).tolist() -> [6, 7, 8, 5]
    """
    return DocumentStream(ids, offsets, order)


class StreamRows:
    """A stream cut into `batch_size` rows of n_columns, row b covering positions [b * n, (b + 1) * n), read
    lazily: rows[:, a:b] gathers only that window (B, b - a), rows[r::W] keeps rows r, r + W, ... (a process's
    shard), so each process reads only its rows of the token stream."""

    dtype = np.dtype(np.int64)
    ndim = 2

    def __init__(self, stream: DocumentStream, row_starts: np.ndarray, n_columns: int) -> None:
        self.stream, self.row_starts, self.n_columns = stream, np.asarray(row_starts, dtype=np.int64), n_columns

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.row_starts), self.n_columns)

    @property
    def size(self) -> int:
        return len(self.row_starts) * self.n_columns

    def __getitem__(self, index: Any) -> Any:
        rows, columns = (index, slice(None)) if not isinstance(index, tuple) else index
        if not isinstance(rows, slice) or not isinstance(columns, slice):
            raise TypeError("StreamRows are read by slices: rows[r::w] or rows[:, a:b]")
        kept = StreamRows(self.stream, self.row_starts[rows], self.n_columns)
        if columns == slice(None):
            return kept
        cols = np.arange(*columns.indices(self.n_columns))
        return self.stream.take(kept.row_starts[:, None] + cols[None, :])  # (B, len(cols)) int64

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:, 0:self.n_columns]
        return out if dtype is None else out.astype(dtype)

    def tolist(self) -> list[list[int]]:
        return np.asarray(self).tolist()


def reverse_documents(ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Every document's ids in reverse order, documents in place (what a backward language model reads).

    reverse_documents(np.array([5, 6, 7, 8]), np.array([0, 1, 4])) -> array([5, 8, 7, 6])
    """
    ids, offsets = np.asarray(ids), np.asarray(offsets)
    lengths = np.diff(offsets)
    starts = np.repeat(offsets[:-1], lengths)
    within = np.arange(len(ids)) - starts            # position of each id inside its document
    return ids[starts + np.repeat(lengths, lengths) - 1 - within]


def layout_stream(stream: np.ndarray | DocumentStream, batch_size: int) -> np.ndarray | StreamRows:
    """Cut a stream into batch_size contiguous rows, dropping the tail that does not fill a column; a
    DocumentStream gives lazy StreamRows of the same values.

    layout_stream(np.arange(20), 2) -> [[0, 1, ..., 9], [10, 11, ..., 19]]   shape (2, 10)
    """
    n_columns = len(stream) // batch_size
    if isinstance(stream, DocumentStream):
        return StreamRows(stream, np.arange(batch_size, dtype=np.int64) * n_columns, n_columns)
    return np.asarray(stream[: n_columns * batch_size]).reshape(batch_size, n_columns)


def bptt_lengths(n_columns: int, bptt: int, rng: np.random.Generator | None = None,
                 p_full: float = 0.95, std: float = 5.0, min_length: int = 5) -> list[int]:
    """Window lengths that cover the n_columns - 1 input positions of a (B, n_columns) stream.

    Fixed (rng=None): bptt_lengths(10, 4) -> [4, 4, 1]. Variable (AWD-LSTM): each window draws
    base = bptt with probability p_full else bptt / 2, then length = max(min_length, round(N(base, std))),
    the last one cut to what is left.
    """
    lengths, position, last = [], 0, n_columns - 1
    while position < last:
        if rng is None:
            length = bptt
        else:
            base = bptt if rng.random() < p_full else bptt / 2
            length = max(min_length, int(round(rng.normal(base, std))))
        length = min(length, last - position)
        lengths.append(length)
        position += length
    return lengths


def lm_windows(rows: np.ndarray, lengths: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) windows of a (B, N) stream, targets shifted by one: both (B, length).

    rows [[0..9], [10..19]], lengths [4, 4, 1] -> x [[0,1,2,3],[10,11,12,13]], y [[1,2,3,4],[11,12,13,14]]; ...;
    x [[8],[18]], y [[9],[19]].
    """
    position = 0
    for length in lengths:
        yield rows[:, position:position + length], rows[:, position + 1:position + 1 + length]
        position += length


def shard(items: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Process `rank`'s share of `items` among `world_size` processes: every world_size-th item (or row),
    starting at position rank. Shares differ in size by at most one.

    shard(np.arange(7), 1, 3) -> array([1, 4]); shard(rows of shape (4, N), 0, 2) -> rows 0 and 2, shape (2, N).
    """
    return items[rank::world_size]


def sortish_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                    chunk_batches: int = 50) -> list[np.ndarray]:
    """Index batches of similar-length documents, in a shuffled order; the longest batch comes first
    (so a too-large batch fails at once, not at the end of the epoch)."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(-np.asarray(lengths)[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    if not batches:
        return batches
    longest = int(np.argmax([np.asarray(lengths)[b].max() for b in batches]))
    rest = [batches[i] for i in rng.permutation(len(batches)) if i != longest]
    return [batches[longest]] + rest


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Index batches by decreasing length, for evaluation (order does not matter, padding should be small).

    sorted_batches(np.array([3, 9, 1, 5]), 2) -> [array([1, 3]), array([0, 2])]
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(ids: np.ndarray, offsets: np.ndarray, indexes: np.ndarray, pad_id: int,
              max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Documents `indexes` as a time-first (T, B) int64 matrix padded at the end, and their lengths (B,).

    ids [5, 6, 7, 8, 9], offsets [0, 3, 5], indexes [1, 0], pad 1, max_length 10
    -> [[8, 5], [9, 6], [1, 7]], lengths [2, 3]. Documents longer than max_length keep their first max_length ids;
    empty documents are given length 1 (a single pad) so pooling stays defined.
    """
    ids, offsets = np.asarray(ids), np.asarray(offsets)
    starts = offsets[indexes]
    lengths = np.minimum(offsets[np.asarray(indexes) + 1] - starts, max_length)
    steps = max(int(lengths.max()) if len(lengths) else 1, 1)
    out = np.full((steps, len(indexes)), pad_id, dtype=np.int64)
    for column, (start, length) in enumerate(zip(starts, lengths)):
        out[:length, column] = ids[start:start + length]
    return out, np.maximum(lengths, 1).astype(np.int64)
