"""Playbooks: the shipped files, selection, due times, conditions, step transitions and every
kind of bad playbook file (each error names file, line, step and field)."""
from __future__ import annotations

from leakwatch.detect.egress import DataFileProblem

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leakwatch.config import OrganisationConfig
from leakwatch.errors import PlaybookError
from leakwatch.incidents.facts import Destination, IncidentFacts
from leakwatch.incidents.notices import NOTICE_KINDS, default_templates_dir
from leakwatch.incidents.playbooks import (
    STEP_STATES,
    PlaybookLoadError,
    StepTransitionError,
    check_transition,
    default_playbooks_dir,
    load_playbook,
    load_playbooks,
    parse_duration,
    select_playbooks,
    step_applies,
    step_due,
)

AWARE = datetime(2025, 3, 4, 9, 15, tzinfo=UTC)
SHIPPED = ("ai-egress-pii-leak", "bulk-export-to-ai", "cdn-cache-exposure", "exposed-ai-api-key")


def facts(**kw) -> IncidentFacts:
    base: dict = dict(  # noqa: C408 - keyword form reads like the dataclass
        incident_id=1, title="t", status="detected", severity="high", opened_at=AWARE,
        clock_events={"awareness": AWARE, "detection": AWARE - timedelta(minutes=10)},
        org=OrganisationConfig(name="Acme Retail GmbH", establishment=("EU",), customer_jurisdictions=("EU",)),
    )
    base.update(kw)
    return IncidentFacts(**base)


KEY_INCIDENT = facts(patterns=("P1_key_exposed",), categories=("credentials",), entities=("OPENAI_API_KEY",),
                     systems=("salesforce",), masked_examples=("sk-proj-…[164]",), findings=3, records=3)
PROMPT_INCIDENT = facts(
    patterns=("P3_prompt_pii",), categories=("contact", "financial"), entities=("EMAIL_ADDRESS", "CREDIT_CARD"),
    systems=("salesforce",), findings=5120, records=3410, data_subjects=1240, subject_jurisdictions=("EU",),
    destinations=(Destination("OpenAI", "us", "US", True, 1240, 3410),),
)


@pytest.fixture(scope="module")
def shipped():
    return load_playbooks()


