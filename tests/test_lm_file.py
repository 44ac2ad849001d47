"""A language model as a portable folder: round trip, refusals with one-line errors, pretrain_lm.weights
(the folder's contents are the cache key, not its path), and `nlp-pipeline export lm` -> fine-tune from it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from nlp_pipeline import pipeline
from nlp_pipeline.cli import main
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError
from nlp_pipeline.models.lm_file import CONFIG_FILE, WEIGHTS_FILE, load_lm_folder, save_lm_folder
from nlp_pipeline.stages.language_model import PRETRAIN_STAGE, PretrainLmConfig, pretrain_language_model
from test_cli import FAST, corpus_dir  # noqa: F401 (fixture)
from test_lm import SMALL, TINY, numericalize_docs

WORDS = "the a cat dog sat ran on under mat rug big small red blue and then".split()


@pytest.fixture(scope="module")
def lm():
    rng = np.random.default_rng(0)
    data = numericalize_docs([list(rng.choice(WORDS, size=12)) for _ in range(30)])
    return pretrain_language_model(PretrainLmConfig(**TINY, model=SMALL, epochs=1, weights="none"), data)


def test_round_trip_float32_is_exact_and_float16_close(lm, tmp_path):
    report = save_lm_folder(lm, tmp_path / "f32", dtype="float32")
    assert sorted(p.name for p in (tmp_path / "f32").iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    back = load_lm_folder(tmp_path / "f32")
    assert back.arch == lm.arch and back.vocab.itos == lm.vocab.itos and back.tokenizer == lm.tokenizer
    assert set(back.state_dict) == set(lm.state_dict)  # the tied decoder weight is restored under its own name
    for name, value in lm.state_dict.items():
        np.testing.assert_array_equal(back.state_dict[name], value, err_msg=name)
    assert back.metrics["val_perplexity"] == lm.metrics["val_perplexity"]
    save_lm_folder(lm, tmp_path / "f16")
    half = load_lm_folder(tmp_path / "f16")
    for name, value in lm.state_dict.items():
        np.testing.assert_allclose(half.state_dict[name], value, rtol=1e-3, atol=1e-4, err_msg=name)
    assert half.state_dict["encoder.embedding.weight"].dtype == np.float32
    assert (tmp_path / "f16" / WEIGHTS_FILE).stat().st_size < (tmp_path / "f32" / WEIGHTS_FILE).stat().st_size * 0.6
    assert report["vocab_size"] == len(lm.vocab)


def test_an_existing_folder_is_not_replaced_without_overwrite(lm, tmp_path):
    save_lm_folder(lm, tmp_path / "out")
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        save_lm_folder(lm, tmp_path / "out")
    save_lm_folder(lm, tmp_path / "out", overwrite=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an exported language model"):
        save_lm_folder(lm, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "x"


def test_a_full_disk_is_one_error_line_naming_the_folder_and_the_earlier_export_stays(lm, tmp_path, monkeypatch):
    import errno
    import os
    import stat

    from nlp_pipeline.core.errors import OutputError
    from nlp_pipeline.models import lm_file

    save_lm_folder(lm, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask   # not mkdtemp's 0700

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(lm_file, "write_safetensors", full)
    with pytest.raises(OutputError) as raised:
        save_lm_folder(lm, tmp_path / "out", overwrite=True)
    message = str(raised.value)
    assert f"could not write {tmp_path / 'out'}: No space left on device" in message and "\n" not in message
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _edit_config(folder, **changes):
    config = json.loads((folder / CONFIG_FILE).read_text())
    for dotted, value in changes.items():
        table, _, field = dotted.partition("__")
        (config[table] if field else config)[field or table] = value
    (folder / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize("damage, error, message", [
    (lambda f: (f / WEIGHTS_FILE).write_bytes((f / WEIGHTS_FILE).read_bytes()[:-8] + b"\0" * 8), DataError,
     "does not match the sha256"),
    (lambda f: (f / "vocab.json").unlink(), MissingInputError, "has no vocab.json"),
    (lambda f: _edit_config(f, format_version=2), DataError, "format 1 only"),
    (lambda f: _edit_config(f, arch__hidden_dim=10**9), DataError, "arch.hidden_dim = 1000000000 is out of range"),
    (lambda f: _edit_config(f, arch__hidden_dim=25), DataError, "do not fit the architecture"),
    (lambda f: _edit_config(f, arch__rnn_type="transformer"), DataError, "rnn_type must be lstm or gru"),
    (lambda f: (f / CONFIG_FILE).write_text("{"), DataError, "is not valid JSON"),
])
def test_damaged_folders_are_refused_in_one_line(lm, tmp_path, damage, error, message):
    folder = tmp_path / "lm"
    save_lm_folder(lm, folder)
    damage(folder)
    with pytest.raises(error, match=message) as caught:
        load_lm_folder(folder)
    assert "\n" not in str(caught.value)


def test_a_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(MissingInputError, match="nlp-pipeline export lm"):
        load_lm_folder(tmp_path / "nowhere")


def test_weights_key_follows_the_files_not_the_path_nor_training_fields(lm, tmp_path):
    save_lm_folder(lm, tmp_path / "a")
    save_lm_folder(lm, tmp_path / "b")
    cfg = PretrainLmConfig(weights=str(tmp_path / "a"))
    key = PRETRAIN_STAGE.key(cfg, {})
    assert PRETRAIN_STAGE.key(dataclasses.replace(cfg, weights=str(tmp_path / "b")), {}) == key  # moved: same key
    assert PRETRAIN_STAGE.key(dataclasses.replace(cfg, epochs=9, corpus="x"), {}) == key        # cannot apply
    save_lm_folder(dataclasses.replace(lm, state_dict={k: v * 2 for k, v in lm.state_dict.items()}), tmp_path / "a",
                   overwrite=True)
    assert PRETRAIN_STAGE.key(cfg, {}) != key                                                    # new contents
    loaded = pretrain_language_model(cfg)
    assert loaded.metrics["loaded_from"] == str(tmp_path / "a") and loaded.arch == lm.arch


def test_pipeline_with_weights_has_no_general_corpus(tmp_path, lm):
    save_lm_folder(lm, tmp_path / "lm")
    configs = pipeline.load_config(sets=[f"pretrain_lm.weights={tmp_path / 'lm'}", "embeddings.methods=[]"])
    ids = {inst.id: inst for inst in pipeline.instances(configs)}
    assert "corpus:general" not in ids and ids["pretrain_lm"].inputs == {}
    assert ids["finetune_lm"].inputs["pretrained"] == "pretrain_lm"
    none = pipeline.load_config(sets=["pretrain_lm.weights=none", "pretrain_lm.corpus=none", "embeddings.methods=[]"])
    assert "pretrain_lm" not in {inst.id for inst in pipeline.instances(none)}


def test_export_lm_then_finetune_from_it(corpus_dir, tmp_path):  # noqa: F811 (fixture)
    general = tmp_path / "general.txt"
    rng = np.random.default_rng(2)
    general.write_text("\n".join(" ".join(rng.choice(WORDS + ["film", "great", "dull"], size=15)) for _ in range(80)))
    tiny = ["finetune_lm.batch_size=2", "finetune_lm.bptt_length=5", "finetune_lm.epochs=1", "embeddings.methods=[]",
            "pretrain_lm.num_threads=1", "finetune_lm.num_threads=1"]
    pretraining = ["model.embedding_dim=8", "model.hidden_dim=12", "model.num_layers=1", "pretrain_lm.batch_size=4",
                   "pretrain_lm.bptt_length=6", "pretrain_lm.epochs=1"]  # cannot apply to an LM loaded from its folder
    sets = [arg for item in tiny for arg in ("--set", item)]
    training = [*sets, *[arg for item in pretraining for arg in ("--set", item)]]
    env = {"NLP_PIPELINE_CACHE": str(tmp_path / "cache")}
    runner = CliRunner()
    first = runner.invoke(main, ["run", "--corpus", str(corpus_dir), *FAST, *training, "--set", "pretrain_lm.weights=none",
                                 "--set", f"pretrain_lm.corpus={general}", "--until", "pretrain_lm",
                                 "--runs-dir", str(tmp_path / "runs")], env=env, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    out = tmp_path / "exported"
    exported = runner.invoke(main, ["export", "lm", "--corpus", str(corpus_dir), *FAST, *training, "--set", "pretrain_lm.weights=none",
                                    "--set", f"pretrain_lm.corpus={general}", "--out", str(out)], env=env, catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    assert f"use it with: --set pretrain_lm.weights={out}" in exported.stdout
    second = runner.invoke(main, ["run", "--corpus", str(corpus_dir), *FAST, *sets, "--set", f"pretrain_lm.weights={out}",
                                  "--until", "finetune_lm", "--runs-dir", str(tmp_path / "runs")], env=env,
                           catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "corpus:general" not in second.stderr
    metrics = json.loads((tmp_path / "runs" / "tiny" / "metrics.json").read_text())
    assert metrics["pretrain_lm"]["loaded_from"] == str(out) and metrics["pretrain_lm"]["seconds"] < 30
    assert metrics["finetune_lm"]["initialisation"] == "pretrained"
    again = runner.invoke(main, ["export", "lm", "--corpus", str(corpus_dir), *FAST, *training, "--set", "pretrain_lm.weights=none",
                                 "--set", f"pretrain_lm.corpus={general}", "--out", str(out)], env=env)
    assert again.exit_code != 0 and "already exists; pass --overwrite" in again.output


def test_the_packaged_language_model_is_small_loads_and_matches_the_default_tokenizer():
    from nlp_pipeline.models.lm_file import resolve_lm_path
    from nlp_pipeline.stages.tokenization import TokenizationConfig, settings_of

    folder = resolve_lm_path("packaged")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 40e6  # the limit for the repository
    lm = load_lm_folder(folder)
    assert lm.arch["rnn_type"] == "lstm" and len(lm.vocab) == lm.arch["vocab_size"] <= 20000
    assert lm.metrics["val_perplexity"] < 200 and lm.metrics["train_tokens"] > 500_000  # decision 0007
    expected = settings_of(TokenizationConfig())
    assert {k: lm.tokenizer[k] for k in expected} == expected  # default runs tokenize as its texts were
    ids = {inst.id: inst for inst in pipeline.instances(pipeline.load_config())}
    assert ids["pretrain_lm"].inputs == {} and "corpus:general" not in ids  # the default fine-tunes it


def test_a_backward_lm_travels_with_its_direction_and_is_refused_where_a_forward_one_belongs(lm, tmp_path):
    rng = np.random.default_rng(0)
    data = numericalize_docs([list(rng.choice(WORDS, size=12)) for _ in range(30)])
    backward = pretrain_language_model(PretrainLmConfig(**TINY, model=SMALL, epochs=1, weights="none", backward=True), data)
    save_lm_folder(backward, tmp_path / "bwd")
    save_lm_folder(lm, tmp_path / "fwd")
    assert json.loads((tmp_path / "bwd" / CONFIG_FILE).read_text())["arch"]["backward"] is True
    assert "backward" not in json.loads((tmp_path / "fwd" / CONFIG_FILE).read_text())["arch"]  # forward files unchanged
    assert load_lm_folder(tmp_path / "bwd").arch["backward"] is True
    both = PretrainLmConfig(weights=str(tmp_path / "fwd"), backward=True)
    with pytest.raises(ConfigError, match="is a forward language model, but this chain reads texts backward"):
        pretrain_language_model(both)
    # the same folder as forward and as backward weights gives two keys
    forward_key = PRETRAIN_STAGE.key(PretrainLmConfig(weights=str(tmp_path / "fwd")), {})
    assert PRETRAIN_STAGE.key(both, {}) != forward_key


def test_classifier_direction_builds_the_backward_chain_and_backward_cannot_be_set_by_hand(tmp_path, lm):
    save_lm_folder(lm, tmp_path / "lm")
    sets = [f"pretrain_lm.weights={tmp_path / 'lm'}", f"pretrain_lm.backward_weights={tmp_path / 'lm'}", "embeddings.methods=[]"]
    forward = {i.id: i for i in pipeline.instances(pipeline.load_config(sets=[sets[0], sets[2]]))}  # no backward_weights
    both = {i.id: i for i in pipeline.instances(pipeline.load_config(sets=[*sets, "classifier.direction=both"]))}
    assert "finetune_lm:backward" not in forward
    assert both["finetune_lm:backward"].inputs["pretrained"] == "pretrain_lm:backward"
    assert both["pretrain_lm:backward"].config.backward and both["finetune_lm:backward"].config.backward
    assert both["classifier"].inputs == {"data": "numericalization", "carve": "validation", "lm": "finetune_lm",
                                         "lm_backward": "finetune_lm:backward"}
    backward = {i.id for i in pipeline.instances(pipeline.load_config(sets=[*sets, "classifier.direction=backward"]))}
    assert "finetune_lm" not in backward and "finetune_lm:backward" in backward
    for section in ("pretrain_lm", "finetune_lm"):
        with pytest.raises(ConfigError, match=f"{section}.backward is set by the pipeline.*classifier.direction"):
            pipeline.instances(pipeline.load_config(sets=[*sets, f"{section}.backward=true"]))


def test_backward_weights_auto_follows_packaged_or_none_but_not_a_folder(tmp_path, lm):
    save_lm_folder(lm, tmp_path / "lm")
    none = pipeline.load_config(sets=["pretrain_lm.weights=none", "classifier.direction=both", "embeddings.methods=[]"])
    ids = {i.id: i for i in pipeline.instances(none)}
    assert ids["pretrain_lm:backward"].config.weights == "none"
    assert ids["pretrain_lm:backward"].inputs == {"data": "numericalization:general"}
    with pytest.raises(ConfigError, match="also needs pretrain_lm.backward_weights"):  # load_config checks the wiring
        pipeline.load_config(sets=[f"pretrain_lm.weights={tmp_path / 'lm'}", "classifier.direction=both"])
