"""Grounded incident summaries from a local model, with the deterministic template beside them.

Two kinds:

- ``responder``: five sentences for the incident team (what happened and where the data went;
  how many data subjects and records; data categories; what was done; the next deadline);
- ``art33``: the narrative sections of a GDPR Art. 33 notice (nature of the breach, likely
  consequences, measures taken or proposed) that :func:`leakwatch.incidents.notices.render_notice`
  embeds through its ``narrative`` argument.

How a summary is made, and why:

1. **Facts only.** The prompt is built from :class:`~leakwatch.incidents.facts.IncidentFacts`
   (counts, categories, fields, destinations, masked previews, times, deadlines, responder text);
   a raw value has no field to travel in. The prompt is still run through the raw-value guards
   first, and the model is not run when they find something.
2. **One question per part.** A 135M-parameter model answers "one sentence: how many data
   subjects and records?" far more reliably than "write five sentences covering …" (tried on the
   default model: the long instruction made it copy the fact list or loop). Every part repeats
   the whole facts block as the system message, so llama.cpp reuses its KV cache and only the
   short question is new after the first part (first part 600-900 prompt tokens, later ~40).
3. **Grounding check.** Every number (also written out: "twelve hundred"), date, time, weekday,
   month, vendor, region/country and digit-bearing identifier ("GPT-4", "eu-west-2") in the
   output must also be in the facts block the model was given; otherwise the summary is
   ``verified=False``, the problems say what was invented, and the template text is shown.
4. **Raw-value guard while streaming.** Tokens are passed on only once a word is complete, and a
   trailing run of digit groups (a card or phone number being written) is held back until the
   run ends; each new stretch is checked with the notice guards (regexes and the shipped
   detection rules) before it is passed on. A hit stops that part: it ends in ``[withheld: …]``.
5. **Temperature 0 and a fixed seed**: the same facts give the same text (on the same build
   and thread count: float sums in another order can flip a near tie).

Without llama-cpp-python or a model file the template summary is returned with ``used_model``
false and a problem that says how to install a model.
"""
from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leakwatch.incidents.facts import IncidentFacts

KINDS = ("responder", "art33")

#: Art. 33 narrative sections: (key, heading).
ART33_SECTIONS: tuple[tuple[str, str], ...] = (
    ("nature", "Nature of the breach"),
    ("likely_consequences", "Likely consequences"),
    ("measures", "Measures taken or proposed"),
)

RESPONDER_PARTS = ("what", "scale", "data", "done", "deadline")


