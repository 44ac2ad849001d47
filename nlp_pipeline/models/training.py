"""Training machinery shared by the LM and classifier stages: layer groups, discriminative learning rates,
gradual unfreezing, LR schedules, vocabulary matching, and the two training loops.

- Layer groups come from the nets (`layer_groups()`): the unit of freezing and of discriminative LRs.
  Group i of n gets lr / factor ** (n - 1 - i): the top group (head, or the tied embedding/decoder of an LM)
  gets lr, each group below it 2.6x less (ULMFiT).
- AdamW (decoupled weight decay; none on biases, norms and 1-d parameters), betas configurable
  ((0.7, 0.99) in AWD-LSTM/ULMFiT), gradient-norm clipping, one LR multiplier per step from the schedule:
  "stlr" (slanted triangular, Howard & Ruder 2018: cut_frac, ratio 32), "one_cycle" (fastai: cosine
  warm-up from lr/25, cosine decay to lr/1e5) or "constant".
- LM loop: stream batches with (variable) BPTT, the recurrent state carried over (detached) and reset at
  every epoch, LR scaled by seq_len / bptt, AR/TAR, a held-out stream evaluated each epoch.
- Classifier loop: gradual unfreezing stages, sortish batches, model selection on a validation set.
- Progress (TrainingProgress, both loops): a bar per epoch on a terminal; everywhere one log line per epoch (what,
  epoch i/n, train loss, validation score or perplexity, seconds, ETA of the loop's remaining epochs at the mean
  epoch time so far); where no bar draws (stderr is a file or a pipe) also a line at most every PROGRESS_EVERY
  seconds inside an epoch (how far, how fast, the epoch's ETA). Process 0 alone reports.
- Observers (models/observers.py, e.g. export/tensorboard_log.py's LiveLog): inside observe(obs), both loops of
  process 0 call obs.begin(kind, label, n_groups) when they start ("lm" with the phase, "classifier" with its progress label),
  obs.step(loss, learning_rates) after every optimisation step (the step's loss and each layer group's current LR,
  0.0 for a frozen group), obs.epoch(row) with each history row, and obs.end() when the loop returns. Without an
  observer the loops do no extra work; an observer's own errors are its business (it must not raise).
- Data parallel (under torchrun, models/distributed.py): both loops wrap the model in DistributedDataParallel
  and keep the global batch: each process takes a shard of the rows of every LM batch / of every classifier
  batch (the same batches, steps, LRs and unfreezing everywhere); losses are weighted so the averaged
  gradient is the gradient of the global batch; evaluation is sharded and its sums all-reduced (or its rows
  gathered), so every process takes the same best-epoch and early-stopping decisions.
Limits: one device per process; no gradient accumulation. With several processes, BatchNorm statistics are
per process (averaged before each evaluation), so a classifier is not bit-identical to a 1-process run.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.models import distributed
from nlp_pipeline.models.observers import current as current_observer
from nlp_pipeline.models.batching import (
    bptt_lengths, concat_documents, layout_stream, lm_windows, pad_batch, shard, sorted_batches, sortish_batches,
)
from nlp_pipeline.models.device import autocast_context, grad_scaler
from nlp_pipeline.models.heads import ClassifierNet, LanguageModelNet
from nlp_pipeline.models.rnn import detach_state
from nlp_pipeline.targets import PRIMARY, THRESHOLD, best_threshold, mean_loss, score

SCHEDULES = ("stlr", "one_cycle", "constant")
PROGRESS_EVERY = 60.0  # seconds between progress lines inside an epoch where no bar draws (stderr is not a terminal)
log = logging.getLogger("nlp_pipeline")


# --- learning rates, groups, schedules -------------------------------------------------------------------
def discriminative_lrs(lr: float, n_groups: int, factor: float = 2.6) -> list[float]:
    """Per-group learning rates, bottom group first, top group = lr.

    discriminative_lrs(0.01, 3, 2.0) -> [0.0025, 0.005, 0.01]
    """
    return [lr / factor ** (n_groups - 1 - i) for i in range(n_groups)]


def set_trainable(groups: list[list[nn.Parameter]], n_trainable: int) -> None:
    """requires_grad = True for the top n_trainable groups, False below (gradual unfreezing).

    With groups [emb, l0, l1, head]: n_trainable=1 -> only head; 2 -> l1 + head; 4 -> all.
    A parameter shared by two groups (tied weights) is trainable if either group is.
    """
    n = len(groups)
    trainable = {id(p) for g in groups[max(0, n - n_trainable):] for p in g}
    for group in groups:
        for p in group:
            p.requires_grad_(id(p) in trainable)


def make_optimizer(groups: list[list[nn.Parameter]], lrs: list[float], weight_decay: float,
                   betas: tuple[float, float], eps: float = 1e-7) -> torch.optim.AdamW:
    """AdamW with two torch param groups per layer group (decayed matrices, undecayed vectors).

    Each torch group remembers its layer group ("layer_group") and its peak LR ("base_lr"), which the
    schedule multiplies. A parameter listed in several layer groups (tied weights) is taken once, by the first.
    """
    seen: set[int] = set()
    param_groups = []
    for i, (group, lr) in enumerate(zip(groups, lrs)):
        decay, no_decay = [], []
        for p in group:
            if id(p) in seen:
                continue
            seen.add(id(p))
            (decay if p.dim() >= 2 else no_decay).append(p)
        for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                param_groups.append({"params": params, "lr": lr, "base_lr": lr, "weight_decay": wd, "layer_group": i})
    kwargs: dict[str, Any] = {"betas": betas, "eps": eps}
    try:
        return torch.optim.AdamW(param_groups, fused=True, **kwargs)  # one fused kernel per step on CPU and GPU
    except (RuntimeError, TypeError):  # a device/dtype without a fused AdamW kernel
        return torch.optim.AdamW(param_groups, foreach=True, **kwargs)


def set_base_lrs(optimizer: torch.optim.Optimizer, lrs: list[float]) -> None:
    """Give layer group i the peak LR lrs[i] (for a new training phase)."""
    for pg in optimizer.param_groups:
        pg["base_lr"] = lrs[pg["layer_group"]]


def schedule_factor(kind: str, step: int, total: int, warmup_fraction: float) -> float:
    """LR multiplier at `step` of `total` (0-based).

    stlr (Howard & Ruder 2018, ratio 32): schedule_factor("stlr", 0, 100, 0.1) -> 1/32 = 0.03125;
    at step 10 (the cut) -> 1.0; at step 99 -> ~0.041. one_cycle (fastai): 1/25 at step 0, 1.0 after
    warmup_fraction of the steps, cosine down to 1e-5. constant -> 1.0.
    """
    if kind == "constant" or total <= 1:
        return 1.0
    if kind == "stlr":
        ratio = 32.0
        cut = max(1, math.floor(total * warmup_fraction))
        p = step / cut if step < cut else 1.0 - (step - cut) / max(1, total - cut)
        return (1.0 + p * (ratio - 1.0)) / ratio
    if kind == "one_cycle":
        warm = max(1, int(total * warmup_fraction))
        if step < warm:
            start, end, pos = 1.0 / 25.0, 1.0, step / warm
        else:
            start, end, pos = 1.0, 1e-5, (step - warm) / max(1, total - warm)
        return end + (start - end) * (1.0 + math.cos(math.pi * pos)) / 2.0
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")


def backward_and_step(optimizer: torch.optim.Optimizer, scaler: Any, loss: torch.Tensor, params: list, clip: float) -> None:
    """One optimisation step shared by the LM and classifier loops: backward through the (possibly scaled) loss,
    clip the gradient norm to `clip` (0 = no clipping), step, update the scaler."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
    scaler.step(optimizer)
    scaler.update()


