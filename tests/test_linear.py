"""nlp_pipeline.models.linear, the TF-IDF n-gram logistic regression over token ids:

- ngram_keys by hand;
- features() against scikit-learn's TfidfVectorizer(sublinear_tf=True, min_df=...) on the same documents written
  as string tokens, column by column (unigram "i" -> column i, an n-gram -> vocab_size + its rank among the kept keys);
- linear_proba() against LogisticRegression.predict_proba refit with the chosen C on the same features
  (binary and 3 classes), rows summing to 1, no documents -> (0, k);
- fit_linear learns a small separable problem, picks C from the grid with one CV score per C;
- a class absent from the fitting documents still has a column of probabilities and never wins;
- the settings()/arrays() round trip, in memory and through safetensors;
- the pad id is never a feature.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from nlp_pipeline.models.linear import (
    LinearModel, features, fit_linear, linear_proba, ngram_keys,
)

V = 12
PAD = 1

# Every unigram here occurs in >= 2 documents, so sklearn's min_df (which also filters unigrams) drops only
# n-grams, exactly like linear.py (which keeps every unigram id as a column). Some bigrams/trigrams occur in a
# single document (e.g. 4-2, 9-8, 5-6-7) and some repeat inside a document (2-3 twice in doc 0).
SMALL_DOCS = [
    np.array([2, 3, 4, 2, 3, 2]),
    np.array([3, 4, 5, 6, 7]),
    np.array([5, 6, 7, 8, 9, 9]),
    np.array([2, 3, 9, 8, 7]),
    np.array([4, 5, 6, 8, 10, 11, 10]),
    np.array([11, 10, 2, 3, 4]),
]


def as_strings(doc: np.ndarray, ngrams: int) -> list[str]:
    """The unigrams and n-grams (n <= ngrams) of one id array as strings, e.g. [2, 3] -> ["2", "3", "2_3"]."""
    toks = [str(int(t)) for t in doc]
    out = list(toks)
    for n in range(2, ngrams + 1):
        out += ["_".join(toks[j:j + n]) for j in range(len(toks) - n + 1)]
    return out


def identity(tokens):
    return tokens


def column_of(model: LinearModel, term: str) -> int:
    """linear.py's column of a sklearn term string."""
    ids = [int(t) for t in term.split("_")]
    if len(ids) == 1:
        return ids[0]
    offset = model.vocab_size + sum(len(k) for k in model.keys[: len(ids) - 2])
    known = model.keys[len(ids) - 2]
    key = int(ngram_keys(np.array(ids), len(ids), model.vocab_size)[0])
    pos = int(np.searchsorted(known, key))
    assert pos < len(known) and known[pos] == key, term
    return offset + pos


def separable(n_docs: int, n_classes: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Class c draws 3 of its own 4 ids (2 + 4c ..) plus 3 shared noise ids (from 30..37)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_docs) % n_classes
    rng.shuffle(y)
    docs = []
    for c in y:
        own = rng.choice(np.arange(2 + 4 * c, 6 + 4 * c), 3)
        noise = rng.choice(np.arange(30, 38), 3)
        doc = np.concatenate([own, noise])
        rng.shuffle(doc)
        docs.append(doc)
    return docs, y


# --- ngram_keys ---------------------------------------------------------------------------------------------

def test_doc_terms_match_ngram_keys_document_by_document():
    from nlp_pipeline.models.linear import _doc_terms

    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 9, size=n) for n in (0, 1, 2, 5, 3, 0, 7)]  # empty and short documents too
    terms = _doc_terms(docs, 3, 9, pad_id=1)
    for n, (rows, keys) in zip((1, 2, 3), terms):
        expected_rows, expected_keys = [], []
        for i, doc in enumerate(docs):
            k = ngram_keys(doc[doc != 1], n, 9)
            expected_rows += [i] * len(k)
            expected_keys += k.tolist()
        assert rows.tolist() == expected_rows and keys.tolist() == expected_keys
    assert [len(k) for _, k in _doc_terms([], 2, 9, pad_id=-1)] == [0, 0]


