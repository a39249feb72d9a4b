"""What the incident-side screens show and do, as plain functions over the core: no Textual.

Reads take a DuckDB connection (a worker thread passes its own cursor) and return dataclasses;
changes take the :class:`~leakwatch.store.Store` and go through the core functions
(``book.acknowledge``, ``book.set_clock``, ``book.set_step``, ``outbox.retry_dead`` …) with the
responder from ``audit.current_actor()``, so each is one transaction with its audit row.

The playbook and awareness logic mirrors ``leakwatch playbook`` / ``leakwatch incidents
set-awareness`` (src/leakwatch/commands/incidents.py): the same refusals with the same words,
so the console and the command line cannot disagree about what is allowed.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from leakwatch.errors import IncidentError

# --- incidents list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NextDeadline:
    """The nearest open deadline of an incident (a regime that applies or is undecided)."""

    incident_id: int
    regime: str
    deadline: str
    label: str
    due: datetime
    applies: bool | None


@dataclass(frozen=True)
class IncidentRow:
    """One line of the incidents list."""

    incident_id: int
    severity: str
    severity_rank: int
    status: str
    title: str
    subjects: int
    findings: int
    alerts: int
    destinations: str
    merged_into: int | None
    next_deadline: NextDeadline | None


def _dest_text(facts) -> str:
    parts = []
    for d in facts.destinations:
        name = d.vendor or "?"
        if d.region:
            name += f" ({d.region})"
        if d.residency_violation:
            name += " !"
        if name not in parts:
            parts.append(name)
    return ", ".join(parts) or "—"


def next_deadline(facts, regimes, now: datetime) -> NextDeadline | None:
    """The incident's nearest deadline not yet met (``triggers.open_deadlines``' first)."""
    from leakwatch.notify.triggers import open_deadlines

    dls = open_deadlines(facts, regimes, now)
    if not dls:
        return None
    d = dls[0]
    return NextDeadline(facts.incident_id, d["regime"], d["deadline"], d["label"], d["due"], d["regime_applies"])


def load_incidents(con: duckdb.DuckDBPyConnection, config, regimes, now: datetime, *,
                   include_closed: bool = True) -> list[IncidentRow]:
    """Every incident (open ones first, as ``book.list_incidents`` orders them) with its data
    subjects, destinations and nearest open deadline. Merged and closed incidents have no
    deadline shown: their clocks stopped."""
    from leakwatch.incidents import book

    out = []
    rows = book.list_incidents(con, include_closed=include_closed)
    all_facts = book.build_facts_many(con, [r["incident_id"] for r in rows], config, regimes)
    for r in rows:
        facts = all_facts[r["incident_id"]]
        nd = None if r["status"] == "closed" else next_deadline(facts, regimes, now)
        out.append(IncidentRow(
            incident_id=int(r["incident_id"]), severity=r["severity"], severity_rank=int(r["severity_rank"]),
            status=r["status"], title=r["title"], subjects=facts.data_subjects, findings=int(r["n_findings"]),
            alerts=int(r["n_alerts"]), destinations=_dest_text(facts), merged_into=r["merged_into"], next_deadline=nd))
    return out


def nearest(rows: list[IncidentRow]) -> NextDeadline | None:
    """The soonest deadline over all ``rows`` (for the header)."""
    dls = [r.next_deadline for r in rows if r.next_deadline is not None]
    return min(dls, key=lambda d: (d.due, d.incident_id)) if dls else None


# --- one incident --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentView:
    """Everything the incident screen shows: the row, its facts, its regimes' clocks (applicable
    and undecided ones) and the latest audit rows."""

    incident: Mapping[str, Any]
    facts: Any                      # IncidentFacts
    clocks: list                    # RegimeClock
    audit: list[dict[str, Any]]
    notice_regimes: list[str] = field(default_factory=list)


def load_incident(con: duckdb.DuckDBPyConnection, incident_id: int, config, regimes, now: datetime, *,
                  audit_limit: int = 50) -> IncidentView:
    """The :class:`IncidentView` of ``incident_id``; :class:`IncidentError` when there is none."""
    from leakwatch.incidents import audit, book
    from leakwatch.incidents.clocks import incident_clocks

    inc = book.get(con, incident_id)
    facts = book.build_facts(con, incident_id, config, regimes)
    clocks = incident_clocks(facts, regimes, now, only_applicable=True)
    rows = audit.list_rows(con, incident_id=incident_id, limit=audit_limit)
    return IncidentView(incident=inc, facts=facts, clocks=clocks, audit=rows,
                        notice_regimes=[c.regime.id for c in clocks if c.applies is not False])


def audit_detail_text(detail: str | None, limit: int = 120) -> str:
    """An audit row's JSON detail as ``key=value`` pairs, shortened to ``limit`` characters."""
    if not detail:
        return ""
    try:
        d = json.loads(detail)
    except ValueError:
        return detail[:limit]
    if not isinstance(d, dict):
        return str(d)[:limit]
    text = ", ".join(f"{k}={v}" for k, v in d.items() if v not in (None, "", [], {}))
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- changes ---------------------------------------------------------------------------------------


