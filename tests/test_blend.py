"""linear and blend stages: the same blend as before they were stages (numbers written out from a run of the
classifier stage that still held the blend), their own cache entries (a linear.* or blend.* change never
retrains the RNN), fields that cannot apply and moved field names as one-line errors, and compose()."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from nlp_pipeline import pipeline
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.artifacts import Carve, ClassifierResult
from nlp_pipeline.models.blend import WEIGHTS, blend, choose_weight, compose
from nlp_pipeline.models.linear import document_ids, fit_linear, linear_proba
from nlp_pipeline.stages.blend import BlendConfig, blend_classifier
from nlp_pipeline.stages.classifier import ClassifierConfig, train_classifier
from nlp_pipeline.stages.linear import LinearConfig, fit_linear_stage
from nlp_pipeline.targets import carve

from test_classifier import TINY, pang_lee  # noqa: F401 (a fixture)
from test_lm import numericalize_docs

# Written out from the previous commit (3e3a4ad, the blend inside the classifier stage): train_classifier(
# ClassifierConfig(**TINY, stage_epochs=[1, 2], stage_learning_rates=[1e-2, 5e-3], validation_fraction=0.2), pang_lee)
# -> metrics["blend"] and test_probabilities[:, 1] rounded to 5 decimals; with linear_refit = false, the second list.
# validation_fraction = 0.2 (seed 0) is now the carve targets.carve(pang_lee, fraction=0.2), which all three read.
BEFORE_CV = {0.25: 0.5333, 1.0: 0.5333, 4.0: 0.5333, 16.0: 0.5417}
BEFORE_WEIGHTS = {"0.0": [0.4667, 0.6998], "0.1": [0.5, 0.7094], "0.2": [0.3333, 0.7224], "0.3": [0.3667, 0.7388],
                  "0.4": [0.3667, 0.7591], "0.5": [0.3667, 0.7838], "0.6": [0.3667, 0.8134], "0.7": [0.3667, 0.8495],
                  "0.8": [0.3667, 0.894], "0.9": [0.3667, 0.9522], "1.0": [0.3667, 1.0436]}
BEFORE_P1 = [0.51674, 0.52219, 0.49461, 0.53087, 0.49516, 0.51067, 0.55365, 0.50259, 0.50786, 0.48536, 0.51707,
             0.53071, 0.5201, 0.49655, 0.5281, 0.52098, 0.55341, 0.56462, 0.5394, 0.55142, 0.49837, 0.54053, 0.54116,
             0.52286, 0.5534, 0.54334, 0.51267, 0.52761, 0.53823, 0.54997, 0.52777, 0.52945, 0.54803, 0.52268, 0.51114,
             0.53545, 0.55934, 0.49425, 0.51504, 0.49535, 0.5237, 0.51475, 0.54977, 0.53222, 0.50127, 0.48791, 0.51836,
             0.54557, 0.55067, 0.50343]
BEFORE_P1_NO_REFIT = [0.5188, 0.4901, 0.48663, 0.53401, 0.49127, 0.50944, 0.54179, 0.49316, 0.49745, 0.4861, 0.51784,
                      0.54875, 0.52419, 0.49979, 0.54374, 0.52074, 0.56335, 0.56338, 0.54053, 0.51402, 0.52369, 0.52448,
                      0.54543, 0.52647, 0.51766, 0.55055, 0.50586, 0.52973, 0.53794, 0.53398, 0.50883, 0.55685, 0.54384,
                      0.54288, 0.54155, 0.5017, 0.52381, 0.50588, 0.51722, 0.50812, 0.51329, 0.51702, 0.5393, 0.54916,
                      0.50651, 0.48791, 0.49295, 0.54797, 0.54828, 0.49209]


# --- blend and choose_weight ----------------------------------------------------------------------------------

NEURAL = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
LINEAR = np.array([[0.5, 0.5], [0.7, 0.3], [0.0, 1.0]], np.float32)


def test_blend_endpoints_and_weighted_mean():
    np.testing.assert_array_equal(blend(NEURAL, LINEAR, 0.0), NEURAL)
    np.testing.assert_allclose(blend(NEURAL, LINEAR, 1.0), LINEAR, atol=1e-7)
    mixed = blend(NEURAL, LINEAR, 0.3)
    np.testing.assert_allclose(mixed, [[0.78, 0.22], [0.35, 0.65], [0.42, 0.58]], atol=1e-6)
    assert mixed.dtype == np.float32
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-6)


def test_choose_weight_prefers_the_right_model():
    y = np.array([0, 1, 1, 0, 2])
    right = np.eye(3, dtype=np.float32)[y] * 0.97 + 0.01
    wrong = np.eye(3, dtype=np.float32)[(y + 1) % 3] * 0.97 + 0.01
    weight, scores = choose_weight(right, wrong, y, "accuracy")
    assert weight == 0.0
    assert scores[0.0][0] == 1.0 and scores[1.0][0] == 0.0
    weight, scores = choose_weight(wrong, right, y, "accuracy")
    assert weight == 1.0
    assert scores[1.0][0] == 1.0 and scores[0.0][0] == 0.0
    assert list(scores) == list(WEIGHTS) and len(scores) == 11
    assert WEIGHTS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def test_choose_weight_scores_are_accuracy_and_log_loss():
    y = np.array([0, 1, 2])
    neural = np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.25, 0.25, 0.5]], np.float32)
    uniform = np.full((3, 3), 1 / 3, np.float32)
    weight, scores = choose_weight(neural, uniform, y, "accuracy")
    # weight 0: right on rows 0 and 2, loss -(log .5 + log .25 + log .5) / 3
    assert scores[0.0] == [0.6667, round(float(-(2 * np.log(0.5) + np.log(0.25)) / 3), 4)]
    # weight 1: uniform -> argmax is class 0 everywhere (accuracy 1/3), loss log 3
    assert scores[1.0] == [0.3333, round(float(np.log(3)), 4)]
    assert weight < 1.0 and scores[weight][0] == 0.6667


def test_choose_weight_by_log_loss_can_disagree_with_accuracy():
    # two rows of class 0: the overconfident RNN is right on one and sure of the wrong class on the other; the
    # hesitant linear model leans right on both. The scores are the same either way; log-loss picks its minimum.
    y = np.array([0, 0])
    rnn = np.array([[0.99, 0.01], [0.01, 0.99]], np.float32)
    linear = np.array([[0.6, 0.4], [0.6, 0.4]], np.float32)
    by_accuracy, scores = choose_weight(rnn, linear, y, "accuracy")
    by_loss, same = choose_weight(rnn, linear, y, by="log_loss")
    assert scores == same
    losses = {w: s[1] for w, s in scores.items()}
    assert by_loss == min(losses, key=lambda w: (losses[w], w))
    best_accuracy = max(s[0] for s in scores.values())
    assert scores[by_accuracy][0] == best_accuracy and scores[by_loss][0] <= best_accuracy
    assert losses[by_loss] <= losses[by_accuracy]
    # where they part: the RNN is slightly wrong on two rows of class 0 and sure and right on the third; the linear
    # model is barely right on all three. Only w >= 0.8 puts all three right, but w = 0 has the lowest log-loss.
    rnn = np.array([[0.45, 0.55], [0.45, 0.55], [0.99, 0.01]], np.float32)
    linear = np.full((3, 2), [0.52, 0.48], np.float32)
    y = np.array([0, 0, 0])
    assert choose_weight(rnn, linear, y, "accuracy")[0] == 0.8
    assert choose_weight(rnn, linear, y, by="log_loss")[0] == 0.0
    with pytest.raises(ValueError, match="by must be one of"):
        choose_weight(rnn, linear, y, by="f1")


def test_choose_weight_one_se_prefers_the_linear_model_unless_the_rnn_is_clearly_better():
    y = np.array([0, 1] * 10)
    truth = np.eye(2, dtype=np.float32)[y]
    wrong = np.arange(20)[:, None]
    linear = np.where((wrong >= 16) & (wrong <= 18), 1 - truth, truth) * 0.8 + 0.1  # wrong on 16-18 (unsure: 0.9)
    rnn = np.where(wrong >= 18, 1 - truth, truth) * 0.98 + 0.01                     # wrong on 18-19 (sure)
    by_accuracy, scores = choose_weight(rnn, linear, y, "accuracy")
    assert scores[0.0][0] == 0.9 and scores[1.0][0] == 0.85 and by_accuracy < 1.0
    # one more right of 20 (two won, one lost) is well within a standard error: the linear model alone
    assert choose_weight(rnn, linear, y, by="one_se")[0] == 1.0
    # an RNN right everywhere against a linear model wrong on half: clearly better, so the largest weight that
    # keeps every document right (0.5), not the linear model
    linear = np.where(np.arange(20)[:, None] < 10, truth, 1 - truth) * 0.8 + 0.1
    rnn = truth * 0.98 + 0.01
    weight, scores = choose_weight(rnn, linear, y, by="one_se")
    assert weight == 0.5 and scores[0.5][0] == 1.0 and scores[0.6][0] < 1.0 and scores[1.0][0] == 0.5


def test_blend_choose_is_checked_when_configs_load():
    from nlp_pipeline.pipeline import load_config

    assert load_config(sets=["blend.choose=log_loss"])["blend"].choose == "log_loss"
    with pytest.raises(ConfigError, match="blend.choose must be one of"):
        load_config(sets=["blend.choose=loss"])


def _rnn_of(data, fit: np.ndarray, valid: np.ndarray, val_probs: np.ndarray) -> ClassifierResult:
    """A classifier result by hand: the carve (fit, valid), the RNN's validation probabilities, no test split."""
    return ClassifierResult(arch={}, state_dict={}, vocab=data.vocab, label_names=list(data.label_names), max_length=500,
                            metrics={"validation": {"source": "carved from train"}}, train_indexes=fit,
                            validation_indexes=valid, validation_probabilities=val_probs,
                            test_probabilities=np.zeros((0, 2), np.float32))


