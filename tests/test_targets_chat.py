"""The Slack and Teams incoming-webhook targets against loopback webhook servers
(leakwatch.notify.sim.SlackWebhookSim / TeamsWebhookSim) on 127.0.0.1; nothing patched."""
from __future__ import annotations

import copy
import json
import time
from urllib.parse import urlsplit

import pytest

from leakwatch.notify.base import Message, TargetConfig
from leakwatch.notify.sim import (
    SlackWebhookSim,
    TeamsWebhookSim,
    adaptive_card_errors,
    sample_facts,
    slack_errors,
)
from leakwatch.notify.targets import build_target
from leakwatch.notify.targets.chat import SlackTarget, TeamsTarget

RAW_VALUES = ("jane.doe@example.com", "QQ123456C", "mark.lee@contoso.co.uk")


@pytest.fixture
def slack():
    with SlackWebhookSim() as s:
        yield s


@pytest.fixture
def teams():
    with TeamsWebhookSim() as s:
        yield s


def make(kind, hook_url, *, timeout=5.0, via_credentials=True, **options):
    if via_credentials:  # the URL is the secret: from an environment variable
        cfg = TargetConfig(name=kind, kind=kind, url="", credentials={"url": "HOOK_URL"}, options=options,
                           timeout_s=timeout)
    else:
        cfg = TargetConfig(name=kind, kind=kind, url=hook_url, options=options, timeout_s=timeout)
    return build_target(cfg, {"HOOK_URL": hook_url}.__getitem__)


def message(target, event="incident.opened", facts=None, extra=None, key="incident:7:opened:chat") -> Message:
    body = target.render(event, sample_facts() if facts is None and event != "canary" else facts, extra or {})
    body = json.loads(json.dumps(body))  # as the outbox stores and reloads it
    return Message(target=target.config.name, kind=target.config.kind, event=event, idempotency_key=key, body=body)


def secret_part(url: str) -> str:
    parts = urlsplit(url)
    return parts.path.rsplit("/", 1)[-1] if "sig=" not in parts.query else parts.query.split("sig=")[1]


# --- Slack ---------------------------------------------------------------------------------------


def test_slack_message_shape(slack):
    hook = slack.add_hook()
    t = make("slack", hook, incident_url="https://leakwatch.example/incidents/{id}")
    assert isinstance(t, SlackTarget)
    facts = sample_facts(title="PII <script> & co sent to AI", masked_examples=("j***@e******.com", "QQ*****6C"))
    r = t.send(message(t, facts=facts))
    assert (r.outcome, r.status, r.remote_id) == ("delivered", 200, None)

    [req] = slack.requests
    assert req.method == "POST" and req.path == urlsplit(hook).path
    assert req.header("Content-Type") == "application/json" and req.auth_scheme is None
    payload = req.json()
    assert slack_errors(payload) == []
    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith("[leakwatch] HIGH incident 7: PII &lt;script&gt; &amp; co")
    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["type"] == "plain_text"
    assert blocks[0]["text"]["text"].startswith("[leakwatch] HIGH incident 7: PII <script>")  # plain text: not escaped
    fields = [f["text"] for b in blocks if "fields" in b for f in b["fields"]]
    assert "*Data subjects (approx.)*\n~251" in fields and "*Severity*\nhigh" in fields
    assert all(len(b.get("fields", [])) <= 10 for b in blocks)
    examples = [b for b in blocks if b.get("text", {}).get("text", "").startswith("*Masked examples*")]
    assert examples[0]["text"]["text"] == "*Masked examples*\n• `j***@e******.com`\n• `QQ*****6C`"
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text":
                          "Reference: `leakwatch incidents show 7` · <https://leakwatch.example/incidents/7|open in leakwatch>"}]}
    for raw in RAW_VALUES:
        assert raw not in req.body.decode()
    assert slack.messages == [(urlsplit(hook).path, payload)]
    assert t.find_delivered(message(t)) is None  # incoming webhooks cannot be asked


