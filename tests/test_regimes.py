"""Regimes as data: the shipped file, applicability of each regime (a positive and a negative case
for every one), the reasons given, and the errors a broken regimes file produces."""
from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leakwatch.config import OrganisationConfig
from leakwatch.errors import LeakwatchError, PlaybookError
from leakwatch.incidents.facts import CATEGORIES, CLOCK_EVENTS, IncidentFacts
from leakwatch.incidents.regimes import (
    Applicability,
    RegimeSet,
    applicability,
    default_regimes_path,
    evaluate,
    load_regimes,
    parse_condition,
    subject_jurisdictions,
)

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
SHIPPED_IDS = ["gdpr-33", "gdpr-34", "uk-gdpr", "nis2", "dora", "ca-1798.82", "hipaa", "sec-8k", "au-ndb",
               "sg-pdpa", "br-lgpd", "ca-pipeda"]


@pytest.fixture(scope="module")
def rs() -> RegimeSet:
    return load_regimes()


def org(**kw) -> OrganisationConfig:
    kw.setdefault("establishment", ("US",))
    kw.setdefault("customer_jurisdictions", ("US",))
    return OrganisationConfig(**kw)


def incident(o: OrganisationConfig | None, *, entities=(), categories=("contact",), responder=None,
             events=None, subjects=0, by_jur=None, jurisdictions=()) -> IncidentFacts:
    return IncidentFacts(
        incident_id=3, title="contact data sent to an AI endpoint", status="triaged", severity="high",
        opened_at=T0, clock_events={"detection": T0, "awareness": T0, **(events or {})},
        entities=tuple(entities), categories=tuple(categories), data_subjects=subjects,
        subjects_by_jurisdiction=by_jur or {}, subject_jurisdictions=tuple(jurisdictions),
        responder=responder or {}, org=o,
    )


def verdict(rs: RegimeSet, facts: IncidentFacts, rid: str) -> Applicability:
    (a,) = [a for a in applicability(rs, facts) if a.regime.id == rid]
    return a


# --- the shipped file --------------------------------------------------------------------------


def test_shipped_file_loads(rs):
    assert rs.path == default_regimes_path()
    assert [r.id for r in rs.regimes] == SHIPPED_IDS
    for r in rs.regimes:
        assert r.clock in CLOCK_EVENTS and r.deadlines and r.content and r.source_line
        assert r.name and r.recipient and r.legal_basis
    assert rs.get("gdpr-33").content == ("nature", "categories", "approx_subjects", "approx_records",
                                         "contact_point", "likely_consequences", "measures")
    assert [d.id for d in rs.get("nis2").deadlines] == ["early-warning", "notification", "final-report"]
    assert rs.get("sec-8k").timezone == "America/New_York"
    assert rs.get("br-lgpd").timezone == "America/Sao_Paulo"
    dora_initial = rs.get("dora").deadlines[0]
    assert dora_initial.earliest_of and [p.start for p in dora_initial.periods] == ["classification", "awareness"]
    for ent in ("ES_DNI", "ES_NIE", "NL_BSN", "FR_NIR", "IT_FISCAL_CODE", "DE_STEUER_ID", "PL_PESEL"):
        assert rs.entity_jurisdictions[ent] == "EU"
    assert rs.entity_jurisdictions["UK_NINO"] == "UK" and rs.entity_jurisdictions["US_SSN"] == "US"


def test_get_unknown_regime_lists_valid_ids(rs):
    with pytest.raises(PlaybookError) as e:
        rs.get("gdpr33")
    msg = str(e.value)
    assert "unknown regime 'gdpr33'" in msg and "did you mean 'gdpr-33'" in msg
    for rid in SHIPPED_IDS:
        assert rid in msg


def test_subject_jurisdictions_from_config_and_entities(rs):
    o = org(customer_jurisdictions=("EU", "US-CA"))
    got = subject_jurisdictions(["EMAIL_ADDRESS", "UK_NINO", "ES_DNI", "US_SSN"], o, rs)
    assert got == ("EU", "US-CA", "UK", "US")
    assert subject_jurisdictions(["UK_NINO"], None, rs.entity_jurisdictions) == ("UK",)
    assert subject_jurisdictions(["EMAIL_ADDRESS"], None, rs) == ()


