"""Rebuild trained nets from artifacts and run them: what the predict bundle and reports need.

    model = load_classifier(result)                                     # ClassifierNet in eval mode, on CPU
    probs = classify_ids(model, [result.vocab.encode(tokens)], result)  # (1, n_classes) float32 (regression: (1, 1) values)
    lm = load_language_model(language_model)                            # LanguageModelNet in eval mode
Limits: CPU by default; documents are truncated to the classifier's max_length like in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nlp_pipeline.artifacts import ClassifierResult, LanguageModel
from nlp_pipeline.models.heads import ClassifierNet, LanguageModelNet, build_classifier, build_language_model
from nlp_pipeline.models.blend import blend_in
from nlp_pipeline.models.training import load_numpy_state, predict_classifier


def load_language_model(lm: LanguageModel, device: str | torch.device = "cpu") -> LanguageModelNet:
    model = build_language_model(lm.arch)
    load_numpy_state(model, lm.state_dict)
    return model.to(device).eval()


def load_classifier(result: ClassifierResult, device: str | torch.device = "cpu") -> ClassifierNet:
    model = build_classifier(result.arch)
    load_numpy_state(model, result.state_dict)
    return model.to(device).eval()


def classify_ids(model: ClassifierNet, docs: list[np.ndarray], result: ClassifierResult | Any,
                 batch_size: int = 64, device: str | torch.device = "cpu") -> np.ndarray:
    """Predictions (len(docs), C) of documents given as id arrays (each starting with xxbos): class or per-label
    probabilities, or values (C = 1) for regression; blended with result.linear's (on the same ids cut to
    max_length) when the result has a linear model."""
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs]) if docs else np.zeros(0, np.int64)
    pad_id = result.vocab.stoi["xxpad"]
    probs = predict_classifier(model, ids, offsets, np.arange(len(docs)), pad_id, result.max_length, batch_size,
                               torch.device(device))
    return blend_in(getattr(result, "linear", None), probs, [np.asarray(d)[: result.max_length] for d in docs])
