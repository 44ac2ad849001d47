"""Tokenization rules in the style of fastai's ULMFiT: pure string functions, plus `detokenize` for display.

Text rules (str -> str) run on the raw text before spaCy splits it:
    fix_html           HTML entities and markup left in scraped text        'a &amp; b<br />c' -> 'a & b\\nc'
    replace_rep        a character repeated 3+ times                         'cccc' -> ' xxrep 4 c '
    replace_wrep       a word repeated 3+ times in a row                     'the the the' -> ' xxwrep 3 the '
    spec_add_spaces    spaces around / # and backslash                       'a/b' -> 'a / b'
    rm_useless_spaces  runs of spaces become one                             'a   b' -> 'a b'
Token rules (list[str] -> list[str]) run on spaCy's tokens:
    replace_all_caps   'HELLO' -> 'xxup', 'hello'
    replace_maj        'Hello' -> 'xxmaj', 'hello'
    lowercase          'McDonald' -> 'mcdonald'
Rules are chosen by name (`DEFAULT_RULES` is the full set) and always run in the order above, whatever the
order of the names: the list selects, it does not reorder. `token_transform` fuses the chosen token rules with
the whitespace and length handling into one function of a single token, which the tokenization stage applies
once per distinct token rather than once per occurrence.

Differences from fastai (text.core): xxup/xxmaj are decided per spaCy token, not by regex on the text, and
an all-caps token needs two capitals ("L'" gets xxmaj, not xxup); fix_html does not turn 'camp;' into 'c&'
or '...' into ' …', and maps 'quot;' to '"'; replace_space is not needed (tokens never hold spaces).

Not a rule but applied before every rule: `replace_surrogates`. A lone surrogate (U+D800-U+DFFF: half an emoji
from a JSON escape such as "\\ud83d", or an undecodable byte that Python smuggled into a command-line argument)
is no character and cannot be written as UTF-8; the tokenizer, corpus loading and predict turn each into U+FFFD.

Limits: the case rules only see cased scripts; mixed-case words ('iPhone') lose their case to `lowercase`
with no marker; `detokenize` is for display, it restores case and repetitions but guesses the spacing.
No spaCy here: the stage owns the tokenizer, this module stays importable anywhere.
"""

from __future__ import annotations

import html
import re
from typing import Callable, Iterable

from nlp_pipeline.core.errors import ConfigError

UNK, PAD, BOS, EOS, FIELD = "xxunk", "xxpad", "xxbos", "xxeos", "xxfld"
TK_REP, TK_WREP, TK_UP, TK_MAJ, TK_SPACE = "xxrep", "xxwrep", "xxup", "xxmaj", "xxspace"
# Every token the rules or the pipeline may insert, in the order numericalization gives them ids (xxunk = 0).
SPECIAL_TOKENS = (UNK, PAD, BOS, EOS, FIELD, TK_REP, TK_WREP, TK_UP, TK_MAJ, TK_SPACE)
_SPECIAL_SET = frozenset(SPECIAL_TOKENS)


# --- text that is not text -------------------------------------------------------------------------------

REPLACEMENT = "\ufffd"
_RE_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> tuple[str, int]:
    """(text with each lone surrogate replaced by U+FFFD, how many were replaced).

    replace_surrogates('caf\\udce9 \\ud83d!') -> ('caf\ufffd \ufffd!', 2); a text without any is returned as is.
    A str built from valid UTF-8 or JSON holding a real emoji never contains one: only broken escapes,
    surrogateescape-decoded bytes and the like do. ASCII texts are passed through without a scan.
    """
    if text.isascii() or not _RE_SURROGATE.search(text):
        return text, 0
    return _RE_SURROGATE.subn(REPLACEMENT, text)


# --- text rules -------------------------------------------------------------------------------------------

