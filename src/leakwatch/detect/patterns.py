"""Failure-pattern detectors: what went wrong around the findings, as alerts a responder triages.

Each detector is one DuckDB query over ``findings`` and ``events`` (schema m003) that returns one
row per alert (P2 and ``api_volume`` first ask a cheap question that usually ends the search);
Python only turns rows into :class:`Alert` objects and stores them in ``alerts`` (m004) with one
statement per kind of write. They run at the end of every scan, so they are built to be quick:
0.15 s for all seven on the 200 MB benchmark corpus (200k events, 22k findings, 2 400 alerts).
The detectors and what one alert stands for:

``P1_key_exposed``
    An AI-service credential seen in logs or in an exported custom setting: one alert per
    credential (``value_hash``). Critical when it sits in a ``…__c`` field of an export (an
    org-wide custom setting: everyone with export rights holds the key) or in more than one file.
``P1_gateway_bypass``
    AI calls that did not go through the AI gateway (``via_gateway = false``; unknown is not
    flagged): one alert per caller (actor, else connected app) × vendor × host.
``P2_bulk_then_ai``
    A bulk read of customer objects followed within ``window_minutes`` by an AI call from the
    same user or the same connected app: one alert per bulk job row, listing the calls.
``P3_prompt_pii``
    Customer identifiers inside LLM prompts: one alert per destination host (or, when the
    destination is unknown, per logging system, i.e. per file name with rotation digits folded),
    with entity and role counts. A system prompt is sent with every request, so PII there is the
    worst case.
``P4_cdn_region``
    AI-generated content served from CDN edges whose jurisdiction is not allowed: one alert per
    host × jurisdiction, listing the edges. An edge that cannot be placed is not allowed either
    (the residency rule for AI calls), but is only medium: it mostly means the edge table lacks it.
``bulk_export``
    ReportExport rows and Bulk API result downloads: one alert per caller per UTC day. A download
    known to have fewer than ``bulk_min_rows`` rows does not count; ReportExport rows carry no
    row count, so each counts, and the day is high only when known rows reach ``bulk_min_rows``.
``api_volume``
    An hour in which a caller made unusually many API calls compared with its own history.
    The statistic: calls per UTC hour per caller; the baseline of hour *h* is the **median** of
    the caller's hourly counts over the ``api_volume_baseline_days`` before *h*, counting only
    hours in which it made at least one call (quiet hours left out, so the baseline is
    conservative: a caller active 9-to-5 is compared with its working hours, not with its
    nights). *h* is unusual when ``count >= api_volume_factor × median`` and
    ``count >= api_volume_min_events``, and only once at least ``api_volume_min_baseline_hours``
    such hours precede it. The median, not the mean, so one earlier burst does not raise the bar
    for the next one.

Alerts are deduplicated by :attr:`Alert.alert_key`, a hash of what identifies the alert (the
credential's hash, the caller and host, the bulk row's content, ...), never of its counts, so
re-running the detectors adds nothing. When a re-run finds more evidence for a stored alert, its
row is refreshed (summary, evidence, and severity, which only ever rises); an alert whose severity
rose is returned again with :attr:`Alert.escalated_from` set. Evidence lists at most
:data:`MAX_EVIDENCE_IDS` ids, the lowest first (P2: its calls in their ranked order). Where an
alert names the most frequent value of a column (its region, vendor or user), a tie goes to the
value seen first.

Nothing here reads ``raw_value``. Summaries carry masked previews, entity names, hosts, objects
and counts; evidence carries ids and aggregates.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import duckdb
import numpy as np

from leakwatch.detect.egress import edge_named
from leakwatch.detect.rules import Rule, Severity
from leakwatch.errors import StoreError, UsageError
from leakwatch.store.db import private_umask
from leakwatch.store.queries import db_name as _db_label

PATTERNS: Final = (
    "P1_key_exposed", "P1_gateway_bypass", "P2_bulk_then_ai", "P3_prompt_pii", "P4_cdn_region",
    "bulk_export", "api_volume",
)

#: Entities of the shipped rules tagged ``credential`` and ``ai`` (see :func:`entities_tagged`;
#: a test keeps this in step with ``rules/secrets.yaml``).
AI_CREDENTIAL_ENTITIES: Final = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "HUGGINGFACE_TOKEN", "GROQ_API_KEY",
    "REPLICATE_API_TOKEN", "COHERE_API_KEY", "MISTRAL_API_KEY", "AZURE_API_KEY",
)

#: Entities of the shipped rules tagged ``credential``: never customer data (P3 leaves them to P1).
CREDENTIAL_ENTITIES: Final = (
    *AI_CREDENTIAL_ENTITIES, "PRIVATE_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AZURE_STORAGE_KEY", "BEARER_TOKEN", "BASIC_AUTH_CREDENTIALS", "JWT", "PASSWORD", "API_KEY",
    "SALESFORCE_SESSION_ID", "STRIPE_SECRET_KEY", "GITHUB_TOKEN", "SLACK_TOKEN",
)

#: The vendor a credential belongs to, for alerts whose records name no destination.
#: Named as in rules/ai_endpoints.yaml, so that a key's alert and the calls to that vendor meet in
#: one incident.
_CREDENTIAL_VENDOR: Final = {
    "OPENAI_API_KEY": "OpenAI", "ANTHROPIC_API_KEY": "Anthropic", "GOOGLE_API_KEY": "Google (Gemini API)",
    "HUGGINGFACE_TOKEN": "Hugging Face", "GROQ_API_KEY": "Groq", "REPLICATE_API_TOKEN": "Replicate",
    "COHERE_API_KEY": "Cohere", "MISTRAL_API_KEY": "Mistral AI", "AZURE_API_KEY": "Microsoft (Azure OpenAI)",
}

# A generic credential (API_KEY, BEARER_TOKEN, a bare token found by a column rule) counts as an
# AI credential when the field holding it names an AI service: `OpenAI_API_Key__c`,
# `headers.x-anthropic-key`, `llm_token`. Matched against the lower-cased field path.
_AI_FIELD_RE: Final = (
    r"openai|open_ai|anthropic|claude|gemini|vertex_?ai|bedrock|cohere|mistral|groq|hugging_?face"
    r"|replicate|perplexity|deepseek|together_?ai|fireworks|gpt|llm|genai|gen_ai"
    r"|(^|[^a-z])ai[_.-]?(api|key|token|secret)"
)

# LLM request bodies, by their documented shapes: OpenAI/Anthropic `messages[i].content` (or its
# parts' `.text`), OpenAI Responses `input[i].content[j].text`, Gemini `contents[i].parts[j].text`
# and `systemInstruction.parts[j].text`. These paths mean "prompt" wherever they appear.
_LLM_PATH_RE: Final = (
    r"(^|\.)(messages|input)\[\d+\]\.content(\[\d+\]\.text)?$"
    r"|(^|\.)contents\[\d+\]\.parts\[\d+\]\.text$"
    r"|(^|\.)system_?instruction\.parts\[\d+\]\.text$"
)
# Bare names that are a prompt only in a record sent to an AI endpoint (dest_vendor known):
# `prompt` (completions), `system` (Anthropic), `instructions` (OpenAI Responses), `input`.
_PROMPT_PATH_RE: Final = r"(^|\.)(prompt|system|instructions|input)$"
# Paths that are a system prompt by the API's definition, when the reader gave no role.
_SYSTEM_PATH_RE: Final = r"(^|\.)(system|instructions|system_?instruction\.parts\[\d+\]\.text)$"

# Bulk operations that write rather than read (BulkApi OPERATION_TYPE); anything else — query,
# queryAll, a result download, or no operation known — counts as a read for P2.
_BULK_WRITE_RE: Final = r"insert|update|upsert|delete"

#: At most this many finding/event ids go into one alert's evidence (the totals are kept).
MAX_EVIDENCE_IDS: Final = 100

#: Common CDN points of presence (IATA airport codes, as CloudFront, Cloudflare and Fastly name
#: their edges) → jurisdiction, in the AI-endpoint registry's codes: ``EU`` for EU member states,
#: otherwise the country (``UK``, ``CH``, ``NO``: European but outside the EU).
DEFAULT_EDGE_JURISDICTIONS: Final[Mapping[str, str]] = {
    **dict.fromkeys(
        ("FRA", "MUC", "DUS", "HAM", "BER", "TXL", "AMS", "CDG", "ORY", "MRS", "MAD", "BCN", "LIS",
         "MXP", "MIL", "LIN", "FCO", "PMO", "ARN", "CPH", "HEL", "DUB", "WAW", "VIE", "BRU", "PRG",
         "BUD", "OTP", "SOF", "ZAG", "ATH", "LUX", "TLL", "RIX", "VNO", "BTS", "LJU", "MLA"),
        "EU",
    ),
    **dict.fromkeys(("LHR", "LON", "LCY", "MAN", "EDI", "LGW"), "UK"),
    **dict.fromkeys(("ZRH", "GVA"), "CH"),
    "OSL": "NO", "IST": "TR",
    **dict.fromkeys(
        ("IAD", "JFK", "EWR", "LGA", "BOS", "PHL", "ATL", "MIA", "ORD", "DFW", "IAH", "DEN", "PHX",
         "LAX", "SFO", "SJC", "SEA", "MSP", "DTW", "SLC", "LAS", "HIO", "PDX", "CMH", "BNA"),
        "US",
    ),
    **dict.fromkeys(("YUL", "YYZ", "YTO", "YVR"), "CA"),
    **dict.fromkeys(("GRU", "GIG"), "BR"),
    **dict.fromkeys(("MEX", "QRO"), "MX"),
    **dict.fromkeys(("NRT", "HND", "KIX"), "JP"),
    **dict.fromkeys(("BOM", "DEL", "MAA", "BLR", "HYD"), "IN"),
    **dict.fromkeys(("SYD", "MEL", "PER", "BNE"), "AU"),
    "SIN": "SG", "HKG": "HK", "ICN": "KR", "TPE": "TW", "JNB": "ZA", "CPT": "ZA", "DXB": "AE",
    "TLV": "IL", "SCL": "CL", "EZE": "AR", "LIM": "PE", "BOG": "CO", "AKL": "NZ", "CGK": "ID", "KUL": "MY",
    "BKK": "TH", "MNL": "PH",
}

_EDGE_CODE_RE: Final = re.compile(r"[A-Za-z]{3}(?![A-Za-z])")

#: What a jurisdiction mapping returns for an edge it cannot place (the registry's word too).
UNKNOWN_JURISDICTION: Final = "UNKNOWN"
# Allowing a group allows its members: the EEA is the EU plus Norway, Iceland and Liechtenstein
# (the same rule as the residency check of AI calls).
_JURISDICTION_GROUPS: Final = {"EEA": frozenset({"EU", "EEA", "NO", "IS", "LI"})}


def _jurisdiction_allowed(jurisdiction: str, allowed: Iterable[str]) -> bool:
    j = jurisdiction.upper()
    if j == UNKNOWN_JURISDICTION:
        return False
    return any(a.upper() == j or j in _JURISDICTION_GROUPS.get(a.upper(), ()) for a in allowed)


def default_edge_jurisdiction(edge: str) -> str | None:
    """The jurisdiction of a CDN edge from :data:`DEFAULT_EDGE_JURISDICTIONS`, or None.

    Reads the airport code CDNs put in their edge names: CloudFront ``FRA56-P1``, Cloudflare's
    colo ``CDG``, Fastly's ``cache-fra-eddf8230042-FRA``. The leading code wins; otherwise the
    first three-letter token that is a known POP.
    """
    text = edge.strip()
    lead = _EDGE_CODE_RE.match(text)
    if lead and lead.group().upper() in DEFAULT_EDGE_JURISDICTIONS:
        return DEFAULT_EDGE_JURISDICTIONS[lead.group().upper()]
    for token in re.split(r"[^A-Za-z0-9]+", text):
        m = _EDGE_CODE_RE.match(token)
        if m and len(token) == 3 and token.upper() in DEFAULT_EDGE_JURISDICTIONS:
            return DEFAULT_EDGE_JURISDICTIONS[token.upper()]
    return None


def entities_tagged(rules: Iterable[Rule], *tags: str) -> tuple[str, ...]:
    """Entities of the rules that carry every tag in ``tags``, sorted and unique: e.g.
    ``entities_tagged(rules, "credential", "ai")`` for :attr:`PatternSettings.ai_credential_entities`
    when users add their own credential rules."""
    want = set(tags)
    return tuple(sorted({r.entity for r in rules if want <= set(r.tags)}))


@dataclass(frozen=True)
class PatternSettings:
    """What the detectors look for. Every field has a default that suits a Salesforce org."""

    #: P2: how long after a bulk read an AI call still counts as following it.
    window_minutes: int = 60
    #: P2: the smallest bulk read (rows) worth an alert; bulk_export: rows that make a day "high".
    bulk_min_rows: int = 1000
    #: P2: objects whose bulk read matters (case-insensitive Salesforce API names).
    bulk_objects: tuple[str, ...] = ("Contact", "Lead", "Account")
    #: api_volume: how many times the caller's median hour an hour must reach.
    api_volume_factor: float = 3.0
    #: api_volume: the fewest calls in an hour that can be unusual (ignores 2 → 7 calls).
    api_volume_min_events: int = 50
    #: api_volume: active hours of history needed before a caller's hours are judged.
    api_volume_min_baseline_hours: int = 12
    #: api_volume: how far back the baseline reaches (4 weeks: weekly rhythms, recent habits).
    api_volume_baseline_days: int = 28
    #: P4: jurisdictions where AI-generated content may be served (``EU``, ``EEA``, ``UK``...;
    #: ``EEA`` also allows EU, NO, IS, LI).
    allowed_jurisdictions: tuple[str, ...] = ("EU",)
    #: P4: maps an edge location to a jurisdiction, None or ``"unknown"`` when it cannot;
    #: defaults to :func:`default_edge_jurisdiction` (``EgressRegistry.edge_jurisdiction`` fits).
    edge_jurisdiction: Callable[[str], str | None] | None = None
    #: P4: when not empty, the edges allowed to serve AI content, as prefixes of the edge name
    #: (``FRA`` allows ``FRA56-P1``), instead of the jurisdiction test.
    allowed_edges: tuple[str, ...] = ()
    #: P1: entities that are AI-service credentials whatever field they sit in.
    ai_credential_entities: tuple[str, ...] = AI_CREDENTIAL_ENTITIES
    #: P1: credentials that count as AI credentials in an AI-named field; P3: never customer data.
    credential_entities: tuple[str, ...] = CREDENTIAL_ENTITIES

    def __post_init__(self) -> None:
        checks = (
            ("window_minutes", self.window_minutes > 0, "a positive number of minutes"),
            ("bulk_min_rows", self.bulk_min_rows >= 0, "zero or more rows"),
            ("api_volume_factor", self.api_volume_factor >= 1, "a factor of 1 or more"),
            ("api_volume_min_events", self.api_volume_min_events >= 1, "one or more events"),
            ("api_volume_min_baseline_hours", self.api_volume_min_baseline_hours >= 1, "one or more hours"),
            ("api_volume_baseline_days", self.api_volume_baseline_days >= 1, "one or more days"),
        )
        for name, ok, want in checks:
            if not ok:
                raise UsageError(f"pattern setting {name} = {getattr(self, name)!r}: must be {want}")
        for name in ("bulk_objects", "allowed_jurisdictions", "allowed_edges", "ai_credential_entities",
                     "credential_entities"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"pattern setting {name} = {value!r}: must be a list of names")


@dataclass(frozen=True)
class Alert:
    """One alert as stored in ``alerts``. ``summary`` is one line of masked facts; ``evidence``
    is JSON-ready (ids of the findings/events behind it, counts, first/last times in ISO 8601)."""

    alert_key: str
    pattern: str
    severity: Severity
    ts: datetime | None
    actor_hash: str | None
    dest_vendor: str | None
    dest_region: str | None
    summary: str
    evidence: dict[str, Any] = field(compare=False)
    scan_id: int | None = None
    #: Set once stored.
    alert_id: int | None = None
    #: The stored severity when a re-run raised it; None for a new alert.
    escalated_from: Severity | None = None


# -- helpers ------------------------------------------------------------------------------------

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
_ONE_US: Final = timedelta(microseconds=1)
_US_PER_HOUR: Final = 3_600_000_000
_US_PER_DAY: Final = 86_400_000_000


def _rows(
    con: duckdb.DuckDBPyConnection, what: str, sql: str, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    try:
        cur = con.execute(sql, dict(params or {}))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    except duckdb.Error as e:
        raise StoreError(f"{_db_label(con)}: cannot {what}: {e}") from e


def _key(pattern: str, *parts: object) -> str:
    """A stable alert key: the pattern and a hash of what identifies the alert."""
    text = "\x1f".join(
        "" if p is None else (p.isoformat() if isinstance(p, (datetime, date)) else str(p)) for p in parts
    )
    return f"{pattern}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:32]}"


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def _from_us(us: int | None) -> datetime | None:
    """A time the queries return as ``epoch_us(...)``, as an aware UTC datetime. Fetching
    TIMESTAMPTZ itself builds a ZoneInfo datetime per value (~1.7 µs, 5 ms of P1's 1 700 alerts
    on the 200 MB corpus) that :func:`_utc` then converts again."""
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _iso(ts: datetime | None) -> str | None:
    ts = _utc(ts)
    return ts.isoformat().replace("+00:00", "Z") if ts else None


def _iso_us(us: int | None) -> str | None:
    """:func:`_iso` of :func:`_from_us`, from a naive datetime (half the cost of an aware one's
    ``isoformat``; four per alert add up over 2 400 alerts)."""
    return None if us is None else (_EPOCH_NAIVE + timedelta(microseconds=us)).isoformat() + "Z"


def _ids(ids: Sequence[int] | None) -> list[int]:
    return list(ids[:MAX_EVIDENCE_IDS]) if ids else []


def _counts(hist: Mapping[str, int] | None) -> dict[str, int]:
    """A DuckDB histogram as a plain dict, largest first."""
    items = sorted((hist or {}).items(), key=lambda kv: (-kv[1], str(kv[0])))
    return {str(k): int(v) for k, v in items}


def _count_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in counts.items())


def _who(actor_masked: str | None, actor_hash: str | None, app: str | None) -> str:
    """A caller as a summary may name it: the masked preview, else a hash prefix, else the app."""
    if actor_masked:
        who = f"user {actor_masked}"
    elif actor_hash:
        who = f"user #{actor_hash[:8]}"
    else:
        return f"app {app}" if app else "an unidentified caller"
    return f"{who} (app {app})" if app else who


def _dest(host: str | None, vendor: str | None, region: str | None) -> str:
    inner = ", ".join(x for x in (vendor, region) if x)
    name = host or vendor or "an unknown AI service"
    return f"{name} ({inner})" if inner and host else name


def _span(first: str | None, last: str | None) -> str:
    """A time span for a summary, from the ISO times of its ends."""
    if first is None:
        return "time unknown"
    return first if first == last else f"{first} .. {last}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _caller_key() -> str:
    # Group by the user when known, else by the connected app: NULL actor and app merge into one
    # "unidentified" caller rather than vanishing from GROUP BY's view.
    return "actor_hash, CASE WHEN actor_hash IS NULL THEN app END AS app_key"


def _floor_div(expr: str, unit: int) -> str:
    """SQL for ``floor(expr / unit)`` as BIGINT: UTC hour or day numbers from ``epoch_us(ts)``.
    ``timezone('UTC', ts)`` with ``date_trunc`` goes through ICU per row: 10 ms for the 94k API
    events of the 200 MB corpus, against 4 ms for this. ``//`` truncates towards zero, so a
    time before 1970 would land in the wrong hour; the DOUBLE division is exact here
    (``epoch_us`` < 2**53, and the distance to the next boundary is far above one ulp)."""
    return f"CAST(floor(({expr}) / {unit}) AS BIGINT)"


# The top MAX_EVIDENCE_IDS ids: `min(id, n)` keeps a bounded heap per group, where
# `list(id ORDER BY id)` collects and sorts every id (78k for P1_gateway_bypass on the 200 MB
# corpus) only for Python to keep 100 of them.
_TOP: Final = MAX_EVIDENCE_IDS


class _Events:
    """The events a detector reads: one row per (file, line, kind), the newest.

    A file scanned again must not count its old lines twice. The only writer,
    ``ingest.insert_events``, adds a (file, line, kind) only when it is not stored yet, so in a
    database it wrote nothing is duplicated, and deduplicating every read with a window cost
    4-5 ms per detector on the 200 MB corpus. The window runs only when duplicates are possible
    (written by hand, or by some other writer): when a path has events from two sources (scans)
    whose line ranges of one kind overlap. A rescan of a grown file adds lines past the old end,
    so its ranges do not overlap. The check costs 0.6 ms when no path was scanned twice, else
    ~5 ms once per run.

    Salesforce also writes each row of an hour twice: in the hourly EventLogFile and in the
    day's daily one (``leakwatch pull`` fetches both when the org has hourly logs). Those are two
    files, so the rescan check above does not see them; :func:`_elf_copies_once` does, when two
    EventLogFiles hold events of one kind and event type in overlapping times.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con
        self._dedup: bool | None = None
        self._elf_copies: bool | None = None

    def _has_elf_copies(self) -> bool:
        return bool(_rows(
            self._con, "look for EventLogFiles that overlap (hourly and daily)",
            """
            WITH spans AS (
                SELECT source_path, kind, event_type, min(ts) AS lo, max(ts) AS hi
                FROM events WHERE format = 'eventlogfile' AND ts IS NOT NULL GROUP BY ALL
            )
            SELECT EXISTS (
                SELECT 1 FROM spans a JOIN spans b
                  ON a.kind = b.kind AND a.event_type IS NOT DISTINCT FROM b.event_type
                 AND a.source_path < b.source_path AND a.lo <= b.hi AND b.lo <= a.hi
            ) AS found
            """,
        )[0]["found"])

    def _needs_dedup(self) -> bool:
        what = "look for lines stored twice in events"
        rescanned = _rows(
            self._con, what,
            "SELECT EXISTS (SELECT 1 FROM events GROUP BY source_path"
            " HAVING min(source_id) < max(source_id)) AS found",
        )[0]["found"]
        if not rescanned:
            return False
        return bool(_rows(
            self._con, what,
            """
            WITH spans AS (
                SELECT source_path, kind, source_id, min(line) AS lo, max(line) AS hi
                FROM events GROUP BY ALL
            )
            SELECT EXISTS (
                SELECT 1 FROM spans a JOIN spans b
                  ON a.source_path = b.source_path AND a.kind = b.kind AND a.source_id < b.source_id
                 AND a.lo <= b.hi AND b.lo <= a.hi
            ) AS found
            """,
        )[0]["found"])

    def where(self, condition: str) -> str:
        """SQL for the events matching ``condition``, deduplicated if the database needs it."""
        if self._dedup is None:
            self._dedup = self._needs_dedup()
            self._elf_copies = self._has_elf_copies()
        sql = f"SELECT * FROM events WHERE {condition}"
        if self._dedup:
            sql += "\nQUALIFY row_number() OVER (PARTITION BY source_path, line, kind ORDER BY event_id DESC) = 1"
        if self._elf_copies:
            sql = _elf_copies_once(sql, _EVENT_ROW_KEY, "event_id")
        return sql


