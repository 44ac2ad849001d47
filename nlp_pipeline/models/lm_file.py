"""A language model as a portable folder: no pickle, readable without this package's cache.

    save_lm_folder(lm, "my_lm/")          # LanguageModel -> my_lm/{model.safetensors, vocab.json, config.json}
    load_lm_folder("my_lm/")              # -> LanguageModel (float32 weights), checked file by file
    lm_folder_fingerprint("my_lm/")       # {"format_version": 1, "sha256": {...}}: what a cache key needs

Takes a LanguageModel artifact (an AWD-LSTM/GRU with tied or untied decoder); writes the weights in
safetensors (float16 by default: half the bytes, about 3 decimal digits kept; float32 on request), the
vocabulary as a JSON list, and config.json holding the architecture, the tokenizer settings, the training
metrics and each file's sha256 (arch.backward = true marks an LM that reads texts right to left). The tied
decoder weight is stored once (it is the embedding).
Limits: one format version (1); a folder of another version, with a file whose sha256 differs from
config.json's, or with shapes that do not fit the architecture is refused with a one-line DataError.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from nlp_pipeline.artifacts import LanguageModel, Vocab
from nlp_pipeline.core.atomic import replace_folder
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError
from nlp_pipeline.core.hashing import file_sha256

FORMAT = "nlp-pipeline-language-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
CONFIG_FILE = "config.json"
FILES = (WEIGHTS_FILE, VOCAB_FILE)            # checksummed in config.json
ARCH_FIELDS = {"vocab_size": int, "embedding_dim": int, "hidden_dim": int, "num_layers": int, "rnn_type": str,
               "pad_id": int, "tie_weights": bool}
OPTIONAL_ARCH_FIELDS = {"backward": bool}     # written only when true
MAX_DIM = 1 << 16                             # larger sizes are not a model this package trains: a damaged file
MAX_VOCAB = 1 << 22


PACKAGED = "packaged"                        # pretrain_lm.weights value naming the LM shipped in this package
PACKAGED_DIR = ("pretrained", "english")      # its folder inside the nlp_pipeline package
PACKAGED_BACKWARD_DIR = ("pretrained", "english_backward")  # the backward one (classifier.direction = backward/both)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write tensors as a safetensors file at path, serialized in memory and written by Python, so a full disk or
    a file-size limit is an OSError like any other write (safetensors' own writer raises its own error type)."""
    from safetensors.numpy import save

    data = save(tensors, metadata=metadata)
    with open(path, "wb") as handle:
        handle.write(data)


def resolve_lm_path(value: str, backward: bool = False) -> Path:
    """The folder a pretrain_lm.weights value names: "packaged" -> the package's own LM (its backward one with
    backward=True), else the path itself.

    resolve_lm_path("~/lms/x") -> Path('/home/me/lms/x'); a missing packaged LM is a MissingInputError.
    """
    if value == PACKAGED:
        from importlib import resources

        folder = Path(str(resources.files("nlp_pipeline").joinpath(*(PACKAGED_BACKWARD_DIR if backward else PACKAGED_DIR))))
        if not (folder / CONFIG_FILE).is_file():
            which = "backward " if backward else ""
            field = "backward_weights" if backward else "weights"
            raise MissingInputError(f"this installation has no packaged {which}language model ({folder}); reinstall "
                                    f"nlp-pipeline, or set pretrain_lm.{field} = \"none\" to pretrain one on pretrain_lm.corpus")
        return folder
    return Path(value).expanduser()


