"""``leakwatch export`` against real DuckDB files filled the way a scan fills them.

The database is built through :class:`leakwatch.store.Store` (so the real migrations apply) and
rows are inserted with SQL, with realistic values from the documented log formats: Event
Monitoring ApexCallout URLs, a MuleSoft prompt payload, a Heroku router line, API Gateway access
logs. Every row also carries its raw value (as ``scan --store-raw`` would store it), so each test
can check that no raw value leaks into any export.
"""
from __future__ import annotations

import csv
import io
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from leakwatch.export import (
    EXPORT_COLUMNS,
    ExportFilter,
    entity_category,
    export_findings,
    iter_rows,
    ocsf_event,
    parse_since,
)
from leakwatch.store import Store

ELF = "/exports/elf/ApexCallout-2024-03-11.csv"
ELF2 = "/exports/elf/ApexCallout-2024-03-12.csv"
MULE = "/var/log/mule/mule-app-orders-sync.log"
HEROKU = "/var/log/heroku/router-2024-03-12.log"
APIGW = "/var/log/apigw/prod-access.json"
APP = "/srv/support-bot/llm-requests.jsonl"

OPENAI = {"dest_host": "api.openai.com", "dest_vendor": "OpenAI", "dest_region": "us", "dest_jurisdiction": "US",
          "residency_violation": True}
BEDROCK_EU = {"dest_host": "bedrock-runtime.eu-central-1.amazonaws.com", "dest_vendor": "AWS Bedrock",
              "dest_region": "eu-central-1", "dest_jurisdiction": "EU", "residency_violation": False}
ANTHROPIC = {"dest_host": "api.anthropic.com", "dest_vendor": "Anthropic", "dest_region": "us",
             "dest_jurisdiction": "US", "residency_violation": True}

#: (scan number 1 or 2, row). ``raw`` is the matched value; the store keeps its keyed hash.
SAMPLE: list[tuple[int, dict]] = [
    (1, dict(source_path=ELF, line=2, start_byte=161, end_byte=183, rule_id="email", entity="EMAIL_ADDRESS",
             confidence=0.95, severity="medium", severity_rank=2, field="URL", field_path="URL",
             raw="maria.lopez@example.es", masked="m***@e******.es", ts="2024-03-11 16:00:00+00",
             format="eventlogfile", sf_object="Contact", sf_field="Email", actor_hash="a1" * 32, **OPENAI)),
    (1, dict(source_path=ELF, line=3, start_byte=170, end_byte=185, rule_id="phone_e164", entity="PHONE_NUMBER",
             confidence=0.8, severity="medium", severity_rank=2, field="URL", field_path="URL",
             raw="+34 612 345 678", masked="+*********78", ts="2024-03-11 16:00:04.250+00",
             format="eventlogfile", sf_object="Contact", sf_field="MobilePhone", actor_hash="a1" * 32, **OPENAI)),
    (1, dict(source_path=ELF, line=4, start_byte=158, end_byte=180, rule_id="email", entity="EMAIL_ADDRESS",
             confidence=0.95, severity="medium", severity_rank=2, field="URL", field_path="URL",
             raw="jonas.becker@example.de", masked="j***@e******.de", ts="2024-03-11 16:02:10+00",
             format="eventlogfile", sf_object="Contact", sf_field="Email", actor_hash="a1" * 32, **OPENAI)),
    (1, dict(source_path=MULE, line=120, start_byte=301, end_byte=325, rule_id="iban", entity="IBAN_CODE",
             confidence=0.99, severity="high", severity_rank=3, field="messages[1].content",
             field_path="messages[1].content", raw="ES9121000418450200051332", masked="ES******************1332",
             ts="2024-03-11 17:30:00+00", format="mule", sf_object="Account", sf_field="Bank_IBAN__c",
             prompt_role="user", **BEDROCK_EU)),
    (1, dict(source_path=MULE, line=121, start_byte=40, end_byte=80, rule_id="openai_key", entity="OPENAI_API_KEY",
             confidence=0.99, severity="critical", severity_rank=4, field="Authorization", field_path="headers.Authorization",
             raw="sk-proj-4fQ9xTz0bN7LmR2sVw8YcK1dJ6hE3uPa", masked="sk-proj-…[40]",
             ts="2024-03-11 17:30:01+00", format="mule", **OPENAI)),
    (1, dict(source_path=APIGW, line=5, start_byte=88, end_byte=111, rule_id="email", entity="EMAIL_ADDRESS",
             confidence=0.7, severity="medium", severity_rank=2, field="user", field_path="user",
             raw="jonas.becker@example.de", masked="j***@e******.de", ts=None, format="apigw")),
    (2, dict(source_path=HEROKU, line=9, start_byte=120, end_byte=132, rule_id="person_name", entity="PERSON_NAME",
             confidence=0.45, severity="low", severity_rank=1, field="path", field_path="path",
             raw="Jonas Becker", masked="Jo********er", ts="2024-03-12 09:15:00+00", format="heroku",
             **ANTHROPIC)),
    (2, dict(source_path=ELF2, line=7, start_byte=161, end_byte=183, rule_id="email", entity="EMAIL_ADDRESS",
             confidence=0.95, severity="medium", severity_rank=2, field="URL", field_path="URL",
             raw="maria.lopez@example.es", masked="m***@e******.es", ts="2024-03-12 08:00:00+00",
             format="eventlogfile", sf_object="Contact", sf_field="Email", actor_hash="b2" * 32, **OPENAI)),
    (2, dict(source_path=APP, line=1, start_byte=210, end_byte=221, rule_id="us_ssn", entity="US_SSN",
             confidence=0.85, severity="high", severity_rank=3, field="messages[0].content",
             field_path="messages[0].content", raw="123-45-6789", masked="*******89", ts="2024-03-12 10:00:00+00",
             format="jsonl", prompt_role="system", **OPENAI)),
    (2, dict(source_path=APP, line=2, start_byte=15, end_byte=26, rule_id="ipv4", entity="IP_ADDRESS",
             confidence=0.6, severity="info", severity_rank=0, field="client_ip", field_path="client_ip",
             raw="203.0.113.77", masked="203.0.***.**", ts="2024-03-12 10:00:01+00", format="jsonl")),
]

