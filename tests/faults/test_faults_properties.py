"""Property-based tests (hypothesis) of the tokenizer rules, tokenization, numericalization and the corpus readers.

Texts are hostile on purpose: any code point (lone surrogates included), control characters, right-to-left and
zero-width characters, emoji with modifiers and joiners, combining marks, HTML entities and markup, the
pipeline's own special tokens, and very long runs. The properties are what the modules promise: round trips
where the code documents one (replace_rep, replace_wrep on words, spec_add_spaces, the vocabulary, CSV written by
the csv module, encodings with and without a byte-order mark), the same tokens whatever the batching, no crash
and no lone surrogate in any output, and a one-line DataError naming the line for JSON lines that are not
objects and for a stray CSV quote that swallows rows.

Each property runs twice: a few dozen examples in the default suite, many more under the slow marker
(`make test-faults`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nlp_pipeline import rules  # noqa: E402
from nlp_pipeline.core.errors import DataError  # noqa: E402

FEW, MANY = 40, 1500  # examples per property: default suite, slow suite
LONG = 200            # longest generated run in the default suite (the slow suite goes to 20,000)


def both(few: int = FEW, many: int = MANY, examples: tuple[dict, ...] = (), xfail: str | None = None, **strategies):
    """Two tests of one property: `few` examples in the default suite and `many` marked slow; `examples` are
    always tried first; `xfail` marks both as a known failure (strict: they fail once it is fixed)."""
    def make(fn):
        common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                            HealthCheck.data_too_large])
        tests = []
        for count in (few, many):
            test = given(**strategies)(fn)
            for kwargs in examples:
                test = example(**kwargs)(test)
            test = settings(max_examples=count, **common)(test)
            if xfail:
                test = pytest.mark.xfail(strict=True, reason=xfail)(test)
            tests.append(test)
        return tests[0], pytest.mark.slow(tests[1])
    return make


# --- hostile text -------------------------------------------------------------------------------------------

FRAGMENTS = [
    "\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\r\n", "\r", "\t", "\v", "\f", "\u2028", "\u2029",  # control, breaks
    "\u202e", "\u202d", "\u200f", "\u200e", "\u2066", "مرحبا بالعالم", "שלום", "\u0627\u0644\u0633",  # RTL
    "\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u180e",                                          # zero width
    "😀", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "\U0001f1fa\U0001f1f8", "e\u0301", "a\u0308\u0308\u0308", "\ufe0f",   # emoji, marks
    "\ud83d", "\ude00", "\udcff", "x\ud800y",                                                           # lone surrogates
    "&amp;", "&#39;", "&quot;", "&lt;br /&gt;", "<br />", "<BR>", "&#x1F600;", "&#99999999;", "&nbsp;", "quot;",
    "it#39;s", "&", ";", "<unk>", "@-@", " @.@ ", "\\n", '\\"', "\xa0",                              # HTML, escapes
    "xxbos", "xxmaj", "xxup", "xxunk", "xxpad", "xxrep", "xxwrep", "xxrep 3", "xxwrep 2 xxmaj",      # special tokens
    "İ", "ß", "ﬃ", "ǅ", "Σ", "ΣΣ", "ŉ", "K", "Ω", "ᾼ", "ﬀ",                                         # case oddities
    "/", "#", "\\", "...", "n't", "'s", "(", ")", "$", "%", "``", "''",
]


def runs(longest: int = LONG):
    return st.tuples(st.sampled_from(["a", "!", ".", "é", "😀", " ", "\n", "1", "ab", "the ", "Wow ", "\u200b"]),
                     st.integers(2, longest)).map(lambda pair: pair[0] * pair[1])


ANY_CHAR = st.characters(codec=None, exclude_categories=())  # every code point, surrogates too


def hostile_text(longest: int = LONG, max_parts: int = 12):
    return st.lists(st.one_of(st.text(ANY_CHAR, max_size=12), st.sampled_from(FRAGMENTS), runs(longest)),
                    max_size=max_parts).map("".join)


HOSTILE = hostile_text()
SURROGATE = re.compile("[\ud800-\udfff]")


def no_surrogates(text: str) -> str:
    return rules.replace_surrogates(text)[0]


# --- rules --------------------------------------------------------------------------------------------------

def _replace_surrogates(check, text):
    check.trials += 1
    out, n = rules.replace_surrogates(text)
    assert len(out) == len(text) and n == len(SURROGATE.findall(text))
    assert not SURROGATE.search(out)
    out.encode("utf-8")
    assert all(a == b or (SURROGATE.match(a) and b == rules.REPLACEMENT) for a, b in zip(text, out))
    assert rules.replace_surrogates(out) == (out, 0)


test_replace_surrogates, test_replace_surrogates_many = both(text=HOSTILE)(_replace_surrogates)


def _text_rules_never_crash(check, text):
    """Every text rule alone and all together: a str, and no lone surrogate from a text without one."""
    check.trials += 1
    text = no_surrogates(text)
    for rule in (*rules.TEXT_RULES.values(), rules.compose_text_rules(rules.DEFAULT_RULES)):
        out = rule(text)
        assert isinstance(out, str) and not SURROGATE.search(out)
        out.encode("utf-8")
    assert "\xa0" not in rules.fix_html(text)


test_text_rules_never_crash, test_text_rules_never_crash_many = both(text=HOSTILE)(_text_rules_never_crash)

_UNREP = re.compile(r" xxrep (\d+) (\S) ")


def _replace_rep_round_trip(check, text):
    """replace_rep('sooo') == 's xxrep 3 o ': the count and the character give the run back."""
    check.trials += 1
    text = no_surrogates(text)
    assume("xxrep" not in text)
    out = rules.replace_rep(text)
    assert _UNREP.sub(lambda m: m[2] * int(m[1]), out) == text


test_replace_rep_round_trip, test_replace_rep_round_trip_many = both(text=HOSTILE)(_replace_rep_round_trip)

WORDS = st.sampled_from(["the", "a", "film", "1", "é", "x_y", "日本", "Wow", "WOW", "no", "it"])


def _replace_wrep_round_trip(check, words):
    """On words joined by single spaces, xxwrep N WORD stands for N copies of WORD: expanding it gives the words
    back."""
    check.trials += 1
    text = " ".join(words)
    tokens = rules.replace_wrep(text).split()
    expanded, i = [], 0
    while i < len(tokens):
        if tokens[i] == rules.TK_WREP:
            expanded += [tokens[i + 2]] * int(tokens[i + 1])
            i += 3
        else:
            expanded.append(tokens[i])
            i += 1
    assert expanded == words


test_replace_wrep_round_trip, test_replace_wrep_round_trip_many = both(
    words=st.lists(st.one_of(WORDS, st.tuples(WORDS, st.integers(3, 6)).map(lambda p: [p[0]] * p[1])), max_size=15)
    .map(lambda parts: [w for part in parts for w in (part if isinstance(part, list) else [part])])
)(_replace_wrep_round_trip)


def _space_rules(check, text):
    check.trials += 1
    text = no_surrogates(text)
    assert rules.spec_add_spaces(text).replace(" ", "") == text.replace(" ", "")
    squeezed = rules.rm_useless_spaces(text)
    assert squeezed == re.sub(" {2,}", " ", text) and "  " not in squeezed
    assert rules.rm_useless_spaces(squeezed) == squeezed


test_space_rules, test_space_rules_many = both(text=HOSTILE)(_space_rules)

TOKEN = st.one_of(st.text(ANY_CHAR, min_size=1, max_size=8), st.sampled_from(FRAGMENTS),
                  st.sampled_from(list(rules.SPECIAL_TOKENS)))


def _token_transform_is_the_token_rules(check, token, cap):
    """token_transform(...)(t) is replace_all_caps, replace_maj, lowercase run on [t] (as documented), then cut to
    max_token_length except special tokens; whitespace-only tokens are dropped."""
    check.trials += 1
    token = no_surrogates(token)
    transform = rules.token_transform(rules.DEFAULT_RULES, max_token_length=cap)
    out = transform(token)
    if token.isspace():
        assert out == ()
        return
    expected = rules.lowercase(rules.replace_maj(rules.replace_all_caps([token])))
    if cap:
        expected = [t if t in rules.SPECIAL_TOKENS or len(t) <= cap else t[:cap] for t in expected]
    assert list(out) == expected
    assert all(t == t.lower() for t in out)


test_token_transform_is_the_token_rules, test_token_transform_is_the_token_rules_many = both(
    token=TOKEN, cap=st.sampled_from([0, 1, 3, 50]))(_token_transform_is_the_token_rules)


def _detokenize_never_crashes(check, tokens):
    check.trials += 1
    tokens = [no_surrogates(t) for t in tokens]
    assert isinstance(rules.detokenize(tokens), str)


test_detokenize_never_crashes, test_detokenize_never_crashes_many = both(
    tokens=st.lists(st.one_of(TOKEN, st.integers(0, 9).map(str)), max_size=20))(_detokenize_never_crashes)


# --- tokenization -------------------------------------------------------------------------------------------

def _config(**kwargs):
    from nlp_pipeline.stages.tokenization import TokenizationConfig

    return TokenizationConfig(workers=1, **kwargs)


def _tokenize(texts, **kwargs):
    from nlp_pipeline.stages.tokenization import tokenize_texts

    return tokenize_texts(_config(**kwargs), texts)


def _tokens_are_clean(check, text):
    """Any text tokenizes: xxbos first, no empty or whitespace-only token, nothing that is not UTF-8, every token
    in lowercase and at most max_token_length long (special tokens excepted); a lone surrogate tokenizes as
    U+FFFD would."""
    check.trials += 1
    tokens = _tokenize([text])[0]
    assert tokens[0] == rules.BOS
    for token in tokens:
        assert token and not token.isspace() and not SURROGATE.search(token)
        token.encode("utf-8")
        assert token == token.lower()
        assert len(token) <= 50 or token in rules.SPECIAL_TOKENS
    assert _tokenize([no_surrogates(text)])[0] == tokens


test_tokens_are_clean, test_tokens_are_clean_many = both(text=HOSTILE)(_tokens_are_clean)


def _same_tokens_whatever_the_batching(check, texts, chunk_size):
    """The stage's promise: the output depends neither on how texts are batched nor on chunk_size, and
    tokenize_to_ids (the stage) gives the tokens tokenize_texts (predict) gives."""
    from nlp_pipeline.stages.tokenization import tokenize_to_ids

    check.trials += 1
    together = _tokenize(texts)
    assert together == [_tokenize([t])[0] for t in texts]
    types, ids, offsets = tokenize_to_ids(_config(chunk_size=chunk_size), texts)
    assert len(offsets) == len(texts) + 1
    assert [[types[i] for i in ids[offsets[d]:offsets[d + 1]]] for d in range(len(texts))] == together


test_same_tokens_whatever_the_batching, test_same_tokens_whatever_the_batching_many = both(
    few=25, many=400, texts=st.lists(HOSTILE, max_size=6), chunk_size=st.integers(1, 4)
)(_same_tokens_whatever_the_batching)

PLAIN_WORDS = st.sampled_from(["film", "good", "Paris", "NASA", "the", "story", "Moving", "BAD", "acting", "fun",
                               "Great", "OK", "it"])


def _detokenize_restores_plain_words(check, words):
    """detokenize(tokenize(text)) gives the text back for words separated by single spaces whose case is all
    lower, capitalised or all caps (two capitals or more), repeated or not: xxmaj, xxup and xxwrep undone."""
    check.trials += 1
    text = " ".join(words)
    assert rules.detokenize(_tokenize([text])[0]) == text


test_detokenize_restores_plain_words, test_detokenize_restores_plain_words_many = both(
    words=st.lists(st.one_of(PLAIN_WORDS, st.tuples(PLAIN_WORDS, st.integers(3, 5)).map(lambda p: [p[0]] * p[1])),
                   min_size=1, max_size=12)
    .map(lambda parts: [w for part in parts for w in (part if isinstance(part, list) else [part])])
)(_detokenize_restores_plain_words)


def _detokenized_text_stays_the_size_of_the_text(check, text):
    """Showing a tokenized text (detokenize: reports, projector labels) costs about the text's own size: a case
    change can triple a character ('ﬃ' -> 'FFI') and a space may come between tokens, but a text cannot make it
    build a string of a size the text does not have."""
    check.trials += 1
    shown = rules.detokenize(_tokenize([text])[0])
    assert len(shown) <= 4 * len(text) + 50


test_detokenized_text_stays_the_size_of_the_text, test_detokenized_text_stays_the_size_of_the_text_many = both(
    text=st.one_of(HOSTILE, st.sampled_from(["a film xxrep 97531 x here", "xxwrep 50607 the", "ok xxrep 989898 !"])),
    examples=(dict(text="a film xxrep 97531 x here"),),
)(_detokenized_text_stays_the_size_of_the_text)


# --- numericalization ---------------------------------------------------------------------------------------

def _tokens_artifact(docs: list[list[str]], splits: list[str]):
    from nlp_pipeline.artifacts import SPLITS, Tokens

    index: dict[str, int] = {}
    ids, offsets = [], [0]
    for doc in docs:
        ids += [index.setdefault(token, len(index)) for token in doc]
        offsets.append(len(ids))
    return Tokens(labels=np.zeros(len(docs), np.int32), splits=np.array([SPLITS.index(s) for s in splits], np.int8),
                  label_names=["x"], ids=np.array(ids, np.int32), offsets=np.array(offsets, np.int64),
                  types=list(index), settings={"lang": "en"})


SMALL_TOKEN = st.one_of(st.sampled_from(["a", "b", "c", "d", "e", "😀", "xxunk", "xxbos", "xxmaj"]),
                        st.text(ANY_CHAR, min_size=1, max_size=3).map(no_surrogates))


def _numericalize_round_trip(check, docs, min_freq, max_vocab):
    """Every id maps back to its token, or to xxunk when the token is not in the vocabulary; specials come
    first; the vocabulary keeps tokens seen at least min_freq times in train, most frequent first (ties in
    string order), at most max_vocab entries; a token seen only in test is never in it."""
    from nlp_pipeline.stages.numericalization import NumericalizationConfig, numericalize

    check.trials += 1
    splits = ["train" if i % 3 else "test" for i in range(len(docs))]
    tokens = _tokens_artifact(docs, splits)
    config = NumericalizationConfig(min_freq=min_freq, max_vocab=max_vocab)
    if not any(doc for doc, s in zip(docs, splits) if s == "train"):  # nothing to build a vocabulary from
        with pytest.raises(DataError, match="no tokens in splits"):
            numericalize(config, tokens)
        return
    result = numericalize(config, tokens)
    vocab = result.vocab
    itos = list(vocab.itos)
    assert itos[: len(rules.SPECIAL_TOKENS)] == list(rules.SPECIAL_TOKENS) and len(set(itos)) == len(itos)
    assert len(itos) <= max_vocab
    counts = Counter(t for doc, s in zip(docs, splits) if s == "train" for t in doc)
    kept = itos[len(rules.SPECIAL_TOKENS):]
    assert all(counts[t] >= min_freq for t in kept)
    assert [(-counts[t], t) for t in kept] == sorted((-counts[t], t) for t in kept)
    left_out = [t for t in counts if counts[t] >= min_freq and t not in vocab.stoi and t not in rules.SPECIAL_TOKENS]
    assert not left_out or len(itos) == max_vocab
    if kept and left_out:
        assert min((-counts[t], t) for t in left_out) > max((-counts[t], t) for t in kept)
    for d, doc in enumerate(docs):
        back = vocab.tokens(result.ids[result.offsets[d]:result.offsets[d + 1]])
        assert back == [t if t in vocab.stoi else vocab.unk_token for t in doc]
    assert list(vocab.tokens(vocab.encode(itos))) == itos


test_numericalize_round_trip, test_numericalize_round_trip_many = both(
    docs=st.lists(st.lists(SMALL_TOKEN, max_size=8), min_size=1, max_size=10),
    min_freq=st.integers(1, 3), max_vocab=st.integers(11, 16)
)(_numericalize_round_trip)


# --- corpus readers -----------------------------------------------------------------------------------------

class Files:
    """Fresh file names under one folder, one per example."""

    def __init__(self, folder: Path):
        self.folder, self.count = folder, 0

    def __call__(self, suffix: str) -> Path:
        self.count += 1
        return self.folder / f"f{self.count}{suffix}"


@pytest.fixture
def files(tmp_path):
    return Files(tmp_path)


def _read(path: Path, encoding: str = "utf-8"):
    from nlp_pipeline.stages.corpus_sources import read_table

    table = read_table(path, encoding)
    return table.names, {name: table.column(name) for name in table.names}


LABEL = st.sampled_from(["A", "B", "C"])
ONE_LINE = HOSTILE.map(no_surrogates).map(lambda t: re.sub(r"[\r\n]", " ", t))


def _csv_round_trip(check, files, rows, quoting):
    """A CSV written by Python's csv module (quotes, commas, control characters, any text on one line) reads back
    cell for cell."""
    check.trials += 1
    path = files(".csv")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=quoting)
        writer.writerow(["label", "text"])
        writer.writerows(rows)
    names, columns = _read(path)
    assert names == ["label", "text"]
    assert columns["label"] == [r[0] for r in rows] and columns["text"] == [r[1] for r in rows]


test_csv_round_trip, test_csv_round_trip_many = both(
    rows=st.lists(st.tuples(LABEL, ONE_LINE), min_size=1, max_size=12),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])
)(_csv_round_trip)

PROSE_LINES = st.lists(st.text(st.characters(codec="utf-8", exclude_characters=",\r\n\"", exclude_categories=("Cs",)),
                               max_size=20), min_size=2, max_size=4)


def _csv_multi_line_fields_still_read(check, files, rows, ending):
    """A quoted field spanning lines (a text with paragraphs, no comma in its lines) is one cell, not rows."""
    check.trials += 1
    rows = [(label, ending.join(lines) if isinstance(lines, list) else lines) for label, lines in rows]
    path = files(".csv")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["label", "text"])
        writer.writerows(rows)
    names, columns = _read(path)
    assert columns["text"] == [r[1] for r in rows] and columns["label"] == [r[0] for r in rows]


test_csv_multi_line_fields_still_read, test_csv_multi_line_fields_still_read_many = both(
    rows=st.lists(st.tuples(LABEL, st.one_of(PROSE_LINES, ONE_LINE)), min_size=1, max_size=10),
    ending=st.sampled_from(["\n", "\r\n"])
)(_csv_multi_line_fields_still_read)

WORD_TEXT = st.lists(st.sampled_from(["good", "bad", "film", "plot", "dull", "fun", "ok", "the"]), min_size=1,
                     max_size=5).map(" ".join)


def _csv_stray_quote_is_refused_naming_its_line(check, files, rows, kind, data):
    """Finding 4: a stray opening quote made the reader merge the rows up to the next quote (12 rows read as 8).
    A stray quote that never closes, is followed by text after it closes, or swallows lines that read as rows
    of the file (a label seen in the file, then text) is refused with the line of the quote."""
    check.trials += 1
    n = len(rows)
    i = data.draw(st.integers(0, n - 2), label="opening row")
    rows = [[label, f"{text} {k}"] for k, (label, text) in enumerate(rows)]  # distinct texts, as in a real file
    if kind == "never_closes":
        rows[i][1] = '"' + rows[i][1]
    elif kind == "text_after_closing":
        rows[i][1] = '"' + rows[i][1] + '" and more'
    else:
        j = data.draw(st.integers(i + 1, n - 1), label="closing row")
        rows[i][1] = '"' + rows[i][1]
        rows[j][1] = rows[j][1] + '"'
        untouched = [r[0] for k, r in enumerate(rows) if k < i or k > j]
        # the documented rule needs rows that read as rows: enough single-line rows for the text column to look
        # like free text (3 distinct texts; with 2, two texts pass for a label column) and the labels seen there
        assume(len(untouched) >= 3 and set(r[0] for r in rows[i + 1:j + 1]) <= set(untouched))
    path = files(".csv")
    path.write_text("label,text\n" + "".join(f"{label},{text}\n" for label, text in rows), encoding="utf-8")
    with pytest.raises(DataError) as error:
        _read(path)
    message = str(error.value)
    assert "\n" not in message and f"{path} line {i + 2}:" in message, message


test_csv_stray_quote_is_refused_naming_its_line, test_csv_stray_quote_is_refused_naming_its_line_many = both(
    rows=st.lists(st.tuples(st.sampled_from(["A", "B"]), WORD_TEXT), min_size=4, max_size=20),
    kind=st.sampled_from(["never_closes", "text_after_closing", "swallows_rows"]), data=st.data()
)(_csv_stray_quote_is_refused_naming_its_line)

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "cp1252", "latin-1"]


def _encodings_and_bom(check, files, encoding, fmt, data):
    """A file in any of these encodings, read with --encoding naming it, gives the same texts; a UTF-8
    byte-order mark is not part of the first column's name or cell."""
    check.trials += 1
    codec = {"utf-8-sig": "utf-8", "utf-16": "utf-8", "utf-16-le": "utf-8"}.get(encoding, encoding)
    alphabet = st.characters(codec=codec, exclude_characters="\r\n\x00\"", exclude_categories=("Cs",))
    texts = data.draw(st.lists(st.text(alphabet, max_size=15), min_size=1, max_size=8), label="texts")
    path = files({"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl"}[fmt])
    if fmt == "jsonl":
        body = "".join(json.dumps({"text": t, "label": "A"}, ensure_ascii=False) + "\n" for t in texts)
    else:
        sep = "," if fmt == "csv" else "\t"
        texts = [t.replace("\t", " ") for t in texts] if fmt == "tsv" else texts
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, delimiter=sep, quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE,
                            escapechar=None if fmt == "csv" else "\x00")
        writer.writerow(["text", "label"])
        writer.writerows([(t, "A") for t in texts])
        body = buffer.getvalue()
    path.write_bytes(body.encode(encoding))
    reading = {"utf-8-sig": "utf-8", "utf-16-le": "utf-16-le"}.get(encoding, encoding)
    names, columns = _read(path, reading)
    assert sorted(names) == ["label", "text"] and columns["text"] == texts


