"""``leakwatch watch PATH --tui``: the incident console with the real watch running beside it in
one process, on one database file, driven through Textual's pilot.

Checked where it shows and where it lands: the LIVE banner, a PII line appended to a followed
file becoming an incident in the list while the watch runs, the signed webhook at a loopback
receiver (masked), a responder's acknowledgement written through the console's own connection
beside the watch's, offsets saved when q stops the watch; a watch that dies on a database error
is shown (banner, notice) while the console stays readable, and the error comes back to the
command; a signal's stop event closes the console by itself. The CLI refuses --tui with --once,
falls back to the headless watch without a terminal, and the "database in use" message of
every other command points at --tui.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import read_rows, wait_for, webhook_config

from leakwatch.config import load_config
from leakwatch.errors import StoreError
from leakwatch.notify.receiver import WebhookReceiver
from leakwatch.store import Store
from leakwatch.tui.live import LiveApp, make_live_app
from leakwatch.tui.messages import DataChanged
from leakwatch.watch import Watcher

SECRET = "whsec_" + base64.b64encode(b"leakwatch-live-console-secret-32").decode()
EMAIL = "priya.live.tester@example.com"
CARD = "4111 1111 1111 1111"
PII_LINE = f"2026-05-01T10:00:07Z INFO checkout customer={EMAIL} card={CARD} total=129.90\n"
RESPONDER = "dana-live-responder"


def run(coro):
    return asyncio.run(coro)




def banner(screen) -> str:
    return str(screen.query_one("#hdr-live").render())


def config_for(tmp_path, url: str):
    cfg = tmp_path / "leakwatch.toml"
    webhook_config(cfg, url, "LW_LIVE_SECRET")
    return load_config(cfg)


@pytest.fixture
def logs(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "app.log").write_text("2026-05-01T10:00:00Z INFO service started version=4.2.1\n")
    return d


def test_live_console_shows_a_new_incident_while_the_watch_runs_and_the_responder_works_it(tmp_path, logs,
                                                                                            monkeypatch):
    monkeypatch.setenv("LEAKWATCH_USER", RESPONDER)
    monkeypatch.setenv("LW_LIVE_SECRET", SECRET)  # read when a notification is sent
    db = tmp_path / "live.duckdb"
    seen: dict = {}
    with WebhookReceiver(SECRET) as rx:
        config = config_for(tmp_path, rx.url)
        w = Watcher([str(logs)], db, config=config).open()
        app = make_live_app(w, interval=0.1, size=(150, 36))
        assert isinstance(app, LiveApp) and app.store is not w.store

        async def go():
            async with app.run_test() as pilot:
                incidents = app.screen
                assert "-live" in incidents.query_one("LeakwatchHeader").classes
                text = await wait_for(pilot, lambda: "file(s)" in banner(incidents) and banner(incidents), 10,
                                      "the first cycle in the banner")
                assert text.startswith(" LIVE ") and "1 file(s)" in text and str(logs) in text
                assert not incidents.rows
                # A leak lands in the followed file: the watch (its thread) stores, groups, notifies;
                # the list shows the incident while the watch goes on.
                with open(logs / "app.log", "a") as f:
                    f.write(PII_LINE)
                ids = await wait_for(pilot, lambda: list(incidents.rows), 15, "the incident in the list")
                assert app.watching
                await wait_for(pilot, lambda: "1 incidents opened" in banner(incidents), 5, "the banner's counts")
                seen["banner"] = banner(incidents)
                target = incidents.selected_id()
                assert target in ids
                seen["target"] = target
                await pilot.press("a")  # acknowledge, through the console's own connection
                await wait_for(pilot, lambda: incidents.rows.get(target) is not None
                               and incidents.rows[target].status == "triaged", 10, "the acknowledgement")
                # The watch still runs after the responder's change and keeps finding.
                with open(logs / "app.log", "a") as f:
                    f.write(PII_LINE.replace("priya", "omar"))
                await wait_for(pilot, lambda: app.live_state.get("findings", 0) >= 4, 10, "the second line's findings")
                seen["screen_text"] = " ".join(str(w_.render()) for w_ in incidents.query("Label, Static"))
                await pilot.press("q")

        run(go())
        app.wait_watch(10)
        assert not app.watching
        assert rx.wait_for(1, timeout=10), "the incident's webhook never reached the receiver"
        body = rx.deliveries[0].body.decode()
        w.close("ok")
    assert EMAIL not in body and "4111 1111 1111 1111" not in body
    assert EMAIL not in seen["banner"] and EMAIL not in seen["screen_text"]
    (status,), = read_rows(db, "SELECT status FROM incidents WHERE incident_id = ?", [seen["target"]])
    assert status == "triaged"
    assert read_rows(db, "SELECT count(*) FROM audit_log WHERE incident_id = ? AND actor = ?",
                     [seen["target"], RESPONDER]) == [(1,)]
    # Offsets saved: the whole file, both PII lines, is recorded as read.
    (offset,), = read_rows(db, 'SELECT "offset" FROM watch_files WHERE path LIKE ?', ["%app.log"])
    assert offset == os.path.getsize(logs / "app.log")
    (n,), = read_rows(db, "SELECT count(*) FROM findings WHERE entity IN ('EMAIL_ADDRESS', 'CREDIT_CARD')")
    assert n == 4
    # The session is recorded as a scan that finished.
    (st,), = read_rows(db, "SELECT status FROM scans ORDER BY scan_id DESC LIMIT 1")
    assert st == "ok"


def test_a_watch_that_dies_on_a_database_error_is_shown_and_the_console_stays_readable(tmp_path, logs):
    db = tmp_path / "live.duckdb"
    w = Watcher([str(logs)], db, notify=False).open()
    app = make_live_app(w, interval=0.05, size=(150, 36))

    async def go():
        async with app.run_test() as pilot:
            incidents = app.screen
            await wait_for(pilot, lambda: app.live_state["cycles"] >= 1, 10, "a first cycle")
            with open(logs / "app.log", "a") as f:
                f.write(PII_LINE)
            ids = await wait_for(pilot, lambda: list(incidents.rows), 15, "the incident in the list")
            # The watch's own connection goes away under it (as when its database is lost):
            # the next cycle with something to store fails, and the watch thread stops.
            w.store.con.close()
            with open(logs / "app.log", "a") as f:
                f.write(PII_LINE.replace("priya", "omar"))
            await wait_for(pilot, lambda: not app.watching, 10, "the watch to stop")
            text = await wait_for(pilot, lambda: "WATCH STOPPED" in banner(incidents) and banner(incidents), 5,
                                  "the stopped banner")
            assert "WATCH STOPPED" in text
            # The console's own connection still reads: a reload gives the list again.
            before = incidents.rows
            app.post_message(DataChanged("test"))
            await wait_for(pilot, lambda: incidents.rows is not before, 5, "the list reloaded")
            assert list(incidents.rows) == ids and app.screen is incidents
            await pilot.press("q")

    run(go())
    with pytest.raises(StoreError, match="cannot store findings from .*app.log: .*closed"):
        app.wait_watch(5)


def test_a_signal_stop_closes_the_console_and_the_watch(tmp_path, logs):
    db = tmp_path / "live.duckdb"
    w = Watcher([str(logs)], db, notify=False).open()
    stop = threading.Event()
    app = make_live_app(w, interval=0.05, stop=stop, size=(120, 30))
    closed = {}

    async def go():
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: app.live_state["cycles"] >= 1, 10, "a first cycle")
            assert not app._exit
            stop.set()  # what StopOnSignals does on SIGTERM
            await wait_for(pilot, lambda: app._exit, 5, "the console to close itself")
            closed["ok"] = True

    run(go())
    app.wait_watch(5)
    assert closed and not app.watching
    w.close("ok")
    (st,), = read_rows(db, "SELECT status FROM scans ORDER BY scan_id DESC LIMIT 1")
    assert st == "ok"


def cli(*args, timeout=30, **kw):
    return subprocess.run([sys.executable, "-m", "leakwatch", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def test_tui_with_once_is_refused(tmp_path, logs):
    r = cli("watch", logs, "--db", tmp_path / "x.duckdb", "--tui", "--once")
    assert r.returncode == 2
    assert "--tui" in r.stderr and "--once" in r.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_tui_without_a_terminal_watches_headless(tmp_path, logs):
    db = tmp_path / "x.duckdb"
    p = subprocess.Popen([sys.executable, "-m", "leakwatch", "watch", str(logs), "--db", str(db), "--tui",
                          "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert "following 1 file(s)" in line
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0
    assert "--tui needs a terminal" in err
    assert "stopped" in out


def test_the_database_in_use_message_points_at_the_live_console(tmp_path):
    db = tmp_path / "held.duckdb"
    Store.open(db).close()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('ready', flush=True); time.sleep(60)", str(db)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError) as err:
            Store.open(db)
        assert f"in use by process {holder.pid}" in str(err.value)
        assert "leakwatch watch PATH... --tui" in str(err.value)
        r = cli("tui", "--db", db)
        assert r.returncode == 3 and "--tui" in r.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_stage_that_keeps_failing_is_announced_once_and_named_in_the_banner(tmp_path, logs):
    db = tmp_path / "live.duckdb"
    w = Watcher([str(logs)], db, notify=False).open()
    app = make_live_app(w, interval=0.05, size=(160, 36))
    notices: list[tuple[str, str]] = []
    real_notify = app.notify

    def spy(message, *a, title="", **kw):  # observes what the responder is shown
        notices.append((title, str(message)))
        return real_notify(message, *a, title=title, **kw)

    app.notify = spy

    async def go():
        async with app.run_test() as pilot:
            incidents = app.screen
            with open(logs / "app.log", "a") as f:
                f.write(PII_LINE)
            await wait_for(pilot, lambda: list(incidents.rows), 15, "the incident")
            # Break the audit chain: every grouping from now on fails the same way.
            app.store.con.execute("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)")
            for i in range(6):
                with open(logs / "app.log", "a") as f:
                    f.write(PII_LINE.replace("priya", f"user{i}"))
                await pilot.pause(0.3)
            await wait_for(pilot, lambda: "FAILING" in banner(incidents), 5, "the failing stage in the banner")
            assert "grouping into incidents" in banner(incidents)
            await pilot.press("q")

    run(go())
    app.wait_watch(10)
    w.close()
    grouping = [n for n in notices if n[1].startswith("grouping into incidents")]
    assert len(grouping) == 1, grouping


def test_ctrl_c_in_the_console_records_an_interrupted_session(tmp_path, logs):
    db = tmp_path / "live.duckdb"
    w = Watcher([str(logs)], db, notify=False).open()
    app = make_live_app(w, interval=0.05, size=(120, 30))

    async def go():
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: app.live_state["cycles"] >= 1, 10, "a first cycle")
            await pilot.press("ctrl+c")

    run(go())
    app.wait_watch(10)
    assert app.interrupted and not app.watching
    w.close("interrupted")
    (st,), = read_rows(db, "SELECT status FROM scans ORDER BY scan_id DESC LIMIT 1")
    assert st == "interrupted"


@pytest.mark.parametrize(("tui", "how", "rc", "status"), [
    (True, "close", 0, "ok"), (False, "close", 0, "ok"), (True, "ctrl+c", 130, "interrupted")],
    ids=["console-closed", "headless-closed", "console-ctrl+c"])
def test_a_closed_terminal_or_ctrl_c_ends_the_session_cleanly(tmp_path, logs, tui, how, rc, status):
    # Closing the terminal (the pty's master) sends SIGHUP; writes to it then fail with EIO and
    # the console's last frame can never be drawn. The session must still end: exit 0, offsets
    # saved, the scan recorded as finished. ctrl+c typed into the console (a key, not a signal,
    # while Textual owns the terminal) ends it as interrupted: exit 130.
    import pty
    import select
    import struct

    import fcntl
    import termios

    db = tmp_path / "lw.duckdb"
    argv = [sys.executable, "-m", "leakwatch", "watch", str(logs), "--db", str(db), "--interval", "0.2", "--no-notify"]
    if tui:
        argv.append("--tui")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    seen = b""
    end = time.monotonic() + 30
    want = b"LIVE" if tui else b"following"
    while want not in seen and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    assert want in seen, seen[-500:]
    with open(logs / "app.log", "a") as f:
        f.write(PII_LINE)
    end = time.monotonic() + 5
    while time.monotonic() < end:  # let a cycle store it
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            with contextlib.suppress(OSError):
                os.read(fd, 65536)
    if how == "ctrl+c":
        os.write(fd, b"\x03")
    else:
        os.close(fd)  # the terminal goes away
    wait = None
    end = time.monotonic() + 40
    while time.monotonic() < end:
        p, st = os.waitpid(pid, os.WNOHANG)
        if p:
            wait = st
            break
        if how == "ctrl+c":  # keep the terminal read, or the console blocks drawing
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                with contextlib.suppress(OSError):
                    os.read(fd, 65536)
        else:
            time.sleep(0.1)
    if how == "ctrl+c":
        os.close(fd)
    if wait is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the watch did not end after {how}")
    assert os.WIFEXITED(wait) and os.WEXITSTATUS(wait) == rc, wait
    (st_,), = read_rows(db, "SELECT status FROM scans ORDER BY scan_id DESC LIMIT 1")
    assert st_ == status
    (offset,), = read_rows(db, 'SELECT "offset" FROM watch_files')
    assert offset == os.path.getsize(logs / "app.log")
