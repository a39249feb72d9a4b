"""The incidents list: severity, status, title, data subjects, destinations and a live
countdown to each incident's nearest open deadline. The console's first screen."""
from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from leakwatch.errors import LeakwatchError
from leakwatch.tui.messages import IncidentsLoaded
from leakwatch.tui.screens.base import LwScreen
from leakwatch.tui.widgets.countdown import countdown_text
from leakwatch.tui.widgets.styles import severity_style
from leakwatch.tui.widgets.tables import (
    cells,
    clip,
    column_width,
    fit_columns,
    refresh_cell,
)

#: (key, label, width[, shown from this many columns]); the title takes what is left.
COLUMNS = (("id", "#", 3), ("severity", "severity", 8), ("status", "status", 9), ("title", "title", 0),
           ("subjects", "subjects", 8), ("destinations", "destinations", 16, 110), ("deadline", "next deadline", 16, 96),
           ("left", "left", 20))


def severity_text(severity: str, variables=None) -> Text:
    """A severity in its colour (``variables``: the app's theme variables)."""
    return Text(severity, style=severity_style(severity, variables))


class IncidentsScreen(LwScreen):
    """Every incident, open ones first, most severe first."""

    PALETTE_GROUP = "Incidents"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", show=True),
        Binding("a", "ack", "Acknowledge"),
        Binding("p", "playbook", "Playbook"),
        Binding("f", "findings", "Findings"),
        Binding("N", "app.notifications", "Notifications"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static("loading incidents…", id="incidents-summary", classes="screen-title")
        yield DataTable(id="incidents", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.rows: dict[int, object] = {}
        self._loaded: IncidentsLoaded | None = None

    def on_resize(self) -> None:
        if fit_columns(self.query_one("#incidents", DataTable), COLUMNS, "title", self.size.width):
            self._paint()

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="load")
    def _load(self) -> None:
        from leakwatch.tui.incident_model import load_incidents, nearest

        app = self.app

        def build(cur) -> IncidentsLoaded:
            rows = load_incidents(cur, app.config, app.regimes, app.now())
            return IncidentsLoaded(rows, nearest(rows))

        self.post_loaded("incidents", build)

    def on_incidents_loaded(self, message: IncidentsLoaded) -> None:
        app = self.app
        app.incident_rows = message.rows
        app.nearest = message.nearest
        self._loaded = message
        self.rows = {r.incident_id: r for r in message.rows}
        n_open = sum(1 for r in message.rows if r.status != "closed")
        summary = Text.assemble(("Incidents  ", "bold"), f"{len(message.rows)} in all, {n_open} open")
        if message.nearest is not None:
            nd = message.nearest
            summary.append(f" · nearest deadline: #{nd.incident_id} {nd.regime} {nd.label}, due {self.fmt_time(nd.due)}")
        self.query_one("#incidents-summary", Static).update(summary)
        self._paint()

    def _paint(self) -> None:
        message = getattr(self, "_loaded", None)
        if message is None:
            return
        app = self.app
        table = self.query_one("#incidents", DataTable)
        if not getattr(table, "_lw_columns", None):
            return  # painted on the first resize
        keep = self.selected_id()
        table.clear()
        now = app.now()
        tw = column_width(table, "title")
        for r in message.rows:
            nd = r.next_deadline
            status = r.status + (f" → #{r.merged_into}" if r.merged_into else "")
            table.add_row(*cells(table, {
                "id": Text(str(r.incident_id), justify="right"), "severity": severity_text(r.severity, app.theme_variables),
                "status": status, "title": clip(r.title, tw), "subjects": Text(f"{r.subjects:,}", justify="right"),
                "destinations": clip(r.destinations, 16), "deadline": clip(f"{nd.regime} {nd.label}", 16) if nd else "—",
                "left": countdown_text(nd.due if nd else None, now, theme=app.theme_variables)}), key=str(r.incident_id))
        if keep in self.rows:
            table.move_cursor(row=table.get_row_index(str(keep)))
        self._highlight()

    def tick(self) -> None:
        if not getattr(self, "rows", None):
            return
        table = self.query_one("#incidents", DataTable)
        now = self.app.now()
        theme = self.app.theme_variables
        for iid, r in self.rows.items():
            nd = r.next_deadline
            refresh_cell(table, str(iid), "left", countdown_text(nd.due if nd else None, now, theme=theme))

    def selected_id(self) -> int | None:
        """The incident under the cursor."""
        table = self.query_one("#incidents", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except LeakwatchError:  # pragma: no cover - defensive
            return None
        except Exception:  # noqa: BLE001 - an empty or changing table
            return None
        return int(key.value) if key is not None and key.value is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._highlight()

    def _highlight(self) -> None:
        if self.app.screen is not self:  # a screen on top shows (and sets) the active incident
            return
        iid = self.selected_id()
        if iid is not None and iid in self.rows:
            self.app.active_incident = (iid, self.rows[iid].title)

    def on_screen_resume(self) -> None:
        self._highlight()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        iid = self.selected_id()
        if iid is not None:
            self.app.open_incident(iid)

    def action_playbook(self) -> None:
        iid = self.selected_id()
        if iid is not None:
            self.app.open_playbook(iid)

    def action_findings(self) -> None:
        iid = self.selected_id()
        self.app.open_findings({"incident": iid} if iid is not None else None)

    def action_ack(self) -> None:
        iid = self.selected_id()
        if iid is None:
            return
        app = self.app

        def ack(store) -> str:
            from leakwatch.incidents import book

            book.acknowledge(store, iid, actor=app.actor, now=app.now())
            return f"incident #{iid} acknowledged (triaged) by {app.actor}"

        app.write(ack, f"acknowledge incident #{iid}")
