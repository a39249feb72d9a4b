"""``leakwatch drill generate``: a scenario's synthetic logs, byte-identical for a seed.

Each system of the scenario becomes one file in its real format; each file gets background
traffic (``per_minute`` lines per scenario minute, at random times), hard negatives (16-digit
trace IDs that fail Luhn, UUIDs, order numbers, version strings, SKUs), the scenario's planted
leaks and its activity records, in time order. Beside the logs:

- ``manifest.json``: the ground truth. Per planted leak its file, line (1-based, the EventLogFile
  header is line 1), byte offset of the line in the file, byte span of the value within the line,
  entity, placement, scenario minute and expected incident, and a SHA-256 of the value: never
  the value itself. Per activity record its file, line, kind, minute and expected incident. Per
  file its line count, size and SHA-256.
- ``timeline.json``: the scenario second of every line, per file, which ``drill run`` replays.

Determinism: one ``random.Random`` per system, seeded with the scenario id, the seed and the
system id (adding a system leaves the others' bytes alone), no clock, no environment, no
hash-ordered containers. The timestamps inside the lines count from ``start`` (default
:data:`DEFAULT_START`); ``drill run`` passes the drill's own start, so the same seed gives the
same lines with other times.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leakwatch.drills import synth
from leakwatch.drills.scenarios import Activity, Plant, Scenario, System
from leakwatch.errors import UsageError

#: Bumped when the same seed would give other bytes.
GENERATOR = "leakwatch-drill/1"
#: Timestamps of ``drill generate`` start here unless ``--start`` says otherwise (the Monday
#: DOMAIN.md's examples come from, 09:00 UTC).
DEFAULT_START = datetime(2024, 3, 11, 9, 0, tzinfo=UTC)

#: The drill organisation's own hosts: the AI gateway its services should use, the shop.
GATEWAY_HOST = "ai-gw.acme-shop.example"
GATEWAY_URL = f"https://{GATEWAY_HOST}/v1/chat/completions"
AZURE_GATEWAY_URL = ("https://acme-ai.openai.azure.com/openai/deployments/gpt-4o/chat/completions"
                     "?api-version=2024-06-01")
SHOP_HOST = "shop.acme.example"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_VENDOR_URLS = {
    "OPENAI_API_KEY": ("openai", "https://api.openai.com/v1/chat/completions", "gpt-4o"),
    "ANTHROPIC_API_KEY": ("anthropic", "https://api.anthropic.com/v1/messages", "claude-3-5-sonnet-20240620"),
    "GOOGLE_API_KEY": ("google", "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:generateContent",
                       "gemini-1.5-flash"),
}
_NON_AI_URLS = (
    "https://api.stripe.com/v1/payment_intents", "https://api.shipengine.com/v1/labels",
    "https://api.avalara.com/api/v2/transactions/create", "https://hooks.acme-internal.example/erp/orders",
)
_SF_URIS = ("/services/data/v60.0/query", "/services/data/v60.0/sobjects/Order", "/services/data/v60.0/composite",
            "/services/data/v60.0/sobjects/Product2/describe", "/services/apexrest/orders/v1",
            "/services/data/v60.0/limits")
_SF_OBJECTS = ("Order", "OrderItem", "Product2", "PricebookEntry", "Campaign")
_PATHS = ("/", "/products", "/products/sku-%d", "/cart", "/checkout", "/api/orders", "/api/orders/%d/status",
          "/search?q=winter+jacket&page=%d", "/static/app.%d.js", "/healthz", "/account/orders")
_API_PATHS = ("/orders", "/orders/{id}", "/cart/{id}/items", "/inventory/{sku}", "/payments/authorize",
              "/returns", "/shipping/rates")
_UAS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0", "okhttp/4.12.0", "curl/8.5.0")
_MULE_MSGS = ("Received request %s", "Batch step completed: %d records", "Calling Salesforce composite API",
              "Response status 200 in %d ms", "Retrying request after 429 (attempt %d)",
              "Published event to anypoint-mq", "Transform complete for %d items")
_APP_MSGS = ("request completed", "cache miss", "payment authorized", "inventory reserved", "cart updated",
             "webhook delivered", "slow query", "rate limited by upstream")
_LLM_SYSTEM = ("You are a support assistant for Acme Shop. Summarize the case in three bullet points.",
               "You classify customer messages into: refund, delivery, product question, complaint. Answer with one label.",
               "Rewrite the product description below in a friendly tone, max 80 words.")
_LLM_USER = ("The parcel arrived with a broken zip and the customer wants an exchange before the weekend.",
             "Customer asks whether the winter jacket runs small and if the navy colour is back in stock.",
             "Order was marked delivered but nothing arrived; the courier photo shows another door.",
             "Please draft a polite reply explaining that refunds take five to seven working days.")
_EU_EDGES = ("FRA56-P5", "AMS54-C1", "CDG50-C2", "DUB2-C1", "MUC50-P1")

ELF_COMMON = ("EVENT_TYPE", "TIMESTAMP", "REQUEST_ID", "ORGANIZATION_ID", "USER_ID", "RUN_TIME", "CPU_TIME", "URI",
              "SESSION_KEY", "LOGIN_KEY")
ELF_COLUMNS = {
    "elf-apexcallout": ("ApexCallout", ELF_COMMON + ("TYPE", "METHOD", "SUCCESS", "STATUS_CODE", "TIME", "REQUEST_SIZE",
                                                     "RESPONSE_SIZE", "URL", "TIMESTAMP_DERIVED", "USER_ID_DERIVED",
                                                     "CLIENT_IP", "URI_ID_DERIVED")),
    "elf-restapi": ("RestApi", ELF_COMMON + ("METHOD", "ENTITY_NAME", "CONNECTED_APP_ID", "MEDIA_TYPE", "NUMBER_FIELDS",
                                             "ROWS_PROCESSED", "EXCEPTION_MESSAGE", "STATUS_CODE", "TIMESTAMP_DERIVED",
                                             "USER_ID_DERIVED", "CLIENT_IP", "URI_ID_DERIVED")),
    "elf-bulkapiresult": ("BulkApiResult", ELF_COMMON + ("JOB_ID", "BATCH_ID", "ENTITY_TYPE", "ROWS_PROCESSED",
                                                         "TIMESTAMP_DERIVED", "USER_ID_DERIVED", "CLIENT_IP")),
    "elf-reportexport": ("ReportExport", ELF_COMMON + ("CLIENT_INFO", "REPORT_DESCRIPTION", "TIMESTAMP_DERIVED",
                                                       "USER_ID_DERIVED", "CLIENT_IP", "URI_ID_DERIVED")),
}


@dataclass
class _Item:
    """One line to write: background (kind None), a plant or an activity record."""

    t: float  # scenario seconds
    order: int  # tie-break: background, then plants, then activity, in scenario order
    plant: Plant | None = None
    plant_index: int = -1
    value: str | None = None
    activity: Activity | None = None
    activity_index: int = -1


@dataclass
class GeneratedFile:
    """One generated log file: its lines (text without newline) and their scenario seconds."""

    system: System
    lines: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


@dataclass
class Generated:
    """What :func:`generate` wrote: the manifest (also in ``manifest.json``) and the files."""

    manifest: dict[str, Any]
    files: list[GeneratedFile]
    out_dir: Path


class _Org:
    """The drill organisation's identities, drawn once per drill: org ID, users, apps."""

    def __init__(self, rng: random.Random):
        self.org = "00D5g0" + synth.chars(rng, synth.B62, 9)
        self.users = [synth.sf_id(rng, "005", long=False) for _ in range(8)]
        self.apps = [synth.sf_id(rng, "0H4", long=False) for _ in range(3)]
        self.actors: dict[str, str] = {}
        self._rng = rng

    def actor(self, label: str | None) -> str:
        """The User ID of a named actor of the scenario (one per label, kept for the drill)."""
        if label is None:
            return self.users[0]
        if label not in self.actors:
            self.actors[label] = synth.sf_id(self._rng, "005", long=False)
        return self.actors[label]


