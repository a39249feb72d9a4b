"""The incident console driven as a responder drives it: keys through Textual's pilot
(``app.run_test()``) on a real database built by the real pipeline (tests/tui_support.py), with
a frozen clock. Every change is checked where it lands: the incident row, ``incident_clocks``,
``playbook_steps``, the outbox and the audit trail (which must still verify).

Also: ``leakwatch scan`` and the CLI parser never import Textual.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import read_rows
from tui_support import (
    ACTOR,
    AWARE_AT,
    FROZEN_NOW,
    RAW_VALUES,
    build_tui_db,
    clone_tui_db,
)

from leakwatch.errors import UsageError
from leakwatch.tui.app import LIGHT_THEME, make_app
from leakwatch.tui.clock import AcceleratedClock, FrozenClock, RealClock, as_clock
from leakwatch.tui.widgets.countdown import countdown_label, level

RESPONDER = "bob-responder"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tui_db(tmp_path_factory.mktemp("tui-base") / "tui.duckdb")


@pytest.fixture
def tui(built, tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKWATCH_USER", RESPONDER)
    return clone_tui_db(built, tmp_path / "db")


def app_for(info, *, clock=None, size=(120, 40), config=None):
    return make_app(info["db"], config=config or info["config"], clock=clock or FrozenClock(FROZEN_NOW), size=size)


async def settle(pilot, rounds: int = 4) -> None:
    """Let workers finish and their messages be painted."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def run(coro):
    return asyncio.run(coro)


def rows(src, sql: str, params=None) -> list[tuple]:
    """Rows of ``sql`` from the database file ``src``, or through a running app's own
    connection (DuckDB refuses a second, read-only connection to a file open in this process)."""
    if hasattr(src, "cursor"):
        cur = src.cursor()
        try:
            return cur.execute(sql, list(params or [])).fetchall()
        finally:
            cur.close()
    return read_rows(src, sql, params)


def audit_actions(src, incident_id=None):
    if incident_id is None:
        return [r[0] for r in rows(src, "SELECT action FROM audit_log ORDER BY seq")]
    return [r[0] for r in rows(src, "SELECT action FROM audit_log WHERE incident_id = ? ORDER BY seq", [incident_id])]


def audit_verifies(db) -> bool:
    from leakwatch.incidents import audit
    from leakwatch.store import Store

    with Store.open(db, read_only=True) as s:
        return audit.verify(s.con, s.key).ok


def screen_text(app) -> str:
    """Everything on the screen as plain text (the SVG export's text content)."""
    import re

    svg = app.export_screenshot()
    return re.sub(r"<[^>]+>", "", svg).replace("&#160;", " ").replace("&amp;", "&")


async def open_incident(pilot, iid: int) -> None:
    pilot.app.open_incident(iid)
    await settle(pilot)


# --- headless never imports Textual -------------------------------------------------------------


