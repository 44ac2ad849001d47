"""runs/<name>/: the folder a run writes, as one unit, and what the commands read of a configuration's cache.

    target = prepare(Path("runs"), "trec6")      # -> runs/trec6; the name and --runs-dir checked, leftovers cleaned
    result, run_dir = run(configs, store, target)         # the pipeline, then write_run (run_dir None on ranks > 0)
    write_run(target, configs, result, report_artifacts)  # the run folder through replace()
    read_artifact(configs, store, "embeddings:word2vec")  # one artifact: loaded, never computed (or compute=True)
    kept_keys(Path("runs")); collect_garbage(store, ...)  # what `cache gc` keeps: the keys of every keys.json

Layout of runs/<name>/ (RUN_FILES mark a run folder; OWNED are the pipeline's, the rest is the user's and is kept):
    metrics.json   per stage instance: stage, status (hit/miss), seconds, key and its summary metrics
    config.toml    the resolved config of the run
    keys.json      {instance id: cache key}: what `cache gc` keeps
    run.json       who wrote the folder, when, and "model_keys" (the artifacts model/ and report.md came from)
    model/         the predict bundle (export.bundle), when the run reached the classifier
    report.md, report.html and their plots, most_wrong.jsonl (export.report.REPORT_FILES)
    tensorboard/   the run's TensorBoard log (export.tensorboard_log); while stages train its event files grow in
                   a hidden sibling `.NAME.live.PID@HOST.RAND` (live_folder) and are moved in at the end

- A run name is one plain folder name matching NAME_PATTERN ([A-Za-z0-9][A-Za-z0-9._-]*, at most NAME_MAX
  characters): no '.', '..', separator, leading dot or control character. Anything else is a ConfigError (--name).
- prepare() checks up front that --runs-dir can be written (the folder, or its nearest existing parent, takes a
  probe file that is removed at once), so a read-only, full or invalid --runs-dir is one OutputError line before
  any stage runs; it refuses a target that exists but is not a run folder (a file, a link, or a non-empty folder
  without metrics.json, config.toml or keys.json: ConfigError), and removes the leftovers of dead processes.
- replace() builds the new folder with core.atomic.replace_folder (a hidden staging sibling, the old folder moved
  aside, then removed): fill(staging, previous) writes the new files (previous is the current folder, or None),
  then the entries of the current folder that are neither in `owned` (the pipeline's own files, which fill
  decides about) nor hidden are carried over as hard links (copies where a link fails): the user's own notes and
  plots. A reader sees the old folder or the new one, never a mix; an error, Ctrl-C or a kill before the swap
  leaves the old folder as it was (an OSError becomes one OutputError line naming the run folder).
- Leftovers: core.atomic's temporaries of dead processes in --runs-dir are removed by the next prepare(); an
  earlier version's are cleaned too: `.NAME-old-PID` folders of dead PIDs, and `.NAME-XXXXXXXX` staging folders
  older than an hour that hold nothing but metrics.json, config.toml and keys.json. Hidden temporaries inside a
  run folder (`.model-*`, `.report.md-*`) are never carried into the next one.
- read_artifact: compute=False loads a cached artifact or raises MissingInputError naming the command that
  makes it; compute=True runs the pipeline up to it (cached stages load) and returns it.
- kept_keys: a keys.json that is not a JSON object of key strings stops gc with a one-line DataError, since
  skipping it would delete that run's artifacts.
Limits: see core.atomic (atomic against a killed process, not against power loss); two runs writing the same
name at once both finish and the last rename wins.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator

from nlp_pipeline.core import atomic
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError, OutputError

if TYPE_CHECKING:
    from nlp_pipeline.core.runner import RunResult
    from nlp_pipeline.core.store import ArtifactStore

NAME_MAX = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RUN_FILES = ("metrics.json", "config.toml", "keys.json")  # a folder holding one of these is a run folder
RUN_RECORD = "run.json"  # runs/<name>/run.json: who wrote the folder, and from which artifacts its model/ is
KEYS_FILE = "keys.json"  # runs/<name>/keys.json: {instance id: cache key}, what `cache gc` keeps
LEGACY_OLD = re.compile(r"\.(?P<label>.+)-old-(?P<pid>\d+)")
LEGACY_STAGING = re.compile(r"\.(?P<label>.+)-[a-z0-9_]{8}")
LEGACY_AGE = 3600.0  # seconds: an earlier version's staging folder older than this is stale
HINTS = {
    errno.EACCES: "fix its permissions or pass another --runs-dir",
    errno.EPERM: "fix its permissions or pass another --runs-dir",
    errno.EROFS: "pass a --runs-dir on a writable disk",
    errno.ENOSPC: "free some space or pass another --runs-dir",
    errno.EDQUOT: "free some space or pass another --runs-dir",
    errno.ENOTDIR: "a file is in the way; pass another --runs-dir",
    errno.EEXIST: "a file is in the way; pass another --runs-dir",
}


def check_name(name: str) -> str:
    """`name` if it is one plain folder name, else a ConfigError saying what a run name may hold."""
    if not (isinstance(name, str) and len(name) <= NAME_MAX and NAME_PATTERN.fullmatch(name)):
        raise ConfigError(f"run name {name!r} is not one plain folder name: --name takes letters, digits, '.', '_' and "
                          f"'-', starting with a letter or digit, at most {NAME_MAX} characters")
    return name


def prepare(runs_dir: str | Path, name: str) -> Path:
    """runs_dir/name after checking the name, that runs_dir can be written, and that the target is a run folder or
    absent; leftovers of dead processes in runs_dir are removed. Creates nothing that stays."""
    check_name(name)
    runs_dir = Path(runs_dir)
    check_writable(runs_dir)
    if runs_dir.is_dir():
        clean_stale(runs_dir)
    target = runs_dir / name
    check_target(target)
    return target


def check_target(target: Path) -> None:
    """Nothing, when target is absent or a run folder; else a ConfigError (a run would replace it whole)."""
    try:
        unusable = os.path.lexists(target) and not is_run_folder(target)
    except OSError as exc:
        raise OutputError(f"cannot read the run folder {target}: {exc.strerror or exc}; fix its permissions or pass "
                          f"another --name") from None
    if unusable:
        what = "a link" if target.is_symlink() else "a file" if not target.is_dir() else "a folder of other files"
        raise ConfigError(f"{target} is {what}, not a run folder, and a run replaces its folder whole; "
                          f"pass another --name (or --runs-dir)")


def is_run_folder(path: Path) -> bool:
    """A real folder that is empty or holds one of RUN_FILES."""
    if path.is_symlink() or not path.is_dir():
        return False
    return not any(path.iterdir()) or any((path / name).is_file() for name in RUN_FILES)


def check_writable(runs_dir: Path) -> None:
    """OutputError unless a file can be created in runs_dir (or, when it does not exist yet, its nearest existing
    parent, where it would be created)."""
    folder = runs_dir.absolute()
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write the runs folder {runs_dir}: {folder} is a file, not a folder; pass another --runs-dir")
    probe = folder / atomic.temporary_name("runs", "probe")
    try:
        handle = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(handle, b"\0")
        finally:
            os.close(handle)
    except OSError as exc:
        raise _runs_dir_error(runs_dir, exc) from None
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def clean_stale(runs_dir: Path) -> list[Path]:
    """Remove (or, for a moved-aside run folder whose place is empty, restore) the temporaries of dead processes
    in runs_dir, this version's (core.atomic.clean_leftovers) and an earlier one's; returns what was removed or
    restored."""
    done = atomic.clean_leftovers(runs_dir)
    try:
        entries = [entry for entry in runs_dir.iterdir() if entry.name.startswith(".")]
    except OSError:
        return done
    for entry in entries:
        legacy = LEGACY_OLD.fullmatch(entry.name)
        if legacy and NAME_PATTERN.fullmatch(legacy["label"]) and entry.is_dir() and not atomic.alive(int(legacy["pid"])):
            done.append(entry)
            if not os.path.lexists(runs_dir / legacy["label"]):
                atomic.rename_quietly(entry, runs_dir / legacy["label"])
            else:
                atomic.remove(entry)
            continue
        if LEGACY_STAGING.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            try:
                stale = time.time() - entry.stat().st_mtime > LEGACY_AGE and all(p.name in RUN_FILES for p in entry.iterdir())
            except OSError:
                continue
            if stale:
                done.append(entry)
                atomic.remove(entry)
    return done


def replace(target: Path, fill: Callable[[Path, Path | None], None], owned: Collection[str]) -> Path:
    """Build the new run folder with fill(staging, previous) beside `target`, carry the user's files over, and swap
    it into place (see the module notes). Returns target. A target that is not a run folder is refused
    (check_target), never swapped away."""
    target = Path(target)
    check_target(target)

    def build(staging: Path) -> None:
        previous = target if is_run_folder(target) else None
        fill(staging, previous)
        if previous is not None:
            for entry in previous.iterdir():
                if entry.name.startswith(".") or entry.name in owned or os.path.lexists(staging / entry.name):
                    continue
                carry(entry, staging / entry.name)

    return atomic.replace_folder(target, build, error=_run_folder_error)


def carry(source: Path, destination: Path) -> None:
    """source (a file, a link or a folder tree) to destination as hard links, copying what cannot be linked."""
    if source.is_symlink():
        os.symlink(os.readlink(source), destination)
    elif source.is_dir():
        shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, destination)


def _link_or_copy(source: str | Path, destination: str | Path) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _runs_dir_error(runs_dir: Path, exc: OSError) -> OutputError:
    hint = HINTS.get(exc.errno, "pass another --runs-dir")
    return OutputError(f"cannot write the runs folder {runs_dir}: {exc.strerror or exc}; {hint}")


def _run_folder_error(target: Path, exc: OSError) -> OutputError:
    hint = HINTS.get(exc.errno, "pass another --runs-dir")
    return OutputError(f"could not write the run folder {target}: {atomic.reason(exc)}; {hint} (the previous "
                       f"{target.name} folder, if any, is unchanged)")


def live_folder(target: Path) -> Path:
    """Where a run's TensorBoard event files grow while it trains: a hidden sibling `.NAME.live.PID@HOST.RAND` (not
    created here), removed by the run, or as a leftover by a later prepare() once the process is gone."""
    return Path(target).parent / atomic.temporary_name(Path(target).name, "live")


def write_run(run_dir: str | Path, configs: dict[str, Any], result: "RunResult",
              report_artifacts: Callable[[], dict[str, Any]] | None = None,
              echo: Callable[[str], None] | None = None, live_log: Any = None) -> Path:
    """Write runs/<name>/ as one unit (replace(): staged beside it, swapped in whole): metrics.json,
    config.toml, and, when the run reached the classifier and report_artifacts is given, the predict bundle
    model/ and report.md with its plots; then run.json and keys.json. With report_artifacts, also tensorboard/
    (export.tensorboard_log: the finished event files of live_log, this run's LiveLog, moved in).

    report_artifacts() returns the artifacts of export.report.REPORT_ARTIFACTS by instance id; it is called only
    when the current folder's run.json does not record the same artifacts for its model/ and report (so a cached
    rerun loads no model weights), and the bundle and report it had are linked over instead. A run that stops
    before the classifier leaves no model/ or report of an earlier run behind. run.json: the version that wrote
    the folder, when, and "model_keys" (the artifacts model/ and report.md were made from, or null).
    """
    from nlp_pipeline import __version__
    from nlp_pipeline.core import config as config_layer
    from nlp_pipeline.export import bundle, report, tensorboard_log
    from nlp_pipeline.pipeline import to_toml

    run_dir = Path(run_dir)
    model_dir = bundle.RUN_MODEL_DIR
    keys = result.keys()
    model_keys = ({i: keys[i] for i in report.REPORT_ARTIFACTS if i in keys}
                  if "classifier" in keys and report_artifacts is not None else None)
    metrics = {
        r.id: {"stage": r.stage, "status": r.status, "seconds": round(r.seconds, 3), "key": r.key, **r.summary}
        for r in result.reports
    }
    written = []
    loaded: dict[str, Any] = {}
    config_text = to_toml(config_layer.to_dict(configs))

    def artifacts() -> dict[str, Any]:  # report_artifacts(), once
        if not loaded:
            loaded.update(report_artifacts())
        return loaded

    def fill(staging: Path, previous: Path | None) -> None:
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        (staging / "config.toml").write_text(config_text, encoding="utf-8")
        if model_keys is not None:
            if previous is not None and _model_keys(previous) == model_keys:
                for name in (model_dir, *report.REPORT_FILES):
                    if os.path.lexists(previous / name):
                        carry(previous / name, staging / name)
            else:
                bundle.save_bundle(report.run_classifier(artifacts()), staging / model_dir)
                report.write_run_report(staging, artifacts(), title=run_dir.name, config_text=config_text, timings=metrics)
                written.append(True)
        if report_artifacts is not None:
            old_log = previous / tensorboard_log.LOG_DIR if previous is not None else None
            tensorboard_log.write_run_log(staging / tensorboard_log.LOG_DIR, keys, config_text, metrics, artifacts,
                                          live_log, old_log if old_log is not None and old_log.is_dir() else None)
        record = {"name": run_dir.name, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "nlp_pipeline_version": __version__, "model_keys": model_keys}
        (staging / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        (staging / KEYS_FILE).write_text(json.dumps(keys, indent=2) + "\n", encoding="utf-8")

    owned = {*RUN_FILES, RUN_RECORD, model_dir, *report.REPORT_FILES, tensorboard_log.LOG_DIR}
    replace(run_dir, fill, owned)
    if written and echo is not None:
        echo(f"report and predict bundle written to {run_dir}")
    return run_dir


def _model_keys(run_dir: Path) -> dict | None:
    """The artifacts a run folder's model/ and report.md were made from, per its run.json, when both are there."""
    from nlp_pipeline.export.bundle import CONFIG_FILE, RUN_MODEL_DIR
    from nlp_pipeline.export.report import REPORT_FILE

    if not ((run_dir / RUN_MODEL_DIR / CONFIG_FILE).is_file() and (run_dir / REPORT_FILE).is_file()):
        return None
    try:
        record = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("model_keys") if isinstance(record, dict) else None