# What an EventLogFile row's event keeps of the row: two events of two files alike in all of it
# are one row written to two files.
_EVENT_ROW_KEY: Final = (
    "kind, ts, event_type, actor_hash, app, url_host, url_path, status, sf_object, rows_processed,"
    " edge_location, cache_status"
)


def _elf_copies_once(select: str, key: str, order: str) -> str:
    """``select``'s rows with the EventLogFile rows that another EventLogFile also holds kept once.

    A day's hourly and daily files hold the same rows. Rows of EventLogFiles that agree in
    ``key`` (their timestamp included) are one row when they come from different files; within
    one file they stay distinct (two calls in one millisecond), so the n-th such row of a file
    pairs with the n-th of another. The copy kept is the one in the file with more records (the
    daily file), so evidence names the file that holds the whole day. Rows of
    other formats and rows without a timestamp pass unchanged.
    """
    return f"""
        SELECT * EXCLUDE (_copy, _file_rows) FROM (
            SELECT *, row_number() OVER (PARTITION BY source_path, {key} ORDER BY {order}) AS _copy
            FROM (
                SELECT c.*, coalesce(s.n_records, 0) AS _file_rows
                FROM ({select}) AS c LEFT JOIN (SELECT source_id AS _sid, n_records FROM sources) AS s
                  ON s._sid = c.source_id
            )
        )
        QUALIFY format IS DISTINCT FROM 'eventlogfile' OR ts IS NULL
             OR row_number() OVER (PARTITION BY {key}, _copy ORDER BY _file_rows DESC, {order}) = 1
    """


