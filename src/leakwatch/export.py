"""Export stored findings for other tools: Parquet, CSV, JSON lines, and OCSF JSON lines.

Only masked values leave the database. ``raw_value`` (filled when a scan ran with ``--store-raw``)
is never selected, and the database's HMAC key is never read: exports carry ``value_hash``, which
can be counted and joined within one database's exports but is useless without the key.

Parquet and CSV are written by DuckDB itself (``COPY (SELECT …) TO …``), so no pyarrow is needed
and the rows never pass through Python. JSON lines and OCSF are built in Python from pages of
``PAGE_SIZE`` findings fetched by keyset on ``finding_id`` (the habit of
:mod:`leakwatch.store.queries`): memory stays flat however large the table is. Every file is
written to a private temporary file beside the target and renamed over it, so a reader never
sees half an export and an interrupted export leaves the old file in place.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

import duckdb

from leakwatch import __version__
from leakwatch.errors import LeakwatchError, StoreError, UsageError
from leakwatch.store.db import private_umask
from leakwatch.store.queries import db_name as _db_label

FORMATS: Final = ("parquet", "csv", "jsonl", "ocsf")

#: Findings fetched per query for JSON lines / OCSF. 5,000 rows of ~30 short columns are ~5 MB of
#: Python objects: large enough that the per-query cost (~1 ms) is noise, small enough to stay flat.
PAGE_SIZE: Final = 5000

#: The columns an export carries, in order. ``raw_value`` is deliberately absent; so are the score
#: components, which only explain ``confidence``.
EXPORT_COLUMNS: Final = (
    "finding_id",
    "scan_id",
    "source_path",
    "line",
    "start_byte",
    "end_byte",
    "ts",
    "created_at",
    "format",
    "field",
    "field_path",
    "rule_id",
    "entity",
    "detector",
    "confidence",
    "severity",
    "severity_rank",
    "masked",
    "value_hash",
    "dest_host",
    "dest_vendor",
    "dest_region",
    "dest_jurisdiction",
    "residency_violation",
    "sf_object",
    "sf_field",
    "actor_hash",
    "prompt_role",
)

_TIME_COLUMNS: Final = frozenset({"ts", "created_at"})

# -- OCSF ---------------------------------------------------------------------------------------

#: The OCSF schema version the events follow (https://schema.ocsf.io/1.3.0/classes/data_security_finding).
OCSF_VERSION: Final = "1.3.0"
OCSF_CLASS_UID: Final = 2006  # Data Security Finding
OCSF_CATEGORY_UID: Final = 2  # Findings
OCSF_ACTIVITY_CREATE: Final = 1
OCSF_TYPE_UID: Final = OCSF_CLASS_UID * 100 + OCSF_ACTIVITY_CREATE  # 200601

#: Our severity rank (0 info … 4 critical) → OCSF severity_id and its caption. OCSF's scale has
#: Unknown (0) below Informational and Fatal (6) above Critical; we use neither.
OCSF_SEVERITY: Final = {0: (1, "Informational"), 1: (2, "Low"), 2: (3, "Medium"), 3: (4, "High"), 4: (5, "Critical")}

# data_classification.category_id captions (OCSF 1.2+).
_PERSONAL, _GOVERNMENTAL, _FINANCIAL, _BUSINESS, _SECURITY, _OTHER = 1, 2, 3, 4, 6, 99
_CATEGORY_CAPTION: Final = {
    _PERSONAL: "Personal", _GOVERNMENTAL: "Governmental", _FINANCIAL: "Financial",
    _BUSINESS: "Business", _SECURITY: "Security", _OTHER: "Other",
}

#: Entities of the shipped rules → OCSF data category. OCSF files IP addresses under Security
#: ("passwords, passkeys, IP addresses, API keys"), so we follow it; national identifiers are
#: Governmental, cards and IBANs Financial. Entities of user rules fall back to a name heuristic.
ENTITY_CATEGORY: Final = {
    "EMAIL_ADDRESS": _PERSONAL, "PHONE_NUMBER": _PERSONAL, "PERSON_NAME": _PERSONAL,
    "STREET_ADDRESS": _PERSONAL, "POSTAL_CODE": _PERSONAL, "LOCATION": _PERSONAL, "DATE_OF_BIRTH": _PERSONAL,
    "US_SSN": _GOVERNMENTAL, "UK_NINO": _GOVERNMENTAL, "DE_STEUER_ID": _GOVERNMENTAL,
    "ES_DNI": _GOVERNMENTAL, "ES_NIE": _GOVERNMENTAL, "FR_NIR": _GOVERNMENTAL,
    "IT_FISCAL_CODE": _GOVERNMENTAL, "NL_BSN": _GOVERNMENTAL, "PL_PESEL": _GOVERNMENTAL,
    "CREDIT_CARD": _FINANCIAL, "IBAN_CODE": _FINANCIAL,
    "SALESFORCE_RECORD_ID": _BUSINESS,
    "IP_ADDRESS": _SECURITY, "PASSWORD": _SECURITY, "JWT": _SECURITY, "PRIVATE_KEY": _SECURITY,
    "BEARER_TOKEN": _SECURITY, "BASIC_AUTH_CREDENTIALS": _SECURITY, "SALESFORCE_SESSION_ID": _SECURITY,
}
_SECRET_WORDS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "SESSION")

# data_security.detection_system_id 4 "Data Discovery & Classification": a tool that finds and
# classifies sensitive data in stored media, which is what a log scan is. The logs are at rest.
_DETECTION_SYSTEM: Final = (4, "Data Discovery & Classification")
_LIFECYCLE_AT_REST: Final = (1, "Data at-Rest")


# -- filters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFilter:
    """Which findings to export; ``None`` fields do not filter.

    ``since`` keeps findings whose record happened at or after it: the record's own timestamp
    (``ts``) where the log has one, otherwise the time the finding was stored (``created_at``).
    """

    scan_id: int | None = None
    min_severity_rank: int | None = None
    since: datetime | None = None

    def where(self, *, after_id: int | None = None) -> tuple[str, list[Any]]:
        """The SQL ``WHERE`` clause (empty when nothing filters) and its parameters."""
        parts: list[str] = []
        params: list[Any] = []
        if after_id is not None:
            parts.append("finding_id > ?")
            params.append(after_id)
        if self.scan_id is not None:
            parts.append("scan_id = ?")
            params.append(self.scan_id)
        if self.min_severity_rank is not None:
            parts.append("severity_rank >= ?")
            params.append(self.min_severity_rank)
        if self.since is not None:
            parts.append("coalesce(ts, created_at) >= CAST(? AS TIMESTAMPTZ)")
            params.append(self.since.isoformat())
        return (" WHERE " + " AND ".join(parts)) if parts else "", params


def parse_since(text: str) -> datetime:
    """``--since`` text → an aware datetime. Accepts ISO 8601 dates and date-times
    (``2024-03-11``, ``2024-03-11T16:00``, ``…Z``, ``…+01:00``); without a zone it is UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since {text!r}: not an ISO 8601 date or time (e.g. 2024-03-11 or 2024-03-11T16:00:00Z)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# -- small helpers shared with leakwatch.flows ----------------------------------------------------

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def iso_utc(epoch_ms: int | None) -> str | None:
    """Epoch milliseconds → ``2024-03-11T16:00:00Z`` (with ``.123`` only when there are
    milliseconds); ``None`` stays ``None``. Exact: no float round trip."""
    if epoch_ms is None:
        return None
    when = _EPOCH + timedelta(milliseconds=int(epoch_ms))
    spec = "milliseconds" if epoch_ms % 1000 else "seconds"
    return when.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _sql_string(text: str) -> str:
    """A SQL string literal (COPY's target cannot be a parameter)."""
    return "'" + text.replace("'", "''") + "'"


