"""The command line: parse, call the library, print. Nothing imports this module.

    nlp-pipeline run [--corpus trec6] [--set lsa.n_components=50] [--until lsa]
    nlp-pipeline show                      the plan: every stage instance, its key, hit or miss
    nlp-pipeline cache ls|verify|gc        what the artifact store holds
    nlp-pipeline predict --model runs/NAME TEXT...   classify with a run's bundle
    nlp-pipeline serve --model runs/NAME   the same over HTTP (POST /predict, GET /health, GET /info; serve extra)
    nlp-pipeline lr-find                   learning-rate range test for the classifier or the LM
    nlp-pipeline export vectors|lm|projector  word vectors, a portable language model, TensorBoard projector files

User mistakes print one line `error: ...` on stderr and exit 2 (usage) or 1 (data), never a traceback.
Heavy libraries are imported inside commands so `--help` is instant. This module imports only nlp_pipeline.pipeline,
nlp_pipeline.runs, nlp_pipeline.export, nlp_pipeline.core.config and nlp_pipeline.core.errors (and
nlp_pipeline.serve, the HTTP front end it starts); the import-linter contract in pyproject.toml keeps it so.
"""

from __future__ import annotations

import logging
import sys

import click

from nlp_pipeline.core.errors import NlpPipelineError


class _Group(click.Group):
    """A click group that turns NlpPipelineError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NlpPipelineError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; finished stages stay cached, re-run to resume", err=True)
            ctx.exit(130)


def _store(cache_dir: str | None):
    from nlp_pipeline.runs import open_store

    return open_store(cache_dir)


def cache_option(fn):
    return click.option(
        "--cache-dir", type=click.Path(file_okay=False), default=None, envvar="NLP_PIPELINE_CACHE",
        help="Artifact cache folder [env NLP_PIPELINE_CACHE; default: ~/.cache/nlp-pipeline].",
    )(fn)


def config_options(fn):
    """The options that resolve the pipeline's config, shared by run and show."""
    options = [
        click.option("--corpus", "corpus_source", default=None,
                     help="Corpus card name (see `nlp-pipeline corpora`), a file or folder path, or hf:NAME."),
        click.option("--text-field", default=None, help="Column holding the text (default: auto-detect)."),
        click.option("--label-field", default=None, help="Column holding the label (default: auto-detect)."),
        # artifacts.TARGET_TYPES, spelled out: importing it would load numpy for every --help
        click.option("--target-type", type=click.Choice(["class", "multi_label", "regression"]), default=None,
                     help="What a label is: one class, a set of classes, or a number [default: the card's, else class]."),
        click.option("--encoding", default=None, help="Text encoding of the corpus files [default: utf-8]."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="TOML file overriding default_config.toml, table per stage."),
        click.option("--set", "sets", multiple=True, metavar="STAGE.FIELD=VALUE",
                     help="Override one setting, e.g. --set lsa.n_components=50 (repeatable)."),
        click.option("--preset", default=None, help="Named settings layered on the defaults: quick (smoke test, ~1 min)."),
        cache_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _configs(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset):
    from nlp_pipeline import pipeline

    overrides = {"corpus": {}}
    for name, value in (("source", corpus_source), ("text_field", text_field), ("label_field", label_field),
                        ("target_type", target_type), ("encoding", encoding)):
        if value is not None:
            overrides["corpus"][name] = value
    return pipeline.load_config(config_file, sets, preset, overrides)


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("nlp_pipeline")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = True  # tests capture records through the root logger


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nlp-pipeline")
@click.option("-v", "--verbose", is_flag=True, help="More log output.")
def main(verbose: bool) -> None:
    """Train text classifiers the ULMFiT way on a CPU; every stage is cached and reusable."""
    _setup_logging(verbose)


@main.command()
@config_options
@click.option("--until", default=None, metavar="STAGE", help="Stop after this stage (and what it needs).")
@click.option("--force", multiple=True, metavar="STAGE", help="Recompute this stage even if cached (repeatable).")
@click.option("--name", default=None,
              help="Run folder name under --runs-dir: letters, digits, '.', '_', '-' [default: the corpus name].")
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Where runs/<name>/ is written (metrics.json, config.toml, keys.json, model/, report.md, report.html, "
                   "tensorboard/, run.json), "
                   "as one unit: a failed or killed run leaves the previous folder as it was.")
def run(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset, cache_dir, until, force, name, runs_dir):
    """Run the pipeline; cached stages are skipped, changed ones recomputed. Under torchrun the training
    stages run data-parallel and process 0 alone writes the cache and the run folder."""
    import time

    from nlp_pipeline import pipeline, runs

    started = time.time()
    configs = _configs(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset)
    # before any stage runs: a bad --name or an unusable --runs-dir is one line, and dead runs' leftovers go
    target = runs.prepare(runs_dir, name if name is not None else pipeline.run_name(configs))
    result, run_dir = runs.run(configs, _store(cache_dir), target, until=until, force=force,
                               echo=lambda line: click.echo(line, err=True))
    if run_dir is None:  # a torchrun process other than 0: process 0 writes the run folder and prints
        return
    click.echo(_summary_table(result))
    click.echo(f"\nresults in {run_dir}  ({time.time() - started:.1f}s)")


def _summary_table(result) -> str:
    rows = []
    for r in result.reports:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in r.summary.items() if not isinstance(v, (dict, list)))
        status = "cached" if r.status == "hit" else f"{r.status} {r.seconds:.1f}s"
        rows.append((r.id, status, r.key[:12], shown))
    widths = [max(len(row[i]) for row in rows + [("stage", "status", "key", "")]) for i in range(3)]
    lines = [f"{'stage':<{widths[0]}}  {'status':<{widths[1]}}  {'key':<{widths[2]}}  metrics"]
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@main.command()
@config_options
def show(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset, cache_dir):
    """Print the plan: every stage instance, its key, and whether it is cached. Loads nothing."""
    from nlp_pipeline import pipeline

    configs = _configs(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset)
    entries = pipeline.show(configs, _store(cache_dir))
    width = max(len(e.instance.id) for e in entries)
    for e in entries:
        detail = e.instance.stage.describe(e.instance.config) if e.instance.stage.describe else ""
        click.echo(f"{e.instance.id:<{width}}  {'hit ' if e.hit else 'miss'}  {e.key[:12]}  {detail}")


