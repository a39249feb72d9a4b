"""The Salesforce Case and Platform Event targets, driving the real simple-salesforce client
against the loopback org (leakwatch.salesforce.sim) over HTTPS on 127.0.0.1; nothing patched."""
from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import pytest

from leakwatch.notify.base import Message, TargetConfig
from leakwatch.notify.sim import sample_facts
from leakwatch.notify.targets import build_target
from leakwatch.notify.targets._common import TargetLookupError
from leakwatch.notify.targets.salesforce import EVENT_FIELDS, PlatformEventTarget, SalesforceCaseTarget
from leakwatch.salesforce.sim import SalesforceSim

USER, PASSWORD, SEC_TOKEN = "leakwatch@acme.example", "Pa$$<w0rd>&", "TOKEN123xyz"
RAW_VALUES = ("jane.doe@example.com", "QQ123456C", "mark.lee@contoso.co.uk")
KEY = "incident:7:opened:sf"


@pytest.fixture
def sim():
    with SalesforceSim() as s:
        s.add_user(USER, PASSWORD, SEC_TOKEN)
        s.add_sobject("Leak_Alert__e", "e00", fields=EVENT_FIELDS)
        yield s


def make(sim, kind="salesforce_case", *, login="session", timeout=5.0, env=None, **options):
    if login == "session":
        sid = sim.issue_session()
        creds, lookup, url = {"session_id": "SF_SID"}, {"SF_SID": sid}, sim.url
    else:
        creds = {"username": "SF_USER", "password": "SF_PASSWORD", "security_token": "SF_TOKEN"}
        lookup, url = {"SF_USER": USER, "SF_PASSWORD": PASSWORD, "SF_TOKEN": SEC_TOKEN}, sim.url
    lookup.update(env or {})
    opts = {"ca_bundle": sim.ca_file, **options}
    cfg = TargetConfig(name="sf", kind=kind, url=url, credentials=creds, options=opts, timeout_s=timeout)
    return build_target(cfg, lambda var: lookup[var]), lookup


def message(target, event="incident.opened", facts=None, extra=None, key=KEY) -> Message:
    body = target.render(event, sample_facts() if facts is None and event != "canary" else facts, extra or {})
    body = json.loads(json.dumps(body))  # as the outbox stores and reloads it
    return Message(target="sf", kind=target.config.kind, event=event, idempotency_key=key, body=body, incident_id=7)


# --- Case ----------------------------------------------------------------------------------------


def test_case_create_with_the_documented_fields(sim):
    t, _ = make(sim, external_id_field="Leakwatch_Key__c", type="Other", reason="Other",
                fields={"Security_Category__c": "Data leak"})
    assert isinstance(t, SalesforceCaseTarget)
    r = t.send(message(t))
    assert r.outcome == "delivered" and r.status == 201 and r.remote_id.startswith("500")

    [req] = sim.requests_to("sobjects/Case/", "POST")
    assert req.path == "/services/data/v60.0/sobjects/Case/"
    assert req.headers["Content-Type"] == "application/json"
    [created] = sim.created_records
    f = created.fields
    assert created.sobject == "Case" and created.id == r.remote_id
    assert set(f) == {"Subject", "Description", "Status", "Priority", "Origin", "Type", "Reason",
                      "Security_Category__c", "Leakwatch_Key__c"}
    assert f["Subject"].startswith("[leakwatch] HIGH incident 7:") and len(f["Subject"]) <= 255
    assert (f["Status"], f["Priority"], f["Origin"], f["Type"], f["Reason"]) == ("New", "High", "leakwatch", "Other", "Other")
    assert f["Leakwatch_Key__c"] == KEY
    assert len(f["Description"]) <= 32000 and "Records (approx.): ~388" in f["Description"]
    assert "j***@e******.com" in f["Description"] and "Reference: leakwatch incidents show 7" in f["Description"]
    for raw in RAW_VALUES:
        assert raw not in req.body.decode()


@pytest.mark.parametrize(("severity", "priority"), [("critical", "High"), ("high", "High"), ("medium", "Medium"),
                                                    ("low", "Low"), ("info", "Low")])
def test_case_priority_follows_severity(sim, severity, priority):
    t, _ = make(sim)
    assert t.render("incident.opened", sample_facts(severity=severity), {})["Priority"] == priority


def test_password_login_then_case(sim):
    t, _ = make(sim, login="password", domain=sim.url)
    r = t.send(message(t))
    assert r.outcome == "delivered"
    assert [q.path for q in sim.requests][:2] == ["/services/Soap/u/60.0", "/services/data/v60.0/sobjects/Case/"]


def test_an_expired_session_is_renewed_by_a_password_login(sim):
    t, _ = make(sim, login="password", domain=sim.url)
    assert t.send(message(t)).outcome == "delivered"
    sim.expire_sessions()
    r = t.send(message(t, key="k2"))
    assert r.outcome == "delivered"
    assert len(sim.requests_to("/services/Soap/u/")) == 2 and len(sim.created_records) == 2


