"""ServiceNow incidents through the Table API.

``POST {url}/api/now/table/incident`` with a JSON record; ServiceNow answers ``201 {"result":
{… "sys_id", "number" …}}``. Urgency and impact (``"1"`` high … ``"3"`` low, sent as strings
like ServiceNow's own REST API Explorer does) come from the incident's severity, and ServiceNow
derives the priority from the two. The idempotency key travels in ``correlation_id``, the field
ServiceNow keeps for the id of a record in an external system, so a resend first asks
``GET …/incident?sysparm_query=correlation_id=<key>`` whether the ticket already exists.

Configuration (``[[notify.targets]]``, ``kind = "servicenow"``)::

    url = "https://acme.service-now.com"
    credentials = { user = "SN_USER", password = "SN_PASSWORD" }   # Basic auth, or
    credentials = { token = "SN_OAUTH_TOKEN" }                     # OAuth bearer token
    options = { assignment_group = "Security Incident Response", category = "Security",
                caller_id = "leakwatch.integration", table = "incident",
                incident_url = "https://leakwatch.example/incidents/{id}" }
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from leakwatch.errors import UsageError
from leakwatch.notify.base import Message, SendResult, TargetConfig
from leakwatch.notify.targets._common import (
    Credentials,
    SecretLookup,
    base_url,
    build_digest,
    clip,
    headline_for,
    http_call,
    lookup_error,
    new_session,
    plain_text,
    short_key,
    status_result,
)

#: severity → ServiceNow urgency and impact (1 high, 2 medium, 3 low).
SEVERITY_LEVEL: dict[str, str] = {"critical": "1", "high": "1", "medium": "2", "low": "3", "info": "3"}
SHORT_DESCRIPTION_MAX = 160  # the incident table's short_description length
DESCRIPTION_MAX = 4000       # the default length of description on the task table
CORRELATION_ID_MAX = 100     # task.correlation_id length


class ServiceNowTarget:
    """Opens a ServiceNow incident per notification (see the module docstring)."""

    def __init__(self, config: TargetConfig, secret: SecretLookup) -> None:
        self.config = config
        self.base = base_url(config)
        self.table = str(config.options.get("table") or "incident")
        self.creds = Credentials(config, secret)
        if not (self.creds.has("token") or (self.creds.has("user") and self.creds.has("password"))):
            raise UsageError(f"target {config.name!r} (servicenow) needs credentials user + password "
                             f"(Basic auth) or token (OAuth bearer)")
        self.session = new_session(config)

    # -- rendering -----------------------------------------------------------------------------

    def render(self, event: str, facts: Any, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """The incident record: short_description, description, urgency, impact and the
        configured category / assignment_group / caller_id (correlation_id is added at send)."""
        d = build_digest(event, facts, extra, self.config.options)
        level = SEVERITY_LEVEL[d.severity]
        body: dict[str, Any] = {
            "short_description": clip(headline_for(d), SHORT_DESCRIPTION_MAX),
            "description": plain_text(d, DESCRIPTION_MAX),
            "urgency": level,
            "impact": level,
            "correlation_display": "leakwatch",
        }
        for opt in ("category", "subcategory", "assignment_group", "caller_id", "contact_type"):
            value = self.config.options.get(opt)
            if value:
                body[opt] = str(value)
        return body

    # -- delivery ------------------------------------------------------------------------------

    def _auth(self) -> dict[str, Any]:
        """``auth`` / ``headers`` arguments for requests, with the secrets read now."""
        token = self.creds.get("token", required=False)
        if token:
            return {"headers": {"Authorization": f"Bearer {token}", "Accept": "application/json"}}
        user = self.creds.get("user") or ""
        password = self.creds.get("password") or ""
        return {"auth": (user, password), "headers": {"Accept": "application/json"}}

    @property
    def _table_url(self) -> str:
        return f"{self.base}/api/now/table/{self.table}"

    def send(self, message: Message) -> SendResult:
        """POST the record with ``correlation_id`` = the idempotency key."""
        what = f"ServiceNow {self.config.name}"
        try:
            auth = self._auth()
        except UsageError as e:
            return SendResult("failed", error=str(e))
        body = dict(message.body)
        body["correlation_id"] = short_key(message.idempotency_key, CORRELATION_ID_MAX)
        resp = http_call(self.session, "POST", self._table_url, what, self.creds, json=body, **auth)
        if isinstance(resp, SendResult):
            return resp
        if not 200 <= resp.status_code < 300:
            return status_result(resp, what, self.creds)
        try:
            result = resp.json()["result"]
            remote = result.get("number") or result.get("sys_id")
        except (ValueError, KeyError, TypeError, AttributeError):
            remote = None
        return SendResult("delivered", status=resp.status_code, remote_id=str(remote) if remote else None)

    def find_delivered(self, message: Message) -> str | None:
        """The number (or sys_id) of the incident whose correlation_id is the message's key.

        Raises :class:`~leakwatch.notify.targets._common.TargetLookupError` when ServiceNow
        cannot be asked now (the dispatcher retries later instead of risking a duplicate), and
        :class:`~leakwatch.errors.UsageError` when it refuses (credentials, query)."""
        what = f"ServiceNow {self.config.name} lookup"
        auth = self._auth()  # a missing credential raises UsageError: the row fails, as a send would
        key = short_key(message.idempotency_key, CORRELATION_ID_MAX)
        # ^ separates conditions of an encoded query; a literal ^ is written ^^.
        params = {"sysparm_query": f"correlation_id={key.replace('^', '^^')}",
                  "sysparm_fields": "sys_id,number", "sysparm_limit": "1"}
        resp = http_call(self.session, "GET", self._table_url, what, self.creds, params=params, **auth)
        if isinstance(resp, SendResult) or resp.status_code != 200:
            raise lookup_error(resp, what, self.creds)
        try:
            rows = resp.json()["result"]
        except (ValueError, KeyError, TypeError) as e:
            raise lookup_error(SendResult("retry", error=f"{what}: unreadable answer ({type(e).__name__})"),
                               what, self.creds) from None
        if not rows:
            return None
        row = rows[0]
        return str(row.get("number") or row.get("sys_id"))

    def close(self) -> None:
        """Close the HTTP connections."""
        self.session.close()
