"""``eventlogfile`` and ``csv``: header-driven CSV rows with the span of every cell.

Salesforce EventLogFile columns differ by release and EVENT_TYPE, so columns are only ever named
from the file's own header. Cells are split by hand rather than with the ``csv`` module, which
returns values but not where they are; a doubled quote stays doubled in the span (offsets index
the raw line) and is undoubled only for the few cells that become attributes.
"""
from __future__ import annotations

import re
from itertools import accumulate, chain, repeat

from leakwatch.sources.formats._record import (
    _ABSOLUTE_URL,
    _EMPTY_VALUES,
    KEY_ROLES,
    FormatError,
    ParsedRecord,
    RecordParser,
    norm_key,
)
from leakwatch.sources.formats._time import parse_timestamp

_BOM = b"\xef\xbb\xbf"
# A column name: starts with a letter or "_", then letters, digits and the punctuation report
# exports use ("Amount (USD)", "Probability (%)", "Billing Street", "Owner: Full Name").
_NAME = re.compile(r"[^\W\d][\w .\-()/#&%'?:]*")
MAX_NAME = 128


# Separators a header may use: commas (Salesforce, most tools), semicolons (spreadsheets saved
# where the comma is the decimal mark: German, French, Spanish… Excel), tabs (TSV).
SEPARATORS = (b",", b";", b"\t")


def separator_of(header: bytes) -> bytes:
    """The separator of a CSV header line: the most frequent of ``SEPARATORS`` outside quotes
    (a comma when there is none)."""
    outside = b"".join(header.split(b'"')[::2])
    counts = [(outside.count(sep), -k, sep) for k, sep in enumerate(SEPARATORS)]
    n, _, sep = max(counts)
    return sep if n else b","


def split_row(line: bytes, sep: bytes = b",") -> tuple[list[tuple[int, int]], str | None]:
    """Cell value spans of one CSV row (quotes excluded) and a problem, if any.

    Unquoted cells end at the next separator (``sep``); quoted cells at the first quote not
    doubled. An unterminated quote takes the rest of the line (a value with a newline in it
    arrives here split across records). Text after a closing quote is kept in the cell and
    reported.
    """
    sep_byte = sep[0]
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
            if line[i] == sep_byte:
                i += 1
                continue
            problem = problem or f"text after the closing quote in column {len(spans)}"
            c = find(sep, i)
            spans[-1] = (spans[-1][0], c if c >= 0 else n)
            if c < 0:
                return spans, problem
            i = c + 1
        else:
            c = find(sep, i)
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
    spans, problem = split_row(line, separator_of(line))
    if problem:
        return problem
    if len(spans) < 2:
        return "it has no comma-, semicolon- or tab-separated columns"
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
    return [cell_text(line[s:e]) for s, e in split_row(line, separator_of(line))[0]]


