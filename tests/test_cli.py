"""The CLI through click's CliRunner and as a real subprocess, on a tiny corpus written under tmp_path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nlp_pipeline.cli import main

POSITIVE = ["a wonderful film", "great acting and a great story", "i loved it", "superb and moving", "a joy to watch",
            "brilliant fun", "wonderful and warm", "great fun for all"]
NEGATIVE = ["a dull film", "terrible acting and a boring story", "i hated it", "awful and tedious", "a pain to watch",
            "boring mess", "dull and cold", "terrible waste of time"]


@pytest.fixture
def corpus_dir(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    train = [r for i, r in enumerate(rows) if i % 4 != 3]
    test = [r for i, r in enumerate(rows) if i % 4 == 3]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return folder


FAST = ["--set", "tokenization.workers=1", "--set", "numericalization.min_freq=1", "--set", "lsa.n_components=3",
        "--set", "lsa.min_df=1"]


def _invoke(args, tmp_path):
    runner = CliRunner()
    return runner.invoke(main, [*args], env={"NLP_PIPELINE_CACHE": str(tmp_path / "cache")}, catch_exceptions=False)


def _run_args(corpus_dir, tmp_path, *extra):
    return ["run", "--corpus", str(corpus_dir), "--runs-dir", str(tmp_path / "runs"), "--until", "lsa", *FAST, *extra]


def test_help_is_instant_and_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "show", "cache", "corpora"):
        assert command in result.output
    assert "--set" in CliRunner().invoke(main, ["run", "--help"]).output


def test_run_then_rerun_is_all_cached(corpus_dir, tmp_path):
    first = _invoke(_run_args(corpus_dir, tmp_path), tmp_path)
    assert first.exit_code == 0, first.output
    assert "lsa" in first.stdout and "tfidf_logreg_accuracy" in first.stdout
    metrics = json.loads((tmp_path / "runs" / "tiny" / "metrics.json").read_text())
    assert list(metrics) == ["corpus", "tokenization", "validation", "lsa"]   # --until lsa: only what lsa needs
    assert all(m["status"] == "ran" for m in metrics.values())
    assert (tmp_path / "runs" / "tiny" / "config.toml").is_file()
    second = _invoke(_run_args(corpus_dir, tmp_path), tmp_path)
    assert second.exit_code == 0
    assert second.stderr.count("cache hit") == 4 and "running" not in second.stderr
    shown = _invoke(["show", "--corpus", str(corpus_dir), *FAST], tmp_path)
    assert shown.exit_code == 0
    states = {line.split()[0]: line.split()[1] for line in shown.stdout.splitlines()}
    assert states["corpus"] == states["tokenization"] == states["validation"] == states["lsa"] == "hit"
    assert states["numericalization"] == "miss"


def test_changing_lsa_setting_reruns_only_lsa(corpus_dir, tmp_path):
    _invoke(_run_args(corpus_dir, tmp_path), tmp_path)
    result = _invoke(_run_args(corpus_dir, tmp_path, "--set", "lsa.n_components=2"), tmp_path)
    assert result.exit_code == 0
    running = [line.split()[0] for line in result.stderr.splitlines() if "running" in line]
    assert running == ["lsa"]


def test_resolved_config_file_reproduces_the_run(corpus_dir, tmp_path):
    _invoke(_run_args(corpus_dir, tmp_path), tmp_path)
    config = tmp_path / "runs" / "tiny" / "config.toml"
    again = _invoke(["run", "--config", str(config), "--runs-dir", str(tmp_path / "runs2"), "--until", "lsa"], tmp_path)
    assert again.exit_code == 0
    assert again.stderr.count("cache hit") == 4


@pytest.mark.parametrize(
    "args, code, phrase",
    [
        (["run", "--corpus", "/no/such/folder"], 1, "does not exist"),
        (["run", "--set", "lsa.n_componentz=5"], 2, "unknown setting lsa.n_componentz"),
        (["run", "--set", "lsa.n_components=many"], 2, "whole number"),
        (["run", "--set", "nosuchstage.x=1"], 2, "unknown config section"),
        (["run", "--set", "embeddings.glove_window=5"], 2, "embeddings.glove_window is now embeddings.glove.window"),
        (["run", "--set", "embeddings.glove.windw=5"], 2, "unknown setting embeddings.glove.windw"),
        (["run", "--set", "embeddings.methods=[\"word2vec\"]", "--set", "embeddings.glove.window=5"], 2,
         "embeddings.glove.window cannot apply: 'glove' is not in embeddings.methods"),
        (["run", "--until", "nosuchstage"], 2, "unknown stage"),
        (["run", "--corpus", "no_such_card"], 2, "no_such_card"),
    ],
)
def test_user_mistakes_are_one_line_errors_and_write_nothing(corpus_dir, tmp_path, args, code, phrase):
    args = [a if a != "run" else "run" for a in args]
    if "--corpus" not in args:
        args = [*args, "--corpus", str(corpus_dir)]
    result = _invoke([*args, "--runs-dir", str(tmp_path / "runs")], tmp_path)
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], result.stderr
    assert "Traceback" not in result.output
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p for p in cache.rglob("meta.json"))
    assert not (tmp_path / "runs").exists()


def test_unwritable_cache_dir(corpus_dir, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    result = CliRunner().invoke(main, ["run", "--corpus", str(corpus_dir), "--cache-dir", str(blocker / "cache"),
                                       "--runs-dir", str(tmp_path / "runs"), *FAST])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: cache directory") and "--cache-dir" in result.stderr


def test_cache_ls_verify_gc(corpus_dir, tmp_path):
    _invoke(_run_args(corpus_dir, tmp_path), tmp_path)
    listed = _invoke(["cache", "ls"], tmp_path)
    assert listed.exit_code == 0 and sum(s in listed.stdout for s in ("corpus", "tokenization", "validation", "lsa")) == 4
    assert _invoke(["cache", "verify"], tmp_path).exit_code == 0
    pickle = next((tmp_path / "cache" / "lsa").glob("*/artifact.pkl"))
    pickle.write_bytes(pickle.read_bytes()[:-10])
    verified = _invoke(["cache", "verify"], tmp_path)
    assert verified.exit_code == 1 and "CORRUPT  lsa" in verified.stdout
    gc = _invoke(["cache", "gc", "--runs-dir", str(tmp_path / "runs")], tmp_path)
    assert gc.exit_code == 0 and "0 artifacts removed" in gc.stdout
    checkpoint = tmp_path / "cache" / "lsa" / f".checkpoint-{'c' * 64}"
    checkpoint.mkdir()
    (checkpoint / "state.bin").write_bytes(b"x" * 2_000_000)
    kept = _invoke(["cache", "gc", "--runs-dir", str(tmp_path / "runs"), "--keep-checkpoints"], tmp_path)
    assert kept.exit_code == 0 and checkpoint.is_dir() and "checkpoints" not in kept.stdout
    refused = _invoke(["cache", "gc", "--runs-dir", str(tmp_path / "no-runs")], tmp_path)  # a wrong --runs-dir
    assert refused.exit_code == 2 and "--allow-no-runs" in refused.stderr and len(list((tmp_path / "cache").rglob("meta.json"))) == 4
    gc_all = _invoke(["cache", "gc", "--runs-dir", str(tmp_path / "no-runs"), "--allow-no-runs"], tmp_path)
    assert "4 artifacts removed" in gc_all.stdout
    assert "1 checkpoints of interrupted training removed (2.0 MB)" in gc_all.stdout and not checkpoint.exists()
    assert not list((tmp_path / "cache").rglob("meta.json"))


def test_real_subprocess(corpus_dir, tmp_path):
    env = dict(os.environ, NLP_PIPELINE_CACHE=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "nlp_pipeline.cli", *_run_args(corpus_dir, tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "results in" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "nlp_pipeline.cli", "run", "--corpus", str(tmp_path / "missing")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")


def test_export_vectors_and_projector(corpus_dir, tmp_path):
    emb = ["--set", "embeddings.methods=[\"word2vec\"]", "--set", "embeddings.min_count=1", "--set", "embeddings.vector_size=8"]
    missing = _invoke(["export", "vectors", "--corpus", str(corpus_dir), *FAST, *emb, "--out", str(tmp_path / "v.txt")], tmp_path)
    assert missing.exit_code == 1
    assert "run: nlp-pipeline run --until embeddings:word2vec" in missing.stderr and not (tmp_path / "v.txt").exists()
    ran = _invoke(["run", "--corpus", str(corpus_dir), "--runs-dir", str(tmp_path / "runs"), "--until", "embeddings:word2vec",
                   *FAST, *emb], tmp_path)
    assert ran.exit_code == 0, ran.output
    out = _invoke(["export", "vectors", "--corpus", str(corpus_dir), *FAST, *emb, "--out", str(tmp_path / "v.bin"),
                   "--format", "word2vec-binary"], tmp_path)
    assert out.exit_code == 0, out.output
    from gensim.models import KeyedVectors

    vectors = KeyedVectors.load_word2vec_format(str(tmp_path / "v.bin"), binary=True)
    assert vectors.vector_size == 8 and "great" in vectors.key_to_index
    projector = _invoke(["export", "projector", "--corpus", str(corpus_dir), *FAST, *emb, "--source", "word2vec",
                         "--out", str(tmp_path / "proj")], tmp_path)
    assert projector.exit_code == 0, projector.output
    config = (tmp_path / "proj" / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "word2vec/vectors.tsv"' in config
    rows = (tmp_path / "proj" / "word2vec" / "vectors.tsv").read_text().splitlines()
    metadata = (tmp_path / "proj" / "word2vec" / "metadata.tsv").read_text().splitlines()
    assert len(metadata) == len(rows) + 1 and metadata[0] == "word\tfrequency"


TINY_LM = ["--set", "embeddings.methods=[]", "--set", "pretrain_lm.weights=none", "--set", "pretrain_lm.corpus=none",
           "--set", "model.embedding_dim=8", "--set", "model.hidden_dim=12", "--set", "model.num_layers=1",
           "--set", "finetune_lm.batch_size=2", "--set", "finetune_lm.bptt_length=5", "--set", "finetune_lm.epochs=1",
           "--set", "classifier.batch_size=4",
           "--set", "classifier.stage_epochs=[1, 1]", "--set", "classifier.stage_learning_rates=[0.01, 0.005]"]


def test_full_run_writes_bundle_and_report_then_predict_and_export(corpus_dir, tmp_path):
    args = ["--corpus", str(corpus_dir), *FAST, *TINY_LM]
    ran = _invoke(["run", *args, "--runs-dir", str(tmp_path / "runs")], tmp_path)
    assert ran.exit_code == 0, ran.output
    run_dir = tmp_path / "runs" / "tiny"
    assert "pretrain_lm" not in ran.stderr                      # pretrain_lm.corpus=none skips pretraining
    for name in ("report.md", "confusion_matrix.png", "training_curves.png", "model/model.safetensors", "model/config.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics)[-3:] == ["classifier", "linear", "blend"]
    assert {"rnn_test_accuracy", "linear_test_accuracy", "test_accuracy", "blend_weight"} <= set(metrics["blend"])  # its parts too
    predicted = _invoke(["predict", "--model", str(run_dir), "--json", "a wonderful film", ""], tmp_path)
    assert predicted.exit_code == 0, predicted.output
    lines = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(lines) == 2 and lines[0]["label"] in ("neg", "pos") and lines[1]["label"] is None  # "" is not classified
    assert abs(sum(lines[0]["probabilities"].values()) - 1.0) < 1e-5
    exported = _invoke(["export", "projector", *args, "--source", "classifier-docs", "--out", str(tmp_path / "proj")], tmp_path)
    assert exported.exit_code == 0, exported.output
    metadata = (tmp_path / "proj" / "classifier-docs" / "metadata.tsv").read_text().splitlines()
    vectors = (tmp_path / "proj" / "classifier-docs" / "vectors.tsv").read_text().splitlines()
    assert metadata[0] == "label\tsplit\ttext" and len(metadata) == len(vectors) + 1 == 17
    assert len(vectors[0].split("\t")) == 3 * 8                 # concat pooling of the 8-dim last layer


def test_export_vectors_of_a_pretrained_file(corpus_dir, tmp_path):
    """A user's own vectors file goes through the embeddings stage (kept words only) and out in word2vec format."""
    source = tmp_path / "mine.txt"
    source.write_text("great 0.5 -1.0 2.0\nfilm 1.5 0.25 -0.5\nunknownword 9 9 9\n", encoding="utf-8")
    emb = ["--set", "embeddings.methods=[\"pretrained\"]", "--set", "embeddings.min_count=1", "--set", "embeddings.vector_size=3",
           "--set", f"embeddings.pretrained.path={source}"]
    ran = _invoke(["run", "--corpus", str(corpus_dir), "--runs-dir", str(tmp_path / "runs"), "--until", "embeddings:pretrained",
                   *FAST, *emb], tmp_path)
    assert ran.exit_code == 0, ran.output
    out = _invoke(["export", "vectors", "--corpus", str(corpus_dir), *FAST, *emb, "--source", "pretrained",
                   "--out", str(tmp_path / "v.txt")], tmp_path)
    assert out.exit_code == 0, out.output
    from gensim.models import KeyedVectors

    vectors = KeyedVectors.load_word2vec_format(str(tmp_path / "v.txt"))
    assert "unknownword" not in vectors.key_to_index  # not a corpus word: pretrained.vocabulary = "corpus"
    assert vectors["great"].tolist() == [0.5, -1.0, 2.0] and vectors["film"].tolist() == [1.5, 0.25, -0.5]