def test_ngram_keys_by_hand():
    assert ngram_keys(np.array([1, 2, 3]), 2, 10).tolist() == [12, 23]
    assert ngram_keys(np.array([1, 2, 3]), 3, 10).tolist() == [123]
    assert ngram_keys(np.array([1, 2, 3]), 1, 10).tolist() == [1, 2, 3]
    assert ngram_keys(np.array([4, 0, 7]), 2, 100).tolist() == [400, 7]
    assert ngram_keys(np.array([1, 2]), 3, 10).tolist() == []
    assert ngram_keys(np.array([], np.int64), 2, 10).tolist() == []
    assert ngram_keys(np.array([1, 2]), 3, 10).dtype == np.int64


def test_ngram_keys_near_the_documented_limit_do_not_overflow():
    v = 2_000_000
    keys = ngram_keys(np.array([v - 1, v - 1, v - 1]), 3, v)
    assert keys.tolist() == [(v - 1) * v * v + (v - 1) * v + (v - 1)]
    assert keys[0] > 0


# --- features vs scikit-learn -------------------------------------------------------------------------------

@pytest.mark.parametrize("ngrams,min_df", [(1, 2), (2, 2), (2, 1), (3, 2)])
def test_features_equal_sklearn_tfidf_with_columns_mapped(ngrams, min_df):
    model = fit_linear(SMALL_DOCS, np.array([0, 1, 0, 1, 0, 1]), n_classes=2, ngrams=ngrams, vocab_size=V,
                       c_grid=[1.0], seed=0, min_df=min_df)
    ours = features(model, SMALL_DOCS).toarray()

    vec = TfidfVectorizer(analyzer=identity, sublinear_tf=True, min_df=min_df, dtype=np.float64)
    ref = vec.fit_transform([as_strings(d, ngrams) for d in SMALL_DOCS]).toarray()

    # same set of n-grams kept
    kept = sorted(column_of(model, t) for t in vec.vocabulary_ if "_" in t)
    assert kept == list(range(V, ours.shape[1]))
    # every sklearn column equals linear.py's column for the same term, including the idf
    for term, j in vec.vocabulary_.items():
        col = column_of(model, term)
        np.testing.assert_allclose(ours[:, col], ref[:, j], atol=1e-6, err_msg=term)
        np.testing.assert_allclose(model.idf[col], vec.idf_[j], rtol=1e-6, err_msg=term)
    # the remaining columns (vocab ids that never occur: 0, 1) are empty
    used = {column_of(model, t) for t in vec.vocabulary_}
    assert sorted(set(range(ours.shape[1])) - used) == [0, 1]
    assert not ours[:, [0, 1]].any()


@pytest.mark.parametrize("ngrams,min_df,max_df,sublinear", [(2, 2, 0.5, False), (3, 1, 1.0, True), (1, 3, 0.6, True)])
def test_fit_tfidf_equals_sklearn_tfidf_with_its_min_df_max_df_and_sublinear_options(ngrams, min_df, max_df, sublinear):
    """The lsa stage's baseline columns: scikit-learn's TfidfVectorizer(min_df, max_df, sublinear_tf) on the
    same tokens, every term's column equal; the columns sklearn drops (idf 0 here) are empty."""
    from nlp_pipeline.models.linear import fit_tfidf

    docs = SMALL_DOCS + [np.array([2, 3, 4, 5, 10])]  # 2, 3, 4, 5 now in most documents: max_df drops some
    columns, rows = fit_tfidf(docs, ngrams, V, min_df=min_df, max_df=max_df, sublinear=sublinear, unigram_min_df=True)
    ours = features(columns, docs).toarray()
    np.testing.assert_allclose(rows.toarray(), ours, atol=1e-6)
    vec = TfidfVectorizer(analyzer=identity, sublinear_tf=sublinear, min_df=min_df, max_df=max_df, dtype=np.float64)
    ref = vec.fit_transform([as_strings(d, ngrams) for d in docs]).toarray()
    used = set()
    for term, j in vec.vocabulary_.items():
        col = column_of(columns, term)
        used.add(col)
        np.testing.assert_allclose(ours[:, col], ref[:, j], atol=1e-6, err_msg=term)
    assert len(vec.vocabulary_) < V + sum(len(k) for k in columns.keys)  # options dropped something
    assert not ours[:, sorted(set(range(ours.shape[1])) - used)].any()


