"""Command line entry point: ``leakwatch scan …`` runs headless; more commands follow.

Exit codes are documented in :mod:`leakwatch.exit_codes`; every exception class maps to one of
them here, in one place.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import stat
import sys
import textwrap

from leakwatch import __version__
from leakwatch.errors import (
    IncidentError,
    LeakwatchError,
    PlaybookError,
    SalesforceAuthError,
    SalesforceError,
    StoreError,
    UsageError,
    printable,
)
from leakwatch.exit_codes import ExitCode

SEVERITIES = ("info", "low", "medium", "high", "critical")

SCAN_EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch scan /var/log/mule/                 scan a directory tree (recursively)
      leakwatch scan 'exports/**/*.csv.gz'          globs are expanded by leakwatch too
      leakwatch scan app.log --jsonl - | jq .entity stream findings as JSON lines
      leakwatch scan logs/ --fail-on high           CI gate: exit 1 only on high/critical

    what is stored:
      Findings go to a DuckDB file (--db). Values are never stored raw unless --store-raw is
      given: each finding keeps a masked preview and an HMAC-SHA256 of the value, keyed per
      database (the key lives beside the database in FILE.key, mode 0600), so equal values can
      be counted and joined without being readable. Re-scanning an unchanged file adds nothing.

    exit codes:
      0  no finding at or above --fail-on     2  usage error, or some input could not be read
      1  findings at or above --fail-on        3  the database could not be opened or written
      4  Salesforce or another remote service failed after retries (pull)
      130 interrupted (what was stored stays)  70 internal error (a bug: please report it)
    """
)


def _refuse_to_overwrite(out: str, db: str, paths: list[str]) -> None:
    """``--jsonl FILE`` must not be a file named to be scanned, the database, its WAL or its key
    file: opening it for writing would empty it before the scan reads a byte (the evidence, or
    the database, gone). Checked before anything is opened."""
    named = [(db, "the database"), (db + ".wal", "the database's WAL"), (db + ".key", "the database's key file")]
    if not os.path.exists(out):
        # A new file can still be where the database, its WAL or key are about to be created:
        # an empty file there makes the database "damaged" and the key "not a leakwatch key".
        real = os.path.realpath(out)
        for path, what in named:
            if os.path.realpath(path) == real:
                raise UsageError(f"--jsonl {out} is {what}: writing it would destroy it; choose another file")
        return
    from leakwatch.sources.files import expand_paths

    # Every file the paths, folders and globs name, as the scan will list them.
    named += [(f.path, "a file to be scanned") for f in expand_paths(paths)[0]]
    for path, what in named:
        try:
            if os.path.exists(path) and os.path.samefile(out, path):
                raise UsageError(f"--jsonl {out} is {what}: writing it would destroy it; choose another file")
        except OSError:
            continue


