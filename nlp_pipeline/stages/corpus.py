"""The `corpus` stage: read a labelled or unlabelled text collection into a Corpus artifact.

Takes a CorpusConfig whose `source` is one of
  - a corpus card name ("rotten_tomatoes", "trec6", ...: corpora/NAME.toml says where the data lives),
  - a folder of split files: train / dev / test / unsup as .jsonl, .json, .csv, .tsv or .parquet
    (optionally .gz/.bz2/.xz; Hugging Face shards like train-00000-of-00002.parquet too; unsup.txt as lines),
  - a single such file, split into train/test by a seeded stratified split,
  - a label-folder tree: aclImdb style (train/pos/*.txt, test/neg/*.txt, train/unsup/*.txt; one file = one
    document) or flat (pos/*.txt, neg/*.txt, then split),
  - plain text (.txt/.tokens or a folder of them): unlabelled, one document per non-empty line, WikiText
    heading lines (' = Title = ') skipped; or a MediaWiki XML dump (.xml/.xml.bz2): one document per paragraph,
  - "hf:NAME[:CONFIG][@REVISION]": a Hugging Face Hub dataset through datasets.load_dataset,
and returns a Corpus: texts (stripped), labels, splits, and `info` (files and sha256s, rows read, dropped rows,
label counts or target statistics, the card's licence and published references). Texts without a label are
kept in split "unsup" for the language model. `target_type` (config, else the card's, else "class") says what a
label cell holds (artifacts.TARGET_TYPES gives the arrays):
  - "class": one name per text ("pos", 3 -> "3"; a Hub ClassLabel id -> its name); ids into sorted label names;
  - "multi_label": a set of names per text: a list cell (JSON array, Parquet list, Hub Sequence(ClassLabel)) as
    is, a text cell split on `label_separator` ("a, b" -> {a, b}); an empty list is the empty set;
  - "regression": one finite number per text (3, 2.5, "2.5"); label_names is [the label column's name].
An empty or missing cell (None, "", a NaN number) means unlabelled for every type; the text "nan" is no target.
A lone surrogate in a text or label (a broken JSON escape such as "\\ud83d": half a character, which no encoding
can write) becomes U+FFFD, in every format, with one warning. Warnings, not errors: class labels spelled both as
numbers and as text (1, "1" and 1.0 all read as the label "1"), and test texts that also appear in train.

A large unlabelled text corpus (plain-text files, a folder of them, wiki dumps, STREAM_MIN_BYTES = 64 MiB on disk
or more; a Hub dataset read with label_field = "" whose Arrow data is that large) is streamed: read one line at a time into a memory-mapped artifacts.TextColumn instead of a list, so a
500 MB text file needs memory per line, not per file (same texts, labels, splits and info as the list path).
executor = "ray" (set by the pipeline from tokenization.executor; in no key) parses the files on Ray Data actors
(core/ray_executor.py): one piece per file, label-folder documents in groups, plain text and large JSON-lines files
in blocks of whole lines (RAY_CHUNK_BYTES), each read with the functions the in-process path uses and merged here
in order, so the Corpus is the same byte for byte; a piece that fails on an actor is read again here to raise the
same error. A JSON-lines file's records are parsed on the actors but its columns are assembled here (memory per
file, as in process); CSV/TSV (quoted fields may span lines) and Parquet files are one piece each. A Hub
dataset is read here either way.
Limits: other corpora hold every text in memory (a Hub dataset too); the label of a folder tree is its folder name; a nested folder of plain
text files is read as label folders, not as text; a bare name is a card when one exists (write ./NAME for a
folder of that name); test/dev splits carved for multi_label and regression are seeded random, not stratified.
`corpus_fingerprint` hashes the contents of exactly the files that would be read (not their location), so
moving a data folder keeps the cache; for a Hub dataset it is the resolved commit, which needs the network (or
HF_HUB_OFFLINE=1 and a cached copy, keyed by name only).
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import re
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from nlp_pipeline.artifacts import SPLITS, TARGET_TYPES, UNLABELLED, Corpus
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError, NlpPipelineError
from nlp_pipeline.core.hashing import file_sha256
from nlp_pipeline.core.ray_executor import check_executor, describe_executor, map_chunks, resolve_workers
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.rules import replace_surrogates
from nlp_pipeline.stages import corpus_sources as sources

log = logging.getLogger("nlp_pipeline")

REPO_ROOT = Path(__file__).resolve().parents[2]  # the folder holding nlp_pipeline/ (and corpora/ in a checkout)
DEFAULT_CORPUS = "rotten_tomatoes"
TEXT_FIELDS = ("text", "sentence", "review", "content", "document", "body", "question", "tweet", "comment", "utterance")
LABEL_FIELDS = ("label", "labels", "category", "class", "sentiment", "polarity", "target", "coarse_label", "intent", "y")
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "dev": "dev", "valid": "dev", "validation": "dev", "val": "dev",
    "test": "test", "testing": "test",
    "unsup": "unsup", "unsupervised": "unsup", "unlabelled": "unsup", "unlabeled": "unsup",
}
_SHARD = re.compile(r"^(?P<split>[A-Za-z]+)[-_]\d+(?:-of-\d+)?$")   # train-00000-of-00002, test_1
_CARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_FILE_LIST_MAX = 64  # info lists each file up to this many; beyond, a count and a combined sha256
UNSPLIT = "not yet split"  # the info and warnings name rows read before any split is assigned so
VOLATILE = ("executor", "ray_address", "workers")  # where the files are parsed: not the output, so not in the key


@dataclass(frozen=True)
class CorpusConfig:
    source: str = DEFAULT_CORPUS     # corpus card name (`nlp-pipeline corpora` lists them), a path to a folder or file, or "hf:NAME[:CONFIG][@REVISION]"
    text_field: str | None = None    # column holding the text; None = the card's, else the first of text, sentence, review, content, ...
    label_field: str | None = None   # column holding the label; None = the card's, else the first of label, category, sentiment, ...; "" = unlabelled corpus
    encoding: str = "utf-8"          # text encoding of local text files (e.g. "cp1252", "latin-1"); Parquet and the Hub are always UTF-8
    test_size: float = 0.1           # share of train moved to test (of each label for class targets), only when the source has no test split
    dev_size: float = 0.0            # share of train moved to dev (of each label for class targets) when the source has no dev split (0 = none: later stages carve their own)
    seed: int = 0                    # seed of those splits and of the max_documents sample
    max_documents: int | None = None  # keep a seeded sample of at most this many documents, stratified by split (and label, for class targets) (quick runs); None = all
    max_labelled: int | None = None  # keep the labels of a seeded sample (stratified by label) of at most this many train documents; the other train and all dev documents become unlabelled text (few-label experiments); None = all
    target_type: str | None = None   # what a label is: "class", "multi_label" (a set of names) or "regression" (a number); None = the card's, else "class"
    label_separator: str = ","       # multi_label: a text cell is split on this ("a,b" -> {a, b}); list cells are taken as they are
    executor: str = "local"          # "local" or "ray": where the files are parsed; set by the pipeline from tokenization.executor (volatile)
    ray_address: str = ""            # set by the pipeline from tokenization.ray_address (volatile)
    workers: int = 0                 # Ray actors parsing (0 = min(4, CPU count)); set by the pipeline from tokenization.workers (volatile)

    def validate(self) -> None:
        import codecs

        if not self.source.strip():
            raise ConfigError("corpus.source is empty; give a card name (see `nlp-pipeline corpora`), a path, or hf:NAME")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(f"corpus.encoding {self.encoding!r} is not a known text encoding; try utf-8, cp1252 or latin-1") from None
        for name in ("test_size", "dev_size"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"corpus.{name} is {value}; it must be a fraction in [0, 1), e.g. 0.1")
        if self.max_labelled is not None and self.max_labelled < 2:
            raise ConfigError(f"corpus.max_labelled is {self.max_labelled}; give at least 2 labelled documents, or none for all")
        if self.max_documents is not None and self.max_documents < 1:
            raise ConfigError(f"corpus.max_documents is {self.max_documents}; give a positive number, or none for all documents")
        if self.target_type is not None and self.target_type not in TARGET_TYPES:
            raise ConfigError(f"corpus.target_type is {self.target_type!r}; use one of {', '.join(TARGET_TYPES)} (or none for the card's)")
        if not self.label_separator:
            raise ConfigError("corpus.label_separator is empty; give the text between labels of a multi_label cell, e.g. \",\"")
        if self.workers < 0:
            raise ConfigError(f"corpus.workers must be 0 (automatic) or more, got {self.workers}")
        check_executor("corpus", self.executor)


# --- corpus cards -------------------------------------------------------------------------------------------

CARD_KEYS = {
    "name": "corpus name, also the file name",
    "description": "one line on what the texts are",
    "task": "what the labels mean",
    "licence": "licence or terms of the data",
    "citation": "what to cite",
    "homepage": "where the data comes from",
    "labels": "expected label names (checked when loading)",
    "target_type": "what a label is: class, multi_label or regression (corpus.target_type overrides it)",
    "unlabelled_values": "label values that mark unlabelled rows (kept in split unsup)",
    "text_field": "column holding the text",
    "label_field": "column holding the label",
    "files": "split -> file name or list of names, relative to the source folder",
    "sources": "where to find the data, tried in order",
    "include": "instead of sources: other (unlabelled) cards whose documents this card concatenates, in order",
    "references": "published results: model, paper, metric, value, split, verified",
    "notes": "caveats such as contamination with other corpora",
}
SOURCE_KEYS = {
    "path": "a folder or file; ${VAR} expanded, relative to the folder holding corpora/",
    "package": "an installed distribution holding the data file",
    "file": "the file inside that distribution",
    "install_hint": "how to install the package when it is missing",
    "hf": "a Hugging Face Hub dataset name",
    "hf_config": "its configuration name",
    "revision": "its revision (branch, tag or commit)",
    "text_field": "column holding the text, for this source",
    "label_field": "column holding the label, for this source",
    "files": "split -> file names, for this source",
    "format": "the file's format when its name does not tell (jsonl, csv, tsv, parquet, text, wikidump, wiki_summaries, wordnet, dictd)",
    "rows": "a table's rows to keep: column -> value, e.g. { source = \"imdb\" } (every other row is never read)",
    "label_names": "names of an integer label column's values 0, 1, ...: label i is label_names[i]",
}
CARD_INFO_KEYS = ("name", "description", "task", "licence", "citation", "homepage", "references", "notes")


def data_root() -> Path:
    """NLP_PIPELINE_DATA if set, else <repo root>/../shared/data: the ${NLP_PIPELINE_DATA} of corpus cards."""
    env = os.environ.get("NLP_PIPELINE_DATA")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"


def card_dirs() -> list[Path]:
    """Where cards are searched, first match wins: $NLP_PIPELINE_CORPORA dirs, ./corpora, <repo root>/corpora,
    then the package's own corpora/ folder (for installed copies)."""
    dirs = [Path(p).expanduser() for p in os.environ.get("NLP_PIPELINE_CORPORA", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "corpora", REPO_ROOT / "corpora", Path(__file__).resolve().parents[1] / "corpora"]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def _card_paths() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in card_dirs():
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def _check_card(card: dict, path: Path) -> dict:
    unknown = sorted(set(card) - set(CARD_KEYS))
    if unknown:
        raise ConfigError(f"corpus card {path} has an unknown key {unknown[0]!r}; valid keys: {', '.join(CARD_KEYS)}")
    if "target_type" in card and card["target_type"] not in TARGET_TYPES:
        raise ConfigError(f"corpus card {path} has target_type {card['target_type']!r}; use one of {', '.join(TARGET_TYPES)}")
    if card.setdefault("name", path.stem) != path.stem:
        raise ConfigError(f"corpus card {path} is named {card['name']!r}; the name must match the file name {path.stem!r}")
    if "include" in card:
        if "sources" in card or not isinstance(card["include"], list) or not card["include"]:
            raise ConfigError(f"corpus card {path}: include must be a non-empty list of card names, and replaces [[sources]]")
        return card
    if not card.get("sources"):
        raise ConfigError(f"corpus card {path} has no [[sources]]; add one, e.g. path = \"${{NLP_PIPELINE_DATA}}/{path.stem}\"")
    for i, src in enumerate(card["sources"]):
        bad = sorted(set(src) - set(SOURCE_KEYS))
        if bad:
            raise ConfigError(f"corpus card {path}: sources[{i}] has an unknown key {bad[0]!r}; valid keys: {', '.join(SOURCE_KEYS)}")
        kinds = [k for k in ("path", "package", "hf") if k in src]
        if len(kinds) != 1 or ("package" in src) != ("file" in src):
            raise ConfigError(f"corpus card {path}: sources[{i}] needs exactly one of path, package (+ file) or hf")
        keep = src.get("rows")
        if "rows" in src and not (isinstance(keep, dict) and keep and all(isinstance(v, (str, int)) for v in keep.values())):
            raise ConfigError(f"corpus card {path}: sources[{i}].rows must be a table of column = value, "
                              f"e.g. rows = {{ source = \"imdb\" }}")
        names = src.get("label_names")
        if "label_names" in src and not (isinstance(names, list) and names and all(isinstance(n, str) and n.strip() for n in names)):
            raise ConfigError(f"corpus card {path}: sources[{i}].label_names must be a list of label names, "
                              f"e.g. [\"neg\", \"pos\"] for the values 0 and 1")
    return card


def read_card(name: str) -> dict:
    """The corpus card `name` as a dict (TOML tables), with `card_path` added; ConfigError listing cards if unknown."""
    paths = _card_paths()
    if name not in paths:
        available = ", ".join(sorted(paths)) or "none found"
        raise ConfigError(
            f"unknown corpus {name!r}: no card {name}.toml (available: {available}); "
            f"or pass a path to a folder or file, or hf:NAME"
        )
    path = paths[name]
    try:
        card = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"corpus card {path} is not valid TOML ({exc}); fix the file") from None
    card = _check_card(card, path)
    card["card_path"] = str(path)
    return card