def parse_time(text: str, what: str = "time") -> datetime:
    """An ISO 8601 time a responder typed (``2026-03-11T09:30Z``, ``…+01:00``); UTC without a
    zone, as on the command line. :class:`IncidentError` naming the expected form otherwise."""
    t = (text or "").strip()
    if not t:
        raise IncidentError(f"{what}: give a time such as 2026-03-11T09:30Z")
    try:
        when = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        raise IncidentError(f"{what} {t!r}: not an ISO 8601 time (e.g. 2026-03-11T09:30Z or 2026-03-11T10:30+01:00)") from None
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    try:
        in_utc = when.astimezone(UTC)
    except OverflowError:  # year 1 with an offset is no time in UTC: crashed the console
        in_utc = None
    if in_utc is None or in_utc.year < 1970:
        raise IncidentError(f"{what} {t!r}: out of range (a time from 1970 on)")
    return when


def overdue_check(config, regimes, now: datetime, accept: bool):
    """:func:`leakwatch.incidents.clocks.overdue_check`, worded for the console's checkbox."""
    from leakwatch.incidents.clocks import overdue_check as check

    return check(config, regimes, now, accept, how_to_accept="'accept overdue' ticked")


def set_awareness(store, incident_id: int, when: str | datetime, reason: str, *, actor: str, config, regimes,
                  now: datetime, accept_overdue: bool = False) -> datetime | None:
    """Set the awareness time (``book.set_clock``); returns the old one. Every refusal of the
    core (future, before the first finding, no reason, deadlines already past) raises and
    changes nothing."""
    from leakwatch.incidents import book

    at = parse_time(when, "awareness time") if isinstance(when, str) else when
    return book.set_clock(store, incident_id, "awareness", at, actor=actor, reason=reason, now=now,
                          check=overdue_check(config, regimes, now, accept_overdue))


def notify_hook(config, store, clock=None):
    """The outbox hook for changes made in the console (as the CLI's), or None without rules."""
    from leakwatch.notify.triggers import hook_for

    return hook_for(config, store, clock)


def parse_ids(text: str, what: str) -> list[int]:
    """``"3, 5 7"`` → ``[3, 5, 7]``; :class:`IncidentError` naming what is not an id."""
    out = []
    for part in (text or "").replace(",", " ").split():
        if not part.isdigit():
            raise IncidentError(f"{what}: {part!r} is not an id")
        out.append(int(part))
    return out


def parse_where(text: str) -> dict[str, str]:
    """``"dest_vendor=Anthropic, entity=EMAIL_ADDRESS"`` → a ``book.split`` ``where``."""
    out = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise IncidentError(f"split by {part!r}: write FIELD=VALUE")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