def _format_names() -> tuple[str, ...]:
    from leakwatch.sources.formats import FORMAT_NAMES

    return tuple(FORMAT_NAMES)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="leakwatch",
        description="Find customer PII and secrets in gateway, middleware and Salesforce logs "
        "before they become a breach notice. Findings are kept, masked and hashed, in DuckDB.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"leakwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    scan = sub.add_parser(
        "scan",
        help="scan log files, directories or globs for PII and secrets",
        description="Scan files (plain or gzip, any size) for PII and secrets with the native RE2 "
        "core, store the findings in DuckDB and print a summary.",
        epilog=SCAN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scan.add_argument("paths", nargs="+", metavar="PATH", help="file, directory (recursive) or glob; .gz is read transparently")
    scan.add_argument("--db", default=os.environ.get("LEAKWATCH_DB", "leakwatch.duckdb"), metavar="FILE",
                      help="DuckDB file to write (default: ./leakwatch.duckdb or $LEAKWATCH_DB)")
    scan.add_argument("--rules", action="append", metavar="DIR", dest="rules",
                      help="rules directory or YAML file (repeatable; default: the shipped rules/)")
    scan.add_argument("--jsonl", metavar="FILE", help="also write one JSON object per finding to FILE ('-' for stdout)")
    scan.add_argument("--fail-on", default="medium", choices=SEVERITIES, metavar="SEVERITY",
                      help="exit 1 when a finding has this severity or higher: %s (default: medium)" % ", ".join(SEVERITIES))
    scan.add_argument("--workers", type=int, default=1, metavar="N",
                      help="scan with N threads (files larger than 16 MB are split into line-aligned ranges; default: 1)")
    scan.add_argument("--store-raw", action="store_true",
                      help="ALSO store raw matched values in the database (off by default: a leak detector must not become a leak)")
    scan.add_argument("--rescan", action="store_true", help="scan files again even if unchanged since a completed scan")
    scan.add_argument("--format", dest="fmt", metavar="FORMAT", choices=_format_names(),
                      help="read every file as FORMAT instead of sniffing each one: %s" % ", ".join(_format_names()))
    scan.add_argument("--config", metavar="FILE",
                      help="settings file (TOML; default: $LEAKWATCH_CONFIG or ./leakwatch.toml if present)")
    scan.add_argument("--ner", action=argparse.BooleanOptionalAction, default=None,
                      help="also run presidio NER (PERSON, LOCATION) on free-text fields such as LLM prompts "
                      "(default: the config's ner.enabled, off)")
    scan.add_argument("--no-patterns", action="store_true",
                      help="do not run the failure-pattern detectors (P1-P4, bulk exports, API volume) after the scan")
    scan.add_argument("-q", "--quiet", action="store_true", help="print no summary (errors still go to stderr)")
    scan.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


# Further subcommands, one module each: ``register(sub)`` adds its parser and sets
# ``func=run``, where ``run(args, argv) -> int``. Importing them must stay cheap (heavy imports
# go inside ``run``): every ``leakwatch`` invocation builds the whole parser.
COMMAND_MODULES = (
    "leakwatch.commands.pull",
    "leakwatch.commands.export",
    "leakwatch.commands.flows",
    "leakwatch.commands.incidents",
    "leakwatch.commands.watch",
    "leakwatch.commands.notify",
    "leakwatch.commands.drill",
    "leakwatch.commands.llm",
    "leakwatch.commands.tui",
)


def _missing_table(e: BaseException) -> str | None:
    """The name of a leakwatch table a DuckDB error says does not exist, else None."""
    if type(e).__name__ != "CatalogException" or not type(e).__module__.startswith(("duckdb", "_duckdb")):
        return None
    import re

    from leakwatch.store.migrations import TABLES

    m = re.search(r"Table with name (\w+) does not exist", str(e))
    return m.group(1) if m and m.group(1) in TABLES else None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    os.umask(0o077)  # everything leakwatch writes (database, WAL, key, JSONL) is private to the user
    parser = build_parser()
    if not (argv if argv is not None else sys.argv[1:]) and sys.stdin.isatty() and sys.stdout.isatty():
        # A bare `leakwatch` in a terminal opens the console on ./leakwatch.duckdb ($LEAKWATCH_DB).
        argv = ["tui"]
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        print("\n(in a terminal, a bare 'leakwatch' opens the incident console: see 'leakwatch tui --help')")
        return ExitCode.OK
    try:
        if args.command == "scan":
            return cmd_scan(args, argv if argv is not None else sys.argv[1:])
        return args.func(args, argv if argv is not None else sys.argv[1:])
    except UsageError as e:
        print(f"leakwatch: error: {printable(e, lines=True)}", file=sys.stderr)
        return ExitCode.INPUT_ERROR
    except SalesforceAuthError as e:
        print(f"leakwatch: Salesforce: {printable(e, lines=True)}", file=sys.stderr)
        return ExitCode.INPUT_ERROR
    except SalesforceError as e:
        print(f"leakwatch: Salesforce: {printable(e, lines=True)}", file=sys.stderr)
        return ExitCode.REMOTE_ERROR
    except (IncidentError, PlaybookError) as e:
        print(f"leakwatch: {printable(e, lines=True)}", file=sys.stderr)
        return ExitCode.INPUT_ERROR
    except StoreError as e:
        print(f"leakwatch: database error: {printable(e, lines=True)}", file=sys.stderr)
        return ExitCode.STORE_ERROR
    except LeakwatchError as e:
        print(f"leakwatch: error: {printable(e, lines=True)}", file=sys.stderr)
        return ExitCode.INPUT_ERROR
    except KeyboardInterrupt:
        print("leakwatch: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (`leakwatch scan … --jsonl - | head`): stop; what
        # was stored stays stored. Said on stderr, which is still open.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        stored = "; what was found so far is stored" if args.command in ("scan", "pull", "watch") else ""
        with contextlib.suppress(OSError):
            print(f"leakwatch: stopped: the reader of the output went away (broken pipe){stored}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the one place that turns a bug into exit code 70
        import traceback

        if type(e) is RuntimeError and str(e) == "Query interrupted":
            # DuckDB stops a running query at Ctrl-C with this, not with KeyboardInterrupt.
            print("leakwatch: interrupted", file=sys.stderr)
            return ExitCode.INTERRUPTED
        missing = _missing_table(e)
        if missing is not None:
            # A table leakwatch's migrations made is gone: the file was altered behind its back.
            # (Any other catalog error is a bug, and says so below.)
            print(f"leakwatch: database error: its table {missing} is missing (the database was altered or "
                  f"damaged; keep a copy as evidence)", file=sys.stderr)
            return ExitCode.STORE_ERROR

        traceback.print_exc()
        print("leakwatch: internal error (a bug): please report it with the traceback above", file=sys.stderr)
        return ExitCode.INTERNAL_ERROR
    return ExitCode.OK


def cmd_scan(args: argparse.Namespace, argv: list[str]) -> int:
    """``leakwatch scan``: see ``leakwatch scan --help``."""
    from rich.console import Console

    from leakwatch.pipeline import scan_paths
    from leakwatch.report import print_summary

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    from leakwatch.config import load_config

    config = load_config(args.config)
    opts = dict(config=config, fmt=args.fmt, ner=args.ner, run_patterns=not args.no_patterns)
    jsonl_out = None
    close_jsonl = False
    if args.jsonl == "-":
        jsonl_out = sys.stdout
    elif args.jsonl:
        _refuse_to_overwrite(args.jsonl, args.db, args.paths)
        try:
            jsonl_out = open(args.jsonl, "w", encoding="utf-8")
            # An existing regular file keeps its mode on open; findings are private. Devices
            # and pipes (/dev/stdout, a FIFO) are left alone.
            if stat.S_ISREG(os.fstat(jsonl_out.fileno()).st_mode):
                os.fchmod(jsonl_out.fileno(), 0o600)
        except OSError as e:
            raise UsageError(f"cannot write --jsonl file {args.jsonl}: {e.strerror}") from e
        close_jsonl = True
    # The summary goes to stdout unless stdout carries the JSON lines.
    out = Console(stderr=args.jsonl == "-", highlight=False)
    err = Console(stderr=True, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        # Redirected to a file or a CI log: Rich's 80 columns would cut counts ("400,0…") and
        # paths; nothing there needs the summary to fit a screen.
        out.width = 400
    show_progress = err.is_terminal and not args.no_progress and not args.quiet
    try:
        if show_progress:
            from rich.markup import escape
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

            with Progress(TextColumn("[bold]scanning"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          TimeRemainingColumn(), TextColumn("{task.description}"), console=err, transient=True) as bar:
                task = bar.add_task("", total=None)

                def progress(done: int, total: int, path: str) -> None:
                    bar.update(task, completed=done, total=total, description=escape(os.path.basename(path)))

                summary = scan_paths(args.paths, args.db, workers=args.workers, rules_dirs=args.rules,
                                     store_raw=args.store_raw, jsonl=jsonl_out, fail_on=args.fail_on,
                                     progress=progress, argv=["leakwatch", *argv], rescan=args.rescan, **opts)
        else:
            summary = scan_paths(args.paths, args.db, workers=args.workers, rules_dirs=args.rules,
                                 store_raw=args.store_raw, jsonl=jsonl_out, fail_on=args.fail_on,
                                 argv=["leakwatch", *argv], rescan=args.rescan, **opts)
    finally:
        if close_jsonl:
            jsonl_out.close()
    # One line per problem, never wrapped at the terminal width: logs get grepped for file names.
    for e in summary.rule_errors:
        err.print(f"leakwatch: rule error: {printable(e, lines=True)}", markup=False, emoji=False, soft_wrap=True)
    for p in summary.problems:
        err.print(f"leakwatch: input error: {printable(p)}", markup=False, emoji=False, soft_wrap=True)
    for note in summary.notes:
        err.print(f"leakwatch: note: {printable(note, lines=True)}", markup=False, emoji=False, soft_wrap=True)
    if not args.quiet:
        print_summary(summary, out, fail_on=args.fail_on)
    if summary.interrupted:
        done = sum(1 for f in summary.files if f.status in ("ok", "unchanged"))
        err.print(f"leakwatch: interrupted: {done} file(s) finished, the file being read is marked 'error', "
                  "files after it were not scanned; what was found is stored. Run the same command again to "
                  "finish (unchanged files are skipped).", markup=False, emoji=False, soft_wrap=True)
        return ExitCode.INTERRUPTED
    if summary.input_errors:
        return ExitCode.INPUT_ERROR
    if summary.findings_at_or_above:
        return ExitCode.FINDINGS
    return ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