def write(tmp_path: Path, text: str, name: str = "pb.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


# --- the shipped playbooks ---------------------------------------------------------------------


def test_shipped_playbooks_load(shipped):
    assert default_playbooks_dir() == Path(__file__).resolve().parents[1] / "playbooks"
    assert sorted(shipped) == list(SHIPPED)  # regimes.yaml, README and templates/ are skipped
    for pb in shipped.values():
        assert pb.steps and pb.title and pb.path.name == pb.id + ".yaml"
        ids = [s.id for s in pb.steps]
        assert len(ids) == len(set(ids))
        for s in pb.steps:
            assert s.role and s.title and s.line > 0
    assert [pb.id for pb in shipped.values() if pb.applies_to.default] == ["ai-egress-pii-leak"]


def test_key_playbook_rotates_revokes_and_checks_use(shipped):
    pb = shipped["exposed-ai-api-key"]
    ids = [s.id for s in pb.steps]
    # Rotation before revocation (revoking first breaks production), usage checked after.
    assert ids.index("rotate-key") < ids.index("revoke-key") < ids.index("check-vendor-usage")
    assert "search-logs" in ids
    assert pb.step("revoke-key").when is not None and list(pb.step("revoke-key").when.step_refs()) == ["rotate-key"]
    assert "rotation timestamp" in pb.step("rotate-key").evidence
    assert pb.step("rotate-key").role == "security-engineer"
    with pytest.raises(PlaybookError, match="did you mean 'revoke-key'"):
        pb.step("revoke-keys")


def test_seed_playbook_has_the_regulatory_clocks(shipped):
    pb = shipped["ai-egress-pii-leak"]
    notify = pb.step("notify-authority")
    assert notify.role == "dpo" and notify.notify.regime == "gdpr-33" and notify.notify.template == "gdpr-33"
    assert notify.due.regime_deadline == ("gdpr-33", "notify") and notify.due.offset == -timedelta(hours=12)
    ew = pb.step("nis2-early-warning")
    assert ew.due.regime_deadline == ("nis2", "early-warning") and ew.notify.template == "nis2-early-warning"
    assert str(ew.when) == "regime_applies=nis2"
    assert pb.step("stop-flow").due.offset == timedelta(hours=4)


def test_shipped_references_exist_in_regimes_and_templates(shipped):
    """Deadline references are only checked for syntax on load; here they must name a real
    regime deadline of the shipped regimes.yaml, and every notice template must exist."""
    from leakwatch.incidents.regimes import load_regimes

    regimes = {r.id: r for r in load_regimes().regimes}

    def conds(c):
        yield c
        if c.op in ("all", "any", "not"):
            for x in c.arg:
                yield from conds(x)

    for pb in shipped.values():
        for s in pb.steps:
            if s.due and s.due.deadline:
                reg, dl = s.due.regime_deadline
                assert reg in regimes, (pb.id, s.id)
                assert dl in [d.id for d in regimes[reg].deadlines], (pb.id, s.id, dl)
            if s.notify:
                assert s.notify.regime in regimes and s.notify.template in NOTICE_KINDS
                assert (default_templates_dir() / f"{s.notify.template}.j2").is_file()
            for c in conds(s.when) if s.when else ():
                if c.op == "regime_applies":
                    assert c.arg in regimes, (pb.id, s.id, c.arg)


# --- selection ---------------------------------------------------------------------------------


def test_select_exposed_key_vs_prompt_pii(shipped):
    assert [pb.id for pb in select_playbooks(shipped, KEY_INCIDENT)] == ["exposed-ai-api-key"]
    assert [pb.id for pb in select_playbooks(shipped, PROMPT_INCIDENT)] == ["ai-egress-pii-leak"]
    both = facts(patterns=("P3_prompt_pii",), categories=("contact", "credentials"))
    assert [pb.id for pb in select_playbooks(shipped, both)] == ["ai-egress-pii-leak", "exposed-ai-api-key"]
    cdn = facts(patterns=("P4_cdn_region",), systems=("cdn",), categories=("contact",))
    assert [pb.id for pb in select_playbooks(shipped.values(), cdn)] == ["cdn-cache-exposure"]
    bulk = facts(patterns=("bulk_export",), categories=("identity",))
    assert [pb.id for pb in select_playbooks(shipped, bulk)] == ["bulk-export-to-ai"]


def test_select_falls_back_to_the_default(shipped):
    nothing = facts(patterns=("api_volume",), categories=("identity",), systems=("heroku",))
    assert [pb.id for pb in select_playbooks(shipped, nothing)] == ["ai-egress-pii-leak"]
    no_default = [pb for pb in shipped.values() if not pb.applies_to.default]
    assert select_playbooks(no_default, nothing) == []


# --- due times ---------------------------------------------------------------------------------


def never(regime: str, deadline: str):
    raise AssertionError("no deadline lookup expected")


def test_due_relative_to_clock_events(shipped):
    pb = shipped["ai-egress-pii-leak"]
    assert step_due(pb.step("stop-flow"), PROMPT_INCIDENT, never) == AWARE + timedelta(hours=4)
    # Awareness set later by a responder moves every awareness-relative due time with it.
    later = facts(clock_events={"awareness": AWARE + timedelta(hours=30), "detection": AWARE})
    assert step_due(pb.step("stop-flow"), later, never) == AWARE + timedelta(hours=34)
    # A step due after another step's completion has no due time until that step is done.
    subj = pb.step("notify-subjects")
    assert step_due(subj, PROMPT_INCIDENT, never) is None
    done_at = AWARE + timedelta(hours=40)
    f = facts(steps_done=(("risk-assessment", "Assess the risk", done_at),))
    assert step_due(subj, f, never) == done_at + timedelta(hours=72)


def test_due_relative_to_unset_clock_and_notice(tmp_path):
    pb = load_playbook(write(tmp_path, """
        id: x
        title: X
        applies_to: {patterns: [P3_prompt_pii]}
        steps:
          - {id: a, title: A, role: dpo, due: {clock: classification, after: 1d12h}}
          - {id: b, title: B, role: dpo, due: {clock: "notified:nis2", after: 30d}}
          - {id: c, title: C, role: dpo, due: {deadline: ca-1798.82.residents}}
    """))
    a, b, c = pb.steps
    assert a.due.offset == timedelta(hours=36) and a.due.text == "classification + 36h"
    assert step_due(a, facts(), never) is None  # not classified yet
    f = facts(clock_events={"awareness": AWARE, "detection": AWARE, "classification": AWARE + timedelta(hours=2)})
    assert step_due(a, f, never) == AWARE + timedelta(hours=38)
    sent = AWARE + timedelta(hours=50)
    assert step_due(b, facts(notices_sent={"nis2": sent}), never) == sent + timedelta(days=30)
    seen = []
    assert c.due.regime_deadline == ("ca-1798.82", "residents")  # the regime id has a dot
    assert step_due(c, facts(), lambda r, d: seen.append((r, d)) or AWARE + timedelta(days=30)) == AWARE + timedelta(days=30)
    assert seen == [("ca-1798.82", "residents")]


def test_due_before_a_regime_deadline(shipped):
    step = shipped["ai-egress-pii-leak"].step("notify-authority")
    asked = []

    def resolve(regime, deadline):
        asked.append((regime, deadline))
        return AWARE + timedelta(hours=72)

    assert step_due(step, PROMPT_INCIDENT, resolve) == AWARE + timedelta(hours=60)
    assert asked == [("gdpr-33", "notify")]
    assert step_due(step, PROMPT_INCIDENT, lambda r, d: None) is None  # deadline not running


def test_due_with_the_real_regimes():
    """The shipped gdpr-33 deadline (72 h) and NIS2 early warning (24 h), resolved by the
    regimes module as the CLI does."""
    from leakwatch.incidents.clocks import deadline_resolver
    from leakwatch.incidents.regimes import load_regimes

    pb = load_playbooks()["ai-egress-pii-leak"]
    resolve = deadline_resolver(PROMPT_INCIDENT, load_regimes(), AWARE + timedelta(hours=1))
    assert step_due(pb.step("notify-authority"), PROMPT_INCIDENT, resolve) == AWARE + timedelta(hours=60)
    assert step_due(pb.step("nis2-early-warning"), PROMPT_INCIDENT, resolve) == AWARE + timedelta(hours=22)


# --- conditions --------------------------------------------------------------------------------


def test_step_conditions(shipped):
    pb = shipped["ai-egress-pii-leak"]
    unknown = lambda rid: None
    yes = lambda rid: True
    no = lambda rid: False
    assert step_applies(pb.step("triage"), PROMPT_INCIDENT, set(), no) is True  # no condition
    ew = pb.step("nis2-early-warning")
    assert step_applies(ew, PROMPT_INCIDENT, set(), yes) is True
    assert step_applies(ew, PROMPT_INCIDENT, set(), no) is False
    assert step_applies(ew, PROMPT_INCIDENT, set(), unknown) is None
    subj = pb.step("notify-subjects")  # all: [regime_applies gdpr-34, step_done risk-assessment]
    assert step_applies(subj, PROMPT_INCIDENT, set(), yes) is False
    assert step_applies(subj, PROMPT_INCIDENT, {"risk-assessment"}, yes) is True
    assert step_applies(subj, PROMPT_INCIDENT, set(), unknown) is False  # false wins over unknown in all
    assert step_applies(subj, PROMPT_INCIDENT, {"risk-assessment"}, unknown) is None
    # The NIS2 notification and final report are owed whether or not the early warning went out.
    for sid in ("nis2-notification", "nis2-final-report"):
        assert step_applies(pb.step(sid), PROMPT_INCIDENT, set(), yes) is True
        assert step_applies(pb.step(sid), PROMPT_INCIDENT, set(), no) is False
    sf = pb.step("disable-salesforce-integration")
    assert step_applies(sf, PROMPT_INCIDENT, set(), no) is True
    assert step_applies(sf, facts(systems=("heroku",)), set(), no) is False


def test_any_not_pattern_category(tmp_path):
    pb = load_playbook(write(tmp_path, """
        id: x
        title: X
        applies_to: {categories: [credentials]}
        steps:
          - id: a
            title: A
            role: dpo
            when:
              any:
                - {pattern: P1_key_exposed}
                - not: {category: credentials}
                - {regime_applies: hipaa}
    """))
    a = pb.steps[0]
    assert step_applies(a, KEY_INCIDENT, set(), lambda r: False) is True                 # pattern
    assert step_applies(a, facts(categories=("contact",)), set(), lambda r: False) is True  # not category
    assert step_applies(a, facts(categories=("credentials",)), set(), lambda r: False) is False
    assert step_applies(a, facts(categories=("credentials",)), set(), lambda r: None) is None
    assert step_applies(a, facts(categories=("credentials",)), set(), lambda r: r == "hipaa") is True


# --- transitions -------------------------------------------------------------------------------


def test_done_needs_every_evidence_item(shipped):
    step = shipped["exposed-ai-api-key"].step("rotate-key")
    with pytest.raises(StepTransitionError, match="'rotation timestamp', 'new key id' missing"):
        check_transition(step, "pending", "done", evidence=None, reason=None)
    with pytest.raises(StepTransitionError, match="'new key id' missing"):
        check_transition(step, "in_progress", "done", evidence={"rotation timestamp": "2025-03-04T10:02Z", "new key id": "  "},
                         reason=None)
    check_transition(step, "in_progress", "done",
                     evidence={"rotation timestamp": "2025-03-04T10:02Z", "new key id": "key-7f3a (vault v12)"}, reason=None)
    assert issubclass(StepTransitionError, ValueError) and issubclass(StepTransitionError, PlaybookError)


def test_skip_needs_a_reason_and_final_states(shipped):
    step = shipped["ai-egress-pii-leak"].step("notify-ico")
    with pytest.raises(StepTransitionError, match="without a reason"):
        check_transition(step, "pending", "skipped", evidence=None, reason=None)
    with pytest.raises(StepTransitionError, match="without a reason"):
        check_transition(step, "pending", "skipped", evidence=None, reason="   ")
    check_transition(step, "pending", "skipped", evidence=None, reason="no UK data subjects")
    check_transition(step, "pending", "in_progress", evidence=None, reason=None)
    with pytest.raises(StepTransitionError, match="final"):
        check_transition(step, "skipped", "done", evidence={"submission reference": "x", "submission time": "y"}, reason="r")
    with pytest.raises(StepTransitionError, match="final"):
        check_transition(step, "done", "skipped", evidence=None, reason="changed my mind")
    with pytest.raises(StepTransitionError, match="reopened without a reason"):
        check_transition(step, "done", "pending", evidence=None, reason=None)
    check_transition(step, "done", "pending", evidence=None, reason="ICO asked for a corrected notice")
    with pytest.raises(StepTransitionError, match="already done"):
        check_transition(step, "done", "done", evidence=None, reason=None)
    with pytest.raises(StepTransitionError, match="unknown new state 'finished'"):
        check_transition(step, "pending", "finished", evidence=None, reason=None)
    assert STEP_STATES == ("pending", "in_progress", "done", "skipped")


def test_raw_values_refused_in_evidence_and_reasons(shipped):
    step = shipped["exposed-ai-api-key"].step("rotate-key")
    raw_key = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
    with pytest.raises(StepTransitionError, match="unmasked AI-service key") as e:
        check_transition(step, "pending", "done", evidence={"rotation timestamp": "10:02", "new key id": raw_key}, reason=None)
    assert raw_key not in str(e.value) and "sk-proj-…[72]" in str(e.value)
    with pytest.raises(StepTransitionError, match="unmasked e-mail address") as e:
        check_transition(step, "pending", "skipped", evidence=None, reason="customer jane.doe@example.com asked")
    assert "jane.doe" not in str(e.value)


# --- bad playbook files ------------------------------------------------------------------------

GOOD_STEPS = """steps:
  - id: contain
    title: Contain
    role: security-engineer
    due: {clock: awareness, after: 4h}
    evidence: [change record]
  - id: notify
    title: Notify
    role: dpo
    when: {step_done: contain}
    due: {deadline: gdpr-33.notify, before: 12h}
    notify: {regime: gdpr-33}
"""
HEAD = "id: x\ntitle: X\napplies_to: {patterns: [P3_prompt_pii]}\n"


def load_error(tmp_path: Path, text: str) -> PlaybookLoadError:
    with pytest.raises(PlaybookLoadError) as e:
        load_playbook(write(tmp_path, text))
    return e.value


def test_good_minimal_playbook_and_free_text_role(tmp_path):
    pb = load_playbook(write(tmp_path, HEAD + GOOD_STEPS.replace("role: dpo", "role: Chief Privacy Wrangler")))
    assert pb.steps[1].role == "Chief Privacy Wrangler"  # roles are free text
    assert pb.steps[1].notify.template == "gdpr-33"  # defaults to the regime's own notice kind
    assert pb.steps[1].line == 10


def test_missing_field(tmp_path):
    e = load_error(tmp_path, "id: x\napplies_to: {patterns: [P3_prompt_pii]}\n" + GOOD_STEPS)
    assert e.field == "title" and "missing" in e.message and str(tmp_path / "pb.yaml") in str(e)
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace("    role: dpo\n", ""))
    assert (e.step, e.field, e.line) == ("notify", "role", 10)
    assert "pb.yaml:10: step 'notify': field 'role': missing" in str(e)


