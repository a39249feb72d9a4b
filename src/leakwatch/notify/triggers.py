"""Who is told what, when: ``[[notify.rules]]`` turned into outbox rows.

Three ways in:

- :func:`hook` returns the ``notify(con, event, incident_id, extra)`` callable that
  :func:`leakwatch.incidents.book.group` and :func:`~leakwatch.incidents.book.set_step` call
  *inside* their transaction: ``incident.opened``, ``incident.escalated`` and ``step.<status>``
  (which a rule names ``step.notify``; only steps whose playbook entry has a ``notify`` action
  count). The rows are written in that transaction, so the incident change and its
  notifications are stored together or not at all.
- :func:`fire_deadlines` (run by the dispatcher loop and by ``leakwatch watch``) enqueues
  ``deadline.approaching`` when a rule's ``before`` threshold is crossed and
  ``deadline.missed`` when a deadline passed without its notice being recorded.
- :func:`enqueue_canary` and :func:`enqueue_dead_letter` (the dispatcher's).

Idempotency keys say what a notification is about, so a trigger that fires again adds nothing::

    incident.opened:<incident>:<target>:
    incident.escalated:<incident>:<target>:<from>-><to>
    step.notify:<incident>:<target>:<playbook>.<step>:<from>-><to>
    deadline.approaching:<incident>:<target>:<regime>.<deadline>:<threshold>:<due>
    deadline.missed:<incident>:<target>:<regime>.<deadline>:<due>
    outbox.dead_letter:<incident>:<target>:<dead notification id>
    canary:<target>:<random id>

Thresholds: with ``before = ["12h", "2h"]`` a deadline gets the 12 h notice while between 12 h
and 2 h are left and the 2 h notice when 2 h or less are left; a deadline first seen with 1 h
left gets only the 2 h notice (the 12 h one would be stale news). The due time is part of the
key: when awareness is corrected and the deadline moves, its notices fire again for the new time.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb

from leakwatch.notify.base import Message, Target
from leakwatch.notify.outbox import enqueue, notification_id

SEVERITY_NAMES = ("info", "low", "medium", "high", "critical")
NotifyHook = Callable[[duckdb.DuckDBPyConnection, str, int, Mapping[str, Any]], None]


def _rank(severity: str | None) -> int:
    try:
        return SEVERITY_NAMES.index(str(severity or "info").lower())
    except ValueError:
        return 0


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%MZ")


def rule_event(event: str) -> str:
    """The rule event a book event answers to: ``step.done`` → ``step.notify``."""
    return "step.notify" if event.startswith("step.") and event != "step.notify" else event


def _fmt_before(td) -> str:
    from leakwatch.incidents.playbooks import format_duration

    return format_duration(td)


def _targets_for(config, secrets=None, names=None) -> dict[str, Target]:
    from leakwatch.notify.targets import build_targets

    return build_targets(config, secrets, names)


def _rule_targets(config) -> set[str]:
    return {t for r in config.notify.rules for t in r.targets}


def open_deadlines(facts, regimes, now: datetime) -> list[dict[str, Any]]:
    """The incident's deadlines not yet met, of regimes that apply or are undecided, soonest
    first: what every incident notification lists."""
    from leakwatch.incidents.clocks import incident_clocks

    out = []
    for rc in incident_clocks(facts, regimes, now):
        if rc.applies is False:
            continue
        for d in rc.deadlines:
            if d.due is None or d.status not in ("pending", "overdue") or d.sent_at is not None:
                continue
            out.append({"regime": rc.regime.id, "deadline": d.id, "label": d.label, "due": d.due,
                        "status": d.status, "regime_applies": rc.applies})
    out.sort(key=lambda x: x["due"])
    return out


class _Context:
    """What one trigger pass needs, loaded once: targets to render with, regimes, playbooks."""

    def __init__(self, config, targets: Mapping[str, Target] | None, regimes, playbooks, secrets):
        self.config = config
        self._targets = dict(targets) if targets is not None else None
        self._secrets = secrets
        self._regimes = regimes
        self._playbooks = playbooks

    @property
    def targets(self) -> Mapping[str, Target]:
        if self._targets is None:
            self._targets = _targets_for(self.config, self._secrets, _rule_targets(self.config))
        return self._targets

    @property
    def regimes(self):
        if self._regimes is None:
            from leakwatch.incidents.regimes import load_regimes

            self._regimes = load_regimes()
        return self._regimes

    @property
    def playbooks(self):
        if self._playbooks is None:
            from leakwatch.incidents.playbooks import load_playbooks

            self._playbooks = load_playbooks()
        return self._playbooks


def _enqueue_for(con, ctx: _Context, rule_ev: str, incident_id: int | None, facts, extra: Mapping[str, Any],
                 detail: str, now: datetime, store_key: bytes | None, *, severity: str | None = None,
                 regime: str | None = None, extra_rules: Callable[[Any], bool] | None = None) -> int:
    """Enqueue ``event`` for every (rule, target) that wants it; returns the rows added."""
    added = 0
    done: set[str] = set()
    for rule in ctx.config.notify.rules:
        if rule_ev not in rule.on:
            continue
        if severity is not None and _rank(severity) < _rank(rule.min_severity):
            continue
        if rule.regimes and regime is not None and regime not in rule.regimes:
            continue
        if extra_rules is not None and not extra_rules(rule):
            continue
        for name in rule.targets:
            if name in done:
                continue
            done.add(name)
            target = ctx.targets.get(name)
            if target is None:
                continue
            key = f"{rule_ev}:{'' if incident_id is None else incident_id}:{name}:{detail}"
            body = target.render(rule_ev, facts, extra)
            msg = Message(target=name, kind=target.config.kind, event=rule_ev, idempotency_key=key, body=body,
                          incident_id=incident_id)
            if enqueue(con, msg, now=now):
                added += 1
                if store_key is not None and incident_id is not None:
                    from leakwatch.incidents import audit

                    audit.append(con, store_key, actor="leakwatch", action="notify.queued", incident_id=incident_id,
                                 at=now, detail={"target": name, "event": rule_ev, "rule": rule.name, "key": key})
    return added


def hook(config, store_key: bytes | None = None, *, targets: Mapping[str, Target] | None = None, regimes=None,
         playbooks=None, secrets=None, clock: Callable[[], datetime] | None = None) -> NotifyHook:
    """The ``notify(con, event, incident_id, extra)`` callable for ``book.group`` and
    ``book.set_step``. ``config`` is a :class:`leakwatch.config.Config`; ``store_key`` (the
    database key) adds a ``notify.queued`` audit row per notification. ``targets`` default to
    the configured ones (built now, so that a configuration error shows before any change);
    ``regimes``/``playbooks`` default to the shipped ones (loaded when first needed)."""
    clock = clock or (lambda: datetime.now(UTC))
    if targets is None and config.notify.rules:
        targets = _targets_for(config, secrets, _rule_targets(config))
    ctx = _Context(config, targets or {}, regimes, playbooks, secrets)

    def notify(con: duckdb.DuckDBPyConnection, event: str, incident_id: int, extra: Mapping[str, Any]) -> None:
        ev = rule_event(event)
        if not any(ev in r.on for r in config.notify.rules):
            return
        from leakwatch.incidents import book

        now = clock()
        extra = dict(extra or {})
        step_regime = None
        if ev == "step.notify":
            step = _notify_step(ctx, con, incident_id, extra, config)
            if step is None:
                return  # steps without a notify action tell nobody
            step_regime = step.notify.regime
            extra.update(step=step.id, step_title=step.title, status=event.split(".", 1)[1],
                         notify_regime=step.notify.regime, notify_template=step.notify.template)
            detail = f"{extra.get('playbook')}.{step.id}:{extra.get('from', '')}->{extra['status']}"
        elif ev == "incident.escalated":
            detail = f"{extra.get('from', '')}->{extra.get('to', '')}"
        else:
            detail = ""
        facts = book.build_facts(con, incident_id, config, ctx.regimes)
        extra["deadlines"] = open_deadlines(facts, ctx.regimes, now)
        _enqueue_for(con, ctx, ev, incident_id, facts, extra, detail, now, store_key,
                     severity=facts.severity, regime=step_regime)

    return notify


def _notify_step(ctx: _Context, con, incident_id: int, extra: Mapping[str, Any], config):
    """The playbook step of a ``step.*`` event if it carries a ``notify`` action, else None."""
    step_id = extra.get("step")
    pb = ctx.playbooks.get(str(extra.get("playbook")))
    candidates = [pb] if pb is not None else []
    if not candidates:
        from leakwatch.incidents import book
        from leakwatch.incidents.playbooks import select_playbooks

        candidates = select_playbooks(ctx.playbooks, book.build_facts(con, incident_id, config, ctx.regimes))
    for p in candidates:
        for s in p.steps:
            if s.id == step_id:
                return s if s.notify is not None else None
    return None


def _tx(store, what: str):
    return store.transaction(what)


def fire_deadlines(store, config, *, now: datetime, targets: Mapping[str, Target] | None = None, regimes=None,
                   secrets=None) -> int:
    """Enqueue ``deadline.approaching`` / ``deadline.missed`` for every open incident whose
    deadlines crossed a rule's threshold (see the module docstring), in one transaction.
    Returns the notifications added (0 when they were all enqueued before)."""
    rules = [r for r in config.notify.rules if {"deadline.approaching", "deadline.missed"} & set(r.on)]
    if not rules:
        return 0
    from leakwatch.incidents import book

    now = now.astimezone(UTC)
    ctx = _Context(config, targets, regimes, None, secrets)
    added = 0
    with _tx(store, "queue deadline notifications") as con:
        ids = [r[0] for r in con.execute("SELECT incident_id FROM incidents WHERE status <> 'closed' AND merged_into IS NULL "
                                         "ORDER BY incident_id").fetchall()]
        all_facts = book.build_facts_many(con, ids, config, ctx.regimes)  # one pass: this runs every few seconds
        for iid in ids:
            facts = all_facts[iid]
            deadlines = open_deadlines(facts, ctx.regimes, now)
            for d in deadlines:
                due: datetime = d["due"]
                left = due - now
                base = {"regime": d["regime"], "regime_name": _regime_name(ctx.regimes, d["regime"]),
                        "deadline": d["deadline"], "label": d["label"], "due": due, "deadlines": deadlines}
                if left.total_seconds() <= 0:
                    added += _enqueue_for(con, ctx, "deadline.missed", iid, facts, base,
                                          f"{d['regime']}.{d['deadline']}:{_stamp(due)}", now, store.key,
                                          severity=facts.severity, regime=d["regime"])
                    continue
                for rule in rules:
                    if "deadline.approaching" not in rule.on:
                        continue
                    th = _threshold(rule.before, left)
                    if th is None:
                        continue
                    label = _fmt_before(th)
                    added += _enqueue_for(
                        con, ctx, "deadline.approaching", iid, facts, {**base, "before": label},
                        f"{d['regime']}.{d['deadline']}:{label}:{_stamp(due)}", now, store.key,
                        severity=facts.severity, regime=d["regime"], extra_rules=lambda r, rule=rule: r is rule)
    return added


def _threshold(before, left):
    """The threshold whose window ``left`` is in: ``(next smaller threshold, threshold]``."""
    ths = sorted(before, reverse=True)
    for i, th in enumerate(ths):
        lower = ths[i + 1] if i + 1 < len(ths) else None
        if left <= th and (lower is None or left > lower):
            return th
    return None


def _regime_name(regimes, regime_id: str) -> str:
    try:
        return regimes.get(regime_id).name
    except Exception:  # noqa: BLE001 - a name is decoration; the id is in the message anyway
        return regime_id


def enqueue_canary(store, config, target_name: str, now: datetime, *, targets: Mapping[str, Target] | None = None,
                   secrets=None) -> tuple[int, str]:
    """Queue a synthetic canary for ``target_name``: the body says ``"canary": true`` and its
    subject starts with ``[leakwatch canary]``; no incident. Returns (notification id, key)."""
    tcfg = config.notify.target(target_name)
    target = (targets or {}).get(target_name) or _targets_for(config, secrets, [tcfg.name])[tcfg.name]
    canary_id = uuid.uuid4().hex[:12]
    extra = {"canary": True, "target": tcfg.name, "sent_at": now.astimezone(UTC), "canary_id": canary_id}
    key = f"canary:{tcfg.name}:{canary_id}"
    msg = Message(target=tcfg.name, kind=tcfg.kind, event="canary", idempotency_key=key,
                  body=target.render("canary", None, extra), incident_id=None)
    with _tx(store, "queue a canary") as con:
        enqueue(con, msg, now=now)
        nid = notification_id(con, key)
    return int(nid), key


def enqueue_dead_letter(con, config, targets: Mapping[str, Target], *, notification_id: int, incident_id: int | None,
                        target: str, event: str, attempts: int, last_status: int | None, last_error: str | None,
                        now: datetime, notify_config=None) -> int:
    """Queue ``outbox.dead_letter`` notices about a notification that became dead, for the
    rules that ask for them (inside the dispatcher's transaction). Returns the rows added."""
    ncfg = notify_config if notify_config is not None else config.notify
    rules = [r for r in ncfg.rules if "outbox.dead_letter" in r.on]
    if not rules:
        return 0
    facts = None
    if incident_id is not None:
        from leakwatch.config import Config
        from leakwatch.incidents import book

        facts = book.build_facts(con, incident_id, config or Config.default())
    extra = {"notification_id": notification_id, "target": target, "failed_event": event, "attempts": attempts,
             "last_status": last_status, "last_error": last_error}
    added = 0
    for rule in rules:
        for name in rule.targets:
            t = targets.get(name)
            if t is None or name == target:
                continue  # not to the target that just failed: it would die there too
            key = f"outbox.dead_letter:{'' if incident_id is None else incident_id}:{name}:{notification_id}"
            msg = Message(target=name, kind=t.config.kind, event="outbox.dead_letter", idempotency_key=key,
                          body=t.render("outbox.dead_letter", facts, extra), incident_id=incident_id)
            added += int(enqueue(con, msg, now=now))
    return added


def hook_for(config, store, clock=None, *, regimes=None, playbooks=None):
    """The outbox hook for incident changes when ``[[notify.rules]]`` are configured, else None:
    notifications are queued in the change's own transaction (``notify dispatch`` or ``watch``
    delivers them). ``regimes``/``playbooks``: the ones the command works with (``--regimes``,
    ``playbook --dir``), so that a custom playbook's steps notify as its own file says."""
    if not config.notify.rules:
        return None
    return hook(config, store.key, clock=clock, regimes=regimes, playbooks=playbooks)
