"""Incidents in the findings database: grouping findings and alerts into incidents, opening,
merging and splitting them by hand, status changes, clock events, responder facts, playbook step
state and sent notices. Every change is one transaction together with its audit row.

Grouping (:func:`group`): findings at or above ``[incidents] min_severity`` that are in no
incident yet, and alerts likewise, are keyed by ``[incidents] group_by`` (destination vendor,
failure pattern, source system, …). Within a key, items closer than ``window_hours`` to each
other form one run; a run joins the open incident of the same key whose time span it touches
(within the window), else it opens a new incident. Running it twice adds nothing.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import duckdb
import numpy as np

from leakwatch.errors import IncidentError
from leakwatch.store.queries import RECORD_KEY
from leakwatch.incidents import audit
from leakwatch.incidents.facts import CLOCK_EVENTS, STATUSES, Destination, IncidentFacts

SEVERITY_NAMES = ("info", "low", "medium", "high", "critical")

#: format of the log a finding came from → the system it stands for in incident keys.
SYSTEM_OF_FORMAT: Mapping[str, str] = {
    "eventlogfile": "salesforce", "mule": "mulesoft", "heroku": "heroku", "apigw": "api-gateway",
    "combined": "web", "w3c": "web", "jsonl": "application", "logfmt": "application", "csv": "export",
    "regex": "custom", "text": "other",
}

#: Patterns of alerts, in words, for incident titles.
PATTERN_TITLES: Mapping[str, str] = {
    "P1_key_exposed": "AI API key exposed",
    "P1_gateway_bypass": "AI gateway bypassed",
    "P2_bulk_then_ai": "Bulk export followed by AI call",
    "P3_prompt_pii": "Customer PII in AI prompts",
    "P4_cdn_region": "AI content served from a CDN edge outside the allowed regions",
    "bulk_export": "Bulk export of customer records",
    "api_vol": "Unusual API volume",
    "credential_exposure": "Credentials in logs",
    "pii_exposure": "Customer PII in logs",
}

#: How statuses may move: forward only (any number of steps); a closed incident may be reopened
#: to ``triaged`` with a reason.
_STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}

#: Awareness may not be later than "now" by more than this (clock skew between machines).
FUTURE_SLACK = timedelta(minutes=5)


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    if t.tzinfo is None:
        raise ValueError("naive datetime: leakwatch keeps every time in UTC, give a zone")
    return t.astimezone(UTC)


@lru_cache(maxsize=4)
def _rule_tags(rules_key: str | None = None) -> dict[str, tuple[str, ...]]:
    """rule id → tags of the shipped rules (for data categories)."""
    from leakwatch.detect.rules import default_rules_dir, load_rules

    rules, _errors = load_rules([rules_key] if rules_key else [default_rules_dir()])
    return {r.id: tuple(r.tags) for r in rules}


_ENTITY_CATEGORY = {
    "EMAIL_ADDRESS": "contact", "PHONE_NUMBER": "contact", "STREET_ADDRESS": "contact", "POSTAL_CODE": "contact",
    "PERSON_NAME": "identity", "PERSON": "identity", "DATE_OF_BIRTH": "identity",
    "LOCATION": "location", "IP_ADDRESS": "network", "SALESFORCE_RECORD_ID": "salesforce_record",
    "CREDIT_CARD": "financial", "IBAN_CODE": "financial",
}


def category_of(rule_id: str, entity: str, tags: Sequence[str] = ()) -> str:
    """The data category of a finding, from its rule's tags, else its entity."""
    tags = set(tags) or set(_rule_tags().get(rule_id, ()))
    if "special" in tags or "health" in tags:
        return "special"
    if "credential" in tags:
        return "credentials"
    if "national_id" in tags:
        return "national_id"
    if "financial" in tags:
        return "financial"
    if entity in _ENTITY_CATEGORY:
        return _ENTITY_CATEGORY[entity]
    if "contact" in tags:
        return "contact"
    if "network" in tags:
        return "network"
    if entity.endswith(("_KEY", "_TOKEN", "_SECRET", "PASSWORD", "CREDENTIALS", "_KEY_ID", "SESSION_ID")) or entity == "JWT":
        return "credentials"
    return "other"


def _credential_rule_ids() -> list[str]:
    return sorted(rid for rid, tags in _rule_tags().items() if "credential" in tags) or ["-"]


# --- transactions ---------------------------------------------------------------------------


def _tx(store, what: str):
    """One transaction: the change and its audit rows commit together, or nothing does."""
    return store.transaction(what)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    cur = con.execute(sql, list(params))
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def _all(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def get(con: duckdb.DuckDBPyConnection, incident_id: int) -> dict[str, Any]:
    """One incident row; :class:`IncidentError` when there is no such incident."""
    row = _one(con, "SELECT * FROM incidents WHERE incident_id = ?", [incident_id])
    if row is None:
        n = con.execute("SELECT count(*), max(incident_id) FROM incidents").fetchone()
        hint = f" (incidents 1..{n[1]})" if n[0] else " (there are none yet: run 'leakwatch incidents group')"
        raise IncidentError(f"no incident {incident_id}{hint}")
    return row


def list_incidents(con: duckdb.DuckDBPyConnection, *, status: str | None = None,
                   include_closed: bool = True) -> list[dict[str, Any]]:
    """Incidents, most severe and most recent first, with their finding and alert counts."""
    conds, params = [], []
    if status:
        conds.append("i.status = ?")
        params.append(status)
    elif not include_closed:
        conds.append("i.status <> 'closed'")
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    return _all(con, f"""
        SELECT i.*, (SELECT count(*) FROM incident_findings f WHERE f.incident_id = i.incident_id) AS n_findings,
               (SELECT count(*) FROM incident_alerts a WHERE a.incident_id = i.incident_id) AS n_alerts,
               (SELECT "at" FROM incident_clocks c WHERE c.incident_id = i.incident_id AND c.event = 'awareness') AS aware_at
        FROM incidents i {where}
        ORDER BY (i.status = 'closed'), i.severity_rank DESC, i.opened_at DESC, i.incident_id DESC""", params)


# --- aggregates -----------------------------------------------------------------------------


def _refresh(con: duckdb.DuckDBPyConnection, incident_id: int, now: datetime) -> None:
    """Recompute an incident's span and severity from its findings and alerts.

    Severity: the highest of its findings' and alerts' severities, raised to at least high when it
    holds credentials or special-category data or 100+ data subjects, and to critical at 10,000+
    data subjects or special-category data of 100+ subjects.
    """
    from leakwatch.detect.salesforce import SUBJECT_ENTITIES

    subjects = sorted(SUBJECT_ENTITIES)
    marks = ", ".join("?" for _ in subjects)
    creds = _credential_rule_ids()
    cmarks = ", ".join("?" for _ in creds)
    row = con.execute(f"""
        WITH f AS (SELECT * FROM findings WHERE finding_id IN
                   (SELECT finding_id FROM incident_findings WHERE incident_id = ?)),
             a AS (SELECT * FROM alerts WHERE alert_id IN
                   (SELECT alert_id FROM incident_alerts WHERE incident_id = ?))
        SELECT greatest(coalesce((SELECT max(severity_rank) FROM f), 0), coalesce((SELECT max(severity_rank) FROM a), 0)),
               (SELECT count(*) FROM f WHERE rule_id IN ({cmarks})) > 0
                  OR (SELECT count(*) FROM a WHERE pattern = 'P1_key_exposed') > 0,
               (SELECT count(DISTINCT value_hash) FROM f WHERE entity IN ({marks})),
               least((SELECT min(coalesce(ts, created_at)) FROM f), (SELECT min(coalesce(ts, created_at)) FROM a)),
               greatest((SELECT max(coalesce(ts, created_at)) FROM f), (SELECT max(coalesce(ts, created_at)) FROM a))
    """, [incident_id, incident_id, *creds, *subjects]).fetchone()
    rank, has_creds, n_subjects, first, last = row
    special = any(category_of(r, e) == "special" for r, e in con.execute(
        """SELECT DISTINCT rule_id, entity FROM findings WHERE finding_id IN
           (SELECT finding_id FROM incident_findings WHERE incident_id = ?)""", [incident_id]).fetchall())
    if has_creds or special or n_subjects >= 100:
        rank = max(rank, 3)
    if n_subjects >= 10_000 or (special and n_subjects >= 100):
        rank = 4
    con.execute("""UPDATE incidents SET severity = ?, severity_rank = ?, first_seen = ?, last_seen = ?, updated_at = ?
                   WHERE incident_id = ?""", [SEVERITY_NAMES[rank], rank, first, last, now, incident_id])


def _detection_clock(con: duckdb.DuckDBPyConnection, incident_id: int, actor: str) -> None:
    """Set ``detection`` (first storing time of its findings/alerts) and, if unset, ``awareness``
    to the same time: the awareness default the issue asks for."""
    det = con.execute("""SELECT least(
            (SELECT min(created_at) FROM findings WHERE finding_id IN (SELECT finding_id FROM incident_findings WHERE incident_id = ?)),
            (SELECT min(created_at) FROM alerts WHERE alert_id IN (SELECT alert_id FROM incident_alerts WHERE incident_id = ?)))""",
                      [incident_id, incident_id]).fetchone()[0]
    if det is None:
        return
    con.execute("""INSERT OR REPLACE INTO incident_clocks (incident_id, event, "at", set_by, reason)
                   VALUES (?, 'detection', ?, 'leakwatch', 'first finding stored')""", [incident_id, det])
    con.execute("""INSERT INTO incident_clocks (incident_id, event, "at", set_by, reason)
                   SELECT ?, 'awareness', ?, ?, 'default: first detection'
                   WHERE NOT EXISTS (SELECT 1 FROM incident_clocks WHERE incident_id = ? AND event = 'awareness')""",
                [incident_id, det, actor, incident_id])


# --- grouping -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupResult:
    """What :func:`group` did."""

    opened: tuple[int, ...]
    grown: tuple[int, ...]
    findings: int
    alerts: int


def _system_sql(col: str) -> str:
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in SYSTEM_OF_FORMAT.items())
    return f"coalesce(CASE {col} {cases} END, 'unknown')"


