"""SIGKILL at random moments of a whole pipeline run (stages, saves, the predict bundle, report.md, the run
folder's swap), then the checks a user relies on after a crash.

Each trial starts from a random state: an empty cache, or one holding the artifacts up to some stage, and either
no run folder or the folder of another config (B, another classifier seed) at runs/tiny, which the run is to
replace. It then kills `nlp-pipeline run` (config A) either at a random one of the file operations the run makes
(every write, mkdir, rename, link, unlink, fsync, counted before and after it) or after a random delay. Then:
  - right after the kill, runs/tiny is the previous folder or the new one, complete, never a mix (keys.json,
    metrics.json, run.json and the bundle agree);
  - the rerun completes (a lock or leftover of the killed process blocks nothing);
  - its metrics, keys and predict bundle equal a clean run's (A on an empty cache), report.md is written;
  - nothing hidden is left in runs/, `cache verify` is clean, and `cache gc` leaves no temporary folder, secret
    or probe temporary, checkpoint or lock file behind, and keeps every artifact the run names.
A failing trial prints its seed: FAULTS_TRIAL_SEED=<seed> reruns that trial alone.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest

import faultkit
from faultkit import MASTER_SEED

CUTS = {  # which stages' artifacts the cache holds when the killed run starts
    "empty": (),
    "tokens": ("corpus", "tokenization", "numericalization"),
    "model": ("corpus", "tokenization", "numericalization", "validation", "lsa", "finetune_lm"),
    "all": faultkit.STAGES,
}


_MEASURED: dict[str, tuple[list, float]] = {}


def _measured(ref, cut: str) -> tuple[list, float]:
    """The file operations and the wall time of a run starting from `cut`, measured once per session by a run
    that counts them (the reference run is the one of an empty cache)."""
    if cut == "empty":
        return ref.events, ref.seconds
    if cut not in _MEASURED:
        folder = ref.root / f"count-{cut}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        cache, log = faultkit.copy_cache(ref.cache, folder / "cache", keep=CUTS[cut]), folder / "events.json"
        started = time.time()
        done = faultkit.cli(faultkit.run_args(ref.corpus, folder / "runs"), cache, boot=faultkit.KILL_BOOT, cwd=folder,
                            env=faultkit.kill_env(cache, folder, 0, log))
        assert done.returncode == 0, done.describe()
        _MEASURED[cut] = (json.loads(log.read_text()), time.time() - started)
        shutil.rmtree(folder, ignore_errors=True)
    return _MEASURED[cut]


def _run_folder_is_whole(ref, runs: Path, prior: bool) -> list[str]:
    """Right after the kill: runs/tiny is B's folder as it was, or A's folder complete; it may be missing only
    while a moved-aside copy waits beside it (a kill between the two renames of the swap)."""
    run_dir = runs / "tiny"
    if not run_dir.exists():
        aside = [p.name for p in runs.iterdir() if p.name.startswith(".tiny.old.")] if runs.is_dir() else []
        if prior and not aside:
            return ["the previous run folder vanished and nothing waits to be restored"]
        return []
    try:
        keys = faultkit.read_keys(run_dir)
    except (OSError, ValueError) as exc:
        return [f"right after the kill, {run_dir} has no readable keys.json: {exc}"]
    if prior and keys == ref.keys_b:
        return [f"right after the kill, B's folder changed: {p}" for p in faultkit.matches_reference(ref, run_dir, "B")]
    if keys == ref.keys:
        return [f"right after the kill, A's folder is not whole: {p}" for p in faultkit.matches_reference(ref, run_dir, "A")]
    return [f"right after the kill, {run_dir}/keys.json names neither config: {keys}"]


def kill_trial(ref, seed: int, folder: Path, cut: str | None = None, mode: str | None = None,
               prior: bool | None = None) -> tuple[list[str], dict]:
    """One trial (see the module docstring); returns (problems, what was done)."""
    rng = random.Random(seed)
    drawn = rng.choice(sorted(CUTS)), rng.choice(["operation", "operation", "timer"]), rng.random() < 0.5
    cut, mode = cut or drawn[0], mode or drawn[1]   # what a test fixes leaves the rest of the draws as they were
    prior = drawn[2] if prior is None else prior
    kept = CUTS[cut]
    folder.mkdir(parents=True, exist_ok=True)
    cache, runs = folder / "cache", folder / "runs"
    if kept:
        faultkit.copy_cache(ref.cache, cache, keep=kept)
    runs.mkdir()
    if prior:
        shutil.copytree(ref.run_dir_b, runs / "tiny", symlinks=True)
    args = faultkit.run_args(ref.corpus, runs)
    info = {"seed": seed, "cut": cut, "mode": mode, "prior_folder": prior}
    operations, seconds = _measured(ref, cut)
    if mode == "operation":
        at = rng.randint(1, max(1, len(operations)))
        info["kill_at"] = f"{at} of ~{len(operations)}: {operations[at - 1][1]} {operations[at - 1][2]}" if operations else at
        killed = faultkit.cli(args, cache, boot=faultkit.KILL_BOOT, env=faultkit.kill_env(cache, folder, at), cwd=folder)
    else:
        delay = rng.uniform(0.2, seconds)
        info["kill_after_seconds"] = round(delay, 2)
        killed = faultkit.kill_after(args, cache, delay, cwd=folder)
    info["killed"] = killed.returncode == -9
    problems = []
    if killed.returncode not in (0, -9):
        problems.append(f"the run to be killed failed by itself: {killed.describe()}")
    problems += _run_folder_is_whole(ref, runs, prior)

    rerun = faultkit.cli(args, cache, cwd=folder, timeout=max(300.0, 20 * ref.seconds))
    if rerun.returncode != 0 or "Traceback" in rerun.stderr:
        return problems + [f"the rerun failed: {rerun.describe()}"], info
    problems += [f"after the rerun: {p}" for p in faultkit.matches_reference(ref, runs / "tiny", "A")]
    hidden = faultkit.hidden_entries(runs)
    if hidden:
        problems.append(f"after the rerun, runs/ holds hidden leftovers: {hidden}")
    problems += faultkit.verified_clean(cache)
    gc = faultkit.cli(["cache", "gc", "--runs-dir", str(runs)], cache, cwd=folder, timeout=300)
    if gc.returncode != 0 or "Traceback" in gc.stderr:
        problems.append(f"cache gc failed: {gc.describe()}")
    left = faultkit.cache_leftovers(cache)
    if left:
        problems.append(f"after cache gc, the cache still holds leftovers: {left}")
    present = faultkit.artifact_keys(cache)
    missing = [f"{stage} {key[:12]}" for stage, key in ref.keys.items() if key not in present.get(stage, set())]
    if missing:
        problems.append(f"after cache gc, artifacts the run names are gone: {missing}")
    return problems, info


def _trial_seeds(count: int, salt: int) -> list[int]:
    if os.environ.get("FAULTS_TRIAL_SEED"):
        return [int(os.environ["FAULTS_TRIAL_SEED"])]
    master = random.Random(MASTER_SEED * 1_000_003 + salt)
    return [master.randrange(1, 10**9) for _ in range(count)]


def _run_trials(ref, workdir: Path, check, plans: list[dict]) -> None:
    started = time.time()
    killed = 0
    for number, plan in enumerate(plans):
        seed = plan.pop("seed")
        label = f"trial {number} seed {seed} (FAULTS_TRIAL_SEED={seed})"
        try:
            problems, info = kill_trial(ref, seed, workdir / f"trial{number}", **plan)
        except Exception as exc:  # noqa: BLE001 - a timeout or an unexpected error is this trial's failure
            problems, info = [f"{type(exc).__name__}: {exc}"], {"seed": seed}
        killed += bool(info.get("killed"))
        check.record(problems, f"{label} {info}")
        check.details.setdefault("trials", []).append(dict(info, failed=bool(problems)))
        shutil.rmtree(workdir / f"trial{number}", ignore_errors=True)
    check.details.update({"killed": killed, "seconds": round(time.time() - started, 1), "master_seed": MASTER_SEED})
    check.assert_clean()
    assert killed >= len(plans) // 2, f"only {killed} of {len(plans)} trials were killed before they finished"


def test_sigkill_during_the_late_phases_short(reference, workdir, check):
    """Default suite: two trials where the classifier, the bundle, report.md and the run folder's swap happen."""
    seeds = _trial_seeds(2, 1)
    plans = [dict(seed=seeds[0], cut="all", mode="operation", prior=True),
             dict(seed=seeds[-1], cut="model", mode="operation", prior=False)]
    _run_trials(reference, workdir, check, plans)


@pytest.mark.slow
def test_sigkill_at_random_moments(reference, workdir, check):
    """`make test-faults`: FAULTS_KILL_TRIALS (default 30) trials, every start state, kill mode and moment random."""
    count = int(os.environ.get("FAULTS_KILL_TRIALS") or 30)
    _run_trials(reference, workdir, check, [dict(seed=s) for s in _trial_seeds(count, 2)])
