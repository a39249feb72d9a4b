"""An incident's playbook: every step with its state, role, due time and live countdown; steps
with a notify action show the outbox state of their notification. Start, mark done (a dialog
asks for each evidence item the step lists), skip (with a reason) or reopen a step; each change
is one audit row."""
from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from leakwatch.tui.messages import PlaybookLoaded
from leakwatch.tui.screens.base import LwScreen
from leakwatch.tui.widgets.countdown import countdown_text
from leakwatch.tui.widgets.forms import Field, FormModal
from leakwatch.tui.widgets.styles import state_style
from leakwatch.tui.widgets.tables import (
    cells,
    clip,
    column_width,
    fit_columns,
    refresh_cell,
)

STEP_COLUMNS = (("title", "step", 0), ("role", "role", 16, 130), ("state", "state", 11), ("due", "due", 27, 110),
                ("left", "left", 20), ("outbox", "notification", 14))


def outbox_text(notifications, variables=None) -> Text:
    """``pending #7`` / ``delivered #7`` / ``dead #7`` for the latest notification of a step."""
    if not notifications:
        return Text("—", style="dim")
    n = notifications[-1]
    t = Text(f"{n['status']} #{n['notification_id']}", style=state_style(n["status"], variables))
    if len(notifications) > 1:
        t.append(f" +{len(notifications) - 1}", style="dim")
    return t