@main.command()
def corpora():
    """List the corpus cards that --corpus NAME accepts."""
    from nlp_pipeline.pipeline import corpus_cards

    for name, card in corpus_cards().items():
        click.echo(f"{name:<18} {card.get('description', '')}")


@main.group(cls=_Group)
def cache():
    """Inspect and tidy the artifact cache."""


@cache.command("ls")
@cache_option
def cache_ls(cache_dir):
    """List cached artifacts: stage, key, size, when saved, which instance (unverified: see `cache verify`)."""
    from nlp_pipeline.runs import cache_listing

    store = _store(cache_dir)
    total = 0
    for stage, key, size, meta in cache_listing(store):
        total += size
        click.echo(f"{stage:<18} {key[:12]}  {size / 1e6:9.2f} MB  {str(meta.get('saved_at', '?')):<24} "
                   f"{meta.get('instance', '')}")
    click.echo(f"{total / 1e6:.2f} MB in {store.root}")


@cache.command("verify")
@cache_option
@click.option("--remove", is_flag=True, help="Delete artifacts that fail the check (they are recomputed on the next run).")
def cache_verify(cache_dir, remove):
    """Check every artifact's signature and checksums; exit 1 if any fails."""
    from nlp_pipeline.runs import verify_cache

    bad = 0
    for stage, key, problem in verify_cache(_store(cache_dir), remove=remove):
        if problem is None:
            click.echo(f"ok       {stage:<18} {key[:12]}")
        else:
            bad += 1
            click.echo(f"CORRUPT  {stage:<18} {key[:12]}  {problem}{'  (removed)' if remove else ''}")
    if bad:
        raise SystemExit(1)


