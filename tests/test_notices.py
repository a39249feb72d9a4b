"""Notice drafts: GDPR Art. 33 (each Art. 33(3) item, in md, txt and json), Art. 34, NIS2's three
reports, the generic notice with the shipped regimes, missing facts listed and never invented,
template errors with file and line, and the guard that keeps raw values out of every draft."""
from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from leakwatch.config import OrganisationConfig
from leakwatch.detect.mask import mask_card, mask_email, mask_national_id, mask_secret
from leakwatch.errors import PlaybookError
from leakwatch.incidents.facts import Destination, IncidentFacts
from leakwatch.incidents.notices import (
    NOTICE_KINDS,
    UnmaskedValueError,
    find_unmasked,
    notice_context,
    render_notice,
)

AWARE = datetime(2025, 3, 4, 9, 15, tzinfo=UTC)
SOON = AWARE + timedelta(hours=30)  # within GDPR's 72 h

# The raw values behind the incident's findings. They exist only here, as the originals of the
# masked previews the store keeps; no notice may contain any of them.
RAW_EMAIL = "jane.doe@example.com"
RAW_CARD = "4111111111111111"
RAW_NINO = "AB123456C"
RAW_KEY = "sk-proj-" + "T3stK3yN0tR34l" * 5
RAW = (RAW_EMAIL, RAW_CARD, "4111 1111 1111 1111", RAW_NINO, "AB 12 34 56 C", RAW_KEY, "jane.doe", "example.com")

ORG = OrganisationConfig(
    name="Acme Retail GmbH", timezone="Europe/Berlin", establishment=("EU",), customer_jurisdictions=("EU", "UK"),
    nis2_entity="important", contact_point="Dr. Eva Weber, Data Protection Officer, dpo@acme-retail.eu, +49 30 901820",
    lead_authority="Berliner Beauftragte für Datenschutz und Informationsfreiheit",
)
RESPONDER = {
    "likely_consequences": "Targeted phishing using customers' names and e-mail addresses; card fraud is unlikely "
                           "because only the last four digits of cards were in the prompts' context.",
    "measures": "Calls to the AI service were blocked at the egress proxy; the vendor was asked to delete the requests.",
    "subject_categories": "retail customers",
}


def incident(**kw) -> IncidentFacts:
    base: dict = dict(  # noqa: C408 - keyword form reads like the dataclass
        incident_id=42, title="Customer PII in prompts to api.openai.com", status="contained", severity="high",
        opened_at=AWARE - timedelta(minutes=5),
        clock_events={"awareness": AWARE, "detection": AWARE - timedelta(minutes=20)},
        first_seen=datetime(2025, 3, 1, 7, 0, tzinfo=UTC), last_seen=datetime(2025, 3, 4, 8, 41, tzinfo=UTC),
        entities=("EMAIL_ADDRESS", "CREDIT_CARD", "UK_NINO"), categories=("contact", "financial", "national_id"),
        objects=("Contact", "Case"), fields=("Contact.Email", "Case.Description"),
        findings=5120, records=3410, data_subjects=1240,
        destinations=(Destination("OpenAI", "us", "US", True, 1240, 3410),),
        patterns=("P3_prompt_pii",), systems=("salesforce",), subject_jurisdictions=("EU", "UK"),
        masked_examples=(mask_email(RAW_EMAIL.encode()), mask_card(RAW_CARD.encode()), mask_national_id(RAW_NINO.encode())),
        responder=dict(RESPONDER),
        steps_done=(("stop-flow", "Stop the data flow to the AI service", AWARE + timedelta(hours=3)),),
        org=ORG,
    )
    base.update(kw)
    return IncidentFacts(**base)


def assert_no_raw(text: str) -> None:
    for raw in RAW:
        assert raw not in text, raw
    digits = re.sub(r"\D", "", text)
    assert RAW_CARD not in digits


# --- GDPR Art. 33 ------------------------------------------------------------------------------


def test_masked_examples_are_masked():
    # The previews really are the project's masks of the raw values (and reveal little).
    assert incident().masked_examples == ("j***@e******.com", "************1111", "*******6C")


