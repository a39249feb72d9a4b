"""A loopback Salesforce: a small threaded HTTPS server that answers the REST and SOAP paths
leakwatch (and simple-salesforce) use, so tests and drills run the real client unchanged.

Why HTTPS: simple-salesforce builds every URL as ``https://{instance}/…`` (the scheme of an
``instance_url`` is dropped, only host and port are kept), so a plain-HTTP server could only be
reached by patching the client or by a transport adapter that silently downgrades TLS. Instead
the simulator serves TLS with a throw-away certificate authority made by ``trustme`` at first use;
a client trusts it through a ``requests.Session`` with ``verify=sim.ca_file`` (see
:meth:`SalesforceSim.session`) or the standard ``REQUESTS_CA_BUNDLE`` variable. ``tls=False``
gives a plain-HTTP server for clients that take a full URL (webhooks, drills).

What it answers (``vNN.N`` is any API version the client asks for)::

    POST /services/Soap/u/NN.N                      SOAP partner login (username, password+token)
    POST /services/oauth2/token                     OAuth password and client_credentials grants
    GET  /services/data                             API versions
    GET  /services/data/vNN.N/sobjects              describeGlobal (name, label, keyPrefix, custom)
    GET  /services/data/vNN.N/sobjects/X/describe   describe of one object
    GET  /services/data/vNN.N/query?q=SOQL          query; pages of ``page_size`` records
    GET  /services/data/vNN.N/query/<cursor>-<n>    queryMore (the ``nextRecordsUrl``)
    GET  /services/data/vNN.N/sobjects/X/Id         one record
    GET  /services/data/vNN.N/sobjects/EventLogFile/Id/LogFile   the CSV blob, streamed; Range
    POST /services/data/vNN.N/sobjects/X/           create a record (Case, Platform Event X__e, …)

The SOQL understood is the subset clients of EventLogFile and of created records need:
``SELECT f, … FROM X [WHERE …] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], …] [LIMIT n]`` with
``AND``/``OR``/``NOT``, parentheses, ``= != <> < <= > >=``, ``IN``/``NOT IN``, ``LIKE`` and
string, number, boolean, ``null``, date and datetime literals. Anything else is answered
``400 MALFORMED_QUERY``, as Salesforce would. Platform events (``X__e``) can be published
but not queried (``400 INVALID_TYPE``); an object declared with ``fields=`` refuses a create
that sets any other field (``400 INVALID_FIELD``), as an org refuses a field it does not have.

Faults for tests and drills: :meth:`SalesforceSim.fail_next` (an HTTP status for the next
requests under a path), :meth:`SalesforceSim.drop_connection_after` (cut a blob download after
N body bytes), :meth:`SalesforceSim.hang_next` (say nothing for N seconds: past a client's
timeout), :meth:`SalesforceSim.drop_next` (close the connection without an answer, optionally
after the request was processed: a created record whose answer is lost), :meth:`SalesforceSim.expire_sessions` (every session answers 401
``INVALID_SESSION_ID``), ``range_support=False`` (the server ignores ``Range``),
``chunked_blobs=True`` (blobs sent with ``Transfer-Encoding: chunked``, no length), and
``page_overlap`` (each query page after the first repeats that many records of the page before:
a listing that shifted while it was paged).

Example::

    with SalesforceSim(page_size=2) as sim:
        sim.add_user("ops@example.com", "pw", "TOKEN")
        sim.add_event_log_file("ApexCallout", "2024-03-11", "2024-03-12T02:10:00Z", csv_bytes)
        sf = Salesforce(session_id=sim.issue_session(), instance_url=sim.url, session=sim.session())
        sf.query("SELECT Id FROM EventLogFile")

Everything a client sent is kept for inspection: :attr:`SalesforceSim.requests` (no
``Authorization`` header) and :attr:`SalesforceSim.created_records`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape as xml_escape

from leakwatch.serving import BackgroundHTTPServer

DEFAULT_API_VERSION = "60.0"

# Objects every org has, with the key prefixes Salesforce documents for them.
STANDARD_OBJECTS: dict[str, str] = {
    "Account": "001", "Contact": "003", "User": "005", "Opportunity": "006", "Lead": "00Q",
    "Organization": "00D", "Case": "500", "Order": "801", "OrderItem": "802", "Campaign": "701",
    "ContentVersion": "068", "ContentDocument": "069", "EventLogFile": "0AT",
}

# Field lengths Salesforce enforces on create (the ones clients of the sim hit).
DEFAULT_FIELD_LENGTHS: dict[str, dict[str, int]] = {
    "Case": {"Subject": 255, "Description": 32000, "Status": 255, "Priority": 255, "Origin": 255,
             "Type": 255, "Reason": 255},
}

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_DATA_PATH = re.compile(r"^/services/data/v(\d+\.\d)(/.*)?$")
_SOAP_LOGIN = re.compile(r"^/services/Soap/u/(\d+\.\d)/?$")
_BLOB_CHUNK = 64 * 1024
_PARTNER_NS = "urn:partner.soap.sforce.com"


def id18(id15: str) -> str:
    """The 18-character, case-safe form of a 15-character record id (checksum suffix appended)."""
    if len(id15) != 15:
        raise ValueError(f"a 15-character id is needed, got {id15!r}")
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, c in enumerate(id15[start:start + 5]) if "A" <= c <= "Z")
        suffix += _SUFFIX[bits]
    return id15 + suffix


def sf_datetime(value: str | dt.datetime | dt.date) -> str:
    """A date or datetime as Salesforce writes it in JSON: ``2024-03-11T16:05:12.000+0000``.

    Strings are parsed as ISO 8601 (a bare date is midnight UTC; no offset means UTC)."""
    if isinstance(value, str):
        value = _parse_datetime(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _parse_datetime(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.strip())  # 3.11 reads Z, +0000, +00:00 and bare dates
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------------------------------------
# SOQL subset


class SoqlError(ValueError):
    """The query is outside the subset the simulator understands (answered 400 MALFORMED_QUERY)."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*')
    | (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),*])
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str


