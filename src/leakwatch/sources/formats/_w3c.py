"""W3C extended log files: Amazon CloudFront standard logs, IIS, and other servers that write a
``#Fields:`` directive and then one record per line.

A file starts with directives (``#Version: 1.0``, ``#Fields: date time x-edge-location …``);
each data line holds the named fields in that order, separated by tabs (CloudFront) or single
spaces (IIS), ``-`` for an empty value. A ``#Fields:`` directive names the columns of the lines
after it: the file's first one builds the parser, and a later one (IIS writes the directives
again after a restart, perhaps with other fields) switches the scan to a parser of its own (see
``leakwatch.detect.enrich``, which marks these lines).

Fields keep the W3C names as written (``cs-uri-stem``, ``cs(User-Agent)``, ``x-edge-location``)
and the query string's parameters become ``query.<name>``. Attributes: ``x-edge-location``
(CloudFront's edge, ``FRA56-P1``) is the edge, ``x-edge-result-type`` the cache status,
``cs-uri-stem`` the path, ``x-host-header`` (the name the client asked for) or ``cs(Host)``
the host, ``sc-status``, ``cs-method``, ``cs-username``; ``date`` + ``time`` are UTC.
"""
from __future__ import annotations

from leakwatch.sources.formats._record import (
    AttrCollector,
    FormatError,
    ParsedRecord,
    RecordParser,
    norm_key,
    query_fields,
)
from leakwatch.sources.formats._time import parse_timestamp

FIELDS_DIRECTIVE = b"#Fields:"


def fields_directive(head: bytes) -> bytes | None:
    """The first ``#Fields:`` line of ``head`` (a file's first bytes), or None."""
    for raw in head.split(b"\n")[:64]:
        line = raw.rstrip(b"\r")
        if line.startswith(FIELDS_DIRECTIVE):
            return line
        if line and not line.startswith(b"#"):
            return None  # data before any #Fields: not a W3C file as far as the head shows
    return None


class W3cParser(RecordParser):
    """Lines of a W3C extended log file; built from its ``#Fields:`` directive."""

    name = "w3c"

    def __init__(self, fields_line: bytes):
        if not fields_line.startswith(FIELDS_DIRECTIVE):
            raise FormatError("format 'w3c' needs the file's '#Fields:' directive (CloudFront and IIS "
                              "logs start with one); none found in the file's first lines")
        names = fields_line[len(FIELDS_DIRECTIVE):].decode("utf-8", "replace").split()
        if not names:
            raise FormatError("the '#Fields:' directive names no fields")
        self.columns = names
        keys = [norm_key(n) for n in names]
        self._roles = [(i, k) for i, k in enumerate(keys) if AttrCollector.wants(k)]
        self._date = names.index("date") if "date" in names else None
        self._time = names.index("time") if "time" in names else None
        self._query = names.index("cs-uri-query") if "cs-uri-query" in names else None

    def _parse(self, line: bytes) -> ParsedRecord:
        rec = ParsedRecord()
        if line[:1] == b"#" or not line.strip():
            return rec  # a directive (#Version, #Date, a later #Fields) or a blank line
        sep = b"\t" if b"\t" in line else b" "
        spans = []
        pos = 0
        for cell in line.split(sep):
            spans.append((pos, pos + len(cell)))
            pos += len(cell) + 1
        names = self.columns
        if len(spans) != len(names):
            rec.problem = f"line has {len(spans)} fields, #Fields names {len(names)}"
        for k, (s, e) in enumerate(spans):
            rec.fields.append((names[k] if k < len(names) else f"column[{k}]", s, e))
        n = min(len(spans), len(names))
        if self._query is not None and self._query < n:
            s, e = spans[self._query]
            if line[s:e] != b"-":
                rec.fields += query_fields(line, s, e)
        col = AttrCollector()
        for k, key in self._roles:
            if k >= n:
                break
            s, e = spans[k]
            col.offer(key, line[s:e].decode("utf-8", "replace"))  # "-" counts as empty there
        rec.attrs = col.attrs()
        if self._date is not None and self._time is not None and max(self._date, self._time) < n:
            (ds, de), (ts_, te) = spans[self._date], spans[self._time]
            rec.ts = parse_timestamp(line[ds:de] + b"T" + line[ts_:te] + b"Z")
        if rec.ts is None:
            rec.ts = col.timestamp()
        return rec
