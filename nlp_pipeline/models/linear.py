"""A TF-IDF n-gram logistic regression over token ids: the classifier's linear partner in a probability blend.

    docs = document_ids(data, indexes, max_length)  # id arrays of documents of a Numericalized, cut as the RNN reads them
    model = fit_linear(docs, y, n_classes=2, ngrams=2, vocab_size=V, c_grid=[0.25, 1, 4, 16], seed=0)
    probs = linear_proba(model, docs)            # (len(docs), n_classes) float32
    model = LinearModel.from_parts(model.settings(), model.arrays(), itos)  # the same model from plain data
    columns, x = fit_tfidf(docs, ngrams=2, vocab_size=V, min_df=2, max_df=0.95)  # the TF-IDF columns alone (lsa's baseline)

Features are computed from the same id arrays the RNN reads, so a bundle needs no second vocabulary of
strings: unigram columns are token ids; an n-gram (n >= 2) is the key sum(ids[j] * V ** (n - 1 - j)), and the
n-grams seen in at least `min_df` fitting documents get the next columns (their sorted keys are stored).
Each row is sublinear tf (1 + log count) times smoothed idf (log((1 + N) / (1 + df)) + 1), L2-normalised,
as scikit-learn's TfidfVectorizer(sublinear_tf=True) does. With char_ngrams = n > 0 a second block is
appended: character 2..n-grams of each token padded with a space on both sides (scikit-learn's "char_wb"
analyzer, built from the vocabulary's strings, special xx* tokens left out), each hashed (crc32) into
CHAR_BUCKETS buckets; buckets seen in at least `min_df` fitting documents get a column. Each block is TF-IDF and
L2-normalised on its own, then both are scaled by 1/sqrt(2), so a row still has length 1.
With nb (binary targets only) every column is then scaled by its Naive Bayes log-count ratio
r = log((p / |p|_1) / (q / |q|_1)), p = 1 + the number of positive fitting documents that have the feature, q the
same for negative ones (Wang & Manning 2012, "NBSVM"), and the row L2-normalised again.
C, and with lists of character lengths (e.g. [0, 6]) and of nb (e.g. [False, True]) whether to add that block and
that scaling, are chosen by stratified 3-fold cross-validation on the fitting documents only (the ratios of each
fold from its fitting part), so the classifier's validation set stays unseen until the blend weight is
chosen on it (models/blend.py). xxpad is never a feature. Limits: n <= 3 (keys stay below 2**63 for V <= 2M).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_NGRAMS = 3
CHAR_BUCKETS = 2 ** 22  # hash space of character n-grams (collisions are rare at a few 100k distinct n-grams)
MIN_DF = 2  # an n-gram (order >= 2) or character bucket needs this many fitting documents to get a column


@dataclass
class LinearModel:
    vocab_size: int
    ngrams: int
    keys: list[np.ndarray]                  # sorted int64 n-gram keys of orders 2..ngrams (their columns follow the unigrams)
    idf: np.ndarray                         # (n_features,) float32
    coef: np.ndarray                        # (1 or n_classes, n_features) float32; 1 row = binary (sigmoid)
    intercept: np.ndarray                   # (1 or n_classes,) float32
    n_classes: int
    pad_id: int = -1
    C: float = 1.0
    weight: float = 0.0                     # share of the linear model in the blend, chosen on validation
    selection: dict = field(default_factory=dict)  # cross-validation and blend-weight scores
    char_ngrams: int = 0                    # longest character n-gram of the second block; 0 = no character block
    char_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted kept buckets (their columns follow the word block)
    itos: list[str] | None = None           # the vocabulary's strings (the character block's source); not in arrays()
    nb_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (n_features,) NB scaling; empty = none
    sublinear: bool = True                  # tf is 1 + log(count); False = raw counts (lsa's baseline option); not in settings()

    def __post_init__(self) -> None:
        self._token_chars = None  # (vocab_size, len(char_keys)) counts, built from itos on first use

    @property
    def n_word_features(self) -> int:
        return self.vocab_size + sum(len(k) for k in self.keys)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"idf": self.idf, "coef": self.coef, "intercept": self.intercept}
        out.update({f"keys_{n}": k for n, k in zip(range(2, self.ngrams + 1), self.keys)})
        if self.char_ngrams:
            out["char_keys"] = self.char_keys
        if len(self.nb_ratio):
            out["nb_ratio"] = self.nb_ratio
        return out

    def settings(self) -> dict:
        return {"vocab_size": self.vocab_size, "ngrams": self.ngrams, "n_classes": self.n_classes,
                "pad_id": self.pad_id, "C": self.C, "weight": self.weight, "char_ngrams": self.char_ngrams,
                "nb": bool(len(self.nb_ratio))}

    @classmethod
    def from_parts(cls, settings: dict, arrays: dict[str, np.ndarray], itos: list[str] | None = None) -> "LinearModel":
        """Rebuild from settings() and arrays(); a character block needs the vocabulary's strings (itos)."""
        ngrams, char_ngrams = int(settings["ngrams"]), int(settings.get("char_ngrams", 0))
        if char_ngrams and itos is None:
            raise ValueError("the linear model has a character block: pass the vocabulary (itos)")
        nb_ratio = np.asarray(arrays["nb_ratio"], np.float32) if settings.get("nb") else np.zeros(0, np.float32)
        return cls(vocab_size=int(settings["vocab_size"]), ngrams=ngrams,
                   keys=[np.asarray(arrays[f"keys_{n}"], np.int64) for n in range(2, ngrams + 1)],
                   idf=np.asarray(arrays["idf"], np.float32), coef=np.asarray(arrays["coef"], np.float32),
                   intercept=np.asarray(arrays["intercept"], np.float32), n_classes=int(settings["n_classes"]),
                   pad_id=int(settings.get("pad_id", -1)), C=float(settings.get("C", 1.0)),
                   weight=float(settings.get("weight", 0.0)), char_ngrams=char_ngrams,
                   char_keys=np.asarray(arrays.get("char_keys", np.zeros(0, np.int64)), np.int64),
                   itos=list(itos) if itos is not None else None, nb_ratio=nb_ratio)