RAW_VALUES = sorted({r["raw"] for _, r in SAMPLE})
_COLS = ("scan_id", "source_id", "source_path", "line", "start_byte", "end_byte", "rule_id", "entity", "confidence",
         "severity", "severity_rank", "field", "masked", "value_hash", "raw_value", "field_path", "ts", "format",
         "dest_host", "dest_vendor", "dest_region", "dest_jurisdiction", "residency_violation", "sf_object",
         "sf_field", "actor_hash", "prompt_role")


def build_db(path: Path, sample=SAMPLE, order=None) -> Path:
    """A findings database holding ``sample`` (in ``order``, a list of indexes, if given) in two
    scans, with raw values stored as ``--store-raw`` would."""
    with Store.open(path) as s:
        scans = {n: s.begin_scan(["leakwatch", "scan", "--store-raw", f"batch{n}"], "rules-v1", 1) for n in (1, 2)}
        sources: dict[tuple[int, str], int] = {}
        for i in order if order is not None else range(len(sample)):
            n, r = sample[i]
            key = (n, r["source_path"])
            if key not in sources:
                sources[key] = s.begin_source(scans[n], r["source_path"], 4096, 1, None)
            values = dict(r)
            raw = values.pop("raw")
            values.update(scan_id=scans[n], source_id=sources[key], raw_value=raw,
                          value_hash=s.hash_value(raw.lower().encode()))
            s.con.execute(
                f"INSERT INTO findings ({', '.join(_COLS)}) VALUES ({', '.join('?' for _ in _COLS)})",
                [values.get(c) for c in _COLS],
            )
        for sid in scans.values():
            s.finish_scan(sid, "ok", n_files=3, n_bytes=12288, n_records=100)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return build_db(tmp_path / "incident.duckdb")


def db_rows(db: Path, sql: str, *params):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def all_ids(db: Path, where: str = "TRUE", *params) -> list[int]:
    return [r[0] for r in db_rows(db, f"SELECT finding_id FROM findings WHERE {where} ORDER BY finding_id", *params)]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def assert_no_raw(text: str) -> None:
    for raw in RAW_VALUES:
        assert raw not in text, f"raw value {raw!r} leaked into an export"
    assert "raw_value" not in text


