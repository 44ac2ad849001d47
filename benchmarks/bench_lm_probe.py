"""How much of a labelled task the fine-tuned language model already knows: a linear probe of its frozen features.

    python benchmarks/bench_lm_probe.py [--datasets mr] [--set pretrain_lm.weights=DIR] [--name NAME]
        [--threads N] [--cache-dir DIR] [--distilled]

For each dataset: the LM is fine-tuned on the dataset's text as bench_ulmfit.py does (test labels dropped first:
no test label is read), then every train document is encoded by the frozen encoder in eval mode, and the
concat pooling the classifier's head reads ([last step, max, mean] over the real tokens) is taken of the
embeddings, of each RNN layer, and of all of them together. A logistic regression on standardised features
(C in 0.01, 0.1, 1 chosen by 3-fold CV on the carve's train documents) is scored on the default validation
carve, beside TF-IDF n-grams + logistic regression (C by the same CV) on the same documents; with --distilled
also static MiniLM word vectors (models/distilled.py) pooled the same way: what an embedding started from them
holds. A strong language model gives probe accuracies near or above TF-IDF's; a weak one leaves the classifier to learn the
task from its labels alone. Writes benchmarks/results/lm-probe[-NAME].json (+ .md).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from bench_ulmfit import configs, corpus_of, numericalized, pretrained_lm, without_test_labels
from common import markdown_table, save, versions

C_GRID = [0.01, 0.1, 1.0]


def pooled_layers(lm, data, docs: np.ndarray, max_length: int = 500, batch_size: int = 128) -> list[np.ndarray]:
    """Concat-pooled features of `docs`: one (n, 3 * width) array for the embeddings and for each RNN layer."""
    import torch

    from nlp_pipeline.models.batching import pad_batch, pad_id, sorted_batches
    from nlp_pipeline.models.heads import build_encoder, concat_pool

    encoder = build_encoder(lm.arch)
    encoder.load_state_dict({k[len("encoder."):]: torch.tensor(np.asarray(v)) for k, v in lm.state_dict.items()
                             if k.startswith("encoder.")})
    encoder.eval()
    lengths = np.diff(np.asarray(data.offsets))[docs]
    parts: list[list[np.ndarray]] = []
    order = []
    with torch.no_grad():
        for batch in sorted_batches(lengths, batch_size):
            ids, lens = pad_batch(data.ids, data.offsets, docs[batch], pad_id(data.vocab), max_length)
            ids, lens = torch.from_numpy(ids), torch.from_numpy(lens)
            x = encoder.embedding(ids)
            layers = [concat_pool(x, lens)]
            for layer in encoder.layers:
                x, _ = layer(x)
                layers.append(concat_pool(x, lens))
            parts.append([t.float().numpy() for t in layers])
            order.append(batch)
    inverse = np.argsort(np.concatenate(order))
    return [np.concatenate([p[i] for p in parts])[inverse] for i in range(len(parts[0]))]


def distilled_features(data) -> np.ndarray:
    """(V, 384): the distilled MiniLM vectors of the data's vocabulary; special tokens get zeros."""
    from nlp_pipeline.models.distilled import word_vectors
    from nlp_pipeline.rules import SPECIAL_TOKENS

    itos = list(data.vocab.itos)
    words = [i for i, w in enumerate(itos) if w not in SPECIAL_TOKENS]
    vectors = word_vectors([itos[i] for i in words])
    out = np.zeros((len(itos), vectors.shape[1]), np.float32)
    out[words] = vectors
    return out


def pooled_static(vectors: np.ndarray, data, docs: np.ndarray, max_length: int = 500) -> np.ndarray:
    """[last, max, mean] of each document's word vectors (its first max_length tokens, as pooled_layers reads)."""
    out = []
    for d in docs:
        v = vectors[np.asarray(data.doc_ids(d))[:max_length]]
        out.append(np.concatenate([v[-1], v.max(axis=0), v.mean(axis=0)]))
    return np.stack(out)


