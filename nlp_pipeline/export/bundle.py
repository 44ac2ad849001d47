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
                        and blend weight, sha256 of the other files, and config_sha256: the sha256 of its own
                        values (config_checksum), so a hand-edited max_length or blend weight is refused
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
rules and net definitions), not only torch. Format: one current version (FORMAT_VERSION); a bundle of any other
version, or without config_sha256, is refused with a one-line error naming the command that re-exports it.
Loading checks every config.json field's type and range and the weights' safetensors header against the file
and the arch before anything is built (see Classifier.load), so no value allocates more than the weights hold.
"""

from __future__ import annotations

import codecs
import collections
import hashlib
import io
import json
import math
import os
import re
import select
import stat
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from nlp_pipeline import __version__
from nlp_pipeline.artifacts import ClassifierResult, Vocab
from nlp_pipeline.core.atomic import replace_folder
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError
from nlp_pipeline.core.hashing import file_sha256
from nlp_pipeline.rules import replace_surrogates

FORMAT = "nlp-pipeline-classifier"   # config.json "format": what kind of folder this is
FORMAT_VERSION = 6                   # bumped when the layout or a file's meaning changes; loaders refuse every other
                                     # (6: written from the blend stage's result; config_sha256 required)
METRIC_KEYS = ("accuracy", "macro_f1", "micro_f1", "subset_accuracy", "r2", "rmse", "mae", "n")  # copied into config.json
WEIGHTS_FILE = "model.safetensors"
LINEAR_FILE = "linear.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
TOKENIZER_FILE = "tokenizer.json"
CHECKED_FILES = (WEIGHTS_FILE, VOCAB_FILE, TOKENIZER_FILE)  # their sha256 is recorded in config.json
CONFIG_CHECKSUM = "config_sha256"   # config.json's own checksum (config_checksum): required
MAX_LENGTH = 1_000_000               # what config.json may hold: larger values are no bundle this package wrote
MAX_VOCAB = 10_000_000
MAX_DIM = 1 << 16                    # embedding, hidden and head widths
MAX_LAYERS = 32
MAX_MEMBERS = 64
MAX_HEADER = 100_000_000             # bytes of a safetensors header (safetensors' own limit)
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
    from nlp_pipeline.tokenizer import TokenizationConfig, settings_of

    try:
        return settings_of(TokenizationConfig(**dict(settings)))
    except TypeError as exc:  # an unknown field name
        raise DataError(f"tokenizer settings do not fit this nlp-pipeline ({exc}); re-export with {EXPORT_HINT}") from None


def _is_bundle_dir(path: Path) -> bool:
    try:
        return json.loads((path / CONFIG_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_bundle(result: ClassifierResult, out_dir: str | Path) -> Path:
    """Write `result` as a bundle folder at out_dir and return its path.

    The folder is built under a hidden sibling and renamed into place (core.atomic.replace_folder: umask modes, an
    OSError is one OutputError naming out_dir), so a reader never sees half a bundle. An existing out_dir is
    replaced only if it is empty or an earlier bundle; any other folder or a file there is a ConfigError (nothing
    of the user's is deleted).
    """
    from nlp_pipeline.models.lm_file import write_safetensors

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

    def fill(tmp: Path) -> None:
        # copies: the artifact's arrays may be read-only memory maps of the cache, and safetensors wants C order
        tensors = {name: np.array(value, copy=True, order="C") for name, value in result.state_dict.items()}
        write_safetensors(tmp / WEIGHTS_FILE, tensors, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        checked = list(CHECKED_FILES)
        if result.linear is not None:
            write_safetensors(tmp / LINEAR_FILE, {k: np.array(v, copy=True, order="C") for k, v in result.linear.arrays().items()})
            checked.append(LINEAR_FILE)
        _write_json(tmp / VOCAB_FILE, {"itos": list(result.vocab.itos), "unk_token": result.vocab.unk_token})
        _write_json(tmp / TOKENIZER_FILE, tokenizer)
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "nlp_pipeline_version": __version__,
            "arch": dict(result.arch),
            "label_names": list(result.label_names),
            "max_length": int(result.max_length),
            "linear": result.linear.settings() if result.linear is not None else None,
            "metrics": {split: {k: v for k, v in result.metrics[split].items() if k in METRIC_KEYS}
                        for split in ("validation", "test") if isinstance(result.metrics.get(split), dict)},
            "files": {name: file_sha256(tmp / name) for name in checked},
        }
        _write_json(tmp / CONFIG_FILE, seal_config(config))  # last: a folder with config.json is complete

    replace_folder(out_dir, fill)
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


def config_checksum(config: dict[str, Any]) -> str:
    """sha256 of config.json's values without its own checksum: of their JSON with sorted keys, ASCII escapes and
    no spaces, so the file's layout does not matter but any changed value does."""
    body = {key: value for key, value in config.items() if key != CONFIG_CHECKSUM}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def seal_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with its checksum (CONFIG_CHECKSUM) set, as save_bundle writes it."""
    return {**{key: value for key, value in config.items() if key != CONFIG_CHECKSUM}, CONFIG_CHECKSUM: config_checksum(config)}


class _ConfigCheck:
    """Type and range checks of config.json's fields; each failure is a one-line DataError naming the field, its
    value and what is valid."""

    def __init__(self, folder: Path):
        self.folder = folder

    def fail(self, field: str, value: Any, valid: str) -> DataError:
        try:
            shown = json.dumps(value, ensure_ascii=True)
        except (TypeError, ValueError):
            shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:59] + "…"
        return DataError(f"bundle {self.folder}: {CONFIG_FILE} field {field} is {shown}; valid: {valid}; "
                         f"re-export the bundle with {EXPORT_HINT}")

    def table(self, parent: dict, key: str, field: str, optional: bool = False) -> dict | None:
        value = parent.get(key)
        if value is None and optional:
            return None
        if key not in parent:
            raise DataError(f"{self.folder / CONFIG_FILE} has no {field!r} field; re-export the bundle with {EXPORT_HINT}")
        if not isinstance(value, dict):
            raise self.fail(field, value, "a JSON object" + (" or null" if optional else ""))
        return value

    def integer(self, parent: dict, key: str, field: str, low: int, high: int, default: int | None = None) -> int:
        if key not in parent and default is not None:
            return default
        if key not in parent:
            raise DataError(f"{self.folder / CONFIG_FILE} has no {field!r} field; re-export the bundle with {EXPORT_HINT}")
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(field, value, f"{low}" if low == high else f"an integer from {low} to {high}")
        return value

    def number(self, parent: dict, key: str, field: str, low: float, high: float, default: float,
               above: bool = False) -> float:
        value = parent.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (low < value if above else low <= value) or value > high:
            bound = "above" if above else "from"
            raise self.fail(field, value, f"a finite number {bound} {low:g}" + ("" if math.isinf(high) else f" to {high:g}"))
        return float(value)

    def flag(self, parent: dict, key: str, field: str) -> bool:
        value = parent.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(field, value, "true or false")
        return value

    def choice(self, parent: dict, key: str, field: str, choices: Sequence[str], default: str | None = None) -> str:
        value = parent.get(key, default)
        if value not in choices or not isinstance(value, str):
            raise self.fail(field, value, " or ".join(repr(c) for c in choices))
        return value


def _check_config(folder: Path, config: Any) -> None:
    """Refuse a config.json that is not a readable bundle's: another format or version, a changed value (its
    checksum, required), or any field of the wrong type or out of range. Sizes are bounded here (and checked against the weights' header later), so nothing
    is allocated from a value that was never trained."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataError(f"{folder / CONFIG_FILE} is not an nlp-pipeline classifier bundle (format {FORMAT!r} expected)")
    check = _ConfigCheck(folder)
    version = config.get("format_version")
    if isinstance(version, bool):
        raise check.fail("format_version", version, f"the integer {FORMAT_VERSION}")
    if version != FORMAT_VERSION:
        made_by = config.get("nlp_pipeline_version", "?")
        raise DataError(
            f"bundle made by nlp-pipeline {made_by} (format {version}); this is {__version__} (format {FORMAT_VERSION}): "
            f"re-export it with nlp-pipeline {__version__}: {EXPORT_HINT}, or load it with nlp-pipeline {made_by}"
        )
    if config.get(CONFIG_CHECKSUM) != config_checksum(config):
        raise DataError(f"bundle {folder}: {CONFIG_FILE} was changed after export (its checksum {CONFIG_CHECKSUM} no "
                        f"longer matches its values); re-export the bundle with {EXPORT_HINT}")
    for key in ("arch", "label_names", "max_length", "files"):
        if key not in config:
            raise DataError(f"{folder / CONFIG_FILE} has no {key!r} field; re-export the bundle with {EXPORT_HINT}")
    check.integer(config, "max_length", "max_length", 1, MAX_LENGTH)
    arch = check.table(config, "arch", "arch")
    vocab_size = check.integer(arch, "vocab_size", "arch.vocab_size", 1, MAX_VOCAB)
    for key in ("embedding_dim", "hidden_dim", "head_hidden_dim"):
        check.integer(arch, key, f"arch.{key}", 1, MAX_DIM)
    check.integer(arch, "num_layers", "arch.num_layers", 1, MAX_LAYERS)
    check.choice(arch, "rnn_type", "arch.rnn_type", ("lstm", "gru"))
    check.integer(arch, "pad_id", "arch.pad_id", 0, vocab_size - 1)
    target_type = check.choice(arch, "target_type", "arch.target_type", ("class", "multi_label", "regression"), "class")
    regression = target_type == "regression"
    num_classes = check.integer(arch, "num_classes", "arch.num_classes", 1 if regression else 2, 1 if regression else MAX_VOCAB)
    check.number(arch, "threshold", "arch.threshold", 0.0, 1.0, 0.5)
    check.number(arch, "target_mean", "arch.target_mean", -math.inf, math.inf, 0.0)
    check.number(arch, "target_std", "arch.target_std", 0.0, math.inf, 1.0, above=True)
    check.flag(arch, "backward", "arch.backward")
    members = check.integer(arch, "members", "arch.members", 1, MAX_MEMBERS, default=1)
    directions = arch.get("backward_members")
    if directions is not None and (not isinstance(directions, list) or len(directions) != members
                                   or not all(isinstance(d, bool) for d in directions)):
        raise check.fail("arch.backward_members", directions, f"a list of {members} true/false (one per member)")
    labels = config["label_names"]
    if (not isinstance(labels, list) or len(labels) != num_classes or len(set(map(str, labels))) != len(labels)
            or not all(isinstance(name, str) and name for name in labels)):
        raise check.fail("label_names", labels, f"a list of {num_classes} distinct non-empty names, one per output "
                                                f"(arch.num_classes)")
    linear = check.table(config, "linear", "linear", optional=True)
    if linear is not None:
        check.integer(linear, "vocab_size", "linear.vocab_size", vocab_size, vocab_size)
        check.integer(linear, "n_classes", "linear.n_classes", num_classes, num_classes)
        check.integer(linear, "ngrams", "linear.ngrams", 1, 3)
        char_ngrams = check.integer(linear, "char_ngrams", "linear.char_ngrams", 0, 6, default=0)
        if char_ngrams in (1, 2):
            raise check.fail("linear.char_ngrams", char_ngrams, "0 (none) or 3 to 6")
        check.integer(linear, "pad_id", "linear.pad_id", -1, vocab_size - 1, default=-1)
        check.number(linear, "C", "linear.C", 0.0, math.inf, 1.0, above=True)
        check.number(linear, "weight", "linear.weight", 0.0, 1.0, 0.0)
        check.flag(linear, "nb", "linear.nb")
    files = check.table(config, "files", "files")
    for name, digest in files.items():
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise check.fail(f"files.{name}", digest, "a sha256 as 64 hexadecimal digits")
    check.table(config, "metrics", "metrics", optional=True)
    if not isinstance(config.get("nlp_pipeline_version", ""), str):
        raise check.fail("nlp_pipeline_version", config["nlp_pipeline_version"], "a version string")


_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a safetensors file's header declares, checked against the file before anything is
    allocated: a header length within the file (and at most MAX_HEADER bytes), known dtypes, non-negative
    dimensions, and data offsets that lie in the file and hold exactly shape x dtype bytes. DataError otherwise."""
    def refuse(what: str) -> DataError:
        return DataError(f"bundle weights {path} are not a valid safetensors file ({what}); re-export the bundle "
                         f"with {EXPORT_HINT}")

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise refuse(f"{size} bytes, shorter than the 8-byte header length")
            length = int.from_bytes(prefix, "little")
            if length > min(size - 8, MAX_HEADER):
                raise refuse(f"its header claims {length:,} bytes in a file of {size:,}")
            header = json.loads(handle.read(length).decode("utf-8"))
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    except (UnicodeDecodeError, ValueError):
        raise refuse("its header is not JSON") from None
    if not isinstance(header, dict):
        raise refuse("its header is not a JSON object")
    data_bytes = size - 8 - length
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shown = str(name)[:60]
        if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPE_BYTES:
            raise refuse(f"tensor {shown} has no known dtype")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise refuse(f"tensor {shown} has shape {str(shape)[:60]}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_bytes):
            raise refuse(f"tensor {shown} claims bytes {str(offsets)[:60]} of the {data_bytes:,} the file holds")
        if math.prod(shape) * _DTYPE_BYTES[entry["dtype"]] != offsets[1] - offsets[0]:
            raise refuse(f"tensor {shown} of shape {shape} does not fill its {offsets[1] - offsets[0]:,} bytes")
        shapes[name] = tuple(shape)
    return shapes


# In-place initialisers that change values, never shapes: skipped on shape-only (meta) tensors, where some of them
# (normal_) would otherwise import torch's compiler stack, a second or two, to compute nothing.
_VALUE_INITIALISERS = frozenset({"normal_", "uniform_", "zero_", "zeros_", "ones_", "fill_", "constant_", "copy_",
                                 "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_",
                                 "trunc_normal_", "orthogonal_"})


def _state_shapes(arch: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of the classifier `arch` builds, computed on torch's meta device: no memory is
    allocated whatever sizes arch holds, and initialisers are skipped (shapes are all that is kept)."""
    import torch
    from torch.overrides import TorchFunctionMode

    from nlp_pipeline.models.heads import build_classifier

    class ShapesOnly(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            target = args[0] if args else kwargs.get("tensor")
            if (getattr(func, "__name__", "") in _VALUE_INITIALISERS and isinstance(target, torch.Tensor)
                    and target.is_meta):
                return target
            return func(*args, **kwargs)

    with torch.device("meta"), ShapesOnly():
        return {name: tuple(t.shape) for name, t in build_classifier(arch).state_dict().items()}


def _check_arch_against_weights(folder: Path, arch: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    """config.json's arch must describe exactly the tensors of model.safetensors: its members count, then every
    tensor shape of the net the arch builds (_state_shapes: shapes only, no memory)."""
    check = _ConfigCheck(folder)
    members = len({name.split(".")[1] for name in shapes if name.startswith("members.")}) or 1
    if arch.get("members", 1) != members:
        raise check.fail("arch.members", arch.get("members", 1), f"{members}, the members {WEIGHTS_FILE} holds")
    try:
        expected = _state_shapes(arch)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(f"bundle {folder}: config.json's arch does not build a classifier ({reason}); "
                        f"re-export the bundle with {EXPORT_HINT}") from None
    if expected != shapes:
        name = next((n for n in sorted(expected.keys() | shapes.keys()) if expected.get(n) != shapes.get(n)))
        dims = ", ".join(f"{key} {arch.get(key)}" for key in ("vocab_size", "embedding_dim", "hidden_dim",
                                                               "num_layers", "rnn_type", "head_hidden_dim", "num_classes"))
        raise DataError(f"bundle {folder}: config.json's arch ({dims}) does not fit {WEIGHTS_FILE}: tensor {name} is "
                        f"{shapes.get(name, 'missing')} there but {expected.get(name, 'not part of that net')} by the "
                        f"arch; re-export the bundle with {EXPORT_HINT}")


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


def _read_vocab(folder: Path) -> Vocab:
    """vocab.json as a Vocab: distinct token strings (at most MAX_VOCAB), holding its unknown token and xxpad."""
    data = _read_json(folder, VOCAB_FILE)
    itos = data.get("itos") if isinstance(data, dict) else None
    unk = data.get("unk_token", "xxunk") if isinstance(data, dict) else None
    if (not isinstance(itos, list) or not 0 < len(itos) <= MAX_VOCAB or not all(isinstance(t, str) for t in itos)
            or not isinstance(unk, str)):
        raise DataError(f"bundle {folder}: {VOCAB_FILE} does not hold a list of token strings ('itos') and an "
                        f"'unk_token'; re-export the bundle with {EXPORT_HINT}")
    if len(set(itos)) != len(itos):
        twice = next(token for token, n in collections.Counter(itos).items() if n > 1)
        raise DataError(f"bundle {folder}: {VOCAB_FILE} lists the token {twice[:40]!r} twice; re-export the bundle "
                        f"with {EXPORT_HINT}")
    vocab = Vocab(itos, unk)
    for needed in (vocab.unk_token, "xxpad"):
        if needed not in vocab.stoi:
            raise DataError(f"bundle {folder}: the vocabulary has no {needed!r} token; re-export it with {EXPORT_HINT}")
    return vocab


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
        from nlp_pipeline.tokenizer import TokenizationConfig

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
        differs from config.json's, a config.json changed after export (its own checksum), a config, vocabulary
        or tokenizer value of the wrong type or out of range (named with its valid range), a safetensors header
        whose sizes do not fit its file, JSON that does not parse, another format version, an arch that does not
        describe the weights, or a vocabulary that does not fit the embedding ("LM/vocab mismatch"). All of it
        is checked before the net is built, so no size in config.json allocates anything the weights do not hold.
        """
        from nlp_pipeline.models.device import choose_device, resolve_precision
        from nlp_pipeline.models.heads import build_classifier, embedding_weight

        folder = resolve_bundle_dir(path)
        config = _read_json(folder, CONFIG_FILE)
        _check_config(folder, config)
        linear_settings = config.get("linear")
        _check_files(folder, config["files"], CHECKED_FILES + ((LINEAR_FILE,) if linear_settings else ()))
        vocab = _read_vocab(folder)
        tokenizer = _read_json(folder, TOKENIZER_FILE)
        try:
            if not isinstance(tokenizer, dict):
                raise ConfigError("it is not a JSON object")
            tokenizer = full_tokenizer_settings(tokenizer)
        except (ConfigError, DataError) as exc:
            raise DataError(f"bundle {folder}: {TOKENIZER_FILE} does not hold usable tokenizer settings ({exc}); "
                            f"re-export the bundle with {EXPORT_HINT}") from None
        arch, labels = dict(config["arch"]), list(config["label_names"])
        shapes = safetensors_shapes(folder / WEIGHTS_FILE)
        embedding = embedding_weight(shapes)  # its shape, here
        rows = None if embedding is None or len(embedding) != 2 else embedding[0]
        if rows != len(vocab) or arch["vocab_size"] != len(vocab):
            raise DataError(f"LM/vocab mismatch in bundle {folder}: {VOCAB_FILE} has {len(vocab)} tokens, the embedding "
                            f"{rows} rows, config.json says vocab_size {arch['vocab_size']}; re-export it with {EXPORT_HINT}")
        _check_arch_against_weights(folder, arch, shapes)  # before building: the arch's sizes are the weights' now
        state = _read_weights(folder / WEIGHTS_FILE)
        try:
            model = build_classifier(arch)
            model.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise DataError(f"bundle {folder}: the weights do not fit config.json's arch ({reason}); re-export it") from None
        linear = None
        if linear_settings:
            from nlp_pipeline.models.linear import LinearModel

            safetensors_shapes(folder / LINEAR_FILE)  # sizes checked against the file before reading it
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
        return cls(model.to(torch_device), vocab, labels, config["max_length"], tokenizer, torch_device, dtype, folder,
                   config, linear)

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
        from nlp_pipeline.tokenizer import tokenize_texts

        docs = []
        for tokens in tokenize_texts(self._tokenizer, texts):
            ids = self.vocab.encode(tokens[: self.max_length])
            docs.append(ids if len(ids) else self._empty)
        return docs

    def _outputs(self, items: list[str], batch_size: int) -> np.ndarray:
        """The one prediction path: (n_texts, n_outputs) float32 probabilities (or values), in input order.
        Texts are tokenized, encoded, length-sorted into padded batches of batch_size and put back in order."""
        import torch

        from nlp_pipeline.models.blend import blend_in
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
