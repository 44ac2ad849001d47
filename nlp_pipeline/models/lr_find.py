"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates"; fastai's lr_find), and its plot.

    result = find_learning_rate(model, batches, loss_fn, optimizer_factory)   # start_lr 1e-7 -> end_lr 10, 100 steps
    result["suggestion_steepest"], result["suggestion_min10"]                  # two suggested peak learning rates
    plot_lr_find(result, "lr_find.png")

Trains for up to num_steps mini-batches while the learning rate grows exponentially from start_lr to end_lr,
records an exponentially smoothed (bias-corrected) loss, and stops once that loss exceeds 4x the best seen
or stops being finite. Suggestions: the LR of steepest descent (most negative slope of the smoothed loss
against log LR, looked for before the minimum) and the "minimum / 10" rule (the LR of the lowest smoothed
loss divided by 10), both ignoring the first 10 % of the steps, where the smoothed loss is still
noise (as fastai does). The model's weights, buffers, gradients, train/eval mode and torch's RNG state are
restored afterwards, so the test leaves no trace.

With discriminative learning rates the optimizer's param groups keep their ratios: each group gets
lr * base_lr / max(base_lr), so the LR swept (and suggested) is the top group's, as in the training stages.

`classifier_range_test` and `language_model_range_test` build the model and batches like the classifier and
finetune_lm stages do (from a stage config, read by field name) and run the test on them.
Limits: a one-shot iterator of batches ends the test when it runs out (a list is cycled); no gradient
scaler (float16 on CUDA is not supported here; bfloat16 autocast is); the LM test uses fixed BPTT windows
and plain cross-entropy (no AR/TAR terms); the suggestions are heuristics to read next to the plot.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from nlp_pipeline.artifacts import LanguageModel, Numericalized, WordVectors, split_code
from nlp_pipeline.core.errors import ConfigError, DataError

TARGETS = ("classifier", "finetune_lm")


def suggest_learning_rates(lrs: list[float], losses: list[float], skip_start: int = 0) -> tuple[float | None, float | None]:
    """(steepest descent LR, minimum-loss LR / 10) of a range test's smoothed losses; None when undefined.

    The first skip_start points are ignored (the smoothed loss is still mostly noise there), unless fewer
    than 3 would remain. The steepest point is the LR from which the loss falls fastest to the next point,
    searched up to the minimum (the slope after it is divergence):
    lrs [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1], losses [2.0, 1.8, 1.2, 1.1, 1.0, 3.0] -> minimum at 0.1, slopes per
    decade from each point up to it [-0.2, -0.6, -0.1, -0.1] -> (1e-4, 1e-2).
    """
    if len(lrs) != len(losses):
        raise ValueError(f"{len(lrs)} learning rates but {len(losses)} losses")
    if len(lrs) - skip_start >= 3:
        lrs, losses = lrs[skip_start:], losses[skip_start:]
    if not lrs:
        return None, None
    values = np.asarray(losses, dtype=np.float64)
    lowest = int(np.argmin(values))
    min10 = float(lrs[lowest]) / 10.0
    if lowest < 1:
        return None, min10  # the loss never fell: there is no descent to be steepest in
    logs = np.log10(np.asarray(lrs[: lowest + 1], dtype=np.float64))
    slopes = np.diff(values[: lowest + 1]) / np.diff(logs)  # slope from each point to the next, per decade
    return float(lrs[int(np.argmin(slopes))]), min10


def _cycle(batches: Iterable[Any]) -> Iterator[Any]:
    """A list (or any re-iterable) is repeated; a one-shot iterator is read once."""
    if iter(batches) is batches:
        return iter(batches)
    return itertools.chain.from_iterable(itertools.repeat(batches))


