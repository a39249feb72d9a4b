"""The findings database: one DuckDB file, its WAL, and a per-database HMAC key beside it.

Findings hold value hashes, masked values and (on request) raw values, so every file the store
creates is private to the user (mode 0600). DuckDB creates files with the process umask and
recreates the WAL on the first write after each checkpoint, hence the umask is set to 0o077
around the connect and around every write, and whatever already exists is tightened on open.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import stat
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Self

import duckdb

from leakwatch import __version__
from leakwatch.errors import StoreError
from leakwatch.hashing import keyed_hash
from leakwatch.store import ingest
from leakwatch.store.migrations import (
    MIGRATIONS,
    SCAN_STATUSES,
    SOURCE_STATUSES,
    Migration,
    apply_migrations,
    pending_migrations,
)

KEY_BYTES: Final = 32
DEFAULT_MEMORY_LIMIT: Final = "512MB"

# os.umask is process-wide: the lock keeps two threads from restoring each other's value
# mid-write. It is re-entrant because a write may happen inside open().
_UMASK_LOCK = threading.RLock()


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Create files as 0600 / directories as 0700 for the duration of the block."""
    with _UMASK_LOCK:
        old = os.umask(0o077)
        try:
            yield
        finally:
            os.umask(old)


def key_path_for(db_path: str | Path) -> Path:
    """Where the HMAC key of the database at ``db_path`` lives: ``<db path>.key``."""
    return Path(f"{db_path}.key")


def wal_path_for(db_path: str | Path) -> Path:
    """DuckDB's write-ahead log for ``db_path``: ``<db path>.wal``."""
    return Path(f"{db_path}.wal")


def _explain_open_error(path: Path, e: duckdb.Error, read_only: bool) -> str:
    msg = str(e)
    if "not a valid DuckDB database" in msg:
        return (
            f"{path}: not a DuckDB database (or it is damaged); point leakwatch at its own database "
            f"file, or move this file aside and a new database will be created"
        )
    if "Could not set lock" in msg or "Conflicting lock" in msg:
        pid = re.search(r"PID (\d+)", msg)
        who = f"process {pid.group(1)}" if pid else "another process"
        return (
            f"{path}: the database is in use by {who}; wait for it to finish (only one process "
            f"may write a DuckDB file at a time) or use a different database file. A running "
            f"'leakwatch watch' keeps its file open: to work incidents while it follows the logs, "
            f"run the console inside it ('leakwatch watch PATH... --tui')"
        )
    if read_only and "does not exist" in msg:
        return f"{path}: no such database; run a scan first to create it"
    return f"{path}: cannot open the database: {msg}"


