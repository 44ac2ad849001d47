"""The artifact cache under attack and under faults (issue 17, findings 2, 3, 6, 9, 10, 11).

Each test reproduces one finding of the audit and failed before its fix. Tests may run as root, where chmod
does not stop writes: ownership and permission failures are simulated by monkeypatching the OS call.
"""

import errno
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import toy_stages
from nlp_pipeline.cli import main
from nlp_pipeline.core import store as store_module
from nlp_pipeline.core.errors import CacheError
from nlp_pipeline.core.runner import execute, plan
from nlp_pipeline.core.store import ArtifactStore, CorruptArtifact

TESTS = Path(__file__).parent
KEY = "k" * 64
ROOT_USER = os.geteuid() == 0


def _save(store, value, key=KEY):
    store.save("toy", key, value, {"note": "test"})
    return store.folder("toy", key)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


# -- 2 (a): the bytes hashed are the bytes unpickled ------------------------------------------------------------
class _Payload:
    """Unpickling this creates a marker file: proof that planted code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


_swap_on_second_open: dict = {}


def _audit(event, args):
    """Swaps a file just before it is opened a second time (an attacker racing the check, made deterministic)."""
    plan_ = _swap_on_second_open.get("plan")
    if event != "open" or plan_ is None or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    if os.fsdecode(args[0]) == plan_["path"]:
        plan_["opens"] += 1
        if plan_["opens"] == 2:
            os.replace(plan_["replacement"], plan_["path"])


sys.addaudithook(_audit)


@pytest.fixture
def swap_on_second_open():
    def arm(path: Path, replacement: Path):
        _swap_on_second_open["plan"] = {"path": str(path), "replacement": str(replacement), "opens": 0}
        return _swap_on_second_open["plan"]

    yield arm
    _swap_on_second_open.pop("plan", None)


def test_pickle_swapped_after_the_check_is_never_unpickled(tmp_path, swap_on_second_open):
    store = ArtifactStore(tmp_path / "cache")
    folder = _save(store, [1, 2, 3])
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Payload(str(marker))))
    armed = swap_on_second_open(folder / "artifact.pkl", evil)
    assert store.load("toy", KEY) == [1, 2, 3]     # before the fix: hashed, read again, the payload ran
    assert not marker.exists() and armed["opens"] == 1


def test_npy_swapped_after_the_check_is_not_what_is_mapped(tmp_path, swap_on_second_open):
    store = ArtifactStore(tmp_path / "cache")
    folder = _save(store, {"ids": np.arange(100_000, dtype=np.int64)})
    other = tmp_path / "other.npy"
    np.save(other, np.full(100_000, 7, dtype=np.int64))
    armed = swap_on_second_open(folder / "array_0000.npy", other)
    loaded = store.load("toy", KEY)
    np.testing.assert_array_equal(loaded["ids"], np.arange(100_000))
    assert isinstance(loaded["ids"], np.memmap) and not loaded["ids"].flags.writeable
    assert armed["opens"] == 1


def test_planted_fifo_is_refused_without_hanging(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    folder = _save(store, [1])
    (folder / "artifact.pkl").unlink()
    os.mkfifo(folder / "artifact.pkl")
    with pytest.raises(CorruptArtifact, match="not a regular file"):
        store.load("toy", KEY)


# -- 2 (b): the secret and the root are trusted only when private -----------------------------------------------
def test_world_readable_secret_is_refused_with_the_fix(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    _save(store, [1])
    secret = tmp_path / "cache" / ".secret"
    secret.chmod(0o644)
    with pytest.raises(CacheError, match=rf"{secret} has mode 0644.*delete it.*chmod 600 {secret}") as caught:
        store.load("toy", KEY)
    assert "\n" not in str(caught.value)
    with pytest.raises(CacheError, match="mode 0644"):
        store.save("toy", "j" * 64, [2], {})


@pytest.mark.parametrize("content", [b"", b"x" * 31, b"x" * 33, b"x" * 4096])
def test_secret_of_the_wrong_length_is_refused(tmp_path, content):
    store = ArtifactStore(tmp_path / "cache")
    _save(store, [1])
    secret = tmp_path / "cache" / ".secret"
    secret.write_bytes(content)
    with pytest.raises(CacheError, match=rf"{secret} holds {len(content)} bytes, not 32; delete it"):
        store.load("toy", KEY)


def test_secret_that_is_a_symlink_or_a_folder_is_refused(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    _save(store, [1])
    secret = tmp_path / "cache" / ".secret"
    planted = tmp_path / "planted"
    planted.write_bytes(b"x" * 32)
    planted.chmod(0o600)
    secret.unlink()
    secret.symlink_to(planted)
    with pytest.raises(CacheError, match="symbolic link; delete it"):
        store.load("toy", KEY)
    secret.unlink()
    secret.mkdir()
    with pytest.raises(CacheError, match="not a regular file"):
        store.load("toy", KEY)


@pytest.mark.skipif(not ROOT_USER, reason="giving a file to another user needs root")
def test_secret_owned_by_another_user_is_refused(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    _save(store, [1])
    os.chown(tmp_path / "cache" / ".secret", 4242, -1)
    with pytest.raises(CacheError, match=r"owned by uid 4242, not by you \(uid 0\); delete it"):
        store.load("toy", KEY)


def test_cache_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    """As seen by a user other than the cache's owner (root included: whoever can write it can run code as root)."""
    store = ArtifactStore(tmp_path / "cache")
    _save(store, [1])
    owner = os.getuid()
    monkeypatch.setattr(store_module.os, "getuid", lambda: owner + 4242)
    for action in (lambda: store.load("toy", KEY), store.ensure_writable, lambda: store.save("toy", "j" * 64, [2], {})):
        with pytest.raises(CacheError, match=rf"cache directory {tmp_path / 'cache'} is owned by uid {owner}, not by you"):
            action()