def _key_sql(keys: Sequence[str]) -> str:
    parts = ", ".join(f"'{k}': {k}" for k in keys)
    return f"to_json({{{parts}}})::VARCHAR"


def _title(key: Mapping[str, Any], entities: Sequence[str]) -> str:
    pattern = key.get("pattern")
    head = PATTERN_TITLES.get(pattern, "Sensitive data exposed") if pattern else "Sensitive data exposed"
    vendor = key.get("dest_vendor")
    tail = []
    if vendor and vendor != "none":
        tail.append(f"to {vendor}")
    if key.get("dest_region") and key.get("dest_region") != "none":
        tail.append(f"({key['dest_region']})")
    if key.get("system") and key["system"] != "unknown":
        tail.append(f"in {key['system']} logs")
    if entities and pattern in (None, "pii_exposure", "credential_exposure", "P3_prompt_pii"):
        tail.append("— " + ", ".join(entities[:3]) + (" …" if len(entities) > 3 else ""))
    return " ".join([head, *tail])


#: ``notify(con, event, incident_id, extra)``: called inside the transaction of a change, so that
#: what it writes (an outbox row) is stored together with the change or not at all.
NotifyHook = Any


def group(store, config=None, *, now: datetime | None = None, actor: str = "leakwatch",
          notify: NotifyHook = None) -> GroupResult:
    """Put ungrouped findings and alerts into incidents (see the module docstring).

    ``notify`` is called with ``incident.opened`` for each new incident and ``incident.escalated``
    (extra: ``from``, ``to``) for a grown one whose severity rose."""
    from leakwatch.config import Config

    config = config or Config.default()
    icfg = config.incidents
    now = _utc(now) or datetime.now(UTC)
    keys = list(icfg.group_by) or ["dest_vendor"]
    min_rank = SEVERITY_NAMES.index(icfg.min_severity)
    window = timedelta(hours=icfg.window_hours)
    creds = _credential_rule_ids()
    cmarks = ", ".join("?" for _ in creds)
    with _tx(store, "group findings into incidents") as con:
        con.execute("CREATE OR REPLACE TEMP TABLE _lw_cand AS " + f"""
            WITH fpat AS (
                SELECT finding_id, arg_max(pattern, severity_rank) AS pattern,
                       arg_max(dest_vendor, severity_rank) AS alert_vendor FROM (
                    SELECT unnest(CAST(json_extract(evidence, '$.findings') AS BIGINT[])) AS finding_id, pattern, severity_rank,
                           dest_vendor
                    FROM alerts WHERE json_extract(evidence, '$.findings') IS NOT NULL
                    UNION ALL
                    SELECT f.finding_id, a.pattern, a.severity_rank, a.dest_vendor FROM alerts a
                    JOIN findings f ON a.pattern = 'P1_key_exposed'
                         AND f.value_hash = json_extract_string(a.evidence, '$.value_hash')
                ) GROUP BY finding_id
            ), items AS (
                SELECT f.finding_id, NULL::BIGINT AS alert_id, coalesce(f.ts, f.created_at) AS t,
                       -- A key found in a log line has no destination of its own; the alert names
                       -- the vendor the key is for, so the finding and its alert share one incident.
                       coalesce(f.dest_vendor, p.alert_vendor, 'none') AS dest_vendor, coalesce(f.dest_region, 'none') AS dest_region,
                       f.source_path, {_system_sql('f.format')} AS system,
                       coalesce(p.pattern, CASE WHEN f.rule_id IN ({cmarks}) THEN 'credential_exposure' ELSE 'pii_exposure' END) AS pattern,
                       f.entity
                FROM findings f LEFT JOIN fpat p USING (finding_id)
                WHERE f.severity_rank >= ? AND f.finding_id NOT IN (SELECT finding_id FROM incident_findings)
                UNION ALL
                SELECT NULL, a.alert_id, coalesce(a.ts, a.created_at), coalesce(a.dest_vendor, 'none'), coalesce(a.dest_region, 'none'),
                       coalesce(ef.source_path, e.source_path, ''), {_system_sql('coalesce(ef.format, e.format)')}, a.pattern, NULL
                FROM alerts a
                LEFT JOIN findings ef ON ef.finding_id = TRY_CAST(json_extract(a.evidence, '$.findings[0]') AS BIGINT)
                LEFT JOIN events e ON e.event_id = TRY_CAST(json_extract(a.evidence, '$.events[0]') AS BIGINT)
                WHERE a.severity_rank >= ? AND a.alert_id NOT IN (SELECT alert_id FROM incident_alerts)
            )
            SELECT *, {_key_sql(keys)} AS gkey FROM items""", [*creds, min_rank, min_rank])
        # Runs: a new run starts where the gap to the previous item of the same key exceeds the window.
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _lw_runs AS
            SELECT *, sum(CASE WHEN prev IS NULL OR t - prev > INTERVAL {int(window.total_seconds())} SECOND THEN 1 ELSE 0 END)
                      OVER (PARTITION BY gkey ORDER BY t, finding_id, alert_id ROWS UNBOUNDED PRECEDING) AS run
            FROM (SELECT *, lag(t) OVER (PARTITION BY gkey ORDER BY t, finding_id, alert_id) AS prev FROM _lw_cand)""")
        runs = con.execute("""SELECT gkey, run, min(t), max(t), count(finding_id), count(alert_id),
                                     list(DISTINCT entity ORDER BY entity) FILTER (WHERE entity IS NOT NULL)
                              FROM _lw_runs GROUP BY gkey, run ORDER BY gkey, run""").fetchall()
        if not runs:
            con.execute("DROP TABLE _lw_runs")
            con.execute("DROP TABLE _lw_cand")
            return GroupResult((), (), 0, 0)
        open_by_key: dict[str, list[list[Any]]] = {}
        for iid, gk, first, last in con.execute(
                "SELECT incident_id, group_key, first_seen, last_seen FROM incidents "
                "WHERE status <> 'closed' AND merged_into IS NULL AND group_key IS NOT NULL ORDER BY incident_id").fetchall():
            open_by_key.setdefault(gk, []).append([iid, first, last])
        # An incident merged into another is closed, but its kind of finding belongs to the
        # incident it was merged into: later findings join that one (followed through merges of
        # merges) instead of opening the merged one's twin.
        merged = {iid: (gk, into) for iid, gk, into in con.execute(
            "SELECT incident_id, group_key, merged_into FROM incidents WHERE merged_into IS NOT NULL").fetchall()}
        if merged:
            live = {c[0]: c for cands in open_by_key.values() for c in cands}
            # A target opened by hand has no key of its own: it is a candidate only through
            # what was merged into it.
            for iid, first, last in con.execute(
                    "SELECT incident_id, first_seen, last_seen FROM incidents "
                    "WHERE status <> 'closed' AND merged_into IS NULL AND group_key IS NULL").fetchall():
                live.setdefault(iid, [iid, first, last])
            for iid, (gk, into) in merged.items():
                seen = {iid}
                while into in merged and into not in seen:
                    seen.add(into)
                    into = merged[into][1]
                if gk is not None and into in live and all(c is not live[into] for c in open_by_key.get(gk, [])):
                    open_by_key.setdefault(gk, []).append(live[into])
        map_key, map_run, map_iid = [], [], []
        opened, grown = [], []
        for gkey, run, t0, t1, _nf, _na, entities in runs:
            target = None
            for cand in open_by_key.get(gkey, []):
                iid, first, last = cand
                if first is not None and last is not None and t0 <= last + window and t1 >= first - window:
                    target = cand
                    break
            if target is None:
                key = json.loads(gkey)
                iid = con.execute(
                    "INSERT INTO incidents (title, group_key, origin, severity, severity_rank, opened_at, updated_at, first_seen, last_seen)"
                    " VALUES (?, ?, 'auto', 'info', 0, ?, ?, ?, ?) RETURNING incident_id",
                    [_title(key, entities or []), gkey, now, now, t0, t1]).fetchone()[0]
                target = [iid, t0, t1]
                open_by_key.setdefault(gkey, []).append(target)
                opened.append(iid)
            else:
                target[1], target[2] = min(target[1], t0), max(target[2], t1)
                if target[0] not in opened and target[0] not in grown:
                    grown.append(target[0])
            map_key.append(gkey)
            map_run.append(run)
            map_iid.append(target[0])
        con.register("_lw_map", {"gkey": np.array(map_key, dtype=object), "run": np.array(map_run, dtype=np.int64),
                                 "incident_id": np.array(map_iid, dtype=np.int64)})
        try:
            nf = con.execute("""INSERT INTO incident_findings (finding_id, incident_id)
                SELECT r.finding_id, m.incident_id FROM _lw_runs r JOIN _lw_map m USING (gkey, run)
                WHERE r.finding_id IS NOT NULL""").fetchone()[0]
            na = con.execute("""INSERT INTO incident_alerts (alert_id, incident_id)
                SELECT r.alert_id, m.incident_id FROM _lw_runs r JOIN _lw_map m USING (gkey, run)
                WHERE r.alert_id IS NOT NULL""").fetchone()[0]
        finally:
            con.unregister("_lw_map")
        con.execute("DROP TABLE _lw_runs")
        con.execute("DROP TABLE _lw_cand")
        # An alert grouped before whose severity rose since (the pattern detectors update an alert
        # in place when it recurs: an exposed key seen again is critical) raises its incident too.
        raised = [r[0] for r in con.execute(
            """SELECT DISTINCT i.incident_id FROM incidents AS i JOIN incident_alerts AS x USING (incident_id)
               JOIN alerts AS a USING (alert_id)
               WHERE i.status <> 'closed' AND i.merged_into IS NULL AND a.severity_rank > i.severity_rank
               ORDER BY 1""").fetchall()]
        grown = list(grown) + [i for i in raised if i not in grown and i not in opened]
        before = {iid: con.execute("SELECT severity_rank FROM incidents WHERE incident_id = ?", [iid]).fetchone()[0]
                  for iid in grown}
        for iid in [*opened, *grown]:
            _refresh(con, iid, now)
            _detection_clock(con, iid, actor)
        for iid in opened:
            inc = _one(con, "SELECT title, severity, group_key FROM incidents WHERE incident_id = ?", [iid])
            n = con.execute("SELECT (SELECT count(*) FROM incident_findings WHERE incident_id = ?),"
                            " (SELECT count(*) FROM incident_alerts WHERE incident_id = ?)", [iid, iid]).fetchone()
            audit.append(con, store.key, actor=actor, action="incident.opened", incident_id=iid, at=now,
                         detail={"origin": "auto", "title": inc["title"], "severity": inc["severity"],
                                 "group_key": json.loads(inc["group_key"]), "findings": n[0], "alerts": n[1]})
        for iid in grown:
            audit.append(con, store.key, actor=actor, action="incident.grown", incident_id=iid, at=now,
                         detail={"findings_total": con.execute("SELECT count(*) FROM incident_findings WHERE incident_id = ?",
                                                               [iid]).fetchone()[0]})
        if notify is not None:
            for iid in opened:
                notify(con, "incident.opened", iid, {})
            for iid in grown:
                rank = con.execute("SELECT severity_rank FROM incidents WHERE incident_id = ?", [iid]).fetchone()[0]
                if rank > before[iid]:
                    notify(con, "incident.escalated", iid, {"from": SEVERITY_NAMES[before[iid]], "to": SEVERITY_NAMES[rank]})
    return GroupResult(tuple(opened), tuple(grown), int(nf), int(na))


# --- responder actions ----------------------------------------------------------------------


def _times_logged(n_findings: int, n_logged: int | None, alert_counts: list[tuple]) -> bool:
    """Whether an incident's first and last seen come from times its logs carry (its findings'
    or alerts'), not only from when they were scanned; True for an incident with neither."""
    n_alerts, alerts_logged = alert_counts[0] if alert_counts else (0, 0)
    if not n_findings and not n_alerts:
        return True
    return bool(n_logged) or bool(alerts_logged)