def _tighten(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if stat.S_IMODE(mode) & 0o077:
        try:
            os.chmod(path, 0o600)
        except OSError as e:
            raise StoreError(
                f"{path}: readable by other users (mode {stat.S_IMODE(mode):o}) and cannot be "
                f"restricted to 0600: {e.strerror}; fix its owner or permissions"
            ) from e


def _read_key(key_path: Path) -> bytes:
    try:
        text = key_path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise StoreError(f"{key_path}: cannot read the database key: {e}") from e
    if len(key) != KEY_BYTES:
        raise StoreError(
            f"{key_path}: not a leakwatch key (expected {KEY_BYTES * 2} hex digits, found "
            f"{len(text)} characters); restore the original key file"
        )
    return key


_KEY_CHECK_TEXT = b"leakwatch database key check v1"


def _check_key(con: duckdb.DuckDBPyConnection, path: Path, key: bytes, read_only: bool) -> None:
    """Refuse a key that is not the one this database's hashes were made with (a key file
    copied from another database): every new hash would join with nothing stored. The first
    open that has a key records its check value (databases made before the check included)."""
    check = keyed_hash(key, _KEY_CHECK_TEXT)[:32]
    try:
        row = con.execute("SELECT value FROM db_meta WHERE name = 'key_check'").fetchone()
    except duckdb.CatalogException:
        return  # read-only open of a database from before the check (it cannot be migrated here)
    if row is None:
        if not read_only:
            con.execute("INSERT INTO db_meta VALUES ('key_check', ?)", [check])
        return
    if row[0] != check:
        raise StoreError(
            f"{path}: its key file {key_path_for(path)} is not the key this database was made with "
            f"(copied from another database?). Hashes made with it would match nothing stored here. "
            f"Restore this database's own key file, or move both aside to start a new database"
        )


def _create_key(key_path: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(key_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        # Another process created it between our check and now; theirs wins.
        return _read_key(key_path)
    except OSError as e:
        raise StoreError(f"{key_path}: cannot create the database key: {e.strerror}") from e
    try:
        os.write(fd, key.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    # Losing the key after a crash would orphan every hash written under it, so make the new
    # directory entry durable as well.
    with contextlib.suppress(OSError):
        dir_fd = os.open(key_path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return key


def storable_path(path) -> str:
    """A path as the database stores it: file names are bytes, and one that is not UTF-8
    (``x\\xff.log``, which Python holds with surrogate escapes) is written with the odd bytes
    as ``\\xNN`` escapes; DuckDB text must be UTF-8, and one such name must not stop a scan."""
    s = os.fspath(path)
    if isinstance(s, bytes):
        s = os.fsdecode(s)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Store:
    """An open findings database. Create with :meth:`Store.open`; close with :meth:`close`
    or use as a context manager.

    Every write method commits before it returns, so what was stored survives a later crash or a
    later bad input. One ``Store`` may be shared by threads: writes are serialised; readers in
    other threads should use ``store.con.cursor()``.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, key: bytes | None, read_only: bool):
        """Use :meth:`Store.open`."""
        self._con: duckdb.DuckDBPyConnection | None = con
        self._path = path
        self._key = key
        self._read_only = read_only

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        read_only: bool = False,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
        need_key: bool = True,
    ) -> Self:
        """Open (creating if needed) the database at ``path``, migrate it, and load its key.
        ``need_key=False`` (read-only readers that hash nothing: export, flows): the key file
        is not read, so a database copied without its key can still be exported.

        ``memory_limit`` and ``threads`` are DuckDB settings (``threads=None``: DuckDB's default,
        one per core). ``migrations`` exists for tests; the default is the project's list.
        A read-only open applies no migration and creates no key; it fails if the database needs
        migrating. Raises :class:`StoreError` with a message naming the file.
        """
        path = Path(path)
        existed = path.exists()
        config: dict[str, Any] = {"memory_limit": memory_limit}
        if threads is not None:
            config["threads"] = threads
        try:
            with private_umask():
                con = duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.Error as e:
            raise StoreError(_explain_open_error(path, e, read_only)) from e
        try:
            if not read_only:
                for p in (path, wal_path_for(path), key_path_for(path)):
                    _tighten(p)
            if _foreign(con):
                raise StoreError(f"{path}: a DuckDB database but not leakwatch's (it has tables and no leakwatch "
                                 f"schema); leakwatch does not add its tables to it: point --db at a leakwatch "
                                 f"database or a new file")
            with private_umask():
                if read_only:
                    if pending_migrations(con, migrations, label=str(path)):
                        raise StoreError(
                            f"{path}: the database needs a schema upgrade; open it once without "
                            f"read-only (e.g. run a scan) to apply it"
                        )
                else:
                    apply_migrations(con, migrations, label=str(path))
            key = cls._load_key(con, path, existed, read_only) if (need_key or not read_only) else None
        except duckdb.Error as e:
            con.close()
            raise StoreError(f"{path}: cannot prepare the database: {e}") from e
        except BaseException:
            con.close()
            raise
        return cls(con, path, key, read_only)

    @staticmethod
    def _load_key(con: duckdb.DuckDBPyConnection, path: Path, existed: bool, read_only: bool) -> bytes | None:
        had_key = key_path_for(path).exists()
        key = Store._find_key(con, path, existed, read_only)
        if key is not None:
            if not had_key:
                # A new key for a database without findings (its key file lost): nothing stored
                # was hashed with the old one, so its check value goes too.
                con.execute("DELETE FROM db_meta WHERE name = 'key_check'")
            _check_key(con, path, key, read_only)
        return key

    @staticmethod
    def _find_key(con: duckdb.DuckDBPyConnection, path: Path, existed: bool, read_only: bool) -> bytes | None:
        key_path = key_path_for(path)
        if key_path.exists():
            return _read_key(key_path)
        n_findings = 0
        if existed:
            n_findings = con.execute("SELECT count(*) FROM findings").fetchone()[0]
        if n_findings:
            raise StoreError(
                f"{path}: its key file {key_path} is missing. The {n_findings} stored findings were "
                f"hashed with that key, so new value hashes could no longer be joined with them. "
                f"Restore {key_path} from a backup, or move {path} aside to start a new database"
            )
        if read_only:
            return None
        return _create_key(key_path)

    def close(self) -> None:
        """Checkpoint and close the database (idempotent)."""
        if self._con is None:
            return
        con, self._con = self._con, None
        try:
            with private_umask():
                con.close()
        except duckdb.Error as e:
            raise StoreError(f"{self._path}: error while closing the database: {e}") from e

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- properties ----------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def key_path(self) -> Path:
        """The file holding this database's HMAC key."""
        return key_path_for(self._path)

    @property
    def read_only(self) -> bool:
        """Whether this store was opened read-only."""
        return self._read_only

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, for :mod:`leakwatch.store.queries`."""
        if self._con is None:
            raise StoreError(f"{self._path}: the database is closed")
        return self._con

    @property
    def key(self) -> bytes:
        """The 32-byte HMAC-SHA256 key value hashes are made with."""
        if self._key is None:
            raise StoreError(
                f"{self._path}: no key file ({self.key_path}) yet; open the database without "
                f"read-only once to create it"
            )
        return self._key

    def hash_value(self, normalized: bytes) -> str:
        """Hex HMAC-SHA256 of a normalised value under this database's key.

        Equal values hash equal within one database and differently across databases, so hashes
        can be joined and counted without storing the value, and are useless elsewhere.
        """
        return keyed_hash(self.key, normalized)

    # -- writes --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._read_only:
            raise StoreError(f"{self._path}: opened read-only, cannot {what}")
        con = self.con
        try:
            with private_umask():
                yield con
        except duckdb.Error as e:
            raise StoreError(f"{self._path}: cannot {what}: {e}") from e

    @contextlib.contextmanager
    def transaction(self, what: str, con: duckdb.DuckDBPyConnection | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """One explicit transaction on ``con`` (default: the store's connection; a thread passes
        its own cursor): committed when the block ends, rolled back on any exception, DuckDB
        errors raised as :class:`StoreError` naming the database and ``what``. Incident changes
        and their audit rows and outbox rows are stored this way: together or not at all."""
        if self._read_only:
            raise StoreError(f"{self._path}: opened read-only, cannot {what}")
        con = con if con is not None else self.con
        with private_umask():
            con.begin()
            try:
                yield con
                con.commit()
            except duckdb.Error as e:
                con.rollback()
                raise StoreError(f"{self._path}: cannot {what}: {e}") from e
            except BaseException:
                con.rollback()
                raise

    def begin_scan(
        self,
        argv: Sequence[str] | str,
        rules_hash: str,
        workers: int,
        *,
        version: str | None = None,
    ) -> int:
        """Record a new scan in status ``running``; return its ``scan_id``.

        ``version`` defaults to the installed leakwatch version.
        """
        # A file name that is not UTF-8 reaches argv with surrogate escapes, like paths do.
        argv_text = storable_path(argv if isinstance(argv, str) else shlex.join(argv))
        with self._write("record a new scan") as con:
            row = con.execute(
                "INSERT INTO scans (argv, rules_hash, workers, version) VALUES (?, ?, ?, ?) RETURNING scan_id",
                [argv_text, rules_hash, workers, version or __version__],
            ).fetchone()
        return int(row[0])

    def finish_scan(
        self,
        scan_id: int,
        status: str,
        *,
        n_files: int,
        n_bytes: int,
        n_records: int,
        n_findings: int | None = None,
        n_errors: int | None = None,
    ) -> None:
        """Close a scan with its final ``status`` and counts.

        ``n_findings`` / ``n_errors`` default to what the database holds for the scan (findings
        new in this scan; duplicates of earlier scans were not stored).
        """
        if status not in SCAN_STATUSES or status == "running":
            raise ValueError(f"bad scan status {status!r}")
        with self._write(f"finish scan {scan_id}") as con:
            con.execute(
                """
                UPDATE scans SET
                    status = $status, finished_at = current_timestamp,
                    n_files = $n_files, n_bytes = $n_bytes, n_records = $n_records,
                    n_findings = coalesce($n_findings,
                        (SELECT count(*) FROM findings WHERE scan_id = $scan)),
                    n_errors = coalesce($n_errors,
                        (SELECT count(*) FROM scan_errors WHERE scan_id = $scan))
                WHERE scan_id = $scan
                """,
                {
                    "status": status,
                    "n_files": n_files,
                    "n_bytes": n_bytes,
                    "n_records": n_records,
                    "n_findings": n_findings,
                    "n_errors": n_errors,
                    "scan": scan_id,
                },
            )

    def mark_interrupted_scans(self) -> int:
        """Mark scans and sources left ``running`` by a process that died; return the scan count.

        Call it right after opening read-write, before starting a scan: DuckDB lets one process
        write a file at a time, so nothing else can still be running them.
        """
        with self._write("mark interrupted scans") as con:
            con.begin()
            try:
                con.execute(
                    "UPDATE sources SET status = 'error', finished_at = current_timestamp,"
                    " error = 'the scan was interrupted before this file finished'"
                    " WHERE status = 'running'"
                )
                n = con.execute(
                    "UPDATE scans SET status = 'interrupted', finished_at = current_timestamp,"
                    " n_findings = (SELECT count(*) FROM findings f WHERE f.scan_id = scans.scan_id),"
                    " n_errors = (SELECT count(*) FROM scan_errors e WHERE e.scan_id = scans.scan_id)"
                    " WHERE status = 'running'"
                ).fetchone()[0]
                con.commit()
            except BaseException:
                con.rollback()
                raise
        return int(n)

    def source_unchanged(self, path: str | Path, size: int, mtime_ns: int, rules_hash: str) -> bool:
        """Whether ``path`` was already scanned to completion (status ``ok``) with the same size,
        mtime and rules, so its findings are stored and the file can be skipped."""
        try:
            row = self.con.execute(
                """
                SELECT 1 FROM sources s JOIN scans c USING (scan_id)
                WHERE s.path = ? AND s.size = ? AND s.mtime_ns = ? AND c.rules_hash = ?
                  AND s.status = 'ok' AND s.finished_at IS NOT NULL
                LIMIT 1
                """,
                [storable_path(path), size, mtime_ns, rules_hash],
            ).fetchone()
        except duckdb.Error as e:
            raise StoreError(f"{self._path}: cannot look up earlier scans of {path}: {e}") from e
        return row is not None

    def begin_source(
        self, scan_id: int, path: str | Path, size: int | None, mtime_ns: int | None, compression: str | None
    ) -> int:
        """Record that ``path`` is being scanned (status ``running``); return its ``source_id``."""
        with self._write(f"record source {path}") as con:
            row = con.execute(
                "INSERT INTO sources (scan_id, path, size, mtime_ns, compression)"
                " VALUES (?, ?, ?, ?, ?) RETURNING source_id",
                [scan_id, storable_path(path), size, mtime_ns, compression],
            ).fetchone()
        return int(row[0])

    def finish_source(
        self,
        source_id: int,
        status: str,
        n_records: int,
        n_findings: int,
        content_hash: str | None,
        error: str | None = None,
        entity_counts: list[tuple[str, str, int, int]] | None = None,
        fmt: str | None = None,
        parse_problems: int = 0,
    ) -> None:
        """Close a source with its final ``status`` (ok, error, skipped, unchanged) and counts;
        ``entity_counts`` are (entity, severity, severity_rank, findings) detected in the file,
        ``fmt`` the format it was read as and ``parse_problems`` the records that did not parse
        as that format (they were scanned as text)."""
        if status not in SOURCE_STATUSES or status == "running":
            raise ValueError(f"bad source status {status!r}")
        counts = json.dumps([list(c) for c in entity_counts]) if entity_counts is not None else None
        with self._write(f"finish source {source_id}") as con:
            con.execute(
                "UPDATE sources SET status = ?, n_records = ?, n_findings = ?, content_hash = ?,"
                " error = ?, entity_counts = ?, format = ?, parse_problems = ?, finished_at = current_timestamp"
                " WHERE source_id = ?",
                [status, n_records, n_findings, content_hash, error, counts, fmt, parse_problems, source_id],
            )

    def unchanged(self, path: str | Path, size: int, mtime_ns: int, rules_hash: str
                  ) -> tuple[list[tuple[str, str, int, int]], list[tuple[int | None, str, str]]] | None:
        """For a file already scanned to completion with the same size, mtime and rules: the
        (entity, severity, severity_rank, findings) counts of that scan, and the input problems
        it recorded for the file ((line, kind, message): a 50 MB line is still there, so a re-run
        reports it again and exits the same way); None if the file must be scanned."""
        try:
            row = self.con.execute(
                """
                SELECT s.entity_counts, s.scan_id FROM sources s JOIN scans c USING (scan_id)
                WHERE s.path = ? AND s.size = ? AND s.mtime_ns = ? AND c.rules_hash = ?
                  AND s.status = 'ok' AND s.finished_at IS NOT NULL AND s.entity_counts IS NOT NULL
                ORDER BY s.source_id DESC LIMIT 1
                """,
                [storable_path(path), size, mtime_ns, rules_hash],
            ).fetchone()
            if row is None:
                return None
            problems = self.con.execute(
                "SELECT line, kind, message FROM scan_errors WHERE scan_id = ? AND source_path = ? ORDER BY error_id",
                [row[1], storable_path(path)]).fetchall()
        except duckdb.Error as e:
            raise StoreError(f"{self._path}: cannot look up earlier scans of {path}: {e}") from e
        return [tuple(c) for c in json.loads(row[0])], [tuple(p) for p in problems]

    def add_error(self, scan_id: int, source_path: str | Path | None, line: int | None, kind: str, message: str) -> None:
        """Record an input problem (unreadable file, truncated gzip, binary data, huge line, bad rule…)."""
        with self._write("record a scan error") as con:
            con.execute(
                "INSERT INTO scan_errors (scan_id, source_path, line, kind, message) VALUES (?, ?, ?, ?, ?)",
                [scan_id, None if source_path is None else storable_path(source_path), line, kind, message],
            )

    def insert_findings(self, scan_id: int, source_id: int, source_path: str | Path, batch: Mapping[str, Any],
                        *, cursor: bool = False, created_at: datetime | None = None) -> int:
        """Store one columnar batch of findings; return how many were new (not duplicates).

        ``source_id`` is what :meth:`begin_source` returned for ``source_path``. See
        :mod:`leakwatch.store.ingest` for the batch format and how duplicates are found.
        ``cursor=True``: on a cursor of its own, for a thread other than the connection's owner.
        ``created_at``: the rows' storing time from an injected clock (default: the wall clock).
        """
        with self._write(f"store findings from {source_path}") as con, _maybe_cursor(con, cursor) as c:
            return ingest.insert_findings(c, scan_id, source_id, storable_path(source_path), batch, created_at)

    def insert_events(self, scan_id: int, source_id: int, source_path: str | Path, rows: list[tuple],
                      *, cursor: bool = False) -> int:
        """Store event rows (see :data:`leakwatch.store.ingest.EVENT_COLUMNS`); return how many were new.
        ``cursor`` as for :meth:`insert_findings`."""
        if not rows:
            return 0
        with self._write(f"store events from {source_path}") as con, _maybe_cursor(con, cursor) as c:
            return ingest.insert_events(c, scan_id, source_id, storable_path(source_path), rows)

    def insert_elf_events(self, scan_id: int, source_id: int, source_path: str | Path, rows, headers,
                          classify_hosts, hash_actors, *, cursor: bool = False) -> int:
        """Store EventLogFile event rows in bulk (see :mod:`leakwatch.store.elf_events`); returns
        (events stored, rows left out).

        ``cursor=True`` runs on a cursor of its own, for a thread other than the one that owns
        the connection: that thread's Python work goes on meanwhile (its own writes wait: writes
        are serialised by the umask lock)."""
        from leakwatch.store.elf_events import insert_elf_events

        with self._write(f"store events from {source_path}") as con, _maybe_cursor(con, cursor) as c:
            return insert_elf_events(c, scan_id, source_id, storable_path(source_path), rows, headers, classify_hosts,
                                     hash_actors)

    def checkpoint(self) -> None:
        """Fold the WAL into the database file now (DuckDB also does this on close)."""
        with self._write("checkpoint") as con:
            con.execute("CHECKPOINT")


def _foreign(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database holds tables but no leakwatch schema (someone else's DuckDB file)."""
    names = {n for (n,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    return bool(names) and "schema_migrations" not in names


@contextlib.contextmanager
def _maybe_cursor(con: duckdb.DuckDBPyConnection, cursor: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """``con`` itself, or (``cursor``) a cursor of its own, closed afterwards."""
    if not cursor:
        yield con
        return
    cur = con.cursor()
    try:
        yield cur
    finally:
        cur.close()
