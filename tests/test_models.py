"""The torch building blocks: dropouts, the weight-dropped RNN against torch's own LSTM/GRU, tied weights,
the fused decoder loss against F.cross_entropy, pooling, batching layouts, groups, LRs, schedules, devices."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.models import batching, device, training
from nlp_pipeline.models.heads import (
    ClassifierNet, LanguageModelNet, concat_pool, linear_cross_entropy, sampled_softmax_candidates,
)
from nlp_pipeline.models.rnn import AwdEncoder, Dropouts, LockedDropout, WeightDropRnn, detach_state, embedding_dropout


# --- dropouts -----------------------------------------------------------------------------------------
def test_locked_dropout_mask_is_constant_over_time_and_off_in_eval():
    torch.manual_seed(0)
    drop = LockedDropout(0.5)
    x = torch.ones(7, 3, 20)  # (T, B, F)
    out = drop(x)
    assert torch.equal(out, out[0:1].expand_as(out))  # every time step has the same mask
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert not torch.equal(out[:, 0], out[:, 1])  # but each sequence has its own mask
    drop.eval()
    assert torch.equal(drop(x), x)


def test_embedding_dropout_drops_whole_words_everywhere():
    torch.manual_seed(1)
    weight = torch.arange(1.0, 41.0).reshape(10, 4)  # (V=10, E=4)
    ids = torch.tensor([[3, 3, 5], [5, 7, 3]])  # word 3 three times, 5 twice
    out = embedding_dropout(ids, weight, 0.5, training=True)
    for word in (3, 5, 7):
        rows = out[ids == word]  # every occurrence of a word
        assert torch.equal(rows, rows[0:1].expand_as(rows))
        assert torch.equal(rows[0], torch.zeros(4)) or torch.equal(rows[0], weight[word] * 2)
    assert torch.equal(embedding_dropout(ids, weight, 0.5, training=False), weight[ids])


def test_dropouts_scaled():
    assert Dropouts(0.1, 0.2, 0.3, 0.4).scaled(0.5) == Dropouts(0.05, 0.1, 0.15, 0.2)


# --- the weight-dropped RNN layer -------------------------------------------------------------------
@pytest.mark.parametrize("rnn_type, reference", [("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)])
def test_weight_drop_rnn_matches_torch_in_eval(rnn_type, reference):
    torch.manual_seed(0)
    layer = WeightDropRnn(5, 6, rnn_type, weight_dropout=0.5).eval()
    oracle = reference(5, 6)
    with torch.no_grad():
        oracle.weight_ih_l0.copy_(layer.weight_ih)
        oracle.weight_hh_l0.copy_(layer.weight_hh)
        oracle.bias_ih_l0.copy_(layer.bias_ih)
        oracle.bias_hh_l0.copy_(layer.bias_hh)
    x = torch.randn(4, 2, 5)  # (T, B, I)
    out, state = layer(x)
    expected, expected_state = oracle(x)
    assert out.shape == (4, 2, 6)
    assert torch.allclose(out, expected, atol=1e-6)
    h = state[0] if rnn_type == "lstm" else state
    h_ref = expected_state[0] if rnn_type == "lstm" else expected_state
    assert torch.allclose(h, h_ref, atol=1e-6)
    assert torch.equal(layer(x)[0], out)  # eval mode is deterministic


def test_dropconnect_only_in_training_and_weights_untouched():
    torch.manual_seed(0)
    layer = WeightDropRnn(5, 6, "lstm", weight_dropout=0.5)
    before = layer.weight_hh.detach().clone()
    x = torch.randn(4, 2, 5)
    a, _ = layer.train()(x)
    b, _ = layer(x)
    assert not torch.allclose(a, b)  # a new DropConnect mask per call
    assert torch.equal(layer.weight_hh.detach(), before)  # the raw weight itself is never modified
    assert [n for n, _ in layer.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    e1, _ = layer.eval()(x)
    assert torch.equal(e1, layer(x)[0])


def test_dropconnect_gradient_reaches_raw_weight_through_mask():
    torch.manual_seed(0)
    layer = WeightDropRnn(3, 4, "lstm", weight_dropout=0.9).train()
    out, _ = layer(torch.randn(5, 2, 3))
    out.sum().backward()
    grad = layer.weight_hh.grad
    assert grad is not None and (grad == 0).float().mean() > 0.5  # dropped entries get no gradient


# --- encoder and nets ---------------------------------------------------------------------------------
def tiny_encoder(rnn_type="lstm", dropouts=Dropouts(0.1, 0.2, 0.2, 0.3)):
    torch.manual_seed(0)
    return AwdEncoder(vocab_size=20, embedding_dim=8, hidden_dim=12, num_layers=3, rnn_type=rnn_type, pad_id=1,
                      dropouts=dropouts)


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_encoder_shapes_and_state(rnn_type):
    enc = tiny_encoder(rnn_type)
    ids = torch.randint(0, 20, (6, 3))  # (T, B)
    out, state = enc(ids)
    assert out.shape == (6, 3, 8)  # last layer returns to embedding_dim
    sizes = [layer.hidden_size for layer in enc.layers]
    assert sizes == [12, 12, 8]
    hs = [s[0] if rnn_type == "lstm" else s for s in state]
    assert [tuple(h.shape) for h in hs] == [(1, 3, 12), (1, 3, 12), (1, 3, 8)]
    detached = detach_state(state)
    assert all(not (t[0] if rnn_type == "lstm" else t).requires_grad for t in detached)


def test_encoder_state_carries_information():
    enc = tiny_encoder().eval()
    ids = torch.randint(0, 20, (10, 2))
    full, _ = enc(ids)
    first, state = enc(ids[:6])
    second, _ = enc(ids[6:], state)
    assert torch.allclose(torch.cat([first, second]), full, atol=1e-5)  # split + carried state == one pass
    fresh, _ = enc(ids[6:])
    assert not torch.allclose(fresh, second)


def test_tied_weights_are_one_parameter():
    model = LanguageModelNet(tiny_encoder(), output_dropout=0.1)
    assert model.decoder.weight is model.encoder.embedding.weight
    names = [n for n, _ in model.named_parameters()]
    assert "decoder.weight" not in names  # counted once
    groups = model.layer_groups()
    assert len(groups) == 4 and groups[-1][0] is model.encoder.embedding.weight
    assert model.arch() == {"vocab_size": 20, "embedding_dim": 8, "hidden_dim": 12, "num_layers": 3,
                            "rnn_type": "lstm", "pad_id": 1, "tie_weights": True}


def test_lm_forward_loss_and_regulariser_tensors():
    model = LanguageModelNet(tiny_encoder(), output_dropout=0.1)
    ids, targets = torch.randint(0, 20, (5, 2)), torch.randint(0, 20, (5, 2))
    out = model(ids, targets)
    assert out.raw.shape == out.dropped.shape == (5, 2, 8)
    assert abs(float(out.loss.detach()) - np.log(20)) < 0.5  # untrained: close to uniform
    model.eval()
    expected = F.cross_entropy(model.logits(ids)[0].reshape(-1, 20), targets.reshape(-1))
    assert torch.allclose(model(ids, targets).loss, expected, atol=1e-5)


def test_linear_cross_entropy_matches_torch_values_and_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(37, 6, requires_grad=True)
    weight = torch.randn(11, 6, requires_grad=True)
    bias = torch.randn(11, requires_grad=True)
    targets = torch.randint(0, 11, (37,))
    ours = linear_cross_entropy(hidden, weight, bias, targets, chunk=8)  # 5 chunks, the last one partial
    ours.backward()
    mine = [t.grad.clone() for t in (hidden, weight, bias)]
    for t in (hidden, weight, bias):
        t.grad = None
    reference = F.cross_entropy(F.linear(hidden, weight, bias), targets)
    reference.backward()
    assert torch.allclose(ours, reference, atol=1e-6)
    for a, t in zip(mine, (hidden, weight, bias)):
        assert torch.allclose(a, t.grad, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(linear_cross_entropy(hidden, weight, bias, targets, chunk=8), reference, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # matmuls in bfloat16: close, not equal
        low = linear_cross_entropy(hidden, weight, bias, targets, chunk=8)
    assert abs(float(low.detach()) - float(reference.detach())) < 0.05


def test_sampled_softmax_candidates_hold_every_target_and_renumber_them():
    torch.manual_seed(0)
    targets = torch.tensor([7, 3, 7, 42, 0, 3])
    rows, renumbered = sampled_softmax_candidates(targets, 100, 10)
    assert rows.tolist() == sorted(set(rows.tolist()))  # sorted, distinct
    assert {0, 3, 7, 42} <= set(rows.tolist()) and rows.numel() <= 4 + 10
    assert rows[renumbered].tolist() == targets.tolist()
    covering, same = sampled_softmax_candidates(targets, 5, 1000)  # the draws cover all 5 words: no sampling
    assert covering is None and same is targets


def test_sampled_softmax_loss_is_the_softmax_over_the_candidates_in_training_only():
    torch.manual_seed(0)
    model = LanguageModelNet(AwdEncoder(50, 8, 12, 2), output_dropout=0.0)
    model.encoder.set_dropouts(Dropouts(0.0, 0.0, 0.0, 0.0))
    ids, targets = torch.randint(0, 50, (6, 3)), torch.randint(0, 50, (6, 3))
    torch.manual_seed(1)
    sampled = model(ids, targets, sample=5).loss  # model.train(): the sampled loss
    torch.manual_seed(1)
    rows, renumbered = sampled_softmax_candidates(targets.reshape(-1), 50, 5)
    logits = model.logits(ids)[0].reshape(-1, 50)[:, rows]  # dropouts are 0: train and eval outputs agree
    assert torch.allclose(sampled, F.cross_entropy(logits, renumbered), atol=1e-5)
    full = F.cross_entropy(model.logits(ids)[0].reshape(-1, 50), targets.reshape(-1))
    assert float(sampled.detach()) < float(full.detach())  # fewer competitors than the whole vocabulary
    sampled.backward()
    untouched = torch.ones(50, dtype=torch.bool)
    untouched[rows] = False
    assert model.decoder.bias.grad[untouched].abs().sum() == 0 and model.decoder.bias.grad[rows].abs().sum() > 0
    model.eval()  # validation and perplexity always score the whole vocabulary
    assert torch.allclose(model(ids, targets, sample=5).loss, full, atol=1e-5)


def test_concat_pool_ignores_padding():
    outputs = torch.tensor([[[1.0], [5.0]], [[3.0], [-1.0]], [[2.0], [100.0]]])  # (T=3, B=2, H=1)
    lengths = torch.tensor([3, 2])  # step 2 of sequence 1 is padding (100 must not count)
    pooled = concat_pool(outputs, lengths)  # [last, max, mean]
    assert pooled.tolist() == [[2.0, 3.0, 2.0], [-1.0, 5.0, 2.0]]


def test_classifier_output_does_not_depend_on_padding():
    torch.manual_seed(0)
    model = ClassifierNet(tiny_encoder(), num_classes=3).eval()
    doc = torch.tensor([[2], [5], [6]])  # (T=3, B=1)
    padded = torch.cat([doc, torch.full((4, 1), 1)])  # the same document with 4 pads at the end
    a = model(doc, torch.tensor([3]))
    b = model(padded, torch.tensor([3]))
    assert a.shape == (1, 3) and torch.allclose(a, b, atol=1e-6)
    assert len(model.layer_groups()) == 5  # embedding, 3 layers, head


def test_a_backward_classifier_reads_the_reversed_document_and_ignores_padding():
    from nlp_pipeline.models.heads import reverse_padded

    ids = torch.tensor([[2, 7], [5, 1], [6, 1]])  # (T=3, B=2); the second document is one id then pads
    assert reverse_padded(ids, torch.tensor([3, 1])).tolist() == [[6, 7], [5, 1], [2, 1]]
    torch.manual_seed(0)
    forward = ClassifierNet(tiny_encoder(), num_classes=3).eval()
    backward = ClassifierNet(forward.encoder, num_classes=3, backward=True).eval()
    backward.head.load_state_dict(forward.head.state_dict())
    doc = torch.tensor([[2], [5], [6]])
    padded = torch.cat([doc, torch.full((4, 1), 1)])
    # the backward net on a document answers as the forward net on the document flipped by hand
    assert torch.allclose(backward(padded, torch.tensor([3])), forward(doc.flip(0), torch.tensor([3])), atol=1e-6)
    vectors = [net.document_vectors(doc, torch.tensor([3])) for net in (forward, backward)]
    assert (vectors[0] - vectors[1]).abs().max() > 1e-5  # (equal inputs would give equal vectors, to the last bit)
    assert backward.arch()["backward"] is True and "backward" not in forward.arch()


def test_an_ensemble_of_both_directions_rebuilds_from_its_arch():
    from nlp_pipeline.models.heads import ClassifierEnsemble, build_classifier

    torch.manual_seed(0)
    pair = ClassifierEnsemble([ClassifierNet(tiny_encoder(), 2), ClassifierNet(tiny_encoder(), 2, backward=True)])
    arch = pair.arch()
    assert arch["backward_members"] == [False, True] and "backward" not in arch
    rebuilt = build_classifier(arch)
    assert [m.backward for m in rebuilt.members] == [False, True]
    rebuilt.load_state_dict(pair.state_dict())
    rebuilt.eval(), pair.eval()
    ids, lengths = torch.tensor([[2, 3], [5, 4], [6, 1]]), torch.tensor([3, 2])
    assert torch.allclose(rebuilt.predict(ids, lengths), pair.predict(ids, lengths), atol=1e-6)


# --- batching ---------------------------------------------------------------------------------------------
def test_stream_layout_and_windows_are_exact():
    rows = batching.layout_stream(np.arange(20), 2)
    assert rows.tolist() == [list(range(10)), list(range(10, 20))]
    assert batching.layout_stream(np.arange(21), 2).shape == (2, 10)  # the tail token is dropped
    lengths = batching.bptt_lengths(10, 4)
    assert lengths == [4, 4, 1]
    windows = list(batching.lm_windows(rows, lengths))
    x, y = windows[0]
    assert x.tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]
    assert y.tolist() == [[1, 2, 3, 4], [11, 12, 13, 14]]
    assert windows[1][0].tolist() == [[4, 5, 6, 7], [14, 15, 16, 17]]
    assert windows[2][0].tolist() == [[8], [18]] and windows[2][1].tolist() == [[9], [19]]


def test_variable_bptt_lengths_cover_the_stream():
    rng = np.random.default_rng(0)
    lengths = batching.bptt_lengths(10_001, 70, rng)
    assert sum(lengths) == 10_000
    assert min(lengths[:-1]) >= 5
    assert 55 < np.mean(lengths[:-1]) < 75  # 95 % around 70, 5 % around 35
    assert len(set(lengths)) > 10


def test_concat_documents_in_given_order():
    out = batching.concat_documents(np.array([5, 6, 7, 8]), np.array([0, 1, 4]), np.array([1, 0]))
    assert out.tolist() == [6, 7, 8, 5] and out.dtype == np.int64


def test_reverse_documents_flips_each_document_in_place():
    out = batching.reverse_documents(np.array([5, 6, 7, 8, 9]), np.array([0, 1, 4, 4, 5]))  # one empty document
    assert out.tolist() == [5, 8, 7, 6, 9]
    ids, offsets = np.arange(100), np.array([0, 3, 40, 41, 100])
    assert np.array_equal(batching.reverse_documents(batching.reverse_documents(ids, offsets), offsets), ids)


def test_pad_batch_pads_at_the_end_and_truncates():
    ids, offsets = np.array([5, 6, 7, 8, 9]), np.array([0, 3, 5])
    x, lengths = batching.pad_batch(ids, offsets, np.array([1, 0]), pad_id=1, max_length=10)
    assert x.tolist() == [[8, 5], [9, 6], [1, 7]] and lengths.tolist() == [2, 3]
    x, lengths = batching.pad_batch(ids, offsets, np.array([0]), pad_id=1, max_length=2)
    assert x.tolist() == [[5], [6]] and lengths.tolist() == [2]


def test_sortish_batches_cover_every_document_once_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    batches = batching.sortish_batches(lengths, 10, rng, chunk_batches=10)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert lengths[batches[0]].max() == lengths.max()  # the longest batch first
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 20  # random batches would spread over ~170
    assert batching.sorted_batches(np.array([3, 9, 1, 5]), 2)[0].tolist() == [1, 3]


# --- groups, learning rates, schedules --------------------------------------------------------------------
def test_discriminative_lrs_written_out():
    lrs = training.discriminative_lrs(0.01, 5, 2.6)
    expected = [0.01 / 2.6**4, 0.01 / 2.6**3, 0.01 / 2.6**2, 0.01 / 2.6, 0.01]
    assert np.allclose(lrs, expected)
    assert np.allclose(lrs, [0.000218830, 0.000568958, 0.001479290, 0.003846154, 0.01])
    assert training.discriminative_lrs(0.01, 3, 1.0) == [0.01, 0.01, 0.01]


def test_gradual_unfreezing_sets_requires_grad_per_group():
    model = ClassifierNet(tiny_encoder(), num_classes=2)
    groups = model.layer_groups()  # [embedding, layer0, layer1, layer2, head]

    def flags():
        return [all(p.requires_grad for p in g) for g in groups]

    training.set_trainable(groups, 1)
    assert flags() == [False, False, False, False, True]
    training.set_trainable(groups, 2)
    assert flags() == [False, False, False, True, True]
    training.set_trainable(groups, 3)
    assert flags() == [False, False, True, True, True]
    training.set_trainable(groups, 5)
    assert flags() == [True] * 5


def test_optimizer_groups_carry_discriminative_lrs_and_skip_decay_on_vectors():
    model = LanguageModelNet(tiny_encoder(), 0.1)
    groups = model.layer_groups()
    lrs = training.discriminative_lrs(1e-2, len(groups), 2.0)  # [1.25e-3, 2.5e-3, 5e-3, 1e-2]
    opt = training.make_optimizer(groups, lrs, weight_decay=0.1, betas=(0.7, 0.99))
    by_group = {(pg["layer_group"], pg["weight_decay"]): pg["base_lr"] for pg in opt.param_groups}
    assert by_group == {(0, 0.1): 1.25e-3, (0, 0.0): 1.25e-3, (1, 0.1): 2.5e-3, (1, 0.0): 2.5e-3,
                        (2, 0.1): 5e-3, (2, 0.0): 5e-3, (3, 0.1): 1e-2, (3, 0.0): 1e-2}
    n_params = sum(len(pg["params"]) for pg in opt.param_groups)
    assert n_params == len(list(model.parameters()))  # the tied matrix once
    training.apply_lr(opt, 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(6.25e-4)


def test_schedules():
    f = training.schedule_factor
    assert f("stlr", 0, 100, 0.1) == pytest.approx(1 / 32)
    assert f("stlr", 10, 100, 0.1) == pytest.approx(1.0)
    assert f("stlr", 55, 100, 0.1) == pytest.approx((1 + 0.5 * 31) / 32)
    assert f("one_cycle", 0, 100, 0.25) == pytest.approx(1 / 25)
    assert f("one_cycle", 25, 100, 0.25) == pytest.approx(1.0)
    assert f("one_cycle", 99, 100, 0.25) < 0.01
    assert f("constant", 7, 100, 0.25) == 1.0


def test_match_vocab_copies_shared_rows_and_uses_the_mean_for_new_ones():
    weight = np.array([[1.0, 1.0], [3.0, 5.0]])
    bias = np.array([0.0, 2.0])
    new_w, new_b, shared = training.match_vocab(weight, bias, ["a", "b"], ["b", "c", "a"])
    assert new_w.tolist() == [[3.0, 5.0], [2.0, 3.0], [1.0, 1.0]]
    assert new_b.tolist() == [2.0, 1.0, 0.0]
    assert shared == 2


def test_project_and_copy_vectors():
    vectors = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    assert training.project_vectors(vectors, 3).shape == (6, 3)
    padded = training.project_vectors(vectors, 7)
    assert padded.shape == (6, 7) and np.all(padded[:, 5:] == 0)
    few = training.project_vectors(vectors[:2], 3)  # 2 vectors span 2 directions: PCA gives 2, the 3rd is zero
    assert few.shape == (2, 3) and np.all(few[:, 2] == 0)
    assert np.isclose(np.linalg.norm(few[0] - few[1]), np.linalg.norm(vectors[0] - vectors[1]), rtol=1e-5)
    embedding = np.full((3, 5), 0.5, np.float32)
    embedding[0] = -0.5
    new, copied = training.vectors_to_embedding(["x", "k1", "k9"], ["k0", "k1"], vectors[:2], embedding)
    assert copied == 1
    assert np.allclose(new[1], vectors[1] * (embedding.std() / vectors[:2].std()))
    assert np.array_equal(new[[0, 2]], embedding[[0, 2]])


# --- device -----------------------------------------------------------------------------------------
def test_choose_device_takes_the_cpu_path_here():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    before = torch.get_num_threads()
    try:
        assert device.choose_device("auto") == torch.device("cpu")
        assert torch.get_num_threads() == device.usable_cpu_count()
        assert device.choose_device("cpu", num_threads=1) == torch.device("cpu") and torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match="no GPU"):
            device.choose_device("cuda")
        with pytest.raises(ConfigError, match="device must be one of"):
            device.choose_device("tpu")
    finally:
        torch.set_num_threads(before)


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert device.resolve_precision(cpu, "float32") is None
    assert device.resolve_precision(cpu, "bfloat16") is torch.bfloat16
    assert device.resolve_precision(cpu, "auto") in (None, torch.bfloat16)
    with pytest.raises(ConfigError):
        device.resolve_precision(cpu, "float8")
    assert not device.grad_scaler(cpu, torch.bfloat16).is_enabled()


def test_training_warns_when_other_processes_keep_its_cores_busy(monkeypatch, caplog):
    """Issue 17 finding 12: torch threads stall on a core another process holds; the run says so (the thread
    count itself is not changed: results differ with it)."""
    import logging

    from nlp_pipeline.models import device as device_module

    ticks = os.sysconf("SC_CLK_TCK")
    readings = iter([(0.0, 0.0), (1.0 * ticks * 0.25, 0.0)])  # one other core busy for the whole sample, we idle
    monkeypatch.setattr(device_module, "usable_cpu_count", lambda: 2)
    monkeypatch.setattr(device_module, "_cpu_jiffies", lambda: next(readings))
    monkeypatch.setattr(device_module.time, "sleep", lambda s: None)
    monotonic = iter([10.0, 10.25])
    monkeypatch.setattr(device_module.time, "monotonic", lambda: next(monotonic))
    assert device_module.free_cpu_count() == 1

    readings = iter([(0.0, 0.0), (1.0 * ticks * 0.25, 0.0)])
    monotonic = iter([10.0, 10.25])
    with caplog.at_level(logging.WARNING, logger="nlp_pipeline"):
        with device_module.training_session("cpu", 0):
            assert torch.get_num_threads() == 2  # every usable core still: results must not depend on the load
    assert "keep 1 of the 2 cores" in caplog.text and "num_threads = 1" in caplog.text

    readings = iter([(0.0, 0.0), (0.1 * ticks * 0.25, 0.0)])  # a tenth of a core: no warning
    monotonic = iter([10.0, 10.25])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nlp_pipeline"):
        with device_module.training_session("cpu", 0):
            pass
    assert "cores torch uses busy" not in caplog.text


def test_the_package_makes_openmp_threads_wait_passively_unless_the_user_chose(tmp_path):
    """Issue 17 finding 12 (decision 0008): set before torch loads its OpenMP runtime; a user's value is kept."""
    import subprocess
    import sys

    code = "import os, nlp_pipeline, torch; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "ACTIVE"
