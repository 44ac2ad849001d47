"""GloVe (Pennington, Socher & Manning, 2014): word vectors from a weighted least-squares fit of log co-occurrences.

Takes token ids already mapped to a vocabulary (flat int array + document offsets, -1 for dropped tokens) and
returns a (vocab_size, dim) float32 matrix W + W~ and the loss of every epoch. Two steps:

1. `count_cooccurrences`: symmetric windowed counts, a pair at distance d adds 1/d to X[a, b] and X[b, a].
   Dropped tokens (-1) are removed before windowing (as GloVe's cooccur.c skips out-of-vocabulary words);
   windows never cross documents. The corpus is streamed in chunks of whole documents and the pairs of one
   block are summed as they come, so memory is bounded by the matrix (plus the longest document), not by the
   corpus.
2. `fit_glove`: minimise sum over nonzero X_ij of f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2 with
   f(x) = min(1, (x / x_max)^alpha) by AdaGrad over the nonzero entries, shuffled every epoch.

Two implementations of each step, picked by `kernel`:
- "numba" (nlp_pipeline.models.glove_kernels): counting sums pairs with a counting sort; fitting takes one
  AdaGrad step per entry, as the reference C code does, on `threads` threads without locks (hogwild).
- "numpy" (the fallback when numba is not importable): counting sums pairs through scipy's COO -> CSR;
  fitting walks minibatches of `batch_size` entries and sums each row's gradients before one AdaGrad step.
"auto" takes numba when it imports. Both use the same AdaGrad (squared gradients accumulate from 1, the step
divides by their root) and the same learning rate, 0.5 by default. The reference code's 0.05 per entry (its
accumulator sums eta^2 g^2 and is read before the step: AdaGrad with rate 1 whose accumulator starts at
1/eta^2 = 400) learns too slowly for 5-25 epochs on a small corpus: on the ~900k tokens of
benchmarks/bench_embeddings.py, per-entry steps at 0.05 score wordsim353 rho -0.05 after 5 epochs and 0.13
after 25, at 0.5 they score 0.24 and 0.29 (the numpy minibatch path at 0.5: 0.21 and 0.24).

Speed there (4M nonzeros, 100 dims, one core of a shared 2-core machine): counting 0.4 s with numba, 0.8 s
with numpy; an epoch 0.55 s with numba (rows are prefetched a few entries ahead; the walk is bound by memory
latency, not arithmetic), 2.4 s with numpy. numba adds ~0.3 s per process to load its cached machine code
(~3 s to compile it the first time, cached on disk after that).

Limits: the matrix is held in memory (about 16 bytes per nonzero entry while counting, 20 while training with
numba: the entries plus a shuffled order; 40 with numpy), so the vocabulary is what bounds memory; a vocabulary
of 100k words on a large corpus can reach ~10^8 nonzeros (~3 GB). With more than one thread a run is not
bit-exact (threads race on shared rows); with threads=1 (or the numpy path) it repeats exactly for a seed.
The two kernels do not give the same vectors: per-entry and minibatch steps follow different paths.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

PAIR_BUDGET = 4_000_000  # pairs materialised at once while counting (~64 MB of temporaries)
KERNELS = ("auto", "numba", "numpy")


def resolve_kernel(kernel: str) -> str:
    """'numba' or 'numpy': "auto" -> 'numba' when numba imports, else 'numpy' (with a warning, once)."""
    if kernel not in KERNELS:
        raise ValueError(f"GloVe kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "numpy":
        return kernel
    try:
        import nlp_pipeline.models.glove_kernels  # noqa: F401  (imports numba and compiles lazily)
    except ImportError as error:
        if kernel == "numba":
            raise ImportError(f"GloVe kernel 'numba' needs numba ({error}); pip install numba") from error
        warnings.warn(f"numba is not importable ({error}); GloVe falls back to the slower numpy minibatch path; "
                      "pip install numba", stacklevel=3)
        return "numpy"
    return "numba"


def _window_pairs_numpy(flat: np.ndarray, doc_of: np.ndarray, start: int, end: int, window: int):
    """As glove_kernels.window_pairs, one vectorised slice per distance."""
    n = len(flat)
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
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0)
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(weights)


def _sum_duplicates_numpy(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, size: int):
    """As glove_kernels.sum_duplicates (grouped by row, duplicates summed) through scipy: COO -> CSR, which
    also sorts the columns of each row."""
    import scipy.sparse as sp

    coo = sp.coo_matrix((values, (rows, cols)), shape=(size, size)).tocsr().tocoo()
    return coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data


def _add_transpose_numpy(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, size: int):
    """As glove_kernels.add_transpose (X + X^T sorted by row, col), through scipy."""
    return _sum_duplicates_numpy(np.concatenate([rows, cols]), np.concatenate([cols, rows]),
                                 np.concatenate([values, values]), size)


def count_cooccurrences(ids: np.ndarray, offsets: np.ndarray, vocab_size: int, window: int = 10,
                        remap: np.ndarray | None = None, chunk_tokens: int = 1_000_000, kernel: str = "auto"):
    """Symmetric co-occurrence counts weighted by 1/distance, as a (vocab_size, vocab_size) float64 CSR matrix
    with sorted indices.

    ids: flat ids of every document (-1 = dropped token, removed before windowing); offsets: (n_docs + 1,)
    document boundaries into ids; remap, when given, maps ids to vocabulary ids (-1 = drop) chunk by chunk,
    so a corpus of type ids never needs a remapped copy. Worked example, window 2, one document:

        [0, 1, 2]  -> X[0,1] = X[1,0] = 1, X[1,2] = X[2,1] = 1, X[0,2] = X[2,0] = 1/2
        [0, -1, 2] -> X[0,2] = X[2,0] = 1  (the dropped token goes first, so 0 and 2 become neighbours)
        [0, 0]     -> X[0,0] = 2          (a pair of equal words counts in both directions, as in cooccur.c)

    Pairs are counted one way (left word, right word) block by block, each block's duplicates summed; blocks
    wait in a list that is summed whenever it outgrows the running total (so the total is copied O(log) times),
    and the transpose is added at the end. Memory: the blocks of PAIR_BUDGET pairs and about three copies of the
    one-way matrix's triples while the last sums run. `kernel`: "auto" | "numba" | "numpy" (see the module notes).
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if resolve_kernel(kernel) == "numba":
        from nlp_pipeline.models import glove_kernels

        window_pairs, sum_duplicates = glove_kernels.window_pairs, glove_kernels.sum_duplicates
        add_transpose = glove_kernels.add_transpose
    else:
        window_pairs, sum_duplicates, add_transpose = _window_pairs_numpy, _sum_duplicates_numpy, _add_transpose_numpy
    offsets = np.asarray(offsets, dtype=np.int64)
    n_docs = len(offsets) - 1
    empty = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [empty]  # (rows, cols, values) parts
    pending_nnz, total_nnz = 0, 0

    def summed(parts):
        return sum_duplicates(*(np.concatenate(column) for column in zip(*parts)), vocab_size)

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
        flat = raw[keep].astype(np.int32, copy=False)  # (n,) vocabulary ids, dropped tokens removed
        doc_of = doc_of[keep]
        for start in range(0, len(flat), block):
            left, right, weight = window_pairs(flat, doc_of, start, min(len(flat), start + block), window)
            if not len(left):
                continue
            part = sum_duplicates(left, right, weight, vocab_size)
            pending.append(part)
            pending_nnz += len(part[0])
            if pending_nnz > max(total_nnz, PAIR_BUDGET):  # merge rarely, so the total is copied O(log) times
                merged = summed(pending)
                pending, pending_nnz, total_nnz = [merged], 0, len(merged[0])
        doc = stop
    return _csr(*add_transpose(*summed(pending), vocab_size), vocab_size)


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, size: int):
    """A CSR matrix from triples already sorted by (row, col) without duplicates (no copy, no re-sort)."""
    import scipy.sparse as sp

    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=size), out=indptr[1:])
    index_dtype = np.int32 if len(values) < 2**31 else np.int64
    matrix = sp.csr_matrix((values, cols.astype(index_dtype, copy=False), indptr.astype(index_dtype)),
                           shape=(size, size))
    matrix.has_sorted_indices = True
    return matrix


