"""``drill run --tui``: a real drill (generated logs, the real watch path, the loopback receiver)
at high speed with the incident console open on its database, driven through Textual's pilot.

Checked where it shows and where it lands: the DRILL banner on every screen, incidents in the
list while the drill still runs, a responder's acknowledgement written through the console's
own connection beside the drill's and stamped in scenario time, the score dialog at the end
(recall 1.0, the same score as score.json), and q stopping a running drill that is then scored.
The hand-over of the database file (console lets go, the score's read-only connection opens,
the console takes it back) is checked on its own too.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from helpers import read_rows, wait_for

from leakwatch.drills.scenarios import find_scenario
from leakwatch.errors import StoreError, UsageError
from leakwatch.store import Store
from leakwatch.tui.drill import DrillScoreScreen, DrillStore, make_drill_app

RESPONDER = "carol-drill-responder"
ROOT = Path(__file__).resolve().parent.parent


def run(coro):
    return asyncio.run(coro)




def banner_text(screen) -> str:
    return str(screen.query_one("#hdr-drill").render())


def table_ids(screen) -> list[int]:
    table = screen.query_one("#incidents")
    return [int(k.value) for k in table.rows]


def test_a_drill_in_the_console_banner_live_incidents_responder_and_score(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKWATCH_USER", RESPONDER)
    out = tmp_path / "drill"
    sc = find_scenario("ai-key-exposed-gateway-bypass")
    app = make_drill_app(sc, out, seed=2, speed=1500, scale=0.5, interval=0.05, size=(120, 36))
    seen: dict = {}

    async def go():
        async with app.run_test() as pilot:
            await pilot.pause()
            incidents = app.screen
            # The console's clock is the drill's: scenario time, accelerated.
            assert app.clock is app.drill_clock and app.drill_clock.label.startswith("DRILL")
            assert "-drill" in incidents.query_one("LeakwatchHeader").classes
            text = await wait_for(pilot, lambda: "T+" in banner_text(incidents) and banner_text(incidents), 10,
                                  "the banner")
            assert text.startswith(" DRILL ") and "synthetic data" in text and sc.id in text

            # Incidents appear in the list while the drill is still running.
            ids = await wait_for(pilot, lambda: app.drill_result is None and table_ids(incidents), 20,
                                 "an incident in the list during the drill")
            assert app.drill_running
            seen["live_ids"] = ids
            # Pause scenario time (P) and act as a responder: acknowledge the highlighted incident.
            await pilot.press("P")
            assert app.drill_clock.paused
            await wait_for(pilot, lambda: "PAUSED" in banner_text(incidents), 3, "the paused banner")
            target = incidents.selected_id()
            seen["acked"] = target
            seen["ack_scenario_time"] = app.now()
            await pilot.press("a")
            await wait_for(pilot, lambda: incidents.rows.get(target) is not None
                           and incidents.rows[target].status == "triaged", 10, "the acknowledgement in the list")
            # Every screen carries the banner: the incident screen too.
            app.open_incident(target)
            await pilot.pause(0.3)
            assert "DRILL" in banner_text(app.screen)
            await pilot.press("escape")
            await pilot.press("P")
            assert not app.drill_clock.paused

            # The score dialog at the end.
            await wait_for(pilot, lambda: isinstance(app.screen, DrillScoreScreen), 40, "the score dialog")
            await pilot.pause(0.5)
            summary = str(app.screen.query_one("#drill-score-summary").render())
            seen["summary"] = summary
            seen["final_banner"] = banner_text(incidents)
            await pilot.press("escape")
            await pilot.pause(0.3)
            # After the drill the console has the database again: the list is still there.
            assert app.screen is incidents and set(table_ids(incidents)) >= set(seen["live_ids"])
            await pilot.press("q")

    run(go())
    res = app.wait_drill(30)
    score = json.loads((out / "score.json").read_text())
    assert score == json.loads(json.dumps(res.score)) and score["detection"]["recall"] == 1.0
    assert not score["drill"]["stopped_early"] and score["checks"]["expected_incidents_opened"]
    assert seen["summary"].startswith("PASSED") and "recall 1.0" in seen["summary"]
    assert "4/4 expected incidents opened" in seen["summary"]
    assert "over: PASSED" in seen["final_banner"]
    # The acknowledgement went through the console's own connection, beside the drill's watch,
    # and was stamped in scenario time (far ahead of the wall clock at 1500x).
    db = out / "drill.duckdb"
    (status,), = read_rows(db, "SELECT status FROM incidents WHERE incident_id = ?", [seen["acked"]])
    assert status == "triaged"
    rows = read_rows(db, """SELECT "at" FROM audit_log WHERE incident_id = ? AND actor = ?""",
                     [seen["acked"], RESPONDER])
    assert len(rows) == 1
    assert abs(rows[0][0] - seen["ack_scenario_time"]) < timedelta(seconds=5)
    with Store.open(db, read_only=True) as s:
        from leakwatch.incidents import audit

        assert audit.verify(s.con, s.key).ok


def test_q_stops_a_running_drill_and_it_is_still_scored(tmp_path):
    out = tmp_path / "stopped"
    app = make_drill_app(find_scenario("bulk-report-export"), out, speed=60, scale=0.2, interval=0.05,
                         size=(100, 30))

    async def go():
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: "total" in app.drill_state, 20, "the first watch cycle")
            assert app.drill_running
            await pilot.press("q")

    run(go())
    res = app.wait_drill(30)
    assert not app.drill_running
    assert res.score["drill"]["stopped_early"] and res.score["drill"]["scenario_minutes"] < 45
    assert json.loads((out / "score.json").read_text())["drill"]["stopped_early"]


def test_the_console_lets_go_of_the_file_for_the_score_and_takes_it_back(tmp_path):
    db = tmp_path / "d.duckdb"
    writer = Store.open(db)  # the drill's watch
    writer.con.execute("CREATE TABLE t (i INTEGER)")
    writer.con.execute("INSERT INTO t VALUES (1)")
    console = DrillStore(db, wait_s=10)
    assert console.state == "waiting" and console.open() and console.state == "open"
    cur = console.cursor()
    assert cur.execute("SELECT count(*) FROM t").fetchone() == (1,)  # the same database, live
    writer.con.execute("INSERT INTO t VALUES (2)")
    assert cur.execute("SELECT count(*) FROM t").fetchone() == (2,)

    # Letting go waits for the open read, then closes the console's connection.
    released = threading.Event()
    t = threading.Thread(target=lambda: (console.release(), released.set()))
    t.start()
    assert not released.wait(0.3)
    cur.close()
    assert released.wait(5)
    with pytest.raises(StoreError, match="finishing and scoring"):
        console.con  # noqa: B018 - a change asked for now is refused, not half-made
    # A read asked for now waits for the console to take the file back.
    got: list = []

    def read() -> None:
        c = console.cursor()
        try:
            got.append(c.execute("SELECT count(*) FROM t").fetchone())
        finally:
            c.close()

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    assert not got
    # With the console's connection gone, the score's read-only connection can open the file.
    writer.close()
    ro = duckdb.connect(str(db), read_only=True)
    assert ro.execute("SELECT count(*) FROM t").fetchone() == (2,)
    ro.close()
    assert console.open()
    reader.join(5)
    assert got == [(2,)]
    console.close()
    assert console.state == "closed" and not console.open()
    # After closing, a read shows the empty schema instead of failing.
    assert console.cursor().execute("SELECT count(*) FROM incidents").fetchone() == (0,)


def test_a_drill_folder_that_is_not_empty_is_refused_before_the_console_opens(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        make_drill_app(find_scenario("bulk-report-export"), tmp_path)


def test_tui_without_a_terminal_runs_headless_and_prints_the_score(tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "leakwatch", "drill", "run", "cdn-foreign-edge", "--tui", "--speed", "1800",
                        "--scale", "0.3", "--interval", "0.05", "--out", str(out)],
                       check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       stdin=subprocess.DEVNULL)
    assert "--tui needs a terminal" in r.stderr
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "# DRILL score: cdn-foreign-edge" in r.stdout and "**Result: PASSED**" in r.stdout
    assert json.loads((out / "score.json").read_text())["passed"] is True
