"""``?``: the keys of the screen below, the console's own keys, and how to read a countdown."""
from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Markdown

COUNTDOWNS = """\
## Countdowns

- **green**: more than 12 h left
- **amber**: 12 h or less (the first `deadline.approaching` notice goes out)
- **red**: 2 h or less (the second one)
- **white on red**: `OVERDUE +…`, counting up: nothing was sent in time
- **dim**: `met` (notice recorded) or `—` (no fixed time yet)

Times are UTC with the organisation's zone in brackets (`[organisation] timezone`). Every
change is recorded in the audit trail as `$LEAKWATCH_USER` (else your login name).
"""


def _keys_table(title: str, bindings) -> str:
    rows = []
    for b in bindings:
        if isinstance(b, tuple):
            b = Binding(*b)
        if not b.description:
            continue
        key = b.key_display or b.key
        rows.append(f"- `{key}` {b.description}")
    if not rows:
        return ""
    return f"## {title}\n\n" + "\n".join(rows) + "\n"


class HelpScreen(ModalScreen[None]):
    """Help for the screen ``below``; escape or ``?`` closes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close"), Binding("question_mark", "close", "Close", show=False),
                Binding("q", "close", "Close", show=False)]

    def __init__(self, below: Screen) -> None:
        super().__init__(classes="lw-modal lw-wide")
        self.below = below

    def text(self) -> str:
        """The help as Markdown."""
        name = getattr(self.below, "PALETTE_GROUP", "") or type(self.below).__name__
        parts = [
            f"# leakwatch console — {name}\n",
            "All actions are also in the command palette (`ctrl+p`), where you can type to find them.\n",
            _keys_table(f"{name} screen", getattr(self.below, "BINDINGS", [])),
            _keys_table("Everywhere", getattr(self.app, "BINDINGS", [])) + "- `ctrl+p` Command palette\n",
            COUNTDOWNS,
        ]
        return "\n".join(p for p in parts if p)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Help", id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Markdown(self.text(), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
