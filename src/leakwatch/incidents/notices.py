"""Notice drafts: the GDPR Art. 33 notice, the Art. 34 letter, NIS2's three reports and a generic
regime notice, rendered from an incident's facts with Jinja2 templates users can edit
(``playbooks/templates/``; format in ``playbooks/README.md``).

Three rules hold every draft:

- **Only incident facts.** :func:`notice_context` builds the template context from
  :class:`~leakwatch.incidents.facts.IncidentFacts` alone (counts, categories, names, masked
  previews, responder text, organisation config): a raw value has no way in.
- **Nothing invented.** Each notice kind lists the items its regulation asks for; an item whose
  fact is unknown is ``None`` in the fields, named in ``missing`` and in a "Still unknown"
  section of the text, with where to supply it.
- **A last guard.** Responder text is typed by people and can hold anything, so the rendered
  text is searched for what looks like an unmasked e-mail address, a 13–19 digit card-like run,
  a UK NINO, a US SSN, an IBAN or an AI-service key; one found raises
  :class:`UnmaskedValueError` and no draft is returned. Values that come from the organisation's
  own config (the DPO's address in ``contact_point``) or the regime (a recipient's address) are
  exempt: they are not personal data of the incident.

Templates run in Jinja2's ``SandboxedEnvironment`` with ``StrictUndefined``, so a template
cannot reach Python internals and a misspelt name fails loudly instead of rendering empty.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from leakwatch.detect.mask import (
    mask_card,
    mask_email,
    mask_iban,
    mask_national_id,
    mask_secret,
)
from leakwatch.errors import IncidentError, PlaybookError
from leakwatch.incidents.facts import IncidentFacts

FORMATS = ("md", "txt", "json")
GDPR_NOTIFY_WITHIN = timedelta(hours=72)  # Art. 33(1): "where feasible, not later than 72 hours"


class UnmaskedValueError(IncidentError):
    """A rendered notice (or an audit text) holds what looks like an unmasked personal value or
    key. The message names the kind of value, a masked preview and where it came from; the raw
    value is never in it."""


@dataclass(frozen=True)
class NoticeKind:
    """One kind of notice: its title, the regime it belongs to, and the items it must hold."""

    title: str
    regime: str | None
    required: tuple[str, ...]
    description: str


NOTICE_KINDS: Mapping[str, NoticeKind] = {
    "gdpr-33": NoticeKind(
        "Notification of a personal data breach to the supervisory authority (GDPR Art. 33)",
        "gdpr-33",
        ("controller", "recipient", "nature", "categories_of_data", "categories_of_subjects",
         "data_subjects_approx", "records_approx", "occurred", "contact_point", "likely_consequences",
         "measures"),  # + delay_reasons when later than 72 h after awareness
        "Art. 33(3): nature incl. categories and approximate numbers of data subjects and records; "
        "DPO/contact point; likely consequences; measures taken or proposed.",
    ),
    "gdpr-34": NoticeKind(
        "Communication of a personal data breach to the data subjects (GDPR Art. 34)",
        "gdpr-34",
        ("controller", "plain_description", "categories_of_data", "contact_point", "likely_consequences",
         "measures"),
        "Art. 34(2): in clear and plain language, the nature of the breach and the items of "
        "Art. 33(3)(b), (c) and (d).",
    ),
    "nis2-early-warning": NoticeKind(
        "NIS2 early warning (Art. 23(4)(a))",
        "nis2",
        ("controller", "contact_point", "suspected_malicious", "cross_border"),
        "Within 24 h of awareness: whether the incident is suspected of being caused by unlawful "
        "or malicious acts and whether it could have a cross-border impact.",
    ),
    "nis2-notification": NoticeKind(
        "NIS2 incident notification (Art. 23(4)(b))",
        "nis2",
        ("controller", "contact_point", "initial_assessment", "severity", "impact",
         "indicators_of_compromise", "suspected_malicious", "cross_border"),
        "Within 72 h of awareness: an update of the early warning, an initial assessment with "
        "severity and impact, and indicators of compromise where available.",
    ),
    "nis2-final-report": NoticeKind(
        "NIS2 final report (Art. 23(4)(e))",
        "nis2",
        ("controller", "contact_point", "description", "severity", "impact", "root_cause", "measures",
         "cross_border"),
        "Within one month of the notification: a detailed description incl. severity and impact, "
        "the type of threat or root cause, applied and ongoing mitigation, cross-border impact.",
    ),
    "generic": NoticeKind(
        "Breach notification",
        None,
        ("controller", "recipient", "nature", "categories_of_data", "data_subjects_approx", "occurred",
         "contact_point", "likely_consequences", "measures"),
        "Any other regime: the items of the regime's own content list (these when it has none).",
    ),
}

#: Facts a responder can set on an incident (``IncidentFacts.responder``) that notices use.
RESPONDER_FACTS: Mapping[str, str] = {
    "nature": "what happened, in a sentence or two (else derived from the failure patterns)",
    "plain_description": "what happened, in plain words for the letter to data subjects",
    "description": "detailed description of the incident (NIS2 final report)",
    "subject_categories": "categories of data subjects (customers, employees, patients, …)",
    "data_categories": "categories of personal data, when the findings have none",
    "data_subjects": "approximate number of data subjects, if better than leakwatch's count",
    "records": "approximate number of records, if better than leakwatch's count",
    "occurred": "when the breach happened, if the logs do not show it",
    "likely_consequences": "likely consequences of the breach for the data subjects",
    "measures": "measures taken or proposed, incl. to mitigate adverse effects",
    "advice_to_subjects": "what data subjects can do to protect themselves",
    "delay_reasons": "why the notification comes later than 72 hours after awareness",
    "suspected_malicious": "suspected of being caused by unlawful or malicious acts? (yes/no)",
    "cross_border": "could it have (or has it had) a cross-border impact? (yes/no, which states)",
    "initial_assessment": "initial assessment of the incident",
    "severity_assessment": "severity as assessed by the responder (else leakwatch's severity)",
    "impact": "impact of the incident (services, users, data)",
    "indicators_of_compromise": "indicators of compromise, where available",
    "root_cause": "type of threat or root cause",
}

# Label of each item and where a responder supplies it when it is unknown.
_ITEMS: Mapping[str, tuple[str, str]] = {
    "controller": ("name of the organisation", "set [organisation] name in the config"),
    "recipient": ("recipient (supervisory authority)", "set [organisation] lead_authority in the config"),
    "contact_point": ("name and contact details of the DPO or other contact point",
                      "set [organisation] contact_point in the config"),
    "nature": ("nature of the breach", "responder fact 'nature'"),
    "plain_description": ("what happened, in plain language", "responder fact 'plain_description'"),
    "description": ("detailed description of the incident", "responder fact 'description'"),
    "categories_of_data": ("categories of personal data concerned", "responder fact 'data_categories'"),
    "categories_of_subjects": ("categories of data subjects concerned", "responder fact 'subject_categories'"),
    "data_subjects_approx": ("approximate number of data subjects concerned", "responder fact 'data_subjects'"),
    "records_approx": ("approximate number of personal data records concerned", "responder fact 'records'"),
    "occurred": ("when the breach happened", "responder fact 'occurred'"),
    "aware": ("when the organisation became aware", "set the awareness time"),
    "likely_consequences": ("likely consequences of the breach", "responder fact 'likely_consequences'"),
    "measures": ("measures taken or proposed", "responder fact 'measures', or finish playbook steps"),
    "delay_reasons": ("reasons for the delay (notified later than 72 hours after awareness)",
                      "responder fact 'delay_reasons'"),
    "advice": ("what data subjects can do", "responder fact 'advice_to_subjects'"),
    "suspected_malicious": ("whether unlawful or malicious acts are suspected", "responder fact 'suspected_malicious'"),
    "cross_border": ("whether there is or could be a cross-border impact", "responder fact 'cross_border'"),
    "initial_assessment": ("initial assessment of the incident", "responder fact 'initial_assessment'"),
    "severity": ("severity of the incident", "responder fact 'severity_assessment'"),
    "impact": ("impact of the incident", "responder fact 'impact'"),
    "indicators_of_compromise": ("indicators of compromise (where available)",
                                 "responder fact 'indicators_of_compromise'"),
    "root_cause": ("type of threat or root cause", "responder fact 'root_cause'"),
}

CATEGORY_LABELS: Mapping[str, tuple[str, str]] = {
    # category: (label for an authority, plain words for a data subject)
    "contact": ("contact data (e-mail addresses, phone numbers)", "your contact details, such as your e-mail address or phone number"),
    "identity": ("identity data (names, dates of birth)", "your name or date of birth"),
    "national_id": ("national identification numbers", "a national identification number (such as a National Insurance number)"),
    "financial": ("financial data (payment card or bank account numbers)", "payment card or bank account numbers"),
    "credentials": ("access credentials (API keys, passwords, session tokens)", "passwords or access keys"),
    "special": ("special categories of personal data (GDPR Art. 9, e.g. health data)", "sensitive information, such as health information"),
    "location": ("location data (postal addresses)", "your postal address or location"),
    "network": ("network identifiers (IP addresses)", "the internet (IP) address of your device"),
    "salesforce_record": ("internal customer-record identifiers", "internal reference numbers of your customer record"),
    "other": ("other personal data", "other information about you"),
}

PATTERN_LABELS: Mapping[str, tuple[str, str]] = {
    # failure pattern: (for an authority, plain words)
    "P3_prompt_pii": ("personal data sent inside prompts to an external AI service",
                      "some of your information was included in requests sent to an outside artificial-intelligence (AI) service"),
    "P1_gateway_bypass": ("calls to an AI service that bypassed the organisation's approved AI gateway and its safeguards",
                          "information was sent to an outside AI service without going through our usual safeguards"),
    "P1_key_exposed": ("an access key of an AI service exposed in logs or exported settings",
                       "an access key to one of our AI services was exposed"),
    "P2_bulk_then_ai": ("a bulk export of customer records followed by calls to an AI service",
                        "a large set of customer records was exported and then sent to an outside AI service"),
    "P4_cdn_region": ("AI-generated content holding personal data cached at CDN edge locations outside the permitted jurisdictions",
                      "pages containing your information were stored temporarily on servers in other countries"),
    "bulk_export": ("a bulk export of records", "a large set of records was exported"),
    "api_volume": ("an unusual volume of API calls", "an unusual number of requests accessed our systems"),
}

# --- the guard ---------------------------------------------------------------------------------

# Local part and domain of an e-mail address; a masked one (j***@e***.com) has '*' right before
# the '@', which no alternative accepts. '%40' is '@' URL-encoded.
_EMAIL = re.compile(r"(?<![\w.%+*-])[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13–19 digits, single spaces or dashes between groups (4111 1111 1111 1111): card numbers'
# lengths (ISO/IEC 7812). Without a Luhn check on purpose: any such run in a notice is suspect.
_CARD = re.compile(r"(?<![\d*])(?:\d[ -]?){12,18}\d(?![\d*])")
_NINO = re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_SECRET = re.compile(r"\b(?:sk-(?:proj-|ant-api03-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}|A[KS]IA[0-9A-Z]{16}"
                     r"|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}|gsk_[A-Za-z0-9]{40,}|r8_[A-Za-z0-9]{30,})")
_GUARDS: tuple[tuple[str, re.Pattern[str], Callable[[bytes], str]], ...] = (
    ("e-mail address", _EMAIL, mask_email),
    ("AI-service key", _SECRET, mask_secret),
    ("IBAN", _IBAN, mask_iban),
    ("card-like number", _CARD, mask_card),
    ("UK National Insurance number", _NINO, mask_national_id),
    ("US Social Security number", _SSN, mask_national_id),
)


def find_unmasked(text: str, allowed: Iterable[str] = ()) -> list[tuple[str, str]]:
    """What in ``text`` looks like an unmasked personal value or key, as ``(kind, masked
    preview)`` pairs; values in ``allowed`` (exactly as written) are not reported."""
    ok = set(allowed)
    out = []
    for kind, rx, mask in _GUARDS:
        for m in rx.finditer(text):
            if m.group() not in ok:
                out.append((kind, mask(m.group().encode())))
    return out


def _config_values(*texts: Any) -> set[str]:
    """Guard matches inside config/regime text: the organisation's own contact data is exempt."""
    out: set[str] = set()
    for t in texts:
        if isinstance(t, str) and t:
            for _kind, rx, _mask in _GUARDS:
                out.update(m.group() for m in rx.finditer(t))
    return out