class _Clock:
    """Timestamp strings of one scenario second, in every format's shape."""

    def __init__(self, start: datetime):
        self.start = start

    def at(self, t: float) -> datetime:
        return self.start + timedelta(seconds=t)

    def iso_ms(self, t: float) -> str:
        d = self.at(t)
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"

    def clf(self, t: float) -> str:
        d = self.at(t)
        return f"{d.day:02d}/{_MONTHS[d.month - 1]}/{d.year:04d}:{d.strftime('%H:%M:%S')} +0000"

    def elf(self, t: float) -> str:
        d = self.at(t)
        return d.strftime("%Y%m%d%H%M%S.") + f"{d.microsecond // 1000:03d}"

    def mule(self, t: float) -> str:
        d = self.at(t)
        return d.strftime("%Y-%m-%d %H:%M:%S,") + f"{d.microsecond // 1000:03d}"

    def heroku(self, t: float) -> str:
        d = self.at(t)
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}+00:00"


# --- formats ------------------------------------------------------------------------------------
# Each writer renders one record: background (plant and activity None), a plant (the value
# goes where plant.where says; the writer returns the literal text that carries it) or an
# activity record. All text is ASCII, so character offsets are byte offsets.


class _Writer:
    def __init__(self, system: System, rng: random.Random, org: _Org, clock: _Clock):
        self.system, self.r, self.org, self.c = system, rng, org, clock

    def header(self) -> str | None:
        return None

    def render(self, t: float, item: _Item) -> tuple[str, str | None]:
        """(line, the literal text of the planted value or None)."""
        raise NotImplementedError

    def hex(self, n: int) -> str:
        return f"{self.r.getrandbits(4 * n):0{n}x}"

    def maybe_negative(self) -> list[tuple[str, str]]:
        """A hard negative on ~15% of background lines."""
        return [synth.hard_negative(self.r)] if self.r.random() < 0.15 else []


