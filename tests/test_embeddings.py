"""Embeddings stage (keys per method, training, pretrained files, errors) and word-vector evaluation."""

import dataclasses
import os
import shutil

import numpy as np
import pytest

from nlp_pipeline.artifacts import Tokens
from nlp_pipeline.core.config import build
from nlp_pipeline.core.errors import ConfigError, DataError, MissingInputError
from nlp_pipeline.evaluation import (build_lookup, evaluate_analogies, evaluate_word_pairs, evaluate_word_vectors,
                                     load_analogies, load_word_pairs, nearest_neighbours, pick_frequent_words,
                                     standard_test_file)
from nlp_pipeline.stages import embeddings
from nlp_pipeline.stages.embeddings import (STAGE, EmbeddingsConfig, FastTextConfig, GloveConfig, PretrainedConfig,
                                            Word2VecConfig, _Sentences, read_vectors, stable_hash, train_embeddings,
                                            volatile_fields)

UPSTREAM = {"tokens": "0" * 64}


def make_tokens(docs: list[list[str]]) -> Tokens:
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(t, len(index)) for d in docs for t in d], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    n = len(docs)
    return Tokens(labels=np.full(n, -1, np.int32), splits=np.zeros(n, np.int8), label_names=[], ids=ids,
                  offsets=offsets, types=list(index))


def topic_corpus(seed: int = 0, docs: int = 60) -> Tokens:
    """Documents drawn from two disjoint 12-word topics, plus 'common' three times in every document."""
    rng = np.random.default_rng(seed)
    topics = [[f"sport{i}" for i in range(12)], [f"money{i}" for i in range(12)]]
    return make_tokens([["common"] * 3 + [str(w) for w in rng.choice(topics[k % 2], 25)] for k in range(docs)])


FAST = dict(vector_size=16, min_count=2, evaluate=False, workers=1, word2vec=Word2VecConfig(epochs=3),
            fasttext=FastTextConfig(epochs=3), glove=GloveConfig(epochs=5))


def pretrained(path, **settings) -> EmbeddingsConfig:
    return EmbeddingsConfig(methods=["pretrained"], method="pretrained", pretrained=PretrainedConfig(path=str(path)),
                            **settings)


def replace_in(cfg: EmbeddingsConfig, table: str, **changes) -> EmbeddingsConfig:
    """cfg with fields of one sub-table changed: replace_in(cfg, "glove", window=4)."""
    return dataclasses.replace(cfg, **{table: dataclasses.replace(getattr(cfg, table), **changes)})


# --- config and keys -----------------------------------------------------------------------------------------

def test_each_method_keys_only_its_own_fields():
    w2v, glove = EmbeddingsConfig(method="word2vec"), EmbeddingsConfig(method="glove")
    key = STAGE.key(w2v, UPSTREAM)
    # other methods' fields, the list of methods and the thread count leave the word2vec key alone
    for cfg in (replace_in(w2v, "glove", epochs=50), replace_in(w2v, "fasttext", bucket=10, window=2),
                dataclasses.replace(w2v, methods=["word2vec"]), dataclasses.replace(w2v, workers=7)):
        assert STAGE.key(cfg, UPSTREAM) == key, cfg
    # its own and shared fields change it
    for cfg in (replace_in(w2v, "word2vec", window=3), replace_in(w2v, "word2vec", architecture="skipgram"),
                dataclasses.replace(w2v, vector_size=50), dataclasses.replace(w2v, seed=1),
                dataclasses.replace(w2v, min_count=1)):
        assert STAGE.key(cfg, UPSTREAM) != key, cfg
    glove_key = STAGE.key(glove, UPSTREAM)
    assert STAGE.key(replace_in(glove, "word2vec", window=2, epochs=9), UPSTREAM) == glove_key
    assert STAGE.key(replace_in(glove, "glove", window=4), UPSTREAM) != glove_key
    # fastText keys its own sub-table (the word2vec fields plus n-grams); methods differ in key
    fasttext = EmbeddingsConfig(method="fasttext")
    assert STAGE.key(replace_in(fasttext, "fasttext", bucket=10), UPSTREAM) != STAGE.key(fasttext, UPSTREAM)
    assert STAGE.key(replace_in(fasttext, "word2vec", window=2), UPSTREAM) == STAGE.key(fasttext, UPSTREAM)
    assert len({key, glove_key, STAGE.key(fasttext, UPSTREAM)}) == 3
    assert "workers" in volatile_fields(glove) and "glove" not in volatile_fields(glove)
    payload = STAGE.key_payload(glove, UPSTREAM)["config"]
    assert set(payload) == {"method", "vector_size", "min_count", "seed", "evaluate", "restrict_vocab", "neighbour_words",
                            "neighbours", "glove"}
    assert payload["glove"] == dataclasses.asdict(GloveConfig())