@cache.command("gc")
@cache_option
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Artifacts named in <runs-dir>/*/keys.json are kept.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--keep-checkpoints", is_flag=True,
              help="Keep the checkpoints of interrupted training (a rerun of the same run resumes from them).")
@click.option("--allow-no-runs", is_flag=True,
              help="Proceed although --runs-dir does not exist or holds no run: then no artifact is referenced and "
                   "every one is removed. Without this flag gc refuses, since a wrong --runs-dir would empty the cache.")
def cache_gc(cache_dir, runs_dir, dry_run, keep_checkpoints, allow_no_runs):
    """Remove artifacts no run refers to, and leftovers of killed runs (temporary save folders and files no
    running process holds, unused lock files and, unless --keep-checkpoints, the checkpoints of interrupted
    training; never those of training in progress). Refuses when --runs-dir holds no run, unless --allow-no-runs."""
    from nlp_pipeline.runs import collect_garbage

    def each(stage: str, key: str) -> None:
        click.echo(f"{'would remove' if dry_run else 'removed'}  {stage:<18} {key[:12]}")

    done = collect_garbage(_store(cache_dir), runs_dir, dry_run=dry_run, keep_checkpoints=keep_checkpoints,
                           allow_no_runs=allow_no_runs, each=each)
    if dry_run:
        click.echo(f"{done['artifacts']} artifacts to remove")
        return
    checkpoints = done["checkpoints"]
    click.echo(f"{done['artifacts']} artifacts removed, {done['temporaries']} temporary folders and files cleaned, "
               f"{done['locks']} unused lock files removed"
               + (f", {checkpoints} checkpoints of interrupted training removed ({done['checkpoint_bytes'] / 1e6:.1f} MB)"
                  if checkpoints else ""))


@main.command()
@click.option("--model", "model_path", required=True, type=click.Path(), metavar="PATH",
              help="A bundle folder, or a run folder runs/<name>/ (its model/ bundle is used).")
@click.argument("texts", nargs=-1)
@click.option("--file", "text_file", type=click.Path(dir_okay=False), default=None,
              help="Classify the lines of this UTF-8 file (one text per line).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON lines {text, label, probabilities} ({text, labels, probabilities} for a multi-label "
                   "model, {text, value} for a regression model).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Texts per forward pass.")
def predict(model_path, texts, text_file, as_json, batch_size):
    """Classify TEXT arguments, the lines of --file, or stdin: prints label, probability and the text.

    A multi-label model prints its labels (p at or above its threshold, chosen on validation) joined by '|';
    a regression model prints the value. Every input gets one row, in input order; stdin is answered line by
    line as it arrives.

    An empty or whitespace-only text is not classified: its row is blank (empty fields; nulls with --json) and
    a warning on stderr names its line. Bytes that are not UTF-8 (and lone surrogates in arguments) become
    U+FFFD, the text is classified so, and a warning names the line or argument. Only blank input is an
    error."""
    import itertools

    from nlp_pipeline.core.errors import ConfigError
    from nlp_pipeline.export.bundle import Classifier, LineReader, argument_inputs, file_inputs, predict_rows

    classifier = Classifier.load(model_path)
    if texts or text_file:
        inputs = itertools.chain(argument_inputs(texts), file_inputs(text_file) if text_file else ())
    else:
        if click.get_text_stream("stdin").isatty():
            raise ConfigError("no texts: pass TEXT arguments, --file FILE, or pipe texts on stdin")
        inputs = LineReader(click.get_binary_stream("stdin"), "stdin")
    for row in predict_rows(classifier, inputs, batch_size, as_json,
                            warn=lambda message: click.echo(f"warning: {message}", err=True)):
        click.echo(row)


@main.command()
@click.option("--model", "model_path", required=True, type=click.Path(), metavar="PATH",
              help="A bundle folder, or a run folder runs/<name>/ (its model/ bundle is used).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 answers other machines too (no authentication: keep it behind a proxy).")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port; 0 picks a free one (printed).")
@click.option("--max-batch", default=64, show_default=True, type=click.IntRange(min=1),
              help="Texts per forward pass: concurrent requests are batched up to this many texts.")
@click.option("--max-request-bytes", default=1 << 20, show_default=True, type=click.IntRange(min=1),
              help="Larger request bodies are refused with 413.")
@click.option("--max-texts", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Texts per request; more are refused with 413.")
@click.option("--batch-wait-ms", default=0.0, show_default=True, type=click.FloatRange(0, 10_000),
              help="After a request reaches an idle server, wait this long for others to share its batch.")
@click.option("--num-threads", default=0, show_default=True, type=click.IntRange(min=0),
              help="torch threads for prediction; 0 = every usable core.")
def serve(model_path, host, port, max_batch, max_request_bytes, max_texts, batch_wait_ms, num_threads):
    """Answer predictions over HTTP: POST /predict {"texts": [...]} or {"text": "..."}, GET /health, GET /info.

    The OpenAPI schema is at /openapi.json and a browsable page at /docs. Concurrent requests are batched into
    shared forward passes. Bad requests get a JSON {"error": ...}: 400 (not JSON, wrong fields, empty or
    non-string texts), 413 (over --max-request-bytes or --max-texts), 415 (not application/json). Needs the
    serve extra: pip install 'nlp-pipeline[serve]'. Ctrl-C stops the server."""
    from nlp_pipeline.serve import ServeLimits
    from nlp_pipeline.serve import serve as run_server

    limits = ServeLimits(max_batch=max_batch, max_request_bytes=max_request_bytes, max_texts=max_texts,
                         batch_wait_ms=batch_wait_ms)
    run_server(model_path, host, port, limits, num_threads=num_threads, echo=lambda line: click.echo(line, err=True))


@main.command("lr-find")
@config_options
@click.option("--target", type=click.Choice(["classifier", "finetune_lm"]), default="classifier", show_default=True,
              help="Which model's learning rate to probe.")
@click.option("--steps", "num_steps", default=100, show_default=True, type=click.IntRange(min=2), help="Mini-batches.")
@click.option("--start-lr", default=1e-7, show_default=True, type=float, help="First learning rate.")
@click.option("--end-lr", default=10.0, show_default=True, type=float, help="Last learning rate.")
@click.option("--trainable-groups", default=0, type=click.IntRange(min=0),
              help="Top layer groups trained [default: classifier 1 (stage 1 of gradual unfreezing), LM all].")
@click.option("--out", default="lr_find.png", show_default=True, type=click.Path(dir_okay=False), help="Plot file.")
def lr_find(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset, cache_dir, target, num_steps,
            start_lr, end_lr, trainable_groups, out):
    """LR range test: raise the learning rate from --start-lr to --end-lr and suggest one (weights are not kept)."""
    from nlp_pipeline.runs import range_test

    configs = _configs(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset)
    result = range_test(configs, _store(cache_dir), target, out, start_lr=start_lr, end_lr=end_lr, num_steps=num_steps,
                        trainable_groups=trainable_groups or None, echo=lambda line: click.echo(line, err=True))

    def shown(lr):
        return f"{lr:.2g}" if lr is not None else "none (the loss never fell)"

    click.echo(f"{target}: {result['steps']} steps, {result['stopped']}; {result['trainable_groups']} of "
               f"{result['layer_groups']} layer groups trained")
    click.echo(f"steepest descent  {shown(result['suggestion_steepest'])}")
    click.echo(f"minimum / 10      {shown(result['suggestion_min10'])}")
    click.echo(f"plot: {out}")


WORD_VECTOR_SOURCES = ("word2vec", "fasttext", "glove", "pretrained")
PROJECTOR_SOURCES = (*WORD_VECTOR_SOURCES, "lsa-docs", "lm", "classifier-docs")


@main.group(cls=_Group)
def export():
    """Write computed artifacts for other tools: word2vec-format vectors, language models, TensorBoard projector folders."""


@export.command("vectors")
@config_options
@click.option("--source", type=click.Choice(WORD_VECTOR_SOURCES), default="word2vec", show_default=True,
              help="Which word vectors (pretrained: the file given by embeddings.pretrained.path, as loaded).")
@click.option("--format", "fmt", type=click.Choice(["word2vec", "word2vec-binary"]), default="word2vec", show_default=True,
              help="Text or binary word2vec format (gensim KeyedVectors.load_word2vec_format reads both).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def export_vectors(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset, cache_dir, source, fmt,
                   out, overwrite):
    """Write word vectors of a finished run in word2vec format."""
    from nlp_pipeline.export.vectors import export_word_vectors
    from nlp_pipeline.runs import read_artifact

    configs = _configs(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset)
    vectors = read_artifact(configs, _store(cache_dir), f"embeddings:{source}")
    report = export_word_vectors(vectors, out, binary=fmt == "word2vec-binary", overwrite=overwrite)
    click.echo(f"{report['words']} x {report['dim']} {source} vectors written to {out} ({report['bytes'] / 1e6:.1f} MB)")


@export.command("lm")
@config_options
@click.option("--source", type=click.Choice(["pretrain_lm", "finetune_lm", "pretrain_lm:backward", "finetune_lm:backward"]),
              default="pretrain_lm", show_default=True,
              help="The general language model (pretrain_lm) or the one fine-tuned on the corpus (finetune_lm); "
                   "':backward' names the backward one (with --set classifier.direction=backward or both).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write (new or empty).")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="Precision of the stored weights (float16: half the size).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier exported language model at --out.")
def export_lm(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset, cache_dir, source,
              out, dtype, overwrite):
    """Write a computed language model as a portable folder (safetensors + vocab.json + config.json, no pickle).

    Fine-tune from it in any later run with --set pretrain_lm.weights=OUT.
    """
    from nlp_pipeline.runs import export_language_model

    configs = _configs(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset)
    lm, report = export_language_model(configs, _store(cache_dir), source, out, dtype=dtype, overwrite=overwrite)
    perplexity = lm.metrics.get("val_perplexity")
    click.echo(f"{source}: {report['parameters']:,} parameters ({report['dtype']}), vocabulary {report['vocab_size']:,}"
               + (f", validation perplexity {perplexity:.2f}" if isinstance(perplexity, (int, float)) else "")
               + f" -> {out} ({report['bytes'] / 1e6:.1f} MB)")
    field = "backward_weights" if lm.arch.get("backward") else "weights"
    click.echo(f"use it with: --set pretrain_lm.{field}={out}")


@export.command("projector")
@config_options
@click.option("--source", "sources", multiple=True, type=click.Choice(PROJECTOR_SOURCES), default=("word2vec",),
              show_default=True, help="Embeddings to export (repeatable): word vectors, LSA document vectors, "
              "lm (the fine-tuned language model's input embeddings), or classifier-docs (the classifier's pooled "
              "document vectors, labelled).")
@click.option("--top", default=100_000, show_default=True, type=click.IntRange(1, 100_000),
              help="At most this many points per source (most frequent words first; the projector's limit is 100,000).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder to write (new, empty, or an earlier export): `tensorboard --logdir OUT` shows it.")
def export_projector_command(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset, cache_dir,
                             sources, top, out):
    """Write a TensorBoard projector folder (plus standalone vectors.tsv/metadata.tsv pairs per source)."""
    import warnings

    from nlp_pipeline.export.projector import classifier_documents, collect_sources, export_projector, lm_embedding
    from nlp_pipeline.runs import read_artifact

    configs = _configs(corpus_source, text_field, label_field, target_type, encoding, config_file, sets, preset)
    store = _store(cache_dir)
    ids = {"lsa-docs": "lsa", "lm": "finetune_lm", "classifier-docs": "classifier"}
    embeddings = []
    for source in dict.fromkeys(sources):
        artifact = read_artifact(configs, store, ids.get(source, f"embeddings:{source}"))
        if source == "classifier-docs":
            embeddings.append(classifier_documents(source, artifact, read_artifact(configs, store, "numericalization"), top))
        elif source == "lm":
            embeddings.append(lm_embedding(source, artifact))
        else:
            embeddings += collect_sources([source], {source: artifact})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = export_projector(out, embeddings, max_points=top)
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    for item in report["embeddings"]:
        click.echo(f"{item['name']:<10} {item['points']} points x {item['dim']}" + (f" ({item['dropped']} dropped)" if item["dropped"] else ""))
    click.echo(f"written to {report['out_dir']}; view with: tensorboard --logdir {report['out_dir']}")


if __name__ == "__main__":
    main()
