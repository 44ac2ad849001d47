"""Word-vector evaluation: analogy accuracy, word-pair similarity (Spearman) and nearest neighbours.

Takes a vocabulary (`keys`, most frequent first) and a (n_words, dim) matrix; returns plain dicts of JSON
types that go into WordVectors.metrics. The scoring functions are pure and vectorised (numpy); the loaders
read the standard test sets shipped in gensim's wheel (questions-words.txt, wordsim353.tsv, simlex999.txt),
found without importing gensim.

Conventions (gensim's KeyedVectors.evaluate_word_analogies / evaluate_word_pairs, case-insensitive mode):
- words are matched case-insensitively: a test word maps to the most frequent key with the same lowercase
  form, so vectors of lowercased tokens and test sets in mixed case agree;
- analogies a:b :: c:? are answered by 3CosAdd over unit vectors, argmax of cos(x, b - a + c) among the first
  `restrict_vocab` keys, excluding a, b and c; a question with any word outside those keys is skipped and
  counted against coverage (attempted / questions);
- word pairs with an out-of-vocabulary word are skipped; `oov_ratio` is their share.
Limits: an empty evaluation (no question or pair covered) reports accuracy/spearman as None, not 0.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterable

import numpy as np

STANDARD_ANALOGIES = "questions-words.txt"
STANDARD_WORD_PAIRS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}


def standard_test_file(name: str) -> Path:
    """Path of one of gensim's bundled test files, e.g. 'wordsim353.tsv' -> .../gensim/test/test_data/wordsim353.tsv."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gensim is not installed; its wheel holds the standard evaluation sets")
    path = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from gensim's wheel")
    return path


def load_analogies(path: str | Path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections of a questions-words file: ': capital-common-countries' then 'Athens Greece Baghdad Iraq' lines
    -> [('capital-common-countries', [('Athens', 'Greece', 'Baghdad', 'Iraq'), ...]), ...]."""
    sections: list[tuple[str, list[tuple[str, str, str, str]]]] = []
    for line_number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
            continue
        words = line.split()
        if len(words) != 4 or not sections:
            raise ValueError(f"{path}:{line_number}: expected 4 words after a ': section' line, got {line!r}")
        sections[-1][1].append((words[0], words[1], words[2], words[3]))
    return sections


def load_word_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """Tab-separated 'word1<TAB>word2<TAB>score' lines, '#' comments skipped: 'tiger\\tcat\\t7.35' -> ('tiger', 'cat', 7.35)."""
    pairs = []
    for line_number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise ValueError(f"{path}:{line_number}: expected 'word1<TAB>word2<TAB>score', got {line!r}")
        pairs.append((parts[0], parts[1], float(parts[2])))
    return pairs


def build_lookup(keys: list[str], lowercase: bool = True) -> dict[str, int]:
    """Word -> index, the most frequent (earliest) key winning: ['The', 'the', 'cat'] -> {'the': 0, 'cat': 2}."""
    lookup: dict[str, int] = {}
    for index, key in enumerate(keys):
        lookup.setdefault(key.lower() if lowercase else key, index)
    return lookup


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 as float32 (zero rows stay zero): [[3, 4], [0, 0]] -> [[0.6, 0.8], [0, 0]]."""
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, np.finfo(np.float32).tiny)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def evaluate_analogies(keys: list[str], vectors: np.ndarray, sections: list[tuple[str, list[tuple[str, str, str, str]]]],
                       restrict_vocab: int = 30000, lowercase: bool = True, batch_size: int = 512) -> dict:
    """Analogy accuracy per section, for semantic / syntactic ('gram*' sections) questions and in total.

    Each group reports {'correct', 'attempted' (questions with all four words known), 'questions',
    'accuracy' (correct / attempted, None if nothing attempted), 'coverage' (attempted / questions)}.
    Example: keys ['a', 'b', 'c', 'd'] with vectors making b - a + c closest to d answer ('A', 'B', 'C', 'D') correctly.
    """
    limit = min(restrict_vocab, len(keys))
    lookup = build_lookup(list(keys[:limit]), lowercase)
    units = unit_rows(np.asarray(vectors)[:limit])  # (n, D)
    norm = (lambda w: w.lower()) if lowercase else (lambda w: w)
    out_sections: dict[str, dict] = {}
    groups = {"semantic": [0, 0, 0], "syntactic": [0, 0, 0], "total": [0, 0, 0]}  # correct, attempted, questions
    for name, questions in sections:
        known = [tuple(lookup.get(norm(w), -1) for w in q) for q in questions]
        known = np.array([k for k in known if min(k) >= 0], dtype=np.int64).reshape(-1, 4)  # (q, 4)
        correct = 0
        for start in range(0, len(known), batch_size):
            a, b, c, d = known[start:start + batch_size].T
            target = units[b] - units[a] + units[c]                        # (q, D)
            scores = target @ units.T                                      # (q, n)
            rows = np.arange(len(a))
            scores[rows, a] = scores[rows, b] = scores[rows, c] = -np.inf
            correct += int((scores.argmax(axis=1) == d).sum())
        attempted = len(known)
        out_sections[name] = {"correct": correct, "attempted": attempted, "questions": len(questions),
                              "accuracy": _ratio(correct, attempted), "coverage": _ratio(attempted, len(questions))}
        for group in ("syntactic" if name.startswith("gram") else "semantic", "total"):
            groups[group][0] += correct
            groups[group][1] += attempted
            groups[group][2] += len(questions)
    result: dict = {"restrict_vocab": limit, "sections": out_sections}
    for group, (correct, attempted, questions) in groups.items():
        result[group] = {"correct": correct, "attempted": attempted, "questions": questions,
                         "accuracy": _ratio(correct, attempted), "coverage": _ratio(attempted, questions)}
    return result


