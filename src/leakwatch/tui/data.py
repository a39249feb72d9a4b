"""The console's reads of findings: one page at a time, never the whole table.

Everything here is plain DuckDB SQL over the ``findings`` table (and ``incident_findings`` /
``incidents`` for the incident a finding belongs to) and returns plain Python tuples, lists and
dicts, so it runs in a worker thread on a cursor of its own and the screens only paint. No
Textual import: the functions are tested, and benchmarked, without a terminal.

Paging is by keyset, never by OFFSET: a page is "the ``limit`` rows after (or before) this row
in sort order", where a row's position is its sort key plus ``finding_id`` (unique), so every row
has exactly one place and a page deep into a million rows costs what the first page costs.
Measured on the generated 1,000,000-finding database of ``bench/test_tui_speed.py`` on a 2-core
box: a page of 40 rows takes 4-25 ms in any sort order, first page or deep (a filtered scan
feeding a top-N heap: DuckDB never sorts the table), a filtered count 1-13 ms, a search 12-17
ms. ART indexes were not added: DuckDB uses them for point lookups and equality filters, not
for ORDER BY … LIMIT, and every index costs each scan's inserts.

``raw_value`` is never selected: a finding is shown by its masked preview and where it was
found. Free-text search matches the masked preview and the field path only.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Final

import duckdb

from leakwatch.errors import StoreError
from leakwatch.store.queries import RECORD_KEY, db_name

#: Columns of one row of the findings table, in the order of the tuples :func:`page` returns
#: (``incident_id`` from ``incident_findings``, NULL when the finding is in no incident).
ROW_FIELDS: Final = (
    "finding_id",
    "severity",
    "severity_rank",
    "entity",
    "rule_id",
    "masked",
    "field_path",
    "sf_object",
    "dest_vendor",
    "dest_region",
    "source_path",
    "line",
    "ts",
    "confidence",
    "incident_id",
)
_ROW_SELECT: Final = ", ".join(f"f.{c}" for c in ROW_FIELDS[:-1])

#: Sort orders: name → the key columns and directions. Every key ends in ``finding_id``, which is
#: unique, so the order is total and a row's key says exactly where it is. All key expressions
#: are NOT NULL (``ts`` is not always known, so "time" falls back to when it was stored).
SORTS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    # Most severe first; within a severity the newest stored first.
    "severity": (("severity_rank", "DESC"), ("finding_id", "DESC")),
    # The record's own time when the format has one, else when it was stored; newest first.
    "time": (("coalesce(ts, created_at)", "DESC"), ("finding_id", "DESC")),
    "entity": (("entity", "ASC"), ("finding_id", "ASC")),
    # Reading order of the files: path, line, byte offset.
    "file": (("source_path", "ASC"), ("line", "ASC"), ("start_byte", "ASC"), ("finding_id", "ASC")),
}
SORT_NAMES: Final = tuple(SORTS)

#: Columns a filter may match for equality, filter field → column. For the nullable ones an empty
#: string means "not set" (``IS NULL``): e.g. ``dest_vendor=""`` = data that stayed in-house.
_EQ_COLUMNS: Final = {
    "entity": "entity",
    "rule_id": "rule_id",
    "sf_object": "sf_object",
    "sf_field": "sf_field",
    "dest_vendor": "dest_vendor",
    "dest_region": "dest_region",
    "source_path": "source_path",
}
_NULLABLE: Final = frozenset({"sf_object", "sf_field", "dest_vendor", "dest_region"})

#: Columns the filter bar offers choices for (see :func:`facet`).
FACET_COLUMNS: Final = ("entity", "rule_id", "severity", "sf_object", "dest_vendor", "source_path")

#: Aliases accepted by :meth:`FindingFilter.from_mapping` (what other screens pass).
_ALIASES: Final = {
    "rule": "rule_id",
    "severity": "min_severity_rank",
    "min_severity": "min_severity_rank",
    "object": "sf_object",
    "field": "sf_field",
    "destination": "dest_vendor",
    "vendor": "dest_vendor",
    "region": "dest_region",
    "file": "source_path",
    "path": "source_path",
    "incident": "incident_id",
    "q": "search",
    "text": "search",
}

#: Severity names by rank (``findings.severity_rank``), for filters given by name.
SEVERITY_RANKS: Final = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


@dataclass(frozen=True)
class FindingFilter:
    """What the findings list is narrowed to; ``None`` everywhere means every finding.

    Hashable, so it keys the count cache. ``search`` is a literal substring (``%`` and ``_`` are
    not wildcards), matched case-insensitively against the masked preview and the field
    path (``field_path``, as the format names it); it never touches raw values.
    """

    entity: str | None = None
    rule_id: str | None = None
    min_severity_rank: int | None = None
    sf_object: str | None = None
    sf_field: str | None = None
    dest_vendor: str | None = None
    dest_region: str | None = None
    source_path: str | None = None
    incident_id: int | None = None
    search: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> FindingFilter:
        """Build a filter from a dict such as other screens pass (``{"incident": 3}``,
        ``{"severity": "high"}``); aliases in :data:`_ALIASES`. Unknown keys raise ValueError
        naming the key; empty values (``None``) are ignored."""
        if not values:
            return cls()
        known = {f.name for f in fields(cls)}
        out: dict[str, Any] = {}
        for key, value in values.items():
            name = _ALIASES.get(key, key)
            if name not in known:
                raise ValueError(f"findings filter: unknown key {key!r} (known: {', '.join(sorted(known))})")
            if value is None:
                continue
            if name == "min_severity_rank" and isinstance(value, str):
                if value.lower() not in SEVERITY_RANKS:
                    raise ValueError(f"findings filter: unknown severity {value!r} "
                                     f"(one of {', '.join(SEVERITY_RANKS)})")
                value = SEVERITY_RANKS[value.lower()]
            if name in ("min_severity_rank", "incident_id"):
                value = int(value)
            out[name] = value
        return cls(**out)

    def replace(self, **changes: Any) -> FindingFilter:
        """A copy with ``changes`` applied (``None`` clears a field)."""
        return replace(self, **changes)

    def active(self) -> dict[str, Any]:
        """The fields that narrow the list, in declaration order."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None and (v != "" or f.name in _NULLABLE):  # "" = IS NULL for those
                out[f.name] = v
        return out

    def where(self) -> tuple[list[str], list[Any]]:
        """SQL conditions (on table alias ``f``) and their parameters."""
        conds: list[str] = []
        params: list[Any] = []
        for name, column in _EQ_COLUMNS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if value == "" and name in _NULLABLE:
                conds.append(f"f.{column} IS NULL")
            else:
                conds.append(f"f.{column} = ?")
                params.append(value)
        if self.min_severity_rank is not None:
            conds.append("f.severity_rank >= ?")
            params.append(int(self.min_severity_rank))
        if self.incident_id is not None:
            # A semi-join on the incident's (few thousand at most) finding ids: DuckDB builds a
            # hash table of them and probes it during the scan.
            conds.append("f.finding_id IN (SELECT finding_id FROM incident_findings WHERE incident_id = ?)")
            params.append(int(self.incident_id))
        text = (self.search or "").strip()
        if text:
            if any(c in text for c in "%_\\"):
                # Literal match of text holding LIKE wildcards. Measured on 1M rows: ILIKE with
                # an ESCAPE clause is not optimised (45 ms over both columns), contains() on
                # lower() is (16 ms).
                conds.append("(contains(lower(f.masked), ?) OR contains(lower(f.field_path), ?))")
                params += [text.lower(), text.lower()]
            else:
                # '%text%' without wildcards inside is run as a case-insensitive substring
                # search: 12 ms over both columns on 1M rows.
                conds.append("(f.masked ILIKE ? OR f.field_path ILIKE ?)")
                params += [f"%{text}%", f"%{text}%"]
        return conds, params


