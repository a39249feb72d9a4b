"""``logfmt`` and ``heroku``: ``key=value key="quoted value"`` records.

Heroku router lines are logfmt, alone or inside log-drain framing
(``<len> <158>1 <RFC 5424 time> host heroku router - at=info …``) or as ``heroku logs`` prints
them (``2024-03-11T16:00:00.123456+00:00 heroku[router]: at=info …``). App lines in the same
drain are whatever the app prints: they get their logfmt pairs when they have some, and are not
called malformed when they are plain text.
"""
from __future__ import annotations

import re

from leakwatch.sources.formats._record import (
    AttrCollector,
    ParsedRecord,
    RecordParser,
    norm_key,
    query_fields,
)
from leakwatch.sources.formats._time import parse_timestamp

_SPACES = re.compile(rb"[ \t]*")
# A key is anything up to whitespace, '=' or '"' (as go-logfmt defines it).
_KEY = re.compile(rb'[^\s="]+')
_QUOTED = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BARE = re.compile(rb"[^\s]*")
_NEXT_SPACE = re.compile(rb"[^\s]*")

# Syslog framing of a Heroku HTTPS/syslog drain: octet count (optional here), <PRI>VERSION,
# timestamp, hostname, app name, proc id, msgid, then the message.
DRAIN_FRAME = re.compile(rb"(?:\d+ )?<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (?P<app>\S+) (\S+) (\S+) ?")
# `heroku logs` output: time, source[dyno]: message.
CLI_FRAME = re.compile(rb"(\d{4}-\d\d-\d\dT\S+) (?P<app>[\w.-]+)\[([^\]]+)\]: ?")


# A key quoted in a problem message must look like a name: in free text the "key" before a
# stray '=' can be an e-mail address or a token, and problems must not carry data.
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z_.\-]{0,40}[0-9]{0,3}")


def _key_for_message(key: str) -> str:
    return repr(key) if _SAFE_KEY.fullmatch(key) else "a key"


def scan_logfmt(line: bytes, start: int = 0) -> tuple[list[tuple[str, int, int, bool]], str | None]:
    """``(key, value start, value end, quoted)`` for every ``key=value`` from ``start``, and the
    first problem. Bare keys (``key`` alone, logfmt's true) have no value and give no field.
    An unterminated quote takes the rest of the line as its value."""
    out: list[tuple[str, int, int, bool]] = []
    problem = None
    n = len(line)
    i = start
    while True:
        i = _SPACES.match(line, i).end()
        if i >= n:
            return out, problem
        m = _KEY.match(line, i)
        if m is None:  # a token starting with '=' or '"'
            ch = chr(line[i])
            if problem is None:
                problem = f"unexpected {ch!r} where a key should start, at column {i + 1}"
            if ch == '"':
                q = _QUOTED.match(line, i)
                if q is None:
                    return out, problem
                i = q.end()
            else:
                i = _NEXT_SPACE.match(line, i + 1).end()
            continue
        key = m.group().decode("utf-8", "replace")
        if key[0] in "{[(":
            # A Java map or a Mule payload printed into the line: {FirstName=Jane, LastName=Doe}.
            key = key.lstrip("{[(") or key
        i = m.end()
        if i >= n or line[i] != 61:  # '=': a bare key
            continue
        i += 1
        if i < n and line[i] == 34:  # '"'
            q = _QUOTED.match(line, i)
            if q is None:
                out.append((key, i + 1, n, True))
                return out, problem or f"unterminated quote in the value of {_key_for_message(key)} at column {i + 1}"
            out.append((key, i + 1, q.end() - 1, True))
            i = q.end()
        else:
            e = _BARE.match(line, i).end()
            out.append((key, i, e, False))
            i = e


def logfmt_value(raw: bytes, quoted: bool) -> str:
    """Text of a logfmt value (backslash escapes of a quoted value undone)."""
    text = raw.decode("utf-8", "replace")
    if quoted and "\\" in text:
        text = re.sub(r"\\(.)", r"\1", text)
    return text


def _pair_fields(line: bytes, pairs) -> list[tuple[str, int, int]]:
    """Fields of logfmt pairs; a ``path`` with a query string also gets ``query.<name>``
    fields (Heroku router paths carry the request's query)."""
    fields = []
    for k, s, e, _ in pairs:
        fields.append((k, s, e))
        if k == "path":
            q = line.find(b"?", s, e)
            if q >= 0:
                fields += query_fields(line, q + 1, e)
    return fields


def _offer_pairs(line: bytes, pairs, col: AttrCollector) -> None:
    for key, s, e, quoted in pairs:
        k = norm_key(key)
        if col.wants(k):
            col.offer(k, logfmt_value(line[s:e], quoted))


class LogfmtParser(RecordParser):
    """Plain logfmt lines: every ``key=value`` is a field named ``key``."""

    name = "logfmt"

    def _parse(self, line: bytes) -> ParsedRecord:
        pairs, problem = scan_logfmt(line)
        rec = ParsedRecord(fields=_pair_fields(line, pairs), problem=problem)
        if not pairs and problem is None and line.strip():
            rec.problem = "no key=value pairs"
        col = AttrCollector()
        _offer_pairs(line, pairs, col)
        rec.attrs = col.attrs()
        rec.ts = col.timestamp()
        return rec


class HerokuParser(RecordParser):
    """Heroku router and app lines, with or without drain framing.

    Framing fields are ``syslog.timestamp``, ``syslog.hostname``, ``syslog.appname`` (``heroku``
    or ``app``) and ``syslog.procid`` (``router``, ``web.1``); ``heroku logs`` lines give the
    same names. The message's pairs are named by their keys (``path``, ``fwd``, ``host``…).
    """

    name = "heroku"

    def _parse(self, line: bytes) -> ParsedRecord:
        rec = ParsedRecord()
        fields = rec.fields
        col = AttrCollector()
        router = True
        ts = None
        m = DRAIN_FRAME.match(line)
        if m is not None:
            fields += [("syslog.timestamp", *m.span(3)), ("syslog.hostname", *m.span(4)),
                       ("syslog.appname", *m.span(5)), ("syslog.procid", *m.span(6))]
            appname, procid, ts_raw = m.group(5), m.group(6), m.group(3)
        else:
            m = CLI_FRAME.match(line)
            if m is not None:
                fields += [("syslog.timestamp", *m.span(1)), ("syslog.appname", *m.span(2)),
                           ("syslog.procid", *m.span(3))]
                appname, procid, ts_raw = m.group(2), m.group(3), m.group(1)
        if m is not None:
            router = appname == b"heroku" and procid == b"router"
            ts = parse_timestamp(ts_raw)
            if appname == b"app":
                col.offer("dyno", procid.decode("ascii", "replace"))
        start = m.end() if m is not None else 0
        pairs, problem = scan_logfmt(line, start)
        fields += _pair_fields(line, pairs)
        if router:
            rec.problem = problem
            if not pairs and problem is None:
                rec.problem = "no key=value pairs in a router line"
        _offer_pairs(line, pairs, col)
        rec.attrs = col.attrs()
        rec.ts = ts or col.timestamp()
        return rec
