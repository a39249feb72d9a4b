"""The findings side of the console driven as a responder drives it: keys through Textual's pilot
on the real test database (tests/tui_support.py: real logs, the real pipeline, real incidents),
built by ``make_app`` as the CLI builds it. Every screen state is checked against what
``leakwatch.tui.data`` returns for the same filter, sort and page, and no planted raw value may
ever be on screen.
"""
from __future__ import annotations

import asyncio
import functools
from datetime import timedelta

import pytest
from textual.widgets import Input, Select
from tui_support import FROZEN_NOW, RAW_VALUES, build_tui_db, clone_tui_db

from leakwatch.tui import data
from leakwatch.tui.app import make_app
from leakwatch.tui.clock import FrozenClock
from leakwatch.tui.data import FindingFilter
from leakwatch.tui.screens.finding import FindingScreen
from leakwatch.tui.screens.findings import FindingsScreen
from leakwatch.tui.screens.sfmap import SalesforceMapScreen
from leakwatch.tui.widgets.findings_filterbar import SEARCH_DEBOUNCE_S
from leakwatch.tui.widgets.findings_table import FindingsTable
from leakwatch.tui.widgets.sfmap_tree import SalesforceMapTree

INCIDENT_ID = data.ROW_FIELDS.index("incident_id")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tui_db(tmp_path_factory.mktemp("tui-findings") / "tui.duckdb")


@pytest.fixture
def tui(built, tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKWATCH_USER", "carol-responder")
    return clone_tui_db(built, tmp_path / "db")


def sync(test):
    """Run an ``async def`` test on a fresh event loop (no asyncio plugin needed)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


def app_for(info, size=(120, 40)):
    return make_app(info["db"], config=info["config"], clock=FrozenClock(FROZEN_NOW), size=size)


async def settle(pilot, rounds: int = 4) -> None:
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def screen_text(app) -> str:
    """What the terminal shows now, as plain text."""
    return "\n".join("".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips())


def assert_no_raw(app) -> None:
    text = screen_text(app)
    for raw in RAW_VALUES:
        assert raw not in text
        assert raw[-8:] not in text  # not even its end (a masked key keeps only the vendor prefix)


def expected(app, flt=None, sort="severity", **kw):
    """What the data layer gives for the same request, on a cursor of the app's connection."""
    cur = app.cursor()
    try:
        return data.page(cur, flt, sort, **kw)
    finally:
        cur.close()


def shown_ids(screen: FindingsScreen) -> list[int]:
    table = screen.query_one(FindingsTable)
    return [int(k.value) for k in table.rows]


async def open_findings(pilot, filters=None) -> FindingsScreen:
    await settle(pilot)
    if filters is None:
        await pilot.press("F")
    else:
        pilot.app.open_findings(filters)
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, FindingsScreen)
    return screen


# -- the list --------------------------------------------------------------------------------------

@sync
async def test_first_page_fits_the_terminal_and_is_what_the_query_returns(tui):
    app = app_for(tui, size=(120, 16))
    async with app.run_test() as pilot:
        screen = await open_findings(pilot)
        table = screen.query_one(FindingsTable)
        n_all = data.count(app.store.con)
        assert n_all == 31  # the x-api-key Anthropic key is one finding (anthropic_api_key), not two
        # One page, as many rows as fit: never the whole list.
        assert 0 < table.row_count == table.visible_rows < n_all
        want = expected(app, limit=table.row_count)
        assert shown_ids(screen) == [r[0] for r in want.rows]
        assert screen.total == n_all
        assert f"1–{table.row_count} of 31" in screen_text(app)
        assert_no_raw(app)


