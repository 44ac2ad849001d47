"""Numericalization's vocabulary counting in process and on Ray Data (what tokenization.executor = "ray" also
moves to Ray): wall seconds of numericalization.count_types on synthetic token ids, and whether both agree.

    python benchmarks/bench_ray_counting.py [--tokens 20000000] [--types 50000] [--workers 2] [--name ray-counting]

The ids: --tokens Zipf-distributed (a = 1.2) type ids below --types, in documents of 100 tokens, every third
document a test one (not counted, as with the default vocab_splits). In process: count_types as the stage runs
it. Ray: an embedded Ray with --workers actors started once (its start-up is not timed), then count_types with
executor "ray" twice (the first pays each wave's actor start; shards of 2 M tokens, 64 MB of ids per wave).
Writes benchmarks/results/NAME.json and NAME.md. Synthetic ids: no data folder needed.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, save, versions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000_000)
    parser.add_argument("--types", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="ray-counting")
    args = parser.parse_args()

    from nlp_pipeline.core import ray_executor
    from nlp_pipeline.stages.numericalization import count_types

    rng = np.random.default_rng(0)
    ids = np.minimum(rng.zipf(1.2, args.tokens) - 1, args.types - 1).astype(np.int32)
    n_docs = max(1, args.tokens // 100)
    tokens = types.SimpleNamespace(ids=ids, offsets=np.linspace(0, args.tokens, n_docs + 1).astype(np.int64),
                                   splits=(np.arange(n_docs) % 3).astype(np.int8),  # train, dev, test
                                   types=[str(i) for i in range(args.types)])
    splits = ["train", "dev"]
    rows, results = [], {}
    started = time.perf_counter()
    local = count_types(tokens, splits)
    results["local_seconds"] = round(time.perf_counter() - started, 3)
    rows.append(["in process", "-", results["local_seconds"], "yes"])
    with ray_executor.ray_session(args.workers):
        for attempt in ("first", "second"):
            started = time.perf_counter()
            remote = count_types(tokens, splits, "ray", args.workers)
            seconds = results[f"ray_{attempt}_seconds"] = round(time.perf_counter() - started, 3)
            same = bool(np.array_equal(local, remote))
            results[f"ray_{attempt}_identical"] = same
            rows.append([f"Ray, {attempt} call", args.workers, seconds, "yes" if same else "NO"])
    md = [f"## Vocabulary counting of {args.tokens:,} token ids ({args.types:,} types, 2 of 3 splits counted)", "",
          markdown_table(["method", "actors", "seconds", "counts identical"], rows)]
    save(args.name, {"versions": versions("numpy", "ray"), "tokens": args.tokens, "types": args.types,
                     "workers": args.workers, **results}, "\n".join(md))


if __name__ == "__main__":
    main()
