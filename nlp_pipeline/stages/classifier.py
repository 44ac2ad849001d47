"""classifier: Numericalized labelled texts + the validation Carve (+ an optional fine-tuned LanguageModel) -> ClassifierResult.

ULMFiT step 3. The encoder starts from the fine-tuned LM (its vocabulary must be the data's), or from random
weights with `model`'s architecture when lm is None (direct calls; the pipeline always gives an LM). On
top: concat pooling [last real step, max, mean] -> BatchNorm/dropout/linear/ReLU -> BatchNorm/dropout/linear
-> logits. Training runs in stages of gradual
unfreezing (stage 1 trains the head, stage 2 also the top RNN layer, ..., the last stage everything) with
discriminative learning rates (lr / 2.6 ** depth) and a one-cycle (or STLR) schedule per stage; batches are
length-sorted within shuffled chunks and padded at the end.

Targets (the corpus's target_type): one class per text (softmax, cross-entropy), a set of classes (one sigmoid
per label, binary cross-entropy, a label predicted at p >= a threshold chosen on validation among 0.05 ... 0.9
for the best micro-F1, and kept in the model), or a number (one output, squared error on the
target standardised by the train split's mean and std; predictions come back in the target's units).
label_smoothing smooths the training loss's targets of one class per text (multi-label and regression targets
train on their plain loss); validation always scores the plain loss.
Model selection: after every epoch the validation set is scored and the best epoch (the target type's primary
metric: accuracy, micro-F1 or R², then loss) is kept. The train and validation documents are the carve's
(stages/validation.py: the corpus's labelled dev split, or a seeded slice of train; [validation] settles
which). The test split is predicted once, at the end, to report.
Ensemble (members > 1): that many classifiers are trained the same way from the same LM with seeds seed,
seed + 1, ... and their probabilities averaged (models.heads.ClassifierEnsemble); each selects its own epoch.
Direction (ULMFiT's bidirectional ensemble): "backward" trains on the encoder of a backward LM (lm_backward) and
reads each document right to left; "both" trains `members` classifiers of each direction, each from its own LM,
and averages all of them; metrics["directions"] keeps the validation score of each direction alone and of both.
The RNN's validation probabilities and the carve's train and validation documents are kept in the result: the
blend stage (stages/blend.py) weighs them against the linear model fitted on the same carve.
Under torchrun it trains data-parallel (models/distributed.py): batch_size stays the global batch, each
process trains on its share of every batch, validation and test are scored in shares and gathered, so every
process selects the same epoch; the process count is in no key.
Limits: one regression target per model; one multi-label threshold for all labels; documents are cut
to their first max_length tokens (sentence and paragraph corpora are unaffected; long reviews lose their ends).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nlp_pipeline.artifacts import Carve, ClassifierResult, LanguageModel, Numericalized
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.models.architecture import ModelConfig
from nlp_pipeline.targets import PRIMARY, best_threshold, carve_of, classification_metrics, score  # noqa: F401 (classification_metrics: re-exported)

DIRECTIONS = {"forward": (False,), "backward": (True,), "both": (False, True)}  # direction -> backward flag of each chain


@dataclass(frozen=True)
class ClassifierConfig:
    model: ModelConfig | None = field(default=None, metadata={"set_by": "[model]"})  # the encoder architecture
                                        # without an LM (None: ModelConfig()); with one, the LM's (then it must be None)
    embedding_dropout: float = 0.05     # whole embedding rows dropped (times dropout_scale)
    input_dropout: float = 0.4          # locked dropout on the embedding output (times dropout_scale)
    hidden_dropout: float = 0.3         # locked dropout between RNN layers (times dropout_scale)
    weight_dropout: float = 0.5         # DropConnect on hidden-to-hidden weights (times dropout_scale)
    head_dropout: float = 0.4           # dropout before the head's first linear layer (times dropout_scale)
    final_dropout: float = 0.1          # dropout before the output layer (times dropout_scale)
    dropout_scale: float = 0.5          # multiplies every dropout above (fastai's drop_mult; ULMFiT classifiers use 0.5)
    head_hidden_dim: int = 50           # units of the head's hidden layer
    batch_size: int = 64                # documents per batch
    min_batches_per_epoch: int = 16     # a small labelled set trains in smaller batches (down to 8 documents) so that an epoch still takes this many optimizer steps; 0 = always batch_size
    max_length: int = 500               # documents are cut to their first max_length tokens
    gradual_unfreezing: bool = True     # stage i trains the top i+1 layer groups, the last stage all; false = all groups always
    stage_epochs: list[int] = field(default_factory=lambda: [1, 1, 1, 12])                # epochs of each stage (the best epoch is kept)
    stage_learning_rates: list[float] = field(default_factory=lambda: [2e-2, 1e-2, 1e-2, 1e-2])  # peak LR (top group) of each stage
    discriminative_factor: float = 2.6  # layer group i of n gets lr / factor ** (n - 1 - i); 1 = same LR for all
    schedule: str = "one_cycle"         # schedule within each stage: "one_cycle", "stlr" or "constant"
    warmup_fraction: float = 0.25       # share of a stage's steps rising to its peak LR
    adam_beta1: float = 0.8             # Adam momentum (fastai's classifier uses 0.8)
    adam_beta2: float = 0.99            # Adam squared-gradient decay
    weight_decay: float = 0.01          # decoupled (AdamW) weight decay on matrices; biases/norms are not decayed
    clip: float = 0.25                  # maximum gradient norm; 0 = no clipping
    label_smoothing: float = 0.2        # one class per text: train against (1 - this) x the label + this / classes on every class; 0 = plain cross-entropy (other targets: always plain)
    patience: int = 3                   # stop a stage after this many epochs without a better validation score; 0 = never
    average_weights: bool = False       # also try the mean of the last stage's weights over its epochs after warm-up (SWA), kept if it scores better
    members: int = 1                    # RNN classifiers trained from the same LM with seeds seed, seed+1, ...; their probabilities are averaged (n times the training time)
    direction: str = "forward"          # "forward", "backward" (from a backward LM: texts read right to left) or "both": members classifiers of each direction, averaged (ULMFiT's ensemble; twice the LM fine-tuning and classifier time)
    seed: int = 0                       # seeds weights, dropout and batch order (the carve's seed is validation.seed)
    precision: str = "auto"             # "auto" (bfloat16 where the CPU/GPU does it natively, else float32), "float32", "bfloat16"
    device: str = "auto"                # "auto", "cpu" or "cuda" (volatile)
    num_threads: int = 0                # CPU threads for torch; 0 = every usable core (volatile)

    def validate(self) -> None:
        if len(self.stage_epochs) != len(self.stage_learning_rates) or not self.stage_epochs:
            raise ConfigError(
                f"classifier.stage_epochs ({len(self.stage_epochs)} values) and classifier.stage_learning_rates "
                f"({len(self.stage_learning_rates)} values) must be non-empty and of equal length"
            )
        if any(e < 0 for e in self.stage_epochs) or any(lr <= 0 for lr in self.stage_learning_rates):
            raise ConfigError("classifier.stage_epochs must be >= 0 and stage_learning_rates > 0")
        for name in ("embedding_dropout", "input_dropout", "hidden_dropout", "weight_dropout", "head_dropout", "final_dropout"):
            if not 0.0 <= getattr(self, name) * self.dropout_scale < 1.0:
                raise ConfigError(f"classifier.{name} x dropout_scale must be in [0, 1)")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"classifier.direction must be one of {list(DIRECTIONS)}, got {self.direction!r}")
        if not 1 <= self.members <= 10:
            raise ConfigError(f"classifier.members must be between 1 and 10, got {self.members}")
        if self.min_batches_per_epoch < 0:
            raise ConfigError(f"classifier.min_batches_per_epoch must be >= 0, got {self.min_batches_per_epoch}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"classifier.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.max_length < 1 or self.batch_size < 2:
            raise ConfigError("classifier.max_length must be >= 1 and batch_size >= 2 (BatchNorm needs two rows)")


def train_batch_size(cfg: ClassifierConfig, n_train: int, processes: int = 1) -> int:
    """The batch size training uses: batch_size, or less for a train set smaller than batch_size x
    min_batches_per_epoch, so that few labels still get optimizer steps (90 documents: 8 per batch, 12 steps
    an epoch instead of 2); never below 8 documents, nor below 2 per process.

    train_batch_size(ClassifierConfig(), 90) -> 8; (..., 900) -> 56; (..., 5000) -> 64
    """
    if cfg.min_batches_per_epoch <= 0:
        return cfg.batch_size
    return min(cfg.batch_size, max(8, 2 * processes, n_train // cfg.min_batches_per_epoch))


def _stages(cfg: ClassifierConfig, n_groups: int) -> list[tuple[int, int, float]]:
    """(trainable groups, epochs, lr) per stage: 1, 2, ... groups, the last stage all of them."""
    out = []
    last = len(cfg.stage_epochs) - 1
    for i, (epochs, lr) in enumerate(zip(cfg.stage_epochs, cfg.stage_learning_rates)):
        n = (n_groups if i == last else min(i + 1, n_groups)) if cfg.gradual_unfreezing else n_groups
        if epochs > 0:
            out.append((n, epochs, lr))
    return out


def _labelled_train(data: Numericalized) -> tuple[np.ndarray, int, np.ndarray]:
    """(labels, pad id, labelled train documents), after checking the labels, xxpad and the train split."""
    from nlp_pipeline.models.batching import pad_id

    labels = np.asarray(data.labels)
    k = len(data.label_names)
    target = data.target_type
    if target != "regression" and k < 2:
        raise DataError(f"classifier needs at least 2 labels, the corpus has {k}; check the corpus label field")
    if target == "class" and labels.max(initial=-1) >= k:
        raise DataError(f"label id {int(labels.max())} is out of range for {k} label names")
    if target == "multi_label" and (labels.ndim != 2 or labels.shape[1] != k):
        raise DataError(f"multi-label indicators of shape {labels.shape} do not fit {k} label names")
    if target == "regression" and (labels.dtype.kind != "f" or k != 1):
        raise DataError(f"regression needs one float target per document, got {labels.dtype} labels and {k} names")
    pad = pad_id(data.vocab)
    train = data.indices("train", labelled=True)
    if len(train) < 2:
        raise DataError("classifier needs labelled train documents; the corpus has fewer than 2")
    return labels, pad, train


def _target_scale(data: Numericalized) -> tuple[float, float]:
    """(mean, std) of the labelled train split's regression target (std 1 when constant); (0, 1) otherwise."""
    if data.target_type != "regression":
        return 0.0, 1.0
    values = np.asarray(data.labels)[data.indices("train", labelled=True)].astype(np.float64)
    std = float(values.std()) if len(values) else 0.0
    return (float(values.mean()) if len(values) else 0.0), (std if std > 0 else 1.0)


