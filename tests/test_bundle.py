"""The predict bundle: save -> load gives the in-memory model's predictions, one text = a batch, odd texts get an
answer, every broken bundle is a one-line error, and `nlp-pipeline predict` through CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nlp_pipeline.artifacts import SPLITS, ClassifierResult, Corpus
from nlp_pipeline.cli import main
from nlp_pipeline.targets import THRESHOLDS, carve
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError
from nlp_pipeline.core.hashing import file_sha256
from nlp_pipeline.export.bundle import (
    CONFIG_FILE, FORMAT_VERSION, LINEAR_FILE, TOKENIZER_FILE, VOCAB_FILE, WEIGHTS_FILE, Classifier, batches, format_prediction,
    save_bundle, seal_config, snippet,
)
from nlp_pipeline.models.architecture import ModelConfig

POSITIVE = ["a wonderful film", "great acting and a great story", "i loved it", "superb and moving", "a joy to watch",
            "brilliant fun", "wonderful and warm", "great fun for all"]
NEGATIVE = ["a dull film", "terrible acting and a boring story", "i hated it", "awful and tedious", "a pain to watch",
            "boring mess", "dull and cold", "terrible waste of time"]
TEXTS = POSITIVE + NEGATIVE
ODD_TEXTS = ["", "   \n\t ", "i loved it and " * 2000, "Это ужасный фильм", "映画は素晴らしい", "🎬🍿 GREAT!!!"]


def make_tiny_result(max_length: int = 500, linear_nb: list[bool] | None = None, linear_chars: list[int] | None = None,
                     blend_linear: bool = True, **options) -> tuple[ClassifierResult, Corpus]:
    """A 2-class classifier trained for 2 epochs on 12 short reviews (4 more are its test split), ~1 s, then the
    linear and blend stages (linear_nb, linear_chars: linear.nb, linear.chars), composed as a run's bundle is."""
    from nlp_pipeline.models.blend import compose
    from nlp_pipeline.stages.blend import BlendConfig, blend_classifier
    from nlp_pipeline.stages.classifier import ClassifierConfig, train_classifier
    from nlp_pipeline.stages.linear import LinearConfig, fit_linear_stage
    from nlp_pipeline.stages.numericalization import NumericalizationConfig, numericalize
    from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize

    splits = [SPLITS.index("test" if i % 4 == 3 else "train") for i in range(len(TEXTS))]
    corpus = Corpus(labels=np.array([1] * 8 + [0] * 8, np.int32), splits=np.array(splits, np.int8),
                    label_names=["neg", "pos"], texts=list(TEXTS))
    data = numericalize(NumericalizationConfig(min_freq=1), tokenize(TokenizationConfig(workers=1), corpus))
    cfg = ClassifierConfig(model=ModelConfig(embedding_dim=8, hidden_dim=12, num_layers=1), head_hidden_dim=6, batch_size=4, max_length=max_length,
                           stage_epochs=[2], stage_learning_rates=[1e-2],
                           precision="float32", num_threads=1, **options)
    held = carve(data, fraction=0.25)
    rnn = train_classifier(cfg, data, carve=held)
    fields = {name: value for name, value in (("nb", linear_nb), ("chars", linear_chars)) if value is not None}
    linear = fit_linear_stage(LinearConfig(**fields, max_length=max_length), data, held) if blend_linear else None
    return compose(rnn, blend_classifier(BlendConfig(linear=blend_linear), rnn, data, linear, held)), corpus


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_result(linear_nb=[False])[0]  # a plain single-label bundle; NB scaling and characters below


@pytest.fixture(scope="module")
def bundle_dir(tiny, tmp_path_factory) -> Path:
    return save_bundle(tiny, tmp_path_factory.mktemp("bundle") / "model")


@pytest.fixture(scope="module")
def classifier(bundle_dir) -> Classifier:
    return Classifier.load(bundle_dir, num_threads=1)


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def _rewrite(folder: Path, name: str, data: bytes) -> None:
    """Replace a file and record its new checksum (and config.json's), so only the content problem itself is left."""
    (folder / name).write_bytes(data)
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["files"][name] = file_sha256(folder / name)
    (folder / CONFIG_FILE).write_text(json.dumps(seal_config(config)))


