"""report.html: the run report as one self-contained web page, rendered from the same blocks as report.md.

    render_html(report_blocks(...), run_dir, "trec6") -> "<!DOCTYPE html>..."   (export.report.write_report writes it)

Takes the blocks of export.report (Heading, Paragraph, Table, Figure, Code) and the folder holding the figures'
PNG files; returns the page as text. Every figure is inlined as a data: URI, the styles are inline, and there is
no script: the page opens from any folder, offline, in any browser, and its Content-Security-Policy (images from
data: URIs only, no scripts, no connections) makes a browser refuse, and report on its console, anything that would
load from elsewhere. Level-2 headings get anchors and a table of contents at the top. A figure whose PNG is
missing is said so in its place. Numbers are formatted as in report.md (export.report.format_value) and
right-aligned. Limits: figures are embedded at full size (a confusion matrix of many labels makes a large page);
the page is static (no sorting or filtering of tables).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from nlp_pipeline.export.report import Block, Bold, Code, Figure, Heading, Link, Paragraph, Span, Table, format_value

POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
STYLE = """
:root { color-scheme: light; --ink: #1d2433; --muted: #5b6475; --line: #d9dee7; --band: #f4f6fa; --accent: #2456a6; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 28px; margin: 8px 0 4px; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 17px; margin: 24px 0 8px; }
p { margin: 8px 0; max-width: 75em; }
nav { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 12px 0 8px; padding: 10px 14px; background: var(--band);
      border-radius: 6px; font-size: 14px; }
nav a { white-space: nowrap; }
a { color: var(--accent); }
table { border-collapse: collapse; margin: 10px 0 14px; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:hover { background: #fafbfd; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
pre { background: var(--band); padding: 12px 14px; border-radius: 6px; overflow-x: auto; font-size: 13px; }
.missing { color: #a33; }
"""


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 2
    while slug in used:
        slug, n = f"{base}-{n}", n + 1
    used.add(slug)
    return slug


def _span(span: Span) -> str:
    if isinstance(span, Bold):
        return f"<strong>{html.escape(span.text)}</strong>"
    if isinstance(span, Link):
        return f'<a href="{html.escape(span.href, quote=True)}">{html.escape(span.text)}</a>'
    return html.escape(span)


NUMBER = re.compile(r"-|[-+]?[0-9][0-9,]*(\.[0-9]+)?%?")  # a number as text ("12.5", "85%", "-" for none): right-aligned


def _cell(value: Any, tag: str = "td") -> str:
    numeric = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
        isinstance(value, str) and NUMBER.fullmatch(value) is not None) or value is None
    return f"<{tag}{' class=num' if numeric and tag == 'td' else ''}>{html.escape(format_value(value))}</{tag}>"


def _table(block: Table) -> str:
    head = "".join(_cell(h, "th") for h in block.header)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in block.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _figure(block: Figure, image_dir: Path) -> str:
    path = image_dir / block.file
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return f'<p class="missing">(figure {html.escape(block.file)} is missing)</p>'
    alt = html.escape(block.alt, quote=True)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{alt}" title="{alt}"></figure>'


def render_html(blocks: list[Block], image_dir: str | Path, title: str) -> str:
    """The page for `blocks`; figures are read from image_dir and inlined."""
    image_dir = Path(image_dir)
    used: set[str] = set()
    body, toc = [], []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            anchor = _slug(block.text, used)
            if level == 2:
                toc.append(f'<a href="#{anchor}">{html.escape(block.text)}</a>')
            body.append(f'<h{level} id="{anchor}">{html.escape(block.text)}</h{level}>')
        elif isinstance(block, Paragraph):
            body.append("<p>" + "".join(_span(s) for s in block.spans) + "</p>")
        elif isinstance(block, Table):
            body.append(_table(block))
        elif isinstance(block, Figure):
            body.append(_figure(block, image_dir))
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
    if toc and body and body[0].startswith("<h1"):
        body.insert(1, "<nav>" + "".join(toc) + "</nav>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(f'Run report: {title}')}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")
