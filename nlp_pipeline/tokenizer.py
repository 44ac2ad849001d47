"""The tokenizer: texts -> token strings or ids, the same for training (the tokenization stage) and predict
(export.bundle), configured by TokenizationConfig.

    cfg = TokenizationConfig(lang="en")                   # validated: unknown rules or languages are ConfigErrors
    tokenize_texts(cfg, ["Hello world!"])                  # [["xxbos", "xxmaj", "hello", "world", "!"]]
    types, ids, offsets = tokenize_to_ids(cfg, texts)      # distinct tokens, flat int32 ids, document offsets
    settings_of(cfg)                                       # the config minus VOLATILE fields (Tokens.settings)

Each text has its lone surrogates replaced by U+FFFD (rules.replace_surrogates: spaCy cannot encode them), then
goes through the chosen text rules (nlp_pipeline.rules: fix_html, replace_rep, ...), spaCy's rule-based
tokenizer for `lang` (spacy.blank: no model, no download; the special tokens xxbos, xxmaj, ... are never
split), then the token rules (xxup/xxmaj marking, lowercase), whitespace and length handling, and gets xxbos
in front. Ids index `types`, the distinct tokens in first-seen order.

How it stays fast and small: texts go to `workers` processes in chunks of `chunk_size`; a worker turns a
chunk into spaCy ORTH hashes (Doc.to_array, no Token objects), applies the token rules once per distinct
hash, and sends back the chunk's few distinct strings plus int32 ids. The main process maps those to
global ids as each chunk arrives (merge_chunks), never holding Python lists of strings. The output does not
depend on workers, chunk_size or the executor.
Memory is bounded by chunk, not by corpus: at most 2 x workers chunks are in flight, the ids go to a spill
file past 64 MiB (core/spill.py). executor = "ray" runs the same chunk tokenizer on Ray Data workers
(core/ray_executor.py); the merge is shared, so the output is byte-identical.
Limits: worker processes are forked on Linux (spawned elsewhere), so the first chunk waits for spaCy to
import in each worker (about a second); memory still grows by 8 bytes per document (offsets) and the vocabulary.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.metadata
import importlib.util
import itertools
import multiprocessing
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.core.ray_executor import check_executor, map_chunks, resolve_workers
from nlp_pipeline.rules import (BOS, DEFAULT_RULES, SPECIAL_TOKENS, check_rules, compose_text_rules, replace_surrogates,
                                 token_transform)

VOLATILE = ("workers", "chunk_size", "executor", "ray_address")  # cannot change the output: left out of the key and of Tokens.settings


@dataclass(frozen=True)
class TokenizationConfig:
    lang: str = "en"                   # spaCy language code for spacy.blank(lang): en, de, fr, es, xx (multilingual)...
    rules: list[str] = field(default_factory=lambda: list(DEFAULT_RULES))  # rule names (nlp_pipeline.rules), fixed order
    max_token_length: int = 50         # longer tokens are cut to this many characters (URLs, junk); 0 = no cap
    add_bos: bool = True               # put xxbos at the start of every document
    mark_whitespace: bool = False      # whitespace-only tokens ('\n', '\t '): true -> xxspace, false -> dropped
    workers: int = 0                   # tokenizing processes; 0 = min(4, CPU count); 1 = in this process (volatile)
    chunk_size: int = 5000             # texts sent to a worker at a time (volatile)
    executor: str = "local"            # "local": this process or a process pool; "ray": Ray Data workers (extra `distributed`) (volatile)
    ray_address: str = ""              # executor "ray": "" = an embedded Ray on this machine, "auto" or HOST:PORT = a running cluster (volatile)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if isinstance(self.rules, str) or not all(isinstance(r, str) for r in self.rules):
            raise ConfigError(f"tokenization.rules must be a list of rule names like {list(DEFAULT_RULES[:2])}, got {self.rules!r}")
        check_rules(self.rules, "tokenization.rules")
        check_lang(self.lang)
        if self.max_token_length < 0:
            raise ConfigError(f"tokenization.max_token_length must be 0 (no cap) or more, got {self.max_token_length}")
        if self.workers < 0:
            raise ConfigError(f"tokenization.workers must be 0 (automatic) or more, got {self.workers}")
        if self.chunk_size < 1:
            raise ConfigError(f"tokenization.chunk_size must be at least 1, got {self.chunk_size}")
        check_executor("tokenization", self.executor)


def check_lang(lang: str) -> None:
    """Raise ConfigError unless spaCy has a language class for `lang` ('en' passes, 'english' does not).

    Looks for spacy/lang/<code>/ on disk or a 'spacy_languages' entry point, without importing spaCy.
    """
    if isinstance(lang, str) and re.fullmatch(r"[a-z][a-z_]*", lang):
        spec = importlib.util.find_spec("spacy")
        for location in (spec.submodule_search_locations or []) if spec else []:
            if (Path(location) / "lang" / lang / "__init__.py").is_file():
                return
        if any(entry.name == lang for entry in importlib.metadata.entry_points(group="spacy_languages")):
            return
    raise ConfigError(
        f"tokenization.lang {lang!r} is not a language spaCy knows; use a code such as en, de, fr, es, nl or xx (multi-language)"
    )


def settings_of(cfg: TokenizationConfig) -> dict[str, Any]:
    """The config minus volatile fields: what Tokens.settings records so predict can tokenize alike."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in VOLATILE}