test_encodings_and_bom, test_encodings_and_bom_many = both(
    encoding=st.sampled_from(ENCODINGS), fmt=st.sampled_from(["csv", "tsv", "jsonl"]), data=st.data()
)(_encodings_and_bom)

NOT_AN_OBJECT = st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.floats(allow_nan=False),
                          st.text(max_size=5), st.none(), st.booleans())


def _jsonl_lines_that_are_not_objects(check, files, good, bad, at, blanks):
    """A JSON-lines file with one line that is valid JSON but not an object: a one-line DataError naming that
    line (blank lines count as lines)."""
    check.trials += 1
    lines = [json.dumps({"text": t, "label": "A"}) for t in good]
    at = min(max(at, 1), len(lines))  # after an object: a file that starts with '[' is one JSON array
    lines.insert(at, json.dumps(bad))
    physical = []
    for number, line in enumerate(lines):
        physical += [""] * blanks if number == at else []
        physical.append(line)
    path = files(".jsonl")
    path.write_text("\n".join(physical) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        _read(path)
    message = str(error.value)
    assert "\n" not in message and f"line {physical.index(json.dumps(bad)) + 1}:" in message, message


test_jsonl_lines_that_are_not_objects, test_jsonl_lines_that_are_not_objects_many = both(
    good=st.lists(ONE_LINE, min_size=1, max_size=6), bad=NOT_AN_OBJECT, at=st.integers(1, 6), blanks=st.integers(0, 2)
)(_jsonl_lines_that_are_not_objects)


def _corpus_keeps_every_text(check, files, train, test):
    """load_corpus on JSON lines of hostile texts: every text that is not blank is kept, trimmed, with lone
    surrogates (JSON escapes such as \\ud83d) as U+FFFD (finding 5: they crashed the tokenizer, every rerun)."""
    from nlp_pipeline.stages.corpus import CorpusConfig, load_corpus

    check.trials += 1
    folder = files("")
    folder.mkdir()
    base = [("great film", "pos"), ("dull film", "neg"), ("loved it", "pos"), ("hated it", "neg")]
    train_rows = base + [(t, "pos" if k % 2 else "neg") for k, t in enumerate(train)]
    test_rows = base[:2] + [(t, "neg") for t in test]
    for name, rows in (("train", train_rows), ("test", test_rows)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows),
                                              encoding="utf-8")
    corpus = load_corpus(CorpusConfig(source=str(folder)))
    expected = [no_surrogates(t.strip()) for t, _ in train_rows + test_rows]
    assert Counter(corpus.texts) == Counter(t for t in expected if t)
    assert not any(SURROGATE.search(t) for t in corpus.texts)