@pytest.mark.parametrize("mode, who", [(0o775, "group"), (0o757, "others"), (0o777, "group and others")])
def test_cache_writable_by_group_or_others_is_refused(tmp_path, mode, who):
    store = ArtifactStore(tmp_path / "cache")
    _save(store, [1])
    root = tmp_path / "cache"
    root.chmod(mode)
    with pytest.raises(CacheError, match=rf"{root} is writable by {who} .*chmod go-w {root}"):
        store.load("toy", KEY)
    root.chmod(0o755)                       # readable by all, as mkdir under umask 022 makes it: fine
    assert store.load("toy", KEY) == [1]


def test_folders_and_files_are_not_group_writable_whatever_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        store = ArtifactStore(tmp_path / "cache")
        folder = _save(store, {"ids": np.arange(100_000)})
        with store.lock("toy", KEY):
            pass
    finally:
        os.umask(old)
    for path in [tmp_path / "cache", folder.parent, folder, *folder.iterdir(), tmp_path / "cache" / ".locks"]:
        assert not os.stat(path).st_mode & 0o022, path
    assert stat.S_IMODE(os.stat(tmp_path / "cache" / ".secret").st_mode) == 0o600
    assert store.load("toy", KEY)["ids"][-1] == 99_999   # and the cache it made is accepted


# -- 2 (c): lock files never follow a planted symlink -----------------------------------------------------------
def test_planted_lock_symlink_is_refused_and_its_target_untouched(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    store.ensure_writable()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "cache" / ".locks").mkdir()
    store._lock_path("toy", KEY).symlink_to(victim)
    with pytest.raises(CacheError, match="is a symbolic link"):
        with store.lock("toy", KEY):
            pass
    checkpoint = store.checkpoint_folder("toy", KEY)   # the non-blocking lock of clean_checkpoints too
    checkpoint.mkdir(parents=True)
    with pytest.raises(CacheError, match="is a symbolic link"):
        store.clean_checkpoints()
    assert victim.read_text() == "precious"            # before the fix: truncated to 0 bytes


