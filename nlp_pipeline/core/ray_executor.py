"""Ray Data as an executor for chunked text work (the optional extra `distributed`: pip install 'ray[data]').

    map_text_chunks(make_worker, settings, chunks, workers=2, address="")
        -> the (types, ids, lengths) of every chunk, in input order, each computed on a Ray worker

Takes chunks of texts (lists of str) from the caller, writes them as Parquet files (column "text", one row
group per chunk) into a scratch folder, and streams them through `Dataset.map_batches` with a callable class:
each Ray actor calls `make_worker(settings)` once, inside its own process (the tokenizer is built from its
settings there, never pickled), then turns each batch of texts into (types: list[str], ids: int32 array,
lengths: int64 array). Results come back in input order (`preserve_order`), one batch at a time, so the
caller's merge is the same as for the in-process path and the artifact is byte-identical.

Where Ray runs: address "" starts an embedded Ray on this machine (ray.init(num_cpus=workers), no dashboard)
and stops it afterwards; "auto" joins the cluster this machine belongs to and HOST:PORT a given one, left
running. A Ray already initialised in this process (a test module, a notebook) is used as it is.
Limits: on a cluster the scratch folder (core.spill.spill_dir(): NLP_PIPELINE_SPILL_DIR) must be a path every
node sees (NFS, a shared disk), and nlp_pipeline must be installed on every node; the scratch Parquet holds a
copy of the corpus text while the stage runs. Ray is imported only here, and only when asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
import warnings
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from nlp_pipeline.core.errors import ConfigError

EXTRA = "distributed"
FILE_BYTES = 4 << 20  # text per scratch Parquet file: a file is the unit Ray reads, so several files keep several actors busy


def require_ray(what: str) -> None:
    """A one-line ConfigError naming the extra when Ray Data is not installed; nothing when it is."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise ConfigError(f"{what} needs Ray Data, which is not installed; run: pip install 'nlp-pipeline[{EXTRA}]' "
                          f"(or pip install 'ray[data]'), or use the default executor \"local\"")


@contextlib.contextmanager
def ray_session(workers: int, address: str = "") -> Iterator[Any]:
    """The ray module, initialised: an existing session as it is, else embedded (num_cpus=workers) or joined at
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
        kwargs["num_cpus"] = workers + 1  # one slot for Ray Data's file listing and reading tasks: with `workers`
        # slots the `workers` actors held every CPU and the reads waited for ever (seen with 2 actors on 2 CPUs)
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


def _write_scratch(chunks: Iterable[list[str]], folder: str) -> list[str]:
    """Chunks of texts -> Parquet files in `folder` (one row group per chunk, ~FILE_BYTES of text per file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("text", pa.large_string())])
    paths: list[str] = []
    writer, size = None, 0
    try:
        for chunk in chunks:
            if writer is None or size >= FILE_BYTES:
                if writer is not None:
                    writer.close()
                paths.append(os.path.join(folder, f"part-{len(paths):06d}.parquet"))
                writer, size = pq.ParquetWriter(paths[-1], schema), 0
            writer.write_table(pa.table({"text": pa.array(chunk, pa.large_string())}, schema=schema),
                               row_group_size=max(1, len(chunk)))
            size += sum(map(len, chunk))
    finally:
        if writer is not None:
            writer.close()
    return paths


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
    actors. `chunk_size` texts make a batch (None: each chunk of `chunks` as it comes)."""
    import json

    from nlp_pipeline.core.spill import spill_dir

    with ray_session(workers, address) as ray, tempfile.TemporaryDirectory(prefix="nlp-pipeline-ray-",
                                                                          dir=spill_dir()) as scratch:
        paths = _write_scratch(chunks, scratch)
        if not paths:
            return
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True     # batches come back in corpus order
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        dataset = ray.data.read_parquet(paths, file_extensions=None, shuffle=None)
        mapped = dataset.map_batches(_ChunkActor, fn_constructor_args=(make_worker, settings),
                                     batch_size=chunk_size, batch_format="pyarrow",
                                     compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
        warnings.filterwarnings("ignore", category=UserWarning, module="ray")  # "only received 1 input(s)"
        for batch in mapped.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            for types, ids, lengths in zip(batch["types"], batch["ids"], batch["lengths"]):
                yield json.loads(types), np.frombuffer(ids, np.int32), np.frombuffer(lengths, np.int64)
