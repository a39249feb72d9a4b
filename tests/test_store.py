"""The findings store against real DuckDB files: migrations, file modes, key, ingest, queries."""
from __future__ import annotations

import hmac
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from leakwatch.errors import StoreError
from leakwatch.store import MIGRATIONS, Store, key_path_for, wal_path_for
from leakwatch.store.migrations import migration_version
from leakwatch.store import queries as q

PATH = "/var/log/app/service.log"


def make_batch(n: int, seed: int = 0, *, line0: int = 0, raw: bool = False) -> dict:
    """n findings on consecutive lines, value hashes fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    batch = {
        "line": np.arange(line0 + 1, line0 + n + 1, dtype=np.int64),
        "start_byte": rng.integers(0, 200, n).astype(np.int32),
        "end_byte": rng.integers(200, 400, n).astype(np.int32),
        "rule_id": ["email.basic"] * n,
        "entity": ["EMAIL"] * n,
        "confidence": rng.random(n),
        "score_base": np.full(n, 0.6),
        "score_validator": np.full(n, 0.2),
        "score_context": np.full(n, 0.1),
        "severity": ["high"] * n,
        "severity_rank": np.full(n, 3, dtype=np.int8),
        "field": ["customer.email"] * n,
        "masked": ["j***@example.com"] * n,
        "value_hash": [rng.bytes(32).hex() for _ in range(n)],
    }
    if raw:
        batch["raw_value"] = [f"person{i}@example.com" for i in range(n)]
    return batch


def take(batch: dict, rows) -> dict:
    """The given rows of a batch (numpy fancy indexing on every column)."""
    return {k: (v[rows] if isinstance(v, np.ndarray) else list(np.asarray(v, dtype=object)[rows])) for k, v in batch.items()}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "leakwatch.duckdb"


@pytest.fixture
def store(db: Path):
    with Store.open(db) as s:
        yield s


def new_source(store: Store, path: str = PATH, *, rules_hash: str = "rules-v1") -> tuple[int, int]:
    scan_id = store.begin_scan(["leakwatch", "scan", path], rules_hash, 2)
    return scan_id, store.begin_source(scan_id, path, 1000, 123, None)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# -- migrations -------------------------------------------------------------------------------


def test_migrations_apply_once_and_are_recorded(db: Path):
    with Store.open(db) as s:
        rows = s.con.execute("SELECT version, name, applied_at FROM schema_migrations").fetchall()
        tables = {r[0] for r in s.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert [(v, n) for v, n, _ in rows][:3] == [
        (1, "m001_initial"), (2, "m002_source_entity_counts"), (3, "m003_context_events_salesforce")]
    assert [(v, n) for v, n, _ in rows] == [(migration_version(m), m.__name__) for m in MIGRATIONS]
    assert {"scans", "sources", "findings", "scan_errors", "schema_migrations", "events", "sf_prefixes",
            "pull_checkpoints", "pulled_files"} <= tables

    with Store.open(db) as s:
        again = s.con.execute("SELECT version, name, applied_at FROM schema_migrations").fetchall()
    assert again == rows


def test_new_migration_is_applied_on_reopen_and_only_once(db: Path):
    def m099_add_note(con):
        con.execute("ALTER TABLE scans ADD COLUMN note VARCHAR")

    with Store.open(db) as s:
        s.begin_scan(["leakwatch"], "r", 1)
    migrations = (*MIGRATIONS, m099_add_note)
    for _ in range(2):
        with Store.open(db, migrations=migrations) as s:
            versions = s.con.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
            assert versions == [(migration_version(m), m.__name__) for m in MIGRATIONS] + [(99, "m099_add_note")]
            assert s.con.execute("SELECT count(*), count(note) FROM scans").fetchone() == (1, 0)

    with pytest.raises(StoreError, match=r"schema version 99 .* newer"):
        Store.open(db)


def test_failing_migration_is_rolled_back(db: Path):
    def m099_broken(con):
        con.execute("CREATE TABLE half_done (x INTEGER)")
        con.execute("SELECT * FROM no_such_table")

    Store.open(db).close()
    with pytest.raises(StoreError, match=r"leakwatch\.duckdb: migration m099_broken failed"):
        Store.open(db, migrations=(*MIGRATIONS, m099_broken))
    with Store.open(db) as s:
        assert s.con.execute("SELECT max(version) FROM schema_migrations").fetchone() == (migration_version(MIGRATIONS[-1]),)
        assert not s.con.execute("SELECT * FROM duckdb_tables() WHERE table_name = 'half_done'").fetchall()


def test_read_only_refuses_pending_migrations_and_writes(db: Path):
    with pytest.raises(StoreError, match="no such database"):
        Store.open(db, read_only=True)
    Store.open(db).close()

    def m099_noop(con):
        pass

    with pytest.raises(StoreError, match="schema upgrade"):
        Store.open(db, read_only=True, migrations=(*MIGRATIONS, m099_noop))
    with Store.open(db, read_only=True) as s:
        assert q.count_findings(s.con) == 0
        with pytest.raises(StoreError, match="read-only"):
            s.begin_scan(["x"], "r", 1)


# -- files, modes, key ------------------------------------------------------------------------


def test_db_wal_and_key_are_private_whatever_the_umask(db: Path):
    old = os.umask(0o022)
    try:
        with Store.open(db) as s:
            scan_id, source_id = new_source(s)
            s.insert_findings(scan_id, source_id, PATH, make_batch(100))
            wal = wal_path_for(db)
            # Below DuckDB's 16 MB checkpoint threshold the WAL stays until close.
            assert wal.exists()
            assert mode(db) == 0o600
            assert mode(wal) == 0o600
            assert mode(key_path_for(db)) == 0o600
            s.checkpoint()
            assert not wal.exists()
            # The first write after a checkpoint creates the WAL again.
            s.add_error(scan_id, PATH, 7, "huge_line", "line longer than 1 MiB")
            assert mode(wal) == 0o600
        os.chmod(db, 0o644)
        os.chmod(key_path_for(db), 0o640)
        Store.open(db).close()
        assert mode(db) == 0o600
        assert mode(key_path_for(db)) == 0o600
    finally:
        os.umask(old)


def test_key_is_created_once_and_persists(db: Path):
    with Store.open(db) as s:
        key = s.key
        h = s.hash_value(b"jane@example.com")
    text = key_path_for(db).read_text()
    assert len(key) == 32
    assert text.strip() == key.hex()
    with Store.open(db) as s:
        assert s.key == key
        assert s.hash_value(b"jane@example.com") == h
    assert h == hmac.new(key, b"jane@example.com", "sha256").hexdigest()


def test_hash_differs_across_databases(tmp_path: Path):
    with Store.open(tmp_path / "a.duckdb") as a, Store.open(tmp_path / "b.duckdb") as b:
        assert a.hash_value(b"4111111111111111") == a.hash_value(b"4111111111111111")
        assert a.hash_value(b"4111111111111111") != b.hash_value(b"4111111111111111")
        assert a.hash_value(b"x") != a.hash_value(b"y")


def test_missing_key_with_findings_is_an_error(db: Path):
    with Store.open(db) as s:
        scan_id, source_id = new_source(s)
        s.insert_findings(scan_id, source_id, PATH, make_batch(3))
    key_path_for(db).unlink()
    with pytest.raises(StoreError) as err:
        Store.open(db)
    msg = str(err.value)
    assert str(db) in msg and "key" in msg and "joined" in msg and "3 stored findings" in msg
    assert not key_path_for(db).exists()


def test_missing_key_without_findings_gets_a_new_key(db: Path):
    with Store.open(db) as s:
        old = s.key
    key_path_for(db).unlink()
    with Store.open(db) as s:
        assert s.key != old
    assert mode(key_path_for(db)) == 0o600


def test_corrupt_key_file_is_an_error(db: Path):
    Store.open(db).close()
    key_path_for(db).write_text("not hex\n")
    with pytest.raises(StoreError, match=r"leakwatch\.duckdb\.key"):
        Store.open(db)


def test_not_a_database_names_the_file(db: Path):
    db.write_text("2024-03-11 12:00:00 INFO this is a log file, not a database\n" * 200)
    with pytest.raises(StoreError) as err:
        Store.open(db)
    assert str(db) in str(err.value)
    assert "not a DuckDB database" in str(err.value)
    assert isinstance(err.value.__cause__, duckdb.Error)


def test_database_locked_by_another_process(db: Path):
    Store.open(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from leakwatch.store import Store\ns = Store.open({str(db)!r})\nprint('ready', flush=True)\ninput()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError) as err:
            Store.open(db)
        assert str(db) in str(err.value)
        assert f"in use by process {holder.pid}" in str(err.value)
    finally:
        holder.communicate("\n", timeout=30)


# -- ingest -----------------------------------------------------------------------------------


def test_duplicate_batch_inserts_nothing(store: Store):
    scan_id, source_id = new_source(store)
    batch = make_batch(1000)
    assert store.insert_findings(scan_id, source_id, PATH, batch) == 1000
    assert store.insert_findings(scan_id, source_id, PATH, batch) == 0
    assert q.count_findings(store.con) == 1000


def test_rescan_of_grown_file_adds_only_new_findings(store: Store):
    scan1, src1 = new_source(store)
    first = make_batch(500, seed=1)
    store.insert_findings(scan1, src1, PATH, first)
    store.finish_source(src1, "ok", 500, 500, "h1")

    scan2, src2 = new_source(store)
    grown = {k: (np.concatenate([v, w]) if isinstance(v, np.ndarray) else v + w)
             for (k, v), w in zip(first.items(), make_batch(200, seed=2, line0=500).values())}
    assert store.insert_findings(scan2, src2, PATH, grown) == 200
    assert q.count_findings(store.con, scan2) == 200

    _, other = new_source(store, "/var/log/app/copy.log")
    assert store.insert_findings(scan2, other, "/var/log/app/copy.log", first) == 500


def test_duplicates_within_one_batch_are_stored_once(store: Store):
    scan_id, source_id = new_source(store)
    batch = make_batch(10)
    doubled = take(batch, np.r_[np.arange(10), [3, 3, 7]])
    assert store.insert_findings(scan_id, source_id, PATH, doubled) == 10

    # Same place and rule but a different value is a different finding.
    other = take(make_batch(10, seed=9), np.arange(10))
    other["line"], other["start_byte"] = batch["line"], batch["start_byte"]
    assert store.insert_findings(scan_id, source_id, PATH, other) == 10


def test_raw_value_is_null_unless_provided(store: Store):
    scan_id, source_id = new_source(store)
    store.insert_findings(scan_id, source_id, PATH, make_batch(5, seed=1))
    store.insert_findings(scan_id, source_id, PATH, make_batch(5, seed=2, line0=5, raw=True))
    rows = store.con.execute("SELECT line, raw_value FROM findings ORDER BY line").fetchall()
    assert [r for _, r in rows[:5]] == [None] * 5
    assert all(r.startswith("person") for _, r in rows[5:])
    assert "raw_value" not in q.page_findings(store.con)[0]
    assert q.page_findings(store.con, include_raw=True, after_id=5)[0]["raw_value"] == "person0@example.com"


def test_bad_batches_are_refused(store: Store):
    scan_id, source_id = new_source(store)
    batch = make_batch(4)
    with pytest.raises(ValueError, match="lacks columns"):
        store.insert_findings(scan_id, source_id, PATH, {k: v for k, v in batch.items() if k != "entity"})
    with pytest.raises(ValueError, match="has 3 rows, expected 4"):
        store.insert_findings(scan_id, source_id, PATH, {**batch, "masked": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="not a source recorded"):
        store.insert_findings(scan_id, source_id, "/elsewhere.log", batch)
    with pytest.raises(StoreError, match=r"leakwatch\.duckdb: cannot store findings"):
        store.insert_findings(scan_id, source_id, PATH, {**batch, "severity_rank": np.full(4, 9, np.int8)})
    assert q.count_findings(store.con) == 0
    assert store.insert_findings(scan_id, source_id, PATH, make_batch(0)) == 0


def test_findings_survive_a_later_failure(db: Path):
    with Store.open(db) as s:
        scan_id, source_id = new_source(s)
        s.insert_findings(scan_id, source_id, PATH, make_batch(300))
        with pytest.raises(StoreError):
            s.insert_findings(scan_id, source_id, PATH, {**make_batch(10, line0=300), "rule_id": [None] * 10})
        s.add_error(scan_id, PATH, None, "truncated_gzip", "unexpected end of stream")
    with Store.open(db) as s:
        assert q.count_findings(s.con) == 300
        assert q.list_errors(s.con, scan_id)[0]["kind"] == "truncated_gzip"


def test_findings_survive_a_crash(db: Path):
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import make_batch, PATH
        from leakwatch.store import Store
        s = Store.open({str(db)!r})
        scan = s.begin_scan(["leakwatch", "scan"], "rules-v1", 4)
        src = s.begin_source(scan, PATH, 10, 20, "gzip")
        assert s.insert_findings(scan, src, PATH, make_batch(2000)) == 2000
        os._exit(3)  # no close, no checkpoint, no finish_scan
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert wal_path_for(db).exists()
    with Store.open(db) as s:
        assert q.count_findings(s.con) == 2000
        assert q.get_scan(s.con, 1)["status"] == "running"
        assert s.mark_interrupted_scans() == 1
        scan = q.get_scan(s.con, 1)
        assert (scan["status"], scan["n_findings"]) == ("interrupted", 2000)
        assert q.summary_by_file(s.con)[0]["status"] == "error"


def test_ingest_timing_50k_rows(store: Store, capsys):
    scan_id, source_id = new_source(store)
    store.insert_findings(scan_id, source_id, PATH, make_batch(1000, seed=99, line0=10**6))  # warm-up
    timings = []
    for i in range(5):
        batch = make_batch(50_000, seed=i, line0=i * 50_000)
        t0 = time.perf_counter()
        assert store.insert_findings(scan_id, source_id, PATH, batch) == 50_000
        timings.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    assert store.insert_findings(scan_id, source_id, PATH, batch) == 0
    dup_ms = (time.perf_counter() - t0) * 1000
    with capsys.disabled():
        print(
            f"\ningest 50k rows: median {sorted(timings)[2]:.0f} ms, min {min(timings):.0f} ms, "
            f"max {max(timings):.0f} ms (includes DuckDB auto-checkpoints); duplicate batch {dup_ms:.0f} ms"
        )


# -- lifecycle and queries --------------------------------------------------------------------


def test_scan_lifecycle_and_summaries(store: Store):
    scan_id = store.begin_scan(["leakwatch", "scan", "--workers", "2", "logs/"], "rules-v1", 2)
    a = store.begin_source(scan_id, "logs/a.log", 100, 1, None)
    b = store.begin_source(scan_id, "logs/b.log.gz", 50, 2, "gzip")
    batch = make_batch(6)
    batch["entity"] = ["EMAIL", "EMAIL", "EMAIL", "US_SSN", "US_SSN", "AWS_KEY"]
    batch["severity"] = ["medium", "medium", "medium", "high", "high", "critical"]
    batch["severity_rank"] = np.array([2, 2, 2, 3, 3, 4], dtype=np.int8)
    batch["value_hash"][1] = batch["value_hash"][0]
    assert store.insert_findings(scan_id, a, "logs/a.log", batch) == 6
    store.finish_source(a, "ok", 40, 6, "sha-a")
    store.add_error(scan_id, "logs/b.log.gz", None, "truncated_gzip", "unexpected end of stream")
    store.finish_source(b, "error", 3, 0, None, error="truncated gzip")
    store.finish_scan(scan_id, "partial", n_files=2, n_bytes=150, n_records=43)

    scan = q.get_scan(store.con, scan_id)
    assert scan["status"] == "partial" and scan["finished_at"] is not None
    assert (scan["n_findings"], scan["n_errors"], scan["workers"]) == (6, 1, 2)
    assert scan["argv"] == "leakwatch scan --workers 2 logs/"
    assert q.latest_scan_id(store.con) == scan_id
    assert [s["scan_id"] for s in q.list_scans(store.con)] == [scan_id]

    assert q.summary_by_entity(store.con, scan_id) == [
        {"entity": "AWS_KEY", "severity": "critical", "severity_rank": 4, "count": 1, "distinct_values": 1},
        {"entity": "US_SSN", "severity": "high", "severity_rank": 3, "count": 2, "distinct_values": 2},
        {"entity": "EMAIL", "severity": "medium", "severity_rank": 2, "count": 3, "distinct_values": 2},
    ]
    assert q.summary_by_entity(store.con, source_path="logs/b.log.gz") == []
    assert sum(r["count"] for r in q.summary_by_entity(store.con, source_path="logs/a.log")) == 6
    assert q.summary_by_file(store.con, scan_id) == [
        {"path": "logs/a.log", "n_findings": 6, "n_records": 40, "bytes": 100, "status": "ok", "error": None},
        {"path": "logs/b.log.gz", "n_findings": 0, "n_records": 3, "bytes": 50, "status": "error", "error": "truncated gzip"},
    ]
    assert q.count_findings(store.con) == 6
    assert q.count_findings(store.con, scan_id, min_severity_rank=3) == 3
    assert q.count_findings(store.con, scan_id + 1) == 0
    assert [e["message"] for e in q.list_errors(store.con, scan_id)] == ["unexpected end of stream"]
    with pytest.raises(ValueError):
        store.finish_scan(scan_id, "done", n_files=0, n_bytes=0, n_records=0)


def test_source_unchanged(store: Store):
    scan_id = store.begin_scan(["x"], "rules-v1", 1)
    src = store.begin_source(scan_id, PATH, 1000, 555, None)
    assert not store.source_unchanged(PATH, 1000, 555, "rules-v1")  # still running
    store.finish_source(src, "ok", 10, 0, "sha")
    assert store.source_unchanged(PATH, 1000, 555, "rules-v1")
    assert not store.source_unchanged(PATH, 1001, 555, "rules-v1")
    assert not store.source_unchanged(PATH, 1000, 556, "rules-v1")
    assert not store.source_unchanged(PATH, 1000, 555, "rules-v2")
    assert not store.source_unchanged("/other.log", 1000, 555, "rules-v1")
    failed = store.begin_source(scan_id, "/bad.log", 5, 5, None)
    store.finish_source(failed, "error", 0, 0, None, error="permission denied")
    assert not store.source_unchanged("/bad.log", 5, 5, "rules-v1")


def test_paging_walks_everything_once_in_order(store: Store):
    scan_id, source_id = new_source(store)
    batch = make_batch(2500)
    batch["severity_rank"][::2] = 1
    store.insert_findings(scan_id, source_id, PATH, batch)
    ids = [f["finding_id"] for f in q.iter_findings(store.con, scan_id, page_size=300)]
    assert len(ids) == 2500 and ids == sorted(set(ids))
    high = list(q.iter_findings(store.con, scan_id, page_size=100, min_severity_rank=3))
    assert len(high) == 1250 and {f["severity_rank"] for f in high} == {3}
    page = q.page_findings(store.con, scan_id, after_id=ids[99], limit=50)
    assert [f["finding_id"] for f in page] == ids[100:150]
    assert page[0]["source_path"] == PATH and page[0]["masked"] == "j***@example.com"
    assert list(q.iter_findings(store.con, scan_id + 1)) == []


def test_closed_store_is_an_error(db: Path):
    s = Store.open(db)
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.begin_scan(["x"], "r", 1)


def test_the_list_of_tables_is_the_migrations_own():
    """cli names a missing leakwatch table (an altered database, exit 3) only for these."""
    import inspect
    import re

    from leakwatch.store import migrations

    assert migrations.TABLES == set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", inspect.getsource(migrations)))