@sync
async def test_paging_with_keys(tui):
    app = app_for(tui, size=(120, 16))
    async with app.run_test() as pilot:
        screen = await open_findings(pilot)
        per = screen.query_one(FindingsTable).row_count
        first = expected(app, limit=per)
        await pilot.press("pagedown")
        await settle(pilot)
        second = expected(app, after=first.last_key, limit=per)
        assert shown_ids(screen) == [r[0] for r in second.rows]
        assert f"{per + 1}–{2 * per} of 31" in screen_text(app)
        # Moving down past the last row reads the next page; the cursor lands on its first row.
        table = screen.query_one(FindingsTable)
        for _ in range(per):
            await pilot.press("down")
        await settle(pilot)
        third = expected(app, after=second.last_key, limit=per)
        assert shown_ids(screen) == [r[0] for r in third.rows] and table.cursor_row == 0
        # Up past the first row goes back, cursor on the last row of the previous page. The
        # pages just left are kept: going back reads nothing.
        queries = screen.page_queries
        await pilot.press("up")
        await settle(pilot)
        assert shown_ids(screen) == [r[0] for r in second.rows] and table.cursor_row == per - 1
        await pilot.press("pageup")
        await settle(pilot)
        assert shown_ids(screen) == [r[0] for r in first.rows]
        assert not screen.page.has_prev
        assert screen.page_queries == queries
        # Forward again: page 2 was kept, page 3 was read ahead while page 2 was shown.
        await pilot.press("pagedown")
        await settle(pilot)
        await pilot.press("pagedown")
        await settle(pilot)
        assert shown_ids(screen) == [r[0] for r in third.rows]
        assert screen.page_queries <= queries + 1  # at most the read-ahead of page 4
        await pilot.press("ctrl+home")
        await settle(pilot)
        # The end of the list, and the numbering of the last page.
        await pilot.press("ctrl+end")
        await settle(pilot)
        last = data.last_page(app.store.con, None, "severity", limit=per)
        assert shown_ids(screen) == [r[0] for r in last.rows] and not screen.page.has_next
        assert f"{31 - per + 1}–31 of 31" in screen_text(app)
        await pilot.press("pagedown")  # nothing after the end
        await settle(pilot)
        assert shown_ids(screen) == [r[0] for r in last.rows]
        await pilot.press("ctrl+home")
        await settle(pilot)
        assert shown_ids(screen) == [r[0] for r in first.rows]


@sync
async def test_filters_change_the_query_and_the_rows(tui):
    app = app_for(tui)
    async with app.run_test() as pilot:
        screen = await open_findings(pilot)
        before = shown_ids(screen)
        # Keyboard: f to the entity dropdown, open it, pick the first entity.
        await pilot.press("f")
        assert app.focused.id == "flt-entity"
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("down", "enter")
        await settle(pilot)
        entity = screen.filter.entity
        assert entity is not None
        want = expected(app, FindingFilter(entity=entity), limit=50)
        assert shown_ids(screen) == [r[0] for r in want.rows] != before
        assert all(r[3] == entity for r in screen.page.rows)
        assert screen.total == data.count(app.store.con, FindingFilter(entity=entity))
        # The dropdowns combine: severity threshold and destination on top.
        bar = screen.query_one("#findings-filters")
        bar.query_one("#flt-severity", Select).value = 3
        await settle(pilot)
        bar.query_one("#flt-dest", Select).value = "OpenAI"
        await settle(pilot)
        flt = FindingFilter(entity=entity, min_severity_rank=3, dest_vendor="OpenAI")
        assert screen.filter == flt
        assert shown_ids(screen) == [r[0] for r in expected(app, flt, limit=50).rows]
        # Each filter field of the bar reaches the query.
        for wid, field, value in (("#flt-severity", "min_severity_rank", Select.NULL),
                                  ("#flt-entity", "entity", Select.NULL),
                                  ("#flt-dest", "dest_vendor", ""),
                                  ("#flt-file", "source_path", None),
                                  ("#flt-rule", "rule_id", None),
                                  ("#flt-incident", "incident_id", tui["incidents"]["anthropic"])):
            sel = bar.query_one(wid, Select)
            if value is None:  # the most frequent value the dropdown offers
                value = next(v for _label, v in bar.options_of(wid) if v not in ("", Select.NULL))
            sel.value = value
            await settle(pilot)
            assert getattr(screen.filter, field) == (None if value is Select.NULL else value)
            assert shown_ids(screen) == [r[0] for r in expected(app, screen.filter, limit=50).rows]
        # x clears every filter.
        await pilot.press("escape")  # from the dropdown back to the table
        await pilot.press("x")
        await settle(pilot)
        assert screen.filter == FindingFilter() and shown_ids(screen) == before
        assert bar.query_one("#flt-dest", Select).value is Select.NULL
        assert_no_raw(app)


