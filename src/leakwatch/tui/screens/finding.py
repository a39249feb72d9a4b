"""One finding: the masked record with the match highlighted, how it was detected and scored,
the Salesforce object and record id, where the record was sent, and its incident.

Everything comes from :func:`leakwatch.tui.data.finding_detail`, which never reads
``raw_value``; the log file is not opened either (see :mod:`leakwatch.tui.widgets.findings_detail`).
"""
from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from leakwatch.tui import data
from leakwatch.tui.screens.base import LwScreen
from leakwatch.tui.widgets import findings_detail as view


class FindingLoaded(Message):
    """The detail dict of a finding, or None when there is no such finding."""

    def __init__(self, detail: dict | None) -> None:
        super().__init__()
        self.detail = detail


#: Side by side from this many columns, else one panel above the other.
SIDE_BY_SIDE = 100


class FindingScreen(LwScreen):
    """Finding ``finding_id``."""

    PALETTE_GROUP = "Finding"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("g", "incident", "Go to incident"),
        Binding("o", "same_file", "Findings of this file"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]
    CSS = """
    FindingScreen #finding-body { height: 1fr; }
    FindingScreen .finding-row { height: auto; }
    FindingScreen .finding-row > .panel { width: 1fr; }
    FindingScreen .finding-row.-stacked { layout: vertical; }
    FindingScreen .finding-row.-stacked > .panel { width: 100%; }
    """

    def __init__(self, finding_id: int) -> None:
        super().__init__()
        self.finding_id = int(finding_id)
        #: The detail shown (None until loaded, or when there is no such finding).
        self.detail: dict | None = None
        self.loaded = False

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="finding-body"):
            yield Static(f"Finding #{self.finding_id} — loading…", id="finding-title", classes="screen-title")
            yield Static("", id="finding-record", classes="panel")
            with Horizontal(classes="finding-row"):
                yield Static("", id="finding-detection", classes="panel")
                yield Static("", id="finding-salesforce", classes="panel")
            with Horizontal(classes="finding-row"):
                yield Static("", id="finding-destination", classes="panel")
                yield Static("", id="finding-incident", classes="panel")

    def on_mount(self) -> None:
        titles = {"finding-record": "The record, masked", "finding-detection": "Detection",
                  "finding-salesforce": "Salesforce", "finding-destination": "Destination",
                  "finding-incident": "Incident"}
        for wid, title in titles.items():
            self.query_one(f"#{wid}", Static).border_title = title
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme) -> None:
        if self.loaded:
            self.on_finding_loaded(FindingLoaded(self.detail))

    def on_resize(self) -> None:
        for row in self.query(".finding-row"):
            row.set_class(self.size.width < SIDE_BY_SIDE, "-stacked")

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="finding")
    def _load(self) -> None:
        self.post_loaded(f"finding #{self.finding_id}", lambda cur: FindingLoaded(data.finding_detail(cur, self.finding_id)))

    def on_finding_loaded(self, message: FindingLoaded) -> None:
        self.detail = d = message.detail
        self.loaded = True
        title = self.query_one("#finding-title", Static)
        if d is None:
            title.update(f"Finding #{self.finding_id}: no such finding (deleted, or another database)")
            return
        theme = self.app.theme_variables
        title.update(view.title_text(d, theme))
        self.query_one("#finding-record", Static).update(view.record_view(d, lambda t: self.fmt_time(t), theme,
                                                                                  self.app.store.path))
        self.query_one("#finding-detection", Static).update(view.detection_view(d, theme))
        self.query_one("#finding-salesforce", Static).update(view.salesforce_view(d))
        self.query_one("#finding-destination", Static).update(view.destination_view(d, theme))
        self.query_one("#finding-incident", Static).update(view.incident_view(d))
        if d["incident_id"] is not None:
            self.app.active_incident = (d["incident_id"], d["incident_title"] or "")

    def on_screen_resume(self) -> None:
        d = self.detail
        if d is not None and d["incident_id"] is not None:
            self.app.active_incident = (d["incident_id"], d["incident_title"] or "")

    def action_incident(self) -> None:
        d = self.detail
        if d is None:
            return
        if d["incident_id"] is None:
            self.notify(f"finding #{self.finding_id} is in no incident", severity="warning")
            return
        self.app.open_incident(int(d["incident_id"]))

    def action_same_file(self) -> None:
        d = self.detail
        if d is None:
            return
        from leakwatch.tui.screens.findings import FindingsScreen

        self.app.push_screen(FindingsScreen({"file": d["source_path"]}, sort="file"))

    def action_back(self) -> None:
        self.app.pop_screen()
