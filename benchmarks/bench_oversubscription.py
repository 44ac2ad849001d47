"""What another busy process costs training: seconds per classifier training step of the default AWD-LSTM.

    python benchmarks/bench_oversubscription.py [--steps 8]

Each case is a fresh subprocess (the OpenMP wait policy is read when torch loads) timing `--steps` training steps
(after 2 warm-up steps) of the default classifier network (AWD-LSTM 300/600x2, 15,000 words, batch 64 x 70 tokens,
bfloat16 autocast where the CPU has it), with 2 or 1 torch threads, OMP_WAIT_POLICY unset (the OpenMP runtime's
spinning default) or PASSIVE (nlp_pipeline's default), on an idle machine and beside one busy process started in
its own session (Linux autogroup gives each session an equal share whatever its niceness). Returns the median
seconds per step and the ratio to the idle 2-thread default, written to benchmarks/results/oversubscription.json.
Limits: one competing process; the machine must be otherwise idle for the numbers to mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from common import machine, markdown_table, save, versions

STEP = r"""
import json, sys, time
import torch
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
from nlp_pipeline.models.device import cpu_has_native_bfloat16
from nlp_pipeline.models.heads import ClassifierNet
from nlp_pipeline.models.rnn import AwdEncoder
torch.manual_seed(0)
net = ClassifierNet(AwdEncoder(15000, 300, 600, 2), 2)
opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
ids = torch.randint(2, 15000, (70, 64)); lengths = torch.full((64,), 70); y = torch.randint(0, 2, (64,))
dtype = torch.bfloat16 if cpu_has_native_bfloat16() else None
times = []
for i in range(steps + 2):
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out = net(ids, lengths)
    loss = torch.nn.functional.cross_entropy(out.float(), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if i >= 2:
        times.append(time.perf_counter() - started)
times.sort()
print(json.dumps(times[len(times) // 2]))
"""


def step_seconds(threads: int, steps: int, policy: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    # -c: nlp_pipeline is imported after torch inside STEP, so the policy comes from the environment alone
    done = subprocess.run([sys.executable, "-c", STEP, str(threads), str(steps)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    cases = [(threads, policy) for threads in (2, 1) for policy in (None, "PASSIVE")]
    rows, results = [], []
    for load in ("idle", "one busy process"):
        competitor = None
        if load != "idle":
            competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            time.sleep(1)
        try:
            for threads, policy in cases:
                seconds = step_seconds(threads, args.steps, policy)
                results.append({"load": load, "threads": threads, "omp_wait_policy": policy or "unset (spinning)",
                                "seconds_per_step": round(seconds, 4)})
        finally:
            if competitor is not None:
                os.killpg(competitor.pid, signal.SIGKILL)
                competitor.wait()
    base = next(r["seconds_per_step"] for r in results if r["load"] == "idle" and r["threads"] == 2
                and r["omp_wait_policy"].startswith("unset"))
    for r in results:
        r["ratio_to_idle_default"] = round(r["seconds_per_step"] / base, 2)
        rows.append([r["load"], r["threads"], r["omp_wait_policy"], r["seconds_per_step"], r["ratio_to_idle_default"]])
    md = "\n".join([
        "### Training beside a busy process (seconds per classifier training step)", "",
        f"Command: `python benchmarks/bench_oversubscription.py {' '.join(sys.argv[1:])}`. Versions: {versions('torch')}. "
        f"Machine: {machine()}.", "",
        markdown_table(["load", "torch threads", "OMP_WAIT_POLICY", "seconds per step", "x idle default"], rows),
    ])
    save("oversubscription", {"steps": args.steps, "versions": versions("torch"), "results": results}, md)


if __name__ == "__main__":
    main()
