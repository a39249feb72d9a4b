"""Context around a candidate: the field name it sits under and nearby keywords.

Logs are mostly structured (JSON, logfmt, query strings, ``Key: value`` headers), so the key in
front of a value is the strongest context there is: a 10-digit number under ``"phone"`` is a
phone number, under ``"order_id"`` it is not. ``field_before`` recovers that key from the bytes
just before the value; ``has_context`` combines it with a rule's keywords.
"""
from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rules.py imports this module: no runtime import back
    from leakwatch.detect.rules import ContextSpec

# First bytes of a line that is not a row of a CSV file's header, even in a file that has one
# (JSON, arrays, XML appended to an export): such lines get no column names.
NOT_ROW_STARTS = (b"{", b"[", b"<")

# How far back a key may start: long enough for `"BillingStreet": "` or
# `Authorization: Bearer `, short enough that the slice and match stay ~1 µs.
LOOKBACK = 64

# The separator and key in front of a value, written *reversed*: matching it at position 0 of
# the reversed tail is one anchored match, where a forward `...$` search would try every start
# position of the tail. Forward shapes covered:
#   "key": "v    \"key\": \"v    'key': v    key=v    key="v    Key: Bearer v    "key": ["v    <key>v
_REV_KEY = re.compile(
    rb"""
    (?:\s+(?i:reraeb|cisab|nekot))?                # auth scheme: Bearer, Basic, Token
    (?:["']\\?)?\s*\[?\s*                         # value quote (maybe escaped), array bracket
    (?:
        [:=]\s*(?:"\\?([^"\\\n]{1,48})\\?"       # "key":  or  \"key\": (JSON inside a string)
              |'([^'\\\n]{1,48})'                   # 'key':
              |([A-Za-z0-9_.\-]{1,48}))             # key= / Key:
      | >([A-Za-z0-9_.:\-]{1,48})<                  # <key>
    )
    """,
    re.VERBOSE,
)

# Deletion table for bytes.translate: every byte but [a-z0-9.] (after lowercasing).
_NOT_FIELD_BYTES = bytes(c for c in range(256) if not (97 <= c <= 122 or 48 <= c <= 57 or c == 46))


_INDEX = re.compile(rb"\[\d+\]")


# Letters that no decomposition takes to ASCII.
_FOLD_EXTRA = str.maketrans({"ß": "ss", "ł": "l", "Ł": "l", "ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae",
                             "œ": "oe", "Œ": "oe", "đ": "d", "Đ": "d", "ı": "i"})