# Names of a process's open streams (not files of their own, as /dev/shm/x is).
_STREAM_ALIAS: Final = re.compile(r"/dev/(?:stdout|stderr|stdin|fd/\d+)|/proc/(?:self|\d+)/fd/\d+")


@contextlib.contextmanager
def atomic_output(dest: str | Path, what: str = "--out") -> Iterator[Path]:
    """Yield a private (0600) temporary path beside ``dest``; rename it over ``dest`` when the
    block succeeds, delete it when it fails. A ``dest`` that exists and is no regular file (a
    named pipe, a device, a process substitution) is yielded itself and written in place; a
    symbolic link's target is the file replaced.

    The rename makes the export appear whole or not at all, and gives an existing ``dest`` the new
    file's 0600 mode instead of keeping its old one. ``what`` names the option in error messages.
    """
    dest = Path(dest)
    if _STREAM_ALIAS.fullmatch(str(dest)):
        # /dev/stdout, /dev/fd/3, /proc/self/fd/5: a stream the caller opened (perhaps onto a
        # file it appends to), written in place; replacing what it points to would lose that.
        try:
            yield dest
        except OSError as exc:
            raise LeakwatchError(f"{what} {dest}: cannot write: {exc.strerror or exc}") from exc
        return
    try:
        mode = dest.stat().st_mode  # through a symbolic link
    except OSError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"{what} {dest}: is a directory; give a file name")
    if mode is not None and not stat.S_ISREG(mode):
        # A named pipe, a device, /dev/stdout, a shell's >(…): written as it is; renaming a file
        # over it would replace the pipe or device node and the reader would get nothing.
        try:
            yield dest
        except OSError as exc:
            raise LeakwatchError(f"{what} {dest}: cannot write: {exc.strerror or exc}") from exc
        return
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))  # the file the link points to is replaced, the link stays
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as e:
        raise UsageError(f"{what} {dest}: cannot create a file in {dest.parent}: {e.strerror}") from e
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o600)
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise LeakwatchError(f"{what} {dest}: cannot write: {exc.strerror or exc}") from exc
        raise


