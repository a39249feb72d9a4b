"""Human-readable scan summaries (rich tables). Masked data only: nothing here sees raw values."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leakwatch.errors import printable
from leakwatch.pipeline import ScanSummary
from leakwatch.store.db import storable_path

MAX_ALERTS_SHOWN = 10
_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def _text(value: object) -> str:
    """A value from the evidence (a file name, a host in an alert) as inert table text: no Rich
    markup, no terminal control sequences."""
    return escape(printable(value))


def print_summary(summary: ScanSummary, console: Console, *, fail_on: str = "medium") -> None:
    """Per-entity and per-file tables, then one line with totals and throughput."""
    if summary.by_entity:
        t = Table(title="Findings by entity", title_justify="left")
        t.add_column("entity")
        t.add_column("severity")
        t.add_column("findings", justify="right")
        t.add_column("distinct values", justify="right")
        for row in summary.by_entity:
            sev = row["severity"]
            t.add_row(escape(row["entity"]), f"[{_SEVERITY_STYLE.get(sev, '')}]{sev}[/]", f"{row['findings']:,}",
                      f"{row['distinct_values']:,}")
        console.print(t)
    else:
        console.print("No findings.")
    f = Table(title="Files", title_justify="left")
    f.add_column("file", overflow="fold")
    f.add_column("format")
    f.add_column("status")
    f.add_column("lines", justify="right")
    f.add_column("findings", justify="right")
    f.add_column("events", justify="right")
    f.add_column("unparsed", justify="right")
    f.add_column("MB", justify="right")
    f.add_column("MB/s", justify="right")
    for fr in summary.files:
        rate = fr.bytes / 1e6 / fr.seconds if fr.seconds > 0 else 0.0
        status = fr.status if fr.status == "ok" else f"[yellow]{fr.status}[/]"
        unparsed = f"[yellow]{fr.parse_problems:,}[/]" if fr.parse_problems else "0"
        f.add_row(_text(storable_path(fr.path)), _text(fr.fmt or "-"), status, f"{fr.records:,}", f"{fr.findings:,}",
                  f"{fr.events:,}", unparsed, f"{fr.bytes / 1e6:.1f}", f"{rate:.0f}" if fr.seconds > 0 else "-")
    if summary.files:
        console.print(f)
    # Records that did not parse as their file's format were still scanned as text; say where.
    for fr in summary.files:
        for line, message in fr.parse_samples:
            console.print(f"  {_text(storable_path(fr.path))}:{line}: not {_text(fr.fmt or '?')}: {_text(message)}",
                          style="yellow", soft_wrap=True)
    if summary.alerts:
        # The most severe first, a screenful at most: a big export can raise thousands (one per
        # exposed key); the rest are in the alerts table.
        ranked = sorted(summary.alerts, key=lambda al: -int(al.severity))
        counts: dict[str, int] = {}
        for alert in summary.alerts:
            counts[alert.pattern] = counts.get(alert.pattern, 0) + 1
        a = Table(title="New alerts (failure patterns): " + ", ".join(f"{p} {n:,}" for p, n in sorted(counts.items())),
                  title_justify="left")
        a.add_column("pattern")
        a.add_column("severity")
        a.add_column("summary", overflow="fold")
        for alert in ranked[:MAX_ALERTS_SHOWN]:
            sev = str(alert.severity)
            a.add_row(_text(alert.pattern), f"[{_SEVERITY_STYLE.get(sev, '')}]{sev}[/]", _text(alert.summary))
        console.print(a)
        if len(ranked) > MAX_ALERTS_SHOWN:
            console.print(f"  … and {len(ranked) - MAX_ALERTS_SHOWN:,} more in the database's alerts table")
    verdict = (
        f"[bold red]{summary.findings_at_or_above:,} at or above {fail_on}[/]"
        if summary.findings_at_or_above else f"none at or above {fail_on}"
    )
    console.print(
        f"scan {summary.scan_id}: {len(summary.files)} files, {summary.records:,} lines, "
        f"{summary.bytes / 1e6:.1f} MB in {summary.seconds:.2f} s ({summary.mb_per_s:.0f} MB/s); "
        f"{summary.total_findings:,} findings ({summary.new_findings:,} new), {verdict}; "
        f"{summary.input_errors} input problem(s); database {_text(summary.db_path)}"
    )
