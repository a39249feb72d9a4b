"""Regulatory clocks and incident bookkeeping: defects found by a review with hand-made
incidents (each test failed before its fix)."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

LINE = "{t} user={mail} card={card} POST {url}\n"
OPENAI = "https://api.openai.com/v1/chat/completions"
ANTHROPIC = "https://api.anthropic.com/v1/messages"


def _iso(days: float = 0, hours: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(days=days, hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scan(cli, tmp_path: Path, name: str, t: str, mail="jane@example.com", card="4111111111111111",
          config: Path | None = None, url: str = OPENAI) -> Path:
    log = tmp_path / name
    log.write_text(LINE.format(t=t, mail=mail, card=card, url=url))
    db = tmp_path / "lw.duckdb"
    assert cli("scan", log, "--db", db, "-q").rc == 1
    cfg = ["--config", config] if config else []
    r = cli("incidents", "--db", db, *cfg, "group")
    assert r.rc == 0, r.err
    return db


def _pii_incident(cli, db: Path) -> int:
    rows = json.loads(cli("incidents", "--db", db, "list", "--json").out)
    return max(r["incident_id"] for r in rows if r["n_findings"])


def _clocks(cli, db: Path, iid: int, config: Path | None = None) -> dict:
    cfg = ["--config", config] if config else []
    r = cli("clocks", iid, "--db", db, *cfg, "--all", "--json")
    assert r.rc == 0, r.err
    return {c["regime"]: c for c in json.loads(r.out)["regimes"]}


def _toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "lw.toml"
    p.write_text(text)
    return p


def test_organisation_jurisdiction_gb_is_refused_not_silently_unmatched(tmp_path, cli):
    """establishment = ["GB"] loaded, and UK GDPR (regimes say UK) then applied to nothing."""
    cfg = _toml(tmp_path, '[organisation]\nestablishment = ["GB"]\ncustomer_jurisdictions = ["UK"]\n')
    r = cli("clocks", "1", "--db", tmp_path / "lw.duckdb", "--config", cfg)
    assert r.rc == 2, r.err
    assert "organisation.establishment" in r.err and 'as "UK"' in r.err


def test_responder_count_of_subjects_decides_a_threshold(tmp_path, cli):
    """fact data_subjects 250000 was accepted and ignored: California's AG ('more than 500')
    stayed not applicable on leakwatch's count of 2."""
    cfg = _toml(tmp_path, '[organisation]\nestablishment = ["US"]\ncustomer_jurisdictions = ["US-CA"]\n')
    db = _scan(cli, tmp_path, "a.log", _iso(-1), config=cfg)
    iid = _pii_incident(cli, db)
    def ag() -> dict:
        dls = _clocks(cli, db, iid, cfg)["ca-1798.82"]["deadlines"]
        return next(d for d in dls if d["id"] == "attorney-general")

    assert ag()["status"] == "not applicable"
    assert cli("incidents", "--db", db, "--config", cfg, "fact", iid, "data_subjects", "250000").rc == 0
    assert ag()["status"] == "pending", ag()
    r = cli("incidents", "--db", db, "fact", iid, "data_subjects", "about 2,000")
    assert r.rc == 2 and "whole number" in r.err


def test_responder_data_categories_make_a_category_condition_hold(tmp_path, cli):
    """No shipped rule tags health data; fact data_categories '["special"]' was ignored, so
    HIPAA could never apply to a covered entity."""
    cfg = _toml(tmp_path, '[organisation]\nestablishment = ["US"]\ncustomer_jurisdictions = ["US-NY"]\n'
                          'hipaa_covered_entity = true\n')
    db = _scan(cli, tmp_path, "a.log", _iso(-1), config=cfg)
    iid = _pii_incident(cli, db)
    assert _clocks(cli, db, iid, cfg)["hipaa"]["applies"] is False
    assert "data_categories" in " ".join(_clocks(cli, db, iid, cfg)["hipaa"]["reasons"])
    assert cli("incidents", "--db", db, "--config", cfg, "fact", iid, "data_categories",
               '["special", "diagnoses"]').rc == 0
    hipaa = _clocks(cli, db, iid, cfg)["hipaa"]
    assert hipaa["applies"] is True, hipaa["reasons"]
    assert any("a responder recorded special data" in r for r in hipaa["reasons"])


def test_a_responder_count_of_zero_takes_a_jurisdiction_out(tmp_path, cli):
    cfg = _toml(tmp_path, '[organisation]\ncustomer_jurisdictions = ["DE", "UK"]\n')
    db = _scan(cli, tmp_path, "a.log", _iso(-1), config=cfg)
    iid = _pii_incident(cli, db)
    assert _clocks(cli, db, iid, cfg)["uk-gdpr"]["applies"] is True
    assert cli("incidents", "--db", db, "--config", cfg, "fact", iid, "subjects.UK", "0").rc == 0
    uk = _clocks(cli, db, iid, cfg)["uk-gdpr"]
    assert uk["applies"] is False
    assert any("a responder counted 0 in UK" in r for r in uk["reasons"]), uk["reasons"]


def test_a_merge_counts_the_notice_a_source_sent_on_time(tmp_path, cli):
    """The overdue check ran before the sources' notices moved: a merge was refused for a GDPR
    deadline met on time, and forcing it wrote a false 'accepted overdue' into the audit trail."""
    db = _scan(cli, tmp_path, "old.log", _iso(-8))
    old = _pii_incident(cli, db)
    assert cli("incidents", "--db", db, "set-awareness", old, _iso(-8, 1), "--reason", "dpo", "--accept-overdue").rc == 0
    assert cli("incidents", "--db", db, "notice-sent", old, "--regime", "gdpr-33", "--at", _iso(-7)).rc == 0
    _scan(cli, tmp_path, "new.log", _iso(-1), mail="zed@example.net", card="5555555555554444", url=ANTHROPIC)
    new = _pii_incident(cli, db)
    assert new != old
    r = cli("incidents", "--db", db, "merge", new, old, "--reason", "same breach")
    assert r.rc == 0, r.err
    assert _clocks(cli, db, new)["gdpr-33"]["deadlines"][0]["status"] == "met"
    rows = json.loads(cli("audit", "--db", db, "list", "--incident", new, "--json").out)
    merged = [r for r in rows if r["action"] == "incident.merged"]
    assert merged and "accepted" not in json.dumps(merged[-1]["detail"])


