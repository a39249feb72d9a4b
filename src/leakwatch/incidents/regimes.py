"""Notification regimes as data: which ones apply to an incident, why, and when each deadline falls.

``playbooks/regimes.yaml`` (described at its top) lists each regime's recipient, clock-start
event, deadlines, required notice content and applicability condition. :func:`load_regimes`
validates the whole file and raises one :class:`~leakwatch.errors.PlaybookError` naming file,
line, regime and field of every mistake; a regimes file is all-or-nothing, since a skipped regime
would silently drop a legal deadline.

Conditions are three-valued: ``True``, ``False`` or ``None`` when a fact they need is unknown
(no responder assessment yet, no count of data subjects in a state). An undecided regime is
reported as undecided, with the reason, never silently as "does not apply".

Nothing here reads the system clock: :func:`deadlines` takes ``now``.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from leakwatch.config import (
    NIS2_ENTITY_KINDS,
    ConfigError,
    OrganisationConfig,
    check_timezone,
)
from leakwatch.detect.egress import DataFileProblem, read_yaml_mapping
from leakwatch.detect.rules import _Mapping, _type_name, _unknown_key
from leakwatch.errors import PlaybookError, format_problem
from leakwatch.incidents import timecalc
from leakwatch.incidents.facts import CATEGORIES, CLOCK_EVENTS, IncidentFacts

REGIME_FIELDS = ("id", "name", "recipient", "legal_basis", "clock", "timezone", "deadlines", "content",
                 "applies_when")
_REQUIRED_REGIME = ("id", "name", "recipient", "clock", "timezone", "deadlines", "content", "applies_when")
DEADLINE_FIELDS = ("id", "label", "after", "earliest_of", "from", "when")
#: Units of an ``after`` (exactly one per period).
UNITS = ("hours", "calendar_days", "business_days", "working_days", "months", "asap")
_MAX_AMOUNT = {"hours": 87_600, "calendar_days": 3_650, "business_days": 2_610, "working_days": 3_130,
               "months": 120}
_PERIOD_EXTRAS = ("calendar", "subdiv", "from_year_end")
CONDITION_OPS = ("all", "any", "not", "subjects_in", "established_in", "org", "responder", "category",
                 "clock", "subjects")
_COMPARATORS = {"gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
                "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}
_TOP_LEVEL = ("description", "entity_jurisdictions", "regimes")
STATUSES = ("pending", "overdue", "met", "waiting", "no fixed time", "not applicable")

_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
_DEADLINE_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_CONTENT_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
_ENTITY_RE = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_JURISDICTION_RE = re.compile(r"[A-Z][A-Z0-9_]{1,15}(?:-[A-Z0-9]{1,3})?\Z")  # EU, UK, US-CA
_WILDCARD_RE = re.compile(r"([A-Z][A-Z0-9_]{1,15})-\*\Z")                       # US-*: any US state
_RESPONDER_KEY_RE = re.compile(r"[a-z][a-z0-9_.-]*\Z")

# The EU's 27 member states (ISO 3166-1; Greece also as EL, the EU's own code). The EEA adds
# Norway, Iceland and Liechtenstein (EEA Agreement, Annex XI brings in the GDPR).
_EU_MEMBERS = frozenset({
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "EL", "HU", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
})
JURISDICTION_GROUPS: Mapping[str, frozenset[str]] = {
    "EU": _EU_MEMBERS | {"EU"},
    "EEA": _EU_MEMBERS | {"EU", "EEA", "NO", "IS", "LI"},
}

# Plain-language names of the organisation's true/false facts, for reasons.
_ORG_PHRASES = {
    "dora_financial_entity": "a financial entity under DORA",
    "hipaa_covered_entity": "a HIPAA covered entity or business associate",
    "sec_registrant": "an SEC registrant",
}
_ORG_FIELDS = {f.name: f for f in dataclasses.fields(OrganisationConfig)}


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One node of an applicability condition (see the top of ``regimes.yaml``).

    ``arg`` depends on ``op``: a tuple of conditions (all, any), one condition (not), a tuple of
    codes (subjects_in, established_in, category), a name (responder, clock), ``(field, values)``
    for org (``values`` is ``None`` for a true/false setting) and ``(jurisdiction, comparator,
    number)`` for subjects (``jurisdiction`` ``None`` = all subjects, ``"US-*"`` = any one state).
    """

    op: str
    arg: Any
    line: int | None = None

    def describe(self) -> str:
        """The condition in words, e.g. ``more than 500 data subjects in US-CA``."""
        if self.op in ("all", "any"):
            joiner = " and " if self.op == "all" else " or "
            return "(" + joiner.join(c.describe() for c in self.arg) + ")"
        if self.op == "not":
            return "not " + self.arg.describe()
        if self.op == "subjects_in":
            return "data subjects in " + _or_list(self.arg)
        if self.op == "established_in":
            return "the organisation is established in " + _or_list(self.arg)
        if self.op == "org":
            name, values = self.arg
            if values is None:
                return "the organisation is " + _ORG_PHRASES.get(name, f"{name} = true")
            return f"organisation.{name} is {_or_list(values)}"
        if self.op == "responder":
            return f"a responder has recorded {self.arg!r} as true"
        if self.op == "category":
            return "the data includes " + _or_list(self.arg) + " data"
        if self.op == "clock":
            return f"the {self.arg!r} clock event is set"
        where, cmp, n = self.arg
        return f"{_cmp_words(cmp)} {n} data subjects{_where_words(where)}"


@dataclass(frozen=True)
class Period:
    """One ``after``: ``amount`` of ``unit`` (no amount for ``asap``, which has ``text``), counted
    from ``start`` (a clock event or ``deadline:<id>``)."""

    unit: str
    amount: int
    start: str
    calendar: str | None = None
    subdiv: str | None = None
    from_year_end: bool = False
    text: str = ""


