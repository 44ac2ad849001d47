"""The blend: (1 - w) * RNN + w * linear probabilities, the one composition of rnn -> linear -> blend that the blend
stage, the predict bundle, the report and nlp_pipeline.sklearn use.

    weight, scores = choose_weight(rnn_val, linear_val, y_val, "one_se")   # a w in WEIGHTS by validation (see its doc)
    probs = blend(rnn_probs, linear_probs, weight)                # (n, n_classes) float32, rows sum to 1
    model = linear_model(settings, arrays, itos, weight)          # a LinearModel from a LinearResult/BlendResult's data
    probs = blend_in(model, rnn_probs, docs)                      # the same from the model (weight model.weight); no-op for None
    result = compose(classifier_result, blend_result)             # the ClassifierResult that the bundle and report read

Takes probabilities as (n, n_classes) arrays whose rows line up, and id arrays cut to the classifier's max_length
(what the RNN read); single-label targets only (the blend stage passes any other target through unblended).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from nlp_pipeline.artifacts import BlendResult, ClassifierResult
from nlp_pipeline.models.linear import LinearModel, linear_proba

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))  # blend weights of the linear model tried on validation
CHOICES = ("accuracy", "log_loss", "one_se")  # how choose_weight picks the weight on validation


def blend(neural: np.ndarray, linear: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * neural + weight * linear, as float32 rows that sum to 1: blend([[1, 0]], [[0, 1]], 0.3) -> [[0.7, 0.3]]."""
    if weight <= 0.0:
        return np.asarray(neural, np.float32)
    return ((1.0 - weight) * np.asarray(neural, np.float64) + weight * np.asarray(linear, np.float64)).astype(np.float32)


def blend_in(model: LinearModel | None, neural: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    """The classifier's output: `neural` probabilities of `docs` (id arrays as the RNN read them) blended with
    model's at model.weight; `neural` unchanged when there is no model or its weight is 0."""
    if model is None or model.weight <= 0.0:
        return np.asarray(neural, np.float32)
    return blend(neural, linear_proba(model, docs), model.weight)


def choose_weight(neural: np.ndarray, linear: np.ndarray, y: np.ndarray, by: str) -> tuple[float, dict]:
    """The blend weight in WEIGHTS that validation prefers; returns (weight, {weight: [accuracy, log-loss]}).

    by "accuracy": the best accuracy, ties broken by lower log-loss, then by the smaller weight.
    by "log_loss": the lowest log-loss, ties by the smaller weight.
    by "one_se": the largest weight whose accuracy is within one standard error of the best's (the paired
    standard error of the per-document difference; Breiman's one-standard-error rule): the RNN's probabilities
    are those its epoch was chosen on, the linear model's are not, so a blend needs to be clearly better on
    validation to take weight from the linear model.
    """
    if by not in CHOICES:
        raise ValueError(f"by must be one of {CHOICES}, got {by!r}")
    y = np.asarray(y, np.int64)
    scores, right = {}, {}
    for w in WEIGHTS:
        p = blend(neural, linear, w).astype(np.float64)
        right[w] = (p.argmax(1) == y).astype(np.float64) if len(y) else np.zeros(0)
        accuracy = float(right[w].mean()) if len(y) else 0.0
        loss = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)).mean()) if len(y) else 0.0
        scores[w] = [round(accuracy, 4), round(loss, 4)]
    best = max(WEIGHTS, key=lambda w: (scores[w][0], -scores[w][1], -w))
    if by == "log_loss":
        best = min(WEIGHTS, key=lambda w: (scores[w][1], w))
    elif by == "one_se" and len(y) > 1:
        def within(w: float) -> bool:
            gap = right[best] - right[w]
            return gap.mean() <= gap.std(ddof=1) / np.sqrt(len(y))
        best = max(w for w in WEIGHTS if within(w))
    return best, scores


def linear_model(settings: dict[str, Any], arrays: dict[str, np.ndarray], itos: list[str],
                 weight: float | None = None) -> LinearModel:
    """The LinearModel that settings + arrays describe (a LinearResult's or a BlendResult's), its weight set
    when given; itos (the vocabulary's strings) feeds a character block and is ignored without one."""
    model = LinearModel.from_parts(settings, arrays, list(itos) if settings.get("char_ngrams") else None)
    if weight is not None:
        model.weight = float(weight)
    return model


def compose(classifier: ClassifierResult, blended: BlendResult | None) -> ClassifierResult:
    """The classifier as the bundle, the report and predict see it: the RNN's result with the blend's linear
    model (weight set), blended test probabilities and the blend's validation, test and "blend" metrics.
    blended None (a run that stopped at the classifier) gives the RNN alone."""
    if blended is None:
        return classifier
    linear = (linear_model(blended.linear_settings, blended.linear_arrays, classifier.vocab.itos, blended.weight)
              if blended.linear_settings else None)
    metrics = dict(classifier.metrics)
    metrics.update({k: v for k, v in blended.metrics.items() if k in ("validation", "test", "blend")})
    probabilities = blended.test_probabilities if len(blended.test_probabilities) else classifier.test_probabilities
    return dataclasses.replace(classifier, metrics=metrics, test_probabilities=probabilities, linear=linear)
