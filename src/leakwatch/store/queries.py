"""Read queries over the findings database, returning plain Python for the CLI and TUI.

Every function takes a DuckDB connection (``store.con``, or ``store.con.cursor()`` from another
thread). Nothing here loads a whole findings table: lists of findings come a page at a time,
keyed on ``finding_id``.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

import duckdb

from leakwatch.errors import StoreError

#: Columns of a finding as returned by :func:`page_findings`, ``raw_value`` excepted.
FINDING_FIELDS: Final = (
    "finding_id",
    "scan_id",
    "source_id",
    "source_path",
    "line",
    "start_byte",
    "end_byte",
    "rule_id",
    "entity",
    "confidence",
    "score_base",
    "score_validator",
    "score_context",
    "severity",
    "severity_rank",
    "field",
    "masked",
    "value_hash",
    "created_at",
)


#: SQL for the log record a finding is in, as a 64-bit hash (for ``count(DISTINCT …)``): its file
#: and line, except for EventLogFile rows. Salesforce writes an hour's rows to the hourly file and
#: again to the day's daily one; a row there is its time and user, whichever file it was read
#: from. (Two rows of one user in the same millisecond then count once: an undercount far rarer
#: than the double count it replaces.)
RECORD_KEY: Final = (
    "CASE WHEN format = 'eventlogfile' AND ts IS NOT NULL THEN hash('eventlogfile', ts, actor_hash)"
    " ELSE hash(source_path, line) END"
)

def db_name(con: duckdb.DuckDBPyConnection) -> str:
    """The file behind ``con`` for error messages ("database" when it cannot be told)."""
    try:
        row = con.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
        return row[0] if row and row[0] else "database"
    except duckdb.Error:
        return "database"


def _rows(con: duckdb.DuckDBPyConnection, what: str, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    try:
        cur = con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    except duckdb.Error as e:
        raise StoreError(f"{db_name(con)}: cannot {what}: {e}") from e


def _where(**conds: Any) -> tuple[str, list[Any]]:
    """AND together ``column op ?`` for the conditions whose value is not None.

    Keys are ``column`` (equality) or ``column__ge`` / ``column__gt``.
    """
    ops = {"ge": ">=", "gt": ">"}
    parts, params = [], []
    for key, value in conds.items():
        if value is None:
            continue
        column, _, op = key.partition("__")
        parts.append(f"{column} {ops[op] if op else '='} ?")
        params.append(value)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


def latest_scan_id(con: duckdb.DuckDBPyConnection) -> int | None:
    """The newest scan's id, or None if there has been no scan."""
    rows = _rows(con, "find the latest scan", "SELECT max(scan_id) AS scan_id FROM scans")
    return rows[0]["scan_id"]


def get_scan(con: duckdb.DuckDBPyConnection, scan_id: int) -> dict[str, Any] | None:
    """One scan's row as a dict (all ``scans`` columns), or None if there is no such scan."""
    rows = _rows(con, f"read scan {scan_id}", "SELECT * FROM scans WHERE scan_id = ?", [scan_id])
    return rows[0] if rows else None


