"""The ServiceNow target against the loopback Table API (leakwatch.notify.sim.ServiceNowSim):
real requests over HTTP on 127.0.0.1, nothing patched."""
from __future__ import annotations

import base64
import json
import time

import pytest

from leakwatch.notify.base import Message, TargetConfig
from leakwatch.notify.sim import ServiceNowSim, sample_facts
from leakwatch.notify.targets import build_target
from leakwatch.notify.targets._common import TargetLookupError
from leakwatch.notify.targets.servicenow import ServiceNowTarget

PASSWORD = "sn-Pa55word!%/x"
TOKEN = "oauth-Zq8f2c0mB7tKpL1vX9"
# What the masked examples of sample_facts() stand for: these must never reach a body.
RAW_VALUES = ("jane.doe@example.com", "QQ123456C", "mark.lee@contoso.co.uk")
ENV = {"SN_USER": "leakwatch.integration", "SN_PASSWORD": PASSWORD, "SN_TOKEN": TOKEN}


@pytest.fixture
def sim():
    with ServiceNowSim() as s:
        s.add_user("leakwatch.integration", PASSWORD)
        s.add_token(TOKEN)
        yield s


def make(sim, *, token: bool = False, timeout: float = 5.0, env=None, **options) -> ServiceNowTarget:
    creds = {"token": "SN_TOKEN"} if token else {"user": "SN_USER", "password": "SN_PASSWORD"}
    opts = {"assignment_group": "Security Incident Response", "category": "Security",
            "caller_id": "leakwatch.integration", **options}
    cfg = TargetConfig(name="sn", kind="servicenow", url=sim.url + "/", credentials=creds, options=opts,
                       timeout_s=timeout)
    lookup = dict(ENV if env is None else env)
    target = build_target(cfg, lambda var: lookup[var])
    assert isinstance(target, ServiceNowTarget)
    return target


def message(target, event="incident.opened", facts=None, extra=None, key="incident:7:opened:sn") -> Message:
    body = target.render(event, sample_facts() if facts is None and event != "canary" else facts, extra or {})
    body = json.loads(json.dumps(body))  # as the outbox stores and reloads it
    return Message(target="sn", kind="servicenow", event=event, idempotency_key=key, body=body, incident_id=7)


def test_creates_an_incident_with_the_documented_request(sim):
    t = make(sim)
    msg = message(t)
    result = t.send(msg)
    assert (result.outcome, result.status, result.remote_id) == ("delivered", 201, "INC0010001")

    [req] = sim.requests
    assert (req.method, req.path) == ("POST", "/api/now/table/incident")
    assert (req.auth_scheme, req.auth_user) == ("basic", "leakwatch.integration")
    assert req.header("Content-Type") == "application/json" and req.header("Accept") == "application/json"
    body = req.json()
    assert body["short_description"].startswith("[leakwatch] HIGH incident 7: ")
    assert len(body["short_description"]) <= 160
    assert (body["urgency"], body["impact"]) == ("1", "1")  # high → 1; strings, as ServiceNow's own clients send
    assert body["category"] == "Security" and body["assignment_group"] == "Security Incident Response"
    assert body["caller_id"] == "leakwatch.integration"
    assert body["correlation_id"] == "incident:7:opened:sn" and body["correlation_display"] == "leakwatch"
    assert all(isinstance(v, str) for v in body.values())
    d = body["description"]
    for needed in ("Data subjects (approx.): ~251", "Records (approx.): ~388", "Data categories: contact, national_id",
                   "openai (us / US) – data residency violated", "j***@e******.com", "QQ*****6C",
                   "Reference: leakwatch incidents show 7"):
        assert needed in d
    for raw in RAW_VALUES:
        assert raw not in req.body.decode()

    [row] = sim.records()
    assert row["number"] == "INC0010001" and row["priority"] == "1"  # ServiceNow derives it from urgency × impact
    assert row["correlation_id"] == "incident:7:opened:sn"