# -- detectors ----------------------------------------------------------------------------------
#
# The shape every query keeps to (measured on the 200 MB benchmark corpus, DuckDB 2.0, 1 thread):
# one pass over the big table that aggregates as far as it can (DISTINCT and mode() aggregates
# each cost DuckDB a further grouping and a join: 8 of them made P1_gateway_bypass 48 ms), then
# per-alert work on those few rows; at most MAX_EVIDENCE_IDS ids leave the database; times
# leave it as epoch microseconds. A mode (most frequent value) breaks ties towards the value
# seen first.


# P1's credential findings. A key in an EventLogFile row is in the hourly and the daily file
# both: one exposure, not two files.
_P1_CREDENTIALS: Final = _elf_copies_once("""
            SELECT finding_id, source_id, source_path, line, start_byte, ts, format, entity, masked, value_hash,
                   actor_hash, dest_vendor, dest_region, coalesce(field_path, sf_field, field) AS fpath,
                   coalesce(suffix(lower(field_path), '__c') OR suffix(lower(sf_field), '__c'), false)
                       AS in_setting
            FROM findings
            -- A value its validator rejected (a low-entropy placeholder such as sk-proj-XXXX…) is
            -- no exposed key.
            WHERE coalesce(score_validator, 0) >= 0
              AND (list_contains($ai, entity)
                   OR (list_contains($cred, entity)
                       AND regexp_matches(lower(coalesce(field_path, sf_field, field, '')), $ai_field)))
""", "value_hash, ts, fpath, start_byte", "finding_id")


