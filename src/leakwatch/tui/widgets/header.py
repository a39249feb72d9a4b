"""The header every screen shows: the database, the active incident and the nearest deadline
over all open incidents, counting down live.

It reads the app's reactives ``active_incident`` (id, title) and ``nearest`` (a
:class:`~leakwatch.tui.incident_model.NextDeadline`), which the app keeps current after every
load and change; it queries nothing itself.

During a drill (an app with a ``drill_banner()`` method: :class:`leakwatch.tui.drill.DrillApp`)
the header is two lines: a red/amber DRILL banner above the usual line, refreshed twice a
second, so no screen can be mistaken for a real incident. With the watch in the same process
(an app with a ``live_banner()`` method: :class:`leakwatch.tui.live.LiveApp`) the banner says
what is followed and what the last cycle found, on a calmer background.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from leakwatch.tui.widgets.countdown import Countdown
from leakwatch.tui.widgets.tables import plain

#: Real seconds between two refreshes of the drill banner (scenario time, progress).
BANNER_REFRESH_S = 0.5


def banner_kind(app) -> str | None:
    """``drill`` or ``live`` when the app has that banner, else None."""
    for kind in ("drill", "live"):
        if callable(getattr(app, f"{kind}_banner", None)):
            return kind
    return None


class DrillBanner(Label):
    """The banner line: the app's ``drill_banner()`` or ``live_banner()`` text (a Rich ``Text``)."""

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(BANNER_REFRESH_S, self.redraw)

    def redraw(self) -> None:
        """Draw the banner again from the app (and the clock label beside the database name)."""
        self.update(getattr(self.app, f"{banner_kind(self.app)}_banner")())
        header = self.parent
        if isinstance(header, LeakwatchHeader):
            header.show_db()


class LeakwatchHeader(Horizontal):
    """One line: ``leakwatch · FILE │ incident #N title │ next deadline: … ⏱ 1h 50m``."""

    DEFAULT_CSS = """
    LeakwatchHeader { height: 1; dock: top; background: $panel; color: $foreground; }
    LeakwatchHeader > Label { height: 1; padding: 0 1; }
    LeakwatchHeader #hdr-db { text-style: bold; color: $text-accent; }
    LeakwatchHeader #hdr-incident { width: 1fr; }
    LeakwatchHeader #hdr-next { color: $text-muted; }
    LeakwatchHeader Countdown { padding: 0 1; }
    LeakwatchHeader.-drill, LeakwatchHeader.-live {
        height: 2; layout: grid; grid-size: 4 2; grid-columns: auto 1fr auto auto;
    }
    LeakwatchHeader.-drill > Label, LeakwatchHeader.-live > Label { width: auto; }
    LeakwatchHeader.-drill > #hdr-incident, LeakwatchHeader.-live > #hdr-incident { width: 1fr; }
    LeakwatchHeader #hdr-drill {
        column-span: 4; width: 100%; padding: 0; background: $warning; color: #000000; text-style: bold;
    }
    LeakwatchHeader #hdr-live { column-span: 4; width: 100%; padding: 0; background: $boost; }
    """

    def compose(self) -> ComposeResult:
        kind = banner_kind(self.app)
        if kind is not None:
            self.add_class(f"-{kind}")
            yield DrillBanner(id=f"hdr-{kind}")
        yield Label(id="hdr-db")
        yield Label(id="hdr-incident")
        yield Label(id="hdr-next")
        yield Countdown(id="hdr-countdown")

    def on_mount(self) -> None:
        self.watch(self.app, "active_incident", self._show_incident)
        self.watch(self.app, "nearest", self._show_nearest)
        self.show_db()

    def show_db(self) -> None:
        """The database's name and the clock's label (``DRILL 60x``, ``frozen``)."""
        db = self.query_one("#hdr-db", Label)
        clock_label = self.app.clock.label
        db.update(f"leakwatch · {self.app.db_label}" + (f" · {clock_label}" if clock_label else ""))

    def _show_incident(self, value) -> None:
        label = self.query_one("#hdr-incident", Label)
        if value is None:
            label.update("no incident selected")
        else:
            iid, title = value
            label.update(plain(f"incident #{iid} {title}"))  # a responder's title: literal text

    def _show_nearest(self, nd) -> None:
        label = self.query_one("#hdr-next", Label)
        cd = self.query_one("#hdr-countdown", Countdown)
        if nd is None:
            label.update("no open deadline")
            cd.due = None
            cd.display = False
            return
        cd.display = True
        label.update(f"next: #{nd.incident_id} {nd.regime} {nd.label}")
        cd.due = nd.due
