"""Memory bounded by chunk, not by corpus: every bounded path gives exactly what the in-memory path gives.

Limits are made tiny here (spill past a few bytes, shards of a few tokens, chunks of two texts), so the spill
files, shard loops and streamed readers all run on hand-sized data; the artifacts they make are compared byte
for byte through the store. How much memory the large sizes need is measured in benchmarks/bench_scaling.py.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools

import numpy as np
import pytest

from nlp_pipeline.artifacts import TextColumn
from nlp_pipeline.core import spill
from nlp_pipeline.core.spill import ArrayWriter
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.models import batching
from nlp_pipeline.stages import corpus, numericalization, tokenization
from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus
from nlp_pipeline.stages.numericalization import NumericalizationConfig, document_shards, numericalize
from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize

TEXT = """ = Valkyria Chronicles = 

 Senjō no Valkyria 3 is a tactical role @-@ playing game .
 The game began development in 2010 , carrying over a large portion of the work .

 = = Gameplay = = 
 As with previous Valkyira Chronicles games , it is a TACTICAL game !
 It's    the   3rd game ; <br /> HTML and ... repeated !!!!!! marks .
"""


def _files(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.name != "meta.json"}


def _saved(tmp_path, stage: str, artifact) -> dict[str, str]:
    store = ArtifactStore(tmp_path / "cache")
    key = hashlib.sha256(repr((stage, len(list(store.root.glob(f'{stage}/*'))) if store.root.exists() else 0)).encode()).hexdigest()
    store.save(stage, key, artifact, {})
    return _files(store.folder(stage, key))


@pytest.fixture()
def text_folder(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("\ufeff" + TEXT, encoding="utf-8")
    (folder / "b.txt.gz").write_bytes(gzip.compress(("Second file , line one .\n\n   \nline two\nno newline at end").encode()))
    (folder / "c.txt").write_text("x\r\ny\r\n", encoding="utf-8")
    return folder


def test_array_writer_spills_past_its_limit_and_gives_the_same_values(tmp_path, monkeypatch):
    monkeypatch.setenv("NLP_PIPELINE_SPILL_DIR", str(tmp_path))
    held, spilled = ArrayWriter(np.int32), ArrayWriter(np.int32, memory_limit=8)
    for chunk in ([1, 2], [], [3], [4, 5, 6]):
        held.append(chunk)
        spilled.append(chunk)
    assert spilled.file is not None and held.file is None                 # the second one went to disk
    a, b = held.finish(), spilled.finish()
    assert a.tolist() == b.tolist() == [1, 2, 3, 4, 5, 6] and a.dtype == b.dtype == np.int32
    assert not list(tmp_path.iterdir())                                   # the spill file was unlinked at once
    assert ArrayWriter(np.int64, memory_limit=0).finish().tolist() == []


def test_text_column_is_a_sequence_of_the_texts_and_survives_the_store(tmp_path):
    texts = ["a", "bé", "", "日本語 text"] * 5000                             # > 64 KiB: stored as .npy, mapped back
    column = TextColumn.from_texts(texts)
    assert len(column) == len(texts) and column[1] == "bé" and column[-1] == "日本語 text" and column[2:4] == ["", "日本語 text"]
    assert list(column) == texts and column == texts
    with pytest.raises(IndexError):
        column[len(texts)]
    store = ArtifactStore(tmp_path / "cache")
    store.save("corpus", "0" * 64, column, {})
    loaded = store.load("corpus", "0" * 64)
    assert isinstance(loaded.data, np.memmap) and list(loaded) == texts


def test_streamed_text_corpus_equals_the_list_corpus(text_folder, monkeypatch):
    cfg = CorpusConfig(source=str(text_folder))
    listed = load_corpus(cfg)
    monkeypatch.setattr(corpus, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(spill, "SPILL_BYTES", 16)                          # the text bytes spill to disk too
    streamed = load_corpus(cfg)
    assert isinstance(listed.texts, list) and isinstance(streamed.texts, TextColumn)
    assert list(streamed.texts) == listed.texts
    assert listed.texts[0] == "Senjō no Valkyria 3 is a tactical role @-@ playing game ."   # BOM, heading, blanks gone
    assert "no newline at end" in listed.texts and "x" in listed.texts    # a last line without "\n"; "\r\n" endings
    for name in ("labels", "splits"):
        a, b = getattr(listed, name), getattr(streamed, name)
        assert a.dtype == b.dtype and a.tolist() == b.tolist(), name
    assert (streamed.label_names, streamed.target_type, streamed.name) == (listed.label_names, listed.target_type, listed.name)
    assert streamed.info == listed.info and streamed.info["dropped"]["headings"] == 2


def test_streamed_reader_names_the_line_of_a_bad_byte(tmp_path, monkeypatch):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nsecond caf\xe9 line\n")
    monkeypatch.setattr(corpus, "STREAM_MIN_BYTES", 0)
    from nlp_pipeline.core.errors import DataError

    with pytest.raises(DataError, match=r"bad.txt line 2, column 11: byte 0xe9 is not valid utf-8"):
        load_corpus(CorpusConfig(source=str(bad)))
    streamed = load_corpus(CorpusConfig(source=str(bad), encoding="cp1252"))
    assert list(streamed.texts) == ["fine line", "second café line"]


def test_tokenization_and_numericalization_artifacts_do_not_depend_on_chunks_shards_or_spilling(
        text_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("NLP_PIPELINE_SPILL_DIR", str(tmp_path))
    source = load_corpus(CorpusConfig(source=str(text_folder)))
    reference_tokens = tokenize(TokenizationConfig(workers=1), source)
    reference = (_saved(tmp_path, "tokenization", reference_tokens),
                 _saved(tmp_path, "numericalization", numericalize(NumericalizationConfig(min_freq=1), reference_tokens)))

    monkeypatch.setattr(corpus, "STREAM_MIN_BYTES", 0)                    # texts from a TextColumn ...
    monkeypatch.setattr(spill, "SPILL_BYTES", 12)                         # ... every array spilled ...
    monkeypatch.setattr(numericalization, "SHARD_TOKENS", 5)              # ... counted and mapped 5 tokens at a time
    streamed = load_corpus(CorpusConfig(source=str(text_folder)))
    tokens = tokenize(TokenizationConfig(workers=2, chunk_size=2), streamed)   # a pool, 2 texts per chunk
    assert not isinstance(tokens.ids, np.memmap) and tokens.ids.base is not None   # a map of the spill file
    result = numericalize(NumericalizationConfig(min_freq=1), tokens)
    assert (_saved(tmp_path, "tokenization", tokens), _saved(tmp_path, "numericalization", result)) == reference
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("nlp-pipeline-spill")]


def test_document_shards_cover_every_document_once():
    assert document_shards(np.array([0, 3, 5, 9, 10]), 4) == [(0, 2), (2, 3), (3, 4)]
    assert document_shards(np.array([0, 100]), 4) == [(0, 1)]                 # a long document is one shard
    assert document_shards(np.array([0]), 4) == []
    offsets = np.concatenate([[0], np.cumsum(np.random.default_rng(0).integers(0, 9, 500))])
    shards = document_shards(offsets, 37)
    assert [a for a, _ in shards] == [0] + [b for _, b in shards[:-1]] and shards[-1][1] == 500


def test_the_process_pool_keeps_few_chunks_in_flight():
    """A generator over a large file must not be read ahead of tokenization (Pool.imap read it all)."""
    pulled = []

    def texts():
        for i in itertools.count():
            if i == 400:
                return
            pulled.append(i)
            yield f"text number {i} ."

    stream = tokenization.stream_chunks(TokenizationConfig(workers=2, chunk_size=10), texts())
    next(stream)
    assert len(pulled) <= 10 * (2 * 2 + 1)          # 2 x workers chunks in flight, and the one being cut
    rest = list(stream)
    assert len(rest) == 39 and len(pulled) == 400


def test_lazy_lm_stream_equals_the_built_stream_window_by_window():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 12, 60)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(0, 1000, offsets[-1]).astype(np.int32)
    order = rng.permutation(60)
    built = np.concatenate([ids[offsets[d]:offsets[d + 1]] for d in order]).astype(np.int64)
    stream = batching.concat_documents(ids, offsets, order)
    assert len(stream) == len(built) and stream.tolist() == built.tolist() and stream[5:17].tolist() == built[5:17].tolist()
    rows = batching.layout_stream(stream, 4)
    expected = batching.layout_stream(built, 4)
    assert rows.shape == expected.shape and rows.size == expected.size and np.asarray(rows).tolist() == expected.tolist()
    for rank in range(3):
        mine, theirs = batching.shard(rows, rank, 3), batching.shard(expected, rank, 3)
        windows = batching.bptt_lengths(rows.shape[1], 7, np.random.default_rng(rank))
        for (x, y), (ex, ey) in zip(batching.lm_windows(mine, windows), batching.lm_windows(theirs, windows)):
            assert x.dtype == np.int64 and x.tolist() == ex.tolist() and y.tolist() == ey.tolist()
    empty = batching.layout_stream(batching.concat_documents(ids, offsets, np.zeros(0, np.int64)), 2)
    assert empty.shape == (2, 0) and empty[:, 0:0].shape == (2, 0)


def test_an_unlabelled_hub_dataset_is_streamed_with_the_same_corpus(monkeypatch):
    """hf:wikitext:wikitext-103-raw-v1 read with label_field "" (here a local stand-in with its layout: one
    "text" column, heading lines, blank rows, train/validation/test splits): streamed into a TextColumn, the same
    texts, labels, splits and info as the list path."""
    import datasets

    from nlp_pipeline.stages import corpus_sources

    def split(lines):
        return datasets.Dataset.from_dict({"text": lines})

    hub = datasets.DatasetDict({
        "test": split([" = Robert Boulter = \n", " Robert Boulter is an English actor .\n", "", " He appeared .\n"]),
        "train": split([" = Valkyria = \n", "", " Senjō no Valkyria 3 is a game .\n"] * 50),
        "validation": split([" Homarus gammarus is a lobster .\n", "   \n"]),
    })
    monkeypatch.setattr(corpus_sources, "read_hub", lambda name, config, revision: dict(hub.items()))
    cfg = CorpusConfig(source="hf:wikitext:wikitext-103-raw-v1", label_field="")
    listed = load_corpus(cfg)
    monkeypatch.setattr(corpus, "STREAM_MIN_BYTES", 0)
    streamed = load_corpus(cfg)
    assert isinstance(listed.texts, list) and isinstance(streamed.texts, TextColumn)
    assert list(streamed.texts) == listed.texts and len(listed.texts) == 3 + 100 + 1
    assert streamed.labels.tolist() == listed.labels.tolist() and streamed.splits.tolist() == listed.splits.tolist()
    assert streamed.info == listed.info and streamed.info["rows_read"] == {"unsup": 4 + 150 + 2}


def test_a_hub_pretraining_corpus_is_read_as_unlabelled_text():
    """pretrain_lm.corpus = "hf:wikitext:wikitext-103-raw-v1": its splits have no label column, so the general
    corpus is read with label_field "" (and can be streamed); a card or a path keeps its config and key."""
    from nlp_pipeline import pipeline

    def general_corpus(source):
        configs = pipeline.load_config(sets=[f"pretrain_lm.corpus={source}", "pretrain_lm.weights=none"])
        return next(i for i in pipeline.instances(configs) if i.id == "corpus:general").config

    assert general_corpus("hf:wikitext:wikitext-103-raw-v1").label_field == ""
    assert general_corpus("enwiki_sample").label_field is None