# --- one chunk of texts -> (distinct tokens, int32 ids into them, tokens per document) -----------------------

@lru_cache(maxsize=4)
def spacy_tokenizer(lang: str) -> Any:
    """spacy.blank(lang).tokenizer with the special tokens as special cases; built once per process."""
    import spacy
    from spacy.symbols import ORTH

    try:
        nlp = spacy.blank(lang)
    except (ImportError, ValueError, KeyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"tokenization.lang {lang!r}: spaCy cannot build this language: {reason}") from None
    for token in SPECIAL_TOKENS:
        nlp.tokenizer.add_special_case(token, [{ORTH: token}])
    return nlp.tokenizer


class _ChunkTokenizer:
    """Tokenizes a chunk of texts into (types, ids, lengths); built once per process from Tokens.settings."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from spacy.attrs import ORTH

        self.orth = ORTH
        self.tokenizer = spacy_tokenizer(settings["lang"])
        self.strings = self.tokenizer.vocab.strings
        self.text_rules = compose_text_rules(settings["rules"])
        self.token_rules = token_transform(settings["rules"], settings["max_token_length"], settings["mark_whitespace"])
        self.add_bos = settings["add_bos"]

    def __call__(self, texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """texts -> (types in first-seen order, (n_tokens,) int32 ids into types, (n_texts,) int64 lengths)."""
        tokenizer, text_rules, orth = self.tokenizer, self.text_rules, self.orth
        arrays = [tokenizer(text_rules(replace_surrogates(text)[0])).to_array(orth) for text in texts]
        in_lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
        hashes = np.concatenate(arrays) if arrays else np.zeros(0, np.uint64)

        # Distinct spaCy tokens in first-seen order; each becomes 0, 1 or 2 output tokens, computed once.
        unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        token_rank = rank[inverse.reshape(-1)]                       # (n_in,) first-seen rank of each token
        types: list[str] = [BOS] if self.add_bos else []
        index = {t: i for i, t in enumerate(types)}
        flat: list[int] = []                                         # output ids of each distinct token, concatenated
        counts = np.empty(len(unique), dtype=np.int64)               # how many output tokens each one gives
        strings, token_rules = self.strings, self.token_rules
        for k, orth_hash in enumerate(unique[order].tolist()):
            outputs = token_rules(strings[orth_hash])
            counts[k] = len(outputs)
            for out in outputs:
                i = index.get(out)
                if i is None:
                    i = index[out] = len(types)
                    types.append(out)
                flat.append(i)
        flat_ids = np.asarray(flat, dtype=np.int32)
        starts = np.cumsum(counts) - counts

        # Expand every input token into its output tokens (vectorised: no Python loop over tokens).
        token_counts = counts[token_rank]
        if (counts == 1).all():                                      # each distinct token gives exactly one
            ids = flat_ids[starts[token_rank]]
        else:
            total = int(token_counts.sum())
            before = np.cumsum(token_counts) - token_counts
            ids = flat_ids[np.repeat(starts[token_rank] - before, token_counts) + np.arange(total)]
        out_ends = np.concatenate([[0], np.cumsum(token_counts)])[np.cumsum(in_lengths)]
        lengths = np.diff(np.concatenate([[0], out_ends])).astype(np.int64)
        if self.add_bos:
            ids = np.insert(ids, out_ends - lengths, 0)
            lengths += 1
        return types, ids.astype(np.int32, copy=False), lengths


_WORKER_SETTINGS: dict[str, Any] = {}       # this worker process's Tokens.settings, set by _start_worker
_WORKER: _ChunkTokenizer | None = None     # built on the first task, so a failure reaches the caller, not a respawn loop


def _start_worker(settings: dict[str, Any]) -> None:
    global _WORKER_SETTINGS
    _WORKER_SETTINGS = settings


def _run_worker(texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    global _WORKER
    if _WORKER is None:
        _WORKER = _ChunkTokenizer(_WORKER_SETTINGS)
    return _WORKER(texts)


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _pool_context() -> Any:
    """fork on Linux (workers start instantly, sharing the imported modules); spawn elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") and "fork" in methods else "spawn")


