"""Synthetic values for drills: valid-looking, checksum-correct, and fictional by construction.

Every value comes from a ``random.Random`` the caller seeds, so a drill's logs are the same bytes
for the same seed. The ranges are ones nobody can be harmed by:

- e-mail addresses at ``example.com`` / ``example.org`` / ``example.net`` (RFC 2606);
- UK phone numbers from Ofcom's drama ranges (020 7946 0000–0999, 0113 496 0000–0999,
  0161 496 0000–0999), which are never allocated to a subscriber;
- payment cards from the card schemes' published test BINs (4242 42…, 4000 00…, 5555 55…,
  2223 00…), with a correct Luhn digit;
- IBANs with the test bank codes of the national examples (``NWBK601613``, ``37040044`` …) and
  correct ISO 7064 mod-97 check digits;
- Spanish DNIs (mod-23 letter) and Dutch BSNs (11-proof) that pass their checksums; UK National
  Insurance numbers with valid prefixes (NINOs carry no checksum);
- Salesforce record IDs with a made-up pod and record number and the correct 18-character case
  checksum (DOMAIN.md §2);
- AI keys shaped like the vendors' (``sk-proj-…``, ``sk-ant-api03-…``, ``AIza…``) from random
  characters: never issued, so never live;
- IPv4 addresses from the documentation ranges (RFC 5737).

The helpers for checksums are copies of those in ``bench/corpus.py``, which must keep producing
byte-identical corpora and so is left alone.
"""
from __future__ import annotations

import random

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
B64URL = B62 + "-_"
_SFID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_NINO_LETTERS = "ABCEGHJKLMNPRSTWXYZ"
_NINO_BAD = ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")

FIRST_NAMES = ("Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
               "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Maria", "Priya",
               "Lars", "Sofia", "Mateo", "Aoife", "Kwame", "Chen", "Ahmed")
LAST_NAMES = ("Doe", "Smith", "Jones", "Garcia", "Nguyen", "Okafor", "Muller", "Rossi", "Kowalski",
              "Silva", "Tanaka", "Dubois", "Murphy", "Andersen", "Novak", "Patel", "Cohen", "Haddad")
MAIL_DOMAINS = ("example.com", "example.org", "example.net")
#: Card test BINs and lengths (Visa, Mastercard, Mastercard 2-series, Amex test ranges).
CARD_BINS = (("424242", 16), ("400000", 16), ("555555", 16), ("222300", 16), ("378282", 15))
#: (country, bank code of the national IBAN example, digits after it).
IBAN_SHAPES = (("GB", "NWBK601613", 8), ("DE", "37040044", 10), ("FR", "2004101005", 13),
               ("NL", "ABNA", 10), ("ES", "21000418", 12))
#: Ofcom drama ranges (area code, local prefix).
DRAMA_PHONES = (("20", "7946 0"), ("113", "496 0"), ("161", "496 0"))


