"""Shared fixtures for the scan tests: the real CLI, in-process and as a subprocess, and read-only
queries on the DuckDB file it wrote."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import duckdb
import pytest
from hypothesis import settings

from leakwatch.cli import main

# The property tests (native scanner against the reference engine, maskers, …) draw the same
# examples on every run by default, so that a CI run on a clean clone cannot fail on a draw no
# earlier run made. HYPOTHESIS_PROFILE=explore draws new ones each run (to look for trouble).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@dataclass
class CliResult:
    rc: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _restore_umask():
    """``leakwatch.cli.main`` sets the process umask to 0o077; keep that from leaking into
    other tests."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.fixture
def cli(capsys):
    """Run ``leakwatch ARGS`` in this process; returns (rc, stdout, stderr)."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse usage errors
            rc = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(int(rc), out, err)

    return run


@pytest.fixture
def cli_proc():
    """Run ``python -m leakwatch ARGS`` as a subprocess (own cwd optional)."""

    def run(*args: str, cwd=None, timeout: float = 120) -> CliResult:
        p = subprocess.run([sys.executable, "-m", "leakwatch", *map(str, args)], capture_output=True,
                           text=True, cwd=cwd, timeout=timeout)
        return CliResult(p.returncode, p.stdout, p.stderr)

    return run


@pytest.fixture
def query():
    """``query(db, sql, *params)`` → rows, from a read-only connection closed right after."""

    def run(db, sql: str, *params):
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    return run
