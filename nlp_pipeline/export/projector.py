"""Embedding Projector export: one folder that `tensorboard --logdir DIR` shows in its Projector tab and whose
TSV pairs load into the standalone projector (projector.tensorflow.org, "Load").

Takes a list of named embeddings (any (n, dim) matrix with one metadata row per vector: word vectors,
LSA document vectors, later LM input embeddings and classifier document vectors) and writes:

    DIR/projector_config.pbtxt          one `embeddings {}` entry per source, paths RELATIVE to DIR
    DIR/<name>/vectors.tsv              float32 values, tab-separated, one line per point, no header
    DIR/<name>/metadata.tsv             one line per point; a header line only with two or more columns
    DIR/.nlp-pipeline-projector.json    marker: what was written (lets a later export replace this folder)

TensorBoard's projector plugin reads tensor files as TSV (binary tensors are only tried when the file is not
valid UTF-8, which float bytes can accidentally be), so TSV is the one reliable format. Metadata fields are
made single-line and visible (tabs and newlines escaped, whitespace-only tokens shown as '␣'). At most
`max_points` (100,000) points per source are kept, the highest-priority ones (word frequency), with a warning.
The folder is written under a hidden temporary name and renamed into place (core.atomic.replace_folder):
nothing is ever half-written. An existing folder is replaced only if it is empty or an earlier export (it
carries the marker).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nlp_pipeline.artifacts import SPLITS, LsaResult, WordVectors, label_text
from nlp_pipeline.core.atomic import replace_folder
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError
from nlp_pipeline.export.vectors import escape_token, format_float_rows

MARKER_FILE = ".nlp-pipeline-projector.json"
CONFIG_FILE = "projector_config.pbtxt"
MAX_POINTS = 100_000
WORD_SOURCES = ("word2vec", "fasttext", "glove", "pretrained")
DOCUMENT_SOURCES = ("lsa-docs",)
SOURCES = WORD_SOURCES + DOCUMENT_SOURCES
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class MissingSourceError(MissingInputError):
    """An export source (e.g. 'glove') has not been computed for this configuration; `source` names it."""

    def __init__(self, source: str, hint: str = ""):
        self.source = source
        super().__init__(f"no {source!r} embeddings have been computed for this configuration"
                         + (f"; {hint}" if hint else "; run the pipeline stage that produces them first"))


@dataclass
class ProjectorEmbedding:
    """One point cloud: a name, a (n, dim) matrix and a metadata row per point."""

    name: str                               # tensor name in the projector and sub-folder name: letters, digits, _ . -
    vectors: np.ndarray                     # (n, dim) numbers, written as float32
    metadata: Sequence[Sequence[Any]]       # n rows of column values (str or numbers)
    header: Sequence[str] | None = None     # column names; needed (and written) only with two or more columns
    priority: np.ndarray | None = None      # (n,) larger is kept first beyond max_points (e.g. counts); None keeps the first rows


def word_embedding(name: str, vectors: WordVectors) -> ProjectorEmbedding:
    """Word vectors with 'word' and 'frequency' columns, most frequent kept first."""
    counts = np.asarray(vectors.counts, dtype=np.int64)
    rows = [(key, int(count)) for key, count in zip(vectors.keys, counts.tolist())]
    return ProjectorEmbedding(name, np.asarray(vectors.vectors), rows, ("word", "frequency"), counts)


def document_embedding(name: str, lsa: LsaResult) -> ProjectorEmbedding:
    """LSA document vectors with 'label', 'split' and 'text' (snippet) columns, in corpus order."""
    n = len(lsa.doc_vectors)
    labels = np.asarray(lsa.labels)
    splits = np.asarray(lsa.splits)
    snippets = list(lsa.snippets) if len(lsa.snippets) == n else [""] * n
    rows = [(label_text(labels, i, lsa.label_names), SPLITS[int(split)], snippet)
            for i, (split, snippet) in enumerate(zip(splits.tolist(), snippets))]
    return ProjectorEmbedding(name, np.asarray(lsa.doc_vectors), rows, ("label", "split", "text"))


def lm_embedding(name: str, lm: Any) -> ProjectorEmbedding:
    """A language model's input embedding rows with 'token' and 'vocab_rank' columns, vocabulary order kept first."""
    weight = np.asarray(lm.state_dict["encoder.embedding.weight"], dtype=np.float32)
    rows = [(token, rank) for rank, token in enumerate(lm.vocab.itos)]
    return ProjectorEmbedding(name, weight, rows, ("token", "vocab_rank"), -np.arange(len(rows)))


