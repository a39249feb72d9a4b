"""SVG snapshots of the console's findings-side screens (Findings, Finding detail, Salesforce
map) at 120×40, one at 80×24, on the fixed database of tests/tui_support.py and its frozen
clock; apps built by ``make_app`` as the CLI builds them.

The database is used where :func:`build_tui_db` wrote it (not a copy): the detail screen shows
the log file's path relative to the database's folder (``logs/app-openai.jsonl``), which a copy
in another folder would turn into an absolute temporary path. The screens only read.

Update after an intended change of the screens: ``pytest tests/test_tui_findings_snapshots.py
--snapshot-update``, look at the SVGs in ``__snapshots__/``, and commit them.
"""
from __future__ import annotations

import pytest
from tui_support import FROZEN_NOW, build_tui_db

from leakwatch.store import Store
from leakwatch.tui.app import make_app
from leakwatch.tui.clock import FrozenClock
from leakwatch.tui.screens.finding import FindingScreen
from leakwatch.tui.screens.sfmap import SalesforceMapScreen

SIZE = (120, 40)


@pytest.fixture(scope="module")
def tui(tmp_path_factory):
    return build_tui_db(tmp_path_factory.mktemp("tui-findings-snap") / "tui.duckdb")


@pytest.fixture(autouse=True)
def _user(monkeypatch):
    monkeypatch.setenv("LEAKWATCH_USER", "snapshot")


def app_for(info):
    return make_app(info["db"], config=info["config"], clock=FrozenClock(FROZEN_NOW))


async def settle(pilot, rounds: int = 4) -> None:
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def test_findings_screen(snap_compare, tui):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("F")
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)


def test_findings_screen_filtered_80x24(snap_compare, tui):
    """Opened from an incident, then searched: the dropdown shows the incident, the summary
    line the filters, and 80 columns keep the essential columns."""

    async def before(pilot):
        await settle(pilot)
        pilot.app.open_findings({"incident": tui["incidents"]["openai"]})
        await settle(pilot)
        await pilot.press("slash", *"@e", "enter")
        await settle(pilot)
        await pilot.press("escape")  # back to the table
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=(80, 24), run_before=before)


def test_finding_detail_screen(snap_compare, tui):
    with Store.open(tui["db"], read_only=True) as store:
        fid = store.con.execute("SELECT finding_id FROM findings WHERE entity = 'UK_NINO'").fetchone()[0]

    async def before(pilot):
        await settle(pilot)
        pilot.app.push_screen(FindingScreen(fid))
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)


def test_salesforce_map_screen(snap_compare, tui):
    async def before(pilot):
        await settle(pilot)
        pilot.app.push_screen(SalesforceMapScreen())
        await settle(pilot)

    assert snap_compare(app_for(tui), terminal_size=SIZE, run_before=before)