@dataclass(frozen=True)
class Summary:
    """One generated summary and everything needed to judge it.

    ``text`` is the model's text as streamed (after the raw-value guard), ``""`` when no model
    ran. ``verified`` is true only when a model ran to the end, every checked claim (number,
    date, time, vendor, place, region, identifier) is in the facts, and each part states its key
    fact (the vendor, the number of data subjects, the deadline's date); ``problems`` says why
    not (invented or missing claims, a withheld value, cancelled, no model and how to install one). ``template_text`` is the deterministic summary from the same facts,
    always present. ``parts``/``template_parts`` hold the same texts per sentence (responder)
    or per section (art33: ``nature``, ``likely_consequences``, ``measures``).
    """

    kind: str
    text: str
    verified: bool
    problems: tuple[str, ...]
    template_text: str
    parts: Mapping[str, str] = field(default_factory=dict)
    template_parts: Mapping[str, str] = field(default_factory=dict)
    used_model: bool = False
    model: str | None = None            # file name of the model
    backend: str = "none"                # CPU, CUDA, … or none
    gpu_layers: int = 0
    cancelled: bool = False
    prompt_tokens: int = 0               # of the first part (the facts block + its question)
    tokens: int = 0                      # generated, all parts
    ttft_s: float | None = None          # start of generation → first token (includes the prompt pass)
    tokens_per_s: float | None = None    # generation speed after the first token
    total_s: float = 0.0

    @property
    def label(self) -> str:
        """``VERIFIED``, ``UNVERIFIED`` (model text that failed a check, or was cancelled) or
        ``TEMPLATE`` (no model ran)."""
        if not self.used_model:
            return "TEMPLATE"
        return "VERIFIED" if self.verified else "UNVERIFIED"

    @property
    def best_text(self) -> str:
        """What to rely on: the model's text when verified, else the template's."""
        return self.text if self.verified else self.template_text

    def narrative(self) -> dict[str, str]:
        """For ``render_notice(..., narrative=...)`` (kind ``art33``): each section's text, the
        model's when verified, else the template's, plus ``source`` saying which."""
        if self.kind != "art33":
            raise ValueError("narrative() is for art33 summaries")
        parts = self.parts if self.verified else self.template_parts
        out = {k: parts.get(k, "") for k, _ in ART33_SECTIONS}
        out["source"] = (f"drafted by the local model {self.model}, checked against the incident facts"
                         if self.verified else "drafted from the incident facts by leakwatch's template")
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``label`` included)."""
        d = {k: (dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v)
             for k, v in self.__dict__.items()}
        d["label"] = self.label
        return d


# --- formatting facts ------------------------------------------------------------------------------


def _num(n: int) -> str:
    return f"{n:,}"


def _time(t: datetime | None, tz: str = "") -> str:
    """``2025-03-04 09:15 UTC`` (plus ``(10:15 CET)`` in the organisation's zone)."""
    if t is None:
        return "unknown"
    u = t.astimezone(UTC)
    out = u.strftime("%Y-%m-%d %H:%M UTC")
    if tz:
        try:
            from zoneinfo import ZoneInfo

            local = u.astimezone(ZoneInfo(tz))
            out += local.strftime(f" ({'%Y-%m-%d ' if local.date() != u.date() else ''}%H:%M %Z)")
        except (KeyError, ValueError, OSError):
            pass
    return out


def _tz(facts: IncidentFacts) -> str:
    return str(getattr(facts.org, "timezone", "") or "")


def _labels(facts: IncidentFacts) -> tuple[list[str], list[str]]:
    """(pattern labels, category labels) in words an authority reads."""
    from leakwatch.incidents.notices import CATEGORY_LABELS, PATTERN_LABELS

    pats = [PATTERN_LABELS.get(p, (p.replace("_", " "), p))[0] for p in facts.patterns]
    cats = [CATEGORY_LABELS.get(c, (c, c))[0] for c in facts.categories]
    return pats, cats


def _dest(d: Any) -> str:
    where = ", ".join(x for x in (d.region and f"region {d.region}", d.jurisdiction and f"jurisdiction {d.jurisdiction}") if x)
    s = (d.vendor or "an unknown AI service") + (f" ({where})" if where else "")
    return s + (", outside the permitted jurisdictions" if d.residency_violation else "")


def _dests(facts: IncidentFacts) -> str:
    return "; ".join(_dest(d) for d in facts.destinations)


@dataclass(frozen=True)
class _DeadlineFact:
    regime: str
    label: str
    due: datetime | None
    status: str
    basis: str
    applies: bool | None


def _deadline_facts(clocks: Iterable[Any]) -> list[_DeadlineFact]:
    out = []
    for rc in clocks or ():
        if rc.applies is False:
            continue
        for d in rc.deadlines:
            out.append(_DeadlineFact(rc.regime.name, d.label, d.due, d.status, d.basis, rc.applies))
    return out


def _next_deadline(dls: Sequence[_DeadlineFact]) -> _DeadlineFact | None:
    open_ = [d for d in dls if d.due is not None and d.status in ("pending", "overdue")]
    if not open_:
        return None
    # An applicable regime's deadline before an undecided one's; then the earliest.
    return min(open_, key=lambda d: (d.applies is not True, d.due))


def _deadline_text(d: _DeadlineFact, tz: str) -> str:
    state = {"overdue": "OVERDUE", "pending": "open", "met": "met"}.get(d.status, d.status)
    may = "" if d.applies else ", if the regime applies (not yet decided)"
    if d.due is None:
        return f"{d.regime}: {d.label}, no fixed time{may}"
    return f"{d.regime}: {d.label}, due {_time(d.due, tz)} ({state}){may}"


def facts_block(facts: IncidentFacts, clocks: Iterable[Any] = ()) -> str:
    """The FACTS section of the prompt: every fact a summary may use, one per line. The
    grounding check compares the output with exactly this text. Times are in UTC only: each
    time in two zones doubled the prompt's dates, and the 135M model mixed them up."""
    tz = ""
    pats, cats = _labels(facts)
    lines = [f"- Incident {facts.incident_id}: {facts.title}",
             f"- Severity: {facts.severity}. Status: {facts.status}."]
    if pats:
        lines.append("- What happened: " + "; ".join(pats) + ".")
    for d in facts.destinations:
        extra = f" It concerns {_num(d.data_subjects)} data subjects and {_num(d.records)} records." if d.data_subjects or d.records else ""
        lines.append(f"- The data went to: {_dest(d)}.{extra}")
    lines.append(f"- Data subjects (people affected): {_num(facts.data_subjects)}. Records: {_num(facts.records)}. "
                 f"Findings: {_num(facts.findings)}.")
    if facts.subjects_by_jurisdiction:
        lines.append("- Data subjects by jurisdiction: " + ", ".join(
            f"{k} {_num(int(v))}" for k, v in sorted(facts.subjects_by_jurisdiction.items())) + ".")
    elif facts.subject_jurisdictions:
        lines.append("- The data subjects live in: " + ", ".join(facts.subject_jurisdictions) + ".")
    if cats:
        lines.append("- Data categories: " + "; ".join(cats) + ".")
    if facts.fields:
        lines.append("- Salesforce fields: " + ", ".join(facts.fields) + ".")
    elif facts.objects:
        lines.append("- Salesforce objects: " + ", ".join(facts.objects) + ".")
    if facts.systems:
        lines.append("- Systems whose logs showed it: " + ", ".join(facts.systems) + ".")
    if facts.masked_examples:
        lines.append("- Masked examples (never unmask): " + ", ".join(facts.masked_examples) + ".")
    if facts.first_seen:
        lines.append(f"- First seen in the logs: {_time(facts.first_seen, tz)}. Last seen: {_time(facts.last_seen, tz)}.")
    lines.append(f"- The organisation became aware: {_time(facts.awareness, tz)}.")
    for sid, title, at in facts.steps_done:
        lines.append(f"- Done: {title} ({_time(at, tz)}).")
    resp = facts.responder or {}
    for key, label in (("nature", "Nature, in the responder's words"), ("likely_consequences", "Likely consequences"),
                       ("measures", "Measures"), ("subject_categories", "Categories of data subjects")):
        v = resp.get(key)
        if isinstance(v, str) and v.strip():
            lines.append(f"- {label}: {v.strip()}")
    for d in _deadline_facts(clocks):
        lines.append(f"- Deadline: {_deadline_text(d, tz)}.")
    return "\n".join(lines)


SYSTEM = (
    "You write incident summaries for a data protection team, in plain English. Use only the "
    "FACTS below. Copy numbers, dates, times, vendor names and regions exactly as they are "
    "written in the FACTS. Never add names, numbers, dates, places or companies that are not in "
    "the FACTS. Personal data in the examples is masked with '*'; never unmask it."
)


@dataclass(frozen=True)
class _Part:
    key: str
    heading: str          # art33 section heading, "" for responder sentences
    focus: str            # the facts this part is about, repeated next to the question
    question: str
    template: str         # the deterministic text of this part
    sentences: int = 1    # generation stops after this many sentences
    must: tuple[tuple[str, str], ...] = ()   # (claim kind, value) the part must state, e.g. ("number", 1240.0)


def _consequences_from(facts: IncidentFacts) -> list[str]:
    """Risks that follow from the data categories (a starting point for the responder's assessment)."""
    risk = {
        "contact": "phishing and unwanted contact", "identity": "impersonation",
        "national_id": "identity theft", "financial": "financial fraud",
        "credentials": "unauthorised access to accounts and systems",
        "special": "distress or discrimination from disclosure of sensitive data",
        "location": "unwanted contact at home", "network": "tracking of devices",
    }
    return list(dict.fromkeys(risk[c] for c in facts.categories if c in risk))


def _vendor_groups(facts: IncidentFacts) -> list[str]:
    """The vendor groups (:data:`VENDOR_NAMES`) of the incident's destinations."""
    out: list[str] = []
    for d in facts.destinations:
        if d.vendor:
            out += [g for g in sorted(extract_claims(d.vendor).vendors) if g not in out]
    return out


def _parts(facts: IncidentFacts, kind: str, clocks: Iterable[Any]) -> list[_Part]:
    tz = ""  # UTC, as in the facts block
    pats, cats = _labels(facts)
    what = "; ".join(pats) or facts.title
    dests = _dests(facts)
    vendors = ", ".join(dict.fromkeys(d.vendor for d in facts.destinations if d.vendor))
    vendor_must = tuple(("vendor", g) for g in _vendor_groups(facts)[:1])
    subjects_must = (("number", float(facts.data_subjects)),) if facts.data_subjects else ()
    juris = ", ".join(facts.subject_jurisdictions)
    cat_txt = "; ".join(cats) or "unknown"
    done = [f"{title} ({_time(at, tz)})" for _sid, title, at in facts.steps_done]
    resp = facts.responder or {}
    measures = str(resp.get("measures") or "").strip()
    consequences = str(resp.get("likely_consequences") or "").strip()
    if kind == "responder":
        nd = _next_deadline(_deadline_facts(clocks))
        dl_focus = _deadline_text(nd, tz) if nd else "no regulatory deadline is running"
        done_focus = "; ".join(done) or f"no step is recorded as done yet; status: {facts.status}"
        d = nd.due.astimezone(UTC) if nd else None
        return [
            _Part("what", "", f"what happened: {what}. The data went to {dests or 'an unknown AI service'}.",
                  "Write one sentence saying what happened and naming " + (f"the vendor {vendors}." if vendors else "where the data went."),
                  _sentence(f"Incident {facts.incident_id} ({facts.severity}, {facts.status}): {what}")
                  + (f" The data went to {dests}." if dests else ""), must=vendor_must),
            _Part("scale", "", f"data subjects: {_num(facts.data_subjects)}; records: {_num(facts.records)}.",
                  "Write one sentence giving the number of data subjects and the number of records.",
                  f"It concerns {_num(facts.data_subjects)} data subjects and {_num(facts.records)} records"
                  + (f", living in {juris}." if juris else "."), must=subjects_must),
            _Part("data", "", f"data categories: {cat_txt}.",
                  "Write one sentence listing the data categories.", f"Data categories: {cat_txt}."),
            _Part("done", "", f"done so far: {done_focus}.",
                  "Write one sentence saying what has been done so far.",
                  ("Done so far: " + "; ".join(done) + ".") if done else
                  f"No containment step is recorded as done yet (status {facts.status})."),
            _Part("deadline", "", f"next deadline: {dl_focus}.",
                  "Write one sentence giving the next deadline and its date.",
                  _sentence(f"Next deadline: {dl_focus}") if nd else "No regulatory deadline is running.",
                  must=(("date", (d.year, d.month, d.day)),) if d else ()),
        ]
    if kind != "art33":
        raise ValueError(f"unknown summary kind {kind!r}; one of {', '.join(KINDS)}")
    when = (f"between {_time(facts.first_seen, tz)} and {_time(facts.last_seen, tz)}"
            if facts.first_seen and facts.last_seen and facts.first_seen != facts.last_seen
            else f"on {_time(facts.first_seen, tz)}" if facts.first_seen else "")
    nature_t = (_sentence(what) + (f" The data went to {dests}." if dests else "")
                + f" Categories of personal data: {cat_txt}."
                + f" About {_num(facts.data_subjects)} data subjects and {_num(facts.records)} records are concerned."
                + (f" It happened {when}." if when else ""))
    risks = _consequences_from(facts)
    residency = [d for d in facts.destinations if d.residency_violation]
    cons_t = consequences or (
        ("Assessed from the data categories: risk of " + ", ".join(risks) + "." if risks else
         "The likely consequences are still to be assessed.")
        + (f" The data is held by {', '.join(dict.fromkeys(d.vendor or 'an unknown AI service' for d in residency))} "
           f"outside the permitted jurisdictions, where its deletion cannot be enforced directly." if residency else ""))
    meas = ([measures] if measures else []) + [f"Done: {d}." for d in done]
    meas_t = " ".join(_sentence(m) for m in meas) or "No measures are recorded yet."
    cons_focus = (f"data categories: {cat_txt}; " + (f"responder's assessment: {consequences}; " if consequences else "")
                  + ("the data went outside the permitted jurisdictions" if residency else
                     "the destination is in a permitted jurisdiction"))
    return [
        _Part("nature", "Nature of the breach",
              f"what happened: {what}; the data went to {dests or 'an unknown AI service'}; data categories: {cat_txt}; "
              f"data subjects: {_num(facts.data_subjects)}; records: {_num(facts.records)}.",
              "Write two sentences for the supervisory authority. First sentence: what happened, naming "
              + (f"the vendor {vendors}." if vendors else "where the data went.")
              + " Second sentence: the number of data subjects and the number of records.",
              nature_t, sentences=2, must=vendor_must + subjects_must),
        _Part("likely_consequences", "Likely consequences", cons_focus + ".",
              "Write two sentences, not a list, on the likely consequences of this breach for the data subjects.",
              cons_t, sentences=2),
        _Part("measures", "Measures taken or proposed",
              ("measures: " + "; ".join(meas) + ".") if meas else "no measure is recorded yet.",
              "Write two sentences, not a list, on the measures taken or proposed to address the breach.",
              meas_t, sentences=2),
    ]


def _sentence(s: str) -> str:
    s = s.strip()
    return (s[:1].upper() + s[1:] + ("" if s.endswith(".") else ".")) if s else s


def _join(kind: str, parts: Mapping[str, str], headings: Mapping[str, str]) -> str:
    if kind == "responder":
        return " ".join(parts.values())
    return "\n\n".join(f"{headings[k]}:\n{t}" for k, t in parts.items())


def template_summary(facts: IncidentFacts, kind: str = "responder", clocks: Iterable[Any] = ()) -> tuple[str, dict[str, str]]:
    """The deterministic summary of ``kind`` from the facts: ``(text, parts)``."""
    parts = _parts(facts, kind, list(clocks or ()))
    by_key = {p.key: p.template for p in parts}
    return _join(kind, by_key, {p.key: p.heading for p in parts}), by_key


def messages(facts: IncidentFacts, kind: str = "responder", clocks: Iterable[Any] = ()) -> list[list[dict[str, str]]]:
    """The chat messages of each part (system: instructions + FACTS; user: focus + question)."""
    clocks = list(clocks or ())
    system = f"{SYSTEM}\n\nFACTS\n{facts_block(facts, clocks)}"
    return [[{"role": "system", "content": system},
             {"role": "user", "content": f"Facts: {p.focus}\n{p.question}"}] for p in _parts(facts, kind, clocks)]


# --- grounding -------------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
     "december"), 1)}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_WEEKDAYS = {d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}
