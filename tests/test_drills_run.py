"""``drill run`` end to end: the real watch path on an accelerated clock, a loopback receiver
verifying each webhook, and the score written from the database, the manifest and the run."""
from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import read_rows

from leakwatch.drills.run import DrillClock, run_drill
from leakwatch.drills.scenarios import find_scenario


def test_drill_clock_runs_fast_pauses_and_maps_receiver_times():
    real = [100.0]
    wall = [1_700_000_000.0]
    t0 = datetime(2024, 3, 11, 9, 0, tzinfo=UTC)
    c = DrillClock(t0, 60, real=lambda: real[0], wall=lambda: wall[0])

    def advance(s: float) -> None:
        real[0] += s
        wall[0] += s

    advance(2.5)
    assert c.elapsed() == 150 and c.now() == t0 + timedelta(minutes=2.5) and c.minutes() == 2.5
    assert c() == c.now() and c.label == "DRILL 60x"  # usable as the console's clock
    c.pause()
    advance(10)
    assert c.elapsed() == 150 and c.real_seconds_until(200) == float("inf") and c.label == "DRILL paused"
    c.resume()
    c.set_speed(120)
    advance(1)
    assert c.elapsed() == 270 and c.real_seconds_until(390) == 1.0
    # A webhook received 1 s after the start was at scenario minute 1; one during the pause, 2.5.
    assert c.at_wall(1_700_000_001.0) == t0 + timedelta(minutes=1)
    assert c.at_wall(1_700_000_007.0) == t0 + timedelta(minutes=2.5)
    assert c.at_wall(wall[0]) == c.now()


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    """One full drill of the key/bypass scenario: 75 scenario minutes at 1500x."""
    out = tmp_path_factory.mktemp("drill") / "ai-key"
    events = []
    res = run_drill(find_scenario("ai-key-exposed-gateway-bypass"), out, seed=2, speed=1500, interval=0.05,
                    scale=0.5, on_event=events.append)
    return res, events


def test_a_full_drill_completes_headless_and_scores_in_scenario_time(drill):
    res, events = drill
    out = res.out_dir
    score = json.loads((out / "score.json").read_text())
    assert score == json.loads(json.dumps(res.score))  # what run_drill returned is what it wrote
    assert (out / "score.md").read_text().startswith("# DRILL score: ai-key-exposed-gateway-bypass")
    assert res.real_seconds < 40
    dr = score["drill"]
    assert dr["scenario_minutes"] >= 75 and dr["cycles"] >= 3 and not dr["stopped_early"]
    # Detection against the manifest.
    de = score["detection"]
    assert de["planted"] == 3 and de["recall"] == 1.0 and de["background_above_low"] == 0
    assert de["precision"] == 1.0 and de["by_entity"] == {"ANTHROPIC_API_KEY": {"planted": 1, "detected": 1},
                                                          "OPENAI_API_KEY": {"planted": 2, "detected": 2}}
    assert 0 <= de["time_to_detect_min"]["median"] <= de["time_to_detect_min"]["max"] < 75
    # Every expected incident was opened, after its first evidence, within the scenario.
    expected = {x["key"]: x for x in score["incidents"]["expected"]}
    assert sorted(expected) == ["P1_gateway_bypass/Anthropic", "P1_gateway_bypass/OpenAI",
                                "P1_key_exposed/Anthropic", "P1_key_exposed/OpenAI"]
    for x in expected.values():
        assert x["opened"] and 0 <= x["time_to_open_min"] < 75, x
        assert x["opened_min"] >= x["first_evidence_min"]
    assert expected["P1_key_exposed/OpenAI"]["first_evidence_min"] < 4  # the key is logged at minute 3
    # Notifications: received and verified by the receiver, marked as drill, in scenario time.
    no = score["notifications"]
    assert no["received"] >= 4 and no["verified"] == no["received"] == no["drill_marked"] and no["rejected"] == 0
    opened_ids = {i for x in expected.values() for i in x["incident_ids"]}
    told = {i["incident_id"] for i in no["items"] if i["event"] == "incident.opened"}
    assert opened_ids <= told and no["incidents_not_notified"] == []
    for item in no["items"]:
        assert 0 <= item["minute"] <= dr["scenario_minutes"] and item["after_open_min"] >= 0
        regimes = {d["regime"] for d in item["deadlines"]}
        assert regimes == {"gdpr-33", "uk-gdpr"}
        for d in item["deadlines"]:
            assert d["in_time"] and 71 * 60 < d["margin_min"] < 72 * 60  # 72 h from awareness
    # Regimes and the awareness clock in scenario time (not the database's wall clock).
    assert score["regimes"]["missing"] == [] and set(score["regimes"]["applied"]) == {"gdpr-33", "uk-gdpr"}
    for per in score["regimes"]["per_incident"].values():
        assert 0 <= per["awareness_min"] < 75
        for d in per["deadlines"]:
            assert d["due_min"] == pytest.approx(per["awareness_min"] + 72 * 60, abs=0.05)
    # The key's playbook wants it identified within the hour: nobody did, so it is reported missed.
    missed = {(m["playbook"], m["step"]) for m in score["playbooks"]["missed"]}
    assert ("exposed-ai-api-key", "identify-key") in missed
    assert all(m["overdue_min"] >= 0 for m in score["playbooks"]["missed"])
    assert score["checks"]["outbox_drained"] and score["passed"] is True
    # Events a console would show.
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and "cycle" in kinds
    assert kinds.count("notification") == no["received"]
    assert [e.minute for e in events] == sorted(e.minute for e in events)


