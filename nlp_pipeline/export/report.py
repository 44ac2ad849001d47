"""The run report: what a person reads after `nlp-pipeline run`, written into runs/<name>/.

    write_report(run_dir, corpus.texts, classifier, {"pretrain_lm": lm0, "finetune_lm": lm1}, lsa.metrics)
    -> [run_dir/report.md, run_dir/report.html, run_dir/confusion_matrix.png, run_dir/training_curves.png,
        run_dir/most_wrong.jsonl]

The report's content is collected once, as a list of blocks (report_blocks: Heading, Paragraph, Table, Figure,
Code), and rendered twice: render_markdown here, export/report_html.py's render_html (one self-contained page,
figures inlined).
- report.md / report.html: the classifier's headline scores (HEADLINE: accuracy and macro-F1 for a class;
  micro-/macro-F1, subset accuracy and Hamming loss for a label set; RMSE, MAE, R², Pearson and Spearman for a
  number) next to the lsa stage's TF-IDF and LSA baselines (same test split), per-class (per-label) precision /
  recall / F1, the confusion matrix (class) or the predicted-vs-true scatter (regression), LM perplexities, the
  classifier's epochs, the worst test texts, then (when given) the LSA topics, nearest neighbours of a few words
  (each word-vector method's stored ones, and the same words in the fine-tuned LM's embedding), the timings of
  the run that wrote it and its config.toml.
- confusion_matrix.png (class only): counts annotated in each cell, label names on both axes, rows = true labels.
- predicted_vs_true.png (regression only): one dot per test document, the y = x line of perfect predictions.
- training_curves.png: LM validation perplexity per epoch (pretrain, finetune), classifier train and
  validation loss per epoch, the validation primary metric (targets.PRIMARY: accuracy, micro-F1, R²) per
  epoch (stage boundaries dotted, the selected epoch starred).
- most_wrong.jsonl: test documents the classifier got wrong, worst first (see most_wrong): corpus index, text,
  true and predicted label (label set, value), and how wrong.
Scores are the test split's when the corpus has labelled test documents, else the validation set's (said so).
Each file is written to a hidden temporary name and renamed (core.atomic.write_file), so a reader never sees
half a file.
Limits: matplotlib's Agg backend only (no display needed); a confusion matrix of more than ~40 labels gets
small print; texts appear as the corpus holds them (no anonymisation).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlp_pipeline.artifacts import ClassifierResult, LanguageModel, LsaResult, WordVectors, label_text
from nlp_pipeline.core.atomic import write_file
from nlp_pipeline.core.errors import DataError, MissingInputError
from nlp_pipeline.targets import PRIMARY, THRESHOLD, predicted_text

REPORT_FILE = "report.md"
HTML_FILE = "report.html"
CONFUSION_FILE = "confusion_matrix.png"
SCATTER_FILE = "predicted_vs_true.png"
CURVES_FILE = "training_curves.png"
WRONG_FILE = "most_wrong.jsonl"
REPORT_FILES = (REPORT_FILE, HTML_FILE, CONFUSION_FILE, SCATTER_FILE, CURVES_FILE, WRONG_FILE)  # every file write_report may write
LM_IDS = ("pretrain_lm", "finetune_lm", "pretrain_lm:backward", "finetune_lm:backward")
VECTOR_IDS = ("embeddings:word2vec", "embeddings:fasttext", "embeddings:glove", "embeddings:pretrained")
# instance ids a run report reads (numericalization: the classifier's document vectors in the TensorBoard projector)
REPORT_ARTIFACTS = ("corpus", "numericalization", "lsa", *VECTOR_IDS, *LM_IDS, "classifier", "blend")
HEADLINE = {  # target type -> the scores table's columns: (key in targets.score(...), column name)
    "class": (("accuracy", "accuracy"), ("macro_f1", "macro-F1")),
    "multi_label": (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("subset_accuracy", "subset accuracy"),
                    ("hamming_loss", "Hamming loss")),
    "regression": (("rmse", "RMSE"), ("mae", "MAE"), ("r2", "R²"), ("pearson", "Pearson"), ("spearman", "Spearman")),
}
BASELINES = {  # target type -> the lsa stage's baselines: (key in LsaResult.metrics, row name)
    "class": (("tfidf_logreg", "TF-IDF n-grams + logistic regression"), ("lsa_logreg", "LSA + logistic regression")),
    "multi_label": (("tfidf_logreg", "TF-IDF n-grams + one-vs-rest logistic regression"),
                    ("lsa_logreg", "LSA + one-vs-rest logistic regression")),
    "regression": (("tfidf_ridge", "TF-IDF n-grams + ridge regression"), ("lsa_ridge", "LSA + ridge regression")),
}
LOSSES = {"class": "cross-entropy", "multi_label": "binary cross-entropy",
          "regression": "mean squared error (standardised target)"}


def primary_name(target_type: str) -> str:
    """The column name of the metric model selection maximises: 'multi_label' -> 'micro-F1'."""
    return dict(HEADLINE[target_type])[PRIMARY[target_type]]


def _atomic_write(path: Path, data: bytes) -> None:
    write_file(path, lambda handle: handle.write(data))


def _save_figure(figure: Any, path: Path) -> None:
    write_file(path, lambda handle: figure.savefig(handle, format=path.suffix.lstrip(".") or "png"))


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas, without touching pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def format_value(value: Any) -> str:
    """A table value as text: 0.93456 -> '0.9346', 85.99 -> '86.0', None or NaN -> '-', anything else str()."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _cell(value: Any) -> str:
    """A markdown table cell: format_value, pipes escaped, newlines flattened: _cell('a|b') -> 'a\\|b'."""
    return format_value(value).replace("|", "\\|").replace("\n", " ")


