"""``eventlogfile`` and ``csv``: header-driven CSV rows with the span of every cell.

Salesforce EventLogFile columns differ by release and EVENT_TYPE, so columns are only ever named
from the file's own header. Cells are split by hand rather than with the ``csv`` module, which
returns values but not where they are; a doubled quote stays doubled in the span (offsets index
the raw line) and is undoubled only for the few cells that become attributes.
"""
from __future__ import annotations

import re

from leakwatch.sources.formats._record import (
    AttrCollector,
    FormatError,
    ParsedRecord,
    RecordParser,
    norm_key,
)

_BOM = b"\xef\xbb\xbf"
# A column name: starts with a letter or "_", then letters, digits and the punctuation report
# exports use ("Amount (USD)", "Probability (%)", "Billing Street", "Owner: Full Name").
_NAME = re.compile(r"[^\W\d][\w .\-()/#&%'?:]*")
MAX_NAME = 128


def split_row(line: bytes) -> tuple[list[tuple[int, int]], str | None]:
    """Cell value spans of one CSV row (quotes excluded) and a problem, if any.

    Unquoted cells end at the next comma; quoted cells at the first quote not doubled. An
    unterminated quote takes the rest of the line (a value with a newline in it arrives here
    split across records). Text after a closing quote is kept in the cell and reported.
    """
    spans: list[tuple[int, int]] = []
    problem = None
    n = len(line)
    i = 0
    find = line.find
    while True:
        if i < n and line[i] == 34:  # "
            j = i + 1
            while True:
                q = find(b'"', j)
                if q < 0:
                    spans.append((i + 1, n))
                    return spans, problem or f"unterminated quoted value in column {len(spans)}"
                if q + 1 < n and line[q + 1] == 34:
                    j = q + 2
                    continue
                break
            # An EventLogFile URL cell written with three quotes on each side holds a quoted
            # string: its span is the URL, without the doubled quotes around it.
            if q - i >= 5 and line[i + 1] == 34 == line[i + 2] == line[q - 1] == line[q - 2]:
                spans.append((i + 3, q - 2))
            else:
                spans.append((i + 1, q))
            i = q + 1
            if i >= n:
                return spans, problem
            if line[i] == 44:  # ,
                i += 1
                continue
            problem = problem or f"text after the closing quote in column {len(spans)}"
            c = find(b",", i)
            spans[-1] = (spans[-1][0], c if c >= 0 else n)
            if c < 0:
                return spans, problem
            i = c + 1
        else:
            c = find(b",", i)
            if c < 0:
                spans.append((i, n))
                return spans, problem
            spans.append((i, c))
            i = c + 1


def cell_text(raw: bytes) -> str:
    """A cell's value as text: doubled quotes undoubled, and the inner quotes of an EventLogFile
    URL written as three quotes on each side (a quoted string inside the quoted cell) removed."""
    if b'""' in raw:
        raw = raw.replace(b'""', b'"')
    text = raw.decode("utf-8", "replace").strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1].strip()
    return text


def header_problem(line: bytes) -> str | None:
    """Why ``line`` is not a CSV header (without quoting it), or ``None`` when it is one."""
    if line.startswith(_BOM):
        line = line[3:]
    line = line.rstrip(b"\r\n")
    spans, problem = split_row(line)
    if problem:
        return problem
    if len(spans) < 2:
        return "it has no comma-separated columns"
    for k, (s, e) in enumerate(spans, 1):
        name = cell_text(line[s:e])
        if not name:
            return f"column {k} has no name"
        if len(name) > MAX_NAME:
            return f"column {k} is {len(name)} characters long, not a name"
        if not _NAME.fullmatch(name):
            return f"column {k} looks like data, not a column name"
    return None


def parse_header(line: bytes) -> list[str]:
    """Column names of a CSV header row; raises :class:`FormatError` if it is not one."""
    why = header_problem(line)
    if why is not None:
        raise FormatError(f"the header line is not a CSV header: {why} (give the file's real header, or use "
                          f"--format text)")
    if line.startswith(_BOM):
        line = line[3:]
    line = line.rstrip(b"\r\n")
    return [cell_text(line[s:e]) for s, e in split_row(line)[0]]


class CsvParser(RecordParser):
    """Rows of a CSV file named by its header (``eventlogfile`` when it has EVENT_TYPE)."""

    def __init__(self, name: str, header_line: bytes):
        self.name = name
        self.columns = parse_header(header_line)
        self._header = header_line.rstrip(b"\r\n")
        # Columns that can give an attribute or the timestamp, decided once per file.
        self._wanted = [(k, norm_key(c)) for k, c in enumerate(self.columns) if AttrCollector.wants(norm_key(c))]

    def _parse(self, line: bytes) -> ParsedRecord:
        spans, problem = split_row(line)
        cols = self.columns
        nc = len(cols)
        ns = len(spans)
        rec = ParsedRecord()
        rec.fields = [(cols[k] if k < nc else f"column[{k}]", s, e) for k, (s, e) in enumerate(spans)]
        if ns != nc:
            count = f"row has {ns} column{'s' if ns != 1 else ''}, header has {nc}"
            problem = f"{problem}; {count}" if problem else count
        rec.problem = problem
        col = AttrCollector()
        for k, key in self._wanted:
            if k < ns:
                s, e = spans[k]
                col.offer(key, cell_text(line[s:e]))
        rec.attrs = col.attrs()
        rec.ts = col.timestamp()
        return rec