Cursor = tuple[Any, ...]


@dataclass(frozen=True)
class Page:
    """One page of findings.

    ``rows`` are tuples of :data:`ROW_FIELDS`; ``keys`` the sort key of each row (a
    :data:`Cursor`, pass one back as ``after``/``before``). ``has_prev`` / ``has_next`` say
    whether rows exist before the first / after the last row under the same filter and sort.
    """

    rows: list[tuple[Any, ...]]
    keys: list[Cursor]
    has_prev: bool
    has_next: bool

    @property
    def first_key(self) -> Cursor | None:
        """Sort key of the first row (``before=`` this gives the previous page)."""
        return self.keys[0] if self.keys else None

    @property
    def last_key(self) -> Cursor | None:
        """Sort key of the last row (``after=`` this gives the next page)."""
        return self.keys[-1] if self.keys else None


def _keyset(keys: Sequence[tuple[str, str]], cursor: Cursor, forward: bool) -> tuple[str, list[Any]]:
    """Rows strictly after (``forward``) or before ``cursor`` in the order ``keys``.

    Expanded as ``k1 > v1 OR (k1 = v1 AND k2 > v2) OR …`` with each ``>`` turned to ``<`` for a
    descending key (and both flipped for ``before``): DuckDB's row-value comparison cannot mix
    directions.
    """
    if len(cursor) != len(keys):
        raise ValueError(f"cursor has {len(cursor)} values, the sort has {len(keys)} keys")
    ors: list[str] = []
    params: list[Any] = []
    for i, (expr, direction) in enumerate(keys):
        greater = (direction == "ASC") == forward
        parts = [f"{_qualify(k)} = ?" for k, _ in keys[:i]]
        parts.append(f"{_qualify(expr)} {'>' if greater else '<'} ?")
        ors.append("(" + " AND ".join(parts) + ")")
        params.extend(cursor[: i + 1])
    return "(" + " OR ".join(ors) + ")", params


