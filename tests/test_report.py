"""The run report on a hand-made ClassifierResult: the files exist, report.md carries the numbers, the error list
is the right documents in the right order, and missing pieces are said so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nlp_pipeline.artifacts import ClassifierResult, LanguageModel, Vocab
from nlp_pipeline.core.errors import DataError, MissingInputError
from nlp_pipeline.export import report
from nlp_pipeline.export.report import most_wrong, write_report, write_run_report
from nlp_pipeline.targets import classification_metrics, score

TEXTS = ["zero", "one", "two", "three", "four", "a great film", "a dull | film", "not bad at all", "so so"]
PNG = b"\x89PNG\r\n\x1a\n"


def hand_result(with_test: bool = True) -> ClassifierResult:
    """Test documents 5..8 with labels [0, 0, 1, 1]; predicted [0, 1, 0, 1]: documents 6 (confidence 0.8) and
    7 (0.6) are wrong. Accuracy 0.5, macro-F1 0.5."""
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
    labels = np.array([0, 0, 1, 1], np.int32)
    names = ["neg", "pos"]
    validation = dict(classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), names), source="carved from train")
    metrics = {"validation": validation, "selected": {"stage": 1, "epoch": 2}, "initialisation": "language model"}
    if with_test:
        metrics["test"] = classification_metrics(labels, probs.argmax(1), names)
    history = [{"stage": 1, "trainable_groups": 1, "epoch": 1, "learning_rate": 0.02, "train_loss": 0.69, "val_loss": 0.68,
                "val_accuracy": 0.5, "seconds": 0.1},
               {"stage": 1, "trainable_groups": 1, "epoch": 2, "learning_rate": 0.02, "train_loss": 0.6, "val_loss": 0.62,
                "val_accuracy": 0.6667, "seconds": 0.1},
               {"stage": 2, "trainable_groups": 3, "epoch": 1, "learning_rate": 0.01, "train_loss": 0.55, "val_loss": 0.64,
                "val_accuracy": 0.6667, "seconds": 0.1}]
    return ClassifierResult(
        arch={}, state_dict={}, vocab=Vocab(["xxunk", "xxpad"]), label_names=names, max_length=10, history=history,
        metrics=metrics, test_indexes=np.array([5, 6, 7, 8]) if with_test else np.zeros(0, np.int64),
        test_labels=labels if with_test else np.zeros(0, np.int32),
        test_probabilities=probs if with_test else np.zeros((0, 2), np.float32),
    )


def language_models() -> dict[str, LanguageModel]:
    def lm(phase_perplexities: list[tuple[str, float]]) -> LanguageModel:
        history = [{"phase": phase, "epoch": i + 1, "val_perplexity": p} for i, (phase, p) in enumerate(phase_perplexities)]
        return LanguageModel(arch={}, state_dict={}, vocab=Vocab(["xxunk"]), history=history,
                             metrics={"val_perplexity": phase_perplexities[-1][1], "train_tokens": 1000, "seconds": 3.0})

    finetuned = lm([("finetune_frozen", 95.5), ("finetune", 61.75)])
    finetuned.metrics.update(vocab_shared=600, vocab_new=400, tokens_new_share=0.0973)
    return {"pretrain_lm": lm([("pretrain", 812.5), ("pretrain", 402.25)]), "finetune_lm": finetuned}


LSA = {"n_components": 3, "tfidf_logreg": {"accuracy": 0.75, "macro_f1": 0.7333, "C": 4.0},
       "lsa_logreg": {"accuracy": 0.25, "macro_f1": 0.2, "C": 1.0}}


def test_most_wrong_by_hand():
    wrong = most_wrong(hand_result(), TEXTS)
    assert wrong == [
        {"index": 6, "text": "a dull | film", "true": "neg", "predicted": "pos", "confidence": 0.8, "true_probability": 0.2},
        {"index": 7, "text": "not bad at all", "true": "pos", "predicted": "neg", "confidence": 0.6, "true_probability": 0.4},
    ]
    assert [w["text"] for w in most_wrong(hand_result(), None)] == [None, None]
    assert most_wrong(hand_result(), TEXTS, limit=1)[0]["index"] == 6
    with pytest.raises(DataError, match="beyond the corpus's 7 texts"):
        most_wrong(hand_result(), TEXTS[:7])


def test_report_files_and_numbers(tmp_path):
    paths = write_report(tmp_path / "run", TEXTS, hand_result(), language_models(), LSA)
    names = sorted(p.name for p in paths)
    assert names == ["confusion_matrix.png", "most_wrong.jsonl", "report.html", "report.md", "training_curves.png"]
    for p in paths:
        assert p.parent == tmp_path / "run" and p.stat().st_size > 0
    assert (tmp_path / "run" / "confusion_matrix.png").read_bytes().startswith(PNG)
    assert (tmp_path / "run" / "training_curves.png").read_bytes().startswith(PNG)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == names  # no temporary files left

    rows = [json.loads(line) for line in (tmp_path / "run" / "most_wrong.jsonl").read_text().splitlines()]
    assert [(r["index"], r["predicted"], r["confidence"]) for r in rows] == [(6, "pos", 0.8), (7, "neg", 0.6)]

    md = (tmp_path / "run" / "report.md").read_text()
    assert "Scores on the **test** split (4 documents)" in md
    assert "| ULMFiT classifier (this run) | 0.5000 | 0.5000 |" in md
    assert "| TF-IDF n-grams + logistic regression | 0.7500 | 0.7333 |" in md
    assert "| LSA + logistic regression | 0.2500 | 0.2000 |" in md
    assert "| neg | 0.5000 | 0.5000 | 0.5000 | 2 |" in md           # per-class precision, recall, F1, support
    assert "| neg | 1 | 1 |" in md and "| pos | 1 | 1 |" in md     # confusion rows [[1, 1], [1, 1]]
    assert "| pretrain_lm | 402.2 | 2 | 812.5, 402.2 |" in md       # final perplexity, epochs, per epoch
    assert "| finetune_lm | 61.8 | 2 | 95.5, 61.8 |" in md
    assert "finetune_lm: 400 of the corpus's 1000 words (9.7 % of its tokens) were new to the pretrained" in md
    assert md.count("were new to the pretrained") == 1  # pretrain_lm has no such metric
    assert "they started at its mean embedding row" in md
    assert "| 2 | 3 | 1 | 0.01 | 0.5500 | 0.6400 | 0.6667 | 0.1 |" in md  # classifier epoch row
    assert "| 0.8000 | neg | pos | a dull \\| film |" in md           # most wrong, pipe escaped
    assert "The 2 most confident of 2 errors" in md
    assert "![confusion matrix](confusion_matrix.png)" in md and "![training curves](training_curves.png)" in md
    assert "validation accuracy 0.6667 (carved from train)" in md and "best epoch: stage 1 epoch 2" in md


def test_report_says_where_new_words_started_when_vectors_filled_them(tmp_path):
    lms = language_models()
    lms["finetune_lm"].metrics.update(vectors_method="glove", vectors_rows_initialised=400)
    write_report(tmp_path / "run", TEXTS, hand_result(), lms, LSA)
    md = (tmp_path / "run" / "report.md").read_text()
    assert "were new to the pretrained language model; they started from the glove vectors" in md


def test_report_names_the_blend_and_its_parts(tmp_path):
    import dataclasses

    from nlp_pipeline.models.linear import LinearModel

    result = hand_result()
    linear = LinearModel(vocab_size=2, ngrams=1, keys=[], idf=np.ones(2, np.float32), coef=np.zeros((1, 2), np.float32),
                         intercept=np.zeros(1, np.float32), n_classes=2, weight=0.6)
    blend = {"weight": 0.6, "validation_accuracy": {"rnn": 0.3333, "linear": 0.6667, "blend": 0.6667},
             "test_accuracy": {"rnn": 0.25, "linear": 0.75, "blend": 0.5}}
    result = dataclasses.replace(result, linear=linear, metrics=dict(result.metrics, blend=blend))
    write_report(tmp_path, TEXTS, result)
    md = (tmp_path / "report.md").read_text()
    assert "| ULMFiT classifier + linear blend (weight 0.6) | 0.5000 | 0.5000 |" in md
    assert "| the blend's RNN alone | 0.2500 | - |" in md and "| the blend's TF-IDF n-gram linear model alone | 0.7500 | - |" in md
    # with a character block chosen, the row says so
    result = dataclasses.replace(result, metrics=dict(result.metrics, blend=dict(blend, char_ngrams=6)))
    write_report(tmp_path, TEXTS, result)
    md = (tmp_path / "report.md").read_text()
    assert "| the blend's TF-IDF n-gram linear model alone (+ character 2..6-grams) | 0.7500 | - |" in md
    result = dataclasses.replace(result, metrics=dict(result.metrics, blend=dict(blend, char_ngrams=6, nb=True)))
    write_report(tmp_path, TEXTS, result)
    md = (tmp_path / "report.md").read_text()
    assert "| the blend's TF-IDF n-gram linear model alone (+ character 2..6-grams, NB scaling) | 0.7500 | - |" in md


def test_report_of_an_ensemble_lists_every_member(tmp_path):
    import dataclasses

    result = hand_result()
    history = [dict(r, member=1) for r in result.history] + [dict(result.history[0], member=2, val_accuracy=0.3333)]
    members = [{"stage": 1, "epoch": 2, "member": 1}, {"stage": 1, "epoch": 1, "member": 2}]
    result = dataclasses.replace(result, arch={"members": 2}, history=history, metrics=dict(result.metrics, members=members))
    write_report(tmp_path, TEXTS, result)
    md = (tmp_path / "report.md").read_text()
    assert "An ensemble of 2 classifiers" in md
    assert "member 1's best epoch: stage 1 epoch 2; member 2's best epoch: stage 1 epoch 1" in md
    assert "| 2 | 1 | 1 | 1 | 0.02 | 0.6900 | 0.6800 | 0.3333 |" in md  # the epoch table has a member column


def test_report_without_test_split_lm_or_baselines(tmp_path):
    paths = write_report(tmp_path, None, hand_result(with_test=False))
    md = (tmp_path / "report.md").read_text()
    assert "Scores on the **validation** split (3 documents); the corpus has no labelled test documents" in md
    assert "| ULMFiT classifier (this run) | 0.6667 |" in md
    assert "TF-IDF" not in md and "No language model in this run" in md and "No labelled test documents." in md
    assert (tmp_path / "most_wrong.jsonl").read_text() == "" and len(paths) == 5


def test_run_report_from_artifacts(tmp_path):
    from nlp_pipeline.artifacts import Corpus, LsaResult

    corpus = Corpus(labels=np.zeros(9, np.int32), splits=np.zeros(9, np.int8), label_names=["neg", "pos"], texts=TEXTS)
    lsa = LsaResult(labels=np.zeros(9, np.int32), splits=np.zeros(9, np.int8), label_names=["neg", "pos"], metrics=LSA)
    write_run_report(tmp_path, {"corpus": corpus, "lsa": lsa, "classifier": hand_result(), **language_models()})
    md = (tmp_path / "report.md").read_text()
    assert "0.7333" in md and "| finetune_lm | 61.8 |" in md and "not bad at all" in md
    with pytest.raises(MissingInputError, match="needs the classifier artifact"):
        write_run_report(tmp_path, {"corpus": corpus})


# --- multi-label and regression targets ----------------------------------------------------------------------

def history(column: str, values: list[float]) -> list[dict]:
    return [{"stage": 1, "trainable_groups": 1, "epoch": i + 1, "learning_rate": 0.01, "train_loss": 0.5, "val_loss": 0.4,
             column: value, "seconds": 0.1} for i, value in enumerate(values)]


def multi_label_result() -> ClassifierResult:
    """Test documents 5..8 with label sets {action}, {comedy, drama}, {action, comedy}, {} and predicted sets
    {action}, {drama}, {action, comedy}, {comedy}: documents 6 (mean absolute error (0.2 + 0.6 + 0.1) / 3 = 0.3)
    and 8 ((0.1 + 0.6 + 0.3) / 3 = 0.3333) are wrong. tp 4 of 5 predicted and 5 true: micro-F1 0.8; F1 per label
    1, 0.5, 1: macro-F1 0.8333; subset accuracy 0.5; Hamming loss 2 / 12 = 0.1667."""
    names = ["action", "comedy", "drama"]
    labels = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 0]], np.int8)
    probs = np.array([[0.9, 0.1, 0.2], [0.2, 0.4, 0.9], [0.7, 0.8, 0.1], [0.1, 0.6, 0.3]], np.float32)
    validation = dict(score("multi_label", np.array([[1, 0, 0], [0, 0, 1]]), np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.2]]),
                            names), source="carved from train")   # micro-F1 2 / (2 + 1) = 0.6667
    metrics = {"validation": validation, "test": score("multi_label", labels, probs, names), "selected": {"stage": 1, "epoch": 2}}
    return ClassifierResult(
        arch={}, state_dict={}, vocab=Vocab(["xxunk", "xxpad"]), label_names=names, max_length=10,
        history=history("val_micro_f1", [0.5, 0.6667]), metrics=metrics, test_indexes=np.array([5, 6, 7, 8]),
        test_labels=labels, test_probabilities=probs, target_type="multi_label",
    )


def regression_result(with_test: bool = True) -> ClassifierResult:
    """Test documents 5..8 rated [1, 2, 4, 5], predicted [1.5, 2, 2.5, 4.5]: errors 0.5, 0, 1.5, 0.5; RMSE
    sqrt(2.75 / 4) = 0.8292, MAE 0.625, R² 1 - 2.75 / 10 = 0.725, Spearman 1; truth mean 3, std 1.5811."""
    labels = np.array([1.0, 2.0, 4.0, 5.0], np.float32)
    predicted = np.array([[1.5], [2.0], [2.5], [4.5]], np.float32)
    validation = dict(score("regression", np.array([1.0, 3.0]), np.array([[1.0], [2.0]]), ["stars"]),
                      source="dev split")  # RMSE sqrt(1 / 2), MAE 0.5, R² 1 - 1 / 2, two points: correlations 1
    metrics = {"validation": validation, "selected": {"stage": 1, "epoch": 1}}
    if with_test:
        metrics["test"] = score("regression", labels, predicted, ["stars"])
    return ClassifierResult(
        arch={}, state_dict={}, vocab=Vocab(["xxunk", "xxpad"]), label_names=["stars"], max_length=10,
        history=history("val_r2", [0.5, 0.25]), metrics=metrics,
        test_indexes=np.array([5, 6, 7, 8]) if with_test else np.zeros(0, np.int64),
        test_labels=labels if with_test else np.zeros(0, np.float32),
        test_probabilities=predicted if with_test else np.zeros((0, 1), np.float32), target_type="regression",
    )


def test_most_wrong_multi_label_by_hand():
    assert most_wrong(multi_label_result(), TEXTS) == [
        {"index": 8, "text": "so so", "true": "", "predicted": "comedy", "error": 0.3333},
        {"index": 6, "text": "a dull | film", "true": "comedy|drama", "predicted": "drama", "error": 0.3},
    ]


def test_most_wrong_regression_by_hand():
    assert most_wrong(regression_result(), TEXTS) == [   # the exact prediction (document 6) is left out; ties keep order
        {"index": 7, "text": "not bad at all", "true": 4.0, "predicted": 2.5, "error": 1.5},
        {"index": 5, "text": "a great film", "true": 1.0, "predicted": 1.5, "error": 0.5},
        {"index": 8, "text": "so so", "true": 5.0, "predicted": 4.5, "error": 0.5},
    ]


def test_multi_label_report(tmp_path):
    lsa = {"tfidf_logreg": dict(score("multi_label", np.array([[1, 0, 0]]), np.array([[0.9, 0.1, 0.1]]), ["action", "comedy", "drama"]),
                                validation_micro_f1=0.9, C=4.0),
           "lsa_logreg": {"micro_f1": 0.25, "macro_f1": 0.2, "subset_accuracy": 0.1, "hamming_loss": 0.4}}
    paths = write_report(tmp_path, TEXTS, multi_label_result(), language_models(), lsa)
    assert sorted(p.name for p in paths) == ["most_wrong.jsonl", "report.html", "report.md", "training_curves.png"]  # no confusion matrix
    md = (tmp_path / "report.md").read_text()
    assert "| model | micro-F1 | macro-F1 | subset accuracy | Hamming loss |" in md
    assert "| ULMFiT classifier (this run) | 0.8000 | 0.8333 | 0.5000 | 0.1667 |" in md
    assert "| ULMFiT classifier on its validation documents (carved from train) | 0.6667 |" in md
    assert "| TF-IDF n-grams + one-vs-rest logistic regression | 1.0000 | 1.0000 | 1.0000 | 0.0000 |" in md
    assert "| LSA + one-vs-rest logistic regression | 0.2500 | 0.2000 | 0.1000 | 0.4000 |" in md
    assert "## Per label (test)" in md and "| comedy | 0.5000 | 0.5000 | 0.5000 | 2 |" in md
    assert "Confusion" not in md and "confusion_matrix" not in md
    assert "validation micro-F1 0.6667 (carved from train)" in md
    assert "| train loss | val loss | val micro-F1 | seconds |" in md and "| 0.5000 | 0.4000 | 0.6667 | 0.1 |" in md
    assert "## Most wrong test texts (mean absolute error of the label probabilities)" in md
    assert "The 2 largest of 2 errors" in md
    assert "| 0.3333 | (none) | comedy | so so |" in md and "| 0.3000 | comedy\\|drama | drama | a dull \\| film |" in md


def test_regression_report_and_scatter(tmp_path):
    result = regression_result()
    lsa = {"tfidf_ridge": {"rmse": 1.1, "mae": 0.9, "r2": 0.61, "pearson": 0.8, "spearman": None, "validation_r2": 0.6, "C": 1.0},
           "lsa_ridge": {"rmse": 1.4, "mae": 1.2, "r2": 0.3, "pearson": 0.55, "spearman": 0.5}}
    paths = write_report(tmp_path, TEXTS, result, None, lsa)
    assert sorted(p.name for p in paths) == ["most_wrong.jsonl", "predicted_vs_true.png", "report.html", "report.md", "training_curves.png"]
    assert (tmp_path / "predicted_vs_true.png").read_bytes().startswith(PNG)
    md = (tmp_path / "report.md").read_text()
    pearson = result.metrics["test"]["pearson"]
    assert "| model | RMSE | MAE | R² | Pearson | Spearman |" in md
    assert f"| ULMFiT classifier (this run) | 0.8292 | 0.6250 | 0.7250 | {pearson:.4f} | 1.0000 |" in md
    assert "| ULMFiT classifier on its validation documents (dev split) | 0.7071 | 0.5000 | 0.5000 | 1.0000 | 1.0000 |" in md
    assert "| TF-IDF n-grams + ridge regression | 1.1000 | 0.9000 | 0.6100 | 0.8000 | - |" in md
    assert "| LSA + ridge regression | 1.4000 | 1.2000 | 0.3000 | 0.5500 | 0.5000 |" in md
    assert "stars: mean 3.0000, standard deviation 1.5811" in md
    assert "![predicted vs true](predicted_vs_true.png)" in md
    assert "Confusion" not in md and "Per class" not in md and "Per label" not in md
    assert "validation R² 0.5000 (dev split)" in md and "| val R² |" in md
    assert "## Largest errors on test texts" in md and "The 3 largest of 3 errors" in md
    assert "| 1.5000 | 4.0000 | 2.5000 | not bad at all |" in md
    rows = [json.loads(line) for line in (tmp_path / "most_wrong.jsonl").read_text().splitlines()]
    assert [(r["index"], r["true"], r["predicted"]) for r in rows] == [(7, 4.0, 2.5), (5, 1.0, 1.5), (8, 5.0, 4.5)]


def test_regression_report_without_test_split(tmp_path):
    paths = write_report(tmp_path, None, regression_result(with_test=False))
    assert sorted(p.name for p in paths) == ["most_wrong.jsonl", "report.html", "report.md", "training_curves.png"]
    md = (tmp_path / "report.md").read_text()
    assert "Scores on the **validation** split (2 documents)" in md and "No labelled test documents." in md
    assert "predicted_vs_true" not in md


@pytest.mark.parametrize("result, column, axis, loss", [
    (hand_result(), "val_accuracy", "accuracy", "cross-entropy"),
    (multi_label_result(), "val_micro_f1", "micro-F1", "binary cross-entropy"),
    (regression_result(), "val_r2", "R²", "mean squared error (standardised target)"),
])
def test_training_curves_plot_the_primary_metric(tmp_path, monkeypatch, result, column, axis, loss):
    figures = []
    monkeypatch.setattr(report, "_save_figure", lambda figure, path: figures.append(figure))
    report.plot_training_curves(result, {}, tmp_path / "curves.png")
    _, loss_axes, metric_axes = figures[0].axes
    assert metric_axes.get_ylabel() == axis and metric_axes.get_title() == f"Classifier: validation {axis}"
    assert loss_axes.get_ylabel() == loss
    assert list(metric_axes.lines[0].get_ydata()) == [r[column] for r in result.history]