def test_scan_and_the_cli_parser_never_import_textual(tmp_path, built):
    code = textwrap.dedent(f"""
        import json, sys
        import leakwatch.cli
        parser = leakwatch.cli.build_parser()
        import leakwatch.commands.tui as t
        import argparse
        t.register(argparse.ArgumentParser().add_subparsers())
        before = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
        rc = leakwatch.cli.main(["scan", {str(built['logs'])!r}, "--db", {str(tmp_path / 'scan.duckdb')!r}, "-q"])
        after = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
        print(json.dumps({{"rc": rc, "before": before, "after": after}}))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False,
                       env={**os.environ, "LEAKWATCH_CONFIG": ""})
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["rc"] == 1  # findings at or above medium
    assert out["before"] == [] and out["after"] == []


def test_the_tui_module_does_import_textual():
    # The check above can fail: importing the console does load Textual.
    p = subprocess.run([sys.executable, "-c", "import sys, leakwatch.tui.app; print('textual' in sys.modules)"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.stdout.strip() == "True"


# --- the clock -------------------------------------------------------------------------------------


def test_clocks_frozen_accelerated_and_wrapped():
    frozen = FrozenClock(FROZEN_NOW)
    assert frozen() == FROZEN_NOW
    assert frozen.advance(90) == FROZEN_NOW + timedelta(seconds=90)
    ticks = iter([100.0, 160.0])
    fast = AcceleratedClock(60, FROZEN_NOW, monotonic=lambda: next(ticks))
    assert fast.now() == FROZEN_NOW + timedelta(hours=1)  # 60 real seconds at 60x
    assert as_clock(FROZEN_NOW).now() == FROZEN_NOW
    assert as_clock(lambda: FROZEN_NOW).now() == FROZEN_NOW
    assert isinstance(as_clock(None), RealClock)
    with pytest.raises(ValueError):
        AcceleratedClock(0)


def test_countdown_levels_follow_the_documented_thresholds():
    due = FROZEN_NOW + timedelta(hours=13)
    assert level(due, FROZEN_NOW) == "ok"
    assert level(due, FROZEN_NOW + timedelta(hours=1, seconds=1)) == "soon"     # 12 h left minus a second
    assert level(due, FROZEN_NOW + timedelta(hours=11)) == "urgent"             # 2 h left
    assert level(due, FROZEN_NOW + timedelta(hours=13, seconds=1)) == "overdue"
    assert countdown_label(due, FROZEN_NOW + timedelta(hours=15, minutes=2, seconds=5)) == "OVERDUE +2h 02m 05s"
    assert countdown_label(due, FROZEN_NOW) == "13h 00m 00s"
    assert countdown_label(due + timedelta(days=2), FROZEN_NOW) == "2d 13h 00m"
    assert level(due, FROZEN_NOW, met=True) == "met" and level(None, FROZEN_NOW) == "none"


def test_make_app_refuses_a_missing_database(tmp_path):
    with pytest.raises(UsageError, match="no such database"):
        make_app(tmp_path / "missing.duckdb")


# --- incidents list ----------------------------------------------------------------------------------


def test_incidents_list_shows_every_incident_with_its_nearest_deadline(tui):
    from leakwatch.incidents import book
    from leakwatch.store import Store

    with Store.open(tui["db"], read_only=True) as s:
        expected = [r["incident_id"] for r in book.list_incidents(s.con)]

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            await settle(pilot)
            table = app.screen.query_one("#incidents")
            assert [int(k.value) for k in table.rows] == expected
            # The header shows the nearest deadline over all incidents, overdue at the frozen time.
            nearest = app.nearest
            assert nearest is not None
            assert nearest.due == min(r.next_deadline.due for r in app.incident_rows if r.next_deadline)
            assert app.screen.query_one("#hdr-countdown").level == "overdue"
            text = screen_text(app)
            assert "AI API key exposed" in text and "OVERDUE +" in text
            for raw in RAW_VALUES:
                assert raw not in text

    run(go())


def test_acknowledge_from_the_list_writes_status_and_audit(tui):
    anthropic = tui["incidents"]["anthropic"]

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            await settle(pilot)
            table = app.screen.query_one("#incidents")
            table.move_cursor(row=table.get_row_index(str(anthropic)))
            await pilot.press("a")
            await settle(pilot)
            assert table.get_cell(str(anthropic), "status").plain == "triaged"  # reloaded after the change

    run(go())
    assert read_rows(tui["db"], "SELECT status FROM incidents WHERE incident_id = ?", [anthropic]) == [("triaged",)]
    row = read_rows(tui["db"], "SELECT actor, action, \"at\" FROM audit_log WHERE incident_id = ? ORDER BY seq DESC LIMIT 1",
                    [anthropic])[0]
    assert row[0] == RESPONDER and row[1] == "incident.ack" and row[2] == FROZEN_NOW
    assert audit_verifies(tui["db"])


def test_acknowledging_twice_is_refused_and_changes_nothing(tui):
    openai = tui["incidents"]["openai"]   # acknowledged by the fixture
    before = audit_actions(tui["db"])

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            await open_incident(pilot, openai)
            await pilot.press("a")
            await settle(pilot)
            assert any("acknowledged already" in n.message for n in app._notifications)

    run(go())
    assert audit_actions(tui["db"]) == before


# --- incident -----------------------------------------------------------------------------------------


def test_incident_screen_shows_facts_regimes_and_audit(tui):
    openai = tui["incidents"]["openai"]

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            await open_incident(pilot, openai)
            scr = app.screen
            assert type(scr).__name__ == "IncidentScreen" and app.active_incident[0] == openai
            view = scr.view
            assert view.facts.findings > 0 and view.facts.data_subjects > 0
            regimes = scr.query_one("#regimes")
            keys = [k.value for k in regimes.rows]
            assert "gdpr-33/notify" in keys and "uk-gdpr/notify" in keys   # a UK NINO in the prompts
            # GDPR Art. 33: 72 h from the awareness the fixture set; 37 h 50 min left at the frozen time.
            cell = regimes.get_cell("gdpr-33/notify", "left")
            assert cell.plain == "1d 13h 50m"
            audit = [k.value for k in scr.query_one("#audit").rows]
            assert len(audit) == len(audit_actions(app, openai))
            text = screen_text(app)
            assert "RESIDENCY VIOLATION" in text and "UK_NINO" in text
            for raw in RAW_VALUES:
                assert raw not in text

    run(go())


def test_countdown_colour_changes_as_the_injected_clock_advances(tui):
    openai = tui["incidents"]["openai"]
    clock = FrozenClock(FROZEN_NOW)
    due = AWARE_AT + timedelta(hours=72)

    async def go():
        app = app_for(tui, clock=clock)
        async with app.run_test() as pilot:
            await open_incident(pilot, openai)
            regimes = app.screen.query_one("#regimes")
            seen = []
            for at in (due - timedelta(hours=13), due - timedelta(hours=3), due - timedelta(minutes=30),
                       due + timedelta(minutes=7)):
                clock.set(at)
                await pilot.pause(clock.tick_s + 0.2)   # the screen's own refresh, no reload
                cell = regimes.get_cell("gdpr-33/notify", "left")
                seen.append((cell.plain, str(cell.style)))
            assert seen[0][0] == "13h 00m 00s" and "bold" not in seen[0][1]
            assert seen[1][0] == "3h 00m 00s" and "bold" in seen[1][1] and seen[1][1] != seen[2][1]
            assert seen[2][0] == "30m 00s"
            assert seen[3][0] == "OVERDUE +7m 00s" and " on " in seen[3][1]   # white on the error colour
            # The header's live countdown follows the same clock.
            assert app.screen.query_one("#hdr-countdown").level == "overdue"

    run(go())


def _fill(modal, **values):
    for name, value in values.items():
        w = modal.query_one(f"#field-{name}")
        w.value = value


def test_set_awareness_refusals_change_nothing_and_the_reasoned_change_is_audited(tui):
    openai = tui["incidents"]["openai"]
    clocks_sql = "SELECT \"at\", set_by, reason FROM incident_clocks WHERE incident_id = ? AND event = 'awareness'"
    before = read_rows(tui["db"], clocks_sql, [openai])
    n_audit = len(audit_actions(tui["db"]))

    # Two days after the frozen time: awareness on the first morning puts the GDPR 72 h in the past.
    now = FROZEN_NOW + timedelta(days=2)

    async def go():
        app = app_for(tui, clock=FrozenClock(now))
        async with app.run_test() as pilot:
            await open_incident(pilot, openai)
            await pilot.press("w")
            await pilot.pause()
            modal = app.screen
            assert type(modal).__name__ == "FormModal"
            # In the future: refused by the core, shown in the dialog, which stays open.
            _fill(modal, time=(now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%MZ"), reason="pager")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert app.screen is modal and "in the future" in modal.error
            # Before the first finding (09:00): refused too.
            _fill(modal, time="2026-03-11T08:00Z")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert "before the incident's first finding" in modal.error
            # Back-dated so that the GDPR 72 hours are already past: needs 'accept overdue'.
            _fill(modal, time="2026-03-11T09:30Z")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert "already past" in modal.error and app.screen is modal
            assert rows(app, clocks_sql, [openai]) == before
            assert len(audit_actions(app)) == n_audit
            modal.query_one("#field-accept").value = True
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert app.screen is not modal and type(app.screen).__name__ == "IncidentScreen"
            assert app.screen.view.facts.awareness.strftime("%Y-%m-%dT%H:%M") == "2026-03-11T09:30"

    run(go())
    at, by, reason = read_rows(tui["db"], clocks_sql, [openai])[0]
    assert at.strftime("%Y-%m-%dT%H:%M") == "2026-03-11T09:30" and by == RESPONDER and reason == "pager"
    last = read_rows(tui["db"], "SELECT action, actor, detail FROM audit_log ORDER BY seq DESC LIMIT 1")[0]
    assert last[0] == "clock.awareness" and last[1] == RESPONDER and "accepted_overdue" in json.loads(last[2])
    assert audit_verifies(tui["db"])


def test_merge_and_split_through_their_dialogs(tui):
    openai, anthropic, key = (tui["incidents"][k] for k in ("openai", "anthropic", "key"))

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            await open_incident(pilot, anthropic)
            await pilot.press("m")
            await pilot.pause()
            _fill(app.screen, sources=f"{key}", reason="same upstream service")
            await pilot.press("ctrl+s")
            await settle(pilot)
            await pilot.press("s")
            await pilot.pause()
            _fill(app.screen, where="entity=ANTHROPIC_API_KEY", title="The key on its own", reason="separate owner")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert type(app.screen).__name__ == "IncidentScreen"

    run(go())
    assert read_rows(tui["db"], "SELECT status, merged_into FROM incidents WHERE incident_id = ?", [key]) == [("closed", anthropic)]
    new = read_rows(tui["db"], "SELECT incident_id, title, origin FROM incidents ORDER BY incident_id DESC LIMIT 1")[0]
    assert new[1] == "The key on its own" and new[2] == "split"
    assert read_rows(tui["db"], """SELECT DISTINCT f.entity FROM incident_findings i JOIN findings f USING (finding_id)
                                   WHERE i.incident_id = ?""", [new[0]]) == [("ANTHROPIC_API_KEY",)]
    assert audit_actions(tui["db"], anthropic)[-2:] == ["incident.merged", "incident.split"]
    assert openai != anthropic and audit_verifies(tui["db"])


def test_notice_draft_renders_in_a_worker_without_raw_values(tui):
    openai = tui["incidents"]["openai"]

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            await open_incident(pilot, openai)
            await pilot.press("n")
            await pilot.pause()
            chooser = app.screen
            assert "gdpr-33" in chooser.regime_ids
            chooser.query_one("#regime-choice").highlighted = chooser.regime_ids.index("gdpr-33")
            await pilot.press("enter")
            await settle(pilot)
            modal = app.screen
            assert type(modal).__name__ == "MarkdownModal"
            text = modal.markdown
            assert "Art. 33(3)(a)" in text and "Acme Shop GmbH" in text
            for raw in RAW_VALUES:
                assert raw not in text
            assert "still unknown" in str(modal.query_one("#dialog-footer").render()).lower()
            await pilot.press("escape")
            await pilot.pause()
            assert type(app.screen).__name__ == "IncidentScreen"

    run(go())


def test_summary_panel_falls_back_to_the_template_without_a_model(tui, tmp_path):
    cfg = tui["config"]
    cfg = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, model=tmp_path / "no-such-model.gguf"))

    async def go():
        app = app_for(tui, config=cfg)
        async with app.run_test() as pilot:
            await open_incident(pilot, tui["incidents"]["openai"])
            await pilot.press("g")
            await settle(pilot)
            text = str(app.screen.query_one("#summary").render())
            assert text.startswith("TEMPLATE") and "template used" in text
            for raw in RAW_VALUES:
                assert raw not in text

    run(go())


@pytest.mark.slow
def test_summary_streams_from_the_local_model_and_x_cancels_it(tui):
    from leakwatch.llm.models import is_installed, llama_available

    # The setup (scripts/bootstrap.sh, run by `make test`) installs llama-cpp-python and the
    # model; without them this is a failure to fix, not a test to skip.
    assert llama_available() and is_installed(), \
        "no local model: run ./scripts/bootstrap.sh (or '.venv/bin/leakwatch models install')"

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            await open_incident(pilot, tui["incidents"]["openai"])
            scr = app.screen
            await pilot.press("g")
            for _ in range(600):  # the first tokens (model load + prompt) within 60 s
                await pilot.pause(0.1)
                if scr._summary_text:
                    break
            assert scr._summary_text, "no token arrived"
            await pilot.press("x")
            await settle(pilot)
            text = str(scr.query_one("#summary").render())
            assert "cancelled before the end" in text

    run(go())


# --- playbook -------------------------------------------------------------------------------------


async def select_step(pilot, incident_id: int, key: str):
    """Open the incident's playbook and put the cursor on step ``key`` (playbook/step)."""
    pilot.app.open_playbook(incident_id)
    await settle(pilot)
    scr = pilot.app.screen
    table = scr.query_one("#steps")
    table.move_cursor(row=table.get_row_index(key))
    return scr


def test_marking_a_step_done_asks_each_evidence_item_and_writes_step_and_audit(tui):
    openai = tui["incidents"]["openai"]
    pb = tui["step_done"][0]

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            scr = await select_step(pilot, openai, f"{pb}/stop-flow")
            await pilot.press("d")
            await pilot.pause()
            modal = app.screen
            labels = [str(lab.render()) for lab in modal.query(".field-label")]
            assert labels == ["change record *", "time the flow stopped *"]
            _fill(modal, ev0="CHG-9")
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert "needed: time the flow stopped" in modal.error
            _fill(modal, ev1="2026-03-11 14:00 UTC")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert app.screen is scr
            assert scr.steps[f"{pb}/stop-flow"].state == "done"
            # vendor-deletion waited for stop-flow: it applies now.
            assert scr.steps[f"{pb}/vendor-deletion"].applies is True

    run(go())
    status, evidence, by = read_rows(tui["db"], """SELECT status, evidence, updated_by FROM playbook_steps
                                                  WHERE incident_id = ? AND step_id = 'stop-flow'""", [openai])[0]
    assert status == "done" and by == RESPONDER
    assert json.loads(evidence) == {"change record": "CHG-9", "time the flow stopped": "2026-03-11 14:00 UTC"}
    last = read_rows(tui["db"], "SELECT action, detail FROM audit_log WHERE incident_id = ? ORDER BY seq DESC LIMIT 1",
                     [openai])[0]
    assert last[0] == "step.done" and json.loads(last[1])["step"] == "stop-flow"
    assert audit_verifies(tui["db"])


def test_skip_needs_a_reason_and_waiting_steps_cannot_be_done(tui):
    openai = tui["incidents"]["openai"]
    pb = tui["step_done"][0]
    before = audit_actions(tui["db"], openai)

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            app.open_playbook(openai)
            await settle(pilot)
            scr = app.screen
            table = scr.query_one("#steps")
            table.move_cursor(row=table.get_row_index(f"{pb}/vendor-deletion"))   # waits for stop-flow
            await pilot.press("d")
            await pilot.pause()
            _fill(app.screen, ev0="REQ-1", ev1="30 days")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert "condition is not met" in app.screen.error
            await pilot.press("escape")
            await pilot.pause()
            assert audit_actions(app, openai) == before
            await pilot.press("k")
            await pilot.pause()
            _fill(app.screen, reason="vendor has zero retention (contract §4)")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert scr.steps[f"{pb}/vendor-deletion"].state == "skipped"

    run(go())
    assert read_rows(tui["db"], """SELECT status, reason FROM playbook_steps WHERE incident_id = ?
                                  AND step_id = 'vendor-deletion'""", [openai]) == [("skipped", "vendor has zero retention (contract §4)")]
    assert audit_actions(tui["db"], openai)[-1] == "step.skipped"


def test_notify_steps_show_the_outbox_state_of_their_notification(tui):
    openai = tui["incidents"]["openai"]
    pb, step = tui["step_started"]

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            app.open_playbook(openai)
            await settle(pilot)
            table = app.screen.query_one("#steps")
            nid = rows(app, "SELECT notification_id FROM outbox WHERE event = 'step.notify'")[0][0]
            assert table.get_cell(f"{pb}/{step}", "outbox").plain == f"pending #{nid}"
            assert table.get_cell(f"{pb}/triage", "outbox").plain == ""    # no notify action

    run(go())


# --- notifications -----------------------------------------------------------------------------------


def test_retry_a_dead_letter_and_cancel_a_pending_notification(tui):
    dead = tui["dead_letter"]
    pending = tui["pending"][0]

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            await pilot.press("N")
            await settle(pilot)
            scr = app.screen
            table = scr.query_one("#outbox")
            assert table.get_cell(str(dead), "status").plain == "dead"
            # The history of the dead letter: queued, then the dead letter with its error.
            assert [r["action"] for r in scr._history.rows] == ["notify.queued", "notify.dead_letter"]
            # Retrying a pending one is refused without a change.
            table.move_cursor(row=table.get_row_index(str(pending)))
            await pilot.press("r")
            await settle(pilot)
            table.move_cursor(row=table.get_row_index(str(dead)))
            await pilot.press("r")
            await settle(pilot)
            assert table.get_cell(str(dead), "status").plain == "pending"
            table.move_cursor(row=table.get_row_index(str(pending)))
            await pilot.press("c")
            await pilot.pause()
            _fill(app.screen, reason="told the SOC by phone")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert table.get_cell(str(pending), "status").plain == "dead"

    run(go())
    got = {r[0]: r[1:] for r in read_rows(
        tui["db"], "SELECT notification_id, status, attempts, last_error FROM outbox WHERE notification_id IN (?, ?)",
        [dead, pending])}
    assert got[dead][0] == "pending" and got[dead][1] == 0
    assert got[pending][0] == "dead" and got[pending][2] == f"cancelled by {RESPONDER}: told the SOC by phone"
    actions = read_rows(tui["db"], "SELECT action, actor FROM audit_log WHERE action IN ('notify.retry', 'notify.cancel') ORDER BY seq")
    assert actions == [("notify.retry", RESPONDER), ("notify.cancel", RESPONDER)]
    assert audit_verifies(tui["db"])


# --- palette, help, themes, sizes ------------------------------------------------------------------


def test_command_palette_lists_every_action_and_runs_one(tui):
    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            await open_incident(pilot, tui["incidents"]["openai"])
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for action in ("Acknowledge", "Set awareness", "Merge", "Split", "Notice draft", "Playbook", "Summary"):
                assert f"Incident: {action}" in titles
            assert "Notifications" in titles and f"Open incident #{tui['incidents']['key']}: AI API key exposed to Anthropic" in titles
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"set awareness")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await settle(pilot)
            assert type(app.screen).__name__ == "FormModal" and "awareness" in app.screen.form_title

    run(go())