# --- context -----------------------------------------------------------------------------------


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _get(obj: Any, *names: str) -> Any:
    for n in names:
        if isinstance(obj, Mapping):
            if obj.get(n) is not None:
                return obj[n]
        elif getattr(obj, n, None) is not None:
            return getattr(obj, n)
    return None


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, datetime):
        return _iso(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    return str(v)


def _known(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, str):
        return bool(v.strip())
    if isinstance(v, (list, tuple, dict)):
        return bool(v)
    return True


def format_delta(td: timedelta) -> str:
    """``timedelta(hours=27, minutes=5)`` → ``"1 d 3 h"``; under an hour in minutes."""
    secs = int(abs(td.total_seconds()))
    d, rem = divmod(secs, 86_400)
    h, rem = divmod(rem, 3_600)
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {rem // 60} min" if rem // 60 else f"{h} h"
    return f"{rem // 60} min"


def _deadline_rows(deadlines: Iterable[Any] | None, regime_id: str | None, now: datetime) -> list[dict]:
    """Deadlines of ``regime_id`` (objects or mappings from the regimes module, duck-typed:
    ``regime``/``regime_id``, ``id``/``deadline_id``, ``label``/``name``, ``due``/``at``)."""
    rows = []
    for d in deadlines or ():
        reg = _get(d, "regime_id", "regime")
        reg = _get(reg, "id") if reg is not None and not isinstance(reg, str) else reg
        if regime_id is not None and reg is not None and reg != regime_id:
            continue
        due = _get(d, "due", "at", "due_at", "when")
        due = due if isinstance(due, datetime) else None
        did = _get(d, "deadline_id", "id", "key")
        met = _get(d, "status") == "met"  # the regimes module's Deadline: its notice was sent in time
        rows.append({
            "regime": reg, "id": None if did is None else str(did),
            "label": str(_get(d, "label", "name", "title", "description") or did or "deadline"),
            "due": _iso(due),
            "overdue": bool(due and due < now and not met),
            "met": met,
            "status": None if _get(d, "status") is None else str(_get(d, "status")),
            "time_left": "met" if met else None if due is None else
            (("overdue by " if due < now else "") + format_delta(due - now)),
        })
    return rows


def notice_context(facts: IncidentFacts, *, regime_id: str | None, deadlines: list | None = None,
                   now: datetime, kind: str = "generic", regime: Any = None) -> dict:
    """The JSON-able context a notice template sees, built from ``facts`` only.

    Holds the incident's counts, categories, objects and fields, destinations, masked examples,
    responder text, organisation facts, the regime's deadlines, and for ``kind`` the notice's
    ``items`` (item id → value, ``None`` when unknown), their ``labels`` and the ``missing``
    item ids. ``regime`` (optional; an object or mapping with ``id``, ``name``, ``recipient``,
    ``content``) names the recipient and, for the generic notice, the items.
    """
    if kind not in NOTICE_KINDS:
        raise PlaybookError(f"unknown notice kind {kind!r} (kinds: {', '.join(NOTICE_KINDS)})")
    org = facts.org
    resp = {str(k): _jsonable(v) for k, v in (facts.responder or {}).items()}
    org_d = {
        "name": (_get(org, "name") or "") if org is not None else "",
        "contact_point": (_get(org, "contact_point") or "") if org is not None else "",
        "lead_authority": (_get(org, "lead_authority") or "") if org is not None else "",
        "timezone": (_get(org, "timezone") or "") if org is not None else "",
    }
    reg_d = {
        "id": regime_id,
        "name": str(_get(regime, "name") or "") if regime is not None else "",
        "recipient": str(_get(regime, "recipient") or "") if regime is not None else "",
    }
    categories = [{"id": c, "label": CATEGORY_LABELS.get(c, (c, c))[0], "plain": CATEGORY_LABELS.get(c, (c, c))[1]}
                  for c in facts.categories]
    patterns = [{"id": p, "label": PATTERN_LABELS.get(p, (p, p))[0], "plain": PATTERN_LABELS.get(p, (p, p))[1]}
                for p in facts.patterns]
    dests = [{"vendor": d.vendor, "region": d.region, "jurisdiction": d.jurisdiction,
              "residency_violation": d.residency_violation, "data_subjects": d.data_subjects, "records": d.records}
             for d in facts.destinations]
    steps = [{"id": sid, "title": title, "at": _iso(at)} for sid, title, at in facts.steps_done]
    dl_rows = _deadline_rows(deadlines, regime_id, now)
    ctx: dict[str, Any] = {
        "kind": kind,
        "title": NOTICE_KINDS[kind].title,
        "generated_at": _iso(now),
        "regime": reg_d,
        "org": org_d,
        "incident": {"id": facts.incident_id, "title": facts.title, "status": facts.status,
                     "severity": facts.severity, "opened_at": _iso(facts.opened_at)},
        "times": {**{k: _iso(v) for k, v in facts.clock_events.items()},
                  "first_seen": _iso(facts.first_seen), "last_seen": _iso(facts.last_seen),
                  "logged": facts.times_logged},
        "counts": {"findings": facts.findings, "records": facts.records, "data_subjects": facts.data_subjects},
        "categories": categories,
        "entities": list(facts.entities),
        "objects": list(facts.objects),
        "object_fields": list(facts.fields),
        "destinations": dests,
        "patterns": patterns,
        "systems": list(facts.systems),
        "subject_jurisdictions": list(facts.subject_jurisdictions),
        "subjects_by_jurisdiction": {k: int(v) for k, v in facts.subjects_by_jurisdiction.items()},
        "masked_examples": list(facts.masked_examples),
        "responder": resp,
        "steps_done": steps,
        "notices_sent": {k: _iso(v) for k, v in facts.notices_sent.items()},
        "deadlines": dl_rows,
    }
    items = _items(ctx, facts, regime, now)
    late = _lateness(facts, regime_id, dl_rows, now)
    ctx["late"] = late
    wanted = _required(kind, regime)
    if kind in ("gdpr-33",) and late["is_late"]:
        wanted.append(("delay_reasons", _ITEMS["delay_reasons"][0]))
    labels = {}
    for iid, label in wanted:
        labels[iid] = label
        if iid not in items:  # an item of a regime's own content list: a responder fact of that name
            items[iid] = resp.get(iid)
    ctx["items"] = {iid: items.get(iid) for iid, _ in wanted}
    for extra in ("aware", "occurred", "advice", "severity", "delay_reasons"):
        if extra not in ctx["items"] and _known(items.get(extra)):
            ctx["items"][extra] = items[extra]
            labels[extra] = _ITEMS[extra][0]
    ctx["labels"] = labels
    ctx["required"] = [iid for iid, _ in wanted]
    ctx["missing"] = [iid for iid, _ in wanted if not _known(ctx["items"][iid])]
    ctx["missing_help"] = [{"id": iid, "label": labels[iid],
                            "how": _ITEMS[iid][1] if iid in _ITEMS else f"responder fact {iid!r}"}
                           for iid in ctx["missing"]]
    return ctx


def _items(ctx: Mapping[str, Any], facts: IncidentFacts, regime: Any, now: datetime) -> dict[str, Any]:
    """Every item any notice can need, from the context (``None`` = unknown)."""
    resp = ctx["responder"]
    org = ctx["org"]

    def r(key: str) -> Any:
        v = resp.get(key)
        return v if _known(v) else None

    nature_parts = [p["label"] for p in ctx["patterns"]]
    dest_txt = [_dest_text(d) for d in ctx["destinations"]]
    nature = r("nature")
    if nature is None and nature_parts:
        nature = _sentence("; ".join(nature_parts) + (f" (destination: {'; '.join(dest_txt)})" if dest_txt else ""))
    plain = r("plain_description")
    if plain is None and ctx["patterns"]:
        plain = _sentence("; ".join(p["plain"] for p in ctx["patterns"]))
    measures = []
    if r("measures") is not None:
        measures.append(str(r("measures")))
    measures += [f"{s['title']} (done {_display_time(s['at'], org['timezone'])})" for s in ctx["steps_done"]]
    occurred = r("occurred")
    # Only times the logs themselves carry say when the breach happened: a scan time is when it
    # was found, and stated as "the breach happened" it would be invented ("Still unknown").
    if occurred is None and ctx["times"]["first_seen"] and ctx["times"]["logged"]:
        first, last = ctx["times"]["first_seen"], ctx["times"]["last_seen"]
        occurred = (f"between {_display_time(first, org['timezone'])} and {_display_time(last, org['timezone'])}"
                    if last and last != first else f"on {_display_time(first, org['timezone'])}")
    subjects = r("data_subjects")
    if subjects is None:
        # leakwatch's count of distinct identifying values, and never less than the responder's
        # per-country counts add up to (600 in US-CA is at least 600 in all).
        subjects = facts.total_subjects or None
    records = r("records")
    if records is None and facts.records > 0:
        records = facts.records
    cats = [c["label"] for c in ctx["categories"]]
    if r("data_categories") is not None:
        # What a responder recorded (health data no rule can see) belongs in the notice too,
        # not only when the findings have no category: HIPAA applies on it.
        given = r("data_categories")
        for text in (given if isinstance(given, list) else [given]):
            code = str(text).strip().lower()
            label = CATEGORY_LABELS[code][0] if code in CATEGORY_LABELS else str(text)
            if label not in cats:
                cats.append(label)
    return {
        "controller": org["name"] or None,
        # GDPR Art. 33 goes to the lead supervisory authority the config names (the regime only
        # says "lead supervisory authority"); other regimes name their own recipient.
        "recipient": (org["lead_authority"] if ctx["regime"]["id"] == "gdpr-33" else ctx["regime"]["recipient"]) or None,
        "contact_point": org["contact_point"] or None,
        "nature": nature,
        "plain_description": plain,
        "description": r("description"),
        "categories_of_data": cats or None,
        "categories_of_subjects": r("subject_categories"),
        "data_subjects_approx": subjects,
        "records_approx": records,
        "occurred": occurred,
        "aware": _display_time(ctx["times"].get("awareness"), org["timezone"]),
        "likely_consequences": r("likely_consequences"),
        "measures": measures or None,
        "delay_reasons": r("delay_reasons"),
        "advice": r("advice_to_subjects"),
        "suspected_malicious": _yes_no(resp.get("suspected_malicious")),
        "cross_border": _yes_no(resp.get("cross_border")),
        "initial_assessment": r("initial_assessment"),
        "severity": r("severity_assessment") or facts.severity or None,
        "impact": r("impact"),
        "indicators_of_compromise": r("indicators_of_compromise"),
        "root_cause": r("root_cause"),
    }


def _sentence(s: str) -> str:
    """Derived text as a sentence: capital first letter, final full stop."""
    s = s.strip()
    return (s[:1].upper() + s[1:] + ("" if s.endswith(".") else ".")) if s else s


def _yes_no(v: Any) -> Any:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return v if _known(v) else None


def _dest_text(d: Mapping[str, Any]) -> str:
    where = ", ".join(x for x in (d["region"] and f"region {d['region']}",
                                  d["jurisdiction"] and f"jurisdiction {d['jurisdiction']}") if x)
    s = (d["vendor"] or "unknown AI service") + (f" ({where})" if where else "")
    return s + (", outside the permitted jurisdictions" if d["residency_violation"] else "")


# Content item ids of playbooks/regimes.yaml that name an item of ours under another name.
CONTENT_ALIASES: Mapping[str, str] = {
    "categories": "categories_of_data", "approx_subjects": "data_subjects_approx",
    "approx_records": "records_approx", "cross_border_impact": "cross_border",
    "what_happened": "nature", "what_information": "categories_of_data",
    "what_we_are_doing": "measures", "what_you_can_do": "advice", "steps_for_individuals": "advice",
    "recommended_steps": "advice", "more_information": "contact_point", "breach_date": "occurred",
    "discovery_date": "aware", "timing": "occurred", "risks": "likely_consequences",
}

# A content item written as words rather than an id ("approximate number of residents"):
# matched by the words it contains, first match wins.
_CONTENT_WORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("contact",), "contact_point"),
    (("consequence", "harm", "risk"), "likely_consequences"),
    (("measure", "mitigat", "remedia", "steps taken"), "measures"),
    (("root cause", "cause"), "root_cause"),
    (("advice", "recommend", "can do", "protect themselves"), "advice"),
    (("number of record", "records"), "records_approx"),
    (("number", "how many", "count"), "data_subjects_approx"),
    (("categories of data subject", "categories of individual", "types of individual"), "categories_of_subjects"),
    (("categor", "type of data", "types of data", "kind of information", "personal information"), "categories_of_data"),
    (("date", "when", "time", "period"), "occurred"),
    (("nature", "description", "what happened", "circumstances"), "nature"),
    (("name of", "identity of", "entity", "organisation", "organization", "controller", "company"), "controller"),
)
_ID_LIKE = re.compile(r"[a-z][a-z0-9_]*\Z")


