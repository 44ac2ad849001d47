"""Scaling of corpus preparation: wall time and peak memory of reading, tokenization and numericalization of
1x, 4x, 16x and 64x a ~10 MB text corpus, in-process and on Ray Data, with fastai's tokenizer as the anchor;
and a 500 MB text file taken as a pretraining corpus up to the language model's batching.

    python benchmarks/bench_scaling.py [--scales 1,4,16,64] [--methods local,ray,fastai] [--big-mb 500]
                                       [--workers 2] [--work-dir /tmp/nlp-scaling] [--skip-big]

The base corpus (~10 MB, built in --work-dir, never committed): WikiText-2's validation and test files under
$NLP_PIPELINE_DATA/wikitext2, gensim's test texts, WordNet glosses (Debian wordnet-base) and GCIDE paragraphs
(Debian dict-gcide), one document per line, until 10 MB. Scale k is one .txt file holding k copies.
Each (method, scale) runs in a fresh subprocess so its peak is its own:
  local   corpus stage (a file >= 64 MiB is streamed into a TextColumn) -> tokenization (a pool of --workers
          processes) -> numericalization, the stage functions the pipeline runs
  ray     the same with tokenization.executor = "ray": the corpus file parsed in blocks of lines, tokenization and
          vocabulary counting on an embedded Ray with --workers actors, started once before the clock for reading
          starts (its start-up is reported apart, as "ray start s")
  fastai  fastai.text.core.tokenize_texts(n_workers=--workers) on the same lines read into a list, a Counter
          vocabulary (min_freq 3, 60,000 words) and ids as lists: what fastai's TextDataLoaders hold in memory
Memory: peak RSS of the main process (ru_maxrss, which counts file pages it maps, such as spilled ids being
written to the cache), its peak anonymous memory (RssAnon sampled every 0.1 s: what cannot be dropped under
pressure), and the peak of the sampled sum of the RSS of its descendants (pool workers; for Ray the raylet, GCS,
agents, object store and actors, which the embedded Ray starts under it; shared pages count once per process). Wall time excludes building the corpus file.
The big run (--big-mb, default 500): the corpus of --big-mb MB through local corpus, tokenization,
numericalization (peaks recorded there), then one epoch of the language model's stream (concat_documents +
layout_stream + every BPTT window of 64 x 70 tokens, as fit_language_model walks it, without the model), then 20 training steps of a small
AWD-LSTM (fit_language_model, max_steps=20; peaks recorded before it: its logits alone take batch x bptt x
vocabulary x 4 bytes, 1.07 GB at 64 x 70 x 60,000, whatever the corpus size).
Writes benchmarks/results/NAME.json and NAME.md (--name, default scaling).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, markdown_table, save, versions  # noqa: E402

BASE_BYTES = 10 << 20


# --- the base corpus -------------------------------------------------------------------------------------------
def base_lines() -> list[str]:
    from nlp_pipeline.stages import corpus_sources as sources

    lines: list[str] = []
    for name in ("wiki.valid.tokens", "wiki.test.tokens"):
        path = DATA / "wikitext2" / name
        if path.is_file():
            lines += sources.read_lines(path, "utf-8")[0]
    import gensim.test.utils as gensim_data

    lee = Path(gensim_data.datapath("lee_background.cor"))
    if lee.is_file():
        lines += [line.strip() for line in lee.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    for pos in ("noun", "verb", "adj", "adv"):
        path = Path(f"/usr/share/wordnet/data.{pos}")
        if path.is_file():
            lines += sources.read_wordnet(path)
    gcide = Path("/usr/share/dictd/gcide.dict.dz")
    if gcide.is_file() and sum(map(len, lines)) < BASE_BYTES:
        lines += sources.read_dictd(gcide)
    out, size = [], 0
    for line in lines:
        if size >= BASE_BYTES:
            break
        line = " ".join(line.split())
        out.append(line)
        size += len(line.encode("utf-8")) + 1
    return out


def corpus_file(work: Path, scale: int, lines: list[str] | None = None) -> Path:
    path = work / f"corpus-{scale}x.txt"
    if not path.is_file():
        base = work / "corpus-1x.txt"
        if not base.is_file():
            base.write_text("\n".join(lines or base_lines()) + "\n", encoding="utf-8")
        data = base.read_bytes()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            for _ in range(scale):
                handle.write(data)
        tmp.rename(path)
    return path


def big_file(work: Path, megabytes: int) -> Path:
    path = work / f"corpus-{megabytes}mb.txt"
    if not path.is_file():
        data = corpus_file(work, 1).read_bytes()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            written = 0
            while written < megabytes * 1_000_000:
                handle.write(data)
                written += len(data)
        tmp.rename(path)
    return path


# --- memory sampling -------------------------------------------------------------------------------------------
def peaks_so_far(sampler: "Sampler") -> dict:
    """Peak RSS (VmHWM) and sampled peak anonymous memory of this process up to now, in MB."""
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return {"peak_rss_mb": round(hwm / 1024, 1), "peak_anon_mb": round(sampler.anon_peak / 2**20, 1)}


class Sampler(threading.Thread):
    """Peaks of this process's RssAnon and of the summed RSS of its descendants (pool workers; Ray's raylet,
    object store and actors, which the embedded Ray starts under this process), every 0.1 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.anon_peak = 0
        self.ray_peak = 0
        self.running = True

    def run(self) -> None:
        import psutil

        me = Path("/proc/self/status")
        while self.running:
            for line in me.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.anon_peak = max(self.anon_peak, int(line.split()[1]) * 1024)
            total = 0
            for proc in psutil.Process().children(recursive=True):
                try:
                    total += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.ray_peak = max(self.ray_peak, total)
            time.sleep(0.1)