def test_help_lists_the_screen_keys_and_the_countdown_colours(tui):
    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            app.open_playbook(tui["incidents"]["openai"])
            await settle(pilot)
            await pilot.press("question_mark")
            await pilot.pause()
            text = app.screen.text()
            assert "- `d` Done" in text and "- `k` Skip" in text and "2 h or less" in text
            await pilot.press("escape")
            await pilot.pause()
            assert type(app.screen).__name__ == "PlaybookScreen"

    run(go())


def test_light_theme_and_80x24_keep_every_column_on_screen(tui):
    async def go():
        app = app_for(tui, size=(80, 24))
        async with app.run_test() as pilot:
            await settle(pilot)
            table = app.screen.query_one("#incidents")
            assert table.virtual_size.width <= table.size.width   # no sideways scrolling
            assert [c.key.value for c in table.columns.values()] == ["id", "severity", "status", "title", "subjects", "left"]
            await pilot.press("T")
            await pilot.pause()
            assert app.theme == LIGHT_THEME
            await open_incident(pilot, tui["incidents"]["openai"])
            regimes = app.screen.query_one("#regimes")
            assert regimes.virtual_size.width <= regimes.size.width

    run(go())


def test_tui_command_reports_a_missing_database(tmp_path, capsys):
    import argparse

    from leakwatch.commands import tui as tui_cmd
    from leakwatch.exit_codes import ExitCode

    parser = argparse.ArgumentParser(prog="leakwatch")
    tui_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tui", "--db", str(tmp_path / "nope.duckdb")])
    with pytest.raises(UsageError, match="no such database"):
        tui_cmd.run(args, [])
    args = parser.parse_args(["tui", "--db", str(tmp_path / "nope.duckdb"), "--clock-start", "2026-03-11T09:00Z"])
    with pytest.raises(UsageError, match="--clock-speed"):
        tui_cmd.run(args, [])
    assert ExitCode.INPUT_ERROR == 2


