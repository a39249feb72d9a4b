"""Jira Cloud issues (REST API v3) and Jira Service Management requests.

**Jira** (``kind = "jira"``): ``POST {url}/rest/api/3/issue`` with ``fields.project.key``,
``summary`` (≤ 255 characters, one line), ``issuetype.name``, ``labels`` and a ``description``
in Atlassian Document Format (headings, paragraphs, bullet lists of the incident facts). Jira
answers ``201 {"id", "key", "self"}``; the key (``SEC-42``) is the remote id. The idempotency
key travels as a label ``leakwatch-<first 20 hex of its SHA-1>`` (labels cannot hold every
character a key may have), and a resend first searches ``labels = "<that label>"`` with
``GET /rest/api/3/search/jql``. Jira's search index can lag a few seconds behind a create, so
the lookup protects against a duplicate after a crash or a lost answer, not against two sends
within the same second (the outbox lease prevents those).

**JSM** (``kind = "jsm"``): ``POST {url}/rest/servicedeskapi/request`` with ``serviceDeskId``,
``requestTypeId`` and ``requestFieldValues`` (``summary``, ``description`` as plain text, which
is what the service desk API takes). A JSM request is a Jira issue, so with ``use_labels = true``
(the request type must show the Labels field, or JSM refuses the field) the same label is set and
the same search finds it; without, ``find_delivered`` returns None and a crash between the
create and the outbox update can leave a duplicate request.

Both authenticate with Basic auth: the account's e-mail and an API token::

    url = "https://acme.atlassian.net"
    credentials = { email = "JIRA_EMAIL", token = "JIRA_API_TOKEN" }
    options = { project = "SEC", issue_type = "Task", labels = ["privacy"],
                priority = true }            # or priorities = { critical = "P1", … }
    # JSM: options = { service_desk_id = "10", request_type_id = "25", use_labels = false }
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from leakwatch.errors import UsageError
from leakwatch.notify.base import Message, SendResult, TargetConfig
from leakwatch.notify.targets._common import (
    Credentials,
    Digest,
    SecretLookup,
    TargetLookupError,
    base_url,
    build_digest,
    check_options,
    clip,
    headline_for,
    http_call,
    lookup_error,
    new_session,
    plain_text,
    status_result,
)

SUMMARY_MAX = 255
# Jira stores a rich-text field in at most 32,767 characters of its JSON form; JSM's plain text
# the same. Staying well below leaves room for Jira's own markup.
DESCRIPTION_MAX = 30000
DEFAULT_PRIORITIES: dict[str, str] = {"critical": "Highest", "high": "High", "medium": "Medium", "low": "Low",
                                      "info": "Lowest"}
_LABEL_OK = re.compile(r"[^A-Za-z0-9_.:-]+")


def key_label(idempotency_key: str) -> str:
    """The Jira label that carries an idempotency key: ``leakwatch-`` + 20 hex digits of its
    SHA-1 (80 bits: no collision among the notifications of a lifetime)."""
    return "leakwatch-" + hashlib.sha1(idempotency_key.encode()).hexdigest()[:20]


def _label(text: str) -> str:
    # Labels cannot contain spaces; keep them readable and short.
    return _LABEL_OK.sub("-", text.strip())[:255].strip("-")


# ---------------------------------------------------------------------------------------------
# Atlassian Document Format


def _text(value: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": value}
    if marks:
        node["marks"] = list(marks)
    return node


def _para(*inline: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": [n for n in inline if n.get("text") != ""]}


def _heading(value: str, level: int = 3) -> dict[str, Any]:
    return {"type": "heading", "attrs": {"level": level}, "content": [_text(value)]}


def _bullets(items: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {"type": "bulletList", "content": [{"type": "listItem", "content": [_para(*inline)]} for inline in items]}


STRONG: dict[str, Any] = {"type": "strong"}
CODE: dict[str, Any] = {"type": "code"}


def adf_description(d: Digest) -> dict[str, Any]:
    """The digest as an ADF document: a heading, why it is sent, a bullet list of facts
    (label in bold), masked examples as inline code, and the reference / link.

    Every text node is non-empty (ADF rejects empty text), and only node types and marks of the
    published ADF schema are used (doc, heading, paragraph, bulletList, listItem, text; strong,
    code, link)."""
    content: list[dict[str, Any]] = [_heading(d.headline, 2), _para(_text(d.what))]
    content.append(_heading("Synthetic canary" if d.canary else "Incident facts"))
    content.append(_bullets([[_text(f"{k}: ", STRONG), _text(v or "-")] for k, v in (*d.facts, *d.extra_lines)]))
    if d.examples:
        content.append(_heading("Masked examples"))
        content.append(_para(_text("Values are masked; the raw values are not sent.")))
        content.append(_bullets([[_text(e, CODE)] for e in d.examples if e]))
    ref: list[dict[str, Any]] = [_text("Reference: ", STRONG), _text(d.reference, CODE)]
    if d.link:
        ref += [_text(" · "), _text("open in leakwatch", {"type": "link", "attrs": {"href": d.link}})]
    content.append(_para(*ref))
    return {"type": "doc", "version": 1, "content": content}


# ---------------------------------------------------------------------------------------------
# Shared


class _JiraBase:
    kind = "jira"

    def __init__(self, config: TargetConfig, secret: SecretLookup) -> None:
        self.config = config
        self.base = base_url(config)
        self.creds = Credentials(config, secret)
        user_name = "email" if config.credentials.get("email") else "user"
        if not (self.creds.has(user_name) and self.creds.has("token")):
            raise UsageError(f"target {config.name!r} ({config.kind}) needs credentials email (the Atlassian "
                             f"account) and token (an API token)")
        self._user_name = user_name
        self.session = new_session(config)

    def _auth(self) -> tuple[str, str]:
        user = self.creds.get(self._user_name) or ""
        token = self.creds.get("token") or ""
        return (user, token)

    def _search_label(self, label: str, what: str) -> str | None:
        """The key of an issue carrying ``label`` (JQL search), or None."""
        auth = self._auth()  # a missing credential raises UsageError: the row fails, as a send would
        jql = f'labels = "{label}"'
        project = self.config.options.get("project")
        if project:
            jql = f'project = "{project}" AND {jql}'
        resp = http_call(self.session, "GET", f"{self.base}/rest/api/3/search/jql", what, self.creds, auth=auth,
                         headers={"Accept": "application/json"},
                         params={"jql": jql, "fields": "summary", "maxResults": "1"})
        if isinstance(resp, SendResult) or resp.status_code != 200:
            raise lookup_error(resp, what, self.creds)
        try:
            issues = resp.json().get("issues") or []
        except (ValueError, AttributeError):
            raise TargetLookupError(f"{what}: unreadable answer") from None
        return str(issues[0].get("key") or issues[0].get("id")) if issues else None

    def _post(self, path: str, body: Mapping[str, Any], what: str) -> Any:
        try:
            auth = self._auth()
        except UsageError as e:
            return SendResult("failed", error=str(e))
        resp = http_call(self.session, "POST", f"{self.base}{path}", what, self.creds, json=body, auth=auth,
                         headers={"Accept": "application/json"})
        if isinstance(resp, SendResult):
            return resp
        if not 200 <= resp.status_code < 300:
            return status_result(resp, what, self.creds)
        return resp

    def close(self) -> None:
        """Close the HTTP connections."""
        self.session.close()


# ---------------------------------------------------------------------------------------------
# Jira


class JiraTarget(_JiraBase):
    """Creates a Jira Cloud issue per notification (see the module docstring)."""

    def __init__(self, config: TargetConfig, secret: SecretLookup) -> None:
        super().__init__(config, secret)
        check_options(config, ("project",))

    def _priority(self, severity: str) -> str | None:
        mapping = self.config.options.get("priorities")
        if isinstance(mapping, Mapping):
            value = mapping.get(severity)
            return str(value) if value else None
        if self.config.options.get("priority"):
            return DEFAULT_PRIORITIES[severity]
        return None

    def render(self, event: str, facts: Any, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """``{"fields": {project, summary, issuetype, description (ADF), labels[, priority]}}``;
        the idempotency label is added at send."""
        d = build_digest(event, facts, extra, self.config.options)
        labels = ["leakwatch", "leakwatch-canary" if d.canary else f"leakwatch-severity-{d.severity}"]
        labels += [_label(str(x)) for x in self.config.options.get("labels") or () if _label(str(x))]
        fields: dict[str, Any] = {
            "project": {"key": str(self.config.options["project"])},
            "summary": clip(" ".join(headline_for(d).split()), SUMMARY_MAX),
            "issuetype": {"name": str(self.config.options.get("issue_type") or "Task")},
            "description": adf_description(d),
            "labels": list(dict.fromkeys(labels)),
        }
        priority = self._priority(d.severity)
        if priority:
            fields["priority"] = {"name": priority}
        return {"fields": fields}

    def send(self, message: Message) -> SendResult:
        """POST the issue with the idempotency label added."""
        body = {**message.body, "fields": dict(message.body.get("fields") or {})}
        label = key_label(message.idempotency_key)
        body["fields"]["labels"] = [*(body["fields"].get("labels") or []), label]
        resp = self._post("/rest/api/3/issue", body, f"Jira {self.config.name}")
        if isinstance(resp, SendResult):
            return resp
        try:
            data = resp.json()
            remote = data.get("key") or data.get("id")
        except (ValueError, AttributeError):
            remote = None
        return SendResult("delivered", status=resp.status_code, remote_id=str(remote) if remote else None)

    def find_delivered(self, message: Message) -> str | None:
        """The key of the issue labelled with the message's key label, or None."""
        return self._search_label(key_label(message.idempotency_key), f"Jira {self.config.name} lookup")


