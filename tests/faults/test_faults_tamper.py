"""Tampering with the cache and the predict bundle: planted code is never executed, damaged files are refused in
one line (or, in the cache, refused and recomputed, and the log says so), never a traceback.

Cache: a pickle that runs code when unpickled (its payload writes a marker file; the marker must never appear)
planted with a recomputed sha256, with a forged signature under a planted secret, or behind a symlink; a
replaced or deleted `.secret`; a flipped byte in a `.npy`; a meta.json that is truncated or not what the store
writes. Bundle: a safetensors header claiming absurd sizes, a config.json with absurd values (with its checksum
recomputed, so the values themselves must be refused) or edited by hand, and a pickle in place of the weights.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import faultkit


class _Payload:
    """Unpickling this runs exec(): it writes `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('executed')",))


def payload_bytes(marker: Path) -> bytes:
    data = pickle.dumps(_Payload(marker), protocol=4)
    # the payload works: unpickled in a plain interpreter, it writes the marker (so a test that sees no marker
    # means the pickle was never loaded, not that the payload was harmless)
    probe = marker.with_name(marker.name + ".probe")
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=pickle.dumps(_Payload(probe), protocol=4), check=True)
    assert probe.read_text() == "executed"
    probe.unlink()
    return data


def _folder(cache: Path, stage: str, key: str) -> Path:
    return cache / stage / key


def _reseal_files(folder: Path) -> dict:
    """meta.json's file list recomputed for the folder as it now is (sha256 and bytes), signature untouched:
    what someone who can write the cache but does not know its secret can do."""
    meta = json.loads((folder / "meta.json").read_text())
    for name in list(meta["files"]):
        data = (folder / name).read_bytes()
        meta["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta


def _sign(meta: dict, secret: bytes) -> str:
    from nlp_pipeline.core.hashing import canonical_json

    body = {k: v for k, v in meta.items() if k != "signature"}
    return hmac.new(secret, canonical_json(body).encode("utf-8"), hashlib.sha256).hexdigest()


def _commands(ref, cache: Path, runs: Path, workdir: Path) -> dict[str, faultkit.Done]:
    """Every command that reads the cache, on the tampered cache."""
    return {
        "ls": faultkit.cli(["cache", "ls"], cache, cwd=workdir),
        "verify": faultkit.cli(["cache", "verify"], cache, cwd=workdir),
        "show": faultkit.cli(["show", "--corpus", str(ref.corpus), *faultkit.SETTINGS], cache, cwd=workdir),
        "run": faultkit.cli(faultkit.run_args(ref.corpus, runs), cache, cwd=workdir),
    }


def _recomputed(done: faultkit.Done, stage: str) -> bool:
    lines = done.stderr.splitlines()
    return (any(line.startswith(stage) and "refused" in line for line in lines)
            and any(line.startswith(stage) and " running" in line for line in lines))


# --- planted code -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("meta, load", [("resealed", "hit"), ("resealed", "loaded"), ("untouched", "loaded")])
def test_planted_pickle_with_recomputed_sha256_never_runs(reference, workdir, meta, load):
    """tokenization's artifact.pkl replaced by a payload; "resealed": meta.json's sha256 and size made to match
    (its signature then does not), "untouched": the signed meta.json kept (its sha256 then does not match).
    "loaded": numericalization is missing, so the run must load tokenization, not only check its meta.json."""
    cache, runs = faultkit.fresh_copy(reference, workdir)
    marker = workdir / "EXECUTED"
    folder = _folder(cache, "tokenization", reference.keys["tokenization"])
    (folder / "artifact.pkl").write_bytes(payload_bytes(marker))
    if meta == "resealed":
        _reseal_files(folder)
    if load == "loaded":
        shutil.rmtree(_folder(cache, "numericalization", reference.keys["numericalization"]))
    done = _commands(reference, cache, runs, workdir)
    assert not marker.exists(), "the planted pickle ran"
    for name, result in done.items():
        faultkit.no_traceback(result)
    assert done["ls"].returncode == 0 and done["show"].returncode == 0
    assert done["verify"].returncode == 1 and "CORRUPT  tokenization" in done["verify"].stdout
    assert done["run"].returncode == 0, done["run"].describe()
    assert _recomputed(done["run"], "tokenization"), done["run"].stderr
    assert faultkit.matches_reference(reference, runs / "tiny", "A") == []
    assert faultkit.verified_clean(cache) == [] and not marker.exists()


def test_planted_pickle_behind_a_symlink_never_runs(reference, workdir):
    """artifact.pkl a symlink to a payload elsewhere, the signed meta.json kept (its sha256 is the payload's
    only if followed); numericalization is missing, so the run loads tokenization."""
    cache, runs = faultkit.fresh_copy(reference, workdir)
    marker = workdir / "EXECUTED"
    elsewhere = workdir / "payload.pkl"
    elsewhere.write_bytes(payload_bytes(marker))
    folder = _folder(cache, "tokenization", reference.keys["tokenization"])
    (folder / "artifact.pkl").unlink()
    (folder / "artifact.pkl").symlink_to(elsewhere)
    shutil.rmtree(_folder(cache, "numericalization", reference.keys["numericalization"]))
    done = _commands(reference, cache, runs, workdir)
    assert not marker.exists(), "the planted pickle ran"
    assert all("Traceback" not in d.stderr for d in done.values())
    assert done["verify"].returncode == 1 and "CORRUPT  tokenization" in done["verify"].stdout
    assert done["run"].returncode == 0 and _recomputed(done["run"], "tokenization"), done["run"].describe()
    assert faultkit.matches_reference(reference, runs / "tiny", "A") == []


@pytest.mark.parametrize("how", ["world_readable", "group_readable", "another_owner"])
def test_forged_signature_under_a_planted_secret_never_runs(reference, workdir, how):
    """The attacker replaces .secret with one of their own and signs the payload's meta.json with it. A secret
    that others can read, or that another user owns, is refused in one line (finding 2b: any secret was
    trusted, so entries could be forged)."""
    if how == "another_owner" and os.getuid() != 0:
        pytest.skip("only root can give the secret to another user")
    cache, runs = faultkit.fresh_copy(reference, workdir)
    marker = workdir / "EXECUTED"
    folder = _folder(cache, "tokenization", reference.keys["tokenization"])
    (folder / "artifact.pkl").write_bytes(payload_bytes(marker))
    meta = _reseal_files(folder)
    secret = os.urandom(32)
    meta["signature"] = _sign(meta, secret)
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    shutil.rmtree(_folder(cache, "numericalization", reference.keys["numericalization"]))
    path = cache / ".secret"
    path.unlink()
    path.write_bytes(secret)
    os.chmod(path, {"world_readable": 0o644, "group_readable": 0o640, "another_owner": 0o600}[how])
    if how == "another_owner":
        os.chown(path, faultkit.NOBODY, faultkit.NOBODY)
    done = _commands(reference, cache, runs, workdir)
    assert not marker.exists(), "the planted pickle ran"
    line = faultkit.error_line(done["run"])
    assert str(path) in line, line
    verified = done["verify"]
    faultkit.no_traceback(verified)
    assert verified.returncode != 0 and str(path) in verified.stderr + verified.stdout, verified.describe()
    for name in ("ls", "show"):  # they load nothing: they may answer, but never with a traceback
        faultkit.no_traceback(done[name])


# --- a lost or replaced secret ----------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [pytest.param("deleted", marks=pytest.mark.slow), "replaced"])
def test_lost_or_replaced_secret_recomputes_everything_and_says_so(reference, workdir, change):
    """Finding 3: every stage printed `cache hit` without verifying, metrics.json held no metrics and the report
    phase recomputed the chain with its log muted. Now every artifact is refused (said once), recomputed once,
    and the results are a clean run's."""
    cache = faultkit.copy_cache(reference.cache, workdir / "cache", keys=reference.keys)  # A's artifacts only
    runs = workdir / "runs"
    shutil.copytree(reference.run_dir, runs / "tiny")
    secret = cache / ".secret"
    secret.unlink()
    if change == "replaced":
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(32))
        os.close(fd)
    done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir)
    assert done.returncode == 0, done.describe()
    assert "cache hit" not in done.stderr, done.stderr
    for stage in faultkit.STAGES:
        lines = [line for line in done.stderr.splitlines() if line.split()[:1] == [stage]]
        assert sum("refused" in line for line in lines) == 1, (stage, done.stderr)
        assert sum(" running" in line for line in lines) == 1, (stage, done.stderr)
    assert faultkit.matches_reference(reference, runs / "tiny", "A") == []
    assert faultkit.verified_clean(cache) == []


# --- damaged files ----------------------------------------------------------------------------------------------

def _flip(path: Path, offset_from_end: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("stage", [pytest.param("finetune_lm", marks=pytest.mark.slow), "classifier"])
def test_flipped_byte_in_a_npy_is_refused_and_recomputed(reference, workdir, stage):
    """One bit of a weight in the memory-mapped .npy file. No run folder, and for finetune_lm no classifier, so
    the run must load the damaged artifact; the bundle it writes is the clean run's, bit for bit."""
    cache, runs = faultkit.fresh_copy(reference, workdir, with_runs=False)
    folder = _folder(cache, stage, reference.keys[stage])
    npy = sorted(folder.glob("*.npy"))
    assert npy, f"the reference {stage} artifact has no .npy file: the test would not test it"
    _flip(npy[0])
    if stage == "finetune_lm":
        shutil.rmtree(_folder(cache, "classifier", reference.keys["classifier"]))
    verified = faultkit.verify(cache)
    assert verified.returncode == 1 and f"CORRUPT  {stage}" in verified.stdout, verified.stdout
    done = faultkit.cli(faultkit.run_args(reference.corpus, runs), cache, cwd=workdir)
    assert done.returncode == 0, done.describe()
    assert _recomputed(done, stage), done.stderr
    assert faultkit.matches_reference(reference, runs / "tiny", "A") == []
    assert faultkit.verified_clean(cache) == []


@pytest.mark.parametrize("content", ["truncated", "[]", *(pytest.param(c, marks=pytest.mark.slow)
                                                          for c in ("null", "garbage", "huge", "empty"))])
def test_damaged_meta_json(reference, workdir, content):
    cache, runs = faultkit.fresh_copy(reference, workdir)
    meta = _folder(cache, "tokenization", reference.keys["tokenization"]) / "meta.json"
    original = meta.read_bytes()
    meta.write_bytes({"truncated": original[: len(original) // 2], "[]": b"[]", "null": b"null",
                      "garbage": os.urandom(300), "huge": b" " * (20 << 20) + b"{}", "empty": b""}[content])
    done = _commands(reference, cache, runs, workdir)
    for name, result in done.items():
        faultkit.no_traceback(result)
    assert done["ls"].returncode == 0 and "tokenization" in done["ls"].stdout
    assert done["verify"].returncode == 1 and "CORRUPT  tokenization" in done["verify"].stdout
    assert done["show"].returncode == 0
    assert done["run"].returncode == 0 and _recomputed(done["run"], "tokenization"), done["run"].describe()
    assert faultkit.matches_reference(reference, runs / "tiny", "A") == []
    gc = faultkit.cli(["cache", "gc", "--runs-dir", str(runs)], cache, cwd=workdir)
    faultkit.no_traceback(gc)
    assert gc.returncode == 0 and faultkit.verified_clean(cache) == []


# --- the predict bundle -----------------------------------------------------------------------------------------

def _bundle(ref, workdir: Path) -> Path:
    return Path(shutil.copytree(ref.run_dir / "model", workdir / "model"))


def _seal(folder: Path, config: dict, name: str | None = None) -> None:
    """Write config.json, with the sha256 of `name` (a bundle file just rewritten) and its own checksum made to
    match: what is left to refuse is the content."""
    from nlp_pipeline.core.hashing import file_sha256
    from nlp_pipeline.export import bundle

    if name is not None:
        config.setdefault("files", {})[name] = file_sha256(folder / name)
    if hasattr(bundle, "seal_config"):
        config = bundle.seal_config(config)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def _safetensors(header: dict, body: bytes, claimed_length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if claimed_length is None else claimed_length) + raw + body


WEIGHT = "encoder.embedding.weight"
ABSURD_HEADERS = {
    "shape_2^60": ({WEIGHT: {"dtype": "F32", "shape": [2 ** 40, 2 ** 20], "data_offsets": [0, 16]}}, None),
    "offsets_past_the_end": ({WEIGHT: {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 2 ** 50]}}, None),
    "header_length_2^62": ({WEIGHT: {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, 2 ** 62),
    "header_length_1MB": ({WEIGHT: {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, 10 ** 6),
    "unknown_dtype": ({WEIGHT: {"dtype": "Q99", "shape": [2, 2], "data_offsets": [0, 16]}}, None),
    "negative_shape": ({WEIGHT: {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}}, None),
}
ABSURD_CONFIG = {  # field -> value, with config.json's checksum recomputed
    "max_length": [0, -1, 10 ** 12, "100", None],
    "linear.weight": [5, -1, "NaN"],
    "arch.members": [100000, 0, -3],
    "arch.embedding_dim": [10 ** 9],
    "arch.hidden_dim": [-1, 10 ** 8],
    "arch.num_layers": [10 ** 6, 0],
    "arch.vocab_size": [10 ** 12],
    "label_names": [[], "neg,pos", ["neg", "neg"]],
    "arch": [[]],
    "format_version": [10 ** 9],
}


def _absurd_config_cases():
    for field, values in ABSURD_CONFIG.items():
        for value in values:
            yield field, value


def _set(config: dict, field: str, value) -> dict:
    *parents, last = field.split(".")
    target = config
    for key in parents:
        target = target[key]
    target[last] = float("nan") if value == "NaN" else value
    return config


# Loads every case folder given on the command line in one interpreter (torch imported once), under a memory
# limit, and prints per case: the exception type, whether it is the package's one-line error, and the message.
LOAD_EACH = r'''
import json, resource, sys, time, traceback
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from nlp_pipeline.core.errors import NlpPipelineError
from nlp_pipeline.export.bundle import Classifier
for folder in sys.argv[1:]:
    started = time.time()
    try:
        Classifier.load(folder, num_threads=1)
        out = {"loaded": True}
    except NlpPipelineError as exc:
        out = {"error": type(exc).__name__, "ours": True, "message": str(exc)}
    except BaseException as exc:
        out = {"error": type(exc).__name__, "ours": False, "message": traceback.format_exc()[-600:]}
    out.update(folder=folder, seconds=round(time.time() - started, 2))
    print(json.dumps(out), flush=True)
'''


def _load_each(folders: list[Path]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", LOAD_EACH, *map(str, folders)], capture_output=True, text=True,
                          timeout=600, env=faultkit.environment(None))
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(folders), f"the loader died after {len(results)} of {len(folders)}:\n{done.stderr[-3000:]}"
    return results


def _refused(result: dict, *names: str) -> list[str]:
    problems = []
    if result.get("loaded"):
        problems.append("loaded without complaint")
    elif not result.get("ours"):
        problems.append(f"not a one-line error but {result['error']}: {result['message']}")
    else:
        message = result["message"]
        if "\n" in message:
            problems.append(f"a message of several lines: {message!r}")
        if names and not any(name in message for name in names):
            problems.append(f"the message names none of {names}: {message}")
    if result.get("seconds", 0) > 60:
        problems.append(f"took {result['seconds']} s to refuse")
    return problems


def test_bundle_with_absurd_safetensors_headers_is_refused(reference, workdir, check):
    folders = {}
    for case, (header, claimed) in ABSURD_HEADERS.items():
        folder = Path(shutil.copytree(reference.run_dir / "model", workdir / case))
        (folder / "model.safetensors").write_bytes(_safetensors(header, b"\0" * 16, claimed))
        _seal(folder, json.loads((folder / "config.json").read_text()), "model.safetensors")
        folders[case] = folder
    for case, result in zip(folders, _load_each(list(folders.values()))):
        check.record(_refused(result, "model.safetensors"), case)
    check.assert_clean()


def test_bundle_with_absurd_config_values_is_refused(reference, workdir, check):
    """Finding 8: config.json was neither checksummed nor validated (max_length 1: every answer the same;
    members 100000: memory until the machine gives out). The checksum is recomputed here, so each value must
    be refused for itself, quickly, under a 3 GB memory limit."""
    cases = list(_absurd_config_cases())
    folders = []
    for number, (field, value) in enumerate(cases):
        folder = Path(shutil.copytree(reference.run_dir / "model", workdir / f"case{number}"))
        _seal(folder, _set(json.loads((folder / "config.json").read_text()), field, value))
        folders.append(folder)
    for (field, value), result in zip(cases, _load_each(folders)):
        check.record(_refused(result, "config.json", "format"), f"{field} = {value!r}")
    check.assert_clean()


def test_bundle_config_edited_by_hand_is_refused(reference, workdir):
    """max_length 100 -> 1 without recomputing the checksum (finding 8: every prediction became the same)."""
    folder = _bundle(reference, workdir)
    config = json.loads((folder / "config.json").read_text())
    config["max_length"] = 1
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    done = faultkit.cli(["predict", "--model", str(folder), "a wonderful film"], None,
                        preexec_fn=faultkit.set_memory_limit(3 << 30))
    line = faultkit.error_line(done)
    assert "config.json" in line, line
    assert done.stdout == ""


@pytest.mark.parametrize("case", ["pickle_weights", "shape_2^60", "members_100000"])
def test_predict_on_a_tampered_bundle_is_one_line(reference, workdir, case):
    """The command line on three tampered bundles: one line, exit 1, nothing predicted, nothing executed."""
    folder = _bundle(reference, workdir)
    marker = workdir / "EXECUTED"
    config = json.loads((folder / "config.json").read_text())
    if case == "pickle_weights":
        (folder / "model.safetensors").write_bytes(payload_bytes(marker))
        _seal(folder, config, "model.safetensors")
    elif case == "shape_2^60":
        (folder / "model.safetensors").write_bytes(_safetensors(*ABSURD_HEADERS["shape_2^60"][:1], b"\0" * 16))
        _seal(folder, config, "model.safetensors")
    else:
        _seal(folder, _set(config, "arch.members", 100000))
    done = faultkit.cli(["predict", "--model", str(folder), "a wonderful film"], None,
                        preexec_fn=faultkit.set_memory_limit(3 << 30), timeout=120)
    line = faultkit.error_line(done)
    assert str(folder) in line and "re-export" in line, line
    assert done.stdout == "" and not marker.exists()
