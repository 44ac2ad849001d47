"""Multi-node training: two torchrun agents ("nodes") on this machine, joined by a c10d rendezvous on the
loopback, train the language model to the same parameters as one process with the same global batch, and each
rank reads only its shard of the token stream.

    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT --rdzv-id ID \\
        tests/test_multinode.py OUT

Run as a script under torchrun, this file is the worker: it trains the tiny LM of tests/test_distributed.py
(no dropout, a global batch of 3 rows: shares 2 + 1) on token ids that count how many ids each rank reads, and
saves its weights, history and read count to OUT.rankR.npz. CPU and gloo only; nccl is not exercised here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import free_port, wait_for_processes

HERE = Path(__file__).resolve()


class CountingIds(np.ndarray):
    """Token ids that count the ids read through indexing (how much of the stream a rank touches)."""

    reads = 0

    def __getitem__(self, index):
        out = super().__getitem__(index)
        CountingIds.reads += int(np.size(out))
        return out


def lm_on_counted_ids(out: str) -> None:
    """The tiny LM of tests/test_distributed.lm_job (no dropout, so one process can reproduce it exactly; a
    global batch of 3 rows; variable BPTT, AR/TAR, clipping, one-cycle LR) trained on ids that count reads."""
    from nlp_pipeline.models import distributed
    from nlp_pipeline.models.device import training_session
    from nlp_pipeline.models.heads import LanguageModelNet
    from nlp_pipeline.models.rnn import AwdEncoder, Dropouts
    from nlp_pipeline.models.training import discriminative_lrs, fit_language_model, make_optimizer

    ids = np.random.default_rng(0).integers(4, 40, 2400).astype(np.int32)
    offsets = np.arange(0, 2401, 30)
    valid_rows = np.stack([ids[2100:2200], ids[2200:2300], ids[2300:2400]]).astype(np.int64)
    CountingIds.reads = 0
    with training_session("cpu", num_threads=1, seed=0) as device:
        model = LanguageModelNet(AwdEncoder(40, 8, 12, 2, "lstm", 1, Dropouts(0.0, 0.0, 0.0, 0.0)), 0.0)
        groups = model.layer_groups()
        optimizer = make_optimizer(groups, discriminative_lrs(1e-2, len(groups)), 0.01, (0.7, 0.99))
        history = fit_language_model(
            model, optimizer, ids.view(CountingIds), offsets, np.arange(70), valid_rows, epochs=2, batch_size=3,
            bptt=10, variable_bptt=True, schedule="one_cycle", warmup_fraction=0.25, clip=0.25,
            activation_regularization=2.0, temporal_activation_regularization=1.0, rng=np.random.default_rng(1),
            device=device,
        )
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    np.savez(f"{out}.rank{distributed.rank()}.npz", history=json.dumps(history), reads=CountingIds.reads,
             world=distributed.world_size(), **state)


def _torchrun() -> list[str]:
    found = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory) -> Path:
    """Two torchrun agents of one process each, rendezvous c10d at 127.0.0.1:PORT; returns the output prefix."""
    out = tmp_path_factory.mktemp("multinode") / "run"
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        env.pop(name, None)
    command = [*_torchrun(), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"nlp-pipeline-test-{port}",
               "--max-restarts", "0", str(HERE), str(out)]
    nodes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    wait_for_processes(nodes, 240, "node")
    return out


def test_two_nodes_train_to_the_parameters_of_one_process(two_nodes, tmp_path):
    ranks = [np.load(f"{two_nodes}.rank{r}.npz") for r in range(2)]
    assert [int(r["world"]) for r in ranks] == [2, 2]                      # one group across both "nodes"
    lm_on_counted_ids(str(tmp_path / "single"))                            # this process alone: rank 0 of 1
    single = np.load(f"{tmp_path / 'single'}.rank0.npz")
    names = [k for k in single.files if k not in ("history", "reads", "world")]
    assert "encoder.layers.0.weight_hh" in names
    for name in names:
        assert np.array_equal(ranks[0][name], ranks[1][name]), name       # DDP kept the nodes identical
        np.testing.assert_allclose(ranks[0][name], single[name], rtol=0, atol=2e-6, err_msg=name)
    histories = [json.loads(str(f["history"])) for f in (*ranks, single)]
    for key in ("train_loss", "val_loss", "train_tokens"):
        assert [row[key] for row in histories[0]] == [row[key] for row in histories[2]], key


def test_each_rank_reads_only_its_shard_of_the_token_stream(two_nodes, tmp_path):
    """The global batch has 3 rows: rank 0 trains on rows 0 and 2, rank 1 on row 1 (and the validation rows
    alike), so rank 0 reads about two thirds of the ids one process reads and rank 1 one third: together
    exactly what one process reads, neither of them the whole stream."""
    reads = [int(np.load(f"{two_nodes}.rank{r}.npz")["reads"]) for r in range(2)]
    lm_on_counted_ids(str(tmp_path / "single"))
    single = int(np.load(f"{tmp_path / 'single'}.rank0.npz")["reads"])
    assert reads[0] + reads[1] == single
    assert 0.55 * single < reads[0] < 0.75 * single and 0.25 * single < reads[1] < 0.45 * single, (reads, single)


if __name__ == "__main__":  # a worker: torchrun ... tests/test_multinode.py OUT
    from nlp_pipeline.models import distributed

    lm_on_counted_ids(sys.argv[1])
    distributed.shutdown()
