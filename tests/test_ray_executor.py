"""Ray Data as the executor of corpus reading, tokenization and numericalization's vocabulary counting: the same artifacts,
byte for byte, and the same cache keys as the in-process path. One embedded Ray for the whole module (started through ray_executor.ray_session, as a run
starts it). Skipped, with the reason, when Ray Data is not installed (`make test` installs it: extra `dev`).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import json
import pickle

import numpy as np
import pytest

from nlp_pipeline import pipeline
from nlp_pipeline.core import ray_executor
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.stages import corpus as corpus_stage
from nlp_pipeline.stages import numericalization as numericalization_stage
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
    # shards of ~300 tokens (of ~2,900), so the vocabulary is counted on several shards, on both paths
    monkeypatch.setattr(numericalization_stage, "document_shards",
                        functools.partial(numericalization_stage.document_shards, shard_tokens=300))
    corpus = load_corpus(CorpusConfig(source=str(small_corpus)))
    store = ArtifactStore(tmp_path / "cache")
    # the in-process reference runs in this process: a fork()ed pool inside a process that holds a Ray session
    # hung the next Ray pipeline here (Ray's threads do not survive fork); a run uses one executor or the other
    local = TokenizationConfig(workers=1, chunk_size=7)
    on_ray = dataclasses.replace(local, executor="ray", workers=2, chunk_size=13)   # other chunks: same output
    counting = [NumericalizationConfig(min_freq=2), NumericalizationConfig(min_freq=2, executor="ray", workers=2)]
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
        saved.append((_files(store, "tokenization", name * 64), _files(store, "numericalization", name * 64)))
    assert saved[0] == saved[1]
    assert on_ray_calls == [1]
    assert len(numericalization_stage.document_shards(tokens.offsets)) >= 5   # counted on several shards
    assert {"movie", "valkyria", "numbers"} <= set(store.load("numericalization", "b" * 64).vocab.itos)
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
    with pytest.raises(ConfigError) as caught:
        pipeline.load_config(sets=["numericalization.executor=ray"])   # refused before the pipeline copies it
    assert "numericalization.executor" in str(caught.value) and "[distributed]" in str(caught.value)


def test_one_setting_puts_both_text_stages_on_ray_and_neither_key_moves():
    local = {i.id: i for i in pipeline.instances(pipeline.load_config())}
    on_ray = {i.id: i for i in pipeline.instances(pipeline.load_config(
        sets=["tokenization.executor=ray", "tokenization.ray_address=auto", "tokenization.workers=3"]))}
    counting = on_ray["numericalization"].config
    assert (counting.executor, counting.ray_address, counting.workers) == ("ray", "auto", 3)
    assert local["numericalization"].config.executor == "local"
    for name, upstream in (("tokenization", {"corpus": "0" * 64}), ("numericalization", {"tokens": "1" * 64})):
        assert local[name].key(upstream) == on_ray[name].key(upstream)
    with pytest.raises(ConfigError, match="numericalization.executor is set by the pipeline from tokenization.executor"):
        pipeline.instances(pipeline.load_config(sets=["numericalization.executor=ray"]))


# --- corpus reading on Ray --------------------------------------------------------------------------------------

def _read_both_ways(source, monkeypatch, **fields) -> tuple:
    """The corpus of `source` read in this process and on Ray (2 actors): (local, on_ray, how many Ray runs)."""
    runs = []
    real_map = corpus_stage.map_chunks
    monkeypatch.setattr(corpus_stage, "map_chunks", lambda *a, **k: runs.append(1) or real_map(*a, **k))
    local = load_corpus(CorpusConfig(source=str(source), **fields))
    on_ray = load_corpus(CorpusConfig(source=str(source), executor="ray", workers=2, **fields))
    return local, on_ray, len(runs)


def _same_corpus_artifact(local, on_ray, tmp_path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    store.save("corpus", "a" * 64, local, {})
    store.save("corpus", "b" * 64, on_ray, {})
    assert _files(store, "corpus", "a" * 64) == _files(store, "corpus", "b" * 64)
    assert local.info == on_ray.info and type(local.texts) is type(on_ray.texts)


def test_corpus_key_leaves_out_where_the_files_are_parsed(small_corpus):
    keys = {pipeline.STAGES["corpus"].key(CorpusConfig(source=str(small_corpus), **fields), {})
            for fields in ({}, {"executor": "ray", "workers": 3, "ray_address": "auto"})}
    assert len(keys) == 1
    on_ray = {i.id: i.config for i in pipeline.instances(pipeline.load_config(sets=["tokenization.executor=ray"]))}
    assert on_ray["corpus"].executor == "ray"
    with pytest.raises(ConfigError, match="corpus.executor is set by the pipeline from tokenization.executor"):
        pipeline.instances(pipeline.load_config(sets=["corpus.executor=ray"]))


def test_ray_reads_a_labelled_folder_to_the_same_corpus(ray_instance, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    rows = [(f"review {i}: {'good ' * (i % 4)}film", ["pos", "neg", "", "3"][i % 4]) for i in range(120)]
    (data / "train.csv").write_text("text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows[:80]), encoding="utf-8")
    (data / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": lab or None}) + "\n" for t, lab in rows[80:]),
                                     encoding="utf-8")
    (data / "unsup.txt").write_text(" = Heading = \n\n" + "".join(f"some text {i}\n" for i in range(30)), encoding="utf-8")
    monkeypatch.setattr(corpus_stage, "RAY_CHUNK_BYTES", 60)           # the text in blocks of a few lines
    local, on_ray, runs = _read_both_ways(data, monkeypatch)
    assert runs == 1 and len(local) == 150 and set(local.label_names) == {"3", "neg", "pos"}
    _same_corpus_artifact(local, on_ray, tmp_path)


def test_ray_reads_label_folders_in_groups_to_the_same_corpus(ray_instance, tmp_path, monkeypatch):
    for split, label in (("train", "pos"), ("train", "neg"), ("test", "pos"), ("test", "neg")):
        folder = tmp_path / "imdb" / split / label
        folder.mkdir(parents=True)
        for i in range(12):
            (folder / f"{i}.txt").write_text(f"{label} document {i} of {split}", encoding="utf-8")
    monkeypatch.setattr(corpus_stage, "RAY_CHUNK_BYTES", 200)          # groups of a few documents each
    local, on_ray, runs = _read_both_ways(tmp_path / "imdb", monkeypatch, max_documents=40)
    assert runs == 1 and len(local) == 40
    _same_corpus_artifact(local, on_ray, tmp_path)


def test_ray_streams_plain_text_in_blocks_of_lines_to_the_same_corpus(ray_instance, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_stage, "STREAM_MIN_BYTES", 0)         # a TextColumn (the labelled test reads a list)
    monkeypatch.setattr(corpus_stage, "RAY_CHUNK_BYTES", 300)          # blocks of a few lines: ~20 blocks
    lines = [" = Title = ", "", *(f"  line {i} says {'é ' * (i % 5)} \r" for i in range(150)), " = = Part = = ", "last"]
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "big.txt").write_text("\ufeff" + "\n".join(lines), encoding="utf-8")   # no final newline
    (tmp_path / "texts" / "small.txt.gz").write_bytes(gzip.compress("\n".join(lines[:40]).encode("utf-8")))
    local, on_ray, runs = _read_both_ways(tmp_path / "texts", monkeypatch)
    assert runs == 1 and len(local) == 151 + 38 and local.info["dropped"]["headings"] == 3
    assert local.texts[0] == "line 0 says" and local.texts[150] == "last"
    _same_corpus_artifact(local, on_ray, tmp_path)


def test_ray_parses_a_large_json_lines_file_in_blocks_to_the_same_corpus(ray_instance, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_stage, "RAY_CHUNK_BYTES", 400)          # the large file in ~19 blocks of lines
    blocks = []
    real_blocks = corpus_stage.sources.line_blocks
    monkeypatch.setattr(corpus_stage.sources, "line_blocks", lambda *a: (blocks.append(b) or b for b in real_blocks(*a)))
    records = [{"text": f"review {i} is {'good ' * (i % 3)}", "label": ["pos", "neg"][i % 2]} for i in range(150)]
    records[3] = {"text": "no label here"}                               # unlabelled row
    records[140]["rating"] = 4                                           # a column seen only near the end
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    lines[7:7] = ["", "   "]                                             # blank lines are skipped
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("\ufeff" + "\r\n".join(lines) + "\r\n", encoding="utf-8")
    (data / "test.jsonl.gz").write_bytes(gzip.compress("\n".join(lines[:60]).encode("utf-8")))   # no final newline
    local, on_ray, runs = _read_both_ways(data, monkeypatch)
    assert runs == 1 and len(blocks) > 10 and len(local) == 150 + 58
    _same_corpus_artifact(local, on_ray, tmp_path)


@pytest.mark.parametrize("broken", ["json", "json-then-byte"])
def test_a_bad_json_lines_block_gives_the_in_process_error(ray_instance, tmp_path, monkeypatch, broken):
    monkeypatch.setattr(corpus_stage, "RAY_CHUNK_BYTES", 200)
    lines = [json.dumps({"text": f"line {i}", "label": "a" if i % 2 else "b"}).encode() for i in range(80)]
    lines[50] = b'{"text": "unfinished'                                 # not JSON, several blocks in
    if broken == "json-then-byte":
        lines[70] = b'{"text": "caf\xe9", "label": "a"}'                # the whole file is decoded before parsing
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    messages = []
    for executor in ("local", "ray"):
        with pytest.raises(DataError) as caught:
            load_corpus(CorpusConfig(source=str(tmp_path / "data"), executor=executor, workers=2))
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "\n" not in messages[0]
    assert ("line 51: not valid JSON" if broken == "json" else "line 71, column 14: byte 0xe9") in messages[0]


def test_ray_gives_the_same_one_line_error_for_a_bad_file(ray_instance, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_stage, "RAY_CHUNK_BYTES", 100)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_bytes(b"".join(b"line %d\n" % i for i in range(60)) + b"caf\xe9\nok\n")
    (tmp_path / "text" / "b.txt").write_text("never read: the error comes first\n", encoding="utf-8")
    messages = []   # a piece that fails on an actor is read again here: any reader's error comes out as in process
    for executor in ("local", "ray"):
        with pytest.raises(DataError) as caught:
            load_corpus(CorpusConfig(source=str(tmp_path / "text"), executor=executor, workers=2))
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "\n" not in messages[0]
    assert "a.txt line 61, column 4: byte 0xe9 is not valid utf-8" in messages[0]     # several blocks in


def test_unlabelled_marker_survives_pickling():
    assert pickle.loads(pickle.dumps(corpus_stage._MARKED)) is corpus_stage._MARKED
