"""A day's hourly and daily EventLogFiles hold the same rows (``leakwatch pull`` fetches both when
the org has hourly logs). Scanned together, the detectors count each row once: the same alerts,
with the same counts, as the daily file alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import test_patterns_e2e as pe
from helpers import read_rows

from leakwatch.store import queries

DAILY = "EventLogFile_{}_2024-03-11.csv"
HOURLY = "EventLogFile_{}_2024-03-11T{:02d}.csv"


def _hour_of(csv: str, hour: int) -> str:
    """The hourly file Salesforce writes for ``hour`` of the day: the header, then the daily
    file's rows of that hour, unchanged."""
    header, *rows = csv.splitlines()
    stamp = f'"20240311{hour:02d}'
    return "\n".join([header] + [r for r in rows if f',{stamp}' in r]) + "\n"


def _counts(s: pe.Scanned) -> list[tuple]:
    return sorted(
        (a["pattern"], a["severity"], a["summary"],
         {k: v for k, v in a["evidence"].items() if k not in ("events", "findings", "files", "value_hash")})
        for a in s.alerts())


def test_api_volume_counts_a_row_in_the_hourly_and_the_daily_file_once(tmp_path):
    csv, lines = pe._rest_api_log({pe.USER_A: [18, 19, 20, 21, 22] * 3 + [80]})
    daily_only = pe.scan(tmp_path / "a", {DAILY.format("RestApi"): csv})
    both = pe.scan(tmp_path / "b", {DAILY.format("RestApi"): csv, HOURLY.format("RestApi", 15): _hour_of(csv, 15),
                                    HOURLY.format("RestApi", 14): _hour_of(csv, 14)})
    # Every row of both files is stored, as read...
    assert read_rows(both.db, "SELECT count(*) FROM events WHERE kind = 'api'") == [(sum([18, 19, 20, 21, 22] * 3) + 80 + 80 + 22,)]
    # ...and the alert is the daily file's: 80 calls in hour 15, not 160, over a median of 20.
    assert _counts(both) == _counts(daily_only)
    [a] = both.alerts("api_volume")
    assert a["evidence"]["n_events"] == 80 and a["evidence"]["baseline_median"] == 20.0
    # The evidence names the daily file's rows, the file that holds the whole day.
    assert a["evidence"]["events"] == both.event_ids(DAILY.format("RestApi"), "api", lines[(pe.USER_A, 15)])


def test_two_calls_in_one_millisecond_of_one_file_stay_two(tmp_path):
    # Near miss: rows alike in every stored field but in one file are two calls, so a copy of
    # that hour in the hourly file pairs row for row and the hour still counts them both.
    csv, _ = pe._rest_api_log({pe.USER_A: [18, 19, 20, 21, 22] * 3 + [40]})
    header, *rows = csv.splitlines()
    hour15 = [r for r in rows if ',"2024031115' in r]
    doubled = "\n".join([header] + rows + hour15) + "\n"  # each 15:xx call made twice, same ms
    s = pe.scan(tmp_path, {DAILY.format("RestApi"): doubled,
                           HOURLY.format("RestApi", 15): "\n".join([header] + hour15 + hour15) + "\n"})
    [a] = s.alerts("api_volume")
    assert a["evidence"]["n_events"] == 80


def test_bulk_export_and_report_export_in_both_files_are_one_export(tmp_path):
    day = datetime(2024, 3, 11, tzinfo=UTC)
    results = pe.elf_csv(pe.BULK_RESULT_COLUMNS, [
        pe._bulk_result(day + timedelta(hours=9, minutes=12), pe.USER_A, 1, "Contact", 48210),
        pe._bulk_result(day + timedelta(hours=10, minutes=2), pe.USER_A, 2, "Contact", 1200),
    ])
    reports = pe.elf_csv(pe.REPORT_EXPORT_COLUMNS, [
        pe._report_export(day + timedelta(hours=14, minutes=30), pe.USER_B, 3, "00O5j000000Kq9A", "All Contacts"),
    ])
    files = {DAILY.format("BulkApiResult"): results, DAILY.format("ReportExport"): reports}
    daily_only = pe.scan(tmp_path / "a", files, pe.BULK_TOML)
    both = pe.scan(tmp_path / "b", {**files, HOURLY.format("BulkApiResult", 9): _hour_of(results, 9),
                                    HOURLY.format("ReportExport", 14): _hour_of(reports, 14)}, pe.BULK_TOML)
    assert _counts(both) == _counts(daily_only)
    by = {a["evidence"]["types"].popitem()[0]: a for a in both.alerts("bulk_export")}
    assert by["BulkApiResult"]["evidence"]["n_exports"] == 2 and by["BulkApiResult"]["evidence"]["rows"] == 49410
    assert "1 export, row count unknown (ReportExport x1)" in by["ReportExport"]["summary"]


def _callout(ts: datetime, n: int, url: str) -> dict:
    return {**pe.elf_common("ApexCallout", ts, pe.USER_A, n), "TYPE": "REST", "METHOD": "POST", "SUCCESS": "1",
            "STATUS_CODE": "200", "TIME": "643", "REQUEST_SIZE": "2048", "RESPONSE_SIZE": "1388", "URL": url}


