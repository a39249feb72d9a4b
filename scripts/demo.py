"""`make demo`: generate realistic sample logs with planted (fictional) leaks and scan them.

The sample logs come from the benchmark's deterministic generator (bench/corpus.py), sorted
into one file per source: Salesforce EventLogFile CSV per event type, API Gateway JSON, Heroku
router, Mule 4 (gzipped), nginx and JSON app logs with LLM request bodies, about 2% of lines
carrying fake PII or secrets. Then the real `leakwatch scan` runs on them: findings with their
fields, destinations and alerts; the stored findings are queried back, masked, with where their
data went.
"""
from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.corpus import _generate  # noqa: E402

from leakwatch.cli import main as leakwatch  # noqa: E402

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


if __name__ == "__main__":
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
    sys.exit(0 if code in (0, 1) else code)