def test_bigram_keys_are_those_in_at_least_min_df_documents():
    model = fit_linear(SMALL_DOCS, np.array([0, 1, 0, 1, 0, 1]), n_classes=2, ngrams=2, vocab_size=V,
                       c_grid=[1.0], seed=0)
    # 2-3 (docs 0, 3, 5), 3-4 (0, 1, 5), 4-5 (1, 4), 5-6 (1, 2, 4), 6-7 (1, 2), 11-10 (4, 5); 2-3 twice in
    # doc 0 counts once; 4-2, 3-2, 7-8, 8-9, 9-9, 3-9, 9-8, 8-7, 6-8, 8-10, 10-11, 10-2 are in one document each
    expected = sorted(a * V + b for a, b in [(2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (11, 10)])
    assert expected == [27, 40, 53, 66, 79, 142]
    assert model.keys[0].tolist() == expected
    assert len(model.idf) == V + 6
    # idf of 2-3: df = 3 of N = 6
    assert model.idf[V + expected.index(2 * V + 3)] == pytest.approx(np.log(7 / 4) + 1, rel=1e-6)


def test_feature_rows_are_l2_normalised_and_unknown_ngrams_dropped():
    model = fit_linear(SMALL_DOCS, np.array([0, 1, 0, 1, 0, 1]), n_classes=2, ngrams=2, vocab_size=V,
                       c_grid=[1.0], seed=0)
    x = features(model, [np.array([2, 3, 2, 3]), np.array([7, 2]), np.array([], np.int64)]).toarray()
    np.testing.assert_allclose(np.linalg.norm(x[:2], axis=1), 1.0, atol=1e-6)
    assert not x[2].any()
    # [7, 2]: bigram 7-2 was never kept -> only the two unigram columns
    assert np.flatnonzero(x[1]).tolist() == [2, 7]
    # [2, 3, 2, 3]: unigrams 2 (x2), 3 (x2), bigram 2-3 (x2), 3-2 (unknown)
    col_23 = V + model.keys[0].tolist().index(2 * V + 3)
    assert np.flatnonzero(x[0]).tolist() == [2, 3, col_23]
    w = (1 + np.log(2)) * model.idf[[2, 3, col_23]].astype(np.float64)
    np.testing.assert_allclose(x[0, [2, 3, col_23]], w / np.linalg.norm(w), atol=1e-6)


# --- linear_proba vs scikit-learn ---------------------------------------------------------------------------

@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_proba_equals_sklearn_predict_proba(n_classes):
    docs, y = separable(48, n_classes, seed=1)
    # blur the classes a little so the probabilities are not all ~0/1
    docs = [np.concatenate([d, [2 + 4 * ((c + 1) % n_classes)]]) if i % 4 == 0 else d
            for i, (d, c) in enumerate(zip(docs, y))]
    new_docs, _ = separable(12, n_classes, seed=2)
    new_docs.append(np.array([0, 11, 36]))  # ids never seen in fitting
    model = fit_linear(docs, y, n_classes=n_classes, ngrams=2, vocab_size=40, c_grid=[0.5, 2.0], seed=0)
    assert model.coef.shape == (1 if n_classes == 2 else n_classes, len(model.idf))

    ref = LogisticRegression(C=model.C, max_iter=2000, random_state=0).fit(features(model, docs), y)
    for batch in (docs, new_docs):
        ours = linear_proba(model, batch)
        assert ours.shape == (len(batch), n_classes) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref.predict_proba(features(model, batch)), atol=1e-4)
        np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)
    assert 0.05 < linear_proba(model, docs).max(axis=1).min() < 0.99  # not a trivially saturated comparison


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_proba_of_no_documents_is_empty(n_classes):
    docs, y = separable(12, n_classes, seed=0)
    model = fit_linear(docs, y, n_classes=n_classes, ngrams=1, vocab_size=40, c_grid=[1.0], seed=0)
    out = linear_proba(model, [])
    assert out.shape == (0, n_classes) and out.dtype == np.float32