def test_slack_validator_refuses_what_slack_refuses(slack):
    t = make("slack", slack.add_hook())
    good = dict(message(t).body)
    for mutate in (
        lambda p: p["blocks"][0]["text"].update(type="mrkdwn"),          # header must be plain_text
        lambda p: p["blocks"][0]["text"].update(text="x" * 151),
        lambda p: p["blocks"][2]["fields"].extend(p["blocks"][2]["fields"] * 2),  # > 10 fields
        lambda p: p["blocks"].append({"type": "nonsense"}),
        lambda p: (p.pop("text"), p.pop("blocks")),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert slack_errors(bad)
    bad = copy.deepcopy(good)
    bad["blocks"][0]["text"]["type"] = "mrkdwn"
    r = t.send(Message("slack", "slack", "incident.opened", "k", bad))
    assert (r.outcome, r.status) == ("failed", 400) and "invalid_blocks" in r.error


def test_slack_canary(slack):
    t = make("slack", slack.add_hook())
    msg = message(t, "canary", extra={"target": "slack"})
    assert msg.body["text"].startswith("[leakwatch canary]") and slack_errors(msg.body) == []
    assert t.send(msg).outcome == "delivered"


def test_dead_letter_messages_are_valid(slack, teams):
    for sim, kind, check in ((slack, "slack", slack_errors), (teams, "teams", adaptive_card_errors)):
        t = make(kind, sim.add_hook())
        body = t.render("outbox.dead_letter", None, {"target": "sn", "notification_id": 3})
        assert check(body) == [] and "Notification 3 to sn could not be delivered" in json.dumps(body)
        assert t.send(Message(kind, kind, "outbox.dead_letter", "dl:3", body)).outcome == "delivered"


def test_slack_faults(slack):
    hook = slack.add_hook()
    path = urlsplit(hook).path
    t = make("slack", hook, timeout=0.4)
    slack.fail_next(path, 429, retry_after=20, body="rate_limited", content_type="text/html")
    r = t.send(message(t))
    assert (r.outcome, r.status, r.retry_after_s) == ("retry", 429, 20.0) and "rate_limited" in r.error
    slack.fail_next(path, 500, body="internal_error", content_type="text/html")
    assert (t.send(message(t)).outcome, slack.requests[-1].status) == ("retry", 500)
    slack.hang_next(path, 3.0)
    started = time.monotonic()
    r = t.send(message(t))
    assert r.outcome == "retry" and time.monotonic() - started < 2.5
    slack.drop_next(path)
    r = t.send(message(t))
    assert r.outcome == "retry"
    assert not slack.messages
    assert t.send(message(t)).outcome == "delivered"


def test_slack_errors_never_show_the_webhook_secret(slack):
    hook = slack.add_hook()
    gone = hook.replace(secret_part(hook), "revokedSecretXyz123")  # a revoked hook: 404 no_service
    t = make("slack", gone)
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("failed", 404) and "no_service" in r.error
    assert "revokedSecretXyz123" not in r.error

    slack.drop_next(urlsplit(hook).path)
    t2 = make("slack", hook, via_credentials=False)  # a plain url is treated as secret all the same
    r = t2.send(message(t2))
    assert r.outcome == "retry" and secret_part(hook) not in r.error


def test_nothing_listening_is_retried():
    with SlackWebhookSim() as s:
        hook = s.add_hook()
    t = make("slack", hook, timeout=1.0)
    r = t.send(message(t))
    assert r.outcome == "retry" and secret_part(hook) not in r.error


# --- Teams ---------------------------------------------------------------------------------------


def test_teams_adaptive_card_shape(teams):
    hook = teams.add_hook()
    t = make("teams", hook, incident_url="https://leakwatch.example/incidents/{id}")
    assert isinstance(t, TeamsTarget)
    r = t.send(message(t))
    assert (r.outcome, r.status) == ("delivered", 202)

    [req] = teams.requests
    assert req.method == "POST" and req.header("Content-Type") == "application/json"
    payload = req.json()
    assert adaptive_card_errors(payload) == []
    [att] = payload["attachments"]
    assert payload["type"] == "message" and att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["text"].startswith("[leakwatch] HIGH incident 7:") and card["body"][0]["color"] == "Attention"
    facts = {f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]}
    assert facts["Data subjects (approx.)"] == "~251" and facts["Data categories"] == "contact, national_id"
    runs = [i["text"].strip() for b in card["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    assert "j***@e******.com" in runs and "QQ*****6C" in runs  # TextRuns: the stars are not Markdown
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in leakwatch",
                                "url": "https://leakwatch.example/incidents/7"}]
    for raw in RAW_VALUES:
        assert raw not in req.body.decode()
    assert t.find_delivered(message(t)) is None


def test_teams_connector_flavour():
    with TeamsWebhookSim(flavour="connector") as s:
        t = make("teams", s.add_hook())
        r = t.send(message(t, "canary", extra={"target": "teams"}))
        assert (r.outcome, r.status) == ("delivered", 200)
        assert s.messages[0][1]["attachments"][0]["content"]["body"][0]["text"].startswith("[leakwatch canary]")


def test_teams_validator_and_refusal(teams):
    t = make("teams", teams.add_hook())
    good = dict(message(t).body)
    for mutate in (
        lambda p: p.update(type="card"),
        lambda p: p["attachments"][0].update(contentType="application/json"),
        lambda p: p["attachments"][0]["content"].update(version="2.0"),
        lambda p: p["attachments"][0]["content"]["body"][2]["facts"].append({"title": "x", "value": 3}),
        lambda p: p["attachments"][0]["content"]["body"].append({"type": "Marquee"}),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert adaptive_card_errors(bad)
    bad = copy.deepcopy(good)
    bad["attachments"][0]["content"]["version"] = "2.0"
    r = t.send(Message("teams", "teams", "incident.opened", "k", bad))
    assert (r.outcome, r.status) == ("failed", 400) and "version" in r.error


def test_teams_faults_and_redaction(teams):
    hook = teams.add_hook()
    path = urlsplit(hook).path
    t = make("teams", hook, timeout=0.4)
    teams.fail_next(path, 429, retry_after=4)
    assert t.send(message(t)).retry_after_s == 4.0
    teams.fail_next(path, 502)
    assert t.send(message(t)).outcome == "retry"
    teams.hang_next(path, 3.0)
    assert t.send(message(t)).outcome == "retry"
    teams.drop_next(path)
    assert t.send(message(t)).outcome == "retry"
    assert not teams.messages

    wrong = hook.replace(secret_part(hook), "WrongSigValue0123456789")
    r = make("teams", wrong).send(message(t))
    assert (r.outcome, r.status) == ("failed", 401) and "DirectApiAuthorizationRequired" in r.error
    assert "WrongSigValue0123456789" not in r.error


def test_configuration_errors():
    from leakwatch.errors import UsageError

    with pytest.raises(UsageError, match="not an absolute"):
        build_target(TargetConfig("s", "slack", "hooks.slack.com/services/x"), {}.get)
    t = build_target(TargetConfig("s", "slack", "", credentials={"url": "SLACK_URL"}), {}.get)
    r = t.send(Message("s", "slack", "canary", "k", {"text": "x"}))
    assert r.outcome == "failed" and "SLACK_URL" in r.error