def _plain(expr: str) -> bool:
    return expr.isidentifier()


def _qualify(expr: str) -> str:
    """Prefix the column names of a sort expression with the table alias ``f``."""
    if _plain(expr):
        return f"f.{expr}"
    if expr == "coalesce(ts, created_at)":
        return "coalesce(f.ts, f.created_at)"
    raise ValueError(f"unknown sort expression {expr!r}")


def _order(keys: Sequence[tuple[str, str]], forward: bool) -> str:
    """ORDER BY terms for ``keys``, reversed when reading backwards."""
    flip = {"ASC": "DESC", "DESC": "ASC"}
    return ", ".join(f"{_qualify(expr)} {d if forward else flip[d]}" for expr, d in keys)


def _fail(con: duckdb.DuckDBPyConnection, what: str, e: duckdb.Error) -> StoreError:
    return StoreError(f"{db_name(con)}: cannot {what}: {e}")


def _fetch(con: duckdb.DuckDBPyConnection, flt: FindingFilter, sort: str, cursor: Cursor | None, forward: bool,
           limit: int) -> tuple[list[tuple[Any, ...]], list[Cursor], bool]:
    """Up to ``limit`` rows after (``forward``) or before ``cursor`` (from the start / the end
    when None), in display order; and whether more rows lie beyond them in that direction."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r} (one of {', '.join(SORTS)})")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    keys = SORTS[sort]
    conds, params = flt.where()
    if cursor is not None:
        cond, cparams = _keyset(keys, tuple(cursor), forward)
        conds.append(cond)
        params += cparams
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    key_select = ", ".join(f"{_qualify(k)} AS _k{i}" for i, (k, _) in enumerate(keys))
    outer_order = ", ".join(f"p._k{i} {d}" for i, (_, d) in enumerate(keys))
    # The inner query is the whole cost: a filtered scan feeding a top-N heap of limit + 1 rows
    # (read backwards for "before"). The incident of each row is looked up for those rows only.
    sql = f"""
        SELECT p.*, i.incident_id FROM (
            SELECT {_ROW_SELECT}, {key_select} FROM findings f{where}
            ORDER BY {_order(keys, forward)} LIMIT ?
        ) p LEFT JOIN incident_findings i USING (finding_id)
        ORDER BY {outer_order}
    """
    try:
        got = con.execute(sql, [*params, limit + 1]).fetchall()
    except duckdb.Error as e:
        raise _fail(con, "list findings", e) from e
    more = len(got) > limit
    if more:
        # The extra row is the one farthest along the reading direction.
        got = got[:limit] if forward else got[1:]
    nrow = len(ROW_FIELDS) - 1
    return [r[:nrow] + (r[-1],) for r in got], [tuple(r[nrow:-1]) for r in got], more


def page(
    con: duckdb.DuckDBPyConnection,
    flt: FindingFilter | None = None,
    sort: str = "severity",
    *,
    after: Cursor | None = None,
    before: Cursor | None = None,
    limit: int = 50,
) -> Page:
    """Up to ``limit`` findings matching ``flt`` in ``sort`` order: the first page, or the page
    right after the row whose key is ``after``, or the page right before ``before``.

    ``before`` reads the order backwards, so "previous page" costs what "next page" costs. One
    query; ``limit + 1`` rows are read to tell whether more follow.
    """
    if after is not None and before is not None:
        raise ValueError("pass after or before, not both")
    flt = flt or FindingFilter()
    if before is not None:
        rows, keys, more = _fetch(con, flt, sort, before, False, limit)
        return Page(rows, keys, has_prev=more, has_next=True)
    rows, keys, more = _fetch(con, flt, sort, after, True, limit)
    return Page(rows, keys, has_prev=after is not None, has_next=more)


def last_page(con: duckdb.DuckDBPyConnection, flt: FindingFilter | None = None, sort: str = "severity",
              *, limit: int = 50) -> Page:
    """The last ``limit`` findings in ``sort`` order (the end of the list), read backwards."""
    rows, keys, more = _fetch(con, flt or FindingFilter(), sort, None, False, limit)
    return Page(rows, keys, has_prev=more, has_next=False)


def count(con: duckdb.DuckDBPyConnection, flt: FindingFilter | None = None) -> int:
    """How many findings match ``flt`` (one filtered ``count(*)`` scan)."""
    conds, params = (flt or FindingFilter()).where()
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    try:
        return int(con.execute(f"SELECT count(*) FROM findings f{where}", params).fetchone()[0])
    except duckdb.Error as e:
        raise _fail(con, "count findings", e) from e


def data_version(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(findings, incident links): changes whenever a scan stores findings or an incident gains
    or loses findings, so cached counts are recomputed. Both are table cardinalities DuckDB
    keeps, so this is ~0.1 ms, not a scan."""
    try:
        row = con.execute(
            "SELECT (SELECT count(*) FROM findings), (SELECT count(*) FROM incident_findings)"
        ).fetchone()
    except duckdb.Error as e:
        raise _fail(con, "read the database version", e) from e
    return int(row[0]), int(row[1])


