"""Triggers: [[notify.rules]] turned into outbox rows. Real scans of JSON-lines logs with customer
data sent to an AI vendor, real incident grouping and playbook steps, a real DuckDB file; the
outbox rows are read back as stored. Nothing is patched."""
from __future__ import annotations

import json
import os
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from leakwatch.config import load_config
from leakwatch.errors import StoreError
from leakwatch.incidents import book
from leakwatch.incidents.playbooks import load_playbooks, select_playbooks
from leakwatch.incidents.regimes import load_regimes
from leakwatch.notify import triggers
from leakwatch.notify.webhook_verify import new_secret
from leakwatch.pipeline import scan_paths
from leakwatch.store import Store

EMAILS = [f"customer{i}.tester@example.com" for i in range(6)]
PHONES = ["+44 7700 900123", "+44 7700 900456"]
T0 = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
SEVERITIES = ("info", "low", "medium", "high", "critical")


def write_logs(path, start: datetime, n: int = 6) -> None:
    lines = []
    for i in range(n):
        content = f"Summarise the complaint of {EMAILS[i % len(EMAILS)]} (phone {PHONES[i % 2]}) about order 1234567890"
        lines.append(json.dumps({"ts": (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"), "level": "info",
                                 "msg": "llm request", "url": "https://api.openai.com/v1/chat/completions",
                                 "body": {"model": "x", "messages": [{"role": "user", "content": content}]}}))
    path.write_text("\n".join(lines) + "\n")


def make_config(tmp_path, rules: str, targets=("soc", "tickets", "chat")):
    """A config with webhook targets (never contacted here: these tests look at the outbox)."""
    os.environ["LW_TEST_TRIGGER_SECRET"] = new_secret()
    text = "[notify]\n"
    for i, name in enumerate(targets):
        text += textwrap.dedent(f"""
            [[notify.targets]]
            name = "{name}"
            kind = "webhook"
            url = "http://127.0.0.1:9/{i}"
            credentials = {{ secret = "LW_TEST_TRIGGER_SECRET" }}
            """)
    path = tmp_path / "leakwatch.toml"
    path.write_text(text + textwrap.dedent(rules))
    return load_config(path, env={})


@pytest.fixture
def scanned(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    write_logs(logs / "app-openai.jsonl", T0)
    db = tmp_path / "lw.duckdb"
    summary = scan_paths([str(logs)], db, store_raw=False)
    assert summary.total_findings > 0
    return db


def pii_incident(store, cfg) -> int:
    """Group, and return the "Customer PII in AI prompts" incident (the playbook for it has
    steps with and without a notify action). The other one is closed: closed incidents have no
    deadline notices, and one incident keeps the expected keys short."""
    res = book.group(store, cfg, now=T0 + timedelta(hours=1))
    iid = next(i for i in res.opened if "PII" in book.get(store.con, i)["title"])
    for other in res.opened:
        if other != iid:
            book.set_status(store, other, "closed", actor="alice", reason="duplicate", now=T0 + timedelta(hours=1))
    return iid


def outbox_rows(store):
    cur = store.con.execute("SELECT idempotency_key, incident_id, target, event, payload, status FROM outbox ORDER BY notification_id")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def severity_of(store, iid) -> str:
    return store.con.execute("SELECT severity FROM incidents WHERE incident_id = ?", [iid]).fetchone()[0]


def test_incident_opened_at_and_above_min_severity_enqueues_per_target(tmp_path, scanned):
    # The sample opens two incidents: "AI gateway bypassed" (critical: a P1 alert) and
    # "Customer PII in AI prompts" (high).
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        name = "high and up"
        on = ["incident.opened"]
        min_severity = "high"
        targets = ["soc", "tickets"]

        [[notify.rules]]
        name = "critical only"
        on = ["incident.opened"]
        min_severity = "critical"
        targets = ["chat"]
        """)
    with Store.open(scanned) as store:
        res = book.group(store, cfg, now=T0 + timedelta(hours=1), notify=triggers.hook(cfg, store.key))
        sev = {iid: severity_of(store, iid) for iid in res.opened}
        assert sorted(sev.values()) == ["critical", "high"]
        crit = next(i for i, v in sev.items() if v == "critical")
        high = next(i for i, v in sev.items() if v == "high")
        rows = outbox_rows(store)
        assert sorted(r["idempotency_key"] for r in rows) == sorted([
            f"incident.opened:{crit}:soc:", f"incident.opened:{crit}:tickets:", f"incident.opened:{crit}:chat:",
            f"incident.opened:{high}:soc:", f"incident.opened:{high}:tickets:"])  # high is below "critical only"
        assert {r["event"] for r in rows} == {"incident.opened"} and {r["status"] for r in rows} == {"pending"}
        body = json.loads(next(r for r in rows if r["incident_id"] == high)["payload"])
        assert body["type"] == "incident.opened"
        assert body["data"]["incident"]["id"] == high and body["data"]["incident"]["severity"] == "high"
        assert body["data"]["counts"]["findings"] > 0 and body["data"]["masked_examples"]
        assert any(d["regime"] == "gdpr-33" for d in body["data"]["deadlines"])
        # Masked values only: no raw e-mail address or phone number of the logs in any payload.
        for r in rows:
            for raw in EMAILS + PHONES:
                assert raw not in r["payload"]
        # The audit trail says what was queued, in the same transaction.
        queued = store.con.execute("SELECT incident_id, count(*) FROM audit_log WHERE action = 'notify.queued' "
                                   "GROUP BY ALL ORDER BY 1").fetchall()
        assert dict(queued) == {crit: 3, high: 2}
        # Grouping again opens nothing, so nothing more is queued.
        book.group(store, cfg, now=T0 + timedelta(hours=2), notify=triggers.hook(cfg, store.key))
        assert len(outbox_rows(store)) == 5


def test_notifications_roll_back_with_the_incident(tmp_path, scanned):
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        on = ["incident.opened"]
        targets = ["soc"]
        """)
    with Store.open(scanned) as store:
        inner = triggers.hook(cfg, store.key)

        def failing(con, event, iid, extra):
            inner(con, event, iid, extra)
            assert con.execute("SELECT count(*) FROM outbox WHERE incident_id = ?", [iid]).fetchone()[0] == 1  # not committed
            con.execute("SELECT * FROM no_such_table")  # the incident change fails after the enqueue

        with pytest.raises(StoreError):
            book.group(store, cfg, now=T0 + timedelta(hours=1), notify=failing)
        assert store.con.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        assert store.con.execute("SELECT count(*) FROM incidents").fetchone()[0] == 0
        # And when the change commits, so does the notification.
        res = book.group(store, cfg, now=T0 + timedelta(hours=1), notify=inner)
        assert [r["idempotency_key"] for r in outbox_rows(store)] == [f"incident.opened:{i}:soc:" for i in res.opened]


def _gdpr33_due(store, cfg, iid) -> datetime:
    facts = book.build_facts(store.con, iid, cfg, load_regimes())
    dls = [d for d in triggers.open_deadlines(facts, load_regimes(), T0) if d["regime"] == "gdpr-33"]
    assert dls, "GDPR Art. 33 applies to EU customers' data"
    return dls[0]["due"]


def test_deadline_approaching_at_12h_and_2h_and_missed_fire_once_each(tmp_path, scanned):
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        on = ["deadline.approaching", "deadline.missed"]
        before = ["12h", "2h"]
        regimes = ["gdpr-33"]
        targets = ["soc"]
        """)
    with Store.open(scanned) as store:
        iid = pii_incident(store, cfg)
        due = _gdpr33_due(store, cfg, iid)

        def fire(at: datetime) -> list[str]:
            before = {r["idempotency_key"] for r in outbox_rows(store)}
            n = triggers.fire_deadlines(store, cfg, now=at)
            new = [r["idempotency_key"] for r in outbox_rows(store) if r["idempotency_key"] not in before]
            assert n == len(new)
            return new

        stamp = due.strftime("%Y%m%dT%H%MZ")
        assert fire(due - timedelta(hours=13)) == []                      # not yet
        assert fire(due - timedelta(hours=11, minutes=59)) == [f"deadline.approaching:{iid}:soc:gdpr-33.notify:12h:{stamp}"]
        assert fire(due - timedelta(hours=6)) == []                       # 12 h notice already sent
        assert fire(due - timedelta(hours=2)) == [f"deadline.approaching:{iid}:soc:gdpr-33.notify:2h:{stamp}"]
        assert fire(due - timedelta(minutes=30)) == []
        assert fire(due + timedelta(minutes=1)) == [f"deadline.missed:{iid}:soc:gdpr-33.notify:{stamp}"]
        assert fire(due + timedelta(hours=5)) == []                       # missed fires once
        rows = {r["idempotency_key"]: json.loads(r["payload"]) for r in outbox_rows(store)}
        body = rows[f"deadline.approaching:{iid}:soc:gdpr-33.notify:2h:{stamp}"]["data"]
        assert body["detail"]["regime"] == "gdpr-33" and body["detail"]["before"] == "2h"
        assert "due" in body["subject"] and "gdpr-33" in body["subject"]
        assert "MISSED" in rows[f"deadline.missed:{iid}:soc:gdpr-33.notify:{stamp}"]["data"]["subject"]


def test_deadline_first_seen_late_gets_only_the_tighter_notice(tmp_path, scanned):
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        on = ["deadline.approaching"]
        regimes = ["gdpr-33"]
        targets = ["soc"]
        """)  # before defaults to 12h and 2h
    with Store.open(scanned) as store:
        iid = pii_incident(store, cfg)
        due = _gdpr33_due(store, cfg, iid)
        assert triggers.fire_deadlines(store, cfg, now=due - timedelta(hours=1)) == 1
        assert [r["idempotency_key"].split(":")[4] for r in outbox_rows(store)] == ["2h"]
        assert triggers.fire_deadlines(store, cfg, now=due - timedelta(minutes=5)) == 0