def _tokenize(q: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    q = q.rstrip()
    while pos < len(q):
        m = _TOKEN.match(q, pos)
        if m is None or m.end() == pos:
            raise SoqlError(f"unexpected text at position {pos}: {q[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        toks.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return toks


@dataclass
class SoqlQuery:
    """A parsed query: selected fields, object, filter, ordering, limit."""

    fields: list[str]
    sobject: str
    where: Any  # a predicate tree: ("and"|"or", [..]) | ("not", x) | ("cmp", field, op, value)
    order: list[tuple[str, bool, bool]]  # (field, descending, nulls_last)
    limit: int | None


class _Parser:
    def __init__(self, q: str):
        self.toks = _tokenize(q)
        self.i = 0

    def peek(self, word: str | None = None) -> _Tok | None:
        t = self.toks[self.i] if self.i < len(self.toks) else None
        if word is not None and (t is None or t.kind != "word" or t.text.upper() != word):
            return None
        return t

    def take(self, word: str | None = None, kind: str | None = None) -> _Tok:
        t = self.peek()
        if t is None:
            raise SoqlError(f"unexpected end of query, expected {word or kind}")
        if word is not None and not (t.kind == "word" and t.text.upper() == word):
            raise SoqlError(f"expected {word}, found {t.text!r}")
        if kind is not None and t.kind != kind and not (kind == "punct" and t.kind == "punct"):
            raise SoqlError(f"expected {kind}, found {t.text!r}")
        self.i += 1
        return t

    def parse(self) -> SoqlQuery:
        self.take("SELECT")
        fields = [self.take(kind="word").text]
        while self.peek() is not None and self.peek().text == ",":
            self.take()
            fields.append(self.take(kind="word").text)
        self.take("FROM")
        sobject = self.take(kind="word").text
        where = None
        if self.peek("WHERE"):
            self.take()
            where = self.or_expr()
        order: list[tuple[str, bool, bool]] = []
        if self.peek("ORDER"):
            self.take()
            self.take("BY")
            while True:
                name = self.take(kind="word").text
                desc = False
                if self.peek("ASC") or self.peek("DESC"):
                    desc = self.take().text.upper() == "DESC"
                nulls_last = desc
                if self.peek("NULLS"):
                    self.take()
                    nulls_last = self.take().text.upper() == "LAST"
                order.append((name, desc, nulls_last))
                if self.peek() is not None and self.peek().text == ",":
                    self.take()
                    continue
                break
        limit = None
        if self.peek("LIMIT"):
            self.take()
            limit = int(self.take(kind="num").text)
        if self.peek() is not None:
            raise SoqlError(f"unexpected {self.peek().text!r}")
        return SoqlQuery(fields, sobject, where, order, limit)

    def or_expr(self) -> Any:
        parts = [self.and_expr()]
        while self.peek("OR"):
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def and_expr(self) -> Any:
        parts = [self.not_expr()]
        while self.peek("AND"):
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def not_expr(self) -> Any:
        if self.peek("NOT"):
            self.take()
            return ("not", self.not_expr())
        return self.atom()

    def atom(self) -> Any:
        t = self.peek()
        if t is not None and t.text == "(":
            self.take()
            inner = self.or_expr()
            if self.take().text != ")":
                raise SoqlError("missing )")
            return inner
        name = self.take(kind="word").text
        if self.peek("IN") or self.peek("NOT"):
            negate = self.take().text.upper() == "NOT"
            if negate:
                self.take("IN")
            if self.take().text != "(":
                raise SoqlError("expected ( after IN")
            values = [self.literal()]
            while self.peek() is not None and self.peek().text == ",":
                self.take()
                values.append(self.literal())
            if self.take().text != ")":
                raise SoqlError("missing ) after IN list")
            return ("cmp", name, "not in" if negate else "in", values)
        if self.peek("LIKE"):
            self.take()
            return ("cmp", name, "like", self.literal())
        op = self.take(kind="op").text
        return ("cmp", name, "!=" if op == "<>" else op, self.literal())

    def literal(self) -> Any:
        t = self.take()
        if t.kind == "str":
            return re.sub(r"\\(.)", r"\1", t.text[1:-1])
        if t.kind == "dt":
            return _parse_datetime(t.text)
        if t.kind == "date":
            return dt.date.fromisoformat(t.text)
        if t.kind == "num":
            return float(t.text) if "." in t.text else int(t.text)
        if t.kind == "word" and t.text.lower() in ("true", "false"):
            return t.text.lower() == "true"
        if t.kind == "word" and t.text.lower() == "null":
            return None
        raise SoqlError(f"expected a value, found {t.text!r}")


def parse_soql(q: str) -> SoqlQuery:
    """Parse the SOQL subset described in the module docstring; raises :class:`SoqlError`."""
    return _Parser(q).parse()


def _field(record: dict[str, Any], name: str) -> tuple[str | None, Any]:
    for k, v in record.items():
        if k.lower() == name.lower():
            return k, v
    return None, None


def _coerce(value: Any, like: Any) -> Any:
    """Bring a stored value to the type of the literal it is compared with."""
    if value is None:
        return None
    if isinstance(like, dt.datetime) and isinstance(value, str):
        return _parse_datetime(value)
    if isinstance(like, dt.date) and not isinstance(like, dt.datetime) and isinstance(value, str):
        return _parse_datetime(value).date()
    if isinstance(like, str) and isinstance(value, str):
        return value.lower()  # SOQL compares text case-insensitively
    return value


def _matches(pred: Any, record: dict[str, Any]) -> bool:
    if pred is None:
        return True
    kind = pred[0]
    if kind == "and":
        return all(_matches(p, record) for p in pred[1])
    if kind == "or":
        return any(_matches(p, record) for p in pred[1])
    if kind == "not":
        return not _matches(pred[1], record)
    _, name, op, lit = pred
    _, raw = _field(record, name)
    if op in ("in", "not in"):
        found = any(_coerce(raw, v) == (v.lower() if isinstance(v, str) else v) for v in lit)
        return found if op == "in" else not found
    if op == "like":
        if raw is None:
            return False
        rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(lit))
        return re.fullmatch(rx, str(raw), re.IGNORECASE | re.DOTALL) is not None
    value = _coerce(raw, lit)
    lit = lit.lower() if isinstance(lit, str) else lit
    if op == "=":
        return value == lit
    if op == "!=":
        return value != lit
    if value is None or lit is None:
        return False
    try:
        return {"<": value < lit, "<=": value <= lit, ">": value > lit, ">=": value >= lit}[op]
    except TypeError as e:
        raise SoqlError(f"cannot compare {name} with {lit!r}") from e


def _sort_key(value: Any) -> Any:
    if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}T", value):
        with contextlib.suppress(ValueError):
            return _parse_datetime(value)
    return value


