"""GloVe (Pennington, Socher & Manning, 2014): word vectors from a weighted least-squares fit of log co-occurrences.

Takes token ids already mapped to a vocabulary (flat int array + document offsets, -1 for dropped tokens) and
returns a (vocab_size, dim) float32 matrix W + W~ and the loss of every epoch. Two steps:

1. `count_cooccurrences`: symmetric windowed counts, a pair at distance d adds 1/d to X[a, b] and X[b, a].
   Dropped tokens (-1) are removed before windowing (as GloVe's cooccur.c skips out-of-vocabulary words);
   windows never cross documents. The corpus is streamed in chunks of whole documents and the pairs of one
   chunk are summed into scipy sparse matrices, so memory is bounded by the matrix (plus the longest
   document), not by the corpus.
2. `fit_glove`: minimise sum over nonzero X_ij of f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2 with
   f(x) = min(1, (x / x_max)^alpha), by AdaGrad on minibatches of nonzero entries shuffled every epoch
   (vectorised numpy, one thread; the gradients of a minibatch are summed per row before the AdaGrad step,
   where the reference C code steps after every entry).

Limits: the matrix is held in memory (about 16 bytes per nonzero entry while counting, 32 while training:
the entries plus one shuffled copy per epoch), so the vocabulary is what bounds memory; a vocabulary of 100k
words on a large corpus can reach ~10^8 nonzeros (~3 GB). Speed: ~1.9 s per epoch for 4M nonzeros on one core,
about 5x gensim's CBOW at equal epochs (benchmarks/bench_embeddings.py); the reference C code is faster.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

PAIR_BUDGET = 4_000_000  # pairs materialised at once while counting (~64 MB of temporaries)


def _merge(pending: list, vocab_size: int):
    """Sum a list of COO matrices into one CSR matrix (duplicates added)."""
    import scipy.sparse as sp

    rows = np.concatenate([m.row for m in pending])
    cols = np.concatenate([m.col for m in pending])
    data = np.concatenate([m.data for m in pending])
    return sp.coo_matrix((data, (rows, cols)), shape=(vocab_size, vocab_size)).tocsr()


def count_cooccurrences(ids: np.ndarray, offsets: np.ndarray, vocab_size: int, window: int = 10,
                        remap: np.ndarray | None = None, chunk_tokens: int = 1_000_000):
    """Symmetric co-occurrence counts weighted by 1/distance, as a (vocab_size, vocab_size) float64 CSR matrix.

    ids: flat ids of every document (-1 = dropped token, removed before windowing); offsets: (n_docs + 1,)
    document boundaries into ids; remap, when given, maps ids to vocabulary ids (-1 = drop) chunk by chunk,
    so a corpus of type ids never needs a remapped copy. Worked example, window 2, one document:

        [0, 1, 2]  -> X[0,1] = X[1,0] = 1, X[1,2] = X[2,1] = 1, X[0,2] = X[2,0] = 1/2
        [0, -1, 2] -> X[0,2] = X[2,0] = 1  (the dropped token goes first, so 0 and 2 become neighbours)
        [0, 0]     -> X[0,0] = 2          (a pair of equal words counts in both directions, as in cooccur.c)

    Pairs are counted one way (left word, right word), summed block by block as sparse COO -> CSR, and the
    transpose is added at the end.
    """
    import scipy.sparse as sp

    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    offsets = np.asarray(offsets, dtype=np.int64)
    n_docs = len(offsets) - 1
    pending: list = [sp.coo_matrix((vocab_size, vocab_size), dtype=np.float64)]
    pending_nnz, total_nnz = 0, 0
    block = max(1, PAIR_BUDGET // window)  # left positions handled at once inside a chunk
    doc = 0
    while doc < n_docs:
        # a chunk of whole documents holding about chunk_tokens tokens (at least one document)
        stop = int(np.searchsorted(offsets, offsets[doc] + chunk_tokens, side="right")) - 1
        stop = min(max(stop, doc + 1), n_docs)
        raw = np.asarray(ids[offsets[doc]:offsets[stop]])
        if remap is not None:
            raw = remap[raw]
        doc_of = np.repeat(np.arange(stop - doc, dtype=np.int32), np.diff(offsets[doc:stop + 1]))
        keep = raw >= 0
        flat = raw[keep].astype(np.int64, copy=False)  # (n,) vocabulary ids, dropped tokens removed
        doc_of = doc_of[keep]
        n = len(flat)
        for start in range(0, n, block):
            end = min(n, start + block)
            lefts, rights, weights = [], [], []
            for distance in range(1, window + 1):
                if start + distance >= n:
                    break
                right_end = min(n, end + distance)
                same = doc_of[start:right_end - distance] == doc_of[start + distance:right_end]
                lefts.append(flat[start:right_end - distance][same])
                rights.append(flat[start + distance:right_end][same])
                weights.append(np.full(len(lefts[-1]), 1.0 / distance))
            if not lefts:
                continue
            left, right, weight = np.concatenate(lefts), np.concatenate(rights), np.concatenate(weights)
            part = sp.coo_matrix((weight, (left, right)),
                                 shape=(vocab_size, vocab_size)).tocsr().tocoo()  # duplicates summed
            pending.append(part)
            pending_nnz += part.nnz
            if pending_nnz > max(total_nnz, PAIR_BUDGET):  # merge rarely, so the total is copied O(log) times
                merged = _merge(pending, vocab_size).tocoo()
                pending, pending_nnz, total_nnz = [merged], 0, merged.nnz
        doc = stop
    one_way = _merge(pending, vocab_size)
    total = (one_way + one_way.T).tocsr()
    total.sort_indices()
    return total


def glove_weights(x: np.ndarray, x_max: float = 100.0, alpha: float = 0.75) -> np.ndarray:
    """f(x) = min(1, (x / x_max)^alpha): [1, 100, 1000] with x_max=100, alpha=0.75 -> [0.0316, 1.0, 1.0]."""
    return np.minimum(1.0, (np.asarray(x, dtype=np.float64) / x_max) ** alpha)


def fit_glove(cooccurrences, vector_size: int = 100, epochs: int = 25, x_max: float = 100.0, alpha: float = 0.75,
              learning_rate: float = 0.5, batch_size: int = 65536, seed: int = 0,
              on_epoch: Callable[[int, float], None] | None = None) -> tuple[np.ndarray, list[float]]:
    """Fit GloVe to a square co-occurrence matrix; returns (W + W~ as (V, dim) float32, loss per epoch).

    Every epoch shuffles the nonzero entries and walks them in minibatches; the gradient of a minibatch is
    summed per row (a sparse matrix product) and each touched row takes one AdaGrad step
    (accumulators start at 1, as in the reference code). The loss of an epoch is the mean over nonzero entries
    of 0.5 f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2, accumulated while the epoch runs (as the reference
    code reports it). `on_epoch(epoch, loss)` is called after every epoch (progress bars). Words that
    co-occur with nothing keep their small random start vector. Deterministic for a given seed.
    """
    coo = cooccurrences.tocoo()
    vocab_size = coo.shape[0]
    if coo.shape[0] != coo.shape[1]:
        raise ValueError(f"co-occurrence matrix must be square, got {coo.shape}")
    if coo.nnz and np.min(coo.data) <= 0:
        raise ValueError("co-occurrence counts must be positive")
    rng = np.random.default_rng(seed)
    rows, cols = coo.row.astype(np.int32), coo.col.astype(np.int32)
    log_x = np.log(coo.data).astype(np.float32)
    weight = glove_weights(coo.data, x_max, alpha).astype(np.float32)

    def uniform(*shape: int) -> np.ndarray:  # the reference code's start: uniform in (-0.5, 0.5) / dim
        return (rng.random(shape, dtype=np.float32) - 0.5) / vector_size

    word, context = uniform(vocab_size, vector_size), uniform(vocab_size, vector_size)
    word_bias, context_bias = uniform(vocab_size), uniform(vocab_size)
    squares = [np.ones_like(p) for p in (word, context, word_bias, context_bias)]
    losses: list[float] = []
    nnz = coo.nnz
    for epoch in range(epochs):
        order = rng.permutation(nnz)
        epoch_rows, epoch_cols, epoch_log_x, epoch_weight = rows[order], cols[order], log_x[order], weight[order]
        total = 0.0
        for start in range(0, nnz, batch_size):
            stop = min(nnz, start + batch_size)
            i, j = epoch_rows[start:stop], epoch_cols[start:stop]      # (B,), (B,)
            w_i, w_j = word.take(i, axis=0), context.take(j, axis=0)   # (B, D), (B, D)
            diff = np.einsum("bd,bd->b", w_i, w_j) + word_bias[i] + context_bias[j] - epoch_log_x[start:stop]  # (B,)
            f_diff = epoch_weight[start:stop] * diff                    # (B,) dJ/d(diff)
            total += 0.5 * float(f_diff @ diff)
            touched_i, sum_i = _group_rows(i, f_diff, vocab_size)                   # (U, B) sparse: row u sums entries of word u
            touched_j, sum_j = _group_rows(j, f_diff, vocab_size)
            _adagrad_step(word, squares[0], touched_i, sum_i @ w_j, learning_rate)     # (U, D) summed gradients
            _adagrad_step(word_bias, squares[2], touched_i, np.asarray(sum_i.sum(axis=1)).ravel(), learning_rate)
            _adagrad_step(context, squares[1], touched_j, sum_j @ w_i, learning_rate)
            _adagrad_step(context_bias, squares[3], touched_j, np.asarray(sum_j.sum(axis=1)).ravel(), learning_rate)
        loss = total / max(nnz, 1)
        losses.append(loss)
        if on_epoch is not None:
            on_epoch(epoch, loss)
    return (word + context).astype(np.float32), losses


def _group_rows(index: np.ndarray, values: np.ndarray, size: int):
    """Distinct indexes and a sparse (U, B) matrix whose row u holds `values` at the positions of the u-th
    distinct index (a counting sort, no comparison sort): index [3, 1, 3], values [a, b, c], size 4
    -> ([1, 3], [[0, b, 0], [a, 0, c]])."""
    import scipy.sparse as sp

    touched = np.flatnonzero(np.bincount(index, minlength=size))
    compact = np.zeros(size, dtype=np.int32)
    compact[touched] = np.arange(len(touched), dtype=np.int32)
    positions = np.arange(len(index), dtype=np.int32)
    matrix = sp.csr_matrix((values, (compact[index], positions)), shape=(len(touched), len(index)))
    return touched, matrix


def _adagrad_step(param: np.ndarray, square: np.ndarray, rows: np.ndarray, grad: np.ndarray, learning_rate: float) -> None:
    """AdaGrad on the given rows, in place: square += grad^2; param -= learning_rate * grad / sqrt(square)."""
    accumulated = square[rows] + grad * grad
    square[rows] = accumulated
    param[rows] -= learning_rate * grad / np.sqrt(accumulated)
