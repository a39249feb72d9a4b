"""``leakwatch drill``: synthetic breach drills — list the scenarios, generate their logs, run
one through the real watch path on an accelerated clock, print a drill's score.

The work is in :mod:`leakwatch.drills`; this module parses options and prints. Heavy imports
happen inside the ``run_*`` functions.
"""
from __future__ import annotations

import argparse
import textwrap

#: Scenario minutes between progress lines of a headless run.
PROGRESS_MIN = 10

EPILOG = textwrap.dedent(
    """\
    examples:
      leakwatch drill list                                   the shipped scenarios
      leakwatch drill run ai-key-exposed-gateway-bypass      75 scenario minutes in ~75 s, then the score
      leakwatch drill run bulk-sync-to-ai --speed 300 --out drills/bulk-1
      leakwatch drill run ai-key-exposed-gateway-bypass --tui
                                                             the same, live in the incident console
      leakwatch drill generate cdn-foreign-edge --seed 7 --out /tmp/cdn-logs
                                                             the logs and their ground truth only
      leakwatch drill score drills/bulk-1                    print a drill's score again

    what a drill is:
      A scenario (playbooks/drills/*.yaml) names systems that log in real formats (EventLogFile
      CSV, API Gateway JSON, Heroku router, Mule 4, JSON-lines app logs with LLM bodies, CDN
      access logs), the leaks planted in them and when, and the incidents and regimes a responder
      should end up with. 'drill run' generates the logs (fictional values only: example.com
      mail, Ofcom drama numbers, test card BINs, checksum-valid fake IDs), appends them to watched
      files as scenario time passes (--speed 60: one scenario minute per second), and drives the
      real watch cycle with the same clock: detection, failure patterns, incidents, clocks,
      deadline triggers and notifications to a local receiver the drill starts (signed, verified,
      marked with an X-Leakwatch-Drill header; nothing leaves the machine). Everything is written
      to --out: the logs, the database, leakwatch.toml (organisation "… (DRILL)"), run.json, and
      the score as score.md and score.json: recall and precision against the ground truth, time
      to detect, time to open each incident, each notification against each regime's deadline,
      and the playbook steps that fell due (a headless drill has no responder: they are missed).

    --tui:
      The incident console opens on the drill's database while the drill runs: a red/amber
      DRILL banner on every screen, countdowns in scenario time, incidents appearing as they
      are opened, each notification the receiver gets, and the score in a dialog at the end
      (S shows it again). Responders can work the incidents as they would for real (acknowledge,
      set clocks, step through playbooks); their actions are in the score. P pauses scenario
      time; q or ctrl+c stops the drill (it is still scored) and closes the console; the score
      is printed when it closes. Without a terminal, --tui runs headless.

    exit codes:
      0  the drill passed every check (run, score), or list/generate finished
      1  the drill failed a check (run, score: see the score)
      2  usage error, a bad scenario file (file, line and field are named), or an unknown drill folder
      3  the database could not be written      130 interrupted (what was done is scored)
    """
)


def register(sub) -> None:
    """Add the ``drill`` subcommand (with list, generate, run, score) to the CLI's subparsers."""
    p = sub.add_parser(
        "drill",
        help="synthetic breach drills: generate logs with planted leaks, replay them, score the response",
        description="Rehearse a breach without real data: generate a scenario's synthetic logs, replay them "
        "through the real watch path on an accelerated clock with notifications to a local receiver, and "
        "score detection, incidents, notifications and deadlines in scenario time.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dsub = p.add_subparsers(dest="drill_command", metavar="ACTION")
    dsub.required = True

    ls = dsub.add_parser("list", help="list the scenarios")
    ls.add_argument("--dir", metavar="DIR", help="scenario folder (default: the shipped playbooks/drills/)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    g = dsub.add_parser("generate", help="write a scenario's synthetic logs and ground-truth manifest")
    g.add_argument("scenario", metavar="SCENARIO", help="scenario id (see 'drill list') or path to a .yaml file")
    g.add_argument("--seed", type=int, default=1, metavar="N", help="random seed: the same seed gives the same bytes")
    g.add_argument("--out", required=True, metavar="DIR", help="new or empty folder to write into")
    g.add_argument("--start", metavar="TIME", help="ISO 8601 time the scenario starts at (default 2024-03-11T09:00Z)")
    g.add_argument("--scale", type=float, default=1.0, metavar="X",
                   help="multiply the background volume (planted records stay as they are; default 1)")
    g.add_argument("--dir", metavar="DIR", help="scenario folder (default: the shipped one)")
    g.set_defaults(func=run_generate)

    r = dsub.add_parser("run", help="run a drill headless and print its score")
    r.add_argument("scenario", metavar="SCENARIO", help="scenario id (see 'drill list') or path to a .yaml file")
    r.add_argument("--seed", type=int, default=1, metavar="N", help="random seed of the generated logs (default 1)")
    r.add_argument("--speed", type=float, default=60.0, metavar="X",
                   help="scenario seconds per real second, more than 0 and at most 10000 (default 60: one scenario "
                        "minute per second)")
    r.add_argument("--out", metavar="DIR",
                   help="new or empty drill folder (default: ./drills/SCENARIO-<UTC time>)")
    r.add_argument("--scale", type=float, default=1.0, metavar="X", help="multiply the background volume (default 1)")
    r.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                   help="real seconds between watch cycles (default 0.25)")
    r.add_argument("--dir", metavar="DIR", help="scenario folder (default: the shipped one)")
    r.add_argument("--json", action="store_true", help="print the score as JSON (no progress lines)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the score")
    r.add_argument("--tui", action="store_true",
                   help="show the drill live in the incident console (DRILL banner, accelerated countdowns, "
                        "the score at the end); headless when there is no terminal")
    r.add_argument("--theme", choices=("dark", "light"), default="dark", help="the console's colours (with --tui)")
    r.set_defaults(func=run_run)

    s = dsub.add_parser("score", help="print the score of a drill folder again (recomputed from its files)")
    s.add_argument("dir", metavar="DIR", help="a folder written by 'leakwatch drill run'")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run_score)


