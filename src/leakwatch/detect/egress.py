"""Where an outbound call goes: the AI-egress registry and residency of each destination.

The registry is data (``rules/ai_endpoints.yaml``, described at the top of that file): for each AI
service, its host patterns, region, jurisdiction and contract facts. :func:`load_registry`
validates it and raises one :class:`RegistryError` listing every mistake with file, line, entry
and field; a registry is all-or-nothing, since a skipped entry would silently turn calls to that
service into unclassified traffic.

Three uses:

- :meth:`Registry.classify` turns a URL or host seen in a log into a :class:`Destination`
  (``None`` when it is no known AI endpoint); :meth:`Destination.violates` says whether it is
  outside the allowed jurisdictions.
- :meth:`Registry.marker_patterns` gives RE2 patterns that find the registry's hosts in raw log
  bytes, so the scan's ``RE2::Set`` also marks every record that mentions an AI endpoint.
- :meth:`Registry.edge_violates` does the same residency check for CDN edge locations.
"""
from __future__ import annotations

import ipaddress
import os
import re
import re._parser as _sre  # the parser behind `re`: its tree shows anchors
import threading
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leakwatch._core import PatternError, check_pattern
from leakwatch.detect.rules import _LineLoader, _Mapping, _type_name, _unknown_key, alias_bomb, duplicate_keys
from leakwatch.errors import RuleLoadError, format_problem
from leakwatch.rxcheck import BACKTRACK_MESSAGE, nested_unbounded

UNKNOWN = "unknown"

# EEA = the EU plus Norway, Iceland and Liechtenstein (EEA Agreement, Annex XI brings in GDPR).
JURISDICTION_GROUPS: Mapping[str, frozenset[str]] = {"EEA": frozenset({"EU", "EEA", "NO", "IS", "LI"})}

ENTRY_FIELDS = (
    "id", "vendor", "hosts", "region", "region_table", "jurisdiction", "sovereign", "certifications",
    "dpa", "description",
)
_TOP_LEVEL = ("description", "endpoints", "region_tables")
CDN_EDGE_TABLE = "cdn_edge"

_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
_JURISDICTION_RE = re.compile(r"[A-Z][A-Z0-9_]{1,15}\Z")
_REGION_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
# A host pattern in glob form: labels of [a-z0-9_-], `*` labels, one `<region>` inside a label.
_GLOB_LABEL_RE = re.compile(r"\*|[a-z0-9_-]*(?:<region>)?[a-z0-9_-]*\Z")
# Hosts as they appear after extraction: letters, digits, '-', '_' (seen in internal names).
_HOST_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\Z")
# Where the authority of a URL ends.
_AUTHORITY_END = re.compile(r"[/?#\\\s\"'<>,;|]")

# A host in raw log bytes must not be part of a longer name: the byte before it is not a host
# character (or it follows `%2F`, a URL-encoded slash), the byte after it is not one either, and
# a dot after it must not start another label (api.openai.com.evil.net). RE2 has no lookaround,
# so the boundaries consume one byte; the Set only needs to know that a record matched.
_MARK_BEFORE = r"(?:^|[^a-z0-9_.-]|%2f)"
_MARK_AFTER = r"(?:$|[^a-z0-9_.-]|\.(?:$|[^a-z0-9_-]))"
# `*` and `<region>` in marker patterns. Unbounded: a `{1,63}` counter is 63 DFA states in the
# combined Set that every log byte goes through, `+` is one.
_MARK_LABEL = r"[a-z0-9_-]+"

# classify() caches by host; logs name few distinct hosts, but bound it for adversarial input.
_CACHE_MAX = 65_536


class RegistryError(RuleLoadError):
    """The AI-endpoint registry is invalid. ``problems`` holds every mistake found, each as
    ``(file, line, entry, field, message)``; the message lists them all."""

    def __init__(self, problems: Sequence[tuple[str, int | None, str | None, str | None, str]]):
        self.problems = list(problems)
        self.file, self.line, self.entry, self.field, self.message = self.problems[0]
        super().__init__("\n".join(_format_problem(*p) for p in self.problems))


def _format_problem(file: str, line: int | None, entry: str | None, fld: str | None, message: str) -> str:
    return format_problem(file, line, "entry", entry, fld, message)


