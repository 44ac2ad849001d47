"""Predict speed of a bundle: latency of one text and throughput over many, against peers in the same process.

    python benchmarks/bench_predict.py [--model PATH] [--scale small|full] [--threads N] [--skip-fastai]

Model: the bundle at --model (a bundle folder or runs/<name>/), else one trained here on TREC-6 train
(falls back to gensim's 200 Pang & Lee sentences when /work/shared/data is absent) with the default "cpu"
architecture (LSTM 300/600/2): the stage functions directly (corpus -> tokenization -> numericalization ->
classifier), the head trained for one epoch. Accuracy is not the point here, shapes are: latency depends
on the architecture and the text length, not on how well the weights were trained.
Texts: TREC-6 test questions (500), repeated to 10,000 (full) or 2,000 (small).
Rows (all in this process, same threads):
- ours float32: Classifier.load(bundle).predict(texts) -- tokenization, encoding, batches of 64, softmax.
- ours bfloat16: the same bundle loaded with precision="bfloat16" (CPUs with AVX512-BF16/AMX do it natively).
- ours, ids only: the same net on already-encoded ids (models.inference.classify_ids): what tokenization costs.
- fastai 2.8: text_classifier_learner(AWD_LSTM, same sizes, untrained) -- learn.predict(text) for one text,
  learn.get_preds(dl=learn.dls.test_dl(texts)) for many.
- TF-IDF + logistic regression (scikit-learn, 1-2-grams): the usual cheap baseline, predict_proba.
Latency: median and 90th percentile over N single-text calls (each a different text) after 5 warm-up calls.
Throughput: one call over all texts after a warm-up call on 100 texts. Ratios are ours float32 / peer.
Prints a markdown section and writes benchmarks/results/predict.json (+ .md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA, markdown_table, save, train_blended, versions

SCALES = {"small": {"texts": 2000, "latency_calls": 50}, "full": {"texts": 10000, "latency_calls": 200}}


# --- data and a bundle ---------------------------------------------------------------------------------------
def load_texts() -> tuple[list[str], list[str], list[str], str]:
    """(train texts, train labels, test texts, source name)."""
    trec = DATA / "trec6"
    if (trec / "train.jsonl").is_file():
        def read(name):
            rows = [json.loads(line) for line in open(trec / name, encoding="utf-8") if line.strip()]
            return [r["text"] for r in rows], [r["label"] for r in rows]

        train, labels = read("train.jsonl")
        test, _ = read("test.jsonl")
        return train, labels, test, "TREC-6"
    from gensim.test.utils import datapath

    with open(datapath("pang_lee_polarity.cor"), encoding="cp1252") as handle:
        rows = [line.split(maxsplit=1) for line in handle if line.strip()]
    texts, labels = [text.strip() for _, text in rows], [tag for tag, _ in rows]
    return texts[::2] + texts[1::2][:50], labels[::2] + labels[1::2][:50], texts[1::2], "Pang & Lee sample (gensim)"


def train_bundle(train: list[str], labels: list[str], folder: Path, threads: int) -> tuple[Path, float]:
    """A bundle of the default architecture whose head was trained for one epoch; returns (path, seconds).
    (--scale small trains on every k-th training text, about 2,000.)"""
    from nlp_pipeline.artifacts import SPLITS, Corpus
    from nlp_pipeline.export.bundle import save_bundle
    from nlp_pipeline.stages.classifier import ClassifierConfig
    from nlp_pipeline.stages.numericalization import NumericalizationConfig, numericalize
    from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize

    started = time.perf_counter()
    names = sorted(set(labels))
    corpus = Corpus(labels=np.array([names.index(label) for label in labels], np.int32),
                    splits=np.full(len(train), SPLITS.index("train"), np.int8), label_names=names, texts=list(train))
    data = numericalize(NumericalizationConfig(min_freq=2), tokenize(TokenizationConfig(workers=1), corpus))
    cfg = ClassifierConfig(stage_epochs=[1, 0], stage_learning_rates=[2e-2, 1e-3], num_threads=threads, precision="float32")
    result = train_blended(cfg, data)
    print(f"trained a {result.arch['embedding_dim']}/{result.arch['hidden_dim']}/{result.arch['num_layers']} bundle "
          f"in {time.perf_counter() - started:.1f}s (validation accuracy {result.metrics['validation']['accuracy']})",
          file=sys.stderr)
    return save_bundle(result, folder / "model"), time.perf_counter() - started


# --- measurements ------------------------------------------------------------------------------------------------
def latency(call, texts: list[str], calls: int) -> dict:
    for text in texts[:5]:
        call(text)
    times = []
    for i in range(calls):
        text = texts[i % len(texts)]
        started = time.perf_counter()
        call(text)
        times.append(time.perf_counter() - started)
    return {"latency_ms_median": round(1000 * float(np.median(times)), 2),
            "latency_ms_p90": round(1000 * float(np.percentile(times, 90)), 2)}


def throughput(call, texts: list[str]) -> dict:
    call(texts[:100])
    started = time.perf_counter()
    call(texts)
    seconds = time.perf_counter() - started
    return {"throughput_seconds": round(seconds, 2), "texts_per_second": round(len(texts) / seconds, 1)}


def measure_ours(bundle: Path, precision: str, texts: list[str], calls: int, threads: int) -> dict:
    from nlp_pipeline.export.bundle import Classifier

    started = time.perf_counter()
    classifier = Classifier.load(bundle, num_threads=threads, precision=precision)
    row = {"implementation": f"ours {precision}", "load_seconds": round(time.perf_counter() - started, 2)}
    row.update(latency(classifier.predict, texts, calls))
    row.update(throughput(lambda batch: classifier.predict(batch, batch_size=64), texts))
    return row


def measure_ids_only(bundle: Path, texts: list[str], calls: int, threads: int) -> dict:
    from nlp_pipeline.export.bundle import Classifier
    from nlp_pipeline.models.inference import classify_ids

    classifier = Classifier.load(bundle, num_threads=threads)
    docs = classifier.encode(texts)
    by_text = dict(zip(texts, docs))
    row = {"implementation": "ours, ids only (no tokenization)", "load_seconds": None}
    row.update(latency(lambda text: classify_ids(classifier.model, [by_text[text]], classifier), texts, calls))
    row.update(throughput(lambda batch: classify_ids(classifier.model, [by_text[t] for t in batch], classifier,
                                                     batch_size=64), texts))
    return row


def measure_fastai(bundle: Path, train: list[str], labels: list[str], texts: list[str], calls: int, workdir: Path) -> dict:
    import pandas as pd
    from fastai.text.all import AWD_LSTM, TextDataLoaders, awd_lstm_clas_config, text_classifier_learner

    arch = json.loads((bundle / "config.json").read_text())["arch"]
    sizes = dict(emb_sz=arch["embedding_dim"], n_hid=arch["hidden_dim"], n_layers=arch["num_layers"])
    started = time.perf_counter()
    frame = pd.DataFrame({"text": train, "label": labels})
    dls = TextDataLoaders.from_df(frame, path=workdir, text_col="text", label_col="label", valid_pct=0.1, seed=0, bs=64)
    learn = text_classifier_learner(dls, AWD_LSTM, config={**awd_lstm_clas_config, **sizes}, pretrained=False, path=workdir)
    row = {"implementation": "fastai 2.8 (untrained, same sizes)", "load_seconds": round(time.perf_counter() - started, 2)}
    with learn.no_bar(), learn.no_logging():
        row.update(latency(learn.predict, texts, calls))
        row.update(throughput(lambda batch: learn.get_preds(dl=learn.dls.test_dl(pd.DataFrame({"text": batch}))), texts))
    return row


def measure_tfidf(train: list[str], labels: list[str], texts: list[str], calls: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    started = time.perf_counter()
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2), LogisticRegression(max_iter=2000))
    model.fit(train, labels)
    row = {"implementation": "TF-IDF + logistic regression (scikit-learn)", "load_seconds": round(time.perf_counter() - started, 2)}
    row.update(latency(lambda text: model.predict_proba([text]), texts, calls))
    row.update(throughput(model.predict_proba, texts))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a bundle folder or runs/<name>/ (default: train a small one here)")
    parser.add_argument("--scale", choices=tuple(SCALES), default="full")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = every usable core)")
    parser.add_argument("--skip-fastai", action="store_true")
    parser.add_argument("--bundle-out", default=None, help="keep the bundle trained here in this folder (reuse with --model)")
    args = parser.parse_args()

    import torch

    from nlp_pipeline.export.bundle import resolve_bundle_dir
    from nlp_pipeline.models.device import usable_cpu_count

    threads = args.threads or usable_cpu_count()
    torch.set_num_threads(threads)
    scale = SCALES[args.scale]
    train, labels, test, source = load_texts()
    texts = (test * (scale["texts"] // len(test) + 1))[: scale["texts"]]
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.model:
            bundle, trained_seconds = resolve_bundle_dir(args.model), None
        else:
            step = max(1, len(train) // 2000) if args.scale == "small" else 1  # every k-th text: all labels stay
            out = Path(args.bundle_out) if args.bundle_out else workdir
            bundle, trained_seconds = train_bundle(train[::step], labels[::step], out, threads)
        config = json.loads((bundle / "config.json").read_text())
        arch, blend_weight = config["arch"], (config.get("linear") or {}).get("weight", 0.0)
        bundle_mb = round(sum(p.stat().st_size for p in bundle.iterdir()) / 1e6, 2)
        rows = [measure_ours(bundle, "float32", texts, scale["latency_calls"], threads)]
        from nlp_pipeline.models.device import cpu_has_native_bfloat16

        if cpu_has_native_bfloat16():
            rows.append(measure_ours(bundle, "bfloat16", texts, scale["latency_calls"], threads))
        rows.append(measure_ids_only(bundle, texts, scale["latency_calls"], threads))
        if not args.skip_fastai:
            try:
                rows.append(measure_fastai(bundle, train, labels, texts, scale["latency_calls"], workdir))
            except ImportError as exc:
                print(f"fastai skipped: {exc}", file=sys.stderr)
        rows.append(measure_tfidf(train, labels, texts, scale["latency_calls"]))

    ours = rows[0]
    for row in rows:
        row["latency_vs_ours"] = round(row["latency_ms_median"] / ours["latency_ms_median"], 2)
        row["throughput_vs_ours"] = round(row["texts_per_second"] / ours["texts_per_second"], 2)
    payload = {"versions": versions("torch", "fastai", "spacy", "scikit-learn"), "threads": threads, "scale": args.scale,
               "texts": len(texts), "text_source": source, "latency_calls": scale["latency_calls"],
               "bundle": {"arch": arch, "megabytes": bundle_mb, "blend_weight": blend_weight, "trained_here_seconds":
                          None if trained_seconds is None else round(trained_seconds, 1)},
               "rows": rows, "minutes": round((time.time() - started) / 60, 2)}
    lines = [
        "## Predict speed", "",
        f"`python benchmarks/bench_predict.py {' '.join(sys.argv[1:])}`  ",
        f"{payload['versions']}, {threads} threads, scale {args.scale}, {payload['minutes']} min in all", "",
        f"Bundle: LSTM {arch['embedding_dim']}/{arch['hidden_dim']}/{arch['num_layers']}, vocabulary {arch['vocab_size']}, "
        f"{arch['num_classes']} classes, {bundle_mb} MB on disk, linear model blended in with weight {blend_weight} "
        f"(0: the RNN alone, its linear part never computed). Texts: {source} test texts, {len(texts)} in all "
        f"(latency: median / 90th percentile of {scale['latency_calls']} single-text calls; throughput: one call, batches of 64).",
        "",
        markdown_table(["implementation", "load / fit s", "1 text median ms", "1 text p90 ms", "texts/s",
                        "latency vs ours", "throughput vs ours"],
                       [[r["implementation"], r["load_seconds"] if r["load_seconds"] is not None else "-",
                         r["latency_ms_median"], r["latency_ms_p90"], f"{r['texts_per_second']:.0f}",
                         f"{r['latency_vs_ours']:.2f}x", f"{r['throughput_vs_ours']:.2f}x"] for r in rows]),
        "",
        "Ratios are peer / ours float32 (latency > 1x: the peer is slower; throughput > 1x: the peer is faster). "
        "fastai's model is untrained (timing does not depend on the weights); its load column is DataLoaders + learner "
        "construction, the TF-IDF column its fit.",
    ]
    save("predict", payload, "\n".join(lines))


if __name__ == "__main__":
    main()