def test_unknown_field_did_you_mean(tmp_path):
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace("evidence:", "evidnce:"))
    assert (e.step, e.field, e.line) == ("contain", "evidnce", 9)
    assert "did you mean 'evidence'" in str(e)
    e = load_error(tmp_path, HEAD + "aplies_to: {}\n" + GOOD_STEPS)
    assert any(p[3] == "aplies_to" and "did you mean 'applies_to'" in p[4] for p in e.problems)
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace("{clock: awareness, after: 4h}", "{clock: awareness, afte: 4h}"))
    assert e.field == "due.afte" and "did you mean 'after'" in e.message


def test_unknown_clock(tmp_path):
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace("clock: awareness", "clock: awarenes"))
    assert (e.step, e.field, e.line) == ("contain", "due.clock", 8)
    assert "unknown clock 'awarenes' (did you mean 'awareness'?)" in str(e)
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace("clock: awareness", "clock: breakfast"))
    assert "valid: detection, awareness" in e.message


def test_duplicate_step_id(tmp_path):
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace("id: notify", "id: contain").replace("{step_done: contain}", "{pattern: P3_prompt_pii}"))
    assert (e.step, e.field, e.line) == ("contain", "id", 10)
    assert "duplicate step id (first at line 5)" in e.message


