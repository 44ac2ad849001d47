"""default_config.toml is the commented mirror of the config dataclasses: same sections, fields and values."""

import dataclasses
import tomllib
from importlib import resources

import pytest

from nlp_pipeline import pipeline


def mirrored(config) -> dict:
    """A config dataclass's defaults as default_config.toml writes them: None as "none", a nested config as a
    sub-table ([embeddings.glove]); fields the pipeline sets (metadata "set_by") are not written."""
    return {f.name: mirrored(value) if dataclasses.is_dataclass(value := getattr(config, f.name))
            else ("none" if value is None else value)
            for f in dataclasses.fields(config) if "set_by" not in f.metadata}


def test_default_config_lists_every_field_with_the_dataclass_default():
    text = resources.files("nlp_pipeline").joinpath("default_config.toml").read_text(encoding="utf-8")
    tables = tomllib.loads(text)
    assert list(tables) == list(pipeline.SCHEMAS)
    for section, cls in pipeline.SCHEMAS.items():
        assert tables[section] == mirrored(cls()), section
    assert set(tables["embeddings"]["glove"]) == {"window", "x_max", "alpha", "learning_rate", "epochs", "batch_size"}


def test_every_default_field_has_a_comment():
    text = resources.files("nlp_pipeline").joinpath("default_config.toml").read_text(encoding="utf-8")
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"uncommented setting: {line}"


def test_quick_preset_only_names_known_settings():
    configs = pipeline.load_config(preset="quick")
    assert set(configs) == set(pipeline.SCHEMAS)


def test_a_preset_setting_that_cannot_apply_is_dropped_but_the_users_is_an_error():
    from nlp_pipeline.core.errors import CannotApply
    from nlp_pipeline.stages.embeddings import FastTextConfig, GloveConfig

    configs = pipeline.load_config(preset="quick", sets=['embeddings.methods=["word2vec"]', "blend.linear=false"])
    assert configs["embeddings"].glove == GloveConfig() and configs["embeddings"].fasttext == FastTextConfig()
    assert configs["linear"].chars == pipeline.SCHEMAS["linear"]().chars      # quick's [0] dropped with the linear model
    assert configs["embeddings"].word2vec.epochs == 2                        # what still applies keeps the preset's value
    no_lm = pipeline.load_config(preset="quick", sets=["pretrain_lm.weights=none", "pretrain_lm.corpus=none"])
    assert no_lm["finetune_lm"].frozen_epochs == pipeline.SCHEMAS["finetune_lm"]().frozen_epochs
    with pytest.raises(CannotApply, match=r"^embeddings\.glove\.epochs cannot apply: 'glove' is not in embeddings\.methods"):
        pipeline.load_config(preset="quick", sets=['embeddings.methods=["word2vec"]', "embeddings.glove.epochs=5"])
