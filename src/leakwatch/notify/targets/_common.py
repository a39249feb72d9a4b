"""What the ticketing, Salesforce and chat targets share: the incident digest every body is
rendered from (formatted per API: plain text, ADF, Block Kit, Adaptive Cards; the generic
webhook sends :func:`leakwatch.notify.targets.render_incident_summary` instead), credential
lookup with redaction, and one HTTP attempt mapped to a :class:`~leakwatch.notify.base.SendResult`
(status and ``Retry-After`` rules are the registry's: :func:`~leakwatch.notify.targets.outcome_of_status`,
:func:`~leakwatch.notify.targets.parse_retry_after`).

The digest is built from :class:`~leakwatch.incidents.facts.IncidentFacts` fields that hold
counts, names, categories and masked previews only; nothing else of an incident reaches a body.
``extra`` (the event's details: deadline label and due time, escalation from/to, step id) comes
from leakwatch itself, never from scanned data.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from leakwatch.errors import LeakwatchError, UsageError
from leakwatch.notify import secrets as _secrets
from leakwatch.notify.base import SendResult, TargetConfig
from leakwatch.notify.targets import (
    CANARY_SUBJECT,
    USER_AGENT,
    outcome_of_status,
    parse_retry_after,
    result_of_exception,
)

if TYPE_CHECKING:
    import requests

SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
CANARY_PREFIX = CANARY_SUBJECT
# Server error text quoted in SendResult.error: enough for "field X is invalid" and a code,
# short enough for one outbox row and one CLI line.
ERROR_TEXT_MAX = 300
# Masked examples shown per message: a responder needs a few shapes to recognise the leak,
# not a list (the incident in leakwatch has all of them).
MAX_EXAMPLES = 5
MAX_LIST_ITEMS = 12

SecretLookup = Callable[[str], "str | None"]


class TargetLookupError(LeakwatchError):
    """The idempotency lookup at the target could not be answered (timeout, 5xx, refused).

    Raised by ``find_delivered`` instead of returning None, because None means "not delivered,
    send it" and a failed lookup must not turn into a duplicate ticket: the dispatcher retries
    the row later. The message is redacted."""


# ---------------------------------------------------------------------------------------------
# Credentials


class Credentials:
    """The secrets of one target, read through the ``secret`` lookup when a request is made.

    ``config.credentials`` maps a credential name (``user``, ``password``, ``token`` …) to the
    name of an environment variable or secrets-file key; ``secret(name)`` (see
    :func:`leakwatch.notify.targets.secret_for`) turns the credential name into its value.
    Every value read, and any credential the target obtains itself (a Salesforce session id,
    a webhook URL's secret path), is remembered so that :meth:`redact` removes it and its
    encodings (base64, Basic ``user:password``, URL-encoding; see
    :func:`leakwatch.notify.secrets.redact`) from any text that might carry it."""

    def __init__(self, config: TargetConfig, secret: SecretLookup) -> None:
        self._config = config
        self._secret = secret
        self._seen: set[str] = set()

    def has(self, name: str) -> bool:
        """Whether the configuration names a source for credential ``name``."""
        return bool(self._config.credentials.get(name))

    def get(self, name: str, *, required: bool = True) -> str | None:
        """The value of credential ``name`` (None when not configured and not required).

        Raises :class:`UsageError` (a :class:`~leakwatch.notify.secrets.SecretError` from the
        lookup, or ours) naming the credential and its variable, never a value."""
        var = self._config.credentials.get(name)
        if not var:
            if required:
                raise UsageError(f"target {self._config.name!r}: credential {name!r} is not configured "
                                 f"(credentials = {{ {name} = \"ENV_VAR_NAME\" }})")
            return None
        try:
            value = self._secret(name)
        except LeakwatchError:
            raise
        except Exception as e:  # noqa: BLE001 - a lookup failure must not show the secret store's text
            raise UsageError(f"target {self._config.name!r}: credential {name!r} ({var}) cannot be read: "
                             f"{type(e).__name__}") from None
        if value is None or value == "":
            if required:
                raise UsageError(f"target {self._config.name!r}: credential {name!r} ({var}) has no value")
            return None
        self.remember(value)
        return value

    def remember(self, value: str) -> None:
        """Treat ``value`` as secret from now on (in this target and, through
        :func:`leakwatch.notify.secrets.remember`, in every redacted message of the process)."""
        if value and len(value) >= _secrets.MIN_REDACT_LEN:
            self._seen.add(value)
            _secrets.remember(value)

    def redact(self, text: str) -> str:
        """``text`` without any secret seen so far (nor their encodings)."""
        return _secrets.redact(text, self._seen)


def check_options(config: TargetConfig, required: Iterable[str]) -> None:
    """Raise :class:`UsageError` naming the target and each missing option."""
    missing = [o for o in required if config.options.get(o) in (None, "")]
    if missing:
        raise UsageError(f"target {config.name!r} ({config.kind}) needs option(s) {', '.join(missing)} "
                         f"in its [notify.targets.options] table")


def base_url(config: TargetConfig, *, allow_http: bool = True) -> str:
    """``config.url`` without a trailing slash, checked to be an absolute http(s) URL."""
    url = (config.url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in (("http", "https") if allow_http else ("https",)) or not parts.netloc:
        raise UsageError(f"target {config.name!r}: url {config.url!r} is not an absolute "
                         f"{'http(s)' if allow_http else 'https'} URL")
    return url


def short_key(key: str, limit: int, prefix: str = "lw-") -> str:
    """``key`` when it fits a field of ``limit`` characters, else a stable digest of it (a
    ServiceNow ``correlation_id`` holds 100 characters, a Salesforce text field 255)."""
    if len(key) <= limit:
        return key
    return prefix + hashlib.sha256(key.encode()).hexdigest()[: max(8, limit - len(prefix))]


# ---------------------------------------------------------------------------------------------
# HTTP


def new_session(config: TargetConfig) -> requests.Session:
    """A ``requests.Session`` for one target: ``config.timeout_s`` on every request (also the
    ones simple-salesforce makes, which pass none), our User-Agent, and ``options.ca_bundle``
    (a PEM file, for a private CA) that wins over ``REQUESTS_CA_BUNDLE``."""
    import requests

    class _TargetSession(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = config.timeout_s
            return super().request(method, url, *args, **kwargs)

        def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
            # requests lets REQUESTS_CA_BUNDLE override a session's verify; a configured
            # bundle is the more specific choice. Proxies from the environment still apply.
            if verify is None and isinstance(self.verify, str):
                verify = self.verify
            return super().merge_environment_settings(url, proxies, stream, verify, cert)

    s = _TargetSession()
    s.default_timeout = config.timeout_s  # type: ignore[attr-defined]
    s.headers["User-Agent"] = USER_AGENT
    ca = config.options.get("ca_bundle")
    if ca:
        s.verify = str(ca)
    return s


retry_after_s = parse_retry_after
outcome_for_status = outcome_of_status


def server_message(resp: requests.Response) -> str:
    """The error text of a response in the shapes the targets use: ServiceNow
    ``{"error": {"message", "detail"}}``, Jira ``{"errorMessages": [], "errors": {}}``, JSM
    ``{"errorMessage"}``, Salesforce ``[{"message", "errorCode"}]``, Teams ``{"error": {"code",
    "message"}}``, or plain text (Slack)."""
    try:
        data = resp.json()
    except ValueError:
        return " ".join((resp.text or "").split())[:ERROR_TEXT_MAX]
    return error_text(data)


def error_text(data: Any) -> str:
    """Error text from a parsed error body (see :func:`server_message`)."""
    parts: list[str] = []
    if isinstance(data, list):
        for item in data[:5]:
            if isinstance(item, Mapping):
                code, msg = item.get("errorCode") or item.get("statusCode"), item.get("message")
                parts.append(f"{code}: {msg}" if code else str(msg))
    elif isinstance(data, Mapping):
        err = data.get("error")
        if isinstance(err, Mapping):
            parts += [str(err[k]) for k in ("code", "message", "detail") if err.get(k)]
        elif isinstance(err, str):
            parts.append(err)
        for m in data.get("errorMessages") or []:
            parts.append(str(m))
        errs = data.get("errors")
        if isinstance(errs, Mapping):
            parts += [f"{k}: {v}" for k, v in errs.items()]
        elif isinstance(errs, list):
            parts += [error_text(errs)] if errs else []
        if data.get("errorMessage"):
            parts.append(str(data["errorMessage"]))
    text = "; ".join(p for p in parts if p) or (str(data) if data else "")
    return " ".join(text.split())[:ERROR_TEXT_MAX]


def status_result(resp: requests.Response, what: str, creds: Credentials) -> SendResult:
    """The :class:`SendResult` of a non-2xx answer, with the server's reason, redacted."""
    status = resp.status_code
    outcome = outcome_for_status(status)
    reason = server_message(resp)
    if 300 <= status < 400:
        reason = "redirected (check the target url)"
    error = creds.redact(f"{what}: HTTP {status}" + (f": {reason}" if reason else ""))
    return SendResult(outcome, status=status,
                      retry_after_s=retry_after_s(resp.headers.get("Retry-After")) if outcome == "retry" else None,
                      error=error[: ERROR_TEXT_MAX + 80])


def transport_result(exc: Exception, what: str, creds: Credentials, timeout: float | None = None) -> SendResult:
    """A ``requests`` exception as a :class:`SendResult` (timeouts and connection errors
    retry; TLS failures and bad URLs fail), redacted."""
    return result_of_exception(exc, timeout=timeout, redact_values=creds._seen, what=what)


def http_call(session: requests.Session, method: str, url: str, what: str, creds: Credentials,
              **kwargs: Any) -> requests.Response | SendResult:
    """One request; the response (whatever its status) or, when no response came, the
    :class:`SendResult` for the transport error. Redirects are not followed: requests would turn
    a redirected POST into a GET and the notification would be lost silently."""
    import requests

    kwargs.setdefault("allow_redirects", False)
    try:
        return session.request(method, url, **kwargs)
    except requests.RequestException as e:
        return transport_result(e, what, creds, kwargs.get("timeout") or getattr(session, "default_timeout", None))


def lookup_error(result: SendResult | requests.Response, what: str, creds: Credentials) -> LeakwatchError:
    """The exception for a failed idempotency lookup: :class:`TargetLookupError` when asking
    again later may work (timeout, 429, 5xx), :class:`UsageError` when it cannot (refused
    credentials, a query the target rejects): the dispatcher fails the row instead of retrying."""
    if not isinstance(result, SendResult):
        result = status_result(result, what, creds)
    text = result.error or f"{what} failed"
    return UsageError(text) if result.outcome == "failed" else TargetLookupError(text)


# ---------------------------------------------------------------------------------------------
# The digest


@dataclass(frozen=True)
class Digest:
    """One notification reduced to what every target renders: no raw value has a field here.

    ``headline`` is the one-line subject (``[leakwatch] HIGH incident 7: …`` or
    ``[leakwatch canary] …``); ``what`` says why this message is sent now; ``facts`` are
    (label, value) pairs in display order; ``examples`` masked previews; ``reference`` the CLI
    command that shows the incident and ``link`` an URL to it when one is configured."""

    event: str
    canary: bool
    incident_id: int | None
    severity: str
    status: str
    title: str
    headline: str
    what: str
    facts: tuple[tuple[str, str], ...]
    examples: tuple[str, ...] = ()
    reference: str = ""
    link: str | None = None
    categories: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    deadline: str | None = None
    extra_lines: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _fmt_time(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, str):
        try:
            return _fmt_time(datetime.fromisoformat(value))
        except ValueError:
            return value
    return str(value)


def _fmt_count(n: int) -> str:
    return f"~{n:,}" if n else "unknown"


def _join(items: Iterable[str], limit: int = MAX_LIST_ITEMS) -> str:
    items = [i for i in items if i]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" (+{len(items) - limit} more)"
    return ", ".join(items)


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value) if not (isinstance(value, float) and math.isnan(value)) else None
    if isinstance(value, datetime):
        return _fmt_time(value)
    if isinstance(value, str):
        return " ".join(value.split())[:200] or None
    return None


