"""A run's TensorBoard log, runs/<name>/tensorboard/, which `tensorboard --logdir runs/` shows beside every other run.

    live = LiveLog(folder)                        # cli.run: an observer of the training loops while stages train
    with models.training.observe(live): ...       # event files grow in folder/<instance>/ as steps and epochs end
    write_run_log(staging / "tensorboard", artifacts, ...)   # runs.write_run: the log of the run folder

Layout of runs/<name>/tensorboard/ (each folder holding an event file is one TensorBoard run):
- <instance>/ for every training stage of the run (pretrain_lm, finetune_lm, their ":backward" twins spelt
  "-backward", classifier; an ensemble's member m > 1 in classifier-member<m>):
    epoch/*  one point per epoch (step = epoch number, counted across phases and unfreezing stages):
             LM: train_loss, val_loss, val_perplexity, learning_rate (peak LR of the top layer group), tokens_per_second;
             classifier: train_loss, val_loss, val_<primary metric> (val_accuracy, val_micro_f1, val_r2),
             unfreezing_stage and trainable_groups (the stage boundaries are where these step),
             learning_rate/group_<i> (peak LR of layer group i, 0 while frozen); text "unfreezing" lists the stages.
    step/*   one point per optimisation step, only where this run trained the stage itself: train_loss and
             learning_rate/group_<i> (the LR of the step, schedule applied).
  A stage that was a cache hit (and not in the previous log of this run folder), or resumed from a checkpoint, gets
  its epoch/* points rebuilt from the artifact's stored history, so every run's log shows its curves; its step/*
  points exist only in the log of the run that trained it.
- the folder itself: text "config" (the run's config.toml) and "timings" (each stage's status and seconds), and the
  projector files (projector_config.pbtxt, <source>/vectors.tsv + metadata.tsv): word vectors, the fine-tuned LM's
  input embedding, LSA and classifier document vectors with labels, at most PROJECTOR_WORDS / PROJECTOR_DOCUMENTS
  points each (`nlp-pipeline export projector` writes more).
- sources.json: the cache keys the log was made from; a rerun with the same keys links the folder over (config
  text rewritten) instead of loading artifacts, and a stage whose key did not change keeps its folder (with the
  step/* points of the run that trained it).
Live event files are written by LiveLog into a folder the caller names (cli: a hidden sibling of the run folder,
.NAME.live.PID@HOST.RAND, removed after the run; a killed run's is removed by the next run), so the run folder is
never written in place. TensorBoard reads a live file that ends mid-record (a kill) up to its last whole record.
Takes artifacts as loaded by the run; writes with the tensorboard package (torch.utils.tensorboard.SummaryWriter).
Without tensorboard installed nothing is written and available() is False (cli prints NOTICE once).
Limits: scalars and text only (no histograms, graphs or images); TensorBoard keeps showing a live folder's curves
after the folder is gone until it is restarted.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

LOG_DIR = "tensorboard"
SOURCES_FILE = "sources.json"
TRAINED = ("pretrain_lm", "finetune_lm", "pretrain_lm:backward", "finetune_lm:backward", "classifier")
PROJECTOR_WORDS = 2_000        # most frequent words (LM embedding: first vocabulary rows) per word source
PROJECTOR_DOCUMENTS = 1_000    # first documents (corpus order) per document source
FLUSH_SECONDS = 10             # a live event file reaches the disk at least this often
NOTICE = ("TensorBoard log skipped: the tensorboard package is not installed "
          "(pip install 'nlp-pipeline[tensorboard]' to get runs/<name>/tensorboard/)")
_EVENTS = re.compile(r"events\.out\.tfevents\..+")
log = logging.getLogger("nlp_pipeline")


def available() -> bool:
    """Whether the tensorboard package (the event writer) can be imported."""
    return importlib.util.find_spec("tensorboard") is not None


def _writer(folder: Path, flush_secs: int = 120) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), flush_secs=flush_secs)


def run_folder_name(instance: str, member: int = 1) -> str:
    """The sub-folder (TensorBoard run) of a training instance: ("finetune_lm:backward", 1) -> "finetune_lm-backward",
    ("classifier", 3) -> "classifier-member3"."""
    name = instance.replace(":", "-")
    return name if member <= 1 else f"{name}-member{member}"


def epoch_scalars(kind: str, row: dict[str, Any]) -> dict[str, float]:
    """The epoch/* scalars of one history row ("lm" or "classifier"), the same for live and rebuilt logs."""
    out: dict[str, float] = {}

    def put(tag: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[tag] = float(value)

    put("epoch/train_loss", row.get("train_loss"))
    put("epoch/val_loss", row.get("val_loss"))
    if kind == "lm":
        put("epoch/val_perplexity", row.get("val_perplexity"))
        put("epoch/learning_rate", row.get("learning_rate"))
        put("epoch/tokens_per_second", row.get("tokens_per_second"))
        return out
    for key, value in row.items():
        if key.startswith("val_") and key not in ("val_loss", "val_threshold"):
            put(f"epoch/{key}", value)
    put("epoch/unfreezing_stage", row.get("stage"))
    put("epoch/trainable_groups", row.get("trainable_groups"))
    for i, rate in enumerate(row.get("learning_rates") or []):
        put(f"epoch/learning_rate/group_{i}", rate)
    return out


def _unfreezing_text(rows: list[dict[str, Any]]) -> str:
    """Markdown list of a classifier's unfreezing stages: where each starts and what it trains."""
    lines, seen = [], set()
    for n, row in enumerate(rows, start=1):
        stage = row.get("stage")
        if stage in seen:
            continue
        seen.add(stage)
        lines.append(f"- stage {stage} from epoch {n}: top {row.get('trainable_groups')} layer group(s) trainable, "
                     f"peak LR {row.get('learning_rate')}")
    return "\n".join(lines)


class LiveLog:
    """A training observer (models.observers.TrainingObserver) writing event files into folder/<instance>/ as the
    loops train. The instance comes from core.runner.computing() (the loop's label outside the runner). Writing
    errors are logged once and switch the log off: training never fails because of it."""

    def __init__(self, folder: str | Path, flush_secs: int = FLUSH_SECONDS):
        self.folder, self.flush_secs = Path(folder), flush_secs
        self.writers: dict[str, Any] = {}
        self.steps: dict[str, int] = {}      # run folder name -> steps logged
        self.epochs: dict[str, int] = {}     # run folder name -> epochs logged
        self.members: dict[str, int] = {}    # instance -> classifier loops begun
        self.open: set[str] = set()          # run folders whose loop has begun and not ended
        self.current: str | None = None
        self.kind = "lm"
        self.failed = False

    def begin(self, kind: str, label: str, n_groups: int) -> None:
        from nlp_pipeline.core.runner import computing

        instance = computing() or re.sub(r"[^A-Za-z0-9_.-]+", "-", label)
        member = 1
        if kind == "classifier":
            member = self.members[instance] = self.members.get(instance, 0) + 1
        name = run_folder_name(instance, member)
        self.kind, self.current = kind, name
        self.open.add(name)
        self._guard(lambda: self._writer_of(name))

    def _writer_of(self, name: str) -> Any:
        if name not in self.writers:
            self.writers[name] = _writer(self.folder / name, self.flush_secs)
            self.steps.setdefault(name, 0)
            self.epochs.setdefault(name, 0)
        return self.writers[name]

    def step(self, loss: float, learning_rates: list[float]) -> None:
        name = self.current
        if name is None or self.failed:
            return
        self.steps[name] += 1
        n = self.steps[name]

        def write() -> None:
            writer = self.writers[name]
            writer.add_scalar("step/train_loss", loss, n)
            for i, rate in enumerate(learning_rates):
                writer.add_scalar(f"step/learning_rate/group_{i}", rate, n)
        self._guard(write)

    def epoch(self, row: dict[str, Any]) -> None:
        name = self.current
        if name is None or self.failed:
            return
        self.epochs[name] += 1
        n = self.epochs[name]

        def write() -> None:
            writer = self.writers[name]
            for tag, value in epoch_scalars(self.kind, row).items():
                writer.add_scalar(tag, value, n)
            writer.flush()
        self._guard(write)

    def end(self) -> None:
        name, self.current = self.current, None
        if name is not None:
            self.open.discard(name)
            if name in self.writers:
                self._guard(self.writers[name].flush)

    def _guard(self, action: Callable[[], Any]) -> None:
        if self.failed:
            return
        try:
            action()
        except Exception as exc:  # a full disk or a broken writer must not stop training
            self.failed = True
            log.warning("TensorBoard live log stopped (%s: %s); the run's log is rebuilt from the stored history",
                        type(exc).__name__, exc)

    def close(self) -> None:
        """Close every event file (the writers' threads end); safe to call twice."""
        for writer in self.writers.values():
            try:
                writer.close()
            except Exception:
                pass
        self.writers.clear()

    def finished(self, name: str, epochs: int) -> list[Path]:
        """The closed event files of run folder `name` when its loops ended normally, logged `epochs` epochs and
        nothing failed; else [] (the caller rebuilds that folder from the history)."""
        if self.failed or name in self.open or self.epochs.get(name) != epochs or name in self.writers:
            return []
        folder = self.folder / name
        return sorted(p for p in folder.iterdir() if _EVENTS.fullmatch(p.name)) if folder.is_dir() else []

    def discard(self) -> None:
        """Close the writers and remove the live folder."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _members(history: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for row in history:
        out.setdefault(int(row.get("member", 1)), []).append(row)
    return out


def write_history(folder: Path, kind: str, rows: list[dict[str, Any]]) -> None:
    """An event file in `folder` with the epoch/* scalars of history `rows` (and, for a classifier, the text
    "unfreezing"); wall times end now and are spaced by each epoch's recorded seconds."""
    writer = _writer(folder)
    try:
        total = sum(float(r.get("seconds") or 0.0) for r in rows)
        clock = time.time() - total
        for n, row in enumerate(rows, start=1):
            clock += float(row.get("seconds") or 0.0)
            for tag, value in epoch_scalars(kind, row).items():
                writer.add_scalar(tag, value, n, walltime=clock)
        if kind == "classifier" and rows:
            writer.add_text("unfreezing", _unfreezing_text(rows), 0)
    finally:
        writer.close()


def _projector_embeddings(artifacts: dict[str, Any]) -> list[Any]:
    """The run's projector sources from what artifacts holds: word sources keep their most frequent
    PROJECTOR_WORDS points (export_projector's max_points), document sources their first PROJECTOR_DOCUMENTS."""
    from nlp_pipeline.export import projector

    out = []
    for key in sorted(k for k in artifacts if k.startswith("embeddings:")):
        if artifacts[key] is not None:
            out.append(projector.word_embedding(key.split(":", 1)[1], artifacts[key]))
    if artifacts.get("finetune_lm") is not None:
        out.append(projector.lm_embedding("lm", artifacts["finetune_lm"]))
    lsa = artifacts.get("lsa")
    if lsa is not None and len(lsa.doc_vectors):
        docs = projector.document_embedding("lsa-docs", lsa)
        docs.vectors, docs.metadata = docs.vectors[:PROJECTOR_DOCUMENTS], docs.metadata[:PROJECTOR_DOCUMENTS]
        out.append(docs)
    if artifacts.get("classifier") is not None and artifacts.get("numericalization") is not None:
        out.append(projector.classifier_documents("classifier-docs", artifacts["classifier"], artifacts["numericalization"],
                                                  PROJECTOR_DOCUMENTS))
    return out


def _write_projector(folder: Path, artifacts: dict[str, Any]) -> None:
    """The projector files into `folder` (created), when the run has any source."""
    import warnings

    from nlp_pipeline.export.projector import MARKER_FILE, export_projector

    embeddings = _projector_embeddings(artifacts)
    if not embeddings:
        folder.mkdir(parents=True, exist_ok=True)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sources cut to the run log's limits: said in the module notes, not per run
        export_projector(folder, embeddings, max_points=PROJECTOR_WORDS)
    (folder / MARKER_FILE).unlink()  # the hidden marker lets `export projector` replace its own folders; a run folder
                                     # holds no hidden files (they would read as a killed run's leftovers)


def write_run_log(folder: str | Path, sources: dict[str, str], config_text: str, timings: dict[str, Any],
                  artifacts: Callable[[], dict[str, Any]], live: LiveLog | None = None,
                  previous: Path | None = None) -> Path | None:
    """Write the run's TensorBoard log into `folder` (new; see the module notes). `sources`: instance id -> cache
    key of the run's stages (those of TRAINED, and what the projector reads, are recorded in sources.json);
    `artifacts()` loads the run's artifacts by instance id (called only when needed); `live`: this run's LiveLog,
    whose finished event files are moved in; `previous`: the previous log folder, linked over when made from the
    same keys and nothing trained now. Returns folder, or None (nothing written) when tensorboard is not installed
    or the run has no training stage (--until before pretrain_lm)."""
    if not available() or not any(instance in sources for instance in TRAINED):
        return None
    folder = Path(folder)
    recorded = {k: v for k, v in sources.items() if k in TRAINED or k in ("lsa", "numericalization")
                or k.startswith("embeddings:")}
    if live is not None:
        live.close()
    trained_now = bool(live is not None and live.epochs)
    before = _recorded(previous) if previous is not None else None
    if previous is not None and not trained_now and before == recorded:
        _link_tree(previous, folder, top_events=False)
    else:
        loaded = artifacts()
        _write_projector(folder, loaded)
        for instance in TRAINED:
            artifact = loaded.get(instance)
            if artifact is None or not getattr(artifact, "history", None):
                continue
            kind = "classifier" if instance == "classifier" else "lm"
            for member, rows in _members(list(artifact.history)).items():
                name = run_folder_name(instance, member)
                target = folder / name
                moved = live.finished(name, len(rows)) if live is not None else []
                kept = previous / name if previous is not None and (before or {}).get(instance) == sources.get(instance) else None
                if moved:
                    target.mkdir(parents=True, exist_ok=True)
                    for event_file in moved:
                        os.replace(event_file, target / event_file.name)
                    if kind == "classifier":
                        _add_texts(target, {"unfreezing": _unfreezing_text(rows)})
                elif kept is not None and kept.is_dir():  # made from the same artifact: its step/* points too
                    _link_tree(kept, target)
                else:
                    write_history(target, kind, rows)
        (folder / SOURCES_FILE).write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    _add_texts(folder, {"config": _code(config_text), "timings": _timings_table(timings)})
    return folder


def _add_texts(folder: Path, texts: dict[str, str]) -> None:
    """One new event file in folder holding a text summary (step 0) per tag."""
    writer = _writer(folder)
    try:
        for tag, text in texts.items():
            writer.add_text(tag, text, 0)
    finally:
        writer.close()


def _code(text: str) -> str:
    """Markdown code block (TensorBoard's text plugin renders Markdown): every line indented by four spaces."""
    return "\n".join("    " + line for line in text.splitlines())


def _timings_table(timings: dict[str, Any]) -> str:
    lines = ["| stage | status | seconds | key |", "| --- | --- | --- | --- |"]
    for instance, row in timings.items():
        if isinstance(row, dict):
            lines.append(f"| {instance} | {row.get('status', '')} | {row.get('seconds', '')} | {str(row.get('key', ''))[:12]} |")
    return "\n".join(lines)


def _recorded(previous: Path) -> dict | None:
    try:
        value = json.loads((previous / SOURCES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _link_tree(previous: Path, folder: Path, top_events: bool = True) -> None:
    """previous's files as hard links (copies where a link fails); top_events=False leaves out its top-level event
    files (the config text, rewritten by every run)."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if _EVENTS.fullmatch(n)} if not top_events and Path(directory) == previous else set()

    def link(source: str, destination: str) -> None:
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)

    shutil.copytree(previous, folder, symlinks=True, ignore=ignore, copy_function=link)
