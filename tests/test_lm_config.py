"""[model] and the LM settings that cannot apply: which instance builds the encoder from [model], the
one-line errors for settings that cannot apply or moved, and that such settings are in no key."""

from __future__ import annotations

import dataclasses

import pytest

from nlp_pipeline import pipeline
from nlp_pipeline.core import config as config_layer
from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.models.architecture import ModelConfig
from nlp_pipeline.stages.language_model import FINETUNE_STAGE, PRETRAIN_STAGE, FinetuneLmConfig, build_finetune_model

from test_lm import numericalize_docs

NO_VECTORS = ["embeddings.methods=[]"]
NO_PRETRAINING = ["pretrain_lm.weights=none", "pretrain_lm.corpus=none", *NO_VECTORS]


def _instances(sets: list[str]) -> dict:
    return {inst.id: inst for inst in pipeline.instances(pipeline.load_config(sets=sets))}


def test_model_reaches_the_pretrain_lm_that_trains_and_no_other_instance():
    ids = _instances(["pretrain_lm.weights=none", "model.hidden_dim=100", "model.rnn_type=gru", *NO_VECTORS])
    assert ids["pretrain_lm"].config.model == ModelConfig(rnn_type="gru", hidden_dim=100)
    assert ids["finetune_lm"].config.model is None and ids["classifier"].config.model is None
    both = _instances(["pretrain_lm.weights=none", "model.num_layers=3", "classifier.direction=both", *NO_VECTORS])
    assert both["pretrain_lm:backward"].config.model == both["pretrain_lm"].config.model == ModelConfig(num_layers=3)
    assert both["finetune_lm:backward"].config.model is None


def test_without_pretraining_finetune_lm_builds_the_encoder_from_model():
    ids = _instances([*NO_PRETRAINING, "model.embedding_dim=8", "model.hidden_dim=12", "model.num_layers=1"])
    assert "pretrain_lm" not in ids and ids["classifier"].config.model is None
    cfg = ids["finetune_lm"].config
    assert cfg.model == ModelConfig(embedding_dim=8, hidden_dim=12, num_layers=1)
    model, start = build_finetune_model(cfg, numericalize_docs([["a", "b", "c"]] * 4))
    assert start["initialisation"] == "random"
    assert (model.encoder.embedding_dim, model.encoder.hidden_dim, len(model.encoder.layers)) == (8, 12, 1)


def test_default_architecture_is_the_one_before_the_model_table():
    assert ModelConfig() == ModelConfig("lstm", 300, 600, 2)
    assert _instances(["pretrain_lm.weights=none", *NO_VECTORS])["pretrain_lm"].config.model == ModelConfig()


@pytest.mark.parametrize("sets, message", [
    (["model.hidden_dim=100"],
     "model.hidden_dim cannot apply: pretrain_lm.weights = 'packaged' fixes the architecture; "
     'set pretrain_lm.weights = "none" to train another'),
    (["pretrain_lm.epochs=3"], "pretrain_lm.epochs cannot apply: pretrain_lm.weights = 'packaged' loads a trained LM"),
    (["pretrain_lm.input_dropout=0.3"], "pretrain_lm.input_dropout cannot apply: pretrain_lm.weights = 'packaged'"),
    (["pretrain_lm.corpus=wikitext2"], "pretrain_lm.corpus cannot apply: pretrain_lm.weights = 'packaged'"),
    (["pretrain_lm.max_documents=10"], "pretrain_lm.max_documents cannot apply"),
    ([*NO_PRETRAINING, "pretrain_lm.learning_rate=0.1"],
     "pretrain_lm.learning_rate cannot apply: pretrain_lm.corpus = 'none' pretrains nothing"),
    ([*NO_PRETRAINING, "finetune_lm.frozen_epochs=0"],
     "finetune_lm.frozen_epochs cannot apply: without a pretrained LM"),
    ([*NO_PRETRAINING, "finetune_lm.frozen_learning_rate=0.1"], "finetune_lm.frozen_learning_rate cannot apply"),
    (["finetune_lm.vectors_dim_mismatch=project"],
     'finetune_lm.vectors_dim_mismatch cannot apply: finetune_lm.init_vectors = "none"'),
    (["pretrain_lm.backward_weights=none"],
     'pretrain_lm.backward_weights cannot apply: classifier.direction = "forward"'),
])
def test_a_setting_that_cannot_apply_is_a_one_line_config_error(sets, message):
    with pytest.raises(ConfigError) as caught:   # load_config checks what cannot apply (pipeline.instances too)
        pipeline.instances(pipeline.load_config(sets=sets))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_settings_that_apply_are_accepted():
    """The same fields where they do apply: no error (the checks above are not blanket refusals)."""
    _instances(["pretrain_lm.weights=none", "pretrain_lm.epochs=3", "model.hidden_dim=100", *NO_VECTORS])
    _instances(["finetune_lm.frozen_epochs=0", "pretrain_lm.num_threads=1", *NO_VECTORS])  # runtime fields are left alone
    _instances(["pretrain_lm.backward_weights=none", "classifier.direction=both", "pretrain_lm.epochs=1", *NO_VECTORS])
    _instances(["finetune_lm.init_vectors=word2vec", "finetune_lm.vectors_dim_mismatch=project",
                "embeddings.methods=[\"word2vec\"]"])