def check_not_database_files(db: Path, outputs: list[Path], what: str = "--out-dir") -> None:
    """Refuse to write an output over the database, its WAL or its key file (by name, through a
    symbolic link, or as the same file): :class:`UsageError` naming both."""
    from leakwatch.store.db import key_path_for, wal_path_for

    for out in outputs:
        for own in (db, wal_path_for(db), key_path_for(db)):
            same = os.path.realpath(out) == os.path.realpath(own) or (
                out.exists() and own.exists() and os.path.samefile(out, own))
            if same:
                raise UsageError(f"{what}: {out} is the database's own file ({own}); give another "
                                 f"{'file name' if what == '--out' else 'directory'}")


#: --out names that mean this process's standard output.
STDOUT_NAMES: Final = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


@contextlib.contextmanager
def utf8_stdout() -> Iterator[IO[str]]:
    """Standard output as a UTF-8 text stream whatever the locale (a masked secret's "…" must
    not fail on a Latin-1 terminal); a write that fails (a full disk behind ``> file``) is a
    :class:`LeakwatchError` naming it. A reader that went away stays a BrokenPipeError."""
    sys.stdout.flush()
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
    try:
        yield out
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise LeakwatchError(f"cannot write to standard output: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            out.detach()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the block like Ctrl-C (KeyboardInterrupt), so the temporary file of an
    export or a flow map is removed instead of left behind; the previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- reading ------------------------------------------------------------------------------------


def _select_list(*, epoch_times: bool) -> str:
    cols = []
    for c in EXPORT_COLUMNS:
        if epoch_times and c in _TIME_COLUMNS:
            cols.append(f"epoch_ms({c}) AS {c}")
        else:
            cols.append(c)
    return ", ".join(cols)


def iter_rows(
    con: duckdb.DuckDBPyConnection, flt: ExportFilter = ExportFilter(), *, page_size: int = PAGE_SIZE
) -> Iterator[dict[str, Any]]:
    """The findings to export, as dicts keyed by :data:`EXPORT_COLUMNS`, in ``finding_id`` order,
    fetched ``page_size`` at a time. ``ts`` and ``created_at`` are epoch milliseconds (UTC).

    Raises :class:`StoreError` naming the database when a query fails.
    """
    select = _select_list(epoch_times=True)
    after_id = 0
    while True:
        where, params = flt.where(after_id=after_id)
        try:
            rows = con.execute(
                f"SELECT {select} FROM findings{where} ORDER BY finding_id LIMIT ?", [*params, page_size]
            ).fetchall()
        except duckdb.Error as e:
            raise StoreError(f"{_db_label(con)}: cannot read findings to export: {e}") from e
        for row in rows:
            yield dict(zip(EXPORT_COLUMNS, row))
        if len(rows) < page_size:
            return
        after_id = rows[-1][0]


def jsonl_record(row: dict[str, Any]) -> dict[str, Any]:
    """One finding as written by ``--format jsonl``: every export column, times as ISO 8601 UTC,
    ``confidence`` rounded to 3 places; absent values are ``null`` so every line has every key."""
    out = dict(row)
    for c in _TIME_COLUMNS:
        out[c] = iso_utc(row[c])
    if out["confidence"] is not None:
        out["confidence"] = round(float(out["confidence"]), 3)
    return out


# -- OCSF ---------------------------------------------------------------------------------------


def entity_category(entity: str) -> tuple[int, str]:
    """OCSF ``data_classification.category_id`` and caption for one of our entities."""
    cat = ENTITY_CATEGORY.get(entity)
    if cat is None:
        upper = entity.upper()
        cat = _SECURITY if any(w in upper for w in _SECRET_WORDS) else _OTHER
    return cat, _CATEGORY_CAPTION[cat]


def finding_uid(row: dict[str, Any]) -> str:
    """A stable id for a finding: SHA-256 (first 32 hex digits) of the key the store deduplicates
    on (source path, line, start byte, rule, value hash). The same finding keeps its uid across
    exports and re-scans; as ``value_hash`` is keyed per database, two databases never share one."""
    key = "\x1f".join(str(row[c]) for c in ("source_path", "line", "start_byte", "rule_id", "value_hash"))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _confidence_id(confidence: float | None) -> tuple[int, str] | None:
    # OCSF confidence_id: 1 Low, 2 Medium, 3 High. Our scores are calibrated so that 0.5 is the
    # default rule confidence and validators/context lift true hits above 0.8.
    if confidence is None:
        return None
    if confidence >= 0.8:
        return 3, "High"
    if confidence >= 0.5:
        return 2, "Medium"
    return 1, "Low"


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def ocsf_event(row: dict[str, Any], *, product_version: str = __version__) -> dict[str, Any]:
    """One finding (a dict from :func:`iter_rows`) as an OCSF 1.3.0 Data Security Finding.

    ``time`` is when leakwatch stored the finding (OCSF: the finding's creation time);
    ``finding_info.first_seen_time``/``last_seen_time`` are the log record's own timestamp when it
    has one. ``data_security.pattern_match`` is the *masked* value. Attributes OCSF has no place
    for (line, field path, destination vendor/region, Salesforce object/field…) go to ``unmapped``.
    Absent values are left out rather than written as ``null``, as OCSF recommends.
    """
    rank = int(row["severity_rank"])
    severity_id, severity_caption = OCSF_SEVERITY.get(rank, (99, "Other"))
    category_id, category = entity_category(row["entity"])
    path = row["source_path"]
    name = os.path.basename(path) or path
    where = f"{name}:{row['line']}"
    title = f"{row['entity']} in {where}"
    if row["dest_vendor"] or row["dest_host"]:
        title += f" sent to {row['dest_vendor'] or row['dest_host']}"
    desc = f"Rule {row['rule_id']} found {row['entity']} ({row['masked']}) in {path} line {row['line']}"
    if row["field_path"] or row["field"]:
        desc += f", field {row['field_path'] or row['field']}"
    if row["dest_host"] or row["dest_vendor"]:
        dest = row["dest_host"] or row["dest_vendor"]
        region = f" ({row['dest_region']})" if row["dest_region"] else ""
        desc += f"; the record was sent to {dest}{region}"
        if row["residency_violation"]:
            desc += ", outside the allowed data residency"
    desc += "."
    ts_ms, created_ms = row["ts"], row["created_at"]
    event: dict[str, Any] = {
        "class_uid": OCSF_CLASS_UID,
        "class_name": "Data Security Finding",
        "category_uid": OCSF_CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": OCSF_ACTIVITY_CREATE,
        "activity_name": "Create",
        "type_uid": OCSF_TYPE_UID,
        "type_name": "Data Security Finding: Create",
        "severity_id": severity_id,
        "severity": severity_caption,
        "time": created_ms,
        "status_id": 1,
        "status": "New",
        "is_alert": rank >= 3,
        "message": title,
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "leakwatch", "vendor_name": "leakwatch", "version": product_version},
        },
        "finding_info": _drop_none({
            "uid": finding_uid(row),
            "title": title,
            "desc": desc,
            "types": [row["entity"]],
            "created_time": created_ms,
            "first_seen_time": ts_ms,
            "last_seen_time": ts_ms,
            "data_sources": [row["format"]] if row["format"] else None,
        }),
        "data_security": {
            "category_id": category_id,
            "category": category,
            "detection_pattern": row["rule_id"],
            "detection_system_id": _DETECTION_SYSTEM[0],
            "detection_system": _DETECTION_SYSTEM[1],
            "data_lifecycle_state_id": _LIFECYCLE_AT_REST[0],
            "data_lifecycle_state": _LIFECYCLE_AT_REST[1],
            **({"pattern_match": row["masked"]} if row["masked"] is not None else {}),
        },
        "file": {"name": name, "path": path, "type_id": 1, "type": "Regular File"},
        "resources": [{"uid": path, "name": name, "type": "Log File"}],
    }
    conf = _confidence_id(row["confidence"])
    if conf is not None:
        event["confidence_id"], event["confidence"] = conf
        event["confidence_score"] = round(float(row["confidence"]) * 100)
    if row["dest_host"]:
        event["dst_endpoint"] = {"hostname": row["dest_host"]}
    if ts_ms is not None:
        event["start_time"] = event["end_time"] = ts_ms
    unmapped = {
        "finding_id": row["finding_id"],
        "scan_id": row["scan_id"],
        "line": row["line"],
        "start_byte": row["start_byte"],
        "end_byte": row["end_byte"],
        "field": row["field"],
        "field_path": row["field_path"],
        "entity": row["entity"],
        "severity": row["severity"],
        "confidence": round(float(row["confidence"]), 3) if row["confidence"] is not None else None,
        "masked": row["masked"],
        "value_hash": row["value_hash"],
        "detector": row["detector"],
        "dest_vendor": row["dest_vendor"],
        "dest_region": row["dest_region"],
        "dest_jurisdiction": row["dest_jurisdiction"],
        "residency_violation": row["residency_violation"],
        "sf_object": row["sf_object"],
        "sf_field": row["sf_field"],
        "actor_hash": row["actor_hash"],
        "prompt_role": row["prompt_role"],
    }
    event["unmapped"] = _drop_none(unmapped)
    return event