def test_a_recorded_notice_stops_deadline_notifications(tmp_path, scanned):
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        on = ["deadline.approaching", "deadline.missed"]
        regimes = ["gdpr-33"]
        targets = ["soc"]
        """)
    with Store.open(scanned) as store:
        iid = pii_incident(store, cfg)
        due = _gdpr33_due(store, cfg, iid)
        sent = book.build_facts(store.con, iid).awareness + timedelta(hours=2)  # after awareness, before the deadline
        book.record_notice(store, iid, "gdpr-33", "gdpr-33", deadline_id="notify", sent_at=sent, actor="dpo", now=sent)
        assert triggers.fire_deadlines(store, cfg, now=due - timedelta(hours=1)) == 0
        assert triggers.fire_deadlines(store, cfg, now=due + timedelta(hours=1)) == 0
        assert outbox_rows(store) == []


def test_step_with_notify_action_fires_and_step_without_does_not(tmp_path, scanned):
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        on = ["step.notify"]
        targets = ["tickets"]
        """)
    with Store.open(scanned) as store:
        iid = pii_incident(store, cfg)
        facts = book.build_facts(store.con, iid, cfg, load_regimes())
        pb = select_playbooks(load_playbooks(), facts)[0]
        with_notify = next(s for s in pb.steps if s.notify is not None)
        without = next(s for s in pb.steps if s.notify is None)
        hook = triggers.hook(cfg, store.key)
        book.set_step(store, iid, pb.id, without.id, "in_progress", actor="alice", now=T0 + timedelta(hours=2), notify=hook)
        assert outbox_rows(store) == []
        book.set_step(store, iid, pb.id, with_notify.id, "in_progress", actor="alice", now=T0 + timedelta(hours=2),
                      notify=hook)
        rows = outbox_rows(store)
        assert [r["idempotency_key"] for r in rows] == [f"step.notify:{iid}:tickets:{pb.id}.{with_notify.id}:pending->in_progress"]
        detail = json.loads(rows[0]["payload"])["data"]["detail"]
        assert detail["step"] == with_notify.id and detail["status"] == "in_progress"
        assert detail["notify_regime"] == with_notify.notify.regime
        book.set_step(store, iid, pb.id, with_notify.id, "done", actor="alice", now=T0 + timedelta(hours=3), notify=hook)
        keys = [r["idempotency_key"] for r in outbox_rows(store)]
        assert keys[-1] == f"step.notify:{iid}:tickets:{pb.id}.{with_notify.id}:in_progress->done"