def _p1_key_exposed(con: duckdb.DuckDBPyConnection, s: PatternSettings, ev: _Events) -> list[Alert]:
    # Credentials are few (1 800 of 22 000 findings on the 200 MB corpus) and a credential's
    # findings fewer: lists per credential, reduced by list functions, beat separate DISTINCT
    # and mode groupings (11 ms against 18 ms).
    rows = _rows(
        con,
        "look for exposed AI credentials (P1)",
        f"""
        WITH cred AS ({_P1_CREDENTIALS}),
        g AS (
            SELECT value_hash,
                   arg_min(entity, finding_id) AS entity,
                   arg_min(masked, finding_id) AS masked,
                   count(*) AS n_findings,
                   min(ts) AS first_ts, max(ts) AS last_ts,
                   bool_or(in_setting) AS in_setting,
                   min(finding_id, {_TOP}) AS ids,
                   list(source_path) AS paths, list(line) AS lines, list(fpath) AS fpaths,
                   list(actor_hash) AS actors, list(dest_vendor) AS vendors, list(dest_region) AS regions
            FROM cred GROUP BY value_hash
        )
        SELECT value_hash, entity, masked, n_findings, in_setting, ids,
               epoch_us(first_ts) AS first_ts, epoch_us(last_ts) AS last_ts,
               len(list_distinct(paths)) AS n_files,
               len(list_distinct(list_zip(paths, lines))) AS n_lines,
               list_sort(list_distinct(fpaths)) AS fields,
               list_sort(list_distinct(paths))[:{_TOP}] AS files,
               list_aggregate(actors, 'mode') AS actor_hash,
               list_aggregate(vendors, 'mode') AS dest_vendor,
               list_aggregate(regions, 'mode') AS dest_region
        FROM g ORDER BY g.first_ts NULLS LAST, value_hash
        """,
        {"ai": list(s.ai_credential_entities), "cred": list(s.credential_entities), "ai_field": _AI_FIELD_RE},
    )
    alerts = []
    for r in rows:
        critical = r["in_setting"] or r["n_files"] > 1
        vendor = r["dest_vendor"] or _CREDENTIAL_VENDOR.get(r["entity"])
        where = "an exported custom setting" if r["in_setting"] else "logs"
        first, last = _iso_us(r["first_ts"]), _iso_us(r["last_ts"])
        summary = (
            f"{r['entity']} {r['masked'] or ''} exposed in {where}: "
            f"{_plural(r['n_lines'], 'line')} in {_plural(r['n_files'], 'file')}, {_span(first, last)}"
        )
        alerts.append(Alert(
            alert_key=_key("P1_key_exposed", r["value_hash"]),
            pattern="P1_key_exposed",
            severity=Severity.CRITICAL if critical else Severity.HIGH,
            ts=_from_us(r["first_ts"]),
            actor_hash=r["actor_hash"],
            dest_vendor=vendor,
            dest_region=r["dest_region"],
            summary=summary,
            evidence={
                "findings": _ids(r["ids"]), "n_findings": r["n_findings"], "value_hash": r["value_hash"],
                "entity": r["entity"], "masked": r["masked"], "n_files": r["n_files"],
                "n_lines": r["n_lines"], "files": r["files"], "fields": r["fields"],
                "in_exported_setting": bool(r["in_setting"]),
                "first_ts": first, "last_ts": last,
            },
        ))
    return alerts


def _p1_gateway_bypass(con: duckdb.DuckDBPyConnection, s: PatternSettings, ev: _Events) -> list[Alert]:
    rows = _rows(
        con,
        "look for AI calls that bypass the gateway (P1)",
        f"""
        WITH ai AS ({ev.where("kind = 'ai_call' AND via_gateway = false")}),
        -- One pass over the calls (78k on the 200 MB corpus) down to one row per caller x
        -- destination x region x file x app (666 rows); the rest reads those.
        part AS (
            SELECT {_caller_key()}, dest_vendor, url_host, dest_region, source_path, app,
                   count(*) AS n, count(*) FILTER (residency_violation) AS n_res,
                   min(ts) AS first_ts, max(ts) AS last_ts, arg_max(actor_masked, ts) AS actor_masked,
                   min(event_id) AS first_id, min(event_id, {_TOP}) AS ids
            FROM ai GROUP BY ALL
        ),
        -- Per region: what the mode of dest_region counts.
        region AS (
            SELECT actor_hash, app_key, dest_vendor, url_host, dest_region,
                   sum(n) AS n, sum(n_res) AS n_res, min(first_ts) AS first_ts, max(last_ts) AS last_ts,
                   arg_max(actor_masked, last_ts) AS actor_masked, min(first_id) AS first_id,
                   list(source_path) AS paths, list(app) AS apps, flatten(list(ids)) AS ids
            FROM part GROUP BY ALL
        ),
        g AS (
            SELECT actor_hash, app_key, dest_vendor, url_host,
                   sum(n) AS n_calls, sum(n_res) AS n_residency,
                   min(first_ts) AS first_ts, max(last_ts) AS last_ts,
                   arg_max(actor_masked, last_ts) AS actor_masked,
                   arg_max(dest_region, (n, -first_id)) FILTER (dest_region IS NOT NULL) AS dest_region,
                   len(list_distinct(flatten(list(paths)))) AS n_files,
                   list_sort(list_distinct(flatten(list(apps)))) AS apps,
                   list_sort(flatten(list(ids)))[:{_TOP}] AS ids
            FROM region GROUP BY ALL
        )
        SELECT * EXCLUDE (first_ts, last_ts), epoch_us(first_ts) AS first_ts, epoch_us(last_ts) AS last_ts
        FROM g ORDER BY g.first_ts NULLS LAST, actor_hash, app_key, dest_vendor, url_host
        """,
    )
    alerts = []
    for r in rows:
        who = _who(r["actor_masked"], r["actor_hash"], r["app_key"] or (r["apps"][0] if r["apps"] else None))
        extra = f", {r['n_residency']} violating residency" if r["n_residency"] else ""
        first, last = _iso_us(r["first_ts"]), _iso_us(r["last_ts"])
        summary = (
            f"{who} called {_dest(r['url_host'], r['dest_vendor'], r['dest_region'])} directly, not via the "
            f"AI gateway: {_plural(r['n_calls'], 'call')}{extra}, {_span(first, last)}"
        )
        alerts.append(Alert(
            alert_key=_key("P1_gateway_bypass", r["actor_hash"], r["app_key"], r["dest_vendor"], r["url_host"]),
            pattern="P1_gateway_bypass",
            # A direct call that also leaves the allowed jurisdiction is both unmonitored and unlawful.
            severity=Severity.CRITICAL if r["n_residency"] else Severity.HIGH,
            ts=_from_us(r["first_ts"]),
            actor_hash=r["actor_hash"],
            dest_vendor=r["dest_vendor"],
            dest_region=r["dest_region"],
            summary=summary,
            evidence={
                "events": _ids(r["ids"]), "n_calls": r["n_calls"], "n_files": r["n_files"],
                "url_host": r["url_host"], "apps": r["apps"], "n_residency_violations": r["n_residency"],
                "first_ts": first, "last_ts": last,
            },
        ))
    return alerts