def fold_accents(name: str) -> str:
    """``"prénom"`` → ``"prenom"``, ``"straße"`` → ``"strasse"``, ``"imię"`` → ``"imie"``: keys are
    written with and without their accents, and the rules list them without."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_FOLD_EXTRA))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_field(name: str | bytes) -> str:
    """Lowercase, accents folded, and only ``[a-z0-9.]`` kept, without array indexes:
    ``"First_Name"`` → ``"firstname"``, ``"Straße"`` → ``"strasse"``,
    ``"body.messages[0].content"`` → ``"body.messages.content"``."""
    if isinstance(name, bytes) and not name.isascii():
        name = name.decode("utf-8", errors="replace")
    if isinstance(name, str):
        if not name.isascii():
            name = fold_accents(name)
        name = name.encode("utf-8", errors="replace")
    if b"[" in name:
        name = _INDEX.sub(b"", name)
    return name.lower().translate(None, _NOT_FIELD_BYTES).decode("ascii")


def without_custom_suffix(name: str) -> str:
    """A Salesforce custom field's name without its ``__c`` (``__pc`` on a person account):
    ``Date_of_Birth__c`` is a birth date column as ``Birthdate`` is."""
    low = name.lower()
    if low.endswith("__pc"):
        return name[:-4]
    return name[:-3] if low.endswith("__c") else name


# Keys that are data, not names: what a log writes where a key belongs is sometimes a value
# (an e-mail or a customer's name as a JSON key, a token before "=" or ":" in free text), and
# field names are stored and printed unmasked.
SECRET_PREFIXES = ("sk-", "sk_", "ghp_", "gho_", "ghs_", "ghu_", "ghr_", "github_pat_", "xoxa-", "xoxb-", "xoxp-",
                   "xoxr-", "xoxs-", "AKIA", "ASIA", "AIza", "hf_", "gsk_", "r8_", "eyJ")
_UPPER_ALNUM = re.compile(r"[A-Z0-9]{16,}\Z")     # AKIA… key ids, upper-case tokens (no separators)
_FIVE_DIGITS = re.compile(r"[0-9]{5}")
# What a key or path segment that is data holds: "@" (or "%40"), five digits in a row or in
# groups ("4111 1111 …", "123-45-6789", "+1 415-555-0134", "DE89 3704 …", "4111+1111" in a
# query string), or a 33-character token run; with SECRET_PREFIXES, a superset of what any
# match of store.elf_events.PII_SEGMENT_RX contains.
DATA_MARKS = re.compile(r"@|%40|[0-9](?:[ .()+-]{0,2}[0-9]){4}|[A-Za-z0-9_+=-]{33}")


def data_like_key(key: str, names: bool = False) -> bool:
    """Whether ``key`` looks like data rather than a field name: it holds "@" or "%40", five
    digits (in a row or in groups), a 33-character token run, starts like a credential (``sk-``, ``AKIA``,
    ``ghp_``…) or is a long upper-case token. With ``names`` (keys written by the data, such
    as JSON keys, not a file's header), two or more capitalized words ("Jane Doe") too."""
    if DATA_MARKS.search(key):
        return True
    if key.startswith(SECRET_PREFIXES) or _UPPER_ALNUM.match(key):
        return True
    if names and " " in key:
        words = key.split()
        return len(words) >= 2 and all(w[:1].isupper() and w.replace("-", "").replace("'", "").isalpha()
                                       for w in words)
    return False


def field_before(line: bytes, start: int) -> str | None:
    """The normalized key immediately before the value at ``start`` in ``line``, or ``None``.

    Recognizes JSON keys, logfmt and query-string keys, ``Key:`` headers (also with a
    ``Bearer``/``Basic``/``Token`` scheme in between) and XML tags, looking back at most
    ``LOOKBACK`` bytes.
    """
    lo = start - LOOKBACK
    tail = line[lo if lo > 0 else 0 : start][::-1]
    m = _REV_KEY.match(tail)
    if m is None:
        return None
    key = m.group(1) or m.group(2) or m.group(3) or m.group(4)
    if not key:
        return None
    if m.group(3) is not None:
        at = start - m.end()  # where the key begins in the line
        if at >= 1 and line[at - 1:at] == b"/":
            return None  # "scheme://user:…": a URL's user name, not a key
    raw = key[::-1]
    name = normalize_field(raw)
    if data_like_key(raw.decode("latin-1")) or _FIVE_DIGITS.search(name):
        return "*"  # a token or number where a key would be (123-45-6789:): not stored as a name
    k = line.rfind(raw, 0, start)
    if k > 0 and (line[k - 1:k] == b"@" or line[max(k - 3, 0):k] == b"%40"):
        return "*"  # the domain of an e-mail address used as a key (jane@example.com=…)
    return name or None


# How far before a value a negative keyword (``context.not_keywords``) may be: the key or word
# right in front of it (``version=``, ``build ``), not the whole record.
NOT_LOOKBACK = 24


def word_starts_at(line: bytes, i: int) -> bool:
    """Whether a word starts at ``line[i]``: a keyword counts there and not inside another word
    (``pan`` in ``pan=`` or ``cardPan``, not in ``span_id`` or ``japan``). A word starts after
    a byte that is not a letter, or at a lower-to-upper case change (camelCase)."""
    if i <= 0:
        return True
    prev = line[i - 1]
    if not (65 <= prev <= 90 or 97 <= prev <= 122):
        return True
    return 97 <= prev <= 122 and 65 <= line[i] <= 90


def _has_word(window: bytes, lowered: bytes, keyword: bytes) -> bool:
    i = lowered.find(keyword)
    while i >= 0:
        if word_starts_at(window, i):
            return True
        i = lowered.find(keyword, i + 1)
    return False


def _window(line: bytes, lo: int, hi: int) -> bytes:
    """``line[lo:hi]`` (``lo`` clipped at 0); a word cut by the left edge is blanked at its
    first byte, so that its tail does not pass for a word of its own."""
    if lo <= 0:
        return line[:hi]
    window = line[lo:hi]
    return window if word_starts_at(line, lo) else b" " + window[1:]


# Bytes that separate a key from its value: anything but letters, digits and bytes >= 0x80.
_SEPARATORS = bytes(c for c in range(128) if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122))