@pytest.mark.parametrize("section", ["pretrain_lm", "finetune_lm", "classifier"])
@pytest.mark.parametrize("field", ["rnn_type", "embedding_dim", "hidden_dim", "num_layers"])
def test_an_old_architecture_name_names_the_model_field(section, field):
    with pytest.raises(ConfigError, match=rf"^{section}\.{field} is now model\.{field}; rename it"):
        pipeline.load_config(sets=[f"{section}.{field}=1"])


@pytest.mark.parametrize("section", ["pretrain_lm", "finetune_lm", "classifier"])
def test_model_is_set_by_the_pipeline_not_in_a_table(section):
    with pytest.raises(ConfigError, match=rf"^{section}\.model is set by the pipeline from \[model\]; set \[model\] instead$"):
        pipeline.load_config(sets=[f"{section}.model=none"])


def test_run_config_toml_has_the_model_table_and_reads_back():
    configs = pipeline.load_config(sets=["pretrain_lm.weights=none", "model.hidden_dim=100"])
    tables = config_layer.to_dict(configs)
    assert tables["model"]["hidden_dim"] == 100 and "model" not in tables["pretrain_lm"]
    text = pipeline.to_toml(tables)
    assert "[model]" in text and text.index("[model]") < text.index("[pretrain_lm]")
    import tomllib

    assert pipeline.load_config(overrides=tomllib.loads(text)) == configs


def test_a_setting_that_cannot_apply_is_in_no_key():
    """What the pipeline refuses to set is also left out of the stage's key (and what applies is in it)."""
    data = {"data": "0" * 64}
    built = FinetuneLmConfig(model=ModelConfig())  # no pretrained LM: this instance builds the encoder
    for name, value in (("frozen_epochs", 0), ("frozen_learning_rate", 0.5)):
        assert FINETUNE_STAGE.key(dataclasses.replace(built, **{name: value}), data) == FINETUNE_STAGE.key(built, data)
        assert FINETUNE_STAGE.key(dataclasses.replace(FinetuneLmConfig(), **{name: value}), {**data, "pretrained": "1" * 64}) \
            != FINETUNE_STAGE.key(FinetuneLmConfig(), {**data, "pretrained": "1" * 64})
    project = FinetuneLmConfig(vectors_dim_mismatch="project")
    assert FINETUNE_STAGE.key(project, data) == FINETUNE_STAGE.key(FinetuneLmConfig(), data)
    with_vectors = {**data, "vectors": "2" * 64}
    assert FINETUNE_STAGE.key(dataclasses.replace(project, init_vectors="word2vec"), with_vectors) != \
        FINETUNE_STAGE.key(FinetuneLmConfig(init_vectors="word2vec"), with_vectors)
    loaded = pipeline.load_config(sets=NO_VECTORS)["pretrain_lm"]  # the packaged LM: its files are the key
    trains = dataclasses.replace(loaded, weights="none", model=ModelConfig())
    assert PRETRAIN_STAGE.key(dataclasses.replace(loaded, epochs=9), {}) == PRETRAIN_STAGE.key(loaded, {})
    assert PRETRAIN_STAGE.key(dataclasses.replace(trains, model=ModelConfig(hidden_dim=10)), data) != PRETRAIN_STAGE.key(trains, data)


def test_softmax_sample_is_in_the_key_only_when_on_and_never_negative():
    data = {"data": "0" * 64, "pretrained": "1" * 64}
    full = FinetuneLmConfig(softmax_sample=0)
    assert "softmax_sample" not in FINETUNE_STAGE.key_payload(full, data)["config"]  # off: keys of before the field
    assert FINETUNE_STAGE.key(FinetuneLmConfig(), data) != FINETUNE_STAGE.key(full, data)
    assert FINETUNE_STAGE.key(FinetuneLmConfig(softmax_sample=512), data) != FINETUNE_STAGE.key(FinetuneLmConfig(), data)
    with pytest.raises(ConfigError, match="softmax_sample must be >= 0"):
        pipeline.load_config(sets=["finetune_lm.softmax_sample=-1"])


def test_the_estimator_seed_reaches_pretrain_lm_only_when_it_trains():
    from nlp_pipeline.sklearn import ULMFiTClassifier

    packaged = ULMFiTClassifier(seed=5).pipeline_config()
    pipeline.instances(packaged)  # no "pretrain_lm.seed cannot apply"
    assert packaged["pretrain_lm"].seed == 0 and packaged["finetune_lm"].seed == 5
    trained = ULMFiTClassifier(seed=5, config={"pretrain_lm.weights": "none"}).pipeline_config()
    assert trained["pretrain_lm"].seed == 5
