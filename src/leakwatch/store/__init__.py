"""The findings database (DuckDB): connection and key, migrations, bulk ingest, read queries."""
from __future__ import annotations

from leakwatch.errors import StoreError
from leakwatch.store.db import Store, key_path_for, wal_path_for
from leakwatch.store.ingest import FINDING_COLUMNS, OPTIONAL_COLUMNS
from leakwatch.store.migrations import MIGRATIONS, Migration

__all__ = [
    "FINDING_COLUMNS",
    "MIGRATIONS",
    "OPTIONAL_COLUMNS",
    "Migration",
    "Store",
    "StoreError",
    "key_path_for",
    "wal_path_for",
]