# --- applicability: a positive and a negative case for each regime ---------------------------------


def test_gdpr_33(rs):
    # A US company whose findings include Spanish DNIs: data subjects in the EU.
    yes = verdict(rs, incident(org(), entities=["ES_DNI"]), "gdpr-33")
    assert yes.applies is True
    assert "data subjects in EU (ES_DNI found in the findings)" in yes.reasons
    est = verdict(rs, incident(org(establishment=("EU",))), "gdpr-33")
    assert est.applies is True and "the organisation is established in EU (organisation.establishment)" in est.reasons
    no = verdict(rs, incident(org(), entities=["US_SSN"]), "gdpr-33")
    assert no.applies is False
    assert "the organisation is not established in EEA (organisation.establishment: US)" in no.reasons
    assert "no data subjects in EEA (data subjects in: US)" in no.reasons


def test_gdpr_33_covers_eea_states(rs):
    assert verdict(rs, incident(org(customer_jurisdictions=("NO",))), "gdpr-33").applies is True
    assert verdict(rs, incident(org(customer_jurisdictions=("DE",))), "gdpr-33").applies is True
    assert verdict(rs, incident(org(customer_jurisdictions=("CH",))), "gdpr-33").applies is False


def test_gdpr_34(rs):
    eu = org(establishment=("EU",))
    yes = verdict(rs, incident(eu, responder={"high_risk": True}), "gdpr-34")
    assert yes.applies is True and "a responder recorded 'high_risk' as yes" in yes.reasons
    no = verdict(rs, incident(eu, responder={"high_risk": "no"}), "gdpr-34")
    assert no.applies is False and no.reasons == ("a responder recorded 'high_risk' as no",)
    assert verdict(rs, incident(org(), responder={"high_risk": True}), "gdpr-34").applies is False
    open_ = verdict(rs, incident(eu), "gdpr-34")
    assert open_.applies is None
    assert "undecided: no responder has recorded 'high_risk' yet" in open_.reasons
    # A value that is neither yes nor no (stored before facts were checked, or by hand) decides
    # nothing: "maybe" was read as yes.
    maybe = verdict(rs, incident(eu, responder={"high_risk": "maybe"}), "gdpr-34")
    assert maybe.applies is None
    assert "undecided: 'high_risk' is recorded as 'maybe', not as yes or no" in maybe.reasons


def test_uk_gdpr(rs):
    yes = verdict(rs, incident(org(establishment=("EU",), customer_jurisdictions=("EU",)), entities=["UK_NINO"]),
                  "uk-gdpr")
    assert yes.applies is True and yes.reasons == ("data subjects in UK (UK_NINO found in the findings)",)
    no = verdict(rs, incident(org(establishment=("EU",), customer_jurisdictions=("EU",))), "uk-gdpr")
    assert no.applies is False


def test_nis2(rs):
    yes = verdict(rs, incident(org(nis2_entity="essential"), responder={"significant": "yes"}), "nis2")
    assert yes.applies is True
    assert "the organisation is an essential entity under NIS2 (organisation.nis2_entity)" in yes.reasons
    no = verdict(rs, incident(org(nis2_entity="none"), responder={"significant": True}), "nis2")
    assert no.applies is False
    assert no.reasons == (("the organisation is not an essential or important entity under NIS2 "
                          "(organisation.nis2_entity = 'none')"),)
    # An important entity whose responders have not assessed significance yet: undecided, not "no".
    open_ = verdict(rs, incident(org(nis2_entity="important")), "nis2")
    assert open_.applies is None
    assert "undecided: no responder has recorded 'significant' yet" in open_.reasons
    assert "the organisation is an important entity under NIS2 (organisation.nis2_entity)" in open_.reasons


def test_dora(rs):
    fin = org(establishment=("EU",), dora_financial_entity=True)
    yes = verdict(rs, incident(fin, events={"classification": T0}), "dora")
    assert yes.applies is True and "classification was recorded at 2026-06-01 09:00 UTC" in yes.reasons
    no = verdict(rs, incident(org(establishment=("EU",)), events={"classification": T0}), "dora")
    assert no.applies is False
    assert no.reasons == (("the organisation is not a financial entity under DORA "
                          "(organisation.dora_financial_entity = false)"),)
    assert verdict(rs, incident(fin), "dora").applies is None      # not classified yet


