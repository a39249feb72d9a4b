"""EventLogFile rows → ``events``, in bulk, in SQL.

An Event Monitoring export is mostly event rows without PII: API calls, bulk jobs, callouts.
The failure patterns need them (bulk reads, calls to AI endpoints, API volume per user), but
parsing a quarter of a file's rows one by one in Python would cost ~25 µs each, more than the
whole native scan of them. So the scan hands their raw text over in batches (line number,
header id, text) and DuckDB splits the cells, picks the columns by the header's names, parses
the timestamps and extracts the hosts. Python only sees the *distinct* hosts (classified by the
AI-endpoint registry) and the *distinct* users (keyed-hashed): a few hundred values, not
hundreds of thousands of rows.

All EventLogFile values are quoted (DOMAIN.md §1), a quote inside one is doubled; a row whose
cell count differs from its header's is left out here (the scan reports it as a parse problem
when it holds a finding).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import duckdb
import numpy as np

from leakwatch.store.ingest import EVENT_COLUMNS

# A path segment or key that may itself be data: an e-mail, a number of five digits or more in a
# row or in groups (an account, a phone, a card 4242-4242-…, an SSN 219-09-9999), a long token,
# a credential by its vendor prefix (an AWS key id, sk-…, ghp_…, a JWT). Masked in url_path and
# field paths (here in SQL, in leakwatch.detect.enrich in Python); the value is a finding of its
# own anyway.
PII_SEGMENT_RX = (r"[^/\[\]\s]*(?:@|%40)[^/\[\]\s]*"
                  r"|[^/.\[\]]*(?:[0-9](?:[ .()+-]{0,2}[0-9]){4}|[A-Za-z0-9_+=-]{33,}"
                  r"|(?:AKIA|ASIA)[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{8,}|gh[pousr]_[A-Za-z0-9]{8,}|xox[abprs]-[A-Za-z0-9-]{8,}"
                  r"|eyJ[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{8,}|hf_[A-Za-z0-9]{8,})[^/.\[\]]*")

# EventLogFile event types → event kind (the pattern detectors' vocabulary).
ELF_EVENT_KINDS = {
    "BulkApi": "bulk",
    "BulkApi2": "bulk",
    "BulkApiResult": "bulk",
    "ReportExport": "report_export",
    "RestApi": "api",
    "API": "api",
}

_BATCH = "_leakwatch_elf_batch"
_HEADERS = "_leakwatch_elf_headers"
_HOSTS = "_leakwatch_elf_hosts"
_ACTORS = "_leakwatch_elf_actors"
_APPS = "_leakwatch_elf_apps"


# Event attribute → EventLogFile columns that give it, in order of preference (DOMAIN.md §1).
_ATTR_COLUMNS = {
    "event_type": ("EVENT_TYPE",),
    "ts_iso": ("TIMESTAMP_DERIVED",),
    "ts_elf": ("TIMESTAMP",),
    "actor": ("USER_ID_DERIVED", "USER_ID", "USER_NAME"),
    "app": ("CONNECTED_APP_ID", "CLIENT_NAME"),
    "url": ("URL",),
    "entity": ("ENTITY_TYPE", "ENTITY_NAME"),
    "nrows": ("ROWS_PROCESSED", "ROW_COUNT", "RECORDS_PROCESSED"),  # the last: BulkApi2
    "status": ("STATUS_CODE",),
    "operation": ("OPERATION_TYPE",),
}
_MAX_ALTS = 3


def _header_table(headers: Sequence[Sequence[str]]) -> dict:
    """Per header: its cell count and, per attribute, the 1-based cell index of each candidate
    column (0 when the header has no such column). Computed here, once per header, so SQL does
    plain list indexing per row."""
    out: dict[str, list] = {"hid": list(range(len(headers))), "ncols": [len(h) for h in headers]}
    for attr, names in _ATTR_COLUMNS.items():
        for k in range(_MAX_ALTS):
            col = []
            for h in headers:
                index = {c.strip().upper(): i + 1 for i, c in enumerate(h)}
                col.append(index.get(names[k], 0) if k < len(names) else 0)
            out[f"{attr}_{k}"] = col
    return {k: np.asarray(v, dtype=np.int32) for k, v in out.items()}


def _pick(attr: str) -> str:
    n = len(_ATTR_COLUMNS[attr])
    parts = [f"nullif(replace(cells[nullif({attr}_{k}, 0)], '\"\"', '\"'), '')" for k in range(n)]
    return (f"coalesce({', '.join(parts)})" if n > 1 else parts[0]) + f" AS {attr}"


# Cells of an all-quoted row, doubled quotes still doubled: splitting on '","' is exact unless
# a value itself holds '","' (JSON in an EXCEPTION_MESSAGE, say), and then it always yields
# too many cells, so those rows take the exact regex instead. Measured on 190k ApexCallout and
# RestApi rows, one thread: split 0.26 s, regex 2.0 s.
_ROWS_SQL = f"""
    SELECT line, {', '.join(_pick(a) for a in _ATTR_COLUMNS)}
    FROM (
        SELECT b.line, h.*,
               CASE WHEN len(b.s) = h.ncols THEN b.s
                    ELSE regexp_extract_all(b.t, '"((?:[^"]|"")*)"', 1) END AS cells
        FROM (SELECT line, hid, t, string_split(t[2:-2], '","') AS s FROM {_BATCH}) AS b
        JOIN {_HEADERS} AS h USING (hid)
    )
    WHERE len(cells) = ncols