def test_changing_the_glove_window_changes_only_the_glove_instance_key():
    from nlp_pipeline import pipeline

    def keys(*sets):  # each embeddings instance's key, with fixed upstream keys
        return {i.id: i.stage.key(i.config, {name: "0" * 64 for name in i.inputs})
                for i in pipeline.instances(pipeline.load_config(sets=list(sets))) if i.id.startswith("embeddings:")}

    before, after = keys(), keys("embeddings.glove.window=5")
    assert set(before) == {"embeddings:word2vec", "embeddings:fasttext", "embeddings:glove"}
    assert after["embeddings:glove"] != before["embeddings:glove"]
    assert after["embeddings:word2vec"] == before["embeddings:word2vec"]
    assert after["embeddings:fasttext"] == before["embeddings:fasttext"]


def test_general_corpus_without_a_general_corpus_cannot_apply():
    from nlp_pipeline import pipeline

    with pytest.raises(ConfigError, match=r'^embeddings\.general_corpus cannot apply: pretrain_lm\.corpus = "none" names no '
                                          r'general corpus; set pretrain_lm\.corpus or remove embeddings\.general_corpus$'):
        pipeline.load_config(sets=["pretrain_lm.weights=none", "pretrain_lm.corpus=none", "embeddings.general_corpus=true"])


def test_pretrained_key_follows_file_contents_not_path(tmp_path):
    first = tmp_path / "a.txt"
    first.write_text("cat 1 2\ndog 3 4\n", encoding="utf-8")
    moved = tmp_path / "sub" / "b.txt"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    cfg = pretrained(first, vector_size=2)
    key = STAGE.key(cfg, UPSTREAM)
    assert "path" not in STAGE.key_payload(cfg, UPSTREAM)["config"]["pretrained"]  # a dotted volatile name
    assert STAGE.key(replace_in(cfg, "pretrained", path=str(moved)), UPSTREAM) == key
    moved.write_text("cat 1 2\ndog 3 5\n", encoding="utf-8")
    assert STAGE.key(replace_in(cfg, "pretrained", path=str(moved)), UPSTREAM) != key
    assert STAGE.key(replace_in(cfg, "pretrained", vocabulary="all"), UPSTREAM) != key
    with pytest.raises(MissingInputError, match=r"embeddings\.pretrained\.path"):
        STAGE.key(replace_in(cfg, "pretrained", path=str(tmp_path / "missing.txt")), UPSTREAM)


@pytest.mark.parametrize("values, message", [
    ({"methods": ["word2vec", "bert"]}, "bert"),
    ({"word2vec": {"architecture": "sg"}}, r"embeddings\.word2vec\.architecture must be 'cbow' or 'skipgram'"),
    ({"methods": ["pretrained"], "method": "pretrained"}, r"set embeddings\.pretrained\.path"),
    ({"methods": ["pretrained"]}, r"set embeddings\.pretrained\.path"),
    ({"fasttext": {"min_n": 5, "max_n": 3}}, r"embeddings\.fasttext\.min_n \(5\) must be between 1 and max_n"),
    ({"min_count": 0}, "embeddings.min_count must be at least 1"),
    ({"glove": {"epochs": 0}}, r"embeddings\.glove\.epochs must be at least 1, got 0"),
    ({"glove": {"learning_rate": 0}}, r"embeddings\.glove\.learning_rate must be positive"),
    ({"glove": {"windw": 3}}, r"unknown setting embeddings\.glove\.windw; valid settings of \[embeddings\.glove\]: "
                               r"alpha, batch_size, epochs, learning_rate, window, x_max$"),
    ({"glove": 5}, r"embeddings\.glove must be a table of settings like \[embeddings\.glove\], got 5"),
    # a sub-table of a method that is not trained cannot apply
    ({"pretrained": {"path": "x.txt"}}, r"^embeddings\.pretrained\.path cannot apply: 'pretrained' is not in "
                                         r"embeddings\.methods; add it or remove the setting$"),
    ({"methods": ["word2vec"], "glove": {"window": 5}}, r"^embeddings\.glove\.window cannot apply: 'glove' is not in "),
    ({"methods": ["glove"], "fasttext": {"bucket": 10}}, r"^embeddings\.fasttext\.bucket cannot apply"),
])
def test_invalid_settings_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        build(EmbeddingsConfig, values, "embeddings")


