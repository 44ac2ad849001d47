"""Plan and execute a list of stage instances against the artifact store.

    instances = [Instance("corpus", CORPUS, corpus_cfg, {}), Instance("tokenization", TOKENIZATION, tok_cfg,
                 {"corpus": "corpus"}), ...]            # in data-flow order
    plan(instances, store)     -> [PlanEntry(instance, key, hit)]   computes keys from config only, loads nothing
    execute(instances, store)  -> RunResult                          loads hits only where a miss needs them

A miss runs under a per-key lock (concurrent runs compute it once), seeded from the config's `seed` field,
inside a checkpoint scope of its key (core/checkpoints.py: a long stage resumes where an interrupted run
stopped; --force starts over), and is saved atomically with its meta.json. A hit is reported only once verified:
its signed meta.json is checked (the files' sha256 too when it is loaded); an artifact that fails either check is
logged as refused, removed and recomputed. Logs one line when a stage starts running or is a verified cache hit,
one when it finishes, one when it waits for another process's lock on the same key and one when that process
computed it; `quiet_hits` mutes only the cache-hit lines (refusals and recomputes always print).

Several processes (torchrun) pass a `coordinator`: every process walks the same plan, and rank 0 takes every
decision (hit, corrupt, computed meanwhile) and `agree()`s it to the others, so all take the same path.
A `collective` stage (data-parallel training) runs on every process; any other stage runs on rank 0 alone.
Only rank 0 saves and logs; the others wait (for its key lock, then a barrier) and load what it saved.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from nlp_pipeline.core import checkpoints
from nlp_pipeline.core.errors import CacheError, ConfigError, NlpPipelineError
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.core.store import ArtifactStore, CorruptArtifact

log = logging.getLogger("nlp_pipeline")
_computing: contextvars.ContextVar[str | None] = contextvars.ContextVar("nlp_pipeline_computing", default=None)


def computing() -> str | None:
    """The id of the stage instance this process is computing now ("finetune_lm:backward"), None outside one:
    lets an observer of the training loops (models.observers.observe) tell which instance trains."""
    return _computing.get()


@dataclass(frozen=True)
class Instance:
    """One application of a stage: an id unique in the pipeline, the stage, its config, and its wiring."""

    id: str                      # e.g. "tokenization" or "tokenization:general"
    stage: Stage
    config: Any                  # a frozen dataclass of stage.config's type
    inputs: dict[str, str]       # run() keyword -> id of the instance that produces it
    context: str = ""            # put before its errors' one-line messages, e.g. "pretrain_lm.corpus = 'x'"

    def key(self, upstream: dict[str, str]) -> str:
        """stage.key on this config (a path source's fingerprint reads its files here)."""
        return self._named(self.stage.key, self.config, upstream)

    def run(self, **inputs: Any) -> Any:
        """stage.run on this config."""
        return self._named(self.stage.run, self.config, **inputs)

    def _named(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """call(); a user error's one-line message gets `context` in front, so it names the setting to change."""
        try:
            return call(*args, **kwargs)
        except NlpPipelineError as exc:
            if not self.context:
                raise
            raise type(exc)(f"{self.context}: {exc}") from None


class Coordinator(Protocol):
    """The processes of one multi-process run, as the runner needs them (models.distributed provides one)."""

    rank: int                    # 0 decides, saves and logs
    world_size: int

    def agree(self, value: Any) -> Any: ...   # rank 0's value, returned on every process (all must call it)

    def barrier(self) -> None: ...            # returns once every process has called it


@dataclass
class PlanEntry:
    instance: Instance
    key: str
    hit: bool                    # a complete artifact with this key exists (not yet verified)
    upstream: dict[str, str] = field(default_factory=dict)  # input name -> upstream key


@dataclass
class StageReport:
    id: str
    stage: str
    key: str
    status: str                  # "hit" | "ran" | "recomputed" (was corrupt)
    seconds: float               # time to run (0 for hits)
    summary: dict = field(default_factory=dict)


@dataclass
class RunResult:
    reports: list[StageReport]
    artifacts: dict[str, Any]    # instance id -> artifact, for what was loaded or computed

    def keys(self) -> dict[str, str]:
        return {r.id: r.key for r in self.reports}


def plan(instances: list[Instance], store: ArtifactStore) -> list[PlanEntry]:
    """Keys and hit/miss for every instance, in order; upstream ids must come before their dependents."""
    keys: dict[str, str] = {}
    entries = []
    for inst in instances:
        missing = [src for src in inst.inputs.values() if src not in keys]
        if missing:
            raise ConfigError(f"instance {inst.id} needs {missing[0]}, which is not planned before it")
        upstream = {name: keys[src] for name, src in inst.inputs.items()}
        key = inst.key(upstream)
        keys[inst.id] = key
        entries.append(PlanEntry(inst, key, store.exists(inst.stage.name, key), upstream))
    return entries


def select(entries: list[PlanEntry], until: str | None) -> list[PlanEntry]:
    """The entries needed to produce `until` (a stage name or instance id) and everything before it; all if None."""
    if until is None:
        return entries
    by_id = {e.instance.id: e for e in entries}
    targets = [e.instance.id for e in entries if until in (e.instance.id, e.instance.stage.name)]
    if not targets:
        names = sorted({e.instance.stage.name for e in entries} | set(by_id))
        raise ConfigError(f"unknown stage {until!r}; stages in this pipeline: {', '.join(names)}")
    needed: set[str] = set()
    stack = list(targets)
    while stack:
        current = stack.pop()
        if current not in needed:
            needed.add(current)
            stack.extend(by_id[current].instance.inputs.values())
    return [e for e in entries if e.instance.id in needed]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape artifacts, for meta.json (only those already imported)."""
    from nlp_pipeline import __version__

    out = {"python": platform.python_version(), "nlp_pipeline": __version__, "numpy": np.__version__}
    for name in ("torch", "spacy", "gensim", "sklearn", "scipy", "datasets"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            out[name] = str(module.__version__)
    return out


def _describe(inst: Instance) -> str:
    return inst.stage.describe(inst.config) if inst.stage.describe else ""


def execute(
    instances: list[Instance],
    store: ArtifactStore,
    until: str | None = None,
    force: Iterable[str] = (),
    keep: Iterable[str] = (),
    echo: Callable[[str], None] | None = None,
    coordinator: Coordinator | None = None,
    quiet_hits: bool = False,
) -> RunResult:
    """Run what is missing; `force` (stage names or ids) recomputes even on a hit; `keep` ids are loaded into
    RunResult.artifacts even when they are hits. Returns one StageReport per selected instance.
    `quiet_hits`: do not echo verified cache hits (every other line still prints).
    With a `coordinator` (several processes), every process must call execute() with the same arguments."""
    echo = echo or log.info
    main = coordinator is None or coordinator.rank == 0
    if not main:
        echo = _silent
    echo_hit = _silent if quiet_hits else echo
    entries = select(plan(instances, store), until)
    if coordinator is not None:  # rank 0's view of the cache, so that every process takes the same path
        for entry, hit in zip(entries, coordinator.agree([e.hit for e in entries])):
            entry.hit = hit
    known = {e.instance.id for e in entries} | {e.instance.stage.name for e in entries}
    force = set(force)
    unknown = sorted(force - known)
    if unknown:
        raise ConfigError(f"--force {unknown[0]!r} is not a stage of this run; stages: {', '.join(sorted(known))}")
    store.ensure_writable()
    by_id = {e.instance.id: e for e in entries}
    forced = {e.instance.id for e in entries if e.instance.id in force or e.instance.stage.name in force}
    for name in sorted({e.instance.stage.name for e in entries if not e.hit or e.instance.id in forced}):
        store.ensure_writable(name)  # a stage folder that is a file or not writable: one line before anything runs
    artifacts: dict[str, Any] = {}
    reports: dict[str, StageReport] = {}
    width = max(len(e.instance.id) for e in entries) if entries else 10

    def refuse(entry: PlanEntry, problem: str) -> None:
        """A cached artifact failed its check: say so (always), forget it, and let it be recomputed."""
        inst = entry.instance
        echo(f"{inst.id:<{width}}  cached artifact refused ({problem}); recomputing  {entry.key[:12]}")
        if main:
            store.remove(inst.stage.name, entry.key)
        entry.hit = False
        refused.add(inst.id)

    def locked(entry: PlanEntry):
        """The key's lock; says so when another process holds it (the wait may be long)."""
        inst = entry.instance
        return store.lock(inst.stage.name, entry.key, on_wait=lambda: echo(
            f"{inst.id:<{width}}  waiting for another process computing {inst.stage.name} {entry.key[:12]}..."))

    def computed_meanwhile(entry: PlanEntry) -> tuple[Any, dict] | None:
        """Under the key's lock: the artifact another process saved after this one planned (loaded and verified,
        with its signed summary), or None (a refused one is removed and reported)."""
        inst = entry.instance
        if not store.exists(inst.stage.name, entry.key):
            return None
        try:
            artifact = store.load(inst.stage.name, entry.key)
            summary = store.read_signed_meta(inst.stage.name, entry.key).get("summary", {}) or {}
        except CorruptArtifact as exc:
            refuse(entry, str(exc))
            return None
        if (inst.stage.name, entry.key) in saved_here:  # another instance of this run with the same key
            echo_hit(f"{inst.id:<{width}}  cache hit  {entry.key[:12]}")
        else:
            echo(f"{inst.id:<{width}}  computed by another process  {entry.key[:12]}")
        return artifact, summary

    def run_one(entry: PlanEntry, status: str) -> Any:
        if coordinator is not None:
            return run_one_shared(entry, status)
        inst = entry.instance
        with locked(entry):
            if status == "ran" and inst.id not in forced:
                found = computed_meanwhile(entry)
                if found is not None:
                    reports[inst.id] = StageReport(inst.id, inst.stage.name, entry.key, "hit", 0.0, found[1])
                    return found[0]
                if inst.id in refused:
                    status = "recomputed"
            return compute(entry, status)

    def compute(entry: PlanEntry, status: str) -> Any:
        """Materialize the inputs, run the stage, save it (the caller holds the key's lock)."""
        inst = entry.instance
        inputs = {name: materialize(src) for name, src in inst.inputs.items()}
        detail = _describe(inst)
        echo(f"{inst.id:<{width}}  running{f' ({detail})' if detail else ''}  {entry.key[:12]}")
        seed = getattr(inst.config, "seed", None)
        if isinstance(seed, int):
            seed_everything(seed)
        started = time.time()
        checkpoint = store.checkpoint_folder(inst.stage.name, entry.key)
        if inst.id in forced:  # --force: start over, not from where an earlier attempt stopped
            checkpoints.discard(checkpoint)
        token = _computing.set(inst.id)
        try:
            with checkpoints.scope(checkpoint):
                artifact = inst.run(**inputs)
        finally:
            _computing.reset(token)
        seconds = time.time() - started
        summary = inst.stage.summary(artifact) if inst.stage.summary else {}
        meta = {
            "instance": inst.id,
            "version": inst.stage.version,
            "config": dataclasses.asdict(inst.config),
            "upstream": entry.upstream,
            "seconds": round(seconds, 3),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "packages": package_versions(),
            "summary": summary,
        }
        store.save(inst.stage.name, entry.key, artifact, meta)
        saved_here.add((inst.stage.name, entry.key))
        checkpoints.discard(checkpoint)
        echo(f"{inst.id:<{width}}  done in {seconds:.1f}s")
        reports[inst.id] = StageReport(inst.id, inst.stage.name, entry.key, status, seconds, summary)
        return artifact

    def run_one_shared(entry: PlanEntry, status: str) -> Any:
        """run_one with several processes: rank 0 decides and saves; a collective stage runs everywhere."""
        inst = entry.instance
        name, key = inst.stage.name, entry.key
        if main:
            with locked(entry):
                found = None
                if status == "ran" and inst.id not in forced:  # another run computed it while we waited for the lock
                    found = computed_meanwhile(entry)
                    if found is None and inst.id in refused:
                        status = "recomputed"
                if coordinator.agree(found is not None):
                    reports[inst.id] = StageReport(inst.id, name, key, "hit", 0.0, found[1])
                    return found[0]
                artifact = compute(entry, status)
            coordinator.barrier()  # saved: the other processes may load it
            return artifact
        if coordinator.agree(None):
            reports[inst.id] = StageReport(inst.id, name, key, "hit", 0.0, _summary_of(entry, store))
            return load_shared(entry)
        started = time.time()
        inputs = {input_name: materialize(src) for input_name, src in inst.inputs.items()}  # in rank 0's order
        if inst.stage.collective:  # this process's share of the training; rank 0 saves the result
            seed = getattr(inst.config, "seed", None)
            if isinstance(seed, int):
                seed_everything(seed)
            with checkpoints.scope(store.checkpoint_folder(name, key)):  # resumes as rank 0 does; never saves
                inst.run(**inputs)
        with store.lock(name, key):  # rank 0 holds it until saved: a wait without the barrier's timeout
            pass
        coordinator.barrier()
        artifact = load_shared(entry)
        reports[inst.id] = StageReport(inst.id, name, key, status, time.time() - started, _summary_of(entry, store))
        return artifact

    def load_shared(entry: PlanEntry) -> Any:
        """On a process other than rank 0: the artifact that rank 0 saved or verified."""
        try:
            return store.load(entry.instance.stage.name, entry.key)
        except CorruptArtifact as exc:
            raise CacheError(
                f"process {coordinator.rank} cannot read the {entry.instance.stage.name} artifact {entry.key[:12]} "
                f"that process 0 saved ({exc}); with several machines, the cache folder must be one they all share"
            ) from None

    def materialize(instance_id: str) -> Any:
        if instance_id in artifacts:
            return artifacts[instance_id]
        entry = by_id[instance_id]
        inst = entry.instance
        status = "recomputed" if instance_id in refused else "ran"
        if entry.hit and instance_id not in forced:
            problem = None
            try:
                if main:
                    artifacts[instance_id] = store.load(inst.stage.name, entry.key)
            except CorruptArtifact as exc:
                problem = str(exc)
            if coordinator is not None:
                problem = coordinator.agree(problem)
                if problem is None and not main:
                    artifacts[instance_id] = load_shared(entry)
            if problem is None:
                return artifacts[instance_id]
            refuse(entry, problem)
            status = "recomputed"
        artifacts[instance_id] = run_one(entry, status)
        return artifacts[instance_id]

    def signed_summary(entry: PlanEntry) -> dict | None:
        """A hit that is not loaded, verified by its signed meta.json: its summary; None (reported and removed)
        if the check fails. Every process takes rank 0's answer."""
        problem, summary = None, {}
        if main:
            try:
                summary = store.read_signed_meta(entry.instance.stage.name, entry.key).get("summary", {}) or {}
            except CorruptArtifact as exc:
                problem = str(exc)
        if coordinator is not None:
            problem = coordinator.agree(problem)
            if problem is None and not main:
                summary = _summary_of(entry, store)
        if problem is not None:
            refuse(entry, problem)
            return None
        return summary

    refused: set[str] = set()
    saved_here: set[tuple[str, str]] = set()
    keep = set(keep)
    for entry in entries:
        inst = entry.instance
        if entry.hit and inst.id not in forced and inst.id not in keep:
            if inst.id in reports:
                continue
            summary = signed_summary(entry)
            if summary is not None:
                echo_hit(f"{inst.id:<{width}}  cache hit  {entry.key[:12]}")
                reports[inst.id] = StageReport(inst.id, inst.stage.name, entry.key, "hit", 0.0, summary)
                continue
        if inst.id not in artifacts:
            was_hit = entry.hit and inst.id not in forced
            materialize(inst.id)
            if was_hit and inst.id not in reports:
                echo_hit(f"{inst.id:<{width}}  cache hit  {entry.key[:12]}")
                reports[inst.id] = StageReport(inst.id, inst.stage.name, entry.key, "hit", 0.0, _summary_of(entry, store))
    ordered = [reports[e.instance.id] for e in entries if e.instance.id in reports]
    return RunResult(ordered, artifacts)


def _silent(line: str) -> None:
    """The echo of processes other than rank 0."""


def _summary_of(entry: PlanEntry, store: ArtifactStore) -> dict:
    """The summary a hit recorded in its signed meta.json (empty if the signature does not check out)."""
    try:
        return store.read_signed_meta(entry.instance.stage.name, entry.key).get("summary", {}) or {}
    except CorruptArtifact:
        return {}
