"""Signing and verifying webhooks the Standard Webhooks way (standardwebhooks.com).

Three headers travel with each request:

- ``webhook-id``: the message id, the same on every retry of one message (receivers deduplicate
  by it; leakwatch sends the outbox row's idempotency key);
- ``webhook-timestamp``: the send time, integer Unix seconds (a new one per attempt);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``, possibly
  several space-separated (while a secret is rotated).

The secret is ``whsec_<base64 of the key bytes>``. A receiver recomputes the HMAC over the raw
body bytes it got, compares in constant time, and refuses timestamps more than 5 minutes from its
clock, so that a captured request cannot be replayed later.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets as _secrets
import time
from collections.abc import Mapping

from leakwatch.errors import LeakwatchError

SECRET_PREFIX = "whsec_"
#: Largest difference between a request's timestamp and the receiver's clock (5 minutes).
TOLERANCE_S = 300


class WebhookVerifyError(LeakwatchError):
    """A webhook request does not verify; the message says why (never the secret)."""


def new_secret(nbytes: int = 32) -> str:
    """A fresh random secret, ``whsec_`` + base64 of ``nbytes`` bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_…`` secret (the prefix is optional).

    Raises :class:`WebhookVerifyError` when the rest is not base64 (the secret is not quoted)."""
    raw = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerifyError("the webhook secret is not 'whsec_' followed by base64") from None
    if len(key) < 16:
        raise WebhookVerifyError(f"the webhook secret holds {len(key)} bytes; use at least 16 (24-64 is usual)")
    return key


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``"<msg_id>.<timestamp>.<body>"``. ``secret`` is the
    ``whsec_`` text or the key bytes."""
    key = secret if isinstance(secret, bytes) else decode_secret(secret)
    mac = hmac.new(key, f"{msg_id}.{int(timestamp)}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signed_headers(secret: str | bytes, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (``timestamp`` default: now)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def verify(secret: str | bytes, headers: Mapping[str, str], body: bytes, now: float | None = None,
           tolerance: float = TOLERANCE_S) -> str:
    """Check one request; return its ``webhook-id``.

    Raises :class:`WebhookVerifyError` saying why: a missing header, a timestamp more than
    ``tolerance`` seconds from ``now`` (default: the clock), or no ``v1`` signature that matches
    (compared in constant time). Header names are case-insensitive; ``body`` is the raw bytes.
    """
    msg_id = _header(headers, "webhook-id")
    ts_text = _header(headers, "webhook-timestamp")
    sig_text = _header(headers, "webhook-signature")
    missing = [n for n, v in (("webhook-id", msg_id), ("webhook-timestamp", ts_text), ("webhook-signature", sig_text))
               if not v]
    if missing:
        raise WebhookVerifyError(f"missing header(s): {', '.join(missing)}")
    try:
        ts = int(ts_text.strip())
    except ValueError:
        raise WebhookVerifyError(f"webhook-timestamp {ts_text[:40]!r} is not integer Unix seconds") from None
    if not 0 <= ts < 2**40:  # 0 .. year ~36812: anything else is no send time (10**400 overflowed a float)
        raise WebhookVerifyError(f"webhook-timestamp {ts_text[:40]!r} is out of range")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        # nan would let every timestamp through: the replay check is the point of the timestamp.
        raise ValueError(f"tolerance {tolerance!r}: a number of seconds from 0")
    now = time.time() if now is None else now
    if not math.isfinite(now):
        raise ValueError(f"now {now!r}: a Unix time")
    if ts < now - tolerance:
        raise WebhookVerifyError(f"timestamp is {now - ts:.0f} s old (more than {tolerance:g} s): a replay, or a clock off")
    if ts > now + tolerance:
        raise WebhookVerifyError(f"timestamp is {ts - now:.0f} s in the future (more than {tolerance:g} s): a clock off")
    expected = sign(secret, msg_id, ts, body).encode("ascii")
    found_v1 = False
    for part in sig_text.split():
        version, _, _sig = part.partition(",")
        if version != "v1":
            continue  # other schemes (v1a: asymmetric) are not ours
        found_v1 = True
        if hmac.compare_digest(part.encode("ascii", "replace"), expected):
            return msg_id
    if not found_v1:
        raise WebhookVerifyError("webhook-signature has no v1 signature")
    raise WebhookVerifyError("signature does not match (wrong secret, or the body or headers were changed)")