def luhn_check_digit(digits: str) -> int:
    """The digit that makes ``digits + d`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 0:  # doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def luhn_ok(number: str) -> bool:
    """Whether ``number`` (digits only) passes Luhn."""
    return luhn_check_digit(number[:-1]) == ord(number[-1]) - 48


def iban_with_check(country: str, bban: str) -> str:
    """ISO 13616: the check digits are 98 − (BBAN + country + "00", letters as numbers) mod 97."""
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - num % 97:02d}{bban}"


def sfid18(id15: str) -> str:
    """The 18-character form of a 15-character Salesforce ID: one suffix character per 5-character
    chunk, bit i set when character i is an uppercase letter."""
    out = []
    for k in range(3):
        bits = sum(1 << i for i, c in enumerate(id15[5 * k:5 * k + 5]) if "A" <= c <= "Z")
        out.append(_SFID_SUFFIX[bits])
    return id15 + "".join(out)


def chars(rng: random.Random, alphabet: str, n: int) -> str:
    """``n`` characters drawn from ``alphabet``."""
    return "".join(rng.choices(alphabet, k=n))


def sf_id(rng: random.Random, prefix: str, *, long: bool = True) -> str:
    """A record ID: key ``prefix``, pod ``5g``, the reserved ``0``, a 9-character record number
    with at least one letter (all-digit IDs are not taken for record IDs), and its checksum."""
    while True:
        rec = chars(rng, B62, 9)
        if not rec.isdigit():
            break
    id15 = f"{prefix}5g0{rec}"
    return sfid18(id15) if long else id15


def person(rng: random.Random) -> tuple[str, str]:
    """A (first, last) name pair from the fictional pool."""
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


#: Entities a drill can plant, with how each is generated. Keys are leakwatch entity names.
def value(rng: random.Random, entity: str) -> str:
    """A fresh synthetic value of ``entity`` (see :data:`PLANTABLE`)."""
    if entity == "EMAIL_ADDRESS":
        first, last = person(rng)
        sep = rng.choice((".", "_", ""))
        tail = str(rng.randrange(10, 99)) if rng.random() < 0.3 else ""
        return f"{first.lower()}{sep}{last.lower()}{tail}@{rng.choice(MAIL_DOMAINS)}"
    if entity == "PHONE_NUMBER":
        area, local = rng.choice(DRAMA_PHONES)
        return f"+44 {area} {local}{rng.randrange(1000):03d}"
    if entity == "CREDIT_CARD":
        prefix, length = rng.choice(CARD_BINS)
        body = prefix + chars(rng, "0123456789", length - len(prefix) - 1)
        return body + str(luhn_check_digit(body))
    if entity == "IBAN_CODE":
        country, bank, n = rng.choice(IBAN_SHAPES)
        return iban_with_check(country, bank + chars(rng, "0123456789", n))
    if entity == "UK_NINO":
        while True:
            pre = rng.choice(_NINO_LETTERS) + rng.choice(_NINO_LETTERS)
            if pre not in _NINO_BAD:
                break
        return f"{pre}{rng.randrange(10**6):06d}{rng.choice('ABCD')}"
    if entity == "ES_DNI":
        n = rng.randrange(10_000_000, 100_000_000)
        return f"{n}{_DNI_LETTERS[n % 23]}"
    if entity == "NL_BSN":
        while True:  # 11-proof: 9a + 8b + … + 2h − i ≡ 0 (mod 11)
            d = [rng.randrange(1, 10)] + [rng.randrange(10) for _ in range(7)]
            last = sum(x * w for x, w in zip(d, range(9, 1, -1), strict=True)) % 11
            if last < 10:
                return "".join(map(str, d)) + str(last)
    if entity == "SALESFORCE_RECORD_ID":
        return sf_id(rng, rng.choice(("003", "00Q", "001")))
    if entity == "IP_ADDRESS":
        return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"
    if entity == "OPENAI_API_KEY":
        return "sk-proj-" + chars(rng, B62, 48)
    if entity == "ANTHROPIC_API_KEY":
        return "sk-ant-api03-" + chars(rng, B62, 86) + "AA"
    if entity == "GOOGLE_API_KEY":
        return "AIza" + chars(rng, B62, 35)
    raise ValueError(f"no synthetic generator for entity {entity!r}")


#: Entities :func:`value` can make, in the order the docs list them.
PLANTABLE: tuple[str, ...] = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "UK_NINO", "ES_DNI", "NL_BSN",
    "SALESFORCE_RECORD_ID", "IP_ADDRESS", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY",
)

#: Credentials among them (placed where a credential goes: a header, a config dump).
CREDENTIALS: tuple[str, ...] = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY")


# -- hard negatives: look like PII to a regex, are not ------------------------------------------


def trace16(rng: random.Random) -> str:
    """A 16-digit trace ID that fails Luhn (the main false-positive source for card rules)."""
    while True:
        v = str(rng.randrange(10**15, 10**16))
        if not luhn_ok(v):
            return v


def uuid4(rng: random.Random) -> str:
    """A version-4-shaped UUID."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def hard_negative(rng: random.Random) -> tuple[str, str]:
    """(key, value) of a hard negative a background line may carry."""
    k = rng.randrange(6)
    if k == 0:
        return "trace_id", trace16(rng)
    if k == 1:
        return "correlation_id", uuid4(rng)
    if k == 2:
        return "app_version", f"{rng.randrange(1, 9)}.{rng.randrange(40)}.{rng.randrange(12)}.{rng.randrange(9)}"
    if k == 3:
        return "order_ref", f"ORD-2024-{rng.randrange(10**7):07d}"
    if k == 4:
        return "order_id", str(rng.randrange(10**9, 10**10))
    return "sku", f"SKU-{rng.randrange(10**5):05d}-{rng.choice(('BLK', 'NVY', 'RED'))}"


def private_ip(rng: random.Random) -> str:
    """A private (RFC 1918) address: load balancers and internal callers, never a person."""
    k = rng.random()
    if k < 0.5:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if k < 0.8:
        return f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
