"""The LR range test: suggestions by hand, the sweep on a linear regression whose divergence point is known,
weights restored exactly, the classifier / LM stages' range tests on tiny data, the plot and `nlp-pipeline lr-find`."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.models.architecture import ModelConfig
from nlp_pipeline.models.lr_find import find_learning_rate, plot_lr_find, suggest_learning_rates
from nlp_pipeline.stages import classifier, language_model

from test_lm import numericalize_docs

SMALL = ModelConfig(embedding_dim=8, hidden_dim=12, num_layers=1)
POSITIVE = ["a wonderful film", "great acting and a great story", "i loved it", "superb and moving", "a joy to watch",
            "brilliant fun", "wonderful and warm", "great fun for all"]
NEGATIVE = ["a dull film", "terrible acting and a boring story", "i hated it", "awful and tedious", "a pain to watch",
            "boring mess", "dull and cold", "terrible waste of time"]


def test_suggestions_by_hand():
    lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    steepest, min10 = suggest_learning_rates(lrs, [2.0, 1.8, 1.2, 1.1, 1.0, 3.0])
    assert steepest == pytest.approx(1e-4) and min10 == pytest.approx(1e-2)
    assert suggest_learning_rates(lrs, [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]) == (None, pytest.approx(1e-6))  # never fell
    assert suggest_learning_rates([], []) == (None, None)
    # skipping the first points ignores an early dip: 5.0 -> 1.0 is noise, the real minimum is at 1e-1
    steepest, min10 = suggest_learning_rates(lrs, [5.0, 1.0, 3.0, 2.0, 0.5, 9.0], skip_start=2)
    assert steepest == pytest.approx(1e-2) and min10 == pytest.approx(1e-2)


def regression():
    """y = x @ [1, -2, 3]: with plain SGD on the mean squared error, steps diverge once lr > 2 / (2 * lambda_max(X'X/n))."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 3.0])
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)

    def loss_fn(net, batch):
        inputs, targets = batch
        return torch.mean((net(inputs).squeeze(1) - targets) ** 2)

    return model, batches, loss_fn


def test_sweep_is_exponential_stops_on_divergence_and_restores_everything():
    model, batches, loss_fn = regression()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next_random = torch.rand(3)
    torch.manual_seed(123)
    result = find_learning_rate(model, batches, loss_fn, lambda net: torch.optim.SGD(net.parameters(), lr=1.0),
                                start_lr=1e-4, end_lr=100.0, num_steps=61)
    lrs = np.array(result["lrs"])
    assert lrs[0] == pytest.approx(1e-4) and np.all(np.diff(lrs) > 0)
    assert np.allclose(lrs[1:] / lrs[:-1], 10 ** 0.1)  # 6 decades in 60 steps
    assert result["stopped"] == "loss diverged" and result["steps"] < 61 and lrs[-1] > 0.5  # diverges near lr ~ 1
    assert result["steps"] == len(result["losses"]) == len(result["raw_losses"])
    for key in ("suggestion_steepest", "suggestion_min10"):
        assert math.isfinite(result[key]) and 1e-5 <= result[key] <= 1.0, (key, result[key])
    assert result["losses"][0] == pytest.approx(result["raw_losses"][0])  # bias-corrected smoothing
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None for p in model.parameters()) and not model.training
    assert torch.equal(torch.rand(3), expected_next_random)  # the RNG was put back too


def test_batches_list_is_cycled_iterator_is_not_and_group_ratios_are_kept():
    model, batches, loss_fn = regression()
    seen = []

    def factory(net):
        return torch.optim.SGD([{"params": [net.weight], "lr": 1.0, "base_lr": 1.0},
                                {"params": [net.bias], "lr": 0.25, "base_lr": 0.25}], lr=1.0)

    def recording_loss(net, batch):
        seen.append([group["lr"] for group in optimizer_holder[0].param_groups])
        return loss_fn(net, batch)

    optimizer_holder = []

    def holding_factory(net):
        optimizer_holder.append(factory(net))
        return optimizer_holder[0]

    result = find_learning_rate(model, batches, recording_loss, holding_factory, start_lr=1e-6, end_lr=1e-3, num_steps=10)
    assert result["steps"] == 10 and result["stopped"] == "end_lr reached"  # 4 batches, cycled
    assert result["lrs"][-1] == pytest.approx(1e-3)
    assert all(bias == pytest.approx(weight / 4) for weight, bias in seen)
    once = find_learning_rate(model, iter(batches), loss_fn, lambda net: torch.optim.SGD(net.parameters(), lr=1.0),
                              start_lr=1e-6, end_lr=1e-3, num_steps=10)
    assert once["steps"] == 4 and once["stopped"] == "batches ran out"
    with pytest.raises(ConfigError, match="0 < start_lr < end_lr"):
        find_learning_rate(model, batches, loss_fn, lambda net: torch.optim.SGD(net.parameters(), lr=1.0), 1.0, 0.1)


@pytest.fixture(scope="module")
def tiny_data():
    return numericalize_docs([t.split() for t in POSITIVE + NEGATIVE], labels=[1] * 8 + [0] * 8, label_names=["neg", "pos"])