def glove_weights(x: np.ndarray, x_max: float = 100.0, alpha: float = 0.75) -> np.ndarray:
    """f(x) = min(1, (x / x_max)^alpha): [1, 100, 1000] with x_max=100, alpha=0.75 -> [0.0316, 1.0, 1.0]."""
    return np.minimum(1.0, (np.asarray(x, dtype=np.float64) / x_max) ** alpha)


def fit_glove(cooccurrences, vector_size: int = 100, epochs: int = 25, x_max: float = 100.0, alpha: float = 0.75,
              learning_rate: float = 0.5, batch_size: int = 65536, seed: int = 0,
              on_epoch: Callable[[int, float], None] | None = None, threads: int = 1,
              kernel: str = "auto") -> tuple[np.ndarray, list[float]]:
    """Fit GloVe to a square co-occurrence matrix; returns (W + W~ as (V, dim) float32, loss per epoch).

    Every epoch shuffles the nonzero entries. kernel "numba" steps after every entry on `threads` threads
    (hogwild); "numpy" walks minibatches of `batch_size` entries, sums the gradient of a minibatch per row
    (a sparse matrix product) and each touched row takes one step; "auto" prefers numba. Both use AdaGrad
    with accumulators starting at 1 (as in the reference code): square += g^2, param -= learning_rate * g /
    sqrt(square). The loss of an epoch is the mean over nonzero entries of 0.5 f(X_ij) (w_i . w~_j + b_i + b~_j
    - log X_ij)^2, accumulated while the epoch runs (as the reference code reports it). `on_epoch(epoch, loss)`
    is called after every epoch (progress bars). Words that co-occur with nothing keep their small random start
    vector. Deterministic for a given seed with the numpy kernel or threads=1.
    """
    coo = cooccurrences.tocoo()
    vocab_size = coo.shape[0]
    if coo.shape[0] != coo.shape[1]:
        raise ValueError(f"co-occurrence matrix must be square, got {coo.shape}")
    if coo.nnz and np.min(coo.data) <= 0:
        raise ValueError("co-occurrence counts must be positive")
    use_numba = resolve_kernel(kernel) == "numba"
    rng = np.random.default_rng(seed)

    def uniform(*shape: int) -> np.ndarray:  # the reference code's start: uniform in (-0.5, 0.5) / dim
        return (rng.random(shape, dtype=np.float32) - 0.5) / vector_size

    word, context = uniform(vocab_size, vector_size), uniform(vocab_size, vector_size)
    word_bias, context_bias = uniform(vocab_size), uniform(vocab_size)
    parameters = (word, context, word_bias, context_bias)
    squares = tuple(np.ones_like(p) for p in parameters)
    if use_numba:
        from nlp_pipeline.models import glove_kernels

        # one record per entry (one cache miss, not four), walked through an order shuffled in place every epoch
        entries = glove_kernels.make_entries(coo.row, coo.col, coo.data, float(x_max), float(alpha))
        order = np.arange(coo.nnz, dtype=np.int32 if coo.nnz < 2**31 else np.int64)

        def run_epoch() -> float:
            glove_kernels.shuffle(order, int(rng.integers(2**63)))
            return glove_kernels.fit_epoch(entries, order, parameters, squares, learning_rate, threads)
    else:
        rows, cols = coo.row.astype(np.int32), coo.col.astype(np.int32)
        log_x = np.log(coo.data).astype(np.float32)
        weight = glove_weights(coo.data, x_max, alpha).astype(np.float32)

        def run_epoch() -> float:
            return _minibatch_epoch(rows, cols, log_x, weight, rng.permutation(coo.nnz), parameters, squares,
                                    learning_rate, batch_size)
    losses: list[float] = []
    for epoch in range(epochs):
        loss = run_epoch() / max(coo.nnz, 1)
        losses.append(loss)
        if on_epoch is not None:
            on_epoch(epoch, loss)
    return (word + context).astype(np.float32), losses


