"""Notification targets: the registry of kinds, and helpers every target may use.

Each kind lives in its own module and is imported only when a target of that kind is built
(``requests`` and simple-salesforce cost import time every CLI call would otherwise pay). Every
target class is built the same way: ``Cls(config: TargetConfig, secret)``, where ``secret(name)``
returns a credential: ``name`` is either the credential's name in ``config.credentials``
(``"token"``) or the variable name it maps to; nothing else can be read through it. Constructors
must not read credentials (rendering a body at enqueue time needs none); ``send`` does.

Helpers:

- :func:`post_json`: one POST, mapped to a :class:`~leakwatch.notify.base.SendResult`
  (2xx delivered; 408/409/425/429/5xx, timeouts, refused or dropped connections retry, with
  ``Retry-After`` in seconds or as an HTTP date; other statuses fail), errors redacted;
- :func:`render_incident_summary`: the JSON-able summary of an incident for one event (title,
  severity, status, counts, categories, destinations, deadlines, masked examples only), the
  common core of every target's body.
"""
from __future__ import annotations

import email.utils
import importlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from leakwatch import __version__
from leakwatch.errors import UsageError
from leakwatch.notify.base import TARGET_KINDS, SendResult, Target, TargetConfig
from leakwatch.notify.secrets import SecretError, SecretStore, redact, remember_url

#: kind → "module:Class" of its implementation.
TARGET_CLASSES: Mapping[str, str] = {
    "webhook": "leakwatch.notify.targets.webhook:WebhookTarget",
    "servicenow": "leakwatch.notify.targets.servicenow:ServiceNowTarget",
    "jira": "leakwatch.notify.targets.jira:JiraTarget",
    "jsm": "leakwatch.notify.targets.jira:JsmTarget",
    "salesforce_case": "leakwatch.notify.targets.salesforce:SalesforceCaseTarget",
    "salesforce_event": "leakwatch.notify.targets.salesforce:PlatformEventTarget",
    "slack": "leakwatch.notify.targets.chat:SlackTarget",
    "teams": "leakwatch.notify.targets.chat:TeamsTarget",
}
assert set(TARGET_CLASSES) == set(TARGET_KINDS)

USER_AGENT = f"leakwatch/{__version__}"
#: Characters of a server's answer quoted in an error: enough for "field X is invalid".
ERROR_SNIPPET = 300
#: Longest Retry-After honoured (a day): a server asking for more is treated as asking for a day.
MAX_RETRY_AFTER_S = 86_400.0

SEVERITY_NAMES = ("info", "low", "medium", "high", "critical")
CANARY_SUBJECT = "[leakwatch canary]"


# --- building targets ---------------------------------------------------------------------------


def target_class(kind: str) -> type:
    """The class implementing ``kind`` (imported now)."""
    spec = TARGET_CLASSES.get(kind)
    if spec is None:
        raise UsageError(f"unknown target kind {kind!r} (valid: {', '.join(TARGET_KINDS)})")
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"target kind {kind!r} is not available in this installation ({module}.{name}: "
                         f"{type(e).__name__})") from e


def secret_for(config: TargetConfig, lookup: Callable[[str], str]) -> Callable[[str], str]:
    """``secret(name)`` for one target: ``name`` is a credential name of ``config.credentials``
    or one of the variable names it maps to; ``lookup(variable) -> value`` reads it. Any other
    name is refused, so a target can read only the credentials its own table names."""
    def secret(name: str) -> str:
        if name in config.credentials:
            var = config.credentials[name]
        elif name in config.credentials.values():
            var = name
        else:
            have = ", ".join(sorted(config.credentials)) or "none"
            raise SecretError(f"target {config.name} ({config.kind}) needs credential {name!r}: add "
                              f"credentials = {{ {name} = \"ENV_VAR_NAME\" }} to its [[notify.targets]] table "
                              f"(it has: {have})")
        if isinstance(lookup, SecretStore):
            return lookup.get(var, what=f"target {config.name}")
        return lookup(var)

    return secret


def build_target(config: TargetConfig, secret_lookup: Callable[[str], str]) -> Target:
    """A :class:`~leakwatch.notify.base.Target` for ``config``. ``secret_lookup(variable)``
    returns a credential value by variable name (a :class:`~leakwatch.notify.secrets.SecretStore`)."""
    cls = target_class(config.kind)
    remember_url(config.url)  # a ?token= in the URL is a credential too
    return cls(config, secret_for(config, secret_lookup))


