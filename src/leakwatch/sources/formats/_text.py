"""Line formats read with a regex: ``mule``, ``combined``, user-configured ``regex``, ``text``."""
from __future__ import annotations

import re

from leakwatch.sources.formats._json import leaves_to_record, walk_json
from leakwatch.sources.formats._record import (
    AttrCollector,
    FormatError,
    ParsedRecord,
    RecordParser,
    norm_key,
    query_fields,
)
from leakwatch.sources.formats._time import parse_timestamp


def json_in_text(line: bytes, s: int, e: int, prefix: str, rec: ParsedRecord, col: AttrCollector,
                 tries: int = 4) -> tuple[int, int] | None:
    """Fields of the first JSON object/array inside ``line[s:e]`` (a log message carrying a
    payload), named ``prefix.<path>``; returns the payload's span, or None when there is none.

    Up to ``tries`` opening brackets are tried, so ``[order 7] {"a": 1}`` finds the object."""
    pos = s
    buf = line if e == len(line) else line[:e]
    for _ in range(tries):
        a = line.find(b"{", pos, e)
        b = line.find(b"[", pos, e)
        start = a if b < 0 or 0 <= a < b else b
        if start < 0:
            return None
        leaves, end, err = walk_json(buf, start, prefix)
        if err is None and leaves:
            leaves_to_record(leaves, rec, col)
            return start, end
        pos = start + 1
    return None


# key=value or key: value pairs in free text (Mule messages, Java Map.toString()). A bare value
# does not start with a bracket: "payload: {…}" is the JSON walker's.
_KV = re.compile(rb"""(?:(?<=[\s,;{(\[])|^)([A-Za-z_][\w.\-]{0,63})(?:=|:[ ]+)"""
                 rb"""("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&{}\[\]()"'][^\s,;&}\])"']*)""")


def kv_in_text(line: bytes, s: int, e: int, prefix: str, rec: ParsedRecord, col: AttrCollector,
               skip: tuple[int, int] | None = None) -> None:
    """``prefix.<key>`` fields for ``key=value`` / ``key: value`` pairs in ``line[s:e]``,
    outside ``skip`` (a JSON payload already walked)."""
    for m in _KV.finditer(line, s, e):
        if skip is not None and skip[0] <= m.start() < skip[1]:
            continue
        vs, ve = m.span(2)
        if line[vs] in b"\"'":
            vs, ve = vs + 1, ve - 1
        key = m.group(1).decode("ascii")
        rec.fields.append((f"{prefix}.{key}", vs, ve))
        k = norm_key(key)
        if col.wants(k):
            col.offer(k, line[vs:ve].decode("utf-8", "replace"), 1)


# --- mule ----------------------------------------------------------------------------------------

# %-5p %d [%t] [processor: %X{processorPath}; event: %X{correlationId}] %c: %m%n
MULE_HEAD = re.compile(rb"(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|SEVERE) +"
                        rb"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?) +\[")
_LEVELS = frozenset((b"TRACE", b"DEBUG", b"INFO", b"WARN", b"WARNING", b"ERROR", b"FATAL", b"SEVERE"))
_MULE_PROC = re.compile(rb" *\[processor: ([^;\]]*); event: ([^\]]*)\]")
_MULE_LOGGER = re.compile(rb" *([^\s:]+(?::[^\s:]+)*?):(?: |$)")
# The app in a Mule 4 thread name: [MuleRuntime].uber.04: [orders-api].flow.CPU_LITE @1a2b,
# or [orders-api].HTTP_Listener_config.worker.01.
_MULE_APP = re.compile(rb"\[([^\[\]\s]+)\]\.")
_URL = re.compile(rb"""[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>`]+""")
# Error lines of the HTTP requester: "HTTP POST on resource 'https://…' failed".
_HTTP_ON_RESOURCE = re.compile(rb"HTTP [A-Z]+ on resource '([^'\s]+)'")


def _balanced(line: bytes, i: int) -> int:
    """Offset of the ']' closing the '[' at ``i``, or -1 (thread names nest brackets)."""
    depth = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c == 91:
            depth += 1
        elif c == 93:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