_MON = r"(?P<mon>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
_DATE_RES = (
    re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?:[T ](?P<H>\d{1,2}):(?P<M>\d{2})(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?"),
    re.compile(r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?(?: of)? " + _MON + r"(?:,? (?P<y>\d{4}))?\b", re.IGNORECASE),
    re.compile(r"\b" + _MON + r" (?P<d>\d{1,2})(?:st|nd|rd|th)?\b(?:,? (?P<y>\d{4}))?", re.IGNORECASE),
    re.compile(r"\b" + _MON + r",? (?P<y>\d{4})\b", re.IGNORECASE),
    re.compile(r"\b(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4}|\d{2})\b"),
)
_TIME_RE = re.compile(r"\b(?P<H>\d{1,2}):(?P<M>\d{2})(?::\d{2})?(?:\s*(?P<ap>[ap]m\b|[ap]\.m\.))?(?![\d])", re.IGNORECASE)
_TIME_AP_RE = re.compile(r"\b(?P<H>\d{1,2})\s*(?P<ap>[ap]m\b|[ap]\.m\.)", re.IGNORECASE)
_WEEKDAY_RE = re.compile(r"\b(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b", re.IGNORECASE)
_MONTH_WORD_RE = re.compile(r"\b(January|February|March|April|June|July|August|September|October|November|December)\b")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_]+(?:[-.,'][A-Za-z0-9_]+)*")
_NUMBER_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\.\d{3}){2,}|\d+(?:\.\d+)?")
_SUFFIXED_RE = re.compile(r"(?P<n>\d+)(?P<s>st|nd|rd|th|h|hrs?|k|m|x)", re.IGNORECASE)

_UNITS = {w: i for i, w in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
     "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"))}
