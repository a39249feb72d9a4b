"""An incident's regulatory clocks: which regimes apply and every deadline, for ``leakwatch
clocks``, playbook due times, and the check that refuses an awareness time whose deadlines are
already past."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from leakwatch.errors import IncidentError
from leakwatch.incidents.facts import IncidentFacts


@dataclass(frozen=True)
class RegimeClock:
    """One regime for one incident: whether it applies, why, and its deadlines."""

    regime: object          # leakwatch.incidents.regimes.Regime
    applies: bool | None    # None: undecided (a fact is unknown)
    reasons: tuple[str, ...]
    deadlines: tuple        # leakwatch.incidents.regimes.Deadline


def incident_clocks(facts: IncidentFacts, regimes, now: datetime, *, only_applicable: bool = False) -> list[RegimeClock]:
    """Every regime with its applicability and deadlines (deadlines only for regimes that apply
    or are undecided: an undecided one is shown so that nobody misses it)."""
    from leakwatch.incidents.regimes import applicability, deadlines

    out = []
    for a in applicability(regimes, facts):
        if only_applicable and a.applies is False:
            continue
        dls = tuple(deadlines(a.regime, facts, now)) if a.applies is not False else ()
        out.append(RegimeClock(a.regime, a.applies, tuple(a.reasons), dls))
    order = {True: 0, None: 1, False: 2}
    out.sort(key=lambda c: (order[c.applies], min((d.due for d in c.deadlines if d.due), default=datetime.max.replace(tzinfo=now.tzinfo))))
    return out


def deadline_resolver(facts: IncidentFacts, regimes, now: datetime):
    """``resolve(regime_id, deadline_id) -> datetime | None`` for playbook steps due relative to
    a regime deadline."""
    cache: dict[str, dict[str, datetime | None]] = {}

    def resolve(regime_id: str, deadline_id: str) -> datetime | None:
        from leakwatch.incidents.regimes import deadlines

        if regime_id not in cache:
            regime = regimes.get(regime_id)
            cache[regime_id] = {d.id: d.due for d in deadlines(regime, facts, now)}
        if deadline_id not in cache[regime_id]:
            raise IncidentError(f"regime {regime_id} has no deadline {deadline_id!r} "
                                f"(it has: {', '.join(cache[regime_id])})")
        return cache[regime_id][deadline_id]

    return resolve


def overdue_with(facts: IncidentFacts, regimes, event: str, at: datetime, now: datetime) -> list[str]:
    """Deadlines of applicable regimes that the change puts (further) in the past: overdue at
    ``now`` if clock ``event`` were ``at`` (and no notice for them was sent), and either not
    overdue without the change or due earlier with it. What a responder must acknowledge
    before back-dating awareness; a deadline the change does not move (GDPR's 72 hours, long
    run out, when the suspicion time of another regime is set) asks for no acknowledgement."""
    events = dict(facts.clock_events)
    events[event] = at
    changed = dataclasses.replace(facts, clock_events=events)

    def overdue(f: IncidentFacts) -> dict[tuple[str, str], object]:
        return {(c.regime.id, d.id): (c, d) for c in incident_clocks(f, regimes, now, only_applicable=True)
                if c.applies is True for d in c.deadlines if d.status == "overdue"}

    before = overdue(facts)
    return [f"{c.regime.id} {d.label} was due {d.due.isoformat(timespec='minutes')}"
            for k, (c, d) in overdue(changed).items()
            if k not in before or (d.due is not None and before[k][1].due is not None and d.due < before[k][1].due)]


def overdue_check(config, regimes, now: datetime, accept: bool, *, how_to_accept: str = "--accept-overdue"):
    """A ``check`` for :func:`leakwatch.incidents.book.set_clock` / ``open_incident``: refuses a
    clock time that puts deadlines of applicable regimes in the past, unless ``accept`` — then
    the late deadlines are returned for the audit row. ``how_to_accept`` names the switch in the
    refusal (the CLI's flag, the console's checkbox)."""
    from leakwatch.incidents import book

    def check(con, incident_id: int, event: str, at: datetime) -> dict | None:
        facts = book.build_facts(con, incident_id, config, regimes)
        late = overdue_with(facts, regimes, event, at, now)
        if late and accept:
            return {"accepted_overdue": late}
        if late:
            raise IncidentError(
                f"with {event} at {at.isoformat(timespec='minutes')} these deadlines are already past: "
                + "; ".join(late) + f". If that is the truth, repeat with {how_to_accept} (the reason is "
                "recorded); nothing was changed")
        return None

    return check
