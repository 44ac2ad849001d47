"""validation: Tokens -> Carve, the train/validation documents every supervised stage reads.

Made once, as data, so that lsa (its baselines' C), classifier (its epochs), linear (its validation
probabilities) and blend (its weight) all choose on the same documents. split = "auto" takes the corpus's
labelled dev split when it has one, else holds out a seeded `fraction` of the labelled train documents
(targets.holdout: stratified by class for one class per text, a random slice otherwise; of a label's n >= 2
documents at least 1 and at most n - 1); "train" always holds out; "dev" takes the dev split and is a
DataError without one. The test split is never in a carve.
Limits: fraction and seed cannot apply with split = "dev" (setting one is a ConfigError, and they are in no
key then); with "auto" they stay in the key, since whether the corpus has a dev split is known only from the data.
No labelled train documents: an empty carve (lsa skips its baselines, the classifier refuses).
"""

from __future__ import annotations

from dataclasses import dataclass

from nlp_pipeline.artifacts import Carve, Tokens
from nlp_pipeline.core.config import set_fields
from nlp_pipeline.core.errors import CannotApply, ConfigError
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.targets import carve

SPLITS = ("auto", "train", "dev")


@dataclass(frozen=True)
class ValidationConfig:
    split: str = "auto"                 # "auto" (the labelled dev split if the corpus has one, else held out of train), "train" (always held out), "dev" (the dev split, an error without one)
    fraction: float = 0.1               # share of train held out for validation (of each label, for class targets); not with split = "dev"
    seed: int = 0                       # seed of that hold-out; not with split = "dev"

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"validation.split must be one of {list(SPLITS)}, got {self.split!r}")
        if not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"validation.fraction must be between 0 and 1, got {self.fraction}")
        if self.split == "dev":
            unused = set_fields(self, "validation", ("fraction", "seed"))
            if unused:
                raise CannotApply(unused[0], f"validation.split = \"dev\" holds nothing out of train; remove {unused[0]} "
                                  f"or set validation.split = \"auto\" or \"train\"")


def make_carve(cfg: ValidationConfig, tokens: Tokens) -> Carve:
    """The carve of the labelled documents (see the module docstring)."""
    return carve(tokens, cfg.split, cfg.fraction, cfg.seed)


def summarize(result: Carve) -> dict:
    return {"train": int(len(result.train_indexes)), "validation": int(len(result.validation_indexes)),
            "source": result.source}


STAGE = Stage(
    name="validation",
    version=1,
    config=ValidationConfig,
    inputs={"tokens": "tokenization"},
    run=make_carve,
    volatile=lambda cfg: ("fraction", "seed") if cfg.split == "dev" else (),  # nothing is held out of train
    describe=lambda cfg: cfg.split if cfg.split == "dev" else f"{cfg.split}, fraction {cfg.fraction:g}, seed {cfg.seed}",
    summary=summarize,
)