def test_gdpr33_markdown_has_every_art33_item():
    d = render_notice(incident(), "gdpr-33", now=SOON)
    t = d.text
    assert (d.kind, d.regime_id, d.format, d.missing) == ("gdpr-33", "gdpr-33", "md", ())
    assert t.startswith("# Personal data breach notification (GDPR Art. 33)")
    # (a) nature, categories and approximate numbers of data subjects and records
    assert "## 1. Nature of the breach (Art. 33(3)(a))" in t
    assert "Personal data sent inside prompts to an external AI service" in t
    assert "OpenAI (region us, jurisdiction US), outside the permitted jurisdictions" in t
    assert "Categories of personal data: contact data (e-mail addresses, phone numbers); financial data" in t
    assert "national identification numbers" in t
    assert "Categories of data subjects: retail customers" in t
    assert "Approximate number of data subjects: 1,240" in t
    assert "Approximate number of personal data records: 3,410" in t
    assert "Data fields concerned: Contact.Email, Case.Description" in t
    assert "`j***@e******.com`, `************1111`, `*******6C`" in t  # masked examples only, as code
    # (b) DPO / contact point
    assert "## 3. Contact point (Art. 33(3)(b))\n\nDr. Eva Weber, Data Protection Officer, dpo@acme-retail.eu" in t
    # (c) likely consequences, (d) measures taken (responder text and playbook steps done)
    assert "## 4. Likely consequences (Art. 33(3)(c))\n\nTargeted phishing" in t
    assert "## 5. Measures taken or proposed (Art. 33(3)(d))" in t
    assert "- Calls to the AI service were blocked at the egress proxy" in t
    assert "- Stop the data flow to the AI service (done 2025-03-04 12:15 UTC (13:15 CET))" in t
    # when it happened and when the organisation became aware, UTC plus the organisation's zone
    assert "The breach happened: between 2025-03-01 07:00 UTC (08:00 CET) and 2025-03-04 08:41 UTC (09:41 CET)" in t
    assert "We became aware: 2025-03-04 09:15 UTC (10:15 CET)" in t
    assert "- **To:** Berliner Beauftragte für Datenschutz" in t and "- **Controller:** Acme Retail GmbH" in t
    assert "Reasons for the delay" not in t and "Still unknown" not in t and "[STILL UNKNOWN]" not in t
    assert_no_raw(t)
    assert_no_raw(json.dumps(d.context))


def test_gdpr33_plain_text_has_the_items_and_no_markup():
    t = render_notice(incident(), "gdpr-33", fmt="txt", now=SOON).text
    assert t.startswith("Personal data breach notification (GDPR Art. 33)\n=================")
    for needle in ("Approximate number of data subjects: 1,240", "Approximate number of personal data records: 3,410",
                   "dpo@acme-retail.eu", "Targeted phishing", "Stop the data flow to the AI service",
                   "Categories of personal data: contact data", "We became aware: 2025-03-04 09:15 UTC",
                   "4. Likely consequences (Art. 33(3)(c))\n--------"):
        assert needle in t, needle
    assert "j***@e******.com, ************1111, *******6C" in t  # plain, no code spans
    bare = t.replace("j***@e******.com, ************1111, *******6C", "")
    assert "**" not in bare and "`" not in bare and not re.search(r"(?m)^#", t) and not re.search(r"(?m)^- ", t)
    assert_no_raw(t)


def test_gdpr33_json():
    d = render_notice(incident(), "gdpr-33", fmt="json", now=SOON)
    doc = json.loads(d.text)
    assert set(doc) == {"kind", "regime", "fields", "missing"}
    assert (doc["kind"], doc["regime"], doc["missing"]) == ("gdpr-33", "gdpr-33", [])
    f = doc["fields"]
    assert f["data_subjects_approx"] == 1240 and f["records_approx"] == 3410
    assert f["categories_of_subjects"] == "retail customers"
    assert f["contact_point"].startswith("Dr. Eva Weber") and f["likely_consequences"].startswith("Targeted phishing")
    assert "Stop the data flow to the AI service (done 2025-03-04 12:15 UTC (13:15 CET))" in f["measures"]
    assert f["categories_of_data"][0] == "contact data (e-mail addresses, phone numbers)"
    assert f["nature"].startswith("Personal data sent inside prompts")
    assert_no_raw(d.text)


