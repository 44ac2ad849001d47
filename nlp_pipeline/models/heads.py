"""Heads on the AWD encoder: the tied LM decoder and the concat-pooling classifier, plus the two full nets.

- LanguageModelNet: encoder -> locked output dropout -> linear decoder whose weight IS the embedding matrix
  (one Parameter). Its loss is a chunked, fused linear + cross-entropy (`linear_cross_entropy`) that never
  holds the (T*B, V) logits or their gradient at once: the decoder is half an LM's cost on a CPU, and this
  makes it 1.2x (V = 10k) to 1.5x (V = 30k) faster in float32 with identical values; under bfloat16
  autocast its matmuls run in bfloat16 (4-5x faster on CPUs with AVX512-BF16) and the softmax in float32.
- ClassifierNet: encoder -> concat pooling [last real step, max, mean over non-pad steps] -> two blocks of
  BatchNorm1d + dropout + linear (ReLU between) -> logits. Documents are padded at the END and the RNN is
  causal, so pad tokens never change the outputs at real positions; pooling skips them. Its target type
  (artifacts.TARGET_TYPES) sets the loss and what `predict` returns: softmax probabilities and cross-entropy
  (class), per-label sigmoid probabilities and binary cross-entropy (multi_label), or one value and squared
  error on the target standardised by the training mean and std, returned in the target's units (regression).
  A backward ClassifierNet (its encoder from a backward LM) flips each document's real tokens before encoding.
- ClassifierEnsemble: several ClassifierNets (forward, backward or both) whose predictions are averaged.
Limits: full softmax only (no sampled/adaptive softmax); one regression target per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlp_pipeline.artifacts import TARGET_TYPES
from nlp_pipeline.models.rnn import AwdEncoder, Dropouts, LockedDropout, State, encoder_arch

DECODER_CHUNK = 512  # rows of (T*B) per chunk in the fused loss (measured: 256-2048 within 10 %)


class _LinearCrossEntropy(torch.autograd.Function):
    """mean_i CE(hidden_i @ weight.T + bias, target_i), its gradients computed chunk by chunk in forward.

    Matmuls run in `dtype` (float32, or bfloat16 for mixed precision: 4-5x faster on CPUs with AVX512-BF16
    or AMX); logits, softmax, bias and the accumulated gradients stay float32.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor, targets: Tensor, chunk: int,
                dtype: torch.dtype) -> Tensor:
        n = hidden.shape[0]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = torch.zeros_like(bias) if need_b else None
        low = dtype != torch.float32
        weight_c = weight.to(dtype)  # (V, E)
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, n, chunk):
            h = hidden[start:start + chunk].to(dtype)  # (n, E)
            y = targets[start:start + chunk]  # (n,)
            if low:
                logits = torch.mm(h, weight_c.t()).float().add_(bias)  # (n, V) float32
            else:
                logits = torch.addmm(bias, h, weight_c.t())  # (n, V)
            logp = torch.log_softmax(logits, dim=1)  # (n, V)
            total -= logp.gather(1, y[:, None]).sum()
            if need_h or need_w or need_b:
                probs = logp.exp_()  # (n, V) softmax, in place
                probs[torch.arange(len(y), device=y.device), y] -= 1.0  # d(sum CE)/d logits
                if need_b:
                    grad_b += probs.sum(0)  # (V,)
                probs_c = probs.to(dtype)
                if need_h:
                    if low:
                        grad_h[start:start + chunk] = torch.mm(probs_c, weight_c)  # (n, E)
                    else:
                        torch.mm(probs_c, weight_c, out=grad_h[start:start + chunk])
                if need_w:
                    if low:
                        grad_w += torch.mm(probs_c.t(), h)  # (V, E)
                    else:
                        grad_w.addmm_(probs_c.t(), h)
        ctx.n = n
        ctx.save_for_backward(*(g if g is not None else hidden.new_empty(0) for g in (grad_h, grad_w, grad_b)))
        ctx.have = (need_h, need_w, need_b)
        return total / n

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        scale = grad_out / ctx.n
        grads = [g * scale if have else None for g, have in zip(ctx.saved_tensors, ctx.have)]
        return grads[0], grads[1], grads[2], None, None, None