def run_soql(query: SoqlQuery, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Filter, order and limit ``records`` (dicts of one object) by ``query``."""
    rows = [r for r in records if _matches(query.where, r)]
    for name, desc, nulls_last in reversed(query.order):
        present = [r for r in rows if _field(r, name)[1] is not None]
        absent = [r for r in rows if _field(r, name)[1] is None]
        present.sort(key=lambda r: _sort_key(_field(r, name)[1]), reverse=desc)
        rows = present + absent if nulls_last else absent + present
    return rows[: query.limit] if query.limit is not None else rows


# ---------------------------------------------------------------------------------------------
# State


@dataclass
class SObjectInfo:
    """One object type the org knows: what describeGlobal lists."""

    name: str
    key_prefix: str | None
    label: str
    custom: bool
    field_lengths: dict[str, int] = field(default_factory=dict)
    fields: frozenset[str] | None = None  # fields a create may set (None: any)


@dataclass
class CreatedRecord:
    """A record a client created with ``POST …/sobjects/<name>/``."""

    sobject: str
    id: str
    fields: dict[str, Any]


@dataclass
class RequestRecord:
    """One request the simulator answered (headers without ``Authorization``)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int = 0
    body_bytes_sent: int = 0
    body: bytes = b""  # the request body, REST data paths only (a login body holds the password)


@dataclass
class _Fault:
    prefix: str
    status: int
    times: int
    body: bytes | None
    retry_after: int | None
    method: str | None
    kind: str = "status"  # status | hang | drop
    seconds: float = 0.0
    process: bool = False


@dataclass
class _Drop:
    prefix: str
    after: int
    times: int


_CA_LOCK = threading.Lock()
_CA: Any = None


def _certificate_authority() -> Any:
    """One throw-away CA per process (making one costs ~10 ms; tests start many servers)."""
    global _CA
    with _CA_LOCK:
        if _CA is None:
            import trustme

            _CA = trustme.CA(organization_name="leakwatch loopback Salesforce")
        return _CA


class _Abort(Exception):
    """Cut the connection now (an injected fault)."""


class SalesforceSim(BackgroundHTTPServer):
    """A loopback Salesforce org. Use as a context manager; see the module docstring.

    ``page_size`` is the number of records per query page (Salesforce: 2,000), small values
    force ``queryMore``. ``api_version`` is what ``GET /services/data`` advertises; requests
    for any version are answered. ``org_id`` is the 15-character organization id.
    """

    def __init__(
        self,
        *,
        page_size: int = 2000,
        api_version: str = DEFAULT_API_VERSION,
        tls: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        org_id: str = "00D5j00000AbCdE",
        range_support: bool = True,
        chunked_blobs: bool = False,
        blob_chunk: int = _BLOB_CHUNK,
    ) -> None:
        self.page_size = page_size
        self.api_version = api_version
        self.tls = tls
        self.org_id = org_id
        self.range_support = range_support
        self.chunked_blobs = chunked_blobs
        self.blob_chunk = blob_chunk
        self.page_overlap = 0
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._sobjects: dict[str, SObjectInfo] = {}
        self._records: dict[str, dict[str, dict[str, Any]]] = {}
        self._blobs: dict[str, bytes | Path] = {}
        self._counters: dict[str, int] = {}
        self._users: dict[str, tuple[str, str, str]] = {}  # username → (password, token, user id)
        self._apps: dict[str, str] = {}  # client_id → client_secret
        self._sessions: set[str] = set()
        self._cursors: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}
        self._faults: list[_Fault] = []
        self._drops: list[_Drop] = []
        self.requests: list[RequestRecord] = []
        self.created_records: list[CreatedRecord] = []
        self._server: ThreadingHTTPServer | None = None
        self._tmpdir: str | None = None
        self.ca_file: str | None = None
        for name, prefix in STANDARD_OBJECTS.items():
            self.add_sobject(name, prefix, field_lengths=DEFAULT_FIELD_LENGTHS.get(name))

    # -- lifecycle -----------------------------------------------------------------------------

    thread_name = "salesforce-sim"

    @property
    def handler(self) -> type:
        return _Handler

    def _configure(self, server) -> None:
        if self.tls:
            ca = _certificate_authority()
            cert = ca.issue_cert(self._host, "localhost")
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)
            # The handshake runs in the handler thread (see _Handler.setup), so one client that
            # connects and says nothing cannot stall accept() for everyone else.
            server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
            self._tmpdir = tempfile.mkdtemp(prefix="leakwatch-sfsim-")
            self.ca_file = os.path.join(self._tmpdir, "ca.pem")
            ca.cert_pem.write_to_path(self.ca_file)

    def _stopped(self) -> None:
        if self._tmpdir is not None:  # the CA file
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    @property
    def instance(self) -> str:
        """``host:port``: what simple-salesforce calls ``sf_instance``."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``https://127.0.0.1:50123``: the instance URL and the login URL."""
        return f"{'https' if self.tls else 'http'}://{self.instance}"

    def session(self) -> Any:
        """A ``requests.Session`` that trusts this simulator's certificate.

        It ignores the environment (``trust_env=False``): requests lets ``REQUESTS_CA_BUNDLE``
        override a session's ``verify``, and proxy variables would route loopback traffic away."""
        import requests

        s = requests.Session()
        s.trust_env = False
        if self.ca_file:
            s.verify = self.ca_file
        return s

    def data_path(self, rest: str = "", version: str | None = None) -> str:
        """``/services/data/vNN.N/<rest>``."""
        return f"/services/data/v{version or self.api_version}/{rest.lstrip('/')}"

    # -- org content ---------------------------------------------------------------------------

    def add_sobject(self, name: str, key_prefix: str | None, *, custom: bool | None = None,
                    label: str | None = None, field_lengths: dict[str, int] | None = None,
                    fields: Iterable[str] | None = None) -> None:
        """Declare an object type (custom objects ``X__c``, platform events ``X__e``…).

        ``fields``: the fields a create may set (others get ``400 INVALID_FIELD``); None allows any."""
        if custom is None:
            custom = "__" in name
        with self._lock:
            self._sobjects[name] = SObjectInfo(name, key_prefix, label or name.replace("__c", "").replace("_", " "),
                                               custom, dict(field_lengths or {}),
                                               frozenset(fields) if fields is not None else None)
            self._records.setdefault(name, {})

    def new_id(self, sobject: str) -> str:
        """A fresh 18-character id with the object's key prefix."""
        with self._lock:
            info = self._sobjects.get(sobject)
            prefix = (info.key_prefix if info and info.key_prefix else "a00")[:3]
            n = self._counters.get(prefix, 0) + 1
            self._counters[prefix] = n
        body = ""
        while n:
            n, r = divmod(n, 62)
            body = _BASE62[r] + body
        # Real ids carry the instance's pod after the prefix; "5j" + zeros looks like them.
        return id18(prefix + "5j" + body.rjust(10, "0"))

    def add_record(self, sobject: str, fields: dict[str, Any]) -> str:
        """Store a record (``Id`` and ``CreatedDate`` added unless given); return its id."""
        with self._lock:
            if sobject not in self._sobjects:
                self.add_sobject(sobject, None)
            record = dict(fields)
            record.setdefault("Id", self.new_id(sobject))
            record.setdefault("CreatedDate", sf_datetime(dt.datetime.now(dt.UTC)))
            self._records[sobject][record["Id"]] = record
            return record["Id"]

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Copies of the stored records of ``sobject`` (added or created by clients)."""
        with self._lock:
            return [dict(r) for r in self._records.get(sobject, {}).values()]

    def add_event_log_file(
        self,
        event_type: str,
        log_date: str | dt.date | dt.datetime,
        created_date: str | dt.datetime,
        csv_bytes: bytes | None = None,
        *,
        csv_path: str | os.PathLike | None = None,
        interval: str = "Daily",
        sequence: int = 0,
        log_file_length: int | None | bool = True,
        log_id: str | None = None,
        api_version: str | None = None,
    ) -> str:
        """Add an EventLogFile whose ``LogFile`` blob is ``csv_bytes`` (or the file ``csv_path``,
        streamed from disk, for blobs too large to hold). Returns its 18-character id.

        ``log_file_length`` True (default) sets ``LogFileLength`` to the blob's size, None leaves
        the field out, an int sets it to that (a lying server)."""
        if (csv_bytes is None) == (csv_path is None):
            raise ValueError("give exactly one of csv_bytes and csv_path")
        blob: bytes | Path = bytes(csv_bytes) if csv_bytes is not None else Path(csv_path)  # type: ignore[arg-type]
        size = len(blob) if isinstance(blob, bytes) else blob.stat().st_size
        head = blob[:4096] if isinstance(blob, bytes) else blob.open("rb").read(4096)
        names = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().replace('"', "")
        record: dict[str, Any] = {
            "Id": log_id or self.new_id("EventLogFile"),
            "EventType": event_type,
            "LogDate": sf_datetime(log_date),
            "CreatedDate": sf_datetime(created_date),
            "Interval": interval,
            "Sequence": sequence,
            "ApiVersion": float(api_version or self.api_version),
            "LogFileContentType": "CSV",
            "LogFileFieldNames": names,
        }
        if log_file_length is True:
            record["LogFileLength"] = float(size)  # a double in the API
        elif log_file_length is not None and log_file_length is not False:
            record["LogFileLength"] = float(log_file_length)
        with self._lock:
            self._records["EventLogFile"][record["Id"]] = record
            self._blobs[record["Id"]] = blob
        return record["Id"]

    # -- credentials ---------------------------------------------------------------------------

    def add_user(self, username: str, password: str, security_token: str = "") -> str:
        """A user who may log in with SOAP (password + token) or the OAuth password grant."""
        with self._lock:
            uid = self.new_id("User")
            self._users[username] = (password, security_token, uid)
            self._records["User"][uid] = {"Id": uid, "Username": username,
                                          "CreatedDate": sf_datetime(dt.datetime.now(dt.UTC))}
            return uid

    def add_connected_app(self, client_id: str, client_secret: str) -> None:
        """A connected app for the OAuth token endpoint."""
        with self._lock:
            self._apps[client_id] = client_secret

    def issue_session(self) -> str:
        """A new valid session id (what a login returns), shaped like Salesforce's ``00D…!…``."""
        sid = f"{self.org_id}!{secrets.token_urlsafe(72)}"
        with self._lock:
            self._sessions.add(sid)
        return sid

    @property
    def valid_sessions(self) -> set[str]:
        """The session ids this simulator issued that are still valid."""
        with self._lock:
            return set(self._sessions)

    def expire_sessions(self) -> None:
        """Invalidate every session: further REST calls get 401 ``INVALID_SESSION_ID``."""
        with self._lock:
            self._sessions.clear()

    # -- faults --------------------------------------------------------------------------------

    def fail_next(self, path_prefix: str, status: int = 503, times: int = 1, *, body: bytes | str | None = None,
                  retry_after: int | None = None, method: str | None = None) -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status``.

        A prefix starting with ``/`` matches the raw path; otherwise it matches the part after
        ``/services/data/vNN.N/`` (``"query"``, ``"sobjects/EventLogFile/"``). The default body
        is Salesforce's JSON error list for the status."""
        with self._lock:
            self._faults.append(_Fault(path_prefix, status, times,
                                       body.encode() if isinstance(body, str) else body, retry_after,
                                       method.upper() if method else None))

    def hang_next(self, path_prefix: str, seconds: float, times: int = 1, *, method: str | None = None,
                  process: bool = False) -> None:
        """Say nothing for ``seconds`` on the next ``times`` requests under ``path_prefix`` (matched
        as in :meth:`fail_next`), then close the connection; with ``process=True`` the request is
        then processed and answered, as a slow server would, into a connection the client may have
        given up on."""
        with self._lock:
            self._faults.append(_Fault(path_prefix, 0, times, None, None, method.upper() if method else None,
                                       kind="hang", seconds=seconds, process=process))

    def drop_next(self, path_prefix: str, times: int = 1, *, method: str | None = None, process: bool = False) -> None:
        """Close the connection without an answer on the next ``times`` requests under
        ``path_prefix``; with ``process=True`` the request is processed first (a record is
        created, its answer is lost)."""
        with self._lock:
            self._faults.append(_Fault(path_prefix, 0, times, None, None, method.upper() if method else None,
                                       kind="drop", process=process))

    def drop_connection_after(self, nbytes: int, times: int = 1, path_prefix: str = "sobjects/EventLogFile/") -> None:
        """Cut the next ``times`` blob downloads under ``path_prefix`` after ``nbytes`` body bytes
        (the TCP connection is closed without finishing the response)."""
        with self._lock:
            self._drops.append(_Drop(path_prefix, nbytes, times))

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RequestRecord]:
        """The logged requests under ``path_prefix`` (matched as in :meth:`fail_next`)."""
        with self._lock:
            return [r for r in self.requests if _prefix_match(path_prefix, r.path)
                    and (method is None or r.method == method.upper())]

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.times > 0 and _prefix_match(f.prefix, path) and (f.method is None or f.method == method):
                    f.times -= 1
                    return f
        return None

    def _take_drop(self, path: str) -> int | None:
        with self._lock:
            for d in self._drops:
                if d.times > 0 and _prefix_match(d.prefix, path):
                    d.times -= 1
                    return d.after
        return None