def test_the_fixture_is_deterministic(tmp_path):
    # Snapshot tests rely on it: two builds give the same incidents, clocks, steps and audit rows.
    a = build_tui_db(tmp_path / "a" / "tui.duckdb")
    b = build_tui_db(tmp_path / "b" / "tui.duckdb")
    for sql in ("SELECT incident_id, title, severity, status, opened_at, first_seen FROM incidents ORDER BY 1",
                "SELECT incident_id, event, \"at\", reason FROM incident_clocks ORDER BY 1, 2",
                "SELECT seq, \"at\", actor, incident_id, action, detail, reason FROM audit_log ORDER BY 1",
                "SELECT notification_id, status, created_at, updated_at, last_error FROM outbox ORDER BY 1"):
        assert read_rows(a["db"], sql) == read_rows(b["db"], sql), sql
    assert a["incidents"] == b["incidents"] and a["dead_letter"] == b["dead_letter"]
    assert ACTOR in {r[0] for r in read_rows(a["db"], "SELECT actor FROM audit_log")}
    assert Path(a["db"]).name == "tui.duckdb"


# --- review: what responders type and logs carry is shown as text, never run ---------------------


def test_starting_a_step_does_not_deadlock_the_console(tui):
    """'s' took the write lock twice in one thread: the step never started, every later change
    queued behind it and the console could not quit."""
    openai = tui["incidents"]["openai"]
    pb = tui["step_done"][0]

    async def go():
        app = app_for(tui)
        async with app.run_test() as pilot:
            scr = await select_step(pilot, openai, f"{pb}/stop-flow")
            await pilot.press("s")
            await asyncio.wait_for(settle(pilot), 30)
            assert scr.steps[f"{pb}/stop-flow"].state == "in_progress"

    run(asyncio.wait_for(go(), 60))
    assert read_rows(tui["db"], """SELECT status FROM playbook_steps WHERE incident_id = ?
                                  AND step_id = 'stop-flow'""", [openai]) == [("in_progress",)]
    assert audit_verifies(tui["db"])


