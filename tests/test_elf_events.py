"""EventLogFile event rows go to DuckDB in bulk (store.elf_events): same answers as a row-by-row
reading, whatever the quoting, the headers and the ranges a big file is cut into."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import pytest

from leakwatch.pipeline import MIN_RANGE_BYTES, scan_paths
from helpers import read_rows as _q

REST_HEADER = ["EVENT_TYPE", "TIMESTAMP", "REQUEST_ID", "ORGANIZATION_ID", "USER_ID", "METHOD", "ENTITY_NAME",
               "CONNECTED_APP_ID", "ROWS_PROCESSED", "EXCEPTION_MESSAGE", "STATUS_CODE", "TIMESTAMP_DERIVED",
               "USER_ID_DERIVED"]
CALLOUT_HEADER = ["EVENT_TYPE", "TIMESTAMP", "USER_ID", "TYPE", "METHOD", "STATUS_CODE", "URL", "TIMESTAMP_DERIVED"]


def _row(cells) -> str:
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def test_concatenated_exports_quoting_and_headers(tmp_path):
    p = tmp_path / "EventLogFile_concat.csv"
    lines = [_row(REST_HEADER)]
    lines.append(_row(["RestApi", "20240311100000.000", "r1", "00D5j000000AbCd", "0055j00000AT6I1", "GET", "Contact",
                       "0H4xx0000000001", "200", "", "200", "2024-03-11T10:00:00.000Z", "0055j00000AT6I1AAL"]))
    # A value holding '","' (JSON in an exception message): splitting on '","' would misread it.
    lines.append(_row(["RestApi", "20240311100100.000", "r2", "00D5j000000AbCd", "0055j00000AT6I1", "POST", "Lead",
                       "", "12", '{"error":"x","code":7}', "400", "2024-03-11T10:01:00.000Z", "0055j00000AT6I1AAL"]))
    # A second export appended: other columns, URL where ENTITY_NAME was.
    lines.append(_row(CALLOUT_HEADER))
    lines.append(_row(["ApexCallout", "20240311100200.500", "0055j00000BX9K2", "REST", "POST", "200",
                       '"https://api.mistral.ai/v1/chat/completions"', ""]))
    lines.append(_row(["ApexCallout", "20240311100300.000", "0055j00000BX9K2", "REST", "GET", "200",
                       "https://hooks.acme-internal.net/x", ""]))
    p.write_text("".join(lines))
    db = tmp_path / "lw.duckdb"
    s = scan_paths([str(p)], db)
    assert s.files[0].fmt == "eventlogfile"
    got = _q(db, "SELECT line, kind, event_type, ts, sf_object, rows_processed, status, app, url_host, dest_vendor"
                 " FROM events ORDER BY line, kind")
    t = lambda h, m, sec=0, us=0: datetime(2024, 3, 11, h, m, sec, us, tzinfo=timezone.utc)  # noqa: E731
    assert got == [
        (2, "api", "RestApi", t(10, 0), "Contact", 200, 200, "0H4xx0000000001", None, None),
        (3, "api", "RestApi", t(10, 1), "Lead", 12, 400, None, None, None),
        (5, "ai_call", "ApexCallout", t(10, 2, 0, 500000), None, None, 200, None, "api.mistral.ai", got[2][9]),
    ]
    assert "mistral" in got[2][9].lower()
    # 15- and 18-character forms of one user are one actor.
    actors = _q(db, "SELECT DISTINCT actor_hash FROM events WHERE kind = 'api'")
    assert len(actors) == 1 and actors[0][0] is not None


@pytest.mark.parametrize("workers", [1, 2])
def test_event_line_numbers_across_ranges(tmp_path, workers):
    p = tmp_path / "EventLogFile_RestApi.csv"
    n = 0
    with open(p, "w") as f:
        f.write(_row(REST_HEADER))
        while f.tell() < 2 * MIN_RANGE_BYTES + 1000:
            n += 1
            # The row's own line number travels in ROWS_PROCESSED, to check the stored line.
            f.write(_row(["RestApi", "20240311100000.000", f"r{n}", "00D5j000000AbCd", "0055j00000AT6I1", "GET",
                          "Account", "", str(n + 1), "", "200", "2024-03-11T10:00:00.000Z", "0055j00000AT6I1AAL"]))
    db = tmp_path / "lw.duckdb"
    scan_paths([str(p)], db, workers=workers)
    assert _q(db, "SELECT count(*), count(*) FILTER (WHERE line = rows_processed), min(line), max(line) FROM events") \
        == [(n, n, 2, n + 1)]


def test_an_unquoted_export_gives_the_same_events(tmp_path):
    """Some tools write EventLogFile CSV without quotes; its rows are the same events."""
    rows = [REST_HEADER,
            ["RestApi", "20240311100000.000", "r1", "00D5j000000AbCd", "0055j00000AT6I1", "GET", "Contact",
             "0H4xx0000000001", "200", "", "200", "2024-03-11T10:00:00.000Z", "0055j00000AT6I1AAL"],
            ["RestApi", "20240311100100.000", "r2", "00D5j000000AbCd", "0055j00000AT6I1", "POST", "Lead",
             "", "12", "", "400", "2024-03-11T10:01:00.000Z", "0055j00000AT6I1AAL"]]
    got = {}
    for quoted in (True, False):
        p = tmp_path / f"EventLogFile_{quoted}.csv"
        p.write_text("".join(_row(r) if quoted else ",".join(r) + "\n" for r in rows))
        db = tmp_path / f"{quoted}.duckdb"
        s = scan_paths([str(p)], db)
        assert s.files[0].fmt == "eventlogfile"
        got[quoted] = _q(db, "SELECT line, kind, event_type, ts, sf_object, rows_processed, status, app FROM events "
                             "ORDER BY line")
    assert len(got[True]) == 2
    assert got[False] == got[True]


def test_a_client_name_that_is_an_email_and_a_card_in_the_url_are_stored_masked(tmp_path):
    from leakwatch.pipeline import scan_paths
    from leakwatch.store import Store

    elf = tmp_path / "ApexCallout.csv"
    elf.write_text('"EVENT_TYPE","TIMESTAMP","REQUEST_ID","USER_ID","USER_NAME","CLIENT_NAME","URL"\n'
                   '"ApexCallout","20260310100600.000","4-Zq2","","zinkerfield.bartholomew","zq.appmail@example.com",'
                   '"https://api.openai.com/v1/users/4242-4242-4242-4242/chat"\n')
    db = tmp_path / "lw.duckdb"
    scan_paths([str(elf)], db)
    with Store.open(db) as s:
        rows = s.con.execute("SELECT url_path, app, actor_masked FROM events").fetchall()
        text = repr(rows) + repr(s.con.execute("SELECT summary FROM alerts").fetchall())
    assert rows == [("/v1/users/*/chat", "z***@e******.com", "z***")]
    assert "appmail" not in text and "4242-4242" not in text and "zinkerfield" not in text
