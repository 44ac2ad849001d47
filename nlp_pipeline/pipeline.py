"""The pipeline: which stage instances exist, how they are wired, in data-flow order.

    configs = load_config(sets=["lsa.n_components=50"])   # defaults <- preset <- --config file <- --set
    instances(configs)                                     # [Instance(...), ...] corpus -> ... -> lsa
    run(configs, store, until="lsa")                       # RunResult with one StageReport per instance

Nothing here computes anything itself: stages do the work, core.runner does the caching.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from nlp_pipeline.core import config as config_layer
from nlp_pipeline.core.config import set_fields
from nlp_pipeline.core.errors import CannotApply, ConfigError
from nlp_pipeline.core.runner import Instance, PlanEntry, RunResult, execute, plan
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.models.architecture import ModelConfig
from nlp_pipeline.stages import (
    blend, classifier, corpus, embeddings, language_model, linear, lsa, numericalization, tokenization, validation,
)

STAGES = {
    stage.name: stage
    for stage in (corpus.STAGE, tokenization.STAGE, numericalization.STAGE, validation.STAGE, embeddings.STAGE, lsa.STAGE,
                  language_model.PRETRAIN_STAGE, language_model.FINETUNE_STAGE, classifier.STAGE, linear.STAGE, blend.STAGE)
}
SCHEMAS = {name: cls for stage_name, stage in STAGES.items()  # every table, [model] right before [pretrain_lm]
           for name, cls in ([("model", ModelConfig)] if stage_name == "pretrain_lm" else []) + [(stage_name, stage.config)]}
MOVED = {  # fields that moved to another table: an old config naming them gets a one-line error naming the new field
    "classifier.blend_linear": "blend.linear", "classifier.linear_refit": "blend.refit",
    "classifier.linear_ngrams": "linear.ngrams", "classifier.linear_c_grid": "linear.c_grid",
    "classifier.linear_chars": "linear.chars", "classifier.linear_nb": "linear.nb",
    **embeddings.MOVED,  # embeddings.window -> embeddings.word2vec.window and ..., embeddings.glove_* -> embeddings.glove.*
    **{f"{section}.{f.name}": f"model.{f.name}" for section in ("pretrain_lm", "finetune_lm", "classifier")
       for f in dataclasses.fields(ModelConfig)},
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
    """Resolve every stage's config: defaults <- preset <- config_file <- overrides (CLI options) <- sets.

    A setting that cannot apply (errors.CannotApply: a sub-table of a method not trained, a linear.* setting
    without the linear model, ...) is an error when the user set it; when only the preset did, it is dropped, as
    a default would be (--preset quick --set embeddings.methods=[\"word2vec\"] runs, without quick's GloVe lines)."""
    chosen = copy.deepcopy(preset_layer(preset)) if preset else {}
    user = ([config_layer.load_toml(config_file)] if config_file else []) + ([overrides] if overrides else [])
    user.append(config_layer.parse_sets(list(sets)))
    while True:
        try:
            configs = config_layer.resolve(SCHEMAS, [*default_layers(), chosen, *user], moved=MOVED)
            instances(configs)  # raises what cannot apply across tables
            return configs
        except CannotApply as exc:
            if config_layer.lookup(user, exc.field) or not config_layer.drop(chosen, exc.field):
                raise


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
    classifier reads as its input "lm_backward". [model] goes to the instances that build an encoder (each
    pretrain_lm that trains, else each finetune_lm without a pretrained LM); lm_settings() refuses settings
    that cannot apply.
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
    chains = lm_chains(configs)
    lm_settings(configs)
    emb = configs["embeddings"]
    general_source = pretrain.corpus
    if emb.general_corpus and general_source.lower() == "none":
        raise CannotApply("embeddings.general_corpus", "pretrain_lm.corpus = \"none\" names no general corpus; "
                          "set pretrain_lm.corpus or remove embeddings.general_corpus")
    trains_lm = trains_pretrain_lm(configs)
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
            language.append(Instance(f"pretrain_lm{suffix}", stage["pretrain_lm"],
                                     dataclasses.replace(chain, model=configs["model"]), {"data": "numericalization:general"},
                                     context))
            finetune_inputs["pretrained"] = f"pretrain_lm{suffix}"
        if init.lower() != "none":
            finetune_inputs["vectors"] = f"embeddings:{init}"
        builds = "pretrained" not in finetune_inputs  # no pretrained LM: fine-tuning starts from [model]
        language.append(Instance(f"finetune_lm{suffix}", stage["finetune_lm"], dataclasses.replace(
            finetune, backward=chain.backward, model=configs["model"] if builds else None), finetune_inputs))
        classifier_inputs["lm_backward" if chain.backward else "lm"] = f"finetune_lm{suffix}"
    language.append(Instance("classifier", stage["classifier"], classify, classifier_inputs))
    language += blend_instances(configs)
    return [*target, *vectors, Instance("lsa", stage["lsa"], configs["lsa"], {"tokens": "tokenization", "carve": "validation"}),
            *general, *language]


def lm_chains(configs: dict[str, Any]) -> list[Any]:
    """The pretrain_lm config of each LM chain classifier.direction asks for: forward, backward, or both."""
    pretrain, direction = configs["pretrain_lm"], configs["classifier"].direction
    return ([pretrain] if direction != "backward" else []) + ([backward_chain(pretrain)] if direction != "forward" else [])


def trains_pretrain_lm(configs: dict[str, Any]) -> bool:
    """Whether some pretrain_lm instance trains (weights "none" on pretrain_lm.corpus), rather than every one
    loading an exported LM or there being no pretraining (corpus "none")."""
    return configs["pretrain_lm"].corpus.lower() != "none" and any(not c.loads_weights for c in lm_chains(configs))


def lm_settings(configs: dict[str, Any]) -> None:
    """A ConfigError naming the first [model], [pretrain_lm] or [finetune_lm] setting that cannot apply: [model]
    when every chain loads an LM; pretrain_lm's training fields when no pretrain_lm trains (its runtime fields,
    language_model.VOLATILE, are left alone); the frozen phase without a pretrained LM; vectors_dim_mismatch
    without init_vectors; backward_weights without a backward chain. Those fields are in no key either."""
    pretrain, finetune, emb, chains = configs["pretrain_lm"], configs["finetune_lm"], configs["embeddings"], lm_chains(configs)
    if configs["classifier"].direction == "forward" and "pretrain_lm.backward_weights" in set_fields(pretrain, "pretrain_lm"):
        raise CannotApply("pretrain_lm.backward_weights", 'classifier.direction = "forward" reads no backward LM; '
                          'remove it or set classifier.direction = "both" (or "backward")')
    loading, no_corpus = all(c.loads_weights for c in chains), pretrain.corpus.lower() == "none"
    field = "backward_weights" if chains[0].backward else "weights"
    model = set_fields(configs["model"], "model")
    if loading and model:
        raise CannotApply(model[0], f"pretrain_lm.{field} = {chains[0].weights!r} fixes the architecture; "
                          f"set pretrain_lm.{field} = \"none\" to train another")
    if not trains_pretrain_lm(configs):
        keep = {"weights", "backward_weights", *language_model.VOLATILE, *(() if loading else ("corpus",)),
                *(("corpus", "max_documents") if emb.general_corpus else ())}
        unused = [name for name in set_fields(pretrain, "pretrain_lm") if name.split(".", 1)[1] not in keep]
        because = (f"pretrain_lm.{field} = {chains[0].weights!r} loads a trained LM; remove it or set pretrain_lm.{field} = "
                   f'"none" to train one') if loading else "pretrain_lm.corpus = 'none' pretrains nothing; remove it"
        if unused:
            raise CannotApply(unused[0], because)
    frozen = [n for n in set_fields(finetune, "finetune_lm") if n.endswith(("frozen_epochs", "frozen_learning_rate"))]
    if frozen and no_corpus and not any(c.loads_weights for c in chains):
        raise CannotApply(frozen[0], "without a pretrained LM (pretrain_lm.corpus = 'none') fine-tuning has no "
                          "frozen phase; remove it")
    if finetune.init_vectors.lower() == "none" and "finetune_lm.vectors_dim_mismatch" in set_fields(finetune, "finetune_lm"):
        raise CannotApply("finetune_lm.vectors_dim_mismatch", 'finetune_lm.init_vectors = "none" reads no word '
                          "vectors; remove it or set finetune_lm.init_vectors")


def blend_instances(configs: dict[str, Any]) -> list[Instance]:
    """linear (unless blend.linear is false) and blend, after the classifier. Without the linear model, a
    linear.* setting or blend.refit cannot apply: setting one is a ConfigError (and none is in a key)."""
    blending = configs["blend"]
    if not blending.linear:
        unused = set_fields(configs["linear"], "linear") + [f for f in set_fields(blending, "blend") if f == "blend.refit"]
        if unused:
            raise CannotApply(unused[0], f"blend.linear = false blends no linear model; remove {unused[0]} or set "
                              f"blend.linear = true")
        return [Instance("blend", STAGES["blend"], blending,
                         {"classifier": "classifier", "data": "numericalization", "carve": "validation"})]
    return [Instance("linear", STAGES["linear"], configs["linear"], {"data": "numericalization", "carve": "validation"}),
            Instance("blend", STAGES["blend"], blending,
                     {"classifier": "classifier", "data": "numericalization", "linear": "linear", "carve": "validation"})]


def text_executor(cfg: Any, tokenizing: Any, section: str = "numericalization") -> Any:
    """The numericalization (or corpus) config with tokenization's executor, ray_address and workers: one setting
    (tokenization.executor = "ray") puts corpus reading and both text stages on Ray. None of them is in a key."""
    copied = numericalization.VOLATILE
    by_hand = [name.split(".", 1)[1] for name in set_fields(cfg, section, copied)]
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
    """Resolved configs as TOML; None becomes "none", which the loader reads back as None. A nested table (a
    nested config, e.g. embeddings.glove) becomes a [embeddings.glove] section after its parent's fields."""
    lines: list[str] = []

    def write(section: str, table: dict) -> None:
        lines.append(f"[{section}]")
        lines.extend(f"{name} = {_toml_value(value)}" for name, value in table.items() if not isinstance(value, dict))
        lines.append("")
        for name, value in table.items():
            if isinstance(value, dict):
                write(f"{section}.{name}", value)

    for section, table in tables.items():
        write(section, table)
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
