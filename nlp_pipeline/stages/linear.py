"""linear: Numericalized labelled texts + the validation Carve -> LinearResult.

A TF-IDF n-gram logistic regression (models/linear.py) fitted on the carve's train documents (the ones the RNN
classifier trains on; each cut to its first `max_length` ids), with C, the character block (`chars`) and Naive
Bayes scaling (`nb`) chosen together by stratified 3-fold cross-validation on them, folds seeded with `seed`;
then its probabilities on the carve's validation documents, for the blend stage to choose the weight. It reads
no classifier output, so a classifier.* change never re-runs it, and a linear.* change re-runs it and the blend
in seconds and never the RNN; the result is plain data (settings, arrays, the CV table).
Limits: single-label targets with two classes or more in train; otherwise the result is `skipped` (no model)
and the blend passes the RNN through. The carve must be of the same corpus as the data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nlp_pipeline.artifacts import Carve, LinearResult, Numericalized
from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.targets import carve_of


@dataclass(frozen=True)
class LinearConfig:
    ngrams: int = 2                     # longest token n-gram of the linear model (1-3)
    c_grid: list[float] = field(default_factory=lambda: [0.25, 1.0, 4.0, 16.0])  # C values, chosen by 3-fold CV on the carve's train documents
    chars: list[int] = field(default_factory=lambda: [0, 6])  # character n-gram blocks tried, chosen with C by the same CV: 0 = none, n (3-6) = each token's character 2..n-grams
    nb: list[bool] = field(default_factory=lambda: [False, True])  # Naive Bayes log-count-ratio scaling tried (NBSVM; two-class targets only), chosen with C by the same CV
    max_length: int = 500               # documents are cut to their first max_length tokens (as classifier.max_length cuts the RNN's)
    seed: int = 0                       # seed of the cross-validation folds

    def validate(self) -> None:
        if not 1 <= self.ngrams <= 3 or not self.c_grid or any(c <= 0 for c in self.c_grid):
            raise ConfigError("linear.ngrams must be 1, 2 or 3 and linear.c_grid a non-empty list of C > 0")
        if not self.chars or any(n != 0 and not 3 <= n <= 6 for n in self.chars):
            raise ConfigError(f"linear.chars must list lengths that are 0 (no character n-grams) or 3 to 6, "
                              f"e.g. [0, 6]; got {self.chars}")
        if not self.nb or any(not isinstance(b, bool) for b in self.nb):
            raise ConfigError(f"linear.nb must list true and/or false, e.g. [false, true]; got {self.nb}")
        if self.max_length < 1:
            raise ConfigError(f"linear.max_length must be at least 1, got {self.max_length}")


def fit_linear_stage(cfg: LinearConfig, data: Numericalized, carve: Carve | None = None) -> LinearResult:
    """Fit the linear model on the carve's train documents and score its validation documents (carve None:
    [validation]'s default carve of data)."""
    from nlp_pipeline.models.batching import pad_id
    from nlp_pipeline.models.linear import MIN_DF, document_ids, fit_linear, linear_proba

    started = time.perf_counter()
    carve = carve_of(data, carve)
    train, valid = np.asarray(carve.train_indexes), np.asarray(carve.validation_indexes)
    carve = {"train_indexes": train.astype(np.int64), "validation_indexes": valid.astype(np.int64)}
    labels = np.asarray(data.labels)
    if data.target_type != "class":
        return LinearResult(**carve, skipped=f"a {data.target_type} target (the blend is for one class per text)")
    if len(np.unique(labels[train])) < 2:
        return LinearResult(**carve, skipped="one class in the train documents")
    n_classes, itos, seed, max_length = len(data.label_names), list(data.vocab.itos), cfg.seed, cfg.max_length
    model = fit_linear(document_ids(data, train, max_length), labels[train], n_classes, cfg.ngrams, len(itos),
                       list(cfg.c_grid), seed, pad_id=pad_id(data.vocab), char_ngrams=list(cfg.chars), itos=itos,
                       nb=list(cfg.nb))
    probabilities = linear_proba(model, document_ids(data, valid, max_length))
    return LinearResult(settings=dict(model.settings(), min_df=MIN_DF, seed=seed, max_length=max_length),
                        arrays=model.arrays(), selection=model.selection, **carve,
                        validation_probabilities=probabilities,
                        metrics={"features": int(len(model.idf)), "seconds": round(time.perf_counter() - started, 1)})


def summarize(result: LinearResult) -> dict:
    if result.skipped:
        return {"skipped": result.skipped}
    cv = result.selection.get("cv_accuracy") or {}
    return {"C": result.settings.get("C"), "char_ngrams": result.settings.get("char_ngrams"), "nb": result.settings.get("nb"),
            "cv_accuracy": cv.get(float(result.settings.get("C", 0.0))), "features": result.metrics.get("features"),
            "seconds": result.metrics.get("seconds")}


STAGE = Stage(
    name="linear",
    version=1,
    config=LinearConfig,
    inputs={"data": "numericalization", "carve": "validation"},
    run=fit_linear_stage,
    describe=lambda cfg: f"{cfg.ngrams}-grams, C in {list(cfg.c_grid)}, chars {list(cfg.chars)}, nb {list(cfg.nb)}",
    summary=summarize,
)