# --- a run: the pipeline, then its folder --------------------------------------------------------------------------

def run(configs: dict[str, Any], store: "ArtifactStore", target: Path, until: str | None = None,
        force: Collection[str] = (), echo: Callable[[str], None] = lambda line: None) -> tuple["RunResult", Path | None]:
    """Run the pipeline (cached stages are skipped) and write its folder at target (from prepare()); returns the
    RunResult and the run folder. Under torchrun the training stages run data-parallel and process 0 alone writes
    the cache and the run folder (the others return None for it). While stages train, TensorBoard curves grow in
    live_folder(target); write_run moves them into tensorboard/ (echo says once when TensorBoard is missing)."""
    from nlp_pipeline import pipeline
    from nlp_pipeline.export import tensorboard_log
    from nlp_pipeline.export.report import REPORT_ARTIFACTS
    from nlp_pipeline.models import distributed
    from nlp_pipeline.models.observers import observe

    coordinator = distributed.coordinator()  # None unless launched by torchrun with several processes
    main_process = coordinator is None or coordinator.rank == 0
    if main_process and not tensorboard_log.available():
        echo(tensorboard_log.NOTICE)
    live = tensorboard_log.LiveLog(live_folder(target)) if main_process and tensorboard_log.available() else None
    try:
        with observe(live):
            result = pipeline.run(configs, store, until=until, force=force, echo=echo, coordinator=coordinator)
        if coordinator is not None and coordinator.rank != 0:
            distributed.shutdown()  # waits for process 0's run folder
            return result, None

        def report_artifacts() -> dict:
            """What the bundle and report.md are made from. The run above verified every hit: only a refusal (or a
            recompute) of what the report loads prints here."""
            return pipeline.run(configs, store, until=until, keep=REPORT_ARTIFACTS, echo=echo, coordinator=None,
                                quiet_hits=True).artifacts

        run_dir = write_run(target, configs, result, report_artifacts=report_artifacts, echo=echo, live_log=live)
    finally:
        if live is not None:
            live.discard()
    distributed.shutdown()
    return result, run_dir