class CountCache:
    """Counts per filter, computed once per filter and data version (thread-safe).

    A count is a full filtered scan (20-60 ms on a million rows); going back and forth between
    pages, or back to a filter seen before, must not pay it again.
    """

    def __init__(self, max_entries: int = 256):
        self._lock = threading.Lock()
        self._counts: dict[tuple[FindingFilter, tuple[int, int]], int] = {}
        self._max = max_entries
        self.misses = 0  # for tests and the bench: how many counts were really computed

    def get(self, con: duckdb.DuckDBPyConnection, flt: FindingFilter | None = None) -> int:
        """The number of findings matching ``flt`` now."""
        flt = flt or FindingFilter()
        key = (flt, data_version(con))
        with self._lock:
            if key in self._counts:
                return self._counts[key]
        n = count(con, flt)
        with self._lock:
            self.misses += 1
            if len(self._counts) >= self._max:
                self._counts.pop(next(iter(self._counts)))
            self._counts[key] = n
        return n

    def peek(self, flt: FindingFilter | None, version: tuple[int, int]) -> int | None:
        """The cached count for ``flt`` at ``version``, without touching the database."""
        with self._lock:
            return self._counts.get((flt or FindingFilter(), version))

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()


def facet(con: duckdb.DuckDBPyConnection, column: str, *, limit: int = 200) -> list[tuple[Any, int]]:
    """The values of ``column`` (one of :data:`FACET_COLUMNS`) with their finding counts, most
    frequent first, at most ``limit`` of them: the choices of a filter-bar dropdown. NULLs are
    left out; ``severity`` comes as (rank, count) pairs, most severe first."""
    if column not in FACET_COLUMNS:
        raise ValueError(f"no facet for column {column!r} (one of {', '.join(FACET_COLUMNS)})")
    if column == "severity":
        sql = ("SELECT severity_rank, count(*) FROM findings GROUP BY severity_rank "
               "ORDER BY severity_rank DESC LIMIT ?")
    else:
        sql = (f"SELECT {column}, count(*) AS n FROM findings WHERE {column} IS NOT NULL "
               f"GROUP BY {column} ORDER BY n DESC, {column} LIMIT ?")
    try:
        return [(v, int(n)) for v, n in con.execute(sql, [limit]).fetchall()]
    except duckdb.Error as e:
        raise _fail(con, f"list the values of {column}", e) from e


