"""``leakwatch incidents | clocks | playbook | notice | audit``: incidents, their regulatory
clocks, playbooks, notice drafts and the audit trail, from the command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

DB_HELP = "DuckDB file written by 'leakwatch scan' (default: ./leakwatch.duckdb or $LEAKWATCH_DB)"

COMMON_EPILOG = """\
    who and when:
      Every change is recorded in the audit trail with who made it: --as NAME, else
      $LEAKWATCH_USER, else your login name. Times print in UTC and in your zone (--tz, else the
      config's organisation.timezone, else the machine's). Times you type are ISO 8601
      (2026-03-11T09:30, …Z, …+01:00); without a zone they are UTC.

    exit codes:
      0  done             2  usage error, no such incident, or a change that is not allowed
      3  the database could not be opened or written (nothing was changed)
"""

INCIDENTS_EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch incidents group                      put new findings and alerts into incidents
      leakwatch incidents                            list open incidents
      leakwatch incidents show 3                     facts, clocks, steps and audit of incident 3
      leakwatch incidents ack 3                      detected -> triaged
      leakwatch incidents set-awareness 3 2026-03-11T09:30Z --reason "DPO confirmed the leak"
      leakwatch incidents set-clock 3 classification 2026-03-11T11:00Z --reason "major (DORA)"
      leakwatch incidents fact 3 likely_consequences "phishing of affected customers"
      leakwatch incidents open --title "Prompt leak" --finding 12,13 --alert 4
      leakwatch incidents merge 3 5 7                move incidents 5 and 7 into 3
      leakwatch incidents split 3 --where dest_vendor=Anthropic --title "Anthropic part"
      leakwatch incidents status 3 contained --reason "key rotated, gateway rule deployed"
      leakwatch incidents notice-sent 3 --regime gdpr-33 --reference CNIL-2026-0042

    statuses:
      detected -> triaged -> contained -> notified -> closed (forward only; a closed incident can
      be reopened to triaged with --reason). Awareness defaults to the first detection; set it
      when the organisation actually became aware (not before the first finding, not in the
      future). Back-dating it so that a deadline is already past needs --accept-overdue.

    facts:
      Responder facts feed the regimes and notices: likely_consequences, measures, significant
      (true/false, NIS2), material (SEC), cross_border, suspected_malicious, delay_reasons,
      subject_jurisdictions (JSON list), subjects.US-CA (a count), contact_point, … Values are
      checked with the detection rules: raw personal data or secrets are refused.
    """
) + COMMON_EPILOG


def _add_common(p: argparse.ArgumentParser, *, config: bool = True, sub: bool = False) -> None:
    """The options every incident command takes. On an action's subparser (``sub``) they default
    to "not given", so that ``leakwatch incidents --db X list`` keeps the X given before the action."""
    def d(value):
        return argparse.SUPPRESS if sub else value

    p.add_argument("--db", default=d(os.environ.get("LEAKWATCH_DB", "leakwatch.duckdb")), metavar="FILE", help=DB_HELP)
    if config:
        p.add_argument("--config", metavar="FILE", default=d(None),
                       help="settings file (TOML; default: $LEAKWATCH_CONFIG or ./leakwatch.toml if present)")
    p.add_argument("--as", dest="actor", metavar="NAME", default=d(None),
                   help="who is acting, for the audit trail (default: $LEAKWATCH_USER or your login)")
    p.add_argument("--tz", metavar="ZONE", default=d(None), help="time zone to show times in besides UTC (IANA name, e.g. Europe/Berlin)")
    p.add_argument("--json", action="store_true", default=d(False), help="print JSON instead of tables")
    p.add_argument("--regimes", metavar="FILE", default=d(None),
                   help="regimes file (default: the shipped playbooks/regimes.yaml)")


