"""Helpers of the fault suite: a tiny corpus, the CLI as a real subprocess, a SIGKILL at the N-th file operation,
and the checks every fault ends with (one error line, a clean cache, the same results as a clean run).

    corpus = write_corpus(tmp / "tiny")
    done = cli(["run", *run_args(corpus, tmp / "runs")], cache=tmp / "cache")
    line = error_line(done)                      # the one `error: ...` line of a failed command, no traceback
    comparable(read_metrics(tmp / "runs" / "tiny"))   # metrics.json without timings and hit/miss status

Every pipeline run here is the whole pipeline (corpus .. classifier, the predict bundle and report.md) on 20
short texts with a tiny language model: about ten seconds on one core. model.hidden_dim is 64 so that the
language model and the classifier hold an array stored as a memory-mapped .npy file (the store's large-array
path), which a smaller model would not exercise.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[2]

POSITIVE = ["a wonderful film", "great acting and a great story", "i loved it", "superb and moving", "a joy to watch",
            "brilliant fun", "wonderful and warm", "great fun for all", "a moving and superb story", "loved the acting"]
NEGATIVE = ["a dull film", "terrible acting and a boring story", "i hated it", "awful and tedious", "a pain to watch",
            "boring mess", "dull and cold", "terrible waste of time", "a tedious and awful story", "hated the acting"]

# Every stage on one core in seconds; no pretraining corpus, no word vectors.
SETTINGS = [
    "--set", "tokenization.workers=1", "--set", "numericalization.min_freq=1", "--set", "lsa.n_components=3",
    "--set", "lsa.min_df=1", "--set", "embeddings.methods=[]", "--set", "pretrain_lm.weights=none",
    "--set", "pretrain_lm.corpus=none", "--set", "model.embedding_dim=8", "--set", "model.hidden_dim=64",
    "--set", "model.num_layers=2", "--set", "finetune_lm.batch_size=2", "--set", "finetune_lm.bptt_length=5",
    "--set", "finetune_lm.epochs=1", "--set", "classifier.batch_size=4",
    "--set", "classifier.stage_epochs=[1, 1]", "--set", "classifier.stage_learning_rates=[0.01, 0.005]",
]
OTHER_SEED = ["--set", "classifier.seed=1"]          # config B: shares every artifact with A but the classifier and blend
STAGES = ("corpus", "tokenization", "numericalization", "validation", "lsa", "finetune_lm", "classifier")
VOLATILE_METRICS = ("seconds", "status")              # differ between a clean run, a rerun and a cached run
MASTER_SEED = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1, 10**9))  # printed on failure
RUN_TIMEOUT = 900                                     # seconds; a run that takes this long is stuck (a lock?)


def write_corpus(folder: Path) -> Path:
    """train.jsonl (15 texts) and test.jsonl (5 texts), two labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    train = [r for i, r in enumerate(rows) if i % 4 != 3]
    test = [r for i, r in enumerate(rows) if i % 4 == 3]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test), encoding="utf-8")
    return folder


def run_args(corpus: Path, runs: Path, *extra: str, name: str | None = None) -> list[str]:
    args = ["run", "--corpus", str(corpus), "--runs-dir", str(runs), *SETTINGS, *extra]
    return args + (["--name", name] if name else [])