def apply_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for pg in optimizer.param_groups:
        pg["lr"] = pg["base_lr"] * factor


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# --- vocabulary matching and embedding initialisation ------------------------------------------------------
def match_vocab(weight: np.ndarray, bias: np.ndarray | None, old_itos: list[str],
                new_itos: list[str]) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Rows of an embedding (and decoder bias) re-indexed from old_itos to new_itos.

    Tokens in both vocabularies keep their row; new tokens get the mean row (and the mean bias).
    old ["a", "b"] rows [[1, 1], [3, 5]], new ["b", "c"] -> [[3, 5], [2, 3]]; returns (weight, bias, n_shared).
    """
    weight = np.asarray(weight, dtype=np.float32)
    old_index = {s: i for i, s in enumerate(old_itos)}
    source = np.array([old_index.get(s, -1) for s in new_itos], dtype=np.int64)
    found = source >= 0
    new_weight = np.empty((len(new_itos), weight.shape[1]), np.float32)
    new_weight[found] = weight[source[found]]
    new_weight[~found] = weight.mean(axis=0)
    new_bias = None
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float32)
        new_bias = np.empty(len(new_itos), np.float32)
        new_bias[found] = bias[source[found]]
        new_bias[~found] = bias.mean()
    return new_weight, new_bias, int(found.sum())


def new_words(itos: list[str], pretrained_itos: list[str], ids: np.ndarray) -> tuple[np.ndarray, float]:
    """(bool (V,): which tokens of itos the pretrained vocabulary lacks, the share of `ids` that are such tokens).

    new_words(["a", "b", "c"], ["a"], [0, 0, 1, 2]) -> ([False, True, True], 0.5)
    """
    known = set(pretrained_itos)
    new = np.array([t not in known for t in itos], dtype=bool)
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(itos))
    return new, float(counts[new].sum() / max(int(counts.sum()), 1))


def vectors_to_embedding(itos: list[str], keys: list[str], vectors: np.ndarray, embedding: np.ndarray,
                         rows: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Copy word vectors into embedding rows of tokens that have one, rescaled to the embedding's spread.

    vectors (K, D) must have D == embedding.shape[1] (the caller projects first if needed). Only rows flagged
    in `rows` (bool (V,), default all) may change. Each vector is scaled by std(embedding) / std(vectors) so a
    copied row looks like its neighbours to the rest of the network. Returns (new embedding, rows copied).
    """
    embedding = np.array(embedding, dtype=np.float32, copy=True)
    index = {k: i for i, k in enumerate(keys)}
    vectors = np.asarray(vectors, dtype=np.float32)
    scale = float(embedding.std()) / max(float(vectors.std()), 1e-12)
    copied = 0
    for row, token in enumerate(itos):
        if rows is not None and not rows[row]:
            continue
        j = index.get(token)
        if j is not None:
            embedding[row] = vectors[j] * scale
            copied += 1
    return embedding, copied


