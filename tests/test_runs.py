"""runs.py: the run folder under faults. A failed or killed write leaves the previous folder whole and a rerun
repairs it, run names are one plain folder name, an unusable --runs-dir is refused before any stage runs, leftovers
of dead processes are cleaned and never carried into a new folder."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nlp_pipeline import runs as runs_module
from nlp_pipeline.cli import main
from nlp_pipeline.core import atomic
from test_cli import FAST, TINY_LM, corpus_dir  # noqa: F401  (corpus_dir is a fixture)

STRICT = ["--set", "blend.linear=false", "--set", "classifier.precision=float32"]  # the bundle = the artifact


def _invoke(args, tmp_path):
    return CliRunner().invoke(main, args, env={"NLP_PIPELINE_CACHE": str(tmp_path / "cache")})


def _error_line(result) -> str:
    """The one `error: ...` line of a failed command (and no traceback)."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def _test_texts(corpus_dir: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (corpus_dir / "test.jsonl").read_text().splitlines()]


def _serves(run_dir: Path, cache: Path, corpus_dir: Path) -> None:
    """predict --model run_dir answers with the classifier that keys.json and metrics.json name."""
    from nlp_pipeline.core.store import ArtifactStore
    from nlp_pipeline.export.bundle import Classifier

    keys = json.loads((run_dir / "keys.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert keys["classifier"] == metrics["classifier"]["key"]
    result = ArtifactStore(cache).load("classifier", keys["classifier"])
    probs = Classifier.load(run_dir, num_threads=1).predict_proba(_test_texts(corpus_dir))
    np.testing.assert_allclose(probs, result.test_probabilities, atol=1e-5)


@pytest.mark.slow
def test_a_bundle_that_does_not_fit_leaves_the_previous_run_and_the_rerun_serves_the_new_model(corpus_dir, tmp_path,
                                                                                                monkeypatch):
    """Finding 1 + 6: the disk fills while the second run (another seed) writes its bundle. One line naming the
    run folder, exit 1, the first run's folder untouched; the rerun then writes the new model, not a stale one."""
    from nlp_pipeline.models import lm_file

    runs, cache = tmp_path / "runs", tmp_path / "cache"
    args = ["run", "--corpus", str(corpus_dir), *FAST, *TINY_LM, *STRICT, "--runs-dir", str(runs)]
    first = _invoke(args, tmp_path)
    assert first.exit_code == 0, first.output
    run_dir = runs / "tiny"
    before = _snapshot(run_dir)

    real_save = lm_file.write_safetensors                    # what the bundle writes its weights with

    def disk_full(path, tensors, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lm_file, "write_safetensors", disk_full)
    second = _invoke([*args, "--set", "classifier.seed=1"], tmp_path)
    assert second.exit_code == 1, second.output
    line = _error_line(second)
    assert str(run_dir) in line and "No space left on device" in line, line
    assert _snapshot(run_dir) == before                      # the first run's folder, byte for byte
    assert _hidden(runs) == []                               # nothing half-written left beside or inside it

    monkeypatch.setattr(lm_file, "write_safetensors", real_save)
    third = _invoke([*args, "--set", "classifier.seed=1"], tmp_path)
    assert third.exit_code == 0, third.output
    assert "report and predict bundle written" in third.stderr
    assert 'seed = 1' in (run_dir / "config.toml").read_text().split("[classifier]")[1]
    _serves(run_dir, cache, corpus_dir)
    assert _hidden(runs) == []


# --- write_run itself: every failure before the swap leaves the previous folder whole --------------------------

@pytest.fixture(scope="module")
def two_models():
    """Two tiny trained classifiers (seeds 0 and 1) and their corpus, ~2 s."""
    from test_bundle import make_tiny_result

    first, corpus = make_tiny_result(linear_nb=[False])
    second, _ = make_tiny_result(linear_nb=[False], seed=1)
    return first, second, corpus


def _run_result(classifier_key: str):
    from nlp_pipeline.core.runner import RunResult, StageReport

    reports = [StageReport("corpus", "corpus", "c" * 64, "hit", 0.0),
               StageReport("classifier", "classifier", classifier_key, "ran", 1.0, {"test_accuracy": 0.5})]
    return RunResult(reports, {})


def _configs(seed: int):
    from nlp_pipeline import pipeline

    return pipeline.load_config(sets=[f"classifier.seed={seed}"])


def _write(run_dir, seed, model, corpus, key, calls=None):
    from nlp_pipeline import pipeline

    def artifacts():
        if calls is not None:
            calls.append(key)
        return {"classifier": model, "corpus": corpus}

    return runs_module.write_run(run_dir, _configs(seed), _run_result(key), report_artifacts=artifacts)


def _bundle_weights(run_dir: Path) -> bytes:
    return (run_dir / "model" / "model.safetensors").read_bytes()


def _raise_keyboard_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _raise_disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("target, failure", [
    ("nlp_pipeline.export.bundle.save_bundle", _raise_disk_full),
    ("nlp_pipeline.export.bundle.save_bundle", _raise_keyboard_interrupt),
    ("nlp_pipeline.export.report.write_run_report", _raise_disk_full),
    ("nlp_pipeline.export.report.write_run_report", _raise_keyboard_interrupt),
])
def test_a_failed_write_keeps_the_previous_folder_whole_and_the_rerun_completes_it(two_models, tmp_path, monkeypatch,
                                                                                   target, failure):
    from nlp_pipeline.core.errors import OutputError

    first, second, corpus = two_models
    run_dir = tmp_path / "runs" / "tiny"
    _write(run_dir, 0, first, corpus, "a" * 64)
    (run_dir / "notes.txt").write_text("the user's own notes")
    before = _snapshot(run_dir)
    with monkeypatch.context() as patched:
        patched.setattr(target, failure)
        with pytest.raises((OutputError, KeyboardInterrupt)) as raised:
            _write(run_dir, 1, second, corpus, "b" * 64)
    if raised.type is OutputError:
        assert str(run_dir) in str(raised.value) and "No space left on device" in str(raised.value)
    assert _snapshot(run_dir) == before and _hidden(tmp_path) == []
    calls = []
    _write(run_dir, 1, second, corpus, "b" * 64, calls)    # the rerun: same keys as the failed write
    assert calls == ["b" * 64]                              # not skipped: the bundle and report are written
    assert json.loads((run_dir / "keys.json").read_text())["classifier"] == "b" * 64
    assert _bundle_weights(run_dir) != before["model/model.safetensors"]
    assert (run_dir / "notes.txt").read_text() == "the user's own notes"
    assert _hidden(tmp_path) == []


def test_the_same_keys_reuse_the_bundle_and_other_keys_replace_it(two_models, tmp_path):
    first, second, corpus = two_models
    run_dir = tmp_path / "runs" / "tiny"
    calls = []
    _write(run_dir, 0, first, corpus, "a" * 64, calls)
    weights = _bundle_weights(run_dir)
    assert (run_dir / "report.md").read_text().splitlines()[0] == "# Run report: tiny"  # not the staging folder's name
    _write(run_dir, 0, first, corpus, "a" * 64, calls)
    assert calls == ["a" * 64] and _bundle_weights(run_dir) == weights  # a cached rerun loads no model
    _write(run_dir, 1, second, corpus, "b" * 64, calls)
    assert calls == ["a" * 64, "b" * 64] and _bundle_weights(run_dir) != weights


def test_a_folder_without_the_completion_record_is_rewritten(two_models, tmp_path):
    """A folder an earlier version left (keys.json written before a bundle that never came) is not trusted."""
    first, second, corpus = two_models
    run_dir = tmp_path / "runs" / "tiny"
    _write(run_dir, 0, first, corpus, "a" * 64)
    stale = _bundle_weights(run_dir)
    (run_dir / "run.json").unlink()
    keys = json.loads((run_dir / "keys.json").read_text())
    (run_dir / "keys.json").write_text(json.dumps(dict(keys, classifier="b" * 64)))  # what the old order left
    calls = []
    _write(run_dir, 1, second, corpus, "b" * 64, calls)
    assert calls == ["b" * 64] and _bundle_weights(run_dir) != stale


def test_a_run_that_stops_before_the_classifier_drops_the_old_model(two_models, tmp_path):
    """The folder describes one run: no bundle or report of another configuration stays beside its metrics."""
    from nlp_pipeline import pipeline
    from nlp_pipeline.core.runner import RunResult, StageReport

    first, _, corpus = two_models
    run_dir = tmp_path / "runs" / "tiny"
    _write(run_dir, 0, first, corpus, "a" * 64)
    (run_dir / "plot.png").write_bytes(b"the user's plot")
    until_corpus = RunResult([StageReport("corpus", "corpus", "c" * 64, "hit", 0.0)], {})
    runs_module.write_run(run_dir, _configs(0), until_corpus, report_artifacts=lambda: pytest.fail("nothing to report"))
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.toml", "keys.json", "metrics.json", "plot.png", "run.json"]


# --- run names ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["..", ".", "a/b", "../escape", "ABSOLUTE", ".hidden", "", "bell\x07", "tab\tname",
                                  "back\\slash", "x" * 200])
