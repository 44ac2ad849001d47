"""core/executors.py on the toy stages: the local executor alone, and the collective one with two ranks simulated
by two threads sharing a fake coordinator (rank 0 decides, computes and saves; rank 1 follows and loads)."""

import dataclasses
import threading

import numpy as np
import pytest

import toy_stages
from nlp_pipeline.core.errors import CacheError
from nlp_pipeline.core.executors import CollectiveExecutor, LocalExecutor, for_processes
from nlp_pipeline.core.runner import execute, plan
from nlp_pipeline.core.store import ArtifactStore

HANG_GUARD_SECONDS = 300  # a protocol bug fails the test (broken barrier) instead of hanging it


class _Shared:
    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=HANG_GUARD_SECONDS)
        self.box = None
        self.agreed = 0  # how many values rank 0 agreed


class FakeCoordinator:
    """The Coordinator protocol between two threads: agree() hands rank 0's value to both, barrier() waits."""

    world_size = 2

    def __init__(self, rank: int, shared: _Shared):
        self.rank, self.shared = rank, shared

    def agree(self, value):
        if self.rank == 0:
            self.shared.box = value
            self.shared.agreed += 1
        self.shared.barrier.wait()
        agreed = self.shared.box
        self.shared.barrier.wait()  # nobody overwrites the box before both have read it
        return agreed

    def barrier(self):
        self.shared.barrier.wait()


