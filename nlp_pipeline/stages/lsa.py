"""lsa: Tokens -> LsaResult. TF-IDF + truncated SVD document vectors and topic terms, plus the baselines.

Fits TF-IDF and the SVD on every split but test (test documents are only transformed), keeps one
`n_components`-dimensional vector per document (for the projector and as features), the top terms of each
component, and trains two logistic-regression baselines that every later model must beat:
  lsa_logreg    on the (L2-normalised) LSA vectors
  tfidf_logreg  on TF-IDF of word 1..`ngram_max`-grams
The regularisation strength C of each is chosen on a seeded, stratified validation slice of train (or the
corpus's dev split when it has one); the test split is read once, at the end, to report accuracy and macro-F1.
Limits: the TF-IDF matrix is sparse but held in memory; classifiers are skipped for an unlabelled corpus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nlp_pipeline.artifacts import UNLABELLED, LsaResult, Tokens
from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.core.stage import Stage

IGNORED_TOKENS = frozenset({"xxbos", "xxeos", "xxpad", "xxfld"})  # carry no content for bag-of-words models


@dataclass(frozen=True)
class LsaConfig:
    n_components: int = 100            # latent dimensions kept by the SVD
    min_df: int = 2                    # drop terms found in fewer documents
    max_df: float = 0.95               # drop terms found in more than this share of documents
    sublinear_tf: bool = True          # use 1 + log(tf) instead of raw term counts
    ngram_max: int = 2                 # longest word n-gram of the TF-IDF baseline
    top_terms: int = 10                # terms listed per component
    c_grid: list[float] = field(default_factory=lambda: [0.25, 1.0, 4.0, 16.0])  # logistic-regression C tried on validation
    validation_size: float = 0.1       # share of train held out to choose C when the corpus has no dev split
    seed: int = 0                      # SVD and validation-split seed

    def validate(self) -> None:
        if self.n_components < 1:
            raise ConfigError(f"lsa.n_components must be at least 1, got {self.n_components}")
        if not 0 < self.validation_size < 1:
            raise ConfigError(f"lsa.validation_size must be between 0 and 1, got {self.validation_size}")
        if not self.c_grid or min(self.c_grid) <= 0:
            raise ConfigError(f"lsa.c_grid must list positive numbers, got {self.c_grid}")


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _docs(tokens: Tokens) -> list[list[str]]:
    return [[t for t in doc if t not in IGNORED_TOKENS] for doc in tokens.iter_docs()]


def validation_split(labels: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, validation) positions into `labels`: every class keeps at least one fitting example.

    validation_split(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), 0.5, 0) -> 5 fit and 5 validation positions
    (2 of class 0 and 3 of class 1 in validation).
    """
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for label in np.unique(labels):
        where = rng.permutation(np.flatnonzero(labels == label))
        n_held = min(int(round(len(where) * size)), len(where) - 1)
        held.append(where[:n_held])
        fit.append(where[n_held:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(held))


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro"))


def fit_baseline(x_train, y_train, x_val, y_val, x_test, y_test, c_grid: list[float], seed: int) -> dict:
    """Choose C on (x_val, y_val), refit on train + val, report on test; accuracy and macro-F1 as fractions.

    BLAS is held to one thread: these problems are small, and a busy machine makes multi-threaded OpenBLAS
    spin (25 s instead of 1 s for TREC-6 on 2 loaded cores, measured).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_baseline(x_train, y_train, x_val, y_val, x_test, y_test, c_grid, seed)


def _fit_baseline(x_train, y_train, x_val, y_val, x_test, y_test, c_grid, seed) -> dict:
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    started = time.time()
    scores = {}
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        model.fit(x_train, y_train)
        scores[c] = float((model.predict(x_val) == y_val).mean())
    best = max(c_grid, key=lambda c: (scores[c], -c))
    stack = sp.vstack if sp.issparse(x_train) else np.vstack
    model = LogisticRegression(C=best, max_iter=2000, random_state=seed)
    model.fit(stack([x_train, x_val]), np.concatenate([y_train, y_val]))
    predicted = model.predict(x_test)
    return {
        "accuracy": float((predicted == y_test).mean()),
        "macro_f1": _macro_f1(y_test, predicted),
        "validation_accuracy": scores[best],
        "C": best,
        "seconds": round(time.time() - started, 2),
    }


def fit_lsa(cfg: LsaConfig, tokens: Tokens) -> LsaResult:
    """TF-IDF + SVD over the corpus and, if it is labelled, the two logistic-regression baselines."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    docs = _docs(tokens)
    labels = np.asarray(tokens.labels)
    test = tokens.indices("test")
    fit_rows = np.setdiff1d(np.arange(len(docs)), test)
    vectorizer = TfidfVectorizer(
        analyzer=_identity, min_df=cfg.min_df, max_df=cfg.max_df, sublinear_tf=cfg.sublinear_tf, dtype=np.float32
    )
    vectorizer.fit([docs[i] for i in fit_rows])
    matrix = vectorizer.transform(docs)
    n_components = min(cfg.n_components, matrix.shape[1] - 1, len(fit_rows) - 1)
    if n_components < 1:
        raise ConfigError(f"too few terms ({matrix.shape[1]}) for LSA; lower lsa.min_df (now {cfg.min_df})")
    svd = TruncatedSVD(n_components=n_components, random_state=cfg.seed)
    svd.fit(matrix[fit_rows])
    doc_vectors = svd.transform(matrix).astype(np.float32)
    terms = vectorizer.get_feature_names_out()
    topic_terms = [[str(terms[j]) for j in np.argsort(-component)[: cfg.top_terms]] for component in svd.components_]

    metrics: dict = {"n_terms": int(matrix.shape[1]), "n_components": int(n_components)}
    train = tokens.indices("train")
    train = train[labels[train] != UNLABELLED]
    test = test[labels[test] != UNLABELLED]
    if len(train) and len(test) and len(np.unique(labels[train])) > 1:
        dev = tokens.indices("dev")
        dev = dev[labels[dev] != UNLABELLED]
        if len(dev):
            fit_idx, val_idx = train, dev
        else:
            fit_pos, val_pos = validation_split(labels[train], cfg.validation_size, cfg.seed)
            fit_idx, val_idx = train[fit_pos], train[val_pos]
        features = normalize(doc_vectors)
        metrics["lsa_logreg"] = fit_baseline(
            features[fit_idx], labels[fit_idx], features[val_idx], labels[val_idx], features[test], labels[test],
            cfg.c_grid, cfg.seed,
        )
        ngrams = TfidfVectorizer(
            analyzer=lambda doc: _ngrams(doc, cfg.ngram_max), min_df=cfg.min_df, max_df=cfg.max_df,
            sublinear_tf=cfg.sublinear_tf, dtype=np.float32,
        )
        ngrams.fit([docs[i] for i in fit_idx] + [docs[i] for i in val_idx])
        metrics["tfidf_logreg"] = fit_baseline(
            ngrams.transform([docs[i] for i in fit_idx]), labels[fit_idx],
            ngrams.transform([docs[i] for i in val_idx]), labels[val_idx],
            ngrams.transform([docs[i] for i in test]), labels[test], cfg.c_grid, cfg.seed,
        )
    return LsaResult(
        labels=labels.astype(np.int32),
        splits=np.asarray(tokens.splits, dtype=np.int8),
        label_names=list(tokens.label_names),
        doc_vectors=doc_vectors,
        topic_terms=topic_terms,
        explained_variance_ratio=[float(v) for v in svd.explained_variance_ratio_],
        snippets=[" ".join(doc[:20]) for doc in docs],
        metrics=metrics,
    )


def _ngrams(doc: list[str], n_max: int) -> list[str]:
    """Word 1..n_max-grams: _ngrams(['a', 'b', 'c'], 2) -> ['a', 'b', 'c', 'a b', 'b c']"""
    out = list(doc)
    for n in range(2, n_max + 1):
        out.extend(" ".join(doc[i:i + n]) for i in range(len(doc) - n + 1))
    return out


def summarize(result: LsaResult) -> dict:
    out = {"n_components": result.metrics.get("n_components"), "topic_0": result.topic_terms[0][:5] if result.topic_terms else []}
    for name in ("lsa_logreg", "tfidf_logreg"):
        if name in result.metrics:
            out[f"{name}_accuracy"] = round(result.metrics[name]["accuracy"], 4)
            out[f"{name}_macro_f1"] = round(result.metrics[name]["macro_f1"], 4)
    return out


STAGE = Stage(
    name="lsa",
    version=1,
    config=LsaConfig,
    inputs={"tokens": "tokenization"},
    run=fit_lsa,
    describe=lambda cfg: f"k={cfg.n_components}",
    summary=summarize,
)