# --- notice drafts ---------------------------------------------------------------------------------


def render_draft(con: duckdb.DuckDBPyConnection, incident_id: int, regime_id: str, config, regimes, now: datetime,
                 *, narrative: Mapping[str, str] | None = None):
    """The Markdown notice draft for ``regime_id`` (``leakwatch notice ID --regime R``); returns
    the :class:`~leakwatch.incidents.notices.NoticeDraft`."""
    from leakwatch.incidents import book
    from leakwatch.incidents.notices import default_kind, render_notice
    from leakwatch.incidents.regimes import deadlines

    regime = regimes.get(regime_id)
    facts = book.build_facts(con, incident_id, config, regimes)
    return render_notice(facts, default_kind(regime.id), fmt="md", regime=regime,
                         deadlines=deadlines(regime, facts, now), now=now, narrative=narrative)


# --- playbook ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRow:
    """One playbook step of an incident as the playbook screen shows it."""

    playbook_id: str
    playbook_title: str
    step: Any                         # leakwatch.incidents.playbooks.Step
    state: str                        # pending, in_progress, done, skipped
    applies: bool | None              # False: its condition is not met (yet)
    due: datetime | None
    by: str | None
    reason: str | None
    evidence: Mapping[str, str]
    notifications: tuple[dict[str, Any], ...] = ()   # outbox rows of a notify step

    @property
    def key(self) -> str:
        """``playbook/step``: unique within the incident."""
        return f"{self.playbook_id}/{self.step.id}"

    @property
    def open(self) -> bool:
        """Still to do (its countdown runs)."""
        return self.state in ("pending", "in_progress") and self.applies is not False


def load_playbook(con: duckdb.DuckDBPyConnection, incident_id: int, config, regimes, playbooks, now: datetime) -> list[StepRow]:
    """The steps of the playbooks that apply to the incident (``select_playbooks``), with their
    state, due time and, for steps with a notify action, their outbox notifications."""
    from leakwatch.incidents import book
    from leakwatch.incidents.clocks import deadline_resolver, incident_clocks
    from leakwatch.incidents.playbooks import select_playbooks, settled_steps, step_applies, step_due
    from leakwatch.notify.outbox import step_notifications

    facts = book.build_facts(con, incident_id, config, regimes)
    chosen = select_playbooks(playbooks, facts)
    applies = {rc.regime.id: rc.applies for rc in incident_clocks(facts, regimes, now)}
    resolve = deadline_resolver(facts, regimes, now)
    states = book.step_states(con, incident_id)
    done = settled_steps(states)
    sent = step_notifications(con, incident_id)
    out = []
    for pb in chosen:
        for s in pb.steps:
            st = states.get((pb.id, s.id))
            ev: dict[str, str] = {}
            if st and st.get("evidence"):
                try:
                    ev = dict(json.loads(st["evidence"]))
                except (ValueError, TypeError):
                    ev = {}
            out.append(StepRow(
                playbook_id=pb.id, playbook_title=pb.title, step=s, state=st["status"] if st else "pending",
                applies=step_applies(s, facts, done, lambda rid: applies.get(rid)), due=step_due(s, facts, resolve),
                by=st["updated_by"] if st else None, reason=st["reason"] if st else None, evidence=ev,
                notifications=tuple(sent.get((pb.id, s.id), ())) if s.notify is not None else ()))
    return out


