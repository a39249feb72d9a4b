"""The data-flow map (pattern P5): Salesforce object/field → logging system → AI endpoint → region.

Derived from stored findings, for the records of processing activities GDPR Art. 30 asks for
(categories of personal data, recipients, transfers to third countries). One flow is one
combination of where the data came from (Salesforce object and field, or the detected entity when
no field is mapped), where the record carrying it was logged (the *system*), and where that
record sent it (vendor, host, region, jurisdiction, and whether that broke the residency policy).

Counts per flow: findings, distinct values (distinct keyed value hashes), an estimate of data
subjects (distinct values of identifying entities only, see :data:`SUBJECT_ENTITIES`; a person
seen with both an e-mail address and a phone number counts twice, so it is an upper bound), first
and last record time, and the source files. Only masked aggregates leave the database.
"""
from __future__ import annotations

import csv
import re
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import duckdb

from leakwatch.detect.salesforce import SUBJECT_ENTITIES as _SUBJECT_ENTITIES
from leakwatch.errors import StoreError, UsageError
from leakwatch.export import CSV_FORMULA_STARTS, atomic_output, iso_utc
from leakwatch.store.queries import db_name as _db_label

#: Entities whose distinct values are counted as data subjects (those whose value points at one
#: person; not a street, shared by a household, nor a date of birth, an IP address, a record id or
#: a credential).
SUBJECT_ENTITIES: Final[tuple[str, ...]] = tuple(sorted(_SUBJECT_ENTITIES))

#: The reader that parsed a record (findings.format) → the system that logged it.
SYSTEM_LABELS: Final = {
    "eventlogfile": "Salesforce (Event Monitoring)",
    "rtem": "Salesforce (Real-Time Event Monitoring)",
    "apigw": "AWS API Gateway",
    "apigee": "Apigee",
    "heroku": "Heroku",
    "mule": "MuleSoft",
    "jsonl": "application",
    "logfmt": "application",
    "text": "application",
    "combined": "web/CDN",
    "cloudfront": "web/CDN",
    "w3c": "web/CDN",
    "csv": "CSV export",
}

#: Mule 4 writes one file per application, ``mule-app-<app>.log`` (rotated ``.1``, ``.gz``…):
#: the application is the processing activity, so it names the system.
_MULE_APP_RE: Final = r"(?:^|[/\\])mule-app-([^/\\]+?)\.log(?:\.[^/\\]*)?$"

FORMATS: Final = ("md", "csv", "json")
FILE_STEM: Final = "data-flows"

#: Keys of a flow row, in report order.
FLOW_FIELDS: Final = (
    "sf_object",
    "data_item",
    "mapped_field",
    "categories",
    "system",
    "dest_vendor",
    "dest_host",
    "dest_region",
    "dest_jurisdiction",
    "residency_violation",
    "findings",
    "distinct_values",
    "data_subjects",
    "first_seen",
    "last_seen",
    "source_files",
)


