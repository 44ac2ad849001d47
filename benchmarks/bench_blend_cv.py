"""The classifier's protocol replayed k times inside one dataset's train split: settings of the blend's linear
model compared on thousands of held-out predictions instead of one validation slice of a few hundred.

    python benchmarks/bench_blend_cv.py [--dataset mr] [--folds 5] [--members 1]
        [--variants "linear.nb=[false] blend.refit=false; linear.nb=[false]; defaults"]
        [--labelled N] [--threads N] [--cache-dir DIR] [--set section.field=value ...]

Pretraining and fine-tuning as in bench_ulmfit.py (the pretrained LM comes from the same --cache-dir). The
labelled train documents are cut into --folds stratified folds. For each fold the data is rewritten so that
the fold is the test split and the real test split is unlabelled (its labels are set to -1 before anything
sees them: no test label is read). The RNN classifier is trained as the stage trains it, on the default
[validation] carve of the remaining documents (the classifier stage: the RNN alone). Then, for every
`--variants` entry (';' between entries; each is linear/blend fields, "section.field=value" separated by
spaces, or "defaults"), the linear and blend stages run on it (linear model on the same train documents,
weight on the same validation slice, refit when blend.refit says so) and are scored on the fold. With
--labelled N (few labels, as corpus.max_labelled): in each fold only a seeded stratified sample of N of the
other train documents keeps its label, the rest is unlabelled text, so the RNN, the linear model and the
weight see N labels (and a validation slice of a tenth of them) while every fold document is still scored.
The fine-tuned LM and each fold's RNN result are kept under --cache-dir/blend-cv (pickles keyed by the
dataset, --labelled, the fold and the configs), so comparing other blend settings later trains nothing again. Reported: accuracy pooled over all folds, and the paired difference from the first setting
with its standard error (per-document differences). Writes benchmarks/results/blend-cv-<dataset>.json (+ .md).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from bench_ulmfit import GENERAL, configs, corpus_of, general_vocab, numericalized, pretrained_lm
from common import markdown_table, save, versions


def fold_data(data, fold_docs: np.ndarray, labelled: int | None = None, seed: int = 0):
    """data with `fold_docs` as its test split and the real test split unlabelled (labels -1); with `labelled`,
    only a seeded stratified sample of that many other labelled train documents keeps its label."""
    from nlp_pipeline.artifacts import UNLABELLED, split_code

    splits, labels = np.array(data.splits), np.array(data.labels)
    real_test = data.indices("test")
    splits[real_test] = split_code("unsup")
    labels[real_test] = UNLABELLED
    splits[fold_docs] = split_code("test")
    if labelled is not None:
        from sklearn.model_selection import train_test_split

        rest = np.setdiff1d(np.flatnonzero((splits == split_code("train")) & (labels != UNLABELLED)), fold_docs)
        if labelled < len(rest):
            _, kept = train_test_split(rest, test_size=labelled, stratify=labels[rest], random_state=seed)
            labels[np.setdiff1d(rest, kept)] = UNLABELLED
    return dataclasses.replace(data, splits=splits, labels=labels)


def cached(cache_dir: Path, what: dict, compute):
    """compute(), or its pickle from an earlier run with the same `what` (JSON-able) under cache_dir/blend-cv."""
    import hashlib
    import json
    import pickle

    path = cache_dir / "blend-cv" / (hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20] + ".pkl")
    if path.exists():
        return pickle.loads(path.read_bytes())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_bytes(pickle.dumps(value))
    path.with_suffix(".tmp").replace(path)
    return value


def rnn_fold(cfg, data, lm) -> dict:
    """Train the RNN classifier on one fold's data and the default [validation] carve of it (the classifier stage:
    its result keeps its validation probabilities); the carve, its test indexes and probabilities on the fold."""
    from nlp_pipeline.stages.classifier import train_classifier
    from nlp_pipeline.targets import carve

    held = carve(data)
    result = train_classifier(cfg, data, lm, carve=held)
    return {"result": result, "carve": held, "test": result.test_indexes, "rnn_test": result.test_probabilities,
            "selected": result.metrics["selected"]}


def variants(text: str, section: str = "classifier") -> dict[str, dict]:
    """Fields of `section` per entry: 'max_length=200; defaults' -> {that text: {field: value}, 'defaults': {}};
    with section None, tables by section: 'linear.chars=[0] blend.refit=false' -> {...: {"linear": {...}, "blend": {...}}}."""
    from nlp_pipeline.core.config import parse_sets

    out = {}
    for entry in (e.strip() for e in text.split(";")):
        if entry:
            items = [] if entry == "defaults" else entry.split()
            tables = parse_sets(items if section is None else [f"{section}.{item}" for item in items])
            out[entry] = tables if section is None else tables.get(section, {})
    return out


def blended(data, fold: dict, tables: dict) -> tuple[np.ndarray, dict]:
    """Per fold document: is the blend right? The linear and blend stages on the fold's carve and classifier result, with
    the linear/blend fields `tables` ({"linear": {...}, "blend": {...}}); and what they chose."""
    from nlp_pipeline.stages.blend import BlendConfig, blend_classifier
    from nlp_pipeline.stages.linear import LinearConfig, fit_linear_stage

    linear = fit_linear_stage(LinearConfig(**tables.get("linear", {})), data, fold["carve"])
    result = blend_classifier(BlendConfig(**tables.get("blend", {})), fold["result"], data, linear, fold["carve"])
    report = result.metrics["blend"]
    right = result.test_probabilities.argmax(1) == np.asarray(data.labels)[fold["test"]]
    return right, {"chars": report["char_ngrams"], "nb": report["nb"], "C": report["C"], "weight": result.weight,
                   "refit_documents": report["refit_documents"], "linear_accuracy": report["test_accuracy"]["linear"],
                   "blend_accuracy": round(float(right.mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mr")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", default="linear.nb=[false] blend.refit=false; linear.nb=[false]; defaults; linear.chars=[0] linear.nb=[false] blend.refit=false",
                        help="blend settings compared, ';' between them: linear/blend fields as section.field=value "
                             "separated by spaces, or 'defaults'; the first is the reference")
    parser.add_argument("--members", type=int, default=1, help="classifier.members of the RNN")
    parser.add_argument("--labelled", type=int, default=None,
                        help="few labels: in each fold only this many train documents keep their label")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "nlp-pipeline-bench"))
    parser.add_argument("--set", action="append", default=[], help="override a config field: section.field=value")
    args = parser.parse_args()

    from sklearn.model_selection import StratifiedKFold

    from nlp_pipeline.models.device import usable_cpu_count
    from nlp_pipeline.stages.language_model import finetune_language_model

    threads = args.threads or usable_cpu_count()
    cfgs = {k: dataclasses.replace(v, num_threads=threads) if hasattr(v, "num_threads") else v
            for k, v in configs("full", args.set).items()}
    cfgs["classifier"] = dataclasses.replace(cfgs["classifier"], members=args.members)
    settings = variants(args.variants, section=None)
    started = time.perf_counter()
    _, general = numericalized(corpus_of(GENERAL, None), general_vocab())
    pretrained, _ = pretrained_lm(cfgs["pretrain_lm"], general, Path(args.cache_dir), cfgs["model"])
    _, data = numericalized(corpus_of((args.dataset,), None))
    cache_dir = Path(args.cache_dir)
    same = {"dataset": args.dataset, "pretrain": dataclasses.asdict(cfgs["pretrain_lm"]),
            "finetune": dataclasses.asdict(cfgs["finetune_lm"])}
    lm = cached(cache_dir, dict(same, what="lm"), lambda: finetune_language_model(cfgs["finetune_lm"], data, pretrained))
    labels = np.asarray(data.labels)
    train = data.indices("train", labelled=True)
    splitter = StratifiedKFold(args.folds, shuffle=True, random_state=123)
    rights: dict[str, list[np.ndarray]] = {s: [] for s in settings}
    rnn_right, per_fold = [], []
    for k, (_, held) in enumerate(splitter.split(train, labels[train])):
        fold_started = time.perf_counter()
        data_k = fold_data(data, train[held], args.labelled, seed=k)
        fold = cached(cache_dir, dict(same, what="fold", folds=args.folds, fold=k, labelled=args.labelled,
                                      classifier=dataclasses.asdict(cfgs["classifier"])),
                      lambda: rnn_fold(cfgs["classifier"], data_k, lm))
        y = labels[fold["test"]]
        rnn_right.append(fold["rnn_test"].argmax(1) == y)
        row = {"fold": k, "documents": int(len(y)), "rnn_accuracy": round(float(rnn_right[-1].mean()), 4), "settings": {}}
        for s, fields in settings.items():
            right, chosen = blended(data_k, fold, fields)
            rights[s].append(right)
            row["settings"][s] = chosen
        row["minutes"] = round((time.perf_counter() - fold_started) / 60, 2)
        per_fold.append(row)
        print(row, file=sys.stderr, flush=True)

    first = next(iter(settings))
    base = np.concatenate(rights[first]).astype(float)
    table, summary = [["RNN alone", round(float(np.concatenate(rnn_right).mean()), 4), "-", "-"]], {}
    for s in settings:
        right = np.concatenate(rights[s]).astype(float)
        diff = right - base
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        summary[s] = {"accuracy": round(float(right.mean()), 4), "difference": round(float(diff.mean()), 4),
                     "standard_error": round(se, 4)}
        table.append([f"blend, {s}", summary[s]["accuracy"],
                      f"{diff.mean() * 100:+.2f}" if s != first else "-", f"{se * 100:.2f}" if s != first else "-"])
    minutes = round((time.perf_counter() - started) / 60, 1)
    n = int(len(base))
    markdown = (f"### Blend settings by {args.folds}-fold replay of the protocol inside {args.dataset}'s train split"
                + (f", {args.labelled} labelled documents per fold" if args.labelled else "") + "\n\n"
                f"`python benchmarks/bench_blend_cv.py --dataset {args.dataset} --folds {args.folds} --variants '{args.variants}'"
                f" --members {args.members}" + (f" --labelled {args.labelled}" if args.labelled else "") + "".join(f" --set {v}" for v in args.set) + f"`, {threads} threads, {minutes} min; {n} held-out predictions, no test label read.\n\n"
                + markdown_table(["method", "pooled accuracy", f"vs {first} (points)", "standard error"], table))
    save(f"blend-cv-{args.dataset}" + (f"-labelled{args.labelled}" if args.labelled else ""), {"labelled": args.labelled, "versions": versions("torch", "scikit-learn"), "threads": threads, "minutes": minutes,
                                      "folds": per_fold, "summary": summary, "documents": n,
                                      "configs": {k: dataclasses.asdict(v) for k, v in cfgs.items()}}, markdown)


if __name__ == "__main__":
    main()
