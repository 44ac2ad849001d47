"""report.html of a real (tiny) run, rendered by headless Chromium: a screenshot that is not blank, no console
message (the page has no script, so any message is an error: a refused load, a broken resource), every image an
inlined PNG, and the run's key numbers in the DOM. Skipped only where no Chromium is installed (`make test`
installs Debian's chromium when it runs as root)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import TINY_RUN, write_tiny_corpus
from nlp_pipeline.cli import main
from nlp_pipeline.export.report import format_value

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: `make test` installs Debian's "
                                "chromium when run as root, else: sudo apt-get install chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":CONSOLE[:(]")   # how Chromium logs a page's console messages on stderr
WIDTH, HEIGHT = 1280, 2600
TINY = [*TINY_RUN, "--set", "embeddings.neighbour_words=[\"film\", \"great\"]"]


def chromium(tmp_path: Path, page: Path, *args: str) -> tuple[str, list[str]]:
    """Chromium headless on page: (stdout, the page's console messages from stderr)."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, [line for line in done.stderr.splitlines() if CONSOLE.search(line)]


class _Page(HTMLParser):
    """The visible text and the images' and links' addresses of a DOM."""

    def __init__(self):
        super().__init__()
        self.text, self.images, self.links, self._skip = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("style", "script", "title"):
            self._skip += 1
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        if tag == "a":
            self.links.append(attrs.get("href") or "")

    def handle_endtag(self, tag):
        if tag in ("style", "script", "title"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    corpus = write_tiny_corpus(root / "tiny")
    ran = CliRunner().invoke(main, ["run", "--corpus", str(corpus), *TINY, "--runs-dir", str(root / "runs")],
                             env={"NLP_PIPELINE_CACHE": str(root / "cache")}, catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    return root / "runs" / "tiny"


def test_the_console_check_catches_errors(tmp_path):
    """The detector used below sees a refused external image and a script error (so its silence means something)."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="img-src data:">'
                    '</head><body><img src="https://example.invalid/a.png"><script>missingFunction()</script></body></html>')
    _, console = chromium(tmp_path, page, "--dump-dom")
    assert any("example.invalid" in line for line in console) and any("missingFunction" in line for line in console)


def test_report_html_renders_without_console_errors_and_shows_the_numbers(run_dir, tmp_path):
    page = run_dir / "report.html"
    dom, console = chromium(tmp_path, page, "--dump-dom")
    assert console == [], console
    parsed = _Page()
    parsed.feed(dom)
    text = " ".join(" ".join(parsed.text).split())

    metrics = json.loads((run_dir / "metrics.json").read_text())
    clf, lsa = metrics["classifier"], metrics["lsa"]
    assert "Run report: tiny" in text
    blend = metrics.get("blend") or {}
    if blend.get("blend_weight"):  # the headline is the blend's (the default weight rule may give the linear model a share)
        assert (f"ULMFiT classifier + linear blend (weight {blend['blend_weight']}) "
                f"{format_value(blend['test_accuracy'])} ") in text
    else:
        assert f"ULMFiT classifier (this run) {format_value(clf['test_accuracy'])} {format_value(clf['test_macro_f1'])}" in text
    assert (f"TF-IDF n-grams + logistic regression {format_value(lsa['tfidf_logreg_accuracy'])} "
            f"{format_value(lsa['tfidf_logreg_macro_f1'])}") in text
    assert f"finetune_lm {format_value(metrics['finetune_lm']['val_perplexity'])}" in text   # LM perplexity table
    from nlp_pipeline.core.store import ArtifactStore

    store = ArtifactStore(run_dir.parents[1] / "cache")
    classifier = store.load("classifier", clf["key"])
    shown = store.load("blend", blend["key"]) if blend.get("blend_weight") else classifier  # what the report scores
    test, names = shown.metrics["test"], classifier.label_names
    assert "true \\ predicted " + " ".join(names) + " " + " ".join(
        f"{name} {' '.join(str(n) for n in row)}" for name, row in zip(names, test["confusion"])) in text
    for name in names:                                                                      # per-class table
        row = test["per_class"][name]
        assert f"{name} {' '.join(format_value(row[k]) for k in ('precision', 'recall', 'f1'))} {row['support']}" in text
    wrong = [json.loads(line) for line in (run_dir / "most_wrong.jsonl").read_text().splitlines()]
    assert wrong and wrong[0]["text"] in text                                               # most-wrong texts
    for heading in ("Scores", "Per class (test)", "Confusion matrix", "Training curves", "LSA topics",
                    "Nearest neighbours", "word2vec word vectors", "Timings", "Configuration"):
        assert heading in text, heading
    assert "stage_learning_rates = [0.01, 0.005]" in text                                  # the config
    assert re.search(r"finetune_lm ran \d+\.\d", text)                                      # timings
    assert "film " in text and "great " in text                                             # neighbour words

    # self-contained: every image an inlined PNG, no address outside the page but the error list beside it
    assert len(parsed.images) == 2                                                          # confusion matrix, curves
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert all(link.startswith("#") or link == "most_wrong.jsonl" for link in parsed.links), parsed.links


def test_report_html_screenshot(run_dir, tmp_path):
    import matplotlib.image

    shot = tmp_path / "report.png"
    _, console = chromium(tmp_path, run_dir / "report.html", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}")
    assert console == [], console
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    grey = pixels[..., :3].mean(axis=2)
    assert grey.std() > 0.05                         # text, tables and figures, not an empty page
    assert (grey < 0.5).mean() > 0.01 and np.isclose(grey[:, -5:], grey[0, -1]).all()  # dark ink; no horizontal overflow
