"""Validators: second opinions on regex candidates (checksums, ranges, entropy).

A validator takes the value bytes (the rule's ``value`` group, or the whole match) and returns
``True`` when the value is plausible. They run once per regex candidate, so the factories do the
setup (tables, compiled regexes, constants) and the returned closures only test.

``get_validator(name, params)`` is the only entry point the loader and the evaluator use;
``VALIDATORS`` lists the names and the parameters each accepts.
"""
from __future__ import annotations

import base64
import binascii
import datetime as _dt
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from stdnum.de import idnr as _de_idnr
from stdnum.es import dni as _es_dni
from stdnum.es import nie as _es_nie
from stdnum.fr import nir as _fr_nir
from stdnum.it import codicefiscale as _it_cf
from stdnum.nl import bsn as _nl_bsn
from stdnum.pl import pesel as _pl_pesel

from leakwatch.detect.context import fold_accents
from leakwatch.detect.mask import url_plain
from leakwatch._core.fastval import luhn as _c_luhn
from leakwatch._core.fastval import sfid_suffix as _c_sfid_suffix
from leakwatch._core.fastval import shannon_entropy as _c_entropy

Validator = Callable[[bytes], bool]

# Separators people and systems put inside numbers: space, dash, dot, slash, parentheses.
_SEPARATORS = b" -./()\t+"  # "+": a space in a query string


def _strip(value: bytes) -> bytes:
    return value.translate(None, _SEPARATORS)


def _luhn(_: Mapping[str, Any]) -> Validator:
    return _c_luhn


# IBAN length per country (ISO 13616 registry, SWIFT release 2024).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
# A=10 … Z=35, as ISO 7064 mod 97-10 wants the letters spelled out in decimal.
_IBAN_DIGITS = {ord(c): str(i + 10) for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
_IBAN_SHAPE = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]+\Z")


def _iban_v(_: Mapping[str, Any]) -> Validator:
    lengths = _IBAN_LENGTHS
    spell = _IBAN_DIGITS

    def check(v: bytes) -> bool:
        # Own mod-97 rather than stdnum.iban: ~1.5 µs instead of ~25 µs per candidate.
        # "+" and "%20": the spaces of a query string (iban=DE89+3704+…).
        s = url_plain(v).decode("latin-1").replace(" ", "").replace("-", "").replace("+", "").upper()
        if lengths.get(s[:2]) != len(s) or not _IBAN_SHAPE.match(s):
            return False
        return int((s[4:] + s[:4]).translate(spell)) % 97 == 1

    return check


def _pl_nrb(params: Mapping[str, Any]) -> Validator:
    iban = _iban_v(params)

    def check(v: bytes) -> bool:
        # A Polish account number (NRB) is the IBAN without its "PL": 26 digits, same check.
        digits = url_plain(v).translate(None, b" -+")
        return len(digits) == 26 and digits.isdigit() and iban(b"PL" + digits)

    return check


# Key prefix (3), pod (2), the reserved '0', record number (9), optional checksum (3).
_SFID_BASE62 = re.compile(rb"[0-9A-Za-z]{5}0[0-9A-Za-z]{9}(?:[A-Z0-5]{3})?\Z")


def _sfid(_: Mapping[str, Any]) -> Validator:
    shape = _SFID_BASE62.match

    def check(v: bytes) -> bool:
        if not shape(v):
            return False
        # An all-digit "ID" is far more often an order or trace number than a real record ID,
        # whose 4th-5th characters (the pod) and record part almost always hold a letter.
        if v[:15].isdigit():
            return False
        if len(v) == 18:
            return _c_sfid_suffix(v) == v[15:].decode("ascii")
        return True

    return check


def _us_ssn(_: Mapping[str, Any]) -> Validator:
    def check(v: bytes) -> bool:
        d = _strip(v)
        if len(d) != 9 or not d.isdigit():
            return False
        area, group, serial = d[:3], d[3:5], d[5:]
        if area == b"000" or area == b"666" or area[0] == 57:  # 9xx: ITINs / never issued
            return False
        if group == b"00" or serial == b"0000":
            return False
        # Publicly burned numbers (advertising card 078-05-1120, 219-09-9999).
        return d not in (b"078051120", b"219099999")

    return check


