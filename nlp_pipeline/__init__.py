"""nlp-pipeline: ULMFiT-style text classification on a CPU, every stage a cached, reusable building block."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`from nlp_pipeline import Classifier` loads the predict bundle code (and torch) only when asked for.

    importlib rather than an import statement: the package root sits below every layer (core reads
    __version__ from it), so it must not import the export layer statically.
    """
    if name == "Classifier":
        import importlib

        return importlib.import_module("nlp_pipeline.export.bundle").Classifier
    raise AttributeError(f"module 'nlp_pipeline' has no attribute {name!r}")
