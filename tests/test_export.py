"""Exports: word2vec text/binary files read back by gensim, gensim KeyedVectors from artifacts, and the
projector folder (layout, escaping, point limit, replacement rules, atomicity)."""

import json
import os

import numpy as np
import pytest

from nlp_pipeline.artifacts import LsaResult, WordVectors
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError
from nlp_pipeline.export.projector import (CONFIG_FILE, MARKER_FILE, MissingSourceError, ProjectorEmbedding,
                                           collect_sources, document_embedding, export_projector, word_embedding)
from nlp_pipeline.export.vectors import (escape_token, export_word_vectors, format_float_rows, read_vectors,
                                         to_keyed_vectors, write_word2vec)


def word_vectors(n: int = 4, dim: int = 3, method: str = "word2vec") -> WordVectors:
    rng = np.random.default_rng(0)
    keys = ["the", "cat", 'say"hi', "new york"][:n] + [f"w{i}" for i in range(max(0, n - 4))]
    return WordVectors(keys=keys, vectors=rng.standard_normal((n, dim)).astype(np.float32),
                       counts=np.arange(n, 0, -1, dtype=np.int64) * 10, method=method)


# --- word2vec format -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_files_load_in_gensim_and_back_in_ours(tmp_path, binary):
    from gensim.models import KeyedVectors

    vectors = word_vectors(6, 5)
    path = tmp_path / ("v.bin" if binary else "v.txt")
    report = export_word_vectors(vectors, path, binary=binary)
    assert report["words"] == 6 and report["dim"] == 5 and report["escaped_keys"] == 1
    assert report["bytes"] == path.stat().st_size
    loaded = KeyedVectors.load_word2vec_format(path, binary=binary)
    expected_keys = ["the", "cat", 'say"hi', "new\u2423york", "w0", "w1"]
    assert loaded.index_to_key == expected_keys
    np.testing.assert_array_equal(loaded.vectors, vectors.vectors)  # shortest round-trip text is exact
    keys, ours = read_vectors(path, expected_dim=5)
    assert keys == expected_keys
    np.testing.assert_array_equal(ours, vectors.vectors)
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left


def test_text_format_lines_by_hand(tmp_path):
    path = tmp_path / "v.txt"
    write_word2vec(path, ["a", "b c"], np.array([[0.5, -1.0], [1e-7, 3.0]], dtype=np.float32))
    assert path.read_text(encoding="utf-8") == "2 2\na 0.5 -1\nb\u2423c 1e-7 3\n"
    assert b"".join(format_float_rows(np.array([[0.1, 2.0]]), "\t")) == b"0.1\t2\n"


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("precious", encoding="utf-8")
    with pytest.raises(ConfigError, match="already exists"):
        write_word2vec(path, ["a"], np.ones((1, 2)))
    assert path.read_text(encoding="utf-8") == "precious"
    write_word2vec(path, ["a"], np.ones((1, 2)), overwrite=True)
    assert path.read_text(encoding="utf-8") == "1 2\na 1 1\n"


def test_bad_vectors_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(DataError, match="NaN"):
        write_word2vec(tmp_path / "v.txt", ["a"], np.array([[np.nan, 1.0]]))
    with pytest.raises(DataError, match="do not match"):
        write_word2vec(tmp_path / "v.txt", ["a", "b"], np.ones((1, 2)))
    with pytest.raises(DataError, match="both become"):
        write_word2vec(tmp_path / "v.txt", ["a b", "a\u2423b"], np.ones((2, 2)))
    assert os.listdir(tmp_path) == []


def test_escape_token_examples():
    assert escape_token("") == "<empty>"
    assert escape_token(" ") == "\u2423" and escape_token(" ", spaces=False) == "\u2423"
    assert escape_token("a\tb\nc\r") == "a\\tb\\nc\\r"
    assert escape_token("new york") == "new\u2423york" and escape_token("new york", spaces=False) == "new york"
    assert escape_token("\u00a0") == "\\xa0" and escape_token("x\u2028y") == "x\\u2028y"
    assert escape_token("café") == "café"


def test_keyed_vectors_from_artifacts():
    vectors = word_vectors(4, 3)
    kv = to_keyed_vectors(vectors)
    assert kv.index_to_key == vectors.keys and kv.get_vecattr("cat", "count") == 30
    np.testing.assert_array_equal(kv["cat"], vectors.vectors[1])


def test_fasttext_keyed_vectors_give_unseen_words_gensims_vector():
    from gensim.models import FastText

    sentences = [["running", "runner", "runs", "walking", "walker"]] * 20
    model = FastText(sentences, vector_size=8, min_count=1, bucket=500, epochs=2, workers=1, seed=1)
    artifact = WordVectors(keys=list(model.wv.index_to_key), vectors=np.array(model.wv.vectors),
                           counts=np.full(5, 20, dtype=np.int64), method="fasttext",
                           ngram_vectors=np.array(model.wv.vectors_ngrams),
                           ngram_settings={"min_n": 3, "max_n": 6, "bucket": 500})
    kv = to_keyed_vectors(artifact)
    np.testing.assert_allclose(kv["runnings"], model.wv["runnings"], rtol=1e-6)
    np.testing.assert_array_equal(kv["runner"], model.wv["runner"])


# --- projector -------------------------------------------------------------------------------------------------

