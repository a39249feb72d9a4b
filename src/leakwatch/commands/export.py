"""``leakwatch export``: placeholder until its issue-3 work lands (registered so the CLI wiring is fixed)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("export", help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from leakwatch.errors import UsageError

    raise UsageError("'leakwatch export' is not available yet")
