"""leakwatch's settings: one frozen object from a TOML file and ``LEAKWATCH_*`` variables.

Where the settings come from, later ones winning key by key:

1. the defaults below (every field documents itself: :func:`describe` lists them all);
2. one TOML file: the ``--config FILE`` a caller passes to :func:`load_config`, else
   ``$LEAKWATCH_CONFIG``, else ``./leakwatch.toml`` when it exists (a named file that is missing
   is an error; a missing ``./leakwatch.toml`` is not);
3. environment variables ``LEAKWATCH_<SECTION>_<KEY>``, e.g. ``LEAKWATCH_PATTERNS_BULK_MIN_ROWS=500``.
   Lists are written comma-separated (``EU,UK``) or as a TOML array (``["EU", "UK"]``); a
   regex list takes a TOML array or exactly one regex; ``formats.custom`` takes a TOML array of
   inline tables.

A file looks like this::

    [residency]
    allowed_jurisdictions = ["EU", "EEA", "UK", "CH"]

    [egress]
    approved_gateways = ["ai-gateway.example.com"]
    gateway_sources = ["/var/log/ai-gateway/*.log"]

    [patterns]
    bulk_min_rows = 500

    [[formats.custom]]
    name = "apigee"
    regex = '^(?P<ts>\\S+) (?P<client_ip>\\S+) (?P<method>[A-Z]+) (?P<path>\\S+)'
    paths = ["apigee-*.log"]

    [notify]
    secrets_file = "/etc/leakwatch/secrets.toml"   # mode 0600; or use environment variables

    [[notify.targets]]
    name = "soc-webhook"
    kind = "webhook"
    url = "https://hooks.example.com/leakwatch"
    credentials = { secret = "LEAKWATCH_WEBHOOK_SECRET" }   # whsec_… in that variable

    [[notify.rules]]
    on = ["incident.opened", "deadline.approaching", "deadline.missed"]
    min_severity = "high"
    targets = ["soc-webhook"]
    before = ["12h", "2h"]

    [llm]
    model = "/srv/models/other.gguf"   # default: what 'leakwatch models install' fetched
    n_gpu_layers = -1                  # every layer on the GPU when llama.cpp was built with CUDA

Unknown sections or keys, and values of the wrong type, raise :class:`ConfigError` naming the
file (or variable), the key, and the closest valid key; relative paths in the file are relative
to the file's directory.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePath
from typing import Any

from leakwatch.errors import UsageError
from leakwatch.notify.base import EVENTS, TARGET_KINDS, TARGET_OPTIONS, TargetConfig, option_type_problem

ENV_PREFIX = "LEAKWATCH_"
CONFIG_ENV = "LEAKWATCH_CONFIG"
DEFAULT_FILE = "leakwatch.toml"
#: ``leakwatch watch`` defaults (here, not in leakwatch.watch, so that building the CLI's
#: parser does not import the scanning pipeline: ~0.3 s on every command).
WATCH_POLL_INTERVAL_S = 0.25
WATCH_PULL_EVERY_MIN = 15.0

_JURISDICTION_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{1,15}(?:-[A-Za-z0-9]{1,3})?\Z")  # EU, US, US-CA
_OBJECT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_FORMAT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_HOST_RE = re.compile(r"(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\Z")


class ConfigError(UsageError):
    """The configuration is invalid; the message names the file or variable and the key."""


def _doc(text: str, kind: str, default: Any = dataclasses.MISSING, **extra: Any) -> Any:
    """A dataclass field whose metadata carries its documentation and value kind."""
    meta = {"doc": text, "kind": kind, **extra}
    if isinstance(default, (list, tuple)):
        value = tuple(default)
        return field(default=value, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ResidencyConfig:
    """``[residency]``: where personal data may go."""

    allowed_jurisdictions: tuple[str, ...] = _doc(
        "Jurisdictions data may be sent to. Codes as in the AI-endpoint registry: EU, US, UK, CH, "
        "NO, … ('EEA' also covers EU, NO, IS and LI). Calls to any other jurisdiction, or to one "
        "that is unknown, are residency violations unless the endpoint is marked sovereign. The "
        "default keeps data in the EU; add EEA, UK, CH or other adequacy countries as your policy "
        "allows.",
        "jurisdictions", ("EU",),
    )


@dataclass(frozen=True)
class EgressConfig:
    """``[egress]``: AI endpoints and the organisation's own AI gateway."""

    registry: Path | None = _doc(  # noqa: RUF009 - _doc returns a dataclasses.field
        "The AI-endpoint registry (YAML). Empty: the shipped rules/ai_endpoints.yaml.", "path", None,
    )
    approved_gateways: tuple[str, ...] = _doc(
        "Hosts of the organisation's approved AI gateway ('*.gw.example.com' covers its "
        "subdomains). A direct call to an AI endpoint from anywhere else bypasses the gateway.",
        "hosts", (),
    )
    gateway_sources: tuple[str, ...] = _doc(
        "Glob patterns of log files that are the gateway's own logs: their AI calls are the "
        "gateway doing its job, not a bypass. A pattern with '/' matches the whole path, one "
        "without matches the file name.",
        "globs", (),
    )

    @property
    def registry_path(self) -> Path:
        """The registry file to load: :attr:`registry`, or the shipped one."""
        if self.registry is not None:
            return self.registry
        from leakwatch.detect.egress import default_registry_path

        return default_registry_path()

    def is_approved_gateway(self, host: str | None) -> bool:
        """Whether ``host`` (already extracted, lowercase) is one of :attr:`approved_gateways`."""
        if not host:
            return False
        host = host.lower().rstrip(".")
        for g in self.approved_gateways:
            if g.startswith("*."):
                if host.endswith(g[1:]):
                    return True
            elif host == g:
                return True
        return False

    def is_gateway_source(self, path: str | os.PathLike) -> bool:
        """Whether the log file at ``path`` matches one of :attr:`gateway_sources`."""
        return _glob_match(path, self.gateway_sources)