# --- what commands read of a configuration's cache -----------------------------------------------------------------

def open_store(cache_dir: str | Path | None) -> "ArtifactStore":
    """The artifact store at cache_dir (None: $NLP_PIPELINE_CACHE's default, ~/.cache/nlp-pipeline)."""
    from nlp_pipeline.core.store import ArtifactStore

    return ArtifactStore(cache_dir)


def read_artifact(configs: dict[str, Any], store: "ArtifactStore", instance_id: str, compute: bool = False,
                  echo: Callable[[str], None] = lambda line: None) -> Any:
    """The artifact of one stage instance of this configuration. compute=False: loaded from the cache, never
    computed (a MissingInputError says which command makes it); compute=True: the pipeline runs up to it,
    cached stages load, and echo gets its progress lines."""
    from nlp_pipeline import pipeline
    from nlp_pipeline.core.store import CorruptArtifact

    if compute:
        return pipeline.run(configs, store, until=instance_id, keep=[instance_id], echo=echo).artifacts[instance_id]
    entries = {e.instance.id: e for e in pipeline.show(configs, store)}
    if instance_id not in entries:
        raise MissingInputError(
            f"this configuration has no {instance_id!r} stage (e.g. embeddings.methods lacks it); "
            f"add it with --set and run: nlp-pipeline run --until {instance_id}"
        )
    entry = entries[instance_id]
    hint = f"run: nlp-pipeline run --until {instance_id} (with the same --corpus/--set options)"
    if not entry.hit:
        raise MissingInputError(f"no {instance_id!r} artifact for key {entry.key[:12]}; {hint}")
    try:
        return store.load(entry.instance.stage.name, entry.key)
    except CorruptArtifact as exc:
        raise MissingInputError(f"the cached {instance_id!r} artifact is corrupt ({exc}); {hint}") from None