def _j(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=True)


def _prompt(system: str, user: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0.2, "max_tokens": 512}


def _in_query(value: str) -> str:
    """A value as a query string carries it: ``@`` percent-encoded, spaces left out (a phone
    number as ``+442079460123``, the way clients put it into a URL unencoded)."""
    return value.replace("@", "%40").replace(" ", "")


def _put(text: str, value: str, literal: str | None = None) -> tuple[str, str]:
    return text, literal if literal is not None else value


class _AppJsonl(_Writer):
    """JSON-lines application log; 20% of the background lines are LLM requests through the gateway."""

    def render(self, t, item):
        r, sid = self.r, self.system.id
        base = {"ts": self.c.iso_ms(t), "level": "info", "service": sid}
        if item.activity is not None:
            return _j({**base, "msg": "llm request", "url": item.activity.params["url"], "status": 200,
                       "latency_ms": r.randrange(300, 2500)}), None
        if item.plant is not None:
            return self._plant(base, item.plant, item.value)
        if r.random() < 0.2:
            return _j({**base, "level": "debug", "msg": "llm request", "endpoint": GATEWAY_URL,
                       "body": _prompt(r.choice(_LLM_SYSTEM), r.choice(_LLM_USER))}), None
        rec = {**base, "msg": r.choice(_APP_MSGS), "trace_id": self.hex(32), "span_id": self.hex(16),
               "duration_ms": r.randrange(1, 2500), "cart_id": "c_" + self.hex(12)}
        rec.update(self.maybe_negative())
        return _j(rec), None

    def _plant(self, base, p: Plant, v: str):
        w = p.where
        if w.startswith("field:"):
            if p.url:  # the record the service sent to the AI endpoint, logged with its fields
                return _put(_j({**base, "msg": "llm request", "url": p.url, "status": 200, w[6:]: v}), v)
            return _put(_j({**base, "msg": self.r.choice(_APP_MSGS), "trace_id": self.hex(32), w[6:]: v}), v)
        if w == "config.api_key":
            provider, _url, model = _VENDOR_URLS[p.entity]
            return _put(_j({**base, "level": "debug", "msg": "llm client ready",
                            "config": {"provider": provider, "model": model, "api_key": v, "timeout_s": 30}}), v)
        if w in ("headers.authorization", "headers.x-api-key"):
            _provider, url, _model = _VENDOR_URLS[p.entity]
            hdr = {"Authorization": f"Bearer {v}"} if w == "headers.authorization" else {"x-api-key": v}
            return _put(_j({**base, "level": "debug", "msg": "http request", "url": url, "headers": hdr}), v)
        # prompt.system / prompt.user: the app builds the prompt itself and logs it on its way
        # to the gateway.
        sys_p, user_p = _prompt_with(self.r, p, v)
        return _put(_j({**base, "level": "debug", "msg": "llm request", "endpoint": p.url or GATEWAY_URL,
                        "body": _prompt(sys_p, user_p)}), v)