def test_the_drill_is_marked_and_keeps_no_raw_value(drill):
    res, _events = drill
    out = res.out_dir
    assert "DRILL" in (out / "DRILL.txt").read_text()
    assert 'name = "Acme Shop GmbH (DRILL)"' in (out / "leakwatch.toml").read_text()
    assert (out / "secrets.toml").stat().st_mode & 0o077 == 0
    manifest = json.loads((out / "source" / "manifest.json").read_text())
    values = []
    for p in manifest["plants"]:
        data = (out / "source" / p["file"]).read_bytes()
        values.append(data[p["offset"]:].split(b"\n", 1)[0][p["start"]:p["end"]].decode())
    assert len(values) == 3
    # The watched logs got every line of the generated ones, in order.
    for f in manifest["files"]:
        assert (out / "logs" / f["path"]).read_bytes() == (out / "source" / f["path"]).read_bytes()
    db = out / "drill.duckdb"
    assert read_rows(db, "SELECT count(*) FROM findings WHERE raw_value IS NOT NULL") == [(0,)]
    stored = json.dumps(read_rows(db, "SELECT masked, field_path, source_path FROM findings"))
    stored += json.dumps(read_rows(db, "SELECT summary, evidence FROM alerts"))
    stored += json.dumps(read_rows(db, "SELECT payload FROM outbox"))
    for name in ("run.json", "score.json", "score.md", "leakwatch.toml"):
        stored += (out / name).read_text()
    for v in values:
        assert v not in stored and v[8:30] not in stored
    # Awareness was set by the drill where the wall-clock default was off, with a reason.
    rows = read_rows(db, """SELECT set_by, reason FROM incident_clocks WHERE event = 'awareness'""")
    assert rows and all(by in ("drill", "leakwatch") for by, _ in rows)
    assert all(by == "leakwatch" or r.startswith("drill: awareness") for by, r in rows)


@pytest.fixture
def drill_cli(cli, monkeypatch):
    import leakwatch.cli

    if "leakwatch.commands.drill" not in leakwatch.cli.COMMAND_MODULES:
        monkeypatch.setattr(leakwatch.cli, "COMMAND_MODULES", (*leakwatch.cli.COMMAND_MODULES, "leakwatch.commands.drill"))
    return lambda *a: cli("drill", *a)


def test_cli_run_then_score_reprints_it(tmp_path, drill_cli):
    out = tmp_path / "cdn"
    r = drill_cli("run", "cdn-foreign-edge", "--speed", "1800", "--scale", "0.3", "--interval", "0.05",
                  "--out", out, "--json")
    assert r.rc == 0, r.err
    score = json.loads(r.out)
    assert score["passed"] and score["detection"]["recall"] == 1.0
    assert {x["key"] for x in score["incidents"]["expected"] if x["opened"]} == {"P4_cdn_region/none",
                                                                                   "pii_exposure/none"}
    assert "nis2" in score["regimes"]["undecided"]  # an important entity; significance is a responder's call
    r2 = drill_cli("score", out)
    assert r2.rc == 0 and r2.out == (out / "score.md").read_text()
    assert "| P4_cdn_region/none | yes |" in r2.out and "**Result: PASSED**" in r2.out
    r3 = drill_cli("score", out, "--json")
    assert json.loads(r3.out)["detection"] == score["detection"]
    r4 = drill_cli("score", tmp_path)
    assert r4.rc == 2 and "manifest.json: missing" in r4.err
    r5 = drill_cli("run", "cdn-foreign-edge", "--out", out)
    assert r5.rc == 2 and "not empty" in r5.err


def test_a_stopped_drill_is_still_scored(tmp_path):
    stop = threading.Event()

    def on_event(e):
        if e.kind == "start":
            stop.set()

    res = run_drill(find_scenario("bulk-report-export"), tmp_path / "stopped", speed=60, scale=0.2, interval=0.05,
                    stop=stop, on_event=on_event)
    assert res.score["drill"]["stopped_early"] is True
    # Stopped before the first line: nothing was replayed, so nothing is counted as missed.
    de = res.score["detection"]
    assert res.score["passed"] is False and de["replayed"] == 0 and de["recall"] is None
    assert de["missed"] == [] and len(de["not_replayed"]) == de["planted"] > 0
    assert Path(res.out_dir / "score.md").read_text().count("Stopped early") == 1