def classifier_documents(name: str, classifier: Any, data: Any, limit: int) -> ProjectorEmbedding:
    """The classifier's concat-pooled vectors of the first `limit` documents of `data` (a Numericalized, corpus
    order) with 'label', 'split' and 'text' (its first 30 tokens) columns. Runs the classifier on the CPU."""
    import torch

    from nlp_pipeline.models.inference import load_classifier
    from nlp_pipeline.models.training import predict_classifier
    from nlp_pipeline.rules import detokenize

    model = load_classifier(classifier)
    indexes = np.arange(min(limit, len(data)))
    vectors = predict_classifier(model, np.asarray(data.ids, dtype=np.int64), np.asarray(data.offsets), indexes,
                                 data.vocab.stoi["xxpad"], classifier.max_length, 64, torch.device("cpu"), features=True)
    rows = [(label_text(data.labels, int(i), data.label_names), SPLITS[int(data.splits[i])],
             detokenize(data.vocab.tokens(data.doc_ids(int(i))[:30]))) for i in indexes]
    return ProjectorEmbedding(name, vectors, rows, ("label", "split", "text"))


def collect_sources(sources: Sequence[str], artifacts: dict[str, Any], hints: dict[str, str] | None = None) -> list[ProjectorEmbedding]:
    """ProjectorEmbeddings for the named sources from loaded artifacts ({'glove': WordVectors, 'lsa-docs':
    LsaResult, ...}); a source whose artifact is missing or None raises MissingSourceError (with hints[source],
    e.g. the command that computes it), an unknown name ConfigError."""
    out = []
    for source in sources:
        if source not in SOURCES:
            raise ConfigError(f"unknown projector source {source!r}; choose from {', '.join(SOURCES)}")
        artifact = artifacts.get(source)
        if artifact is None:
            raise MissingSourceError(source, (hints or {}).get(source, ""))
        out.append(document_embedding(source, artifact) if source in DOCUMENT_SOURCES else word_embedding(source, artifact))
    return out


def _as_embedding(item: ProjectorEmbedding | tuple) -> ProjectorEmbedding:
    if isinstance(item, ProjectorEmbedding):
        return item
    return ProjectorEmbedding(*item)


def _check(embedding: ProjectorEmbedding) -> tuple[np.ndarray, list[list[str]], list[str] | None]:
    name = embedding.name
    if not _NAME.match(name):
        raise ConfigError(f"projector embedding name {name!r} must use letters, digits, '_', '.' or '-' (it names a folder)")
    vectors = np.asarray(embedding.vectors)
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise DataError(f"projector embedding {name!r} has shape {vectors.shape}; expected (points, dimensions) with both > 0")
    if not np.issubdtype(vectors.dtype, np.number) or not np.isfinite(vectors).all():
        raise DataError(f"projector embedding {name!r} holds non-numeric, NaN or infinite values; the projector cannot show them")
    rows = [list(row) if isinstance(row, (list, tuple)) else [row] for row in embedding.metadata]
    if len(rows) != len(vectors):
        raise DataError(f"projector embedding {name!r} has {len(vectors):,} vectors but {len(rows):,} metadata rows; they must match")
    widths = {len(row) for row in rows}
    if len(widths) != 1 or 0 in widths:
        raise DataError(f"projector embedding {name!r}: metadata rows must all have the same number (>= 1) of columns, got {sorted(widths)}")
    width = widths.pop()
    header = list(embedding.header) if embedding.header is not None else None
    if width >= 2:
        if header is None or len(header) != width:
            raise DataError(f"projector embedding {name!r}: {width} metadata columns need a header of {width} names, got {header}")
    else:
        header = None  # the projector reads a single column without header
    return vectors, rows, header