def evaluate_word_pairs(keys: list[str], vectors: np.ndarray, pairs: list[tuple[str, str, float]],
                        lowercase: bool = True) -> dict:
    """Spearman and Pearson correlation of cosine similarity with human scores, over pairs whose words are known.

    Returns {'spearman', 'pearson' (None if fewer than 2 pairs or a constant column), 'pairs', 'found',
    'oov_ratio' (share of pairs skipped)}. Example: pairs [('cat', 'dog', 9), ('cat', 'car', 1), ('cat', 'zzz', 5)]
    with cos(cat, dog) > cos(cat, car) -> spearman 1.0, found 2, oov_ratio 1/3.
    """
    from scipy.stats import pearsonr, spearmanr

    lookup = build_lookup(list(keys), lowercase)
    norm = (lambda w: w.lower()) if lowercase else (lambda w: w)
    found = [(lookup[norm(a)], lookup[norm(b)], score) for a, b, score in pairs
             if norm(a) in lookup and norm(b) in lookup]
    result = {"spearman": None, "pearson": None, "pairs": len(pairs), "found": len(found),
              "oov_ratio": _ratio(len(pairs) - len(found), len(pairs))}
    if len(found) >= 2:
        left, right, human = (np.array(column) for column in zip(*found))
        units = unit_rows(np.asarray(vectors)[np.concatenate([left, right])])
        cosines = (units[:len(left)] * units[len(left):]).sum(axis=1)
        if np.ptp(cosines) > 0 and np.ptp(human) > 0:
            result["spearman"] = float(spearmanr(cosines, human).statistic)
            result["pearson"] = float(pearsonr(cosines, human).statistic)
    return result


def nearest_neighbours(keys: list[str], vectors: np.ndarray, words: Iterable[str], k: int = 10,
                       lowercase: bool = True) -> dict[str, list[tuple[str, float]]]:
    """The k keys of highest cosine similarity to each known word (itself excluded), most similar first.

    Unknown words are left out. Example: keys ['a', 'b', 'c'], vectors [[1, 0], [1, 1], [0, 1]], words ['a'], k=1
    -> {'a': [('b', 0.7071)]}.
    """
    lookup = build_lookup(list(keys), lowercase)
    norm = (lambda w: w.lower()) if lowercase else (lambda w: w)
    indexes = [(word, lookup[norm(word)]) for word in words if norm(word) in lookup]
    if not indexes:
        return {}
    units = unit_rows(vectors)
    scores = units[[i for _, i in indexes]] @ units.T  # (w, n)
    out = {}
    for row, (word, index) in enumerate(indexes):
        scores[row, index] = -np.inf
        top = np.argsort(-scores[row], kind="stable")[:k]
        out[word] = [(keys[int(t)], round(float(scores[row, t]), 4)) for t in top if np.isfinite(scores[row, t])]
    return out


def pick_frequent_words(keys: list[str], count: int = 5, skip: Iterable[str] = (), min_length: int = 3,
                        skip_prefixes: tuple[str, ...] = ("xx",)) -> list[str]:
    """The first `count` alphabetic keys of at least `min_length` letters, not in `skip` and not starting with a
    skipped prefix (fastai's special tokens xxbos, xxmaj, ...); keys are most frequent first:
    ['xxbos', 'the', 'of', 'film', 'a', 'movie'] with skip {'the'}, count 2 -> ['film', 'movie']."""
    skip = set(skip)
    picked = []
    for key in keys:
        if (key.isalpha() and len(key) >= min_length and key.lower() not in skip
                and not key.lower().startswith(skip_prefixes)):
            picked.append(key)
            if len(picked) == count:
                break
    return picked


def evaluate_word_vectors(keys: list[str], vectors: np.ndarray, restrict_vocab: int = 30000,
                          neighbour_words: list[str] | None = None, neighbours: int = 10,
                          lowercase: bool = True) -> dict:
    """All standard evaluations on gensim's bundled sets: {'analogies', 'word_pairs': {'wordsim353', 'simlex999'},
    'neighbours'}. `neighbour_words` None picks the 5 most frequent alphabetic non-stopwords."""
    keys = list(keys)
    sections = load_analogies(standard_test_file(STANDARD_ANALOGIES))
    metrics: dict = {"analogies": evaluate_analogies(keys, vectors, sections, restrict_vocab, lowercase)}
    metrics["word_pairs"] = {name: evaluate_word_pairs(keys, vectors, load_word_pairs(standard_test_file(file)), lowercase)
                             for name, file in STANDARD_WORD_PAIRS.items()}
    if neighbour_words is None:
        neighbour_words = pick_frequent_words(keys, 5, skip=_STOPWORDS)
    metrics["neighbours"] = {w: [[n, s] for n, s in found]
                             for w, found in nearest_neighbours(keys, vectors, neighbour_words, neighbours, lowercase).items()}
    return metrics


# Function words skipped when picking words to show neighbours of (a short list: the pick is cosmetic).
_STOPWORDS = frozenset("""
a about after all also an and any are as at be been but by can could did do does for from had has have he her
him his how i if in into is it its just more most my no not now of on one only or other our out over said she so
some than that the their them then there these they this those to two up was we were what when which who will
with would you your first it's 's n't like
""".split())