def list_cards() -> dict[str, dict]:
    """Every card found, by name (first of each name in search order), each with `available`: where its data
    would be read from now (a path, 'hf:NAME (needs network ...)'), or None when no source is available."""
    out = {}
    for name in sorted(_card_paths()):
        card = read_card(name)
        card["available"] = card_location(name)
        out[name] = card
    return out


def card_location(name: str) -> str | None:
    """Where card `name`'s data would be read from now, or None (see list_cards)."""
    card = read_card(name)
    if "include" in card:
        parts = [card_location(n) for n in card["include"]]
        return None if None in parts else "; ".join(parts)
    chosen, _ = _choose_card_source(card)
    if chosen is None:
        return None
    return f"hf:{chosen[0]['hf']} (needs network or a cached copy)" if "hf" in chosen[0] else str(chosen[1])


def _expand(value: str) -> str | None:
    """'${NLP_PIPELINE_DATA}/trec6' -> '/work/shared/data/trec6'; None when a variable is unset."""
    def sub(match: re.Match) -> str:
        var = match.group(1) or match.group(2)
        if var == "NLP_PIPELINE_DATA":
            return str(data_root())
        if var not in os.environ:
            raise KeyError(var)
        return os.environ[var]

    try:
        return os.path.expanduser(re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, value))
    except KeyError:
        return None


def _choose_card_source(card: dict) -> tuple[tuple[dict, Path | None] | None, list[str]]:
    """The first available source of a card as (entry, local path or None for the Hub), and what was tried."""
    import importlib.metadata

    base = Path(card["card_path"]).resolve().parent.parent
    tried: list[str] = []
    for src in card["sources"]:
        if "path" in src:
            expanded = _expand(src["path"])
            if expanded is None:
                tried.append(f"{src['path']} (variable unset)")
                continue
            path = Path(expanded)
            path = path if path.is_absolute() else base / path
            if path.exists():
                return (src, path.resolve()), tried
            tried.append(str(path))
        elif "package" in src:
            try:
                path = Path(importlib.metadata.distribution(src["package"]).locate_file(src["file"]))
            except importlib.metadata.PackageNotFoundError:
                tried.append(f"package {src['package']} (not installed)")
                continue
            if path.is_file():
                return (src, path), tried
            tried.append(f"{src['file']} in package {src['package']} (missing)")
        else:
            return (src, None), tried
    return None, tried


# --- resolving a source to the files it reads ---------------------------------------------------------------

@dataclass
class _Part:
    """One unit to read: a table file, a text file, a wiki dump, one label-folder document, or a Hub split."""

    kind: str                  # "table" | "text" | "wikidump" | a PARAGRAPH_READERS format | "document" | "hub"
    split: str | None          # train/dev/test/unsup, or None: split later (single file, flat label folders)
    path: Path | None = None   # the file read (None for the Hub)
    rel: str = ""              # its name relative to the source root: part of the fingerprint
    label: str | None = None   # the label of a label-folder document
    fmt: str | None = None     # jsonl / csv / tsv / parquet / text / wikidump


@dataclass
class _Plan:
    """What a config resolves to, computed without reading any data file."""

    name: str                          # Corpus.name
    layout: str                        # how the source was understood, e.g. "split files", "aclImdb label folders"
    location: str                      # the folder, file or hub id, for messages and info
    parts: list[_Part] = field(default_factory=list)
    text_field: str | None = None      # explicit field, or None to auto-detect
    label_field: str | None = None     # explicit field, None to auto-detect, "" for none
    unlabelled_values: tuple[str, ...] = ()
    target_type: str = "class"         # one of TARGET_TYPES: how label cells are read
    label_separator: str = ","         # multi_label: what a text cell is split on
    card: dict | None = None           # the card, when the source is a card name
    card_source: dict | None = None    # the card's chosen [[sources]] entry
    hub: dict | None = None            # {"name", "config", "revision"} for a Hub dataset
    ignored: list[str] = field(default_factory=list)   # files found but not read


