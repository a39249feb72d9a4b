"""The incident console: a Textual app over one findings database.

:func:`make_app` is the one way to build it: ``leakwatch tui`` (and a bare ``leakwatch``) and
every test use it, so what is tested is what responders run.

Threads and the database: the app opens the database once (read-write: responders change
incidents) and keeps it open while it runs. Reads run in worker threads, each on its own
cursor (:meth:`LeakwatchApp.cursor`); changes go through the core functions (``book.*``,
``outbox.*``) in worker threads too, one at a time (:meth:`LeakwatchApp.write`), with the
responder from ``audit.current_actor()`` and "now" from the injected clock. DuckDB lets one
process write a file: while the console runs, ``leakwatch scan``/``watch`` on the same file
are refused, and the console does not start while one of them is writing; ``watch --tui``
(:mod:`leakwatch.tui.live`) runs the watch inside the console's process instead.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

from leakwatch.errors import LeakwatchError, UsageError
from leakwatch.tui.clock import Clock, as_clock
from leakwatch.tui.messages import DataChanged

#: Themes the console offers: built-in Textual themes whose success / warning / error colours
#: keep the countdown levels apart in both (checked on the snapshots).
DARK_THEME = "textual-dark"
LIGHT_THEME = "textual-light"


class LeakwatchApp(App[None]):
    """The console. Build it with :func:`make_app`."""

    CSS_PATH = "leakwatch.tcss"
    TITLE = "leakwatch"
    SUB_TITLE = "incident console"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("I", "incidents", "Incidents", show=False),
        Binding("F", "findings", "Findings", show=False),
        Binding("M", "sfmap", "Salesforce map", show=False),
        Binding("N", "notifications", "Notifications", show=False),
        Binding("T", "toggle_theme", "Light/dark", show=False),
        Binding("q", "quit", "Quit", show=False),
    ]

    #: Active incident: ``(id, title)`` of the one opened or highlighted last, shown in the header.
    active_incident: reactive[tuple[int, str] | None] = reactive(None)
    #: The nearest open deadline over all incidents (a ``NextDeadline``), shown in the header.
    nearest: reactive[Any] = reactive(None)

    def __init__(self, store, *, config, clock: Clock, regimes, playbooks, size: tuple[int, int] | None = None,
                 theme: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.clock = clock
        self.regimes = regimes
        self.playbooks = playbooks
        self.test_size = size
        self.db_label = Path(str(store.path)).name
        #: The incidents list as last loaded (the command palette offers "open incident N").
        self.incident_rows: list = []
        self._write_lock = threading.Lock()
        self._theme_name = theme or DARK_THEME

    # -- plumbing ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.theme = self._theme_name

    def on_unmount(self) -> None:
        try:
            self.store.close()
        except LeakwatchError:
            pass

    def get_default_screen(self) -> Screen:
        from leakwatch.tui.screens.incidents import IncidentsScreen

        return IncidentsScreen()

    def run_test(self, *args, size: tuple[int, int] | None = None, **kwargs):
        """``App.run_test`` at the size given to :func:`make_app` unless one is given here."""
        return super().run_test(*args, size=size or self.test_size or (80, 24), **kwargs)

    def now(self) -> datetime:
        """The injected clock's time (aware UTC)."""
        return self.clock.now()

    def cursor(self):
        """A new DuckDB cursor on the console's connection, for one worker's reads; close it
        when done. Cursors of one connection may be used from different threads at once."""
        return self.store.con.cursor()

    @property
    def actor(self) -> str:
        """Who changes are recorded as: ``$LEAKWATCH_USER``, else the login name."""
        from leakwatch.incidents.audit import current_actor

        return current_actor()

    def write(self, fn: Callable[[Any], str], what: str, *, then: Callable[[str], None] | None = None) -> None:
        """Run the change ``fn(store) -> message`` in a worker thread (one change at a time),
        then tell every screen to reload. A refusal of the core is shown as an error
        notification; nothing was changed then."""
        self._write(fn, what, then)

    @work(thread=True, group="write")
    def _write(self, fn: Callable[[Any], str], what: str, then: Callable[[str], None] | None) -> None:
        try:
            with self._write_lock:
                message = fn(self.store)
        except LeakwatchError as e:
            self.call_from_thread(self.notify, str(e), title=f"cannot {what}", severity="error", timeout=10)
            return
        self.post_message(DataChanged(what))
        if message:
            self.call_from_thread(self.notify, message, title=what)
        if then is not None:
            self.call_from_thread(then, message)

    def change(self, fn: Callable[[Any], Any]) -> Any:
        """Run a change ``fn(store)`` in *this* thread (a worker's: e.g. a form's submit),
        holding the write lock, then tell the screens to reload; returns what ``fn`` returns.
        Raises what the core raises (nothing was changed then)."""
        with self._write_lock:
            result = fn(self.store)
        self.post_message(DataChanged("change"))
        return result

    def on_data_changed(self, message: DataChanged) -> None:
        for screen in self.screen_stack:
            reload = getattr(screen, "reload", None)
            if reload is not None:
                reload()

    # -- navigation ---------------------------------------------------------------------------

    def open_incident(self, incident_id: int) -> None:
        """Show incident ``incident_id``."""
        from leakwatch.tui.screens.incident import IncidentScreen

        self.push_screen(IncidentScreen(incident_id))

    def open_playbook(self, incident_id: int) -> None:
        """Show the playbook of incident ``incident_id``."""
        from leakwatch.tui.screens.playbook import PlaybookScreen

        self.push_screen(PlaybookScreen(incident_id))

    def open_findings(self, filters: dict | None = None) -> None:
        """Show the findings (optionally filtered, e.g. ``{"incident": 4}``)."""
        try:
            from leakwatch.tui.screens.findings import FindingsScreen
        except ImportError as e:  # the findings screens are built separately
            self.notify(f"the findings screen is not available: {e}", severity="error")
            return
        self.push_screen(FindingsScreen(filters=filters))

    def action_incidents(self) -> None:
        """Back to the incidents list (the bottom screen)."""
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def action_findings(self) -> None:
        self.open_findings(None)

    def action_sfmap(self) -> None:
        try:
            from leakwatch.tui.screens.sfmap import SalesforceMapScreen
        except ImportError as e:
            self.notify(f"the Salesforce map is not available: {e}", severity="error")
            return
        self.push_screen(SalesforceMapScreen())

    def action_notifications(self) -> None:
        from leakwatch.tui.screens.notifications import NotificationsScreen

        self.push_screen(NotificationsScreen())

    def action_help(self) -> None:
        from leakwatch.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))

    def action_toggle_theme(self) -> None:
        """Switch between the light and the dark theme."""
        self.theme = LIGHT_THEME if self.current_theme.dark else DARK_THEME

    # -- command palette ------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action of the current screen (its key bindings), the console's own, and
        "open incident N" for each incident, then Textual's (theme, keys, screenshot, quit)."""
        seen: set[str] = set()
        for b in _bindings(screen):
            if b.description and b.action not in seen:
                seen.add(b.action)
                yield SystemCommand(f"{_screen_name(screen)}: {b.description}", f"key {b.key_display or b.key}",
                                    partial(screen.run_action, b.action))
        for b in _bindings(self):
            if b.description and b.action not in seen and b.action != "quit":
                seen.add(b.action)
                yield SystemCommand(b.description, f"key {b.key_display or b.key}", partial(self.run_action, b.action))
        for r in self.incident_rows:
            yield SystemCommand(f"Open incident #{r.incident_id}: {r.title}", f"{r.severity} · {r.status}",
                                partial(self.open_incident, r.incident_id), discover=False)
            yield SystemCommand(f"Playbook of incident #{r.incident_id}", r.title,
                                partial(self.open_playbook, r.incident_id), discover=False)
        yield from super().get_system_commands(screen)