def test_the_blend_refits_its_linear_model_on_train_and_validation():
    from nlp_pipeline.models.batching import pad_id

    rng = np.random.default_rng(0)
    filler = [f"w{i}" for i in range(30)]
    cue = {0: ["awful", "dull", "bad"], 1: ["great", "fine", "good"]}
    y = rng.integers(0, 2, 150)
    docs = [list(rng.choice(filler, 6)) + [str(rng.choice(cue[int(c)]))] for c in y]
    data = numericalize_docs(docs, labels=y.tolist(), label_names=["neg", "pos"])
    labels, pad, itos = np.asarray(data.labels), pad_id(data.vocab), list(data.vocab.itos)
    fit, valid = np.arange(110), np.arange(110, 150)
    held = Carve(train_indexes=fit, validation_indexes=valid, source="carved from train", documents=len(data))
    unsure = _rnn_of(data, fit, valid, np.full((len(valid), 2), 0.5, np.float32))  # an RNN that knows nothing
    linear = fit_linear_stage(LinearConfig(c_grid=[1.0, 4.0], chars=[0, 4]), data, held)
    refit, kept = (blend_classifier(BlendConfig(refit=flag), unsure, data, linear) for flag in (True, False))
    report, kept_report = refit.metrics["blend"], kept.metrics["blend"]
    assert report["weight"] == kept_report["weight"] > 0 and report["refit_documents"] == 150 and kept_report["refit_documents"] == 0
    refit_model, kept_model = compose(unsure, refit).linear, compose(unsure, kept).linear
    nb = bool(len(kept_model.nb_ratio))
    assert (refit_model.C, refit_model.char_ngrams, bool(len(refit_model.nb_ratio))) == \
        (kept_model.C, kept_model.char_ngrams, nb) == (report["C"], report["char_ngrams"], report["nb"])
    # the refit is the chosen settings fitted on all 150 documents; the kept model is the linear stage's (110 only)
    again = fit_linear(document_ids(data, np.arange(150), 500), labels, 2, 2, len(itos), [kept_model.C], 0, pad_id=pad,
                       char_ngrams=kept_model.char_ngrams, itos=itos, nb=nb)
    np.testing.assert_array_equal(refit_model.nb_ratio, again.nb_ratio)
    np.testing.assert_array_equal(refit_model.coef, again.coef)
    np.testing.assert_array_equal(kept_model.coef, linear.arrays["coef"])
    assert refit_model.coef.shape != kept_model.coef.shape or not np.array_equal(refit_model.coef, kept_model.coef)
    # validation scores are the train-only fit's in both cases (the refit has seen those documents)
    assert refit.metrics["validation"] == kept.metrics["validation"]
    expected = blend(unsure.validation_probabilities, linear.validation_probabilities, kept.weight)
    assert refit.metrics["validation"]["accuracy"] == round(float((expected.argmax(1) == labels[valid]).mean()), 4)
    # weight 0 (an RNN that is always right): nothing to refit
    sure = _rnn_of(data, fit, valid, np.eye(2, dtype=np.float32)[labels[valid]])
    alone = blend_classifier(BlendConfig(choose="accuracy"), sure, data,
                             fit_linear_stage(LinearConfig(c_grid=[1.0, 4.0], chars=[0, 4]), data, held))
    assert alone.weight == 0.0 and alone.metrics["blend"]["refit_documents"] == 0


