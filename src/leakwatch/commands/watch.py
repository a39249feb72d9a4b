"""``leakwatch watch``: follow log directories, scan new lines as they land, open incidents and
send the notifications the trigger rules ask for, in the same poll cycle.

The work is in :mod:`leakwatch.watch`; this module parses options, prints one line per cycle
that has news and maps the outcome to an exit code. Heavy imports happen inside :func:`run`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap

EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch watch /var/log/mule/ /var/log/nginx/      follow two trees (new files included)
      leakwatch watch 'logs/**/*.log' --exclude '*.gz'    globs; leave the rotated archives out
      leakwatch watch logs/ --config leakwatch.toml -v    with [[notify.targets]]/[[notify.rules]];
                                                          -v shows each notification's latency
      leakwatch watch logs/ --once                        one cycle, then exit (cron, scripts)
      leakwatch watch /var/log/mule/ --tui               the incident console with the watch inside it:
                                                          incidents appear as they open, responders
                                                          work them while the watch goes on
      leakwatch watch logs/ --pull-salesforce --pull-every 30
                                                          also pull new EventLogFile logs every
                                                          30 min into logs/salesforce/ (SF_* env,
                                                          see 'leakwatch pull --help')

    how files are followed (every --interval seconds, by polling: works on any filesystem):
      Only bytes appended since the last cycle are read, up to the last complete line; a last
      line without its newline waits for it (scanned as it is once the file has been idle 3 s).
      Files are known by inode: a rotated file (app.log -> app.log.1) is read to its end under
      its new name, and the new app.log from its start (a rotated file out of view of a glob,
      or deleted, is read until idle 2 minutes, then closed); a truncated or copytruncated file is
      read again from the start; gzip files are read once, when complete. Offsets are stored
      with the findings, in one transaction: a restarted watch goes on where it stopped and
      stores nothing twice. Binary files, UTF-16 logs, invalid UTF-8 and over-long lines are
      reported with file and line, and the watch goes on.

    each cycle: scan new lines -> group findings into incidents -> trigger rules queue
    notifications in the outbox (same transaction) -> deadline triggers (every 5 s) -> the
    dispatcher sends what is due. Output: one line per cycle with news (findings, incidents
    opened or grown, notifications sent or failed); nothing otherwise. Values are never printed.

    --tui:
      DuckDB lets one process write a database, and a watch keeps its file open while it runs, so
      'leakwatch tui' on the same file is refused then. --tui runs both in one process: the console
      on the watch's database, a LIVE banner (files followed, last cycle, findings, incidents,
      notifications), screens reloaded as cycles bring news, a notice for each incident opened and
      each failed notification. q or ctrl+c stops the watch (offsets saved) and closes the console.

    exit codes:
      0  stopped by SIGTERM or SIGHUP, or --once     2  usage or configuration error (or, with
         finished (--tui: closed with q)                 --once, some input could not be read)
      3  the database could not be opened or written, or was deleted while the watch ran
      130 stopped by Ctrl-C (offsets are saved either way; a second Ctrl-C stops at once)
    """
)


