"""Shared helpers of the benchmark scripts: data location, versions, markdown tables, result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NLP_PIPELINE_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"


def versions(*packages: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("nlp-pipeline", *packages):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# CPU features that change our training speed: torch's CPU kernels, and bfloat16 in hardware (precision "auto"
# trains in bfloat16 only there, about 1.8x faster than float32: docs/results.md's throughput table)
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def machine() -> str:
    """'2 cores (AMD EPYC; avx2, no native bfloat16), Linux 6.1': the model name hides which CPU generation a
    shared host landed on, so the flags that set its speed are named."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = set(next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags")))
    except (OSError, StopIteration):
        return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"
    native = "native bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "no native bfloat16"
    named = ", ".join(f for f in SPEED_FLAGS if f in flags) or "no AVX2"
    return f"{os.cpu_count()} cores ({cpu}; {named}, {native}), {platform.system()} {platform.release()}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, payload: dict, markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = dict(payload, date=time.strftime("%Y-%m-%d %H:%M"), command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                   machine=machine())
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(markdown + "\n", encoding="utf-8")
    print(markdown)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def train_blended(classifier_cfg, data, lm=None, lm_backward=None, linear_cfg=None, blend_cfg=None, carve=None):
    """validation -> classifier -> linear -> blend as the pipeline chains them, through the stages' public
    functions; returns the classifier as the bundle and report see it (models.blend.compose). Default
    linear/blend configs; carve None: the default [validation] carve of data (targets.carve)."""
    from nlp_pipeline.models.blend import compose
    from nlp_pipeline.stages.blend import BlendConfig, blend_classifier
    from nlp_pipeline.stages.classifier import train_classifier
    from nlp_pipeline.stages.linear import LinearConfig, fit_linear_stage
    from nlp_pipeline.targets import carve_of

    carve = carve_of(data, carve)
    rnn = train_classifier(classifier_cfg, data, lm, lm_backward, carve=carve)
    blend_cfg = blend_cfg or BlendConfig()
    linear = fit_linear_stage(linear_cfg or LinearConfig(), data, carve) if blend_cfg.linear else None
    return compose(rnn, blend_classifier(blend_cfg, rnn, data, linear, carve))
