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
from nlp_pipeline.models.architecture import ModelConfig
from nlp_pipeline.models.inference import classify_ids, load_classifier
from nlp_pipeline.stages.classifier import (
    STAGE, ClassifierConfig, _stages, classification_metrics, train_classifier,
)
from nlp_pipeline.stages.language_model import PretrainLmConfig, pretrain_language_model
from nlp_pipeline.stages.linear import LinearConfig, fit_linear_stage
from nlp_pipeline.targets import THRESHOLDS, best_threshold, carve, multi_label_metrics

from test_lm import numericalize_docs

TINY = dict(model=ModelConfig(embedding_dim=16, hidden_dim=24, num_layers=2), batch_size=16, precision="float32", num_threads=1)
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


def test_unfreezing_stages():
    cfg = ClassifierConfig(stage_epochs=[1, 1, 1, 2], stage_learning_rates=[2e-2, 1e-2, 5e-3, 1e-3])
    assert _stages(cfg, 5) == [(1, 1, 2e-2), (2, 1, 1e-2), (3, 1, 5e-3), (5, 2, 1e-3)]
    assert _stages(dataclasses.replace(cfg, gradual_unfreezing=False), 5) == [(5, 1, 2e-2), (5, 1, 1e-2), (5, 1, 5e-3), (5, 2, 1e-3)]
    assert _stages(ClassifierConfig(stage_epochs=[2, 0, 3], stage_learning_rates=[1e-2, 1e-2, 1e-3]), 4) == [(1, 2, 1e-2), (4, 3, 1e-3)]
    with pytest.raises(ConfigError, match="equal length"):
        ClassifierConfig(stage_epochs=[1, 2], stage_learning_rates=[1e-2]).validate()


def test_classifier_end_to_end_on_pang_lee(pang_lee, tmp_path):
    cfg = ClassifierConfig(**TINY, stage_epochs=[1, 2], stage_learning_rates=[1e-2, 5e-3])
    result = train_classifier(cfg, pang_lee, carve=carve(pang_lee, fraction=0.2))
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
    lm = pretrain_language_model(PretrainLmConfig(**{**TINY, "batch_size": 8}, bptt_length=10, epochs=1, weights="none"), pang_lee)
    cfg = ClassifierConfig(**{**TINY, "model": None}, stage_epochs=[1], stage_learning_rates=[1e-2])  # the LM's
    result = train_classifier(cfg, pang_lee, lm)
    assert result.metrics["initialisation"] == "language model"
    assert result.arch["hidden_dim"] == 24 and result.arch["num_classes"] == 2
    other = numericalize_docs([["x", "y"]] * 4, labels=[0, 1, 0, 1], label_names=["a", "b"])
    with pytest.raises(DataError, match="vocabulary"):
        train_classifier(cfg, other, lm)


def test_an_ensemble_averages_members_trained_with_the_next_seeds(pang_lee):
    cfg = ClassifierConfig(**TINY, stage_epochs=[1, 1], stage_learning_rates=[1e-2, 5e-3])
    single = train_classifier(cfg, pang_lee, carve=carve(pang_lee, fraction=0.2))
    pair = train_classifier(dataclasses.replace(cfg, members=2), pang_lee, carve=carve(pang_lee, fraction=0.2))
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
    assert train_classifier(cfg, data, carve=carve(data, "dev")).validation_indexes.tolist() == list(range(30, 36))
    held = train_classifier(cfg, data, carve=carve(data, "train", 0.2))  # split "train": held out of train, dev unused
    assert held.metrics["validation"]["source"] == "carved from train" and held.metrics["train_documents"] == 24
    assert set(held.validation_indexes) < set(range(30))


def test_stage_object():
    assert STAGE.name == "classifier" and STAGE.optional == ("lm", "lm_backward")
    assert STAGE.inputs == {"data": "numericalization", "lm": "finetune_lm", "lm_backward": "finetune_lm", "carve": "validation"}
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
    cfg = ClassifierConfig(model=ModelConfig(embedding_dim=32, hidden_dim=48, num_layers=1), batch_size=64, stage_epochs=[1, 3],
                           stage_learning_rates=[1e-2, 1e-2], dropout_scale=0.3, precision="float32", num_threads=1)
    result = train_classifier(cfg, data)
    assert result.metrics["test"]["accuracy"] > 0.7
    assert result.metrics["validation"]["accuracy"] > 0.65


def _as_target(data, labels, names, target_type):
    return dataclasses.replace(data, labels=labels, label_names=names, target_type=target_type)


