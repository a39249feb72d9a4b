"""``leakwatch notify status | dispatch | test | retry`` and ``leakwatch webhook verify``: the
notification outbox from the command line, and the signature check for webhook receivers."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from typing import Any

DB_HELP = "DuckDB file (default: ./leakwatch.duckdb or $LEAKWATCH_DB)"
#: How often ``notify dispatch`` looks for deadlines that crossed a threshold.
DEADLINE_TICK_S = 30.0

NOTIFY_EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch notify status                        what is queued, delivered, dead (dead letters first)
      leakwatch notify status --json --fail-on-dead  for monitoring: exit 4 while dead letters exist
      leakwatch notify dispatch                      deliver until stopped (Ctrl-C / SIGTERM)
      leakwatch notify dispatch --until-empty --timeout 300
      leakwatch notify dispatch --once               one pass over what is due now
      leakwatch notify test --target soc-webhook     send a marked canary through the real path
      leakwatch notify retry 17 18                   requeue dead letters (after fixing the cause)
      leakwatch notify retry --all

    how it works:
      Incident changes (leakwatch incidents group, playbook steps) write notifications into the
      database's outbox in the same transaction, as the [[notify.rules]] of the config say.
      'notify dispatch' delivers them: at least once, with exponential backoff and jitter,
      honouring Retry-After, and after a crash or kill -9 it asks the target (or relies on the
      receiver deduplicating by the idempotency key) before sending again. After
      notify.max_attempts (or an answer that retrying cannot fix) a notification becomes a
      dead letter: recorded in the audit trail, sent to outbox.dead_letter rules, shown here.
      It also queues deadline.approaching / deadline.missed notices every 30 s.
      Credentials come from environment variables or the 0600 notify.secrets_file and never
      appear in output or in the database.

    exit codes:
      0  done                   2  usage or configuration error (nothing was sent)
      3  the database could not be opened or written
      4  a notification was dead-lettered in this run, the canary was not delivered,
         --until-empty stopped with notifications left, some are queued for a target the
         config does not have, or (status --fail-on-dead) dead letters exist
    """
)

WEBHOOK_EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch webhook verify --secret-env HOOK_SECRET --headers req-headers.txt --body req-body.json
      leakwatch webhook verify --secret-env HOOK_SECRET \\
          --header "webhook-id: msg_2KWPBgLlAfxdpx2AI54pPJ85f4W" \\
          --header "webhook-timestamp: 1674087231" \\
          --header "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=" --body - < body.json

    what it checks (Standard Webhooks):
      HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<raw body>" with the whsec_ secret from
      the environment variable (never from the command line: other users can read it there),
      compared in constant time; the timestamp must be within --tolerance seconds of now.
      --headers reads a file of "Name: value" lines or a JSON object.

    exit codes:
      0  the request verifies       1  it does not (the reason is printed)
      2  usage error (no secret, unreadable file)
    """
)


def _add_common(p: argparse.ArgumentParser, *, sub: bool = False, json_flag: bool = False) -> None:
    def d(value):
        return argparse.SUPPRESS if sub else value

    p.add_argument("--db", default=d(os.environ.get("LEAKWATCH_DB", "leakwatch.duckdb")), metavar="FILE", help=DB_HELP)
    p.add_argument("--config", metavar="FILE", default=d(None),
                   help="settings file (TOML; default: $LEAKWATCH_CONFIG or ./leakwatch.toml if present)")
    if json_flag:
        p.add_argument("--json", action="store_true", default=d(False), help="print JSON instead of text")


def register(sub) -> None:
    """Add ``notify`` and ``webhook`` to the CLI."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("notify", help="the notification outbox: status, dispatch, canary test, retry dead letters",
                       description="Notifications to webhooks, ticketing (ServiceNow, Jira, JSM), Salesforce and chat, "
                       "kept in a durable outbox in the database and delivered by 'notify dispatch'.",
                       epilog=NOTIFY_EPILOG, formatter_class=fmt)
    nsub = p.add_subparsers(dest="action", metavar="ACTION")
    p.set_defaults(func=run_notify, action=None)
    _add_common(p, json_flag=True)

    def action(name: str, help_: str) -> argparse.ArgumentParser:
        a = nsub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".", formatter_class=fmt,
                            epilog="exit codes:" + NOTIFY_EPILOG.split("exit codes:")[1])
        _add_common(a, sub=True, json_flag=True)
        return a

    a = action("status", "counts per status and target, the oldest pending notification, dead letters")
    a.add_argument("--fail-on-dead", action="store_true", help="exit 4 when there are dead letters")
    a = action("dispatch", "deliver queued notifications (until stopped, or see --once / --until-empty)")
    g = a.add_mutually_exclusive_group()
    g.add_argument("--once", action="store_true", help="one pass over what is due now, then exit")
    g.add_argument("--until-empty", action="store_true",
                   help="exit when nothing is pending any more (waits out backoffs; see --timeout)")
    a.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds at most")
    a.add_argument("--workers", type=int, metavar="N", help="concurrent sends (default: notify.workers, 4)")
    a.add_argument("--no-deadlines", action="store_true", help="do not queue deadline notifications while dispatching")
    a = action("test", "send a synthetic canary to one target through the real path and report the round trip")
    a.add_argument("--target", required=True, metavar="NAME", help="a [[notify.targets]] name")
    a = action("retry", "put dead letters back in the queue (attempts reset)")
    a.add_argument("ids", type=int, nargs="*", metavar="ID", help="notification ids (see 'notify status')")
    a.add_argument("--all", action="store_true", help="every dead letter")

    w = sub.add_parser("webhook", help="tools for webhook receivers: verify a Standard Webhooks signature",
                       description="Tools for the receiving side of leakwatch's signed webhooks.",
                       epilog=WEBHOOK_EPILOG, formatter_class=fmt)
    wsub = w.add_subparsers(dest="action", metavar="ACTION")
    w.set_defaults(func=run_webhook, action=None)
    v = wsub.add_parser("verify", help="check a request's webhook-signature and webhook-timestamp",
                        description="Check a request's Standard Webhooks signature and timestamp; exit 0 when it "
                        "verifies, 1 when it does not.", epilog=WEBHOOK_EPILOG, formatter_class=fmt)
    v.add_argument("--secret-env", required=True, metavar="VAR", help="environment variable holding the whsec_ secret")
    v.add_argument("--headers", metavar="FILE", help="request headers: 'Name: value' lines or a JSON object ('-': stdin)")
    v.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="one header (repeatable)")
    v.add_argument("--body", required=True, metavar="FILE", help="the raw request body ('-': stdin)")
    v.add_argument("--tolerance", type=float, default=300.0, metavar="S",
                   help="largest accepted difference between webhook-timestamp and now (default: 300)")
    v.add_argument("--now", type=float, metavar="UNIX_S", help="check as if it were this time (investigating an old request)")


