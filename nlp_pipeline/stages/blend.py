"""blend: the RNN ClassifierResult + the linear stage's LinearResult + the validation Carve -> BlendResult.

The reported and bundled probabilities are (1 - w) * RNN + w * linear, with the w in 0, 0.1, ..., 1 that
`choose` picks on the classifier's validation documents (models/blend.py choose_weight; w = 0 is the RNN alone;
by default the largest w within one standard error of the best accuracy, decision 0021). Then
(`refit`, when w > 0) the linear model is refitted with its chosen C, character length and NB scaling on train +
validation documents, the one place validation documents are trained on: the RNN's epochs and the weight were
already chosen, and the reported validation scores are those of the train-only fit. The test split is scored
once, blended. Without a linear input (blend.linear = false) or with a skipped one (a target that is not one
class per text), the result is the RNN's own scores, weight 0.
Limits: the classifier and the linear model must have used the same carve (the carve given here, when there is
one; otherwise each other's): another carve is a DataError.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from nlp_pipeline.artifacts import BlendResult, Carve, ClassifierResult, LinearResult, Numericalized
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.targets import PRIMARY, score


@dataclass(frozen=True)
class BlendConfig:
    linear: bool = True                 # blend the linear stage's TF-IDF n-gram model in, weighted as validation prefers; false = the RNN alone (no linear stage)
    choose: str = "one_se"              # "one_se": the largest weight whose validation accuracy is within one standard error of the best (decision 0021); "accuracy": the best (ties: lower log-loss); "log_loss": the lowest log-loss
    refit: bool = True                  # once the weight is chosen (> 0), refit the linear model on train + validation documents (as GridSearchCV's refit); validation scores stay the train-only fit's

    def validate(self) -> None:
        from nlp_pipeline.models.blend import CHOICES

        if self.choose not in CHOICES:
            raise ConfigError(f"blend.choose must be one of {list(CHOICES)}, got {self.choose!r}")


def blend_classifier(cfg: BlendConfig, classifier: ClassifierResult, data: Numericalized,
                     linear: LinearResult | None = None, carve: Carve | None = None) -> BlendResult:
    """Choose the blend weight on validation, refit the linear model (cfg.refit), score the test split blended.
    The classifier and the linear result must have used `carve` (None: the classifier's carve)."""
    from nlp_pipeline.models.blend import blend, choose_weight, linear_model
    from nlp_pipeline.models.linear import document_ids, fit_linear, linear_proba

    unblended = {k: classifier.metrics[k] for k in ("validation", "test") if k in classifier.metrics}
    reference = carve or classifier
    for part, name in ((classifier, "classifier"), (linear, "linear model")):
        if part is not None and not _same_carve(part, reference):
            raise DataError(f"the {name} was fitted on another train/validation carve than the "
                            f"{'validation stage' if carve else 'classifier'}'s; run them from the same pipeline "
                            f"(one [validation] table)")
    if linear is None or linear.skipped:
        return BlendResult(metrics=unblended, test_probabilities=np.asarray(classifier.test_probabilities))
    started = time.perf_counter()
    valid, test = np.asarray(classifier.validation_indexes), np.asarray(classifier.test_indexes)
    labels, names, itos, settings = np.asarray(data.labels), list(data.label_names), list(data.vocab.itos), linear.settings
    fitted = linear_model(settings, linear.arrays, itos)
    weight, scores = choose_weight(classifier.validation_probabilities, linear.validation_probabilities, labels[valid],
                                   cfg.choose)
    refit = cfg.refit and weight > 0
    model = fitted
    if refit:  # the chosen settings, fitted on every labelled document the RNN saw
        both = np.concatenate([classifier.train_indexes, valid])
        model = fit_linear(document_ids(data, both, settings["max_length"]), labels[both], len(names), fitted.ngrams,
                           fitted.vocab_size, [fitted.C], settings["seed"], pad_id=fitted.pad_id,
                           min_df=settings["min_df"], char_ngrams=fitted.char_ngrams, itos=itos, nb=bool(len(fitted.nb_ratio)))
    model.weight = weight
    val_probs = blend(classifier.validation_probabilities, linear.validation_probabilities, weight)
    selection = linear.selection
    report = {"weight": weight, "C": fitted.C, "char_ngrams": fitted.char_ngrams, "nb": bool(len(fitted.nb_ratio)),
              "features": int(len(fitted.idf)),
              "validation_accuracy": {"rnn": scores[0.0][0], "linear": scores[1.0][0], "blend": scores[weight][0]},
              "weights_tried": {str(w): v for w, v in scores.items()}, "cv_accuracy": selection.get("cv_accuracy", {}),
              "cv_accuracy_by_chars": {str(n): v for n, v in selection.get("cv_accuracy_by_chars", {}).items()},
              "cv_accuracy_by_nb": {str(b).lower(): v for b, v in selection.get("cv_accuracy_by_nb", {}).items()},
              "refit_documents": int(len(classifier.train_indexes) + len(valid)) if refit else 0}
    source = (classifier.metrics.get("validation") or {}).get("source", "validation set")
    metrics = {"validation": dict(score("class", labels[valid], val_probs, names), source=source)}
    test_probs = np.asarray(classifier.test_probabilities)
    if len(test):
        linear_test = linear_proba(model, document_ids(data, test, settings["max_length"]))
        rnn_accuracy, linear_accuracy = (float((p.argmax(1) == labels[test]).mean()) for p in (test_probs, linear_test))
        test_probs = blend(test_probs, linear_test, weight)
        metrics["test"] = score("class", labels[test], test_probs, names)
        report["test_accuracy"] = {"rnn": round(rnn_accuracy, 4), "linear": round(linear_accuracy, 4),
                                   "blend": metrics["test"]["accuracy"]}
    report["seconds"] = round(time.perf_counter() - started, 1)
    metrics["blend"] = report
    return BlendResult(weight=weight, linear_settings=model.settings(), linear_arrays=model.arrays(), metrics=metrics,
                       test_probabilities=test_probs)


def _same_carve(result: ClassifierResult | LinearResult, reference: Carve | ClassifierResult) -> bool:
    return (np.array_equal(result.train_indexes, reference.train_indexes)
            and np.array_equal(result.validation_indexes, reference.validation_indexes))


def summarize(result: BlendResult) -> dict:
    """The blend's validation and test primary metric (targets.PRIMARY), its weight and each part's test accuracy (metrics.json)."""
    blend = result.metrics.get("blend") or {}
    validation, test = result.metrics.get("validation") or {}, result.metrics.get("test") or {}
    primary = next((p for p in dict.fromkeys(PRIMARY.values()) if p in validation), "accuracy")
    parts = {f"{part}_test_accuracy": value for part, value in (blend.get("test_accuracy") or {}).items() if part != "blend"}
    return {f"val_{primary}": validation.get(primary), f"test_{primary}": test.get(primary), "blend_weight": blend.get("weight"),
            **parts}


STAGE = Stage(
    name="blend",
    version=1,
    config=BlendConfig,
    inputs={"classifier": "classifier", "data": "numericalization", "linear": "linear", "carve": "validation"},
    optional=("linear",),
    run=blend_classifier,
    volatile=lambda cfg: () if cfg.linear else ("refit", "choose"),  # no weight is chosen, nothing refitted without a linear model
    describe=lambda cfg: "RNN + linear" + (", refit" if cfg.refit else "") if cfg.linear else "RNN alone",
    summary=summarize,
)
