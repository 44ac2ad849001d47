"""ULMFiTClassifier, the scikit-learn estimator: sklearn's own estimator checks, fit/predict/score on texts, Pipeline and
3-fold cross_val_score with the packaged language model, parameters -> pipeline config, the cache under fit, pickling
as bundle bytes, save_bundle -> Classifier.load / `nlp-pipeline predict`, and the errors of wrong input.

sklearn's checks generate numeric feature matrices, which a text estimator does not take (its tags say so, and
check_estimator then skips it whole). So the checks that need data run on RowsAsText, a test-only subclass that writes
each numeric row as a text ("f0p3 f1n2": feature 0 in bin +3, feature 1 in bin -2) and hands everything else to the
real estimator; the checks about numeric input validation are listed in NOT_APPLICABLE with the reason, and run as
tests that expect the failure, so one that starts passing is noticed. The data-free API checks also run on the real estimator.
"""

from __future__ import annotations

import json
import pickle
import random
import unittest

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks
from scipy.sparse import csr_matrix

from nlp_pipeline.cli import main
from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.export.bundle import Classifier
from nlp_pipeline.sklearn import ULMFiTClassifier, as_texts, label_names

# no language model to start from and an 8/12-unit LSTM: a fit takes about a second
TINY = {"tokenization.workers": 1, "numericalization.min_freq": 1, "pretrain_lm.weights": "none",
        "pretrain_lm.corpus": "none", "model.embedding_dim": 8, "model.hidden_dim": 12,
        "model.num_layers": 1, "finetune_lm.batch_size": 4, "finetune_lm.bptt_length": 8, "finetune_lm.epochs": 1,
        "classifier.batch_size": 4, "classifier.stage_epochs": [1, 2],
        "classifier.stage_learning_rates": [0.01, 0.01], "linear.c_grid": [1.0], "linear.nb": [False]}
# the packaged general-English LM (300/600x2, in the package: nothing is downloaded), fine-tuned one epoch; float32
# rather than "auto" (bfloat16 on CPUs that have it), so the scores do not depend on the machine
PACKAGED = {"tokenization.workers": 1, "numericalization.min_freq": 1, "finetune_lm.epochs": 1,
            "finetune_lm.precision": "float32", "classifier.precision": "float32",
            "finetune_lm.frozen_epochs": 0, "finetune_lm.batch_size": 4, "finetune_lm.bptt_length": 16,
            "classifier.batch_size": 8, "classifier.stage_epochs": [1, 1], "classifier.stage_learning_rates": [0.01, 0.01],
            "linear.chars": [0], "classifier.max_length": 50}