# -- writing ------------------------------------------------------------------------------------


#: First characters that make a spreadsheet read a CSV cell as a formula (OWASP): such a cell
#: gets a leading ' in every CSV leakwatch writes (exports here, the flow map's in flows.py).
CSV_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(column: str) -> str:
    """A text column as a spreadsheet may safely open it: a value starting with one of
    :data:`CSV_FORMULA_STARTS` would be read as a formula (keys and paths are written by whoever
    wrote the log), so it gets a leading ' (a masked phone reads '+44 … there)."""
    starts = ", ".join(f"chr({ord(c)})" for c in CSV_FORMULA_STARTS)
    return f"CASE WHEN left({column}, 1) IN ({starts}) THEN '''' || {column} ELSE {column} END AS {column}"


def _copy(con: duckdb.DuckDBPyConnection, fmt: str, flt: ExportFilter, target: Path) -> int:
    where, params = flt.where()
    options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER true"
    columns = _select_list(epoch_times=False)
    if fmt == "csv":
        types = dict(con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'findings'").fetchall())
        columns = ", ".join(_csv_cell(c) if types.get(c) == "VARCHAR" else c for c in EXPORT_COLUMNS)
    # A cursor is a separate DuckDB connection: the UTC setting (CSV writes TIMESTAMPTZ in the
    # session time zone) does not leak into the caller's connection.
    cur = con.cursor()
    try:
        cur.execute("SET TimeZone = 'UTC'")
        with private_umask():
            row = cur.execute(
                f"COPY (SELECT {columns} FROM findings{where} ORDER BY finding_id)"
                f" TO {_sql_string(str(target))} ({options})",
                params,
            ).fetchone()
    except duckdb.IOException as e:
        raise LeakwatchError(f"cannot write the {fmt} export: {e}") from e
    except duckdb.Error as e:
        raise StoreError(f"{_db_label(con)}: cannot export findings as {fmt}: {e}") from e
    finally:
        cur.close()
    return int(row[0]) if row else 0


def _write_lines(con: duckdb.DuckDBPyConnection, fmt: str, flt: ExportFilter, out: IO[str], page_size: int) -> int:
    to_obj = ocsf_event if fmt == "ocsf" else jsonl_record
    n = 0
    lines: list[str] = []
    for row in iter_rows(con, flt, page_size=page_size):
        lines.append(json.dumps(to_obj(row), ensure_ascii=False))
        n += 1
        if len(lines) >= 1000:
            out.write("\n".join(lines) + "\n")
            lines.clear()
    if lines:
        out.write("\n".join(lines) + "\n")
    out.flush()
    return n


def export_findings(
    con: duckdb.DuckDBPyConnection,
    fmt: str,
    out: str | Path | IO[str],
    flt: ExportFilter = ExportFilter(),
    *,
    page_size: int = PAGE_SIZE,
) -> int:
    """Write the findings selected by ``flt`` to ``out`` in format ``fmt`` (one of
    :data:`FORMATS`); return how many were written.

    ``out`` is a file path (written atomically, mode 0600) or, for the text formats, an open text
    stream such as ``sys.stdout``. Parquet needs a path. ``jsonl`` and ``ocsf`` are one JSON
    object per line (OCSF events are JSON lines too, the form SIEM collectors ingest). Raises
    :class:`UsageError` for a bad format or target, :class:`StoreError` when the database fails.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(out, (str, Path)):
        with atomic_output(out) as tmp:
            if fmt in ("parquet", "csv"):
                return _copy(con, fmt, flt, tmp)
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                return _write_lines(con, fmt, flt, f, page_size)
    if fmt == "parquet":
        raise UsageError("parquet is a binary format and cannot go to a stream; give --out FILE")
    if fmt == "csv":
        # DuckDB's CSV writer writes files only: let it write a private temporary file, then copy
        # that to the stream, so CSV on stdout is byte-for-byte what --out FILE would hold.
        with tempfile.TemporaryDirectory(prefix="leakwatch-export-") as d:
            tmp = Path(d) / "findings.csv"
            n = _copy(con, fmt, flt, tmp)
            with open(tmp, encoding="utf-8", newline="") as f:
                while chunk := f.read(1 << 20):
                    out.write(chunk)
            out.flush()
            return n
    return _write_lines(con, fmt, flt, out, page_size)


__all__ = [
    "EXPORT_COLUMNS",
    "FORMATS",
    "OCSF_VERSION",
    "ExportFilter",
    "atomic_output",
    "entity_category",
    "export_findings",
    "finding_uid",
    "iso_utc",
    "iter_rows",
    "jsonl_record",
    "ocsf_event",
    "parse_since",
]