def test_an_expired_session_id_fails_without_showing_it(sim):
    t, lookup = make(sim)
    sim.expire_sessions()
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("failed", 401) and "INVALID_SESSION_ID" in r.error
    sid = lookup["SF_SID"]
    assert sid not in r.error and sid.split("!", 1)[1] not in r.error


def test_a_refused_login_fails_without_showing_the_password(sim):
    t, _ = make(sim, login="password", domain=sim.url, env={"SF_PASSWORD": "not-" + PASSWORD})
    r = t.send(message(t))
    assert r.outcome == "failed" and "INVALID_LOGIN" in r.error
    for shown in (PASSWORD, "not-" + PASSWORD, SEC_TOKEN):
        assert shown not in r.error


def test_lookup_by_external_id_finds_a_case_whose_answer_was_lost(sim):
    t, _ = make(sim, external_id_field="Leakwatch_Key__c")
    msg = message(t)
    assert t.find_delivered(msg) is None
    [q] = sim.requests_to("query")
    assert parse_qs(q.query)["q"] == [f"SELECT Id FROM Case WHERE Leakwatch_Key__c = '{KEY}' LIMIT 1"]

    sim.drop_next("sobjects/Case/", method="POST", process=True)
    first = t.send(msg)
    assert first.outcome == "retry"
    found = t.find_delivered(msg)
    assert found is not None and found == sim.created_records[0].id
    assert len(sim.records("Case")) == 1
    assert t.find_delivered(message(t, key="incident:7:escalated:sf")) is None


def test_lookup_quotes_the_key(sim):
    t, _ = make(sim, external_id_field="Leakwatch_Key__c")
    msg = message(t, key="it's' OR Id != null")
    assert t.send(msg).outcome == "delivered"
    assert t.find_delivered(msg) == sim.created_records[0].id
    assert t.find_delivered(message(t, key="other' OR Id != null")) is None


def test_no_external_id_field_means_no_lookup(sim):
    t, _ = make(sim)
    assert t.find_delivered(message(t)) is None
    assert not sim.requests
    # ... which 'notify dispatch' says when it starts: a lost answer would open a second Case.
    assert "no options.external_id_field" in t.duplicate_risk and "second Case" in t.duplicate_risk
    assert make(sim, external_id_field="Leakwatch_Key__c")[0].duplicate_risk is None


def test_lookup_failure_raises(sim):
    t, _ = make(sim, external_id_field="Leakwatch_Key__c")
    sim.fail_next("query", 503)
    with pytest.raises(TargetLookupError, match="HTTP 503"):
        t.find_delivered(message(t))


def test_a_refused_lookup_fails_the_row(sim):
    from leakwatch.errors import UsageError

    t, lookup = make(sim, external_id_field="Leakwatch_Key__c")
    sim.expire_sessions()
    with pytest.raises(UsageError, match="INVALID_SESSION_ID") as e:
        t.find_delivered(message(t))
    assert not isinstance(e.value, TargetLookupError) and lookup["SF_SID"] not in str(e.value)


def test_429_with_retry_after_and_server_errors_are_retried(sim):
    t, _ = make(sim)
    sim.fail_next("sobjects/Case/", 429, retry_after=12)
    r = t.send(message(t))
    assert (r.outcome, r.status, r.retry_after_s) == ("retry", 429, 12.0)
    sim.fail_next("sobjects/Case/", 503, retry_after=3)
    r = t.send(message(t))
    assert (r.outcome, r.status, r.retry_after_s) == ("retry", 503, 3.0)
    sim.fail_next("sobjects/Case/", 500)
    r = t.send(message(t))
    assert (r.outcome, r.status, r.retry_after_s) == ("retry", 500, None)
    sim.fail_next("sobjects/Case/", 403)  # REQUEST_LIMIT_EXCEEDED: the org's API limit; later it works
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("retry", 403) and "REQUEST_LIMIT_EXCEEDED" in r.error
    assert not sim.created_records
    assert t.send(message(t)).outcome == "delivered"


def test_hang_and_dropped_connection_are_retried(sim):
    t, _ = make(sim, timeout=0.4)
    sim.hang_next("sobjects/Case/", 3.0)
    started = time.monotonic()
    r = t.send(message(t))
    assert r.outcome == "retry" and "no answer" in r.error and time.monotonic() - started < 2.5
    sim.drop_next("sobjects/Case/")
    r = t.send(message(t))
    assert r.outcome == "retry" and "connection failed" in r.error
    assert not sim.created_records


def test_a_malformed_case_fails_with_salesforces_reason(sim):
    t, lookup = make(sim)
    msg = message(t)
    bad = Message(msg.target, msg.kind, msg.event, msg.idempotency_key, {**msg.body, "Subject": "x" * 300})
    r = t.send(bad)
    assert (r.outcome, r.status) == ("failed", 400) and "STRING_TOO_LONG" in r.error
    assert lookup["SF_SID"] not in r.error


def test_tls_is_verified(sim):
    cfg = TargetConfig(name="sf", kind="salesforce_case", url=sim.url, credentials={"session_id": "SID"})
    t = build_target(cfg, {"SID": sim.issue_session()}.__getitem__)  # no ca_bundle: the sim's CA is unknown
    r = t.send(message(t))
    assert r.outcome == "failed" and "TLS" in r.error
    assert not sim.created_records


