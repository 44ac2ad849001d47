"""Embeddings stage: word vectors (word2vec, fastText, GloVe, or a pretrained file) trained on the corpus tokens.

Takes the target corpus Tokens and, optionally, the Tokens of a general corpus (vectors then train on both);
returns WordVectors: keys most frequent first, float32 vectors, corpus counts, per-epoch losses, and metrics
(analogies, word-pair Spearman, nearest neighbours on gensim's bundled test sets; see nlp_pipeline.evaluation).
The pipeline makes one instance per entry of `methods` (dataclasses.replace(cfg, method=m)). Settings every
method reads are [embeddings] fields; each method's own are a sub-table ([embeddings.word2vec], .fasttext, .glove,
.pretrained). An instance's key holds the shared fields and its own sub-table only (see `volatile_fields`), so
tuning GloVe never retrains word2vec; setting the sub-table of a method not in `methods` is a ConfigError.

Limits and notes:
- word2vec and fastText are gensim's; no gensim object is kept (data only). Documents longer than 10,000
  tokens are fed in 10,000-token pieces (gensim's own limit, which would otherwise truncate them).
- losses: word2vec reports gensim's negative-sampling loss summed over each epoch (the accumulator is reset
  every epoch; with workers > 1 gensim's threads can drop a few additions); gensim's FastText computes no
  loss, so its `losses` are empty and metrics["loss"] says so; GloVe reports its mean weighted squared error.
- With workers = 1 and the same seed, runs are reproducible; with more threads gensim's and GloVe's are not
  bit-exact (GloVe's threads update shared rows without locks, as the reference code does).
- GloVe runs compiled numba loops (nlp_pipeline.models.glove_kernels); without numba it falls back, with a
  warning, to a numpy minibatch path that gives different vectors for the same key; metrics["training"]["kernel"]
  says which ran.
- `read_vectors` parses pretrained files here (not in export/) because stages may not import the export layer.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from nlp_pipeline.artifacts import Tokens, WordVectors
from nlp_pipeline.core.config import set_fields
from nlp_pipeline.core.errors import CannotApply, ConfigError, DataError, MissingInputError
from nlp_pipeline.core.hashing import file_sha256
from nlp_pipeline.core.stage import Stage

METHODS = ("word2vec", "fasttext", "glove", "pretrained")
ARCHITECTURES = ("cbow", "skipgram")
GENSIM_MAX_WORDS = 10000  # gensim truncates longer sentences; documents are cut into pieces of this length


@dataclass(frozen=True)
class Word2VecConfig:
    """[embeddings.word2vec] (gensim's names and defaults); [embeddings.fasttext] adds the n-gram fields."""
    architecture: str = "cbow"         # "cbow" (gensim sg=0: predict a word from its context) or "skipgram" (sg=1)
    window: int = 5                    # largest distance, in tokens, between a word and a context word
    sample: float = 1e-3               # downsampling threshold for frequent words (0 turns it off)
    negative: int = 5                  # noise words drawn per positive example (negative sampling)
    alpha: float = 0.025               # initial learning rate, decaying linearly to min_alpha
    min_alpha: float = 0.0001          # learning rate at the end of the last epoch
    epochs: int = 5                    # passes over the tokens


@dataclass(frozen=True)
class FastTextConfig(Word2VecConfig):
    """[embeddings.fasttext]: the word2vec fields plus character n-grams."""
    min_n: int = 3                     # shortest character n-gram, in characters
    max_n: int = 6                     # longest character n-gram (0 = no n-grams)
    bucket: int = 200000               # hash buckets for n-gram vectors; gensim's 2,000,000 makes a 800 MB artifact at 100 dims


@dataclass(frozen=True)
class GloveConfig:
    """[embeddings.glove] (Pennington et al. 2014 defaults)."""
    window: int = 10                   # symmetric window in tokens; a pair at distance d counts 1/d
    x_max: float = 100.0               # co-occurrence count at which the weight f(x) = (x / x_max)^alpha reaches 1
    alpha: float = 0.75                # exponent of the weighting function f
    learning_rate: float = 0.5         # AdaGrad learning rate, per entry (numba) or per summed minibatch (numpy fallback); the reference's 0.05 learns too slowly on small corpora
    epochs: int = 25                   # passes over the nonzero co-occurrence entries
    batch_size: int = 65536            # entries per vectorised AdaGrad step of the numpy fallback (numba steps after every entry)


@dataclass(frozen=True)
class PretrainedConfig:
    """[embeddings.pretrained]: a vectors file instead of training."""
    path: str | None = None            # vectors file: GloVe .txt (no header), word2vec .bin or .txt, fastText .vec; its contents are hashed into the key
    vocabulary: str = "corpus"         # "corpus": keep the corpus words (seen min_count times) found in the file; "all": every word of the file


@dataclass(frozen=True)
class EmbeddingsConfig:
    methods: list[str] = field(default_factory=lambda: ["word2vec", "fasttext", "glove"])  # methods the pipeline trains, one cached instance each: word2vec | fasttext | glove | pretrained
    method: str = "word2vec"           # the method this instance trains (set by the pipeline from `methods`)
    general_corpus: bool = False       # also train on the general corpus's tokens (pretrain_lm.corpus), not only the target's
    vector_size: int = 100             # dimensions of every vector (a pretrained file must have exactly this many)
    min_count: int = 5                 # words seen fewer times in the training tokens get no vector
    # evaluation, stored in WordVectors.metrics
    evaluate: bool = True              # score analogies, word-pair similarity and neighbours (gensim's bundled test sets)
    restrict_vocab: int = 30000        # analogies search only the most frequent words (the word2vec paper's 30,000)
    neighbour_words: list[str] = field(default_factory=list)  # words whose nearest neighbours are stored; empty = 5 frequent words
    neighbours: int = 10               # neighbours stored per word
    seed: int = 0                      # random seed: initial vectors, negative sampling, GloVe shuffles
    workers: int = 0                   # gensim and GloVe threads; 0 = min(4, CPU count) (not part of the key)
    # each method's own settings, one sub-table each ([embeddings.glove], ...); only its own is in its key
    word2vec: Word2VecConfig = field(default_factory=Word2VecConfig)
    fasttext: FastTextConfig = field(default_factory=FastTextConfig)
    glove: GloveConfig = field(default_factory=GloveConfig)
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)

    def validate(self) -> None:
        for name in [*self.methods, self.method]:
            if name not in METHODS:
                raise ConfigError(f"embeddings method {name!r} is unknown; choose from {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"embeddings.methods lists a method twice: {self.methods}")
        for method in METHODS:  # a method's sub-table only applies when the method is trained
            changed = set_fields(getattr(self, method), f"embeddings.{method}")
            if changed and method not in self.methods:
                raise CannotApply(changed[0], f"{method!r} is not in embeddings.methods; add it or remove the setting")
        unused = [] if self.evaluate else set_fields(self, "embeddings", EVALUATION)  # they only apply to an evaluation
        if unused:
            raise CannotApply(unused[0], "embeddings.evaluate = false scores nothing; remove it or set "
                              "embeddings.evaluate = true")
        def check(table: str, names: tuple[str, ...], positive: bool = False) -> None:
            for name in names:
                value = getattr(getattr(self, table) if table else self, name)
                if (not value > 0) if positive else value < 1:
                    raise ConfigError(f"embeddings.{table + '.' if table else ''}{name} must be "
                                      f"{'positive' if positive else 'at least 1'}, got {value}")

        check("", ("vector_size", "min_count", "neighbours", "restrict_vocab"))
        if self.workers < 0:
            raise ConfigError(f"embeddings.workers must be 0 (automatic) or more, got {self.workers}")
        for table in ("word2vec", "fasttext"):
            check(table, ("window", "epochs"))
            check(table, ("alpha",), positive=True)
            if getattr(self, table).architecture not in ARCHITECTURES:
                raise ConfigError(f"embeddings.{table}.architecture must be 'cbow' or 'skipgram', "
                                  f"got {getattr(self, table).architecture!r}")
        check("glove", ("window", "epochs", "batch_size"))
        check("glove", ("learning_rate", "x_max", "alpha"), positive=True)
        ngrams = self.fasttext
        if ngrams.max_n and (ngrams.min_n < 1 or ngrams.max_n < ngrams.min_n):
            raise ConfigError(f"embeddings.fasttext.min_n ({ngrams.min_n}) must be between 1 and max_n ({ngrams.max_n}); "
                              "max_n = 0 turns n-grams off")
        if self.pretrained.vocabulary not in ("corpus", "all"):
            raise ConfigError(f"embeddings.pretrained.vocabulary must be 'corpus' or 'all', got {self.pretrained.vocabulary!r}")
        if "pretrained" in (*self.methods, self.method) and not self.pretrained.path:
            raise ConfigError("embeddings method 'pretrained' needs a file; set embeddings.pretrained.path")

    @property
    def own(self) -> Word2VecConfig | GloveConfig | PretrainedConfig:
        """The sub-table of the method this instance trains: cfg.own.epochs is word2vec's, fastText's or GloVe's."""
        return getattr(self, self.method)


# Fields every method reads; an instance's key holds these and its own sub-table, nothing else.
EVALUATION = ("restrict_vocab", "neighbour_words", "neighbours")  # what only the evaluation reads
_SHARED = ("method", "vector_size", "min_count", "seed", "evaluate", *EVALUATION)
MOVED = {  # old flat names -> the sub-table fields that replaced them (pipeline.MOVED: a one-line error names them)
    **{f"embeddings.{f.name}": f"embeddings.word2vec.{f.name} and embeddings.fasttext.{f.name}"
       for f in dataclasses.fields(Word2VecConfig)},
    **{f"embeddings.{name}": f"embeddings.fasttext.{name}" for name in ("min_n", "max_n", "bucket")},
    **{f"embeddings.glove_{f.name}": f"embeddings.glove.{f.name}" for f in dataclasses.fields(GloveConfig)},
    **{f"embeddings.pretrained_{f.name}": f"embeddings.pretrained.{f.name}" for f in dataclasses.fields(PretrainedConfig)},
}


def volatile_fields(cfg: EmbeddingsConfig) -> tuple[str, ...]:
    """Config fields that cannot change this instance's output: `methods`, `workers`, general_corpus (the
    general tokens come in as an input, keyed upstream), the other methods' sub-tables, the pretrained path
    (its contents are keyed instead) and, when evaluate is false, the evaluation settings.
    EmbeddingsConfig(method='glove') -> ('fasttext', 'general_corpus', 'methods', 'pretrained', 'word2vec', 'workers')."""
    keep = (set(_SHARED) - (set() if cfg.evaluate else set(EVALUATION))) | {cfg.method}
    dropped = sorted(f.name for f in dataclasses.fields(cfg) if f.name not in keep)
    return (*dropped, "pretrained.path") if cfg.method == "pretrained" else tuple(dropped)


GLOVE_VERSION = 2  # 2: per-entry AdaGrad (numba, hogwild threads) replaces minibatch steps; keyed for GloVe only


def method_fingerprint(cfg: EmbeddingsConfig) -> dict | None:
    """Key material beyond the config: for 'pretrained' the sha256 of the vectors file (so editing the file
    changes the key while moving it does not); for 'glove' the version of its training code, so a change of
    optimiser retrains GloVe without touching the other methods' keys; None otherwise."""
    if cfg.method == "glove":
        return {"glove_version": GLOVE_VERSION}
    if cfg.method != "pretrained":
        return None
    path = Path(cfg.pretrained.path or "").expanduser()
    if not path.is_file():
        raise MissingInputError(f"pretrained vectors file {path} does not exist; check embeddings.pretrained.path")
    return {"pretrained_sha256": file_sha256(path)}


# --- vocabulary over one or two corpora ---------------------------------------------------------------------

@dataclass
class _Vocabulary:
    words: list[str]               # every distinct token of the training corpora, first-seen order (general first)
    counts: np.ndarray             # (len(words),) int64 occurrences
    remaps: list[np.ndarray]       # per corpus: its type id -> index into words

    def frequent(self, min_count: int) -> np.ndarray:
        """Indexes of words seen at least min_count times, most frequent first (ties: first seen)."""
        kept = np.flatnonzero(self.counts >= min_count)
        return kept[np.argsort(-self.counts[kept], kind="stable")]


def _merge_vocabulary(corpora: list[Tokens]) -> _Vocabulary:
    index: dict[str, int] = {}
    remaps = []
    for corpus in corpora:
        remaps.append(np.fromiter((index.setdefault(t, len(index)) for t in corpus.types), dtype=np.int64,
                                  count=len(corpus.types)))
    counts = np.zeros(len(index), dtype=np.int64)
    for corpus, remap in zip(corpora, remaps):
        counts[remap] += corpus.type_counts()  # remap is one-to-one within a corpus
    return _Vocabulary(list(index), counts, remaps)


def _empty_vocabulary_error(cfg: EmbeddingsConfig, vocabulary: _Vocabulary) -> DataError:
    total = int(vocabulary.counts.sum())
    return DataError(f"no word occurs at least {cfg.min_count} times in the {total:,} training tokens "
                     f"({len(vocabulary.words):,} distinct); lower embeddings.min_count (e.g. --set embeddings.min_count=1) "
                     "or train on more text")


class _Sentences:
    """Restartable iterable of token lists over the corpora (gensim's corpus_iterable)."""

    def __init__(self, corpora: list[Tokens]):
        self.corpora = corpora

    def __iter__(self) -> Iterator[list[str]]:
        for corpus in self.corpora:
            types = np.array(corpus.types, dtype=object)
            ids, offsets = corpus.ids, np.asarray(corpus.offsets)
            for i in range(len(offsets) - 1):
                for start in range(int(offsets[i]), int(offsets[i + 1]), GENSIM_MAX_WORDS):
                    stop = min(start + GENSIM_MAX_WORDS, int(offsets[i + 1]))
                    yield types[np.asarray(ids[start:stop])].tolist()

    def count(self) -> int:
        return sum(int(np.ceil(np.diff(np.asarray(c.offsets)) / GENSIM_MAX_WORDS).sum()) for c in self.corpora)


def stable_hash(text: str) -> int:
    """A hash that does not change with PYTHONHASHSEED (gensim seeds some vectors with it): 'a' -> 3904355907."""
    return zlib.crc32(text.encode("utf-8"))


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", disable=None, file=sys.stderr, leave=False)


def _train_gensim(cfg: EmbeddingsConfig, corpora: list[Tokens], vocabulary: _Vocabulary) -> tuple[WordVectors, dict]:
    from gensim.models import FastText, Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    kept = vocabulary.frequent(cfg.min_count)
    own = cfg.own  # [embeddings.word2vec] or [embeddings.fasttext]
    common = dict(vector_size=cfg.vector_size, window=own.window, min_count=cfg.min_count, sample=own.sample,
                  negative=own.negative, hs=0, sg=int(own.architecture == "skipgram"), alpha=own.alpha,
                  min_alpha=own.min_alpha, seed=cfg.seed, workers=cfg.workers or min(4, os.cpu_count() or 1),
                  epochs=own.epochs, hashfxn=stable_hash)
    if cfg.method == "fasttext":
        model = FastText(min_n=own.min_n, max_n=own.max_n, bucket=own.bucket, **common)
    else:
        model = Word2Vec(**common)
    sentences = _Sentences(corpora)
    # counts are known exactly, so gensim needs no vocabulary scan; the dict keeps first-seen order for ties
    model.build_vocab_from_freq({vocabulary.words[i]: int(vocabulary.counts[i]) for i in np.sort(kept)},
                                corpus_count=sentences.count())
    losses: list[float] = []
    seconds: list[float] = []
    bar = _progress(own.epochs, f"embeddings {cfg.method}")

    class EpochLoss(CallbackAny2Vec):
        def on_epoch_begin(self, model):
            model.running_training_loss = 0.0  # gensim's accumulator is cumulative; reset for a per-epoch loss
            self.start = time.perf_counter()

        def on_epoch_end(self, model):
            seconds.append(time.perf_counter() - self.start)
            if cfg.method == "word2vec":
                losses.append(float(model.get_latest_training_loss()))
                bar.set_postfix(loss=f"{losses[-1]:.4g}")
            bar.update(1)

    try:
        trained, raw = model.train(sentences, total_examples=model.corpus_count, epochs=own.epochs,
                                   compute_loss=cfg.method == "word2vec", callbacks=[EpochLoss()])
    finally:
        bar.close()
    wv = model.wv
    count_of = {vocabulary.words[i]: int(vocabulary.counts[i]) for i in kept}
    keys = list(wv.index_to_key)
    result = WordVectors(keys=keys, vectors=np.array(wv.vectors, dtype=np.float32),
                         counts=np.array([count_of[k] for k in keys], dtype=np.int64), method=cfg.method, losses=losses)
    if cfg.method == "fasttext":
        result.ngram_vectors = np.array(wv.vectors_ngrams, dtype=np.float32)
        result.ngram_settings = {"min_n": own.min_n, "max_n": own.max_n, "bucket": own.bucket}
    info = {"seconds": float(sum(seconds)), "epoch_seconds": seconds, "raw_words": int(raw), "trained_words": int(trained),
            "words_per_second": float(raw / max(sum(seconds), 1e-9))}
    if cfg.method == "word2vec":
        info["loss"] = "gensim negative-sampling loss summed over each epoch"
    else:
        info["loss"] = "not reported: gensim's FastText computes no training loss"
    return result, info


def _train_glove(cfg: EmbeddingsConfig, corpora: list[Tokens], vocabulary: _Vocabulary) -> tuple[WordVectors, dict]:
    from nlp_pipeline.models.glove import count_cooccurrences, fit_glove, resolve_kernel

    kernel = resolve_kernel("auto")  # numba when it imports (a dependency), else the numpy fallback (warned)
    threads = cfg.workers or min(4, os.cpu_count() or 1)
    kept = vocabulary.frequent(cfg.min_count)
    to_vocab = np.full(len(vocabulary.words), -1, dtype=np.int64)
    to_vocab[kept] = np.arange(len(kept))
    start = time.perf_counter()
    matrix = None
    for corpus, remap in zip(corpora, vocabulary.remaps):
        part = count_cooccurrences(corpus.ids, corpus.offsets, len(kept), cfg.glove.window, remap=to_vocab[remap],
                                   kernel=kernel)
        matrix = part if matrix is None else matrix + part
    counted = time.perf_counter()
    bar = _progress(cfg.glove.epochs, "embeddings glove")

    def on_epoch(epoch: int, loss: float) -> None:
        bar.set_postfix(loss=f"{loss:.4g}")
        bar.update(1)

    try:
        vectors, losses = fit_glove(matrix, cfg.vector_size, cfg.glove.epochs, cfg.glove.x_max, cfg.glove.alpha,
                                    cfg.glove.learning_rate, cfg.glove.batch_size, cfg.seed, on_epoch,
                                    threads=threads, kernel=kernel)
    finally:
        bar.close()
    done = time.perf_counter()
    raw = int(vocabulary.counts.sum())
    result = WordVectors(keys=[vocabulary.words[i] for i in kept], vectors=vectors,
                         counts=vocabulary.counts[kept].astype(np.int64), method="glove", losses=losses)
    info = {"seconds": done - start, "cooccurrence_seconds": counted - start, "nonzero_cooccurrences": int(matrix.nnz),
            "raw_words": raw, "words_per_second": raw * cfg.glove.epochs / max(done - start, 1e-9),
            "kernel": kernel, "threads": threads if kernel == "numba" else 1,
            "loss": "mean over nonzero co-occurrences of 0.5 f(x) (w.w~ + b + b~ - log x)^2"}
    return result, info


def _load_pretrained(cfg: EmbeddingsConfig, vocabulary: _Vocabulary) -> tuple[WordVectors, dict]:
    path = Path(cfg.pretrained.path or "").expanduser()
    if not path.is_file():
        raise MissingInputError(f"pretrained vectors file {path} does not exist; check embeddings.pretrained.path")
    file_keys, file_vectors = read_vectors(path, expected_dim=cfg.vector_size)
    count_of = dict(zip(vocabulary.words, vocabulary.counts.tolist()))
    if cfg.pretrained.vocabulary == "all":
        counts = np.array([count_of.get(k, 0) for k in file_keys], dtype=np.int64)
        info = {"file_words": len(file_keys), "kept": len(file_keys)}
        return WordVectors(keys=file_keys, vectors=file_vectors, counts=counts, method="pretrained"), info
    kept = vocabulary.frequent(cfg.min_count)
    if len(kept) == 0:
        raise _empty_vocabulary_error(cfg, vocabulary)
    exact = {k: i for i, k in enumerate(file_keys)}
    folded: dict[str, int] = {}
    for i, k in enumerate(file_keys):
        folded.setdefault(k.lower(), i)  # files list frequent forms first: 'Paris' before 'PARIS'
    keys, rows = [], []
    for i in kept:
        word = vocabulary.words[i]
        row = exact.get(word, folded.get(word.lower(), -1))
        if row >= 0:
            keys.append(word)
            rows.append(row)
    if not keys:
        raise DataError(f"none of the {len(kept):,} corpus words has a vector in {path}; check the file's language "
                        "and casing, or set embeddings.pretrained.vocabulary = 'all'")
    counts = np.array([count_of[k] for k in keys], dtype=np.int64)
    info = {"file_words": len(file_keys), "kept": len(keys), "corpus_words": int(len(kept)),
            "corpus_word_coverage": len(keys) / len(kept),
            "corpus_token_coverage": float(counts.sum() / vocabulary.counts[kept].sum())}
    return WordVectors(keys=keys, vectors=np.ascontiguousarray(file_vectors[rows]), counts=counts, method="pretrained"), info


def train_embeddings(cfg: EmbeddingsConfig, tokens: Tokens, general: Tokens | None = None) -> WordVectors:
    """Word vectors of `cfg.method` from the target tokens (plus the general corpus tokens when given)."""
    corpora = [general, tokens] if general is not None else [tokens]
    vocabulary = _merge_vocabulary(corpora)
    if cfg.method == "pretrained":
        result, info = _load_pretrained(cfg, vocabulary)
    else:
        if not len(vocabulary.frequent(cfg.min_count)):
            raise _empty_vocabulary_error(cfg, vocabulary)
        result, info = _train_glove(cfg, corpora, vocabulary) if cfg.method == "glove" else _train_gensim(cfg, corpora, vocabulary)
    result.metrics = {"training": info, "vocabulary": len(result.keys), "training_tokens": int(vocabulary.counts.sum())}
    if cfg.evaluate:
        from nlp_pipeline.evaluation import evaluate_word_vectors

        result.metrics.update(evaluate_word_vectors(result.keys, result.vectors, cfg.restrict_vocab,
                                                    list(cfg.neighbour_words) or None, cfg.neighbours))
    return result


# --- pretrained vector files -----------------------------------------------------------------------------------

_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")


def read_vectors(path: str | Path, expected_dim: int | None = None) -> tuple[list[str], np.ndarray]:
    """Keys and (n, dim) float32 vectors of a GloVe .txt (no header), word2vec .txt / .bin or fastText .vec file.

    The format is detected from the content: a first line of two integers is a word2vec/fastText header
    ('400000 100'), after which the records are text if the next line parses as a word and `dim` numbers, else
    binary; without a header every line is 'word v1 ... vdim' (GloVe). Words containing spaces (some GloVe
    files) are kept whole. Raises a one-line DataError for a malformed file, a dimension other than
    `expected_dim`, non-finite values, duplicate words or invalid UTF-8.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        first = handle.readline()
        if not first.strip():
            raise DataError(f"pretrained vectors file {path} is empty or starts with a blank line; expected 'word v1 v2 ...' lines")
        header = _HEADER.match(first)
        if header is None:
            handle.seek(0)
            keys, vectors = _read_text(handle, path, None, expected_dim, first_line=1)
        else:
            count, dim = int(header.group(1)), int(header.group(2))
            _check_dim(path, dim, expected_dim)
            start = handle.tell()
            second = handle.readline()
            handle.seek(start)
            if _looks_like_text(second, dim):
                keys, vectors = _read_text(handle, path, dim, expected_dim, first_line=2)
            else:
                keys, vectors = _read_binary(handle, path, dim)
            if len(keys) != count:
                raise DataError(f"pretrained vectors file {path} announces {count:,} words in its header but holds "
                                f"{len(keys):,}; the file is truncated or its header is wrong")
    if not keys:
        raise DataError(f"pretrained vectors file {path} holds no vectors")
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise DataError(f"pretrained vectors file {path}: the vector of {keys[bad[0]]!r} has non-finite values; fix or re-export the file")
    return keys, vectors


def _check_dim(path: Path, dim: int, expected_dim: int | None) -> None:
    if dim < 1:
        raise DataError(f"pretrained vectors file {path} has dimension {dim}; expected a positive vector size")
    if expected_dim is not None and dim != expected_dim:
        raise DataError(f"pretrained vectors file {path} has {dim}-dimensional vectors but embeddings.vector_size is "
                        f"{expected_dim}; set embeddings.vector_size = {dim}")


def _looks_like_text(line: bytes, dim: int) -> bool:
    try:
        parts = line.decode("utf-8").rstrip().split(" ")
        if len(parts) < dim + 1:
            return False
        [float(p) for p in parts[-dim:]]
        return True
    except (UnicodeDecodeError, ValueError):
        return False


def _read_text(handle, path: Path, dim: int | None, expected_dim: int | None, first_line: int) -> tuple[list[str], np.ndarray]:
    lines: Iterator[tuple[int, bytes]] = enumerate(handle, first_line)
    if dim is None:  # GloVe: the commonest field count of the first lines fixes the dimension (rare words hold spaces)
        head = list(itertools.islice(lines, 100))
        dim = statistics.mode(len(raw.rstrip().split(b" ")) for _, raw in head if raw.strip()) - 1
        if dim < 1:
            raise DataError(f"pretrained vectors file {path} has lines without numbers; expected 'word v1 v2 ...' lines")
        _check_dim(path, dim, expected_dim)
        lines = itertools.chain(head, lines)
    keys: list[str] = []
    rows: list[np.ndarray] = []
    seen: dict[str, int] = {}
    for line_number, raw in lines:
        try:
            line = raw.decode("utf-8").rstrip()
        except UnicodeDecodeError:
            raise DataError(f"pretrained vectors file {path}: line {line_number} is not valid UTF-8; convert the file to UTF-8") from None
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) < dim + 1:
            raise DataError(f"pretrained vectors file {path}: line {line_number} has {len(parts) - 1} values, expected a word and "
                            f"{dim} numbers; the file is malformed or mixes dimensions")
        word = " ".join(parts[:-dim])
        try:
            rows.append(np.array(parts[-dim:], dtype=np.float32))
        except ValueError:
            raise DataError(f"pretrained vectors file {path}: line {line_number} has a value that is not a number "
                            f"(word {word!r}); the file is malformed or mixes dimensions") from None
        if word in seen:
            raise DataError(f"pretrained vectors file {path}: word {word!r} appears twice (lines {seen[word]} and {line_number}); "
                            "remove the duplicate")
        seen[word] = line_number
        keys.append(word)
    vectors = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return keys, vectors


def _read_binary(handle, path: Path, dim: int) -> tuple[list[str], np.ndarray]:
    data = handle.read()
    record = dim * 4
    keys: list[str] = []
    chunks: list[bytes] = []
    seen: set[str] = set()
    position = 0
    while position < len(data):
        while position < len(data) and data[position:position + 1] in (b"\n", b"\r"):
            position += 1  # the original C tool ends each record with a newline; gensim does not
        if position >= len(data):
            break
        space = data.find(b" ", position)
        if space < 0 or space + 1 + record > len(data):
            raise DataError(f"pretrained vectors file {path}: record {len(keys) + 1} is truncated; the binary file is incomplete")
        try:
            word = data[position:space].decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"pretrained vectors file {path}: the word of record {len(keys) + 1} is not valid UTF-8") from None
        if word in seen:
            raise DataError(f"pretrained vectors file {path}: word {word!r} appears twice; remove the duplicate")
        seen.add(word)
        keys.append(word)
        chunks.append(data[space + 1:space + 1 + record])
        position = space + 1 + record
    vectors = np.frombuffer(b"".join(chunks), dtype="<f4").reshape(len(keys), dim).astype(np.float32)
    return keys, vectors


def summarize(vectors: WordVectors) -> dict:
    """Vocabulary, size and the headline evaluation scores for the run summary."""
    metrics = vectors.metrics
    out = {"words": len(vectors.keys), "dim": int(vectors.vectors.shape[1]) if vectors.vectors.ndim == 2 else 0}
    total = metrics.get("analogies", {}).get("total", {}) or {}
    for field in ("accuracy", "coverage"):
        if total.get(field) is not None:  # None when no question was covered
            out[f"analogy_{field}"] = round(float(total[field]), 4)
    for name, scores in (metrics.get("word_pairs", {}) or {}).items():
        if (scores or {}).get("spearman") is not None:
            out[f"{name}_spearman"] = round(float(scores["spearman"]), 4)
    return out


STAGE = Stage(
    name="embeddings",
    version=1,
    config=EmbeddingsConfig,
    inputs={"tokens": "tokenization", "general": "tokenization"},
    optional=("general",),
    run=train_embeddings,
    volatile=volatile_fields,
    fingerprint=method_fingerprint,
    describe=lambda cfg: f"{cfg.method}, {cfg.vector_size} dims, min_count {cfg.min_count}",
    summary=summarize,
)
