"""pretrain_lm and finetune_lm: Numericalized texts -> LanguageModel (an AWD-LSTM or AWD-GRU).

pretrain_lm either loads an exported LM folder (`weights`: "packaged", the general-English LM shipped in
this package, or a path written by `nlp-pipeline export lm`; its files' sha256 is the cache key) or, with
weights = "none", trains from random weights on a general corpus (every document of every split), its embedding
optionally started from word vectors distilled from a sentence encoder (init_vectors = "minilm"). finetune_lm
adapts a pretrained LM to the target corpus (ULMFiT step 2): it reads ALL the target texts (train, dev,
unsup, and test unless include_test_texts = false; labels are never read), maps the pretrained vocabulary
onto the target one (shared tokens keep their rows; new tokens start at the mean embedding row and the mean
decoder bias), trains the tied embedding/decoder alone for `frozen_epochs`, then every layer with
discriminative learning rates (lr / discriminative_factor ** depth). Without a pretrained LM it trains the
target LM from scratch (the "no pretraining" ablation), optionally starting its embedding from word vectors.
Both hold out `validation_fraction` of the documents (seeded) and report perplexity on them every epoch, always
over the whole vocabulary; the training loss is a softmax over the batch's target words plus `softmax_sample`
random others when that is > 0 (finetune_lm's default, decision 0025), else over the whole vocabulary.
With `backward` (set by the pipeline for classifier.direction = "backward" or "both") every document is read
right to left; the artifact's arch says backward = true, and a backward chain refuses a forward LM.

Under torchrun both train data-parallel (models/distributed.py): batch_size stays the global number of rows,
each process trains on its share of them; the artifact is the same kind, under the same key.

Training is a long job that survives interruption: under the runner, the loop checkpoints every
`checkpoint_minutes` (core/checkpoints.py) and a rerun of the same key resumes from the last checkpoint to
the same weights as an uninterrupted run.

Architecture: the pipeline sets `model` ([model], models/architecture.py) on the instance that builds the
encoder, pretrain_lm when it trains, else finetune_lm; a fine-tuned LM keeps the pretrained one's (its `model`
is None). Settings that cannot apply are in no key: frozen_epochs and frozen_learning_rate without a pretrained
LM, vectors_dim_mismatch with init_vectors = "none", every field but the files when pretrain_lm loads weights,
pretrain_lm's init_vectors while it is "none".
Limits: one device per process; variable BPTT follows AWD-LSTM (lengths
N(bptt or bptt/2, 5), at least 5, LR scaled by length / bptt).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nlp_pipeline.artifacts import LanguageModel, Numericalized, WordVectors, split_code
from nlp_pipeline.core import checkpoints
from nlp_pipeline.core.errors import ConfigError, DataError
from nlp_pipeline.core.stage import Stage
from nlp_pipeline.models.architecture import ModelConfig

SCHEDULES = ("stlr", "one_cycle", "constant")
VECTOR_MISMATCH = ("error", "project")
PRETRAIN_INIT_VECTORS = ("none", "minilm")
log = logging.getLogger("nlp_pipeline")


@dataclass(frozen=True)
class LanguageModelConfig:
    """Settings shared by pretraining and fine-tuning (each stage has its own table and defaults)."""

    model: ModelConfig | None = field(default=None, metadata={"set_by": "[model]"})  # the architecture when this
                                        # instance builds the encoder (None: the upstream LM's; direct calls: ModelConfig())
    embedding_dropout: float = 0.02     # probability of dropping a whole word type's embedding row per batch (times dropout_scale)
    input_dropout: float = 0.25         # locked dropout on the embedding output (times dropout_scale)
    hidden_dropout: float = 0.15        # locked dropout between RNN layers (times dropout_scale)
    weight_dropout: float = 0.2         # DropConnect on hidden-to-hidden weights (times dropout_scale)
    output_dropout: float = 0.1         # locked dropout on the last layer's output, before the decoder (times dropout_scale)
    dropout_scale: float = 1.0          # multiplies the five dropouts above (fastai's drop_mult)
    activation_regularization: float = 2.0           # AR: alpha x mean squared (dropped) last-layer output
    temporal_activation_regularization: float = 1.0  # TAR: beta x mean squared change of the raw output between steps
    bptt_length: int = 70               # tokens per backpropagation-through-time window (the mean when variable_bptt)
    variable_bptt: bool = True          # AWD-LSTM random window lengths; false = fixed bptt_length
    batch_size: int = 64                # parallel rows the token stream is cut into
    softmax_sample: int = 0             # 0 = the training loss is a softmax over the whole vocabulary; N = over the batch's target words plus N random others (faster; validation perplexity stays full)
    epochs: int = 2                     # passes over the training documents (~1M general tokens: ~3.5 min each on 2 cores)
    learning_rate: float = 5e-3         # peak learning rate (of the top layer group)
    discriminative_factor: float = 1.0  # layer group i of n gets learning_rate / factor ** (n - 1 - i); 1 = same everywhere
    schedule: str = "one_cycle"         # learning-rate schedule over all epochs: "one_cycle", "stlr" or "constant"
    warmup_fraction: float = 0.25       # share of steps rising to the peak LR (stlr's cut_frac)
    adam_beta1: float = 0.7             # Adam momentum (AWD-LSTM / ULMFiT use 0.7)
    adam_beta2: float = 0.99            # Adam squared-gradient decay
    weight_decay: float = 0.01          # decoupled (AdamW) weight decay on matrices; biases are not decayed
    clip: float = 0.25                  # maximum gradient norm; 0 = no clipping
    validation_fraction: float = 0.05   # share of documents (at least one) held out for perplexity each epoch
    seed: int = 0                       # seeds weights, dropout masks, document order and the held-out documents
    precision: str = "auto"             # "auto" (bfloat16 where the CPU/GPU does it natively, else float32), "float32", "bfloat16"
    device: str = "auto"                # "auto" (CUDA if present, else CPU), "cpu" or "cuda" (volatile)
    num_threads: int = 0                # CPU threads for torch; 0 = every usable core (volatile)
    checkpoint_minutes: float = 5.0     # save the training state this often, to resume after an interruption; 0 = every step (volatile)
    backward: bool = False              # read every text right to left (set by the pipeline for the backward chain of classifier.direction; an error if set by hand)

    def validate(self) -> None:
        _validate_common(self, "pretrain_lm")


@dataclass(frozen=True)
class PretrainLmConfig(LanguageModelConfig):
    weights: str = "packaged"           # "packaged" (the general-English LM shipped in the package), a folder from `export lm`, or "none" = train one on `corpus`
    backward_weights: str = "auto"      # the same for the backward LM that classifier.direction = "backward" or "both" needs; "auto" = as weights ("packaged" or "none")
    corpus: str = "enwiki_sample"       # with weights = "none": general-English corpus (card, path or hf:NAME) to pretrain on; "none" = no pretraining
    max_documents: int | None = None    # with weights = "none": pretrain on a seeded sample of at most this many documents; none = all
    init_vectors: str = "none"          # with weights = "none": start the embedding from "minilm" (word vectors distilled from all-MiniLM-L6-v2, models/distilled.py; needs the distill extra) or "none" (random)

    def validate(self) -> None:
        _validate_common(self, "pretrain_lm")
        if self.init_vectors not in PRETRAIN_INIT_VECTORS:
            raise ConfigError(f"pretrain_lm.init_vectors must be one of {list(PRETRAIN_INIT_VECTORS)}, got {self.init_vectors!r}")
        for name in ("weights", "backward_weights"):
            if not getattr(self, name).strip():
                raise ConfigError(f'pretrain_lm.{name} is empty; use "packaged", a folder written by `nlp-pipeline export lm`, or "none"')

    @property
    def loads_weights(self) -> bool:
        """True when this instance loads an exported LM instead of training one."""
        return self.weights.lower() != "none"


@dataclass(frozen=True)
class FinetuneLmConfig(LanguageModelConfig):
    embedding_dropout: float = 0.02     # probability of dropping a whole word type's embedding row per batch (times dropout_scale)
    dropout_scale: float = 0.3          # multiplies the five dropouts (fastai fine-tunes its LM with drop_mult 0.3)
    softmax_sample: int = 1024          # training loss over the batch's target words plus this many random others (0 = whole vocabulary): fine-tuning up to 2x faster, the classifier as good (decision 0025); validation perplexity stays full, and rises
    epochs: int = 3                     # epochs with every layer trainable, after the frozen epochs
    learning_rate: float = 2e-3         # peak learning rate of the top group while all layers train
    discriminative_factor: float = 2.6  # layer group i of n gets learning_rate / factor ** (n - 1 - i) (ULMFiT: 2.6)
    schedule: str = "stlr"              # schedule of each phase: "stlr" (ULMFiT), "one_cycle" or "constant"
    warmup_fraction: float = 0.1        # share of steps rising to the peak LR (stlr's cut_frac)
    frozen_epochs: int = 1              # first epochs train only the tied embedding/decoder (new words settle in); 0 = none; skipped without a pretrained LM
    frozen_learning_rate: float = 1e-2  # peak learning rate of those frozen epochs
    include_test_texts: bool = True     # also read the test split's texts (never labels), as ULMFiT allows; false = stricter
    vectors_dim_mismatch: str = "error"  # word vectors of another size than embedding_dim: "error" or "project" (PCA / zero-pad)
    init_vectors: str = "none"          # start the embedding from these vectors: "none", "word2vec", "fasttext" or "glove" (must be in embeddings.methods)

    def validate(self) -> None:
        _validate_common(self, "finetune_lm")
        if self.frozen_epochs < 0 or self.frozen_learning_rate <= 0:
            raise ConfigError("finetune_lm.frozen_epochs must be >= 0 and frozen_learning_rate > 0")
        if self.vectors_dim_mismatch not in VECTOR_MISMATCH:
            raise ConfigError(f"finetune_lm.vectors_dim_mismatch must be one of {list(VECTOR_MISMATCH)}, got {self.vectors_dim_mismatch!r}")


def _validate_common(cfg: PretrainLmConfig, section: str) -> None:
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"{section}.schedule must be one of {list(SCHEDULES)}, got {cfg.schedule!r}")
    for name in ("bptt_length", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{section}.{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("embedding_dropout", "input_dropout", "hidden_dropout", "weight_dropout", "output_dropout"):
        value = getattr(cfg, name) * cfg.dropout_scale
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{section}.{name} x dropout_scale must be in [0, 1), got {value}")
    if cfg.softmax_sample < 0:
        raise ConfigError(f"{section}.softmax_sample must be >= 0 (0 = the full softmax), got {cfg.softmax_sample}")
    if cfg.checkpoint_minutes < 0:
        raise ConfigError(f"{section}.checkpoint_minutes must be >= 0 (0 = every step), got {cfg.checkpoint_minutes}")
    if cfg.epochs < 0 or cfg.learning_rate <= 0 or cfg.discriminative_factor <= 0:
        raise ConfigError(f"{section}: epochs must be >= 0, learning_rate and discriminative_factor > 0")
    if not 0.0 < cfg.validation_fraction < 1.0:
        raise ConfigError(f"{section}.validation_fraction must be between 0 and 1, got {cfg.validation_fraction}")
    if not 0.0 <= cfg.warmup_fraction < 1.0:
        raise ConfigError(f"{section}.warmup_fraction must be in [0, 1), got {cfg.warmup_fraction}")


def _dropouts(cfg: PretrainLmConfig) -> Any:
    from nlp_pipeline.models.rnn import Dropouts

    return Dropouts(cfg.embedding_dropout, cfg.input_dropout, cfg.hidden_dropout, cfg.weight_dropout).scaled(cfg.dropout_scale)


def split_documents(n_docs: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) document indexes, held-out = a seeded random `fraction` (at least 1 when n_docs > 1).

    split_documents(10, 0.2, 0) -> 8 training and 2 held-out indexes, disjoint, each sorted.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_docs)
    n_valid = min(max(1, int(round(n_docs * fraction))), n_docs - 1) if n_docs > 1 else 0
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def _check_enough_tokens(n_tokens: int, cfg: PretrainLmConfig, section: str) -> None:
    if n_tokens // cfg.batch_size < 2:
        raise DataError(
            f"{section}: {n_tokens} training tokens cannot fill {cfg.batch_size} rows of at least 2 tokens; "
            f"lower {section}.batch_size or use a larger corpus"
        )


def _train(cfg: PretrainLmConfig, data: Numericalized, docs: np.ndarray, model: Any, phases: list[tuple[str, int, float, int]],
           section: str, metrics: dict[str, Any], device: Any) -> LanguageModel:
    """Shared body: hold out documents, run the phases (name, epochs, lr, trainable groups), package the artifact."""
    import torch

    from nlp_pipeline.models import distributed
    from nlp_pipeline.models.batching import concat_documents, layout_stream
    from nlp_pipeline.models.device import resolve_precision
    from nlp_pipeline.models.training import (
        discriminative_lrs, fit_language_model, make_optimizer, set_base_lrs, set_trainable, state_dict_to_numpy,
    )

    dtype = resolve_precision(device, cfg.precision)
    ids, offsets = np.asarray(data.ids), np.asarray(data.offsets)
    if cfg.backward:
        from nlp_pipeline.models.batching import reverse_documents

        ids = reverse_documents(ids, offsets)
    train_pos, valid_pos = split_documents(len(docs), cfg.validation_fraction, cfg.seed)
    train_docs, valid_docs = docs[train_pos], docs[valid_pos]
    n_train_tokens = int((offsets[train_docs + 1] - offsets[train_docs]).sum())
    _check_enough_tokens(n_train_tokens, cfg, section)
    processes = distributed.world_size()
    if cfg.batch_size < processes:
        raise ConfigError(f"{section}.batch_size ({cfg.batch_size}) must be at least the number of processes ({processes}): "
                          "each trains on its share of the batch rows")
    valid_stream = concat_documents(ids, offsets, valid_docs)
    valid_rows = layout_stream(valid_stream, max(1, min(cfg.batch_size, len(valid_stream) // (cfg.bptt_length + 1))))

    model.to(device)
    groups = model.layer_groups()
    set_trainable(groups, len(groups))
    optimizer = make_optimizer(groups, discriminative_lrs(cfg.learning_rate, len(groups), cfg.discriminative_factor),
                               cfg.weight_decay, (cfg.adam_beta1, cfg.adam_beta2))
    rng = np.random.default_rng(cfg.seed + 1)
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    resume = _load_checkpoint(model, optimizer, device)
    first_phase = resume["phase"] if resume else 0
    if resume:
        history = list(resume["history"])
        started -= resume["seconds"]
        metrics["resumed_from_step"] = resume["progress"]["step"]
        log.info("%s: resuming from the checkpoint at phase %d, epoch %d, step %d", section, first_phase + 1,
                 resume["progress"]["epoch"] + 1, resume["progress"]["step"])
    for index, (phase, epochs, lr, n_trainable) in enumerate(phases):
        if epochs <= 0 or index < first_phase:
            continue
        set_trainable(groups, n_trainable)
        set_base_lrs(optimizer, discriminative_lrs(lr, len(groups), cfg.discriminative_factor))
        done_before = list(history)

        def save(progress: dict[str, Any], index: int = index, done_before: list = done_before) -> None:
            _save_checkpoint({"format": CHECKPOINT_FORMAT, "phase": index, "progress": progress, "history": done_before,
                              "seconds": time.perf_counter() - started, "model": model.state_dict(),
                              "optimizer": optimizer.state_dict()})

        history += fit_language_model(
            model, optimizer, ids, offsets, train_docs, valid_rows,
            epochs=epochs, batch_size=cfg.batch_size, bptt=cfg.bptt_length, variable_bptt=cfg.variable_bptt,
            schedule=cfg.schedule, warmup_fraction=cfg.warmup_fraction, clip=cfg.clip,
            activation_regularization=cfg.activation_regularization,
            temporal_activation_regularization=cfg.temporal_activation_regularization,
            rng=rng, device=device, dtype=dtype, phase=phase,
            resume=resume["progress"] if resume and index == first_phase else None,
            save=save if checkpoints.active() else None, save_every=cfg.checkpoint_minutes * 60,
            softmax_sample=cfg.softmax_sample,
        )
    set_trainable(groups, len(groups))
    model.eval()
    last = next((row for row in reversed(history) if "val_loss" in row), {})
    metrics.update(
        val_loss=last.get("val_loss"), val_perplexity=last.get("val_perplexity"),
        train_tokens=n_train_tokens, val_tokens=int(valid_rows.size), train_documents=int(len(train_docs)),
        val_documents=int(len(valid_docs)), seconds=round(time.perf_counter() - started, 1),
        precision=str(dtype).replace("torch.", "") if dtype is not None else "float32", device=device.type,
        threads=torch.get_num_threads(),
    )
    if processes > 1:
        metrics["processes"] = processes
    return LanguageModel(
        arch=dict(model.arch(), **({"backward": True} if cfg.backward else {})), state_dict=state_dict_to_numpy(model.cpu()),
        vocab=data.vocab,
        tokenizer=dict(data.tokenizer), history=history, metrics=metrics,
    )


CHECKPOINT_FORMAT = 1  # bump when the saved training state changes shape; an older checkpoint is then ignored


def _save_checkpoint(state: dict[str, Any]) -> None:
    """Serialise the training state (tensors, numbers, strings only) into the runner's checkpoint scope;
    under torchrun only process 0 writes."""
    import io

    import torch

    from nlp_pipeline.models import distributed

    if distributed.rank() != 0:
        return
    buffer = io.BytesIO()
    torch.save(state, buffer)
    checkpoints.save_bytes(buffer.getvalue())


def _load_checkpoint(model: Any, optimizer: Any, device: Any) -> dict[str, Any] | None:
    """The checkpoint of this run's scope, with the model and optimizer restored from it; None when there is
    none. Loaded with weights_only=True (no code runs); one that does not fit is logged and ignored."""
    import io

    import torch

    data = checkpoints.load_bytes()
    if data is None:
        return None
    try:
        state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format') if isinstance(state, dict) else '?'}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except Exception as exc:  # unreadable, another format, other shapes: start over rather than fail
        log.warning("ignoring a checkpoint that does not fit this run (%s: %s); training from the start",
                    type(exc).__name__, str(exc).splitlines()[0][:160] if str(exc) else "")
        return None
    return state


def _new_model(cfg: PretrainLmConfig, data: Numericalized) -> Any:
    """A LanguageModelNet of random weights with cfg.model's architecture (ModelConfig() when None)."""
    from nlp_pipeline.models.batching import pad_id
    from nlp_pipeline.models.heads import LanguageModelNet, build_encoder

    arch = (cfg.model or ModelConfig()).arch(len(data.vocab), pad_id(data.vocab))
    return LanguageModelNet(build_encoder(arch, _dropouts(cfg)), cfg.output_dropout * cfg.dropout_scale, tie_weights=True)


