"""The predict bundle: a trained classifier as a folder that loads without the cache, without pickle.

    save_bundle(result, "runs/trec6/model")          # ClassifierResult -> folder (written atomically)
    clf = Classifier.load("runs/trec6")              # a bundle folder, or a run folder holding model/
    clf.predict("How far is the moon?")              # {"label": "NUM", "probabilities": {"ABBR": 0.01, ...}}
    clf.predict(["text one", "text two"])            # [{...}, {...}], in input order
    clf.predict_proba(["text one", "text two"])      # (2, n_classes) float32
    # a multi-label bundle: {"labels": ["comedy", "drama"], "probabilities": {...}} (p >= its threshold);
    # a regression bundle: {"value": 3.7}, and predict_values(texts) -> (n_texts,) float32

A bundle folder holds four or five files, all readable without running code:

    model.safetensors   the classifier's weights (safetensors: a JSON header + raw little-endian arrays)
    linear.safetensors  the blended TF-IDF n-gram logistic regression (idf, coef, intercept, n-gram keys), if any
    config.json         format and package versions, arch, label_names, max_length, the linear model's settings
                        and blend weight, sha256 of the other files
    vocab.json          the vocabulary (token of each embedding row), specials first
    tokenizer.json      the complete tokenization settings (TokenizationConfig fields minus volatile ones)

Predicting runs the one code path the training used: tokenize_texts (same rules, same spaCy tokenizer) ->
vocab.encode -> cut to max_length -> length-sorted padded batches -> the net in eval mode under
torch.inference_mode -> softmax (sigmoid per label; the value for regression) -> input order -> blended
with the linear model's probabilities (same ids). One text and a batch go through the same function, so they
give the same probabilities (up to float rounding of the batched RNN kernel, < 1e-6).
Input: any string gets an answer (an empty one: the model's answer for [xxbos]; lone surrogates read as U+FFFD).
`nlp-pipeline predict` (predict_rows) reads its lines as bytes: an invalid UTF-8 byte becomes U+FFFD with a
warning naming the line, an empty or whitespace-only line is left unclassified (a blank row) with a warning,
and stdin is answered line by line as it arrives (LineReader).
Limits: documents keep their first max_length tokens; the bundle needs nlp-pipeline itself (its tokenizer
rules and net definitions), not only torch. Formats: 1 = no linear model, 2 = single-label (still what a
single-label bundle is written as, so older readers load it), 3 = multi-label or regression; any other format
version is refused with the command that re-exports it. (A single-label bundle whose linear model has
character n-grams is format 3 too: a format 2 reader would silently drop them.)
"""

from __future__ import annotations

import codecs
import collections
import io
import json
import os
import select
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from nlp_pipeline import __version__
from nlp_pipeline.artifacts import ClassifierResult, Vocab
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError
from nlp_pipeline.core.hashing import file_sha256
from nlp_pipeline.rules import replace_surrogates

FORMAT = "nlp-pipeline-classifier"   # config.json "format": what kind of folder this is
FORMAT_VERSION = 5                   # bumped when the layout or a file's meaning changes; loaders refuse others
READABLE_VERSIONS = (1, 2, 3, 4, 5)  # 1 = before the linear blend (no linear.safetensors); 2 = before target types (all
                                     # single-label); 3 = before NB scaling of the linear model; 4 = before backward members
NB_VERSION = 4                       # a linear model with NB scaling (and forward RNN members only)
SINGLE_LABEL_VERSION = 2             # what a single-label bundle (without character n-grams) is written as: older readers load it
CHARS_VERSION = 3                    # a linear model with character n-grams, or a multi-label/regression target
METRIC_KEYS = ("accuracy", "macro_f1", "micro_f1", "subset_accuracy", "r2", "rmse", "mae", "n")  # copied into config.json
WEIGHTS_FILE = "model.safetensors"
LINEAR_FILE = "linear.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
TOKENIZER_FILE = "tokenizer.json"
CHECKED_FILES = (WEIGHTS_FILE, VOCAB_FILE, TOKENIZER_FILE)  # their sha256 is recorded in config.json
RUN_MODEL_DIR = "model"              # runs/<name>/model/ is where `nlp-pipeline run` writes the bundle
EXPORT_HINT = "nlp-pipeline run --name NAME (writes runs/NAME/model/)"


# --- writing ---------------------------------------------------------------------------------------------

