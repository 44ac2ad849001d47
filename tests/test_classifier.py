"""classifier: metrics and splits by hand, the stage end to end on gensim's bundled Pang & Lee sentences,
learning on real TREC-6 questions (skipped when /work/shared/data is absent), LM transfer and its checks."""

from __future__ import annotations

import dataclasses
import os
import json
from pathlib import Path

import numpy as np
import pytest

from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.models.inference import classify_ids, load_classifier
from nlp_pipeline.stages.classifier import (
    STAGE, ClassifierConfig, _stages, classification_metrics, stratified_holdout, train_classifier,
)
from nlp_pipeline.stages.language_model import PretrainLmConfig, pretrain_language_model

from test_lm import numericalize_docs

TINY = dict(embedding_dim=16, hidden_dim=24, num_layers=2, batch_size=16, precision="float32", num_threads=1)
TREC = Path(os.environ.get("NLP_PIPELINE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "trec6"


@pytest.fixture(scope="module")
def pang_lee():
    """gensim's 200 labelled movie-review sentences (100 neg then 100 pos), 50 of them as test."""
    from gensim.test.utils import datapath

    with open(datapath("pang_lee_polarity.cor"), encoding="cp1252") as handle:
        rows = [line.split(maxsplit=1) for line in handle if line.strip()]
    labels = [0 if tag == "__label__neg" else 1 for tag, _ in rows]
    test = set(np.random.default_rng(0).permutation(len(rows))[:50].tolist())
    splits = ["test" if i in test else "train" for i in range(len(rows))]
    return numericalize_docs([text.split() for _, text in rows], splits=splits, labels=labels, label_names=["neg", "pos"])


def test_classification_metrics_worked_example():
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
    assert m["accuracy"] == 0.75 and m["confusion"] == [[1, 1], [0, 2]]
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert m["per_class"]["b"] == {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2}
    assert m["macro_f1"] == 0.7333


def test_stratified_holdout_by_hand():
    kept, held = stratified_holdout(np.array([0, 0, 0, 0, 1, 1]), 0.25, seed=0)
    assert len(held) == 2 and sorted(np.array([0, 0, 0, 0, 1, 1])[held].tolist()) == [0, 1]
    assert sorted(kept.tolist() + held.tolist()) == list(range(6))
    assert np.array_equal(stratified_holdout(np.array([0, 0, 0, 0, 1, 1]), 0.25, seed=0)[1], held)


def test_unfreezing_stages():
    cfg = ClassifierConfig(stage_epochs=[1, 1, 1, 2], stage_learning_rates=[2e-2, 1e-2, 5e-3, 1e-3])
    assert _stages(cfg, 5) == [(1, 1, 2e-2), (2, 1, 1e-2), (3, 1, 5e-3), (5, 2, 1e-3)]
    assert _stages(dataclasses.replace(cfg, gradual_unfreezing=False), 5) == [(5, 1, 2e-2), (5, 1, 1e-2), (5, 1, 5e-3), (5, 2, 1e-3)]
    assert _stages(ClassifierConfig(stage_epochs=[2, 0, 3], stage_learning_rates=[1e-2, 1e-2, 1e-3]), 4) == [(1, 2, 1e-2), (4, 3, 1e-3)]
    with pytest.raises(ConfigError, match="equal length"):
        ClassifierConfig(stage_epochs=[1, 2], stage_learning_rates=[1e-2]).validate()


def test_classifier_end_to_end_on_pang_lee(pang_lee, tmp_path):
    cfg = ClassifierConfig(**TINY, stage_epochs=[1, 2], stage_learning_rates=[1e-2, 5e-3], validation_fraction=0.2)
    result = train_classifier(cfg, pang_lee)
    test = pang_lee.indices("test")
    assert np.array_equal(result.test_indexes, test)
    assert np.array_equal(result.test_labels, np.asarray(pang_lee.labels)[test])
    assert result.test_probabilities.shape == (50, 2)
    assert np.allclose(result.test_probabilities.sum(1), 1.0, atol=1e-5)
    assert not set(result.validation_indexes) & set(test)  # validation is carved from train, never test
    assert len(result.validation_indexes) == 30  # 20 % of each label's 75
    assert result.metrics["validation"]["source"] == "carved from train"
    assert [(row["stage"], row["trainable_groups"]) for row in result.history] == [(1, 1), (2, 4), (2, 4)]
    assert result.metrics["test"]["n"] == 50 and len(result.metrics["test"]["confusion"]) == 2
    assert result.metrics["initialisation"] == "random"
    # through the store and back, then the inference helper reproduces the test probabilities
    store = ArtifactStore(tmp_path)
    store.save("classifier", "c" * 64, result, {"stage": "classifier"})
    loaded = store.load("classifier", "c" * 64)
    model = load_classifier(loaded)
    docs = [np.asarray(pang_lee.doc_ids(i)) for i in test]
    assert np.allclose(classify_ids(model, docs, loaded), result.test_probabilities, atol=1e-5)


def test_classifier_uses_a_language_model_and_checks_its_vocabulary(pang_lee):
    lm = pretrain_language_model(PretrainLmConfig(**{**TINY, "batch_size": 8}, bptt_length=10, epochs=1), pang_lee)
    cfg = ClassifierConfig(**TINY, stage_epochs=[1], stage_learning_rates=[1e-2])
    result = train_classifier(cfg, pang_lee, lm)
    assert result.metrics["initialisation"] == "language model"
    assert result.arch["hidden_dim"] == 24 and result.arch["num_classes"] == 2
    other = numericalize_docs([["x", "y"]] * 4, labels=[0, 1, 0, 1], label_names=["a", "b"])
    with pytest.raises(DataError, match="vocabulary"):
        train_classifier(cfg, other, lm)


def test_an_ensemble_averages_members_trained_with_the_next_seeds(pang_lee):
    cfg = ClassifierConfig(**TINY, stage_epochs=[1, 1], stage_learning_rates=[1e-2, 5e-3], validation_fraction=0.2,
                           blend_linear=False)
    single = train_classifier(cfg, pang_lee)
    pair = train_classifier(dataclasses.replace(cfg, members=2), pang_lee)
    assert pair.arch["members"] == 2 and "members" not in single.arch
    assert [row["member"] for row in pair.history] == [1, 1, 2, 2]
    assert [row["member"] for row in pair.metrics["members"]] == [1, 2]
    assert np.array_equal(pair.validation_indexes, single.validation_indexes)  # one validation carve for all
    # member 1 is exactly the single classifier (same seed); member 2 differs
    first = {k[len("members.0."):]: v for k, v in pair.state_dict.items() if k.startswith("members.0.")}
    second = {k[len("members.1."):]: v for k, v in pair.state_dict.items() if k.startswith("members.1.")}
    assert first.keys() == second.keys() == single.state_dict.keys()
    assert all(np.allclose(first[k], single.state_dict[k], atol=1e-6) for k in first)
    assert not np.allclose(first["head.block2.2.weight"], second["head.block2.2.weight"])
    # the ensemble's probabilities are the mean of its members', in the stage and after reloading
    model = load_classifier(pair)
    docs = [np.asarray(pang_lee.doc_ids(i)) for i in pair.test_indexes]
    each = [classify_ids(member, docs, pair) for member in model.members]
    np.testing.assert_allclose(classify_ids(model, docs, pair), (each[0] + each[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(pair.test_probabilities, (each[0] + each[1]) / 2, atol=1e-6)
    np.testing.assert_allclose(each[0], single.test_probabilities, atol=1e-5)
    with pytest.raises(ConfigError, match="members"):
        ClassifierConfig(members=0).validate()


def test_validation_uses_the_dev_split_when_present():
    docs = [["good", "fine"], ["bad", "awful"]] * 20
    splits = ["train"] * 30 + ["dev"] * 6 + ["test"] * 4
    data = numericalize_docs(docs, splits=splits, labels=[1, 0] * 20, label_names=["neg", "pos"])
    cfg = ClassifierConfig(**{**TINY, "batch_size": 8}, stage_epochs=[1], stage_learning_rates=[1e-2])
    result = train_classifier(cfg, data)
    assert result.metrics["validation"]["source"] == "dev"
    assert result.validation_indexes.tolist() == list(range(30, 36))
    assert result.metrics["train_documents"] == 30
    with pytest.raises(DataError, match="no labelled dev"):
        train_classifier(dataclasses.replace(cfg, validation_split="dev"),
                         numericalize_docs(docs, labels=[1, 0] * 20, label_names=["neg", "pos"]))


def test_stage_object():
    assert STAGE.name == "classifier" and STAGE.optional == ("lm",)
    assert STAGE.inputs == {"data": "numericalization", "lm": "finetune_lm"}
    base = STAGE.key(ClassifierConfig(), {"data": "d", "lm": "l"})
    assert STAGE.key(ClassifierConfig(stage_learning_rates=[1e-2, 1e-2, 1e-2, 1e-2]), {"data": "d", "lm": "l"}) != base


@pytest.mark.skipif(not (TREC / "train.jsonl").is_file(), reason="TREC-6 data not present")
def test_classifier_learns_trec6_questions_from_scratch():
    """Real data, no pretraining, a tiny model, a few seconds: well above the 27.6 % majority class of test."""

    def read(name):
        return [json.loads(line) for line in (TREC / name).open(encoding="utf-8")]

    train, test = read("train.jsonl"), read("test.jsonl")
    names = sorted({row["label"] for row in train})
    rows = train + test
    data = numericalize_docs([row["text"].lower().split() for row in rows], min_freq=2,
                             splits=["train"] * len(train) + ["test"] * len(test),
                             labels=[names.index(row["label"]) for row in rows], label_names=names)
    cfg = ClassifierConfig(embedding_dim=32, hidden_dim=48, num_layers=1, batch_size=64, stage_epochs=[1, 3],
                           stage_learning_rates=[1e-2, 1e-2], dropout_scale=0.3, precision="float32", num_threads=1)
    result = train_classifier(cfg, data)
    assert result.metrics["test"]["accuracy"] > 0.7
    assert result.metrics["validation"]["accuracy"] > 0.65
