"""Write docs/results.md, the current benchmark numbers, from benchmarks/results/*.json.

    python benchmarks/results_page.py [--results DIR] [--out FILE]

Takes every `*.json` in the results folder (default `benchmarks/results/`) and writes one Markdown page (default
`docs/results.md`), prints the path it wrote, and changes no results file. The page is a pure function of the files:
run it again after adding results, and `tests/test_results_page.py` fails while the page in the repository is stale.
Older numbers stay in git history, not on the page.

Which file counts (the page states the same rules):
- Accuracy, one table per dataset: the newest `bench_ulmfit.py` file (by its `date`) that read the test split with
  the shipped defaults: no `--no-test`, no `--general`/`--general-words`, no `--scale tiny`, and no `--set` other
  than the settings in NEUTRAL_SETTINGS (they choose where or how fast work runs, never a result). Options outside
  RESULT_NEUTRAL_OPTIONS count as changed settings. Files of equal date: the first by file name wins.
- A file whose only setting is `--set corpus.max_labelled=N` feeds the few-label table (newest per N and dataset).
- Any other file is an experiment or a validation-only run: listed by name under the tables; the decision records
  in docs/decisions/ cite the ones a default was chosen from.
- Peers that do not depend on our settings (MiniLM + LR, fastText, fastai from scratch) come from the dataset's
  current file; when it lacks one, from the newest file that qualifies for the same table and has it (for MiniLM
  and fastText also `peers.json`), and the row names that file.
- The default corpus's table: the newest `bench_pipeline.py` file run without options.
- LM perplexity and the speed tables (tokenization, LM training throughput, predict, serve, word vectors, LSA
  baselines, corpus preparation at scale): each from the newest file of its benchmark that holds the table's
  fields and its peer.
Limits: `*.partial.json` (a running benchmark's checkpoint) is not read; a file that is not valid JSON, has no readable date, or lacks a table's fields is skipped with a note on
the page (the next newest file is tried); the script never stops on one. Dates without a time zone are read as UTC.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, markdown_table  # noqa: E402

OUT = ROOT / "docs" / "results.md"

# --set fields that never change a result: where work runs, how it is split, how often a checkpoint is saved.
NEUTRAL_SETTINGS = ("workers", "chunk_size", "executor", "ray_address", "checkpoint_minutes")
# bench_ulmfit.py options that leave our model's settings alone (which datasets, which extra rows, which cache).
RESULT_NEUTRAL_OPTIONS = ("--datasets", "--skip-throughput", "--skip-fastai", "--peers", "--cache-dir", "--ablations",
                          "--rounds", "--throughput-steps", "--throughput-sizes", "--threads", "--perplexity")
DATASET_NAMES = {"trec6": "TREC-6", "mr": "MR", "sst2": "SST-2", "imdb": "IMDb", "rotten_tomatoes": "default corpus (rotten_tomatoes)"}


class Skip(Exception):
    """A file cannot serve a table; the message says why."""


# --- reading ---------------------------------------------------------------------------------------------------
def parse_date(text) -> datetime:
    if not isinstance(text, str) or not text.strip():
        raise Skip("no date")
    text = text.strip()
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():  # +0000 -> +00:00
        text = text[:-2] + ":" + text[-2:]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise Skip(f"unreadable date {text!r}") from None
    return when.astimezone(timezone.utc).replace(tzinfo=None) if when.tzinfo else when


class Result:
    def __init__(self, path: Path, data: dict):
        self.name, self.data = path.name, data
        self.date = parse_date(data.get("date"))
        self.command = data.get("command") if isinstance(data.get("command"), str) else ""

    def when(self) -> str:
        return self.date.strftime("%Y-%m-%d %H:%M")

    def cite(self) -> str:
        """Name, date and command; a file's own "note" (how it was run, what not to read into it) in brackets."""
        command = f", `{self.command}`" if self.command else ", command not recorded"
        note = f" ({self.data['note'].rstrip('.')})" if isinstance(self.data.get("note"), str) and self.data["note"] else ""
        return f"`{self.name}`, {self.when()}{command}{note}"