def test_missing_facts_are_listed_not_invented():
    org = dataclasses.replace(ORG, contact_point="")
    f = incident(org=org, responder={}, steps_done=(), data_subjects=0)
    d = render_notice(f, "gdpr-33", now=SOON)
    assert set(d.missing) == {"contact_point", "likely_consequences", "measures", "categories_of_subjects",
                              "data_subjects_approx"}
    t = d.text
    section = t.split("## Still unknown", 1)[1].split("\n## ", 1)[0]
    assert "name and contact details of the DPO or other contact point: set [organisation] contact_point" in section
    assert "likely consequences of the breach: responder fact 'likely_consequences'" in section
    assert "approximate number of data subjects concerned: responder fact 'data_subjects'" in section
    assert "## 4. Likely consequences (Art. 33(3)(c))\n\n[STILL UNKNOWN]" in t
    assert "## 3. Contact point (Art. 33(3)(b))\n\n[STILL UNKNOWN]" in t
    assert "Approximate number of data subjects: [STILL UNKNOWN]" in t
    assert "Approximate number of personal data records: 3,410" in t  # known: still given
    doc = json.loads(render_notice(f, "gdpr-33", fmt="json", now=SOON).text)
    assert doc["fields"]["likely_consequences"] is None and doc["fields"]["contact_point"] is None
    assert doc["fields"]["data_subjects_approx"] is None  # 0 found is not "0 data subjects"
    assert sorted(doc["missing"]) == sorted(d.missing)
    # A responder's estimate fills the gap and is used as given.
    g = incident(responder={**RESPONDER, "data_subjects": 1500})
    assert "Approximate number of data subjects: 1,500" in render_notice(g, "gdpr-33", now=SOON).text


def test_late_notification_asks_for_the_reasons():
    late = AWARE + timedelta(hours=80)
    d = render_notice(incident(), "gdpr-33", now=late)
    assert d.missing == ("delay_reasons",)
    assert "## Reasons for the delay (Art. 33(1))" in d.text
    assert "made 8 h after the 72-hour period ended (2025-03-07 09:15 UTC (10:15 CET))" in d.text
    assert "reasons for the delay (notified later than 72 hours after awareness): responder fact 'delay_reasons'" in d.text
    f = incident(responder={**RESPONDER, "delay_reasons": "The vendor's logs needed to establish scope arrived on day 3."})
    d = render_notice(f, "gdpr-33", now=late)
    assert d.missing == () and "The vendor's logs needed to establish scope arrived on day 3." in d.text
    assert render_notice(f, "gdpr-33", now=SOON).text.count("vendor's logs needed") == 0  # on time: no slot


def test_gdpr33_with_the_shipped_regime_and_deadlines():
    from leakwatch.incidents.regimes import deadlines, load_regimes

    regime = load_regimes().get("gdpr-33")
    f = incident()
    d = render_notice(f, "gdpr-33", regime=regime, deadlines=deadlines(regime, f, SOON), now=SOON)
    assert d.missing == () and d.context["deadlines"][0]["id"] == "notify"
    assert d.context["deadlines"][0]["due"] == "2025-03-07T09:15:00Z" and d.context["deadlines"][0]["time_left"] == "1 d 18 h"
    assert "- **To:** Berliner Beauftragte" in d.text  # the config's authority, not "lead supervisory authority"
    uk = load_regimes().get("uk-gdpr")
    d = render_notice(f, "gdpr-33", regime=uk, now=SOON)
    assert d.regime_id == "uk-gdpr" and "- **To:** Information Commissioner's Office (ICO)" in d.text


# --- Art. 34, NIS2, generic --------------------------------------------------------------------


