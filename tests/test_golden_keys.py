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
    "validation": "6f108ef45f40d3d9ea23f8493ce5a56b659b5abcfd59a8407cd3c0023a6a081f",
    "embeddings": "7342d9a09ca1f9d885f5e849521a82ad2be2cb433c7e649d40b36ee62a1384ae",
    "lsa": "04ef1c1e9b796dcbec3992bbb82dd86ebab870597fa367b94e3b7f76e009bc25",
    "pretrain_lm": "f6b4ae3635dad18736a63d48bf5f614cba5ec0b98f62b521b24eb28b0cb84a6c",
    "finetune_lm": "36a4cfd05008193e7ed5e53602ba8618f4d37ec32b11735614f06c13ecf76283",
    "classifier": "9304f856c6d0d0b7c2d1fef00d7f1a7bdb771619869bb650a9e4cf04d0f38498",
    "linear": "da355fc059e95274a1b6f4f69de5e368ce4bbbb3232527c38836a56a76644df7",
    "blend": "1aed72b7615cb247dfac7ce7b07e190b0f4d7db7753afe1c01ea19e49fa89188",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_default_keys_have_not_drifted(name):
    stage = pipeline.STAGES[name]
    wired = [n for n in stage.inputs if n != "lm_backward"]  # the default direction ("forward") wires no backward LM
    key = stage.key(stage.config(), {input_name: "0" * 64 for input_name in wired})
    assert key == GOLDEN[name], f"{name}: key changed; if intended (version bump, new default), update GOLDEN"


def test_every_stage_but_corpus_has_a_golden_key():
    assert set(GOLDEN) == set(pipeline.STAGES) - {"corpus"}