def load(folder: Path) -> tuple[list[Result], list[str]]:
    """Every readable result file, newest first (equal dates: by name), and a note per unreadable one."""
    results, notes = [], []
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith(".partial.json"):  # a running benchmark's checkpoint (git ignores it), not a result
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise Skip("not a JSON object")
            results.append(Result(path, data))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            notes.append(f"`{path.name}`: not readable JSON ({type(exc).__name__})")
        except Skip as exc:
            notes.append(f"`{path.name}`: {exc}")
    results.sort(key=lambda r: r.name)
    results.sort(key=lambda r: r.date, reverse=True)
    return results, notes


def script(result: Result) -> str:
    words = result.command.split()
    for word in words[:3]:
        if word.endswith(".py") or word.startswith("make"):
            return Path(word).name if word.endswith(".py") else word
    return ""


def ulmfit_kind(result: Result) -> tuple[str, int | None, int | None]:
    """(kind, N labelled, N documents) from the recorded command: kind "current", "few" (N labelled is
    corpus.max_labelled), "validation" or "experiment"; N documents is corpus.max_documents of a run on a sample."""
    try:
        words = shlex.split(result.command)
    except ValueError:
        return "experiment", None, None
    words = words[words.index(next(w for w in words if w.endswith("bench_ulmfit.py"))) + 1:]
    if "--no-test" in words:
        return "validation", None, None
    changed, labelled, sample, i = False, None, None, 0
    while i < len(words):
        word = words[i]
        option, _, inline = word.partition("=")
        if option == "--set":
            value = inline if inline else (words[i + 1] if i + 1 < len(words) else "")
            i += 0 if inline else 1
            field, _, setting = value.partition("=")
            if field == "corpus.max_labelled" and setting.isdigit():
                labelled = int(setting)
            elif field == "corpus.max_documents" and setting.isdigit():
                sample = int(setting)  # the defaults on a sample: titled by its size, never a full corpus's row
            elif field.rpartition(".")[2] not in NEUTRAL_SETTINGS:
                changed = True
        elif option == "--scale":
            value = inline if inline else (words[i + 1] if i + 1 < len(words) else "")
            i += 0 if inline else 1
            changed = changed or value != "full"
        elif option.startswith("--") and option not in RESULT_NEUTRAL_OPTIONS:
            changed = True
        i += 1
    if changed:
        return "experiment", None, None
    return ("few" if labelled else "current"), labelled, sample