def _p2_bulk_then_ai(con: duckdb.DuckDBPyConnection, s: PatternSettings, ev: _Events) -> list[Alert]:
    window_us = int(s.window_minutes) * 60_000_000
    params = {
        "min_rows": s.bulk_min_rows, "objects": [o.lower() for o in s.bulk_objects],
        "write_ops": _BULK_WRITE_RE, "window": s.window_minutes,
    }
    bulk = f"""
        bulk AS (
            SELECT event_id, ts, actor_hash, actor_masked, app, sf_object, event_type, rows_processed,
                   {_floor_div("epoch_us(ts)", window_us)} AS slot
            FROM ({ev.where(
                "kind = 'bulk' AND ts IS NOT NULL AND rows_processed >= $min_rows"
                " AND list_contains($objects, lower(sf_object))"
                " AND NOT regexp_matches(lower(coalesce(event_type, '')), $write_ops)")})
            -- The hourly and the daily EventLogFile of a day hold the same rows: one job row once.
            QUALIFY row_number() OVER (
                PARTITION BY ts, actor_hash, app, sf_object, event_type, rows_processed ORDER BY event_id) = 1
        )"""
    # Bulk reads of customer objects are rare (none in the 200 MB corpus): looking for them
    # first (1.5 ms) spares the pass over every AI call (11 ms there) when there are none.
    if not _rows(con, "look for bulk reads (P2)", f"WITH {bulk} SELECT event_id FROM bulk LIMIT 1",
                 {k: params[k] for k in ("min_rows", "objects", "write_ops")}):
        return []
    rows = _rows(
        con,
        "look for bulk reads followed by AI calls (P2)",
        f"""
        WITH {bulk},
        ai AS (
            SELECT event_id, ts, actor_hash, app, url_host, dest_vendor, dest_region, residency_violation,
                   via_gateway, {_floor_div("epoch_us(ts)", window_us)} AS slot
            FROM ({ev.where("kind = 'ai_call' AND ts IS NOT NULL")})
        ),
        -- A call within the window after a bulk row lies in the bulk row's slot (window-long
        -- time buckets) or the next one. Joining on (caller, slot) keeps each hash bucket to the
        -- calls near the bulk row; on the caller alone every bulk row of a user would meet every
        -- call of that user before the time condition thins them out.
        near AS (SELECT *, slot + unnest([0, 1]) AS near_slot FROM bulk),
        pairs AS (
            SELECT b.event_id AS bulk_id, a.*, 'actor' AS matched_on
            FROM near b JOIN ai a
              ON a.actor_hash = b.actor_hash AND a.slot = b.near_slot
             AND a.ts >= b.ts AND a.ts <= b.ts + to_minutes(CAST($window AS BIGINT))
            UNION ALL
            SELECT b.event_id AS bulk_id, a.*, 'app' AS matched_on
            FROM near b JOIN ai a
              ON a.app = b.app AND a.slot = b.near_slot
             AND a.ts >= b.ts AND a.ts <= b.ts + to_minutes(CAST($window AS BIGINT))
            WHERE NOT coalesce(a.actor_hash = b.actor_hash, false)
        ),
        calls AS (
            SELECT bulk_id, count(*) AS n_calls, count(*) FILTER (residency_violation) AS n_residency,
                   list(DISTINCT coalesce(nullif(url_host, ''), nullif(dest_vendor, ''), '?')) AS hosts,
                   -- Residency violations first, then by time: the first names the worst destination.
                   arg_min({{'event_id': event_id, 'ts': epoch_us(ts), 'host': url_host, 'vendor': dest_vendor,
                             'region': dest_region, 'residency_violation': residency_violation,
                             'via_gateway': via_gateway, 'matched_on': matched_on}},
                           (NOT coalesce(residency_violation, false), ts, event_id), {_TOP}) AS calls
            FROM pairs GROUP BY bulk_id
        )
        SELECT b.event_id, epoch_us(b.ts) AS ts, b.actor_hash, b.actor_masked, b.app, b.sf_object,
               b.event_type, b.rows_processed, c.n_calls, c.n_residency, c.hosts, c.calls
        FROM bulk b JOIN calls c ON c.bulk_id = b.event_id
        ORDER BY b.ts, b.event_id
        """,
        params,
    )
    # Bulk jobs close together share their following calls: each call's time formatted once.
    iso: dict[int | None, str | None] = {}

    def call_iso(us: int | None) -> str | None:
        if us not in iso:
            iso[us] = _iso_us(us)
        return iso[us]

    alerts = []
    for r in rows:
        calls = r["calls"]
        top = calls[0]
        ts = _from_us(r["ts"])
        extra = f", {r['n_residency']} violating residency" if r["n_residency"] else ""
        summary = (
            f"{_who(r['actor_masked'], r['actor_hash'], r['app'])} bulk-read {r['rows_processed']:,} "
            f"{r['sf_object']} rows at {_iso(ts)}, then within {s.window_minutes} min made "
            f"{_plural(r['n_calls'], 'AI call')} to {', '.join(sorted(r['hosts']))}{extra}"
        )
        alerts.append(Alert(
            alert_key=_key("P2_bulk_then_ai", ts, r["actor_hash"], r["app"], r["sf_object"],
                           r["event_type"], r["rows_processed"]),
            pattern="P2_bulk_then_ai",
            severity=Severity.CRITICAL if r["n_residency"] else Severity.HIGH,
            ts=ts,
            actor_hash=r["actor_hash"],
            dest_vendor=top["vendor"],
            dest_region=top["region"],
            summary=summary,
            evidence={
                "events": [r["event_id"], *(c["event_id"] for c in calls)],
                "bulk_event": r["event_id"], "sf_object": r["sf_object"], "event_type": r["event_type"],
                "rows_processed": r["rows_processed"], "app": r["app"], "n_calls": r["n_calls"],
                "n_residency_violations": r["n_residency"], "window_minutes": s.window_minutes,
                "calls": [{**c, "ts": call_iso(c["ts"])} for c in calls],
            },
        ))
    return alerts


_ROLE_SEVERITY: Final = {"system": Severity.CRITICAL, "user": Severity.HIGH}