def pretrain_language_model(cfg: PretrainLmConfig, data: Numericalized | None = None) -> LanguageModel:
    """The LM named by cfg.weights (loaded, nothing trained), or, with weights = "none", an LM trained from
    scratch on every document of `data` (minus the held-out slice)."""
    from nlp_pipeline.models import distributed
    from nlp_pipeline.models.device import training_session

    if cfg.loads_weights:
        from nlp_pipeline.models.lm_file import load_lm_folder, resolve_lm_path

        lm = load_lm_folder(resolve_lm_path(cfg.weights, cfg.backward))
        wanted = "backward" if cfg.backward else "forward"
        if lm.direction != wanted:
            field = "backward_weights" if cfg.backward else "weights"
            raise ConfigError(f"pretrain_lm.{field} = {cfg.weights!r} is a {lm.direction} language model, but this chain "
                              f"reads texts {wanted}; give a {wanted} LM there, or set classifier.direction to match")
        lm.metrics = dict(lm.metrics, loaded_from=cfg.weights)
        return lm
    if data is None:
        raise ConfigError('pretrain_lm.weights = "none" needs a general corpus: set pretrain_lm.corpus to a card, path or hf:NAME')
    if len(data) < 2:
        raise DataError("pretrain_lm needs at least 2 documents (one is held out for perplexity)")
    distributed.setup()  # under torchrun: join the process group before a GPU is picked
    with training_session(cfg.device, distributed.threads_per_process(cfg.num_threads), cfg.seed) as device:
        model = _new_model(cfg, data)
        metrics: dict[str, Any] = {"initialisation": "random"}
        if cfg.init_vectors == "minilm":
            metrics.update(initialisation="random, embedding from MiniLM word vectors",
                           vectors_rows_initialised=_distilled_embedding(model, list(data.vocab.itos)))
        n_groups = len(model.layer_groups())
        return _train(cfg, data, np.arange(len(data)), model, [("pretrain", cfg.epochs, cfg.learning_rate, n_groups)],
                      "pretrain_lm", metrics, device)


