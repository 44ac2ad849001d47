"""Plan and execute a list of stage instances against the artifact store.

    instances = [Instance("corpus", CORPUS, corpus_cfg, {}), Instance("tokenization", TOKENIZATION, tok_cfg,
                 {"corpus": "corpus"}), ...]            # in data-flow order
    plan(instances, store)     -> [PlanEntry(instance, key, hit)]   computes keys from config only, loads nothing
    select(entries, until)     -> the entries `until` (a stage name or instance id) needs, in order
    execute(instances, store)  -> RunResult                          loads hits only where a miss needs them

execute() walks the plan and calls produce() on each instance: verify, lock, compute or load, save.
- verify: a hit is reported only once its signed meta.json checks out (and every file's sha256 when it is
  loaded); an artifact that fails is logged as refused, removed and recomputed.
- lock: a miss is computed under a per-key lock, so concurrent runs compute it once; a run that waited finds
  the artifact saved meanwhile and loads it.
- compute: the inputs are loaded (or computed) first; the stage is seeded from the config's `seed` field and
  runs inside a checkpoint scope of its key (core/checkpoints.py: a long stage resumes where an interrupted run
  stopped; --force starts over).
- save: atomically, with a meta.json of the config, upstream keys, timing, package versions and summary.
Logs one line when a stage starts running or is a verified cache hit, one when it finishes, one when it waits
for another process's lock on the same key and one when that process computed it; `quiet_hits` mutes only the
cache-hit lines (refusals and recomputes always print).

What each process does at each step is its executor's business (core/executors.py): alone, a local one; under
torchrun (a `coordinator`), a collective one where rank 0 decides, saves and logs, and the other ranks wait and
load (a `collective` stage, data-parallel training, runs on every rank). Every process must then call execute()
with the same arguments. Takes instances and a store; returns a RunResult. Limits: instances must come in
data-flow order; which executor runs a stage is in no key.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from nlp_pipeline.core import checkpoints
from nlp_pipeline.core.errors import ConfigError, NlpPipelineError
from nlp_pipeline.core.executors import Coordinator, Executor, for_processes
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.core.store import ArtifactStore

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
    executor = for_processes(coordinator)
    echo = (echo or log.info) if executor.decides else _silent
    entries = select(plan(instances, store), until)
    for entry, hit in zip(entries, executor.agree([e.hit for e in entries])):  # every process takes rank 0's view
        entry.hit = hit
    known = {e.instance.id for e in entries} | {e.instance.stage.name for e in entries}
    force = set(force)
    unknown = sorted(force - known)
    if unknown:
        raise ConfigError(f"--force {unknown[0]!r} is not a stage of this run; stages: {', '.join(sorted(known))}")
    forced = {e.instance.id for e in entries if e.instance.id in force or e.instance.stage.name in force}
    store.ensure_writable()
    for name in sorted({e.instance.stage.name for e in entries if not e.hit or e.instance.id in forced}):
        store.ensure_writable(name)  # a stage folder that is a file or not writable: one line before anything runs
    run = _Run(store, executor, {e.instance.id: e for e in entries}, forced, echo, _silent if quiet_hits else echo,
               max(len(e.instance.id) for e in entries) if entries else 10)
    keep = set(keep)
    for entry in entries:
        produce(entry, run, load=entry.instance.id in keep)
    return RunResult([run.reports[e.instance.id] for e in entries if e.instance.id in run.reports], run.artifacts)


@dataclass
class _Run:
    """What the instances of one execute() call share."""

    store: ArtifactStore
    executor: Executor
    by_id: dict[str, PlanEntry]          # instance id -> its entry in the plan
    forced: set[str]                     # instance ids to recompute even on a hit
    echo: Callable[[str], None]
    echo_hit: Callable[[str], None]      # echo, or silent with quiet_hits
    width: int                           # of the id column in log lines
    artifacts: dict[str, Any] = field(default_factory=dict)        # loaded or computed so far
    reports: dict[str, StageReport] = field(default_factory=dict)
    saved_here: set[tuple[str, str]] = field(default_factory=set)  # (stage, key) this run saved


def produce(entry: PlanEntry, run: _Run, load: bool) -> Any:
    """One stage instance: verify, lock, compute or load, save. Returns its artifact, or None for a verified hit
    that `load` does not ask for; records its StageReport in `run` and loads or computes its inputs as needed."""
    inst, store, executor = entry.instance, run.store, run.executor
    name, key, label = inst.stage.name, entry.key, f"{inst.id:<{run.width}}"
    if inst.id in run.artifacts:
        return run.artifacts[inst.id]
    forced = inst.id in run.forced
    status = "ran"

    # verify: a planned hit counts once its signed meta.json checks out (every file's sha256 too when loaded)
    if entry.hit and not forced:
        check = executor.check(store, name, key, load)
        if check.usable:
            if inst.id not in run.reports:  # not yet reported (an input loaded later was reported at its turn)
                run.echo_hit(f"{label}  cache hit  {key[:12]}")
                run.reports[inst.id] = StageReport(inst.id, name, key, "hit", 0.0, check.summary)
            if load:
                run.artifacts[inst.id] = check.artifact
            return check.artifact
        _refuse(entry, run, check.problem)
        status = "recomputed"

    # lock: concurrent runs compute a key once; a run that waited finds what the other one saved meanwhile
    waiting = f"{label}  waiting for another process computing {name} {key[:12]}..."
    with executor.lock(store, name, key, on_wait=functools.partial(run.echo, waiting)):
        if status == "ran" and not forced:
            check = executor.check(store, name, key, load=True, only_if_saved=True)
            if check.usable:
                if (name, key) in run.saved_here:  # another instance of this run has the same key
                    run.echo_hit(f"{label}  cache hit  {key[:12]}")
                else:
                    run.echo(f"{label}  computed by another process  {key[:12]}")
                run.reports[inst.id] = StageReport(inst.id, name, key, "hit", 0.0, check.summary)
                run.artifacts[inst.id] = check.artifact
                return check.artifact
            if check.saved:
                _refuse(entry, run, check.problem)
                status = "recomputed"

        # compute: the inputs first (loaded, or computed if refused), then the stage wherever the executor runs it
        inputs = {arg: produce(run.by_id[source], run, load=True) for arg, source in inst.inputs.items()}
        detail = inst.stage.describe(inst.config) if inst.stage.describe else ""
        run.echo(f"{label}  running{f' ({detail})' if detail else ''}  {key[:12]}")
        checkpoint = store.checkpoint_folder(name, key)
        started = time.time()
        artifact = executor.compute(inst.stage.collective,
                                    lead=functools.partial(_run_stage, inst, inputs, checkpoint, fresh=forced),
                                    share=functools.partial(_run_stage, inst, inputs, checkpoint, fresh=False))
        seconds = time.time() - started

        # save: atomically, with its meta.json, where the executor writes the store (the others load it below)
        summary = executor.save(functools.partial(_save, entry, run, artifact, started, seconds, checkpoint))
    artifact, summary = executor.published(store, name, key, artifact, summary)
    run.reports[inst.id] = StageReport(inst.id, name, key, status, seconds, summary)
    run.artifacts[inst.id] = artifact
    return artifact


def _refuse(entry: PlanEntry, run: _Run, problem: str | None) -> None:
    """A cached artifact failed its check: say so (always), forget it, and let it be recomputed."""
    inst = entry.instance
    run.echo(f"{inst.id:<{run.width}}  cached artifact refused ({problem}); recomputing  {entry.key[:12]}")
    run.executor.forget(run.store, inst.stage.name, entry.key)
    entry.hit = False


def _run_stage(inst: Instance, inputs: dict[str, Any], checkpoint: Path, fresh: bool) -> Any:
    """inst.run(**inputs), seeded from the config's `seed` field, as computing() = inst.id, inside the key's
    checkpoint scope; `fresh` (--force) discards what an interrupted attempt left instead of resuming it."""
    seed = getattr(inst.config, "seed", None)
    if isinstance(seed, int):
        seed_everything(seed)
    if fresh:
        checkpoints.discard(checkpoint)
    token = _computing.set(inst.id)
    try:
        with checkpoints.scope(checkpoint):
            return inst.run(**inputs)
    finally:
        _computing.reset(token)


def _save(entry: PlanEntry, run: _Run, artifact: Any, started: float, seconds: float, checkpoint: Path) -> dict:
    """Save the artifact with its meta.json, drop its checkpoints, log the time taken; returns its summary."""
    inst = entry.instance
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
    run.store.save(inst.stage.name, entry.key, artifact, meta)
    run.saved_here.add((inst.stage.name, entry.key))
    checkpoints.discard(checkpoint)
    run.echo(f"{inst.id:<{run.width}}  done in {seconds:.1f}s")
    return summary


def _silent(line: str) -> None:
    """The echo of processes that do not log (every rank but 0)."""
