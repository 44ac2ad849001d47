"""Ray Data as an executor for chunked work of the text stages (the optional extra `distributed`: pip install 'ray[data]').

    map_chunks(make_worker, settings, chunks, workers=2, address="")
        -> worker(chunk) of every chunk, in input order, each computed on a Ray worker

Takes chunks from the caller, each a list of str (texts), a 1-D numpy array (token ids) or any other picklable
object (a task: which file to read, or a block of lines; one pickled row), puts each into Ray's
object store as a one-column Arrow table, a wave of WAVE_BYTES at a time, and streams each wave through
`Dataset.map_batches` with a callable class (`ray.data.from_arrow_refs`: no scratch files, so nothing needs a
shared disk): each Ray actor calls `make_worker(settings)` once, inside its own process (a tokenizer is built
from its settings there, never pickled), then calls the worker on each batch (a list of str, or a numpy array)
(an object chunk: the object) and pickles what it returns (any tuple of lists and arrays) back. Results come back in input order
(`preserve_order`), one batch at a time, so the caller's merge is the same as for the in-process path and the
artifact is byte-identical. Callers: tokenization (texts -> (types, ids, lengths)), numericalization's
vocabulary counting (the ids of a shard -> (distinct ids, their counts)) and corpus reading (a file, or a block
of lines read here -> its rows; table files, wiki dumps and label-folder documents are opened by the workers, so
on a cluster those must be at the same path on every node).

Where Ray runs: address "" starts an embedded Ray on this machine (ray.init(address="local", num_cpus=2 x workers
+ 1), no dashboard: a cluster running on the machine is not joined) and stops it afterwards; "auto" joins the
cluster this machine belongs to and HOST:PORT a given one, left running. A Ray already initialised in this process
(a test module, a notebook) is used as it is.
Limits: nlp_pipeline must be installed on every node of a cluster; each wave starts its actors anew (spaCy
loads again: about a second per actor, against minutes of tokenization per 64 MB wave). The merge of the
results (the vocabulary, the ids) stays on this process. Ray is imported only here, and only when asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import warnings
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from nlp_pipeline.core.errors import ConfigError

EXTRA = "distributed"
EXECUTORS = ("local", "ray")  # "local": this process or a process pool; "ray": Ray Data workers
WAVE_BYTES = 64 << 20  # data handed to Ray per pipeline run (the object store holds at most about this much)


def resolve_workers(workers: int) -> int:
    """The workers setting of the text stages: 0 -> min(4, CPU count); any other value as it is."""
    return workers if workers > 0 else max(1, min(4, os.cpu_count() or 1))


def describe_executor(executor: str, address: str) -> str:
    """What a stage's log line adds for its executor: ", executor=ray at auto", or nothing for "local"."""
    return f", executor=ray{' at ' + address if address else ''}" if executor == "ray" else ""


