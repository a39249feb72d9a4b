"""Salesforce Cases and Platform Events, through simple-salesforce.

**Case** (``kind = "salesforce_case"``): ``sf.Case.create({Subject ≤ 255, Description ≤ 32,000,
Status, Priority, Origin, Type, Reason, …})``, i.e. ``POST /services/data/vNN.N/sobjects/Case/``
→ ``201 {"id", "success": true, "errors": []}``; the Case id is the remote id. With
``options.external_id_field`` (a Text field on Case, ideally marked *External ID* and *Unique*,
e.g. ``Leakwatch_Key__c``) the idempotency key is stored in it and a resend first runs
``SELECT Id FROM Case WHERE Leakwatch_Key__c = '<key>'``; without it there is no lookup.

**Platform Event** (``kind = "salesforce_event"``): ``POST …/sobjects/<Name>__e/`` (``options.event``,
default ``Leak_Alert__e``) with the fields below; Salesforce answers ``201 {"id", "success": true,
"errors": []}``. Events cannot be queried, so ``find_delivered`` returns None: a resend after a
lost answer publishes the event again and subscribers (a Flow or Apex trigger) deduplicate by
``Idempotency_Key__c``. The event must define the fields it receives (``options.event_fields``
narrows the list)::

    Idempotency_Key__c (Text 255)   Event_Type__c (Text 40)   Incident_Id__c (Number)
    Severity__c (Text 20)   Status__c (Text 20)   Summary__c (Text 255)   Details__c (Long Text)
    Categories__c (Text 255)   Data_Subjects__c (Number)   Records__c (Number)
    Destinations__c (Text 255)   Deadline__c (Text 255)   Reference__c (Text 255)   Canary__c (Checkbox)

Credentials: ``session_id`` (with ``url`` = the instance URL), or ``username``, ``password`` and
``security_token`` (SOAP login at ``options.domain``: ``login``, ``test``, a My Domain such as
``acme.my`` or an ``https://`` URL; default ``url``). After a 401 a password login logs in again
once. Salesforce-side limits (``REQUEST_LIMIT_EXCEEDED``), 429 and 5xx are retried, honouring
``Retry-After``; malformed requests, refused logins and unknown objects are not.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from leakwatch.errors import UsageError
from leakwatch.notify.base import Message, SendResult, TargetConfig
from leakwatch.notify.targets._common import (
    Credentials,
    SecretLookup,
    build_digest,
    clip,
    error_text,
    headline_for,
    lookup_error,
    outcome_for_status,
    plain_text,
    retry_after_s,
    short_key,
    transport_result,
)
from leakwatch.notify.targets._common import new_session as _new_session

DEFAULT_API_VERSION = "60.0"
DEFAULT_EVENT = "Leak_Alert__e"
SUBJECT_MAX = 255
DESCRIPTION_MAX = 32000
TEXT_MAX = 255
#: severity → Case Priority (the standard picklist values).
CASE_PRIORITY: dict[str, str] = {"critical": "High", "high": "High", "medium": "Medium", "low": "Low", "info": "Low"}
EVENT_FIELDS: tuple[str, ...] = (
    "Idempotency_Key__c", "Event_Type__c", "Incident_Id__c", "Severity__c", "Status__c", "Summary__c", "Details__c",
    "Categories__c", "Data_Subjects__c", "Records__c", "Destinations__c", "Deadline__c", "Reference__c", "Canary__c",
)
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_VERSION = re.compile(r"^\d{2,3}\.\d$")


class _SalesforceTarget:
    """Login, the client and the mapping of simple-salesforce errors, shared by both kinds."""

    kind = ""

    def __init__(self, config: TargetConfig, secret: SecretLookup) -> None:
        from leakwatch.salesforce.pull import login_url, normalize_instance_url

        self.config = config
        self.creds = Credentials(config, secret)
        self.api_version = str(config.options.get("api_version") or DEFAULT_API_VERSION)
        if not _VERSION.match(self.api_version):
            raise UsageError(f"target {config.name!r}: api_version {self.api_version!r} is not like 60.0")
        if self.creds.has("session_id"):
            self.password_login = False
            self.instance_url = normalize_instance_url(config.url)
            self.login_url = None
        elif self.creds.has("username") and self.creds.has("password"):
            self.password_login = True
            self.instance_url = None
            self.login_url = login_url(str(config.options.get("domain") or config.url or "login"))
        else:
            raise UsageError(f"target {config.name!r} ({config.kind}) needs credentials session_id (with url = the "
                             f"instance URL) or username, password and security_token")
        self.session = _new_session(config)
        self._local = threading.local()
        self.session.hooks["response"].append(self._remember_response)
        self._sf: Any = None
        self._lock = threading.Lock()

    # -- client --------------------------------------------------------------------------------

    def _remember_response(self, resp: Any, *args: Any, **kwargs: Any) -> None:
        # simple-salesforce's exceptions keep status and body but not the headers; Retry-After
        # is read from here (per thread: the dispatcher may send from several).
        self._local.retry_after = resp.headers.get("Retry-After")

    def _client(self) -> Any:
        from simple_salesforce import Salesforce, SalesforceLogin

        with self._lock:
            if self._sf is not None:
                return self._sf
            if not self.password_login:
                sid = self.creds.get("session_id") or ""
                self._remember_session(sid)
                self._sf = Salesforce(session_id=sid, instance_url=self.instance_url, session=self.session,
                                      version=self.api_version)
                return self._sf
            username = self.creds.get("username") or ""
            password = self.creds.get("password") or ""
            token = self.creds.get("security_token", required=False) or ""
            self.creds.remember(password + token)
            sid, instance = SalesforceLogin(username=username, password=password, security_token=token,
                                            sf_version=self.api_version, session=self.session,
                                            scratch_url=self.login_url)
            self._remember_session(sid)
            self._sf = Salesforce(session_id=sid, instance=instance, session=self.session, version=self.api_version)
            return self._sf

    def _remember_session(self, sid: str) -> None:
        self.creds.remember(sid)
        if "!" in sid:  # "<org id>!<token>": the token part alone is the secret
            self.creds.remember(sid.split("!", 1)[1])

    def _run(self, what: str, call: Callable[[Any], Any]) -> Any:
        """``call(sf)``, or the :class:`SendResult` its failure maps to."""
        import requests
        from simple_salesforce.exceptions import (
            SalesforceAuthenticationFailed,
            SalesforceError,
            SalesforceExpiredSession,
            SalesforceMalformedRequest,
            SalesforceRefusedRequest,
            SalesforceResourceNotFound,
        )

        for attempt in (1, 2):
            self._local.retry_after = None
            try:
                return call(self._client())
            except UsageError as e:
                return SendResult("failed", error=str(e))
            except SalesforceAuthenticationFailed as e:
                code = getattr(e, "code", None)
                if isinstance(code, int) and (code >= 500 or code == 429):
                    return SendResult("retry", status=code, error=f"{what}: the login service answered {code}",
                                      retry_after_s=retry_after_s(self._local.retry_after))
                code_text = code if isinstance(code, str) and re.fullmatch(r"[A-Z_]{1,60}", code) else "refused"
                return SendResult("failed", status=401, error=self.creds.redact(
                    f"{what}: Salesforce refused the login at {self.login_url} ({code_text})"))
            except SalesforceExpiredSession as e:
                with self._lock:
                    self._sf = None
                if self.password_login and attempt == 1:
                    continue  # a session ended (timeout, logout): log in again once
                return self._error_result(what, e, "failed")
            except SalesforceMalformedRequest as e:
                return self._error_result(what, e, "failed")
            except SalesforceRefusedRequest as e:
                limited = "REQUEST_LIMIT_EXCEEDED" in error_text(e.content)
                return self._error_result(what, e, "retry" if limited else "failed")
            except SalesforceResourceNotFound as e:
                return self._error_result(what, e, "failed", hint="is the object deployed and visible to this user?")
            except SalesforceError as e:
                status = getattr(e, "status", None)
                return self._error_result(what, e, outcome_for_status(status) if isinstance(status, int) else "failed")
            except requests.RequestException as e:
                return transport_result(e, what, self.creds)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error_result(self, what: str, e: Any, outcome: str, hint: str = "") -> SendResult:
        status = getattr(e, "status", None)
        detail = error_text(getattr(e, "content", None)) if getattr(e, "content", None) else ""
        text = f"{what}: HTTP {status}" + (f": {detail}" if detail else "") + (f" ({hint})" if hint else "")
        return SendResult(outcome, status=status if isinstance(status, int) else None,
                          retry_after_s=retry_after_s(self._local.retry_after) if outcome == "retry" else None,
                          error=self.creds.redact(text))

    @staticmethod
    def _created(what: str, result: Any) -> SendResult:
        if isinstance(result, SendResult):
            return result
        if isinstance(result, Mapping) and result.get("success") is not False and result.get("id"):
            return SendResult("delivered", status=201, remote_id=str(result["id"]))
        return SendResult("failed", status=201, error=f"{what}: not created: {error_text(result) or 'no id returned'}")

    def close(self) -> None:
        """Close the HTTP connections."""
        self.session.close()


class SalesforceCaseTarget(_SalesforceTarget):
    """Opens a Salesforce Case per notification (see the module docstring)."""

    kind = "salesforce_case"

    def __init__(self, config: TargetConfig, secret: SecretLookup) -> None:
        super().__init__(config, secret)
        field = config.options.get("external_id_field")
        if field is not None and not _API_NAME.match(str(field)):
            raise UsageError(f"target {config.name!r}: external_id_field {field!r} is not a field API name")
        self.external_id_field = str(field) if field else None
        # Said by 'notify dispatch' when it starts: without the field a Case whose answer was lost
        # cannot be found again, and the retry opens a second one.
        self.duplicate_risk = None if field else (
            f"target {config.name!r} (salesforce_case) has no options.external_id_field: a Case whose answer is "
            f"lost (a dropped connection) cannot be looked up, and its retry opens a second Case; add a Text "
            f"field marked External ID and Unique and name it there")
        static = config.options.get("fields") or {}
        if not isinstance(static, Mapping) or not all(_API_NAME.match(str(k)) for k in static):
            raise UsageError(f"target {config.name!r}: options.fields must map field API names to values")
        self.static_fields = dict(static)

    def render(self, event: str, facts: Any, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """The Case fields: Subject, Description, Status, Priority, Origin and the configured
        Type / Reason / static ``fields`` (the external id is added at send)."""
        d = build_digest(event, facts, extra, self.config.options)
        o = self.config.options
        body: dict[str, Any] = {
            "Subject": clip(" ".join(headline_for(d).split()), SUBJECT_MAX),
            "Description": plain_text(d, DESCRIPTION_MAX),
            "Status": str(o.get("status") or "New"),
            "Priority": CASE_PRIORITY[d.severity],
            "Origin": str(o.get("origin") or "leakwatch"),
        }
        for opt, name in (("type", "Type"), ("reason", "Reason")):
            if o.get(opt):
                body[name] = str(o[opt])
        body.update(self.static_fields)
        return body

    def send(self, message: Message) -> SendResult:
        """``sf.Case.create`` with the idempotency key in the external id field (if any)."""
        body = dict(message.body)
        if self.external_id_field:
            body[self.external_id_field] = short_key(message.idempotency_key, TEXT_MAX)
        what = f"Salesforce Case {self.config.name}"
        return self._created(what, self._run(what, lambda sf: sf.Case.create(body)))

    def find_delivered(self, message: Message) -> str | None:
        """The Id of the Case whose external id field holds the key; None without that field."""
        if not self.external_id_field:
            return None
        from simple_salesforce.format import format_soql

        what = f"Salesforce Case {self.config.name} lookup"
        soql = format_soql(f"SELECT Id FROM Case WHERE {self.external_id_field} = {{}} LIMIT 1",
                           short_key(message.idempotency_key, TEXT_MAX))
        result = self._run(what, lambda sf: sf.query(soql))
        if isinstance(result, SendResult):  # retry → TargetLookupError, failed → UsageError
            raise lookup_error(result, what, self.creds)
        records = result.get("records") or []
        return str(records[0]["Id"]) if records else None


class PlatformEventTarget(_SalesforceTarget):
    """Publishes a Salesforce Platform Event per notification (see the module docstring)."""

    kind = "salesforce_event"

    def __init__(self, config: TargetConfig, secret: SecretLookup) -> None:
        super().__init__(config, secret)
        self.event = str(config.options.get("event") or DEFAULT_EVENT)
        if not (_API_NAME.match(self.event) and self.event.endswith("__e")):
            raise UsageError(f"target {config.name!r}: event {self.event!r} is not a platform event API name "
                             f"(Name__e)")
        wanted = config.options.get("event_fields")
        self.fields = tuple(str(f) for f in wanted) if wanted else EVENT_FIELDS
        unknown = set(self.fields) - set(EVENT_FIELDS)
        if unknown:
            raise UsageError(f"target {config.name!r}: unknown event_fields {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(EVENT_FIELDS)})")

    def render(self, event: str, facts: Any, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """The event's fields (Idempotency_Key__c is added at send)."""
        d = build_digest(event, facts, extra, self.config.options)
        values: dict[str, Any] = {
            "Event_Type__c": event[:40],
            "Incident_Id__c": d.incident_id,
            "Severity__c": d.severity,
            "Status__c": d.status[:20],
            "Summary__c": clip(" ".join(headline_for(d).split()), TEXT_MAX),
            "Details__c": plain_text(d, DESCRIPTION_MAX),
            "Categories__c": clip(", ".join(d.categories), TEXT_MAX) or None,
            "Data_Subjects__c": facts.data_subjects if facts is not None and not d.canary else None,
            "Records__c": facts.records if facts is not None and not d.canary else None,
            "Destinations__c": clip("; ".join(d.destinations), TEXT_MAX) or None,
            "Deadline__c": clip(d.deadline, TEXT_MAX) if d.deadline else None,
            "Reference__c": clip(d.link or d.reference, TEXT_MAX),
            "Canary__c": d.canary,
        }
        return {k: v for k, v in values.items() if k in self.fields and v is not None}

    def send(self, message: Message) -> SendResult:
        """``POST …/sobjects/<event>/`` with ``Idempotency_Key__c``."""
        body = dict(message.body)
        body["Idempotency_Key__c"] = short_key(message.idempotency_key, TEXT_MAX)
        what = f"Salesforce event {self.config.name}"
        return self._created(what, self._run(what, lambda sf: getattr(sf, self.event).create(body)))

    def find_delivered(self, message: Message) -> str | None:
        """Always None: published events cannot be queried; subscribers deduplicate by
        ``Idempotency_Key__c``."""
        return None
