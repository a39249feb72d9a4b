"""Table columns that fit the terminal: fixed widths for short columns, and one flexible column
(a title, a detail) that takes what is left, so that 120 columns show whole titles and 80
columns still show every column (the flexible one shorter) without scrolling sideways."""
from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from leakwatch.errors import printable

#: DataTable pads each cell with one space on either side.
CELL_PAD = 2
#: Room for the vertical scrollbar.
SCROLLBAR = 2
#: One cell left over: a table exactly as wide as its columns sometimes draws a zero-width
#: filler after the last column and sometimes not (depending on when it was first laid out),
#: which made snapshots flaky; with one spare cell the filler is always there.
SLACK = 1


def layout(specs: Sequence[tuple], flex: str | None, available: int,
           *, min_flex: int = 12) -> tuple[tuple[str, str, int], ...]:
    """``specs`` (key, label, width[, shown from this many cells]) → the columns shown at
    ``available`` cells, the ``flex`` column's width set to what the others leave (at least
    ``min_flex``). Optional columns (a fourth item) are left out below their width."""
    shown = [(k, lab, w) for k, lab, w, *rest in specs if not rest or available >= rest[0]]
    if flex is None:
        return tuple(shown)
    fixed = sum(w for k, _l, w in shown if k != flex) + CELL_PAD * len(shown) + SCROLLBAR + SLACK
    return tuple((k, lab, max(min_flex, available - fixed) if k == flex else w) for k, lab, w in shown)


def fit_columns(table: DataTable, specs: Sequence[tuple], flex: str | None, available: int) -> bool:
    """Give ``table`` the columns of :func:`layout`; returns True when they changed (the rows
    were cleared then and must be added again)."""
    cols = layout(specs, flex, available)
    if getattr(table, "_lw_columns", None) == cols:
        return False
    table.clear(columns=True)
    for key, label, width in cols:
        table.add_column(label, key=key, width=width)
    table._lw_columns = cols
    return True


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def has_column(table: DataTable, key: str) -> bool:
    """Whether :func:`fit_columns` showed column ``key``."""
    return any(k == key for k, _l, _w in getattr(table, "_lw_columns", ()))


def plain(value):
    """A text cell as literal text: a ``str`` cell of a DataTable is read as Rich markup, so a
    title, reason or file name holding ``[/x]`` crashed the console (MarkupError) and one holding
    ``[red]`` was restyled; control characters from the evidence are shown escaped (``\\x1b``).
    Other values (``Text`` already styled, numbers) are returned as they are."""
    return Text(printable(value)) if isinstance(value, str) else value


def cells(table: DataTable, values: dict) -> list:
    """The row cells of ``values`` (column key → cell) for the columns the table shows, text
    cells as literal text (see :func:`plain`)."""
    return [plain(values[k]) for k, _l, _w in getattr(table, "_lw_columns", ())]


def column_width(table: DataTable, key: str, default: int = 40) -> int:
    """The width given to column ``key`` by :func:`fit_columns`."""
    for k, _l, w in getattr(table, "_lw_columns", ()):
        if k == key:
            return w
    return default


def refresh_cell(table: DataTable, row_key: str, column_key: str, value) -> bool:
    """Set a cell only when its text or style changed (a countdown under a frozen clock stays
    as it is: no repaint, and snapshots do not depend on whether a refresh ran)."""
    try:
        old = table.get_cell(row_key, column_key)
    except Exception:  # noqa: BLE001 - the row went away in a reload
        return False
    value = plain(value)
    same = (getattr(old, "plain", old) == getattr(value, "plain", value)
            and str(getattr(old, "style", "")) == str(getattr(value, "style", "")))
    if same:
        return False
    table.update_cell(row_key, column_key, value)
    return True
