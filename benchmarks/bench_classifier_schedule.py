"""RNN classifier settings (stage epochs, learning rates, dropout, ...) compared across datasets by replaying the
classifier's protocol inside each train split: no test label is read.

    python benchmarks/bench_classifier_schedule.py [--datasets trec6,mr] [--folds 5] [--max-folds 1] [--max-labelled N]
        [--variants "defaults; stage_learning_rates=[0.02,0.01,0.005,0.001] stage_epochs=[1,1,1,6]"]
        [--threads N] [--cache-dir DIR] [--set section.field=value ...]

Per dataset: the language model pretrain_lm.weights names (the packaged one by default) is fine-tuned once on
all the dataset's texts, as the pipeline does. The labelled train documents are cut into --folds stratified
folds, of which the first --max-folds are used; for each, the fold becomes the test split and the real test
split becomes unlabelled (its labels are dropped before anything runs). For every --variants entry (';'
between entries; classifier fields as field=value separated by spaces, or "defaults") the RNN classifier is
trained as the stage trains it (it carves its own validation slice from the rest and keeps its best epoch;
the classifier stage alone, so the RNN alone is scored) and scored on the fold. Reported per dataset: fold accuracy, the
paired difference from the first entry with its standard error (per-document differences), the selected epoch
and minutes; and the mean difference over datasets. Writes benchmarks/results/classifier-schedule.json (+ .md).
With --max-labelled N (few labels), the classifier keeps N labelled train documents (corpus.max_labelled) and
is scored, instead of on a fold, on up to 3,000 of the train documents whose labels were dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from bench_blend_cv import fold_data, variants
from bench_ulmfit import GENERAL, configs, corpus_of, general_vocab, numericalized, pretrained_lm, without_test_labels
from common import markdown_table, save, versions


def paired(right: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean per-document difference (points) of two correctness vectors and its standard error."""
    diff = right.astype(float) - reference.astype(float)
    return round(100 * float(diff.mean()), 2), round(100 * float(diff.std(ddof=1) / np.sqrt(len(diff))), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="trec6,mr")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-folds", type=int, default=1, help="folds used per dataset (the first ones)")
    parser.add_argument("--variants", default="defaults; stage_learning_rates=[0.02,0.01,0.005,0.001] stage_epochs=[1,1,1,6]",
                        help="classifier settings compared, ';' between them: fields as field=value separated by "
                             "spaces, or 'defaults'; the first is the reference")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "nlp-pipeline-bench"))
    parser.add_argument("--set", action="append", default=[], help="override a config field: section.field=value")
    parser.add_argument("--out", default="classifier-schedule", help="results file name (without extension)")
    parser.add_argument("--max-labelled", type=int, default=None,
                        help="few labels: keep this many labelled train documents (corpus.max_labelled) and score on "
                             "the train documents whose labels were dropped (at most 3,000) instead of a fold")
    args = parser.parse_args()

    from sklearn.model_selection import StratifiedKFold

    from nlp_pipeline.models.device import usable_cpu_count
    from nlp_pipeline.stages.classifier import train_classifier
    from nlp_pipeline.stages.language_model import finetune_language_model

    threads = args.threads or usable_cpu_count()
    cfgs = {k: dataclasses.replace(v, num_threads=threads) if hasattr(v, "num_threads") else v
            for k, v in configs("full", args.set).items()}
    base = cfgs["classifier"]  # the classifier stage: the RNN alone
    settings = variants(args.variants)
    for fields in settings.values():
        dataclasses.replace(base, **fields).validate()  # a typo fails now, not after the first fine-tuning
    started = time.perf_counter()
    general = None
    if not cfgs["pretrain_lm"].loads_weights:
        _, general = numericalized(corpus_of(GENERAL, None), general_vocab())
    pretrained, _ = pretrained_lm(cfgs["pretrain_lm"], general, Path(args.cache_dir), cfgs["model"])
    results: dict = {}
    rows, totals = [], {s: [] for s in settings}
    reference = next(iter(settings))
    for name in [d for d in args.datasets.split(",") if d]:
        _, data = numericalized(corpus_of((name,), None))
        data = without_test_labels(data)
        few = None
        if args.max_labelled:
            _, few = numericalized(corpus_of((name,), None, args.max_labelled))
            assert list(few.vocab.itos) == list(data.vocab.itos)  # same texts, same order: only labels differ
        lm_started = time.perf_counter()
        lm = finetune_language_model(cfgs["finetune_lm"], data, pretrained)
        entry: dict = {"finetune_minutes": round((time.perf_counter() - lm_started) / 60, 2),
                       "finetune_val_perplexity": lm.metrics.get("val_perplexity"), "settings": {}}
        labels = np.asarray(data.labels)
        train = data.indices("train", labelled=True)
        folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=123).split(train, labels[train]))[:args.max_folds]
        if few is not None:  # one "fold": the train documents that lost their labels, scored with the labels they had
            kept = set(few.indices("train", labelled=True).tolist())
            dropped = np.array([i for i in train if i not in kept])
            dropped = np.sort(np.random.default_rng(0).permutation(dropped)[:3000])
            folds = [(None, np.searchsorted(train, dropped))]
            entry["labelled_train"] = len(kept)
        rights: dict[str, list[np.ndarray]] = {s: [] for s in settings}
        for s, fields in settings.items():
            runs = []
            for k, (_, held) in enumerate(folds):
                run_started = time.perf_counter()
                data_k = fold_data(few if few is not None else data, train[held])
                if few is not None:  # the pseudo-test documents carry their true labels, every other label as `few` has it
                    data_k = dataclasses.replace(data_k, labels=np.where(np.isin(np.arange(len(labels)), train[held]),
                                                                         labels, np.asarray(data_k.labels)))
                result = train_classifier(dataclasses.replace(base, **fields), data_k, lm)
                right = result.test_probabilities.argmax(1) == labels[result.test_indexes]
                rights[s].append(right)
                runs.append({"fold": k, "accuracy": round(float(right.mean()), 4),
                             "val_accuracy": result.metrics["validation"]["accuracy"], "selected": result.metrics["selected"],
                             "epochs_run": len(result.history), "minutes": round((time.perf_counter() - run_started) / 60, 2),
                             "history": result.history})
                print(f"{name} [{s}] fold {k}: accuracy {runs[-1]['accuracy']}, {runs[-1]['minutes']} min", flush=True)
            entry["settings"][s] = {"fields": fields, "folds": runs}
        for s in settings:
            right, ref = np.concatenate(rights[s]), np.concatenate(rights[reference])
            diff, se = paired(right, ref)
            totals[s].append(diff)
            entry["settings"][s].update(accuracy=round(float(right.mean()), 4), difference=diff, standard_error=se,
                                        documents=int(len(right)))
            runs = entry["settings"][s]["folds"]
            rows.append([name, s, round(100 * float(right.mean()), 2), "-" if s == reference else f"{diff:+.2f} ± {se:.2f}",
                         ", ".join(f"{r['selected'].get('stage')}.{r['selected'].get('epoch')}" for r in runs),
                         sum(r["epochs_run"] for r in runs), round(sum(r["minutes"] for r in runs), 2)])
        results[name] = entry
    mean_rows = [[s, f"{np.mean(v):+.2f}" if s != reference else "-"] for s, v in totals.items()]
    payload = {"versions": versions("torch", "scikit-learn"), "threads": threads, "folds": args.folds,
               "max_folds": args.max_folds, "pretrain": {"loaded_from": pretrained.metrics.get("loaded_from"),
                                                         "train_tokens": pretrained.metrics.get("train_tokens")},
               "configs": {k: dataclasses.asdict(v) for k, v in cfgs.items()}, "datasets": results,
               "mean_difference": {s: float(np.mean(v)) for s, v in totals.items()},
               "minutes": round((time.perf_counter() - started) / 60, 2)}
    markdown = (f"## Classifier settings replayed inside train (no test label read)\n\n"
                f"{versions('torch')}, {threads} threads, {args.max_folds} of {args.folds} stratified folds per dataset, "
                f"LM {pretrained.metrics.get('loaded_from') or 'pretrained here'}, {payload['minutes']} min in all\n\n"
                + markdown_table(["dataset", "setting", "fold accuracy (RNN alone, %)", "difference vs first (points ± SE)",
                                  "selected stage.epoch", "epochs trained", "minutes"], rows)
                + "\n\nMean difference over datasets:\n\n" + markdown_table(["setting", "points"], mean_rows))
    save(args.out, payload, markdown)


if __name__ == "__main__":
    main()