def run_list(args: argparse.Namespace, argv: list[str]) -> int:
    """``leakwatch drill list``."""
    import json
    import sys

    from leakwatch.drills.scenarios import (
        ScenarioError,
        default_drills_dir,
        list_scenarios,
        load_scenario,
    )
    from leakwatch.exit_codes import ExitCode

    files = list_scenarios(args.dir)
    rows = []
    bad: list[ScenarioError] = []
    for f in files:
        # One bad file must not hide the good ones: list those, then name each mistake.
        try:
            sc = load_scenario(f)
        except ScenarioError as e:
            bad.append(e)
            continue
        rows.append({"id": sc.id, "title": sc.title, "minutes": sc.minutes, "systems": len(sc.systems),
                     "plants": sum(len(p.minutes) for p in sc.plants),
                     "expect": [str(k) for k in sc.expect_incidents], "regimes": list(sc.expect_regimes),
                     "file": str(f)})
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows and not bad:
        print(f"no scenarios in {args.dir or default_drills_dir()}")
    elif rows:
        width = max(len(r["id"]) for r in rows)
        for r in rows:
            print(f"{r['id']:<{width}}  {r['minutes']:>4} min  {r['plants']:>3} planted  {r['title']}")
            print(f"{'':<{width}}  expects {', '.join(r['expect'])}")
    sys.stdout.flush()
    for e in bad:
        print(f"leakwatch: error: {e}", file=sys.stderr)
    if bad:
        print(f"leakwatch: {len(bad)} scenario file(s) not listed: fix the mistakes named above", file=sys.stderr)
        return ExitCode.INPUT_ERROR
    return ExitCode.OK


def run_generate(args: argparse.Namespace, argv: list[str]) -> int:
    """``leakwatch drill generate``."""
    from datetime import datetime

    from leakwatch.drills.generate import DEFAULT_START, generate, tree_sha256
    from leakwatch.drills.scenarios import find_scenario
    from leakwatch.errors import UsageError
    from leakwatch.exit_codes import ExitCode

    start = DEFAULT_START
    if args.start:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            raise UsageError(f"--start {args.start!r}: not an ISO 8601 time such as 2024-03-11T09:00:00Z") from None
        if start.tzinfo is None:
            raise UsageError(f"--start {args.start!r}: give a time zone (…Z or +01:00)")
    sc = find_scenario(args.scenario, args.dir)
    g = generate(sc, args.seed, args.out, start=start, scale=args.scale)
    m = g.manifest
    lines = sum(f["lines"] for f in m["files"])
    print(f"DRILL data (synthetic, fictional values only): {sc.id}, seed {args.seed}")
    print(f"wrote {len(m['files'])} files, {lines:,} lines, {len(m['plants'])} planted values, "
          f"{len(m['activity'])} activity records to {args.out}")
    for f in m["files"]:
        print(f"  {f['path']:<48} {f['lines']:>6,} lines  {f['format']}")
    print(f"ground truth: {args.out}/manifest.json; timeline: {args.out}/timeline.json; "
          f"sha256 of the folder {tree_sha256(args.out)[:16]}")
    return ExitCode.OK