@dataclass(frozen=True)
class PatternsConfig:
    """``[patterns]``: thresholds of the failure-pattern detectors."""

    bulk_then_ai_window_minutes: int = _doc(
        "P2: how long after a bulk export an AI call by the same actor counts as following it.",
        "int", 60, lo=1, hi=7 * 24 * 60,
    )
    bulk_min_rows: int = _doc(
        "Rows a Bulk API job, report export or API query must process to count as a bulk export.",
        "int", 1000, lo=1, hi=10**12,
    )
    bulk_objects: tuple[str, ...] = _doc(
        "Salesforce objects whose bulk export counts (they hold people's data).",
        "objects", ("Contact", "Lead", "Account"),
    )
    api_volume_factor: float = _doc(
        "API-volume alert: an actor's events in a window above this multiple of its usual volume.",
        "float", 3.0, lo=1.0, hi=1e6,
    )
    api_volume_min_events: int = _doc(
        "API-volume alert: windows with fewer events never alert, however unusual.",
        "int", 50, lo=1, hi=10**12,
    )


@dataclass(frozen=True)
class CdnConfig:
    """``[cdn]``: AI-generated content served through a CDN (pattern P4)."""

    ai_paths: tuple[str, ...] = _doc(
        "Regexes (Python syntax) of request paths that serve AI-generated content.",
        "regexes", (r"^/(ai|genai|assistant|recommendations?)/",),
    )
    allowed_regions: tuple[str, ...] = _doc(
        "Edge locations allowed to serve it, as prefixes of the edge code ('FRA' allows "
        "'FRA56-P5'). Empty: the edge's jurisdiction (the registry's cdn_edge table) must be in "
        "residency.allowed_jurisdictions.",
        "upper_list", (),
    )

    @functools.cached_property
    def _ai_path_re(self) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p})" for p in self.ai_paths)) if self.ai_paths else None

    def is_ai_path(self, path: str) -> bool:
        """Whether the request path (query string included or not) matches :attr:`ai_paths`."""
        rx = self._ai_path_re
        return rx is not None and rx.search(path) is not None


@dataclass(frozen=True)
class CustomFormat:
    """One user-defined log format: a regex with named groups, applied to each line of the
    files whose path matches ``paths`` (globs, as for ``egress.gateway_sources``)."""

    name: str
    regex: str
    paths: tuple[str, ...]

    @functools.cached_property
    def compiled(self) -> re.Pattern[str]:
        """The compiled regex (validated when the configuration was loaded)."""
        return re.compile(self.regex)

    def matches(self, path: str | os.PathLike) -> bool:
        """Whether this format applies to the file at ``path``."""
        return _glob_match(path, self.paths)


@dataclass(frozen=True)
class FormatsConfig:
    """``[formats]``: log formats beyond the built-in ones."""

    custom: tuple[CustomFormat, ...] = _doc(
        "User-defined formats, as [[formats.custom]] tables with name, regex (named groups become "
        "fields) and paths (globs of the files it applies to). The first that matches a file wins.",
        "custom_formats", (),
    )

    def for_path(self, path: str | os.PathLike) -> CustomFormat | None:
        """The first custom format whose globs match ``path``."""
        return next((f for f in self.custom if f.matches(path)), None)


@dataclass(frozen=True)
class NerConfig:
    """``[ner]``: named-entity recognition on free text (presidio), beyond the regex rules."""

    enabled: bool = _doc(
        "Run NER on free-text fields (prompts, messages, descriptions). Off by default: it finds "
        "names and addresses no regex can, at tens of lines per second instead of hundreds of MB.",
        "bool", False,
    )


NIS2_ENTITY_KINDS = ("none", "important", "essential")
INCIDENT_GROUP_KEYS = ("dest_vendor", "pattern", "system", "dest_region", "source_path")
SEVERITY_NAMES = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class OrganisationConfig:
    """``[organisation]``: facts about the organisation that decide which notification regimes
    apply (see ``playbooks/regimes.yaml``) and what notice drafts say about who is notifying."""

    name: str = _doc("The organisation's legal name, as notices give it.", "str", "")
    timezone: str = _doc(
        "IANA time zone responders work in (e.g. Europe/Berlin): times print in UTC and in this "
        "zone. Empty: the machine's local zone.", "timezone", "",
    )
    establishment: tuple[str, ...] = _doc(
        "Jurisdictions where the organisation is established (EU, UK, US, …): GDPR and NIS2 apply "
        "to an EU establishment whatever the data subjects' residence.", "jurisdictions", ("EU",),
    )
    customer_jurisdictions: tuple[str, ...] = _doc(
        "Where the data subjects (customers) live when the findings do not say: EU, UK, US, US-CA, "
        "AU, SG, BR, CA, … Findings of national IDs add their country (a UK NINO adds UK).",
        "jurisdictions", ("EU",),
    )
    nis2_entity: str = _doc(
        "NIS2 status: none, important or essential entity.", "choice", "none", choices=NIS2_ENTITY_KINDS,
    )
    dora_financial_entity: bool = _doc("A financial entity under DORA (EU 2022/2554).", "bool", False)
    hipaa_covered_entity: bool = _doc("A HIPAA covered entity or business associate.", "bool", False)
    sec_registrant: bool = _doc("Files reports with the US SEC (8-K Item 1.05 applies).", "bool", False)
    contact_point: str = _doc(
        "The DPO or other contact point a notice names (GDPR Art. 33(3)(b)): name, e-mail, phone.",
        "str", "",
    )
    lead_authority: str = _doc("The lead supervisory authority notices go to (e.g. 'CNIL').", "str", "")