def test_lock_file_is_not_truncated(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    with store.lock("toy", KEY):
        pass
    path = store._lock_path("toy", KEY)
    path.write_text("pid 123")
    with store.lock("toy", KEY):
        pass
    assert path.read_text() == "pid 123"


# -- 3: a lost or replaced secret is refused, said, and recomputed (also in the report phase) -------------------
POSITIVE = ["a wonderful film", "great acting and a great story", "i loved it", "superb and moving", "a joy to watch",
            "brilliant fun", "wonderful and warm", "great fun for all"]
NEGATIVE = ["a dull film", "terrible acting and a boring story", "i hated it", "awful and tedious", "a pain to watch",
            "boring mess", "dull and cold", "terrible waste of time"]
FAST = ["--set", "tokenization.workers=1", "--set", "numericalization.min_freq=1", "--set", "lsa.n_components=3",
        "--set", "lsa.min_df=1"]
TINY_LM = ["--set", "embeddings.methods=[]", "--set", "pretrain_lm.weights=none", "--set", "pretrain_lm.corpus=none",
           "--set", "model.embedding_dim=8", "--set", "model.hidden_dim=12", "--set", "model.num_layers=1",
           "--set", "finetune_lm.batch_size=2", "--set", "finetune_lm.bptt_length=5", "--set", "finetune_lm.epochs=1",
           "--set", "classifier.batch_size=4",
           "--set", "classifier.stage_epochs=[1, 1]", "--set", "classifier.stage_learning_rates=[0.01, 0.005]"]


@pytest.fixture
def corpus_dir(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 != 3))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(rows) if i % 4 == 3))
    return folder


def _invoke(args, tmp_path):
    return CliRunner().invoke(main, args, env={"NLP_PIPELINE_CACHE": str(tmp_path / "cache")}, catch_exceptions=False)


def _lsa_run(corpus_dir, tmp_path):
    return _invoke(["run", "--corpus", str(corpus_dir), "--runs-dir", str(tmp_path / "runs"), "--until", "lsa", *FAST],
                   tmp_path)


@pytest.mark.parametrize("change", ["delete", "replace"])
def test_lost_or_replaced_secret_is_refused_and_recomputed_not_reported_as_hits(corpus_dir, tmp_path, change):
    assert _lsa_run(corpus_dir, tmp_path).exit_code == 0
    secret = tmp_path / "cache" / ".secret"
    secret.unlink()
    if change == "replace":
        secret.write_bytes(os.urandom(32))
        secret.chmod(0o600)
    again = _lsa_run(corpus_dir, tmp_path)
    assert again.exit_code == 0, again.output
    assert "cache hit" not in again.stderr                       # before the fix: unverified "cache hit" lines
    refused = [line.split()[0] for line in again.stderr.splitlines() if "cached artifact refused" in line]
    assert refused == ["corpus", "tokenization", "validation", "lsa"]
    metrics = json.loads((tmp_path / "runs" / "tiny" / "metrics.json").read_text())
    assert [m["status"] for m in metrics.values()] == ["recomputed"] * 4
    assert "tfidf_logreg_accuracy" in metrics["lsa"]                # before the fix: no metrics at all
    third = _lsa_run(corpus_dir, tmp_path)                          # the new secret signs the recomputed ones
    assert third.stderr.count("cache hit") == 4 and "refused" not in third.stderr


