"""`nlp-pipeline predict` and the Python API (`from nlp_pipeline import Classifier`) on hostile input: empty
strings, 100,000-character texts, invalid UTF-8 on stdin and in files, lone surrogates, things that are not text.

What each gets is documented (`nlp-pipeline predict --help`, Classifier.predict's docstring): the API answers any
string (an empty one is the document [xxbos]); the command line leaves an empty or whitespace-only line
unclassified (a blank row and a warning), classifies text with bytes that are not UTF-8 as U+FFFD (a warning
names the line), and only input that is all blank is an error. Here every case must get that answer or a
one-line error, never a traceback, and one row per input, in input order.
"""

from __future__ import annotations

import json
import math
import time

import pytest

import faultkit

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LONG = 100_000


@pytest.fixture(scope="module")
def classifier(reference):
    from nlp_pipeline import Classifier

    return Classifier.load(reference.run_dir, num_threads=1)


def _valid_answer(answer: dict, names: list[str]) -> None:
    assert set(answer) == {"label", "probabilities"} and answer["label"] in names
    probabilities = answer["probabilities"]
    assert list(probabilities) == names and all(math.isfinite(p) and 0 <= p <= 1 for p in probabilities.values())
    assert abs(sum(probabilities.values()) - 1) < 1e-4
    assert answer["label"] == max(probabilities, key=probabilities.get)


# --- the Python API -----------------------------------------------------------------------------------------

