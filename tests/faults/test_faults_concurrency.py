"""Several `nlp-pipeline run` processes at once on one cache: the same config (twice, into the same run folder)
and overlapping ones (another classifier seed: every artifact shared but the classifier; another LSA size:
every artifact shared but lsa).

All of them succeed; every artifact is computed by exactly one process, and the logs say which: one process
prints `running` for a key, every other one that needs it prints `computed by another process` (it waited for
the lock) or `cache hit` (it came later); each run folder equals a clean run of its config; `cache verify` is
clean and `cache gc` leaves no leftover.
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import pytest

import faultkit
from faultkit import MASTER_SEED

LINE = re.compile(r"^(?P<id>\S+)\s+(?P<what>running\b.*|computed by another process|cache hit)\s+(?P<key>[0-9a-f]{12})$")
OTHER_LSA = ["--set", "lsa.n_components=2"]


def _launch(ref, workdir: Path, plans: list[tuple[str, list[str], str]], rng: random.Random) -> list[dict]:
    """Start one process per (label, extra args, run name), with random gaps of up to a second, and wait."""
    cache, runs = workdir / "cache", workdir / "runs"
    started = []
    for label, extra, name in plans:
        log = workdir / f"{label}.stderr"
        process = faultkit.spawn(faultkit.run_args(ref.corpus, runs, *extra, name=name), cache, cwd=workdir,
                                 stderr_path=log)
        started.append({"label": label, "name": name, "process": process, "log": log})
        time.sleep(rng.uniform(0, 1.0))
    deadline = time.time() + max(600.0, 30 * ref.seconds)
    for run in started:
        try:
            run["code"] = run["process"].wait(timeout=max(1.0, deadline - time.time()))
        except Exception:  # noqa: BLE001 - a stuck process: kill it and report
            run["process"].kill()
            run["code"] = run["process"].wait()
            run["stuck"] = True
        run["stderr"] = run["log"].read_text(encoding="utf-8", errors="replace")
    return started


def _problems(ref, workdir: Path, started: list[dict], expected: dict[str, dict]) -> list[str]:
    cache, runs = workdir / "cache", workdir / "runs"
    problems = []
    by_key: dict[str, list[tuple[str, str]]] = {}
    for run in started:
        if run["code"] != 0 or "Traceback" in run["stderr"] or run.get("stuck"):
            tail = "\n".join(run["stderr"].splitlines()[-12:])
            problems.append(f"{run['label']} exited {run['code']}{' (stuck)' if run.get('stuck') else ''}:\n{tail}")
            continue
        if "refused" in run["stderr"]:
            problems.append(f"{run['label']} refused a cached artifact: {run['stderr']}")
        seen = {}
        for line in run["stderr"].splitlines():
            match = LINE.match(line.strip())
            if match:
                what = "ran" if match["what"].startswith("running") else match["what"]
                seen[match["key"]] = (match["id"], what)
                by_key.setdefault(match["key"], []).append((run["label"], what))
        keys = expected.get(run["label"]) or faultkit.read_keys(runs / run["name"])
        unaccounted = [f"{stage} {key[:12]}" for stage, key in keys.items() if key[:12] not in seen]
        if unaccounted:
            problems.append(f"{run['label']}'s log does not say who computed {unaccounted}:\n{run['stderr']}")
    for key, who in sorted(by_key.items()):
        ran = [label for label, what in who if what == "ran"]
        if len(ran) != 1:
            problems.append(f"artifact {key} was computed {len(ran)} times (by {ran}); log lines: {who}")
    if problems:
        return problems
    for run in started:
        if run["label"] in expected:
            config = "A" if expected[run["label"]] == ref.keys else "B"
            problems += [f"{run['name']}: {p}" for p in faultkit.matches_reference(ref, runs / run["name"], config)]
    hidden = faultkit.hidden_entries(runs)
    if hidden:
        problems.append(f"runs/ holds hidden leftovers: {hidden}")
    problems += faultkit.verified_clean(cache)
    gc = faultkit.cli(["cache", "gc", "--runs-dir", str(runs)], cache, cwd=workdir, timeout=300)
    if gc.returncode != 0 or " 0 artifacts removed" not in f" {gc.stdout}":
        problems.append(f"cache gc after the runs removed artifacts the runs name, or failed: {gc.describe()}\n{gc.stdout}")
    left = faultkit.cache_leftovers(cache)
    if left:
        problems.append(f"after cache gc, the cache holds leftovers: {left}")
    return problems


def _round(ref, workdir: Path, rng: random.Random, four: bool) -> list[str]:
    plans = [("A1", [], "one"), ("A2", [], "one"), ("B", faultkit.OTHER_SEED, "two")]
    if four:
        plans.append(("C", OTHER_LSA, "three"))
    rng.shuffle(plans)
    started = _launch(ref, workdir, plans, rng)
    return _problems(ref, workdir, started, {"A1": ref.keys, "A2": ref.keys, "B": ref.keys_b})


def test_three_concurrent_runs_compute_each_artifact_once(reference, workdir, check):
    """Default suite: A twice into the same run folder and B, on an empty cache."""
    seed = int(os.environ.get("FAULTS_TRIAL_SEED") or random.Random(MASTER_SEED).randrange(1, 10**9))
    check.record(_round(reference, workdir, random.Random(seed), four=False), f"seed {seed} (FAULTS_TRIAL_SEED={seed})")
    check.assert_clean()


@pytest.mark.slow
def test_four_concurrent_runs_repeated(reference, workdir, check):
    """`make test-faults`: FAULTS_CONCURRENT_ROUNDS (default 5) rounds of four processes in random order and gaps."""
    rounds = int(os.environ.get("FAULTS_CONCURRENT_ROUNDS") or 5)
    master = random.Random(MASTER_SEED + 17)
    for number in range(rounds):
        seed = master.randrange(1, 10**9)
        folder = workdir / f"round{number}"
        folder.mkdir()
        check.record(_round(reference, folder, random.Random(seed), four=True),
                     f"round {number} seed {seed} (FAULTS_TRIAL_SEED={seed})")
    check.assert_clean()