# Objects (and the starts of field names: customerName, contactPerson) that hold a person's
# data (see not_context's not_paths).
PERSON_OBJECTS = tuple((
    "customer", "customers", "contact", "contacts", "user", "users", "buyer", "buyers", "seller", "sellers",
    "recipient", "recipients", "shipping", "billing", "shippingaddress", "billingaddress", "owner", "account",
    "person", "people", "member", "members", "client", "clients", "employee", "agent", "cardholder", "holder",
    "payer", "sender", "patient", "lead", "leads", "shopper", "consumer", "guest", "subscriber",
))


def not_context(ctx: ContextSpec, line: bytes, start: int, field: str | None) -> bool:
    """Whether the value at ``line[start:…]`` has the rule's negative context: its field's name
    (or its last dotted component) ends with one of ``ctx.not_fields``, an object above it in
    the field's path is one of ``ctx.not_paths``, or one of
    ``ctx.not_keywords`` is the word right before it (only separators in between), looked for
    within ``NOT_LOOKBACK`` bytes."""
    if field is not None and ctx.not_fields:
        last = field[field.rfind(".") + 1:]
        for f in ctx.not_fields:
            if last.endswith(f):
                return True
    if field is not None and ctx.not_paths and "." in field:
        # The field itself, then the objects above it, nearest first: a person's (customerName,
        # product.seller.contactName, brand.contact_person.lastName) keeps the value whatever
        # holds it; a product's or a catalog's drops it.
        parts = field.split(".")
        for k in range(len(parts) - 1, -1, -1):
            part = parts[k]
            if part.startswith(PERSON_OBJECTS):
                break
            if k < len(parts) - 1 and part in ctx.not_paths:
                return True
    if ctx.not_keywords:
        # The word right before the value (separators skipped): "version=", "app_version ",
        # "build: \"" — not a word further back ("version=4.1.0.2 client=<value>").
        window = _window(line, start - NOT_LOOKBACK, start).rstrip(_SEPARATORS)
        lowered = window.lower()
        for k in ctx.not_keywords:
            if lowered.endswith(k) and word_starts_at(window, len(window) - len(k)):
                return True
    return False


def has_context(ctx: ContextSpec, line: bytes, start: int, end: int, field: str | None) -> bool:
    """Whether the value at ``line[start:end]`` has the rule's context.

    True when ``field`` (already normalized, e.g. from :func:`field_before`) or its last
    dotted component is one of ``ctx.fields``, or when one of ``ctx.keywords`` starts a word
    (case-insensitively; see :func:`word_starts_at`) within ``ctx.before`` bytes before to
    ``ctx.after`` bytes after (only before, for a rule that requires context, when the value's
    field is known and not one of the rule's).
    """
    if field is not None and ctx.fields:
        if field in ctx.fields:
            return True
        dot = field.rfind(".")
        if dot >= 0 and field[dot + 1 :] in ctx.fields:
            return True
    if ctx.keywords:
        # A rule that needs context, on a value whose field is known and not one of its own:
        # only a keyword before the value counts (in "hotel_id":"0123456789","phone":"…" the
        # word "phone" is the next field's name, not this one's).
        after = 0 if ctx.required and ctx.fields and field is not None and field != "*" else ctx.after
        window = _window(line, start - ctx.before, end + after)
        lowered = window.lower()
        for k in ctx.keywords:
            if _has_word(window, lowered, k):
                return True
    return False