def test_multi_label_and_regression_targets_train_predict_and_reload(pang_lee, tmp_path):
    """Mechanics on real sentences: per-label sigmoid probabilities, values back in the target's units, one
    validation carve, the primary metric in the history, and the store/inference round trip."""
    pos = np.asarray(pang_lee.labels) == 1
    film = np.array([bool({"film", "movie"} & set(pang_lee.vocab.tokens(pang_lee.doc_ids(i)))) for i in range(len(pang_lee))])
    indicators = np.stack([~pos, pos, film], 1).astype(np.int8)
    values = (np.where(pos, 10.0, 2.0) + np.random.default_rng(1).normal(0, 0.5, len(pos))).astype(np.float32)
    cfg = ClassifierConfig(**TINY, stage_epochs=[1, 2], stage_learning_rates=[1e-2, 5e-3])
    store = ArtifactStore(tmp_path)
    for target, labels, names in (("multi_label", indicators, ["neg", "pos", "film"]), ("regression", values, ["score"])):
        data = _as_target(pang_lee, labels, names, target)
        result = train_classifier(cfg, data, carve=carve(data, fraction=0.2))
        test = data.indices("test")
        width = 3 if target == "multi_label" else 1
        assert result.target_type == target and result.arch["target_type"] == target
        assert result.linear is None and "blend" not in result.metrics  # the classifier stage is the RNN alone
        assert fit_linear_stage(LinearConfig(), data, carve(data, fraction=0.2)).skipped.startswith(f"a {target} target")  # no blend
        assert result.test_probabilities.shape == (50, width) and result.arch["num_classes"] == width
        assert np.array_equal(result.test_labels, labels[test])
        assert len(result.validation_indexes) == 30  # 20 % of the 150 train documents, carved at random
        key = "val_micro_f1" if target == "multi_label" else "val_r2"
        assert all(key in row and "val_accuracy" not in row for row in result.history)
        if target == "multi_label":
            probs = result.test_probabilities
            assert probs.min() >= 0 and probs.max() <= 1 and not np.allclose(probs.sum(1), 1.0)
            assert {"micro_f1", "macro_f1", "subset_accuracy", "hamming_loss"} <= result.metrics["test"].keys()
            # the decision threshold is chosen on validation, kept in the model, and used for its scores
            threshold, valid = result.arch["threshold"], result.validation_indexes
            assert threshold in THRESHOLDS and result.metrics["validation"]["threshold"] == threshold
            assert all(row["val_threshold"] in THRESHOLDS for row in result.history)
            val_probs = classify_ids(load_classifier(result), [np.asarray(data.doc_ids(i)) for i in valid], result)
            at = {t: multi_label_metrics(labels[valid], val_probs, names, t)["micro_f1"] for t in THRESHOLDS}
            assert result.metrics["validation"]["micro_f1"] == pytest.approx(max(at.values()), abs=1e-4)
        else:
            mean, std = float(values[pang_lee.indices("train")].mean()), float(values[pang_lee.indices("train")].std())
            assert result.arch["target_mean"] == pytest.approx(mean) and result.arch["target_std"] == pytest.approx(std)
            assert abs(float(result.test_probabilities.mean()) - mean) < 2 * std  # in the target's units, not standardised
            # train and validation losses are both on the standardised target (std here ~4: raw squared errors ~16x)
            assert all(row["val_loss"] < 4 and row["train_loss"] < 4 for row in result.history), result.history
            assert {"rmse", "mae", "r2", "pearson"} <= result.metrics["test"].keys()
        store.save("classifier", target[0] * 64, result, {"stage": "classifier"})
        loaded = store.load("classifier", target[0] * 64)
        assert loaded.target_type == target
        docs = [np.asarray(data.doc_ids(i)) for i in test]
        np.testing.assert_allclose(classify_ids(load_classifier(loaded), docs, loaded), result.test_probabilities, atol=1e-5)


def test_best_threshold_by_hand():
    y = np.array([[1, 0], [0, 1]])
    assert best_threshold(y, np.array([[0.3, 0.1], [0.2, 0.28]])) == 0.25  # 0.2 adds a wrong label, 0.3 loses one
    assert best_threshold(y, np.array([[0.9, 0.1], [0.2, 0.8]])) == 0.5    # every threshold in 0.2..0.8 is perfect: nearest 0.5
    assert best_threshold(y, np.zeros((2, 2))) == 0.5                       # nothing to find: the default