def register(sub) -> None:
    """Add the ``watch`` subcommand to the CLI's subparsers."""
    from leakwatch.config import WATCH_POLL_INTERVAL_S as POLL_INTERVAL_S, WATCH_PULL_EVERY_MIN as PULL_EVERY_MIN

    p = sub.add_parser(
        "watch",
        help="follow log files as they grow; open incidents and notify within seconds",
        description="Follow directories, files or globs (recursively): scan each new line once as it "
        "lands, group findings into incidents, fire the trigger rules and deliver the notifications "
        "through the outbox, every --interval seconds. Stop with Ctrl-C or SIGTERM.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="directory (recursive), file or glob to follow")
    p.add_argument("--db", default=os.environ.get("LEAKWATCH_DB", "leakwatch.duckdb"), metavar="FILE",
                   help="DuckDB file to write (default: ./leakwatch.duckdb or $LEAKWATCH_DB)")
    p.add_argument("--config", metavar="FILE",
                   help="settings file (TOML; [notify] targets and rules; default: $LEAKWATCH_CONFIG or "
                        "./leakwatch.toml if present)")
    p.add_argument("--rules", action="append", metavar="DIR", dest="rules",
                   help="rules directory or YAML file (repeatable; default: the shipped rules/)")
    p.add_argument("--format", "--fmt", dest="fmt", metavar="FORMAT",
                   help="read every file as FORMAT instead of sniffing each one (see 'leakwatch scan --help')")
    p.add_argument("--interval", type=float, default=POLL_INTERVAL_S, metavar="SECONDS",
                   help=f"seconds between cycles (default: {POLL_INTERVAL_S})")
    p.add_argument("--once", action="store_true", help="run one cycle, then exit")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="leave out files whose path or name matches GLOB (repeatable), e.g. '*.gz' when "
                        "rotated logs are compressed next to the live ones")
    p.add_argument("--no-patterns", action="store_true",
                   help="do not run the failure-pattern detectors (they run at most every 10 s otherwise)")
    p.add_argument("--no-notify", action="store_true",
                   help="group into incidents but queue and send no notification (the outbox is left alone)")
    p.add_argument("--ner", action=argparse.BooleanOptionalAction, default=None,
                   help="also run presidio NER on free-text fields (default: the config's ner.enabled)")
    p.add_argument("--store-raw", action="store_true",
                   help="ALSO store raw matched values in the database (off by default)")
    p.add_argument("--pull-salesforce", action="store_true",
                   help="also pull new Salesforce EventLogFile logs (incremental, as 'leakwatch pull') into "
                        "--pull-out, which is followed like the other paths; credentials from SF_* variables")
    p.add_argument("--pull-out", metavar="DIR",
                   help="where pulled logs go (default: PATH/salesforce under the first directory PATH)")
    p.add_argument("--pull-every", type=float, default=PULL_EVERY_MIN, metavar="MINUTES",
                   help=f"minutes between pulls (default: {PULL_EVERY_MIN:g})")
    p.add_argument("--pull-event-type", action="append", default=[], metavar="TYPE", dest="pull_event_types",
                   help="only pull this event type (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print per file and per notification: latency from the line landing to the 2xx")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--tui", action="store_true",
                   help="open the incident console with the watch running inside it (needs a terminal)")
    p.add_argument("--theme", choices=("dark", "light"), default="dark", help="the console's colours (with --tui)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """``leakwatch watch``: see ``leakwatch watch --help``."""
    import signal
    import statistics

    from leakwatch.config import load_config
    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.watch import SalesforcePull, StopOnSignals, Watcher

    if not 0 < args.interval <= 3600:  # nan fails both; inf and 1e300 overflowed the wait (exit 70)
        raise UsageError(f"--interval must be more than 0 and at most 3600 seconds, got {args.interval:g}")
    tui = getattr(args, "tui", False)
    if tui and args.once:
        raise UsageError("--tui follows the logs until the console closes; leave out --once")
    # The console reads the keyboard on stdin and draws on stderr (stdout stays free).
    if tui and not (sys.stdin.isatty() and sys.stderr.isatty()):
        print("leakwatch: --tui needs a terminal (stdin and stderr); watching without the console",
              file=sys.stderr)
        tui = False
    if args.fmt is not None:
        from leakwatch.sources.formats import FORMAT_NAMES

        if args.fmt not in FORMAT_NAMES:
            raise UsageError(f"--format {args.fmt}: unknown format (valid: {', '.join(FORMAT_NAMES)})")
    config = load_config(args.config)
    paths = list(args.paths)
    # A directory or file that is not there is a typo far more often than a log that will appear:
    # refuse it before creating a database (a glob may match nothing yet).
    for p in paths:
        if not any(c in p for c in "*?[") and not os.path.exists(p):
            raise UsageError(f"{p}: no such file or directory (watch follows paths that exist; create it first, "
                             f"or give a glob such as '{os.path.join(p, '*.log')}')")
    pull = None
    if args.pull_salesforce:
        from leakwatch.salesforce.pull import Credentials

        if not args.pull_every > 0:
            raise UsageError("--pull-every must be more than 0 minutes")
        out = args.pull_out
        if out is None:
            first = next((p for p in paths if os.path.isdir(p)), None)
            if first is None:
                raise UsageError("--pull-salesforce needs --pull-out DIR when no PATH is a directory")
            out = os.path.join(first, "salesforce")
        # Checked now: a watch that cannot log in would only fail every --pull-every minutes.
        credentials = Credentials.from_env()
        pull = SalesforcePull(out, every_s=args.pull_every * 60, credentials=credentials,
                              event_types=args.pull_event_types)
        os.makedirs(pull.out_dir, mode=0o700, exist_ok=True)
        if not any(os.path.abspath(pull.out_dir).startswith(os.path.abspath(p).rstrip(os.sep) + os.sep)
                   or os.path.abspath(pull.out_dir) == os.path.abspath(p) for p in paths):
            paths.append(pull.out_dir)

    out, err = sys.stdout, sys.stderr

    def say(text: str, stream=None) -> None:
        # A terminal that was closed (SIGHUP) answers writes with EIO: the session still ends
        # cleanly, with nothing to say it on.
        with contextlib.suppress(OSError):
            print(text, file=stream or out, flush=True)

    stop = StopOnSignals()
    status = "ok"
    tui_interrupted = False
    try:
        with Watcher(paths, args.db, config=config, rules_dirs=args.rules, fmt=args.fmt, ner=args.ner,
                     store_raw=args.store_raw, exclude=args.exclude, patterns=not args.no_patterns,
                     notify=not args.no_notify, pull=pull, argv=["leakwatch", *argv]) as w:
            rule_errors = len(w.scanner.rule_errors)
            for e in w.scanner.rule_errors:
                say(f"leakwatch: rule error: {e}", err)
            first = [True]
            problems = [0]

            def on_cycle(rep) -> None:
                problems[0] += len(rep.problems)
                for p in rep.problems:
                    say(f"leakwatch: input error: {p}", err)
                for e in rep.errors:
                    say(f"leakwatch: {e}", err)
                if first[0]:
                    first[0] = False
                    if not args.quiet:
                        say(f"leakwatch watch: following {len(w.files)} file(s) in {', '.join(paths)} into "
                            f"{args.db}, every {args.interval:g} s" + ("" if args.once else "; Ctrl-C to stop"))
                if args.quiet:
                    return
                if args.verbose:
                    for note in rep.notes:
                        say(f"  {note}")
                elif rep.notes:
                    for note in rep.notes:
                        if note.startswith("salesforce pull"):
                            say(note)
                if rep.news():
                    say(rep.line())
                    if args.verbose:
                        for path, n in rep.files.items():
                            say(f"  {path}: +{n} finding{'s' * (n != 1)}")
                        for d in rep.deliveries:
                            say("  " + _delivery_line(d))

            if tui:
                # Raises what stopped the watch, once the console closed.
                tui_interrupted = _run_tui(args, w, stop)
            else:
                w.run(interval=args.interval, once=args.once, stop=stop.event, on_cycle=on_cycle)
            if pull is not None and not pull.wait(15.0):
                say("leakwatch: a Salesforce pull is still running; leaving it (partial downloads resume "
                    "next time)", err)
            if stop.signum == signal.SIGINT or tui_interrupted:
                status = "interrupted"
            if not args.quiet and not args.once:
                t = w.totals
                lat = ""
                if w.latencies:
                    lat = (f"; line → 2xx median {statistics.median(w.latencies):.2f} s over "
                           f"{len(w.latencies)}")
                say(f"leakwatch watch: stopped; {t['findings']} new finding(s), {t['opened']} incident(s) opened, "
                    f"{t['sent']} notification(s) sent, {t['failed']} failed{lat}; offsets saved")
            w.close(status)
    except KeyboardInterrupt:
        # A second Ctrl-C: the store was closed by the context manager; offsets of the files
        # finished so far are stored.
        stop.restore()
        raise
    finally:
        stop.restore()
    if stop.signum == signal.SIGINT or tui_interrupted:
        return ExitCode.INTERRUPTED
    if args.once and (problems[0] or rule_errors):
        return ExitCode.INPUT_ERROR  # as scan: an unreadable rule file is an input error
    return ExitCode.OK


#: After a signal, how long the console gets to close by itself before the session is ended
#: without it (its terminal may be gone: drawing the last frame then blocks for good).
SIGNAL_GRACE_S = 5.0


def _run_tui(args: argparse.Namespace, w, stop) -> bool:
    """``watch --tui``: the console beside the opened watch ``w`` until it closes; then the
    watch is stopped (after its file) and what stopped it with an error, if anything, raised.
    Returns whether the console was closed with ctrl+c (an interrupted session).

    While the watch's last cycle finishes, a Ctrl-C is the first one (the console's own close
    is not a signal); a second one exits at once, leaving the database to the next watch
    (which marks this session interrupted): closing it under the running cycle could crash."""
    from leakwatch.tui.app import DARK_THEME, LIGHT_THEME
    from leakwatch.tui.live import make_live_app

    import signal
    import threading

    app = make_live_app(w, interval=args.interval, stop=stop.event,
                        theme=LIGHT_THEME if args.theme == "light" else DARK_THEME)
    closed = threading.Event()

    def watchdog() -> None:
        # A closed terminal (SIGHUP) leaves Textual blocked writing its last frame: the
        # console never returns. Then the session is ended here, without it.
        stop.event.wait()
        if closed.wait(SIGNAL_GRACE_S):
            return
        app.watch_stop.set()
        app.wait_thread(30.0)
        interrupted = stop.signum == signal.SIGINT
        if not app.watching:
            with contextlib.suppress(Exception):
                w.close("interrupted" if interrupted else "ok")
        os._exit(130 if interrupted else 0)

    threading.Thread(target=watchdog, name="leakwatch-tui-watchdog", daemon=True).start()
    try:
        app.run()
    finally:
        closed.set()
        app.watch_stop.set()
        try:
            while app.watching:
                app.wait_thread(0.2)
        except KeyboardInterrupt:
            w.abandon()
            print("leakwatch: stopped at once; the last cycle was cut short (the next watch records this "
                  "session as interrupted)", file=sys.stderr, flush=True)
            os._exit(130)
    app.wait_watch()
    return app.interrupted


def _delivery_line(d) -> str:
    """One notification in verbose output: ids, target, outcome and latencies (no payload)."""
    what = f"#{d.notification_id} {d.event}" + (f" incident #{d.incident_id}" if d.incident_id is not None else "")
    if d.status == "delivered":
        http = f"HTTP {d.http_status}" if d.http_status else "delivered"
        times = []
        if d.landed_s is not None:
            times.append(f"{d.landed_s:.2f} s after the line was written")
        if d.queued_s is not None:
            times.append(f"{d.queued_s:.2f} s after it was queued")
        return f"→ {d.target}: {what}: {http}" + (f", {', '.join(times)}" if times else "")
    state = "failed, will retry" if d.status == "retry" else "dead letter"
    code = f" (HTTP {d.http_status})" if d.http_status else ""
    return f"→ {d.target}: {what}: {state}{code}: {d.error or ''}".rstrip(": ")
