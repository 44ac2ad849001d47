"""Data-parallel training across processes, as launched by torchrun (one process per GPU, or a few on a CPU).

    torchrun --nproc_per_node 2 -m nlp_pipeline.cli run ...   # 2 processes; gloo on CPU, nccl on CUDA
    is_distributed() -> True when the launcher asked for several processes (WORLD_SIZE > 1) or a group is up
    setup()          -> joins the process group once (env:// rendezvous: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE)
    rank(), world_size(), is_main()                   0 and 1 (and True) in a single process
    all_reduce_sum([loss_sum, tokens])                -> the totals over every process, on every process
    gather_shards(part, n)                            rows r, r + W, ... computed by process r -> all n rows
    wrap(model, device)                               DistributedDataParallel(model) when distributed, else model
    coordinator()    -> what core.executors needs (rank 0 decides and writes, the others follow), None in one process

The convention: every process runs the same code with the same seeds, so weights start equal, shuffles, BPTT
lengths and unfreezing steps are the same everywhere and every process takes the same number of steps; only
the rows of each batch are split (batching.shard), and DDP averages the gradients. The process count is a
volatile setting: it is in no cache key (the artifact of a 2-process run is stored under the 1-process key).
Torch is imported lazily: in a single process nothing here imports it.
Limits: gloo is exercised by the tests (2 CPU processes); nccl paths are written to the torch API but
untested here. Several machines need a cache folder that all of them see (rank 0 writes, the others read).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from nlp_pipeline.core.errors import ConfigError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from None


def _group() -> Any:
    """torch.distributed when a process group is initialised (imported only if something imported it), else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def is_distributed() -> bool:
    """True in a process of a multi-process run: WORLD_SIZE > 1 in the environment, or a joined group of size > 1."""
    dist = _group()
    if dist is not None:
        return dist.get_world_size() > 1
    return _env_int("WORLD_SIZE", 1) > 1


def setup() -> bool:
    """Join the process group the environment describes, once (later calls return at once); True when this
    process is one of several. Backend: gloo, plus nccl for CUDA tensors when a GPU is visible (each process
    then uses GPU LOCAL_RANK). A launch without torchrun's variables is a one-line ConfigError."""
    if _group() is not None:
        return is_distributed()
    if _env_int("WORLD_SIZE", 1) <= 1:
        return False
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with torchrun --nproc_per_node N")
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run in a single process (without torchrun)")
    backend = "gloo"
    if torch.cuda.is_available() and dist.is_nccl_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"  # objects, barriers and CPU tensors over gloo; CUDA tensors over nccl
    try:
        dist.init_process_group(backend=backend)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"could not join the process group ({first}); check MASTER_ADDR/MASTER_PORT") from None
    return dist.get_world_size() > 1


def shutdown() -> None:
    """Wait for every process, then leave the process group (no-op in a single process)."""
    dist = _group()
    if dist is not None:
        dist.barrier()
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank in the joined group; 0 when there is none."""
    dist = _group()
    return dist.get_rank() if dist is not None else 0


def world_size() -> int:
    """Processes in the joined group; 1 when there is none."""
    dist = _group()
    return dist.get_world_size() if dist is not None else 1


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK); 0 in a single process."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """True on rank 0 (the process that writes artifacts and run outputs) and in a single process."""
    return rank() == 0


def threads_per_process(num_threads: int) -> int:
    """Torch CPU threads for this process: num_threads when set; 0 (= every usable core) in a single process;
    else the usable cores shared among the processes of this machine, so two processes on 2 cores get 1 each."""
    if num_threads > 0 or not is_distributed():
        return num_threads
    from nlp_pipeline.models.device import usable_cpu_count

    local = _env_int("LOCAL_WORLD_SIZE", _env_int("WORLD_SIZE", 1))
    return max(1, usable_cpu_count() // max(1, local))


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    dist = _group()
    if dist is not None:
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sums over every process, returned on every process (float64 on the CPU).

    In a single process: all_reduce_sum([2.5, 10]) -> [2.5, 10.0]; with two processes holding [1, 4] and
    [2, 6] both get [3.0, 10.0].
    """
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return [float(v) for v in values]
    import torch

    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def average_buffers(model: Any) -> None:
    """Replace every floating-point buffer (BatchNorm running mean/var) by its mean over the processes, so that
    evaluation and the saved state are the same everywhere. DDP keeps parameters equal but not buffers: each
    process's BatchNorm sees only its share of a batch."""
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(dist.get_world_size())


def gather_shards(part: np.ndarray, n: int) -> np.ndarray:
    """Reassemble rows computed in shards: process r holds rows r, r + W, r + 2W, ... of an n-row result
    (batching.shard's split); every process gets all n rows, in order.

    Two processes, n = 5: rank 0 holds rows [0, 2, 4], rank 1 rows [1, 3] -> rows [0, 1, 2, 3, 4] on both.
    """
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return part
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, np.asarray(part))
    out = np.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for r, piece in enumerate(parts):
        out[r::len(parts)] = piece
    return out


def wrap(model: Any, device: Any) -> Any:
    """DistributedDataParallel(model) over the parameters that require grad now, or model itself in a single
    process. Wrap again after changing requires_grad (gradual unfreezing) and release() the old wrapper.
    Buffers are not broadcast at each forward (average_buffers() settles them before evaluation)."""
    if world_size() == 1:
        return model
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index if device.index is not None else _current_cuda()] if device.type == "cuda" else None
    # no buffer broadcast at each forward; newer torch names the switch forward_sync_buffers
    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=device_ids, **no_sync)


def release(wrapped: Any) -> None:
    """Detach a wrapper's gradient hooks from the parameters (before wrapping the same model again)."""
    remove = getattr(wrapped, "_remove_autograd_hooks", None)
    if remove is not None and hasattr(wrapped, "reducer"):
        remove()


def _current_cuda() -> int:
    import torch

    return torch.cuda.current_device()


@dataclass(frozen=True)
class ProcessGroupCoordinator:
    """core.executors.Coordinator over torch.distributed: agree() broadcasts rank 0's value."""

    rank: int
    world_size: int

    def agree(self, value: Any) -> Any:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        barrier()


def coordinator() -> ProcessGroupCoordinator | None:
    """Join the group if the environment asks for several processes; the collective executor's coordinator, or None."""
    if not setup():
        return None
    return ProcessGroupCoordinator(rank(), world_size())
