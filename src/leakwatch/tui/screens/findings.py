"""Findings: every finding in the database, a page at a time, filtered, searched and sorted.

The table shows one page, as many rows as fit the terminal (:class:`FindingsTable`); the page
comes from DuckDB by keyset (:func:`leakwatch.tui.data.page`) in a worker thread, and so does
the count ("1–34 of 1,000,000"), in a worker of its own so that the rows never wait for it.
Nothing ever loads the whole table: a million findings page as fast as ten (see
``bench/test_tui_speed.py``). Keys: moving past the last row or ``pagedown`` reads the next
page, ``ctrl+home``/``ctrl+end`` the first/last; ``enter`` opens a finding, ``g`` its incident;
``/`` searches the masked values and field paths, ``f`` moves to the filters, ``s`` changes
the sort, ``x`` clears the filters.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, ClassVar, Final

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input, Select, Static

from leakwatch.errors import LeakwatchError
from leakwatch.tui import data
from leakwatch.tui.data import FindingFilter, Page
from leakwatch.tui.screens.base import LwScreen
from leakwatch.tui.widgets.findings_filterbar import DROPDOWNS, FilterBar
from leakwatch.tui.widgets.findings_table import COLUMNS, FLEX_COLUMN, FindingsTable
from leakwatch.tui.widgets.tables import fit_columns

SORT_LABELS: Final = {
    "severity": "severity, most severe first",
    "time": "time, newest first",
    "entity": "entity A–Z",
    "file": "file and line",
}
#: Rows of chrome around the table before the first layout (header, title, two filter rows,
#: table header, footer): the first page is asked for before the table has a size.
_CHROME_ROWS: Final = 6
#: Facet columns the dropdowns are filled from (the incident one comes from incident_choices).
_FACETS: Final = ("entity", "rule_id", "sf_object", "dest_vendor", "source_path")


class PageLoaded(Message):
    """A page read for request ``gen`` (older requests' pages are dropped)."""

    def __init__(self, gen: int, page: Page, where: str, cursor: str) -> None:
        super().__init__()
        self.gen = gen
        self.page = page
        self.where = where
        self.cursor = cursor


class PagePrefetched(Message):
    """A page read ahead of the responder (request key ``key``)."""

    def __init__(self, key: tuple, page: Page) -> None:
        super().__init__()
        self.key = key
        self.page = page


class CountLoaded(Message):
    """How many findings match ``filter``."""

    def __init__(self, filter: FindingFilter, total: int) -> None:
        super().__init__()
        self.filter = filter
        self.total = total


class FacetsLoaded(Message):
    """The dropdowns' choices: filter field → (value, count) pairs, and the incidents."""

    def __init__(self, facets: dict, incidents: list) -> None:
        super().__init__()
        self.facets = facets
        self.incidents = incidents


def _describe(flt: FindingFilter) -> str:
    names = {"min_severity_rank": "severity ≥", "rule_id": "rule", "sf_object": "object", "sf_field": "field",
             "dest_vendor": "destination", "dest_region": "region", "source_path": "file", "incident_id": "incident #"}
    ranks = {v: k for k, v in data.SEVERITY_RANKS.items()}
    parts = []
    for k, v in flt.active().items():
        if k == "min_severity_rank":
            v = ranks.get(v, v)
        if k == "search":
            parts.append(f"“{v}”")
            continue
        if v == "":
            v = "none"
        parts.append(f"{names.get(k, k)}{'' if k == 'incident_id' else ' '}{v}")
    return ", ".join(parts)


class FindingsScreen(LwScreen):
    """The findings, optionally opened with ``filters`` (e.g. ``{"incident": 4}``; the keys of
    :meth:`leakwatch.tui.data.FindingFilter.from_mapping`) and a ``sort`` (a key of
    :data:`leakwatch.tui.data.SORTS`)."""

    PALETTE_GROUP = "Findings"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Open"),
        Binding("g", "incident", "Go to incident"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("f", "filters", "Filters"),
        Binding("s", "sort", "Sort"),
        Binding("x", "clear", "Clear filters"),
        Binding("pagedown", "page('next')", "Next page", show=False),
        Binding("pageup", "page('prev')", "Previous page", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]
    CSS = """
    FindingsScreen #findings-table { height: 1fr; max-height: 100%; }
    FindingsScreen #findings-summary { height: 1; }
    """

    def __init__(self, filters: dict | None = None, *, sort: str = "severity") -> None:
        super().__init__()
        if sort not in data.SORTS:
            raise ValueError(f"unknown sort {sort!r} (one of {', '.join(data.SORTS)})")
        #: The filter the rows shown match (the filter bar's value).
        self.filter = FindingFilter.from_mapping(filters)
        self.sort = sort
        #: The page shown, its first row's position in the whole list, and the list's length.
        self.page: Page | None = None
        self.first_index: int | None = 0
        self.total: int | None = None
        self.counts = data.CountCache()
        #: Pages put in the table so far, and pages drawn on screen (the frame after): tests and
        #: the bench wait on these; ``painted_at`` is when the last one was drawn
        #: (``time.perf_counter``).
        self.pages_shown = 0
        self.pages_painted = 0
        #: Queries issued for pages (the responder's and read-ahead ones).
        self.page_queries = 0
        self.painted_at = 0.0
        self._gen = 0
        # The request that produced (or will produce) the page shown: where, key, and the
        # position it is anchored at (first row for first/next, the row after for prev).
        self._request: tuple[str, Any, int | None] = ("first", None, 0)
        self._limit = 0
        # Pages read ahead (the next one, while the responder reads this one) or kept (the one
        # just left, which is the previous page of the one shown): paging through them costs
        # a repaint, not a query. Keyed by (filter, sort, where, key, limit); dropped on reload.
        self._ahead: OrderedDict[tuple, Page] = OrderedDict()
        self._prefetching: tuple | None = None
        self._waiting: tuple[tuple, int, str] | None = None
        # The filter the count was last asked for; the choices are read once the first page
        # is up (so neither competes with it for the two cores a laptop may have).
        self._count_for: FindingFilter | None = None
        self._facets_asked = False

    def compose_body(self) -> ComposeResult:
        yield Static("Findings — loading…", id="findings-summary", classes="screen-title")
        yield FilterBar(self.filter, id="findings-filters")
        yield FindingsTable(id="findings-table")

    def on_mount(self) -> None:
        table = self.query_one(FindingsTable)
        fit_columns(table, COLUMNS, FLEX_COLUMN, self.app.size.width)
        table.focus()
        # Cell colours come from the theme's variables: repaint once a new theme is applied.
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme) -> None:
        if self.page is not None:
            self._paint("keep")

    # -- sizes ----------------------------------------------------------------------------------

    def _page_size(self) -> int:
        rows = self.query_one(FindingsTable).visible_rows
        if rows <= 0:
            rows = self.app.size.height - _CHROME_ROWS
        return max(1, rows)

    def on_resize(self) -> None:
        table = self.query_one(FindingsTable)
        if fit_columns(table, COLUMNS, FLEX_COLUMN, self.size.width) and self.page is not None:
            self._paint("keep")
        self.call_after_refresh(self._check_page_size)

    def _check_page_size(self) -> None:
        if self.page is not None and self._page_size() != self._limit:
            self._rerun("keep")

    # -- loading --------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the page shown again (after a change, or on mount), its count and the choices."""
        self._ahead.clear()
        self._prefetching = None
        self._count_for = None  # counted again once the page is up
        if self.page is None and self._gen == 0:
            self._start("first", None, 0, "first")
        else:
            self._facets_asked = False
            self._rerun("keep")

    def _rerun(self, cursor: str) -> None:
        where, key, anchor = self._request
        self._start(where, key, anchor, cursor)

    def _start(self, where: str, key: Any, anchor: int | None, cursor: str) -> None:
        self._gen += 1
        self._request = (where, key, anchor)
        self._limit = self._page_size()
        self._waiting = None
        ckey = (self.filter, self.sort, where, key, self._limit)
        page = self._ahead.pop(ckey, None)
        if page is not None:
            self.on_page_loaded(PageLoaded(self._gen, page, where, cursor))
        elif ckey == self._prefetching:
            self._waiting = (ckey, self._gen, cursor)  # it is being read already
        else:
            self.page_queries += 1
            self._load_page(self._gen, self.filter, self.sort, where, key, self._limit, cursor)

    def _keep(self, where: str, key: Any, page: Page) -> None:
        self._ahead[(self.filter, self.sort, where, key, self._limit)] = page
        while len(self._ahead) > 8:
            self._ahead.popitem(last=False)

    def _read_ahead(self, page: Page) -> None:
        """Read the page after ``page`` now, while the responder looks at this one."""
        if not page.has_next or len(page.rows) < self._limit:
            return
        ckey = (self.filter, self.sort, "next", page.last_key, self._limit)
        if ckey in self._ahead or ckey == self._prefetching:
            return
        self._prefetching = ckey
        self.page_queries += 1
        self._prefetch(ckey)

    @work(thread=True, exclusive=True, group="findings-prefetch")
    def _prefetch(self, ckey: tuple) -> None:
        flt, sort, _where, key, limit = ckey
        cur = self.app.cursor()
        try:
            page = data.page(cur, flt, sort, after=key, limit=limit)
        except LeakwatchError:
            page = None  # the responder's own request will report it
        finally:
            cur.close()
        self.post_message(PagePrefetched(ckey, page))

    def on_page_prefetched(self, message: PagePrefetched) -> None:
        if self._prefetching == message.key:
            self._prefetching = None
        if message.page is None:
            if self._waiting and self._waiting[0] == message.key:
                _k, gen, cursor = self._waiting
                self._waiting = None
                _f, _s, where, key, limit = message.key
                self._load_page(gen, self.filter, self.sort, where, key, limit, cursor)
            return
        if self._waiting and self._waiting[0] == message.key:
            _k, gen, cursor = self._waiting
            self._waiting = None
            self.on_page_loaded(PageLoaded(gen, message.page, "next", cursor))
            return
        self._ahead[message.key] = message.page
        while len(self._ahead) > 8:
            self._ahead.popitem(last=False)

    @work(thread=True, exclusive=True, group="findings-page")
    def _load_page(self, gen: int, flt: FindingFilter, sort: str, where: str, key: Any, limit: int,
                   cursor: str) -> None:
        def build(cur) -> PageLoaded:
            if where == "last":
                page = data.last_page(cur, flt, sort, limit=limit)
            elif where == "prev":
                page = data.page(cur, flt, sort, before=key, limit=limit)
            else:
                page = data.page(cur, flt, sort, after=key, limit=limit)
            return PageLoaded(gen, page, where, cursor)

        self.post_loaded("findings", build)

    @work(thread=True, exclusive=True, group="findings-count")
    def _load_count(self, flt: FindingFilter) -> None:
        self.post_loaded("the findings count", lambda cur: CountLoaded(flt, self.counts.get(cur, flt)))

    @work(thread=True, exclusive=True, group="findings-facets")
    def _load_facets(self) -> None:
        self.post_loaded("the filter choices", lambda cur: FacetsLoaded({col: data.facet(cur, col) for col in _FACETS},
                                                                        data.incident_choices(cur)))

    def on_page_loaded(self, message: PageLoaded) -> None:
        if message.gen != self._gen:
            return  # an older request: the responder has moved on
        page = message.page
        where, req_key, anchor = self._request
        if where == "prev" and not page.has_prev and len(page.rows) < self._limit and page.has_next:
            # Fewer rows before this point than a page: show the first page instead.
            self._start("first", None, 0, message.cursor)
            return
        old = self.page
        if old is not None and old.rows and len(old.rows) == self._limit and page.rows:
            # The page left is the neighbour of the one shown: keep it for the way back.
            if where == "next" and req_key == old.last_key:
                self._keep("prev", page.first_key, Page(old.rows, old.keys, old.has_prev, True))
            elif where == "prev" and req_key == old.first_key:
                self._keep("next", page.last_key, Page(old.rows, old.keys, True, old.has_next))
        self.page = page
        if where in ("first", "next"):
            self.first_index = anchor
        elif where == "prev":
            self.first_index = 0 if not page.has_prev else (None if anchor is None else max(0, anchor - len(page.rows)))
        else:  # last
            self.first_index = None if self.total is None else max(0, self.total - len(page.rows))
        self._paint(message.cursor)
        self.pages_shown += 1
        self.call_after_refresh(self._painted)
        if self._count_for != self.filter:
            self._count_for = self.filter
            self._load_count(self.filter)
        if not self._facets_asked:
            self._facets_asked = True
            self._load_facets()
        self._read_ahead(page)

    def _painted(self) -> None:
        self.pages_painted += 1
        self.painted_at = time.perf_counter()

    def on_count_loaded(self, message: CountLoaded) -> None:
        if message.filter != self.filter:
            return
        self.total = message.total
        if self._request[0] == "last" and self.page is not None:
            self.first_index = max(0, self.total - len(self.page.rows))
        self._show_summary()

    def on_facets_loaded(self, message: FacetsLoaded) -> None:
        facets = dict(message.facets)
        self.query_one(FilterBar).set_choices(facets, message.incidents)
        self._incident_titles = {i: t for i, t, _n in message.incidents}
        self._show_active_incident()

    def _show_active_incident(self) -> None:
        iid = self.filter.incident_id
        titles = getattr(self, "_incident_titles", {})
        if iid is not None and iid in titles and self.app.screen is self:
            self.app.active_incident = (iid, titles[iid])

    def on_screen_resume(self) -> None:
        self._show_active_incident()

    # -- painting -------------------------------------------------------------------------------

    def _paint(self, cursor: str) -> None:
        table = self.query_one(FindingsTable)
        rows = self.page.rows if self.page is not None else []
        if cursor == "first":
            row = 0
        elif cursor == "last":
            row = len(rows) - 1
        else:
            row = table.cursor_row
        table.show_rows(rows, self.app.theme_variables, row)
        self._show_summary()

    def _show_summary(self) -> None:
        page = self.page
        text = Text("Findings  ", style="bold")
        if page is None:
            text.append("loading…")
        elif not page.rows:
            text.append("none match" if self.filter.active() else "none stored")
        else:
            n = len(page.rows)
            if self.first_index is not None:
                text.append(f"{self.first_index + 1:,}–{self.first_index + n:,}")
            else:
                text.append(f"last {n:,}")
            text.append(f" of {self.total:,}" if self.total is not None else " of …")
        text.append(f"  ·  sort: {SORT_LABELS[self.sort]}", style="dim")
        described = _describe(self.filter)
        if described:
            text.append("  ·  ")
            text.append(described, style="bold")
        self.query_one("#findings-summary", Static).update(text)

    # -- what the responder does -----------------------------------------------------------------

    def set_filter(self, flt: FindingFilter) -> None:
        """Show the findings matching ``flt`` from the first page (the filter bar follows)."""
        if flt == self.filter:
            return
        self.filter = flt
        bar = self.query_one(FilterBar)
        if bar.value != flt:
            bar.set_filter(flt)
        self.total = None
        self._start("first", None, 0, "first")

    def on_filter_bar_changed(self, message: FilterBar.Changed) -> None:
        self.set_filter(message.filter)

    def on_findings_table_page_request(self, message: FindingsTable.PageRequest) -> None:
        self.go(message.where, message.cursor)

    def go(self, where: str, cursor: str = "first") -> None:
        """Show the next, prev, first or last page."""
        page = self.page
        if page is None:
            return
        if where == "next":
            if not page.has_next or not page.rows:
                return
            base = None if self.first_index is None else self.first_index + len(page.rows)
            self._start("next", page.last_key, base, cursor)
        elif where == "prev":
            if not page.has_prev or not page.rows:
                return
            self._start("prev", page.first_key, self.first_index, cursor)
        elif where == "first":
            self._start("first", None, 0, cursor)
        elif where == "last":
            self._start("last", None, None, cursor)

    def action_page(self, where: str) -> None:
        self.go(where, "first" if where == "next" else "keep")

    def selected_row(self) -> tuple | None:
        """The finding under the cursor (a ``ROW_FIELDS`` tuple), if any."""
        table = self.query_one(FindingsTable)
        if self.page is None or not self.page.rows or not table.row_count:
            return None
        i = table.cursor_row
        return self.page.rows[i] if 0 <= i < len(self.page.rows) else None

    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        row = self.selected_row()
        if row is not None:
            from leakwatch.tui.screens.finding import FindingScreen

            self.app.push_screen(FindingScreen(row[0]))

    def action_incident(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        iid = row[data.ROW_FIELDS.index("incident_id")]
        if iid is None:
            self.notify(f"finding #{row[0]} is in no incident", severity="warning")
            return
        self.app.open_incident(int(iid))

    def action_search(self) -> None:
        self.query_one("#flt-search", Input).focus()

    def action_filters(self) -> None:
        self.query_one(f"#{DROPDOWNS[0][0]}", Select).focus()

    def action_sort(self) -> None:
        names = list(data.SORT_NAMES)
        self.set_sort(names[(names.index(self.sort) + 1) % len(names)])

    def set_sort(self, sort: str) -> None:
        """Sort by ``sort`` (a key of :data:`leakwatch.tui.data.SORTS`), from the first page."""
        if sort not in data.SORTS:
            raise ValueError(f"unknown sort {sort!r}")
        self.sort = sort
        self._start("first", None, 0, "first")
        self._show_summary()

    def action_clear(self) -> None:
        self.set_filter(FindingFilter())

    def action_back(self) -> None:
        focused = self.focused
        if focused is not None and focused is not self.query_one(FindingsTable):
            self.query_one(FindingsTable).focus()
            return
        self.app.pop_screen()