class MuleParser(RecordParser):
    """Mule 4 default layout. Fields: ``level``, ``timestamp``, ``thread``, ``processor``,
    ``event`` (correlation id), ``logger``, ``message`` and, inside the message, a JSON payload
    as ``message.<path>`` and ``key=value`` / ``key: value`` pairs as ``message.<key>``.

    Lines that do not start with a level are continuations of the record above (stack traces,
    pretty-printed payloads, error summary blocks): no fields, no problem. ``%d`` has no zone;
    it is taken as UTC (CloudHub's clock).
    """

    name = "mule"

    def _parse(self, line: bytes) -> ParsedRecord:
        rec = ParsedRecord()
        m = MULE_HEAD.match(line)
        if m is None:
            if line[:8].split(b" ", 1)[0] in _LEVELS:
                rec.problem = "Mule line without a 'yyyy-MM-dd HH:mm:ss,SSS [thread]' after the level"
            return rec
        fields = rec.fields
        fields += [("level", *m.span(1)), ("timestamp", *m.span(2))]
        rec.ts = parse_timestamp(m.group(2))
        col = AttrCollector()
        t0 = m.end() - 1
        t1 = _balanced(line, t0)
        if t1 < 0:
            rec.problem = f"unclosed '[' of the thread name at column {t0 + 1}"
            fields.append(("thread", t0 + 1, len(line)))
            return rec
        fields.append(("thread", t0 + 1, t1))
        for app in _MULE_APP.finditer(line, t0 + 1, t1):
            if app.group(1) != b"MuleRuntime":
                col.offer("app", app.group(1).decode("utf-8", "replace"))
                break
        i = t1 + 1
        p = _MULE_PROC.match(line, i)
        if p is not None:
            fields += [("processor", *p.span(1)), ("event", *p.span(2))]
            i = p.end()
        lg = _MULE_LOGGER.match(line, i)
        if lg is None:
            rec.problem = f"no 'logger: ' before the message at column {i + 1}"
            return rec
        fields.append(("logger", *lg.span(1)))
        ms, me = lg.end(), len(line)
        fields.append(("message", ms, me))
        payload = json_in_text(line, ms, me, "message", rec, col)
        kv_in_text(line, ms, me, "message", rec, col, payload)
        if "url" not in col.best:
            u = _HTTP_ON_RESOURCE.search(line, ms, me)
            if u is None and b"http" in lg.group(1).lower():
                u = _URL.search(line, ms, me)
            if u is not None:
                col.offer("url", u.group(u.lastindex or 0).decode("utf-8", "replace"))
        rec.attrs = col.attrs()
        return rec


# --- combined ------------------------------------------------------------------------------------

# A quoted string with backslash escapes, written as "unrolled loop" (runs of plain characters
# between escapes): the same strings as "((?:[^"\\]|\\.)*)", which makes Python's engine take
# one alternation per character (15 µs for a line with a browser user agent; this form 1 µs).
_Q = rb'"([^"\\]*(?:\\.[^"\\]*)*)"'
_Q_REFERENCE = rb'"((?:[^"\\]|\\.)*)"'


def _combined(q: bytes) -> re.Pattern:
    return re.compile(rb"(\S+) (\S+) (\S+) \[([^\]]+)\] " + q + rb" (\d{3}|-) (\d+|-)(?: " + q + rb" " + q + rb")?")


COMBINED_LINE = _combined(_Q)
# Trailing fields some servers and CDNs add: "x-forwarded-for", key=value, HIT, 0.123.
_EXTRA = re.compile(rb'\s*(?:([A-Za-z_][\w.\-]*)=)?(?:' + _Q + rb'|(\S+))')
_CACHE_VALUES = frozenset((b"HIT", b"MISS", b"EXPIRED", b"STALE", b"BYPASS", b"REVALIDATED", b"UPDATING",
                           b"DYNAMIC", b"TCP_HIT", b"TCP_MISS", b"RefreshHit", b"Hit", b"Miss", b"Error"))


