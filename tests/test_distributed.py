"""Data-parallel training with two gloo processes on the CPU: the LM loop equals one process on the same global
batch, the classifier stage's processes agree and learn, and `torchrun -m nlp_pipeline.cli run` stores one
classifier artifact under the 1-process key.

The processes are real: this file, run as a script with torchrun's variables set (RANK, WORLD_SIZE,
MASTER_ADDR=127.0.0.1, a free MASTER_PORT), is the worker; each worker saves what it trained to an .npz.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port, wait_for_processes

from nlp_pipeline.models import distributed
from nlp_pipeline.models.architecture import ModelConfig
from nlp_pipeline.models.batching import shard
from nlp_pipeline.targets import carve

HERE = Path(__file__).resolve()


def _launch(job: str, out: Path, world: int = 2, timeout: float = 120) -> None:
    """Run `job` of this file in `world` processes joined by env:// on the loopback, like torchrun does."""
    port = free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                   LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(HERE), job, str(out)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    wait_for_processes(procs, timeout, "rank")


# --- the jobs (run inside each process, and in the test process for the 1-process reference) -------------
def lm_job(out: str) -> None:
    """fit_language_model on a tiny LSTM LM, no dropout (so one process can reproduce it exactly), a global batch
    of 3 rows (uneven shares 2 + 1 with two processes), variable BPTT, AR/TAR, clipping, one-cycle LR."""
    from nlp_pipeline.models.device import training_session
    from nlp_pipeline.models.heads import LanguageModelNet
    from nlp_pipeline.models.rnn import AwdEncoder, Dropouts
    from nlp_pipeline.models.training import discriminative_lrs, fit_language_model, make_optimizer

    rng = np.random.default_rng(0)
    ids = rng.integers(4, 40, 2400).astype(np.int32)
    offsets = np.arange(0, 2401, 30)
    valid_rows = np.stack([ids[2100:2200], ids[2200:2300], ids[2300:2400]]).astype(np.int64)
    with training_session("cpu", num_threads=1, seed=0) as device:  # torch's threads and RNG restored after
        model = LanguageModelNet(AwdEncoder(40, 8, 12, 2, "lstm", 1, Dropouts(0.0, 0.0, 0.0, 0.0)), 0.0)
        groups = model.layer_groups()
        optimizer = make_optimizer(groups, discriminative_lrs(1e-2, len(groups)), 0.01, (0.7, 0.99))
        history = fit_language_model(
            model, optimizer, ids, offsets, np.arange(70), valid_rows, epochs=2, batch_size=3, bptt=10,
            variable_bptt=True, schedule="one_cycle", warmup_fraction=0.25, clip=0.25, activation_regularization=2.0,
            temporal_activation_regularization=1.0, rng=np.random.default_rng(1), device=device,
        )
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    np.savez(_rank_file(out), history=json.dumps(history), **state)


def _tiny_classifier_data():
    from test_lm import numericalize_docs

    rng = np.random.default_rng(0)
    noise = [f"w{i}" for i in range(10)]
    docs, labels = [], []
    for i in range(160):
        label = i % 2
        cue = ["great", "good", "fine"] if label else ["awful", "bad", "dull"]
        docs.append(list(rng.choice(noise, rng.integers(0, 3))) + list(rng.choice(cue, rng.integers(2, 5))))
        labels.append(label)
    splits = ["test" if i >= 120 else "train" for i in range(160)]
    return numericalize_docs(docs, splits=splits, labels=labels, label_names=["neg", "pos"])


CLASSIFIER = dict(model=ModelConfig(embedding_dim=8, hidden_dim=12, num_layers=1), batch_size=16, precision="float32",
                  stage_epochs=[1, 4], stage_learning_rates=[3e-2, 2e-2], patience=2, num_threads=1)


def classifier_job(out: str) -> None:
    """The classifier stage function itself (gradual unfreezing: the model is re-wrapped between stages)."""
    from nlp_pipeline.stages.classifier import ClassifierConfig, train_classifier

    data = _tiny_classifier_data()
    result = train_classifier(ClassifierConfig(**CLASSIFIER), data, carve=carve(data, fraction=0.25))
    np.savez(_rank_file(out), history=json.dumps(result.history), metrics=json.dumps(result.metrics, default=str),
             test_probabilities=result.test_probabilities, **result.state_dict)


