"""Notice drafts, playbooks and the Art. 30 map: defects found by a review against the law's
required content (DOMAIN.md §5); each test failed before its fix."""
from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

from leakwatch.incidents import playbooks as pb

CONFIG = """[organisation]
name = "Acme Shop GmbH"
timezone = "Europe/Berlin"
establishment = ["EU"]
customer_jurisdictions = ["EU", "UK", "US-CA"]
nis2_entity = "important"
hipaa_covered_entity = true
contact_point = "DPO, dpo@acme-shop.example"
lead_authority = "Berliner Beauftragte für Datenschutz und Informationsfreiheit"
"""


def _iso(days: float = 0, hours: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(days=days, hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _setup(cli, tmp_path, lines: list[str], name: str = "llm.jsonl"):
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "lw.toml"
    cfg.write_text(CONFIG)
    db = tmp_path / "r.duckdb"
    assert cli("scan", tmp_path / name, "--db", db, "-q").rc == 1
    assert cli("incidents", "--db", db, "--config", cfg, "group").rc == 0
    rows = json.loads(cli("incidents", "--db", db, "list", "--json").out)
    iid = max(r["incident_id"] for r in rows if r["n_findings"])
    return db, cfg, iid


def _prompt(t: str, content: str) -> str:
    return json.dumps({"ts": t, "url": "https://api.anthropic.com/v1/messages",
                       "body": {"messages": [{"role": "user", "content": content}]}})


def test_a_card_number_typed_as_a_bare_number_fact_is_refused(tmp_path, cli):
    """A JSON number skipped the raw-value check and was printed grouped (4,012,888,888,881,881)
    in the Art. 33 and 34 drafts."""
    db, cfg, iid = _setup(cli, tmp_path, [_prompt(_iso(-1), "contact me at alice@example.net")])
    r = cli("incidents", "--db", db, "--config", cfg, "fact", iid, "likely_consequences", "4012888888881881")
    assert r.rc == 2 and "looks like raw personal data" in r.err
    draft = cli("notice", iid, "--db", db, "--config", cfg, "--regime", "gdpr-33").out
    assert "4,012,888" not in draft and "4012888888881881" not in draft


def test_recorded_special_data_and_state_counts_reach_notices_and_hipaa(tmp_path, cli):
    db, cfg, iid = _setup(cli, tmp_path, [_prompt(_iso(-1), "contact me at alice@example.net, SSN 123-45-6789")])
    assert cli("incidents", "--db", db, "--config", cfg, "fact", iid, "data_categories", "special").rc == 0
    draft = cli("notice", iid, "--db", db, "--config", cfg, "--regime", "gdpr-33").out
    assert "special categories of personal data" in draft
    assert cli("incidents", "--db", db, "--config", cfg, "fact", iid, "subjects.US-CA", "600").rc == 0
    doc = json.loads(cli("clocks", iid, "--db", db, "--config", cfg, "--json").out)
    hipaa = {d["id"]: d["status"] for r in doc["regimes"] if r["regime"] == "hipaa" for d in r["deadlines"]}
    assert hipaa["hhs"] != "not applicable" and hipaa["hhs-annual"] == "not applicable", hipaa
    generic = cli("notice", iid, "--db", db, "--config", cfg, "--regime", "hipaa").out
    # A deadline that does not apply reads so, not "not running yet" (as if it would start later).
    assert "annual report to HHS (fewer than 500 individuals): not applicable to this incident" in generic
    assert "notify HHS (500 or more individuals): 20" in generic


def test_information_after_an_on_time_notification_is_not_drafted_as_late(tmp_path, cli):
    db, cfg, iid = _setup(cli, tmp_path, [_prompt(_iso(-9), "contact me at carol@example.net")])
    assert cli("incidents", "--db", db, "--config", cfg, "set-awareness", iid, _iso(-9, 1), "--reason", "SOC",
               "--accept-overdue").rc == 0
    assert cli("incidents", "--db", db, "--config", cfg, "notice-sent", iid, "--regime", "gdpr-33",
               "--at", _iso(-8), "--reference", "DPA-1").rc == 0
    draft = cli("notice", iid, "--db", db, "--config", cfg, "--regime", "gdpr-33").out
    assert "Follow-up" in draft and "Reasons for the delay" not in draft


def test_a_skipped_step_lets_what_waits_on_it_go_ahead():
    states = {("k", "rotate-key"): {"status": "skipped"}, ("k", "identify-key"): {"status": "done"},
              ("k", "revoke-key"): {"status": "pending"}}
    assert pb.settled_steps(states) == {"rotate-key", "identify-key"}


def test_every_shipped_playbook_that_warns_under_nis2_also_notifies_and_reports(tmp_path):
    books = pb.load_playbooks()
    assert len(books) == 4
    for book in books.values():
        ids = {s.id for s in book.steps}
        if "nis2-early-warning" in ids:
            assert {"nis2-notification", "nis2-final-report"} <= ids, book.id
        if "notify-authority" in ids:
            assert "notify-ico" in ids, book.id


def test_the_art30_map_masks_a_customer_address_in_a_log_file_name(tmp_path, cli):
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "prompts_jane.doe@example.com.jsonl").write_text(_prompt(_iso(-1), "my IBAN is DE89370400440532013000") + "\n")
    db = tmp_path / "f.duckdb"
    assert cli("scan", folder, "--db", db, "-q").rc == 1
    out = tmp_path / "fl"
    assert cli("flows", "--db", db, "--out-dir", out, "--format", "csv").rc == 0
    text = (out / "data-flows.csv").read_text()
    assert "jane.doe@example.com" not in text
    files = {r["source_files"] for r in csv.DictReader(text.splitlines())}
    assert any("@e" in f and "***" in f for f in files), files


def test_notice_honours_tz_and_json_and_names_uk_gdpr(tmp_path, cli):
    db, cfg, iid = _setup(cli, tmp_path, [_prompt(_iso(-1), "contact me at alice@example.net")])
    r = cli("notice", iid, "--db", db, "--config", cfg, "--regime", "gdpr-33", "--tz", "America/New_York")
    assert "EST)" in r.out and "CET)" not in r.out
    r = cli("notice", iid, "--db", db, "--config", cfg, "--regime", "gdpr-33", "--json")
    assert json.loads(r.out)["regime"] == "gdpr-33"
    r = cli("notice", iid, "--db", db, "--config", cfg, "--regime", "uk-gdpr")
    assert "(UK GDPR Art. 33)" in r.out