def _select(embedding: ProjectorEmbedding, n: int, max_points: int) -> np.ndarray | None:
    """Indexes of kept points, in their original order, or None when all are kept."""
    if n <= max_points:
        return None
    if embedding.priority is None:
        return np.arange(max_points)
    priority = np.asarray(embedding.priority)
    return np.sort(np.argsort(-priority, kind="stable")[:max_points])


def _metadata_text(rows: list[list[Any]], header: list[str] | None) -> str:
    lines = ["\t".join(escape_token(str(h), spaces=False) for h in header)] if header else []
    lines.extend("\t".join(escape_token(str(value), spaces=False) for value in row) for row in rows)
    return "\n".join(lines) + "\n"


def _pbtxt_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _prepare_target(out_dir: Path) -> bool:
    """Check that out_dir may be written; True when it exists (and will be replaced)."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is a file; choose a new folder for the projector export")
    if (out_dir / MARKER_FILE).is_file() or not any(out_dir.iterdir()):
        return True
    raise ConfigError(f"{out_dir} exists and is not an earlier projector export; choose a new folder or remove it")


def export_projector(out_dir: str | Path, embeddings: Sequence[ProjectorEmbedding | tuple], max_points: int = MAX_POINTS,
                     threads: int = 2) -> dict:
    """Write a TensorBoard projector log directory plus standalone TSV pairs (see the module docstring).

    `embeddings` holds ProjectorEmbedding objects or tuples (name, vectors, metadata rows, header[, priority]).
    Returns {'out_dir', 'replaced', 'embeddings': [{'name', 'points', 'dropped', 'dim', 'columns', 'vectors',
    'metadata'}]}; warns (UserWarning) for each source cut to max_points. Raises ConfigError for a bad folder
    or name, DataError for inconsistent inputs; on any error nothing is left behind.
    """
    out_dir = Path(out_dir).expanduser()
    items = [_as_embedding(item) for item in embeddings]
    if not items:
        raise ConfigError("nothing to export: give at least one embedding source")
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise ConfigError(f"projector embedding names must be distinct, got {names}")
    checked = [_check(item) for item in items]
    replaced = _prepare_target(out_dir)
    report: list[dict[str, Any]] = []

    def fill(temporary: Path) -> None:
        config_lines = []
        for item, (vectors, rows, header) in zip(items, checked):
            kept = _select(item, len(vectors), max_points)
            dropped = 0
            if kept is not None:
                dropped = len(vectors) - len(kept)
                vectors, rows = vectors[kept], [rows[i] for i in kept]
                what = "most frequent" if item.priority is not None else "first"
                warnings.warn(f"projector source {item.name!r}: kept the {max_points:,} {what} of {len(kept) + dropped:,} "
                              f"points, dropped {dropped:,} (the projector shows at most {max_points:,})", stacklevel=2)
            folder = temporary / item.name
            folder.mkdir()
            with open(folder / "vectors.tsv", "wb") as handle:
                for chunk in format_float_rows(np.asarray(vectors, dtype=np.float32), "\t", None, threads):
                    handle.write(chunk)
            (folder / "metadata.tsv").write_text(_metadata_text(rows, header), encoding="utf-8", newline="\n")
            config_lines += [
                "embeddings {",
                f"  tensor_name: {_pbtxt_string(item.name)}",
                f"  tensor_path: {_pbtxt_string(item.name + '/vectors.tsv')}",
                f"  metadata_path: {_pbtxt_string(item.name + '/metadata.tsv')}",
                f"  tensor_shape: {len(vectors)}",
                f"  tensor_shape: {vectors.shape[1]}",
                "}",
            ]
            report.append({"name": item.name, "points": len(vectors), "dropped": dropped, "dim": int(vectors.shape[1]),
                           "columns": list(header) if header else 1, "vectors": f"{item.name}/vectors.tsv",
                           "metadata": f"{item.name}/metadata.tsv"})
        (temporary / CONFIG_FILE).write_text("\n".join(config_lines) + "\n", encoding="utf-8")
        (temporary / MARKER_FILE).write_text(json.dumps({"format": 1, "embeddings": report}, indent=1), encoding="utf-8")

    replace_folder(out_dir, fill)
    return {"out_dir": str(out_dir), "replaced": replaced, "embeddings": report}