# --- formatting ------------------------------------------------------------------------------------------------
def pct(value) -> str:
    """A share as a percentage with one decimal, rounded half up from the stored digits (0.7645 -> 76.5)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return str((Decimal(repr(value)) * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def num(value, digits: int = 1) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{value:,.{digits}f}"


def dataset_title(name: str) -> str:
    return DATASET_NAMES.get(name, name)


# --- accuracy tables -------------------------------------------------------------------------------------------
def ours_rows(entry: dict) -> list[list[str]]:
    ours = entry["ours"]
    if not isinstance(ours, dict) or not isinstance(ours.get("test_accuracy"), (int, float)):
        raise Skip("no test accuracy of ours")
    blend = ours.get("blend") if isinstance(ours.get("blend"), dict) else None
    label = f"ours: blend (weight {blend.get('weight')})" if blend else "ours: RNN classifier"
    rows = [[label, pct(ours["test_accuracy"]), pct(ours.get("val_accuracy")), num(ours.get("minutes"))]]
    if blend:
        test, val = blend.get("test_accuracy") or {}, blend.get("validation_accuracy") or {}
        rows.append(["ours: RNN alone", pct(test.get("rnn")), pct(val.get("rnn")), "-"])
        rows.append(["ours: its linear model alone", pct(test.get("linear")), pct(val.get("linear")), "-"])
    tfidf = entry.get("tfidf_logreg")
    if isinstance(tfidf, dict):
        minutes = tfidf.get("seconds") / 60 if isinstance(tfidf.get("seconds"), (int, float)) else None
        rows.append(["TF-IDF + logistic regression (lsa stage)", pct(tfidf.get("accuracy")),
                     pct(tfidf.get("validation_accuracy")), num(minutes, 2)])
    return rows


def readable_rows(result: Result, dataset: str, entry, notes: list[str]) -> list[list[str]] | None:
    """ours_rows of one dataset of a file, or None with a note when the entry is malformed."""
    try:
        if not isinstance(entry, dict):
            raise Skip("not an object")
        return ours_rows(entry)
    except (Skip, KeyError, TypeError, AttributeError) as exc:
        notes.append(f"`{result.name}` ({dataset}): skipped, {exc if isinstance(exc, Skip) else 'malformed'}")
        return None


PEERS = (("minilm_logreg", "minilm_lr", "all-MiniLM-L6-v2 + logistic regression"),
         ("fasttext", "fasttext", "fastText supervised"),
         ("fastai_scratch", None, "fastai 2.8 ULMFiT, no pretraining"))


def peer_value(result: Result, dataset: str, key: str, peers_key: str | None):
    """(test accuracy, validation accuracy, minutes) of a peer in a file, or None."""
    if peers_key and isinstance(result.data.get("results"), dict) and script(result) == "peers.py":
        peer = (result.data["results"].get(dataset) or {}).get(peers_key)
        if isinstance(peer, dict) and isinstance(peer.get("accuracy"), (int, float)):
            seconds = peer.get("seconds")
            return peer["accuracy"], None, seconds / 60 if isinstance(seconds, (int, float)) else None
        return None
    entry = (result.data.get("datasets") or {}).get(dataset)
    peer = entry.get(key) if isinstance(entry, dict) else None
    if isinstance(peer, dict) and isinstance(peer.get("test_accuracy"), (int, float)):
        return peer["test_accuracy"], peer.get("val_accuracy"), peer.get("minutes")
    return None


def lm_of(result: Result) -> str:
    metrics = (result.data.get("pretrain") or {}).get("metrics") or {}
    tokens = metrics.get("train_tokens")
    where = metrics.get("loaded_from") or ("pretrained in the run" if tokens else "")
    perplexity = metrics.get("val_perplexity")
    held_out = f", held-out perplexity {perplexity:.1f}" if isinstance(perplexity, (int, float)) else ""
    return f"{where}, {tokens:,} pretraining tokens{held_out}" if isinstance(tokens, int) else (where or "not recorded")


def accuracy_section(results: list[Result], notes: list[str]) -> tuple[list[str], list[list[str]], dict]:
    """The per-dataset tables, the summary rows, and the bench_ulmfit files by what they are."""
    kinds: dict[str, list[Result]] = {"current": [], "few": [], "validation": [], "experiment": []}
    labelled: dict[str, int] = {}
    samples: dict[str, int | None] = {}
    for result in results:
        if script(result) != "bench_ulmfit.py" or not isinstance(result.data.get("datasets"), dict):
            continue
        kind, n, sample = ulmfit_kind(result)
        samples[result.name] = sample
        kinds[kind].append(result)
        if n:
            labelled[result.name] = n
    peer_sources = kinds["current"] + [r for r in results if script(r) == "peers.py"]
    peer_sources.sort(key=lambda r: r.name)
    peer_sources.sort(key=lambda r: r.date, reverse=True)

    def sample_of(source: Result) -> int | None:  # peers count only for rows of the same sample (none = all)
        return samples.get(source.name) if source.name in samples else source.data.get("max_documents")
    current: dict[str, Result] = {}
    lines, summary, used = [], [], set()
    for result in kinds["current"]:  # newest first
        sample = samples[result.name]
        for dataset, entry in result.data["datasets"].items():
            key = f"{dataset}@{sample}" if sample else dataset
            rows = None if key in current else readable_rows(result, dataset, entry, notes)
            if rows is None:
                continue
            current[key] = result
            title = dataset_title(dataset) + (f" ({sample:,}-document sample)" if sample else "")
            used.add(result.name)
            cells = {}
            for key, peers_key, label in PEERS:
                for source in [result] + [r for r in peer_sources if r is not result and sample_of(r) == sample]:
                    value = peer_value(source, dataset, key, peers_key)
                    if value:
                        rows.append([label, pct(value[0]), pct(value[1]), num(value[2], 2)]
                                    + ([] if source is result else [f"`{source.name}`, {source.when()}"]))
                        cells[key] = pct(value[0]) + ("" if source is result else "*")
                        break
            for row in rows:
                if len(row) == 4:
                    row.append("this run")
            documents = entry.get("documents") or {}
            sizes = ", ".join(f"{v:,} {k}" for k, v in documents.items() if isinstance(v, int))
            lines += [f"### {title}", "",
                      f"Source: {result.cite()}. Language model: {lm_of(result)}."
                      + (f" Documents: {sizes}." if sizes else ""), "",
                      markdown_table(["method", "test accuracy %", "validation accuracy %", "minutes", "source"], rows), ""]
            blend_row = rows[0]
            rnn = next((r[1] for r in rows if r[0] == "ours: RNN alone"), "-")
            tfidf = next((r[1] for r in rows if r[0].startswith("TF-IDF")), "-")
            summary.append([title, blend_row[1], rnn, tfidf, cells.get("minilm_logreg", "-"),
                            cells.get("fasttext", "-"), cells.get("fastai_scratch", "-"), blend_row[3],
                            f"`{result.name}`"])
    few_rows, seen = [], set()
    for result in kinds["few"]:
        n = labelled[result.name]
        for dataset, entry in result.data["datasets"].items():
            rows = None if (n, dataset) in seen else readable_rows(result, dataset, entry, notes)
            if rows is None:
                continue
            seen.add((n, dataset))
            used.add(result.name)
            rnn = next((r[1] for r in rows if r[0] == "ours: RNN alone"), "-")
            tfidf = next((r[1] for r in rows if r[0].startswith("TF-IDF")), "-")
            peers = [pct((peer_value(result, dataset, key, None) or ("-",))[0]) for key, _, _ in PEERS[:2]]
            few_rows.append([f"{n:,}", dataset_title(dataset), rows[0][1], rnn, tfidf, *peers,
                             f"`{result.name}`, {result.when()}"])
    few_rows.sort(key=lambda row: (int(row[0].replace(",", "")), row[1]))
    if few_rows:
        lines += ["### Few labels", "",
                  "Runs with `--set corpus.max_labelled=N`: N labelled training texts, the other training texts are "
                  "unlabelled text for the language model; test accuracy %, peers from the same run.", "",
                  markdown_table(["labelled", "dataset", "ours: blend", "ours: RNN alone", "TF-IDF + LR", "MiniLM + LR",
                                  "fastText", "source"], few_rows), ""]
    others = {kind: [r.name for r in kinds[kind] if r.name not in used] for kind in kinds}
    return lines, summary, others


def default_corpus_section(results: list[Result], notes: list[str]) -> tuple[list[str], list[str] | None]:
    for result in results:
        if script(result) != "bench_pipeline.py" or result.command.split()[1:]:
            continue
        try:
            metrics = result.data["cold_run_metrics"]
            (corpus, stages), = metrics.items()
            clf, lsa = stages.get("blend") or stages["classifier"], stages.get("lsa") or {}  # before the blend stage: the classifier's
            cold, warm, changed = result.data["cold"], result.data.get("warm"), result.data.get("changed")
            rows = [[f"ours: blend (weight {clf.get('blend_weight')})", pct(clf["test_accuracy"]), pct(clf.get("val_accuracy"))],
                    ["ours: RNN alone", pct(clf.get("rnn_test_accuracy")), "-"],
                    ["ours: its linear model alone", pct(clf.get("linear_test_accuracy")), "-"],
                    ["TF-IDF + logistic regression (lsa stage)", pct(lsa.get("tfidf_logreg_accuracy")), "-"]]
            timing = (f"Cold cache {num(cold / 60)} minutes for the whole run"
                      + (f", cached re-run {num(warm, 2)} s" if isinstance(warm, (int, float)) else "")
                      + (f", one lsa setting changed {num(changed)} s" if isinstance(changed, (int, float)) else "") + ".")
        except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
            notes.append(f"`{result.name}`: skipped, malformed bench_pipeline result")
            continue
        lines = [f"### Default corpus (`nlp-pipeline run`, corpus `{corpus}`)", "",
                 f"Source: {result.cite()}. {timing}", "",
                 markdown_table(["method", "test accuracy %", "validation accuracy %"], rows), ""]
        summary = ["default corpus (`nlp-pipeline run`)", rows[0][1], rows[1][1], rows[3][1], "-", "-", "-",
                   f"{num(cold / 60)} cold", f"`{result.name}`"]
        return lines, summary
    return [], None


# --- perplexity and speed tables -------------------------------------------------------------------------------
def perplexity_table(data: dict) -> tuple[str, list[str], list[list]]:
    rows = [[r["lm"], num(r.get("lm_train_tokens"), 0), num(r.get("vocab_size"), 0), num(r["perplexity"], 1),
             pct(r.get("oov_rate")), num(r.get("lm_val_perplexity"), 1)] for r in data["results"]]
    if not rows:
        raise Skip("no LM scored")
    return ("WikiText-2's test text as the pipeline tokenizes it (not comparable with published WikiText-2 numbers).",
            ["language model", "pretraining tokens", "vocabulary", "WikiText-2 test perplexity", "OOV %",
             "its held-out perplexity"], rows)


def tokenization_table(data: dict) -> tuple[str, list[str], list[list]]:
    workers, summary = next(iter(data["summary"].items()))
    best = summary["best"]
    ours = best["ours"]["seconds"]
    rows = [[method, num(run["seconds"], 2), num(run["tokens"] / run["seconds"], 0), f"{run['seconds'] / ours:.2f}x",
             num(run["peak_rss_mb"] - run["rss_before_mb"], 0)] for method, run in best.items()]
    if len(rows) < 2:
        raise Skip("no peer")
    return (f"{data['texts']:,} texts at scale 1, {workers}, the full rule set (raw spaCy applies none).",
            ["method", "seconds", "tokens/s", "time vs ours", "memory growth MB"], rows)


def throughput_table(data: dict) -> tuple[str, list[str], list[list]]:
    rows, base = [], {}
    for r in data["throughput"]:
        if r["which"] == "fastai":
            base[tuple(r["sizes"])] = r["step_seconds"]
    if not base:
        raise Skip("no fastai row")
    for r in data["throughput"]:
        peer = base.get(tuple(r["sizes"]))
        rows.append(["/".join(map(str, r["sizes"])), r["which"], num(r["tokens_per_second"], 0),
                     f"{peer / r['step_seconds']:.2f}x" if peer else "-"])
    return ("AWD-LSTM language-model training steps, batch 64, BPTT 70, same vocabulary and sizes as fastai's.",
            ["emb/hidden/layers", "implementation", "tokens/s", "speed vs fastai"], rows)


def predict_table(data: dict) -> tuple[str, list[str], list[list]]:
    rows = [[r["implementation"], num(r["latency_ms_median"], 2), num(r["texts_per_second"], 0),
             f"{r['latency_vs_ours']:.2f}x", f"{r['throughput_vs_ours']:.2f}x"] for r in data["rows"]]
    if len(rows) < 2:
        raise Skip("no peer")
    return (f"One text's latency (median of {data.get('latency_calls', '?')} calls) and {num(data.get('texts'), 0)} "
            f"{data.get('text_source', '')} texts in one call; ratios are peer / ours float32.",
            ["implementation", "1 text median ms", "texts/s", "latency vs ours", "throughput vs ours"], rows)


def serve_table(data: dict) -> tuple[str, list[str], list[list]]:
    def row(level, max_batch, wait):
        return [level["clients"], max_batch, wait, num(level["requests_per_second"]),
                num(level["requests"] / level["server_cpu_seconds"], 0), num(level["p50_ms"], 0),
                num(level["texts_per_batch"])]

    rows = [row(level, 64, 0) for level in data["levels"]]
    rows.append(row(data["unbatched_max_batch_1"], "1 (no batching)", 0))
    rows += [row(level, 64, f"{data['batch_wait_ms']:g} ms") for level in data.get("batch_wait_levels") or []]
    return ("`nlp-pipeline serve`, one question per request from concurrent clients; requests per server CPU-second "
            "compare rows on a loaded machine; the peer is the same server without batching.",
            ["clients", "max batch", "batch wait", "requests/s", "per server CPU-second", "p50 ms", "texts per pass"], rows)


def embeddings_table(data: dict) -> tuple[str, list[str], list[list]]:
    runs = data["equal_epochs"]
    cbow = next(r["seconds"] for r in runs if r["run"] == "word2vec CBOW")
    rows = [[r["run"], r["epochs"], num(r["seconds"], 2), f"{r['seconds'] / cbow:.2f}x",
             num(r["wordsim353_spearman"], 3), num(r["simlex999_spearman"], 3), num(r["analogy_accuracy"], 3)]
            for r in runs]
    return (f"{data['tokens']:,} tokens, {data.get('workers', '?')} worker threads, equal epochs; gensim's word2vec "
            "and fastText against our GloVe.",
            ["run", "epochs", "seconds", "time vs word2vec CBOW", "wordsim353 ρ", "simlex999 ρ", "analogy accuracy"], rows)


def lsa_table(data: dict) -> tuple[str, list[str], list[list]]:
    rows = []
    for dataset, r in data["results"].items():
        ours, plain = r["ours"], r["plain"]
        rows.append([dataset_title(dataset), pct(ours["tfidf_logreg"]["accuracy"]),
                     pct(plain["plain_tfidf_logreg"]["accuracy"]), pct(ours["lsa_logreg"]["accuracy"]),
                     pct(plain["plain_lsa_logreg"]["accuracy"]), num(ours.get("lsa_stage_seconds")),
                     num(plain["plain_tfidf_logreg"]["seconds"] + plain["plain_lsa_logreg"]["seconds"])])
    if not rows:
        raise Skip("no dataset")
    return ("Test accuracy %. Ours chooses C on a validation slice and tokenizes with the full rule set; plain "
            "scikit-learn uses raw text and C = 1.",
            ["dataset", "ours TF-IDF + LR", "plain TF-IDF + LR", "ours LSA + LR", "plain LSA + LR",
             "ours s (both, C search)", "plain s (both)"], rows)


def scaling_table(data: dict) -> tuple[str, list[str], list[list]]:
    runs = data["results"]
    if len({r["method"] for r in runs}) < 2:
        raise Skip("one method only")
    rows = [[r["method"], r["scale"], num(r["corpus_mb"]), num(r["tokens_per_second"], 0), num(r["peak_anon_mb"], 0),
             num(r["seconds"], 0)] for r in runs]
    return ("Corpus, tokenization and numericalization of a text corpus repeated `scale` times; peak anonymous "
            "memory of the main process (docs/scaling.md).",
            ["method", "scale", "MB", "tokens/s", "peak anon MB", "seconds"], rows)


SPEED = (("LM perplexity", "bench_lm_perplexity.py", perplexity_table),
         ("Tokenization", "bench_tokenization.py", tokenization_table),
         ("LM training throughput", "bench_ulmfit.py", throughput_table),
         ("Predict", "bench_predict.py", predict_table),
         ("Serve", "bench_serve.py", serve_table),
         ("Word vectors", "bench_embeddings.py", embeddings_table),
         ("TF-IDF and LSA baselines", "bench_lsa.py", lsa_table),
         ("Corpus preparation at scale", "bench_scaling.py", scaling_table))
FILE_PREFIX = {"bench_lm_perplexity.py": "lm-perplexity", "bench_tokenization.py": "tokenization",
               "bench_ulmfit.py": "ulmfit", "bench_predict.py": "predict", "bench_serve.py": "serve",
               "bench_embeddings.py": "embeddings", "bench_lsa.py": "lsa", "bench_scaling.py": "scaling"}


def speed_section(results: list[Result], notes: list[str]) -> list[str]:
    lines = []
    for title, bench, build in SPEED:
        for result in results:
            # a file belongs to a benchmark by its recorded command, or by its name when the command was not recorded
            if script(result) != bench and not (not result.command and result.name.startswith(FILE_PREFIX[bench])):
                continue
            if bench == "bench_ulmfit.py" and "throughput" not in result.data:
                continue
            try:
                caption, header, rows = build(result.data)
            except Skip:  # a file of the benchmark without this table's peer: the next newest may have it
                continue
            except (KeyError, TypeError, ValueError, AttributeError, StopIteration, ZeroDivisionError):
                notes.append(f"`{result.name}` ({title}): skipped, malformed")
                continue
            lines += [f"### {title}", "", f"Source: {result.cite()}. {caption}", "", markdown_table(header, rows), ""]
            break
    return lines


# --- the page --------------------------------------------------------------------------------------------------
RULES = """\
How this page is made: `python benchmarks/results_page.py` writes it from `benchmarks/results/*.json` (edit the
script, not this page). Each table names its source file, that run's date and its command; older runs stay in git
history. Every number comes from a 2-core CPU machine shared with other jobs: compare times within one table only.