def test_linear_settings_are_checked_in_one_line():
    with pytest.raises(ConfigError, match=r"^linear.nb must list true and/or false, e.g. \[false, true\]; got \[\]$"):
        LinearConfig(nb=[]).validate()
    with pytest.raises(ConfigError, match=r"^linear.chars must list lengths"):
        LinearConfig(chars=[2]).validate()


@pytest.fixture(scope="module")
def fifth(pang_lee):  # noqa: F811
    return carve(pang_lee, fraction=0.2)


@pytest.fixture(scope="module")
def rnn(pang_lee, fifth):  # noqa: F811
    # label_smoothing 0: the numbers below are those of the classifier stage before the blend stage existed
    cfg = ClassifierConfig(**TINY, stage_epochs=[1, 2], stage_learning_rates=[1e-2, 5e-3], label_smoothing=0.0)
    return train_classifier(cfg, pang_lee, carve=fifth)


@pytest.fixture(scope="module")
def linear(pang_lee, fifth):  # noqa: F811
    return fit_linear_stage(LinearConfig(), pang_lee, fifth)


def test_the_stages_blend_as_the_classifier_stage_did(rnn, linear, pang_lee, fifth):  # noqa: F811
    result = blend_classifier(BlendConfig(), rnn, pang_lee, linear, fifth)
    report = result.metrics["blend"]
    assert (result.weight, report["C"], report["char_ngrams"], report["nb"], report["features"]) == (0.1, 16.0, 0, True, 1831)
    assert report["weights_tried"] == BEFORE_WEIGHTS and report["cv_accuracy"] == BEFORE_CV
    assert report["cv_accuracy_by_chars"]["6"] == {0.25: 0.5333, 1.0: 0.5, 4.0: 0.525, 16.0: 0.525}
    assert report["cv_accuracy_by_nb"]["false"] == {0.25: 0.525, 1.0: 0.5333, 4.0: 0.5333, 16.0: 0.5083}
    assert report["validation_accuracy"] == {"rnn": 0.4667, "linear": 0.3667, "blend": 0.5}
    assert report["test_accuracy"] == {"rnn": 0.58, "linear": 0.56, "blend": 0.62} and report["refit_documents"] == 150
    assert result.metrics["validation"]["accuracy"] == 0.5 and result.metrics["test"]["accuracy"] == 0.62
    np.testing.assert_allclose(result.test_probabilities[:, 1], BEFORE_P1, atol=2e-5)
    kept = blend_classifier(BlendConfig(refit=False), rnn, pang_lee, linear)
    assert kept.weight == 0.1 and kept.metrics["blend"]["test_accuracy"] == {"rnn": 0.58, "linear": 0.54, "blend": 0.66}
    np.testing.assert_allclose(kept.test_probabilities[:, 1], BEFORE_P1_NO_REFIT, atol=2e-5)
    # without refit the blended model is the linear stage's own: (1 - w) * RNN + w * its probabilities
    test_docs = document_ids(pang_lee, rnn.test_indexes, rnn.max_length)
    composed = compose(rnn, kept)
    np.testing.assert_array_equal(composed.test_probabilities, kept.test_probabilities)
    np.testing.assert_allclose(kept.test_probabilities,
                               blend(rnn.test_probabilities, linear_proba(composed.linear, test_docs), 0.1), atol=1e-6)
    np.testing.assert_array_equal(composed.linear.coef, linear.arrays["coef"])


