"""Executors: how the processes of one run share the work on one stage instance, one executor per process mode.
core.runner.produce() says what the steps are (verify, lock, compute or load, save); an executor says what this
process does at each step.

    executor = for_processes(coordinator)    # None: LocalExecutor(); a torchrun Coordinator: CollectiveExecutor
    executor.decides                         # True where hits, refusals and computes are decided, logged and saved
    executor.agree(value)                    -> the deciding process's value, on every process (all must call it)
    executor.check(store, stage, key, load, only_if_saved=False)
                                             -> Check: is the cached artifact usable (loaded when `load`)
    executor.forget(store, stage, key)       removes a refused artifact (only where the store is written)
    executor.lock(store, stage, key, on_wait) -> context held while the key is computed (concurrent runs wait)
    executor.compute(collective, lead, share) -> lead()'s artifact; None where this process only takes part
    executor.save(save)                      -> save()'s summary; None where another process writes
    executor.published(store, stage, key, artifact, summary) -> (artifact, summary) once saved, on every process

Local (no coordinator): this process does everything, under the store's per-key lock.
Collective (under torchrun, given a Coordinator): every process walks the same plan and calls the same methods in
the same order. Rank 0 checks the cache, takes the key's lock, computes, saves and logs, and agree()s each verdict
to the others. A `collective` stage (data-parallel training) runs `share` on the other ranks while rank 0 runs
`lead`; any other stage runs on rank 0 alone. The other ranks never write the store: they wait for rank 0's key
lock (no timeout), then a barrier, and load what it saved.
Takes: an ArtifactStore, stage names and keys, and the runner's callables. Returns artifacts and the summaries
their signed meta.json records. Limits: knows no stage and imports no torch (the coordinator carries the process
group); a follower that cannot read what rank 0 saved is a one-line CacheError (several machines need one shared
cache folder).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Protocol

from nlp_pipeline.core.errors import CacheError
from nlp_pipeline.core.store import ArtifactStore, CorruptArtifact


class Coordinator(Protocol):
    """The processes of one multi-process run, as the executors need them (models.distributed provides one)."""

    rank: int                    # 0 decides, saves and logs
    world_size: int

    def agree(self, value: Any) -> Any: ...   # rank 0's value, returned on every process (all must call it)

    def barrier(self) -> None: ...            # returns once every process has called it


@dataclass
class Check:
    """The verdict on one cached artifact."""

    saved: bool = True           # an artifact with this key is in the store (only_if_saved may find none)
    problem: str | None = None   # why it is refused (signature or sha256 fails), None when usable
    artifact: Any = None         # the verified artifact, when the check was asked to load it
    summary: dict = field(default_factory=dict)  # the summary its signed meta.json records

    @property
    def usable(self) -> bool:
        return self.saved and self.problem is None


def _look(store: ArtifactStore, stage: str, key: str, load: bool, only_if_saved: bool = False) -> Check:
    """Check the artifact in this process: its signed meta.json, and every file's sha256 too when `load` (which
    returns it loaded). `only_if_saved`: an absent artifact is Check(saved=False), not a problem."""
    if only_if_saved and not store.exists(stage, key):
        return Check(saved=False)
    try:
        artifact = store.load(stage, key) if load else None
        summary = store.read_signed_meta(stage, key).get("summary", {}) or {}
    except CorruptArtifact as exc:
        return Check(problem=str(exc))
    return Check(artifact=artifact, summary=summary)


class Executor(Protocol):
    decides: bool

    def agree(self, value: Any) -> Any: ...

    def check(self, store: ArtifactStore, stage: str, key: str, load: bool, only_if_saved: bool = False) -> Check: ...

    def forget(self, store: ArtifactStore, stage: str, key: str) -> None: ...

    def lock(self, store: ArtifactStore, stage: str, key: str, on_wait: Callable[[], None]) -> ContextManager[None]: ...

    def compute(self, collective: bool, lead: Callable[[], Any], share: Callable[[], None]) -> Any: ...

    def save(self, save: Callable[[], dict]) -> dict | None: ...

    def published(self, store: ArtifactStore, stage: str, key: str, artifact: Any,
                  summary: dict | None) -> tuple[Any, dict]: ...


class LocalExecutor:
    """This process decides, computes, saves and logs everything."""

    decides = True

    def agree(self, value: Any) -> Any:
        return value

    def check(self, store: ArtifactStore, stage: str, key: str, load: bool, only_if_saved: bool = False) -> Check:
        return _look(store, stage, key, load, only_if_saved)

    def forget(self, store: ArtifactStore, stage: str, key: str) -> None:
        store.remove(stage, key)

    def lock(self, store: ArtifactStore, stage: str, key: str, on_wait: Callable[[], None]) -> ContextManager[None]:
        return store.lock(stage, key, on_wait=on_wait)

    def compute(self, collective: bool, lead: Callable[[], Any], share: Callable[[], None]) -> Any:
        return lead()

    def save(self, save: Callable[[], dict]) -> dict | None:
        return save()

    def published(self, store: ArtifactStore, stage: str, key: str, artifact: Any,
                  summary: dict | None) -> tuple[Any, dict]:
        return artifact, summary or {}


class CollectiveExecutor:
    """One of several processes under torchrun: rank 0 leads as LocalExecutor does and tells the others; they run
    their share of collective stages and load what rank 0 saved."""

    def __init__(self, coordinator: Coordinator):
        self.coordinator = coordinator
        self.decides = coordinator.rank == 0

    def agree(self, value: Any) -> Any:
        return self.coordinator.agree(value)

    def check(self, store: ArtifactStore, stage: str, key: str, load: bool, only_if_saved: bool = False) -> Check:
        if self.decides:
            verdict = _look(store, stage, key, load, only_if_saved)
            self.coordinator.agree((verdict.saved, verdict.problem))
            return verdict
        saved, problem = self.coordinator.agree(None)
        if not saved or problem is not None:
            return Check(saved=saved, problem=problem)
        return Check(artifact=self._load(store, stage, key) if load else None, summary=_summary_of(store, stage, key))

    def forget(self, store: ArtifactStore, stage: str, key: str) -> None:
        if self.decides:
            store.remove(stage, key)

    def lock(self, store: ArtifactStore, stage: str, key: str, on_wait: Callable[[], None]) -> ContextManager[None]:
        return store.lock(stage, key, on_wait=on_wait) if self.decides else contextlib.nullcontext()

    def compute(self, collective: bool, lead: Callable[[], Any], share: Callable[[], None]) -> Any:
        if self.decides:
            return lead()
        if collective:  # this process's share of the training; rank 0 saves the result
            share()
        return None

    def save(self, save: Callable[[], dict]) -> dict | None:
        return save() if self.decides else None

    def published(self, store: ArtifactStore, stage: str, key: str, artifact: Any,
                  summary: dict | None) -> tuple[Any, dict]:
        """Called after the key's lock is released: rank 0 lets the others go; they load what it saved."""
        if self.decides:
            self.coordinator.barrier()
            return artifact, summary or {}
        with store.lock(stage, key):  # rank 0 holds it until saved: a wait without the barrier's timeout
            pass
        self.coordinator.barrier()
        return self._load(store, stage, key), _summary_of(store, stage, key)

    def _load(self, store: ArtifactStore, stage: str, key: str) -> Any:
        """The artifact that rank 0 saved or verified."""
        try:
            return store.load(stage, key)
        except CorruptArtifact as exc:
            raise CacheError(
                f"process {self.coordinator.rank} cannot read the {stage} artifact {key[:12]} that process 0 saved "
                f"({exc}); with several machines, the cache folder must be one they all share"
            ) from None


def for_processes(coordinator: Coordinator | None) -> LocalExecutor | CollectiveExecutor:
    """The executor of this process: local without a coordinator, collective with one."""
    return LocalExecutor() if coordinator is None else CollectiveExecutor(coordinator)


def _summary_of(store: ArtifactStore, stage: str, key: str) -> dict:
    """The summary an artifact's signed meta.json records (empty if the signature does not check out)."""
    try:
        return store.read_signed_meta(stage, key).get("summary", {}) or {}
    except CorruptArtifact:
        return {}
