"""The console with the watch running inside it: ``leakwatch watch PATH... --tui``.

DuckDB lets one process write a database file, and a running ``leakwatch watch`` keeps its file
open for as long as it runs: a responder who then opens ``leakwatch tui`` on the same file is
refused. This mode puts both in one process, as a drill does (:mod:`leakwatch.tui.drill`): the
:class:`~leakwatch.watch.Watcher` runs its cycles in a thread beside the console, on its own
:class:`~leakwatch.store.Store`, and the console opens a second Store on the same file with the
same settings, so DuckDB shares the one open database between both connections, each with its
own transactions.

What the responder sees: a LIVE banner on every screen (files followed, time of the last cycle,
findings, incidents opened, notifications sent and failed), the screens reloaded when a cycle
brings news, and a notice for each incident opened, each cycle with failed notifications, each
input problem and each stage that failed. Everything else is the ordinary console: responders
acknowledge, set clocks and step through playbooks while the watch goes on.

A responder's change and a watch cycle's that touch the same rows at the same moment conflict,
and the one that commits second is rolled back whole: the console shows the refusal (try
again); the watch reports the failed stage and groups again in its next cycle (its offsets and
findings are committed apart, so nothing is lost).

Stopping: ``q`` or ctrl+c in the console, or SIGTERM/SIGINT/SIGHUP to the process, stops the
watch after the file it is reading (offsets are saved with each file's findings) and closes the
console; ctrl+c and SIGINT record the session as interrupted. Notifications are sent from the
watch's own dispatcher thread, so a target that never answers holds up only its notifications. A watch that stops on a database error says so in the banner and in a notice; the
console stays open for reading, and the command exits 3 once it is closed.
"""
from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message

from leakwatch.errors import LeakwatchError
from leakwatch.tui.app import DARK_THEME, LeakwatchApp
from leakwatch.tui.messages import DataChanged

#: Real seconds between two reloads of the screens while cycles bring news.
REFRESH_S = 0.5
#: Input problems shown as notices per cycle (the rest are counted in the banner).
PROBLEM_NOTICES = 3


class LiveNotice(Message):
    """Something the responder should see at once (one line, masked facts only)."""

    def __init__(self, text: str, title: str, kind: str = "") -> None:
        super().__init__()
        self.text = text
        self.title = title
        #: ``incident`` (opened), ``failed`` (notifications), ``problem`` (input) or ``error``.
        self.kind = kind


