"""Deterministic benchmark corpus: mixed e-commerce / Salesforce log lines, a few carrying PII.

The same seed and size always give the same bytes (``random.Random(seed)`` only: no clock, no
environment, no hash-ordered containers), so every engine in ``bench/`` sees identical input from
run to run and machine to machine. The corpus is cached under ``bench/.corpus/`` as
``corpus-<seed>-<MiB>.log`` beside a ``.json`` manifest (sha256, line counts, what was planted);
a cached file is reused only when its sha256 matches the manifest and the manifest was written by
this generator version.

Lines come in bursts of one format (a Salesforce EventLogFile CSV burst starts with its header row),
the way concatenated log files look:

* Salesforce EventLogFile CSV: ApexCallout (URL column to AI endpoints), RestApi, Login, BulkApi,
  ReportExport;
* AWS API Gateway JSON access logs; Heroku router logfmt (some in log-drain framing);
* Mule 4 default-layout lines; nginx combined; JSON-lines app logs, some holding LLM request bodies.

About 2% of lines carry planted PII or secrets (all fictional: example.com mail, Ofcom drama
phone numbers, test-BIN cards that pass Luhn, IBANs that pass mod-97, ...). Background lines carry
none: client IPs are private load-balancer addresses, Salesforce IDs are User (005) and Org (00D)
IDs only. About 1.5% of lines are hard negatives that look like PII to a regex but are not (16-digit
trace IDs failing Luhn, order numbers, 10-digit order IDs, version strings, UUIDs, ISO timestamps).

Run ``python -m bench.corpus --mb 20`` to generate (or check) a corpus by hand.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import os
import random
import time
from pathlib import Path

# Any edit to this file invalidates cached corpora: a hand-bumped version number gets forgotten.
GENERATOR_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]

CORPUS_DIR = Path(__file__).resolve().parent / ".corpus"
DEFAULT_SEED = 20240311
DEFAULT_MB = 200  # MiB: 200 MiB = 209.7 MB, the size of the corpus in shared/DOMAIN.md §8

PII_LINE_RATE = 0.02
HARD_NEGATIVE_LINE_RATE = 0.015

_EPOCH = 1710115200  # 2024-03-11T00:00:00Z: the Monday the DOMAIN.md timestamps come from
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B64URL = _B62 + "-_"
_HEX = "0123456789abcdef"
_SFID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


# ---------------------------------------------------------------------------------------------
# Checksummed identifiers (planted PII must be *valid*, hard negatives deliberately invalid).

def luhn_check_digit(digits: str) -> int:
    """The digit that makes ``digits + d`` pass Luhn."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 0:  # these get doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def luhn_ok(number: str) -> bool:
    return luhn_check_digit(number[:-1]) == ord(number[-1]) - 48


def iban_with_check(country: str, bban: str) -> str:
    """ISO 13616: check digits are 98 - (BBAN + country + "00" as digits) mod 97."""
    rearranged = bban + country + "00"
    num = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{country}{98 - num % 97:02d}{bban}"


def sfid18(id15: str) -> str:
    """Salesforce 15 → 18 character ID (DOMAIN.md §2): one suffix char per 5-char chunk."""
    out = []
    for k in range(3):
        bits = 0
        for i, c in enumerate(id15[5 * k:5 * k + 5]):
            if "A" <= c <= "Z":
                bits |= 1 << i
        out.append(_SFID_SUFFIX[bits])
    return id15 + "".join(out)


# ---------------------------------------------------------------------------------------------