def test_a_refusal_in_the_report_phase_is_printed(corpus_dir, tmp_path):
    args = ["run", "--corpus", str(corpus_dir), *FAST, *TINY_LM, "--runs-dir", str(tmp_path / "runs")]
    assert _invoke(args, tmp_path).exit_code == 0
    run_dir = tmp_path / "runs" / "tiny"
    (run_dir / "report.md").unlink()                                # so the report phase runs again
    pickled = next((tmp_path / "cache" / "classifier").glob("*/artifact.pkl"))
    data = bytearray(pickled.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pickled.write_bytes(bytes(data))
    again = _invoke(args, tmp_path)
    assert again.exit_code == 0, again.output
    lines = again.stderr.splitlines()
    # the run phase checks the signature (the hit is not loaded); the report phase loads it, refuses it, says so
    assert any(line.startswith("classifier") and "cache hit" in line for line in lines)
    assert any(line.startswith("classifier") and "refused" in line and "sha256" in line for line in lines), again.stderr
    assert any(line.startswith("classifier") and "running" in line for line in lines)
    assert (run_dir / "report.md").is_file()
    ArtifactStore(tmp_path / "cache").verify("classifier", pickled.parent.name)


# -- 6: one-line errors instead of tracebacks --------------------------------------------------------------------
class _FullDisk:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_full_disk_before_the_first_save_is_one_line_and_leaves_no_secret_temporary(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path / "cache")
    real = os.fdopen
    monkeypatch.setattr(store_module.os, "fdopen", lambda *a, **k: _FullDisk(real(*a, **k)))
    with pytest.raises(CacheError, match=r"could not create the cache secret .*No space left on device.*free space"):
        store.save("toy", KEY, [1], {})
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name != "toy") == []  # no .secret, no .secret-*
    store.save("toy", KEY, [1], {})                                   # space again: it works
    assert store.load("toy", KEY) == [1]