def test_california_1798_82(rs):
    ca = org(customer_jurisdictions=("US-CA",))
    yes = verdict(rs, incident(ca, categories=("contact", "national_id"), entities=["US_SSN"]), "ca-1798.82")
    assert yes.applies is True
    assert "data subjects in US-CA (organisation.customer_jurisdictions)" in yes.reasons
    assert "the data includes national_id data" in yes.reasons
    no = verdict(rs, incident(ca, categories=("contact",)), "ca-1798.82")
    assert no.applies is False
    assert no.reasons == ("no national_id, financial, credentials or special data (categories: contact; where the logs "
                          "cannot show it, a responder records the fact data_categories, e.g. special)",)
    # Subjects somewhere in the US, state unknown: undecided, with the reason.
    us = verdict(rs, incident(org(), categories=("financial",)), "ca-1798.82")
    assert us.applies is None
    assert any("data subjects in US (organisation.customer_jurisdictions) may include US-CA" in r for r in us.reasons)


def test_hipaa(rs):
    yes = verdict(rs, incident(org(hipaa_covered_entity=True), categories=("special",)), "hipaa")
    assert yes.applies is True
    assert "the data includes special data" in yes.reasons
    no = verdict(rs, incident(org(hipaa_covered_entity=True), categories=("contact", "financial")), "hipaa")
    assert no.applies is False
    no2 = verdict(rs, incident(org(), categories=("special",)), "hipaa")
    assert no2.applies is False
    assert "the organisation is not a HIPAA covered entity or business associate " \
           "(organisation.hipaa_covered_entity = false)" in no2.reasons


def test_sec_8k(rs):
    reg = org(sec_registrant=True)
    yes = verdict(rs, incident(reg, events={"materiality": T0}), "sec-8k")
    assert yes.applies is True
    assert yes.reasons == ("the organisation is an SEC registrant (organisation.sec_registrant = true)",
                           "materiality was recorded at 2026-06-01 09:00 UTC")
    no = verdict(rs, incident(org(), events={"materiality": T0}), "sec-8k")
    assert no.applies is False
    assert verdict(rs, incident(reg, responder={"material": False}), "sec-8k").applies is False
    assert verdict(rs, incident(reg), "sec-8k").applies is None


def test_australia_ndb(rs):
    yes = verdict(rs, incident(org(customer_jurisdictions=("AU", "NZ"))), "au-ndb")
    assert yes.applies is True and yes.reasons == ("data subjects in AU (organisation.customer_jurisdictions)",)
    no = verdict(rs, incident(org(customer_jurisdictions=("NZ",))), "au-ndb")
    assert no.applies is False and no.reasons == ("no data subjects in AU (data subjects in: NZ)",)


def test_singapore_pdpa(rs):
    yes = verdict(rs, incident(org(), jurisdictions=("SG",)), "sg-pdpa")
    assert yes.applies is True and yes.reasons == ("data subjects in SG (recorded on the incident)",)
    assert verdict(rs, incident(org(), jurisdictions=("MY",)), "sg-pdpa").applies is False


def test_brazil_lgpd(rs):
    yes = verdict(rs, incident(org(), by_jur={"BR": 40}), "br-lgpd")
    assert yes.applies is True and "data subjects in BR (a responder counted 40)" in yes.reasons
    assert verdict(rs, incident(org(establishment=("BR",))), "br-lgpd").applies is True
    no = verdict(rs, incident(org(customer_jurisdictions=("AR",))), "br-lgpd")
    assert no.applies is False
    assert no.reasons == ("no data subjects in BR (data subjects in: AR)",
                          "the organisation is not established in BR (organisation.establishment: US)")


def test_canada_pipeda(rs):
    yes = verdict(rs, incident(org(customer_jurisdictions=("CA",))), "ca-pipeda")
    assert yes.applies is True
    # US-CA is California, not Canada.
    no = verdict(rs, incident(org(customer_jurisdictions=("US-CA",))), "ca-pipeda")
    assert no.applies is False