# --- fitting --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_classes", [2, 3])
def test_fit_linear_learns_a_separable_problem(n_classes):
    docs, y = separable(60, n_classes, seed=3)
    held, y_held = separable(30, n_classes, seed=4)
    grid = [0.25, 1.0, 4.0, 16.0]
    model = fit_linear(docs, y, n_classes=n_classes, ngrams=2, vocab_size=40, c_grid=grid, seed=0)
    assert (linear_proba(model, docs).argmax(1) == y).mean() >= 0.9
    assert (linear_proba(model, held).argmax(1) == y_held).mean() >= 0.9
    assert model.C in grid
    cv = model.selection["cv_accuracy"]
    assert sorted(cv) == grid
    assert all(0.0 <= a <= 1.0 for a in cv.values())
    # the chosen C has the best CV accuracy, ties going to the smaller C
    assert cv[model.C] == max(cv.values())
    assert model.C == min(c for c in grid if cv[c] == max(cv.values()))


def test_fit_linear_without_enough_examples_per_class_uses_first_c_and_no_cv():
    docs, y = separable(4, 2, seed=0)  # 2 documents per class: too few for 3 folds
    model = fit_linear(docs, y, n_classes=2, ngrams=1, vocab_size=40, c_grid=[4.0, 0.25], seed=0)
    assert model.C == 4.0
    assert model.selection["cv_accuracy"] == {}


