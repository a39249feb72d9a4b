"""What the finding detail screen draws, as Rich renderables built from
:func:`leakwatch.tui.data.finding_detail` (no Textual widgets here, so it is easy to test).

The database keeps no record text, only where each value was (file, line, byte span) and its
masked preview. "The masked record" is therefore rebuilt from every finding of the same log
record: each value's place and masked form, in byte order, the one being looked at highlighted.
The log file itself is not read: its line holds the raw values, and a detector cannot promise
that it found every one of them (an undetected name would be printed as is).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from leakwatch.errors import printable
from leakwatch.tui.widgets.styles import semantic, severity_style

#: Width of the confidence bar, in cells (one cell = 5 points of confidence).
BAR = 20


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _kv(rows: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    for k, v in rows:
        grid.add_row(k, v if isinstance(v, Text) else Text("—" if v is None or v == "" else printable(v)))
    return grid


def title_text(d: Mapping[str, Any], theme: Mapping[str, str] | None = None) -> Text:
    """``Finding #12  EMAIL_ADDRESS  medium  rule email``."""
    return Text.assemble(
        (f"Finding #{d['finding_id']}  ", "bold"), (d["entity"], "bold"), "  ",
        (d["severity"], severity_style(d["severity"], theme)), "  rule ", (d["rule_id"], "bold"))


def display_path(source_path: str, db_path: str | os.PathLike | None = None) -> str:
    """``source_path`` relative to the database's folder when it lies under it (a scan of
    ``logs/`` next to ``leakwatch.duckdb`` reads ``logs/app.jsonl``), else as stored."""
    if db_path is not None and os.path.isabs(source_path):
        base = Path(db_path).resolve().parent
        try:
            return Path(source_path).relative_to(base).as_posix()
        except ValueError:
            pass
    return source_path


def record_view(d: Mapping[str, Any], fmt_time: Callable[[datetime | None], str],
                theme: Mapping[str, str] | None = None, db_path: str | os.PathLike | None = None) -> RenderableType:
    """Where the record is, and its findings in byte order with this one highlighted."""
    sem = semantic(theme)
    where = Text.assemble(
        (printable(PurePath(d["source_path"]).name), "bold"), f"  line {d['line']:,}  ·  bytes {d['start_byte']:,}–{d['end_byte']:,}",
        f"  ·  {d['format'] or 'unknown format'}  ·  {fmt_time(d['ts']) if d['ts'] else 'no record time'}")
    path = Text(printable(display_path(str(d["source_path"]), db_path)), style="dim")
    table = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
    table.add_column("", width=1, no_wrap=True)
    table.add_column("bytes", no_wrap=True, style="dim")
    table.add_column("field", ratio=2, overflow="ellipsis", no_wrap=True)
    table.add_column("masked value", ratio=2, overflow="ellipsis", no_wrap=True)
    table.add_column("entity", ratio=1, overflow="ellipsis", no_wrap=True)
    for r in d["record"]:
        me = r["finding_id"] == d["finding_id"]
        style = "reverse bold" if me else ""
        table.add_row(Text("▶" if me else " ", style="bold"), f"{r['start_byte']}–{r['end_byte']}",
                      Text(printable(r["field_path"] or "—"), style=style), Text(printable(r["masked"] or ""), style=style or "bold"),
                      Text(r["entity"], style=style or severity_style(r["severity"], theme)))
    n = len(d["record"])
    note = Text(f"{n} value{'s' if n != 1 else ''} found in this record, shown masked; the log line itself is "
                "not shown: it holds the raw values.", style=sem["muted"])
    return Group(where, path, table, note)


def confidence_text(d: Mapping[str, Any]) -> Text:
    """``0.95 = base 0.75 + validator +0.20 + context +0.00`` and a bar."""
    conf = d["confidence"] or 0.0
    base, val, ctx = (d["score_base"] or 0.0), (d["score_validator"] or 0.0), (d["score_context"] or 0.0)
    filled = round(conf * BAR)
    t = Text.assemble((f"{conf:.2f}", "bold"), f" = base {base:.2f} + validator {val:+.2f} + context {ctx:+.2f}")
    if abs(base + val + ctx - conf) > 1e-9:
        t.append(" (capped to 0–1)", style="dim")
    t.append("\n")
    t.append("█" * filled, style="bold")
    t.append("░" * (BAR - filled), style="dim")
    t.append(f" {conf:.0%}")
    return t


def detection_view(d: Mapping[str, Any], theme: Mapping[str, str] | None = None) -> RenderableType:
    """Rule, entity, detector, confidence and how it was computed, field, how often the value recurs."""
    return _kv([
        ("rule", d["rule_id"]),
        ("entity", d["entity"]),
        ("severity", Text(d["severity"], style=severity_style(d["severity"], theme))),
        ("detector", d["detector"]),
        ("confidence", confidence_text(d)),
        ("field", Text.assemble(d["field_path"] or "—", (f"  ({d['field']})" if d["field"] else "", "dim"))),
        ("prompt role", d["prompt_role"]),
        # The keyed hash itself differs per database (and snapshot); how often the value
        # recurs is what helps triage.
        ("same value", _plural(d["same_value_findings"], "finding") + " in " + _plural(d["same_value_records"], "record")),
    ])


def salesforce_view(d: Mapping[str, Any]) -> RenderableType:
    """Salesforce object, field and the record id (masked) found in the same record."""
    return _kv([
        ("object", d["sf_object"]),
        ("field", d["sf_field"]),
        ("record id", Text(d["record_id"], style="bold") if d["record_id"] else None),
    ])


def residency_text(violation: bool | None, theme: Mapping[str, str] | None = None) -> Text:
    """``VIOLATION`` (alarm colours), ``ok`` or ``unknown``."""
    sem = semantic(theme)
    if violation:
        return Text(" VIOLATION ", style=sem["alarm"])
    return Text("ok", style=sem["good"]) if violation is False else Text("unknown", style=sem["muted"])


def destination_view(d: Mapping[str, Any], theme: Mapping[str, str] | None = None) -> RenderableType:
    """Vendor, host, region, jurisdiction and residency of the record's outbound call."""
    if not (d["dest_vendor"] or d["dest_host"]):
        return Text("The record went to no AI endpoint known to the registry.", style="dim")
    return _kv([
        ("vendor", d["dest_vendor"]),
        ("host", d["dest_host"]),
        ("region", d["dest_region"]),
        ("jurisdiction", d["dest_jurisdiction"]),
        ("residency", residency_text(d["residency_violation"], theme)),
    ])


def incident_view(d: Mapping[str, Any]) -> RenderableType:
    """The incident the finding belongs to, and the key that opens it."""
    if d["incident_id"] is None:
        return Text("In no incident yet (leakwatch incidents group).", style="dim")
    return Text.assemble((f"#{d['incident_id']} ", "bold"), d["incident_title"] or "", "  ",
                         (d["incident_status"] or "", "italic"), "\n", ("g", "bold"), " opens it")