def incident_choices(con: duckdb.DuckDBPyConnection, *, limit: int = 500) -> list[tuple[int, str, int]]:
    """(incident_id, title, findings) of incidents that hold findings, most recent id first."""
    try:
        return [(int(i), t, int(n)) for i, t, n in con.execute(
            """
            SELECT i.incident_id, i.title, count(*) AS n
            FROM incident_findings l JOIN incidents i USING (incident_id)
            GROUP BY i.incident_id, i.title ORDER BY i.incident_id DESC LIMIT ?
            """,
            [limit],
        ).fetchall()]
    except duckdb.Error as e:
        raise _fail(con, "list incidents", e) from e


#: Columns of :func:`finding_detail` from the ``findings`` table (``raw_value`` never).
DETAIL_FIELDS: Final = (
    "finding_id", "scan_id", "source_path", "line", "start_byte", "end_byte", "rule_id", "entity",
    "confidence", "score_base", "score_validator", "score_context", "severity", "severity_rank",
    "field", "field_path", "masked", "value_hash", "created_at", "ts", "format", "detector",
    "dest_host", "dest_vendor", "dest_region", "dest_jurisdiction", "residency_violation",
    "sf_object", "sf_field", "prompt_role",
)

#: Entities that are a Salesforce record id: the "record id" of the detail view.
RECORD_ID_ENTITIES: Final = frozenset({"SALESFORCE_RECORD_ID"})


def finding_detail(con: duckdb.DuckDBPyConnection, finding_id: int) -> dict[str, Any] | None:
    """Everything the detail view shows about one finding, or None if there is no such finding.

    Keys: :data:`DETAIL_FIELDS`, plus ``incident_id``, ``incident_title``, ``incident_status``
    (None when in no incident), ``record`` — every finding of the same log record (same file and
    line), as dicts with ``finding_id, start_byte, end_byte, entity, rule_id, field_path,
    masked, severity``, in byte order: the record as leakwatch saw it, masked —,
    ``record_id``: the masked Salesforce record id found in that record, if any, and
    ``same_value_findings`` / ``same_value_records``: how many findings (records) hold the same
    value (same keyed hash and entity), this one included.
    """
    cols = ", ".join(f"f.{c}" for c in DETAIL_FIELDS)
    try:
        cur = con.execute(
            f"""
            SELECT {cols}, l.incident_id, i.title AS incident_title, i.status AS incident_status
            FROM findings f
            LEFT JOIN incident_findings l USING (finding_id)
            LEFT JOIN incidents i ON i.incident_id = l.incident_id
            WHERE f.finding_id = ?
            """,
            [int(finding_id)],
        )
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip(names, row))
        cur = con.execute(
            """
            SELECT finding_id, start_byte, end_byte, entity, rule_id, field_path, masked, severity
            FROM findings WHERE source_path = ? AND line = ?
            ORDER BY start_byte, end_byte, finding_id LIMIT 200
            """,
            [out["source_path"], out["line"]],
        )
        names = [d[0] for d in cur.description]
        out["record"] = [dict(zip(names, r)) for r in cur.fetchall()]
        # How often the same value (same keyed hash, same entity) was seen: ~10 ms on 1M rows.
        same = con.execute(
            f"SELECT count(*), count(DISTINCT {RECORD_KEY}) FROM findings WHERE value_hash = ? AND entity = ?",
            [out["value_hash"], out["entity"]],
        ).fetchone()
        out["same_value_findings"], out["same_value_records"] = int(same[0]), int(same[1])
    except duckdb.Error as e:
        raise _fail(con, f"read finding {finding_id}", e) from e
    out["record_id"] = next((r["masked"] for r in out["record"] if r["entity"] in RECORD_ID_ENTITIES), None)
    return out


