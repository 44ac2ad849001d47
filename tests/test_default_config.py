"""default_config.toml is the commented mirror of the config dataclasses: same sections, fields and values."""

import dataclasses
import tomllib
from importlib import resources

from nlp_pipeline import pipeline
from nlp_pipeline.core.config import pipeline_set


def test_default_config_lists_every_field_with_the_dataclass_default():
    text = resources.files("nlp_pipeline").joinpath("default_config.toml").read_text(encoding="utf-8")
    tables = tomllib.loads(text)
    assert list(tables) == list(pipeline.SCHEMAS)
    for section, cls in pipeline.SCHEMAS.items():
        defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls) if f.name not in pipeline_set(cls)}
        written = {k: (None if v == "none" and defaults.get(k) is None else v) for k, v in tables[section].items()}
        assert written == defaults, section


def test_every_default_field_has_a_comment():
    text = resources.files("nlp_pipeline").joinpath("default_config.toml").read_text(encoding="utf-8")
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"uncommented setting: {line}"


def test_quick_preset_only_names_known_settings():
    configs = pipeline.load_config(preset="quick")
    assert set(configs) == set(pipeline.SCHEMAS)