def test_rules_regime_filter_limits_step_notifications(tmp_path, scanned):
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        on = ["step.notify"]
        regimes = ["hipaa"]
        targets = ["tickets"]
        """)
    with Store.open(scanned) as store:
        iid = pii_incident(store, cfg)
        facts = book.build_facts(store.con, iid, cfg, load_regimes())
        pb = select_playbooks(load_playbooks(), facts)[0]
        step = next(s for s in pb.steps if s.notify is not None and s.notify.regime != "hipaa")
        book.set_step(store, iid, pb.id, step.id, "in_progress", actor="alice", now=T0 + timedelta(hours=2),
                      notify=triggers.hook(cfg, store.key))
        assert outbox_rows(store) == []


def test_a_changed_awareness_time_withdraws_the_queued_notice_of_the_old_deadline(tmp_path, scanned):
    """A 12 h notice queued while the SOC's endpoint was down named the old due time; after the
    awareness time was corrected it was still sent. It is withdrawn (audited) and the next
    deadline pass queues the notice of the new due time."""
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        on = ["deadline.approaching", "deadline.missed"]
        before = ["12h"]
        regimes = ["gdpr-33"]
        targets = ["soc"]
        """)
    with Store.open(scanned) as store:
        iid = pii_incident(store, cfg)
        due = _gdpr33_due(store, cfg, iid)
        at = due - timedelta(hours=11)
        assert triggers.fire_deadlines(store, cfg, now=at) == 1
        aware = due - timedelta(hours=72)  # GDPR Art. 33: 72 h from awareness
        book.set_clock(store, iid, "awareness", aware + timedelta(hours=30), actor="alice",
                       reason="the SOC confirmed the leak only the next day", now=at)
        assert [r for r in outbox_rows(store) if r["event"].startswith("deadline.")] == []
        actions = [a for (a,) in store.con.execute("SELECT action FROM audit_log WHERE incident_id = ?", [iid]).fetchall()]
        assert "notify.superseded" in actions
        # 30 h later the new due time is 41 h away: no 12 h notice yet, and none of the old one.
        assert triggers.fire_deadlines(store, cfg, now=at) == 0
        new_due = _gdpr33_due(store, cfg, iid)
        assert new_due == due + timedelta(hours=30)
        assert triggers.fire_deadlines(store, cfg, now=new_due - timedelta(hours=11)) == 1


