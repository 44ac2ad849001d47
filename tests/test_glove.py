"""GloVe: co-occurrence counts checked against a matrix written out by hand (both kernels), one numpy minibatch
step and the numba per-entry steps against direct numpy computations, and the loss falling on a tiny corpus."""

import sys
import warnings

import numpy as np
import pytest

from nlp_pipeline.models import glove
from nlp_pipeline.models.glove import count_cooccurrences, fit_glove, glove_weights, resolve_kernel

KERNELS = ["numba", "numpy"]


def ragged(docs):
    ids = np.array([t for d in docs for t in d], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return ids, offsets


@pytest.mark.parametrize("kernel", KERNELS)
def test_cooccurrences_match_the_hand_written_matrix(kernel):
    # a=0 b=1 c=2; window 2; documents "a b c a" and "b b"
    # doc 1, distance 1: (a,b) (b,c) (c,a) weigh 1; distance 2: (a,c) (b,a) weigh 1/2; doc 2: (b,b) weighs 1
    # the matrix is symmetric: X[a,b] = 1 + 1/2, X[a,c] = 1/2 + 1, X[b,c] = 1, X[b,b] = 1 + 1 (both directions)
    # and the last 'a' of doc 1 never pairs with the 'b' of doc 2 (windows stop at document ends)
    ids, offsets = ragged([[0, 1, 2, 0], [1, 1]])
    matrix = count_cooccurrences(ids, offsets, vocab_size=3, window=2, kernel=kernel)
    assert matrix.has_sorted_indices
    matrix = matrix.toarray()
    expected = np.array([
        [0.0, 1.5, 1.5],
        [1.5, 2.0, 1.0],
        [1.5, 1.0, 0.0],
    ])
    np.testing.assert_allclose(matrix, expected)


@pytest.mark.parametrize("kernel", KERNELS)
def test_dropped_tokens_are_removed_before_windowing(kernel):
    ids, offsets = ragged([[0, -1, 1]])
    matrix = count_cooccurrences(ids, offsets, vocab_size=2, window=1, kernel=kernel).toarray()
    np.testing.assert_allclose(matrix, [[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("kernel", KERNELS)
def test_remap_applies_a_vocabulary_to_type_ids(kernel):
    # type ids 5 and 7 are words 0 and 1, type 6 is dropped
    ids, offsets = ragged([[5, 6, 7, 5]])
    remap = np.full(8, -1)
    remap[5], remap[7] = 0, 1
    matrix = count_cooccurrences(ids, offsets, vocab_size=2, window=1, remap=remap, kernel=kernel).toarray()
    np.testing.assert_allclose(matrix, [[0.0, 2.0], [2.0, 0.0]])


@pytest.mark.parametrize("kernel", KERNELS)
def test_streaming_in_small_chunks_gives_the_same_matrix(monkeypatch, kernel):
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(-1, 30, rng.integers(1, 40))) for _ in range(50)]
    ids, offsets = ragged(docs)
    whole = count_cooccurrences(ids, offsets, 30, window=4, kernel=kernel)
    monkeypatch.setattr(glove, "PAIR_BUDGET", 8)  # blocks of 2 left positions, merges every few blocks
    streamed = count_cooccurrences(ids, offsets, 30, window=4, chunk_tokens=7, kernel=kernel)
    assert whole.nnz > 100
    np.testing.assert_allclose(streamed.toarray(), whole.toarray(), rtol=1e-12)
    # brute force over the same documents
    brute = np.zeros((30, 30))
    for doc in docs:
        kept = [t for t in doc if t >= 0]
        for p in range(len(kept)):
            for q in range(max(0, p - 4), p):
                brute[kept[p], kept[q]] += 1 / (p - q)
                brute[kept[q], kept[p]] += 1 / (p - q)
    np.testing.assert_allclose(whole.toarray(), brute, rtol=1e-12)


def test_the_kernels_sum_pairs_like_their_worked_examples():
    from nlp_pipeline.models import glove_kernels

    left, right, weight = glove_kernels.window_pairs(np.array([4, 5, 6], np.int32), np.array([0, 0, 1], np.int32), 0, 3, 2)
    assert left.tolist() == [4] and right.tolist() == [5] and weight.tolist() == [1.0]
    rows, cols, values = glove_kernels.sum_duplicates(np.array([1, 0, 1, 1], np.int32), np.array([2, 3, 0, 2], np.int32),
                                                      np.array([0.5, 2.0, 4.0, 0.25]), 4)
    assert rows.tolist() == [0, 1, 1] and cols.tolist() == [3, 2, 0] and values.tolist() == [2.0, 0.75, 4.0]
    rows, cols, values = glove_kernels.add_transpose(np.array([0, 0, 1], np.int32), np.array([1, 0, 0], np.int32),
                                                     np.array([1.0, 2.0, 4.0]), 2)
    assert rows.tolist() == [0, 0, 1] and cols.tolist() == [0, 1, 0] and values.tolist() == [4.0, 5.0, 5.0]


def test_weighting_function():
    from nlp_pipeline.models import glove_kernels

    counts = np.array([1.0, 50.0, 100.0, 1000.0])
    np.testing.assert_allclose(glove_weights(counts), [100 ** -0.75, 0.5 ** 0.75, 1.0, 1.0])
    entries = glove_kernels.make_entries(np.arange(4, dtype=np.int32), np.arange(4, dtype=np.int32)[::-1].copy(), counts,
                                         100.0, 0.75)
    assert entries["row"].tolist() == [0, 1, 2, 3] and entries["col"].tolist() == [3, 2, 1, 0]
    np.testing.assert_allclose(entries["log_x"], np.log(counts), rtol=1e-6)
    np.testing.assert_allclose(entries["weight"], glove_weights(counts), rtol=1e-6)


def test_the_shuffle_is_a_permutation_fixed_by_its_seed():
    from nlp_pipeline.models import glove_kernels

    orders = []
    for seed in (7, 7, 8):
        order = np.arange(1000, dtype=np.int32)
        glove_kernels.shuffle(order, seed)
        orders.append(order)
    assert sorted(orders[0]) == list(range(1000)) and (orders[0] != np.arange(1000)).mean() > 0.9
    np.testing.assert_array_equal(orders[0], orders[1])
    assert (orders[0] != orders[2]).any()


HAND = np.array([[0.0, 2.0, 1.0], [2.0, 4.0, 0.5], [1.0, 0.5, 0.0]])  # 7 nonzero entries, one on the diagonal


def start_vectors(seed, vocab, dim):
    """The same start as fit_glove: uniform(-0.5, 0.5) / dim for W, W~, b, b~ from one generator (float64 copies)."""
    rng = np.random.default_rng(seed)
    start = [(rng.random(shape, dtype=np.float32) - 0.5) / dim for shape in [(vocab, dim), (vocab, dim), (vocab,), (vocab,)]]
    return rng, [a.astype(np.float64) for a in start]


def test_one_full_batch_step_of_the_numpy_kernel_matches_a_direct_computation():
    import scipy.sparse as sp

    x = sp.csr_matrix(HAND)
    dim, rate, seed = 4, 0.5, 3
    vectors, losses = fit_glove(x, vector_size=dim, epochs=1, x_max=2.0, alpha=0.75, learning_rate=rate,
                                batch_size=100, seed=seed, kernel="numpy")
    _, (w, c, bw, bc) = start_vectors(seed, 3, dim)
    coo = x.tocoo()
    i, j, value = coo.row, coo.col, coo.data
    f = np.minimum(1.0, (value / 2.0) ** 0.75)
    diff = (w[i] * c[j]).sum(1) + bw[i] + bc[j] - np.log(value)
    assert losses[0] == pytest.approx(np.mean(0.5 * f * diff ** 2), rel=1e-5)
    grad_w, grad_c = np.zeros_like(w), np.zeros_like(c)
    np.add.at(grad_w, i, (f * diff)[:, None] * c[j])
    np.add.at(grad_c, j, (f * diff)[:, None] * w[i])
    w_new = w - rate * grad_w / np.sqrt(1 + grad_w ** 2)
    c_new = c - rate * grad_c / np.sqrt(1 + grad_c ** 2)
    np.testing.assert_allclose(vectors, w_new + c_new, rtol=1e-4, atol=1e-6)


def test_the_numba_kernel_steps_after_every_entry_like_a_direct_computation():
    import scipy.sparse as sp

    from nlp_pipeline.models import glove_kernels

    x = sp.csr_matrix(HAND)
    dim, rate, seed, epochs = 4, 0.5, 3, 2
    vectors, losses = fit_glove(x, vector_size=dim, epochs=epochs, x_max=2.0, alpha=0.75, learning_rate=rate,
                                seed=seed, threads=1, kernel="numba")
    rng, (w, c, bw, bc) = start_vectors(seed, 3, dim)
    coo = x.tocoo()
    params, squares = [w, c, bw, bc], [np.ones_like(a) for a in (w, c, bw, bc)]

    def adagrad(k, index, grad):  # square += g^2; param -= rate * g / sqrt(square)
        squares[k][index] += grad ** 2
        params[k][index] -= rate * grad / np.sqrt(squares[k][index])

    order = np.arange(coo.nnz, dtype=np.int32)
    expected_losses = []
    for _ in range(epochs):
        glove_kernels.shuffle(order, int(rng.integers(2**63)))  # seeded by the generator that drew the start
        total = 0.0
        for e in order:
            i, j, value = coo.row[e], coo.col[e], coo.data[e]
            f = min(1.0, (value / 2.0) ** 0.75)
            diff = w[i] @ c[j] + bw[i] + bc[j] - np.log(value)
            total += 0.5 * f * diff ** 2
            grad_w, grad_c = f * diff * c[j], f * diff * w[i]  # both from the values before this step
            adagrad(0, i, grad_w)
            adagrad(1, j, grad_c)
            adagrad(2, i, f * diff)
            adagrad(3, j, f * diff)
        expected_losses.append(total / coo.nnz)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-4)
    np.testing.assert_allclose(vectors, w + c, rtol=1e-4, atol=1e-6)


def two_topic_matrix():
    rng = np.random.default_rng(1)
    # two "topics": words 0-9 and 10-19 appear in separate documents
    docs = [list(rng.integers(0, 10, 30)) for _ in range(40)] + [list(rng.integers(10, 20, 30)) for _ in range(40)]
    ids, offsets = ragged(docs)
    return count_cooccurrences(ids, offsets, 20, window=5)


def cosines(vectors):
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return units @ units.T


@pytest.mark.parametrize("kernel", KERNELS)
def test_loss_falls_and_runs_repeat_exactly(kernel):
    matrix = two_topic_matrix()
    seen = []
    vectors, losses = fit_glove(matrix, vector_size=8, epochs=30, batch_size=64, seed=0, threads=1, kernel=kernel,
                                on_epoch=lambda epoch, loss: seen.append(epoch))
    assert seen == list(range(30))
    assert vectors.shape == (20, 8) and vectors.dtype == np.float32
    # the loss starts near 3 (log counts of 30-80 against tiny random vectors) and falls by orders of magnitude
    assert losses[0] > 1.0
    assert losses[5] < 0.1 * losses[0]
    assert max(losses[-5:]) < 0.005 * losses[0]
    again, again_losses = fit_glove(matrix, vector_size=8, epochs=30, batch_size=64, seed=0, threads=1, kernel=kernel)
    np.testing.assert_array_equal(vectors, again)
    assert again_losses == losses
    # words of one topic end up closer to each other than to the other topic
    cos = cosines(vectors)
    within = (cos[:10, :10].sum() - 10) / 90
    across = cos[:10, 10:].mean()
    assert within > across + 0.3


def test_both_kernels_reach_the_same_fit_of_a_tiny_matrix():
    # a 3-word matrix is fitted exactly by 4 dimensions: both optimisers drive the loss to ~0, and then the
    # word + context vectors reproduce the same similarities up to the (non-unique) split into W and W~
    import scipy.sparse as sp

    x = sp.csr_matrix(HAND)
    fits = {kernel: fit_glove(x, vector_size=4, epochs=400, x_max=2.0, batch_size=7, seed=0, threads=1, kernel=kernel)
            for kernel in KERNELS}
    for kernel, (vectors, losses) in fits.items():
        assert losses[-1] < 1e-6 * losses[0], kernel
    # the topic problem: cosine similarities of the two kernels' vectors agree closely
    matrix = two_topic_matrix()
    numba_vectors, _ = fit_glove(matrix, vector_size=8, epochs=30, seed=0, threads=1, kernel="numba")
    numpy_vectors, _ = fit_glove(matrix, vector_size=8, epochs=30, batch_size=64, seed=0, kernel="numpy")
    upper = np.triu_indices(20, 1)
    agreement = np.corrcoef(cosines(numba_vectors)[upper], cosines(numpy_vectors)[upper])[0, 1]
    assert agreement > 0.9


def test_threads_share_the_work_and_still_fit():
    matrix = two_topic_matrix()
    vectors, losses = fit_glove(matrix, vector_size=8, epochs=30, seed=0, threads=2, kernel="numba")
    assert np.isfinite(vectors).all() and len(losses) == 30
    assert max(losses[-5:]) < 0.005 * losses[0]
    cos = cosines(vectors)
    assert (cos[:10, :10].sum() - 10) / 90 > cos[:10, 10:].mean() + 0.3


def test_kernel_choice_and_the_numpy_fallback(monkeypatch):
    with pytest.raises(ValueError, match="kernel must be one of auto, numba, numpy"):
        resolve_kernel("cuda")
    assert resolve_kernel("auto") == "numba" and resolve_kernel("numpy") == "numpy"
    monkeypatch.setitem(sys.modules, "nlp_pipeline.models.glove_kernels", None)  # as if numba were missing
    with pytest.warns(UserWarning, match="falls back to the slower numpy"):
        assert resolve_kernel("auto") == "numpy"
    with pytest.raises(ImportError, match="needs numba"):
        resolve_kernel("numba")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, offsets = ragged([[0, 1, 2, 0], [1, 1]])
        fallback = count_cooccurrences(ids, offsets, vocab_size=3, window=2)
        vectors, losses = fit_glove(fallback, vector_size=4, epochs=2, seed=0)
    np.testing.assert_allclose(fallback.toarray(), [[0.0, 1.5, 1.5], [1.5, 2.0, 1.0], [1.5, 1.0, 0.0]])
    expected, expected_losses = fit_glove(fallback, vector_size=4, epochs=2, seed=0, kernel="numpy")
    np.testing.assert_array_equal(vectors, expected)
    assert losses == expected_losses


def test_rejects_a_non_square_matrix():
    import scipy.sparse as sp

    with pytest.raises(ValueError, match="square"):
        fit_glove(sp.csr_matrix(np.ones((2, 3))), vector_size=2, epochs=1)