def _prompt_with(r: random.Random, p: Plant, v: str) -> tuple[str, str]:
    """System and user prompt texts, the value in the one ``p.where`` names."""
    label = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "SALESFORCE_RECORD_ID": "Contact Id",
             "CREDIT_CARD": "card", "IBAN_CODE": "IBAN", "UK_NINO": "NI number"}.get(p.entity, "reference")
    if p.where == "prompt.system":
        return (f"You are the account assistant of Acme Shop. Customer record: {label} {v}; tier gold. "
                "Answer only about this customer's orders."), r.choice(_LLM_USER)
    return r.choice(_LLM_SYSTEM), f"{r.choice(_LLM_USER)} Customer {label}: {v}."


class _GatewayJsonl(_Writer):
    """The AI gateway's own access log: every call it made upstream, some with the request body."""

    _UPSTREAMS = ("https://api.openai.com/v1/chat/completions", "https://eu.api.openai.com/v1/chat/completions",
                  "https://api.anthropic.com/v1/messages")
    _CONSUMERS = ("case-summarizer", "support-bot", "catalog-writer")

    def render(self, t, item):
        r = self.r
        rec = {"time": self.c.iso_ms(t), "route": "chat", "consumer": r.choice(self._CONSUMERS), "method": "POST",
               "upstream_url": r.choice(self._UPSTREAMS), "status": 200, "latency_ms": r.randrange(200, 3000)}
        if item.activity is not None:
            rec["upstream_url"] = item.activity.params["url"]
            return _j(rec), None
        if item.plant is not None:
            p, v = item.plant, item.value
            rec["upstream_url"] = p.url or self._UPSTREAMS[0]
            if p.where.startswith("field:"):
                rec[p.where[6:]] = v
            else:
                rec["request"] = _prompt(*_prompt_with(r, p, v))
            return _put(_j(rec), v)
        if r.random() < 0.3:
            rec["request"] = _prompt(r.choice(_LLM_SYSTEM), r.choice(_LLM_USER))
        return _j(rec), None


class _Apigw(_Writer):
    """AWS API Gateway access log, JSON (DOMAIN.md §1)."""

    def render(self, t, item):
        r = self.r
        rec = {"requestId": synth.uuid4(r), "ip": synth.private_ip(r), "caller": "-", "user": "-",
               "requestTime": self.c.clf(t), "httpMethod": r.choice(("GET", "GET", "POST", "PUT")),
               "resourcePath": r.choice(_API_PATHS), "status": r.choice(("200", "200", "201", "404")),
               "protocol": "HTTP/1.1", "responseLength": str(r.randrange(80, 30000)),
               "integrationLatency": str(r.randrange(3, 900))}
        if item.plant is not None:
            p, v = item.plant, item.value
            if p.where == "user":
                rec["user"] = v
                return _put(_j(rec), v)
            rec["resourcePath"] = "/customers/search"
            rec["path"] = f"/v1/customers/search?{p.where[6:]}={v}"
            return _put(_j(rec), v)
        return _j(rec), None


