"""Slack and Microsoft Teams incoming webhooks: one formatted message per notification.

An incoming-webhook URL is itself the credential (whoever has it can post), so it is read from
``credentials.url`` (an environment variable) when configured, and ``url`` is used only when it
is not; either way it is redacted from every error. Neither API can be asked whether a message
arrived, so ``find_delivered`` returns None and a resend after a lost answer may post twice.

**Slack** (``kind = "slack"``): ``POST`` ``{"text": <fallback>, "blocks": [header, section…,
context]}`` in mrkdwn; ``&``, ``<`` and ``>`` are escaped as Slack requires and masked values
go in inline code, so their ``*`` are not read as bold. Slack answers ``200 ok`` (text).

**Teams** (``kind = "teams"``): ``POST`` ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <Adaptive Card 1.4>}]}``, the envelope
both Teams "Workflows" webhooks and the older Office 365 connector webhooks accept. Facts go in
a FactSet, masked values in a RichTextBlock of TextRuns (TextRuns are not read as Markdown).
Workflows answer ``202``, connectors ``200 1``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from leakwatch.errors import UsageError
from leakwatch.notify.base import Message, SendResult, TargetConfig
from leakwatch.notify.targets._common import (
    Credentials,
    Digest,
    SecretLookup,
    base_url,
    build_digest,
    clip,
    headline_for,
    http_call,
    status_result,
)
from leakwatch.notify.targets._common import new_session as _new_session

# Slack Block Kit limits: header text 150, section text 3,000, 10 fields of 2,000, 50 blocks;
# Slack cuts the top-level text at 40,000 characters.
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SLACK_FIELD_MAX = 2000
SLACK_FIELDS_MAX = 10
SLACK_TEXT_MAX = 4000
# Teams refuses webhook messages over ~28 KB; a digest is ~2 KB.
TEAMS_TEXT_MAX = 2000


class _WebhookTarget:
    def __init__(self, config: TargetConfig, secret: SecretLookup) -> None:
        self.config = config
        self.creds = Credentials(config, secret)
        if not self.creds.has("url"):
            base_url(config)  # a configured plain URL must at least be one
        self.session = _new_session(config)

    def _url(self) -> str:
        if self.creds.has("url"):
            url = (self.creds.get("url") or "").strip()
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise UsageError(f"target {self.config.name!r}: credential url ({self.config.credentials['url']}) "
                                 f"is not an absolute http(s) URL")
        else:
            url = base_url(self.config)
        # The path and query of a webhook URL are its secret (the host is public knowledge).
        self.creds.remember(url)
        _, _, rest = url.partition("://")
        _, slash, path = rest.partition("/")
        if path:
            self.creds.remember(slash + path)
        return url

    def find_delivered(self, message: Message) -> str | None:
        """Always None: incoming webhooks cannot be queried."""
        return None

    def _post(self, body: Mapping[str, Any], what: str) -> SendResult:
        try:
            url = self._url()
        except UsageError as e:
            return SendResult("failed", error=str(e))
        resp = http_call(self.session, "POST", url, what, self.creds, json=dict(body))
        if isinstance(resp, SendResult):
            return resp
        if not 200 <= resp.status_code < 300:
            return status_result(resp, what, self.creds)
        return SendResult("delivered", status=resp.status_code)

    def send(self, message: Message) -> SendResult:
        """POST the rendered message."""
        return self._post(message.body, f"{self.config.kind} {self.config.name}")

    def close(self) -> None:
        """Close the HTTP connections."""
        self.session.close()


# ---------------------------------------------------------------------------------------------
# Slack


def slack_escape(text: str) -> str:
    """Text safe inside mrkdwn: the three characters Slack reserves for its markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    # A backtick inside would end the code span; masked values do not carry one in practice.
    return "`" + slack_escape(text.replace("`", "'")) + "`"


def slack_message(d: Digest) -> dict[str, Any]:
    """The Slack message (``text`` fallback + ``blocks``) of a digest."""
    headline = headline_for(d)
    fields = [{"type": "mrkdwn", "text": clip(f"*{slack_escape(k)}*\n{slack_escape(v)}", SLACK_FIELD_MAX)}
              for k, v in (*d.facts, *d.extra_lines)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(headline, SLACK_HEADER_MAX), "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(slack_escape(d.what), SLACK_SECTION_MAX)}},
    ]
    for i in range(0, len(fields), SLACK_FIELDS_MAX):
        blocks.append({"type": "section", "fields": fields[i:i + SLACK_FIELDS_MAX]})
    if d.examples:
        text = "*Masked examples*\n" + "\n".join(f"• {_code(e)}" for e in d.examples)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SLACK_SECTION_MAX)}})
    ref = f"Reference: {_code(d.reference)}"
    if d.link:
        ref += f" · <{slack_escape(d.link)}|open in leakwatch>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(ref, SLACK_SECTION_MAX)}]})
    text = f"{headline}\n{d.what}"
    return {"text": clip(slack_escape(text), SLACK_TEXT_MAX), "blocks": blocks}


class SlackTarget(_WebhookTarget):
    """Posts to a Slack incoming webhook (see the module docstring)."""

    kind = "slack"

    def render(self, event: str, facts: Any, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """``{"text", "blocks"}`` in mrkdwn."""
        return slack_message(build_digest(event, facts, extra, self.config.options))


# ---------------------------------------------------------------------------------------------
# Teams


_TEAMS_COLOR = {"critical": "Attention", "high": "Attention", "medium": "Warning", "low": "Default", "info": "Default"}


def teams_message(d: Digest) -> dict[str, Any]:
    """The Teams webhook envelope with one Adaptive Card (version 1.4) of a digest."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": clip(headline_for(d), TEAMS_TEXT_MAX), "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": _TEAMS_COLOR[d.severity]},
        {"type": "TextBlock", "text": clip(d.what, TEAMS_TEXT_MAX), "wrap": True},
        {"type": "FactSet", "facts": [{"title": k, "value": clip(v or "-", TEAMS_TEXT_MAX)}
                                      for k, v in (*d.facts, *d.extra_lines)]},
    ]
    if d.examples:
        body.append({"type": "TextBlock", "text": "Masked examples", "weight": "Bolder", "wrap": True})
        inlines: list[dict[str, Any]] = []
        for i, e in enumerate(d.examples):
            inlines.append({"type": "TextRun", "text": e + ("\n" if i < len(d.examples) - 1 else ""),
                            "fontType": "Monospace"})
        body.append({"type": "RichTextBlock", "inlines": inlines})
    body.append({"type": "RichTextBlock", "inlines": [
        {"type": "TextRun", "text": "Reference: ", "weight": "Bolder"},
        {"type": "TextRun", "text": d.reference, "fontType": "Monospace"}]})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if d.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in leakwatch", "url": d.link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


class TeamsTarget(_WebhookTarget):
    """Posts an Adaptive Card to a Teams incoming webhook (see the module docstring)."""

    kind = "teams"

    def render(self, event: str, facts: Any, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """The ``message`` envelope with one Adaptive Card."""
        return teams_message(build_digest(event, facts, extra, self.config.options))