def build_classifier_model(cfg: ClassifierConfig, data: Numericalized, lm: LanguageModel | None = None,
                           backward: bool = False) -> tuple[Any, str]:
    """(the ClassifierNet this stage starts training from, its initialisation: "random" or "language model").

    The encoder is the fine-tuned LM's (its vocabulary must be the data's; it must read texts the way `backward`
    says; cfg.model must then be None) or random with cfg.model's architecture; dropouts are cfg's times
    dropout_scale. The model is on the CPU; its random weights come from torch's generator, so seed it first
    (the stage and range_test build inside training_session(..., cfg.seed)).
    """
    import torch

    from nlp_pipeline.models.batching import pad_id
    from nlp_pipeline.models.heads import ClassifierNet, build_encoder
    from nlp_pipeline.models.rnn import Dropouts

    if lm is not None and cfg.model is not None:
        raise ConfigError("classifier.model cannot apply: the encoder is the language model's; give no LM to train "
                          "one with [model]")
    if lm is not None and list(lm.vocab.itos) != list(data.vocab.itos):
        raise DataError(
            f"the language model's vocabulary ({len(lm.vocab)} tokens) differs from the classifier data's "
            f"({len(data.vocab)}); fine-tune the LM on the same numericalization the classifier reads"
        )
    if lm is not None and lm.direction != ("backward" if backward else "forward"):
        raise DataError(f"a {'backward' if backward else 'forward'} classifier was given a {lm.direction} language model")
    dropouts = Dropouts(cfg.embedding_dropout, cfg.input_dropout, cfg.hidden_dropout, cfg.weight_dropout).scaled(cfg.dropout_scale)
    head_dropouts = (cfg.head_dropout * cfg.dropout_scale, cfg.final_dropout * cfg.dropout_scale)
    if lm is None:
        encoder = build_encoder((cfg.model or ModelConfig()).arch(len(data.vocab), pad_id(data.vocab)), dropouts)
        initialisation = "random"
    else:
        encoder = build_encoder(lm.arch, dropouts)
        encoder_state = {k[len("encoder."):]: torch.tensor(np.asarray(v)) for k, v in lm.state_dict.items()
                         if k.startswith("encoder.")}
        encoder.load_state_dict(encoder_state)
        initialisation = "language model"
    outputs = 1 if data.target_type == "regression" else len(data.label_names)
    return ClassifierNet(encoder, outputs, cfg.head_hidden_dim, head_dropouts, data.target_type,
                         _target_scale(data), backward=backward), initialisation


