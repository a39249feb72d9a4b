"""What every console screen shares: the header, the footer, reloading after a change, load
errors shown as notifications, and time formatting in UTC and the organisation's zone."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer

from leakwatch.errors import LeakwatchError
from leakwatch.tui.messages import LoadFailed
from leakwatch.tui.widgets.header import LeakwatchHeader


class LwScreen(Screen):
    """A screen with the console header and footer. Subclasses compose their body in
    :meth:`compose_body` and load in :meth:`reload` (a worker); ``reload`` is called on mount,
    after every change (``DataChanged``) and when the screen comes back on top after a change."""

    #: Prefix of this screen's entries in the command palette.
    PALETTE_GROUP: str = ""

    def compose(self) -> ComposeResult:
        yield LeakwatchHeader()
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(self.app.clock.tick_s, self.tick)

    def reload(self) -> None:
        """Load what the screen shows again (in a worker)."""

    def action_reload(self) -> None:
        self.reload()

    def post_loaded(self, what: str, build: Callable[[Any], Message]) -> None:
        """For a worker thread: ``build(cursor)`` on a DuckDB cursor of its own, and post the
        message it returns; an error of leakwatch's is posted as :class:`LoadFailed` naming
        ``what`` (shown as a notification) instead."""
        cur = self.app.cursor()
        try:
            message = build(cur)
        except LeakwatchError as e:
            self.post_message(LoadFailed(what, str(e)))
            return
        finally:
            cur.close()
        self.post_message(message)

    def tick(self) -> None:
        """Refresh countdowns from the clock (every ``clock.tick_s``)."""

    def on_load_failed(self, message: LoadFailed) -> None:
        self.notify(message.error, title=f"cannot load {message.what}", severity="error", timeout=10)

    # -- time formatting --------------------------------------------------------------------

    def zone(self):
        """The organisation's time zone (``[organisation] timezone``), else UTC. Not the
        machine's: screens and snapshots must read the same on every responder's terminal."""
        name = getattr(self.app.config.organisation, "timezone", "") or ""
        try:
            return ZoneInfo(name) if name else UTC
        except (KeyError, ValueError):
            return UTC

    def fmt_time(self, t: datetime | None, *, short: bool = False) -> str:
        """``2026-03-11 09:30 UTC (10:30 CET)``; ``short`` (at most 27 characters):
        ``03-11 09:30Z (10:30 CET)``, ``03-11 23:30Z (00:30+1d CET)`` across midnight."""
        if t is None:
            return "—"
        u = t.astimezone(UTC)
        zone = self.zone()
        text = u.strftime("%m-%d %H:%MZ" if short else "%Y-%m-%d %H:%M UTC")
        if zone is not UTC:
            local = t.astimezone(zone)
            if local.utcoffset() != timedelta(0) or not short:
                days = (local.date() - u.date()).days
                if short:
                    shown = local.strftime("%H:%M") + (f"{days:+d}d" if days else "")
                else:
                    shown = local.strftime("%H:%M" if not days else "%Y-%m-%d %H:%M")
                text += f" ({shown} {local.tzname()})"
        return text
