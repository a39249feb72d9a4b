"""End to end: each failure pattern planted in realistic log files → ``scan_paths`` → the alert it
stores (pattern, severity, masked summary, evidence ids), next to a near miss that must stay quiet.

tests/test_patterns.py checks the detectors on rows written straight into DuckDB; this file checks
that the readers, the enrichment and the EventLogFile bulk path give the detectors what they need:
EventLogFile CSVs (header first, every value quoted), CDN access logs in the combined format with
their trailing edge/cache fields, JSON-lines application logs, a Data Loader export of a custom
setting. The logs are written by each test into its tmp_path; the large EventLogFile ones are
generated row by row. Every scan keeps raw values (``store_raw``) so the tests can prove that no
alert repeats one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpers import read_rows

from leakwatch.config import load_config
from leakwatch.pipeline import scan_paths

# -- building realistic logs --------------------------------------------------------------------

ORG = "00D5j000000AbCd"
APP = "0H45j000000CzWq"  # a connected app (CONNECTED_APP_ID)

# Credentials shaped as DOMAIN.md §3 describes them (synthetic, never issued).
OPENAI_KEY = "sk-proj-Q7vXk2LmN9pR4sT8wY1zB6cD3fG5hJ0aE2iK7oU9qW4eR8tY"
ANTHROPIC_KEY = "sk-ant-api03-Zx9Wv8Ut7Sr6Qp5On4Ml3Kj2Ih1Gf0EdCbAZx9Wv8Ut7Sr6Qp5On4Ml3Kj2Ih1Gf0EdCbA"
EXPORT_KEY = "sk-proj-Lm3Nq8Rs1Tv6Wx9Yz2Ab5Cd8Ef1Gh4Ij7Kl0Mn3Op6Qr9St2Uv5Wx8Yz1"
AWS_KEY_ID = "AKIAQX7VK2LMN9PR4ST8"
SENDGRID_KEY = "SG.nR4tV8xZ2bD6fH0jL3mP7q.Wk9Yc2Ea5Gi8Ko1Mq4Su7Ww0Ay3Cb6Ee9Gg2Ii5K"


def sfid18(id15: str) -> str:
    """The 18-character form of a Salesforce ID (DOMAIN.md §2): per 5-character chunk, bit i is
    set when character i is an uppercase letter, mapped through A-Z0-5."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for c in range(3):
        chunk = id15[c * 5:c * 5 + 5]
        suffix += alphabet[sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")]
    return id15 + suffix


assert sfid18("0055j00000AT6I1") == "0055j00000AT6I1AAL"  # the documented check value


def _q(value: object) -> str:
    """One EventLogFile cell: always quoted, a quote inside doubled."""
    return '"' + str(value).replace('"', '""') + '"'


def elf_csv(columns: list[str], rows: list[dict]) -> str:
    """An EventLogFile CSV: the header, then one row per dict (missing columns left empty)."""
    lines = [",".join(_q(c) for c in columns)]
    lines += [",".join(_q(r.get(c, "")) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def elf_common(event_type: str, ts: datetime, user15: str, n: int) -> dict:
    """The columns every EventLogFile row has (DOMAIN.md §1)."""
    return {
        "EVENT_TYPE": event_type,
        "TIMESTAMP": ts.strftime("%Y%m%d%H%M%S.") + f"{ts.microsecond // 1000:03d}",
        "TIMESTAMP_DERIVED": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
        "REQUEST_ID": f"4exLF{n:011d}",
        "ORGANIZATION_ID": ORG,
        "USER_ID": user15,
        "USER_ID_DERIVED": sfid18(user15),
        "RUN_TIME": "95", "CPU_TIME": "40",
        "SESSION_KEY": "Qx7k2mZ9vB4nL1sD", "LOGIN_KEY": "bWl3TQp8Rz2Kf6Hj",
        "CLIENT_IP": "198.51.100.23",
    }


REST_API_COLUMNS = [
    "EVENT_TYPE", "TIMESTAMP", "REQUEST_ID", "ORGANIZATION_ID", "USER_ID", "RUN_TIME", "CPU_TIME", "URI",
    "SESSION_KEY", "LOGIN_KEY", "METHOD", "ENTITY_NAME", "CONNECTED_APP_ID", "MEDIA_TYPE", "NUMBER_FIELDS",
    "ROWS_PROCESSED", "EXCEPTION_MESSAGE", "STATUS_CODE", "TIMESTAMP_DERIVED", "USER_ID_DERIVED", "CLIENT_IP",
    "URI_ID_DERIVED",
]
REPORT_EXPORT_COLUMNS = [
    "EVENT_TYPE", "TIMESTAMP", "REQUEST_ID", "ORGANIZATION_ID", "USER_ID", "RUN_TIME", "CPU_TIME", "URI",
    "SESSION_KEY", "LOGIN_KEY", "CLIENT_INFO", "REPORT_DESCRIPTION", "TIMESTAMP_DERIVED", "USER_ID_DERIVED",
    "CLIENT_IP", "URI_ID_DERIVED",
]
BULK_RESULT_COLUMNS = [
    "EVENT_TYPE", "TIMESTAMP", "REQUEST_ID", "ORGANIZATION_ID", "USER_ID", "RUN_TIME", "CPU_TIME", "URI",
    "SESSION_KEY", "LOGIN_KEY", "JOB_ID", "BATCH_ID", "ENTITY_TYPE", "ROWS_PROCESSED", "TIMESTAMP_DERIVED",
    "USER_ID_DERIVED", "CLIENT_IP",
]
BULK_API_COLUMNS = [
    "EVENT_TYPE", "TIMESTAMP", "REQUEST_ID", "ORGANIZATION_ID", "USER_ID", "RUN_TIME", "CPU_TIME", "URI",
    "SESSION_KEY", "LOGIN_KEY", "JOB_ID", "BATCH_ID", "ENTITY_TYPE", "OPERATION_TYPE", "MESSAGE",
    "NUMBER_FAILURES", "ROWS_PROCESSED", "TIMESTAMP_DERIVED", "USER_ID_DERIVED", "CLIENT_IP",
]
APEX_CALLOUT_COLUMNS = [
    "EVENT_TYPE", "TIMESTAMP", "REQUEST_ID", "ORGANIZATION_ID", "USER_ID", "RUN_TIME", "CPU_TIME", "URI",
    "SESSION_KEY", "LOGIN_KEY", "TYPE", "METHOD", "SUCCESS", "STATUS_CODE", "TIME", "REQUEST_SIZE",
    "RESPONSE_SIZE", "URL", "TIMESTAMP_DERIVED", "USER_ID_DERIVED", "CLIENT_IP", "URI_ID_DERIVED",
]


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)


# -- scanning and reading back ------------------------------------------------------------------


@dataclass
class Scanned:
    db: Path
    logs: Path
    summary: object

    def path(self, name: str) -> str:
        return str(self.logs / name)

    def alerts(self, pattern: str | None = None) -> list[dict]:
        sql = ("SELECT alert_id, pattern, severity, summary, evidence, actor_hash, dest_vendor, dest_region"
               " FROM alerts")
        rows = read_rows(self.db, sql + (" WHERE pattern = ?" if pattern else "") + " ORDER BY alert_id",
                         [pattern] if pattern else [])
        keys = ("alert_id", "pattern", "severity", "summary", "evidence", "actor_hash", "dest_vendor", "dest_region")
        out = [dict(zip(keys, r)) for r in rows]
        for a in out:
            a["evidence"] = json.loads(a["evidence"])
        return out

    def event_ids(self, name: str, kind: str, lines) -> list[int]:
        """Ids of the events of ``kind`` stored for ``lines`` (1-based) of log ``name``."""
        lines = list(lines)
        rows = read_rows(self.db, "SELECT line, event_id FROM events WHERE source_path = ? AND kind = ?"
                                  " AND list_contains(?, line) ORDER BY event_id",
                         [self.path(name), kind, lines])
        assert sorted(line for line, _ in rows) == sorted(lines), (name, kind, rows)
        return [i for _, i in rows]

    def finding_ids(self, entity: str, raw: str) -> list[int]:
        return [i for (i,) in read_rows(self.db, "SELECT finding_id FROM findings WHERE entity = ? AND raw_value = ?"
                                                 " ORDER BY finding_id", [entity, raw])]

    def assert_no_raw_values(self, *extra: str) -> None:
        """No alert's summary or evidence repeats a raw value the scan found (or one of ``extra``:
        the user ids the alerts must only name masked)."""
        raws = {r for (r,) in read_rows(self.db, "SELECT DISTINCT raw_value FROM findings") if r}
        raws |= set(extra)
        for a in self.alerts():
            text = a["summary"] + "\n" + json.dumps(a["evidence"], ensure_ascii=False)
            leaked = sorted(r for r in raws if r in text)
            assert not leaked, (a["pattern"], a["summary"], leaked)


def scan(tmp_path: Path, files: dict[str, str], toml: str = "") -> Scanned:
    """Write ``files`` under tmp_path/logs (names may hold folders) and scan them with the
    settings in ``toml`` (only those: no environment variables, no ./leakwatch.toml)."""
    logs = tmp_path / "logs"
    for name, text in files.items():
        p = logs / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    cfg = tmp_path / "leakwatch.toml"
    cfg.write_text(toml, encoding="utf-8")
    db = tmp_path / "lw.duckdb"
    summary = scan_paths([str(logs)], db, config=load_config(cfg, env={}), store_raw=True)
    for f in summary.files:
        assert f.parse_problems == 0, (f.path, f.parse_samples)
    return Scanned(db, logs, summary)


def patterns_of(s: Scanned) -> list[str]:
    return sorted(a["pattern"] for a in s.alerts())


# -- P1_key_exposed -----------------------------------------------------------------------------

SUPPORT_BOT_LOG = "support-bot-2024-03-11.jsonl"


def test_p1_ai_keys_in_an_app_log_are_high_one_alert_per_key(tmp_path):
    log = jsonl(
        # A debug dump of the LLM client's settings at start-up...
        {"ts": "2024-03-11T10:00:00.120Z", "level": "debug", "service": "support-bot", "msg": "llm client ready",
         "config": {"provider": "openai", "model": "gpt-4o", "api_key": OPENAI_KEY, "timeout_s": 30}},
        {"ts": "2024-03-11T10:00:04.310Z", "level": "info", "service": "support-bot", "msg": "ticket triaged",
         "ticket": "T-48213", "latency_ms": 812},
        # ...an outbound request logged with its headers (Anthropic takes the key in x-api-key)...
        {"ts": "2024-03-11T10:05:00.000Z", "level": "debug", "service": "support-bot", "msg": "http request",
         "url": "https://api.anthropic.com/v1/messages",
         "headers": {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}},
        # ...and the OpenAI key again when the client is rebuilt after a reload.
        {"ts": "2024-03-11T11:30:00.000Z", "level": "debug", "service": "support-bot", "msg": "llm client ready",
         "config": {"provider": "openai", "model": "gpt-4o-mini", "api_key": OPENAI_KEY, "timeout_s": 30}},
    )
    s = scan(tmp_path, {SUPPORT_BOT_LOG: log})
    p1 = {a["evidence"]["entity"]: a for a in s.alerts("P1_key_exposed")}
    assert sorted(p1) == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]

    openai = p1["OPENAI_API_KEY"]
    assert openai["severity"] == "high"  # one file, in logs: not an exported setting
    assert openai["evidence"]["findings"] == s.finding_ids("OPENAI_API_KEY", OPENAI_KEY)
    assert len(openai["evidence"]["findings"]) == 2
    assert openai["evidence"]["n_lines"] == 2 and openai["evidence"]["n_files"] == 1
    assert openai["evidence"]["files"] == [s.path(SUPPORT_BOT_LOG)]
    assert openai["evidence"]["fields"] == ["config.api_key"]
    assert openai["evidence"]["in_exported_setting"] is False
    assert openai["evidence"]["first_ts"] == "2024-03-11T10:00:00.120000Z"
    assert openai["evidence"]["last_ts"] == "2024-03-11T11:30:00Z"
    assert openai["dest_vendor"] == "OpenAI"  # the record names no destination: the key's vendor
    assert openai["summary"].startswith("OPENAI_API_KEY sk-proj-…[56] exposed in logs: 2 lines in 1 file")

    anthropic = p1["ANTHROPIC_API_KEY"]
    assert anthropic["severity"] == "high"
    assert anthropic["evidence"]["findings"] == s.finding_ids("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    assert anthropic["evidence"]["fields"] == ["headers.x-api-key"]
    assert anthropic["dest_vendor"] == "Anthropic"  # the destination of the logged request
    assert anthropic["summary"].startswith("ANTHROPIC_API_KEY sk-ant-api03-…")
    s.assert_no_raw_values(OPENAI_KEY, ANTHROPIC_KEY, OPENAI_KEY[8:], ANTHROPIC_KEY[13:])


def test_p1_ai_key_in_an_exported_custom_setting_is_critical(tmp_path):
    # A Data Loader export of a hierarchy custom setting (every value quoted): the org default row
    # holds the key, a profile-level row leaves it empty.
    export = (
        '"Id","Name","SetupOwnerId","OpenAI_API_Key__c","Default_Model__c","LastModifiedDate"\n'
        f'"a0B5j00000XyZ12EAB","AI Settings (Organization)","{ORG}","{EXPORT_KEY}","gpt-4o",'
        '"2024-03-08T09:14:22.000Z"\n'
        '"a0B5j00000XyZ13EAB","AI Settings (Profile)","00e5j000001QkTzAAK","","gpt-4o-mini",'
        '"2024-03-08T09:15:02.000Z"\n'
    )
    s = scan(tmp_path, {"AI_Settings__c_export.csv": export})
    [alert] = s.alerts("P1_key_exposed")
    assert alert["severity"] == "critical"  # everyone with export rights holds the org's key
    ev = alert["evidence"]
    assert ev["entity"] == "OPENAI_API_KEY"
    assert ev["in_exported_setting"] is True
    assert ev["fields"] == ["OpenAI_API_Key__c"]
    assert ev["findings"] == s.finding_ids("OPENAI_API_KEY", EXPORT_KEY) and len(ev["findings"]) == 1
    assert ev["files"] == [s.path("AI_Settings__c_export.csv")] and ev["n_lines"] == 1
    assert "exposed in an exported custom setting: 1 line in 1 file" in alert["summary"]
    assert "sk-proj-…" in alert["summary"]
    s.assert_no_raw_values(EXPORT_KEY, EXPORT_KEY[8:])


def test_p1_near_misses_non_ai_secrets_and_fakes_that_fail_the_rule(tmp_path):
    log = jsonl(
        # Secrets, but not of an AI service: an AWS key id and a SendGrid key under a plain
        # api_key (the field names no AI service)...
        {"ts": "2024-03-11T10:00:00Z", "level": "debug", "service": "mailer", "msg": "boto3 session",
         "aws": {"access_key_id": AWS_KEY_ID, "region": "eu-central-1"}},
        {"ts": "2024-03-11T10:00:01Z", "level": "debug", "service": "mailer", "msg": "smtp relay ready",
         "smtp": {"provider": "sendgrid", "api_key": SENDGRID_KEY}},
        # ...and OpenAI-looking values the rule does not take: the docs' placeholder and a
        # truncated key (sk-proj- needs 20 more characters).
        {"ts": "2024-03-11T10:00:02Z", "level": "warn", "service": "support-bot", "msg": "config default used",
         "openai": {"api_key": "sk-your-key-here"}},
        {"ts": "2024-03-11T10:00:03Z", "level": "warn", "service": "support-bot", "msg": "key rejected",
         "openai": {"api_key_prefix": "sk-proj-4fQ9"}},
    )
    export = (
        '"Id","Name","SetupOwnerId","AWS_Access_Key__c","Region__c"\n'
        f'"a0C5j00000Kp7QaEAJ","S3 Archive (Organization)","{ORG}","{AWS_KEY_ID}","eu-central-1"\n'
    )
    s = scan(tmp_path, {"mailer.jsonl": log, "S3_Archive__c_export.csv": export})
    # The scan saw the secrets: findings in the log and in the exported setting's __c column...
    found = read_rows(s.db, "SELECT entity, field_path FROM findings ORDER BY source_path, line")
    assert ("AWS_ACCESS_KEY_ID", "AWS_Access_Key__c") in found
    assert ("AWS_ACCESS_KEY_ID", "aws.access_key_id") in found
    assert ("API_KEY", "smtp.api_key") in found
    assert not [e for e, _ in found if e in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")]
    # ...but none is an exposed AI key.
    assert s.alerts("P1_key_exposed") == []
    assert patterns_of(s) == []


# -- P1_gateway_bypass near miss ----------------------------------------------------------------

GATEWAY_TOML = """
[egress]
# The organisation's own Azure OpenAI resource is the approved route...
approved_gateways = ["acme-ai.openai.azure.com"]
# ...and the LLM proxy's own logs show the proxy calling the vendors on everyone's behalf.
gateway_sources = ["*/ai-gateway/*.jsonl"]
"""
AZURE_URL = "https://acme-ai.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-02-01"
OPENAI_URL = "https://api.openai.com/v1/chat/completions"


def _gateway_logs() -> dict[str, str]:
    callout = elf_csv(APEX_CALLOUT_COLUMNS, [
        {**elf_common("ApexCallout", datetime(2024, 3, 11, 16, 10, tzinfo=UTC), "0055j00000AT6I1", 1),
         "TYPE": "REST", "METHOD": "POST", "SUCCESS": "1", "STATUS_CODE": "200", "TIME": "643",
         "REQUEST_SIZE": "2048", "RESPONSE_SIZE": "1388", "URL": AZURE_URL, "CLIENT_IP": "Salesforce.com IP"},
    ])
    app = jsonl(
        # Through the approved Azure resource...
        {"ts": "2024-03-11T16:20:00.000Z", "level": "info", "service": "case-summarizer", "msg": "llm request",
         "url": AZURE_URL, "status": 200, "latency_ms": 912},
        # ...through the LLM proxy: the app only knows the proxy's URL...
        {"ts": "2024-03-11T16:21:00.000Z", "level": "info", "service": "case-summarizer", "msg": "llm request",
         "url": "https://llm-proxy.acme.internal/v1/chat/completions", "model": "gpt-4o", "status": 200},
        # ...and one service that calls OpenAI directly: the control, it must be flagged.
        {"ts": "2024-03-11T16:22:00.000Z", "level": "info", "service": "billing-bot", "msg": "llm request",
         "url": OPENAI_URL, "status": 200, "latency_ms": 640},
    )
    proxy = jsonl(
        {"time": "2024-03-11T16:21:00.350Z", "route": "chat", "consumer": "case-summarizer", "method": "POST",
         "upstream_url": OPENAI_URL, "status": 200, "latency_ms": 601},
        {"time": "2024-03-11T16:24:10.002Z", "route": "messages", "consumer": "case-summarizer", "method": "POST",
         "upstream_url": "https://api.anthropic.com/v1/messages", "status": 200, "latency_ms": 1210},
    )
    return {"EventLogFile_ApexCallout_2024-03-11.csv": callout, "apps/case-summarizer.jsonl": app,
            "ai-gateway/proxy-2024-03-11.jsonl": proxy}


def test_p1_gateway_bypass_near_miss_calls_through_the_approved_gateway(tmp_path):
    s = scan(tmp_path, _gateway_logs(), GATEWAY_TOML)
    calls = read_rows(s.db, "SELECT source_path, line, url_host, via_gateway FROM events WHERE kind = 'ai_call'"
                            " ORDER BY source_path, line")
    rel = [(Path(p).relative_to(s.logs).as_posix(), line, host, via) for p, line, host, via in calls]
    assert rel == [
        ("EventLogFile_ApexCallout_2024-03-11.csv", 2, "acme-ai.openai.azure.com", True),
        ("ai-gateway/proxy-2024-03-11.jsonl", 1, "api.openai.com", True),
        ("ai-gateway/proxy-2024-03-11.jsonl", 2, "api.anthropic.com", True),
        ("apps/case-summarizer.jsonl", 1, "acme-ai.openai.azure.com", True),
        ("apps/case-summarizer.jsonl", 3, "api.openai.com", False),
    ]  # the call to the proxy's own host (line 2) is no AI call at all
    # Only the direct call is a bypass.
    [alert] = s.alerts("P1_gateway_bypass")
    assert alert["evidence"]["events"] == s.event_ids("apps/case-summarizer.jsonl", "ai_call", [3])
    assert alert["evidence"]["apps"] == ["billing-bot"] and alert["evidence"]["url_host"] == "api.openai.com"
    assert alert["summary"].startswith("app billing-bot called api.openai.com")
    assert patterns_of(s) == ["P1_gateway_bypass"]


def test_without_the_gateway_settings_the_same_calls_are_bypasses(tmp_path):
    """The near miss above is quiet because of [egress], not because the calls went unseen."""
    s = scan(tmp_path, _gateway_logs())
    hosts = sorted(a["evidence"]["url_host"] for a in s.alerts("P1_gateway_bypass"))
    # ApexCallout caller, the app, and the proxy (one caller, two vendors); billing-bot as before.
    assert hosts == ["acme-ai.openai.azure.com", "acme-ai.openai.azure.com", "api.anthropic.com",
                     "api.openai.com", "api.openai.com"]
    s.assert_no_raw_values("0055j00000AT6I1", sfid18("0055j00000AT6I1"))


# -- P4_cdn_region ------------------------------------------------------------------------------

CDN_TOML = """
[residency]
allowed_jurisdictions = ["EU"]

[cdn]
ai_paths = ["^/assistant/", "^/api/genai/"]
"""

# A CDN's access log in the combined format, with the trailing fields CDN variants add: the
# client's X-Forwarded-For, the cache status as a bare word or key, the edge as pop=, edge= or
# x-edge-location= (CloudFront's name), the Host header.
CDN_LOG = (
    # 1: AI answer served from Ashburn (US) — with the customer's email in the query string.
    '203.0.113.9 - - [11/Mar/2024:16:00:01 +0000] "GET /assistant/answer?session=af31c9&email=jane.doe%40example.com'
    ' HTTP/1.1" 200 5120 "https://shop.example.com/help" "Mozilla/5.0 (Windows NT 10.0; Win64; x64)" "81.2.69.160"'
    " HIT pop=IAD89-C1 host=shop.example.com rt=0.002\n"
    # 2: the GenAI API, from another US edge, CloudFront's field names.
    '198.51.100.23 - - [11/Mar/2024:16:00:07 +0000] "POST /api/genai/summary HTTP/2.0" 200 2311 "-" "okhttp/4.12.0"'
    " x-edge-location=IAD66-P2 x-cache=Miss host=shop.example.com\n"
    # 3: AI answer from Frankfurt: allowed.
    '192.0.2.44 - - [11/Mar/2024:16:00:09 +0000] "GET /assistant/answer?session=b10c22 HTTP/1.1" 200 4980 "-"'
    ' "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3)" edge=FRA50 cache=HIT host=shop.example.com\n'
    # 4: not AI content, from the US edge: not P4's business.
    '192.0.2.45 - - [11/Mar/2024:16:00:10 +0000] "GET /img/logo.png HTTP/1.1" 200 5120 "-" "Mozilla/5.0"'
    " pop=IAD89-C1 cache=HIT host=shop.example.com\n"
    # 5: AI answer from an edge the table cannot place (Hanoi).
    '192.0.2.46 - - [11/Mar/2024:16:00:12 +0000] "GET /assistant/answer HTTP/1.1" 200 4710 "-" "Mozilla/5.0"'
    " pop=HAN50-C1 cache=MISS host=shop.example.com\n"
)


def test_p4_ai_content_served_from_a_us_edge_and_an_unknown_edge(tmp_path):
    s = scan(tmp_path, {"cdn/shop-access-2024-03-11.log": CDN_LOG}, CDN_TOML)
    assert [f.fmt for f in s.summary.files] == ["combined"]
    # Only the AI-content lines became CDN events, with their edge and cache status.
    cdn = read_rows(s.db, "SELECT line, url_host, url_path, edge_location, cache_status FROM events"
                          " WHERE kind = 'cdn_ai' ORDER BY line")
    assert cdn == [
        (1, "shop.example.com", "/assistant/answer", "IAD89-C1", "HIT"),
        (2, "shop.example.com", "/api/genai/summary", "IAD66-P2", "Miss"),
        (3, "shop.example.com", "/assistant/answer", "FRA50", "HIT"),
        (5, "shop.example.com", "/assistant/answer", "HAN50-C1", "MISS"),
    ]
    p4 = {a["evidence"]["jurisdiction"]: a for a in s.alerts("P4_cdn_region")}
    assert sorted(p4) == ["UNKNOWN", "US"]

    us = p4["US"]
    assert us["severity"] == "high"
    assert us["dest_region"] == "US"
    ev = us["evidence"]
    assert ev["events"] == s.event_ids("cdn/shop-access-2024-03-11.log", "cdn_ai", [1, 2])
    assert ev["edges"] == {"IAD66-P2": 1, "IAD89-C1": 1} and ev["n_hits"] == 2
    assert ev["cache_status"] == {"HIT": 1, "Miss": 1}
    assert ev["url_host"] == "shop.example.com" and ev["allowed_jurisdictions"] == ["EU"]
    assert ev["first_ts"] == "2024-03-11T16:00:01Z" and ev["last_ts"] == "2024-03-11T16:00:07Z"
    assert us["summary"].startswith(
        "AI-generated content from shop.example.com served in US (allowed: EU) by edges IAD66-P2, IAD89-C1: 2 responses")

    unknown = p4["UNKNOWN"]
    assert unknown["severity"] == "medium"  # most likely a gap in the edge table
    assert unknown["evidence"]["events"] == s.event_ids("cdn/shop-access-2024-03-11.log", "cdn_ai", [5])
    assert "from edges of unknown jurisdiction" in unknown["summary"]
    # Client IPs and the email in the query string stay out of the alerts.
    s.assert_no_raw_values("jane.doe%40example.com", "jane.doe@example.com", "203.0.113.9", "81.2.69.160")
    assert patterns_of(s) == ["P4_cdn_region", "P4_cdn_region"]


def test_p4_near_misses_eu_and_uk_edges_and_non_ai_paths(tmp_path):
    log = (
        '203.0.113.10 - - [11/Mar/2024:17:00:01 +0000] "GET /assistant/answer?session=c1 HTTP/1.1" 200 5120 "-"'
        ' "Mozilla/5.0" HIT pop=FRA56-P5 host=shop.example.com\n'
        '203.0.113.11 - - [11/Mar/2024:17:00:02 +0000] "GET /recommendations/for-you HTTP/1.1" 200 812 "-"'
        ' "Mozilla/5.0" x-edge-location=AMS54-C1 x-cache=Hit host=shop.example.com\n'
        '203.0.113.12 - - [11/Mar/2024:17:00:03 +0000] "GET /assistant/answer?session=c3 HTTP/1.1" 200 4711 "-"'
        ' "Mozilla/5.0" edge=LHR61-P3 cache=MISS host=shop.example.com\n'
        # US edges, but for content that is not AI-generated (an /assistant/ path not at the start).
        '203.0.113.13 - - [11/Mar/2024:17:00:04 +0000] "GET /static/assistant/avatar.svg HTTP/1.1" 200 900 "-"'
        ' "Mozilla/5.0" pop=IAD89-C1 cache=HIT host=shop.example.com\n'
        '203.0.113.14 - - [11/Mar/2024:17:00:05 +0000] "POST /checkout HTTP/2.0" 302 0 "-" "Mozilla/5.0"'
        " pop=JFK6-C2 cache=BYPASS host=shop.example.com\n"
    )
    toml = '[residency]\nallowed_jurisdictions = ["EU", "UK"]\n'  # default ai_paths
    s = scan(tmp_path, {"cdn/shop-access-2024-03-11.log": log}, toml)
    # The AI lines were seen, with their edges...
    assert read_rows(s.db, "SELECT line, edge_location FROM events WHERE kind = 'cdn_ai' ORDER BY line") == [
        (1, "FRA56-P5"), (2, "AMS54-C1"), (3, "LHR61-P3"),
    ]
    # ...and all of them stayed within the allowed jurisdictions.
    assert s.alerts("P4_cdn_region") == []
    assert patterns_of(s) == []


# CloudFront standard logs (W3C extended format, tab-separated, one #Fields directive) and
# Cloudflare Logpush JSON: the two CDN logs a shop most likely has, in their own formats.
CLOUDFRONT_FIELDS = ("date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) "
                     "cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header "
                     "cs-protocol cs-bytes time-taken")


def _cloudfront(rows: list[tuple[str, str, str, str, str]]) -> str:
    out = ["#Version: 1.0", "#Fields: " + CLOUDFRONT_FIELDS]
    for time, edge, path, query, cache in rows:
        out.append("\t".join([
            "2024-03-11", time, edge, "5120", "203.0.113.9", "GET", "d111111abcdef8.cloudfront.net", path, "200", "-",
            "Mozilla/5.0%20(Windows%20NT%2010.0)", query, "-", cache, "SOX4xwn4XV6Q4rgb7XiVGOH==", "shop.example.com",
            "https", "310", "0.002"]))
    return "\n".join(out) + "\n"


def test_p4_from_a_cloudfront_standard_log(tmp_path):
    log = _cloudfront([
        ("16:00:01", "IAD89-C1", "/assistant/answer", "session=af31c9&email=jane.doe%40example.com", "Hit"),
        ("16:00:02", "FRA56-P1", "/assistant/answer", "session=b10c22", "Miss"),  # EU: allowed
        ("16:00:03", "NRT57-P2", "/img/logo.png", "-", "Hit"),  # not AI content
        ("16:00:04", "NRT57-P2", "/api/genai/summary", "-", "RefreshHit"),
    ])
    s = scan(tmp_path, {"cdn/E2ABCDEF.2024-03-11-16.a1b2c3.log": log}, CDN_TOML)
    assert [f.fmt for f in s.summary.files] == ["w3c"]
    assert read_rows(s.db, "SELECT line, url_host, url_path, edge_location, cache_status, status FROM events"
                           " WHERE kind = 'cdn_ai' ORDER BY line") == [
        (3, "shop.example.com", "/assistant/answer", "IAD89-C1", "Hit", 200),
        (4, "shop.example.com", "/assistant/answer", "FRA56-P1", "Miss", 200),
        (6, "shop.example.com", "/api/genai/summary", "NRT57-P2", "RefreshHit", 200),
    ]
    p4 = {a["evidence"]["jurisdiction"]: a for a in s.alerts("P4_cdn_region")}
    assert sorted(p4) == ["JP", "US"]
    assert p4["US"]["evidence"]["events"] == s.event_ids("cdn/E2ABCDEF.2024-03-11-16.a1b2c3.log", "cdn_ai", [3])
    assert p4["US"]["evidence"]["first_ts"] == "2024-03-11T16:00:01Z"
    # The email in the query string is a finding in its own field, masked.
    assert read_rows(s.db, "SELECT line, field_path FROM findings WHERE entity = 'EMAIL_ADDRESS'") == [(3, "query.email")]
    s.assert_no_raw_values("jane.doe%40example.com", "jane.doe@example.com")


def test_p4_cloudfront_near_miss_eu_edges_only(tmp_path):
    log = _cloudfront([("17:00:01", "FRA56-P1", "/assistant/answer", "-", "Hit"),
                       ("17:00:02", "AMS54-C1", "/api/genai/summary", "-", "Miss"),
                       ("17:00:03", "IAD89-C1", "/static/assistant/avatar.svg", "-", "Hit")])  # not AI content
    s = scan(tmp_path, {"cdn/E2ABCDEF.2024-03-11-17.d4e5f6.log": log}, CDN_TOML)
    assert read_rows(s.db, "SELECT line, edge_location FROM events WHERE kind = 'cdn_ai' ORDER BY line") == [
        (3, "FRA56-P1"), (4, "AMS54-C1")]
    assert s.alerts("P4_cdn_region") == []


def _cloudflare(colo: str, path: str, cache: str, second: int) -> str:
    return json.dumps({
        "ClientIP": "203.0.113.9", "ClientRequestHost": "shop.example.com", "ClientRequestMethod": "GET",
        "ClientRequestPath": path, "ClientRequestURI": path + "?session=af31c9", "CacheCacheStatus": cache,
        "EdgeColoCode": colo, "EdgeResponseStatus": 200, "EdgeStartTimestamp": f"2024-03-11T16:00:{second:02d}Z",
        "RayID": "7f1e2d3c4b5a6978",
    }) + "\n"


def test_p4_from_cloudflare_logpush_json(tmp_path):
    log = (_cloudflare("ORD", "/assistant/answer", "hit", 1) + _cloudflare("CDG", "/assistant/answer", "miss", 2)
           + _cloudflare("ORD", "/img/logo.png", "hit", 3))
    s = scan(tmp_path, {"cdn/http_requests/20240311/20240311T160000Z_20240311T160100Z_0a1b2c.log": log}, CDN_TOML)
    assert read_rows(s.db, "SELECT line, url_host, url_path, edge_location, cache_status, status FROM events"
                           " WHERE kind = 'cdn_ai' ORDER BY line") == [
        (1, "shop.example.com", "/assistant/answer", "ORD", "hit", 200),
        (2, "shop.example.com", "/assistant/answer", "CDG", "miss", 200),
    ]
    assert [a["evidence"]["jurisdiction"] for a in s.alerts("P4_cdn_region")] == ["US"]


# -- bulk_export --------------------------------------------------------------------------------

USER_A, USER_B, USER_C = "0055j00000AT6I1", "0055j00000BX9K2", "0055j00000CQ1X3"
BULK_TOML = "[patterns]\nbulk_min_rows = 500\n"


def _bulk_result(ts: datetime, user: str, n: int, entity: str, rows: int) -> dict:
    job, batch = f"7505j00000Xy{n:03d}", f"7515j00000Zq{n:03d}"
    return {**elf_common("BulkApiResult", ts, user, n), "RUN_TIME": "900", "CPU_TIME": "110",
            "URI": f"/services/async/60.0/job/{job}/batch/{batch}/result/7525j00000Ab{n:03d}",
            "JOB_ID": job, "BATCH_ID": batch, "ENTITY_TYPE": entity, "ROWS_PROCESSED": rows,
            "CLIENT_IP": "34.226.36.49"}


def _report_export(ts: datetime, user: str, n: int, report15: str, description: str) -> dict:
    return {**elf_common("ReportExport", ts, user, n), "RUN_TIME": "1200", "CPU_TIME": "310",
            "URI": f"/{report15}", "CLIENT_INFO": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "REPORT_DESCRIPTION": description, "URI_ID_DERIVED": sfid18(report15), "CLIENT_IP": "81.2.69.160"}


def test_bulk_export_one_alert_per_user_per_day(tmp_path):
    day1, day2 = datetime(2024, 3, 11, tzinfo=UTC), datetime(2024, 3, 12, tzinfo=UTC)
    results = elf_csv(BULK_RESULT_COLUMNS, [
        _bulk_result(day1 + timedelta(hours=9, minutes=12), USER_A, 1, "Contact", 48210),
        _bulk_result(day1 + timedelta(hours=9, minutes=40), USER_A, 2, "Contact", 1200),
        _bulk_result(day2 + timedelta(hours=8), USER_A, 3, "Lead", 600),  # the next day: its own alert
    ])
    reports = elf_csv(REPORT_EXPORT_COLUMNS, [
        _report_export(day1 + timedelta(hours=14, minutes=30), USER_B, 4, "00O5j000000Kq9A", "All Contacts with Email"),
        _report_export(day1 + timedelta(hours=14, minutes=35), USER_B, 5, "00O5j000000Kq9B", "Leads by Region"),
    ])
    s = scan(tmp_path, {"EventLogFile_BulkApiResult_2024-03-11.csv": results,
                        "EventLogFile_ReportExport_2024-03-11.csv": reports}, BULK_TOML)
    alerts = s.alerts("bulk_export")
    by = {(a["evidence"]["day"], *a["evidence"]["types"]): a for a in alerts}  # one type a day here
    assert sorted(by) == [("2024-03-11", "BulkApiResult"), ("2024-03-11", "ReportExport"),
                          ("2024-03-12", "BulkApiResult")]

    a_day1 = by[("2024-03-11", "BulkApiResult")]
    assert a_day1["severity"] == "high"  # known rows reach bulk_min_rows
    ev = a_day1["evidence"]
    assert ev["events"] == s.event_ids("EventLogFile_BulkApiResult_2024-03-11.csv", "bulk", [2, 3])
    assert ev["n_exports"] == 2 and ev["rows"] == 49410 and ev["objects"] == ["Contact"]
    assert ev["types"] == {"BulkApiResult": 2}
    assert ev["first_ts"] == "2024-03-11T09:12:00Z" and ev["last_ts"] == "2024-03-11T09:40:00Z"
    assert a_day1["summary"] == ("user 00**************AL exported data on 2024-03-11: 2 exports of Contact, "
                                 "49,410 rows (BulkApiResult x2)")

    a_day2 = by[("2024-03-12", "BulkApiResult")]
    assert a_day2["severity"] == "high"  # 600 >= the configured 500 (the default 1000 would drop it)
    assert a_day2["evidence"]["events"] == s.event_ids("EventLogFile_BulkApiResult_2024-03-11.csv", "bulk", [4])
    assert a_day2["evidence"]["rows"] == 600 and a_day2["evidence"]["objects"] == ["Lead"]
    assert a_day2["actor_hash"] == a_day1["actor_hash"]  # USER_ID and USER_ID_DERIVED are one user

    b = by[("2024-03-11", "ReportExport")]
    assert b["severity"] == "medium"  # ReportExport rows carry no row count
    assert b["evidence"]["events"] == s.event_ids("EventLogFile_ReportExport_2024-03-11.csv", "report_export", [2, 3])
    assert b["evidence"]["n_exports"] == 2 and b["evidence"]["rows"] is None
    assert b["evidence"]["types"] == {"ReportExport": 2}
    assert "2 exports, row count unknown (ReportExport x2)" in b["summary"]
    assert b["actor_hash"] != a_day1["actor_hash"]

    s.assert_no_raw_values(USER_A, USER_B, sfid18(USER_A), sfid18(USER_B))
    assert patterns_of(s) == ["bulk_export"] * 3


def test_bulk_export_near_miss_small_download_and_bulk_jobs(tmp_path):
    day = datetime(2024, 3, 11, tzinfo=UTC)
    results = elf_csv(BULK_RESULT_COLUMNS, [
        _bulk_result(day + timedelta(hours=11), USER_C, 1, "Lead", 200),  # known to be below 500
        _bulk_result(day + timedelta(hours=11, minutes=5), USER_C, 2, "Lead", 499),
    ])
    # A Bulk API query job is not a download of its results (that is a BulkApiResult row).
    jobs = elf_csv(BULK_API_COLUMNS, [
        {**elf_common("BulkApi", day + timedelta(hours=12), USER_A, 3), "URI": "/services/async/60.0/job",
         "JOB_ID": "7505j00000Xy9Zz", "BATCH_ID": "7515j00000Zq9Yy", "ENTITY_TYPE": "Contact",
         "OPERATION_TYPE": "query", "MESSAGE": "", "NUMBER_FAILURES": "0", "ROWS_PROCESSED": "50000"},
    ])
    s = scan(tmp_path, {"EventLogFile_BulkApiResult_2024-03-11.csv": results,
                        "EventLogFile_BulkApi_2024-03-11.csv": jobs}, BULK_TOML)
    # The rows were read, with their counts...
    assert read_rows(s.db, "SELECT event_type, rows_processed FROM events WHERE kind = 'bulk'"
                           " ORDER BY rows_processed") == [
        ("BulkApiResult", 200), ("BulkApiResult", 499), ("BulkApi:query", 50000),
    ]
    # ...and none is an export worth an alert.
    assert s.alerts("bulk_export") == []
    assert patterns_of(s) == []


# -- api_volume ---------------------------------------------------------------------------------

T0 = datetime(2024, 3, 11, 0, 0, tzinfo=UTC)


def _rest_api_log(plan: dict[str, list[int]]) -> tuple[str, dict[tuple[str, int], list[int]]]:
    """A RestApi EventLogFile: ``plan[user][h]`` calls by ``user`` in hour ``h`` from T0, spread
    over the hour, all users' rows in time order. Returns the CSV and, per (user, hour), the file
    lines of those calls."""
    calls = []
    for user, per_hour in plan.items():
        for h, n in enumerate(per_hour):
            for i in range(n):
                calls.append((T0 + timedelta(hours=h, seconds=i * 3600 // n + 1), user, h))
    calls.sort()
    rows, lines = [], {}
    for n, (ts, user, h) in enumerate(calls):
        rows.append({**elf_common("RestApi", ts, user, n), "URI": "/services/data/v59.0/query",
                     "METHOD": "GET", "ENTITY_NAME": "Contact", "CONNECTED_APP_ID": APP,
                     "MEDIA_TYPE": "application/json", "NUMBER_FIELDS": "12", "ROWS_PROCESSED": "200",
                     "STATUS_CODE": "200"})
        lines.setdefault((user, h), []).append(n + 2)  # line 1 is the header
    return elf_csv(REST_API_COLUMNS, rows), lines


def test_api_volume_hour_far_above_the_users_median(tmp_path):
    user_e = "0055j00000EZ4M7"
    plan = {
        # 15 hours around 20 calls (median 20), then 80: 4x and >= 50 → medium.
        USER_A: [18, 19, 20, 21, 22] * 3 + [80],
        # 14 hours of 10, then 120: 12x, past 3² = 9x → high.
        user_e: [10] * 14 + [120],
    }
    csv, lines = _rest_api_log(plan)
    s = scan(tmp_path, {"EventLogFile_RestApi_2024-03-11.csv": csv})
    alerts = {a["evidence"]["baseline_median"]: a for a in s.alerts("api_volume")}
    assert sorted(alerts) == [10.0, 20.0]

    a = alerts[20.0]
    assert a["severity"] == "medium"
    ev = a["evidence"]
    assert ev["hour"] == "2024-03-11T15:00:00Z" and ev["n_events"] == 80
    assert ev["baseline_hours"] == 15 and ev["ratio"] == 4.0 and ev["baseline_days"] == 28
    assert ev["events"] == s.event_ids("EventLogFile_RestApi_2024-03-11.csv", "api", lines[(USER_A, 15)])
    assert ev["objects"] == {"Contact": 80} and ev["apps"] == [APP] and ev["rows"] == 80 * 200
    assert a["summary"] == (f"user 00**************AL (app {APP}) made 80 API calls in the hour from "
                            "2024-03-11T15:00:00Z, 4.0x its median hour (20 over 15 active hours)")

    e = alerts[10.0]
    assert e["severity"] == "high"
    assert e["evidence"]["hour"] == "2024-03-11T14:00:00Z" and e["evidence"]["n_events"] == 120
    assert e["evidence"]["ratio"] == 12.0 and e["evidence"]["baseline_hours"] == 14
    # 120 calls, at most 100 ids in the evidence: the lowest.
    assert e["evidence"]["events"] == s.event_ids("EventLogFile_RestApi_2024-03-11.csv", "api",
                                                  lines[(user_e, 14)])[:100]
    assert e["actor_hash"] != a["actor_hash"]

    s.assert_no_raw_values(USER_A, user_e, sfid18(USER_A), sfid18(user_e))
    assert patterns_of(s) == ["api_volume", "api_volume"]


def test_api_volume_near_misses_steady_small_and_new_callers(tmp_path):
    plan = {
        USER_B: [28, 30, 32, 30, 29, 31] * 3 + [45],  # steady: its busiest hour is 1.5x the median
        USER_C: [5] * 15 + [40],  # 8x its median, but fewer than 50 calls
        "0055j00000DR8L5": [10] * 11 + [60],  # 6x, but only 11 hours of history (12 needed)
    }
    csv, _ = _rest_api_log(plan)
    s = scan(tmp_path, {"EventLogFile_RestApi_2024-03-11.csv": csv})
    # Every call became an event...
    assert read_rows(s.db, "SELECT count(*) FROM events WHERE kind = 'api'") == [(sum(map(sum, plan.values())),)]
    # ...and no hour stands out enough.
    assert s.alerts("api_volume") == []
    assert patterns_of(s) == []


# -- regressions: gaps the tests above found, fixed ---------------------------------------------

def test_cdn_allowed_regions_from_the_config_are_used(tmp_path):
    log = ('203.0.113.10 - - [11/Mar/2024:17:00:01 +0000] "GET /assistant/answer HTTP/1.1" 200 5120 "-"'
           ' "Mozilla/5.0" HIT pop=AMS54-C1 host=shop.example.com\n')
    s = scan(tmp_path, {"cdn/a.log": log}, '[cdn]\nallowed_regions = ["FRA"]\n')
    assert read_rows(s.db, "SELECT edge_location FROM events WHERE kind='cdn_ai'") == [("AMS54-C1",)]
    assert [a["pattern"] for a in s.alerts()] == ["P4_cdn_region"]  # AMS is not FRA


def test_placeholder_key_that_fails_its_validator_is_no_exposed_key(tmp_path):
    s = scan(tmp_path, {"a.jsonl": jsonl({"ts": "2024-03-11T10:00:00Z", "msg": "config default used",
                                          "openai": {"api_key": "sk-proj-XXXXXXXXXXXXXXXXXXXXXXXXXXXX"}})})
    assert read_rows(s.db, "SELECT count(*) FROM findings WHERE score_validator < 0") == [(1,)]
    assert s.alerts("P1_key_exposed") == []


def test_relative_gateway_source_glob(tmp_path):
    proxy = jsonl({"time": "2024-03-11T16:21:00.350Z", "upstream_url": "https://api.openai.com/v1/chat/completions",
                   "status": 200})
    s = scan(tmp_path, {"ai-gateway/p.jsonl": proxy}, '[egress]\ngateway_sources = ["logs/ai-gateway/*.jsonl"]\n')
    assert read_rows(s.db, "SELECT via_gateway FROM events") == [(True,)]


def test_a_record_served_by_the_approved_gateway_is_no_bypass(tmp_path):
    line = jsonl({"time": "2024-03-11T16:21:00.350Z", "host": "ai-gw.example.com",
                  "upstream_url": "https://api.openai.com/v1/chat/completions", "status": 200})
    s = scan(tmp_path, {"edge/access.jsonl": line}, '[egress]\napproved_gateways = ["ai-gw.example.com"]\n')
    assert read_rows(s.db, "SELECT url_host, via_gateway FROM events") == [("api.openai.com", True)]
    assert s.alerts("P1_gateway_bypass") == []


def test_w3c_a_later_fields_directive_names_the_lines_after_it(tmp_path):
    # IIS writes its directives again after a restart; here the administrator added cs-username
    # and moved c-ip: the e-mail and the IP after the second #Fields get that block's names.
    log = (
        "#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n"
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query c-ip sc-status\n"
        "2024-03-11 16:00:05 10.0.0.4 GET /api/orders email=jane.doe@example.com 81.2.69.160 200\n"
        "#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n"
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query cs-username c-ip sc-status\n"
        "2024-03-11 17:00:05 10.0.0.4 GET /api/orders email=john.roe@example.com ACME\\jdoe 81.2.69.161 200\n"
    )
    s = scan(tmp_path, {"iis/u_ex240311.log": log})
    assert [f.fmt for f in s.summary.files] == ["w3c"]
    assert read_rows(s.db, "SELECT line, entity, field_path FROM findings ORDER BY line, start_byte") == [
        (4, "EMAIL_ADDRESS", "query.email"), (4, "IP_ADDRESS", "c-ip"),
        (8, "EMAIL_ADDRESS", "query.email"), (8, "IP_ADDRESS", "c-ip"),
    ]
    assert read_rows(s.db, "SELECT parse_problems FROM sources") == [(0,)]  # the second block reads cleanly


# `[cdn] ai_paths` regexes that are not one `^`-anchored pattern: the scan's marker (an RE2
# pre-filter on raw lines) must let through every line whose parsed path the regex finds.
def _cdn_line(second: int, path: str, edge: str) -> str:
    return (f'10.1.2.{second} - - [11/Mar/2024:16:00:{second:02d} +0000] "GET {path} HTTP/1.1" 200 5120'
            f' "https://shop.example.com/" "Mozilla/5.0" HIT pop={edge} host=shop.example.com\n')


@pytest.mark.parametrize("ai_paths, expected", [
    (['/assistant/'], [1, 2]),  # unanchored: anywhere in the path
    (['^/ai/|^/assistant/'], [2, 3]),  # an anchor in each alternative
    (['(?i)^/ASSISTANT/'], [2, 4]),  # an inline flag before the anchor
    ([r'\A/ai/', r'/answer$'], [1, 2, 3, 5]),  # \A; an end anchor with a query string after the path
    ([r'^/(?!static/)[a-z]+/answer'], [2]),  # a look-ahead RE2 cannot compile: still found
])
def test_p4_ai_paths_in_any_python_regex_shape(tmp_path, ai_paths, expected):
    log = "".join([
        _cdn_line(1, "/de/assistant/answer?session=ab12ce", "IAD89-C1"),
        _cdn_line(2, "/assistant/answer?session=ab12ce", "JFK5-C1"),
        _cdn_line(3, "/ai/summary", "IAD66-P2"),
        _cdn_line(4, "/Assistant/chat", "IAD89-C1"),
        _cdn_line(5, "/static/answer", "IAD89-C1"),
    ])
    toml = f"[cdn]\nai_paths = {json.dumps(ai_paths)}\n"
    s = scan(tmp_path, {"cdn/shop.log": log}, toml)
    assert read_rows(s.db, "SELECT line FROM events WHERE kind = 'cdn_ai' ORDER BY line") == [(n,) for n in expected]
    [p4] = s.alerts("P4_cdn_region")
    assert p4["evidence"]["n_hits"] == len(expected)


def test_cdn_path_marker_rewrites_anchors_only_outside_classes_and_escapes():
    from leakwatch.detect.enrich import _PATH_START, cdn_path_marker

    assert cdn_path_marker(r"^/a[^$]\^x\$$") == _PATH_START + r"/a[^$]\^x\$"
    assert cdn_path_marker(r"[]^]/(?:x|^y)") == r"[]^]/(?:x|" + _PATH_START + "y)"
    assert cdn_path_marker(r"(?<=/)ai/") == "/"  # not RE2: any line with a path