@sync
async def test_search_matches_masked_values_never_raw_ones(tui):
    app = app_for(tui)
    async with app.run_test() as pilot:
        screen = await open_findings(pilot)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"sk-ant")
        await pilot.pause(SEARCH_DEBOUNCE_S + 0.2)
        await settle(pilot)
        assert screen.filter.search == "sk-ant"
        rows = screen.page.rows
        assert rows and all("sk-ant" in r[5] for r in rows)
        assert [r[0] for r in rows] == [r[0] for r in expected(app, FindingFilter(search="sk-ant"), limit=50).rows]
        assert screen.total == len(rows)
        # A raw e-mail address is in the logs, not in the database: nothing matches it.
        inp = app.focused
        inp.value = RAW_VALUES[0]
        await pilot.press("enter")  # submit: no debounce
        await settle(pilot)
        assert screen.filter.search == RAW_VALUES[0]
        assert screen.page.rows == [] and screen.total == 0
        assert "none match" in screen_text(app)
        # Field paths are searched too.
        inp.value = "records[0]"
        await pilot.press("enter")
        await settle(pilot)
        assert screen.page.rows and all("records[0]" in r[6] for r in screen.page.rows)
        assert_no_raw(app)


@sync
async def test_sort_key_cycles_through_the_orders(tui):
    app = app_for(tui)
    async with app.run_test() as pilot:
        screen = await open_findings(pilot)
        for sort in ("time", "entity", "file", "severity"):
            await pilot.press("s")
            await settle(pilot)
            assert screen.sort == sort
            assert shown_ids(screen) == [r[0] for r in expected(app, None, sort, limit=50).rows]
        assert "sort: severity" in screen_text(app)


@sync
async def test_opened_from_an_incident_shows_its_findings(tui):
    app = app_for(tui)
    iid = tui["incidents"]["anthropic"]
    async with app.run_test() as pilot:
        await settle(pilot)
        app.open_incident(iid)
        await settle(pilot)
        await pilot.press("f")  # the incident screen's "Findings"
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FindingsScreen) and screen.filter == FindingFilter(incident_id=iid)
        con = app.store.con
        ids = sorted(r[0] for r in con.execute("SELECT finding_id FROM incident_findings WHERE incident_id = ?",
                                               [iid]).fetchall())
        assert ids and sorted(shown_ids(screen)) == ids
        assert screen.query_one("#flt-incident", Select).value == iid
        assert app.active_incident[0] == iid


@sync
async def test_enter_opens_the_masked_detail_and_g_the_incident(tui):
    app = app_for(tui)
    async with app.run_test() as pilot:
        screen = await open_findings(pilot, {"search": "sk-ant"})
        row = screen.selected_row()
        fid, iid = row[0], row[INCIDENT_ID]
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, FindingScreen) and detail.finding_id == fid and detail.loaded
        assert detail.detail["masked"] == row[5] and detail.detail["masked"].startswith("sk-ant-api03-…")
        text = screen_text(app)
        assert f"Finding #{fid}" in text and row[5] in text and "logs/app-errors.jsonl" in text
        assert "base" in text and "validator" in text and "context" in text
        assert_no_raw(app)
        await pilot.press("g")
        await settle(pilot)
        from leakwatch.tui.screens.incident import IncidentScreen

        assert isinstance(app.screen, IncidentScreen) and app.screen.incident_id == iid
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is detail
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        # g straight from the list.
        await pilot.press("g")
        await settle(pilot)
        assert isinstance(app.screen, IncidentScreen) and app.screen.incident_id == iid


