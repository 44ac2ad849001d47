"""Interrupted language-model training resumes from its last checkpoint to the same weights as an
uninterrupted run: in process (an interruption raised right after a checkpoint), and as a real
`nlp-pipeline run` killed with SIGKILL and run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nlp_pipeline.core import checkpoints
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.stages.language_model import FinetuneLmConfig, PretrainLmConfig, finetune_language_model, pretrain_language_model
from test_lm import SMALL, TINY, numericalize_docs

WORDS = "the a cat dog sat ran on under mat rug big small red blue and then".split()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    docs = [list(rng.choice(WORDS, size=int(rng.integers(8, 30)))) for _ in range(60)]
    return numericalize_docs(docs)


def _interrupt_after(saves: int, monkeypatch) -> None:
    """Make the n-th checkpoint save raise KeyboardInterrupt once it is written (as a Ctrl-C right after it)."""
    real, count = checkpoints.save_bytes, [0]

    def save(blob: bytes) -> bool:
        kept = real(blob)
        count[0] += 1
        if count[0] == saves:
            raise KeyboardInterrupt
        return kept

    monkeypatch.setattr(checkpoints, "save_bytes", save)


@pytest.mark.parametrize("saves", [3, 9])  # 3: inside the first epoch; 9: in the second (after an epoch-end save)
def test_pretraining_interrupted_then_resumed_ends_with_the_same_weights(data, tmp_path, monkeypatch, saves):
    cfg = PretrainLmConfig(**TINY, model=SMALL, epochs=2, weights="none", checkpoint_minutes=0.0)
    uninterrupted = pretrain_language_model(cfg, data)  # no scope: checkpoints off
    _interrupt_after(saves, monkeypatch)
    with checkpoints.scope(tmp_path / "ckpt"), pytest.raises(KeyboardInterrupt):
        pretrain_language_model(cfg, data)
    assert (tmp_path / "ckpt" / checkpoints.CHECKPOINT_FILE).is_file()
    monkeypatch.undo()
    with checkpoints.scope(tmp_path / "ckpt"):
        resumed = pretrain_language_model(cfg, data)
    assert resumed.metrics["resumed_from_step"] > 0
    for name, value in uninterrupted.state_dict.items():
        np.testing.assert_array_equal(resumed.state_dict[name], value, err_msg=name)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in uninterrupted.history]


@pytest.mark.parametrize("sample", [0, 3])  # 3: a sampled softmax, whose draws must resume too
def test_finetuning_resumes_across_its_frozen_and_unfrozen_phases(data, tmp_path, monkeypatch, sample):
    pretrained = pretrain_language_model(PretrainLmConfig(**TINY, model=SMALL, epochs=1, weights="none"), data)
    cfg = FinetuneLmConfig(**TINY, epochs=1, frozen_epochs=1, checkpoint_minutes=0.0, softmax_sample=sample)
    uninterrupted = finetune_language_model(cfg, data, pretrained)
    assert [r.get("softmax_sample", 0) for r in uninterrupted.history] == [sample] * 2  # whose train_loss it is
    steps = uninterrupted.history[0]["train_tokens"] // (TINY["batch_size"] * 5)  # windows >= 5 tokens: a lower bound
    _interrupt_after(max(2, steps // 2) + 3, monkeypatch)  # somewhere after the frozen phase began
    with checkpoints.scope(tmp_path / "ckpt"), pytest.raises(KeyboardInterrupt):
        finetune_language_model(cfg, data, pretrained)
    monkeypatch.undo()
    with checkpoints.scope(tmp_path / "ckpt"):
        resumed = finetune_language_model(cfg, data, pretrained)
    for name, value in uninterrupted.state_dict.items():
        np.testing.assert_array_equal(resumed.state_dict[name], value, err_msg=name)


def test_a_checkpoint_that_does_not_fit_is_ignored(data, tmp_path, caplog):
    cfg = PretrainLmConfig(**TINY, model=SMALL, epochs=1, weights="none")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / checkpoints.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with checkpoints.scope(tmp_path / "ckpt"):
        lm = pretrain_language_model(cfg, data)
    assert "resumed_from_step" not in lm.metrics
    assert "ignoring a checkpoint" in caplog.text


def test_saves_outside_a_scope_do_nothing(tmp_path):
    assert not checkpoints.active() and checkpoints.save_bytes(b"x") is False and checkpoints.load_bytes() is None
    with checkpoints.scope(tmp_path / "c"):
        assert checkpoints.save_bytes(b"abc") and checkpoints.load_bytes() == b"abc"
        assert [p.name for p in (tmp_path / "c").iterdir()] == [checkpoints.CHECKPOINT_FILE]  # no temporary left
    checkpoints.discard(tmp_path / "c")
    assert not (tmp_path / "c").exists()


# --- a real run, killed -----------------------------------------------------------------------------------

def _write_corpus(folder: Path) -> Path:
    rng = np.random.default_rng(1)
    lines = [" ".join(rng.choice(WORDS, size=int(rng.integers(8, 30)))) for _ in range(300)]
    path = folder / "general.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run_args(corpus: Path, cache: Path, runs: Path) -> list[str]:
    sets = ["tokenization.workers=1", "numericalization.min_freq=1", "embeddings.methods=[]", "pretrain_lm.weights=none",
            f"pretrain_lm.corpus={corpus}", "model.embedding_dim=16", "model.hidden_dim=24",
            "pretrain_lm.batch_size=4", "pretrain_lm.bptt_length=12", "pretrain_lm.epochs=2", "pretrain_lm.num_threads=1",
            "pretrain_lm.precision=float32", "pretrain_lm.checkpoint_minutes=0"]
    args = [sys.executable, "-m", "nlp_pipeline.cli", "run", "--corpus", str(corpus), "--until", "pretrain_lm",
            "--cache-dir", str(cache), "--runs-dir", str(runs)]
    for item in sets:
        args += ["--set", item]
    return args


def _pretrained_weights(cache: Path, runs: Path) -> dict[str, np.ndarray]:
    keys = json.loads((runs / "general" / "keys.json").read_text())
    key = keys.get("pretrain_lm") or keys["keys"]["pretrain_lm"]
    return ArtifactStore(cache).load("pretrain_lm", key).state_dict


def test_a_killed_run_resumes_and_matches_an_uninterrupted_one(tmp_path):
    corpus = _write_corpus(tmp_path)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    clean = subprocess.run(_run_args(corpus, tmp_path / "clean", tmp_path / "runs_clean"), env=env,
                           capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr
    cache, runs = tmp_path / "killed", tmp_path / "runs_killed"
    process = subprocess.Popen(_run_args(corpus, cache, runs), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    found = []
    while time.time() < deadline and process.poll() is None:
        found = list(cache.glob("pretrain_lm/.checkpoint-*/state.bin"))
        if found and found[0].stat().st_size > 0:  # a checkpoint every step: the kill lands early in epoch 1
            break
        time.sleep(0.05)
    assert found and process.poll() is None, "the run finished before a checkpoint was seen; the test needs a longer run"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list(cache.glob("pretrain_lm/*/meta.json"))  # killed before the artifact was saved
    resumed = subprocess.run(_run_args(corpus, cache, runs), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint" in resumed.stderr
    assert not list(cache.glob("pretrain_lm/.checkpoint-*"))  # discarded once the artifact is saved
    want, got = _pretrained_weights(tmp_path / "clean", tmp_path / "runs_clean"), _pretrained_weights(cache, runs)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
