"""Regressions for bugs a review of the format-aware scan found; each failed before its fix."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time

import leakwatch.pipeline as pipeline
from helpers import read_rows as _q
from leakwatch.pipeline import scan_paths
from leakwatch.sources.files import split_points


def _row(cells) -> str:
    b = io.StringIO()
    csv.writer(b, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(cells)
    return b.getvalue()


A = ["EVENT_TYPE", "TIMESTAMP", "USER_ID", "EXCEPTION_MESSAGE", "ENTITY_NAME", "ROWS_PROCESSED", "TIMESTAMP_DERIVED"]
B = ["EVENT_TYPE", "TIMESTAMP", "ENTITY_NAME", "USER_ID", "EXCEPTION_MESSAGE", "ROWS_PROCESSED", "TIMESTAMP_DERIVED"]


def _ra(i, msg=""):
    return _row(["RestApi", "20240311100000.000", "0055j00000AT6I1", msg, "Contact", str(i), "2024-03-11T10:00:00.000Z"])


def _rb(i, msg=""):
    return _row(["RestApi", "20240311100000.000", "Lead", "0055j00000AT6I1", msg, str(i), "2024-03-11T10:00:00.000Z"])


def test_identifiers_in_url_paths_and_json_keys_are_not_stored(tmp_path):
    p = tmp_path / "app.jsonl"
    p.write_text(json.dumps({"ts": "2024-03-11T10:00:00Z",
                             "url": "https://api.openai.com/v1/users/jane.doe@example.com/files/4815162342"}) + "\n"
                 + json.dumps({"contacts": {"jane.doe@example.com": {"note": "card 4111 1111 1111 1111"}}}) + "\n")
    db = tmp_path / "lw.duckdb"
    scan_paths([str(p)], db)
    assert _q(db, "SELECT url_path FROM events") == [("/v1/users/*/files/*",)]
    dump = json.dumps(_q(db, "SELECT * FROM findings"), default=str) + json.dumps(_q(db, "SELECT * FROM events"),
                                                                                  default=str)
    assert "jane.doe" not in dump and "4815162342" not in dump


def test_concatenated_exports_name_fields_and_events_by_the_header_in_effect(tmp_path):
    p = tmp_path / "EventLogFile_x.csv"
    p.write_text(_row(A) + _ra(5, "contact jane.doe@example.com") + _row(B) + _rb(7) + _rb(8, "call bob@example.org"))
    db = tmp_path / "lw.duckdb"
    scan_paths([str(p)], db)
    assert _q(db, "SELECT line, field_path FROM findings WHERE rule_id = 'email' ORDER BY line") == [
        (2, "EXCEPTION_MESSAGE"), (5, "EXCEPTION_MESSAGE")]
    assert _q(db, "SELECT line, sf_object, rows_processed FROM events ORDER BY line") == [
        (2, "Contact", 5), (4, "Lead", 7), (5, "Lead", 8)]


def test_a_header_at_the_start_of_a_range_switches_columns(tmp_path, monkeypatch):
    first = [_row(A)] + [_ra(i) for i in range(2, 40)]
    second = [_row(B)] + [_rb(i) for i in range(41, 60)] + [_rb(60, "mail bob@example.org")] + [_rb(i) for i in range(61, 79)]
    text = "".join(first + second)
    p = tmp_path / "EventLogFile_c.csv"
    p.write_text(text)
    half = len(text) // 2
    monkeypatch.setattr(pipeline, "MIN_RANGE_BYTES", half)
    cuts = split_points(str(p), len(text), 2, min_part=half)
    assert cuts[1][0] == len("".join(first))  # the second range starts with header B
    db = tmp_path / "lw.duckdb"
    scan_paths([str(p)], db)
    assert _q(db, "SELECT line, field_path FROM findings WHERE rule_id = 'email'") == [(60, "EXCEPTION_MESSAGE")]
    assert _q(db, "SELECT line, sf_object, rows_processed FROM events WHERE line IN (41, 60) ORDER BY line") == [
        (41, "Lead", 41), (60, "Lead", 60)]


def test_a_csv_with_a_name_column_is_still_read_by_its_format(tmp_path):
    p = tmp_path / "calls.csv"
    p.write_text("timestamp,username,url,note\n"
                 "2024-03-11T10:00:00Z,Maria Rossi,https://api.openai.com/v1/chat/completions,ann@example.com\n")
    db = tmp_path / "lw.duckdb"
    scan_paths([str(p)], db)
    assert _q(db, "SELECT kind, dest_vendor FROM events") == [("ai_call", "OpenAI")]
    got = dict(_q(db, "SELECT detector, format FROM findings"))
    assert got == {"regex": "csv", "column": "csv"}  # whole cells of the name column carry the format too


def test_bad_numbers_and_a_broken_header_do_not_stop_the_scan(tmp_path):
    src = [_row(A), _ra(3, "contact x@example.com")]
    p = tmp_path / "EventLogFile_x.csv"
    p.write_text("".join(src) + "EVENT_TYPE,\n" + _row(["RestApi", "20240311100000.000", "0055j00000AT6I1", "",
                                                          "Contact", "99999999999999999999999", ""]))
    q = tmp_path / "gw.jsonl"
    q.write_text(json.dumps({"url": "https://api.openai.com/v1/x", "status": "100000000000000000000"}) + "\n")
    db = tmp_path / "lw.duckdb"
    s = scan_paths([str(p), str(q)], db)
    by = {os.path.basename(f.path): f for f in s.files}
    assert [f.status for f in s.files] == ["ok", "ok"]
    assert any("header line not usable" in m for _, m in by["EventLogFile_x.csv"].parse_samples)
    assert _q(db, "SELECT status FROM events WHERE source_path LIKE '%gw.jsonl'") == [(None,)]


def test_a_rewritten_file_adds_its_new_events(tmp_path):
    p = tmp_path / "gateway.jsonl"

    def write(day, user):
        p.write_text("".join(json.dumps({"ts": f"2024-03-{day}T10:0{i}:00Z", "user": user,
                                         "url": "https://api.openai.com/v1/chat/completions"}) + "\n" for i in range(3)))

    db = tmp_path / "lw.duckdb"
    write(11, "alice")
    assert scan_paths([str(p)], db).files[0].events == 3
    time.sleep(0.01)
    write(12, "bob")
    os.utime(p, None)
    assert scan_paths([str(p)], db).files[0].events == 3
    assert scan_paths([str(p)], db, rescan=True).files[0].events == 0  # the same content again adds nothing


def test_a_range_that_fails_to_read_closes_its_file_as_an_error(tmp_path, monkeypatch):
    real = pipeline.iter_chunks

    def flaky(path, stats, start=0, stop=None, hasher=None, **kw):
        for c in real(path, stats, start=start, stop=stop, hasher=hasher, **kw):
            yield c
            if start > 0:
                raise OSError(5, "Input/output error")

    monkeypatch.setattr(pipeline, "iter_chunks", flaky)
    monkeypatch.setattr(pipeline, "MIN_RANGE_BYTES", 4000)
    p = tmp_path / "app.jsonl"
    p.write_text("".join(json.dumps({"msg": f"user u{i}@example.org padding padding padding", "n": i}) + "\n"
                         for i in range(400)))
    db = tmp_path / "lw.duckdb"
    s = scan_paths([str(p)], db)
    assert s.files[0].status == "error"
    assert _q(db, "SELECT status FROM sources") == [("error",)]
    assert _q(db, "SELECT count(*) FROM scan_errors") == [(1,)]


def test_naive_timestamp_derived_is_utc_whatever_the_local_zone(tmp_path):
    p = tmp_path / "EventLogFile_r.csv"
    p.write_text(_row(["EVENT_TYPE", "TIMESTAMP_DERIVED", "USER_ID", "ROWS_PROCESSED"])
                 + _row(["RestApi", "2024-03-11T10:00:00", "0055j00000AT6I1", "1"])
                 + _row(["RestApi", "2024-03-11T10:00:00", "0055j00000AT6I1", "2"]))
    db = tmp_path / "lw.duckdb"
    code = ("import sys; from leakwatch.pipeline import scan_paths; scan_paths([sys.argv[1]], sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(p), str(db)], check=True, env={**os.environ, "TZ": "America/New_York"})
    got = _q(db, "SELECT DISTINCT epoch(ts) FROM events")
    assert got == [(1710151200.0,)]  # 2024-03-11T10:00:00Z


def test_name_column_cells_are_labelled_column_also_in_a_file_without_regex_hits(tmp_path):
    p = tmp_path / "contacts.csv"
    p.write_text("Id,FirstName,Status\n1,Maria,open\n2,Tom,closed\n")
    db = tmp_path / "lw.duckdb"
    scan_paths([str(p)], db)
    assert _q(db, "SELECT DISTINCT detector FROM findings") == [("column",)]
