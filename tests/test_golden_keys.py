"""Golden keys: the cache key of every stage with its default config and fixed upstream keys.

Code changes are not detected by the cache; each stage's `version` is the contract. If this test fails, a
default, a config field, a version or the key recipe changed, so every cached artifact of that stage (and of
its dependents) will be recomputed. That is fine when intended: update the value here in the same commit and
say why in the message. The corpus stage is left out: its key hashes the corpus files themselves.
"""

import pytest

from nlp_pipeline import pipeline

GOLDEN = {
    "tokenization": "d7c6e17b0210a147c74a38201493bd7f6776d65767437091b4aa7e6473d2718f",
    "numericalization": "7a4a47b2d58b3545b5dc821ae575d0bf5159a478c01e24e685cadc3cf4460aaf",
    "embeddings": "7342d9a09ca1f9d885f5e849521a82ad2be2cb433c7e649d40b36ee62a1384ae",
    "lsa": "9f16c9aaf01719090155f9b84c11ee521118468327ae6e21c595835437258aee",
    "pretrain_lm": "f6b4ae3635dad18736a63d48bf5f614cba5ec0b98f62b521b24eb28b0cb84a6c",
    "finetune_lm": "5e5fb2fe99d97dbf3f0f57fce14b2aebe13f31ccba4a5d66f7a7d49bde8060b3",
    "classifier": "92ae700186e1b82c393b8071e9aaf59d3fd49e156e3f831f8d093d17f15f4e5c",
    "linear": "3cd34316fdc33953a9c041fd0a587fc227b97bffa7f8899ba7020438544e9e8a",
    "blend": "5d505ff26d82e2f4fd535c5f03cfedda6d4f8d85a63b5f20f12caf247207e9f4",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_default_keys_have_not_drifted(name):
    stage = pipeline.STAGES[name]
    wired = [n for n in stage.inputs if n != "lm_backward"]  # the default direction ("forward") wires no backward LM
    key = stage.key(stage.config(), {input_name: "0" * 64 for input_name in wired})
    assert key == GOLDEN[name], f"{name}: key changed; if intended (version bump, new default), update GOLDEN"


def test_every_stage_but_corpus_has_a_golden_key():
    assert set(GOLDEN) == set(pipeline.STAGES) - {"corpus"}