def _entropy(params: Mapping[str, Any]) -> Validator:
    threshold = float(params.get("min", 3.5))
    min_len = int(params.get("min_len", 0))

    def check(v: bytes) -> bool:
        return len(v) >= min_len and _c_entropy(v) >= threshold

    return check


_DIGIT = frozenset(b"0123456789")
_LETTER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


# The name of a secret, not the secret: a lower-case path of two folders or more
# (prod/payments/stripe-api-XyZ123 in a Secrets Manager ARN, projects/123/secrets/oauth/versions/3,
# a Vault kv/data/prod/app). A base64 key has upper-case letters in its first parts.
_RESOURCE_PATH = re.compile(rb"[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*/")


def _token(params: Mapping[str, Any]) -> Validator:
    threshold = float(params.get("min", 3.5))
    min_len = int(params.get("min_len", 16))
    no_paths = bool(params.get("no_paths", False))

    def check(v: bytes) -> bool:
        # Identifiers like "my_application_key_name" reach 3.6 bits/byte; random keys of 16+
        # characters almost always mix in a digit (a 32-char base62 key lacks one 0.4% of the time).
        if len(v) < min_len or _c_entropy(v) < threshold:
            return False
        if no_paths and _RESOURCE_PATH.match(v):
            return False
        chars = set(v)
        return not chars.isdisjoint(_DIGIT) and not chars.isdisjoint(_LETTER)

    return check


def _stdnum(module) -> Callable[[Mapping[str, Any]], Validator]:
    def factory(_: Mapping[str, Any]) -> Validator:
        is_valid = module.is_valid

        # stdnum costs 5-15 µs a call; the same customer's ID recurs across a log.
        @functools.lru_cache(maxsize=4096)
        def check(v: bytes) -> bool:
            # Dots between groups (72.996.991-M, 1234.56.782) are print format, not the number.
            return is_valid(v.decode("latin-1").replace(".", ""))

        return check

    return factory


# UK National Insurance number prefixes (HMRC): first letter never D F I Q U V, second never
# D F I O Q U V, and these pairs are not allocated.
_NINO_BAD_PAIRS = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_NINO = re.compile(r"([A-CEGHJ-PR-TW-Z])([A-CEGHJ-NPR-TW-Z])(\d{6})([A-D])\Z")


def _uk_nino(_: Mapping[str, Any]) -> Validator:
    def check(v: bytes) -> bool:
        s = v.decode("latin-1").replace(" ", "").replace("+", "").upper()  # "+": a space in a query string
        m = _NINO.match(s)
        return bool(m) and (m.group(1) + m.group(2)) not in _NINO_BAD_PAIRS

    return check


# Documentation ranges are not global, but drills plant fake addresses from them and a log
# carrying one is exactly what a drill must see detected.
_V4_DOC = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
_V6_DOC = ipaddress.ip_network("2001:db8::/32")


# Not globally routable (RFC 6890 and friends), as integer ranges: ipaddress costs ~5 µs a
# call and IP candidates are the most frequent ones in access logs.
_V4_NOT_GLOBAL = tuple(
    (int(n.network_address), int(n.broadcast_address))
    for n in map(ipaddress.ip_network, (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    ))
)
_V4_DOC_INT = tuple((int(n.network_address), int(n.broadcast_address)) for n in _V4_DOC)


def ipv4_public_reference(v: bytes) -> bool:
    """The same decision through the ipaddress module (slow; the tests' oracle)."""
    try:
        a = ipaddress.IPv4Address(v.decode("ascii"))
    except ValueError:
        return False
    if any(a in n for n in _V4_DOC):
        return True
    # is_global alone lets multicast through (224.0.0.1 is "global" to ipaddress).
    return a.is_global and not (a.is_multicast or a.is_reserved or a.is_unspecified)


def _ipv4_public(_: Mapping[str, Any]) -> Validator:
    def check(v: bytes) -> bool:
        parts = v.split(b".")
        if len(parts) != 4:
            return False
        n = 0
        for p in parts:
            # ipaddress refuses leading zeros (octal ambiguity) and more than 3 digits.
            if not p.isdigit() or len(p) > 3 or (len(p) > 1 and p[0] == 48):
                return False
            o = int(p)
            if o > 255:
                return False
            n = (n << 8) | o
        for lo, hi in _V4_DOC_INT:
            if lo <= n <= hi:
                return True
        for lo, hi in _V4_NOT_GLOBAL:
            if lo <= n <= hi:
                return False
        return True

    return check


