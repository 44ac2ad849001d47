"""The run folder runs/<name>/ as one unit: a safe name, checked before a run, replaced whole, leftovers cleaned.

    target = prepare(Path("runs"), "trec6")      # -> runs/trec6; the name and --runs-dir checked, leftovers cleaned
    replace(target, fill, owned={"metrics.json", ...})   # fill(staging, previous) writes the new contents
    write_run(target, configs, result, report_artifacts) # the pipeline's run folder through replace()

- A run name is one plain folder name matching NAME_PATTERN ([A-Za-z0-9][A-Za-z0-9._-]*, at most NAME_MAX
  characters): no '.', '..', separator, leading dot or control character. Anything else is a ConfigError (--name).
- prepare() checks up front that --runs-dir can be written (the folder, or its nearest existing parent, takes a
  probe file that is removed at once), so a read-only, full or invalid --runs-dir is one OutputError line before
  any stage runs; it refuses a target that exists but is not a run folder (a file, a link, or a non-empty folder
  without metrics.json, config.toml or keys.json: ConfigError), and removes the leftovers of dead processes.
- replace() builds the new folder in a hidden sibling `.NAME.staging.PID@HOST.RAND`: fill(staging, previous)
  writes the new files (previous is the current folder, or None), then the entries of the current folder that
  are neither in `owned` (the pipeline's own files, which fill decides about) nor hidden are carried over as
  hard links (copies where a link fails): the user's own notes and plots. The current folder is then moved aside
  (`.NAME.old.PID@HOST.RAND`), the staged one renamed into place, and the old one removed. A reader sees the old
  folder or the new one, never a mix; an error, Ctrl-C or a kill before the swap leaves the old folder as it was
  (an OSError becomes one OutputError line naming the run folder, the staging folder is removed).
- Leftovers: a `.LABEL.{staging,old,probe,live}.PID@HOST.RAND` entry in --runs-dir whose process is gone (this host,
  PID not alive) is removed by the next prepare(); an `.old` folder whose run folder is missing (a kill between the
  two renames) is renamed back instead. Entries of other hosts or of live processes are left alone. An earlier
  version's leftovers are cleaned too: `.NAME-old-PID` folders of dead PIDs, and `.NAME-XXXXXXXX` staging folders
  older than an hour that hold nothing but metrics.json, config.toml and keys.json. Hidden temporaries inside a
  run folder (`.model-*`, `.report.md-*`) are never carried into the next one.
Limits: atomic against a killed process, not against power loss (nothing is fsynced); between the two renames
(microseconds) the run folder does not exist; two runs writing the same name at once both finish and the last
rename wins; POSIX only for the liveness check (elsewhere no leftover is ever removed).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection

from nlp_pipeline.core.errors import ConfigError, NlpPipelineError, OutputError

if TYPE_CHECKING:
    from nlp_pipeline.core.runner import RunResult

NAME_MAX = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RUN_FILES = ("metrics.json", "config.toml", "keys.json")  # a folder holding one of these is a run folder
RUN_RECORD = "run.json"  # runs/<name>/run.json: who wrote the folder, and from which artifacts its model/ is
TEMPORARY = re.compile(r"\.(?P<label>.+)\.(?P<kind>staging|old|probe|live)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[A-Za-z0-9_]+")
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


def host_tag() -> str:
    """This machine's name as it appears in temporary names (letters, digits and '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:40] or "host"


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
    probe = folder / _temporary_name("runs", "probe")
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
    in runs_dir; returns what was removed or restored."""
    done = []
    host = host_tag()
    try:
        entries = list(runs_dir.iterdir())
    except OSError:
        return done
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        match = TEMPORARY.fullmatch(entry.name)
        if match:
            if match["host"] != host or _alive(int(match["pid"])):
                continue
            done.append(entry)
            if match["kind"] == "old" and not os.path.lexists(runs_dir / match["label"]) and NAME_PATTERN.fullmatch(match["label"]):
                _rename_quietly(entry, runs_dir / match["label"])
            else:
                _remove(entry)
            continue
        legacy = LEGACY_OLD.fullmatch(entry.name)
        if legacy and NAME_PATTERN.fullmatch(legacy["label"]) and entry.is_dir() and not _alive(int(legacy["pid"])):
            done.append(entry)
            if not os.path.lexists(runs_dir / legacy["label"]):
                _rename_quietly(entry, runs_dir / legacy["label"])
            else:
                _remove(entry)
            continue
        if LEGACY_STAGING.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            try:
                stale = time.time() - entry.stat().st_mtime > LEGACY_AGE and all(p.name in RUN_FILES for p in entry.iterdir())
            except OSError:
                continue
            if stale:
                done.append(entry)
                _remove(entry)
    return done


def replace(target: Path, fill: Callable[[Path, Path | None], None], owned: Collection[str]) -> Path:
    """Build the new run folder with fill(staging, previous) beside `target`, carry the user's files over, and swap
    it into place (see the module notes). Returns target. A target that is not a run folder is refused
    (check_target), never swapped away."""
    target = Path(target)
    check_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = _make_temporary_folder(target.parent, target.name)
    except OSError as exc:
        raise _run_folder_error(target, exc) from None
    try:
        previous = target if is_run_folder(target) else None
        fill(staging, previous)
        if previous is not None:
            for entry in previous.iterdir():
                if entry.name.startswith(".") or entry.name in owned or os.path.lexists(staging / entry.name):
                    continue
                carry(entry, staging / entry.name)
        _swap(staging, target)
    except NlpPipelineError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _run_folder_error(target, exc) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


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


def _swap(staging: Path, target: Path) -> None:
    """Move target aside, rename staging to target, remove the old folder. When another run puts its folder at
    target in between, that one is moved aside too and the rename tried again."""
    for _ in range(10):
        aside = None
        if os.path.lexists(target):
            aside = target.parent / _temporary_name(target.name, "old")
            try:
                os.rename(target, aside)
            except FileNotFoundError:  # another run moved it first
                aside = None
        try:
            os.rename(staging, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # another run's folder took the place meanwhile
                if aside is not None:
                    shutil.rmtree(aside, ignore_errors=True)
                continue
            if aside is not None:
                _rename_quietly(aside, target)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, "other runs kept replacing it", str(target))


def _temporary_name(label: str, kind: str) -> str:
    return f".{label}.{kind}.{os.getpid()}@{host_tag()}.{secrets.token_hex(4)}"


def _make_temporary_folder(parent: Path, label: str) -> Path:
    while True:
        folder = parent / _temporary_name(label, "staging")
        try:
            folder.mkdir()  # mode 0o777 & ~umask, like any folder the user creates
            return folder
        except FileExistsError:
            continue


def _alive(pid: int) -> bool:
    """Whether a process with this PID runs on this machine (True when that cannot be told)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def _rename_quietly(source: Path, destination: Path) -> None:
    try:
        os.rename(source, destination)
    except OSError:
        pass


def _reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason


def _runs_dir_error(runs_dir: Path, exc: OSError) -> OutputError:
    hint = HINTS.get(exc.errno, "pass another --runs-dir")
    return OutputError(f"cannot write the runs folder {runs_dir}: {exc.strerror or exc}; {hint}")


def _run_folder_error(target: Path, exc: OSError) -> OutputError:
    hint = HINTS.get(exc.errno, "pass another --runs-dir")
    return OutputError(f"could not write the run folder {target}: {_reason(exc)}; {hint} (the previous {target.name} "
                       f"folder, if any, is unchanged)")


def live_folder(target: Path) -> Path:
    """Where a run's TensorBoard event files grow while it trains: a hidden sibling `.NAME.live.PID@HOST.RAND` (not
    created here), removed by the run, or as a leftover by a later prepare() once the process is gone."""
    return Path(target).parent / _temporary_name(Path(target).name, "live")


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
        (staging / "keys.json").write_text(json.dumps(keys, indent=2) + "\n", encoding="utf-8")

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