def test_the_linear_result_is_plain_data_fitted_on_the_classifiers_carve(rnn, linear, pang_lee):  # noqa: F811
    assert np.array_equal(linear.train_indexes, rnn.train_indexes)
    assert np.array_equal(linear.validation_indexes, rnn.validation_indexes)
    assert not set(linear.train_indexes) & set(rnn.validation_indexes) and not set(linear.train_indexes) & set(rnn.test_indexes)
    assert linear.validation_probabilities.shape == (30, 2)
    assert set(linear.arrays) == {"idf", "coef", "intercept", "keys_2", "nb_ratio"}
    assert all(isinstance(v, np.ndarray) for v in linear.arrays.values())
    assert {k: linear.settings[k] for k in ("C", "char_ngrams", "nb", "seed", "max_length")} == \
        {"C": 16.0, "char_ngrams": 0, "nb": True, "seed": 0, "max_length": 500}


def test_no_linear_model_passes_the_rnn_through(rnn, pang_lee):  # noqa: F811
    alone = blend_classifier(BlendConfig(linear=False), rnn, pang_lee, None)
    assert alone.weight == 0.0 and alone.linear_settings is None and "blend" not in alone.metrics
    composed = compose(rnn, alone)
    assert composed.linear is None and composed.metrics["test"] == rnn.metrics["test"]
    np.testing.assert_array_equal(composed.test_probabilities, rnn.test_probabilities)


