"""The Salesforce map: which Salesforce objects and fields reached which AI endpoint, in which
region, with how many findings, records and data subjects — the data-flow map of
``leakwatch flows``, browsable. ``enter`` opens the findings behind a node."""
from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static, Tree

from leakwatch.tui import data
from leakwatch.tui.screens.base import LwScreen
from leakwatch.tui.widgets.sfmap_tree import SalesforceMapTree


class MapLoaded(Message):
    """The map's rows (:func:`leakwatch.tui.data.sf_map_rows`)."""

    def __init__(self, rows: list) -> None:
        super().__init__()
        self.rows = rows


class SalesforceMapScreen(LwScreen):
    """The data-flow map of Salesforce data."""

    PALETTE_GROUP = "Salesforce map"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Findings of node"),
        Binding("space", "toggle", "Expand/collapse"),
        Binding("e", "expand_all", "Expand all"),
        Binding("c", "collapse_all", "Collapse all"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]
    CSS = """
    SalesforceMapScreen #sfmap-tree { height: 1fr; padding: 0 1; }
    SalesforceMapScreen #sfmap-hint { height: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        #: The rows shown (None until loaded).
        self.rows: list | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("Salesforce data flows — loading…", id="sfmap-title", classes="screen-title")
        yield SalesforceMapTree(id="sfmap-tree")
        yield Static(Text.assemble(
            "Object → field (", ("italic", "italic"), ": no field mapped, the kind of data found) → where the records "
            "went. Records: distinct log records; subjects: distinct identifying values, an upper bound of the "
            "people concerned."), id="sfmap-hint")

    def on_mount(self) -> None:
        self.query_one(SalesforceMapTree).focus()
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme) -> None:
        if self.rows is not None:
            self.on_map_loaded(MapLoaded(self.rows))

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="sfmap")
    def _load(self) -> None:
        self.post_loaded("the Salesforce map", lambda cur: MapLoaded(data.sf_map_rows(cur)))

    def on_map_loaded(self, message: MapLoaded) -> None:
        self.rows = rows = message.rows
        tops = [r for r in rows if r["level"] == 0]
        title = Text("Salesforce data flows  ", style="bold")
        if not tops:
            title.append("no finding is tied to a Salesforce object yet")
        else:
            violations = sum(1 for r in rows if r["level"] == 2 and r["residency_violation"])
            title.append(f"{len(tops)} object{'s' if len(tops) != 1 else ''} · "
                         f"{sum(r['findings'] for r in tops):,} findings · ")
            title.append(f"{violations} flow{'s' if violations != 1 else ''} breaking residency",
                         style="bold" if violations else "")
        self.query_one("#sfmap-title", Static).update(title)
        self.query_one(SalesforceMapTree).show(rows, self.app.theme_variables)

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        event.stop()
        self._open(event.node)

    def action_open(self) -> None:
        tree = self.query_one(SalesforceMapTree)
        if tree.cursor_node is not None:
            self._open(tree.cursor_node)

    def _open(self, node) -> None:
        if node.data is None:
            return
        from leakwatch.tui.screens.findings import FindingsScreen

        self.app.push_screen(FindingsScreen(dict(node.data)))

    def action_toggle(self) -> None:
        tree = self.query_one(SalesforceMapTree)
        if tree.cursor_node is not None:
            tree.cursor_node.toggle()

    def action_expand_all(self) -> None:
        self.query_one(SalesforceMapTree).root.expand_all()

    def action_collapse_all(self) -> None:
        tree = self.query_one(SalesforceMapTree)
        for child in tree.root.children:
            child.collapse_all()

    def action_back(self) -> None:
        self.app.pop_screen()