@sync
async def test_g_on_a_finding_in_no_incident_says_so(tui):
    app = app_for(tui)
    async with app.run_test() as pilot:
        con = app.store.con
        fid = con.execute("SELECT min(finding_id) FROM findings").fetchone()[0]
        con.execute("DELETE FROM incident_findings WHERE finding_id = ?", [fid])
        app.push_screen(FindingScreen(fid))
        await settle(pilot)
        assert app.screen.detail["incident_id"] is None
        await pilot.press("g")
        await settle(pilot)
        assert isinstance(app.screen, FindingScreen)  # nothing to jump to
        assert "In no incident yet" in screen_text(app)
        assert any(f"finding #{fid} is in no incident" in n.message for n in app._notifications)


@sync
async def test_a_change_reloads_the_page_in_place(tui):
    """After a change elsewhere (DataChanged) the same page is read again: a finding moved to a
    new incident shows that incident's number."""
    app = app_for(tui, size=(120, 16))
    async with app.run_test() as pilot:
        screen = await open_findings(pilot)
        await pilot.press("pagedown")
        await settle(pilot)
        ids = shown_ids(screen)
        target = screen.page.rows[2][0]

        def move(store):
            from leakwatch.incidents import book

            return book.open_incident(store, title="Split out by the test", finding_ids=[target], actor="carol",
                                      now=FROZEN_NOW + timedelta(minutes=1))

        new_iid = app.change(move)
        await settle(pilot)
        assert shown_ids(screen) == ids
        assert screen.page.rows[2][INCIDENT_ID] == new_iid
        assert f"#{new_iid}" in screen_text(app)


# -- the Salesforce map ----------------------------------------------------------------------------

@sync
async def test_salesforce_map_shows_the_flows_and_opens_their_findings(tui):
    app = app_for(tui)
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("M")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, SalesforceMapScreen)
        rows = data.sf_map_rows(app.store.con)
        assert screen.rows == rows and rows[0]["sf_object"] == "Contact"
        text = screen_text(app)
        top = rows[0]
        assert f"{top['findings']:,} findings" in text and f"{top['data_subjects']:,} subjects" in text
        assert "OpenAI · us · US" in text and "residency" in text
        # The cursor on the Email → OpenAI leaf; enter opens exactly those findings.
        tree = screen.query_one(SalesforceMapTree)
        leaf = next(n for n in tree.root.children[0].children if str(n.label).startswith("Email")).children[0]
        tree.move_cursor(leaf)
        await pilot.press("enter")
        await settle(pilot)
        findings = app.screen
        assert isinstance(findings, FindingsScreen)
        flt = FindingFilter(sf_object="Contact", sf_field="Email", dest_vendor="OpenAI", dest_region="us")
        assert findings.filter == flt
        email_leaf = next(r for r in rows if r["level"] == 2 and r["data_item"] == "Email")
        assert findings.total == email_leaf["findings"] == len(findings.page.rows)
        assert all(r[3] == "EMAIL_ADDRESS" and r[7] == "Contact" for r in findings.page.rows)
        assert_no_raw(app)


def test_bad_filters_name_the_key():
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        FindingsScreen({"colour": "red"})
    with pytest.raises(ValueError, match="unknown sort"):
        FindingsScreen(None, sort="size")



@sync
async def test_theme_switch_repaints_the_cells(tui):
    """Severity colours come from the theme: switching it (T) repaints the page shown."""
    app = app_for(tui)
    async with app.run_test() as pilot:
        screen = await open_findings(pilot)
        table = screen.query_one(FindingsTable)
        key = str(screen.page.rows[0][0])
        dark = str(table.get_cell(key, "severity").style)
        await pilot.press("T")
        await settle(pilot)
        light = str(table.get_cell(key, "severity").style)
        assert screen.page.rows[0][1] == "high" and dark != light
        assert shown_ids(screen) == [r[0] for r in expected(app, limit=50).rows]
