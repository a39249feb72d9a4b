"""The audit trail: one append-only row per thing a responder or leakwatch did to an incident,
chained so that editing, deleting or truncating rows is detected.

Each row's ``row_hash`` is HMAC-SHA256, under the database key (``FILE.key``), of the row's own
content and the previous row's ``row_hash``; ``audit_head`` holds an HMAC of the row count and
the last hash. Without the key nobody can write a row, or a shorter chain, that verifies. With
the key (it is on the same machine) a determined insider could rewrite the whole chain: keep a
copy of ``leakwatch audit verify``'s head line somewhere else to detect that too. The same copy
is what catches a roll-back without the key: putting back an earlier state of both tables (from
a backup of the file) is a chain that verifies, only shorter than the head you kept; a write
refuses a head or last row whose HMAC is not this database's, and verify names every incident
whose opening row is gone, but neither can know rows that were never seen.
"""
from __future__ import annotations

import getpass
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

GENESIS = "0" * 64


def current_actor(explicit: str | None = None) -> str:
    """Who is acting: ``--as`` when given, else ``$LEAKWATCH_USER``, else the login name."""
    if explicit and explicit.strip():
        return explicit.strip()
    env = os.environ.get("LEAKWATCH_USER", "").strip()
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid-{os.getuid()}"