def _member_plan(cfg: ClassifierConfig, lm: LanguageModel | None,
                 lm_backward: LanguageModel | None) -> list[tuple[LanguageModel | None, bool, dict[str, Any]]]:
    """(LM, backward, history tag) of every member, direction by direction: cfg.members of each."""
    if cfg.direction == "forward" and lm_backward is not None:
        raise ConfigError("the classifier was given a backward language model but classifier.direction = \"forward\"")
    flags = [backward for backward in DIRECTIONS[cfg.direction] for _ in range(cfg.members)]
    plan = []
    for index, backward in enumerate(flags):
        tag: dict[str, Any] = {"member": index + 1} if len(flags) > 1 else {}
        if cfg.direction == "both":
            tag["direction"] = "backward" if backward else "forward"
        plan.append((lm_backward if backward else lm, backward, tag))
    return plan


def train_classifier(cfg: ClassifierConfig, data: Numericalized, lm: LanguageModel | None = None,
                     lm_backward: LanguageModel | None = None, carve: Carve | None = None) -> ClassifierResult:
    """Fine-tune a classifier on the carve's train documents; score its validation documents each epoch, test once.
    lm is the forward fine-tuned LM, lm_backward the backward one (classifier.direction = backward or both);
    carve None: [validation]'s default carve of data."""
    from nlp_pipeline.models import distributed
    from nlp_pipeline.models.device import resolve_precision, training_session
    from nlp_pipeline.models.training import fit_classifier, predict_classifier_sharded, state_dict_to_numpy

    started = time.perf_counter()
    labels, pad, train = _labelled_train(data)
    target, names = data.target_type, list(data.label_names)
    carve = carve_of(data, carve)
    train, valid, valid_source = np.asarray(carve.train_indexes), np.asarray(carve.validation_indexes), carve.source
    if len(valid) == 0:
        raise DataError("no validation documents could be carved from train; raise validation.fraction")
    test = data.indices("test", labelled=True)

    distributed.setup()  # under torchrun: join the process group before a GPU is picked
    processes = distributed.world_size()
    if processes > 1 and cfg.batch_size < 2 * processes:
        raise ConfigError(f"classifier.batch_size ({cfg.batch_size}) must be at least 2 x the number of processes "
                          f"({processes}): BatchNorm needs 2 documents in each process's share of a batch")
    with training_session(cfg.device, distributed.threads_per_process(cfg.num_threads), cfg.seed) as device:
        import torch

        from nlp_pipeline.models.heads import ClassifierEnsemble

        dtype = resolve_precision(device, cfg.precision)
        ids, offsets = np.asarray(data.ids), np.asarray(data.offsets)
        nets, history, selected = [], [], []
        plan = _member_plan(cfg, lm, lm_backward)
        batch_size = train_batch_size(cfg, len(train), processes)
        for member, (member_lm, backward, tag) in enumerate(plan):
            if member:  # member 0 draws from the session's seeding, as a single classifier does
                torch.manual_seed(cfg.seed + member)
            model, initialisation = build_classifier_model(cfg, data, member_lm, backward)
            model.to(device)
            rows, best_state, best_row = fit_classifier(
                model, ids, offsets, labels, train, valid, stages=_stages(cfg, len(model.layer_groups())),
                discriminative_factor=cfg.discriminative_factor, batch_size=batch_size, max_length=cfg.max_length,
                pad_id=pad, schedule=cfg.schedule, warmup_fraction=cfg.warmup_fraction, weight_decay=cfg.weight_decay,
                betas=(cfg.adam_beta1, cfg.adam_beta2), clip=cfg.clip, patience=cfg.patience, average=cfg.average_weights,
                label_smoothing=cfg.label_smoothing,
                rng=np.random.default_rng(cfg.seed + 1 + 1000 * member), device=device, dtype=dtype,
                progress_label=(f"classifier {member + 1}/{len(plan)}" if len(plan) > 1 else "classifier")
                + (" backward" if backward else ""),
            )
            model.load_state_dict(best_state)
            nets.append(model)
            history += [dict(r, **tag) for r in rows]
            selected.append(dict(best_row, **tag))
        model = ClassifierEnsemble(nets) if len(nets) > 1 else nets[0]
        best_row = selected[0]

        def predict(docs: np.ndarray) -> np.ndarray:
            return predict_classifier_sharded(model, ids, offsets, docs, pad, cfg.max_length, cfg.batch_size, device, dtype)

        def scored(docs: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
            return score(target, labels[docs], outputs, names, model.threshold)

        val_probs = predict(valid)
        if target == "multi_label":  # the (ensemble's) decision threshold: the best micro-F1 on validation
            model.threshold = best_threshold(labels[valid], val_probs)
        metrics: dict[str, Any] = {"selected": best_row, "initialisation": initialisation, "train_documents": int(len(train)),
                                   "batch_size": batch_size}
        if len(plan) > 1:  # each member's best epoch; metrics["selected"] is the first's
            metrics["members"] = selected
        if cfg.direction == "both":  # each direction alone and both together, on validation (the RNN part)
            metrics["directions"] = {}
            for way, flag in (("forward", False), ("backward", True)):
                part = [net for net, (_, backward, _) in zip(nets, plan) if backward == flag]
                alone = ClassifierEnsemble(part) if len(part) > 1 else part[0]
                probs = predict_classifier_sharded(alone, ids, offsets, valid, pad, cfg.max_length, cfg.batch_size, device, dtype)
                metrics["directions"][way] = scored(valid, probs)[PRIMARY[target]]
            metrics["directions"]["both"] = scored(valid, val_probs)[PRIMARY[target]]
        metrics["validation"] = dict(scored(valid, val_probs), source=valid_source)
        test_probs = np.zeros((0, model.num_classes), np.float32)
        if len(test):  # the only time test labels are read
            test_probs = predict(test)
            metrics["test"] = scored(test, test_probs)
        metrics.update(seconds=round(time.perf_counter() - started, 1), device=device.type,
                       precision=str(dtype).replace("torch.", "") if dtype is not None else "float32")
        if processes > 1:
            metrics["processes"] = processes
        return ClassifierResult(
            arch=model.arch(), state_dict=state_dict_to_numpy(model.cpu()), vocab=data.vocab,
            label_names=list(data.label_names), max_length=cfg.max_length, tokenizer=dict(data.tokenizer),
            history=history, metrics=metrics, validation_indexes=valid.astype(np.int64),
            test_indexes=test.astype(np.int64), test_labels=np.array(labels[test]), test_probabilities=test_probs,
            target_type=target, train_indexes=train.astype(np.int64), validation_probabilities=np.asarray(val_probs, np.float32),
            seed=cfg.seed,
        )


def range_test(cfg: ClassifierConfig, data: Numericalized, lm: LanguageModel | None = None, carve: Carve | None = None,
               **options: Any) -> dict[str, Any]:
    """The learning-rate range test (models/lr_find.py) on the model this stage would start training from, on
    the documents it trains on (the carve's train documents; carve None: [validation]'s default carve of data);
    options: start_lr, end_lr, num_steps, trainable_groups (None = stage 1's).
    The result also says the model's initialisation; nothing is trained or kept."""
    from nlp_pipeline.models.device import training_session
    from nlp_pipeline.models.lr_find import classifier_range_test

    _labelled_train(data)
    train = np.asarray(carve_of(data, carve).train_indexes)
    with training_session(cfg.device, cfg.num_threads, cfg.seed) as device:
        model, initialisation = build_classifier_model(cfg, data, lm)
        result = classifier_range_test(model, cfg, data, train, device, **options)
    result["initialisation"] = initialisation
    return result


def summarize(result: ClassifierResult) -> dict:
    test, primary = result.metrics.get("test", {}), PRIMARY[result.target_type]
    out = {f"val_{primary}": result.metrics.get("validation", {}).get(primary), f"test_{primary}": test.get(primary)}
    if result.target_type != "regression":
        out["test_macro_f1"] = test.get("macro_f1")
    return dict(out, seconds=result.metrics.get("seconds"))


STAGE = Stage(
    name="classifier",
    version=5,  # 2: multi-label and regression targets (the multi-label threshold chosen on validation);
                # 3: targets.holdout (at most n - 1 of a label's n documents go to validation)
                # 4: the blend's linear model refitted on train + validation (linear_refit), NB scaling (linear_nb)
                # 5: the RNN alone: the linear model and the blend are the linear and blend stages; keeps train
                #    indexes, validation probabilities and the seed for them
    config=ClassifierConfig,
    inputs={"data": "numericalization", "lm": "finetune_lm", "lm_backward": "finetune_lm", "carve": "validation"},
    optional=("lm", "lm_backward"),
    run=train_classifier,
    # device and threads (and the number of torchrun processes, which no config field holds) never change the result;
    # average_weights and label_smoothing off are left out so that adding the fields kept every classifier key
    volatile=lambda cfg: (("device", "num_threads") + (() if cfg.average_weights else ("average_weights",))
                          + (() if cfg.label_smoothing else ("label_smoothing",))),
    collective=True,
    describe=lambda cfg: (f"{sum(cfg.stage_epochs)} epochs in {len(cfg.stage_epochs)} stages, "
                          f"lr={cfg.stage_learning_rates[0]:g}..{cfg.stage_learning_rates[-1]:g}"),
    summary=summarize,
)