def flow_rows(
    con: duckdb.DuckDBPyConnection,
    *,
    include_internal: bool = False,
    subject_entities: Sequence[str] = SUBJECT_ENTITIES,
) -> list[dict[str, Any]]:
    """One dict per flow (keys :data:`FLOW_FIELDS`), in a fixed order.

    A flow is a distinct (``sf_object``, ``data_item``, ``system``, ``dest_vendor``,
    ``dest_host``, ``dest_region``, ``dest_jurisdiction``, ``residency_violation``).
    ``data_item`` is the Salesforce field where one is mapped (``mapped_field`` true), otherwise
    the detected entity; ``categories`` lists the entities seen in the flow. Only findings whose
    record went to a destination (``dest_host`` or ``dest_vendor`` set) count, unless
    ``include_internal``. ``first_seen``/``last_seen`` are ISO 8601 UTC (``None`` when no record
    had a timestamp); ``source_files`` is sorted. Order: by every key column, absent values last.
    """
    labels = sorted(SYSTEM_LABELS.items())
    dest_filter = "" if include_internal else "WHERE f.dest_host IS NOT NULL OR f.dest_vendor IS NOT NULL"
    sql = f"""
        WITH labels AS (
            SELECT unnest(?::VARCHAR[]) AS format, unnest(?::VARCHAR[]) AS label
        ), f AS (
            SELECT f.sf_object,
                   f.sf_field IS NOT NULL AS mapped_field,
                   coalesce(f.sf_field, f.entity) AS data_item,
                   f.entity, f.value_hash, f.ts, f.source_path,
                   CASE
                       WHEN f.format = 'mule' AND regexp_matches(f.source_path, ?)
                           THEN 'MuleSoft app ' || regexp_extract(f.source_path, ?, 1)
                       ELSE coalesce(l.label, f.format, 'unknown')
                   END AS system,
                   f.dest_vendor, f.dest_host, f.dest_region, f.dest_jurisdiction, f.residency_violation
            FROM findings f LEFT JOIN labels l ON l.format = f.format
            {dest_filter}
        )
        SELECT sf_object, data_item, mapped_field,
               list(DISTINCT entity ORDER BY entity) AS categories,
               system, dest_vendor, dest_host, dest_region, dest_jurisdiction, residency_violation,
               count(*) AS findings,
               count(DISTINCT value_hash) AS distinct_values,
               count(DISTINCT value_hash) FILTER (WHERE list_contains(?::VARCHAR[], entity)) AS data_subjects,
               epoch_ms(min(ts)) AS first_seen,
               epoch_ms(max(ts)) AS last_seen,
               list(DISTINCT source_path ORDER BY source_path) AS source_files
        FROM f
        GROUP BY sf_object, data_item, mapped_field, system, dest_vendor, dest_host, dest_region,
                 dest_jurisdiction, residency_violation
        ORDER BY sf_object NULLS LAST, data_item, mapped_field DESC, system,
                 dest_vendor NULLS LAST, dest_host NULLS LAST, dest_region NULLS LAST,
                 dest_jurisdiction NULLS LAST, residency_violation DESC NULLS LAST
    """
    params = [
        [k for k, _ in labels], [v for _, v in labels], _MULE_APP_RE, _MULE_APP_RE, list(subject_entities),
    ]
    try:
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    except duckdb.Error as e:
        raise StoreError(f"{_db_label(con)}: cannot derive the data-flow map: {e}") from e
    from functools import lru_cache

    from leakwatch.incidents.notices_guard import mask_raw_values

    # "Only counts and names": a log's file name can itself hold a customer's e-mail address
    # (prompts_jane.doe@example.com.jsonl), which the record shows masked like a finding.
    masked = lru_cache(maxsize=None)(mask_raw_values)
    for r in rows:
        r["first_seen"] = iso_utc(r["first_seen"])
        r["last_seen"] = iso_utc(r["last_seen"])
        r["categories"] = list(r["categories"])
        r["source_files"] = [masked(p) for p in r["source_files"]]
        r["system"] = masked(r["system"]) if isinstance(r["system"], str) else r["system"]
    return [{k: r[k] for k in FLOW_FIELDS} for r in rows]


# -- rendering ------------------------------------------------------------------------------------

_COLUMN_HELP: Final = (
    ("Salesforce object",
     "the sObject the value belongs to (from the record id prefix or the log column); — when it could not be told"),
    ("Data",
     ("the Salesforce field holding the value, or, where no field is mapped, the kind of data leakwatch "
      "detected (in italics); the categories column lists every kind seen")),
    ("System",
     ("where the record was logged: Salesforce Event Monitoring, an API gateway, MuleSoft application, "
      "Heroku, a web/CDN access log or an application log")),
    ("Recipient", "the AI service vendor and host the logged request went to"),
    ("Region / jurisdiction", "where that endpoint processes the data, from the endpoint registry"),
    ("Residency", "**VIOLATION** when the region is outside what the residency policy allows"),
    ("Findings", "values detected in records of this flow"),
    ("Distinct values", "different values among them (counted by keyed hash, never stored raw)"),
    ("Data subjects",
     ("distinct values of identifying data (e-mail, phone, name, national id, card, IBAN; not "
      "street addresses, which a household shares): an upper-bound estimate of the people concerned")),
    ("First / last seen", "earliest and latest record time, UTC"),
    ("Source files", "the log files the findings came from"),
)

_TABLE_HEADER: Final = (
    "Salesforce object", "Data", "Categories", "System", "Recipient", "Region / jurisdiction",
    "Residency", "Findings", "Distinct values", "Data subjects", "First seen", "Last seen", "Source files",
)


# Brackets (a link needs them), emphasis stars, backticks, pipes, backslashes: what turns a
# cell's text into something else. Underscores inside words emphasize nothing in CommonMark.
_MD_SPECIAL: Final = re.compile(r"([\\|\[\]*`])")