# ---------------------------------------------------------------------------------------------
# Jira Service Management


class JsmTarget(_JiraBase):
    """Raises a Jira Service Management request per notification (see the module docstring)."""

    kind = "jsm"

    def __init__(self, config: TargetConfig, secret: SecretLookup) -> None:
        super().__init__(config, secret)
        check_options(config, ("service_desk_id", "request_type_id"))
        self.use_labels = bool(config.options.get("use_labels"))

    def render(self, event: str, facts: Any, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """``{"serviceDeskId", "requestTypeId", "requestFieldValues": {summary, description}}``."""
        d = build_digest(event, facts, extra, self.config.options)
        values: dict[str, Any] = {
            "summary": clip(" ".join(headline_for(d).split()), SUMMARY_MAX),
            "description": plain_text(d, DESCRIPTION_MAX),
        }
        body: dict[str, Any] = {
            "serviceDeskId": str(self.config.options["service_desk_id"]),
            "requestTypeId": str(self.config.options["request_type_id"]),
            "requestFieldValues": values,
        }
        if self.config.options.get("raise_on_behalf_of"):
            body["raiseOnBehalfOf"] = str(self.config.options["raise_on_behalf_of"])
        if self.use_labels:
            values["labels"] = ["leakwatch"]
        return body

    def send(self, message: Message) -> SendResult:
        """POST the request (with the idempotency label when ``use_labels`` is on)."""
        body = {**message.body, "requestFieldValues": dict(message.body.get("requestFieldValues") or {})}
        if self.use_labels:
            values = body["requestFieldValues"]
            values["labels"] = [*(values.get("labels") or []), key_label(message.idempotency_key)]
        resp = self._post("/rest/servicedeskapi/request", body, f"JSM {self.config.name}")
        if isinstance(resp, SendResult):
            return resp
        try:
            data = resp.json()
            remote = data.get("issueKey") or data.get("issueId")
        except (ValueError, AttributeError):
            remote = None
        return SendResult("delivered", status=resp.status_code, remote_id=str(remote) if remote else None)

    def find_delivered(self, message: Message) -> str | None:
        """With ``use_labels``: the key of the request labelled with the message's key label;
        without: None (the service desk API has no field for an external id)."""
        if not self.use_labels:
            return None
        return self._search_label(key_label(message.idempotency_key), f"JSM {self.config.name} lookup")
