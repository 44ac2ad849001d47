"""numericalization: Tokens -> Numericalized (a vocabulary and one flat int32 array of token ids + offsets).

The vocabulary is built from the token counts of the splits in `vocab_splits` (not test, by default, so the
test OOV rate is honest): special tokens first in a fixed order, then every token seen at least `min_freq`
times, most frequent first, ties broken alphabetically (reproducible), cut at `max_vocab` entries in all.
Everything else maps to xxunk. Mapping is one vectorised lookup from token-type ids, so it costs O(n_tokens).
Counting and mapping go shard by shard (about 2 M tokens each), the ids out to a spill file past 64 MiB, so
memory is bounded by the shard and the vocabulary, not by the corpus. executor = "ray" (set by the pipeline
from tokenization.executor) counts the shards on Ray Data workers (core/ray_executor.py); each shard gives
(distinct type ids, counts) either way and the sums are merged here alike, so the vocabulary, its order and the
ids are byte-identical; the mapping stays in this process.
Limits: the vocabulary is closed after this stage; unseen words at predict time become xxunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nlp_pipeline.artifacts import SPLITS, Numericalized, Tokens, Vocab, documents_of, split_code
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.ray_executor import check_executor, describe_executor, map_chunks, resolve_workers
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.rules import SPECIAL_TOKENS, detokenize


VOLATILE = ("executor", "ray_address", "workers")  # where the vocabulary is counted: not the output, so not in the key


@dataclass(frozen=True)
class NumericalizationConfig:
    min_freq: int = 3                   # keep tokens seen at least this often in the vocab splits
    max_vocab: int = 60000              # vocabulary size at most, special tokens included
    vocab_splits: list[str] = field(default_factory=lambda: ["train", "dev", "unsup"])  # splits counted for the vocab
    executor: str = "local"             # "local" or "ray": where the vocabulary is counted; set by the pipeline from tokenization.executor (volatile)
    ray_address: str = ""               # set by the pipeline from tokenization.ray_address (volatile)
    workers: int = 0                    # Ray actors counting (0 = min(4, CPU count)); set by the pipeline from tokenization.workers (volatile)

    def validate(self) -> None:
        if self.min_freq < 1:
            raise ConfigError(f"numericalization.min_freq must be at least 1, got {self.min_freq}")
        if self.max_vocab <= len(SPECIAL_TOKENS):
            raise ConfigError(f"numericalization.max_vocab must exceed the {len(SPECIAL_TOKENS)} special tokens, got {self.max_vocab}")
        bad = [s for s in self.vocab_splits if s not in SPLITS]
        if bad or not self.vocab_splits:
            raise ConfigError(f"numericalization.vocab_splits must be a non-empty list of {list(SPLITS)}, got {self.vocab_splits}")
        if self.workers < 0:
            raise ConfigError(f"numericalization.workers must be 0 (automatic) or more, got {self.workers}")
        check_executor("numericalization", self.executor)


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


SHARD_TOKENS = 1 << 21  # tokens counted and mapped at a time (whole documents; a longer document is one shard):
# about 20 bytes each in transient arrays (ids, per-token split codes, masks), so ~40 MB; 16 M tokens took ~300 MB


def document_shards(offsets: np.ndarray, shard_tokens: int = SHARD_TOKENS) -> list[tuple[int, int]]:
    """Consecutive document ranges [start, stop) of about shard_tokens tokens each, covering every document.

    document_shards(np.array([0, 3, 5, 9, 10]), 4) -> [(0, 2), (2, 3), (3, 4)]   (tokens 0-5, 5-9, 9-10)
    """
    offsets = np.asarray(offsets)
    n_docs, total = len(offsets) - 1, int(offsets[-1]) if len(offsets) else 0
    cuts = np.searchsorted(offsets, np.arange(shard_tokens, total, shard_tokens), side="right")
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 0, n_docs), [n_docs]])).tolist()
    return list(zip(bounds[:-1], bounds[1:])) if n_docs else []


def shard_counts(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct type ids, int64 occurrences of each) of one shard's token ids: what a worker counts.

    shard_counts(np.array([2, 0, 2])) -> (array([0, 2]), array([1, 2]))
    """
    counts = np.bincount(ids)
    present = np.flatnonzero(counts)
    return present, counts[present]