def _source_kind(source: str) -> str:
    """'hf:imdb' -> 'hub'; a name with a card -> 'card'; anything else -> 'path'."""
    if source.startswith("hf:"):
        return "hub"
    if _CARD_NAME.match(source) and source in _card_paths():
        return "card"
    return "path"


def _parse_hub(spec: str) -> dict:
    """'hf:stanfordnlp/imdb:plain_text@main' -> {'name': 'stanfordnlp/imdb', 'config': 'plain_text', 'revision': 'main'}."""
    body = spec[3:]
    body, _, revision = body.partition("@")
    name, _, config = body.partition(":")
    if not name:
        raise ConfigError(f"corpus.source {spec!r} names no dataset; write hf:NAME, hf:NAME:CONFIG or hf:NAME@REVISION")
    return {"name": name, "config": config or None, "revision": revision or None}


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _txt_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".txt" and not p.name.startswith("."))


def _split_of(path: Path) -> str | None:
    """'train.jsonl' -> 'train', 'validation-00000-of-00001.parquet' -> 'dev', 'all.jsonl' -> None."""
    stem = sources.split_stem(path).lower()
    if stem in SPLIT_ALIASES:
        return SPLIT_ALIASES[stem]
    shard = _SHARD.match(stem)
    return SPLIT_ALIASES.get(shard.group("split")) if shard else None


def _file_part(path: Path, split: str | None, rel: str, fmt: str | None = None) -> _Part:
    formats = ("jsonl", "csv", "tsv", "parquet", "text", "wikidump", *sources.PARAGRAPH_READERS)
    if fmt is not None and fmt not in formats:
        raise ConfigError(f"corpus card format {fmt!r} is not one of {', '.join(formats)}")
    kind = fmt or sources.file_format(path)
    if kind is None:
        raise DataError(f"{path}: unsupported file type; supported: {sources.SUPPORTED}")
    if kind in ("text", "wikidump", *sources.PARAGRAPH_READERS):
        return _Part(kind, "unsup", path, rel, fmt=kind)
    return _Part("table", split, path, rel, fmt=kind)


def _label_folder_parts(folder: Path, split: str | None, prefix: str) -> tuple[list[_Part], list[str]]:
    """Documents of folder/<label>/*.txt; a label folder named like unsup holds unlabelled documents."""
    parts, ignored = [], []
    for sub in _subdirs(folder):
        files = _txt_files(sub)
        if not files:
            continue
        unsup = SPLIT_ALIASES.get(sub.name.lower()) == "unsup"
        for f in files:
            parts.append(_Part("document", "unsup" if unsup else split, f, f"{prefix}{sub.name}/{f.name}",
                               None if unsup else sub.name))
    ignored += [f"{prefix}{p.name}" for p in _data_files(folder) if sources.file_format(p)]
    return parts, ignored


def _plan_path(root: Path, files: dict | None, fmt: str | None = None) -> tuple[str, list[_Part], list[str]]:
    """(layout, parts, ignored files) for a local folder or file; `fmt` overrides the format a file name implies."""
    if root.is_file():
        part = _file_part(root, None, f"*.{fmt or sources.file_format(root)}", fmt)
        layout = {"table": "single file", "text": "text file", "wikidump": "wiki dump"}.get(part.kind, f"{part.kind} file")
        return layout, [part], []
    if files:
        parts = []
        for split, names in files.items():
            if split not in SPLITS:
                raise ConfigError(f"corpus card files has split {split!r}; valid splits: {', '.join(SPLITS)}")
            for name in [names] if isinstance(names, str) else names:
                path = root / name
                if not path.is_file():
                    raise MissingInputError(f"corpus file {path} does not exist; check the folder or the card's files")
                parts.append(_file_part(path, split, name, fmt))
        return "card files", parts, []
    data = _data_files(root)
    known = [p for p in data if sources.file_format(p)]
    tables = [p for p in known if sources.file_format(p) in ("jsonl", "csv", "tsv", "parquet")]
    split_tables = [p for p in tables if _split_of(p)]
    if split_tables:  # plain-text files named like unsup (unsup.txt) join them as unlabelled lines
        split_tables += [p for p in known if p not in tables and _split_of(p) == "unsup"]
        parts = [_file_part(p, _split_of(p), p.name) for p in split_tables]
        order = {s: i for i, s in enumerate(SPLITS)}
        parts.sort(key=lambda p: (order[p.split], p.rel))
        return "split files", parts, [p.name for p in known if p not in split_tables]
    subdirs = _subdirs(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES and any(_txt_files(s) for s in _subdirs(d))]
    if split_dirs:  # aclImdb: train/pos/*.txt, test/neg/*.txt, train/unsup/*.txt
        parts, ignored = [], []
        order = {s: i for i, s in enumerate(SPLITS)}
        for d in sorted(split_dirs, key=lambda d: order[SPLIT_ALIASES[d.name.lower()]]):
            p, i = _label_folder_parts(d, SPLIT_ALIASES[d.name.lower()], f"{d.name}/")
            parts += p
            ignored += i
        ignored += [p.name for p in known] + [f"{d.name}/" for d in subdirs if d not in split_dirs]
        return "label folders by split", parts, ignored
    label_dirs = [d for d in subdirs if _txt_files(d)]
    if label_dirs:  # pos/*.txt, neg/*.txt
        parts, ignored = _label_folder_parts(root, None, "")
        return "label folders", parts, ignored
    texts = [p for p in known if sources.file_format(p) in ("text", "wikidump")]
    if texts:
        parts = [_file_part(p, "unsup", p.name) for p in texts]
        return "text files", parts, [p.name for p in known if p not in texts]
    if tables:
        raise DataError(
            f"{root} holds {', '.join(p.name for p in tables[:5])} but no train/test file; name the files "
            f"train.jsonl / test.jsonl (or .csv, .tsv, .parquet), or pass one file as corpus.source to split it"
        )
    found = ", ".join(p.name for p in data[:5]) or "nothing"
    raise DataError(
        f"{root} holds no corpus files (found: {found}); supported: {sources.SUPPORTED}; "
        f"or one sub-folder of .txt files per label"
    )


def _resolve(cfg: CorpusConfig) -> _Plan:
    """Turn a config into the list of things to read, reading no data (card files and folder listings only)."""
    plan = _resolve_source(cfg)
    card_type = plan.card.get("target_type") if plan.card else None
    plan.target_type = cfg.target_type or card_type or "class"
    plan.label_separator = cfg.label_separator
    return plan


def _resolve_source(cfg: CorpusConfig) -> _Plan:
    kind = _source_kind(cfg.source)
    if kind == "hub":
        hub = _parse_hub(cfg.source)
        return _Plan(cfg.source, "hub", cfg.source, [_Part("hub", None)], cfg.text_field, cfg.label_field, hub=hub)
    if kind == "card":
        card = read_card(cfg.source)
        if "include" in card:
            return _resolve_included(card, cfg)
        chosen, tried = _choose_card_source(card)
        if chosen is None:
            hints = [s.get("install_hint") for s in card["sources"] if s.get("install_hint")]
            who = "the default corpus" if card["name"] == DEFAULT_CORPUS else f"corpus {card['name']}"
            if hints:
                raise MissingInputError(f"{who} needs {hints[0]}")
            raise MissingInputError(
                f"{who}: none of its sources is available (tried {'; '.join(tried)}); set NLP_PIPELINE_DATA to the "
                f"folder holding {card['name']}/, or pass the data's path as corpus.source"
            )
        src, path = chosen
        text_field = next((v for v in (cfg.text_field, src.get("text_field"), card.get("text_field")) if v is not None), None)
        label_field = next((v for v in (cfg.label_field, src.get("label_field"), card.get("label_field")) if v is not None), None)
        plan = _Plan(card["name"], "", "", [], text_field, label_field,
                     tuple(str(v) for v in card.get("unlabelled_values", ())), card=card, card_source=src)
        if path is None:
            plan.layout, plan.location = "hub", f"hf:{src['hf']}"
            plan.hub = {"name": src["hf"], "config": src.get("hf_config"), "revision": src.get("revision")}
            plan.parts = [_Part("hub", None)]
        else:
            plan.location = str(path)
            plan.layout, plan.parts, plan.ignored = _plan_path(path, src.get("files") or card.get("files"), src.get("format"))
        return plan
    root = Path(cfg.source).expanduser()
    if not root.exists():
        if _CARD_NAME.match(cfg.source):
            read_card(cfg.source)  # raises the unknown-corpus error listing the cards
        raise MissingInputError(f"corpus path {root} does not exist; check corpus.source (a card name, a path, or hf:NAME)")
    root = root.resolve()
    layout, parts, ignored = _plan_path(root, None)
    name = sources.split_stem(root) if root.is_file() else root.name
    return _Plan(name, layout, str(root), parts, cfg.text_field, cfg.label_field, ignored=ignored)