def pipeline_instance(configs: dict[str, Any], instance_id: str) -> Any:
    """The pipeline's instance `instance_id`, whose config holds what the pipeline sets (e.g. [model])."""
    from nlp_pipeline import pipeline

    return next(i for i in pipeline.instances(configs) if i.id == instance_id)


def upstream_artifacts(configs: dict[str, Any], store: "ArtifactStore", instance_id: str,
                       echo: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """The artifacts an instance reads, by its input names: loaded from the cache, computed when missing."""
    instance = pipeline_instance(configs, instance_id)
    return {name: read_artifact(configs, store, source, compute=True, echo=echo) for name, source in instance.inputs.items()}



def export_language_model(configs: dict[str, Any], store: "ArtifactStore", instance_id: str, out: str | Path,
                          dtype: str = "float16", overwrite: bool = False) -> tuple[Any, dict[str, Any]]:
    """The cached language model `instance_id` (never computed) written as a portable folder at out
    (models.lm_file.save_lm_folder); returns the LanguageModel and save_lm_folder's report."""
    from nlp_pipeline.models.lm_file import save_lm_folder

    lm = read_artifact(configs, store, instance_id)
    return lm, save_lm_folder(lm, out, dtype=dtype, overwrite=overwrite)

RANGE_TEST_TARGETS = ("classifier", "finetune_lm")


def range_test(configs: dict[str, Any], store: "ArtifactStore", target: str, out: str | Path, start_lr: float = 1e-7,
               end_lr: float = 10.0, num_steps: int = 100, trainable_groups: int | None = None,
               echo: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """The learning-rate range test of `target` (RANGE_TEST_TARGETS) on its upstream artifacts (computed when
    missing; weights are not kept), plotted to `out` (PNG); returns the stage's range-test result
    (steps, stopped, suggestion_steepest, suggestion_min10, trainable_groups, layer_groups, ...)."""
    from nlp_pipeline.models.lr_find import plot_lr_find
    from nlp_pipeline.stages import classifier, language_model

    inputs = upstream_artifacts(configs, store, target, echo)  # by the stage's input names
    test = {"classifier": classifier.range_test, "finetune_lm": language_model.range_test}[target]
    result = test(pipeline_instance(configs, target).config, **inputs, start_lr=start_lr, end_lr=end_lr, num_steps=num_steps,
                  trainable_groups=trainable_groups)
    plot_lr_find(result, out, title=f"{target}: learning-rate range test")
    return result


# --- the cache as runs see it: ls, verify, gc ----------------------------------------------------------------------

def cache_listing(store: "ArtifactStore") -> Iterator[tuple[str, str, int, dict]]:
    """(stage, key, bytes, meta) of every cached artifact, unverified; an unreadable meta.json reads as
    {"saved_at": "?", "instance": "(meta.json unreadable)"}."""
    for stage, key, folder in store.entries():
        try:
            meta = store.read_meta(stage, key)
        except (OSError, ValueError):
            meta = None
        if not isinstance(meta, dict):  # unreadable, or not what the store writes: `cache verify` says more
            meta = {"saved_at": "?", "instance": "(meta.json unreadable)"}
        yield stage, key, _folder_bytes(folder), meta


def _folder_bytes(folder: Path) -> int:
    """Size of the files in a folder; what vanishes or cannot be read meanwhile counts 0."""
    total = 0
    try:
        for p in folder.iterdir():
            try:
                total += p.lstat().st_size
            except OSError:
                pass
    except OSError:
        pass
    return total


def verify_cache(store: "ArtifactStore", remove: bool = False) -> Iterator[tuple[str, str, str | None]]:
    """(stage, key, None) for each artifact whose signature and checksums hold, (stage, key, problem) for the
    others, which remove=True deletes (they are recomputed on the next run)."""
    from nlp_pipeline.core.store import CorruptArtifact

    for stage, key, _ in list(store.entries()):
        try:
            store.verify(stage, key)
        except CorruptArtifact as exc:
            if remove:
                store.remove(stage, key)
            yield stage, key, str(exc)
        else:
            yield stage, key, None


def kept_keys(runs_dir: Path) -> tuple[set[str], int]:
    """The cache keys named by <runs_dir>/*/keys.json, and how many runs named them. A keys.json that is not a JSON
    object of key strings stops gc with a one-line error: skipping it would delete that run's artifacts."""
    keep: set[str] = set()
    files = sorted(f for f in runs_dir.glob(f"*/{KEYS_FILE}") if not f.parent.name.startswith(".")) if runs_dir.is_dir() else []
    for keys_file in files:
        try:
            keys = json.loads(keys_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{keys_file} cannot be read ({getattr(exc, 'strerror', None) or exc}); fix or delete "
                            "that run folder, then run `cache gc` again") from None
        if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
            raise DataError(f"{keys_file} is not a JSON object of stage keys; fix or delete that run folder, then "
                            "run `cache gc` again")
        keep.update(keys.values())
    return keep, len(files)


def collect_garbage(store: "ArtifactStore", runs_dir: str | Path, dry_run: bool = False, keep_checkpoints: bool = False,
                    allow_no_runs: bool = False, each: Callable[[str, str], None] = lambda stage, key: None) -> dict[str, int]:
    """Remove the artifacts no <runs_dir>/*/keys.json names (each(stage, key) is called before each one), then,
    unless dry_run, the leftovers of killed runs: temporary save folders and files no running process holds, unused
    lock files and, unless keep_checkpoints, the checkpoints of interrupted training (never those of training in
    progress). Refuses (ConfigError) when runs_dir holds no run, unless allow_no_runs: a wrong --runs-dir would
    empty the cache. Returns {"artifacts", "temporaries", "locks", "checkpoints", "checkpoint_bytes"}."""
    keep, runs = kept_keys(Path(runs_dir))
    if not runs and not allow_no_runs:
        state = "does not exist" if not Path(runs_dir).exists() else f"holds no run (no */{KEYS_FILE})"
        raise ConfigError(f"--runs-dir {runs_dir} {state}, so every cached artifact would be removed; pass the "
                          "--runs-dir of your runs, or --allow-no-runs to remove them all")
    if not dry_run and store.root.exists():
        store.ensure_writable()  # a read-only or foreign cache: one line before anything is touched
    removed = 0
    for stage, key, _ in list(store.entries()):
        if key not in keep:
            each(stage, key)
            if not dry_run:
                store.remove(stage, key)
            removed += 1
    report = {"artifacts": removed, "temporaries": 0, "locks": 0, "checkpoints": 0, "checkpoint_bytes": 0}
    if not dry_run:
        report["temporaries"] = store.clean_temporaries()
        if not keep_checkpoints:
            report["checkpoints"], report["checkpoint_bytes"] = store.clean_checkpoints()
        report["locks"] = store.clean_locks()
    return report