def test_a_regression_ensemble_averages_its_members_values(pang_lee):
    values = np.where(np.asarray(pang_lee.labels) == 1, 4.0, 1.0).astype(np.float32)
    data = _as_target(pang_lee, values, ["stars"], "regression")
    cfg = ClassifierConfig(**TINY, stage_epochs=[1], stage_learning_rates=[1e-2], members=2)
    pair = train_classifier(cfg, data, carve=carve(data, fraction=0.2))
    model = load_classifier(pair)
    docs = [np.asarray(data.doc_ids(i)) for i in pair.test_indexes]
    each = [classify_ids(member, docs, pair) for member in model.members]
    np.testing.assert_allclose(pair.test_probabilities, (each[0] + each[1]) / 2, atol=1e-5)


def test_target_checks_are_one_line_errors(pang_lee):
    cfg = ClassifierConfig(**TINY, stage_epochs=[1], stage_learning_rates=[1e-2])
    with pytest.raises(DataError, match="do not fit 2 label names"):
        train_classifier(cfg, _as_target(pang_lee, np.zeros((len(pang_lee), 3), np.int8), ["a", "b"], "multi_label"))
    with pytest.raises(DataError, match="one float target"):
        train_classifier(cfg, _as_target(pang_lee, np.asarray(pang_lee.labels), ["y"], "regression"))


@pytest.mark.skipif(not (TREC / "train.jsonl").is_file(), reason="TREC-6 data not present")
def test_multi_label_and_regression_learn_real_trec6_questions():
    """Each question carries two real labels, its coarse and its fine class (56 names); a regression target
    marks the NUM questions (15 for NUM, 5 otherwise). A tiny model from scratch, a few seconds each."""

    def read(name):
        return [json.loads(line) for line in (TREC / name).open(encoding="utf-8")]

    train, test = read("train.jsonl"), read("test.jsonl")
    rows = train + test
    names = sorted({row["label"] for row in train} | {row["label_fine"] for row in train})
    indicators = np.zeros((len(rows), len(names)), np.int8)
    for i, row in enumerate(rows):
        indicators[i, names.index(row["label"])] = 1
        if row["label_fine"] in names:
            indicators[i, names.index(row["label_fine"])] = 1
    data = numericalize_docs([row["text"].lower().split() for row in rows], min_freq=2,
                             splits=["train"] * len(train) + ["test"] * len(test), labels=[0] * len(rows), label_names=["x"])
    cfg = ClassifierConfig(model=ModelConfig(embedding_dim=32, hidden_dim=48, num_layers=1), batch_size=64, stage_epochs=[1, 3],
                           stage_learning_rates=[1e-2, 1e-2], dropout_scale=0.3, precision="float32", num_threads=1)
    multi = train_classifier(cfg, _as_target(data, indicators, names, "multi_label"))
    # the trivial answer: every test question gets train's most frequent coarse and fine labels (0.16; the model 0.59)
    test = data.indices("test")
    constant = np.tile((indicators[data.indices("train")].mean(0) >= np.sort(indicators[data.indices("train")].mean(0))[-2]), (len(test), 1))
    trivial = multi_label_metrics(indicators[test], constant.astype(float), names)["micro_f1"]
    assert multi.metrics["test"]["micro_f1"] > trivial + 0.3, (trivial, multi.metrics["test"])
    values = np.array([15.0 if row["label"] == "NUM" else 5.0 for row in rows], np.float32)
    regression = train_classifier(cfg, _as_target(data, values, ["num_score"], "regression"))
    assert regression.metrics["test"]["r2"] > 0.5, regression.metrics["test"]  # the mean predictor scores 0


