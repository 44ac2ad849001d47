"""The run report: what a person reads after `nlp-pipeline run`, written into runs/<name>/.

    write_report(run_dir, corpus.texts, classifier, {"pretrain_lm": lm0, "finetune_lm": lm1}, lsa.metrics)
    -> [run_dir/report.md, run_dir/confusion_matrix.png, run_dir/training_curves.png, run_dir/most_wrong.jsonl]

- report.md: accuracy and macro-F1 of the classifier next to the TF-IDF and LSA logistic-regression
  baselines (same test split), per-class precision / recall / F1, the confusion matrix, LM perplexities,
  the classifier's epochs, the most confidently wrong test texts, links to the two PNGs.
- confusion_matrix.png: counts annotated in each cell, label names on both axes, rows = true labels.
- training_curves.png: LM validation perplexity per epoch (pretrain, finetune), classifier train and
  validation loss per epoch, validation accuracy per epoch (stage boundaries dotted, the selected epoch starred).
- most_wrong.jsonl: test documents the classifier got wrong, most confident first: corpus index, text,
  true label, predicted label, confidence, probability of the true label.
Scores are the test split's when the corpus has labelled test documents, else the validation set's (said so).
Each file is written to a temporary name and renamed, so a reader never sees half a file.
Limits: matplotlib's Agg backend only (no display needed); a confusion matrix of more than ~40 labels gets
small print; texts appear as the corpus holds them (no anonymisation).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nlp_pipeline.artifacts import ClassifierResult, LanguageModel
from nlp_pipeline.core.errors import DataError, MissingInputError

REPORT_FILE = "report.md"
CONFUSION_FILE = "confusion_matrix.png"
CURVES_FILE = "training_curves.png"
WRONG_FILE = "most_wrong.jsonl"
REPORT_ARTIFACTS = ("corpus", "lsa", "pretrain_lm", "finetune_lm", "classifier")  # instance ids a run report reads
BASELINES = (("tfidf_logreg", "TF-IDF n-grams + logistic regression"), ("lsa_logreg", "LSA + logistic regression"))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_figure(figure: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        figure.savefig(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas, without touching pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _cell(value: Any) -> str:
    """A markdown table cell: _cell(0.93456) -> '0.9346', _cell(85.99) -> '86.0', _cell(None) -> '-', pipes escaped."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


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
    for split in ("test", "validation"):
        metrics = classifier.metrics.get(split)
        if isinstance(metrics, dict) and metrics.get("confusion") is not None:
            return split, metrics
    raise DataError("the classifier result has neither test nor validation metrics; retrain it with the classifier stage")


def most_wrong(classifier: ClassifierResult, corpus_texts: list[str] | None, limit: int = 500) -> list[dict[str, Any]]:
    """Wrongly classified test documents, the most confident first (at most `limit`).

    Each row: index (position in the corpus), text (None without corpus_texts), true, predicted, confidence
    (probability of the predicted label), true_probability.
    """
    probs = np.asarray(classifier.test_probabilities, dtype=np.float64)
    if probs.size == 0:
        return []
    truth = np.asarray(classifier.test_labels, dtype=np.int64)
    indexes = np.asarray(classifier.test_indexes, dtype=np.int64)
    if not len(truth) == len(indexes) == len(probs):
        raise DataError(f"classifier test arrays disagree: {len(indexes)} indexes, {len(truth)} labels, {len(probs)} rows")
    if corpus_texts is not None and len(indexes) and int(indexes.max()) >= len(corpus_texts):
        raise DataError(f"test document {int(indexes.max())} is beyond the corpus's {len(corpus_texts)} texts; "
                        f"pass the corpus the classifier was trained on")
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), predicted]
    wrong = np.flatnonzero(predicted != truth)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    names = classifier.label_names
    return [{
        "index": int(indexes[i]),
        "text": None if corpus_texts is None else corpus_texts[int(indexes[i])],
        "true": names[int(truth[i])],
        "predicted": names[int(predicted[i])],
        "confidence": round(float(confidence[i]), 4),
        "true_probability": round(float(probs[i, truth[i]]), 4),
    } for i in order]


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


