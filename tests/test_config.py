from dataclasses import dataclass, field

import pytest

from nlp_pipeline.core.config import build, parse_sets, parse_value, resolve
from nlp_pipeline.core.errors import ConfigError


@dataclass(frozen=True)
class ToyConfig:
    n_components: int = 100     # dimensions
    rate: float = 0.5           # a fraction
    enabled: bool = True        # a switch
    methods: list[str] = field(default_factory=lambda: ["a", "b"])  # a list
    path: str | None = None     # optional


def test_parse_value_reads_toml_values_or_keeps_strings():
    assert parse_value("50") == 50
    assert parse_value("0.5") == 0.5
    assert parse_value("true") is True
    assert parse_value('["x", "y"]') == ["x", "y"]
    assert parse_value("../data/trec6") == "../data/trec6"


def test_parse_sets_groups_by_section():
    assert parse_sets(["lsa.n_components=50", "lsa.min_df=3", "corpus.source=trec6"]) == {
        "lsa": {"n_components": 50, "min_df": 3},
        "corpus": {"source": "trec6"},
    }


@pytest.mark.parametrize("bad", ["lsa", "lsa.n_components", "=5", ".x=1"])
def test_malformed_set_is_config_error(bad):
    with pytest.raises(ConfigError, match="stage.field=value"):
        parse_sets([bad])


def test_layers_and_coercion():
    configs = resolve(
        {"toy": ToyConfig},
        [{"toy": {"n_components": 10}}, {"toy": {"rate": 1, "methods": "x, y", "path": "none"}}],
    )
    assert configs["toy"] == ToyConfig(n_components=10, rate=1.0, enabled=True, methods=["x", "y"], path=None)
    assert isinstance(configs["toy"].rate, float)


def test_unknown_field_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown setting toy\.n_comp; valid settings of \[toy\]: enabled, methods, n_components, path, rate"):
        build(ToyConfig, {"n_comp": 5}, "toy")


def test_unknown_section_and_bad_types():
    with pytest.raises(ConfigError, match=r"unknown config section \[lsaa\]"):
        resolve({"toy": ToyConfig}, [{"lsaa": {}}])
    with pytest.raises(ConfigError, match="toy.n_components must be a whole number"):
        build(ToyConfig, {"n_components": "many"}, "toy")
    with pytest.raises(ConfigError, match="toy.enabled must be true or false"):
        build(ToyConfig, {"enabled": "maybe"}, "toy")
    with pytest.raises(ConfigError, match=r"toy.methods must be a list, got 5; write it in brackets, e.g. \[5\]"):
        build(ToyConfig, {"methods": 5}, "toy")
    with pytest.raises(ConfigError, match=r"toy.methods must be a list, got true; write it in brackets, e.g. \[true\]"):
        build(ToyConfig, {"methods": True}, "toy")  # spelled as TOML spells it