def test_gdpr34_letter_in_plain_language():
    f = incident(responder={**RESPONDER, "advice_to_subjects": "Be wary of e-mails asking for your password."})
    d = render_notice(f, "gdpr-34", fmt="txt", now=SOON)
    t = d.text
    assert d.missing == () and t.startswith("Important information about your personal data")
    assert "Some of your information was included in requests sent to an outside artificial-intelligence (AI) service." in t
    assert "your contact details, such as your e-mail address or phone number" in t
    assert "payment card or bank account numbers" in t
    assert "Targeted phishing" in t and "Be wary of e-mails asking for your password." in t
    assert "please contact Dr. Eva Weber, Data Protection Officer, dpo@acme-retail.eu" in t
    assert "Calls to the AI service were blocked" in t
    # Plain language: no article numbers, pattern ids, counts of other people or masked values.
    for jargon in ("Art.", "P3_prompt_pii", "1,240", "************1111", "Contact.Email", "**"):
        assert jargon not in t, jargon
    assert_no_raw(t)
    d = render_notice(incident(responder={}), "gdpr-34", now=SOON)
    assert set(d.missing) == {"likely_consequences"}  # measures: the done step still counts


def test_nis2_three_stages():
    f = incident(responder={**RESPONDER, "suspected_malicious": False, "cross_border": "no: EU customers in DE only"})
    ew = render_notice(f, "nis2-early-warning", now=AWARE + timedelta(hours=5))
    assert ew.missing == () and ew.regime_id == "nis2"
    assert "Suspected to be caused by unlawful or malicious acts: no" in ew.text
    assert "Could have a cross-border impact: no: EU customers in DE only" in ew.text
    assert "Became aware: 2025-03-04 09:15 UTC (10:15 CET)" in ew.text
    bare = render_notice(incident(responder={}), "nis2-early-warning", now=AWARE + timedelta(hours=5))
    assert set(bare.missing) == {"suspected_malicious", "cross_border"}
    assert "Suspected to be caused by unlawful or malicious acts: [STILL UNKNOWN]" in bare.text

    n = render_notice(f, "nis2-notification", now=AWARE + timedelta(hours=40))
    assert set(n.missing) == {"initial_assessment", "impact", "indicators_of_compromise"}
    g = incident(responder={**f.responder, "initial_assessment": "Integration misconfiguration, not an attack.",
                            "impact": "No service disruption; confidentiality of customer data affected.",
                            "indicators_of_compromise": "none: no attacker involved", "severity_assessment": "significant"})
    n = render_notice(g, "nis2-notification", now=AWARE + timedelta(hours=40))
    assert n.missing == ()
    for needle in ("Integration misconfiguration", "Severity: significant", "No service disruption",
                   "## Indicators of compromise\n\nnone: no attacker involved", "about 3,410 records"):
        assert needle in n.text, needle

    fr = render_notice(g, "nis2-final-report", now=AWARE + timedelta(days=20))
    assert set(fr.missing) == {"description", "root_cause"}
    h = incident(responder={**g.responder, "description": "A Flow sent case descriptions to the AI vendor's US endpoint.",
                            "root_cause": "Named Credential pointed at api.openai.com instead of the gateway."})
    fr = render_notice(h, "nis2-final-report", fmt="json", now=AWARE + timedelta(days=20))
    doc = json.loads(fr.text)
    assert doc["missing"] == [] and doc["regime"] == "nis2"
    assert doc["fields"]["root_cause"].startswith("Named Credential") and doc["fields"]["cross_border"].startswith("no")
    assert "Calls to the AI service were blocked" in doc["fields"]["measures"][0]
    for t in (ew.text, n.text, fr.text):
        assert_no_raw(t)


@pytest.mark.parametrize("regime_id", ["sg-pdpa", "ca-1798.82", "br-lgpd", "hipaa", "sec-8k"])
def test_generic_notice_follows_the_regime_content_list(regime_id):
    from leakwatch.incidents.regimes import deadlines, load_regimes

    regime = load_regimes().get(regime_id)
    f = incident()
    d = render_notice(f, "generic", regime=regime, deadlines=deadlines(regime, f, SOON), now=SOON)
    t = d.text
    assert d.regime_id == regime_id and t.startswith(f"# Breach notification: {regime.name}")
    assert f"- **To:** {regime.recipient}" in t
    assert "- **From:** Acme Retail GmbH" in t
    labels = d.context["labels"]
    assert set(d.context["required"]) - {"controller"} == {_target(c) for c in regime.content}
    for iid in d.context["required"]:
        if iid in d.missing:
            assert f"{labels[iid]}: [STILL UNKNOWN]" in t
    assert_no_raw(t)