def _distilled_embedding(model: Any, itos: list[str]) -> int:
    """Set the embedding rows of every non-special token to its distilled MiniLM vector, projected to the
    embedding's width and rescaled to its spread (special tokens and padding keep their start); returns the rows set."""
    import torch

    from nlp_pipeline.models.distilled import word_vectors
    from nlp_pipeline.models.training import project_vectors, vectors_to_embedding
    from nlp_pipeline.rules import SPECIAL_TOKENS

    words = [w for w in itos if w not in SPECIAL_TOKENS]
    emb = model.encoder.embedding.weight
    vectors = project_vectors(word_vectors(words), emb.shape[1])
    new, copied = vectors_to_embedding(itos, words, vectors, emb.detach().cpu().numpy())
    with torch.no_grad():
        emb.copy_(torch.from_numpy(new))
    return copied


def fit_vectors(cfg: FinetuneLmConfig, vectors: WordVectors, embedding_dim: int,
                where: str = "model.embedding_dim") -> np.ndarray:
    """Word vectors at embedding_dim columns: as they are, projected (cfg.vectors_dim_mismatch = "project"),
    or a ConfigError naming both sizes."""
    from nlp_pipeline.models.training import project_vectors

    dim = np.asarray(vectors.vectors).shape[1]
    if dim == embedding_dim:
        return np.asarray(vectors.vectors, dtype=np.float32)
    if cfg.vectors_dim_mismatch == "error":
        raise ConfigError(
            f"word vectors have {dim} dimensions but {where} is {embedding_dim}; "
            f"set embeddings.vector_size = {embedding_dim} or finetune_lm.vectors_dim_mismatch = \"project\""
        )
    return project_vectors(vectors.vectors, embedding_dim, cfg.seed)