@pytest.mark.parametrize(("severity", "level"), [("critical", "1"), ("high", "1"), ("medium", "2"), ("low", "3"),
                                                 ("info", "3")])
def test_urgency_and_impact_follow_severity(sim, severity, level):
    t = make(sim)
    body = t.render("incident.opened", sample_facts(severity=severity), {})
    assert (body["urgency"], body["impact"]) == (level, level)
    assert t.send(Message("sn", "servicenow", "incident.opened", f"k-{severity}", body)).outcome == "delivered"
    assert sim.records()[-1]["urgency"] == level


def test_oauth_bearer_token(sim):
    t = make(sim, token=True)
    assert t.send(message(t)).outcome == "delivered"
    assert sim.requests[-1].auth_scheme == "bearer"


def test_long_titles_are_cut_to_the_field_length(sim):
    t = make(sim)
    msg = message(t, facts=sample_facts(title="PII " * 80))
    assert len(msg.body["short_description"]) == 160 and msg.body["short_description"].endswith("\u2026")
    assert t.send(msg).outcome == "delivered"
    assert sim.records()[0]["short_description"] == msg.body["short_description"]


def test_deadline_event_names_the_deadline(sim):
    t = make(sim)
    msg = message(t, "deadline.approaching", extra={"regime": "GDPR-33", "label": "Notify the supervisory authority",
                                                    "due": "2026-03-14T16:45:00+00:00", "before": "12h"})
    assert msg.body["short_description"].startswith("Deadline approaching – [leakwatch] HIGH incident 7")
    assert "Deadline approaching in 12h: GDPR-33 – Notify the supervisory authority (due 2026-03-14 16:45 UTC)." \
        in msg.body["description"]
    assert t.send(msg).outcome == "delivered"


def test_canary_is_marked_synthetic(sim):
    t = make(sim)
    msg = message(t, "canary", extra={"target": "sn"})
    assert msg.body["short_description"].startswith("[leakwatch canary]")
    assert "not an incident" in msg.body["description"] and msg.body["urgency"] == "3"
    assert t.send(msg).outcome == "delivered"


def test_dead_letter_alert_without_an_incident(sim):
    t = make(sim)
    body = t.render("outbox.dead_letter", None, {"target": "jira1", "notification_id": 42})
    assert body["short_description"] == ("Undelivered – [leakwatch] Notification 42 to jira1 could not be delivered "
                                         "after all retries (dead letter).")
    assert "Notification id: 42" in body["description"] and body["urgency"] == "2"
    assert t.send(Message("sn", "servicenow", "outbox.dead_letter", "dl:42", body)).outcome == "delivered"


def test_lookup_by_correlation_id_finds_a_delivery_whose_answer_was_lost(sim):
    t = make(sim)
    msg = message(t)
    assert t.find_delivered(msg) is None
    lookup = sim.requests[-1]
    assert (lookup.method, lookup.path) == ("GET", "/api/now/table/incident")
    assert lookup.params == {"sysparm_query": ["correlation_id=incident:7:opened:sn"],
                             "sysparm_fields": ["sys_id,number"], "sysparm_limit": ["1"]}

    sim.drop_next("/api/now/table/incident", method="POST", process=True)  # created, answer lost
    first = t.send(msg)
    assert first.outcome == "retry" and first.status is None
    assert t.find_delivered(msg) == "INC0010001"  # so the dispatcher does not send it again
    assert len(sim.records()) == 1
    # Another message's key is not confused with it.
    assert t.find_delivered(message(t, key="incident:7:escalated:sn")) is None


def test_lookup_failure_raises_instead_of_answering_not_delivered(sim):
    t = make(sim)
    sim.fail_next("/api/now/table/incident", 503, method="GET")
    with pytest.raises(TargetLookupError, match="HTTP 503"):
        t.find_delivered(message(t))


