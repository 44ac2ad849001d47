"""Plain data passed between stages: dataclasses of lists, numpy arrays and state_dicts, nothing else.

Each stage returns one of these and receives upstream ones; the store pickles them with large arrays as
memory-mapped `.npy` files. Documents of a corpus keep one order through every stage, so `labels` and
`splits` line up with token and id offsets. Arrays loaded from the store are read-only: copy before editing.

    Corpus ──tokenize──► Tokens ──numericalize──► Numericalized ──► LanguageModel ──► ClassifierResult ─┐
                            │                             └──► LinearResult ──────────────────────────────┴► BlendResult
                            ├──► Carve (validation: the train/validation documents lsa, classifier, linear, blend read)
                            ├──► WordVectors (embeddings)
                            └──► LsaResult (lsa)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

SPLITS = ("train", "dev", "test", "unsup")  # split codes stored in `splits` arrays are indexes into this
UNLABELLED = -1                              # label id of unlabelled documents (split "unsup", or a general corpus)
# What a document's label is, and how `labels` holds it (unlabelled documents in brackets):
#   "class"        one class per text: (n_docs,) int32 ids into label_names (UNLABELLED)
#   "multi_label"  a set of classes per text: (n_docs, n_names) int8 0/1 indicators over label_names (a row of UNLABELLED)
#   "regression"   a number per text: (n_docs,) float32 (NaN); label_names holds the one target's name
TARGET_TYPES = ("class", "multi_label", "regression")


def split_code(name: str) -> int:
    """'test' -> 2"""
    return SPLITS.index(name)


def labelled_mask(labels: np.ndarray) -> np.ndarray:
    """(n_docs,) bool: which documents carry a label, whatever the target type (see TARGET_TYPES):
    [0, -1, 2] -> [T, F, T]; [[1, 0], [-1, -1]] -> [T, F]; [0.5, nan] -> [T, F]."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        return ~np.isnan(labels)
    return labels[:, 0] >= 0 if labels.ndim == 2 else labels >= 0


def label_text(labels: np.ndarray, i: int, label_names: list[str]) -> str:
    """Document i's label as text: "pos"; "comedy|drama" for a set (a blank for the empty set); "3.25" for a
    number; "unlabelled" when it has none."""
    labels = np.asarray(labels)
    if not labelled_mask(labels[i:i + 1])[0]:
        return "unlabelled"
    if labels.dtype.kind == "f":
        return f"{float(labels[i]):g}"
    if labels.ndim == 2:
        return "|".join(label_names[j] for j in np.flatnonzero(labels[i] > 0))
    return label_names[int(labels[i])]


def documents_of(upstream: "_Documents") -> dict[str, Any]:
    """The labels, splits, label names and target type a per-document artifact carries over from its input, as
    keyword arguments: copies, class ids as int32 and splits as int8 (label sets and numbers keep their dtype)."""
    class_ids = upstream.target_type == "class"
    return {"labels": np.array(upstream.labels, dtype=np.int32 if class_ids else None),
            "splits": np.array(upstream.splits, dtype=np.int8),
            "label_names": list(upstream.label_names), "target_type": upstream.target_type}


@dataclass
class _Documents:
    """Labels and splits shared by every per-document artifact."""

    labels: np.ndarray        # (n_docs,) int32 label ids, UNLABELLED for unlabelled texts (other shapes: TARGET_TYPES)
    splits: np.ndarray        # (n_docs,) int8 codes into SPLITS
    label_names: list[str]    # label id -> name (regression: the target's name)
    target_type: str = "class"  # one of TARGET_TYPES: how `labels` holds each document's label

    def indices(self, split: str, labelled: bool = False) -> np.ndarray:
        """Document indexes of one split, in corpus order; labelled=True keeps those with a label."""
        keep = np.asarray(self.splits) == split_code(split)
        if labelled:
            keep &= labelled_mask(self.labels)
        return np.flatnonzero(keep)

    def split_sizes(self) -> dict[str, int]:
        counts = np.bincount(np.asarray(self.splits, dtype=np.int64), minlength=len(SPLITS))
        return {name: int(counts[i]) for i, name in enumerate(SPLITS) if counts[i]}