def _two_ranks(run_rank):
    """run_rank(rank, coordinator) on two threads at once; ([result of 0, of 1], [error of 0, of 1])."""
    shared, results, errors = _Shared(), [None, None], [None, None]

    def target(rank):
        try:
            results[rank] = run_rank(rank, FakeCoordinator(rank, shared))
        except BaseException as exc:  # noqa: BLE001 - handed to the test; the other rank must not wait forever
            errors[rank] = exc
            shared.barrier.abort()

    threads = [threading.Thread(target=target, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def _calls(path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _collective_scale(instances):
    """The toy pipeline with `scale` marked collective (data-parallel): every rank runs it, rank 0 saves."""
    source, scale = instances
    return [source, dataclasses.replace(scale, stage=dataclasses.replace(scale.stage, collective=True))]


def test_for_processes_picks_the_executor_of_the_process_mode():
    assert isinstance(for_processes(None), LocalExecutor)
    leader, follower = for_processes(FakeCoordinator(0, _Shared())), for_processes(FakeCoordinator(1, _Shared()))
    assert isinstance(leader, CollectiveExecutor) and leader.decides and not follower.decides


def test_local_executor_checks_forgets_and_computes_in_this_process(tmp_path):
    store, executor = ArtifactStore(tmp_path / "cache"), LocalExecutor()
    assert executor.check(store, "toy", "k" * 64, load=True, only_if_saved=True).saved is False
    assert executor.check(store, "toy", "k" * 64, load=False).problem  # a planned hit that is gone is refused
    store.save("toy", "k" * 64, [1, 2], {"summary": {"n": 2}})
    check = executor.check(store, "toy", "k" * 64, load=True)
    assert check.usable and check.artifact == [1, 2] and check.summary == {"n": 2}
    assert executor.compute(False, lead=lambda: "led", share=lambda: pytest.fail("no share in one process")) == "led"
    assert executor.save(lambda: {"n": 2}) == {"n": 2}
    assert executor.published(store, "toy", "k" * 64, "led", {"n": 2}) == ("led", {"n": 2})
    executor.forget(store, "toy", "k" * 64)
    assert not store.exists("toy", "k" * 64)


def test_local_executor_runs_the_toy_pipeline_once_then_hits(tmp_path):
    store, log, lines = ArtifactStore(tmp_path / "cache"), tmp_path / "calls.log", []
    first = execute(toy_stages.instances(str(log)), store, keep=["scale"], echo=lines.append)
    assert [r.status for r in first.reports] == ["ran", "ran"] and _calls(log) == ["source", "scale"]
    assert [line.split()[:2] for line in lines] == [["source", "running"], ["source", "done"],
                                                    ["scale", "running"], ["scale", "done"]]
    second = execute(toy_stages.instances(str(log)), store, keep=["scale"], echo=lines.append)
    assert [r.status for r in second.reports] == ["hit", "hit"] and _calls(log) == ["source", "scale"]
    np.testing.assert_array_equal(second.artifacts["scale"], np.arange(50_000) * 2)


def test_collective_rank_0_computes_once_and_rank_1_loads_what_it_saved(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    logs = [tmp_path / "rank0.log", tmp_path / "rank1.log"]
    echoed: list[list[str]] = [[], []]

    def run_rank(rank, coordinator):
        return execute(toy_stages.instances(str(logs[rank])), store, keep=["scale"], echo=echoed[rank].append,
                       coordinator=coordinator)

    (leader, follower), errors = _two_ranks(run_rank)
    assert errors == [None, None]
    assert _calls(logs[0]) == ["source", "scale"] and _calls(logs[1]) == []   # rank 1 never computes
    assert echoed[1] == [] and any("running" in line for line in echoed[0])  # only rank 0 logs
    assert [r.status for r in leader.reports] == [r.status for r in follower.reports] == ["ran", "ran"]
    assert isinstance(follower.artifacts["scale"], np.memmap)                 # loaded from the store, not computed
    np.testing.assert_array_equal(follower.artifacts["scale"], leader.artifacts["scale"])
    keys = [e.key for e in plan(toy_stages.instances(str(logs[0])), store)]
    assert [r.key for r in follower.reports] == keys
    assert store.exists("source", keys[0]) and store.exists("scale", keys[1])

    (again, _), errors = _two_ranks(run_rank)  # a second run: hits everywhere, nothing computed
    assert errors == [None, None] and [r.status for r in again.reports] == ["hit", "hit"]
    assert _calls(logs[0]) == ["source", "scale"] and _calls(logs[1]) == []


def test_collective_stage_runs_on_every_rank_and_rank_1_keeps_rank_0s_result(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    logs = [tmp_path / "rank0.log", tmp_path / "rank1.log"]

    def run_rank(rank, coordinator):
        return execute(_collective_scale(toy_stages.instances(str(logs[rank]))), store, keep=["scale"],
                       echo=lambda line: None, coordinator=coordinator)

    (leader, follower), errors = _two_ranks(run_rank)
    assert errors == [None, None]
    assert _calls(logs[0]) == ["source", "scale"] and _calls(logs[1]) == ["scale"]  # its share of the training
    assert isinstance(follower.artifacts["scale"], np.memmap)                       # what rank 0 saved
    np.testing.assert_array_equal(follower.artifacts["scale"], np.arange(50_000) * 2)
    assert len(list((store.root / "scale").iterdir())) == 1                         # saved once


def test_collective_refusal_is_decided_by_rank_0_and_followed_by_rank_1(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    logs = [tmp_path / "rank0.log", tmp_path / "rank1.log"]
    execute(toy_stages.instances(str(logs[0])), store, echo=lambda line: None)
    source_key = plan(toy_stages.instances(str(logs[0])), store)[0].key
    (store.folder("source", source_key) / "array_0000.npy").write_bytes(b"corrupted")
    echoed: list[str] = []

    def run_rank(rank, coordinator):
        return execute(toy_stages.instances(str(logs[rank])), store, keep=["source"],
                       echo=echoed.append, coordinator=coordinator)

    (leader, follower), errors = _two_ranks(run_rank)
    assert errors == [None, None]
    assert sum("cached artifact refused" in line for line in echoed) == 1          # said once, by rank 0
    assert [r.status for r in leader.reports] == [r.status for r in follower.reports] == ["recomputed", "hit"]
    assert _calls(logs[0]) == ["source", "scale", "source"] and _calls(logs[1]) == []
    np.testing.assert_array_equal(follower.artifacts["source"], np.arange(50_000))


def test_a_follower_that_cannot_read_rank_0s_cache_gets_one_line(tmp_path):
    stores = [ArtifactStore(tmp_path / "shared"), ArtifactStore(tmp_path / "not-shared")]
    log = tmp_path / "calls.log"

    def run_rank(rank, coordinator):
        return execute(toy_stages.instances(str(log)), stores[rank], until="source", echo=lambda line: None,
                       coordinator=coordinator)

    _, (_, error) = _two_ranks(run_rank)
    assert isinstance(error, CacheError)
    assert "process 1 cannot read the source artifact" in str(error) and "one they all share" in str(error)
    assert "\n" not in str(error)