"""

# Host of an outbound URL as ApexCallout writes it (maybe wrapped in doubled quotes).
_HOST_RX = r'^["\s]*(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?(?:[^@/\s]*@)?([^/:?#"\s]+)'


def insert_elf_events(
    con: duckdb.DuckDBPyConnection,
    scan_id: int,
    source_id: int,
    source_path: str,
    rows: Sequence[tuple[int, int, str]],
    headers: Sequence[Sequence[str]],
    classify_hosts: Callable[[list[str]], list[tuple]],
    hash_actors: Callable[[list[str]], list[tuple[str, str, str]]],
) -> int:
    """Turn EventLogFile rows into events; return (new events stored, rows left out because
    their cells did not match their header).

    ``rows`` are batches (1-based line numbers, header indexes, row texts decoded as
    Latin-1), each a pair of NumPy arrays and a list; ``headers`` the column names of each
    header index. ``classify_hosts(hosts)`` returns, per host, (host,
    vendor, region, jurisdiction, violation -1/0/1, via_gateway 0/1) or leaves it out when it is
    no AI endpoint. ``hash_actors(users)`` returns (user, keyed hash, masked preview).
    Duplicates of stored events (same path, line, kind and time) are skipped, as
    :func:`leakwatch.store.ingest.insert_events` does.
    """
    if not rows:
        return 0, 0
    batch = {
        "line": np.concatenate([np.asarray(r[0], dtype=np.int64) for r in rows]),
        "hid": np.concatenate([np.asarray(r[1], dtype=np.int32) for r in rows]),
        "t": _objects([t.rstrip("\r") for r in rows for t in r[2]]),
    }
    if not len(batch["line"]):
        return 0, 0
    hdr = _header_table(headers)
    con.register(_BATCH, batch)
    con.register(_HEADERS, hdr)
    # No extra DuckDB threads for this statement: it runs on a thread of its own while the scan
    # and the owner thread use both cores, and two threads here made the whole scan slower
    # (measured on 210 MB, one worker: 62.7 → 66.7 MB/s with the connection's one thread,
    # although the statement alone is faster on two).
    # TIMESTAMP_DERIVED without an offset is UTC, whatever the machine's time zone.
    con.execute("SET TimeZone = 'UTC'")
    try:
        # Each row's host and time once, here: the distinct values below and the insert read them.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _leakwatch_elf_rows AS
            SELECT * EXCLUDE (ts_iso, ts_elf),
                   lower(regexp_extract(url, '{_HOST_RX}', 1)) AS host,
                   coalesce(TRY_CAST(ts_iso AS TIMESTAMPTZ),
                            timezone('UTC', try_strptime(ts_elf, '%Y%m%d%H%M%S.%g')),
                            timezone('UTC', try_strptime(ts_elf, '%Y%m%d%H%M%S'))) AS ts
            FROM ({_ROWS_SQL})
        """)
        # The rows kept, and the distinct hosts, users and e-mail-like client names: one pass.
        kept, hosts, users, apps = con.execute("""
            SELECT count(*),
                   list(DISTINCT host) FILTER (WHERE host <> ''),
                   list(DISTINCT actor) FILTER (WHERE actor IS NOT NULL),
                   list(DISTINCT app) FILTER (WHERE app LIKE '%@%' OR lower(app) LIKE '%\\%40%' ESCAPE '\\')
            FROM _leakwatch_elf_rows
        """).fetchall()[0]
        hosts, users, apps = hosts or [], users or [], apps or []
        # A row that matches nothing keeps the column types known when there is nothing to join.
        host_rows = classify_hosts(hosts) or [("\x00", None, None, None, -1, 0)]
        actor_rows = hash_actors(users) or [("\x00", None, None)]
        # A client name that is an e-mail address (an integration user's login) is stored masked,
        # as the same cell's finding is.
        from leakwatch.detect.mask import safe_label

        app_rows = [(a, safe_label(a)) for a in apps] or [("\x00", None)]
        con.register(_APPS, _table(app_rows, ("app", "masked"), (object, object)))
        con.register(_HOSTS, _table(host_rows, ("host", "vendor", "region", "jurisdiction", "violation", "via"),
                                    (object, object, object, object, np.int8, np.int8)))
        con.register(_ACTORS, _table(actor_rows, ("actor", "hash", "masked"), (object, object, object)))
        kinds = ", ".join(f"('{k}', '{v}')" for k, v in ELF_EVENT_KINDS.items())
        row = con.execute(
            f"""
            WITH r AS (
                SELECT e.* EXCLUDE (app), coalesce(ap.masked, e.app) AS app,
                       a.hash AS actor_hash, a.masked AS actor_masked
                FROM _leakwatch_elf_rows AS e LEFT JOIN {_ACTORS} AS a ON a.actor = e.actor
                     LEFT JOIN {_APPS} AS ap ON ap.app = e.app
            ),
            k(event_type, kind) AS (VALUES {kinds}),
            ev AS (
                SELECT r.line, r.ts, 'ai_call' AS kind, r.event_type, r.actor_hash, r.actor_masked, r.app,
                       h.host AS url_host, r.url, r.status, h.vendor, h.region, h.jurisdiction,
                       CASE WHEN h.violation < 0 THEN NULL ELSE h.violation > 0 END AS violation,
                       h.via > 0 AS via, r.entity, r.nrows, r.operation
                FROM r JOIN {_HOSTS} AS h ON h.host = r.host
                UNION ALL
                SELECT r.line, r.ts, k.kind, r.event_type, r.actor_hash, r.actor_masked, r.app,
                       r.host, r.url, r.status, NULL, NULL, NULL, NULL, NULL, r.entity, r.nrows, r.operation
                FROM r JOIN k ON k.event_type = r.event_type
            )
            INSERT INTO events (scan_id, source_id, source_path, line, ts, format, kind, event_type, actor_hash,
                                actor_masked, app, url_host, url_path, status, dest_vendor, dest_region,
                                dest_jurisdiction, residency_violation, via_gateway, sf_object, rows_processed)
            SELECT $scan_id, $source_id, $path, ev.line, ev.ts, 'eventlogfile', ev.kind,
                   CASE WHEN ev.kind = 'bulk' AND ev.operation IS NOT NULL
                        THEN ev.event_type || ':' || ev.operation ELSE ev.event_type END,
                   ev.actor_hash, ev.actor_masked, ev.app, ev.url_host,
                   nullif(regexp_replace(
                       regexp_extract(ev.url, '^["\\s]*[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#"]*(/[^?#"]*)', 1),
                       $pii_segment, '*', 'g'), ''),
                   TRY_CAST(ev.status AS INTEGER), ev.vendor, ev.region, ev.jurisdiction, ev.violation, ev.via,
                   ev.entity, CASE WHEN TRY_CAST(ev.nrows AS BIGINT) >= 0 THEN TRY_CAST(ev.nrows AS BIGINT) END
            FROM ev
            WHERE NOT EXISTS (
                SELECT 1 FROM events AS x
                WHERE x.source_path = $path AND x.line BETWEEN $lo AND $hi AND x.line = ev.line AND x.kind = ev.kind
                  AND x.ts IS NOT DISTINCT FROM ev.ts
            )
            """,
            {"scan_id": scan_id, "source_id": source_id, "path": str(source_path), "pii_segment": PII_SEGMENT_RX,
             "lo": int(batch["line"].min()), "hi": int(batch["line"].max())},
        ).fetchone()
        return (int(row[0]) if row else 0), len(batch["line"]) - int(kept)
    finally:
        for name in (_BATCH, _HEADERS, _HOSTS, _ACTORS, _APPS):
            try:
                con.unregister(name)
            except duckdb.Error:
                pass
        con.execute("DROP TABLE IF EXISTS _leakwatch_elf_rows")


def _objects(values: list) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _table(rows: list[tuple], names: tuple[str, ...], dtypes: tuple) -> dict:
    out = {}
    for i, (name, dt) in enumerate(zip(names, dtypes)):
        vals = [r[i] for r in rows]
        out[name] = _objects(vals) if dt is object else np.asarray(vals, dtype=dt)
    return out


assert set(EVENT_COLUMNS) >= {"line", "kind"}  # the columns this module writes exist in events