def _resolve_included(card: dict, cfg: CorpusConfig, seen: tuple[str, ...] = ()) -> _Plan:
    """One plan reading every file of the cards a composite card includes, in order; each must be unlabelled
    and local (a package or a path: a Hub source cannot be concatenated here)."""
    if card["name"] in seen:
        raise ConfigError(f"corpus card {card['name']} includes itself (through {' -> '.join(seen)}); fix its include list")
    plan = _Plan(card["name"], "included cards", "", [], None, "", card=card)
    locations, cards = [], []
    for name in card["include"]:
        sub_card = read_card(name)
        sub = _resolve_source(dataclasses.replace(cfg, source=name)) if "include" not in sub_card else \
            _resolve_included(sub_card, cfg, (*seen, card["name"]))
        if sub.hub is not None or any(p.kind == "table" or p.kind == "document" for p in sub.parts):
            raise ConfigError(f"corpus card {card['name']} includes {name}, which is not plain unlabelled text from a "
                              f"local file; include only cards of text, wiki dumps, summaries, glosses or dictionaries")
        plan.parts += [dataclasses.replace(p, rel=f"{name}/{p.rel}") for p in sub.parts]
        plan.ignored += sub.ignored
        locations.append(sub.location)
        cards.append(_card_identity(sub))
    plan.location = "; ".join(locations)
    plan.card_source = {"included": cards}
    return plan


def _files_digest(parts: list[_Part]) -> dict:
    """{'count': n, 'sha256': ...} over the relative names and contents of the files read, in order."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.rel.encode("utf-8") + b"\0" + file_sha256(part.path).encode("ascii") + b"\0")
    return {"count": len(parts), "sha256": digest.hexdigest()}


def _card_identity(plan: _Plan) -> dict | None:
    """The card minus where its data lives: what can change the output besides the data itself."""
    if plan.card is None:
        return None
    card = {k: v for k, v in plan.card.items() if k not in ("sources", "card_path", "available")}
    card["source"] = {k: v for k, v in (plan.card_source or {}).items() if k != "path"}
    return card


def corpus_fingerprint(cfg: CorpusConfig) -> dict:
    """Key material from the contents of the files the config reads (not their paths), the Hub commit for a Hub
    dataset, and the card's settings. Reads files in chunks and parses nothing; raises the same one-line errors
    as load_corpus for a missing path, an unknown card or an unsupported file."""
    plan = _resolve(cfg)
    out: dict[str, Any] = {"layout": plan.layout}
    if plan.hub is not None:
        out["hub"] = dict(plan.hub, revision=sources.resolve_hub_revision(plan.hub["name"], plan.hub["revision"]))
    else:
        out["files"] = _files_digest(plan.parts)
        if any(part.kind == "wikidump" for part in plan.parts):
            out["wiki_reader"] = sources.WIKI_READER_VERSION  # only dump-based corpora are read anew when it changes
    card = _card_identity(plan)
    if card is not None:
        out["card"] = card
    return out


# --- reading rows -------------------------------------------------------------------------------------------

def _pick_field(names: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, where: str,
                required: bool) -> str | None:
    """The column to use: `wanted` if given (must exist), else the first candidate present (any case)."""
    option = f"--{what}-field (corpus.{what}_field)"
    if wanted:
        if wanted in names:
            return wanted
        raise DataError(f"{where} has no {what} field {wanted!r}; columns found: {', '.join(names) or 'none'}; "
                        f"pass the right one with {option}")
    lower = {n.lower(): n for n in reversed(names)}
    for candidate in candidates:
        if candidate in lower:
            return lower[candidate]
    if not required:
        return None
    extra = ", or set it to \"\" for an unlabelled corpus" if what == "label" else ""
    raise DataError(f"{where} has no {what} field; columns found: {', '.join(names) or 'none'}; "
                    f"name it with {option}{extra}")


class _Marked:
    """The type of _MARKED: one object, kept one when pickled (rows read on a Ray worker come back with it)."""

    def __reduce__(self) -> str:
        return "_MARKED"


_MARKED = _Marked()  # _parse_label's answer for a value the card lists in unlabelled_values


def _parse_label(value: Any, plan: _Plan, class_names: list[str] | None = None) -> Any:
    """One label cell -> the label of plan.target_type, None for an empty cell, _MARKED for a card's unlabelled
    value; DataError for a cell that is no such label. `class_names` maps the ids of a Hub ClassLabel.

    class: ' pos ' -> 'pos', 3 -> '3'; multi_label: 'b, a' -> ('a', 'b'), ['a'] -> ('a',), [] -> ();
    regression: '2.5' -> 2.5, 3 -> 3.0 ('nan', 'inf', True: DataError); '' / None / float('nan') -> None (any type).
    """
    target_type = plan.target_type
    if isinstance(value, (list, tuple)):
        if target_type != "multi_label":
            raise DataError(f"the label cell holds a list ({str(value)[:40]}); set corpus.target_type = \"multi_label\" "
                            f"for several labels per text, or fix the data")
        if class_names is not None:
            if not all(isinstance(v, int) and 0 <= v < len(class_names) for v in value):
                return None  # a hidden label (-1), as for one ClassLabel
            value = [class_names[v] for v in value]
        parts = (sources.cell_text(v) for v in value)
        return tuple(sorted({part.strip() for part in parts if part and part.strip()}))
    if class_names is not None:
        value = class_names[value] if isinstance(value, int) and 0 <= value < len(class_names) else None
    if target_type == "regression" and isinstance(value, bool):
        raise DataError(f"the target {value!r} is a boolean, not a number; fix the data or use corpus.target_type = \"class\"")
    text = sources.cell_text(value)
    label = text.strip() if text is not None else None
    if not label:
        return None
    if label in plan.unlabelled_values:
        return _MARKED
    if target_type == "multi_label":
        return tuple(sorted({part.strip() for part in label.split(plan.label_separator) if part.strip()}))
    if target_type == "regression":
        try:
            number = float(label)
        except ValueError:
            number = None
        if number is None or not math.isfinite(number):
            raise DataError(f"the target {label[:40]!r} is not a finite number; fix the data or use "
                            f"corpus.target_type = \"class\"")
        return number
    return label


@dataclass
class _Rows:
    """Documents as read, before cleaning: parallel lists (labels parsed by _parse_label)."""

    texts: list[str | None] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    labelled_sources: int = 0                                 # parts that carried a label column or folder
    label_fields: list[str] = field(default_factory=list)     # label columns read, in order (regression names the first)
    headings: int = 0                                         # WikiText heading lines skipped
    wiki: dict[str, int] = field(default_factory=dict)        # pages / redirects read from a wiki dump
    hub_ignored: list[str] = field(default_factory=list)
    spellings: dict[str, dict[str, str]] = field(default_factory=dict)  # class label -> {cell type: first cell as JSON}

    def add(self, texts: list, labels: list | None, split: str | None) -> None:
        self.texts += texts
        self.labels += labels if labels is not None else [None] * len(texts)
        self.splits += [split] * len(texts)

    def extend(self, other: "_Rows") -> None:
        """The rows of `other`, read after these: as if read into these rows one after the other."""
        self.add(other.texts, other.labels, None)
        self.splits[len(self.splits) - len(other.splits):] = other.splits
        self.labelled_sources += other.labelled_sources
        self.label_fields += [name for name in other.label_fields if name not in self.label_fields]
        self.headings += other.headings
        for k, v in other.wiki.items():
            self.wiki[k] = self.wiki.get(k, 0) + v
        for label, cells in other.spellings.items():
            for kind, shown in cells.items():
                self.spellings.setdefault(label, {}).setdefault(kind, shown)


def _add_table(rows: _Rows, plan: _Plan, names: list[str], get, where: str, split: str | None,
               features: dict | None = None, n_rows: int | None = None) -> None:
    if n_rows == 0:  # an empty file has no columns to check; an empty corpus is reported once, below
        return
    text_field = _pick_field(names, plan.text_field, TEXT_FIELDS, "text", where, required=True)
    card_source = plan.card_source or {}
    if "rows" in card_source:
        get, n_rows = _kept_rows(card_source["rows"], names, get, where)
        if n_rows == 0:
            return
    if plan.label_field == "":  # an unlabelled corpus: every row is for the language model
        split = "unsup"
    unlabelled = split == "unsup"
    label_field = None
    if not unlabelled:
        label_field = _pick_field(names, plan.label_field, LABEL_FIELDS, "label", where, required=True)
    try:
        texts = [sources.cell_text(v) for v in get(text_field)]
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    labels = None
    if label_field is not None:
        feature = (features or {}).get(label_field)
        feature = getattr(feature, "feature", feature)  # a Hub Sequence(ClassLabel): its items' ClassLabel
        class_names = getattr(feature, "names", None)   # a Hub ClassLabel: ids -> names
        card_names = card_source.get("label_names") if class_names is None else None
        labels = []
        spell = plan.target_type == "class" and class_names is None and card_names is None  # ids are no spelling
        class_names = class_names or card_names
        for row, value in enumerate(get(label_field), 1):
            if card_names is not None:
                value = _card_label_id(value, card_names, where, row)
            try:
                label = _parse_label(value, plan, class_names)
            except DataError as exc:
                raise DataError(f"{where} row {row}: {exc}") from None
            labels.append(label)
            if spell and isinstance(label, str):
                rows.spellings.setdefault(label, {}).setdefault(type(value).__name__, _as_json(value))
        rows.labelled_sources += 1
        if label_field not in rows.label_fields:
            rows.label_fields.append(label_field)
    rows.add(texts, labels, split)


def _kept_rows(keep: dict, names: list[str], get, where: str) -> tuple[Any, int]:
    """(column getter, row count) of only the rows whose columns hold the card's `rows` values (compared as text,
    so 1 matches "1"); a DataError naming the columns when the table lacks one."""
    missing = [column for column in keep if column not in names]
    if missing:
        raise DataError(f"{where} has no column {missing[0]!r} that the corpus card's rows setting selects on; "
                        f"columns found: {', '.join(names)}; fix the card")
    columns = [[(sources.cell_text(v) or "").strip() for v in get(column)] for column in keep]
    wanted = [sources.cell_text(v) for v in keep.values()]
    index = [i for i, cells in enumerate(zip(*columns)) if list(cells) == wanted]

    def kept(name: str) -> list:
        column = get(name)
        return [column[i] for i in index]

    return kept, len(index)


def _card_label_id(value: Any, label_names: list[str], where: str, row: int) -> int | None:
    """An integer label cell (1, "1", 1.0) as an index into the card's label_names; None for an empty cell."""
    text = sources.cell_text(value)
    if text is None or not text.strip():
        return None
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not number.is_integer() or not 0 <= number < len(label_names):
        raise DataError(f"{where} row {row}: the label {text.strip()!r} is not one of 0..{len(label_names) - 1}, "
                        f"which the corpus card's label_names name; fix the data or the card")
    return int(number)


