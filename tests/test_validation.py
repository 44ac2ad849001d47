"""validation: the carve with defaults is the one the classifier and lsa made before it was a stage (the recipe
written out), the dev split and its errors, fields that cannot apply, old field names, keys and the wiring."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from helpers import make_tokens
from nlp_pipeline import pipeline
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.stages.validation import STAGE, ValidationConfig, make_carve
from nlp_pipeline.targets import holdout


def _tokens(splits: list[str], labels: list[int] | None = None):
    labels = labels if labels is not None else [i % 3 for i in range(len(splits))]
    return make_tokens([["xxbos", f"w{i}"] for i in range(len(splits))], labels, splits, ["a", "b", "c"])


def _old_carve(tokens, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """What classifier._validation (validation_split "auto") and lsa (validation_size) computed before: the labelled
    dev split if any, else holdout(labels[train], fraction, seed) with classifier.seed / lsa.seed (both 0)."""
    train, dev = tokens.indices("train", labelled=True), tokens.indices("dev", labelled=True)
    if len(dev):
        return train, dev
    kept, held = holdout(np.asarray(tokens.labels)[train], fraction, seed, tokens.target_type)
    return train[kept], train[held]


def test_the_default_carve_is_the_classifiers_and_lsas_before():
    splits = ["train"] * 70 + ["test"] * 20 + ["unsup"] * 10
    labels = [i % 3 for i in range(90)] + [-1] * 10
    tokens = _tokens(splits, labels)
    carve = make_carve(ValidationConfig(), tokens)
    train, valid = _old_carve(tokens)
    assert np.array_equal(carve.train_indexes, train) and np.array_equal(carve.validation_indexes, valid)
    assert len(valid) == 6 and not set(valid) & set(tokens.indices("test")) and carve.source == "carved from train"
    assert (carve.documents, carve.fraction, carve.seed) == (100, 0.1, 0)
    # written out, so that a change of holdout itself is seen too: round(10 %) of each label's 23-24 train documents, 2 each
    assert carve.validation_indexes.tolist() == [2, 7, 12, 40, 50, 54]
    with_dev = _tokens(["train"] * 30 + ["dev"] * 6 + ["test"] * 4)
    carve = make_carve(ValidationConfig(), with_dev)
    assert carve.train_indexes.tolist() == list(range(30)) and carve.validation_indexes.tolist() == list(range(30, 36))
    assert carve.source == "dev" and carve.fraction is None and carve.seed is None


def test_split_train_always_holds_out_and_dev_needs_a_dev_split():
    with_dev = _tokens(["train"] * 30 + ["dev"] * 6 + ["test"] * 4)
    held = make_carve(ValidationConfig(split="train", fraction=0.2, seed=3), with_dev)
    assert set(held.validation_indexes) < set(range(30)) and len(held.validation_indexes) == 6
    assert np.array_equal(held.validation_indexes, _old_carve(_tokens(["train"] * 30), 0.2, 3)[1])
    assert make_carve(ValidationConfig(split="dev"), with_dev).validation_indexes.tolist() == list(range(30, 36))
    with pytest.raises(DataError) as caught:
        make_carve(ValidationConfig(split="dev"), _tokens(["train"] * 30 + ["test"] * 4))
    assert str(caught.value) == ("validation.split = 'dev' but the corpus has no labelled dev documents; set "
                                 "validation.split to \"auto\" or \"train\" to hold out part of train")
    unlabelled = make_carve(ValidationConfig(), _tokens(["train"] * 4, [-1] * 4))
    assert len(unlabelled.train_indexes) == len(unlabelled.validation_indexes) == 0


@pytest.mark.parametrize("field", ["validation.fraction=0.2", "validation.seed=1"])
def test_fraction_and_seed_cannot_apply_to_the_dev_split(field):
    with pytest.raises(ConfigError) as caught:
        pipeline.load_config(sets=["validation.split=dev", field])
    name = field.split("=")[0]
    assert str(caught.value) == (f"{name} cannot apply: validation.split = \"dev\" holds nothing out of train; remove "
                                 f"{name} or set validation.split = \"auto\" or \"train\"")


def test_fraction_and_seed_are_in_the_key_unless_the_split_is_dev():
    upstream = {"tokens": "0" * 64}
    auto = ValidationConfig()
    assert STAGE.key(auto, upstream) != STAGE.key(dataclasses.replace(auto, seed=1), upstream)  # auto may carve
    dev = STAGE.key_payload(ValidationConfig(split="dev"), upstream)["config"]
    assert dev == {"split": "dev"}


@pytest.mark.parametrize("old, new", [("classifier.validation_split", "validation.split"),
                                      ("classifier.validation_fraction", "validation.fraction"),
                                      ("lsa.validation_size", "validation.fraction")])
def test_an_old_name_is_a_one_line_error_naming_the_new_field(old, new):
    with pytest.raises(ConfigError) as caught:
        pipeline.load_config(sets=[f"{old}=0.2"])
    assert str(caught.value) == f"{old} is now {new}; rename it in your config file or --set"


def test_bad_values_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"^validation.split must be one of \['auto', 'train', 'dev'\], got 'test'$"):
        pipeline.load_config(sets=["validation.split=test"])
    with pytest.raises(ConfigError, match=r"^validation.fraction must be between 0 and 1, got 1.5$"):
        pipeline.load_config(sets=["validation.fraction=1.5"])


def test_one_carve_feeds_every_stage_that_chooses_on_validation():
    ids = {i.id: i for i in pipeline.instances(pipeline.load_config())}
    assert ids["validation"].inputs == {"tokens": "tokenization"}
    assert {name for name, i in ids.items() if i.inputs.get("carve") == "validation"} == {"lsa", "classifier", "linear", "blend"}
    assert "classifier" not in ids["linear"].inputs  # a classifier setting never re-runs linear
    alone = {i.id: i for i in pipeline.instances(pipeline.load_config(sets=["blend.linear=false"]))}
    assert alone["blend"].inputs["carve"] == "validation"


def test_the_cli_says_a_missing_dev_split_in_one_line(tmp_path):
    import json

    from click.testing import CliRunner

    from nlp_pipeline.cli import main

    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = [{"text": f"word{i} and more", "label": "ab"[i % 2]} for i in range(12)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:10]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[10:]))
    result = CliRunner().invoke(main, ["run", "--corpus", str(folder), "--runs-dir", str(tmp_path / "runs"), "--until",
                                       "validation", "--set", "tokenization.workers=1", "--set", "validation.split=dev"],
                                env={"NLP_PIPELINE_CACHE": str(tmp_path / "cache")}, catch_exceptions=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert errors == ["error: validation.split = 'dev' but the corpus has no labelled dev documents; set "
                      "validation.split to \"auto\" or \"train\" to hold out part of train"]
