"""End to end: real log samples of each format → `leakwatch scan` → what the findings, events and
alerts in DuckDB say about where the data was and where it went."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from leakwatch.pipeline import scan_paths
from helpers import read_rows as _q

DATA = Path(__file__).parent / "data" / "e2e"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    logs = d / "logs"
    shutil.copytree(DATA, logs)
    db = d / "lw.duckdb"
    summary = scan_paths([str(logs)], db, store_raw=True)
    return summary, db, logs


def _finding(db, rule, raw):
    rows = _q(db, "SELECT field_path, format, ts, dest_vendor, dest_region, dest_jurisdiction, residency_violation,"
                  " sf_object, sf_field, prompt_role, actor_hash, line FROM findings WHERE rule_id = ? AND raw_value = ?",
              [rule, raw])
    assert len(rows) == 1, (rule, raw, rows)
    keys = ("field_path", "format", "ts", "dest_vendor", "dest_region", "dest_jurisdiction", "violation",
            "sf_object", "sf_field", "role", "actor", "line")
    return dict(zip(keys, rows[0]))


def test_apex_callout_url_to_a_us_endpoint_is_a_residency_violation(scanned):
    _, db, _ = scanned
    f = _finding(db, "email", "jane.doe@example.com")
    assert f["field_path"] == "URL"
    assert f["format"] == "eventlogfile"
    assert f["ts"] == datetime(2024, 3, 11, 16, 10, 0, 120000, tzinfo=timezone.utc)
    assert "openai" in f["dest_vendor"].lower()
    assert f["dest_jurisdiction"] == "US"
    assert f["violation"] is True  # the default allowed jurisdictions are the EU's
    assert f["actor"] is not None and "0055j00000AT6I1" not in f["actor"]


def test_llm_system_prompt_keeps_its_path_role_and_destination(scanned):
    _, db, _ = scanned
    f = _finding(db, "email", "maria.rossi@example.it")
    assert f["field_path"] == "body.messages[0].content"
    assert f["role"] == "system"
    assert f["format"] == "jsonl"
    assert "anthropic" in f["dest_vendor"].lower()
    assert f["ts"] == datetime(2024, 3, 11, 16, 30, 0, 250000, tzinfo=timezone.utc)


def test_field_names_decide_phone_or_order_number(scanned):
    _, db, _ = scanned
    phones = _q(db, "SELECT raw_value, field_path, format FROM findings WHERE entity = 'PHONE_NUMBER'")
    assert ("+49 30 901820", "message.customer.phone", "mule") in phones
    raws = {r for r, _, _ in phones}
    assert "3044123456" not in raws and "4815162342" not in raws  # order ids, not phone numbers


def test_heroku_query_string_email_has_the_path_field_and_the_drain_timestamp(scanned):
    _, db, _ = scanned
    f = _finding(db, "email", "tom.baker@example.co.uk")
    assert f["format"] == "heroku"
    assert f["field_path"] == "query.email"  # the query parameter inside Heroku's path=
    assert f["ts"] == datetime(2024, 3, 11, 16, 50, 0, 123456, tzinfo=timezone.utc)
    assert f["dest_vendor"] is None  # an inbound request to the shop, not a call to an AI service


def test_parse_problems_are_counted_per_file_and_the_record_is_still_scanned(scanned):
    summary, db, logs = scanned
    by_file = {Path(p).name: (fmt, n) for p, fmt, n in _q(db, "SELECT path, format, parse_problems FROM sources")}
    assert by_file["llm-gateway-app.jsonl"] == ("jsonl", 1)
    assert by_file["heroku-router.log"][1] == 1  # the unterminated quote
    assert by_file["EventLogFile_ApexCallout_2024-03-11.csv"] == ("eventlogfile", 0)
    # The broken JSON line's email was still found, from the raw bytes.
    assert _q(db, "SELECT line FROM findings WHERE raw_value = 'lost.line@example.org'") == [(3,)]
    fr = {Path(f.path).name: f for f in summary.files}
    assert fr["llm-gateway-app.jsonl"].parse_samples[0][0] == 3


def test_events_record_ai_calls_and_bulk_reads(scanned):
    _, db, _ = scanned
    calls = _q(db, "SELECT url_host, dest_jurisdiction, via_gateway, format FROM events WHERE kind = 'ai_call' ORDER BY line, url_host")
    hosts = sorted(h for h, _, _, _ in calls)
    assert hosts == ["api.anthropic.com", "api.openai.com", "eu.api.openai.com"]
    assert all(v is False for _, _, v, _ in calls)  # no approved gateway configured
    assert {h: j for h, j, _, _ in calls}["eu.api.openai.com"] == "EU"
    bulk = _q(db, "SELECT sf_object, rows_processed, event_type, ts FROM events WHERE kind = 'bulk' ORDER BY ts")
    assert bulk == [
        ("Opportunity", 120, "BulkApi:query", datetime(2024, 3, 11, 9, 0, tzinfo=timezone.utc)),
        ("Contact", 48210, "BulkApi:query", datetime(2024, 3, 11, 16, 0, tzinfo=timezone.utc)),
    ]


def test_alerts_from_the_failure_patterns(scanned):
    summary, db, _ = scanned
    patterns = {p for (p,) in _q(db, "SELECT pattern FROM alerts")}
    # The Contact bulk read at 16:00 by 0055j00000AT6I1 is followed at 16:10 by that user's
    # callout to OpenAI; the Opportunity read is neither a watched object nor followed.
    assert "P2_bulk_then_ai" in patterns
    assert "P1_gateway_bypass" in patterns
    assert "P3_prompt_pii" in patterns
    p2 = _q(db, "SELECT summary, evidence FROM alerts WHERE pattern = 'P2_bulk_then_ai'")
    assert len(p2) == 1
    assert "jane.doe" not in p2[0][0] and "0055j00000AT6I1" not in p2[0][0]
    assert {a.pattern for a in summary.alerts} == patterns


def test_rescanning_adds_no_events_or_alerts(scanned, tmp_path):
    _, db, logs = scanned
    before = _q(db, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM alerts), (SELECT count(*) FROM findings)")
    scan_paths([str(logs)], db, rescan=True)
    after = _q(db, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM alerts), (SELECT count(*) FROM findings)")
    assert after == before


def test_jsonl_output_carries_the_context(tmp_path):
    out = tmp_path / "f.jsonl"
    with open(out, "w") as fh:
        scan_paths([str(DATA / "llm-gateway-app.jsonl")], tmp_path / "x.duckdb", jsonl=fh)
    objs = [json.loads(x) for x in out.read_text().splitlines()]
    sys_prompt = next(o for o in objs if o.get("prompt_role") == "system")
    assert sys_prompt["field_path"] == "body.messages[0].content"
    assert sys_prompt["ts"] == "2024-03-11T16:30:00.250000Z"
    assert "maria.rossi@example.it" not in json.dumps(objs)


def test_impact_per_destination(scanned):
    from leakwatch.store import Store
    from leakwatch.store.queries import impact

    _, db, _ = scanned
    with Store.open(db, read_only=True) as s:
        rows = impact(s.con)
    by_vendor = {(r["dest_vendor"] or "").lower(): r for r in rows}
    openai = next(r for v, r in by_vendor.items() if "openai" in v)
    assert openai["residency_violation"] is True and openai["dest_jurisdiction"] == "US"
    assert openai["data_subjects"] == 1 and "EMAIL_ADDRESS" in openai["entities"]
    # Violations are listed first.
    assert rows[0]["residency_violation"] is True
    # Everything is accounted for: the per-destination findings add up to the table.
    total = _q(db, "SELECT count(*) FROM findings")[0][0]
    assert sum(r["findings"] for r in rows) == total
    # Data subjects are distinct identifying values, not findings: IP addresses and record ids
    # are not people.
    from leakwatch.detect.salesforce import SUBJECT_ENTITIES

    internal = by_vendor[""]
    rows = _q(db, "SELECT entity, value_hash FROM findings WHERE dest_vendor IS NULL")
    assert internal["data_subjects"] == len({h for e, h in rows if e in SUBJECT_ENTITIES})
    assert internal["findings"] == len(rows) > internal["data_subjects"]


APIGEE = (
    "2024-03-11T17:00:00Z|proxy=orders-v2|client=81.2.69.160|uri=/v2/orders?customer=lena.schmidt@example.de|"
    "target=https://bedrock-runtime.us-east-1.amazonaws.com/model/x/invoke|status=200\n"
    "garbage line that is not in the template\n"
)


def test_user_configured_regex_format_for_apigee(tmp_path):
    """A [[formats.custom]] regex with named groups reads the files its globs match."""
    from leakwatch.config import load_config

    cfg = tmp_path / "leakwatch.toml"
    cfg.write_text(
        "[[formats.custom]]\n"
        'name = "apigee"\n'
        "regex = '^(?P<timestamp>[^|]+)\\|proxy=(?P<proxy>[^|]*)\\|client=(?P<client>[^|]*)\\|uri=(?P<uri>[^|]*)"
        "\\|target=(?P<url>[^|]*)\\|status=(?P<status>\\d+)$'\n"
        'paths = ["apigee-*.log"]\n'
    )
    log = tmp_path / "apigee-msglog.log"
    log.write_text(APIGEE)
    db = tmp_path / "lw.duckdb"
    s = scan_paths([str(log)], db, config=load_config(str(cfg)), store_raw=True)
    assert s.files[0].fmt == "regex"
    assert s.files[0].parse_problems == 0  # the garbage line holds no candidate: never parsed
    f = _q(db, "SELECT field_path, ts, dest_vendor, dest_region, residency_violation FROM findings"
               " WHERE raw_value = 'lena.schmidt@example.de'")
    assert f[0][0] == "uri" and f[0][1] == datetime(2024, 3, 11, 17, 0, tzinfo=timezone.utc)
    assert "bedrock" in f[0][2].lower() or "amazon" in f[0][2].lower() or "aws" in f[0][2].lower()
    assert f[0][3] == "us-east-1" and f[0][4] is True


def test_forced_format_that_does_not_fit_is_reported_and_the_file_still_scanned(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("user=ann@example.com did a thing\n")
    s = scan_paths([str(log)], tmp_path / "lw.duckdb", fmt="eventlogfile")
    assert s.total_findings == 1
    assert [p.kind for p in s.problems] == ["format"] and "text" in s.problems[0].message


def test_ner_finds_names_in_prompts_when_asked(tmp_path):
    log = tmp_path / "prompts.jsonl"
    log.write_text(json.dumps({"ts": "2024-03-11T18:00:00Z", "url": "https://api.openai.com/v1/chat/completions",
                               "messages": [{"role": "user", "content":
                                             "Please write a polite reply to Margaret Thornton about her late parcel."}]})
                   + "\n")
    db = tmp_path / "lw.duckdb"
    s = scan_paths([str(log)], db, ner=True, store_raw=True)
    rows = _q(db, "SELECT entity, detector, raw_value, field_path, masked, dest_vendor FROM findings WHERE detector = 'ner'")
    assert ("PERSON_NAME", "ner", "Margaret Thornton", "messages[0].content") == rows[0][:4]
    assert "Thornton" not in rows[0][4]
    assert "openai" in rows[0][5].lower()
    # Without --ner (the default) the same prompt gives no name.
    db2 = tmp_path / "off.duckdb"
    scan_paths([str(log)], db2)
    assert _q(db2, "SELECT count(*) FROM findings WHERE detector = 'ner'") == [(0,)]
    assert s.total_findings >= 1


def test_findings_share_the_destination_named_only_in_a_mule_message(tmp_path):
    """A Mule logger line "POST https://api.openai.com/... payload={...}" names its destination in
    free text only: the ai_call event and the PII findings of that line get the same vendor."""
    log = tmp_path / "mule-app.log"
    log.write_text(
        "INFO  2024-03-11 09:10:01,522 [[MuleRuntime].uber.06: [sfdc-sync].flow.CPU_LITE @609e2cfb] "
        "[processor: sfdc-sync-flow/processors/4; event: e33bb7ed-bf0f-4316-a70f-f074f296bd5f] "
        "org.mule.runtime.core.internal.processor.LoggerMessageProcessor: POST https://api.openai.com/v1/embeddings "
        'payload={"recordType":"Contact","Email":"grace.haddad@example.com","segment":"b2b"}\n')
    db = tmp_path / "m.duckdb"
    scan_paths([str(log)], db, store_raw=True)
    rows = _q(db, "SELECT dest_vendor, dest_host, residency_violation, format FROM findings WHERE raw_value = ?",
              ["grace.haddad@example.com"])
    assert rows == [("OpenAI", "api.openai.com", True, "mule")]
    assert _q(db, "SELECT kind, dest_vendor FROM events") == [("ai_call", "OpenAI")]


def test_destination_from_a_marked_host_at_line_start_or_url_encoded(tmp_path):
    """The host a marker found in free text is read back from the record: at the very start of
    a line (no boundary byte before it) and after a URL-encoded slash ("%2F") alike."""
    log = tmp_path / "relay.log"
    log.write_text(
        "api.anthropic.com relay ok to=jane.doe@example.com\n"
        "relay target=https%3A%2F%2Fapi.mistral.ai%2Fv1%2Fchat to=max.mustermann@example.org\n"
        "relay target=internal.example.net to=erika.muster@example.org\n")
    db = tmp_path / "r.duckdb"
    scan_paths([str(log)], db)
    assert _q(db, "SELECT line, kind, dest_vendor FROM events ORDER BY line") == [
        (1, "ai_call", "Anthropic"), (2, "ai_call", "Mistral AI")]
    assert _q(db, "SELECT line, dest_vendor FROM findings WHERE entity = 'EMAIL_ADDRESS' ORDER BY line") == [
        (1, "Anthropic"), (2, "Mistral AI"), (3, None)]


def test_phone_columns_of_a_report_export(tmp_path):
    """A report export's Phone/Mobile Phone cells are phone numbers whole (no "key:" in a CSV
    row); "N/A" is not; a cell the E.164 rule already reports is not reported twice; an order
    number is not a phone. The column findings carry the format and the Salesforce field."""
    log = tmp_path / "contacts_report.csv"
    log.write_text(
        '"Full Name","Phone","Mobile Phone","Order Number","Email"\n'
        '"Jane Doe","(415) 555-0142","07700 900456","4155550123","jane.doe@example.com"\n'
        '"Max Muster","+44 20 7946 0958","N/A","4155550124","max@example.org"\n')
    db = tmp_path / "c.duckdb"
    scan_paths([str(log)], db, store_raw=True)
    rows = _q(db, "SELECT line, rule_id, raw_value, field_path, sf_object, sf_field, format FROM findings "
                  "WHERE entity = 'PHONE_NUMBER' ORDER BY line, start_byte")
    assert rows == [
        (2, "phone_national", "(415) 555-0142", "Phone", "Contact", "Phone", "csv"),
        (2, "phone_national", "07700 900456", "Mobile Phone", "Contact", "MobilePhone", "csv"),
        (3, "phone_e164", "+44 20 7946 0958", "Phone", "Contact", "Phone", "csv"),
    ]
    assert _q(db, "SELECT sf_object, sf_field, format FROM findings WHERE raw_value = 'Jane Doe'") == [
        ("Contact", "Name", "csv")]


def test_no_value_is_stored_as_a_field_name(tmp_path):
    """Keys that are data (a customer's name as a JSON key, a token or an SSN before ":", a
    URL's user name) never reach the findings' field columns or --jsonl."""
    log = tmp_path / "mixed.log"
    log.write_text(
        '{"byName":{"Canarina Testova":{"cardNumber":"4111111111111111"}}}\n'
        "123-45-6789: dave.jones@example.com\n"
        "AKIAIOSFODNN7EXAMPLE=carol.white@example.com\n"
        "mongodb://canaryadmin:CanaryPass99@mongo.example.com/db\n")
    db = tmp_path / "m.duckdb"
    out = tmp_path / "out.jsonl"
    with open(out, "w") as fh:
        scan_paths([str(log)], db, jsonl=fh)
    assert len(out.read_text().splitlines()) >= 5
    stored = " ".join(str(v) for row in _q(db, "SELECT field, field_path FROM findings") for v in row)
    for canary in ("canarina", "Testova", "123456789", "akiaiosfodnn7example", "AKIAIOSFODNN7EXAMPLE", "canaryadmin"):
        assert canary.lower() not in stored.lower()
        assert canary.lower() not in out.read_text().lower()
    assert _q(db, "SELECT rule_id FROM findings WHERE line = 4") == [("password_in_url",)]  # not an e-mail too
    assert _q(db, "SELECT count(*) FROM findings WHERE rule_id = 'email'") == [(2,)]


def test_one_secret_is_one_finding(tmp_path):
    """A vendor key behind "Bearer" or under "x-api-key" is the vendor's finding only (the
    generic rules give way), and "pw@host" of a URL's credentials is a password, not an
    e-mail; a token no vendor rule knows stays a bearer token."""
    log = tmp_path / "dup.log"
    log.write_text(
        "x-api-key: sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdEFGH\n"
        'Authorization="Bearer sk-proj-Q8zxQ8zxAbCdEfGhIjKlMnOpQrStUvWx0123456789"\n'
        "url=https://svc:Pa55w0rd!x@API.OpenAI.com:443/v1\n"
        "contact jane.doe@example.com token: Bearer Zq8xW3vR7tY1uI9oP2aS4dF6gH8jK0lQ\n")
    db = tmp_path / "d.duckdb"
    scan_paths([str(log)], db)
    assert _q(db, "SELECT line, rule_id FROM findings ORDER BY line, start_byte") == [
        (1, "anthropic_api_key"), (2, "openai_api_key"), (3, "password_in_url"), (4, "email"), (4, "bearer_token")]


def test_drop_yielding_keeps_what_does_not_overlap():
    from leakwatch.detect.engine import drop_yielding

    yields = {"generic": None, "email": frozenset({"pw"})}
    rows = [(1, 0, 10, "generic"), (1, 5, 15, "vendor"), (1, 20, 30, "generic"), (2, 0, 10, "email"),
            (2, 3, 8, "generic"), (3, 0, 10, "email"), (3, 0, 10, "vendor"), (4, 0, 5, "email"), (4, 5, 9, "pw")]
    assert drop_yielding(rows, yields) == [
        (1, 5, 15, "vendor"), (1, 20, 30, "generic"), (2, 0, 10, "email"), (2, 3, 8, "generic"),
        (3, 0, 10, "email"), (3, 0, 10, "vendor"), (4, 0, 5, "email"), (4, 5, 9, "pw")]


def test_an_e_mail_as_the_actor_gets_the_e_mail_mask(tmp_path):
    log = tmp_path / "app.jsonl"
    log.write_text(json.dumps({"ts": "2024-03-11T10:00:00Z", "user": "zyx.canary1@example.com",
                               "url": "https://api.openai.com/v1/chat/completions"}) + "\n")
    db = tmp_path / "a.duckdb"
    scan_paths([str(log)], db)
    assert _q(db, "SELECT actor_masked FROM events") == [("z***@e******.com",)]


def test_the_callers_address_and_id_do_not_flow_to_the_ai_endpoint(tmp_path):
    """A record names where the call went; its caller's IP and user id describe the call and
    were not sent. A callout row of an EventLogFile sends only its URL."""
    log = tmp_path / "gw.jsonl"
    log.write_text(json.dumps({"requestTime": "2024-03-11T10:00:00Z", "ip": "203.0.113.9", "userId": "0055j00000AT6I1AAL",
                               "url": "https://api.anthropic.com/v1/messages?email=max.mustermann%40example.de"}) + "\n")
    elf = tmp_path / "ApexCallout.csv"
    elf.write_text('"EVENT_TYPE","TIMESTAMP","USER_ID","URI_ID_DERIVED","URL","TIMESTAMP_DERIVED"\n'
                   '"ApexCallout","20240311100200.500","0055j00000BX9K2","0035j00000AbCdEAAZ",'
                   '"https://api.openai.com/v1/x?phone=%2B442079460958","2024-03-11T10:02:00.500Z"\n')
    db = tmp_path / "g.duckdb"
    scan_paths([str(log), str(elf)], db)
    got = {(r[0], r[1]): r[2] for r in _q(db, "SELECT rule_id, field_path, dest_host FROM findings")}
    assert got[("ipv4_public", "ip")] is None
    assert got[("email", "url.query.email")] == "api.anthropic.com"
    assert got[("sf_record_id", "URI_ID_DERIVED")] is None
    assert got[("phone_e164", "URL")] == "api.openai.com"


def test_a_mule_error_of_a_call_is_not_a_second_call(tmp_path):
    head = ("{level}  2024-03-11 09:10:0{s},522 [[MuleRuntime].uber.06: [sfdc-sync].flow.CPU_LITE @609e2cfb] "
            "[processor: sfdc-sync-flow/processors/4; event: {ev}] {logger}: ")
    log = tmp_path / "mule-app.log"
    log.write_text(
        head.format(level="INFO", s=1, ev="e33bb7ed-0001", logger="org.mule.runtime.core.internal.processor."
                    "LoggerMessageProcessor") + "POST https://api.openai.com/v1/embeddings\n"
        + head.format(level="ERROR", s=2, ev="e33bb7ed-0001", logger="org.mule.runtime.core.internal.exception."
                      "OnErrorPropagateHandler") + "HTTP POST on resource 'https://api.openai.com/v1/embeddings' failed\n"
        + head.format(level="INFO", s=3, ev="e33bb7ed-0002", logger="org.mule.runtime.core.internal.processor."
                      "LoggerMessageProcessor") + "POST https://api.openai.com/v1/embeddings\n")
    db = tmp_path / "m.duckdb"
    scan_paths([str(log)], db)
    assert _q(db, "SELECT line, kind FROM events ORDER BY line") == [(1, "ai_call"), (3, "ai_call")]
