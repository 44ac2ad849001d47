"""What the live TensorBoard log (export/tensorboard_log.py LiveLog) costs training: the same LM and classifier
steps timed without an observer and with the live log, alternating, plus the cost of one logged step by itself.

    nice .venv/bin/python benchmarks/bench_tensorboard.py [--trials 3] [--lm-steps 16] [--threads 2]

Models at the default config's size (AWD-LSTM 300/600x2, vocabulary 15,000; LM batch 64 x BPTT 70; classifier
batch 64, documents of 20-60 tokens), random token ids (speed does not depend on the text). Writes
benchmarks/results/tensorboard.{json,md}. The machine's other load moves whole trials, so the per-call cost
(measured apart, many calls) is the steadier figure: overhead = calls per step x cost per call / step time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, save, versions  # noqa: E402

VOCAB, EMB, HID, LAYERS = 15_000, 300, 600, 2


def _encoder():
    from nlp_pipeline.models.rnn import AwdEncoder, Dropouts

    return AwdEncoder(VOCAB, EMB, HID, LAYERS, "lstm", 1, Dropouts())


def lm_trial(steps: int, live_dir: Path | None) -> float:
    """Seconds per step of `steps` LM steps (a fresh model each trial), with a LiveLog in live_dir or none."""
    import torch

    from nlp_pipeline.export.tensorboard_log import LiveLog
    from nlp_pipeline.models.heads import LanguageModelNet
    from nlp_pipeline.models.observers import observe
    from nlp_pipeline.models.training import discriminative_lrs, fit_language_model, make_optimizer

    rng = np.random.default_rng(0)
    n_tokens = 64 * 70 * (steps + 2)
    offsets = np.arange(0, n_tokens + 1, 100)
    ids = rng.integers(2, VOCAB, size=int(offsets[-1]))
    torch.manual_seed(0)
    model = LanguageModelNet(_encoder(), 0.1)
    groups = model.layer_groups()
    optimizer = make_optimizer(groups, discriminative_lrs(2e-3, len(groups)), 0.01, (0.7, 0.99))
    live = LiveLog(live_dir) if live_dir is not None else None
    started = time.perf_counter()
    with observe(live):
        fit_language_model(model, optimizer, ids, offsets, np.arange(len(offsets) - 1), None, epochs=1, batch_size=64,
                           bptt=70, variable_bptt=False, schedule="stlr", warmup_fraction=0.1, clip=0.4,
                           activation_regularization=2.0, temporal_activation_regularization=1.0,
                           rng=np.random.default_rng(0), device=torch.device("cpu"), phase="finetune", max_steps=steps)
    seconds = time.perf_counter() - started
    if live is not None:
        live.close()
        assert live.steps and not live.failed
    return seconds / steps


def classifier_trial(docs: int, live_dir: Path | None) -> float:
    """Seconds per step of one classifier epoch over `docs` documents (validation included, as in training)."""
    import torch

    from nlp_pipeline.export.tensorboard_log import LiveLog
    from nlp_pipeline.models.heads import ClassifierNet
    from nlp_pipeline.models.observers import observe
    from nlp_pipeline.models.training import fit_classifier

    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 61, size=docs + 64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(2, VOCAB, size=int(offsets[-1]))
    labels = rng.integers(0, 2, size=len(lengths))
    torch.manual_seed(0)
    model = ClassifierNet(_encoder(), num_classes=2, head_hidden_dim=50)
    live = LiveLog(live_dir) if live_dir is not None else None
    started = time.perf_counter()
    with observe(live):
        fit_classifier(model, ids, offsets, labels, np.arange(docs), np.arange(docs, docs + 64),
                       stages=[(len(model.layer_groups()), 1, 1e-3)], discriminative_factor=2.6, batch_size=64,
                       max_length=500, pad_id=1, schedule="stlr", warmup_fraction=0.1, weight_decay=0.01,
                       betas=(0.7, 0.99), clip=0.4, patience=0, rng=np.random.default_rng(0), device=torch.device("cpu"))
    seconds = time.perf_counter() - started
    if live is not None:
        live.close()
    return seconds / (docs // 64)


def per_call(calls: int, groups: int) -> dict[str, float]:
    """Microseconds of one LiveLog.step (loss + `groups` LRs) and of one epoch() row, measured over many calls."""
    from nlp_pipeline.export.tensorboard_log import LiveLog

    with tempfile.TemporaryDirectory() as folder:
        live = LiveLog(Path(folder) / "live")
        live.begin("classifier", "bench", groups)
        rates = [1e-3 / 2.6 ** i for i in range(groups)][::-1]
        started = time.perf_counter()
        for i in range(calls):
            live.step(0.5 + 1e-4 * i, rates)
        step_us = (time.perf_counter() - started) / calls * 1e6
        row = {"stage": 1, "trainable_groups": groups, "epoch": 1, "learning_rate": 1e-3, "train_loss": 0.4,
               "val_loss": 0.5, "val_accuracy": 0.8, "seconds": 10.0, "learning_rates": rates}
        started = time.perf_counter()
        for _ in range(200):
            live.epoch(row)
        epoch_us = (time.perf_counter() - started) / 200 * 1e6
        live.end()
        started = time.perf_counter()
        live.close()
        close_ms = (time.perf_counter() - started) * 1e3
    return {"step_call_us": round(step_us, 1), "epoch_call_us": round(epoch_us, 1), "close_ms": round(close_ms, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="alternating trials of each setting")
    parser.add_argument("--lm-steps", type=int, default=16)
    parser.add_argument("--classifier-docs", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    calls = per_call(20_000, LAYERS + 2)
    times: dict[str, dict[str, list[float]]] = {"lm": {"off": [], "live": []}, "classifier": {"off": [], "live": []}}
    with tempfile.TemporaryDirectory() as folder:
        lm_trial(2, None)  # warm-up: first-call allocations and kernels
        for trial in range(args.trials):
            for setting in (("off", "live") if trial % 2 == 0 else ("live", "off")):
                live_dir = Path(folder) / f"lm-{trial}" if setting == "live" else None
                times["lm"][setting].append(lm_trial(args.lm_steps, live_dir))
                live_dir = Path(folder) / f"clf-{trial}" if setting == "live" else None
                times["classifier"][setting].append(classifier_trial(args.classifier_docs, live_dir))
                print(f"trial {trial + 1} {setting}: lm {times['lm'][setting][-1]:.3f} s/step, "
                      f"classifier {times['classifier'][setting][-1]:.3f} s/step", file=sys.stderr)
    rows, results = [], {}
    for loop, groups in (("lm", LAYERS + 1), ("classifier", LAYERS + 2)):
        off, live = statistics.median(times[loop]["off"]), statistics.median(times[loop]["live"])
        predicted = calls["step_call_us"] * 1e-6 / off  # the logging work itself, as a share of a step
        results[loop] = {"seconds_per_step_off": [round(t, 4) for t in times[loop]["off"]],
                         "seconds_per_step_live": [round(t, 4) for t in times[loop]["live"]],
                         "median_off": round(off, 4), "median_live": round(live, 4),
                         "measured_overhead_percent": round(100 * (live / off - 1), 2),
                         "per_call_overhead_percent": round(100 * predicted, 3), "layer_groups": groups}
        rows.append([loop, off, live, 100 * (live / off - 1), 100 * predicted])
    payload = {"per_call": calls, "loops": results, "trials": args.trials, "lm_steps": args.lm_steps,
               "classifier_docs": args.classifier_docs, "threads": args.threads,
               "model": f"AWD-LSTM {EMB}/{HID}x{LAYERS}, vocabulary {VOCAB}", "versions": versions("torch", "tensorboard")}
    markdown = "\n".join([
        "# Live TensorBoard log: cost to training",
        "",
        f"One LiveLog.step (loss + {LAYERS + 2} layer-group LRs): {calls['step_call_us']} µs; one epoch row: "
        f"{calls['epoch_call_us']} µs; closing the writer: {calls['close_ms']} ms.",
        "",
        markdown_table(["loop", "s/step without", "s/step with live log", "measured difference %",
                        "logging work % of a step"], rows),
        "",
        f"Medians of {args.trials} alternating trials ({args.lm_steps} LM steps; {args.classifier_docs // 64} classifier "
        f"steps + validation), {args.threads} threads; the measured difference is within the trials' spread when it is "
        "smaller than the machine's noise.",
    ])
    save("tensorboard", payload, markdown)


if __name__ == "__main__":
    main()