@dataclass(frozen=True)
class DeadlineSpec:
    """A deadline as the file describes it. ``periods`` has one entry for ``after`` and several
    for ``earliest_of`` (the deadline is then the earliest of them)."""

    id: str
    label: str
    periods: tuple[Period, ...]
    earliest_of: bool = False
    when: Condition | None = None
    line: int | None = None


@dataclass(frozen=True)
class Regime:
    """One notification regime from ``regimes.yaml``."""

    id: str
    name: str
    recipient: str
    clock: str
    timezone: str
    deadlines: tuple[DeadlineSpec, ...]
    content: tuple[str, ...]
    applies_when: Condition
    source_line: int | None = None
    legal_basis: str = ""
    # The file's entity → jurisdiction map, so that `when` conditions can tell where data subjects
    # live without the RegimeSet at hand.
    entity_jurisdictions: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class RegimeSet:
    """Every regime of one regimes file, in file order."""

    regimes: tuple[Regime, ...]
    entity_jurisdictions: Mapping[str, str]
    path: Path

    def get(self, regime_id: str) -> Regime:
        """The regime called ``regime_id``; :class:`PlaybookError` listing the valid ids if none is."""
        for r in self.regimes:
            if r.id == regime_id:
                return r
        ids = [r.id for r in self.regimes]
        close = difflib.get_close_matches(str(regime_id), ids, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PlaybookError(f"{self.path}: unknown regime {regime_id!r} ({hint}valid: {', '.join(ids)})")

    def __iter__(self):
        return iter(self.regimes)

    def __len__(self) -> int:
        return len(self.regimes)


@dataclass(frozen=True)
class Applicability:
    """Whether ``regime`` applies to an incident: ``True``, ``False`` or ``None`` (undecided: a
    fact it needs is unknown), with the reasons in words."""

    regime: Regime
    applies: bool | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Deadline:
    """One computed deadline of a regime for an incident.

    ``due`` is UTC, ``None`` when there is no fixed time, the clock event is not set yet or the
    deadline does not apply. ``status`` is one of :data:`STATUSES`: ``met`` when its notice was
    sent by ``due``; ``overdue`` when ``now`` is past ``due`` and nothing was sent, or the notice
    was sent late. ``remaining`` is ``due - now`` (negative when overdue); ``sent_at`` when its
    notice was sent.
    """

    regime_id: str
    id: str
    label: str
    due: datetime | None
    basis: str
    status: str
    remaining: timedelta | None = None
    sent_at: datetime | None = None


# --- loading -----------------------------------------------------------------------------------


def default_regimes_path() -> Path:
    """The shipped regimes, ``playbooks/regimes.yaml`` at the top of the repository."""
    # src/leakwatch/incidents/regimes.py -> <repo>/playbooks/regimes.yaml
    return Path(__file__).resolve().parents[3] / "playbooks" / "regimes.yaml"


def _format_problem(file: str, line: int | None, regime: str | None, fld: str | None, message: str) -> str:
    return format_problem(file, line, "regime", regime, fld, message)


def _error(problems: Sequence[tuple[str, int | None, str | None, str | None, str]]) -> PlaybookError:
    err = PlaybookError("\n".join(_format_problem(*p) for p in problems))
    err.problems = list(problems)  # type: ignore[attr-defined]
    return err


def _line(m: Any, key: Any = None) -> int | None:
    if key is not None:
        kl = getattr(m, "key_lines", None)
        if kl and key in kl:
            return kl[key]
    return getattr(m, "line", None)


def _check_keys(m: Any, valid: Sequence[str], path: str) -> None:
    for key, line in getattr(m, "duplicates", ()):
        raise DataFileProblem(_join(path, str(key)), "given twice", line)
    for k in m:
        if k not in valid:
            raise DataFileProblem(_join(path, str(k)), _unknown_key(k, valid), _line(m, k))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _text(fld: str, v: Any, line: int | None) -> str:
    if isinstance(v, bool):
        raise DataFileProblem(fld, f"expected text, got boolean {v!r} (quote the value: YAML reads "
                                   f"yes/no/on/off, and NO, Norway's code, as booleans)", line)
    if not isinstance(v, str):
        raise DataFileProblem(fld, f"expected text, got {_type_name(v)} {v!r}", line)
    if not v.strip():
        raise DataFileProblem(fld, "must not be empty", line)
    return v.strip()


def _jurisdictions(fld: str, v: Any, line: int | None) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise DataFileProblem(fld, f"expected a non-empty list of jurisdiction codes, got {v!r}", line)
    out = []
    for i, x in enumerate(v):
        code = _text(f"{fld}[{i}]", x, line)
        if not _JURISDICTION_RE.match(code):
            raise DataFileProblem(f"{fld}[{i}]", f"{code!r} is not a jurisdiction code: write an upper-case code "
                                                 f"such as EU, EEA, UK, US, US-CA", line)
        out.append(code)
    return tuple(dict.fromkeys(out))


def _clock_event(fld: str, v: Any, line: int | None) -> str:
    name = _text(fld, v, line)
    if name not in CLOCK_EVENTS:
        close = difflib.get_close_matches(name, CLOCK_EVENTS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DataFileProblem(fld, f"unknown clock {name!r} ({hint}valid: {', '.join(CLOCK_EVENTS)})", line)
    return name


def _positive_int(fld: str, v: Any, line: int | None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise DataFileProblem(fld, f"expected a whole number > 0, got {_type_name(v)} {v!r}", line)
    if v <= 0:
        raise DataFileProblem(fld, f"must be greater than 0, got {v}", line)
    return v


def parse_condition(raw: Any, path: str, line: int | None = None) -> Condition:
    """Validate one condition read from YAML (``raw``; ``path`` names it in errors, e.g.
    ``applies_when``). Raises :class:`DataFileProblem` with field and line on a mistake."""
    line = _line(raw) or line
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise DataFileProblem(path, f"a condition is a mapping with exactly one operator ({', '.join(CONDITION_OPS)}), "
                                    f"got {_type_name(raw)} {raw!r}", line)
    ((op, val),) = raw.items()
    ln = _line(raw, op) or line
    if op not in CONDITION_OPS:
        close = difflib.get_close_matches(str(op), CONDITION_OPS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DataFileProblem(_join(path, str(op)), f"unknown condition operator {op!r} "
                                                    f"({hint}valid: {', '.join(CONDITION_OPS)})", ln)
    fld = _join(path, op)
    if op in ("all", "any"):
        if not isinstance(val, list) or not val:
            raise DataFileProblem(fld, f"expected a non-empty list of conditions, got {val!r}", ln)
        return Condition(op, tuple(parse_condition(c, f"{fld}[{i}]", ln) for i, c in enumerate(val)), ln)
    if op == "not":
        return Condition(op, parse_condition(val, fld, ln), ln)
    if op in ("subjects_in", "established_in"):
        return Condition(op, _jurisdictions(fld, val, ln), ln)
    if op == "category":
        cats = [val] if isinstance(val, str) else val
        if not isinstance(cats, list) or not cats:
            raise DataFileProblem(fld, f"expected a non-empty list of categories, got {val!r}", ln)
        for i, c in enumerate(cats):
            if c not in CATEGORIES:
                close = difflib.get_close_matches(str(c), CATEGORIES, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise DataFileProblem(f"{fld}[{i}]", f"unknown category {c!r} ({hint}valid: {', '.join(CATEGORIES)})", ln)
        return Condition(op, tuple(dict.fromkeys(cats)), ln)
    if op == "clock":
        return Condition(op, _clock_event(fld, val, ln), ln)
    if op == "responder":
        key = _text(fld, val, ln)
        if not _RESPONDER_KEY_RE.match(key):
            raise DataFileProblem(fld, f"{key!r} is not a responder fact name ([a-z][a-z0-9_.-]*)", ln)
        return Condition(op, key, ln)
    if op == "org":
        return Condition(op, _org_arg(fld, val, ln), ln)
    return Condition(op, _subjects_arg(fld, val, ln), ln)


def _org_arg(fld: str, val: Any, ln: int | None) -> tuple[str, tuple[str, ...] | None]:
    if isinstance(val, str):
        name = val.strip()
        f = _ORG_FIELDS.get(name)
        if f is None:
            raise DataFileProblem(fld, _unknown_key(name, list(_ORG_FIELDS)).replace("unknown field",
                                                                                    "unknown organisation setting"), ln)
        if f.type not in ("bool", bool):
            raise DataFileProblem(fld, f"organisation.{name} is not true/false: write {{org: {{{name}: [values]}}}}", ln)
        return name, None
    if not isinstance(val, Mapping) or len(val) != 1:
        raise DataFileProblem(fld, f"expected a setting name (e.g. sec_registrant) or {{setting: [values]}}, "
                                   f"got {val!r}", ln)
    ((name, values),) = val.items()
    ln = _line(val, name) or ln
    if name not in _ORG_FIELDS:
        raise DataFileProblem(_join(fld, str(name)), _unknown_key(name, list(_ORG_FIELDS)).replace(
            "unknown field", "unknown organisation setting"), ln)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values or not all(isinstance(x, str) and x.strip() for x in values):
        raise DataFileProblem(_join(fld, str(name)), f"expected a non-empty list of values, got {values!r}", ln)
    if name == "nis2_entity":
        for x in values:
            if x not in NIS2_ENTITY_KINDS:
                raise DataFileProblem(_join(fld, name), f"unknown value {x!r} (valid: {', '.join(NIS2_ENTITY_KINDS)})", ln)
    return str(name), tuple(x.strip() for x in values)


def _subjects_arg(fld: str, val: Any, ln: int | None) -> tuple[str | None, str, int]:
    if not isinstance(val, Mapping):
        raise DataFileProblem(fld, f"expected {{in: JURISDICTION, gt|ge|lt|le: N}}, got {val!r}", ln)
    for k in val:
        if k not in ("in", *_COMPARATORS):
            raise DataFileProblem(_join(fld, str(k)), _unknown_key(k, ["in", *_COMPARATORS]), _line(val, k) or ln)
    cmps = [k for k in val if k in _COMPARATORS]
    if len(cmps) != 1:
        raise DataFileProblem(fld, "give exactly one of gt, ge, lt, le", ln)
    cmp = cmps[0]
    n = val[cmp]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DataFileProblem(_join(fld, cmp), f"expected a whole number ≥ 0, got {n!r}", _line(val, cmp) or ln)
    where = None
    if "in" in val:
        where = _text(_join(fld, "in"), val["in"], _line(val, "in") or ln)
        if not (_JURISDICTION_RE.match(where) or _WILDCARD_RE.match(where)):
            raise DataFileProblem(_join(fld, "in"), f"{where!r} is not a jurisdiction code (EU, US-CA, or US-* "
                                                    f"for any single US state)", _line(val, "in") or ln)
    return where, cmp, n


def _period(raw: Any, fld: str, default_start: str, line: int | None, allow_from: bool) -> tuple[Period, str | None]:
    """One ``after`` mapping; returns the period and its own ``from`` when ``allow_from``."""
    line = _line(raw) or line
    if not isinstance(raw, Mapping):
        raise DataFileProblem(fld, f"expected a mapping such as {{hours: 72}}, got {_type_name(raw)} {raw!r}", line)
    valid = UNITS + _PERIOD_EXTRAS + (("from",) if allow_from else ())
    _check_keys(raw, valid, fld)
    units = [k for k in raw if k in UNITS]
    if len(units) != 1:
        raise DataFileProblem(fld, f"give exactly one of {', '.join(UNITS)}"
                                   + (f" (got {', '.join(units)})" if units else ""), line)
    unit = units[0]
    uf, ul = _join(fld, unit), _line(raw, unit) or line
    own_from = raw.get("from") if allow_from else None
    if own_from is not None:
        own_from = _text(_join(fld, "from"), own_from, _line(raw, "from") or line)
    start = own_from or default_start
    if unit == "asap":
        for extra in _PERIOD_EXTRAS:
            if extra in raw:
                raise DataFileProblem(_join(fld, extra), "does not go with asap", _line(raw, extra))
        return Period("asap", 0, start, text=_text(uf, raw[unit], ul)), own_from
    amount = _positive_int(uf, raw[unit], ul)
    if amount > _MAX_AMOUNT[unit]:
        # No regulator gives ten years; past a few thousand the date no longer exists.
        raise DataFileProblem(uf, f"{amount:,} {unit.replace('_', ' ')} is longer than ten years "
                                  f"(at most {_MAX_AMOUNT[unit]:,})", ul)
    calendar = subdiv = None
    if unit in ("business_days", "working_days"):
        if "calendar" not in raw:
            raise DataFileProblem(_join(fld, "calendar"), f"missing (required with {unit}): a holiday calendar "
                                                          f"country code such as US or BR", line)
        cl = _line(raw, "calendar") or line
        calendar = _text(_join(fld, "calendar"), raw["calendar"], cl)
        if "subdiv" in raw:
            subdiv = _text(_join(fld, "subdiv"), raw["subdiv"], _line(raw, "subdiv") or line)
        try:
            timecalc.check_calendar(calendar, subdiv)
        except ValueError as e:
            bad = "subdiv" if subdiv is not None and "subdivision" in str(e) else "calendar"
            raise DataFileProblem(_join(fld, bad), str(e), _line(raw, bad) or line) from None
    else:
        for extra in ("calendar", "subdiv"):
            if extra in raw:
                raise DataFileProblem(_join(fld, extra), f"only business_days and working_days take a "
                                                         f"holiday {extra}", _line(raw, extra) or line)
    year_end = False
    if "from_year_end" in raw:
        ye = raw["from_year_end"]
        if unit != "calendar_days" or not isinstance(ye, bool):
            raise DataFileProblem(_join(fld, "from_year_end"), "goes only with calendar_days, as true or false",
                                  _line(raw, "from_year_end") or line)
        year_end = ye
    return Period(unit, amount, start, calendar, subdiv, year_end), own_from


def _check_start(fld: str, start: str, line: int | None, earlier: Sequence[str], all_ids: Sequence[str]) -> None:
    if start.startswith("deadline:"):
        ref = start.split(":", 1)[1]
        if ref in earlier:
            return
        if ref in all_ids:
            raise DataFileProblem(fld, f"deadline {ref!r} is this one or comes after it: a deadline may only "
                                       f"count from an earlier one of the same regime (no cycles)", line)
        valid = ", ".join(earlier) or "none before this one"
        raise DataFileProblem(fld, f"no deadline {ref!r} in this regime (earlier deadlines: {valid})", line)
    _clock_event(fld, start, line)


def _build_deadlines(raw: Any, kl_line: int | None, clock: str) -> tuple[DeadlineSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise DataFileProblem("deadlines", f"expected a non-empty list of deadlines, got {raw!r}", kl_line)
    ids = [d.get("id") if isinstance(d, Mapping) else None for d in raw]
    out: list[DeadlineSpec] = []
    seen: list[str] = []
    for i, d in enumerate(raw):
        path = f"deadlines[{i}]"
        dl = _line(d) or kl_line
        if not isinstance(d, Mapping):
            raise DataFileProblem(path, f"expected a mapping with id, label and after, got {d!r}", dl)
        _check_keys(d, DEADLINE_FIELDS, path)
        for req in ("id", "label"):
            if req not in d:
                raise DataFileProblem(_join(path, req), "missing (required)", dl)
        did = _text(_join(path, "id"), d["id"], _line(d, "id"))
        if not _DEADLINE_ID_RE.match(did):
            raise DataFileProblem(_join(path, "id"), f"{did!r} must match ^[a-z0-9][a-z0-9_-]*$", _line(d, "id"))
        if did in seen:
            raise DataFileProblem(_join(path, "id"), f"duplicate deadline id {did!r}", _line(d, "id"))
        label = _text(_join(path, "label"), d["label"], _line(d, "label"))
        if ("after" in d) == ("earliest_of" in d):
            raise DataFileProblem(_join(path, "after"), "give either after or earliest_of (exactly one)", dl)
        own_from = None
        if "from" in d:
            own_from = _text(_join(path, "from"), d["from"], _line(d, "from"))
            if "earliest_of" in d:
                raise DataFileProblem(_join(path, "from"), "with earliest_of, each alternative has its own from",
                                      _line(d, "from"))
            _check_start(_join(path, "from"), own_from, _line(d, "from"), seen, ids)
        if "after" in d:
            p, _ = _period(d["after"], _join(path, "after"), own_from or clock, _line(d, "after"), False)
            periods = (p,)
        else:
            alts = d["earliest_of"]
            ef = _join(path, "earliest_of")
            if not isinstance(alts, list) or len(alts) < 2:
                raise DataFileProblem(ef, f"expected a list of at least two alternatives, got {alts!r}",
                                      _line(d, "earliest_of"))
            plist = []
            for j, a in enumerate(alts):
                p, af = _period(a, f"{ef}[{j}]", clock, _line(a) or _line(d, "earliest_of"), True)
                if p.unit == "asap":
                    raise DataFileProblem(f"{ef}[{j}]", "an alternative needs a fixed time (not asap)", _line(a))
                if af is not None:
                    _check_start(f"{ef}[{j}].from", af, _line(a, "from"), seen, ids)
                plist.append(p)
            periods = tuple(plist)
        when = parse_condition(d["when"], _join(path, "when"), _line(d, "when")) if "when" in d else None
        out.append(DeadlineSpec(did, label, periods, "earliest_of" in d, when, dl))
        seen.append(did)
    return tuple(out)


def _build_regime(raw: _Mapping, ent_map: Mapping[str, str]) -> Regime:
    _check_keys(raw, REGIME_FIELDS, "")
    for req in _REQUIRED_REGIME:
        if req not in raw:
            raise DataFileProblem(req, "missing (required)", raw.line)
    rid = _text("id", raw["id"], _line(raw, "id"))
    if not _ID_RE.match(rid):
        raise DataFileProblem("id", f"{rid!r} must match ^[a-z0-9][a-z0-9_.-]*$", _line(raw, "id"))
    clock = _clock_event("clock", raw["clock"], _line(raw, "clock"))
    tz = _text("timezone", raw["timezone"], _line(raw, "timezone"))
    try:
        check_timezone(tz, "timezone")
    except ConfigError as e:
        raise DataFileProblem("timezone", str(e).split(": ", 1)[-1], _line(raw, "timezone")) from None
    content = raw["content"]
    if not isinstance(content, list) or not content:
        raise DataFileProblem("content", f"expected a non-empty list of field names, got {content!r}",
                              _line(raw, "content"))
    for i, c in enumerate(content):
        if not isinstance(c, str) or not _CONTENT_RE.match(c):
            raise DataFileProblem(f"content[{i}]", f"{c!r} is not a field name ([a-z][a-z0-9_]*)", _line(raw, "content"))
    legal = raw.get("legal_basis")
    return Regime(
        id=rid,
        name=_text("name", raw["name"], _line(raw, "name")),
        recipient=_text("recipient", raw["recipient"], _line(raw, "recipient")),
        clock=clock,
        timezone=tz,
        deadlines=_build_deadlines(raw["deadlines"], _line(raw, "deadlines"), clock),
        content=tuple(dict.fromkeys(content)),
        applies_when=parse_condition(raw["applies_when"], "applies_when", _line(raw, "applies_when")),
        source_line=raw.line,
        legal_basis="" if legal is None else _text("legal_basis", legal, _line(raw, "legal_basis")),
        entity_jurisdictions=ent_map,
    )


def _entity_map(doc: _Mapping, problems: list, src: str) -> dict[str, str]:
    raw = doc.get("entity_jurisdictions")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append((src, _line(doc, "entity_jurisdictions"), None, "entity_jurisdictions",
                         "expected a mapping of entity → jurisdiction (UK_NINO: UK)"))
        return {}
    out: dict[str, str] = {}
    for dup, line in getattr(raw, "duplicates", ()):
        problems.append((src, line, None, f"entity_jurisdictions.{dup}", "given twice"))
    for ent, jur in raw.items():
        fld = f"entity_jurisdictions.{ent}"
        line = _line(raw, ent)
        try:
            if not isinstance(ent, str) or not _ENTITY_RE.match(ent):
                raise DataFileProblem(fld, f"{ent!r} is not an entity name (upper case, e.g. UK_NINO)", line)
            code = _text(fld, jur, line)
            if not _JURISDICTION_RE.match(code):
                raise DataFileProblem(fld, f"{code!r} is not a jurisdiction code (EU, UK, US, …)", line)
            out[ent] = code
        except DataFileProblem as e:
            problems.append((src, e.line or line, None, e.field, e.message))
    return out


def load_regimes(path: str | Path | None = None) -> RegimeSet:
    """Load and validate the regimes file at ``path`` (default: :func:`default_regimes_path`).

    Raises :class:`PlaybookError` naming file, line, regime and field of every mistake: bad YAML,
    missing or unknown fields (with a did-you-mean), unknown clock events, condition operators,
    time zones or holiday calendars, amounts that are not positive, ``from: deadline:x`` naming a
    missing or later deadline, duplicate ids.
    """
    p = Path(path) if path is not None else default_regimes_path()
    src = str(p)
    problems: list[tuple[str, int | None, str | None, str | None, str]] = []
    try:
        doc = read_yaml_mapping(p)
    except DataFileProblem as e:
        raise _error([(src, e.line, None, e.field, e.message)]) from None
    if doc is None:
        raise _error([(src, None, None, "regimes", "the file is empty: a regimes file holds 'regimes:', a list")])
    for k in doc:
        if k not in _TOP_LEVEL:
            problems.append((src, _line(doc, k), None, str(k), _unknown_key(k, _TOP_LEVEL)))
    for dup, line in doc.duplicates:
        problems.append((src, line, None, str(dup), "given twice"))
    ent_map = _entity_map(doc, problems, src)
    items = doc.get("regimes")
    if not isinstance(items, list) or not items:
        problems.append((src, _line(doc, "regimes"), None, "regimes",
                         "missing or not a non-empty list: a regimes file holds 'regimes:', a list of entries"))
        items = []
    regimes: list[Regime] = []
    seen: dict[str, int | None] = {}
    for i, raw in enumerate(items):
        if not isinstance(raw, _Mapping):
            problems.append((src, _line(doc, "regimes"), None, None, f"entry #{i + 1} is not a mapping: {raw!r}"))
            continue
        rid = raw.get("id") if isinstance(raw.get("id"), str) else f"#{i + 1}"
        try:
            r = _build_regime(raw, ent_map)
        except DataFileProblem as e:
            problems.append((src, e.line or raw.line, rid, e.field, e.message))
            continue
        if r.id in seen:
            problems.append((src, _line(raw, "id"), r.id, "id", f"duplicate id (first at line {seen[r.id]})"))
            continue
        seen[r.id] = raw.line
        regimes.append(r)
    if problems:
        raise _error(problems)
    return RegimeSet(tuple(regimes), dict(ent_map), p)


# --- where data subjects live ----------------------------------------------------------------


def _entity_map_of(regimes: Any) -> Mapping[str, str]:
    if regimes is None:
        return {}
    return getattr(regimes, "entity_jurisdictions", regimes)


def subject_jurisdictions(entities: Iterable[str], org: OrganisationConfig | None, regimes: Any) -> tuple[str, ...]:
    """Where an incident's data subjects live: ``org.customer_jurisdictions``, then the
    jurisdiction of each found entity that ``regimes`` (a :class:`RegimeSet` or its
    ``entity_jurisdictions`` mapping) names (a UK NINO adds UK). Order kept, no duplicates."""
    ent_map = _entity_map_of(regimes)
    out = list(org.customer_jurisdictions) if org is not None else []
    out += [ent_map[e] for e in entities if e in ent_map]
    return tuple(dict.fromkeys(out))


def _contains(outer: str, inner: str) -> bool:
    """Whether jurisdiction ``outer`` includes ``inner`` (EEA ⊇ EU ⊇ DE; US ⊇ US-CA)."""
    if outer == inner or inner in JURISDICTION_GROUPS.get(outer, ()):
        return True
    return "-" in inner and _contains(outer, inner.split("-", 1)[0])


class _Context:
    """Facts an evaluation needs, worked out once per incident."""

    def __init__(self, facts: IncidentFacts, ent_map: Mapping[str, str]):
        self.facts = facts
        self.org = facts.org
        # Where the subjects live, each with where that came from (for reasons). The incident's own
        # list wins when it has one (a responder may have narrowed it); otherwise it is derived.
        org_jur = tuple(getattr(self.org, "customer_jurisdictions", ()) or ())
        listed = facts.subject_jurisdictions or subject_jurisdictions(facts.entities, self.org, ent_map)
        self.subjects: dict[str, str] = {}
        for j in listed:
            ents = [e for e in facts.entities if ent_map.get(e) == j]
            if ents:
                self.subjects[j] = f"{', '.join(ents)} found in the findings"
            elif j in org_jur:
                self.subjects[j] = "organisation.customer_jurisdictions"
            else:
                self.subjects[j] = "recorded on the incident"
        # A responder's count decides where the subjects are: 0 in UK takes UK out even when
        # the organisation has customers there.
        self.none_in: tuple[str, ...] = ()
        for j, n in facts.subjects_by_jurisdiction.items():
            if n and j not in self.subjects:
                self.subjects[j] = f"a responder counted {n}"
            elif not n:
                self.subjects.pop(j, None)
                self.none_in += (j,)

    def count(self, where: str | None) -> tuple[int | None, str]:
        """Data subjects in ``where`` (``None``: all), with how that count is known."""
        f = self.facts
        if where is None:
            return f.total_subjects, ""
        if where in f.subjects_by_jurisdiction:
            return int(f.subjects_by_jurisdiction[where]), "counted by a responder"
        n = f.subjects_in(where)
        if n is not None:
            return n, "all of the incident's data subjects live there"
        if set(self.subjects) == {where}:
            return f.total_subjects, "all of the incident's data subjects live there"
        if not any(_contains(where, j) or _contains(j, where) for j in self.subjects):
            return 0, "no data subjects there"
        return None, "unknown"


def _fmt_list(items: Iterable[str]) -> str:
    return ", ".join(items) or "none"


def _or_list(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _cmp_words(cmp: str) -> str:
    return {"gt": "more than", "ge": "at least", "lt": "fewer than", "le": "at most"}[cmp]


def _where_words(where: str | None) -> str:
    if where is None:
        return " in total"
    m = _WILDCARD_RE.match(where)
    return f" in a single {m.group(1)} subdivision" if m else f" in {where}"


def _truthy(v: Any) -> bool | None:
    if v is None:
        return None
    if isinstance(v, str):
        # Only a clear yes or no decides a condition: "maybe" or "ja" (before: yes) stays undecided.
        low = v.strip().lower()
        if low in ("no", "n", "false", "0", "off"):
            return False
        if low in ("yes", "y", "true", "1", "on"):
            return True
        return None
    return bool(v)


def _eval(c: Condition, ctx: _Context) -> tuple[bool | None, list[str]]:
    op, arg = c.op, c.arg
    if op in ("all", "any"):
        results = [_eval(x, ctx) for x in arg]
        decisive = op != "all"
        hits = [r for v, r in results if v is decisive]
        if hits:  # all: the failing parts say why not; any: the holding parts say why
            return decisive, [s for r in hits for s in r]
        # Undecided, or every part agrees: all reasons, so that an undecided regime also shows
        # what is already known about it.
        v = None if any(v is None for v, _ in results) else (not decisive)
        return v, [s for _, r in results for s in r]
    if op == "not":
        v, reasons = _eval(arg, ctx)
        return (None if v is None else not v), reasons
    if op == "subjects_in":
        hits = [j for j in ctx.subjects if any(_contains(code, j) for code in arg)]
        if hits:
            return True, [f"data subjects in {j} ({ctx.subjects[j]})" for j in hits]
        broader = [j for j in ctx.subjects if any(_contains(j, code) for code in arg)]
        if broader:
            return None, [f"undecided: data subjects in {j} ({ctx.subjects[j]}) may include {_or_list(arg)}; "
                          f"record the jurisdictions of the data subjects" for j in broader]
        counted = [j for j in ctx.none_in if any(_contains(code, j) for code in arg)]
        zero = f"; a responder counted 0 in {_or_list(counted)}" if counted else ""
        return False, [f"no data subjects in {_or_list(arg)} (data subjects in: {_fmt_list(ctx.subjects)}{zero})"]
    if op in ("established_in", "org") and ctx.org is None:
        return None, ["undecided: no [organisation] settings are known"]
    if op == "established_in":
        est = tuple(ctx.org.establishment)
        hits = [j for j in est if any(_contains(code, j) for code in arg)]
        if hits:
            return True, [f"the organisation is established in {_or_list(hits)} (organisation.establishment)"]
        broader = [j for j in est if any(_contains(j, code) for code in arg)]
        if broader:
            return None, [(f"undecided: the organisation is established in {_or_list(broader)}; "
                          f"is that in {_or_list(arg)}?")]
        return False, [(f"the organisation is not established in {_or_list(arg)} "
                       f"(organisation.establishment: {_fmt_list(est)})")]
    if op == "org":
        name, values = arg
        v = getattr(ctx.org, name, None)
        if values is None:
            phrase = _ORG_PHRASES.get(name, f"{name} = true")
            if v:
                return True, [f"the organisation is {phrase} (organisation.{name} = true)"]
            return False, [f"the organisation is not {phrase} (organisation.{name} = false)"]
        vals = tuple(v) if isinstance(v, (tuple, list)) else (v,)
        hit = [x for x in vals if str(x) in values]
        if name == "nis2_entity":
            if hit:
                return True, [f"the organisation is an {hit[0]} entity under NIS2 (organisation.nis2_entity)"]
            return False, [(f"the organisation is not an {_or_list(values)} entity under NIS2 "
                           f"(organisation.nis2_entity = {v!r})")]
        if hit:
            return True, [f"organisation.{name} is {_or_list([str(x) for x in hit])}"]
        return False, [f"organisation.{name} is {v!r}, not {_or_list(values)}"]
    if op == "responder":
        raw = ctx.facts.responder.get(arg)
        v = _truthy(raw)
        if v is None and raw is not None:
            return None, [f"undecided: {arg!r} is recorded as {raw!r}, not as yes or no"]
        if v is None:
            return None, [f"undecided: no responder has recorded {arg!r} yet"]
        return v, [f"a responder recorded {arg!r} as {'yes' if v else 'no'}"]
    if op == "category":
        found = ctx.facts.categories
        given = ctx.facts.responder_categories
        hits = [x for x in arg if x in found]
        if hits:
            return True, [f"the data includes {_or_list(hits)} data"]
        hits = [x for x in arg if x in given]
        if hits:
            return True, [f"a responder recorded {_or_list(hits)} data (fact data_categories)"]
        cats = tuple(dict.fromkeys((*found, *given)))
        return False, [f"no {_or_list(arg)} data (categories: {_fmt_list(cats)}; where the logs cannot show it, "
                       f"a responder records the fact data_categories, e.g. {arg[-1]})"]
    if op == "clock":
        t = ctx.facts.clock_events.get(arg)
        if t is not None:
            return True, [f"{arg} was recorded at {timecalc.format_utc(t)}"]
        return False, [f"the {arg!r} clock event is not set"]
    # subjects
    where, cmp, n = arg
    fn = _COMPARATORS[cmp]
    m = _WILDCARD_RE.match(where) if where else None
    if m:
        return _eval_any_subdivision(m.group(1), cmp, n, ctx)
    count, how = ctx.count(where)
    wanted = f"{_cmp_words(cmp)} {n}"
    place = _where_words(where)
    if count is None:
        bound = _bounded_by_total(cmp, n, ctx)
        if bound is not None:
            return bound, [f"at most {ctx.count(None)[0]:,} data subjects in total, so{place}: "
                           f"{'' if bound else 'not '}{wanted}"]
        return None, [(f"undecided: the number of data subjects{place} is unknown (needed: {wanted}); "
                      f"record it on the incident")]
    ok = fn(count, n)
    how = f" ({how})" if how else ""
    return ok, [f"{count:,} data subjects{place}{how}: {'' if ok else 'not '}{wanted}"]


def _bounded_by_total(cmp: str, n: int, ctx: _Context) -> bool | None:
    """What the incident's total count decides about a part of it whose own count is unknown
    (a part holds at most the total): "more than 500 in US-CA" is false with 5 in all; None when
    the total does not decide it."""
    total = ctx.count(None)[0]
    if total is None:
        return None
    fn = _COMPARATORS[cmp]
    if cmp in ("gt", "ge"):
        return False if not fn(total, n) else None
    return True if fn(total, n) else None


def _eval_any_subdivision(country: str, cmp: str, n: int, ctx: _Context) -> tuple[bool | None, list[str]]:
    fn = _COMPARATORS[cmp]
    wanted = f"{_cmp_words(cmp)} {n}"
    names = list(dict.fromkeys(j for j in (*ctx.subjects, *ctx.facts.subjects_by_jurisdiction)
                               if j.startswith(country + "-")))
    counts = {j: ctx.count(j)[0] for j in names}
    hits = [j for j, c in counts.items() if c is not None and fn(c, n)]
    if hits:
        return True, [f"{counts[j]:,} data subjects in {j}: {wanted}" for j in hits]
    unknown = [j for j, c in counts.items() if c is None]
    if country in ctx.subjects:
        unknown.append(f"{country} (state not recorded)")
    if unknown and _bounded_by_total(cmp, n, ctx) is False:
        # No subdivision can hold more than the incident's total.
        return False, [f"at most {ctx.count(None)[0]:,} data subjects in total: not {wanted} in one {country} "
                       f"subdivision"]
    if unknown:
        return None, [(f"undecided: data subjects per {country} subdivision unknown for {_fmt_list(unknown)} "
                      f"(needed: {wanted} in one); record the counts on the incident")]
    if not names:
        return False, [f"no data subjects in any {country} subdivision"]
    return False, [(f"no {country} subdivision has {wanted} data subjects "
                   f"({', '.join(f'{j}: {c:,}' for j, c in counts.items())})")]


def evaluate(condition: Condition, facts: IncidentFacts,
             regimes: RegimeSet | Mapping[str, str] | None = None) -> tuple[bool | None, tuple[str, ...]]:
    """Evaluate ``condition`` for an incident: ``(True | False | None, reasons)``, ``None`` when a
    fact it needs is unknown. ``regimes`` supplies the entity → jurisdiction map."""
    v, reasons = _eval(condition, _Context(facts, _entity_map_of(regimes)))
    return v, tuple(dict.fromkeys(reasons))


def applicability(regimes: RegimeSet, facts: IncidentFacts) -> list[Applicability]:
    """For every regime in ``regimes`` (file order): whether it applies to the incident and why."""
    ctx = _Context(facts, regimes.entity_jurisdictions)
    out = []
    for r in regimes.regimes:
        v, reasons = _eval(r.applies_when, ctx)
        out.append(Applicability(r, v, tuple(dict.fromkeys(reasons))))
    return out


# --- deadlines ---------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _sent(regime: Regime, index: int, spec: DeadlineSpec, facts: IncidentFacts) -> datetime | None:
    """When the notice for this deadline was sent: key ``<regime>:<deadline>``, or the bare
    ``<regime>`` key for the regime's first (main) deadline."""
    t = facts.notices_sent.get(f"{regime.id}:{spec.id}")
    if t is None and index == 0:
        t = facts.notices_sent.get(regime.id)
    return timecalc._aware(t, f"notices_sent[{regime.id}:{spec.id}]") if t is not None else None


def _start(p: Period, facts: IncidentFacts, done: Mapping[str, Deadline]) -> tuple[datetime | None, str]:
    if p.start.startswith("deadline:"):
        ref = done[p.start.split(":", 1)[1]]
        if ref.sent_at is not None:
            return ref.sent_at, f"the {ref.id!r} notice sent {timecalc.format_utc(ref.sent_at)}"
        if ref.due is not None:
            return ref.due, f"the {ref.id!r} deadline {timecalc.format_utc(ref.due)}"
        return None, f"the {ref.id!r} notice (not sent yet, no fixed time)"
    t = facts.clock_events.get(p.start)
    if t is None:
        return None, f"{p.start} (not set yet)"
    t = timecalc._aware(t, f"clock_events[{p.start}]")
    return t, f"{p.start} {timecalc.format_utc(t)}"


def _due(p: Period, start: datetime, tz: str) -> tuple[datetime, str]:
    if p.unit == "hours":
        return timecalc.add_hours(start, p.amount), f"{p.amount} h"
    if p.unit == "calendar_days":
        if p.from_year_end:
            ye = timecalc.start_of_next_year(start, tz)
            return (timecalc.add_calendar_days(ye, p.amount, tz),
                    f"{_plural(p.amount, 'calendar day')} after the end of the calendar year ({tz}) of")
        return timecalc.add_calendar_days(start, p.amount, tz), f"{_plural(p.amount, 'calendar day')} ({tz} wall clock)"
    if p.unit == "months":
        return timecalc.add_months(start, p.amount, tz), f"{_plural(p.amount, 'month')} ({tz} wall clock)"
    cal = p.calendar + (f"-{p.subdiv}" if p.subdiv else "")
    word = "business day" if p.unit == "business_days" else "working day"
    due = timecalc.add_business_days(start, p.amount, tz, p.calendar, p.subdiv)
    return due, f"{_plural(p.amount, word)} ({cal} holidays, {tz}; due at the end of the day)"


def _basis(words: str, what: str) -> str:
    return f"{words} {what}" if words.endswith(" of") else f"{words} after {what}"


def deadlines(regime: Regime, facts: IncidentFacts, now: datetime) -> list[Deadline]:
    """Every deadline of ``regime`` for the incident, in file order, as of ``now`` (aware).

    Statuses: ``not applicable`` (its ``when`` is false), ``waiting`` (its clock event is not set
    yet), ``no fixed time`` (``asap``), ``met`` (notice sent by the due time), ``overdue`` (past due
    with nothing sent, or sent late), else ``pending``. A deadline whose ``when`` is undecided is
    computed, and its basis says so.
    """
    now = timecalc._aware(now, "now")
    ctx = _Context(facts, regime.entity_jurisdictions)
    done: dict[str, Deadline] = {}
    out: list[Deadline] = []
    for index, spec in enumerate(regime.deadlines):
        sent = _sent(regime, index, spec, facts)
        note = ""
        if spec.when is not None:
            ok, reasons = _eval(spec.when, ctx)
            if ok is False:
                d = Deadline(regime.id, spec.id, spec.label, None,
                             f"only if {spec.when.describe()}: " + "; ".join(reasons), "not applicable", None, sent)
                done[spec.id] = d
                out.append(d)
                continue
            if ok is None:
                note = f"; only if {spec.when.describe()}, " + "; ".join(reasons)
        refs = [done[p.start.split(":", 1)[1]] for p in spec.periods if p.start.startswith("deadline:")]
        gone = [r for r in refs if r.status == "not applicable"]
        if gone:
            d = Deadline(regime.id, spec.id, spec.label, None, f"counts from the {gone[0].label}, which does not "
                         f"apply", "not applicable", None, sent)
            done[spec.id] = d
            out.append(d)
            continue
        due: datetime | None = None
        parts: list[str] = []
        pending_parts: list[str] = []
        for p in spec.periods:
            start, what = _start(p, facts, done)
            if p.unit == "asap":
                parts.append(f"{p.text} (clock: {what})")
                continue
            if start is None:
                pending_parts.append(_basis(_describe_unit(p, regime.timezone), what))
                continue
            d_at, words = _due(p, start, regime.timezone)
            parts.append(_basis(words, what))
            if due is None or d_at < due:
                due = d_at
        if spec.earliest_of:
            basis = "earliest of: " + "; ".join(parts + pending_parts)
            if due is not None and pending_parts:
                basis += " (may move earlier once that is set)"
        else:
            basis = "; ".join(parts + pending_parts)
        basis += note
        asap = spec.periods[0].unit == "asap"
        if sent is not None and (due is None or sent <= due):
            status = "met"
            basis += f"; sent {timecalc.format_utc(sent)}"
        elif sent is not None:
            status = "overdue"
            basis += f"; sent {timecalc.format_utc(sent)}, {_span(sent - due)} late"
        elif asap:
            status = "no fixed time"
        elif due is None:
            status = "waiting"
        else:
            status = "overdue" if now > due else "pending"
        d = Deadline(regime.id, spec.id, spec.label, due, basis, status,
                     (due - now) if due is not None else None, sent)
        done[spec.id] = d
        out.append(d)
    return out


def _describe_unit(p: Period, tz: str) -> str:
    if p.unit == "hours":
        return f"{p.amount} h"
    if p.unit in ("business_days", "working_days"):
        word = "business day" if p.unit == "business_days" else "working day"
        return f"{_plural(p.amount, word)} ({p.calendar} holidays, {tz})"
    word = {"calendar_days": "calendar day", "months": "month"}[p.unit]
    return _plural(p.amount, word)


def _span(td: timedelta) -> str:
    """``2 d 3 h`` / ``45 min``, for how late a notice was."""
    minutes = int(td.total_seconds() // 60)
    d, rem = divmod(minutes, 24 * 60)
    h, m = divmod(rem, 60)
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m} min"
    return f"{m} min"