def _json_safe(value: Any) -> Any:
    """Metrics as strict JSON: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_lm_folder(lm: LanguageModel, out_dir: str | Path, dtype: str = "float16", overwrite: bool = False) -> dict:
    """Write `lm` as a folder at out_dir, whole or not at all (core.atomic.replace_folder; files fsynced; an
    OSError is one OutputError naming out_dir).

    dtype "float16" or "float32". An existing out_dir is replaced only with overwrite=True and only when it
    is an LM folder or empty; anything else is a ConfigError (nothing of the user's is deleted).
    Returns {"out_dir", "bytes", "parameters", "vocab_size", "dtype"}.
    """
    if dtype not in ("float16", "float32"):
        raise ConfigError(f"LM export dtype must be float16 or float32, got {dtype!r}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        is_lm = out_dir.is_dir() and (out_dir / CONFIG_FILE).is_file() and (out_dir / WEIGHTS_FILE).is_file()
        empty = out_dir.is_dir() and not any(out_dir.iterdir())
        if not (empty or (is_lm and overwrite)):
            why = "pass --overwrite to replace it" if is_lm else "it is not an exported language model; choose another path"
            raise ConfigError(f"{out_dir} already exists; {why}")
    state = {k: np.asarray(v) for k, v in lm.state_dict.items()}
    tied = bool(lm.arch.get("tie_weights", True))
    if tied:
        state.pop("decoder.weight", None)
    target = np.float16 if dtype == "float16" else np.float32
    tensors = {}
    for name, value in state.items():
        if value.dtype.kind == "f":
            if target == np.float16 and np.abs(value).max(initial=0.0) > np.finfo(np.float16).max:
                raise DataError(f"weight {name} exceeds float16's range; export with --dtype float32")
            value = value.astype(target)
        tensors[name] = np.array(value, copy=True, order="C")
    def fill(tmp: Path) -> None:
        # one metadata entry: safetensors orders several at random, and the file's bytes must not change between exports
        write_safetensors(tmp / WEIGHTS_FILE, tensors, metadata={"format": f"{FORMAT}/{FORMAT_VERSION}"})
        (tmp / VOCAB_FILE).write_text(json.dumps({"itos": list(lm.vocab.itos), "unk_token": lm.vocab.unk_token},
                                                 ensure_ascii=False), encoding="utf-8")
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": {**{k: lm.arch[k] for k in ARCH_FIELDS if k in lm.arch},
                     **{k: lm.arch[k] for k in OPTIONAL_ARCH_FIELDS if lm.arch.get(k)}},
            "dtype": dtype,
            "tokenizer": _json_safe(dict(lm.tokenizer)),
            "metrics": _json_safe(dict(lm.metrics)),
            "history": _json_safe(list(lm.history)),
            "files": {name: file_sha256(tmp / name) for name in FILES},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        for p in tmp.iterdir():
            with open(p, "rb") as handle:
                os.fsync(handle.fileno())

    replace_folder(out_dir, fill)
    size = sum((out_dir / n).stat().st_size for n in (*FILES, CONFIG_FILE))
    return {"out_dir": str(out_dir), "bytes": size, "parameters": int(sum(v.size for v in tensors.values())),
            "vocab_size": len(lm.vocab), "dtype": dtype}


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise MissingInputError(f"language model folder {folder} does not exist; write one with: nlp-pipeline export lm --out {folder}")
    if not path.is_file():
        raise MissingInputError(f"{folder} has no {CONFIG_FILE}, so it is not an exported language model; "
                                f"write one with: nlp-pipeline export lm --out DIR")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); export the language model again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataError(f"{path} is not an nlp-pipeline language model config; export the language model again")
    if config.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{folder} is language-model format {config.get('format_version')!r}; this nlp-pipeline reads "
                        f"format {FORMAT_VERSION} only: export it again with this version")
    files = config.get("files")
    if not isinstance(files, dict) or set(files) != set(FILES):
        raise DataError(f"{path} does not list the sha256 of {', '.join(FILES)}; export the language model again")
    arch = config.get("arch")
    if not isinstance(arch, dict):
        raise DataError(f"{path} has no arch table; export the language model again")
    for name, kind in ARCH_FIELDS.items():
        value = arch.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DataError(f"{path}: arch.{name} must be a {kind.__name__}, got {value!r}; export the language model again")
    for name, kind in OPTIONAL_ARCH_FIELDS.items():
        if name in arch and not isinstance(arch[name], kind):
            raise DataError(f"{path}: arch.{name} must be a {kind.__name__}, got {arch[name]!r}; export the language model again")
    if arch["rnn_type"] not in ("lstm", "gru"):
        raise DataError(f"{path}: arch.rnn_type must be lstm or gru, got {arch['rnn_type']!r}")
    for name in ("embedding_dim", "hidden_dim", "num_layers"):
        if not 1 <= arch[name] <= MAX_DIM:
            raise DataError(f"{path}: arch.{name} = {arch[name]} is out of range (1..{MAX_DIM})")
    if not 2 <= arch["vocab_size"] <= MAX_VOCAB or not 0 <= arch["pad_id"] < arch["vocab_size"]:
        raise DataError(f"{path}: arch.vocab_size / pad_id out of range ({arch['vocab_size']}, {arch['pad_id']})")
    return config


def lm_folder_fingerprint(path: str | Path) -> dict:
    """What identifies an exported LM for a cache key: its format version and its files' sha256 (from
    config.json, checked against the files themselves), never its path."""
    folder = Path(path).expanduser()
    config = _read_config(folder)
    _check_files(folder, config)
    return {"format_version": FORMAT_VERSION, "sha256": {**config["files"], CONFIG_FILE: file_sha256(folder / CONFIG_FILE)}}


def _check_files(folder: Path, config: dict) -> None:
    for name in FILES:
        path = folder / name
        if not path.is_file():
            raise MissingInputError(f"{folder} has no {name}; the language model folder is incomplete: export it again")
        if file_sha256(path) != config["files"][name]:
            raise DataError(f"{path} does not match the sha256 in {CONFIG_FILE} (corrupted or edited); export it again")


def load_lm_folder(path: str | Path) -> LanguageModel:
    """The LanguageModel saved by save_lm_folder, weights as float32 numpy arrays (the tied decoder weight
    restored under its own name). One-line errors for every problem (see the module docstring)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(path).expanduser()
    config = _read_config(folder)
    _check_files(folder, config)
    try:
        vocab_json = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{folder}: the weights or vocabulary cannot be read ({str(exc).splitlines()[0][:200]}); "
                        f"export the language model again") from None
    itos = vocab_json.get("itos") if isinstance(vocab_json, dict) else None
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise DataError(f"{folder / VOCAB_FILE} has no list of token strings 'itos'; export the language model again")
    arch = dict(config["arch"])
    vocab = Vocab(itos, vocab_json.get("unk_token", "xxunk"))
    if len(itos) != arch["vocab_size"] or vocab.unk_token not in vocab.stoi:
        raise DataError(f"{folder}: {VOCAB_FILE} has {len(itos)} tokens but arch.vocab_size is {arch['vocab_size']} "
                        f"(or lacks its unknown token); export the language model again")
    state = {k: np.asarray(v, dtype=np.float32) if v.dtype.kind == "f" else np.asarray(v) for k, v in tensors.items()}
    if arch["tie_weights"]:
        if "decoder.weight" in state or "encoder.embedding.weight" not in state:
            raise DataError(f"{folder}: a tied model stores the embedding once; export the language model again")
        state["decoder.weight"] = state["encoder.embedding.weight"]
    _check_shapes(folder, arch, state)
    return LanguageModel(arch=arch, state_dict=state, vocab=vocab, tokenizer=dict(config.get("tokenizer") or {}),
                         history=list(config.get("history") or []), metrics=dict(config.get("metrics") or {}))


def _check_shapes(folder: Path, arch: dict, state: dict[str, np.ndarray]) -> None:
    """Every tensor the architecture needs, with its shape; nothing else (a cheap check, before torch sees it)."""
    from nlp_pipeline.models.heads import build_language_model

    expected = {k: tuple(v.shape) for k, v in build_language_model(arch).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:2]
        raise DataError(f"{folder}: the weights do not fit the architecture in {CONFIG_FILE} (e.g. {diff}); "
                        f"export the language model again")