def _p3_prompt_pii(con: duckdb.DuckDBPyConnection, s: PatternSettings, ev: _Events) -> list[Alert]:
    rows = _rows(
        con,
        "look for customer data in LLM prompts (P3)",
        f"""
        WITH p AS (
            SELECT finding_id, source_path, line, ts, entity, dest_host, dest_vendor, dest_region,
                   residency_violation, actor_hash,
                   coalesce(lower(prompt_role),
                            CASE WHEN regexp_matches(lower(coalesce(field_path, '')), $system_path)
                                 THEN 'system' END) AS role,
                   -- The system behind a prompt without a known destination: its log file's name,
                   -- rotation and date digits folded (app.log.1, app-2024-03-11.log.gz).
                   CASE WHEN dest_host IS NULL THEN
                       regexp_replace(regexp_replace(source_path, '\\.(gz|bz2|xz|zst|zip)$', ''),
                                      '[0-9]+', '#', 'g') END AS system
            FROM findings
            WHERE NOT list_contains($cred, entity)
              AND (prompt_role IS NOT NULL
                   OR regexp_matches(lower(coalesce(field_path, '')), $llm_path)
                   OR (dest_vendor IS NOT NULL
                       AND regexp_matches(lower(coalesce(field_path, '')), $prompt_path)))
        ),
        g AS (
            SELECT dest_host, system,
                   list_aggregate(list(dest_vendor), 'mode') AS dest_vendor,
                   list_aggregate(list(dest_region), 'mode') AS dest_region,
                   list_aggregate(list(actor_hash), 'mode') AS actor_hash,
                   histogram(entity) AS entities,
                   histogram(coalesce(role, 'unknown')) AS roles,
                   list(source_path) AS paths, list(line) AS lines,
                   count(*) FILTER (residency_violation) AS n_residency,
                   min(ts) AS first_ts, max(ts) AS last_ts,
                   arg_min(finding_id,
                           (CASE role WHEN 'system' THEN 0 WHEN 'user' THEN 1 ELSE 2 END, finding_id), {_TOP})
                       AS ids,
                   count(*) AS n_findings
            FROM p GROUP BY ALL
        )
        SELECT dest_host, system, dest_vendor, dest_region, actor_hash, entities, roles, n_residency, ids,
               n_findings, epoch_us(first_ts) AS first_ts, epoch_us(last_ts) AS last_ts,
               len(list_distinct(list_zip(paths, lines))) AS n_prompts,
               len(list_distinct(paths)) AS n_files,
               list_sort(list_distinct(paths))[:{_TOP}] AS files
        FROM g ORDER BY g.first_ts NULLS LAST, dest_host, system
        """,
        {
            "cred": list(s.credential_entities), "system_path": _SYSTEM_PATH_RE, "llm_path": _LLM_PATH_RE,
            "prompt_path": _PROMPT_PATH_RE,
        },
    )
    alerts = []
    for r in rows:
        entities, roles = _counts(r["entities"]), _counts(r["roles"])
        severity = max((_ROLE_SEVERITY.get(role, Severity.MEDIUM) for role in roles), default=Severity.MEDIUM)
        target = _dest(r["dest_host"], r["dest_vendor"], r["dest_region"]) if r["dest_host"] \
            else f"an AI service from {r['system']}"
        extra = f"; {r['n_residency']} to a destination violating residency" if r["n_residency"] else ""
        first, last = _iso_us(r["first_ts"]), _iso_us(r["last_ts"])
        summary = (
            f"Customer data in LLM prompts to {target}: {_count_text(entities)} in "
            f"{_plural(r['n_prompts'], 'prompt')} (roles: {_count_text(roles)}){extra}, "
            f"{_span(first, last)}"
        )
        alerts.append(Alert(
            alert_key=_key("P3_prompt_pii", r["dest_host"], r["system"]),
            pattern="P3_prompt_pii",
            severity=severity,
            ts=_from_us(r["first_ts"]),
            actor_hash=r["actor_hash"],
            dest_vendor=r["dest_vendor"],
            dest_region=r["dest_region"],
            summary=summary,
            evidence={
                "findings": _ids(r["ids"]), "n_findings": r["n_findings"], "entities": entities,
                "roles": roles, "n_prompts": r["n_prompts"], "n_files": r["n_files"],
                "files": r["files"], "dest_host": r["dest_host"], "system": r["system"],
                "n_residency_violations": r["n_residency"],
                "first_ts": first, "last_ts": last,
            },
        ))
    return alerts


# CDN hits on AI paths that served content: an error response (a 404, a 503) served none.
_CDN_SERVED = "kind = 'cdn_ai' AND edge_location IS NOT NULL AND (status IS NULL OR status < 400)"


def _p4_cdn_region(con: duckdb.DuckDBPyConnection, s: PatternSettings, ev: _Events) -> list[Alert]:
    edges = _rows(
        con, "list CDN edges (P4)",
        f"SELECT DISTINCT edge_location FROM events WHERE {_CDN_SERVED}",
    )
    mapper = s.edge_jurisdiction or default_edge_jurisdiction
    allowed_edges = [e.strip().upper() for e in s.allowed_edges if e.strip()]
    outside: dict[str, str] = {}
    for e in edges:
        edge = e["edge_location"]
        jur = (mapper(edge) or UNKNOWN_JURISDICTION).upper()
        if allowed_edges:
            ok = edge_named(edge, allowed_edges)
        else:
            # An edge nobody can place is not allowed (as for AI calls): the alert asks for the
            # edge to be added to the table, at a lower severity than a known foreign edge.
            ok = _jurisdiction_allowed(jur, s.allowed_jurisdictions)
        if not ok:
            outside[edge] = jur
    if not outside:
        return []
    # CDN hits are many and their edges, cache states and files few: one pass down to one row per
    # host x edge x cache state x file x vendor x actor, then the alert's aggregates over those.
    rows = _rows(
        con,
        "look for AI content served outside the allowed regions (P4)",
        f"""
        WITH cdn AS ({ev.where(_CDN_SERVED)}),
        juris AS (SELECT unnest(CAST($edges AS VARCHAR[])) AS edge_location,
                         unnest(CAST($jurs AS VARCHAR[])) AS jurisdiction),
        part AS (
            SELECT url_host, jurisdiction, edge_location, coalesce(cache_status, 'unknown') AS cache,
                   source_path, dest_vendor, actor_hash,
                   count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts, min(event_id) AS first_id,
                   min(event_id, {_TOP}) AS ids
            FROM cdn JOIN juris USING (edge_location)
            GROUP BY ALL
        ),
        vendor AS (
            SELECT url_host, jurisdiction, arg_max(dest_vendor, (n, -first_id)) AS dest_vendor
            FROM (SELECT url_host, jurisdiction, dest_vendor, sum(n) AS n, min(first_id) AS first_id
                  FROM part WHERE dest_vendor IS NOT NULL GROUP BY ALL)
            GROUP BY ALL
        ),
        actor AS (
            SELECT url_host, jurisdiction, arg_max(actor_hash, (n, -first_id)) AS actor_hash
            FROM (SELECT url_host, jurisdiction, actor_hash, sum(n) AS n, min(first_id) AS first_id
                  FROM part WHERE actor_hash IS NOT NULL GROUP BY ALL)
            GROUP BY ALL
        ),
        g AS (
            SELECT url_host, jurisdiction,
                   list({{'k': edge_location, 'n': n}}) AS edges, list({{'k': cache, 'n': n}}) AS cache,
                   sum(n) AS n_hits, count(DISTINCT source_path) AS n_files,
                   min(first_ts) AS first_ts, max(last_ts) AS last_ts,
                   list_sort(flatten(list(ids)))[:{_TOP}] AS ids
            FROM part GROUP BY ALL
        )
        SELECT g.* EXCLUDE (first_ts, last_ts), epoch_us(g.first_ts) AS first_ts, epoch_us(g.last_ts) AS last_ts,
               v.dest_vendor, a.actor_hash
        FROM g
        LEFT JOIN vendor v ON v.url_host IS NOT DISTINCT FROM g.url_host AND v.jurisdiction = g.jurisdiction
        LEFT JOIN actor a ON a.url_host IS NOT DISTINCT FROM g.url_host AND a.jurisdiction = g.jurisdiction
        ORDER BY g.first_ts NULLS LAST, g.url_host, g.jurisdiction
        """,
        {"edges": list(outside), "jurs": list(outside.values())},
    )
    alerts = []
    for r in rows:
        edges_seen = _counts(_tally(r["edges"]))
        unknown = r["jurisdiction"] == UNKNOWN_JURISDICTION
        where = "from edges of unknown jurisdiction" if unknown else f"in {r['jurisdiction']}"
        first, last = _iso_us(r["first_ts"]), _iso_us(r["last_ts"])
        summary = (
            f"AI-generated content from {r['url_host'] or 'an unknown host'} served {where} "
            f"(allowed: {', '.join(allowed_edges or s.allowed_jurisdictions)}) by edges {', '.join(edges_seen)}: "
            f"{_plural(r['n_hits'], 'response')}, {_span(first, last)}"
        )
        alerts.append(Alert(
            alert_key=_key("P4_cdn_region", r["url_host"], r["jurisdiction"]),
            pattern="P4_cdn_region",
            severity=Severity.MEDIUM if unknown else Severity.HIGH,
            ts=_from_us(r["first_ts"]),
            actor_hash=r["actor_hash"],
            dest_vendor=r["dest_vendor"],
            dest_region=r["jurisdiction"],
            summary=summary,
            evidence={
                "events": _ids(r["ids"]), "n_hits": r["n_hits"], "n_files": r["n_files"],
                "url_host": r["url_host"], "jurisdiction": r["jurisdiction"], "edges": edges_seen,
                "cache_status": _counts(_tally(r["cache"])), "allowed_jurisdictions": list(s.allowed_jurisdictions),
                "allowed_edges": allowed_edges,
                "first_ts": first, "last_ts": last,
            },
        ))
    return alerts


