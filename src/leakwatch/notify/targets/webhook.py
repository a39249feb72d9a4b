"""A generic webhook, signed the Standard Webhooks way (see :mod:`leakwatch.notify.webhook_verify`).

Configuration::

    [[notify.targets]]
    name = "soc"
    kind = "webhook"
    url = "https://hooks.example.com/leakwatch"
    credentials = { secret = "LEAKWATCH_SOC_WEBHOOK_SECRET" }   # whsec_<base64>
    options = { headers = { "X-Team" = "soc" } }                  # optional static headers

The body is ``{"type": <event>, "timestamp": <ISO 8601>, "data": <incident summary>}`` (the
Standard Webhooks payload shape; ``data`` is :func:`~leakwatch.notify.targets.render_incident_summary`).
``webhook-id`` is the outbox row's idempotency key, the same on every retry and after a crash, so
a receiver that deduplicates by it sees each notification once; a webhook cannot be asked
whether a message arrived, so :meth:`WebhookTarget.find_delivered` returns None and leaves the
deduplication to the receiver. If the receiver answers JSON with an ``id``, that is the remote id.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from leakwatch.errors import LeakwatchError
from leakwatch.notify.base import Message, SendResult, TargetConfig
from leakwatch.notify.targets import new_session, post_json, render_incident_summary
from leakwatch.notify.webhook_verify import decode_secret, signed_headers

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}\Z")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]{1,200}\Z")
_RESERVED = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length", "host"}


def message_id(idempotency_key: str) -> str:
    """The ``webhook-id`` of a message: its idempotency key, or (when the key holds characters
    a header cannot carry, or is very long) ``msg_`` + a SHA-256 of it; stable either way."""
    if _HEADER_VALUE.match(idempotency_key):
        return idempotency_key
    return "msg_" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]


def _remote_id(resp) -> str | None:
    if "json" not in (resp.headers.get("Content-Type") or ""):
        return None
    data = resp.json()
    return str(data["id"]) if isinstance(data, dict) and data.get("id") is not None else None


class WebhookTarget:
    """POSTs signed JSON to ``config.url``; see the module docstring."""

    kind = "webhook"

    def __init__(self, config: TargetConfig, secret: Callable[[str], str]) -> None:
        """Credentials are read at send time, not here (rendering needs none)."""
        self.config = config
        self._secret = secret
        self._key: bytes | None = None
        self._lock = threading.Lock()
        extra = config.options.get("headers") or {}
        if not isinstance(extra, Mapping):
            raise LeakwatchError(f"target {config.name}: options.headers must be a table of header = value")
        for k, v in extra.items():
            if not _HEADER_NAME.match(str(k)) or str(k).lower() in _RESERVED or not isinstance(v, str):
                raise LeakwatchError(f"target {config.name}: options.headers.{k} is not a header leakwatch may set")
        self._headers = {str(k): v for k, v in extra.items()}
        self.session = new_session(8)

    def render(self, event: str, facts: Any, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """``{"type", "timestamp", "data"}`` for ``event``."""
        at = extra.get("sent_at") or extra.get("at") or datetime.now(UTC)
        ts = at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if isinstance(at, datetime) else str(at)
        return {"type": event, "timestamp": ts, "data": render_incident_summary(event, facts, extra)}

    def _signing_key(self) -> tuple[bytes, str]:
        with self._lock:
            value = self._secret("secret")
            if self._key is None:
                self._key = decode_secret(value)
            return self._key, value

    def check_credentials(self) -> None:
        """Raise :class:`LeakwatchError` when the signing secret is unset or not a secret:
        checked before a dispatch, so that such a target is a configuration error."""
        self._signing_key()

    def send(self, message: Message) -> SendResult:
        """One signed POST; a new ``webhook-timestamp`` (and so signature) per attempt."""
        try:
            key, raw = self._signing_key()
        except LeakwatchError as e:
            msg = str(e)  # a missing credential's message names the target already, a bad secret's not
            if f"target {self.config.name}" not in msg:
                msg = f"target {self.config.name}: {msg}"
            return SendResult("failed", error=msg)
        body = json.dumps(message.body, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
        headers = {**self._headers, **signed_headers(key, message_id(message.idempotency_key), body, int(time.time()))}
        return post_json(self.session, self.config.url, body, headers, self.config.timeout_s, remote_id=_remote_id,
                         redact_values=(raw,), what=f"webhook {self.config.name}")

    def find_delivered(self, message: Message) -> str | None:
        """Always None: a webhook cannot be asked; the receiver deduplicates by ``webhook-id``."""
        return None

    def close(self) -> None:
        """Close the HTTP connections."""
        self.session.close()