_RE_BREAK = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
# Entities that lost their '&': numeric ones anywhere ('it#39;s'), named ones only at a word start ('camp;' stays).
_RE_BARE_ENTITY = re.compile(r"&?(#39|#146|#36);|(?:&|(?<!\w))(quot|amp|nbsp);")
_BARE_ENTITIES = {"#39": "'", "#146": "'", "#36": "$", "quot": '"', "amp": "&", "nbsp": " "}
_RE_WIKI_JOIN = re.compile(r" @([-.,])@ ")


def fix_html(text: str) -> str:
    """Undo HTML escaping and markup left in scraped text.

    fix_html('a &amp; b<br />it#39;s &quot;ok&quot;') -> 'a & b\\nit\\'s "ok"'
    Handles: <br>, <br/>, <br /> -> newline; named and numeric entities (html.unescape), also those that
    lost their '&' ('it#39;s' anywhere; 'quot;', 'amp;', 'nbsp;' only at a word start, so 'camp;' stays);
    a non-breaking space -> space; literal '\\n' -> newline and '\\"' -> '"'; WikiText's ' @-@ ' -> '-'
    (also @.@ and @,@) and '<unk>' -> 'xxunk'.
    """
    if "\\" in text:
        text = text.replace("\\n", "\n").replace('\\"', '"')
    if "&" in text or ";" in text:
        text = _RE_BARE_ENTITY.sub(lambda m: _BARE_ENTITIES[m.group(1) or m.group(2)], html.unescape(text))
    if "<" in text:
        text = _RE_BREAK.sub("\n", text.replace("<unk>", UNK))
    if "@" in text:
        text = _RE_WIKI_JOIN.sub(r"\1", text)
    return text.replace("\xa0", " ")


_RE_REP = re.compile(r"(\S)\1\1+")


def replace_rep(text: str) -> str:
    """A character repeated 3 or more times becomes xxrep, its count and the character.

    replace_rep('cccc') -> ' xxrep 4 c '; replace_rep('sooo good') -> 's xxrep 3 o  good'
    Digits count too ('1000' -> '1 xxrep 3 0 '), as in fastai.
    """
    return _RE_REP.sub(lambda m: f" {TK_REP} {len(m.group(0))} {m.group(1)} ", text)


# A whole word (possessive \w++: never retried shorter, which is faster), then 2 or more copies of it
# separated by whitespace; the last copy must end the word.
_RE_WREP = re.compile(r"(?<!\S)(\w++)(?:\s+\1){2,}(?!\w)")


def replace_wrep(text: str) -> str:
    """A word repeated 3 or more times in a row becomes xxwrep, its count and the word.

    replace_wrep('the the the end') -> ' xxwrep 3 the  end'; 'the the then' is left alone.
    """
    return _RE_WREP.sub(lambda m: f" {TK_WREP} {len(m.group(0).split())} {m.group(1)} ", text)


_RE_SPEC = re.compile(r"([/#\\])")


def spec_add_spaces(text: str) -> str:
    """Spaces around '/', '#' and backslash so they become tokens of their own.

    spec_add_spaces('and/or #1') -> 'and / or  # 1'
    """
    if "/" in text or "#" in text or "\\" in text:  # a plain test is far cheaper than a regex scan
        return _RE_SPEC.sub(r" \1 ", text)
    return text


_RE_SPACES = re.compile(" {2,}")


def rm_useless_spaces(text: str) -> str:
    """Runs of spaces become one space (newlines and tabs are kept).

    rm_useless_spaces('a   b \\n  c') -> 'a b \\n c'
    """
    return _RE_SPACES.sub(" ", text) if "  " in text else text


# --- token rules ------------------------------------------------------------------------------------------

def _is_all_caps(token: str) -> bool:
    """'HELLO' and 'U.S.' are all caps; 'I', "L'" and 'A.' (one capital: capitalized) and 'Hello' are not."""
    return token.isupper() and sum(map(str.isupper, token)) > 1


