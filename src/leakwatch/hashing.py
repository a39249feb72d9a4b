"""The keyed hash of a finding's value: one definition for the detector and the store."""
from __future__ import annotations

import hmac

try:  # hmac.digest's own fast path, without its Python-level dispatch (~0.5 µs a call)
    from _hashlib import hmac_digest as _hmac_digest
except ImportError:  # pragma: no cover - Python built without OpenSSL
    _hmac_digest = hmac.digest


def keyed_hash(key: bytes, normalized: bytes) -> str:
    """Hex HMAC-SHA256 of a normalised value under a database's key (``_core/rows.pyx`` inlines
    the same call on its hot path)."""
    return _hmac_digest(key, normalized, "sha256").hex()
