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

`classifier_range_test` and `language_model_range_test` run it on a model built by the classifier or
finetune_lm stage (its build_* function; the stage's `range_test` glues config -> model -> test), with the
batches, loss, optimizer and clipping that stage trains with (from its config, read by field name).
Limits: a one-shot iterator of batches ends the test when it runs out (a list is cycled); no gradient
scaler (float16 on CUDA is not supported here; bfloat16 autocast is); the LM test uses fixed BPTT windows
and plain cross-entropy (no AR/TAR terms); the suggestions are heuristics to read next to the plot.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from nlp_pipeline.artifacts import Numericalized
from nlp_pipeline.core.errors import ConfigError


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


# --- range tests on the two stages' models -------------------------------------------------------------------

def _prepare(model: Any, cfg: Any, device: Any, requested: int | None, default_all: bool) -> tuple[Any, list, int]:
    """(autocast dtype, layer groups, trainable count): the model moved to device, its top groups trainable
    (requested None or 0 = all when default_all, else the head alone)."""
    from nlp_pipeline.models.device import resolve_precision
    from nlp_pipeline.models.training import set_trainable

    dtype = resolve_precision(device, cfg.precision)
    model.to(device)
    groups = model.layer_groups()
    n = (len(groups) if default_all else 1) if requested in (None, 0) else requested
    if not 1 <= n <= len(groups):
        raise ConfigError(f"trainable groups must be between 1 and {len(groups)}, got {n}")
    set_trainable(groups, n)
    return dtype, groups, n


def _optimizer_factory(cfg: Any, groups: list) -> Callable[[Any], Any]:
    """AdamW over the layer groups with the stage's discriminative ratios, weight decay and betas."""
    from nlp_pipeline.models.training import discriminative_lrs, make_optimizer

    def factory(net: Any) -> Any:
        return make_optimizer(groups, discriminative_lrs(1.0, len(groups), cfg.discriminative_factor),
                              cfg.weight_decay, (cfg.adam_beta1, cfg.adam_beta2))

    return factory


def classifier_range_test(model: Any, cfg: Any, data: Numericalized, docs: np.ndarray, device: Any, *,
                          start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
                          trainable_groups: int | None = None) -> dict[str, Any]:
    """The range test on a ClassifierNet as the classifier stage trains it (cfg: its ClassifierConfig).

    model: built by stages.classifier.build_classifier_model; docs: the labelled train documents. Batches as
    in training (sortish, padded, cut at max_length), the model's loss (by target type), AdamW with discriminative ratios,
    clipping and precision. trainable_groups None = the first stage's (1, the head, with gradual
    unfreezing; else all groups).
    """
    import torch

    from nlp_pipeline.models.batching import pad_batch, pad_id, sortish_batches
    from nlp_pipeline.models.device import autocast_context

    pad = pad_id(data.vocab)
    dtype, groups, n = _prepare(model, cfg, device, trainable_groups, default_all=not cfg.gradual_unfreezing)
    ids, offsets = np.asarray(data.ids), np.asarray(data.offsets)
    lengths = np.diff(offsets)[docs]
    targets = model.encode_targets(np.asarray(data.labels))
    rng = np.random.default_rng(cfg.seed + 1)

    def batches() -> Iterator[tuple[Any, Any, Any]]:
        while True:  # a fresh sortish order each pass, as each training epoch has
            for batch in sortish_batches(lengths, cfg.batch_size, rng):
                chosen = docs[batch]
                if len(chosen) < 2:  # BatchNorm needs two rows
                    continue
                x, lens = pad_batch(ids, offsets, chosen, pad, cfg.max_length)
                yield (torch.from_numpy(x).to(device), torch.from_numpy(lens).to(device),
                       targets[torch.from_numpy(chosen)].to(device))

    def loss_fn(net: Any, batch: tuple[Any, Any, Any]) -> Any:
        x, lens, y = batch
        with autocast_context(device, dtype):
            logits = net(x, lens)  # (B, C)
        return model.loss(logits, y, smoothing=cfg.label_smoothing)

    result = find_learning_rate(model, batches(), loss_fn, _optimizer_factory(cfg, groups), start_lr, end_lr, num_steps,
                                clip=cfg.clip)
    result.update(target="classifier", trainable_groups=n, layer_groups=len(groups))
    return result


def language_model_range_test(model: Any, cfg: Any, data: Numericalized, docs: np.ndarray, device: Any, *,
                              start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
                              trainable_groups: int | None = None) -> dict[str, Any]:
    """The range test on a LanguageModelNet as the finetune_lm stage fine-tunes it (cfg: its FinetuneLmConfig).

    model: built by stages.language_model.build_finetune_model; docs: the documents the stage reads (their
    tokens must fill cfg.batch_size rows). Batches are BPTT windows of those documents in a fresh order each
    pass, the state carried over. trainable_groups None = all groups (the main fine-tuning phase; 1 = the
    frozen phase).
    """
    import torch

    from nlp_pipeline.models.batching import bptt_lengths, concat_documents, layout_stream, lm_windows
    from nlp_pipeline.models.device import autocast_context
    from nlp_pipeline.models.rnn import detach_state

    dtype, groups, n = _prepare(model, cfg, device, trainable_groups, default_all=True)
    ids, offsets = np.asarray(data.ids), np.asarray(data.offsets)
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

    result = find_learning_rate(model, batches(), loss_fn, _optimizer_factory(cfg, groups), start_lr, end_lr, num_steps,
                                clip=cfg.clip)
    result.update(target="finetune_lm", trainable_groups=n, layer_groups=len(groups))
    return result
