"""The last line of defence before a notice, a fact or a prompt leaves leakwatch: run the
shipped detection rules over the text and refuse it when they find a raw (unmasked) value.

Responder facts are free text a person typed; someone under pressure pastes a customer's
e-mail into "likely consequences". That text would go into a regulator's notice and the audit
trail, so it is checked like a log line (same rules, same validators: a Luhn-failing number is
not a card) and refused with the entity and position, never echoing the value.
"""
from __future__ import annotations

import functools
import os
import re

from leakwatch.errors import IncidentError

#: Entities that are not a person's data in a notice: record ids and IPs of our own systems are
#: legitimate facts there; everything else the rules find at medium or above is refused.
ALLOWED_ENTITIES = frozenset({"SALESFORCE_RECORD_ID", "IP_ADDRESS"})
MIN_RANK = 2  # medium


@functools.lru_cache(maxsize=1)
def _detector():
    from leakwatch.detect.engine import Detector
    from leakwatch.detect.rules import default_rules_dir, load_rules

    rules, _errors = load_rules([default_rules_dir()])
    return Detector(rules, os.urandom(32))


# Typed text is not a log line: a secret comes without its key ("rotated wJalrXUtnFEMI/K7MD…"),
# a password after a short word ("pw: Winter2024x"). Beyond the rules, a run of 16 or more
# letters and digits mixing upper case, lower case and digits (a model's file name such as
# SmolLM2-135M-Instruct has none that long), and a value with a digit or a symbol after a
# password-ish word, are refused too.
_LONG_TOKEN = re.compile(r"[A-Za-z0-9]{16,}")
_PASSWORD_WORD = re.compile(r"(?i)\b(?:password|passwort|passwd|passphrase|pass|pwd|pw|secret|token|api[ _-]?key)"
                            r"(?:\s*(?::|=|\bis\b|\bwas\b)\s*|\s+(?=\S*[0-9])(?=\S*[A-Za-z]))(\S{4,})")


def _typed_secrets(text: str) -> list[tuple[str, int]]:
    from leakwatch._core.fastval import shannon_entropy

    from leakwatch.detect.validators import get_validator

    is_record_id = get_validator("sfid", {})  # a Salesforce record id is a fact a notice may name
    out = []
    for m in _LONG_TOKEN.finditer(text):
        tok = m.group(0)
        classes = sum((any(c.isupper() for c in tok), any(c.islower() for c in tok), any(c.isdigit() for c in tok)))
        if classes == 3 and shannon_entropy(tok.encode()) >= 3.5 and not is_record_id(tok.encode()):
            out.append(("SECRET", m.start()))
    for m in _PASSWORD_WORD.finditer(text):
        value = m.group(1)
        if not value.isalpha():
            out.append(("PASSWORD", m.start(1)))
    return out


def raw_values_in(text: str) -> list[tuple[str, int]]:
    """(entity, character offset) of each raw value the shipped rules find in ``text`` (also
    written in lower case: an IBAN or a codice fiscale typed as "de89…"), and of the secrets
    typed text carries without a key."""
    if not text:
        return []
    found = _rule_values(text) + _typed_secrets(text)
    if text.upper() != text and len(text.upper()) == len(text):
        seen = {o for _e, o in found}
        found += [(e, o) for e, o in _rule_values(text.upper()) if o not in seen]
    return sorted(set(found), key=lambda f: f[1])


def mask_raw_values(text: str) -> str:
    """``text`` with each raw value the shipped rules find in it replaced by its masked
    preview: a file name like ``prompts_jane.doe@example.com.jsonl`` in an Art. 30 record."""
    if not text:
        return text
    from leakwatch.sources.files import Chunk

    data = text.encode("utf-8")
    if b"\n" in data:
        return "\n".join(mask_raw_values(part) for part in text.split("\n"))
    batch, _n = _detector().process(Chunk(data=data, first_line=0, end=len(data)))
    spans = []
    for i in range(len(batch.get("entity", []))):
        if str(batch["entity"][i]) in ALLOWED_ENTITIES or int(batch["severity_rank"][i]) < MIN_RANK:
            continue
        spans.append((int(batch["start_byte"][i]), int(batch["end_byte"][i]), str(batch["masked"][i] or "…")))
    out, at = [], 0
    for start, end, masked in sorted(spans):
        if start < at:
            continue  # overlapping findings of one value: the first masks it
        out += [data[at:start], masked.encode("utf-8")]
        at = end
    out.append(data[at:])
    return b"".join(out).decode("utf-8", "replace")


def _rule_values(text: str) -> list[tuple[str, int]]:
    from leakwatch.sources.files import Chunk

    data = text.encode("utf-8")
    batch, _n = _detector().process(Chunk(data=data, first_line=0, end=len(data)))
    out = []
    ents = batch.get("entity", [])
    line_starts = [0]  # byte offset of each line (batch lines are 1-based)
    for part in data.split(b"\n")[:-1]:
        line_starts.append(line_starts[-1] + len(part) + 1)
    for i in range(len(ents)):
        entity = str(ents[i])
        if entity in ALLOWED_ENTITIES or int(batch["severity_rank"][i]) < MIN_RANK:
            continue
        line, start = int(batch["line"][i]), int(batch["start_byte"][i])
        off = line_starts[line - 1] + start
        out.append((entity, len(data[:off].decode("utf-8", "replace"))))
    return out


def check_free_text(text: str, what: str) -> None:
    """Raise :class:`IncidentError` when ``text`` holds a raw value (named by entity and
    position only)."""
    found = raw_values_in(text)
    if found:
        where = ", ".join(f"{e} at character {o}" for e, o in found[:5])
        example = _mask_example(found[0][0])
        raise IncidentError(f"{what}: looks like raw personal data or a secret ({where}); "
                            f"write it masked ({example}) or as a count — notices and the audit "
                            f"trail must not carry raw values")


# How to write a value masked, by entity: the mask leakwatch itself applies, to a made-up value.
_MASK_SAMPLES = {
    "EMAIL_ADDRESS": ("email", b"jane.doe@example.com"), "CREDIT_CARD": ("card", b"4111111111111111"),
    "PHONE_NUMBER": ("phone", b"+442079460958"), "IBAN_CODE": ("iban", b"DE89370400440532013000"),
    "US_SSN": ("national_id", b"123-45-6789"), "UK_NINO": ("national_id", b"QQ123456C"),
    "SECRET": ("secret", b"sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7"), "PASSWORD": ("redact", b"Winter2024x"),
}


def _mask_example(entity: str) -> str:
    from leakwatch.detect.mask import get_masker

    sample = _MASK_SAMPLES.get(entity)
    return get_masker(sample[0])(sample[1]) if sample else "masked, like the findings show it"