def test_when_refers_to_unknown_step(tmp_path):
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace("{step_done: contain}", "{step_done: contian}"))
    assert (e.step, e.field, e.line) == ("notify", "when", 13)
    assert "unknown step 'contian' (did you mean 'contain'?)" in e.message


@pytest.mark.parametrize("text, cycle", [
    ("""
     steps:
       - {id: a, title: A, role: r, when: {step_done: b}}
       - {id: b, title: B, role: r, when: {all: [{pattern: P3_prompt_pii}, {step_done: c}]}}
       - {id: c, title: C, role: r, when: {not: {step_done: a}}}
     """, "a -> b -> c -> a"),
    ("""
     steps:
       - {id: ok, title: OK, role: r}
       - {id: a, title: A, role: r, when: {any: [{step_done: ok}, {step_done: a}]}}
     """, "a -> a"),
])
def test_cycle_in_step_conditions(tmp_path, text, cycle):
    e = load_error(tmp_path, HEAD + textwrap.dedent(text).lstrip("\n"))
    assert e.field == "when" and f"cycle in step conditions: {cycle}" in e.message
    assert e.line is not None and e.line > 3


@pytest.mark.parametrize("value, words", [
    ('"4x"', "'4x' is not a duration"),
    ('"-4h"', "is negative"),
    ("4", "has no unit"),
    ('"1 month"', "a month has no fixed length"),
    ('""', "is not a duration"),
    ("[4h]", "expected a duration"),
])
def test_bad_durations(tmp_path, value, words):
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace("after: 4h", f"after: {value}"))
    assert (e.step, e.field, e.line) == ("contain", "due.after", 8)
    assert words in e.message


