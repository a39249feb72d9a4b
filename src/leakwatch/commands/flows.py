"""``leakwatch flows``: the data-flow map Salesforce object/field → system → AI endpoint → region."""
from __future__ import annotations

import argparse
import os
import textwrap

EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch flows --db incident.duckdb                      data-flows.md, .csv, .json in .
      leakwatch flows --out-dir records/ --format md            the Markdown report only
      leakwatch flows --all                                     also flows with no external destination

    what it shows:
      One row per combination of Salesforce object and field (or the detected kind of data where
      no field is mapped), the system that logged the record (Event Monitoring, API gateway,
      MuleSoft app, Heroku, web/CDN, application), and the AI endpoint the record went to (vendor,
      host, region, jurisdiction, residency verdict), with counts of findings, distinct values and
      data subjects (an upper-bound estimate), first/last seen and the source files. Residency
      violations come first in the Markdown report. Input for GDPR Art. 30 records of processing.
      Only counts and names are written, never values; files are private to you (mode 0600).

    exit codes:
      0  written       2  usage error, or no such database       3  the database could not be read
    """
)


def register(sub) -> None:
    """Add the ``flows`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "flows",
        help="write the data-flow map (Salesforce field → system → AI endpoint → region) for GDPR Art. 30",
        description="Derive from the stored findings where personal data flows: Salesforce object/field "
        "→ logging system → AI endpoint → region, as Markdown, CSV and JSON.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", default=os.environ.get("LEAKWATCH_DB", "leakwatch.duckdb"), metavar="FILE",
                   help="DuckDB file written by 'leakwatch scan' (default: ./leakwatch.duckdb or $LEAKWATCH_DB)")
    p.add_argument("--out-dir", default=".", metavar="DIR",
                   help="directory to write data-flows.md / .csv / .json into (default: the current directory)")
    p.add_argument("--format", default="md,csv,json", metavar="LIST",
                   help="comma-separated formats to write: md, csv, json (default: all three)")
    p.add_argument("--all", action="store_true", dest="include_internal",
                   help="include flows whose records went to no external endpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch flows``; see ``leakwatch flows --help``."""
    from pathlib import Path

    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.export import check_not_database_files, terminate_as_interrupt
    from leakwatch.flows import FILE_STEM, parse_formats, write_flows
    from leakwatch.store import Store

    formats = parse_formats(args.format)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir {out_dir}: not a directory")
    db = Path(args.db)
    if not db.is_file():
        raise UsageError(f"{db}: no such database; run 'leakwatch scan --db {db} …' first, or point --db at one")
    check_not_database_files(db, [out_dir / f"{FILE_STEM}.{fmt}" for fmt in formats])
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the map names customer data flows
    except OSError as e:
        raise UsageError(f"--out-dir {out_dir}: cannot create it: {e.strerror}") from e
    # The key is not needed: subjects are counted from the stored hashes.
    with terminate_as_interrupt(), Store.open(db, read_only=True, need_key=False) as store:
        rows, written = write_flows(store.con, out_dir, formats, include_internal=args.include_internal,
                                    database=str(db))
    violations = sum(1 for r in rows if r["residency_violation"])
    print(f"{len(rows):,} flow(s), {violations:,} residency violation(s); wrote "
          + ", ".join(str(p) for p in written.values()))
    return ExitCode.OK
