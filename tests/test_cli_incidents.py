"""The incident commands as a responder runs them: ``leakwatch scan`` → ``incidents group`` →
``clocks`` → ``set-awareness`` → ``playbook`` → ``notice`` → ``audit verify``, each a real
subprocess on a real database, checking exit codes, output and what was (not) stored."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leakwatch.exit_codes import ExitCode

RAW = ["olivia.tester@example.com", "noah.tester@example.com", "+44 7700 900123", "AB123456C"]


def lw(*args, env_extra=None, check_rc=None):
    env = {**os.environ, "LEAKWATCH_USER": "test-responder", "COLUMNS": "200"}
    env.pop("LEAKWATCH_CONFIG", None)
    env.update(env_extra or {})
    p = subprocess.run([sys.executable, "-m", "leakwatch", *args], capture_output=True, text=True, env=env, timeout=180)
    if check_rc is not None:
        assert p.returncode == check_rc, (args, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-incidents")
    log = d / "app.jsonl"
    t0 = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    lines = []
    for i in range(8):
        content = (f"Customer {RAW[i % 2]} (phone {RAW[2]}, NINO {RAW[3]}) asks about a refund")
        lines.append(json.dumps({"ts": (t0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
                                 "url": "https://api.openai.com/v1/chat/completions",
                                 "body": {"messages": [{"role": "user", "content": content}]}}))
    log.write_text("\n".join(lines) + "\n")
    path = d / "lw.duckdb"
    lw("scan", str(log), "--db", str(path), "-q", check_rc=ExitCode.FINDINGS)
    p = lw("incidents", "group", "--db", str(path), check_rc=ExitCode.OK)
    assert "incident(s) opened" in p.stdout
    return path


def _incident(db) -> int:
    rows = json.loads(lw("incidents", "list", "--db", str(db), "--json", check_rc=0).stdout)
    return next(r["incident_id"] for r in rows if r["n_findings"])


def _copy_db(db, to):
    """A copy of the module's database (with its key) for a test that changes it: what one test
    records would otherwise change what a later one reads."""
    shutil.copy(db, to)
    shutil.copy(str(db) + ".key", str(to) + ".key")
    return to


def test_list_and_show_never_print_raw_values(db):
    p = lw("incidents", "--db", str(db), check_rc=0)
    assert "OpenAI" in p.stdout
    iid = _incident(db)
    show = lw("incidents", "show", str(iid), "--db", str(db), "--tz", "Europe/Paris", check_rc=0).stdout
    assert "gdpr-33" in show and "uk-gdpr" in show          # EU establishment; a UK NINO in the data
    assert "UTC" in show and ("CET" in show or "CEST" in show)
    for raw in RAW:
        assert raw not in show


def test_clocks_json_has_absolute_deadlines(db):
    iid = _incident(db)
    out = json.loads(lw("clocks", str(iid), "--db", str(db), "--json", check_rc=0).stdout)
    aware = datetime.fromisoformat(out["awareness_utc"])
    gdpr = next(r for r in out["regimes"] if r["regime"] == "gdpr-33")
    assert gdpr["applies"] is True and gdpr["reasons"]
    notify = gdpr["deadlines"][0]
    assert datetime.fromisoformat(notify["due_utc"]) == aware + timedelta(hours=72)
    assert 0 < notify["seconds_left"] <= 72 * 3600


def test_backdated_awareness_needs_accept_overdue_and_refusal_changes_nothing(db):
    iid = _incident(db)
    before = json.loads(lw("clocks", str(iid), "--db", str(db), "--json", check_rc=0).stdout)["awareness_utc"]
    p = lw("incidents", "set-awareness", str(iid), "2026-03-11T10:00Z", "--reason", "ticket INC-7", "--db", str(db),
           check_rc=ExitCode.INPUT_ERROR)
    assert "already past" in p.stderr and "gdpr-33" in p.stderr and "--accept-overdue" in p.stderr
    assert json.loads(lw("clocks", str(iid), "--db", str(db), "--json", check_rc=0).stdout)["awareness_utc"] == before
    p = lw("incidents", "set-awareness", str(iid), "2026-03-11T08:00Z", "--reason", "x", "--db", str(db),
           check_rc=ExitCode.INPUT_ERROR)
    assert "before the incident's first finding" in p.stderr
    lw("incidents", "set-awareness", str(iid), "2026-03-11T10:00Z", "--reason", "ticket INC-7", "--accept-overdue",
       "--db", str(db), check_rc=0)
    out = json.loads(lw("clocks", str(iid), "--db", str(db), "--json", check_rc=0).stdout)
    assert out["awareness_utc"].startswith("2026-03-11T10:00:00")
    gdpr = next(r for r in out["regimes"] if r["regime"] == "gdpr-33")
    assert gdpr["deadlines"][0]["status"] == "overdue"
    audit = json.loads(lw("audit", "list", "--incident", str(iid), "--db", str(db), "--json", check_rc=0).stdout)
    assert audit[-1]["action"] == "clock.awareness" and audit[-1]["actor"] == "test-responder"
    assert audit[-1]["reason"] == "ticket INC-7"
    lw("audit", "verify", "--db", str(db), check_rc=ExitCode.OK)


def test_ack_then_status_and_errors_exit_2(db):
    iid = _incident(db)
    lw("incidents", "ack", str(iid), "--db", str(db), "--as", "alice", check_rc=0)
    p = lw("incidents", "status", str(iid), "detected", "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert "only moves forward" in p.stderr
    p = lw("incidents", "show", "999", "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert "no incident 999" in p.stderr
    p = lw("clocks", str(iid), "--db", str(db), "--tz", "Europe/Pariss", check_rc=ExitCode.INPUT_ERROR)
    assert "unknown time zone 'Europe/Pariss'" in p.stderr and "Europe/Paris" in p.stderr
    p = lw("incidents", "fact", str(iid), "measures", f"called {RAW[0]}", "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert "EMAIL_ADDRESS" in p.stderr and RAW[0] not in p.stderr
    p = lw("incidents", "list", "--db", str(db.parent / "missing.duckdb"), check_rc=ExitCode.INPUT_ERROR)
    assert "no such database" in p.stderr


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("subject_jurisdictions", '["GB", "DE"]', "write the United Kingdom as UK"),  # made UK GDPR not apply
    ("subject_jurisdictions", '["MARS"]', "'MARS' is not a jurisdiction code"),
    ("subject_jurisdictions", '["EU",', "expected a JSON list of jurisdiction codes"),
    ("significant", "maybe", "expected yes or no"),  # was read as yes for NIS2
    ("significant", "ja", "expected yes or no"),
    ("subjects.US-CA", "-5", "a whole number from 0"),
    ("subjects.US-CA", "1e400", "a whole number from 0"),
    ("subjects.Mars", "5", "not a jurisdiction code"),
])
def test_a_fact_the_regimes_would_misread_is_refused(db, key, value, needle):
    iid = _incident(db)
    before = lw("incidents", "show", str(iid), "--db", str(db), "--json", check_rc=0).stdout
    p = lw("incidents", "fact", str(iid), key, value, "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert needle in p.stderr, p.stderr
    assert lw("incidents", "show", str(iid), "--db", str(db), "--json", check_rc=0).stdout == before  # nothing recorded


def test_facts_the_regimes_read_are_recorded(tmp_path, db):
    # On a copy: counts recorded here would change the module database's notices for later tests.
    db = _copy_db(db, tmp_path / "f.duckdb")
    iid = _incident(db)
    lw("incidents", "fact", str(iid), "subject_jurisdictions", '[" eu", "UK", "US-CA"]', "--db", str(db), check_rc=0)
    lw("incidents", "fact", str(iid), "significant", "yes", "--db", str(db), check_rc=0)
    lw("incidents", "fact", str(iid), "subjects.UK", "40", "--db", str(db), check_rc=0)
    lw("incidents", "fact", str(iid), "subjects.us-ca", "12", "--db", str(db), check_rc=0)
    shown = json.dumps(json.loads(lw("incidents", "show", str(iid), "--db", str(db), "--json", check_rc=0).stdout))
    assert "significant" in shown and '"EU", "UK", "US-CA"' in shown  # " eu" stored as the regimes read it
    assert "subjects.US-CA" in shown and "subjects.us-ca" not in shown


def test_no_action_and_db_before_action(db):
    # --db before the action is kept (the action's own options must not reset it).
    p = lw("incidents", "--db", str(db), "list", "--json", check_rc=0)
    assert json.loads(p.stdout)


def test_gdpr33_notice_from_a_real_scan_has_each_item_and_no_raw_value(db, tmp_path):
    iid = _incident(db)
    lw("incidents", "fact", str(iid), "likely_consequences", "targeted phishing of the affected customers",
       "--db", str(db), check_rc=0)
    out = tmp_path / "notice.md"
    p = lw("notice", str(iid), "--regime", "gdpr-33", "--out", str(out), "--db", str(db),
           env_extra={"LEAKWATCH_ORGANISATION_NAME": "Acme Shop GmbH",
                      "LEAKWATCH_ORGANISATION_CONTACT_POINT": "DPO, dpo@acme-shop.example, +49 30 1234567"},
           check_rc=0)
    text = out.read_text()
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    for item in ("Art. 33(3)(a)", "Art. 33(3)(b)", "Art. 33(3)(c)", "Art. 33(3)(d)", "Acme Shop GmbH",
                 "targeted phishing of the affected customers", "dpo@acme-shop.example"):
        assert item in text, item
    facts = json.loads(lw("incidents", "show", str(iid), "--db", str(db), "--json", check_rc=0).stdout)
    assert f"Approximate number of data subjects: {facts['data_subjects']}" in text
    assert f"Approximate number of personal data records: {facts['records']}" in text
    for raw in RAW:
        assert raw not in text
    # Measures are still unknown: listed, not invented; the CLI says so on stderr.
    assert "measures" in p.stderr and "[STILL UNKNOWN]" in text


def test_playbook_steps_need_evidence_and_are_audited(db):
    iid = _incident(db)
    steps = json.loads(lw("playbook", str(iid), "--db", str(db), "--json", check_rc=0).stdout)["steps"]
    first = next(s for s in steps if s["evidence"])
    p = lw("playbook", str(iid), "--step", first["step"], "--done", "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert "evidence" in p.stderr
    ev = [f"--evidence={item}=see INC-42" for item in first["evidence"]]
    lw("playbook", str(iid), "--step", first["step"], "--done", *ev, "--db", str(db), check_rc=0)
    steps = json.loads(lw("playbook", str(iid), "--db", str(db), "--json", check_rc=0).stdout)["steps"]
    assert next(s for s in steps if s["step"] == first["step"])["state"] == "done"
    p = lw("playbook", str(iid), "--step", "no-such-step", "--start", "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert "no step 'no-such-step'" in p.stderr
    rows = json.loads(lw("audit", "list", "--incident", str(iid), "--db", str(db), "--json", check_rc=0).stdout)
    assert rows[-1]["action"] == "step.done" and json.loads(rows[-1]["detail"])["step"] == first["step"]
    lw("audit", "verify", "--db", str(db), check_rc=0)


def test_step_whose_condition_is_not_met_is_refused_unless_skipped(db):
    iid = _incident(db)
    steps = {s["step"]: s for s in json.loads(lw("playbook", str(iid), "--db", str(db), "--json", check_rc=0).stdout)["steps"]}
    assert steps["vendor-deletion"]["applies"] is False  # waits for stop-flow
    ev = [f"--evidence={item}=ref 7" for item in steps["vendor-deletion"]["evidence"]]
    p = lw("playbook", str(iid), "--step", "vendor-deletion", "--done", *ev, "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert "condition is not met" in p.stderr
    p = lw("playbook", str(iid), "--step", "stop-flow", "--done", "--evidence=colour=blue", "--db", str(db),
           check_rc=ExitCode.INPUT_ERROR)
    assert "asks for no evidence called 'colour'" in p.stderr
    lw("playbook", str(iid), "--step", "stop-flow", "--done",
       *[f"--evidence={item}=CHG-9" for item in steps["stop-flow"]["evidence"]], "--db", str(db), check_rc=0)
    lw("playbook", str(iid), "--step", "vendor-deletion", "--done", *ev, "--db", str(db), check_rc=0)


def test_raw_values_never_reach_show_or_audit(db):
    iid = _incident(db)
    p = lw("incidents", "status", str(iid), "contained", "--reason", f"called {RAW[1]}", "--db", str(db),
           check_rc=ExitCode.INPUT_ERROR)
    assert RAW[1] not in p.stderr
    show = lw("incidents", "show", str(iid), "--db", str(db), "--json", check_rc=0).stdout
    audit = lw("audit", "list", "--db", str(db), "--json", check_rc=0).stdout
    for raw in RAW:
        assert raw not in show and raw not in audit


def test_closing_says_which_deadlines_are_not_met_and_a_closed_incident_keeps_its_clocks(db, tmp_path):
    copy = _copy_db(db, tmp_path / "lw.duckdb")
    iid = _incident(copy)
    p = lw("incidents", "status", str(iid), "closed", "--reason", "done", "--db", str(copy), check_rc=0)
    assert f"incident {iid} is now closed" in p.stdout
    assert "closed with deadlines not met" in p.stderr and "gdpr-33 notify" in p.stderr
    p = lw("incidents", "set-awareness", str(iid), "2026-03-11T10:00Z", "--reason", "x", "--accept-overdue",
           "--db", str(copy), check_rc=ExitCode.INPUT_ERROR)
    assert "is closed; reopen it" in p.stderr


@pytest.mark.parametrize("name", ["lw.duckdb", "lw.duckdb.key", "app.jsonl"])
def test_notice_out_never_replaces_the_database_its_key_or_a_scanned_log(db, name):
    """--out lw.duckdb replaced the database with the draft (every later command: 'not a DuckDB
    database'); the key file and the scanned evidence log the same."""
    iid = _incident(db)
    target = db.parent / name
    before = target.read_bytes()
    p = lw("notice", str(iid), "--regime", "gdpr-33", "--out", str(target), "--db", str(db),
           check_rc=ExitCode.INPUT_ERROR)
    assert "--out" in p.stderr and str(target) in p.stderr
    assert target.read_bytes() == before
    lw("incidents", "list", "--db", str(db), check_rc=ExitCode.OK)


def test_a_notice_that_cannot_be_written_leaves_no_draft_behind(db, tmp_path):
    iid = _incident(db)
    folder = tmp_path / "adir"
    folder.mkdir()
    lw("notice", str(iid), "--regime", "gdpr-33", "--out", str(folder), "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert [p.name for p in tmp_path.iterdir()] == ["adir"] and not list(folder.iterdir())


def test_notice_out_writes_into_a_pipe_and_through_a_link_without_replacing_them(db, tmp_path):
    """--out /dev/null (as root) renamed the draft over the device node: /dev/null became a plain
    file. A pipe or device is written in place; a symbolic link keeps pointing at its file."""
    import stat

    from helpers import FifoReader

    iid = _incident(db)
    fifo = tmp_path / "notice.pipe"
    reader = FifoReader(fifo)
    lw("notice", str(iid), "--regime", "gdpr-33", "--out", str(fifo), "--db", str(db), check_rc=ExitCode.OK)
    got = [reader.join()]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert "Art. 33" in got[0] or "Article 33" in got[0], got[0][:300]

    real = tmp_path / "drafts" / "notice.md"
    real.parent.mkdir()
    real.write_text("old draft\n")
    link = tmp_path / "latest.md"
    link.symlink_to(real)
    lw("notice", str(iid), "--regime", "gdpr-33", "--out", str(link), "--db", str(db), check_rc=ExitCode.OK)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == got[0]
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["notice.md"]  # no temporary left


def test_playbook_steps_of_a_closed_or_merged_incident_do_not_change(tmp_path, db):
    """Steps were started and skipped on closed and merged incidents (exit 0)."""
    copy = _copy_db(db, tmp_path / "c.duckdb")
    iid = _incident(copy)
    other = lw("incidents", "open", "--title", "second look", "--scan", "1", "--db", str(copy), check_rc=0)
    other_id = int(re.search(r"opened incident (\d+)", other.stdout).group(1))
    assert other_id != iid, other.stdout
    step = json.loads(lw("playbook", str(iid), "--db", str(copy), "--json", check_rc=0).stdout)["steps"][0]["step"]
    lw("incidents", "merge", str(iid), str(other_id), "--db", str(copy), check_rc=0)  # other_id into iid
    p = lw("playbook", str(other_id), "--step", step, "--start", "--db", str(copy), check_rc=ExitCode.INPUT_ERROR)
    assert f"was merged into {iid}" in p.stderr
    lw("incidents", "status", str(iid), "closed", "--reason", "false positive", "--db", str(copy), check_rc=0)
    p = lw("playbook", str(iid), "--step", step, "--skip", "n/a", "--db", str(copy), check_rc=ExitCode.INPUT_ERROR)
    assert "is closed; reopen it" in p.stderr


@pytest.mark.parametrize(("regime", "kind", "rc"), [
    ("hipaa", "gdpr-34", ExitCode.INPUT_ERROR),            # a GDPR letter under HIPAA was drafted
    ("gdpr-33", "nis2-early-warning", ExitCode.INPUT_ERROR),
    ("uk-gdpr", "gdpr-34", ExitCode.OK),                   # same content, the ICO's recipient
    ("nis2", "nis2-final-report", ExitCode.OK),
    ("hipaa", "generic", ExitCode.OK),
])
def test_notice_kind_must_belong_to_the_regime(db, regime, kind, rc):
    iid = _incident(db)
    p = lw("notice", str(iid), "--regime", regime, "--kind", kind, "--db", str(db), check_rc=rc)
    if rc:
        assert f"--kind {kind} is a" in p.stderr and f"not one for --regime {regime}" in p.stderr


def test_a_playbook_folder_that_gives_nothing_says_so(db, tmp_path):
    """An empty --dir, or one whose only playbook does not apply, printed nothing with exit 0."""
    iid = _incident(db)
    empty = tmp_path / "empty"
    empty.mkdir()
    p = lw("playbook", str(iid), "--dir", str(empty), "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert f"no playbooks in {empty}" in p.stderr
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(Path(__file__).parents[1] / "playbooks" / "exposed-ai-api-key.yaml", only)
    p = lw("playbook", str(iid), "--dir", str(only), "--db", str(db), check_rc=ExitCode.INPUT_ERROR)
    assert f"no playbook applies to incident {iid}" in p.stderr and "--playbook" in p.stderr
    lw("playbook", str(iid), "--dir", str(only), "--playbook", "exposed-ai-api-key", "--db", str(db), check_rc=0)


def test_a_notice_never_states_a_scan_time_as_when_the_breach_happened(tmp_path):
    """Lines without a time of their own: the notice said 'The breach happened: on <scan time>'
    and set-awareness refused any time before the scan."""
    log = tmp_path / "app.log"
    log.write_text('{"email": "jane.doe@example.com", "url": "https://api.openai.com/v1/chat/completions"}\n')
    db = tmp_path / "n.duckdb"
    lw("scan", str(log), "--db", str(db), "-q", check_rc=ExitCode.FINDINGS)
    lw("incidents", "group", "--db", str(db), check_rc=0)
    ids = [r["incident_id"] for r in json.loads(lw("incidents", "list", "--db", str(db), "--json", check_rc=0).stdout)]
    assert len(ids) == 2  # the finding's incident, and the gateway-bypass alert's
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for iid in ids:
        p = lw("notice", str(iid), "--regime", "gdpr-33", "--format", "json", "--db", str(db), check_rc=0)
        assert "occurred" in json.loads(p.stdout)["missing"]
        text = lw("notice", str(iid), "--regime", "gdpr-33", "--db", str(db), check_rc=0).stdout
        assert "The breach happened: [STILL UNKNOWN]" in text and "The breach happened: on" not in text
        lw("incidents", "set-awareness", str(iid), an_hour_ago, "--reason", "SOC ticket INC-9", "--db", str(db),
           check_rc=0)


def test_a_done_step_is_reopened_from_the_command_line_with_a_reason(tmp_path, db):
    """Only the console could reopen a step; --start on a done step said 'cannot be reopened
    without a reason' and there was no option to give one."""
    copy = _copy_db(db, tmp_path / "r.duckdb")
    iid = _incident(copy)
    steps = json.loads(lw("playbook", str(iid), "--db", str(copy), "--json", check_rc=0).stdout)["steps"]
    step = next(s for s in steps if s["evidence"] and s["state"] == "pending" and s["applies"] is not False)
    item = step["evidence"][0]
    p = lw("playbook", str(iid), "--step", step["step"], "--done", f"--evidence={item}=INC-1", f"--evidence={item}=INC-2",
           *[f"--evidence={e}=x" for e in step["evidence"][1:]], "--db", str(copy), check_rc=ExitCode.INPUT_ERROR)
    assert f"--evidence {item!r} given twice" in p.stderr  # the trail would have kept only INC-2
    lw("playbook", str(iid), "--step", step["step"], "--done", *[f"--evidence={e}=INC-1" for e in step["evidence"]],
       "--db", str(copy), check_rc=0)
    p = lw("playbook", str(iid), "--step", step["step"], "--reopen", "wrong ticket", "--db", str(copy), check_rc=0)
    assert "is now pending" in p.stdout
    lw("playbook", str(iid), "--step", step["step"], "--start", "--db", str(copy), check_rc=0)
    rows = json.loads(lw("audit", "list", "--incident", str(iid), "--db", str(copy), "--json", check_rc=0).stdout)
    reopened = [r for r in rows if r["action"] == "step.pending"]
    assert reopened and reopened[-1]["reason"] == "wrong ticket"
    lw("audit", "verify", "--db", str(copy), check_rc=0)
