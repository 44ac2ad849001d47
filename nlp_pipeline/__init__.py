"""nlp-pipeline: ULMFiT-style text classification on a CPU, every stage a cached, reusable building block."""

import os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting for a sibling stall when another process holds a core: a training step
# took 18x longer with 2 threads beside one busy process, 1.6x with passive waiting, which costs about 10 % on an
# idle machine (benchmarks/bench_oversubscription.py). Read once, when torch loads its OpenMP runtime, so it only
# applies when nlp_pipeline is imported before torch (always from the CLI); a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def __getattr__(name: str):
    """`from nlp_pipeline import Classifier` loads the predict bundle code (and torch) only when asked for.

    importlib rather than an import statement: the package root sits below every layer (core reads
    __version__ from it), so it must not import the export layer statically.
    """
    if name == "Classifier":
        import importlib

        return importlib.import_module("nlp_pipeline.export.bundle").Classifier
    raise AttributeError(f"module 'nlp_pipeline' has no attribute {name!r}")