def list_scans(con: duckdb.DuckDBPyConnection, *, limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` most recent scans, newest first."""
    return _rows(con, "list scans", "SELECT * FROM scans ORDER BY scan_id DESC LIMIT ?", [limit])


def summary_by_entity(
    con: duckdb.DuckDBPyConnection, scan_id: int | None = None, *, source_path: str | None = None
) -> list[dict[str, Any]]:
    """Findings per (entity, severity): keys ``entity``, ``severity``, ``severity_rank``,
    ``count``, ``distinct_values`` (distinct value hashes). Most severe, then most frequent first.

    ``scan_id=None`` covers every scan. A scan counts only the findings it added: repeats of
    findings stored by an earlier scan are deduplicated away. ``source_path`` narrows it to one
    file (e.g. to report what an unchanged, skipped file holds).
    """
    where, params = _where(scan_id=scan_id, source_path=source_path)
    return _rows(
        con,
        "summarise findings by entity",
        f"""
        SELECT entity, severity, max(severity_rank) AS severity_rank,
               count(*) AS count, count(DISTINCT value_hash) AS distinct_values
        FROM findings{where}
        GROUP BY entity, severity
        ORDER BY severity_rank DESC, count DESC, entity, severity
        """,
        params,
    )


def summary_by_file(con: duckdb.DuckDBPyConnection, scan_id: int | None = None) -> list[dict[str, Any]]:
    """Sources of one scan (the latest when ``scan_id`` is None): keys ``path``, ``n_findings``,
    ``n_records``, ``bytes``, ``status``, ``error``. Most findings first."""
    if scan_id is None:
        scan_id = latest_scan_id(con)
        if scan_id is None:
            return []
    return _rows(
        con,
        f"summarise files of scan {scan_id}",
        """
        SELECT path, n_findings, n_records, size AS bytes, status, error
        FROM sources WHERE scan_id = ?
        ORDER BY n_findings DESC, path
        """,
        [scan_id],
    )


def count_findings(
    con: duckdb.DuckDBPyConnection, scan_id: int | None = None, min_severity_rank: int | None = None
) -> int:
    """Number of stored findings, optionally of one scan and at or above a severity rank."""
    where, params = _where(scan_id=scan_id, severity_rank__ge=min_severity_rank)
    return int(_rows(con, "count findings", f"SELECT count(*) AS n FROM findings{where}", params)[0]["n"])


def page_findings(
    con: duckdb.DuckDBPyConnection,
    scan_id: int | None = None,
    *,
    after_id: int = 0,
    limit: int = 500,
    min_severity_rank: int | None = None,
    entity: str | None = None,
    rule_id: str | None = None,
    source_path: str | None = None,
    include_raw: bool = False,
) -> list[dict[str, Any]]:
    """One page of findings with ``finding_id > after_id``, in ``finding_id`` order.

    Pass the last row's ``finding_id`` as ``after_id`` for the next page. Keyset paging stays
    fast deep into the table because ids grow with insertion, so DuckDB's per-row-group min/max
    skips everything before ``after_id``. ``raw_value`` is included only with ``include_raw``.
    """
    where, params = _where(
        finding_id__gt=after_id,
        scan_id=scan_id,
        severity_rank__ge=min_severity_rank,
        entity=entity,
        rule_id=rule_id,
        source_path=source_path,
    )
    columns = ", ".join(FINDING_FIELDS + (("raw_value",) if include_raw else ()))
    return _rows(
        con,
        "list findings",
        f"SELECT {columns} FROM findings{where} ORDER BY finding_id LIMIT ?",
        [*params, limit],
    )


def iter_findings(
    con: duckdb.DuckDBPyConnection,
    scan_id: int | None = None,
    *,
    page_size: int = 1000,
    **filters: Any,
) -> Iterator[dict[str, Any]]:
    """Every matching finding, fetched ``page_size`` at a time; ``filters`` as :func:`page_findings`."""
    after_id = filters.pop("after_id", 0)
    while True:
        page = page_findings(con, scan_id, after_id=after_id, limit=page_size, **filters)
        yield from page
        if len(page) < page_size:
            return
        after_id = page[-1]["finding_id"]


def list_errors(
    con: duckdb.DuckDBPyConnection, scan_id: int, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Input problems recorded for a scan, in the order they happened."""
    return _rows(
        con,
        f"list errors of scan {scan_id}",
        'SELECT source_path, line, kind, message, "at" FROM scan_errors WHERE scan_id = ?'
        " ORDER BY error_id LIMIT ? OFFSET ?",
        [scan_id, limit, offset],
    )


def impact(
    con: duckdb.DuckDBPyConnection,
    *,
    scan_id: int | None = None,
    since: Any = None,
    until: Any = None,
    subject_entities: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """What an incident report needs to say, per destination (AI vendor, region, jurisdiction;
    rows with no destination are data that stayed in the company's own systems): the affected
    Salesforce objects and fields, the entities, and approximate counts of findings, records
    (distinct log records) and data subjects (distinct keyed hashes of identifying values:
    the same e-mail in a thousand lines is one person).

    ``since``/``until`` bound the record's own time (``ts``) when known, else when it was
    stored. Residency violations come first, then the largest number of data subjects.
    """
    if subject_entities is None:
        from leakwatch.detect.salesforce import SUBJECT_ENTITIES

        subject_entities = sorted(SUBJECT_ENTITIES)
    conds, params = [], []
    if scan_id is not None:
        conds.append("scan_id = ?")
        params.append(scan_id)
    if since is not None:
        conds.append("coalesce(ts, created_at) >= ?")
        params.append(since)
    if until is not None:
        conds.append("coalesce(ts, created_at) < ?")
        params.append(until)
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    subjects = ", ".join("?" for _ in subject_entities) or "NULL"
    sql = f"""
        SELECT dest_vendor, dest_region, dest_jurisdiction,
               bool_or(coalesce(residency_violation, false)) AS residency_violation,
               list_sort(list_distinct(list(sf_object) FILTER (WHERE sf_object IS NOT NULL))) AS objects,
               list_sort(list_distinct(list(sf_object || '.' || sf_field) FILTER (WHERE sf_field IS NOT NULL))) AS fields,
               list_sort(list_distinct(list(entity))) AS entities,
               count(*) AS findings,
               count(DISTINCT {RECORD_KEY}) AS records,
               count(DISTINCT value_hash) FILTER (WHERE entity IN ({subjects})) AS data_subjects,
               min(coalesce(ts, created_at)) AS first_seen,
               max(coalesce(ts, created_at)) AS last_seen
        FROM findings{where}
        GROUP BY ALL
        ORDER BY residency_violation DESC, data_subjects DESC, findings DESC, dest_vendor NULLS LAST, dest_region
    """
    return _rows(con, "compute the impact", sql, [*subject_entities, *params])
