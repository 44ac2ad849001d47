"""The pipeline: which stage instances exist, how they are wired, in data-flow order.

    configs = load_config(sets=["lsa.n_components=50"])   # defaults <- preset <- --config file <- --set
    instances(configs)                                     # [Instance(...), ...] corpus -> ... -> lsa
    run(configs, store, until="lsa")                       # RunResult with one StageReport per instance

Nothing here computes anything itself: stages do the work, core.runner does the caching.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from nlp_pipeline.core import config as config_layer
from nlp_pipeline.core.errors import ConfigError
from nlp_pipeline.core.runner import Instance, PlanEntry, RunResult, execute, plan
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.stages import (
    blend, classifier, corpus, embeddings, language_model, linear, lsa, numericalization, tokenization, validation,
)

STAGES = {
    stage.name: stage
    for stage in (corpus.STAGE, tokenization.STAGE, numericalization.STAGE, validation.STAGE, embeddings.STAGE, lsa.STAGE,
                  language_model.PRETRAIN_STAGE, language_model.FINETUNE_STAGE, classifier.STAGE, linear.STAGE, blend.STAGE)
}
SCHEMAS = {name: stage.config for name, stage in STAGES.items()}
MOVED = {  # fields that moved to another table: an old config naming them gets a one-line error naming the new field
    "classifier.blend_linear": "blend.linear", "classifier.linear_refit": "blend.refit",
    "classifier.linear_ngrams": "linear.ngrams", "classifier.linear_c_grid": "linear.c_grid",
    "classifier.linear_chars": "linear.chars", "classifier.linear_nb": "linear.nb",
    "classifier.validation_split": "validation.split", "classifier.validation_fraction": "validation.fraction",
    "lsa.validation_size": "validation.fraction",
}
PRESETS = ("quick",)


def default_layers() -> list[dict]:
    """The packaged default_config.toml as a config layer."""
    text = resources.files("nlp_pipeline").joinpath("default_config.toml").read_text(encoding="utf-8")
    import tomllib

    return [tomllib.loads(text)]


def preset_layer(name: str) -> dict:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    import tomllib

    return tomllib.loads(resources.files("nlp_pipeline").joinpath(f"presets/{name}.toml").read_text(encoding="utf-8"))


def load_config(
    config_file: str | Path | None = None,
    sets: Iterable[str] = (),
    preset: str | None = None,
    overrides: dict | None = None,
) -> dict[str, Any]:
    """Resolve every stage's config: defaults <- preset <- config_file <- overrides (CLI options) <- sets."""
    layers = default_layers()
    if preset:
        layers.append(preset_layer(preset))
    if config_file:
        layers.append(config_layer.load_toml(config_file))
    if overrides:
        layers.append(overrides)
    layers.append(config_layer.parse_sets(list(sets)))
    return config_layer.resolve(SCHEMAS, layers, moved=MOVED)