def test_p1_key_in_an_apex_callout_url_of_both_files_is_one_line_in_one_file(tmp_path):
    key = "AIzaSyD8fK2mQ9xL4vB7nR1tW6zC3pH5jE0uY2a"
    url = f"https://generativelanguage.googleapis.com/v1beta/models/gemini-pro:generateContent?key={key}"
    csv = pe.elf_csv(pe.APEX_CALLOUT_COLUMNS, [
        _callout(datetime(2024, 3, 11, 9, 5, tzinfo=UTC), 1, "https://api.example.com/v1/stock"),
        _callout(datetime(2024, 3, 11, 16, 59, 59, tzinfo=UTC), 2, url),
    ])
    daily_only = pe.scan(tmp_path / "a", {DAILY.format("ApexCallout"): csv})
    # The hourly file scanned first: the daily copy is still the one the alert names.
    both = pe.scan(tmp_path / "b", {"a/" + HOURLY.format("ApexCallout", 16): _hour_of(csv, 16),
                                    "b/" + DAILY.format("ApexCallout"): csv})
    assert _counts(both) == _counts(daily_only)
    [key_alert] = both.alerts("P1_key_exposed")
    assert key_alert["severity"] == "high"  # one line of one file; in two files it would be critical
    assert key_alert["evidence"]["n_lines"] == 1 and key_alert["evidence"]["n_files"] == 1
    assert key_alert["evidence"]["files"] == [both.path("b/" + DAILY.format("ApexCallout"))]
    [bypass] = both.alerts("P1_gateway_bypass")
    assert bypass["evidence"]["n_calls"] == 1


def test_the_same_key_in_two_real_places_is_still_two_files(tmp_path):
    # Near miss: the key in an EventLogFile row and in an app log line with the same timestamp
    # are two exposures (only EventLogFile rows are copies of each other).
    key = "AIzaSyD8fK2mQ9xL4vB7nR1tW6zC3pH5jE0uY2a"
    ts = datetime(2024, 3, 11, 16, 59, 59, tzinfo=UTC)
    url = f"https://generativelanguage.googleapis.com/v1beta/models/gemini-pro:generateContent?key={key}"
    csv = pe.elf_csv(pe.APEX_CALLOUT_COLUMNS, [_callout(ts, 1, url)])
    app = pe.jsonl({"ts": "2024-03-11T16:59:59.000Z", "level": "debug", "msg": "calling gemini", "url": url})
    s = pe.scan(tmp_path, {DAILY.format("ApexCallout"): csv, "app.jsonl": app})
    [key_alert] = s.alerts("P1_key_exposed")
    assert key_alert["evidence"]["n_files"] == 2 and key_alert["severity"] == "critical"


def test_hourly_files_of_different_hours_are_not_copies(tmp_path):
    # Near miss: two hourly files of the same event type never overlap in time; nothing is
    # deduplicated, and rows alike but an hour apart stay two.
    csv, _ = pe._rest_api_log({pe.USER_A: [18, 19, 20, 21, 22] * 3 + [80]})
    s = pe.scan(tmp_path, {HOURLY.format("RestApi", h): _hour_of(csv, h) for h in range(16)})
    [a] = s.alerts("api_volume")
    assert a["evidence"]["n_events"] == 80 and a["evidence"]["baseline_median"] == 20.0


def _openai_impact(s: pe.Scanned) -> dict:
    """The impact row (:func:`leakwatch.store.queries.impact`) of the data that went to OpenAI."""
    con = duckdb.connect(str(s.db), read_only=True)
    try:
        [dest] = [d for d in queries.impact(con) if d["dest_vendor"] == "OpenAI"]
    finally:
        con.close()
    return dest


def test_impact_counts_a_record_in_the_hourly_and_the_daily_file_once(tmp_path):
    rows = [
        _callout(datetime(2024, 3, 11, h, m, tzinfo=UTC), n,
                 f"https://api.openai.com/v1/chat/completions?customer=c{n}.doe%40example.com")
        for n, (h, m) in enumerate([(9, 1), (9, 2), (16, 1), (16, 2), (16, 3)], start=1)
    ]
    csv = pe.elf_csv(pe.APEX_CALLOUT_COLUMNS, rows)
    both = pe.scan(tmp_path, {DAILY.format("ApexCallout"): csv, HOURLY.format("ApexCallout", 16): _hour_of(csv, 16)})
    assert read_rows(both.db, "SELECT count(*) FROM findings WHERE entity = 'EMAIL_ADDRESS'") == [(8,)]
    dest = _openai_impact(both)
    assert dest["records"] == 5 and dest["data_subjects"] == 5


def test_impact_still_counts_every_line_of_other_logs(tmp_path):
    # Near miss: two lines of an app log with the same time and no user are two records.
    app = pe.jsonl(*[{"ts": "2024-03-11T16:00:00.000Z", "url": "https://api.openai.com/v1/chat/completions",
                      "prompt": f"mail c{n}.doe@example.com"} for n in range(2)])
    s = pe.scan(tmp_path, {"app.jsonl": app, "copy/app.jsonl": app})
    dest = _openai_impact(s)
    assert dest["records"] == 4 and dest["data_subjects"] == 2