def _ipv6_global(_: Mapping[str, Any]) -> Validator:
    v6 = ipaddress.IPv6Address

    @functools.lru_cache(maxsize=16384)
    def check(v: bytes) -> bool:
        try:
            a = v6(v.decode("ascii"))
        except ValueError:
            return False
        if a in _V6_DOC:
            return True
        return a.is_global and not (a.is_multicast or a.is_reserved or a.is_unspecified or a.is_site_local)

    return check


def _b64url_decode(part: bytes) -> bytes:
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def _jwt(_: Mapping[str, Any]) -> Validator:
    def check(v: bytes) -> bool:
        parts = v.split(b".")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            return False
        try:
            header = json.loads(_b64url_decode(parts[0]))
            json.loads(_b64url_decode(parts[1]))
        except (ValueError, binascii.Error, RecursionError):  # a payload nested 3000 deep
            return False
        return isinstance(header, dict) and "alg" in header

    return check


_DATE_FORMS = (
    # (regex, order of year/month/day groups)
    (re.compile(rb"(\d{4})[-./](\d{1,2})[-./](\d{1,2})\Z"), "ymd"),
    (re.compile(rb"(\d{4})(\d{2})(\d{2})\Z"), "ymd"),
    (re.compile(rb"(\d{1,2})[-./](\d{1,2})[-./](\d{4})\Z"), "dmy"),  # also tried as m/d/y
    (re.compile(rb"(\d{1,2})\.(\d{1,2})\.(\d{2})\Z"), "dmy2"),  # 12.03.85: the German short form
)


# Month names as birth dates are written in the languages of European shops (accents folded,
# lower case, a trailing dot dropped): "12. März 1985", "12 de marzo de 1985", "March 12, 1985",
# "12 juillet 1985", "12 lipca 1985" (Polish writes the genitive), and their usual short forms.
_MONTH_NAMES = (
    "january jan januar janner jaenner janvier janv enero ene gennaio gen januari janeiro styczen stycznia sty",
    "february feb februar fevrier fevr fev febrero febbraio februari fevereiro luty lutego lut",
    "march mar marz maerz mars marzo maart mrt marco marzec marca",
    "april apr avril avr abril abr aprile kwiecien kwietnia kwi",
    "may mai mayo maggio mag mei maio maj maja",
    "june jun juni juin junio giugno giu junho czerwiec czerwca cze",
    "july jul juli juillet juil julio luglio lug julho lipiec lipca lip",
    "august aug aout agosto ago augustus sierpien sierpnia sie",
    "september sep sept septembre septiembre setiembre settembre set setembro wrzesien wrzesnia wrz",
    "october oct oktober okt octobre octubre ottobre ott outubro out pazdziernik pazdziernika paz",
    "november nov novembre noviembre novembro listopad listopada lis",
    "december dec dezember dez decembre diciembre dic dicembre dezembro grudzien grudnia gru",
)
_MONTHS = {w: k for k, names in enumerate(_MONTH_NAMES, 1) for w in names.split()}
_MONTH_WORDS = re.compile(r"(\d{1,2})\.?(?: de)? ([^\W\d_]+)\.?(?: de)? (\d{4})\Z|([^\W\d_]+)\.? (\d{1,2}),? (\d{4})\Z")


_DAY_MON_YEAR = re.compile(rb"\d{1,2}-[A-Za-z]{3,9}-\d{4}\Z")


def _month_number(word: str) -> int | None:
    return _MONTHS.get(fold_accents(word.lower()))


