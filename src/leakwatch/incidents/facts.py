"""What an incident is, as every later step sees it: regimes decide on these facts, deadlines
count from its clock events, notice templates render them. Only counts, categories, names and
masked previews are in here: a raw value has no field to travel in, so it cannot reach a
regulator's notice or an LLM prompt.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Clock events an incident can have. ``awareness`` always exists (it defaults to the first
#: detection); the others are set by responders when they happen. ``notified:<regime id>`` and
#: ``done:<step id>`` events are derived from sent notices and finished playbook steps.
CLOCK_EVENTS: tuple[str, ...] = (
    "detection",       # leakwatch first stored a finding of the incident
    "awareness",       # the organisation became aware (GDPR/NIS2 "aware", CCPA/HIPAA "discovery")
    "classification",  # classified as major (DORA) / significant (NIS2)
    "materiality",     # determined material (SEC 8-K Item 1.05)
    "suspicion",       # reasonable grounds to suspect an eligible breach (Australia NDB)
    "assessment",      # assessed as notifiable (Singapore PDPA) / breach determined (PIPEDA)
)

STATUSES: tuple[str, ...] = ("detected", "triaged", "contained", "notified", "closed")

#: Data categories, from rule tags and entities; ``special`` = GDPR Art. 9 categories (health,
#: biometrics, …) and ``credentials`` rank an incident high on their own.
CATEGORIES: tuple[str, ...] = (
    "contact", "identity", "national_id", "financial", "credentials", "special", "location",
    "network", "salesforce_record", "other",
)


@dataclass(frozen=True)
class Destination:
    """Where the incident's data went (an AI vendor's endpoint), from the findings."""

    vendor: str | None
    region: str | None
    jurisdiction: str | None
    residency_violation: bool
    data_subjects: int = 0
    records: int = 0


@dataclass(frozen=True)
class IncidentFacts:
    """One incident, reduced to what regimes, playbooks and notices may use.

    Times are timezone-aware UTC ``datetime``s. ``responder`` holds facts a responder typed in
    (``likely_consequences``, ``measures``, ``significant``, ``material``, ``subjects.US-CA`` …):
    free text a person wrote, never a scanned value. ``org`` is the ``[organisation]`` config
    section (:class:`leakwatch.config.OrganisationConfig`).
    """

    incident_id: int
    title: str
    status: str
    severity: str
    opened_at: datetime
    clock_events: Mapping[str, datetime]          # always has "awareness" and "detection"
    first_seen: datetime | None = None            # earliest log time of its findings
    last_seen: datetime | None = None
    times_logged: bool = True                     # False: no finding's line had a time, first/last seen are scan times
    entities: tuple[str, ...] = ()                # e.g. EMAIL_ADDRESS, UK_NINO
    categories: tuple[str, ...] = ()              # from CATEGORIES
    objects: tuple[str, ...] = ()                 # Salesforce objects (Contact, Lead, …)
    fields: tuple[str, ...] = ()                  # Object.Field
    findings: int = 0
    records: int = 0                              # distinct log records (approximate records affected)
    data_subjects: int = 0                        # distinct keyed hashes of identifying values
    destinations: tuple[Destination, ...] = ()
    patterns: tuple[str, ...] = ()                # failure patterns of its alerts (P1_key_exposed, …)
    systems: tuple[str, ...] = ()                 # salesforce, mulesoft, heroku, api-gateway, cdn, application
    subject_jurisdictions: tuple[str, ...] = ()   # where its data subjects live (EU, UK, US-CA, …)
    subjects_by_jurisdiction: Mapping[str, int] = field(default_factory=dict)  # responder-given counts
    masked_examples: tuple[str, ...] = ()         # masked previews only (j***@e***.com)
    responder: Mapping[str, Any] = field(default_factory=dict)
    steps_done: tuple[tuple[str, str, datetime], ...] = ()   # (step id, title, done at)
    notices_sent: Mapping[str, datetime] = field(default_factory=dict)  # regime id -> when sent
    org: Any = None                               # leakwatch.config.OrganisationConfig

    @property
    def awareness(self) -> datetime:
        """When the organisation became aware (the clock start of most regimes)."""
        return self.clock_events["awareness"]

    @property
    def total_subjects(self) -> int:
        """Data subjects in all: leakwatch's count of distinct identifying values, or the
        responder's ``data_subjects`` or the sum of their ``subjects.XX`` counts when larger
        (the logs show a sample; the responder may know the whole table went)."""
        n = self.responder.get("data_subjects")
        given = n if isinstance(n, int) and not isinstance(n, bool) else 0
        # Never fewer than the responder's per-jurisdiction counts add up to (600 in US-CA is
        # at least 600 in all: HIPAA's "500 or more" for HHS).
        by_place = sum(int(v) for v in self.subjects_by_jurisdiction.values())
        return max(self.data_subjects, given, by_place)

    @property
    def responder_categories(self) -> tuple[str, ...]:
        """Data categories (codes of :data:`CATEGORIES`) a responder recorded as the fact
        ``data_categories`` (a list, or one text with commas): health data the rules cannot
        see is ``special``. Other words in it are notice text only."""
        raw = self.responder.get("data_categories")
        items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",") if raw is not None else ()
        return tuple(dict.fromkeys(c for c in (str(x).strip().lower() for x in items) if c in CATEGORIES))

    def subjects_in(self, jurisdiction: str) -> int | None:
        """Data subjects in ``jurisdiction``: the responder's count when given, else the total
        when the incident's subjects are all from there, else ``None`` (unknown)."""
        if jurisdiction in self.subjects_by_jurisdiction:
            return int(self.subjects_by_jurisdiction[jurisdiction])
        if self.subject_jurisdictions and set(self.subject_jurisdictions) == {jurisdiction}:
            return self.total_subjects
        return None