def test_config_builds_from_toml_values():
    cfg = build(EmbeddingsConfig, {"methods": ["word2vec"], "word2vec": {"sample": 0}, "neighbour_words": ["king"]},
                "embeddings")
    assert cfg.methods == ["word2vec"] and cfg.word2vec.sample == 0.0 and cfg.neighbour_words == ["king"]
    assert isinstance(cfg.word2vec.sample, float) and cfg.word2vec == Word2VecConfig(sample=0.0)
    # a sub-table with one field keeps that sub-table's other defaults
    glove = build(EmbeddingsConfig, {"glove": {"window": 4}}, "embeddings").glove
    assert glove == GloveConfig(window=4) and glove.epochs == 25
    # not set = equal to the default: the default sub-tables of untrained methods are fine
    assert build(EmbeddingsConfig, {"methods": [], "glove": {"window": 10}}, "embeddings").glove == GloveConfig()


# --- training ----------------------------------------------------------------------------------------------

def test_long_documents_are_fed_in_pieces_gensim_does_not_truncate():
    tokens = make_tokens([[f"w{i % 7}" for i in range(25_000)], ["a", "b"]])
    pieces = list(_Sentences([tokens]))
    assert [len(p) for p in pieces] == [10_000, 10_000, 5_000, 2]
    assert pieces[1][:3] == ["w4", "w5", "w6"]  # position 10000 is 10000 % 7 = 4
    assert _Sentences([tokens]).count() == 4


def test_word2vec_reports_a_loss_per_epoch_and_frequency_ordered_counts():
    tokens = topic_corpus()
    result = train_embeddings(EmbeddingsConfig(method="word2vec", **FAST), tokens)
    assert result.method == "word2vec"
    assert result.vectors.shape == (25, 16) and result.vectors.dtype == np.float32
    assert result.keys[0] == "common" and result.counts[0] == 180
    assert list(result.counts) == sorted(result.counts, reverse=True)
    counts = dict(zip(tokens.types, tokens.type_counts()))
    assert all(counts[k] == c for k, c in zip(result.keys, result.counts))
    assert len(result.losses) == 3 and all(loss > 0 for loss in result.losses)
    # per-epoch (reset each epoch), not cumulative: the third epoch is not the sum of the first two
    assert result.losses[2] < result.losses[0] + result.losses[1]
    assert result.metrics["training"]["raw_words"] == 3 * len(tokens.ids)
    assert "analogies" not in result.metrics  # evaluate=False


def test_word2vec_repeats_exactly_with_one_worker():
    tokens = topic_corpus()
    cfg = EmbeddingsConfig(method="word2vec", **{**FAST, "word2vec": Word2VecConfig(architecture="skipgram", epochs=3)})
    first, second = train_embeddings(cfg, tokens), train_embeddings(cfg, tokens)
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert stable_hash("a") == 3904355907  # crc32: independent of PYTHONHASHSEED


def test_fasttext_keeps_ngram_vectors_and_says_it_has_no_loss():
    result = train_embeddings(EmbeddingsConfig(method="fasttext", **{**FAST, "fasttext": FastTextConfig(bucket=1000, epochs=3)}),
                              topic_corpus())
    assert result.losses == []
    assert "no training loss" in result.metrics["training"]["loss"]
    assert result.ngram_vectors.shape == (1000, 16)
    assert result.ngram_settings == {"min_n": 3, "max_n": 6, "bucket": 1000}


def test_glove_key_follows_its_code_version_alone(monkeypatch):
    glove, w2v = EmbeddingsConfig(method="glove"), EmbeddingsConfig(method="word2vec")
    before = STAGE.key(glove, UPSTREAM), STAGE.key(w2v, UPSTREAM)
    monkeypatch.setattr(embeddings, "GLOVE_VERSION", embeddings.GLOVE_VERSION + 1)
    assert STAGE.key(glove, UPSTREAM) != before[0]
    assert STAGE.key(w2v, UPSTREAM) == before[1]