def _content_item(item: Any) -> tuple[str, str]:
    """``(item id, label)`` for one entry of a regime's content list: an id of ours, an alias
    (:data:`CONTENT_ALIASES`), another id (then a responder fact of that name), or words."""
    if isinstance(item, str):
        raw, label = item.strip(), None
    else:
        raw = str(_get(item, "id", "field", "name") or item).strip()
        label = _get(item, "label", "description")
    key = re.sub(r"[\s-]+", "_", raw.lower())
    target = CONTENT_ALIASES.get(key, key)
    if target in _ITEMS:
        return target, str(label or _ITEMS[target][0])
    if _ID_LIKE.match(raw):
        return key, str(label or key.replace("_", " "))
    words = raw.lower()
    for needles, t in _CONTENT_WORDS:
        if any(n in words for n in needles):
            return t, str(label or raw)
    return key, str(label or raw)


def _required(kind: str, regime: Any) -> list[tuple[str, str]]:
    content = _get(regime, "content") if regime is not None else None
    if kind == "generic" and content:
        out: dict[str, str] = {}
        for c in content if not isinstance(content, str) else [content]:
            iid, label = _content_item(c)
            out.setdefault(iid, label)
        out.setdefault("controller", _ITEMS["controller"][0])
        return list(out.items())
    return [(i, _ITEMS[i][0]) for i in NOTICE_KINDS[kind].required]