def _date(params: Mapping[str, Any]) -> Validator:
    min_year = int(params.get("min_year", 1900))
    today = _dt.date.today()

    def plausible(y: int, m: int, d: int) -> bool:
        try:
            day = _dt.date(y, m, d)
        except ValueError:
            return False
        return min_year <= y and day <= today

    def check(v: bytes) -> bool:
        s = url_plain(v).strip()  # 03%2F14%2F1985 in a query string
        if _DAY_MON_YEAR.match(s):
            s = s.replace(b"-", b" ")  # 12-Mar-1985 reads as 12 Mar 1985
        m = _MONTH_WORDS.match(s.decode("utf-8", "replace")) if b" " in s else None
        if m:
            day, word, year = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(5), m.group(4), m.group(6))
            month = _month_number(word)
            return month is not None and plausible(int(year), month, int(day))
        for rx, order in _DATE_FORMS:
            m = rx.match(s)
            if not m:
                continue
            a, b, c = (int(g) for g in m.groups())
            if order == "ymd":
                return plausible(a, b, c)
            if order == "dmy2":
                # A two-digit year of a birth date: this century when that is not in the future.
                year = 2000 + c if 2000 + c <= today.year else 1900 + c
                return plausible(year, b, a)
            # Day-first (EU) or month-first (US): either reading makes it a real date.
            return plausible(c, b, a) or plausible(c, a, b)
        return False

    return check


def _phone(params: Mapping[str, Any]) -> Validator:
    lo = int(params.get("min_digits", 8))
    hi = int(params.get("max_digits", 15))
    if lo > hi:
        raise ValueError(f"min_digits {lo} > max_digits {hi}")
    not_digits = bytes(range(256)).translate(None, b"0123456789")

    def check(v: bytes) -> bool:
        d = url_plain(v).translate(None, not_digits)
        if not lo <= len(d) <= hi:
            return False
        # A run of one repeated digit (0000000000) is a placeholder, not a number.
        return d.count(d[-1:]) != len(d)

    return check


_AWS_SECRET = re.compile(rb"[A-Za-z0-9/+]{40}\Z")


def _aws_secret(params: Mapping[str, Any]) -> Validator:
    threshold = float(params.get("min", 4.0))

    def check(v: bytes) -> bool:
        # 40 random base64 characters: ~4.6-5.0 bits/byte measured; English or hex stays < 4.
        return bool(_AWS_SECRET.match(v)) and _c_entropy(v) >= threshold

    return check


_PLACEHOLDERS = frozenset(
    b"null none nil true false undefined redacted masked hidden secret password passwd changeit "
    b"example xxx filtered removed required optional string empty".split()
)
# Unclosed forms too: a rule's value class may stop at the closing brace.
_TEMPLATE = re.compile(rb"^(?:\$\{.*|\$[A-Z_][A-Z0-9_]*|\{\{.*|<.*>|%\(?[a-z_]*\)?s|\[.*\]|[*xX#.\-_]+)$")


_ABS_PATH = re.compile(rb"/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*/?")


_PW_LETTER = re.compile(rb"[A-Za-z\x80-\xff]")
_PW_DIGIT = re.compile(rb"[0-9]")
# Symbols that make a password of a word: not a hyphen or an underscore (auto-generated,
# write-only, too_weak are words), not stars (***redacted***).
_PW_OTHER = re.compile(rb"[!\"#$%&'()+,./:;<=>?@\[\\\]^`{|}~]")
# A hash's algorithm prefix (sha256:9f86…, $2b$12$…): a stored hash, not the password.
_PW_HASH = re.compile(rb"(?i:sha\d*|md5|bcrypt|argon2(?:id|i|d)?|pbkdf2[\w-]*|scrypt)[:$]|\$\d[a-z]?\$")


def _password(params: Mapping[str, Any]) -> Validator:
    min_len = int(params.get("min_len", 4))
    # mixed: letters and digits or symbols. Prose ("my password is wrong", "the password was
    # reset") has words where a key's value has the password itself.
    mixed = bool(params.get("mixed", 0))

    def check(v: bytes) -> bool:
        if len(v) < min_len:
            return False
        if v.lower() in _PLACEHOLDERS:
            return False
        if _ABS_PATH.fullmatch(v):
            return False  # PWD=/app/releases: a shell's working directory, not a password
        if mixed and (not (_PW_LETTER.search(v) and (_PW_DIGIT.search(v) or _PW_OTHER.search(v)))
                      or _PW_HASH.match(v)):
            return False
        # ${DB_PASSWORD}, {{ secret }}, <password>, %s, ******** are templates or masks.
        return not _TEMPLATE.match(v)

    return check


