"""Credentials of notification targets: looked up by name when a notification is sent, never
stored in the database, never logged, and cut out of every error message.

A target's ``credentials`` table maps a credential name (``token``, ``secret``, …) to the *name*
of an environment variable; when that variable is not set, the same name is looked up in the
``[notify] secrets_file`` (TOML ``KEY = "value"`` or ``KEY=VALUE`` lines), which must be private
to its owner (mode 0600 or stricter).

Every value looked up in this process is remembered (in memory only) so that :func:`redact`
can remove it, and its encodings (base64, URL-encoding, JSON escaping, HTTP Basic
``user:password``), from any text before it is stored as ``last_error`` or printed. An HTTP
library's exception may quote a URL or a header; a receiver may echo the request back.
"""
from __future__ import annotations

import base64
import json
import os
import re
import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from leakwatch.errors import UsageError

REDACTED = "[REDACTED]"

#: Shorter values are not redacted: replacing every "abc" in a message would destroy it, and a
#: credential that short protects nothing anyway.
MIN_REDACT_LEN = 4

_LOCK = threading.Lock()
_KNOWN: set[str] = set()
# What a credential's variable name looks like (upper or lower case, at most 64 characters, not
# a token: a value pasted there instead, such as "whsec_…" or "sk-…", is not echoed back).
_VAR_NAME = re.compile(r"(?!whsec_|sk_|sk-|xox|ghp_|AKIA)[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_KEY_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*\Z")


class SecretError(UsageError):
    """A credential cannot be found or read. The message names the variable or key, never a value."""


def remember(value: str) -> None:
    """Add ``value`` to the values :func:`redact` removes by default (for credentials a target
    obtains itself, e.g. an OAuth access token)."""
    if value and len(value) >= MIN_REDACT_LEN:
        with _LOCK:
            _KNOWN.add(value)