def _tally(parts: Iterable[Mapping[str, Any]] | None) -> dict[str, int]:
    """Counts per key from ``{'k': key, 'n': count}`` rows of a pre-aggregated query."""
    out: dict[str, int] = {}
    for p in parts or ():
        out[p["k"]] = out.get(p["k"], 0) + p["n"]
    return out


# Report exports and Bulk API result downloads. A download known to be small is not an export;
# one of unknown size (ReportExport rows carry no row count) is.
_EXPORT_WHERE: Final = (
    "(kind = 'report_export'"
    " OR (kind = 'bulk' AND regexp_matches(lower(coalesce(event_type, '')), '^bulkapiresult')))"
    " AND coalesce(rows_processed >= $min_rows, true)"
)


def _bulk_export(con: duckdb.DuckDBPyConnection, s: PatternSettings, ev: _Events) -> list[Alert]:
    rows = _rows(
        con,
        "look for report exports and bulk result downloads",
        f"""
        WITH ex AS ({ev.where(_EXPORT_WHERE)}),
        -- One pass down to one row per caller x UTC day x type x object x app, then the day's
        -- aggregates over those.
        part AS (
            SELECT {_caller_key()}, {_floor_div("epoch_us(ts)", _US_PER_DAY)} AS day_n,
                   coalesce(event_type, kind) AS type, sf_object, app,
                   count(*) AS n, sum(rows_processed) AS rows, count(rows_processed) AS n_rows,
                   arg_max(actor_masked, ts) AS actor_masked, min(ts) AS first_ts, max(ts) AS last_ts,
                   min(event_id, {_TOP}) AS ids
            FROM ex GROUP BY ALL
        ),
        g AS (
            SELECT actor_hash, app_key, day_n,
                   sum(n) AS n_exports, sum(rows) AS rows, sum(n_rows) AS n_with_rows,
                   list({{'k': type, 'n': n}}) AS types,
                   list_sort(list_distinct(list(sf_object))) AS objects,
                   list_sort(list_distinct(list(app))) AS apps,
                   arg_max(actor_masked, last_ts) AS actor_masked,
                   min(first_ts) AS first_ts, max(last_ts) AS last_ts,
                   list_sort(flatten(list(ids)))[:{_TOP}] AS ids
            FROM part GROUP BY ALL
        )
        SELECT * EXCLUDE (day_n, first_ts, last_ts), DATE '1970-01-01' + CAST(day_n AS INTEGER) AS day,
               epoch_us(first_ts) AS first_ts, epoch_us(last_ts) AS last_ts
        FROM g ORDER BY day_n NULLS LAST, actor_hash, app_key
        """,
        {"min_rows": s.bulk_min_rows},
    )
    alerts = []
    for r in rows:
        rows_n = int(r["rows"] or 0)
        if r["n_with_rows"]:
            rows_text = f"{rows_n:,} rows" + ("" if r["n_with_rows"] == r["n_exports"] else " (some counts unknown)")
        else:
            rows_text = "row count unknown"
        types = _counts(_tally(r["types"]))
        objects = f" of {', '.join(r['objects'])}" if r["objects"] else ""
        summary = (
            f"{_who(r['actor_masked'], r['actor_hash'], r['app_key'] or (r['apps'][0] if r['apps'] else None))} "
            f"exported data on {r['day'] or 'an unknown day'}: {_plural(r['n_exports'], 'export')}{objects}, "
            f"{rows_text} ({_count_text(types)})"
        )
        alerts.append(Alert(
            alert_key=_key("bulk_export", r["actor_hash"], r["app_key"], r["day"]),
            pattern="bulk_export",
            severity=Severity.HIGH if rows_n >= s.bulk_min_rows and r["n_with_rows"] else Severity.MEDIUM,
            ts=_from_us(r["first_ts"]),
            actor_hash=r["actor_hash"],
            dest_vendor=None,
            dest_region=None,
            summary=summary,
            evidence={
                "events": _ids(r["ids"]), "n_exports": r["n_exports"], "rows": rows_n if r["n_with_rows"] else None,
                "day": r["day"].isoformat() if r["day"] else None, "types": types,
                "objects": r["objects"], "apps": r["apps"],
                "first_ts": _iso_us(r["first_ts"]), "last_ts": _iso_us(r["last_ts"]),
            },
        ))
    return alerts


def _api_volume(con: duckdb.DuckDBPyConnection, s: PatternSettings, ev: _Events) -> list[Alert]:
    # Two queries: the hourly counts and their baselines (cheap: counts only), then the details
    # of the unusual hours alone. Building ids, apps and objects for every caller-hour first (the
    # old way) cost 60 ms on the 200 MB corpus, which has none to report.
    api = ev.where("kind = 'api' AND ts IS NOT NULL")
    hour = _floor_div("epoch_us(ts)", _US_PER_HOUR)
    # RANGE frames take constants only: whole hours, from an int checked by PatternSettings.
    hours_back = int(s.api_volume_baseline_days) * 24
    flagged = _rows(
        con,
        "look for unusual API volume",
        f"""
        WITH hours AS (
            SELECT {_caller_key()}, {hour} AS hour, count(*) AS n
            FROM ({api}) GROUP BY ALL
        ),
        scored AS (
            SELECT *, median(n) OVER w AS baseline, count(*) OVER w AS baseline_hours
            FROM hours
            WINDOW w AS (PARTITION BY actor_hash, app_key ORDER BY hour
                         RANGE BETWEEN {hours_back} PRECEDING AND 1 PRECEDING)
        )
        SELECT * FROM scored
        WHERE baseline_hours >= $min_hours AND n >= $min_events AND n >= $factor * baseline
        ORDER BY hour, actor_hash, app_key
        """,
        {"min_hours": s.api_volume_min_baseline_hours, "min_events": s.api_volume_min_events,
         "factor": s.api_volume_factor},
    )
    if not flagged:
        return []
    details = {
        (d["actor_hash"], d["app_key"], d["hour"]): d
        for d in _rows(
            con,
            "read the unusual API hours",
            f"""
            WITH flagged AS (
                SELECT unnest(CAST($actors AS VARCHAR[])) AS actor_hash, unnest(CAST($apps AS VARCHAR[])) AS app_key,
                       unnest(CAST($hours AS BIGINT[])) AS hour
            ),
            api AS (SELECT *, CASE WHEN actor_hash IS NULL THEN app END AS app_key, {hour} AS hour FROM ({api}))
            SELECT f.actor_hash, f.app_key, f.hour,
                   sum(a.rows_processed) AS rows,
                   arg_max(a.actor_masked, a.ts) AS actor_masked,
                   list(DISTINCT a.app ORDER BY a.app) FILTER (a.app IS NOT NULL) AS apps,
                   histogram(a.sf_object) FILTER (a.sf_object IS NOT NULL) AS objects,
                   min(a.event_id, {_TOP}) AS ids
            FROM api a JOIN flagged f
              ON a.hour = f.hour AND a.actor_hash IS NOT DISTINCT FROM f.actor_hash
             AND a.app_key IS NOT DISTINCT FROM f.app_key
            GROUP BY f.actor_hash, f.app_key, f.hour
            """,
            {"actors": [r["actor_hash"] for r in flagged], "apps": [r["app_key"] for r in flagged],
             "hours": [r["hour"] for r in flagged]},
        )
    }
    alerts = []
    for r in flagged:
        d = details[(r["actor_hash"], r["app_key"], r["hour"])]
        ratio = r["n"] / r["baseline"] if r["baseline"] else float("inf")
        hour_ts = _EPOCH + timedelta(hours=r["hour"])
        summary = (
            f"{_who(d['actor_masked'], r['actor_hash'], r['app_key'] or (d['apps'][0] if d['apps'] else None))} "
            f"made {r['n']:,} API calls in the hour from {_iso(hour_ts)}, {ratio:.1f}x its median hour "
            f"({r['baseline']:g} over {r['baseline_hours']} active hours)"
        )
        alerts.append(Alert(
            alert_key=_key("api_volume", r["actor_hash"], r["app_key"], hour_ts),
            pattern="api_volume",
            # factor² (9x with the default 3) is well past any daily rhythm.
            severity=Severity.HIGH if ratio >= s.api_volume_factor ** 2 else Severity.MEDIUM,
            ts=hour_ts,
            actor_hash=r["actor_hash"],
            dest_vendor=None,
            dest_region=None,
            summary=summary,
            evidence={
                "events": _ids(d["ids"]), "n_events": r["n"], "hour": _iso(hour_ts),
                "baseline_median": r["baseline"], "baseline_hours": r["baseline_hours"],
                "baseline_days": int(s.api_volume_baseline_days), "ratio": round(ratio, 2),
                "factor": s.api_volume_factor,
                "rows": int(d["rows"]) if d["rows"] is not None else None,
                "objects": _counts(d["objects"]), "apps": d["apps"] or [],
            },
        ))
    return alerts


