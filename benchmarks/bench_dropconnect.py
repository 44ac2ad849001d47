"""DropConnect's cost: a training step with `models.rnn.drop_connect` against the same step with F.dropout on
the hidden-to-hidden matrices, in one process, interleaved.

    python benchmarks/bench_dropconnect.py [--datasets trec6,mr] [--steps 40] [--rounds 3] [--threads 0]

Takes the datasets' train texts through our tokenization and numericalization stages (a run's vocabulary) and
times, for each dataset, two kinds of step with the default architecture (`[model]`: 300/600/3 AWD-LSTM), the
default dropouts and float32:
- classifier: every layer trainable (the last unfreezing stage), sortish batches of 64 documents, forward,
  label-smoothed cross-entropy, backward, gradient clipping, AdamW step;
- fine-tuning LM: `fit_language_model` at batch 64, BPTT 70, with finetune_lm's sampled softmax (1,024).
Each round times `--steps` steps of each implementation in turn (the same batches for both), after warm-up
steps; the result is the median step time per implementation and their ratio. Only speed is measured:
the two draw different masks, so their losses differ.
Prints a markdown table and writes benchmarks/results/dropconnect.json (+ .md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ulmfit import corpus_of, numericalized  # noqa: E402
from common import markdown_table, save, versions  # noqa: E402

IMPLEMENTATIONS = ("F.dropout", "drop_connect")


def use(which: str) -> None:
    """Point WeightDropRnn at one implementation (it looks `drop_connect` up in its module at each call)."""
    import torch.nn.functional as F

    from nlp_pipeline.models import rnn

    rnn.drop_connect = ORIGINAL if which == "drop_connect" else (lambda w, p, training: F.dropout(w, p, training))


def classifier_steps(data, steps: int, warmup: int, seed: int) -> callable:
    """A function (implementation) -> seconds of each of `steps` classifier training steps."""
    import torch
    import torch.nn.functional as F

    from nlp_pipeline.models import batching
    from nlp_pipeline.models.architecture import ModelConfig
    from nlp_pipeline.models.heads import ClassifierNet, build_encoder
    from nlp_pipeline.models.rnn import Dropouts
    from nlp_pipeline.models.training import backward_and_step, make_optimizer, trainable_parameters
    from nlp_pipeline.stages.classifier import ClassifierConfig

    cfg = ClassifierConfig()
    train = np.flatnonzero(np.asarray(data.labels) >= 0)
    lengths = np.diff(np.asarray(data.offsets))[train]
    batches = batching.sortish_batches(lengths, cfg.batch_size, np.random.default_rng(seed))[:warmup + steps]
    pad = batching.pad_id(data.vocab)
    padded = [batching.pad_batch(data.ids, data.offsets, train[b], pad, cfg.max_length) for b in batches]
    labels = [torch.as_tensor(np.asarray(data.labels)[train[b]], dtype=torch.long) for b in batches]
    torch.manual_seed(seed)
    dropouts = Dropouts(cfg.embedding_dropout, cfg.input_dropout, cfg.hidden_dropout, cfg.weight_dropout)
    encoder = build_encoder(ModelConfig().arch(len(data.vocab), pad), dropouts.scaled(cfg.dropout_scale))
    model = ClassifierNet(encoder, len(data.label_names), cfg.head_hidden_dim,
                          (cfg.head_dropout * cfg.dropout_scale, cfg.final_dropout * cfg.dropout_scale)).train()
    optimizer = make_optimizer(model.layer_groups(), [1e-3] * len(model.layer_groups()), cfg.weight_decay,
                               (cfg.adam_beta1, cfg.adam_beta2))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    params = trainable_parameters(model)

    def run(which: str) -> list[float]:
        use(which)
        times = []
        for (ids, lens), y in zip(padded, labels):
            started = time.perf_counter()
            logits = model(torch.from_numpy(ids), torch.from_numpy(lens))
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            backward_and_step(optimizer, scaler, loss, params, cfg.clip)
            times.append(time.perf_counter() - started)
        return times[warmup:]

    return run


def lm_steps(data, steps: int, warmup: int, seed: int) -> callable:
    """A function (implementation) -> seconds of each of `steps` LM fine-tuning steps."""
    import torch

    from nlp_pipeline.models import batching
    from nlp_pipeline.models.architecture import ModelConfig
    from nlp_pipeline.models.heads import LanguageModelNet, build_encoder
    from nlp_pipeline.models.rnn import Dropouts
    from nlp_pipeline.models.training import fit_language_model, make_optimizer
    from nlp_pipeline.stages.language_model import FinetuneLmConfig

    cfg = FinetuneLmConfig()
    torch.manual_seed(seed)
    dropouts = Dropouts(cfg.embedding_dropout, cfg.input_dropout, cfg.hidden_dropout, cfg.weight_dropout)
    encoder = build_encoder(ModelConfig().arch(len(data.vocab), batching.pad_id(data.vocab)), dropouts.scaled(cfg.dropout_scale))
    model = LanguageModelNet(encoder, cfg.output_dropout * cfg.dropout_scale, tie_weights=True)
    groups = model.layer_groups()
    optimizer = make_optimizer(groups, [cfg.learning_rate] * len(groups), cfg.weight_decay, (0.7, 0.99))

    def run(which: str) -> list[float]:
        use(which)
        marks: list[float] = []
        fit_language_model(
            model, optimizer, np.asarray(data.ids), np.asarray(data.offsets), np.arange(len(data.offsets) - 1), None,
            epochs=1, batch_size=64, bptt=70, variable_bptt=False, schedule="constant", warmup_fraction=0.0,
            clip=0.25, activation_regularization=2.0, temporal_activation_regularization=1.0,
            rng=np.random.default_rng(seed), device=torch.device("cpu"), dtype=None, max_steps=warmup + steps + 1,
            on_step=lambda step, loss: marks.append(time.perf_counter()), softmax_sample=cfg.softmax_sample)
        return list(np.diff(marks))[warmup:]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="trec6,mr")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per implementation and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = every usable core)")
    args = parser.parse_args()

    import os

    import torch

    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    rows, results = [], {}
    for name in args.datasets.split(","):
        _, data = numericalized(corpus_of((name,), None))
        for kind, make in (("classifier", classifier_steps), ("fine-tuning LM", lm_steps)):
            run = make(data, args.steps, warmup=3, seed=0)
            times = {which: [] for which in IMPLEMENTATIONS}
            for round_ in range(args.rounds):
                for which in IMPLEMENTATIONS if round_ % 2 == 0 else IMPLEMENTATIONS[::-1]:
                    times[which] += run(which)
            medians = {which: float(np.median(t)) for which, t in times.items()}
            ratio = medians["F.dropout"] / medians["drop_connect"]
            results.setdefault(name, {})[kind] = {
                "step_ms": {which: round(1000 * m, 1) for which, m in medians.items()},
                "steps_timed": {which: len(t) for which, t in times.items()}, "speedup": round(ratio, 3)}
            rows.append([name, kind, round(1000 * medians["F.dropout"], 1), round(1000 * medians["drop_connect"], 1),
                         f"{ratio:.2f}x"])
            print(rows[-1], file=sys.stderr)
    table = markdown_table(["dataset", "step", "F.dropout ms", "drop_connect ms", "speedup"], rows)
    save("dropconnect", {"datasets": results, "threads": torch.get_num_threads(), "steps": args.steps,
                         "rounds": args.rounds, "versions": versions("torch")},
         "## DropConnect: drop_connect against F.dropout (median training step)\n\n" + table)


if __name__ == "__main__":
    from nlp_pipeline.models import rnn as _rnn

    ORIGINAL = _rnn.drop_connect
    main()
