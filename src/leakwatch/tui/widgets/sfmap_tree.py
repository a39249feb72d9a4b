"""The Salesforce data-flow map as a tree: object → field → destination (vendor, region), each
node with its findings, records and data subjects (from :func:`leakwatch.tui.data.sf_map_rows`).

Each node's ``data`` is the findings filter that node stands for (a dict for
:meth:`leakwatch.tui.data.FindingFilter.from_mapping`), so the screen can open exactly those
findings.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from leakwatch.tui.widgets.styles import semantic

#: Width of the name part of a label at the top level; each level down is 4 cells narrower
#: (the tree's guides), so the counts line up in columns.
NAME_WIDTH: Final = 44
#: Expand every level when the whole tree has at most this many nodes; else objects only.
EXPAND_ALL_UP_TO: Final = 40


def dest_label(row: Mapping[str, Any]) -> str:
    """``OpenAI · us · US``; ``no AI endpoint`` for records that went nowhere outside."""
    if row["dest_vendor"] is None and row["dest_region"] is None and row["dest_jurisdiction"] is None:
        return "no AI endpoint"
    return " · ".join(x for x in (row["dest_vendor"] or "unknown vendor", row["dest_region"] or "region unknown",
                                  row["dest_jurisdiction"]) if x)


def node_filter(row: Mapping[str, Any]) -> dict[str, Any]:
    """The findings a node stands for, as filters for the findings screen."""
    out: dict[str, Any] = {"object": row["sf_object"]}
    if row["level"] >= 1:
        if row["mapped_field"]:
            out["field"] = row["data_item"]
        else:
            out["field"] = ""  # no field mapped: the entity names the data
            out["entity"] = row["data_item"]
    if row["level"] == 2:
        out["destination"] = row["dest_vendor"] or ""
        out["region"] = row["dest_region"] or ""
    return out


def node_label(row: Mapping[str, Any], theme: Mapping[str, str] | None = None) -> Text:
    """Name, then ``findings · records · subjects`` in aligned columns; residency violations
    marked."""
    sem = semantic(theme)
    level = row["level"]
    # Objects and fields carry an expand icon (2 cells) that leaves lack.
    width = NAME_WIDTH - 4 * level + (2 if level == 2 else 0)
    if level == 0:
        name = Text(row["sf_object"], style="bold")
    elif level == 1:
        name = Text(row["data_item"], style="" if row["mapped_field"] else "italic")
    else:
        name = Text(dest_label(row), style=sem["muted"] if row["dest_vendor"] is None else "")
    name.truncate(width, overflow="ellipsis", pad=True)
    label = Text.assemble(
        name, f"{row['findings']:>9,} findings {row['records']:>9,} records {row['data_subjects']:>8,} subjects")
    if row["residency_violation"]:
        label.append("  ")
        label.append(" residency ", style=sem["alarm"] if level == 2 else f"bold {sem['bad']}")
    return label


class SalesforceMapTree(Tree[dict]):
    """The map. :meth:`show` fills it from :func:`leakwatch.tui.data.sf_map_rows` rows."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("Salesforce objects", **kwargs)
        self.show_root = False
        self.auto_expand = False  # enter opens the node's findings; space expands

    def show(self, rows: Sequence[Mapping[str, Any]], theme: Mapping[str, str] | None = None) -> None:
        """Replace the tree with ``rows`` (tree order: object, its fields, their destinations)."""
        self.clear()
        expand_all = len(rows) <= EXPAND_ALL_UP_TO
        parents: dict[int, TreeNode[dict]] = {-1: self.root}
        for row in rows:
            level = row["level"]
            parent = parents[level - 1]
            label = node_label(row, theme)
            if level == 2:
                parent.add_leaf(label, data=node_filter(row))
            else:
                parents[level] = parent.add(label, data=node_filter(row), expand=(level == 0 or expand_all))
        self.root.expand()