def test_absent_class_gets_a_column_that_never_wins():
    docs, y01 = separable(40, 2, seed=5)
    y = np.where(y01 == 1, 2, 0)  # labels 0 and 2 of 3; class 1 never occurs
    model = fit_linear(docs, y, n_classes=3, ngrams=2, vocab_size=40, c_grid=[0.25, 1.0, 4.0], seed=0)
    probe = docs + separable(10, 2, seed=6)[0] + [np.array([6, 7, 8, 9]), np.array([], np.int64)]
    p = linear_proba(model, probe)
    assert p.shape == (len(probe), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert 1 not in p.argmax(1)
    assert p[:, 1].max() < 1e-6
    assert (p[: len(docs)].argmax(1) == y).mean() >= 0.9
    # the two present classes get what a binary logistic regression on them gives
    ref = LogisticRegression(C=model.C, max_iter=2000, random_state=0).fit(features(model, docs), y)
    np.testing.assert_allclose(p[:, [0, 2]], ref.predict_proba(features(model, probe)), atol=1e-4)


def test_absent_class_in_a_multiclass_fit_never_wins():
    docs, y = separable(45, 3, seed=7)
    y = np.array([0, 1, 3])[y]  # 4 labels, class 2 absent: a multinomial fit on 3 classes
    model = fit_linear(docs, y, n_classes=4, ngrams=1, vocab_size=40, c_grid=[1.0], seed=0)
    p = linear_proba(model, docs)
    assert p.shape == (len(docs), 4)
    assert 2 not in p.argmax(1)
    assert p[:, 2].max() < 1e-6
    assert (p.argmax(1) == y).mean() >= 0.9


# --- round trip -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    docs, y = separable(30, 3, seed=8)
    model = fit_linear(docs, y, n_classes=3, ngrams=3, vocab_size=40, c_grid=[0.5, 2.0], seed=0, pad_id=PAD)
    model.weight = 0.4
    probe = docs[:5] + separable(6, 3, seed=9)[0]
    return model, probe


def test_settings_and_arrays_round_trip(fitted):
    model, probe = fitted
    assert model.settings() == {"vocab_size": 40, "ngrams": 3, "n_classes": 3, "pad_id": PAD, "C": model.C,
                                "weight": 0.4, "char_ngrams": 0, "nb": False}
    assert set(model.arrays()) == {"idf", "coef", "intercept", "keys_2", "keys_3"}
    back = LinearModel.from_parts(model.settings(), model.arrays())
    np.testing.assert_array_equal(linear_proba(back, probe), linear_proba(model, probe))
    assert (back.vocab_size, back.ngrams, back.n_classes, back.pad_id, back.C, back.weight) == \
        (40, 3, 3, PAD, model.C, 0.4)


def test_round_trip_through_safetensors(fitted, tmp_path):
    """Written as C-ordered copies, as export/bundle.py does."""
    from safetensors.numpy import load_file, save_file

    model, probe = fitted
    path = tmp_path / "linear.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in model.arrays().items()}, str(path))
    back = LinearModel.from_parts(model.settings(), load_file(str(path)))
    for name, arr in model.arrays().items():
        np.testing.assert_array_equal(back.arrays()[name], arr, err_msg=name)
    np.testing.assert_array_equal(linear_proba(back, probe), linear_proba(model, probe))


def test_arrays_are_c_ordered_so_a_plain_safetensors_save_round_trips(fitted, tmp_path):
    from safetensors.numpy import load_file, save_file

    model, probe = fitted
    assert all(a.flags["C_CONTIGUOUS"] for a in model.arrays().values())
    path = tmp_path / "linear.safetensors"
    save_file(model.arrays(), str(path))
    back = LinearModel.from_parts(model.settings(), load_file(str(path)))
    np.testing.assert_array_equal(back.coef, model.coef)
    np.testing.assert_array_equal(linear_proba(back, probe), linear_proba(model, probe))


def test_round_trip_with_unigrams_only():
    docs, y = separable(12, 2, seed=10)
    model = fit_linear(docs, y, n_classes=2, ngrams=1, vocab_size=40, c_grid=[1.0], seed=0)
    assert set(model.arrays()) == {"idf", "coef", "intercept"}
    back = LinearModel.from_parts(model.settings(), model.arrays())
    np.testing.assert_array_equal(linear_proba(back, docs), linear_proba(model, docs))


# --- pad id ---------------------------------------------------------------------------------------------------

def padded(doc: np.ndarray, before: int, after: int) -> np.ndarray:
    return np.concatenate([np.full(before, PAD), doc, np.full(after, PAD)]).astype(np.int64)


def test_pad_tokens_never_become_features():
    docs = [d for d in SMALL_DOCS]
    with_pads = [padded(d, 3 * i, 7 - i) for i, d in enumerate(docs)]
    y = np.array([0, 1, 0, 1, 0, 1])
    clean = fit_linear(docs, y, n_classes=2, ngrams=2, vocab_size=V, c_grid=[1.0], seed=0, pad_id=PAD)
    noisy = fit_linear(with_pads, y, n_classes=2, ngrams=2, vocab_size=V, c_grid=[1.0], seed=0, pad_id=PAD)
    assert noisy.keys[0].tolist() == clean.keys[0].tolist()
    np.testing.assert_array_equal(noisy.idf, clean.idf)
    np.testing.assert_allclose((features(noisy, with_pads) - features(clean, docs)).toarray(), 0.0, atol=1e-7)
    np.testing.assert_allclose(linear_proba(noisy, with_pads), linear_proba(clean, docs), atol=1e-6)
    assert not features(noisy, with_pads)[:, PAD].toarray().any()
    assert all(PAD not in (int(k) // V, int(k) % V) for k in noisy.keys[0])
    # an all-pad document has no features at all
    assert features(noisy, [np.full(5, PAD)]).nnz == 0


def test_without_a_pad_id_the_same_tokens_are_features():
    """The check above can fail: with pad_id=-1 the pad token is an ordinary, frequent feature."""
    with_pads = [padded(d, 2, 2) for d in SMALL_DOCS]
    model = fit_linear(with_pads, np.array([0, 1, 0, 1, 0, 1]), n_classes=2, ngrams=2, vocab_size=V,
                       c_grid=[1.0], seed=0)
    assert features(model, with_pads)[:, PAD].toarray().all()
    assert PAD * V + PAD in model.keys[0].tolist()


# --- the character block ------------------------------------------------------------------------------------

CHAR_ITOS = ["xxunk", "xxpad", "xxbos", "good", "bad", "goodness", "badly", "film", "films", "plot"]
CHAR_DOCS = [np.array([2, 3, 7]), np.array([2, 4, 8]), np.array([2, 5, 9, 7]), np.array([2, 6, 9]),
             np.array([2, 3, 3, 8]), np.array([2, 4, 9, 6])]


def test_character_block_matches_sklearn_char_wb():
    """The block after the word columns equals TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4),
    sublinear_tf=True, min_df=2) on the same documents written out without their specials, value for value
    per row (columns are hashed buckets, so compare each row's sorted values), and it is scaled by 1/sqrt(2)."""
    from nlp_pipeline.models.linear import char_ngram_buckets

    y = np.array([0, 1, 0, 1, 0, 1])
    model = fit_linear(CHAR_DOCS, y, 2, 1, len(CHAR_ITOS), [1.0], 0, pad_id=PAD, char_ngrams=4, itos=CHAR_ITOS)
    texts = [" ".join(CHAR_ITOS[i] for i in d if not CHAR_ITOS[i].startswith("xx")) for d in CHAR_DOCS]
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=2).fit(texts)
    expected = reference.transform(texts).toarray()
    x = features(model, CHAR_DOCS).toarray()
    n_word = model.n_word_features
    assert len(model.char_keys) == len(reference.vocabulary_)  # no collision among these few n-grams
    assert len(set(char_ngram_buckets("good", 4))) == len(char_ngram_buckets("good", 4))
    for row in range(len(CHAR_DOCS)):
        got = np.sort(x[row, n_word:][x[row, n_word:] > 0]) * np.sqrt(2)
        want = np.sort(expected[row][expected[row] > 0])
        np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)  # two unit blocks, each scaled by 1/sqrt(2)


def test_character_block_round_trip_and_refusal_without_the_vocabulary():
    y = np.array([0, 1, 0, 1, 0, 1])
    model = fit_linear(CHAR_DOCS, y, 2, 2, len(CHAR_ITOS), [1.0], 0, pad_id=PAD, char_ngrams=3, itos=CHAR_ITOS)
    assert model.settings()["char_ngrams"] == 3 and "char_keys" in model.arrays()
    back = LinearModel.from_parts(model.settings(), model.arrays(), CHAR_ITOS)
    np.testing.assert_allclose(linear_proba(back, CHAR_DOCS), linear_proba(model, CHAR_DOCS), atol=1e-6)
    with pytest.raises(ValueError, match="vocabulary"):
        LinearModel.from_parts(model.settings(), model.arrays())
    with pytest.raises(ValueError, match="itos"):
        fit_linear(CHAR_DOCS, y, 2, 1, len(CHAR_ITOS), [1.0], 0, char_ngrams=3)


def test_character_length_is_chosen_with_c_by_cross_validation():
    """Every word occurs once, so word columns cannot generalise; only the suffix (-ful / -less) carries the
    label. With lengths [0, 4] tried, CV must pick the character block, and it then classifies unseen words."""
    rng = np.random.default_rng(0)
    stems = ["".join(rng.choice(list("bcdfghkmnprstvz"), 5)) for _ in range(40)]
    itos = ["xxunk", "xxpad", "xxbos"] + [s + "ful" for s in stems] + [s + "less" for s in stems]
    ful, less = np.arange(3, 43), np.arange(43, 83)
    docs = [np.array([2, i]) for i in np.concatenate([ful[:30], less[:30]])]
    y = np.array([0] * 30 + [1] * 30)
    model = fit_linear(docs, y, 2, 1, len(itos), [1.0, 4.0], 0, pad_id=1, char_ngrams=[0, 4], itos=itos)
    by_chars = model.selection["cv_accuracy_by_chars"]
    assert sorted(by_chars) == [0, 4] and all(sorted(v) == [1.0, 4.0] for v in by_chars.values())
    assert max(by_chars[0].values()) <= 0.6 < 0.9 <= max(by_chars[4].values())
    assert model.char_ngrams == 4 and model.selection["cv_accuracy"] == by_chars[4]
    assert by_chars[4][model.C] == max(by_chars[4].values())
    unseen = [np.array([2, i]) for i in np.concatenate([ful[30:], less[30:]])]
    assert (linear_proba(model, unseen).argmax(1) == np.array([0] * 10 + [1] * 10)).mean() >= 0.9
    # without CV (two documents of a class) the first length and the first C are taken
    few = fit_linear(docs[28:32], y[28:32], 2, 1, len(itos), [4.0, 1.0], 0, pad_id=1, char_ngrams=[0, 4], itos=itos)
    assert (few.char_ngrams, few.C, few.selection["cv_accuracy"]) == (0, 4.0, {})
    assert "char_keys" not in few.arrays() and few.itos is None


# --- Naive Bayes scaling (NBSVM) ------------------------------------------------------------------------------

def test_nb_ratio_by_hand():
    import scipy.sparse as sp

    from nlp_pipeline.models.linear import nb_ratio

    # columns: in both positives only / in the negative only / everywhere / in no document
    x = sp.csr_matrix(np.array([[0.5, 0.0, 0.2, 0.0], [0.3, 0.0, 0.9, 0.0], [0.0, 0.7, 0.1, 0.0]], np.float32))
    y = np.array([1, 1, 0])
    p, q = np.array([3.0, 1.0, 3.0, 1.0]), np.array([1.0, 2.0, 2.0, 1.0])  # 1 + documents having it
    expected = np.log(p / p.sum()) - np.log(q / q.sum())
    np.testing.assert_allclose(nb_ratio(x, y), expected, rtol=1e-6)
    assert nb_ratio(x, y)[0] > 0 > nb_ratio(x, y)[1]  # a positive word up, a negative word down


def test_nb_scaled_model_is_a_logistic_regression_on_ratio_scaled_rows_and_round_trips(tmp_path):
    from safetensors.numpy import load_file, save_file
    from sklearn.preprocessing import normalize

    from nlp_pipeline.models.linear import nb_ratio

    docs, y = separable(48, 2, seed=1)
    docs = [np.concatenate([d, [2 + 4 * (1 - c)]]) if i % 4 == 0 else d for i, (d, c) in enumerate(zip(docs, y))]
    plain = fit_linear(docs, y, n_classes=2, ngrams=2, vocab_size=40, c_grid=[2.0], seed=0)
    model = fit_linear(docs, y, n_classes=2, ngrams=2, vocab_size=40, c_grid=[2.0], seed=0, nb=True)
    x = features(plain, docs)  # the unscaled rows: same columns and idf
    ratio = nb_ratio(x, y)
    np.testing.assert_allclose(model.nb_ratio, ratio, rtol=1e-6)
    scaled = normalize(x.multiply(ratio[None, :]).tocsr())
    np.testing.assert_allclose(features(model, docs).toarray(), scaled.toarray(), atol=1e-6)
    ref = LogisticRegression(C=2.0, max_iter=2000, random_state=0).fit(scaled, y)
    np.testing.assert_allclose(linear_proba(model, docs), ref.predict_proba(scaled), atol=1e-4)
    assert not np.allclose(linear_proba(model, docs), linear_proba(plain, docs), atol=1e-3)
    assert model.settings()["nb"] is True and "nb_ratio" in model.arrays()
    path = tmp_path / "linear.safetensors"
    save_file(model.arrays(), str(path))
    back = LinearModel.from_parts(model.settings(), load_file(str(path)))
    np.testing.assert_array_equal(linear_proba(back, docs), linear_proba(model, docs))
    with pytest.raises(KeyError):  # settings say nb, the arrays lack the ratios
        LinearModel.from_parts(model.settings(), {k: v for k, v in model.arrays().items() if k != "nb_ratio"})


def test_nb_is_chosen_with_c_by_cross_validation_from_each_folds_own_ratios(monkeypatch):
    import nlp_pipeline.models.linear as linear

    docs, y = separable(60, 2, seed=3)
    seen = []
    real = linear.nb_ratio
    monkeypatch.setattr(linear, "nb_ratio", lambda x, labels, *a: seen.append(x.shape[0]) or real(x, labels, *a))
    grid = [0.25, 4.0]
    model = fit_linear(docs, y, n_classes=2, ngrams=1, vocab_size=40, c_grid=grid, seed=0, nb=[False, True])
    by_nb = model.selection["cv_accuracy_by_nb"]
    assert sorted(by_nb) == [False, True] and all(sorted(v) == grid for v in by_nb.values())
    scaled = bool(len(model.nb_ratio))
    best = max(max(v.values()) for v in by_nb.values())
    assert by_nb[scaled][model.C] == best and model.selection["cv_accuracy"] == by_nb[scaled]
    assert scaled == (max(by_nb[False].values()) < best)  # ties go to no scaling
    # three folds' ratios from their fitting parts (40 of 60 documents each), and the final one from all 60 if chosen
    assert seen[:3] == [40, 40, 40] and seen[3:] == ([60] if scaled else [])
    # more than two classes: no scaling is tried
    docs3, y3 = separable(60, 3, seed=3)
    three = fit_linear(docs3, y3, n_classes=3, ngrams=1, vocab_size=40, c_grid=grid, seed=0, nb=[False, True])
    assert "cv_accuracy_by_nb" not in three.selection and len(three.nb_ratio) == 0 and three.settings()["nb"] is False