class _Heroku(_Writer):
    """Heroku router lines (logfmt), a third in log-drain framing."""

    def render(self, t, item):
        r = self.r
        path = r.choice(_PATHS)
        if "%d" in path:
            path = path % r.randrange(1, 99999)
        literal = None
        if item.plant is not None:
            literal = _in_query(item.value)
            path = f"/account/lookup?{item.plant.where[6:]}={literal}"
        body = (f'at=info method={r.choice(("GET", "GET", "POST"))} path="{path}" host={SHOP_HOST} '
                f"request_id={synth.uuid4(r)} fwd=\"{synth.private_ip(r)}\" dyno=web.{r.randrange(1, 5)} "
                f"connect={r.randrange(0, 5)}ms service={r.randrange(2, 800)}ms "
                f"status={r.choice((200, 200, 302, 404))} bytes={r.randrange(0, 60000)} protocol=https")
        ts = self.c.heroku(t)
        if r.random() < 0.3:
            msg = f"<158>1 {ts} host heroku router - {body}"
            return f"{len(msg)} {msg}", literal
        return f"{ts} heroku[router]: {body}", literal


class _Mule(_Writer):
    """Mule 4 default layout; payloads logged by LoggerMessageProcessor."""

    def render(self, t, item):
        r, app = self.r, self.system.id
        head = (f"INFO  {self.c.mule(t)} [[MuleRuntime].uber.{r.randrange(1, 16):02d}: [{app}].flow.CPU_LITE "
                f"@{self.hex(8)}] [processor: {app}-flow/processors/{r.randrange(0, 6)}; event: {synth.uuid4(r)}] "
                "org.mule.runtime.core.internal.processor.LoggerMessageProcessor: ")
        if item.activity is not None:
            return head + f"POST {item.activity.params['url']} status=200 elapsed_ms={r.randrange(200, 2500)}", None
        if item.plant is not None:
            p, v = item.plant, item.value
            if p.where == "headers.authorization":
                _provider, url, _model = _VENDOR_URLS[p.entity]
                return _put(head + f"POST {url} headers=" + _j({"Authorization": f"Bearer {v}"}), v)
            if p.where == "prompt.user":
                url = p.url or "https://api.openai.com/v1/chat/completions"
                return _put(head + f"POST {url} payload=" + _j(_prompt(*_prompt_with(r, p, v))), v)
            payload = {"recordType": "Contact", p.where[8:]: v, "segment": r.choice(("retail", "b2b"))}
            # With a url the flow logs the outbound request it sends the record in.
            return _put(head + (f"POST {p.url} " if p.url else "") + "payload=" + _j(payload), v)
        msg = r.choice(_MULE_MSGS)
        if "%s" in msg:
            msg = msg % r.choice(_API_PATHS)
        elif "%d" in msg:
            msg = msg % r.randrange(1, 500)
        neg = self.maybe_negative()
        if neg:
            msg += " " + " ".join(f"{k}={v}" for k, v in neg)
        return head + msg, None


class _Cdn(_Writer):
    """A CDN's access log: combined format plus the edge, cache status and host fields CDNs add."""

    _AI_PATHS = ("/assistant/answer", "/genai/summary", "/recommendations/for-you")

    def render(self, t, item):
        r = self.r
        ip = synth.private_ip(r)
        edge = r.choice(_EU_EDGES)
        path = r.choice(_PATHS)
        if "%d" in path:
            path = path % r.randrange(1, 99999)
        literal = None
        if item.activity is not None:
            edge = item.activity.params["edge"]
            path = item.activity.params.get("path") or f"{r.choice(self._AI_PATHS)}?session={self.hex(6)}"
        elif item.plant is not None:
            p, v = item.plant, item.value
            if p.where == "client_ip":
                ip = literal = v
            else:
                literal = _in_query(v)
                path = f"/assistant/answer?session={self.hex(6)}&{p.where[6:]}={literal}"
        elif r.random() < 0.2:
            path = f"{r.choice(self._AI_PATHS)}?session={self.hex(6)}"
        cache = r.choice(("HIT", "HIT", "MISS"))
        line = (f'{ip} - - [{self.c.clf(t)}] "GET {path} HTTP/1.1" {r.choice((200, 200, 304))} {r.randrange(200, 90000)} '
                f'"https://{SHOP_HOST}/" "{r.choice(_UAS)}" {cache} pop={edge} host={SHOP_HOST}')
        return line, literal