HOSTILE_LONG = {
    "one_letter": "a" * LONG,
    "words": ("a wonderful film and a dull story " * (LONG // 30))[:LONG],
    "no_spaces": "".join(chr(0x61 + (i * 7) % 26) for i in range(LONG)),
    "emoji": "😀" * LONG,
    "lone_surrogates": "\ud83d" * LONG,
    "zero_width": "\u200b" * LONG,
    "html": "&amp;<br />" * (LONG // 10),
    "newlines": "\n" * LONG,
    "control": "".join(chr(i % 32) for i in range(LONG)),
}


def test_the_api_answers_empty_and_blank_strings(classifier):
    names = classifier.label_names
    empty = classifier.predict("")
    _valid_answer(empty, names)
    assert classifier.predict(" \t\n\u3000") == empty  # documented: whitespace only is the document [xxbos]
    batch = classifier.predict(["", "a wonderful film", ""])
    assert len(batch) == 3 and batch[0] == batch[2] == empty
    assert classifier.predict_proba([""]).shape == (1, len(names))


@pytest.mark.parametrize("case", sorted(HOSTILE_LONG))
def test_the_api_answers_100k_character_texts(classifier, case):
    text = HOSTILE_LONG[case]
    started = time.time()
    answer = classifier.predict(text)
    _valid_answer(answer, classifier.label_names)
    assert classifier.predict([text, "a dull film"])[0]["label"] == answer["label"]
    assert time.time() - started < 120


@pytest.mark.parametrize("value", [None, b"a wonderful film", 3, 2.5, ["a", 1], [None], {"text": "a"}, [b"x"]])
def test_the_api_refuses_what_is_not_text_in_one_line(classifier, value):
    from nlp_pipeline.core.errors import DataError

    with pytest.raises(DataError) as error:
        classifier.predict(value)
    assert "\n" not in str(error.value) and "string" in str(error.value)


def test_the_api_on_no_texts(classifier):
    """An empty list: an empty list of answers, or a one-line error; nothing else."""
    from nlp_pipeline.core.errors import NlpPipelineError

    try:
        answers = classifier.predict([])
    except NlpPipelineError as exc:
        assert "\n" not in str(exc)
    else:
        assert answers == []


TEXT = st.one_of(st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
                 st.sampled_from(["", " ", "\ud83d", "😀" * 50, "&amp;" * 20, "xxbos xxmaj", "\u202eevil", "a" * 600]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXT, min_size=1, max_size=5))
def test_the_api_answers_any_unicode_and_one_text_equals_the_batch(classifier, check, texts):
    """Documented: any string gets an answer, and one text and a batch give the same probabilities (< 1e-6)."""
    check.trials += 1
    batch = classifier.predict_proba(texts)
    for text, row in zip(texts, batch):
        single = classifier.predict_proba(text)
        assert max(abs(a - b) for a, b in zip(single, row)) < 1e-5
        _valid_answer(classifier.predict(text), classifier.label_names)


# --- the command line ---------------------------------------------------------------------------------------

def _predict(ref, *args: str, stdin: bytes | None = None) -> faultkit.Done:
    return faultkit.cli(["predict", "--model", str(ref.run_dir), *args], None, input=stdin, timeout=300)


def _rows(done: faultkit.Done) -> list[list[str]]:
    return [line.split("\t") for line in done.stdout.splitlines()]


def _warnings(done: faultkit.Done) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("warning: ")]


def test_predict_help_documents_the_answers(reference):
    done = faultkit.cli(["predict", "--help"], None)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for phrase in ("empty or whitespace-only", "U+FFFD", "not UTF-8", "Only blank input is an error"):
        assert phrase in text, phrase


def test_predict_arguments_empty_long_and_undecodable(reference, classifier):
    """Arguments: an empty one gets a blank row, a 100k-character one an answer, one holding a byte that is not
    UTF-8 (Python passes it on as a lone surrogate) is classified with U+FFFD; each warning names its argument."""
    done = _predict(reference, "", "a wonderful film", "x" * LONG, "caf\udce9 film")
    faultkit.no_traceback(done)
    assert done.returncode == 0, done.describe()
    rows = _rows(done)
    assert len(rows) == 4 and rows[0] == ["", "", ""]
    assert rows[1][0] == classifier.predict("a wonderful film")["label"]
    assert rows[2][0] in classifier.label_names and len(rows[2][2]) <= 60
    assert rows[3][0] == classifier.predict("caf\ufffd film")["label"] and rows[3][2] == "caf\ufffd film"
    warnings = _warnings(done)
    assert len(warnings) == 2 and any("argument 4" in w and "U+FFFD" in w for w in warnings)
    assert any("argument 1" in w and "empty" in w for w in warnings), warnings


@pytest.mark.parametrize("stdin", [b"", b"\n", b"  \n\t\n", b"\r\n\r\n"])
def test_predict_on_blank_input_is_one_line(reference, stdin):
    done = _predict(reference, stdin=stdin)
    line = faultkit.error_line(done)
    assert "no texts to classify" in line
    assert all(row == "\t\t" for row in done.stdout.splitlines())  # rows stream out: blank ones may come first


def test_predict_stdin_with_invalid_utf8_answers_every_line(reference, classifier):
    """Finding 6: a byte that is not UTF-8 on stdin gave a traceback and none of the valid lines were printed."""
    lines = [b"a wonderful film", b"bad \xff\xfe bytes", b"", b"\xed\xa0\xbd half an emoji", b"x" * LONG + b"\xc3",
             b"\xef\xbb\xbfBOM inside", b"awful and tedious"]
    done = _predict(reference, "--json", stdin=b"\n".join(lines) + b"\n")
    faultkit.no_traceback(done)
    assert done.returncode == 0, done.describe()
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == len(lines)
    texts = [line.decode("utf-8", "replace") for line in lines]
    assert [a["text"] for a in answers] == texts
    for answer, text in zip(answers, texts):
        if text.strip():
            assert answer["label"] == classifier.predict(text)["label"]
        else:
            assert answer["label"] is None and answer["probabilities"] is None
    warnings = " ".join(_warnings(done))
    assert "stdin lines 2, 4, 5" in warnings and "stdin line 3" in warnings, warnings


def test_predict_file_with_long_lines_and_bad_bytes(reference, workdir, classifier):
    path = workdir / "texts.txt"
    path.write_bytes(b"i loved it\n" + b"superb " * (LONG // 7) + b"\n\xe9t\xe9\nboring mess")  # no final newline
    done = _predict(reference, "--file", str(path))
    faultkit.no_traceback(done)
    assert done.returncode == 0, done.describe()
    rows = _rows(done)
    assert len(rows) == 4 and rows[3][2] == "boring mess" and rows[2][2] == "\ufffdt\ufffd"
    assert f"{path} line 3" in done.stderr


def test_predict_missing_or_unreadable_input_is_one_line(reference, workdir):
    missing = _predict(reference, "--file", str(workdir / "nope.txt"))
    assert str(workdir / "nope.txt") in faultkit.usage_error_line(missing)
    no_model = faultkit.cli(["predict", "--model", str(workdir / "no-model"), "text"], None)
    assert str(workdir / "no-model") in faultkit.error_line(no_model)
