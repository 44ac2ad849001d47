"""The fastai-style rules and detokenize, one hand-checked example (or a few) per behaviour."""

import pytest

from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.rules import (
    DEFAULT_RULES,
    SPECIAL_TOKENS,
    check_rules,
    compose_text_rules,
    detokenize,
    fix_html,
    lowercase,
    replace_all_caps,
    replace_maj,
    replace_rep,
    replace_wrep,
    rm_useless_spaces,
    spec_add_spaces,
    token_transform,
)


@pytest.mark.parametrize("text, expected", [
    ("a &amp; b<br />c", "a & b\nc"),
    ("it#39;s &quot;ok&quot;", 'it\'s "ok"'),
    ("x&nbsp;y", "x y"),                        # html.unescape gives a non-breaking space: made a plain space
    ("a<br>b<BR/>c", "a\nb\nc"),
    ("quot;hi quot; amp; camp; built;", '"hi " & camp; built;'),  # bare named entities only at a word start
    ("&amp;quot;", '"'),                        # escaped twice
    ("line\\nnext \\\"q\\\"", 'line\nnext "q"'),
    ("3 @-@ 4 @.@ 5 @,@ 6 <unk>", "3-4.5,6 xxunk"),
    ("nothing to fix", "nothing to fix"),
])
def test_fix_html(text, expected):
    assert fix_html(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("cccc", " xxrep 4 c "),
    ("sooo good", "s xxrep 3 o  good"),
    ("too good", "too good"),                   # two in a row is not a repetition
    ("wow!!!!!", "wow xxrep 5 ! "),
    ("1000", "1 xxrep 3 0 "),
])
def test_replace_rep(text, expected):
    assert replace_rep(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("the the the", " xxwrep 3 the "),
    ("go go go go!", " xxwrep 4 go !"),
    ("the the then", "the the then"),           # the last copy must be the whole word
    ("at the the end", "at the the end"),       # two is not enough
    ("then the the the", "then  xxwrep 3 the "),  # spaces are added around; rm_useless_spaces tidies
    ("The the the", "The the the"),             # case-sensitive, as in fastai
])
def test_replace_wrep(text, expected):
    assert replace_wrep(text) == expected


def test_spec_add_spaces_and_rm_useless_spaces():
    assert spec_add_spaces("and/or #1 a\\b") == "and / or  # 1 a \\ b"
    assert spec_add_spaces("plain") == "plain"
    assert rm_useless_spaces("a   b \n  c") == "a b \n c"
    assert rm_useless_spaces("a b") == "a b"


def test_token_case_rules():
    assert replace_all_caps(["I", "LOVE", "it", "U.S."]) == ["I", "xxup", "love", "it", "xxup", "u.s."]
    assert replace_all_caps(["L'", "A.", "R2D2"]) == ["L'", "A.", "xxup", "r2d2"]   # one capital is not all caps
    assert replace_maj(["L'", "A."]) == ["xxmaj", "l'", "xxmaj", "a."]
    assert replace_maj(["I", "met", "Anna", "NOW", "iPhone"]) == ["I", "met", "xxmaj", "anna", "NOW", "iPhone"]
    assert lowercase(["I", "iPhone", "ÉCOLE"]) == ["i", "iphone", "école"]
    assert replace_maj(replace_all_caps(["Élan", "ÉTÉ"])) == ["xxmaj", "élan", "xxup", "été"]  # not only ASCII


def test_token_transform_matches_the_rules_in_turn():
    apply = token_transform(DEFAULT_RULES)
    for token in ["HELLO", "Paris", "iPhone", "I", "a", "U.S.", "L'", "xxmaj", "42", "Ö"]:
        assert list(apply(token)) == lowercase(replace_maj(replace_all_caps([token]))), token


def test_token_transform_whitespace_and_length():
    drop = token_transform(DEFAULT_RULES, max_token_length=5)
    assert drop("\n ") == ()
    assert drop("\t") == ()
    assert drop("Wonderful") == ("xxmaj", "wonde")   # the marker is kept, the word is cut
    assert drop("short") == ("short",)
    mark = token_transform(DEFAULT_RULES, mark_whitespace=True)
    assert mark("\n\n ") == ("xxspace",)
    assert mark("x" * 80) == ("x" * 80,)             # 0 = no cap
    tiny = token_transform([], max_token_length=3)
    assert tiny("xxwrep") == ("xxwrep",) and tiny("wrep") == ("wre",)   # special tokens are never cut


def test_token_transform_with_rules_left_out():
    only_lower = token_transform(["lowercase"])
    assert only_lower("HELLO") == ("hello",)
    assert only_lower("Paris") == ("paris",)
    keep_case = token_transform(["replace_maj"])
    assert keep_case("HELLO") == ("HELLO",)
    assert keep_case("Paris") == ("xxmaj", "paris")


def test_text_rules_run_in_fixed_order_whatever_the_list_order():
    forward = compose_text_rules(["fix_html", "replace_rep", "rm_useless_spaces"])
    backward = compose_text_rules(["rm_useless_spaces", "replace_rep", "fix_html"])
    text = "nooo &amp;&amp;&amp;"
    assert forward(text) == backward(text) == "n xxrep 3 o xxrep 3 & "   # html first, so '&&&' is a repetition


def test_unknown_rule_is_a_config_error_listing_valid_ones():
    check_rules(["fix_html", "lowercase"])
    with pytest.raises(ConfigError, match=r"unknown rule 'lower' in tokenization.rules; valid rules: fix_html, .*lowercase"):
        check_rules(["fix_html", "lower"])
    with pytest.raises(ConfigError):
        compose_text_rules(["nope"])


def test_special_tokens_order():
    assert SPECIAL_TOKENS[:3] == ("xxunk", "xxpad", "xxbos")
    assert len(set(SPECIAL_TOKENS)) == len(SPECIAL_TOKENS) == 10


@pytest.mark.parametrize("tokens, expected", [
    (["xxbos", "xxmaj", "i", "do", "n't", "like", "xxup", "it", "!"], "I don't like IT!"),
    (["so", "xxrep", "3", "!", "xxwrep", "3", "no"], "so !!! no no no"),
    (["xxwrep", "3", "xxmaj", "no", "."], "No No No."),
    (["(", "a", ",", "b", ")", "$", "5", "xxpad", "xxpad"], "(a, b) $5"),
    (["xxunk", "is", "kept"], "xxunk is kept"),
    (["xxmaj", "xxunk", "said", "xxup", "xxunk"], "xxunk said xxunk"),  # no 'Xxunk': a case marker before a special goes
    (["dangling", "xxmaj"], "dangling xxmaj"),         # a marker with nothing after it is shown as it is
    (["xxrep", "x", "y"], "xxrep x y"),                # not a count: shown as it is
    ([], ""),
])
def test_detokenize(tokens, expected):
    assert detokenize(tokens) == expected


def test_detokenize_round_trips_the_case_and_repetition_rules():
    text = "The Movie was SO good , wow !"
    apply = token_transform(DEFAULT_RULES)
    tokens = ["xxbos"] + [out for word in text.split() for out in apply(word)]
    assert tokens[:4] == ["xxbos", "xxmaj", "the", "xxmaj"]
    assert detokenize(tokens) == "The Movie was SO good, wow!"
    assert detokenize(replace_rep("zzzz").split()) == "zzzz"
    assert detokenize(replace_wrep("go go go").split()) == "go go go"