def _as_json(value: Any) -> str:
    """A cell as it would be written in JSON, for messages: 1 -> '1', '1' -> '"1"', 1.0 -> '1.0'."""
    try:
        return json.dumps(value.strip() if isinstance(value, str) else value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _read_rows(plan: _Plan, cfg: CorpusConfig, hub: dict[str, Any] | None = None) -> _Rows:
    rows = _Rows()
    if plan.hub is not None:
        splits = hub if hub is not None else sources.read_hub(plan.hub["name"], plan.hub["config"], plan.hub["revision"])
        for hub_split, dataset in splits.items():
            split = sources.HUB_SPLITS.get(hub_split)
            if split is None:
                rows.hub_ignored.append(hub_split)
                continue
            _add_table(rows, plan, list(dataset.column_names), lambda n, d=dataset: d[n],
                       f"hf:{plan.hub['name']} split {hub_split}", split, dict(dataset.features))
        return rows
    read = _read_pieces(_pieces(plan.parts, cfg), plan, cfg)
    documents = [p for p in plan.parts if p.kind == "document"]
    if documents:
        texts: list = []
        while len(texts) < len(documents):  # the document pieces come first
            texts += next(read).texts
        labels = []
        for p in documents:
            try:
                labels.append(_parse_label(p.label, plan))
            except DataError as exc:
                raise DataError(f"{p.path.parent} (label folder): {exc}") from None
        rows.add(texts, labels, None)
        rows.splits[-len(documents):] = [p.split for p in documents]
        if any(p.label is not None for p in documents):
            rows.labelled_sources += 1
            rows.label_fields.append("label")
    for piece_rows in read:
        rows.extend(piece_rows)
    return rows


# --- pieces of reading, here or on Ray workers ----------------------------------------------------------------

RAY_CHUNK_BYTES = 16 << 20   # executor "ray": plain text goes to the workers in blocks of whole lines this large, label-folder documents in groups this large
_RAY_GROUP_FILES = 2000      # and at most this many documents per group


@dataclass(frozen=True)
class _Piece:
    """One piece of reading, done in this process or on a Ray worker: a whole file (`part`), a group of
    label-folder documents (`documents`), or a block of whole lines of a plain-text part (`block`, whose first
    line is line `first_line` of the file). `nbytes`: the data it stands for (Ray's wave size counts it)."""

    part: _Part | None = None
    documents: tuple[Path, ...] = ()
    block: bytes | None = None
    first_line: int = 1
    nbytes: int = 0
    last: bool = True           # the last block of its part (a JSON-lines part's records are assembled after it)


def _pieces(parts: list[_Part], cfg: CorpusConfig) -> Iterator[_Piece]:
    """The pieces that read `parts` in order, the label-folder documents first (as _read_rows takes them):
    in this process one piece per file and one for all documents; on Ray (cfg.executor) documents in groups
    of about RAY_CHUNK_BYTES, and plain text and JSON-lines files larger than that, in an encoding where b"\n"
    only ends lines, in blocks of whole lines of about RAY_CHUNK_BYTES (read here, lazily: at most a wave of
    blocks is held)."""
    ray = cfg.executor == "ray"
    documents = [p.path for p in parts if p.kind == "document"]
    group: list[Path] = []
    size = 0
    for path in documents:
        group.append(path)
        size += path.stat().st_size if ray else 0
        if ray and (size >= RAY_CHUNK_BYTES or len(group) >= _RAY_GROUP_FILES):
            yield _Piece(documents=tuple(group), nbytes=size)
            group, size = [], 0
    if group:
        yield _Piece(documents=tuple(group), nbytes=size)
    blocks = ray and codecs.lookup(cfg.encoding).name in sources.STREAM_ENCODINGS
    for part in parts:
        if part.kind in ("document", "hub"):
            continue
        if blocks and (part.kind == "text" or _jsonl_in_blocks(part)):
            previous = None
            for block, first_line in sources.line_blocks(part.path, RAY_CHUNK_BYTES):
                if previous is not None:
                    yield dataclasses.replace(previous, last=False)
                previous = _Piece(part=part, block=block, first_line=first_line, nbytes=len(block))
            if previous is not None:
                yield previous
        else:
            yield _Piece(part=part, nbytes=part.path.stat().st_size if ray else 0)


def _jsonl_in_blocks(part: _Part) -> bool:
    """A JSON-lines table file large enough to be parsed in blocks on Ray (not one JSON array)."""
    return (part.kind == "table" and (part.fmt or sources.file_format(part.path)) == "jsonl"
            and part.path.stat().st_size > RAY_CHUNK_BYTES and not sources.starts_json_array(part.path))


def _read_piece(piece: _Piece, plan: _Plan, encoding: str) -> _Rows | list[dict]:
    """The rows of one piece, read with the readers of corpus_sources (DataError on unusable data); for a block
    of a JSON-lines file, its records (the file's columns are known only once every block is read)."""
    from tqdm import tqdm

    rows = _Rows()
    part = piece.part
    if piece.documents:
        rows.add([sources.read_text(path, encoding) for path in tqdm(
            piece.documents, desc="reading documents", unit=" files", disable=None, leave=False)], None, None)
    elif piece.block is not None and part.kind == "table":
        return sources.jsonl_records(sources.decode(piece.block, encoding, part.path, piece.first_line), part.path,
                                     piece.first_line)
    elif piece.block is not None:
        lines, rows.headings = sources.paragraph_lines(sources.decode(piece.block, encoding, part.path, piece.first_line))
        rows.add(lines, None, "unsup")
    elif part.kind == "table":
        return _table_rows(plan, part, sources.read_table(part.path, encoding, part.fmt))
    elif part.kind == "text":
        lines, rows.headings = sources.read_lines(part.path, encoding)
        rows.add(lines, None, "unsup")
    elif part.kind in sources.PARAGRAPH_READERS:
        rows.add(sources.PARAGRAPH_READERS[part.kind](part.path), None, "unsup")
    elif part.kind == "wikidump":
        paragraphs, rows.wiki = sources.read_wiki_dump(part.path)
        rows.add(paragraphs, None, "unsup")
    return rows


def _table_rows(plan: _Plan, part: _Part, table: sources.Table) -> _Rows:
    rows = _Rows()
    _add_table(rows, plan, table.names, table.column, str(part.path), part.split, n_rows=table.rows)
    return rows


def _piece_reader(settings: dict[str, Any]) -> Any:
    """What a Ray worker runs on each piece: its rows, or None when reading it fails with a user error (the
    caller reads that piece again in its own process, to raise the error just as the local path does)."""
    plan, encoding = settings["plan"], settings["encoding"]

    def read(piece: _Piece) -> _Rows | list[dict] | None:
        try:
            return _read_piece(piece, plan, encoding)
        except NlpPipelineError:
            return None

    return read


def _read_pieces(pieces: Iterable[_Piece], plan: _Plan, cfg: CorpusConfig) -> Iterator[_Rows]:
    """The rows of each piece, in order: read in this process, or on Ray Data workers (cfg.executor "ray",
    core/ray_executor.map_chunks; preserve_order). A piece that fails on a worker is read again here, so the
    error (file, line, column) is the one the local path gives; the pieces before it have been merged alike.
    The records of a JSON-lines file's blocks are gathered and made into its rows after its last block, as one
    table, the columns found over the whole file; a block that fails sends the whole file to the local reader,
    so that its error is the one the local path gives (which decodes the whole file before parsing it)."""
    if cfg.executor != "ray":
        for piece in pieces:
            yield _read_piece(piece, plan, cfg.encoding)
        return
    records: list[dict] | None = []   # of the JSON-lines file being read in blocks; None after a failed block
    for piece, rows in _ray_results(pieces, plan, cfg):
        if isinstance(rows, _Rows):
            yield rows
            continue
        if records is not None and rows is not None:
            records += rows
        elif records is not None:   # read again here: its error as in process (or, if it reads, its table)
            table = sources.read_table(piece.part.path, cfg.encoding, piece.part.fmt)
            records = None
        if piece.last:
            yield _table_rows(plan, piece.part, sources.records_table(records) if records is not None else table)
            records = []


def _ray_results(pieces: Iterable[_Piece], plan: _Plan, cfg: CorpusConfig) -> Iterator[tuple[_Piece, Any]]:
    """(piece, what a Ray worker read of it) in order: _Rows, a JSON-lines block's records, or None for a
    JSON-lines block that failed; any other piece that failed is read again here, raising its error."""
    sent: collections.deque = collections.deque()   # pieces handed to Ray, not yet answered (a wave at most)

    def handed() -> Iterator[_Piece]:
        for piece in pieces:
            sent.append(piece)
            yield piece

    settings = {"plan": dataclasses.replace(plan, parts=[]), "encoding": cfg.encoding}
    for rows in map_chunks(_piece_reader, settings, handed(), resolve_workers(cfg.workers), cfg.ray_address):
        piece = sent.popleft()
        if piece.block is not None and piece.part.kind == "table":
            yield piece, rows
            continue
        if rows is None:
            yield piece, _read_piece(piece, plan, cfg.encoding)
            continue
        # unpickled split names are copies of "train", "unsup", ...: take the interned ones again, so that the
        # artifact pickles them as the in-process path does (pickle writes one object once, two equal ones twice)
        rows.splits = [sys.intern(split) if split else split for split in rows.splits]
        yield piece, rows


# --- splitting and sampling (pure helpers) ------------------------------------------------------------------

def sort_labels(names: set[str] | list[str]) -> list[str]:
    """Label names in id order: numerically when all are integers, else as strings.
    {'10', '2', '1'} -> ['1', '2', '10']; {'pos', 'neg'} -> ['neg', 'pos']"""
    names = set(names)
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def stratified_split(labels: list[str], fraction: float, seed: int) -> list[int]:
    """Positions (ascending) held out: one random.Random(seed); for each label in sort_labels order, its
    positions (ascending) are shuffled and the first max(1, int(fraction * n)) taken (none when n < 2).

    stratified_split(['a', 'b', 'a', 'b', 'a', 'b'], 0.34, 0) -> [0, 5]
    """
    if fraction <= 0:
        return []
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    held = []
    for label in sort_labels(by_label):
        positions = by_label[label]
        if len(positions) < 2:
            continue
        rng.shuffle(positions)
        held += positions[: max(1, int(fraction * len(positions)))]
    return sorted(held)


def sample_documents(groups: list[Any], limit: int, seed: int) -> list[int]:
    """Positions (ascending) of at most `limit` documents, each group (e.g. (split, label)) keeping its share
    (largest remainders, at least one per group while the limit allows), picked by random.Random(seed).

    sample_documents(['a'] * 6 + ['b'] * 2, 4, 0) -> [0, 3, 5, 7]
    """
    if limit >= len(groups):
        return list(range(len(groups)))
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    keys = list(by_group)
    total = len(groups)
    exact = {k: limit * len(by_group[k]) / total for k in keys}
    quota = {k: int(exact[k]) for k in keys}
    if limit >= len(keys):
        for k in keys:
            quota[k] = max(1, quota[k])
    while sum(quota.values()) > limit:  # the minimum of one pushed the sum over: take from the largest
        k = max(keys, key=lambda k: quota[k])
        quota[k] -= 1
    for k in sorted(keys, key=lambda k: exact[k] - int(exact[k]), reverse=True):
        if sum(quota.values()) >= limit:
            break
        if quota[k] < len(by_group[k]):
            quota[k] += 1
    rng = random.Random(seed)
    kept = []
    for k in keys:
        kept += rng.sample(by_group[k], quota[k])
    return sorted(kept)


# --- the stage ----------------------------------------------------------------------------------------------

def _count(values: list) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _file_entries(plan: _Plan) -> list[dict] | dict:
    files = [p for p in plan.parts if p.path is not None]
    if len(files) <= _FILE_LIST_MAX:
        return [{"path": str(p.path), "sha256": file_sha256(p.path)} for p in files]
    return _files_digest(files)


def _label_without_surrogates(label: Any) -> tuple[Any, int]:
    """A parsed class or multi-label label with lone surrogates replaced (see rules.replace_surrogates)."""
    if isinstance(label, str):
        return replace_surrogates(label)
    if isinstance(label, tuple):
        cleaned = [replace_surrogates(name) for name in label]
        return tuple(sorted({name for name, _ in cleaned})), sum(n for _, n in cleaned)
    return label, 0


def _warn_label_spellings(name: str, spellings: dict[str, dict[str, str]]) -> None:
    """One warning naming the class labels written in cells of different types (1, "1", 1.0), which read as one."""
    mixed = {label: kinds for label, kinds in spellings.items() if len(kinds) > 1}
    if not mixed:
        return
    shown = "; ".join(f"{label!r} from {', '.join(kinds.values())}" for label, kinds in list(mixed.items())[:5])
    shown = replace_surrogates(shown)[0]  # a label may still hold one here: the log cannot write it
    more = f" and {len(mixed) - 5} more" if len(mixed) > 5 else ""
    log.warning("corpus %s: %d label(s) written in cells of different types are read as one label each: %s%s; "
                "if they mean different classes, fix the label column", name, len(mixed), shown, more)


def load_corpus(cfg: CorpusConfig) -> Corpus:
    """Read the source named by `cfg` into a Corpus (see the module docstring); DataError on unusable data."""
    plan = _resolve(cfg)
    hub = _unlabelled_hub(plan, cfg)
    if _streamable(plan, cfg, hub):
        return _load_streamed(plan, cfg, hub)
    rows = _read_rows(plan, cfg, hub)
    where = plan.location
    info: dict[str, Any] = {"source": cfg.source, "layout": plan.layout, "location": where}
    if plan.hub is not None:
        info["hub"] = plan.hub
    else:
        info["files"] = _file_entries(plan)
    if plan.ignored or rows.hub_ignored:
        info["ignored"] = plan.ignored + rows.hub_ignored
        log.warning("corpus %s: ignored %d file(s)/split(s) that fit no split: %s", plan.name,
                    len(info["ignored"]), ", ".join(info["ignored"][:5]))
    if plan.card is not None:
        info["card"] = {k: plan.card[k] for k in CARD_INFO_KEYS if k in plan.card}
    if not rows.texts:
        raise DataError(f"the corpus at {where} holds no documents; point corpus.source at the data or fill the files")
    info["rows_read"] = _count([s or UNSPLIT for s in rows.splits])

    # Unlabelled rows (no label, or a value the card marks as unlabelled) are kept, in split unsup.
    texts, labels, splits = [], [], []
    moved: Counter = Counter()
    dropped: Counter = Counter()
    replaced: Counter = Counter()  # texts / labels that held lone surrogates
    for text, label, split in zip(rows.texts, rows.labels, rows.splits):
        text, n = replace_surrogates((text or "").strip())
        replaced["texts"] += n > 0
        if label is not None and label is not _MARKED and not isinstance(label, float):
            label, n = _label_without_surrogates(label)
            replaced["labels"] += n > 0
        if not text:
            dropped[split or UNSPLIT] += 1
            continue
        if label is _MARKED or (label is None and split != "unsup"):
            if label is not _MARKED:
                moved[split or UNSPLIT] += 1
            label, split = None, "unsup"
        texts.append(text)
        labels.append(label)
        splits.append(split)
    if +replaced:
        info["replaced_surrogates"] = dict(replaced)
        log.warning("corpus %s: %d text(s) and %d label(s) held lone surrogates (broken escapes such as \\ud83d, "
                    "half a character); each became U+FFFD", plan.name, replaced["texts"], replaced["labels"])
    if rows.spellings:
        _warn_label_spellings(plan.name, rows.spellings)
    info["dropped"] = {"empty_text": dict(sorted(dropped.items()))}
    if rows.headings:
        info["dropped"]["headings"] = rows.headings
    if rows.wiki:
        info["wiki"] = rows.wiki
    if dropped:
        log.warning("corpus %s: dropped %d empty or whitespace-only text(s) (%s)", plan.name, sum(dropped.values()),
                    ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    if not texts:
        raise DataError(f"every text of the corpus at {where} is empty or whitespace ({sum(dropped.values())} rows); "
                        f"check --text-field (corpus.text_field) names the column holding the texts")
    if moved:
        info["unlabelled_rows"] = dict(sorted(moved.items()))
        log.warning("corpus %s: %d row(s) without a label kept as unlabelled (split unsup): %s", plan.name,
                    sum(moved.values()), ", ".join(f"{k} {v}" for k, v in sorted(moved.items())))

    target_type = plan.target_type
    labelled = [i for i, label in enumerate(labels) if label is not None]
    if rows.labelled_sources and not labelled:
        raise DataError(f"no row of the corpus at {where} has a label; check --label-field (corpus.label_field), "
                        f"or set it to \"\" for an unlabelled corpus")
    if target_type != "class" and not rows.labelled_sources:
        raise DataError(f"the corpus at {where} has no labels, so target_type {target_type!r} has nothing to read; "
                        f"name the label column with corpus.label_field, or set corpus.target_type = \"class\"")
    splits = [s or "train" for s in splits]
    derived = {}
    if labelled:
        derived = _derive_splits(cfg, labels, splits, target_type)
        _check_labels(labels, splits, where, plan)
    if target_type == "regression":
        label_names = rows.label_fields[:1]
    else:
        label_names = sort_labels(_names_in(labels, splits, "train", target_type))
    if derived:
        info["derived_splits"] = derived

    if cfg.max_documents is not None and cfg.max_documents < len(texts):
        groups = list(zip(splits, [label or "" for label in labels])) if target_type == "class" else splits
        keep = sample_documents(groups, cfg.max_documents, cfg.seed)
        info["dropped"]["max_documents"] = len(texts) - len(keep)
        texts = [texts[i] for i in keep]
        labels = [labels[i] for i in keep]
        splits = [splits[i] for i in keep]

    if cfg.max_labelled is not None:
        labels, splits = _keep_labelled(labels, splits, cfg.max_labelled, cfg.seed, target_type)
        info["max_labelled"] = {"kept": sum(1 for lab, sp in zip(labels, splits) if sp == "train" and lab is not None),
                                "unlabelled_now": splits.count("unsup")}

    info["target_type"] = target_type
    scored = [s for s in SPLITS if s in splits and s != "unsup"]
    if target_type == "regression":
        info["target_stats"] = {s: _target_stats([lab for lab, sp in zip(labels, splits) if sp == s and lab is not None])
                                for s in scored}
    else:
        info["label_counts"] = {s: _count([name for lab, sp in zip(labels, splits) if sp == s and lab is not None
                                           for name in ((lab,) if target_type == "class" else lab)])
                                for s in scored}
    info["split_sizes"] = {s: splits.count(s) for s in SPLITS if s in splits}
    train_texts = {t for t, s in zip(texts, splits) if s == "train"}
    info["test_texts_in_train"] = sum(1 for t, s in zip(texts, splits) if s == "test" and t in train_texts)
    if info["test_texts_in_train"]:
        log.warning("corpus %s: %d of %d test texts also in train (identical once trimmed); test scores may be "
                    "optimistic: remove the duplicates from one split if they are not meant", plan.name,
                    info["test_texts_in_train"], splits.count("test"))
    return Corpus(
        labels=_label_array(labels, label_names, target_type),
        splits=np.array([SPLITS.index(s) for s in splits], dtype=np.int8),
        label_names=label_names,
        target_type=target_type,
        texts=texts,
        name=plan.name,
        info=info,
    )


# --- large unlabelled text corpora, streamed ----------------------------------------------------------------

STREAM_MIN_BYTES = 64 << 20   # unlabelled text sources at least this large (on disk) are streamed into a TextColumn
_STREAM_KINDS = ("text", "wikidump", *sources.PARAGRAPH_READERS)


def _unlabelled_hub(plan: _Plan, cfg: CorpusConfig) -> dict[str, Any] | None:
    """The splits of a Hub dataset read as unlabelled text (corpus.label_field = ""), else None: such a
    corpus (hf:wikitext:wikitext-103-raw-v1 for pretraining) may be streamed. Loaded once; load_dataset keeps
    it as memory-mapped Arrow files, so this costs no memory per row."""
    if plan.hub is None or cfg.label_field != "" or cfg.max_documents is not None or cfg.max_labelled is not None:
        return None
    return sources.read_hub(plan.hub["name"], plan.hub["config"], plan.hub["revision"])


def _streamable(plan: _Plan, cfg: CorpusConfig, hub: dict[str, Any] | None = None) -> bool:
    """True for a large corpus of unlabelled text: text files (a big .txt, a folder of them: STREAM_MIN_BYTES
    on disk) in an encoding in which b"\n" only ends lines, or a Hub dataset read with label_field "" whose
    Arrow data is that large; no labels, no sampling."""
    import codecs

    if hub is not None:
        return sum(int(d.data.nbytes) for d in hub.values()) >= STREAM_MIN_BYTES
    if plan.hub is not None or not plan.parts or any(p.kind not in _STREAM_KINDS for p in plan.parts):
        return False
    if cfg.max_documents is not None or cfg.max_labelled is not None or plan.target_type != "class":
        return False
    if codecs.lookup(cfg.encoding).name not in sources.STREAM_ENCODINGS:
        return False
    return sum(p.path.stat().st_size for p in plan.parts) >= STREAM_MIN_BYTES


def _load_streamed(plan: _Plan, cfg: CorpusConfig, hub: dict[str, Any] | None = None) -> Corpus:
    """load_corpus for _streamable sources, with bounded memory: texts are stripped and checked one at a time
    and written to a TextColumn (spilled to disk past 64 MiB); the Corpus holds the same texts, labels, splits
    and info as the list-holding path would (tests/test_bounded_memory.py compares them)."""
    from nlp_pipeline.artifacts import TextColumn
    from nlp_pipeline.core.spill import ArrayWriter

    info: dict[str, Any] = {"source": cfg.source, "layout": plan.layout, "location": plan.location}
    if hub is not None:
        info["hub"] = plan.hub
        ignored = [name for name in hub if sources.HUB_SPLITS.get(name) is None]
    else:
        info["files"] = _file_entries(plan)
        ignored = list(plan.ignored)
    if ignored:
        info["ignored"] = ignored
        log.warning("corpus %s: ignored %d file(s)/split(s) that fit no split: %s", plan.name,
                    len(info["ignored"]), ", ".join(info["ignored"][:5]))
    if plan.card is not None:
        info["card"] = {k: plan.card[k] for k in CARD_INFO_KEYS if k in plan.card}
    data, lengths = ArrayWriter(np.uint8), ArrayWriter(np.int64)
    stats: dict[str, int] = {}
    wiki: dict[str, int] = {}
    read = dropped = replaced = 0

    def documents() -> Any:
        for hub_split, dataset in (hub or {}).items():
            if sources.HUB_SPLITS.get(hub_split) is None:
                continue
            where = f"hf:{plan.hub['name']} split {hub_split}"
            field = _pick_field(list(dataset.column_names), plan.text_field, TEXT_FIELDS, "text", where, required=True)
            for batch in dataset.select_columns([field]).iter(batch_size=4096):
                try:
                    yield from (sources.cell_text(v) for v in batch[field])
                except DataError as exc:
                    raise DataError(f"{where}: {exc}") from None
        if hub is None and cfg.executor == "ray":
            for rows in _read_pieces(_pieces(plan.parts, cfg), plan, cfg):   # a block of lines or a file at a time
                stats["headings"] = stats.get("headings", 0) + rows.headings
                for k, v in rows.wiki.items():
                    wiki[k] = wiki.get(k, 0) + v
                yield from rows.texts
            return
        for part in ([] if hub is not None else plan.parts):
            if part.kind == "text":
                yield from sources.stream_lines(part.path, cfg.encoding, stats)
            elif part.kind == "wikidump":
                paragraphs, counts = sources.read_wiki_dump(part.path)
                for k, v in counts.items():
                    wiki[k] = wiki.get(k, 0) + v
                yield from paragraphs
            else:
                yield from sources.PARAGRAPH_READERS[part.kind](part.path)

    batch: list[bytes] = []
    for text in documents():
        read += 1
        text, n = replace_surrogates((text or "").strip())
        replaced += n > 0
        if not text:
            dropped += 1
            continue
        batch.append(text.encode("utf-8"))
        if len(batch) == 4096:
            data.append(np.frombuffer(b"".join(batch), np.uint8))
            lengths.append([len(b) for b in batch])
            batch = []
    data.append(np.frombuffer(b"".join(batch), np.uint8))
    lengths.append([len(b) for b in batch])
    if not read:
        raise DataError(f"the corpus at {plan.location} holds no documents; point corpus.source at the data or fill the files")
    info["rows_read"] = {"unsup": read}
    if replaced:
        info["replaced_surrogates"] = {"texts": replaced}
        log.warning("corpus %s: %d text(s) and 0 label(s) held lone surrogates (broken escapes such as \\ud83d, "
                    "half a character); each became U+FFFD", plan.name, replaced)
    info["dropped"] = {"empty_text": {"unsup": dropped} if dropped else {}}
    if stats.get("headings"):
        info["dropped"]["headings"] = stats["headings"]
    if wiki:
        info["wiki"] = wiki
    if dropped:
        log.warning("corpus %s: dropped %d empty or whitespace-only text(s) (unsup %d)", plan.name, dropped, dropped)
    n = len(lengths)
    if not n:
        raise DataError(f"every text of the corpus at {plan.location} is empty or whitespace ({dropped} rows); "
                        f"check --text-field (corpus.text_field) names the column holding the texts")
    info.update(target_type="class", label_counts={}, split_sizes={"unsup": n}, test_texts_in_train=0)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths.finish(), out=offsets[1:])
    return Corpus(
        labels=np.full(n, UNLABELLED, dtype=np.int32),
        splits=np.full(n, SPLITS.index("unsup"), dtype=np.int8),
        label_names=[],
        target_type="class",
        texts=TextColumn(data.finish(), offsets),
        name=plan.name,
        info=info,
    )


def _keep_labelled(labels: list, splits: list[str], limit: int, seed: int, target_type: str) -> tuple[list, list[str]]:
    """Few labels: a seeded sample of at most `limit` labelled train documents keeps its labels (stratified by
    label for class targets); the other labelled train and dev documents move to unsup without their label,
    as text for the language model. Test is untouched.

    _keep_labelled(['a', 'b', 'a', 'b'], ['train'] * 4, 2, 0, 'class') -> one 'a' and one 'b' kept in train.
    """
    train = [i for i, (lab, sp) in enumerate(zip(labels, splits)) if sp == "train" and lab is not None]
    groups = [labels[i] if target_type == "class" else "" for i in train]
    kept = {train[j] for j in sample_documents(groups, limit, seed)} if len(train) > limit else set(train)
    labels, splits = list(labels), list(splits)
    for i, (lab, sp) in enumerate(zip(labels, splits)):
        if lab is not None and ((sp == "train" and i not in kept) or sp == "dev"):
            labels[i], splits[i] = None, "unsup"
    return labels, splits


def _names_in(labels: list, splits: list[str], split: str, target_type: str) -> set[str]:
    """The label names carried by the labelled documents of one split (class or multi_label labels)."""
    if target_type == "class":
        return {label for label, s in zip(labels, splits) if s == split and label is not None}
    return {name for label, s in zip(labels, splits) if s == split and label is not None for name in label}


def _label_array(labels: list, label_names: list[str], target_type: str) -> np.ndarray:
    """Parsed labels -> the Corpus.labels array of `target_type` (shapes: artifacts.TARGET_TYPES).

    class ['b', None], names ['a', 'b'] -> [1, -1]; multi_label [('b',), None] -> [[0, 1], [-1, -1]];
    regression [2.5, None] -> [2.5, nan]
    """
    if target_type == "regression":
        return np.array([np.nan if label is None else label for label in labels], dtype=np.float32)
    ids = {name: i for i, name in enumerate(label_names)}
    if target_type == "class":
        return np.array([UNLABELLED if label is None else ids[label] for label in labels], dtype=np.int32)
    out = np.zeros((len(labels), len(label_names)), dtype=np.int8)
    for row, label in enumerate(labels):
        if label is None:
            out[row] = UNLABELLED
        else:
            out[row, [ids[name] for name in label]] = 1
    return out


def _target_stats(values: list[float]) -> dict[str, Any]:
    """[1.0, 2.0, 3.0] -> {'n': 3, 'mean': 2.0, 'std': 0.8165, 'min': 1.0, 'max': 3.0} (as stored: float32)."""
    array = np.asarray(values, dtype=np.float32).astype(np.float64)
    if not len(array):
        return {"n": 0}
    return {"n": len(array), **{name: round(float(fn(array)), 4)
                                for name, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max))}}