def test_parse_duration():
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("90min") == parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1w") == timedelta(days=7)
    assert parse_duration("0h") == timedelta(0)
    assert parse_duration("520w") == timedelta(weeks=520)


@pytest.mark.parametrize("text", ["99999999999w", "600000w", "3651d", "9999999999999999999999999h"])
def test_a_duration_past_ten_years_is_a_data_file_problem(text):
    """99999999999w overflowed timedelta and 600000w the calendar: exit 70 for a playbook's due
    date or a notify rule's 'before', on every command that read them."""
    with pytest.raises(DataFileProblem):
        parse_duration(text, "after")


@pytest.mark.parametrize("old, new, fld, words", [
    ("{deadline: gdpr-33.notify, before: 12h}", "{deadline: gdpr-33, before: 12h}", "due.deadline", "not a regime deadline"),
    ("{deadline: gdpr-33.notify, before: 12h}", "{clock: awareness, deadline: gdpr-33.notify}", "due", "exactly one of"),
    ("{deadline: gdpr-33.notify, before: 12h}", "{clock: awareness, before: 12h}", "due.before", "use 'after' with a clock"),
    ("{step_done: contain}", "{pattern: P9_unknown}", "when.pattern", "unknown failure pattern"),
    ("{step_done: contain}", "{category: credential}", "when.category", "did you mean 'credentials'"),
    ("{step_done: contain}", "{step_done: contain, pattern: P3_prompt_pii}", "when", "combine several with all"),
    ("{step_done: contain}", "{stepdone: contain}", "when.stepdone", "unknown condition 'stepdone' (did you mean 'step_done'?)"),
    ("{step_done: contain}", "{all: []}", "when.all", "non-empty list"),
    ("{regime: gdpr-33}", "{regime: gdpr-33, template: gdpr33}", "notify.template", "did you mean 'gdpr-33'"),
    ("{regime: gdpr-33}", "{template: gdpr-33}", "notify.regime", "missing"),
])
def test_other_bad_step_fields(tmp_path, old, new, fld, words):
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace(old, new))
    assert e.step == "notify" and e.field == fld and words in e.message
    assert e.line in (13, 14, 15)


