"""Tokenization throughput and peak memory: our stage against raw spaCy and fastai's tokenizer, in one run.

    python benchmarks/bench_tokenization.py [--scales 1,4,16] [--workers 1,2] [--limit N] [--repeats 1]

Texts: the `text` fields of MR (all.jsonl) and SST-2 (train.jsonl) under --data-dir, optionally cut to the
first --limit texts, then repeated --scale times (a generator, never a materialised list, for every method
that accepts one). Each (method, workers, scale) runs in a fresh subprocess, so ru_maxrss is its own peak:
  ours    nlp_pipeline.stages.tokenization.tokenize_to_ids (the stage's core) with the full default rule set;
          workers=1 runs in-process, workers=N a pool of N processes; keeps int32 ids (the stage output)
  spacy   spacy.blank("en") nlp.pipe (tokenizer only) and each token's text, in this process for workers=1,
          else in a fork Pool over chunks of 5,000 texts returning only counts; keeps nothing (a floor for
          time and memory, not a usable output). spaCy's own nlp.pipe(n_process=2) is not used: it ships
          every Doc back to the main process and took 128 s, not about 3 s, on the 1x corpus (shared 2-core box).
  fastai  fastai.text.core.tokenize_texts with its defaults (defaults.text_proc_rules, replace_space,
          SpacyTokenizer("en"), which in fastai 2.8 builds spacy.blank("en"): no model is downloaded);
          n_workers=0 (in-process) for workers=1, else n_workers=workers; keeps its lists of strings
spaCy is imported and each method's spaCy tokenizer built before the clock starts. Throughput is reported
at the smallest scale (best of --repeats); ratios compare seconds for the same texts (token counts differ
a little: the rules add markers). The machine is shared: use --repeats 3 for steadier numbers.
Prints a markdown section and writes benchmarks/results/tokenization.json.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("NLP_PIPELINE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
METHODS = ("ours", "spacy", "fastai")


def load_texts(data_dir: Path, limit: int | None) -> list[str]:
    texts: list[str] = []
    for name in ("mr/all.jsonl", "sst2/train.jsonl"):
        with open(data_dir / name, encoding="utf-8") as handle:
            texts += [json.loads(line)["text"] for line in handle if line.strip()]
    return texts[:limit] if limit else texts


def repeated(texts: list[str], scale: int):
    """The texts `scale` times over, as a stream (no scaled list is built)."""
    return itertools.chain.from_iterable(itertools.repeat(texts, scale))


_NLP = None  # the raw spaCy pipeline of this process (forked workers inherit it)


def _chunked(texts, size: int):
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _spacy_count(chunk: list[str]) -> tuple[int, int]:
    """Raw spaCy on a chunk: nlp.pipe (tokenizer only) and every token's text; returns (tokens, docs)."""
    n_tokens = 0
    for doc in _NLP.pipe(chunk, batch_size=1000):
        n_tokens += len([token.text for token in doc])
    return n_tokens, len(chunk)