def test_every_regime_has_both_outcomes(rs):
    """A guard for the tests above: for each regime, one incident where it applies and one where
    it does not (so a condition that is always true or always false is caught)."""
    full = org(establishment=("EU", "BR"), customer_jurisdictions=("EU", "UK", "US-CA", "AU", "SG", "CA"),
               nis2_entity="essential", dora_financial_entity=True, hipaa_covered_entity=True, sec_registrant=True)
    everything = incident(full, categories=CATEGORIES, responder={"significant": True, "high_risk": True},
                          events={"classification": T0, "materiality": T0})
    nothing = incident(org(customer_jurisdictions=("NZ",)), categories=("contact",),
                       responder={"significant": False, "high_risk": False, "material": False, "major": False})
    assert {a.regime.id: a.applies for a in applicability(rs, everything)} == dict.fromkeys(SHIPPED_IDS, True)
    assert {a.regime.id: a.applies for a in applicability(rs, nothing)} == dict.fromkeys(SHIPPED_IDS, False)


def test_reasons_are_plain_sentences(rs):
    facts = incident(org(customer_jurisdictions=("US",), nis2_entity="important"), entities=["UK_NINO"])
    for a in applicability(rs, facts):
        assert a.reasons, a.regime.id
        for r in a.reasons:
            assert not re.search(r"Condition\(|None|\{|\}|\[|\]", r), (a.regime.id, r)
            assert r[0].islower() or r[0].isdigit()


def test_no_organisation_settings_is_undecided(rs):
    a = verdict(rs, incident(None), "sec-8k")
    assert a.applies is None and "undecided: no [organisation] settings are known" in a.reasons


def test_subject_counts_and_any_state(rs):
    cond = parse_condition({"subjects": {"in": "US-*", "gt": 500}}, "when")
    f = incident(org(), by_jur={"US-TX": 501, "US-CA": 20}, jurisdictions=("US-TX", "US-CA"))
    assert evaluate(cond, f, rs) == (True, ("501 data subjects in US-TX: more than 500",))
    f = incident(org(), by_jur={"US-TX": 500, "US-CA": 20}, jurisdictions=("US-TX", "US-CA"))
    assert evaluate(cond, f, rs)[0] is False
    f = incident(org(), jurisdictions=("US",), subjects=900)
    v, reasons = evaluate(cond, f, rs)
    assert v is None and "US (state not recorded)" in reasons[0]
    total = parse_condition({"subjects": {"ge": 500}}, "when")
    assert evaluate(total, incident(org(), subjects=500), rs) == (True, ("500 data subjects in total: at least 500",))
    ca = parse_condition({"subjects": {"in": "US-CA", "gt": 500}}, "when")
    # Every subject is Californian: the incident's own count is the Californian count.
    assert evaluate(ca, incident(org(), jurisdictions=("US-CA",), subjects=700), rs)[0] is True
    # No subject anywhere in the US: zero Californians, so decided (False), not unknown.
    assert evaluate(ca, incident(org(customer_jurisdictions=("EU",))), rs)[0] is False


def test_not_operator_keeps_unknown_unknown(rs):
    cond = parse_condition({"not": {"responder": "contained"}}, "x")
    assert evaluate(cond, incident(org()), rs)[0] is None
    assert evaluate(cond, incident(org(), responder={"contained": True}), rs)[0] is False


# --- bad input ---------------------------------------------------------------------------------