def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def full_tokenizer_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Recorded tokenizer settings completed with today's defaults and validated, so a bundle states every
    field and does not depend on future defaults.

    full_tokenizer_settings({"lang": "en"}) -> {"lang": "en", "rules": [...8 rule names...], "max_token_length": 50,
    "add_bos": True, "mark_whitespace": False}
    """
    from nlp_pipeline.stages.tokenization import TokenizationConfig, settings_of

    try:
        return settings_of(TokenizationConfig(**dict(settings)))
    except TypeError as exc:  # an unknown field name
        raise DataError(f"tokenizer settings do not fit this nlp-pipeline ({exc}); re-export with {EXPORT_HINT}") from None


def _is_bundle_dir(path: Path) -> bool:
    try:
        return json.loads((path / CONFIG_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _format_version(result: ClassifierResult) -> int:
    """The oldest format that holds the result, so older readers load what they can read right: an older reader
    would silently ignore character n-grams (format 2), NB scaling (format 3) or backward members (format 4) and
    predict something else."""
    linear = result.linear  # a LinearModel unpickled from an older cache has both fields (its __setstate__)
    if result.arch.get("backward") or any(result.arch.get("backward_members", ())):
        return FORMAT_VERSION  # an older reader would feed the backward net its text left to right
    if linear is not None and len(linear.nb_ratio):
        return NB_VERSION
    if result.target_type != "class" or (linear is not None and linear.char_ngrams):
        return CHARS_VERSION
    return SINGLE_LABEL_VERSION


def save_bundle(result: ClassifierResult, out_dir: str | Path) -> Path:
    """Write `result` as a bundle folder at out_dir and return its path.

    The folder is built under a temporary sibling name and renamed into place, so a reader never sees half a
    bundle. An existing out_dir is replaced only if it is empty or an earlier bundle; any other folder or a
    file there is a ConfigError (nothing of the user's is deleted).
    """
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir.is_dir() and (not any(out_dir.iterdir()) or _is_bundle_dir(out_dir))):
        raise ConfigError(f"{out_dir} exists and is not a bundle folder; choose another path or remove it")
    from nlp_pipeline.models.heads import embedding_weight

    embedding = embedding_weight(result.state_dict)
    if embedding is None or np.shape(embedding)[0] != len(result.vocab):
        rows = "no" if embedding is None else np.shape(embedding)[0]
        raise DataError(f"LM/vocab mismatch: the classifier's embedding has {rows} rows but its vocabulary "
                        f"{len(result.vocab)} tokens; retrain the classifier on its own numericalization")
    if len(result.label_names) != result.arch.get("num_classes"):
        raise DataError(f"the classifier has {result.arch.get('num_classes')} outputs but {len(result.label_names)} label names")
    if not result.tokenizer:  # today's defaults might not be how the training texts were tokenized
        raise DataError("the classifier result records no tokenizer settings, so predict could not tokenize alike; "
                        "train it from a numericalization made by the pipeline (it carries Tokens.settings)")
    tokenizer = full_tokenizer_settings(result.tokenizer)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        # copies: the artifact's arrays may be read-only memory maps of the cache, and safetensors wants C order
        tensors = {name: np.array(value, copy=True, order="C") for name, value in result.state_dict.items()}
        version = _format_version(result)
        save_file(tensors, tmp / WEIGHTS_FILE, metadata={"format": FORMAT, "format_version": str(version)})
        checked = list(CHECKED_FILES)
        if result.linear is not None:
            save_file({k: np.array(v, copy=True, order="C") for k, v in result.linear.arrays().items()}, tmp / LINEAR_FILE)
            checked.append(LINEAR_FILE)
        _write_json(tmp / VOCAB_FILE, {"itos": list(result.vocab.itos), "unk_token": result.vocab.unk_token})
        _write_json(tmp / TOKENIZER_FILE, tokenizer)
        config = {
            "format": FORMAT,
            "format_version": version,
            "nlp_pipeline_version": __version__,
            "arch": dict(result.arch),
            "label_names": list(result.label_names),
            "max_length": int(result.max_length),
            "linear": result.linear.settings() if result.linear is not None else None,
            "metrics": {split: {k: v for k, v in result.metrics[split].items() if k in METRIC_KEYS}
                        for split in ("validation", "test") if isinstance(result.metrics.get(split), dict)},
            "files": {name: file_sha256(tmp / name) for name in checked},
        }
        _write_json(tmp / CONFIG_FILE, config)  # last: a folder with config.json is complete
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}-old-{os.getpid()}"
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# --- reading ---------------------------------------------------------------------------------------------

def resolve_bundle_dir(path: str | Path) -> Path:
    """The bundle folder meant by `path`: the folder itself, or <path>/model for a run folder runs/<name>/.

    A missing folder, or a folder that is neither, is a MissingInputError naming what to do.
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"no bundle at {path}: the folder does not exist; train and export one with {EXPORT_HINT}")
    if not path.is_dir():
        raise MissingInputError(f"{path} is a file; --model takes a bundle folder or a run folder runs/<name>/")
    if (path / CONFIG_FILE).is_file() or (path / WEIGHTS_FILE).is_file():
        return path
    if (path / RUN_MODEL_DIR).is_dir():
        return path / RUN_MODEL_DIR
    raise MissingInputError(f"no bundle in {path} (no {CONFIG_FILE}, no {RUN_MODEL_DIR}/ folder); "
                            f"pass a bundle folder or a run folder, or export one with {EXPORT_HINT}")