class _Gen:
    """All state of one generation run; every random draw goes through ``self.rng``."""

    def __init__(self, seed: int):
        self.rng = rng = random.Random(seed)
        self.t_ms = 0
        self._sec = -1
        self._fmt: tuple[str, ...] = ()
        # Small pools drawn once: the org, users and hosts of one fictional shop.
        self.org = "00D" + self._s(_B62, 12)
        self.users = ["005" + self._s(_B62, 12) for _ in range(60)]
        self.users18 = [sfid18(u) for u in self.users]
        self.apps = ["0H4" + self._s(_B62, 12) for _ in range(6)]
        self.dynos = [f"web.{i}" for i in range(1, 9)] + ["worker.1", "worker.2"]
        self.threads = [f"@{rng.getrandbits(32):08x}" for _ in range(24)]
        self.planted: dict[str, int] = {}
        self.hard: dict[str, int] = {}
        self.formats: dict[str, int] = {}

    # -- cheap random helpers --------------------------------------------------------------
    def _s(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choices(alphabet, k=n))

    def uuid(self) -> str:
        h = "%032x" % self.rng.getrandbits(128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def private_ip(self) -> str:
        r = self.rng
        k = r.random()
        if k < 0.5:
            return f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        if k < 0.8:
            return f"172.{r.randrange(16, 32)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        return f"192.168.{r.randrange(256)}.{r.randrange(1, 255)}"

    def tick(self) -> None:
        """Advance the clock 1–120 ms and refresh the per-second timestamp strings."""
        self.t_ms += self.rng.randrange(1, 120)
        sec = _EPOCH + self.t_ms // 1000
        if sec != self._sec:
            self._sec = sec
            t = time.gmtime(sec)
            ymd = f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}"
            hms = f"{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}"
            iso = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            clf = f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:{iso[11:]} +0000"
            self._fmt = (ymd + hms, iso, clf, iso.replace("T", " "))

    @property
    def ms(self) -> str:
        return "%03d" % (self.t_ms % 1000)

    # -- planted values ----------------------------------------------------------------------
    def pii(self, kind: str) -> str:
        r = self.rng
        if kind == "email":
            first = r.choice(_FIRST).lower()
            last = r.choice(_LAST).lower()
            sep = r.choice((".", "_", ""))
            return f"{first}{sep}{last}{r.randrange(100) if r.random() < 0.4 else ''}@{r.choice(_MAIL_DOMAINS)}"
        if kind == "phone":
            # Ofcom's drama range (020 7946 0000–0999) and the US 555-01xx fiction range.
            if r.random() < 0.7:
                n = r.randrange(1000)
                return r.choice((f"+44 20 7946 0{n:03d}", f"+442079460{n:03d}", f"020 7946 0{n:03d}"))
            return f"+1 {r.choice(('202', '415', '312'))}-555-01{r.randrange(100):02d}"
        if kind == "card":
            prefix, length = r.choice(_CARD_BINS)
            body = prefix + "".join(r.choices("0123456789", k=length - len(prefix) - 1))
            pan = body + str(luhn_check_digit(body))
            style = r.random()
            if style < 0.6:
                return pan
            sep = " " if style < 0.85 else "-"
            if length == 15:
                return sep.join((pan[:4], pan[4:10], pan[10:]))
            return sep.join(pan[i:i + 4] for i in range(0, 16, 4))
        if kind == "iban":
            country, bank, blen = r.choice(_IBAN_SHAPES)
            bban = bank + "".join(r.choices("0123456789", k=blen))
            iban = iban_with_check(country, bban)
            if r.random() < 0.3:  # paper format, groups of four
                return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
            return iban
        if kind == "ssn":
            area = r.randrange(1, 900)
            while area == 666:
                area = r.randrange(1, 900)
            return f"{area:03d}-{r.randrange(1, 100):02d}-{r.randrange(1, 10000):04d}"
        if kind == "nino":
            while True:
                pre = r.choice("ABCEGHJKLMNPRSTWXYZ") + r.choice("ABCEGHJKLMNPRSTWXYZ")
                if pre not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
                    break
            d = "%06d" % r.randrange(1000000)
            suffix = r.choice("ABCD")
            if r.random() < 0.5:
                return f"{pre} {d[:2]} {d[2:4]} {d[4:]} {suffix}"
            return f"{pre}{d}{suffix}"
        if kind == "es_dni":
            n = r.randrange(10000000, 100000000)
            return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"
        if kind == "nl_bsn":
            while True:  # 11-proof: 9a + 8b + ... + 2h - i ≡ 0 (mod 11)
                d = [r.randrange(1, 10)] + [r.randrange(10) for _ in range(7)]
                last = sum(x * w for x, w in zip(d, range(9, 1, -1))) % 11
                if last < 10:
                    return "".join(map(str, d)) + str(last)
        if kind == "ipv4_public":
            return f"{r.choice(('192.0.2', '198.51.100', '203.0.113'))}.{r.randrange(1, 255)}"
        if kind in ("sf_contact_id", "sf_lead_id", "sf_account_id"):
            prefix = {"sf_contact_id": "003", "sf_lead_id": "00Q", "sf_account_id": "001"}[kind]
            rid = prefix + "5g0000" + self._s(_B62, 6)
            return sfid18(rid) if r.random() < 0.6 else rid
        if kind == "jwt":
            payload = json.dumps({"sub": "005" + self._s(_B62, 12), "iat": _EPOCH + r.randrange(86400),
                                  "scope": "api refresh_token"}, separators=(",", ":"))
            pb = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()
            return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{pb}.{self._s(_B64URL, 43)}"
        if kind == "openai_key":
            if r.random() < 0.8:
                return "sk-proj-" + self._s(_B64URL, 156)
            return "sk-" + self._s(_B62, 48)
        if kind == "anthropic_key":
            return "sk-ant-api03-" + self._s(_B64URL, 93) + "AA"
        if kind == "aws_key":
            return r.choice(("AKIA", "ASIA")) + self._s("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        if kind == "google_api_key":
            return "AIza" + self._s(_B64URL, 35)
        if kind == "password":
            return r.choice(_WORDS).capitalize() + r.choice(("!", "#", "$", "")) + str(r.randrange(10, 9999))
        if kind == "dob":
            y, m, d = r.randrange(1940, 2006), r.randrange(1, 13), r.randrange(1, 29)
            return f"{y}-{m:02d}-{d:02d}" if r.random() < 0.6 else f"{d:02d}/{m:02d}/{y}"
        if kind == "address":
            return (f"{r.randrange(1, 300)} {r.choice(_STREETS)} {r.choice(('Road', 'Street', 'Avenue', 'Lane'))}, "
                    f"{r.choice(_TOWNS)} {r.choice(_POSTCODES)}")
        raise ValueError(kind)

    def hard_negative(self, kind: str) -> str:
        r = self.rng
        if kind == "trace16":
            while True:  # 16-digit Datadog-style trace ID that must NOT pass Luhn
                v = str(r.randrange(10 ** 15, 10 ** 16))
                if not luhn_ok(v):
                    return v
        if kind == "uuid":
            return self.uuid()
        if kind == "iso_ts":
            return f"{self._fmt[1]}.{self.ms}{r.choice(('Z', '+00:00', '+01:00'))}"
        if kind == "version":
            return f"{r.randrange(1, 9)}.{r.randrange(0, 40)}.{r.randrange(0, 12)}.{r.randrange(0, 9)}"
        if kind == "order_number":
            return f"ORD-{r.choice(('2023', '2024'))}-{r.randrange(10 ** 7):07d}"
        if kind == "order_id10":
            return str(r.randrange(10 ** 9, 10 ** 10))
        raise ValueError(kind)


# Key names a planted value sits under (JSON key, query parameter, logfmt key...).
_PII_KEYS = {
    "email": ("email", "customer_email", "contact_email", "user"),
    "phone": ("phone", "mobile", "phone_number"),
    "card": ("card_number", "pan", "cc"),
    "iban": ("iban", "bank_account"),
    "ssn": ("ssn", "tax_id"),
    "nino": ("nino", "ni_number"),
    "es_dni": ("dni", "document_id"),
    "nl_bsn": ("bsn",),
    "ipv4_public": ("client_ip", "x_forwarded_for"),
    "sf_contact_id": ("contact_id", "ContactId", "WhoId"),
    "sf_lead_id": ("lead_id", "LeadId"),
    "sf_account_id": ("account_id", "AccountId"),
    "jwt": ("token", "id_token", "Authorization"),
    "openai_key": ("api_key", "openai_api_key", "Authorization"),
    "anthropic_key": ("x-api-key", "anthropic_api_key"),
    "aws_key": ("aws_access_key_id", "accessKey"),
    "google_api_key": ("key", "google_api_key"),
    "password": ("password", "passwd", "pwd"),
    "dob": ("dob", "date_of_birth", "birthdate"),
    "address": ("address", "shipping_address", "street"),
}
# Relative frequency of each planted kind (contact data and IDs dominate real leaks).
_PII_WEIGHTS = {
    "email": 20, "phone": 10, "card": 6, "iban": 4, "ssn": 4, "nino": 3, "es_dni": 2, "nl_bsn": 2,
    "ipv4_public": 8, "sf_contact_id": 6, "sf_lead_id": 3, "sf_account_id": 3, "jwt": 5,
    "openai_key": 4, "anthropic_key": 3, "aws_key": 3, "google_api_key": 2, "password": 5,
    "dob": 4, "address": 4,
}
_PII_KINDS = list(_PII_WEIGHTS)
_PII_CUM = list(itertools.accumulate(_PII_WEIGHTS.values()))
_HARD_KEYS = {
    "trace16": ("dd.trace_id", "trace_id"),
    "uuid": ("correlation_id", "idempotency_key"),
    "iso_ts": ("created_at", "updated_at"),
    "version": ("app_version", "sdk_version"),
    "order_number": ("order_number", "order_ref"),
    "order_id10": ("order_id",),
}
_HARD_KINDS = list(_HARD_KEYS)

_FIRST = ("Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
          "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Jane", "John", "Maria",
          "Ahmed", "Chen", "Priya", "Lars", "Sofia", "Mateo", "Aoife", "Kwame")
_LAST = ("Doe", "Smith", "Jones", "Garcia", "Nguyen", "Okafor", "Müller".replace("ü", "u"), "Rossi", "Kowalski",
         "Silva", "Tanaka", "Dubois", "Murphy", "Andersen", "Novak", "Patel", "Cohen", "Haddad", "Brown", "Ivanova")
_MAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "shop.example.org")
_CARD_BINS = (("400000", 16), ("424242", 16), ("411111", 16), ("555555", 16), ("222300", 16),
              ("378282", 15), ("601111", 16))