def environment(cache: Path | None, **extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("NLP_PIPELINE_CACHE", None)
    if cache is not None:
        env["NLP_PIPELINE_CACHE"] = str(cache)
    env.update(extra)
    return env


@dataclass
class Done:
    """A finished CLI process: exit code (negative: killed by that signal), output as text, wall time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        tail = "\n".join(self.stderr.splitlines()[-15:])
        return f"exit {self.returncode} after {self.seconds:.1f}s: nlp-pipeline {' '.join(self.args[:3])} ...\n{tail}"


def command(args: Sequence[str], boot: str | None = None, prefix: Sequence[str] = ()) -> list[str]:
    """The argv of `nlp-pipeline ARGS` in this interpreter (through `boot`, a -c program, if given)."""
    if boot is None:
        return [*prefix, PYTHON, "-m", "nlp_pipeline.cli", *args]
    return [*prefix, PYTHON, "-c", boot, *args]


def cli(args: Sequence[str], cache: Path | None, *, input: bytes | None = None, timeout: float = RUN_TIMEOUT,
        preexec_fn: Callable[[], None] | None = None, env: dict[str, str] | None = None, cwd: Path | None = None,
        boot: str | None = None, prefix: Sequence[str] = ()) -> Done:
    """Run `nlp-pipeline ARGS` to the end as a real process (stdin closed unless `input`); `prefix` is put in
    front of the interpreter (e.g. unprivileged())."""
    started = time.time()
    done = subprocess.run(command(args, boot, prefix), input=input if input is not None else b"",
                          capture_output=True, timeout=timeout, env=env or environment(cache),
                          preexec_fn=preexec_fn, cwd=cwd)
    return Done(list(args), done.returncode, done.stdout.decode("utf-8", "replace"),
                done.stderr.decode("utf-8", "replace"), time.time() - started)


def spawn(args: Sequence[str], cache: Path | None, *, env: dict[str, str] | None = None, cwd: Path | None = None,
          boot: str | None = None, stderr_path: Path | None = None) -> subprocess.Popen:
    """Start `nlp-pipeline ARGS` and return at once; stderr goes to stderr_path (a file: a pipe could fill)."""
    err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(command(args, boot), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=env or environment(cache), cwd=cwd)
    finally:
        if stderr_path:
            err.close()


def usage_error_line(done: Done) -> str:
    """The error line of a failed command: `error: ...` (the package's one line), or click's own rejection of
    an option value (exit 2: `Error: Invalid value for '--cache-dir': ...` after two lines of usage hint)."""
    no_traceback(done)
    if done.returncode == 2 and "error: " not in done.stderr:
        lines = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
        assert len(lines) == 1, done.describe()
        return lines[0]
    return error_line(done, code=None)


def error_line(done: Done, code: int | None = 1) -> str:
    """The one `error: ...` line of a failed command: non-zero exit (`code` if given), exactly one error line,
    no traceback. Other stderr lines (a stage's log before the failure, warnings) are allowed."""
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.describe()
    assert done.returncode != 0, done.describe()
    if code is not None:
        assert done.returncode == code, done.describe()
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.describe()
    return lines[0]


def no_traceback(done: Done) -> None:
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.describe()


# --- what a run leaves ------------------------------------------------------------------------------------------

def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def comparable(metrics: dict) -> dict:
    """metrics.json without what differs between a clean run, a rerun and a cached run (timings, hit/ran)."""
    return {stage: {k: v for k, v in values.items() if k not in VOLATILE_METRICS} for stage, values in metrics.items()}


def read_keys(run_dir: Path) -> dict:
    return json.loads((run_dir / "keys.json").read_text(encoding="utf-8"))


def bundle_tensors(run_dir: Path) -> dict[str, np.ndarray]:
    """The arrays of a run's predict bundle (model/ and its linear model), by file and name. Compared as arrays:
    the safetensors header orders its metadata differently from one write to the next."""
    from safetensors.numpy import load_file

    out = {}
    for name in ("model.safetensors", "linear.safetensors"):
        path = run_dir / "model" / name
        if path.exists():
            out.update({f"{name}:{k}": v for k, v in load_file(str(path)).items()})
    return out


def same_tensors(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def hidden_entries(runs: Path) -> list[str]:
    """Hidden entries beside and inside the run folders: staging, moved-aside and probe leftovers."""
    if not runs.is_dir():
        return []
    return sorted(str(p.relative_to(runs)) for p in runs.rglob(".*"))


CACHE_TEMPORARY = re.compile(r"\.(tmp|trash|probe|secret|checkpoint)-")


def cache_leftovers(cache: Path) -> list[str]:
    """What a killed process can leave in the cache and `cache gc` must remove: save folders (.tmp-*), folders
    being deleted (.trash-*), probe and secret temporaries, checkpoints of interrupted training, lock files."""
    found = []
    if not cache.is_dir():
        return found
    for p in sorted(cache.iterdir()):
        if CACHE_TEMPORARY.match(p.name):
            found.append(p.name)
        elif p.name == ".locks" and p.is_dir():
            found += [f".locks/{q.name}" for q in sorted(p.iterdir())]
        elif p.is_dir() and not p.name.startswith("."):
            found += [f"{p.name}/{q.name}" for q in sorted(p.iterdir()) if q.name.startswith(".")]
    return found


def artifact_keys(cache: Path) -> dict[str, set[str]]:
    """The complete artifact folders (with meta.json) per stage."""
    out: dict[str, set[str]] = {}
    if cache.is_dir():
        for meta in cache.glob("*/*/meta.json"):
            if not meta.parent.name.startswith(".") and not meta.parent.parent.name.startswith("."):
                out.setdefault(meta.parent.parent.name, set()).add(meta.parent.name)
    return out


def verify(cache: Path) -> Done:
    return cli(["cache", "verify"], cache, timeout=300)


def verified_clean(cache: Path) -> list[str]:
    """Problems `cache verify` reports (empty when every artifact checks out)."""
    done = verify(cache)
    problems = []
    if done.returncode != 0 or "CORRUPT" in done.stdout or "Traceback" in done.stderr:
        problems.append(f"cache verify: {done.describe()}\n{done.stdout[-2000:]}")
    return problems


def copy_cache(source: Path, target: Path, keep: Sequence[str] | None = None, keys: dict[str, str] | None = None) -> Path:
    """A copy of a cache (secret included, locks not); with `keep`, only those stages' artifacts (and with
    `keys`, only the artifacts of those keys)."""
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o755)
    shutil.copy2(source / ".secret", target / ".secret")
    for stage_dir in source.iterdir():
        if stage_dir.name.startswith(".") or not stage_dir.is_dir():
            continue
        if keep is not None and stage_dir.name not in keep:
            continue
        for folder in stage_dir.iterdir():
            if folder.name.startswith(".") or (keys is not None and folder.name not in keys.values()):
                continue
            shutil.copytree(folder, target / stage_dir.name / folder.name, copy_function=shutil.copy2)
    return target


def snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- a SIGKILL at the N-th file operation -----------------------------------------------------------------------

# Runs the CLI with the file operations under FAULT_ROOT counted: each call of open() for writing, os.open for
# writing, mkdir, rename, replace, link, symlink, unlink, rmdir, chmod and fsync is two events (before, after).
# FAULT_KILL_AT=N sends SIGKILL to the process itself at event N (0: never); FAULT_EVENT_LOG=path writes every
# event as [seconds since start, name, path relative to FAULT_ROOT] when the process exits normally.
KILL_BOOT = r'''
import builtins, io, json, os, signal, sys, time, atexit, runpy
_root = os.path.realpath(os.environ["FAULT_ROOT"]) + os.sep
_kill_at = int(os.environ.get("FAULT_KILL_AT") or 0)
_log = os.environ.get("FAULT_EVENT_LOG")
_t0 = time.monotonic()
_count = 0
_events = []
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC

def _rel(p, dir_fd=None):
    try:
        if isinstance(p, int):
            p = os.readlink(f"/proc/self/fd/{p}")
        p = os.fsdecode(p)
        if dir_fd is not None and not os.path.isabs(p):
            p = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), p)
        p = os.path.abspath(p)
    except (TypeError, ValueError, OSError):
        return None
    return p[len(_root):] if p.startswith(_root) else None

def _event(name, rel):
    global _count
    _count += 1
    if _log:
        _events.append([round(time.monotonic() - _t0, 4), name, rel])
    if _count == _kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

def _wrap(module, name, npaths, writes=None):
    real = getattr(module, name)
    def wrapper(*args, **kwargs):
        rel = None
        if writes is None or writes(args, kwargs):
            for p in args[:npaths]:
                rel = _rel(p, kwargs.get("dir_fd") or kwargs.get("src_dir_fd"))
                if rel is not None:
                    break
        if rel is None:
            return real(*args, **kwargs)
        _event(name + ":before", rel)
        result = real(*args, **kwargs)
        _event(name + ":after", rel)
        return result
    wrapper.__wrapped__ = real
    setattr(module, name, wrapper)
    return wrapper

def _open_writes(args, kwargs):
    mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
    return isinstance(mode, str) and any(c in mode for c in "wax+")

def _os_open_writes(args, kwargs):
    flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
    return bool(flags & _WRITE_FLAGS)

for _name in ("rename", "replace", "link", "symlink"):
    _wrap(os, _name, 2)
for _name in ("unlink", "remove", "rmdir", "mkdir", "chmod", "fsync"):
    _wrap(os, _name, 1)
_wrap(os, "open", 1, _os_open_writes)
builtins.open = io.open = _wrap(builtins, "open", 1, _open_writes)

if _log:
    def _write_log():
        with builtins.open.__wrapped__(_log, "w") as handle:
            json.dump(_events, handle)
    atexit.register(_write_log)

sys.argv = ["nlp-pipeline", *sys.argv[1:]]
runpy.run_module("nlp_pipeline.cli", run_name="__main__", alter_sys=True)
'''


def kill_env(cache: Path, root: Path, kill_at: int = 0, event_log: Path | None = None) -> dict[str, str]:
    extra = {"FAULT_ROOT": str(root), "FAULT_KILL_AT": str(kill_at)}
    if event_log is not None:
        extra["FAULT_EVENT_LOG"] = str(event_log)
    return environment(cache, **extra)


def kill_after(args: Sequence[str], cache: Path, delay: float, cwd: Path | None = None,
               timeout: float = RUN_TIMEOUT) -> Done:
    """Run the CLI and SIGKILL it `delay` seconds after it starts (if it has not finished by then)."""
    started = time.time()
    process = subprocess.Popen(command(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=environment(cache), cwd=cwd)
    try:
        out, err = process.communicate(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate(timeout=timeout)
    return Done(list(args), process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                time.time() - started)


# --- unprivileged processes and read-only mounts ----------------------------------------------------------------

NOBODY = 65534
_NO_OVERRIDE = "-dac_override,-dac_read_search,-fowner"


def unprivileged() -> list[str] | None:
    """A command prefix under which permission bits bind this user: as root, `setpriv` drops the capabilities
    that let root write any folder (the interpreter lives under /root, so another uid could not even start it);
    [] when not root; None when root and setpriv is missing."""
    if os.getuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", f"--bounding-set={_NO_OVERRIDE}", "--"]


def mount(*args: str) -> bool:
    """`mount ARGS` as root; False if this machine does not allow it (no root, no CAP_SYS_ADMIN)."""
    if os.getuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@dataclass
class ReadOnly:
    """`path` made read-only for everyone, root included (a read-only bind mount), while the context lasts."""

    path: Path
    mounted: bool = field(default=False, init=False)

    def __enter__(self) -> "ReadOnly":
        if not mount("--bind", str(self.path), str(self.path)):
            return self
        self.mounted = True
        if not mount("-o", "remount,ro,bind", str(self.path)):
            self.__exit__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.mounted:
            umount(self.path)
            self.mounted = False


def set_file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn: no file of the process may grow past `limit` bytes (writes fail with EFBIG: Python ignores
    SIGXFSZ), the way a full disk stops a save part-way."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def set_memory_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn capping the address space, so a file claiming absurd sizes cannot take the machine's memory."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def fresh_copy(ref: Any, target: Path, with_runs: bool = True) -> tuple[Path, Path]:
    """A copy of the reference cache (A's and B's artifacts) and, with_runs, of A's run folder: (cache, runs)."""
    cache = copy_cache(ref.cache, target / "cache")
    runs = target / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if with_runs:
        shutil.copytree(ref.run_dir, runs / "tiny", symlinks=True)
    return cache, runs


def matches_reference(ref: Any, run_dir: Path, config: str = "A") -> list[str]:
    """Problems of a finished run folder against the reference run of `config` (A or B): its keys, metrics and
    the predict bundle's arrays, report.md, and agreement of keys.json, metrics.json and run.json."""
    keys, metrics, tensors = ((ref.keys, ref.metrics, ref.tensors) if config == "A" else
                              (ref.keys_b, ref.metrics_b, ref.tensors_b))
    problems = []
    try:
        got_keys = read_keys(run_dir)
        got_metrics = read_metrics(run_dir)
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{run_dir} is not a complete run folder: {exc}"]
    if got_keys != keys:
        problems.append(f"keys.json differs from the clean run of {config}: {got_keys} != {keys}")
    if comparable(got_metrics) != metrics:
        problems.append(f"metrics.json differs from the clean run of {config}:\n{comparable(got_metrics)}\n!=\n{metrics}")
    if (record.get("model_keys") or {}).get("classifier") != got_keys.get("classifier"):
        problems.append(f"run.json's model_keys {record.get('model_keys')} do not name keys.json's classifier")
    try:
        if not same_tensors(bundle_tensors(run_dir), tensors):
            problems.append(f"the predict bundle in {run_dir / 'model'} is not the clean run's model of {config}")
    except Exception as exc:  # noqa: BLE001 - an unreadable bundle is a finding of its own
        problems.append(f"the predict bundle in {run_dir / 'model'} cannot be read: {type(exc).__name__}: {exc}")
    if not (run_dir / "report.md").is_file():
        problems.append(f"{run_dir} has no report.md")
    return problems