def test_classifier_and_language_model_range_tests_on_tiny_data(tiny_data, tmp_path):
    cfg = classifier.ClassifierConfig(model=SMALL, head_hidden_dim=6,
                                      batch_size=4, precision="float32", num_threads=1)
    result = classifier.range_test(cfg, tiny_data, start_lr=1e-5, end_lr=10.0, num_steps=30)
    assert result["target"] == "classifier" and result["trainable_groups"] == 1 and result["layer_groups"] == 3
    assert 2 <= result["steps"] <= 30 and np.all(np.diff(result["lrs"]) > 0)
    assert result["suggestion_min10"] is not None and math.isfinite(result["suggestion_min10"])
    assert classifier.range_test(cfg, tiny_data, start_lr=1e-5, end_lr=10.0, num_steps=30)["losses"] == result["losses"]

    lm_cfg = language_model.FinetuneLmConfig(model=SMALL, batch_size=2, bptt_length=4,
                                             precision="float32", num_threads=1)
    lm_result = language_model.range_test(lm_cfg, tiny_data, start_lr=1e-5, end_lr=10.0, num_steps=30)
    assert lm_result["target"] == "finetune_lm" and lm_result["trainable_groups"] == lm_result["layer_groups"] == 2
    assert lm_result["losses"][0] == pytest.approx(math.log(len(tiny_data.vocab)), rel=0.1)  # untrained: ~uniform
    path = plot_lr_find(lm_result, tmp_path / "plots" / "lr.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ConfigError, match="trainable groups must be between 1 and 3"):
        classifier.range_test(cfg, tiny_data, num_steps=5, trainable_groups=4)


def test_range_tests_start_from_the_stages_models(tiny_data):
    """The range tests build with the stages' builders: the LM's start, its vocabulary check, torch left as it was."""
    lm_cfg = language_model.FinetuneLmConfig(model=SMALL, batch_size=2, bptt_length=4,
                                             precision="float32", num_threads=1, epochs=0)
    lm = language_model.finetune_language_model(lm_cfg, tiny_data)
    cfg = classifier.ClassifierConfig(batch_size=4, precision="float32", num_threads=1)
    threads = torch.get_num_threads()
    result = classifier.range_test(cfg, tiny_data, lm, start_lr=1e-5, num_steps=5)
    assert result["initialisation"] == "language model" and result["steps"] >= 2
    from_lm = dataclasses.replace(lm_cfg, model=None)  # with a pretrained LM the architecture is the LM's
    assert language_model.range_test(from_lm, tiny_data, lm, start_lr=1e-5, num_steps=5)["initialisation"] == "pretrained"
    with pytest.raises(ConfigError, match="finetune_lm.model cannot apply"):
        language_model.range_test(lm_cfg, tiny_data, lm, start_lr=1e-5, num_steps=5)
    assert torch.get_num_threads() == threads
    other = numericalize_docs([["x", "y"]] * 4, labels=[0, 1, 0, 1], label_names=["a", "b"])
    with pytest.raises(DataError, match="language model's vocabulary .* differs from the classifier data's"):
        classifier.range_test(cfg, other, lm, num_steps=5)


def test_cli_lr_find_prints_suggestions_and_writes_the_plot(tiny_data, tmp_path, monkeypatch):
    from nlp_pipeline import cli, runs

    lm_cfg = language_model.FinetuneLmConfig(model=SMALL, batch_size=2, bptt_length=4, num_threads=1, epochs=0)
    lm = language_model.finetune_language_model(lm_cfg, tiny_data)  # untrained: its 8/12x1 encoder is what counts

    def fake_upstream(configs, store, instance_id, echo=None):
        assert instance_id == "classifier"
        return {"data": tiny_data, "lm": lm}

    monkeypatch.setattr(runs, "upstream_artifacts", fake_upstream)
    out = tmp_path / "lr.png"
    sets = ["classifier.batch_size=4", "classifier.precision=float32", "classifier.num_threads=1"]
    result = CliRunner().invoke(cli.main, ["lr-find", "--steps", "20", "--start-lr", "1e-5", "--out", str(out),
                                           "--cache-dir", str(tmp_path / "cache"), *[a for s in sets for a in ("--set", s)]],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("classifier: ") and "1 of 3 layer groups trained" in lines[0]
    assert lines[1].startswith("steepest descent  ") and lines[2].startswith("minimum / 10      ")
    assert float(lines[2].split()[-1]) > 0 and out.read_bytes().startswith(b"\x89PNG")
    bad = CliRunner().invoke(cli.main, ["lr-find", "--start-lr", "1", "--end-lr", "0.1", "--out", str(out),
                                        "--cache-dir", str(tmp_path / "cache")])
    # on a busy machine a warning that other processes hold the cores may come first; the error is one line
    errors = [line for line in bad.output.splitlines() if line.startswith("error:")]
    assert bad.exit_code == 2 and len(errors) == 1 and errors[0].startswith("error: the LR range needs 0 < start_lr < end_lr")


def test_cli_lr_find_through_the_pipeline(tmp_path):
    import json

    from nlp_pipeline.cli import main

    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 != 3))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 == 3))
    sets = ["tokenization.workers=1", "numericalization.min_freq=1", "pretrain_lm.weights=none", "pretrain_lm.corpus=none", "embeddings.methods=[]",
            "finetune_lm.init_vectors=none", "model.embedding_dim=8", "model.hidden_dim=12",
            "model.num_layers=1", "finetune_lm.batch_size=2", "finetune_lm.bptt_length=4", "finetune_lm.epochs=1",
            "finetune_lm.num_threads=1", "classifier.batch_size=4", "classifier.num_threads=1"]
    args = ["--corpus", str(folder), "--cache-dir", str(tmp_path / "cache"), *[a for s in sets for a in ("--set", s)]]
    for target, groups in (("classifier", "1 of 3"), ("finetune_lm", "2 of 2")):
        out = tmp_path / f"{target}.png"
        result = CliRunner().invoke(main, ["lr-find", "--target", target, "--steps", "15", "--out", str(out), *args],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"{groups} layer groups trained" in result.output and out.read_bytes().startswith(b"\x89PNG")
