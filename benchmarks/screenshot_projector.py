"""Screenshot of TensorBoard's Projector tab on an export of word vectors trained on real text -> docs/img/projector.png.

    python benchmarks/screenshot_projector.py [--out docs/img/projector.png] [--budget-ms 30000]

Trains word2vec (our embeddings stage) on gensim's bundled lee_background.cor (Lee news corpus, lowercased
by gensim's simple_preprocess), exports it with export_projector to a temporary folder, serves that folder
with `tensorboard --host 127.0.0.1` on a free port and photographs http://127.0.0.1:PORT/#projector with
headless Chromium (Debian: apt-get install -y chromium). TensorBoard is always stopped; nothing leaves the
loopback interface.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def lee_tokens():
    from gensim.test.utils import datapath
    from gensim.utils import simple_preprocess

    from nlp_pipeline.artifacts import Tokens

    docs = [simple_preprocess(line) for line in open(datapath("lee_background.cor"), encoding="utf-8")]
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(t, len(index)) for d in docs for t in d], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return Tokens(labels=np.full(len(docs), -1, np.int32), splits=np.zeros(len(docs), np.int8), label_names=[],
                  ids=ids, offsets=offsets, types=list(index))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "projector.png"))
    parser.add_argument("--budget-ms", type=int, default=30000, help="Chromium virtual time budget")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found; install it (Debian: apt-get install -y chromium)")

    from nlp_pipeline.export.projector import export_projector, word_embedding
    from nlp_pipeline.stages.embeddings import EmbeddingsConfig, Word2VecConfig, train_embeddings

    vectors = train_embeddings(EmbeddingsConfig(method="word2vec", word2vec=Word2VecConfig(architecture="skipgram", epochs=20),
                                                min_count=3, workers=2, evaluate=False), lee_tokens())
    print(f"word2vec on lee_background.cor: {len(vectors.keys):,} words x {vectors.vectors.shape[1]}")
    with tempfile.TemporaryDirectory() as work:
        logdir = Path(work) / "projector"
        export_projector(logdir, [word_embedding("word2vec", vectors)])
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port),
                                   "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/projector/runs", timeout=5) as r:
                        if json.loads(r.read()):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("tensorboard did not serve the projector within 60 s")
                time.sleep(0.3)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            profile = Path(work) / "chromium-profile"
            command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                       "--disable-background-networking", "--disable-component-update", "--disable-sync",
                       "--enable-unsafe-swiftshader", f"--user-data-dir={profile}", f"--screenshot={args.out}",
                       "--window-size=1400,900", f"--virtual-time-budget={args.budget_ms}",
                       f"http://127.0.0.1:{port}/#projector"]
            subprocess.run(command, check=True, timeout=240, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