def _refuse_merged(inc: Mapping[str, Any], incident_id: int) -> None:
    """A merged incident is closed into another: what is recorded on it would never reach the
    incident that carries its findings, clocks and notices now."""
    if inc.get("merged_into") is not None:
        raise IncidentError(f"incident {incident_id} was merged into {inc['merged_into']}; work on that one")


def _check_awareness(con: duckdb.DuckDBPyConnection, incident_id: int | None, at: datetime, now: datetime,
                     first_seen: datetime | None = None) -> None:
    if at > now + FUTURE_SLACK:
        raise IncidentError(f"awareness time {at.isoformat()} is in the future (now is {now.isoformat(timespec='seconds')})")
    if first_seen is None and incident_id is not None:
        first_seen = con.execute("SELECT first_seen FROM incidents WHERE incident_id = ?", [incident_id]).fetchone()[0]
        n, logged = con.execute(
            "SELECT count(*), count(t) FROM (SELECT f.ts AS t FROM findings AS f JOIN incident_findings AS x "
            "USING (finding_id) WHERE x.incident_id = $id UNION ALL SELECT a.ts FROM alerts AS a "
            "JOIN incident_alerts AS y USING (alert_id) WHERE y.incident_id = $id)", {"id": incident_id}).fetchone()
        if n and not logged:
            first_seen = None  # only scan times known: the leak may well be older than its discovery
        detected = con.execute("""SELECT "at" FROM incident_clocks WHERE incident_id = ? AND event = 'detection'""",
                               [incident_id]).fetchone()
        if first_seen is not None and detected is not None and detected[0] is not None \
                and first_seen.astimezone(UTC) > detected[0].astimezone(UTC):
            # A log time later than the detection (a local time without a zone read as UTC, a
            # skewed clock) says nothing about when the leak began: no bound, as with scan times.
            first_seen = None
    if first_seen is not None and first_seen.astimezone(UTC) > now:
        first_seen = None
    if first_seen is not None and at < first_seen.astimezone(UTC):
        raise IncidentError(
            f"awareness time {at.isoformat()} is before the incident's first finding "
            f"({first_seen.astimezone(UTC).isoformat()}): nobody can be aware of a leak before it happened")


