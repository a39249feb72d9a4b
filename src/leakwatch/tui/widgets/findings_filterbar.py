"""The findings filter bar: a search box and one dropdown per filter (entity, rule, severity,
Salesforce object, destination, file, incident).

The bar holds a :class:`~leakwatch.tui.data.FindingFilter` and posts :class:`FilterBar.Changed`
with the new one whenever the responder changes a value; typing in the search box is debounced
(:data:`SEARCH_DEBOUNCE_S`) so each keystroke does not start a scan. The dropdowns' choices come
from the database (``data.facet``) and arrive after the first page is shown; until then each
dropdown offers only "any" and whatever value the screen was opened with.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any, Final

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, Select

from leakwatch.errors import printable
from leakwatch.tui.data import SEVERITY_RANKS, FindingFilter
from leakwatch.tui.widgets.tables import clip

#: Seconds of no typing before a search runs: a 1M-row search is ~15 ms, but three keystrokes a
#: second would still queue three of them.
SEARCH_DEBOUNCE_S: Final = 0.3

#: (widget id, filter field, prompt shown when nothing is chosen): the second row of the bar.
DROPDOWNS: Final = (
    ("flt-entity", "entity", "any entity"),
    ("flt-rule", "rule_id", "any rule"),
    ("flt-object", "sf_object", "any SF object"),
    ("flt-dest", "dest_vendor", "any destination"),
    ("flt-file", "source_path", "any file"),
    ("flt-incident", "incident_id", "any incident"),
)
#: The value meaning "not set" for the nullable columns (``FindingFilter`` semantics).
NONE_LABELS: Final = {"sf_object": "(no Salesforce object)", "dest_vendor": "(no AI destination)"}
_NAMES_BY_RANK: Final = {v: k for k, v in SEVERITY_RANKS.items()}


def severity_options() -> list[tuple[str, int]]:
    """``≥ critical`` … ``≥ info`` with their ranks, most severe first."""
    return [(f"≥ {name}", rank) for rank, name in sorted(_NAMES_BY_RANK.items(), reverse=True)]


def choice_options(field: str, values: Iterable[tuple[Any, int]], current: Any = None) -> list[tuple[str, Any]]:
    """Dropdown options for ``field`` from (value, count) pairs: ``EMAIL_ADDRESS (1,204)``;
    files by name; the "not set" choice for nullable columns; ``current`` kept even when the
    database no longer has it (so the dropdown can show the value the screen was opened with)."""
    out: list[tuple[str, Any]] = []
    seen = set()
    for value, n in values:
        label = printable(PurePath(value).name if field == "source_path" else str(value))
        out.append((f"{clip(label, 40)} ({n:,})", value))
        seen.add(value)
    if field in NONE_LABELS:
        out.append((NONE_LABELS[field], ""))
        seen.add("")
    if current is not None and current not in seen:
        label = printable(PurePath(current).name if field == "source_path" else str(current))
        out.insert(0, (clip(label, 40), current))
    return out


def incident_options(choices: Iterable[tuple[int, str, int]], current: int | None = None) -> list[tuple[str, int]]:
    """``#7 Customer PII in AI prompts… (1,204)`` per incident; ``current`` kept."""
    out = [(f"#{i} {clip(printable(title), 36)} ({n:,})", i) for i, title, n in choices]
    if current is not None and current not in {v for _, v in out}:
        out.insert(0, (f"#{current}", current))
    return out


def _literal(options: Sequence[tuple[str, Any]]) -> list[tuple[Text, Any]]:
    """Dropdown labels as text: a Select reads a str label as markup, and file names and
    incident titles ('Card numbers from [/checkout]') crashed the findings screen."""
    return [(Text(label), value) for label, value in options]


