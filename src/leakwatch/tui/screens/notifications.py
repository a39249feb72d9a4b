"""The outbox: every notification with its state (dead letters first), the delivery history of
the one under the cursor (queued, attempts, dead letter, retried, cancelled — from the audit
trail), and the two hand operations: retry a dead letter, cancel a pending notification."""
from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Label, Static

from leakwatch.tui.messages import HistoryLoaded, OutboxLoaded
from leakwatch.tui.screens.base import LwScreen
from leakwatch.tui.widgets.forms import Field, FormModal
from leakwatch.tui.widgets.styles import semantic, state_style
from leakwatch.tui.widgets.tables import cells, clip, column_width, fit_columns

OUTBOX_COLUMNS = (("id", "#", 4), ("incident", "incident", 8), ("target", "target", 10), ("event", "event", 18),
                  ("status", "status", 10), ("attempts", "tries", 5), ("updated", "last change", 27, 100),
                  ("error", "last error", 0))
HISTORY_COLUMNS = (("seq", "#", 4), ("at", "when", 27), ("actor", "who", 10), ("action", "what", 20),
                   ("detail", "detail", 0))


class NotificationsScreen(LwScreen):
    """Outbox and delivery history."""

    PALETTE_GROUP = "Notifications"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("r", "retry", "Retry dead letter"),
        Binding("c", "cancel", "Cancel pending"),
        Binding("enter", "incident", "Open incident", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, object] = {}

    def compose_body(self) -> ComposeResult:
        yield Static("outbox — loading…", id="outbox-summary", classes="screen-title")
        yield DataTable(id="outbox", cursor_type="row", zebra_stripes=True)
        yield Label("Delivery history", classes="section-title")
        yield DataTable(id="history", cursor_type="row", show_cursor=False)

    def on_mount(self) -> None:
        self._history_for: int | None = None
        self._loaded: OutboxLoaded | None = None
        self._history: HistoryLoaded | None = None

    def on_resize(self) -> None:
        width = self.size.width
        if fit_columns(self.query_one("#outbox", DataTable), OUTBOX_COLUMNS, "error", width):
            self._paint()
        if fit_columns(self.query_one("#history", DataTable), HISTORY_COLUMNS, "detail", width) and self._history:
            self.on_history_loaded(self._history)

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="load")
    def _load(self) -> None:
        from leakwatch.notify.outbox import outbox_status
        from leakwatch.tui.incident_model import load_outbox

        app = self.app
        self.post_loaded("the outbox", lambda cur: OutboxLoaded(load_outbox(cur), outbox_status(cur, app.now())))

    def on_outbox_loaded(self, message: OutboxLoaded) -> None:
        self._loaded = message
        self.rows = {r.notification_id: r for r in message.rows}
        self._paint()
        totals = message.status["totals"]
        summary = Text.assemble(
            ("Outbox  ", "bold"), f"{totals['pending']} pending · {totals['sending']} sending · "
            f"{totals['delivered']} delivered · ", (f"{totals['dead']} dead", f"bold {semantic(self.app.theme_variables)['bad']}" if totals["dead"] else ""))
        if message.status.get("next_attempt_at"):
            summary.append(f" · next attempt {self.fmt_time(message.status['next_attempt_at'], short=True)}")
        summary.append("  (delivery runs in 'leakwatch notify dispatch' or 'leakwatch watch')", style="dim")
        self.query_one("#outbox-summary", Static).update(summary)
        self._history_for = None
        self._load_history()

    def _paint(self) -> None:
        message = self._loaded
        table = self.query_one("#outbox", DataTable)
        if message is None or not getattr(table, "_lw_columns", None):
            return
        keep = self.selected_id()
        table.clear()
        ew = column_width(table, "error")
        for r in message.rows:
            when = r.delivered_at or r.updated_at
            table.add_row(*cells(table, {
                "id": Text(str(r.notification_id), justify="right"),
                "incident": f"#{r.incident_id}" if r.incident_id is not None else "—", "target": clip(r.target, 10),
                "event": clip(r.event, 18), "status": Text(r.status, style=state_style(r.status, self.app.theme_variables)),
                "attempts": Text(str(r.attempts), justify="right"), "updated": self.fmt_time(when, short=True),
                "error": clip(r.last_error or "", ew)}), key=str(r.notification_id))
        if keep in self.rows:
            table.move_cursor(row=table.get_row_index(str(keep)))

    def selected_id(self) -> int | None:
        """The notification under the cursor."""
        table = self.query_one("#outbox", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - an empty or changing table
            return None
        return int(key.value) if key is not None and key.value is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "outbox":
            self._load_history()

    def _load_history(self) -> None:
        nid = self.selected_id()
        if nid is None or nid == self._history_for:
            return
        self._history_for = nid
        self._fetch_history(nid)

    @work(thread=True, exclusive=True, group="history")
    def _fetch_history(self, nid: int) -> None:
        from leakwatch.tui.incident_model import delivery_history

        self.post_loaded(f"the history of notification #{nid}", lambda cur: HistoryLoaded(nid, delivery_history(cur, nid)))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        from leakwatch.tui.incident_model import audit_detail_text

        if message.notification_id != self._history_for:
            return
        self._history = message
        hist = self.query_one("#history", DataTable)
        if not getattr(hist, "_lw_columns", None):
            return
        hist.clear()
        dw = column_width(hist, "detail")
        for r in message.rows:
            detail = audit_detail_text(r["detail"], dw) + (f" — {r['reason']}" if r["reason"] else "")
            hist.add_row(*cells(hist, {"seq": str(r["seq"]), "at": self.fmt_time(r["at"], short=True),
                                       "actor": clip(r["actor"], 10), "action": r["action"],
                                       "detail": clip(detail, dw)}), key=str(r["seq"]))

    # -- actions -------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_incident(self) -> None:
        nid = self.selected_id()
        r = self.rows.get(nid) if nid is not None else None
        if r is not None and r.incident_id is not None:
            self.app.open_incident(r.incident_id)

    def action_retry(self) -> None:
        nid = self.selected_id()
        if nid is None:
            return
        r = self.rows[nid]
        if r.status != "dead":
            self.notify(f"notification #{nid} is {r.status}: only dead letters can be retried", severity="warning")
            return
        app = self.app

        def retry(store) -> str:
            from leakwatch.notify.outbox import retry_dead

            retry_dead(store, [nid], now=app.now(), actor=app.actor)
            return f"notification #{nid} is pending again (delivered by the next 'notify dispatch' or 'watch')"

        app.write(retry, f"retry notification #{nid}")

    def action_cancel(self) -> None:
        nid = self.selected_id()
        if nid is None:
            return
        r = self.rows[nid]
        if r.status != "pending":
            self.notify(f"notification #{nid} is {r.status}: only pending ones can be cancelled", severity="warning")
            return
        app = self.app

        def submit(values) -> str:
            from leakwatch.notify.outbox import cancel_pending

            app.change(lambda store: cancel_pending(store, [nid], now=app.now(), actor=app.actor,
                                                    reason=str(values["reason"]) or None))
            return f"notification #{nid} cancelled (kept as a dead letter: 'r' retries it)"

        self.app.push_screen(FormModal(
            f"Cancel notification #{nid} ({r.event} → {r.target})",
            [Field("reason", "Why (audit trail)", "", "sent by phone instead")], submit, submit_label="Cancel it"),
            lambda res: self.notify(res) if res else None)
