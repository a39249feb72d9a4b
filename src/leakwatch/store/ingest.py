"""Bulk ingest of findings: one columnar batch becomes one ``INSERT … SELECT``.

A batch is a dict of equal-length columns: NumPy arrays for numbers, lists (or object arrays) of
``str``/``None`` for text. DuckDB scans a registered dict of NumPy arrays directly, so no pandas
or Arrow is needed and there is no per-row Python work beyond turning text lists into object
arrays (a pointer copy).

Deduplication. A finding is identified by (source_path, line, start_byte, rule_id, value_hash);
re-scanning content that is already stored must add nothing. The insert skips rows whose key is
already stored by anti-joining against the findings of earlier sources with the same path only.
``source_id`` grows with time and findings are appended, so DuckDB's per-row-group min/max
prunes the rest of the table and the cost of a batch does not grow with the table. This relies on
being the only writer: DuckDB lets one process write a file, and :class:`leakwatch.store.Store`
serialises its writes.
"""
from __future__ import annotations

from datetime import datetime

from collections.abc import Mapping
from typing import Any, Final

import duckdb
import numpy as np

#: Batch key → SQL type of the ``findings`` column it fills.
FINDING_COLUMNS: Final[dict[str, str]] = {
    "line": "BIGINT",
    "start_byte": "INTEGER",
    "end_byte": "INTEGER",
    "rule_id": "VARCHAR",
    "entity": "VARCHAR",
    "confidence": "DOUBLE",
    "score_base": "DOUBLE",
    "score_validator": "DOUBLE",
    "score_context": "DOUBLE",
    "severity": "VARCHAR",
    "severity_rank": "TINYINT",
    "field": "VARCHAR",
    "masked": "VARCHAR",
    "value_hash": "VARCHAR",
    "raw_value": "VARCHAR",
    # What the record's format says about the finding (m003); NULL where nothing is known.
    "field_path": "VARCHAR",
    "ts": "EPOCH",  # float seconds since 1970 UTC, NaN for unknown; stored as TIMESTAMPTZ
    "format": "VARCHAR",
    "detector": "VARCHAR",
    "dest_host": "VARCHAR",
    "dest_vendor": "VARCHAR",
    "dest_region": "VARCHAR",
    "dest_jurisdiction": "VARCHAR",
    "residency_violation": "TRISTATE",  # int8: 1 true, 0 false, -1 unknown
    "sf_object": "VARCHAR",
    "sf_field": "VARCHAR",
    "actor_hash": "VARCHAR",
    "prompt_role": "VARCHAR",
}

#: Keys a batch may leave out; their column is then NULL. ``raw_value`` is stored only when the
#: user asked for raw values, so it is usually absent.
OPTIONAL_COLUMNS: Final = frozenset({
    "field", "raw_value", "field_path", "ts", "format", "detector", "dest_host", "dest_vendor", "dest_region",
    "dest_jurisdiction", "residency_violation", "sf_object", "sf_field", "actor_hash", "prompt_role",
})


def _sql_expr(key: str, sql_type: str, present: bool) -> str:
    """How a batch column becomes a table value (the two encoded types have no NULL in NumPy)."""
    if sql_type == "EPOCH":
        return f"CASE WHEN isnan(b.{key}) THEN NULL ELSE to_timestamp(b.{key}) END" if present \
            else "CAST(NULL AS TIMESTAMPTZ)"
    if sql_type == "TRISTATE":
        return f"CASE WHEN b.{key} < 0 THEN NULL ELSE b.{key} > 0 END" if present else "CAST(NULL AS BOOLEAN)"
    return f"CAST(b.{key} AS {sql_type})" if present else f"CAST(NULL AS {sql_type})"

#: What makes two findings the same; the batch-side part is everything but ``source_path``.
DEDUP_KEY: Final = ("source_path", "line", "start_byte", "rule_id", "value_hash")

_VIEW: Final = "_leakwatch_findings_batch"


def _column(key: str, values: Any, n: int | None) -> np.ndarray:
    if FINDING_COLUMNS[key] == "VARCHAR":
        if isinstance(values, np.ndarray) and values.dtype == object:
            arr = values
        else:
            # Assigning into an empty object array never reinterprets the strings as sequences,
            # which np.array(list) would do for a list of equal-length tuples.
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
    else:
        arr = np.ascontiguousarray(values)
        if arr.dtype.kind not in "iufb":
            raise ValueError(f"batch column {key!r} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"batch column {key!r} must be one-dimensional, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"batch column {key!r} has {len(arr)} rows, expected {n}")
    return arr