GOOD = """\
entity_jurisdictions:
  UK_NINO: UK
regimes:
  - id: test-regime
    name: Test regime
    recipient: an authority
    clock: awareness
    timezone: Europe/Brussels
    deadlines:
      - id: first
        label: first notice
        after: {hours: 24}
      - id: second
        label: second notice
        after: {months: 1}
        from: deadline:first
      - id: third
        label: third notice
        after: {business_days: 4, calendar: US}
    content: [nature, measures]
    applies_when:
      all:
        - subjects_in: [EU]
        - org: sec_registrant
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "regimes.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def fails(tmp_path: Path, text: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(PlaybookError) as e:
        load_regimes(p)
    assert isinstance(e.value, LeakwatchError)
    msg = str(e.value)
    assert msg.startswith(str(p)), msg
    return msg


def test_good_template_loads(tmp_path):
    rs = load_regimes(write(tmp_path, GOOD))
    r = rs.get("test-regime")
    assert [d.id for d in r.deadlines] == ["first", "second", "third"]
    assert r.deadlines[1].periods[0].start == "deadline:first"
    assert r.source_line == 4


@pytest.mark.parametrize(("old", "new", "where", "words"), [
    # missing field
    ("    recipient: an authority\n", "", ":4: regime 'test-regime': field 'recipient'", "missing (required)"),
    # unknown field, with did-you-mean
    ("    recipient: an", "    recpient: an", ":6: regime 'test-regime': field 'recpient'",
     "did you mean 'recipient'"),
    # unknown clock name
    ("    clock: awareness", "    clock: awarness", ":7: regime 'test-regime': field 'clock'",
     "unknown clock 'awarness' (did you mean 'awareness'?"),
    ("        from: deadline:first", "        from: discovery", ":16: regime 'test-regime': field 'deadlines[1].from'",
     "unknown clock 'discovery'"),
    # unknown condition operator
    ("        - subjects_in: [EU]", "        - subject_in: [EU]",
     ":23: regime 'test-regime': field 'applies_when.all[0].subject_in'",
     "unknown condition operator 'subject_in' (did you mean 'subjects_in'?"),
    # from: deadline:x that does not exist, or comes later (a cycle)
    ("        from: deadline:first", "        from: deadline:frist",
     ":16: regime 'test-regime': field 'deadlines[1].from'", "no deadline 'frist' in this regime (earlier deadlines: first)"),
    ("        from: deadline:first", "        from: deadline:third",
     ":16: regime 'test-regime': field 'deadlines[1].from'", "comes after it"),
    ("        from: deadline:first", "        from: deadline:second",
     ":16: regime 'test-regime': field 'deadlines[1].from'", "no cycles"),
    # negative / zero amounts
    ("after: {hours: 24}", "after: {hours: -24}", ":12: regime 'test-regime': field 'deadlines[0].after.hours'",
     "must be greater than 0, got -24"),
    ("after: {months: 1}", "after: {months: 0}", ":15: regime 'test-regime': field 'deadlines[1].after.months'",
     "must be greater than 0, got 0"),
    ("after: {hours: 24}", "after: {hours: 1.5}", ":12: regime 'test-regime': field 'deadlines[0].after.hours'",
     "expected a whole number > 0"),
    # amounts past any regulator's (and past the calendar: exit 70 before)
    ("after: {hours: 24}", "after: {hours: 100000000000}", ":12: regime 'test-regime': field 'deadlines[0].after.hours'",
     "longer than ten years"),
    ("after: {months: 1}", "after: {months: 200000}", ":15: regime 'test-regime': field 'deadlines[1].after.months'",
     "longer than ten years (at most 120)"),
    ("{business_days: 4, calendar: US}", "{business_days: 3000000, calendar: US}",
     ":19: regime 'test-regime': field 'deadlines[2].after.business_days'", "longer than ten years"),
    # unknown time zone
    ("    timezone: Europe/Brussels", "    timezone: Europe/Brusels", ":8: regime 'test-regime': field 'timezone'",
     "unknown time zone 'Europe/Brusels'; did you mean 'Europe/Brussels'?"),
    # unknown holiday calendar and subdivision
    ("calendar: US}", "calendar: XQ}", ":19: regime 'test-regime': field 'deadlines[2].after.calendar'",
     "unknown holiday calendar 'XQ'"),
    ("calendar: US}", "calendar: US, subdiv: ZZ}", ":19: regime 'test-regime': field 'deadlines[2].after.subdiv'",
     "unknown subdivision 'ZZ'"),
    ("{business_days: 4, calendar: US}", "{business_days: 4}",
     ":19: regime 'test-regime': field 'deadlines[2].after.calendar'", "missing (required with business_days)"),
    # other shapes
    ("after: {hours: 24}", "after: {hours: 24, days: 1}", ":12: regime 'test-regime': field 'deadlines[0].after.days'",
     "unknown field 'days'"),
    ("after: {hours: 24}", "after: {hours: 24, months: 1}", ":12: regime 'test-regime': field 'deadlines[0].after'",
     "exactly one of"),
    ("      - id: second", "      - id: first", ":13: regime 'test-regime': field 'deadlines[1].id'",
     "duplicate deadline id 'first'"),
    ("        - org: sec_registrant", "        - org: sec_registrar",
     ":24: regime 'test-regime': field 'applies_when.all[1].org'", "did you mean 'sec_registrant'"),
    ("        - org: sec_registrant", "        - category: [health]",
     ":24: regime 'test-regime': field 'applies_when.all[1].category[0]'", "unknown category 'health'"),
    ("        - subjects_in: [EU]", "        - subjects_in: [EU, NO]",
     ":23: regime 'test-regime': field 'applies_when.all[0].subjects_in[1]'", "quote the value"),
    ("        - org: sec_registrant", "        - clock: materialty",
     ":24: regime 'test-regime': field 'applies_when.all[1].clock'", "did you mean 'materiality'"),
    ("        - org: sec_registrant", "        - subjects: {in: US-CA, more: 500}",
     ":24: regime 'test-regime': field 'applies_when.all[1].subjects.more'", "unknown field 'more'"),
    ("        after: {months: 1}\n", "        after: {months: 1}\n        when: {responder: yes}\n",
     ":16: regime 'test-regime': field 'deadlines[1].when.responder'", "expected text, got boolean"),
    ("  UK_NINO: UK", "  UK_NINO: Britain", ":2: field 'entity_jurisdictions.UK_NINO'", "not a jurisdiction code"),
])
def test_bad_input_names_file_line_and_field(tmp_path, old, new, where, words):
    assert old in GOOD, old
    msg = fails(tmp_path, GOOD.replace(old, new, 1))
    assert where in msg, msg
    assert words in msg, msg


def test_bad_yaml_syntax_names_line(tmp_path):
    msg = fails(tmp_path, GOOD.replace("    name: Test regime", "    name: [Test regime", 1))
    assert "YAML syntax error" in msg
    assert re.search(r"regimes\.yaml:\d+: ", msg), msg


def test_duplicate_regime_and_every_problem_reported(tmp_path):
    second = GOOD.split("regimes:\n", 1)[1].replace("clock: awareness", "clock: awarenes")
    text = GOOD + second + GOOD.split("regimes:\n", 1)[1]
    msg = fails(tmp_path, text)
    lines = msg.splitlines()
    assert len(lines) == 2, msg
    assert "field 'clock': unknown clock 'awarenes'" in lines[0]
    assert "field 'id': duplicate id (first at line 4)" in lines[1]


def test_empty_file_and_missing_regimes(tmp_path):
    assert "the file is empty" in fails(tmp_path, "")
    msg = fails(tmp_path, "regims: []\n")
    assert ":1: field 'regims': unknown field 'regims' (did you mean 'regimes'?)" in msg
    assert "field 'regimes': missing or not a non-empty list" in msg


def test_earliest_of_shapes(tmp_path):
    ok = GOOD.replace("        after: {hours: 24}\n", "        earliest_of:\n"
                      "          - {hours: 4, from: classification}\n"
                      "          - {hours: 24, from: awareness}\n", 1)
    r = load_regimes(write(tmp_path, ok)).get("test-regime")
    assert [(p.unit, p.amount, p.start) for p in r.deadlines[0].periods] == \
        [("hours", 4, "classification"), ("hours", 24, "awareness")]
    bad = ok.replace("from: classification}", "from: clasification}")
    msg = fails(tmp_path, bad)
    assert "field 'deadlines[0].earliest_of[0].from'" in msg and "did you mean 'classification'" in msg
    both = ok.replace("        earliest_of:\n", "        after: {hours: 1}\n        earliest_of:\n", 1)
    assert "give either after or earliest_of" in fails(tmp_path, both)


def test_missing_path_is_a_playbook_error(tmp_path):
    with pytest.raises(PlaybookError, match="cannot read"):
        load_regimes(tmp_path / "absent.yaml")