def run_run(args: argparse.Namespace, argv: list[str]) -> int:
    """``leakwatch drill run``."""
    import json
    import sys
    from datetime import UTC, datetime
    from pathlib import Path

    from leakwatch.drills.run import BANNER, INTERVAL_S, check_speed, run_drill
    from leakwatch.drills.scenarios import find_scenario
    from leakwatch.drills.score import render_markdown
    from leakwatch.exit_codes import ExitCode
    from leakwatch.watch import StopOnSignals

    args.speed = check_speed(args.speed)  # before anything is written (the --tui path too)
    sc = find_scenario(args.scenario, args.dir)
    out = Path(args.out) if args.out else Path("drills") / f"{sc.id}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    quiet = args.quiet or args.json

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    next_progress = [PROGRESS_MIN]

    def on_event(e) -> None:
        stamp = f"[DRILL T+{int(e.minute) // 60:02d}:{int(e.minute) % 60:02d}]"
        if e.kind == "start":
            say(f"=== {BANNER} ===")
            say(f"{stamp} {sc.title}")
            say(f"{stamp} {e.text}; drill folder {out}")
        elif e.kind == "cycle":
            rep = e.report
            # Incidents, alerts and notifications get a line; findings alone are summed up in the
            # progress line (a low-severity finding a minute would drown the rest).
            if rep.alerts or rep.opened or rep.grown or rep.deliveries:
                say(f"{stamp} {e.text.split(' ', 1)[-1]}")
            for err in rep.errors:
                say(f"{stamp} leakwatch: {err}")
            if e.minute >= next_progress[0]:
                next_progress[0] = (e.minute // PROGRESS_MIN + 1) * PROGRESS_MIN
                d = e.data
                say(f"{stamp} {d['lines']:,}/{d['total']:,} lines in, {d['findings']} findings, "
                    f"{d['incidents']} incidents, {d['sent']} notifications")
        elif e.kind in ("notification", "awareness", "draining"):
            say(f"{stamp} {e.text}")

    if getattr(args, "tui", False):
        if sys.stdin.isatty() and sys.stdout.isatty():
            return _run_tui(args, sc, out)
        print("leakwatch: --tui needs a terminal (stdin and stdout); running the drill headless", file=sys.stderr)

    stop = StopOnSignals()
    try:
        res = run_drill(sc, out, seed=args.seed, speed=args.speed, scale=args.scale,
                        interval=args.interval if args.interval is not None else INTERVAL_S,
                        on_event=on_event, stop=stop.event)
    finally:
        stop.restore()
    if args.json:
        print(json.dumps(res.score, indent=1))
    else:
        say("")
        sys.stdout.write(render_markdown(res.score))
        print(f"\nscore: {out / 'score.md'} and score.json; drill folder: {out} (real time {res.real_seconds:.1f} s)")
    if stop.signum is not None:
        return ExitCode.INTERRUPTED
    return ExitCode.OK if res.score["passed"] else ExitCode.FINDINGS


def _run_tui(args: argparse.Namespace, sc, out) -> int:
    """``drill run --tui``: the console on the drill; the score printed once it closes."""
    import json
    import sys

    from leakwatch.drills.score import render_markdown
    from leakwatch.exit_codes import ExitCode
    from leakwatch.tui.app import DARK_THEME, LIGHT_THEME
    from leakwatch.tui.drill import make_drill_app

    app = make_drill_app(sc, out, seed=args.seed, speed=args.speed, scale=args.scale, interval=args.interval,
                         theme=LIGHT_THEME if args.theme == "light" else DARK_THEME)
    try:
        app.run()
    finally:
        # Closed before the drill ended (q, ctrl+c): it stops now, and is scored as stopped early.
        res = app.wait_drill()
    if res is None:  # pragma: no cover - wait_drill raises what stopped the drill
        return ExitCode.INTERRUPTED
    if args.json:
        print(json.dumps(res.score, indent=1))
    else:
        sys.stdout.write(render_markdown(res.score))
        print(f"\nscore: {out / 'score.md'} and score.json; drill folder: {out} (real time {res.real_seconds:.1f} s)")
    if res.score["drill"].get("stopped_early"):
        return ExitCode.INTERRUPTED
    return ExitCode.OK if res.score["passed"] else ExitCode.FINDINGS


def run_score(args: argparse.Namespace, argv: list[str]) -> int:
    """``leakwatch drill score``."""
    import json
    import sys

    from leakwatch.drills.score import render_markdown, score_drill, write_score
    from leakwatch.exit_codes import ExitCode

    score = score_drill(args.dir)
    try:
        write_score(args.dir, score)
    except OSError as e:
        # The score is still printed; only its files in the folder are not up to date.
        print(f"leakwatch: warning: cannot write {e.filename or args.dir}: {e.strerror or e}; the score is "
              "printed here only", file=sys.stderr)
    if args.json:
        print(json.dumps(score, indent=1))
    else:
        sys.stdout.write(render_markdown(score))
    return ExitCode.OK if score["passed"] else ExitCode.FINDINGS