def _shard_counter(settings: dict) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The worker a Ray actor builds (map_chunks' make_worker): counting needs no settings."""
    return shard_counts


def count_types(tokens: Tokens, splits: list[str], executor: str = "local", workers: int = 0,
                address: str = "") -> np.ndarray:
    """(len(tokens.types),) int64 occurrences of each token type in documents of `splits`, shard by shard:
    in this process, or on Ray Data workers (executor "ray", `workers` actors, Ray at `address`); the shards'
    counts are summed here either way."""
    ids, offsets = np.asarray(tokens.ids), np.asarray(tokens.offsets)
    lengths = np.diff(offsets)
    wanted = np.isin(np.asarray(tokens.splits), [split_code(s) for s in splits])
    shards = (ids[offsets[start]:offsets[stop]][np.repeat(wanted[start:stop], lengths[start:stop])]
              for start, stop in document_shards(offsets))
    shards = (shard for shard in shards if len(shard))
    if executor == "ray":
        per_shard = map_chunks(_shard_counter, {}, shards, resolve_workers(workers), address)
    else:
        per_shard = map(shard_counts, shards)
    counts = np.zeros(len(tokens.types), dtype=np.int64)
    for present, n in per_shard:
        counts[present] += n
    return counts


def numericalize(cfg: NumericalizationConfig, tokens: Tokens) -> Numericalized:
    """Build the vocabulary on cfg.vocab_splits and map every token of every split to its id.

    Shard by shard (document_shards): counts are summed per shard, ids are mapped per shard and written to a
    spill file past 64 MiB (core/spill.py), so memory stays bounded by the shard, not by the corpus.
    """
    from nlp_pipeline.core.spill import ArrayWriter

    counts = count_types(tokens, cfg.vocab_splits, cfg.executor, cfg.workers, cfg.ray_address)
    if not counts.any():
        raise DataError(
            f"no tokens in splits {cfg.vocab_splits} to build a vocabulary from; "
            "set numericalization.vocab_splits to splits the corpus has " f"({', '.join(tokens.split_sizes())})"
        )
    vocab = build_vocab(tokens.types, counts, cfg.min_freq, cfg.max_vocab)
    unk = vocab.stoi[vocab.unk_token]
    mapping = np.array([vocab.stoi.get(t, unk) for t in tokens.types], dtype=np.int32)
    type_ids, offsets = np.asarray(tokens.ids), np.asarray(tokens.offsets)
    lengths, doc_splits = np.diff(offsets), np.asarray(tokens.splits, dtype=np.int64)
    out = ArrayWriter(np.int32)
    seen = np.zeros(len(SPLITS), dtype=np.int64)      # tokens per split
    unknown = np.zeros(len(SPLITS), dtype=np.int64)   # of which mapped to xxunk
    for start, stop in document_shards(offsets):
        ids = mapping[type_ids[offsets[start]:offsets[stop]]]
        out.append(ids)
        token_split = np.repeat(doc_splits[start:stop], lengths[start:stop])
        seen += np.bincount(token_split, minlength=len(SPLITS))
        unknown += np.bincount(token_split[ids == unk], minlength=len(SPLITS))
    oov = {}
    for name in tokens.split_sizes():
        code = split_code(name)
        oov[name] = round(float(unknown[code] / seen[code]), 5) if seen[code] else 0.0
    return Numericalized(
        **documents_of(tokens),
        ids=out.finish(),
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
    volatile=VOLATILE,
    describe=lambda cfg: (f"min_freq={cfg.min_freq}, max_vocab={cfg.max_vocab}"
                          + describe_executor(cfg.executor, cfg.ray_address)),
    summary=summarize,
)