def _minibatch_epoch(rows, cols, log_x, weight, order, parameters, squares, learning_rate: float,
                     batch_size: int) -> float:
    """One numpy epoch over entries[order] in minibatches; updates in place, returns the summed loss."""
    word, context, word_bias, context_bias = parameters
    vocab_size = word.shape[0]
    epoch_rows, epoch_cols, epoch_log_x, epoch_weight = rows[order], cols[order], log_x[order], weight[order]
    total = 0.0
    for start in range(0, len(order), batch_size):
        stop = min(len(order), start + batch_size)
        i, j = epoch_rows[start:stop], epoch_cols[start:stop]      # (B,), (B,)
        w_i, w_j = word.take(i, axis=0), context.take(j, axis=0)   # (B, D), (B, D)
        diff = np.einsum("bd,bd->b", w_i, w_j) + word_bias[i] + context_bias[j] - epoch_log_x[start:stop]  # (B,)
        f_diff = epoch_weight[start:stop] * diff                    # (B,) dJ/d(diff)
        total += 0.5 * float(f_diff @ diff)
        touched_i, sum_i = _group_rows(i, f_diff, vocab_size)      # (U, B) sparse: row u sums entries of word u
        touched_j, sum_j = _group_rows(j, f_diff, vocab_size)
        _adagrad_step(word, squares[0], touched_i, sum_i @ w_j, learning_rate)     # (U, D) summed gradients
        _adagrad_step(word_bias, squares[2], touched_i, np.asarray(sum_i.sum(axis=1)).ravel(), learning_rate)
        _adagrad_step(context, squares[1], touched_j, sum_j @ w_i, learning_rate)
        _adagrad_step(context_bias, squares[3], touched_j, np.asarray(sum_j.sum(axis=1)).ravel(), learning_rate)
    return total


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