def linear_cross_entropy(hidden: Tensor, weight: Tensor, bias: Tensor, targets: Tensor,
                         chunk: int = DECODER_CHUNK) -> Tensor:
    """Mean cross-entropy of softmax(hidden @ weight.T + bias) against targets; equals
    F.cross_entropy(F.linear(hidden, weight, bias), targets) without materialising all logits.

    hidden (N, E), weight (V, E), bias (V,), targets (N,) int64 -> scalar. Under torch.autocast the matmuls
    run in the autocast dtype (softmax and accumulation stay float32).
    """
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else torch.float32
    with torch.autocast(device_type, enabled=False):
        hidden = hidden.float()
        if not torch.is_grad_enabled() or not (hidden.requires_grad or weight.requires_grad or bias.requires_grad):
            with torch.no_grad():
                weight_c, total = weight.to(dtype), hidden.new_zeros(())
                for start in range(0, hidden.shape[0], chunk):
                    logits = torch.mm(hidden[start:start + chunk].to(dtype), weight_c.t()).float() + bias  # (n, V)
                    total += F.cross_entropy(logits, targets[start:start + chunk], reduction="sum")
                return total / hidden.shape[0]
        return _LinearCrossEntropy.apply(hidden, weight, bias, targets, chunk, dtype)


def sampled_softmax_candidates(targets: Tensor, vocab_size: int, n: int) -> tuple[Tensor | None, Tensor]:
    """The decoder rows a sampled softmax scores, and the targets renumbered into them.

    Candidates are the distinct target words plus n words drawn uniformly with torch's RNG (Jean et al. 2015:
    every candidate is scored alike, so no correction term). targets (N,) int64 -> (rows (C,) sorted, targets
    (N,) indexing rows); (None, targets) when the candidates would cover the vocabulary anyway.
    """
    draws = torch.randint(vocab_size, (n,), device=targets.device)
    rows = torch.unique(torch.cat([targets, draws]))  # (C,) sorted
    if rows.numel() >= vocab_size:
        return None, targets
    return rows, torch.searchsorted(rows, targets)


@dataclass
class LmOutput:
    loss: Tensor          # mean cross-entropy over the T*B targets
    raw: Tensor           # (T, B, E) last-layer outputs before output dropout (for TAR)
    dropped: Tensor       # (T, B, E) after output dropout (for AR)
    state: State          # new recurrent state (not detached)


