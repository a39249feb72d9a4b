"""The rule regexes every engine in ``bench/`` runs: the shipped rules, or a stand-in list.

The benchmark is only meaningful with the rules leakwatch ships (``rules/`` via
``leakwatch.detect.rules``); the stand-in list exists so that ``bench/`` can be developed and
smoke-tested while that module does not load, and the printed table says loudly which set ran.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# 32 representative PII/secret regexes in RE2 syntax, the same mix as the measurement in
# shared/DOMAIN.md §8: digit-shaped patterns with bounded repeats (card, IBAN, SSN, IPv6, MAC,
# NINO) are the expensive ones for automata, keyword-anchored secrets the cheap ones.
FALLBACK_PATTERNS: tuple[tuple[str, str], ...] = (
    ("email", r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}"),
    ("phone_uk", r"(?:\+44 ?|\b0)(?:20 ?\d{4} ?\d{4}|7\d{3} ?\d{6})\b"),
    ("phone_nanp", r"\+1[ -]?\(?[2-9]\d{2}\)?[ .-]?\d{3}[ .-]?\d{4}\b"),
    ("card", r"\b(?P<value>(?:\d[ -]?){12,18}\d)\b"),
    ("iban", r"\b[A-Z]{2}\d{2} ?(?:[A-Z0-9]{4} ?){2,7}[A-Z0-9]{1,4}\b"),
    ("us_ssn", r"\b(?:00[1-9]|0[1-9]\d|[1-578]\d{2}|6[0-57-9]\d|66[0-57-9])-(?:0[1-9]|[1-9]\d)-\d{4}\b"),
    ("uk_nino", r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
    ("ipv4", r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b"),
    ("ipv6", r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b"),
    ("mac", r"\b(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}\b"),
    ("sf_person_id", r"\b(?:003|00Q)[A-Za-z0-9]{12}(?:[A-Z0-5]{3})?\b"),
    ("sf_account_id", r"\b001[A-Za-z0-9]{12}(?:[A-Z0-5]{3})?\b"),
    ("sf_session_id", r"\b00D[A-Za-z0-9]{12}![A-Za-z0-9._]{40,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    ("openai_key", r"\bsk-(?:proj-)?[A-Za-z0-9_-]{40,}"),
    ("anthropic_key", r"\bsk-ant-api03-[A-Za-z0-9_-]{80,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("groq_key", r"\bgsk_[A-Za-z0-9]{40,}"),
    ("replicate_token", r"\br8_[A-Za-z0-9]{30,}"),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b"),
    ("aws_secret_key", r"(?i)aws_secret_access_key[\"' :=]+(?P<value>[A-Za-z0-9/+]{40})"),
    ("password_pair", r"(?i)\bpass(?:word|wd)?[\"']?\s*[:=]\s*[\"']?(?P<value>[^\s\"'&,;]{4,})"),
    ("keyword_token",
     r"(?i)(?:authorization|api[_-]?key|x-api-key|cohere|mistral)[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?(?P<value>[A-Za-z0-9]{32,40})\b"),
    ("date_of_birth", r"(?i)\b(?:dob|date_of_birth|birth_?date)[\"']?\s*[:=]\s*[\"']?(?P<value>\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{4})"),
    ("street_address", r"(?i)\b(?:address|street|address_line1)[\"']?\s*[:=]\s*[\"']?(?P<value>\d{1,5}[ +][A-Za-z .+'-]{3,60})"),
    ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    ("stripe_live_key", r"\b[rs]k_live_[A-Za-z0-9]{24,}"),
    ("slack_token", r"\bxox[baprs]-[A-Za-z0-9-]{10,}"),
    ("private_key", r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    ("es_dni", r"\b\d{8}[TRWAGMYFPDXBNJZSQVHLCKE]\b"),
    ("nl_bsn", r"(?i)\bbsn[\"']?\s*[:=]\s*[\"']?(?P<value>\d{9})\b"),
)


@dataclass
class RuleSet:
    """Regexes plus where they came from, for the table's header and ``latest.json``."""

    patterns: list[str]
    ids: list[str]
    source: str
    shipped: bool
    load_errors: list[str] = field(default_factory=list)


def load_patterns() -> RuleSet:
    """Shipped rules when ``leakwatch.detect.rules`` loads them, else the stand-in list."""
    try:
        from leakwatch.detect.rules import default_rules_dir, load_rules
    except ImportError as e:
        return RuleSet([p for _, p in FALLBACK_PATTERNS], [i for i, _ in FALLBACK_PATTERNS],
                       f"bench/patterns.py stand-in ({len(FALLBACK_PATTERNS)} regexes): "
                       f"leakwatch.detect.rules not importable ({e})", shipped=False)
    rules_dir = default_rules_dir()
    rules, errors = load_rules([rules_dir])
    if not rules:
        return RuleSet([p for _, p in FALLBACK_PATTERNS], [i for i, _ in FALLBACK_PATTERNS],
                       f"bench/patterns.py stand-in: no rules loaded from {rules_dir}",
                       shipped=False, load_errors=[str(e) for e in errors])
    return RuleSet([r.regex for r in rules], [str(getattr(r, "id", i)) for i, r in enumerate(rules)],
                   f"{len(rules)} shipped rules from {rules_dir}", shipped=True,
                   load_errors=[str(e) for e in errors])
