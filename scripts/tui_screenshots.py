"""Regenerate docs/tui-incident.svg and docs/tui-playbook.svg: the incident console's Incident
and Playbook screens, exported by the app itself (``App.save_screenshot``).

By default the console runs on the fixed test database of tests/tui_support.py (real logs →
real scan → real incidents and responder actions, fake personal data) at its frozen time, so
the pictures are the same on every run. ``--db FILE [--config FILE] --incident N`` shoots a
database of your own at the real time instead.

    python scripts/tui_screenshots.py [--out docs] [--size 120x40] [--theme dark|light]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


async def _settle(pilot, rounds: int = 4) -> None:
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def shoot(app, incident_id: int, out: Path, size: tuple[int, int], step_key: str | None = None) -> list[Path]:
    """Open incident ``incident_id`` and its playbook in ``app``; save both screens as SVG."""
    written = []
    async with app.run_test(size=size) as pilot:
        await _settle(pilot)
        app.open_incident(incident_id)
        await _settle(pilot)
        written.append(Path(app.save_screenshot("tui-incident.svg", str(out))))
        app.open_playbook(incident_id)
        await _settle(pilot)
        if step_key is not None:
            table = app.screen.query_one("#steps")
            table.move_cursor(row=table.get_row_index(step_key))
            await _settle(pilot)
        written.append(Path(app.save_screenshot("tui-playbook.svg", str(out))))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder for the SVGs (default: docs/)")
    p.add_argument("--size", default="120x40", help="terminal size COLSxROWS (default 120x40)")
    p.add_argument("--theme", choices=("dark", "light"), default="dark")
    p.add_argument("--db", help="shoot this database instead of the fixed test database")
    p.add_argument("--config", help="its leakwatch.toml (with --db)")
    p.add_argument("--incident", type=int, help="the incident to show (with --db)")
    args = p.parse_args(argv)

    from leakwatch.tui.app import DARK_THEME, LIGHT_THEME, make_app
    from leakwatch.tui.clock import FrozenClock

    cols, rows = (int(x) for x in args.size.lower().split("x"))
    theme = LIGHT_THEME if args.theme == "light" else DARK_THEME
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.db:
        from leakwatch.config import load_config

        if args.incident is None:
            p.error("--db needs --incident N")
        app = make_app(args.db, config=load_config(args.config), theme=theme)
        written = asyncio.run(shoot(app, args.incident, out, (cols, rows)))
    else:
        from tui_support import FROZEN_NOW, build_tui_db

        with tempfile.TemporaryDirectory(prefix="lw-tui-shots-") as tmp:
            info = build_tui_db(Path(tmp) / "tui.duckdb")
            app = make_app(info["db"], config=info["config"], clock=FrozenClock(FROZEN_NOW), theme=theme)
            pb, step = info["step_started"]
            written = asyncio.run(shoot(app, info["incidents"]["openai"], out, (cols, rows), f"{pb}/{step}"))
    for w in written:
        print(f"wrote {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
