"""tokenization: Corpus -> Tokens (distinct token strings + one flat int32 array of their ids + offsets).

The tokenizer itself (TokenizationConfig, the text and token rules, spaCy, worker processes, the Ray executor)
is nlp_pipeline/tokenizer.py, shared with predict; this stage runs it over every text of the corpus, in corpus
order. Labels, splits and target_type are copied from the corpus; `Tokens.settings` is the config minus the
volatile fields (workers, chunk_size, executor), so predict rebuilds the same tokenizer with
TokenizationConfig(**settings) and calls tokenize_texts. A large corpus's texts come memory-mapped
(artifacts.TextColumn); what still grows with the corpus is measured in benchmarks/results/scaling.md.
"""

from __future__ import annotations

from nlp_pipeline.artifacts import Corpus, Tokens, documents_of
from nlp_pipeline.core.ray_executor import describe_executor, resolve_workers
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.rules import DEFAULT_RULES
from nlp_pipeline.tokenizer import (  # noqa: F401 (spacy_tokenizer, stream_chunks, tokenize_texts: re-exported for scripts)
    VOLATILE,
    TokenizationConfig,
    settings_of,
    spacy_tokenizer,
    stream_chunks,
    tokenize_texts,
    tokenize_to_ids,
)


def tokenize(cfg: TokenizationConfig, corpus: Corpus) -> Tokens:
    """Tokenize every text of the corpus, in corpus order, carrying labels and splits through."""
    types, ids, offsets = tokenize_to_ids(cfg, iter(corpus.texts), total=len(corpus.texts))
    return Tokens(
        **documents_of(corpus),
        ids=ids,
        offsets=offsets,
        types=types,
        settings=settings_of(cfg),
    )


def summarize(tokens: Tokens) -> dict:
    return {"documents": len(tokens), "tokens": int(len(tokens.ids)), "types": len(tokens.types)}


STAGE = Stage(
    name="tokenization",
    version=1,
    config=TokenizationConfig,
    inputs={"corpus": "corpus"},
    run=tokenize,
    volatile=VOLATILE,
    describe=lambda cfg: (
        f"lang={cfg.lang}, {len(set(cfg.rules))}/{len(DEFAULT_RULES)} rules, workers={resolve_workers(cfg.workers)}"
        + describe_executor(cfg.executor, cfg.ray_address)
    ),
    summary=summarize,
)