def _seconds(value: Any) -> str | None:
    return f"{value:.1f}" if isinstance(value, (int, float)) else None


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def snippet(text: str, width: int = 100) -> str:
    """One line of at most width characters: snippet('a\\n b', 100) -> 'a b'; longer texts end with '…'."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# --- pieces ------------------------------------------------------------------------------------------------

def evaluated_split(classifier: ClassifierResult) -> tuple[str, dict[str, Any]]:
    """("test", metrics) when the classifier was scored on a test split, else ("validation", metrics)."""
    primary = PRIMARY[classifier.target_type]
    for split in ("test", "validation"):
        metrics = classifier.metrics.get(split)
        if isinstance(metrics, dict) and metrics.get(primary) is not None:
            return split, metrics
    raise DataError("the classifier result has neither test nor validation metrics; retrain it with the classifier stage")


def most_wrong(classifier: ClassifierResult, corpus_texts: list[str] | None, limit: int = 500) -> list[dict[str, Any]]:
    """Wrongly predicted test documents, the worst first (at most `limit`).

    Each row: index (position in the corpus), text (None without corpus_texts), true, predicted, and by target type
      class        confidence (probability of the predicted label) and true_probability; most confident first
      multi_label  error: mean |indicator - probability| over the labels, of documents whose predicted label set
                   (p >= the model's threshold) is not the true one; true and predicted are sets as text ("a|b", "" = none)
      regression   error: |predicted - true|; true and predicted are numbers
    """
    outputs = np.asarray(classifier.test_probabilities, dtype=np.float64)
    if outputs.size == 0:
        return []
    target_type, names = classifier.target_type, classifier.label_names
    threshold = float(classifier.arch.get("threshold", THRESHOLD))  # multi-label: chosen on validation
    truth = np.asarray(classifier.test_labels)
    indexes = np.asarray(classifier.test_indexes, dtype=np.int64)
    if not len(truth) == len(indexes) == len(outputs):
        raise DataError(f"classifier test arrays disagree: {len(indexes)} indexes, {len(truth)} labels, {len(outputs)} rows")
    if corpus_texts is not None and len(indexes) and int(indexes.max()) >= len(corpus_texts):
        raise DataError(f"test document {int(indexes.max())} is beyond the corpus's {len(corpus_texts)} texts; "
                        f"pass the corpus the classifier was trained on")
    if target_type == "class":
        truth = truth.astype(np.int64)
        badness = outputs.max(axis=1)                                     # confidence of the predicted class
        wrong = np.flatnonzero(outputs.argmax(axis=1) != truth)
    elif target_type == "multi_label":
        badness = np.abs((truth > 0) - outputs).mean(axis=1)
        wrong = np.flatnonzero(((outputs >= threshold) != (truth > 0)).any(axis=1))
    else:
        truth, outputs = truth.astype(np.float64).ravel(), outputs.ravel()
        badness = np.abs(outputs - truth)
        wrong = np.flatnonzero(badness > 0)
    order = wrong[np.argsort(-badness[wrong], kind="stable")][:limit]
    rows = []
    for i in order:
        row: dict[str, Any] = {"index": int(indexes[i]),
                               "text": None if corpus_texts is None else corpus_texts[int(indexes[i])]}
        if target_type == "regression":
            row.update(true=round(float(truth[i]), 4), predicted=round(float(outputs[i]), 4))
        else:
            row.update(true=label_text(truth, i, names), predicted=predicted_text(target_type, outputs[i], names, threshold))
        if target_type == "class":
            row.update(confidence=round(float(badness[i]), 4), true_probability=round(float(outputs[i, truth[i]]), 4))
        else:
            row["error"] = round(float(badness[i]), 4)
        rows.append(row)
    return rows


def plot_confusion_matrix(confusion: list[list[int]], label_names: list[str], path: Path, title: str) -> Path:
    """A heat map of the counts (rows = true, columns = predicted), each cell annotated, shaded by row share."""
    matrix = np.asarray(confusion, dtype=np.int64)
    k = len(label_names)
    size = min(max(4.5, 0.55 * k + 2.5), 22.0)
    figure = _figure(size + 1.2, size)
    axes = figure.add_subplot()
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    font = 12 if k <= 10 else 9  # cells are 0.55 inch or more (the figure grows with k), so 9 pt still fits 3 digits
    for i in range(k):
        for j in range(k):
            axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=font,
                      color="white" if shares[i, j] > 0.55 else "black")
    axes.set_xticks(range(k), labels=label_names, rotation=45 if k > 4 or max(map(len, label_names), default=0) > 6 else 0,
                    ha="right" if k > 4 else "center", fontsize=font)
    axes.set_yticks(range(k), labels=label_names, fontsize=font)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    axes.set_title(title)
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("share of the true label's documents")
    figure.tight_layout()
    _save_figure(figure, path)
    return path


def plot_predicted_vs_true(truth: np.ndarray, predicted: np.ndarray, target_name: str, path: Path, title: str) -> Path:
    """One dot per document (true value across, predicted up) and the dashed y = x line of perfect predictions."""
    truth = np.asarray(truth, dtype=np.float64).ravel()
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    figure = _figure(5.5, 5.2)
    axes = figure.add_subplot()
    axes.scatter(truth, predicted, s=14, alpha=0.4 if len(truth) > 500 else 0.8, edgecolors="none", label="test document")
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="C3", linestyle="--", linewidth=1, label="y = x (perfect prediction)")
    axes.set_xlabel(f"true {target_name}")
    axes.set_ylabel(f"predicted {target_name}")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    _save_figure(figure, path)
    return path


def plot_training_curves(classifier: ClassifierResult, language_models: dict[str, LanguageModel], path: Path) -> Path:
    """Three panels: LM validation perplexity per epoch, classifier losses per epoch, and the validation primary
    metric per epoch (history column "val_" + targets.PRIMARY: val_accuracy, val_micro_f1, val_r2)."""
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

    figure = _figure(15.0, 4.4)
    lm_axes, loss_axes, acc_axes = figure.subplots(1, 3)

    plotted = False
    for n, (name, lm) in enumerate(language_models.items()):
        rows = [r for r in lm.history if r.get("val_perplexity") is not None]
        if not rows:
            continue
        epochs = range(1, len(rows) + 1)
        lm_axes.plot(epochs, [r["val_perplexity"] for r in rows], marker="o", color=f"C{n}", label=name)
        frozen = [i + 1 for i, r in enumerate(rows) if str(r.get("phase", "")).endswith("frozen")]
        if frozen:
            lm_axes.plot(frozen, [rows[i - 1]["val_perplexity"] for i in frozen], marker="s", linestyle="none",
                         color=f"C{n}", markerfacecolor="white", label=f"{name} (frozen epochs)")
        plotted = True
    if plotted:
        values = [r["val_perplexity"] for lm in language_models.values() for r in lm.history
                  if r.get("val_perplexity") is not None]
        if max(values) > 5 * min(values):  # pretrain and finetune perplexities of very different size
            lm_axes.set_yscale("log")
            lm_axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            lm_axes.yaxis.set_major_formatter(ScalarFormatter())
            lm_axes.yaxis.set_minor_formatter(NullFormatter())
        longest = max(sum(r.get("val_perplexity") is not None for r in lm.history) for lm in language_models.values())
        lm_axes.set_xlim(0.5, longest + 0.5)  # whole epochs, also when every LM ran a single one
        if longest <= 12:
            lm_axes.set_xticks(range(1, longest + 1))
        else:
            lm_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        lm_axes.legend()
    else:
        lm_axes.text(0.5, 0.5, "no language model in this run", ha="center", va="center", transform=lm_axes.transAxes)
    lm_axes.set_title("Language models: validation perplexity")
    lm_axes.set_xlabel("epoch")
    lm_axes.set_ylabel("perplexity")

    history = [r for r in classifier.history if r.get("member", 1) == 1]  # an ensemble's first member
    column, metric = "val_" + PRIMARY[classifier.target_type], primary_name(classifier.target_type)
    epochs = list(range(1, len(history) + 1))
    if history:
        loss_axes.plot(epochs, [r.get("train_loss") for r in history], marker="o", label="train loss")
        loss_axes.plot(epochs, [r.get("val_loss") for r in history], marker="o", label="validation loss")
        acc_axes.plot(epochs, [r.get(column) for r in history], marker="o", color="C2", label=f"validation {metric}")
        selected = classifier.metrics.get("selected") or {}
        for i, row in enumerate(history):
            if row.get("stage") == selected.get("stage") and row.get("epoch") == selected.get("epoch"):
                acc_axes.plot([i + 1], [row.get(column)], marker="*", markersize=16, color="C3",
                              linestyle="none", label="selected epoch")
                break
        for axes in (loss_axes, acc_axes):
            for i in range(1, len(history)):
                if history[i].get("stage") != history[i - 1].get("stage"):
                    axes.axvline(i + 0.5, color="0.6", linestyle=":", linewidth=1)
            axes.legend()
            axes.set_xticks(epochs)
    else:
        for axes in (loss_axes, acc_axes):
            axes.text(0.5, 0.5, "no classifier epochs", ha="center", va="center", transform=axes.transAxes)
    loss_axes.set_title("Classifier: loss per epoch (dotted: new unfreezing stage)")
    loss_axes.set_xlabel("epoch (all stages)")
    loss_axes.set_ylabel(LOSSES[classifier.target_type])
    acc_axes.set_title(f"Classifier: validation {metric}")
    acc_axes.set_xlabel("epoch (all stages)")
    acc_axes.set_ylabel(metric)
    for axes in (lm_axes, loss_axes, acc_axes):
        axes.grid(True, alpha=0.3)
    figure.tight_layout()
    _save_figure(figure, path)
    return path


# --- the report's content: one list of blocks, rendered as Markdown here and as HTML by report_html -------------

@dataclass
class Bold:
    text: str


@dataclass
class Link:
    text: str
    href: str


Span = str | Bold | Link


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    spans: list[Span]


@dataclass
class Table:
    header: list[Any]
    rows: list[list[Any]]


@dataclass
class Figure:
    file: str      # a PNG beside report.md (Markdown links it, HTML inlines it)
    alt: str


@dataclass
class Code:
    text: str


Block = Heading | Paragraph | Table | Figure | Code


def report_blocks(title: str, classifier: ClassifierResult, language_models: dict[str, LanguageModel],
                  lsa_metrics: dict[str, Any] | None, wrong: list[dict[str, Any]], shown_wrong: int = 15,
                  lsa: LsaResult | None = None, word_vectors: dict[str, WordVectors] | None = None,
                  config_text: str | None = None, timings: dict[str, Any] | None = None) -> list[Block]:
    """The report as blocks, in reading order (the module notes list the sections); both renderers take these."""
    split, metrics = evaluated_split(classifier)
    target_type, names = classifier.target_type, classifier.label_names
    headline = HEADLINE[target_type]
    blocks: list[Block] = [Heading(1, f"Run report: {title}")]
    blocks.append(Paragraph([f"Scores on the ", Bold(split), f" split ({metrics.get('n', '?')} documents)"
                             + ("" if split == "test" else "; the corpus has no labelled test documents, so these are the "
                                "validation documents the best epoch was chosen on (optimistic)") + "."]))
    blocks.append(Heading(2, "Scores"))
    validation = classifier.metrics.get("validation") or {}
    blend = classifier.metrics.get("blend") or {}               # the linear blend exists for "class" only
    blended = bool(blend.get("weight")) and classifier.linear is not None
    name = f"ULMFiT classifier + linear blend (weight {blend.get('weight')})" if blended else "ULMFiT classifier (this run)"
    rows = [[name, *(metrics.get(key) for key, _ in headline)]]
    if target_type != "class" and split == "test" and validation:
        rows.append([f"ULMFiT classifier on its validation documents ({validation.get('source', 'validation set')})",
                     *(validation.get(key) for key, _ in headline)])
    parts = blend.get("test_accuracy") if split == "test" else blend.get("validation_accuracy")
    if blend and isinstance(parts, dict):
        rows.append(["the blend's RNN alone", parts.get("rnn"), None])
        chars = blend.get("char_ngrams") or 0  # chosen by the linear model's CV (older runs: absent)
        added = ([f"character 2..{chars}-grams"] if chars else []) + (["NB scaling"] if blend.get("nb") else [])
        extra = f" (+ {', '.join(added)})" if added else ""
        rows.append([f"the blend's TF-IDF n-gram linear model alone{extra}", parts.get("linear"), None])
    baselines = [(key, label) for key, label in BASELINES[target_type] if isinstance((lsa_metrics or {}).get(key), dict)]
    for key, label in baselines:
        rows.append([label, *(lsa_metrics[key].get(metric) for metric, _ in headline)])
    blocks.append(Table(["model", *(column for _, column in headline)], rows))
    if split == "test" and baselines:
        blocks.append(Paragraph(["The baselines come from the lsa stage: fitted on the same training documents, "
                                 "scored on the same test split."]))
    selected = classifier.metrics.get("selected") or {}
    primary = PRIMARY[target_type]
    details = [f"validation {primary_name(target_type)} {_cell(validation.get(primary))} "
               f"({validation.get('source', 'validation set')})"]
    for row in classifier.metrics.get("members") or ([selected] if selected else []):
        way = f" ({row['direction']})" if "direction" in row else ""
        member = f"member {row['member']}{way}'s " if "member" in row else ""
        details.append(f"{member}best epoch: stage {row.get('stage')} epoch {row.get('epoch')}")
    for key, label in (("initialisation", "encoder from"), ("train_documents", "training documents"),
                       ("seconds", "training seconds"), ("device", "device"), ("precision", "precision")):
        if classifier.metrics.get(key) is not None:
            details.append(f"{label}: {classifier.metrics[key]}")
    blocks.append(Paragraph(["Classifier: " + "; ".join(details) + "."]))

    if target_type == "regression":
        blocks += [Heading(2, f"Target ({split})"),
                   Paragraph([f"{names[0] if names else 'target'}: mean {_cell(metrics.get('mean'))}, standard deviation "
                              f"{_cell(metrics.get('std'))} (an RMSE near the standard deviation is no better than "
                              f"predicting the mean)."])]
        if len(classifier.test_probabilities):
            blocks += [Heading(2, "Predicted against true values (test)"), Figure(SCATTER_FILE, "predicted vs true")]
    else:
        blocks.append(Heading(2, f"Per {'class' if target_type == 'class' else 'label'} ({split})"))
        per_class = metrics.get("per_class") or {}
        blocks.append(Table(["label", "precision", "recall", "F1", "support"],
                            [[name, per_class.get(name, {}).get("precision"), per_class.get(name, {}).get("recall"),
                              per_class.get(name, {}).get("f1"), per_class.get(name, {}).get("support")] for name in names]))
        if target_type == "multi_label":
            blocks.append(Paragraph([f"A label is predicted when its probability reaches {metrics.get('threshold', THRESHOLD)} "
                                     "(the threshold with the best validation micro-F1)."]))
    if target_type == "class":
        blocks += [Heading(2, f"Confusion matrix ({split}; rows = true label, columns = predicted)"),
                   Figure(CONFUSION_FILE, "confusion matrix"),
                   Table(["true \\ predicted", *names], [[name, *row] for name, row in zip(names, metrics["confusion"])])]

    blocks += [Heading(2, "Training curves"), Figure(CURVES_FILE, "training curves"), Heading(3, "Language models")]
    if language_models:
        lm_rows = []
        for name, lm in language_models.items():
            perplexities = [r["val_perplexity"] for r in lm.history if r.get("val_perplexity") is not None]
            lm_rows.append([name, lm.metrics.get("val_perplexity"), len(lm.history),
                            ", ".join(f"{p:.1f}" for p in perplexities) or "-", lm.metrics.get("train_tokens"),
                            lm.metrics.get("initialisation"), _seconds(lm.metrics.get("seconds"))])
        blocks.append(Table(["model", "final val perplexity", "epochs", "perplexity per epoch", "training tokens",
                             "initialisation", "seconds"], lm_rows))
        for name, lm in language_models.items():
            if lm.metrics.get("tokens_new_share") is not None:
                blocks.append(Paragraph([f"{name}: {lm.metrics['vocab_new']} of the corpus's "
                                         f"{lm.metrics['vocab_new'] + lm.metrics['vocab_shared']} words "
                                         f"({100 * lm.metrics['tokens_new_share']:.1f} % of its tokens) were new to the "
                                         "pretrained language model; they started "
                                         + (f"from the {lm.metrics['vectors_method']} vectors" if lm.metrics.get("vectors_method")
                                            else "at its mean embedding row")
                                         + " and learnt only from this corpus's text."]))
    else:
        blocks.append(Paragraph(["No language model in this run (the classifier's encoder started from random weights)."]))
    blocks.append(Heading(3, "Classifier epochs"))
    members = any("member" in r for r in classifier.history)
    directions = classifier.metrics.get("directions")
    if members and directions:
        scores = ", ".join(f"{way} {_cell(directions.get(way))}" for way in ("forward", "backward", "both"))
        blocks.append(Paragraph([f"An ensemble of {classifier.arch.get('members')} classifiers, forward and backward (each "
                                 f"from its own language model; ULMFiT's bidirectional ensemble); the curves show the first, "
                                 f"the table all. Each member keeps its best epoch. Validation {primary_name(target_type)} of "
                                 f"the RNN part: {scores}."]))
    elif members:
        blocks.append(Paragraph([f"An ensemble of {classifier.arch.get('members')} classifiers (seeds seed, seed + 1, ...); "
                                 "the curves show the first, the table all. Each member keeps its best epoch."]))
    column = "val_" + primary
    way = (lambda r: [f"{r.get('member')} ({r['direction']})" if "direction" in r else r.get("member")])
    blocks.append(Table((["member"] if members else []) +
                        ["stage", "trainable groups", "epoch", "peak LR", "train loss", "val loss",
                         f"val {primary_name(target_type)}", "seconds"],
                        [(way(r) if members else []) + [r.get("stage"), r.get("trainable_groups"), r.get("epoch"),
                          f"{r['learning_rate']:g}" if isinstance(r.get("learning_rate"), (int, float)) else None,
                          r.get("train_loss"), r.get("val_loss"), r.get(column), _seconds(r.get("seconds"))]
                         for r in classifier.history]))

    if target_type == "class":
        heading, measure, key, worst = "Most confidently wrong test texts", "confidence", "confidence", "most confident"
    elif target_type == "multi_label":
        heading, measure, key, worst = ("Most wrong test texts (mean absolute error of the label probabilities)",
                                        "mean absolute error", "error", "largest")
    else:
        heading, measure, key, worst = "Largest errors on test texts", "absolute error", "error", "largest"
    blocks.append(Heading(2, heading))
    if not len(classifier.test_probabilities):
        blocks.append(Paragraph(["No labelled test documents."]))
    elif not wrong:
        blocks.append(Paragraph(["None: every test document was classified correctly." if target_type == "class"
                                 else "None: every test document was predicted right."]))
    else:
        blocks.append(Paragraph([f"The {min(shown_wrong, len(wrong))} {worst} of {len(wrong)} errors listed in ",
                                 Link(WRONG_FILE, WRONG_FILE), f" ({worst} first)."]))
        blocks.append(Table([measure, "true", "predicted", "text"],
                            [[w[key], "(none)" if w["true"] == "" else w["true"],
                              "(none)" if w["predicted"] == "" else w["predicted"],
                              snippet(w["text"]) if w["text"] is not None else f"(document {w['index']})"]
                             for w in wrong[:shown_wrong]]))
    blocks += _topic_blocks(lsa)
    blocks += _neighbour_blocks(word_vectors or {}, language_models.get("finetune_lm"))
    if timings:
        blocks += [Heading(2, "Timings"),
                   Paragraph(["Each stage of the run that wrote this report: computed now, or a cache hit (0 seconds)."]),
                   Table(["stage", "status", "seconds", "cache key"],
                         [[instance, "cache hit" if row.get("status") == "hit" else row.get("status"),
                           _seconds(row.get("seconds")), str(row.get("key", ""))[:12]]
                          for instance, row in timings.items() if isinstance(row, dict)])]
    if config_text:
        blocks += [Heading(2, "Configuration"),
                   Paragraph(["The run's settings (its config.toml; ", Bold("nlp-pipeline run --config config.toml"),
                              " repeats it)."]), Code(config_text.rstrip("\n"))]
    return blocks


TOPICS_SHOWN, TOPIC_TERMS, NEIGHBOURS_SHOWN = 10, 10, 8  # LSA components and terms, neighbours per word


def _topic_blocks(lsa: LsaResult | None) -> list[Block]:
    if lsa is None or not lsa.topic_terms:
        return []
    shares = list(lsa.explained_variance_ratio)
    rows = [[i + 1, f"{100 * shares[i]:.1f}%" if i < len(shares) else None, ", ".join(terms[:TOPIC_TERMS])]
            for i, terms in enumerate(lsa.topic_terms[:TOPICS_SHOWN])]
    return [Heading(2, "LSA topics"),
            Paragraph([f"The first {len(rows)} of {len(lsa.topic_terms)} components of the TF-IDF matrix's truncated SVD, "
                       "each with its highest-weighted terms (the first component mostly follows overall term frequency)."]),
            Table(["component", "variance explained", "top terms"], rows)]


def _neighbour_blocks(word_vectors: dict[str, WordVectors], lm: LanguageModel | None) -> list[Block]:
    """Nearest neighbours (cosine) of a few words: those each word-vector method stored, and the same words in the
    fine-tuned LM's input embedding."""
    from nlp_pipeline.evaluation import nearest_neighbours, pick_frequent_words

    tables: list[tuple[str, dict[str, list]]] = []
    words: list[str] = []
    for method, vectors in word_vectors.items():
        found = (vectors.metrics or {}).get("neighbours") or {}
        if found:
            tables.append((f"{method} word vectors", found))
            words += [w for w in found if w not in words]
    if lm is not None and lm.state_dict.get("encoder.embedding.weight") is not None:
        itos = list(lm.vocab.itos)
        words = words or pick_frequent_words(itos)
        found = nearest_neighbours(itos, np.asarray(lm.state_dict["encoder.embedding.weight"], dtype=np.float32),
                                   words, NEIGHBOURS_SHOWN)
        if found:
            tables.append(("the fine-tuned language model's input embedding", found))
    if not tables:
        return []
    blocks: list[Block] = [Heading(2, "Nearest neighbours"),
                           Paragraph(["The most similar words (cosine similarity) of a few frequent words."])]
    for name, found in tables:
        blocks += [Heading(3, name),
                   Table(["word", "nearest neighbours"],
                         [[word, ", ".join(f"{n} ({s:.3f})" for n, s in pairs[:NEIGHBOURS_SHOWN])]
                          for word, pairs in found.items()])]
    return blocks


def _markdown_span(span: Span) -> str:
    if isinstance(span, Bold):
        return f"**{span.text}**"
    if isinstance(span, Link):
        return f"[{span.text}]({span.href})"
    return span


def render_markdown(blocks: list[Block]) -> str:
    """report.md: the blocks as Markdown, one blank line between blocks."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append("".join(_markdown_span(s) for s in block.spans))
        elif isinstance(block, Table):
            parts.append("\n".join(_table([_cell(h) for h in block.header], block.rows)))
        elif isinstance(block, Figure):
            parts.append(f"![{block.alt}]({block.file})")
        elif isinstance(block, Code):
            parts.append("```toml\n" + block.text + "\n```")
    return "\n\n".join(parts) + "\n"


# --- the report ------------------------------------------------------------------------------------------------

def write_report(run_dir: str | Path, corpus_texts: list[str] | None, classifier: ClassifierResult,
                 language_models: dict[str, LanguageModel] | None = None, lsa_metrics: dict[str, Any] | None = None,
                 title: str | None = None, *, lsa: LsaResult | None = None,
                 word_vectors: dict[str, WordVectors] | None = None, config_text: str | None = None,
                 timings: dict[str, Any] | None = None) -> list[Path]:
    """Write report.md, report.html, training_curves.png, most_wrong.jsonl and confusion_matrix.png (class) or
    predicted_vs_true.png (regression, when there are test predictions) into run_dir (created if needed); returns
    their paths. corpus_texts are the corpus's texts in corpus order (the classifier's test_indexes point into
    them); None leaves texts out of the error list. lsa_metrics: the baselines (lsa.metrics when lsa is given);
    lsa, word_vectors ({method: WordVectors}), config_text (config.toml) and timings (metrics.json's rows) add
    their sections when given."""
    from nlp_pipeline.export.report_html import render_html

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    language_models = dict(language_models or {})
    if lsa_metrics is None and lsa is not None:
        lsa_metrics = dict(lsa.metrics)
    split, metrics = evaluated_split(classifier)
    wrong = most_wrong(classifier, corpus_texts)

    figures = []
    if classifier.target_type == "class":
        figures.append(plot_confusion_matrix(metrics["confusion"], classifier.label_names, run_dir / CONFUSION_FILE,
                                             f"Confusion matrix ({split}, n={metrics.get('n', '?')}, "
                                             f"accuracy {metrics.get('accuracy', float('nan')):.3f})"))
    elif classifier.target_type == "regression" and len(classifier.test_probabilities):
        r2 = (classifier.metrics.get("test") or {}).get("r2")
        figures.append(plot_predicted_vs_true(
            classifier.test_labels, classifier.test_probabilities, (classifier.label_names or ["value"])[0],
            run_dir / SCATTER_FILE, f"Test documents (n={len(classifier.test_labels)}"
                                    + (f", R² {r2:.3f})" if isinstance(r2, (int, float)) else ")")))
    curves = plot_training_curves(classifier, language_models, run_dir / CURVES_FILE)
    wrong_path = run_dir / WRONG_FILE
    _atomic_write(wrong_path, "".join(json.dumps(w, ensure_ascii=False) + "\n" for w in wrong).encode("utf-8"))
    title = title or run_dir.resolve().name
    blocks = report_blocks(title, classifier, language_models, lsa_metrics, wrong, lsa=lsa, word_vectors=word_vectors,
                           config_text=config_text, timings=timings)
    report = run_dir / REPORT_FILE
    _atomic_write(report, render_markdown(blocks).encode("utf-8"))
    html = run_dir / HTML_FILE
    _atomic_write(html, render_html(blocks, run_dir, title).encode("utf-8"))
    return [report, html, *figures, curves, wrong_path]


def run_classifier(artifacts: dict[str, Any]) -> ClassifierResult:
    """The classifier a run's bundle and report show: the "classifier" artifact composed with the "blend" one
    (models.blend.compose; the RNN alone for a run that stopped before the blend)."""
    from nlp_pipeline.models.blend import compose

    if artifacts.get("classifier") is None:
        raise MissingInputError("the report needs the classifier artifact; run the pipeline through the classifier stage")
    return compose(artifacts["classifier"], artifacts.get("blend"))


def write_run_report(run_dir: str | Path, artifacts: dict[str, Any], title: str | None = None,
                     config_text: str | None = None, timings: dict[str, Any] | None = None) -> list[Path]:
    """write_report from a run's artifacts by instance id (RunResult.artifacts of a run that kept
    REPORT_ARTIFACTS): "classifier" is required, with "blend" its blended scores (models.blend.compose); "corpus", the language models (LM_IDS), "lsa" and the word
    vectors (VECTOR_IDS) are used when there. title: the report's heading (default: run_dir's name; pass the run's
    name when writing into a staging folder); config_text and timings: the run's config.toml and metrics.json."""
    classifier = run_classifier(artifacts)
    corpus = artifacts.get("corpus")
    models = {name: artifacts[name] for name in LM_IDS if artifacts.get(name) is not None}
    vectors = {name.split(":", 1)[1]: artifacts[name] for name in VECTOR_IDS if artifacts.get(name) is not None}
    return write_report(run_dir, list(corpus.texts) if corpus is not None else None, classifier, models, None, title,
                        lsa=artifacts.get("lsa"), word_vectors=vectors, config_text=config_text, timings=timings)