def instances(configs: dict[str, Any]) -> list[Instance]:
    """Stage instances in data-flow order for the resolved configs.

    pretrain_lm loads an exported LM when pretrain_lm.weights names one ("packaged" by default). Otherwise the
    general corpus (pretrain_lm.corpus, unless "none") goes through its own corpus, tokenization and
    numericalization instances (ids ending in ":general"), with the target's tokenization and vocabulary
    settings, and pretrain_lm trains on it; those instances also exist when embeddings.general_corpus asks
    for the general tokens. Embeddings get one instance per method ("embeddings:word2vec", ...). One
    "validation" instance carves the target's train/validation documents for lsa, classifier, linear and blend.
    classifier.direction = "backward" or "both" adds (or, for "backward", only builds) the backward chain
    "pretrain_lm:backward" -> "finetune_lm:backward" (weights from pretrain_lm.backward_weights), which the
    classifier reads as its input "lm_backward".
    """
    stage = STAGES
    numericalizing = text_executor(configs["numericalization"], configs["tokenization"])
    target = [
        Instance("corpus", stage["corpus"], text_executor(configs["corpus"], configs["tokenization"], "corpus"), {}),
        Instance("tokenization", stage["tokenization"], configs["tokenization"], {"corpus": "corpus"}),
        Instance("numericalization", stage["numericalization"], numericalizing, {"tokens": "tokenization"}),
        Instance("validation", stage["validation"], configs["validation"], {"tokens": "tokenization"}),
    ]
    pretrain, finetune, classify = configs["pretrain_lm"], configs["finetune_lm"], configs["classifier"]
    for section, cfg in (("pretrain_lm", pretrain), ("finetune_lm", finetune)):
        if cfg.backward:
            raise ConfigError(f"{section}.backward is set by the pipeline, not by hand; for a backward language model "
                              f"set classifier.direction = \"backward\" (or \"both\" for a forward + backward ensemble)")
    chains = [pretrain] if classify.direction != "backward" else []
    if classify.direction != "forward":
        chains.append(backward_chain(pretrain))
    emb = configs["embeddings"]
    general_source = pretrain.corpus
    trains_lm = any(not p.loads_weights for p in chains) and general_source.lower() != "none"
    general: list[Instance] = []
    context = f"the pretraining corpus (pretrain_lm.corpus = {general_source!r}; 'none' skips pretraining)"
    if general_source.lower() != "none" and (trains_lm or emb.general_corpus):
        general_corpus = dataclasses.replace(
            text_executor(corpus.CorpusConfig(), configs["tokenization"], "corpus"), source=general_source,
            max_documents=pretrain.max_documents,
            # a Hub dataset (hf:wikitext:wikitext-103-raw-v1) is read as unlabelled text, as a pretraining corpus
            # is; cards and paths keep label_field None (their keys unchanged: their text is unlabelled anyway)
            **({"label_field": ""} if general_source.startswith("hf:") else {}),
        )
        general = [
            Instance("corpus:general", stage["corpus"], general_corpus, {}, context),
            Instance("tokenization:general", stage["tokenization"], configs["tokenization"], {"corpus": "corpus:general"},
                     context),
            Instance("numericalization:general", stage["numericalization"], numericalizing,
                     {"tokens": "tokenization:general"}, context),
        ]
    vectors = []
    for method in emb.methods:
        inputs = {"tokens": "tokenization"}
        if emb.general_corpus and general:
            inputs["general"] = "tokenization:general"
        vectors.append(Instance(f"embeddings:{method}", stage["embeddings"], dataclasses.replace(emb, method=method), inputs))
    init = finetune.init_vectors
    if init.lower() != "none" and init not in emb.methods:
        raise ConfigError(
            f"finetune_lm.init_vectors = {init!r} but embeddings.methods = {emb.methods}; add it to embeddings.methods or set it to none"
        )
    language = []
    classifier_inputs = {"data": "numericalization", "carve": "validation"}
    for chain in chains:
        suffix = ":backward" if chain.backward else ""
        weights_field = "backward_weights" if chain.backward else "weights"
        finetune_inputs = {"data": "numericalization"}
        if chain.loads_weights:
            language.append(Instance(f"pretrain_lm{suffix}", stage["pretrain_lm"], chain, {},
                                     f"pretrain_lm.{weights_field} = {chain.weights!r} ('none' trains one on pretrain_lm.corpus)"))
            finetune_inputs["pretrained"] = f"pretrain_lm{suffix}"
        elif general_source.lower() != "none":
            language.append(Instance(f"pretrain_lm{suffix}", stage["pretrain_lm"], chain, {"data": "numericalization:general"},
                                     context))
            finetune_inputs["pretrained"] = f"pretrain_lm{suffix}"
        if init.lower() != "none":
            finetune_inputs["vectors"] = f"embeddings:{init}"
        language.append(Instance(f"finetune_lm{suffix}", stage["finetune_lm"],
                                 dataclasses.replace(finetune, backward=chain.backward), finetune_inputs))
        classifier_inputs["lm_backward" if chain.backward else "lm"] = f"finetune_lm{suffix}"
    language.append(Instance("classifier", stage["classifier"], classify, classifier_inputs))
    language += blend_instances(configs)
    return [*target, *vectors, Instance("lsa", stage["lsa"], configs["lsa"], {"tokens": "tokenization", "carve": "validation"}),
            *general, *language]


