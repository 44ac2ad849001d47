"""The [model] table: the encoder architecture of a language model or classifier trained from random weights.

    ModelConfig(hidden_dim=400).arch(vocab_size=5000, pad_id=1)
    -> {"vocab_size": 5000, "embedding_dim": 300, "hidden_dim": 400, "num_layers": 2, "rnn_type": "lstm", "pad_id": 1}

The pipeline gives it to the one stage instance that first builds the encoder (pretrain_lm when it trains,
else finetune_lm, else a classifier without an LM) as that config's `model` field; every later stage takes
the architecture from its upstream artifact. No torch import: stage configs load this module at startup.
Limits: the last RNN layer has embedding_dim units (the LM decoder shares the embedding matrix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nlp_pipeline.core.errors import ConfigError

RNN_TYPES = ("lstm", "gru")


@dataclass(frozen=True)
class ModelConfig:
    rnn_type: str = "lstm"              # recurrent cell: "lstm" or "gru" (same regularisers; GRU is ~2x slower on CPU)
    embedding_dim: int = 300            # embedding size, also the size of the last RNN layer (decoder weights are tied)
    hidden_dim: int = 600               # units of each inner RNN layer (AWD-LSTM paper: 400/1150/3; see rnn.ARCHITECTURE_PRESETS)
    num_layers: int = 2                 # RNN layers

    def validate(self) -> None:
        if self.rnn_type not in RNN_TYPES:
            raise ConfigError(f"model.rnn_type must be one of {list(RNN_TYPES)}, got {self.rnn_type!r}")
        for name in ("embedding_dim", "hidden_dim", "num_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be at least 1, got {getattr(self, name)}")

    def arch(self, vocab_size: int, pad_id: int) -> dict[str, Any]:
        """The encoder arch dict models.heads.build_encoder takes, for this vocabulary."""
        return {"vocab_size": vocab_size, "embedding_dim": self.embedding_dim, "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers, "rnn_type": self.rnn_type, "pad_id": pad_id}