_IBAN_SHAPES = (("GB", "NWBK601613", 8), ("DE", "37040044", 10), ("FR", "2004101005", 13),
                ("NL", "ABNA", 10), ("ES", "21000418", 12))
_STREETS = ("Acacia", "Baker", "Station", "Church", "Mill", "Victoria", "Park", "Kings", "Queens", "Elm")
_TOWNS = ("London", "Leeds", "Bristol", "Springfield", "Manchester", "Cardiff", "Glasgow")
_POSTCODES = ("NW1 6XE", "LS1 4AP", "BS1 5TR", "M1 1AE", "CF10 1EP", "G1 2FF", "SW1A 1AA")
_WORDS = ("sunshine", "dragon", "monkey", "football", "welcome", "summer", "shadow", "orange", "purple")

# ---------------------------------------------------------------------------------------------
# Background vocabulary.

_AI_URLS = (
    "https://api.openai.com/v1/chat/completions",
    "https://api.openai.com/v1/embeddings",
    "https://eu.api.openai.com/v1/responses",
    "https://acme-swedencentral.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01",
    "https://api.anthropic.com/v1/messages",
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:generateContent",
    "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-prod/locations/europe-west4/publishers/google/models/gemini-1.5-pro:generateContent",
    "https://bedrock-runtime.eu-central-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke",
    "https://api.cohere.com/v1/chat",
    "https://api.mistral.ai/v1/chat/completions",
    "https://api.groq.com/openai/v1/chat/completions",
    "https://api-inference.huggingface.co/models/facebook/bart-large-cnn",
)
_OTHER_URLS = (
    "https://api.stripe.com/v1/payment_intents",
    "https://api.shipengine.com/v1/labels",
    "https://acme.my.salesforce.com/services/data/v60.0/composite",
    "https://api.avalara.com/api/v2/transactions/create",
    "https://hooks.acme-internal.net/erp/orders",
)
_SF_URIS = ("/services/data/v60.0/query", "/services/data/v60.0/sobjects/Order", "/services/data/v60.0/composite",
            "/services/data/v60.0/sobjects/Product2/describe", "/services/apexrest/orders/v1",
            "/services/data/v60.0/limits", "/services/async/60.0/job")