class TextColumn:
    """Texts as one UTF-8 byte array plus offsets: text i is data[offsets[i]:offsets[i+1]].decode().

    A read-only sequence of str (len, [i], iteration, slices give lists) that a large corpus keeps instead of a
    list: the store writes both arrays as .npy files and maps them back, so loading it costs no memory per text.
    TextColumn.from_texts(['a', 'bé']) -> data b'ab\xc3\xa9', offsets [0, 1, 4]; list(it) -> ['a', 'bé'].
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = data          # (n_bytes,) uint8
        self.offsets = offsets    # (n_texts + 1,) int64

    @classmethod
    def from_texts(cls, texts: list[str]) -> "TextColumn":
        encoded = [t.encode("utf-8") for t in texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("text index out of range")
        return bytes(self.data[self.offsets[index]:self.offsets[index + 1]]).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        offsets = np.asarray(self.offsets)
        step = 4096                                          # texts decoded per block read
        for first in range(0, len(self), step):
            last = min(first + step, len(self))
            block = bytes(self.data[offsets[first]:offsets[last]])
            base = int(offsets[first])
            for start, stop in zip(offsets[first:last].tolist(), offsets[first + 1:last + 1].tolist()):
                yield block[start - base:stop - base].decode("utf-8")

    def __eq__(self, other: Any) -> bool:
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))


@dataclass
class Corpus(_Documents):
    """Raw texts with labels and splits, as read from files, a card or a hub dataset."""

    texts: list[str] | TextColumn = field(default_factory=list)  # a TextColumn for a large unlabelled corpus
    name: str = ""                                   # card name or path it came from
    info: dict[str, Any] = field(default_factory=dict)  # sources, sha256s, dropped-row counts, licence, references

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class _Ragged(_Documents):
    """Documents as one flat int32 array plus offsets: doc i is ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))        # (n_tokens,) int32
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))    # (n_docs + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc_ids(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(np.asarray(self.offsets))


@dataclass
class Tokens(_Ragged):
    """Tokenized documents. `types` lists every distinct token string (first-seen order); ids index it."""

    types: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # the tokenizer config, so predict tokenizes alike

    def doc(self, i: int) -> list[str]:
        types = self.types
        return [types[t] for t in self.doc_ids(i)]

    def iter_docs(self, split: str | None = None) -> Iterator[list[str]]:
        indexes = range(len(self)) if split is None else self.indices(split)
        for i in indexes:
            yield self.doc(int(i))

    def type_counts(self) -> np.ndarray:
        """(len(types),) int64 occurrences of each token type."""
        return np.bincount(np.asarray(self.ids), minlength=len(self.types)).astype(np.int64)


@dataclass
class Vocab:
    """Token strings by id; special tokens first. stoi is rebuilt on load, not stored."""

    itos: list[str]
    unk_token: str = "xxunk"

    def __post_init__(self) -> None:
        self._stoi: dict[str, int] | None = None

    def __getstate__(self) -> dict:
        return {"itos": self.itos, "unk_token": self.unk_token}

    def __setstate__(self, state: dict) -> None:
        self.itos, self.unk_token, self._stoi = state["itos"], state["unk_token"], None

    @property
    def stoi(self) -> dict[str, int]:
        if self._stoi is None:
            self._stoi = {s: i for i, s in enumerate(self.itos)}
        return self._stoi

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> np.ndarray:
        """['xxbos', 'hello', 'zzz'] -> array([2, 57, 0], int32) with unknown tokens mapped to unk."""
        stoi, unk = self.stoi, self.stoi[self.unk_token]
        return np.fromiter((stoi.get(t, unk) for t in tokens), dtype=np.int32, count=len(tokens))

    def tokens(self, ids: np.ndarray | list[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]


@dataclass
class Numericalized(_Ragged):
    """Token ids under a vocabulary built from the training texts."""

    vocab: Vocab = field(default_factory=lambda: Vocab(["xxunk"]))
    oov_rate: dict[str, float] = field(default_factory=dict)   # split -> share of tokens mapped to xxunk
    tokenizer: dict[str, Any] = field(default_factory=dict)    # Tokens.settings, carried to the LM and bundle


@dataclass
class Carve:
    """Which labelled documents models fit on and which they are scored on to choose settings (epochs, C, the blend
    weight): the validation stage makes it once, lsa, classifier, linear and blend read it. Indexes are document
    positions in the corpus, ascending; both are empty when the corpus has no labelled train documents."""

    train_indexes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))       # (n_train,) documents fitted on
    validation_indexes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (n_val,) documents scored
    source: str = ""             # "dev" (the corpus's labelled dev split) or "carved from train"
    documents: int = 0           # documents in the corpus it was made for (a check that a stage reads the same corpus)
    fraction: float | None = None  # share of each label's train documents held out; None for the dev split
    seed: int | None = None      # seed of that carve; None for the dev split


@dataclass
class LsaResult(_Documents):
    """TF-IDF + truncated SVD of a corpus and the baseline classifiers trained on it."""

    doc_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (n_docs, k) float32
    topic_terms: list[list[str]] = field(default_factory=list)       # per component, top terms by weight
    explained_variance_ratio: list[float] = field(default_factory=list)
    snippets: list[str] = field(default_factory=list)                # first words of each document, for projector
    metrics: dict[str, Any] = field(default_factory=dict)            # {"lsa_logreg": {...}, "tfidf_logreg": {...}}


@dataclass
class WordVectors:
    """Word vectors with their vocabulary and corpus counts (gensim's KeyedVectors split: no trainer state)."""

    keys: list[str]
    vectors: np.ndarray          # (n_words, dim) float32
    counts: np.ndarray           # (n_words,) int64 corpus frequency (0 when unknown, e.g. loaded vectors)
    method: str                  # "word2vec" | "fasttext" | "glove" | "pretrained"
    losses: list[float] = field(default_factory=list)         # per epoch
    metrics: dict[str, Any] = field(default_factory=dict)     # analogy / similarity / neighbours
    ngram_vectors: np.ndarray | None = None                   # fastText bucket vectors, for unseen words
    ngram_settings: dict[str, Any] = field(default_factory=dict)  # min_n, max_n, bucket