def _prefix_match(prefix: str, path: str) -> bool:
    if prefix.startswith("/"):
        return path.startswith(prefix)
    m = _DATA_PATH.match(path)
    return m is not None and (m.group(2) or "/")[1:].startswith(prefix)


def _error_body(status: int) -> bytes:
    code = {400: "MALFORMED_QUERY", 401: "INVALID_SESSION_ID", 403: "REQUEST_LIMIT_EXCEEDED",
            404: "NOT_FOUND", 429: "REQUEST_LIMIT_EXCEEDED", 500: "UNKNOWN_EXCEPTION",
            502: "SERVER_UNAVAILABLE", 503: "SERVER_UNAVAILABLE"}.get(status, "UNKNOWN_EXCEPTION")
    message = "Session expired or invalid" if status == 401 else f"injected fault {status}"
    return json.dumps([{"message": message, "errorCode": code}]).encode()


# ---------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Salesforce; every response has a length or chunks
    server_version = "SalesforceSim/1"
    timeout = 30  # idle keep-alive connections end after 30 s

    @property
    def sim(self) -> SalesforceSim:
        return self.server.sim  # type: ignore[attr-defined]

    # -- plumbing ------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self._handshake_failed = False
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError):
                self._handshake_failed = True  # a client that does not trust us, or a port probe

    def handle(self) -> None:
        if self._handshake_failed:
            return
        try:
            super().handle()
        except (_Abort, ConnectionError, ssl.SSLError, TimeoutError, OSError):
            self.close_connection = True

    def finish(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log (sim.requests) replaces stderr noise

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json;charset=UTF-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._record.status = status
        self._record.body_bytes_sent = len(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, [{"message": message, "errorCode": code}])

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and token.strip() in self.sim.valid_sessions:
            return True
        self._send(401, _error_body(401))
        return False

    # -- dispatch ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parts.query
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        self._record = RequestRecord(method, path, query, headers)
        with self.sim._lock:
            self.sim.requests.append(self._record)
        body = self._body()
        if _DATA_PATH.match(path):
            self._record.body = body
        fault = self.sim._take_fault(method, path)
        if fault is not None and fault.kind != "status":
            return self._hang_or_drop(fault, method, path, query, body)
        if fault is not None:
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            self._send(fault.status, fault.body if fault.body is not None else _error_body(fault.status), headers=extra)
            return
        try:
            self._route(method, path, query, body)
        except _Abort:
            raise
        except SoqlError as e:
            self._error(400, "MALFORMED_QUERY", str(e))
        except (ConnectionError, ssl.SSLError, TimeoutError):
            raise
        except Exception as e:  # noqa: BLE001 - a bug in the sim answers 500, like a server would
            self._error(500, "UNKNOWN_EXCEPTION", f"{type(e).__name__}: {e}")

    def _hang_or_drop(self, fault: _Fault, method: str, path: str, query: str, body: bytes) -> None:
        if fault.kind == "hang":
            time.sleep(fault.seconds)
        if fault.process:
            real, self.wfile = self.wfile, io.BytesIO()
            try:
                with contextlib.suppress(Exception):
                    self._route(method, path, query, body)
            finally:
                answered, self.wfile = self.wfile, real
            if fault.kind == "hang":  # a slow server answers at last
                self.wfile.write(answered.getvalue())
                self.wfile.flush()
                return
            self._record.status = 0  # the answer was never sent
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Abort

    def _route(self, method: str, path: str, query: str, body: bytes) -> None:
        if method == "POST" and _SOAP_LOGIN.match(path):
            return self._soap_login(body, _SOAP_LOGIN.match(path).group(1))
        if method == "POST" and path.rstrip("/") == "/services/oauth2/token":
            return self._oauth_token(body)
        if method == "GET" and path.rstrip("/") == "/services/data":
            v = self.sim.api_version
            return self._json(200, [{"label": "Simulated", "url": f"/services/data/v{v}", "version": v}])
        m = _DATA_PATH.match(path)
        if m is None:
            return self._error(404, "NOT_FOUND", "The requested resource does not exist")
        if not self._authorized():
            return None
        version, rest = m.group(1), (m.group(2) or "/").strip("/")
        segs = rest.split("/") if rest else []
        if method == "GET" and segs == ["sobjects"]:
            return self._describe_global()
        if method == "GET" and len(segs) == 1 and segs[0] in ("query", "queryAll"):
            q = parse_qs(query).get("q", [""])[0]
            return self._query(version, q)
        if method == "GET" and len(segs) == 2 and segs[0] in ("query", "queryAll"):
            return self._query_more(version, segs[1])
        if segs[:1] == ["sobjects"] and len(segs) >= 2:
            name = segs[1]
            info = self.sim._sobjects.get(name)
            if info is None:
                return self._error(404, "NOT_FOUND", "The requested resource does not exist")
            if method == "GET" and len(segs) == 3 and segs[2] == "describe":
                return self._describe(version, info)
            if method == "POST" and len(segs) == 2:
                return self._create(info, body)
            if method == "GET" and len(segs) == 3:
                return self._get_record(version, info, segs[2])
            if method == "GET" and len(segs) == 4 and name == "EventLogFile" and segs[3] == "LogFile":
                return self._blob(path, segs[2])
        return self._error(404, "NOT_FOUND", "The requested resource does not exist")

    # -- auth ----------------------------------------------------------------------------------

    def _soap_login(self, body: bytes, version: str) -> None:
        try:
            root = ET.fromstring(body)
            username = root.findtext(f".//{{{_PARTNER_NS}}}username") or ""
            password = root.findtext(f".//{{{_PARTNER_NS}}}password") or ""
        except ET.ParseError:
            username = password = ""
        sim = self.sim
        user = sim._users.get(username)
        if user is None or password != user[0] + user[1]:
            return self._soap_fault("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
        sid = sim.issue_session()
        org = sim.org_id
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{sim.url}/services/Soap/m/{version}/{org}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
            f"<serverUrl>{sim.url}/services/Soap/u/{version}/{org}</serverUrl>"
            f"<sessionId>{xml_escape(sid)}</sessionId><userId>{user[2]}</userId>"
            f"<userInfo><organizationId>{id18(org)}</organizationId><userName>{xml_escape(username)}</userName>"
            "</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        self._send(200, xml.encode(), "text/xml;charset=UTF-8")

    def _soap_fault(self, code: str, message: str) -> None:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {xml_escape(message)}"
            f'</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}</sf:exceptionCode>'
            f"<sf:exceptionMessage>{xml_escape(message)}</sf:exceptionMessage></sf:LoginFault></detail>"
            "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        )
        self._send(500, xml.encode(), "text/xml;charset=UTF-8")

    def _oauth_token(self, body: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        sim = self.sim
        grant = form.get("grant_type")
        secret = sim._apps.get(form.get("client_id", ""))
        if secret is None or not secrets.compare_digest(secret, form.get("client_secret", "")):
            return self._json(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        if grant == "password":
            user = sim._users.get(form.get("username", ""))
            if user is None or form.get("password") not in (user[0], user[0] + user[1]):
                return self._json(400, {"error": "invalid_grant", "error_description": "authentication failure"})
        elif grant != "client_credentials":
            return self._json(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        self._json(200, {"access_token": sim.issue_session(), "instance_url": sim.url,
                         "id": f"{sim.url}/id/{id18(sim.org_id)}", "token_type": "Bearer",
                         "issued_at": str(int(dt.datetime.now(dt.UTC).timestamp() * 1000)),
                         "signature": secrets.token_urlsafe(32)})

    # -- REST ----------------------------------------------------------------------------------

    def _describe_global(self) -> None:
        sim = self.sim
        with sim._lock:
            infos = list(sim._sobjects.values())
        self._json(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
            {"name": i.name, "label": i.label, "keyPrefix": i.key_prefix, "custom": i.custom,
             "queryable": True, "createable": True, "urls": {"sobject": sim.data_path(f"sobjects/{i.name}")}}
            for i in infos]})

    def _describe(self, version: str, info: SObjectInfo) -> None:
        names: dict[str, None] = {"Id": None, "CreatedDate": None}
        for r in self.sim.records(info.name):
            names.update(dict.fromkeys(r))
        names.update(dict.fromkeys(info.field_lengths))
        fields = [{"name": n, "type": "id" if n == "Id" else "string", "length": info.field_lengths.get(n, 255)}
                  for n in names]
        self._json(200, {"name": info.name, "label": info.label, "keyPrefix": info.key_prefix,
                         "custom": info.custom, "fields": fields,
                         "urls": {"sobject": self.sim.data_path(f"sobjects/{info.name}", version)}})

    def _shape(self, version: str, sobject: str, record: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        url = f"/services/data/v{version}/sobjects/{sobject}/{record['Id']}"
        out: dict[str, Any] = {"attributes": {"type": sobject, "url": url}}
        if fields is None:
            fields = list(record) + (["LogFile"] if sobject == "EventLogFile" else [])
        for name in fields:
            key, value = _field(record, name)
            if name.lower() == "logfile" and sobject == "EventLogFile":
                key, value = "LogFile", f"/services/data/v{version}/sobjects/EventLogFile/{record['Id']}/LogFile"
            elif key is None:
                raise SoqlError(f"No such column '{name}' on entity '{sobject}'")
            out[key] = value
        return out

    def _query(self, version: str, q: str) -> None:
        query = parse_soql(q)
        sim = self.sim
        if query.sobject not in sim._sobjects:
            raise SoqlError(f"sObject type '{query.sobject}' is not supported")
        if query.sobject.endswith("__e"):  # platform events are published, never stored for SOQL
            return self._error(400, "INVALID_TYPE", f"sObject type '{query.sobject}' is not supported.")
        rows = [self._shape(version, query.sobject, r, query.fields)
                for r in run_soql(query, sim.records(query.sobject))]
        cursor = "01g" + secrets.token_hex(6)
        with sim._lock:
            sim._cursors[cursor] = (version, query.sobject, rows)
        self._page(version, cursor, 0)

    def _query_more(self, version: str, locator: str) -> None:
        cursor, _, offset = locator.rpartition("-")
        if cursor not in self.sim._cursors or not offset.isdigit():
            return self._error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        self._page(version, cursor, int(offset))

    def _page(self, version: str, cursor: str, offset: int) -> None:
        _, _, rows = self.sim._cursors[cursor]
        end = offset + max(1, self.sim.page_size)
        start = max(0, offset - self.sim.page_overlap) if offset else 0
        out: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows), "records": rows[start:end]}
        if end < len(rows):
            out["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor}-{end}"
        self._json(200, out)

    def _get_record(self, version: str, info: SObjectInfo, rid: str) -> None:
        with self.sim._lock:
            rec = self.sim._records.get(info.name, {}).get(rid)
            rec = dict(rec) if rec is not None else None
        if rec is None:
            return self._error(404, "NOT_FOUND", "The requested resource does not exist")
        self._json(200, self._shape(version, info.name, rec, None))

    def _create(self, info: SObjectInfo, body: bytes) -> None:
        try:
            fields = json.loads(body or b"null")
        except ValueError as e:
            return self._error(400, "JSON_PARSER_ERROR", f"cannot parse the request body: {e}")
        if not isinstance(fields, dict):
            return self._error(400, "JSON_PARSER_ERROR", "the request body must be a JSON object")
        if info.fields is not None:
            for name in fields:
                if name not in info.fields:
                    return self._json(400, [{"message": f"No such column '{name}' on sobject of type {info.name}",
                                             "errorCode": "INVALID_FIELD", "fields": [name]}])
        for name, limit in info.field_lengths.items():
            value = fields.get(name)
            if isinstance(value, str) and len(value) > limit:
                return self._json(400, [{"message": f"{info.label}: data value too large: {name} (max length={limit})",
                                         "errorCode": "STRING_TOO_LONG", "fields": [name]}])
        rid = self.sim.add_record(info.name, fields)
        with self.sim._lock:
            self.sim.created_records.append(CreatedRecord(info.name, rid, dict(fields)))
        self._json(201, {"id": rid, "success": True, "errors": []})

    def _blob(self, path: str, rid: str) -> None:
        sim = self.sim
        with sim._lock:
            blob = sim._blobs.get(rid)
        if blob is None:
            return self._error(404, "NOT_FOUND", "The requested resource does not exist")
        size = len(blob) if isinstance(blob, bytes) else blob.stat().st_size
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and sim.range_support:
            m = re.fullmatch(r"\s*bytes=(\d+)-\s*", rng)  # the only form clients resuming send
            if m is None:
                return self._send(416, b"", headers={"Content-Range": f"bytes */{size}"})
            start = int(m.group(1))
            if start >= size:
                return self._send(416, b"", headers={"Content-Range": f"bytes */{size}"})
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "text/csv")
        if sim.range_support:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        if sim.chunked_blobs:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size - start))
        self.end_headers()
        self._record.status = status
        drop_after = sim._take_drop(path)
        sent = 0
        for chunk in _blob_chunks(blob, start, sim.blob_chunk):
            if drop_after is not None and sent + len(chunk) > drop_after:
                chunk = chunk[: max(0, drop_after - sent)]
                self._write_body(chunk)
                sent += len(chunk)
                self._record.body_bytes_sent = sent
                self.wfile.flush()
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                raise _Abort
            self._write_body(chunk)
            sent += len(chunk)
        if sim.chunked_blobs:
            self.wfile.write(b"0\r\n\r\n")
        self._record.body_bytes_sent = sent

    def _write_body(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.sim.chunked_blobs:
            self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        else:
            self.wfile.write(chunk)


def _blob_chunks(blob: bytes | Path, start: int, size: int) -> Iterator[bytes]:
    if isinstance(blob, bytes):
        view = memoryview(blob)
        for i in range(start, len(blob), size):
            yield bytes(view[i:i + size])
        return
    with open(blob, "rb") as f:
        f.seek(start)
        while chunk := f.read(size):
            yield chunk


__all__ = [
    "DEFAULT_API_VERSION", "STANDARD_OBJECTS", "CreatedRecord", "RequestRecord", "SObjectInfo",
    "SalesforceSim", "SoqlError", "SoqlQuery", "id18", "parse_soql", "run_soql", "sf_datetime",
]