# --- one measurement (runs in a subprocess) ---------------------------------------------------------------------
def measure(method: str, path: Path, workers: int, big: bool) -> dict:
    import numpy as np

    sampler = Sampler()
    sampler.start()
    out: dict = {"method": method, "corpus_mb": round(path.stat().st_size / 1e6, 1)}
    started = time.perf_counter()
    if method == "fastai":
        from collections import Counter

        from fastai.text.core import tokenize_texts

        with open(path, encoding="utf-8") as handle:
            texts = [line.strip() for line in handle if line.strip()]
        out["read_seconds"] = round(time.perf_counter() - started, 2)
        t = time.perf_counter()
        tokens = tokenize_texts(texts, n_workers=workers)
        out["tokenize_seconds"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        counts = Counter(token for doc in tokens for token in doc)
        vocab = [w for w, c in counts.most_common(60000) if c >= 3]
        index = {w: i for i, w in enumerate(vocab)}
        ids = [[index.get(token, 0) for token in doc] for doc in tokens]
        out["numericalize_seconds"] = round(time.perf_counter() - t, 2)
        out["documents"], out["tokens"] = len(texts), sum(map(len, ids))
    else:
        from nlp_pipeline.core.ray_executor import ray_session
        from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus
        from nlp_pipeline.stages.numericalization import NumericalizationConfig, numericalize
        from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize

        executor = "ray" if method == "ray" else "local"
        session = ray_session(workers) if executor == "ray" else contextlib.nullcontext()
        session.__enter__()                        # one Ray for the three steps (left to exit with the process)
        out["ray_start_seconds"] = round(time.perf_counter() - started, 2)
        t = time.perf_counter()
        corpus = load_corpus(CorpusConfig(source=str(path), executor=executor, workers=workers))
        out["read_seconds"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        cfg = TokenizationConfig(workers=workers, executor=executor)
        tokens = tokenize(cfg, corpus)
        out["tokenize_seconds"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        result = numericalize(NumericalizationConfig(executor=executor, workers=workers), tokens)
        out["numericalize_seconds"] = round(time.perf_counter() - t, 2)
        out["documents"], out["tokens"], out["vocab"] = len(result), int(len(result.ids)), len(result.vocab)
        out["texts_held_as"] = type(corpus.texts).__name__
        if big:
            time.sleep(0.3)
            out["through_numericalization"] = peaks_so_far(sampler)
            out.update(lm_batching(result, sampler))
    out["seconds"] = round(time.perf_counter() - started, 2)
    sampler.running = False
    sampler.join()
    out["tokens_per_second"] = round(out["tokens"] / max(out["tokenize_seconds"] + out["numericalize_seconds"], 1e-9))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["peak_anon_mb"] = round(sampler.anon_peak / 2**20, 1)
    out["workers_peak_rss_mb"] = round(sampler.ray_peak / 2**20, 1)  # summed over the processes alive together
    return out


def lm_batching(result, sampler: "Sampler") -> dict:
    """One epoch of the LM's stream windows (no model), then 20 steps of a small AWD-LSTM on it."""
    import numpy as np

    from nlp_pipeline.models.batching import bptt_lengths, concat_documents, layout_stream, lm_windows

    ids, offsets = result.ids, result.offsets
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    rows = layout_stream(concat_documents(ids, offsets, rng.permutation(len(offsets) - 1)), 64)
    windows, checksum = 0, 0
    for x, y in lm_windows(rows, bptt_lengths(rows.shape[1], 70, rng)):
        windows += 1
        checksum ^= int(x[0, 0])
    out = {"lm_epoch_windows": windows, "lm_batching_seconds": round(time.perf_counter() - t, 2)}
    time.sleep(0.3)
    out["through_lm_batching"] = peaks_so_far(sampler)   # training adds batch x bptt x vocab x 4 bytes of logits
    import torch

    from nlp_pipeline.models.heads import LanguageModelNet
    from nlp_pipeline.models.rnn import AwdEncoder, Dropouts
    from nlp_pipeline.models.training import discriminative_lrs, fit_language_model, make_optimizer

    t = time.perf_counter()
    model = LanguageModelNet(AwdEncoder(len(result.vocab), 64, 128, 2, "lstm", 1, Dropouts(0.1, 0.1, 0.1, 0.1)), 0.1)
    groups = model.layer_groups()
    optimizer = make_optimizer(groups, discriminative_lrs(1e-3, len(groups)), 0.01, (0.7, 0.99))
    fit_language_model(model, optimizer, ids, offsets, np.arange(len(offsets) - 1), None, epochs=1, batch_size=64,
                       bptt=70, variable_bptt=True, schedule="one_cycle", warmup_fraction=0.25, clip=0.25,
                       activation_regularization=2.0, temporal_activation_regularization=1.0, rng=rng,
                       device=torch.device("cpu"), max_steps=20)
    out["lm_20_steps_seconds"] = round(time.perf_counter() - t, 2)
    return out


# --- driver ----------------------------------------------------------------------------------------------------
def run_one(method: str, path: Path, workers: int, big: bool = False) -> dict:
    command = [sys.executable, __file__, "--one", method, "--path", str(path), "--workers", str(workers)]
    if big:
        command.append("--big")
    done = subprocess.run(["nice", *command], capture_output=True, text=True)
    if done.returncode != 0:
        return {"method": method, "corpus_mb": round(path.stat().st_size / 1e6, 1),
                "error": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,4,16,64")
    parser.add_argument("--methods", default="local,ray,fastai")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--big-mb", type=int, default=500)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--work-dir", default="/tmp/nlp-scaling")
    parser.add_argument("--fastai-max-scale", type=int, default=64, help="run fastai only up to this scale")
    parser.add_argument("--ray-max-scale", type=int, default=64, help="run ray only up to this scale")
    parser.add_argument("--name", default="scaling", help="results file name (benchmarks/results/NAME.json)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--big", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, Path(args.path), args.workers, args.big)))
        return
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for scale in [int(s) for s in args.scales.split(",") if s]:     # small sizes first, the big ones last
        path = corpus_file(work, scale)
        for method in args.methods.split(","):
            if scale > {"fastai": args.fastai_max_scale, "ray": args.ray_max_scale}.get(method, scale):
                continue
            row = run_one(method, path, args.workers)
            row["scale"] = scale
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            report(args, results, None)                                # partial results survive an interruption
    big = None
    if not args.skip_big:
        big = run_one("local", big_file(work, args.big_mb), args.workers, big=True)
        print(json.dumps(big), file=sys.stderr, flush=True)
    report(args, results, big)


def report(args: argparse.Namespace, results: list[dict], big: dict | None) -> None:
    header = ["method", "scale", "MB", "tokens", "ray start s", "read s", "tokenize s", "numericalize s", "tokens/s",
              "peak RSS MB", "peak anon MB", "workers peak MB"]
    rows = [[r["method"], r["scale"], r["corpus_mb"], r.get("tokens", "-"), r.get("ray_start_seconds", "-") if r["method"] == "ray" else "-",
             r.get("read_seconds", "-"),
             r.get("tokenize_seconds", "-"), r.get("numericalize_seconds", "-"), r.get("tokens_per_second", "-"),
             r.get("peak_rss_mb", "-"), r.get("peak_anon_mb", "-"), r.get("workers_peak_rss_mb", r.get("error", "-"))]
            for r in results]
    md = ["## Scaling of corpus preparation", "", markdown_table(header, rows), ""] if rows else []
    if big is not None:
        md += ["### A 500 MB text file as a pretraining corpus", "", "```json", json.dumps(big, indent=2), "```"]
    save(args.name, {"versions": versions("numpy", "spacy", "torch", "ray", "fastai"), "workers": args.workers,
                     "results": results, "big": big}, "\n".join(md))


if __name__ == "__main__":
    main()