class CsvParser(RecordParser):
    """Rows of a CSV file named by its header (``eventlogfile`` when it has EVENT_TYPE).

    What each column can give (an attribute, the outbound URL, the timestamp) is worked out once
    from the header, and cell spans come from ``bytes.split`` where the row's shape allows it:
    a 22-column EventLogFile row parses in ~9 µs instead of ~19 µs with :func:`split_row` and an
    :class:`AttrCollector` per row. Rows the fast paths cannot read exactly (doubled quotes
    other than an EventLogFile URL cell in three quotes, mixed quoting, stray quotes) take the
    general path; both give identical records.
    """

    def __init__(self, name: str, header_line: bytes):
        self.name = name
        self.columns = parse_header(header_line)
        self._header = header_line.rstrip(b"\r\n")
        self.sep = sep = separator_of(self._header.removeprefix(_BOM))
        self._quoted_sep = b'"' + sep + b'"'
        # Field names by index, with room for rows that have a few extra columns; longer rows
        # extend their own copy.
        self._names = self.columns + [f"column[{k}]" for k in range(len(self.columns), len(self.columns) + 8)]
        # (column, URL rank or None, attribute or None, attribute rank), in column order: the order
        # AttrCollector was offered cells in, which decides ties and the order of attrs.
        self._plan: list[tuple[int, int | None, str | None, int]] = []
        ts_cols: list[tuple[int, int]] = []
        for k, c in enumerate(self.columns):
            role = KEY_ROLES.get(norm_key(c))
            if role is None:
                continue
            ts_rank, url_rank, attr, rank = role
            if ts_rank is not None:
                ts_cols.append((ts_rank, k))
            if url_rank is not None or attr is not None:
                self._plan.append((k, url_rank, attr, rank))
        # Timestamp columns by preference (rank, then column order, as AttrCollector sorts them).
        self._ts_cols = [k for _, k in sorted(ts_cols)]
        # A header that quotes every name is a writer that quotes every cell (Salesforce report
        # exports, EventLogFile): a row that does not start with a quote is then the rest of a
        # quoted value that spans lines (a Description with a line break in it).
        self._all_quoted = self._header.removeprefix(_BOM)[:1] == b'"' and \
            self._header.count(b'"') == 2 * len(self.columns)

    def _spans(self, line: bytes) -> tuple[list[tuple[str, int, int]], str | None, list[bytes] | None]:
        """``fields`` of a row, a problem of its quoting (not of its column count) and, when a
        fast path read the row, each cell's bytes (no quotes in them, so no unquoting to do)."""
        names = self._names
        sep = self.sep
        if line[:1] == b'"' and line[-1:] == b'"' and len(line) >= 2:  # "…": all quoted, as EventLogFile writes
            cells = line[1:-1].split(self._quoted_sep)
            nc = len(cells)
            if nc > len(names):
                names = names + [f"column[{k}]" for k in range(len(names), nc)]
            # Spans alternate with separators: s0 = 1, e0 = s0 + len(cell 0), s1 = e0 + 3, ...
            # accumulate/zip keep the per-cell work in C (~3.5 µs for 22 cells, split_row ~6).
            it = accumulate(chain.from_iterable(zip(map(len, cells), repeat(3))), initial=1)
            fields = list(zip(names, it, it))
            # Each separator holds two quotes: any other quote is inside a cell.
            if line.count(b'"') == 2 * nc:
                return fields, None, cells
            for k, c in enumerate(cells):
                if 34 in c:
                    # A cell written """URL""" (a quoted string in the cell): split_row's span is
                    # the URL, and its text has no quotes left.
                    if len(c) >= 4 and c[:2] == b'""' and c[-2:] == b'""' and 34 not in c[2:-2]:
                        f = fields[k]
                        fields[k] = (f[0], f[1] + 2, f[2] - 2)
                        cells[k] = c[2:-2]
                    else:
                        break
            else:
                return fields, None, cells
        elif 34 not in line:  # no quotes at all: cells end at separators
            cells = line.split(sep)
            nc = len(cells)
            if nc > len(names):
                names = names + [f"column[{k}]" for k in range(len(names), nc)]
            it = accumulate(chain.from_iterable(zip(map(len, cells), repeat(1))), initial=0)
            return list(zip(names, it, it)), None, cells
        spans, problem = split_row(line, sep)
        if len(spans) > len(names):
            names = names + [f"column[{k}]" for k in range(len(names), len(spans))]
        return [(names[k], s, e) for k, (s, e) in enumerate(spans)], problem, None

    def _parse(self, line: bytes) -> ParsedRecord:
        if self._all_quoted and line[:1] != b'"' and line.strip():
            return self._continuation(line)
        fields, problem, cells = self._spans(line)
        nc = len(self.columns)
        ns = len(fields)
        if ns != nc:
            count = f"row has {ns} column{'s' if ns != 1 else ''}, header has {nc}"
            problem = f"{problem}; {count}" if problem else count
        if cells is None:
            cells = [line[s:e] for _, s, e in fields]
            text_of = cell_text
        else:
            text_of = _plain_text
        # What AttrCollector.offer does with each wanted cell, without the collector.
        best: dict[str, tuple[int, str]] = {}
        for k, url_rank, attr, rank in self._plan:
            if k >= ns:
                break
            text = text_of(cells[k])
            if text in _EMPTY_VALUES:
                continue
            if url_rank is not None and _ABSOLUTE_URL.match(text):
                attr, rank = "url", url_rank
            elif attr is None:
                continue
            old = best.get(attr)
            if old is None or rank < old[0]:
                best[attr] = (rank, text[:2048])
        ts = None
        for k in self._ts_cols:
            if k < ns:
                text = text_of(cells[k])
                if text not in _EMPTY_VALUES:
                    ts = parse_timestamp(text)
                    if ts is not None:
                        break
        return ParsedRecord(fields, ts, {a: v[1] for a, v in best.items()}, problem, {})


    def _continuation(self, line: bytes) -> ParsedRecord:
        """A physical line inside a quoted value that began on an earlier line. Counted from the
        left its cells would take the first columns' names (an e-mail after the line break
        filed under First Name, mapped to Contact.FirstName). A line that closes the value ends
        the row, so its cells are the header's last columns, counted from the right; a line
        with no quote is all inside the value, whose column is not known here: no names."""
        nc = len(self.columns)
        if 34 not in line:
            return ParsedRecord([], None, {}, None, {})
        spans, _ = split_row(line, self.sep)
        shift = nc - len(spans)
        if shift < 1:
            return ParsedRecord([], None, {}, None, {})
        fields = [(self.columns[k + shift], s, e) for k, (s, e) in enumerate(spans)]
        # Valid CSV, not a problem to report; its time and URL cells are read with the row's
        # first line's (the owner of those columns), not here.
        return ParsedRecord(fields, None, {}, None, {})


def _plain_text(raw: bytes) -> str:
    """:func:`cell_text` of a cell with no quotes in it."""
    return raw.decode("utf-8", "replace").strip()