class FilterBar(Vertical):
    """Search box, severity threshold and six dropdowns. ``value`` is the current filter."""

    DEFAULT_CSS = """
    FilterBar { height: auto; padding: 0 1; background: $boost; }
    FilterBar > Horizontal { height: auto; }
    FilterBar Input { width: 2fr; margin-right: 1; }
    FilterBar Select { width: 1fr; margin-right: 1; }
    /* One line per dropdown at any width: a long choice is cut with an ellipsis, never wrapped. */
    FilterBar SelectCurrent { height: 1; padding: 0 1; }
    FilterBar SelectCurrent Static#label { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    FilterBar #flt-severity { width: 20; }
    """

    class Changed(Message):
        """The responder changed the filter to ``filter``."""

        def __init__(self, bar: FilterBar, filter: FindingFilter) -> None:
            super().__init__()
            self.bar = bar
            self.filter = filter

        @property
        def control(self) -> FilterBar:
            return self.bar

    def __init__(self, value: FindingFilter | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value = value or FindingFilter()
        self._search_timer: Timer | None = None
        #: The options each dropdown shows now (widget id → (label, value) pairs).
        self._options: dict[str, list[tuple[str, Any]]] = {}

    def compose(self) -> ComposeResult:
        v = self.value
        with Horizontal(id="flt-row1"):
            yield Input(v.search or "", placeholder="/ search masked values and field paths", id="flt-search",
                        compact=True)
            yield Select(severity_options(), prompt="any severity", id="flt-severity", compact=True,
                         value=v.min_severity_rank if v.min_severity_rank is not None else Select.NULL)
        with Horizontal(id="flt-row2"):
            for wid, field, prompt in DROPDOWNS:
                current = getattr(v, field)
                if field == "incident_id":
                    options = incident_options((), current)
                else:
                    options = choice_options(field, (), current)
                self._options[wid] = options
                yield Select(_literal(options), prompt=prompt, id=wid, compact=True,
                             value=current if current is not None else Select.NULL)

    def options_of(self, widget_id: str) -> list[tuple[str, Any]]:
        """The (label, value) choices the dropdown ``widget_id`` offers now."""
        return list(self._options.get(widget_id.lstrip("#"), ()))

    # -- choices from the database -------------------------------------------------------------

    def set_choices(self, facets: Mapping[str, Sequence[tuple[Any, int]]],
                    incidents: Sequence[tuple[int, str, int]]) -> None:
        """Fill the dropdowns (``facets``: filter field → (value, count) pairs) keeping the
        current values; posts no :class:`Changed`."""
        with self.prevent(Select.Changed):
            for wid, field, _prompt in DROPDOWNS:
                current = getattr(self.value, field)
                sel = self.query_one(f"#{wid}", Select)
                if field == "incident_id":
                    options = incident_options(incidents, current)
                else:
                    options = choice_options(field, facets.get(field, ()), current)
                self._options[wid] = options
                sel.set_options(_literal(options))
                sel.value = current if current is not None else Select.NULL

    def set_filter(self, value: FindingFilter) -> None:
        """Show ``value`` in the widgets (dropdown values must be among their options, or are
        added); posts no :class:`Changed`."""
        self.value = value
        with self.prevent(Select.Changed, Input.Changed):
            self.query_one("#flt-search", Input).value = value.search or ""
            sev = self.query_one("#flt-severity", Select)
            sev.value = value.min_severity_rank if value.min_severity_rank is not None else Select.NULL
            for wid, field, _prompt in DROPDOWNS:
                current = getattr(value, field)
                sel = self.query_one(f"#{wid}", Select)
                options = self._options.get(wid, [])
                if current is not None and current not in {v for _l, v in options}:
                    label = f"#{current}" if field == "incident_id" else (
                        PurePath(current).name if field == "source_path" else str(current))
                    options = self._options[wid] = [(label, current), *options]
                    sel.set_options(options)
                sel.value = current if current is not None else Select.NULL

    # -- user changes ----------------------------------------------------------------------------

    def _field_of(self, select: Select) -> str | None:
        if select.id == "flt-severity":
            return "min_severity_rank"
        return next((f for wid, f, _p in DROPDOWNS if wid == select.id), None)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        field = self._field_of(event.select)
        if field is None:
            return
        value = None if event.value is Select.NULL else event.value
        if getattr(self.value, field) == value:
            return
        self.value = self.value.replace(**{field: value})
        self.post_message(self.Changed(self, self.value))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(SEARCH_DEBOUNCE_S, self._apply_search)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._search_timer is not None:
            self._search_timer.stop()
        self._apply_search()

    def _apply_search(self) -> None:
        text = self.query_one("#flt-search", Input).value.strip() or None
        if text == self.value.search:
            return
        self.value = self.value.replace(search=text)
        self.post_message(self.Changed(self, self.value))
