"""Log format readers and incident grouping: defects found by a review with realistic lines of
each format and scans in batches (each test failed before its fix)."""
from __future__ import annotations

import json

from helpers import scan_jsonl

from leakwatch.sources.formats import sniff
from leakwatch.sources.formats._time import parse_timestamp


def test_a_mule_log_with_a_stack_trace_is_still_a_mule_log(tmp_path, cli):
    head = ("{} 2024-06-10 13:36:{:02d},123 [[MuleRuntime].uber.04: [orders-api].orders-flow.CPU_LITE @1a2b] "
            "[processor: orders-flow/processors/1; event: ev{}] "
            "org.mule.runtime.core.internal.processor.LoggerMessageProcessor: order for customer{}@example.com")
    lines = [head.format("INFO ", i, i, i) for i in range(4)]
    lines += ["java.util.concurrent.CompletionException: boom"]
    lines += [f"\tat org.mule.Foo{k}.bar(Foo{k}.java:1) ~[mule-core-4.4.0.jar:4.4.0]" for k in range(30)]
    rows = scan_jsonl(cli, tmp_path, "orders-api.log", "\n".join(lines) + "\n")
    assert {r["format"] for r in rows} == {"mule"}
    assert rows[0]["ts"] == "2024-06-10T13:36:00.123000Z"


def test_the_records_own_time_wins_over_a_date_inside_its_payload(tmp_path, cli):
    line = {"level": 30, "time": "2024-06-10T15:36:28.250+02:00", "msg": "llm request",
            "url": "https://api.anthropic.com/v1/messages",
            "body": {"system": "Customer: jane.doe@example.com", "metadata": {"timestamp": "2019-01-01T00:00:00Z"}}}
    rows = scan_jsonl(cli, tmp_path, "app.log", json.dumps(line) + "\n")
    assert [r["ts"] for r in rows] == ["2024-06-10T13:36:28.250000Z"]


def test_json_lines_after_a_banner_with_commas_are_json_not_csv():
    head = (b"Service chat-gateway, version 4.2.0, region eu-west-1, pid 4242\n"
            b'{"time": "2024-06-10T15:36:28+02:00", "level": "info", "msg": "call", "url": "https://api.openai.com/v1/x"}\n'
            b'{"time": "2024-06-10T15:36:29+02:00", "url": "https://api.openai.com/v1/x", "prompt": "for jane.doe@example.com", '
            b'"level": "info"}\n')
    assert sniff(head, "banner.log") == "jsonl"


def test_opentelemetry_and_log4j_times_are_read(tmp_path, cli):
    otel = {"timeUnixNano": "1718026588123000000", "severityText": "INFO",
            "body": {"stringValue": "prompt sent for jane.doe@example.com"},
            "attributes": [{"key": "url.full", "value": {"stringValue": "https://api.openai.com/v1/chat/completions"}}]}
    rows = scan_jsonl(cli, tmp_path, "otel.log", json.dumps(otel) + "\n")
    assert rows[0]["ts"] == "2024-06-10T13:36:28.123000Z"
    assert parse_timestamp("2024-03-10 02:30:00.500 -0500").isoformat() == "2024-03-10T07:30:00.500000+00:00"
    assert parse_timestamp("2024-06-10 15:36:28.123 UTC").isoformat() == "2024-06-10T15:36:28.123000+00:00"


def test_the_remote_user_of_an_access_log_is_the_caller_not_sent_to_the_vendor(tmp_path, cli):
    rows = scan_jsonl(cli, tmp_path, "proxy.log",
                 '203.0.113.9 - agent.smith@example.org [10/Jun/2024:15:36:28 +0200] "POST /v1/chat/completions '
                 'HTTP/1.1" 200 1024 "-" "python-requests/2.31" upstream=https://api.openai.com/v1/chat/completions\n')
    user = [r for r in rows if r.get("field") == "user"]
    assert user and all("dest_vendor" not in r and "residency_violation" not in r for r in user), user


def test_an_alert_that_grows_more_severe_raises_its_incident(tmp_path, cli):
    key = "sk-proj-ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210zyxwVUTSrqpoNMLKjihgFEDC"
    db = tmp_path / "r.duckdb"
    for name, day in (("a.log", "20"), ("b.log", "25")):
        (tmp_path / name).write_text(f"2026-11-{day}T08:01:00Z debug OPENAI_API_KEY={key}\n")
        cli("scan", tmp_path / name, "--db", db, "-q")
        assert cli("incidents", "group", "--db", db).rc == 0
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("""SELECT i.severity, max(a.severity_rank) FROM incidents i JOIN incident_alerts x
                              USING (incident_id) JOIN alerts a USING (alert_id) GROUP BY ALL""").fetchall()
        ranks = dict(con.execute("SELECT severity, severity_rank FROM incidents").fetchall())
    finally:
        con.close()
    assert all(ranks[sev] >= alert_rank for sev, alert_rank in rows), rows


def test_a_huge_finding_id_is_no_such_finding(tmp_path, cli):
    (tmp_path / "a.log").write_text("user=jane@example.com\n")
    db = tmp_path / "r.duckdb"
    cli("scan", tmp_path / "a.log", "--db", db, "-q")
    r = cli("incidents", "open", "--title", "x", "--finding", "999999999999999999999", "--db", db)
    assert r.rc == 2 and "no finding with id" in r.err