def expected_ts_ms(r: dict) -> int | None:
    if r["ts"] is None:
        return None
    return int(datetime.fromisoformat(r["ts"].replace("+00", "+00:00")).timestamp() * 1000)


# -- JSON lines ----------------------------------------------------------------------------------


def test_jsonl_has_one_line_per_finding_with_every_column_and_no_raw_value(db, tmp_path, cli):
    out = tmp_path / "findings.jsonl"
    r = cli("export", "--db", db, "--format", "jsonl", "--out", out)
    assert r.rc == 0, r.err
    assert "exported 10 finding(s)" in r.err
    text = out.read_text(encoding="utf-8")
    assert_no_raw(text)
    lines = text.splitlines()
    assert len(lines) == len(SAMPLE) == db_rows(db, "SELECT count(*) FROM findings")[0][0]
    objs = [json.loads(line) for line in lines]
    assert all(list(o) == list(EXPORT_COLUMNS) for o in objs)
    assert [o["finding_id"] for o in objs] == all_ids(db)
    # Rows come back in insertion order: compare each with what was inserted.
    for o, (_, r) in zip(objs, SAMPLE):
        assert (o["source_path"], o["line"], o["rule_id"], o["masked"], o["sf_field"], o["dest_host"]) == (
            r["source_path"], r["line"], r["rule_id"], r["masked"], r.get("sf_field"), r.get("dest_host"))
        ms = expected_ts_ms(r)
        if ms is None:
            assert o["ts"] is None
        else:
            assert datetime.fromisoformat(o["ts"]).timestamp() * 1000 == ms
            assert o["ts"].endswith("Z")
    assert objs[1]["ts"] == "2024-03-11T16:00:04.250Z"
    assert objs[0]["ts"] == "2024-03-11T16:00:00Z"


def test_jsonl_pages_give_the_same_output_as_one_page(db, tmp_path):
    with Store.open(db, read_only=True) as s:
        one = io.StringIO()
        n1 = export_findings(s.con, "jsonl", one)
        paged = io.StringIO()
        n2 = export_findings(s.con, "jsonl", paged, page_size=3)  # 10 rows: pages of 3, 3, 3, 1
        exact = io.StringIO()
        n3 = export_findings(s.con, "ocsf", exact, page_size=5)  # a last page that is exactly full
    assert n1 == n2 == n3 == len(SAMPLE)
    assert one.getvalue() == paged.getvalue()
    assert len(exact.getvalue().splitlines()) == len(SAMPLE)


def test_jsonl_to_stdout(db, cli):
    r = cli("export", "--db", db, "--format", "jsonl")
    assert r.rc == 0, r.err
    assert len(r.out.splitlines()) == len(SAMPLE)
    assert_no_raw(r.out)
    assert "exported" not in r.out


# -- OCSF ----------------------------------------------------------------------------------------


def test_ocsf_events_carry_the_required_attributes(db, cli):
    r = cli("export", "--db", db, "--format", "ocsf")
    assert r.rc == 0, r.err
    assert_no_raw(r.out)
    events = [json.loads(line) for line in r.out.splitlines()]
    assert len(events) == len(SAMPLE)
    created = dict(db_rows(db, "SELECT finding_id, epoch_ms(created_at) FROM findings"))
    for ev, (_, row) in zip(events, SAMPLE):
        assert ev["class_uid"] == 2006
        assert ev["category_uid"] == 2
        assert ev["activity_id"] == 1
        assert ev["type_uid"] == ev["class_uid"] * 100 + ev["activity_id"] == 200601
        # info, low, medium, high, critical → OCSF 1 Informational … 5 Critical
        assert ev["severity_id"] == row["severity_rank"] + 1
        assert ev["severity"] == ["Informational", "Low", "Medium", "High", "Critical"][row["severity_rank"]]
        assert isinstance(ev["time"], int) and ev["time"] == created[ev["unmapped"]["finding_id"]]
        assert ev["metadata"]["version"] == "1.3.0"
        product = ev["metadata"]["product"]
        assert product["name"] == "leakwatch" and product["vendor_name"] and product["version"]
        info = ev["finding_info"]
        assert isinstance(info["uid"], str) and len(info["uid"]) == 32
        assert row["entity"] in info["title"] and os.path.basename(row["source_path"]) in info["title"]
        assert info.get("first_seen_time") == expected_ts_ms(row)
        ds = ev["data_security"]
        assert ds["detection_pattern"] == row["rule_id"]
        assert ds["pattern_match"] == row["masked"]
        assert ds["category_id"] in (1, 2, 3, 4, 6, 99)
        assert ev["file"]["path"] == row["source_path"]
        assert ev["resources"][0]["uid"] == row["source_path"]
        un = ev["unmapped"]
        assert un["line"] == row["line"] and un["masked"] == row["masked"]
        assert un.get("field_path") == row["field_path"]
        assert un.get("dest_vendor") == row.get("dest_vendor")
        assert un.get("dest_region") == row.get("dest_region")
        assert un.get("sf_object") == row.get("sf_object") and un.get("sf_field") == row.get("sf_field")
        assert un["confidence"] == row["confidence"]
        if row.get("dest_host"):
            assert ev["dst_endpoint"]["hostname"] == row["dest_host"]
        else:
            assert "dst_endpoint" not in ev
        assert None not in ev.values() and None not in un.values()
    assert len({ev["finding_info"]["uid"] for ev in events}) == len(events)