def remember_url(url: str | None) -> None:
    """Remember the secrets a target's URL itself may carry, so that :func:`redact` cuts them
    from errors that quote the URL (an HTTP library's "Max retries exceeded with url:
    /hook?token=…"): the password of ``user:password@``, query values (``?token=…``,
    ``?code=…``) and token-like path segments (letters and digits, 16 characters or more)."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        remember(unquote(password))
    for _, value in parse_qsl(parts.query):
        if len(value) >= 8:
            remember(value)
    for seg in parts.path.split("/"):
        seg = unquote(seg)
        if len(seg) >= 16 and any(c.isdigit() for c in seg) and any(c.isalpha() for c in seg):
            remember(seg)


def known_values() -> list[str]:
    """The credential values looked up in this process so far."""
    with _LOCK:
        return list(_KNOWN)


def _b64_forms(data: bytes) -> list[str]:
    std = base64.b64encode(data).decode("ascii")
    url = base64.urlsafe_b64encode(data).decode("ascii")
    return [std, std.rstrip("="), url, url.rstrip("=")]


def _forms(value: str) -> set[str]:
    """The value and the ways it gets encoded on its way into a message."""
    out = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    out.update(_b64_forms(value.encode("utf-8")))
    if value.startswith("whsec_") and len(value) > 6 + MIN_REDACT_LEN:
        out.add(value[6:])  # the key part of a Standard Webhooks secret
    return {f for f in out if len(f) >= MIN_REDACT_LEN}


def redact(text: str | None, values: Iterable[str] | None = None) -> str:
    """``text`` with every credential value in ``values`` (default: every value looked up in
    this process) and its base64, URL-encoded and JSON-escaped forms, and the HTTP Basic
    ``base64(user:password)`` of each pair, replaced by ``[REDACTED]``."""
    if not text:
        return text or ""
    vals = {v for v in (known_values() if values is None else [*values, *known_values()])
            if isinstance(v, str) and len(v) >= MIN_REDACT_LEN}
    if not vals:
        return text
    forms: set[str] = set()
    for v in vals:
        forms |= _forms(v)
    if len(vals) <= 32:  # Basic auth joins two of them; 32² pairs is still instant
        for a in vals:
            for b in vals:
                if a != b:
                    forms.update(_b64_forms(f"{a}:{b}".encode()))
    for f in sorted(forms, key=len, reverse=True):  # longest first: a value inside another
        if f in text:
            text = text.replace(f, REDACTED)
    # Any other base64 run that decodes to text holding a value: Basic auth with more values
    # known than the pairs above cover (a long-running watch with many targets), a value with a
    # prefix or suffix (``Basic base64(user:pw)``, ``base64(token + "\n")``).
    return _B64_RUN.sub(lambda m: REDACTED if _decodes_to_any(m.group(0), vals) else m.group(0), text)


_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


def _decodes_to_any(run: str, vals: set[str]) -> bool:
    body = run.rstrip("=")
    for alt in (body, body[:-1], body[:-2], body[:-3]):  # a run may end in a stray character
        if len(alt) < 8 or len(alt) % 4 == 1:
            continue
        padded = alt + "=" * (-len(alt) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                raw = decode(padded)
            except ValueError:
                continue
            plain = raw.decode("utf-8", "replace")
            if any(v in plain for v in vals):
                return True
    return False


def _unquote(raw: str, path: Path, lineno: int, key: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if raw[:1] and raw[0] in "\"'":
        raise SecretError(f"{path}:{lineno}: the value of {key} opens a quote it does not close")
    return raw


def load_secrets_file(path: str | os.PathLike) -> dict[str, str]:
    """The ``KEY → value`` pairs of a secrets file (TOML, else ``KEY=VALUE`` lines with ``#``
    comments and optional ``export``/quotes). Refuses a file other users can read. Errors name
    the file and line, never a value."""
    from leakwatch.config import ConfigError, check_secrets_file_mode

    p = Path(path)
    try:
        check_secrets_file_mode(p, "notify.secrets_file")
    except ConfigError as e:
        raise SecretError(str(e)) from None
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SecretError(f"{p}: cannot read the secrets file: {getattr(e, 'strerror', None) or type(e).__name__}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        doc = None
    # TOML when it is TOML of strings only; `PIN=1234` is valid TOML too, but as KEY=VALUE it is text.
    if doc is not None and all(isinstance(v, str) for v in doc.values()):
        return dict(doc)
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _KEY_LINE.match(line)
        if m is None:
            # Never quote the line: it may be a secret pasted without its key.
            raise SecretError(f"{p}:{lineno}: not KEY=VALUE (nor valid TOML)")
        out[m.group(1)] = _unquote(m.group(2), p, lineno, m.group(1))
    return out


class SecretStore:
    """Looks credentials up by name: the environment first, then the secrets file (read once,
    when first needed). Values go into the redaction list as they are looked up."""

    def __init__(self, secrets_file: str | os.PathLike | None = None, env: Mapping[str, str] | None = None):
        """``env`` defaults to ``os.environ`` (read at lookup time, not copied)."""
        self._file = Path(secrets_file) if secrets_file else None
        self._env = env
        self._file_values: dict[str, str] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config, env: Mapping[str, str] | None = None) -> SecretStore:
        """The store for a :class:`leakwatch.config.Config` (its ``[notify] secrets_file``)."""
        return cls(config.notify.secrets_file, env)

    def _from_file(self) -> dict[str, str]:
        with self._lock:
            if self._file_values is None:
                self._file_values = load_secrets_file(self._file) if self._file is not None else {}
                for v in self._file_values.values():
                    remember(v)
            return self._file_values

    def get(self, name: str, *, what: str = "") -> str:
        """The value of credential variable ``name``; :class:`SecretError` when neither the
        environment nor the secrets file has it (``what`` says which target asked)."""
        env = os.environ if self._env is None else self._env
        value = env.get(name)
        if value is None or value == "":
            value = self._from_file().get(name)
        if value is None or value == "":
            where = f"the secrets file {self._file}" if self._file is not None else "no [notify] secrets_file is configured"
            head = f"{what}: " if what else ""
            from leakwatch.detect.context import data_like_key

            if not _VAR_NAME.match(name) or data_like_key(name):
                # Not a variable's name: most likely the secret itself, pasted where its variable's
                # name belongs. Never echo it.
                raise SecretError(f"{head}a credential must name an environment variable (or a key of the "
                                  f"secrets file), not hold the value itself: got {len(name)} characters that "
                                  f"are not a variable name ({name[:2]}…); put the value in a variable")
            raise SecretError(f"{head}credential variable {name} is not set (environment: unset; {where}"
                              + (" has no such key)" if self._file is not None else ")"))
        remember(value)
        return value

    __call__ = get

    def for_target(self, target) -> Callable[[str], str]:
        """``secret(credential_name) -> value`` for one :class:`~leakwatch.notify.base.TargetConfig`:
        the name is mapped through its ``credentials`` table."""
        def secret(cred: str) -> str:
            var = target.credentials.get(cred)
            if var is None:
                have = ", ".join(sorted(target.credentials)) or "none"
                raise SecretError(f"target {target.name} ({target.kind}) needs credential {cred!r}: add "
                                  f"credentials = {{ {cred} = \"ENV_VAR_NAME\" }} to its [[notify.targets]] table "
                                  f"(it has: {have})")
            return self.get(var, what=f"target {target.name} credential {cred}")

        return secret
