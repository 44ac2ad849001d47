"""numericalization: Tokens -> Numericalized (a vocabulary and one flat int32 array of token ids + offsets).

The vocabulary is built from the token counts of the splits in `vocab_splits` (not test, by default, so the
test OOV rate is honest): special tokens first in a fixed order, then every token seen at least `min_freq`
times, most frequent first, ties broken alphabetically (reproducible), cut at `max_vocab` entries in all.
Everything else maps to xxunk. Mapping is one vectorised lookup from token-type ids, so it costs O(n_tokens).
Limits: the vocabulary is closed after this stage; unseen words at predict time become xxunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nlp_pipeline.artifacts import SPLITS, Numericalized, Tokens, Vocab, documents_of, split_code
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.rules import SPECIAL_TOKENS, detokenize


@dataclass(frozen=True)
class NumericalizationConfig:
    min_freq: int = 3                   # keep tokens seen at least this often in the vocab splits
    max_vocab: int = 60000              # vocabulary size at most, special tokens included
    vocab_splits: list[str] = field(default_factory=lambda: ["train", "dev", "unsup"])  # splits counted for the vocab

    def validate(self) -> None:
        if self.min_freq < 1:
            raise ConfigError(f"numericalization.min_freq must be at least 1, got {self.min_freq}")
        if self.max_vocab <= len(SPECIAL_TOKENS):
            raise ConfigError(f"numericalization.max_vocab must exceed the {len(SPECIAL_TOKENS)} special tokens, got {self.max_vocab}")
        bad = [s for s in self.vocab_splits if s not in SPLITS]
        if bad or not self.vocab_splits:
            raise ConfigError(f"numericalization.vocab_splits must be a non-empty list of {list(SPLITS)}, got {self.vocab_splits}")


def build_vocab(types: list[str], counts: np.ndarray, min_freq: int, max_vocab: int) -> Vocab:
    """Specials first, then frequent tokens by (-count, token).

    build_vocab(["b", "a", "c"], np.array([2, 2, 1]), min_freq=2, max_vocab=100).itos
    -> SPECIAL_TOKENS + ["a", "b"]
    """
    specials = set(SPECIAL_TOKENS)
    keep = [(int(c), t) for t, c in zip(types, counts) if c >= min_freq and t not in specials]
    keep.sort(key=lambda pair: (-pair[0], pair[1]))
    room = max_vocab - len(SPECIAL_TOKENS)
    return Vocab(list(SPECIAL_TOKENS) + [t for _, t in keep[:room]])


def _mask_of_splits(tokens: Tokens, splits: list[str]) -> np.ndarray:
    """Per-token boolean mask of tokens whose document is in one of `splits`."""
    doc_in = np.isin(np.asarray(tokens.splits), [split_code(s) for s in splits])
    return np.repeat(doc_in, tokens.lengths())


def numericalize(cfg: NumericalizationConfig, tokens: Tokens) -> Numericalized:
    """Build the vocabulary on cfg.vocab_splits and map every token of every split to its id."""
    type_ids = np.asarray(tokens.ids)
    in_vocab_splits = _mask_of_splits(tokens, cfg.vocab_splits)
    counts = np.bincount(type_ids[in_vocab_splits], minlength=len(tokens.types))
    if not in_vocab_splits.any():
        raise DataError(
            f"no tokens in splits {cfg.vocab_splits} to build a vocabulary from; "
            "set numericalization.vocab_splits to splits the corpus has " f"({', '.join(tokens.split_sizes())})"
        )
    vocab = build_vocab(tokens.types, counts, cfg.min_freq, cfg.max_vocab)
    unk = vocab.stoi[vocab.unk_token]
    mapping = np.array([vocab.stoi.get(t, unk) for t in tokens.types], dtype=np.int32)
    ids = mapping[type_ids] if len(type_ids) else np.zeros(0, np.int32)
    is_unk = ids == unk
    oov = {}
    token_split = np.repeat(np.asarray(tokens.splits), tokens.lengths())
    for name, size in tokens.split_sizes().items():
        here = token_split == split_code(name)
        oov[name] = round(float(is_unk[here].mean()), 5) if here.any() else 0.0
    return Numericalized(
        **documents_of(tokens),
        ids=ids.astype(np.int32, copy=False),
        offsets=np.asarray(tokens.offsets, dtype=np.int64),
        vocab=vocab,
        oov_rate=oov,
        tokenizer=dict(tokens.settings),
    )


def decode(vocab: Vocab, ids: np.ndarray | list[int]) -> str:
    """Ids back to readable text, re-applying xxmaj/xxup/xxrep/xxwrep: [2, 8, 40] -> 'Hello' (ids illustrative)."""
    return detokenize(vocab.tokens(ids))


def summarize(result: Numericalized) -> dict:
    return {"vocab_size": len(result.vocab), "tokens": int(len(result.ids)), "oov_rate": result.oov_rate}


STAGE = Stage(
    name="numericalization",
    version=1,
    config=NumericalizationConfig,
    inputs={"tokens": "tokenization"},
    run=numericalize,
    describe=lambda cfg: f"min_freq={cfg.min_freq}, max_vocab={cfg.max_vocab}",
    summary=summarize,
)
