"""``leakwatch export``: stored findings as Parquet, CSV, JSON lines or OCSF, masked values only."""
from __future__ import annotations

import argparse
import os
import sys
import textwrap

SEVERITIES = ("info", "low", "medium", "high", "critical")
FORMATS = ("parquet", "csv", "jsonl", "ocsf")

EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch export --db incident.duckdb --format parquet --out findings.parquet
      leakwatch export --format csv --min-severity high > high.csv
      leakwatch export --format ocsf --since 2024-03-11T00:00Z | your-siem-forwarder
      leakwatch export --format jsonl --scan 7 --out scan7.jsonl

    formats:
      parquet  one row per finding, typed columns (written by DuckDB; needs --out FILE)
      csv      the same columns with a header line; times in UTC
      jsonl    one JSON object per finding and line; every key on every line, times ISO 8601 UTC
      ocsf     one OCSF 1.3.0 "Data Security Finding" event (class_uid 2006) per line, JSON
               lines as SIEM collectors ingest them; leakwatch's own fields are under "unmapped"

    what leaves the database:
      Masked values and keyed value hashes only. Raw values are NEVER exported, even when the
      database holds them (scans run with --store-raw), and the database key is never read: the
      hashes in an export can be counted and joined with each other, not reversed. Files are
      created private to you (mode 0600) and appear only when complete (written to a temporary
      file, then renamed).

    exit codes:
      0  exported                        2  usage error, or no such database
      3  the database could not be read  130 interrupted: Ctrl-C or SIGTERM (no partial file is
                                           left behind)
    """
)


def register(sub) -> None:
    """Add the ``export`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "export",
        help="export findings (masked) as Parquet, CSV, JSON lines or OCSF",
        description="Export stored findings for a SIEM, a notebook or a spreadsheet. Masked values "
        "only: raw values are never exported, even if the database holds them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", default=os.environ.get("LEAKWATCH_DB", "leakwatch.duckdb"), metavar="FILE",
                   help="DuckDB file written by 'leakwatch scan' (default: ./leakwatch.duckdb or $LEAKWATCH_DB)")
    p.add_argument("--format", required=True, choices=FORMATS, metavar="FORMAT",
                   help=f"one of {', '.join(FORMATS)}")
    p.add_argument("--out", default="-", metavar="FILE",
                   help="file to write, replaced atomically, mode 0600; '-' or /dev/stdout for stdout (the default; not "
                        "for parquet); other stream names (/dev/stderr, /dev/fd/N) are written in place")
    p.add_argument("--scan", type=int, metavar="ID", help="only findings first stored by scan ID")
    p.add_argument("--min-severity", choices=SEVERITIES, metavar="SEVERITY",
                   help=f"only findings of this severity or higher: {', '.join(SEVERITIES)}")
    p.add_argument("--since", metavar="ISO",
                   help="only findings whose log record is from this time on (ISO 8601, UTC unless a zone "
                   "is given; records without a timestamp count by when they were stored)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch export``; see ``leakwatch export --help``."""
    from pathlib import Path

    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.export import (
        STDOUT_NAMES, ExportFilter, check_not_database_files, export_findings, parse_since, terminate_as_interrupt,
        utf8_stdout,
    )
    from leakwatch.store import Store
    from leakwatch.store.queries import get_scan

    # /dev/stdout for parquet: written in place by DuckDB (a binary format has no text stream).
    to_stdout = args.out in STDOUT_NAMES and (args.out == "-" or args.format != "parquet")
    if to_stdout and args.format == "parquet":
        raise UsageError("parquet is a binary format and cannot go to stdout; give --out FILE")
    since = parse_since(args.since) if args.since else None
    db = Path(args.db)
    if not db.is_file():
        raise UsageError(f"{db}: no such database; run 'leakwatch scan --db {db} …' first, or point --db at one")
    if not to_stdout:
        check_not_database_files(db, [Path(args.out)], "--out")
    flt = ExportFilter(
        scan_id=args.scan,
        min_severity_rank=SEVERITIES.index(args.min_severity) if args.min_severity else None,
        since=since,
    )
    # The key is not needed: hashes are exported as stored, nothing is hashed.
    with terminate_as_interrupt(), Store.open(db, read_only=True, need_key=False) as store:
        if args.scan is not None and get_scan(store.con, args.scan) is None:
            raise UsageError(f"{db}: there is no scan {args.scan}")
        if to_stdout:
            with utf8_stdout() as out:
                n = export_findings(store.con, args.format, out, flt)
        else:
            n = export_findings(store.con, args.format, args.out, flt)
    if not to_stdout:
        print(f"leakwatch: exported {n:,} finding(s) as {args.format} to {args.out}", file=sys.stderr)
    return ExitCode.OK
