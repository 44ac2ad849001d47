import dataclasses

import numpy as np
import pytest

from helpers import make_tokens
from nlp_pipeline.stages.lsa import LsaConfig, _id_docs, fit_lsa, summarize
from nlp_pipeline.targets import carve


def test_id_docs_leave_out_the_special_tokens():
    tokens = make_tokens([["xxbos", "a", "b"], ["xxbos", "b", "xxpad", "c"]], [0, 1], ["train", "train"], ["x", "y"])
    assert [[tokens.types[i] for i in doc] for doc in _id_docs(tokens)] == [["a", "b"], ["b", "c"]]


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
    result = fit_lsa(LsaConfig(n_components=2, min_df=1, max_df=1.0, c_grid=[1.0]), tokens, carve(tokens, fraction=0.25))
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


FILLER = ["the", "a", "of", "and", "to", "in", "it", "is", "was", "for"]


def _tokens_with(docs: list[list[str]], labels: np.ndarray, splits: list[str], names: list[str], target_type: str):
    tokens = make_tokens([["xxbos"] + d for d in docs], [0] * len(docs), splits, names)
    return dataclasses.replace(tokens, labels=labels, target_type=target_type)


def _regression_tokens(n: int = 160):
    """Target = how often "good" occurs (0..4) among 6 filler words; the last 40 documents are test, two unlabelled."""
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, n)
    docs = [list(rng.choice(FILLER, 6)) + ["good"] * int(c) for c in counts]
    for doc in docs:
        rng.shuffle(doc)
    labels = counts.astype(np.float32)
    labels[[0, n - 1]] = np.nan
    return _tokens_with(docs, labels, ["train"] * (n - 40) + ["test"] * 40, ["stars"], "regression")


def test_regression_baselines_are_ridge_and_learn_a_word_count():
    tokens = _regression_tokens()
    result = fit_lsa(LsaConfig(n_components=10, min_df=1, max_df=1.0, sublinear_tf=False), tokens)
    assert "lsa_logreg" not in result.metrics and "tfidf_logreg" not in result.metrics
    for name in ("lsa_ridge", "tfidf_ridge"):
        metrics = result.metrics[name]
        assert metrics["r2"] > 0.5, (name, metrics)              # the mean predictor scores 0
        assert metrics["n"] == 39                                # the unlabelled test document is left out
        assert {"rmse", "mae", "pearson", "spearman", "validation_r2", "C", "seconds"} <= set(metrics)
        assert metrics["C"] in LsaConfig().c_grid
    assert result.target_type == "regression" and result.labels.dtype == np.float32 and np.isnan(result.labels[0])
    line = summarize(result)
    assert set(line) == {"n_components", "topic_0", "lsa_ridge_r2", "tfidf_ridge_r2"}


def _multi_label_tokens(n: int = 120):
    """Label "animals" when an animal word occurs, "finance" when a finance word does (either, both or neither);
    "sports" is never positive. The last 30 documents are test."""
    rng = np.random.default_rng(1)
    animals, finance = ["cat", "dog", "pet", "fur"], ["stock", "market", "price", "trade"]
    labels = np.zeros((n, 3), np.int8)
    docs = []
    for i in range(n):
        doc = list(rng.choice(FILLER, 4))
        for j, family in enumerate((animals, finance)):
            if rng.random() < 0.5:
                labels[i, j] = 1
                doc += list(rng.choice(family, 2))
        rng.shuffle(doc)
        docs.append(doc)
    labels[5] = -1                                               # an unlabelled training document
    return _tokens_with(docs, labels, ["train"] * (n - 30) + ["test"] * 30, ["animals", "finance", "sports"], "multi_label")


def test_multi_label_baselines_are_one_vs_rest_and_beat_trivial_predictors():
    tokens = _multi_label_tokens()
    result = fit_lsa(LsaConfig(n_components=15, min_df=1, max_df=1.0), tokens)  # 18 terms: fewer lose a family to filler
    truth = np.asarray(tokens.labels)[tokens.indices("test")]
    share = truth.sum() / truth.size
    predict_all = 2 * share / (share + 1)                       # micro-F1 of predicting every label; nothing scores 0
    for name in ("lsa_logreg", "tfidf_logreg"):
        metrics = result.metrics[name]
        assert metrics["micro_f1"] > max(0.8, predict_all + 0.2), (name, metrics, predict_all)
        assert metrics["per_class"]["sports"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        assert {"macro_f1", "subset_accuracy", "hamming_loss", "validation_micro_f1", "C", "seconds"} <= set(metrics)
    assert result.target_type == "multi_label" and result.labels.shape == (120, 3) and result.labels.dtype == np.int8
    line = summarize(result)
    assert {"lsa_logreg_micro_f1", "lsa_logreg_macro_f1", "tfidf_logreg_micro_f1", "tfidf_logreg_macro_f1"} <= set(line)


def test_multi_label_with_one_label_and_a_dev_split():
    """One indicator column (sklearn would read it as two classes) and C chosen on the corpus's dev split."""
    tokens = _multi_label_tokens()
    labels = np.asarray(tokens.labels)[:, 1:2].copy()            # "finance" alone
    splits = ["train"] * 70 + ["dev"] * 20 + ["test"] * 30
    tokens = _tokens_with([[t for t in tokens.doc(i) if t != "xxbos"] for i in range(len(tokens))], labels, splits,
                          ["finance"], "multi_label")
    result = fit_lsa(LsaConfig(n_components=4, min_df=1, max_df=1.0), tokens)
    assert result.metrics["tfidf_logreg"]["micro_f1"] > 0.8
    assert list(result.metrics["tfidf_logreg"]["per_class"]) == ["finance"]


def test_class_baseline_keys_stay():
    tokens = _toy_tokens()
    result = fit_lsa(LsaConfig(n_components=2, min_df=1, max_df=1.0, c_grid=[1.0]), tokens, carve(tokens, fraction=0.25))
    assert {"accuracy", "macro_f1", "validation_accuracy", "C", "seconds"} <= set(result.metrics["tfidf_logreg"])
    assert result.labels.dtype == np.int32 and result.target_type == "class"
    assert summarize(result) == {"n_components": 2, "topic_0": result.topic_terms[0][:5], "lsa_logreg_accuracy": 1.0,
                                 "lsa_logreg_macro_f1": 1.0, "tfidf_logreg_accuracy": 1.0, "tfidf_logreg_macro_f1": 1.0}


def test_a_carve_of_another_corpus_is_refused_in_one_line():
    from nlp_pipeline.core.errors import DataError

    tokens = _toy_tokens()
    other = carve(make_tokens([["xxbos", "a"]] * 4, [0, 1, 0, 1], ["train"] * 4, ["x", "y"]))
    with pytest.raises(DataError, match=r"^the validation carve is of 4 documents but the data has 10; ") as caught:
        fit_lsa(LsaConfig(n_components=2, min_df=1, max_df=1.0, c_grid=[1.0]), tokens, other)
    assert "\n" not in str(caught.value)