def test_both_directions_train_a_forward_and_a_backward_member_from_their_own_lms(pang_lee):
    lm_cfg = PretrainLmConfig(**{**TINY, "batch_size": 8}, bptt_length=10, epochs=1, weights="none")
    forward_lm = pretrain_language_model(lm_cfg, pang_lee)
    backward_lm = pretrain_language_model(dataclasses.replace(lm_cfg, backward=True), pang_lee)
    assert backward_lm.arch["backward"] is True and "backward" not in forward_lm.arch
    cfg = ClassifierConfig(**{**TINY, "model": None}, stage_epochs=[1], stage_learning_rates=[1e-2])
    forward = train_classifier(cfg, pang_lee, forward_lm, carve=carve(pang_lee, fraction=0.2))
    both = train_classifier(dataclasses.replace(cfg, direction="both"), pang_lee, forward_lm, backward_lm,
                            carve=carve(pang_lee, fraction=0.2))
    assert both.arch["backward_members"] == [False, True]
    assert [row["direction"] for row in both.metrics["members"]] == ["forward", "backward"]
    assert set(both.metrics["directions"]) == {"forward", "backward", "both"}
    # the forward member is the forward classifier; the backward one starts from the backward LM's encoder
    first = {k[len("members.0."):]: v for k, v in both.state_dict.items() if k.startswith("members.0.")}
    assert all(np.allclose(first[k], forward.state_dict[k], atol=1e-6) for k in forward.state_dict)
    assert both.metrics["directions"]["forward"] == forward.metrics["validation"]["accuracy"]
    model = load_classifier(both)
    docs = [np.asarray(pang_lee.doc_ids(i)) for i in both.test_indexes]
    each = [classify_ids(member, docs, both) for member in model.members]
    np.testing.assert_allclose(both.test_probabilities, (each[0] + each[1]) / 2, atol=1e-6)
    # a backward classifier from a forward LM (or the other way round) is refused
    with pytest.raises(DataError, match="backward classifier was given a forward language model"):
        train_classifier(dataclasses.replace(cfg, direction="backward"), pang_lee, None, forward_lm)
    with pytest.raises(ConfigError, match="direction"):
        ClassifierConfig(direction="sideways").validate()


def test_direction_is_part_of_the_key():
    cfg = ClassifierConfig()
    forward = STAGE.key(cfg, {"data": "d", "lm": "l"})
    assert STAGE.key(dataclasses.replace(cfg, direction="backward"), {"data": "d", "lm_backward": "l"}) != forward


def test_a_small_labelled_set_trains_in_smaller_batches(pang_lee):
    from nlp_pipeline.stages.classifier import train_batch_size

    cfg = ClassifierConfig()
    assert [train_batch_size(cfg, n) for n in (10, 90, 900, 1024, 5000)] == [8, 8, 56, 64, 64]
    assert train_batch_size(dataclasses.replace(cfg, min_batches_per_epoch=0), 90) == 64
    assert train_batch_size(cfg, 10, processes=8) == 16  # two documents for each process
    with pytest.raises(ConfigError, match="min_batches_per_epoch"):
        ClassifierConfig(min_batches_per_epoch=-1).validate()
    small = ClassifierConfig(**{**TINY, "batch_size": 64}, stage_epochs=[1], stage_learning_rates=[1e-2])
    result = train_classifier(small, pang_lee, carve=carve(pang_lee, fraction=0.2))  # 120 train documents: 8 per batch, 15 steps instead of 2
    assert result.metrics["batch_size"] == 8 and result.metrics["train_documents"] == 120


def test_weight_averaging_is_the_mean_of_the_last_stage_after_warm_up(pang_lee, monkeypatch):
    import torch

    from nlp_pipeline.models import training

    seen = []  # the model's state each time validation is scored: every epoch, then the averaged model
    score_validation = training.predict_classifier_sharded

    def recording(model, *args, **kwargs):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return score_validation(model, *args, **kwargs)

    monkeypatch.setattr(training, "predict_classifier_sharded", recording)
    cfg = ClassifierConfig(**TINY, stage_epochs=[1, 4], stage_learning_rates=[1e-2, 5e-3], patience=0,
                           warmup_fraction=0.25, average_weights=True)
    result = train_classifier(cfg, pang_lee, carve=carve(pang_lee, fraction=0.2))
    rows = result.history
    assert [r["epoch"] for r in rows] == [1, 1, 2, 3, 4, "average"]
    assert rows[-1]["averaged_epochs"] == [2, 4] and rows[-1]["stage"] == 2  # ceil(0.25 * 4) = 1 warm-up epoch left out
    epochs, averaged = seen[1:5], seen[5]  # the last stage's four epochs, then the average
    parameters = {name for name, _ in load_classifier(result).named_parameters()}
    for name in parameters:
        np.testing.assert_allclose(averaged[name], torch.stack([e[name] for e in epochs[1:]]).mean(0), atol=1e-6)
    norms = [k for k in averaged if k.endswith("running_mean")]
    # BatchNorm statistics are recomputed for the averaged weights, not averaged
    assert norms and all(not torch.allclose(averaged[k], torch.stack([e[k] for e in epochs[1:]]).mean(0)) for k in norms)
    # the kept state is the best candidate by the usual rule (accuracy, then lower loss): an epoch or the average
    best = max(range(len(rows)), key=lambda i: (rows[i]["val_accuracy"], -rows[i]["val_loss"]))
    assert result.metrics["selected"]["epoch"] == rows[best]["epoch"]
    kept = seen[best]
    assert all(np.allclose(result.state_dict[k], kept[k].numpy(), atol=1e-6) for k in result.state_dict)
    # off by default and then out of the key (cached classifiers stay valid); on, it is part of the key
    assert ClassifierConfig().average_weights is False
    assert STAGE.key(ClassifierConfig(), {}) != STAGE.key(ClassifierConfig(average_weights=True), {})
    assert "average_weights" not in STAGE.key_payload(ClassifierConfig(), {})["config"]