def _clean(text: str | None, what: str) -> str | None:
    """Free text a responder typed, refused when it holds a raw value (see notices_guard)."""
    from leakwatch.incidents.notices_guard import check_free_text

    if text:
        check_free_text(text, what)
    return text


def _clean_value(value: Any, what: str) -> None:
    if isinstance(value, str):
        _clean(value, what)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        # A bare number typed as a fact (4012888888881881) is JSON, not text: it is checked as
        # the digits it is (a notice prints it grouped, 4,012,888,888,881,881, past the guard).
        _clean(str(value), what)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _clean(str(k), what)
            _clean_value(v, what)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _clean_value(v, what)


def open_incident(store, *, title: str, finding_ids: Sequence[int] = (), alert_ids: Sequence[int] = (),
                  aware_at: datetime | None = None, reason: str | None = None, actor: str,
                  now: datetime | None = None, check: Any = None, notify: NotifyHook = None) -> int:
    """Open an incident by hand from findings and/or alerts (which leave any incident they were
    in). ``aware_at`` defaults to the first detection. ``check(con, incident_id, "awareness",
    aware_at)`` may refuse the awareness time inside the transaction (nothing is stored then).
    ``notify`` is told ``incident.opened`` in the same transaction, as :func:`group` does."""
    now = _utc(now) or datetime.now(UTC)
    aware_at = _utc(aware_at)
    if not title.strip():
        raise IncidentError("an incident needs a title (--title)")
    _clean(title, "title")
    _clean(reason, "reason")
    with _tx(store, "open an incident") as con:
        fids = _existing(con, "findings", "finding_id", finding_ids)
        aids = _existing(con, "alerts", "alert_id", alert_ids)
        if not fids and not aids:
            raise IncidentError("give at least one finding (--finding) or alert (--alert) or a scan (--scan) with findings")
        iid = con.execute("INSERT INTO incidents (title, origin, severity, severity_rank, opened_at, updated_at)"
                          " VALUES (?, 'manual', 'info', 0, ?, ?) RETURNING incident_id", [title.strip(), now, now]).fetchone()[0]
        moved = _move(con, iid, fids, aids)
        _refresh(con, iid, now)
        accepted = None
        if aware_at is not None:
            _check_awareness(con, iid, aware_at, now)
            accepted = check(con, iid, "awareness", aware_at) if check is not None else None
            con.execute("""INSERT INTO incident_clocks (incident_id, event, "at", set_by, reason) VALUES (?, 'awareness', ?, ?, ?)""",
                        [iid, aware_at, actor, reason or "set when opened"])
        _detection_clock(con, iid, actor)
        for old in moved:
            _refresh(con, old, now)
        audit.append(con, store.key, actor=actor, action="incident.opened", incident_id=iid, at=now, reason=reason,
                     detail={"origin": "manual", "title": title.strip(), "findings": len(fids), "alerts": len(aids),
                             "taken_from": sorted(moved), "aware_at": aware_at.isoformat() if aware_at else None,
                             **(accepted or {})})
        if notify is not None:
            notify(con, "incident.opened", iid, {})
    return iid


def _existing(con, table: str, col: str, ids: Sequence[int]) -> list[int]:
    ids = sorted({int(i) for i in ids})
    if not ids:
        return []
    too_big = [i for i in ids if not 0 <= i < 2**63]
    if too_big:  # numpy's int64 would overflow (exit 70): no such row can exist
        raise IncidentError(f"no {table[:-1]} with id {too_big[0]}")
    con.register("_lw_ids", {"id": np.array(ids, dtype=np.int64)})
    try:
        found = {r[0] for r in con.execute(f"SELECT {col} FROM {table} WHERE {col} IN (SELECT id FROM _lw_ids)").fetchall()}
    finally:
        con.unregister("_lw_ids")
    missing = [i for i in ids if i not in found]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise IncidentError(f"no {table[:-1]} with id {', '.join(map(str, missing[:5]))}{more}")
    return ids


def _move(con, incident_id: int, finding_ids: Sequence[int], alert_ids: Sequence[int]) -> set[int]:
    """Attach findings/alerts to ``incident_id``; return the incidents they were taken from."""
    moved: set[int] = set()
    for table, col, ids in (("incident_findings", "finding_id", finding_ids), ("incident_alerts", "alert_id", alert_ids)):
        if not ids:
            continue
        con.register("_lw_ids", {"id": np.array(list(ids), dtype=np.int64)})
        try:
            moved |= {r[0] for r in con.execute(
                f"SELECT DISTINCT incident_id FROM {table} WHERE {col} IN (SELECT id FROM _lw_ids) AND incident_id <> ?",
                [incident_id]).fetchall()}
            con.execute(f"DELETE FROM {table} WHERE {col} IN (SELECT id FROM _lw_ids)")
            con.execute(f"INSERT INTO {table} ({col}, incident_id) SELECT id, ? FROM _lw_ids", [incident_id])
        finally:
            con.unregister("_lw_ids")
    return moved