def _is_capitalized(token: str) -> bool:
    """'Hello', 'Paris!' and "L'" are capitalized; 'I', 'HELLO' and 'iPhone' are not."""
    return len(token) > 1 and token[0].isupper() and not any(c.isupper() for c in token[1:])


def replace_all_caps(tokens: list[str]) -> list[str]:
    """A token in capitals (2 or more capital letters, no small ones) becomes xxup and its lowercase.

    replace_all_caps(['I', 'LOVE', 'it']) -> ['I', 'xxup', 'love', 'it']
    """
    out: list[str] = []
    for token in tokens:
        if _is_all_caps(token):
            out += (TK_UP, token.lower())
        else:
            out.append(token)
    return out


def replace_maj(tokens: list[str]) -> list[str]:
    """A capitalized token (2+ characters, only the first in capitals) becomes xxmaj and its lowercase.

    replace_maj(['I', 'met', 'Anna', 'NOW']) -> ['I', 'met', 'xxmaj', 'anna', 'NOW']
    """
    out: list[str] = []
    for token in tokens:
        if _is_capitalized(token):
            out += (TK_MAJ, token.lower())
        else:
            out.append(token)
    return out


def lowercase(tokens: list[str]) -> list[str]:
    """Every token in lowercase (after the case rules above have marked what they could).

    lowercase(['I', 'iPhone', 'xxmaj', 'anna']) -> ['i', 'iphone', 'xxmaj', 'anna']
    """
    return [token.lower() for token in tokens]


TEXT_RULES: dict[str, Callable[[str], str]] = {
    "fix_html": fix_html,
    "replace_rep": replace_rep,
    "replace_wrep": replace_wrep,
    "spec_add_spaces": spec_add_spaces,
    "rm_useless_spaces": rm_useless_spaces,
}
TOKEN_RULES: dict[str, Callable[[list[str]], list[str]]] = {
    "replace_all_caps": replace_all_caps,
    "replace_maj": replace_maj,
    "lowercase": lowercase,
}
DEFAULT_RULES = (*TEXT_RULES, *TOKEN_RULES)  # the full set, in the order the rules run


def check_rules(names: Iterable[str], where: str = "tokenization.rules") -> None:
    """Raise ConfigError naming the first unknown rule and listing the valid ones.

    check_rules(['fix_html', 'lowercase']) -> None; check_rules(['lower']) raises ConfigError
    """
    for name in names:
        if name not in TEXT_RULES and name not in TOKEN_RULES:
            raise ConfigError(f"unknown rule {name!r} in {where}; valid rules: {', '.join(DEFAULT_RULES)}")


def compose_text_rules(names: Iterable[str]) -> Callable[[str], str]:
    """One str -> str function running the chosen text rules in their fixed order.

    compose_text_rules(['spec_add_spaces', 'rm_useless_spaces'])('a/b') -> 'a / b'
    """
    names = set(names)
    check_rules(names)
    chosen = tuple(rule for name, rule in TEXT_RULES.items() if name in names)

    def apply(text: str) -> str:
        for rule in chosen:
            text = rule(text)
        return text

    return apply