_TENS = {w: 10 * i for i, w in enumerate(("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")) if w}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_VAGUE = {"dozens": (24, 99), "hundreds": (200, 999), "thousands": (2_000, 999_999), "millions": (2_000_000, 999_999_999)}

#: Vendor groups: any name of a group counts as naming that vendor. Names that are everyday words
#: ("Meta", "Llama", "Together") are matched only as written, capitalised.
VENDOR_NAMES: Mapping[str, tuple[str, ...]] = {
    "OpenAI": ("OpenAI", "Open AI", "ChatGPT", "GPT"),
    "Anthropic": ("Anthropic", "Claude"),
    "Google": ("Google", "Gemini", "Vertex AI", "Bard", "PaLM", "DeepMind"),
    "Microsoft": ("Microsoft", "Azure", "Copilot", "Bing"),
    "Amazon": ("Amazon", "AWS", "Bedrock"),
    "Mistral": ("Mistral",),
    "Cohere": ("Cohere",),
    "Groq": ("Groq",),
    "Together AI": ("Together AI", "TogetherAI"),
    "Fireworks AI": ("Fireworks AI", "Fireworks"),
    "DeepSeek": ("DeepSeek",),
    "Perplexity": ("Perplexity AI", "Perplexity"),
    "Hugging Face": ("Hugging Face", "HuggingFace"),
    "Meta": ("Meta", "Llama", "LLaMA"),
    "xAI": ("xAI", "Grok"),
    "IBM": ("IBM", "watsonx"),
    "Replicate": ("Replicate",),
    "Alibaba": ("Alibaba", "Qwen"),
}
_CASE_SENSITIVE = {"Meta", "Llama", "Fireworks", "Perplexity", "Replicate", "Bard", "Grok", "Gemini", "Claude", "Bing"}

#: Places a summary may name → the jurisdiction code they stand for. Two-letter codes are
#: matched only in capitals ("US", not the pronoun "us").
PLACE_NAMES: Mapping[str, tuple[str, ...]] = {
    "US": ("United States", "U.S.", "USA", "US", "America", "American"),
    "US-CA": ("California", "US-CA"),
    "EU": ("European Union", "Europe", "European", "EU"),
    "EEA": ("European Economic Area", "EEA"),
    "UK": ("United Kingdom", "U.K.", "UK", "Britain", "British", "England", "Scotland", "Wales"),
    "CH": ("Switzerland", "Swiss", "CH"),
    "CA": ("Canada", "Canadian"),
    "CN": ("China", "Chinese", "CN"),
    "IN": ("India", "Indian"),
    "JP": ("Japan", "Japanese", "JP"),
    "KR": ("South Korea", "Korea", "Korean"),
    "AU": ("Australia", "Australian", "AU"),
    "SG": ("Singapore",),
    "BR": ("Brazil", "Brazilian", "BR"),
    "MX": ("Mexico",),
    "HK": ("Hong Kong",),
    "IL": ("Israel",),
    "AE": ("United Arab Emirates", "UAE", "Dubai"),
    "ZA": ("South Africa",),
    "RU": ("Russia", "Russian"),
    "DE": ("Germany", "German", "Frankfurt", "Berlin"),
    "FR": ("France", "French", "Paris"),
    "IE": ("Ireland", "Irish", "Dublin"),
    "NL": ("Netherlands", "Dutch", "Amsterdam"),
    "IT": ("Italy", "Italian", "Milan"),
    "ES": ("Spain", "Spanish", "Madrid"),
    "SE": ("Sweden", "Swedish", "Stockholm"),
    "PL": ("Poland", "Polish", "Warsaw"),
    "NO": ("Norway", "Norwegian"),
    "Asia": ("Asia", "Asian"),
    "Africa": ("Africa", "African"),
}


def _name_re(name: str) -> re.Pattern[str]:
    flags = 0 if (name in _CASE_SENSITIVE or (len(name) <= 3 and name.isupper()) or "." in name) else re.IGNORECASE
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(name).replace(r"\ ", r"\s+") + r"(?![A-Za-z0-9])", flags)


_VENDOR_RES = [(group, _name_re(n)) for group, names in VENDOR_NAMES.items() for n in names]
_PLACE_RES = [(code, _name_re(n)) for code, names in PLACE_NAMES.items() for n in sorted(names, key=len, reverse=True)]