def probe(train_x: np.ndarray, train_y: np.ndarray, valid_x: np.ndarray, valid_y: np.ndarray, seed: int = 0) -> dict:
    """Standardised features -> logistic regression with C by 3-fold CV on train; validation accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
                         {"logisticregression__C": C_GRID}, cv=StratifiedKFold(3, shuffle=True, random_state=seed))
    model.fit(train_x, train_y)
    return {"validation_accuracy": round(float(model.score(valid_x, valid_y)), 4),
            "C": model.best_params_["logisticregression__C"], "cv_accuracy": round(float(model.best_score_), 4)}


def tfidf_probe(data, train: np.ndarray, valid: np.ndarray, seed: int = 0) -> dict:
    """TF-IDF word 1-2-grams of the same documents -> logistic regression, C by the same CV."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline

    itos = data.vocab.itos
    texts = [" ".join(itos[i] for i in data.doc_ids(d)) for d in np.concatenate([train, valid])]
    labels = np.asarray(data.labels)
    model = GridSearchCV(make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+"),
                                       LogisticRegression(max_iter=3000)),
                         {"logisticregression__C": [1.0, 4.0, 16.0]}, cv=StratifiedKFold(3, shuffle=True, random_state=seed))
    model.fit(texts[:len(train)], labels[train])
    return {"validation_accuracy": round(float(model.score(texts[len(train):], labels[valid])), 4),
            "C": model.best_params_["logisticregression__C"], "cv_accuracy": round(float(model.best_score_), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="mr")
    parser.add_argument("--name", default="", help="suffix of the results file: lm-probe-NAME.json")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "nlp-pipeline-bench"))
    parser.add_argument("--set", action="append", default=[], help="override a config field: section.field=value")
    parser.add_argument("--distilled", action="store_true",
                        help="also probe static word vectors distilled from MiniLM (models/distilled.py), pooled the same way")
    args = parser.parse_args()

    import torch

    from nlp_pipeline.models.device import usable_cpu_count
    from nlp_pipeline.stages.language_model import finetune_language_model
    from nlp_pipeline.targets import carve

    threads = args.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    cfgs = {k: dataclasses.replace(v, num_threads=threads) if hasattr(v, "num_threads") else v
            for k, v in configs("full", args.set).items()}
    if not cfgs["pretrain_lm"].loads_weights:
        sys.exit("bench_lm_probe.py probes a saved language model: give --set pretrain_lm.weights=packaged or a folder")
    started = time.perf_counter()
    pretrained, _ = pretrained_lm(cfgs["pretrain_lm"], None, Path(args.cache_dir), cfgs["model"])
    results, rows = {}, []
    for name in [d for d in args.datasets.split(",") if d]:
        _, data = numericalized(corpus_of((name,), None))
        data = without_test_labels(data)
        lm = finetune_language_model(dataclasses.replace(cfgs["finetune_lm"], model=None), data, pretrained)
        held = carve(data)
        train, valid = np.asarray(held.train_indexes), np.asarray(held.validation_indexes)
        labels = np.asarray(data.labels)
        train_parts, valid_parts = pooled_layers(lm, data, train), pooled_layers(lm, data, valid)
        names = ["embeddings"] + [f"RNN layer {i + 1}" for i in range(len(train_parts) - 1)]
        entry = {"finetune_val_perplexity": lm.metrics.get("val_perplexity"), "train": int(len(train)),
                 "validation": int(len(valid)), "probes": {}}
        for label, tr, va in zip(names, train_parts, valid_parts):
            entry["probes"][label] = probe(tr, labels[train], va, labels[valid])
        entry["probes"]["all layers"] = probe(np.hstack(train_parts), labels[train], np.hstack(valid_parts), labels[valid])
        if args.distilled:
            static = distilled_features(data)
            entry["probes"]["MiniLM word vectors (static)"] = probe(pooled_static(static, data, train), labels[train],
                                                                     pooled_static(static, data, valid), labels[valid])
        entry["tfidf_logreg"] = tfidf_probe(data, train, valid)
        results[name] = entry
        for label, value in entry["probes"].items():
            rows.append([name, f"probe: {label}", value["validation_accuracy"], value["cv_accuracy"], value["C"]])
        rows.append([name, "TF-IDF 1-2-grams + LR", entry["tfidf_logreg"]["validation_accuracy"],
                     entry["tfidf_logreg"]["cv_accuracy"], entry["tfidf_logreg"]["C"]])
        print(rows[-len(entry["probes"]) - 1:], file=sys.stderr, flush=True)
    minutes = round((time.perf_counter() - started) / 60, 1)
    lm_text = (f"{cfgs['pretrain_lm'].weights}: {pretrained.metrics.get('train_tokens')} pretraining tokens, held-out "
               f"perplexity {pretrained.metrics.get('val_perplexity')}")
    markdown = (f"### Linear probes of the fine-tuned LM's frozen features ({lm_text})\n\n`python benchmarks/bench_lm_probe.py "
                f"{' '.join(sys.argv[1:])}`, {threads} threads, {minutes} min; validation carve, no test label read.\n\n"
                + markdown_table(["dataset", "features", "validation accuracy", "CV accuracy (train)", "C"], rows))
    save("lm-probe" + (f"-{args.name}" if args.name else ""),
         {"versions": versions("torch", "scikit-learn"), "threads": threads, "minutes": minutes, "language_model": lm_text,
          "pretrain": pretrained.metrics, "datasets": results,
          "configs": {k: dataclasses.asdict(v) for k, v in cfgs.items()}}, markdown)


if __name__ == "__main__":
    main()
