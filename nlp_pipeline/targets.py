"""Scores for the three target types (artifacts.TARGET_TYPES): one class, a set of classes, or a number per text;
and the train/validation carve (the validation stage's) that lsa, classifier, linear and blend choose on.

    score("class", [0, 1], probs, ["neg", "pos"])              # accuracy, macro-F1, per class, confusion
    score("multi_label", [[1, 0], [1, 1]], probs, ["a", "b"])  # micro/macro-F1, subset accuracy, Hamming loss
    score("regression", [2.0, 3.5], values, ["rating"])        # RMSE, MAE, R², Pearson, Spearman
    PRIMARY["multi_label"]                                     # "micro_f1": what model selection maximises
    kept, held = holdout(labels, 0.1, seed, "class")           # the validation slice (stratified for classes)
    carve(tokens, "auto", 0.1, 0)                              # artifacts.Carve: the dev split, else that slice of train

`outputs` are what the classifier predicts: class probabilities (n, k) (the predicted class is the argmax),
per-label probabilities (n, k) (a label is predicted at p >= a threshold: THRESHOLD unless one was chosen on
validation with best_threshold), or predicted values (n, 1) or (n,).
Every function but carve is pure numpy; the results are dicts of JSON types (rounded to 4 decimals).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nlp_pipeline.artifacts import Carve
from nlp_pipeline.core.errors import DataError

PRIMARY = {"class": "accuracy", "multi_label": "micro_f1", "regression": "r2"}  # higher is better for all three
THRESHOLD = 0.5  # a multi-label prediction holds each label whose probability reaches this, unless chosen on validation
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 19))  # 0.05, 0.1, ..., 0.9: what best_threshold tries


def holdout(labels: np.ndarray, fraction: float, seed: int, target_type: str = "class") -> tuple[np.ndarray, np.ndarray]:
    """Seeded (kept, held-out) positions into `labels`, both ascending: the validation slice carve() holds out of
    train. "class" labels are stratified (each label is a group); label sets and
    numbers are one group, so their slice is random. Of a group of n >= 2 rows, round(fraction * n) are held out,
    at least 1 and at most n - 1 (a group of one row is kept whole).

    holdout(np.array([0, 0, 0, 0, 1, 1]), 0.25, 0) -> 1 of the four 0s and 1 of the two 1s held out.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    groups = ([np.flatnonzero(labels == value) for value in np.unique(labels)] if target_type == "class"
              else [np.arange(len(labels))])
    held = []
    for group in groups:
        n = min(max(int(round(len(group) * fraction)), 1), len(group) - 1) if len(group) >= 2 else 0
        held.append(rng.permutation(group)[:n])
    held_out = np.sort(np.concatenate(held)).astype(np.int64) if held else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


def carve(documents: Any, split: str = "auto", fraction: float = 0.1, seed: int = 0) -> Carve:
    """The train/validation documents of a Tokens or Numericalized artifact (any artifacts._Documents): split
    "auto" takes the labelled dev split when there is one, else holds out `fraction` of the labelled train
    documents (holdout, seeded); "train" always holds out; "dev" takes the dev split or raises DataError. No
    labelled train documents: an empty carve. The defaults are [validation]'s (stages/validation.py)."""
    train = documents.indices("train", labelled=True)
    empty = np.zeros(0, np.int64)
    if len(train) == 0:
        return Carve(train_indexes=empty, validation_indexes=empty, documents=len(documents))
    dev = documents.indices("dev", labelled=True)
    if split == "dev" and len(dev) == 0:
        raise DataError("validation.split = 'dev' but the corpus has no labelled dev documents; set validation.split "
                        "to \"auto\" or \"train\" to hold out part of train")
    if split in ("auto", "dev") and len(dev):
        return Carve(train_indexes=train.astype(np.int64), validation_indexes=dev.astype(np.int64), source="dev",
                     documents=len(documents))
    kept, held = holdout(np.asarray(documents.labels)[train], fraction, seed, documents.target_type)
    return Carve(train_indexes=train[kept].astype(np.int64), validation_indexes=train[held].astype(np.int64),
                 source="carved from train", documents=len(documents), fraction=fraction, seed=seed)