def _utc_text(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical(seq: int, at: datetime, actor: str, incident_id: int | None, action: str,
               detail: str, reason: str | None, prev_hash: str) -> bytes:
    # A JSON array: unambiguous field boundaries whatever the text contains.
    return json.dumps([seq, _utc_text(at), actor, incident_id, action, detail, reason, prev_hash],
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, "sha256").hexdigest()


def _head_mac(key: bytes, n_rows: int, last_hash: str) -> str:
    return _mac(key, f"audit-head:{n_rows}:{last_hash}".encode())


def append(con: duckdb.DuckDBPyConnection, key: bytes, *, actor: str, action: str,
           incident_id: int | None = None, detail: Mapping[str, Any] | None = None,
           reason: str | None = None, at: datetime | None = None) -> int:
    """Append one audit row inside the caller's transaction; returns its sequence number.

    ``detail`` must hold masked values and ids only (it is stored as JSON and printed by
    ``leakwatch audit``). The caller commits, so the audit row and the change it records are
    stored together or not at all.
    """
    at = at or datetime.now(UTC)
    detail_text = json.dumps(dict(detail or {}), sort_keys=True, ensure_ascii=False, default=str)
    head = con.execute("SELECT n_rows, last_hash, mac FROM audit_head WHERE id = 1").fetchone()
    last = con.execute('SELECT seq, "at", actor, incident_id, action, detail, reason, prev_hash, row_hash'
                       " FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq = (last[0] if last else 0) + 1
    prev = last[-1] if last else GENESIS
    # The head and the last row must carry this database's HMACs: a trail cut at the end with
    # its head rewritten (the count and the last hash are easy to copy, the MAC is not) would
    # otherwise be covered by the fresh head this append writes.
    forged = head is not None and not hmac.compare_digest(_head_mac(key, head[0], head[1]), head[2] or "")
    forged = forged or (last is not None and not hmac.compare_digest(_mac(key, _canonical(*last[:8])), last[8] or ""))
    if forged or (head is None and last is not None) or (head is not None and (head[0] != seq - 1 or head[1] != prev)):
        # Appending to a damaged chain would hide the damage behind a fresh, valid head.
        from leakwatch.errors import StoreError

        raise StoreError("the audit trail does not match its head (rows were changed or removed); "
                         "run 'leakwatch audit verify' and preserve the database as evidence")
    row_hash = _mac(key, _canonical(seq, at, actor, incident_id, action, detail_text, reason, prev))
    con.execute(
        'INSERT INTO audit_log (seq, "at", actor, incident_id, action, detail, reason, prev_hash, row_hash)'
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [seq, at.astimezone(UTC), actor, incident_id, action, detail_text, reason, prev, row_hash],
    )
    con.execute(
        "INSERT OR REPLACE INTO audit_head (id, n_rows, last_hash, mac) VALUES (1, ?, ?, ?)",
        [seq, row_hash, _head_mac(key, seq, row_hash)],
    )
    return seq


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`: ``ok`` and, when not, one message per break found."""

    ok: bool
    n_rows: int
    last_hash: str
    problems: tuple[str, ...]


def verify(con: duckdb.DuckDBPyConnection, key: bytes) -> VerifyResult:
    """Recompute the whole chain. Finds edited rows (content no longer matches its HMAC),
    deleted or inserted rows (sequence gaps, previous-hash mismatches) and a truncated tail or
    forged head (the head's HMAC or count)."""
    problems: list[str] = []
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name IN ('audit_log', 'audit_head') "
        "AND schema_name = 'main' AND NOT temporary").fetchall()}
    if present != {"audit_log", "audit_head"}:
        gone = sorted({"audit_log", "audit_head"} - present)
        return VerifyResult(ok=False, n_rows=0, last_hash="", problems=(
            f"the audit trail's table(s) {', '.join(gone)} are missing (dropped from the database)",))
    prev = GENESIS
    expected_seq = 1
    n = 0
    rows = con.execute(
        'SELECT seq, "at", actor, incident_id, action, detail, reason, prev_hash, row_hash'
        " FROM audit_log ORDER BY seq"
    ).fetchall()
    for seq, at, actor, incident_id, action, detail, reason, prev_hash, row_hash in rows:
        n += 1
        if seq != expected_seq:
            problems.append(f"row {seq}: expected row {expected_seq} here (rows {expected_seq}..{seq - 1} are missing)"
                            if seq > expected_seq else f"row {seq}: out of sequence")
        if prev_hash != prev:
            problems.append(f"row {seq}: its previous-hash does not match row {seq - 1} (a row before it was changed or removed)")
        want = _mac(key, _canonical(seq, at, actor, incident_id, action, detail, reason, prev_hash))
        if not hmac.compare_digest(want, row_hash):
            problems.append(f"row {seq}: content does not match its HMAC (the row was edited)")
        prev = row_hash
        expected_seq = seq + 1
    head = con.execute("SELECT n_rows, last_hash, mac FROM audit_head WHERE id = 1").fetchone()
    n_incidents = con.execute("SELECT count(*) FROM incidents").fetchone()[0]
    # Every incident is opened with an audit row: one without it was cut from the trail (also
    # after a wiped trail was appended to).
    unopened = [r[0] for r in con.execute(
        "SELECT i.incident_id FROM incidents AS i WHERE NOT EXISTS (SELECT 1 FROM audit_log AS a "
        "WHERE a.incident_id = i.incident_id AND a.action = 'incident.opened') ORDER BY 1").fetchall()]
    if unopened and n:
        shown = ", ".join(str(i) for i in unopened[:10]) + (" …" if len(unopened) > 10 else "")
        problems.append(f"{len(unopened)} incident(s) have no 'incident.opened' row (the trail was cut): {shown}")
    if head is None:
        if n:
            problems.append("the audit head is missing")
        elif n_incidents:
            # Every incident is opened with an audit row: an empty trail beside incidents was wiped.
            problems.append(f"the audit trail is empty but {n_incidents} incident(s) exist (the trail was wiped)")
    else:
        h_rows, h_last, h_mac = head
        if not hmac.compare_digest(_head_mac(key, h_rows, h_last), h_mac):
            problems.append("the audit head's HMAC is wrong (the head was edited)")
        if h_rows != n or h_last != prev:
            problems.append(f"the head records {h_rows} rows ending in {h_last[:12]}…, the table has {n} "
                            f"ending in {prev[:12]}… (rows were removed or added at the end)")
    return VerifyResult(ok=not problems, n_rows=n, last_hash=prev, problems=tuple(problems))


def list_rows(con: duckdb.DuckDBPyConnection, *, incident_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Audit rows, newest last (optionally of one incident)."""
    where = "WHERE incident_id = ?" if incident_id is not None else ""
    params: list[Any] = [incident_id] if incident_id is not None else []
    cur = con.execute(
        f'SELECT seq, "at", actor, incident_id, action, detail, reason FROM audit_log {where} '
        f"ORDER BY seq DESC LIMIT ?", [*params, limit])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in reversed(cur.fetchall())]
