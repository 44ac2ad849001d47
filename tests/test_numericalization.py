import numpy as np
import pytest

from helpers import make_tokens
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.config import build
from nlp_pipeline.rules import SPECIAL_TOKENS
from nlp_pipeline.stages.numericalization import NumericalizationConfig, build_vocab, decode, numericalize


def test_build_vocab_specials_first_then_by_count_then_alphabet():
    vocab = build_vocab(["b", "a", "c", "d"], np.array([2, 2, 1, 5]), min_freq=2, max_vocab=100)
    assert vocab.itos == list(SPECIAL_TOKENS) + ["d", "a", "b"]
    capped = build_vocab(["b", "a", "c", "d"], np.array([2, 2, 1, 5]), min_freq=1, max_vocab=len(SPECIAL_TOKENS) + 2)
    assert capped.itos[len(SPECIAL_TOKENS):] == ["d", "a"]


def test_numericalize_maps_rare_and_test_only_tokens_to_unk():
    tokens = make_tokens(
        [["xxbos", "good", "film"], ["xxbos", "good", "plot"], ["xxbos", "bad", "film"], ["xxbos", "unseen", "film"]],
        [1, 1, 0, 0], ["train", "train", "train", "test"], ["neg", "pos"],
    )
    result = numericalize(NumericalizationConfig(min_freq=2), tokens)
    n = len(SPECIAL_TOKENS)
    assert result.vocab.itos[n:] == ["film", "good"]       # film: 2 in train (3 overall), good: 2; plot/bad: 1
    unk, bos = result.vocab.stoi["xxunk"], result.vocab.stoi["xxbos"]
    film, good = n, n + 1
    assert result.ids.tolist() == [bos, good, film, bos, good, unk, bos, unk, film, bos, unk, film]
    assert result.offsets.tolist() == [0, 3, 6, 9, 12]
    assert result.oov_rate == {"train": round(2 / 9, 5), "test": round(1 / 3, 5)}
    assert result.labels.tolist() == [1, 1, 0, 0] and result.label_names == ["neg", "pos"]
    assert result.ids.dtype == np.int32 and result.offsets.dtype == np.int64


def test_decode_reapplies_case_markers():
    tokens = make_tokens([["xxbos", "xxmaj", "hello", "xxup", "world", "!"]] * 3, [0, 0, 0], ["train"] * 3, ["a"])
    result = numericalize(NumericalizationConfig(min_freq=1), tokens)
    assert decode(result.vocab, result.doc_ids(0)) == "Hello WORLD!"


def test_config_validation():
    with pytest.raises(ConfigError, match="min_freq"):
        build(NumericalizationConfig, {"min_freq": 0}, "numericalization")
    with pytest.raises(ConfigError, match="vocab_splits"):
        build(NumericalizationConfig, {"vocab_splits": ["training"]}, "numericalization")


def test_no_tokens_in_vocab_splits_is_data_error():
    tokens = make_tokens([["xxbos", "a"]], [0], ["test"], ["x"])
    with pytest.raises(DataError, match="vocab_splits"):
        numericalize(NumericalizationConfig(), tokens)


@pytest.mark.parametrize("labels, target_type", [
    (np.array([[1, 0], [0, 0], [-1, -1]], dtype=np.int8), "multi_label"),
    (np.array([0.5, 3.0, np.nan], dtype=np.float32), "regression"),
])
def test_labels_of_every_target_type_pass_through(labels, target_type):
    tokens = make_tokens([["xxbos", "a"], ["xxbos", "b"], ["xxbos", "a"]], [0, 0, 0], ["train", "test", "unsup"], ["x", "y"])
    tokens.labels, tokens.target_type = labels, target_type
    result = numericalize(NumericalizationConfig(min_freq=1), tokens)
    assert result.target_type == target_type and result.label_names == ["x", "y"]
    assert result.labels.dtype == labels.dtype and result.labels.shape == labels.shape
    assert np.array_equal(result.labels, labels, equal_nan=True)
