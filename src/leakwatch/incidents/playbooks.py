"""Playbooks: the ordered steps a responder works through for one kind of incident.

A playbook is data (``playbooks/*.yaml``, format in ``playbooks/README.md``): which incidents it
applies to, and its steps, each with a role, a due time relative to a clock event or to a
regulatory deadline, the evidence needed to mark it done, an optional notice to draft and an
optional condition. :func:`load_playbook` validates a file and raises one
:class:`PlaybookLoadError` listing every mistake with file, line, step and field; a playbook is
all-or-nothing, since a step silently dropped is a step nobody does.

Regime deadlines (``deadline: gdpr-33.notify``) are only checked for their syntax here: the
regimes module resolves them, through the ``resolve_deadline`` callable :func:`step_due` takes.
Per-incident step state (pending, in progress, done, skipped) lives in the store; this module
only says which changes are allowed (:func:`check_transition`).
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from leakwatch.detect.egress import DataFileProblem, read_yaml_mapping
from leakwatch.detect.patterns import PATTERNS
from leakwatch.detect.rules import _Mapping, _type_name, _unknown_key
from leakwatch.errors import PlaybookError, format_problem
from leakwatch.incidents.facts import CATEGORIES, CLOCK_EVENTS, IncidentFacts

STEP_STATES: tuple[str, ...] = ("pending", "in_progress", "done", "skipped")

TOP_FIELDS = ("id", "title", "description", "applies_to", "steps")
_REQUIRED_TOP = ("id", "title", "applies_to", "steps")
STEP_FIELDS = ("id", "title", "role", "due", "evidence", "notify", "when", "description")
_REQUIRED_STEP = ("id", "title", "role")
APPLIES_FIELDS = ("patterns", "categories", "systems", "default")
DUE_FIELDS = ("clock", "deadline", "after", "before")
NOTIFY_FIELDS = ("regime", "template")
#: Condition operators of ``when``: leaves test one fact, ``all``/``any``/``not`` combine.
CONDITION_OPS = ("step_done", "pattern", "category", "system", "regime_applies", "all", "any", "not")

# Files in the playbooks folder that are not playbooks.
_NOT_PLAYBOOKS = frozenset({"regimes.yaml", "regimes.yml"})

_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
# Regime ids hold dots (ca-1798.82), deadline ids do not: `ca-1798.82.residents` splits at the last dot.
_REGIME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_DEADLINE_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_SYSTEM_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|min|m|s)")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "min": 60, "m": 60, "s": 1}
# No step or reminder is due more than ten years from its clock: a longer duration is a typo,
# and past a few thousand years it no longer fits a date (an internal error, not a message).
MAX_DURATION = timedelta(days=3_650)


class PlaybookLoadError(PlaybookError):
    """A playbook file (or the set of them) is invalid. ``problems`` holds every mistake as
    ``(file, line, step, field, message)``; the message lists them all."""

    def __init__(self, problems: Sequence[tuple[str, int | None, str | None, str | None, str]]):
        self.problems = list(problems)
        self.file, self.line, self.step, self.field, self.message = self.problems[0]
        super().__init__("\n".join(_format_problem(*p) for p in self.problems))


class StepTransitionError(PlaybookError, ValueError):
    """A step state change that is not allowed (done without its evidence, skipped without a
    reason, a final state changed without reopening); nothing was changed."""


def _format_problem(file: str, line: int | None, step: str | None, fld: str | None, message: str) -> str:
    return format_problem(file, line, "step", step, fld, message)


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueSpec:
    """When a step is due: ``offset`` after a clock event (``clock``: one of
    :data:`~leakwatch.incidents.facts.CLOCK_EVENTS`, ``done:<step>`` or ``notified:<regime>``),
    or relative to a regime deadline (``deadline`` = ``"<regime>.<deadline id>"``; ``before``
    gives a negative offset). ``text`` is the spec as a person reads it."""

    clock: str | None
    deadline: str | None
    offset: timedelta
    text: str

    @property
    def regime_deadline(self) -> tuple[str, str] | None:
        """``(regime id, deadline id)`` of a deadline-relative spec, else ``None``."""
        if self.deadline is None:
            return None
        regime, _, dl = self.deadline.rpartition(".")
        return regime, dl


@dataclass(frozen=True)
class NotifyAction:
    """The notice a step drafts/sends: for ``regime``, rendered with the notice kind ``template``
    (a key of :data:`leakwatch.incidents.notices.NOTICE_KINDS`)."""

    regime: str
    template: str


@dataclass(frozen=True)
class Condition:
    """A ``when`` condition: ``op`` is one of :data:`CONDITION_OPS`; ``arg`` is a name for the
    leaves and a tuple of conditions for ``all``/``any``/``not``."""

    op: str
    arg: Any
    line: int = 0

    def step_refs(self) -> Iterable[str]:
        """Step ids this condition waits for (``step_done`` anywhere inside it)."""
        if self.op == "step_done":
            yield self.arg
        elif self.op in ("all", "any", "not"):
            for c in self.arg:
                yield from c.step_refs()

    def __str__(self) -> str:
        if self.op in ("all", "any"):
            return f"{self.op}(" + ", ".join(str(c) for c in self.arg) + ")"
        if self.op == "not":
            return f"not {self.arg[0]}"
        return f"{self.op}={self.arg}"


condition = Condition  # the name the API sketch uses


@dataclass(frozen=True)
class AppliesTo:
    """Which incidents a playbook is for: any listed pattern, category or system of the
    incident selects it; ``default`` marks the fallback used when no playbook matches."""

    patterns: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    systems: tuple[str, ...] = ()
    default: bool = False

    def matches(self, facts: IncidentFacts) -> bool:
        """Whether the incident shows any of the listed signs."""
        return bool(
            set(self.patterns) & set(facts.patterns)
            or set(self.categories) & set(facts.categories)
            or set(self.systems) & set(facts.systems)
        )


@dataclass(frozen=True)
class Step:
    """One step of a playbook. ``line`` is the 1-based line of its ``- id:`` item."""

    id: str
    title: str
    role: str
    due: DueSpec | None
    evidence: tuple[str, ...]
    notify: NotifyAction | None
    when: Condition | None
    line: int
    description: str = ""


@dataclass(frozen=True)
class Playbook:
    """A validated playbook; ``steps`` in the file's order."""

    id: str
    title: str
    description: str
    applies_to: AppliesTo
    steps: tuple[Step, ...]
    path: Path
    _by_id: Mapping[str, Step] = field(default_factory=dict, repr=False, compare=False)

    def step(self, step_id: str) -> Step:
        """The step called ``step_id``; :class:`PlaybookError` naming the valid ids if none is."""
        try:
            return self._by_id[step_id]
        except KeyError:
            hint = difflib.get_close_matches(step_id, list(self._by_id), n=1)
            more = f"did you mean {hint[0]!r}?" if hint else "steps: " + ", ".join(self._by_id)
            raise PlaybookError(f"playbook {self.id!r} has no step {step_id!r} ({more})") from None