@dataclass(frozen=True)
class IncidentsConfig:
    """``[incidents]``: how findings are grouped into incidents."""

    group_by: tuple[str, ...] = _doc(
        "Keys findings are grouped by: any of dest_vendor, pattern (the failure pattern of an alert "
        "the finding belongs to), system (the log source: salesforce, mulesoft, heroku, "
        "api-gateway, web, application, export), dest_region, source_path.",
        "choice_list", ("dest_vendor", "pattern"), choices=INCIDENT_GROUP_KEYS,
    )
    window_hours: int = _doc(
        "Findings of the same group join an open incident whose last finding is at most this many "
        "hours older (by log time, else storing time); later ones open a new incident.",
        "int", 24, lo=1, hi=24 * 365,
    )
    min_severity: str = _doc(
        "Findings below this severity are not grouped into incidents (info, low, medium, high, "
        "critical).", "choice", "medium", choices=SEVERITY_NAMES,
    )


_TARGET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_ENV_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_REGIME_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_TARGET_KEYS = ("name", "kind", "url", "credentials", "options", "timeout_s")
_RULE_KEYS = ("name", "on", "min_severity", "targets", "before", "regimes")
#: ``before`` of a rule on deadline.approaching that gives none: the issue's 12 h and 2 h.
DEFAULT_BEFORE = ("12h", "2h")


@dataclass(frozen=True)
class NotifyRule:
    """One ``[[notify.rules]]`` table: on which events (``on``, from
    :data:`leakwatch.notify.base.EVENTS`) which targets are told, for incidents at or above
    ``min_severity``. ``before`` are the thresholds of ``deadline.approaching`` (longest first);
    ``regimes``, when not empty, limits deadline and step events to those regimes."""

    name: str
    on: tuple[str, ...]
    targets: tuple[str, ...]
    min_severity: str = "info"
    before: tuple[timedelta, ...] = ()
    regimes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotifyConfig:
    """``[notify]``: where notifications go (``[[notify.targets]]``), who is told what, when
    (``[[notify.rules]]``), and how the outbox dispatcher retries."""

    max_attempts: int = _doc(
        "Delivery attempts of one notification before it becomes a dead letter (shown by "
        "'leakwatch notify status', recorded in the audit trail, sent to outbox.dead_letter rules). "
        "The default rides out an outage of about three hours (a maintenance window) at the "
        "default backoff.",
        "int", 40, lo=1, hi=1000,
    )
    backoff_base_s: float = _doc(
        "First retry delay in seconds; each further retry doubles it (full jitter: a random "
        "delay between 0 and the doubled value), up to backoff_max_s. Retry-After wins when given.",
        "float", 2.0, lo=0.001, hi=86400.0,
    )
    backoff_max_s: float = _doc(
        "Longest delay between two attempts in seconds (before jitter).", "float", 600.0, lo=0.001, hi=86400.0,
    )
    lease_s: float = _doc(
        "Seconds a dispatcher holds a notification it is sending; after that another dispatcher "
        "may take it over (it first asks the target whether it already arrived).",
        "float", 60.0, lo=0.05, hi=86400.0,
    )
    workers: int = _doc(
        "Notifications sent at the same time by one dispatcher (threads; the database is only "
        "written by the dispatcher's own thread).", "int", 4, lo=1, hi=64,
    )
    secrets_file: Path | None = _doc(  # noqa: RUF009 - _doc returns a dataclasses.field
        "File with credentials, TOML (KEY = \"value\") or KEY=VALUE lines, looked up by the names "
        "in a target's credentials when no environment variable of that name is set. It must "
        "be private to its owner (mode 0600 or stricter).", "secrets_file", None,
    )
    targets: tuple[TargetConfig, ...] = _doc(
        "Targets as [[notify.targets]] tables: name, kind (webhook, servicenow, jira, jsm, "
        "salesforce_case, salesforce_event, slack, teams), url, credentials (credential name = "
        "environment variable name), options (kind-specific) and timeout_s (default 10).",
        "notify_targets", (),
    )
    rules: tuple[NotifyRule, ...] = _doc(
        "Trigger rules as [[notify.rules]] tables: on (events: incident.opened, incident.escalated, "
        "deadline.approaching, deadline.missed, step.notify, outbox.dead_letter, canary), "
        "min_severity (default info), targets (names of [[notify.targets]]), before (thresholds "
        "of deadline.approaching, default 12h and 2h) and regimes (optional filter).",
        "notify_rules", (),
    )

    def target(self, name: str) -> TargetConfig:
        """The target called ``name``; :class:`ConfigError` naming the configured ones if none is."""
        for t in self.targets:
            if t.name == name:
                return t
        names = [t.name for t in self.targets]
        if not names:
            raise ConfigError(f"no notification target {name!r}: none is configured ([[notify.targets]] in the config)")
        raise ConfigError(_unknown(name, names, "notification target"))


