import json
import os
import stat

import numpy as np
import pytest

from nlp_pipeline.core.errors import CacheError
from nlp_pipeline.core.store import ArtifactStore, CorruptArtifact


def _save(store, value, key="k" * 64):
    store.save("toy", key, value, {"note": "test"})
    return store.folder("toy", key)


def test_round_trip_with_large_array_as_memory_mapped_npy(tmp_path):
    store = ArtifactStore(tmp_path)
    big = np.arange(100_000, dtype=np.int32)
    folder = _save(store, {"ids": big, "small": np.arange(3), "name": "x"})
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["array_0000.npy", "artifact.pkl", "meta.json"]
    loaded = store.load("toy", "k" * 64)
    assert isinstance(loaded["ids"], np.memmap)
    assert loaded["ids"].flags.writeable is False
    np.testing.assert_array_equal(loaded["ids"], big)
    np.testing.assert_array_equal(loaded["small"], [0, 1, 2])
    assert loaded["name"] == "x"


def test_torch_tensors_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    store = ArtifactStore(tmp_path)
    weights = {"w": torch.arange(50_000, dtype=torch.float32).reshape(500, 100)}
    _save(store, weights)
    loaded = store.load("toy", "k" * 64)
    assert isinstance(loaded["w"], torch.Tensor)
    assert torch.equal(loaded["w"], weights["w"])


def test_meta_json_is_readable_and_signed(tmp_path):
    store = ArtifactStore(tmp_path)
    folder = _save(store, [1, 2, 3])
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["stage"] == "toy" and meta["note"] == "test"
    assert set(meta["files"]) == {"artifact.pkl"}
    assert len(meta["signature"]) == 64
    assert stat.S_IMODE(os.stat(tmp_path / ".secret").st_mode) == 0o600


def test_truncated_pickle_is_refused(tmp_path):
    store = ArtifactStore(tmp_path)
    folder = _save(store, list(range(1000)))
    data = (folder / "artifact.pkl").read_bytes()
    (folder / "artifact.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArtifact, match="sha256"):
        store.load("toy", "k" * 64)


def test_planted_pickle_with_recomputed_checksum_is_refused(tmp_path):
    """An attacker who rewrites the pickle and its sha256 in meta.json still lacks the HMAC secret."""
    import hashlib
    import pickle

    store = ArtifactStore(tmp_path)
    folder = _save(store, [1, 2, 3])
    evil = pickle.dumps([4, 5, 6])
    (folder / "artifact.pkl").write_bytes(evil)
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["artifact.pkl"]["sha256"] = hashlib.sha256(evil).hexdigest()
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptArtifact, match="signature"):
        store.load("toy", "k" * 64)


def test_extra_file_and_moved_folder_are_refused(tmp_path):
    store = ArtifactStore(tmp_path)
    folder = _save(store, [1])
    (folder / "extra.pkl").write_bytes(b"x")
    with pytest.raises(CorruptArtifact, match="files differ"):
        store.load("toy", "k" * 64)
    (folder / "extra.pkl").unlink()
    os.rename(folder, store.folder("toy", "j" * 64))
    with pytest.raises(CorruptArtifact, match="another stage or key"):
        store.load("toy", "j" * 64)


def test_folder_without_meta_does_not_exist(tmp_path):
    store = ArtifactStore(tmp_path)
    folder = _save(store, [1])
    (folder / "meta.json").unlink()
    assert not store.exists("toy", "k" * 64)
    assert list(store.entries()) == []


def test_failed_save_leaves_nothing(tmp_path):
    store = ArtifactStore(tmp_path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.save("toy", "k" * 64, Unpicklable(), {})
    assert not store.exists("toy", "k" * 64)
    assert [p.name for p in (tmp_path / "toy").iterdir()] == []


def test_unwritable_cache_dir_is_one_line_error(tmp_path):
    target = tmp_path / "file-not-dir"
    target.write_text("x")
    with pytest.raises(CacheError, match="not writable.*--cache-dir"):
        ArtifactStore(target / "sub").ensure_writable()


def test_default_cache_dir_honours_environment(tmp_path, monkeypatch):
    from nlp_pipeline.core.store import default_cache_dir

    monkeypatch.setenv("NLP_PIPELINE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"


def test_checkpoints_of_interrupted_training_are_cleaned_unless_training_is_running(tmp_path):
    store = ArtifactStore(tmp_path)
    for key in ("a" * 64, "b" * 64):
        folder = store.checkpoint_folder("pretrain_lm", key)
        folder.mkdir(parents=True)
        (folder / "state.bin").write_bytes(b"x" * 1000)
    with store.lock("pretrain_lm", "b" * 64):  # b is being trained: its checkpoint stays
        assert store.clean_checkpoints() == (1, 1000)
    assert not store.checkpoint_folder("pretrain_lm", "a" * 64).exists()
    assert store.checkpoint_folder("pretrain_lm", "b" * 64).is_dir()
    assert store.clean_checkpoints() == (1, 1000)  # the lock is free again
    assert not any(p.name.startswith((".checkpoint-", ".trash-")) for p in (tmp_path / "pretrain_lm").iterdir())