class LanguageModelNet(nn.Module):
    """AWD encoder + tied linear decoder. forward(ids (T, B), targets (T, B), state) -> LmOutput."""

    def __init__(self, encoder: AwdEncoder, output_dropout: float = 0.1, tie_weights: bool = True):
        super().__init__()
        self.encoder = encoder
        self.output_dropout = LockedDropout(output_dropout)
        self.decoder = nn.Linear(encoder.embedding_dim, encoder.vocab_size)
        nn.init.zeros_(self.decoder.bias)
        self.tie_weights = tie_weights
        if tie_weights:
            self.decoder.weight = encoder.embedding.weight  # one Parameter, two uses

    def forward(self, ids: Tensor, targets: Tensor, state: State | None = None, sample: int = 0) -> LmOutput:
        """sample > 0, in training mode only: the loss is a softmax over the batch's target words plus `sample`
        words drawn uniformly (sampled_softmax_candidates), not over the whole vocabulary."""
        raw, new_state = self.encoder(ids, state)  # (T, B, E)
        dropped = self.output_dropout(raw)  # (T, B, E)
        flat = dropped.reshape(-1, dropped.shape[-1])  # (T*B, E)
        weight, bias, flat_targets = self.decoder.weight, self.decoder.bias, targets.reshape(-1)
        if sample > 0 and self.training:
            rows, flat_targets = sampled_softmax_candidates(flat_targets, weight.shape[0], sample)
            if rows is not None:
                weight, bias = weight.index_select(0, rows), bias.index_select(0, rows)  # (C, E), (C,)
        loss = linear_cross_entropy(flat, weight, bias, flat_targets)
        return LmOutput(loss, raw, dropped, new_state)

    def logits(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Next-token logits (T, B, V) for inference."""
        raw, new_state = self.encoder(ids, state)
        return self.decoder(self.output_dropout(raw)), new_state

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[[layer 0], ..., [layer n-1], [embedding = decoder weight, decoder bias]] (fastai's LM split):
        the embedding sits in the top group because the decoder shares it."""
        groups = self.encoder.layer_groups()
        top = [self.encoder.embedding.weight, self.decoder.bias]
        if not self.tie_weights:
            top.insert(1, self.decoder.weight)
        return groups[1:] + [top]

    def arch(self) -> dict[str, Any]:
        return {**encoder_arch(self.encoder), "tie_weights": self.tie_weights}


def reverse_padded(ids: Tensor, lengths: Tensor) -> Tensor:
    """Each column's first `length` ids in reverse order, padding left at the end: ids (T, B), lengths (B,).

    [[1, 4], [2, 0], [3, 0]] with lengths [3, 1] (0 = pad) -> [[3, 4], [2, 0], [1, 0]]
    """
    steps = torch.arange(ids.shape[0], device=ids.device)[:, None]  # (T, 1)
    source = lengths[None, :].to(ids.device) - 1 - steps             # (T, B): where step t reads from
    inside = source >= 0
    return torch.where(inside, ids.gather(0, source.clamp(min=0)), ids)


def concat_pool(outputs: Tensor, lengths: Tensor) -> Tensor:
    """[output at the last real step, max over real steps, mean over real steps] of each sequence.

    outputs (T, B, H), lengths (B,) int64 -> (B, 3H). Steps t >= length are padding and ignored.
    """
    steps = outputs.shape[0]
    mask = torch.arange(steps, device=outputs.device)[:, None] < lengths[None, :]  # (T, B)
    last = outputs[lengths - 1, torch.arange(outputs.shape[1], device=outputs.device)]  # (B, H)
    maxed = outputs.masked_fill(~mask[:, :, None], float("-inf")).max(dim=0).values  # (B, H)
    mean = (outputs * mask[:, :, None]).sum(dim=0) / lengths[:, None].to(outputs.dtype)  # (B, H)
    return torch.cat([last, maxed, mean], dim=1)  # (B, 3H)


class PoolingClassifierHead(nn.Module):
    """concat pooling -> [BatchNorm1d, Dropout, Linear, ReLU] -> [BatchNorm1d, Dropout, Linear] -> logits."""

    def __init__(self, input_dim: int, hidden_dim: int, num_classes: int, dropouts: tuple[float, float] = (0.4, 0.1)):
        super().__init__()
        self.block1 = nn.Sequential(
            nn.BatchNorm1d(3 * input_dim), nn.Dropout(dropouts[0]), nn.Linear(3 * input_dim, hidden_dim), nn.ReLU()
        )
        self.block2 = nn.Sequential(nn.BatchNorm1d(hidden_dim), nn.Dropout(dropouts[1]), nn.Linear(hidden_dim, num_classes))

    def set_dropouts(self, dropouts: tuple[float, float]) -> None:
        self.block1[1].p, self.block2[1].p = float(dropouts[0]), float(dropouts[1])

    def forward(self, outputs: Tensor, lengths: Tensor) -> Tensor:
        pooled = concat_pool(outputs, lengths)  # (B, 3H)
        return self.block2(self.block1(pooled))  # (B, C)


class ClassifierNet(nn.Module):
    """Encoder + pooling head. forward(ids (T, B) padded at the end, lengths (B,)) -> logits (B, C);
    predict(ids, lengths) -> what the target type asks for (B, C); loss(logits, targets) for training, with
    targets from encode_targets(labels). num_classes is the number of outputs: 1 for regression."""

    def __init__(self, encoder: AwdEncoder, num_classes: int, head_hidden_dim: int = 50,
                 head_dropouts: tuple[float, float] = (0.4, 0.1), target_type: str = "class",
                 target_scale: tuple[float, float] = (0.0, 1.0), threshold: float = 0.5, backward: bool = False):
        super().__init__()
        if target_type not in TARGET_TYPES:
            raise ValueError(f"target_type must be one of {TARGET_TYPES}, got {target_type!r}")
        if target_type == "regression" and num_classes != 1:
            raise ValueError(f"a regression classifier has 1 output, not {num_classes}")
        self.encoder = encoder
        self.head = PoolingClassifierHead(encoder.embedding_dim, head_hidden_dim, num_classes, head_dropouts)
        self.num_classes, self.head_hidden_dim = num_classes, head_hidden_dim
        self.target_type = target_type
        self.target_mean, self.target_std = float(target_scale[0]), float(target_scale[1])
        self.threshold = float(threshold)  # multi-label: a label is predicted at p >= this (chosen on validation)
        self.backward = bool(backward)  # reads each document right to left (an encoder from a backward LM)

    def _encode(self, ids: Tensor, lengths: Tensor) -> Tensor:
        if self.backward:
            ids = reverse_padded(ids, lengths)
        outputs, _ = self.encoder(ids)  # (T, B, E), fresh zero state per batch
        return outputs

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        return self.head(self._encode(ids, lengths), lengths)  # (B, C)

    def transform(self, logits: Tensor) -> Tensor:
        """Logits (B, C) -> class probabilities, per-label probabilities, or values in the target's units."""
        logits = logits.float()
        if self.target_type == "class":
            return torch.softmax(logits, dim=1)
        if self.target_type == "multi_label":
            return torch.sigmoid(logits)
        return logits * self.target_std + self.target_mean

    def predict(self, ids: Tensor, lengths: Tensor) -> Tensor:
        return self.transform(self(ids, lengths))  # (B, C) float32

    def encode_targets(self, labels: Any) -> Tensor:
        """Labels as the corpus holds them (artifacts.TARGET_TYPES) -> what `loss` compares logits with."""
        labels = np.asarray(labels)  # a copy below: store arrays are read-only memory maps
        if self.target_type == "class":
            return torch.from_numpy(labels.astype(np.int64))
        if self.target_type == "multi_label":
            return torch.from_numpy(labels.astype(np.float32))
        return torch.from_numpy(((labels.astype(np.float64) - self.target_mean) / self.target_std).astype(np.float32))

    def loss(self, logits: Tensor, targets: Tensor, reduction: str = "mean", smoothing: float = 0.0) -> Tensor:
        """Cross-entropy, binary cross-entropy averaged over labels, or squared error of the standardised
        target; per document, then averaged ("mean") or summed ("sum") over the batch. smoothing: for class targets,
        cross-entropy against (1 - smoothing) x the one-hot target + smoothing / C on every class; label sets and
        numbers always train on their plain loss."""
        logits = logits.float()
        if self.target_type == "class":
            return F.cross_entropy(logits, targets, reduction=reduction, label_smoothing=smoothing)
        if self.target_type == "multi_label":
            per_doc = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1)
        else:
            per_doc = (logits[:, 0] - targets) ** 2
        return per_doc.sum() if reduction == "sum" else per_doc.mean()

    def document_vectors(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """The concat-pooled encoder output the head classifies: (B, 3E)."""
        return concat_pool(self._encode(ids, lengths), lengths)  # (B, 3E)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[[embedding], [layer 0], ..., [layer n-1], [head]] (fastai's classifier split)."""
        return self.encoder.layer_groups() + [list(self.head.parameters())]

    def arch(self) -> dict[str, Any]:
        arch = {**encoder_arch(self.encoder), "num_classes": self.num_classes, "head_hidden_dim": self.head_hidden_dim,
                "target_type": self.target_type}
        if self.target_type == "regression":
            arch.update(target_mean=self.target_mean, target_std=self.target_std)
        if self.target_type == "multi_label":
            arch["threshold"] = self.threshold
        if self.backward:
            arch["backward"] = True
        return arch


class ClassifierEnsemble(nn.Module):
    """n ClassifierNets trained apart (seeds seed, seed + 1, ...; forward, backward or both directions) that answer
    together: predict returns the mean of the members' predictions (probabilities or values). Document vectors
    and `encoder` are the first member's. Its state_dict names are "members.<i>.<ClassifierNet name>". It has no forward (the members' logits
    do not average into one meaningful set): call predict."""

    def __init__(self, members: list[ClassifierNet]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)
        self.num_classes, self.head_hidden_dim = members[0].num_classes, members[0].head_hidden_dim
        self.target_type = members[0].target_type

    @property
    def encoder(self) -> AwdEncoder:
        return self.members[0].encoder

    @property
    def threshold(self) -> float:
        return self.members[0].threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        for member in self.members:
            member.threshold = float(value)

    def predict(self, ids: Tensor, lengths: Tensor) -> Tensor:
        return torch.stack([m.predict(ids, lengths) for m in self.members]).mean(0)  # (B, C)

    def document_vectors(self, ids: Tensor, lengths: Tensor) -> Tensor:
        return self.members[0].document_vectors(ids, lengths)

    def arch(self) -> dict[str, Any]:
        arch = {**self.members[0].arch(), "members": len(self.members)}
        arch.pop("backward", None)
        if any(m.backward for m in self.members):
            arch["backward_members"] = [m.backward for m in self.members]
        return arch


def embedding_weight(state: dict[str, Any]) -> Any:
    """The (first) encoder's embedding matrix in a ClassifierNet's or ClassifierEnsemble's state, or None."""
    return state.get("encoder.embedding.weight", state.get("members.0.encoder.embedding.weight"))


def build_encoder(arch: dict[str, Any], dropouts: Dropouts = Dropouts(0.0, 0.0, 0.0, 0.0)) -> AwdEncoder:
    return AwdEncoder(arch["vocab_size"], arch["embedding_dim"], arch["hidden_dim"], arch["num_layers"],
                      arch["rnn_type"], arch["pad_id"], dropouts)


def build_language_model(arch: dict[str, Any], dropouts: Dropouts = Dropouts(0.0, 0.0, 0.0, 0.0),
                         output_dropout: float = 0.0) -> LanguageModelNet:
    """Rebuild a LanguageModelNet from `arch` (LanguageModelNet.arch()); load weights separately."""
    return LanguageModelNet(build_encoder(arch, dropouts), output_dropout, arch.get("tie_weights", True))


def build_classifier(arch: dict[str, Any], dropouts: Dropouts = Dropouts(0.0, 0.0, 0.0, 0.0),
                     head_dropouts: tuple[float, float] = (0.0, 0.0)) -> ClassifierNet | ClassifierEnsemble:
    """Rebuild a ClassifierNet (or a ClassifierEnsemble when arch["members"] > 1) from `arch` (their arch());
    load weights separately."""
    def one(backward: bool) -> ClassifierNet:
        return ClassifierNet(build_encoder(arch, dropouts), arch["num_classes"], arch["head_hidden_dim"], head_dropouts,
                             arch.get("target_type", "class"), (arch.get("target_mean", 0.0), arch.get("target_std", 1.0)),
                             arch.get("threshold", 0.5), backward)

    members = int(arch.get("members", 1))
    backward = list(arch.get("backward_members", [bool(arch.get("backward", False))] * members))
    if len(backward) != members:
        raise ValueError(f"arch lists {len(backward)} member directions for {members} members")
    return ClassifierEnsemble([one(b) for b in backward]) if members > 1 else one(backward[0])