def test_glove_with_one_worker_repeats_exactly():
    cfg = EmbeddingsConfig(method="glove", glove=GloveConfig(epochs=5), vector_size=8, min_count=2, evaluate=False, workers=1)
    first, second = train_embeddings(cfg, topic_corpus()), train_embeddings(cfg, topic_corpus())
    assert first.metrics["training"]["threads"] == 1
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert first.losses == second.losses


def test_glove_separates_topics_and_general_corpus_adds_words_and_counts():
    tokens = topic_corpus()
    general = make_tokens([["common", "extra", "extra"]] * 3)
    result = train_embeddings(EmbeddingsConfig(method="glove", glove=GloveConfig(epochs=40), vector_size=16, min_count=2,
                                               evaluate=False, workers=1), tokens, general)
    assert result.method == "glove" and len(result.losses) == 40
    assert result.losses[-1] < result.losses[0]
    index = {k: i for i, k in enumerate(result.keys)}
    assert result.counts[index["common"]] == 183 and result.counts[index["extra"]] == 6
    units = result.vectors / np.linalg.norm(result.vectors, axis=1, keepdims=True)
    sport = [index[f"sport{i}"] for i in range(12)]
    money = [index[f"money{i}"] for i in range(12)]
    within = (units[sport] @ units[sport].T).mean()
    across = (units[sport] @ units[money].T).mean()
    # every nonzero count of this toy corpus is within a topic or with 'common', and zero counts carry no loss,
    # so the split only shows through the optimiser's path: per-entry steps leave it smaller (~0.4 vs ~0.25)
    # than numpy's summed minibatch steps (~0.95 vs ~0); real text gives better word-pair scores per entry
    assert within > across + 0.1


def test_glove_threads_follow_workers():
    tokens = topic_corpus()
    for workers, threads in ((0, min(4, os.cpu_count() or 1)), (2, 2)):
        result = train_embeddings(EmbeddingsConfig(method="glove", glove=GloveConfig(epochs=3), vector_size=8, min_count=2,
                                                   evaluate=False, workers=workers), tokens)
        # numba is a dependency, so the compiled kernel runs, on `workers` threads (0 = min(4, CPU count))
        assert result.metrics["training"]["kernel"] == "numba"
        assert result.metrics["training"]["threads"] == threads
        assert np.isfinite(result.vectors).all()


@pytest.mark.parametrize("method", ["word2vec", "fasttext", "glove"])
def test_empty_vocabulary_names_the_setting_to_lower(method):
    tokens = make_tokens([["a", "b", "c"], ["d"]])
    with pytest.raises(DataError, match=r"at least 5 times .* lower embeddings\.min_count"):
        train_embeddings(EmbeddingsConfig(method=method, min_count=5), tokens)


def test_evaluation_runs_on_the_standard_sets():
    tokens = topic_corpus()
    result = train_embeddings(EmbeddingsConfig(method="word2vec", **{**FAST, "evaluate": True},
                                               neighbour_words=["sport1", "unknownword"], neighbours=3), tokens)
    metrics = result.metrics
    assert metrics["analogies"]["total"]["questions"] == 19544
    assert metrics["analogies"]["total"]["attempted"] == 0 and metrics["analogies"]["total"]["accuracy"] is None
    assert metrics["word_pairs"]["wordsim353"]["oov_ratio"] == 1.0
    assert list(metrics["neighbours"]) == ["sport1"] and len(metrics["neighbours"]["sport1"]) == 3


# --- pretrained vectors ------------------------------------------------------------------------------------