_ENTITIES = ("Order", "OrderItem", "Product2", "PricebookEntry", "Case", "Opportunity", "Campaign")
_REPORTS = ("Open Orders by Region", "Weekly Revenue", "Cases by Priority", "Returns last 30 days",
            "Top Products Q1", "Abandoned Carts")
_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.6261.112 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "curl/8.5.0", "okhttp/4.12.0", "python-requests/2.31.0", "SFDC-Callout/60.0",
)
_PATHS = ("/", "/products", "/products/sku-%d", "/cart", "/checkout", "/api/orders", "/api/orders/%d/status",
          "/api/cart/items", "/search?q=winter+jacket&page=%d", "/static/app.%d.js", "/healthz", "/account/orders")
_API_PATHS = ("/orders", "/orders/{id}", "/cart/{id}/items", "/inventory/{sku}", "/payments/authorize",
              "/returns", "/shipping/rates")
_MULE_APPS = ("orders-sapi", "customers-papi", "inventory-sapi", "checkout-eapi", "sfdc-sync")
_MULE_MSGS = ("Received request %s", "Batch step completed: %d records", "Calling Salesforce composite API",
              "Response status 200 in %d ms", "Retrying request after 429 (attempt %d)",
              "Published event to anypoint-mq", "Transform complete for %d items")
_APP_SERVICES = ("checkout", "catalog", "payments", "fulfilment", "search", "case-summarizer")
_APP_MSGS = ("request completed", "cache miss", "payment authorized", "inventory reserved", "cart updated",
             "webhook delivered", "slow query", "rate limited by upstream")
_LLM_TARGETS = (
    ("https://api.openai.com/v1/chat/completions", "gpt-4o-mini"),
    ("https://eu.api.openai.com/v1/chat/completions", "gpt-4o"),
    ("https://acme-swedencentral.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01", "gpt-4o"),
    ("https://api.anthropic.com/v1/messages", "claude-3-5-sonnet-20240620"),
    ("https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:generateContent", "gemini-1.5-flash"),
    ("https://api.mistral.ai/v1/chat/completions", "mistral-large-latest"),
)
_LLM_SYSTEM = (
    "You are a support assistant for Acme Shop. Summarize the case in three bullet points.",
    "You classify customer emails into: refund, delivery, product question, complaint. Answer with one label.",
    "Rewrite the product description below in a friendly tone, max 80 words.",
    "Extract the order status question from the message and answer using the provided order facts only.",
)
_LLM_USER = (
    "The parcel arrived with a broken zip and the customer wants an exchange before the weekend.",
    "Customer asks whether the winter jacket runs small and if the navy colour is back in stock.",
    "Order was marked delivered but the customer says nothing arrived; courier photo shows another door.",
    "Please draft a polite reply explaining that refunds take five to seven working days to appear.",
    "Summarize: customer called twice about a missing discount code applied at checkout.",
)