def blend_instances(configs: dict[str, Any]) -> list[Instance]:
    """linear (unless blend.linear is false) and blend, after the classifier. Without the linear model, a
    linear.* setting or blend.refit cannot apply: setting one is a ConfigError (and none is in a key)."""
    blending = configs["blend"]
    if not blending.linear:
        unused = [f"linear.{f.name}" for f in dataclasses.fields(linear.LinearConfig)
                  if getattr(configs["linear"], f.name) != getattr(linear.LinearConfig(), f.name)]
        unused += ["blend.refit"] if blending.refit != blend.BlendConfig().refit else []
        if unused:
            raise ConfigError(f"{unused[0]} cannot apply: blend.linear = false blends no linear model; remove "
                              f"{unused[0]} or set blend.linear = true")
        return [Instance("blend", STAGES["blend"], blending,
                         {"classifier": "classifier", "data": "numericalization", "carve": "validation"})]
    return [Instance("linear", STAGES["linear"], configs["linear"], {"data": "numericalization", "carve": "validation"}),
            Instance("blend", STAGES["blend"], blending,
                     {"classifier": "classifier", "data": "numericalization", "linear": "linear", "carve": "validation"})]


def text_executor(cfg: Any, tokenizing: Any, section: str = "numericalization") -> Any:
    """The numericalization (or corpus) config with tokenization's executor, ray_address and workers: one setting
    (tokenization.executor = "ray") puts corpus reading and both text stages on Ray. None of them is in a key."""
    copied = numericalization.VOLATILE
    by_hand = [name for name in copied if getattr(cfg, name) != getattr(type(cfg)(), name)]
    if by_hand:
        raise ConfigError(f"{section}.{by_hand[0]} is set by the pipeline from tokenization.{by_hand[0]}, not by "
                          f"hand; set tokenization.{by_hand[0]} (it applies to corpus reading and both text stages)")
    return dataclasses.replace(cfg, **{name: getattr(tokenizing, name) for name in copied})


def backward_chain(pretrain: Any) -> Any:
    """The pretrain_lm config of the backward chain: backward, weights from backward_weights ("auto" follows
    weights when that is "packaged" or "none"; an exported forward LM has no backward twin to follow)."""
    weights = pretrain.backward_weights
    if weights.lower() == "auto":
        if pretrain.weights.lower() not in ("packaged", "none"):
            raise ConfigError(f"pretrain_lm.weights = {pretrain.weights!r} is a forward language model; a backward classifier "
                              f"also needs pretrain_lm.backward_weights: a backward LM folder (export lm --source "
                              f"pretrain_lm:backward), \"packaged\" or \"none\"")
        weights = pretrain.weights.lower()
    return dataclasses.replace(pretrain, backward=True, weights=weights)


def show(configs: dict[str, Any], store: ArtifactStore) -> list[PlanEntry]:
    """The plan: every instance with its key and whether it is cached. Loads nothing."""
    return plan(instances(configs), store)


def run(
    configs: dict[str, Any],
    store: ArtifactStore,
    until: str | None = None,
    force: Iterable[str] = (),
    keep: Iterable[str] = (),
    echo: Callable[[str], None] | None = None,
    coordinator: Any = "auto",
    quiet_hits: bool = False,
) -> RunResult:
    """Plan and execute the pipeline. coordinator "auto": under torchrun, join the process group and run as
    one of its processes (models.distributed.coordinator()); None: this process alone. quiet_hits: echo no
    cache-hit lines (refusals, recomputes and waits still print)."""
    if isinstance(coordinator, str):
        from nlp_pipeline.models import distributed

        coordinator = distributed.coordinator()
    return execute(instances(configs), store, until=until, force=force, keep=keep, echo=echo, coordinator=coordinator,
                   quiet_hits=quiet_hits)


def run_name(configs: dict[str, Any]) -> str:
    """A valid run name (runs.check_name) for runs/<name>/: the corpus card name or the path's stem."""
    source = configs["corpus"].source
    stem = Path(source.rstrip("/")).stem if ("/" in source or os.sep in source) else source
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem.replace("hf:", "hf-")).lstrip("._-")[:100].rstrip("-")
    return name or "run"


def corpus_cards() -> dict[str, dict]:
    """The corpus cards `--corpus NAME` accepts, by name."""
    return corpus.list_cards()


def to_toml(tables: dict[str, dict]) -> str:
    """Resolved configs as TOML; None becomes "none", which the loader reads back as None."""
    lines = []
    for section, table in tables.items():
        lines.append(f"[{section}]")
        for name, value in table.items():
            lines.append(f"{name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} to TOML")