class LiveApp(LeakwatchApp):
    """The console with a :class:`~leakwatch.watch.Watcher` cycling beside it. Build it with
    :func:`make_live_app`; after :meth:`run` returns, :meth:`wait_watch` stops the watch and
    re-raises what stopped it, if anything did."""

    TITLE = "leakwatch LIVE"
    BINDINGS: ClassVar[list[BindingType]] = [
        *LeakwatchApp.BINDINGS,
        # The terminal sends ctrl+c as a key while the console runs: stop watching and close,
        # recorded as interrupted (exit 130), as Ctrl-C is for the watch without the console.
        Binding("ctrl+c", "interrupt", "Stop watching and quit", show=False, priority=True),
    ]

    def __init__(self, store, watcher, *, interval: float, stop: threading.Event | None = None, config, regimes,
                 playbooks, clock=None, size: tuple[int, int] | None = None, theme: str | None = None) -> None:
        from leakwatch.tui.clock import as_clock

        super().__init__(store, config=config, clock=as_clock(clock), regimes=regimes, playbooks=playbooks,
                         size=size, theme=theme)
        self.watcher = watcher
        self.interval = interval
        #: Set from outside (a signal handler's event): the console closes and the watch stops.
        self.signal_stop = stop or threading.Event()
        #: Set to stop the watch: the console closing. Its own event, so that a Ctrl-C after
        #: the console closed is not taken for a second one by the signal handler.
        self.watch_stop = threading.Event()
        #: The console was closed with ctrl+c (the session is recorded as interrupted).
        self.interrupted = False
        #: What stopped the watch with an error, if anything did.
        self.watch_error: BaseException | None = None
        #: What the banner shows (replaced whole, by the watch's thread).
        self.live_state: dict[str, Any] = {"phase": "starting", "cycles": 0, "problems": 0, "failing": {},
                                           "retrying": 0, "dead": 0}
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._closing = False
        # Notice bookkeeping (the watch's thread only): a stage's last error, targets failing,
        # notifications being retried.
        self._stage_errors: dict[str, str] = {}
        self._failing_targets: dict[str, str] = {}
        self._retrying: set[int] = set()
        self._dead = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        super().on_mount()
        self._thread = threading.Thread(target=self._watch_main, name="leakwatch-watch", daemon=True)
        self._thread.start()
        self.set_interval(REFRESH_S, self._tick)

    def on_unmount(self) -> None:
        self._closing = True
        self.watch_stop.set()
        super().on_unmount()

    def action_interrupt(self) -> None:
        """ctrl+c: stop watching and close, recorded as interrupted."""
        self.interrupted = True
        self.exit()

    @property
    def watching(self) -> bool:
        """Whether the watch's thread is still at work."""
        return self._thread is not None and self._thread.is_alive()

    def wait_thread(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the watch's thread to end (a KeyboardInterrupt
        meanwhile reaches the caller)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_watch(self, timeout: float | None = None) -> None:
        """Stop the watch (after the file it is reading), wait for its thread, and re-raise
        what stopped it, if anything did."""
        self.watch_stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.watch_error is not None:
            raise self.watch_error

    # -- the watch's thread --------------------------------------------------------------------

    def _watch_main(self) -> None:
        try:
            self.watcher.run(interval=self.interval, stop=self.watch_stop, on_cycle=self._on_cycle)
        except BaseException as e:  # noqa: BLE001 - shown in the console, raised again by wait_watch
            self.watch_error = e
            self.live_state = {**self.live_state, "phase": "failed", "error": str(e) or type(e).__name__}
            if not self._closing:
                self.post_message(LiveNotice(f"the watch stopped: {self.live_state['error']}; the console stays "
                                             "open for reading", "watch stopped", "error"))
            return
        self.live_state = {**self.live_state, "phase": "stopped"}

    def _on_cycle(self, rep) -> None:
        """The Watcher's ``on_cycle`` (its thread). Never raises: a problem of the console must
        not stop the watch."""
        try:
            self._cycle(rep)
        except Exception as err:  # noqa: BLE001 - shown, and the watch goes on
            self.post_message(LiveNotice(f"the console missed a cycle's report: {err}", "console problem", "error"))

    def _cycle(self, rep) -> None:
        w = self.watcher
        for iid in rep.opened:
            self.post_message(LiveNotice(f"incident #{iid} opened", "new incident", "incident"))
        self._deliveries(rep.deliveries)
        for p in rep.problems[:PROBLEM_NOTICES]:
            self.post_message(LiveNotice(str(p), "input problem", "problem"))
        if len(rep.problems) > PROBLEM_NOTICES:
            self.post_message(LiveNotice(f"and {len(rep.problems) - PROBLEM_NOTICES} more input problem(s) this cycle "
                                         "(recorded with the scan)", "input problems", "problem"))
        self._stage_notices(rep.errors)
        s = dict(self.live_state)
        s.update(phase="watching", cycles=s["cycles"] + 1, files=len(w.files), last=rep.at,
                 findings=w.totals["findings"], opened=w.totals["opened"], sent=w.totals["sent"],
                 problems=s["problems"] + len(rep.problems), failing=dict(self._stage_errors),
                 retrying=len(self._retrying), dead=self._dead)
        self.live_state = s
        if rep.news():
            self._dirty = True

    def _stage_notices(self, errors: list[str]) -> None:
        """One notice when a stage (grouping, dispatching …) starts failing or its error changes,
        one when it works again: not one per cycle while it keeps failing."""
        now: dict[str, str] = {}
        for e in errors:
            now.setdefault(e.split(":", 1)[0], e)
        for stage, text in now.items():
            if self._stage_errors.get(stage) != text:
                self.post_message(LiveNotice(text, "watch cycle", "error"))
        for stage in self._stage_errors.keys() - now.keys():
            self.post_message(LiveNotice(f"{stage}: works again", "watch cycle", "incident"))
        self._stage_errors = now

    def _deliveries(self, deliveries) -> None:
        """One notice when a target starts failing and one when it delivers again; one per
        dead letter. Retries in between are counted in the banner, not announced."""
        for d in deliveries:
            if d.status == "delivered":
                self._retrying.discard(d.notification_id)
                if self._failing_targets.pop(d.target, None) is not None:
                    self.post_message(LiveNotice(f"{d.target} delivers again", "notifications", "incident"))
            elif d.status == "dead":
                self._retrying.discard(d.notification_id)
                self._dead += 1
                self.post_message(LiveNotice(f"notification #{d.notification_id} ({d.event}) to {d.target} gave up "
                                             f"after its last attempt: dead letter (N: retry it)",
                                             "notification failed", "failed"))
            else:
                self._retrying.add(d.notification_id)
                if d.target not in self._failing_targets:
                    self._failing_targets[d.target] = d.error or ""
                    why = f": {d.error}" if d.error else ""
                    self.post_message(LiveNotice(f"notifications to {d.target} are failing; retrying with backoff{why}",
                                                 "notification failed", "failed"))

    # -- the event loop's side -----------------------------------------------------------------

    def _tick(self) -> None:
        if self.signal_stop.is_set() and not self._closing:
            # A signal asked the process to stop: the watch stops after its file; close too.
            self.exit()
            return
        if self._dirty:
            self._dirty = False
            self.post_message(DataChanged("watch"))

    def on_live_notice(self, message: LiveNotice) -> None:
        from leakwatch.tui.screens.incidents import IncidentsScreen

        if message.kind == "incident" and isinstance(self.screen, IncidentsScreen):
            return  # the list in front of the responder shows it already
        bad = message.kind in ("failed", "error", "problem")
        self.notify(message.text, title=message.title, timeout=15 if bad else 5,
                    severity="error" if message.kind == "error" else "warning" if bad else "information")

    def live_banner(self) -> Text:
        """The line every screen's header shows while the watch runs in this process."""
        v = self.theme_variables
        s = self.live_state
        t = Text()
        phase = s.get("phase")
        if phase == "failed":
            t.append(" WATCH STOPPED ", style=f"bold #ffffff on {v.get('error', 'red')}")
            t.append(f" {s.get('error', '')}")
            return t
        t.append(" LIVE ", style=f"bold #ffffff on {v.get('success', 'green')}")
        paths = ", ".join(self.watcher.paths)
        if phase == "starting":
            t.append(f" following {paths} · first cycle…")
            return t
        if phase == "stopped":
            t.append(f" {paths} · the watch has stopped; offsets saved")
            return t
        last: datetime | None = s.get("last")
        t.append(f" {s.get('files', 0)} file(s) in {paths} · every {self.interval:g} s")
        if last is not None:
            t.append(f" · last cycle {last.strftime('%H:%M:%S')}Z")
        t.append(f" · {s.get('findings', 0)} new findings · {s.get('opened', 0)} incidents opened · "
                 f"{s.get('sent', 0)} notified")
        if s.get("retrying"):
            t.append(f" · {s['retrying']} retrying", style="bold")
        if s.get("dead"):
            t.append(f" · {s['dead']} dead", style="bold")
        if s.get("problems"):
            t.append(f" · {s['problems']} input problem(s)")
        if s.get("failing"):
            t.append(f" · FAILING: {', '.join(sorted(s['failing']))}", style=f"bold {v.get('error', 'red')}")
        return t