def test_markup_and_control_characters_from_responders_and_logs_are_shown_literally(tui):
    """A split title 'Card numbers from [/checkout]', a reason 'per [/dpo] note' and a file
    name with an ESC sequence crashed the console (MarkupError) or reached the terminal."""
    from leakwatch.incidents import book
    from leakwatch.store import Store

    openai = tui["incidents"]["openai"]
    with Store.open(tui["db"]) as s:
        book.set_fact(s, openai, "likely_consequences", "phishing [/x] of [bold red]customers", actor="t")
        fid = s.con.execute("SELECT min(finding_id) FROM incident_findings WHERE incident_id = ?", [openai]).fetchone()[0]
        new = book.split(s, openai, title="Card numbers from [/checkout]", finding_ids=[fid], actor="t", reason="per [/dpo] note")
        s.con.execute("UPDATE findings SET source_path = ? WHERE finding_id = ?", ["/logs/ctl\x1b]0;pwned\x07.log", fid])

    async def go():
        app = app_for(tui, size=(170, 40))
        async with app.run_test(size=(170, 40)) as pilot:
            await settle(pilot)
            await open_incident(pilot, new)
            await settle(pilot)
            assert type(app.screen).__name__ == "IncidentScreen"
            header = str(app.query_one("#hdr-incident").render())
            assert "Card numbers from [/checkout]" in header
            await open_incident(pilot, openai)
            await settle(pilot)
            import io

            from rich.console import Console

            out = io.StringIO()
            Console(file=out, width=200, color_system=None).print(app.screen._facts_table(app.screen.view))
            assert "[/x] of [bold red]customers" in out.getvalue()
            app.open_findings({"incident": new})
            await settle(pilot)
            from leakwatch.tui.widgets.findings_table import FindingsTable

            table = app.screen.query_one(FindingsTable)
            shown = " ".join(str(c) for c in table.get_row_at(0))
            assert "\x1b" not in shown and "\x07" not in shown and "]0;pwned\\x07.log:1" in shown

    run(go())