# --- durations and field checks ----------------------------------------------------------------


def parse_duration(text: Any, fld: str = "after") -> timedelta:
    """``"4h"``, ``"30m"``, ``"2d"``, ``"1w"``, ``"1d12h"``, ``"90min"`` as a :class:`timedelta`.

    Raises :class:`DataFileProblem` for anything else: no unit, an unknown unit, a negative
    value (write ``before:`` instead) or months (not a fixed length).
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise DataFileProblem(fld, f"expected a duration such as '4h', got {_type_name(text)} {text!r}")
    s = str(text).strip().lower()
    if s.startswith("-"):
        raise DataFileProblem(fld, f"duration {text!r} is negative: durations count forward; use "
                                   f"'before:' with a deadline for a time ahead of it")
    if isinstance(text, (int, float)):
        raise DataFileProblem(fld, f"duration {text!r} has no unit: write e.g. '{text}h' or '{text}d'")
    if "month" in s or s.endswith("mo"):
        raise DataFileProblem(fld, f"duration {text!r}: a month has no fixed length; use days, e.g. '30d'")
    pos, total = 0, 0.0
    compact = s.replace(" ", "")
    while pos < len(compact):
        m = _DURATION_PART.match(compact, pos)
        if not m:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(compact):
        raise DataFileProblem(fld, f"{text!r} is not a duration: use numbers with units w, d, h, m "
                                   f"(minutes) or s, e.g. '4h', '30m', '1d12h'")
    if not total <= MAX_DURATION.total_seconds():
        raise DataFileProblem(fld, f"duration {text!r} is longer than ten years ({MAX_DURATION.days:,}d)")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    """``timedelta(hours=36)`` → ``"1d12h"`` (the inverse of :func:`parse_duration`, sign aside)."""
    secs = int(abs(td.total_seconds()))
    if secs and secs % 3_600 == 0 and secs <= 72 * 3_600:
        return f"{secs // 3_600}h"  # regulatory clocks are stated in hours up to 72
    out = []
    for unit, n in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if secs >= n:
            out.append(f"{secs // n}{unit}")
            secs %= n
    return "".join(out) or "0h"


def _str(fld: str, v: Any) -> str:
    if isinstance(v, bool):
        raise DataFileProblem(fld, f"expected a string, got boolean {v!r} (quote the value: YAML reads "
                                   f"on/off/yes/no as booleans)")
    if not isinstance(v, str):
        raise DataFileProblem(fld, f"expected a string, got {_type_name(v)} {v!r}")
    if not v.strip():
        raise DataFileProblem(fld, "must not be empty")
    return v.strip()


def _ident(fld: str, v: Any, rx: re.Pattern[str] = _ID_RE, what: str = "an id") -> str:
    s = _str(fld, v)
    if not rx.match(s):
        raise DataFileProblem(fld, f"{s!r} is not {what}: use lowercase letters, digits, '-' and '_'")
    return s


def _choice(fld: str, v: Any, valid: Sequence[str], what: str) -> str:
    s = _str(fld, v)
    if s not in valid:
        hint = difflib.get_close_matches(s, list(valid), n=1, cutoff=0.6)
        more = f"did you mean {hint[0]!r}?" if hint else "valid: " + ", ".join(valid)
        raise DataFileProblem(fld, f"unknown {what} {s!r} ({more})")
    return s


def _str_list(fld: str, v: Any, check: Callable[[str, Any], str] | None = None) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise DataFileProblem(fld, f"expected a list of strings, got {_type_name(v)} {v!r}")
    out = []
    for i, x in enumerate(v):
        out.append(check(f"{fld}[{i}]", x) if check else _str(f"{fld}[{i}]", x))
    dup = next((x for i, x in enumerate(out) if x in out[:i]), None)
    if dup is not None:
        raise DataFileProblem(fld, f"{dup!r} is listed twice")
    return tuple(out)


def _mapping(fld: str, v: Any, valid: Sequence[str], example: str) -> _Mapping:
    if not isinstance(v, _Mapping):
        raise DataFileProblem(fld, f"expected a mapping such as {example}, got {_type_name(v)} {v!r}")
    for k in v:
        if k not in valid:
            raise DataFileProblem(f"{fld}.{k}", _unknown_key(k, valid), v.key_lines.get(k))
    for k, line in v.duplicates:
        raise DataFileProblem(f"{fld}.{k}", "given twice", line)
    return v


def _regime_id(fld: str, v: Any) -> str:
    return _ident(fld, v, _REGIME_RE, "a regime id (e.g. gdpr-33, ca-1798.82)")


def _deadline_ref(fld: str, v: Any) -> str:
    s = _str(fld, v)
    regime, dot, dl = s.rpartition(".")
    if not dot or not _REGIME_RE.match(regime) or not _DEADLINE_ID_RE.match(dl):
        raise DataFileProblem(fld, f"{s!r} is not a regime deadline: write '<regime>.<deadline>', "
                                   f"e.g. 'gdpr-33.notify' or 'nis2.early_warning'")
    return s


def _clock(fld: str, v: Any) -> str:
    s = _str(fld, v)
    kind, colon, rest = s.partition(":")
    if colon and kind == "done":
        return "done:" + _ident(fld, rest, what="a step id")
    if colon and kind == "notified":
        return "notified:" + _regime_id(fld, rest)
    if s in CLOCK_EVENTS:
        return s
    valid = list(CLOCK_EVENTS) + ["done:<step id>", "notified:<regime id>"]
    hint = difflib.get_close_matches(s, list(CLOCK_EVENTS), n=1, cutoff=0.6)
    more = f"did you mean {hint[0]!r}?" if hint else "valid: " + ", ".join(valid)
    raise DataFileProblem(fld, f"unknown clock {s!r} ({more})")


def _dur(fld: str, v: Any) -> timedelta:
    return parse_duration(v, fld)


def _due(v: Any) -> DueSpec:
    m = _mapping("due", v, DUE_FIELDS, "{clock: awareness, after: '4h'}")

    def at(name: str, fn, *args):
        try:
            return fn(f"due.{name}", m[name], *args)
        except DataFileProblem as e:
            raise DataFileProblem(e.field, e.message, e.line or m.key_lines.get(name)) from None

    if ("clock" in m) == ("deadline" in m):
        raise DataFileProblem("due", "give exactly one of 'clock' (an event such as awareness) and "
                                     "'deadline' (a regime deadline such as gdpr-33.notify)", m.line)
    if "after" in m and "before" in m:
        raise DataFileProblem("due", "give 'after' or 'before', not both", m.line)
    if "clock" in m:
        clock = at("clock", _clock)
        if "before" in m:
            raise DataFileProblem("due.before", "a clock event has already happened when it starts: "
                                                "use 'after' with a clock, 'before' with a deadline",
                                  m.key_lines.get("before"))
        offset = at("after", _dur) if "after" in m else timedelta(0)
        return DueSpec(clock, None, offset, f"{clock} + {format_duration(offset)}")
    deadline = at("deadline", _deadline_ref)
    if "before" in m:
        offset = -at("before", _dur)
        text = f"{format_duration(offset)} before {deadline}"
    elif "after" in m:
        offset = at("after", _dur)
        text = f"{format_duration(offset)} after {deadline}"
    else:
        offset, text = timedelta(0), f"by {deadline}"
    return DueSpec(None, deadline, offset, text)


def _notify(v: Any, notice_kinds: Sequence[str]) -> NotifyAction:
    m = _mapping("notify", v, NOTIFY_FIELDS, "{regime: gdpr-33, template: gdpr-33}")
    if "regime" not in m:
        raise DataFileProblem("notify.regime", "missing: the regime whose notice this step sends", m.line)
    try:
        regime = _regime_id("notify.regime", m["regime"])
    except DataFileProblem as e:
        raise DataFileProblem(e.field, e.message, m.key_lines.get("regime")) from None
    # Without a template the regime's own notice kind is used, or the generic one.
    raw = m.get("template", regime if regime in notice_kinds else "generic")
    try:
        template = _choice("notify.template", raw, notice_kinds, "notice template")
    except DataFileProblem as e:
        raise DataFileProblem(e.field, e.message, m.key_lines.get("template", m.line)) from None
    return NotifyAction(regime, template)


def _condition(v: Any, fld: str = "when") -> Condition:
    if not isinstance(v, _Mapping) or len(v) != 1:
        what = f"a mapping with {len(v)} keys" if isinstance(v, _Mapping) else f"{_type_name(v)} {v!r}"
        raise DataFileProblem(fld, f"expected one condition such as {{step_done: contain}}, got {what} "
                                   f"(combine several with all: [...] or any: [...])",
                              getattr(v, "line", None))
    (op, arg), = v.items()
    line = v.key_lines.get(op, v.line)
    where = f"{fld}.{op}"
    try:
        if op not in CONDITION_OPS:
            raise DataFileProblem(f"{fld}.{op}", _unknown_key(op, CONDITION_OPS).replace("field", "condition"))
        if op in ("all", "any"):
            if not isinstance(arg, list) or not arg:
                raise DataFileProblem(where, f"expected a non-empty list of conditions, got {_type_name(arg)} {arg!r}")
            return Condition(op, tuple(_condition(c, f"{where}[{i}]") for i, c in enumerate(arg)), line)
        if op == "not":
            return Condition(op, (_condition(arg, where),), line)
        if op == "step_done":
            return Condition(op, _ident(where, arg, what="a step id"), line)
        if op == "pattern":
            return Condition(op, _choice(where, arg, PATTERNS, "failure pattern"), line)
        if op == "category":
            return Condition(op, _choice(where, arg, CATEGORIES, "data category"), line)
        if op == "system":
            return Condition(op, _ident(where, arg, _SYSTEM_RE, "a system name"), line)
        return Condition(op, _regime_id(where, arg), line)  # regime_applies
    except DataFileProblem as e:
        raise DataFileProblem(e.field, e.message, e.line or line) from None


def _applies_to(v: Any) -> AppliesTo:
    m = _mapping("applies_to", v, APPLIES_FIELDS, "{patterns: [P1_key_exposed]}")

    def at(name: str, fn):
        if name not in m:
            return ()
        try:
            return fn(f"applies_to.{name}", m[name])
        except DataFileProblem as e:
            raise DataFileProblem(e.field, e.message, e.line or m.key_lines.get(name)) from None

    out = AppliesTo(
        patterns=at("patterns", lambda f, x: _str_list(f, x, lambda g, y: _choice(g, y, PATTERNS, "failure pattern"))),
        categories=at("categories", lambda f, x: _str_list(f, x, lambda g, y: _choice(g, y, CATEGORIES, "data category"))),
        systems=at("systems", lambda f, x: _str_list(f, x, lambda g, y: _ident(g, y, _SYSTEM_RE, "a system name"))),
        default=bool(at("default", _want_bool)),
    )
    if not (out.patterns or out.categories or out.systems or out.default):
        raise DataFileProblem("applies_to", "matches no incident: list patterns, categories or systems, "
                                            "or set default: true", m.line)
    return out


def _want_bool(fld: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise DataFileProblem(fld, f"expected true or false, got {_type_name(v)} {v!r}")
    return v


def _build_step(raw: _Mapping, notice_kinds: Sequence[str]) -> Step:
    for k in raw:
        if k not in STEP_FIELDS:
            raise DataFileProblem(str(k), _unknown_key(k, STEP_FIELDS), raw.key_lines.get(k))
    for k, line in raw.duplicates:
        raise DataFileProblem(str(k), "given twice in this step", line)
    for k in _REQUIRED_STEP:
        if k not in raw:
            raise DataFileProblem(k, "missing (a step needs id, title and role)", raw.line)

    def at(name: str, fn, *args):
        if name not in raw or raw[name] is None:
            return None
        try:
            return fn(raw[name], *args)
        except DataFileProblem as e:
            raise DataFileProblem(e.field, e.message, e.line or raw.key_lines.get(name)) from None

    sid = at("id", lambda v: _ident("id", v, what="a step id"))
    desc = at("description", lambda v: _str("description", v))
    return Step(
        id=sid,
        title=at("title", lambda v: _str("title", v)),
        role=at("role", lambda v: _str("role", v)),  # free text: organisations name their own roles
        due=at("due", _due),
        evidence=at("evidence", lambda v: _str_list("evidence", v)) or (),
        notify=at("notify", _notify, notice_kinds),
        when=at("when", _condition),
        line=raw.line,
        description=desc or "",
    )


def _find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle of the ``step_done`` graph as ``[a, b, …, a]``, or ``None``."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in graph.get(n, ()):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m in graph and m not in state:
                found = visit(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for n in graph:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def _notice_kinds() -> tuple[str, ...]:
    from leakwatch.incidents.notices import (
        NOTICE_KINDS,  # notices imports Jinja2; keep it lazy
    )

    return tuple(NOTICE_KINDS)


# --- loading -----------------------------------------------------------------------------------


def default_playbooks_dir() -> Path:
    """The shipped playbooks, ``playbooks/`` at the top of the repository."""
    # src/leakwatch/incidents/playbooks.py -> <repo>/playbooks (as egress.default_registry_path)
    return Path(__file__).resolve().parents[3] / "playbooks"


def load_playbook(path: str | os.PathLike) -> Playbook:
    """Load and validate one playbook file.

    Raises :class:`PlaybookLoadError` naming file, line, step and field of every mistake:
    bad YAML, missing or unknown fields (with a did-you-mean), unknown clocks, patterns or
    categories, bad durations, duplicate step ids, conditions on unknown steps and cycles of
    ``step_done`` conditions. Roles are free text.
    """
    p = Path(path)
    src = str(p)
    problems: list[tuple[str, int | None, str | None, str | None, str]] = []
    try:
        doc = read_yaml_mapping(p)
    except DataFileProblem as e:
        raise PlaybookLoadError([(src, e.line, None, e.field, e.message)]) from None
    if doc is None:
        raise PlaybookLoadError([(src, None, None, None,
                                  "the file is empty: a playbook holds id, title, applies_to and steps")])
    for k in doc:
        if k not in TOP_FIELDS:
            problems.append((src, doc.key_lines.get(k), None, str(k), _unknown_key(k, TOP_FIELDS)))
    for k, line in doc.duplicates:
        problems.append((src, line, None, str(k), "given twice"))
    for k in _REQUIRED_TOP:
        if k not in doc:
            problems.append((src, doc.line, None, k, "missing (a playbook needs id, title, applies_to and steps)"))

    def top(name: str, fn, default=None):
        if name not in doc:
            return default
        try:
            return fn(doc[name])
        except DataFileProblem as e:
            problems.append((src, e.line or doc.key_lines.get(name), None, e.field or name, e.message))
            return default

    pid = top("id", lambda v: _ident("id", v, what="a playbook id"))
    title = top("title", lambda v: _str("title", v))
    description = top("description", lambda v: "" if v is None else _str("description", v), "")
    applies = top("applies_to", _applies_to)
    notice_kinds = _notice_kinds()
    steps: list[Step] = []
    raw_steps = doc.get("steps")
    if "steps" in doc and (not isinstance(raw_steps, list) or not raw_steps):
        problems.append((src, doc.key_lines.get("steps"), None, "steps",
                         f"expected a non-empty list of steps, got {_type_name(raw_steps)} {raw_steps!r}"))
        raw_steps = []
    seen: dict[str, int] = {}
    # Ids of steps rejected for another mistake still exist: no extra "unknown step" for them.
    named = {raw["id"] for raw in raw_steps or [] if isinstance(raw, _Mapping) and isinstance(raw.get("id"), str)}
    for i, raw in enumerate(raw_steps or []):
        if not isinstance(raw, _Mapping):
            problems.append((src, doc.key_lines.get("steps"), f"#{i + 1}", None,
                             f"expected a mapping with id, title, role, …, got {_type_name(raw)} {raw!r}"))
            continue
        label = raw.get("id") if isinstance(raw.get("id"), str) else f"#{i + 1}"
        try:
            step = _build_step(raw, notice_kinds)
        except DataFileProblem as e:
            problems.append((src, e.line or raw.line, label, e.field, e.message))
            continue
        if step.id in seen:
            problems.append((src, raw.line, step.id, "id", f"duplicate step id (first at line {seen[step.id]})"))
            continue
        seen[step.id] = step.line
        steps.append(step)
    # References between steps, once all ids are known.
    ids = list(seen)
    for s in steps:
        refs = list(s.when.step_refs()) if s.when else []
        if s.due and s.due.clock and s.due.clock.startswith("done:"):
            refs.append(s.due.clock[5:])
            if s.due.clock[5:] == s.id:
                problems.append((src, s.line, s.id, "due.clock", "a step cannot be due after its own completion"))
        for r in refs:
            if r not in named:
                hint = difflib.get_close_matches(r, ids, n=1, cutoff=0.6)
                more = f"did you mean {hint[0]!r}?" if hint else "steps: " + ", ".join(ids)
                fld = "when" if s.when and r in s.when.step_refs() else "due.clock"
                line = s.when.line if fld == "when" and s.when else s.line
                problems.append((src, line, s.id, fld, f"refers to unknown step {r!r} ({more})"))
    cycle = _find_cycle({s.id: [r for r in (s.when.step_refs() if s.when else ()) if r in seen] for s in steps})
    if cycle:
        first = next(s for s in steps if s.id == cycle[0])
        problems.append((src, first.when.line if first.when else first.line, first.id, "when",
                         "cycle in step conditions: " + " -> ".join(cycle) + " (no step of it can ever start)"))
    if problems:
        raise PlaybookLoadError(problems)
    return Playbook(pid, title, description, applies, tuple(steps), p, {s.id: s for s in steps})


def load_playbooks(dir: str | os.PathLike | None = None) -> dict[str, Playbook]:
    """Every playbook (``*.yaml``/``*.yml``) in ``dir`` (default :func:`default_playbooks_dir`),
    by id, in file-name order; ``regimes.yaml``, ``templates/`` and the README are skipped.

    Raises :class:`PlaybookLoadError` with the problems of all files together, and for two
    playbooks with one id or more than one ``default: true``.
    """
    d = Path(dir) if dir is not None else default_playbooks_dir()
    if not d.is_dir():
        raise PlaybookLoadError([(str(d), None, None, None, "no such playbooks folder")])
    problems: list = []
    out: dict[str, Playbook] = {}
    files = sorted(f for f in d.iterdir()
                   if f.suffix in (".yaml", ".yml") and f.name not in _NOT_PLAYBOOKS and f.is_file())
    for f in files:
        try:
            pb = load_playbook(f)
        except PlaybookLoadError as e:
            problems.extend(e.problems)
            continue
        if pb.id in out:
            problems.append((str(f), None, None, "id", f"playbook id {pb.id!r} is also used by {out[pb.id].path}"))
            continue
        out[pb.id] = pb
    defaults = [pb for pb in out.values() if pb.applies_to.default]
    if len(defaults) > 1:
        problems.append((str(defaults[1].path), None, None, "applies_to.default",
                         f"only one playbook can be the default; {defaults[0].path} already is"))
    if problems:
        raise PlaybookLoadError(problems)
    return out


# --- using playbooks ---------------------------------------------------------------------------


def select_playbooks(playbooks: Mapping[str, Playbook] | Iterable[Playbook], facts: IncidentFacts) -> list[Playbook]:
    """The playbooks whose ``applies_to`` matches the incident, in load order; when none does,
    the default one (``applies_to.default: true``), so every incident has a protocol."""
    pbs = list(playbooks.values()) if isinstance(playbooks, Mapping) else list(playbooks)
    chosen = [pb for pb in pbs if pb.applies_to.matches(facts)]
    return chosen or [pb for pb in pbs if pb.applies_to.default]


def step_due(step: Step, facts: IncidentFacts,
             resolve_deadline: Callable[[str, str], datetime | None]) -> datetime | None:
    """When ``step`` is due for this incident, or ``None`` when it has no due time or its clock
    has not started (the event is not set yet, the step it waits for is not done, the regime
    deadline does not apply). ``resolve_deadline(regime_id, deadline_id)`` gives a regime
    deadline as an absolute time."""
    due = step.due
    if due is None:
        return None
    base: datetime | None
    if due.deadline is not None:
        regime, dl = due.regime_deadline  # type: ignore[misc]
        base = resolve_deadline(regime, dl)
    elif due.clock.startswith("done:"):  # type: ignore[union-attr]
        wanted = due.clock[5:]  # type: ignore[index]
        times = [at for sid, _title, at in facts.steps_done if sid == wanted]
        base = max(times) if times else None
    elif due.clock.startswith("notified:"):  # type: ignore[union-attr]
        regime = due.clock[9:]  # type: ignore[index]
        # The first notice of the regime, whether recorded for one of its deadlines or not.
        times = [at for key, at in facts.notices_sent.items() if key == regime or key.startswith(regime + ":")]
        base = min(times) if times else None
    else:
        base = facts.clock_events.get(due.clock)  # type: ignore[arg-type]
    return None if base is None else base + due.offset


def settled_steps(states: Mapping) -> set[str]:
    """Step ids ``step_done`` conditions count as finished: done, or skipped with a reason. A
    skipped step is a decision (rotation not needed for a test key), and what waits on it —
    revoking the key, notifying the authority — must not wait for ever behind it."""
    return {s for (_pb, s), r in states.items() if r["status"] in ("done", "skipped")}


def evaluate_condition(cond: Condition, facts: IncidentFacts, done_steps: set[str] | frozenset[str],
                       regime_applies: Callable[[str], bool | None]) -> bool | None:
    """Three-valued: ``None`` when it depends on something not known yet (whether a regime
    applies). ``all`` is false when any part is false, ``any`` true when any part is true."""
    op, arg = cond.op, cond.arg
    if op == "step_done":
        return arg in done_steps
    if op == "pattern":
        return arg in facts.patterns
    if op == "category":
        return arg in facts.categories
    if op == "system":
        return arg in facts.systems
    if op == "regime_applies":
        r = regime_applies(arg)
        return None if r is None else bool(r)
    parts = [evaluate_condition(c, facts, done_steps, regime_applies) for c in arg]
    if op == "not":
        return None if parts[0] is None else not parts[0]
    if op == "all":
        return False if False in parts else (None if None in parts else True)
    return True if True in parts else (None if None in parts else False)  # any


def step_applies(step: Step, facts: IncidentFacts, done_steps: set[str] | frozenset[str],
                 regime_applies: Callable[[str], bool | None]) -> bool | None:
    """Whether ``step`` applies now: ``True`` without a condition, else its ``when`` evaluated
    on the incident, the done steps and ``regime_applies(regime_id)`` (``None``: not known)."""
    if step.when is None:
        return True
    return evaluate_condition(step.when, facts, done_steps, regime_applies)


# Allowed moves. Leaving done/skipped is "reopening" and needs a reason, like skipping.
_MOVES: Mapping[str, frozenset[str]] = {
    "pending": frozenset({"in_progress", "done", "skipped"}),
    "in_progress": frozenset({"pending", "done", "skipped"}),
    "done": frozenset({"pending", "in_progress"}),
    "skipped": frozenset({"pending", "in_progress"}),
}


def check_transition(step: Step, old_state: str, new_state: str, *,
                     evidence: Mapping[str, str] | None = None, reason: str | None = None) -> None:
    """Raise :class:`StepTransitionError` unless ``step`` may go from ``old_state`` to
    ``new_state``.

    ``done`` needs a non-empty value for every evidence item the step lists; ``skipped`` needs a
    reason; ``done`` and ``skipped`` are final except by reopening (back to ``pending`` or
    ``in_progress``), which also needs a reason. Evidence values and reasons go into the
    append-only audit trail, so one that looks like an unmasked e-mail address, card number or
    key is refused: it could never be deleted again.
    """
    from leakwatch.incidents.notices import (
        find_unmasked,  # lazy: notices imports Jinja2
    )

    for s, what in ((old_state, "current"), (new_state, "new")):
        if s not in STEP_STATES:
            raise StepTransitionError(f"step {step.id!r}: unknown {what} state {s!r} (states: {', '.join(STEP_STATES)})")
    if old_state == new_state:
        raise StepTransitionError(f"step {step.id!r} is already {new_state}")
    if new_state not in _MOVES[old_state]:
        raise StepTransitionError(f"step {step.id!r} is {old_state}, which is final: reopen it "
                                  f"(back to pending, with a reason) before marking it {new_state}")
    texts: list[tuple[str, str]] = []
    if new_state == "done":
        given = {k: v for k, v in (evidence or {}).items() if isinstance(v, str) and v.strip()}
        lacking = [e for e in step.evidence if e not in given]
        if lacking:
            raise StepTransitionError(f"step {step.id!r} cannot be done without its evidence: "
                                      + ", ".join(repr(e) for e in lacking) + " missing")
        texts += [(f"evidence {k!r}", v) for k, v in given.items()]
    needs_reason = new_state == "skipped" or old_state in ("done", "skipped")
    if needs_reason and not (isinstance(reason, str) and reason.strip()):
        verb = "skipped" if new_state == "skipped" else "reopened"
        raise StepTransitionError(f"step {step.id!r} cannot be {verb} without a reason")
    if reason:
        texts.append(("reason", reason))
    for where, text in texts:
        hits = find_unmasked(text)
        if hits:
            kind, preview = hits[0]
            raise StepTransitionError(f"step {step.id!r}: the {where} holds what looks like an unmasked "
                                      f"{kind} ({preview}); the audit trail is append-only, so mask it first")


def _condition_regimes(cond: Condition | None) -> Iterable[str]:
    if cond is None:
        return
    if cond.op == "regime_applies":
        yield cond.arg
    elif cond.op in ("all", "any", "not"):
        for c in cond.arg:
            yield from _condition_regimes(c)


def check_references(playbooks: Mapping[str, Playbook], regimes: Any) -> None:
    """Check every regime and deadline the playbooks name against the loaded regimes
    (``due.deadline``, ``due.clock: notified:<regime>``, ``notify.regime``, ``when:
    regime_applies``); :class:`PlaybookLoadError` listing each unknown one with the playbook
    file, step and field. Load-time, so a typo cannot leave a step undecided forever."""
    known = {r.id: {d.id for d in r.deadlines} for r in regimes.regimes}
    problems: list[tuple[str, int | None, str | None, str | None, str]] = []

    def unknown_regime(rid: str) -> str:
        hint = difflib.get_close_matches(rid, list(known), n=1)
        return f"unknown regime {rid!r}" + (f" (did you mean {hint[0]!r}?)" if hint else f" (regimes: {', '.join(known)})")

    for pb in playbooks.values():
        for st in pb.steps:
            where = (str(pb.path), st.line, st.id)
            if st.due is not None and st.due.regime_deadline is not None:
                rid, dl = st.due.regime_deadline
                if rid not in known:
                    problems.append((*where, "due.deadline", unknown_regime(rid)))
                elif dl not in known[rid]:
                    problems.append((*where, "due.deadline",
                                     f"regime {rid!r} has no deadline {dl!r} (it has: {', '.join(sorted(known[rid]))})"))
            if st.due is not None and st.due.clock and st.due.clock.startswith("notified:") and st.due.clock[9:] not in known:
                problems.append((*where, "due.clock", unknown_regime(st.due.clock[9:])))
            if st.notify is not None and st.notify.regime not in known:
                problems.append((*where, "notify.regime", unknown_regime(st.notify.regime)))
            for rid in _condition_regimes(st.when):
                if rid not in known:
                    problems.append((*where, "when.regime_applies", unknown_regime(rid)))
    if problems:
        raise PlaybookLoadError(problems)
