"""The TensorBoard log of a run, read back with tensorboard's own reader (EventAccumulator): live curves from the
training loops, the same epoch curves rebuilt from a cached artifact's history, the config text and projector in
runs/<name>/tensorboard/, a killed run's live files still readable and removed by the next run, and a one-line
notice where tensorboard is missing."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import TINY_RUN as TINY, write_tiny_corpus
from nlp_pipeline.cli import main
from nlp_pipeline.export import tensorboard_log
from nlp_pipeline.export.tensorboard_log import LiveLog, write_history
from nlp_pipeline.models.observers import observe

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                reason="tensorboard is not installed (pip install -e '.[dev]')")



def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of one TensorBoard run folder: tag -> [(step, value)], as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def texts(folder: Path) -> dict[str, str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    accumulator.Reload()
    out = {}
    for tag in accumulator.Tags()["tensors"]:
        event = accumulator.Tensors(tag)[-1]
        out[tag.split("/")[0]] = event.tensor_proto.string_val[0].decode("utf-8")
    return out


@pytest.fixture
def corpus_dir(tmp_path):
    return write_tiny_corpus(tmp_path / "tiny")


def _invoke(args, tmp_path):
    return CliRunner().invoke(main, args, env={"NLP_PIPELINE_CACHE": str(tmp_path / "cache")}, catch_exceptions=False)


def _tiny_loops(live: LiveLog | None):
    """A tiny LM (two phases) and a tiny classifier (two unfreezing stages) trained under `live`."""
    import torch

    from nlp_pipeline.models import training
    from nlp_pipeline.models.heads import ClassifierNet, LanguageModelNet
    from nlp_pipeline.models.rnn import AwdEncoder, Dropouts

    rng = np.random.default_rng(0)
    offsets = np.arange(0, 24 * 26, 26)
    ids = rng.integers(2, 20, size=int(offsets[-1]))
    labels = np.arange(23) % 2
    torch.manual_seed(0)

    def encoder():
        return AwdEncoder(vocab_size=20, embedding_dim=8, hidden_dim=12, num_layers=2, rnn_type="lstm", pad_id=1,
                          dropouts=Dropouts(0.1, 0.1, 0.1, 0.1))

    lm = LanguageModelNet(encoder(), output_dropout=0.1)
    groups = lm.layer_groups()
    optimizer = training.make_optimizer(groups, training.discriminative_lrs(0.01, len(groups)), 0.01, (0.7, 0.99))
    lm_history = []
    with observe(live):
        for epochs, trainable in ((1, 1), (2, len(groups))):  # a frozen phase, then all layers
            training.set_trainable(groups, trainable)
            lm_history += training.fit_language_model(
                lm, optimizer, ids, offsets, np.arange(20), ids[:40].reshape(2, 20), epochs=epochs, batch_size=2, bptt=5,
                variable_bptt=False, schedule="stlr", warmup_fraction=0.1, clip=0.4, activation_regularization=0.0,
                temporal_activation_regularization=0.0, rng=np.random.default_rng(0), device=torch.device("cpu"),
                phase="finetune")
        classifier = ClassifierNet(encoder(), num_classes=2, head_hidden_dim=6)
        classifier_history, _, _ = training.fit_classifier(
            classifier, ids, offsets, labels, np.arange(16), np.arange(16, 23), stages=[(1, 2, 0.01), (3, 1, 0.005)],
            discriminative_factor=2.6, batch_size=4, max_length=50, pad_id=1, schedule="stlr", warmup_fraction=0.1,
            weight_decay=0.01, betas=(0.7, 0.99), clip=0.4, patience=0, rng=np.random.default_rng(0),
            device=torch.device("cpu"))
    return lm_history, classifier_history


def test_live_log_has_step_and_epoch_curves_and_history_rebuilds_the_epoch_curves(tmp_path):
    live = LiveLog(tmp_path / "live")
    lm_history, classifier_history = _tiny_loops(live)
    live.close()
    # outside the runner the loop's label names the folder (in a run: the stage instance, core.runner.computing())
    lm_folder, classifier_folder = tmp_path / "live" / "finetune", tmp_path / "live" / "classifier"

    lm = scalars(lm_folder)
    assert [v for _, v in lm["epoch/val_perplexity"]] == pytest.approx([r["val_perplexity"] for r in lm_history])
    assert [s for s, _ in lm["epoch/val_perplexity"]] == [1, 2, 3]
    steps = lm["step/train_loss"]
    assert [s for s, _ in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 6
    assert all(math.isfinite(v) and v > 0 for _, v in steps)
    top = len([t for t in lm if t.startswith("step/learning_rate/group_")]) - 1
    assert top >= 2 and all(len(lm[f"step/learning_rate/group_{i}"]) == len(steps) for i in range(top + 1))
    first, last = lm["step/learning_rate/group_0"], lm[f"step/learning_rate/group_{top}"]
    assert first[0][1] == 0.0 and last[0][1] > 0.0             # the frozen phase trains the top group only
    assert first[-1][1] > 0.0 and last[-1][1] > first[-1][1]     # then all, with discriminative LRs

    clf = scalars(classifier_folder)
    assert [v for _, v in clf["epoch/val_accuracy"]] == pytest.approx([r["val_accuracy"] for r in classifier_history])
    assert [v for _, v in clf["epoch/unfreezing_stage"]] == [1.0, 1.0, 2.0]       # the stage boundary after epoch 2
    assert [v for _, v in clf["epoch/trainable_groups"]] == [1.0, 1.0, 3.0]
    top = len([t for t in clf if t.startswith("epoch/learning_rate/group_")]) - 1
    assert clf[f"epoch/learning_rate/group_{top}"][0][1] == pytest.approx(0.01)
    for i in range(top + 1):  # stage 1 trains the top group, stage 2 the top 3 (discriminative: lower groups less)
        series = [v for _, v in clf[f"epoch/learning_rate/group_{i}"]]
        assert (series[0] > 0) == (i == top) and (series[2] > 0) == (i >= top - 2), (i, series)
    assert len(clf["step/train_loss"]) == 3 * 4                                   # 16 documents in batches of 4, 3 epochs

    rebuilt = tmp_path / "rebuilt"
    write_history(rebuilt / "lm", "lm", lm_history)
    write_history(rebuilt / "classifier", "classifier", classifier_history)
    for live_folder, kind in ((lm_folder, "lm"), (classifier_folder, "classifier")):
        again = scalars(rebuilt / kind)
        original = {tag: series for tag, series in scalars(live_folder).items() if tag.startswith("epoch/")}
        assert set(again) == set(original)                                     # rebuilt: the epoch curves only
        for tag, series in original.items():
            assert [s for s, _ in again[tag]] == [s for s, _ in series]
            assert [v for _, v in again[tag]] == pytest.approx([v for _, v in series], rel=1e-6), tag
    assert "stage 2 from epoch 3" in texts(rebuilt / "classifier")["unfreezing"]


def test_a_broken_writer_never_stops_training(tmp_path, caplog):
    (tmp_path / "file").write_text("a file where the live folder should go")
    live = LiveLog(tmp_path / "file" / "live")
    lm_history, classifier_history = _tiny_loops(live)
    assert len(lm_history) == 3 and len(classifier_history) == 3 and live.failed
    assert "TensorBoard live log stopped" in caplog.text


def test_run_folder_log_live_then_rebuilt_for_cache_hits(corpus_dir, tmp_path):
    runs = tmp_path / "runs"
    first = _invoke(["run", "--corpus", str(corpus_dir), *TINY, "--runs-dir", str(runs)], tmp_path)
    assert first.exit_code == 0, first.output
    log = runs / "tiny" / "tensorboard"
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]                    # the hidden live folder is gone
    assert not list(runs.rglob(".*"))                                           # nothing hidden in the run folder
    lm, clf = scalars(log / "finetune_lm"), scalars(log / "classifier")
    lm_history = _history(tmp_path, "finetune_lm")
    assert [v for _, v in lm["epoch/val_perplexity"]] == pytest.approx([r["val_perplexity"] for r in lm_history])
    assert len(lm["step/train_loss"]) >= 2 and "step/learning_rate/group_0" in lm
    metrics = json.loads((runs / "tiny" / "metrics.json").read_text())
    assert max(v for _, v in clf["epoch/val_accuracy"]) == pytest.approx(metrics["classifier"]["val_accuracy"])
    assert "step/train_loss" in clf and "epoch/unfreezing_stage" in clf
    root = texts(log)
    assert "[classifier]" in root["config"] and "stage_learning_rates = [0.01, 0.005]" in root["config"]
    assert "| finetune_lm | ran |" in root["timings"]
    projector = (log / "projector_config.pbtxt").read_text()
    for name in ("word2vec", "lm", "lsa-docs", "classifier-docs"):
        assert f'tensor_name: "{name}"' in projector
    assert (log / "classifier-docs" / "metadata.tsv").read_text().startswith("label\tsplit\ttext\n")
    assert json.loads((log / "sources.json").read_text())["finetune_lm"] == metrics["finetune_lm"]["key"]

    # another run folder from the same cache: nothing trains, the curves come from the stored histories
    second = _invoke(["run", "--corpus", str(corpus_dir), *TINY, "--runs-dir", str(runs), "--name", "again"], tmp_path)
    assert second.exit_code == 0, second.output
    again = runs / "again" / "tensorboard"
    lm_again, clf_again = scalars(again / "finetune_lm"), scalars(again / "classifier")
    assert sorted(lm_again) == sorted(t for t in lm if t.startswith("epoch/"))
    for tag in lm_again:
        assert [v for _, v in lm_again[tag]] == pytest.approx([v for _, v in lm[tag]], rel=1e-6)
    assert [v for _, v in clf_again["epoch/val_accuracy"]] == pytest.approx([v for _, v in clf["epoch/val_accuracy"]])
    assert "| classifier | hit |" in texts(again)["timings"]

    # the same run folder again: the log is linked over (step curves kept), the config text rewritten
    third = _invoke(["run", "--corpus", str(corpus_dir), *TINY, "--runs-dir", str(runs)], tmp_path)
    assert third.exit_code == 0, third.output
    assert scalars(log / "finetune_lm") == lm
    assert "| finetune_lm | hit |" in texts(log)["timings"]


def _history(tmp_path: Path, stage: str) -> list[dict]:
    """The stored history of the run folder runs/tiny's `stage` artifact, from the cache."""
    from nlp_pipeline.core.store import ArtifactStore

    key = json.loads((tmp_path / "runs" / "tiny" / "metrics.json").read_text())[stage]["key"]
    return ArtifactStore(tmp_path / "cache").load(stage, key).history