_HAS_DIGIT = re.compile(rb"\d")
# Two letters: "3325 W 34th St" has no longer word.
_HAS_WORD = re.compile(rb"[A-Za-z\x80-\xff]{2}")


def _street(_: Mapping[str, Any]) -> Validator:
    def check(v: bytes) -> bool:
        # A street line carries a house number and a word ("1 Market St", "Hauptstr. 5",
        # "3325 W 34th St").
        return bool(_HAS_DIGIT.search(v)) and bool(_HAS_WORD.search(v)) and not v.startswith(b"http")

    return check


# What a code reference's or a file's "domain" ends in (fn(at)line.py, config[at]key.json),
# never an e-mail's top-level domain.
_FILE_SUFFIXES = frozenset(
    "py js ts jsx tsx json html htm xml yml yaml md txt log csv sh bash rb go rs java class jar php css scss c h cc "
    "cpp hpp cs kt swift sql ini cfg conf toml lock zip gz tgz tar png jpg jpeg gif svg pdf doc docx xls xlsx ppt "
    "pem crt key tmp bak out err dat bin so dll exe value values baz bar foo index test tests local internal "
    "localhost invalid example lan home corp".split())
_LOG_LEVELS = frozenset(b"info warn warning error debug trace fatal notice crit critical".split())


def _email_obfuscated(_: Mapping[str, Any]) -> Validator:
    from leakwatch.detect.mask import get_normalizer

    plain = get_normalizer("email_plain")

    def check(v: bytes) -> bool:
        p = plain(v)
        local, _, domain = p.partition(b"@")
        tld = domain.rsplit(b".", 1)[-1]
        if not local or b"." not in domain or not tld.isalpha() or tld.decode("latin-1") in _FILE_SUFFIXES:
            return False
        return local not in _LOG_LEVELS

    return check


# UK (SW1A 1AA, M1 1AE), US ZIP / ZIP+4 and other five-digit codes, Dutch 1234 AB, Polish
# 12-345, Canadian A1A 1A1: the whole value, as a cell of a postcode column or a rule's value.
_POSTAL = re.compile(rb"[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}|[0-9]{5}(?:-[0-9]{4})?|[1-9][0-9]{3} ?[A-Z]{2}"
                     rb"|[0-9]{2}-[0-9]{3}|[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]")


def _postal_code(_: Mapping[str, Any]) -> Validator:
    def check(v: bytes) -> bool:
        v = v.strip().upper()
        # 00000 and 99999 fill empty postcode columns.
        return bool(_POSTAL.fullmatch(v)) and v not in (b"00000", b"99999")

    return check


def _basic_auth(_: Mapping[str, Any]) -> Validator:
    def check(v: bytes) -> bool:
        try:
            raw = base64.b64decode(v, validate=True)
        except (ValueError, binascii.Error):
            return False
        user, sep, pw = raw.partition(b":")
        return bool(sep) and bool(user) and bool(pw)

    return check


# "Domains" that are file extensions: logo@2x.png, icon@3x.webp, bundle@1.2.0.js.
_FILE_TLDS = frozenset(
    b"png jpg jpeg gif svg webp ico bmp tif tiff avif js mjs css map json xml html htm txt log "
    b"woff woff2 ttf otf eot pdf csv gz tgz jar war class py rb php ts tsx jsx vue".split()
)


def _email(_: Mapping[str, Any]) -> Validator:
    def check(v: bytes) -> bool:
        v = url_plain(v)  # URL-encoded in a query string
        at = v.rfind(b"@")
        if at < 1 or len(v) - at - 1 > 253 or at > 64:
            return False
        if at == 3 and v[:3].lower() == b"git" and b"git" in v[4:].lower():
            # git@github.com:acme/shop.git, git@gitlab.acme.com: the SSH user of Git hosts.
            return False
        tld = v[v.rfind(b".") + 1 :].lower()
        return tld not in _FILE_TLDS

    return check


# Values systems put in name fields when there is no person. Alone: placeholders no one is
# called (Guest, Root, Demo and Support are surnames too, so they are not here).
_NOT_A_NAME = frozenset(
    b"null none nil na n/a unknown undefined test testing redacted deleted anonymous anon placeholder "
    b"dummy admin administrator sysadmin noreply no-reply string".split()
)
# Together, every word from here: seeded, test and service records (Test User, Customer Service).
_NOT_NAME_WORDS = _NOT_A_NAME | frozenset(
    b"tester demo sample example system root user guest removed default customer service support "
    b"integration api bot no reply team account".split()
)
_NAME_WORDS = re.compile(rb"[ '-]+")