def check_executor(section: str, executor: str) -> None:
    """A one-line ConfigError for an unknown executor, or for "ray" when Ray Data is not installed."""
    if executor not in EXECUTORS:
        raise ConfigError(f"{section}.executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "ray":
        require_ray(f'{section}.executor = "ray"')


def require_ray(what: str) -> None:
    """A one-line ConfigError naming the extra when Ray Data is not installed; nothing when it is."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise ConfigError(f"{what} needs Ray Data, which is not installed; run: pip install 'nlp-pipeline[{EXTRA}]' "
                          f"(or pip install 'ray[data]'), or use the default executor \"local\"")


@contextlib.contextmanager
def ray_session(workers: int, address: str = "") -> Iterator[Any]:
    """The ray module, initialised: an existing session as it is, else embedded (2 x workers + 1 CPU slots) or joined at
    `address`; an embedded Ray started here is shut down on exit."""
    require_ray("executor \"ray\"")
    import ray

    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address:
        kwargs["address"] = address
    else:
        # "local": a Ray of its own even where a cluster runs on this machine (a bare ray.init() would join the
        # cluster `ray start` wrote to /tmp/ray/ray_current_cluster, and refuse num_cpus there)
        kwargs["address"] = "local"
        # Logical CPU slots, not cores: the actor pool of each pipeline is capped at `workers` actors anyway.
        # Ray Data also runs small tasks (file listing, Arrow metadata) that need a free slot, and the idle
        # actors of a finished wave may hold theirs a while: with `workers` slots, then `workers + 1`, both
        # waited for ever here (2 actors on 2 cores), so an embedded Ray gets 2 x workers + 1.
        kwargs["num_cpus"] = 2 * workers + 1
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError, and a bare Exception when the node times out starting
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"could not start or join Ray (address {address or 'embedded'!r}): {first}") from None
    try:
        yield ray
    finally:
        if not address:
            ray.shutdown()


class _ChunkActor:
    """The callable class each Ray actor holds: builds its worker from the settings once, in the actor."""

    def __init__(self, make_worker: Callable[[dict[str, Any]], Any], settings: dict[str, Any]) -> None:
        self.worker = make_worker(settings)

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        import pyarrow as pa

        column = batch.column(0)
        if pa.types.is_large_binary(column.type):  # object chunks: one result per pickled object
            return {"result": np.array([pickle.dumps(self.worker(pickle.loads(item)), protocol=pickle.HIGHEST_PROTOCOL)
                                        for item in column.to_pylist()], dtype=object)}
        texts = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        items = column.to_pylist() if texts else column.to_numpy()
        return {"result": np.array([pickle.dumps(self.worker(items), protocol=pickle.HIGHEST_PROTOCOL)], dtype=object)}


def map_chunks(make_worker: Callable[[dict[str, Any]], Any], settings: dict[str, Any],
               chunks: Iterable[list[str] | np.ndarray], workers: int, address: str = "",
               chunk_size: int | None = None) -> Iterator[Any]:
    """worker(batch) for every batch, in input order, computed by `workers` Ray actors, each holding
    make_worker(settings). A chunk is a list of texts or a 1-D numpy array; `chunk_size` items make a batch
    (None: each chunk as it comes). Any other chunk is an object given to the worker as it is (pickled; use
    chunk_size None), counted in the wave as its `nbytes` attribute when it has one (the data it stands for).
    The chunks go to Ray's object store as Arrow tables a wave of WAVE_BYTES at a time, so neither this
    process nor the store holds the whole input."""
    import pyarrow as pa

    with ray_session(workers, address) as ray:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True     # batches come back in input order
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        wave: list[Any] = []
        size = 0
        for chunk in chunks:
            if isinstance(chunk, (list, np.ndarray)):
                table = pa.table({"items": pa.array(chunk, pa.large_string()) if isinstance(chunk, list) else chunk})
            else:
                table = pa.table({"items": pa.array([pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)],
                                                    pa.large_binary())})
            wave.append(ray.put(table))
            size += max(table.nbytes, getattr(chunk, "nbytes", 0))
            if size >= WAVE_BYTES:
                yield from _run_wave(ray, wave, make_worker, settings, workers, chunk_size)
                wave, size = [], 0
        if wave:
            yield from _run_wave(ray, wave, make_worker, settings, workers, chunk_size)


def _run_wave(ray: Any, refs: list[Any], make_worker: Callable[[dict[str, Any]], Any], settings: dict[str, Any],
              workers: int, chunk_size: int | None) -> Iterator[Any]:
    """One Ray Data pipeline over the Arrow tables `refs`: actors map batches, results stream back in order."""
    dataset = ray.data.from_arrow_refs(refs)
    mapped = dataset.map_batches(_ChunkActor, fn_constructor_args=(make_worker, settings), batch_size=chunk_size,
                                 batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="ray")  # "only received 1 input(s)"
        for batch in mapped.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            for result in batch["result"]:
                yield pickle.loads(result)
