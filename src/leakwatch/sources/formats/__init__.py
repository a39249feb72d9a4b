"""Log format readers: which field, column or JSON path each byte of a record belongs to.

The native scanner finds candidates in raw bytes; for the few records (2-4% of lines) that hold
one, the pipeline asks the file's :class:`RecordParser` for the record's fields, timestamp,
normalised attributes and whether it is malformed::

    name = sniff(head, path)                        # or the user's --format
    parser = make_parser(name, header_line=first_line)
    rec = parser.parse(line)                        # never raises
    field_at(rec, match_start)                      # "Phone", "order_id", "request.messages[0].content"
    role_at(rec, match_start)                       # "system" for text in a system prompt

Formats: ``eventlogfile`` / ``csv`` (header-driven CSV), ``apigw`` / ``jsonl`` (JSON lines, LLM
request bodies), ``heroku`` / ``logfmt``, ``mule`` (Mule 4 default layout), ``combined``
(nginx/Apache), ``w3c`` (W3C extended: CloudFront standard logs, IIS), ``regex`` (user regex
with named groups) and ``text`` (no fields).
"""
from __future__ import annotations

import json
import os
import re

from leakwatch.sources.formats._csv import (
    CsvParser,
    header_problem,
    parse_header,
    separator_of,
    split_row,
)
from leakwatch.sources.formats._json import JsonParser
from leakwatch.sources.formats._logfmt import (
    CLI_FRAME,
    DRAIN_FRAME,
    HerokuParser,
    LogfmtParser,
    scan_logfmt,
)
from leakwatch.sources.formats._record import (
    ATTRIBUTES,
    FormatError,
    ParsedRecord,
    RecordParser,
    field_at,
    role_at,
)
from leakwatch.sources.formats._text import (
    COMBINED_LINE,
    MULE_HEAD,
    CombinedParser,
    MuleParser,
    RegexParser,
    TextParser,
)
from leakwatch.sources.formats._time import parse_timestamp
from leakwatch.sources.formats._w3c import FIELDS_DIRECTIVE, W3cParser, fields_directive

__all__ = [
    "ATTRIBUTES", "FORMAT_NAMES", "FormatError", "ParsedRecord", "RecordParser", "field_at",
    "fields_directive", "make_parser", "parse_header", "parse_timestamp", "role_at", "sniff",
]

FORMAT_NAMES: tuple[str, ...] = (
    "eventlogfile", "csv", "apigw", "jsonl", "heroku", "logfmt", "mule", "combined", "w3c", "regex", "text",
)
# Formats whose reader needs the file's header line (make_parser's ``header_line``).
HEADER_FORMATS = ("eventlogfile", "csv", "w3c")


def make_parser(name: str, *, header_line: bytes | None = None, pattern: str | None = None,
                pattern_origin: str = "pattern") -> RecordParser:
    """A parser for format ``name``.

    ``eventlogfile`` and ``csv`` need the file's ``header_line`` (its first line), ``w3c`` its
    ``#Fields:`` directive (:func:`fields_directive` finds it in the head); ``regex``
    needs ``pattern``, a regex with named groups (``pattern_origin`` names where it was
    configured, for error messages). Raises :class:`FormatError` for an unknown name, a missing
    or bogus header, or an invalid regex.
    """
    if name in ("eventlogfile", "csv"):
        if header_line is None:
            raise FormatError(f"format {name!r} needs the file's header line (its first line)")
        return CsvParser(name, header_line)
    if name in ("apigw", "jsonl"):
        return JsonParser(name)
    if name == "heroku":
        return HerokuParser()
    if name == "logfmt":
        return LogfmtParser()
    if name == "mule":
        return MuleParser()
    if name == "combined":
        return CombinedParser()
    if name == "w3c":
        if header_line is None:
            raise FormatError("format 'w3c' needs the file's '#Fields:' directive")
        return W3cParser(header_line)
    if name == "regex":
        return RegexParser(pattern, pattern_origin)  # type: ignore[arg-type]
    if name == "text":
        return TextParser()
    raise FormatError(f"unknown log format {name!r}; known formats: {', '.join(FORMAT_NAMES)}")


# --- sniffing ------------------------------------------------------------------------------------

# At most this many lines of the head vote.
SNIFF_LINES = 40
# A format wins when at least this share of the non-empty lines looks like it. Mule records are
# often followed by multi-line stack traces and payloads, so one Mule header line in five is
# enough there.
_MAJORITY = 0.5
_MULE_SHARE = 0.2
_MULE_FILE = re.compile(r"^(?:mule-app-.+|mule_ee|mule)\.log(?:\.\d+)?(?:\.gz)?$", re.IGNORECASE)
_APIGW_KEYS = ("httpMethod", "routeKey", "resourcePath", "requestTime", "requestTimeEpoch")
_ROUTER_KEYS = {"at", "method", "path", "dyno", "fwd", "connect", "service", "status"}


