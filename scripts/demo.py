"""`make demo`: a breach drill, live in the incident console, with its score at the end.

    python scripts/demo.py            # the drill (about 80 s), in the console when run in a terminal
    python scripts/demo.py --scan     # the scan-and-explore demo (`make demo-scan`)

The drill (``leakwatch drill run``) generates a scenario's synthetic logs (fictional values
only) and replays them through the real watch path at 60x: detection, failure patterns,
incidents with their regulatory clocks, playbooks and signed notifications to a local receiver
the drill starts. In a terminal the incident console shows it as it happens (a DRILL banner on
every screen, countdowns in scenario time, the score in a dialog at the end; q or ctrl+c stops
early) and the score is printed when the console closes. Without a terminal (CI, a pipe) the
drill runs headless, printing its progress and the score. The exit status is the drill's: 0
when it passed every check, 1 when it failed one (stopping it early in the console is 0).

Shorter or longer: ``--speed`` (or ``$LEAKWATCH_DEMO_SPEED``), ``--scale`` (or
``$LEAKWATCH_DEMO_SCALE``, the background volume), ``--scenario``; ``--headless`` without the
console. The drill folder is ``demo-out/drill`` (replaced on each run).

The scan demo: generate realistic sample logs with planted (fictional) leaks and scan them.
The sample logs come from the benchmark's deterministic generator (bench/corpus.py), sorted
into one file per source: Salesforce EventLogFile CSV per event type, API Gateway JSON, Heroku
router, Mule 4 (gzipped), nginx and JSON app logs with LLM request bodies, about 2% of lines
carrying fake PII or secrets. Then the real `leakwatch scan` runs on them: findings with their
fields, destinations and alerts; the stored findings are queried back, masked, with where their
data went.
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leakwatch.cli import main as leakwatch  # noqa: E402

#: The drill `make demo` runs: AI keys in debug logs and a service calling OpenAI around the
#: gateway. Its first incident opens about 3 scenario minutes in, the first notification
#: follows within seconds, four incidents by minute 20; 75 scenario minutes at 60x is ~80 s.
DRILL_SCENARIO = "ai-key-exposed-gateway-bypass"
DRILL_SPEED = 60.0
DRILL_SEED = 1
DRILL_DIR_NAME = "drill"
OUT = ROOT / "demo-out"
LOGS = OUT / "logs"
# Where each kind of line goes: one file per source, as a shop's log shipping would have them.
SOURCES = {
    "apigw": "aws-apigw-access.jsonl",
    "jsonl": "app-services.jsonl",
    "heroku": "heroku-router.log",
    "mule": "mule-app-orders-api.log",
    "combined": "nginx-access.log",
}
GZIPPED = {"mule-app-orders-api.log"}


def generate(seed: int = 1, mb: int = 24) -> None:
    """Generate the bench's mixed stream, then sort its lines into per-source files: one
    EventLogFile CSV per event type (with its header), gateway, Heroku, Mule (gzipped), nginx and
    app logs."""
    from bench.corpus import _generate
    from leakwatch.sources.formats import sniff

    if LOGS.exists():
        shutil.rmtree(LOGS)
    LOGS.mkdir(parents=True)
    mixed = OUT / "mixed.tmp"
    with open(mixed, "wb") as out:
        manifest = _generate(seed, mb << 20, out)
    outs: dict[str, object] = {}
    header: bytes | None = None

    def sink(name: str, first: bytes | None = None):
        f = outs.get(name)
        if f is None:
            path = LOGS / name
            f = outs[name] = gzip.open(str(path) + ".gz", "wb") if name in GZIPPED else open(path, "wb")
            if first is not None:
                f.write(first)
        return f

    with open(mixed, "rb") as src:
        for line in src:
            if line.startswith(b'"EVENT_TYPE"'):
                header = line
                continue
            if line.startswith(b'"') and header is not None:
                event = line[1:line.index(b'"', 1)].decode()
                sink(f"EventLogFile_{event}_2024-03-11.csv", header).write(line)
                continue
            sink(SOURCES.get(sniff(line), "other.log")).write(line)
    for f in outs.values():
        f.close()
    mixed.unlink()
    print(f"generated {len(outs)} files in {LOGS.relative_to(ROOT)}/: {manifest['lines']:,} lines, "
          f"{manifest['pii_lines']:,} with planted fake PII or secrets")
    for p in sorted(LOGS.iterdir()):
        print(f"  {p.name:<40} {p.stat().st_size / 1e6:6.1f} MB")


def show_top(db: Path) -> None:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        """SELECT severity, entity, regexp_replace(source_path, '.*/', ''), line, field_path, masked,
                  coalesce(dest_vendor || ' (' || coalesce(dest_region, 'region unknown') || ')', '-'),
                  CASE WHEN residency_violation THEN 'outside allowed' ELSE '' END
           FROM findings ORDER BY residency_violation DESC NULLS LAST, severity_rank DESC, confidence DESC,
                    finding_id LIMIT 12"""
    ).fetchall()
    print("\nMost severe findings, as stored (masked previews; raw values are not stored by default):")
    for sev, ent, src, line, field, masked, dest, viol in rows:
        where = f"{src}:{line}"
        print(f"  {sev:<8} {ent:<20} {where:<42} {(field or '-')[:22]:<22} {masked:<22} -> {dest} {viol}")
    print("\nImpact per destination (leakwatch.store.queries.impact):")
    from leakwatch.store.queries import impact

    for r in impact(con)[:6]:
        dest = (f"{r['dest_vendor']}, {r['dest_region'] or 'region unknown'} ({r['dest_jurisdiction']})"
                if r["dest_vendor"] else "no AI destination")
        flag = "  RESIDENCY VIOLATION" if r["residency_violation"] else ""
        print(f"  {dest:<44} {r['records']:>6,} records {r['data_subjects']:>6,} data subjects{flag}")
    con.close()


def show_incident(db: Path) -> None:
    """Group the findings into incidents and walk the worst prompt leak through its clocks,
    playbook and GDPR Art. 33 notice draft, as a responder would."""
    import duckdb

    rel = str(db.relative_to(ROOT))
    cfg = ["--config", str(Path(__file__).with_name("demo-leakwatch.toml"))]
    print(f"\n$ leakwatch incidents group --db {rel} --config scripts/demo-leakwatch.toml\n")
    leakwatch(["incidents", "group", "--db", str(db), *cfg])
    con = duckdb.connect(str(db), read_only=True)
    row = con.execute("""SELECT i.incident_id FROM incidents i WHERE group_key LIKE '%P3_prompt_pii%'
                         ORDER BY severity_rank DESC, (SELECT count(*) FROM incident_findings f
                                                       WHERE f.incident_id = i.incident_id) DESC LIMIT 1""").fetchone()
    con.close()
    if row is None:
        return
    iid = str(row[0])
    for args in (["clocks", iid], ["playbook", iid], ["notice", iid, "--regime", "gdpr-33"]):
        print(f"\n$ leakwatch {' '.join(args)} --db {rel} --config scripts/demo-leakwatch.toml\n")
        leakwatch([*args, "--db", str(db), *cfg])


def scan_demo() -> int:
    """The scan-and-explore demo: generate the sample logs, scan them, show the most severe
    findings and walk the worst prompt leak through its incident, clocks, playbook and notice."""
    generate()
    db = OUT / "leakwatch.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    print(f"\n$ leakwatch scan {LOGS.relative_to(ROOT)} --db {db.relative_to(ROOT)} --workers 2\n")
    code = leakwatch(["scan", str(LOGS), "--db", str(db), "--workers", "2"])
    show_top(db)
    print(f"\nleakwatch exited {code} (1 = findings at or above the --fail-on severity, as expected here).")
    show_incident(db)
    print(f"Explore: .venv/bin/python -c \"import duckdb; print(duckdb.connect('{db.relative_to(ROOT)}', read_only=True)"
          ".sql('SELECT entity, count(*) FROM findings GROUP BY 1 ORDER BY 2 DESC'))\"")
    return 0 if code in (0, 1) else code


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"demo: ${name}={raw!r} is not a number") from None


def drill_interval(speed: float) -> float:
    """Real seconds between watch cycles: the watch default (0.25 s), shorter at high speeds so
    that a cycle spans at most ~15 scenario seconds (never under 0.05 s)."""
    return max(0.05, min(0.25, 15.0 / speed))


def fresh_drill_dir(out: Path) -> Path:
    """``out``, emptied when it holds an earlier drill (its DRILL.txt says so); anything else
    already there is left alone and refused."""
    if out.exists():
        if not (out / "DRILL.txt").is_file():
            if any(out.iterdir()):
                raise SystemExit(f"demo: {out} exists and is not a drill folder; move it away or give --out")
        else:
            shutil.rmtree(out)
    return out


def drill_demo(scenario: str, speed: float, scale: float, out: Path, *, console: bool, seed: int = DRILL_SEED) -> int:
    """Run the drill: in the console when ``console``, else headless with progress and score."""
    out = fresh_drill_dir(out)
    rel = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    args = ["drill", "run", scenario, *(["--tui"] if console else []), "--speed", f"{speed:g}", "--scale", f"{scale:g}",
            "--seed", str(seed), "--interval", f"{drill_interval(speed):g}", "--out"]
    print(f"$ leakwatch {' '.join(args)} {rel}", flush=True)
    code = leakwatch([*args, str(out)])
    if console and code == 130:
        # q or ctrl+c in the console: the responder chose to stop; the drill was scored as
        # stopped early. Not a failure of `make demo`.
        print("\n(The drill was stopped early in the console; its score above says so.)")
        code = 0
    print(f"\nThe drill folder {rel}/ holds the generated logs and their ground truth (source/), the database, "
          "run.json and the score (score.md, score.json). Look at it again in the console:\n"
          f"  .venv/bin/leakwatch tui --db {rel}/drill.duckdb --config {rel}/leakwatch.toml\n"
          "Other scenarios: .venv/bin/leakwatch drill list; the scan demo: make demo-scan")
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scan", action="store_true", help="the scan-and-explore demo instead of the drill")
    p.add_argument("--scenario", default=DRILL_SCENARIO, help=f"drill scenario (default {DRILL_SCENARIO})")
    p.add_argument("--speed", type=float, default=None,
                   help=f"scenario seconds per real second (default $LEAKWATCH_DEMO_SPEED or {DRILL_SPEED:g})")
    p.add_argument("--scale", type=float, default=None,
                   help="background volume (default $LEAKWATCH_DEMO_SCALE or 1)")
    p.add_argument("--out", default=str(OUT / DRILL_DIR_NAME), help="drill folder (default demo-out/drill)")
    p.add_argument("--headless", action="store_true", help="no console even in a terminal")
    args = p.parse_args(argv)
    if args.scan:
        return scan_demo()
    speed = args.speed if args.speed is not None else _env_float("LEAKWATCH_DEMO_SPEED", DRILL_SPEED)
    scale = args.scale if args.scale is not None else _env_float("LEAKWATCH_DEMO_SCALE", 1.0)
    console = not args.headless and sys.stdin.isatty() and sys.stdout.isatty()
    return drill_demo(args.scenario, speed, scale, Path(args.out).resolve(), console=console)


if __name__ == "__main__":
    sys.exit(main())