# --- language model and classifier (issue 4): defined by the LM work; placeholders until then ---------------
@dataclass
class LanguageModel:
    """An AWD-LSTM/GRU language model: shapes, weights and vocabulary, no optimizer state.

    Rebuild with nlp_pipeline.models.heads.build_language_model(arch) and load `state_dict` into it
    (nlp_pipeline.models.inference.load_language_model does both). Weights are numpy arrays, so loading the
    artifact needs no torch.
    """

    arch: dict[str, Any]                 # vocab_size, embedding_dim, hidden_dim, num_layers, rnn_type, pad_id, tie_weights (+ backward: true)
    state_dict: dict[str, np.ndarray]    # parameter name -> float32 array (the tied decoder weight appears under both names)
    vocab: Vocab                         # token of each embedding row / decoder output
    tokenizer: dict[str, Any] = field(default_factory=dict)      # tokenization settings of the training texts
    history: list[dict[str, Any]] = field(default_factory=list)  # per epoch: phase, train_loss, val_loss, val_perplexity, seconds, tokens_per_second
    metrics: dict[str, Any] = field(default_factory=dict)        # val perplexity, tokens seen, vocabulary overlap, vector init, ...

    @property
    def direction(self) -> str:
        """"backward" for an LM trained on texts read right to left (arch["backward"]), else "forward"."""
        return "backward" if self.arch.get("backward") else "forward"


@dataclass
class ClassifierResult:
    """A trained ULMFiT classifier (encoder + pooling head) with its validation and test scores.

    Rebuild with nlp_pipeline.models.inference.load_classifier(result); documents are encoded with `vocab`
    after the tokenizer in `tokenizer`, truncated to `max_length` ids. Test indexes, labels and probabilities
    line up row by row (indexes are document positions in the corpus) for error analysis.
    """

    arch: dict[str, Any]                 # encoder shapes + num_classes (outputs), head_hidden_dim, target_type (+ target_mean/std)
    state_dict: dict[str, np.ndarray]    # parameter/buffer name -> array (BatchNorm running stats included)
    vocab: Vocab
    label_names: list[str]               # class id -> name (regression: the target's name)
    max_length: int                      # documents are cut to their first max_length token ids
    tokenizer: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # per epoch: stage, trainable_groups, train/val loss, val_<targets.PRIMARY> (e.g. val_accuracy)
    metrics: dict[str, Any] = field(default_factory=dict)        # {"validation": {...}, "test": {...}, "selected": {...}}
    validation_indexes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (n_val,) documents scored for model selection
    test_indexes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))        # (n_test,) corpus positions of test documents
    test_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))         # (n_test,) true label ids (shapes: TARGET_TYPES)
    test_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (n_test, n_classes); regression: (n_test, 1) predicted values
    linear: Any = None                   # None in the classifier stage's artifact; models.blend.compose sets the blended LinearModel
    target_type: str = "class"           # one of TARGET_TYPES
    train_indexes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))       # (n_train,) documents trained on, in training order
    validation_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (n_val, n_classes) the RNN's, rows as validation_indexes
    seed: int = 0                        # classifier.seed: weights, dropout and batch order


@dataclass
class LinearResult:
    """The linear stage's TF-IDF n-gram logistic regression as plain data (models.linear.LinearModel.from_parts
    rebuilds it, with the vocabulary's strings when it has a character block), fitted on the carve's train
    documents, with its cross-validation table and its validation probabilities. `skipped` says why there is no
    model (a target that is not one class per text, or one class in train); then settings and arrays are empty."""

    settings: dict[str, Any] = field(default_factory=dict)         # LinearModel.settings() + fit: min_df, seed, max_length
    arrays: dict[str, np.ndarray] = field(default_factory=dict)    # LinearModel.arrays(): idf, coef, intercept, keys_<n>, ...
    selection: dict[str, Any] = field(default_factory=dict)        # CV accuracy by C (and by character length, by NB scaling)
    train_indexes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))       # (n_train,) documents fitted on
    validation_indexes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (n_val,) documents scored below
    validation_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (n_val, n_classes)
    skipped: str = ""                                              # why no model was fitted; "" = fitted
    metrics: dict[str, Any] = field(default_factory=dict)          # features, seconds


@dataclass
class BlendResult:
    """The blend of the RNN classifier's and the linear model's probabilities, (1 - weight) * RNN + weight * linear,
    with weight chosen on validation, and the linear model the blend uses (refitted on train + validation when
    blend.refit): what the bundle, the report and metrics.json show (models.blend.compose joins it to the RNN)."""

    weight: float = 0.0                                            # 0 = the RNN alone
    linear_settings: dict[str, Any] | None = None                  # LinearModel.settings() of the blended model, or None
    linear_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # its LinearModel.arrays()
    metrics: dict[str, Any] = field(default_factory=dict)          # "validation", "test" (blended scores), "blend" (what the choice saw)
    test_probabilities: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (n_test, n_classes), blended
