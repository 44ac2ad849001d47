"""Does a pretraining corpus contain the test sentences of the evaluation sets?

    python benchmarks/check_contamination.py [--general general_en] [--datasets trec6,mr,sst2] [--n 8]

Takes a general corpus (card, path or hf:NAME) and the labelled corpora's test splits; lower-cases both and
keeps word characters only. A test sentence counts as found when one of its word n-grams (n = --n, or the
whole sentence when it is shorter) occurs in the general corpus. Returns, per dataset, how many test
sentences were found and examples of each, written to benchmarks/results/contamination.json (+ .md).
Limits: exact n-gram matching only (no paraphrase); a short, common question ("what is the capital of
france") can match ordinary encyclopedic prose without being leaked data, so examples are listed to judge.
"""

from __future__ import annotations

import argparse
import sys
import time

from common import markdown_table, save, versions

from nlp_pipeline.stages.corpus_sources import word_ngrams as ngrams, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--general", default="general_en")
    parser.add_argument("--datasets", default="trec6,mr,sst2")
    parser.add_argument("--n", type=int, default=8, help="n-gram length in words")
    args = parser.parse_args()

    from nlp_pipeline.artifacts import SPLITS
    from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus

    started = time.perf_counter()
    general = load_corpus(CorpusConfig(source=args.general))
    grams: set[str] = set()
    for text in general.texts:
        tokens = words(text)
        grams |= ngrams(tokens, args.n)
    print(f"{args.general}: {len(general.texts)} documents, {len(grams)} distinct {args.n}-grams", file=sys.stderr)
    results, rows = {}, []
    test_code = SPLITS.index("test")
    for name in [d for d in args.datasets.split(",") if d]:
        corpus = load_corpus(CorpusConfig(source=name))
        tests = [t for t, s in zip(corpus.texts, corpus.splits) if s == test_code]
        found, short_sentences = [], [t for t in tests if len(words(t)) < args.n]
        for text in tests:
            tokens = words(text)
            if len(tokens) >= args.n and ngrams(tokens, args.n) & grams:
                found.append(text)
        if short_sentences:  # whole short sentences, as word-bounded substrings of one space-joined text
            joined = " " + " \n ".join(" ".join(words(t)) for t in general.texts) + " "
            for text in short_sentences:
                needle = " ".join(words(text))
                if needle and f" {needle} " in joined:
                    found.append(text)
        results[name] = {"test_sentences": len(tests), "found": len(found), "short_sentences_checked_whole": len(short_sentences),
                         "examples": found[:20]}
        rows.append([name, len(tests), len(found), f"{len(found) / max(len(tests), 1):.2%}", "; ".join(found[:3])[:160]])
        print(f"{name}: {len(found)} of {len(tests)} test sentences found", file=sys.stderr)
    payload = {"versions": versions("spacy"), "general": args.general, "n": args.n,
               "general_documents": len(general.texts), "datasets": results,
               "seconds": round(time.perf_counter() - started, 1)}
    table = markdown_table(["dataset", "test sentences", "found in the general corpus", "share", "examples"], rows)
    save("contamination", payload, f"## Test sentences inside {args.general} (word {args.n}-grams)\n\n"
         f"`python benchmarks/check_contamination.py {' '.join(sys.argv[1:])}`\n\n{table}")


if __name__ == "__main__":
    main()