def make_live_app(watcher, *, interval: float, stop: threading.Event | None = None, config=None, clock=None,
                  size: tuple[int, int] | None = None, theme: str | None = None) -> LiveApp:
    """The console beside ``watcher`` (a :class:`~leakwatch.watch.Watcher` already opened: its
    database exists and is this process's). The console's own connection is a second
    :class:`~leakwatch.store.Store` on the same file with the watch's settings (DuckDB shares
    an open database only between connections with the same settings). ``stop`` is the event
    that stops the watch (a signal handler's); ``clock``, ``size`` and ``theme`` as for
    :func:`leakwatch.tui.app.make_app`.

    Raises :class:`~leakwatch.errors.StoreError` when the second connection cannot be opened."""
    from leakwatch.incidents.playbooks import check_references, load_playbooks
    from leakwatch.incidents.regimes import load_regimes
    from leakwatch.store import Store

    if watcher.store is None:
        raise LeakwatchError("the watch must be opened before the console")
    regimes = load_regimes()
    playbooks = load_playbooks()
    check_references(playbooks, regimes)
    store = Store.open(Path(watcher.db_path))
    return LiveApp(store, watcher, interval=interval, stop=stop, config=config if config is not None else watcher.config,
                   regimes=regimes, playbooks=playbooks, clock=clock, size=size, theme=theme or DARK_THEME)