@dataclass(frozen=True)
class Destination:
    """Where a call goes, as the registry describes it.

    ``region`` is ``None`` when neither the entry nor the host names one; ``jurisdiction`` is
    ``"unknown"`` when it cannot be told. ``entry`` is the registry entry's id.
    """

    host: str
    vendor: str
    region: str | None
    jurisdiction: str
    sovereign: bool
    certifications: tuple[str, ...]
    dpa: bool
    entry: str = ""

    def violates(self, allowed_jurisdictions: Iterable[str]) -> bool:
        """Whether a call here breaks data residency under ``allowed_jurisdictions``.

        A sovereign destination never does: the organisation has declared it under its own
        control. Otherwise the jurisdiction must be allowed; ``"unknown"`` never is (data sent
        where nobody can say whose law applies is what residency rules forbid). ``"EEA"`` in the
        allowed list also allows EU, NO, IS and LI. Comparison ignores case.
        """
        if self.sovereign:
            return False
        return not jurisdiction_allowed(self.jurisdiction, allowed_jurisdictions)


def jurisdiction_allowed(jurisdiction: str, allowed: Iterable[str]) -> bool:
    """Whether ``jurisdiction`` is one of ``allowed`` (or inside an allowed group such as EEA);
    ``"unknown"`` is never allowed."""
    j = jurisdiction.upper()
    if j == UNKNOWN.upper():
        return False
    for a in allowed:
        a = a.upper()
        if a == j or j in JURISDICTION_GROUPS.get(a, ()):
            return True
    return False


@dataclass(frozen=True)
class Endpoint:
    """One validated registry entry. ``line`` is the 1-based line of its ``- id:`` item."""

    id: str
    vendor: str
    hosts: tuple[str, ...]
    region: str | None
    region_table: str | None
    jurisdiction: str | None
    sovereign: bool
    certifications: tuple[str, ...]
    dpa: bool
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class _Pattern:
    endpoint: Endpoint
    source: str  # the pattern as written
    regex: re.Pattern[str]  # full-host match; may have a `region` group
    marker: str  # RE2 body (without boundaries) for raw bytes


# --- host extraction ---------------------------------------------------------------------------


def extract_host(text: str | bytes | None) -> str | None:
    """The host a URL, ``host:port``, ``user@host`` or bare host names: lowercased, without port,
    user info or trailing dot, internationalized names in their ASCII (``xn--``) form.

    Accepts what logs hold: surrounding whitespace and quotes (ApexCallout's ``\"\"\"https://…\"\"\"``),
    URL-encoded and JSON-escaped URLs (``https%3A%2F%2Fapi.openai.com``, ``https:\\/\\/api…``),
    a URL inside text (the first ``scheme://``), IPv6 literals in brackets. Returns ``None`` when
    there is no plausible host.
    """
    if text is None:
        return None
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="replace")
    s = text.strip().strip("\"'`").strip()
    if not s:
        return None
    if "://" not in s:
        if ":\\/\\/" in s:  # JSON-escaped: https:\/\/host\/path
            s = s.replace("\\/", "/")
        elif "%3a%2f%2f" in s.lower():
            s = urllib.parse.unquote(s)
    i = s.find("://")
    if i >= 0:
        rest = s[i + 3 :]
    elif s.startswith("//"):
        rest = s[2:]
    elif any(c.isspace() for c in s):
        return None  # free text without a URL
    else:
        rest = s
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        close = authority.find("]")
        try:
            return str(ipaddress.IPv6Address(authority[1:close])) if close > 1 else None
        except ValueError:
            return None
    if authority.count(":") > 1:
        return None  # a bare IPv6 address or garbage, never an endpoint name
    host, colon, port = authority.partition(":")
    host = host.rstrip(".")
    if not host or (colon and not port.isdigit()):
        return None  # "https:" of a broken URL, "mailto:…": not host[:port]
    if not host.isascii():
        try:
            # Python's IDNA 2003 codec: nameprep lowercases and maps full-width dots.
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.lower()
    if len(host) > 253 or not _HOST_RE.match(host):
        return None
    return host


# --- the registry ------------------------------------------------------------------------------