def test_a_linear_result_of_another_carve_is_refused(rnn, linear, pang_lee, fifth):  # noqa: F811
    other = dataclasses.replace(linear, validation_indexes=linear.validation_indexes[:-1])
    with pytest.raises(DataError, match="another train/validation carve") as caught:
        blend_classifier(BlendConfig(), rnn, pang_lee, other)
    assert "\n" not in str(caught.value)
    # given the validation stage's carve, a classifier or a linear model of another carve is refused, in one line
    tenth = carve(pang_lee)
    rnn_of_tenth = dataclasses.replace(rnn, train_indexes=tenth.train_indexes, validation_indexes=tenth.validation_indexes)
    for part, classifier, of_fifth in (("classifier", rnn, linear), ("linear model", rnn_of_tenth, linear)):
        with pytest.raises(DataError) as caught:
            blend_classifier(BlendConfig(), classifier, pang_lee, of_fifth, tenth)
        assert str(caught.value) == (f"the {part} was fitted on another train/validation carve than the validation "
                                     f"stage's; run them from the same pipeline (one [validation] table)")
    assert blend_classifier(BlendConfig(), rnn, pang_lee, linear, fifth).weight == 0.1


# --- configuration --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("old, new", sorted(pipeline.MOVED.items()))
def test_an_old_field_name_is_a_one_line_error_naming_the_new_one(old, new):
    value = {"classifier.blend_linear": "true", "classifier.linear_refit": "true", "classifier.linear_ngrams": "2"}.get(old, "[1.0]")
    with pytest.raises(ConfigError) as caught:
        pipeline.load_config(sets=[f"{old}={value}"])
    assert str(caught.value) == f"{old} is now {new}; rename it in your config file or --set"