class _Writer:
    """Line formats. Each ``fmt_*`` takes ``extra`` (key, value) pairs to embed where that format
    naturally carries key/values, and ``ip`` to replace the client address."""

    def __init__(self, g: _Gen):
        self.g = g
        self.r = g.rng

    # -- Salesforce EventLogFile CSV ---------------------------------------------------------
    SF_COMMON = ("EVENT_TYPE", "TIMESTAMP", "REQUEST_ID", "ORGANIZATION_ID", "USER_ID", "RUN_TIME", "CPU_TIME",
                 "URI", "SESSION_KEY", "LOGIN_KEY")
    SF_TAIL = ("TIMESTAMP_DERIVED", "USER_ID_DERIVED", "CLIENT_IP", "URI_ID_DERIVED")
    SF_EXTRA = {
        "ApexCallout": ("TYPE", "METHOD", "SUCCESS", "STATUS_CODE", "TIME", "REQUEST_SIZE", "RESPONSE_SIZE", "URL"),
        "RestApi": ("METHOD", "ENTITY_NAME", "CONNECTED_APP_ID", "MEDIA_TYPE", "NUMBER_FIELDS", "ROWS_PROCESSED",
                    "EXCEPTION_MESSAGE", "STATUS_CODE"),
        "Login": ("USER_NAME", "LOGIN_STATUS", "SOURCE_IP", "API_TYPE", "BROWSER_TYPE", "TLS_PROTOCOL",
                  "LOGIN_TYPE", "COUNTRY_CODE"),
        "BulkApi": ("JOB_ID", "BATCH_ID", "ENTITY_TYPE", "OPERATION_TYPE", "MESSAGE", "NUMBER_FAILURES",
                    "ROWS_PROCESSED"),
        "ReportExport": ("CLIENT_INFO", "REPORT_DESCRIPTION"),
    }

    def sf_header(self, event: str) -> str:
        cols = self.SF_COMMON + self.SF_EXTRA[event] + self.SF_TAIL
        return ",".join(f'"{c}"' for c in cols)

    def sf_row(self, event: str, extra=(), ip=None) -> str:
        g, r = self.g, self.r
        ts, iso = g._fmt[0], g._fmt[1]
        ms = g.ms
        u = r.randrange(len(g.users))
        free = " ".join(f"{k}={v}" for k, v in extra)  # planted values land in the free-text column
        if event == "ApexCallout":
            url = r.choice(_AI_URLS) if r.random() < 0.6 else r.choice(_OTHER_URLS)
            if extra:
                url += ("&" if "?" in url else "?") + "&".join(f"{k}={v.replace(' ', '+')}" for k, v in extra)
            if r.random() < 0.15:
                url = f'""{url}""'  # EventLogFile doubles quotes inside values
            vals = ("REST", r.choice(("POST", "POST", "GET")), "1", r.choice(("200", "200", "200", "429", "500")),
                    str(r.randrange(80, 9000)), str(r.randrange(200, 40000)), str(r.randrange(100, 60000)), url)
            uri = ""
        elif event == "RestApi":
            uri = r.choice(_SF_URIS)
            for k, v in extra:
                if k in ("contact_id", "ContactId", "WhoId", "lead_id", "LeadId", "account_id", "AccountId"):
                    obj = {"1": "Account", "3": "Contact", "Q": "Lead"}[v[2]]
                    uri = f"/services/data/v60.0/sobjects/{obj}/{v}"
                    free = ""
            vals = (r.choice(("GET", "POST", "PATCH")), r.choice(_ENTITIES), r.choice(g.apps), "application/json",
                    str(r.randrange(1, 60)), str(r.randrange(0, 2000)), free, r.choice(("200", "200", "201", "400")))
        elif event == "Login":
            uri = "/index.jsp"
            user = "svc-" + r.choice(_MULE_APPS)  # integration users: not email-shaped in the background
            for k, v in extra:
                if "@" in v:
                    user, free = v, ""
            source_ip = ip or ("Salesforce.com IP" if r.random() < 0.3 else g.private_ip())
            vals = (user, "LOGIN_NO_ERROR", source_ip,
                    r.choice(("E", "P", "")), r.choice(("", "Chrome", "Other")), "TLS 1.3",
                    r.choice(("R", "3", "6")), r.choice(("GB", "DE", "FR", "US")))
            if free:
                vals = (vals[0], "LOGIN_NO_ERROR " + free) + vals[2:]
            ip = None
        elif event == "BulkApi":
            uri = "/services/async/60.0/job"
            vals = ("750" + g._s(_B62, 12), "751" + g._s(_B62, 12), r.choice(_ENTITIES),
                    r.choice(("insert", "upsert", "query", "update")),
                    f"Duplicate value found: {free}" if free else "", str(r.randrange(0, 20)),
                    str(r.randrange(10, 10000)))
        else:  # ReportExport
            uri = "/00O/e"
            vals = (r.choice(_UAS[:3]), r.choice(_REPORTS) + (f" ({free})" if free else ""))
        row = (event, f"{ts}.{ms}", g._s(_B64URL, 22), g.org, g.users[u], str(r.randrange(5, 3000)),
               str(r.randrange(1, 900)), uri, g._s(_B62, 16), g._s(_B62, 16)) + vals + (
            f"{iso}.{ms}Z", g.users18[u], ip or ("Salesforce.com IP" if r.random() < 0.5 else g.private_ip()), "")
        return ",".join(f'"{v}"' for v in row)

    # -- AWS API Gateway JSON access log ---------------------------------------------------------
    def fmt_apigw(self, extra=(), ip=None) -> str:
        g, r = self.g, self.r
        user = next((v for k, v in extra if k == "user"), "-")  # $context.identity.user, when planted
        extra = [(k, v) for k, v in extra if k != "user"]
        parts = [f'"requestId":"{g.uuid()}"', f'"ip":"{ip or g.private_ip()}"', '"caller":"-"', f'"user":"{user}"',
                 f'"requestTime":"{g._fmt[2]}"', f'"httpMethod":"{r.choice(("GET", "GET", "POST", "PUT"))}"',
                 f'"resourcePath":"{r.choice(_API_PATHS)}"', f'"status":"{r.choice(("200", "200", "201", "404"))}"',
                 '"protocol":"HTTP/1.1"', f'"responseLength":"{r.randrange(80, 30000)}"',
                 f'"integrationLatency":"{r.randrange(3, 900)}"']
        parts += [f'"{k}":"{v}"' for k, v in extra]
        return "{" + ",".join(parts) + "}"

    # -- Heroku router logfmt, 30% in syslog log-drain framing -----------------------------------
    def fmt_heroku(self, extra=(), ip=None) -> str:
        g, r = self.g, self.r
        path = r.choice(_PATHS)
        if "%d" in path:
            path = path % r.randrange(1, 99999)
        if extra:
            path += ("&" if "?" in path else "?") + "&".join(f"{k}={v.replace(' ', '+')}" for k, v in extra)
        err = r.random() < 0.03
        head = 'at=error code=H12 desc="Request timeout" ' if err else "at=info "
        body = (f'{head}method={r.choice(("GET", "GET", "POST"))} path="{path}" host=acme-shop.herokuapp.com '
                f'request_id={g.uuid()} fwd="{ip or g.private_ip()}" dyno={r.choice(g.dynos)} '
                f'connect={r.randrange(0, 5)}ms service={30000 if err else r.randrange(2, 800)}ms '
                f'status={503 if err else r.choice((200, 200, 200, 302, 404))} bytes={r.randrange(0, 60000)} protocol=https')
        ts = f"{g._fmt[1]}.{g.ms}000+00:00"
        if r.random() < 0.3:
            msg = f"<158>1 {ts} host heroku router - {body}"
            return f"{len(msg)} {msg}"
        return f"{ts} heroku[router]: {body}"

    # -- Mule 4 default layout -------------------------------------------------------------------
    def fmt_mule(self, extra=(), ip=None) -> str:
        g, r = self.g, self.r
        app = r.choice(_MULE_APPS)
        if extra:
            msg = "payload={" + ",".join(f'"{k}":"{v}"' for k, v in extra) + "}"
        else:
            msg = r.choice(_MULE_MSGS)
            if "%s" in msg:
                msg = msg % r.choice(_API_PATHS)
            elif "%d" in msg:
                msg = msg % r.randrange(1, 500)
        level = "INFO " if r.random() < 0.9 else "WARN "
        return (f"{level} {g._fmt[3]},{g.ms} [[MuleRuntime].uber.{r.randrange(1, 16):02d}: [{app}].post:\\orders:{app}-config"
                f".CPU_LITE {r.choice(g.threads)}] [processor: post:\\orders:{app}-config/processors/{r.randrange(0, 6)}; "
                f"event: {g.uuid()}] org.mule.runtime.core.internal.processor.LoggerMessageProcessor: {msg}")

    # -- nginx combined ----------------------------------------------------------------------------
    def fmt_nginx(self, extra=(), ip=None) -> str:
        g, r = self.g, self.r
        path = r.choice(_PATHS)
        if "%d" in path:
            path = path % r.randrange(1, 99999)
        if extra:
            path += ("&" if "?" in path else "?") + "&".join(f"{k}={v.replace(' ', '+')}" for k, v in extra)
        return (f'{ip or g.private_ip()} - - [{g._fmt[2]}] "{r.choice(("GET", "GET", "GET", "POST"))} {path} HTTP/1.1" '
                f'{r.choice((200, 200, 200, 304, 404, 502))} {r.randrange(0, 90000)} "https://shop.acme.example/" '
                f'"{r.choice(_UAS)}"')

    # -- JSON-lines app log, 20% of them an LLM request body ----------------------------------------
    def fmt_app(self, extra=(), ip=None) -> str:
        g, r = self.g, self.r
        ts = f"{g._fmt[1]}.{g.ms}Z"
        if ip:
            extra = list(extra) + [("client_ip", ip)]
        if r.random() < 0.2:
            return self._llm(ts, extra)
        parts = [f'"ts":"{ts}"', f'"level":"{r.choice(("info", "info", "info", "warn", "debug"))}"',
                 f'"service":"{r.choice(_APP_SERVICES)}"', f'"trace_id":"{r.getrandbits(128):032x}"',
                 f'"span_id":"{r.getrandbits(64):016x}"', f'"msg":"{r.choice(_APP_MSGS)}"',
                 f'"duration_ms":{r.randrange(1, 2500)}', f'"cart_id":"c_{r.getrandbits(48):012x}"']
        parts += [f'"{k}":"{v}"' for k, v in extra]
        return "{" + ",".join(parts) + "}"

    def _llm(self, ts: str, extra) -> str:
        r = self.r
        endpoint, model = r.choice(_LLM_TARGETS)
        user = r.choice(_LLM_USER)
        headers = ""
        prose = []
        for k, v in extra:
            if k in ("Authorization",):
                headers = f',"headers":{{"Authorization":"Bearer {v}"}}'
            elif k in ("x-api-key", "anthropic_api_key"):
                headers = f',"headers":{{"x-api-key":"{v}"}}'
            else:
                prose.append(f"{k.replace('_', ' ')}: {v}")
        if prose:
            user = f"{user} Customer details - {'; '.join(prose)}."
        return (f'{{"ts":"{ts}","level":"debug","service":"case-summarizer","msg":"llm request",'
                f'"endpoint":"{endpoint}"{headers},"body":{{"model":"{model}","messages":['
                f'{{"role":"system","content":"{r.choice(_LLM_SYSTEM)}"}},{{"role":"user","content":"{user}"}}],'
                f'"temperature":{r.choice(("0.2", "0.7", "0"))},"max_tokens":{r.choice((256, 512, 1024))}}}}}')