def test_run_names_are_one_plain_folder_name(corpus_dir, tmp_path, name):
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    name = str(tmp_path / "elsewhere") if name == "ABSOLUTE" else name
    (work / "notes.txt").write_text("the user's file")
    result = _invoke(["run", "--corpus", str(corpus_dir), "--runs-dir", str(work / "runs"), "--until", "corpus", *FAST,
                      "--name", name], tmp_path)
    assert result.exit_code == 2, result.output
    assert "--name" in _error_line(result)
    assert sorted(p.name for p in work.rglob("*")) == ["notes.txt", "runs"]   # nothing moved, nothing written
    assert "running" not in result.stderr and not (tmp_path / "elsewhere").exists()


def test_a_default_name_is_always_a_valid_one():
    from nlp_pipeline import pipeline
    from nlp_pipeline.runs import check_name

    for source in ("trec6", "/data/.hidden/", "hf:..", "..", "/", "~/my corpus.csv", "hf:org/set"):
        configs = pipeline.load_config(overrides={"corpus": {"source": source}})
        assert check_name(pipeline.run_name(configs)) == pipeline.run_name(configs)


# --- an unusable --runs-dir: refused up front --------------------------------------------------------------------

def _refuse_writes(monkeypatch, folder: Path, code: int) -> None:
    """Writes anywhere under `folder` fail with OSError(code), as on a read-only, full or forbidden disk."""
    import builtins
    import io

    folder = str(folder)

    def under(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(folder)

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fspath(path)) if code not in (errno.EACCES, errno.EPERM) else \
            PermissionError(code, os.strerror(code), os.fspath(path))

    real_open, real_os_open, real_mkdir, real_rename = builtins.open, os.open, os.mkdir, os.rename

    def fake_open(file, mode="r", *args, **kwargs):
        if under(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if under(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_rename(src, dst, *args, **kwargs):
        if under(src) or under(dst):
            refuse(dst)
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(os, "rename", fake_rename)


@pytest.mark.parametrize("code, phrase", [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system"),
                                          (errno.ENOSPC, "No space left on device")])
def test_an_unwritable_runs_dir_is_one_line_before_any_stage_runs(corpus_dir, tmp_path, monkeypatch, code, phrase):
    runs = tmp_path / "runs"
    runs.mkdir()
    _refuse_writes(monkeypatch, runs, code)
    result = _invoke(["run", "--corpus", str(corpus_dir), "--runs-dir", str(runs), "--until", "corpus", *FAST], tmp_path)
    assert result.exit_code == 1, result.output
    line = _error_line(result)
    assert str(runs) in line and phrase in line and "--runs-dir" in line, line
    assert "running" not in result.stderr                               # refused before the first stage
    assert list(runs.iterdir()) == []


def test_a_runs_dir_under_a_file_is_one_line_before_any_stage_runs(corpus_dir, tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    runs = tmp_path / "blocker" / "runs"
    result = _invoke(["run", "--corpus", str(corpus_dir), "--runs-dir", str(runs), "--until", "corpus", *FAST], tmp_path)
    assert result.exit_code == 1, result.output
    line = _error_line(result)
    assert str(tmp_path / "blocker") in line and "--runs-dir" in line, line
    assert "running" not in result.stderr


def test_a_run_folder_that_is_not_one_is_refused(corpus_dir, tmp_path):
    """--name pointing at a folder of other files (or a file) is refused, not swapped away."""
    runs = tmp_path / "runs"
    (runs / "mine").mkdir(parents=True)
    (runs / "mine" / "thesis.tex").write_text("months of work")
    (runs / "afile").write_text("a file")
    for name in ("mine", "afile"):
        result = _invoke(["run", "--corpus", str(corpus_dir), "--runs-dir", str(runs), "--until", "corpus", *FAST,
                          "--name", name], tmp_path)
        assert result.exit_code == 2, result.output
        assert str(runs / name) in _error_line(result) and "--name" in _error_line(result)
    assert (runs / "mine" / "thesis.tex").read_text() == "months of work" and (runs / "afile").read_text() == "a file"


# --- leftovers ---------------------------------------------------------------------------------------------------

def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_leftovers_of_dead_runs_are_cleaned_and_hidden_files_never_carried(two_models, tmp_path):
    import socket

    first, _, corpus = two_models
    runs = tmp_path / "runs"
    run_dir = runs / "tiny"
    _write(run_dir, 0, first, corpus, "a" * 64)
    host = atomic.host_tag()
    dead, alive = _dead_pid(), os.getpid()
    stale = [runs / f".tiny.staging.{dead}@{host}.x1y2", runs / f".other.old.{dead}@{host}.abcd",
             runs / f".runs.probe.{dead}@{host}.zz"]
    kept = [runs / f".tiny.staging.{alive}@{host}.q1", runs / f".tiny.staging.{dead}@another-host.q2",
            runs / ".my-own-hidden-folder"]
    for path in stale[:2] + kept:
        path.mkdir()
        (path / "metrics.json").write_text("{}")
    stale[2].write_text("")
    restorable = runs / f".lost.old.{dead}@{host}.r2d2"            # killed between moving it aside and the swap
    restorable.mkdir()
    (restorable / "keys.json").write_text("{}")
    legacy = [run_dir / ".model-abc123", run_dir / ".report.md-k9", run_dir / ".training_curves-x1.png"]  # old code's
    legacy[0].mkdir()
    for path in legacy[1:]:
        path.write_bytes(b"half")
    assert socket.gethostname()  # host_tag is derived from it

    runs_module.prepare(runs, "tiny")
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert (runs / "lost" / "keys.json").is_file() and not restorable.exists()
    _write(run_dir, 0, first, corpus, "a" * 64)
    assert _hidden(run_dir) == []                                          # the old code's temporaries are gone


def test_a_killed_run_leaves_nothing_a_rerun_trusts(corpus_dir, tmp_path):
    """SIGKILL while the run folder is staged: the previous folder stays, the rerun cleans the staging folder."""
    runs = tmp_path / "runs"
    env = dict(os.environ, NLP_PIPELINE_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "nlp_pipeline.cli", "run", "--corpus", str(corpus_dir), "--runs-dir", str(runs),
               "--until", "corpus", *FAST]
    assert subprocess.run(command, env=env, capture_output=True, timeout=300).returncode == 0
    before = _snapshot(runs / "tiny")
    killer = ("import os, signal, sys, runpy\n"
              "import nlp_pipeline.core.atomic as atomic\n"
              "def die(*a, **k): os.kill(os.getpid(), signal.SIGKILL)\n"
              "atomic.swap = die\n"
              "sys.argv = ['nlp-pipeline', *sys.argv[1:]]\n"
              "runpy.run_module('nlp_pipeline.cli', run_name='__main__')\n")
    killed = subprocess.run([sys.executable, "-c", killer, *command[3:], "--set", "corpus.seed=5"], env=env,
                            capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert _snapshot(runs / "tiny") == before and len(_hidden(runs)) == 1     # its staging folder, and only that
    again = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert again.returncode == 0 and _hidden(runs) == []


# --- progress where no bar draws -----------------------------------------------------------------------------------

def _stderr_to_a_file(monkeypatch):
    """stderr is a file, not a terminal (a run logged with 2> run.log), with the CLI's log handler on it. Called in
    the test itself: pytest sets its own sys.stderr again between fixtures and the test."""
    import io
    import logging

    from nlp_pipeline import cli

    stream = io.StringIO()
    logger = logging.getLogger("nlp_pipeline")
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "level", logger.level)
    monkeypatch.setattr(sys, "stderr", stream)
    cli._setup_logging(False)
    return stream


def _tiny_data(n_docs: int = 24, length: int = 12):
    rng = np.random.default_rng(0)
    lengths = np.full(n_docs, length)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(2, 20, size=int(offsets[-1]))
    labels = np.arange(n_docs) % 2
    return ids, offsets, labels


def _tiny_encoder():
    import torch

    from nlp_pipeline.models.rnn import AwdEncoder, Dropouts

    torch.manual_seed(0)
    return AwdEncoder(vocab_size=20, embedding_dim=8, hidden_dim=12, num_layers=2, rnn_type="lstm", pad_id=1,
                      dropouts=Dropouts(0.1, 0.1, 0.1, 0.1))


def _fit_classifier(label: str = "classifier"):
    import torch

    from nlp_pipeline.models import training
    from nlp_pipeline.models.heads import ClassifierNet

    ids, offsets, labels = _tiny_data()
    model = ClassifierNet(_tiny_encoder(), num_classes=2, head_hidden_dim=6)
    training.fit_classifier(
        model, ids, offsets, labels, np.arange(16), np.arange(16, 24), stages=[(1, 2, 0.01), (3, 1, 0.005)],
        discriminative_factor=2.6, batch_size=4, max_length=50, pad_id=1, schedule="stlr", warmup_fraction=0.1,
        weight_decay=0.01, betas=(0.7, 0.99), clip=0.4, patience=0, rng=np.random.default_rng(0),
        device=torch.device("cpu"), progress_label=label)


def _fit_language_model():
    import torch

    from nlp_pipeline.models import training
    from nlp_pipeline.models.heads import LanguageModelNet

    ids, offsets, _ = _tiny_data()
    model = LanguageModelNet(_tiny_encoder(), output_dropout=0.1)
    optimizer = training.make_optimizer([list(model.parameters())], [0.01], 0.01, (0.7, 0.99))
    valid = ids[:40].reshape(2, 20)
    training.fit_language_model(
        model, optimizer, ids, offsets, np.arange(20), valid, epochs=2, batch_size=2, bptt=5, variable_bptt=False,
        schedule="stlr", warmup_fraction=0.1, clip=0.4, activation_regularization=0.0,
        temporal_activation_regularization=0.0, rng=np.random.default_rng(0), device=torch.device("cpu"),
        phase="finetune")


def _lines(stream, prefix: str) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.startswith(prefix)]


def test_training_writes_a_line_per_epoch_with_eta_where_no_bar_draws(monkeypatch):
    """Finding 11: a run logged to a file shows each epoch of the classifier and of the LM: the stage, epoch i/n,
    train loss, the validation score (perplexity), seconds and the time left; and, inside a long epoch, how far."""
    import re

    from nlp_pipeline.models import training

    stderr_log = _stderr_to_a_file(monkeypatch)

    _fit_classifier("classifier 2/3")
    epochs = _lines(stderr_log, "classifier 2/3 stage")
    assert [line.split(":")[0] for line in epochs if "ETA" in line and "%" not in line] == [
        "classifier 2/3 stage 1/2 epoch 1/2", "classifier 2/3 stage 1/2 epoch 2/2", "classifier 2/3 stage 2/2 epoch 1/1"]
    pattern = r"train loss [\d.]+, validation accuracy [\d.]+, loss [\d.]+, \d+ s, ETA \d+:\d\d:\d\d$"
    assert all(re.search(pattern, line) for line in epochs), epochs
    assert epochs[-1].endswith("ETA 0:00:00")

    _fit_language_model()
    lm = _lines(stderr_log, "finetune epoch")
    assert len(lm) == 2 and all(re.search(r"train loss [\d.]+, validation perplexity [\d.]+, .*\d+ s, ETA \d+:\d\d:\d\d$",
                                          line) for line in lm), lm

    monkeypatch.setattr(training, "PROGRESS_EVERY", 0.0)       # a line inside the epoch whenever one is due
    _fit_classifier("again")
    inside = [line for line in _lines(stderr_log, "again stage") if "%" in line]
    assert inside and all(re.search(r"\d+% \(\d+ of \d+ batches\), [\d.]+ batches/s, epoch ETA \d+:\d\d:\d\d", line)
                          for line in inside), inside
    _fit_language_model()
    assert any(re.search(r"finetune epoch \d/2: \d+% \([\d,]+ of [\d,]+ tokens\)", line) for line in stderr_log.getvalue().splitlines())


def test_on_a_terminal_the_bar_draws_and_the_epoch_lines_stay(monkeypatch):
    from nlp_pipeline.models import training

    stderr_log = _stderr_to_a_file(monkeypatch)
    monkeypatch.setattr(stderr_log, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(training, "PROGRESS_EVERY", 0.0)
    _fit_classifier()
    lines = _lines(stderr_log, "classifier stage")
    assert len([line for line in lines if ", ETA" in line]) == 3 and not [line for line in lines if "batches)" in line]
    assert "batch/s" in stderr_log.getvalue()                    # tqdm's bar


def test_an_earlier_versions_leftovers_are_cleaned_when_they_hold_nothing_of_the_users(tmp_path):
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    (runs / "tiny" / "keys.json").write_text("{}")
    dead = _dead_pid()
    old_aside, lost = runs / f".tiny-old-{dead}", runs / f".lost-old-{dead}"   # its swap, killed in between
    for folder in (old_aside, lost):
        folder.mkdir()
        (folder / "keys.json").write_text("{}")
    stale, recent, users = runs / ".tiny-ab12cd34", runs / ".tiny-zz99yy88", runs / ".tiny-qq11ww22"  # its staging
    for folder in (stale, recent, users):
        folder.mkdir()
        (folder / "metrics.json").write_text("{}")
    (users / "thesis.tex").write_text("moved there before the kill")
    two_hours_ago = time.time() - 7200
    for folder in (stale, users):
        os.utime(folder, (two_hours_ago, two_hours_ago))

    runs_module.prepare(runs, "tiny")
    assert not old_aside.exists() and (runs / "lost" / "keys.json").is_file() and not lost.exists()
    assert not stale.exists() and recent.exists() and (users / "thesis.tex").exists()


def test_write_run_from_python_refuses_to_replace_what_is_not_a_run_folder(two_models, tmp_path):
    from nlp_pipeline.core.errors import ConfigError

    first, _, corpus = two_models
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny").write_text("a file of the user's")
    with pytest.raises(ConfigError, match="not a run folder"):
        _write(tmp_path / "runs" / "tiny", 0, first, corpus, "a" * 64)
    assert (tmp_path / "runs" / "tiny").read_text() == "a file of the user's" and _hidden(tmp_path) == []