# Words of services, jobs and products that no one is called: with ``strict`` one of them in a
# value under a bare "name" key makes it a service's or a product's name ("Payment Gateway",
# "Inventory Sync", "Order Service").
_TECH_NAME_WORDS = frozenset(
    b"gateway sync service services server worker job jobs queue cache proxy scheduler cron daemon agent "
    b"pipeline connector adapter handler listener consumer producer processor monitor health check api "
    b"inventory payment payments order orders checkout cart catalog catalogue search shipping billing "
    b"notification notifications email mail sms webhook webhooks export import batch report reports "
    b"dashboard portal console app application platform cluster node pod instance database db store "
    b"hoodie shirt sock socks shoe shoes jacket pant pants dress bag cap hat mug pack bundle gift card".split()
)


def _person_name(params: Mapping[str, Any]) -> Validator:
    strict = bool(params.get("strict", False))

    def check(v: bytes) -> bool:
        value = v.strip().lower()
        if value in _NOT_A_NAME:
            return False
        words = [w for w in _NAME_WORDS.split(value) if w]
        if strict and any(w in _TECH_NAME_WORDS or w in _NOT_NAME_WORDS for w in words):
            return False
        return bool(words) and (len(words) == 1 or not all(w in _NOT_NAME_WORDS for w in words))

    return check


# name -> (factory, accepted parameter names)
VALIDATORS: dict[str, tuple[Callable[[Mapping[str, Any]], Validator], frozenset[str]]] = {
    "luhn": (_luhn, frozenset()),
    "email": (_email, frozenset()),
    "iban": (_iban_v, frozenset()),
    "pl_nrb": (_pl_nrb, frozenset()),
    "sfid": (_sfid, frozenset()),
    "us_ssn": (_us_ssn, frozenset()),
    "entropy": (_entropy, frozenset({"min", "min_len"})),
    "token": (_token, frozenset({"min", "min_len", "no_paths"})),
    "de_steuerid": (_stdnum(_de_idnr), frozenset()),
    "fr_nir": (_stdnum(_fr_nir), frozenset()),
    "es_dni": (_stdnum(_es_dni), frozenset()),
    "es_nie": (_stdnum(_es_nie), frozenset()),
    "it_codice_fiscale": (_stdnum(_it_cf), frozenset()),
    "nl_bsn": (_stdnum(_nl_bsn), frozenset()),
    "pl_pesel": (_stdnum(_pl_pesel), frozenset()),
    "uk_nino": (_uk_nino, frozenset()),
    "ipv4_public": (_ipv4_public, frozenset()),
    "ipv6_global": (_ipv6_global, frozenset()),
    "jwt": (_jwt, frozenset()),
    "date": (_date, frozenset({"min_year"})),
    "phone": (_phone, frozenset({"min_digits", "max_digits"})),
    "aws_secret": (_aws_secret, frozenset({"min"})),
    "password": (_password, frozenset({"min_len", "mixed"})),
    "street": (_street, frozenset()),
    "postal_code": (_postal_code, frozenset()),
    "email_obfuscated": (_email_obfuscated, frozenset()),
    "basic_auth": (_basic_auth, frozenset()),
    "person_name": (_person_name, frozenset({"strict"})),
}


def get_validator(name: str, params: Mapping[str, Any] | None = None) -> Validator:
    """Build the validator ``name`` with ``params``.

    Raises ``KeyError`` for an unknown name and ``ValueError`` for an unknown parameter or a
    parameter of the wrong type.
    """
    try:
        factory, accepted = VALIDATORS[name]
    except KeyError:
        raise KeyError(name) from None
    params = dict(params or {})
    unknown = sorted(set(params) - accepted)
    if unknown:
        allowed = ", ".join(sorted(accepted)) or "none"
        raise ValueError(f"validator {name!r} does not take {', '.join(unknown)} (accepted: {allowed})")
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"validator {name!r}: parameter {k!r} must be a number, got {v!r}")
    return factory(params)