def register(sub) -> None:
    """Add ``incidents``, ``clocks``, ``playbook``, ``notice`` and ``audit`` to the CLI."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("incidents", help="group findings into incidents; list, show, open, merge, split, acknowledge them",
                       description="Incidents: findings and alerts grouped by destination vendor, failure pattern "
                       "and time window, with status, severity, awareness time and the audit trail.",
                       epilog=INCIDENTS_EPILOG, formatter_class=fmt)
    isub = p.add_subparsers(dest="action", metavar="ACTION")
    p.set_defaults(func=run_incidents, action=None)
    _add_common(p)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        a = isub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", formatter_class=fmt,
                            epilog=textwrap.dedent(COMMON_EPILOG))
        _add_common(a, sub=True)
        return a

    a = action("list", "list incidents (open ones unless --all)")
    a.add_argument("--all", action="store_true", help="also closed and merged incidents")
    a.add_argument("--status", choices=("detected", "triaged", "contained", "notified", "closed"), help="only this status")
    a = action("group", "put findings and alerts that are in no incident yet into incidents")
    a = action("show", "show one incident: facts, clocks, playbook steps, recent audit rows")
    a.add_argument("id", type=int, metavar="ID")
    a = action("open", "open an incident by hand from findings, alerts or a whole scan")
    a.add_argument("--title", required=True)
    a.add_argument("--finding", action="append", default=[], metavar="IDS", help="finding ids, comma-separated (repeatable)")
    a.add_argument("--alert", action="append", default=[], metavar="IDS", help="alert ids, comma-separated (repeatable)")
    a.add_argument("--scan", type=int, metavar="ID", help="every finding first stored by this scan")
    a.add_argument("--aware-at", metavar="TIME", help="when the organisation became aware (default: first detection)")
    a.add_argument("--reason", help="why (recorded in the audit trail)")
    a.add_argument("--accept-overdue", action="store_true", help="allow an awareness time that puts a deadline in the past")
    a = action("merge", "merge incidents into the first one (the others are closed as merged)")
    a.add_argument("target", type=int, metavar="TARGET")
    a.add_argument("sources", type=int, nargs="+", metavar="ID")
    a.add_argument("--reason")
    a.add_argument("--accept-overdue", action="store_true",
                   help="merge even though the earliest awareness of the merged incidents puts deadlines in the past")
    a = action("split", "move some findings of an incident into a new incident")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("--title", default="")
    a.add_argument("--finding", action="append", default=[], metavar="IDS", help="finding ids to move, comma-separated")
    a.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                   help="move findings with this value: dest_vendor, dest_region, entity, source_path, format, rule_id")
    a.add_argument("--reason")
    a = action("ack", "acknowledge an incident (detected -> triaged)")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("--reason")
    a = action("status", "move an incident to another status")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("status", choices=("detected", "triaged", "contained", "notified", "closed"))
    a.add_argument("--reason")
    a = action("set-awareness", "set when the organisation became aware (moves every awareness-based deadline)")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("time", metavar="TIME")
    a.add_argument("--reason", required=True, help="how the time was established (the regulator may ask)")
    a.add_argument("--accept-overdue", action="store_true", help="allow a time that puts a deadline in the past")
    a = action("set-clock", "set another clock event: classification, materiality, suspicion, assessment")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("event", choices=("awareness", "classification", "materiality", "suspicion", "assessment"))
    a.add_argument("time", metavar="TIME")
    a.add_argument("--reason", required=True)
    a.add_argument("--accept-overdue", action="store_true", help="allow a time that puts a deadline in the past")
    a = action("fact", "record a responder fact used by regimes and notices (value: text, number, true/false or JSON)")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("key", metavar="KEY")
    a.add_argument("value", metavar="VALUE")
    a = action("notice-sent", "record that a notice went out (meets the regime's deadline)")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("--regime", required=True)
    a.add_argument("--deadline", metavar="DEADLINE_ID", help="which deadline of the regime it meets (default: the regime)")
    a.add_argument("--kind", default="", help="notice kind (default: the regime id)")
    a.add_argument("--at", metavar="TIME", help="when it was sent (default: now)")
    a.add_argument("--reference", help="the authority's case number, a ticket, …")

    c = sub.add_parser("clocks", help="which notification regimes apply to an incident, why, and every deadline",
                       description="Regimes that apply to an incident (GDPR, NIS2, DORA, …), why, and each deadline "
                       "as an absolute time in UTC and your zone with the time left.",
                       epilog=textwrap.dedent("""\
                           examples:
                             leakwatch clocks 3
                             leakwatch clocks 3 --all          also regimes that do not apply, and why not
                             leakwatch clocks 3 --json
                       """) + textwrap.dedent(COMMON_EPILOG), formatter_class=fmt)
    c.add_argument("id", type=int, metavar="ID")
    c.add_argument("--all", action="store_true", help="also list regimes that do not apply")
    _add_common(c)
    c.set_defaults(func=run_clocks)

    pb = sub.add_parser("playbook", help="step through an incident's playbook(s)",
                        description="Show an incident's playbook steps with due times, or change a step's state.",
                        epilog=textwrap.dedent("""\
                            examples:
                              leakwatch playbook 3                                   steps, states, due times
                              leakwatch playbook 3 --step rotate-key --start
                              leakwatch playbook 3 --step rotate-key --done --evidence "rotation timestamp=2026-03-11T10:02Z"
                              leakwatch playbook 3 --step notify-cnil --skip "not a personal data breach"
                        """) + textwrap.dedent(COMMON_EPILOG), formatter_class=fmt)
    pb.add_argument("id", type=int, metavar="ID")
    pb.add_argument("--playbook", metavar="PLAYBOOK_ID", help="which playbook (default: the only one that applies)")
    pb.add_argument("--step", metavar="STEP_ID")
    g = pb.add_mutually_exclusive_group()
    g.add_argument("--start", action="store_true", help="mark the step in progress")
    g.add_argument("--done", action="store_true", help="mark the step done (give each required --evidence)")
    g.add_argument("--skip", metavar="REASON", help="skip the step, saying why")
    g.add_argument("--reopen", metavar="REASON", help="reopen a done or skipped step (back to pending), saying why")
    pb.add_argument("--evidence", action="append", default=[], metavar="ITEM=VALUE", help="evidence for --done (repeatable)")
    pb.add_argument("--dir", metavar="DIR", help="playbooks directory (default: the shipped playbooks/)")
    _add_common(pb)
    pb.set_defaults(func=run_playbook)

    n = sub.add_parser("notice", help="draft a regulator notice or data-subject letter from incident facts",
                       description="Render a notice draft from the incident's facts only (counts, categories, masked "
                       "values): GDPR Art. 33 and 34, NIS2 early warning / notification / final report, or a generic "
                       "notice for any other regime. Facts that are still unknown are listed, never invented.",
                       epilog=textwrap.dedent("""\
                           examples:
                             leakwatch notice 3 --regime gdpr-33
                             leakwatch notice 3 --regime gdpr-34 --format txt --out letter.txt
                             leakwatch notice 3 --regime nis2 --kind nis2-early-warning --format json
                       """) + textwrap.dedent(COMMON_EPILOG), formatter_class=fmt)
    n.add_argument("id", type=int, metavar="ID")
    n.add_argument("--regime", required=True, metavar="REGIME_ID")
    n.add_argument("--kind", metavar="KIND", help="notice kind when a regime has several (default: from the regime)")
    n.add_argument("--format", default="md", choices=("md", "txt", "json"))
    n.add_argument("--out", default="-", metavar="FILE", help="file to write (mode 0600); '-' for stdout")
    n.add_argument("--templates", metavar="DIR", help="templates directory (default: playbooks/templates)")
    _add_common(n)
    n.set_defaults(func=run_notice)

    au = sub.add_parser("audit", help="verify or list the tamper-evident audit trail",
                        description="The audit trail: one HMAC-chained row per change to an incident.",
                        epilog=textwrap.dedent("""\
                            examples:
                              leakwatch audit verify          exit 0 when the chain is intact, 5 when it is not
                              leakwatch audit list --incident 3
                        """) + textwrap.dedent(COMMON_EPILOG).replace(
                            "\n  3  the database", "\n  5  audit verify: the chain is broken (rows edited or removed)\n"
                            "  3  the database"), formatter_class=fmt)
    ausub = au.add_subparsers(dest="action", metavar="ACTION")
    au.set_defaults(func=run_audit, action=None)
    for name, help_ in (("verify", "recompute the chain and report every break"), ("list", "print audit rows")):
        a = ausub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        _add_common(a, config=False, sub=True)
        if name == "list":
            a.add_argument("--incident", type=int, metavar="ID")
            a.add_argument("--limit", type=_limit, default=200, metavar="N", help="rows to list, 1 to 1,000,000 "
                                                                                   "(default 200)")
    _add_common(au, config=False)


# --- helpers ----------------------------------------------------------------------------------


def _zone(args, config=None):
    from leakwatch.config import check_timezone

    name = args.tz or (config.organisation.timezone if config is not None else "")
    if name:
        return check_timezone(name, "--tz" if args.tz else "organisation.timezone")
    return datetime.now().astimezone().tzinfo


def fmt_time(t: datetime | None, zone) -> str:
    """``2026-03-11 09:30 UTC (10:30 CET)``."""
    if t is None:
        return "—"
    u = t.astimezone(UTC)
    local = t.astimezone(zone)
    text = u.strftime("%Y-%m-%d %H:%M UTC")
    if local.utcoffset() != timedelta(0) or str(zone) not in ("UTC", "Etc/UTC"):
        same_day = local.date() == u.date()
        text += f" ({local.strftime('%H:%M' if same_day else '%Y-%m-%d %H:%M')} {local.tzname()})"
    return text


def fmt_left(due: datetime | None, now: datetime) -> str:
    """``71 h 12 min left`` / ``OVERDUE by 3 h 5 min``."""
    if due is None:
        return ""
    delta = due - now
    secs = abs(int(delta.total_seconds()))
    d, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    span = (f"{d} d " if d else "") + f"{h} h {m:02d} min"
    return f"{span} left" if delta.total_seconds() >= 0 else f"OVERDUE by {span}"


def _parse_time(text: str, what: str) -> datetime:
    from leakwatch.errors import UsageError

    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00") if text.strip().endswith("Z") else text.strip())
    except ValueError:
        raise UsageError(f"{what} {text!r}: not an ISO 8601 time (e.g. 2026-03-11T09:30Z or 2026-03-11T10:30+01:00)") from None
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    try:
        in_utc = when.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or in_utc.year < 1970:
        # Year 1 with an offset is not a time in UTC at all; anything before 1970 is a typo.
        raise UsageError(f"{what} {text!r}: out of range (a time from 1970 on)")
    return when


def _ids(values: list[str], what: str) -> list[int]:
    from leakwatch.errors import UsageError

    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                raise UsageError(f"{what}: {part!r} is not an id")
            out.append(int(part))
    return out


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{n} is not between 1 and 1,000,000")
    return n


def _open_store(args, *, write: bool):
    from pathlib import Path

    from leakwatch.errors import UsageError
    from leakwatch.store import Store

    db = Path(args.db)
    if not db.is_file():
        raise UsageError(f"{db}: no such database; run 'leakwatch scan --db {db} …' first, or point --db at one")
    return Store.open(db, read_only=not write)


def _config(args):
    from leakwatch.config import load_config

    return load_config(getattr(args, "config", None))


def _regimes(args=None):
    from pathlib import Path

    from leakwatch.incidents.regimes import load_regimes

    path = getattr(args, "regimes", None) if args is not None else None
    return load_regimes(Path(path) if path else None)


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _dump(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o), ensure_ascii=False))


def _notify_hook(config, store, *, regimes=None, playbooks=None):
    from leakwatch.notify.triggers import hook_for

    return hook_for(config, store, regimes=regimes, playbooks=playbooks)


def _warn_open_deadlines(store, incident_id: int, config, regimes, now: datetime) -> None:
    """After closing: the legal deadlines of applicable regimes that were neither met nor have no
    fixed time. Closing is allowed (a false positive is closed with its reason), but nobody
    should close an incident believing its notices went out."""
    from leakwatch.incidents import book
    from leakwatch.incidents.clocks import incident_clocks

    facts = book.build_facts(store.con, incident_id, config, regimes)
    open_ = [f"{c.regime.id} {d.id} ({d.status})" for c in incident_clocks(facts, regimes, now, only_applicable=True)
             if c.applies for d in c.deadlines if d.status in ("pending", "overdue", "waiting")]
    if open_:
        print(f"leakwatch: note: incident {incident_id} was closed with deadlines not met: {', '.join(open_)}. "
              "If notices went out, record them (incidents notice-sent); to reopen: incidents status "
              f"{incident_id} triaged --reason …", file=sys.stderr)


def _overdue_check(config, regimes, now: datetime, accept: bool):
    from leakwatch.incidents.clocks import overdue_check

    return overdue_check(config, regimes, now, accept)


# --- incidents --------------------------------------------------------------------------------


def run_incidents(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch incidents``; see ``leakwatch incidents --help``."""
    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.incidents import book
    from leakwatch.incidents.audit import current_actor

    action = args.action or "list"
    config = _config(args)
    zone = _zone(args, config)
    actor = current_actor(args.actor)
    now = datetime.now(UTC)
    read_only = action in ("list", "show")
    with _open_store(args, write=not read_only) as store:
        if action == "list":
            rows = book.list_incidents(store.con, status=getattr(args, "status", None),
                                       include_closed=getattr(args, "all", False))
            if args.json:
                _dump(rows)
            else:
                _print_list(rows, zone)
        elif action == "group":
            res = book.group(store, config, now=now, actor=actor, notify=_notify_hook(config, store, regimes=_regimes(args)))
            if args.json:
                _dump(res.__dict__)
            else:
                print(f"{len(res.opened)} incident(s) opened, {len(res.grown)} grown; "
                      f"{res.findings:,} finding(s) and {res.alerts:,} alert(s) grouped")
                if res.opened:
                    _print_list([r for r in book.list_incidents(store.con) if r["incident_id"] in res.opened], zone)
        elif action == "show":
            _show(store, args.id, config, zone, now, as_json=args.json, regimes=_regimes(args))
        elif action == "open":
            fids = _ids(args.finding, "--finding")
            if args.scan is not None:
                fids += [r[0] for r in store.con.execute(
                    "SELECT finding_id FROM findings WHERE scan_id = ?", [args.scan]).fetchall()]
            aware = _parse_time(args.aware_at, "--aware-at") if args.aware_at else None
            iid = book.open_incident(store, title=args.title, finding_ids=fids, alert_ids=_ids(args.alert, "--alert"),
                                     aware_at=aware, reason=args.reason, actor=actor, now=now,
                                     check=_overdue_check(config, _regimes(args), now, args.accept_overdue),
                                     notify=_notify_hook(config, store, regimes=_regimes(args)))
            print(f"opened incident {iid}")
        elif action == "merge":
            book.merge(store, args.target, args.sources, actor=actor, reason=args.reason, now=now,
                       check=_overdue_check(config, _regimes(args), now, args.accept_overdue))
            print(f"merged {', '.join(map(str, args.sources))} into incident {args.target}")
        elif action == "split":
            where = {}
            for w in args.where:
                if "=" not in w:
                    raise UsageError(f"--where {w!r}: write FIELD=VALUE")
                k, v = w.split("=", 1)
                where[k.strip()] = v.strip()
            new = book.split(store, args.id, title=args.title, finding_ids=_ids(args.finding, "--finding"), where=where,
                             actor=actor, reason=args.reason, now=now, notify=_notify_hook(config, store, regimes=_regimes(args)))
            print(f"split {args.id}: new incident {new}")
        elif action == "ack":
            book.acknowledge(store, args.id, actor=actor, reason=args.reason, now=now)
            print(f"incident {args.id} acknowledged (triaged) by {actor}")
        elif action == "status":
            book.set_status(store, args.id, args.status, actor=actor, reason=args.reason, now=now)
            print(f"incident {args.id} is now {args.status}")
            if args.status == "closed":
                _warn_open_deadlines(store, args.id, config, _regimes(args), now)
        elif action in ("set-awareness", "set-clock"):
            event = "awareness" if action == "set-awareness" else args.event
            at = _parse_time(args.time, "TIME")
            regimes = _regimes(args)
            old = book.set_clock(store, args.id, event, at, actor=actor, reason=args.reason, now=now,
                                 check=_overdue_check(config, regimes, now, args.accept_overdue))
            print(f"incident {args.id}: {event} {fmt_time(old, zone) if old else 'unset'} -> {fmt_time(at, zone)}")
        elif action == "fact":
            from leakwatch.incidents.notices import RESPONDER_FACTS

            book.set_fact(store, args.id, args.key, _fact_value(args.value), actor=actor, now=now)
            print(f"incident {args.id}: {args.key} recorded")
            if args.key not in RESPONDER_FACTS and not args.key.startswith("subjects.") and args.key not in REGIME_FACTS:
                import difflib

                hint = difflib.get_close_matches(args.key, [*RESPONDER_FACTS, *REGIME_FACTS], n=1)
                print(f"leakwatch: note: no notice or regime reads a fact called {args.key!r}"
                      + (f" (did you mean {hint[0]!r}?)" if hint else ""), file=sys.stderr)
        elif action == "notice-sent":
            at = _parse_time(args.at, "--at") if args.at else now
            regimes = _regimes(args)
            regime = regimes.get(args.regime)  # unknown regime → error listing the valid ones
            if args.deadline is not None:
                ids = [d.id for d in regime.deadlines]
                if args.deadline not in ids:
                    raise UsageError(f"--deadline {args.deadline!r}: {args.regime} has no such deadline "
                                     f"(its deadlines: {', '.join(ids)})")
            nid = book.record_notice(store, args.id, args.regime, args.kind or args.regime, sent_at=at, actor=actor,
                                     deadline_id=args.deadline, reference=args.reference, now=now)
            print(f"incident {args.id}: notice {nid} for {args.regime} recorded as sent {fmt_time(at, zone)}")
        else:  # pragma: no cover - argparse restricts the choices
            raise UsageError(f"unknown action {action}")
    return ExitCode.OK