def stream_chunks(cfg: TokenizationConfig, texts: Iterable[str]) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """Tokenized chunks in input order: (local types, int32 ids into them, tokens per text) per chunk.

    The one code path of the stage, of tokenize_texts and of predict. Runs in this process when workers is
    1 or the texts fit in one chunk, else in a pool of worker processes, or on Ray Data workers (executor
    "ray"); the output is the same either way. At most 2 x workers chunks are in flight, so a generator
    over a large file is read as fast as it is tokenized, not all at once.
    """
    settings = settings_of(cfg)
    chunks = _chunks(texts, cfg.chunk_size)
    if cfg.executor == "ray":
        yield from map_chunks(_ChunkTokenizer, settings, chunks, resolve_workers(cfg.workers), cfg.ray_address,
                              cfg.chunk_size)
        return
    head = list(itertools.islice(chunks, 2))
    workers = resolve_workers(cfg.workers)
    if workers == 1 or len(head) < 2:
        tokenize_chunk = _ChunkTokenizer(settings)
        for chunk in itertools.chain(head, chunks):
            yield tokenize_chunk(chunk)
        return
    with _pool_context().Pool(workers, initializer=_start_worker, initargs=(settings,)) as pool:
        pending: collections.deque = collections.deque()
        for chunk in itertools.chain(head, chunks):
            pending.append(pool.apply_async(_run_worker, (chunk,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _progress(total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="tokenization", unit=" docs", disable=None, leave=False, file=sys.stderr)


def tokenize_texts(cfg: TokenizationConfig, texts: Iterable[str]) -> list[list[str]]:
    """Texts -> lists of token strings, exactly as the stage tokenizes them.

    tokenize_texts(TokenizationConfig(workers=1), ['Hello  WORLD!']) -> [['xxbos', 'xxmaj', 'hello', 'xxup', 'world', '!']]
    """
    out: list[list[str]] = []
    for types, ids, lengths in stream_chunks(cfg, texts):
        ends = np.cumsum(lengths).tolist()
        tokens = [types[i] for i in ids.tolist()]
        out += [tokens[end - n:end] for end, n in zip(ends, lengths.tolist())]
    return out


def tokenize_to_ids(cfg: TokenizationConfig, texts: Iterable[str],
                    total: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts -> (types in first-seen order, (n_tokens,) int32 ids, (n_texts + 1,) int64 offsets), streamed.

    tokenize_to_ids(TokenizationConfig(workers=1), ['a b', 'b']) -> (['xxbos', 'a', 'b'], [0, 1, 2, 0, 2], [0, 3, 5])
    `texts` may be any iterable (a generator over a file): memory holds the chunks in flight, the vocabulary and
    8 bytes per text; the ids go to a spill file past core.spill.SPILL_BYTES (see merge_chunks).
    """
    with _progress(total) as progress:
        return merge_chunks(stream_chunks(cfg, texts), progress.update)


def merge_chunks(chunks: Iterable[tuple[list[str], np.ndarray, np.ndarray]],
                 on_chunk: Any = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Tokenized chunks (local types, local ids, lengths), in corpus order -> (types, ids, offsets) with global ids.

    A chunk's local types are in their first-seen order, so taking each chunk's new types in turn gives the
    corpus's first-seen order whatever the chunk boundaries or the executor that made them.
    merge_chunks([(['xxbos', 'a'], [0, 1], [2]), (['xxbos', 'b', 'a'], [0, 1, 2], [3])])
    -> (['xxbos', 'a', 'b'], [0, 1, 0, 2, 1], [0, 2, 5]). `on_chunk(n_texts)` is called after each chunk.
    """
    from nlp_pipeline.core.spill import ArrayWriter

    index: dict[str, int] = {}
    types: list[str] = []
    ids = ArrayWriter(np.int32)
    lengths = ArrayWriter(np.int64)
    for chunk_types, chunk_ids, chunk_lengths in chunks:
        lookup = np.empty(len(chunk_types), dtype=np.int32)
        for local, token in enumerate(chunk_types):
            global_id = index.get(token)
            if global_id is None:
                global_id = index[token] = len(types)
                types.append(token)
            lookup[local] = global_id
        ids.append(lookup[np.asarray(chunk_ids)])
        lengths.append(chunk_lengths)
        if on_chunk is not None:
            on_chunk(len(chunk_lengths))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths.finish(), out=offsets[1:])
    return types, ids.finish(), offsets