def _read_json(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise MissingInputError(f"bundle {folder} has no {name}; the bundle is incomplete: re-export it with {EXPORT_HINT}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"bundle file {path} is not valid JSON ({exc}); re-export the bundle with {EXPORT_HINT}") from None


def _check_config(folder: Path, config: Any) -> None:
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataError(f"{folder / CONFIG_FILE} is not an nlp-pipeline classifier bundle (format {FORMAT!r} expected)")
    version = config.get("format_version")
    if version not in READABLE_VERSIONS:
        made_by = config.get("nlp_pipeline_version", "?")
        raise DataError(
            f"bundle made by nlp-pipeline {made_by} (format {version}); this is {__version__} (format {FORMAT_VERSION}): "
            f"re-export it with nlp-pipeline {__version__}: {EXPORT_HINT}, or load it with nlp-pipeline {made_by}"
        )
    for key in ("arch", "label_names", "max_length", "files"):
        if key not in config:
            raise DataError(f"{folder / CONFIG_FILE} has no {key!r} field; re-export the bundle with {EXPORT_HINT}")


def _check_files(folder: Path, expected: Any, names: Sequence[str] = CHECKED_FILES) -> None:
    if not isinstance(expected, dict):
        raise DataError(f"{folder / CONFIG_FILE} 'files' is not a table of checksums; re-export the bundle with {EXPORT_HINT}")
    for name in names:
        path = folder / name
        if not path.is_file():
            raise MissingInputError(f"bundle {folder} has no {name}; the bundle is incomplete: re-export it with {EXPORT_HINT}")
        if expected.get(name) != file_sha256(path):
            raise DataError(f"bundle file {path} is corrupted (its sha256 differs from config.json's); "
                            f"re-export the bundle with {EXPORT_HINT}")


def _read_weights(path: Path, as_numpy: bool = False) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as load_numpy
    from safetensors.torch import load_file

    try:
        return load_numpy(str(path)) if as_numpy else load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"bundle weights {path} cannot be read ({str(exc).splitlines()[0][:200]}); "
                        f"re-export the bundle with {EXPORT_HINT}") from None


class Classifier:
    """A loaded bundle: predict labels and probabilities for raw texts. Build with Classifier.load(path)."""

    def __init__(self, model: Any, vocab: Vocab, label_names: list[str], max_length: int,
                 tokenizer_settings: dict[str, Any], device: Any, dtype: Any = None, path: Path | None = None,
                 config: dict[str, Any] | None = None, linear: Any = None):
        from nlp_pipeline.stages.tokenization import TokenizationConfig

        self.model = model.eval()
        self.vocab = vocab
        self.label_names = list(label_names)
        self.max_length = int(max_length)
        self.tokenizer_settings = dict(tokenizer_settings)
        # in this process: a predict call is usually small, and forking next to torch's threads buys little
        self._tokenizer = TokenizationConfig(**self.tokenizer_settings, workers=1)
        self.device, self.dtype, self.path = device, dtype, path
        self.config = config or {}
        self.linear = linear  # models.linear.LinearModel blended in with weight linear.weight, or None
        self.target_type = getattr(model, "target_type", "class")  # "class", "multi_label" or "regression"
        self.pad_id = vocab.stoi["xxpad"]
        self._empty = vocab.encode(["xxbos"] if "xxbos" in vocab.stoi else ["xxpad"])

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", num_threads: int = 0, precision: str = "float32") -> "Classifier":
        """Load and check a bundle folder (or runs/<name>/, which holds it in model/).

        device "cpu" (default), "cuda" or "auto"; num_threads 0 = every usable core; precision "float32"
        (default, exact), "bfloat16" or "auto" (bfloat16 matmuls where the hardware does them natively).
        Every problem is a one-line MissingInputError / DataError: missing folder or file, a file whose sha256
        differs from config.json's, unreadable safetensors, JSON that does not parse, another format version,
        or a vocabulary that does not fit the embedding ("LM/vocab mismatch").
        """
        from nlp_pipeline.models.device import choose_device, resolve_precision
        from nlp_pipeline.models.heads import build_classifier, embedding_weight

        folder = resolve_bundle_dir(path)
        config = _read_json(folder, CONFIG_FILE)
        _check_config(folder, config)
        linear_settings = config.get("linear")
        _check_files(folder, config["files"], CHECKED_FILES + ((LINEAR_FILE,) if linear_settings else ()))
        vocab_json = _read_json(folder, VOCAB_FILE)
        tokenizer = _read_json(folder, TOKENIZER_FILE)
        if not isinstance(vocab_json, dict) or not isinstance(vocab_json.get("itos"), list) or not isinstance(tokenizer, dict):
            raise DataError(f"bundle {folder}: {VOCAB_FILE} or {TOKENIZER_FILE} does not have the expected fields; re-export it")
        vocab = Vocab(list(vocab_json["itos"]), vocab_json.get("unk_token", "xxunk"))
        for needed in (vocab.unk_token, "xxpad"):
            if needed not in vocab.stoi:
                raise DataError(f"bundle {folder}: the vocabulary has no {needed!r} token; re-export it with {EXPORT_HINT}")
        state = _read_weights(folder / WEIGHTS_FILE)
        arch, labels = dict(config["arch"]), list(config["label_names"])
        embedding = embedding_weight(state)
        rows = None if embedding is None else int(embedding.shape[0])
        if rows != len(vocab) or arch.get("vocab_size") != len(vocab):
            raise DataError(f"LM/vocab mismatch in bundle {folder}: {VOCAB_FILE} has {len(vocab)} tokens, the embedding "
                            f"{rows} rows, config.json says vocab_size {arch.get('vocab_size')}; re-export it with {EXPORT_HINT}")
        if arch.get("num_classes") != len(labels):
            raise DataError(f"bundle {folder}: {len(labels)} label names for {arch.get('num_classes')} outputs; re-export it")
        try:
            model = build_classifier(arch)
            model.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise DataError(f"bundle {folder}: the weights do not fit config.json's arch ({reason}); re-export it") from None
        linear = None
        if linear_settings:
            from nlp_pipeline.models.linear import LinearModel

            try:
                linear = LinearModel.from_parts(linear_settings, _read_weights(folder / LINEAR_FILE, as_numpy=True),
                                                vocab.itos)
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"bundle {folder}: {LINEAR_FILE} does not fit config.json's linear settings "
                                f"({type(exc).__name__}: {exc}); re-export it with {EXPORT_HINT}") from None
            if linear.vocab_size != len(vocab) or linear.coef.shape[1] != len(linear.idf) or linear.n_classes != len(labels):
                raise DataError(f"bundle {folder}: the linear model's shapes do not fit the vocabulary and labels; "
                                f"re-export it with {EXPORT_HINT}")
        torch_device = choose_device(device, num_threads)
        dtype = resolve_precision(torch_device, precision)
        return cls(model.to(torch_device), vocab, labels, config["max_length"], full_tokenizer_settings(tokenizer),
                   torch_device, dtype, folder, config, linear)

    @classmethod
    def from_result(cls, result: ClassifierResult, device: str = "cpu", num_threads: int = 0,
                    precision: str = "float32") -> "Classifier":
        """The same predictor straight from an in-memory ClassifierResult (no files)."""
        from nlp_pipeline.models.device import choose_device, resolve_precision
        from nlp_pipeline.models.inference import load_classifier

        torch_device = choose_device(device, num_threads)
        return cls(load_classifier(result, torch_device), result.vocab, result.label_names, result.max_length,
                   full_tokenizer_settings(result.tokenizer), torch_device, resolve_precision(torch_device, precision),
                   linear=result.linear)

    # --- the one prediction path ---------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Texts -> id arrays cut to max_length, exactly as the classifier saw its training documents.

        An empty text becomes [xxbos] (the tokenizer adds it; without add_bos it is put in here), so every
        document has at least one real step.
        """
        from nlp_pipeline.stages.tokenization import tokenize_texts

        docs = []
        for tokens in tokenize_texts(self._tokenizer, texts):
            ids = self.vocab.encode(tokens[: self.max_length])
            docs.append(ids if len(ids) else self._empty)
        return docs

    def _outputs(self, items: list[str], batch_size: int) -> np.ndarray:
        """The one prediction path: (n_texts, n_outputs) float32 probabilities (or values), in input order.
        Texts are tokenized, encoded, length-sorted into padded batches of batch_size and put back in order."""
        import torch

        from nlp_pipeline.models.linear import blend_in
        from nlp_pipeline.models.training import predict_classifier

        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        docs = self.encode(items)
        if not docs:
            return np.zeros((0, self.model.num_classes), np.float32)
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.concatenate(docs).astype(np.int64)
        with torch.inference_mode():
            outputs = predict_classifier(self.model, ids, offsets, np.arange(len(docs)), self.pad_id, self.max_length,
                                         batch_size, self.device, self.dtype)
        return blend_in(self.linear, outputs, docs)

    def predict_proba(self, texts: str | Iterable[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities (per-label probabilities for a multi-label bundle): (n_texts, n_classes) float32
        for a list, (n_classes,) for a single string. Columns follow `label_names`."""
        if self.target_type == "regression":
            raise DataError("this bundle predicts a number, not probabilities; use predict() or predict_values()")
        single, items = _as_texts(texts)
        probs = self._outputs(items, batch_size)
        return probs[0] if single else probs

    def predict_values(self, texts: str | Iterable[str], batch_size: int = 64) -> np.ndarray | float:
        """A regression bundle's predicted numbers: (n_texts,) float32 for a list, a float for a single string."""
        if self.target_type != "regression":
            raise DataError(f"this bundle predicts {'labels' if self.target_type == 'multi_label' else 'a label'}, "
                            f"not numbers; use predict() or predict_proba()")
        single, items = _as_texts(texts)
        values = self._outputs(items, batch_size)[:, 0]
        return float(values[0]) if single else values

    def predict(self, texts: str | Iterable[str], batch_size: int = 64) -> dict[str, Any] | list[dict[str, Any]]:
        """Per text {"label": name, "probabilities": {name: p, ...}}; for a multi-label bundle {"labels": [names
        at p >= the model's threshold, chosen on validation], "probabilities": {...}}; for a regression bundle
        {"value": x}. One dict for a string, a list for a list.

        Any string gets an answer: an empty or whitespace-only text is the document [xxbos], so its answer is what
        the model says when it sees no words (the command line leaves such lines unclassified instead); a lone
        surrogate ('\\ud83d', half a character) is read as U+FFFD, like the corpus stage reads it."""
        single, items = _as_texts(texts)
        threshold = getattr(self.model, "threshold", 0.5)
        outputs = self._outputs(items, batch_size)
        names = self.label_names
        if self.target_type == "regression":
            out = [{"value": float(row[0])} for row in outputs]
        elif self.target_type == "multi_label":
            out = [{"labels": [n for n, p in zip(names, row) if p >= threshold],
                    "probabilities": {n: float(p) for n, p in zip(names, row)}} for row in outputs]
        else:
            out = [{"label": names[int(row.argmax())], "probabilities": {n: float(p) for n, p in zip(names, row)}}
                   for row in outputs]
        return out[0] if single else out

    def __repr__(self) -> str:
        what = (f"regression of {self.label_names[0]!r}" if self.target_type == "regression" else
                f"{len(self.label_names)} {'multi-label ' if self.target_type == 'multi_label' else ''}labels "
                f"{self.label_names[:6]}{'...' if len(self.label_names) > 6 else ''}")
        return (f"Classifier({what}, "
                f"vocab {len(self.vocab)}, max_length {self.max_length}, from {self.path})")