def _md(text: Any) -> str:
    """Table-cell safe text: Markdown's punctuation escaped (a file named "[Verify](https:…)"
    is no link), line breaks flattened, HTML made literal (a file name or host is written by
    whoever wrote the log, and Markdown renders inline HTML)."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s).replace("\r", " ").replace("\n", " ")


def _residency(v: bool | None) -> str:
    return "**VIOLATION**" if v else ("ok" if v is False else "unknown")


def _md_row(r: dict[str, Any]) -> str:
    data = _md(r["data_item"]) if r["mapped_field"] else f"*{_md(r['data_item'])}*"
    recipient = " ".join(_md(x) for x in (r["dest_vendor"], r["dest_host"] and f"({r['dest_host']})") if x) or "—"
    region = " / ".join(_md(x) for x in (r["dest_region"], r["dest_jurisdiction"]) if x) or "—"
    cells = [
        _md(r["sf_object"]) if r["sf_object"] else "—",
        data,
        _md(", ".join(r["categories"])),
        _md(r["system"]),
        recipient,
        region,
        _residency(r["residency_violation"]),
        f"{r['findings']:,}",
        f"{r['distinct_values']:,}",
        f"{r['data_subjects']:,}",
        r["first_seen"] or "—",
        r["last_seen"] or "—",
        _md(", ".join(r["source_files"])),
    ]
    return "| " + " | ".join(cells) + " |"


def _md_table(rows: Iterable[dict[str, Any]]) -> list[str]:
    out = ["| " + " | ".join(_TABLE_HEADER) + " |", "|" + "|".join("---" for _ in _TABLE_HEADER) + "|"]
    out.extend(_md_row(r) for r in rows)
    return out


def render_markdown(
    rows: Sequence[dict[str, Any]], *, database: str, generated_at: datetime, include_internal: bool = False
) -> str:
    """The flow map as a Markdown report: what the columns mean, residency violations first,
    then every flow. Deterministic for given ``rows`` and ``generated_at``."""
    violations = [r for r in rows if r["residency_violation"]]
    scope = "all flows, including records with no external destination" if include_internal else (
        "flows to external endpoints only (records with no destination are left out; `--all` includes them)")
    lines = [
        "# Data flows of personal data to AI endpoints",
        "",
        (f"Database `{_md(database)}`, generated {generated_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} "
         f"by leakwatch. {len(rows):,} flow(s), {len(violations):,} residency violation(s); {scope}."),
        "",
        ("Input for the record of processing activities (GDPR Art. 30): which categories of personal "
         "data leave which system for which recipient, and where that recipient processes them. "
         "Derived from findings in logs, so it shows what was observed, not what is configured."),
        "",
        "## Columns",
        "",
        *[f"- **{name}**: {text}." for name, text in _COLUMN_HELP],
        "",
        "## Residency violations",
        "",
    ]
    if violations:
        lines += _md_table(violations)
    else:
        lines.append("None found.")
    lines += ["", "## All flows", ""]
    if rows:
        lines += _md_table(rows)
    else:
        lines.append("No flows found.")
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The flow rows as CSV with a header of :data:`FLOW_FIELDS`; lists joined with ``; ``,
    booleans as ``true``/``false``, absent values empty."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FLOW_FIELDS)
    for r in rows:
        cells = []
        for k in FLOW_FIELDS:
            v = r[k]
            if isinstance(v, list):
                v = "; ".join(v)
            elif isinstance(v, bool):
                v = "true" if v else "false"
            elif v is None:
                v = ""
            if isinstance(v, str) and v[:1] in CSV_FORMULA_STARTS:
                v = "'" + v  # a spreadsheet would read it as a formula (as export's CSV does)
            cells.append(v)
        w.writerow(cells)
    return buf.getvalue()


def render_json(rows: Sequence[dict[str, Any]], *, database: str, generated_at: datetime,
                include_internal: bool = False) -> str:
    """The flow rows as one JSON document: ``generated_at``, ``database``, ``include_internal``,
    ``subject_entities`` and ``flows`` (a list of dicts with :data:`FLOW_FIELDS`)."""
    doc = {
        "generated_at": generated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": database,
        "include_internal": include_internal,
        "subject_entities": list(SUBJECT_ENTITIES),
        "flows": list(rows),
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def parse_formats(text: str) -> tuple[str, ...]:
    """``"md,csv"`` → ``("md", "csv")``; raises :class:`UsageError` naming an unknown one."""
    wanted = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    bad = [f for f in wanted if f not in FORMATS]
    if bad or not wanted:
        raise UsageError(f"--format {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return wanted


def write_flows(
    con: duckdb.DuckDBPyConnection,
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    *,
    include_internal: bool = False,
    database: str = "",
    generated_at: datetime | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Derive the flow map and write ``data-flows.{md,csv,json}`` (those in ``formats``) into
    ``out_dir``, each atomically and private (0600). Returns the rows and format → path written.
    ``generated_at`` defaults to now (tests pass a fixed time)."""
    out = Path(out_dir)
    if not out.is_dir():
        raise UsageError(f"--out-dir {out}: no such directory")
    when = generated_at or datetime.now(UTC)
    rows = flow_rows(con, include_internal=include_internal)
    written: dict[str, Path] = {}
    for fmt in formats:
        if fmt == "md":
            text = render_markdown(rows, database=database, generated_at=when, include_internal=include_internal)
        elif fmt == "csv":
            text = render_csv(rows)
        elif fmt == "json":
            text = render_json(rows, database=database, generated_at=when, include_internal=include_internal)
        else:
            raise UsageError(f"unknown flows format {fmt!r}; choose from {', '.join(FORMATS)}")
        path = out / f"{FILE_STEM}.{fmt}"
        with atomic_output(path, "--out-dir") as tmp:
            _write_text(tmp, text)
        written[fmt] = path
    return rows, written


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


__all__ = [
    "FLOW_FIELDS",
    "FORMATS",
    "SUBJECT_ENTITIES",
    "SYSTEM_LABELS",
    "flow_rows",
    "parse_formats",
    "render_csv",
    "render_json",
    "render_markdown",
    "write_flows",
]
