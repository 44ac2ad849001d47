"""The fault suite's shared pieces: the reference runs every fault is compared with, and the results file.

Results: with FAULTS_RESULTS=path (`make test-faults` sets it) the session writes a JSON file with the command,
versions, machine, date and, per check, how many trials ran and how many failed. A check is a test function (its
parametrized cases add up); a test that runs trials of its own reports them through the `check` fixture.
Seeds: FAULTS_SEED fixes the master seed of the random trials (printed with every failure).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import faultkit  # noqa: E402

MASTER_SEED = faultkit.MASTER_SEED


# --- the reference runs -----------------------------------------------------------------------------------------

@dataclass
class Reference:
    """Config A run on an empty cache (with its file operations counted), then config B (classifier seed 1)
    in the same cache: the results every faulted run must reproduce."""

    root: Path
    corpus: Path
    cache: Path
    runs: Path                      # runs/tiny: config A
    runs_b: Path                    # runs/tiny: config B
    keys: dict
    keys_b: dict
    metrics: dict                   # comparable(metrics.json) of A
    metrics_b: dict
    tensors: dict
    tensors_b: dict
    events: list                    # [seconds, operation, path] of A's clean run
    seconds: float                  # A's clean run, wall time
    stderr: str = ""
    sizes: dict = field(default_factory=dict)   # relative path -> bytes, of A's cache and run folder

    @property
    def run_dir(self) -> Path:
        return self.runs / "tiny"

    @property
    def run_dir_b(self) -> Path:
        return self.runs_b / "tiny"


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Reference:
    root = tmp_path_factory.mktemp("reference")
    corpus = faultkit.write_corpus(root / "tiny")
    cache, runs, runs_b = root / "cache", root / "runs", root / "runs_b"
    log = root / "events.json"
    started = time.time()
    done = faultkit.cli(faultkit.run_args(corpus, runs), cache, boot=faultkit.KILL_BOOT, cwd=root,
                        env=faultkit.kill_env(cache, root, 0, log))
    seconds = time.time() - started
    assert done.returncode == 0, done.describe()
    other = faultkit.cli(faultkit.run_args(corpus, runs_b, *faultkit.OTHER_SEED), cache)
    assert other.returncode == 0, other.describe()
    run_a, run_b = runs / "tiny", runs_b / "tiny"
    ref = Reference(
        root=root, corpus=corpus, cache=cache, runs=runs, runs_b=runs_b,
        keys=faultkit.read_keys(run_a), keys_b=faultkit.read_keys(run_b),
        metrics=faultkit.comparable(faultkit.read_metrics(run_a)),
        metrics_b=faultkit.comparable(faultkit.read_metrics(run_b)),
        tensors=faultkit.bundle_tensors(run_a), tensors_b=faultkit.bundle_tensors(run_b),
        events=json.loads(log.read_text()), seconds=seconds, stderr=done.stderr,
    )
    assert ref.keys["classifier"] != ref.keys_b["classifier"] and ref.keys["finetune_lm"] == ref.keys_b["finetune_lm"]
    assert not faultkit.same_tensors(ref.tensors, ref.tensors_b)
    for base in (cache, run_a):
        for p in base.rglob("*"):
            if p.is_file():
                ref.sizes[str(p.relative_to(root))] = p.stat().st_size
    return ref


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A scratch folder that is also the working directory of the processes a test starts."""
    return tmp_path


# --- per-check results ------------------------------------------------------------------------------------------

class Check:
    """Trials a test ran and how many failed; `problems` collects what each failed trial saw."""

    def __init__(self, name: str):
        self.name = name
        self.trials = 0
        self.failures = 0
        self.problems: list[str] = []
        self.details: dict = {}

    def record(self, problems: list[str], label: str) -> None:
        self.trials += 1
        if problems:
            self.failures += 1
            self.problems.append(f"{label}:\n  " + "\n  ".join(problems))

    def assert_clean(self) -> None:
        assert not self.failures, (f"{self.failures} of {self.trials} trials failed (master seed FAULTS_SEED="
                                   f"{MASTER_SEED}):\n" + "\n".join(self.problems))


_RESULTS: dict[str, dict] = {}
_OUTCOMES = {"passed": 0, "failed": 0, "xfailed": 0, "xpassed": 0, "skipped": 0}


def _check_name(item) -> str:
    return getattr(item, "originalname", None) or item.name


@pytest.fixture
def check(request) -> Check:
    found = Check(_check_name(request.node))
    request.node._fault_check = found
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "setup" and report.skipped:
        _tally(item, report, None)
    if report.when != "call":
        return
    _tally(item, report, getattr(item, "_fault_check", None))


def _tally(item, report, found: Check | None) -> None:
    entry = _RESULTS.setdefault(_check_name(item), {"file": item.fspath.basename, "trials": 0, "failures": 0,
                                                     "skipped": 0, "xfailed": 0})
    xfailed = hasattr(report, "wasxfail") and report.skipped
    if report.skipped and not xfailed:
        entry["skipped"] += 1
        _OUTCOMES["skipped"] += 1
        return
    counted = found is not None and found.trials > 0
    trials = found.trials if counted else 1
    failures = found.failures if counted else 0
    if (report.failed or xfailed) and not failures:  # e.g. hypothesis stopped at a failing example
        failures = 1
    entry["trials"] += trials
    if xfailed:
        entry["xfailed"] += failures
        entry["reason"] = str(report.wasxfail)
        _OUTCOMES["xfailed"] += 1
    else:
        entry["failures"] += failures
        _OUTCOMES["xpassed" if hasattr(report, "wasxfail") else ("failed" if report.failed else "passed")] += 1
    if found is not None and found.details:
        entry.setdefault("details", {}).update(found.details)


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("nlp-pipeline", "numpy", "torch", "spacy", "safetensors", "hypothesis", "pytest"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"platform": platform.platform(), "cpu": model, "cpus": os.cpu_count(), "memory_gib": memory,
            "user": "root" if os.getuid() == 0 else "unprivileged"}


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("FAULTS_RESULTS")
    if not path or not _RESULTS:
        return
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=faultkit.REPO).stdout.strip()
    except OSError:
        commit = ""
    checks = dict(sorted(_RESULTS.items()))
    payload = {
        "command": os.environ.get("FAULTS_COMMAND") or "python -m pytest " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit,
        "versions": _versions(),
        "machine": _machine(),
        "master_seed": MASTER_SEED,
        "exit_status": int(exitstatus),
        "totals": {"checks": len(checks), "trials": sum(c["trials"] for c in checks.values()),
                   "failures": sum(c["failures"] for c in checks.values()),
                   "xfailed": sum(c["xfailed"] for c in checks.values()), **{f"tests_{k}": v for k, v in _OUTCOMES.items()}},
        "checks": checks,
    }
    target = Path(path)
    if not target.is_absolute():
        target = faultkit.REPO / target
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
