"""The contract between the outbox and the targets.

A notification is rendered once, when the event that causes it is stored (same transaction),
into a :class:`Message` kept in the ``outbox`` table; delivering it later needs nothing but that
row, the target's configuration and its credentials (read at send time, never stored in the
database, never logged). Each target kind implements :class:`Target`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Target kinds, the ``kind`` of a ``[[notify.targets]]`` table.
TARGET_KINDS: tuple[str, ...] = (
    "webhook", "servicenow", "jira", "jsm", "salesforce_case", "salesforce_event", "slack", "teams",
)

#: The ``options`` each kind reads (checked when the configuration is loaded: a misspelt option
#: would be ignored, and a ticket would go out without its category or project).
_COMMON_OPTIONS = frozenset({"ca_bundle", "incident_url"})
_SALESFORCE_OPTIONS = frozenset({"api_version", "domain"})
TARGET_OPTIONS: dict[str, frozenset[str]] = {
    "webhook": _COMMON_OPTIONS | {"headers"},
    "servicenow": _COMMON_OPTIONS | {"table", "category", "subcategory", "assignment_group", "caller_id",
                                     "contact_type"},
    "jira": _COMMON_OPTIONS | {"project", "issue_type", "labels", "priority", "priorities"},
    "jsm": _COMMON_OPTIONS | {"project", "service_desk_id", "request_type_id", "raise_on_behalf_of", "use_labels"},
    "salesforce_case": _COMMON_OPTIONS | _SALESFORCE_OPTIONS | {"external_id_field", "fields", "status", "origin",
                                                                "type", "reason"},
    "salesforce_event": _COMMON_OPTIONS | _SALESFORCE_OPTIONS | {"event", "event_fields"},
    "slack": _COMMON_OPTIONS,
    "teams": _COMMON_OPTIONS,
}

#: What each option holds, as TOML writes it: "string", "id" (a string or an integer), "version"
#: (a string or a number: 59.0), "flag"
#: (true/false), "strings" (a list of strings) or "table". Checked when the configuration is
#: loaded: a wrong type was found only at the first send, in the middle of an incident (labels = 5
#: stopped every incident from being opened; labels = "privacy" became one label per letter).
OPTION_TYPES: dict[str, str] = {
    "ca_bundle": "string", "incident_url": "string", "headers": "table",
    "table": "string", "category": "string", "subcategory": "string", "assignment_group": "string",
    "caller_id": "string", "contact_type": "string",
    "project": "id", "issue_type": "string", "labels": "strings", "priority": "flag", "priorities": "table",
    "service_desk_id": "id", "request_type_id": "id", "raise_on_behalf_of": "string", "use_labels": "flag",
    "api_version": "version", "domain": "string",
    "external_id_field": "string", "fields": "table", "status": "string", "origin": "string", "type": "string",
    "reason": "string", "event": "string", "event_fields": "strings",
}
assert set(OPTION_TYPES) == set().union(*TARGET_OPTIONS.values())  # every option has its type


def option_type_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for option ``name`` (None when it is the right type)."""
    want = OPTION_TYPES.get(name)
    ok = {
        "string": lambda v: isinstance(v, str),
        "id": lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)),
        "version": lambda v: isinstance(v, str) or (isinstance(v, (int, float)) and not isinstance(v, bool)),
        "flag": lambda v: isinstance(v, bool),
        "strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "table": lambda v: isinstance(v, dict),
    }.get(want)
    if ok is None or ok(value):
        return None
    return {"string": "a string", "id": "a string or an integer", "version": "a version such as \"59.0\"",
            "flag": "true or false",
            "strings": "a list of strings, e.g. [\"privacy\", \"leak\"]", "table": "a table"}[want]


#: Events a trigger rule can react to.
EVENTS: tuple[str, ...] = ("incident.opened", "incident.escalated", "deadline.approaching", "deadline.missed",
                           "step.notify", "outbox.dead_letter", "canary")


@dataclass(frozen=True)
class TargetConfig:
    """One ``[[notify.targets]]`` table.

    ``url`` is the base URL (ServiceNow/Jira instance, Salesforce instance or login URL, webhook
    endpoint). ``credentials`` maps credential names the target needs (``token``, ``user``,
    ``password``, ``secret``, ``session_id`` …) to **environment variable names** (or keys of the
    secrets file); values are looked up only when sending. ``options`` are target-specific
    (Jira ``project``/``issue_type``, JSM ``service_desk_id``/``request_type_id``, ServiceNow
    ``assignment_group``/``category``, Salesforce ``event`` name, …).
    """

    name: str
    kind: str
    url: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Message:
    """A rendered notification as the outbox stores it: ``body`` is what the target sends
    (JSON-able), built from incident facts only (masked values, counts). ``idempotency_key``
    is stable across retries and restarts."""

    target: str
    kind: str
    event: str
    idempotency_key: str
    body: Mapping[str, Any]
    incident_id: int | None = None


@dataclass(frozen=True)
class SendResult:
    """Outcome of one delivery attempt.

    ``outcome``: ``delivered`` (2xx, or found already delivered), ``retry`` (429, 5xx, timeout,
    connection error), ``failed`` (4xx other than 408/409/425/429: retrying cannot help; goes to
    the dead letters at once). ``retry_after_s`` honours ``Retry-After``. ``error`` must never
    contain a credential (targets pass it through :func:`leakwatch.notify.secrets.redact`).
    """

    outcome: str
    status: int | None = None
    remote_id: str | None = None
    retry_after_s: float | None = None
    error: str | None = None


class Target(Protocol):
    """One target kind. Instances are built from a :class:`TargetConfig` and a secret lookup."""

    config: TargetConfig

    def render(self, event: str, facts: Any, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """The request body for ``event`` about an incident (``facts``: IncidentFacts, or None for
        a canary); ``extra`` carries the event's details (deadline label and due time, step id, …)."""
        ...

    def send(self, message: Message) -> SendResult:
        """Deliver once (one HTTP request, plus the idempotency lookup where the API allows it)."""
        ...

    def find_delivered(self, message: Message) -> str | None:
        """The remote id of an earlier delivery of ``message`` (looked up by its idempotency key
        at the target) or None; targets that cannot look up return None and rely on the
        receiver deduplicating by the key they send."""
        ...