class Registry:
    """The loaded AI-endpoint registry. Build with :func:`load_registry`.

    Safe to share between threads: the caches (by host and by input string) only ever gain
    entries, and each is cleared when it grows past 65,536.
    """

    def __init__(self, endpoints: Sequence[Endpoint], region_tables: Mapping[str, Mapping[str, str]],
                 source: str = ""):
        """Use :func:`load_registry`; ``endpoints`` must already be validated."""
        self.endpoints: tuple[Endpoint, ...] = tuple(endpoints)
        self.region_tables: Mapping[str, Mapping[str, str]] = {
            name: {k.lower(): v for k, v in table.items()} for name, table in region_tables.items()
        }
        self.source = source
        self._exact: dict[str, Endpoint] = {}
        self._patterns: list[_Pattern] = []
        for ep in self.endpoints:
            for h in ep.hosts:
                if isinstance(h, str) and _is_exact(h):
                    self._exact.setdefault(h, ep)
                else:
                    self._patterns.append(_compile_host(ep, h))
        self._cache: dict[str, Destination | None] = {}  # by host
        self._by_input: dict[str, Destination | None] = {}  # by the string given to classify
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Registry({len(self.endpoints)} endpoints from {self.source or '<memory>'})"

    def classify(self, host_or_url: str | bytes | None) -> Destination | None:
        """The destination of a URL, ``host:port`` or bare host, or ``None`` when it is not an
        endpoint in the registry (or not a host at all)."""
        # The same URL recurs across a log: one dict lookup (~0.1 µs) instead of parsing it
        # again (~1 µs). Non-str inputs are decoded by extract_host and not cached by value.
        if isinstance(host_or_url, str):
            try:
                return self._by_input[host_or_url]
            except KeyError:
                pass
        host = extract_host(host_or_url)
        if host is None:
            dest = None
        else:
            try:
                dest = self._cache[host]
            except KeyError:
                dest = self._classify_host(host)
                self._remember(self._cache, host, dest)
        if isinstance(host_or_url, str):
            self._remember(self._by_input, host_or_url, dest)
        return dest

    def _remember(self, cache: dict, key: str, dest: Destination | None) -> None:
        with self._lock:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = dest

    def _classify_host(self, host: str) -> Destination | None:
        ep = self._exact.get(host)
        region: str | None = None
        if ep is None:
            for p in self._patterns:
                m = p.regex.fullmatch(host)
                if m is not None:
                    ep = p.endpoint
                    region = m.groupdict().get("region")
                    break
            else:
                return None
        region = region or ep.region
        if ep.jurisdiction is not None:
            jurisdiction = ep.jurisdiction
        elif ep.region_table is not None and region is not None:
            jurisdiction = self.region_tables.get(ep.region_table, {}).get(region, UNKNOWN)
        else:
            jurisdiction = UNKNOWN
        return Destination(
            host=host,
            vendor=ep.vendor,
            region=region,
            jurisdiction=jurisdiction,
            sovereign=ep.sovereign,
            certifications=ep.certifications,
            dpa=ep.dpa,
            entry=ep.id,
        )

    def marker_patterns(self) -> list[str]:
        """RE2 patterns (one per entry) that match the entry's hosts in raw log bytes.

        Case-insensitive; no lookaround or backreferences; the host must stand alone (``api.
        openai.com`` matches in ``https://api.openai.com/v1``, ``"host":"api.openai.com"`` and
        ``https%3A%2F%2Fapi.openai.com``, not in ``api.openai.com.evil.net`` or
        ``xapi.openai.com``). A match marks a record; :meth:`classify` on the host extracted from
        it decides. The boundary bytes are part of the match, so use them as markers, not spans.
        """
        out = []
        for ep in self.endpoints:
            bodies = [_marker_body(h) for h in ep.hosts]
            alt = bodies[0] if len(bodies) == 1 else "(?:" + "|".join(bodies) + ")"
            out.append(f"(?i:{_MARK_BEFORE}{alt}{_MARK_AFTER})")
        return out

    def edge_jurisdiction(self, edge_location: str) -> str:
        """The jurisdiction of a CDN edge location (``FRA56-P5``, ``fra``, ``cache-fra-x-FRA``)
        from the ``cdn_edge`` table, by its three-letter airport code; ``"unknown"`` otherwise."""
        table = self.region_tables.get(CDN_EDGE_TABLE, {})
        code = edge_code(edge_location)
        return table.get(code.lower(), UNKNOWN) if code else UNKNOWN

    def edge_violates(self, edge_location: str, allowed_regions: Iterable[str],
                      allowed_jurisdictions: Iterable[str]) -> bool:
        """Whether serving from ``edge_location`` breaks residency.

        With ``allowed_regions`` (``cdn.allowed_regions`` of the config) non-empty, the edge must
        start with one of them (case-insensitive: ``FRA`` allows ``FRA56-P5``). With it empty,
        the edge's jurisdiction (:meth:`edge_jurisdiction`) must be in ``allowed_jurisdictions``;
        an unknown edge is a violation.
        """
        allowed_regions = [r for r in allowed_regions if r.strip()]
        if allowed_regions:
            return not edge_named(edge_location, allowed_regions)
        return not jurisdiction_allowed(self.edge_jurisdiction(edge_location), allowed_jurisdictions)