def test_bad_applies_to_and_steps(tmp_path):
    e = load_error(tmp_path, "id: x\ntitle: X\napplies_to: {patterns: [P1_key_expose]}\n" + GOOD_STEPS)
    assert e.field == "applies_to.patterns[0]" and e.line == 3 and "did you mean 'P1_key_exposed'" in e.message
    e = load_error(tmp_path, "id: x\ntitle: X\napplies_to: {}\n" + GOOD_STEPS)
    assert e.field == "applies_to" and "matches no incident" in e.message
    e = load_error(tmp_path, HEAD + "steps: []\n")
    assert e.field == "steps" and "non-empty list" in e.message
    e = load_error(tmp_path, HEAD + "steps:\n  - just a string\n")
    assert e.step == "#1" and "expected a mapping" in e.message


def test_bad_yaml_and_empty_file(tmp_path):
    e = load_error(tmp_path, HEAD + "steps:\n  - id: a\n    title: [unclosed\n")
    assert "YAML syntax error" in e.message and e.line is not None and e.line >= 5
    assert str(tmp_path / "pb.yaml") in str(e)
    e = load_error(tmp_path, "")
    assert "empty" in e.message
    e = load_error(tmp_path, "- a list\n")
    assert "expected a mapping" in e.message


def test_every_problem_is_reported_at_once(tmp_path):
    # A step is rejected at its first problem; the problems of other steps and the top level add up.
    e = load_error(tmp_path, HEAD + GOOD_STEPS.replace("clock: awareness", "clock: awarenes").replace("evidence:", "evidnce:"))
    assert [(p[2], p[3]) for p in e.problems] == [("contain", "evidnce")]
    e = load_error(tmp_path, "id: X!\ntitle: X\napplies_to: {patterns: [nope]}\n" + GOOD_STEPS.replace("clock: awareness", "clock: nope"))
    fields = {p[3] for p in e.problems}
    assert {"id", "applies_to.patterns[0]", "due.clock"} <= fields
    assert len(str(e).splitlines()) == len(e.problems)