def _region_codes() -> set[str]:
    """Cloud region names of the shipped registry (us-east-1, westeurope, …): naming one is a claim."""
    try:
        from leakwatch.detect.egress import load_registry

        reg = load_registry()
    except Exception:  # noqa: BLE001 - a broken registry must not break summaries
        return set()
    codes = {r for table in reg.region_tables.values() for r in table}
    codes |= {ep.region for ep in reg.endpoints if ep.region}
    return {c.lower() for c in codes if len(c) >= 5}  # "us", "eu" are words; long codes are not


_REGIONS: set[str] | None = None
_REGIONS_LOCK = threading.Lock()


def _regions() -> set[str]:
    global _REGIONS
    with _REGIONS_LOCK:
        if _REGIONS is None:
            _REGIONS = _region_codes()
        return _REGIONS


@dataclass
class Claims:
    """What a text states that can be checked: numbers, dates, times, vendors, places, ids."""

    numbers: set[float] = field(default_factory=set)
    vague: set[str] = field(default_factory=set)             # "hundreds", "thousands"
    dates: set[tuple[int | None, int, int | None]] = field(default_factory=set)   # (year, month, day)
    times: set[tuple[int, int]] = field(default_factory=set)
    weekdays: set[int] = field(default_factory=set)
    vendors: set[str] = field(default_factory=set)
    places: set[str] = field(default_factory=set)
    regions: set[str] = field(default_factory=set)
    idents: set[str] = field(default_factory=set)            # tokens with letters and digits (GPT-4)
    ambiguous_dates: set[tuple] = field(default_factory=set)  # 04/03/2025: its possible (y, m, d) readings
    raw: dict[tuple[str, Any], str] = field(default_factory=dict)  # claim → as written, for messages


def _parse_number(tok: str) -> float | None:
    t = tok
    if re.fullmatch(r"\d{1,3}(?:\.\d{3}){2,}", t):  # 1.240.000 (European thousands)
        t = t.replace(".", "")
    t = t.replace(",", "")
    try:
        return float(t)
    except ValueError:
        return None


def _word_numbers(text: str) -> list[tuple[float, str]]:
    """Written-out numbers: "twelve hundred", "one thousand two hundred and forty", "forty-two".
    A lone "one" is skipped: it is far more often a pronoun ("one of the vendors") than a count."""
    words = re.findall(r"[A-Za-z]+|[^A-Za-z\s]+", text)
    out: list[tuple[float, str]] = []
    i = 0
    while i < len(words):
        w = words[i].lower()
        if w in _UNITS or w in _TENS or (w in _SCALES and i > 0 and words[i - 1].lower() == "a"):
            total, current, used = 0, 0, []
            j = i
            while j < len(words):
                x = words[j].lower()
                if x in _UNITS:
                    current += _UNITS[x]
                elif x in _TENS:
                    current += _TENS[x]
                elif x in _SCALES:
                    current = max(current, 1) * _SCALES[x]
                    if _SCALES[x] >= 1000:
                        total, current = total + current, 0
                elif x in ("and", "-") and used and j + 1 < len(words) and (
                        words[j + 1].lower() in _UNITS or words[j + 1].lower() in _TENS):
                    pass
                else:
                    break
                used.append(words[j])
                j += 1
            phrase = " ".join(used)
            if used and not (len(used) == 1 and used[0].lower() == "one"):
                out.append((float(total + current), phrase))
            i = max(j, i + 1)
        else:
            if w in _VAGUE:
                out.append((-1.0, w))
            i += 1
    return out


def extract_claims(text: str) -> Claims:
    """Every checkable claim in ``text``."""
    c = Claims()
    rest = text
    # Dates and times first; what they consumed is blanked so "2025-03-04" is not also 2025, 3, 4.
    for rx in _DATE_RES:
        for m in rx.finditer(rest):
            g = m.groupdict()
            y = int(g["y"]) if g.get("y") else None
            if y is not None and y < 100:
                y += 2000
            if "a" in g and g.get("a"):
                a, b = int(g["a"]), int(g["b"])  # 04/03/2025: day/month or month/day, either may be meant
                readings = tuple((y, mo, d) for mo, d in ((b, a), (a, b)) if 1 <= mo <= 12 and 1 <= d <= 31)
                if not readings:
                    continue
                c.ambiguous_dates.add(readings)
                c.raw[("date", readings)] = m.group()
            else:
                mo = int(g["m"]) if g.get("m") else _MONTHS[g["mon"].lower().rstrip(".")]
                d = int(g["d"]) if g.get("d") else None
                c.dates.add((y, mo, d))
                c.raw[("date", (y, mo, d))] = m.group()
            if g.get("H"):
                c.times.add((int(g["H"]), int(g["M"])))
                c.raw[("time", (int(g["H"]), int(g["M"])))] = m.group()
            rest = rest[:m.start()] + " " * (m.end() - m.start()) + rest[m.end():]
    for rx in (_TIME_RE, _TIME_AP_RE):
        for m in rx.finditer(rest):
            h, mi = int(m.group("H")), int(m.groupdict().get("M") or 0)
            ap = (m.group("ap") or "").lower().replace(".", "")
            if ap == "pm" and h < 12:
                h += 12
            elif ap == "am" and h == 12:
                h = 0
            if h < 24 and mi < 60:
                c.times.add((h, mi))
                c.raw[("time", (h, mi))] = m.group().strip()
                rest = rest[:m.start()] + " " * (m.end() - m.start()) + rest[m.end():]
    for m in _WEEKDAY_RE.finditer(rest):
        c.weekdays.add(_WEEKDAYS[m.group().lower()])
        c.raw[("weekday", _WEEKDAYS[m.group().lower()])] = m.group()
    for m in _MONTH_WORD_RE.finditer(rest):
        key = (None, _MONTHS[m.group().lower()], None)
        c.dates.add(key)
        c.raw[("date", key)] = m.group()
    for group, rx in _VENDOR_RES:
        for m in rx.finditer(rest):
            c.vendors.add(group)
            c.raw.setdefault(("vendor", group), m.group())
    for code, rx in _PLACE_RES:
        for m in rx.finditer(rest):
            c.places.add(code)
            c.raw.setdefault(("place", code), m.group())
    regions = _regions()
    for tok in _TOKEN_RE.findall(rest):
        low = tok.lower()
        if low in regions:
            c.regions.add(low)
            c.raw[("region", low)] = tok
            continue
        if not any(ch.isdigit() for ch in tok):
            continue
        if _NUMBER_RE.fullmatch(tok):
            v = _parse_number(tok)
            if v is not None:
                c.numbers.add(v)
                c.raw[("number", v)] = tok
            continue
        m = _SUFFIXED_RE.fullmatch(tok)
        if m:
            v = float(m.group("n")) * (1000 if m.group("s").lower() == "k" else 1)
            c.numbers.add(v)
            c.raw[("number", v)] = tok
            continue
        # Numbers glued to punctuation the token regex keeps ("1,240." is split already): a
        # token with letters and digits is an identifier (GPT-4, NIS2, eu-west-2).
        c.idents.add(low)
        c.raw[("ident", low)] = tok
    for v, phrase in _word_numbers(rest):
        if v < 0:
            c.vague.add(phrase)
        else:
            c.numbers.add(v)
            c.raw[("number", v)] = phrase
    return c