def _as_texts(texts: str | Iterable[str]) -> tuple[bool, list[str]]:
    """(was a single string, list of texts); anything but strings is a DataError naming the first bad item."""
    if isinstance(texts, str):
        return True, [texts]
    if texts is None or isinstance(texts, (bytes, dict)):
        raise DataError(f"predict takes a string or a list of strings, got {type(texts).__name__}")
    try:
        items = list(texts)
    except TypeError:
        raise DataError(f"predict takes a string or a list of strings, got {type(texts).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise DataError(f"predict takes strings; text {i} is a {type(item).__name__} ({str(item)[:40]!r})")
    return False, items


# --- helpers for the command line ------------------------------------------------------------------------

class PredictInput(NamedTuple):
    """One text given to `nlp-pipeline predict`, and where it came from (for warnings)."""

    text: str          # as classified: bytes that are not UTF-8 and lone surrogates replaced by U+FFFD
    source: str        # "argument", "stdin" or the --file path
    number: int        # argument or line number, from 1
    replaced: bool     # something was replaced by U+FFFD


def argument_inputs(texts: Iterable[str]) -> Iterator[PredictInput]:
    """Command-line TEXT arguments. Python hands over a byte that is not UTF-8 as a lone surrogate ('caf\\udce9');
    it becomes U+FFFD like everywhere else."""
    for number, text in enumerate(texts, start=1):
        text, replaced = replace_surrogates(text)
        yield PredictInput(text, "argument", number, replaced > 0)


class LineReader:
    """The lines of a binary stream (a file or a pipe) as PredictInputs, read as they arrive.

    Lines end at \\n (a \\r before it is dropped, as is a UTF-8 byte-order mark starting the first line); a line
    that is not valid UTF-8 is decoded with U+FFFD for each bad byte and marked `replaced`. `ready()` says
    whether the next line can be had without waiting (it is read already, or a pipe has input waiting), so a
    caller can answer what it holds before blocking. Memory: the current line and one read of 64 KiB.
    """

    def __init__(self, stream: Any, source: str):
        self.source = source
        self._stream = stream
        self._lines: collections.deque[bytes] = collections.deque()
        self._partial = bytearray()
        self._eof = False
        self._number = 0
        try:
            self._fd = stream.fileno()
            self._pipe = not stat.S_ISREG(os.fstat(self._fd).st_mode)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # BytesIO and other in-memory streams
            self._fd, self._pipe = None, False

    def _read(self) -> None:
        data = os.read(self._fd, 1 << 16) if self._fd is not None else self._stream.read(1 << 16)
        if not data:
            self._eof = True
            if self._partial:
                self._lines.append(bytes(self._partial))
                self._partial.clear()
            return
        self._partial += data
        if b"\n" in data:  # only new data can complete a line: a long line is not rescanned on every read
            *complete, rest = self._partial.split(b"\n")
            self._lines.extend(complete)
            self._partial = bytearray(rest)

    def __iter__(self) -> Iterator[PredictInput]:
        while True:
            while self._lines:
                yield self._decode(self._lines.popleft())
            if self._eof:
                return
            self._read()

    def _decode(self, raw: bytes) -> PredictInput:
        self._number += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if self._number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            return PredictInput(raw.decode("utf-8"), self.source, self._number, False)
        except UnicodeDecodeError:
            return PredictInput(raw.decode("utf-8", errors="replace"), self.source, self._number, True)

    def ready(self) -> bool:
        if self._lines or self._eof or not self._pipe:
            return True
        try:
            return bool(select.select([self._fd], [], [], 0)[0])
        except (OSError, ValueError):  # select does not take this kind of stream here
            return True


def file_inputs(path: str | Path) -> Iterator[PredictInput]:
    """The lines of a text file (blank lines kept, so outputs line up with inputs), numbered from 1."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"no text file at {path}; pass a file with one text per line")
    try:
        with open(path, "rb") as handle:
            yield from LineReader(handle, str(path))
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror or exc}); pass a readable text file") from None


def batches(inputs: Iterable[PredictInput], size: int, ready: Callable[[], bool] = lambda: True
            ) -> Iterator[list[PredictInput]]:
    """Lists of at most `size` inputs; a list is also handed out early when `ready()` says the next input would
    have to be waited for, so a pipe is answered line by line while a file goes in full batches."""
    chunk: list[PredictInput] = []
    for item in inputs:
        chunk.append(item)
        if len(chunk) >= size or not ready():
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def blank_prediction(target_type: str) -> dict[str, Any]:
    """The prediction of a text that is not classified (empty or whitespace only): every field None."""
    if target_type == "regression":
        return {"value": None}
    return {"labels" if target_type == "multi_label" else "label": None, "probabilities": None}


def where(items: Sequence[PredictInput], limit: int = 10) -> str:
    """'argument 2', 'stdin lines 2, 3', 'a.txt line 7; stdin lines 1, 4 and 3 more': where inputs came from."""
    groups: dict[str, list[int]] = {}
    for item in items:
        groups.setdefault(item.source, []).append(item.number)
    parts, shown = [], 0
    for source, numbers in groups.items():
        kept = numbers[: max(0, limit - shown)]
        shown += len(kept)
        if not kept:
            continue
        noun = "argument" if source == "argument" else f"{source} line"
        parts.append(f"{noun}{'s' if len(kept) > 1 else ''} {', '.join(map(str, kept))}")
    more = len(items) - shown
    return "; ".join(parts) + (f" and {more} more" if more else "")


def predict_rows(classifier: "Classifier", inputs: Iterable[PredictInput], batch_size: int, as_json: bool,
                 warn: Callable[[str], None]) -> Iterator[str]:
    """The output rows of `nlp-pipeline predict`, one per input in input order, each batch as soon as it is
    classified (a LineReader's lines as soon as no more are waiting). An empty or whitespace-only text is not classified (a blank row: empty fields, JSON nulls);
    after the last row, `warn` gets one line naming the inputs left blank and one naming those that held bytes
    that are not UTF-8 (or lone surrogates), classified with U+FFFD in their place. No input at all, or only
    blank ones, is a DataError."""
    blank = blank_prediction(classifier.target_type)
    empty: list[PredictInput] = []
    replaced: list[PredictInput] = []
    classified = 0
    for chunk in batches(inputs, max(batch_size, 1) * 16, getattr(inputs, "ready", lambda: True)):
        texts = [item.text for item in chunk if item.text.strip()]
        answers = iter(classifier.predict(texts, batch_size) if texts else [])
        classified += len(texts)
        for item in chunk:
            if item.replaced:
                replaced.append(item)
            if item.text.strip():
                yield format_prediction(item.text, next(answers), as_json)
            else:
                empty.append(item)
                yield format_prediction(item.text, blank, as_json)
    if not classified:
        got = f"only empty or whitespace-only texts ({where(empty)})" if empty else "the input was empty"
        raise DataError(f"no texts to classify: {got}; pass TEXT arguments, --file FILE, or pipe texts on stdin")
    if replaced:
        warn(f"{where(replaced)}: bytes that are not UTF-8 (or lone surrogates) were replaced by U+FFFD, "
             f"and the text classified so")
    if empty:
        warn(f"{where(empty)}: empty or whitespace-only, not classified (blank rows)")


def snippet(text: str, width: int = 60) -> str:
    """One-line preview: snippet('a\\tb\\nc', 60) -> 'a b c'; longer texts are cut and end with '…'."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_prediction(text: str, prediction: dict[str, Any], as_json: bool) -> str:
    """A TSV line `label<TAB>probability<TAB>snippet`; multi-label: `a|b<TAB>lowest chosen probability<TAB>snippet`
    (the highest probability when no label is chosen); regression: `value<TAB>snippet`. With as_json, a JSON
    line with the full text and the prediction (probabilities rounded to 6 decimals). A text that was not
    classified (blank_prediction: every field None) gives empty fields, or nulls in JSON."""
    if as_json:
        out = {"text": text, **prediction}
        if prediction.get("probabilities") is not None:
            out["probabilities"] = {name: round(p, 6) for name, p in prediction["probabilities"].items()}
        return json.dumps(out, ensure_ascii=False)
    if "value" in prediction:
        value = prediction["value"]
        return f"{'' if value is None else format(value, '.6g')}\t{snippet(text)}"
    if prediction.get("probabilities") is None:  # a text that was not classified (blank_prediction)
        return f"\t\t{snippet(text)}"
    if "labels" in prediction:
        chosen = prediction["labels"]
        lowest = min((prediction["probabilities"][n] for n in chosen), default=max(prediction["probabilities"].values()))
        return f"{'|'.join(chosen)}\t{lowest:.4f}\t{snippet(text)}"
    label = prediction["label"]
    return f"{label}\t{prediction['probabilities'][label]:.4f}\t{snippet(text)}"