# -- the Salesforce map --------------------------------------------------------------------------

#: Keys of one row of :func:`sf_map_rows`.
SF_MAP_FIELDS: Final = (
    "level", "sf_object", "data_item", "mapped_field", "dest_vendor", "dest_region", "dest_jurisdiction",
    "residency_violation", "findings", "records", "data_subjects",
)


def sf_map_rows(con: duckdb.DuckDBPyConnection, subject_entities: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The Salesforce data-flow map as a tree, flattened: one row per object (``level`` 0), per
    object and field (1) and per object, field and destination (2), in tree order.

    Same notions as :func:`leakwatch.flows.flow_rows`: ``data_item`` is the Salesforce field or,
    where none is mapped (``mapped_field`` false), the detected entity; a destination is a
    (vendor, region, jurisdiction) — all three None for records that went to no AI endpoint.
    Counts at every level are exact (GROUPING SETS, not sums of the leaves): findings, records
    (distinct :data:`~leakwatch.store.queries.RECORD_KEY`) and data subjects (distinct value
    hashes of identifying entities, :data:`leakwatch.flows.SUBJECT_ENTITIES`). Only findings
    with a Salesforce object count.
    """
    if subject_entities is None:
        from leakwatch.flows import SUBJECT_ENTITIES

        subject_entities = SUBJECT_ENTITIES
    sql = f"""
        WITH f AS (
            SELECT sf_object, coalesce(sf_field, entity) AS data_item, sf_field IS NOT NULL AS mapped_field,
                   dest_vendor, dest_region, dest_jurisdiction, residency_violation,
                   -- One 64-bit hash per record instead of a (path, line) struct: distinct
                   -- counts over the three grouping sets take 250 ms instead of 380 ms on 1M rows.
                   {RECORD_KEY} AS record,
                   CASE WHEN list_contains(?::VARCHAR[], entity) THEN value_hash END AS subject_hash
            FROM findings WHERE sf_object IS NOT NULL
        )
        SELECT grouping(data_item) AS g_item, grouping(dest_vendor) AS g_dest,
               sf_object, data_item, bool_or(mapped_field) AS mapped_field,
               dest_vendor, dest_region, dest_jurisdiction,
               bool_or(coalesce(residency_violation, false)) AS residency_violation,
               count(*) AS findings,
               count(DISTINCT record) AS records,
               count(DISTINCT subject_hash) AS data_subjects
        FROM f
        GROUP BY GROUPING SETS ((sf_object), (sf_object, data_item),
                                (sf_object, data_item, dest_vendor, dest_region, dest_jurisdiction))
        ORDER BY sf_object, data_item NULLS FIRST, g_dest DESC,
                 dest_vendor NULLS LAST, dest_region NULLS LAST, dest_jurisdiction NULLS LAST
    """
    try:
        got = con.execute(sql, [list(subject_entities)]).fetchall()
    except duckdb.Error as e:
        raise _fail(con, "build the Salesforce map", e) from e
    out = []
    for g_item, g_dest, obj, item, mapped, vendor, region, juris, viol, n, recs, subj in got:
        level = 0 if g_item else (1 if g_dest else 2)
        out.append({
            "level": level, "sf_object": obj, "data_item": item if level else None,
            "mapped_field": bool(mapped) if level else None,
            "dest_vendor": vendor if level == 2 else None, "dest_region": region if level == 2 else None,
            "dest_jurisdiction": juris if level == 2 else None, "residency_violation": bool(viol),
            "findings": int(n), "records": int(recs), "data_subjects": int(subj),
        })
    return out


__all__ = [
    "DETAIL_FIELDS",
    "FACET_COLUMNS",
    "ROW_FIELDS",
    "SEVERITY_RANKS",
    "SF_MAP_FIELDS",
    "SORTS",
    "SORT_NAMES",
    "CountCache",
    "FindingFilter",
    "Page",
    "count",
    "data_version",
    "facet",
    "finding_detail",
    "incident_choices",
    "last_page",
    "page",
    "sf_map_rows",
]
