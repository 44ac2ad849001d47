"""lsa: Tokens + the validation Carve -> LsaResult. TF-IDF + truncated SVD document vectors and topic terms, plus the baselines.

Fits TF-IDF and the SVD on every split but test (test documents are only transformed), keeps one
`n_components`-dimensional vector per document (for the projector and as features), the top terms of each
component, and trains two linear baselines that every later model must beat, one model per target type
(artifacts.TARGET_TYPES):
  lsa_logreg / lsa_ridge      on the (L2-normalised) LSA vectors
  tfidf_logreg / tfidf_ridge  on TF-IDF of word 1..`ngram_max`-grams (models.linear.fit_tfidf: the columns the
                              linear stage's model is built on, with this stage's min_df, max_df and sublinear_tf)
  class: logistic regression; multi_label: one logistic regression per label (one-vs-rest, a label constant in
  train predicts that constant), its decision threshold chosen on validation with C (targets.best_threshold, as
  the classifier does); regression: ridge regression with alpha = 1 / C.
The regularisation strength C of each (alpha = 1 / C for ridge) is chosen from `c_grid` by targets.PRIMARY
(accuracy, micro-F1, R²) on the carve's validation documents (stages/validation.py: the classifier's, the
corpus's dev split or a seeded slice of train), then refitted on train + validation; the test split is read
once, at the end, and scored with targets.score. `seed` seeds the SVD and the models, not the carve.
Limits: the TF-IDF matrix is sparse but held in memory; baselines are skipped for an unlabelled corpus or one
whose training labels are all the same.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from nlp_pipeline.artifacts import Carve, LsaResult, Tokens, documents_of
from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.targets import PRIMARY, THRESHOLD, best_threshold, carve_of, score

IGNORED_TOKENS = frozenset({"xxbos", "xxeos", "xxpad", "xxfld"})  # carry no content for bag-of-words models


@dataclass(frozen=True)
class LsaConfig:
    n_components: int = 100            # latent dimensions kept by the SVD
    min_df: int = 2                    # drop terms found in fewer documents
    max_df: float = 0.95               # drop terms found in more than this share of documents
    sublinear_tf: bool = True          # use 1 + log(tf) instead of raw term counts
    ngram_max: int = 2                 # longest word n-gram of the TF-IDF baseline (1-3)
    top_terms: int = 10                # terms listed per component
    c_grid: list[float] = field(default_factory=lambda: [0.25, 1.0, 4.0, 16.0])  # C tried on validation (ridge: alpha = 1 / C)
    seed: int = 0                      # seed of the SVD and the baselines (the carve's is validation.seed)

    def validate(self) -> None:
        if self.n_components < 1:
            raise ConfigError(f"lsa.n_components must be at least 1, got {self.n_components}")
        if not 1 <= self.ngram_max <= 3:
            raise ConfigError(f"lsa.ngram_max must be 1, 2 or 3, got {self.ngram_max}")
        if not self.c_grid or min(self.c_grid) <= 0:
            raise ConfigError(f"lsa.c_grid must list positive numbers, got {self.c_grid}")


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def _docs(tokens: Tokens) -> list[list[str]]:
    return [[t for t in doc if t not in IGNORED_TOKENS] for doc in tokens.iter_docs()]


def fit_baseline(x_train, y_train, x_val, y_val, x_test, y_test, c_grid: list[float], seed: int, *,
                 target_type: str = "class", label_names: list[str]) -> dict:
    """Choose C on (x_val, y_val) by targets.PRIMARY[target_type], refit on train + val, score on test.

    Returns targets.score(...) of the test split plus validation_<primary> (e.g. validation_accuracy), C and
    seconds. BLAS is held to one thread: these problems are small, and a busy machine makes multi-threaded
    OpenBLAS spin (25 s instead of 1 s for TREC-6 on 2 loaded cores, measured).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        # one-vs-rest predicts a constant for a label that is never (or always) positive in train, and says so
        warnings.filterwarnings("ignore", message=r"Label .* is present in all training examples")
        return _fit_baseline(x_train, y_train, x_val, y_val, x_test, y_test, c_grid, seed, target_type, label_names)