def build_targets(config, secrets: Callable[[str], str] | None = None,
                  names: Iterable[str] | None = None) -> dict[str, Target]:
    """Every configured target (or those in ``names``) of a :class:`leakwatch.config.Config`,
    by name. ``secrets`` defaults to a :class:`SecretStore` of the config."""
    secrets = secrets if secrets is not None else SecretStore.from_config(config)
    wanted = None if names is None else set(names)
    return {t.name: build_target(t, secrets) for t in config.notify.targets if wanted is None or t.name in wanted}


# --- HTTP ------------------------------------------------------------------------------------------


def new_session(pool: int = 8):
    """A ``requests.Session`` with a connection pool for ``pool`` concurrent requests, no
    automatic retries (the outbox retries, with backoff) and our User-Agent."""
    import requests
    from requests.adapters import HTTPAdapter

    s = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool), max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers["User-Agent"] = USER_AGENT
    return s


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date (RFC 9110
    §10.2.3); None when absent or unreadable. Capped at :data:`MAX_RETRY_AFTER_S`."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - (time.time() if now is None else now)), MAX_RETRY_AFTER_S)


def outcome_of_status(status: int) -> str:
    """``delivered`` (2xx), ``retry`` (408, 409, 425, 429, 5xx) or ``failed`` (anything else:
    other 4xx will not succeed by resending; a 3xx means the URL is wrong)."""
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 409, 425, 429) or status >= 500:
        return "retry"
    return "failed"


def result_of_response(resp, *, remote_id: Callable[[Any], str | None] | None = None,
                       redact_values: Iterable[str] = (), what: str = "") -> SendResult:
    """The :class:`SendResult` of an HTTP response (``remote_id(resp)`` extracts the id the
    target gave a delivered message)."""
    status = resp.status_code
    outcome = outcome_of_status(status)
    head = f"{what}: " if what else ""
    if outcome == "delivered":
        rid = None
        if remote_id is not None:
            try:
                rid = remote_id(resp)
            except (ValueError, KeyError, TypeError, AttributeError):
                rid = None  # delivered all the same; only the id is unknown
        return SendResult("delivered", status=status, remote_id=None if rid is None else str(rid))
    snippet = " ".join((resp.text or "")[:ERROR_SNIPPET].split())
    if 300 <= status < 400:
        snippet = f"redirected to {_location(resp.headers.get('Location'))}: fix the target url"
    error = redact(f"{head}HTTP {status} {resp.reason or ''}".rstrip() + (f": {snippet}" if snippet else ""), redact_values)
    retry_after = parse_retry_after(resp.headers.get("Retry-After")) if outcome == "retry" else None
    return SendResult(outcome, status=status, retry_after_s=retry_after, error=error)


def _location(value: str | None) -> str:
    """A redirect's target without what may be a credential the receiver issued (a query
    string, ``user:password@``, a fragment): enough to fix the URL, nothing to leak into the
    outbox's errors and the audit trail."""
    from urllib.parse import urlsplit, urlunsplit

    if not value:
        return "?"
    try:
        p = urlsplit(value.strip())
        host = p.hostname or ""
        netloc = host + (f":{p.port}" if p.port else "") if host else ""
    except ValueError:
        return "an unreadable location"
    cut = " (query left out)" if p.query or p.fragment or p.username else ""
    return (urlunsplit((p.scheme, netloc, p.path, "", "")) or "?") + cut


def result_of_exception(exc: Exception, *, timeout: float | None = None, redact_values: Iterable[str] = (),
                        what: str = "") -> SendResult:
    """The :class:`SendResult` of a ``requests`` exception: timeouts and connection errors
    (refused, reset, dropped mid-answer) retry; TLS failures and bad URLs fail."""
    import requests

    head = f"{what}: " if what else ""
    text = " ".join(str(exc).split())[:ERROR_SNIPPET]
    if isinstance(exc, requests.exceptions.SSLError):
        return SendResult("failed", error=redact(f"{head}TLS verification failed: {text}", redact_values))
    if isinstance(exc, requests.exceptions.Timeout):
        limit = f" within {timeout:g} s" if timeout else ""
        return SendResult("retry", error=redact(f"{head}no answer{limit} ({type(exc).__name__})", redact_values))
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return SendResult("retry", error=redact(f"{head}connection failed ({type(exc).__name__}): {text}", redact_values))
    return SendResult("failed", error=redact(f"{head}{type(exc).__name__}: {text}", redact_values))