def _finetune_documents(cfg: FinetuneLmConfig, data: Numericalized) -> np.ndarray:
    """The documents finetune_lm reads: train, dev, unsup, and test unless include_test_texts is false."""
    wanted = [split_code(s) for s in ("train", "dev", "unsup")] + ([split_code("test")] if cfg.include_test_texts else [])
    return np.flatnonzero(np.isin(np.asarray(data.splits), wanted))


def build_finetune_model(cfg: FinetuneLmConfig, data: Numericalized, pretrained: LanguageModel | None = None,
                         vectors: WordVectors | None = None) -> tuple[Any, dict[str, Any]]:
    """(the LanguageModelNet finetune_lm starts from, metrics on that start: initialisation, and vocab_shared,
    vocab_new, tokens_new_share (the share of the corpus's tokens, every split, whose word is new) and
    pretrained_val_perplexity with a pretrained LM; vectors_method and vectors_rows_initialised with vectors).

    The pretrained LM with its rows matched to this vocabulary (new tokens get the mean row), or random weights
    with cfg.model's architecture (a ConfigError when both a pretrained LM and cfg.model are given); word
    vectors then fill the rows the pretrained LM does not cover. The model is on the CPU; its random weights
    come from torch's generator, so seed it first (the stage and range_test build inside
    training_session(..., cfg.seed)).
    """
    import torch

    from nlp_pipeline.models.batching import pad_id
    from nlp_pipeline.models.heads import LanguageModelNet, build_encoder
    from nlp_pipeline.models.training import load_numpy_state, match_vocab, new_words, vectors_to_embedding

    itos = data.vocab.itos
    metrics: dict[str, Any] = {}
    covered = np.zeros(len(itos), dtype=bool)
    if pretrained is None:
        model = _new_model(cfg, data)
        metrics["initialisation"] = "random"
    else:
        if cfg.model is not None:
            raise ConfigError("finetune_lm.model cannot apply: a fine-tuned LM has the pretrained LM's architecture; "
                              "give no pretrained LM to train one with [model]")
        if pretrained.direction != ("backward" if cfg.backward else "forward"):
            raise ConfigError(f"the pretrained language model reads texts {pretrained.direction} but finetune_lm reads "
                              f"them {'backward' if cfg.backward else 'forward'}; both must go the same way")
        _warn_tokenizer_mismatch(pretrained.tokenizer, data.tokenizer)
        state = {k: np.asarray(v) for k, v in pretrained.state_dict.items()}
        weight, bias, shared = match_vocab(state["encoder.embedding.weight"], state["decoder.bias"],
                                           pretrained.vocab.itos, itos)
        state["encoder.embedding.weight"], state["decoder.bias"] = weight, bias
        if "decoder.weight" in state:
            state["decoder.weight"] = weight
        arch = dict(pretrained.arch, vocab_size=len(itos), pad_id=pad_id(data.vocab))
        model = LanguageModelNet(build_encoder(arch, _dropouts(cfg)), cfg.output_dropout * cfg.dropout_scale,
                                 arch.get("tie_weights", True))
        load_numpy_state(model, state)
        new, new_share = new_words(itos, pretrained.vocab.itos, data.ids)
        covered = ~new
        metrics.update(initialisation="pretrained", vocab_shared=shared, vocab_new=len(itos) - shared,
                       tokens_new_share=round(new_share, 4),
                       pretrained_val_perplexity=pretrained.metrics.get("val_perplexity"))
        log.info("finetune_lm: %d of the corpus's %d words (%.1f %% of its tokens) are new to the pretrained LM; they "
                 "start %s and learn only from this corpus's text", len(itos) - shared, len(itos), 100 * new_share,
                 "at its mean row" if vectors is None else f"from the {vectors.method} vectors")
    if vectors is not None:
        where = "the pretrained LM's embedding_dim" if pretrained is not None else "model.embedding_dim"
        fitted = fit_vectors(cfg, vectors, model.encoder.embedding_dim, where)
        with torch.no_grad():
            emb = model.encoder.embedding.weight
            new, copied = vectors_to_embedding(itos, list(vectors.keys), fitted, emb.detach().cpu().numpy(), ~covered)
            emb.copy_(torch.from_numpy(new))
        metrics.update(vectors_method=vectors.method, vectors_rows_initialised=copied)
    return model, metrics