def carve_of(documents: Any, given: Carve | None) -> Carve:
    """`given` after checking it was made for these documents (the same corpus), or carve(documents) when None:
    what a stage called directly, without the validation stage, fits and chooses on."""
    if given is None:
        return carve(documents)
    if given.documents != len(documents):
        raise DataError(f"the validation carve is of {given.documents} documents but the data has {len(documents)}; "
                        f"make both from the same corpus (the same pipeline)")
    return given


def _prf(tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 from counts (0 where undefined)."""
    tp, predicted, actual = (np.asarray(a, dtype=float) for a in (tp, predicted, actual))
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    return precision, recall, f1


def _per_class(names: list[str], precision, recall, f1, support) -> dict[str, dict[str, Any]]:
    return {name: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                   "f1": round(float(f1[i]), 4), "support": int(support[i])} for i, name in enumerate(names)}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows = true).

    y_true [0, 0, 1, 1], y_pred [0, 1, 1, 1], names ["a", "b"] -> accuracy 0.75, confusion [[1, 1], [0, 2]],
    a: precision 1.0 recall 0.5 f1 0.6667; b: precision 0.6667 recall 1.0 f1 0.8; macro_f1 0.7333.
    """
    k = len(label_names)
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    confusion = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    actual = confusion.sum(1)
    precision, recall, f1 = _prf(np.diag(confusion), confusion.sum(0), actual)
    present = actual > 0
    return {
        "accuracy": round(float(np.trace(confusion) / max(len(y_true), 1)), 4),
        "macro_f1": round(float(f1[present].mean()) if present.any() else 0.0, 4),
        "n": int(len(y_true)),
        "per_class": _per_class(label_names, precision, recall, f1, actual),
        "confusion": confusion.tolist(),
    }


def multi_label_metrics(y_true: np.ndarray, probabilities: np.ndarray, label_names: list[str],
                        threshold: float = THRESHOLD) -> dict[str, Any]:
    """Micro- and macro-F1 (macro over labels present in y_true), subset accuracy (every label right), Hamming
    loss (share of wrong label decisions), per-label precision/recall/F1/support, at p >= threshold.

    y_true [[1, 0], [1, 1]], probabilities [[0.9, 0.2], [0.8, 0.1]], names ["a", "b"] -> predicted [[1, 0], [1, 0]]:
    a: precision 1 recall 1; b: recall 0; micro_f1 = 2*2 / (2*2 + 0 + 1) = 0.8, macro_f1 0.5,
    subset_accuracy 0.5, hamming_loss 0.25.
    """
    y_true = np.asarray(y_true) > 0
    predicted = np.asarray(probabilities) >= threshold
    tp = (y_true & predicted).sum(0)
    actual, n_predicted = y_true.sum(0), predicted.sum(0)
    precision, recall, f1 = _prf(tp, n_predicted, actual)
    micro_denominator = 2 * tp.sum() + (n_predicted.sum() - tp.sum()) + (actual.sum() - tp.sum())
    present = actual > 0
    n = len(y_true)
    return {
        "micro_f1": round(float(2 * tp.sum() / micro_denominator) if micro_denominator else 0.0, 4),
        "macro_f1": round(float(f1[present].mean()) if present.any() else 0.0, 4),
        "subset_accuracy": round(float((y_true == predicted).all(1).mean()) if n else 0.0, 4),
        "hamming_loss": round(float((y_true != predicted).mean()) if y_true.size else 0.0, 4),
        "threshold": threshold,
        "n": int(n),
        "per_class": _per_class(label_names, precision, recall, f1, actual),
    }


def best_threshold(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold in THRESHOLDS with the best micro-F1 on (y_true, probabilities), ties going to the one nearest
    0.5: y_true [[1, 0], [0, 1]], probabilities [[0.3, 0.1], [0.2, 0.28]] -> 0.25 (0.2 adds a wrong label, 0.3
    loses a right one)."""
    y_true = np.asarray(y_true) > 0
    probabilities = np.asarray(probabilities)
    positives = int(y_true.sum())

    def micro_f1(t: float) -> float:
        predicted = probabilities >= t
        tp = int((predicted & y_true).sum())
        denominator = int(predicted.sum()) + positives
        return 2 * tp / denominator if denominator else 0.0

    return max(THRESHOLDS, key=lambda t: (round(micro_f1(t), 10), -abs(t - THRESHOLD)))


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """RMSE, MAE, R² (1 - SSE / SST; 0 is predicting the mean, below 0 worse), Pearson and Spearman correlation
    (None when either side is constant), mean and standard deviation of the truth.

    y_true [1, 2, 3, 4], predicted [1, 2, 3, 5] -> rmse 0.5, mae 0.25, r2 = 1 - 1 / 5 = 0.8, spearman 1.0.
    """
    from scipy.stats import pearsonr, spearmanr

    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).ravel()
    error = p - y
    sst = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    varied = len(y) >= 2 and np.ptp(y) > 0 and np.ptp(p) > 0
    return {
        "rmse": round(float(np.sqrt((error ** 2).mean())) if len(y) else 0.0, 4),
        "mae": round(float(np.abs(error).mean()) if len(y) else 0.0, 4),
        "r2": round(1.0 - float((error ** 2).sum()) / sst, 4) if sst > 0 else 0.0,
        "pearson": round(float(pearsonr(y, p).statistic), 4) if varied else None,
        "spearman": round(float(spearmanr(y, p).statistic), 4) if varied else None,
        "mean": round(float(y.mean()), 4) if len(y) else 0.0,
        "std": round(float(y.std()), 4) if len(y) else 0.0,
        "n": int(len(y)),
    }


def score(target_type: str, y_true: np.ndarray, outputs: np.ndarray, label_names: list[str],
          threshold: float = THRESHOLD) -> dict[str, Any]:
    """The metrics of `target_type` for predictions `outputs` (see the module docstring); PRIMARY names the key
    model selection maximises. `threshold` is the multi-label decision threshold."""
    outputs = np.asarray(outputs)
    if target_type == "class":
        return classification_metrics(y_true, outputs.argmax(1) if len(outputs) else np.zeros(0, np.int64), label_names)
    if target_type == "multi_label":
        return multi_label_metrics(y_true, outputs, label_names, threshold)
    if target_type == "regression":
        return regression_metrics(y_true, outputs)
    raise ValueError(f"unknown target type {target_type!r}")


def mean_loss(target_type: str, y_true: np.ndarray, outputs: np.ndarray) -> float:
    """The validation loss shown next to the primary metric: cross-entropy of the true class, binary cross-entropy
    averaged over labels, or mean squared error (in the target's units)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if len(outputs) == 0:
        return 0.0
    if target_type == "class":
        y = np.asarray(y_true, dtype=np.int64)
        return float(-np.log(np.clip(outputs[np.arange(len(y)), y], 1e-12, None)).mean())
    if target_type == "multi_label":
        y = np.asarray(y_true) > 0
        p = np.clip(outputs, 1e-12, 1 - 1e-12)
        return float(-(np.where(y, np.log(p), np.log1p(-p))).mean())
    return float(((outputs.ravel() - np.asarray(y_true, dtype=np.float64).ravel()) ** 2).mean())


def predicted_text(target_type: str, row: np.ndarray, label_names: list[str], threshold: float = THRESHOLD) -> str:
    """One prediction as text: the argmax class; the labels at p >= threshold joined by '|'; the value."""
    row = np.asarray(row)
    if target_type == "class":
        return label_names[int(row.argmax())]
    if target_type == "multi_label":
        return "|".join(name for name, p in zip(label_names, row) if p >= threshold)
    return f"{float(row.ravel()[0]):.4g}"