def ensemble_job(out: str) -> None:
    """Two classifiers (classifier.members = 2), each trained data-parallel in turn."""
    from nlp_pipeline.stages.classifier import ClassifierConfig, train_classifier

    cfg = ClassifierConfig(**{**CLASSIFIER, "stage_epochs": [1, 1], "members": 2})
    data = _tiny_classifier_data()
    result = train_classifier(cfg, data, carve=carve(data, fraction=0.25))
    np.savez(_rank_file(out), test_probabilities=result.test_probabilities, **result.state_dict)


def targets_job(out: str) -> None:
    """A multi-label and a regression classifier (their own losses, the threshold chosen on gathered validation
    outputs), each trained data-parallel."""
    import dataclasses

    from nlp_pipeline.stages.classifier import ClassifierConfig, train_classifier

    data = _tiny_classifier_data()
    positive = np.asarray(data.labels) == 1
    long = np.diff(np.asarray(data.offsets)) > 4
    cfg = ClassifierConfig(**{**CLASSIFIER, "stage_epochs": [1, 2]})
    for target, labels, names in (("multi_label", np.stack([positive, long], 1).astype(np.int8), ["pos", "long"]),
                                  ("regression", np.where(positive, 3.0, -1.0).astype(np.float32), ["score"])):
        as_target = dataclasses.replace(data, labels=labels, label_names=names, target_type=target)
        result = train_classifier(cfg, as_target, carve=carve(as_target, fraction=0.25))
        np.savez(f"{out}-{target}.rank{distributed.rank()}.npz", history=json.dumps(result.history),
                 arch=json.dumps(result.arch), test_probabilities=result.test_probabilities, **result.state_dict)


def _rank_file(out: str) -> str:
    return f"{out}.rank{distributed.rank()}.npz"


def both_jobs(out: str) -> None:
    """Both jobs in one pair of processes (starting a process that imports torch is most of the cost)."""
    lm_job(out + "-lm")
    classifier_job(out + "-classifier")
    ensemble_job(out + "-ensemble")
    targets_job(out + "-targets")