def measure(method: str, workers: int, scale: int, data_dir: Path, limit: int | None) -> dict:
    """Run one method once in this (fresh) process; return seconds, counts and peak RSS."""
    texts = load_texts(data_dir, limit)
    n_docs = len(texts) * scale
    import spacy  # every method pays the import before the clock starts

    if method == "ours":
        from nlp_pipeline.stages.tokenization import TokenizationConfig, spacy_tokenizer, tokenize_to_ids

        cfg = TokenizationConfig(workers=workers)
        spacy_tokenizer(cfg.lang)   # built before the clock, as the others' are (forked workers inherit it)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        types, ids, offsets = tokenize_to_ids(cfg, repeated(texts, scale), total=n_docs)
        seconds = time.perf_counter() - start
        n_tokens, n_types, done = int(len(ids)), len(types), len(offsets) - 1
    elif method == "spacy":
        global _NLP
        _NLP = spacy.blank("en")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        chunks = _chunked(repeated(texts, scale), 5000)
        if workers == 1:
            counts = map(_spacy_count, chunks)
            n_tokens, done = map(sum, zip(*counts))
        else:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(workers) as pool:
                n_tokens, done = map(sum, zip(*pool.imap(_spacy_count, chunks)))
        seconds = time.perf_counter() - start
        n_types = None
    elif method == "fastai":
        from fastai.text.core import SpacyTokenizer, defaults
        from fastai.text.core import tokenize_texts as fastai_tokenize_texts

        tok = SpacyTokenizer("en")
        items = list(repeated(texts, scale))   # fastai needs a list (references only: the strings are shared)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        out = fastai_tokenize_texts(items, n_workers=0 if workers == 1 else workers,
                                    rules=list(defaults.text_proc_rules), tok=tok)
        seconds = time.perf_counter() - start
        n_tokens, done = sum(map(len, out)), len(out)
        n_types = len({t for doc in out[: len(texts)] for t in doc})
    else:
        raise SystemExit(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    assert done == n_docs, (done, n_docs)
    return {
        "method": method, "workers": workers, "scale": scale, "docs": n_docs, "tokens": n_tokens,
        "types_1x": n_types, "seconds": round(seconds, 4),
        "rss_before_mb": round(rss_before / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_workers_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def run_in_subprocess(method: str, workers: int, scale: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--measure", method, "--workers", str(workers), "--scales", str(scale),
               "--data-dir", str(args.data_dir)] + (["--limit", str(args.limit)] if args.limit else [])
    env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TQDM_DISABLE="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"method": method, "workers": workers, "scale": scale, "error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def versions() -> dict:
    import numpy
    import spacy

    out = {"python": platform.python_version(), "spacy": spacy.__version__, "numpy": numpy.__version__}
    try:
        import fastai

        out["fastai"] = fastai.__version__
    except ImportError:
        out["fastai"] = None
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarize(rows: list[dict], workers_list: list[int], scales: list[int]) -> dict:
    """Throughput at the smallest scale (best of repeats) and the ratios the targets are stated in."""
    smallest = min(scales)
    summary: dict = {}
    for workers in workers_list:
        best = {}
        for method in METHODS:
            runs = [r for r in rows if r["method"] == method and r["workers"] == workers
                    and r["scale"] == smallest and "seconds" in r]
            if runs:
                best[method] = min(runs, key=lambda r: r["seconds"])
        ours, spacy, fastai = (best.get(m, {}).get("seconds") for m in METHODS)
        summary[f"workers={workers}"] = {
            "best": best,
            "speedup_vs_fastai": ratio(fastai, ours),        # target >= 1.5
            "slowdown_vs_spacy": ratio(ours, spacy),         # target <= 2
        }
    return summary


def markdown(report: dict) -> str:
    lines = [
        "## Tokenization throughput and memory",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; CPUs: {report['cpus']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        f"Texts: {report['texts']} (MR all + SST-2 train{', first ' + str(report['limit']) if report['limit'] else ''}), "
        f"repeated by scale. Full default rule set for ours and fastai; raw spaCy keeps no output.",
        "",
        f"### Throughput at scale {min(report['scales'])} (best of {report['repeats']})",
        "",
        "| workers | method | seconds | docs/s | tokens | tokens/s | seconds vs ours |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for key, block in report["summary"].items():
        ours = block["best"].get("ours", {}).get("seconds")
        for method, row in block["best"].items():
            lines.append(
                f"| {row['workers']} | {method} | {row['seconds']:.2f} | {row['docs'] / row['seconds']:,.0f} | "
                f"{row['tokens']:,} | {row['tokens'] / row['seconds']:,.0f} | {ratio(row['seconds'], ours) or '-'}x |"
            )
    lines += ["", "| workers | ours vs fastai (speedup, target >= 1.5) | ours vs raw spaCy (slowdown, target <= 2) |",
              "|---:|---:|---:|"]
    for key, block in report["summary"].items():
        fast, slow = block["speedup_vs_fastai"], block["slowdown_vs_spacy"]
        mark_fast = "" if fast is None else (" ok" if fast >= 1.5 else " MISSED")
        mark_slow = "" if slow is None else (" ok" if slow <= 2 else " MISSED")
        lines.append(f"| {key.split('=')[1]} | {fast or '-'}x{mark_fast} | {slow or '-'}x{mark_slow} |")
    lines += [
        "",
        "### Peak RSS by corpus scale (each run in a fresh process; MB)",
        "",
        "| workers | method | scale | docs | tokens | seconds | main before | main peak | main growth | largest worker |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(report["runs"], key=lambda r: (r["workers"], METHODS.index(r["method"]), r["scale"])):
        if "error" in row:
            lines.append(f"| {row['workers']} | {row['method']} | {row['scale']} | error: {row['error']} |||||||")
            continue
        if row.get("repeat", 0):
            continue
        lines.append(
            f"| {row['workers']} | {row['method']} | {row['scale']} | {row['docs']:,} | {row['tokens']:,} | "
            f"{row['seconds']:.2f} | {row['rss_before_mb']:.0f} | {row['peak_rss_mb']:.0f} | "
            f"{row['peak_rss_mb'] - row['rss_before_mb']:.0f} | {row['peak_rss_workers_mb'] or 0:.0f} |"
        )
    lines += ["", "Main growth = peak minus the RSS just before tokenizing (texts loaded, libraries imported)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,4,16", help="corpus repetitions, comma-separated")
    parser.add_argument("--workers", default="1,2", help="worker process counts, comma-separated")
    parser.add_argument("--methods", default=",".join(METHODS), help="subset of ours,spacy,fastai")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N texts (before scaling)")
    parser.add_argument("--repeats", type=int, default=1, help="runs at the smallest scale; the best counts")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "tokenization.json")
    parser.add_argument("--measure", help=argparse.SUPPRESS)   # internal: one measurement in this process
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    workers_list = [int(w) for w in args.workers.split(",")]
    if args.measure:
        print(json.dumps(measure(args.measure, workers_list[0], scales[0], args.data_dir, args.limit)))
        return
    if not (args.data_dir / "mr" / "all.jsonl").is_file():
        raise SystemExit(f"no MR data under {args.data_dir}; pass --data-dir")
    methods = [m for m in args.methods.split(",") if m]
    if "fastai" in methods and versions()["fastai"] is None:
        print("fastai is not installed (pip install -e '.[bench]'): skipping it", file=sys.stderr)
        methods.remove("fastai")

    runs = []
    for workers in workers_list:
        for scale in scales:
            for repeat in range(args.repeats if scale == min(scales) else 1):
                for method in methods:
                    row = run_in_subprocess(method, workers, scale, args)
                    row["repeat"] = repeat
                    runs.append(row)
                    print(f"{method:6s} workers={workers} scale={scale:<3d} "
                          + (f"{row['seconds']:.2f}s peak {row['peak_rss_mb']:.0f} MB" if "seconds" in row
                             else f"ERROR {row['error']}"), file=sys.stderr)
    report = {
        "benchmark": "tokenization",
        "command": "python benchmarks/bench_tokenization.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "versions": versions(),
        "texts": len(load_texts(args.data_dir, args.limit)),
        "limit": args.limit,
        "scales": scales,
        "repeats": args.repeats,
        "runs": runs,
        "summary": summarize(runs, workers_list, scales),
    }
    report["markdown"] = markdown(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(report["markdown"])
    print(f"\nwrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