def _derive_splits(cfg: CorpusConfig, labels: list, splits: list[str], target_type: str) -> dict[str, str]:
    """Carve test (and dev) out of the labelled train documents when the source has none; edits `splits`.
    Class labels are stratified; sets and numbers are one group, so the held-out share is a seeded random one.
    A held-out label set naming a label that no training document keeps goes back to train (a label seen once
    stays trainable), so the carve can be a little smaller than the fraction."""
    derived = {}
    for split, fraction in (("test", cfg.test_size), ("dev", cfg.dev_size)):
        if fraction <= 0 or any(s == split and lab is not None for s, lab in zip(splits, labels)):
            continue
        train = [i for i, (s, lab) in enumerate(zip(splits, labels)) if s == "train" and lab is not None]
        groups = [labels[i] for i in train] if target_type == "class" else [""] * len(train)
        held = stratified_split(groups, fraction, cfg.seed)
        returned = 0
        if target_type == "multi_label":
            held_set = set(held)
            kept = {name for j, i in enumerate(train) if j not in held_set for name in labels[i]}
            back = [j for j in held if not set(labels[train[j]]) <= kept]
            held, returned = [j for j in held if set(labels[train[j]]) <= kept], len(back)
        for j in held:
            splits[train[j]] = split
        how = f"stratified {fraction:g} of each train label" if target_type == "class" else f"random {fraction:g} of train"
        extra = f" ({returned} returned to train: they carry a label no other training document has)" if returned else ""
        derived[split] = f"{how}, seed {cfg.seed}: {len(held)} documents{extra}"
    return derived


