"""Ray Data as an executor for chunked text work (the optional extra `distributed`: pip install 'ray[data]').

    map_text_chunks(make_worker, settings, chunks, workers=2, address="")
        -> the (types, ids, lengths) of every chunk, in input order, each computed on a Ray worker

Takes chunks of texts (lists of str) from the caller, puts each into Ray's object store as an Arrow table
(column "text"), a wave of WAVE_BYTES of text at a time, and streams each wave through `Dataset.map_batches`
with a callable class (`ray.data.from_arrow_refs`: no scratch files, so nothing needs a shared disk): each Ray
actor calls `make_worker(settings)` once, inside its own process (the tokenizer is built from its
settings there, never pickled), then turns each batch of texts into (types: list[str], ids: int32 array,
lengths: int64 array). Results come back in input order (`preserve_order`), one batch at a time, so the
caller's merge is the same as for the in-process path and the artifact is byte-identical.

Where Ray runs: address "" starts an embedded Ray on this machine (ray.init(num_cpus=2 x workers + 1), no dashboard)
and stops it afterwards; "auto" joins the cluster this machine belongs to and HOST:PORT a given one, left
running. A Ray already initialised in this process (a test module, a notebook) is used as it is.
Limits: nlp_pipeline must be installed on every node of a cluster; each wave starts its actors anew (spaCy
loads again: about a second per actor, against minutes of tokenization per 64 MB wave). The merge of the
results (the vocabulary, the ids) stays on this process. Ray is imported only here, and only when asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from nlp_pipeline.core.errors import ConfigError

EXTRA = "distributed"
WAVE_BYTES = 64 << 20  # text handed to Ray per pipeline run (the object store holds at most about this much)


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
        # Logical CPU slots, not cores: the actor pool of each pipeline is capped at `workers` actors anyway.
        # Ray Data also runs small tasks (file listing, Arrow metadata) that need a free slot, and the idle
        # actors of a finished wave may hold theirs a while: with `workers` slots, then `workers + 1`, both
        # waited for ever here (2 actors on 2 cores), so an embedded Ray gets 2 x workers + 1.
        kwargs["num_cpus"] = 2 * workers + 1
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
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
        import json

        types, ids, lengths = self.worker(batch.column("text").to_pylist())
        return {"types": np.array([json.dumps(types, ensure_ascii=False)], dtype=object),
                "ids": np.array([np.asarray(ids, np.int32).tobytes()], dtype=object),
                "lengths": np.array([np.asarray(lengths, np.int64).tobytes()], dtype=object)}


def map_text_chunks(make_worker: Callable[[dict[str, Any]], Any], settings: dict[str, Any],
                    chunks: Iterable[list[str]], workers: int, address: str = "",
                    chunk_size: int | None = None) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """(types, int32 ids, int64 lengths) of every batch of texts, in input order, computed by `workers` Ray
    actors. `chunk_size` texts make a batch (None: each chunk of `chunks` as it comes). The chunks go to Ray's
    object store as Arrow tables a wave of WAVE_BYTES at a time, so neither this process nor the store holds
    the corpus."""
    import pyarrow as pa

    with ray_session(workers, address) as ray:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True     # batches come back in corpus order
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        wave: list[Any] = []
        size = 0
        for chunk in chunks:
            wave.append(ray.put(pa.table({"text": pa.array(chunk, pa.large_string())})))
            size += sum(map(len, chunk))
            if size >= WAVE_BYTES:
                yield from _run_wave(ray, wave, make_worker, settings, workers, chunk_size)
                wave, size = [], 0
        if wave:
            yield from _run_wave(ray, wave, make_worker, settings, workers, chunk_size)


def _run_wave(ray: Any, refs: list[Any], make_worker: Callable[[dict[str, Any]], Any], settings: dict[str, Any],
              workers: int, chunk_size: int | None) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """One Ray Data pipeline over the Arrow tables `refs`: actors map batches, results stream back in order."""
    import json

    dataset = ray.data.from_arrow_refs(refs)
    mapped = dataset.map_batches(_ChunkActor, fn_constructor_args=(make_worker, settings), batch_size=chunk_size,
                                 batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="ray")  # "only received 1 input(s)"
        for batch in mapped.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            for types, ids, lengths in zip(batch["types"], batch["ids"], batch["lengths"]):
                yield json.loads(types), np.frombuffer(ids, np.int32), np.frombuffer(lengths, np.int64)