class CombinedParser(RecordParser):
    """nginx/Apache combined (and common) access log lines.

    Fields: ``remote_addr``, ``ident``, ``user``, ``time``, ``request`` and inside it ``method``,
    ``path``, ``query.<name>``, ``protocol``; then ``status``, ``bytes``, ``referer``,
    ``user_agent``. Trailing fields (CDN variants) are ``<key>`` for ``key=value`` and
    ``extra[i]`` otherwise; cache-status words and ``pop``/``edge`` keys become attributes.
    """

    name = "combined"

    def _parse(self, line: bytes) -> ParsedRecord:
        rec = ParsedRecord()
        m = COMBINED_LINE.match(line)
        if m is None:
            rec.problem = "not a combined/common access log line"
            return rec
        f = rec.fields
        f += [("remote_addr", *m.span(1)), ("ident", *m.span(2)), ("user", *m.span(3)), ("time", *m.span(4)),
              ("request", *m.span(5))]
        col = AttrCollector()
        rs, re_ = m.span(5)
        parts = line[rs:re_].split(b" ")
        if len(parts) >= 2:
            col.offer("method", parts[0].decode("ascii", "replace"))
            f.append(("method", rs, rs + len(parts[0])))
            ps = rs + len(parts[0]) + 1  # the request target: path?query
            pe = ps + len(parts[1])
            q = line.find(b"?", ps, pe)
            f.append(("path", ps, q if q >= 0 else pe))
            col.offer("path", line[ps:q if q >= 0 else pe].decode("utf-8", "replace"))
            if q >= 0:
                f += query_fields(line, q + 1, pe)
            if len(parts) >= 3:
                f.append(("protocol", pe + 1, re_))
        f += [("status", *m.span(6)), ("bytes", *m.span(7))]
        col.offer("status", m.group(6).decode("ascii"))
        if m.group(3) != b"-":
            col.offer("user", m.group(3).decode("utf-8", "replace"))
        if m.start(8) >= 0:
            f += [("referer", *m.span(8)), ("user_agent", *m.span(9))]
            q = line.find(b"?", *m.span(8))
            if q >= 0:
                f += query_fields(line, q + 1, m.end(8), prefix="referer.query.")
        rec.ts = parse_timestamp(m.group(4))
        pos, n, k = m.end(), len(line.rstrip()), 0
        while pos < n:
            x = _EXTRA.match(line, pos)
            if x is None or x.end() == pos:
                rec.problem = f"unreadable trailing field at column {pos + 1}"
                break
            g = 2 if x.start(2) >= 0 else 3
            value = x.group(g)
            if x.group(1):
                key = x.group(1).decode("ascii")
                f.append((key, *x.span(g)))
                nk = norm_key(key)
                if col.wants(nk):
                    col.offer(nk, value.decode("utf-8", "replace"))
            else:
                f.append((f"extra[{k}]", *x.span(g)))
                k += 1
                if value in _CACHE_VALUES:
                    col.offer("cache", value.decode("ascii"))
            pos = x.end()
        rec.attrs = col.attrs()
        return rec


# --- regex, text ---------------------------------------------------------------------------------

# Python's re spells named groups (?P<name>…); (?<name>…) (PCRE, RE2, .NET) is accepted too.
_PCRE_GROUP = re.compile(r"(?<!\\)\(\?<(?![=!])")
_TS_GROUPS = ("timestamp", "ts", "time")


class RegexParser(RecordParser):
    """User-configured lines (Apigee MessageLogging templates): each named group is a field; a
    group named ``timestamp``, ``ts`` or ``time`` is the timestamp; a group whose value is a
    JSON object or array also gets ``<group>.<path>`` fields. Lines the regex does not match
    (``search``, so it need not cover the whole line) are a problem. The regex runs on the raw
    bytes (offsets must be byte offsets), so ``\\w`` and ``\\d`` are ASCII-only."""

    name = "regex"

    def __init__(self, pattern: str, origin: str = "pattern"):
        if not isinstance(pattern, str) or not pattern:
            raise FormatError(f"format 'regex' needs a regex with named groups in {origin}")
        try:
            self.regex = re.compile(_PCRE_GROUP.sub("(?P<", pattern).encode("utf-8"))
        except re.error as e:
            raise FormatError(f"invalid regex in {origin}: {e.msg} at position {e.pos}") from e
        if not self.regex.groupindex:
            raise FormatError(f"the regex in {origin} has no named groups, so it names no fields: "
                              f"write (?P<name>...) around each field")
        self.groups = sorted(self.regex.groupindex.items(), key=lambda kv: kv[1])
        self._keys = {name: norm_key(name) for name, _ in self.groups}

    def _parse(self, line: bytes) -> ParsedRecord:
        rec = ParsedRecord()
        m = self.regex.search(line)
        if m is None:
            rec.problem = "line does not match the configured regex"
            return rec
        col = AttrCollector()
        ts = None
        for name, idx in self.groups:
            s, e = m.span(idx)
            if s < 0:
                continue
            rec.fields.append((name, s, e))
            if name in _TS_GROUPS and ts is None:
                ts = parse_timestamp(line[s:e])
            key = self._keys[name]
            if col.wants(key):
                col.offer(key, line[s:e].decode("utf-8", "replace"))
            if e - s >= 2 and line[s] in b"{[":
                json_in_text(line, s, e, name, rec, col, tries=1)
        rec.fields.sort(key=lambda f: f[1])
        rec.attrs = col.attrs()
        rec.ts = ts or col.timestamp()
        return rec


_LEADING_TS = re.compile(rb"\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)[\] ]")


class TextParser(RecordParser):
    """Fallback: no fields (callers use their ``field_before`` heuristic); the timestamp when
    the line starts with an ISO 8601 one (``2024-03-11 17:00:00,123 INFO …``, ``[2024-…Z]``)."""

    name = "text"

    def _parse(self, line: bytes) -> ParsedRecord:
        m = _LEADING_TS.match(line)
        if m is None:
            return ParsedRecord()
        return ParsedRecord(ts=parse_timestamp(m.group(1).decode("ascii")))