def _target(content_id):
    from leakwatch.incidents.notices import CONTENT_ALIASES

    return CONTENT_ALIASES.get(content_id, content_id)


def test_generic_items_map_to_facts():
    from leakwatch.incidents.regimes import deadlines, load_regimes

    regimes = load_regimes()
    sg = regimes.get("sg-pdpa")  # nature, categories, approx_subjects, likely_consequences, measures, contact_point
    f = incident()
    d = render_notice(f, "generic", regime=sg, deadlines=deadlines(sg, f, SOON), now=SOON)
    assert d.missing == ()
    assert "approximate number of data subjects concerned: 1,240" in d.text
    assert "categories of personal data concerned: contact data" in d.text
    assert "- **Deadline:** " in d.text  # the regime's deadlines, with time left
    ca = regimes.get("ca-1798.82")  # what_happened, what_information, what_we_are_doing, what_you_can_do, …
    d = render_notice(f, "generic", regime=ca, now=SOON)
    assert d.missing == ("advice",)  # what_you_can_do: nobody wrote it yet
    assert "what data subjects can do: responder fact 'advice_to_subjects'" in d.text
    sec = regimes.get("sec-8k")  # nature, scope, timing, material_impact: scope and impact are judgements
    d = render_notice(f, "generic", regime=sec, now=SOON)
    assert set(d.missing) == {"scope", "material_impact"}
    assert "scope: responder fact 'scope'" in d.text
    d = render_notice(incident(responder={**RESPONDER, "scope": "3,410 records", "material_impact": "not material"}),
                      "generic", regime=sec, now=SOON)
    assert d.missing == () and "material impact: not material" in d.text
    # A regime given as a plain object with words for content, as a user might write one.

    class Custom:
        id, name, recipient = "acme-internal", "Internal breach register", "Group privacy office"
        content = ("When it happened", "Number of individuals affected", "Reference of the insurer")

    d = render_notice(f, "generic", regime=Custom(), now=SOON)
    assert "When it happened: between 2025-03-01 07:00 UTC" in d.text
    assert "Number of individuals affected: 1,240" in d.text
    assert d.missing == ("reference_of_the_insurer",)


def test_every_kind_renders_in_every_format():
    for kind in NOTICE_KINDS:
        for fmt in ("md", "txt", "json"):
            d = render_notice(incident(), kind, fmt=fmt, now=SOON)
            assert d.text.strip() and d.format == fmt
            assert_no_raw(d.text)
    with pytest.raises(PlaybookError, match="unknown notice kind 'gdpr-35'"):
        render_notice(incident(), "gdpr-35", now=SOON)
    with pytest.raises(PlaybookError, match="unknown notice format 'pdf'"):
        render_notice(incident(), "gdpr-33", fmt="pdf", now=SOON)


def test_context_is_json_and_holds_only_facts():
    ctx = notice_context(incident(), regime_id="gdpr-33", now=SOON, kind="gdpr-33")
    text = json.dumps(ctx)  # JSON-able throughout
    assert_no_raw(text)
    assert ctx["counts"] == {"findings": 5120, "records": 3410, "data_subjects": 1240}
    assert ctx["masked_examples"] == ["j***@e******.com", "************1111", "*******6C"]
    assert ctx["times"]["awareness"] == "2025-03-04T09:15:00Z"


# --- templates ---------------------------------------------------------------------------------


def test_template_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "gdpr-33.j2").write_text("{{ h1('x') }}\n\n{% if items.nature %}\nunclosed\n", encoding="utf-8")
    with pytest.raises(PlaybookError) as e:
        render_notice(incident(), "gdpr-33", now=SOON, templates_dir=tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'gdpr-33.j2'}:")
    assert re.search(r"gdpr-33\.j2:\d+: template syntax error", msg)
    (tmp_path / "gdpr-33.j2").write_text("line one\n{{ item('nature') }\n", encoding="utf-8")
    with pytest.raises(PlaybookError, match=r"gdpr-33\.j2:2: template syntax error"):
        render_notice(incident(), "gdpr-33", now=SOON, templates_dir=tmp_path)


