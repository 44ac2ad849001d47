"""Candidates for `--preset quick`: validation scores and stage seconds of the real CLI run on the default corpus.

    nice python benchmarks/bench_quick_preset.py [--seeds 0,1,2] [--candidate NAME=stage.field=v,stage.field=v ...]
                                                 [--cold NAME] [--cold-runs 2] [--out quick-preset]
    nice python benchmarks/bench_quick_preset.py --classifier-cpu 2.6,1.0,2.6,1.0 --cache-dir DIR --out NAME

Each candidate is `nlp-pipeline run --preset quick` plus its --set overrides, run once per corpus seed
(corpus.seed: a different 2,000-document sample and so a different validation slice; one slice holds only
~166 documents, a standard error of ~3.5 points). Takes: candidates and seeds. Reads: only the classifier's
validation metrics (accuracy, macro-F1, the RNN's and the linear model's validation accuracy, the majority
class of the validation slice) from the cached artifact; the test split's scores, which the run prints, are
never read, so nothing is chosen on test. Stage seconds come from the cache's meta.json (what computing each
stage took, also for stages a previous candidate left in the shared cache), so the candidates share one cache;
`--cold NAME` then times that candidate's whole CLI run on an empty cache (`--cold-runs` times), which is the
number a user sees. `--classifier-cpu F1,F2,...` instead trains the classifier stage alone, in this process, on
the quick preset's cached sample 0 (run the candidates first with the same --cache-dir), once per listed
classifier.discriminative_factor in that order, and records the CPU seconds of each: interleaved repeats
compare the settings' cost on a loaded machine, where wall times do not. Returns benchmarks/results/<out>.json
and .md. Limits: wall times depend on the machine's load (the load average is recorded with each run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, markdown_table, save, versions

CLI = [sys.executable, "-m", "nlp_pipeline.cli"]


def run_cli(sets: list[str], cache: Path, runs: Path, name: str) -> tuple[float, float, float]:
    """Run the quick preset with `sets`; (wall seconds, 1-minute load average at the start, CPU seconds of the run:
    user + system). Output is discarded (it ends with the test scores, which this benchmark must not see)."""
    args = [*CLI, "run", "--preset", "quick", "--cache-dir", str(cache), "--runs-dir", str(runs), "--name", name]
    for s in sets:
        args += ["--set", s]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"run {name} failed ({done.returncode}): {done.stderr[-1500:]}")
    return seconds, load, cpu


def validation_scores(cache: Path, run: Path) -> dict:
    """The classifier's validation scores and every stage's compute seconds, read from the cache (never test)."""
    from nlp_pipeline.core.store import ArtifactStore

    store = ArtifactStore(cache)
    keys = json.loads((run / "keys.json").read_text())
    stage_seconds = {inst: round(float(store.read_meta(inst.split(":")[0], key).get("seconds", 0.0)), 1)
                     for inst, key in keys.items()}
    metrics = store.load("classifier", keys["classifier"]).metrics  # the RNN's; the blend stage's scores replace them
    metrics.update(store.load("blend", keys["blend"]).metrics)
    valid, blend = metrics["validation"], metrics.get("blend") or {}
    support = [c["support"] for c in valid["per_class"].values()]
    return {
        "val_accuracy": valid["accuracy"], "val_macro_f1": valid["macro_f1"], "val_n": valid["n"],
        "majority_accuracy": round(max(support) / sum(support), 4),
        "majority_macro_f1": round((2 * max(support) / (sum(support) + max(support))) / len(support), 4),
        "rnn_val_accuracy": (blend.get("validation_accuracy") or {}).get("rnn", valid["accuracy"]),
        "linear_val_accuracy": (blend.get("validation_accuracy") or {}).get("linear"),
        "blend_weight": blend.get("weight"), "selected": metrics["selected"],
        "vocab_size": store.read_meta("numericalization", keys["numericalization"]).get("summary", {}).get("vocab_size"),
        "stage_seconds": stage_seconds, "compute_seconds": round(sum(stage_seconds.values()), 1),
    }


def classifier_cpu(cache: Path, factors: list[float]) -> list[dict]:
    """Train the quick preset's classifier on cached sample 0 once per factor; CPU and wall seconds of each."""
    import dataclasses

    from nlp_pipeline import pipeline
    from nlp_pipeline.core.store import ArtifactStore
    from nlp_pipeline.stages.classifier import train_classifier

    configs = pipeline.load_config(preset="quick", sets=["corpus.seed=0"])
    inputs = pipeline.run(configs, ArtifactStore(cache), until="finetune_lm", keep=["numericalization", "finetune_lm"],
                          echo=lambda line: None, coordinator=None).artifacts
    rows = []
    for factor in factors:
        cfg = dataclasses.replace(configs["classifier"], discriminative_factor=factor)
        load, before, started = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        result = train_classifier(cfg, inputs["numericalization"], inputs["finetune_lm"])
        after = resource.getrusage(resource.RUSAGE_SELF)
        rows.append({"discriminative_factor": factor, "wall_seconds": round(time.perf_counter() - started, 1),
                     "cpu_seconds": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
                     "epochs": len(result.history), "load_average": round(load, 2),
                     "val_accuracy": result.metrics["validation"]["accuracy"]})
        print(rows[-1], flush=True)
    return rows


