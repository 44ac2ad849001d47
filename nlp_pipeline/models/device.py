"""Where and in which precision training runs: CUDA when present, else the CPU with all usable cores.

    choose_device("auto") -> device(type='cpu') on a machine without a GPU (and torch uses every core it may)
    with training_session("auto", 0, seed=0) as device: ...   # the same, undone (threads, RNG) on exit
    resolve_precision(device, "auto") -> torch.bfloat16 on a GPU or on a CPU with native bfloat16, else None
    autocast_context(device, dtype) -> torch.autocast(...) or a no-op context for float32
Mixed precision on CPU is not a GPU-only trick here: on CPUs with AVX512-BF16/AMX, bfloat16 matmuls are
4-5x faster than float32 and the oneDNN LSTM kernel 1.15-1.3x faster (benchmarks/bench_ulmfit.py).
Limits: one device per process; multi-GPU (DistributedDataParallel) is not wired in here.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch

from nlp_pipeline.core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "float32", "bfloat16")


def usable_cpu_count() -> int:
    """Cores this process may run on (the affinity mask, which respects taskset/cgroups), else os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def choose_device(prefer: str = "auto", num_threads: int = 0) -> torch.device:
    """CUDA if prefer is "cuda" or ("auto" and a GPU is visible), else CPU with num_threads torch threads
    (0 = every usable core). Asking for "cuda" without a GPU is a ConfigError, not a silent CPU run."""
    if prefer not in DEVICES:
        raise ConfigError(f"device must be one of {list(DEVICES)}, got {prefer!r}")
    if prefer == "cuda" or (prefer == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device = 'cuda' but torch sees no GPU; set device = 'auto' or 'cpu'")
        return torch.device("cuda")
    threads = num_threads if num_threads > 0 else usable_cpu_count()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch.device("cpu")


@contextlib.contextmanager
def training_session(prefer: str = "auto", num_threads: int = 0, seed: int | None = None) -> Iterator[torch.device]:
    """choose_device() for the duration of a `with` block, then put torch's global state back: the thread
    count and (when `seed` is given) the CPU/GPU random generators, seeded with `seed` inside the block.
    Stage functions train inside one, so calling them leaves the caller's torch settings as they were."""
    threads_before = torch.get_num_threads()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            yield choose_device(prefer, num_threads)
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)


def cpu_has_native_bfloat16() -> bool:
    """True when the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX), where bfloat16 matmuls run
    4-5x faster than float32 (measured on an AMD EPYC with AVX512-BF16: ~280 vs ~60 GFLOP/s per core)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:
            pass
    return False


def resolve_precision(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`, or None for plain float32.

    "float32" -> None. "bfloat16" -> torch.bfloat16 (float16 is not offered: it needs loss scaling and is
    slow on CPUs). "auto" -> bfloat16 on a GPU that supports it (else float16 with a GradScaler), bfloat16 on
    a CPU with native bfloat16 arithmetic, float32 elsewhere. Parameters, optimizer state, softmax and
    losses stay float32 in every case; only matmuls and the fused RNN kernels run in the lower precision.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bfloat16() else None


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> Any:
    """torch.autocast in `dtype` on `device`, or a no-op context for dtype None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> Any:
    """A GradScaler for float16 training on CUDA (bfloat16 needs none), else a disabled one."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16 and device.type == "cuda")