def _lateness(facts: IncidentFacts, regime_id: str | None, dl_rows: list[dict], now: datetime) -> dict:
    """Whether this notice comes after its first deadline (for GDPR Art. 33: 72 h after
    awareness when the regimes module gave no deadline)."""
    due: datetime | None = None
    for row in dl_rows:
        # A deadline whose notice went out in time is behind us: what follows it is information
        # given in phases (Art. 33(4)), not a late notification that owes reasons for a delay.
        if row["due"] and not row.get("met"):
            t = datetime.fromisoformat(row["due"])
            due = t if due is None else min(due, t)
    if due is None and regime_id in ("gdpr-33", "uk-gdpr") and not any(row.get("met") for row in dl_rows):
        due = facts.awareness + GDPR_NOTIFY_WITHIN
    is_late = bool(due and now > due)
    return {"is_late": is_late, "deadline": _iso(due), "by": format_delta(now - due) if is_late and due else None}


# --- rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeDraft:
    """A rendered notice. ``missing`` holds the ids of required items still unknown (also
    listed in the text's "Still unknown" section); ``context`` is what the template saw."""

    kind: str
    regime_id: str | None
    text: str
    format: str
    missing: tuple[str, ...]
    context: Mapping[str, Any]


def default_templates_dir() -> Path:
    """The shipped templates, ``playbooks/templates/`` at the top of the repository."""
    return Path(__file__).resolve().parents[3] / "playbooks" / "templates"