def test_a_refused_lookup_fails_the_row_instead_of_retrying(sim):
    from leakwatch.errors import UsageError

    t = make(sim, env={**ENV, "SN_PASSWORD": "nope-" + PASSWORD})
    with pytest.raises(UsageError, match="HTTP 401") as e:
        t.find_delivered(message(t))
    assert not isinstance(e.value, TargetLookupError) and "nope-" not in str(e.value)


def test_429_with_retry_after_is_retried_later(sim):
    t = make(sim)
    sim.fail_next("/api/now/table/incident", 429, retry_after=17,
                  body='{"error":{"message":"Rate limit exceeded"},"status":"failure"}')
    r = t.send(message(t))
    assert (r.outcome, r.status, r.retry_after_s) == ("retry", 429, 17.0)
    assert "Rate limit exceeded" in r.error
    assert t.send(message(t)).outcome == "delivered"


def test_500_is_retried(sim):
    t = make(sim)
    sim.fail_next("/api/now/table/incident", 500)
    r = t.send(message(t))
    assert (r.outcome, r.status, r.retry_after_s) == ("retry", 500, None)
    assert not sim.records()


def test_a_server_that_hangs_past_the_timeout_is_retried(sim):
    t = make(sim, timeout=0.4)
    sim.hang_next("/api/now/table/incident", 3.0)
    started = time.monotonic()
    r = t.send(message(t))
    assert r.outcome == "retry" and "no answer" in r.error
    assert time.monotonic() - started < 2.5
    assert t.send(message(t)).outcome == "delivered"  # the next attempt uses a fresh connection


def test_a_dropped_connection_is_retried(sim):
    t = make(sim)
    sim.drop_next("/api/now/table/incident")
    r = t.send(message(t))
    assert r.outcome == "retry" and "connection failed" in r.error
    assert not sim.records()


def test_refused_credentials_fail_without_showing_them(sim):
    t = make(sim, env={**ENV, "SN_PASSWORD": "wrong-" + PASSWORD})
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("failed", 401)
    assert "User Not Authenticated" in r.error
    secret = "wrong-" + PASSWORD
    basic = base64.b64encode(f"leakwatch.integration:{secret}".encode()).decode()
    for shown in (secret, basic, PASSWORD):
        assert shown not in r.error


def test_a_refused_request_fails_with_the_servers_reason(sim):
    t = make(sim)
    msg = message(t)
    bad = Message(msg.target, msg.kind, msg.event, msg.idempotency_key, {**msg.body, "urgency": "9"})
    r = t.send(bad)
    assert (r.outcome, r.status) == ("failed", 400) and "urgency must be one of 1, 2, 3" in r.error
    assert PASSWORD not in r.error


def test_a_missing_credential_fails_naming_the_variable_not_a_value(sim):
    t = make(sim, env={"SN_USER": "leakwatch.integration"})  # SN_PASSWORD is not set
    r = t.send(message(t))
    assert r.outcome == "failed" and "SN_PASSWORD" in r.error
    assert not sim.requests


def test_secrets_echoed_by_a_server_are_redacted(sim):
    t = make(sim, token=True)
    sim.fail_next("/api/now/table/incident", 400, body='{"error":{"message":"bad token ' + TOKEN + '"}}')
    r = t.send(message(t))
    assert r.outcome == "failed" and TOKEN not in r.error and "[REDACTED]" in r.error


def test_configuration_errors_are_reported_at_build_time(sim):
    from leakwatch.errors import UsageError

    with pytest.raises(UsageError, match="user \\+ password"):
        build_target(TargetConfig("sn", "servicenow", sim.url, credentials={"user": "SN_USER"}), ENV.get)
    with pytest.raises(UsageError, match="not an absolute"):
        build_target(TargetConfig("sn", "servicenow", "acme.service-now.com", credentials={"token": "T"}), ENV.get)
