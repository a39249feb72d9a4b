"""The Jira Cloud and Jira Service Management targets against the loopback Jira
(leakwatch.notify.sim.JiraSim): real requests over HTTP on 127.0.0.1, nothing patched."""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import time

import pytest

from leakwatch.notify.base import Message, TargetConfig
from leakwatch.notify.sim import JiraSim, adf_errors, sample_facts
from leakwatch.notify.targets import build_target
from leakwatch.notify.targets._common import TargetLookupError
from leakwatch.notify.targets.jira import JiraTarget, JsmTarget, adf_description, key_label

EMAIL = "secops@acme.example"
API_TOKEN = "ATATT3xFfGF0T4k3n-Zz9_q1w2e3r4t5y6"
RAW_VALUES = ("jane.doe@example.com", "QQ123456C", "mark.lee@contoso.co.uk")
ENV = {"JIRA_EMAIL": EMAIL, "JIRA_TOKEN": API_TOKEN}
KEY = "incident:7:opened:jira"


@pytest.fixture
def sim():
    with JiraSim() as s:
        s.add_user(EMAIL, API_TOKEN)
        s.add_project("SEC", ("Task", "Incident"))
        s.add_service_desk("10", "HELP", {"25": ["summary", "description"],
                                          "26": ["summary", "description", "labels"]})
        yield s


def make(sim, kind="jira", *, env=None, timeout=5.0, **options):
    defaults = {"jira": {"project": "SEC", "issue_type": "Incident"},
                "jsm": {"service_desk_id": "10", "request_type_id": "25"}}[kind]
    cfg = TargetConfig(name=f"{kind}1", kind=kind, url=sim.url, credentials={"email": "JIRA_EMAIL", "token": "JIRA_TOKEN"},
                       options={**defaults, **options}, timeout_s=timeout)
    lookup = dict(ENV if env is None else env)
    return build_target(cfg, lambda var: lookup[var])


def message(target, event="incident.opened", facts=None, extra=None, key=KEY) -> Message:
    body = target.render(event, sample_facts() if facts is None and event != "canary" else facts, extra or {})
    body = json.loads(json.dumps(body))  # as the outbox stores and reloads it
    return Message(target=target.config.name, kind=target.config.kind, event=event, idempotency_key=key, body=body,
                   incident_id=7)


def _texts(node) -> list[str]:
    if isinstance(node, dict):
        out = [node["text"]] if node.get("type") == "text" else []
        for child in node.get("content", []):
            out += _texts(child)
        return out
    return []


# --- Jira ----------------------------------------------------------------------------------------


def test_creates_an_issue_with_the_documented_request(sim):
    t = make(sim, priority=True, labels=["privacy", "has space"])
    assert isinstance(t, JiraTarget)
    r = t.send(message(t))
    assert (r.outcome, r.status, r.remote_id) == ("delivered", 201, "SEC-1")

    [req] = sim.requests
    assert (req.method, req.path) == ("POST", "/rest/api/3/issue")
    assert (req.auth_scheme, req.auth_user) == ("basic", EMAIL)
    assert req.header("Content-Type") == "application/json" and req.header("Accept") == "application/json"
    fields = req.json()["fields"]
    assert set(fields) == {"project", "summary", "issuetype", "description", "labels", "priority"}
    assert fields["project"] == {"key": "SEC"} and fields["issuetype"] == {"name": "Incident"}
    assert fields["priority"] == {"name": "High"}
    assert fields["summary"].startswith("[leakwatch] HIGH incident 7: ") and "\n" not in fields["summary"]
    assert len(fields["summary"]) <= 255
    label = "leakwatch-" + hashlib.sha1(KEY.encode()).hexdigest()[:20]
    assert fields["labels"] == ["leakwatch", "leakwatch-severity-high", "privacy", "has-space", label]

    doc = fields["description"]
    assert adf_errors(doc) == []
    assert doc["type"] == "doc" and doc["version"] == 1
    kinds = [n["type"] for n in doc["content"]]
    assert kinds[:4] == ["heading", "paragraph", "heading", "bulletList"] and "bulletList" in kinds[4:]
    texts = _texts(doc)
    for needed in ("Data subjects (approx.): ", "~251", "j***@e******.com", "QQ*****6C", "leakwatch incidents show 7"):
        assert needed in texts
    masked = [n for n in doc["content"][-2]["content"]]  # the masked-examples list: inline code
    assert masked[0]["content"][0]["content"][0]["marks"] == [{"type": "code"}]
    for raw in RAW_VALUES:
        assert raw not in req.body.decode()
    assert sim.issue("SEC-1").fields["labels"][-1] == label