def test_without_tensorboard_a_run_says_so_in_one_line_and_writes_no_log(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(tensorboard_log, "available", lambda: False)
    ran = _invoke(["run", "--corpus", str(corpus_dir), *TINY, "--runs-dir", str(tmp_path / "runs")], tmp_path)
    assert ran.exit_code == 0, ran.output
    assert ran.stderr.count(tensorboard_log.NOTICE) == 1
    assert not (tmp_path / "runs" / "tiny" / "tensorboard").exists() and (tmp_path / "runs" / "tiny" / "report.md").is_file()


def test_a_killed_run_leaves_readable_live_curves_that_the_next_run_removes(corpus_dir, tmp_path):
    runs = tmp_path / "runs"
    env = dict(os.environ, NLP_PIPELINE_CACHE=str(tmp_path / "cache"))
    long_lm = [*TINY, "--set", "finetune_lm.epochs=100000"]
    process = subprocess.Popen([sys.executable, "-m", "nlp_pipeline.cli", "run", "--corpus", str(corpus_dir), *long_lm,
                                "--runs-dir", str(runs)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, found = time.monotonic() + 180, None
        while time.monotonic() < deadline and process.poll() is None:
            live = [p for p in runs.glob(".tiny.live.*")] if runs.is_dir() else []
            folders = [p / "finetune_lm" for p in live if (p / "finetune_lm").is_dir()]
            if folders and len(scalars(folders[0]).get("epoch/val_perplexity", [])) >= 2:
                found = folders[0]
                break
            time.sleep(0.5)
        assert found is not None, f"no live curves within 180 s: {process.stderr.read().decode()[-2000:] if process.poll() is not None else ''}"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (runs / "tiny").exists()                                        # the run folder never half-written
    (event_file,) = [p for p in found.iterdir() if p.name.startswith("events.out.tfevents")]
    before = scalars(found)
    assert len(before["epoch/val_perplexity"]) >= 2 and before["step/train_loss"]
    # a kill inside a record: TensorBoard reads the whole records before it and nothing breaks
    with open(event_file, "ab") as handle:
        handle.write(b"\x20\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03")
    torn = scalars(found)
    assert torn["epoch/val_perplexity"][:2] == before["epoch/val_perplexity"][:2]
    # the next run (any stage) removes the dead run's live folder
    ran = _invoke(["run", "--corpus", str(corpus_dir), *TINY, "--runs-dir", str(runs), "--until", "corpus"], tmp_path)
    assert ran.exit_code == 0, ran.output
    assert not list(runs.glob(".tiny.live.*"))


def test_tensorboard_serves_the_runs_folder(corpus_dir, tmp_path):
    """A real TensorBoard server on --logdir runs/ (loopback) lists the run's stages, serves their scalars and the
    config text, and its projector finds the run's embeddings in the same folder."""
    import socket
    import urllib.error
    import urllib.parse
    import urllib.request

    runs = tmp_path / "runs"
    ran = _invoke(["run", "--corpus", str(corpus_dir), *TINY, "--runs-dir", str(runs)], tmp_path)
    assert ran.exit_code == 0, ran.output
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def get(path: str, **params) -> object:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/{path}{query}", timeout=30) as response:
            return json.loads(response.read())

    log = open(tmp_path / "tensorboard.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(runs), "--port", str(port),
                               "--host", "127.0.0.1", "--reload_interval", "1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        expected = {"tiny/tensorboard", "tiny/tensorboard/finetune_lm", "tiny/tensorboard/classifier"}
        deadline, listed = time.monotonic() + 90, set()
        while time.monotonic() < deadline and not expected <= listed:
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()[-2000:]
            try:
                listed = set(get("runs"))
            except (urllib.error.URLError, ConnectionError, ValueError):
                pass
            time.sleep(0.5)
        assert expected <= listed, f"TensorBoard listed {listed} within 90 s"
        perplexity = get("plugin/scalars/scalars", run="tiny/tensorboard/finetune_lm", tag="epoch/val_perplexity")
        metrics = json.loads((runs / "tiny" / "metrics.json").read_text())
        assert perplexity[-1][2] == pytest.approx(metrics["finetune_lm"]["val_perplexity"], rel=1e-6)
        assert len(get("plugin/scalars/scalars", run="tiny/tensorboard/classifier", tag="step/train_loss")) == 6
        deadline, info = time.monotonic() + 60, {}
        while time.monotonic() < deadline and not info.get("embeddings"):
            try:
                info = get("plugin/projector/info", run="tiny/tensorboard")
            except (urllib.error.URLError, ValueError):
                time.sleep(0.5)
        assert {e["tensorName"] for e in info["embeddings"]} == {"word2vec", "lm", "lsa-docs", "classifier-docs"}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