def test_label_smoothing_trains_on_smoothed_targets_and_validates_on_the_plain_loss(pang_lee, monkeypatch):
    import torch
    import torch.nn.functional as F

    from nlp_pipeline.models import heads

    # the loss by hand: (1 - e) x -log p(label) + e x mean over classes of -log p(class)
    logits, y = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.3, -0.2]]), torch.tensor([0, 2])
    net = heads.ClassifierNet.__new__(heads.ClassifierNet)
    net.target_type = "class"
    logp = F.log_softmax(logits, 1)
    by_hand = (0.9 * -logp[torch.arange(2), y] + 0.1 * -logp.mean(1)).mean()
    assert torch.allclose(net.loss(logits, y, smoothing=0.1), by_hand)
    assert torch.allclose(net.loss(logits, y), F.cross_entropy(logits, y))
    net.target_type = "multi_label"  # label sets (and numbers) keep their plain loss
    indicators = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(net.loss(logits, indicators, smoothing=0.1),
                          F.binary_cross_entropy_with_logits(logits, indicators))

    # end to end: every training step's loss is smoothed, validation's is not
    smoothings = []
    original = heads.ClassifierNet.loss

    def spy(self, logits, targets, reduction="mean", smoothing=0.0):
        smoothings.append(smoothing)
        return original(self, logits, targets, reduction, smoothing)

    monkeypatch.setattr(heads.ClassifierNet, "loss", spy)
    cfg = ClassifierConfig(**TINY, stage_epochs=[1, 1], stage_learning_rates=[1e-2, 5e-3], label_smoothing=0.2)
    result = train_classifier(cfg, pang_lee, carve=carve(pang_lee, fraction=0.2))
    steps = len(smoothings)
    assert steps and set(smoothings) == {0.2}
    assert all(row["label_smoothing"] == 0.2 for row in result.history)  # its train_loss is the smoothed one
    plain = train_classifier(dataclasses.replace(cfg, label_smoothing=0.0), pang_lee, carve=carve(pang_lee, fraction=0.2))
    assert len(smoothings) == 2 * steps and set(smoothings[steps:]) == {0.0}
    assert not any("label_smoothing" in row for row in plain.history)
    # the same validation loss function for both: the history's val_loss is the plain cross-entropy of its probabilities
    for r in (result, plain):
        probs = r.validation_probabilities
        labels = np.asarray(pang_lee.labels)[r.validation_indexes]
        assert r.metrics["selected"]["val_loss"] == pytest.approx(-np.log(probs[np.arange(len(labels)), labels]).mean(), abs=2e-4)

    # checks, and the key: off is left out (cached classifiers stay valid), on is part of it
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="label_smoothing must be in"):
            ClassifierConfig(label_smoothing=bad).validate()
    # other target types train on their plain loss whatever the setting (the loss ignores smoothing for them)
    regression = _as_target(pang_lee, np.asarray(pang_lee.labels, np.float32), ["y"], "regression")
    smoothed_regression = train_classifier(cfg, regression, carve=carve(regression, fraction=0.2))
    plain_regression = train_classifier(dataclasses.replace(cfg, label_smoothing=0.0), regression,
                                        carve=carve(regression, fraction=0.2))
    assert all(np.array_equal(smoothed_regression.state_dict[k], plain_regression.state_dict[k])
               for k in plain_regression.state_dict)
    assert ClassifierConfig().label_smoothing == 0.2  # the default (decision 0026)
    assert "label_smoothing" not in STAGE.key_payload(ClassifierConfig(label_smoothing=0.0), {})["config"]
    assert STAGE.key(ClassifierConfig(label_smoothing=0.0), {}) != STAGE.key(ClassifierConfig(), {})
