"""What the Ray test modules share: a small text corpus, the artifact files of a stage by content, and the checks
that a stage run on Ray (embedded, or joined at an address) gives the in-process artifacts byte for byte and the
same cache keys. Each check runs the in-process reference in this process (workers=1): a fork()ed pool inside a
process that holds a Ray session hung the next Ray pipeline here (Ray's threads do not survive fork)."""

from __future__ import annotations

import dataclasses
import hashlib

from nlp_pipeline import pipeline
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.stages import corpus as corpus_stage
from nlp_pipeline.stages import numericalization as numericalization_stage
from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus
from nlp_pipeline.stages.numericalization import NumericalizationConfig, numericalize
from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize

DOCS = [
    "The movie was GREAT , really great !!!!",
    "I didn't like it ... <br /> at all.",
    "Senjō no Valkyria 3 : a tactical role @-@ playing game",
    "",
    "Numbers 1,000 and 3.14 and e-mail me@example.com",
] * 40


def write_text_corpus(folder):
    """folder/a.txt and folder/b.txt: the 200 DOCS lines (160 documents once the empty ones are dropped)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("\n".join(DOCS[:100]), encoding="utf-8")
    (folder / "b.txt").write_text("\n".join(DOCS[100:]), encoding="utf-8")
    return folder


def artifact_files(store: ArtifactStore, stage: str, key: str) -> dict[str, str]:
    """{file name: sha256} of a saved artifact, meta.json (which records times) left out."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.folder(stage, key).iterdir()) if p.name != "meta.json"}


def read_both_ways(source, monkeypatch, address: str = "", **fields) -> tuple:
    """The corpus of `source` read in this process and on Ray (2 actors; embedded, or at `address`):
    (local, on_ray, how many Ray runs)."""
    runs = []
    real_map = corpus_stage.map_chunks
    monkeypatch.setattr(corpus_stage, "map_chunks", lambda *a, **k: runs.append(1) or real_map(*a, **k))
    local = load_corpus(CorpusConfig(source=str(source), **fields))
    on_ray = load_corpus(CorpusConfig(source=str(source), executor="ray", workers=2, ray_address=address, **fields))
    return local, on_ray, len(runs)


def same_corpus_artifact(local, on_ray, tmp_path) -> None:
    """Both corpora saved through the store give the same files, info and kind of text column."""
    store = ArtifactStore(tmp_path / "cache")
    store.save("corpus", "a" * 64, local, {})
    store.save("corpus", "b" * 64, on_ray, {})
    assert artifact_files(store, "corpus", "a" * 64) == artifact_files(store, "corpus", "b" * 64)
    assert local.info == on_ray.info and type(local.texts) is type(on_ray.texts)


def tokenize_and_count_both_ways(corpus, store: ArtifactStore, monkeypatch, address: str = ""):
    """Tokenization and numericalization (min_freq 2) of `corpus` in this process and on Ray (2 actors; embedded,
    or at `address`), saved in `store` under keys "a" * 64 (in process) and "b" * 64 (Ray). Asserts that the
    executor moves neither stage's key, that every artifact file is the same and that the vocabulary really was
    counted on Ray; returns the Tokens of the Ray run."""
    local = TokenizationConfig(workers=1, chunk_size=7)
    on_ray = dataclasses.replace(local, executor="ray", workers=2, chunk_size=13, ray_address=address)  # other chunks
    counting = [NumericalizationConfig(min_freq=2),
                NumericalizationConfig(min_freq=2, executor="ray", workers=2, ray_address=address)]
    for name, upstream, cfgs in (("tokenization", "corpus", (local, on_ray)), ("numericalization", "tokens", counting)):
        keys = [pipeline.STAGES[name].key(cfg, {upstream: "0" * 64}) for cfg in cfgs]
        assert keys[0] == keys[1], name                                  # the executor is in no key
    on_ray_calls = []                                                    # counting really went through Ray
    real_map = numericalization_stage.map_chunks
    monkeypatch.setattr(numericalization_stage, "map_chunks", lambda *a, **k: on_ray_calls.append(1) or real_map(*a, **k))
    saved = []
    for cfg, count_cfg, name in ((local, counting[0], "a"), (on_ray, counting[1], "b")):
        tokens = tokenize(cfg, corpus)
        store.save("tokenization", name * 64, tokens, {})
        store.save("numericalization", name * 64, numericalize(count_cfg, tokens), {})
        saved.append((artifact_files(store, "tokenization", name * 64), artifact_files(store, "numericalization", name * 64)))
    assert saved[0] == saved[1]
    assert on_ray_calls == [1]
    return tokens