JOBS = {"lm": lm_job, "classifier": classifier_job, "both": both_jobs}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """One 2-process launch running both jobs; returns the output prefix."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    _launch("both", out)
    return out


# --- tests --------------------------------------------------------------------------------------------------
def test_shard_and_the_single_process_helpers(monkeypatch):
    assert shard(np.arange(7), 1, 3).tolist() == [1, 4]
    shares = [shard(np.arange(7), r, 3) for r in range(3)]
    assert sorted(np.concatenate(shares).tolist()) == list(range(7))        # disjoint, nothing lost
    assert shard(np.arange(12).reshape(4, 3), 0, 2).tolist() == [[0, 1, 2], [6, 7, 8]]  # rows of an LM stream
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.is_distributed() and distributed.coordinator() is None
    assert (distributed.rank(), distributed.world_size(), distributed.threads_per_process(0)) == (0, 1, 0)
    assert distributed.all_reduce_sum([2.5, 10]) == [2.5, 10.0]
    part = np.arange(6.0).reshape(3, 2)
    assert distributed.gather_shards(part, 3) is part
    monkeypatch.setenv("WORLD_SIZE", "2")                                     # torchrun's variables half set
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    from nlp_pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="launch with torchrun"):
        distributed.setup()


def test_lm_two_processes_equal_one_process_on_the_global_batch(two_processes, tmp_path):
    ranks = [np.load(f"{two_processes}-lm.rank{r}.npz") for r in range(2)]
    lm_job(str(tmp_path / "single"))                                          # this process alone: rank 0 of 1
    single = np.load(f"{tmp_path / 'single'}.rank0.npz")
    names = [k for k in single.files if k != "history"]
    assert "encoder.layers.0.weight_hh" in names
    for name in names:
        assert np.array_equal(ranks[0][name], ranks[1][name]), name          # DDP kept the processes identical
        np.testing.assert_allclose(ranks[0][name], single[name], rtol=0, atol=2e-6, err_msg=name)
    histories = [json.loads(str(f["history"])) for f in (*ranks, single)]
    for key in ("train_loss", "val_loss", "train_tokens"):
        assert [row[key] for row in histories[0]] == [row[key] for row in histories[1]] == [row[key] for row in histories[2]]
    assert histories[2][-1]["train_loss"] < histories[2][0]["train_loss"]


def test_classifier_stage_two_processes_agree_and_learn(two_processes):
    ranks = [np.load(f"{two_processes}-classifier.rank{r}.npz") for r in range(2)]
    names = [k for k in ranks[0].files if k not in ("history", "metrics")]
    assert "head.block1.0.running_mean" in names and "test_probabilities" in names
    for name in names:                                        # parameters, BatchNorm statistics, gathered test scores
        assert np.array_equal(ranks[0][name], ranks[1][name]), name
    history, other = (json.loads(str(f["history"])) for f in ranks)
    assert [dict(row, seconds=0) for row in history] == [dict(row, seconds=0) for row in other]  # same decisions
    assert [row["trainable_groups"] for row in history][:2] == [1, 3]         # gradual unfreezing, re-wrapped
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = json.loads(str(ranks[0]["metrics"]))
    assert metrics["processes"] == 2 and metrics["test"]["n"] == 40
    # the gathered test probabilities are what one process computes from the selected weights
    import torch

    from nlp_pipeline.models.heads import build_classifier
    from nlp_pipeline.models.training import load_numpy_state, predict_classifier

    data = _tiny_classifier_data()
    model = build_classifier({"vocab_size": len(data.vocab), "embedding_dim": 8, "hidden_dim": 12, "num_layers": 1,
                              "rnn_type": "lstm", "pad_id": data.vocab.stoi["xxpad"], "num_classes": 2, "head_hidden_dim": 50})
    load_numpy_state(model, {k: ranks[0][k] for k in model.state_dict()})
    probs = predict_classifier(model, np.asarray(data.ids), np.asarray(data.offsets), data.indices("test"),
                               data.vocab.stoi["xxpad"], 500, 16, torch.device("cpu"))
    np.testing.assert_allclose(ranks[0]["test_probabilities"], probs, atol=1e-5)


def test_an_ensemble_trains_data_parallel_member_by_member(two_processes):
    ranks = [np.load(f"{two_processes}-ensemble.rank{r}.npz") for r in range(2)]
    for name in ranks[0].files:  # both members' weights and the averaged test probabilities agree across processes
        assert np.array_equal(ranks[0][name], ranks[1][name]), name
    first, second = ranks[0]["members.0.head.block2.2.weight"], ranks[0]["members.1.head.block2.2.weight"]
    assert first.shape == second.shape and not np.allclose(first, second)  # two different seeds
    assert ranks[0]["test_probabilities"].shape == (40, 2)


@pytest.mark.parametrize("target", ["multi_label", "regression"])
def test_multi_label_and_regression_train_data_parallel(two_processes, target):
    ranks = [np.load(f"{two_processes}-targets-{target}.rank{r}.npz") for r in range(2)]
    for name in ranks[0].files:  # weights, gathered test outputs and arch (with the threshold) agree
        if name != "history":
            assert np.array_equal(ranks[0][name], ranks[1][name]), name
    history, other = (json.loads(str(f["history"])) for f in ranks)
    assert [dict(row, seconds=0) for row in history] == [dict(row, seconds=0) for row in other]  # same decisions
    arch = json.loads(str(ranks[0]["arch"]))
    assert arch["target_type"] == target and ("threshold" in arch) == (target == "multi_label")
    assert ranks[0]["test_probabilities"].shape == (40, 2 if target == "multi_label" else 1)


POSITIVE = ["a wonderful film", "great acting and a great story", "i loved it", "superb and moving", "a joy to watch",
            "brilliant fun", "wonderful and warm", "great fun for all"]
NEGATIVE = ["a dull film", "terrible acting and a boring story", "i hated it", "awful and tedious", "a pain to watch",
            "boring mess", "dull and cold", "terrible waste of time"]
CLI_SETTINGS = ["tokenization.workers=1", "numericalization.min_freq=1", "embeddings.methods=[]", "pretrain_lm.weights=none", "pretrain_lm.corpus=none",
                "model.embedding_dim=8", "model.hidden_dim=12", "model.num_layers=1",
                "finetune_lm.batch_size=2", "finetune_lm.bptt_length=5", "finetune_lm.epochs=1",
                "finetune_lm.precision=float32", "classifier.batch_size=4", "classifier.stage_epochs=[1, 1]",
                "classifier.stage_learning_rates=[0.01, 0.005]", "classifier.precision=float32"]


def _torchrun_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m nlp_pipeline.cli run` up to the classifier on a 16-text corpus."""
    corpus = tmp_path / "tiny"
    if not corpus.exists():
        corpus.mkdir()
        rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
        (corpus / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 != 3))
        (corpus / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 == 3))
    args = ["run", "--corpus", str(corpus), "--until", "classifier", "--runs-dir", str(tmp_path / "runs"), *_sets(), *extra]
    env = dict(os.environ, NLP_PIPELINE_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "nlp_pipeline.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _sets() -> list[str]:
    return [arg for setting in CLI_SETTINGS for arg in ("--set", setting)]


def _running(stderr: str) -> list[str]:
    return [line.split()[0] for line in stderr.splitlines() if "  running" in line]


def test_torchrun_cli_run_stores_one_classifier_artifact_under_the_single_process_key(tmp_path):
    done = _torchrun_cli(tmp_path)
    assert done.stdout.count("results in") == 1                                # only process 0 reports and writes
    assert _running(done.stderr) == ["corpus", "tokenization", "numericalization", "validation", "finetune_lm", "classifier"], done.stderr
    stored = [p for p in (tmp_path / "cache" / "classifier").iterdir() if (p / "meta.json").is_file()]
    assert len(stored) == 1 and not list((tmp_path / "cache" / "classifier").glob(".tmp-*"))
    from nlp_pipeline.core.store import ArtifactStore

    assert ArtifactStore(tmp_path / "cache").load("classifier", stored[0].name).metrics["processes"] == 2
    metrics = json.loads((tmp_path / "runs" / "tiny" / "metrics.json").read_text())
    assert metrics["classifier"]["status"] == "ran" and metrics["classifier"]["key"] == stored[0].name
    assert (tmp_path / "runs" / "tiny" / "model" / "config.json").is_file()
    # one process sees the very same keys, all cached: the process count is in no key
    from click.testing import CliRunner

    from nlp_pipeline.cli import main

    shown = CliRunner().invoke(main, ["show", "--corpus", str(tmp_path / "tiny"), *_sets()],
                               env={"NLP_PIPELINE_CACHE": str(tmp_path / "cache")})
    assert shown.exit_code == 0, shown.output
    lines = {line.split()[0]: line.split()[1:3] for line in shown.stdout.splitlines()}
    for stage in ("corpus", "tokenization", "numericalization", "validation", "finetune_lm", "classifier"):
        assert lines[stage][0] == "hit" and metrics[stage]["key"].startswith(lines[stage][1]), stage


@pytest.mark.slow
def test_torchrun_rerun_loads_hits_everywhere_and_recomputes_only_the_forced_stage(tmp_path):
    first = _torchrun_cli(tmp_path)
    assert "classifier" in _running(first.stderr)
    again = _torchrun_cli(tmp_path, "--force", "classifier")     # its inputs are hits that both processes load
    assert _running(again.stderr) == ["classifier"]
    assert len([p for p in (tmp_path / "cache" / "classifier").iterdir()]) == 1
    cached = _torchrun_cli(tmp_path)
    assert _running(cached.stderr) == [] and cached.stderr.count("cache hit") == 6


if __name__ == "__main__":  # a worker process: python test_distributed.py JOB OUT, with torchrun's variables set
    JOBS[sys.argv[1]](sys.argv[2])
    distributed.shutdown()