# --- saving ---------------------------------------------------------------------------------------------

def test_bundle_files_are_readable_without_pickle(tiny, bundle_dir):
    assert tiny.linear is not None  # blend.linear is on by default
    assert sorted(p.name for p in bundle_dir.iterdir()) == sorted([WEIGHTS_FILE, LINEAR_FILE, CONFIG_FILE, VOCAB_FILE, TOKENIZER_FILE])
    config = json.loads((bundle_dir / CONFIG_FILE).read_text())
    assert config["linear"] == tiny.linear.settings() and LINEAR_FILE in config["files"]
    assert config["format_version"] == FORMAT_VERSION == 6 and config["nlp_pipeline_version"] == "0.1.0"
    assert config["label_names"] == ["neg", "pos"] and config["max_length"] == 500
    assert config["arch"] == tiny.arch and config["arch"]["vocab_size"] == len(tiny.vocab)
    assert json.loads((bundle_dir / VOCAB_FILE).read_text())["itos"] == tiny.vocab.itos
    tokenizer = json.loads((bundle_dir / TOKENIZER_FILE).read_text())
    assert tokenizer["lang"] == "en" and tokenizer["add_bos"] is True and "workers" not in tokenizer
    from safetensors.numpy import load_file

    weights = load_file(bundle_dir / WEIGHTS_FILE)
    assert set(weights) == set(tiny.state_dict)
    for name, value in tiny.state_dict.items():
        assert np.array_equal(weights[name], value), name
    for path in bundle_dir.iterdir():
        assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"