def test_an_empty_pretraining_corpus_folder_is_named_in_one_line(corpus_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    args = ["--corpus", str(corpus_dir), *FAST, *TINY_LM, "--set", f"pretrain_lm.corpus={tmp_path / 'empty'}"]
    ran = _invoke(["run", *args, "--runs-dir", str(tmp_path / "runs")], tmp_path)
    assert ran.exit_code == 1
    lines = ran.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: the pretraining corpus (pretrain_lm.corpus = '{tmp_path / 'empty'}'; 'none' skips pretraining): ")
    assert "holds no corpus files" in lines[-1] and "Traceback" not in ran.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # refused before anything ran


@pytest.mark.parametrize("target_type", ["multi_label", "regression"])
def test_a_multi_label_or_regression_corpus_runs_end_to_end(target_type, tmp_path):
    """From a JSONL corpus with list or number labels through every stage to the report, predict and the projector."""
    folder = tmp_path / "targets"
    folder.mkdir()
    rows = []
    for i, text in enumerate(POSITIVE + NEGATIVE):
        positive = i < len(POSITIVE)
        if target_type == "multi_label":
            label = ["pos" if positive else "neg"] + (["film"] if "film" in text else [])
        else:
            label = 4.5 if positive else 1.5
        rows.append({"text": text, "label": label})
    for split, keep in (("train", lambda i: i % 4 != 3), ("test", lambda i: i % 4 == 3)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if keep(i)))
    args = ["--corpus", str(folder), *FAST, *TINY_LM, "--target-type", target_type]
    ran = _invoke(["run", *args, "--runs-dir", str(tmp_path / "runs")], tmp_path)
    assert ran.exit_code == 0, ran.output
    run_dir = tmp_path / "runs" / "targets"
    report = (run_dir / "report.md").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert not (run_dir / "confusion_matrix.png").exists()
    predicted = _invoke(["predict", "--model", str(run_dir), "--json", "a wonderful film"], tmp_path)
    assert predicted.exit_code == 0, predicted.output
    line = json.loads(predicted.stdout)
    if target_type == "multi_label":
        assert "micro-F1" in report and "test_micro_f1" in metrics["classifier"]
        assert set(line["probabilities"]) == {"film", "neg", "pos"} and set(line["labels"]) <= {"film", "neg", "pos"}
    else:
        assert "R²" in report and "test_r2" in metrics["classifier"] and (run_dir / "predicted_vs_true.png").is_file()
        assert set(line) == {"text", "value"} and isinstance(line["value"], float)
    exported = _invoke(["export", "projector", *args, "--source", "classifier-docs", "--out", str(tmp_path / "proj")], tmp_path)
    assert exported.exit_code == 0, exported.output
    labels = [row.split("\t")[0] for row in (tmp_path / "proj" / "classifier-docs" / "metadata.tsv").read_text().splitlines()[1:]]
    assert ("neg|film" in labels or "film|neg" in labels) if target_type == "multi_label" else "4.5" in labels


