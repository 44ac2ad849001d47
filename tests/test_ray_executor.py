"""Ray Data as the tokenization executor: the same artifacts, byte for byte, and the same cache keys as the
in-process path. One embedded Ray for the whole module (started through ray_executor.ray_session, as a run
starts it). Skipped, with the reason, when Ray Data is not installed (`make test` installs it: extra `dev`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util

import numpy as np
import pytest

from nlp_pipeline import pipeline
from nlp_pipeline.core import ray_executor
from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.stages import corpus as corpus_stage
from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus
from nlp_pipeline.stages.numericalization import NumericalizationConfig, numericalize
from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray Data is not installed: pip install 'nlp-pipeline[distributed]'")

DOCS = [
    "The movie was GREAT , really great !!!!",
    "I didn't like it ... <br /> at all.",
    "Senjō no Valkyria 3 : a tactical role @-@ playing game",
    "",
    "Numbers 1,000 and 3.14 and e-mail me@example.com",
] * 40


@pytest.fixture(scope="module")
def ray_instance():
    with ray_executor.ray_session(2) as ray:      # embedded: ray.init(num_cpus=5, include_dashboard=False)
        yield ray


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    (folder / "a.txt").write_text("\n".join(DOCS[:100]), encoding="utf-8")
    (folder / "b.txt").write_text("\n".join(DOCS[100:]), encoding="utf-8")
    return folder


def _files(store: ArtifactStore, stage: str, key: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.folder(stage, key).iterdir()) if p.name != "meta.json"}


@pytest.mark.parametrize("streamed", [False, True], ids=["list-corpus", "textcolumn-corpus"])
def test_ray_gives_the_in_process_artifacts_byte_for_byte_and_the_same_keys(ray_instance, small_corpus, tmp_path,
                                                                             monkeypatch, streamed):
    if streamed:
        monkeypatch.setattr(corpus_stage, "STREAM_MIN_BYTES", 0)
    corpus = load_corpus(CorpusConfig(source=str(small_corpus)))
    store = ArtifactStore(tmp_path / "cache")
    # the in-process reference runs in this process: a fork()ed pool inside a process that holds a Ray session
    # hung the next Ray pipeline here (Ray's threads do not survive fork); a run uses one executor or the other
    local = TokenizationConfig(workers=1, chunk_size=7)
    on_ray = dataclasses.replace(local, executor="ray", workers=2, chunk_size=13)   # other chunks: same output
    stage = pipeline.STAGES["tokenization"]
    keys = [stage.key(cfg, {"corpus": "0" * 64}) for cfg in (local, on_ray)]
    assert keys[0] == keys[1]                                            # the executor is in no key
    saved = []
    for cfg, name in ((local, "a"), (on_ray, "b")):
        tokens = tokenize(cfg, corpus)
        store.save("tokenization", name * 64, tokens, {})
        store.save("numericalization", name * 64, numericalize(NumericalizationConfig(min_freq=1), tokens), {})
        saved.append((_files(store, "tokenization", name * 64), _files(store, "numericalization", name * 64)))
    assert saved[0] == saved[1]
    tokens = store.load("tokenization", "b" * 64)
    assert tokens.settings == dict(tokens.settings) and "executor" not in tokens.settings   # predict rebuilds alike
    assert tokens.doc(0)[:4] == ["xxbos", "xxmaj", "the", "movie"] and len(tokens) == len(corpus) == 160


def test_ray_keeps_corpus_order_across_many_batches(ray_instance):
    from nlp_pipeline.stages.tokenization import tokenize_to_ids

    texts = [f"document {i} says {'word ' * (i % 7)}" for i in range(3000)]
    local = tokenize_to_ids(TokenizationConfig(workers=1), texts)
    remote = tokenize_to_ids(TokenizationConfig(workers=2, chunk_size=50, executor="ray"), texts)
    assert local[0] == remote[0]
    assert np.array_equal(local[1], remote[1]) and np.array_equal(local[2], remote[2])


def test_asking_for_ray_without_it_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError) as caught:
        TokenizationConfig(executor="ray")
    message = str(caught.value)
    assert "\n" not in message and "pip install 'nlp-pipeline[distributed]'" in message
    with pytest.raises(ConfigError, match="executor must be one of local, ray"):
        TokenizationConfig(executor="spark")