TOKENIZER_KEYS = ("lang", "rules", "add_bos", "mark_whitespace", "max_token_length")  # settings that change tokens


def _warn_tokenizer_mismatch(pretrained: dict, target: dict) -> None:
    """Log a warning when the pretrained LM's texts were tokenized otherwise than the target's: shared tokens
    then mean different things (e.g. 'The' against 'the'), and transfer suffers silently."""
    differ = [k for k in TOKENIZER_KEYS if k in pretrained and k in target and pretrained[k] != target[k]]
    if differ:
        log.warning(
            "the pretrained language model was tokenized with other %s (%s) than this corpus (%s); tokens it shares "
            "may mean other things: use the LM's tokenization settings, or pretrain one with yours",
            "/".join(differ), ", ".join(f"{k}={pretrained[k]!r}" for k in differ), ", ".join(f"{k}={target[k]!r}" for k in differ))


def finetune_language_model(cfg: FinetuneLmConfig, data: Numericalized, pretrained: LanguageModel | None = None,
                            vectors: WordVectors | None = None) -> LanguageModel:
    """ULMFiT LM fine-tuning on all target texts (labels unused); from scratch when `pretrained` is None.

    Word `vectors`, when given, initialise the embedding rows that the pretrained LM does not cover (all rows
    without a pretrained LM); their scale is matched to the existing rows.
    """
    from nlp_pipeline.models import distributed
    from nlp_pipeline.models.device import training_session

    docs = _finetune_documents(cfg, data)
    if len(docs) < 2:
        raise DataError("finetune_lm needs at least 2 documents in the train/dev/unsup(/test) splits")
    distributed.setup()  # under torchrun: join the process group before a GPU is picked
    with training_session(cfg.device, distributed.threads_per_process(cfg.num_threads), cfg.seed) as device:
        metrics: dict[str, Any] = {"documents_by_split": {name: int(n) for name, n in data.split_sizes().items()
                                                          if name != "test" or cfg.include_test_texts}}
        model, start = build_finetune_model(cfg, data, pretrained, vectors)
        metrics.update(start)
        n_groups = len(model.layer_groups())
        phases = [("finetune", cfg.epochs, cfg.learning_rate, n_groups)]
        if pretrained is not None:  # freezing random RNN layers would only waste epochs
            phases.insert(0, ("finetune_frozen", cfg.frozen_epochs, cfg.frozen_learning_rate, 1))
        return _train(cfg, data, docs, model, phases, "finetune_lm", metrics, device)