def test_pretrained_glove_file_restricted_to_the_corpus(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("common 0.5 1\nsport1 1 0\nParis 2 2\nunused 3 3\n", encoding="utf-8")
    tokens = make_tokens([["common", "sport1", "paris", "common", "other"]])
    cfg = pretrained(path, vector_size=2, min_count=1, evaluate=False)
    result = train_embeddings(cfg, tokens)
    assert result.method == "pretrained"
    assert result.keys == ["common", "sport1", "paris"]  # frequency order; 'paris' found as 'Paris'
    np.testing.assert_array_equal(result.vectors, [[0.5, 1], [1, 0], [2, 2]])
    assert list(result.counts) == [2, 1, 1]
    assert result.metrics["training"]["corpus_word_coverage"] == pytest.approx(3 / 4)
    everything = train_embeddings(replace_in(cfg, "pretrained", vocabulary="all"), tokens)
    assert everything.keys == ["common", "sport1", "Paris", "unused"] and list(everything.counts) == [2, 1, 0, 0]


def test_pretrained_with_the_wrong_dimension_is_a_data_error(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("common 0.5 1 2\n", encoding="utf-8")
    cfg = pretrained(path, vector_size=2, min_count=1, evaluate=False)
    with pytest.raises(DataError, match=r"3-dimensional .* set embeddings.vector_size = 3"):
        train_embeddings(cfg, make_tokens([["common"]]))


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"cat 1 2\ndog 1\n", "line 2 has 1 values, expected a word and 2 numbers"),
    (b"cat 1 2\ndog 1 x\n", "line 2 has a value that is not a number"),
    (b"cat 1 2\ncat 3 4\n", "'cat' appears twice"),
    (b"cat 1 nan\n", "non-finite"),
    (b"3 2\ncat 1 2\ndog 3 4\n", "announces 3 words"),
    (b"cat 1 2\n\xff\xfe 1 2\n", "not valid UTF-8"),
    (b"2 2\ncat \x00\x00\x80\x3f\x00\x00", "truncated"),
])
def test_malformed_vector_files_are_one_line_data_errors(tmp_path, content, message):
    path = tmp_path / "vectors.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        read_vectors(path)
    assert "\n" not in str(caught.value)


def test_reads_glove_words_with_spaces_and_fasttext_trailing_spaces(tmp_path):
    glove_file = tmp_path / "glove.txt"
    glove_file.write_text("a 1 2\nnew york 3 4\nb 5 6\n", encoding="utf-8")
    keys, vectors = read_vectors(glove_file, expected_dim=2)
    assert keys == ["a", "new york", "b"] and vectors.tolist() == [[1, 2], [3, 4], [5, 6]]
    vec_file = tmp_path / "wiki.vec"
    vec_file.write_text("2 3 \nthe 0.1 0.2 0.3 \nof -1 0 1e-3 \n", encoding="utf-8")
    keys, vectors = read_vectors(vec_file, expected_dim=3)
    assert keys == ["the", "of"]
    np.testing.assert_allclose(vectors, [[0.1, 0.2, 0.3], [-1, 0, 0.001]], rtol=1e-6)


# --- evaluation ---------------------------------------------------------------------------------------------

def test_analogy_by_hand():
    # b - a + c = d exactly; 'e' is a distractor; 'x' lies outside restrict_vocab
    keys = ["a", "b", "c", "d", "e", "x"]
    vectors = np.array([[1, 0], [1, 1], [3, 0], [3, 3], [0, 1], [3, 3.1]], dtype=np.float32)
    sections = [("capital-world", [("A", "B", "C", "D"), ("A", "B", "C", "zzz")]),
                ("gram1-adjective", [("a", "b", "c", "e"), ("a", "b", "c", "x")])]
    result = evaluate_analogies(keys, vectors, sections, restrict_vocab=5)
    assert result["sections"]["capital-world"] == {"correct": 1, "attempted": 1, "questions": 2, "accuracy": 1.0, "coverage": 0.5}
    assert result["sections"]["gram1-adjective"]["correct"] == 0  # predicted 'd', expected 'e'
    assert result["semantic"]["accuracy"] == 1.0 and result["syntactic"]["accuracy"] == 0.0
    assert result["total"] == {"correct": 1, "attempted": 2, "questions": 4, "accuracy": 0.5, "coverage": 0.5}


