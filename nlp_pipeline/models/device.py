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
import logging
import os
import time
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


def _cpu_jiffies() -> tuple[float, float] | None:
    """(busy jiffies of the whole machine, jiffies of this process) from /proc, or None where /proc is missing."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()[1:]
        with open("/proc/self/stat", "rb") as f:
            own = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    values = [float(v) for v in fields[:8]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values) - idle, float(own[11]) + float(own[12])  # utime + stime of this process


def free_cpu_count(sample_seconds: float = 0.25) -> int:
    """Usable cores not kept busy by other processes, sampled over sample_seconds (at least 1).

    free_cpu_count() -> 2 on an idle 2-core machine, 1 while another process keeps one core busy. Torch threads
    synchronise at every operation, so a thread waiting for a core that another process holds slows them all
    (1.6x per step with nlp_pipeline's passive OpenMP waiting, 19x with spinning: see nlp_pipeline/__init__.py;
    `nice` does not help across sessions under Linux's autogroup scheduling). The thread count is not chosen from
    it: results change with the number of threads, and a run's results must not depend on the machine's load. Limits: a snapshot (load that
    starts later is not seen); without /proc (not Linux) every usable core."""
    usable = usable_cpu_count()
    first = _cpu_jiffies()
    if first is None or usable == 1:
        return usable
    started = time.monotonic()
    time.sleep(sample_seconds)
    second = _cpu_jiffies()
    elapsed = time.monotonic() - started
    if second is None or elapsed <= 0:
        return usable
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    others = ((second[0] - first[0]) - (second[1] - first[1])) / ticks / elapsed  # cores busy with other processes
    return max(1, min(usable, usable - int(others + 0.5)))


def _warn_if_cores_are_busy(threads: int) -> None:
    free = free_cpu_count()
    if free < threads:
        logging.getLogger("nlp_pipeline").warning(
            "other processes keep %d of the %d cores torch uses busy: training may run up to 2x slower; "
            "set the stage's num_threads = %d (e.g. --set classifier.num_threads=%d) or wait for them",
            threads - free, threads, free, free)


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
    Stage functions train inside one, so calling them leaves the caller's torch settings as they were. With
    num_threads 0 on the CPU it warns when other processes keep some of those cores busy (free_cpu_count())."""
    threads_before = torch.get_num_threads()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            device = choose_device(prefer, num_threads)
            if device.type == "cpu" and num_threads <= 0:
                _warn_if_cores_are_busy(torch.get_num_threads())
            yield device
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