def _display_time(iso: str | None, tz: str = "") -> str | None:
    """``2025-03-04T09:15:00Z`` → ``2025-03-04 09:15 UTC`` (plus the organisation's zone)."""
    if not iso:
        return None
    t = datetime.fromisoformat(iso).astimezone(UTC)
    out = t.strftime("%Y-%m-%d %H:%M UTC")
    if tz:
        try:
            from zoneinfo import ZoneInfo

            local = t.astimezone(ZoneInfo(tz))
            out += local.strftime(f" ({'%Y-%m-%d ' if local.date() != t.date() else ''}%H:%M %Z)")
        except (KeyError, ValueError, OSError):
            pass  # the config loader already rejects unknown zones; never fail a notice on it
    return out


_MARKER = "Still unknown"


def _helpers(fmt: str, ctx: Mapping[str, Any]) -> dict[str, Callable[..., str]]:
    md = fmt == "md"

    def h1(t: str) -> str:
        return f"# {t}" if md else f"{t}\n{'=' * len(t)}"

    def h2(t: str) -> str:
        return f"## {t}" if md else f"{t}\n{'-' * len(t)}"

    def b(t: str) -> str:
        return f"**{t}**" if md else t

    def field(label: str, value: Any) -> str:
        """A "label: value" header line (a list item in Markdown, so lines do not run together)."""
        return f"- **{label}** {value}" if md else f"{label} {value}"

    def code(t: Any) -> str:
        """A literal value (masked previews are full of '*', which Markdown reads as emphasis)."""
        return f"`{t}`" if md else str(t)

    def li(t: Any) -> str:
        return f"- {t}" if md else f"  - {t}"

    def show(v: Any, unknown: str = "[STILL UNKNOWN]") -> str:
        if not _known(v):
            return unknown
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, (list, tuple)):
            return "; ".join(str(x) for x in v)
        return str(v)

    def item(iid: str) -> str:
        """The item's value as text, or a marker pointing at the Still unknown section."""
        return show(ctx["items"].get(iid) if iid in ctx["items"] else None)

    def when(iso: str | None) -> str:
        return _display_time(iso, ctx["org"]["timezone"]) or "[STILL UNKNOWN]"

    def still_unknown() -> str:
        if not ctx["missing_help"]:
            return ""
        lines = [h2(f"{_MARKER} (to be supplied; this draft does not guess them)"), ""]
        lines += [li(f"{m['label']}: {m['how']}") for m in ctx["missing_help"]]
        return "\n".join(lines)

    return {"h1": h1, "h2": h2, "b": b, "li": li, "show": show, "item": item, "when": when,
            "still_unknown": still_unknown, "field": field,
            "code": code}


