"""benchmarks/results_page.py: which result file fills which table, and docs/results.md kept current."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_page", ROOT / "benchmarks" / "results_page.py")
results_page = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_page)


def ulmfit(date: str, options: str, test: float, *, peers: bool = False) -> dict:
    ours = {"test_accuracy": test, "val_accuracy": 0.85, "minutes": 2.0,
            "blend": {"weight": 0.5, "test_accuracy": {"rnn": 0.88, "linear": 0.8},
                      "validation_accuracy": {"rnn": 0.84, "linear": 0.78}}}
    entry = {"documents": {"train": 100, "test": 50}, "ours": ours,
             "tfidf_logreg": {"accuracy": 0.8, "validation_accuracy": 0.79, "seconds": 6.0}}
    if peers:
        entry["minilm_logreg"] = {"test_accuracy": 0.7, "minutes": 0.5}
        entry["fasttext"] = {"test_accuracy": 0.6, "minutes": 0.01}
    return {"date": date, "command": f"bench_ulmfit.py --datasets trec6 {options}".strip(),
            "pretrain": {"metrics": {"loaded_from": "packaged", "train_tokens": 1000}}, "datasets": {"trec6": entry}}


def write(folder: Path, name: str, payload) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    (folder / name).write_text(text, encoding="utf-8")


def test_newest_default_run_wins_and_the_others_go_where_the_rules_say(tmp_path):
    write(tmp_path, "ulmfit-old.json", ulmfit("2026-01-01 10:00", "--peers", 0.90, peers=True))
    write(tmp_path, "ulmfit-new.json", ulmfit("2026-01-02 10:00", "--skip-fastai --cache-dir /tmp/c", 0.95))
    write(tmp_path, "ulmfit-valid.json", ulmfit("2026-01-03 10:00", "--no-test", 0.99))
    write(tmp_path, "ulmfit-exp.json", ulmfit("2026-01-04 10:00", "--set classifier.members=2", 0.97))
    write(tmp_path, "ulmfit-few.json", ulmfit("2026-01-05 10:00", "--peers --set corpus.max_labelled=100", 0.61, peers=True))
    write(tmp_path, "broken.json", "{not json")
    write(tmp_path, "ulmfit.partial.json", {"trec6": {}})

    lines = results_page.render(tmp_path).splitlines()

    trec6 = lines[lines.index("### TREC-6"):]
    assert trec6[2] == ("Source: `ulmfit-new.json`, 2026-01-02 10:00, `bench_ulmfit.py --datasets trec6 --skip-fastai "
                        "--cache-dir /tmp/c`. Language model: packaged, 1,000 pretraining tokens. Documents: 100 train, "
                        "50 test.")
    assert trec6[4:12] == [
        "| method | test accuracy % | validation accuracy % | minutes | source |",
        "| --- | --- | --- | --- | --- |",
        "| ours: blend (weight 0.5) | 95.0 | 85.0 | 2.0 | this run |",
        "| ours: RNN alone | 88.0 | 84.0 | - | this run |",
        "| ours: its linear model alone | 80.0 | 78.0 | - | this run |",
        "| TF-IDF + logistic regression (lsa stage) | 80.0 | 79.0 | 0.10 | this run |",
        "| all-MiniLM-L6-v2 + logistic regression | 70.0 | - | 0.50 | `ulmfit-old.json`, 2026-01-01 10:00 |",
        "| fastText supervised | 60.0 | - | 0.01 | `ulmfit-old.json`, 2026-01-01 10:00 |",
    ]
    assert ("| TREC-6 | 95.0 | 88.0 | 80.0 | 70.0* | 60.0* | - | 2.0 | `ulmfit-new.json` |") in lines
    few = lines[lines.index("### Few labels"):]
    assert few[6] == "| 100 | TREC-6 | 61.0 | 88.0 | 80.0 | 70.0 | 60.0 | `ulmfit-few.json`, 2026-01-05 10:00 |"
    assert len([line for line in few[6:] if line.startswith("| 100 ")]) == 1
    assert "- superseded by a newer (or equally new) file: `ulmfit-old.json`" in lines
    assert "- validation only (`--no-test`): `ulmfit-valid.json`" in lines
    assert "- experiments: `ulmfit-exp.json`" in lines
    assert "- `broken.json`: not readable JSON (JSONDecodeError)" in lines
    assert not [line for line in lines if "partial" in line]


def test_a_run_on_a_sample_of_a_corpus_has_its_own_row_and_leaves_the_full_corpus_row(tmp_path):
    write(tmp_path, "ulmfit-full.json", ulmfit("2026-01-01 10:00", "", 0.95))
    write(tmp_path, "ulmfit-sample.json", ulmfit("2026-01-02 10:00", "--set corpus.max_documents=3000", 0.91))

    lines = results_page.render(tmp_path).splitlines()

    assert "### TREC-6 (3,000-document sample)" in lines and "### TREC-6" in lines
    assert "| TREC-6 | 95.0 | 88.0 | 80.0 | - | - | - | 2.0 | `ulmfit-full.json` |" in lines
    assert "| TREC-6 (3,000-document sample) | 91.0 | 88.0 | 80.0 | - | - | - | 2.0 | `ulmfit-sample.json` |" in lines


def test_peers_fill_only_the_rows_of_their_own_sample(tmp_path):
    write(tmp_path, "ulmfit-full.json", ulmfit("2026-01-01 10:00", "--peers", 0.95, peers=True))
    write(tmp_path, "ulmfit-sample.json", ulmfit("2026-01-02 10:00", "--set corpus.max_documents=3000", 0.91))
    write(tmp_path, "peers-sample.json", {"date": "2026-01-03 10:00", "command": "python benchmarks/peers.py --datasets trec6 "
                                          "--max-documents 3000", "max_documents": 3000,
                                          "results": {"trec6": {"minilm_lr": {"accuracy": 0.5, "seconds": 60}}}})

    lines = results_page.render(tmp_path).splitlines()

    assert "| TREC-6 | 95.0 | 88.0 | 80.0 | 70.0 | 60.0 | - | 2.0 | `ulmfit-full.json` |" in lines
    assert "| TREC-6 (3,000-document sample) | 91.0 | 88.0 | 80.0 | 50.0* | - | - | 2.0 | `ulmfit-sample.json` |" in lines
    sample = lines[lines.index("### TREC-6 (3,000-document sample)"):]
    assert "| all-MiniLM-L6-v2 + logistic regression | 50.0 | - | 1.00 | `peers-sample.json`, 2026-01-03 10:00 |" in sample


def test_a_file_without_the_fields_of_a_table_is_noted_and_the_next_newest_serves(tmp_path):
    good = {"date": "2026-01-01T09:00:00+00:00", "command": "bench_predict.py", "texts": 10, "rows": [
        {"implementation": "ours float32", "latency_ms_median": 4.0, "texts_per_second": 100.0,
         "latency_vs_ours": 1.0, "throughput_vs_ours": 1.0},
        {"implementation": "fastai", "latency_ms_median": 8.0, "texts_per_second": 50.0,
         "latency_vs_ours": 2.0, "throughput_vs_ours": 0.5}]}
    write(tmp_path, "predict-old.json", good)
    write(tmp_path, "predict.json", {"date": "2026-01-02 09:00", "command": "bench_predict.py", "rows": [{}]})
    write(tmp_path, "nodate.json", {"command": "bench_lsa.py"})

    lines = results_page.render(tmp_path).splitlines()

    assert lines[lines.index("### Predict") + 2].startswith("Source: `predict-old.json`, 2026-01-01 09:00,")
    assert "| fastai | 8.00 | 50 | 2.00x | 0.50x |" in lines
    assert "- `predict.json` (Predict): skipped, malformed" in lines
    assert "- `nodate.json`: no date" in lines


def test_docs_results_md_is_what_the_generator_makes_of_the_repository_results():
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert page == results_page.render(ROOT / "benchmarks" / "results"), (
        "docs/results.md is stale: run `python benchmarks/results_page.py` and commit the page")
