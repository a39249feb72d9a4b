"""``leakwatch tui``: the incident console on a findings database.

Textual is imported inside :func:`run` only: building the CLI parser (every ``leakwatch`` call)
must not load it, and ``leakwatch scan`` never does (tests/test_tui_app.py checks both).
"""
from __future__ import annotations

import argparse
import os
import textwrap

EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch tui                                  the console on ./leakwatch.duckdb
      leakwatch tui --db incident.duckdb --config leakwatch.toml
      leakwatch tui --theme light                    for a bright room
      leakwatch tui --db drills/x/drill.duckdb --clock-speed 60 --clock-start 2026-03-11T09:00Z
                                                     a drill: one real minute is an hour
                                                     (drill databases only: changes are
                                                     dated in simulated time)

    keys:
      ? help on the current screen · ctrl+p every action by name · enter opens · escape goes back
      I incidents · F findings · M Salesforce map · N notifications · T light/dark · q quits

    while it runs:
      The console holds the database open for writing (responders change incidents), so
      'leakwatch scan' and 'leakwatch watch' on the same file are refused until it closes, and
      it does not start while one of them writes. To work incidents while logs are followed,
      open the console inside the watch: 'leakwatch watch PATH... --tui'. Changes are recorded
      in the audit trail as $LEAKWATCH_USER, else your login name.

    exit codes:
      0  closed normally   2  usage error, or no such database   3  the database could not be opened
    """
)


def register(sub) -> None:
    """Add the ``tui`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "tui",
        help="open the incident console (Textual TUI) on a findings database",
        description="The responders' console: incidents, regulatory clocks, playbooks, findings, "
        "the Salesforce data-flow map and the notification outbox, fully keyboard-driven.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The console's options (also used by a bare ``leakwatch``)."""
    p.add_argument("--db", default=os.environ.get("LEAKWATCH_DB", "leakwatch.duckdb"), metavar="FILE",
                   help="DuckDB file written by 'leakwatch scan' (default: ./leakwatch.duckdb or $LEAKWATCH_DB)")
    p.add_argument("--config", metavar="FILE", help="leakwatch.toml (default: $LEAKWATCH_CONFIG or ./leakwatch.toml)")
    p.add_argument("--theme", choices=("dark", "light"), default="dark", help="colour theme (T switches while running)")
    p.add_argument("--clock-speed", type=float, default=None, metavar="N",
                   help="drills: run the console's clock N times faster than real time (e.g. 60; "
                        "only on a database written by 'leakwatch drill run')")
    p.add_argument("--clock-start", metavar="TIME",
                   help="drills: the simulated time to start from (ISO 8601; default now)")


def drill_database(db: str) -> bool:
    """Whether ``db`` holds only what drills wrote (every scan a ``leakwatch drill run``), or
    does not exist yet. The accelerated clock dates every change it makes — acknowledgements,
    awareness times, audit rows — in simulated time: fine in a drill, a falsified record in a
    real incident's trail."""
    import duckdb

    if not os.path.exists(db):
        return True
    try:
        con = duckdb.connect(db, read_only=True)
    except duckdb.Error:
        return True  # not readable here: the console says why when it opens it
    try:
        other = con.execute("SELECT count(*) FROM scans WHERE argv IS NULL OR NOT starts_with(argv, 'leakwatch drill ')"
                            ).fetchone()[0]
    except duckdb.Error:
        return True
    finally:
        con.close()
    return other == 0


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch tui``; see ``leakwatch tui --help``."""
    from leakwatch.config import load_config
    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.tui.app import DARK_THEME, LIGHT_THEME, make_app
    from leakwatch.tui.clock import AcceleratedClock

    clock = None
    speed = getattr(args, "clock_speed", None)
    start = getattr(args, "clock_start", None)
    if start and not speed:
        raise UsageError("--clock-start goes with --clock-speed")
    if speed is not None:
        from leakwatch.drills.run import check_speed

        speed = check_speed(speed, "--clock-speed")  # nan, inf, 1e12 crashed the countdowns
        at = None
        if start:
            from leakwatch.incidents.book import IncidentError
            from leakwatch.tui.incident_model import parse_time

            try:
                at = parse_time(start, "--clock-start")
            except IncidentError as e:
                raise UsageError(str(e)) from None
        clock = AcceleratedClock(speed, at)
    if clock is not None and not drill_database(args.db):
        raise UsageError(f"--clock-speed is for drill databases (leakwatch drill run): on {args.db}, what a "
                         "responder changes would enter its audit trail at simulated times")
    config = load_config(getattr(args, "config", None))
    app = make_app(args.db, config=config, clock=clock,
                   theme=LIGHT_THEME if getattr(args, "theme", "dark") == "light" else DARK_THEME)
    app.run()
    # A console that ended on an unhandled error exits 1 in Textual's terms: not a success.
    return ExitCode.INTERNAL_ERROR if getattr(app, "return_code", 0) else ExitCode.OK
