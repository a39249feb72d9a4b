"""Live countdowns to deadlines, coloured by how much time is left.

Levels (the same thresholds as the default ``deadline.approaching`` notices, 12 h and 2 h,
so the screen turns amber when the first reminder goes out and red with the second):

- ``ok``: more than 12 h left: green, ``1d 13h 50m``;
- ``soon``: 12 h or less, more than 2 h: amber, ``9h 20m 00s``;
- ``urgent``: 2 h or less: red, ``1h 50m 00s``;
- ``overdue``: past due and nothing sent: white on red, counting up, ``OVERDUE +2h 40m 05s``;
- ``met``: its notice was sent: dim, ``met``;
- ``none``: no fixed time, or its clock has not started: dim, ``—``.

Seconds are shown under a day, so a countdown visibly moves at 3 a.m. (and at 60× in a drill).
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

#: Less than this left: amber.
SOON = timedelta(hours=12)
#: Less than this left: red.
URGENT = timedelta(hours=2)
LEVELS = ("ok", "soon", "urgent", "overdue", "met", "none")


def level(due: datetime | None, now: datetime, *, met: bool = False) -> str:
    """The level of a deadline ``due`` at ``now`` (see the module docstring)."""
    if met:
        return "met"
    if due is None:
        return "none"
    left = due - now
    if left < timedelta(0):
        return "overdue"
    if left <= URGENT:
        return "urgent"
    if left <= SOON:
        return "soon"
    return "ok"


def span(delta: timedelta) -> str:
    """``1d 13h 50m`` (a day or more) / ``13h 50m 05s`` / ``4m 05s`` for ``abs(delta)``."""
    secs = abs(int(delta.total_seconds()))
    d, rem = divmod(secs, 86_400)
    h, rem = divmod(rem, 3_600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d {h:02d}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    return f"{m}m {s:02d}s"


def countdown_label(due: datetime | None, now: datetime, *, met: bool = False) -> str:
    """The words of a countdown: ``1h 50m 00s``, ``OVERDUE +2h 40m 05s``, ``met``, ``—``."""
    lv = level(due, now, met=met)
    if lv == "met":
        return "met"
    if lv == "none":
        return "—"
    if lv == "overdue":
        return f"OVERDUE +{span(now - due)}"
    return span(due - now)


def level_style(lv: str, theme=None) -> str:
    """A Rich style for ``lv`` from the app's theme variables (``app.theme_variables``: the
    ``text-success`` / ``text-warning`` / ``text-error`` colours Textual derives for readable
    text on the theme's background), so that tables read in light and dark themes alike."""
    v = theme if isinstance(theme, Mapping) else {}
    ok = v.get("text-success", "green")
    warn = v.get("text-warning", "yellow")
    err = v.get("text-error", "red")
    bg = v.get("error", "red")
    return {
        "ok": ok, "soon": f"bold {warn}", "urgent": f"bold {err}", "overdue": f"bold #ffffff on {bg}",
        "met": "dim", "none": "dim",
    }[lv]


def countdown_text(due: datetime | None, now: datetime, *, met: bool = False, theme=None) -> Text:
    """A coloured countdown for a table cell."""
    lv = level(due, now, met=met)
    return Text(countdown_label(due, now, met=met), style=level_style(lv, theme))


class Countdown(Static):
    """A live countdown to ``due``: refreshed every ``clock.tick_s`` from the app's injected
    clock; its CSS class (``-ok``, ``-soon``, ``-urgent``, ``-overdue``, ``-met``, ``-none``)
    and :attr:`level` follow the time left."""

    DEFAULT_CSS = """
    Countdown { width: auto; }
    Countdown.-ok { color: $text-success; }
    Countdown.-soon { color: $text-warning; text-style: bold; }
    Countdown.-urgent { color: $text-error; text-style: bold; }
    Countdown.-overdue { background: $error; color: white; text-style: bold; }
    Countdown.-met, Countdown.-none { color: $text-muted; }
    """

    due: reactive[datetime | None] = reactive(None)
    met: reactive[bool] = reactive(False)
    #: The current level (one of :data:`LEVELS`).
    level: reactive[str] = reactive("none")

    def __init__(self, due: datetime | None = None, *, met: bool = False, prefix: str = "", **kwargs) -> None:
        super().__init__("", **kwargs)
        self.prefix = prefix
        self.set_reactive(Countdown.due, due)
        self.set_reactive(Countdown.met, met)

    def on_mount(self) -> None:
        self.tick()
        self.set_interval(self.app.clock.tick_s, self.tick)

    def watch_due(self) -> None:
        self.tick()

    def watch_met(self) -> None:
        self.tick()

    def _now(self) -> datetime:
        return self.app.clock.now()

    def tick(self) -> None:
        """Recompute the label and level from the clock."""
        if not self.is_attached:
            return
        now = self._now()
        lv = level(self.due, now, met=self.met)
        for name in LEVELS:
            self.set_class(name == lv, f"-{name}")
        self.level = lv
        label = self.prefix + countdown_label(self.due, now, met=self.met)
        if label != getattr(self, "_shown", None):  # a frozen clock repaints nothing
            self._shown = label
            self.update(label)
