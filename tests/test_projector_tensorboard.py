"""A real TensorBoard server (loopback only) reads an exported projector folder: runs, embedding names and
shapes, tensors and metadata come back through the projector plugin's HTTP endpoints."""

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from nlp_pipeline.artifacts import WordVectors
from nlp_pipeline.export.projector import export_projector, word_embedding

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                reason="tensorboard is not installed (pip install -e '.[dev]')")

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, **params) -> bytes:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/projector/{path}{query}", timeout=30) as response:
        return response.read()


def test_tensorboard_serves_the_exported_embeddings(tmp_path):
    rng = np.random.default_rng(0)
    words = WordVectors(keys=["the", "cat", "new york", "\n"], vectors=rng.standard_normal((4, 5)).astype(np.float32),
                        counts=np.array([9, 7, 5, 3]), method="glove")
    docs = rng.standard_normal((3, 2)).astype(np.float32)
    out = tmp_path / "projector"
    export_projector(out, [word_embedding("glove", words), ("docs", docs, [["a"], ["b"], ["c"]], None)])

    port = free_port()
    log = open(tmp_path / "tensorboard.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(out), "--port", str(port),
                               "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        runs = None
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"tensorboard exited with {server.returncode}: {(tmp_path / 'tensorboard.log').read_text()[-2000:]}")
            try:
                runs = json.loads(get(port, "runs"))
                if runs:
                    break
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            time.sleep(0.3)
        assert runs == ["."], f"no projector run within {STARTUP_SECONDS} s: {runs}"

        info = json.loads(get(port, "info", run="."))
        embeddings = {e["tensorName"]: e for e in info["embeddings"]}
        assert set(embeddings) == {"glove", "docs"}
        assert [int(x) for x in embeddings["glove"]["tensorShape"]] == [4, 5]
        assert embeddings["glove"]["tensorPath"] == "glove/vectors.tsv"
        assert embeddings["glove"]["metadataPath"] == "glove/metadata.tsv"

        tensor = np.frombuffer(get(port, "tensor", run=".", name="glove"), dtype=np.float32).reshape(4, 5)
        np.testing.assert_array_equal(tensor, words.vectors)
        metadata = get(port, "metadata", run=".", name="glove").decode("utf-8")
        assert metadata == "word\tfrequency\nthe\t9\ncat\t7\nnew york\t5\n\\n\t3\n"

        small = np.frombuffer(get(port, "tensor", run=".", name="docs"), dtype=np.float32).reshape(3, 2)
        np.testing.assert_array_equal(small, docs)
        assert get(port, "metadata", run=".", name="docs").decode("utf-8") == "a\nb\nc\n"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()