def test_priority_is_left_out_unless_configured_and_can_be_mapped(sim):
    assert "priority" not in make(sim).render("incident.opened", sample_facts(), {})["fields"]
    t = make(sim, priorities={"critical": "Highest", "high": "Highest"})
    assert t.render("incident.opened", sample_facts(), {})["fields"]["priority"] == {"name": "Highest"}
    assert "priority" not in t.render("incident.opened", sample_facts(severity="low"), {})["fields"]


def test_adf_with_a_link_validates_and_the_validator_catches_broken_documents(sim):
    t = make(sim, incident_url="https://leakwatch.example/incidents/{id}")
    doc = message(t).body["fields"]["description"]
    assert adf_errors(doc) == []
    link = [m for n in doc["content"][-1]["content"] for m in n.get("marks", []) if m["type"] == "link"]
    assert link == [{"type": "link", "attrs": {"href": "https://leakwatch.example/incidents/7"}}]

    broken = []
    for mutate in (
        lambda d: d.pop("version"),
        lambda d: d["content"][0]["attrs"].pop("level"),                       # heading without a level
        lambda d: d["content"][1]["content"][0].update(text=""),              # empty text node
        lambda d: d["content"][3]["content"][0].update(type="paragraph"),     # list of paragraphs
        lambda d: d["content"].append({"type": "text", "text": "loose"}),     # inline node at the top
        lambda d: d["content"][1]["content"][0].update(marks=[{"type": "code"}, {"type": "strong"}]),
    ):
        bad = copy.deepcopy(doc)
        mutate(bad)
        broken.append(adf_errors(bad))
    assert all(broken)
    # and Jira refuses such a description
    msg = message(t)
    bad = copy.deepcopy(dict(msg.body))
    bad["fields"]["description"]["content"][1]["content"][0]["text"] = ""
    r = t.send(Message(msg.target, msg.kind, msg.event, msg.idempotency_key, bad))
    assert (r.outcome, r.status) == ("failed", 400) and "Atlassian Document" in r.error


def test_lookup_by_label_finds_a_delivery_whose_answer_was_lost(sim):
    t = make(sim)
    msg = message(t)
    assert t.find_delivered(msg) is None
    search = sim.requests[-1]
    assert (search.method, search.path) == ("GET", "/rest/api/3/search/jql")
    assert search.params["jql"] == [f'project = "SEC" AND labels = "{key_label(KEY)}"']
    assert search.params["maxResults"] == ["1"]

    sim.drop_next("/rest/api/3/issue", method="POST", process=True)
    assert t.send(msg).outcome == "retry"
    assert t.find_delivered(msg) == "SEC-1"
    assert len(sim.issues) == 1
    assert t.find_delivered(message(t, key="incident:7:escalated:jira")) is None


def test_lookup_failure_raises(sim):
    t = make(sim)
    sim.fail_next("/rest/api/3/search/jql", 500)
    with pytest.raises(TargetLookupError, match="HTTP 500"):
        t.find_delivered(message(t))


def test_429_with_retry_after_is_retried_later(sim):
    t = make(sim)
    sim.fail_next("/rest/api/3/issue", 429, retry_after=30,
                  body='{"errorMessages":["Rate limit exceeded."],"errors":{}}')
    r = t.send(message(t))
    assert (r.outcome, r.status, r.retry_after_s) == ("retry", 429, 30.0) and "Rate limit exceeded." in r.error


def test_500_and_503_are_retried(sim):
    t = make(sim)
    sim.fail_next("/rest/api/3/issue", 500)
    sim.fail_next("/rest/api/3/issue", 503, retry_after="Fri, 01 Jan 2100 00:00:00 GMT")
    first, second = t.send(message(t)), t.send(message(t))
    assert (first.outcome, first.status) == ("retry", 500)
    assert (second.outcome, second.status) == ("retry", 503) and second.retry_after_s == 86400.0  # capped at a day
    assert not sim.issues


def test_hang_and_dropped_connection_are_retried(sim):
    t = make(sim, timeout=0.4)
    sim.hang_next("/rest/api/3/issue", 3.0)
    started = time.monotonic()
    r = t.send(message(t))
    assert r.outcome == "retry" and time.monotonic() - started < 2.5
    sim.drop_next("/rest/api/3/issue")
    assert t.send(message(t)).outcome == "retry"
    assert not sim.issues
    assert t.send(message(t)).outcome == "delivered"