def test_undefined_name_and_sandbox_name_file_and_line(tmp_path):
    (tmp_path / "gdpr-33.j2").write_text("ok\nok\n{{ incident.titel }}\n", encoding="utf-8")
    with pytest.raises(PlaybookError, match=r"gdpr-33\.j2:3: template error: .*titel"):
        render_notice(incident(), "gdpr-33", now=SOON, templates_dir=tmp_path)
    (tmp_path / "gdpr-33.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}\n", encoding="utf-8")
    with pytest.raises(PlaybookError, match=r"gdpr-33\.j2"):
        render_notice(incident(), "gdpr-33", now=SOON, templates_dir=tmp_path)
    with pytest.raises(PlaybookError, match="no template for notice kind 'gdpr-34'"):
        render_notice(incident(), "gdpr-34", now=SOON, templates_dir=tmp_path)


@pytest.mark.parametrize(("expr", "kind"), [("1/0", "ZeroDivisionError"), ("range(10**9)|list", "OverflowError")])
def test_an_expression_that_fails_is_a_template_error_with_its_line(tmp_path, expr, kind):
    """{{ 1/0 }} or a range the sandbox refuses was an internal error (exit 70)."""
    (tmp_path / "gdpr-33.j2").write_text("ok\n{{ " + expr + " }}\n", encoding="utf-8")
    with pytest.raises(PlaybookError, match=rf"gdpr-33\.j2:2: template error: {kind}"):
        render_notice(incident(), "gdpr-33", now=SOON, templates_dir=tmp_path)


def test_format_specific_template_and_appended_unknown_section(tmp_path):
    (tmp_path / "gdpr-33.j2").write_text("{{ h1('Generic') }}\n", encoding="utf-8")
    (tmp_path / "gdpr-33.txt.j2").write_text("TXT {{ item('likely_consequences') }}\n", encoding="utf-8")
    f = incident(responder={})
    txt = render_notice(f, "gdpr-33", fmt="txt", now=SOON, templates_dir=tmp_path).text
    md = render_notice(f, "gdpr-33", fmt="md", now=SOON, templates_dir=tmp_path).text
    assert txt.startswith("TXT [STILL UNKNOWN]") and md.startswith("# Generic")
    # The template forgot still_unknown(): the section is appended anyway.
    assert "Still unknown (to be supplied; this draft does not guess them)\n------" in txt
    assert "## Still unknown" in md and "likely consequences of the breach" in md


# --- the guard ---------------------------------------------------------------------------------


def test_guard_catches_a_raw_email_in_a_responder_fact():
    f = incident(responder={**RESPONDER, "likely_consequences": f"Customer {RAW_EMAIL} reported phishing."})
    for fmt in ("md", "txt", "json"):
        with pytest.raises(UnmaskedValueError) as e:
            render_notice(f, "gdpr-33", fmt=fmt, now=SOON)
        msg = str(e.value)
        assert "unmasked e-mail address (j***@e******.com)" in msg and "responder fact 'likely_consequences'" in msg
        assert RAW_EMAIL not in msg and "jane.doe" not in msg


@pytest.mark.parametrize("raw, kind", [
    ("4111 1111 1111 1111", "card-like number"),
    (RAW_CARD, "card-like number"),
    (RAW_NINO, "UK National Insurance number"),
    (RAW_KEY, "AI-service key"),
    ("123-45-6789", "US Social Security number"),
    ("GB33BUKB20201555555555", "IBAN"),
    ("jane.doe%40example.com", "e-mail address"),
])
def test_guard_catches_other_raw_values(raw, kind):
    f = incident(responder={**RESPONDER, "measures": f"Blocked; see {raw}."})
    with pytest.raises(UnmaskedValueError, match=re.escape(kind)) as e:
        render_notice(f, "gdpr-33", now=SOON)
    assert raw not in str(e.value)