def merge(store, target_id: int, source_ids: Sequence[int], *, actor: str, reason: str | None = None,
          now: datetime | None = None, check: Any = None) -> None:
    """Move everything of ``source_ids`` into ``target_id``; the sources are closed with
    ``merged_into`` set. The target keeps the earliest awareness of all of them; ``check`` as
    for :func:`set_clock`, for each clock that moves earlier."""
    now = _utc(now) or datetime.now(UTC)
    _clean(reason, "reason")
    sources = sorted({int(s) for s in source_ids} - {int(target_id)})
    if not sources:
        raise IncidentError("give at least one other incident to merge into this one")
    with _tx(store, "merge incidents") as con:
        target = get(con, target_id)
        if target["merged_into"] is not None:
            raise IncidentError(f"incident {target_id} was merged into {target['merged_into']}; merge into that one")
        if target["status"] == "closed":
            raise IncidentError(f"incident {target_id} is closed; reopen it (status triaged --reason …) before merging into it")
        for s in sources:
            src = get(con, s)
            if src["merged_into"] is not None:
                raise IncidentError(f"incident {s} was already merged into {src['merged_into']}")
        marks = ", ".join("?" for _ in sources)
        con.execute(f"UPDATE incident_findings SET incident_id = ? WHERE incident_id IN ({marks})", [target_id, *sources])
        con.execute(f"UPDATE incident_alerts SET incident_id = ? WHERE incident_id IN ({marks})", [target_id, *sources])
        # Work already done on a merged incident counts for the whole: notices sent, steps done,
        # responder facts (the target's own facts win on a clash). Moved before the clocks are
        # checked: a notice a source sent on time meets the deadline an earlier awareness sets.
        con.execute(f"UPDATE notices SET incident_id = ? WHERE incident_id IN ({marks})", [target_id, *sources])
        con.execute(f"""INSERT OR IGNORE INTO incident_facts (incident_id, key, value, set_by)
                        SELECT ?, key, value, set_by FROM incident_facts WHERE incident_id IN ({marks})""", [target_id, *sources])
        con.execute(f"""INSERT OR IGNORE INTO playbook_steps
                        (incident_id, playbook_id, step_id, status, reason, evidence, updated_by, updated_at)
                        SELECT ?, playbook_id, step_id, status, reason, evidence, updated_by, updated_at
                        FROM playbook_steps WHERE incident_id IN ({marks})""", [target_id, *sources])
        # The earliest awareness (and other clock) of the merged incidents wins: the organisation
        # was aware of the whole from the moment it was aware of any part. A clock that moves is
        # audited with its old and new time, and passes ``check`` like set_clock (deadlines it
        # puts in the past need the responder's acceptance).
        old_clocks = dict(con.execute("""SELECT event, "at" FROM incident_clocks WHERE incident_id = ?""",
                                      [target_id]).fetchall())
        moved: dict[str, dict[str, str | None]] = {}
        accepted: dict[str, Any] = {}
        for event, at in con.execute(f"""SELECT event, min("at") FROM incident_clocks WHERE incident_id IN (?, {marks})
                                         GROUP BY event""", [target_id, *sources]).fetchall():
            before = old_clocks.get(event)
            if before == at:
                continue
            if check is not None and event != "detection":
                extra = check(con, target_id, event, _utc(at))
                if extra:
                    accepted[event] = extra
            moved[event] = {"from": before.isoformat() if before else None, "to": at.isoformat()}
            con.execute("""INSERT OR REPLACE INTO incident_clocks (incident_id, event, "at", set_by, reason)
                           VALUES (?, ?, ?, ?, ?)""", [target_id, event, at, actor, f"earliest of merged incidents {sources}"])
        con.execute(f"UPDATE incidents SET status = 'closed', merged_into = ?, updated_at = ? WHERE incident_id IN ({marks})",
                    [target_id, now, *sources])
        _refresh(con, target_id, now)
        audit.append(con, store.key, actor=actor, action="incident.merged", incident_id=target_id, at=now, reason=reason,
                     detail={"merged": sources, **({"clocks": moved} if moved else {}),
                             **({"accepted": accepted} if accepted else {})})
        for s in sources:
            audit.append(con, store.key, actor=actor, action="incident.merged_into", incident_id=s, at=now, reason=reason,
                         detail={"into": target_id})


SPLIT_FIELDS = ("dest_vendor", "dest_region", "entity", "source_path", "format", "rule_id")


def split(store, incident_id: int, *, title: str, finding_ids: Sequence[int] = (),
          where: Mapping[str, str] | None = None, actor: str, reason: str | None = None,
          now: datetime | None = None, notify: NotifyHook = None) -> int:
    """Move some findings of an incident (by id, or by ``where`` field = value) to a new incident;
    the new one inherits the clock events. Returns the new incident's id. ``notify`` is told
    ``incident.opened`` for the new incident."""
    now = _utc(now) or datetime.now(UTC)
    _clean(title, "title")
    _clean(reason, "reason")
    where = dict(where or {})
    for k in where:
        if k not in SPLIT_FIELDS:
            raise IncidentError(f"cannot split by {k!r}; use one of {', '.join(SPLIT_FIELDS)}")
    if not finding_ids and not where:
        raise IncidentError("say which findings move: --finding IDS or --where FIELD=VALUE")
    with _tx(store, "split an incident") as con:
        inc = get(con, incident_id)
        conds = ["finding_id IN (SELECT finding_id FROM incident_findings WHERE incident_id = ?)"]
        params: list[Any] = [incident_id]
        if finding_ids:
            ids = sorted({int(i) for i in finding_ids})
            conds.append(f"finding_id IN ({', '.join('?' for _ in ids)})")
            params += ids
        for k, v in where.items():
            conds.append(f"{k} = ?")
            params.append(v)
        chosen = [r[0] for r in con.execute(f"SELECT finding_id FROM findings WHERE {' AND '.join(conds)}", params).fetchall()]
        if not chosen:
            raise IncidentError(f"no finding of incident {incident_id} matches; nothing was split")
        total = con.execute("SELECT count(*) FROM incident_findings WHERE incident_id = ?", [incident_id]).fetchone()[0]
        if len(chosen) == total and not con.execute("SELECT count(*) FROM incident_alerts WHERE incident_id = ?",
                                                     [incident_id]).fetchone()[0]:
            raise IncidentError(f"that is every finding of incident {incident_id}; rename it instead of splitting")
        new = con.execute("INSERT INTO incidents (title, origin, status, severity, severity_rank, opened_at, updated_at)"
                          " VALUES (?, 'split', ?, 'info', 0, ?, ?) RETURNING incident_id",
                          [title.strip() or f"{inc['title']} (split)", inc["status"], now, now]).fetchone()[0]
        _move(con, new, chosen, [])
        con.execute("""INSERT INTO incident_clocks (incident_id, event, "at", set_by, reason)
                       SELECT ?, event, "at", set_by, 'inherited from incident ' || ? FROM incident_clocks WHERE incident_id = ?""",
                    [new, incident_id, incident_id])
        # What responders established about the incident holds for its parts too (significant,
        # likely consequences, data categories): NIS2 read 'undecided' on the split-off part.
        # Counts (data_subjects, records, subjects.XX) were of the whole, and are not copied.
        facts = con.execute("""INSERT INTO incident_facts (incident_id, key, value, set_by)
                               SELECT ?, key, value, set_by FROM incident_facts WHERE incident_id = ?
                                 AND key NOT IN ('data_subjects', 'records') AND NOT starts_with(key, 'subjects.')
                               RETURNING key""", [new, incident_id]).fetchall()
        _refresh(con, new, now)
        _refresh(con, incident_id, now)
        audit.append(con, store.key, actor=actor, action="incident.split", incident_id=incident_id, at=now, reason=reason,
                     detail={"new_incident": new, "findings_moved": len(chosen), "where": where,
                             **({"facts_copied": sorted(k for (k,) in facts)} if facts else {})})
        audit.append(con, store.key, actor=actor, action="incident.opened", incident_id=new, at=now, reason=reason,
                     detail={"origin": "split", "from": incident_id, "findings": len(chosen)})
        if notify is not None:
            notify(con, "incident.opened", new, {})
    return new