def change_step(store, incident_id: int, playbook_id: str, step_id: str, new: str, *, actor: str, config, regimes,
                playbooks, now: datetime, evidence: Mapping[str, str] | None = None, reason: str | None = None,
                notify=None) -> str:
    """Move a step to ``new`` (``in_progress``, ``done``, ``skipped`` or back to ``pending``)
    with the CLI's checks: evidence items the step asks for only, its condition met (unless
    skipped), the transition allowed (``check_transition``). Returns the old state; raises
    :class:`IncidentError` and changes nothing when refused."""
    from leakwatch.incidents import book
    from leakwatch.incidents.clocks import incident_clocks
    from leakwatch.incidents.playbooks import check_transition, settled_steps, step_applies

    pb = playbooks.get(playbook_id)
    if pb is None:
        raise IncidentError(f"no playbook {playbook_id!r}; there are: {', '.join(sorted(playbooks))}")
    step = next((s for s in pb.steps if s.id == step_id), None)
    if step is None:
        raise IncidentError(f"no step {step_id!r} in {playbook_id}")
    evidence = {k: v.strip() for k, v in dict(evidence or {}).items()}
    unknown = [k for k in evidence if k not in step.evidence]
    if unknown:
        wanted = ", ".join(repr(e) for e in step.evidence) or "none"
        raise IncidentError(f"step {step.id} asks for no evidence called {', '.join(map(repr, unknown))} "
                            f"(it asks for: {wanted})")
    if new != "skipped":
        con = store.con.cursor()
        try:
            facts = book.build_facts(con, incident_id, config, regimes)
            applies = {rc.regime.id: rc.applies for rc in incident_clocks(facts, regimes, now)}
            done_now = settled_steps(book.step_states(con, incident_id))
        finally:
            con.close()
        if new in ("in_progress", "done") and step_applies(step, facts, done_now, lambda rid: applies.get(rid)) is False:
            raise IncidentError(f"step {step.id}: its condition is not met ({step.when}); "
                                f"finish what it waits for, or skip it with a reason")

    def check(old: str) -> None:
        try:
            check_transition(step, old, new, evidence=evidence, reason=reason)
        except ValueError as e:
            raise IncidentError(f"step {step.id}: {e}") from None

    return book.set_step(store, incident_id, pb.id, step.id, new, actor=actor, evidence=evidence, reason=reason,
                         now=now, check=check, notify=notify)


# --- notifications -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    """One notification of the outbox (``last_error`` redacted)."""

    notification_id: int
    incident_id: int | None
    target: str
    kind: str
    event: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None


def load_outbox(con: duckdb.DuckDBPyConnection, *, limit: int = 500) -> list[OutboxRow]:
    """The latest ``limit`` notifications, dead letters first, then pending, then the rest,
    newest first within each."""
    from leakwatch.notify.secrets import redact

    rows = con.execute("""
        SELECT notification_id, incident_id, target, kind, event, status, attempts, last_status, last_error,
               created_at, updated_at, next_attempt_at, delivered_at
        FROM outbox
        ORDER BY CASE status WHEN 'dead' THEN 0 WHEN 'sending' THEN 1 WHEN 'pending' THEN 2 ELSE 3 END,
                 updated_at DESC, notification_id DESC
        LIMIT ?""", [limit]).fetchall()

    def utc(t):
        return t.astimezone(UTC) if t is not None else None

    return [OutboxRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), r[7], redact(r[8]) or None,
                      utc(r[9]), utc(r[10]), utc(r[11]) if r[5] == "pending" else None, utc(r[12])) for r in rows]


def delivery_history(con: duckdb.DuckDBPyConnection, notification_id: int) -> list[dict[str, Any]]:
    """The audit rows about one notification, oldest first: queued, retried, cancelled,
    delivered, dead letter."""
    key = con.execute("SELECT idempotency_key FROM outbox WHERE notification_id = ?", [notification_id]).fetchone()
    rows = con.execute("""
        SELECT seq, "at", actor, action, detail, reason FROM audit_log
        WHERE action LIKE 'notify.%'
          AND (TRY_CAST(json_extract(detail, '$.notification') AS BIGINT) = ?
               OR json_extract_string(detail, '$.key') = ?)
        ORDER BY seq""", [notification_id, key[0] if key else None]).fetchall()
    return [{"seq": r[0], "at": r[1].astimezone(UTC), "actor": r[2], "action": r[3], "detail": r[4], "reason": r[5]}
            for r in rows]
