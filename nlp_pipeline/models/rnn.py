"""The AWD-LSTM encoder (Merity et al. 2017) and its GRU twin, with every AWD regulariser, in plain torch.

Takes token ids laid out time-first, (T, B) int64, and an optional recurrent state; returns the last layer's
outputs (T, B, E) and the new state (one entry per layer, to be detached by the caller between batches).

Regularisers, all active only in training mode (eval mode is deterministic):
- embedding dropout: whole rows of the embedding matrix (word types) are dropped, the rest scaled up;
- locked (variational) dropout on the embedding output and between layers: one mask per sequence, constant
  over time;
- DropConnect (weight dropout) on each layer's hidden-to-hidden matrix: one dropped matrix per forward call.

Speed: each layer is one call of torch's fused single-layer LSTM/GRU kernel (oneDNN on CPU, cuDNN on GPU)
with the dropped weight passed in functionally, so nothing is re-assigned on a module and no
flatten_parameters warning is involved; there is no Python loop over time steps. GRU has no oneDNN kernel
on CPU and runs about 2x slower than LSTM there.
Limits: unidirectional only; the last layer's size equals embedding_dim (so the decoder can tie weights).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlp_pipeline.models.architecture import RNN_TYPES

# Named sizes. "awd-lstm-paper" is Merity et al. / ULMFiT's 400/1150/3; "cpu" is the default, chosen by
# held-out perplexity on WikiText-2 text after the same CPU time (240 CPU-seconds, bfloat16): 300/600/2
# reached 120, 400/768/2 132, 400/800/3 251, 400/1152/3 558 (bigger models get too few steps on a CPU).
ARCHITECTURE_PRESETS: dict[str, dict[str, Any]] = {
    "awd-lstm-paper": {"rnn_type": "lstm", "embedding_dim": 400, "hidden_dim": 1150, "num_layers": 3},
    "cpu": {"rnn_type": "lstm", "embedding_dim": 300, "hidden_dim": 600, "num_layers": 2},
}

State = list[Any]  # per layer: (h, c) for LSTM, h for GRU; h and c are (1, B, H)


@dataclass(frozen=True)
class Dropouts:
    """Dropout probabilities of the encoder (fastai's AWD-LSTM names in brackets)."""

    embedding: float = 0.02   # whole embedding rows dropped (embed_p)
    input: float = 0.25       # locked dropout on the embedding output (input_p)
    hidden: float = 0.15      # locked dropout between layers (hidden_p)
    weight: float = 0.2       # DropConnect on hidden-to-hidden weights (weight_p)

    def scaled(self, factor: float) -> "Dropouts":
        """Dropouts(0.1, 0.2, 0.3, 0.4).scaled(0.5) -> Dropouts(0.05, 0.1, 0.15, 0.2)"""
        return Dropouts(self.embedding * factor, self.input * factor, self.hidden * factor, self.weight * factor)


def embedding_dropout(ids: Tensor, weight: Tensor, p: float, training: bool, padding_idx: int | None = None) -> Tensor:
    """Look up `ids` in `weight` after dropping whole rows (word types) with probability p.

    Equal to F.embedding(ids, weight * mask) with one Bernoulli(1-p)/(1-p) factor per row, but only the rows
    that are looked up are scaled: O(T*B*E) work, not O(V*E). Every occurrence of a dropped word in the batch
    is zero. ids (T, B) -> (T, B, E).
    """
    emb = F.embedding(ids, weight, padding_idx)  # (T, B, E)
    if not training or p == 0.0:
        return emb
    keep = weight.new_empty(weight.shape[0]).bernoulli_(1.0 - p).div_(1.0 - p)  # (V,)
    return emb * keep[ids].unsqueeze(-1)  # (T, B, E)


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence and feature, the same at every time step. (T, B, F) -> same."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(1, x.shape[1], x.shape[2]).bernoulli_(1.0 - self.p).div_(1.0 - self.p)  # (1, B, F)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WeightDropRnn(nn.Module):
    """One LSTM or GRU layer whose hidden-to-hidden matrix gets DropConnect at each forward call in training.

    Parameters are held raw (weight_ih, weight_hh, bias_ih, bias_hh, torch's gate order) and the layer
    calls torch's fused single-layer kernel with the dropped matrix, so the same mask covers every time step
    of the batch. x (T, B, I), state -> out (T, B, H), new state.
    """

    def __init__(self, input_size: int, hidden_size: int, rnn_type: str = "lstm", weight_dropout: float = 0.0):
        super().__init__()
        if rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {RNN_TYPES}, got {rnn_type!r}")
        gates = 4 if rnn_type == "lstm" else 3
        self.rnn_type, self.input_size, self.hidden_size = rnn_type, input_size, hidden_size
        self.weight_dropout = float(weight_dropout)
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(gates * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(gates * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # torch's nn.LSTM/nn.GRU initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def zero_state(self, batch_size: int, like: Tensor) -> Any:
        h = like.new_zeros(1, batch_size, self.hidden_size)  # (1, B, H)
        return (h, h.clone()) if self.rnn_type == "lstm" else h

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        if state is None:
            state = self.zero_state(x.shape[1], x)
        weight_hh = F.dropout(self.weight_hh, self.weight_dropout, self.training)  # (G*H, H)
        weights = [self.weight_ih, weight_hh, self.bias_ih, self.bias_hh]
        with warnings.catch_warnings():
            # cuDNN would ask for flatten_parameters(): impossible with a freshly dropped matrix each call.
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            if self.rnn_type == "lstm":
                # args: input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
                out, h, c = torch._VF.lstm(x, state, weights, True, 1, 0.0, self.training, False, False)
                return out, (h, c)  # (T, B, H), ((1, B, H), (1, B, H))
            out, h = torch._VF.gru(x, state, weights, True, 1, 0.0, self.training, False, False)
            return out, h  # (T, B, H), (1, B, H)

    def extra_repr(self) -> str:
        return f"{self.rnn_type}, {self.input_size}, {self.hidden_size}, weight_dropout={self.weight_dropout}"


class AwdEncoder(nn.Module):
    """Embedding + num_layers weight-dropped RNN layers with locked dropout between them.

    Layer sizes: embedding_dim -> hidden_dim -> ... -> hidden_dim -> embedding_dim (the last layer returns
    to embedding_dim so that a decoder can share the embedding matrix). With num_layers=1 the only layer
    maps embedding_dim -> embedding_dim. ids (T, B) -> outputs (T, B, E), state.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_dim: int, num_layers: int,
                 rnn_type: str = "lstm", pad_id: int = 1, dropouts: Dropouts = Dropouts()):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.vocab_size, self.embedding_dim, self.hidden_dim = vocab_size, embedding_dim, hidden_dim
        self.num_layers, self.rnn_type, self.pad_id = num_layers, rnn_type, pad_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # AWD-LSTM / fastai initialisation
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        sizes = [embedding_dim] + [hidden_dim] * (num_layers - 1) + [embedding_dim]
        self.layers = nn.ModuleList(
            WeightDropRnn(sizes[i], sizes[i + 1], rnn_type, dropouts.weight) for i in range(num_layers)
        )
        self.embedding_dropout = float(dropouts.embedding)
        self.input_dropout = LockedDropout(dropouts.input)
        self.hidden_dropouts = nn.ModuleList(LockedDropout(dropouts.hidden) for _ in range(num_layers - 1))

    def set_dropouts(self, dropouts: Dropouts) -> None:
        """Change dropout probabilities in place (fine-tuning uses other values than pretraining)."""
        self.embedding_dropout = float(dropouts.embedding)
        self.input_dropout.p = float(dropouts.input)
        for module in self.hidden_dropouts:
            module.p = float(dropouts.hidden)
        for layer in self.layers:
            layer.weight_dropout = float(dropouts.weight)

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        emb = embedding_dropout(ids, self.embedding.weight, self.embedding_dropout, self.training, self.pad_id)
        x = self.input_dropout(emb)  # (T, B, E)
        new_state: State = []
        for i, layer in enumerate(self.layers):
            x, layer_state = layer(x, None if state is None else state[i])  # (T, B, H_i)
            new_state.append(layer_state)
            if i < self.num_layers - 1:
                x = self.hidden_dropouts[i](x)
        return x, new_state  # (T, B, E): raw last-layer outputs (no output dropout here)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[[embedding], [layer 0], ..., [layer n-1]]: the units of discriminative LRs and unfreezing."""
        return [[self.embedding.weight]] + [list(layer.parameters()) for layer in self.layers]


def detach_state(state: State) -> State:
    """Cut the graph between batches while keeping the values (truncated BPTT)."""
    return [tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach() for s in state]


def encoder_arch(encoder: AwdEncoder) -> dict[str, Any]:
    """Everything needed to rebuild the encoder's shapes (dropouts are training settings, not shapes)."""
    return {
        "vocab_size": encoder.vocab_size, "embedding_dim": encoder.embedding_dim, "hidden_dim": encoder.hidden_dim,
        "num_layers": encoder.num_layers, "rnn_type": encoder.rnn_type, "pad_id": encoder.pad_id,
    }