def test_guard_uses_the_detection_rules_too():
    """A phone number has no pattern of the notice guard's own; the shipped rules find it."""
    f = incident(responder={**RESPONDER, "advice_to_subjects": "Call the customer back on +44 7700 900123."})
    with pytest.raises(UnmaskedValueError, match="PHONE_NUMBER") as e:
        render_notice(f, "gdpr-34", now=SOON)
    assert "7700 900123" not in str(e.value) and "responder fact 'advice_to_subjects'" in str(e.value)
    # The organisation's own phone number in contact_point is not personal data of the incident.
    assert "+49 30 901820" in render_notice(incident(), "gdpr-34", now=SOON).text


def test_guard_catches_raw_values_from_a_template(tmp_path):
    (tmp_path / "gdpr-33.j2").write_text("Contact support@vendor-example.com\n", encoding="utf-8")
    with pytest.raises(UnmaskedValueError, match="from the template"):
        render_notice(incident(), "gdpr-33", now=SOON, templates_dir=tmp_path)


def test_find_unmasked():
    masked = "j***@e******.com ************1111 *******6C " + mask_secret(RAW_KEY.encode())
    assert find_unmasked(masked) == []
    kinds = [k for k, _ in find_unmasked(f"{RAW_EMAIL} {RAW_CARD} {RAW_NINO} {RAW_KEY}")]
    assert kinds == ["e-mail address", "AI-service key", "card-like number", "UK National Insurance number"]
    assert find_unmasked("mail dpo@acme-retail.eu", allowed=["dpo@acme-retail.eu"]) == []
    # Timestamps, counts and phone-length numbers are not card-like.
    assert find_unmasked("2025-03-04 09:15 UTC, 3,410 records, incident 42, +49 30 901820") == []


def test_the_subject_count_is_never_below_the_per_country_counts():
    """Art. 33(3)(a): 'approximately 6 data subjects' next to 'US-CA: 600' contradicts itself."""
    d = render_notice(incident(data_subjects=6, subjects_by_jurisdiction={"US-CA": 600, "EU": 20}), "gdpr-33",
                      fmt="json", now=SOON)
    assert json.loads(d.text)["fields"]["data_subjects_approx"] == 620
    d = render_notice(incident(data_subjects=1240, subjects_by_jurisdiction={"EU": 20}), "gdpr-33", fmt="json", now=SOON)
    assert json.loads(d.text)["fields"]["data_subjects_approx"] == 1240


def test_the_refusal_of_a_raw_value_shows_a_mask_of_its_kind():
    from leakwatch.errors import IncidentError
    from leakwatch.incidents.notices_guard import check_free_text

    with pytest.raises(IncidentError, match=r"\*{12}1111"):
        check_free_text("paid with 4111 1111 1111 1111", "fact")
    with pytest.raises(IncidentError, match=r"j\*\*\*@e"):
        check_free_text("customer jane.doe@example.com", "fact")


@pytest.mark.parametrize("text", [
    "refund went to iban de89370400440532013000",            # typed in lower case
    "rotated wJalrZqMkXUtnFEMI/K7MDENG/bPxRfiCYZQMKKEY9",     # an AWS secret without its key
    "pw: ZqEvidPw88", "triage note=x pw ZqEvidPw88", "token=ZqEvidTok55abc",
])
def test_typed_secrets_and_lower_case_ids_are_refused(text):
    from leakwatch.errors import IncidentError
    from leakwatch.incidents.notices_guard import check_free_text

    with pytest.raises(IncidentError) as e:
        check_free_text(text, "fact")
    assert "ZqEvid" not in str(e.value) and "de8937" not in str(e.value) and "wJalr" not in str(e.value)


@pytest.mark.parametrize("text", [
    "The token was rotated yesterday; 12 customers affected", "rotated the token 3 times",
    "See ticket INC0012345 and report 00O5j000004XyZa", "vendor notified 2026-03-11 at 09:30 UTC",
    "drafted by the local model SmolLM2-135M-Instruct-Q4_1.gguf", "Case a0X5j00000Qr7TfEAJ was opened",
])
def test_ordinary_responder_text_passes(text):
    from leakwatch.incidents.notices_guard import check_free_text

    check_free_text(text, "fact")