def test_refused_credentials_fail_redacted(sim):
    wrong = API_TOKEN[::-1]
    t = make(sim, env={**ENV, "JIRA_TOKEN": wrong})
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("failed", 401) and "must be authenticated" in r.error
    for shown in (wrong, base64.b64encode(f"{EMAIL}:{wrong}".encode()).decode(), API_TOKEN):
        assert shown not in r.error


def test_a_refused_issue_fails_with_jiras_field_errors(sim):
    t = make(sim, project="NOPE")
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("failed", 400)
    assert "project: Specify a valid project ID or key" in r.error


def test_canary_issue(sim):
    t = make(sim)
    msg = message(t, "canary", extra={"target": "jira1"})
    assert msg.body["fields"]["summary"].startswith("[leakwatch canary]")
    assert "leakwatch-canary" in msg.body["fields"]["labels"]
    assert t.send(msg).outcome == "delivered"


# --- JSM -----------------------------------------------------------------------------------------


def test_jsm_request_with_the_documented_request(sim):
    t = make(sim, "jsm", raise_on_behalf_of="secops@acme.example")
    assert isinstance(t, JsmTarget)
    r = t.send(message(t))
    assert (r.outcome, r.status, r.remote_id) == ("delivered", 201, "HELP-1")
    [req] = sim.requests
    assert (req.method, req.path, req.auth_user) == ("POST", "/rest/servicedeskapi/request", EMAIL)
    body = req.json()
    assert body["serviceDeskId"] == "10" and body["requestTypeId"] == "25"
    assert body["raiseOnBehalfOf"] == "secops@acme.example"
    values = body["requestFieldValues"]
    assert set(values) == {"summary", "description"}
    assert isinstance(values["description"], str)  # plain text for the service desk API
    assert "Masked examples" in values["description"] and "QQ*****6C" in values["description"]
    assert values["summary"].startswith("[leakwatch] HIGH incident 7")
    for raw in RAW_VALUES:
        assert raw not in req.body.decode()
    assert t.find_delivered(message(t)) is None  # no label: no lookup, and no request made
    assert len(sim.requests) == 1


def test_jsm_with_labels_can_be_looked_up(sim):
    t = make(sim, "jsm", request_type_id="26", use_labels=True)
    msg = message(t)
    assert t.find_delivered(msg) is None
    sim.drop_next("/rest/servicedeskapi/request", process=True)
    assert t.send(msg).outcome == "retry"
    assert t.find_delivered(msg) == "HELP-1"
    assert sim.issues[0].fields["labels"] == ["leakwatch", key_label(KEY)]


def test_jsm_refuses_labels_the_request_type_does_not_show(sim):
    t = make(sim, "jsm", use_labels=True)  # request type 25 has no Labels field
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("failed", 400) and "labels" in r.error


def test_jsm_faults(sim):
    t = make(sim, "jsm", timeout=0.4)
    sim.fail_next("/rest/servicedeskapi/request", 429, retry_after=5)
    assert t.send(message(t)).retry_after_s == 5.0
    sim.hang_next("/rest/servicedeskapi/request", 3.0)
    assert t.send(message(t)).outcome == "retry"
    sim.drop_next("/rest/servicedeskapi/request")
    assert t.send(message(t)).outcome == "retry"
    t2 = make(sim, "jsm", service_desk_id="99")
    r = t2.send(message(t2))
    assert (r.outcome, r.status) == ("failed", 404) and "service desk 99" in r.error


def test_configuration_errors(sim):
    from leakwatch.errors import UsageError

    with pytest.raises(UsageError, match="project"):
        build_target(TargetConfig("j", "jira", sim.url, credentials={"email": "E", "token": "T"}), ENV.get)
    with pytest.raises(UsageError, match="request_type_id"):
        build_target(TargetConfig("j", "jsm", sim.url, credentials={"email": "E", "token": "T"},
                                  options={"service_desk_id": "10"}), ENV.get)
    with pytest.raises(UsageError, match="API token"):
        build_target(TargetConfig("j", "jira", sim.url, credentials={"email": "E"}, options={"project": "SEC"}),
                     ENV.get)


def test_adf_description_of_a_canary_is_valid():
    from leakwatch.notify.targets._common import build_digest

    assert adf_errors(adf_description(build_digest("canary", None, {"target": "x"}))) == []
