"""Modal dialogs of the console: a form that submits through a core function, a read-only
Markdown view, and a confirmation.

:class:`FormModal` runs its ``submit`` in a worker thread. When the core refuses (any
:class:`~leakwatch.errors.LeakwatchError`, or ``ValueError`` from parsing), the message is shown
in the dialog, which stays open with what was typed: the core changed nothing. When it succeeds
the dialog closes with ``submit``'s return value (a sentence for the notification line).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    Input,
    Label,
    LoadingIndicator,
    Markdown,
    Static,
)

from leakwatch.errors import LeakwatchError, printable


@dataclass(frozen=True)
class Field:
    """One input of a :class:`FormModal`: ``kind`` is ``text`` or ``check`` (a checkbox)."""

    name: str
    label: str
    value: str = ""
    placeholder: str = ""
    kind: str = "text"
    required: bool = False


class FormModal(ModalScreen[str | None]):
    """A titled form; ``submit(values) -> str`` runs in a thread (it calls the core). ctrl+s or
    the button submits, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Submit", priority=True),
    ]

    def __init__(self, title: str, fields: Sequence[Field], submit: Callable[[Mapping[str, object]], str], *,
                 intro: str = "", submit_label: str = "Save") -> None:
        super().__init__(classes="lw-modal")
        self.form_title = title
        self.fields = list(fields)
        self.submit_fn = submit
        self.intro = intro
        self.submit_label = submit_label
        #: The last refusal shown (tests read it).
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.form_title, id="dialog-title")
            if self.intro:
                yield Static(self.intro, id="dialog-intro")
            with VerticalScroll(id="dialog-fields"):
                for f in self.fields:
                    if f.kind == "check":
                        yield Checkbox(f.label, value=f.value == "true", id=f"field-{f.name}")
                    else:
                        yield Label(f.label + (" *" if f.required else ""), classes="field-label")
                        yield Input(value=f.value, placeholder=f.placeholder, id=f"field-{f.name}")
            yield Static("", id="dialog-error")
            yield LoadingIndicator(id="dialog-busy")
            with Horizontal(id="dialog-buttons"):
                yield Button(self.submit_label, variant="primary", id="dialog-submit")
                yield Button("Cancel", id="dialog-cancel")

    def on_mount(self) -> None:
        self.query_one("#dialog-busy").display = False
        self.query_one("#dialog-error").display = False

    def values(self) -> dict[str, object]:
        """What is typed / ticked now, by field name."""
        out: dict[str, object] = {}
        for f in self.fields:
            w = self.query_one(f"#field-{f.name}")
            out[f.name] = bool(w.value) if isinstance(w, Checkbox) else str(w.value)
        return out

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#dialog-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#dialog-submit")
    @on(Input.Submitted)
    def _submit(self) -> None:
        self.action_submit()

    def action_submit(self) -> None:
        values = self.values()
        missing = [f.label for f in self.fields if f.required and not str(values.get(f.name, "")).strip()]
        if missing:
            self.show_error("needed: " + ", ".join(missing))
            return
        self.query_one("#dialog-busy").display = True
        self.query_one("#dialog-submit", Button).disabled = True
        self._run(values)

    @work(thread=True, exclusive=True, group="form")
    def _run(self, values: Mapping[str, object]) -> None:
        try:
            result = self.submit_fn(values)
        except (LeakwatchError, ValueError) as e:
            self.app.call_from_thread(self.show_error, str(e))
            return
        self.app.call_from_thread(self.dismiss, result)

    def show_error(self, text: str) -> None:
        """Show why the core refused; the form stays open with what was typed."""
        self.error = text
        err = self.query_one("#dialog-error", Static)
        err.update(Text(printable(text, lines=True)))  # it may quote what was typed: literal text
        err.display = True
        self.query_one("#dialog-busy").display = False
        self.query_one("#dialog-submit", Button).disabled = False


class MarkdownModal(ModalScreen[None]):
    """Read-only Markdown (a notice draft, a step's description) with a title; escape closes.
    ``markdown`` may be given later with :meth:`show` (while a worker renders it)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close"), Binding("q", "close", "Close", show=False)]

    def __init__(self, title: str, markdown: str | None = None, *, footer: str = "") -> None:
        super().__init__(classes="lw-modal lw-wide")
        self.md_title = title
        self.markdown = markdown
        self.footer_text = footer

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.md_title, id="dialog-title")
            yield LoadingIndicator(id="dialog-busy")
            with VerticalScroll(id="dialog-body"):
                yield Markdown(self.markdown or "", id="dialog-markdown")
            yield Static(self.footer_text, id="dialog-footer")

    def on_mount(self) -> None:
        self.query_one("#dialog-busy").display = self.markdown is None
        self.query_one("#dialog-footer").display = bool(self.footer_text)

    async def show(self, markdown: str, footer: str = "") -> None:
        """Replace the body (and the line under it)."""
        self.markdown = markdown
        self.query_one("#dialog-busy").display = False
        await self.query_one("#dialog-markdown", Markdown).update(markdown)
        foot = self.query_one("#dialog-footer", Static)
        foot.update(footer)
        foot.display = bool(footer)

    def action_close(self) -> None:
        self.dismiss(None)
