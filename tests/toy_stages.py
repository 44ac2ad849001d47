"""Tiny stages for testing the engine: numbers in, numbers out, every call counted in a log file."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlp_pipeline.core.runner import Instance
from nlp_pipeline.core.stage import Stage


@dataclass(frozen=True)
class SourceConfig:
    n: int = 5                 # how many numbers
    calls_log: str = ""        # file that records each call (volatile)
    sleep_seconds: float = 0.0  # wait inside the stage (volatile), to be killed there
    seed: int = 0


@dataclass(frozen=True)
class ScaleConfig:
    factor: int = 2            # multiply by this
    calls_log: str = ""        # file that records each call (volatile)


def _record(path: str, name: str) -> None:
    if path:
        with open(path, "a") as handle:
            handle.write(name + "\n")


def make_numbers(cfg: SourceConfig) -> np.ndarray:
    _record(cfg.calls_log, "source")
    if cfg.sleep_seconds:
        Path(cfg.calls_log + ".started").write_text(str(os.getpid()))
        time.sleep(cfg.sleep_seconds)
    return np.arange(cfg.n * 10_000, dtype=np.int64)  # large enough to be stored as .npy


def scale(cfg: ScaleConfig, numbers: np.ndarray) -> np.ndarray:
    _record(cfg.calls_log, "scale")
    return np.asarray(numbers) * cfg.factor


def stages(source_version: int = 1, scale_version: int = 1) -> tuple[Stage, Stage]:
    source = Stage("source", source_version, SourceConfig, {}, make_numbers, volatile=("calls_log", "sleep_seconds"))
    scaler = Stage("scale", scale_version, ScaleConfig, {"numbers": "source"}, scale, volatile=("calls_log",))
    return source, scaler


def instances(calls_log: str, n: int = 5, factor: int = 2, sleep: float = 0.0, source_version: int = 1,
              scale_version: int = 1) -> list[Instance]:
    source, scaler = stages(source_version, scale_version)
    return [
        Instance("source", source, SourceConfig(n=n, calls_log=calls_log, sleep_seconds=sleep), {}),
        Instance("scale", scaler, ScaleConfig(factor=factor, calls_log=calls_log), {"numbers": "source"}),
    ]
