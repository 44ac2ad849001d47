"""Compiled (numba) loops behind nlp_pipeline.models.glove; importing this module imports numba.

Two jobs, each a plain loop that numpy can only do with large temporaries or a comparison sort:

- counting: `window_pairs` lists the (left word, right word, 1/distance) pairs of a block of positions,
  `sum_duplicates` groups triples by row with a counting sort and adds equal pairs up, and `add_transpose`
  makes the symmetric matrix with sorted rows (all linear in pairs + vocabulary, no comparison sort).
- fitting: `make_entries` packs each nonzero as one 16-byte record, `shuffle` permutes the walk order in place,
  and `fit_epoch` takes one AdaGrad step per entry (as the reference C code does) over `threads` contiguous
  slices of the shuffled order, one per thread, with no locks (hogwild: threads may overwrite each other's
  update of a shared row; rare at this vocabulary size, and the reference code does the same). With one
  thread it runs on the calling thread and repeats exactly.

Functions are cached on disk (numba's cache=True, next to this file or in the user cache) when a writable
place exists, so only the first process pays the compile (a few seconds). `_prefetch` is the one piece built
from numba's extension API (an LLVM prefetch hint); it only hides memory latency and changes no result.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

ENTRY = np.dtype([("row", np.int32), ("col", np.int32), ("log_x", np.float32), ("weight", np.float32)])
GATHER = 2048  # entries copied from the shuffled order into a local buffer at once (independent loads overlap)
AHEAD = 2      # the rows of the entry this many steps ahead are prefetched while the current one is stepped
LINE = 16      # float32 values per 64-byte cache line


def _compiled(**options):
    """njit with fastmath and numpy's error model (no zero-division checks, so loops vectorise), cached when a
    cache directory is writable; numba refuses cache=True at decoration time when none is."""
    def decorate(function):
        try:
            return njit(cache=True, fastmath=True, error_model="numpy", **options)(function)
        except RuntimeError:
            return njit(cache=False, fastmath=True, error_model="numpy", **options)(function)
    return decorate


@intrinsic
def _prefetch(typingctx, array, row, column):
    """Start loading the cache line of array[row, column] (a 2-D array) for writing; changes no value. Rows are
    picked at random, so without this every step waits for its rows to arrive from memory."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and isinstance(row, types.Integer)
            and isinstance(column, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        index = [context.cast(builder, value, kind, types.intp) for value, kind in zip(args[1:], signature.args[1:])]
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, index, wraparound=False)
        byte_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
                                                  "llvm.prefetch")  # (address, write, keep in all levels, data)
        builder.call(prefetch, [builder.bitcast(pointer, byte_pointer), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, row, column), codegen


# --- counting ---------------------------------------------------------------------------------------------------

@_compiled()
def window_pairs(flat, doc_of, start, end, window):
    """(left, right, 1/distance) for every left position in [start, end) and right position up to `window`
    tokens later in the same document: flat [4, 5, 6], doc_of [0, 0, 1], window 2 -> ([4], [5], [1.0])."""
    n = flat.shape[0]
    size = (end - start) * window
    left = np.empty(size, np.int32)
    right = np.empty(size, np.int32)
    weight = np.empty(size, np.float64)
    count = 0
    for p in range(start, end):
        for distance in range(1, window + 1):
            q = p + distance
            if q >= n or doc_of[q] != doc_of[p]:
                break  # doc_of never decreases: every later position is in another document too
            left[count] = flat[p]
            right[count] = flat[q]
            weight[count] = 1.0 / distance
            count += 1
    return left[:count].copy(), right[:count].copy(), weight[:count].copy()


@_compiled()
def sum_duplicates(rows, cols, values, size):
    """Triples grouped by row (ascending) with equal (row, col) summed; within a row, columns keep the order in
    which they first appear: rows [1, 0, 1, 1], cols [2, 3, 0, 2], values [a, b, c, d] -> rows [0, 1, 1],
    cols [3, 2, 0], values [b, a + d, c]. One counting-sort pass by row, then one pass that finds repeated
    columns of a row through a per-column slot (no comparison sort)."""
    n = rows.shape[0]
    starts = np.zeros(size + 1, np.int64)
    for k in range(n):
        starts[rows[k] + 1] += 1
    for v in range(size):
        starts[v + 1] += starts[v]
    fill = starts[:-1].copy()
    bucket_cols = np.empty(n, np.int32)
    bucket_values = np.empty(n, np.float64)
    for k in range(n):
        r = rows[k]
        bucket_cols[fill[r]] = cols[k]
        bucket_values[fill[r]] = values[k]
        fill[r] += 1
    out_rows = np.empty(n, np.int32)
    out_cols = np.empty(n, np.int32)
    out_values = np.empty(n, np.float64)
    slot = np.full(size, -1, np.int64)  # where column c went; positions before this row's first are stale
    u = 0
    for r in range(size):
        row_start = u
        for m in range(starts[r], starts[r + 1]):
            c = bucket_cols[m]
            if slot[c] >= row_start:
                out_values[slot[c]] += bucket_values[m]
            else:
                slot[c] = u
                out_rows[u] = r
                out_cols[u] = c
                out_values[u] = bucket_values[m]
                u += 1
    return out_rows[:u].copy(), out_cols[:u].copy(), out_values[:u].copy()


@_compiled()
def add_transpose(rows, cols, values, size):
    """X + X^T as triples sorted by (row, col), from X's triples grouped by row without duplicates:
    rows [0, 0, 1], cols [1, 0, 0], values [a, b, c] -> rows [0, 0, 1], cols [0, 1, 0], values [2b, a + c, a + c].
    Grouping X by column while walking it row by row lists X^T with sorted columns; doing that twice sorts X;
    then each row of X and of X^T are merged like two sorted lists."""
    transposed = sum_duplicates(cols, rows, values, size)
    ordered = sum_duplicates(transposed[1], transposed[0], transposed[2], size)
    n = rows.shape[0]
    out_rows = np.empty(2 * n, np.int32)
    out_cols = np.empty(2 * n, np.int32)
    out_values = np.empty(2 * n, np.float64)
    a, b, u = 0, 0, 0  # next entry of ordered (X), of transposed (X^T), of the output
    for r in range(size):
        while True:
            a_here = a < n and ordered[0][a] == r
            b_here = b < n and transposed[0][b] == r
            if not (a_here or b_here):
                break
            if a_here and b_here and ordered[1][a] == transposed[1][b]:
                out_cols[u], out_values[u] = ordered[1][a], ordered[2][a] + transposed[2][b]
                a += 1
                b += 1
            elif a_here and (not b_here or ordered[1][a] < transposed[1][b]):
                out_cols[u], out_values[u] = ordered[1][a], ordered[2][a]
                a += 1
            else:
                out_cols[u], out_values[u] = transposed[1][b], transposed[2][b]
                b += 1
            out_rows[u] = r
            u += 1
    return out_rows[:u].copy(), out_cols[:u].copy(), out_values[:u].copy()


# --- fitting ----------------------------------------------------------------------------------------------------

@_compiled()
def make_entries(rows, cols, counts, x_max, alpha):
    """One ENTRY record per nonzero: (row, col, log x, f(x) = min(1, (x / x_max)^alpha)), as glove_weights."""
    entries = np.empty(rows.shape[0], ENTRY)
    log_x_max = np.log(x_max)
    for k in range(rows.shape[0]):
        log_x = np.log(counts[k])
        entries[k].row = rows[k]
        entries[k].col = cols[k]
        entries[k].log_x = log_x
        entries[k].weight = np.exp(alpha * (log_x - log_x_max)) if counts[k] < x_max else 1.0
    return entries


@_compiled()
def shuffle(order, seed):
    """Fisher-Yates shuffle in place, drawing from splitmix64 started at `seed` (the same seed gives the same
    order): about 4x faster than numpy's generator for millions of entries."""
    state = np.uint64(seed)
    for k in range(order.shape[0] - 1, 0, -1):
        state += np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = np.int64(z % np.uint64(k + 1))
        order[k], order[j] = order[j], order[k]


@_compiled()
def _step(i, j, log_x, weight, word, context, word_bias, context_bias, square_word, square_context,
          square_word_bias, square_context_bias, learning_rate):
    """One AdaGrad step on the entry X_ij = exp(log_x) (accumulate the squared gradient, then divide by its
    root); returns the entry's loss 0.5 f (w_i . w~_j + b_i + b~_j - log X_ij)^2."""
    w, c = word[i], context[j]                     # (D,), (D,) views: updated in place
    square_w, square_c = square_word[i], square_context[j]
    dim = w.shape[0]
    diff = np.float32(0.0)
    for d in range(dim):
        diff += w[d] * c[d]
    diff += word_bias[i] + context_bias[j] - log_x
    f_diff = weight * diff                         # dJ/d(diff)
    for d in range(dim):
        grad_w = f_diff * c[d]
        grad_c = f_diff * w[d]
        square_w[d] += grad_w * grad_w
        square_c[d] += grad_c * grad_c
        w[d] -= learning_rate * grad_w / np.sqrt(square_w[d])
        c[d] -= learning_rate * grad_c / np.sqrt(square_c[d])
    square_word_bias[i] += f_diff * f_diff
    square_context_bias[j] += f_diff * f_diff
    word_bias[i] -= learning_rate * f_diff / np.sqrt(square_word_bias[i])
    context_bias[j] -= learning_rate * f_diff / np.sqrt(square_context_bias[j])
    return 0.5 * f_diff * diff


@_compiled()
def _walk(entries, order, start, stop, word, context, word_bias, context_bias, square_word, square_context,
          square_word_bias, square_context_bias, learning_rate):
    """Steps on entries[order[start:stop]] in that order; returns their summed loss (float64)."""
    buffer = np.empty(min(GATHER, max(stop - start, 1)), entries.dtype)
    total = 0.0
    for block in range(start, stop, GATHER):
        block_stop = min(stop, block + GATHER)
        for k in range(block, block_stop):
            buffer[k - block] = entries[order[k]]
        size = block_stop - block
        for k in range(size):
            if k + AHEAD < size:
                ahead = buffer[k + AHEAD]
                for column in range(0, word.shape[1], LINE):
                    _prefetch(word, ahead.row, column)
                    _prefetch(square_word, ahead.row, column)
                    _prefetch(context, ahead.col, column)
                    _prefetch(square_context, ahead.col, column)
            e = buffer[k]
            total += _step(e.row, e.col, e.log_x, e.weight, word, context, word_bias, context_bias, square_word,
                           square_context, square_word_bias, square_context_bias, learning_rate)
    return total


@_compiled()
def _epoch_serial(entries, order, losses, word, context, word_bias, context_bias, square_word, square_context,
                  square_word_bias, square_context_bias, learning_rate):
    losses[0] = _walk(entries, order, 0, order.shape[0], word, context, word_bias, context_bias, square_word,
                      square_context, square_word_bias, square_context_bias, learning_rate)


@_compiled(parallel=True)
def _epoch_parallel(entries, order, losses, word, context, word_bias, context_bias, square_word, square_context,
                    square_word_bias, square_context_bias, learning_rate):
    n, parts = order.shape[0], losses.shape[0]
    for part in prange(parts):  # one slice per thread, all writing the shared parameters (hogwild)
        losses[part] = _walk(entries, order, part * n // parts, (part + 1) * n // parts, word, context, word_bias,
                             context_bias, square_word, square_context, square_word_bias, square_context_bias,
                             learning_rate)


def fit_epoch(entries, order, parameters, squares, learning_rate: float, threads: int) -> float:
    """One pass over entries[order] (ENTRY records), updating `parameters` (W, W~, b, b~: float32) and their
    AdaGrad `squares` in place; returns the summed loss. threads = 1 runs serially and repeats exactly."""
    import numba

    rate = np.float32(learning_rate)
    if threads <= 1:
        losses = np.zeros(1)
        _epoch_serial(entries, order, losses, *parameters, *squares, rate)
        return float(losses[0])
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    losses = np.zeros(threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        _epoch_parallel(entries, order, losses, *parameters, *squares, rate)
    finally:
        numba.set_num_threads(previous)
    return float(losses.sum())