def test_analogies_agree_with_gensim():
    from gensim.models import KeyedVectors

    rng = np.random.default_rng(0)
    sections = load_analogies(standard_test_file("questions-words.txt"))
    words = sorted({w.lower() for _, qs in sections[:2] for q in qs for w in q})
    vectors = rng.standard_normal((len(words), 8)).astype(np.float32)
    # plant some correct answers so that accuracy is not trivially zero
    lookup = build_lookup(words)
    for a, b, c, d in sections[0][1][:40]:
        i = [lookup[w.lower()] for w in (a, b, c, d)]
        vectors[i[3]] = vectors[i[1]] - vectors[i[0]] + vectors[i[2]]
    ours = evaluate_analogies(words, vectors, sections[:2], restrict_vocab=len(words))
    kv = KeyedVectors(8)
    kv.add_vectors(words, vectors)
    _, theirs = kv.evaluate_word_analogies(standard_test_file("questions-words.txt"), restrict_vocab=len(words))
    correct = {s["section"]: len(s["correct"]) for s in theirs}
    for name, section in ours["sections"].items():
        assert section["correct"] == correct[name]
        assert section["attempted"] == correct[name] + len(next(s for s in theirs if s["section"] == name)["incorrect"])
    assert ours["sections"]["capital-common-countries"]["correct"] >= 20


def test_word_pairs_by_hand_and_against_gensim():
    keys = ["cat", "dog", "car", "sun"]
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.5, 0.5]], dtype=np.float32)
    pairs = [("Cat", "dog", 9.0), ("cat", "car", 1.0), ("cat", "sun", 5.0), ("cat", "zzz", 5.0)]
    result = evaluate_word_pairs(keys, vectors, pairs)
    assert result["spearman"] == pytest.approx(1.0) and result["found"] == 3 and result["oov_ratio"] == 0.25
    from gensim.models import KeyedVectors

    rng = np.random.default_rng(0)
    pairs = load_word_pairs(standard_test_file("wordsim353.tsv"))
    words = sorted({w.lower() for a, b, _ in pairs[:200] for w in (a, b)})
    vectors = rng.standard_normal((len(words), 8)).astype(np.float32)
    kv = KeyedVectors(8)
    kv.add_vectors(words, vectors)
    pearson, spearman, oov = kv.evaluate_word_pairs(standard_test_file("wordsim353.tsv"))
    ours = evaluate_word_pairs(words, vectors, pairs)
    assert ours["spearman"] == pytest.approx(spearman.statistic, abs=1e-6)
    assert ours["pearson"] == pytest.approx(pearson.statistic, abs=1e-5)
    assert ours["oov_ratio"] * 100 == pytest.approx(oov)


def test_neighbours_and_frequent_word_pick():
    keys = ["a", "b", "c"]
    vectors = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
    assert nearest_neighbours(keys, vectors, ["a", "zzz"], k=1) == {"a": [("b", 0.7071)]}
    assert pick_frequent_words(["xxbos", "the", "of", "film", "a", "xxmaj", "movie", "x1"], 2, skip={"the"}) == ["film", "movie"]


def test_evaluate_word_vectors_covers_lowercased_vocabulary():
    keys = ["athens", "greece", "baghdad", "iraq", "tiger", "cat"]
    vectors = np.eye(6, dtype=np.float32)
    metrics = evaluate_word_vectors(keys, vectors, neighbour_words=["tiger"], neighbours=2)
    assert metrics["analogies"]["sections"]["capital-common-countries"]["attempted"] == 2  # Athens Greece Baghdad Iraq and back
    assert metrics["word_pairs"]["wordsim353"]["found"] >= 2  # tiger-cat, tiger-tiger
    assert [n for n, _ in metrics["neighbours"]["tiger"]] == ["athens", "greece"]


def test_stage_declares_the_optional_general_input():
    assert STAGE.name == "embeddings" and STAGE.optional == ("general",)
    assert set(STAGE.inputs) == {"tokens", "general"}
    assert embeddings.METHODS == ("word2vec", "fasttext", "glove", "pretrained")


def test_evaluation_settings_cannot_apply_without_evaluation():
    from nlp_pipeline import pipeline
    from nlp_pipeline.core.errors import CannotApply

    with pytest.raises(CannotApply, match=r"^embeddings\.neighbours cannot apply: embeddings\.evaluate = false scores nothing"):
        pipeline.load_config(sets=["embeddings.evaluate=false", "embeddings.neighbours=3"])
    stage = pipeline.STAGES["embeddings"]
    silent = pipeline.load_config(sets=["embeddings.evaluate=false"])["embeddings"]
    assert "neighbours" not in stage.key_payload(silent, {"tokens": "0" * 64})["config"]
    assert "neighbours" in stage.key_payload(EmbeddingsConfig(), {"tokens": "0" * 64})["config"]
