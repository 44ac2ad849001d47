"""The tokenization stage: config checks, spaCy + rules on hand-checked texts, Tokens layout, workers parity."""

import numpy as np
import pytest

from nlp_pipeline.artifacts import Corpus, Tokens, split_code
from nlp_pipeline.core.config import build
from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.rules import DEFAULT_RULES, SPECIAL_TOKENS
from nlp_pipeline.stages.tokenization import (
    STAGE,
    TokenizationConfig,
    settings_of,
    tokenize,
    tokenize_texts,
    tokenize_to_ids,
)

ONE = TokenizationConfig(workers=1)


def test_defaults_and_settings():
    cfg = TokenizationConfig()
    assert cfg.lang == "en" and cfg.rules == list(DEFAULT_RULES) and cfg.add_bos
    assert settings_of(cfg) == {"lang": "en", "rules": list(DEFAULT_RULES), "max_token_length": 50,
                                "add_bos": True, "mark_whitespace": False}
    assert TokenizationConfig(**settings_of(cfg)) == cfg   # predict rebuilds the config from Tokens.settings


def test_key_ignores_workers_and_chunk_size_but_not_rules():
    upstream = {"corpus": "c" * 64}
    base = STAGE.key(TokenizationConfig(), upstream)
    assert STAGE.key(TokenizationConfig(workers=3, chunk_size=7), upstream) == base
    assert STAGE.key(TokenizationConfig(rules=["lowercase"]), upstream) != base


@pytest.mark.parametrize("values, message", [
    ({"rules": ["fix_html", "nope"]}, r"unknown rule 'nope' in tokenization.rules; valid rules: fix_html"),
    ({"lang": "english"}, r"tokenization.lang 'english' is not a language spaCy knows"),
    ({"lang": "zz"}, r"tokenization.lang 'zz'"),
    ({"lang": "../en"}, r"tokenization.lang '../en'"),
    ({"max_token_length": -1}, r"max_token_length"),
    ({"chunk_size": 0}, r"chunk_size"),
])
def test_bad_settings_are_one_line_config_errors(values, message):
    with pytest.raises(ConfigError, match=message) as info:
        build(TokenizationConfig, values, "tokenization")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        TokenizationConfig(**values)   # also when a script builds the config directly


def test_a_language_spacy_cannot_build_fails_in_the_caller_also_from_workers():
    pytest.importorskip("spacy")
    try:
        import sudachipy  # noqa: F401
        pytest.skip("Japanese support is installed here")
    except ImportError:
        pass
    cfg = TokenizationConfig(lang="ja", workers=2, chunk_size=1)   # passes the cheap check: spacy/lang/ja exists
    with pytest.raises(ConfigError, match=r"tokenization.lang 'ja': spaCy cannot build this language: .*SudachiPy"):
        tokenize_texts(cfg, ["a", "b", "c"])


def test_rules_from_a_toml_string_list():
    cfg = build(TokenizationConfig, {"rules": "fix_html, lowercase"}, "tokenization")   # --set style
    assert cfg.rules == ["fix_html", "lowercase"]


def test_tokenize_texts_with_every_rule():
    texts = [
        "Hello  WORLD!",
        "I said: NO NO NO!!!! <br />It&#39;s a/b",
        "",
    ]
    assert tokenize_texts(ONE, texts) == [
        ["xxbos", "xxmaj", "hello", "xxup", "world", "!"],
        ["xxbos", "i", "said", ":", "xxwrep", "3", "xxup", "no", "xxrep", "4", "!",
         "xxmaj", "it", "'s", "a", "/", "b"],
        ["xxbos"],
    ]


def test_special_tokens_are_never_split():
    text = "(xxunk), xxpad. xxbos xxeos! xxfld-xxrep xxwrep's xxup: xxmaj; xxspace"
    tokens = tokenize_texts(TokenizationConfig(workers=1, add_bos=False), [text])[0]
    for special in SPECIAL_TOKENS:
        assert special in tokens, special
    assert all(t in SPECIAL_TOKENS or len(t) <= 2 for t in tokens)   # no 'xx' fragments left over


def test_whitespace_tokens_are_dropped_or_marked():
    text = "one\n\ntwo\tthree \n four"
    assert tokenize_texts(ONE, [text]) == [["xxbos", "one", "two", "three", "four"]]
    marked = TokenizationConfig(workers=1, mark_whitespace=True)
    assert tokenize_texts(marked, [text]) == [["xxbos", "one", "xxspace", "two", "xxspace", "three", "xxspace", "four"]]


def test_long_tokens_are_capped():
    cfg = TokenizationConfig(workers=1, max_token_length=6, rules=["lowercase"])
    assert tokenize_texts(cfg, ["Supercalifragilistic ok"]) == [["xxbos", "superc", "ok"]]
    uncapped = TokenizationConfig(workers=1, max_token_length=0, rules=["lowercase"])
    assert tokenize_texts(uncapped, ["a" * 300]) == [["xxbos", "a" * 300]]


def test_no_rules_and_no_bos_is_plain_spacy():
    cfg = TokenizationConfig(workers=1, rules=[], add_bos=False)
    assert tokenize_texts(cfg, ["Don't STOP  now"]) == [["Do", "n't", "STOP", "now"]]   # extra space dropped