def test_folder_level_problems(tmp_path):
    write(tmp_path, HEAD + GOOD_STEPS, "a.yaml")
    write(tmp_path, HEAD + GOOD_STEPS, "b.yaml")
    (tmp_path / "regimes.yaml").write_text("not: a playbook\n")
    (tmp_path / "README.md").write_text("# hi\n")
    (tmp_path / "templates").mkdir()
    with pytest.raises(PlaybookLoadError, match="playbook id 'x' is also used by"):
        load_playbooks(tmp_path)
    write(tmp_path, HEAD.replace("id: x", "id: y").replace("{patterns: [P3_prompt_pii]}", "{default: true}") + GOOD_STEPS, "b.yaml")
    write(tmp_path, HEAD.replace("id: x", "id: z").replace("{patterns: [P3_prompt_pii]}", "{default: true}") + GOOD_STEPS, "c.yml")
    with pytest.raises(PlaybookLoadError, match="only one playbook can be the default"):
        load_playbooks(tmp_path)
    (tmp_path / "c.yml").unlink()
    assert sorted(load_playbooks(tmp_path)) == ["x", "y"]
    with pytest.raises(PlaybookLoadError, match="no such playbooks folder"):
        load_playbooks(tmp_path / "missing")


def test_references_to_unknown_regimes_and_deadlines_fail_at_load(tmp_path):
    from leakwatch.incidents.playbooks import PlaybookLoadError, check_references, load_playbook
    from leakwatch.incidents.regimes import load_regimes

    path = write(tmp_path, textwrap.dedent("""\
        id: typo-book
        title: Typos
        description: regimes and deadlines that do not exist
        applies_to: {patterns: [P1_key_exposed]}
        steps:
          - id: a
            title: A
            role: dpo
            due: {deadline: gdpr-33.notfy, before: 12h}
          - id: b
            title: B
            role: dpo
            when: {regime_applies: gdpr33}
          - id: c
            title: C
            role: dpo
            notify: {regime: nis3, template: generic}
        """))
    pb = load_playbook(path)
    with pytest.raises(PlaybookLoadError) as e:
        check_references({pb.id: pb}, load_regimes())
    msg = str(e.value)
    assert str(path) in msg
    assert "step 'a': field 'due.deadline': regime 'gdpr-33' has no deadline 'notfy'" in msg
    assert "step 'b': field 'when.regime_applies': unknown regime 'gdpr33' (did you mean 'gdpr-33'?)" in msg
    assert "step 'c': field 'notify.regime': unknown regime 'nis3'" in msg
    check_references(load_playbooks(), load_regimes())  # the shipped ones are consistent


def test_notified_clock_counts_a_notice_recorded_for_a_deadline(shipped):
    from leakwatch.incidents.playbooks import DueSpec

    sent = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
    f = facts(notices_sent={"gdpr-33:notify": sent})
    step = next(s for pb in shipped.values() for s in pb.steps)
    step = type(step)(**{**step.__dict__, "due": DueSpec(clock="notified:gdpr-33", deadline=None,
                                                          offset=timedelta(hours=1), text="1h after notified:gdpr-33")})
    assert step_due(step, f, never) == sent + timedelta(hours=1)