def range_test(cfg: FinetuneLmConfig, data: Numericalized, pretrained: LanguageModel | None = None,
               vectors: WordVectors | None = None, **options: Any) -> dict[str, Any]:
    """The learning-rate range test (models/lr_find.py) on the LM finetune_lm would start from, on the documents
    it reads; options: start_lr, end_lr, num_steps, trainable_groups (None = all, the main phase; 1 = frozen).
    The result also says the model's initialisation; nothing is trained or kept."""
    from nlp_pipeline.models.device import training_session
    from nlp_pipeline.models.lr_find import language_model_range_test

    docs = _finetune_documents(cfg, data)
    offsets = np.asarray(data.offsets)
    _check_enough_tokens(int((offsets[docs + 1] - offsets[docs]).sum()), cfg, "finetune_lm")
    with training_session(cfg.device, cfg.num_threads, cfg.seed) as device:
        model, start = build_finetune_model(cfg, data, pretrained, vectors)
        result = language_model_range_test(model, cfg, data, docs, device, **options)
    result["initialisation"] = start["initialisation"]
    return result


def summarize(lm: LanguageModel) -> dict:
    """A few numbers for meta.json and the run's metrics; a loaded LM's training time is not this run's."""
    keys = ("val_perplexity", "train_tokens", "initialisation", "loaded_from") if "loaded_from" in lm.metrics else \
        ("val_perplexity", "train_tokens", "seconds", "initialisation")
    return {key: lm.metrics[key] for key in keys if key in lm.metrics}


