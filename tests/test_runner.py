import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import toy_stages
from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.core.runner import execute, plan
from nlp_pipeline.core.store import ArtifactStore

TESTS = Path(__file__).parent


def _calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _run(store, log, **kwargs):
    until = kwargs.pop("until", None)
    force = kwargs.pop("force", ())
    return execute(toy_stages.instances(str(log), **kwargs), store, until=until, force=force, keep=["scale"], echo=lambda s: None)


def test_second_run_is_all_hits_and_loads_nothing_upstream(tmp_path):
    store, log = ArtifactStore(tmp_path / "cache"), tmp_path / "calls.log"
    first = _run(store, log)
    np.testing.assert_array_equal(first.artifacts["scale"], np.arange(50_000) * 2)
    assert _calls(log) == ["source", "scale"]
    second = execute(toy_stages.instances(str(log)), store, echo=lambda s: None)
    assert [r.status for r in second.reports] == ["hit", "hit"]
    assert second.artifacts == {}          # a hit nobody needs is never unpickled
    assert _calls(log) == ["source", "scale"]


def test_downstream_config_change_reruns_only_downstream(tmp_path):
    store, log = ArtifactStore(tmp_path / "cache"), tmp_path / "calls.log"
    _run(store, log)
    result = _run(store, log, factor=3)
    assert _calls(log) == ["source", "scale", "scale"]
    assert [r.status for r in result.reports] == ["hit", "ran"]
    np.testing.assert_array_equal(result.artifacts["scale"], np.arange(50_000) * 3)


def test_upstream_change_and_version_bump_rerun_dependents(tmp_path):
    store, log = ArtifactStore(tmp_path / "cache"), tmp_path / "calls.log"
    base = plan(toy_stages.instances(str(log)), store)
    bumped = plan(toy_stages.instances(str(log), source_version=2), store)
    assert base[0].key != bumped[0].key and base[1].key != bumped[1].key
    scale_bumped = plan(toy_stages.instances(str(log), scale_version=2), store)
    assert base[0].key == scale_bumped[0].key and base[1].key != scale_bumped[1].key
    _run(store, log)
    _run(store, log, source_version=2)
    assert _calls(log) == ["source", "scale", "source", "scale"]


def test_volatile_fields_do_not_change_keys(tmp_path):
    store = ArtifactStore(tmp_path)
    a = plan(toy_stages.instances("one.log", sleep=0.0), store)
    b = plan(toy_stages.instances("two.log", sleep=1.0), store)
    assert [e.key for e in a] == [e.key for e in b]


def test_until_and_force(tmp_path):
    store, log = ArtifactStore(tmp_path / "cache"), tmp_path / "calls.log"
    result = _run(store, log, until="source")
    assert [r.id for r in result.reports] == ["source"] and _calls(log) == ["source"]
    _run(store, log, force=["source"])
    assert _calls(log) == ["source", "source", "scale"]
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        _run(store, log, until="nope")
    with pytest.raises(ConfigError, match="--force 'nope'"):
        _run(store, log, force=["nope"])


def test_corrupted_cached_file_is_detected_and_recomputed(tmp_path):
    store, log = ArtifactStore(tmp_path / "cache"), tmp_path / "calls.log"
    first = _run(store, log)
    key = first.reports[0].key
    npy = next(store.folder("source", key).glob("*.npy"))
    data = bytearray(npy.read_bytes())
    data[-8:] = b"\xff" * 8                     # flip the last number
    npy.write_bytes(bytes(data))
    lines = []
    result = execute(toy_stages.instances(str(log), factor=5), store, keep=["scale"], echo=lines.append)
    assert any("cached artifact refused" in line and "sha256" in line for line in lines)
    assert [r.status for r in result.reports] == ["recomputed", "ran"]
    np.testing.assert_array_equal(result.artifacts["scale"], np.arange(50_000) * 5)
    store.verify("source", key)               # the recomputed artifact checks out


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import toy_stages
    from nlp_pipeline.core.runner import execute
    from nlp_pipeline.core.store import ArtifactStore
    execute(toy_stages.instances({log!r}, sleep={sleep}), ArtifactStore({cache!r}), echo=print)
    """
)


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def test_sigkill_during_a_stage_then_next_run_completes(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "calls.log"
    script = KILL_SCRIPT.format(tests=str(TESTS), log=str(log), sleep=30.0, cache=str(cache))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(Path(str(log) + ".started"))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = ArtifactStore(cache)
    assert list(store.entries()) == []          # nothing half-written counts as an artifact
    result = _run(store, log)                   # sleep is volatile: same keys, runs to the end
    assert [r.status for r in result.reports] == ["ran", "ran"]
    np.testing.assert_array_equal(result.artifacts["scale"], np.arange(50_000) * 2)


def test_sigkill_in_the_middle_of_a_save_leaves_no_artifact(tmp_path):
    """The process dies after writing the .npy but before meta.json: the temp folder must not count."""
    cache, log = tmp_path / "cache", tmp_path / "calls.log"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        import numpy as np
        import toy_stages
        from nlp_pipeline.core import store as store_module
        real_save = np.save
        def dying_save(*args, **kwargs):
            real_save(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        store_module.np.save = dying_save
        from nlp_pipeline.core.runner import execute
        execute(toy_stages.instances({str(log)!r}), store_module.ArtifactStore({str(cache)!r}), echo=print)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    store = ArtifactStore(cache)
    assert list(store.entries()) == []
    assert any(p.name.startswith(".tmp-") for p in (cache / "source").iterdir())
    result = _run(store, log)
    assert [r.status for r in result.reports] == ["ran", "ran"]
    assert store.clean_temporaries() == 1
