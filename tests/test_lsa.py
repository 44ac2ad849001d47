import numpy as np
import pytest

from helpers import make_tokens
from nlp_pipeline.stages.lsa import LsaConfig, _ngrams, fit_lsa, validation_split


def test_ngrams_worked_example():
    assert _ngrams(["a", "b", "c"], 2) == ["a", "b", "c", "a b", "b c"]


def test_validation_split_is_stratified_and_seeded():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    fit, held = validation_split(labels, 0.5, seed=0)
    assert sorted(np.concatenate([fit, held]).tolist()) == list(range(10))
    assert np.bincount(labels[held]).tolist() == [2, 3]
    again_fit, again_held = validation_split(labels, 0.5, seed=0)
    assert held.tolist() == again_held.tolist()


def _toy_tokens():
    docs = [
        ["cat", "dog", "pet"], ["dog", "pet", "fur"], ["cat", "fur", "pet"], ["dog", "cat", "pet"],
        ["stock", "market", "price"], ["market", "price", "trade"], ["stock", "trade", "price"], ["market", "stock", "trade"],
        ["pet", "cat", "dog"], ["price", "market", "stock"],
    ]
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 0, 1]
    splits = ["train"] * 8 + ["test"] * 2
    return make_tokens([["xxbos"] + d for d in docs], labels, splits, ["animals", "finance"])


def test_lsa_matches_numpy_svd_up_to_sign():
    from sklearn.feature_extraction.text import TfidfVectorizer

    tokens = _toy_tokens()
    result = fit_lsa(LsaConfig(n_components=2, min_df=1, max_df=1.0, c_grid=[1.0], validation_size=0.25), tokens)
    docs = [[t for t in tokens.doc(i) if t != "xxbos"] for i in range(len(tokens))]
    tfidf = TfidfVectorizer(analyzer=lambda d: d, min_df=1, max_df=1.0, sublinear_tf=True)
    tfidf.fit(docs[:8])
    matrix = tfidf.transform(docs).toarray()
    _, singular, vt = np.linalg.svd(matrix[:8], full_matrices=False)
    oracle = matrix @ vt[:2].T                                   # projection on the top-2 right singular vectors
    ours = np.asarray(result.doc_vectors, dtype=np.float64)
    for k in range(2):
        sign = np.sign(ours[:, k] @ oracle[:, k])
        np.testing.assert_allclose(ours[:, k] * sign, oracle[:, k], atol=1e-4)
    assert result.doc_vectors.shape == (10, 2)
    assert set(result.topic_terms[0][:3]) | set(result.topic_terms[1][:3])  # terms listed per component
    assert result.metrics["lsa_logreg"]["accuracy"] == 1.0
    assert result.metrics["tfidf_logreg"]["accuracy"] == 1.0


def test_unlabelled_corpus_skips_classifiers():
    tokens = _toy_tokens()
    tokens.labels[:] = -1
    tokens.splits[:] = 3
    result = fit_lsa(LsaConfig(n_components=2, min_df=1, max_df=1.0), tokens)
    assert "lsa_logreg" not in result.metrics and result.doc_vectors.shape == (10, 2)