def _fact_times(facts: IncidentFacts, clocks: Iterable[Any]) -> list[datetime]:
    ts = [facts.opened_at, facts.first_seen, facts.last_seen, *facts.clock_events.values(),
          *(at for _s, _t, at in facts.steps_done), *facts.notices_sent.values()]
    ts += [d.due for d in _deadline_facts(clocks)]
    return [t for t in ts if t is not None]


def _grounds(facts: IncidentFacts, clocks: Iterable[Any], block: str) -> Claims:
    """What the facts allow: the claims of the facts block, plus each fact time's parts (in UTC
    and the organisation's zone) so that "4 March", "Tuesday" or "09:15" can be checked."""
    g = extract_claims(block)
    tz = _tz(facts)
    zones = [UTC]
    if tz:
        try:
            from zoneinfo import ZoneInfo

            zones.append(ZoneInfo(tz))
        except (KeyError, ValueError, OSError):
            pass
    for t in _fact_times(facts, clocks):
        for z in zones:
            lt = t.astimezone(z)
            g.dates |= {(lt.year, lt.month, lt.day), (None, lt.month, lt.day), (lt.year, lt.month, None),
                        (None, lt.month, None)}
            g.times.add((lt.hour, lt.minute))
            g.weekdays.add(lt.weekday())
            g.numbers.add(float(lt.year))
    if "US-CA" in g.places:
        g.places.add("US")
    return g


def _vague_ok(word: str, numbers: set[float]) -> bool:
    lo, hi = _VAGUE[word]
    return any(lo <= n <= hi for n in numbers)


def check_grounding(text: str, facts: IncidentFacts, clocks: Iterable[Any] = (), *, block: str | None = None) -> list[str]:
    """Claims in ``text`` that are not in the facts, as messages (empty: grounded).

    ``block`` is the facts block the model saw (default: :func:`facts_block` of ``facts``)."""
    clocks = list(clocks or ())
    g = _grounds(facts, clocks, block if block is not None else facts_block(facts, clocks))
    c = extract_claims(text)
    out: list[str] = []
    for v in sorted(c.numbers - g.numbers):
        out.append(f"number {c.raw.get(('number', v), v)!r} is not in the facts")
    for w in sorted(c.vague):
        if not _vague_ok(w, g.numbers):
            out.append(f"{w!r} does not match any count in the facts")
    for d in sorted(c.dates - g.dates, key=lambda x: (x[0] or 0, x[1], x[2] or 0)):
        out.append(f"date {c.raw.get(('date', d), d)!r} is not in the facts")
    for readings in c.ambiguous_dates:
        if not any(r in g.dates for r in readings):
            out.append(f"date {c.raw.get(('date', readings), readings)!r} is not in the facts")
    for t in sorted(c.times - g.times):
        out.append(f"time {c.raw.get(('time', t), t)!r} is not in the facts")
    for w in sorted(c.weekdays - g.weekdays):
        out.append(f"weekday {c.raw.get(('weekday', w), w)!r} is not a day of this incident")
    for v in sorted(c.vendors - g.vendors):
        out.append(f"vendor {c.raw.get(('vendor', v), v)!r} is not a destination of this incident")
    for p in sorted(c.places - g.places):
        out.append(f"place {c.raw.get(('place', p), p)!r} is not in the facts")
    for r in sorted(c.regions - g.regions):
        out.append(f"region {c.raw.get(('region', r), r)!r} is not in the facts")
    for i in sorted(c.idents - g.idents):
        out.append(f"{c.raw.get(('ident', i), i)!r} is not in the facts")
    return out


def missing_facts(part: _Part, text: str, facts: IncidentFacts) -> list[str]:
    """The key facts ``part`` must state but ``text`` does not (the vendor, the number of data
    subjects, the deadline's date): without them a grounded text can still be useless."""
    c = extract_claims(text)
    out = []
    for kind, value in part.must:
        if kind == "vendor" and value not in c.vendors:
            names = ", ".join(d.vendor for d in facts.destinations if d.vendor)
            out.append(f"{part.key}: does not name the vendor ({names})")
        elif kind == "number" and value not in c.numbers:
            out.append(f"{part.key}: does not give the number of data subjects ({_num(int(value))})")
        elif kind == "date":
            y, m, d = value
            said = c.dates | {r for rs in c.ambiguous_dates for r in rs}
            if (y, m, d) not in said and (None, m, d) not in said:
                out.append(f"{part.key}: does not give the deadline's date ({y:04d}-{m:02d}-{d:02d})")
    return out


# --- the raw-value guard -----------------------------------------------------------------------------


def raw_value_problems(text: str) -> list[str]:
    """What in ``text`` looks like an unmasked personal value or secret (kind and masked preview
    or position only; the value itself never goes into a message)."""
    from leakwatch.incidents.notices import find_unmasked
    from leakwatch.incidents.notices_guard import raw_values_in

    out = [f"looks like an unmasked {kind} ({preview})" for kind, preview in find_unmasked(text)]
    out += [f"looks like a raw {entity} at character {off}" for entity, off in raw_values_in(text)]
    return out


# A word that may be one group of a card, phone, IBAN or NINO being written ("4111", "+44",
# "AB", "DE89"): held back until the run of such words ends.
_GROUPISH = re.compile(r"[+(]?[A-Z0-9()+-]{1,8}\Z")


