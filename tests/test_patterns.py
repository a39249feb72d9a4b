"""Failure-pattern detectors against a real DuckDB store: each pattern planted in realistic rows,
next to a near miss that must stay quiet; re-runs, escalation, and no raw value in any alert."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from leakwatch.detect.mask import mask_email, mask_name, mask_phone, mask_secret
from leakwatch.detect.patterns import (
    AI_CREDENTIAL_ENTITIES,
    CREDENTIAL_ENTITIES,
    DEFAULT_EDGE_JURISDICTIONS,
    PatternSettings,
    default_edge_jurisdiction,
    detect_patterns,
    entities_tagged,
    run_patterns,
)
from leakwatch.detect.rules import Severity, default_rules_dir, load_rules
from leakwatch.errors import StoreError, UsageError
from leakwatch.store import Store

T0 = datetime(2024, 3, 11, 9, 0, tzinfo=UTC)

# Raw values planted in the database (raw_value column, as `scan --store-raw` would keep them).
# None of them may ever appear in an alert.
OPENAI_KEY = "sk-proj-" + "Q7vXk2LmN9pR4sT8wY1zB6cD3fG5hJ0aE2iK7oU9qW4eR8tY" * 3
ANTHROPIC_KEY = "sk-ant-api03-" + "Zx9Wv8Ut7Sr6Qp5On4Ml3Kj2Ih1Gf0EdCbA" * 2
GENERIC_KEY = "b7f3c91e0d2a4f6b8c1e3d5f7a9b0c2d4e6f8a1b"
EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
NAME = "Jane Doe"
RAW = (OPENAI_KEY, ANTHROPIC_KEY, GENERIC_KEY, EMAIL, PHONE, NAME)


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "leakwatch.duckdb")
    yield s
    s.close()


class Db:
    """Writes findings and events the way the scan pipeline stores them: keyed hashes, masked
    previews, raw values kept (so the tests can prove they never leak into alerts)."""

    def __init__(self, store: Store):
        self.store = store
        self.con = store.con
        self.scan_id = store.begin_scan(["leakwatch", "scan", "/var/log"], "rules-hash", 1)
        self._sources: dict[str, int] = {}

    def source(self, path: str) -> int:
        if path not in self._sources:
            self._sources[path] = self.con.execute(
                "INSERT INTO sources (scan_id, path) VALUES (?, ?) RETURNING source_id", [self.scan_id, path]
            ).fetchone()[0]
        return self._sources[path]

    def finding(self, raw: str, *, entity: str, path: str, line: int, masker=mask_secret, rule_id: str | None = None,
                severity: Severity = Severity.HIGH, start: int = 10, **cols) -> None:
        row = {
            "scan_id": self.scan_id, "source_id": self.source(path), "source_path": path, "line": line,
            "start_byte": start, "end_byte": start + len(raw), "rule_id": rule_id or entity.lower(),
            "entity": entity, "confidence": 0.9, "severity": str(severity), "severity_rank": int(severity),
            "masked": masker(raw.encode()), "value_hash": self.store.hash_value(raw.encode()),
            "raw_value": raw, **cols,
        }
        names = ", ".join(row)
        self.con.execute(f"INSERT INTO findings ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    def event(self, kind: str, *, path: str, line: int, ts: datetime | None, **cols) -> None:
        row = {"scan_id": self.scan_id, "source_id": self.source(path), "source_path": path, "line": line,
               "ts": ts, "kind": kind, **cols}
        names = ", ".join(row)
        self.con.execute(f"INSERT INTO events ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


@pytest.fixture
def db(store) -> Db:
    return Db(store)


def actor(db: Db, username: str) -> dict:
    """The actor columns of a Salesforce user as the pipeline stores them."""
    return {"actor_hash": db.store.hash_value(username.encode()), "actor_masked": mask_email(username.encode())}


def by_pattern(alerts, pattern):
    return [a for a in alerts if a.pattern == pattern]


def stored_alerts(store) -> list[tuple]:
    return store.con.execute(
        "SELECT alert_key, pattern, severity, severity_rank, summary, evidence, scan_id FROM alerts ORDER BY alert_id"
    ).fetchall()


S = PatternSettings()

# -- P1: exposed AI keys ------------------------------------------------------------------------


def test_p1_key_in_one_log_is_high_in_export_or_two_files_critical(db):
    # One OpenAI key in a single gateway log line: high.
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/gw/access.jsonl", line=12,
               field_path="headers.authorization", ts=T0, format="jsonl", dest_vendor="openai",
               dest_host="api.openai.com")
    alerts = by_pattern(detect_patterns(db.con, S), "P1_key_exposed")
    assert len(alerts) == 1
    a = alerts[0]
    assert a.severity == Severity.HIGH
    assert a.dest_vendor == "openai"
    assert a.evidence["n_files"] == 1 and a.evidence["n_lines"] == 1
    assert a.evidence["in_exported_setting"] is False
    assert "sk-proj-\u2026" in a.summary  # the masked preview, vendor prefix only

    # The Anthropic key in an exported custom setting (CSV of AI_Settings__c): critical at once,
    # even though it was found by the generic rule, because the column names the vendor.
    db.finding(ANTHROPIC_KEY, entity="API_KEY", rule_id="generic_api_key", path="/exports/AI_Settings__c.csv",
               line=2, field_path="Anthropic_API_Key__c", format="csv", detector="column",
               sf_object="AI_Settings__c", sf_field="Anthropic_API_Key__c")
    # The same OpenAI key again, in a second file: now critical too.
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/mule/mule-app-crm-sync.log", line=88,
               field_path="message", ts=T0 + timedelta(hours=5))
    alerts = {a.evidence["entity"]: a for a in by_pattern(detect_patterns(db.con, S), "P1_key_exposed")}
    assert set(alerts) == {"OPENAI_API_KEY", "API_KEY"}
    assert alerts["API_KEY"].severity == Severity.CRITICAL
    assert alerts["API_KEY"].evidence["in_exported_setting"] is True
    assert "exported custom setting" in alerts["API_KEY"].summary
    openai = alerts["OPENAI_API_KEY"]
    assert openai.severity == Severity.CRITICAL
    assert openai.evidence["n_files"] == 2 and openai.evidence["n_lines"] == 2
    assert openai.evidence["first_ts"] == "2024-03-11T09:00:00Z"
    assert openai.evidence["last_ts"] == "2024-03-11T14:00:00Z"


def test_p1_near_misses_non_ai_credentials_and_pii_in_ai_fields(db):
    # A generic key in a field that names no AI service (Stripe), an AWS key, and an email in an
    # OpenAI-named column: none is an exposed AI credential.
    db.finding(GENERIC_KEY, entity="API_KEY", rule_id="generic_api_key", path="/var/log/app/pay.log", line=3,
               field_path="stripe_api_key")
    db.finding("AKIAIOSFODNN7EXAMPLE", entity="AWS_ACCESS_KEY_ID", path="/var/log/app/pay.log", line=4,
               field_path="aws.access_key")
    db.finding(EMAIL, entity="EMAIL_ADDRESS", masker=mask_email, path="/exports/AI_Settings__c.csv", line=2,
               field_path="OpenAI_Owner_Email__c")
    assert by_pattern(detect_patterns(db.con, S), "P1_key_exposed") == []


def test_p1_gateway_bypass_per_caller_and_host(db):
    alice = actor(db, "alice@acme.example")
    for i in range(3):  # three direct calls from an Apex callout, one of them out of the EU
        db.event("ai_call", path="/elf/ApexCallout/2024-03-11.csv", line=2 + i, ts=T0 + timedelta(minutes=i),
                 event_type="ApexCallout", url_host="api.openai.com", url_path="/v1/chat/completions",
                 dest_vendor="openai", dest_region="us", dest_jurisdiction="US", via_gateway=False,
                 residency_violation=(i == 2), **alice)
    alerts = by_pattern(detect_patterns(db.con, S), "P1_gateway_bypass")
    assert len(alerts) == 1
    a = alerts[0]
    assert a.actor_hash == alice["actor_hash"]
    assert a.evidence["n_calls"] == 3 and a.evidence["n_residency_violations"] == 1
    assert a.severity == Severity.CRITICAL
    assert "a***@a***.example" in a.summary and "api.openai.com" in a.summary


def test_p1_gateway_bypass_near_miss_through_gateway_or_unknown(db):
    bob = actor(db, "bob@acme.example")
    db.event("ai_call", path="/var/log/gw/access.log", line=1, ts=T0, url_host="api.openai.com",
             dest_vendor="openai", via_gateway=True, **bob)
    db.event("ai_call", path="/var/log/gw/access.log", line=2, ts=T0, url_host="api.openai.com",
             dest_vendor="openai", via_gateway=None, **bob)  # unknown is not a bypass
    assert by_pattern(detect_patterns(db.con, S), "P1_gateway_bypass") == []


# -- P2: bulk read, then AI ---------------------------------------------------------------------


def _bulk(db, who, *, rows=25_000, obj="Contact", op="BulkApi", ts=T0, line=2, app="0H4Hs000000DataLoad"):
    db.event("bulk", path="/elf/BulkApi/2024-03-11.csv", line=line, ts=ts, event_type=op, sf_object=obj,
             rows_processed=rows, app=app, **who)


def _ai(db, who, *, ts, line, app=None, violation=False, host="api.openai.com"):
    db.event("ai_call", path="/var/log/gw/egress.jsonl", line=line, ts=ts, url_host=host, dest_vendor="openai",
             dest_region="us" if violation else "eu", residency_violation=violation, via_gateway=True,
             app=app, **who)


def test_p2_bulk_then_ai_same_actor_and_same_app(db):
    alice, carol = actor(db, "alice@acme.example"), actor(db, "carol@acme.example")
    _bulk(db, alice)
    _ai(db, alice, ts=T0 + timedelta(minutes=20), line=1)
    # Another user, but the same connected app that ran the bulk job, 45 minutes later.
    _ai(db, carol, ts=T0 + timedelta(minutes=45), line=2, app="0H4Hs000000DataLoad")
    alerts = by_pattern(detect_patterns(db.con, S), "P2_bulk_then_ai")
    assert len(alerts) == 1
    a = alerts[0]
    assert a.severity == Severity.HIGH
    assert a.actor_hash == alice["actor_hash"]
    assert a.evidence["n_calls"] == 2
    assert [c["matched_on"] for c in a.evidence["calls"]] == ["actor", "app"]
    assert "25,000 Contact rows" in a.summary

    # One of the following calls leaves the EU: critical, and it names that destination.
    _ai(db, alice, ts=T0 + timedelta(minutes=50), line=3, violation=True, host="api.openai.com")
    a = by_pattern(detect_patterns(db.con, S), "P2_bulk_then_ai")[0]
    assert a.severity == Severity.CRITICAL
    assert a.dest_region == "us"
    assert a.evidence["n_residency_violations"] == 1


def test_p2_near_misses(db):
    alice, bob = actor(db, "alice@acme.example"), actor(db, "bob@acme.example")
    _bulk(db, alice, line=2)
    _ai(db, alice, ts=T0 + timedelta(minutes=61), line=1)        # outside the 60-minute window
    _ai(db, alice, ts=T0 - timedelta(minutes=5), line=2)         # before the bulk job
    _ai(db, bob, ts=T0 + timedelta(minutes=10), line=3)          # another user, another app
    _bulk(db, bob, rows=999, ts=T0 + timedelta(hours=3), line=3)  # below bulk_min_rows
    _ai(db, bob, ts=T0 + timedelta(hours=3, minutes=5), line=4)
    _bulk(db, bob, obj="Opportunity", ts=T0 + timedelta(hours=5), line=4)  # object not configured
    _ai(db, bob, ts=T0 + timedelta(hours=5, minutes=5), line=5)
    _bulk(db, bob, op="insert", ts=T0 + timedelta(hours=7), line=5)        # a write, not a read
    _ai(db, bob, ts=T0 + timedelta(hours=7, minutes=5), line=6)
    assert by_pattern(detect_patterns(db.con, S), "P2_bulk_then_ai") == []
    # A wider window catches the first call; the near misses stay misses.
    wide = by_pattern(detect_patterns(db.con, PatternSettings(window_minutes=90)), "P2_bulk_then_ai")
    assert len(wide) == 1 and wide[0].actor_hash == alice["actor_hash"]


def test_p2_same_bulk_row_in_hourly_and_daily_file_is_one_alert(db):
    alice = actor(db, "alice@acme.example")
    _bulk(db, alice, line=2)
    db.event("bulk", path="/elf/BulkApi/2024-03-11-hourly-09.csv", line=7, ts=T0, event_type="BulkApi",
             sf_object="Contact", rows_processed=25_000, app="0H4Hs000000DataLoad", **alice)
    _ai(db, alice, ts=T0 + timedelta(minutes=20), line=1)
    assert len(by_pattern(detect_patterns(db.con, S), "P2_bulk_then_ai")) == 1
    assert len(by_pattern(run_patterns(db.con, S), "P2_bulk_then_ai")) == 1


# -- P3: customer data in prompts ---------------------------------------------------------------


def test_p3_prompt_pii_one_alert_per_destination_ranked_by_role(db):
    path = "/var/log/app/assistant.jsonl"
    openai = {"dest_host": "api.openai.com", "dest_vendor": "openai", "dest_region": "us", "format": "jsonl"}
    db.finding(EMAIL, entity="EMAIL_ADDRESS", masker=mask_email, path=path, line=1,
               field_path="messages[0].content", prompt_role="system", ts=T0, **openai)
    db.finding(PHONE, entity="PHONE_NUMBER", masker=mask_phone, path=path, line=1, start=80,
               field_path="messages[0].content", prompt_role="system", ts=T0, **openai)
    db.finding(EMAIL, entity="EMAIL_ADDRESS", masker=mask_email, path=path, line=2,
               field_path="messages[1].content", prompt_role="user", ts=T0 + timedelta(minutes=1), **openai)
    # Another destination, user messages only: its own alert, high.
    mistral = {"dest_host": "api.mistral.ai", "dest_vendor": "mistral", "dest_region": "eu"}
    db.finding(NAME, entity="PERSON_NAME", masker=mask_name, path=path, line=3,
               field_path="messages[1].content", prompt_role="user", ts=T0, **mistral)
    # No destination and no role, but an LLM message shape (Gemini): medium, grouped by its system.
    db.finding(EMAIL, entity="EMAIL_ADDRESS", masker=mask_email, path="/var/log/bot/bot.2024-03-11.log.gz",
               line=9, field_path="contents[0].parts[0].text")
    alerts = {a.evidence["dest_host"] or a.evidence["system"]: a
              for a in by_pattern(detect_patterns(db.con, S), "P3_prompt_pii")}
    assert set(alerts) == {"api.openai.com", "api.mistral.ai", "/var/log/bot/bot.#-#-#.log"}
    o = alerts["api.openai.com"]
    assert o.severity == Severity.CRITICAL
    assert o.evidence["entities"] == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}
    assert o.evidence["roles"] == {"system": 2, "user": 1}
    assert o.evidence["n_prompts"] == 2
    assert "EMAIL_ADDRESS x2" in o.summary
    assert alerts["api.mistral.ai"].severity == Severity.HIGH
    assert alerts["/var/log/bot/bot.#-#-#.log"].severity == Severity.MEDIUM


def test_p3_near_misses_non_prompt_field_and_credentials(db):
    openai = {"dest_host": "api.openai.com", "dest_vendor": "openai", "dest_region": "us"}
    # The customer's email in the request metadata, not in the prompt.
    db.finding(EMAIL, entity="EMAIL_ADDRESS", masker=mask_email, path="/var/log/app/a.jsonl", line=1,
               field_path="metadata.customer_email", **openai)
    # A key pasted into a prompt is P1's business, not customer data.
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/app/a.jsonl", line=2,
               field_path="messages[1].content", prompt_role="user", **openai)
    # A field called `input` in a record that goes to no AI service.
    db.finding(EMAIL, entity="EMAIL_ADDRESS", masker=mask_email, path="/var/log/app/form.log", line=3,
               field_path="input")
    alerts = detect_patterns(db.con, S)
    assert by_pattern(alerts, "P3_prompt_pii") == []
    assert len(by_pattern(alerts, "P1_key_exposed")) == 1


# -- P4: CDN edges ------------------------------------------------------------------------------


def _cdn(db, edge, line, ts=T0, cache="Hit"):
    db.event("cdn_ai", path="/var/log/cloudfront/E2ABC.2024-03-11-09.gz", line=line, ts=ts,
             url_host="assist.acme.example", url_path="/ai/answers/123", edge_location=edge, cache_status=cache)


def test_p4_edge_outside_allowed_jurisdiction(db):
    _cdn(db, "IAD89-C1", 1)
    _cdn(db, "JFK50-P3", 2, cache="Miss")
    _cdn(db, "NRT57-P2", 3)
    alerts = {a.dest_region: a for a in by_pattern(detect_patterns(db.con, S), "P4_cdn_region")}
    assert set(alerts) == {"US", "JP"}
    us = alerts["US"]
    assert us.severity == Severity.HIGH
    assert us.evidence["edges"] == {"IAD89-C1": 1, "JFK50-P3": 1}
    assert us.evidence["n_hits"] == 2
    # Allowing the US leaves Japan.
    wider = PatternSettings(allowed_jurisdictions=("EU", "US"))
    assert [a.dest_region for a in by_pattern(detect_patterns(db.con, wider), "P4_cdn_region")] == ["JP"]


def test_p4_near_miss_eu_and_eea_edges(db):
    _cdn(db, "FRA56-P1", 1)
    _cdn(db, "cache-ams21034-AMS", 2)
    _cdn(db, "OSL50-C1", 3)  # Norway: in the EEA, not in the EU
    assert by_pattern(detect_patterns(db.con, PatternSettings(allowed_jurisdictions=("EEA",))),
                      "P4_cdn_region") == []
    (only_eu,) = by_pattern(detect_patterns(db.con, S), "P4_cdn_region")
    assert only_eu.dest_region == "NO" and only_eu.evidence["edges"] == {"OSL50-C1": 1}


def test_p4_unknown_edge_is_medium(db):
    _cdn(db, "XQZ1-P9", 1)  # no known POP
    (a,) = by_pattern(detect_patterns(db.con, S), "P4_cdn_region")
    assert a.severity == Severity.MEDIUM and a.dest_region == "UNKNOWN"
    assert "unknown jurisdiction" in a.summary


def test_p4_takes_a_mapping_function_or_allowed_edges(db):
    _cdn(db, "FRA56-P1", 1)
    _cdn(db, "MUC50-P2", 2)
    table = {"FRA56-P1": "DE-sovereign"}  # a per-edge table, "unknown" for the rest (the registry's way)
    s = PatternSettings(allowed_jurisdictions=("EU",), edge_jurisdiction=lambda e: table.get(e, "unknown"))
    alerts = by_pattern(detect_patterns(db.con, s), "P4_cdn_region")
    assert sorted(a.dest_region for a in alerts) == ["DE-SOVEREIGN", "UNKNOWN"]
    # With allowed edges, only FRA may serve: Munich is flagged though it is in the EU.
    (a,) = by_pattern(detect_patterns(db.con, PatternSettings(allowed_edges=("fra",))), "P4_cdn_region")
    assert a.evidence["edges"] == {"MUC50-P2": 1} and a.dest_region == "EU"


def test_default_edge_jurisdiction_reads_cdn_edge_names():
    assert default_edge_jurisdiction("FRA56-P1") == "EU"          # CloudFront
    assert default_edge_jurisdiction("CDG") == "EU"               # Cloudflare colo
    assert default_edge_jurisdiction("cache-lhr7351-LHR") == "UK"  # Fastly
    assert default_edge_jurisdiction("IAD89-C1") == "US"
    assert default_edge_jurisdiction("ZRH50-C1") == "CH"
    assert default_edge_jurisdiction("cache-xyz") is None
    assert all(len(code) == 3 and code.isupper() for code in DEFAULT_EDGE_JURISDICTIONS)


# -- bulk exports -------------------------------------------------------------------------------


def test_bulk_export_per_actor_per_day(db):
    alice, bob = actor(db, "alice@acme.example"), actor(db, "bob@acme.example")
    db.event("report_export", path="/elf/ReportExport/2024-03-11.csv", line=2, ts=T0, event_type="ReportExport",
             **alice)
    db.event("bulk", path="/rtem/BulkApiResultEvent.jsonl", line=1, ts=T0 + timedelta(hours=2),
             event_type="BulkApiResultEvent", sf_object="Contact", rows_processed=40_000, **alice)
    db.event("report_export", path="/elf/ReportExport/2024-03-12.csv", line=2, ts=T0 + timedelta(days=1),
             event_type="ReportExport", **alice)
    db.event("report_export", path="/elf/ReportExport/2024-03-11.csv", line=3, ts=T0, event_type="ReportExport",
             **bob)
    alerts = by_pattern(detect_patterns(db.con, S), "bulk_export")
    got = {(a.actor_hash, a.evidence["day"]): a for a in alerts}
    assert set(got) == {(alice["actor_hash"], "2024-03-11"), (alice["actor_hash"], "2024-03-12"),
                        (bob["actor_hash"], "2024-03-11")}
    day1 = got[(alice["actor_hash"], "2024-03-11")]
    assert day1.evidence["n_exports"] == 2 and day1.evidence["rows"] == 40_000
    assert day1.severity == Severity.HIGH
    assert "some counts unknown" in day1.summary
    assert got[(bob["actor_hash"], "2024-03-11")].severity == Severity.MEDIUM  # rows unknown


def test_bulk_export_near_miss_jobs_that_are_not_downloads_and_small_downloads(db):
    alice = actor(db, "alice@acme.example")
    db.event("bulk", path="/elf/BulkApi/2024-03-11.csv", line=2, ts=T0, event_type="BulkApi",
             sf_object="Contact", rows_processed=40_000, **alice)
    db.event("api", path="/elf/RestApi/2024-03-11.csv", line=2, ts=T0, event_type="RestApi",
             sf_object="Report", **alice)
    # A result download of 200 rows: below bulk_min_rows.
    db.event("bulk", path="/elf/BulkApiResult/2024-03-11.csv", line=2, ts=T0, event_type="BulkApiResult",
             sf_object="Contact", rows_processed=200, **alice)
    assert by_pattern(detect_patterns(db.con, S), "bulk_export") == []


# -- API volume ---------------------------------------------------------------------------------


def _api_hours(db, who, counts, *, path, start=T0):
    line = 0
    for h, n in enumerate(counts):
        for i in range(n):
            line += 1
            db.event("api", path=path, line=line, ts=start + timedelta(hours=h, seconds=i * 7),
                     event_type="RestApi", sf_object="Contact", rows_processed=1, app="0H4Hs000000Integr", **who)


def test_api_volume_spike_against_own_median(db):
    alice = actor(db, "alice@acme.example")
    _api_hours(db, alice, [20, 22, 18, 21, 19, 20, 23, 20, 19, 21, 22, 20, 200, 21],
               path="/elf/RestApi/alice.csv")
    alerts = by_pattern(detect_patterns(db.con, S), "api_volume")
    assert len(alerts) == 1
    a = alerts[0]
    assert a.ts == T0 + timedelta(hours=12)
    assert a.evidence["n_events"] == 200
    assert a.evidence["baseline_median"] == 20.0 and a.evidence["baseline_hours"] == 12
    assert a.severity == Severity.HIGH  # 10x, past factor² = 9x


def test_api_volume_near_misses(db):
    steady = actor(db, "steady@acme.example")
    _api_hours(db, steady, [60, 64, 58, 61, 66, 59, 62, 60, 63, 57, 61, 60, 65, 62], path="/elf/a.csv")
    young = actor(db, "new.hire@acme.example")  # a spike, but only 5 hours of history
    _api_hours(db, young, [20, 20, 20, 20, 20, 300], path="/elf/b.csv")
    small = actor(db, "small@acme.example")  # 40 is 13x its median but under 50 calls
    _api_hours(db, small, [3] * 12 + [40], path="/elf/c.csv")
    busy = actor(db, "busy@acme.example")  # 75 calls: over 50, but only 2.5x its median of 30
    _api_hours(db, busy, [30] * 12 + [75], path="/elf/d.csv")
    assert by_pattern(detect_patterns(db.con, S), "api_volume") == []
    # With a shorter history requirement the new hire's spike counts: the near miss was the rule.
    assert len(by_pattern(detect_patterns(db.con, PatternSettings(api_volume_min_baseline_hours=5)),
                          "api_volume")) == 1


# -- storing, re-running, escalation, no raw values ---------------------------------------------


def _plant_everything(db):
    alice = actor(db, "alice@acme.example")
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/gw/access.jsonl", line=12,
               field_path="headers.authorization", ts=T0)
    db.finding(EMAIL, entity="EMAIL_ADDRESS", masker=mask_email, path="/var/log/app/assistant.jsonl", line=1,
               field_path="messages[0].content", prompt_role="system", dest_host="api.openai.com",
               dest_vendor="openai", ts=T0)
    db.finding(NAME, entity="PERSON_NAME", masker=mask_name, path="/var/log/app/assistant.jsonl", line=1,
               start=60, field_path="messages[0].content", prompt_role="system", dest_host="api.openai.com",
               dest_vendor="openai", ts=T0)
    db.event("ai_call", path="/elf/ApexCallout.csv", line=2, ts=T0, url_host="api.openai.com",
             dest_vendor="openai", via_gateway=False, **alice)
    _bulk(db, alice)
    _ai(db, alice, ts=T0 + timedelta(minutes=5), line=1)
    _cdn(db, "IAD89-C1", 1)
    db.event("report_export", path="/elf/ReportExport.csv", line=2, ts=T0, event_type="ReportExport", **alice)
    _api_hours(db, alice, [20] * 12 + [100], path="/elf/RestApi.csv")


def test_run_stores_each_alert_once_and_rerun_adds_nothing(db, store):
    _plant_everything(db)
    first = run_patterns(db.con, S, scan_id=db.scan_id)
    assert {a.pattern for a in first} == {
        "P1_key_exposed", "P1_gateway_bypass", "P2_bulk_then_ai", "P3_prompt_pii", "P4_cdn_region",
        "bulk_export", "api_volume",
    }
    assert all(a.alert_id is not None and a.scan_id == db.scan_id for a in first)
    rows = stored_alerts(store)
    assert len(rows) == len(first) == len({r[0] for r in rows})
    for key, pattern, severity, rank, summary, evidence, scan_id in rows:
        assert Severity.parse(severity) == rank and scan_id == db.scan_id
        assert isinstance(json.loads(evidence), dict)

    assert run_patterns(db.con, S, scan_id=db.scan_id + 1) == []
    assert stored_alerts(store) == rows


def test_rerun_escalates_stored_alert_instead_of_duplicating(db, store):
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/gw/access.jsonl", line=12, ts=T0)
    (first,) = run_patterns(db.con, S, scan_id=db.scan_id)
    assert first.severity == Severity.HIGH
    # The next scan finds the same key in a second file.
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/mule/mule-app-crm.log", line=5, ts=T0)
    (again,) = run_patterns(db.con, S, scan_id=db.scan_id + 1)
    assert again.alert_key == first.alert_key and again.alert_id == first.alert_id
    assert again.severity == Severity.CRITICAL and again.escalated_from == Severity.HIGH
    rows = store.con.execute("SELECT severity, severity_rank, evidence, scan_id FROM alerts").fetchall()
    assert len(rows) == 1
    assert rows[0][:2] == ("critical", 4)
    assert json.loads(rows[0][2])["n_files"] == 2
    assert rows[0][3] == db.scan_id  # the scan that raised it first


def test_alerts_never_contain_raw_values(db, store):
    _plant_everything(db)
    db.finding(ANTHROPIC_KEY, entity="API_KEY", path="/exports/AI_Settings__c.csv", line=2,
               field_path="Claude_Key__c")
    db.finding(PHONE, entity="PHONE_NUMBER", masker=mask_phone, path="/var/log/app/assistant.jsonl", line=2,
               field_path="messages[1].content", prompt_role="user", dest_host="api.openai.com", dest_vendor="openai")
    assert store.con.execute("SELECT count(*) FROM findings WHERE raw_value IS NOT NULL").fetchone()[0] == 5
    alerts = run_patterns(db.con, S)
    assert len(alerts) >= 7
    text = "\n".join(f"{s}\n{e}" for s, e in store.con.execute("SELECT summary, evidence FROM alerts").fetchall())
    text += "\n".join(a.summary + json.dumps(a.evidence, default=str) for a in alerts)
    for raw in RAW + ("alice@acme.example",):
        assert raw not in text
    # Nor any part a masked preview hides: masks keep a key's vendor prefix (sk-ant-api03-), an
    # email's first letter and TLD, a phone's last two digits, a name's initial.
    hidden = [OPENAI_KEY[8:24], OPENAI_KEY[-12:], ANTHROPIC_KEY[13:29], ANTHROPIC_KEY[-12:],
              GENERIC_KEY[:12], GENERIC_KEY[-12:], "jane.doe", "@example.com", "7946", "0958", "Doe",
              "alice@", "@acme"]
    assert [h for h in hidden if h in text] == []


# -- a realistic day, every pattern at once: the exact alerts -------------------------------------
#
# The detectors were rewritten for speed (one aggregating pass, top-100 ids in SQL, bulk store);
# this day pins what they report, down to each id, count, time and summary.


def _ids(db: Db, table: str, where: str, *params, limit: int = 100) -> list[int]:
    id_col = "event_id" if table == "events" else "finding_id"
    return [r[0] for r in db.con.execute(
        f"SELECT {id_col} FROM {table} WHERE {where} ORDER BY {id_col} LIMIT {limit}", list(params)).fetchall()]


def _key(pattern: str, *parts) -> str:
    # The documented key: the pattern and a hash of what identifies the alert.
    import hashlib
    text = "\x1f".join("" if p is None else (p.isoformat() if hasattr(p, "isoformat") else str(p)) for p in parts)
    return f"{pattern}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _plant_day(db: Db) -> dict:
    alice, bob = actor(db, "alice@acme.example"), actor(db, "bob@acme.example")
    # Gateway bypass: 130 direct calls by alice from an Apex callout (80) and the Mule app (50),
    # a third of them to the EU endpoint, five leaving the EU.
    for i in range(130):
        apex = i < 80
        db.event("ai_call", path="/elf/ApexCallout/2024-03-11.csv" if apex else "/var/log/mule/crm-sync.log",
                 line=(i if apex else i - 80) + 2, ts=T0 + timedelta(minutes=i), url_host="api.openai.com",
                 dest_vendor="openai", dest_region="eu" if i % 3 == 1 else "us", via_gateway=False,
                 residency_violation=(i % 26 == 0), app=None if apex else "crm-sync", **alice)
    for i in range(3):  # a connected app with no user behind it
        db.event("ai_call", path="/var/log/mule/summarizer.log", line=i + 1, ts=T0 + timedelta(hours=2, seconds=i),
                 url_host="api.anthropic.com", dest_vendor="anthropic", dest_region="us", via_gateway=False,
                 app="case-summarizer")
    # An OpenAI key: twice on line 13 (header and body), once on line 12, once in a Mule log.
    gw = {"dest_vendor": "openai", "dest_host": "api.openai.com", "actor_hash": alice["actor_hash"]}
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/gw/access.jsonl", line=12,
               field_path="headers.authorization", ts=T0, **gw)
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/gw/access.jsonl", line=13,
               field_path="headers.authorization", ts=T0 + timedelta(minutes=1), **gw)
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/gw/access.jsonl", line=13, start=300,
               field_path="body.openai_api_key", ts=T0 + timedelta(minutes=1), **gw)
    db.finding(OPENAI_KEY, entity="OPENAI_API_KEY", path="/var/log/mule/crm-sync.log", line=88,
               field_path="message", ts=T0 + timedelta(hours=5))
    # Customer data in prompts: the user message stored first, the system prompt after it.
    openai = {"dest_host": "api.openai.com", "dest_vendor": "openai", "dest_region": "us"}
    path = "/var/log/app/assistant.jsonl"
    db.finding(NAME, entity="PERSON_NAME", masker=mask_name, path=path, line=2, field_path="messages[1].content",
               prompt_role="user", ts=T0 + timedelta(minutes=3), **openai)
    db.finding(EMAIL, entity="EMAIL_ADDRESS", masker=mask_email, path=path, line=1, field_path="messages[0].content",
               prompt_role="system", ts=T0 + timedelta(minutes=2), **openai)
    db.finding(PHONE, entity="PHONE_NUMBER", masker=mask_phone, path=path, line=1, start=80,
               field_path="messages[0].content", prompt_role="system", ts=T0 + timedelta(minutes=2), **openai)
    # Exports around UTC midnight: 01:30 in UTC+2 and 23:59:59.999999 are still the 10th.
    db.event("report_export", path="/elf/ReportExport/2024-03-10.csv", line=2,
             ts=datetime.fromisoformat("2024-03-11T01:30:00+02:00"), event_type="ReportExport", **alice)
    db.event("report_export", path="/elf/ReportExport/2024-03-10.csv", line=3,
             ts=datetime(2024, 3, 10, 23, 59, 59, 999999, tzinfo=UTC), event_type="ReportExport", **alice)
    db.event("bulk", path="/elf/BulkApiResult/2024-03-11.csv", line=2, ts=datetime(2024, 3, 11, tzinfo=UTC),
             event_type="BulkApiResult", sf_object="Contact", rows_processed=40_000, **alice)
    # API volume: bob's steady 20 calls an hour, one more just before 11:00 ends, then 200.
    midnight = datetime(2024, 3, 11, tzinfo=UTC)
    _api_hours(db, bob, [20] * 12 + [200], path="/elf/RestApi/2024-03-11.csv", start=midnight)
    db.event("api", path="/elf/RestApi/2024-03-11-late.csv", line=1,
             ts=midnight + timedelta(hours=12, microseconds=-1), event_type="RestApi", sf_object="Contact",
             rows_processed=1, app="0H4Hs000000Integr", **bob)
    # CDN: two US edges, one nobody can place, one in the EU.
    _cdn(db, "IAD89-C1", 1, cache="Hit")
    _cdn(db, "IAD89-C1", 2, ts=T0 + timedelta(minutes=1), cache="Miss")
    _cdn(db, "XQZ1-P9", 3)
    _cdn(db, "FRA56-P1", 4)
    # Bulk read then AI: 09:30 job; calls at 09:29:59 (before), 09:45 (leaves the EU), 10:30:00
    # (the window's last instant, in the next hour) and 10:30:00.000001 (past it).
    bulk_ts = T0 + timedelta(minutes=30)
    _bulk(db, bob, ts=bulk_ts, app=None)
    for line, (delta, violation) in enumerate(
            [(timedelta(seconds=-1), False), (timedelta(minutes=15), True), (timedelta(hours=1), False),
             (timedelta(hours=1, microseconds=1), False)], start=1):
        _ai(db, bob, ts=bulk_ts + delta, line=line, violation=violation)
    return {"alice": alice, "bob": bob}


def test_realistic_day_gives_exactly_these_alerts(db, store):
    who = _plant_day(db)
    alice, bob = who["alice"], who["bob"]
    got = {a.alert_key: a for a in detect_patterns(db.con, S)}

    ev = lambda where, *p: _ids(db, "events", where, *p)
    fi = lambda where, *p: _ids(db, "findings", where, *p)
    hour12 = datetime(2024, 3, 11, 12, tzinfo=UTC)
    p2_calls = ev("source_path = '/var/log/gw/egress.jsonl' AND line IN (2, 3)")
    expected = {
        _key("P1_gateway_bypass", alice["actor_hash"], None, "openai", "api.openai.com"): (
            Severity.CRITICAL, "us",
            (f"user {alice['actor_masked']} (app crm-sync) called api.openai.com (openai, us) directly, not via the "
             "AI gateway: 130 calls, 5 violating residency, 2024-03-11T09:00:00Z .. 2024-03-11T11:09:00Z"),
            {"events": ev("kind = 'ai_call' AND url_host = 'api.openai.com' AND NOT via_gateway"),
             "n_calls": 130, "n_files": 2, "url_host": "api.openai.com", "apps": ["crm-sync"],
             "n_residency_violations": 5, "first_ts": "2024-03-11T09:00:00Z", "last_ts": "2024-03-11T11:09:00Z"}),
        _key("P1_gateway_bypass", None, "case-summarizer", "anthropic", "api.anthropic.com"): (
            Severity.HIGH, "us",
            ("app case-summarizer called api.anthropic.com (anthropic, us) directly, not via the AI gateway: "
             "3 calls, 2024-03-11T11:00:00Z .. 2024-03-11T11:00:02Z"),
            {"events": ev("app = 'case-summarizer'"), "n_calls": 3, "n_files": 1, "url_host": "api.anthropic.com",
             "apps": ["case-summarizer"], "n_residency_violations": 0,
             "first_ts": "2024-03-11T11:00:00Z", "last_ts": "2024-03-11T11:00:02Z"}),
        _key("P1_key_exposed", store.hash_value(OPENAI_KEY.encode())): (
            Severity.CRITICAL, None,
            (f"OPENAI_API_KEY {mask_secret(OPENAI_KEY.encode())} exposed in logs: 3 lines in 2 files, "
             "2024-03-11T09:00:00Z .. 2024-03-11T14:00:00Z"),
            {"findings": fi("entity = 'OPENAI_API_KEY'"), "n_findings": 4,
             "value_hash": store.hash_value(OPENAI_KEY.encode()), "entity": "OPENAI_API_KEY",
             "masked": mask_secret(OPENAI_KEY.encode()), "n_files": 2, "n_lines": 3,
             "files": ["/var/log/gw/access.jsonl", "/var/log/mule/crm-sync.log"],
             "fields": ["body.openai_api_key", "headers.authorization", "message"], "in_exported_setting": False,
             "first_ts": "2024-03-11T09:00:00Z", "last_ts": "2024-03-11T14:00:00Z"}),
        _key("P3_prompt_pii", "api.openai.com", None): (
            Severity.CRITICAL, "us",
            ("Customer data in LLM prompts to api.openai.com (openai, us): EMAIL_ADDRESS x1, PERSON_NAME x1, "
             "PHONE_NUMBER x1 in 2 prompts (roles: system x2, user x1), 2024-03-11T09:02:00Z .. 2024-03-11T09:03:00Z"),
            {"findings": fi("prompt_role = 'system'") + fi("prompt_role = 'user'"), "n_findings": 3,
             "entities": {"EMAIL_ADDRESS": 1, "PERSON_NAME": 1, "PHONE_NUMBER": 1}, "roles": {"system": 2, "user": 1},
             "n_prompts": 2, "n_files": 1, "files": ["/var/log/app/assistant.jsonl"], "dest_host": "api.openai.com",
             "system": None, "n_residency_violations": 0,
             "first_ts": "2024-03-11T09:02:00Z", "last_ts": "2024-03-11T09:03:00Z"}),
        _key("bulk_export", alice["actor_hash"], None, date(2024, 3, 10)): (
            Severity.MEDIUM, None,
            f"user {alice['actor_masked']} exported data on 2024-03-10: 2 exports, row count unknown (ReportExport x2)",
            {"events": ev("kind = 'report_export'"), "n_exports": 2, "rows": None, "day": "2024-03-10",
             "types": {"ReportExport": 2}, "objects": [], "apps": [],
             "first_ts": "2024-03-10T23:30:00Z", "last_ts": "2024-03-10T23:59:59.999999Z"}),
        _key("bulk_export", alice["actor_hash"], None, date(2024, 3, 11)): (
            Severity.HIGH, None,
            (f"user {alice['actor_masked']} exported data on 2024-03-11: 1 export of Contact, 40,000 rows "
             "(BulkApiResult x1)"),
            {"events": ev("event_type = 'BulkApiResult'"), "n_exports": 1, "rows": 40_000, "day": "2024-03-11",
             "types": {"BulkApiResult": 1}, "objects": ["Contact"], "apps": [],
             "first_ts": "2024-03-11T00:00:00Z", "last_ts": "2024-03-11T00:00:00Z"}),
        _key("api_volume", bob["actor_hash"], None, hour12): (
            Severity.HIGH, None,
            (f"user {bob['actor_masked']} (app 0H4Hs000000Integr) made 200 API calls in the hour from "
             "2024-03-11T12:00:00Z, 10.0x its median hour (20 over 12 active hours)"),
            {"events": ev("kind = 'api' AND ts >= ?", hour12), "n_events": 200, "hour": "2024-03-11T12:00:00Z",
             "baseline_median": 20.0, "baseline_hours": 12, "baseline_days": 28, "ratio": 10.0, "factor": 3.0,
             "rows": 200, "objects": {"Contact": 200}, "apps": ["0H4Hs000000Integr"]}),
        _key("P4_cdn_region", "assist.acme.example", "US"): (
            Severity.HIGH, "US",
            ("AI-generated content from assist.acme.example served in US (allowed: EU) by edges IAD89-C1: "
             "2 responses, 2024-03-11T09:00:00Z .. 2024-03-11T09:01:00Z"),
            {"events": ev("edge_location = 'IAD89-C1'"), "n_hits": 2, "n_files": 1, "url_host": "assist.acme.example",
             "jurisdiction": "US", "edges": {"IAD89-C1": 2}, "cache_status": {"Hit": 1, "Miss": 1},
             "allowed_jurisdictions": ["EU"], "allowed_edges": [],
             "first_ts": "2024-03-11T09:00:00Z", "last_ts": "2024-03-11T09:01:00Z"}),
        _key("P4_cdn_region", "assist.acme.example", "UNKNOWN"): (
            Severity.MEDIUM, "UNKNOWN",
            ("AI-generated content from assist.acme.example served from edges of unknown jurisdiction "
             "(allowed: EU) by edges XQZ1-P9: 1 response, 2024-03-11T09:00:00Z"),
            {"events": ev("edge_location = 'XQZ1-P9'"), "n_hits": 1, "n_files": 1, "url_host": "assist.acme.example",
             "jurisdiction": "UNKNOWN", "edges": {"XQZ1-P9": 1}, "cache_status": {"Hit": 1},
             "allowed_jurisdictions": ["EU"], "allowed_edges": [],
             "first_ts": "2024-03-11T09:00:00Z", "last_ts": "2024-03-11T09:00:00Z"}),
        _key("P2_bulk_then_ai", T0 + timedelta(minutes=30), bob["actor_hash"], None, "Contact", "BulkApi", 25_000): (
            Severity.CRITICAL, "us",
            (f"user {bob['actor_masked']} bulk-read 25,000 Contact rows at 2024-03-11T09:30:00Z, then within 60 min "
             "made 2 AI calls to api.openai.com, 1 violating residency"),
            {"events": ev("kind = 'bulk' AND event_type = 'BulkApi'") + p2_calls,
             "bulk_event": ev("kind = 'bulk' AND event_type = 'BulkApi'")[0], "sf_object": "Contact",
             "event_type": "BulkApi", "rows_processed": 25_000, "app": None, "n_calls": 2,
             "n_residency_violations": 1, "window_minutes": 60,
             "calls": [
                 {"event_id": p2_calls[0], "ts": "2024-03-11T09:45:00Z", "host": "api.openai.com", "vendor": "openai",
                  "region": "us", "residency_violation": True, "via_gateway": True, "matched_on": "actor"},
                 {"event_id": p2_calls[1], "ts": "2024-03-11T10:30:00Z", "host": "api.openai.com", "vendor": "openai",
                  "region": "eu", "residency_violation": False, "via_gateway": True, "matched_on": "actor"},
             ]}),
    }
    assert sorted(got) == sorted(expected)
    for key, (severity, region, summary, evidence) in expected.items():
        a = got[key]
        assert (a.severity, a.dest_region, a.summary) == (severity, region, summary), a.pattern
        assert a.evidence == evidence, a.pattern
    # The gateway alert names the first 100 of its 130 calls, the lowest ids first.
    bypass = got[_key("P1_gateway_bypass", alice["actor_hash"], None, "openai", "api.openai.com")]
    assert len(bypass.evidence["events"]) == 100 and bypass.evidence["events"] == sorted(bypass.evidence["events"])
    assert bypass.ts == T0 and bypass.actor_hash == alice["actor_hash"]
    assert got[_key("api_volume", bob["actor_hash"], None, hour12)].ts == hour12

    # Stored as found, ids in the order found; the evidence is the JSON of the evidence.
    first = run_patterns(db.con, S, scan_id=db.scan_id)
    assert [a.alert_key for a in first] == list(got)
    assert [a.alert_id for a in first] == sorted(a.alert_id for a in first)
    rows = {k: (i, json.loads(e), ts) for k, i, e, ts in
            store.con.execute("SELECT alert_key, alert_id, evidence, ts FROM alerts").fetchall()}
    for a in first:
        assert rows[a.alert_key][:2] == (a.alert_id, a.evidence)
        assert rows[a.alert_key][2] == a.ts
    assert run_patterns(db.con, S, scan_id=db.scan_id + 1) == []


def test_file_stored_under_two_sources_counts_each_line_once(db, store):
    # An older leakwatch re-scanned a grown gateway log and stored its old lines again.
    alice = actor(db, "alice@acme.example")
    path = "/elf/ApexCallout/2024-03-11.csv"
    for line in (1, 2):
        db.event("ai_call", path=path, line=line, ts=T0 + timedelta(minutes=line), url_host="api.openai.com",
                 dest_vendor="openai", via_gateway=False, **alice)
    rescan = store.con.execute(
        "INSERT INTO sources (scan_id, path) VALUES (?, ?) RETURNING source_id", [db.scan_id, path]).fetchone()[0]
    for line in (1, 2, 3):
        store.con.execute(
            "INSERT INTO events (scan_id, source_id, source_path, line, ts, kind, url_host, dest_vendor, via_gateway,"
            " actor_hash, actor_masked) VALUES (?, ?, ?, ?, ?, 'ai_call', 'api.openai.com', 'openai', false, ?, ?)",
            [db.scan_id, rescan, path, line, T0 + timedelta(minutes=line), alice["actor_hash"], alice["actor_masked"]])
    (a,) = by_pattern(detect_patterns(db.con, S), "P1_gateway_bypass")
    assert a.evidence["n_calls"] == 3
    assert a.evidence["events"] == _ids(db, "events", "source_id = ?", rescan)  # the newest copy of each line


def test_mode_ties_go_to_the_value_seen_first(db):
    alice = actor(db, "alice@acme.example")
    for line, region in enumerate(["eu", "us", "us", "eu"], start=1):
        db.event("ai_call", path="/elf/ApexCallout.csv", line=line, ts=T0, url_host="api.openai.com",
                 dest_vendor="openai", dest_region=region, via_gateway=False, **alice)
    (a,) = by_pattern(detect_patterns(db.con, S), "P1_gateway_bypass")
    assert a.dest_region == "eu"


def test_p2_window_across_a_time_bucket_edge(db):
    # Calls are matched in window-long time buckets; a bulk row near a bucket's end must still see
    # the calls of the next bucket, up to and including the window's last instant.
    alice = actor(db, "alice@acme.example")
    bulk_ts = datetime(2024, 3, 11, 9, 59, 59, 999999, tzinfo=UTC)
    _bulk(db, alice, ts=bulk_ts)
    _ai(db, alice, ts=bulk_ts, line=1)                                             # same instant
    _ai(db, alice, ts=bulk_ts + timedelta(minutes=60), line=2)                     # last instant
    _ai(db, alice, ts=bulk_ts + timedelta(minutes=60, microseconds=1), line=3)     # past it
    _ai(db, actor(db, "carol@acme.example"), ts=bulk_ts + timedelta(minutes=30), line=4,
        app="0H4Hs000000DataLoad")                                                 # same app
    (a,) = by_pattern(detect_patterns(db.con, S), "P2_bulk_then_ai")
    assert [(c["ts"], c["matched_on"]) for c in a.evidence["calls"]] == [
        ("2024-03-11T09:59:59.999999Z", "actor"), ("2024-03-11T10:29:59.999999Z", "app"),
        ("2024-03-11T10:59:59.999999Z", "actor")]
    (a,) = by_pattern(detect_patterns(db.con, PatternSettings(window_minutes=7)), "P2_bulk_then_ai")
    assert a.evidence["n_calls"] == 1


# -- settings and errors ------------------------------------------------------------------------


def test_settings_are_checked():
    with pytest.raises(UsageError, match="window_minutes"):
        PatternSettings(window_minutes=0)
    with pytest.raises(UsageError, match="bulk_objects"):
        PatternSettings(bulk_objects="Contact")
    with pytest.raises(UsageError, match="api_volume_factor"):
        PatternSettings(api_volume_factor=0.5)


def test_unknown_pattern_name_and_unreadable_database(tmp_path):
    import duckdb

    con = duckdb.connect(str(tmp_path / "not-leakwatch.duckdb"))
    try:
        with pytest.raises(StoreError, match="not-leakwatch.duckdb: cannot look for"):
            run_patterns(con, S)
        with pytest.raises(UsageError, match="P9_nope"):
            detect_patterns(con, S, patterns=["P9_nope"])
    finally:
        con.close()


def test_credential_entities_match_shipped_rules():
    rules, _ = load_rules(default_rules_dir())  # (rules/ also holds non-rule data files now)
    assert "openai_api_key" in {r.id for r in rules}
    assert set(AI_CREDENTIAL_ENTITIES) == set(entities_tagged(rules, "credential", "ai"))
    assert set(entities_tagged(rules, "credential")) <= set(CREDENTIAL_ENTITIES)
