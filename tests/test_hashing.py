import subprocess
import sys

import pytest

from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.core.hashing import canonical_json, key, tree_sha256


def test_canonical_json_sorts_keys_and_drops_spaces():
    assert canonical_json({"b": 1, "a": [1.0, "x"]}) == '{"a":[1.0,"x"],"b":1}'


def test_key_is_sha256_of_canonical_json():
    import hashlib

    assert key({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()
    assert key({"a": 1, "b": 2}) == key({"b": 2, "a": 1})
    assert key({"a": 1}) != key({"a": 1.5})


@pytest.mark.parametrize("value", [{"x": object()}, {"x": {1, 2}}, {"x": float("nan")}, {1: "non-string key"}])
def test_non_json_values_are_config_errors(value):
    with pytest.raises(ConfigError):
        key(value)


def test_same_key_in_subprocess_with_other_hashseed():
    payload = {"stage": "lsa", "config": {"n_components": 100, "terms": ["b", "a"], "nested": {"z": 1, "y": None}}}
    code = (
        "from nlp_pipeline.core.hashing import key;"
        f"print(key({payload!r}))"
    )
    outputs = set()
    for seed in ("1", "12345"):
        env = {"PYTHONHASHSEED": seed, "PATH": ""}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        outputs.add(out.stdout.strip())
    assert outputs == {key(payload)}


def test_tree_sha256_depends_on_contents_not_location(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "train.jsonl").write_text('{"text": "x"}\n')
    first = tree_sha256(a)
    moved = tmp_path / "elsewhere"
    a.rename(moved)
    assert tree_sha256(moved) == first
    (moved / "train.jsonl").write_text('{"text": "y"}\n')
    assert tree_sha256(moved) != first