#: Facts the shipped regimes' conditions read (playbooks/regimes.yaml `responder:` conditions).
REGIME_FACTS = ("significant", "material", "high_risk", "significant_harm", "real_risk_of_significant_harm",
                "subject_jurisdictions", "cross_border", "suspected_malicious", "classification", "major")


def _fact_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if text.strip().lstrip("-").isdigit():
        return int(text.strip())
    if text.strip()[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _print_list(rows: list[dict], zone) -> None:
    from rich.table import Table

    if not rows:
        print("no incidents to list (closed ones show with --all; 'leakwatch incidents group' after a scan "
              "opens new ones)")
        return
    t = Table(title=f"{len(rows)} incident(s)")
    for col in ("id", "severity", "status", "title", "findings", "alerts", "aware"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(str(r["incident_id"]), r["severity"], r["status"] + (f" → {r['merged_into']}" if r["merged_into"] else ""),
                  r["title"], f"{r['n_findings']:,}", f"{r['n_alerts']:,}", fmt_time(r["aware_at"], zone))
    _console().print(t)


def _show(store, incident_id: int, config, zone, now: datetime, *, as_json: bool, regimes) -> None:
    from rich.table import Table

    from leakwatch.incidents import audit, book

    facts = book.build_facts(store.con, incident_id, config, regimes)
    inc = book.get(store.con, incident_id)
    rows = audit.list_rows(store.con, incident_id=incident_id, limit=15)
    if as_json:
        d = {k: v for k, v in facts.__dict__.items() if k != "org"}
        d["destinations"] = [x.__dict__ for x in facts.destinations]
        d["merged_into"] = inc["merged_into"]
        d["audit"] = rows
        _dump(d)
        return
    c = _console()
    c.print(f"[bold]Incident {incident_id}[/bold]: {facts.title}", markup=True)
    c.print(f"severity {facts.severity} · status {facts.status}"
            + (f" (merged into {inc['merged_into']})" if inc["merged_into"] else ""), markup=False)
    c.print(f"aware {fmt_time(facts.awareness, zone)} · detected {fmt_time(facts.clock_events.get('detection'), zone)}"
            f" · logs {fmt_time(facts.first_seen, zone)} .. {fmt_time(facts.last_seen, zone)}", markup=False)
    for e, at in sorted(facts.clock_events.items()):
        if e not in ("awareness", "detection"):
            c.print(f"{e} {fmt_time(at, zone)}", markup=False)
    c.print(f"{facts.findings:,} findings in ~{facts.records:,} records, ~{facts.data_subjects:,} data subjects; "
            f"categories: {', '.join(facts.categories) or '—'}", markup=False)
    c.print(f"entities: {', '.join(facts.entities) or '—'}", markup=False)
    if facts.objects:
        c.print(f"Salesforce: {', '.join(facts.fields or facts.objects)}", markup=False)
    if facts.patterns:
        c.print(f"patterns: {', '.join(facts.patterns)}", markup=False)
    if facts.destinations:
        t = Table(title="destinations")
        for col in ("vendor", "region", "jurisdiction", "residency", "subjects", "records"):
            t.add_column(col)
        for d in facts.destinations:
            t.add_row(d.vendor or "—", d.region or "—", d.jurisdiction or "—", "VIOLATION" if d.residency_violation else "ok",
                      f"{d.data_subjects:,}", f"{d.records:,}")
        c.print(t)
    if facts.masked_examples:
        c.print("examples (masked): " + ", ".join(facts.masked_examples), markup=False)
    if facts.responder:
        c.print("facts: " + "; ".join(f"{k}={v}" for k, v in sorted(facts.responder.items())), markup=False)
    _print_clocks(facts, regimes, now, zone, include_all=False)
    if rows:
        t = Table(title="audit (latest)")
        for col in ("#", "when", "who", "what", "why"):
            t.add_column(col, overflow="fold")
        for r in rows:
            t.add_row(str(r["seq"]), fmt_time(r["at"], zone), r["actor"], r["action"], r["reason"] or "")
        c.print(t)


# --- clocks -----------------------------------------------------------------------------------


def _print_clocks(facts, regimes, now: datetime, zone, *, include_all: bool) -> list:
    from rich.table import Table

    from leakwatch.incidents.clocks import incident_clocks

    clocks = incident_clocks(facts, regimes, now, only_applicable=not include_all)
    c = _console()
    t = Table(title=f"regulatory clocks (now {fmt_time(now, zone)})")
    for col, width in (("regime", 12), ("applies", 9), ("deadline", None), ("due", 22), ("left / state", 14)):
        t.add_column(col, overflow="fold", min_width=width)
    for rc in clocks:
        verdict = {True: "YES", None: "undecided", False: "no"}[rc.applies]
        if not rc.deadlines:
            t.add_row(rc.regime.id, verdict, "", "", "")
            continue
        for i, d in enumerate(rc.deadlines):
            state = fmt_left(d.due, now) if d.status in ("pending", "overdue") else d.status
            t.add_row(rc.regime.id if i == 0 else "", verdict if i == 0 else "", d.label,
                      fmt_time(d.due, zone) if d.due else d.basis, state)
    c.print(t)
    c.print("why:", markup=False)
    for rc in clocks:
        c.print(f"  {rc.regime.id} ({rc.regime.name}): " + "; ".join(rc.reasons), markup=False)
    return clocks


def run_clocks(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch clocks``."""
    from leakwatch.exit_codes import ExitCode
    from leakwatch.incidents import book
    from leakwatch.incidents.clocks import incident_clocks

    config = _config(args)
    zone = _zone(args, config)
    regimes = _regimes(args)
    now = datetime.now(UTC)
    with _open_store(args, write=False) as store:
        facts = book.build_facts(store.con, args.id, config, regimes)
    if args.json:
        out = []
        for rc in incident_clocks(facts, regimes, now, only_applicable=not args.all):
            out.append({"regime": rc.regime.id, "name": rc.regime.name, "recipient": rc.regime.recipient,
                        "applies": rc.applies, "reasons": list(rc.reasons),
                        "deadlines": [{"id": d.id, "label": d.label, "due_utc": d.due, "basis": d.basis, "status": d.status,
                                       "seconds_left": int((d.due - now).total_seconds()) if d.due else None}
                                      for d in rc.deadlines]})
        _dump({"incident": args.id, "now_utc": now, "awareness_utc": facts.awareness, "regimes": out})
        return ExitCode.OK
    c = _console()
    c.print(f"incident {args.id}: {facts.title}", markup=False)
    c.print(f"aware {fmt_time(facts.awareness, zone)}", markup=False)
    _print_clocks(facts, regimes, now, zone, include_all=args.all)
    return ExitCode.OK


# --- playbook ---------------------------------------------------------------------------------


def run_playbook(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch playbook``."""
    from pathlib import Path

    from rich.table import Table

    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.incidents import book
    from leakwatch.incidents.audit import current_actor
    from leakwatch.incidents.clocks import deadline_resolver, incident_clocks
    from leakwatch.incidents.playbooks import (
        check_references,
        check_transition,
        load_playbooks,
        select_playbooks,
        settled_steps,
        step_applies,
        step_due,
    )

    config = _config(args)
    zone = _zone(args, config)
    regimes = _regimes(args)
    now = datetime.now(UTC)
    playbooks = load_playbooks(Path(args.dir) if args.dir else None)
    if not playbooks:
        raise UsageError(f"no playbooks in {args.dir}: a playbook folder holds *.yaml files (see playbooks/README.md)")
    check_references(playbooks, regimes)
    changing = args.start or args.done or args.skip is not None or args.reopen is not None
    if changing and not args.step:
        raise UsageError("--start/--done/--skip/--reopen need --step STEP_ID")
    if args.evidence and not args.done:
        raise UsageError("--evidence goes with --done")
    with _open_store(args, write=changing) as store:
        facts = book.build_facts(store.con, args.id, config, regimes)
        if args.playbook:
            if args.playbook not in playbooks:
                raise UsageError(f"no playbook {args.playbook!r}; there are: {', '.join(sorted(playbooks))}")
            chosen = [playbooks[args.playbook]]
        else:
            chosen = select_playbooks(playbooks, facts)
            if not chosen:
                raise UsageError(f"no playbook applies to incident {args.id} (of: {', '.join(sorted(playbooks))}); "
                                 f"name one with --playbook")
        applies = {rc.regime.id: rc.applies for rc in incident_clocks(facts, regimes, now)}
        resolve = deadline_resolver(facts, regimes, now)
        if changing:
            hits = [(pb, s) for pb in chosen for s in pb.steps if s.id == args.step]
            if not hits:
                steps = ", ".join(s.id for pb in chosen for s in pb.steps)
                raise UsageError(f"no step {args.step!r} in {', '.join(pb.id for pb in chosen)} (steps: {steps})")
            if len(hits) > 1:
                raise UsageError(f"step {args.step!r} is in several playbooks; say which with --playbook")
            pb, step = hits[0]
            new = ("in_progress" if args.start else "done" if args.done else "pending" if args.reopen is not None
                   else "skipped")
            reason = args.skip if args.skip is not None else args.reopen
            evidence = {}
            for e in args.evidence:
                if "=" not in e:
                    raise UsageError(f"--evidence {e!r}: write ITEM=VALUE")
                k, v = e.split("=", 1)
                if k.strip() in evidence:
                    # The audit trail would keep only the last: say which one is meant.
                    raise UsageError(f"--evidence {k.strip()!r} given twice; give each item once")
                evidence[k.strip()] = v.strip()
            unknown = [k for k in evidence if k not in step.evidence]
            if unknown:
                wanted = ", ".join(repr(e) for e in step.evidence) or "none"
                raise UsageError(f"step {step.id} asks for no evidence called {', '.join(map(repr, unknown))} "
                                 f"(it asks for: {wanted})")
            if new not in ("skipped", "pending"):
                done_now = settled_steps(book.step_states(store.con, args.id))
                if step_applies(step, facts, done_now, lambda rid: applies.get(rid)) is False:
                    from leakwatch.errors import IncidentError

                    raise IncidentError(f"step {step.id}: its condition is not met ({step.when}); "
                                        f"finish what it waits for, or --skip it with a reason")

            def check(old: str) -> None:
                try:
                    check_transition(step, old, new, evidence=evidence, reason=reason)
                except ValueError as e:
                    from leakwatch.errors import IncidentError

                    raise IncidentError(f"step {step.id}: {e}") from None

            book.set_step(store, args.id, pb.id, step.id, new, actor=current_actor(args.actor), evidence=evidence,
                          reason=reason, now=now, check=check,
                          notify=_notify_hook(config, store, regimes=regimes, playbooks=playbooks))
            print(f"incident {args.id}: step {step.id} is now {new}")
            facts = book.build_facts(store.con, args.id, config, regimes)
        states = book.step_states(store.con, args.id)
    done = settled_steps(states)
    out = []
    for pb in chosen:
        for s in pb.steps:
            st = states.get((pb.id, s.id))
            due = step_due(s, facts, resolve)
            ok = step_applies(s, facts, done, lambda rid: applies.get(rid))
            out.append({"playbook": pb.id, "step": s.id, "title": s.title, "role": s.role,
                        "state": st["status"] if st else "pending", "applies": ok, "due_utc": due,
                        "evidence": list(s.evidence), "by": st["updated_by"] if st else None,
                        "reason": st["reason"] if st else None})
    if args.json:
        _dump({"incident": args.id, "now_utc": now, "steps": out})
        return ExitCode.OK
    c = _console()
    for pb in chosen:
        t = Table(title=f"{pb.id}: {pb.title} — incident {args.id}")
        for col in ("step", "title", "role", "state", "due", "left"):
            t.add_column(col, overflow="fold")
        for r in out:
            if r["playbook"] != pb.id:
                continue
            state = r["state"] if r["applies"] is not False else f"{r['state']} (condition not met)"
            left = fmt_left(r["due_utc"], now) if r["state"] in ("pending", "in_progress") and r["applies"] is not False else ""
            t.add_row(r["step"], r["title"], r["role"], state, fmt_time(r["due_utc"], zone) if r["due_utc"] else "—", left)
        c.print(t)
    return ExitCode.OK


# --- notice -----------------------------------------------------------------------------------


def run_notice(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch notice``."""
    from pathlib import Path

    from leakwatch.exit_codes import ExitCode
    from leakwatch.incidents import book
    from leakwatch.incidents.notices import default_kind, render_notice
    from leakwatch.incidents.regimes import deadlines

    config = _config(args)
    if getattr(args, "tz", None):
        # --tz shows the draft's times in that zone, as it does for clocks (was ignored).
        import dataclasses

        _zone(args, config)  # refuses a zone that does not exist
        config = dataclasses.replace(config, organisation=dataclasses.replace(config.organisation, timezone=args.tz))
    fmt = "json" if getattr(args, "json", False) else args.format  # --json, as on every other command
    regimes = _regimes(args)
    regime = regimes.get(args.regime)
    now = datetime.now(UTC)
    if args.out != "-":
        from leakwatch.export import check_not_database_files

        check_not_database_files(Path(args.db), [Path(args.out)], "--out")
    with _open_store(args, write=False) as store:
        merged_into = book.get(store.con, args.id).get("merged_into")
        if merged_into is not None:
            # Its findings, clocks and notices are the other incident's now: a draft from what
            # is left here names nobody and nothing (every required item unknown).
            raise book.IncidentError(f"incident {args.id} was merged into {merged_into}; draft the notice for that one")
        facts = book.build_facts(store.con, args.id, config, regimes)
        if args.out != "-":
            _refuse_scanned_file(store, args.out)
    kind = args.kind or default_kind(regime.id)
    _check_kind(kind, regime.id)
    draft = render_notice(facts, kind, fmt=fmt, regime=regime, deadlines=deadlines(regime, facts, now), now=now,
                          templates_dir=Path(args.templates) if args.templates else None)
    _write_out(args.out, draft.text)
    if draft.missing:
        print(f"leakwatch: draft has {len(draft.missing)} unknown required item(s): {', '.join(draft.missing)}; "
              f"its 'Still unknown' section says where each is set ('leakwatch incidents fact {args.id} KEY VALUE' "
              f"or the config's [organisation])", file=sys.stderr)
    return ExitCode.OK


def _check_kind(kind: str, regime_id: str) -> None:
    """A kind drafted under another regime (a GDPR Art. 34 letter under HIPAA) is a mix-up:
    the notice would carry one law's items and the other's recipient and deadlines."""
    from leakwatch.errors import UsageError
    from leakwatch.incidents.notices import NOTICE_KINDS, default_kind

    nk = NOTICE_KINDS.get(kind)
    if nk is None or nk.regime is None:
        return  # unknown kinds are named by render_notice; generic fits every regime
    # UK GDPR notices are the GDPR's Art. 33 and 34 with the ICO as recipient.
    uk_gdpr = regime_id == "uk-gdpr" and nk.regime in ("gdpr-33", "gdpr-34")
    if nk.regime != regime_id and not uk_gdpr:
        ok = sorted({k for k, v in NOTICE_KINDS.items() if v.regime in (regime_id, None)} | {default_kind(regime_id)})
        raise UsageError(f"--kind {kind} is a {nk.regime} notice, not one for --regime {regime_id}; "
                         f"for {regime_id}: {', '.join(ok)}")


def _refuse_scanned_file(store, out: str) -> None:
    """A notice written over a log this database scanned would replace the evidence."""
    from leakwatch.errors import UsageError
    from leakwatch.store.db import storable_path

    names = list({storable_path(os.path.abspath(out)), storable_path(os.path.realpath(out))})
    if os.path.exists(out) and store.con.execute("SELECT count(*) FROM sources WHERE list_contains(?, path)",
                                                 [names]).fetchone()[0]:
        raise UsageError(f"--out {out}: a log this database scanned (evidence); give another file name")


def _write_out(out: str, text: str) -> None:
    """Write the draft to ``out`` whole or not at all (0600), through the export's
    ``atomic_output``: a device, a named pipe or /dev/stdout is written in place, never
    replaced by a file; a symbolic link keeps pointing at the file it named."""
    from leakwatch.errors import LeakwatchError, UsageError
    from leakwatch.export import atomic_output

    if out == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        with atomic_output(out) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
    except UsageError:
        raise
    except LeakwatchError as e:  # a write that failed is the caller's path or disk: exit 2
        raise UsageError(str(e)) from e
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write it: {e.strerror}") from e


# --- audit ------------------------------------------------------------------------------------


def run_audit(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch audit``."""
    from rich.table import Table

    from leakwatch.exit_codes import ExitCode
    from leakwatch.incidents import audit, book

    action = args.action or "verify"
    zone = _zone(args)
    with _open_store(args, write=False) as store:
        if action == "verify":
            res = audit.verify(store.con, store.key)
            if args.json:
                _dump(res.__dict__)
            elif res.ok:
                print(f"audit trail intact: {res.n_rows} row(s), head {res.last_hash}")
            else:
                print(f"audit trail BROKEN ({len(res.problems)} problem(s), {res.n_rows} row(s) present):", file=sys.stderr)
                for p in res.problems:
                    print(f"  {p}", file=sys.stderr)
            return ExitCode.OK if res.ok else ExitCode.AUDIT_BROKEN
        if args.incident is not None:
            book.get(store.con, args.incident)  # "no incident N" (exit 2), as every other command says
        rows = audit.list_rows(store.con, incident_id=args.incident, limit=args.limit)
    if args.json:
        _dump(rows)
        return ExitCode.OK
    t = Table(title=f"audit trail ({len(rows)} row(s))")
    for col in ("#", "when", "who", "incident", "what", "detail", "why"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(str(r["seq"]), fmt_time(r["at"], zone), r["actor"], str(r["incident_id"] or ""), r["action"],
                  r["detail"], r["reason"] or "")
    _console().print(t)
    return ExitCode.OK
