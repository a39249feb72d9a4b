"""Regenerate docs/watch-console.svg: ``leakwatch watch PATH --tui``, the incident console with
the watch running inside it, exported by the app itself (``App.save_screenshot``).

The followed folder is empty when the console opens; then the synthetic logs of the drill
`make demo` runs (same scenario and seed: fake values in the real formats) land in it at once,
and the picture is saved once the watch has opened the incidents. The times in the banner
and the deadlines are the real clock's, so they differ from run to run.

    python scripts/live_screenshot.py [--out docs] [--size 120x30] [--theme dark|light]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from demo import DRILL_SCENARIO, DRILL_SEED
from drill_screenshot import _until, save_settled

#: Shoot once this many incidents are open.
INCIDENTS = 3


async def shoot(app, source: Path, logs: Path, out: Path, name: str, timeout: float = 90.0) -> Path:
    async with app.run_test(notifications=True) as pilot:
        await _until(pilot, lambda: app.live_state.get("cycles", 0) >= 1, timeout, "its first cycle")
        for f in sorted(source.rglob("*")):
            if f.is_file() and f.name not in ("manifest.json", "timeline.json"):
                dest = logs / f.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
        await _until(pilot, lambda: app.live_state.get("opened", 0) >= INCIDENTS, timeout, f"{INCIDENTS} incidents")
        path = await save_settled(pilot, out, name, pause=0.3)
        await pilot.press("q")
    app.wait_watch(60)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder for the SVG (default: docs/)")
    p.add_argument("--size", default="120x30", help="terminal size COLSxROWS (default 120x30)")
    p.add_argument("--theme", choices=("dark", "light"), default="dark")
    args = p.parse_args(argv)

    from leakwatch.drills.generate import generate
    from leakwatch.drills.scenarios import find_scenario
    from leakwatch.tui.app import DARK_THEME, LIGHT_THEME
    from leakwatch.tui.live import make_live_app
    from leakwatch.watch import Watcher

    cols, rows = (int(x) for x in args.size.lower().split("x"))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lw-live-shot-") as tmp:
        os.chdir(tmp)  # the banner shows the followed path as given: "logs"
        generate(find_scenario(DRILL_SCENARIO), DRILL_SEED, Path(tmp) / "source")
        Path("logs").mkdir()
        w = Watcher(["logs"], "incident.duckdb", notify=False).open()
        try:
            app = make_live_app(w, interval=0.25, size=(cols, rows),
                                theme=LIGHT_THEME if args.theme == "light" else DARK_THEME)
            written = asyncio.run(shoot(app, Path(tmp) / "source", Path("logs"), out, "watch-console.svg"))
        finally:
            w.close()
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