class _Elf(_Writer):
    """Salesforce EventLogFile CSV: the header row first, every value quoted (DOMAIN.md §1)."""

    def __init__(self, *a):
        super().__init__(*a)
        self.event, self.columns = ELF_COLUMNS[self.system.format]

    def header(self) -> str:
        return ",".join(f'"{c}"' for c in self.columns)

    def render(self, t, item):
        r, org = self.r, self.org
        user = r.choice(org.users)
        if item.activity is not None:
            user = org.actor(item.activity.params.get("actor"))
        row = {"EVENT_TYPE": self.event, "TIMESTAMP": self.c.elf(t), "REQUEST_ID": "4" + synth.chars(r, synth.B62, 21),
               "ORGANIZATION_ID": org.org, "USER_ID": user, "RUN_TIME": str(r.randrange(5, 3000)),
               "CPU_TIME": str(r.randrange(1, 900)), "URI": "", "SESSION_KEY": synth.chars(r, synth.B62, 16),
               "LOGIN_KEY": synth.chars(r, synth.B62, 16), "TIMESTAMP_DERIVED": self.c.iso_ms(t),
               "USER_ID_DERIVED": synth.sfid18(user), "CLIENT_IP": r.choice(("Salesforce.com IP", synth.private_ip(r))),
               "URI_ID_DERIVED": ""}
        literal = getattr(self, "_" + self.event.lower())(row, item)
        cells = []
        for c in self.columns:
            v = row.get(c, "")
            cells.append('"' + str(v).replace('"', '""') + '"')
        return ",".join(cells), literal

    def _apexcallout(self, row, item):
        r = self.r
        url = r.choice((*_NON_AI_URLS, AZURE_GATEWAY_URL))
        literal = None
        if item.activity is not None:
            url = item.activity.params["url"]
        elif item.plant is not None:
            literal = _in_query(item.value)
            url = item.plant.url or url
            url += ("&" if "?" in url else "?") + f"{item.plant.where[6:]}={literal}"
        row.update({"TYPE": "REST", "METHOD": r.choice(("POST", "POST", "GET")), "SUCCESS": "1",
                    "STATUS_CODE": r.choice(("200", "200", "200", "429")), "TIME": str(r.randrange(80, 9000)),
                    "REQUEST_SIZE": str(r.randrange(200, 40000)), "RESPONSE_SIZE": str(r.randrange(100, 60000)),
                    "URL": url})
        return literal

    def _restapi(self, row, item):
        r = self.r
        uri = r.choice(_SF_URIS)
        literal = None
        if item.plant is not None:
            literal = item.value
            obj = {"3": "Contact", "Q": "Lead", "1": "Account"}.get(literal[2], "Contact")
            uri = f"/services/data/v60.0/sobjects/{obj}/{literal}"
        row.update({"URI": uri, "METHOD": r.choice(("GET", "POST", "PATCH")), "ENTITY_NAME": r.choice(_SF_OBJECTS),
                    "CONNECTED_APP_ID": r.choice(self.org.apps), "MEDIA_TYPE": "application/json",
                    "NUMBER_FIELDS": str(r.randrange(1, 60)), "ROWS_PROCESSED": str(r.randrange(0, 200)),
                    "EXCEPTION_MESSAGE": "", "STATUS_CODE": r.choice(("200", "200", "201", "400"))})
        return literal

    def _bulkapiresult(self, row, item):
        r = self.r
        job, batch = "750" + synth.chars(r, synth.B62, 12), "751" + synth.chars(r, synth.B62, 12)
        obj, rows = r.choice(_SF_OBJECTS), r.randrange(10, 900)  # background: below bulk_min_rows
        if item.activity is not None:
            obj, rows = item.activity.params["object"], item.activity.params["rows"]
        row.update({"URI": f"/services/async/60.0/job/{job}/batch/{batch}/result/752{synth.chars(r, synth.B62, 12)}",
                    "JOB_ID": job, "BATCH_ID": batch, "ENTITY_TYPE": obj, "ROWS_PROCESSED": str(rows)})

    def _reportexport(self, row, item):
        r = self.r
        report = "00O5g0" + synth.chars(r, synth.B62, 9)
        desc = item.activity.params["report"] if item.activity is not None else "Open Orders by Region"
        row.update({"URI": f"/{report}", "CLIENT_INFO": r.choice(_UAS[:3]), "REPORT_DESCRIPTION": desc,
                    "URI_ID_DERIVED": synth.sfid18(report)})