def plot_training_curves(classifier: ClassifierResult, language_models: dict[str, LanguageModel], path: Path) -> Path:
    """Three panels: LM validation perplexity per epoch, classifier losses per epoch, validation accuracy."""
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
        lm_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        lm_axes.legend()
    else:
        lm_axes.text(0.5, 0.5, "no language model in this run", ha="center", va="center", transform=lm_axes.transAxes)
    lm_axes.set_title("Language models: validation perplexity")
    lm_axes.set_xlabel("epoch")
    lm_axes.set_ylabel("perplexity")

    history = [r for r in classifier.history if r.get("member", 1) == 1]  # an ensemble's first member
    epochs = list(range(1, len(history) + 1))
    if history:
        loss_axes.plot(epochs, [r.get("train_loss") for r in history], marker="o", label="train loss")
        loss_axes.plot(epochs, [r.get("val_loss") for r in history], marker="o", label="validation loss")
        acc_axes.plot(epochs, [r.get("val_accuracy") for r in history], marker="o", color="C2", label="validation accuracy")
        selected = classifier.metrics.get("selected") or {}
        for i, row in enumerate(history):
            if row.get("stage") == selected.get("stage") and row.get("epoch") == selected.get("epoch"):
                acc_axes.plot([i + 1], [row.get("val_accuracy")], marker="*", markersize=16, color="C3",
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
    loss_axes.set_ylabel("cross-entropy")
    acc_axes.set_title("Classifier: validation accuracy")
    acc_axes.set_xlabel("epoch (all stages)")
    acc_axes.set_ylabel("accuracy")
    for axes in (lm_axes, loss_axes, acc_axes):
        axes.grid(True, alpha=0.3)
    figure.tight_layout()
    _save_figure(figure, path)
    return path


def render_markdown(title: str, classifier: ClassifierResult, language_models: dict[str, LanguageModel],
                    lsa_metrics: dict[str, Any] | None, wrong: list[dict[str, Any]], shown_wrong: int = 15) -> str:
    split, metrics = evaluated_split(classifier)
    names = classifier.label_names
    lines = [f"# Run report: {title}", ""]
    lines.append(f"Scores on the **{split}** split ({metrics.get('n', '?')} documents)"
                 + ("" if split == "test" else "; the corpus has no labelled test documents, so these are the "
                    "validation documents the best epoch was chosen on (optimistic)") + ".")
    lines += ["", "## Scores", ""]
    blend = classifier.metrics.get("blend") or {}
    blended = bool(blend.get("weight")) and classifier.linear is not None
    name = f"ULMFiT classifier + linear blend (weight {blend.get('weight')})" if blended else "ULMFiT classifier (this run)"
    rows = [[name, metrics.get("accuracy"), metrics.get("macro_f1")]]
    parts = blend.get("test_accuracy") if split == "test" else blend.get("validation_accuracy")
    if blend and isinstance(parts, dict):
        rows.append(["the blend's RNN alone", parts.get("rnn"), None])
        rows.append(["the blend's TF-IDF n-gram linear model alone", parts.get("linear"), None])
    for key, label in BASELINES:
        baseline = (lsa_metrics or {}).get(key)
        if isinstance(baseline, dict):
            rows.append([label, baseline.get("accuracy"), baseline.get("macro_f1")])
    lines += _table(["model", "accuracy", "macro-F1"], rows)
    if split == "test" and any(isinstance((lsa_metrics or {}).get(k), dict) for k, _ in BASELINES):
        lines += ["", "The baselines come from the lsa stage: fitted on the same training documents, scored on the same test split."]
    validation = classifier.metrics.get("validation") or {}
    selected = classifier.metrics.get("selected") or {}
    details = [f"validation accuracy {_cell(validation.get('accuracy'))} ({validation.get('source', 'validation set')})"]
    for row in classifier.metrics.get("members") or ([selected] if selected else []):
        member = f"member {row['member']}'s " if "member" in row else ""
        details.append(f"{member}best epoch: stage {row.get('stage')} epoch {row.get('epoch')}")
    for key, label in (("initialisation", "encoder from"), ("train_documents", "training documents"),
                       ("seconds", "training seconds"), ("device", "device"), ("precision", "precision")):
        if classifier.metrics.get(key) is not None:
            details.append(f"{label}: {classifier.metrics[key]}")
    lines += ["", "Classifier: " + "; ".join(details) + "."]

    lines += ["", f"## Per class ({split})", ""]
    per_class = metrics.get("per_class") or {}
    lines += _table(["label", "precision", "recall", "F1", "support"],
                    [[name, per_class.get(name, {}).get("precision"), per_class.get(name, {}).get("recall"),
                      per_class.get(name, {}).get("f1"), per_class.get(name, {}).get("support")] for name in names])

    lines += ["", f"## Confusion matrix ({split}; rows = true label, columns = predicted)", "",
              f"![confusion matrix]({CONFUSION_FILE})", ""]
    lines += _table(["true \\ predicted", *[_cell(n) for n in names]],
                    [[name, *row] for name, row in zip(names, metrics["confusion"])])

    lines += ["", "## Training curves", "", f"![training curves]({CURVES_FILE})", "", "### Language models", ""]
    if language_models:
        lm_rows = []
        for name, lm in language_models.items():
            perplexities = [r["val_perplexity"] for r in lm.history if r.get("val_perplexity") is not None]
            lm_rows.append([name, lm.metrics.get("val_perplexity"), len(lm.history),
                            ", ".join(f"{p:.1f}" for p in perplexities) or "-", lm.metrics.get("train_tokens"),
                            lm.metrics.get("initialisation"), _seconds(lm.metrics.get("seconds"))])
        lines += _table(["model", "final val perplexity", "epochs", "perplexity per epoch", "training tokens",
                         "initialisation", "seconds"], lm_rows)
    else:
        lines.append("No language model in this run (the classifier's encoder started from random weights).")
    lines += ["", "### Classifier epochs", ""]
    members = any("member" in r for r in classifier.history)
    if members:
        lines += [f"An ensemble of {classifier.arch.get('members')} classifiers (seeds seed, seed + 1, ...); the "
                  "curves show the first, the table all. Each member keeps its best epoch.", ""]
    lines += _table((["member"] if members else []) +
                    ["stage", "trainable groups", "epoch", "peak LR", "train loss", "val loss", "val accuracy", "seconds"],
                    [([r.get("member")] if members else []) + [r.get("stage"), r.get("trainable_groups"), r.get("epoch"),
                      f"{r['learning_rate']:g}" if isinstance(r.get("learning_rate"), (int, float)) else None,
                      r.get("train_loss"), r.get("val_loss"), r.get("val_accuracy"), _seconds(r.get("seconds"))]
                     for r in classifier.history])

    lines += ["", "## Most confidently wrong test texts", ""]
    if not len(classifier.test_probabilities):
        lines.append("No labelled test documents.")
    elif not wrong:
        lines.append("None: every test document was classified correctly.")
    else:
        lines.append(f"The {min(shown_wrong, len(wrong))} most confident of {len(wrong)} errors listed in "
                     f"[{WRONG_FILE}]({WRONG_FILE}) (most confident first).")
        lines.append("")
        lines += _table(["confidence", "true", "predicted", "text"],
                        [[w["confidence"], w["true"], w["predicted"],
                          snippet(w["text"]) if w["text"] is not None else f"(document {w['index']})"]
                         for w in wrong[:shown_wrong]])
    return "\n".join(lines) + "\n"


# --- the report ------------------------------------------------------------------------------------------------

def write_report(run_dir: str | Path, corpus_texts: list[str] | None, classifier: ClassifierResult,
                 language_models: dict[str, LanguageModel] | None = None, lsa_metrics: dict[str, Any] | None = None,
                 title: str | None = None) -> list[Path]:
    """Write report.md, confusion_matrix.png, training_curves.png and most_wrong.jsonl into run_dir (created
    if needed); returns their paths. corpus_texts are the corpus's texts in corpus order (the classifier's
    test_indexes point into them); None leaves texts out of the error list."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    language_models = dict(language_models or {})
    split, metrics = evaluated_split(classifier)
    wrong = most_wrong(classifier, corpus_texts)

    confusion = plot_confusion_matrix(metrics["confusion"], classifier.label_names, run_dir / CONFUSION_FILE,
                                      f"Confusion matrix ({split}, n={metrics.get('n', '?')}, "
                                      f"accuracy {metrics.get('accuracy', float('nan')):.3f})")
    curves = plot_training_curves(classifier, language_models, run_dir / CURVES_FILE)
    wrong_path = run_dir / WRONG_FILE
    _atomic_write(wrong_path, "".join(json.dumps(w, ensure_ascii=False) + "\n" for w in wrong).encode("utf-8"))
    report = run_dir / REPORT_FILE
    markdown = render_markdown(title or run_dir.resolve().name, classifier, language_models, lsa_metrics, wrong)
    _atomic_write(report, markdown.encode("utf-8"))
    return [report, confusion, curves, wrong_path]


def write_run_report(run_dir: str | Path, artifacts: dict[str, Any]) -> list[Path]:
    """write_report from a run's artifacts by instance id (RunResult.artifacts of a run that kept
    REPORT_ARTIFACTS): "classifier" is required; "corpus", "pretrain_lm", "finetune_lm", "lsa" are used when there."""
    classifier = artifacts.get("classifier")
    if classifier is None:
        raise MissingInputError("the report needs the classifier artifact; run the pipeline through the classifier stage")
    corpus = artifacts.get("corpus")
    lsa = artifacts.get("lsa")
    models = {name: artifacts[name] for name in ("pretrain_lm", "finetune_lm") if artifacts.get(name) is not None}
    return write_report(run_dir, list(corpus.texts) if corpus is not None else None, classifier, models,
                        dict(lsa.metrics) if lsa is not None else None)
