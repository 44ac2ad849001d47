"""Perplexity of language models on WikiText-2's test text, tokenized as the pipeline tokenizes.

    python benchmarks/bench_lm_perplexity.py [--lm packaged] [--lm PATH_TO_EXPORTED_LM ...] [--threads N]

Takes exported LM folders (`nlp-pipeline export lm`, or "packaged" for the one shipped in the package) and
WikiText-2's wiki.test.tokens (under NLP_PIPELINE_DATA or ../shared/data/wikitext2): paragraphs in file order,
headings skipped, WikiText's `<unk>` written as our unknown token, tokenized with each LM's own tokenizer
settings and encoded with its vocabulary. Returns per LM: perplexity per token, the share of tokens outside
its vocabulary, and tokens scored; written to benchmarks/results/lm-perplexity.json (+ .md).
Limits: not comparable with published WikiText-2 perplexities (another tokenization, another vocabulary
size, and unknown words scored as one token); comparable between LMs of this project at equal vocabulary.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from common import DATA, machine, markdown_table, save, versions


def wikitext_paragraphs(path) -> list[str]:
    from nlp_pipeline.stages.corpus_sources import read_lines

    paragraphs, _headings = read_lines(path)
    return [p.replace("<unk>", "xxunk") for p in paragraphs]


def perplexity(lm_path: str, paragraphs: list[str], threads: int, bptt: int = 70, rows: int = 16) -> dict:
    import torch

    from nlp_pipeline.models.batching import layout_stream
    from nlp_pipeline.models.inference import load_language_model
    from nlp_pipeline.models.lm_file import load_lm_folder, resolve_lm_path
    from nlp_pipeline.models.training import evaluate_language_model
    from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize_texts

    torch.set_num_threads(threads)
    lm = load_lm_folder(resolve_lm_path(lm_path))
    settings = {k: v for k, v in lm.tokenizer.items() if k in TokenizationConfig.__dataclass_fields__}
    tokens = tokenize_texts(TokenizationConfig(**dict(settings, workers=1)), paragraphs)
    ids = np.concatenate([lm.vocab.encode(doc) for doc in tokens]).astype(np.int64)
    unk = lm.vocab.stoi[lm.vocab.unk_token]
    started = time.perf_counter()
    loss = evaluate_language_model(load_language_model(lm), layout_stream(ids, rows), bptt, torch.device("cpu"))
    return {"lm": lm_path, "vocab_size": len(lm.vocab), "tokens": int(len(ids)), "oov_rate": round(float(np.mean(ids == unk)), 4),
            "perplexity": round(float(np.exp(loss)), 2), "lm_train_tokens": lm.metrics.get("train_tokens"),
            "lm_val_perplexity": lm.metrics.get("val_perplexity"), "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm", action="append", default=[], help='an exported LM folder, or "packaged" (repeatable)')
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="lm-perplexity", help="results file name")
    args = parser.parse_args()
    paragraphs = wikitext_paragraphs(DATA / "wikitext2" / "wiki.test.tokens")
    results = []
    for path in args.lm or ["packaged"]:
        results.append(perplexity(path, paragraphs, args.threads))
        print(results[-1], file=sys.stderr)
    rows = [[r["lm"], r["lm_train_tokens"], r["vocab_size"], r["tokens"], r["oov_rate"], r["perplexity"]] for r in results]
    table = markdown_table(["language model", "pretraining tokens", "vocabulary", "WikiText-2 test tokens", "OOV share",
                            "perplexity"], rows)
    save(args.name, {"versions": versions("torch"), "machine": machine(), "results": results},
         f"## Language-model perplexity on WikiText-2 test\n\n`python benchmarks/bench_lm_perplexity.py {' '.join(sys.argv[1:])}`\n\n{table}")


if __name__ == "__main__":
    main()