@pytest.mark.parametrize("field", ["linear.ngrams=3", "linear.nb=[false]", "blend.refit=false"])
def test_a_field_that_cannot_apply_is_a_one_line_error(field):
    with pytest.raises(ConfigError) as caught:
        pipeline.load_config(sets=["blend.linear=false", field])
    name = field.split("=")[0]
    assert str(caught.value) == (f"{name} cannot apply: blend.linear = false blends no linear model; remove {name} "
                                 f"or set blend.linear = true")


def test_without_the_linear_model_refit_is_in_no_key():
    ids = {i.id: i for i in pipeline.instances(pipeline.load_config(sets=["blend.linear=false"]))}
    assert "linear" not in ids and "linear" not in ids["blend"].inputs
    stage, cfg = pipeline.STAGES["blend"], ids["blend"].config
    upstream = {"classifier": "0" * 64, "data": "1" * 64}
    assert stage.key(cfg, upstream) == stage.key(dataclasses.replace(cfg, refit=False), upstream)
    on = BlendConfig()
    assert stage.key(on, upstream) != stage.key(dataclasses.replace(on, refit=False), upstream)


# --- caching through the pipeline ------------------------------------------------------------------------------

POSITIVE = ["a wonderful film", "great acting and a great story", "i loved it", "superb and moving", "a joy to watch",
            "brilliant fun", "wonderful and warm", "great fun for all", "a great joy", "loved the story"]
NEGATIVE = ["a dull film", "terrible acting and a boring story", "i hated it", "awful and tedious", "a pain to watch",
            "boring mess", "dull and cold", "terrible waste of time", "a dull pain", "hated the story"]
FAST = ["tokenization.workers=1", "numericalization.min_freq=1", "embeddings.methods=[]", "pretrain_lm.weights=none",
        "pretrain_lm.corpus=none", "model.embedding_dim=8", "model.hidden_dim=12", "model.num_layers=1",
        "finetune_lm.epochs=1", "finetune_lm.batch_size=4", "finetune_lm.bptt_length=8", "finetune_lm.num_threads=1",
        "classifier.stage_epochs=[1]", "classifier.stage_learning_rates=[0.01]", "classifier.batch_size=4",
        "classifier.head_hidden_dim=6", "classifier.num_threads=1", "classifier.precision=float32",
        "validation.fraction=0.3", "linear.c_grid=[1.0]", "linear.chars=[0]"]


def test_a_linear_or_blend_setting_reruns_only_linear_and_blend(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[::2] + rows[1::2][:8]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[1::2][8:] + rows[-3:]))
    store = ArtifactStore(tmp_path / "cache")

    def run(*sets):
        configs = pipeline.load_config(sets=[f"corpus.source={folder}", *FAST, *sets])
        result = pipeline.run(configs, store, until="blend", keep=["classifier", "blend"], coordinator=None)
        return {r.id: r.status for r in result.reports}, result

    first, result = run()
    assert first["classifier"] == first["linear"] == first["blend"] == "ran"
    assert "blend" in result.artifacts["blend"].metrics
    changed, _ = run("linear.ngrams=1")
    assert changed["finetune_lm"] == changed["classifier"] == "hit"  # the RNN is not retrained
    assert changed["linear"] == changed["blend"] == "ran"
    refit, _ = run("linear.ngrams=1", "blend.refit=false")
    assert refit["classifier"] == refit["linear"] == "hit" and refit["blend"] == "ran"
    again, _ = run("linear.ngrams=1", "blend.refit=false")
    assert set(again.values()) == {"hit"}
    # a classifier setting retrains the RNN and re-blends, but linear reads only the data and the carve
    retrained, _ = run("linear.ngrams=1", "blend.refit=false", "classifier.head_hidden_dim=5")
    assert retrained["validation"] == retrained["linear"] == "hit" and retrained["classifier"] == retrained["blend"] == "ran"
    # a [validation] setting moves every stage that chooses on the carve
    moved, _ = run("linear.ngrams=1", "blend.refit=false", "validation.seed=1")
    assert moved["finetune_lm"] == "hit" and all(moved[s] == "ran" for s in ("validation", "classifier", "linear", "blend"))