# --- helpers -------------------------------------------------------------------------------------------


def _dump(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=lambda o: o.isoformat() if isinstance(o, datetime) else str(o),
                     ensure_ascii=False))


def _open_store(args, *, write: bool):
    from pathlib import Path

    from leakwatch.errors import UsageError
    from leakwatch.store import Store

    db = Path(args.db)
    if not db.is_file():
        raise UsageError(f"{db}: no such database; run 'leakwatch scan --db {db} …' first, or point --db at one")
    return Store.open(db, read_only=not write)


def _redacting(fn):
    """Run ``fn``; any leakwatch error leaving it has credential values cut out of its message."""
    from leakwatch.errors import LeakwatchError
    from leakwatch.notify.secrets import redact

    def run(args: argparse.Namespace, argv: list[str]) -> int:
        try:
            return fn(args, argv)
        except LeakwatchError as e:
            text = str(e)
            clean = redact(text)
            if clean != text:
                e.args = (clean,)
            raise

    return run


def _fmt_age(seconds: float) -> str:
    s = int(abs(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


# --- notify --------------------------------------------------------------------------------------------


@_redacting
def run_notify(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch notify``; see ``leakwatch notify --help``."""
    from leakwatch.config import load_config

    action = args.action or "status"
    config = load_config(args.config)
    if action == "status":
        return _status(args)
    if action == "dispatch":
        return _dispatch(args, config)
    if action == "test":
        return _test(args, config)
    if action == "retry":
        return _retry(args)
    raise AssertionError(action)  # pragma: no cover - argparse restricts the choices


def _status(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from leakwatch.exit_codes import ExitCode
    from leakwatch.notify.outbox import outbox_status

    with _open_store(args, write=False) as store:
        st = outbox_status(store.con, datetime.now(UTC))
    dead = st["dead_letters"]
    rc = ExitCode.REMOTE_ERROR if dead and getattr(args, "fail_on_dead", False) else ExitCode.OK
    if args.json:
        _dump(st)
        return rc
    c = Console(highlight=False, soft_wrap=True)
    out = sys.stdout
    if dead:
        c.print(f"[bold red]DEAD LETTERS: {st['totals']['dead']}[/bold red] notification(s) could not be delivered; "
                "fix the cause, then 'leakwatch notify retry ID' (or --all)")
        # One line each, never wrapped: these lines get grepped and pasted into tickets.
        for d in dead:
            who = f"incident {d['incident_id']} " if d["incident_id"] is not None else ""
            http = f", HTTP {d['last_status']}" if d["last_status"] else ""
            print(f"  #{d['notification_id']} {who}-> {d['target']} ({d['event']}), {d['attempts']} attempt(s){http}, "
                  f"dead since {d['dead_since'].strftime('%Y-%m-%d %H:%M UTC')}: {d['last_error'] or 'no error text'}",
                  file=out)
    tot = st["totals"]
    print(f"outbox: {tot['pending']} pending, {tot['sending']} sending, {tot['delivered']} delivered, {tot['dead']} dead",
          file=out)
    if st["by_target"]:
        t = Table(title="by target")
        for col in ("target", "pending", "sending", "delivered", "dead"):
            t.add_column(col, justify="left" if col == "target" else "right")
        for name, counts in st["by_target"].items():
            t.add_row(name, *(str(counts[s]) for s in ("pending", "sending", "delivered", "dead")))
        c.print(t)
    old = st["oldest_pending"]
    if old:
        line = (f"oldest pending: #{old['notification_id']} to {old['target']} ({old['event']}), "
                f"{_fmt_age(old['age_s'])} old, {old['attempts']} attempt(s)")
        if old["last_error"]:
            line += f"; last error: {old['last_error']}"
        print(line, file=out)
    if st["next_attempt_at"]:
        left = (st["next_attempt_at"] - st["now"]).total_seconds()
        print(f"next attempt: {st['next_attempt_at'].strftime('%Y-%m-%d %H:%M:%S UTC')} "
              f"({'now' if left <= 0 else 'in ' + _fmt_age(left)})", file=out)
    if not any(tot.values()):
        print("nothing queued yet (rules in [[notify.rules]] decide what is; 'leakwatch notify test --target NAME' "
              "sends a canary)", file=out)
    return rc


def _credential_problems(targets, secrets, names) -> dict[str, str]:
    """Target name → why its credentials cannot work (unset, unreadable, a webhook secret that
    is not one), for the targets in ``names``: found before anything is sent, these are a
    configuration error to fix, not a reason to dead-letter every notification queued for
    them."""
    from leakwatch.errors import LeakwatchError

    out = {}
    for name in names:
        t = targets.get(name)
        if t is None:
            continue
        try:
            for var in (getattr(t.config, "credentials", None) or {}).values():
                secrets.get(var, what=f"target {name}")
            check = getattr(t, "check_credentials", None)
            if check is not None:
                check()
        except LeakwatchError as e:
            msg = str(e)
            out[name] = msg if f"target {name}" in msg else f"target {name}: {msg}"
    return out


def _dispatch(args, config) -> int:
    import math

    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.notify.outbox import Dispatcher
    from leakwatch.notify.secrets import SecretStore
    from leakwatch.notify.targets import build_targets
    from leakwatch.notify.triggers import fire_deadlines

    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    secrets = SecretStore.from_config(config)
    targets = build_targets(config, secrets)
    for t in targets.values():
        if getattr(t, "duplicate_risk", None):
            print(f"leakwatch: warning: {t.duplicate_risk}", file=sys.stderr)
    stop = threading.Event()
    handlers: dict[int, object] = {}

    def on_signal(signum, _frame) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: at once
        stop.set()

    if threading.current_thread() is threading.main_thread():
        # Ctrl-C and SIGTERM stop the dispatcher the same way: what was delivered or
        # dead-lettered is recorded and reported, a send still waiting on a silent target is
        # left to the next dispatcher.
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    last_tick = [float("-inf")]
    try:
        with _open_store(args, write=True) as store:
            queued = [r[0] for r in store.con.execute(
                "SELECT DISTINCT target FROM outbox WHERE status IN ('pending', 'sending') ORDER BY 1").fetchall()]
            broken = _credential_problems(targets, secrets, queued)
            usable = {n: t for n, t in targets.items() if n not in broken}
            with Dispatcher(store, usable, config, workers=args.workers) as d:
                def tick() -> None:
                    if args.no_deadlines or time.monotonic() - last_tick[0] < DEADLINE_TICK_S:
                        return
                    last_tick[0] = time.monotonic()
                    fire_deadlines(store, config, now=datetime.now(UTC), targets=targets, secrets=secrets)

                if args.once:
                    tick()
                    stats = d.run_once(stop=stop)
                else:
                    stats = d.run(stop, until_empty=args.until_empty, tick=tick, timeout_s=args.timeout)
                left = d.pending()
                left_out = d.unroutable()  # rows of targets this dispatcher does not have
                unroutable = {n: k for n, k in left_out.items() if n not in broken}
                held = {n: k for n, k in left_out.items() if n in broken}
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        for t in targets.values():
            close = getattr(t, "close", None)
            if close is not None:
                close()
    stopped = stop.is_set()
    if args.json:
        _dump({"delivered": stats.delivered, "found_at_target": stats.found, "retrying": stats.retried,
               "dead": stats.dead, "dead_ids": stats.dead_ids, "left_sending": stats.left_sending,
               "still_queued": left + sum(unroutable.values()) + sum(held.values()),
               "unroutable": unroutable, "credential_problems": {n: {"queued": held.get(n, 0), "error": broken[n]}
                                                                  for n in broken},
               "stopped": stopped, "errors": stats.errors[-5:]})
    else:
        for e in stats.errors[-5:] if stats.dead else []:
            print(f"leakwatch: {e}", file=sys.stderr)
        for nid in stats.dead_ids:
            print(f"leakwatch: DEAD LETTER #{nid}: not delivered; see 'leakwatch notify status', then "
                  f"'leakwatch notify retry {nid}'", file=sys.stderr)
        for name, n in unroutable.items():
            print(f"leakwatch: {n} notification(s) for target {name!r} left queued: no such target in "
                  f"{config.source or 'the configuration'} (add it back to [[notify.targets]], or check --config)",
                  file=sys.stderr)
        for name, why in broken.items():
            print(f"leakwatch: {held.get(name, 0)} notification(s) for target {name!r} left queued, none sent: {why}; "
                  "fix it and dispatch again", file=sys.stderr)
        if stats.left_sending:
            print(f"leakwatch: stopped while {stats.left_sending} send(s) waited on a silent target; they stay "
                  "'sending' and the next dispatch asks the target before sending them again", file=sys.stderr)
        print(f"delivered {stats.delivered}" + (f" ({stats.found} found already at the target)" if stats.found else "")
              + f", retrying {stats.retried}, dead {stats.dead}; {left + sum(unroutable.values()) + sum(held.values())}"
              " still queued" + ("; stopped" if stopped else ""))
    if stats.dead or (args.until_empty and left) or unroutable:
        return ExitCode.REMOTE_ERROR
    if broken:
        return ExitCode.INPUT_ERROR
    return ExitCode.OK


def _test(args, config) -> int:
    from leakwatch.exit_codes import ExitCode
    from leakwatch.notify.outbox import Dispatcher
    from leakwatch.notify.secrets import SecretStore, redact
    from leakwatch.notify.targets import build_targets
    from leakwatch.notify.triggers import enqueue_canary

    tcfg = config.notify.target(args.target)
    secrets = SecretStore.from_config(config)
    targets = build_targets(config, secrets, [tcfg.name])
    # Credentials are checked before anything is queued (the check dispatch makes too): a
    # missing, unreadable or malformed one is a configuration error (exit 2, nothing sent),
    # not a failed delivery.
    problem = _credential_problems(targets, secrets, [tcfg.name]).get(tcfg.name)
    if problem:
        from leakwatch.errors import UsageError

        raise UsageError(f"{problem} (nothing was sent)")
    try:
        with _open_store(args, write=True) as store:
            t0 = time.perf_counter()
            nid, key = enqueue_canary(store, config, tcfg.name, datetime.now(UTC), targets=targets, secrets=secrets)
            with Dispatcher(store, targets, config, workers=1) as d:
                d.run_once(ids=[nid])
            ms = (time.perf_counter() - t0) * 1000
            status, remote_id, last_status, last_error = store.con.execute(
                "SELECT status, remote_id, last_status, last_error FROM outbox WHERE notification_id = ?", [nid]).fetchone()
            if status != "delivered":
                # A canary is a test of now: it is not retried later behind the operator's back.
                store.con.execute("UPDATE outbox SET status = 'dead', lease_until = NULL, lease_owner = NULL, "
                                  "updated_at = ? WHERE notification_id = ? AND status <> 'delivered'", [datetime.now(UTC), nid])
    finally:
        for t in targets.values():
            close = getattr(t, "close", None)
            if close is not None:
                close()
    result = {"target": tcfg.name, "kind": tcfg.kind, "notification_id": nid, "idempotency_key": key,
              "delivered": status == "delivered", "round_trip_ms": round(ms, 1), "http_status": last_status,
              "remote_id": remote_id, "error": redact(last_error) or None}
    if args.json:
        _dump(result)
    elif status == "delivered":
        print(f"canary to {tcfg.name} ({tcfg.kind}) delivered in {ms:.0f} ms round trip"
              + (f", HTTP {last_status}" if last_status else "") + (f", remote id {remote_id}" if remote_id else ""))
    else:
        print(f"leakwatch: canary to {tcfg.name} ({tcfg.kind}) NOT delivered after {ms:.0f} ms: "
              f"{redact(last_error) or 'no answer'}", file=sys.stderr)
    return ExitCode.OK if status == "delivered" else ExitCode.REMOTE_ERROR


def _retry(args) -> int:
    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.incidents.audit import current_actor
    from leakwatch.notify.outbox import retry_dead

    if bool(args.ids) == bool(args.all):
        raise UsageError("give notification ids (see 'leakwatch notify status') or --all")
    with _open_store(args, write=True) as store:
        done = retry_dead(store, None if args.all else args.ids, now=datetime.now(UTC), actor=current_actor(None))
    if args.json:
        _dump({"requeued": done})
    else:
        print(f"requeued {len(done)} notification(s)" + (f": {', '.join(map(str, done))}" if done else "")
              + ("; 'leakwatch notify dispatch' delivers them" if done else ""))
    return ExitCode.OK


# --- webhook ------------------------------------------------------------------------------------------


def _read_input(path: str, what: str, stdin_used: list[bool]) -> bytes:
    from leakwatch.errors import UsageError

    if path == "-":
        if stdin_used[0]:
            raise UsageError(f"{what}: standard input is already used by another option")
        stdin_used[0] = True
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot read it: {e.strerror}") from None


def parse_headers(text: str, where: str) -> dict[str, str]:
    """Headers from a JSON object or ``Name: value`` lines (an HTTP request line or status line
    at the top, and blank lines, are skipped)."""
    from leakwatch.errors import UsageError

    s = text.strip()
    if s.startswith("{"):
        try:
            obj = json.loads(s)
        except ValueError as e:
            raise UsageError(f"{where}: not a JSON object: {e}") from None
        if not isinstance(obj, dict):
            raise UsageError(f"{where}: expected a JSON object of header: value")
        return {str(k): str(v) for k, v in obj.items()}
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or (i == 1 and (" HTTP/" in line or line.startswith("HTTP/"))):
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise UsageError(f"{where}:{i}: not 'Name: value'")
        out[name.strip()] = value.strip()
    return out


def run_webhook(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``leakwatch webhook``; see ``leakwatch webhook --help``."""
    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode
    from leakwatch.notify.webhook_verify import WebhookVerifyError, decode_secret, verify

    if args.action != "verify":
        raise UsageError("say what to do: leakwatch webhook verify … (see leakwatch webhook --help)")
    secret = os.environ.get(args.secret_env)
    if not secret:
        raise UsageError(f"--secret-env {args.secret_env}: that environment variable is not set")
    import math

    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        # nan passed every timestamp: an hour-old replay verified
        raise UsageError(f"--tolerance {args.tolerance:g}: a number of seconds from 0 (default 300)")
    if args.now is not None and not (math.isfinite(args.now) and args.now >= 0):
        raise UsageError(f"--now {args.now:g}: a Unix time in seconds")
    try:
        key = decode_secret(secret)
    except WebhookVerifyError as e:
        raise UsageError(f"--secret-env {args.secret_env}: {e}") from None
    stdin_used = [False]
    headers: dict[str, str] = {}
    if args.headers:
        headers.update(parse_headers(_read_input(args.headers, "--headers", stdin_used).decode("utf-8", "replace"),
                                     "--headers" if args.headers == "-" else args.headers))
    for h in args.header:
        headers.update(parse_headers(h, "--header"))
    if not headers:
        raise UsageError("give the request's headers: --headers FILE or --header 'NAME: VALUE' (repeatable)")
    body = _read_input(args.body, "--body", stdin_used)
    try:
        msg_id = verify(key, headers, body, now=args.now, tolerance=args.tolerance)
    except WebhookVerifyError as e:
        print(f"leakwatch: webhook does NOT verify: {e}", file=sys.stderr)
        return 1  # documented: "it does not verify" (ExitCode.FINDINGS's number, meaning "check failed")
    print(f"valid: webhook-id {msg_id}")
    return ExitCode.OK