def _classify(line: bytes) -> str:
    """The format one line looks like, "text", or "" when it cannot be told."""
    c = line[:1]
    if c in (b"{", b"["):
        try:
            obj = json.loads(line)
        except RecursionError:
            return ""  # nested past the interpreter's limit: JSON or not, it does not vote
        except ValueError:
            return "text"
        if isinstance(obj, dict) and "requestId" in obj and any(k in obj for k in _APIGW_KEYS):
            return "apigw"
        return "jsonl"
    m = DRAIN_FRAME.match(line) or CLI_FRAME.match(line)
    if m is not None and m.group(m.re.groupindex["app"]) in (b"heroku", b"app"):
        return "heroku"  # any RFC 5424 line has this framing; Heroku's name their source
    if MULE_HEAD.match(line):
        return "mule"
    if COMBINED_LINE.match(line):
        return "combined"
    if b"=" in line:
        pairs, problem = scan_logfmt(line)
        if problem is None and len(pairs) >= 2 and 2 * len(pairs) >= len(line.split()):
            keys = {k for k, *_ in pairs}
            return "heroku" if len(keys & _ROUTER_KEYS) >= 4 else "logfmt"
    return "text"


def _looks_like_csv_header(lines: list[bytes]) -> bool:
    first = lines[0]
    if header_problem(first) is not None:
        return False
    sep = separator_of(first.removeprefix(b"\xef\xbb\xbf"))
    names = [first[s:e] for s, e in split_row(first, sep)[0]]
    n = len(names)
    if n < 3 and b" " in first:
        return False  # "Hello, world" is prose, not a two-column header
    following = [ln.lstrip() for ln in lines[1:6] if ln.strip()]
    if following and sum(ln[:1] == b"{" for ln in following) * 2 > len(following):
        return False  # JSON objects after a banner with commas ("Service x, version 4.2"): JSON lines
    rows = [split_row(ln, sep)[0] for ln in lines[1:6]]
    if not rows:
        return True  # a header and no rows yet
    # Some following line must be a row of this header (prose with commas has no such rows;
    # a quoted cell with a newline in it can break one or two rows, not all five).
    if not any(len(r) == n for r in rows):
        return False
    # A column name never repeats as a value in its own column, but the first row of a
    # headerless file does: every EventLogFile row starts with the same EVENT_TYPE value.
    # A header line further down (a second export appended to the first, maybe with its own
    # byte order mark) is no such row: the same header again, or an EventLogFile one (no
    # event's type is "EVENT_TYPE").
    return not any(row_line[s:e] == names[k] for row_line, r in zip(lines[1:6], rows)
                   if row_line != first
                   and not row_line.removeprefix(b"\xef\xbb\xbf").lstrip(b'"').startswith(b"EVENT_TYPE")
                   for k, (s, e) in enumerate(r[:n]) if e > s)


def sniff(head: bytes, path: str = "") -> str:
    """The format of a file from its first few KB (``head``) and its name; never raises.

    A first line that is a CSV header names the file ``eventlogfile`` (it has an EVENT_TYPE
    column) or ``csv``. A CSV file whose first line is a data row (an EventLogFile blob saved
    without its header) is ``text``: its columns cannot be named, and naming them after the
    values of the first row would mislead every finding, so such files get the ``field_before``
    heuristic instead. Other formats win by majority of the first lines (see ``_MAJORITY``);
    ``mule-app-*.log`` / ``mule_ee.log`` are ``mule`` unless their content says otherwise.
    """
    try:
        return _sniff(head, path)
    except Exception:  # noqa: BLE001 - sniffing is a guess; a bad guess must not stop a scan
        return "text"


def _sniff(head: bytes, path: str) -> str:
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    raw_lines = head.split(b"\n")
    truncated = raw_lines[-1]  # the last piece has no newline: maybe cut by the head's size
    lines = [ln.rstrip(b"\r") for ln in raw_lines[:-1]]
    if truncated:
        lines.append(truncated.rstrip(b"\r"))
    lines = [ln for ln in lines if ln.strip()][:SNIFF_LINES]
    # W3C extended logs (CloudFront, IIS) say so in their directives before any data line.
    for ln in lines:
        if not ln.startswith(b"#"):
            break
        if ln.startswith(FIELDS_DIRECTIVE):
            return "w3c"
    base = os.path.basename(path)
    mule_name = bool(_MULE_FILE.match(base))
    if not lines:
        return "mule" if mule_name else "text"
    if _looks_like_csv_header(lines):
        names = {n.upper() for n in parse_header(lines[0])}
        return "eventlogfile" if "EVENT_TYPE" in names else "csv"
    votes: dict[str, int] = {}
    for k, ln in enumerate(lines):
        kind = _classify(ln)
        if not kind:
            continue
        if kind == "text" and k == len(lines) - 1 and truncated:
            # A line cut short by the head's size votes only when it still parses, or when it
            # opens a JSON object: an LLM request logged as one line is often longer than the
            # head, and the file is then nothing but such lines.
            if ln.lstrip()[:2] != b'{"':
                continue
            kind = "jsonl"
        votes[kind] = votes.get(kind, 0) + 1
    total = sum(votes.values()) or 1
    if votes.get("heroku") and votes.get("logfmt"):  # app lines in a Heroku drain can be logfmt
        votes["heroku"] += votes.pop("logfmt")
    if votes.get("apigw") and votes.get("jsonl"):  # access logs can carry a few odd records
        if votes["apigw"] >= votes["jsonl"]:
            votes["apigw"] += votes.pop("jsonl")
        else:
            votes["jsonl"] += votes.pop("apigw")
    votes.pop("text", None)
    if votes:
        best = max(votes, key=votes.get)
        share = votes[best] / total
        # Mule's header line ("[processor: …; event: …]") is its own proof: a stack trace or a
        # pretty-printed payload under a few of them must not outvote them (the whole log was read
        # as text then: no times, no fields).
        if share >= _MAJORITY or (best == "mule" and (share >= _MULE_SHARE or votes[best] >= 3)):
            return best
    return "mule" if mule_name else "text"