def test_out_of_range_times_and_clock_speeds_are_refused_not_crashes(tmp_path, capsys):
    from leakwatch.cli import main
    from leakwatch.incidents.book import IncidentError
    from leakwatch.tui.incident_model import parse_time

    for text in ("0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00", "1969-12-31T23:59Z"):
        with pytest.raises(IncidentError, match="out of range"):
            parse_time(text, "awareness")
    for speed in ("nan", "inf", "1e12", "0"):
        assert main(["tui", "--db", str(tmp_path / "none.duckdb"), "--clock-speed", speed]) == 2
        assert "--clock-speed" in capsys.readouterr().err


def test_an_accelerated_clock_is_refused_on_a_database_that_is_not_a_drill(tmp_path, capsys):
    """--clock-speed on a real database dated every acknowledgement and awareness change in
    simulated time, in its HMAC-chained audit trail."""
    from leakwatch.cli import main
    from leakwatch.commands.tui import drill_database
    from leakwatch.store import Store

    real, drill = tmp_path / "real.duckdb", tmp_path / "drill.duckdb"
    with Store.open(real) as s:
        s.begin_scan(["leakwatch", "scan", "app.log"], "h", 1)
    with Store.open(drill) as s:
        s.begin_scan(["leakwatch", "drill", "run", "bulk-sync-to-ai", "--seed", "1"], "h", 1)
    assert drill_database(str(drill)) and drill_database(str(tmp_path / "new.duckdb"))
    assert not drill_database(str(real))
    assert main(["tui", "--db", str(real), "--clock-speed", "60"]) == 2
    assert "--clock-speed is for drill databases" in capsys.readouterr().err