_WRITERS: dict[str, Callable[..., _Writer]] = {
    "app-jsonl": _AppJsonl, "ai-gateway-jsonl": _GatewayJsonl, "apigw": _Apigw, "heroku": _Heroku, "mule": _Mule,
    "cdn": _Cdn, "elf-apexcallout": _Elf, "elf-restapi": _Elf, "elf-bulkapiresult": _Elf, "elf-reportexport": _Elf,
}
#: Formats whose background rows would themselves be the pattern (every ReportExport row is an
#: export): they carry only the scenario's activity.
NO_BACKGROUND = ("elf-reportexport",)


# --- generation ---------------------------------------------------------------------------------


def _rng(*parts: object) -> random.Random:
    # A string seed is hashed with SHA-512 by random.seed: stable across runs and platforms.
    return random.Random("\x00".join(map(str, parts)))


def _jitter(rng: random.Random, minute: float, length_s: float) -> float:
    """A planted record lands within 20 s after its minute (never past the scenario's end)."""
    return min(length_s - 0.001, minute * 60 + rng.uniform(0, 20))


def build(scenario: Scenario, seed: int, *, start: datetime = DEFAULT_START, scale: float = 1.0
          ) -> tuple[list[GeneratedFile], dict[str, Any]]:
    """The scenario's files and manifest, in memory (see the module docstring)."""
    if start.tzinfo is None:
        raise UsageError("the drill start time needs a time zone")
    if not 0 <= scale <= 100:
        raise UsageError(f"--scale {scale:g}: between 0 and 100")
    start = start.astimezone(UTC).replace(microsecond=0)
    length_s = scenario.minutes * 60.0
    clock = _Clock(start)
    org = _Org(_rng(scenario.id, seed, "org"))
    items: dict[str, list[_Item]] = {s.id: [] for s in scenario.systems}
    vrng = _rng(scenario.id, seed, "values")
    for pi, p in enumerate(scenario.plants):
        same = synth.value(vrng, p.entity) if p.same_value else None
        for m in p.minutes:
            items[p.system].append(_Item(_jitter(vrng, m, length_s), 1, plant=p, plant_index=pi,
                                         value=same or synth.value(vrng, p.entity)))
    for ai, a in enumerate(scenario.activity):
        for m in a.minutes:
            items[a.system].append(_Item(_jitter(vrng, m, length_s), 2, activity=a, activity_index=ai))
    files: list[GeneratedFile] = []
    plants_out: list[dict[str, Any]] = []
    activity_out: list[dict[str, Any]] = []
    for s in scenario.systems:
        rng = _rng(scenario.id, seed, "system", s.id)
        writer = _WRITERS[s.format](s, rng, org, clock)
        n = 0 if s.format in NO_BACKGROUND else round(s.per_minute * scenario.minutes * scale)
        todo = [_Item(rng.uniform(0, length_s), 0) for _ in range(n)] + items[s.id]
        todo.sort(key=lambda it: (round(it.t, 3), it.order))
        gf = GeneratedFile(s)
        head = writer.header()
        if head is not None and todo:
            gf.lines.append(head)
            gf.times.append(round(todo[0].t, 3))
        for it in todo:
            t = round(it.t, 3)
            line, literal = writer.render(t, it)
            gf.lines.append(line)
            gf.times.append(t)
            if it.plant is not None:
                start_b = line.index(literal)
                plants_out.append({
                    "file": s.file, "line": len(gf.lines), "start": start_b, "end": start_b + len(literal),
                    "entity": it.plant.entity, "where": it.plant.where, "system": s.id, "plant": it.plant_index,
                    "t": t, "minute": round(t / 60, 3),
                    "value_sha256": hashlib.sha256(it.value.encode()).hexdigest(),
                    "incidents": [str(k) for k in it.plant.incidents],
                })
            elif it.activity is not None:
                activity_out.append({
                    "file": s.file, "line": len(gf.lines), "kind": it.activity.kind, "system": s.id,
                    "activity": it.activity_index, "t": t, "minute": round(t / 60, 3),
                    "incidents": [str(k) for k in it.activity.incidents],
                })
        files.append(gf)
    offsets: dict[str, list[int]] = {}
    file_rows = []
    for gf in files:
        data = _bytes(gf)
        pos, offs = 0, []
        for ln in gf.lines:
            offs.append(pos)
            pos += len(ln) + 1
        offsets[gf.system.file] = offs
        file_rows.append({"path": gf.system.file, "system": gf.system.id, "format": gf.system.format,
                          "lines": len(gf.lines), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    for p in plants_out:
        p["offset"] = offsets[p["file"]][p["line"] - 1]
    plants_out.sort(key=lambda p: (p["t"], p["file"], p["line"]))
    activity_out.sort(key=lambda a: (a["t"], a["file"], a["line"]))
    manifest = {
        "generator": GENERATOR, "scenario": scenario.id, "title": scenario.title, "seed": seed,
        "start": start.isoformat().replace("+00:00", "Z"), "minutes": scenario.minutes, "scale": scale,
        "files": file_rows, "plants": plants_out, "activity": activity_out,
        "actors": {label: {"user_id_sha256": hashlib.sha256(uid.encode()).hexdigest()}
                   for label, uid in sorted(org.actors.items())},
        "expect": {"incidents": [{"pattern": k.pattern, "vendor": k.vendor} for k in scenario.expect_incidents],
                   "regimes": list(scenario.expect_regimes)},
    }
    return files, manifest


def _bytes(gf: GeneratedFile) -> bytes:
    return ("\n".join(gf.lines) + "\n").encode("ascii") if gf.lines else b""


def generate(scenario: Scenario, seed: int, out_dir: str | Path, *, start: datetime = DEFAULT_START,
             scale: float = 1.0) -> Generated:
    """Write the scenario's logs under ``out_dir`` (one file per system, folders as named),
    ``manifest.json`` and ``timeline.json``. ``out_dir`` must not hold files yet."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: a file, not a folder; give a new or empty --out folder")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out}: not empty; give a new or empty --out folder")
    files, manifest = build(scenario, seed, start=start, scale=scale)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for gf in files:
            p = out / gf.system.file
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(_bytes(gf))
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n", encoding="utf-8")
        timeline = {"start": manifest["start"], "files": {gf.system.file: gf.times for gf in files}}
        (out / "timeline.json").write_text(json.dumps(timeline, separators=(",", ":")) + "\n", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {e.filename or out}: {e.strerror or e}; give an --out folder you can "
                         "write to") from None
    return Generated(manifest, files, out)


def tree_sha256(directory: str | Path) -> str:
    """SHA-256 over every file under ``directory`` (relative path and bytes, in path order): the
    fingerprint the determinism test compares."""
    d = Path(directory)
    h = hashlib.sha256()
    for p in sorted(x for x in d.rglob("*") if x.is_file()):
        h.update(p.relative_to(d).as_posix().encode() + b"\x00")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
