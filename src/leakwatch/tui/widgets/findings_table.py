"""The findings table: one page of findings, exactly as many rows as fit, never the whole list.

The table itself holds only the page on screen (tens of rows, whatever the database holds);
moving past its last or first row, or paging, asks the screen for the next or previous page
(:class:`FindingsTable.PageRequest`), which the screen reads from DuckDB by keyset
(:mod:`leakwatch.tui.data`). Scrolling a million findings is therefore a sequence of small
queries, each as fast as the first page.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any, ClassVar, Final

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

from leakwatch.errors import printable
from leakwatch.tui.data import ROW_FIELDS
from leakwatch.tui.widgets.styles import semantic, severity_style
from leakwatch.tui.widgets.tables import clip, plain

#: (key, label, width[, shown from this many columns]); the field path takes what is left.
#: Masked previews are short by construction (an e-mail's is ~20 characters, a key's
#: ``sk-ant-api03-…[108]`` 19). 120 columns show every column but the Salesforce object; 80
#: columns keep severity, entity, the masked value, where it was found and its incident.
COLUMNS: Final = (
    ("severity", "severity", 8),
    ("entity", "entity", 14),
    ("masked", "masked value", 22),
    ("field", "field", 0, 100),
    ("object", "SF object", 9, 130),
    ("dest", "destination", 14, 110),
    ("where", "file:line", 20),
    ("incident", "inc", 4),
)
FLEX_COLUMN = "field"

_IX = {name: i for i, name in enumerate(ROW_FIELDS)}


def where_text(source_path: str, line: int, width: int) -> str:
    """``app-openai.jsonl:12``: the file's name (not its folder) and line, clipped from the left
    of the name so the line number always shows."""
    name = PurePath(source_path).name
    tail = f":{line}"
    room = width - len(tail)
    if len(name) > room:
        name = "…" + name[-(room - 1):] if room > 1 else ""
    return name + tail


def dest_text(vendor: str | None, region: str | None) -> str:
    """``OpenAI us``; ``—`` when the record went to no AI endpoint."""
    if not vendor:
        return "—"
    return f"{vendor} {region}" if region else vendor


def row_cells(row: Sequence[Any], columns: Sequence[tuple[str, str, int]], theme: Mapping[str, str] | None) -> list:
    """The cells of one :data:`leakwatch.tui.data.ROW_FIELDS` tuple for the shown ``columns``."""
    sem = semantic(theme)
    out: list[Any] = []
    for key, _label, width in columns:
        if key == "severity":
            sev = row[_IX["severity"]]
            out.append(Text(sev, style=severity_style(sev, theme)))
        elif key == "entity":
            out.append(plain(clip(row[_IX["entity"]], width)))
        elif key == "masked":
            out.append(Text(clip(row[_IX["masked"]] or "", width), style="bold"))
        elif key == "field":
            out.append(plain(clip(row[_IX["field_path"]] or "—", width)))
        elif key == "object":
            out.append(plain(clip(row[_IX["sf_object"]] or "—", width)))
        elif key == "dest":
            text = clip(dest_text(row[_IX["dest_vendor"]], row[_IX["dest_region"]]), width)
            out.append(Text(text, style=sem["muted"] if text == "—" else ""))
        elif key == "where":
            out.append(plain(where_text(printable(row[_IX["source_path"]]), row[_IX["line"]], width)))
        elif key == "incident":
            iid = row[_IX["incident_id"]]
            out.append(Text(f"#{iid}" if iid is not None else "—", justify="right",
                            style="" if iid is not None else sem["muted"]))
        else:  # pragma: no cover - a column added to COLUMNS without a cell
            out.append("")
    return out


class FindingsTable(DataTable):
    """A page of findings. The row key is the ``finding_id``. Paging keys and moving past
    either end post :class:`PageRequest`; the screen answers by replacing the rows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("pagedown", "page('next')", "Next page", show=False),
        Binding("pageup", "page('prev')", "Previous page", show=False),
        Binding("ctrl+home", "page('first')", "First page", show=False),
        Binding("ctrl+end", "page('last')", "Last page", show=False),
    ]

    class PageRequest(Message):
        """Show another page: ``where`` is next, prev, first or last; ``cursor`` where the
        cursor goes on the new page: first, last or keep (the same row index)."""

        def __init__(self, where: str, cursor: str = "keep") -> None:
            super().__init__()
            self.where = where
            self.cursor = cursor

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)

    @property
    def visible_rows(self) -> int:
        """How many rows fit below the header (0 before the first layout)."""
        return max(0, self.scrollable_content_region.height - (self.header_height if self.show_header else 0))

    def action_page(self, where: str) -> None:
        """Ask for another page (see :class:`PageRequest`)."""
        self.post_message(self.PageRequest(where, "first" if where in ("next", "first") else
                                           ("last" if where == "last" else "keep")))

    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.post_message(self.PageRequest("next", "first"))
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.row_count and self.cursor_row <= 0:
            self.post_message(self.PageRequest("prev", "last"))
            return
        super().action_cursor_up()

    def show_rows(self, rows: Sequence[Sequence[Any]], theme: Mapping[str, str] | None, cursor_row: int = 0) -> None:
        """Replace the rows with ``rows`` (tuples of ``ROW_FIELDS``) and put the cursor on
        ``cursor_row`` (clamped)."""
        columns = getattr(self, "_lw_columns", ())
        self.clear()
        for row in rows:
            self.add_row(*row_cells(row, columns, theme), key=str(row[0]))
        if rows:
            self.move_cursor(row=max(0, min(cursor_row, len(rows) - 1)), animate=False)

