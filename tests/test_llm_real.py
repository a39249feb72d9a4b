"""End to end with the real default model (SmolLM2-135M-Instruct Q4_1, installed by
``scripts/bootstrap.sh`` / ``leakwatch models install``): on a fixed incident the responder
summary is grounded (every number, date, vendor and region is in the facts), names the vendor
and the number of data subjects, and holds no raw value; the Art. 33 narrative holds no raw value
and renders into the notice.

A missing model or llama-cpp-python FAILS these tests (it does not skip them): CI must run the
setup that installs both, and a silent skip would hide that the feature is untested.
"""
from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pytest

from leakwatch.config import Config, OrganisationConfig
from leakwatch.detect.mask import mask_card, mask_email, mask_national_id
from leakwatch.incidents.facts import Destination, IncidentFacts
from leakwatch.llm import models
from leakwatch.llm.summarize import extract_claims, raw_value_problems, stream_summary

SETUP = "run scripts/bootstrap.sh (or: .venv/bin/pip install llama-cpp-python==0.3.36 && leakwatch models install)"

AWARE = datetime(2025, 3, 4, 9, 15, tzinfo=UTC)
NOW = AWARE + timedelta(hours=30)
RAW = ("jane.doe@example.com", "4111111111111111", "AB123456C", "sk-proj-" + "T3stK3yN0tR34l" * 5)

FACTS = IncidentFacts(
    incident_id=42, title="Customer PII in prompts to api.openai.com", status="contained", severity="high",
    opened_at=AWARE - timedelta(minutes=5), clock_events={"awareness": AWARE, "detection": AWARE - timedelta(minutes=20)},
    first_seen=datetime(2025, 3, 1, 7, 0, tzinfo=UTC), last_seen=datetime(2025, 3, 4, 8, 41, tzinfo=UTC),
    entities=("EMAIL_ADDRESS", "CREDIT_CARD", "UK_NINO"), categories=("contact", "financial", "national_id"),
    objects=("Contact", "Case"), fields=("Contact.Email", "Case.Description"),
    findings=5120, records=3410, data_subjects=1240,
    destinations=(Destination("OpenAI", "us", "US", True, 1240, 3410),),
    patterns=("P3_prompt_pii",), systems=("salesforce",), subject_jurisdictions=("EU", "UK"),
    masked_examples=(mask_email(RAW[0].encode()), mask_card(RAW[1].encode()), mask_national_id(RAW[2].encode())),
    responder={"measures": "Calls to the AI service were blocked at the egress proxy; the vendor was asked to delete "
                           "the requests.", "subject_categories": "retail customers"},
    steps_done=(("stop-flow", "Stop the data flow to the AI service", AWARE + timedelta(hours=3)),),
    org=OrganisationConfig(name="Acme Retail GmbH", timezone="Europe/Berlin", customer_jurisdictions=("EU", "UK"),
                           contact_point="Dr. Eva Weber, DPO, dpo@acme-retail.eu"),
)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The environment with no $LEAKWATCH_MODEL: the default model in the user cache is used."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.fail(f"llama-cpp-python is not installed: {SETUP}")
    e = {k: v for k, v in os.environ.items() if k != models.MODEL_ENV}
    path = models.default_model_path(e)
    if not path.is_file():
        pytest.fail(f"the default model is not installed ({path} is missing): {SETUP}")
    if not models.is_installed(env=e):
        pytest.fail(f"{path} does not match the pinned SHA-256 {models.DEFAULT_MODEL.sha256}: "
                    f"reinstall it with 'leakwatch models install --force'")
    return e


@pytest.fixture(scope="module")
def clocks():
    from leakwatch.incidents.clocks import incident_clocks
    from leakwatch.incidents.regimes import load_regimes

    return incident_clocks(FACTS, load_regimes(), NOW, only_applicable=True)


def _assert_no_raw(text: str) -> None:
    for raw in RAW:
        assert raw not in text
    assert RAW[1] not in re.sub(r"\D", "", text)
    assert raw_value_problems(text) == []


def test_responder_summary_is_grounded(env, clocks):
    pieces: list[str] = []
    s = stream_summary(FACTS, Config.default(), clocks=clocks, on_token=pieces.append, env=env)
    print(f"\n[{s.label}] {s.text}\nttft {s.ttft_s:.2f} s, {s.tokens_per_s:.1f} tokens/s, {s.total_s:.2f} s, "
          f"{s.prompt_tokens} prompt tokens, backend {s.backend}")
    assert s.used_model and s.model == models.DEFAULT_MODEL.filename
    assert "".join(pieces) == s.text
    assert "OpenAI" in s.text
    assert 1240.0 in extract_claims(s.text).numbers          # "1,240" or "1240"
    _assert_no_raw(s.text)
    assert s.verified, s.problems
    assert s.prompt_tokens >= 500


def test_art33_narrative_is_safe_and_renders(env, clocks):
    from leakwatch.incidents.notices import render_notice

    s = stream_summary(FACTS, Config.default(), kind="art33", clocks=clocks, env=env)
    print(f"\n[{s.label}] {s.text}\nproblems: {s.problems}")
    assert s.used_model and set(s.parts) == {"nature", "likely_consequences", "measures"}
    assert all(v.strip() for v in s.parts.values())
    _assert_no_raw(s.text)
    n = s.narrative()
    md = render_notice(FACTS, "gdpr-33", now=NOW, narrative=n).text
    assert "Draft narrative" in md and n["nature"] in md
    _assert_no_raw(md.replace("dpo@acme-retail.eu", ""))