def _hours(value: Any) -> str | None:
    """``12`` / ``"12h"`` / ``43200`` seconds-ish values as the lead time shown to people."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g} h"
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


# Extra keys rendered by name; others that are scalars are listed under their key, except any
# whose name suggests a credential (an event's extra is ours, but a mistake must not leak).
_KNOWN_EXTRA = {"from", "to", "label", "deadline", "deadline_label", "due", "due_at", "regime", "regime_name",
                "before", "lead", "step", "step_title", "playbook", "link", "url", "target", "sent_at", "canary_id",
                "canary", "status", "deadlines", "notification_id", "at"}
_SECRETISH = re.compile(r"secret|token|password|passwd|key|auth|cookie|session", re.IGNORECASE)


def _event_sentence(event: str, extra: Mapping[str, Any]) -> tuple[str, str | None]:
    """(why this message is sent now, the deadline text or None)."""
    label = extra.get("label") or extra.get("deadline_label") or extra.get("deadline")
    regime = extra.get("regime_name") or extra.get("regime")
    due = extra.get("due") or extra.get("due_at")
    what_deadline = " ".join(str(p) for p in (regime, f"– {label}" if label and regime else label) if p) or "a deadline"
    deadline = None
    if due or label:
        deadline = what_deadline + (f", due {_fmt_time(due)}" if due else "")
    if event == "incident.opened":
        return "A new incident was opened.", deadline
    if event == "incident.escalated":
        frm, to = extra.get("from"), extra.get("to")
        return (f"Incident severity rose from {frm} to {to}." if frm and to else "Incident severity rose."), deadline
    if event == "deadline.approaching":
        lead = _hours(extra.get("before") or extra.get("lead"))
        when = f" in {lead}" if lead else " soon"
        return f"Deadline approaching{when}: {what_deadline}" + (f" (due {_fmt_time(due)})." if due else "."), deadline
    if event == "deadline.missed":
        return f"Deadline missed: {what_deadline}" + (f" (was due {_fmt_time(due)})." if due else "."), deadline
    if event.startswith("step."):
        step = extra.get("step_title") or extra.get("step") or "a playbook step"
        pb = extra.get("playbook")
        state = extra.get("status") or event[5:]
        return f"Playbook step {step}" + (f" of {pb}" if pb else "") + f" is {state}.", deadline
    if event == "outbox.dead_letter":
        nid, target = extra.get("notification_id"), extra.get("target")
        about = " ".join(p for p in (f"Notification {nid}" if nid is not None else "A notification",
                                     f"to {target}" if target else "") if p)
        return f"{about} could not be delivered after all retries (dead letter).", deadline
    return f"Event {event}.", deadline


def _deadlines(items: Any) -> str | None:
    """``extra["deadlines"]`` (mappings with regime / label / due) as one line."""
    if not isinstance(items, list | tuple):
        return None
    out = []
    for d in items[:5]:
        if isinstance(d, Mapping):
            name = " ".join(str(d[k]) for k in ("regime", "label") if d.get(k))
            due = d.get("due")
            out.append(name + (f" due {_fmt_time(due)}" if due else "") if name or due else "")
    text = "; ".join(o for o in out if o)
    if text and len(items) > 5:
        text += f" (+{len(items) - 5} more)"
    return text or None


def build_digest(event: str, facts: Any, extra: Mapping[str, Any] | None,
                 options: Mapping[str, Any] | None = None) -> Digest:
    """The digest of ``event`` about ``facts`` (an IncidentFacts, or None for a canary).

    ``options.incident_url`` (a template with ``{id}``) adds a link to the incident."""
    extra = dict(extra or {})
    options = options or {}
    if event == "canary" or extra.get("canary"):
        sent = _fmt_time(extra.get("sent_at") or datetime.now(UTC))
        target = extra.get("target")
        lines: list[tuple[str, str]] = [("Kind", "synthetic canary: not an incident, no data involved"),
                                        ("Sent at", sent)]
        if target:
            lines.append(("Target", str(target)))
        if extra.get("canary_id"):
            lines.append(("Canary id", str(extra["canary_id"])))
        return Digest(event=event, canary=True, incident_id=None, severity="info", status="test",
                      title="synthetic test notification",
                      headline=f"{CANARY_PREFIX} synthetic test notification from leakwatch (not an incident)",
                      what="This is a leakwatch canary: it checks that notifications reach this target. "
                           "No action is needed.",
                      facts=tuple(lines), reference="leakwatch notify status")
    if facts is None:  # an event about leakwatch itself (a dead letter without an incident)
        what, deadline = _event_sentence(event, extra)
        rows = [(k.replace("_", " ").capitalize(), s) for k, v in extra.items()
                if not _SECRETISH.search(k) and (s := _scalar(v)) is not None][:10]
        return Digest(event=event, canary=False, incident_id=None, severity="medium", status="-",
                      title=what, headline=f"[leakwatch] {what}", what=what, facts=tuple(rows),
                      reference="leakwatch notify status", deadline=deadline)
    severity = str(facts.severity or "info").lower()
    if severity not in SEVERITIES:
        severity = "info"
    what, deadline = _event_sentence(event, extra)
    dests: list[str] = []
    for d in facts.destinations or ():
        where = " / ".join(p for p in (d.region, d.jurisdiction) if p)
        text = (d.vendor or "unknown vendor") + (f" ({where})" if where else "")
        if d.residency_violation:
            text += " – data residency violated"
        dests.append(text)
    rows: list[tuple[str, str]] = [
        ("Severity", severity),
        ("Status", str(facts.status)),
        ("Opened", _fmt_time(facts.opened_at)),
    ]
    if deadline:
        rows.append(("Deadline", deadline))
    open_deadlines = _deadlines(extra.get("deadlines"))
    if open_deadlines:
        rows.append(("Open deadlines", open_deadlines))
    if facts.categories:
        rows.append(("Data categories", _join(facts.categories)))
    if facts.entities:
        rows.append(("Data types", _join(facts.entities)))
    rows.append(("Data subjects (approx.)", _fmt_count(facts.data_subjects)))
    rows.append(("Records (approx.)", _fmt_count(facts.records)))
    rows.append(("Findings", f"{facts.findings:,}"))
    if dests:
        rows.append(("Destinations", _join(dests)))
    if facts.subject_jurisdictions:
        rows.append(("Subjects in", _join(facts.subject_jurisdictions)))
    if facts.systems:
        rows.append(("Systems", _join(facts.systems)))
    if facts.objects:
        rows.append(("Salesforce objects", _join(facts.objects)))
    if facts.fields:
        rows.append(("Fields", _join(facts.fields)))
    if facts.first_seen or facts.last_seen:
        seen = (f"{_fmt_time(facts.first_seen) if facts.first_seen else '?'} – "
                f"{_fmt_time(facts.last_seen) if facts.last_seen else '?'}")
        rows.append(("Seen in logs", seen))
    if facts.patterns:
        rows.append(("Patterns", _join(facts.patterns)))
    extra_lines: list[tuple[str, str]] = []
    for k, v in extra.items():
        if k in _KNOWN_EXTRA or _SECRETISH.search(k):
            continue
        s = _scalar(v)
        if s is not None and len(extra_lines) < 10:
            extra_lines.append((k.replace("_", " "), s))
    link = extra.get("link") or extra.get("url")
    template = options.get("incident_url")
    if not link and template:
        link = str(template).replace("{id}", str(facts.incident_id))
    title = " ".join(str(facts.title or "").split()) or "untitled"
    return Digest(
        event=event, canary=False, incident_id=int(facts.incident_id), severity=severity,
        status=str(facts.status), title=title,
        headline=f"[leakwatch] {severity.upper()} incident {facts.incident_id}: {title}",
        what=what, facts=tuple(rows), examples=tuple(str(x) for x in facts.masked_examples[:MAX_EXAMPLES]),
        reference=f"leakwatch incidents show {facts.incident_id}", link=str(link) if link else None,
        categories=tuple(facts.categories), destinations=tuple(dests), deadline=deadline,
        extra_lines=tuple(extra_lines),
    )


def headline_for(d: Digest) -> str:
    """The subject line with the event in front when it is not the opening of the incident."""
    if d.canary:
        return d.headline
    prefix = {"deadline.approaching": "Deadline approaching – ", "deadline.missed": "DEADLINE MISSED – ",
              "incident.escalated": "Escalated – ", "outbox.dead_letter": "Undelivered – "}.get(d.event, "")
    if d.event.startswith("step."):
        prefix = "Playbook step – "
    return prefix + d.headline


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "\u2026"


def plain_text(d: Digest, limit: int | None = None) -> str:
    """The digest as plain text (ServiceNow, JSM and Salesforce descriptions)."""
    lines = [d.headline, "", d.what, ""]
    lines += [f"{k}: {v}" for k, v in d.facts]
    lines += [f"{k}: {v}" for k, v in d.extra_lines]
    if d.examples:
        lines += ["", "Masked examples (values are never sent in clear):"] + [f"  - {e}" for e in d.examples]
    lines += ["", f"Reference: {d.reference}"]
    if d.link:
        lines.append(f"Link: {d.link}")
    if not d.canary:
        lines += ["", "Sent by leakwatch; the raw values stay in the log files and are not in this message."]
    text = "\n".join(lines)
    return clip(text, limit) if limit else text
