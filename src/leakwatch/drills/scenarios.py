"""Drill scenarios as data: ``playbooks/drills/*.yaml``, validated on load.

A scenario says which systems log (each a file in one real format with its background volume),
what leaks into them and when (``plants``: the lines that must be found), which records the
failure patterns key on (``activity``: AI calls, bulk downloads, report exports, CDN hits), and
what a responder should end up with (``expect``: incidents by pattern and vendor, regimes).
Times are *scenario minutes* from the drill's start. A complete file::

    id: ai-key-exposed-gateway-bypass       # lowercase letters, digits, '-'; unique
    title: An AI key in debug logs          # one line
    description: Free text.                 # optional
    minutes: 75                             # scenario length (5 … 1440)
    organisation: {nis2_entity: important}  # optional: [organisation] settings of the drill org
    settings:                               # optional: other leakwatch.toml sections
      egress: {approved_gateways: [ai-gw.acme-shop.example]}
    systems:
      - id: support-bot                     # unique; plants and activity name it
        format: app-jsonl                   # see FORMATS
        file: apps/support-bot.jsonl        # relative path under the drill's logs/
        per_minute: 8                       # background lines per scenario minute (0 … 600)
    plants:
      - entity: OPENAI_API_KEY              # leakwatch entity (see synth.PLANTABLE)
        system: support-bot
        where: config.api_key               # placement in the record (see FORMATS)
        count: 2
        at: [4, 52]                         # minutes: one per line, or {from: 4, to: 52}
        same_value: true                    # optional: every line carries one value
        incident: P1_key_exposed/openai     # expected incident PATTERN/VENDOR, a list of them, or null
        url: https://api.openai.com/v1/…    # optional: where the record went (prompts, fields, payloads)
    activity:
      - kind: ai_call                       # ai_call | bulk_download | report_export | cdn_ai
        system: billing-bot
        url: https://api.openai.com/v1/chat/completions
        count: 6
        at: {from: 10, to: 40}
        incident: P1_gateway_bypass/OpenAI
    expect:
      incidents: [{pattern: P1_key_exposed, vendor: openai}]
      regimes: [gdpr-33, uk-gdpr]

Formats, the placements of a planted value in each, and the activity each can log:

==================  =====================================================  ==============
format              where (``NAME`` is free: a JSON key, a query parameter)  activity
==================  =====================================================  ==============
app-jsonl           field:NAME, config.api_key, headers.authorization,       ai_call
                    headers.x-api-key, prompt.system, prompt.user
ai-gateway-jsonl    prompt.system, prompt.user, field:NAME                   ai_call
apigw               user, query:NAME                                         —
heroku              query:NAME                                               —
mule                payload:NAME, headers.authorization, prompt.user         ai_call
cdn                 query:NAME, client_ip                                    cdn_ai
elf-apexcallout     query:NAME                                               ai_call
elf-restapi         uri (a record ID)                                        —
elf-bulkapiresult   —                                                        bulk_download
elf-reportexport    — (no background rows: each would be an export)          report_export
==================  =====================================================  ==============

Activity parameters: ``ai_call`` url (required), actor; ``bulk_download`` object, rows
(required), actor; ``report_export`` report (required), actor; ``cdn_ai`` edge (required),
path. An ``actor`` is a label: the same label is the same Salesforce user in every file (P2
pairs a bulk read with the same user's AI calls).

Every mistake is reported with the file, the line and the field, all of a file's mistakes at
once, e.g. ``playbooks/drills/x.yaml:14: plants[0].where: 'prompt.sytem' is not a placement of
format app-jsonl (did you mean 'prompt.system'?)``.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakwatch.drills import synth
from leakwatch.errors import UsageError

#: Formats a system can log in: the placements a plant may use (``kind`` or ``kind:<name>``
#: where the name is free: a JSON key, a query parameter) and the activity kinds it can carry.
FORMATS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "app-jsonl": {"where": ("field:", "config.api_key", "headers.authorization", "headers.x-api-key",
                            "prompt.system", "prompt.user"), "activity": ("ai_call",)},
    "ai-gateway-jsonl": {"where": ("prompt.system", "prompt.user", "field:"), "activity": ("ai_call",)},
    "apigw": {"where": ("user", "query:"), "activity": ()},
    "heroku": {"where": ("query:",), "activity": ()},
    "mule": {"where": ("payload:", "headers.authorization", "prompt.user"), "activity": ("ai_call",)},
    "cdn": {"where": ("query:", "client_ip"), "activity": ("cdn_ai",)},
    "elf-apexcallout": {"where": ("query:",), "activity": ("ai_call",)},
    "elf-restapi": {"where": ("uri",), "activity": ()},
    "elf-bulkapiresult": {"where": (), "activity": ("bulk_download",)},
    "elf-reportexport": {"where": (), "activity": ("report_export",)},
}

#: Placements only some entities fit: a credential goes where a client puts its key; a record ID
#: in a REST URI; an address in the client-IP column.
_WHERE_ENTITIES: Mapping[str, tuple[str, ...]] = {
    "config.api_key": synth.CREDENTIALS, "headers.authorization": synth.CREDENTIALS,
    "headers.x-api-key": synth.CREDENTIALS, "uri": ("SALESFORCE_RECORD_ID",), "client_ip": ("IP_ADDRESS",),
}

ACTIVITY_KINDS = ("ai_call", "bulk_download", "report_export", "cdn_ai")
_ACTIVITY_FIELDS: Mapping[str, tuple[str, ...]] = {
    "ai_call": ("url", "actor"), "bulk_download": ("object", "rows", "actor"),
    "report_export": ("report", "actor"), "cdn_ai": ("path", "edge"),
}
_ACTIVITY_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "ai_call": ("url",), "bulk_download": ("object", "rows"), "report_export": ("report",), "cdn_ai": ("edge",),
}

#: Incident patterns an ``incident:`` key may name: the failure patterns and the two a finding
#: without an alert is grouped under (see :func:`leakwatch.incidents.book.group`).
INCIDENT_PATTERNS = ("P1_key_exposed", "P1_gateway_bypass", "P2_bulk_then_ai", "P3_prompt_pii", "P4_cdn_region",
                     "bulk_export", "api_volume", "pii_exposure", "credential_exposure")
#: Sections of leakwatch.toml a scenario's ``settings`` may set (notify and organisation are the
#: drill's own; formats, ner and llm do not change what a drill is about).
SETTINGS_SECTIONS = ("residency", "egress", "patterns", "cdn", "incidents")

_TOP = ("id", "title", "description", "minutes", "organisation", "settings", "systems", "plants", "activity",
        "expect")
_SYSTEM_KEYS = ("id", "format", "file", "per_minute")
_PLANT_KEYS = ("entity", "system", "where", "count", "at", "same_value", "incident", "url")
#: Placements whose record goes somewhere a plant's ``url`` can name.
_URL_WHERE = ("prompt.system", "prompt.user", "query:", "payload:", "field:")
_ACTIVITY_KEYS = ("kind", "system", "count", "at", "incident", "url", "actor", "object", "rows", "report",
                  "path", "edge")
_EXPECT_KEYS = ("incidents", "regimes")
_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}\Z")
_FILE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\Z")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
MAX_COUNT = 10_000


class ScenarioError(UsageError):
    """A scenario file is invalid; the message names the file, the line and the field of every
    mistake (one per line)."""

    def __init__(self, problems: Sequence[tuple[str, int | None, str | None, str]]):
        self.problems = list(problems)
        super().__init__("\n".join(_fmt(*p) for p in self.problems))


def _fmt(file: str, line: int | None, fld: str | None, message: str) -> str:
    loc = f"{file}:{line}" if line else file
    return f"{loc}: {fld}: {message}" if fld else f"{loc}: {message}"


class _Problem(Exception):
    def __init__(self, fld: str | None, message: str, line: int | None = None):
        super().__init__(message)
        self.field, self.message, self.line = fld, message, line


@dataclass(frozen=True)
class IncidentKey:
    """An expected incident: its failure pattern (or ``pii_exposure``/``credential_exposure``)
    and destination vendor (``none`` when the data went to no AI service)."""

    pattern: str
    vendor: str

    def __str__(self) -> str:
        return f"{self.pattern}/{self.vendor}"

    def matches(self, pattern: str | None, vendor: str | None) -> bool:
        """Whether an incident grouped under (pattern, vendor) is this one (vendor names compare
        case-insensitively: the registry says ``OpenAI``, a key's vendor ``openai``)."""
        return pattern == self.pattern and (vendor or "none").casefold() == self.vendor.casefold()


@dataclass(frozen=True)
class System:
    """One log source of the scenario."""

    id: str
    format: str
    file: str
    per_minute: float
    line: int | None = None


@dataclass(frozen=True)
class Plant:
    """``count`` lines of ``system`` carrying a synthetic ``entity`` at ``where``."""

    entity: str
    system: str
    where: str
    minutes: tuple[float, ...]
    same_value: bool
    incidents: tuple[IncidentKey, ...]
    line: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class Activity:
    """``count`` records of ``kind`` in ``system``, with the kind's parameters."""

    kind: str
    system: str
    minutes: tuple[float, ...]
    params: Mapping[str, Any]
    incidents: tuple[IncidentKey, ...]
    line: int | None = None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file."""

    id: str
    title: str
    description: str
    minutes: int
    organisation: Mapping[str, Any]
    settings: Mapping[str, Mapping[str, Any]]
    systems: tuple[System, ...]
    plants: tuple[Plant, ...]
    activity: tuple[Activity, ...]
    expect_incidents: tuple[IncidentKey, ...]
    expect_regimes: tuple[str, ...]
    path: Path = field(default=Path("."), compare=False)

    def system(self, sid: str) -> System:
        """The system with id ``sid``."""
        return next(s for s in self.systems if s.id == sid)


# --- checks -----------------------------------------------------------------------------------


def _type_name(v: Any) -> str:
    return {str: "string", bool: "boolean", int: "integer", float: "number", list: "list"}.get(
        type(v), "mapping" if isinstance(v, dict) else "null" if v is None else type(v).__name__)


def _unknown(key: Any, valid: Sequence[str], what: str = "field") -> str:
    hint = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.6)
    msg = f"unknown {what} {key!r}"
    return msg + (f" (did you mean {hint[0]!r}?)" if hint else f" (valid: {', '.join(valid)})")


def _line_of(m: Any, key: str, default: int | None = None) -> int | None:
    kl = getattr(m, "key_lines", None)
    return kl.get(key, default) if kl else default


def _mapping(fld: str, v: Any, valid: Sequence[str], required: Sequence[str] = ()) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise _Problem(fld, f"expected a mapping, got {_type_name(v)}")
    for k in v:
        if k not in valid:
            raise _Problem(f"{fld}.{k}" if fld else str(k), _unknown(k, valid), _line_of(v, k))
    for k, ln in getattr(v, "duplicates", []):
        raise _Problem(f"{fld}.{k}" if fld else str(k), "given twice", ln)
    for k in required:
        if k not in v:
            raise _Problem(fld or None, f"missing field {k!r}", getattr(v, "line", None))
    return v


def _str(fld: str, v: Any, rx: re.Pattern[str] | None = None, what: str = "") -> str:
    if isinstance(v, bool):
        raise _Problem(fld, f"expected a string, got boolean {v!r} (quote it: YAML reads yes/no/on/off as booleans)")
    if not isinstance(v, str) or not v.strip():
        raise _Problem(fld, f"expected a non-empty string, got {_type_name(v)}")
    if rx is not None and not rx.match(v):
        raise _Problem(fld, f"{v!r} is not {what}")
    return v.strip()


def _num(fld: str, v: Any, lo: float, hi: float, *, integer: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise _Problem(fld, f"expected {'an integer' if integer else 'a number'}, got {_type_name(v)} {v!r}")
    if not lo <= v <= hi:
        raise _Problem(fld, f"{v!r} is out of range ({lo:g} … {hi:g})")
    return v


def _minutes(fld: str, v: Any, count: int, length: int) -> tuple[float, ...]:
    """``at``: one number (every line at that minute), a list of ``count`` numbers, or
    ``{from, to}`` (spread evenly, first and last line at the ends)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        out = [float(v)] * count
    elif isinstance(v, list):
        if len(v) != count:
            raise _Problem(fld, f"lists {len(v)} minute(s) for count {count}: give one per line, or {{from, to}}")
        out = [float(_num(f"{fld}[{i}]", x, 0, length)) for i, x in enumerate(v)]
    elif isinstance(v, dict):
        m = _mapping(fld, v, ("from", "to"), ("from", "to"))
        a = _num(f"{fld}.from", m["from"], 0, length)
        b = _num(f"{fld}.to", m["to"], 0, length)
        if b < a:
            raise _Problem(f"{fld}.to", f"{b!r} is before from ({a!r})", _line_of(m, "to"))
        out = [a + (b - a) * i / (count - 1) if count > 1 else a for i in range(count)]
    else:
        raise _Problem(fld, f"expected minutes: a number, a list or {{from, to}}, got {_type_name(v)}")
    for i, x in enumerate(out):
        if not 0 <= x < length:
            raise _Problem(fld, f"minute {x:g} (line {i + 1}) is outside the scenario (0 … {length}, exclusive)")
    return tuple(out)


def _incidents(fld: str, v: Any, expected: Sequence[IncidentKey] | None) -> tuple[IncidentKey, ...]:
    """``incident``: one PATTERN/VENDOR, a list of them (a line can cause several: a key sent
    straight to the vendor is both an exposed key and a gateway bypass), or null."""
    if v is None:
        return ()
    if isinstance(v, list):
        if not v:
            raise _Problem(fld, "an empty list: give PATTERN/VENDOR keys or null")
        out = tuple(_incident(f"{fld}[{i}]", x, expected) for i, x in enumerate(v))
        if len(set(out)) != len(out):
            raise _Problem(fld, "an incident is listed twice")
        return out
    return (_incident(fld, v, expected),)


def _incident(fld: str, v: Any, expected: Sequence[IncidentKey] | None) -> IncidentKey:
    s = _str(fld, v)
    pattern, sep, vendor = s.partition("/")
    if not sep or not vendor.strip():
        raise _Problem(fld, f"{s!r}: write PATTERN/VENDOR, e.g. P3_prompt_pii/OpenAI (vendor 'none' when the data "
                            "went to no AI service), or null")
    if pattern not in INCIDENT_PATTERNS:
        raise _Problem(fld, _unknown(pattern, INCIDENT_PATTERNS, "incident pattern"))
    key = IncidentKey(pattern, vendor.strip())
    if expected is not None and not any(k.pattern == key.pattern and k.vendor.casefold() == key.vendor.casefold()
                                        for k in expected):
        raise _Problem(fld, f"{s!r} is not one of expect.incidents ({', '.join(map(str, expected)) or 'none'})")
    return key


def _where_ok(fmt: str, where: str) -> bool:
    for w in FORMATS[fmt]["where"]:
        if w.endswith(":"):
            if where.startswith(w) and _NAME_RE.match(where[len(w):]):
                return True
        elif where == w:
            return True
    return False


# --- loading ----------------------------------------------------------------------------------


def default_drills_dir() -> Path:
    """The shipped scenarios: ``playbooks/drills/`` at the top of the repository."""
    # src/leakwatch/drills/scenarios.py -> <repo>/playbooks/drills
    return Path(__file__).resolve().parents[3] / "playbooks" / "drills"


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate one scenario file; :class:`ScenarioError` names every mistake."""
    from leakwatch.detect.egress import DataFileProblem, read_yaml_mapping

    p = Path(path)
    src = str(p)
    try:
        doc = read_yaml_mapping(p)
    except DataFileProblem as e:
        raise ScenarioError([(src, e.line, e.field, e.message)]) from None
    if doc is None:
        raise ScenarioError([(src, None, None, "the file is empty")])
    problems: list[tuple[str, int | None, str | None, str]] = []

    def check(fld: str, fn, *args, line: int | None = None, default=None):
        try:
            return fn(*args)
        except _Problem as e:
            problems.append((src, e.line or line, e.field or fld, e.message))
            return default

    def top(name: str, fn, default=None, required=True):
        if name not in doc:
            if required:
                problems.append((src, doc.line, None, f"missing field {name!r}"))
            return default
        return check(name, fn, name, doc[name], line=_line_of(doc, name), default=default)

    for k in doc:
        if k not in _TOP:
            problems.append((src, _line_of(doc, k), str(k), _unknown(k, _TOP)))
    sid = top("id", lambda f, v: _str(f, v, _ID_RE, "an id (lowercase letters, digits and '-')"), "?")
    title = top("title", _str, "")
    description = top("description", _str, "", required=False)
    length = int(top("minutes", lambda f, v: _num(f, v, 5, 1440, integer=True), 60))
    organisation = top("organisation", lambda f, v: _settings_table(f, v, "organisation"), {}, required=False)
    settings = top("settings", _settings, {}, required=False)
    expect_raw = top("expect", lambda f, v: _mapping(f, v, _EXPECT_KEYS, ("incidents",)), None)
    expected: list[IncidentKey] = []
    regimes: tuple[str, ...] = ()
    if expect_raw is not None:
        inc = expect_raw.get("incidents")
        line = _line_of(expect_raw, "incidents")
        if not isinstance(inc, list) or not inc:
            problems.append((src, line, "expect.incidents", "expected a non-empty list of {pattern, vendor}"))
        else:
            for i, item in enumerate(inc):
                fld = f"expect.incidents[{i}]"
                m = check(fld, _mapping, fld, item, ("pattern", "vendor"), ("pattern", "vendor"), line=line)
                if m is None:
                    continue
                key = check(fld, _incident, fld, f"{m.get('pattern')}/{m.get('vendor')}", None,
                            line=getattr(m, "line", line))
                if key is not None:
                    if key in expected:
                        problems.append((src, getattr(m, "line", line), fld, f"{key} is listed twice"))
                    expected.append(key)
        if "regimes" in expect_raw:
            regimes = check("expect.regimes", _regime_ids, "expect.regimes", expect_raw["regimes"],
                            line=_line_of(expect_raw, "regimes"), default=())
    systems: list[System] = []
    raw_systems = doc.get("systems")
    if "systems" not in doc:
        problems.append((src, doc.line, None, "missing field 'systems'"))
    elif not isinstance(raw_systems, list) or not raw_systems:
        problems.append((src, _line_of(doc, "systems"), "systems", "expected a non-empty list of systems"))
    else:
        for i, item in enumerate(raw_systems):
            fld = f"systems[{i}]"
            s = check(fld, _system, fld, item, line=_line_of(doc, "systems"))
            if s is None:
                continue
            if any(x.id == s.id for x in systems):
                problems.append((src, s.line, f"{fld}.id", f"system {s.id!r} is defined twice"))
            elif any(x.file == s.file for x in systems):
                problems.append((src, s.line, f"{fld}.file", f"file {s.file!r} is used by another system"))
            else:
                systems.append(s)
    by_id = {s.id: s for s in systems}
    plants: list[Plant] = []
    for i, item in enumerate(_list(doc, "plants", problems, src)):
        p_ = check(f"plants[{i}]", _plant, f"plants[{i}]", item, by_id, length, expected,
                   line=_line_of(doc, "plants"))
        if p_ is not None:
            plants.append(p_)
    activity: list[Activity] = []
    for i, item in enumerate(_list(doc, "activity", problems, src, required=False)):
        a = check(f"activity[{i}]", _activity, f"activity[{i}]", item, by_id, length, expected,
                  line=_line_of(doc, "activity"))
        if a is not None:
            activity.append(a)
    if not problems:
        covered = {(k.pattern, k.vendor.casefold()) for x in (*plants, *activity) for k in x.incidents}
        for k in expected:
            if (k.pattern, k.vendor.casefold()) not in covered:
                problems.append((src, _line_of(expect_raw, "incidents"), "expect.incidents",
                                 f"{k}: no plant or activity names it as its incident, so the drill cannot time it"))
        problems.extend(_check_settings(src, organisation, settings, doc))
    if problems:
        raise ScenarioError(problems)
    return Scenario(id=sid, title=title, description=description or "", minutes=length, organisation=organisation,
                    settings=settings, systems=tuple(systems), plants=tuple(plants), activity=tuple(activity),
                    expect_incidents=tuple(expected), expect_regimes=tuple(regimes), path=p)


def _list(doc, name: str, problems: list, src: str, *, required: bool = True) -> list:
    if name not in doc:
        if required:
            problems.append((src, doc.line, None, f"missing field {name!r}"))
        return []
    v = doc[name]
    if not isinstance(v, list) or (required and not v):
        problems.append((src, _line_of(doc, name), name, f"expected a{' non-empty' if required else ''} list"))
        return []
    return v


def _system(fld: str, v: Any) -> System:
    m = _mapping(fld, v, _SYSTEM_KEYS, _SYSTEM_KEYS)
    line = getattr(m, "line", None)

    def at(key: str, fn, *args):
        try:
            return fn(f"{fld}.{key}", m[key], *args)
        except _Problem as e:
            raise _Problem(e.field, e.message, e.line or _line_of(m, key, line)) from None

    sid = at("id", _str, _ID_RE, "an id (lowercase letters, digits and '-')")
    fmt = at("format", _str)
    if fmt not in FORMATS:
        raise _Problem(f"{fld}.format", _unknown(fmt, list(FORMATS), "format"), _line_of(m, "format", line))
    file = at("file", _str, _FILE_RE, "a relative path (letters, digits, '_', '.', '-', '/')")
    if fmt.startswith("elf-") and not file.endswith(".csv"):
        raise _Problem(f"{fld}.file", f"{file!r}: an EventLogFile export is a .csv file", _line_of(m, "file", line))
    per_minute = at("per_minute", _num, 0, 600)
    return System(sid, fmt, file, float(per_minute), line)


def _common(fld: str, m: Mapping[str, Any], systems: Mapping[str, System], length: int,
            expected: Sequence[IncidentKey]) -> tuple[System, tuple[float, ...], tuple[IncidentKey, ...]]:
    line = getattr(m, "line", None)

    def at(key: str, fn, *args):
        try:
            return fn(f"{fld}.{key}", m[key], *args)
        except _Problem as e:
            raise _Problem(e.field, e.message, e.line or _line_of(m, key, line)) from None

    sid = at("system", _str)
    if sid not in systems:
        raise _Problem(f"{fld}.system", _unknown(sid, list(systems), "system"), _line_of(m, "system", line))
    count = int(at("count", lambda f, v: _num(f, v, 1, MAX_COUNT, integer=True))) if "count" in m else 1
    mins = at("at", _minutes, count, length)
    incidents = at("incident", _incidents, expected) if "incident" in m else ()
    return systems[sid], mins, incidents


def _plant(fld: str, v: Any, systems: Mapping[str, System], length: int, expected: Sequence[IncidentKey]) -> Plant:
    m = _mapping(fld, v, _PLANT_KEYS, ("entity", "system", "where", "at"))
    line = getattr(m, "line", None)
    entity = _str(f"{fld}.entity", m["entity"])
    if entity not in synth.PLANTABLE:
        raise _Problem(f"{fld}.entity", _unknown(entity, synth.PLANTABLE, "entity (the drill can plant)"),
                       _line_of(m, "entity", line))
    system, mins, incident = _common(fld, m, systems, length, expected)
    where = _str(f"{fld}.where", m["where"])
    wline = _line_of(m, "where", line)
    if not _where_ok(system.format, where):
        valid = [w + "<name>" if w.endswith(":") else w for w in FORMATS[system.format]["where"]]
        raise _Problem(f"{fld}.where", f"{where!r} is not a placement of format {system.format} "
                       + (f"(valid: {', '.join(valid)})" if valid else "(it carries no planted values)"), wline)
    fits = _WHERE_ENTITIES.get(where)
    if fits is not None and entity not in fits:
        raise _Problem(f"{fld}.where", f"{where!r} holds {', '.join(fits)}, not {entity}", wline)
    if fits is None and entity in synth.CREDENTIALS and not where.startswith(("field:", "payload:", "query:")):
        raise _Problem(f"{fld}.where", f"a credential goes into a header, a config dump, a field or a query "
                       f"parameter, not {where!r}", wline)
    same = m.get("same_value", False)
    if not isinstance(same, bool):
        raise _Problem(f"{fld}.same_value", f"expected true or false, got {_type_name(same)}",
                       _line_of(m, "same_value", line))
    url = None
    if "url" in m:
        uline = _line_of(m, "url", line)
        url = _str(f"{fld}.url", m["url"])
        if not re.match(r"https://[a-z0-9.-]+\.[a-z]{2,}(?:/[\x21-\x7e]*)?\Z", url) or "?" in url:
            raise _Problem(f"{fld}.url", f"{url!r} is not an https:// URL without spaces or query", uline)
        if not where.startswith(_URL_WHERE) or system.format in ("heroku", "cdn", "apigw"):
            raise _Problem(f"{fld}.url", f"a {system.format} record at {where!r} goes to no URL of its own", uline)
    return Plant(entity, system.id, where, mins, same, incident, line, url)


def _activity(fld: str, v: Any, systems: Mapping[str, System], length: int,
              expected: Sequence[IncidentKey]) -> Activity:
    m = _mapping(fld, v, _ACTIVITY_KEYS, ("kind", "system", "at"))
    line = getattr(m, "line", None)
    kind = _str(f"{fld}.kind", m["kind"])
    if kind not in ACTIVITY_KINDS:
        raise _Problem(f"{fld}.kind", _unknown(kind, ACTIVITY_KINDS, "activity kind"), _line_of(m, "kind", line))
    system, mins, incident = _common(fld, m, systems, length, expected)
    if kind not in FORMATS[system.format]["activity"]:
        can = [s.id for s in systems.values() if kind in FORMATS[s.format]["activity"]]
        raise _Problem(f"{fld}.system", f"system {system.id!r} ({system.format}) cannot log {kind} records"
                       + (f" (systems that can: {', '.join(can)})" if can else ""), _line_of(m, "system", line))
    params: dict[str, Any] = {}
    for k in ("url", "actor", "object", "rows", "report", "path", "edge"):
        if k not in m:
            continue
        kl = _line_of(m, k, line)
        if k not in _ACTIVITY_FIELDS[kind]:
            raise _Problem(f"{fld}.{k}", f"{kind} records take {', '.join(_ACTIVITY_FIELDS[kind])}, not {k!r}", kl)
        if k == "rows":
            params[k] = int(_num(f"{fld}.rows", m[k], 1, 10**9, integer=True))
            continue
        s = _str(f"{fld}.{k}", m[k])
        if k == "url" and not re.match(r"https://[a-z0-9.-]+\.[a-z]{2,}(?:[/?][\x21-\x7e]*)?\Z", s):
            raise _Problem(f"{fld}.url", f"{s!r} is not an https:// URL without spaces", kl)
        if k == "path" and not re.match(r"/[\x21-\x7e]*\Z", s):
            raise _Problem(f"{fld}.path", f"{s!r} is not a request path starting with '/'", kl)
        if k == "edge" and not re.match(r"[A-Z]{3}[0-9A-Z-]{0,12}\Z", s):
            raise _Problem(f"{fld}.edge", f"{s!r} is not an edge location such as IAD89-C1", kl)
        if k in ("actor", "object") and not _NAME_RE.match(s):
            raise _Problem(f"{fld}.{k}", f"{s!r}: letters, digits, '_', '.', '-' only", kl)
        params[k] = s
    for k in _ACTIVITY_REQUIRED[kind]:
        if k not in params:
            raise _Problem(fld, f"missing field {k!r} ({kind} records need it)", line)
    return Activity(kind, system.id, mins, params, incident, line)


def _regime_ids(fld: str, v: Any) -> tuple[str, ...]:
    from leakwatch.incidents.regimes import load_regimes

    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Problem(fld, f"expected a list of regime ids, got {_type_name(v)}")
    known = [r.id for r in load_regimes().regimes]
    for x in v:
        if x not in known:
            raise _Problem(fld, _unknown(x, known, "regime"))
    if len(set(v)) != len(v):
        raise _Problem(fld, "a regime is listed twice")
    return tuple(v)


def _settings_table(fld: str, v: Any, section: str) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise _Problem(fld, f"expected a mapping of [{section}] settings, got {_type_name(v)}")
    return v


def _settings(fld: str, v: Any) -> Mapping[str, Mapping[str, Any]]:
    m = _mapping(fld, v, SETTINGS_SECTIONS)
    for k, body in m.items():
        if not isinstance(body, dict):
            raise _Problem(f"{fld}.{k}", f"expected a mapping of [{k}] settings, got {_type_name(body)}",
                           _line_of(m, k))
    return m


def _check_settings(src: str, organisation: Mapping[str, Any], settings: Mapping[str, Mapping[str, Any]],
                    doc) -> list[tuple[str, int | None, str | None, str]]:
    """Run the settings through leakwatch's own config loader (from a temporary TOML file), so a
    scenario cannot carry a setting a real leakwatch.toml would refuse."""
    import tempfile

    import tomli_w

    from leakwatch.config import ConfigError, load_config

    out = []
    raw_settings = doc.get("settings")
    for section, body in [("organisation", organisation), *settings.items()]:
        line = _line_of(doc, "organisation") if section == "organisation" else _line_of(raw_settings, section)
        fld = "organisation" if section == "organisation" else f"settings.{section}"
        with tempfile.TemporaryDirectory(prefix="leakwatch-scenario-") as tmp:
            f = Path(tmp) / "check.toml"
            try:
                f.write_text(tomli_w.dumps({section: _plain(body)}), encoding="utf-8")
            except (TypeError, ValueError) as e:
                out.append((src, line, fld, f"not a setting value: {e}"))
                continue
            try:
                load_config(f, env={})
            except ConfigError as e:
                # "<tmp file>:LINE: section.key: message" -> "section.key: message"
                msg = re.sub(r"^\S*check\.toml(?::\d+)?: ", "", str(e))
                out.append((src, line, fld, msg))
    return out


def _plain(v: Any) -> Any:
    """YAML's line-tracking mappings as plain dicts (for the TOML writer)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def list_scenarios(directory: str | Path | None = None) -> list[Path]:
    """The scenario files in ``directory`` (default: the shipped ones), by name."""
    d = Path(directory) if directory is not None else default_drills_dir()
    if not d.is_dir():
        if directory is not None:  # a mistyped --dir must not read as "no scenarios" (exit 0)
            raise UsageError(f"--dir {directory}: " + ("not a folder" if d.exists() else "no such folder"))
        return []
    return sorted(f for f in d.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())


def find_scenario(name: str, directory: str | Path | None = None) -> Scenario:
    """A scenario by id (a shipped one, or one in ``directory``) or by path to its file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return load_scenario(p)
    files = list_scenarios(directory)
    for f in files:
        if f.stem == name:
            return load_scenario(f)
    ids = [f.stem for f in files]
    # 'drill list' shows each scenario's own id, which a copied file may not be named after.
    for f in files:
        try:
            sc = load_scenario(f)
        except (UsageError, OSError, ValueError):
            continue
        if sc.id == name:
            return sc
        ids.append(sc.id)
    ids = list(dict.fromkeys(ids))
    raise UsageError(_unknown(name, ids, "scenario") + "; 'leakwatch drill list' shows them, or give a .yaml path")
