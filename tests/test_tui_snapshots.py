"""SVG snapshots of the console's incident-side screens at 120×40 (one at 80×24, one light) on
the fixed database of tests/tui_support.py and its frozen clock. The apps are built by
``make_app``, as the CLI builds them.

Update after an intended change of the screens: ``pytest tests/test_tui_snapshots.py
--snapshot-update``, look at the SVGs in ``__snapshots__/``, and commit them.
"""
from __future__ import annotations

import pytest
from tui_support import FROZEN_NOW, build_tui_db, clone_tui_db

from leakwatch.tui.app import LIGHT_THEME, make_app
from leakwatch.tui.clock import FrozenClock

SIZE = (120, 40)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tui_db(tmp_path_factory.mktemp("tui-snap") / "tui.duckdb")


@pytest.fixture
def tui(built, tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKWATCH_USER", "snapshot")
    return clone_tui_db(built, tmp_path / "db")


def app_for(info, **kw):
    return make_app(info["db"], config=info["config"], clock=FrozenClock(FROZEN_NOW), **kw)


async def settle(pilot, rounds: int = 4) -> None:
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def test_incidents_screen(snap_compare, tui):
    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=settle)


def test_incident_screen(snap_compare, tui):
    async def before(pilot):
        pilot.app.open_incident(tui["incidents"]["openai"])
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)


def test_incident_screen_light(snap_compare, tui):
    async def before(pilot):
        pilot.app.open_incident(tui["incidents"]["openai"])
        await settle(pilot)

    assert snap_compare(app_for(tui, theme=LIGHT_THEME), terminal_size=SIZE, run_before=before)


def test_incident_screen_80x24(snap_compare, tui):
    async def before(pilot):
        pilot.app.open_incident(tui["incidents"]["openai"])
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=(80, 24), run_before=before)


def test_set_awareness_dialog_with_a_refusal(snap_compare, tui):
    async def before(pilot):
        pilot.app.open_incident(tui["incidents"]["openai"])
        await settle(pilot)
        await pilot.press("w")
        await pilot.pause()
        pilot.app.screen.query_one("#field-time").value = "2026-03-11T08:00Z"
        pilot.app.screen.query_one("#field-reason").value = "pager call"
        await pilot.press("ctrl+s")
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)


def test_notice_draft(snap_compare, tui):
    async def before(pilot):
        pilot.app.open_incident(tui["incidents"]["openai"])
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause()
        chooser = pilot.app.screen
        chooser.query_one("#regime-choice").highlighted = chooser.regime_ids.index("gdpr-33")
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)


def test_playbook_screen(snap_compare, tui):
    pb, step = tui["step_started"]

    async def before(pilot):
        pilot.app.open_playbook(tui["incidents"]["openai"])
        await settle(pilot)
        table = pilot.app.screen.query_one("#steps")
        table.move_cursor(row=table.get_row_index(f"{pb}/{step}"))
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)


def test_step_done_dialog(snap_compare, tui):
    pb = tui["step_done"][0]

    async def before(pilot):
        pilot.app.open_playbook(tui["incidents"]["openai"])
        await settle(pilot)
        table = pilot.app.screen.query_one("#steps")
        table.move_cursor(row=table.get_row_index(f"{pb}/stop-flow"))
        await pilot.press("d")
        await pilot.pause()

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)


def test_notifications_screen(snap_compare, tui):
    async def before(pilot):
        await pilot.press("N")
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)


def test_help_screen(snap_compare, tui):
    async def before(pilot):
        pilot.app.open_incident(tui["incidents"]["openai"])
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)