def test_an_incident_opened_by_hand_or_split_off_is_notified(tmp_path, scanned):
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        on = ["incident.opened"]
        targets = ["soc"]
        """)
    with Store.open(scanned) as store:
        fids = [r[0] for r in store.con.execute("SELECT finding_id FROM findings ORDER BY finding_id").fetchall()]
        hook = triggers.hook_for(cfg, store, clock=lambda: T0 + timedelta(hours=1))
        iid = book.open_incident(store, title="Prompt leak reported by the SOC", finding_ids=fids, actor="alice",
                                 now=T0 + timedelta(hours=1), notify=hook)
        new = book.split(store, iid, title="The phone numbers", where={"entity": "PHONE_NUMBER"}, actor="alice",
                         now=T0 + timedelta(hours=1), notify=hook)
        opened = [(r["incident_id"], r["event"]) for r in outbox_rows(store)]
    assert opened == [(iid, "incident.opened"), (new, "incident.opened")]


def test_a_custom_playbooks_step_notifies_as_its_file_says(tmp_path, scanned):
    """`incidents playbook --dir` with a step of one's own ("notify-bafin") that carries a notify
    action: the hook looked the step up in the shipped playbooks and queued nothing."""
    import shutil

    from leakwatch.incidents.playbooks import default_playbooks_dir

    custom = tmp_path / "playbooks"
    shutil.copytree(default_playbooks_dir(), custom)
    path = custom / "ai-egress-pii-leak.yaml"
    text = path.read_text()
    anchor = "  - id: notify-authority\n"
    assert anchor in text
    step = ("  - id: notify-bafin\n"
            "    title: Tell BaFin (our own step)\n"
            "    role: dpo\n"
            "    when: {regime_applies: gdpr-33}\n"
            "    notify: {regime: gdpr-33, template: gdpr-33}\n"
            "    evidence: [submission reference]\n\n")
    path.write_text(text.replace(anchor, step + anchor, 1))
    cfg = make_config(tmp_path, """
        [[notify.rules]]
        on = ["step.notify"]
        targets = ["tickets"]
        """)
    playbooks = load_playbooks(custom)
    with Store.open(scanned) as store:
        iid = pii_incident(store, cfg)
        pb = select_playbooks(playbooks, book.build_facts(store.con, iid, cfg, load_regimes()))[0]
        assert any(s.id == "notify-bafin" for s in pb.steps)
        hook = triggers.hook_for(cfg, store, playbooks=playbooks)
        book.set_step(store, iid, pb.id, "notify-bafin", "in_progress", actor="alice", now=T0 + timedelta(hours=2),
                      notify=hook)
        keys = [r["idempotency_key"] for r in outbox_rows(store)]
    assert keys == [f"step.notify:{iid}:tickets:{pb.id}.notify-bafin:pending->in_progress"]
