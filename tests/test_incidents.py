"""Incidents end to end: JSON-lines application logs with customer data in prompts to two AI
vendors → ``scan_paths`` → ``incidents.book.group`` → hand operations (open, merge, split,
acknowledge, status, clocks, facts) → the audit trail. Real DuckDB files, real scans; nothing
is patched."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from leakwatch.config import load_config
from leakwatch.errors import IncidentError
from leakwatch.incidents import audit, book
from leakwatch.incidents.regimes import load_regimes
from leakwatch.pipeline import scan_paths
from leakwatch.store import Store

EMAILS = [f"customer{i}.tester@example.com" for i in range(6)]
PHONES = ["+44 7700 900123", "+44 7700 900456"]
ANTHROPIC_KEY = "sk-ant-api03-Zx9Wv8Ut7Sr6Qp5On4Ml3Kj2Ih1Gf0EdCbAZx9Wv8Ut7Sr6Qp5On4Ml3Kj2Ih1Gf0EdCbA"
T0 = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)


def llm_line(ts: datetime, url: str, content: str) -> str:
    return json.dumps({"ts": ts.isoformat().replace("+00:00", "Z"), "level": "info", "msg": "llm request", "url": url,
                       "body": {"model": "x", "messages": [{"role": "user", "content": content}]}})


def write_logs(path, start: datetime, n: int = 6, *, vendor_url: str = "https://api.openai.com/v1/chat/completions"):
    lines = []
    for i in range(n):
        lines.append(llm_line(start + timedelta(minutes=i), vendor_url,
                              f"Summarise the complaint of {EMAILS[i % len(EMAILS)]} (phone {PHONES[i % 2]}) about order 1234567890"))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def scanned(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    write_logs(logs / "app-openai.jsonl", T0)
    write_logs(logs / "app-anthropic.jsonl", T0 + timedelta(hours=1), n=4,
               vendor_url="https://api.anthropic.com/v1/messages")
    db = tmp_path / "lw.duckdb"
    summary = scan_paths([str(logs)], db, store_raw=False)
    assert summary.total_findings > 0
    return db, logs


def test_grouping_by_vendor_and_pattern_is_idempotent(scanned):
    db, _ = scanned
    cfg = load_config(None, env={})
    with Store.open(db) as s:
        res = book.group(s, cfg, actor="alice")
        assert res.findings > 0 and len(res.opened) >= 2
        again = book.group(s, cfg, actor="alice")
        assert again == book.GroupResult((), (), 0, 0)
        rows = book.list_incidents(s.con)
        vendors = {json.loads(r["group_key"])["dest_vendor"] for r in rows}
        assert any("OpenAI" in v for v in vendors) and any("Anthropic" in v for v in vendors)
        # Every medium+ finding is in exactly one incident.
        n_eligible = s.con.execute("SELECT count(*) FROM findings WHERE severity_rank >= 2").fetchone()[0]
        assert s.con.execute("SELECT count(*), count(DISTINCT finding_id) FROM incident_findings").fetchone() == (n_eligible, n_eligible)
        # Awareness defaults to the first detection, which is when the findings were stored.
        for r in rows:
            first_stored = s.con.execute("""SELECT least(
                (SELECT min(created_at) FROM findings WHERE finding_id IN
                    (SELECT finding_id FROM incident_findings WHERE incident_id = ?)),
                (SELECT min(created_at) FROM alerts WHERE alert_id IN
                    (SELECT alert_id FROM incident_alerts WHERE incident_id = ?)))""",
                                         [r["incident_id"], r["incident_id"]]).fetchone()[0]
            assert r["aware_at"] == first_stored
        assert audit.verify(s.con, s.key).ok
        actions = [a["action"] for a in audit.list_rows(s.con)]
        assert actions.count("incident.opened") == len(res.opened)


def test_later_findings_within_the_window_grow_the_incident_and_outside_open_a_new_one(scanned, tmp_path):
    db, logs = scanned
    cfg = load_config(None, env={"LEAKWATCH_INCIDENTS_WINDOW_HOURS": "2"})
    with Store.open(db) as s:
        first = book.group(s, cfg, actor="alice")
    write_logs(logs / "later.jsonl", T0 + timedelta(minutes=30), n=2)        # inside the 2 h window
    write_logs(logs / "next-day.jsonl", T0 + timedelta(days=1), n=2)         # far outside
    scan_paths([str(logs)], db)
    with Store.open(db) as s:
        res = book.group(s, cfg, actor="bob")
        assert res.grown, "findings 30 min later must join the open OpenAI incident"
        assert len(res.opened) >= 1, "findings a day later must open a new incident"
        grown = book.get(s.con, res.grown[0])
        assert grown["incident_id"] in first.opened


def test_facts_hold_counts_and_masked_values_only(scanned):
    db, _ = scanned
    with Store.open(db) as s:
        book.group(s, load_config(None, env={}), actor="alice")
        iid = next(r["incident_id"] for r in book.list_incidents(s.con) if "OpenAI" in r["title"] and r["n_findings"])
        facts = book.build_facts(s.con, iid)
        assert facts.data_subjects >= 6  # six distinct e-mails (plus phones) in six prompts
        assert facts.records == 6
        assert "EMAIL_ADDRESS" in facts.entities and "contact" in facts.categories
        assert any(d.residency_violation and d.jurisdiction == "US" for d in facts.destinations)
        assert "P3_prompt_pii" in facts.patterns or "pii_exposure" in facts.patterns
        text = repr(facts)
        for raw in [*EMAILS, *PHONES, "7700 900123"]:
            assert raw not in text
        assert facts.masked_examples and all("*" in m or "…" in m for m in facts.masked_examples)


def test_facts_of_many_incidents_at_once_equal_each_built_alone(scanned):
    # The console's list and the deadline triggers build the facts of every incident in one
    # grouped pass: nothing of one incident may leak into another's, and an empty incident or
    # an unknown id must come out as built alone.
    db, _ = scanned
    cfg = load_config(None, env={})
    with Store.open(db) as s:
        book.group(s, cfg, actor="alice")
        oa, an = _two_incidents(s)
        one = s.con.execute("SELECT min(finding_id) FROM incident_findings WHERE incident_id = ?", [oa]).fetchone()[0]
        empty = book.open_incident(s, actor="alice", title="Taken out, then merged back", finding_ids=[one])
        book.merge(s, oa, [empty], actor="alice", reason="same leak")  # leaves `empty` with nothing in it
        book.set_fact(s, an, "subjects.EU", 12, actor="alice")
        ids = [r["incident_id"] for r in book.list_incidents(s.con)]
        assert {oa, an, empty} <= set(ids)
        regimes = load_regimes()
        many = book.build_facts_many(s.con, [*ids, 10_000], cfg, regimes)
        assert sorted(many) == sorted(ids)  # the unknown id is left out
        for iid in ids:
            assert many[iid] == book.build_facts(s.con, iid, cfg, regimes)
        assert many[oa].entities != many[an].entities or many[oa].destinations != many[an].destinations
        assert many[empty].findings == 0 and many[empty].destinations == ()
        assert many[an].subjects_by_jurisdiction == {"EU": 12} and many[oa].subjects_by_jurisdiction == {}


def _two_incidents(s):
    book.group(s, load_config(None, env={}), actor="alice")
    rows = [r for r in book.list_incidents(s.con) if r["n_findings"]]
    oa = next(r["incident_id"] for r in rows if "OpenAI" in r["title"])
    an = next(r["incident_id"] for r in rows if "Anthropic" in r["title"])
    return oa, an


def test_merge_moves_everything_and_keeps_the_earliest_awareness(scanned):
    db, _ = scanned
    with Store.open(db) as s:
        oa, an = _two_incidents(s)
        n_before = s.con.execute("SELECT count(*) FROM incident_findings WHERE incident_id IN (?, ?)", [oa, an]).fetchone()[0]
        aware_oa = book.build_facts(s.con, oa).awareness
        book.set_clock(s, an, "awareness", book.get(s.con, an)["first_seen"] + timedelta(minutes=5), actor="dpo",
                       reason="on-call saw the dashboard")
        early = book.build_facts(s.con, an).awareness
        assert early < aware_oa
        book.merge(s, oa, [an], actor="lead", reason="same root cause: prompt template")
        assert s.con.execute("SELECT count(*) FROM incident_findings WHERE incident_id = ?", [oa]).fetchone()[0] == n_before
        src = book.get(s.con, an)
        assert src["status"] == "closed" and src["merged_into"] == oa
        assert book.build_facts(s.con, oa).awareness == early
        with pytest.raises(IncidentError, match="merged into"):
            book.set_status(s, an, "triaged", actor="x", reason="reopen")
        assert audit.verify(s.con, s.key).ok


def test_findings_after_a_merge_join_the_merge_target_not_a_twin_of_the_merged_one(scanned):
    # The merged incident is closed; new findings of its kind (same vendor) must grow the
    # incident it was merged into, not open a new incident with the merged one's title.
    db, logs = scanned
    cfg = load_config(None, env={})
    with Store.open(db) as s:
        oa, an = _two_incidents(s)
        book.merge(s, oa, [an], actor="lead", reason="same root cause")
    write_logs(logs / "app-anthropic-2.jsonl", T0 + timedelta(hours=1, minutes=30), n=2,
               vendor_url="https://api.anthropic.com/v1/messages")
    scan_paths([str(logs)], db, store_raw=False)
    with Store.open(db) as s:
        res = book.group(s, cfg, actor="watch")
        assert res.opened == () and res.grown == (oa,)
        assert audit.verify(s.con, s.key).ok


def test_findings_after_a_merge_into_a_hand_opened_incident_join_it(scanned):
    db, logs = scanned
    cfg = load_config(None, env={})
    with Store.open(db) as s:
        oa, an = _two_incidents(s)
        fid = s.con.execute("SELECT min(finding_id) FROM incident_findings WHERE incident_id = ?", [oa]).fetchone()[0]
        manual = book.open_incident(s, title="Customer data to AI vendors (one root cause)", finding_ids=[fid],
                                    actor="lead")
        book.merge(s, manual, [oa, an], actor="lead", reason="same root cause")
    write_logs(logs / "app-anthropic-2.jsonl", T0 + timedelta(hours=1, minutes=30), n=2,
               vendor_url="https://api.anthropic.com/v1/messages")
    scan_paths([str(logs)], db, store_raw=False)
    with Store.open(db) as s:
        res = book.group(s, cfg, actor="watch")
        assert res.opened == () and res.grown == (manual,)


def test_split_by_field_value_and_by_ids(scanned):
    db, _ = scanned
    with Store.open(db) as s:
        oa, _an = _two_incidents(s)
        entities = [e for (e,) in s.con.execute("""SELECT DISTINCT entity FROM findings WHERE finding_id IN
            (SELECT finding_id FROM incident_findings WHERE incident_id = ?) ORDER BY 1""", [oa]).fetchall()]
        assert "PHONE_NUMBER" in entities and len(entities) > 1
        new = book.split(s, oa, title="phones only", where={"entity": "PHONE_NUMBER"}, actor="lead", reason="separate notice")
        assert {e for (e,) in s.con.execute("""SELECT DISTINCT entity FROM findings WHERE finding_id IN
            (SELECT finding_id FROM incident_findings WHERE incident_id = ?)""", [new]).fetchall()} == {"PHONE_NUMBER"}
        assert book.build_facts(s.con, new).awareness == book.build_facts(s.con, oa).awareness  # clocks inherited
        with pytest.raises(IncidentError, match="split by"):
            book.split(s, oa, title="x", where={"raw_value": "x"}, actor="lead")
        with pytest.raises(IncidentError, match="no finding"):
            book.split(s, oa, title="x", where={"entity": "PHONE_NUMBER"}, actor="lead")


def test_status_moves_forward_only_and_refusals_change_nothing(scanned):
    db, _ = scanned
    with Store.open(db) as s:
        oa, _ = _two_incidents(s)
        book.acknowledge(s, oa, actor="alice")
        assert book.get(s.con, oa)["status"] == "triaged"
        with pytest.raises(IncidentError, match="acknowledged already"):
            book.acknowledge(s, oa, actor="alice")
        book.set_status(s, oa, "contained", actor="alice", reason="gateway rule")
        n_audit = len(audit.list_rows(s.con))
        with pytest.raises(IncidentError, match="only moves forward"):
            book.set_status(s, oa, "triaged", actor="alice")
        assert book.get(s.con, oa)["status"] == "contained"
        assert len(audit.list_rows(s.con)) == n_audit
        book.set_status(s, oa, "closed", actor="alice", reason="notified and fixed")
        book.set_status(s, oa, "triaged", actor="alice", reason="new evidence")  # reopen with a reason
        actions = [r["action"] for r in audit.list_rows(s.con, incident_id=oa)]
        assert actions[-4:] == ["incident.ack", "incident.status", "incident.status", "incident.status"]


def test_awareness_rules(scanned):
    db, _ = scanned
    now = datetime.now(UTC)
    with Store.open(db) as s:
        oa, _ = _two_incidents(s)
        first = book.get(s.con, oa)["first_seen"]
        before = book.build_facts(s.con, oa).awareness
        with pytest.raises(IncidentError, match="before the incident's first finding"):
            book.set_clock(s, oa, "awareness", first - timedelta(minutes=1), actor="dpo", reason="guess")
        with pytest.raises(IncidentError, match="in the future"):
            book.set_clock(s, oa, "awareness", now + timedelta(hours=1), actor="dpo", reason="typo")
        with pytest.raises(IncidentError, match="say why"):
            book.set_clock(s, oa, "awareness", first + timedelta(hours=2), actor="dpo", reason=" ")
        with pytest.raises(IncidentError, match="unknown clock event"):
            book.set_clock(s, oa, "awarenes", first + timedelta(hours=2), actor="dpo", reason="x")
        assert book.build_facts(s.con, oa).awareness == before  # refusals changed nothing
        # Set after the fact: the organisation became aware when the SOC escalated, 2 h after the leak.
        aware = first + timedelta(hours=2)
        old = book.set_clock(s, oa, "awareness", aware, actor="dpo", reason="SOC escalation ticket INC-42")
        assert old == before
        assert book.build_facts(s.con, oa).awareness == aware
        row = audit.list_rows(s.con, incident_id=oa)[-1]
        assert row["action"] == "clock.awareness" and row["actor"] == "dpo" and row["reason"] == "SOC escalation ticket INC-42"


def test_responder_facts_refuse_raw_personal_data(scanned):
    db, _ = scanned
    with Store.open(db) as s:
        oa, _ = _two_incidents(s)
        book.set_fact(s, oa, "likely_consequences", "phishing of the affected customers", actor="dpo")
        with pytest.raises(IncidentError, match="EMAIL_ADDRESS") as e:
            book.set_fact(s, oa, "measures", f"wrote to {EMAILS[0]} already", actor="dpo")
        assert EMAILS[0] not in str(e.value)
        facts = book.build_facts(s.con, oa)
        assert facts.responder == {"likely_consequences": "phishing of the affected customers"}
        assert EMAILS[0] not in json.dumps([r["detail"] for r in audit.list_rows(s.con)])


def test_open_by_hand_takes_findings_from_their_incident(scanned):
    db, _ = scanned
    with Store.open(db) as s:
        oa, _ = _two_incidents(s)
        fids = [r[0] for r in s.con.execute("SELECT finding_id FROM incident_findings WHERE incident_id = ? ORDER BY 1 LIMIT 2",
                                            [oa]).fetchall()]
        new = book.open_incident(s, title="Escalated by the DPO", finding_ids=fids, actor="dpo", reason="customer complaint")
        assert {r[0] for r in s.con.execute("SELECT finding_id FROM incident_findings WHERE incident_id = ?", [new]).fetchall()} == set(fids)
        assert book.get(s.con, new)["origin"] == "manual"
        with pytest.raises(IncidentError, match="no finding with id 999999"):
            book.open_incident(s, title="x", finding_ids=[999999], actor="dpo")
        with pytest.raises(IncidentError, match="no incident 4242"):
            book.get(s.con, 4242)


def test_every_free_text_input_refuses_raw_values(scanned):
    db, _ = scanned
    with Store.open(db) as s:
        oa, an = _two_incidents(s)
        n_audit = len(audit.list_rows(s.con, limit=10_000))
        raw = EMAILS[1]
        attempts = [
            lambda: book.set_clock(s, oa, "awareness", book.get(s.con, oa)["first_seen"] + timedelta(hours=1),
                                   actor="dpo", reason=f"customer {raw} phoned"),
            lambda: book.open_incident(s, title=f"Leak of {raw}", finding_ids=[1], actor="dpo"),
            lambda: book.set_status(s, oa, "triaged", actor="dpo", reason=f"asked {raw}"),
            lambda: book.merge(s, oa, [an], actor="dpo", reason=f"same as {raw}"),
            lambda: book.split(s, oa, title=f"{raw} part", where={"entity": "PHONE_NUMBER"}, actor="dpo"),
            lambda: book.record_notice(s, oa, "gdpr-33", "gdpr-33", sent_at=datetime.now(UTC), actor="dpo",
                                       reference=f"reply to {raw}"),
            lambda: book.set_fact(s, oa, "measures", [f"emailed {raw}"], actor="dpo"),
            lambda: book.set_fact(s, oa, "measures", {"who": raw}, actor="dpo"),
            lambda: book.set_step(s, oa, "ai-egress-pii-leak", "triage", "done", actor="dpo",
                                  evidence={raw: "contacted"}),
            lambda: book.set_step(s, oa, "ai-egress-pii-leak", "triage", "skipped", actor="dpo", reason=f"{raw} said so"),
        ]
        for i, attempt in enumerate(attempts):
            with pytest.raises(IncidentError, match="EMAIL_ADDRESS") as e:
                attempt()
            assert raw not in str(e.value), i
        assert len(audit.list_rows(s.con, limit=10_000)) == n_audit  # nothing was recorded
        dump = json.dumps([list(r) for r in s.con.execute("SELECT * FROM audit_log").fetchall()], default=str)
        dump += json.dumps([list(r) for r in s.con.execute("SELECT * FROM incidents").fetchall()], default=str)
        assert raw not in dump


def test_merge_carries_notices_facts_and_steps_and_refuses_a_closed_target(scanned):
    db, _ = scanned
    with Store.open(db) as s:
        oa, an = _two_incidents(s)
        sent = datetime.now(UTC)  # after awareness (a notice cannot go out before it)
        book.record_notice(s, an, "gdpr-33", "gdpr-33", sent_at=sent, actor="dpo", deadline_id="notify")
        book.set_fact(s, an, "likely_consequences", "phishing", actor="dpo")
        book.set_step(s, an, "ai-egress-pii-leak", "stop-flow", "in_progress", actor="eng")
        book.merge(s, oa, [an], actor="lead")
        facts = book.build_facts(s.con, oa)
        assert facts.notices_sent["gdpr-33:notify"] == sent.replace(microsecond=facts.notices_sent["gdpr-33:notify"].microsecond)
        assert facts.responder["likely_consequences"] == "phishing"
        assert ("ai-egress-pii-leak", "stop-flow") in book.step_states(s.con, oa)
        other = book.open_incident(s, title="x", finding_ids=[s.con.execute(
            "SELECT min(finding_id) FROM incident_findings WHERE incident_id = ?", [oa]).fetchone()[0]], actor="dpo")
        book.set_status(s, other, "closed", actor="dpo", reason="false positive")
        with pytest.raises(IncidentError, match="is closed"):
            book.merge(s, other, [oa], actor="lead")


def test_a_notice_cannot_be_recorded_as_sent_before_awareness(scanned, cli):
    """A notice "sent" before anyone knew of the breach would mark the deadline met; and a
    deadline id the regime does not have is refused, naming the ones it has."""
    db, _ = scanned
    with Store.open(db) as s:
        oa, _ = _two_incidents(s)
        aware = book.build_facts(s.con, oa).awareness
        with pytest.raises(IncidentError, match="before the incident's awareness"):
            book.record_notice(s, oa, "gdpr-33", "gdpr-33", sent_at=aware - timedelta(days=1), actor="dpo")
        assert book.build_facts(s.con, oa).notices_sent == {}
    r = cli("incidents", "--db", db, "notice-sent", oa, "--regime", "nis2", "--deadline", "nosuch", "--reference", "X3")
    assert r.rc == 2 and "no such deadline" in r.err and "early-warning" in r.err


def test_a_merge_that_moves_awareness_back_is_checked_and_audited_like_set_awareness(scanned):
    """The earliest awareness of merged incidents wins; a move that puts deadlines in the past
    needs the same acceptance set-awareness asks for, and the audit row says from/to."""
    from leakwatch.incidents.clocks import overdue_check
    from leakwatch.incidents.regimes import load_regimes

    db, _ = scanned
    cfg = load_config(None, env={})
    regimes = load_regimes()
    with Store.open(db) as s:
        oa, an = _two_incidents(s)
        early = book.get(s.con, an)["first_seen"] + timedelta(minutes=5)  # 2026-03: months ago
        book.set_clock(s, an, "awareness", early, actor="dpo", reason="on-call saw the dashboard",
                       check=overdue_check(cfg, regimes, datetime.now(UTC), True))
        before = book.build_facts(s.con, oa).awareness
        with pytest.raises(IncidentError, match="already past"):
            book.merge(s, oa, [an], actor="lead", check=overdue_check(cfg, regimes, datetime.now(UTC), False))
        assert book.build_facts(s.con, oa).awareness == before and book.get(s.con, an)["merged_into"] is None
        book.merge(s, oa, [an], actor="lead", reason="same root cause",
                   check=overdue_check(cfg, regimes, datetime.now(UTC), True))
        row = [r for r in audit.list_rows(s.con, incident_id=oa) if r["action"] == "incident.merged"][-1]
        detail = row["detail"] if isinstance(row["detail"], dict) else json.loads(row["detail"])
        assert datetime.fromisoformat(detail["clocks"]["awareness"]["to"]) == early
        assert datetime.fromisoformat(detail["clocks"]["awareness"]["from"]) == before
        assert "awareness" in detail["accepted"]