def find_learning_rate(
    model: Any,
    batches: Iterable[Any],
    loss_fn: Callable[[Any, Any], Any],
    optimizer_factory: Callable[[Any], Any],
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.98,
    divergence: float = 4.0,
    clip: float = 0.0,
) -> dict[str, Any]:
    """Run the LR range test on `model` and restore it; returns a dict:

    lrs, losses (smoothed), raw_losses: one per step taken (lrs strictly increasing); suggestion_steepest,
    suggestion_min10 (floats, or None when the loss never fell); steps; stopped ("end_lr reached",
    "loss diverged", "loss not finite" or "batches ran out").
    loss_fn(model, batch) -> scalar loss tensor; optimizer_factory(model) -> a torch optimizer over the
    parameters to train (frozen ones may be left out or have requires_grad False); clip > 0 clips the
    gradient norm as training does. Step i uses lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1)).
    """
    import torch

    if not 0.0 < start_lr < end_lr:
        raise ConfigError(f"the LR range needs 0 < start_lr < end_lr, got start_lr={start_lr:g}, end_lr={end_lr:g}")
    if num_steps < 2:
        raise ConfigError(f"the LR range test needs at least 2 steps, got {num_steps}")
    if not 0.0 <= smoothing < 1.0 or divergence <= 1.0:
        raise ConfigError(f"smoothing must be in [0, 1) and divergence > 1, got {smoothing}, {divergence}")

    saved = {name: value.detach().clone() for name, value in model.state_dict().items()}
    was_training = model.training
    rng_state = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    optimizer = optimizer_factory(model)
    bases = [float(group.get("base_lr", group["lr"])) for group in optimizer.param_groups]
    top = max(bases) if bases and max(bases) > 0 else 1.0
    scales = [base / top for base in bases]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ratio = end_lr / start_lr
    lrs: list[float] = []
    losses: list[float] = []
    raw: list[float] = []
    average, best, stopped = 0.0, math.inf, "end_lr reached"
    try:
        model.train()
        stream = _cycle(batches)
        for step in range(num_steps):
            batch = next(stream, None)
            if batch is None:
                stopped = "batches ran out"
                break
            lr = start_lr * ratio ** (step / (num_steps - 1))
            for group, scale in zip(optimizer.param_groups, scales):
                group["lr"] = lr * scale
            loss = loss_fn(model, batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                stopped = "loss not finite"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], clip)
            optimizer.step()
            average = smoothing * average + (1.0 - smoothing) * value
            smoothed = average / (1.0 - smoothing ** (step + 1))  # bias-corrected: the first value is the loss itself
            lrs.append(lr)
            losses.append(smoothed)
            raw.append(value)
            best = min(best, smoothed)
            if smoothed > divergence * best:
                stopped = "loss diverged"
                break
    finally:
        model.load_state_dict(saved)
        for p in model.parameters():
            p.grad = None
        model.train(was_training)
        torch.set_rng_state(rng_state)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    steepest, min10 = suggest_learning_rates(lrs, losses, skip_start=num_steps // 10)
    return {"lrs": lrs, "losses": losses, "raw_losses": raw, "suggestion_steepest": steepest,
            "suggestion_min10": min10, "steps": len(lrs), "stopped": stopped,
            "start_lr": start_lr, "end_lr": end_lr, "num_steps": num_steps}


def plot_lr_find(result: dict[str, Any], path: str | Any, title: str = "Learning-rate range test") -> Any:
    """Smoothed (and raw, faint) loss against the learning rate on a log axis, suggestions marked; writes a PNG."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lrs, losses = result["lrs"], result["losses"]
    figure = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if lrs:
        axes.plot(lrs, result.get("raw_losses", losses), color="0.75", linewidth=0.8, label="loss per batch")
        axes.plot(lrs, losses, color="C0", linewidth=2, label="smoothed loss")
        marks = (("suggestion_steepest", "steepest descent", "C1", "--"), ("suggestion_min10", "minimum / 10", "C2", ":"))
        for key, name, color, style in marks:
            lr = result.get(key)
            if lr is not None:  # a vertical line: minimum / 10 may lie left of the swept range
                axes.axvline(lr, color=color, linestyle=style, linewidth=2, label=f"{name}: {lr:.2g}")
        low, high = min(losses), max(losses)
        axes.set_ylim(low - 0.05 * (high - low + 1e-9), min(high, low + 3.0 * (losses[0] - low + 1e-9)) + 0.05 * (high - low + 1e-9))
    else:
        axes.text(0.5, 0.5, "no steps were taken", ha="center", va="center", transform=axes.transAxes)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (top layer group)")
    axes.set_ylabel("training loss")
    axes.set_title(f"{title} ({result.get('steps', len(lrs))} steps, {result.get('stopped', '')})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


# --- the two stage models ------------------------------------------------------------------------------------

def _pad_id(data: Numericalized) -> int:
    pad = data.vocab.stoi.get("xxpad")
    if pad is None:
        raise DataError("the vocabulary has no 'xxpad' token; build it with the numericalization stage (specials first)")
    return pad


def _trainable(groups: list, requested: int | None, default: int) -> int:
    n = default if requested in (None, 0) else requested
    if not 1 <= n <= len(groups):
        raise ConfigError(f"trainable groups must be between 1 and {len(groups)}, got {n}")
    return n


def classifier_range_test(cfg: Any, data: Numericalized, lm: LanguageModel | None = None, *, start_lr: float = 1e-7,
                          end_lr: float = 10.0, num_steps: int = 100, trainable_groups: int | None = None) -> dict[str, Any]:
    """The range test on the classifier the classifier stage would train (cfg: its ClassifierConfig).

    Same encoder (the fine-tuned LM's, or random when lm is None), head, dropouts, AdamW with discriminative
    ratios, clipping and precision; batches of labelled train documents as in training. trainable_groups
    None = the first stage's (1, the head, with gradual unfreezing; else all groups).
    """
    import torch
    import torch.nn.functional as F

    from nlp_pipeline.models.batching import pad_batch, sortish_batches
    from nlp_pipeline.models.device import autocast_context, choose_device, resolve_precision
    from nlp_pipeline.models.heads import ClassifierNet, build_encoder
    from nlp_pipeline.models.rnn import Dropouts
    from nlp_pipeline.models.training import discriminative_lrs, make_optimizer, set_trainable

    labels = np.asarray(data.labels)
    k = len(data.label_names)
    if k < 2:
        raise DataError(f"the classifier needs at least 2 labels, the corpus has {k}")
    pad = _pad_id(data)
    train = data.indices("train")
    train = train[labels[train] >= 0]
    if len(train) < 2:
        raise DataError("the classifier needs labelled train documents; the corpus has fewer than 2")
    device = choose_device(cfg.device, cfg.num_threads)
    dtype = resolve_precision(device, cfg.precision)
    dropouts = Dropouts(cfg.embedding_dropout, cfg.input_dropout, cfg.hidden_dropout, cfg.weight_dropout).scaled(cfg.dropout_scale)
    torch.manual_seed(cfg.seed)
    if lm is None:
        arch = {"vocab_size": len(data.vocab), "embedding_dim": cfg.embedding_dim, "hidden_dim": cfg.hidden_dim,
                "num_layers": cfg.num_layers, "rnn_type": cfg.rnn_type, "pad_id": pad}
        encoder = build_encoder(arch, dropouts)
    else:
        if list(lm.vocab.itos) != list(data.vocab.itos):
            raise DataError(f"the language model's vocabulary ({len(lm.vocab)} tokens) differs from the classifier "
                            f"data's ({len(data.vocab)}); fine-tune the LM on the same numericalization")
        encoder = build_encoder(lm.arch, dropouts)
        encoder.load_state_dict({name[len("encoder."):]: torch.tensor(np.asarray(value))
                                 for name, value in lm.state_dict.items() if name.startswith("encoder.")})
    model = ClassifierNet(encoder, k, cfg.head_hidden_dim,
                          (cfg.head_dropout * cfg.dropout_scale, cfg.final_dropout * cfg.dropout_scale)).to(device)
    groups = model.layer_groups()
    n = _trainable(groups, trainable_groups, 1 if cfg.gradual_unfreezing else len(groups))
    set_trainable(groups, n)

    ids, offsets = np.asarray(data.ids), np.asarray(data.offsets)
    lengths = np.diff(offsets)[train]
    targets = labels.astype(np.int64)
    rng = np.random.default_rng(cfg.seed + 1)

    def batches() -> Iterator[tuple[Any, Any, Any]]:
        while True:  # a fresh sortish order each pass, as each training epoch has
            for batch in sortish_batches(lengths, cfg.batch_size, rng):
                docs = train[batch]
                if len(docs) < 2:  # BatchNorm needs two rows
                    continue
                x, lens = pad_batch(ids, offsets, docs, pad, cfg.max_length)
                yield (torch.from_numpy(x).to(device), torch.from_numpy(lens).to(device),
                       torch.from_numpy(targets[docs]).to(device))

    def loss_fn(net: Any, batch: tuple[Any, Any, Any]) -> Any:
        x, lens, y = batch
        with autocast_context(device, dtype):
            logits = net(x, lens)  # (B, C)
        return F.cross_entropy(logits.float(), y)

    def optimizer_factory(net: Any) -> Any:
        return make_optimizer(groups, discriminative_lrs(1.0, len(groups), cfg.discriminative_factor),
                              cfg.weight_decay, (cfg.adam_beta1, cfg.adam_beta2))

    result = find_learning_rate(model, batches(), loss_fn, optimizer_factory, start_lr, end_lr, num_steps, clip=cfg.clip)
    result.update(target="classifier", trainable_groups=n, layer_groups=len(groups),
                  initialisation="random" if lm is None else "language model")
    return result


def language_model_range_test(cfg: Any, data: Numericalized, pretrained: LanguageModel | None = None,
                              vectors: WordVectors | None = None, *, start_lr: float = 1e-7, end_lr: float = 10.0,
                              num_steps: int = 100, trainable_groups: int | None = None) -> dict[str, Any]:
    """The range test on the LM the finetune_lm stage would fine-tune (cfg: its FinetuneLmConfig).

    The start model is built as the stage builds it: the pretrained LM with its rows matched to this
    vocabulary (new tokens get the mean row), or random weights; word vectors fill the rows the pretrained
    LM does not cover. Batches are BPTT windows of the documents the stage reads, the state carried over.
    trainable_groups None = all groups (the main fine-tuning phase; 1 = the frozen phase).
    """
    import torch

    from nlp_pipeline.models.batching import bptt_lengths, concat_documents, layout_stream, lm_windows
    from nlp_pipeline.models.device import autocast_context, choose_device, resolve_precision
    from nlp_pipeline.models.heads import LanguageModelNet, build_encoder
    from nlp_pipeline.models.rnn import AwdEncoder, Dropouts, detach_state
    from nlp_pipeline.models.training import (
        discriminative_lrs, load_numpy_state, make_optimizer, match_vocab, project_vectors, set_trainable,
        vectors_to_embedding,
    )

    splits = np.asarray(data.splits)
    wanted = [split_code(s) for s in ("train", "dev", "unsup")] + ([split_code("test")] if cfg.include_test_texts else [])
    docs = np.flatnonzero(np.isin(splits, wanted))
    pad = _pad_id(data)
    ids, offsets = np.asarray(data.ids), np.asarray(data.offsets)
    n_tokens = int((offsets[docs + 1] - offsets[docs]).sum())
    if n_tokens // cfg.batch_size < 2:
        raise DataError(f"finetune_lm: {n_tokens} tokens cannot fill {cfg.batch_size} rows of at least 2 tokens; "
                        f"lower finetune_lm.batch_size or use a larger corpus")
    device = choose_device(cfg.device, cfg.num_threads)
    dtype = resolve_precision(device, cfg.precision)
    dropouts = Dropouts(cfg.embedding_dropout, cfg.input_dropout, cfg.hidden_dropout, cfg.weight_dropout).scaled(cfg.dropout_scale)
    output_dropout = cfg.output_dropout * cfg.dropout_scale
    itos = list(data.vocab.itos)
    torch.manual_seed(cfg.seed)
    covered = np.zeros(len(itos), dtype=bool)
    if pretrained is None:
        encoder = AwdEncoder(len(itos), cfg.embedding_dim, cfg.hidden_dim, cfg.num_layers, cfg.rnn_type, pad, dropouts)
        model = LanguageModelNet(encoder, output_dropout, tie_weights=True)
    else:
        state = {name: np.asarray(value) for name, value in pretrained.state_dict.items()}
        weight, bias, _ = match_vocab(state["encoder.embedding.weight"], state["decoder.bias"], pretrained.vocab.itos, itos)
        state["encoder.embedding.weight"], state["decoder.bias"] = weight, bias
        if "decoder.weight" in state:
            state["decoder.weight"] = weight
        arch = dict(pretrained.arch, vocab_size=len(itos), pad_id=pad)
        model = LanguageModelNet(build_encoder(arch, dropouts), output_dropout, arch.get("tie_weights", True))
        load_numpy_state(model, state)
        known = set(pretrained.vocab.itos)
        covered = np.array([t in known for t in itos])
    if vectors is not None:
        dim = model.encoder.embedding_dim
        matrix = np.asarray(vectors.vectors, dtype=np.float32)
        if matrix.shape[1] != dim:
            if cfg.vectors_dim_mismatch != "project":
                raise ConfigError(f"word vectors have {matrix.shape[1]} dimensions but the LM embedding has {dim}; "
                                  f"set embeddings.vector_size = {dim} or finetune_lm.vectors_dim_mismatch = \"project\"")
            matrix = project_vectors(matrix, dim, cfg.seed)
        with torch.no_grad():
            embedding = model.encoder.embedding.weight
            new, _ = vectors_to_embedding(itos, list(vectors.keys), matrix, embedding.detach().cpu().numpy(), ~covered)
            embedding.copy_(torch.from_numpy(new))
    model.to(device)
    groups = model.layer_groups()
    n = _trainable(groups, trainable_groups, len(groups))
    set_trainable(groups, n)
    rng = np.random.default_rng(cfg.seed + 1)
    carried: list[Any] = [None]  # the recurrent state, carried from window to window like in training

    def batches() -> Iterator[tuple[Any, Any]]:
        while True:
            rows = layout_stream(concat_documents(ids, offsets, rng.permutation(docs)), cfg.batch_size)
            carried[0] = None
            for x, y in lm_windows(rows, bptt_lengths(rows.shape[1], cfg.bptt_length)):
                yield (torch.from_numpy(np.ascontiguousarray(x.T)).to(device),   # (T, B)
                       torch.from_numpy(np.ascontiguousarray(y.T)).to(device))   # (T, B)

    def loss_fn(net: Any, batch: tuple[Any, Any]) -> Any:
        x, y = batch
        with autocast_context(device, dtype):
            out = net(x, y, carried[0])
        carried[0] = detach_state(out.state)
        return out.loss

    def optimizer_factory(net: Any) -> Any:
        return make_optimizer(groups, discriminative_lrs(1.0, len(groups), cfg.discriminative_factor),
                              cfg.weight_decay, (cfg.adam_beta1, cfg.adam_beta2))

    result = find_learning_rate(model, batches(), loss_fn, optimizer_factory, start_lr, end_lr, num_steps, clip=cfg.clip)
    result.update(target="finetune_lm", trainable_groups=n, layer_groups=len(groups),
                  initialisation="random" if pretrained is None else "pretrained")
    return result


def range_test(target: str, cfg: Any, inputs: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Dispatch on the stage name: range_test("classifier", cfg, {"data": ..., "lm": ...}, num_steps=50)."""
    if target == "classifier":
        return classifier_range_test(cfg, inputs["data"], inputs.get("lm"), **options)
    if target == "finetune_lm":
        return language_model_range_test(cfg, inputs["data"], inputs.get("pretrained"), inputs.get("vectors"), **options)
    raise ConfigError(f"lr-find target must be one of {list(TARGETS)}, got {target!r}")