def test_the_target_type_choices_are_the_artifacts():
    from nlp_pipeline.artifacts import TARGET_TYPES

    option = next(o for o in main.commands["run"].params if o.name == "target_type")
    assert tuple(option.type.choices) == TARGET_TYPES


def test_both_directions_end_to_end_the_bundle_predicts_like_the_run(corpus_dir, tmp_path):
    """classifier.direction = both without pretraining: two fine-tuned LMs, one classifier of each direction,
    a report, and a bundle whose predictions are the run's test probabilities."""
    args = ["--corpus", str(corpus_dir), *FAST, *TINY_LM, "--set", "classifier.direction=both",
            "--set", "blend.linear=false", "--set", "classifier.precision=float32"]
    ran = _invoke(["run", *args, "--runs-dir", str(tmp_path / "runs")], tmp_path)
    assert ran.exit_code == 0, ran.output
    assert "finetune_lm:backward" in ran.stderr
    run_dir = tmp_path / "runs" / "tiny"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"finetune_lm", "finetune_lm:backward", "classifier"} <= set(metrics)
    assert json.loads((run_dir / "model" / "config.json").read_text())["format_version"] == 6
    from nlp_pipeline.export.bundle import Classifier
    from nlp_pipeline.core.store import ArtifactStore

    result = ArtifactStore(tmp_path / "cache").load("classifier", metrics["classifier"]["key"])
    texts = [json.loads(line)["text"] for line in (corpus_dir / "test.jsonl").read_text().splitlines()]
    probs = Classifier.load(run_dir / "model", num_threads=1).predict_proba(texts)
    np.testing.assert_allclose(probs, result.test_probabilities, atol=1e-5)
    exported = _invoke(["export", "lm", *args, "--source", "finetune_lm:backward", "--out", str(tmp_path / "bwd")], tmp_path)
    assert exported.exit_code == 0, exported.output
    assert "--set pretrain_lm.backward_weights=" in exported.stdout