STAGES = ("corpus", "tokenization", "numericalization", "validation", "pretrain_lm", "finetune_lm", "classifier", "linear", "blend")


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """One artifact cache for the module (NLP_PIPELINE_CACHE, where cache_dir=None looks), removed with tmp_path."""
    import os

    folder = tmp_path_factory.mktemp("sklearn-cache")
    before = os.environ.get("NLP_PIPELINE_CACHE")
    os.environ["NLP_PIPELINE_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("NLP_PIPELINE_CACHE", None)
    else:
        os.environ["NLP_PIPELINE_CACHE"] = before


def topic_corpus(per_class: int = 24, seed: int = 0) -> tuple[list[str], list[str]]:
    """Short sentences about sport, food or weather (distinct subject + predicate pairs), shuffled with `seed`."""
    topics = {
        "sport": (["the team", "our striker", "the keeper", "the coach", "the fans"],
                  ["scored a late goal", "won the match", "lost the final", "trained on the pitch", "cheered in the stadium"]),
        "food": (["the chef", "my aunt", "the bakery", "the cook", "our host"],
                 ["baked fresh bread", "served a spicy soup", "roasted the vegetables", "made a sweet cake", "grilled the fish"]),
        "weather": (["the sky", "the wind", "the forecast", "the morning", "the storm"],
                    ["brought heavy rain", "turned cold and grey", "promised warm sunshine", "left snow on the roads",
                     "blew hard all night"]),
    }
    rows = []
    for topic, (subjects, predicates) in topics.items():
        pairs = [(s, p) for s in subjects for p in predicates][:per_class]
        rows += [(f"{s} {p}", topic) for s, p in pairs]
    random.Random(seed).shuffle(rows)
    return [t for t, _ in rows], [label for _, label in rows]


# --- sklearn's estimator checks ------------------------------------------------------------------------------

def rows_as_texts(X):
    """A dense numeric 2-D X as texts, one token per feature: [[0.4, -1.2]] -> ['f0p0 f1n3'] (bins of 0.5, sign
    spelled p/n); anything else unchanged, so the estimator's own input checks see it."""
    from scipy.sparse import issparse

    if issparse(X):
        return X
    array = np.asarray(X)
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        return X
    return [" ".join(f"f{j}{'n' if v < 0 else 'p'}{abs(int(np.floor(v * 2)))}" for j, v in enumerate(row)) for row in array]


class RowsAsText(ULMFiTClassifier):
    """The estimator behind an adapter for sklearn's numeric test data (see the module notes)."""

    def fit(self, X, y):
        return super().fit(rows_as_texts(X), y)

    def predict_proba(self, X):
        return super().predict_proba(rows_as_texts(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array, tags.input_tags.one_d_array, tags.input_tags.string = True, False, False
        return tags

    def __repr__(self, N_CHAR_MAX=700):  # short test ids; the real repr is checked in the data-free checks below
        return "RowsAsText(TINY)"


# Checks that do not apply to a text estimator: they test the validation of numeric feature matrices.
NOT_APPLICABLE = {
    "check_n_features_in_after_fitting": "texts have no feature count: no n_features_in_",
    "check_n_features_in": "texts have no feature count: no n_features_in_",
    "check_complex_data": "checks the message for complex numbers; a complex number is not a text (the error says so)",
    "check_dtype_object": "fits a 2-D object array of numbers; the estimator takes one text per row",
    "check_estimators_nan_inf": "NaN and inf are numeric feature values; texts have none (a None text is refused)",
    "check_estimators_empty_data_messages": "wants sklearn's '0 feature(s)' message; a text row has no features",
    "check_fit2d_predict1d": "wants sklearn's 'Reshape your data' message for a 1-D X, which is how texts come",
    "check_classifiers_train": "after its accuracy test it asks for an error when predict gets another feature "
                               "count; texts have none (its predict_proba asserts are test_fit_predict_proba_score)",
}


@parametrize_with_checks([RowsAsText(config=TINY, num_threads=1)])
def test_sklearn_estimator_checks(estimator, check):
    name = getattr(check, "func", check).__name__
    if name not in NOT_APPLICABLE:
        check(estimator)
        return
    # Expected to fail (NOT_APPLICABLE says why); a check that starts passing fails here. Not an xfail mark: pytest
    # formatting these long tracebacks has crashed CPython 3.11.7's ast.parse ("AST constructor recursion depth
    # mismatch", an INTERNALERROR that stops the whole session).
    with pytest.raises(Exception) as failed:
        check(estimator)
    assert not isinstance(failed.value, unittest.SkipTest), f"{name} was skipped, not failed: {failed.value}"


@pytest.mark.parametrize("check", [
    estimator_checks.check_estimator_cloneable, estimator_checks.check_estimator_repr,
    estimator_checks.check_no_attributes_set_in_init, estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance, estimator_checks.check_set_params,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params, estimator_checks.check_valid_tag_types,
    estimator_checks.check_estimator_tags_renamed, estimator_checks.check_mixin_order,
], ids=lambda check: check.__name__)
def test_data_free_checks_on_the_text_estimator_itself(check):
    check("ULMFiTClassifier", ULMFiTClassifier(config=TINY, max_length=40))


def test_tags_say_texts():
    from sklearn.utils import get_tags

    tags = get_tags(ULMFiTClassifier())
    assert tags.input_tags.string and not tags.input_tags.two_d_array and tags.estimator_type == "classifier"


# --- fit, predict, score, Pipeline, cross-validation -----------------------------------------------------------

@pytest.fixture(scope="module")
def fitted() -> ULMFiTClassifier:
    texts, labels = topic_corpus()
    return ULMFiTClassifier(config=PACKAGED, num_threads=1).fit(texts, labels)


def test_fit_predict_proba_score(fitted):
    """The asserts check_classifiers_train makes after the part that does not apply, here on texts."""
    texts, labels = topic_corpus(seed=1)
    assert list(fitted.classes_) == ["food", "sport", "weather"]
    probabilities = fitted.predict_proba(texts)
    assert probabilities.shape == (len(texts), 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    predicted = fitted.predict(texts)
    assert list(predicted) == list(fitted.classes_[probabilities.argmax(axis=1)])
    assert fitted.score(texts, labels) == pytest.approx(np.mean(predicted == np.array(labels)))
    assert fitted.score(texts, labels) > 0.9  # the training sentences again, reshuffled
    unseen = fitted.predict(["the goalkeeper won the cup", "a bowl of soup with fresh bread", "heavy snow and wind"])
    assert set(unseen) <= set(fitted.classes_)
    assert fitted.metrics_["validation"]["n"] > 0 and 0.0 <= fitted.metrics_["blend_weight"] <= 1.0


def lowercase(texts):
    return [text.lower() for text in texts]


def test_pipeline_and_three_fold_cross_validation():
    texts, labels = topic_corpus()
    pipe = Pipeline([("lower", FunctionTransformer(lowercase)), ("ulmfit", ULMFiTClassifier(config=PACKAGED, num_threads=1))])
    scores = cross_val_score(pipe, [text.upper() for text in texts], labels, cv=3)
    assert scores.shape == (3,)
    assert scores.min() >= 0.8, scores  # three topics: chance is 1/3 (this gave 1.0, 0.92, 1.0 on 2026-12-06)
    pipe.set_params(ulmfit__max_length=30)
    assert pipe.named_steps["ulmfit"].pipeline_config()["classifier"].max_length == 30
    assert pipe.named_steps["ulmfit"].pipeline_config()["linear"].max_length == 30  # the linear model cuts alike


def test_refitting_the_same_data_is_a_cache_hit_of_every_stage(capfd):
    texts, labels = topic_corpus(per_class=8)
    first = ULMFiTClassifier(config=TINY, num_threads=1, verbose=True).fit(texts, labels)
    assert "running" in capfd.readouterr().err
    again = clone(first).fit(texts, labels)
    err = capfd.readouterr().err
    assert [line.split()[0] for line in err.splitlines() if "cache hit" in line] == [s for s in STAGES if s != "pretrain_lm"]
    assert "running" not in err and again.keys_ == first.keys_
    changed = clone(first).set_params(max_length=33).fit(texts, labels)
    err = capfd.readouterr().err
    assert "classifier" in [line.split()[0] for line in err.splitlines() if "running" in line]
    assert changed.keys_["finetune_lm"] == first.keys_["finetune_lm"] and changed.keys_["classifier"] != first.keys_["classifier"]


def test_parameters_map_to_the_pipeline_config():
    quick = ULMFiTClassifier(preset="quick").pipeline_config()["classifier"].stage_epochs
    estimator = ULMFiTClassifier(config={"classifier.max_length": 77, "finetune_lm": {"epochs": 2, "seed": 3}},
                                 preset="quick", finetune_epochs=4, classifier_epochs=2, seed=5, num_threads=1)
    configs = estimator.pipeline_config("data.jsonl")
    assert configs["finetune_lm"].epochs == 4                       # a named parameter beats config
    assert configs["classifier"].max_length == 77                   # config beats the preset and the defaults
    assert configs["classifier"].stage_epochs == [2] * len(quick)   # an int: the same for each unfreezing stage
    assert {configs[s].seed for s in ("corpus", "validation", "finetune_lm", "classifier", "lsa", "linear")} == {5}
    assert configs["classifier"].num_threads == 1 and configs["corpus"].test_size == 0.0
    assert (configs["corpus"].source, configs["corpus"].text_field, configs["corpus"].label_field) == ("data.jsonl", "text", "label")
    assert ULMFiTClassifier().pipeline_config()["classifier"].max_length == 500  # None: the default config's
    assert ULMFiTClassifier(config={"embeddings.glove.window": 4}).pipeline_config()["embeddings"].glove.window == 4
    assert estimator.get_params()["config"] == {"classifier.max_length": 77, "finetune_lm": {"epochs": 2, "seed": 3}}


@pytest.mark.parametrize("config, message", [
    ({"corpus.source": "trec6"}, "corpus.source is set by fit()"),
    ({"classifier.no_such_field": 1}, "unknown setting classifier.no_such_field"),
    ({"max_length": 3}, "is not stage.field"),
    ({"classifier.max_length": "long"}, "classifier.max_length must be a whole number"),
])
def test_config_mistakes_are_config_errors_at_fit_not_at_construction(config, message):
    estimator = ULMFiTClassifier(config=config)  # sklearn: __init__ and set_params only store
    with pytest.raises(ConfigError, match=message):
        estimator.fit(["a text", "another one"], ["a", "b"])


def test_pickle_holds_the_bundle_and_predicts_the_same(fitted, tmp_path):
    texts, _ = topic_corpus(per_class=4, seed=2)
    data = pickle.dumps(fitted)
    assert b"torch" not in data  # weights travel as safetensors bytes, the net is rebuilt on loading
    restored = pickle.loads(data)
    np.testing.assert_array_equal(restored.predict_proba(texts), fitted.predict_proba(texts))
    folder = fitted.save_bundle(tmp_path / "model")
    loaded = Classifier.load(folder, num_threads=1)
    columns = [loaded.label_names.index(name) for name in label_names(fitted.classes_)]
    np.testing.assert_allclose(loaded.predict_proba(texts)[:, columns], fitted.predict_proba(texts), atol=1e-6)
    result = CliRunner().invoke(main, ["predict", "--model", str(folder), "--json", texts[0]])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["label"] == fitted.predict(texts[:1])[0]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="is not a bundle folder"):
        fitted.save_bundle(tmp_path / "mine")


@pytest.mark.parametrize("labels", [[0, 1, 2], [True, False, True], [" spaced", "spaced", "tab\tbed"], [2.0, 1.0, 3.0]],
                         ids=["int", "bool", "not-plain", "whole-floats"])
def test_labels_come_back_as_given(labels):
    texts, topics = topic_corpus(per_class=8)
    mapping = dict(zip(sorted(set(topics)), labels if len(set(labels)) == 3 else [labels[0], labels[1], labels[0]]))
    y = np.array([mapping[t] for t in topics])
    estimator = ULMFiTClassifier(config=TINY, num_threads=1).fit(texts, y)
    assert list(estimator.classes_) == sorted(set(y.tolist())) and estimator.classes_.dtype == y.dtype
    assert set(estimator.predict(texts).tolist()) <= set(y.tolist())
    assert estimator.score(texts, y) > 0.5


def test_label_names_in_the_corpus_file():
    assert label_names(np.array(["neg", "pos"])) == ["neg", "pos"]
    assert label_names(np.array([10, 2])) == ["10", "2"]
    assert label_names(np.array([" a", "a"])) == ["class_0", "class_1"]
    assert label_names(np.array(["a\nb", "c"])) == ["class_0", "class_1"]


def test_input_mistakes_are_clear_errors():
    estimator = ULMFiTClassifier(config=TINY, num_threads=1)
    with pytest.raises(NotFittedError):
        estimator.predict(["a text"])
    with pytest.raises(TypeError, match="wrap it in a list"):
        estimator.fit("one text", ["a"])
    with pytest.raises(ValueError, match="got a 2-D array of float64 with shape"):
        estimator.fit(np.zeros((4, 3)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="text 1 is None"):
        estimator.fit(["a", None], ["x", "y"])
    with pytest.raises(TypeError, match="sparse input is not supported"):
        estimator.fit(csr_matrix(np.eye(3)), [0, 1, 2])
    with pytest.raises(ValueError, match="got 3 texts but 2 labels"):
        estimator.fit(["a", "b", "c"], ["x", "y"])
    with pytest.raises(ValueError, match="multi-label and multi-output targets are not supported"):
        estimator.fit(["a", "b"], [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="Unknown label type"):
        estimator.fit(["a", "b", "c"], [0.5, 1.5, 2.25])
    with pytest.raises(ValueError, match="at least two classes"):
        estimator.fit(["a", "b"], ["x", "x"])
    with pytest.raises(ValueError, match="every text given to ULMFiTClassifier.fit is empty"):
        estimator.fit(["", "  "], ["x", "y"])
    assert as_texts(np.array([["a"], ["b"]]), "fit") == ["a", "b"]  # a one-column 2-D array (ColumnTransformer)