def token_transform(names: Iterable[str], max_token_length: int = 0,
                    mark_whitespace: bool = False) -> Callable[[str], tuple[str, ...]]:
    """One token -> 0, 1 or 2 tokens: the chosen token rules, then the whitespace and length handling.

    f = token_transform(DEFAULT_RULES, max_token_length=5)
    f('HELLO') -> ('xxup', 'hello'); f('Paris') -> ('xxmaj', 'paris'); f('\\n ') -> (); f('Wonderful') -> ('xxmaj', 'wonde')
    Whitespace-only tokens (spaCy keeps '\\n', '\\t ', extra spaces as tokens) are dropped, or become xxspace
    when mark_whitespace is true: they are invisible once tokens are joined by spaces, and would break
    line-oriented exports (word2vec text, projector TSV). max_token_length cuts longer tokens (0 = no cap),
    never a special token: f('xxwrep') stays 'xxwrep' even with max_token_length=3.
    Same output as running replace_all_caps, replace_maj and lowercase in turn on [token].
    """
    names = set(names)
    check_rules(names)
    up, maj, lower = "replace_all_caps" in names, "replace_maj" in names, "lowercase" in names
    space = (TK_SPACE,) if mark_whitespace else ()
    cap = max_token_length if max_token_length > 0 else None

    def apply(token: str) -> tuple[str, ...]:
        if token.isspace():
            return space
        marker = None
        if up and _is_all_caps(token):
            marker, token = TK_UP, token.lower()
        elif maj and _is_capitalized(token):
            marker, token = TK_MAJ, token.lower()
        elif lower:
            token = token.lower()
        if cap is not None and len(token) > cap and token not in _SPECIAL_SET:
            token = token[:cap]
        return (token,) if marker is None else (marker, token)

    return apply


# --- display ----------------------------------------------------------------------------------------------

_HIDDEN = frozenset({BOS, EOS, PAD})
_NO_SPACE_BEFORE = frozenset(",.!?;:%)]}…") | {"n't", "'s", "'re", "'ve", "'m", "'ll", "'d", "...", "''"}
_NO_SPACE_AFTER = frozenset("([{$#") | {"``"}


MAX_REPEAT = 100  # detokenize expands xxrep/xxwrep counts up to this; larger ones are kept as text (display only)


def detokenize(tokens: Iterable[str]) -> str:
    """Tokens back to readable text for display: re-applies xxmaj, xxup, xxrep and xxwrep, hides xxbos/xxeos/xxpad.

    detokenize(['xxbos', 'xxmaj', 'i', 'do', "n't", 'like', 'xxup', 'it', '!']) -> "I don't like IT!"
    detokenize(['so', 'xxrep', '3', '!', 'xxwrep', '3', 'no']) -> 'so !!! no no no'
    Spacing is a guess (no space before , . ! ? ) n't 's and the like, none after ( [ $ #): text that was
    tokenized loses its original spacing and its mixed case ('iPhone' stays 'iphone'), so this is an inverse
    for reading, not an exact one. A marker without a following token is kept as it is; a case marker before
    another special token is dropped ('xxmaj xxunk' -> 'xxunk'). A repeat count above MAX_REPEAT is kept as written
    ('xxrep 98989898989 a' stays so): a text can spell a marker itself, and its output must stay the size of its input.
    """
    tokens = list(tokens)
    words: list[str] = []
    i, n = 0, len(tokens)
    while i < n:
        token = tokens[i]
        if token in _HIDDEN:
            i += 1
        elif token in (TK_UP, TK_MAJ) and i + 1 < n:
            following = tokens[i + 1]
            if following in SPECIAL_TOKENS:  # a case marker before xxunk (a rare capitalised word): leave xxunk as is
                i += 1
                continue
            words.append(following.upper() if token == TK_UP else following[:1].upper() + following[1:])
            i += 2
        elif token in (TK_REP, TK_WREP) and i + 2 < n and tokens[i + 1].isdigit() and int(tokens[i + 1]) <= MAX_REPEAT:
            count, unit = int(tokens[i + 1]), tokens[i + 2]
            if token == TK_REP:
                words.append(unit * count)
                i += 3
            else:  # each copy may itself carry a case marker: 'xxwrep 3 xxmaj no'
                j = i + 2
                if unit in (TK_UP, TK_MAJ) and j + 1 < n:
                    unit = detokenize(tokens[j:j + 2])
                    j += 1
                words += [unit] * count
                i = j + 1
        else:
            words.append(token)
            i += 1
    text = ""
    glue = True
    for word in words:
        if not (glue or word in _NO_SPACE_BEFORE):
            text += " "
        text += word
        glue = word in _NO_SPACE_AFTER
    return text