def read_tsv(path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_projector_layout_relative_paths_and_metadata(tmp_path):
    words = word_vectors(4, 3)
    words.keys[3] = "\t"  # whitespace-only token
    lsa = LsaResult(labels=np.array([0, 1, -1], np.int32), splits=np.array([0, 2, 3], np.int8),
                    label_names=["neg", "pos"], doc_vectors=np.eye(3, 2, dtype=np.float32),
                    snippets=["a fine\tfilm", "bad\nplot", ""])
    out = tmp_path / "proj"
    report = export_projector(out, [word_embedding("word2vec", words), document_embedding("lsa-docs", lsa),
                                    ("single", np.ones((2, 2)), [["x"], ["y z"]], ["ignored"])])
    assert report["replaced"] is False and [e["points"] for e in report["embeddings"]] == [4, 3, 2]
    assert sorted(os.listdir(out)) == sorted([CONFIG_FILE, MARKER_FILE, "word2vec", "lsa-docs", "single"])
    config = (out / CONFIG_FILE).read_text(encoding="utf-8")
    assert 'tensor_path: "word2vec/vectors.tsv"' in config and 'metadata_path: "lsa-docs/metadata.tsv"' in config
    assert str(tmp_path) not in config  # relative paths only
    assert read_tsv(out / "word2vec" / "metadata.tsv") == ["word\tfrequency", "the\t40", "cat\t30", 'say"hi\t20', "\\t\t10"]
    assert read_tsv(out / "lsa-docs" / "metadata.tsv") == [
        "label\tsplit\ttext", "neg\ttrain\ta fine\\tfilm", "pos\ttest\tbad\\nplot", "unlabelled\tunsup\t<empty>"]
    assert read_tsv(out / "single" / "metadata.tsv") == ["x", "y z"]  # one column: no header
    rows = [list(map(float, line.split("\t"))) for line in read_tsv(out / "word2vec" / "vectors.tsv")]
    np.testing.assert_array_equal(np.array(rows, dtype=np.float32), words.vectors)
    marker = json.loads((out / MARKER_FILE).read_text(encoding="utf-8"))
    assert [e["name"] for e in marker["embeddings"]] == ["word2vec", "lsa-docs", "single"]


def test_projector_keeps_the_most_frequent_points_with_a_warning(tmp_path):
    vectors = np.arange(10, dtype=np.float32).reshape(5, 2)
    counts = np.array([1, 50, 3, 40, 2])
    item = ProjectorEmbedding("words", vectors, [[f"w{i}", int(c)] for i, c in enumerate(counts)],
                              ["word", "frequency"], counts)
    with pytest.warns(UserWarning, match=r"kept the 3 most frequent of 5 points, dropped 2"):
        report = export_projector(tmp_path / "p", [item], max_points=3)
    assert report["embeddings"][0]["dropped"] == 2
    assert read_tsv(tmp_path / "p" / "words" / "metadata.tsv") == ["word\tfrequency", "w1\t50", "w2\t3", "w3\t40"]
    assert read_tsv(tmp_path / "p" / "words" / "vectors.tsv") == ["2\t3", "4\t5", "6\t7"]


def test_projector_output_folder_rules(tmp_path):
    item = ("v", np.ones((1, 2)), [["a"]], None)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match="not an earlier projector export"):
        export_projector(foreign, [item])
    assert os.listdir(foreign) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    export_projector(empty, [item])
    report = export_projector(empty, [("w", np.zeros((2, 2)), [["a"], ["b"]], None)])  # replaces an earlier export
    assert report["replaced"] is True and sorted(os.listdir(empty)) == sorted([CONFIG_FILE, MARKER_FILE, "w"])
    with pytest.raises(ConfigError, match="is a file"):
        export_projector(foreign / "notes.txt", [item])
    assert sorted(os.listdir(tmp_path)) == ["empty", "mine"]  # no temporary folders left behind


@pytest.mark.parametrize("item, error, message", [
    (("v", np.ones((2, 2)), [["a"]], None), DataError, "2 vectors but 1 metadata rows"),
    (("v", np.ones((2, 2)), [["a", 1], ["b", 2]], None), DataError, "need a header"),
    (("v", np.array([[np.inf, 0]]), [["a"]], None), DataError, "NaN or infinite"),
    (("v", np.ones((0, 2)), [], None), DataError, "shape"),
    (("bad/name", np.ones((1, 2)), [["a"]], None), ConfigError, "name"),
])
def test_projector_refuses_inconsistent_inputs(tmp_path, item, error, message):
    with pytest.raises(error, match=message):
        export_projector(tmp_path / "p", [item])
    assert os.listdir(tmp_path) == []


def test_projector_sources_not_computed_raise_a_clear_error():
    artifacts = {"word2vec": word_vectors(), "glove": None}
    assert [e.name for e in collect_sources(["word2vec"], artifacts)] == ["word2vec"]
    with pytest.raises(MissingSourceError, match="'glove'.*run: nlp-pipeline run") as caught:
        collect_sources(["word2vec", "glove"], artifacts, hints={"glove": "run: nlp-pipeline run --until embeddings"})
    assert caught.value.source == "glove" and isinstance(caught.value, MissingInputError)
    with pytest.raises(ConfigError, match="unknown projector source 'bert'"):
        collect_sources(["bert"], artifacts)