def set_status(store, incident_id: int, status: str, *, actor: str, reason: str | None = None,
               now: datetime | None = None, action: str = "incident.status") -> None:
    """Move an incident along ``detected → triaged → contained → notified → closed``. Moving
    back is refused, except reopening a closed incident to ``triaged`` with a reason."""
    now = _utc(now) or datetime.now(UTC)
    _clean(reason, "reason")
    if status not in STATUSES:
        raise IncidentError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    with _tx(store, "change an incident's status") as con:
        inc = get(con, incident_id)
        old = inc["status"]
        _refuse_merged(inc, incident_id)
        if status == old:
            raise IncidentError(f"incident {incident_id} is already {old}")
        if _STATUS_RANK[status] < _STATUS_RANK[old]:
            if not (old == "closed" and status == "triaged" and reason):
                raise IncidentError(f"incident {incident_id} is {old}; status only moves forward "
                                    f"({' → '.join(STATUSES)}); a closed incident can be reopened to triaged with --reason")
        con.execute("UPDATE incidents SET status = ?, updated_at = ? WHERE incident_id = ?", [status, now, incident_id])
        audit.append(con, store.key, actor=actor, action=action, incident_id=incident_id, at=now, reason=reason,
                     detail={"from": old, "to": status})


def acknowledge(store, incident_id: int, *, actor: str, reason: str | None = None, now: datetime | None = None) -> None:
    """A responder has seen the incident: ``detected`` → ``triaged`` (recorded as ``ack``)."""
    with _tx(store, "read an incident") as con:
        inc = get(con, incident_id)
    _refuse_merged(inc, incident_id)
    if inc["status"] != "detected":
        raise IncidentError(f"incident {incident_id} is {inc['status']}, not detected: it was acknowledged already")
    set_status(store, incident_id, "triaged", actor=actor, reason=reason, now=now, action="incident.ack")


def set_clock(store, incident_id: int, event: str, at: datetime, *, actor: str, reason: str,
              now: datetime | None = None, check: Any = None) -> datetime | None:
    """Set a clock event (``awareness``, ``classification``, …) with a reason; returns the old
    value. ``check(con, incident_id, event, at)`` may raise to refuse (e.g. a deadline already
    past); it runs inside the transaction, so a refusal changes nothing."""
    now = _utc(now) or datetime.now(UTC)
    at = _utc(at)
    if event not in CLOCK_EVENTS or event == "detection":
        valid = [e for e in CLOCK_EVENTS if e != "detection"]
        raise IncidentError(f"unknown clock event {event!r}; one of {', '.join(valid)}")
    if not reason or not reason.strip():
        raise IncidentError("say why (--reason): the regulator may ask how the time was established")
    _clean(reason, "reason")
    with _tx(store, f"set the {event} time") as con:
        inc = get(con, incident_id)
        _refuse_merged(inc, incident_id)
        if inc.get("status") == "closed":
            # A closed incident's clocks are its record: reopen it to change them.
            raise IncidentError(f"incident {incident_id} is closed; reopen it (incidents status {incident_id} "
                                f"triaged --reason …) before changing its {event} time")
        if event == "awareness":
            _check_awareness(con, incident_id, at, now)
        elif at > now + FUTURE_SLACK:
            raise IncidentError(f"{event} time {at.isoformat()} is in the future")
        old = con.execute("""SELECT "at" FROM incident_clocks WHERE incident_id = ? AND event = ?""",
                          [incident_id, event]).fetchone()
        if old is not None and old[0] == at:
            raise IncidentError(f"incident {incident_id}: {event} is already {at.isoformat()}; nothing to change")
        extra = check(con, incident_id, event, at) if check is not None else None
        con.execute("""INSERT OR REPLACE INTO incident_clocks (incident_id, event, "at", set_by, reason) VALUES (?, ?, ?, ?, ?)""",
                    [incident_id, event, at, actor, reason.strip()])
        con.execute("UPDATE incidents SET updated_at = ? WHERE incident_id = ?", [now, incident_id])
        _supersede_deadline_notices(con, store.key, incident_id, event, actor, now)
        audit.append(con, store.key, actor=actor, action=f"clock.{event}", incident_id=incident_id, at=now, reason=reason.strip(),
                     detail={"from": old[0].astimezone(UTC).isoformat() if old else None, "to": at.isoformat(),
                             **(extra or {})})
    return old[0] if old else None


def _supersede_deadline_notices(con, key: bytes, incident_id: int, event: str, actor: str, now: datetime) -> None:
    """Withdraw the incident's deadline notices still waiting to be sent: they name due times
    the changed clock moved (a SOC would be told the old deadline). Only rows never attempted
    go (one that was tried may have arrived); the next deadline pass queues the new ones. Each
    withdrawal is in the audit trail."""
    gone = con.execute("""DELETE FROM outbox WHERE incident_id = ? AND status = 'pending' AND attempts = 0
                          AND event IN ('deadline.approaching', 'deadline.missed')
                          RETURNING notification_id, target, event""", [incident_id]).fetchall()
    for nid, target, ev in sorted(gone):
        audit.append(con, key, actor=actor, action="notify.superseded", incident_id=incident_id, at=now,
                     detail={"notification": nid, "target": target, "event": ev, "because": f"clock.{event}"})


#: Facts the shipped regimes read as yes or no (their ``responder:`` conditions).
YES_NO_FACTS = frozenset({"significant", "material", "high_risk", "significant_harm", "real_risk_of_significant_harm",
                          "cross_border", "suspected_malicious", "major"})
_JURISDICTION_CODE = re.compile(r"(?:EU|EEA|[A-Z]{2}(?:-[A-Z0-9]{1,3})?)\Z")
_MAX_SUBJECTS = 10_000_000_000


def _check_jurisdiction(code: Any, key: str) -> None:
    if not isinstance(code, str) or not _JURISDICTION_CODE.match(code.strip().upper()):
        raise IncidentError(f"fact {key}: {code!r} is not a jurisdiction code: write a two-letter country code "
                            f"(DE, FR, UK), EU, EEA or a state as US-CA")
    if code.strip().upper() == "GB":
        # Regimes name the United Kingdom UK: GB would silently match none of them.
        raise IncidentError(f"fact {key}: write the United Kingdom as UK (the code the regimes use), not GB")