def test_save_accepts_read_only_arrays_and_replaces_only_bundles(tiny, tmp_path):
    frozen = {}
    for name, value in tiny.state_dict.items():
        array = np.array(value)
        array.flags.writeable = False  # like a memory map of the cache
        frozen[name] = array
    import dataclasses

    result = dataclasses.replace(tiny, state_dict=frozen)
    out = save_bundle(result, tmp_path / "model")
    again = save_bundle(result, tmp_path / "model")  # an earlier bundle is replaced
    assert out == again and (again / CONFIG_FILE).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folders left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not a bundle folder"):
        save_bundle(result, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_bundle_gets_the_modes_of_the_umask(tiny, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = save_bundle(tiny, tmp_path / "model")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755                      # not mkdtemp's 0700: others can serve it
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}


def test_save_refuses_a_vocab_that_does_not_fit_the_embedding(tiny, tmp_path):
    import dataclasses

    from nlp_pipeline.artifacts import Vocab

    bad = dataclasses.replace(tiny, vocab=Vocab(tiny.vocab.itos + ["extra"]))
    with pytest.raises(DataError, match="LM/vocab mismatch"):
        save_bundle(bad, tmp_path / "model")
    with pytest.raises(DataError, match="records no tokenizer settings"):
        save_bundle(dataclasses.replace(tiny, tokenizer={}), tmp_path / "model")
    assert not (tmp_path / "model").exists() and list(tmp_path.iterdir()) == []


# --- predicting -------------------------------------------------------------------------------------------

def test_loaded_bundle_predicts_like_the_trained_model(tiny, classifier):
    test_texts = [TEXTS[i] for i in tiny.test_indexes]
    probs = classifier.predict_proba(test_texts)
    assert probs.shape == (4, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, tiny.test_probabilities, rtol=0, atol=1e-6)
    in_memory = Classifier.from_result(tiny, num_threads=1).predict_proba(test_texts)
    np.testing.assert_allclose(probs, in_memory, rtol=0, atol=1e-6)


def test_an_ensemble_bundle_predicts_like_the_trained_ensemble(tmp_path):
    pair = make_tiny_result(members=2)[0]
    loaded = Classifier.load(save_bundle(pair, tmp_path / "model"), num_threads=1)
    probs = loaded.predict_proba([TEXTS[i] for i in pair.test_indexes])
    np.testing.assert_allclose(probs, pair.test_probabilities, rtol=0, atol=1e-6)


def test_one_text_and_a_batch_give_the_same_answer(classifier):
    batch = classifier.predict(TEXTS, batch_size=5)
    assert isinstance(batch, list) and len(batch) == len(TEXTS)
    for text, from_batch in zip(TEXTS, batch):
        alone = classifier.predict(text)
        assert isinstance(alone, dict) and alone["label"] == from_batch["label"]
        assert set(alone["probabilities"]) == {"neg", "pos"}
        for name in ("neg", "pos"):
            assert abs(alone["probabilities"][name] - from_batch["probabilities"][name]) < 1e-6
    rows = classifier.predict_proba(TEXTS, batch_size=3)
    assert np.allclose(rows, np.stack([classifier.predict_proba(t) for t in TEXTS]), rtol=0, atol=1e-6)
    assert classifier.predict_proba(TEXTS[0]).shape == (2,)
    assert [p["label"] for p in batch] == [["neg", "pos"][i] for i in rows.argmax(1)]


def test_empty_long_and_foreign_texts_get_answers(classifier):
    out = classifier.predict(ODD_TEXTS)
    assert len(out) == len(ODD_TEXTS)
    for prediction in out:
        assert prediction["label"] in ("neg", "pos")
        assert abs(sum(prediction["probabilities"].values()) - 1.0) < 1e-5
    xxbos = classifier.vocab.stoi["xxbos"]
    assert [d.tolist() for d in classifier.encode(["", "  "])] == [[xxbos], [xxbos]]
    assert len(classifier.encode(["i loved it and " * 2000])[0]) == 500  # cut to max_length
    assert classifier.encode(["это"])[0].tolist() == [xxbos, classifier.vocab.stoi["xxunk"]]
    assert classifier.predict([]) == [] and classifier.predict_proba([]).shape == (0, 2)


def test_predict_refuses_what_is_not_text(classifier):
    with pytest.raises(DataError, match="text 1 is a int"):
        classifier.predict(["fine", 3])
    with pytest.raises(DataError, match="string or a list of strings"):
        classifier.predict(None)


def test_run_folder_and_lazy_top_level_import(bundle_dir, tmp_path):
    import shutil

    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    shutil.copytree(bundle_dir, run / "model")
    assert Classifier.load(run, num_threads=1).path == run / "model"
    code = ("import sys, nlp_pipeline; assert 'torch' not in sys.modules; "
            "from nlp_pipeline import Classifier; from nlp_pipeline.export.bundle import Classifier as C; "
            "assert Classifier is C; print('ok')")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"


# --- broken bundles -----------------------------------------------------------------------------------------

def test_missing_bundle_folder_and_files(bundle_dir, tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        Classifier.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no bundle in"):
        Classifier.load(tmp_path / "empty")
    copy = _copy(bundle_dir, tmp_path)
    (copy / VOCAB_FILE).unlink()
    with pytest.raises(MissingInputError, match="has no vocab.json"):
        Classifier.load(copy)


def test_corrupted_weights_are_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    data = (copy / WEIGHTS_FILE).read_bytes()
    (copy / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(DataError, match="is corrupted"):
        Classifier.load(copy)
    _rewrite(copy, WEIGHTS_FILE, b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")  # checksum fine, content not
    with pytest.raises(DataError, match="not a valid safetensors file"):
        Classifier.load(copy)


def test_linear_part_is_used_checked_and_optional(tiny, bundle_dir, tmp_path):
    import dataclasses

    from nlp_pipeline.models.blend import blend
    from nlp_pipeline.models.linear import linear_proba

    texts = [TEXTS[i] for i in tiny.test_indexes]
    loaded = Classifier.load(bundle_dir, num_threads=1)
    docs = loaded.encode(texts)
    rnn_only = dataclasses.replace(tiny, linear=None)
    rnn_probs = Classifier.from_result(rnn_only, num_threads=1).predict_proba(texts)
    for weight in (0.0, 0.4, 1.0):  # whatever the weight validation chose, predict applies this blend
        loaded.linear.weight = weight
        expected = blend(rnn_probs, linear_proba(loaded.linear, docs), weight)
        np.testing.assert_allclose(loaded.predict_proba(texts), expected, rtol=0, atol=1e-6)
    copy = _copy(bundle_dir, tmp_path)
    data = (copy / LINEAR_FILE).read_bytes()
    (copy / LINEAR_FILE).write_bytes(data[:-8])
    with pytest.raises(DataError, match="linear.safetensors is corrupted"):
        Classifier.load(copy)
    # a bundle of the RNN alone (blend.linear = false) has no linear file and no "linear" entry
    rnn_bundle = save_bundle(rnn_only, tmp_path / "rnn")
    assert not (rnn_bundle / LINEAR_FILE).exists() and json.loads((rnn_bundle / CONFIG_FILE).read_text())["linear"] is None
    np.testing.assert_allclose(Classifier.load(rnn_bundle, num_threads=1).predict_proba(texts), rnn_probs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_an_old_format_bundle_is_refused_with_one_line(bundle_dir, tmp_path, version):
    """Bundles of formats 1-5 (written by the classifier stage that held the blend) are not read: one format."""
    copy = _copy(bundle_dir, tmp_path)
    config = json.loads((copy / CONFIG_FILE).read_text())
    config.update(format_version=version, nlp_pipeline_version="0.0.9")
    (copy / CONFIG_FILE).write_text(json.dumps(seal_config(config)))
    with pytest.raises(DataError) as error:
        Classifier.load(copy)
    assert str(error.value).startswith(f"bundle made by nlp-pipeline 0.0.9 (format {version}); this is 0.1.0 (format 6): ")
    assert "\n" not in str(error.value)


def test_json_that_does_not_parse_is_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    (copy / CONFIG_FILE).write_text('{"format": "nlp-pipeline-classifier", ')
    with pytest.raises(DataError, match="config.json is not valid JSON"):
        Classifier.load(copy)


def test_a_bundle_of_another_format_version_says_so(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    config = json.loads((copy / CONFIG_FILE).read_text())
    config.update(format_version=FORMAT_VERSION + 1, nlp_pipeline_version="9.0.0")
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(DataError) as error:
        Classifier.load(copy)
    message = str(error.value)
    assert message.startswith(f"bundle made by nlp-pipeline 9.0.0 (format {FORMAT_VERSION + 1}); "
                              f"this is 0.1.0 (format {FORMAT_VERSION}): re-export it with ")
    assert "\n" not in message


def test_vocab_that_does_not_fit_the_embedding_is_refused(bundle_dir, tmp_path):
    copy = _copy(bundle_dir, tmp_path)
    vocab = json.loads((copy / VOCAB_FILE).read_text())
    vocab["itos"].append("one-token-too-many")
    _rewrite(copy, VOCAB_FILE, json.dumps(vocab).encode())
    with pytest.raises(DataError, match="LM/vocab mismatch"):
        Classifier.load(copy)


# --- the command line ---------------------------------------------------------------------------------------

def _predict(args, **kwargs):
    return CliRunner().invoke(main, ["predict", *args], catch_exceptions=False, **kwargs)


def test_cli_predict_arguments_file_stdin_and_json(bundle_dir, classifier, tmp_path):
    expected = classifier.predict(["i loved it", "dull and cold"])
    result = _predict(["--model", str(bundle_dir), "i loved it", "dull and cold"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split("\t") for line in lines] == [
        [p["label"], f"{p['probabilities'][p['label']]:.4f}", text] for p, text in zip(expected, ["i loved it", "dull and cold"])
    ]

    texts = tmp_path / "texts.txt"
    texts.write_text("i loved it\r\n\ndull and cold\n", encoding="utf-8")
    from_file = _predict(["--model", str(bundle_dir), "--file", str(texts)])
    assert from_file.exit_code == 0 and len(from_file.stdout.splitlines()) == 3  # the blank line is kept, not classified
    assert from_file.stdout.splitlines() == [lines[0], "\t\t", lines[1]] and "line 2: empty" in from_file.stderr

    piped = _predict(["--model", str(bundle_dir), "--json"], input="i loved it\nЭто ужасный фильм\n")
    rows = [json.loads(line) for line in piped.output.splitlines()]
    assert [r["text"] for r in rows] == ["i loved it", "Это ужасный фильм"]
    assert rows[0]["label"] == expected[0]["label"]
    assert abs(rows[0]["probabilities"]["pos"] - expected[0]["probabilities"]["pos"]) < 1e-6


def test_cli_predict_errors_are_one_line(bundle_dir, tmp_path):
    missing = _predict(["--model", str(tmp_path / "nowhere"), "text"])
    assert missing.exit_code == 1 and missing.output.startswith("error: no bundle at ") and missing.output.count("\n") == 1
    empty = _predict(["--model", str(bundle_dir)], input="")
    assert empty.exit_code == 1 and "no texts to classify" in empty.output
    no_file = _predict(["--model", str(bundle_dir), "--file", str(tmp_path / "absent.txt")])
    assert no_file.exit_code == 1 and "no text file at" in no_file.output


def test_predict_as_a_real_subprocess(bundle_dir, classifier):
    done = subprocess.run([sys.executable, "-m", "nlp_pipeline.cli", "predict", "--model", str(bundle_dir), "--json"],
                          input="i hated it\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["text"] == "i hated it" and row["label"] == classifier.predict("i hated it")["label"]
    broken = subprocess.run([sys.executable, "-m", "nlp_pipeline.cli", "predict", "--model", str(bundle_dir / "nope"), "x"],
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1 and broken.stderr.startswith("error: no bundle at ") and "Traceback" not in broken.stderr


def test_small_helpers():
    assert snippet("a\tb\nc") == "a b c"
    assert snippet("x" * 100, 10) == "x" * 9 + "…"
    assert list(batches(["a", "b", "c"], 2)) == [["a", "b"], ["c"]]


def make_target_result(target_type: str) -> ClassifierResult:
    """The tiny set-up with a multi-label target (sentiment + 'mentions film') or a regression target (stars)."""
    import dataclasses

    from nlp_pipeline.stages.classifier import ClassifierConfig, train_classifier
    from nlp_pipeline.stages.numericalization import NumericalizationConfig, numericalize
    from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize

    splits = [SPLITS.index("test" if i % 4 == 3 else "train") for i in range(len(TEXTS))]
    corpus = Corpus(labels=np.array([1] * 8 + [0] * 8, np.int32), splits=np.array(splits, np.int8),
                    label_names=["neg", "pos"], texts=list(TEXTS))
    data = numericalize(NumericalizationConfig(min_freq=1), tokenize(TokenizationConfig(workers=1), corpus))
    positive = np.arange(len(TEXTS)) < 8
    if target_type == "multi_label":
        film = np.array(["film" in t for t in TEXTS])
        data = dataclasses.replace(data, labels=np.stack([~positive, positive, film], 1).astype(np.int8),
                                   label_names=["neg", "pos", "film"], target_type="multi_label")
    else:
        data = dataclasses.replace(data, labels=np.where(positive, 4.5, 1.5).astype(np.float32), label_names=["stars"],
                                   target_type="regression")
    cfg = ClassifierConfig(model=ModelConfig(embedding_dim=8, hidden_dim=12, num_layers=1), head_hidden_dim=6, batch_size=4,
                           stage_epochs=[2], stage_learning_rates=[1e-2],
                           precision="float32", num_threads=1)
    return train_classifier(cfg, data, carve=carve(data, fraction=0.25))


@pytest.mark.parametrize("target_type", ["multi_label", "regression"])
def test_multi_label_and_regression_bundles_round_trip_and_predict(target_type, tmp_path):
    result = make_target_result(target_type)
    folder = save_bundle(result, tmp_path / "model")
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["arch"]["target_type"] == target_type and config["format_version"] == FORMAT_VERSION
    loaded = Classifier.load(folder, num_threads=1)
    texts = ["i loved this film", "boring", ""]
    outputs = loaded._outputs(texts, 64)
    np.testing.assert_allclose(outputs, Classifier.from_result(result, num_threads=1)._outputs(texts, 64), atol=1e-6)
    one, batch = loaded.predict(texts[0]), loaded.predict(texts)
    if target_type == "multi_label":
        assert set(one) == {"labels", "probabilities"} and list(one["probabilities"]) == ["neg", "pos", "film"]
        threshold = config["arch"]["threshold"]  # chosen on validation, kept in the bundle
        assert threshold == result.arch["threshold"] and threshold in THRESHOLDS
        assert one["labels"] == [n for n, p in one["probabilities"].items() if p >= threshold]
        assert loaded.predict_proba(texts).shape == (3, 3) and "3 multi-label labels" in repr(loaded)
        with pytest.raises(DataError, match="not numbers"):
            loaded.predict_values(texts)
    else:
        assert set(one) == {"value"} and one["value"] == pytest.approx(float(outputs[0, 0]), abs=1e-5)
        assert [p["value"] for p in batch] == pytest.approx(loaded.predict_values(texts).tolist(), abs=1e-5)
        assert 0.0 < loaded.predict_values("superb") < 6.0  # in stars, not standardised
        assert "regression of 'stars'" in repr(loaded)
        with pytest.raises(DataError, match="predicts a number"):
            loaded.predict_proba(texts)
    # the command line: a TSV line and a JSON line per text
    tsv = _predict(["--model", str(folder), "i loved this film"])
    assert tsv.exit_code == 0, tsv.output
    fields = tsv.output.rstrip("\n").split("\t")
    row = json.loads(_predict(["--model", str(folder), "--json"], input="i loved this film\n").output)
    if target_type == "multi_label":
        assert fields[0] == "|".join(one["labels"]) and len(fields) == 3 and row["labels"] == one["labels"]
    else:
        assert float(fields[0]) == pytest.approx(one["value"], rel=1e-4) and fields[1] == "i loved this film"
        assert row["value"] == pytest.approx(one["value"], abs=1e-5) and "label" not in row


def test_format_prediction_of_each_target_type():
    assert format_prediction("t", {"value": 3.14159}, False) == "3.14159\tt"
    assert format_prediction("t", {"labels": ["a", "c"], "probabilities": {"a": 0.9, "b": 0.1, "c": 0.6}}, False) == "a|c\t0.6000\tt"
    assert format_prediction("t", {"labels": [], "probabilities": {"a": 0.3, "b": 0.1}}, False) == "\t0.3000\tt"
    assert json.loads(format_prediction("t", {"value": 2.5}, True)) == {"text": "t", "value": 2.5}


def test_a_linear_model_with_character_ngrams_round_trips(tmp_path):
    result, _ = make_tiny_result(linear_chars=[3], linear_nb=[False])
    result.linear.weight = max(result.linear.weight, 0.5)  # make sure the linear part counts in the answer
    assert result.linear.char_ngrams == 3 and len(result.linear.char_keys) > 0
    folder = save_bundle(result, tmp_path / "model")
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["format_version"] == FORMAT_VERSION and config["linear"]["char_ngrams"] == 3
    loaded = Classifier.load(folder, num_threads=1)
    texts = ["a wonderful film", "dull and boring", "superbly moving", ""]
    np.testing.assert_allclose(loaded.predict_proba(texts), Classifier.from_result(result, num_threads=1).predict_proba(texts),
                               atol=1e-6)


def test_a_linear_model_with_nb_scaling_round_trips(tmp_path):
    result, _ = make_tiny_result(linear_nb=[True])
    result.linear.weight = max(result.linear.weight, 0.5)  # make sure the linear part counts in the answer
    assert len(result.linear.nb_ratio) == len(result.linear.idf)
    folder = save_bundle(result, tmp_path / "model")
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["format_version"] == FORMAT_VERSION and config["linear"]["nb"] is True
    loaded = Classifier.load(folder, num_threads=1)
    np.testing.assert_array_equal(loaded.linear.nb_ratio, result.linear.nb_ratio)
    texts = ["a wonderful film", "dull and boring", "superbly moving", ""]
    np.testing.assert_allclose(loaded.predict_proba(texts), Classifier.from_result(result, num_threads=1).predict_proba(texts),
                               atol=1e-6)
    # the ratios missing from linear.safetensors: a one-line error, not a wrong answer
    from safetensors.numpy import load_file, save_file

    arrays = {k: v for k, v in load_file(folder / LINEAR_FILE).items() if k != "nb_ratio"}
    save_file(arrays, folder / LINEAR_FILE)
    _rewrite(folder, LINEAR_FILE, (folder / LINEAR_FILE).read_bytes())
    with pytest.raises(DataError, match="does not fit config.json's linear settings"):
        Classifier.load(folder, num_threads=1)
