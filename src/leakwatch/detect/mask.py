"""Masked previews and normalization of detected values.

A finding is stored as a keyed hash of its *normalized* value plus a *masked* preview a human can
triage from. Previews must never reveal the whole value: each style keeps at most a small,
non-identifying part (a card's last four, an email's first letter and TLD, a vendor prefix of a
key). ``get_masker(style)`` and ``get_normalizer(style)`` are the entry points; ``MASKERS`` and
``NORMALIZERS`` list the style names the rule loader accepts.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

Masker = Callable[[bytes], str]
Normalizer = Callable[[bytes], bytes]

_ELLIPSIS = "\u2026"


def _text(v: bytes) -> str:
    return v.decode("utf-8", errors="replace")


def _stars(n: int) -> str:
    return "*" * max(n, 0)


def safe_label(value: str | None) -> str | None:
    """A label stored as is (a connected app's name, a client id), unless it is an e-mail
    address (an integration user's login as the client name): then masked like one."""
    if not value:
        return value
    raw = value.encode("utf-8", "replace")
    return mask_email(raw) if b"@" in url_plain(raw) else value


def mask_actor(v: bytes) -> str:
    """A user name that is not an e-mail (``zinkerfield.bartholomew``): its first character
    only, as a person's name is masked. A Salesforce user id (005…, a record id, not a name)
    keeps the generic preview, so that two users stay apart in an alert's text."""
    s = _text(v)
    if len(s) in (15, 18) and s.startswith("005") and s.isalnum():
        return mask_generic(v)
    return (s[:1] + "***") if s else ""


def mask_generic(v: bytes) -> str:
    """First 2 and last 2 characters when the value has 10 or more, else only stars."""
    s = _text(v)
    if len(s) >= 10:
        return s[:2] + _stars(len(s) - 4) + s[-2:]
    return _stars(len(s))


def url_plain(v: bytes) -> bytes:
    """A value as written into a URL's query string, decoded where it matters for masking,
    hashing and validating: ``%2B`` → ``+``, ``%20`` → space, ``%40`` (and ``%2540``, encoded
    twice as CloudFront logs do) → ``@``, ``%28``/``%29`` → parentheses, ``%2F`` → ``/``,
    ``%2C`` → comma (a phone's area code, a date's slashes). Other bytes stay as they are."""
    if b"%" not in v:
        return v
    v = v.replace(b"%2540", b"@")
    return _URL_ESCAPES.sub(lambda m: _URL_PLAIN[m.group(0).upper()], v)


_URL_PLAIN = {b"%40": b"@", b"%2B": b"+", b"%20": b" ", b"%28": b"(", b"%29": b")", b"%2F": b"/", b"%2C": b","}
_URL_ESCAPES = re.compile(rb"%(?:40|2[0BbFfCc89])")


def mask_email(v: bytes) -> str:
    """``jane.doe@example.com`` → ``j***@e******.com``: first letter of the local part, the TLD."""
    s = _text(url_plain(v))  # URL-encoded in a query string
    local, at, domain = s.rpartition("@")
    if not at or not local or not domain:
        return mask_generic(v)
    host, dot, tld = domain.rpartition(".")
    if not dot or not host:
        return local[0] + "***@" + _stars(len(domain))
    return f"{local[0]}***@{host[0]}{_stars(len(host) - 1)}.{tld}"


_DIGITS = b"0123456789"
_ALNUM = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# bytes.translate deletion tables: everything but digits / ASCII letters and digits.
_NOT_DIGITS = bytes(c for c in range(256) if c not in _DIGITS)
_NOT_ALNUM = bytes(c for c in range(256) if c not in _ALNUM)


def _keep_last(kept: bytes, keep: int) -> str:
    s = kept.decode("ascii")
    if len(s) <= keep * 2:
        # Too short for the tail to be safe to show: keep nothing.
        return _stars(len(s))
    return _stars(len(s) - keep) + s[-keep:]


def mask_card(v: bytes) -> str:
    """All digits starred but the last four: ``************1111``."""
    return _keep_last(v.translate(None, _NOT_DIGITS), 4)


def mask_iban(v: bytes) -> str:
    """Country code and last four: ``GB****************5432``."""
    s = url_plain(v).translate(None, _NOT_ALNUM).decode("ascii").upper()
    if len(s) < 10:
        return _stars(len(s))
    return s[:2] + _stars(len(s) - 6) + s[-4:]


def mask_phone(v: bytes) -> str:
    """Last two digits, and a leading ``+`` if there was one: ``+**********58``."""
    v = url_plain(v)
    plus = "+" if v.lstrip()[:1] == b"+" else ""
    return plus + _keep_last(v.translate(None, _NOT_DIGITS), 2)


def mask_national_id(v: bytes) -> str:
    """Last two characters of the identifier (separators dropped)."""
    return _keep_last(v.translate(None, _NOT_ALNUM), 2)


# Longest first: the first that matches wins. These are public, documented formats; showing
# them tells the triager which vendor's key leaked without revealing any of the key itself.
_VENDOR_PREFIXES = tuple(
    sorted(
        (
            "sk-ant-api03-", "sk-ant-admin01-", "sk-ant-", "sk-proj-", "sk-svcacct-", "sk-admin-", "sk-",
            "AKIA", "ASIA", "AIza", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-",
            "xoxb-", "xoxp-", "xapp-", "hf_", "gsk_", "r8_", "eyJ", "00D", "whsec_", "sk_live_",
            "rk_live_", "sk_test_", "-----BEGIN ",
        ),
        key=len,
        reverse=True,
    )
)
# An unknown vendor's short prefix ("xai-", "pk_"): at most 4 characters, so even when the
# guess is wrong no more than 4 characters of the random part show.
_SHORT_PREFIX = re.compile(r"[A-Za-z]{2,3}[_-]")


def mask_secret(v: bytes) -> str:
    """Vendor prefix, an ellipsis and the length: ``sk-proj-…[164]``."""
    s = _text(v)
    for p in _VENDOR_PREFIXES:
        if s.startswith(p) and len(s) > len(p):
            return f"{p}{_ELLIPSIS}[{len(s)}]"
    m = _SHORT_PREFIX.match(s)
    if m and len(s) > 8:
        return f"{m.group()}{_ELLIPSIS}[{len(s)}]"
    return f"{_ELLIPSIS}[{len(s)}]"


def mask_password(v: bytes) -> str:
    """Eight stars whatever the length: a password's length is itself a hint."""
    return "********"


def mask_name(v: bytes) -> str:
    """First letter and three stars: ``J***``."""
    s = _text(_json_unescaped(v)).strip()
    return (s[0] + "***") if s else "***"


def mask_ip(v: bytes) -> str:
    """IPv4: first octet (``203.x.x.x``); IPv6: first group (``2001:x:…``); else generic."""
    s = _text(v)
    parts = s.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        return parts[0] + ".x.x.x"  # the common case, without ipaddress's ~5 µs parse
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return mask_generic(v)
    if ip.version == 6:
        return s.split(":", 1)[0] + ":x:" + _ELLIPSIS
    return s.split(".", 1)[0] + ".x.x.x"


_ALNUM_RE = re.compile(r"[^\W_]")  # str.isalnum() characters, any script


def mask_shape(v: bytes) -> str:
    """Every letter and digit starred, punctuation kept: dates and addresses keep their shape
    (also as written in a query string: ``03%2F14%2F1985`` → ``**/**/****``)."""
    return _ALNUM_RE.sub("*", _text(_json_unescaped(url_plain(v))))


def mask_sfid(v: bytes) -> str:
    """The key prefix (object type, e.g. ``001`` Account) and stars."""
    s = _text(v)
    return s[:3] + _stars(len(s) - 3)


def mask_redact(v: bytes) -> str:
    """Nothing at all."""
    return "[REDACTED]"


MASKERS: dict[str, Masker] = {
    "generic": mask_generic,
    "email": mask_email,
    "card": mask_card,
    "iban": mask_iban,
    "phone": mask_phone,
    "national_id": mask_national_id,
    "secret": mask_secret,
    "password": mask_password,
    "name": mask_name,
    "ip": mask_ip,
    "date": mask_shape,
    "address": mask_shape,
    "sfid": mask_sfid,
    "redact": mask_redact,
}


def get_masker(style: str) -> Masker:
    """The masking function for ``style``; ``KeyError`` if there is none."""
    try:
        return MASKERS[style]
    except KeyError:
        raise KeyError(style) from None


_WS = re.compile(rb"\s+")


def _norm_none(v: bytes) -> bytes:
    return v


def _norm_lower(v: bytes) -> bytes:
    return v.lower()


def _norm_upper(v: bytes) -> bytes:
    return v.upper()


def _norm_digits(v: bytes) -> bytes:
    # "%2B44…" and "%2B44 20…" in a query string are the number "+44…": the 2 and 0 of the
    # escapes are not its digits.
    return url_plain(v).translate(None, _NOT_DIGITS)


def _norm_pl_nrb(v: bytes) -> bytes:
    # A Polish account number is its IBAN without "PL": hashed as that IBAN, so the two join.
    return b"PL" + _norm_digits(v)


def _norm_alnum(v: bytes) -> bytes:
    return v.translate(None, _NOT_ALNUM)


def _norm_alnum_upper(v: bytes) -> bytes:
    # url_plain: the "20" of a "%20" in a query string is no part of the identifier.
    return url_plain(v).translate(None, _NOT_ALNUM).upper()


def _norm_sfid15(v: bytes) -> bytes:
    # The 18-character form only appends a case checksum; its first 15 are the ID itself.
    return v[:15]


def _norm_ip(v: bytes) -> bytes:
    if b":" not in v:
        parts = v.split(b".")
        if len(parts) == 4 and all(p.isdigit() and (len(p) == 1 or p[0] != 48) for p in parts):
            return v  # dotted IPv4 without leading zeros is already canonical
    try:
        return ipaddress.ip_address(v.decode("ascii")).compressed.encode("ascii")
    except (ValueError, UnicodeDecodeError):
        return v.lower()


def _norm_email(v: bytes) -> bytes:
    """Lowercase, with a URL-encoded @ decoded: the same address hashes the same either way."""
    return url_plain(v).lower()


_OBF_AT = re.compile(rb"\s?[\[({<]\s?(?:at|@)\s?[\])}>]\s?", re.IGNORECASE)
_OBF_DOT = re.compile(rb"\s?[\[({<]\s?(?:dot|punkt|point|punto)\s?[\])}>]\s?", re.IGNORECASE)


def _norm_email_plain(v: bytes) -> bytes:
    """An address written as "max [at] gmx [dot] de" hashed as max@gmx.de, so it joins with the
    same address written plainly."""
    return _norm_email(_OBF_DOT.sub(b".", _OBF_AT.sub(b"@", v)))


_JSON_U = re.compile(rb"\\u([0-9a-fA-F]{4})")


def _json_unescaped(v: bytes) -> bytes:
    """``v`` with JSON's ``\\uXXXX`` escapes (outside the surrogates) as UTF-8: Jos\\u00e9 is
    José, so a name written by json.dumps hashes like the same name written as UTF-8."""
    if b"\\u" not in v:
        return v

    def char(m: re.Match) -> bytes:
        cp = int(m.group(1), 16)
        return m.group(0) if 0xD800 <= cp <= 0xDFFF else chr(cp).encode("utf-8")

    return _JSON_U.sub(char, v)


def _norm_lower_ws(v: bytes) -> bytes:
    return _WS.sub(b" ", _json_unescaped(v).strip()).lower()


NORMALIZERS: dict[str, Normalizer] = {
    "none": _norm_none,
    "url": url_plain,  # as written, but read decoded in a query string: 03%2F14%2F1985 is 03/14/1985
    "lower": _norm_lower,
    "upper": _norm_upper,
    "digits": _norm_digits,
    "pl_nrb": _norm_pl_nrb,
    "alnum": _norm_alnum,
    "alnum_upper": _norm_alnum_upper,
    "sfid15": _norm_sfid15,
    "ip": _norm_ip,
    "lower_ws": _norm_lower_ws,
    "email": _norm_email,
    "email_plain": _norm_email_plain,
}


def get_normalizer(style: str) -> Normalizer:
    """The normalization applied before keyed hashing for ``style``; ``KeyError`` if unknown."""
    try:
        return NORMALIZERS[style]
    except KeyError:
        raise KeyError(style) from None