def post_json(session, url: str, body: Mapping[str, Any] | bytes | str, headers: Mapping[str, str] | None = None,
              timeout: float = 10.0, *, remote_id: Callable[[Any], str | None] | None = None,
              redact_values: Iterable[str] = (), what: str = "") -> SendResult:
    """POST ``body`` (a mapping is sent as compact JSON; bytes as they are) and map the answer:
    see :func:`result_of_response` and :func:`result_of_exception`. Redirects are not
    followed (requests would turn the POST into a GET and drop the body). Errors never
    contain a credential: they pass through :func:`~leakwatch.notify.secrets.redact`."""
    import requests

    if isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    hdrs = {"Content-Type": "application/json", **dict(headers or {})}
    try:
        resp = session.post(url, data=data, headers=hdrs, timeout=timeout, allow_redirects=False)
    except requests.RequestException as e:
        return result_of_exception(e, timeout=timeout, redact_values=redact_values, what=what)
    try:
        return result_of_response(resp, remote_id=remote_id, redact_values=redact_values, what=what)
    finally:
        resp.close()


# --- rendering -------------------------------------------------------------------------------------


def _iso(t: Any) -> str | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(t)


def _subject(event: str, facts: Any, extra: Mapping[str, Any]) -> str:
    if facts is None:
        if event == "canary":
            return f"{CANARY_SUBJECT} synthetic test notification to {extra.get('target', '?')} (not an incident)"
        if event == "outbox.dead_letter":
            return f"[leakwatch] notification {extra.get('notification_id', '?')} to {extra.get('target', '?')} " \
                   f"could not be delivered"
        return f"[leakwatch] {event}"
    head = f"[leakwatch] {str(facts.severity).upper()} incident {facts.incident_id}"
    deadline = " ".join(str(x) for x in (extra.get("regime"), extra.get("label")) if x)
    if event == "incident.opened":
        return f"{head} opened: {facts.title}"
    if event == "incident.escalated":
        return f"{head} escalated {extra.get('from', '?')} → {extra.get('to', '?')}: {facts.title}"
    if event == "deadline.approaching":
        return f"{head}: {deadline} due {extra.get('due', '?')} (within {extra.get('before', '?')})"
    if event == "deadline.missed":
        return f"{head}: DEADLINE MISSED: {deadline} was due {extra.get('due', '?')}"
    if event.startswith("step."):
        return f"{head}: step {extra.get('step_title') or extra.get('step', '?')} is {extra.get('status', event[5:])}"
    if event == "outbox.dead_letter":
        return f"{head}: notification to {extra.get('target', '?')} could not be delivered"
    return f"{head}: {event}"


def render_incident_summary(event: str, facts: Any, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The summary every target's body is built from: JSON-able, masked values only.

    ``facts`` is an :class:`~leakwatch.incidents.facts.IncidentFacts` (None for a canary or a
    dead letter without incident); ``extra`` the event's details (``deadlines``: the incident's
    open deadlines; ``regime``/``label``/``due``/``before`` of a deadline event;
    ``playbook``/``step``/``status`` of a step; ``target``/``notification_id`` of a dead letter).
    A canary is marked ``"canary": true`` and its subject starts with ``[leakwatch canary]``."""
    extra = dict(extra or {})
    out: dict[str, Any] = {"event": event, "canary": event == "canary" or bool(extra.get("canary")),
                           "subject": _subject(event, facts, extra)}
    detail = {k: v for k, v in extra.items() if k not in ("deadlines", "canary")}
    if detail:
        out["detail"] = json.loads(json.dumps(detail, default=_iso))
    if facts is None:
        out["incident"] = None
        if out["canary"]:
            out["summary"] = "Synthetic canary from leakwatch: checks that notifications reach this target. No action needed."
        return out
    out["incident"] = {
        "id": facts.incident_id, "title": facts.title, "severity": facts.severity, "status": facts.status,
        "opened_at": _iso(facts.opened_at), "aware_at": _iso(facts.clock_events.get("awareness")),
        "first_seen": _iso(facts.first_seen), "last_seen": _iso(facts.last_seen),
    }
    out["counts"] = {"findings": facts.findings, "records": facts.records, "data_subjects": facts.data_subjects}
    out["categories"] = list(facts.categories)
    out["entities"] = list(facts.entities)
    out["patterns"] = list(facts.patterns)
    out["systems"] = list(facts.systems)
    out["destinations"] = [{"vendor": d.vendor, "region": d.region, "jurisdiction": d.jurisdiction,
                            "residency_violation": d.residency_violation, "data_subjects": d.data_subjects,
                            "records": d.records} for d in facts.destinations]
    out["deadlines"] = json.loads(json.dumps(list(extra.get("deadlines") or []), default=_iso))
    out["masked_examples"] = list(facts.masked_examples)
    parts = [f"{facts.severity} incident {facts.incident_id} ({facts.status}): {facts.title}",
             f"{facts.findings:,} findings in ~{facts.records:,} records, ~{facts.data_subjects:,} data subjects"]
    if facts.categories:
        parts.append("categories: " + ", ".join(facts.categories))
    out["summary"] = "; ".join(parts)
    return out
