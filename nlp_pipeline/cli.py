"""The command line: parse, call the library, print. Nothing imports this module.

    nlp-pipeline run [--corpus trec6] [--set lsa.n_components=50] [--until lsa]
    nlp-pipeline show                      the plan: every stage instance, its key, hit or miss
    nlp-pipeline cache ls|verify|gc        what the artifact store holds

User mistakes print one line `error: ...` on stderr and exit 2 (usage) or 1 (data), never a traceback.
Heavy libraries are imported inside commands so `--help` is instant.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

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
    from nlp_pipeline.core.store import ArtifactStore

    return ArtifactStore(cache_dir)


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


def _configs(corpus_source, text_field, label_field, encoding, config_file, sets, preset):
    from nlp_pipeline import pipeline

    overrides = {"corpus": {}}
    for name, value in (("source", corpus_source), ("text_field", text_field), ("label_field", label_field), ("encoding", encoding)):
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
@click.option("--name", default=None, help="Run folder name under --runs-dir [default: the corpus name].")
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Where runs/<name>/ (metrics.json, config.toml, keys.json) is written.")
def run(corpus_source, text_field, label_field, encoding, config_file, sets, preset, cache_dir, until, force, name, runs_dir):
    """Run the pipeline; cached stages are skipped, changed ones recomputed."""
    import time

    from nlp_pipeline import pipeline

    started = time.time()
    configs = _configs(corpus_source, text_field, label_field, encoding, config_file, sets, preset)
    store = _store(cache_dir)
    result = pipeline.run(configs, store, until=until, force=force, echo=lambda line: click.echo(line, err=True))
    run_dir = pipeline.write_run(Path(runs_dir) / (name or pipeline.run_name(configs)), configs, result)
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
def show(corpus_source, text_field, label_field, encoding, config_file, sets, preset, cache_dir):
    """Print the plan: every stage instance, its key, and whether it is cached. Loads nothing."""
    from nlp_pipeline import pipeline

    configs = _configs(corpus_source, text_field, label_field, encoding, config_file, sets, preset)
    entries = pipeline.show(configs, _store(cache_dir))
    width = max(len(e.instance.id) for e in entries)
    for e in entries:
        detail = e.instance.stage.describe(e.instance.config) if e.instance.stage.describe else ""
        click.echo(f"{e.instance.id:<{width}}  {'hit ' if e.hit else 'miss'}  {e.key[:12]}  {detail}")


@main.command()
def corpora():
    """List the corpus cards that --corpus NAME accepts."""
    from nlp_pipeline.stages.corpus import list_cards

    for name, card in list_cards().items():
        click.echo(f"{name:<18} {card.get('description', '')}")


@main.group(cls=_Group)
def cache():
    """Inspect and tidy the artifact cache."""


@cache.command("ls")
@cache_option
def cache_ls(cache_dir):
    """List cached artifacts: stage, key, size, when saved, which instance."""
    store = _store(cache_dir)
    total = 0
    for stage, key, folder in store.entries():
        size = sum(p.stat().st_size for p in folder.iterdir())
        total += size
        try:
            meta = store.read_meta(stage, key)
        except (OSError, ValueError):
            meta = {}
        click.echo(f"{stage:<18} {key[:12]}  {size / 1e6:9.2f} MB  {meta.get('saved_at', '?'):<24} {meta.get('instance', '')}")
    click.echo(f"{total / 1e6:.2f} MB in {store.root}")


@cache.command("verify")
@cache_option
@click.option("--remove", is_flag=True, help="Delete artifacts that fail the check (they are recomputed on the next run).")
def cache_verify(cache_dir, remove):
    """Check every artifact's signature and checksums; exit 1 if any fails."""
    from nlp_pipeline.core.store import CorruptArtifact

    store = _store(cache_dir)
    bad = 0
    for stage, key, _ in list(store.entries()):
        try:
            store.verify(stage, key)
            click.echo(f"ok       {stage:<18} {key[:12]}")
        except CorruptArtifact as exc:
            bad += 1
            click.echo(f"CORRUPT  {stage:<18} {key[:12]}  {exc}{'  (removed)' if remove else ''}")
            if remove:
                store.remove(stage, key)
    if bad:
        raise SystemExit(1)


@cache.command("gc")
@cache_option
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Artifacts named in <runs-dir>/*/keys.json are kept.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def cache_gc(cache_dir, runs_dir, dry_run):
    """Remove artifacts no run refers to, and leftovers of killed runs."""
    store = _store(cache_dir)
    keep = set()
    for keys_file in Path(runs_dir).glob("*/keys.json"):
        keep.update(json.loads(keys_file.read_text(encoding="utf-8")).values())
    removed = 0
    for stage, key, _ in list(store.entries()):
        if key not in keep:
            click.echo(f"{'would remove' if dry_run else 'removed'}  {stage:<18} {key[:12]}")
            if not dry_run:
                store.remove(stage, key)
            removed += 1
    temporaries = 0 if dry_run else store.clean_temporaries()
    click.echo(f"{removed} artifacts {'to remove' if dry_run else 'removed'}, {temporaries} temporary folders cleaned")


if __name__ == "__main__":
    main()
