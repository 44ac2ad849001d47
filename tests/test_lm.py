"""pretrain_lm / finetune_lm on tiny models: the loss falls on real text, vocabulary matching, splits read,
word-vector initialisation, the stage objects, and the artifact through the store and back."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

from nlp_pipeline.artifacts import SPLITS, LanguageModel, Numericalized, Vocab, WordVectors
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.models.architecture import ModelConfig
from nlp_pipeline.models.inference import load_language_model
from nlp_pipeline.rules import SPECIAL_TOKENS
from nlp_pipeline.stages.language_model import (
    FINETUNE_STAGE, PRETRAIN_STAGE, FinetuneLmConfig, PretrainLmConfig, finetune_language_model,
    pretrain_language_model, split_documents,
)

TINY = dict(bptt_length=12, batch_size=4, precision="float32", num_threads=1, validation_fraction=0.2)
SMALL = ModelConfig(embedding_dim=16, hidden_dim=24, num_layers=2)  # the architecture of an LM built from random weights
LEE = {**TINY, "batch_size": 32, "bptt_length": 20}


def numericalize_docs(docs: list[list[str]], splits: list[str] | None = None, labels: list[int] | None = None,
                      label_names: list[str] | None = None, min_freq: int = 1, vocab: list[str] | None = None) -> Numericalized:
    """Whitespace-token documents -> Numericalized with specials first and xxbos in front of every document."""
    docs = [["xxbos"] + d for d in docs]
    if vocab is None:
        counts = Counter(t for d in docs for t in d if t not in SPECIAL_TOKENS)
        vocab = list(SPECIAL_TOKENS) + sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    v = Vocab(vocab)
    ids = np.concatenate([v.encode(d) for d in docs]).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    n = len(docs)
    return Numericalized(
        labels=np.array(labels if labels is not None else [-1] * n, np.int32),
        splits=np.array([SPLITS.index(s) for s in (splits or ["train"] * n)], np.int8),
        label_names=label_names or [], ids=ids, offsets=offsets, vocab=v, tokenizer={"lang": "en"},
    )


@pytest.fixture(scope="module")
def lee() -> Numericalized:
    from gensim.test.utils import datapath

    with open(datapath("lee_background.cor"), encoding="utf-8", errors="replace") as handle:
        docs = [line.lower().split() for line in handle if line.strip()]
    return numericalize_docs(docs, min_freq=3)


@pytest.fixture(scope="module")
def pretrained(lee) -> LanguageModel:
    cfg = PretrainLmConfig(**LEE, model=SMALL, epochs=3, learning_rate=2e-2, dropout_scale=0.2, seed=0, weights="none")
    return pretrain_language_model(cfg, lee)


def test_pretrain_loss_falls_on_real_text(pretrained, lee):
    history = pretrained.history
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.3
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert pretrained.metrics["val_perplexity"] < len(lee.vocab) / 4  # far better than uniform over the vocabulary
    assert all(row["tokens_per_second"] > 0 and row["seconds"] > 0 for row in history)
    assert pretrained.metrics["train_documents"] + pretrained.metrics["val_documents"] == len(lee)
    assert pretrained.arch == {"vocab_size": len(lee.vocab), "embedding_dim": 16, "hidden_dim": 24, "num_layers": 2,
                               "rnn_type": "lstm", "pad_id": 1, "tie_weights": True}
    assert all(isinstance(v, np.ndarray) for v in pretrained.state_dict.values())  # loading needs no torch


def test_language_model_round_trips_through_the_store(pretrained, tmp_path):
    store = ArtifactStore(tmp_path)
    store.save("pretrain_lm", "k" * 64, pretrained, {"stage": "pretrain_lm"})
    loaded = store.load("pretrain_lm", "k" * 64)
    assert loaded.vocab.itos == pretrained.vocab.itos and loaded.history == pretrained.history
    a, b = load_language_model(pretrained), load_language_model(loaded)
    ids = torch.randint(0, len(pretrained.vocab), (7, 2))
    assert torch.equal(a.logits(ids)[0], b.logits(ids)[0])


def test_finetune_matches_vocabularies(pretrained, lee):
    target_docs = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "sat", "on", "a", "log"]] * 20
    data = numericalize_docs(target_docs)
    cfg = FinetuneLmConfig(**TINY, epochs=0, frozen_epochs=0)  # no training: the matched weights as they are
    lm = finetune_language_model(cfg, data, pretrained)
    old = pretrained.state_dict["encoder.embedding.weight"]
    new = lm.state_dict["encoder.embedding.weight"]
    old_index = {t: i for i, t in enumerate(pretrained.vocab.itos)}
    shared = [t for t in data.vocab.itos if t in old_index]
    assert "the" in shared and "cat" not in old_index or "mat" not in old_index
    for token in shared:
        assert np.array_equal(new[data.vocab.stoi[token]], old[old_index[token]])
    for token in (t for t in data.vocab.itos if t not in old_index):
        assert np.allclose(new[data.vocab.stoi[token]], old.mean(axis=0), atol=1e-6)
        assert lm.state_dict["decoder.bias"][data.vocab.stoi[token]] == pytest.approx(pretrained.state_dict["decoder.bias"].mean(), abs=1e-6)
    assert np.array_equal(lm.state_dict["decoder.weight"], new)  # still tied
    assert lm.metrics["vocab_shared"] == len(shared) and lm.metrics["vocab_new"] == len(data.vocab) - len(shared)
    from nlp_pipeline.models.training import new_words

    new, share = new_words(["a", "b", "c"], ["a"], np.array([0, 0, 1, 2]))
    assert new.tolist() == [False, True, True] and share == 0.5
    tokens = [t for d in target_docs for t in ["xxbos", *d]]
    assert lm.metrics["tokens_new_share"] == pytest.approx(sum(t not in old_index for t in tokens) / len(tokens), abs=1e-4)
    assert lm.arch["vocab_size"] == len(data.vocab) and lm.arch["hidden_dim"] == 24  # the pretrained architecture
    assert lm.vocab.itos == data.vocab.itos


def test_finetune_trains_on_all_splits_but_test_when_asked(pretrained):
    docs = [["good", "film", "here"], ["bad", "film", "there"], ["more", "text", "here"], ["test", "words", "there"]] * 8
    splits = ["train", "unsup", "dev", "test"] * 8
    data = numericalize_docs(docs, splits=splits, labels=[0, -1, 1, 0] * 8, label_names=["neg", "pos"])
    cfg = FinetuneLmConfig(**{**TINY, "batch_size": 2}, epochs=1, frozen_epochs=1)
    with_test = finetune_language_model(cfg, data, pretrained)
    without = finetune_language_model(dataclasses.replace(cfg, include_test_texts=False), data, pretrained)
    assert with_test.metrics["train_documents"] + with_test.metrics["val_documents"] == 32
    assert without.metrics["train_documents"] + without.metrics["val_documents"] == 24
    assert "test" not in without.metrics["documents_by_split"]
    assert [row["phase"] for row in with_test.history] == ["finetune_frozen", "finetune"]


def test_finetune_from_scratch_with_word_vectors():
    docs = [["alpha", "beta", "gamma", "delta"], ["beta", "gamma", "alpha", "omega"]] * 10
    data = numericalize_docs(docs)
    keys = ["alpha", "beta", "unused"]
    vectors = WordVectors(keys=keys, vectors=np.arange(48, dtype=np.float32).reshape(3, 16), counts=np.zeros(3, np.int64),
                          method="word2vec")
    cfg = FinetuneLmConfig(**TINY, model=SMALL, epochs=0, frozen_epochs=0)
    lm = finetune_language_model(cfg, data, None, vectors)
    emb = lm.state_dict["encoder.embedding.weight"]
    a, b = emb[data.vocab.stoi["alpha"]], emb[data.vocab.stoi["beta"]]
    assert np.allclose(b - a, (b - a)[0])  # rows are (scaled) copies of the vectors: constant differences
    assert lm.metrics["vectors_rows_initialised"] == 2 and lm.metrics["initialisation"] == "random"
    wrong = dataclasses.replace(vectors, vectors=np.ones((3, 5), np.float32))
    with pytest.raises(ConfigError, match="5 dimensions but model.embedding_dim is 16"):
        finetune_language_model(cfg, data, None, wrong)
    projected = finetune_language_model(dataclasses.replace(cfg, vectors_dim_mismatch="project"), data, None, wrong)
    assert projected.metrics["vectors_rows_initialised"] == 2


def test_gru_language_model_trains():
    docs = [["one", "two", "three", "four", "five"]] * 40
    cfg = PretrainLmConfig(**TINY, model=dataclasses.replace(SMALL, rnn_type="gru"), epochs=2, learning_rate=1e-2,
                           weights="none")
    lm = pretrain_language_model(cfg, numericalize_docs(docs))
    assert lm.arch["rnn_type"] == "gru"
    assert lm.history[-1]["train_loss"] < lm.history[0]["train_loss"]


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(ConfigError, match="model.rnn_type must be one of"):
        ModelConfig(rnn_type="transformer").validate()
    with pytest.raises(ConfigError, match="dropout_scale"):
        FinetuneLmConfig(input_dropout=0.5, dropout_scale=2.0).validate()
    with pytest.raises(DataError, match="batch_size"):
        pretrain_language_model(PretrainLmConfig(**TINY, model=SMALL, epochs=1, weights="none"), numericalize_docs([["a", "b"]] * 3))


def test_split_documents_is_seeded_and_disjoint():
    train, held = split_documents(10, 0.2, seed=0)
    assert len(train) == 8 and len(held) == 2 and not set(train) & set(held)
    assert np.array_equal(split_documents(10, 0.2, seed=0)[1], held)


def test_stage_objects():
    assert PRETRAIN_STAGE.name == "pretrain_lm" and PRETRAIN_STAGE.inputs == {"data": "numericalization"}
    assert FINETUNE_STAGE.name == "finetune_lm"
    assert FINETUNE_STAGE.inputs == {"data": "numericalization", "pretrained": "pretrain_lm", "vectors": "embeddings"}
    assert FINETUNE_STAGE.optional == ("pretrained", "vectors")
    base = FINETUNE_STAGE.key(FinetuneLmConfig(), {"data": "abc"})
    assert FINETUNE_STAGE.key(FinetuneLmConfig(num_threads=1, device="cpu"), {"data": "abc"}) == base  # volatile
    assert FINETUNE_STAGE.key(FinetuneLmConfig(learning_rate=1e-3), {"data": "abc"}) != base


def test_same_seed_same_model():
    docs = [["one", "two", "three", "four", "five", "six"]] * 30
    cfg = PretrainLmConfig(**TINY, model=SMALL, epochs=1, learning_rate=1e-2, weights="none")
    threads, rng_state = torch.get_num_threads(), torch.random.get_rng_state()
    a = pretrain_language_model(cfg, numericalize_docs(docs))
    assert torch.get_num_threads() == threads  # the stage ran on 1 thread and gave the caller's setting back
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # and left the global generator alone
    b = pretrain_language_model(cfg, numericalize_docs(docs))
    assert all(np.array_equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    c = pretrain_language_model(dataclasses.replace(cfg, seed=1), numericalize_docs(docs))
    assert not np.array_equal(a.state_dict["encoder.layers.0.weight_hh"], c.state_dict["encoder.layers.0.weight_hh"])
