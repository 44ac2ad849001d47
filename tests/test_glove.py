"""GloVe: co-occurrence counts checked against a matrix written out by hand, one AdaGrad step against a direct
numpy computation, and the loss falling on a tiny corpus."""

import numpy as np
import pytest

from nlp_pipeline.models import glove
from nlp_pipeline.models.glove import count_cooccurrences, fit_glove, glove_weights


def ragged(docs):
    ids = np.array([t for d in docs for t in d], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return ids, offsets


def test_cooccurrences_match_the_hand_written_matrix():
    # a=0 b=1 c=2; window 2; documents "a b c a" and "b b"
    # doc 1, distance 1: (a,b) (b,c) (c,a) weigh 1; distance 2: (a,c) (b,a) weigh 1/2; doc 2: (b,b) weighs 1
    # the matrix is symmetric: X[a,b] = 1 + 1/2, X[a,c] = 1/2 + 1, X[b,c] = 1, X[b,b] = 1 + 1 (both directions)
    # and the last 'a' of doc 1 never pairs with the 'b' of doc 2 (windows stop at document ends)
    ids, offsets = ragged([[0, 1, 2, 0], [1, 1]])
    matrix = count_cooccurrences(ids, offsets, vocab_size=3, window=2).toarray()
    expected = np.array([
        [0.0, 1.5, 1.5],
        [1.5, 2.0, 1.0],
        [1.5, 1.0, 0.0],
    ])
    np.testing.assert_allclose(matrix, expected)


def test_dropped_tokens_are_removed_before_windowing():
    ids, offsets = ragged([[0, -1, 1]])
    matrix = count_cooccurrences(ids, offsets, vocab_size=2, window=1).toarray()
    np.testing.assert_allclose(matrix, [[0.0, 1.0], [1.0, 0.0]])


def test_remap_applies_a_vocabulary_to_type_ids():
    # type ids 5 and 7 are words 0 and 1, type 6 is dropped
    ids, offsets = ragged([[5, 6, 7, 5]])
    remap = np.full(8, -1)
    remap[5], remap[7] = 0, 1
    matrix = count_cooccurrences(ids, offsets, vocab_size=2, window=1, remap=remap).toarray()
    np.testing.assert_allclose(matrix, [[0.0, 2.0], [2.0, 0.0]])


def test_streaming_in_small_chunks_gives_the_same_matrix(monkeypatch):
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(-1, 30, rng.integers(1, 40))) for _ in range(50)]
    ids, offsets = ragged(docs)
    whole = count_cooccurrences(ids, offsets, 30, window=4)
    monkeypatch.setattr(glove, "PAIR_BUDGET", 8)  # blocks of 2 left positions, merges every few blocks
    streamed = count_cooccurrences(ids, offsets, 30, window=4, chunk_tokens=7)
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


def test_weighting_function():
    np.testing.assert_allclose(glove_weights([1.0, 50.0, 100.0, 1000.0]), [100 ** -0.75, 0.5 ** 0.75, 1.0, 1.0])


def test_one_full_batch_step_matches_a_direct_computation():
    import scipy.sparse as sp

    x = sp.csr_matrix(np.array([[0.0, 2.0, 1.0], [2.0, 4.0, 0.5], [1.0, 0.5, 0.0]]))
    dim, rate, seed = 4, 0.5, 3
    vectors, losses = fit_glove(x, vector_size=dim, epochs=1, x_max=2.0, alpha=0.75, learning_rate=rate,
                                batch_size=100, seed=seed)
    # the same start as fit_glove: uniform(-0.5, 0.5) / dim for W, W~, b, b~ from one generator
    rng = np.random.default_rng(seed)
    w, c, bw, bc = [(rng.random(shape, dtype=np.float32) - 0.5) / dim for shape in [(3, dim), (3, dim), (3,), (3,)]]
    w, c, bw, bc = (a.astype(np.float64) for a in (w, c, bw, bc))
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


def test_loss_falls_and_runs_repeat_exactly():
    rng = np.random.default_rng(1)
    # two "topics": words 0-9 and 10-19 appear in separate documents
    docs = [list(rng.integers(0, 10, 30)) for _ in range(40)] + [list(rng.integers(10, 20, 30)) for _ in range(40)]
    ids, offsets = ragged(docs)
    matrix = count_cooccurrences(ids, offsets, 20, window=5)
    seen = []
    vectors, losses = fit_glove(matrix, vector_size=8, epochs=30, batch_size=64, seed=0,
                                on_epoch=lambda epoch, loss: seen.append(epoch))
    assert seen == list(range(30))
    assert vectors.shape == (20, 8) and vectors.dtype == np.float32
    # the loss starts near 3 (log counts of 30-80 against tiny random vectors) and falls by orders of magnitude
    assert losses[0] > 1.0
    assert losses[5] < 0.1 * losses[0]
    assert max(losses[-5:]) < 0.005 * losses[0]
    again, _ = fit_glove(matrix, vector_size=8, epochs=30, batch_size=64, seed=0)
    np.testing.assert_array_equal(vectors, again)
    # words of one topic end up closer to each other than to the other topic
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = units @ units.T
    within = (cos[:10, :10].sum() - 10) / 90
    across = cos[:10, 10:].mean()
    assert within > across + 0.3


def test_rejects_a_non_square_matrix():
    import scipy.sparse as sp

    with pytest.raises(ValueError, match="square"):
        fit_glove(sp.csr_matrix(np.ones((2, 3))), vector_size=2, epochs=1)