_EDGE_CODE_RE = re.compile(r"[A-Za-z]{3}")


def edge_named(edge_location: str, names: Iterable[str]) -> bool:
    """Whether a CDN edge is one of ``names`` (``cdn.allowed_regions``): it starts with one
    (case-insensitive: ``FRA`` names ``FRA56-P5``) or its airport code is one (Fastly's
    ``cache-fra-eddf8230062-FRA`` is ``FRA``)."""
    edge = edge_location.strip().upper()
    code = (edge_code(edge_location) or "").upper()
    return any(edge.startswith(n) or code == n for n in (n.strip().upper() for n in names) if n)


def edge_code(edge_location: str) -> str | None:
    """The airport-style code of a CDN edge (``FRA56-P5`` → ``FRA``, Fastly's
    ``cache-fra-eddf8230062-FRA`` → ``FRA``), or None."""
    s = edge_location.strip()
    # Fastly's X-Served-By: cache-fra-eddf8230062-FRA → the POP is the last part.
    if s.lower().startswith("cache-"):
        s = s.rsplit("-", 1)[-1]
    m = _EDGE_CODE_RE.match(s)
    return m.group() if m else None


def _is_exact(host: str) -> bool:
    return "*" not in host and "<" not in host


def _glob_to_regex(pattern: str, *, label: str, region: str) -> str:
    out = []
    for i, lab in enumerate(pattern.split(".")):
        if i:
            out.append(r"\.")
        if lab == "*":
            out.append(label)
            continue
        pre, sep, post = lab.partition("<region>")
        out.append(re.escape(pre))
        if sep:
            out.append(region)
            out.append(re.escape(post))
    return "".join(out)


def _compile_host(ep: Endpoint, host: Any) -> _Pattern:
    if isinstance(host, str):
        py = _glob_to_regex(host, label=r"[a-z0-9_-]+", region=r"(?P<region>[a-z0-9_-]+)")
        return _Pattern(ep, host, re.compile(py), _marker_body(host))
    rx = host["regex"]
    return _Pattern(ep, rx, re.compile(rx, re.IGNORECASE), _marker_body(host))


def _marker_body(host: Any) -> str:
    if isinstance(host, str):
        if _is_exact(host):
            return re.escape(host)
        return _glob_to_regex(host, label=_MARK_LABEL, region=_MARK_LABEL)
    # A regex host: its named group is harmless to RE2 and to Set membership.
    return "(?:" + host["regex"] + ")"


# --- loading -----------------------------------------------------------------------------------


def default_registry_path() -> Path:
    """The shipped registry, ``rules/ai_endpoints.yaml`` at the top of the repository."""
    # src/leakwatch/detect/egress.py -> <repo>/rules/ai_endpoints.yaml (as rules.default_rules_dir)
    return Path(__file__).resolve().parents[3] / "rules" / "ai_endpoints.yaml"


class DataFileProblem(Exception):
    """One mistake in a data file, before the loader adds the file name and entry."""

    def __init__(self, fld: str | None, message: str, line: int | None = None):
        super().__init__(message)
        self.field = fld
        self.message = message
        self.line = line


def read_yaml_mapping(path: Path) -> _Mapping | None:
    """Read a YAML data file with the rule loader's line-tracking loader.

    Returns the top-level mapping (``None`` for an empty file); raises :class:`DataFileProblem`
    (``field``, ``message``, ``line``) when the file cannot be read, is not YAML or is not a
    mapping. Each data-file loader turns that into its own error class.
    """
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataFileProblem(None, f"cannot read: {e}") from None
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        col = f", column {mark.column + 1}" if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise DataFileProblem(None, f"YAML syntax error (line {line}{col}): {what}", line) from None
    except yaml.YAMLError as e:
        raise DataFileProblem(None, f"YAML error: {e}") from None
    if doc is None:
        return None
    bomb = alias_bomb(doc)
    if bomb:
        raise DataFileProblem(None, bomb)
    if not isinstance(doc, _Mapping):
        raise DataFileProblem(None, f"expected a mapping at the top of {src}, got {_type_name(doc)}", 1)
    return doc


