from dataclasses import dataclass, field

import pytest

from nlp_pipeline import pipeline
from nlp_pipeline.core.config import build, merge, parse_sets, parse_value, resolve, to_dict
from nlp_pipeline.core.errors import ConfigError


@dataclass(frozen=True)
class ToyConfig:
    n_components: int = 100     # dimensions
    rate: float = 0.5           # a fraction
    enabled: bool = True        # a switch
    methods: list[str] = field(default_factory=lambda: ["a", "b"])  # a list
    path: str | None = None     # optional


@dataclass(frozen=True)
class InnerConfig:
    window: int = 10            # a sub-table's field
    rate: float = 0.5           # another


@dataclass(frozen=True)
class OuterConfig:
    size: int = 100             # a top-level field
    inner: InnerConfig = field(default_factory=InnerConfig)  # [outer.inner]


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


def test_parse_sets_nests_dotted_names_at_any_depth():
    assert parse_sets(["embeddings.glove.window=5", "embeddings.glove.epochs=3", "embeddings.seed=1", "a.b.c.d=x"]) == {
        "embeddings": {"glove": {"window": 5, "epochs": 3}, "seed": 1},
        "a": {"b": {"c": {"d": "x"}}},
    }
    with pytest.raises(ConfigError, match=r"sets a field of embeddings\.glove, which is given a plain value elsewhere"):
        parse_sets(["embeddings.glove=3", "embeddings.glove.window=5"])


@pytest.mark.parametrize("bad", ["lsa", "lsa.n_components", "=5", ".x=1", "lsa..x=1", "lsa.x.=1"])
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


def test_nested_table_keeps_the_other_defaults_of_its_sub_table():
    defaults = {"outer": {"size": 100, "inner": {"window": 10, "rate": 0.5}}}
    user = {"outer": {"inner": {"window": 5}}}
    assert merge([defaults, user]) == {"outer": {"size": 100, "inner": {"window": 5, "rate": 0.5}}}
    assert defaults["outer"]["inner"]["window"] == 10  # layers are not modified
    configs = resolve({"outer": OuterConfig}, [defaults, user, parse_sets(["outer.inner.rate=1"])])
    assert configs["outer"] == OuterConfig(inner=InnerConfig(window=5, rate=1.0))
    assert isinstance(configs["outer"].inner.rate, float)


def test_unknown_sub_field_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"^unknown setting outer\.inner\.windw; valid settings of \[outer\.inner\]: "
                                          r"rate, window$"):
        resolve({"outer": OuterConfig}, [parse_sets(["outer.inner.windw=5"])])
    with pytest.raises(ConfigError, match=r"^outer\.inner\.window must be a whole number, got 'many'$"):
        resolve({"outer": OuterConfig}, [parse_sets(["outer.inner.window=many"])])
    with pytest.raises(ConfigError, match=r"^outer\.inner must be a table of settings like \[outer\.inner\], got 5; "):
        resolve({"outer": OuterConfig}, [parse_sets(["outer.inner=5"])])


def test_moved_field_names_its_new_place():
    for setting, new in (("embeddings.glove_window=5", "embeddings.glove.window"),
                         ("embeddings.window=5", "embeddings.word2vec.window and embeddings.fasttext.window"),
                         ("embeddings.bucket=10", "embeddings.fasttext.bucket"),
                         ("embeddings.pretrained_path=x.txt", "embeddings.pretrained.path")):
        with pytest.raises(ConfigError, match=rf"^{setting.partition('=')[0]} is now {new}; rename it in your config "
                                              rf"file or --set$"):
            pipeline.load_config(sets=[setting])


def test_written_config_with_sub_tables_reads_back(tmp_path):
    """runs/<name>/config.toml (pipeline.to_toml of config.to_dict) loads back to the same configs."""
    configs = pipeline.load_config(preset="quick", sets=["embeddings.glove.window=4", "embeddings.word2vec.window=3"])
    text = pipeline.to_toml(to_dict(configs))
    assert "[embeddings.glove]\nwindow = 4\n" in text and "glove = " not in text
    assert text.index("[embeddings]") < text.index("workers = ", text.index("[embeddings]")) < text.index("[embeddings.word2vec]")
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    assert pipeline.load_config(config_file=path) == configs
