"""The console during a breach drill: ``leakwatch drill run SCENARIO --tui``.

:func:`make_drill_app` builds a :class:`DrillApp`: the ordinary console (every screen, every
responder action) on the drill's database, with the drill running in a thread beside it
(:func:`leakwatch.drills.run.run_drill`), a red/amber DRILL banner in every screen's header,
the incidents list refreshed as the drill opens incidents, and the score in a dialog at the end.

One clock. The console's clock *is* the drill's :class:`~leakwatch.drills.run.DrillClock`:
countdowns, "now" of a responder's change and the watch cycles all read scenario time, so a
72-hour GDPR clock visibly runs down at 60x, and a step marked done at T+20 min is stamped
T+20 min.

One database, two connections. The drill's watch owns the writes to ``drill.duckdb`` through
its own :class:`~leakwatch.store.Store`. The console opens a second ``Store`` on the same file
in the same process, with the same settings, once the watch has created it: DuckDB then shares
the one open database between both connections, each with its own transactions. A
responder's change and a watch cycle's that touch the same rows at the same moment (an
incident, the audit chain's head) conflict, and the one that commits second is rolled back
whole: the console shows the refusal (try again), the watch notes it in the drill's run.json
and groups again in its next cycle. What DuckDB does not allow is a connection with other
settings beside them, and the drill's scoring opens the file read-only after the watch closes
it. So the console lets go of the file whenever the drill may be about to finish: at every
cycle after which every line is in, nothing new was found and the scenario's minutes are over
(the drill ends only after such a cycle), and before it asks the drill to stop. While let go,
reads wait for it (:class:`DrillStore`); the console takes the file again when a later cycle
brings news, and for good once the score is written, so the responder can go on browsing.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, Markdown, Static

from leakwatch.errors import LeakwatchError, StoreError, UsageError
from leakwatch.tui.app import DARK_THEME, LeakwatchApp
from leakwatch.tui.messages import DataChanged

#: How long (real seconds) a read waits for the drill's database before it shows nothing.
WAIT_S = 30.0
#: How long closing the console waits for reads and a change in flight (real seconds).
CLOSE_WAIT_S = 5.0
#: Real seconds between two reloads of the screens while the drill brings news.
REFRESH_S = 0.5


# --- the database, shared with the drill --------------------------------------------------------


class _CountedCursor:
    """A DuckDB cursor that tells its :class:`DrillStore` when it is closed (everything else is
    the cursor's own)."""

    def __init__(self, raw, done: Callable[[], None]) -> None:
        self._raw = raw
        self._done: Callable[[], None] | None = done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def close(self) -> None:
        """Close the cursor (once)."""
        done, self._done = self._done, None
        try:
            self._raw.close()
        finally:
            if done is not None:
                done()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A reader that dropped its cursor without close() must not hold the drill up; the
        # DuckDB cursor itself is left to its own collection (it may still be referenced).
        done, self._done = self._done, None
        if done is not None:
            with contextlib.suppress(Exception):
                done()


class DrillStore:
    """The console's :class:`~leakwatch.store.Store` on the drill's database, opened, let go
    and opened again as the drill goes (see the module docstring). Stands in for the Store the
    console's screens and core functions are given: ``con``, ``transaction``, ``key`` … are
    the open Store's; while it is let go they raise :class:`StoreError` (a change is refused
    and shown), and :meth:`cursor` (reads) waits for it.

    States: ``waiting`` (the drill has not created the file yet), ``open``, ``released`` (let
    go while the drill may finish), ``closed`` (the console is closing). Thread-safe.
    """

    def __init__(self, path: str | Path, lock: threading.Lock | None = None, *, wait_s: float = WAIT_S) -> None:
        self._path = Path(path)
        #: Held by every change of the console (``LeakwatchApp._write_lock``): letting go of the
        #: file takes it, so no change is cut in half.
        self.lock = lock or threading.Lock()
        self.wait_s = wait_s
        self._store = None
        self._state = "waiting"
        self._readers = 0
        self._cond = threading.Condition()
        self._empty = None

    # -- what the console reads -------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The drill's database file."""
        return self._path

    @property
    def read_only(self) -> bool:
        """False: responders change incidents during a drill."""
        return False

    @property
    def state(self) -> str:
        """``waiting``, ``open``, ``released`` or ``closed``."""
        return self._state

    @property
    def con(self):
        """The open Store's connection; :class:`StoreError` while the console has let go of it."""
        store = self._store
        if store is None:
            raise StoreError(f"{self._path}: {self._why()}")
        return store.con

    def __getattr__(self, name: str) -> Any:
        from leakwatch.store import Store

        if name.startswith("_") or not hasattr(Store, name):
            raise AttributeError(name)
        store = self.__dict__.get("_store")
        if store is None:
            raise StoreError(f"{self._path}: {self._why()}")
        return getattr(store, name)

    def _why(self) -> str:
        return {"waiting": "the drill has not created its database yet",
                "released": "the drill is finishing and scoring; try again in a moment",
                "closed": "the console is closing"}.get(self._state, "not open")

    def cursor(self):
        """A cursor for one read (close it when done). Waits while the drill's database is not
        open to the console (up to :attr:`wait_s`); a read asked for while the console closes,
        or after that wait, gets a cursor on an empty database of the same schema, so a screen
        shows nothing rather than failing."""
        with self._cond:
            end = time.monotonic() + self.wait_s
            while self._state in ("waiting", "released"):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._state == "open":
                raw = self._store.con.cursor()
                self._readers += 1
                return _CountedCursor(raw, self._reader_done)
            return self._empty_cursor()

    def _reader_done(self) -> None:
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    def _empty_cursor(self):
        import duckdb

        from leakwatch.store.migrations import apply_migrations

        if self._empty is None:
            con = duckdb.connect(":memory:")
            apply_migrations(con, label="the console's empty placeholder")
            self._empty = con
        return self._empty.cursor()

    # -- what the drill's thread does ---------------------------------------------------------

    def open(self) -> bool:
        """Open (or take back) the database: after the drill's watch created it, or after the
        score was written. Returns whether it is open (not once :meth:`close` ran)."""
        from leakwatch.store import Store

        with self._cond:
            if self._state == "open":
                return True
            if self._state == "closed" or not self._path.is_file():
                return False
            # The watch opened it with Store.open's defaults; the same settings share its database.
            self._store = Store.open(self._path)
            self._state = "open"
            self._cond.notify_all()
            return True

    def release(self, timeout: float = WAIT_S) -> None:
        """Let go of the database: wait for a change in flight and for open reads (up to
        ``timeout`` seconds each), then close the console's connection. Reads asked for from
        now on wait for :meth:`open`."""
        if not self.lock.acquire(timeout=timeout):
            raise StoreError(f"{self._path}: a change in the console did not finish within {timeout:g} s")
        try:
            self._let_go("released", timeout)
        finally:
            self.lock.release()

    def close(self) -> None:
        """Close for good (the console quits): reads from now on get the empty placeholder.
        Idempotent."""
        got = self.lock.acquire(timeout=CLOSE_WAIT_S)
        try:
            self._let_go("closed", CLOSE_WAIT_S)
        finally:
            if got:
                self.lock.release()
            if self._empty is not None:
                with contextlib.suppress(Exception):
                    self._empty.close()
                self._empty = None

    def give_up(self) -> None:
        """The drill ended without a database to show: reads stop waiting for one."""
        with self._cond:
            if self._state in ("waiting", "released"):
                self._state = "closed"
                self._cond.notify_all()

    def _let_go(self, state: str, timeout: float) -> None:
        with self._cond:
            if self._state == "closed":
                return
            was_open = self._state == "open"
            self._state = state
            self._cond.notify_all()
            end = time.monotonic() + timeout
            while was_open and self._readers:
                left = end - time.monotonic()
                if left <= 0:
                    break  # a read stuck for that long fails on its closed cursor; the drill goes on
                self._cond.wait(left)
            store, self._store = self._store, None
        if store is not None:
            store.close()


# --- messages from the drill's thread -----------------------------------------------------------


class DrillNotice(Message):
    """Something the responder should see at once (an incident opened, a notification
    received): one line, masked facts only."""

    def __init__(self, text: str, title: str = "DRILL", kind: str = "") -> None:
        super().__init__()
        self.text = text
        self.title = title
        #: ``incident`` (opened), ``notification`` (received) or ``problem``.
        self.kind = kind


class DrillFinished(Message):
    """The drill is over: ``result`` is its :class:`~leakwatch.drills.run.DrillResult`, or
    ``error`` says why there is none."""

    def __init__(self, result: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.result = result
        self.error = error


# --- the score dialog ---------------------------------------------------------------------------


def score_summary(score: dict[str, Any]) -> str:
    """One line of the score's key numbers: ``PASSED · recall 1.0 · precision 1.0 · 4/4
    expected incidents opened · 4 notifications verified · 2 playbook steps missed``."""
    de, inc, no, pb = score["detection"], score["incidents"], score["notifications"], score["playbooks"]
    opened = sum(1 for x in inc["expected"] if x["opened"])
    recall = "recall n/a (nothing replayed)" if de["recall"] is None else f"recall {de['recall']}"
    precision = "precision n/a" if de["precision"] is None else f"precision {de['precision']}"
    parts = [("PASSED" if score["passed"] else "FAILED"), recall, precision,
             f"{opened}/{len(inc['expected'])} expected incidents opened",
             f"{no['verified']} notifications verified", f"{len(pb['missed'])} playbook steps missed"]
    if score["drill"].get("stopped_early"):
        parts.append("stopped early")
    return " · ".join(parts)


class DrillScoreScreen(ModalScreen[None]):
    """The drill's score (``score.md``, as written to the drill folder); escape goes back to
    the console, ``q`` quits."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back to the console"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, score: dict[str, Any], out_dir: Path) -> None:
        super().__init__(classes="lw-modal lw-wide")
        self.score = score
        self.out_dir = Path(out_dir)

    def compose(self) -> ComposeResult:
        from leakwatch.drills.score import render_markdown

        passed = self.score["passed"]
        with Vertical(id="dialog"):
            yield Label(f"DRILL score: {'PASSED' if passed else 'FAILED'} — {self.score['drill']['scenario']}",
                        id="dialog-title")
            yield Static(score_summary(self.score), id="drill-score-summary",
                         classes="-passed" if passed else "-failed")
            with VerticalScroll(id="dialog-body"):
                yield Markdown(render_markdown(self.score), id="drill-score-text")
            yield Static(f"Written to {self.out_dir / 'score.md'} and score.json · escape: back to the console "
                         "(S shows this again) · q: quit", id="dialog-footer")

    def action_close(self) -> None:
        self.dismiss(None)


# --- the app ------------------------------------------------------------------------------------


class DrillApp(LeakwatchApp):
    """The console with a drill running beside it. Build it with :func:`make_drill_app`;
    after :meth:`run` returns, :meth:`wait_drill` stops the drill if it still runs and
    returns its result."""

    TITLE = "leakwatch DRILL"
    # The console's own keys repeated, so that help (?) and the command palette, which read
    # BINDINGS, list them beside the drill's.
    BINDINGS: ClassVar[list[BindingType]] = [
        *LeakwatchApp.BINDINGS,
        # The terminal sends ctrl+c as a key while the console runs: it stops the drill (it is
        # still scored) and closes the console, like q.
        Binding("ctrl+c", "quit", "Stop the drill and quit", show=False, priority=True),
        Binding("P", "drill_pause", "Pause/resume the drill"),
        Binding("S", "drill_score", "Drill score"),
    ]

    def __init__(self, store: DrillStore, *, scenario, out_dir: Path, drill_clock, seed: int, scale: float,
                 interval: float, config, regimes, playbooks, size: tuple[int, int] | None = None,
                 theme: str | None = None) -> None:
        super().__init__(store, config=config, clock=drill_clock, regimes=regimes, playbooks=playbooks, size=size,
                         theme=theme)
        # Changes of the console and the database's hand-over take the same lock.
        self._write_lock = store.lock
        self.scenario = scenario
        self.out_dir = Path(out_dir)
        self.drill_clock = drill_clock
        self.seed, self.scale, self.interval = seed, scale, interval
        #: Set to stop the drill early (q, ctrl+c, closing the console); it is still scored.
        self.drill_stop = threading.Event()
        #: The drill's result once it is over (``None`` before, or when it failed).
        self.drill_result = None
        #: What stopped the drill with an error, if anything did.
        self.drill_error: BaseException | None = None
        #: What the banner shows: phase and the latest cycle's totals (replaced whole, by the
        #: drill's thread).
        self.drill_state: dict[str, Any] = {"phase": "generating"}
        self._drill_thread: threading.Thread | None = None
        self._dirty = False

    # -- lifecycle ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._drill_thread = threading.Thread(target=self._drill_main, name="leakwatch-drill", daemon=True)
        self._drill_thread.start()
        self.set_interval(REFRESH_S, self._refresh_from_drill)

    def on_unmount(self) -> None:
        # Let go of the database before the drill is asked to stop: it scores from the file
        # as soon as it stops. (LeakwatchApp.on_unmount closes the store again: a no-op.)
        try:
            self.store.close()
        except LeakwatchError:
            pass
        self.drill_stop.set()

    def cursor(self):
        """A cursor for one read on the drill's database; waits while the drill has it to
        itself (see :meth:`DrillStore.cursor`)."""
        return self.store.cursor()

    @property
    def drill_running(self) -> bool:
        """Whether the drill's thread is still at work."""
        return self._drill_thread is not None and self._drill_thread.is_alive()

    def wait_drill(self, timeout: float | None = None):
        """Stop the drill if it still runs (it is scored as stopped early), wait for it and
        return its :class:`~leakwatch.drills.run.DrillResult`; re-raises what stopped it."""
        self.store.close()
        self.drill_stop.set()
        if self._drill_thread is not None:
            self._drill_thread.join(timeout)
        if self.drill_error is not None:
            raise self.drill_error
        return self.drill_result

    # -- the drill's thread --------------------------------------------------------------------

    def _drill_main(self) -> None:
        from leakwatch.drills.run import run_drill

        try:
            result = run_drill(self.scenario, self.out_dir, seed=self.seed, scale=self.scale, interval=self.interval,
                               clock=self.drill_clock, on_event=self._on_drill_event, stop=self.drill_stop)
        except BaseException as e:  # noqa: BLE001 - shown in the console, raised again by wait_drill
            self.drill_error = e
            self.drill_state = {**self.drill_state, "phase": "failed"}
            self._take_back()
            self.post_message(DrillFinished(error=str(e) or type(e).__name__))
            return
        self.drill_result = result
        # The drill is over: scenario time stands still at its end, so the countdowns a
        # responder browses afterwards show where the clocks stood, not a clock racing on.
        self.drill_clock.pause()
        self.drill_state = {**self.drill_state, "phase": "finished", "passed": result.score["passed"]}
        self._take_back()
        self.post_message(DrillFinished(result))

    def _take_back(self) -> None:
        try:
            if not self.store.open():
                self.store.give_up()
        except LeakwatchError as e:
            self.store.give_up()
            self.post_message(DrillNotice(f"the console cannot open the drill's database again: {e}", "DRILL problem",
                                          "problem"))

    def _on_drill_event(self, e) -> None:
        """The drill's ``on_event`` (its thread, between two watch cycles). Never raises: a
        problem of the console must not stop the drill."""
        try:
            self._drill_event(e)
        except Exception as err:  # noqa: BLE001 - shown, and the drill goes on
            self.post_message(DrillNotice(f"the console missed a drill update: {err}", "DRILL problem", "problem"))

    def _drill_event(self, e) -> None:
        state = dict(self.drill_state)
        if e.kind == "start":
            from leakwatch.config import load_config

            # The drill wrote its leakwatch.toml (organisation "… (DRILL)", the receiver) before
            # this event: the console reads incidents with the same settings.
            self.config = load_config(self.out_dir / "leakwatch.toml", env={})
            state["phase"] = "running"
        elif e.kind == "cycle":
            d = e.data
            state.update(lines=d["lines"], total=d["total"], findings=d["findings"], incidents=d["incidents"],
                         sent=d["sent"])
            finishing = d["lines"] >= d["total"] and not d["news"] and e.minute >= self.scenario.minutes
            if finishing:
                self.store.release()
            elif self.store.state != "closed":
                self.store.open()
            if d["news"]:
                self._dirty = True
            rep = e.report
            for iid in getattr(rep, "opened", ()) or ():
                self.post_message(DrillNotice(f"incident #{iid} opened at T+{e.minute:.1f} min", "DRILL: new incident",
                                              "incident"))
        elif e.kind == "awareness":
            self._dirty = True
        elif e.kind == "notification":
            d = e.data
            about = f" for #{d['incident_id']}" if d.get("incident_id") else ""
            self.post_message(DrillNotice(f"{d.get('event') or 'a webhook'}{about} · verified · "
                                          f"T+{d.get('minute', e.minute):.1f} min", "DRILL: notification received",
                                          "notification"))
        elif e.kind == "draining":
            state["phase"] = "draining"
        elif e.kind == "end":
            state.update(phase="scored", passed=bool(e.data.get("score", {}).get("passed")))
        self.drill_state = state

    # -- the event loop's side -----------------------------------------------------------------

    def _refresh_from_drill(self) -> None:
        if self._dirty and self.store.state == "open":
            self._dirty = False
            self.post_message(DataChanged("drill"))

    def on_drill_notice(self, message: DrillNotice) -> None:
        from leakwatch.tui.screens.incidents import IncidentsScreen

        if message.kind == "incident" and isinstance(self.screen, IncidentsScreen):
            return  # the list in front of the responder shows it already
        self.notify(message.text, title=message.title, timeout=5 if message.kind != "problem" else 15,
                    severity="error" if message.kind == "problem" else "information")

    def on_drill_finished(self, message: DrillFinished) -> None:
        self.post_message(DataChanged("drill finished"))
        if message.result is None:
            self.notify(f"the drill stopped: {message.error}", title="DRILL failed", severity="error", timeout=30)
            return
        self.action_drill_score()

    def action_drill_score(self) -> None:
        """Show the score (once the drill is over)."""
        if self.drill_result is None:
            self.notify("the score is shown when the drill ends", title="DRILL")
            return
        if isinstance(self.screen, DrillScoreScreen):
            return
        self.push_screen(DrillScoreScreen(self.drill_result.score, self.drill_result.out_dir))

    def action_drill_pause(self) -> None:
        """Pause or resume scenario time (the replay and every countdown)."""
        if not self.drill_running:
            self.notify("the drill is over", title="DRILL")
            return
        c = self.drill_clock
        if c.paused:
            c.resume()
            self.notify(f"scenario time runs again at {c.rate:g}x", title="DRILL")
        else:
            c.pause()
            self.notify("scenario time stands still; P resumes", title="DRILL")

    def drill_banner(self) -> Text:
        """The banner line every screen's header shows: what this is, the scenario, scenario
        time, and the drill's progress."""
        v = self.theme_variables
        s = self.drill_state
        c = self.drill_clock
        t = Text()
        t.append(" DRILL ", style=f"bold #ffffff on {v.get('error', 'red')}")
        t.append(f" synthetic data · {self.scenario.id} · ")
        m = int(c.minutes())
        t.append(f"T+{m // 60:02d}:{m % 60:02d}", style="bold")
        t.append(f" of {self.scenario.minutes} min · ")
        phase = s.get("phase")
        if phase == "generating":
            t.append("generating the logs…")
        elif phase in ("finished", "scored"):
            t.append(f"over: {'PASSED' if s.get('passed') else 'FAILED'} (S: score)", style="bold")
        elif phase == "failed":
            t.append("stopped by an error", style="bold")
        else:
            t.append("PAUSED (P resumes)" if c.paused else f"{c.rate:g}x")
            if "total" in s:
                t.append(f" · {s['incidents']} incidents · {s['sent']} notified")
                if phase == "draining":
                    t.append(" · sending the last notifications")
                else:
                    t.append(f" · {100 * s['lines'] // max(1, s['total'])}% replayed")
        return t


def make_drill_app(scenario, out_dir: str | Path, *, seed: int = 1, speed: float = 60.0, scale: float = 1.0,
                   interval: float | None = None, start: datetime | None = None, size: tuple[int, int] | None = None,
                   theme: str | None = None) -> DrillApp:
    """The console on a drill of ``scenario`` (a :class:`~leakwatch.drills.scenarios.Scenario`)
    into ``out_dir`` (new or empty), which starts when the app runs. ``seed``, ``speed``,
    ``scale`` and ``interval`` are :func:`~leakwatch.drills.run.run_drill`'s; ``start`` the
    scenario's start (default: :func:`~leakwatch.drills.run.default_start`); ``size`` and
    ``theme`` as for :func:`leakwatch.tui.app.make_app`.

    Raises :class:`UsageError` for a folder that is not empty, before anything is drawn."""
    from leakwatch.config import Config
    from leakwatch.drills.run import INTERVAL_S, DrillClock, default_start
    from leakwatch.incidents.playbooks import check_references, load_playbooks
    from leakwatch.incidents.regimes import load_regimes

    out = Path(out_dir).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: already exists and is not empty; give a new --out folder")
    clock = DrillClock(start or default_start(scenario, speed), speed)
    regimes = load_regimes()
    playbooks = load_playbooks()
    check_references(playbooks, regimes)
    # The same path as the drill's watch opens (run_drill resolves its folder the same way).
    store = DrillStore(out / "drill.duckdb")
    return DrillApp(store, scenario=scenario, out_dir=out, drill_clock=clock, seed=seed, scale=scale,
                    interval=interval if interval is not None else INTERVAL_S, config=Config(), regimes=regimes,
                    playbooks=playbooks, size=size, theme=theme or DARK_THEME)