def document_ids(data: Any, indexes: np.ndarray, max_length: int) -> list[np.ndarray]:
    """The id arrays of documents `indexes` of a Numericalized (doc_ids), cut to max_length like the RNN reads them."""
    return [data.doc_ids(int(i))[:max_length] for i in indexes]


def ngram_keys(ids: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    """Keys of the n-grams of one id array: ngram_keys([1, 2, 3], 2, 10) -> [12, 23]."""
    ids = np.asarray(ids, np.int64)
    if len(ids) < n:
        return np.zeros(0, np.int64)
    key = np.zeros(len(ids) - n + 1, np.int64)
    for j in range(n):
        key = key * vocab_size + ids[j: len(ids) - n + 1 + j]
    return key


def _doc_terms(docs: list[np.ndarray], ngrams: int, vocab_size: int, pad_id: int):
    """Per order 1..ngrams: (document index, key) pairs of every occurrence, document by document in order.
    One pass over all documents' ids joined end to end; an n-gram counts only if it stays inside one document."""
    lengths = np.array([len(d) for d in docs], np.int64)
    ids = np.concatenate([np.asarray(d, np.int64) for d in docs]) if len(docs) else np.zeros(0, np.int64)
    doc = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
    if pad_id >= 0:
        keep = ids != pad_id
        ids, doc = ids[keep], doc[keep]
    out = [(doc, ids)]
    for n in range(2, ngrams + 1):
        key = ngram_keys(ids, n, vocab_size)  # every window of the joined stream, also those across documents
        inside = doc[: len(key)] == doc[n - 1:]  # first and last token in the same document
        out.append((doc[: len(key)][inside], key[inside]))
    return out


def _columns(terms, keys: list[np.ndarray], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every occurrence that has a column; unknown n-grams are dropped."""
    rows, cols = [terms[0][0]], [terms[0][1]]
    offset = vocab_size
    for (r, k), known in zip(terms[1:], keys):
        pos = np.searchsorted(known, k)
        pos_clipped = np.minimum(pos, max(len(known) - 1, 0))
        hit = (pos < len(known)) & (known[pos_clipped] == k) if len(known) else np.zeros(len(k), bool)
        rows.append(r[hit])
        cols.append(offset + pos[hit])
        offset += len(known)
    return np.concatenate(rows), np.concatenate(cols)


def char_ngram_buckets(token: str, n_max: int) -> list[int]:
    """Hashed character 2..n_max-grams of ' token ' (scikit-learn's char_wb): 'ab', 3 -> buckets of ' a', 'ab',
    'b ', ' ab', 'ab '."""
    import zlib

    padded = f" {token} "
    return [zlib.crc32(padded[i:i + n].encode("utf-8")) % CHAR_BUCKETS
            for n in range(2, n_max + 1) for i in range(len(padded) - n + 1)]


def _token_bucket_counts(itos: list[str], n_max: int):
    """(vocab_size, CHAR_BUCKETS) sparse counts of each token's hashed character n-grams (xx* specials: none)."""
    import scipy.sparse as sp

    rows, cols = [], []
    for i, token in enumerate(itos):
        if token.startswith("xx"):
            continue
        buckets = char_ngram_buckets(token, n_max)
        rows.extend([i] * len(buckets))
        cols.extend(buckets)
    data = np.ones(len(rows), np.float32)
    return sp.csr_matrix((data, (np.array(rows, np.int64), np.array(cols, np.int64))), shape=(len(itos), CHAR_BUCKETS))


def _doc_token_counts(terms, n_docs: int, vocab_size: int):
    import scipy.sparse as sp

    rows, ids = terms[0]
    return sp.csr_matrix((np.ones(len(ids), np.float32), (rows, ids)), shape=(n_docs, vocab_size))


def _sublinear(counts):
    counts = counts.tocsr()
    counts.data = (1.0 + np.log(counts.data)).astype(np.float32)
    return counts


def _join_blocks(words, chars):
    """[words | chars] with both L2-normalised blocks scaled by 1/sqrt(2): rows keep length 1."""
    import scipy.sparse as sp

    return (sp.hstack([words, chars]).tocsr() * np.float32(0.5 ** 0.5)).tocsr()


def _char_block(model: "LinearModel", terms, n_docs: int):
    """The L2-normalised character TF-IDF block of documents (terms from _doc_terms)."""
    if model._token_chars is None:
        full = _token_bucket_counts(model.itos, model.char_ngrams).tocsc()
        model._token_chars = full[:, model.char_keys].tocsr()
    counts = _doc_token_counts(terms, n_docs, model.vocab_size) @ model._token_chars
    return _unit_rows(_sublinear(counts), model.idf[model.n_word_features:])


def _tf_matrix(rows: np.ndarray, cols: np.ndarray, n_docs: int, n_features: int, sublinear: bool = True):
    import scipy.sparse as sp

    flat, counts = np.unique(rows * n_features + cols, return_counts=True)
    tf = (1.0 + np.log(counts) if sublinear else counts).astype(np.float32)
    return sp.csr_matrix((tf, (flat // n_features, flat % n_features)), shape=(n_docs, n_features))


def _unit_rows(x, column_weights: np.ndarray):
    """Rows of x with every column times its weight, L2-normalised: TF-IDF (tf, idf), NB scaling (x, ratios)."""
    from sklearn.preprocessing import normalize

    return normalize(x.multiply(column_weights[None, :]).tocsr(), norm="l2", copy=False)


def features(model: LinearModel, docs: list[np.ndarray]):
    """The (len(docs), n_features) TF-IDF matrix (rows of length 1) of id arrays under a fitted model's columns."""
    terms = _doc_terms(docs, model.ngrams, model.vocab_size, model.pad_id)
    rows, cols = _columns(terms, model.keys, model.vocab_size)
    n_word = model.n_word_features
    x = _unit_rows(_tf_matrix(rows, cols, len(docs), n_word, model.sublinear), model.idf[:n_word])
    if model.char_ngrams:
        x = _join_blocks(x, _char_block(model, terms, len(docs)))
    return _unit_rows(x, model.nb_ratio) if len(model.nb_ratio) else x


def nb_ratio(x, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(n_features,) Naive Bayes log-count ratios of binary y (1 = positive) over the presence of each column:
    log((p / |p|_1) / (q / |q|_1)) with p = alpha + positive documents having it, q the same for negatives."""
    present = (x != 0).astype(np.float32)
    y = np.asarray(y)
    p = alpha + np.asarray(present[y == 1].sum(axis=0), np.float64).ravel()
    q = alpha + np.asarray(present[y != 1].sum(axis=0), np.float64).ravel()
    return (np.log(p / p.sum()) - np.log(q / q.sum())).astype(np.float32)


def _probabilities(scores: np.ndarray, n_classes: int) -> np.ndarray:
    if scores.shape[1] == 1 and n_classes == 2:
        p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.stack([1.0 - p1, p1], axis=1).astype(np.float32)
    scores = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(scores)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def linear_proba(model: LinearModel, docs: list[np.ndarray]) -> np.ndarray:
    """(len(docs), n_classes) probabilities of the logistic regression (what sklearn's predict_proba gives)."""
    if not docs:
        return np.zeros((0, model.n_classes), np.float32)
    x = features(model, docs)
    scores = np.asarray(x @ model.coef.T.astype(np.float64)) + model.intercept.astype(np.float64)[None, :]
    return _probabilities(scores, model.n_classes)


def _fit_words(terms, n_docs: int, vocab_size: int, min_df: int, max_df: float = 1.0, sublinear: bool = True,
               unigram_min_df: bool = False):
    """(n-gram keys of orders 2.., idf of every word column, the docs' L2-normalised TF-IDF rows) from _doc_terms.
    An n-gram gets a column when min_df documents have it; a column whose idf is 0 is no feature: never seen,
    in more than max_df of the documents, or (unigram_min_df) a unigram in fewer than min_df."""
    keys = []
    for rows, k in terms[1:]:
        order = np.lexsort((rows, k))
        ks, rs = k[order], rows[order]
        first = np.ones(len(ks), bool)
        first[1:] = (ks[1:] != ks[:-1]) | (rs[1:] != rs[:-1])  # one count per (n-gram, document)
        uniq, df = np.unique(ks[first], return_counts=True)
        keys.append(uniq[(df >= min_df) & (df <= max_df * n_docs)])
    n_word = vocab_size + sum(len(k) for k in keys)
    rows, cols = _columns(terms, keys, vocab_size)
    tf = _tf_matrix(rows, cols, n_docs, n_word, sublinear)
    df = np.bincount(tf.indices, minlength=n_word)
    idf = (np.log((1.0 + n_docs) / (1.0 + df)) + 1.0).astype(np.float32)
    idf[df == 0] = 0.0  # ids never seen in fitting are no feature (they would only shrink the others in the L2 norm)
    idf[df > max_df * n_docs] = 0.0
    if unigram_min_df:
        idf[:vocab_size][df[:vocab_size] < min_df] = 0.0
    return keys, idf, _unit_rows(tf, idf)


def fit_tfidf(docs: list[np.ndarray], ngrams: int, vocab_size: int, pad_id: int = -1, min_df: int = MIN_DF,
              max_df: float = 1.0, sublinear: bool = True, unigram_min_df: bool = False) -> tuple[LinearModel, Any]:
    """TF-IDF columns of token 1..ngrams-grams fitted on docs, as the linear model builds them: (a LinearModel
    holding the columns and idf but no classifier yet, for features() of other documents; the docs' rows).
    max_df (a share of docs), sublinear False and unigram_min_df make the columns scikit-learn's
    TfidfVectorizer(min_df, max_df, sublinear_tf) over the same tokens (the lsa stage's baseline)."""
    keys, idf, x = _fit_words(_doc_terms(docs, ngrams, vocab_size, pad_id), len(docs), vocab_size, min_df, max_df,
                              sublinear, unigram_min_df)
    model = LinearModel(vocab_size=vocab_size, ngrams=ngrams, keys=keys, idf=idf, coef=np.zeros((0, len(idf)), np.float32),
                        intercept=np.zeros(0, np.float32), n_classes=0, pad_id=pad_id, sublinear=sublinear)
    return model, x


def fit_linear(docs: list[np.ndarray], y: np.ndarray, n_classes: int, ngrams: int, vocab_size: int,
               c_grid: list[float], seed: int, pad_id: int = -1, min_df: int = MIN_DF, char_ngrams: int | list[int] = 0,
               itos: list[str] | None = None, nb: bool | list[bool] = False) -> LinearModel:
    """Fit columns, idf and a logistic regression on (docs, y); C by stratified 3-fold CV accuracy on them.
    char_ngrams > 0 adds the character block (itos: the vocabulary's strings); nb scales the features by their
    Naive Bayes log-count ratios (two classes only: with more, nb is False). Lists of lengths (0 = no block) and
    of nb are tried too: the (length, nb, C) triple with the best CV accuracy wins, ties going to the shorter
    length, then to no scaling, then to the smaller C; without CV (a class with fewer than 3 documents, or one
    triple) the first length, nb and C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    y = np.asarray(y, np.int64)
    lengths = [int(n) for n in ([char_ngrams] if isinstance(char_ngrams, (int, np.integer)) else char_ngrams)] or [0]
    nbs = [nb] if isinstance(nb, (bool, np.bool_)) else nb
    scalings = list(dict.fromkeys(bool(b) and n_classes == 2 for b in nbs)) or [False]  # NB needs two classes
    if any(lengths) and (itos is None or len(itos) != vocab_size):
        raise ValueError("char_ngrams needs the vocabulary's strings (itos, one per id)")
    terms = _doc_terms(docs, ngrams, vocab_size, pad_id)
    keys, word_idf, words = _fit_words(terms, len(docs), vocab_size, min_df)
    token_counts = _doc_token_counts(terms, len(docs), vocab_size) if any(lengths) else None
    blocks = {}  # length -> (features, idf, char_keys)
    for n in dict.fromkeys(lengths):
        if not n:
            blocks[n] = (words, word_idf, np.zeros(0, np.int64))
            continue
        bucket_counts = token_counts @ _token_bucket_counts(itos, n)
        char_df = np.bincount(bucket_counts.tocsr().indices, minlength=CHAR_BUCKETS)
        char_keys = np.flatnonzero(char_df >= min_df).astype(np.int64)
        char_idf = (np.log((1.0 + len(docs)) / (1.0 + char_df[char_keys])) + 1.0).astype(np.float32)
        chars = _unit_rows(_sublinear(bucket_counts.tocsc()[:, char_keys]), char_idf)
        blocks[n] = (_join_blocks(words, chars), np.concatenate([word_idf, char_idf]), char_keys)

    cv: dict[tuple[int, bool], dict[float, float]] = {}
    smallest = np.bincount(y, minlength=n_classes)
    smallest = smallest[smallest > 0].min() if len(y) else 0
    with threadpool_limits(limits=1, user_api="blas"):
        if len(c_grid) * len(blocks) * len(scalings) > 1 and smallest >= 3:
            folds = list(StratifiedKFold(3, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
            for n, (x, _, _) in blocks.items():
                for scaled in scalings:
                    parts = []
                    for fit, held in folds:
                        fitted, scored = x[fit], x[held]
                        if scaled:  # each fold's ratios from its fitting part only
                            r = nb_ratio(fitted, y[fit])
                            fitted, scored = _unit_rows(fitted, r), _unit_rows(scored, r)
                        parts.append((fitted, scored))
                    cv[n, scaled] = {}
                    for c in c_grid:
                        correct = 0
                        for (a, b), (fit, held) in zip(parts, folds):
                            m = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(a, y[fit])
                            correct += int((m.predict(b) == y[held]).sum())
                        cv[n, scaled][float(c)] = round(correct / len(y), 4)
            (n_best, nb_best), best = max(((key, c) for key in cv for c in c_grid),
                                          key=lambda kc: (cv[kc[0]][float(kc[1])], -kc[0][0], -kc[0][1], -kc[1]))
        else:
            n_best, nb_best, best = lengths[0], scalings[0], c_grid[0]
        x, idf, char_keys = blocks[n_best]
        ratio = nb_ratio(x, y) if nb_best else np.zeros(0, np.float32)
        if nb_best:
            x = _unit_rows(x, ratio)
        m = LogisticRegression(C=best, max_iter=2000, random_state=seed).fit(x, y)
    n_features = x.shape[1]
    coef = np.ascontiguousarray(m.coef_, dtype=np.float32)  # sklearn's may be column-major; safetensors wants C order
    intercept = np.ascontiguousarray(m.intercept_, dtype=np.float32)
    if len(m.classes_) != n_classes:  # a class absent from the fitting docs: give it a row that never wins
        if coef.shape[0] == 1:  # a binary fit: softmax over scores [0, s] equals sigmoid(s)
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]], np.float32)
        full_coef = np.zeros((n_classes, n_features), np.float32)
        full_int = np.full(n_classes, -30.0, np.float32)
        full_coef[m.classes_], full_int[m.classes_] = coef, intercept
        coef, intercept = full_coef, full_int
    selection = {"cv_accuracy": cv.get((n_best, nb_best), {})}  # {C: accuracy} at the chosen length and scaling
    if len(blocks) > 1:
        selection["cv_accuracy_by_chars"] = {n: cv[n, nb_best] for n in blocks if (n, nb_best) in cv}
    if len(scalings) > 1:
        selection["cv_accuracy_by_nb"] = {scaled: cv[n_best, scaled] for scaled in scalings if (n_best, scaled) in cv}
    return LinearModel(vocab_size=vocab_size, ngrams=ngrams, keys=keys, idf=idf, coef=coef, intercept=intercept,
                       n_classes=n_classes, pad_id=pad_id, C=float(best), selection=selection,
                       char_ngrams=n_best, char_keys=char_keys, itos=list(itos) if n_best else None, nb_ratio=ratio)