def test_ocsf_uids_are_stable_across_exports(db):
    with Store.open(db, read_only=True) as s:
        a = [ocsf_event(r)["finding_info"]["uid"] for r in iter_rows(s.con)]
        b = [ocsf_event(r)["finding_info"]["uid"] for r in iter_rows(s.con, page_size=2)]
    assert a == b


def test_ocsf_data_categories():
    assert entity_category("EMAIL_ADDRESS") == (1, "Personal")
    assert entity_category("US_SSN") == (2, "Governmental")
    assert entity_category("IBAN_CODE") == (3, "Financial")
    assert entity_category("OPENAI_API_KEY") == (6, "Security")
    assert entity_category("ACME_SESSION_TOKEN") == (6, "Security")  # a user rule's entity
    assert entity_category("LOYALTY_NUMBER") == (99, "Other")


# -- Parquet and CSV -----------------------------------------------------------------------------


def test_parquet_reads_back_with_duckdb(db, tmp_path, cli):
    out = tmp_path / "out" / "findings.parquet"
    out.parent.mkdir()
    r = cli("export", "--db", db, "--format", "parquet", "--out", out)
    assert r.rc == 0, r.err
    assert mode(out) == 0o600
    assert os.listdir(out.parent) == ["findings.parquet"]  # the temporary file was renamed, not copied
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{out}')")
    assert tuple(rel.columns) == EXPORT_COLUMNS
    types = dict(zip(rel.columns, map(str, rel.types)))
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE" and types["residency_violation"] == "BOOLEAN"
    got = con.execute(
        f"SELECT finding_id, masked, epoch_ms(ts), residency_violation FROM read_parquet('{out}') ORDER BY finding_id"
    ).fetchall()
    want = [(i + 1, r["masked"], expected_ts_ms(r), r.get("residency_violation")) for i, (_, r) in enumerate(SAMPLE)]
    assert got == want
    # No column holds a raw value (the file itself is compressed, so read it back to check).
    every_cell = con.execute(f"SELECT string_agg(CAST(COLUMNS(*) AS VARCHAR), '|') FROM read_parquet('{out}')").fetchone()
    assert_no_raw("|".join(str(c) for c in every_cell))


def test_csv_header_rows_and_utc_times(db, tmp_path, cli):
    out = tmp_path / "findings.csv"
    r = cli("export", "--db", db, "--format", "csv", "--out", out)
    assert r.rc == 0, r.err
    text = out.read_text(encoding="utf-8")
    assert_no_raw(text)
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert len(rows) - 1 == len(SAMPLE)
    first = dict(zip(rows[0], rows[1]))
    assert first["ts"] == "2024-03-11 16:00:00+00"
    assert first["masked"] == "m***@e******.es" and first["residency_violation"] == "true"
    # stdout carries the same bytes as the file
    r2 = cli("export", "--db", db, "--format", "csv")
    assert r2.rc == 0 and r2.out == text


def test_existing_output_is_replaced_and_made_private(db, tmp_path, cli):
    out = tmp_path / "findings.jsonl"
    out.write_text("old\n")
    os.chmod(out, 0o644)
    for fmt in ("jsonl", "csv", "parquet", "ocsf"):
        r = cli("export", "--db", db, "--format", fmt, "--out", out)
        assert r.rc == 0, r.err
        assert mode(out) == 0o600
        assert not out.read_bytes().startswith(b"old")
    assert sorted(os.listdir(tmp_path)) == sorted(["findings.jsonl", "incident.duckdb", "incident.duckdb.key"])