def project_vectors(vectors: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """Fit (K, D) vectors to (K, dim): PCA onto the top dim components when D > dim, zero-padding when D < dim."""
    vectors = np.asarray(vectors, dtype=np.float32)
    k, d = vectors.shape
    if d == dim:
        return vectors
    if d < dim:
        return np.concatenate([vectors, np.zeros((k, dim - d), np.float32)], axis=1)
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = (centred @ vt[:dim].T).astype(np.float32)  # (K, min(K, D, dim)): K < dim vectors span < dim directions
    return project_vectors(projected, dim, seed) if projected.shape[1] < dim else projected


# --- progress -----------------------------------------------------------------------------------------
class TrainingProgress:
    """How one training loop reports (see the module notes): start_epoch(what, total, unit) at an epoch's start;
    advance(n, running) as work is done, or iterate(items, running) around a batch loop (running: a short text such
    as "train loss 0.53", or a function giving it, shown with the next line); line(note) for a line now (a
    checkpoint); end_epoch(summary, seconds) for the epoch's line with the loop's ETA. `epochs`: how many epochs
    the loop runs at most (the ETA's horizon); enabled=False (processes other than 0) is silent."""

    def __init__(self, epochs: int, enabled: bool = True):
        self.epochs, self.enabled = max(int(epochs), 1), enabled
        self.terminal = enabled and bool(getattr(sys.stderr, "isatty", lambda: False)())  # where tqdm draws
        self.finished, self.seconds = 0, 0.0
        self.bar: Any = None
        self.what, self.total, self.done, self.unit, self.running = "", 0, 0, "", None
        self.started = self.first_done = self.last_line = 0.0

    def start_epoch(self, what: str, total: int, unit: str, done: int = 0) -> None:
        self.what, self.total, self.done, self.unit, self.running = what, int(total), int(done), unit, None
        self.started = self.last_line = time.perf_counter()
        self.first_done = self.done
        if self.terminal:
            self.bar = tqdm(total=self.total, initial=self.done, desc=what, unit="tok" if unit == "tokens" else "batch",
                            unit_scale=unit == "tokens", leave=False)

    def advance(self, n: int, running: str | Callable[[], str | None] | None = None) -> None:
        self.done += int(n)
        if running is not None:
            self.running = running
        if self.bar is not None:
            self.bar.update(int(n))
            if running is not None and (not callable(running) or self.done % 20 == 0):
                self.bar.set_postfix_str(self._running() or "", refresh=False)
        elif self.enabled and time.perf_counter() - self.last_line >= PROGRESS_EVERY:
            self.line()

    def iterate(self, items: Any, running: Callable[[], str | None] | None = None) -> Any:
        """The items, one advance(1, running) after each has been worked on (also after a `continue`)."""
        for item in items:
            yield item
            self.advance(1, running)

    def _running(self) -> str | None:
        return self.running() if callable(self.running) else self.running

    def line(self, note: str = "") -> None:
        """One line now: how far into the epoch, how fast, the epoch's ETA, the running value, `note`."""
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = (self.done - self.first_done) / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        running = self._running()
        parts = [f"{round(100 * self.done / max(self.total, 1))}% ({self.done:,} of {self.total:,} {self.unit})",
                 f"{rate:.1f} {self.unit}/s" if rate < 100 else f"{rate:.0f} {self.unit}/s", f"epoch ETA {_clock(left)}",
                 *([running] if running else []), *([note] if note else [])]
        log.info("%s: %s", self.what, ", ".join(parts))
        self.last_line = now

    def end_epoch(self, summary: str, seconds: float) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.finished += 1
        self.seconds += float(seconds)
        left = max(self.epochs - self.finished, 0) * self.seconds / self.finished
        if self.enabled:
            log.info("%s: %s, %.0f s, ETA %s", self.what, summary, seconds, _clock(left))


def _clock(seconds: float) -> str:
    """h:mm:ss ("?" when not known yet)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --- observers ----------------------------------------------------------------------------------------
def group_learning_rates(optimizer: torch.optim.Optimizer) -> list[float]:
    """The LR each layer group trains with now, bottom group first; 0.0 for a frozen group (make_optimizer's groups)."""
    rates: dict[int, float] = {}
    for pg in optimizer.param_groups:
        trainable = any(p.requires_grad for p in pg["params"][:1])
        rates[pg["layer_group"]] = max(rates.get(pg["layer_group"], 0.0), float(pg["lr"]) if trainable else 0.0)
    return [rates[i] for i in sorted(rates)]


# --- language model loop ------------------------------------------------------------------------------
def evaluate_language_model(model: LanguageModelNet, rows: np.ndarray, bptt: int, device: torch.device,
                            dtype: torch.dtype | None = None) -> float:
    """Mean cross-entropy per target token of a (B, N) held-out stream, state carried, no dropout.
    With several processes each scores its shard of the rows and the sums are all-reduced (call it on every
    process, with the unwrapped model)."""
    model.eval()
    lengths = bptt_lengths(rows.shape[1], bptt)
    world = distributed.world_size()
    if world > 1:
        rows = shard(rows, distributed.rank(), world)
    total, count, state = 0.0, 0, None
    with torch.no_grad(), autocast_context(device, dtype):
        for x, y in lm_windows(rows, lengths if rows.shape[0] else []):
            xt = torch.from_numpy(np.ascontiguousarray(x.T)).to(device)  # (T, B)
            yt = torch.from_numpy(np.ascontiguousarray(y.T)).to(device)  # (T, B)
            out = model(xt, yt, state)
            state = out.state
            total += float(out.loss) * yt.numel()
            count += yt.numel()
    if world > 1:
        total, count = distributed.all_reduce_sum([total, count])
    return total / max(count, 1)


def fit_language_model(
    model: LanguageModelNet,
    optimizer: torch.optim.Optimizer,
    ids: np.ndarray,
    offsets: np.ndarray,
    train_docs: np.ndarray,
    valid_rows: np.ndarray | None,
    *,
    epochs: int,
    batch_size: int,
    bptt: int,
    variable_bptt: bool,
    schedule: str,
    warmup_fraction: float,
    clip: float,
    activation_regularization: float,
    temporal_activation_regularization: float,
    rng: np.random.Generator,
    device: torch.device,
    dtype: torch.dtype | None = None,
    phase: str = "train",
    max_steps: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    resume: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    save_every: float = 300.0,
    softmax_sample: int = 0,
) -> list[dict[str, Any]]:
    """Train `model` for `epochs` passes over the documents `train_docs` (indexes into offsets); returns
    one history row per epoch. Each epoch shuffles document order, concatenates, lays the stream out in
    batch_size rows, and walks it with BPTT windows; the state is reset per epoch. One schedule cycle spans
    all epochs (or `max_steps`, which stops early: benchmarks).

    Resuming: every `save_every` seconds (0 = every step) `save(progress)` receives this loop's position
    (epoch, window, step, the rng state at the epoch's start, the recurrent state, the torch RNG state,
    running sums, history); the caller adds the model and optimizer and keeps it. Given back as `resume`
    (with the model and optimizer restored by the caller), the loop redraws that epoch's order and windows,
    skips the windows done and continues to the same weights as an uninterrupted run. softmax_sample > 0 trains
    on a sampled softmax (LanguageModelNet.forward's `sample`); the training loss in the history is then that
    sampled loss, lower than the full one, while validation always scores the whole vocabulary. With several processes
    it saves at epoch ends only (each process holds its own rows' recurrent state).

    Under torchrun, batch_size stays the global batch: process r trains on rows r, r + W, ... of the stream
    (DDP averages the gradients, each loss weighted by its share of rows, so a step is the step of all
    batch_size rows); the history reports global losses and tokens."""
    distributed.setup()
    rank, world = distributed.rank(), distributed.world_size()
    if batch_size < world:
        raise ConfigError(f"batch_size {batch_size} is smaller than the {world} processes; raise it or use fewer processes")
    net = distributed.wrap(model, device)  # the model itself in a single process
    main = rank == 0
    scaler = grad_scaler(device, dtype)
    n_tokens = int(sum(offsets[i + 1] - offsets[i] for i in train_docs))
    steps_per_epoch = max(1, (n_tokens // batch_size - 1) // bptt)
    total_steps = max(1, steps_per_epoch * epochs)
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)  # the schedule completes within the budget
    history, step = list(resume["history"]) if resume else [], resume["step"] if resume else 0
    train_name = "sampled-softmax train" if softmax_sample else "train"
    params = trainable_parameters(model)
    first_epoch = resume["epoch"] if resume else 0
    last_save = time.perf_counter()
    progress = TrainingProgress(epochs - first_epoch, enabled=main)
    observer = current_observer() if main else None
    if observer is not None:
        observer.begin("lm", phase, len({pg["layer_group"] for pg in optimizer.param_groups}))
    for epoch in range(first_epoch, epochs):
        model.train()
        resuming = resume is not None and epoch == first_epoch
        if resuming:
            rng.bit_generator.state = resume["rng"]  # the state this epoch started from: same order, same windows
        epoch_rng = rng.bit_generator.state
        rows = layout_stream(concat_documents(ids, offsets, rng.permutation(train_docs)), batch_size)
        lengths = bptt_lengths(rows.shape[1], bptt, rng if variable_bptt else None)
        share = 1.0
        if world > 1:
            rows = shard(rows, rank, world)  # (B / W, N): the same stream and windows on every process
            share = rows.shape[0] * world / batch_size  # 1.0 when W divides batch_size
        state, loss_sum, token_count, started = None, 0.0, 0, time.perf_counter()
        done_windows = 0
        if resuming:
            done_windows, loss_sum, token_count = resume["window"], resume["loss_sum"], resume["token_count"]
            state = _to_device(resume["hidden"], device)
            started -= resume.get("epoch_seconds", 0.0)
            _set_rng_states(resume["torch_rng"])
            if resume.get("scaler") is not None:
                scaler.load_state_dict(resume["scaler"])
        total_tokens = sum(lengths) * rows.shape[0]
        progress.start_epoch(f"{phase} epoch {epoch + 1}/{epochs}", total_tokens, "tokens",
                             done=sum(lengths[:done_windows]) * rows.shape[0])
        for window, (x, y) in enumerate(lm_windows(rows, lengths)):
            if window < done_windows:
                continue
            seq_len = x.shape[1]
            apply_lr(optimizer, schedule_factor(schedule, min(step, total_steps - 1), total_steps, warmup_fraction)
                     * seq_len / bptt)
            xt = torch.from_numpy(np.ascontiguousarray(x.T)).to(device)  # (T, B)
            yt = torch.from_numpy(np.ascontiguousarray(y.T)).to(device)  # (T, B)
            with autocast_context(device, dtype):
                out = net(xt, yt, state, sample=softmax_sample)
                loss = out.loss
                if activation_regularization:
                    loss = loss + activation_regularization * out.dropped.float().pow(2).mean()
                if temporal_activation_regularization and out.raw.shape[0] > 1:
                    loss = loss + temporal_activation_regularization * (out.raw[1:] - out.raw[:-1]).float().pow(2).mean()
                if share != 1.0:  # unequal shares: DDP's mean of the weighted losses = the global mean
                    loss = loss * share
            state = detach_state(out.state)
            backward_and_step(optimizer, scaler, loss, params, clip)
            value = float(out.loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"{phase}: language-model loss became {value} at step {step}; lower the learning rate")
            loss_sum += value * yt.numel()
            token_count += yt.numel()
            step += 1
            running = f"{train_name} perplexity {math.exp(min(loss_sum / max(token_count, 1), 50.0)):.1f}" if step % 20 == 0 else None
            progress.advance(yt.numel(), running)
            if observer is not None:
                observer.step(value, group_learning_rates(optimizer))
            if on_step is not None:
                on_step(step, value)
            if max_steps is not None and step >= max_steps:
                break
            if save is not None and world == 1 and time.perf_counter() - last_save >= save_every:
                save({"epoch": epoch, "window": window + 1, "step": step, "rng": epoch_rng, "hidden": state,
                      "loss_sum": loss_sum, "token_count": token_count, "history": history,
                      "epoch_seconds": time.perf_counter() - started, "torch_rng": _get_rng_states(),
                      "scaler": scaler.state_dict() if scaler.is_enabled() else None})
                last_save = time.perf_counter()
                progress.line("checkpoint saved")
        if world > 1:
            loss_sum, token_count = distributed.all_reduce_sum([loss_sum, token_count])
            token_count = int(token_count)
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {
            "phase": phase, "epoch": epoch + 1, "train_loss": round(loss_sum / max(token_count, 1), 4),
            "seconds": round(seconds, 2), "tokens_per_second": round(token_count / max(seconds, 1e-9), 1),
            "train_tokens": token_count, "learning_rate": max(pg["base_lr"] for pg in optimizer.param_groups),
        }
        if valid_rows is not None and valid_rows.size:
            val_loss = evaluate_language_model(model, valid_rows, bptt, device, dtype)
            row.update(val_loss=round(val_loss, 4), val_perplexity=round(math.exp(min(val_loss, 50.0)), 2))
        if softmax_sample:
            row["softmax_sample"] = softmax_sample  # train_loss is that sampled softmax's
        history.append(row)
        if observer is not None:
            observer.epoch(dict(row))
        progress.end_epoch(f"{train_name} loss {row['train_loss']:.4f}"
                           + (f", validation perplexity {row['val_perplexity']:.2f}" if "val_perplexity" in row else "")
                           + f", {row['tokens_per_second']:.0f} tokens/s", seconds)
        if max_steps is not None and step >= max_steps:
            break
        if save is not None and epoch + 1 < epochs:  # the next epoch starts from here (any number of processes)
            save({"epoch": epoch + 1, "window": 0, "step": step, "rng": rng.bit_generator.state, "hidden": None,
                  "loss_sum": 0.0, "token_count": 0, "history": history, "epoch_seconds": 0.0,
                  "torch_rng": _get_rng_states(), "scaler": scaler.state_dict() if scaler.is_enabled() else None})
            last_save = time.perf_counter()
    distributed.release(net)
    if observer is not None:
        observer.end()
    return history


def _get_rng_states() -> dict[str, Any]:
    """torch's CPU (and CUDA) generator states: dropout masks after a resume are the ones the run would have drawn."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _to_device(state: Any, device: torch.device) -> Any:
    """A saved recurrent state (tensors in nested lists/tuples, or None) on `device`."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.to(device)
    return type(state)(_to_device(s, device) for s in state)


# --- classifier loop -----------------------------------------------------------------------------------
def predict_classifier(model: ClassifierNet, ids: np.ndarray, offsets: np.ndarray, indexes: np.ndarray,
                       pad_id: int, max_length: int, batch_size: int, device: torch.device,
                       dtype: torch.dtype | None = None, features: bool = False) -> np.ndarray:
    """The model's predictions (len(indexes), C) float32 of documents `indexes`, in that order: class or
    per-label probabilities, or values (C = 1) for regression (ClassifierNet.predict); with features=True
    their concat-pooled document vectors (len(indexes), 3E) instead (for the projector)."""
    model.eval()
    lengths = np.diff(np.asarray(offsets))[indexes]
    width = 3 * model.encoder.embedding_dim if features else model.num_classes
    out = np.zeros((len(indexes), width), np.float32)
    with torch.no_grad(), autocast_context(device, dtype):
        for batch in sorted_batches(lengths, batch_size):
            x, lens = pad_batch(ids, offsets, np.asarray(indexes)[batch], pad_id, max_length)
            x, lens = torch.from_numpy(x).to(device), torch.from_numpy(lens).to(device)
            if features:
                out[batch] = model.document_vectors(x, lens).float().cpu().numpy()  # (B, 3E)
            else:
                out[batch] = model.predict(x, lens).float().cpu().numpy()  # (B, C)
    return out


def predict_classifier_sharded(model: ClassifierNet, ids: np.ndarray, offsets: np.ndarray, indexes: np.ndarray,
                               pad_id: int, max_length: int, batch_size: int, device: torch.device,
                               dtype: torch.dtype | None = None) -> np.ndarray:
    """predict_classifier split over the processes of a distributed run: each scores its shard of `indexes`,
    and every process gets all the rows (a collective: call it on every process). One process: predict_classifier."""
    world = distributed.world_size()
    if world == 1:
        return predict_classifier(model, ids, offsets, indexes, pad_id, max_length, batch_size, device, dtype)
    part = predict_classifier(model, ids, offsets, shard(np.asarray(indexes), distributed.rank(), world), pad_id,
                              max_length, batch_size, device, dtype)
    return distributed.gather_shards(part, len(indexes))


def fit_classifier(
    model: ClassifierNet,
    ids: np.ndarray,
    offsets: np.ndarray,
    labels: np.ndarray,
    train_docs: np.ndarray,
    valid_docs: np.ndarray,
    *,
    stages: list[tuple[int, int, float]],
    discriminative_factor: float,
    batch_size: int,
    max_length: int,
    pad_id: int,
    schedule: str,
    warmup_fraction: float,
    weight_decay: float,
    betas: tuple[float, float],
    clip: float,
    patience: int,
    rng: np.random.Generator,
    device: torch.device,
    dtype: torch.dtype | None = None,
    progress_label: str = "classifier",
    average: bool = False,
    label_smoothing: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, Tensor], dict[str, Any]]:
    """Gradual unfreezing: stage (n_trainable_groups, epochs, lr) trains the top n groups with discriminative
    LRs for `epochs` epochs under one schedule cycle, on the model's own loss (ClassifierNet.loss: by target
    type). After every epoch the validation set is scored; the best state (the target type's primary metric,
    targets.PRIMARY, e.g. accuracy, then lower loss) is kept and returned with its history row, whose
    "val_<primary>" column holds the metric. `patience` > 0 stops a
    stage after that many epochs without improvement (0 = never). `progress_label` starts each progress line.
    `average`: the weights at the end of the last stage's epochs after its warm-up (at least two) are averaged
    (stochastic weight averaging), BatchNorm statistics recomputed on one pass over train, and the averaged
    model is one more candidate, scored like an epoch; its history row has epoch "average" and
    "averaged_epochs" [first, last]. `label_smoothing` smooths the training loss's targets (ClassifierNet.loss);
    validation always scores the plain loss.

    Under torchrun, batch_size stays the global batch: every process draws the same batches and trains on
    its shard of each (documents r, r + W, ... of the length-sorted batch), a batch being skipped everywhere
    when a shard would hold fewer than 2 documents (BatchNorm); validation is sharded and gathered."""
    distributed.setup()
    rank, world = distributed.rank(), distributed.world_size()
    if world > 1 and batch_size < 2 * world:
        raise ConfigError(f"batch_size {batch_size} gives fewer than 2 documents to each of the {world} processes "
                          "(BatchNorm needs 2); raise it or use fewer processes")
    groups = model.layer_groups()
    optimizer = make_optimizer(groups, discriminative_lrs(1.0, len(groups), discriminative_factor), weight_decay, betas)
    scaler = grad_scaler(device, dtype)
    labels = np.asarray(labels)
    targets = model.encode_targets(labels)  # int64 ids, float indicators, or the standardised value
    primary = PRIMARY[model.target_type]
    lengths = np.diff(np.asarray(offsets))[train_docs]
    history: list[dict[str, Any]] = []
    best: tuple[float, float] = (-float("inf"), float("inf"))
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_row: dict[str, Any] = {}
    progress = TrainingProgress(sum(epochs for _, epochs, _ in stages), enabled=rank == 0)
    observer = current_observer() if rank == 0 else None
    train_name = "smoothed train" if label_smoothing else "train"  # the progress line says which loss it shows

    def validate() -> tuple[float, float, dict[str, Any]]:
        """(score, loss, the row's validation columns) of the model as it is now."""
        probs = predict_classifier_sharded(model, ids, offsets, valid_docs, pad_id, max_length, batch_size, device, dtype)
        loss = mean_loss(model.target_type, labels[valid_docs], probs) / model.target_std ** 2  # regression: in train_loss's standardised units
        multi = model.target_type == "multi_label"  # its decision threshold is chosen on validation, epoch by epoch
        threshold = best_threshold(labels[valid_docs], probs) if multi else THRESHOLD
        value = float(score(model.target_type, labels[valid_docs], probs, [str(j) for j in range(probs.shape[1])],
                            threshold)[primary])
        return value, loss, {"val_loss": round(loss, 4), f"val_{primary}": round(value, 4),
                             **({"val_threshold": threshold} if multi else {})}

    averaged: dict[str, Tensor] = {}
    averaged_epochs: list[int] = []
    if observer is not None:
        observer.begin("classifier", progress_label, len(groups))
    for stage_index, (n_trainable, epochs, lr) in enumerate(stages):
        set_trainable(groups, n_trainable)
        set_base_lrs(optimizer, discriminative_lrs(lr, len(groups), discriminative_factor))
        peak_lrs = [rate if i >= len(groups) - n_trainable else 0.0
                    for i, rate in enumerate(discriminative_lrs(lr, len(groups), discriminative_factor))]
        params = trainable_parameters(model)
        net = distributed.wrap(model, device)  # over this stage's trainable parameters; the model itself in one process
        steps_per_epoch = math.ceil(len(train_docs) / batch_size)
        total, step, stale = steps_per_epoch * epochs, 0, 0
        for epoch in range(epochs):
            model.train()
            started, loss_sum, seen = time.perf_counter(), 0.0, 0
            batches = sortish_batches(lengths, batch_size, rng)
            progress.start_epoch(f"{progress_label} stage {stage_index + 1}/{len(stages)} epoch {epoch + 1}/{epochs}",
                                 len(batches), "batches")
            for batch in progress.iterate(batches, lambda: f"{train_name} loss {loss_sum / seen:.4f}" if seen else None):
                docs = train_docs[batch]
                if world > 1:
                    if len(docs) < 2 * world:  # a shard of fewer than 2 documents: skipped on every process
                        continue
                    n_global, docs = len(docs), shard(docs, rank, world)
                elif len(docs) < 2 and model.training:  # BatchNorm needs two rows; a lone tail document is skipped
                    continue
                apply_lr(optimizer, schedule_factor(schedule, min(step, total - 1), total, warmup_fraction))
                x, lens = pad_batch(ids, offsets, docs, pad_id, max_length)
                y = targets[torch.from_numpy(docs)].to(device)
                with autocast_context(device, dtype):
                    logits = net(torch.from_numpy(x).to(device), torch.from_numpy(lens).to(device))  # (B, C)
                    if world > 1:  # sum over this shard x W / global batch: DDP's mean is the global mean loss
                        summed = model.loss(logits, y, reduction="sum", smoothing=label_smoothing)
                        loss = summed * (world / n_global)
                    else:
                        loss = model.loss(logits, y, smoothing=label_smoothing)
                backward_and_step(optimizer, scaler, loss, params, clip)
                loss_sum += float(summed.detach()) if world > 1 else float(loss.detach()) * len(docs)
                seen += len(docs)
                step += 1
                if observer is not None:  # the step's mean loss (of this process's shard)
                    observer.step(float(summed.detach()) / len(docs) if world > 1 else float(loss.detach()),
                                  group_learning_rates(optimizer))
            if world > 1:
                loss_sum, seen = distributed.all_reduce_sum([loss_sum, seen])
                distributed.average_buffers(model)  # BatchNorm statistics saw only this process's shards
            val_score, val_loss, columns = validate()
            row = {
                "stage": stage_index + 1, "trainable_groups": n_trainable, "epoch": epoch + 1, "learning_rate": lr,
                "train_loss": round(loss_sum / max(seen, 1), 4), **columns,
                "seconds": round(time.perf_counter() - started, 2), "learning_rates": peak_lrs,
            }
            if label_smoothing:
                row["label_smoothing"] = label_smoothing  # train_loss is the smoothed loss (it cannot reach 0)
            if average and stage_index == len(stages) - 1 and epoch + 1 > math.ceil(warmup_fraction * epochs):
                averaged_epochs.append(epoch + 1)
                for name, value in model.state_dict().items():
                    if value.is_floating_point():
                        averaged[name] = averaged[name] + value.detach() if name in averaged else value.detach().clone()
            history.append(row)
            if observer is not None:
                observer.epoch(dict(row))
            progress.end_epoch(f"{train_name} loss {row['train_loss']:.4f}, validation {primary} {val_score:.4f}, "
                               f"loss {val_loss:.4f}", row["seconds"])
            if (val_score, -val_loss) > (best[0], -best[1]):
                best = (val_score, val_loss)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best_row, stale = dict(row), 0
            else:
                stale += 1
                if patience and stale >= patience:
                    break
        distributed.release(net)
    if len(averaged_epochs) >= 2:
        started = time.perf_counter()
        last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict({**last_state, **{k: v / len(averaged_epochs) for k, v in averaged.items()}})
        _recompute_batchnorm(model, ids, offsets, train_docs, lengths, batch_size, max_length, pad_id, rng, device, dtype)
        val_score, val_loss, columns = validate()
        row = {"stage": len(stages), "trainable_groups": stages[-1][0], "epoch": "average",
               "averaged_epochs": [averaged_epochs[0], averaged_epochs[-1]], "learning_rate": stages[-1][2],
               **columns, "seconds": round(time.perf_counter() - started, 2)}
        history.append(row)
        if rank == 0:
            log.info("%s: weights averaged over epochs %d-%d of stage %d: validation %s %.4f, loss %.4f", progress_label,
                     averaged_epochs[0], averaged_epochs[-1], len(stages), primary, val_score, val_loss)
        if (val_score, -val_loss) > (best[0], -best[1]):
            best = (val_score, val_loss)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_row = dict(row)
        model.load_state_dict(last_state)
    if observer is not None:
        observer.end()
    return history, best_state, best_row


def _recompute_batchnorm(model: ClassifierNet, ids: np.ndarray, offsets: np.ndarray, train_docs: np.ndarray,
                         lengths: np.ndarray, batch_size: int, max_length: int, pad_id: int, rng: np.random.Generator,
                         device: torch.device, dtype: torch.dtype | None) -> None:
    """BatchNorm running statistics of `model` as the cumulative mean over one training-mode pass over train (no
    gradients, no optimizer step): averaged weights need statistics of their own (torch's swa_utils.update_bn)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    rank, world = distributed.rank(), distributed.world_size()
    model.train()
    with torch.no_grad():
        for batch in sortish_batches(lengths, batch_size, rng):
            docs = train_docs[batch]
            if world > 1:
                if len(docs) < 2 * world:
                    continue
                docs = shard(docs, rank, world)
            elif len(docs) < 2:
                continue
            x, lens = pad_batch(ids, offsets, docs, pad_id, max_length)
            with autocast_context(device, dtype):
                model(torch.from_numpy(x).to(device), torch.from_numpy(lens).to(device))
    if world > 1:
        distributed.average_buffers(model)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def state_dict_to_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """float32/int64 numpy copies of a state_dict (artifacts hold numpy: loading them needs no torch)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_numpy_state(model: nn.Module, state: dict[str, Any]) -> None:
    """Load a state_dict stored as numpy arrays (possibly read-only memory maps) or tensors."""
    tensors = {k: torch.tensor(np.asarray(v)) if not isinstance(v, Tensor) else v for k, v in state.items()}
    model.load_state_dict(tensors)


def clone_module(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)