def _settled(text: str) -> int:
    """How much of the streamed ``text`` can be checked and passed on: everything but the word
    being written and a trailing run of digit-bearing groups."""
    cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t")) + 1
    if cut <= 0:
        return 0
    words = list(re.finditer(r"\S+", text[:cut]))
    start, has_digit = cut, False
    for m in reversed(words):
        if not _GROUPISH.match(m.group()):
            break
        start = m.start()
        has_digit = has_digit or any(ch.isdigit() for ch in m.group())
    return start if has_digit else cut


# A full stop that does not end a sentence: "Art. 33", "e.g. ", "U.S. ", an initial "J. ".
_NOT_AN_END = re.compile(r"(?:\b(?:Art|art|No|no|e\.g|i\.e|approx|Dr|Mr|Ms|Mrs|vs|St|Inc|Ltd|Co|U\.S|U\.K|etc)|\b[A-Z])\Z")
_END = re.compile(r"[.!?](?=\s)")


def _sentence_end(text: str, n: int) -> int | None:
    """Index just after the ``n``-th complete sentence of ``text`` (one followed by whitespace)."""
    count = 0
    for m in _END.finditer(text):
        if m.group() == "." and _NOT_AN_END.search(text[:m.start()]):
            continue
        count += 1
        if count == n:
            return m.end()
    return None


class _GuardedPart:
    """One part's tokens on their way to ``emit``: checked before they go, stopped at a hit or
    after ``sentences`` sentences (a small model otherwise keeps writing until max_tokens, and
    what it adds is where it starts to invent and repeat)."""

    def __init__(self, emit: Callable[[str], None], sentences: int = 0) -> None:
        self.raw = ""
        self.sent = 0
        self.emit = emit
        self.hit: str | None = None
        self.sentences = sentences
        self.complete = False

    @property
    def checked(self) -> str:
        """The model's text as passed on, without the withheld marker."""
        return self.raw[:self.sent]

    @property
    def marker(self) -> str:
        if not self.hit:
            return ""
        return ("" if not self.sent or self.raw[self.sent - 1].isspace() else " ") + f"[withheld: {self.hit}]"

    @property
    def text(self) -> str:
        """The part exactly as passed on (with the withheld marker when stopped)."""
        return self.checked + self.marker

    def feed(self, piece: str) -> bool:
        """Add a piece; False when this part is done (guard hit, or enough sentences)."""
        if self.hit or self.complete:
            return False
        if not self.raw:
            piece = piece.lstrip()
        self.raw += piece
        if self.sentences:
            end = _sentence_end(self.raw, self.sentences)
            if end is not None:
                self.raw = self.raw[:end]
                self.complete = True
                self._flush(len(self.raw.rstrip()))
                return False
        return self._flush(_settled(self.raw))

    def finish(self) -> None:
        """Check and pass on the rest (the end of the answer)."""
        if not self.hit:
            self.raw = self.raw.rstrip()
            self._flush(len(self.raw))
        if self.hit:
            self.emit(self.marker)

    def _flush(self, cut: int) -> bool:
        if cut <= self.sent:
            return True
        problems = raw_value_problems(self.raw[:cut])
        if problems:
            self.hit = problems[0]
            return False
        self.emit(self.raw[self.sent:cut])
        self.sent = cut
        return True


# --- generation ----------------------------------------------------------------------------------------