def _describe(cfg: PretrainLmConfig) -> str:
    way = ", backward" if cfg.backward else ""
    if isinstance(cfg, PretrainLmConfig) and cfg.loads_weights:
        return f"weights={cfg.weights}{way}"
    model = cfg.model
    size = f"{model.rnn_type} {model.embedding_dim}/{model.hidden_dim}x{model.num_layers}, " if model else ""
    sampled = f", softmax_sample={cfg.softmax_sample}" if cfg.softmax_sample else ""
    return f"{size}{cfg.epochs} epochs, lr={cfg.learning_rate:g}, precision={cfg.precision}{sampled}{way}"


VOLATILE = ("device", "num_threads", "checkpoint_minutes")  # and the number of torchrun processes, which no config field holds


def _volatile(cfg: LanguageModelConfig) -> tuple[str, ...]:
    """VOLATILE, and `backward` and `softmax_sample` while they are off (their keys stay those of before the
    fields existed)."""
    off = (() if cfg.backward else ("backward",)) + (() if cfg.softmax_sample else ("softmax_sample",))
    return (*VOLATILE, *off)


def _finetune_volatile(cfg: FinetuneLmConfig) -> tuple[str, ...]:
    """_volatile, and what cannot apply: the frozen phase without a pretrained LM (cfg.model is set exactly
    then), vectors_dim_mismatch without init_vectors."""
    unused = ("frozen_epochs", "frozen_learning_rate") if cfg.model is not None else ()
    if cfg.init_vectors.lower() == "none":
        unused += ("vectors_dim_mismatch",)
    return (*_volatile(cfg), *unused)


