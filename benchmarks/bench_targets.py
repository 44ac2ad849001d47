"""A multi-label target on real data: TREC-6 questions, each labelled with its coarse class and its fine class
(e.g. {"NUM", "NUM:date"}: 6 + 50 label names), through `nlp-pipeline run` as a user runs it.

    python benchmarks/bench_targets.py [--cache-dir DIR] [--set STAGE.FIELD=VALUE ...]

The corpus is written as JSONL with list labels into a temporary folder (from ../shared/data/trec6, which has
`label` and `label_fine`); the run uses the default config with `corpus.target_type = "multi_label"` and the
embeddings stage off (it does not feed the classifier). Reported from the run's metrics and the lsa stage's
baselines of the same run: micro-F1, macro-F1, subset accuracy (both labels right, and no other) and Hamming
loss on TREC-6's 500 test questions; and the trivial answer (train's most frequent coarse and fine labels for
every question). No published figure exists for this pairing; the single-label TREC-6 figures are in
docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import markdown_table, save, versions

DATA = Path(os.environ.get("NLP_PIPELINE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "trec6"


def write_corpus(folder: Path) -> dict[str, list[list[str]]]:
    """train.jsonl / test.jsonl with labels [coarse, fine]; returns the label lists by split."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (DATA / f"{split}.jsonl").open(encoding="utf-8")]
        out[split] = [[row["label"], row["label_fine"]] for row in rows]
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for row, labels in zip(rows, out[split]):
                handle.write(json.dumps({"text": row["text"], "label": labels}) + "\n")
    return out


def trivial_scores(labels: dict[str, list[list[str]]]) -> dict:
    """Every test question answered with train's most frequent coarse label and most frequent fine label."""
    from nlp_pipeline.targets import multi_label_metrics

    names = sorted({name for row in labels["train"] for name in row})
    counts = {name: sum(name in row for row in labels["train"]) for name in names}
    coarse = max((n for n in names if ":" not in n), key=counts.get)
    fine = max((n for n in names if ":" in n), key=counts.get)
    truth = np.array([[name in row for name in names] for row in labels["test"]], dtype=np.int8)
    answer = np.tile([[1.0 if name in (coarse, fine) else 0.0 for name in names]], (len(truth), 1))
    return multi_label_metrics(truth, answer, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="artifact cache (default: a temporary folder: a cold run)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra STAGE.FIELD=VALUE settings")
    args = parser.parse_args()
    if not (DATA / "train.jsonl").is_file():
        raise SystemExit(f"TREC-6 is not at {DATA}; set NLP_PIPELINE_DATA")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "trec6_multilabel"
        labels = write_corpus(corpus)
        cache = args.cache_dir or str(Path(tmp) / "cache")
        command = ["run", "--corpus", str(corpus), "--runs-dir", str(Path(tmp) / "runs"), "--cache-dir", cache,
                   "--set", "corpus.target_type=multi_label", "--set", "embeddings.methods=[]"]
        for setting in args.sets:
            command += ["--set", setting]
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "nlp_pipeline.cli", *command], capture_output=True, text=True)
        seconds = time.time() - started
        if done.returncode != 0:
            raise SystemExit(f"run failed ({done.returncode}): {done.stderr[-3000:]}")
        run_dir = Path(tmp) / "runs" / corpus.name
        from nlp_pipeline.core.store import ArtifactStore

        keys = json.loads((run_dir / "keys.json").read_text(encoding="utf-8"))
        store = ArtifactStore(Path(cache))
        classifier = store.load("classifier", keys["classifier"])
        lsa = store.load("lsa", keys["lsa"])
    columns = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")
    rows = [["ULMFiT classifier (nlp-pipeline, this run)", *(classifier.metrics["test"][c] for c in columns)],
            ["TF-IDF n-grams + one-vs-rest logistic regression (lsa stage)", *(lsa.metrics["tfidf_logreg"][c] for c in columns)],
            ["LSA + one-vs-rest logistic regression (lsa stage)", *(lsa.metrics["lsa_logreg"][c] for c in columns)],
            ["train's most frequent coarse + fine label for every question", *(trivial_scores(labels)[c] for c in columns)]]
    payload = {"seconds": seconds, "classifier": classifier.metrics, "lsa": {k: lsa.metrics[k] for k in ("tfidf_logreg", "lsa_logreg")},
               "label_names": len(classifier.label_names), "settings": args.sets}
    md = "\n".join([
        "### Multi-label targets on real data: TREC-6 coarse + fine classes", "",
        f"Command: `python benchmarks/bench_targets.py {' '.join(sys.argv[1:])}` ({time.strftime('%Y-%m-%d')}). "
        f"Versions: {versions('torch', 'spacy', 'gensim', 'scikit-learn')}.", "",
        f"Each of TREC-6's 5,452 training and 500 test questions carries two labels, its coarse and its fine class "
        f"({len(classifier.label_names)} names in train). One `nlp-pipeline run` with the default config plus "
        f"`corpus.target_type = \"multi_label\"` (embeddings off): {seconds / 60:.1f} min wall "
        f"({'cache folder ' + args.cache_dir + ': cold only if new' if args.cache_dir else 'cold cache'}).", "",
        markdown_table(["model (test split)", "micro-F1", "macro-F1", "subset accuracy", "Hamming loss"], rows), "",
        f"Validation (carved from train, {classifier.metrics['validation']['n']} questions): micro-F1 "
        f"{classifier.metrics['validation']['micro_f1']}; selected epoch: stage {classifier.metrics['selected'].get('stage')} "
        f"epoch {classifier.metrics['selected'].get('epoch')}.", "",
        "Run log (stage lines):", "", "```", *[line for line in done.stderr.splitlines() if line.strip()][-30:], "```",
    ])
    save("targets-trec6-multilabel", payload, md)


if __name__ == "__main__":
    main()
