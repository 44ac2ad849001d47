"""Ray Data as the executor of corpus reading, tokenization and numericalization's vocabulary counting: the same artifacts,
byte for byte, and the same cache keys as the in-process path. One embedded Ray for the whole module (started through ray_executor.ray_session, as a run
starts it). Skipped, with the reason, when Ray Data is not installed (`make test` installs it: extra `dev`).
"""

from __future__ import annotations

import bz2
import functools
import gzip
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
from nlp_pipeline.stages.tokenization import TokenizationConfig
from ray_helpers import read_both_ways, same_corpus_artifact, tokenize_and_count_both_ways, write_text_corpus

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray Data is not installed: pip install 'nlp-pipeline[distributed]'")


@pytest.fixture(scope="module")
def ray_instance():
    with ray_executor.ray_session(2) as ray:      # embedded: ray.init(num_cpus=5, include_dashboard=False)
        yield ray


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    return write_text_corpus(tmp_path_factory.mktemp("texts"))


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
    tokens = tokenize_and_count_both_ways(corpus, store, monkeypatch)
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
    local, on_ray, runs = read_both_ways(data, monkeypatch)
    assert runs == 1 and len(local) == 150 and set(local.label_names) == {"3", "neg", "pos"}
    same_corpus_artifact(local, on_ray, tmp_path)


def test_ray_reads_label_folders_in_groups_to_the_same_corpus(ray_instance, tmp_path, monkeypatch):
    for split, label in (("train", "pos"), ("train", "neg"), ("test", "pos"), ("test", "neg")):
        folder = tmp_path / "imdb" / split / label
        folder.mkdir(parents=True)
        for i in range(12):
            (folder / f"{i}.txt").write_text(f"{label} document {i} of {split}", encoding="utf-8")
    monkeypatch.setattr(corpus_stage, "RAY_CHUNK_BYTES", 200)          # groups of a few documents each
    local, on_ray, runs = read_both_ways(tmp_path / "imdb", monkeypatch, max_documents=40)
    assert runs == 1 and len(local) == 40
    same_corpus_artifact(local, on_ray, tmp_path)


def test_ray_streams_plain_text_in_blocks_of_lines_to_the_same_corpus(ray_instance, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_stage, "STREAM_MIN_BYTES", 0)         # a TextColumn (the labelled test reads a list)
    monkeypatch.setattr(corpus_stage, "RAY_CHUNK_BYTES", 300)          # blocks of a few lines: ~20 blocks
    lines = [" = Title = ", "", *(f"  line {i} says {'é ' * (i % 5)} \r" for i in range(150)), " = = Part = = ", "last"]
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "big.txt").write_text("\ufeff" + "\n".join(lines), encoding="utf-8")   # no final newline
    (tmp_path / "texts" / "small.txt.gz").write_bytes(gzip.compress("\n".join(lines[:40]).encode("utf-8")))
    local, on_ray, runs = read_both_ways(tmp_path / "texts", monkeypatch)
    assert runs == 1 and len(local) == 151 + 38 and local.info["dropped"]["headings"] == 3
    assert local.texts[0] == "line 0 says" and local.texts[150] == "last"
    same_corpus_artifact(local, on_ray, tmp_path)


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
    local, on_ray, runs = read_both_ways(data, monkeypatch)
    assert runs == 1 and len(blocks) > 10 and len(local) == 150 + 58
    same_corpus_artifact(local, on_ray, tmp_path)


def test_ray_reads_parquet_files_to_the_same_corpus(ray_instance, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [(f"review {i}: {'fine ' * (i % 4)}film é", ["pos", "neg", None][i % 3]) for i in range(90)]
    data = tmp_path / "data"
    data.mkdir()
    for name, part, groups in (("train", rows[:60], 16), ("test", rows[60:], None)):   # train in 4 row groups
        table = pa.table({"label": [label for _, label in part], "text": [text for text, _ in part]})
        pq.write_table(table, data / f"{name}.parquet", row_group_size=groups)
    local, on_ray, runs = read_both_ways(data, monkeypatch)
    assert runs == 1 and len(local) == 90 and local.label_names == ["neg", "pos"]
    assert local.info["unlabelled_rows"] == {"test": 10, "train": 20}           # a null label: kept, unlabelled
    same_corpus_artifact(local, on_ray, tmp_path)


def _wiki_page(title: str, markup: str, namespace: int = 0) -> str:
    return (f"<page><title>{title}</title><ns>{namespace}</ns><id>1</id><revision><id>2</id>"
            f"<text xml:space=\"preserve\">{markup}</text></revision></page>")


@pytest.mark.parametrize("streamed", [False, True], ids=["list-corpus", "textcolumn-corpus"])
def test_ray_reads_wiki_dumps_to_the_same_corpus(ray_instance, tmp_path, monkeypatch, streamed):
    if streamed:
        monkeypatch.setattr(corpus_stage, "STREAM_MIN_BYTES", 0)
    pages = [_wiki_page(f"Topic {i}", f"'''Topic {i}''' is a [[subject|thing]] people have studied since {1900 + i}.\n"
                                      f"== History ==\nIt began with {i} small steps taken by many people.\n"
                                      "* a list item\n{{Infobox|x=1}}") for i in range(6)]
    pages.insert(2, _wiki_page("Old name", "#REDIRECT [[Topic 1]]"))
    pages.insert(4, _wiki_page("Talk:Topic 1", "This talk page says things nobody should pretrain on, at length.", 1))
    head = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">'
    (tmp_path / "wiki").mkdir()
    (tmp_path / "wiki" / "a.xml").write_text(head + "".join(pages[:4]) + "</mediawiki>", encoding="utf-8")
    (tmp_path / "wiki" / "b.xml.bz2").write_bytes(bz2.compress((head + "".join(pages[4:]) + "</mediawiki>").encode()))
    local, on_ray, runs = read_both_ways(tmp_path / "wiki", monkeypatch)
    assert runs == 1 and len(local) == 12 and local.info["wiki"] == {"pages": 6, "redirects": 1, "not_articles": 1}
    assert not any("talk page" in text for text in local.texts)  # namespace 1 is not an article
    assert local.texts[0] == "Topic 0 is a thing people have studied since 1900."
    same_corpus_artifact(local, on_ray, tmp_path)


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