# Share of bursts per format, and burst length range: EventLogFile bursts are long (one file).
_FORMATS = (
    ("sf_ApexCallout", 3, 20, 200), ("sf_RestApi", 3, 20, 200), ("sf_Login", 1, 20, 120),
    ("sf_BulkApi", 1, 20, 120), ("sf_ReportExport", 1, 10, 60),
    ("apigw", 16, 1, 40), ("heroku", 16, 1, 40), ("mule", 16, 1, 40), ("nginx", 16, 1, 40), ("app", 16, 1, 40),
)
_FORMAT_NAMES = [f[0] for f in _FORMATS]
_FORMAT_CUM = list(itertools.accumulate(f[1] for f in _FORMATS))


def _generate(seed: int, target_bytes: int, out) -> dict:
    """Write lines to binary file ``out`` until at least ``target_bytes``; return the manifest."""
    g = _Gen(seed)
    w = _Writer(g)
    r = g.rng
    rand, choices = r.random, r.choices
    sha = hashlib.sha256()
    written = lines = pii_lines = hard_lines = 0
    batch: list[str] = []
    fns = {"apigw": w.fmt_apigw, "heroku": w.fmt_heroku, "mule": w.fmt_mule, "nginx": w.fmt_nginx, "app": w.fmt_app}
    while written < target_bytes:
        name, = choices(_FORMAT_NAMES, cum_weights=_FORMAT_CUM)
        lo, hi = next((f[2], f[3]) for f in _FORMATS if f[0] == name)
        n = r.randint(lo, hi)
        if name.startswith("sf_"):
            event = name[3:]
            batch.append(w.sf_header(event))
            emit = lambda extra=(), ip=None, _e=event: w.sf_row(_e, extra, ip)  # noqa: E731
        else:
            emit = fns[name]
        g.formats[name] = g.formats.get(name, 0) + n
        for _ in range(n):
            g.tick()
            x = rand()
            if x < PII_LINE_RATE:
                k = 1 if rand() < 0.8 else r.randint(2, 3)
                kinds = choices(_PII_KINDS, cum_weights=_PII_CUM, k=k)
                extra, ip = [], None
                for kind in kinds:
                    g.planted[kind] = g.planted.get(kind, 0) + 1
                    value = g.pii(kind)
                    if kind == "ipv4_public" and ip is None:
                        ip = value
                        continue
                    key = r.choice(_PII_KEYS[kind])
                    if key == "Authorization" and kind == "jwt" and not name == "app":
                        value = "Bearer " + value
                    extra.append((key, value))
                batch.append(emit(extra, ip))
                pii_lines += 1
            elif x < PII_LINE_RATE + HARD_NEGATIVE_LINE_RATE:
                kinds = r.sample(_HARD_KINDS, r.randint(1, 3))
                extra = []
                for kind in kinds:
                    g.hard[kind] = g.hard.get(kind, 0) + 1
                    extra.append((r.choice(_HARD_KEYS[kind]), g.hard_negative(kind)))
                batch.append(emit(extra))
                hard_lines += 1
            else:
                batch.append(emit())
        if len(batch) >= 4096:
            data = ("\n".join(batch) + "\n").encode("latin-1")
            out.write(data)
            sha.update(data)
            written += len(data)
            lines += len(batch)
            batch.clear()
    if batch:
        data = ("\n".join(batch) + "\n").encode("latin-1")
        out.write(data)
        sha.update(data)
        written += len(data)
        lines += len(batch)
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "target_bytes": target_bytes,
        "bytes": written,
        "lines": lines,
        "pii_lines": pii_lines,
        "hard_negative_lines": hard_lines,
        "planted": dict(sorted(g.planted.items())),
        "hard_negatives": dict(sorted(g.hard.items())),
        "format_lines": dict(sorted(g.formats.items())),
        "sha256": sha.hexdigest(),
    }


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def bench_mb() -> int:
    """Corpus size in MiB: ``LEAKWATCH_BENCH_MB`` (default 200)."""
    return int(os.environ.get("LEAKWATCH_BENCH_MB", DEFAULT_MB))