def _fit_model(target_type: str, x, y: np.ndarray, c: float, seed: int):
    """Logistic regression (class), one logistic regression per label (multi_label), ridge with alpha = 1 / C."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multiclass import OneVsRestClassifier

    if target_type == "regression":
        return Ridge(alpha=1.0 / c, random_state=seed).fit(x, y)
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    if target_type == "multi_label":
        if y.shape[1] == 1:  # sklearn reads one indicator column as two classes; with its complement it stays per-label
            y = np.hstack([y, 1 - y])
        return OneVsRestClassifier(model).fit(x, y)
    return model.fit(x, y)


def _predict(target_type: str, model, x, n_names: int) -> np.ndarray:
    """What targets.score reads: (n, n_names) class or per-label probabilities, or (n,) predicted values."""
    if target_type == "regression":
        return model.predict(x)
    probabilities = model.predict_proba(x)
    if target_type == "multi_label":
        return probabilities[:, :n_names]
    full = np.zeros((len(probabilities), n_names))  # classes absent from train get probability 0
    full[:, model.classes_] = probabilities
    return full


def _fit_baseline(x_train, y_train, x_val, y_val, x_test, y_test, c_grid, seed, target_type, label_names) -> dict:
    import scipy.sparse as sp

    started = time.time()
    primary = PRIMARY[target_type]
    scores, thresholds = {}, {}
    for c in c_grid:
        model = _fit_model(target_type, x_train, y_train, c, seed)
        predicted = _predict(target_type, model, x_val, len(label_names))
        # multi-label: the decision threshold is chosen on validation with C, as the classifier stage chooses its own
        thresholds[c] = best_threshold(y_val, predicted) if target_type == "multi_label" else THRESHOLD
        scores[c] = score(target_type, y_val, predicted, label_names, thresholds[c])[primary]
    best = max(c_grid, key=lambda c: (scores[c], -c))  # ties go to the stronger regularisation
    stack = sp.vstack if sp.issparse(x_train) else np.vstack
    model = _fit_model(target_type, stack([x_train, x_val]), np.concatenate([y_train, y_val]), best, seed)
    test = score(target_type, y_test, _predict(target_type, model, x_test, len(label_names)), label_names, thresholds[best])
    return {**test, f"validation_{primary}": scores[best], "C": best, "seconds": round(time.time() - started, 2)}


def fit_lsa(cfg: LsaConfig, tokens: Tokens, carve: Carve | None = None) -> LsaResult:
    """TF-IDF + SVD over the corpus and, if it is labelled, the two linear baselines (see the module docstring),
    C chosen on the carve (None: [validation]'s default carve of these tokens)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    from nlp_pipeline.models.linear import features as tfidf_features, fit_tfidf

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
    target_type = tokens.target_type
    train = tokens.indices("train", labelled=True)
    test = tokens.indices("test", labelled=True)
    carve = carve_of(tokens, carve)
    if len(train) and len(test) and len(np.unique(labels[train], axis=0)) > 1:
        fit_idx, val_idx = np.asarray(carve.train_indexes), np.asarray(carve.validation_indexes)
        model = "ridge" if target_type == "regression" else "logreg"
        names = list(tokens.label_names)
        features = normalize(doc_vectors)
        metrics[f"lsa_{model}"] = fit_baseline(
            features[fit_idx], labels[fit_idx], features[val_idx], labels[val_idx], features[test], labels[test],
            cfg.c_grid, cfg.seed, target_type=target_type, label_names=names,
        )
        ids = _id_docs(tokens)
        columns, _ = fit_tfidf([ids[i] for i in fit_idx] + [ids[i] for i in val_idx], cfg.ngram_max, len(tokens.types),
                               min_df=cfg.min_df, max_df=cfg.max_df, sublinear=cfg.sublinear_tf, unigram_min_df=True)

        def tfidf(indexes: np.ndarray):
            return tfidf_features(columns, [ids[i] for i in indexes])

        metrics[f"tfidf_{model}"] = fit_baseline(
            tfidf(fit_idx), labels[fit_idx], tfidf(val_idx), labels[val_idx], tfidf(test), labels[test], cfg.c_grid,
            cfg.seed, target_type=target_type, label_names=names,
        )
    return LsaResult(
        **documents_of(tokens),
        doc_vectors=doc_vectors,
        topic_terms=topic_terms,
        explained_variance_ratio=[float(v) for v in svd.explained_variance_ratio_],
        snippets=[" ".join(doc[:20]) for doc in docs],
        metrics=metrics,
    )


def _id_docs(tokens: Tokens) -> list[np.ndarray]:
    """Each document's token ids (into tokens.types) without IGNORED_TOKENS, as the bag-of-words models read it."""
    ignored = np.array([i for i, t in enumerate(tokens.types) if t in IGNORED_TOKENS], np.int64)
    return [ids[~np.isin(ids, ignored)] for ids in (np.asarray(tokens.doc_ids(i), np.int64) for i in range(len(tokens)))]


BASELINES = ("lsa_logreg", "tfidf_logreg", "lsa_ridge", "tfidf_ridge")  # metrics keys of the baselines fit_lsa trains


def summarize(result: LsaResult) -> dict:
    """One log line: the primary metric (and macro-F1 where there is one) of each baseline,
    e.g. {"n_components": 100, "topic_0": [...], "tfidf_logreg_accuracy": 0.91, "tfidf_logreg_macro_f1": 0.9}."""
    out = {"n_components": result.metrics.get("n_components"), "topic_0": result.topic_terms[0][:5] if result.topic_terms else []}
    primary = PRIMARY[result.target_type]
    for name in BASELINES:
        for metric in (primary, "macro_f1"):
            if isinstance(result.metrics.get(name, {}).get(metric), (int, float)):
                out[f"{name}_{metric}"] = round(result.metrics[name][metric], 4)
    return out


STAGE = Stage(
    name="lsa",
    version=4,  # 2: baselines for multi-label and regression targets, targets.score dicts; 3: multi-label threshold chosen on validation;
                # 4: targets.holdout (a class of 2-4 train documents now gives 1 to validation)
    config=LsaConfig,
    inputs={"tokens": "tokenization", "carve": "validation"},
    run=fit_lsa,
    describe=lambda cfg: f"k={cfg.n_components}",
    summary=summarize,
)