def _template_error(path: str, line: int | None, what: str) -> PlaybookError:
    return PlaybookError(f"{path}" + (f":{line}" if line else "") + f": {what}")


def _render_line(exc: BaseException, filename: str | None) -> int | None:
    """The template line an exception was raised at (Jinja rewrites tracebacks so the
    template's frames carry its file name and line)."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if filename and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_notice(facts: IncidentFacts, kind: str, *, fmt: str = "md", regime: Any = None,
                  deadlines: list | None = None, now: datetime,
                  templates_dir: str | Path | None = None,
                  narrative: Mapping[str, str] | None = None) -> NoticeDraft:
    """Render the ``kind`` notice (a key of :data:`NOTICE_KINDS`) for an incident.

    ``fmt`` is ``md``, ``txt`` (plain text, no markup) or ``json``
    (``{"kind", "regime", "fields", "missing"}``). Templates are ``<kind>.<fmt>.j2`` or else
    ``<kind>.j2`` in ``templates_dir`` (default :func:`default_templates_dir`). Raises
    :class:`PlaybookError` naming file and line for a broken template, and
    :class:`UnmaskedValueError` when the result holds what looks like an unmasked personal value.

    ``narrative`` (optional) is a drafted account of the breach, e.g.
    :meth:`leakwatch.llm.summarize.Summary.narrative`: ``nature``, ``likely_consequences``,
    ``measures`` and ``source`` (who drafted it). Templates see it as ``narrative`` (``None``
    when not given); a template that does not place it gets it appended as a "Draft narrative"
    section (JSON: a ``narrative`` key). It fills no required item: a still-unknown item stays
    in "Still unknown" until a responder records it as a fact, after reviewing the draft.
    The guard checks it like the rest of the draft.
    """
    if fmt not in FORMATS:
        raise PlaybookError(f"unknown notice format {fmt!r} (formats: {', '.join(FORMATS)})")
    if kind not in NOTICE_KINDS:
        raise PlaybookError(f"unknown notice kind {kind!r} (kinds: {', '.join(NOTICE_KINDS)})")
    if isinstance(regime, str):
        regime_id: str | None = regime
        regime = None
    else:
        regime_id = (_get(regime, "id") if regime is not None else None) or NOTICE_KINDS[kind].regime
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ctx = notice_context(facts, regime_id=regime_id, deadlines=deadlines, now=now, kind=kind, regime=regime)
    ctx["narrative"] = _narrative(narrative)
    if fmt == "json":
        payload = {"kind": kind, "regime": regime_id, "fields": ctx["items"], "missing": ctx["missing"]}
        if ctx["narrative"] is not None:
            payload["narrative"] = ctx["narrative"]
        text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    else:
        text = _render_template(kind, fmt, ctx, Path(templates_dir) if templates_dir else default_templates_dir())
        if ctx["missing"] and _MARKER not in text:
            text = text.rstrip("\n") + "\n\n" + _helpers(fmt, ctx)["still_unknown"]() + "\n"
        if ctx["narrative"] is not None and not _placed(text, ctx["narrative"]):
            text = text.rstrip("\n") + "\n\n" + _narrative_section(fmt, ctx) + "\n"
    _guard(text, ctx, facts, regime, kind)
    return NoticeDraft(kind, regime_id, text, fmt, tuple(ctx["missing"]), ctx)


NARRATIVE_SECTIONS: tuple[tuple[str, str], ...] = (
    ("nature", "Nature of the breach (Art. 33(3)(a))"),
    ("likely_consequences", "Likely consequences (Art. 33(3)(c))"),
    ("measures", "Measures taken or proposed (Art. 33(3)(d))"),
)


def _narrative(narrative: Mapping[str, str] | None) -> dict[str, str] | None:
    """The narrative as plain strings (``None`` when none or empty)."""
    if narrative is None:
        return None
    out = {k: str(narrative.get(k) or "").strip() for k, _ in NARRATIVE_SECTIONS}
    if not any(out.values()):
        return None
    out["source"] = str(narrative.get("source") or "a draft").strip()
    return out


def _placed(text: str, narrative: Mapping[str, str]) -> bool:
    """Whether the template already put the narrative's sections into ``text``."""
    return all(v in text for k, v in narrative.items() if k != "source" and v)