def _bindings(node) -> list[Binding]:
    out = []
    for b in getattr(node, "BINDINGS", []):
        if isinstance(b, Binding):
            out.append(b)
        elif isinstance(b, tuple) and len(b) >= 2:
            out.append(Binding(*b))
    return out


def _screen_name(screen: Screen) -> str:
    return getattr(screen, "PALETTE_GROUP", None) or type(screen).__name__.removesuffix("Screen")


#: DuckDB memory_limit of the console's connection.
CONSOLE_MEMORY_LIMIT = "160MB"


def make_app(db_path: str | Path, *, config=None, clock: Clock | Callable[[], datetime] | datetime | None = None,
             size: tuple[int, int] | None = None, theme: str | None = None) -> LeakwatchApp:
    """The console on the database at ``db_path``.

    ``config`` is a :class:`leakwatch.config.Config` (default: :func:`leakwatch.config.load_config`,
    which reads ``$LEAKWATCH_CONFIG`` or ``./leakwatch.toml``); ``clock`` a
    :class:`~leakwatch.tui.clock.Clock`, a ``() -> datetime`` callable or a datetime to freeze
    at (default: the real clock); ``size`` the terminal size ``run_test`` uses (tests; the
    terminal decides otherwise); ``theme`` a Textual theme name (default dark).

    Raises :class:`~leakwatch.errors.UsageError` when there is no such database and
    :class:`~leakwatch.errors.StoreError` when it cannot be opened (e.g. another process is
    writing it), before anything is drawn.
    """
    from leakwatch.config import load_config
    from leakwatch.incidents.playbooks import check_references, load_playbooks
    from leakwatch.incidents.regimes import load_regimes
    from leakwatch.store import Store

    db = Path(db_path)
    if not db.is_file():
        raise UsageError(f"{db}: no such database; run 'leakwatch scan --db {db} …' first, or point --db at one")
    config = config if config is not None else load_config(None)
    regimes = load_regimes()
    playbooks = load_playbooks()
    check_references(playbooks, regimes)
    # The console reads pages and aggregates, it never bulk-loads: a small DuckDB buffer keeps the
    # process under its 300 MB budget at a million findings (the 512 MB default let the
    # incident-list aggregates spike past 600 MB).
    store = Store.open(db, memory_limit=CONSOLE_MEMORY_LIMIT)
    return LeakwatchApp(store, config=config, clock=as_clock(clock), regimes=regimes, playbooks=playbooks,
                        size=size, theme=theme)