def bench_seed() -> int:
    return int(os.environ.get("LEAKWATCH_BENCH_SEED", DEFAULT_SEED))


def ensure_corpus(mb: int | None = None, seed: int | None = None, directory: Path = CORPUS_DIR) -> tuple[Path, dict]:
    """Return (path, manifest) of the corpus, generating it unless a verified cached copy exists."""
    mb = bench_mb() if mb is None else mb
    seed = bench_seed() if seed is None else seed
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"corpus-{seed}-{mb}.log"
    man_path = path.with_suffix(".json")
    if path.exists() and man_path.exists():
        manifest = json.loads(man_path.read_text())
        if (manifest.get("generator_version") == GENERATOR_VERSION
                and manifest.get("bytes") == path.stat().st_size
                and _sha256_file(path) == manifest.get("sha256")):
            return path, manifest
    tmp = path.with_suffix(".tmp")
    t0 = time.perf_counter()
    with open(tmp, "wb", buffering=8 << 20) as f:
        manifest = _generate(seed, mb << 20, f)
    manifest["generation_seconds"] = round(time.perf_counter() - t0, 2)
    os.replace(tmp, path)  # never leave a half-written file under the cached name
    man_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path, manifest


def ensure_big_corpus(times: int = 10, mb: int | None = None, seed: int | None = None,
                      directory: Path = CORPUS_DIR) -> tuple[Path, dict]:
    """A ``times``-fold concatenation of the corpus (10 × 200 MiB ≈ 2.1 GB) for the RSS test.

    Repeating the same bytes is fine there: the point is that memory stays flat with input size,
    not what is in the input. Cached by size and the source corpus' sha256 (re-hashing 2 GB on
    every run would cost more than copying it).
    """
    src, src_manifest = ensure_corpus(mb, seed, directory)
    path = src.with_name(f"{src.stem}x{times}.log")
    man_path = path.with_suffix(".json")
    size = src_manifest["bytes"] * times
    if path.exists() and man_path.exists():
        manifest = json.loads(man_path.read_text())
        if manifest.get("source_sha256") == src_manifest["sha256"] and path.stat().st_size == size:
            return path, manifest
    tmp = path.with_suffix(".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        for _ in range(times):
            fin.seek(0)
            remaining = src_manifest["bytes"]
            while remaining:  # copy_file_range: the kernel copies, Python never holds the bytes
                n = os.copy_file_range(fin.fileno(), fout.fileno(), min(remaining, 1 << 30))
                if n == 0:
                    raise OSError(f"short copy from {src}")
                remaining -= n
    os.replace(tmp, path)
    manifest = {"source": src.name, "source_sha256": src_manifest["sha256"], "times": times, "bytes": size,
                "lines": src_manifest["lines"] * times, "pii_lines": src_manifest["pii_lines"] * times}
    man_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path, manifest


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=None, help="size in MiB (default LEAKWATCH_BENCH_MB or 200)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--big", type=int, default=0, help="also build the N-fold concatenation")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    path, manifest = ensure_corpus(args.mb, args.seed)
    print(f"{path} ({time.perf_counter() - t0:.1f} s)")
    print(json.dumps(manifest, indent=2))
    if args.big:
        big, _ = ensure_big_corpus(args.big, args.mb, args.seed)
        print(big)


if __name__ == "__main__":
    main()