def _narrative_section(fmt: str, ctx: Mapping[str, Any]) -> str:
    h = _helpers(fmt, ctx)
    n = ctx["narrative"]
    lines = [h["h2"]("Draft narrative (review before sending)"), "", f"Source: {n['source']}."]
    for key, label in NARRATIVE_SECTIONS:
        if n.get(key):
            lines += ["", h["b"](label), "", n[key]]
    return "\n".join(lines)


def _render_template(kind: str, fmt: str, ctx: Mapping[str, Any], tdir: Path) -> str:
    name = next((n for n in (f"{kind}.{fmt}.j2", f"{kind}.j2") if (tdir / n).is_file()), None)
    if name is None:
        raise PlaybookError(f"{tdir / f'{kind}.j2'}: no template for notice kind {kind!r}")
    env = jinja2.sandbox.SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(tdir)), undefined=jinja2.StrictUndefined, autoescape=False,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    helpers = _helpers(fmt, ctx)
    env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
    env.filters.update({name: helpers[name] for name in ("code", "show", "when")})  # also as filters
    path = str(tdir / name)
    try:
        template = env.get_template(name)
    except jinja2.TemplateSyntaxError as e:
        raise _template_error(e.filename or path, e.lineno, f"template syntax error: {e.message}") from None
    except (jinja2.TemplateError, OSError, UnicodeDecodeError) as e:
        raise _template_error(path, None, f"cannot load the template: {e}") from None
    try:
        text = template.render(**ctx, **helpers, format=fmt)
    except jinja2.TemplateSyntaxError as e:  # an {% include %}d template
        raise _template_error(e.filename or path, e.lineno, f"template syntax error: {e.message}") from None
    except jinja2.UndefinedError as e:
        raise _template_error(path, _render_line(e, template.filename), f"template error: {e.message}") from None
    except jinja2.exceptions.SecurityError as e:
        raise _template_error(path, _render_line(e, template.filename), f"not allowed in a template: {e}") from None
    except (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError,
            MemoryError, RecursionError) as e:
        # A template is the organisation's file: whatever its expressions raise ({{ 1/0 }}, a
        # range the sandbox finds too long) is its mistake, named with its line, not a crash.
        raise _template_error(path, _render_line(e, template.filename),
                              f"template error: {type(e).__name__}: {e}") from None
    # Blank runs left by false {% if %}s: at most one empty line in a row.
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def _exempt_spans(text: str, values: Iterable[str]) -> list[tuple[int, int]]:
    """Where the organisation's own config text (and its JSON-escaped form) sits in ``text``."""
    spans = []
    for v in values:
        if not v:
            continue
        for variant in {v, json.dumps(v, ensure_ascii=False)[1:-1]}:
            i = text.find(variant)
            while i >= 0:
                spans.append((i, i + len(variant)))
                i = text.find(variant, i + 1)
    return spans