FSIZE_SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    from nlp_pipeline.core.store import ArtifactStore
    from nlp_pipeline.core.errors import CacheError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # an over-limit write then fails with EFBIG, as a full disk does
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    try:
        ArtifactStore({cache!r}).save("toy", "k" * 64, np.arange(100_000), {{}})
    except CacheError as exc:
        print(exc)
        sys.exit(1)
    """
)


@pytest.mark.parametrize("limit, phrase", [(16, "could not create the cache secret"), (4096, "could not save the toy artifact")])
def test_file_size_limit_during_a_save_is_one_line_and_leaves_nothing(tmp_path, limit, phrase):
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-c", FSIZE_SCRIPT.format(limit=limit, cache=str(cache))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stdout.count("\n") == 1 and phrase in done.stdout and "Traceback" not in done.stderr
    leftovers = [p.name for p in cache.rglob("*") if p.name.startswith((".secret-", ".tmp-", ".probe-"))]
    assert leftovers == [] and not list(cache.rglob("meta.json"))


def test_stage_folder_that_is_a_file_fails_before_computing(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    store.ensure_writable()
    (tmp_path / "cache" / "toy").write_text("in the way")
    with pytest.raises(CacheError, match=r"cache folder .*toy is not a folder \(a file is in the way\)"):
        with store.lock("toy", KEY):
            pass
    with pytest.raises(CacheError, match="is not a folder"):
        store.save("toy", KEY, [1], {})
    log = tmp_path / "calls.log"
    (tmp_path / "cache" / "toy").unlink()
    (tmp_path / "cache" / "source").write_text("in the way")
    with pytest.raises(CacheError, match="source is not a folder"):
        execute(toy_stages.instances(str(log)), store, echo=lambda line: None)
    assert not log.exists()                                           # refused before the stage ran


def test_stage_folder_that_is_a_file_is_one_line_on_the_cli(corpus_dir, tmp_path):
    assert _lsa_run(corpus_dir, tmp_path).exit_code == 0
    lsa = tmp_path / "cache" / "lsa"
    import shutil

    shutil.rmtree(lsa)
    lsa.write_text("in the way")
    result = _invoke(["run", "--corpus", str(corpus_dir), "--runs-dir", str(tmp_path / "runs"), "--until", "lsa", *FAST,
                      "--set", "lsa.n_components=2"], tmp_path)
    assert result.exit_code == 1
    assert f"cache folder {lsa} is not a folder" in _one_line_error(result)


def _deny_writes_in(monkeypatch, folder: Path):
    """As on a folder without write permission (chmod does not stop root)."""
    real = os.open

    def fake(path, flags, *args, **kwargs):
        if Path(os.fsdecode(path)).parent == folder and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(store_module.os, "open", fake)


def test_stage_folder_not_writable_fails_before_computing(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path / "cache")
    (tmp_path / "cache" / "source").mkdir(parents=True)
    _deny_writes_in(monkeypatch, tmp_path / "cache" / "source")
    log = tmp_path / "calls.log"
    with pytest.raises(CacheError, match=r"cache folder .*source is not writable \(Permission denied\); fix its "
                                         r"permissions \(chmod u\+rwx"):
        execute(toy_stages.instances(str(log)), store, echo=lambda line: None)
    assert not log.exists()


@pytest.mark.skipif(ROOT_USER, reason="root writes into read-only folders; the monkeypatched test covers it")
def test_stage_folder_not_writable_for_real(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    (tmp_path / "cache" / "source").mkdir(parents=True)
    (tmp_path / "cache" / "source").chmod(0o555)
    try:
        with pytest.raises(CacheError, match="source is not writable"):
            execute(toy_stages.instances(str(tmp_path / "calls.log")), store, echo=lambda line: None)
    finally:
        (tmp_path / "cache" / "source").chmod(0o755)


def _gc(tmp_path, *extra):
    return _invoke(["cache", "gc", "--runs-dir", str(tmp_path / "runs"), *extra], tmp_path)


def test_gc_on_a_read_only_cache_is_one_line(corpus_dir, tmp_path, monkeypatch):
    assert _lsa_run(corpus_dir, tmp_path).exit_code == 0
    (tmp_path / "runs" / "other").mkdir()
    (tmp_path / "runs" / "other" / "keys.json").write_text("{}")
    (tmp_path / "runs" / "tiny" / "keys.json").write_text("{}")     # nothing referenced: gc would remove all
    real = os.rename

    def read_only(src, dst, *args, **kwargs):
        if str(tmp_path / "cache") in os.fsdecode(src):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(store_module.os, "rename", read_only)
    result = _gc(tmp_path)
    assert result.exit_code == 1
    assert "could not remove" in _one_line_error(result) and "Read-only file system" in result.stderr
    monkeypatch.undo()
    _deny_writes_in(monkeypatch, tmp_path / "cache")                 # the probe of the cache root
    result = _gc(tmp_path)
    assert result.exit_code == 1 and "is not writable" in _one_line_error(result)
    assert len(list((tmp_path / "cache").rglob("meta.json"))) == 4   # nothing removed


@pytest.mark.parametrize("content", ["{", "[]", '{"corpus": 3}', "\xff"])
def test_gc_with_a_malformed_keys_json_is_one_line_and_removes_nothing(corpus_dir, tmp_path, content):
    assert _lsa_run(corpus_dir, tmp_path).exit_code == 0
    bad = tmp_path / "runs" / "broken" / "keys.json"
    bad.parent.mkdir()
    bad.write_bytes(content.encode("latin-1"))
    result = _gc(tmp_path)
    assert result.exit_code == 1
    assert str(bad) in _one_line_error(result)
    assert len(list((tmp_path / "cache").rglob("meta.json"))) == 4


@pytest.mark.parametrize("content", ["[]", "3", '"text"', "{", ""])
def test_cache_ls_with_a_meta_json_that_is_not_an_object(corpus_dir, tmp_path, content):
    assert _lsa_run(corpus_dir, tmp_path).exit_code == 0
    meta = next((tmp_path / "cache" / "lsa").glob("*/meta.json"))
    meta.write_text(content)
    listed = _invoke(["cache", "ls"], tmp_path)
    assert listed.exit_code == 0 and "Traceback" not in listed.output
    assert "(meta.json unreadable)" in listed.stdout and listed.stdout.count("\n") == 5
    verified = _invoke(["cache", "verify"], tmp_path)
    assert verified.exit_code == 1 and "CORRUPT  lsa" in verified.stdout


# -- 9: gc without runs refuses ------------------------------------------------------------------------------------
def test_gc_without_runs_refuses_unless_told(corpus_dir, tmp_path):
    assert _lsa_run(corpus_dir, tmp_path).exit_code == 0
    missing = _invoke(["cache", "gc", "--runs-dir", str(tmp_path / "nowhere")], tmp_path)
    assert missing.exit_code == 2
    line = _one_line_error(missing)
    assert "does not exist" in line and "--allow-no-runs" in line
    (tmp_path / "empty-runs" / "not-a-run").mkdir(parents=True)
    empty = _invoke(["cache", "gc", "--runs-dir", str(tmp_path / "empty-runs")], tmp_path)
    assert empty.exit_code == 2 and "holds no run" in _one_line_error(empty)
    assert len(list((tmp_path / "cache").rglob("meta.json"))) == 4   # before the fix: all of them removed, exit 0
    dry = _invoke(["cache", "gc", "--runs-dir", str(tmp_path / "nowhere"), "--allow-no-runs", "--dry-run"], tmp_path)
    assert dry.exit_code == 0 and "4 artifacts to remove" in dry.stdout
    assert len(list((tmp_path / "cache").rglob("meta.json"))) == 4
    told = _invoke(["cache", "gc", "--runs-dir", str(tmp_path / "nowhere"), "--allow-no-runs"], tmp_path)
    assert told.exit_code == 0 and "4 artifacts removed" in told.stdout
    assert "--allow-no-runs" in _invoke(["cache", "gc", "--help"], tmp_path).stdout


# -- 10: leftovers of killed processes are cleaned, those of live ones kept ------------------------------------------
def test_leftovers_of_dead_processes_are_cleaned_and_live_ones_kept(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    _save(store, [1])
    stage_dir = tmp_path / "cache" / "toy"
    dead, alive = _dead_pid(), os.getpid()
    dead_tmp = stage_dir / f".tmp-{'a' * 16}-{dead}-0000abcd"
    fresh_live_tmp = stage_dir / f".tmp-{'b' * 16}-{alive}-0000abcd"     # between a save's mkdir and its flock
    held_tmp = stage_dir / f".tmp-{'c' * 16}-{dead}-0000abcd"            # a save in progress holds its flock
    for folder in (dead_tmp, fresh_live_tmp, held_tmp):
        folder.mkdir()
        (folder / "artifact.pkl").write_bytes(b"x" * 100)
    dead_secret = tmp_path / "cache" / f".secret-{dead}-0000abcd"
    live_secret = tmp_path / "cache" / f".secret-{alive}-0000abcd"
    old_live_secret = tmp_path / "cache" / f".secret-{alive}-0000beef"
    for path in (dead_secret, live_secret, old_live_secret):
        path.write_bytes(b"s" * 32)
    os.utime(old_live_secret, (time.time() - 2 * store_module.STALE_SECONDS,) * 2)
    fd = os.open(held_tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        assert store.clean_temporaries() == 3
    finally:
        os.close(fd)
    assert not dead_tmp.exists() and not dead_secret.exists() and not old_live_secret.exists()
    assert fresh_live_tmp.is_dir() and held_tmp.is_dir() and live_secret.exists()
    assert store.clean_temporaries() == 1                               # no longer held
    assert not held_tmp.exists()
    assert store.load("toy", KEY) == [1] and not any(p.name.startswith(".trash-") for p in stage_dir.iterdir())


SLOW_SAVE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nlp_pipeline.core.store import ArtifactStore

    class Slow:
        def __reduce__(self):
            Path({started!r}).write_text("saving")
            time.sleep(60)
            return (list, ())

    ArtifactStore({cache!r}).save("toy", "k" * 64, Slow(), {{}})
    """
)