@dataclass(frozen=True)
class LlmConfig:
    """``[llm]``: the local model that drafts incident summaries (llama.cpp, nothing leaves the
    machine). See ``leakwatch models --help``."""

    model: Path | None = _doc(  # noqa: RUF009 - _doc returns a dataclasses.field
        "GGUF model file. Empty: $LEAKWATCH_MODEL when set, else the default model that "
        "'leakwatch models install' puts in the user cache (SmolLM2-135M-Instruct Q4_1). A file "
        "that is missing is not an error here: summaries fall back to the template.",
        "model_path", None,
    )
    n_ctx: int = _doc(
        "Context window in tokens. The facts prompt is ~500-900 tokens and each answer at most "
        "max_tokens, so 4096 leaves room for large incidents.", "int", 4096, lo=512, hi=131072,
    )
    n_gpu_layers: int = _doc(
        "Layers offloaded to the GPU when llama-cpp-python was built with GPU support (CUDA, "
        "Metal, Vulkan): -1 = all of them, 0 = none. A CPU-only build ignores it.",
        "int", -1, lo=-1, hi=10_000,
    )
    max_tokens: int = _doc(
        "Most tokens generated for one part of a summary (a sentence of the responder summary, a "
        "section of the GDPR Art. 33 narrative).", "int", 96, lo=8, hi=4096,
    )
    temperature: float = _doc(
        "Sampling temperature; 0 = always the most likely token, so the same facts give the "
        "same text.", "float", 0.0, lo=0.0, hi=2.0,
    )
    seed: int = _doc("Random seed of the sampler (matters only when temperature > 0).", "int", 42, lo=0, hi=2**31 - 1)
    threads: int = _doc(
        "CPU threads for reading the prompt and generating; 0 = half the CPUs (at least one): "
        "llama.cpp's threads spin while they wait, so sharing every CPU with a busy scan can make "
        "it several times slower.",
        "int", 0, lo=0, hi=1024,
    )