def check_fact(key: str, value: Any) -> tuple[str, Any]:
    """Refuse a fact value the regimes would misread: a yes/no fact that is not true or false
    ("maybe" counted as yes), jurisdictions that are no codes ("GB" made UK GDPR not apply), a
    count of data subjects that is not a whole number from 0. Returns the key and value as the
    regimes read them (jurisdiction codes trimmed and upper-cased: " fr" matched no regime)."""
    if key in YES_NO_FACTS and not isinstance(value, bool):
        raise IncidentError(f"fact {key}: expected yes or no (true or false), got {value!r}")
    if key == "subject_jurisdictions":
        if not isinstance(value, list) or not value:
            raise IncidentError(f"fact {key}: expected a JSON list of jurisdiction codes such as "
                                f"'[\"EU\", \"UK\", \"US-CA\"]', got {value!r}")
        for code in value:
            _check_jurisdiction(code, key)
        value = list(dict.fromkeys(code.strip().upper() for code in value))
    elif key == "data_subjects":
        # Regimes compare it with thresholds (more than 500, at least 500): a number, not words.
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_SUBJECTS:
            raise IncidentError(f"fact {key}: expected the approximate number of data subjects (a whole number "
                                f"from 0, e.g. 250000), got {value!r}")
    elif key == "data_categories":
        if not (isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(x, str) for x in value))):
            raise IncidentError(f"fact {key}: expected a text or a JSON list of texts such as '[\"special\", "
                                f"\"health records\"]', got {value!r}")
    elif key.startswith("subjects."):
        code = key.split(".", 1)[1]
        _check_jurisdiction(code, key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_SUBJECTS:
            raise IncidentError(f"fact {key}: expected a number of data subjects (a whole number from 0), "
                                f"got {value!r}")
        key = f"subjects.{code.strip().upper()}"
    return key, value


def set_fact(store, incident_id: int, key: str, value: Any, *, actor: str, now: datetime | None = None) -> None:
    """Record a responder fact (``likely_consequences``, ``measures``, ``significant``,
    ``material``, ``subjects.US-CA``, …) used by regimes and notices."""
    now = _utc(now) or datetime.now(UTC)
    if not key or not all(c.isalnum() or c in "._-" for c in key):
        raise IncidentError(f"fact name {key!r}: letters, digits, '.', '_' and '-' only")
    key, value = check_fact(key, value)
    _clean_value(value, f"fact {key}")
    with _tx(store, "record a fact") as con:
        _refuse_merged(get(con, incident_id), incident_id)
        con.execute("INSERT OR REPLACE INTO incident_facts (incident_id, key, value, set_by) VALUES (?, ?, ?, ?)",
                    [incident_id, key, json.dumps(value), actor])
        con.execute("UPDATE incidents SET updated_at = ? WHERE incident_id = ?", [now, incident_id])
        audit.append(con, store.key, actor=actor, action="fact.set", incident_id=incident_id, at=now,
                     detail={"key": key, "value": value})


def record_notice(store, incident_id: int, regime_id: str, kind: str, *, sent_at: datetime, actor: str,
                  deadline_id: str | None = None, reference: str | None = None, now: datetime | None = None) -> int:
    """Record that a notice went out (the ``notified:`` events deadlines are met by)."""
    now = _utc(now) or datetime.now(UTC)
    _clean(reference, "reference")
    sent_at = _utc(sent_at)
    if sent_at > now + FUTURE_SLACK:
        raise IncidentError(f"sent time {sent_at.isoformat()} is in the future")
    with _tx(store, "record a sent notice") as con:
        _refuse_merged(get(con, incident_id), incident_id)
        row = con.execute("""SELECT "at" FROM incident_clocks WHERE incident_id = ? AND event = 'awareness'""",
                          [incident_id]).fetchone()
        if row is not None and row[0] is not None and sent_at < row[0].astimezone(UTC):
            # A deadline counts from awareness: a notice "sent" before it is a typo, and would
            # mark a deadline met that the real, later notice may have missed.
            raise IncidentError(f"sent time {sent_at.isoformat()} is before the incident's awareness "
                                f"({row[0].astimezone(UTC).isoformat()}): a notice cannot go out before "
                                "anyone knew of the breach; check --at (or set-awareness first)")
        nid = con.execute("""INSERT INTO notices (incident_id, regime_id, kind, deadline_id, sent_at, sent_by, reference)
                             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING notice_id""",
                          [incident_id, regime_id, kind, deadline_id, sent_at, actor, reference]).fetchone()[0]
        audit.append(con, store.key, actor=actor, action="notice.sent", incident_id=incident_id, at=now,
                     detail={"regime": regime_id, "kind": kind, "deadline": deadline_id, "sent_at": sent_at.isoformat(),
                             "reference": reference})
    return nid


def step_states(con: duckdb.DuckDBPyConnection, incident_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    """(playbook id, step id) → stored state of the steps touched so far."""
    return {(r["playbook_id"], r["step_id"]): r for r in _all(
        con, "SELECT * FROM playbook_steps WHERE incident_id = ?", [incident_id])}


def set_step(store, incident_id: int, playbook_id: str, step_id: str, status: str, *, actor: str,
             evidence: Mapping[str, str] | None = None, reason: str | None = None,
             now: datetime | None = None, check: Any = None, notify: NotifyHook = None) -> str:
    """Store a playbook step's new state (``check(old_status)`` validates the transition inside
    the transaction); returns the old state. ``notify`` is called with ``step.<status>`` (extra:
    ``playbook``, ``step``, ``from``) in the same transaction."""
    now = _utc(now) or datetime.now(UTC)
    _clean(reason, "reason")
    _clean_value(dict(evidence or {}), "evidence")
    with _tx(store, "update a playbook step") as con:
        inc = get(con, incident_id)
        # A merged incident's work goes on in the one it was merged into; a closed one's steps
        # are its record (as its clocks are).
        _refuse_merged(inc, incident_id)
        if inc.get("status") == "closed":
            raise IncidentError(f"incident {incident_id} is closed; reopen it (incidents status {incident_id} "
                                f"triaged --reason …) before changing its playbook steps")
        row = con.execute("SELECT status FROM playbook_steps WHERE incident_id = ? AND playbook_id = ? AND step_id = ?",
                          [incident_id, playbook_id, step_id]).fetchone()
        old = row[0] if row else "pending"
        if check is not None:
            check(old)
        con.execute("""INSERT OR REPLACE INTO playbook_steps
                       (incident_id, playbook_id, step_id, status, reason, evidence, updated_by, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    [incident_id, playbook_id, step_id, status, reason, json.dumps(dict(evidence or {})), actor, now])
        con.execute("UPDATE incidents SET updated_at = ? WHERE incident_id = ?", [now, incident_id])
        audit.append(con, store.key, actor=actor, action=f"step.{status}", incident_id=incident_id, at=now, reason=reason,
                     detail={"playbook": playbook_id, "step": step_id, "from": old, "evidence": dict(evidence or {})})
        if notify is not None:
            notify(con, f"step.{status}", incident_id, {"playbook": playbook_id, "step": step_id, "from": old})
    return old


# --- facts ------------------------------------------------------------------------------------


def build_facts(con: duckdb.DuckDBPyConnection, incident_id: int, config=None, regimes=None) -> IncidentFacts:
    """The :class:`IncidentFacts` of one incident: aggregates of its findings and alerts, its
    clocks, responder facts, steps done and notices sent. Raw values are never read.
    :class:`IncidentError` when there is no such incident."""
    iid = int(incident_id)
    facts = build_facts_many(con, [iid], config, regimes)
    if iid not in facts:
        get(con, iid)  # raises IncidentError, naming the incidents there are
    return facts[iid]


def build_facts_many(con: duckdb.DuckDBPyConnection, incident_ids: Sequence[int], config=None,
                     regimes=None) -> dict[int, IncidentFacts]:
    """:func:`build_facts` of several incidents at once: each aggregate is one query grouped by
    incident, so a list of 60 incidents over a million findings reads the findings table a
    handful of times instead of ten times per incident (6.4 s → well under a second). Ids with no
    incident are left out."""
    from leakwatch.config import Config
    from leakwatch.detect.salesforce import SUBJECT_ENTITIES

    config = config or Config.default()
    ids = sorted({int(i) for i in incident_ids})
    if not ids:
        return {}
    idl = ", ".join("?" for _ in ids)
    incs = {r["incident_id"]: r for r in _all(con, f"SELECT * FROM incidents WHERE incident_id IN ({idl})", ids)}
    ids = [i for i in ids if i in incs]
    if not ids:
        return {}
    idl = ", ".join("?" for _ in ids)

    def grouped(sql: str, params: Sequence[Any] = ()) -> dict[int, list[tuple]]:
        out: dict[int, list[tuple]] = {i: [] for i in ids}
        for row in con.execute(sql, [*params, *ids]).fetchall():
            out[row[0]].append(row[1:])
        return out

    # Each finding belongs to at most one incident (incident_findings' key): a join, no duplicates.
    # Lists are aggregated DISTINCT: list() of every finding of 60 incidents over a million
    # findings ran out of the console's 160 MB DuckDB budget. Distinct records and values are
    # counted by their 64-bit hash (a collision among millions: ~1e-7), which keeps the hash
    # sets of a million entries at a fifth of the memory of paths and hex strings.
    fjoin = f"findings AS f JOIN incident_findings AS x USING (finding_id) WHERE x.incident_id IN ({idl})"
    subjects = sorted(SUBJECT_ENTITIES)
    marks = ", ".join("?" for _ in subjects)
    agg = grouped(f"""
        SELECT x.incident_id, count(*), count(DISTINCT {RECORD_KEY}),
               count(DISTINCT hash(value_hash)) FILTER (WHERE entity IN ({marks})),
               list_sort(list(DISTINCT entity)),
               list_sort(list(DISTINCT sf_object) FILTER (WHERE sf_object IS NOT NULL)),
               list_sort(list(DISTINCT sf_object || '.' || sf_field) FILTER (WHERE sf_field IS NOT NULL)),
               list_sort(list(DISTINCT format) FILTER (WHERE format IS NOT NULL)),
               count(ts)
        FROM {fjoin} GROUP BY x.incident_id""", subjects)
    rule_entities = grouped(f"SELECT DISTINCT x.incident_id, rule_id, entity FROM {fjoin}")
    dest_rows = grouped(f"""
        SELECT x.incident_id, dest_vendor, dest_region, dest_jurisdiction, bool_or(coalesce(residency_violation, false)),
               count(DISTINCT hash(value_hash)) FILTER (WHERE entity IN ({marks})), count(DISTINCT {RECORD_KEY})
        FROM {fjoin} AND dest_vendor IS NOT NULL GROUP BY ALL
        ORDER BY x.incident_id, 5 DESC, 6 DESC, 2, 3, 4""", subjects)
    alert_rows = grouped(f"""
        SELECT DISTINCT x.incident_id, pattern, dest_vendor, dest_region
        FROM alerts JOIN incident_alerts AS x USING (alert_id) WHERE x.incident_id IN ({idl})
        ORDER BY ALL""")
    alert_times = grouped(f"""
        SELECT x.incident_id, count(*), count(ts)
        FROM alerts JOIN incident_alerts AS x USING (alert_id) WHERE x.incident_id IN ({idl}) GROUP BY ALL""")
    masked_rows = grouped(f"""
        SELECT incident_id, masked FROM (SELECT DISTINCT x.incident_id, entity, masked FROM {fjoin} AND masked IS NOT NULL)
        QUALIFY row_number() OVER (PARTITION BY incident_id ORDER BY entity, masked) <= 5
        ORDER BY incident_id, entity, masked""")
    clock_rows = grouped(f'SELECT incident_id, event, "at" FROM incident_clocks WHERE incident_id IN ({idl})')
    fact_rows = grouped(f"SELECT incident_id, key, value FROM incident_facts WHERE incident_id IN ({idl})")
    step_rows = grouped(f"""SELECT incident_id, step_id, updated_at FROM playbook_steps
                            WHERE incident_id IN ({idl}) AND status = 'done' ORDER BY incident_id, updated_at""")
    notice_rows = grouped(f"""SELECT incident_id, regime_id, deadline_id, min(sent_at) FROM notices
                              WHERE incident_id IN ({idl}) GROUP BY ALL""")
    out: dict[int, IncidentFacts] = {}
    for iid in ids:
        inc = incs[iid]
        n_findings, n_records, n_subjects, entities, objects, fields, formats, n_logged = (
            agg[iid][0] if agg[iid] else (0, 0, 0, None, None, None, None, None))
        categories = sorted({category_of(r, e) for r, e in rule_entities[iid]})
        dests = [Destination(vendor=v, region=r, jurisdiction=j, residency_violation=bool(rv), data_subjects=int(ds),
                             records=int(rc)) for v, r, j, rv, ds, rc in dest_rows[iid]]
        patterns = sorted({p for p, _, _ in alert_rows[iid]})
        if inc["group_key"]:
            p = json.loads(inc["group_key"]).get("pattern")
            if p and p not in patterns:
                patterns.append(p)
        known = {(d.vendor, d.region) for d in dests}
        for _p, v, r in alert_rows[iid]:
            if v and (v, r) not in known:
                dests.append(Destination(vendor=v, region=r, jurisdiction=None, residency_violation=False))
                known.add((v, r))
        masked = [m for (m,) in masked_rows[iid]]
        clocks = {e: at.astimezone(UTC) for e, at in clock_rows[iid]}
        if "awareness" not in clocks:  # an incident with nothing in it yet: aware when opened
            clocks["awareness"] = inc["opened_at"].astimezone(UTC)
        clocks.setdefault("detection", clocks["awareness"])
        responder = {k: json.loads(v) for k, v in fact_rows[iid]}
        by_j = {k.split(".", 1)[1]: int(v) for k, v in responder.items()
                if k.startswith("subjects.") and isinstance(v, (int, float, str)) and str(v).isdigit()}
        if isinstance(responder.get("subject_jurisdictions"), list):
            subj_j = tuple(str(x).upper() for x in responder["subject_jurisdictions"])
        elif regimes is not None:
            from leakwatch.incidents.regimes import subject_jurisdictions

            subj_j = tuple(subject_jurisdictions(entities or [], config.organisation, regimes))
        else:
            subj_j = tuple(config.organisation.customer_jurisdictions)
        steps_done = tuple((st, st, at.astimezone(UTC)) for st, at in step_rows[iid])
        sent: dict[str, datetime] = {}
        for regime_id, deadline_id, at in notice_rows[iid]:
            at = at.astimezone(UTC)
            # "<regime>:<deadline>" meets that deadline; a bare "<regime>" (a notice recorded
            # without a deadline) meets the regime's first one only.
            key = f"{regime_id}:{deadline_id}" if deadline_id else regime_id
            sent[key] = min(at, sent.get(key, at))
        systems = {SYSTEM_OF_FORMAT.get(f, "other") for f in formats or []}
        if "P4_cdn_region" in patterns:  # CDN access logs are read as web logs
            systems.add("cdn")
        out[iid] = IncidentFacts(
            incident_id=iid, title=inc["title"], status=inc["status"], severity=inc["severity"],
            opened_at=inc["opened_at"].astimezone(UTC), clock_events=clocks,
            first_seen=inc["first_seen"].astimezone(UTC) if inc["first_seen"] else None,
            last_seen=inc["last_seen"].astimezone(UTC) if inc["last_seen"] else None,
            # Findings whose lines carry no time of their own are placed at their scan's time:
            # good for ordering, no evidence of when the breach happened.
            times_logged=_times_logged(n_findings, n_logged, alert_times[iid]),
            entities=tuple(entities or ()), categories=tuple(categories), objects=tuple(objects or ()),
            fields=tuple(fields or ()), findings=int(n_findings), records=int(n_records),
            data_subjects=int(n_subjects), destinations=tuple(dests), patterns=tuple(patterns),
            systems=tuple(sorted(systems)), subject_jurisdictions=subj_j, subjects_by_jurisdiction=by_j,
            masked_examples=tuple(masked), responder=responder, steps_done=steps_done, notices_sent=sent,
            org=config.organisation,
        )
    return out
