"""Helpers shared by test modules (import as ``from helpers import ...``; pytest puts this folder
on sys.path)."""
from __future__ import annotations

import duckdb


def read_rows(db, sql: str, params=None) -> list[tuple]:
    """Rows of ``sql`` from a read-only connection to ``db``, closed right after."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params or [])).fetchall()
    finally:
        con.close()
