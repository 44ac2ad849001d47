"""The whole `nlp-pipeline run` as a user runs it: cold cache, then a re-run with nothing changed, then a re-run
after one LSA setting changed. Each run is a real subprocess of the CLI.

    python benchmarks/bench_pipeline.py [--corpus rotten_tomatoes] [--preset quick] [--until STAGE]

Targets (issue 2 and 4): the cached re-run finishes in under 3 s; the default run (default corpus and config, cold
cache) in 10 minutes or less on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import markdown_table, save, versions


def timed_run(args: list[str], env: dict) -> tuple[float, str]:
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "nlp_pipeline.cli", "run", *args], capture_output=True, text=True, env=env)
    seconds = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done.stderr + done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--until", default=None)
    args = parser.parse_args()
    base = []
    for flag, value in (("--corpus", args.corpus), ("--preset", args.preset), ("--until", args.until)):
        if value:
            base += [flag, value]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NLP_PIPELINE_CACHE=str(Path(tmp) / "cache"))
        base += ["--runs-dir", str(Path(tmp) / "runs")]
        cold, cold_log = timed_run(base, env)
        runs = Path(tmp) / "runs"
        metrics = {p.parent.name: json.loads(p.read_text()) for p in runs.glob("*/metrics.json")}
        warm, _ = timed_run(base, env)
        changed, changed_log = timed_run([*base, "--set", "lsa.n_components=60"], env)
    rerun = [line.split()[0] for line in changed_log.splitlines() if "  running" in line]
    rows = [["cold cache", f"{cold:.1f}"], ["re-run, nothing changed", f"{warm:.2f}"],
            [f"re-run, lsa.n_components changed (re-ran: {', '.join(rerun)})", f"{changed:.1f}"]]
    md = "\n".join([
        "### Whole pipeline: cold, cached and one-setting-changed runs", "",
        f"Command: `python benchmarks/bench_pipeline.py {' '.join(sys.argv[1:])}`. Versions: {versions('torch', 'spacy', 'gensim', 'scikit-learn')}.",
        "", markdown_table(["run", "wall seconds (subprocess, incl. Python start-up)"], rows), "",
        f"Cached re-run target < 3 s: {'met' if warm < 3 else 'NOT met'}.",
        "", "Cold-run log:", "", "```", cold_log.strip(), "```",
    ])
    save("pipeline" + (f"-{args.preset}" if args.preset else ""),
         {"cold": cold, "warm": warm, "changed": changed, "rerun": rerun, "cold_run_metrics": metrics}, md)


if __name__ == "__main__":
    main()