class PlaybookScreen(LwScreen):
    """The playbook steps of incident ``incident_id``."""

    PALETTE_GROUP = "Playbook"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("s", "start", "Start"),
        Binding("d", "done", "Done"),
        Binding("k", "skip", "Skip"),
        Binding("o", "reopen", "Reopen"),
        Binding("i", "incident", "Incident"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, incident_id: int) -> None:
        super().__init__()
        self.incident_id = int(incident_id)
        self.steps: dict[str, object] = {}

    def compose_body(self) -> ComposeResult:
        yield Static(f"playbook of incident #{self.incident_id} — loading…", id="playbook-title", classes="screen-title")
        yield DataTable(id="steps", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="step-detail", classes="panel"):
            yield Static("", id="step-text")

    def on_mount(self) -> None:
        self._loaded: PlaybookLoaded | None = None

    def on_resize(self) -> None:
        if fit_columns(self.query_one("#steps", DataTable), STEP_COLUMNS, "title", self.size.width):
            self._paint()

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="load")
    def _load(self) -> None:
        from leakwatch.tui.incident_model import load_playbook

        app = self.app

        def build(cur) -> PlaybookLoaded:
            rows = load_playbook(cur, self.incident_id, app.config, app.regimes, app.playbooks, app.now())
            title = cur.execute("SELECT title FROM incidents WHERE incident_id = ?", [self.incident_id]).fetchone()
            return PlaybookLoaded(rows, title[0] if title else "")

        self.post_loaded(f"the playbook of incident #{self.incident_id}", build)

    def _state_text(self, r) -> Text:
        t = Text(r.state.replace("_", " "), style=state_style(r.state, self.app.theme_variables) if r.state != "pending" else "")
        if r.applies is False and r.state in ("pending", "in_progress"):
            t = Text("waiting", style="dim italic")
        return t

    def on_playbook_loaded(self, message: PlaybookLoaded) -> None:
        self._loaded = message
        self.steps = {r.key: r for r in message.rows}
        self._paint()
        done = sum(1 for r in message.rows if r.state in ("done", "skipped"))
        titles = "; ".join(dict.fromkeys(f"{r.playbook_id}: {r.playbook_title}" for r in message.rows))
        self.query_one("#playbook-title", Static).update(Text.assemble(
            f"#{self.incident_id} {message.title} — ", (titles or "no playbook", "bold"),
            f" — {done}/{len(message.rows)} steps done or skipped"))
        self._show_detail()

    def _paint(self) -> None:
        message = self._loaded
        table = self.query_one("#steps", DataTable)
        if message is None or not getattr(table, "_lw_columns", None):
            return
        keep = self.selected_key()
        table.clear()
        now = self.app.now()
        theme = self.app.theme_variables
        tw = column_width(table, "title")
        for r in message.rows:
            table.add_row(*cells(table, {
                "title": clip(r.step.title, tw), "role": r.step.role, "state": self._state_text(r),
                "due": self.fmt_time(r.due, short=True) if r.due else "—",
                "left": countdown_text(r.due if r.open else None, now, theme=theme),
                "outbox": outbox_text(r.notifications, theme) if r.step.notify is not None else ""}), key=r.key)
        if keep in self.steps:
            table.move_cursor(row=table.get_row_index(keep))

    def tick(self) -> None:
        if not self.steps or not self.query_one("#steps", DataTable).row_count:
            return
        table = self.query_one("#steps", DataTable)
        now = self.app.now()
        theme = self.app.theme_variables
        for key, r in self.steps.items():
            refresh_cell(table, key, "left", countdown_text(r.due if r.open else None, now, theme=theme))

    def selected_key(self) -> str | None:
        """``playbook/step`` under the cursor."""
        table = self.query_one("#steps", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - an empty or changing table
            return None
        return key.value if key is not None else None

    def selected(self):
        """The :class:`~leakwatch.tui.incident_model.StepRow` under the cursor."""
        key = self.selected_key()
        return self.steps.get(key) if key else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        r = self.selected()
        box = self.query_one("#step-text", Static)
        if r is None:
            box.update("")
            return
        s = r.step
        t = Text.assemble((s.title, "bold"), f"  ({r.playbook_id}/{s.id}, {s.role})\n")
        if s.description:
            t.append(s.description.strip() + "\n")
        if s.when is not None:
            t.append(f"when: {s.when}", style="dim")
            t.append("  (condition not met yet)\n" if r.applies is False else "\n", style="dim")
        if s.evidence:
            t.append("evidence: ", style="bold")
            t.append(", ".join(f"{k} = {r.evidence[k]}" if k in r.evidence else f"{k} = ?" for k in s.evidence) + "\n")
        if r.by:
            t.append(f"last change by {r.by}" + (f": {r.reason}" if r.reason else "") + "\n", style="dim")
        if s.notify is not None:
            t.append(f"notifies: {s.notify.regime} ({s.notify.template})", style="bold")
            for n in r.notifications:
                t.append(f"\n  #{n['notification_id']} → {n['target']}: {n['status']}, {n['attempts']} attempt(s)"
                         + (f", {n['last_error']}" if n["last_error"] else ""))
            if not r.notifications:
                t.append("  (nothing queued yet)", style="dim")
        box.update(t)

    # -- actions -------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_incident(self) -> None:
        from leakwatch.tui.screens.incident import IncidentScreen

        below = self.app.screen_stack[-2] if len(self.app.screen_stack) > 1 else None
        if isinstance(below, IncidentScreen) and below.incident_id == self.incident_id:
            self.app.pop_screen()
        else:
            self.app.open_incident(self.incident_id)

    def _change(self, r, new: str, *, evidence=None, reason=None, store=None) -> str:
        """Change the step; from a form's worker (``app.change`` takes the write lock), or with
        ``store`` from inside ``app.write``, which holds the lock already: taking it a second
        time in the same thread deadlocked the console for good."""
        from leakwatch.tui.incident_model import change_step, notify_hook

        app = self.app

        def do(store):
            return change_step(store, self.incident_id, r.playbook_id, r.step.id, new, actor=app.actor,
                               config=app.config, regimes=app.regimes, playbooks=app.playbooks, now=app.now(),
                               evidence=evidence, reason=reason, notify=notify_hook(app.config, store, app.clock))

        old = do(store) if store is not None else app.change(do)
        return f"step {r.step.id}: {old} → {new}"

    def action_start(self) -> None:
        r = self.selected()
        if r is None:
            return
        self.app.write(lambda store: self._change(r, "in_progress", store=store), f"start step {r.step.id}")

    def action_done(self) -> None:
        r = self.selected()
        if r is None:
            return
        fields = [Field(f"ev{i}", item, r.evidence.get(item, ""), "ticket, reference, time…", required=True)
                  for i, item in enumerate(r.step.evidence)]

        def submit(values) -> str:
            evidence = {item: str(values[f"ev{i}"]) for i, item in enumerate(r.step.evidence)}
            return self._change(r, "done", evidence=evidence)

        intro = ("Evidence is kept in the audit trail, which cannot be edited: references, not personal data."
                 if fields else "This step asks for no evidence.")
        self.app.push_screen(FormModal(f"Mark step '{r.step.id}' done", fields, submit, intro=intro,
                                       submit_label="Done"), self._notify_result)

    def action_skip(self) -> None:
        r = self.selected()
        if r is None:
            return
        self.app.push_screen(FormModal(
            f"Skip step '{r.step.id}'", [Field("reason", "Why it is skipped (audit trail)", "", required=True)],
            lambda values: self._change(r, "skipped", reason=str(values["reason"])), submit_label="Skip"),
            self._notify_result)

    def action_reopen(self) -> None:
        r = self.selected()
        if r is None:
            return
        self.app.push_screen(FormModal(
            f"Reopen step '{r.step.id}'", [Field("reason", "Why it is reopened (audit trail)", "", required=True)],
            lambda values: self._change(r, "pending", reason=str(values["reason"])), submit_label="Reopen"),
            self._notify_result)

    def _notify_result(self, result: str | None) -> None:
        if result:
            self.notify(result)
