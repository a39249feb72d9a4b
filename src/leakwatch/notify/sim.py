"""Loopback servers that speak the notification targets' APIs, for tests and drills.

Each is a small threaded HTTP/1.1 server on 127.0.0.1 that checks authentication and the
request shape the way the real API documents it and answers in the real API's shape, so the
targets run unchanged against it:

- :class:`ServiceNowSim` – Table API: ``POST/GET /api/now/table/<table>`` (Basic or Bearer),
  ``GET /api/now/table/<table>/<sys_id>``; ``sysparm_query`` (``f=v``, ``f!=v``, ``ORDERBY``),
  ``sysparm_fields``, ``sysparm_limit``, ``sysparm_offset``.
- :class:`JiraSim` – Jira Cloud REST v3: ``POST /rest/api/3/issue`` (ADF descriptions are
  validated), ``GET /rest/api/3/issue/<key>``, ``GET|POST /rest/api/3/search/jql`` (a JQL
  subset: ``field = v``, ``field != v``, ``field in (…)``, ``AND``, ``ORDER BY``), and Jira
  Service Management's ``POST /rest/servicedeskapi/request``. Basic auth with e-mail + API token.
- :class:`SlackWebhookSim` – Slack incoming webhooks (``/services/T…/B…/<secret>``), Block Kit
  checked against Slack's limits; answers ``200 ok`` or Slack's plain-text errors.
- :class:`TeamsWebhookSim` – Teams incoming webhooks (Workflows: ``202``; or the older
  connector style: ``200 1``), the ``message`` envelope and Adaptive Card checked.

Where a real API is lenient in a way that would hide a client bug, the simulator is stricter and
says so in its docstring (ServiceNow silently ignores unknown or malformed values; the simulator
refuses nested values and invalid urgency/impact choices).

Faults, on every server: :meth:`LoopbackServer.fail_next` (a status, optionally with
``Retry-After``), :meth:`LoopbackServer.hang_next` (answer nothing for N seconds: past a
client's timeout), :meth:`LoopbackServer.drop_next` (close the connection without an answer,
optionally after the request was processed: the "lost answer" that idempotency lookups exist
for). Every request is kept in :attr:`LoopbackServer.requests` with its body and the identity it
authenticated as, without the ``Authorization`` header.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from leakwatch.serving import BackgroundHTTPServer

# ---------------------------------------------------------------------------------------------
# The server and its faults


@dataclass
class Recorded:
    """One request a simulator received. ``auth_scheme`` is ``basic``/``bearer``/None and
    ``auth_user`` the Basic-auth user name (never a password or token); ``status`` is what was
    answered (0: no answer, the connection was dropped or hung)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    auth_scheme: str | None = None
    auth_user: str | None = None
    status: int = 0

    @property
    def params(self) -> dict[str, list[str]]:
        """The query string, parsed."""
        return parse_qs(self.query, keep_blank_values=True)

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A header, case-insensitively."""
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class Request:
    """What a simulator's ``handle`` gets."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    auth: tuple[str, str, str] | None  # (scheme, user or "", secret)

    def param(self, name: str, default: str | None = None) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        """A header, case-insensitively."""
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class Reply:
    """What a simulator answers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
        """A JSON answer."""
        return cls(status, json.dumps(obj).encode(), headers=headers or {})

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain;charset=utf-8") -> Reply:
        """A text answer."""
        return cls(status, text.encode(), content_type)


@dataclass
class _Fault:
    kind: str           # status | hang | drop
    prefix: str
    times: int
    method: str | None
    status: int = 0
    body: bytes | None = None
    content_type: str = "application/json;charset=UTF-8"
    retry_after: str | None = None
    seconds: float = 0.0
    process: bool = False


class _Abort(Exception):
    """Close the connection now, without an answer."""


class LoopbackServer(BackgroundHTTPServer):
    """Base of the simulators: lifecycle, request log and faults. Use as a context manager."""

    server_name = "LoopbackSim/1"

    @property
    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    @property
    def thread_name(self) -> str:
        return type(self).__name__

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._closing = threading.Event()
        self.requests: list[Recorded] = []
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def _configure(self, server: ThreadingHTTPServer) -> None:
        self._closing.clear()

    def _stopping(self) -> None:
        self._closing.set()  # hung requests are released

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self._host}:{self.port}"

    # -- faults --------------------------------------------------------------------------------

    def fail_next(self, path_prefix: str, status: int = 503, times: int = 1, *, body: bytes | str | None = None,
                  retry_after: float | str | None = None, method: str | None = None,
                  content_type: str = "application/json;charset=UTF-8") -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status`` (and a
        ``Retry-After`` header when given), without processing them."""
        with self._lock:
            self._faults.append(_Fault("status", path_prefix, times, method.upper() if method else None,
                                       status=status, body=body.encode() if isinstance(body, str) else body,
                                       content_type=content_type,
                                       retry_after=None if retry_after is None else str(retry_after)))

    def hang_next(self, path_prefix: str, seconds: float, times: int = 1, *, method: str | None = None,
                  process: bool = False) -> None:
        """Say nothing for ``seconds`` on the next ``times`` requests under ``path_prefix``, then
        close the connection (``process=True``: then process the request and answer, as a slow
        server would, into a connection the client may have given up on)."""
        with self._lock:
            self._faults.append(_Fault("hang", path_prefix, times, method.upper() if method else None,
                                       seconds=seconds, process=process))

    def drop_next(self, path_prefix: str, times: int = 1, *, method: str | None = None,
                  process: bool = False) -> None:
        """Close the connection without an answer on the next ``times`` requests under
        ``path_prefix``; with ``process=True`` the request is processed first (the record is
        created, the answer is lost)."""
        with self._lock:
            self._faults.append(_Fault("drop", path_prefix, times, method.upper() if method else None,
                                       process=process))

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.times > 0 and path.startswith(f.prefix) and (f.method is None or f.method == method):
                    f.times -= 1
                    return f
        return None

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[Recorded]:
        """The recorded requests under ``path_prefix``."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)
                    and (method is None or r.method == method.upper())]

    # -- for subclasses ------------------------------------------------------------------------

    def handle(self, req: Request) -> Reply:
        """Answer one request (subclasses)."""
        return Reply.json(404, {"error": "not found"})

    @staticmethod
    def parse_json(body: bytes) -> Any:
        """The body as JSON; raises ValueError."""
        return json.loads(body.decode("utf-8"))


def _parse_auth(header: str | None) -> tuple[str, str, str] | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return ("basic", "", "")
        return ("basic", user, password)
    if scheme == "bearer":
        return ("bearer", "", value.strip())
    return (scheme, "", value)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    @property
    def sim(self) -> LoopbackServer:
        return self.server.sim  # type: ignore[attr-defined]

    @property
    def server_version(self) -> str:  # type: ignore[override]
        return self.sim.server_name

    def log_message(self, format: str, *args: Any) -> None:
        pass  # sim.requests is the log

    def handle(self) -> None:
        try:
            super().handle()
        except (_Abort, ConnectionError, TimeoutError, OSError):
            self.close_connection = True

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Abort

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        auth = _parse_auth(self.headers.get("Authorization"))
        rec = Recorded(self.command, parts.path, parts.query,
                       {k: v for k, v in self.headers.items() if k.lower() != "authorization"}, body,
                       auth[0] if auth else None, (auth[1] or None) if auth else None)
        sim = self.sim
        with sim._lock:
            sim.requests.append(rec)
        req = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True), self.headers, body, auth)
        fault = sim._take_fault(self.command, parts.path)
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            default = json.dumps({"error": {"message": f"injected fault {fault.status}"}}).encode()
            self._send(rec, Reply(fault.status, fault.body if fault.body is not None else default,
                                  fault.content_type, headers))
            return
        if fault is not None and fault.kind == "hang":
            sim._closing.wait(fault.seconds)
            if not fault.process:
                self._cut()
        if fault is not None and fault.kind == "drop" and not fault.process:
            self._cut()
        try:
            reply = sim.handle(req)
        except Exception as e:  # noqa: BLE001 - a bug in the sim answers 500, like a server would
            reply = Reply.json(500, {"error": {"message": f"simulator error: {type(e).__name__}: {e}"}})
        if fault is not None and fault.kind == "drop":
            self._cut()
        self._send(rec, reply)

    def _send(self, rec: Recorded, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()
        rec.status = reply.status


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _is_json(req: Request) -> bool:
    return (req.header("Content-Type") or "").split(";")[0].strip().lower() == "application/json"


# ---------------------------------------------------------------------------------------------
# ServiceNow


# The incident fields the simulator stores (ServiceNow drops fields a table does not have).
SERVICENOW_INCIDENT_FIELDS: dict[str, int] = {
    "short_description": 160, "description": 4000, "urgency": 40, "impact": 40, "category": 40,
    "subcategory": 40, "assignment_group": 32, "caller_id": 32, "contact_type": 40, "correlation_id": 100,
    "correlation_display": 100, "work_notes": 4000, "comments": 4000, "state": 40, "cmdb_ci": 32,
}
_SN_CHOICES = {"urgency": {"1", "2", "3"}, "impact": {"1", "2", "3"}}
# ServiceNow's default priority lookup: (urgency, impact) → priority 1 (critical) … 5 (planning).
_SN_PRIORITY = {("1", "1"): "1", ("1", "2"): "2", ("2", "1"): "2", ("1", "3"): "3", ("2", "2"): "3",
                ("3", "1"): "3", ("2", "3"): "4", ("3", "2"): "4", ("3", "3"): "5"}


def _sn_error(status: int, message: str, detail: str | None = None) -> Reply:
    return Reply.json(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


class ServiceNowSim(LoopbackServer):
    """A ServiceNow instance's Table API (see the module docstring).

    Stricter than ServiceNow: values must be strings, numbers or booleans (ServiceNow would
    store ``str()`` of anything), ``urgency``/``impact`` must be 1, 2 or 3 (ServiceNow would
    store an invalid choice), and an encoded query with an operator other than ``=``/``!=``
    is refused (ServiceNow ignores a condition it cannot read and returns *every* row).
    Like ServiceNow, unknown fields are dropped and over-long strings are cut to the field's
    length."""

    server_name = "ServiceNow"

    def __init__(self, *, tables: Iterable[str] = ("incident",), **kw: Any) -> None:
        super().__init__(**kw)
        self._users: dict[str, str] = {}
        self._tokens: set[str] = set()
        self._tables: dict[str, dict[str, dict[str, str]]] = {t: {} for t in tables}
        self._numbers = 10000

    def add_user(self, user: str, password: str) -> None:
        """A user for Basic auth."""
        with self._lock:
            self._users[user] = password

    def add_token(self, token: str) -> None:
        """An OAuth access token for Bearer auth."""
        with self._lock:
            self._tokens.add(token)

    def records(self, table: str = "incident") -> list[dict[str, str]]:
        """Copies of the stored records of ``table``, in creation order."""
        with self._lock:
            return [dict(r) for r in self._tables.get(table, {}).values()]

    def _who(self, req: Request) -> str | None:
        if req.auth is None:
            return None
        scheme, user, secret = req.auth
        with self._lock:
            if scheme == "basic" and user in self._users and secrets.compare_digest(self._users[user], secret):
                return user
            if scheme == "bearer" and secret in self._tokens:
                return "oauth.user"
        return None

    def handle(self, req: Request) -> Reply:
        m = re.fullmatch(r"/api/now/(?:v\d+/)?table/([A-Za-z0-9_]+)(?:/([0-9a-f]{32}))?/?", req.path)
        if m is None:
            return _sn_error(400, "Requested URI does not represent any resource", req.path)
        user = self._who(req)
        if user is None:
            return _sn_error(401, "User Not Authenticated", "Required to provide Auth information")
        table, sys_id = m.group(1), m.group(2)
        if table not in self._tables:
            return _sn_error(400, f"Invalid table {table}")
        if req.method == "POST" and sys_id is None:
            return self._create(req, table, user)
        if req.method == "GET" and sys_id is not None:
            with self._lock:
                row = self._tables[table].get(sys_id)
            if row is None:
                return _sn_error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
            return Reply.json(200, {"result": self._fields(row, req.param("sysparm_fields"))})
        if req.method == "GET":
            return self._list(req, table)
        return _sn_error(405, "Method not Supported", f"{req.method} is not supported on this resource")

    @staticmethod
    def _fields(row: dict[str, str], fields: str | None) -> dict[str, str]:
        if not fields:
            return dict(row)
        return {f: row.get(f, "") for f in (x.strip() for x in fields.split(",")) if f}

    def _create(self, req: Request, table: str, user: str) -> Reply:
        if not _is_json(req):
            return _sn_error(415, "Unsupported Media Type", "send Content-Type: application/json")
        try:
            data = self.parse_json(req.body)
        except (ValueError, UnicodeDecodeError):
            return _sn_error(400, "Exception while reading request", "The payload is not valid json.")
        if not isinstance(data, dict):
            return _sn_error(400, "Exception while reading request", "The payload must be a JSON object.")
        row: dict[str, str] = {}
        for k, v in data.items():
            if isinstance(v, dict | list):
                return _sn_error(400, "Invalid value", f"field {k} must be a string, number or boolean")
            if k not in SERVICENOW_INCIDENT_FIELDS:
                continue  # ServiceNow drops fields the table does not have
            text = "" if v is None else ("true" if v is True else "false" if v is False else str(v))
            if k in _SN_CHOICES and text not in _SN_CHOICES[k]:
                return _sn_error(400, "Invalid value", f"{k} must be one of 1, 2, 3, not {text!r}")
            row[k] = text[: SERVICENOW_INCIDENT_FIELDS[k]]
        with self._lock:
            self._numbers += 1
            sys_id = uuid.uuid4().hex
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            row.setdefault("urgency", "3")
            row.setdefault("impact", "3")
            row.update({"sys_id": sys_id, "number": f"INC{self._numbers:07d}", "state": row.get("state") or "1",
                        "priority": _SN_PRIORITY[(row["urgency"], row["impact"])], "sys_created_on": now,
                        "sys_created_by": user, "opened_at": now, "active": "true"})
            self._tables[table][sys_id] = row
        return Reply.json(201, {"result": dict(row)},
                          headers={"Location": f"{self.url}/api/now/table/{table}/{sys_id}"})

    def _list(self, req: Request, table: str) -> Reply:
        conds: list[tuple[str, str, str]] = []
        order: list[tuple[str, bool]] = []
        query = req.param("sysparm_query", "") or ""
        # ^ separates conditions; ^^ is a literal caret.
        for part in re.split(r"(?<!\^)\^(?!\^)", query) if query else []:
            part = part.replace("^^", "^")
            if part.startswith("ORDERBYDESC"):
                order.append((part[11:], True))
                continue
            if part.startswith("ORDERBY"):
                order.append((part[7:], False))
                continue
            m = re.fullmatch(r"([a-z0-9_.]+)(!=|=)(.*)", part, re.DOTALL)
            if m is None:
                return _sn_error(400, "Invalid query", f"unsupported condition {part!r} (the simulator reads f=v, f!=v)")
            conds.append((m.group(1), m.group(2), m.group(3)))
        with self._lock:
            rows = [dict(r) for r in self._tables[table].values()]
        rows = [r for r in rows if all((r.get(f, "") == v) == (op == "=") for f, op, v in conds)]
        for f, desc in reversed(order):
            rows.sort(key=lambda r: r.get(f, ""), reverse=desc)
        total = len(rows)
        try:
            offset = int(req.param("sysparm_offset", "0") or 0)
            limit = int(req.param("sysparm_limit", "10000") or 10000)
        except ValueError:
            return _sn_error(400, "Invalid value", "sysparm_limit and sysparm_offset must be integers")
        rows = rows[offset:offset + limit]
        fields = req.param("sysparm_fields")
        return Reply.json(200, {"result": [self._fields(r, fields) for r in rows]},
                          headers={"X-Total-Count": str(total)})


# ---------------------------------------------------------------------------------------------
# Atlassian Document Format


_ADF_MARKS = {"strong", "em", "code", "strike", "underline", "link", "subsup", "textColor"}
_ADF_INLINE = {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status"}
_ADF_BLOCKS: dict[str, set[str] | None] = {
    # block node → the node types its content may hold (None: inline nodes)
    "paragraph": None,
    "heading": None,
    "bulletList": {"listItem"},
    "orderedList": {"listItem"},
    "listItem": {"paragraph", "bulletList", "orderedList", "codeBlock"},
    "codeBlock": {"text"},
    "blockquote": {"paragraph", "bulletList", "orderedList", "codeBlock"},
    "panel": {"paragraph", "heading", "bulletList", "orderedList"},
    "rule": set(),
    "table": {"tableRow"},
    "tableRow": {"tableHeader", "tableCell"},
    "tableHeader": {"paragraph", "bulletList", "orderedList", "heading"},
    "tableCell": {"paragraph", "bulletList", "orderedList", "heading"},
}
_ADF_TOP = {"paragraph", "heading", "bulletList", "orderedList", "codeBlock", "blockquote", "panel", "rule", "table"}
_ADF_KEYS = {"type", "content", "attrs", "marks", "text", "version"}


def adf_errors(doc: Any) -> list[str]:
    """Why ``doc`` is not a valid Atlassian Document Format document (empty when it is), for
    the node types and marks of the published ADF schema: the root is ``{"type": "doc",
    "version": 1, "content": [...]}``, block nodes hold the children the schema allows, a text
    node has a non-empty ``text``, a heading ``attrs.level`` 1–6, a link mark ``attrs.href``,
    and a ``code`` mark combines with nothing but ``link``."""
    errors: list[str] = []
    if not isinstance(doc, dict) or doc.get("type") != "doc" or doc.get("version") != 1:
        return ["the root must be {\"type\": \"doc\", \"version\": 1, \"content\": [...]}"]
    if set(doc) - {"type", "version", "content"}:
        errors.append(f"doc: unexpected keys {sorted(set(doc) - {'type', 'version', 'content'})}")
    content = doc.get("content")
    if not isinstance(content, list):
        return errors + ["doc: content must be a list"]
    for i, node in enumerate(content):
        if not isinstance(node, dict) or node.get("type") not in _ADF_TOP:
            errors.append(f"doc.content[{i}]: {node.get('type') if isinstance(node, dict) else node!r} "
                          f"is not a top-level block node")
            continue
        _adf_node(node, f"doc.content[{i}]", errors)
    return errors


def _adf_node(node: Any, where: str, errors: list[str]) -> None:
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        errors.append(f"{where}: a node must be an object with a type")
        return
    kind = node["type"]
    extra = set(node) - _ADF_KEYS
    if extra:
        errors.append(f"{where} ({kind}): unexpected keys {sorted(extra)}")
    if kind == "text":
        text = node.get("text")
        if not isinstance(text, str) or not text:
            errors.append(f"{where}: a text node needs a non-empty text")
        marks = node.get("marks", [])
        if not isinstance(marks, list):
            errors.append(f"{where}: marks must be a list")
            return
        names = []
        for j, mark in enumerate(marks):
            if not isinstance(mark, dict) or mark.get("type") not in _ADF_MARKS:
                errors.append(f"{where}.marks[{j}]: unknown mark {mark!r}")
                continue
            names.append(mark["type"])
            if mark["type"] == "link":
                href = (mark.get("attrs") or {}).get("href")
                if not isinstance(href, str) or not href:
                    errors.append(f"{where}.marks[{j}]: a link mark needs attrs.href")
        if len(set(names)) != len(names):
            errors.append(f"{where}: a mark is repeated")
        if "code" in names and set(names) - {"code", "link"}:
            errors.append(f"{where}: the code mark combines only with link")
        return
    if kind in _ADF_INLINE:
        if kind == "hardBreak" and node.get("content"):
            errors.append(f"{where}: hardBreak has no content")
        return
    if kind not in _ADF_BLOCKS:
        errors.append(f"{where}: unknown node type {kind!r}")
        return
    if "text" in node or "marks" in node:
        errors.append(f"{where} ({kind}): block nodes have no text or marks")
    if kind == "heading":
        level = (node.get("attrs") or {}).get("level")
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 6:
            errors.append(f"{where}: a heading needs attrs.level 1-6")
    if kind == "panel" and (node.get("attrs") or {}).get("panelType") not in (
            "info", "note", "warning", "success", "error"):
        errors.append(f"{where}: a panel needs attrs.panelType")
    allowed = _ADF_BLOCKS[kind]
    children = node.get("content", [])
    if not isinstance(children, list):
        errors.append(f"{where}: content must be a list")
        return
    if kind in ("bulletList", "orderedList", "listItem", "blockquote", "panel", "table", "tableRow") and not children:
        errors.append(f"{where}: {kind} needs at least one child")
    if kind == "listItem" and children and isinstance(children[0], dict) and children[0].get("type") not in (
            "paragraph", "codeBlock"):
        errors.append(f"{where}: a listItem starts with a paragraph")
    for j, child in enumerate(children):
        ctype = child.get("type") if isinstance(child, dict) else None
        ok = ctype in _ADF_INLINE if allowed is None else ctype in allowed
        if kind == "codeBlock" and isinstance(child, dict) and child.get("marks"):
            errors.append(f"{where}.content[{j}]: text in a codeBlock has no marks")
        if not ok:
            errors.append(f"{where}.content[{j}]: {ctype!r} is not allowed in {kind}")
            continue
        _adf_node(child, f"{where}.content[{j}]", errors)


# ---------------------------------------------------------------------------------------------
# Jira Cloud and Jira Service Management


def _jira_error(status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None) -> Reply:
    return Reply.json(status, {"errorMessages": messages or [], "errors": errors or {}})


def _jsm_error(status: int, message: str, key: str = "sd.request.create.error") -> Reply:
    return Reply.json(status, {"errorMessage": message, "i18nErrorMessage": {"i18nKey": key, "parameters": []}})


@dataclass
class JiraIssue:
    """A stored issue: ``fields`` as the client sent them (plus created / status)."""

    id: str
    key: str
    fields: dict[str, Any]
    via: str = "issue"  # issue | servicedesk


@dataclass
class _ServiceDesk:
    id: str
    project: str
    request_types: dict[str, set[str]]  # request type id → fields its form shows


_JQL_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<op>!=|=|~|\(|\)|,)|(?P<word>[A-Za-z0-9_.\-]+))')


class JqlError(ValueError):
    """The JQL is outside the subset the simulator reads (Jira answers 400)."""


def _jql(jql: str) -> tuple[list[tuple[str, str, list[str]]], list[tuple[str, bool]]]:
    toks: list[tuple[str, str]] = []
    pos = 0
    jql = jql.strip()
    while pos < len(jql):
        m = _JQL_TOKEN.match(jql, pos)
        if m is None or m.end() == pos:
            raise JqlError(f"Error in the JQL Query: unexpected character at position {pos}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "str":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        toks.append((kind, text))
        pos = m.end()
    conds: list[tuple[str, str, list[str]]] = []
    order: list[tuple[str, bool]] = []
    i = 0

    def value() -> str:
        nonlocal i
        if i >= len(toks) or toks[i][0] not in ("str", "word"):
            raise JqlError("Error in the JQL Query: expecting a value")
        i += 1
        return toks[i - 1][1]

    while i < len(toks):
        kind, text = toks[i]
        if kind == "word" and text.upper() == "ORDER":
            if i + 1 >= len(toks) or toks[i + 1][1].upper() != "BY":
                raise JqlError("Error in the JQL Query: expecting BY after ORDER")
            i += 2
            while i < len(toks):
                name = value()
                desc = False
                if i < len(toks) and toks[i][1].upper() in ("ASC", "DESC"):
                    desc = toks[i][1].upper() == "DESC"
                    i += 1
                order.append((name.lower(), desc))
                if i < len(toks) and toks[i][1] == ",":
                    i += 1
            break
        if kind != "word":
            raise JqlError(f"Error in the JQL Query: expecting a field name, found {text!r}")
        name = text.lower()
        i += 1
        if i >= len(toks):
            raise JqlError("Error in the JQL Query: expecting an operator")
        op = toks[i][1].lower()
        i += 1
        if op in ("=", "!="):
            conds.append((name, op, [value()]))
        elif op == "in" or (op == "not" and i < len(toks) and toks[i][1].lower() == "in"):
            if op == "not":
                i += 1
                op = "not in"
            if i >= len(toks) or toks[i][1] != "(":
                raise JqlError("Error in the JQL Query: expecting ( after IN")
            i += 1
            values = [value()]
            while i < len(toks) and toks[i][1] == ",":
                i += 1
                values.append(value())
            if i >= len(toks) or toks[i][1] != ")":
                raise JqlError("Error in the JQL Query: expecting )")
            i += 1
            conds.append((name, op, values))
        else:
            raise JqlError(f"Error in the JQL Query: the operator {op!r} is not supported by the simulator")
        if i < len(toks) and toks[i][1].upper() == "AND":
            i += 1
        elif i < len(toks) and toks[i][1].upper() != "ORDER":
            raise JqlError(f"Error in the JQL Query: expecting AND or ORDER BY, found {toks[i][1]!r}")
    if not conds and not order:
        raise JqlError("Error in the JQL Query: the query is empty (unbounded searches are not supported)")
    return conds, order


class JiraSim(LoopbackServer):
    """A Jira Cloud site with Jira Service Management (see the module docstring).

    Issues are validated as Jira does for a create screen with summary, issue type, description,
    labels and priority: the project and issue type must exist, the summary is required, at
    most 255 characters and one line, labels have no spaces, a priority must exist by name, the
    description must be valid ADF (:func:`adf_errors`) and any other field is refused as "not on
    the appropriate screen". JSM requests are checked against their request type's fields."""

    server_name = "Jira"
    ISSUE_FIELDS: ClassVar[set[str]] = {"project", "summary", "issuetype", "description", "labels", "priority"}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._users: dict[str, str] = {}
        self._projects: dict[str, tuple[str, set[str]]] = {}  # key → (id, issue type names)
        self.priorities: tuple[str, ...] = ("Highest", "High", "Medium", "Low", "Lowest")
        self._desks: dict[str, _ServiceDesk] = {}
        self.issues: list[JiraIssue] = []
        self._next_id = 10000
        self._counters: dict[str, int] = {}

    def add_user(self, email: str, api_token: str) -> None:
        """An Atlassian account that authenticates with ``email:api_token``."""
        with self._lock:
            self._users[email] = api_token

    def add_project(self, key: str, issue_types: Iterable[str] = ("Task", "Bug", "Incident")) -> None:
        """A project with these issue types."""
        with self._lock:
            self._projects[key] = (str(10000 + len(self._projects)), set(issue_types))

    def add_service_desk(self, desk_id: str, project_key: str,
                         request_types: Mapping[str, Iterable[str]]) -> None:
        """A service desk of ``project_key``; ``request_types`` maps a request type id to the
        fields its form shows (e.g. ``{"25": ["summary", "description"]}``)."""
        with self._lock:
            if project_key not in self._projects:
                self.add_project(project_key, ("Service Request", "Incident"))
            self._desks[str(desk_id)] = _ServiceDesk(str(desk_id), project_key,
                                                     {str(k): set(v) for k, v in request_types.items()})

    def issue(self, key: str) -> JiraIssue | None:
        """A stored issue by key."""
        with self._lock:
            return next((i for i in self.issues if i.key == key), None)

    def _who(self, req: Request) -> str | None:
        if req.auth is None or req.auth[0] != "basic":
            return None
        _, user, token = req.auth
        with self._lock:
            known = self._users.get(user)
        return user if known is not None and secrets.compare_digest(known, token) else None

    def handle(self, req: Request) -> Reply:
        user = self._who(req)
        if user is None:
            return _jira_error(401, ["Client must be authenticated to access this resource."])
        path = req.path.rstrip("/")
        if path == "/rest/api/3/issue" and req.method == "POST":
            return self._create_issue(req)
        m = re.fullmatch(r"/rest/api/3/issue/([A-Z][A-Z0-9_]*-\d+|\d+)", path)
        if m and req.method == "GET":
            with self._lock:
                found = next((i for i in self.issues if m.group(1) in (i.key, i.id)), None)
            if found is None:
                return _jira_error(404, ["Issue does not exist or you do not have permission to see it."])
            return Reply.json(200, self._issue_json(found, None))
        if path == "/rest/api/3/search/jql" and req.method in ("GET", "POST"):
            return self._search(req)
        if path == "/rest/api/3/search":
            # Atlassian removed the old search endpoint (CHANGE-2046); clients must move to /search/jql.
            return _jira_error(410, ["The requested API has been removed. Please migrate to the /rest/api/3/search/jql API."])
        if path == "/rest/servicedeskapi/request" and req.method == "POST":
            return self._create_request(req, user)
        return _jira_error(404, [f"No resource at {req.method} {req.path}"])

    def _issue_json(self, issue: JiraIssue, fields: list[str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": issue.id, "key": issue.key, "self": f"{self.url}/rest/api/3/issue/{issue.id}"}
        if fields is None or fields == ["*all"]:
            out["fields"] = dict(issue.fields)
        else:
            out["fields"] = {f: issue.fields.get(f) for f in fields if f and f != "id"}
        return out

    def _store(self, project: str, fields: dict[str, Any], via: str) -> JiraIssue:
        with self._lock:
            self._next_id += 1
            n = self._counters.get(project, 0) + 1
            self._counters[project] = n
            fields = {**fields, "created": _now_iso(), "status": {"name": "Open"}}
            issue = JiraIssue(str(self._next_id), f"{project}-{n}", fields, via)
            self.issues.append(issue)
            return issue

    def _create_issue(self, req: Request) -> Reply:
        if not _is_json(req):
            return Reply.text(415, "Unsupported Media Type")
        try:
            data = self.parse_json(req.body)
        except (ValueError, UnicodeDecodeError):
            return _jira_error(400, ["Unexpected character in the request body: it is not JSON."])
        if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
            return _jira_error(400, ["The request body must be an object with fields."])
        fields: dict[str, Any] = data["fields"]
        errors: dict[str, str] = {}
        for name in fields:
            if name not in self.ISSUE_FIELDS:
                errors[name] = (f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown.")
        project = fields.get("project")
        pkey = project.get("key") if isinstance(project, dict) else None
        with self._lock:
            pinfo = self._projects.get(pkey) if isinstance(pkey, str) else None
        if pinfo is None:
            errors["project"] = "Specify a valid project ID or key"
        itype = fields.get("issuetype")
        if not isinstance(itype, dict) or not isinstance(itype.get("name"), str):
            errors["issuetype"] = "Specify an issue type"
        elif pinfo is not None and itype["name"] not in pinfo[1]:
            errors["issuetype"] = "Specify a valid issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        elif "\n" in summary or "\r" in summary:
            errors["summary"] = "The summary is invalid because it contains newline characters."
        if "description" in fields and fields["description"] is not None:
            if adf_errors(fields["description"]):
                errors["description"] = ("Operation value must be an Atlassian Document (see the Atlassian "
                                         "Document Format)")
            elif len(json.dumps(fields["description"])) > 32767:
                errors["description"] = "The entered text is too long. It exceeds the allowed limit of 32,767 characters."
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            errors["labels"] = "Field labels must be an array of strings."
        else:
            for label in labels:
                if not label or " " in label or len(label) > 255:
                    errors["labels"] = f"The label '{label}' contains spaces which is invalid." if " " in label \
                        else "A label must be 1 to 255 characters."
        if "priority" in fields:
            pr = fields["priority"]
            if not isinstance(pr, dict) or pr.get("name") not in self.priorities:
                errors["priority"] = "Specify the Priority (id or name) of an existing priority."
        if errors:
            return _jira_error(400, [], errors)
        issue = self._store(pkey, fields, "issue")
        return Reply.json(201, {"id": issue.id, "key": issue.key, "self": f"{self.url}/rest/api/3/issue/{issue.id}"})

    def _create_request(self, req: Request, user: str) -> Reply:
        if not _is_json(req):
            return Reply.text(415, "Unsupported Media Type")
        try:
            data = self.parse_json(req.body)
        except (ValueError, UnicodeDecodeError):
            return _jsm_error(400, "The request body is not JSON.")
        if not isinstance(data, dict):
            return _jsm_error(400, "The request body must be an object.")
        desk_id, type_id = data.get("serviceDeskId"), data.get("requestTypeId")
        if not isinstance(desk_id, str | int) or not isinstance(type_id, str | int):
            return _jsm_error(400, "serviceDeskId and requestTypeId are required.")
        with self._lock:
            desk = self._desks.get(str(desk_id))
        if desk is None:
            return _jsm_error(404, f"The service desk {desk_id} does not exist or you cannot see it.",
                              "sd.service.desk.not.found")
        allowed = desk.request_types.get(str(type_id))
        if allowed is None:
            return _jsm_error(404, f"The request type {type_id} does not exist in service desk {desk_id}.",
                              "sd.request.type.not.found")
        values = data.get("requestFieldValues")
        if not isinstance(values, dict):
            return _jsm_error(400, "requestFieldValues must be an object.")
        unknown = sorted(set(values) - allowed)
        if unknown:
            return _jsm_error(400, f"The field(s) {', '.join(unknown)} are not valid for this request type.",
                              "sd.request.create.error.field.invalid")
        summary = values.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            return _jsm_error(400, "Summary is required.", "sd.request.create.error.field.required")
        if len(summary) > 255 or "\n" in summary:
            return _jsm_error(400, "Summary must be one line of less than 255 characters.")
        if "description" in values and not isinstance(values["description"], str):
            return _jsm_error(400, "The description must be text.")
        if "labels" in values and (not isinstance(values["labels"], list)
                                   or any(not isinstance(x, str) or " " in x for x in values["labels"])):
            return _jsm_error(400, "Labels must be an array of strings without spaces.")
        extra = set(data) - {"serviceDeskId", "requestTypeId", "requestFieldValues", "raiseOnBehalfOf",
                             "requestParticipants", "channel", "isAdfRequest"}
        if extra:
            return _jsm_error(400, f"Unrecognized field(s) {', '.join(sorted(extra))}.")
        fields = {**values, "project": {"key": desk.project}, "issuetype": {"name": "Service Request"},
                  "reporter": data.get("raiseOnBehalfOf") or user}
        issue = self._store(desk.project, fields, "servicedesk")
        now = dt.datetime.now(dt.UTC)
        return Reply.json(201, {
            "_expands": ["participant", "status", "sla", "requestType", "serviceDesk", "attachment", "action",
                         "comment"],
            "issueId": issue.id, "issueKey": issue.key, "requestTypeId": str(type_id), "serviceDeskId": desk.id,
            "createdDate": {"iso8601": now.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                            "epochMillis": int(now.timestamp() * 1000)},
            "reporter": {"emailAddress": fields["reporter"]},
            "requestFieldValues": [{"fieldId": k, "label": k.capitalize(), "value": v} for k, v in values.items()],
            "currentStatus": {"status": "Waiting for support", "statusCategory": "NEW"},
            "_links": {"web": f"{self.url}/servicedesk/customer/portal/{desk.id}/{issue.key}",
                       "self": f"{self.url}/rest/servicedeskapi/request/{issue.id}"},
        })

    def _search(self, req: Request) -> Reply:
        if req.method == "POST":
            try:
                data = self.parse_json(req.body)
            except (ValueError, UnicodeDecodeError):
                return _jira_error(400, ["The request body is not JSON."])
            jql = data.get("jql") if isinstance(data, dict) else None
            fields = data.get("fields") if isinstance(data, dict) else None
            max_results = data.get("maxResults", 50) if isinstance(data, dict) else 50
        else:
            jql = req.param("jql")
            raw = req.param("fields")
            fields = raw.split(",") if raw else None
            max_results = req.param("maxResults", "50")
        if not isinstance(jql, str) or not jql.strip():
            return _jira_error(400, ["JQL query is required (unbounded searches are not supported)."])
        try:
            conds, order = _jql(jql)
            limit = max(0, min(int(max_results), 5000))
        except JqlError as e:
            return _jira_error(400, [str(e)])
        except (TypeError, ValueError):
            return _jira_error(400, ["maxResults must be a number."])
        with self._lock:
            issues = list(self.issues)
        hits = [i for i in issues if all(self._match(i, f, op, vals) for f, op, vals in conds)]
        for name, desc in reversed(order):
            hits.sort(key=lambda i: (i.fields.get(name) or "") if name != "key" else int(i.id), reverse=desc)
        if fields is None:
            fields = ["id"]
        return Reply.json(200, {"issues": [self._issue_json(i, list(fields)) for i in hits[:limit]],
                                "isLast": len(hits) <= limit})

    @staticmethod
    def _match(issue: JiraIssue, name: str, op: str, values: list[str]) -> bool:
        f = issue.fields
        if name == "labels":
            have = {str(x).lower() for x in f.get("labels") or []}
            hit = any(v.lower() in have for v in values)
        elif name == "project":
            hit = str((f.get("project") or {}).get("key", "")).lower() in {v.lower() for v in values}
        elif name in ("key", "issuekey"):
            hit = issue.key.lower() in {v.lower() for v in values}
        elif name in ("issuetype", "type"):
            hit = str((f.get("issuetype") or {}).get("name", "")).lower() in {v.lower() for v in values}
        else:
            raise JqlError(f"Error in the JQL Query: field '{name}' is not supported by the simulator")
        return hit if op in ("=", "in") else not hit


# ---------------------------------------------------------------------------------------------
# Slack


_SLACK_BLOCKS = {"header", "section", "divider", "context", "actions", "image", "rich_text"}


def slack_errors(payload: Any) -> list[str]:
    """Why Slack would refuse ``payload`` (empty when it would not): ``text`` or ``blocks``
    needed; at most 50 blocks; a header holds ``plain_text`` of ≤150 characters; a section's
    ``text`` ≤3,000 characters and at most 10 ``fields`` of ≤2,000; context elements ≤10; text
    objects are ``plain_text`` or ``mrkdwn`` with a non-empty ``text``."""
    errors: list[str] = []
    if not isinstance(payload, dict):
        return ["invalid_payload"]
    text, blocks = payload.get("text"), payload.get("blocks")
    if not text and not blocks:
        return ["no_text"]
    if text is not None and not isinstance(text, str):
        errors.append("invalid_payload: text must be a string")
    if blocks is None:
        return errors
    if not isinstance(blocks, list) or len(blocks) > 50:
        return errors + ["invalid_blocks: blocks must be a list of at most 50"]

    def text_obj(obj: Any, where: str, *, plain_only: bool = False, limit: int = 3000) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
            errors.append(f"invalid_blocks: {where} must be a text object")
            return
        if plain_only and obj["type"] != "plain_text":
            errors.append(f"invalid_blocks: {where} must be plain_text")
        value = obj.get("text")
        if not isinstance(value, str) or not value:
            errors.append(f"invalid_blocks: {where}.text must be a non-empty string")
        elif len(value) > limit:
            errors.append(f"invalid_blocks: {where}.text must be at most {limit} characters")
        if set(obj) - {"type", "text", "emoji", "verbatim"}:
            errors.append(f"invalid_blocks: {where} has unknown keys")

    for i, b in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(b, dict) or b.get("type") not in _SLACK_BLOCKS:
            errors.append(f"invalid_blocks: {where} has an unknown type")
            continue
        kind = b["type"]
        if kind == "header":
            text_obj(b.get("text"), f"{where}.text", plain_only=True, limit=150)
        elif kind == "section":
            if "text" not in b and "fields" not in b:
                errors.append(f"invalid_blocks: {where} needs text or fields")
            if "text" in b:
                text_obj(b["text"], f"{where}.text")
            if "fields" in b:
                fields = b["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    errors.append(f"invalid_blocks: {where}.fields must hold 1 to 10 text objects")
                else:
                    for j, f in enumerate(fields):
                        text_obj(f, f"{where}.fields[{j}]", limit=2000)
        elif kind == "context":
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 10:
                errors.append(f"invalid_blocks: {where}.elements must hold 1 to 10 elements")
            else:
                for j, e in enumerate(els):
                    text_obj(e, f"{where}.elements[{j}]")
    return errors


class SlackWebhookSim(LoopbackServer):
    """Slack incoming webhooks: :meth:`add_hook` gives a URL ``/services/T…/B…/<secret>``;
    a POST of JSON to it answers ``200 ok``, or ``400 invalid_payload`` / ``no_text`` /
    ``invalid_blocks``, ``404 no_service`` for an unknown URL, like Slack. Accepted messages are
    in :attr:`messages` as (hook URL path, payload)."""

    server_name = "Slack"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._hooks: set[str] = set()
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def add_hook(self) -> str:
        """A new incoming-webhook URL (its path is the secret)."""
        path = f"/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/{secrets.token_urlsafe(18)}"
        with self._lock:
            self._hooks.add(path)
        return self.url + path

    def handle(self, req: Request) -> Reply:
        with self._lock:
            known = req.path in self._hooks
        if not known:
            return Reply.text(404, "no_service", "text/html")
        if req.method != "POST":
            return Reply.text(405, "invalid_method", "text/html")
        if not _is_json(req):
            return Reply.text(400, "invalid_payload", "text/html")
        try:
            payload = self.parse_json(req.body)
        except (ValueError, UnicodeDecodeError):
            return Reply.text(400, "invalid_payload", "text/html")
        errors = slack_errors(payload)
        if errors:
            return Reply.text(400, errors[0].split(":")[0], "text/html")
        with self._lock:
            self.messages.append((req.path, payload))
        return Reply.text(200, "ok", "text/html")


# ---------------------------------------------------------------------------------------------
# Teams


_CARD_ELEMENTS = {"TextBlock", "FactSet", "RichTextBlock", "Container", "ColumnSet", "Image", "ActionSet"}
_CARD_ACTIONS = {"Action.OpenUrl", "Action.Submit", "Action.ShowCard", "Action.ToggleVisibility", "Action.Execute"}


def adaptive_card_errors(payload: Any) -> list[str]:
    """Why a Teams webhook would refuse ``payload`` (empty when it would not): a ``message``
    with at least one attachment of ``contentType`` ``application/vnd.microsoft.card.adaptive``
    whose ``content`` is an ``AdaptiveCard`` with a ``version`` and a ``body`` of known
    elements; a TextBlock needs ``text``, a FactSet ``facts`` of string ``title``/``value``, a
    RichTextBlock ``inlines`` of TextRuns with ``text``; an OpenUrl action a ``url``; at most 28 KB."""
    errors: list[str] = []
    if not isinstance(payload, dict) or payload.get("type") != "message":
        return ["the payload must be {\"type\": \"message\", \"attachments\": [...]}"]
    if len(json.dumps(payload).encode()) > 28 * 1024:
        return ["the message is larger than 28 KB"]
    atts = payload.get("attachments")
    if not isinstance(atts, list) or not atts:
        return ["attachments must be a non-empty list"]
    for i, att in enumerate(atts):
        if not isinstance(att, dict) or att.get("contentType") != "application/vnd.microsoft.card.adaptive":
            errors.append(f"attachments[{i}].contentType must be application/vnd.microsoft.card.adaptive")
            continue
        card = att.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            errors.append(f"attachments[{i}].content must be an AdaptiveCard")
            continue
        if not isinstance(card.get("version"), str) or not re.fullmatch(r"1\.[0-6]", card["version"]):
            errors.append(f"attachments[{i}].content.version must be 1.0 to 1.6")
        body = card.get("body", [])
        if not isinstance(body, list):
            errors.append(f"attachments[{i}].content.body must be a list")
            continue
        _card_elements(body, f"attachments[{i}].content.body", errors)
        for j, action in enumerate(card.get("actions", []) or []):
            if not isinstance(action, dict) or action.get("type") not in _CARD_ACTIONS:
                errors.append(f"attachments[{i}].content.actions[{j}] has an unknown type")
            elif action["type"] == "Action.OpenUrl" and not isinstance(action.get("url"), str):
                errors.append(f"attachments[{i}].content.actions[{j}] needs a url")
    return errors


def _card_elements(elements: list[Any], where: str, errors: list[str]) -> None:
    for j, el in enumerate(elements):
        w = f"{where}[{j}]"
        if not isinstance(el, dict) or el.get("type") not in _CARD_ELEMENTS:
            errors.append(f"{w} has an unknown element type")
            continue
        kind = el["type"]
        if kind == "TextBlock" and not isinstance(el.get("text"), str):
            errors.append(f"{w}: a TextBlock needs text")
        elif kind == "FactSet":
            facts = el.get("facts")
            if not isinstance(facts, list) or not all(
                    isinstance(f, dict) and isinstance(f.get("title"), str) and isinstance(f.get("value"), str)
                    for f in facts):
                errors.append(f"{w}: a FactSet needs facts of string title and value")
        elif kind == "RichTextBlock":
            inl = el.get("inlines")
            if not isinstance(inl, list) or not all(
                    isinstance(x, str) or (isinstance(x, dict) and x.get("type") == "TextRun"
                                           and isinstance(x.get("text"), str)) for x in inl):
                errors.append(f"{w}: a RichTextBlock needs inlines of TextRuns")
        elif kind == "Container":
            _card_elements(el.get("items") or [], f"{w}.items", errors)


class TeamsWebhookSim(LoopbackServer):
    """Teams incoming webhooks. ``flavour="workflow"`` (default): URLs like a Power Automate
    "When a Teams webhook request is received" trigger, secret in the ``sig`` parameter,
    ``202 Accepted``; ``"connector"``: the older Office 365 connector URL, ``200`` body ``1``.
    Refused payloads get ``400`` with the reason. Accepted ones are in :attr:`messages`."""

    server_name = "Teams"

    def __init__(self, *, flavour: str = "workflow", **kw: Any) -> None:
        super().__init__(**kw)
        if flavour not in ("workflow", "connector"):
            raise ValueError("flavour is workflow or connector")
        self.flavour = flavour
        self._hooks: dict[str, str | None] = {}  # path → sig (workflow) or None
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def add_hook(self) -> str:
        """A new webhook URL (its path and ``sig`` are the secret)."""
        if self.flavour == "workflow":
            path = f"/workflows/{secrets.token_hex(16)}/triggers/manual/paths/invoke"
            sig = secrets.token_urlsafe(32)
            with self._lock:
                self._hooks[path] = sig
            return f"{self.url}{path}?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}"
        path = (f"/webhookb2/{uuid.uuid4()}@{uuid.uuid4()}/IncomingWebhook/{secrets.token_hex(16)}/"
                f"{uuid.uuid4()}")
        with self._lock:
            self._hooks[path] = None
        return self.url + path

    def handle(self, req: Request) -> Reply:
        with self._lock:
            known = req.path in self._hooks
            sig = self._hooks.get(req.path)
        if not known or (sig is not None and not secrets.compare_digest(req.param("sig", "") or "", sig)):
            if self.flavour == "workflow":
                return Reply.json(401, {"error": {"code": "DirectApiAuthorizationRequired",
                                                  "message": "The request must be authenticated."}})
            return Reply.text(404, "Webhook not found")
        if req.method != "POST":
            return Reply.text(405, "Method not allowed")
        try:
            payload = self.parse_json(req.body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        errors = adaptive_card_errors(payload) if payload is not None else ["the body is not JSON"]
        if not _is_json(req):
            errors.insert(0, "Content-Type must be application/json")
        if errors:
            if self.flavour == "workflow":
                return Reply.json(400, {"error": {"code": "InvalidRequestContent", "message": errors[0]}})
            return Reply.text(400, f"Bad payload received by generic incoming webhook: {errors[0]}")
        with self._lock:
            self.messages.append((req.path, payload))
        if self.flavour == "workflow":
            return Reply(202, b"", "text/plain")
        return Reply.text(200, "1")


def sample_facts(**overrides: Any) -> Any:
    """A synthetic :class:`~leakwatch.incidents.facts.IncidentFacts` as the incidents layer
    builds it (counts, categories, masked previews only), for drills and target tests;
    ``overrides`` replace fields."""
    from leakwatch.incidents.facts import Destination, IncidentFacts

    t0 = dt.datetime(2026, 3, 11, 16, 5, tzinfo=dt.UTC)
    values: dict[str, Any] = {
        "incident_id": 7,
        "title": "Contact e-mails and UK NINOs sent to api.openai.com from ApexCallout",
        "status": "triaged",
        "severity": "high",
        "opened_at": t0 + dt.timedelta(minutes=20),
        "clock_events": {"detection": t0 + dt.timedelta(minutes=20), "awareness": t0 + dt.timedelta(minutes=45)},
        "first_seen": t0,
        "last_seen": t0 + dt.timedelta(minutes=14),
        "entities": ("EMAIL_ADDRESS", "UK_NINO"),
        "categories": ("contact", "national_id"),
        "objects": ("Contact",),
        "fields": ("Contact.Email",),
        "findings": 412,
        "records": 388,
        "data_subjects": 251,
        "destinations": (Destination("openai", "us", "US", True, 251, 388),),
        "patterns": ("P2_pii_to_ai",),
        "systems": ("salesforce",),
        "subject_jurisdictions": ("UK", "EU"),
        "masked_examples": ("j***@e******.com", "QQ*****6C", "m***@c******.co.uk"),
    }
    values.update(overrides)
    return IncidentFacts(**values)


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass (for tests that wait on
    a server thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


__all__ = [
    "JiraIssue", "JiraSim", "JqlError", "LoopbackServer", "Recorded", "Reply", "Request", "ServiceNowSim",
    "SlackWebhookSim", "TeamsWebhookSim", "adaptive_card_errors", "adf_errors", "sample_facts", "slack_errors",
    "wait_for",
]
