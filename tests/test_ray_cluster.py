"""The Ray executor on a running multi-node cluster (`ray_address` = HOST:PORT): two raylets on this machine, started
once for the module with Ray's own test utility ray.cluster_utils.Cluster (a head node and one worker node, NODE_CPUS
logical CPUs and a 150 MiB object store each). A stage given the address joins the cluster (ray.init(address=...))
and leaves it running; the corpus, tokenization and numericalization artifacts are the in-process ones byte for
byte, with the same keys, through the stage functions and through `nlp-pipeline run`; an actor pool larger than one
node spreads over both nodes; and an embedded Ray (no address) stays embedded while a cluster runs on the machine.
Not covered: separate machines, and so a shared disk (both "nodes" see the same files here).

The cluster's address file (ray_current_cluster, which a bare ray.init() would join) is written under a private
RAY_TMPDIR, so no other Ray on the machine joins this cluster by accident; at the end the cluster is shut down and
this process is left with no Ray session (tests/test_ray_executor.py starts its own). Skipped, with the reason,
when Ray Data is not installed (`make test` installs it: extra `dev`).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile

import pytest
from click.testing import CliRunner

from nlp_pipeline import pipeline
from nlp_pipeline.cli import main
from nlp_pipeline.core import ray_executor
from nlp_pipeline.core.store import ArtifactStore
from nlp_pipeline.stages import corpus as corpus_stage
from nlp_pipeline.stages.corpus import CorpusConfig

from helpers import write_tiny_corpus
from ray_helpers import DOCS, artifact_files, read_both_ways, same_corpus_artifact, tokenize_and_count_both_ways

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray Data is not installed: pip install 'nlp-pipeline[distributed]'")

NODE_CPUS = 2                 # logical CPU slots per node: an actor pool of 2 * NODE_CPUS - 1 needs both nodes
STORE_BYTES = 150 << 20       # object store per node


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="ray-")    # short: Ray's socket paths below it must stay under 108 bytes
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", temp)      # the cluster's address file goes here, not to the machine's /tmp/ray
        made = Cluster()
        try:
            made.add_node(num_cpus=NODE_CPUS, object_store_memory=STORE_BYTES, include_dashboard=False)   # the head
            made.add_node(num_cpus=NODE_CPUS, object_store_memory=STORE_BYTES)
            yield made
        finally:
            ray.shutdown()
            made.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_ray_session():
    """Every test starts with no Ray session in this process, so the code under test joins the cluster itself."""
    import ray

    ray.shutdown()
    yield


def _joined(cluster) -> bool:
    """Whether this process is connected to the cluster (ray_session with an address leaves it so)."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().gcs_address == cluster.address


def test_the_text_stages_on_the_cluster_give_the_in_process_artifacts_and_keys(cluster, tmp_path, monkeypatch):
    texts = [t for t in DOCS if t]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("text,label\n" + "".join(f'"{t}",{["pos", "neg"][i % 2]}\n'
                                                            for i, t in enumerate(texts[:60])), encoding="utf-8")
    (data / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": ["neg", "pos"][i % 2]}) + "\n"
                                             for i, t in enumerate(texts[60:80])), encoding="utf-8")
    (data / "unsup.txt").write_text("\n".join(texts[80:]), encoding="utf-8")
    # the table files are opened by the actors from their paths; the text goes out from here in ~10 blocks of lines
    monkeypatch.setattr(corpus_stage, "RAY_CHUNK_BYTES", 300)
    local, on_ray, runs = read_both_ways(data, monkeypatch, address=cluster.address)
    assert runs == 1 and _joined(cluster)                 # ray.init(address=...) ran: there was no session before
    assert len(local) == 160 and local.label_names == ["neg", "pos"]
    same_corpus_artifact(local, on_ray, tmp_path / "corpus")
    keys = {pipeline.STAGES["corpus"].key(CorpusConfig(source=str(data), **fields), {})
            for fields in ({}, {"executor": "ray", "workers": 2, "ray_address": cluster.address})}
    assert len(keys) == 1
    tokens = tokenize_and_count_both_ways(on_ray, ArtifactStore(tmp_path / "cache"), monkeypatch, cluster.address)
    assert len(tokens) == 160 and _joined(cluster)       # the cluster is left running and joined


def _node_reporter():
    """A worker factory for map_chunks whose actors answer every batch with the id of the node they run on. Made
    here, a local function, so that Ray pickles it by value: the actors cannot import this test module."""
    def node_of_actor(settings: dict) -> object:
        import ray

        node = ray.get_runtime_context().get_node_id()
        return lambda batch: node

    return node_of_actor


def test_an_actor_pool_larger_than_one_node_runs_on_both_nodes(cluster, monkeypatch):
    import ray

    actors = 2 * NODE_CPUS - 1                            # 1 CPU each: more than one node's slots
    # start every actor before the first batch goes out, so each gets batches (by default they start as they can)
    monkeypatch.setattr(ray.data.DataContext.get_current(), "wait_for_min_actors_s", 300)
    chunks = ([f"text {i}"] for i in range(8 * actors))
    nodes = list(ray_executor.map_chunks(_node_reporter(), {}, chunks, workers=actors, address=cluster.address))
    assert _joined(cluster) and len(nodes) == 8 * actors
    cluster_nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(cluster_nodes) == 2 and set(nodes) == cluster_nodes


def test_the_cli_up_to_numericalization_on_the_cluster_gives_the_artifacts_and_keys_of_a_local_run(cluster, tmp_path):
    corpus = write_tiny_corpus(tmp_path / "tiny")
    on_ray = ["--set", "tokenization.executor=ray", "--set", f"tokenization.ray_address={cluster.address}",
              "--set", "tokenization.workers=2"]
    keys = {}
    for name, extra in (("ray", on_ray), ("local", ["--set", "tokenization.workers=1"])):
        result = CliRunner().invoke(main, ["run", "--corpus", str(corpus), "--until", "numericalization",
                                           "--runs-dir", str(tmp_path / f"runs-{name}"),
                                           "--cache-dir", str(tmp_path / f"cache-{name}"),
                                           "--set", "numericalization.min_freq=1", *extra], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        keys[name] = json.loads((tmp_path / f"runs-{name}" / "tiny" / "keys.json").read_text())
        if name == "ray":                                 # the run joined the cluster at the address
            assert _joined(cluster) and f"executor=ray at {cluster.address}" in result.output
    assert keys["ray"] == keys["local"] and {"corpus", "tokenization", "numericalization"} <= set(keys["ray"])
    stores = {name: ArtifactStore(tmp_path / f"cache-{name}") for name in keys}
    for instance, key in keys["ray"].items():
        stage = instance.split(":")[0]
        assert artifact_files(stores["ray"], stage, key) == artifact_files(stores["local"], stage, key), instance


# last: here, once an embedded Ray had run in this process, the next Ray Data pipeline on the cluster failed (its
# actors cancelled before they started; cause not found). A run never does that: it uses one executor setting.
def test_an_embedded_ray_stays_embedded_beside_a_running_cluster(cluster):
    import ray

    # a bare ray.init() joins the cluster named in RAY_TMPDIR/ray/ray_current_cluster; no address must not
    nodes = set(ray_executor.map_chunks(_node_reporter(), {}, [["a"], ["b"]], workers=1))
    assert len(nodes) == 1 and not ray.is_initialized()   # ran on a Ray of its own, shut down afterwards
    ray.init(address=cluster.address)
    assert not nodes & {node["NodeID"] for node in ray.nodes()}
