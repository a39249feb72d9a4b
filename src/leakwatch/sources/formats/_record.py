"""What every format reader returns, and the field-name → attribute table they share."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote_plus

from leakwatch.errors import LeakwatchError
from leakwatch.sources.formats._time import parse_timestamp


class FormatError(LeakwatchError):
    """A format cannot be set up: unknown name, invalid user regex, missing or bogus CSV header.

    Raised by :func:`make_parser` only; parsing a record never raises (bad records carry a
    ``problem`` instead).
    """


@dataclass(slots=True)
class ParsedRecord:
    """One record (line) as its format sees it.

    ``fields`` are ``(path, start, end)`` byte spans of *values* in the line (end exclusive,
    quotes excluded, escapes left as written). JSON objects and arrays are not fields, their
    scalars are; a value that holds other fields (a JSON string holding JSON, a Mule message,
    a request line) is listed before them, and :func:`field_at` picks the innermost.
    ``ts`` is aware UTC.
    ``attrs`` holds normalised attributes (see ``ATTRIBUTES``) where the record has them.
    ``problem`` says, without quoting the data, why the record is malformed for its format.
    ``roles`` maps the path of each LLM message (``request.messages[2]``) to its role; use
    :func:`role_at`.
    """

    fields: list[tuple[str, int, int]] = field(default_factory=list)
    ts: datetime | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    roles: dict[str, str] = field(default_factory=dict)


# Attribute names a reader may put in ParsedRecord.attrs.
ATTRIBUTES = ("event_type", "user", "app", "method", "status", "url", "host", "path", "entity",
              "rows", "edge", "cache", "model")


class RecordParser:
    """Parses single records of one format; build one with :func:`make_parser`."""

    name: str = "text"

    def parse(self, line: bytes) -> ParsedRecord:
        """Fields, timestamp, attributes and problem of ``line`` (without its newline).

        Never raises on bad data: a malformed line comes back with ``problem`` set and whatever
        fields could be recovered.
        """
        if line[-1:] == b"\r":
            line = line[:-1]
        try:
            return self._parse(bytes(line))
        except Exception as e:  # noqa: BLE001 - the contract is "never raises"; name the bug, not the data
            return ParsedRecord(problem=f"{self.name} reader failed on this line ({type(e).__name__})")

    def _parse(self, line: bytes) -> ParsedRecord:
        return ParsedRecord()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def field_at(rec: ParsedRecord, offset: int) -> str | None:
    """The innermost field whose value span contains byte ``offset``, or ``None``.

    Innermost = the shortest span; on a tie the later field (listed after its container) wins.
    """
    best = None
    best_len = -1
    for name, s, e in rec.fields:
        if s <= offset < e:
            n = e - s
            if best is None or n <= best_len:
                best, best_len = name, n
    return best


def role_at(rec: ParsedRecord, offset: int) -> str | None:
    """Role (``system``, ``user``, ``assistant``, ``developer``, ``tool``…) of the LLM message
    whose content holds byte ``offset``, or ``None`` when the offset is in no message."""
    if not rec.roles:
        return None
    path = field_at(rec, offset)
    if path is None:
        return None
    best, best_len = None, -1
    for prefix, role in rec.roles.items():
        n = len(prefix)
        if n > best_len and path.startswith(prefix) and (n == 0 or len(path) == n or path[n] in ".["):
            best, best_len = role, n
    return best


# --- shared helpers ----------------------------------------------------------------------------


def query_fields(line: bytes, s: int, e: int, prefix: str = "query.",
                 json_string: bool = False) -> list[tuple[str, int, int]]:
    """``query.<name>`` fields of the query string at ``line[s:e]`` (after the ``?``); names are
    percent-decoded, value spans stay as written. In a JSON string (``json_string``) an ``&``
    may be written ``\\u0026`` (Go's encoder does so by default)."""
    out = []
    pos = s
    while pos < e:
        amp = line.find(b"&", pos, e)
        if amp < 0:
            amp = e
        sep = 1
        if json_string:
            esc = line.find(b"\\u0026", pos, amp)
            if esc >= 0:
                amp, sep = esc, 6
        eq = line.find(b"=", pos, amp)
        if eq > pos:
            name = unquote_plus(line[pos:eq].decode("utf-8", "replace"))
            if name:
                out.append((prefix + name, eq + 1, amp))
        pos = amp + sep
    return out


# --- shared attribute mapping -------------------------------------------------------------------

_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_INDEX = re.compile(r"\[\d+\]$")
_NORM_CACHE: dict[str, str] = {}


def norm_key(path: str) -> str:
    """Last component of a field path, lowercased, only ``[a-z0-9]``: ``a.b[0].Status_Code`` →
    ``statuscode``; ``@timestamp`` → ``timestamp``."""
    key = _NORM_CACHE.get(path)
    if key is None:
        last = path.rsplit(".", 1)[-1]
        if last.endswith("]"):
            last = _INDEX.sub("", last)
        key = _NOT_ALNUM.sub("", last.lower())
        # Paths repeat from record to record; the bound keeps odd keys from growing it forever.
        if len(_NORM_CACHE) < 8192:
            _NORM_CACHE[path] = key
    return key


# normalized field name → (attribute, rank); the lowest rank found in a record wins. Ranks order
# synonyms: in an EventLogFile row USER_ID_DERIVED (18-char) beats USER_ID (15-char) beats
# USER_NAME; in an API Gateway log `user` beats `caller`.
ATTR_KEYS: dict[str, tuple[str, int]] = {
    "eventtype": ("event_type", 0),
    "useridderived": ("user", 0), "userid": ("user", 1), "username": ("user", 2), "user": ("user", 3),
    "caller": ("user", 4), "principalid": ("user", 5), "userlogin": ("user", 6),
    "connectedappid": ("app", 0), "clientname": ("app", 1), "clientid": ("app", 2), "app": ("app", 3),
    "appname": ("app", 3), "application": ("app", 3), "applicationname": ("app", 3), "dyno": ("app", 4),
    "service": ("app", 5), "servicename": ("app", 5),
    "method": ("method", 0), "httpmethod": ("method", 0), "requestmethod": ("method", 1), "verb": ("method", 2),
    "statuscode": ("status", 0), "status": ("status", 1), "httpstatus": ("status", 1),
    "responsestatus": ("status", 2), "integrationstatus": ("status", 4), "loginstatus": ("status", 5),
    "host": ("host", 0), "domainname": ("host", 1), "httphost": ("host", 1), "hostheader": ("host", 2),
    "path": ("path", 0), "resourcepath": ("path", 1), "routekey": ("path", 2), "requestpath": ("path", 2),
    "route": ("path", 3), "uri": ("path", 4), "requesturi": ("path", 4),
    "entitytype": ("entity", 0), "entityname": ("entity", 1), "sobjecttype": ("entity", 2),
    "queriedentities": ("entity", 3),
    "rowsprocessed": ("rows", 0), "rowcount": ("rows", 1), "recordcount": ("rows", 2), "numberofrecords": ("rows", 3),
    "recordsprocessed": ("rows", 1),
    "edgelocation": ("edge", 0), "xedgelocation": ("edge", 0), "pop": ("edge", 1), "edge": ("edge", 1),
    "colo": ("edge", 2), "cdnpop": ("edge", 1),
    "cachestatus": ("cache", 0), "xcache": ("cache", 0), "cfcachestatus": ("cache", 0), "cache": ("cache", 1),
    "upstreamcachestatus": ("cache", 1), "xcachestatus": ("cache", 1), "cs": ("cache", 3),
    # W3C extended logs (CloudFront standard logs, IIS): cs-method, cs-uri-stem, sc-status,
    # cs(Host), x-host-header (the name the client asked for, before the distribution's own),
    # x-edge-location, x-edge-result-type, cs-username.
    "csmethod": ("method", 0), "csuristem": ("path", 1), "scstatus": ("status", 0),
    "xhostheader": ("host", 1), "cshost": ("host", 3), "csusername": ("user", 3),
    "xedgeresulttype": ("cache", 0), "xedgeresponseresulttype": ("cache", 1),
    "xedgedetailedresulttype": ("cache", 2),
    # Cloudflare Logpush HTTP requests: EdgeColoCode, CacheCacheStatus, ClientRequest*.
    "edgecolocode": ("edge", 0), "cachecachestatus": ("cache", 0), "clientrequesthost": ("host", 0),
    "clientrequestpath": ("path", 1), "clientrequesturi": ("path", 4), "clientrequestmethod": ("method", 0),
    "edgeresponsestatus": ("status", 0), "originresponsestatus": ("status", 3),
}
# Keys whose value is the outbound URL when it is absolute (scheme://…). Integration/upstream
# URLs of a gateway rank before a generic `url`; a relative `uri` falls through to `path`.
URL_KEYS: dict[str, int] = {
    "integrationurl": 0, "upstreamurl": 0, "integrationendpoint": 0, "upstreamendpoint": 0,
    "targeturl": 1, "targetendpoint": 1, "backendurl": 1, "requesturl": 2, "url": 2, "endpoint": 3,
    "endpointurl": 3, "uri": 4, "requesturi": 4, "href": 5, "upstream": 5, "target": 6, "baseurl": 6,
}
# Timestamp fields, by preference.
TS_KEYS: dict[str, int] = {
    "timestampderived": 0, "timestamp": 1, "ts": 2, "time": 2, "datetime": 2, "eventtime": 2,
    "requesttime": 2, "logtime": 3, "requesttimeepoch": 4, "date": 5, "createdat": 6, "createddate": 6,
    "edgestarttimestamp": 2, "asctime": 3,  # asctime: Python logging's JSON formatters
    "timeunixnano": 2, "observedtimeunixnano": 3,  # OpenTelemetry log records (epoch ns)
}
_ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S")
_EMPTY_VALUES = frozenset(("", "-", "null", "None"))


def _key_roles() -> dict[str, tuple[int | None, int | None, str | None, int]]:
    """The three tables above folded into one lookup: key → (timestamp rank, URL rank,
    attribute, attribute rank), ``None`` where the key has no such role. One dict probe per
    offered field instead of three (an EventLogFile row offers ~10)."""
    out = {}
    for key in {*ATTR_KEYS, *URL_KEYS, *TS_KEYS}:
        attr, rank = ATTR_KEYS.get(key, (None, 0))
        out[key] = (TS_KEYS.get(key), URL_KEYS.get(key), attr, rank)
    return out


KEY_ROLES: dict[str, tuple[int | None, int | None, str | None, int]] = _key_roles()


def _ts_sort_key(t: tuple[int, int, str]) -> tuple[int, int]:
    # Shallower first: the record's own time, not a date inside a payload it logged (a ticket's
    # "timestamp" in a body outranked the top-level "time" and became the incident's time).
    return t[1], t[0]


class AttrCollector:
    """Keeps, per attribute, the best-ranked value seen; ``depth`` breaks ties (shallower wins)."""

    __slots__ = ("best", "ts_text")

    def __init__(self) -> None:
        self.best: dict[str, tuple[int, int, str]] = {}
        self.ts_text: list[tuple[int, int, str]] = []

    @staticmethod
    def wants(key: str) -> bool:
        """Whether a field with normalized name ``key`` can give an attribute or a timestamp."""
        return key in KEY_ROLES

    def offer(self, key: str, value: str, depth: int = 0) -> None:
        """A field named ``key`` (normalized) with decoded ``value``."""
        value = value.strip()
        if value in _EMPTY_VALUES:
            return
        role = KEY_ROLES.get(key)
        if role is None:
            return
        ts_rank, url_rank, attr, rank = role
        if ts_rank is not None:
            self.ts_text.append((ts_rank, depth, value))
        if url_rank is not None and _ABSOLUTE_URL.match(value):
            attr, rank = "url", url_rank
        elif attr is None:
            return
        old = self.best.get(attr)
        if old is None or (rank, depth) < old[:2]:
            self.best[attr] = (rank, depth, value[:2048])

    def attrs(self) -> dict[str, str]:
        """The chosen value of each attribute found."""
        return {k: v[2] for k, v in self.best.items()}

    def timestamp(self) -> datetime | None:
        """The best-ranked timestamp field that parses, or ``None``."""
        ts_text = self.ts_text
        if len(ts_text) > 1:
            ts_text = sorted(ts_text, key=_ts_sort_key)  # stable: ties keep the order offered
        for _, _, text in ts_text:
            ts = parse_timestamp(text)
            if ts is not None:
                return ts
        return None