Which file counts:
- **One table per dataset**: the newest `bench_ulmfit.py` run that read the test split with the shipped defaults:
  no `--no-test`, no option that changes our settings (`--general`, `--general-words`, `--scale tiny`, ...; the
  script's RESULT_NEUTRAL_OPTIONS lists those that do not), and no `--set` other than settings that choose only where
  or how fast work runs (`workers`, `chunk_size`, `executor`, `ray_address`, `checkpoint_minutes`). Equal dates: the
  first file by name.
- **Few labels**: runs whose only setting is `--set corpus.max_labelled=N`, the newest per N and dataset.
- **Experiments** (any other `--set` or `--general`) and **validation-only runs** (`--no-test`) are not in these
  tables (they are listed below them); the decision records in [decisions/](decisions/) cite the ones a default was
  chosen from.
- **Peers** (MiniLM + LR, fastText, fastai from scratch) do not depend on our settings: a dataset's table takes them
  from its current run, or else from the newest qualifying run (or `peers.py` run) that has them; the `source`
  column names that file, and the summary marks such a number with `*`.
- **Perplexity and speed**: each table from the newest file of its benchmark that holds the table and its peer.
- `packaged` names the language model shipped when the run was made; its pretraining tokens and held-out
  perplexity tell which one.
- Which runs read which test labels: [benchmarks.md](benchmarks.md#test-label-reads)."""


def render(folder: Path) -> str:
    results, notes = load(folder)
    dataset_lines, summary, others = accuracy_section(results, notes)
    default_lines, default_summary = default_corpus_section(results, notes)
    if default_summary:
        summary.append(default_summary)
    lines = ["# Results", "", RULES, "", "## Accuracy", ""]
    if summary:
        lines += ["Test accuracy %, and our run's minutes (fine-tuning and classifier; the default corpus: the whole "
                  "cold run):", "",
                  markdown_table(["dataset", "ours: blend", "ours: RNN alone", "TF-IDF + LR", "MiniLM + LR", "fastText",
                                  "fastai", "ours: minutes", "source"], summary), ""]
    else:
        lines += ["No result file qualifies yet.", ""]
    lines += dataset_lines + default_lines
    listed = [(label, others[kind]) for kind, label in (("current", "superseded by a newer (or equally new) file"),
                                                        ("few", "older few-label runs"),
                                                        ("validation", "validation only (`--no-test`)"),
                                                        ("experiment", "experiments")) if others[kind]]
    if listed:
        lines += ["### Not in these tables", ""]
        lines += [f"- {label}: " + ", ".join(f"`{name}`" for name in names) for label, names in listed]
        lines += [""]
    lines += ["## Perplexity and speed", ""] + speed_section(results, notes)
    if notes:
        lines += ["## Skipped files", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of result JSON files")
    parser.add_argument("--out", type=Path, default=OUT, help="page to write")
    args = parser.parse_args()
    if not args.results.is_dir():
        sys.exit(f"error: {args.results} is not a folder of results; pass --results DIR")
    page = render(args.results)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
