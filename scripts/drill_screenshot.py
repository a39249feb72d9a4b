"""Regenerate docs/drill-console.svg: a breach drill live in the incident console (the picture
at the top of the README), exported by the app itself (``App.save_screenshot``).

It runs the drill `make demo` runs (same scenario and seed) in the console, with Textual's
headless driver: fast through the first incidents, then at the demo's 60x until all four are
open and notified, and saves the screen as it is then (the toasts are the receiver's
notifications); then it stops the drill. The values in the picture are the drill's synthetic
ones; the scenario time shown differs a little from run to run (the drill runs against the
real clock).

    python scripts/drill_screenshot.py [--out docs] [--size 120x30] [--theme dark|light]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from demo import DRILL_SCENARIO, DRILL_SEED

#: Scenario seconds per real second up to the first incidents, and for the picture.
FAST, SPEED = 600.0, 60.0
#: Speed up until this many incidents are open; shoot once this many are open and notified.
FIRST, INCIDENTS, NOTIFIED = 2, 4, 4


async def _until(pilot, cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(0.1)
        if cond():
            return
    raise SystemExit(f"the console did not get to {what} within {timeout:g} s")


async def shoot(app, out: Path, name: str, timeout: float = 90.0) -> Path:
    """Run ``app`` (a DrillApp) until the drill has opened and notified its incidents, save the
    screen as ``out/name``, then stop the drill."""
    async with app.run_test(notifications=True) as pilot:
        s = lambda: app.drill_state
        await _until(pilot, lambda: s().get("incidents", 0) >= FIRST, timeout, f"{FIRST} incidents")
        app.drill_clock.set_speed(SPEED)
        app.clear_notifications()
        await _until(pilot, lambda: s().get("incidents", 0) >= INCIDENTS and s().get("sent", 0) >= NOTIFIED, timeout,
                     f"{INCIDENTS} notified incidents")
        path = await save_settled(pilot, out, name)
        await pilot.press("q")
    app.wait_drill(60)
    return path


async def save_settled(pilot, out: Path, name: str, pause: float = 0.2) -> Path:
    """Let the last reload, the banner and the toasts catch up, then save the screen as
    ``out/name``, readable by all (the database code narrows the process's umask while it
    writes, and a watch's thread writes all the time)."""
    app = pilot.app
    for _ in range(5):
        await pilot.pause(pause)
        await app.workers.wait_for_complete()
    path = Path(app.save_screenshot(name, str(out)))
    path.chmod(0o644)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder for the SVG (default: docs/)")
    p.add_argument("--size", default="120x30", help="terminal size COLSxROWS (default 120x30)")
    p.add_argument("--theme", choices=("dark", "light"), default="dark")
    args = p.parse_args(argv)

    from leakwatch.drills.scenarios import find_scenario
    from leakwatch.tui.app import DARK_THEME, LIGHT_THEME
    from leakwatch.tui.drill import make_drill_app

    cols, rows = (int(x) for x in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lw-drill-shot-") as tmp:
        app = make_drill_app(find_scenario(DRILL_SCENARIO), Path(tmp) / "drill", seed=DRILL_SEED, speed=FAST,
                             interval=0.05, size=(cols, rows), theme=LIGHT_THEME if args.theme == "light" else DARK_THEME)
        written = asyncio.run(shoot(app, out, "drill-console.svg"))
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