def test_save_folder_of_a_killed_save_is_cleaned_but_not_while_it_runs(tmp_path):
    cache, started = tmp_path / "cache", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVE.format(cache=str(cache), started=str(started))])
    try:
        deadline = time.time() + 60
        while not started.exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        store = ArtifactStore(cache)
        temporaries = list((cache / "toy").glob(".tmp-*"))
        assert len(temporaries) == 1
        assert store.clean_temporaries() == 0 and temporaries[0].is_dir()   # a live save: kept
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert temporaries[0].is_dir()                                         # before the fix: never cleaned
    assert store.clean_temporaries() == 1
    assert list((cache / "toy").iterdir()) == []


def test_unused_lock_files_are_removed_held_ones_kept(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    for key in ("a" * 64, "b" * 64, "c" * 64):
        with store.lock("toy", key):
            pass
    with store.lock("toy", "b" * 64):
        assert store.clean_locks() == 2
        assert [p.name for p in (tmp_path / "cache" / ".locks").iterdir()] == [store._lock_path("toy", "b" * 64).name]
    assert store.clean_locks() == 1
    with store.lock("toy", "a" * 64):                                      # locks still work afterwards
        assert store._acquire("toy", "a" * 64, blocking=False) is None


def test_a_lock_file_removed_between_open_and_flock_is_not_trusted(tmp_path, monkeypatch):
    """clean_locks may unlink the file a process has just opened: that process must lock the new file, or two
    processes would both think they hold the lock."""
    store = ArtifactStore(tmp_path / "cache")
    path = store._lock_path("toy", KEY)
    real_flock = store_module.fcntl.flock
    calls = []

    def flock(fd, op):
        calls.append(fd)
        if len(calls) == 1:
            monkeypatch.setattr(store_module.fcntl, "flock", real_flock)
            assert store.clean_locks() == 1                            # takes and unlinks the file this fd opened
            monkeypatch.setattr(store_module.fcntl, "flock", flock)
        return real_flock(fd, op)

    with store.lock("toy", KEY):
        pass
    monkeypatch.setattr(store_module.fcntl, "flock", flock)
    fd = store._acquire("toy", KEY, blocking=True)
    monkeypatch.undo()
    try:
        assert len(calls) >= 2                                          # it noticed, and locked again
        assert os.fstat(fd).st_ino == os.stat(path).st_ino
        assert store._acquire("toy", KEY, blocking=False) is None       # really held
    finally:
        os.close(fd)


def test_gc_cleans_leftovers_and_says_so(corpus_dir, tmp_path):
    assert _lsa_run(corpus_dir, tmp_path).exit_code == 0
    cache = tmp_path / "cache"
    (cache / "lsa" / f".tmp-{'a' * 16}-{_dead_pid()}-0000abcd").mkdir()
    (cache / f".secret-{_dead_pid()}-0000abcd").write_bytes(b"x")
    result = _gc(tmp_path)
    assert result.exit_code == 0, result.output
    assert "0 artifacts removed, 2 temporary folders and files cleaned, 4 unused lock files removed" in result.stdout
    assert not any(p.name.startswith((".tmp-", ".secret-")) for p in cache.rglob(".*"))
    assert list((cache / ".locks").iterdir()) == []
    assert _lsa_run(corpus_dir, tmp_path).stderr.count("cache hit") == 4


# -- 11: a process waiting for another's lock says so -------------------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import toy_stages
    from nlp_pipeline.core.runner import execute
    from nlp_pipeline.core.store import ArtifactStore
    execute(toy_stages.instances({log!r}, sleep={sleep}), ArtifactStore({cache!r}), until="source", echo=print)
    """
)


def test_waiting_for_another_process_is_said_and_who_computed_it(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "calls.log"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(tests=str(TESTS), log=str(log), sleep=2.0,
                                                                    cache=str(cache))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = Path(str(log) + ".started")
        deadline = time.time() + 60
        while not started.exists():
            assert time.time() < deadline and holder.poll() is None
            time.sleep(0.05)
        lines = []
        store = ArtifactStore(cache)
        result = execute(toy_stages.instances(str(log)), store, echo=lines.append)
    finally:
        holder.wait(timeout=60)
    key = plan(toy_stages.instances(str(log)), store)[0].key
    assert any(line.startswith("source") and f"waiting for another process computing source {key[:12]}" in line
               for line in lines), lines
    assert any(line.startswith("source") and "computed by another process" in line for line in lines), lines
    assert [r.status for r in result.reports] == ["hit", "ran"]
    assert log.read_text().split() == ["source", "scale"]              # computed once


def test_no_waiting_line_when_the_lock_is_free(tmp_path):
    lines = []
    execute(toy_stages.instances(str(tmp_path / "calls.log")), ArtifactStore(tmp_path / "cache"), echo=lines.append)
    assert not any("waiting" in line or "another process" in line for line in lines)