test_corpus_keeps_every_text, test_corpus_keeps_every_text_many = both(
    few=20, many=300, train=st.lists(HOSTILE, max_size=6), test=st.lists(HOSTILE, max_size=3)
)(_corpus_keeps_every_text)


# --- very long input ----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "txt"])
def test_a_50_mb_line(tmp_path, fmt):
    """One 50 MB document among ordinary ones reads whole, in seconds, in every text format."""
    from nlp_pipeline.stages.corpus_sources import read_lines, read_table

    big = ("long review " * 5_000_000)[: 50 << 20]
    path = tmp_path / f"big.{fmt}"
    if fmt == "jsonl":
        path.write_text(json.dumps({"text": "short", "label": "A"}) + "\n" + json.dumps({"text": big, "label": "B"})
                        + "\n", encoding="utf-8")
    elif fmt == "csv":
        path.write_text(f"label,text\nA,short\nB,\"{big}\"\nA,\"quoted, with a comma\"\n", encoding="utf-8")
    else:
        path.write_text(f"short\n{big}\nlast\n", encoding="utf-8")
    started = time.time()
    if fmt == "txt":
        texts = read_lines(path)[0]
        assert [len(t) for t in texts] == [5, len(big.strip()), 4]
    else:
        texts = read_table(path).column("text")
        assert len(texts[1]) == len(big) and texts[0] == "short"
    assert time.time() - started < 120


@pytest.mark.slow
def test_tokenizing_a_very_long_text_is_bounded():
    """A 2 MB text without spaces and a 2 MB run of one character tokenize (spaCy's length limit does not apply
    to the tokenizer alone) and give bounded tokens."""
    started = time.time()
    tokens = _tokenize(["x" * (2 << 20), "ab" * (1 << 20), " ".join(f"w{i}" for i in range(200_000))])
    assert tokens[0][:3] == ["xxbos", "xxrep", str(2 << 20)]
    assert all(len(t) <= 50 for t in tokens[1][1:]) and len(tokens[2]) >= 200_000
    assert time.time() - started < 300