def test_a_clock_that_moves_no_deadline_is_not_refused_for_deadlines_missed_before(tmp_path, cli):
    """Setting 'suspicion' to now was refused because GDPR's 72 hours had run out long before."""
    cfg = _toml(tmp_path, '[organisation]\ncustomer_jurisdictions = ["EU", "AU"]\n')
    db = _scan(cli, tmp_path, "a.log", _iso(-8), config=cfg)
    iid = _pii_incident(cli, db)
    assert cli("incidents", "--db", db, "--config", cfg, "set-awareness", iid, _iso(-8, 1), "--reason", "dpo",
               "--accept-overdue").rc == 0
    r = cli("incidents", "--db", db, "--config", cfg, "set-clock", iid, "suspicion", _iso(0, -1), "--reason", "AU team")
    assert r.rc == 0, r.err
    # A change that does put a deadline in the past is still refused.
    (tmp_path / "b").mkdir()
    other = _scan(cli, tmp_path / "b", "b.log", _iso(-9), config=cfg)
    r = cli("incidents", "--db", other, "--config", cfg, "set-awareness", _pii_incident(cli, other), _iso(-9, 1),
            "--reason", "dpo")
    assert r.rc == 2 and "already past" in r.err


def _merged_pair(cli, tmp_path: Path) -> tuple[Path, int, int]:
    """Two incidents (OpenAI, Anthropic), the second merged into the first: (db, a, b)."""
    db = _scan(cli, tmp_path, "a.log", _iso(-1))
    a = _pii_incident(cli, db)
    _scan(cli, tmp_path, "b.log", _iso(-1), mail="zed@example.net", card="5555555555554444", url=ANTHROPIC)
    b = _pii_incident(cli, db)
    assert cli("incidents", "--db", db, "merge", a, b, "--reason", "same breach").rc == 0
    return db, a, b


def test_a_merged_incident_takes_no_notice_fact_or_clock(tmp_path, cli):
    db, a, b = _merged_pair(cli, tmp_path)
    for args in (["notice-sent", b, "--regime", "gdpr-33", "--reference", "CNIL-1"],
                 ["fact", b, "high_risk", "yes"],
                 ["set-awareness", b, _iso(-1), "--reason", "x"]):
        r = cli("incidents", "--db", db, *args)
        assert r.rc == 2, (args, r.err)
        assert f"was merged into {a}; work on that one" in r.err and "reopen" not in r.err
    assert _clocks(cli, db, a)["gdpr-33"]["deadlines"][0]["status"] != "met"


def test_a_log_time_later_than_detection_does_not_bound_awareness(tmp_path, cli):
    """A zone-less local time ahead of UTC read as UTC put the first finding in the future;
    every awareness time was then 'before the first finding' or 'in the future'."""
    ahead = (datetime.now(UTC) + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S")
    db = _scan(cli, tmp_path, "a.log", ahead)
    iid = _pii_incident(cli, db)
    r = cli("incidents", "--db", db, "set-awareness", iid, _iso(0, -0.05), "--reason", "dpo")
    assert r.rc == 0, r.err


@pytest.mark.parametrize("when", ["0001-01-01T00:30+01:00", "9999-12-31T23:59-05:00", "1969-07-20T20:17Z"])
def test_times_out_of_range_are_usage_errors(tmp_path, cli, when):
    db = _scan(cli, tmp_path, "a.log", _iso(-1))
    iid = _pii_incident(cli, db)
    r = cli("incidents", "--db", db, "set-awareness", iid, when, "--reason", "t")
    assert r.rc == 2, r.err
    assert "out of range" in r.err and "Traceback" not in r.err


def test_a_split_off_part_keeps_the_responders_judgements_not_their_counts(tmp_path, cli):
    """A split copied the clocks but not the facts: NIS2 went back to 'undecided' on the part."""
    db = _scan(cli, tmp_path, "a.log", _iso(-1))
    iid = _pii_incident(cli, db)
    for key, value in (("significant", "yes"), ("likely_consequences", "phishing"), ("data_subjects", "900"),
                       ("subjects.DE", "12")):
        assert cli("incidents", "--db", db, "fact", iid, key, value).rc == 0
    r = cli("incidents", "--db", db, "split", iid, "--where", "entity=CREDIT_CARD", "--title", "cards")
    assert r.rc == 0, r.err
    part = _pii_incident(cli, db)
    assert part != iid
    shown = json.loads(cli("incidents", "--db", db, "show", part, "--json").out)
    assert shown["responder"] == {"significant": True, "likely_consequences": "phishing"}
    assert shown["subjects_by_jurisdiction"] == {}
    nis2 = _clocks(cli, db, part)["nis2"]
    assert not any("undecided" in r and "significant" in r for r in nis2["reasons"]), nis2["reasons"]


def test_no_notice_is_drafted_for_a_merged_incident(tmp_path, cli):
    db, a, b = _merged_pair(cli, tmp_path)
    r = cli("notice", b, "--db", db, "--regime", "gdpr-33", "--out", tmp_path / "n.md")
    assert r.rc == 2 and f"was merged into {a}" in r.err
    assert not (tmp_path / "n.md").exists()