_Detector = Callable[[duckdb.DuckDBPyConnection, PatternSettings, _Events], list[Alert]]

DETECTORS: Final[Mapping[str, _Detector]] = {
    "P1_key_exposed": _p1_key_exposed,
    "P1_gateway_bypass": _p1_gateway_bypass,
    "P2_bulk_then_ai": _p2_bulk_then_ai,
    "P3_prompt_pii": _p3_prompt_pii,
    "P4_cdn_region": _p4_cdn_region,
    "bulk_export": _bulk_export,
    "api_volume": _api_volume,
}


# -- running and storing ------------------------------------------------------------------------


def detect_patterns(
    con: duckdb.DuckDBPyConnection, settings: PatternSettings, *, patterns: Iterable[str] | None = None
) -> list[Alert]:
    """Run the detectors (all, or those named in ``patterns``) and return their alerts without
    storing anything; one alert per key. Raises :class:`StoreError` if the database cannot be read,
    :class:`UsageError` for an unknown pattern name."""
    names = list(DETECTORS) if patterns is None else list(patterns)
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise UsageError(f"unknown pattern(s) {', '.join(unknown)}; known: {', '.join(DETECTORS)}")
    events = _Events(con)
    by_key: dict[str, Alert] = {}
    for name in names:
        for alert in DETECTORS[name](con, settings, events):
            # Two rows with one key (e.g. a bulk row in two files): keep the worse.
            kept = by_key.get(alert.alert_key)
            if kept is None or alert.severity > kept.severity:
                by_key[alert.alert_key] = alert
    return list(by_key.values())


_ALERTS_VIEW: Final = "_leakwatch_alerts_batch"
# One encoder for all alerts: json.dumps with options builds a new one per call.
_EVIDENCE_JSON: Final = json.JSONEncoder(sort_keys=True, default=str)


def _alert_batch(alerts: Sequence[Alert]) -> dict[str, np.ndarray]:
    """The alerts as NumPy columns for one ``INSERT … SELECT``: a statement per alert cost
    ~0.8 ms each, 1.9 s for the 2 400 alerts of the 200 MB corpus."""

    def strings(values: Iterable[str | None]) -> np.ndarray:
        # Assigning into an object array never reinterprets a string as a sequence.
        arr = np.empty(len(alerts), dtype=object)
        arr[:] = list(values)
        return arr

    nat = np.iinfo(np.int64).min  # NumPy's NaT: a NULL timestamp for DuckDB
    ts = [nat if a.ts is None else (_utc(a.ts) - _EPOCH) // _ONE_US for a in alerts]
    return {
        "ord": np.arange(len(alerts), dtype=np.int64),
        "alert_key": strings(a.alert_key for a in alerts),
        "pattern": strings(a.pattern for a in alerts),
        "severity": strings(str(a.severity) for a in alerts),
        "severity_rank": np.array([int(a.severity) for a in alerts], dtype=np.int8),
        "ts": np.array(ts, dtype=np.int64).view("datetime64[us]"),
        "actor_hash": strings(a.actor_hash for a in alerts),
        "dest_vendor": strings(a.dest_vendor for a in alerts),
        "dest_region": strings(a.dest_region for a in alerts),
        "summary": strings(a.summary for a in alerts),
        "evidence": strings(_EVIDENCE_JSON.encode(a.evidence) for a in alerts),
    }


def run_patterns(
    con: duckdb.DuckDBPyConnection, settings: PatternSettings, *, scan_id: int | None = None,
    now: datetime | None = None,
) -> list[Alert]:
    """Run every detector over the whole database and store the alerts; return the new ones.

    Patterns span files and scans (yesterday's bulk export pulled from Salesforce, today's
    gateway log), so the detectors read everything; ``scan_id`` is recorded on the alerts this
    run adds. An alert whose key is already stored is not added again: its row gets the fresh
    summary and evidence, and its severity if higher; it is returned (with ``escalated_from``
    set) only when its severity rose. All writes are one transaction. Raises :class:`StoreError`.
    ``now`` (aware) stamps new alerts' ``created_at`` from an injected clock (watch, drills)
    instead of the database's wall clock.
    """
    found = detect_patterns(con, settings)
    if not found:
        return []
    label = _db_label(con)
    batch = _alert_batch(found)
    try:
        with private_umask():
            con.begin()
            try:
                con.register(_ALERTS_VIEW, batch)
                stored = {
                    int(o): (int(i), int(rank))
                    for o, i, rank in con.execute(
                        f"SELECT b.ord, a.alert_id, a.severity_rank FROM {_ALERTS_VIEW} b"
                        " JOIN alerts a ON a.alert_key = b.alert_key ORDER BY a.alert_id"
                    ).fetchall()
                }
                if stored:
                    # Rows that would not change are left alone: a re-run that finds nothing new
                    # writes nothing.
                    con.execute(
                        f"""
                        UPDATE alerts AS a
                        SET summary = b.summary, evidence = b.evidence,
                            severity = CASE WHEN b.severity_rank > a.severity_rank THEN b.severity
                                            ELSE a.severity END,
                            severity_rank = greatest(a.severity_rank, b.severity_rank)
                        FROM {_ALERTS_VIEW} AS b
                        WHERE a.alert_key = b.alert_key
                          AND (b.severity_rank > a.severity_rank OR a.summary IS DISTINCT FROM b.summary
                               OR a.evidence IS DISTINCT FROM b.evidence)
                        """
                    )
                new_ids: dict[str, int] = {}
                if len(stored) < len(found):
                    new_ids = dict(con.execute(
                        f"""
                        INSERT INTO alerts (alert_key, scan_id, pattern, severity, severity_rank, ts,
                                            actor_hash, dest_vendor, dest_region, summary, evidence, created_at)
                        SELECT alert_key, CAST($scan_id AS BIGINT), pattern, severity, severity_rank,
                               timezone('UTC', ts), actor_hash, dest_vendor, dest_region, summary, evidence,
                               coalesce(CAST($now AS TIMESTAMPTZ), current_timestamp)
                        FROM {_ALERTS_VIEW} AS b
                        WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.alert_key = b.alert_key)
                        ORDER BY ord
                        RETURNING alert_key, alert_id
                        """,
                        {"scan_id": scan_id, "now": now},
                    ).fetchall())
                con.commit()
            except BaseException:
                con.rollback()
                raise
            finally:
                con.unregister(_ALERTS_VIEW)
    except duckdb.Error as e:
        raise StoreError(f"{label}: cannot store alerts: {e}") from e
    out: list[Alert] = []
    for i, alert in enumerate(found):
        if i not in stored:
            out.append(replace(alert, scan_id=scan_id, alert_id=int(new_ids[alert.alert_key])))
            continue
        alert_id, old_rank = stored[i]
        if alert.severity > old_rank:
            out.append(replace(alert, alert_id=alert_id, escalated_from=Severity(old_rank)))
    return out
