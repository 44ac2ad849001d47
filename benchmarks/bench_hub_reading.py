"""How fast the driver reads an unlabelled Hugging Face Hub corpus, against the tokenization it feeds.

    python benchmarks/bench_hub_reading.py [--scale 16] [--work-dir /tmp/nlp-scaling] [--name hub-reading]

A Hub corpus (`hf:wikitext:wikitext-103-raw-v1` read with `corpus.label_field = ""`) is read in the driver, not on
Ray: `datasets` keeps each split as memory-mapped Arrow files and the corpus stage streams its text column into a
TextColumn. Offline, the Hub itself cannot be reached, so the stand-in is bench_scaling.py's corpus file of
--scale x 10 MB (one document per line, built in --work-dir if missing) turned into a `datasets.Dataset` with one
"text" column, saved with `save_to_disk` and loaded back memory-mapped: the form `load_dataset` leaves in its cache.
Measured, each in this process: the corpus stage on that dataset (`corpus_sources.read_hub` replaced by the loaded
dataset), and on the same text as a plain .txt file (also read in the driver, in process); MB/s and the tokens/s it
stands for (the tokens per MB of the 1x corpus, tokenized once here). The tokenizer's own rate is bench_scaling.py's.
Writes benchmarks/results/NAME.json and NAME.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scaling import corpus_file  # noqa: E402
from common import markdown_table, save, versions  # noqa: E402


def timed_corpus(source: str, **kwargs) -> tuple[float, int]:
    from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus

    start = time.perf_counter()
    corpus = load_corpus(CorpusConfig(source=source, **kwargs))
    seconds = time.perf_counter() - start
    return seconds, len(corpus.texts)


def tokens_per_mb(path: Path) -> float:
    """Tokens per MB of the 1x corpus as the default tokenization makes them (one pass, 2 workers)."""
    from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus
    from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize

    corpus = load_corpus(CorpusConfig(source=str(path), label_field=""))
    tokens = tokenize(TokenizationConfig(workers=2), corpus)
    return len(tokens.ids) / (path.stat().st_size / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=16)
    parser.add_argument("--work-dir", default="/tmp/nlp-scaling")
    parser.add_argument("--name", default="hub-reading")
    args = parser.parse_args()
    import datasets

    from nlp_pipeline.stages import corpus_sources

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    text_file = corpus_file(work, args.scale)
    megabytes = text_file.stat().st_size / 1e6
    saved = work / f"hub-{args.scale}x"
    if not saved.is_dir():
        lines = text_file.read_text(encoding="utf-8").splitlines()
        datasets.Dataset.from_dict({"text": lines}).save_to_disk(str(saved))
        del lines
    hub = {"train": datasets.load_from_disk(str(saved))}
    corpus_sources.read_hub = lambda name, config, revision: hub

    rows, results = [], []
    for what, source, kwargs in (("Hub dataset (Arrow, memory-mapped)", "hf:local/stand-in", {"label_field": ""}),
                                 ("plain .txt file", str(text_file), {"label_field": ""})):
        seconds, documents = timed_corpus(source, **kwargs)
        results.append({"source": what, "seconds": round(seconds, 2), "documents": documents,
                        "mb_per_second": round(megabytes / seconds, 1)})
    per_mb = tokens_per_mb(corpus_file(work, 1))
    for r in results:
        r["tokens_per_second_equivalent"] = round(r["mb_per_second"] * per_mb)
        rows.append([r["source"], round(megabytes, 1), r["documents"], r["seconds"], r["mb_per_second"],
                     r["tokens_per_second_equivalent"]])
    header = ["read in the driver", "MB", "documents", "seconds", "MB/s", "tokens/s it feeds"]
    md = [f"## Reading an unlabelled corpus in the driver ({args.scale}x, {per_mb:,.0f} tokens per MB)", "",
          markdown_table(header, rows), ""]
    save(args.name, {"versions": versions("datasets", "pyarrow"), "scale": args.scale, "megabytes": round(megabytes, 1),
                     "tokens_per_mb": round(per_mb), "results": results}, "\n".join(md))


if __name__ == "__main__":
    main()
