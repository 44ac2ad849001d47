"""Builders of small artifacts by hand, for stage tests that should not depend on upstream stages."""

from __future__ import annotations

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