# -- filters -------------------------------------------------------------------------------------


def exported_ids(cli, db, *args) -> list[int]:
    r = cli("export", "--db", db, "--format", "jsonl", *args)
    assert r.rc == 0, r.err
    return [json.loads(line)["finding_id"] for line in r.out.splitlines()]


def test_scan_filter(db, cli):
    scan2 = db_rows(db, "SELECT max(scan_id) FROM scans")[0][0]
    want = [i + 1 for i, (n, _) in enumerate(SAMPLE) if n == 2]
    assert exported_ids(cli, db, "--scan", scan2) == want == all_ids(db, "scan_id = ?", scan2)
    assert len(want) == 4


@pytest.mark.parametrize("sev,rank", [("info", 0), ("medium", 2), ("high", 3), ("critical", 4)])
def test_min_severity_filter(db, cli, sev, rank):
    want = [i + 1 for i, (_, r) in enumerate(SAMPLE) if r["severity_rank"] >= rank]
    assert exported_ids(cli, db, "--min-severity", sev) == want


def test_filters_combine(db, cli):
    scan1 = db_rows(db, "SELECT min(scan_id) FROM scans")[0][0]
    want = [i + 1 for i, (n, r) in enumerate(SAMPLE) if n == 1 and r["severity_rank"] >= 3]
    assert exported_ids(cli, db, "--scan", scan1, "--min-severity", "high") == want == [4, 5]


def test_since_filter_uses_the_record_time(db, cli):
    since = datetime(2024, 3, 11, 17, 0, tzinfo=UTC)
    # A record without its own timestamp counts by when it was stored (now), so it is kept.
    want = [i + 1 for i, (_, r) in enumerate(SAMPLE)
            if r["ts"] is None or expected_ts_ms(r) >= since.timestamp() * 1000]
    assert exported_ids(cli, db, "--since", "2024-03-11T17:00:00Z") == want
    assert exported_ids(cli, db, "--since", "2024-03-11T18:00:00+01:00") == want  # same instant
    assert 6 in want and 1 not in want


def test_parse_since():
    assert parse_since("2024-03-11") == datetime(2024, 3, 11, tzinfo=UTC)
    assert parse_since("2024-03-11T16:00:00Z") == datetime(2024, 3, 11, 16, tzinfo=UTC)


def test_export_filter_in_the_library(db):
    with Store.open(db, read_only=True) as s:
        rows = list(iter_rows(s.con, ExportFilter(min_severity_rank=4)))
    assert [r["rule_id"] for r in rows] == ["openai_key"]


# -- errors --------------------------------------------------------------------------------------


def test_missing_database_is_a_clear_usage_error(tmp_path, cli):
    missing = tmp_path / "nope.duckdb"
    r = cli("export", "--db", missing, "--format", "jsonl")
    assert r.rc == 2
    assert str(missing) in r.err and "no such database" in r.err
    assert not missing.exists()  # looking did not create an empty database


@pytest.mark.parametrize("args,needle", [
    (["--format", "parquet"], "give --out FILE"),
    (["--format", "parquet", "--out", "-"], "give --out FILE"),
    (["--format", "jsonl", "--scan", "99"], "no scan 99"),
    (["--format", "jsonl", "--since", "yesterday"], "--since 'yesterday'"),
])
def test_usage_errors_exit_2(db, cli, args, needle):
    r = cli("export", "--db", db, *args)
    assert r.rc == 2
    assert needle in r.err
    assert r.out == ""


def test_unknown_format_is_rejected_by_the_parser(db, cli):
    r = cli("export", "--db", db, "--format", "xml")
    assert r.rc == 2 and "invalid choice" in r.err


def test_out_pointing_at_a_directory(db, tmp_path, cli):
    r = cli("export", "--db", db, "--format", "csv", "--out", tmp_path)
    assert r.rc == 2 and "is a directory" in r.err


def test_help_says_raw_values_are_never_exported(cli):
    r = cli("export", "--help")
    assert r.rc == 0
    assert "Raw values are NEVER exported" in r.out