def _prompt_tokens(llm: Any, msgs: list[dict[str, str]]) -> int:
    """Tokens of ``msgs`` rendered with the model's chat template (as create_chat_completion does)."""
    text = "\n".join(m["content"] for m in msgs)
    tmpl = (getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template")
    if tmpl:
        import jinja2.sandbox

        # Only a count: when the template does not render here, the plain text is close enough.
        with contextlib.suppress(Exception):
            text = jinja2.sandbox.ImmutableSandboxedEnvironment().from_string(tmpl).render(
                messages=msgs, add_generation_prompt=True, bos_token="", eos_token="")
    return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


@contextlib.contextmanager
def _abortable(llm: Any, cancel: threading.Event | None):
    """While active, llama.cpp checks ``cancel`` between the nodes of its compute graph, so that a
    cancel during a long prompt pass (the first part's ~800 prompt tokens: seconds on a busy
    small CPU, with no token to check the flag at) stops it within one node. llama_decode then
    fails ("llama_decode returned 2"); llama-cpp-python drops the half-written KV cache cells on
    its next eval, so the model stays usable. The callback takes the GIL once per node, which is
    why it is used only around the prompt pass (until the first token), not for every token.
    Does nothing when this build or object has no such hook."""
    ctx = getattr(getattr(llm, "_ctx", None), "ctx", None)
    if cancel is None or ctx is None:
        yield
        return
    try:
        import logging

        import llama_cpp

        set_cb = llama_cpp.llama_set_abort_callback
    except (ImportError, AttributeError):
        yield
        return
    log = logging.getLogger("llama-cpp-python")   # llama.cpp's own log lines go through it
    level = log.level

    def check(_data: Any) -> bool:
        if not cancel.is_set():
            return False
        log.setLevel(logging.CRITICAL)   # no "decode: removing memory module entries" on stderr
        return True

    cb = llama_cpp.ggml_abort_callback(check)
    set_cb(ctx, cb, None)
    try:
        yield
    finally:
        set_cb(ctx, llama_cpp.ggml_abort_callback(), None)   # a NULL callback: no check per node
        log.setLevel(level)


def stream_summary(facts: IncidentFacts, config: Any = None, *, kind: str = "responder", clocks: Iterable[Any] | None = None,
                   regimes: Any = None, now: datetime | None = None, cancel: threading.Event | None = None,
                   on_token: Callable[[str], None] | None = None, env: Mapping[str, str] | None = None) -> Summary:
    """Generate the ``kind`` summary (``responder`` or ``art33``) of an incident with the local
    model, streaming text to ``on_token`` as it is checked, and return the :class:`Summary`.

    ``clocks`` are :func:`leakwatch.incidents.clocks.incident_clocks` results; when ``None`` they
    are computed from ``regimes`` (default: the shipped ones) at ``now`` (default: now). Setting
    ``cancel`` stops generation within one token (a prompt pass within one graph node); the
    summary then has ``cancelled`` true and is never verified. A cancel before or while the model
    loads (one native call, not interruptible) returns the template summary as soon as the load
    ends: ``cancelled`` true, ``used_model`` false. The call always returns only after llama.cpp
    has returned: a caller that waits for it may then exit safely.
    Never raises for a missing or broken model or llama-cpp-python: the template is returned and
    ``problems`` says why. Safe to call from a worker thread; one generation runs at a time per
    loaded model. ``on_token`` receives exactly the pieces that make up ``Summary.text``.
    """
    import os

    from leakwatch.errors import LeakwatchError
    from leakwatch.llm.models import ModelError, ModelUnavailable, load_model

    if kind not in KINDS:
        raise ValueError(f"unknown summary kind {kind!r}; one of {', '.join(KINDS)}")
    if clocks is None:
        from leakwatch.incidents.clocks import incident_clocks
        from leakwatch.incidents.regimes import load_regimes

        clocks = incident_clocks(facts, regimes if regimes is not None else load_regimes(), now or datetime.now(UTC),
                                 only_applicable=True)
    clocks = list(clocks)
    parts = _parts(facts, kind, clocks)
    headings = {p.key: p.heading for p in parts}
    tmpl_parts = {p.key: p.template for p in parts}
    tmpl_text = _join(kind, tmpl_parts, headings)
    tmpl_problems = raw_value_problems(tmpl_text)
    if tmpl_problems:  # only responder text or a typed title can carry one; never show it
        tmpl_text = f"[template summary withheld: {tmpl_problems[0]}; fix the incident's facts]"
        tmpl_parts = {k: "" for k in tmpl_parts}
    base = {"kind": kind, "template_text": tmpl_text, "template_parts": tmpl_parts}
    t0 = time.perf_counter()
    block = facts_block(facts, clocks)
    msgs = messages(facts, kind, clocks)
    prompt_problems = raw_value_problems("\n".join([msgs[0][0]["content"], *(m[1]["content"] for m in msgs)]))
    if prompt_problems:
        return Summary(text="", verified=False,
                       problems=(f"the model was not run: the facts hold what {prompt_problems[0]}",), **base)
    cancelled_early = Summary(text="", verified=False, cancelled=True,
                              problems=("cancelled before the model wrote anything; template used",), **base)
    if cancel is not None and cancel.is_set():
        return cancelled_early
    try:
        # Loading is one native call that cannot be stopped: a cancel during it is seen below.
        model = load_model(config, os.environ if env is None else env)
    except ModelUnavailable as e:
        return Summary(text="", verified=False, problems=(f"template used: {e}; {e.hint}",), **base)
    except ModelError as e:
        return Summary(text="", verified=False, problems=(f"template used: {e}",), **base)
    if cancel is not None and cancel.is_set():
        return cancelled_early
    llm_cfg = getattr(config, "llm", None)
    max_tokens = getattr(llm_cfg, "max_tokens", 96)
    temperature = getattr(llm_cfg, "temperature", 0.0)
    seed = getattr(llm_cfg, "seed", 42)
    emit = on_token or (lambda s: None)
    out_parts: dict[str, str] = {}
    checked: dict[str, str] = {}   # the same without withheld markers: what the grounding check reads
    problems: list[str] = []
    tokens, first_at, cancelled, prompt_tokens = 0, None, False, 0
    gen_start = time.perf_counter()
    guarded: _GuardedPart | None = None
    part = parts[0]
    with model.lock:
        try:
            prompt_tokens = _prompt_tokens(model.llm, msgs[0])
            for i, (part, msg) in enumerate(zip(parts, msgs, strict=True)):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                if i:
                    emit(" " if kind == "responder" else "\n\n")
                if part.heading:
                    emit(f"{part.heading}:\n")
                guarded = _GuardedPart(emit, part.sentences)
                stream = model.llm.create_chat_completion(
                    msg, stream=True, temperature=temperature, seed=seed, max_tokens=max_tokens,
                    repeat_penalty=1.0,  # a penalty would punish copying the facts' numbers exactly
                    stop=["\n"] if kind == "responder" else ["\n\n"])
                try:
                    with _abortable(model.llm, cancel):   # the prompt pass runs at the first next()
                        first = next(stream, None)
                    for chunk in itertools.chain([first] if first is not None else [], stream):
                        piece = chunk["choices"][0].get("delta", {}).get("content")
                        if cancel is not None and cancel.is_set():
                            cancelled = True
                            break
                        if not piece:
                            continue
                        tokens += 1
                        if first_at is None:
                            first_at = time.perf_counter()
                        if not guarded.feed(piece):
                            break
                finally:
                    stream.close()
                if not cancelled:
                    guarded.finish()
                out_parts[part.key] = guarded.text
                checked[part.key] = guarded.checked
                if guarded.hit:
                    problems.append(f"{part.key}: {guarded.hit}; the rest of it was withheld")
                if cancelled:
                    break
        except (ValueError, RuntimeError, LeakwatchError) as e:  # e.g. prompt longer than n_ctx
            if guarded is not None and part.key not in out_parts:   # keep text == what was streamed
                out_parts[part.key] = guarded.text
                checked[part.key] = guarded.checked
            if cancel is not None and cancel.is_set():   # llama_decode aborted by _abortable
                cancelled = True
            else:
                hint = "; raise [llm] n_ctx" if "context window" in str(e) else ""
                problems.append(f"the model failed: {e}{hint}")
    end = time.perf_counter()
    text = _join(kind, out_parts, headings)
    if cancelled:
        problems.append("cancelled before the end")
    for k, v in out_parts.items():
        if not v.strip():
            problems.append(f"{k}: the model wrote nothing")
    for part in parts:
        if part.key in checked:
            problems += missing_facts(part, checked[part.key], facts)
    problems += check_grounding(_join(kind, checked, headings), facts, clocks, block=block)
    gen_s = (end - first_at) if first_at is not None else None
    return Summary(
        text=text, verified=not problems and len(out_parts) == len(parts), problems=tuple(dict.fromkeys(problems)),
        parts=out_parts, used_model=True, model=model.path.name, backend=model.backend.name,
        gpu_layers=model.gpu_layers, cancelled=cancelled, prompt_tokens=prompt_tokens, tokens=tokens,
        ttft_s=(first_at - gen_start) if first_at is not None else None,
        tokens_per_s=((tokens - 1) / gen_s) if gen_s and tokens > 1 else None, total_s=end - t0, **base,
    )