@dataclass(frozen=True)
class Config:
    """All of leakwatch's settings. ``source`` is the TOML file they were read from, if any."""

    residency: ResidencyConfig = field(default_factory=ResidencyConfig)
    egress: EgressConfig = field(default_factory=EgressConfig)
    patterns: PatternsConfig = field(default_factory=PatternsConfig)
    cdn: CdnConfig = field(default_factory=CdnConfig)
    formats: FormatsConfig = field(default_factory=FormatsConfig)
    ner: NerConfig = field(default_factory=NerConfig)
    organisation: OrganisationConfig = field(default_factory=OrganisationConfig)
    incidents: IncidentsConfig = field(default_factory=IncidentsConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    source: Path | None = None

    @classmethod
    def default(cls) -> Config:
        """The settings with nothing configured."""
        return cls()


SECTIONS: Mapping[str, type] = {
    "residency": ResidencyConfig,
    "egress": EgressConfig,
    "patterns": PatternsConfig,
    "cdn": CdnConfig,
    "formats": FormatsConfig,
    "ner": NerConfig,
    "organisation": OrganisationConfig,
    "incidents": IncidentsConfig,
    "notify": NotifyConfig,
    "llm": LlmConfig,
}
_CUSTOM_KEYS = ("name", "regex", "paths")


def env_name(section: str, key: str) -> str:
    """The environment variable of a setting: ``("patterns", "bulk_min_rows")`` →
    ``LEAKWATCH_PATTERNS_BULK_MIN_ROWS``."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def describe() -> list[tuple[str, str, Any, str]]:
    """Every setting as ``(toml key, environment variable, default, documentation)``."""
    out = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            out.append((f"{section}.{f.name}", env_name(section, f.name), f.default, f.metadata["doc"]))
    return out


def _glob_match(path: str | os.PathLike, patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return False
    p = PurePath(path).as_posix()
    name = PurePath(path).name
    absolute = PurePath(os.path.abspath(path)).as_posix()
    for pat in patterns:
        if "/" not in pat:
            if fnmatch.fnmatchcase(name, pat):
                return True
        # A relative glob with a folder (logs/gw/*.log) matches the path as given or its tail.
        elif fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(absolute, pat) or (
                not pat.startswith("/") and fnmatch.fnmatchcase(absolute, "*/" + pat)):
            return True
    return False


# --- loading -----------------------------------------------------------------------------------


class _Where:
    """Where a value came from, for error messages: a file (with the text, to find lines) or a
    variable."""

    def __init__(self, file: Path | None = None, text: str = "", var: str | None = None):
        self.file = file
        self.text = text
        self.var = var

    def locate(self, section: str, key: str | None = None) -> str:
        if self.var is not None:
            return self.var
        line = _key_line(self.text, section, key)
        where = str(self.file) + (f":{line}" if line else "")
        return f"{where}: {section}.{key}" if key else f"{where}: [{section}]"

    @property
    def base_dir(self) -> Path:
        return self.file.parent if self.file is not None else Path.cwd()


def _key_line(text: str, section: str, key: str | None) -> int | None:
    """Best-effort line of ``key`` under ``[section]`` (tomllib does not report positions)."""
    lines = text.splitlines()
    header = re.compile(r"\s*\[\[?\s*" + re.escape(section) + r"(?:\.[^\]]*)?\s*\]\]?")
    dotted = re.compile(r"\s*" + re.escape(section) + r"\s*\.\s*" + re.escape(key or "") + r"\s*=") if key else None
    in_section = False
    for i, line in enumerate(lines, 1):
        if dotted is not None and dotted.match(line):
            return i
        if re.match(r"\s*\[", line):
            in_section = bool(header.match(line))
            if in_section and key is None:
                return i
            continue
        if in_section and key is not None and re.match(r"\s*" + re.escape(key) + r"\s*=", line):
            return i
    return None


def _unknown(name: str, valid: list[str], what: str, where: str = "") -> str:
    hint = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    head = f"unknown {what} {name!r}{where}"
    if hint:
        return f"{head} (did you mean {hint[0]!r}?)"
    return f"{head} (valid: {', '.join(valid)})"


def _tname(v: Any) -> str:
    return {str: "string", bool: "boolean", int: "integer", float: "number", list: "array"}.get(
        type(v), "table" if isinstance(v, dict) else type(v).__name__
    )


def _str_list(v: Any, loc: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{loc}: expected an array of strings, got {_tname(v)} {v!r}")
    if any(not x.strip() for x in v):
        raise ConfigError(f"{loc}: empty string in {v!r}")
    return [x.strip() for x in v]


def _check_regex(rx: str, loc: str) -> re.Pattern[str]:
    from leakwatch.rxcheck import BACKTRACK_MESSAGE, backtracks

    try:
        compiled = re.compile(rx)
    except re.error as e:
        raise ConfigError(f"{loc}: invalid regex {rx!r}: {e}") from None
    if backtracks(rx):
        # These run on Python's re, over lines from the logs being scanned.
        raise ConfigError(f"{loc}: {BACKTRACK_MESSAGE}")
    return compiled


def _convert(section: str, f: dataclasses.Field, v: Any, where: _Where) -> Any:
    """Validate one value of ``[section] f.name`` and convert it to the field's type."""
    loc = where.locate(section, f.name)
    kind = f.metadata["kind"]
    meta = f.metadata
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{loc}: expected an integer, got {_tname(v)} {v!r}")
        if not meta["lo"] <= v <= meta["hi"]:
            raise ConfigError(f"{loc}: {v} is out of range {meta['lo']}..{meta['hi']}")
        return v
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{loc}: expected a number, got {_tname(v)} {v!r}")
        if not meta["lo"] <= v <= meta["hi"]:
            raise ConfigError(f"{loc}: {v} is out of range {meta['lo']:g}..{meta['hi']:g}")
        return float(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(f"{loc}: expected true or false, got {_tname(v)} {v!r}")
        return v
    if kind == "path":
        if not isinstance(v, str):
            raise ConfigError(f"{loc}: expected a path (string), got {_tname(v)} {v!r}")
        if not v.strip():
            return None
        p = Path(v).expanduser()
        p = p if p.is_absolute() else where.base_dir / p
        if not p.is_file():
            raise ConfigError(f"{loc}: no such file: {p}")
        return p
    if kind == "jurisdictions":
        out = []
        for x in _str_list(v, loc):
            if not _JURISDICTION_RE.match(x):
                raise ConfigError(f"{loc}: {x!r} is not a jurisdiction code (EU, EEA, US, UK, CH, …)")
            if x.strip().upper() == "GB":
                # The regimes name the United Kingdom UK: GB would make UK GDPR silently not apply.
                raise ConfigError(f"{loc}: write the United Kingdom as \"UK\" (the code the regimes use), not {x!r}")
            out.append(x.upper())
        return tuple(dict.fromkeys(out))
    if kind == "hosts":
        from leakwatch.detect.egress import extract_host

        out = []
        for x in _str_list(v, loc):
            wild = x.startswith("*.")
            host = extract_host(x[2:] if wild else x)
            if host is None or not _HOST_RE.match(host):
                raise ConfigError(f"{loc}: {x!r} is not a host name")
            out.append(("*." if wild else "") + host)
        return tuple(dict.fromkeys(out))
    if kind == "globs":
        return tuple(_str_list(v, loc))
    if kind == "objects":
        out = _str_list(v, loc)
        for x in out:
            if not _OBJECT_RE.match(x):
                raise ConfigError(f"{loc}: {x!r} is not a Salesforce object name")
        return tuple(out)
    if kind == "regexes":
        out = _str_list(v, loc)
        for i, x in enumerate(out):
            _check_regex(x, f"{loc}[{i}]")
        return tuple(out)
    if kind == "upper_list":
        return tuple(x.upper() for x in _str_list(v, loc))
    if kind == "custom_formats":
        return _custom_formats(v, loc)
    if kind == "secrets_file":
        return _secrets_file(v, loc, where)
    if kind == "notify_targets":
        return _notify_targets(v, section, f.name, where)
    if kind == "notify_rules":
        return _notify_rules(v, section, f.name, where)
    if kind == "model_path":
        # Like "path", but a missing file is fine: no model means the template summary.
        if not isinstance(v, str):
            raise ConfigError(f"{loc}: expected a path (string), got {_tname(v)} {v!r}")
        if not v.strip():
            return None
        p = Path(v.strip()).expanduser()
        return p if p.is_absolute() else where.base_dir / p
    if kind == "str":
        if not isinstance(v, str):
            raise ConfigError(f"{loc}: expected a string, got {_tname(v)} {v!r}")
        return v.strip()
    if kind == "choice":
        if not isinstance(v, str) or v.strip().lower() not in meta["choices"]:
            raise ConfigError(f"{loc}: " + _unknown(str(v), list(meta["choices"]), "value"))
        return v.strip().lower()
    if kind == "choice_list":
        out = []
        for x in _str_list(v, loc):
            if x.strip().lower() not in meta["choices"]:
                raise ConfigError(f"{loc}: " + _unknown(x, list(meta["choices"]), "value"))
            out.append(x.strip().lower())
        return tuple(dict.fromkeys(out))
    if kind == "timezone":
        if not isinstance(v, str):
            raise ConfigError(f"{loc}: expected an IANA time zone name, got {_tname(v)} {v!r}")
        if v.strip():
            check_timezone(v.strip(), loc)
        return v.strip()
    raise AssertionError(f"no converter for kind {kind!r}")  # pragma: no cover


def check_timezone(name: str, loc: str = "time zone"):
    """The :class:`zoneinfo.ZoneInfo` called ``name``; :class:`ConfigError` naming ``loc`` if
    there is no such zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    try:
        if "/" in name or name == "UTC":
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    close = difflib.get_close_matches(name, sorted(available_timezones()), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else " (use an IANA name such as Europe/Berlin)"
    raise ConfigError(f"{loc}: unknown time zone {name!r}{hint}")


def _custom_formats(v: Any, loc: str) -> tuple[CustomFormat, ...]:
    if not isinstance(v, list):
        raise ConfigError(f"{loc}: expected an array of tables ([[formats.custom]]), got {_tname(v)}")
    out: list[CustomFormat] = []
    names: set[str] = set()
    for i, item in enumerate(v):
        iloc = f"{loc}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{iloc}: expected a table with name, regex, paths; got {_tname(item)} {item!r}")
        for k in item:
            if k not in _CUSTOM_KEYS:
                raise ConfigError(f"{iloc}: " + _unknown(k, list(_CUSTOM_KEYS), "key"))
        for k in _CUSTOM_KEYS:
            if k not in item:
                raise ConfigError(f"{iloc}: missing key {k!r}")
        name = item["name"]
        if not isinstance(name, str) or not _FORMAT_NAME_RE.match(name):
            raise ConfigError(f"{iloc}.name: {name!r} must match ^[a-z0-9][a-z0-9_-]*$")
        if name in names:
            raise ConfigError(f"{iloc}.name: format {name!r} is defined twice")
        names.add(name)
        regex = item["regex"]
        if not isinstance(regex, str) or not regex:
            raise ConfigError(f"{iloc}.regex: expected a non-empty string, got {regex!r}")
        rx = _check_regex(regex, f"{iloc}.regex")
        if not rx.groupindex:
            raise ConfigError(f"{iloc}.regex: needs named groups, e.g. (?P<path>\\S+): they become the fields")
        paths = item["paths"]
        if isinstance(paths, str):
            paths = [paths]
        paths = _str_list(paths, f"{iloc}.paths")
        if not paths:
            raise ConfigError(f"{iloc}.paths: give at least one glob of the files in this format")
        out.append(CustomFormat(name=name, regex=regex, paths=tuple(paths)))
    return tuple(out)


# --- [notify] ----------------------------------------------------------------------------------


def _item_loc(where: _Where, section: str, key: str, i: int) -> str:
    """``file:LINE: notify.targets[i]``: the line of the i-th ``[[section.key]]`` header (or of
    the ``key =`` line of an inline array), else the variable."""
    if where.var is not None:
        return f"{where.var}: [{i}]"
    header = re.compile(r"\s*\[\[\s*" + re.escape(section) + r"\s*\.\s*" + re.escape(key) + r"\s*\]\]")
    n = -1
    for lineno, line in enumerate(where.text.splitlines(), 1):
        if header.match(line):
            n += 1
            if n == i:
                return f"{where.file}:{lineno}: {section}.{key}[{i}]"
    line = _key_line(where.text, section, key)
    return f"{where.file}" + (f":{line}" if line else "") + f": {section}.{key}[{i}]"


def _secrets_file(v: Any, loc: str, where: _Where) -> Path | None:
    if not isinstance(v, str):
        raise ConfigError(f"{loc}: expected a path (string), got {_tname(v)}")
    if not v.strip():
        return None
    p = Path(v.strip()).expanduser()
    p = p if p.is_absolute() else where.base_dir / p
    check_secrets_file_mode(p, loc)
    return p


def check_secrets_file_mode(path: Path, loc: str = "secrets file") -> None:
    """Raise :class:`ConfigError` unless ``path`` is a regular file only its owner can read or
    write (mode 0600 or stricter): it holds credentials."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{loc}: no such file: {path}") from None
    except OSError as e:
        raise ConfigError(f"{loc}: cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{loc}: {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(f"{loc}: {path} has mode {mode:04o}, so other users can read the credentials in "
                          f"it; make it private first: chmod 600 {path}")


def _str_or_list(v: Any, loc: str) -> list[str]:
    return _str_list([v] if isinstance(v, str) else v, loc)


def _notify_targets(v: Any, section: str, key: str, where: _Where) -> tuple[TargetConfig, ...]:
    loc = where.locate(section, key)
    if not isinstance(v, list):
        raise ConfigError(f"{loc}: expected an array of tables ([[notify.targets]]), got {_tname(v)}")
    out: list[TargetConfig] = []
    names: set[str] = set()
    for i, item in enumerate(v):
        iloc = _item_loc(where, section, key, i)
        if not isinstance(item, dict):
            raise ConfigError(f"{iloc}: expected a table with name, kind, url; got {_tname(item)}")
        for k in item:
            if k not in _TARGET_KEYS:
                raise ConfigError(f"{iloc}: " + _unknown(k, list(_TARGET_KEYS), "key"))
        for k in ("name", "kind", "url"):
            if k not in item:
                raise ConfigError(f"{iloc}: missing key {k!r}")
        name = item["name"]
        if not isinstance(name, str) or not _TARGET_NAME_RE.match(name):
            raise ConfigError(f"{iloc}.name: {name!r} must be letters, digits, '.', '_' or '-' (up to 64)")
        if name in names:
            raise ConfigError(f"{iloc}.name: target {name!r} is defined twice")
        names.add(name)
        kind = item["kind"]
        if not isinstance(kind, str) or kind.strip().lower() not in TARGET_KINDS:
            raise ConfigError(f"{iloc}.kind: " + _unknown(str(kind), list(TARGET_KINDS), "target kind"))
        url = item["url"]
        if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url.strip()):
            raise ConfigError(f"{iloc}.url: expected an http:// or https:// URL, got {_tname(url)}")
        url_problem = _url_problem(url.strip())
        if url_problem:
            # Found here, not at the first send in the middle of an incident.
            raise ConfigError(f"{iloc}.url: {url_problem}")
        creds = item.get("credentials", {})
        if not isinstance(creds, dict):
            raise ConfigError(f"{iloc}.credentials: expected a table (credential name = environment variable name), "
                              f"got {_tname(creds)}")
        if kind.strip().lower() == "webhook" and "secret" not in creds:
            # Every webhook is signed: without its secret each notification would be dead-lettered.
            raise ConfigError(f"{iloc}.credentials: a webhook target needs credentials = {{ secret = \"ENV_VAR_NAME\" }} "
                              f"(the variable holding its whsec_… signing secret)")
        for cname, var in creds.items():
            # The value is never echoed: someone may have pasted the secret itself here.
            if not isinstance(var, str) or not _ENV_VAR_RE.match(var):
                raise ConfigError(f"{iloc}.credentials.{cname}: must name an environment variable or secrets-file "
                                  f"key (letters, digits, '_'), not hold the credential itself")
        options = item.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{iloc}.options: expected a table, got {_tname(options)}")
        known = TARGET_OPTIONS[kind.strip().lower()]
        for k, v in options.items():
            if k not in known:
                raise ConfigError(f"{iloc}.options: " + _unknown(str(k), sorted(known), f"option of a {kind} target"))
            wrong = option_type_problem(k, v)
            if wrong:
                raise ConfigError(f"{iloc}.options.{k}: expected {wrong}, got {_tname(v)}")
        timeout = item.get("timeout_s", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.01 <= timeout <= 600:
            raise ConfigError(f"{iloc}.timeout_s: expected seconds between 0.01 and 600, got {timeout!r}")
        out.append(TargetConfig(name=name, kind=kind.strip().lower(), url=url.strip(), credentials=dict(creds),
                                options=dict(options), timeout_s=float(timeout)))
    return tuple(out)


def _url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as a target's address (None when nothing does). Never quotes
    the URL: a target's URL may carry a password, a token or a Slack path secret."""
    import urllib.parse

    spaces = [i for i, c in enumerate(url) if c.isspace()]
    if spaces:
        return f"holds a space or a line break (character {spaces[0] + 1})"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "is not a usable URL (its host or port cannot be read; a port is 1 to 65535)"
    if not parts.hostname:
        return "names no host"
    return None


def _durations(v: Any, loc: str) -> tuple[timedelta, ...]:
    from leakwatch.detect.egress import DataFileProblem
    from leakwatch.incidents.playbooks import parse_duration

    out = []
    for x in _str_or_list(v, loc):
        try:
            td = parse_duration(x, "before")
        except DataFileProblem as e:
            raise ConfigError(f"{loc}: {e.message}") from None
        if td <= timedelta(0):
            raise ConfigError(f"{loc}: {x!r} is not a positive duration")
        out.append(td)
    return tuple(sorted(set(out), reverse=True))


def _notify_rules(v: Any, section: str, key: str, where: _Where) -> tuple[NotifyRule, ...]:
    loc = where.locate(section, key)
    if not isinstance(v, list):
        raise ConfigError(f"{loc}: expected an array of tables ([[notify.rules]]), got {_tname(v)}")
    out: list[NotifyRule] = []
    for i, item in enumerate(v):
        iloc = _item_loc(where, section, key, i)
        if not isinstance(item, dict):
            raise ConfigError(f"{iloc}: expected a table with on and targets; got {_tname(item)}")
        for k in item:
            if k not in _RULE_KEYS:
                raise ConfigError(f"{iloc}: " + _unknown(k, list(_RULE_KEYS), "key"))
        for k in ("on", "targets"):
            if k not in item:
                raise ConfigError(f"{iloc}: missing key {k!r}")
        on = _str_or_list(item["on"], f"{iloc}.on")
        if not on:
            raise ConfigError(f"{iloc}.on: give at least one event ({', '.join(EVENTS)})")
        for e in on:
            if e not in EVENTS:
                raise ConfigError(f"{iloc}.on: " + _unknown(e, list(EVENTS), "event"))
        targets = _str_or_list(item["targets"], f"{iloc}.targets")
        if not targets:
            raise ConfigError(f"{iloc}.targets: give at least one target name")
        sev = item.get("min_severity", "info")
        if not isinstance(sev, str) or sev.strip().lower() not in SEVERITY_NAMES:
            raise ConfigError(f"{iloc}.min_severity: " + _unknown(str(sev), list(SEVERITY_NAMES), "severity"))
        if "before" in item and "deadline.approaching" not in on:
            raise ConfigError(f"{iloc}.before: only deadline.approaching uses thresholds; add it to 'on' or drop 'before'")
        before = _durations(item.get("before", list(DEFAULT_BEFORE)), f"{iloc}.before") \
            if "deadline.approaching" in on else ()
        regimes = _str_or_list(item.get("regimes", []), f"{iloc}.regimes")
        for r in regimes:
            if not _REGIME_ID_RE.match(r):
                raise ConfigError(f"{iloc}.regimes: {r!r} is not a regime id (gdpr-33, nis2, …)")
        name = item.get("name", f"rule-{i + 1}")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{iloc}.name: expected a non-empty string, got {_tname(name)}")
        out.append(NotifyRule(name=name.strip(), on=tuple(dict.fromkeys(on)), targets=tuple(dict.fromkeys(targets)),
                              min_severity=sev.strip().lower(), before=before, regimes=tuple(regimes)))
    return tuple(out)


def _check_notify(values: Mapping[str, Any], origins: Mapping[tuple[str, str], _Where]) -> None:
    """Cross-checks of ``[notify]`` once every source is applied: each rule's targets exist."""
    names = [t.name for t in values.get("targets", ())]
    for i, rule in enumerate(values.get("rules", ())):
        for t in rule.targets:
            if t not in names:
                where = origins.get(("notify", "rules"), _Where())
                loc = _item_loc(where, "notify", "rules", i) + ".targets"
                if not names:
                    raise ConfigError(f"{loc}: no target {t!r}: no [[notify.targets]] is configured")
                raise ConfigError(f"{loc}: " + _unknown(t, names, "target"))


def _apply(values: dict[str, dict[str, Any]], doc: Mapping[str, Any], where: _Where,
           origins: dict[tuple[str, str], _Where] | None = None) -> None:
    """Check ``doc`` (sections of raw values) against the schema and convert into ``values``."""
    for section, body in doc.items():
        if section not in SECTIONS:
            loc = str(where.file) if where.var is None else where.var
            raise ConfigError(f"{loc}: " + _unknown(section, list(SECTIONS), "section"))
        if not isinstance(body, dict):
            raise ConfigError(f"{where.locate(section)}: expected a table [{section}], got {_tname(body)}")
        fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
        for key, v in body.items():
            if key not in fields:
                loc = where.locate(section, key)
                raise ConfigError(f"{loc}: " + _unknown(key, list(fields), "key", f" in [{section}]"))
            values[section][key] = _convert(section, fields[key], v, where)
            if origins is not None:
                origins[(section, key)] = where


def _parse_env_value(f: dataclasses.Field, raw: str, var: str) -> Any:
    """An environment string → the raw (TOML-like) value the converters expect."""
    kind = f.metadata["kind"]
    s = raw.strip()
    if kind == "int":
        try:
            return int(s.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{var}: expected an integer, got {raw!r}") from None
    if kind == "float":
        try:
            return float(s)
        except ValueError:
            raise ConfigError(f"{var}: expected a number, got {raw!r}") from None
    if kind in ("path", "model_path", "str", "choice", "timezone", "secrets_file"):
        return raw
    if kind == "bool":
        low = s.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var}: expected true or false (1/0, yes/no), got {raw!r}")
    if s.startswith("[") or kind in ("custom_formats", "notify_targets", "notify_rules"):
        try:
            return tomllib.loads(f"v = {s}")["v"]
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{var}: not a TOML array: {e}") from None
    if kind == "regexes":
        return [s] if s else []
    return [x.strip() for x in s.split(",") if x.strip()]


def _env_doc(env: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str]]:
    """Settings from ``LEAKWATCH_<SECTION>_<KEY>`` variables, with the variable of each."""
    known = {env_name(s, f.name): (s, f) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    doc: dict[str, dict[str, Any]] = {}
    names: dict[tuple[str, str], str] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        hit = known.get(var)
        if hit is None:
            # Other LEAKWATCH_* variables (LEAKWATCH_CONFIG, LEAKWATCH_RULES) are not settings;
            # one that starts like a section is a misspelt setting.
            if any(var.startswith(f"{ENV_PREFIX}{s.upper()}_") for s in SECTIONS):
                raise ConfigError(f"{var}: " + _unknown(var, sorted(known), "setting variable"))
            continue
        section, f = hit
        doc.setdefault(section, {})[f.name] = _parse_env_value(f, env[var], var)
        names[(section, f.name)] = var
    return doc, names


def _not_a_file(p: Path) -> str:
    return "a folder, not a file (name the leakwatch.toml in it)" if p.is_dir() else "no such file"


def find_config_file(path: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> Path | None:
    """The TOML file to read: ``path``, else ``$LEAKWATCH_CONFIG``, else ``./leakwatch.toml``
    when it exists, else ``None``. A file named by ``path`` or the variable must exist."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"--config {path}: {_not_a_file(p)}")
        return p
    named = env.get(CONFIG_ENV)
    if named:
        p = Path(named).expanduser()
        if not p.is_file():
            raise ConfigError(f"{CONFIG_ENV}={named}: {_not_a_file(p)}")
        return p
    p = Path(DEFAULT_FILE)
    return p if p.is_file() else None


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Read the settings: defaults, then the TOML file (see :func:`find_config_file`), then
    ``LEAKWATCH_*`` variables from ``env``. Raises :class:`ConfigError` naming the file or
    variable and the key of the first problem."""
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    origins: dict[tuple[str, str], _Where] = {}
    file = find_config_file(path, env)
    if file is not None:
        try:
            # utf-8-sig: a byte order mark (Windows editors write one) is no "invalid statement".
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{file}: cannot read: {e}") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file}: invalid TOML: {e}") from None
        _apply(values, doc, _Where(file=file.resolve(), text=text), origins)
    env_doc, names = _env_doc(env)
    for section, body in env_doc.items():
        for key, v in body.items():
            _apply(values, {section: {key: v}}, _Where(var=names[(section, key)]), origins)
    _check_notify(values["notify"], origins)
    parts = {s: SECTIONS[s](**values[s]) for s in SECTIONS}
    return Config(**parts, source=file.resolve() if file is not None else None)