def test_case_canary(sim):
    t, _ = make(sim)
    msg = message(t, "canary", extra={"target": "sf"})
    assert msg.body["Subject"].startswith("[leakwatch canary]") and msg.body["Priority"] == "Low"
    assert t.send(msg).outcome == "delivered"


# --- Platform Event ------------------------------------------------------------------------------


def test_platform_event_publish(sim):
    t, _ = make(sim, "salesforce_event")
    assert isinstance(t, PlatformEventTarget)
    r = t.send(message(t))
    assert r.outcome == "delivered" and r.status == 201 and r.remote_id.startswith("e00")
    [req] = sim.requests_to("sobjects/Leak_Alert__e/", "POST")
    assert req.path == "/services/data/v60.0/sobjects/Leak_Alert__e/"
    [created] = sim.created_records
    f = created.fields
    assert f["Idempotency_Key__c"] == KEY and f["Event_Type__c"] == "incident.opened"
    assert f["Incident_Id__c"] == 7 and f["Severity__c"] == "high" and f["Status__c"] == "triaged"
    assert (f["Data_Subjects__c"], f["Records__c"], f["Canary__c"]) == (251, 388, False)
    assert f["Categories__c"] == "contact, national_id"
    assert f["Destinations__c"] == "openai (us / US) – data residency violated"
    assert len(f["Summary__c"]) <= 255 and f["Reference__c"] == "leakwatch incidents show 7"
    assert "QQ*****6C" in f["Details__c"]
    for raw in RAW_VALUES:
        assert raw not in req.body.decode()
    # Events cannot be queried: no lookup, subscribers deduplicate by Idempotency_Key__c.
    assert t.find_delivered(message(t)) is None
    assert len(sim.requests) == 1
    sf_query = sim.session().get(f"{sim.url}/services/data/v60.0/query",
                                 params={"q": "SELECT Id FROM Leak_Alert__e"},
                                 headers={"Authorization": f"Bearer {sim.issue_session()}"})
    assert sf_query.status_code == 400 and sf_query.json()[0]["errorCode"] == "INVALID_TYPE"


def test_platform_event_name_and_fields_are_configurable(sim):
    sim.add_sobject("Privacy_Alert__e", "e01", fields=("Idempotency_Key__c", "Severity__c", "Summary__c"))
    t, _ = make(sim, "salesforce_event", event="Privacy_Alert__e", event_fields=["Severity__c", "Summary__c"])
    r = t.send(message(t, "deadline.missed", extra={"regime": "GDPR-33", "label": "notice", "due": "2026-03-14T16:45:00Z"}))
    assert r.outcome == "delivered" and r.remote_id.startswith("e01")
    f = sim.created_records[0].fields
    assert set(f) == {"Idempotency_Key__c", "Severity__c", "Summary__c"}
    assert f["Summary__c"].startswith("DEADLINE MISSED – [leakwatch] HIGH incident 7")


def test_platform_event_without_the_field_fails(sim):
    sim.add_sobject("Thin_Alert__e", "e02", fields=("Idempotency_Key__c", "Severity__c"))
    t, _ = make(sim, "salesforce_event", event="Thin_Alert__e")
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("failed", 400) and "INVALID_FIELD" in r.error


def test_platform_event_not_deployed_fails(sim):
    t, _ = make(sim, "salesforce_event", event="Missing_Alert__e")
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("failed", 404) and "deployed" in r.error


def test_platform_event_faults(sim):
    t, _ = make(sim, "salesforce_event", timeout=0.4)
    sim.fail_next("sobjects/Leak_Alert__e/", 429, retry_after=9)
    assert t.send(message(t)).retry_after_s == 9.0
    sim.hang_next("sobjects/Leak_Alert__e/", 3.0)
    assert t.send(message(t)).outcome == "retry"
    sim.drop_next("sobjects/Leak_Alert__e/")
    assert t.send(message(t)).outcome == "retry"
    assert not sim.created_records


def test_platform_event_canary(sim):
    t, _ = make(sim, "salesforce_event")
    msg = message(t, "canary", extra={"target": "sf"})
    assert msg.body["Canary__c"] is True and msg.body["Summary__c"].startswith("[leakwatch canary]")
    assert "Incident_Id__c" not in msg.body
    assert t.send(msg).outcome == "delivered"


def test_configuration_errors(sim):
    from leakwatch.errors import UsageError

    with pytest.raises(UsageError, match="session_id"):
        build_target(TargetConfig("sf", "salesforce_case", sim.url, credentials={"username": "U"}), {}.get)
    with pytest.raises(UsageError, match="platform event"):
        build_target(TargetConfig("sf", "salesforce_event", sim.url, credentials={"session_id": "S"},
                                  options={"event": "Leak_Alert__c"}), {}.get)
    with pytest.raises(UsageError, match="external_id_field"):
        build_target(TargetConfig("sf", "salesforce_case", sim.url, credentials={"session_id": "S"},
                                  options={"external_id_field": "x = 1 OR"}), {}.get)
