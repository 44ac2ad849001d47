"""How much of a target corpus the packaged language model's vocabulary covers, and whether distilled MiniLM word
vectors could place the words it lacks in its embedding space.

    python benchmarks/bench_vocab_coverage.py [--datasets mr,sst2,trec6,rotten_tomatoes] [--set pretrain_lm.weights=DIR]

Per dataset (tokenized and numericalized as a run does, min count 3; every split's text, no label read):
the words of its vocabulary that the LM lacks (finetune_lm starts them at the mean embedding row), their share of
the corpus's tokens, and the most frequent of them. Then, once for the LM: a ridge regression from each of its
words' distilled MiniLM vectors (models/distilled.py, 384-d) to its embedding row (centred), fitted on a seeded
80 % of its non-special words and scored on the other 20 %: R^2 of the predicted rows, and their mean cosine with
the true rows beside the cosine of the mean row (what a new word starts from today). A high R^2 would make mapped
vectors a better start for new words than the mean row; a low one says the LM's embedding space is not
predictable from MiniLM's. Needs the distill extra. Writes benchmarks/results/vocab-coverage.json (+ .md).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bench_ulmfit import configs, corpus_of, numericalized, pretrained_lm
from common import markdown_table, save, versions

RIDGE = (0.0, 0.01, 0.1, 1.0, 10.0)  # ridge penalty relative to the mean eigenvalue of the centred Gram matrix


def coverage(data, lm_itos: list[str]) -> dict:
    """Words of `data`'s vocabulary the LM lacks, their share of its tokens (as finetune_lm counts them), the 30 commonest."""
    from nlp_pipeline.models.training import new_words

    itos = list(data.vocab.itos)
    new, share = new_words(itos, lm_itos, data.ids)
    counts = np.bincount(np.asarray(data.ids), minlength=len(itos))[new]
    return {"words": len(itos), "new_words": int(new.sum()), "new_token_share": round(share, 4),
            "commonest_new": [np.asarray(itos)[new][i] for i in np.argsort(-counts, kind="stable")[:30]]}


def mapping_fit(itos: list[str], embedding: np.ndarray, seed: int = 0) -> dict:
    """R^2 and cosines of ridge maps from distilled vectors to the embedding rows, on held-out words."""
    from nlp_pipeline.models.distilled import word_vectors
    from nlp_pipeline.rules import SPECIAL_TOKENS

    rows = np.array([i for i, t in enumerate(itos) if t not in SPECIAL_TOKENS])
    rows = rows[np.random.default_rng(seed).permutation(len(rows))]
    started = time.perf_counter()
    x = word_vectors([itos[i] for i in rows])  # (n, 384)
    seconds = time.perf_counter() - started
    y = np.asarray(embedding, dtype=np.float64)[rows]  # (n, E)
    cut = int(0.8 * len(rows))
    mx, my = x[:cut].mean(0), y[:cut].mean(0)
    a, b = x[:cut] - mx, y[:cut] - my
    gram = a.T @ a
    held = y[cut:]

    def cosine(p: np.ndarray) -> float:
        return float(np.mean(np.sum(p * held, 1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(held, axis=1))))

    out = {"words_fitted": cut, "words_held_out": len(rows) - cut, "distil_seconds": round(seconds, 1),
           "mean_row_cosine": round(cosine(np.broadcast_to(my, held.shape)), 4), "ridge": []}
    for rel in RIDGE:
        m = np.linalg.solve(gram + rel * np.trace(gram) / len(gram) * np.eye(len(gram)), a.T @ b)
        p = (x[cut:] - mx) @ m + my
        r2 = 1 - ((p - held) ** 2).sum() / ((held - my) ** 2).sum()
        out["ridge"].append({"relative_penalty": rel, "r2": round(float(r2), 4), "cosine": round(cosine(p), 4)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="mr,sst2,trec6,rotten_tomatoes")
    parser.add_argument("--set", action="append", default=[], help="override a config field: section.field=value")
    args = parser.parse_args()

    cfgs = configs("full", args.set)
    if not cfgs["pretrain_lm"].loads_weights:
        parser.error("this measures a loaded LM: leave pretrain_lm.weights at packaged or give an exported folder")
    lm, _ = pretrained_lm(cfgs["pretrain_lm"], None, None, cfgs["model"])
    lm_itos = list(lm.vocab.itos)
    results = {name: coverage(numericalized(corpus_of((name,), None))[1], lm_itos)
               for name in args.datasets.split(",") if name}
    print(f"distilling MiniLM vectors of the LM's {len(lm_itos)} words (about 1,000 a second)", file=sys.stderr, flush=True)
    fit = mapping_fit(lm_itos, np.asarray(lm.state_dict["encoder.embedding.weight"]))
    payload = {"versions": versions("torch", "transformers"), "lm": {"loaded_from": lm.metrics.get("loaded_from"),
               "vocabulary": len(lm_itos)}, "datasets": results, "mapping": fit}
    markdown = (f"## The packaged LM's vocabulary ({len(lm_itos)} tokens) against each corpus's\n\n{versions('torch')}\n\n"
                + markdown_table(["dataset", "words", "new to the LM", "share of tokens", "commonest new words"],
                                 [[n, r["words"], r["new_words"], f"{100 * r['new_token_share']:.1f} %",
                                   ", ".join(r["commonest_new"][:12])] for n, r in results.items()])
                + f"\n\nDistilled MiniLM vectors -> the LM's embedding rows (ridge; {fit['words_fitted']} words fitted, "
                  f"{fit['words_held_out']} held out; the mean row's cosine with the held-out rows: {fit['mean_row_cosine']})\n\n"
                + markdown_table(["relative penalty", "R^2 (held out)", "cosine (held out)"],
                                 [[r["relative_penalty"], r["r2"], r["cosine"]] for r in fit["ridge"]]))
    save("vocab-coverage", payload, markdown)


if __name__ == "__main__":
    main()
