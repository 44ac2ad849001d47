"""nlp-pipeline: ULMFiT-style text classification on a CPU, every stage a cached, reusable building block."""

__version__ = "0.1.0"