def parse_candidate(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition("=")
    # values may hold commas inside [...]: split on commas outside brackets
    out, depth, cur = [], 0, ""
    for ch in sets:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return name, out


def mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--candidate", action="append", default=[], help="NAME=stage.field=value,stage.field=value")
    parser.add_argument("--cold", default=None, help="candidate name to time on an empty cache")
    parser.add_argument("--cold-runs", type=int, default=2)
    parser.add_argument("--cache-dir", default=None, help="shared cache of the candidates (default: a temporary one)")
    parser.add_argument("--out", default="quick-preset")
    parser.add_argument("--classifier-cpu", default=None, help="discriminative factors, e.g. 2.6,1.0,2.6,1.0")
    args = parser.parse_args()
    if args.classifier_cpu:
        if not args.cache_dir:
            raise SystemExit("--classifier-cpu needs the --cache-dir of an earlier candidate run (sample 0)")
        rows = classifier_cpu(Path(args.cache_dir), [float(f) for f in args.classifier_cpu.split(",")])
        md = "\n".join([
            "### `--preset quick` classifier stage: CPU seconds per discriminative_factor (sample 0, interleaved)", "",
            f"Command: `python benchmarks/bench_quick_preset.py {' '.join(sys.argv[1:])}`. "
            f"Versions: {versions('torch')}.", "",
            markdown_table(["discriminative_factor", "CPU seconds", "wall seconds", "epochs", "load average", "val accuracy"],
                           [[r["discriminative_factor"], r["cpu_seconds"], r["wall_seconds"], r["epochs"], r["load_average"],
                             r["val_accuracy"]] for r in rows])])
        save(args.out, {"classifier_cpu": rows, "versions": versions("torch")}, md)
        return
    candidates = dict(parse_candidate(c) for c in (args.candidate or ["current="]))
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"candidates": {}, "cold": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache_dir) if args.cache_dir else Path(tmp) / "cache"
        for name, sets in candidates.items():
            per_seed = []
            for seed in seeds:
                runs = Path(tmp) / "runs"
                wall, load, _ = run_cli([*sets, f"corpus.seed={seed}"], cache, runs, f"{name}-{seed}")
                row = dict(validation_scores(cache, runs / f"{name}-{seed}"), seed=seed, wall_seconds_shared_cache=round(wall, 1),
                           load_average=round(load, 2))
                per_seed.append(row)
                print(f"{name} seed {seed}: val acc {row['val_accuracy']}, macro-F1 {row['val_macro_f1']}, "
                      f"RNN {row['rnn_val_accuracy']}, linear {row['linear_val_accuracy']}, majority {row['majority_accuracy']}, "
                      f"compute {row['compute_seconds']} s", flush=True)
            results["candidates"][name] = {
                "sets": sets, "runs": per_seed,
                "mean": {k: mean([r[k] for r in per_seed]) for k in
                         ("val_accuracy", "val_macro_f1", "rnn_val_accuracy", "linear_val_accuracy", "majority_accuracy",
                          "majority_macro_f1", "compute_seconds") if all(r[k] is not None for r in per_seed)},
            }
        if args.cold:
            sets = candidates[args.cold]
            for i in range(args.cold_runs):
                cold_cache, runs = Path(tmp) / f"cold{i}", Path(tmp) / f"coldruns{i}"
                wall, load, cpu = run_cli(sets, cold_cache, runs, "cold")
                results["cold"].setdefault(args.cold, []).append(
                    {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "load_average": round(load, 2),
                     **{k: v for k, v in validation_scores(cold_cache, runs / "cold").items()
                        if k in ("val_accuracy", "val_macro_f1", "rnn_val_accuracy", "compute_seconds", "stage_seconds")}})
                print(f"cold {args.cold}: {wall:.1f} s, {cpu:.1f} CPU s (load {load:.2f})", flush=True)
    rows = [[name, " ".join(c["sets"]) or "(quick.toml as is)", *(c["mean"].get(k, "-") for k in
             ("val_accuracy", "val_macro_f1", "rnn_val_accuracy", "linear_val_accuracy", "majority_accuracy", "majority_macro_f1",
              "compute_seconds"))] for name, c in results["candidates"].items()]
    cold_rows = [[name, r["wall_seconds"], r["cpu_seconds"], r["load_average"], r["val_accuracy"], r["val_macro_f1"]]
                 for name, rs in results["cold"].items() for r in rs]
    md = "\n".join([
        "### `--preset quick` candidates (default corpus, validation only)", "",
        f"Command: `python benchmarks/bench_quick_preset.py {' '.join(sys.argv[1:])}`. "
        f"Versions: {versions('torch', 'spacy', 'gensim', 'scikit-learn')}. Corpus seeds: {seeds} (mean shown).", "",
        markdown_table(["candidate", "overrides on quick.toml", "val accuracy", "val macro-F1", "RNN val accuracy",
                        "linear val accuracy", "majority accuracy", "majority macro-F1", "stage seconds (sum)"], rows),
        "", markdown_table(["cold run", "wall seconds", "CPU seconds (user + system)", "load average at start", "val accuracy",
                        "val macro-F1"], cold_rows) if cold_rows else "",
    ])
    save(args.out, dict(results, seeds=seeds, versions=versions("torch", "spacy", "gensim", "scikit-learn")), md)


if __name__ == "__main__":
    main()
