"""``leakwatch pull``: download new Salesforce EventLogFile blobs, then scan them.

The work is in :mod:`leakwatch.salesforce.pull`; this module parses options, reads credentials
from the environment, shows progress and turns the outcome into an exit code. Heavy imports
(simple-salesforce, requests, rich) happen inside :func:`run`.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap

SEVERITIES = ("info", "low", "medium", "high", "critical")

EPILOG = textwrap.dedent(
    """\
    credentials (environment variables only: options would show in `ps` and shell history):
      SF_SESSION_ID + SF_INSTANCE_URL      an existing session, e.g. from `sf org display`
      SF_USERNAME + SF_PASSWORD + SF_SECURITY_TOKEN
                                           a SOAP login (token empty when the IP is trusted)
      SF_DOMAIN                            login (default), test (a sandbox), a My Domain such
                                           as acme.my, or https://host[:port]
      REQUESTS_CA_BUNDLE                   CA file, e.g. behind a TLS-inspecting proxy
      The session id, password and token are never printed, logged or stored. The user needs
      the "API Enabled" and "View Event Log Files" permissions.

    what happens:
      1. EventLogFile records created since the last pull of this org are listed (the first
         run starts --since ago, 7 days by default); files already stored are skipped.
      2. Each LogFile blob streams to OUT/<instance host>/<EventType>/<LogDate>_<Id>.csv via
         a .csv.part file; size (LogFileLength) and SHA-256 are recorded in the database.
         An interrupted download stays as .part and resumes (HTTP Range) on the next run.
      3. The checkpoint moves past every file that is fully stored, in CreatedDate order, and
         never past one that failed: the run stops at the first file that still fails after
         retries, and the next run starts again from there.
      4. The org's object key prefixes are learned (describeGlobal), and the stored
         files are scanned like `leakwatch scan` does (skip with --no-scan; the next run
         scans what is left).

    examples:
      export SF_USERNAME=ops@acme.example
      read -rs SF_PASSWORD; read -rs SF_SECURITY_TOKEN   # typed, so not in the shell history
      export SF_PASSWORD SF_SECURITY_TOKEN
      leakwatch pull --db lw.duckdb --out elf/              new files since the last pull
      leakwatch pull --db lw.duckdb --out elf/ --since 2024-03-01 \\
          --event-type ApexCallout --event-type RestApi     two event types from March 1st
      leakwatch pull --db lw.duckdb --out elf/ --no-scan    download only (cron), scan later
      SF_DOMAIN=test leakwatch pull --db sbx.duckdb --out sbx/   a sandbox

    exit codes:
      0  pulled and scanned; no finding at or above --fail-on
      1  findings at or above --fail-on
      2  usage error, credentials refused (401/403), a listed file no retry will store (gone:
         404, or not the size Salesforce lists; skipped, named on stderr, and tried again
         only by a --since run that lists it), or a pulled file could not be scanned
      3  the database could not be opened or written
      4  Salesforce failed after retries (5xx, dropped connections): what was stored stays,
         rerun to resume
      130 interrupted (partial downloads are resumed by the next run)
    """
)


def register(sub) -> None:
    """Add the ``pull`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "pull",
        help="download new Salesforce EventLogFile logs (incremental, resumable) and scan them",
        description="Download the Salesforce Event Monitoring logs (EventLogFile) created since the last "
        "pull, streaming each to disk, then scan them for PII and secrets into the DuckDB file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", default=os.environ.get("LEAKWATCH_DB", "leakwatch.duckdb"), metavar="FILE",
                   help="DuckDB file holding checkpoints and findings (default: ./leakwatch.duckdb or $LEAKWATCH_DB)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="directory the log files are written to (they hold customer data: keep it private)")
    p.add_argument("--since", metavar="WHEN",
                   help="list files created from WHEN instead of the checkpoint: ISO date/datetime (UTC unless "
                        "an offset is given) or a span such as 36h, 7d (first run default: 7d)")
    p.add_argument("--event-type", action="append", default=[], metavar="TYPE", dest="event_types",
                   help="only this event type, e.g. ApexCallout, RestApi, API, BulkApi, ReportExport (repeatable; "
                        "a filtered pull keeps its own checkpoint)")
    p.add_argument("--api-version", default="60.0", metavar="N.N", help="Salesforce API version (default: 60.0)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="download N files at once and scan with N threads (default: 1)")
    p.add_argument("--retries", type=int, default=4, metavar="N",
                   help="retries of a failed request (5xx, 429, dropped connection, timeout), waiting 1, 2, 4… s "
                        "between them; downloads resume where they stopped (default: 4)")
    p.add_argument("--no-scan", action="store_true", help="only download; the next pull scans what is left")
    p.add_argument("--rules", action="append", metavar="DIR", dest="rules",
                   help="rules directory or YAML file for the scan (repeatable; default: the shipped rules/)")
    p.add_argument("--fail-on", default="medium", choices=SEVERITIES, metavar="SEVERITY",
                   help="exit 1 when a finding has this severity or higher (default: medium)")
    p.add_argument("--store-raw", action="store_true",
                   help="ALSO store raw matched values in the database (off by default)")
    p.add_argument("-q", "--quiet", action="store_true", help="print no summary (errors still go to stderr)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """``leakwatch pull``: see ``leakwatch pull --help``."""
    import datetime as dt

    from rich.console import Console
    from rich.markup import escape

    from leakwatch.errors import SalesforceAuthError, SalesforceError, UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.salesforce.pull import Credentials, parse_since, pull

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    now = dt.datetime.now(dt.UTC)
    since = parse_since(args.since, now) if args.since else None
    credentials = Credentials.from_env()
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    show_progress = err.is_terminal and not args.no_progress and not args.quiet
    scan_options = {"rules_dirs": args.rules, "fail_on": args.fail_on, "store_raw": args.store_raw,
                    "argv": ["leakwatch", *argv]}
    kwargs = {"since": since, "event_types": args.event_types, "api_version": args.api_version,
              "workers": args.workers, "retries": args.retries, "scan": not args.no_scan,
              "scan_options": scan_options, "now": now}
    try:
        if show_progress:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            with Progress(TextColumn("[bold]{task.fields[verb]}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          TimeRemainingColumn(), TextColumn("{task.description}"), console=err, transient=True) as bar:
                tasks: dict[str, int] = {}

                def tracker(verb: str):
                    def update(done: int, total: int, name: str) -> None:
                        if verb not in tasks:
                            tasks[verb] = bar.add_task("", total=None, verb=verb)
                        bar.update(tasks[verb], completed=done, total=total, description=escape(os.path.basename(name)))
                    return update

                result = pull(args.db, args.out, credentials, progress=tracker("pulling"),
                              scan_progress=tracker("scanning"), **kwargs)
        else:
            result = pull(args.db, args.out, credentials, **kwargs)
    except SalesforceAuthError:
        raise  # the CLI prints it; exit 2: the credentials must be fixed
    except SalesforceError as e:
        err.print(f"leakwatch: salesforce error: {e}", markup=False, emoji=False, soft_wrap=True)
        err.print("leakwatch: nothing was lost: what was stored stays, rerun to resume", markup=False, soft_wrap=True)
        return ExitCode.REMOTE_ERROR

    for w in result.warnings:
        err.print(f"leakwatch: warning: {w}", markup=False, emoji=False, soft_wrap=True)
    for f in result.failed:
        err.print(f"leakwatch: pull failed: EventLogFile {f.log_id} ({f.event_type}, created {f.created_date}): "
                  f"{f.error}", markup=False, emoji=False, soft_wrap=True)
    for f in result.skipped:
        err.print(f"leakwatch: pull skipped: EventLogFile {f.log_id} ({f.event_type}, created {f.created_date}): "
                  f"{f.error}; no retry will store it, so the next pulls pass it (a --since run that lists it "
                  f"tries again)", markup=False, emoji=False, soft_wrap=True)
    if result.skipped_earlier:
        err.print(f"leakwatch: warning: {result.skipped_earlier} listed file(s) were skipped by an earlier pull "
                  f"(see pulled_files.error); --since tries them again", markup=False, soft_wrap=True)
    if result.failed:
        later = f"; {result.not_attempted} later file(s) not tried yet" if result.not_attempted else ""
        err.print(f"leakwatch: the checkpoint stays before that file{later}; rerun to resume",
                  markup=False, soft_wrap=True)
    summary = result.scan
    if summary is not None:
        for e in summary.rule_errors:
            err.print(f"leakwatch: rule error: {e}", markup=False, emoji=False, soft_wrap=True)
        for p in summary.problems:
            err.print(f"leakwatch: input error: {p}", markup=False, emoji=False, soft_wrap=True)
    if not args.quiet:
        resumed = sum(1 for f in result.downloaded if f.resumed_from)
        out.print(
            f"pull from {result.instance}: {result.listed} file(s) listed since {result.query_from}, "
            f"{len(result.downloaded)} downloaded ({result.bytes_downloaded / 1e6:.1f} MB"
            f"{f', {resumed} resumed' if resumed else ''}), {result.already_stored} already stored, "
            f"{len(result.failed)} failed{f', {len(result.skipped)} skipped' if result.skipped else ''}; checkpoint {result.checkpoint_before or '(none)'} -> "
            f"{result.checkpoint_after or '(none)'}; {result.prefixes_learned} key prefix(es) learned",
            markup=False, emoji=False, soft_wrap=True,
        )
        if summary is not None:
            from leakwatch.report import print_summary

            print_summary(summary, out, fail_on=args.fail_on)
        elif args.no_scan:
            out.print("not scanned (--no-scan): the next pull scans the stored files", markup=False)
        else:
            out.print("nothing new to scan", markup=False)
    sys.stdout.flush()
    if summary is not None and summary.interrupted:
        return ExitCode.INTERRUPTED
    if result.failed:
        return ExitCode.REMOTE_ERROR
    if result.skipped or (summary is not None and summary.input_errors):
        return ExitCode.INPUT_ERROR
    if summary is not None and summary.findings_at_or_above:
        return ExitCode.FINDINGS
    return ExitCode.OK
