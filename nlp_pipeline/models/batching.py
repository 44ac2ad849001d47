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
- Several processes (models/distributed.py): every process builds the same stream or batches (same seed)
  and keeps its `shard` of the rows, so the global batch stays batch_size.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from nlp_pipeline.core.errors import DataError


def pad_id(vocab) -> int:
    """The id of the padding token xxpad in a Vocab; a DataError when the vocabulary lacks it."""
    pad = vocab.stoi.get("xxpad")
    if pad is None:
        raise DataError("the vocabulary has no 'xxpad' token; build it with the numericalization stage (specials first)")
    return pad


def concat_documents(ids: np.ndarray, offsets: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Documents in `order` joined into one int64 stream.

    concat_documents(np.array([5, 6, 7, 8]), np.array([0, 1, 4]), np.array([1, 0])) -> array([6, 7, 8, 5])
    """
    ids, offsets = np.asarray(ids), np.asarray(offsets)
    if len(order) == 0:
        return np.zeros(0, np.int64)
    starts, ends = offsets[order], offsets[np.asarray(order) + 1]
    lengths = ends - starts
    # index of every output token: its document's start plus its position inside the document
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return ids[np.repeat(starts, lengths) + within].astype(np.int64)


def reverse_documents(ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Every document's ids in reverse order, documents in place (what a backward language model reads).

    reverse_documents(np.array([5, 6, 7, 8]), np.array([0, 1, 4])) -> array([5, 8, 7, 6])
    """
    ids, offsets = np.asarray(ids), np.asarray(offsets)
    lengths = np.diff(offsets)
    starts = np.repeat(offsets[:-1], lengths)
    within = np.arange(len(ids)) - starts            # position of each id inside its document
    return ids[starts + np.repeat(lengths, lengths) - 1 - within]


def layout_stream(stream: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a stream into batch_size contiguous rows, dropping the tail that does not fill a column.

    layout_stream(np.arange(20), 2) -> [[0, 1, ..., 9], [10, 11, ..., 19]]   shape (2, 10)
    """
    n_columns = len(stream) // batch_size
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