def _str(fld: str, v: Any, *, empty_ok: bool = False) -> str:
    if isinstance(v, bool):
        raise DataFileProblem(fld, f"expected a string, got boolean {v!r} (quote the value: YAML reads "
                            f"on/off/yes/no as booleans, and NO, Norway's code, as false)")
    if not isinstance(v, str):
        raise DataFileProblem(fld, f"expected a string, got {_type_name(v)} {v!r}")
    if not v.strip() and not empty_ok:
        raise DataFileProblem(fld, "must not be empty")
    return v


def _description(v: Any) -> str:
    return "" if v is None else _str("description", v, empty_ok=True).strip()


def _bool(fld: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise DataFileProblem(fld, f"expected true or false, got {_type_name(v)} {v!r}")
    return v


def _jurisdiction(fld: str, v: Any) -> str:
    v = _str(fld, v).strip()
    if v.lower() == UNKNOWN:
        return UNKNOWN
    if not _JURISDICTION_RE.match(v):
        raise DataFileProblem(fld, f"{v!r} is not a jurisdiction code: write an upper-case code such as EU, US, "
                            f"UK, CH, or 'unknown'")
    return v


def _check_glob(fld: str, host: str) -> str:
    h = host.strip().lower()  # host names are case-insensitive
    if not h or h.startswith(".") or h.endswith(".") or ".." in h:
        raise DataFileProblem(fld, f"{host!r} is not a host name")
    if "://" in h or "/" in h or ":" in h:
        raise DataFileProblem(fld, f"{host!r}: give the host only, without scheme, port or path")
    labels = h.split(".")
    if len(labels) < 2:
        raise DataFileProblem(fld, f"{host!r}: a host pattern needs at least two labels")
    for lab in labels:
        if not lab or not _GLOB_LABEL_RE.match(lab):
            raise DataFileProblem(fld, f"{host!r}: label {lab!r} may hold a-z, 0-9, '-', '_', be '*', or "
                                f"contain '<region>' once")
    if h.count("<region>") > 1:
        raise DataFileProblem(fld, f"{host!r}: '<region>' may appear once")
    if all(lab == "*" or lab.startswith("<") for lab in labels[-2:]):
        raise DataFileProblem(fld, f"{host!r}: the last two labels must be fixed (a pattern must name a domain)")
    return h


def _check_host_regex(fld: str, rx: Any) -> str:
    rx = _str(fld, rx)
    if not rx.isascii():
        raise DataFileProblem(fld, "the regex must be ASCII (hosts are in their xn-- form)")
    try:
        check_pattern(rx)
    except PatternError as e:
        raise DataFileProblem(fld, f"RE2 rejects it: {e.message}") from None
    try:
        compiled = re.compile(rx)
        tree = _sre.parse(rx)
    except re.error as e:
        raise DataFileProblem(fld, f"Python's re cannot compile it: {e}") from None
    if nested_unbounded(tree):
        # Host regexes run on Python's re, over hosts taken from the logs being scanned.
        raise DataFileProblem(fld, BACKTRACK_MESSAGE)
    if set(compiled.groupindex) - {"region"}:
        raise DataFileProblem(fld, f"only one named group, 'region', is allowed; found {sorted(compiled.groupindex)}")
    if _has_anchor(tree):
        raise DataFileProblem(fld, "no anchors (^, $, \\A, \\z, \\b): the regex always matches the whole host")
    if compiled.fullmatch(""):
        raise DataFileProblem(fld, "matches the empty host")
    return rx


def _has_anchor(items) -> bool:
    for op, av in items:
        if op is _sre.AT:
            return True
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and _has_anchor(av[2]):
            return True
        if op is _sre.SUBPATTERN and _has_anchor(av[3]):
            return True
        if op is _sre.BRANCH and any(_has_anchor(b) for b in av[1]):
            return True
    return False


def _hosts(raw: Any, kl: Mapping[Any, int]) -> tuple[Any, ...]:
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise DataFileProblem("hosts", f"expected a non-empty list of host patterns, got {raw!r}")
    out: list[Any] = []
    for i, h in enumerate(raw):
        fld = f"hosts[{i}]"
        if isinstance(h, dict):
            hl = getattr(h, "line", None)
            for k in h:
                if k != "regex":
                    raise DataFileProblem(fld, _unknown_key(k, ["regex"]), hl)
            if "regex" not in h:
                raise DataFileProblem(fld, "a regex host is written {regex: '...'}", hl)
            try:
                out.append({"regex": _check_host_regex(fld + ".regex", h["regex"])})
            except DataFileProblem as e:
                e.line = e.line or hl
                raise
        else:
            out.append(_check_glob(fld, _str(fld, h)))
    return tuple(out)


def _build_endpoint(raw: _Mapping, tables: Mapping[str, Mapping[str, str]]) -> Endpoint:
    kl = raw.key_lines
    for path, _key, line in duplicate_keys(raw):
        raise DataFileProblem(path, "given twice in this entry (YAML would keep only the last)", line)
    for k in raw:
        if k not in ENTRY_FIELDS:
            raise DataFileProblem(str(k), _unknown_key(k, ENTRY_FIELDS), kl.get(k))
    for req in ("id", "vendor", "hosts"):
        if req not in raw:
            raise DataFileProblem(req, "missing (required)")

    def at(name: str, fn, *args):
        try:
            return fn(*args)
        except DataFileProblem as e:
            if e.line is None:
                e.line = kl.get(name)
            raise

    def id_check(v: Any) -> str:
        v = _str("id", v)
        if not _ID_RE.match(v):
            raise DataFileProblem("id", f"{v!r} must match ^[a-z0-9][a-z0-9_.-]*$")
        return v

    def region_check(v: Any) -> str:
        v = _str("region", v).strip().lower()
        if not _REGION_RE.match(v):
            raise DataFileProblem("region", f"{v!r} must match ^[a-z0-9][a-z0-9_-]*$")
        return v

    def table_check(v: Any) -> str:
        v = _str("region_table", v)
        if v not in tables:
            valid = list(tables) or ["(no region_tables defined)"]
            raise DataFileProblem("region_table", _unknown_key(v, valid).replace("unknown field", "unknown table"))
        return v

    def certs_check(v: Any) -> tuple[str, ...]:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
            raise DataFileProblem("certifications", f"expected a list of names, got {v!r}")
        return tuple(x.strip() for x in v)

    eid = at("id", id_check, raw["id"])
    hosts = at("hosts", _hosts, raw["hosts"], kl)
    region = at("region", region_check, raw["region"]) if raw.get("region") is not None else None
    table = at("region_table", table_check, raw["region_table"]) if raw.get("region_table") is not None else None
    jur = at("jurisdiction", _jurisdiction, "jurisdiction", raw["jurisdiction"]) \
        if raw.get("jurisdiction") is not None else None
    has_region_group = any(
        (isinstance(h, str) and "<region>" in h) or (isinstance(h, dict) and "(?P<region>" in h["regex"])
        for h in hosts
    )
    if jur is None and table is None:
        raise DataFileProblem("jurisdiction", "give 'jurisdiction' (or 'unknown'), or 'region_table' to look it up",
                       raw.line)
    if region is not None and has_region_group:
        raise DataFileProblem("region", "the hosts take the region from <region>; a fixed region would be ignored",
                       kl.get("region"))
    if table is not None and jur is None and region is None and not has_region_group:
        raise DataFileProblem("region_table", "nothing to look up: give 'region' or a host with <region>",
                       kl.get("region_table"))
    if table is not None and jur is None and region is not None and region not in tables[table]:
        raise DataFileProblem("region", f"{region!r} is not in region_tables.{table}", kl.get("region"))
    return Endpoint(
        id=eid,
        vendor=at("vendor", _str, "vendor", raw["vendor"]).strip(),
        hosts=hosts,
        region=region,
        region_table=table,
        jurisdiction=jur,
        sovereign=at("sovereign", _bool, "sovereign", raw.get("sovereign", False)),
        certifications=at("certifications", certs_check, raw.get("certifications", [])),
        dpa=at("dpa", _bool, "dpa", raw.get("dpa", False)),
        description=at("description", _description, raw.get("description")),
        line=raw.line,
    )


def _tables(doc: _Mapping, problems: list, src: str) -> dict[str, dict[str, str]]:
    raw = doc.get("region_tables")
    if raw is None:
        return {}
    if not isinstance(raw, _Mapping):
        problems.append((src, doc.key_lines.get("region_tables"), None, "region_tables",
                         "expected a mapping of table name → {region: jurisdiction}"))
        return {}
    for dup, line in raw.duplicates:
        problems.append((src, line, None, f"region_tables.{dup}", "table given twice (YAML would keep only the last)"))
    out: dict[str, dict[str, str]] = {}
    for name, table in raw.items():
        where = f"region_tables.{name}"
        if not isinstance(table, _Mapping):
            problems.append((src, raw.key_lines.get(name), None, where, "expected a mapping of region → jurisdiction"))
            continue
        for dup, line in table.duplicates:
            problems.append((src, line, None, f"{where}.{dup}", "given twice in this table"))
        t: dict[str, str] = {}
        for region, jur in table.items():
            try:
                key = str(region).strip().lower()
                if isinstance(region, bool) or not key:
                    raise DataFileProblem(None, f"region {region!r} is not a region code (quote it)")
                t[key] = _jurisdiction(f"{where}.{region}", jur)
            except DataFileProblem as e:
                problems.append((src, table.key_lines.get(region), None, e.field or f"{where}.{region}", e.message))
        out[str(name)] = t
    return out


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Load and validate the registry at ``path`` (default: the shipped one, see
    :func:`default_registry_path`).

    Raises :class:`RegistryError` naming file, line, entry and field of every mistake: unknown
    or missing fields, wrong types, bad host patterns or regexes, a region table that does not
    exist, a fixed region missing from its table, duplicate ids or hosts.
    """
    p = Path(path) if path is not None else default_registry_path()
    src = str(p)
    problems: list[tuple[str, int | None, str | None, str | None, str]] = []
    try:
        doc = read_yaml_mapping(p)
    except DataFileProblem as e:
        raise RegistryError([(src, e.line, None, None, e.message)]) from None
    if doc is None:
        raise RegistryError([(src, None, None, "endpoints", "the file is empty: a registry holds 'endpoints:', a list")])
    for k in doc:
        if k not in _TOP_LEVEL:
            problems.append((src, doc.key_lines.get(k), None, str(k), _unknown_key(k, _TOP_LEVEL)))
    for key, line in doc.duplicates:
        # Two 'endpoints:' lists: YAML keeps the last, and every entry of the first would turn
        # into unclassified traffic.
        problems.append((src, line, None, str(key), f"{key!r} given twice in this file: only the last one "
                                                    "would be read; merge them into one"))
    tables = _tables(doc, problems, src)
    items = doc.get("endpoints")
    endpoints: list[Endpoint] = []
    if not isinstance(items, list):
        problems.append((src, doc.key_lines.get("endpoints", doc.line), None, "endpoints",
                         "missing or not a list: a registry holds 'endpoints:', a list of entries"))
        items = []
    seen_ids: dict[str, int] = {}
    seen_hosts: dict[str, str] = {}
    for i, raw in enumerate(items):
        if not isinstance(raw, _Mapping):
            problems.append((src, doc.key_lines.get("endpoints"), None, None, f"entry #{i + 1} is not a mapping: {raw!r}"))
            continue
        eid = raw.get("id") if isinstance(raw.get("id"), str) else f"#{i + 1}"
        try:
            ep = _build_endpoint(raw, tables)
        except DataFileProblem as e:
            problems.append((src, e.line or raw.line, eid, e.field, e.message))
            continue
        if ep.id in seen_ids:
            problems.append((src, raw.line, ep.id, "id", f"duplicate id (first at line {seen_ids[ep.id]})"))
            continue
        seen_ids[ep.id] = raw.line
        dup = next((h for h in ep.hosts if isinstance(h, str) and h in seen_hosts), None)
        if dup is not None:
            problems.append((src, raw.key_lines.get("hosts"), ep.id, "hosts",
                             f"{dup!r} is already listed by entry {seen_hosts[dup]!r}"))
            continue
        for h in ep.hosts:
            if isinstance(h, str):
                seen_hosts[h] = ep.id
        endpoints.append(ep)
    if problems:
        raise RegistryError(problems)
    return Registry(endpoints, tables, src)
