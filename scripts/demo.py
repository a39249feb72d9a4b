"""`make demo`: generate realistic sample logs with planted (fictional) leaks and scan them.

The sample logs come from the benchmark's deterministic generator (bench/corpus.py): Salesforce
EventLogFile CSV, API Gateway JSON, Heroku router, Mule 4, nginx and JSON app logs with LLM
request bodies, about 2% of lines carrying fake PII or secrets. One file is gzipped. Then the
real `leakwatch scan` runs on them and the stored findings are queried back, masked.
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
FILES = [("gateway-and-apps.log", 1, 12), ("middleware.log", 2, 6), ("eventlogfile-export.log", 3, 4)]


def generate() -> None:
    if LOGS.exists():
        shutil.rmtree(LOGS)
    LOGS.mkdir(parents=True)
    for name, seed, mb in FILES:
        path = LOGS / name
        with open(path, "wb") as out:
            manifest = _generate(seed, mb << 20, out)
        if name == "middleware.log":
            with open(path, "rb") as src, gzip.open(str(path) + ".gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            path.unlink()
            name += ".gz"
        print(f"generated {LOGS.relative_to(ROOT)}/{name}: {manifest['lines']:,} lines, "
              f"{manifest['pii_lines']:,} with planted fake PII or secrets")


def show_top(db: Path) -> None:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        """SELECT severity, entity, rule_id, regexp_replace(source_path, '.*/', ''), line, field, masked
           FROM findings ORDER BY severity_rank DESC, confidence DESC, finding_id LIMIT 12"""
    ).fetchall()
    print("\nMost severe findings, as stored (masked previews; raw values are not stored by default):")
    for sev, ent, rule, src, line, field, masked in rows:
        print(f"  {sev:<8} {ent:<24} {src}:{line:<7} {(field or '-'):<14} {masked}")
    con.close()


if __name__ == "__main__":
    generate()
    db = OUT / "leakwatch.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    print(f"\n$ leakwatch scan {LOGS.relative_to(ROOT)} --db {db.relative_to(ROOT)} --workers 2\n")
    code = leakwatch(["scan", str(LOGS), "--db", str(db), "--workers", "2"])
    show_top(db)
    print(f"\nleakwatch exited {code} (1 = findings at or above the --fail-on severity, as expected here).")
    print(f"Explore: .venv/bin/python -c \"import duckdb; print(duckdb.connect('{db.relative_to(ROOT)}', read_only=True)"
          ".sql('SELECT entity, count(*) FROM findings GROUP BY 1 ORDER BY 2 DESC'))\"")
    sys.exit(0 if code in (0, 1) else code)