def _substring_of(raw: str) -> Callable[[str], bool]:
    return lambda v: raw in v


def _guard(text: str, ctx: Mapping[str, Any], facts: IncidentFacts, regime: Any, kind: str) -> None:
    """Raise :class:`UnmaskedValueError` when ``text`` holds what looks like a raw value.

    Two passes: this module's patterns (e-mail, card-like run, NINO, SSN, IBAN, AI keys; no
    validator, so a near miss is refused too), then the shipped detection rules with their
    validators (:mod:`leakwatch.incidents.notices_guard`, the check responder facts get on
    entry). Text of the organisation's config and of the regime is exempt in both.
    """
    org = ctx["org"]
    own = [org["name"], org["contact_point"], org["lead_authority"], ctx["regime"]["name"], ctx["regime"]["recipient"]]
    allowed = _config_values(*own)
    facts_json = json.dumps({k: v for k, v in ctx.items() if k not in ("responder", "items", "org", "regime")},
                            ensure_ascii=False)
    # (kind, preview, "is it in this text?"): the raw value stays in this frame, never in a message.
    hits = [(k, mask(raw.encode()), _substring_of(raw))
            for k, rx, mask in _GUARDS for raw in (m.group() for m in rx.finditer(text)) if raw not in allowed]
    if not hits:
        from leakwatch.incidents.notices_guard import raw_values_in

        spans = _exempt_spans(text, own)
        found = [(e, o) for e, o in raw_values_in(text) if not any(a <= o < b for a, b in spans)]
        if not found:
            return
        entity = found[0][0]
        hits = [(entity, f"at character {found[0][1]}",
                 lambda v, entity=entity: any(e == entity for e, _ in raw_values_in(v)))]
    kind_name, preview, contains = hits[0]
    source = "the template"
    sources = [(f"responder fact {k!r}", v) for k, v in ctx["responder"].items()]
    sources += [(f"the drafted narrative ({k})", v) for k, v in (ctx.get("narrative") or {}).items()]
    for where, v in sources:
        if isinstance(v, str) and contains(v):
            source = where
            break
    else:
        if contains(facts_json):
            source = "the incident facts"
    raise UnmaskedValueError(
        f"notice {kind} for incident {facts.incident_id}: the draft holds what looks like an unmasked "
        f"{kind_name} ({preview}), from {source}; no draft was produced. Mask or remove it and render again."
    )


def default_kind(regime_id: str) -> str:
    """The notice kind drafted for a regime when none is asked for: its own kind when there is
    one, the Art. 33 notice for UK GDPR (same content; the recipient comes from the regime), the
    early warning for NIS2, else the generic notice."""
    if regime_id in NOTICE_KINDS:
        return regime_id
    if regime_id == "uk-gdpr":
        return "gdpr-33"
    if regime_id == "nis2":
        return "nis2-early-warning"
    return "generic"
