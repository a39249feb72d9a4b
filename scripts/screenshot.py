"""Regenerate docs/scan-summary.svg: the summary `make demo` prints, recorded by rich as SVG."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from rich.console import Console  # noqa: E402

from demo import LOGS, OUT, generate  # noqa: E402
from leakwatch.pipeline import scan_paths  # noqa: E402
from leakwatch.report import print_summary  # noqa: E402

if __name__ == "__main__":
    generate()
    os.chdir(ROOT)
    db = OUT / "screenshot.duckdb"
    for p in (db, Path(f"{db}.wal"), Path(f"{db}.key")):
        p.unlink(missing_ok=True)
    summary = scan_paths([str(LOGS.relative_to(ROOT))], str(db.relative_to(ROOT)), workers=2)
    console = Console(record=True, width=104, force_terminal=True, highlight=False)
    console.print("$ leakwatch scan demo-out/logs --db demo-out/screenshot.duckdb --workers 2\n")
    print_summary(summary, console)
    (ROOT / "docs").mkdir(exist_ok=True)
    console.save_svg(str(ROOT / "docs" / "scan-summary.svg"), title="leakwatch scan")
    print("wrote docs/scan-summary.svg")