def _check_labels(labels: list, splits: list[str], where: str, plan: _Plan) -> None:
    target_type = plan.target_type
    if not any(label is not None and s == "train" for label, s in zip(labels, splits)):
        raise DataError(f"the corpus at {where} has no labelled training texts; add a train file (or label folders) "
                        f"beside the test data")
    if target_type == "regression":
        targets = np.array([lab for lab, s in zip(labels, splits) if s == "train" and lab is not None], dtype=np.float32)
        if len(targets) < 2:
            raise DataError(f"the corpus at {where} has one labelled training text; a regression needs at least two: "
                            f"add training rows or check --label-field (corpus.label_field)")
        if targets.min() == targets.max():
            raise DataError(f"every training target of the corpus at {where} is {float(targets[0]):g}; a regression "
                            f"needs targets that vary: check --label-field (corpus.label_field) or the data")
        return
    train = _names_in(labels, splits, "train", target_type)
    if len(train) < 2:
        only = ", ".join(sorted(train)) or "none"
        what = "one class" if target_type == "class" else "one label name"
        raise DataError(f"the training texts of the corpus at {where} have only {what} ({only}); a classifier needs "
                        f"at least two labels: check --label-field (corpus.label_field) or the data")
    for split in ("dev", "test"):
        unseen = sort_labels(_names_in(labels, splits, split, target_type) - train)
        if unseen:
            raise DataError(f"{split} labels never seen in training at {where}: {', '.join(unseen[:10])}; "
                            f"add training examples of them or remove those {split} rows")
    expected = plan.card.get("labels") if plan.card else None
    if expected and set(map(str, expected)) != train:
        raise DataError(f"corpus {plan.name}: labels found in training ({', '.join(sort_labels(train))}) differ from "
                        f"the card's ({', '.join(map(str, expected))}); check the data or the card")


def summarize(corpus: Corpus) -> dict:
    """A few numbers for meta.json and the run log: documents per split, the labels and (when labelled) the
    target type."""
    out = {"documents": len(corpus), "split_sizes": corpus.split_sizes()}
    if corpus.label_names:
        out["target_type"] = corpus.target_type
    return dict(out, label_names=corpus.label_names[:20])


def _volatile(cfg: CorpusConfig) -> tuple[str, ...]:
    """A path source is left out of the key: the fingerprint covers the contents, so a moved folder stays cached.
    max_labelled at none changes nothing, and is left out so that adding it kept every corpus key."""
    out = ("source",) if _source_kind(cfg.source) == "path" else ()
    return out + (("max_labelled",) if cfg.max_labelled is None else ()) + VOLATILE


STAGE = Stage(
    name="corpus",
    version=1,
    config=CorpusConfig,
    inputs={},
    run=load_corpus,
    volatile=_volatile,
    fingerprint=corpus_fingerprint,
    describe=lambda cfg: f"source={cfg.source}" + describe_executor(cfg.executor, cfg.ray_address),
    summary=summarize,
)