def test_german_and_spanish():
    german = TokenizationConfig(workers=1, lang="de")
    assert tokenize_texts(german, ["Über den Wolken, z.B. grenzenlos."]) == [
        ["xxbos", "xxmaj", "über", "den", "xxmaj", "wolken", ",", "z.b.", "grenzenlos", "."]
    ]
    spanish = TokenizationConfig(workers=1, lang="es")
    assert tokenize_texts(spanish, ["¿Qué tal? MUY bien, señor."]) == [
        ["xxbos", "¿", "xxmaj", "qué", "tal", "?", "xxup", "muy", "bien", ",", "señor", "."]
    ]


@pytest.mark.slow  # spacy.blank("fr") compiles its large exception list: about 4 s
def test_french():
    french = TokenizationConfig(workers=1, lang="fr")
    assert tokenize_texts(french, ["L'été ÉTAIT là."]) == [["xxbos", "xxmaj", "l'", "été", "xxup", "était", "là", "."]]


def test_tokenize_to_ids_layout():
    types, ids, offsets = tokenize_to_ids(ONE, iter(["a b", "b", "c A"]))   # any iterable, here a generator
    assert types == ["xxbos", "a", "b", "c"]
    assert ids.dtype == np.int32 and ids.tolist() == [0, 1, 2, 0, 2, 0, 3, 1]
    assert offsets.dtype == np.int64 and offsets.tolist() == [0, 3, 5, 8]
    types, ids, offsets = tokenize_to_ids(ONE, [])
    assert types == [] and ids.tolist() == [] and offsets.tolist() == [0]


def _tiny_corpus() -> Corpus:
    return Corpus(
        labels=np.array([1, 0, -1], dtype=np.int32),
        splits=np.array([split_code("train"), split_code("test"), split_code("unsup")], dtype=np.int8),
        label_names=["neg", "pos"],
        texts=["Hello World!", "so sooo good", ""],
        name="tiny",
    )


def test_stage_on_a_tiny_corpus():
    tokens = tokenize(ONE, _tiny_corpus())
    assert isinstance(tokens, Tokens)
    assert tokens.types == ["xxbos", "xxmaj", "hello", "world", "!", "so", "s", "xxrep", "3", "o", "good"]
    assert tokens.ids.dtype == np.int32
    assert tokens.ids.tolist() == [0, 1, 2, 1, 3, 4, 0, 5, 6, 7, 8, 9, 10, 0]
    assert tokens.offsets.tolist() == [0, 6, 13, 14]
    assert tokens.doc(1) == ["xxbos", "so", "s", "xxrep", "3", "o", "good"]
    assert tokens.labels.dtype == np.int32 and tokens.labels.tolist() == [1, 0, -1]
    assert tokens.splits.dtype == np.int8 and tokens.splits.tolist() == [0, 2, 3]
    assert tokens.label_names == ["neg", "pos"]
    assert tokens.settings == settings_of(ONE)
    assert tokens.type_counts().tolist() == [3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]


def _varied_texts() -> list[str]:
    words = ["Alpha", "beta", "GAMMA", "delta!!!!", "eps/ilon", "zeta zeta zeta", "\n", "Ünïcode", "x" * 70]
    return [" ".join(words[(i * 7 + j) % len(words)] for j in range(i % 6)) for i in range(40)]


def test_output_does_not_depend_on_chunk_size():
    texts = _varied_texts()
    whole = tokenize_to_ids(ONE, texts)
    pieces = tokenize_to_ids(TokenizationConfig(workers=1, chunk_size=3), texts)
    assert whole[0] == pieces[0]
    assert np.array_equal(whole[1], pieces[1]) and np.array_equal(whole[2], pieces[2])


def test_two_workers_give_the_same_output_as_one():
    texts = _varied_texts()
    one = tokenize(TokenizationConfig(workers=1, chunk_size=7), Corpus(
        labels=np.zeros(len(texts), np.int32), splits=np.zeros(len(texts), np.int8), label_names=["x"], texts=texts))
    two = tokenize(TokenizationConfig(workers=2, chunk_size=7), Corpus(
        labels=np.zeros(len(texts), np.int32), splits=np.zeros(len(texts), np.int8), label_names=["x"], texts=texts))
    assert one.types == two.types
    assert np.array_equal(one.ids, two.ids) and np.array_equal(one.offsets, two.offsets)
    assert tokenize_texts(TokenizationConfig(workers=2, chunk_size=7), texts) == tokenize_texts(ONE, texts)
    assert len(one) == 40 and len(one.types) > 15   # the texts are not trivial


@pytest.mark.parametrize("labels, target_type", [
    (np.array([[1, 0], [0, 1], [-1, -1]], dtype=np.int8), "multi_label"),
    (np.array([2.5, -1.0, np.nan], dtype=np.float32), "regression"),
])
def test_labels_of_every_target_type_pass_through(labels, target_type):
    corpus = _tiny_corpus()
    corpus.labels, corpus.target_type = labels, target_type
    corpus.label_names = ["score"] if target_type == "regression" else ["neg", "pos"]
    tokens = tokenize(ONE, corpus)
    assert tokens.target_type == target_type and tokens.label_names == corpus.label_names
    assert tokens.labels.dtype == labels.dtype and tokens.labels.shape == labels.shape
    assert np.array_equal(tokens.labels, labels, equal_nan=True)
    assert tokenize(ONE, _tiny_corpus()).target_type == "class"