def prepare_batch(batch: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
    """Check a batch and turn it into NumPy columns DuckDB can scan; return (columns, rows).

    Raises ``ValueError`` for a missing or unknown key, ragged lengths or a non-numeric number
    column: those are bugs in the caller, not problems with the input being scanned.
    """
    unknown = set(batch) - set(FINDING_COLUMNS)
    if unknown:
        raise ValueError(f"unknown batch columns: {sorted(unknown)}")
    missing = set(FINDING_COLUMNS) - OPTIONAL_COLUMNS - set(batch)
    if missing:
        raise ValueError(f"batch lacks columns: {sorted(missing)}")
    cols: dict[str, np.ndarray] = {}
    n: int | None = None
    for key in FINDING_COLUMNS:
        if key in batch and batch[key] is not None:
            cols[key] = _column(key, batch[key], n)
            n = len(cols[key])
    return cols, n or 0


def may_repeat_keys(cols: Mapping[str, np.ndarray]) -> bool:
    """Whether two rows of a prepared batch might share a dedup key.

    Checks (line, start_byte, rule_id) with a NumPy sort, ~5 ms for 50k rows against ~25 ms
    for deduplicating in SQL; a scanner never reports the same rule at the same place twice, so
    the SQL step is normally skipped. False positives (same place and rule, different values)
    only cost time.
    """
    line, start, rules = cols["line"], cols["start_byte"], cols["rule_id"]
    if len(line) < 2:
        return False
    codes_of: dict[Any, int] = {}
    codes = np.fromiter((codes_of.setdefault(r, len(codes_of)) for r in rules), np.int64, len(rules))
    order = np.lexsort((codes, start, line))
    line, start, codes = line[order], start[order], codes[order]
    same = (line[1:] == line[:-1]) & (start[1:] == start[:-1]) & (codes[1:] == codes[:-1])
    return bool(same.any())


def _insert_sql(present: list[str], prior_source_ids: list[int], dedupe_batch: bool,
                created_at: bool = False) -> str:
    """The batch insert; with ``created_at`` the rows take ``$created_at`` (an injected clock's
    time) instead of the column's default, the database's wall clock."""
    targets = ["scan_id", "source_id", "source_path", *FINDING_COLUMNS]
    exprs = ["CAST($scan_id AS BIGINT)", "CAST($source_id AS BIGINT)", "CAST($path AS VARCHAR)"]
    for key, sql_type in FINDING_COLUMNS.items():
        exprs.append(_sql_expr(key, sql_type, key in present))
    if created_at:
        targets.append("created_at")
        exprs.append("CAST($created_at AS TIMESTAMPTZ)")
    source = f"(SELECT DISTINCT ON (line, start_byte, rule_id, value_hash) * FROM {_VIEW})" if dedupe_batch else _VIEW
    ids = ", ".join(str(int(i)) for i in prior_source_ids)
    return f"""
        INSERT INTO findings ({', '.join(targets)})
        SELECT {', '.join(exprs)} FROM {source} AS b
        WHERE NOT EXISTS (
            SELECT 1 FROM findings AS f
            WHERE f.source_id IN ({ids}) AND f.line BETWEEN $line_lo AND $line_hi
              AND f.source_path = $path AND f.line = b.line AND f.start_byte = b.start_byte
              AND f.rule_id = b.rule_id AND f.value_hash = b.value_hash
        )
    """


def insert_findings(
    con: duckdb.DuckDBPyConnection,
    scan_id: int,
    source_id: int,
    source_path: str,
    batch: Mapping[str, Any],
    created_at: datetime | None = None,
) -> int:
    """Insert one batch of findings in one statement; return how many rows were new.

    ``source_id`` must come from ``Store.begin_source`` for ``source_path``: the duplicate check
    looks only at findings of the sources recorded with that path. Rows whose key is already
    stored, or repeated within the batch, are skipped. The statement commits on return unless
    the caller holds an open transaction on ``con``. DuckDB errors propagate unwrapped;
    :class:`leakwatch.store.Store` wraps them. Raises ``ValueError`` for a malformed batch or a
    ``source_id`` that is not recorded for ``source_path``. ``created_at`` (aware) stamps the
    rows with an injected clock's time (watch, drills) instead of the database's wall clock.
    """
    cols, n = prepare_batch(batch)
    if n == 0:
        return 0
    source_path = str(source_path)
    prior = [
        sid
        for (sid,) in con.execute("SELECT source_id FROM sources WHERE path = ?", [source_path]).fetchall()
    ]
    if source_id not in prior:
        raise ValueError(f"source_id {source_id} is not a source recorded for {source_path!r}")
    params = {
        "scan_id": scan_id,
        "source_id": source_id,
        "path": source_path,
        "line_lo": int(cols["line"].min()),
        "line_hi": int(cols["line"].max()),
    }
    if created_at is not None:
        params["created_at"] = created_at
    con.register(_VIEW, cols)
    try:
        row = con.execute(_insert_sql(list(cols), prior, may_repeat_keys(cols), created_at is not None),
                          params).fetchone()
    finally:
        con.unregister(_VIEW)
    return int(row[0]) if row else 0


#: Event batch key → SQL type of the ``events`` column it fills (see m003).
EVENT_COLUMNS: Final[dict[str, str]] = {
    "line": "BIGINT",
    "ts": "EPOCH",
    "format": "VARCHAR",
    "kind": "VARCHAR",
    "event_type": "VARCHAR",
    "actor_hash": "VARCHAR",
    "actor_masked": "VARCHAR",
    "app": "VARCHAR",
    "url_host": "VARCHAR",
    "url_path": "VARCHAR",
    "status": "BIGINT",  # -1 for unknown
    "dest_vendor": "VARCHAR",
    "dest_region": "VARCHAR",
    "dest_jurisdiction": "VARCHAR",
    "residency_violation": "TRISTATE",
    "via_gateway": "TRISTATE",
    "sf_object": "VARCHAR",
    "rows_processed": "BIGINT",  # -1 for unknown
    "edge_location": "VARCHAR",
    "cache_status": "VARCHAR",
}

_EVENTS_VIEW: Final = "_leakwatch_events_batch"


def insert_events(con: duckdb.DuckDBPyConnection, scan_id: int, source_id: int, source_path: str,
                  rows: list[tuple]) -> int:
    """Insert event rows (tuples in :data:`EVENT_COLUMNS` order) in one statement; return how many
    were new. An event is identified by (source_path, line, kind, ts): a re-scan adds nothing,
    a file rewritten at the same path (log rotation) adds its new records."""
    if not rows:
        return 0
    cols: dict[str, np.ndarray] = {}
    for i, (key, sql_type) in enumerate(EVENT_COLUMNS.items()):
        values = [r[i] for r in rows]
        if sql_type == "VARCHAR":
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
        elif sql_type == "EPOCH":
            arr = np.asarray(values, dtype=np.float64)
        elif sql_type == "TRISTATE":
            arr = np.asarray(values, dtype=np.int8)
        else:
            arr = np.asarray(values, dtype=np.int64)
        cols[key] = arr
    exprs = []
    for key, sql_type in EVENT_COLUMNS.items():
        if sql_type == "BIGINT" and key != "line":
            exprs.append(f"CASE WHEN b.{key} < 0 THEN NULL ELSE b.{key} END")
        else:
            exprs.append(_sql_expr(key, sql_type, True))
    sql = f"""
        INSERT INTO events (scan_id, source_id, source_path, {', '.join(EVENT_COLUMNS)})
        SELECT CAST($scan_id AS BIGINT), CAST($source_id AS BIGINT), CAST($path AS VARCHAR), {', '.join(exprs)}
        FROM (SELECT DISTINCT ON (line, kind) * FROM {_EVENTS_VIEW}) AS b
        WHERE NOT EXISTS (
            SELECT 1 FROM events AS e
            WHERE e.source_path = $path AND e.line BETWEEN $line_lo AND $line_hi
              AND e.line = b.line AND e.kind = b.kind
              -- a file rewritten at the same path (rotation) has other records at these lines
              AND e.ts IS NOT DISTINCT FROM (CASE WHEN isnan(b.ts) THEN NULL ELSE to_timestamp(b.ts) END)
        )
    """
    params = {"scan_id": scan_id, "source_id": source_id, "path": str(source_path),
              "line_lo": int(cols["line"].min()), "line_hi": int(cols["line"].max())}
    con.register(_EVENTS_VIEW, cols)
    try:
        row = con.execute(sql, params).fetchone()
    finally:
        con.unregister(_EVENTS_VIEW)
    return int(row[0]) if row else 0