def _pretrain_volatile(cfg: PretrainLmConfig) -> tuple[str, ...]:
    """Loading weights: no field can change the output, not even where the folder is (its files' sha256 is
    the key, so a moved folder stays cached). Training: `weights` cannot apply."""
    if cfg.loads_weights:
        return tuple(cfg.__dataclass_fields__)
    unused = ("init_vectors",) if cfg.init_vectors == "none" else ()  # keys of random starts stay those of before the field
    return (*_volatile(cfg), "weights", "backward_weights", *unused)


def _pretrain_fingerprint(cfg: PretrainLmConfig) -> dict | None:
    """The exported LM's files (sha256), when weights names one; nothing more when training."""
    if not cfg.loads_weights:
        return None
    from nlp_pipeline.models.lm_file import lm_folder_fingerprint, resolve_lm_path

    found = lm_folder_fingerprint(resolve_lm_path(cfg.weights, cfg.backward))
    return dict(found, backward=True) if cfg.backward else found


PRETRAIN_STAGE = Stage(
    name="pretrain_lm",
    version=1,
    config=PretrainLmConfig,
    inputs={"data": "numericalization"},
    optional=("data",),
    run=pretrain_language_model,
    volatile=_pretrain_volatile,
    fingerprint=_pretrain_fingerprint,
    collective=True,
    describe=_describe,
    summary=summarize,
)

FINETUNE_STAGE = Stage(
    name="finetune_lm",
    version=1,
    config=FinetuneLmConfig,
    inputs={"data": "numericalization", "pretrained": "pretrain_lm", "vectors": "embeddings"},
    optional=("pretrained", "vectors"),
    run=finetune_language_model,
    volatile=_finetune_volatile,
    collective=True,
    describe=_describe,
    summary=summarize,
)

STAGES = (PRETRAIN_STAGE, FINETUNE_STAGE)
STAGE = FINETUNE_STAGE  # the stage a target-corpus pipeline always runs; PRETRAIN_STAGE is its optional upstream
