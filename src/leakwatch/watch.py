"""``leakwatch watch``: follow log files as they grow, scan every new line once, and turn what it
holds into incidents and notifications within the same poll cycle.

One cycle (every ``interval`` seconds, 0.25 s by default; polling, no inotify, so it works on
every filesystem, NFS included):

1. list the files under the watched directories, files and globs (recursively, like ``scan``);
2. scan the bytes appended to each since the last cycle, up to its last complete line, and store
   the findings together with the file's new offset (``watch_files``) in one transaction;
3. run the failure-pattern detectors (at most every ``PATTERNS_EVERY_S``), group new findings and
   alerts into incidents (:func:`leakwatch.incidents.book.group`, which queues the notifications
   the trigger rules ask for in the same transaction), fire deadline triggers (at most every
   ``DEADLINES_EVERY_S``), and run the dispatcher once, so a notification leaves in the cycle
   that found its line.

How files are followed. A file is known by its device and inode, not its name:

- *growing*: only the appended complete lines are read (``pread`` on the open file). A last line
  without its newline waits for it; once the file has not changed for ``partial_idle_s`` (3 s)
  the line is scanned as it is, and when the rest of it arrives later, the whole line is scanned
  again (same line number; a value split by the pause is found, one found before is kept once).
- *rotation by rename* (``app.log`` → ``app.log.1``, a new ``app.log``): the renamed inode is
  followed under its new name where it is still in view, so its last lines are read and nothing
  is read twice; the new file is read from its start. An inode that leaves the view (moved
  elsewhere, or deleted) is read from the open file until it has been idle for ``DRAIN_IDLE_S``
  (2 minutes), then closed, with a note; its findings keep the last path it was seen at.
- *truncation / copytruncate*: a size below the offset, or first bytes (``head_hash``) or the
  bytes before the offset that differ from what was read, mean the file was rewritten in place:
  it is read again from the start.
- *gzip* files are read once, whole, when their size and mtime have been stable for
  ``GZIP_SETTLE_S`` (a rotated log being compressed is not read half-written), and again only if
  they change.
- binary files and UTF-16 logs are reported once and not followed; appended bytes that are not
  valid UTF-8, and over-long lines, are reported with their line and scanned all the same.

Restarts. ``watch_files`` holds, per path, the device/inode, byte offset, complete lines read and
a hash of the first bytes, written in the transaction that stores the findings of those bytes: a
crash loses nothing and stores nothing twice. A restarted ``watch`` resumes each file at its
offset (also when it was renamed meanwhile: it is found by its inode, checked by its first
bytes); a file that changed in place is read again from its start.

Duplicates. Each file read from its start is a *generation* (tagged in its ``sources`` rows, see
:meth:`leakwatch.pipeline.TailScanner.begin_generation`). Within a generation, findings are
unique by (path, line, start byte, rule, value hash): a tail read twice (the stored offset behind
the stored findings, a restart after a crash) adds nothing, and neither does a file that
``leakwatch scan`` read before (its content hash matches the file's first bytes). A new
generation at the same path (after rotation, truncation, copytruncate) has findings of its
own, even where the same value sits at the same line as in the file before it: a daily job
that logs the same customers is found every day, and a file rewritten in place with the same
content is counted again rather than missed.
"""
from __future__ import annotations

import bisect
import contextlib
import fnmatch
import os
import signal
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

import xxhash

from leakwatch.errors import LeakwatchError, StoreError
from leakwatch.pipeline import TailFile, TailResult, TailScanner, _run_patterns
from leakwatch.sources.files import (
    SNIFF_BYTES,
    InputProblem,
    expand_paths,
    looks_binary,
    read_head,
)
from leakwatch.store import Store
from leakwatch.config import WATCH_POLL_INTERVAL_S, WATCH_PULL_EVERY_MIN

#: Seconds between cycles.
POLL_INTERVAL_S = WATCH_POLL_INTERVAL_S
#: A last line without its newline is scanned as it is once the file has been unchanged this long
#: (writers flush whole lines; one that stops mid-line for 3 s has most likely stopped).
PARTIAL_IDLE_S = 3.0
#: A gzip file is read once its size and mtime have not changed for this long.
GZIP_SETTLE_S = 1.0
#: A gzip file that ends early (no trailer yet) is reported only once it has not changed for this
#: long: a compressor that stalls a moment is still writing it, and it is read again when it grows.
GZIP_TRUNCATED_GRACE_S = 30.0
#: A file moved out of view or deleted is read from the open file until idle this long, then closed
#: (a writer that has not reopened its log yet still appends to the old inode: one that logs
#: once a minute must not lose its lines to a short drain).
DRAIN_IDLE_S = 120.0
#: Bytes at the start of a file whose hash recognises it after a restart (``head_hash``).
HEAD_BYTES = 1024
#: Bytes before the offset compared on each change: a copytruncated file that grew past the
#: offset again before the next look still differs there.
TAIL_BYTES = 64
#: Deadline triggers look at the clocks of open incidents at most this often.
DEADLINES_EVERY_S = 5.0
#: The failure-pattern detectors read the whole database: at most this often, and only after new
#: findings or events.
PATTERNS_EVERY_S = 10.0
#: Minutes between Salesforce pulls (``--pull-every``).
PULL_EVERY_MIN = WATCH_PULL_EVERY_MIN

_GZIP_MAGIC = b"\x1f\x8b"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"


def head_hash(fd: int, n: int) -> str:
    """Hash of the first ``n`` bytes of the open file ``fd`` (``watch_files.head_hash``)."""
    return xxhash.xxh3_64_hexdigest(os.pread(fd, n, 0))


def tail_bytes(fd: int, offset: int) -> bytes:
    """The ``TAIL_BYTES`` before ``offset`` in the open file ``fd`` (fewer near its start)."""
    n = min(TAIL_BYTES, offset)
    return os.pread(fd, n, offset - n)


def tail_hash(fd: int, offset: int) -> str:
    """Hash of :func:`tail_bytes` (``watch_files.tail_hash``)."""
    return xxhash.xxh3_64_hexdigest(tail_bytes(fd, offset))


def _tail_ok(tail: bytes | str, before: bytes) -> bool:
    """Whether ``before`` (the bytes before an offset, :data:`TAIL_BYTES` of them or all there
    are) ends with what was read there: ``tail`` as bytes (a file followed in this session) or as
    its hash (``watch_files.tail_hash``, what an earlier session stored)."""
    if isinstance(tail, str):
        return xxhash.xxh3_64_hexdigest(before) == tail
    return bool(tail) and before.endswith(tail)


@dataclass
class Delivery:
    """A notification that left (or failed) in a cycle, with its latency where it is known."""

    notification_id: int
    incident_id: int | None
    target: str
    event: str
    status: str  # delivered | retry | dead
    http_status: int | None = None
    error: str | None = None
    queued_s: float | None = None  # outbox row created → delivered
    landed_s: float | None = None  # the line that caused it was written (file mtime) → delivered
    delivered_at: float | None = None  # epoch seconds


@dataclass
class CycleReport:
    """What one cycle did; :meth:`news` says whether it is worth a line of output."""

    at: datetime
    seconds: float = 0.0
    bytes: int = 0
    findings: int = 0  # new findings stored
    files: dict[str, int] = field(default_factory=dict)  # path → new findings
    problems: list[InputProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # rotation, truncation, pulls …
    alerts: int = 0
    opened: tuple[int, ...] = ()
    grown: tuple[int, ...] = ()
    deliveries: list[Delivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # a stage that failed this cycle (the loop goes on)

    @property
    def sent(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.status == "delivered"]

    @property
    def failed(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.status != "delivered"]

    def news(self) -> bool:
        return bool(self.findings or self.alerts or self.opened or self.grown or self.deliveries)

    def line(self) -> str:
        """One line for the terminal (masked facts only: counts, incident numbers, targets)."""
        parts = []
        if self.findings:
            parts.append(f"+{self.findings} finding{'s' * (self.findings != 1)} in {len(self.files)} "
                         f"file{'s' * (len(self.files) != 1)}")
        if self.alerts:
            parts.append(f"+{self.alerts} alert{'s' * (self.alerts != 1)}")
        if self.opened:
            parts.append("opened incident " + ", ".join(f"#{i}" for i in self.opened))
        if self.grown:
            parts.append("grown incident " + ", ".join(f"#{i}" for i in self.grown))
        if self.sent:
            parts.append(f"{len(self.sent)} notification{'s' * (len(self.sent) != 1)} sent")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return f"{self.at.strftime('%Y-%m-%dT%H:%M:%SZ')} " + " · ".join(parts)


@dataclass
class _Followed:
    """One inode being followed."""

    ident: tuple[int, int]  # (device, inode)
    path: str  # absolute; where it was last seen
    fd: int
    kind: str = "pending"  # pending (not sniffed yet) | text | gzip | binary | unsupported
    offset: int = 0
    line: int = 0
    line_offset: int = 0
    bom: int = 0
    head: str | None = None  # head_hash of the first min(offset, HEAD_BYTES) bytes
    tail: bytes = b""
    size: int = -1  # size and mtime at the last look
    mtime_ns: int = -1
    changed_at: float = 0.0  # monotonic time they last changed
    partial: bool = False  # a last line waits for its newline
    more: bool = False  # lines are left to read (TAIL_MAX_BYTES per cycle)
    tf: TailFile | None = None
    gone_since: float | None = None  # moved out of view or deleted: draining
    scanned_size: int = -1  # gzip: the compressed size that was read
    copy_checked: bool = False  # asked (on its first bytes) whether it is a copy of a file read before
    held_problems: list = field(default_factory=list)  # gzip: "ends early", said once it stays so


class Watcher:
    """Follows ``paths`` (directories, files, globs) into the database at ``db_path``.

    ``config`` is a :class:`leakwatch.config.Config`; ``rules_dirs``/``rules``, ``fmt``, ``ner``
    and ``store_raw`` are as for :func:`leakwatch.pipeline.scan_paths`. ``exclude`` are glob
    patterns matched against each path and file name. ``notify`` builds the trigger hook and the
    dispatcher from ``config.notify``; ``pull`` (a :class:`SalesforcePull`) runs the incremental
    EventLogFile pull into a watched directory. ``clock`` is the monotonic clock (seconds) the
    idle timers use and ``now`` the wall clock; tests pass their own.

    Use as a context manager (or :meth:`open` / :meth:`close`); call :meth:`cycle` in a loop, or
    :meth:`run`.
    """

    def __init__(self, paths: Sequence[str], db_path: str | os.PathLike, *, config=None,
                 rules_dirs: Sequence[str] | None = None, rules=None, fmt: str | None = None,
                 ner: bool | None = None, store_raw: bool = False, exclude: Sequence[str] = (),
                 patterns: bool = True, notify: bool = True, pull: SalesforcePull | None = None,
                 argv: Sequence[str] | None = None, partial_idle_s: float = PARTIAL_IDLE_S,
                 gzip_settle_s: float = GZIP_SETTLE_S, drain_idle_s: float = DRAIN_IDLE_S,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        from leakwatch.config import load_config

        self.paths = [str(p) for p in paths]
        self.db_path = str(db_path)
        self.config = config if config is not None else load_config()
        self._scanner_args = {"rules": rules, "rules_dirs": list(rules_dirs) if rules_dirs else None,
                              "config": self.config, "store_raw": store_raw, "fmt": fmt, "ner": ner,
                              "now": now}  # findings and alerts are stamped by the session's clock
        self.exclude = tuple(exclude)
        self.patterns = patterns
        self.want_notify = notify
        self.pull = pull
        self.argv = list(argv or ["leakwatch", "watch", *self.paths])
        self.partial_idle_s = partial_idle_s
        self._once = False  # run(once=True): one look only (a gzip that ends early is said at once)
        self.gzip_settle_s = gzip_settle_s
        self.drain_idle_s = drain_idle_s
        self.clock = clock
        self.now = now
        self.store: Store | None = None
        self._db_ident: tuple[int, int] | None = None
        self._db_abspath = os.path.abspath(self.db_path)
        self._abandoned = False
        self.scanner: TailScanner | None = None
        self.scan_id: int | None = None
        self.files: dict[tuple[int, int], _Followed] = {}
        self._fd_budget = 1 << 30  # how many files may be followed at once; set by open()
        self._truncated: list[tuple] = []  # (path, offset, line, head, tail) read before a truncation
        self._read_before: list[tuple] = []  # the same, of files let go (deleted or moved away)
        self._stored: dict[tuple[int, int], tuple] | None = None  # watch_files rows not yet matched (first cycle)
        self._stored_paths: dict[str, tuple] = {}
        self._reported: set[tuple[str, str]] = set()  # (path, message) of listing problems already shown
        self._notify = None
        self._dirty = True  # new findings or alerts since the last grouping
        self._events_dirty = False
        self._last_patterns = -1e18
        self._last_deadlines = -1e18
        # (first finding id, last finding id, wall time the lines landed) of recent commits
        self._landed: list[tuple[int, int, float]] = []
        self.latencies: list[float] = []  # landed → delivered, per notification this session
        self.totals = {"findings": 0, "bytes": 0, "records": 0, "sent": 0, "failed": 0, "opened": 0}
        self.problem_count = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> Self:
        """Open the database, compile the rules, record the session as a scan, load offsets."""
        self._fd_budget = _raise_open_file_limit() - FD_RESERVE
        # The database's own defaults (no thread or memory override): a --pull-salesforce pull runs
        # on a second connection in this process, and DuckDB shares one open database between
        # connections only when their settings are the same.
        self.store = Store.open(self.db_path)
        try:
            self._db_abspath = os.path.abspath(self.db_path)  # a later chdir must not move it
            self._db_ident = _file_ident(self._db_abspath)
            self.scanner = TailScanner(self.store, **self._scanner_args)
            self.store.mark_interrupted_scans()
            self.scan_id = self.store.begin_scan(self.argv, self.scanner.rules_hash, 1)
            for err in self.scanner.rule_errors:
                self.store.add_error(self.scan_id, err.file, err.line, "rule", str(err))
            rows = self.store.con.execute(
                'SELECT path, device, inode, "offset", line, head_hash, size, tail_hash FROM watch_files').fetchall()
            self._stored = {(r[1], r[2]): r for r in rows if r[1] is not None and r[2] is not None}
            self._stored_paths = {r[0]: r for r in rows}
            if self.want_notify:
                self._notify = _Notifier(self.store, self.config, owner=f"watch-{os.getpid()}", now=self.now)
        except BaseException:
            self.store.close()
            self.store = None
            raise
        return self

    def close(self, status: str = "ok") -> None:
        """Close every followed file and its ``sources`` row, record the session's end, close
        the database. ``status`` is the scan status (ok, interrupted, failed)."""
        if self.store is None or self._abandoned:
            return
        try:
            if self._notify is not None:
                self._notify.close()
            n_files = len(self.files)
            for s in list(self.files.values()):
                self._forget(s)
            if self.scan_id is not None:
                if status == "ok" and (self.problem_count or self.scanner.rule_errors):
                    status = "partial"  # as scan records it: a rule file could not be read
                self.store.finish_scan(self.scan_id, status, n_files=n_files, n_bytes=self.totals["bytes"],
                                       n_records=self.totals["records"])
        finally:
            store, self.store = self.store, None
            store.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        status = "ok" if exc_type is None else ("interrupted" if exc_type is KeyboardInterrupt else "failed")
        if exc_type is None:
            self.close(status)
            return
        # Closing after a failure may fail too (a full disk fails the checkpoint as well): the
        # error that stopped the watch is the one to report, not that one.
        with contextlib.suppress(LeakwatchError):
            self.close(status)

    def abandon(self) -> None:
        """Leave the database as it is: :meth:`close` does nothing from now on. For a process
        that exits while a cycle still runs in another thread (a second Ctrl-C under the
        console): closing the connection under that cycle could crash the process, and the
        next watch marks this session interrupted."""
        self._abandoned = True

    # -- one cycle -------------------------------------------------------------------------------

    def cycle(self, stop: threading.Event | None = None) -> CycleReport:
        """Scan what was appended, group, fire triggers, dispatch. Problems with single files are
        reported in the result; only database errors raise (:class:`StoreError`)."""
        t0 = self.clock()
        rep = CycleReport(at=self.now())
        if _file_ident(self._db_abspath) != self._db_ident:
            # Deleted or replaced under the watch: DuckDB would go on writing into a file no one
            # can open again, and everything stored from now on would vanish when it closes.
            raise StoreError(f"{self.db_path}: the database file was deleted or replaced while the watch ran; "
                             f"stopping so that nothing more is written where no one can read it. Start the watch "
                             f"again: it creates or opens the file at that path and reads the followed files from "
                             f"the offsets stored there")
        if self.pull is not None:
            self.pull.poll(self, rep)
        listing = self._list(rep)
        self._follow_moves(listing, rep)
        for path, st in listing.items():
            ident = (st.st_dev, st.st_ino)
            if ident not in self.files:
                self._adopt(path, st, rep)
        if self._stored is not None:
            self._drop_vanished(listing)
        for s in list(self.files.values()):
            if stop is not None and stop.is_set():
                break
            try:
                self._advance(s, listing, rep)
            except OSError as e:
                self._problem(rep, InputProblem(s.path, "unreadable", f"read failed: {e.strerror or e}", None))
        self._after_scan(rep)
        rep.seconds = self.clock() - t0
        self.totals["findings"] += rep.findings
        self.totals["bytes"] += rep.bytes
        self.totals["opened"] += len(rep.opened)
        self.totals["sent"] += len(rep.sent)
        self.totals["failed"] += len(rep.failed)
        return rep

    def run(self, *, interval: float = POLL_INTERVAL_S, once: bool = False, stop: threading.Event | None = None,
            on_cycle: Callable[[CycleReport], None] | None = None) -> None:
        """Cycle every ``interval`` seconds until ``stop`` is set (or once)."""
        stop = stop or threading.Event()
        self._once = once
        if not once and self._notify is not None:
            self._notify.start()  # a silent target must not hold up the scanning
        while True:
            started = self.clock()
            rep = self.cycle(stop)
            if on_cycle is not None:
                on_cycle(rep)
            if once or stop.is_set():
                return
            busy = any(s.more for s in self.files.values())
            stop.wait(0 if busy else max(0.0, interval - (self.clock() - started)))
            if stop.is_set():
                return

    # -- listing and identity --------------------------------------------------------------------

    def _list(self, rep: CycleReport) -> dict[str, os.stat_result]:
        """path → stat of every regular file in view (the database's own files and exclusions left out)."""
        db = self.db_path
        files, problems = expand_paths(self.paths, exclude={db, db + ".wal", db + ".key", db + ".tmp"})
        for p in problems:
            key = (p.path, p.message)
            if key not in self._reported:
                self._reported.add(key)
                self._problem(rep, p)
        out: dict[str, os.stat_result] = {}
        pull_out = self.pull.out_dir if self.pull is not None else None
        for f in files:
            path = os.path.abspath(f.path)
            if self._excluded(path) or (pull_out and path.endswith(".part") and path.startswith(pull_out + os.sep)):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone between the listing and now: the next cycle sees it as it is then
            out[path] = st
        return out

    def _excluded(self, path: str) -> bool:
        name = os.path.basename(path)
        return any(fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(name, pat) for pat in self.exclude)

    def _in_view(self, path: str) -> bool:
        """Whether ``path`` lies under a watched directory or is a watched file (not globs)."""
        for p in self.paths:
            root = os.path.abspath(p)
            if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
                return True
        return False

    def _follow_moves(self, listing: dict[str, os.stat_result], rep: CycleReport) -> None:
        """Inodes seen at a new path (renamed: rotation) follow it; those no longer in view
        drain. Their ``watch_files`` rows move in one transaction, all deletes before all
        inserts, so that a chain of renames (``.1`` → ``.2``, current → ``.1``) keeps every row."""
        where = {(st.st_dev, st.st_ino): p for p, st in listing.items()}
        moved: list[tuple[_Followed, str]] = []
        now = self.clock()
        for ident, s in self.files.items():
            p2 = where.get(ident)
            if s.gone_since is not None:
                if p2 is not None:  # back in view (a directory that could not be listed for a moment)
                    s.gone_since = None
                    moved.append((s, p2))
                continue
            if p2 is None:
                s.gone_since = now
                rep.notes.append(f"{s.path}: moved out of view or deleted; reading what is left of it")
                moved.append((s, ""))
            elif p2 != s.path:
                rep.notes.append(f"{s.path}: renamed to {p2} (rotation); following it there")
                moved.append((s, p2))
        if not moved:
            return
        with self._tx("move watched files") as con:
            for s, _ in moved:
                con.execute("DELETE FROM watch_files WHERE path = ? AND inode = ? AND device = ?",
                            [s.path, s.ident[1], s.ident[0]])
            for s, p2 in moved:
                if p2:
                    if s.tf is not None and s.tf.source_id is not None:
                        self.scanner.finish(s.tf)  # its sources row names the old path
                    s.path = p2
                    if s.tf is not None:
                        s.tf.path = p2
                    if s.kind in ("text", "gzip") and s.offset:
                        self._write_row(con, s, s.offset, s.line, s.head)

    def _adopt(self, path: str, st: os.stat_result, rep: CycleReport) -> None:
        """Start following a file not followed yet: resume from its stored offset where the store
        knows it (by inode, checked by its first bytes), else from its start."""
        if len(self.files) >= self._fd_budget:
            # Each followed file holds a descriptor (renames are followed by inode). Past the
            # limit the database and the rules could not be opened either: follow what fits,
            # say why the rest is not, try again next cycle.
            if ("*", "fd-limit") not in self._reported:
                self._reported.add(("*", "fd-limit"))
                self._problem(rep, InputProblem(path, "unreadable", (
                    f"not followed: {len(self.files)} files are followed, the most this process's open-file "
                    f"limit allows; raise it (ulimit -n) or watch fewer files (--exclude)")))
            return
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            key = (path, "open")
            if key not in self._reported:
                self._reported.add(key)
                self._problem(rep, InputProblem(path, "unreadable", e.strerror or str(e)))
            return
        fst = os.fstat(fd)
        ident = (fst.st_dev, fst.st_ino)
        if ident != (st.st_dev, st.st_ino) or ident in self.files:
            os.close(fd)  # replaced between the stat and the open: the next cycle adopts what is there
            return
        self._reported.discard((path, "open"))
        s = _Followed(ident, path, fd, size=-1, changed_at=self.clock())
        row = self._stored.pop(ident, None) if self._stored is not None else None
        if row is None and self._stored is not None:
            # The same path and inode on another device number (device-mapper numbering can
            # change across reboots): the same file if its first bytes say so.
            by_path = self._stored_paths.get(path)
            if by_path is not None and by_path[2] == fst.st_ino and by_path[1] != fst.st_dev:
                row = self._stored.pop((by_path[1], by_path[2]), by_path)
        if row is not None:
            rpath, _dev, _ino, offset, line, hh, _size, th = row
            n = min(offset, HEAD_BYTES)
            # The same first bytes and, for a text file, the same bytes before the offset: what
            # was read is still there (not rewritten in place behind an unchanged banner).
            tail = tail_bytes(fd, offset) if fst.st_size >= offset else b""
            if (fst.st_size >= offset and hh is not None and head_hash(fd, n) == hh
                    and (th is None or xxhash.xxh3_64_hexdigest(tail) == th)):
                s.offset, s.line, s.head = offset, line, hh
                s.line_offset = _line_offset(fd, offset)
                s.scanned_size = offset
                s.tail = tail
                if rpath != path:
                    rep.notes.append(f"{path}: was {rpath} (renamed while not watched); resuming at line {line + 1}")
                    with self._tx("move a watched file") as con:
                        con.execute("DELETE FROM watch_files WHERE path = ?", [rpath])
                        self._write_row(con, s, s.offset, s.line, s.head)
                self._stored_paths.pop(rpath, None)
            else:
                rep.notes.append(f"{path}: changed in place while not watched; reading it again from the start")
                # Copytruncate while not watched: a copy of what was read (app.log.1) continues
                # after it instead of counting it again.
                self._truncated.append((rpath, offset, line, hh, th))
        elif path in self._stored_paths and self._stored is not None:
            rep.notes.append(f"{path}: another file than when last watched (rotated while not watched); "
                             "reading it from the start")
        if row is None and not s.offset and fst.st_size:
            self._resume_copy(s, fd, fst.st_size, rep)
        self.files[ident] = s

    def _read_copies(self, s: _Followed, head_of: Callable[[int], str | None]):
        """What was read of other files (followed, truncated, or let go) whose first bytes
        ``s`` begins with: (path, offset, line, head, tail) of each. ``head_of(n)`` is the
        hash of ``s``'s first ``n`` bytes (None: it has fewer).

        Under HEAD_BYTES read, the hash covers all that was read, a line or two, which a new
        file may begin with by chance (a start-up banner); such a copy also has to be named
        after the file (``app.log`` → ``app.log.1``, ``app.log-20240311``, ``app.log.1.gz``)."""
        name = os.path.basename(s.path)
        heads: dict[int, str | None] = {}
        candidates = [(o.path, o.offset, o.line, o.head, o.tail) for o in self.files.values()
                      if o.kind == "text" and o.offset > 0 and o is not s]
        for c in candidates + self._truncated + self._read_before:
            path, offset, _line, head, _tail = c
            if path == s.path:
                # A new file under the old one's name (deleted and written again, a daily job
                # logging the same customers) is a new file: read from its start. A copy has a
                # name of its own (app.log.1), and a file truncated in place keeps its inode.
                continue
            n = min(offset, HEAD_BYTES)
            if head is None or (n < HEAD_BYTES and not name.startswith(os.path.basename(path))):
                continue
            if n not in heads:
                heads[n] = head_of(n)
            if heads[n] == head:
                yield c

    def _resume_copy(self, s: _Followed, fd: int, size: int, rep: CycleReport) -> None:
        """A new file that begins with exactly what was already read of another (copytruncate
        rotation copies the log, then truncates it): continue after those lines instead of
        storing their findings a second time. Compared by the first bytes' hash and the bytes
        before the other file's offset, the checks a restarted watch trusts."""
        for path, offset, line, head, tail in self._read_copies(s, lambda n: head_hash(fd, n)):
            if size >= offset and _tail_ok(tail, tail_bytes(fd, offset)):
                s.offset, s.line, s.head, s.tail = offset, line, head, tail_bytes(fd, offset)
                s.line_offset = _line_offset(fd, offset)
                s.scanned_size = offset
                rep.notes.append(f"{s.path}: begins with the {line:,} lines already read of {path} (a copy: "
                                 "copytruncate rotation?); continuing after them")
                return

    def _copy_in_progress(self, s: _Followed, size: int) -> bool:
        """Whether ``s`` (``size`` bytes so far) is the start of a followed file that was read
        further than that, and is named after it (``app.log`` → ``app.log.1``): a copy being
        written."""
        name = os.path.basename(s.path)
        k = min(size, 1 << 16)
        for o in list(self.files.values()):
            if o is s or o.path == s.path or o.kind != "text" or o.offset <= size or \
                    not name.startswith(os.path.basename(o.path)):
                continue
            if os.pread(o.fd, k, 0) == os.pread(s.fd, k, 0):
                return True
        return False

    def _drop_vanished(self, listing: dict[str, os.stat_result]) -> None:
        """After the first cycle: forget stored offsets of files in view that are gone."""
        stale = [r[0] for r in self._stored.values() if self._in_view(r[0]) and r[0] not in listing]
        # Files read before that were not found again by their inode (rotated and compressed, or
        # moved, while not watched): what was read of them, so that a copy of it (app.log.1.gz) is
        # not counted a second time.
        for rpath, _dev, _ino, offset, line, hh, _size, th in self._stored.values():
            if offset and hh is not None:
                self._read_before.append((rpath, offset, line, hh, th))
        del self._read_before[:-64]
        self._stored = None
        self._stored_paths = {}
        if stale:
            with self._tx("forget vanished files") as con:
                for p in stale:
                    con.execute("DELETE FROM watch_files WHERE path = ?", [p])

    # -- reading ---------------------------------------------------------------------------------

    def _advance(self, s: _Followed, listing: dict[str, os.stat_result], rep: CycleReport) -> None:
        """Read what is new in one followed file."""
        now = self.clock()
        st = os.fstat(s.fd) if s.gone_since is not None else listing.get(s.path)
        if st is None or (st.st_dev, st.st_ino) != s.ident:
            st = os.fstat(s.fd)
        changed = (st.st_size, st.st_mtime_ns) != (s.size, s.mtime_ns)
        if changed:
            first_look = s.size == -1
            s.size, s.mtime_ns, s.changed_at = st.st_size, st.st_mtime_ns, now
            if first_look:
                # Idle since its last write, not since this process opened it: a file untouched
                # for an hour has its last line without a newline, and a .gz is complete, now —
                # 'watch --once' (cron) never waited long enough to read either.
                age = self.now().timestamp() - st.st_mtime_ns / 1e9
                if age > 0:
                    s.changed_at = now - age
        idle = now - s.changed_at
        if s.gone_since is not None and idle >= self.drain_idle_s:
            self._finish_gone(s, st, rep)
            return
        if s.kind == "gzip":
            self._advance_gzip(s, st, idle, rep)
            return
        if changed and s.offset and not self._same_file(s, st.st_size):
            what = (f"truncated ({st.st_size:,} bytes, {s.offset:,} were read)" if st.st_size < s.offset
                    else "rewritten in place (copytruncate?)")
            rep.notes.append(f"{s.path}: {what}; reading it again from the start")
            if s.kind == "text" and s.offset > s.bom and s.head is not None:
                # What was read, in case a copy of it shows up (copytruncate: cp, then truncate).
                self._truncated.append((s.path, s.offset, s.line, s.head, s.tail))
                del self._truncated[:-64]
            self._reset(s)
        if s.kind == "pending" and not self._sniff(s, st.st_size, idle, rep):
            if s.kind == "gzip":
                self._advance_gzip(s, st, idle, rep)  # settled already (an old .gz): read it now
            return
        if s.kind != "text" or st.st_size <= s.offset:
            return
        if s.partial and not changed and not s.more and idle < self.partial_idle_s:
            return  # still waiting for the newline of the last line
        final = idle >= self.partial_idle_s
        commit = None if s.gone_since is not None else self._row_writer(s)
        start, line_offset, cut = s.offset, s.line_offset, 0
        if 0 < line_offset <= RESCAN_LINE_MAX:
            # The line was taken as it was when the file went idle, and now goes on: read it
            # again from its start, so that a value split by the pause (a buffered writer's
            # flush) is seen whole; what was found in its first part is found again and the
            # store's duplicate key keeps it once, and a value the pause cut short gives way to
            # the whole one (TailScanner.scan's ``cut``).
            start, line_offset, cut = s.offset - line_offset, 0, line_offset
        res = self.scanner.scan(s.tf, s.fd, start, st.st_size, line=s.line, line_offset=line_offset,
                                final=final, scan_id=self.scan_id, commit=commit, cut=cut)
        self._took(s, res, st, rep)

    def _took(self, s: _Followed, res: TailResult, st: os.stat_result, rep: CycleReport) -> None:
        """Move the follower past what one scan stored (after its commit)."""
        if res.bytes and (s.head is None or s.offset < HEAD_BYTES):
            s.head = head_hash(s.fd, min(res.offset, HEAD_BYTES))
        s.offset, s.line, s.line_offset = res.offset, res.line, res.line_offset
        s.partial, s.more = res.partial, res.more
        if res.bytes:
            s.tail = tail_bytes(s.fd, s.offset)
        rep.bytes += res.bytes
        self.totals["records"] += res.records
        for p in res.problems:
            self._problem(rep, p, stored=True)
        if res.new_findings:
            rep.findings += res.new_findings
            rep.files[s.path] = rep.files.get(s.path, 0) + res.new_findings
            self._dirty = True
            # One thread inserts, so a commit's new findings have consecutive ids ending here.
            last_id = int(self.store.con.execute("SELECT currval('findings_seq')").fetchone()[0])
            self._landed.append((last_id - res.new_findings + 1, last_id, st.st_mtime_ns / 1e9))
            del self._landed[:-10_000]  # only recent notifications are matched to their lines
        if res.events:
            self._events_dirty = True
        if self.pull is not None and not s.partial and not s.more and s.offset >= st.st_size:
            self.pull.scanned(self, s.path)

    def _row_writer(self, s: _Followed) -> Callable:
        def write(con, res: TailResult) -> None:
            # The first HEAD_BYTES never change once read; before that, the hash covers what was read.
            hh = s.head if s.head is not None and s.offset >= HEAD_BYTES else \
                head_hash(s.fd, min(res.offset, HEAD_BYTES))
            self._write_row(con, s, res.offset, res.line, hh)

        return write

    def _write_row(self, con, s: _Followed, offset: int, line: int, hh: str | None) -> None:
        # The bytes just before the offset (text files: the offset is a byte position in them).
        th = tail_hash(s.fd, offset) if s.kind == "text" else None
        con.execute(
            'INSERT INTO watch_files (path, device, inode, "offset", line, head_hash, size, tail_hash, updated_at) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, current_timestamp) ON CONFLICT (path) DO UPDATE SET "
            'device = excluded.device, inode = excluded.inode, "offset" = excluded."offset", line = excluded.line, '
            "head_hash = excluded.head_hash, size = excluded.size, tail_hash = excluded.tail_hash, "
            "updated_at = excluded.updated_at",
            [s.path, s.ident[0], s.ident[1], offset, line, hh, s.size if s.size >= 0 else None, th])

    def _same_file(self, s: _Followed, size: int) -> bool:
        """Whether the bytes already read are still there (not truncated, not rewritten in place)."""
        if size < s.offset:
            return False
        if s.head is not None and head_hash(s.fd, min(s.offset, HEAD_BYTES)) != s.head:
            return False
        return not s.tail or os.pread(s.fd, len(s.tail), s.offset - len(s.tail)) == s.tail

    def _reset(self, s: _Followed) -> None:
        s.copy_checked = True  # rewritten in place: the same file again, not a copy of another
        if s.tf is not None:
            self.scanner.finish(s.tf)
        s.kind, s.tf = "pending", None
        s.offset = s.line = s.line_offset = s.bom = 0
        s.head, s.tail, s.partial, s.more, s.scanned_size = None, b"", False, False, -1

    def _sniff(self, s: _Followed, size: int, idle: float, rep: CycleReport) -> bool:
        """Decide how to read a file from its first bytes; False while there are too few."""
        if size == 0:
            return False
        head = os.pread(s.fd, SNIFF_BYTES, 0)
        if head[:2] == _GZIP_MAGIC:
            s.kind = "gzip"
            return False  # read by _advance_gzip from the next cycle on, once it has settled
        if head[:2] in _UTF16_BOMS:
            s.kind = "unsupported"
            self._problem(rep, InputProblem(s.path, "encoding", "UTF-16 text is not followed (watch reads UTF-8 and "
                                            "ASCII logs); scan it with `leakwatch scan`"))
            return False
        # Judged without NUL runs (a crash's zero fill, a preallocated log: scan does the same),
        # and not at all for a file resumed from its stored offset: it was text when read.
        sample = head.replace(b"\x00", b"") if head.count(0) * 4 > len(head) else head
        if not s.offset and sample and looks_binary(sample):
            s.kind = "binary"
            self._problem(rep, InputProblem(s.path, "binary", "binary file (mostly control bytes), not followed"))
            return False
        if b"\n" not in head and len(head) < SNIFF_BYTES and idle < self.partial_idle_s:
            return False  # the first line is not complete: its format cannot be told yet
        if not s.copy_checked and s.offset == 0:
            # A copy of a file already read (copytruncate: cp, then truncate) seen before it was
            # complete, or while it was empty: continue after what was read once it holds that
            # much, instead of reading it again from its start.
            self._resume_copy(s, s.fd, size, rep)
            if s.offset == 0 and idle < self.partial_idle_s and self._copy_in_progress(s, size):
                return False
            s.copy_checked = True
        s.bom = len(_UTF8_BOM) if head.startswith(_UTF8_BOM) else 0
        s.tf = self.scanner.open_file(s.path, head[s.bom:])
        tag = (self._last_tag(s) if s.offset else None) or self._new_tag(s)
        self.scanner.begin_generation(s.tf, tag, s.fd, size=size, bom=s.bom)
        s.kind = "text"
        if s.offset == 0:
            s.offset = s.bom
        if s.tf.fctx.format_problem:
            self._problem(rep, InputProblem(s.path, "format", f"{s.tf.fctx.format_problem}; scanned as text"))
        return True

    def _advance_gzip(self, s: _Followed, st: os.stat_result, idle: float, rep: CycleReport) -> None:
        """Read a gzip file whole, once it has settled, and again only if it changes."""
        if idle < self.gzip_settle_s or s.gone_since is not None:
            return
        if s.scanned_size == st.st_size and s.head is not None and \
                head_hash(s.fd, min(st.st_size, HEAD_BYTES)) == s.head:
            if s.held_problems and idle >= GZIP_TRUNCATED_GRACE_S:
                for p in s.held_problems:  # it stayed short: a truncated file after all
                    self._problem(rep, p)
                s.held_problems = []
            return
        from leakwatch.sources.files import ReadStats, close_stream, open_stream

        try:
            stream = open_stream(s.path, ReadStats())
            try:
                raw = os.fstat(stream._leakwatch_raw.fileno())
                if (raw.st_dev, raw.st_ino) != s.ident:
                    return  # replaced since the listing: the next cycle sees the new file
                head = read_head(stream, SNIFF_BYTES)
            finally:
                close_stream(stream)
        except OSError as e:
            self._problem(rep, InputProblem(s.path, "unreadable", e.strerror or str(e)))
            return
        size = st.st_size
        hh = head_hash(s.fd, min(size, HEAD_BYTES))
        # The same first bytes (as many as were read before: a file under HEAD_BYTES that grew
        # still starts with them): the same file, grown (gzip members appended) or read before
        # this session; its findings so far count as already stored.
        tag = None
        prev_n = min(s.scanned_size, HEAD_BYTES) if s.scanned_size > 0 else min(size, HEAD_BYTES)
        if s.head is not None and head_hash(s.fd, prev_n) == s.head:
            tag = s.tf.generation if s.tf is not None else self._last_tag(s)
        skip = 0
        if tag is None:
            skip = self._gzip_copy(s, head, rep)
        if s.tf is not None:
            self.scanner.finish(s.tf)
        s.tf = self.scanner.open_file(s.path, head, compressed=True)
        self.scanner.begin_generation(s.tf, tag or self._new_tag(s), size=size, mtime_ns=st.st_mtime_ns)

        def write(con, res: TailResult) -> None:
            self._write_row(con, s, size, res.line, hh)

        # Ending early while it may still be written: said (and stored) only if it stays so (see
        # the top); in a single look (--once) at once.
        hold = () if self._once else ("truncated",)
        res = self.scanner.scan_stream(s.tf, scan_id=self.scan_id, commit=write, skip_lines=skip, hold=hold)
        s.scanned_size, s.head, s.line = size, hh, res.line
        s.held_problems = [p for p in res.problems if p.kind in hold]
        res.problems = [p for p in res.problems if p.kind not in hold]
        res.offset = size
        s.offset = size
        self._took(s, res, st, rep)
        s.partial = s.more = False

    def _gzip_copy(self, s: _Followed, head: bytes, rep: CycleReport) -> int:
        """Lines a new gzip file holds that were read already from a text file: logrotate's
        ``compress`` writes ``app.log.1.gz`` from ``app.log.1`` (followed since its rename),
        then deletes it. The gzip's text (``head``: its first bytes) must begin with exactly
        what was read of that file (:meth:`_read_copies`, then the bytes before its offset,
        streamed). 0 when no file read before matches."""
        from leakwatch.sources.files import ReadStats, close_stream, open_stream

        def head_of(n: int) -> str | None:
            return xxhash.xxh3_64_hexdigest(head[:n]) if len(head) >= n else None

        for path, offset, line, _head, tail in self._read_copies(s, head_of):
            if not line:
                continue
            try:
                stream = open_stream(s.path, ReadStats())
            except OSError:
                return 0
            try:
                last, pos = b"", 0
                while pos < offset:  # the text up to the offset, streamed: keep its last bytes
                    piece = stream.read(min(1 << 20, offset - pos))
                    if not piece:
                        break
                    pos += len(piece)
                    last = (last + piece)[-TAIL_BYTES:]
                after = stream.read(1)
            except (OSError, EOFError, zlib.error):
                continue
            finally:
                close_stream(stream)
            if pos == offset and _tail_ok(tail, last):
                if not last.endswith(b"\n") and after in (b"", b"\n", b"\r"):
                    # The last line was read as it was when the file went idle, and it is all
                    # there is of it: read already too.
                    line += 1
                rep.notes.append(f"{s.path}: begins with the {line:,} lines already read of {path} (compressed "
                                 "by rotation?); reading after them")
                return line
        return 0

    @staticmethod
    def _new_tag(s: _Followed) -> str:
        """The generation tag of a file read from its start (see TailScanner.begin_generation)."""
        return f"watch:{s.ident[0]}:{s.ident[1]}:{time.time_ns()}"

    def _last_tag(self, s: _Followed) -> str | None:
        """The generation tag an earlier session gave the file now resumed."""
        row = self.store.con.execute(
            "SELECT content_hash FROM sources WHERE content_hash LIKE ? ORDER BY source_id DESC LIMIT 1",
            [f"watch:{s.ident[0]}:{s.ident[1]}:%"]).fetchone()
        return row[0] if row else None

    def _finish_gone(self, s: _Followed, st: os.stat_result, rep: CycleReport) -> None:
        """A file out of view that has been idle: read its last line as it is, then close it."""
        if s.kind == "text" and st.st_size > s.offset:
            res = self.scanner.scan(s.tf, s.fd, s.offset, st.st_size, line=s.line, line_offset=s.line_offset,
                                    final=True, scan_id=self.scan_id)
            self._took(s, res, st, rep)
            if res.more:
                return
        if s.kind in ("text", "gzip"):
            rep.notes.append(f"{s.path}: out of view (moved away or deleted) and idle {self.drain_idle_s:.0f} s: "
                             f"closed after line {s.line:,}; lines written to it later are not read "
                             f"(watch the directory, not a glob, to follow rotated files)")
        self._forget(s)

    def _forget(self, s: _Followed) -> None:
        if s.kind == "text" and s.offset > s.bom and s.head is not None:
            # What was read, in case it comes back compressed (logrotate's compress).
            self._read_before.append((s.path, s.offset, s.line, s.head, s.tail))
            del self._read_before[:-64]
        if s.tf is not None:
            self.scanner.finish(s.tf)
            s.tf = None
        with contextlib.suppress(OSError):
            os.close(s.fd)
        self.files.pop(s.ident, None)

    # -- after the scan: incidents, triggers, dispatch -------------------------------------------

    def _after_scan(self, rep: CycleReport) -> None:
        now_m = self.clock()
        # New findings: the detectors run before grouping, so a leaked key joins its
        # P1_key_exposed alert's incident at once instead of opening a "credentials in logs" one
        # first. Events alone (AI calls, bulk rows) wait for the throttle: those detectors look at
        # windows of minutes.
        if self.patterns and (self._dirty or (self._events_dirty and now_m - self._last_patterns >= PATTERNS_EVERY_S)):
            self._last_patterns = now_m
            self._events_dirty = False
            try:
                alerts = _run_patterns(self.store, self.config, self.scanner.enricher.registry, self.scan_id,
                                       now=self.now())
                rep.alerts = len(alerts)
                if alerts:
                    self._dirty = True
            except StoreError as e:
                rep.errors.append(f"failure-pattern detectors: {e}")
        if self._dirty:
            from leakwatch.incidents import book

            hook = self._notify.hook if self._notify is not None else None
            try:
                res = book.group(self.store, self.config, now=rep.at, notify=hook)
                rep.opened, rep.grown = res.opened, res.grown
                self._dirty = False
            except LeakwatchError as e:
                rep.errors.append(f"grouping into incidents: {e}")
        if self._notify is None:
            return
        if now_m - self._last_deadlines >= DEADLINES_EVERY_S:
            self._last_deadlines = now_m
            try:
                self._notify.fire_deadlines(rep.at)
            except LeakwatchError as e:
                rep.errors.append(f"deadline triggers: {e}")
        try:
            rep.deliveries, errors = self._notify.dispatch()
            rep.errors.extend(errors)
        except LeakwatchError as e:
            rep.errors.append(f"dispatching notifications: {e}")
            return
        for d in rep.deliveries:
            if d.status == "delivered":
                self._landing(d)

    def _landing(self, d: Delivery) -> None:
        """Time from the line that caused ``d`` landing in its file (the file's mtime when it was
        read) to the delivery, where this session stored that line's finding."""
        if d.incident_id is None or not self._landed or d.delivered_at is None:
            return
        row = self.store.con.execute(
            "SELECT min(finding_id) FROM incident_findings WHERE incident_id = ? AND finding_id >= ?",
            [d.incident_id, self._landed[0][0]]).fetchone()
        if row is None or row[0] is None:
            return
        fid = int(row[0])
        i = bisect.bisect_right([c[0] for c in self._landed], fid) - 1
        if i < 0 or fid > self._landed[i][1]:
            return
        d.landed_s = max(0.0, d.delivered_at - self._landed[i][2])
        self.latencies.append(d.landed_s)

    # -- helpers ---------------------------------------------------------------------------------

    def _problem(self, rep: CycleReport, p: InputProblem, stored: bool = False) -> None:
        rep.problems.append(p)
        self.problem_count += 1
        if not stored and self.store is not None and self.scan_id is not None:
            with contextlib.suppress(StoreError):
                self.store.add_error(self.scan_id, p.path, p.line, p.kind, p.message)

    @contextlib.contextmanager
    def _tx(self, what: str):
        import duckdb

        con = self.store.con
        try:
            con.begin()
            try:
                yield con
                con.commit()
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                raise
        except duckdb.Error as e:
            raise StoreError(f"{self.store.path}: cannot {what}: {e}") from e


# A line taken as it was when its file went idle is read again whole when it goes on, up to
# this length (longer lines are read in pieces anyway: see MAX_RECORD).
RESCAN_LINE_MAX = 1 << 20

# Descriptors kept free for the database, its WAL, the rules and configuration files, sockets.
FD_RESERVE = 64


def _file_ident(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``, None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (a watched tree of 3,000
    files needs 3,000 descriptors; 1,024 is a common default soft limit) and return it."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        want = min(want, 1 << 20)
        if want > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        return soft
    except (ImportError, ValueError, OSError):
        return 1024


def _line_offset(fd: int, offset: int) -> int:
    """Bytes between the last newline before ``offset`` and ``offset``: the part of a line that
    was scanned without its newline (an idle last line, or pieces of an over-long line)."""
    pos = offset
    block = 1 << 20
    while pos > 0:
        n = min(block, pos)
        data = os.pread(fd, n, pos - n)
        nl = data.rfind(b"\n")
        if nl != -1:
            return offset - (pos - n + nl + 1)
        pos -= n
    bom = len(_UTF8_BOM) if os.pread(fd, 3, 0) == _UTF8_BOM else 0
    return max(0, offset - bom)


# ---------------------------------------------------------------------------------------------
# Notifications (leakwatch.notify)


class _Notifier:
    """The trigger hook, the deadline triggers and the dispatcher, from ``config.notify``.

    The dispatcher sends from a thread of its own (:meth:`start`), so a target that accepts
    connections and never answers holds up its notifications, not the watch: scanning, grouping
    and the console go on. A cycle pokes it after grouping and waits at most ``wait_s`` for the
    pass it asked for (most deliveries are reported in the cycle that queued them); the rest
    are reported by a later cycle. Without :meth:`start` (``--once``) each :meth:`dispatch` is
    one pass in the caller's thread."""

    #: Real seconds between two passes when nothing is due sooner (a retry's time, a lease's end).
    POLL_S = 0.25
    #: How long :meth:`close` waits for a send in flight before leaving it to its thread.
    CLOSE_WAIT_S = 3.0

    def __init__(self, store: Store, config, *, owner: str, now: Callable[[], datetime]):
        from leakwatch.notify import triggers
        from leakwatch.notify.outbox import Dispatcher
        from leakwatch.notify.targets import build_targets

        self.store = store
        self.config = config
        self.now = now
        self._triggers = triggers
        # Credentials are looked up when a target sends, not here: a missing one makes that
        # target's notifications fail (and dead-letter), not the watch.
        targets = build_targets(config)
        self.targets = targets
        self.hook = triggers.hook(config, store.key, targets=targets)
        self.dispatcher = Dispatcher(store, targets, config, owner=owner, clock=now) if targets else None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()  # guards the counters below; dispatch() wakes the loop
        self._passes = 0  # passes finished
        self._in_pass = False
        self._asked = 0  # passes asked for by dispatch()
        self._done: list[Delivery] = []
        self._errors: list[str] = []

    def start(self) -> None:
        """Send from a thread of this notifier's own from now on."""
        if self.dispatcher is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="leakwatch-dispatch", daemon=True)
        self._thread.start()

    def fire_deadlines(self, now: datetime) -> None:
        self._triggers.fire_deadlines(self.store, self.config, now=now, targets=self.targets)

    def dispatch(self, wait_s: float = 1.0) -> tuple[list[Delivery], list[str]]:
        """What was delivered, retried or dead-lettered since the last call, and the errors of
        the dispatcher's passes. With the thread started: asks for a pass now and waits up to
        ``wait_s`` for it; without: runs one pass here (errors raise)."""
        if self.dispatcher is None:
            return [], []
        if self._thread is None:
            return self._pass(self.store.con), []
        with self._cond:
            self._asked += 1
            want = self._asked
            self._cond.notify_all()
            if not self._in_pass:
                # Idle: the pass asked for starts now; a pass already running (a send that hangs)
                # is not waited for, or every cycle would wait out wait_s behind it.
                self._cond.wait_for(lambda: self._passes >= want or not self._thread.is_alive(), timeout=wait_s)
            done, self._done = self._done, []
            errors, self._errors = self._errors, []
        return done, errors

    def _loop(self) -> None:
        cur = self.store.con.cursor()
        try:
            while not self._stop.is_set():
                with self._cond:
                    asked = self._asked
                    self._in_pass = True
                try:
                    done, errors = self._pass(cur), []
                    nxt = self.dispatcher.next_due()
                except Exception as e:  # noqa: BLE001 - reported by the next cycle; the loop goes on
                    done, errors, nxt = [], [f"dispatching notifications: {e}"], None
                with self._cond:
                    self._in_pass = False
                    self._done.extend(done)
                    self._errors.extend(errors)
                    self._passes = max(self._passes, asked)
                    self._cond.notify_all()
                wait = self.POLL_S
                if nxt is not None:
                    wait = min(wait, max(0.005, (nxt - self.now()).total_seconds()))
                with self._cond:  # until a cycle asks for a pass (or one is due, or stop)
                    self._cond.wait_for(lambda: self._asked > asked or self._stop.is_set(), timeout=wait)
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def _pass(self, con) -> list[Delivery]:
        """One dispatcher pass; what it delivered, retried or dead-lettered."""
        since = self.now()
        stats = self.dispatcher.run_once(stop=self._stop)
        if not stats.claimed:
            return []
        # The rows this pass sent (dead-letter notices it queued have no attempt yet).
        rows = con.execute(
            "SELECT notification_id, incident_id, target, event, status, last_status, last_error, "
            "epoch(created_at), epoch(delivered_at) FROM outbox WHERE updated_at >= ? AND attempts > 0 "
            "AND status IN ('delivered', 'dead', 'pending')", [since]).fetchall()
        out = []
        for nid, iid, target, event, status, http, err, created, delivered in sorted(rows):
            d = Delivery(int(nid), iid, target, event, "retry" if status in ("pending", "sending") else status,
                         http, err if status != "delivered" else None)
            if status == "delivered" and delivered is not None:
                d.queued_s = max(0.0, delivered - created)
                d.delivered_at = delivered
            out.append(d)
        return out

    def close(self) -> None:
        """Stop the thread (a send in flight gets :attr:`CLOSE_WAIT_S`; one that takes longer is
        left to its thread, its row taken over by the next dispatcher) and the dispatcher."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.CLOSE_WAIT_S)
            if self._thread.is_alive():
                return  # still sending: closing its cursor under it would fail the send
        if self.dispatcher is not None:
            self.dispatcher.close()


# ---------------------------------------------------------------------------------------------
# --pull-salesforce


class SalesforcePull:
    """Runs the incremental EventLogFile pull (:func:`leakwatch.salesforce.pull.pull`, download
    only) every ``every_s`` seconds on a thread of its own, into ``out_dir``, which the watcher
    also follows: the files it stores are scanned like any other new file, and marked scanned
    for ``leakwatch pull`` once they were read to their end. Failures are reported and the next
    pull is tried at the next interval; the loop goes on."""

    def __init__(self, out_dir: str, *, every_s: float = PULL_EVERY_MIN * 60, credentials=None,
                 event_types: Sequence[str] = (), api_version: str | None = None,
                 client_factory: Callable[[], object] | None = None):
        self.out_dir = os.path.abspath(out_dir)
        self.every_s = every_s
        self.credentials = credentials
        self.event_types = list(event_types)
        self.api_version = api_version
        self.client_factory = client_factory
        self._thread: threading.Thread | None = None
        self._result = None
        self._error: BaseException | None = None
        self._next = -1e18
        self._instance: str | None = None
        self._pending: set[str] = set()  # pulled files not read to their end yet

    def poll(self, w: Watcher, rep: CycleReport) -> None:
        """Report a finished pull (in ``rep``), start a due one."""
        now = w.clock()
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
            self._report(w, rep)
        if self._thread is None and now >= self._next:
            self._next = now + self.every_s
            self._result, self._error = None, None
            self._thread = threading.Thread(target=self._pull, args=(w.db_path,), name="leakwatch-pull", daemon=True)
            self._thread.start()

    def _pull(self, db_path: str) -> None:
        from leakwatch.salesforce.pull import pull

        kwargs = {"event_types": self.event_types, "scan": False}
        if self.api_version:
            kwargs["api_version"] = self.api_version
        if self.client_factory is not None:
            kwargs["client"] = self.client_factory()
        try:
            self._result = pull(db_path, self.out_dir, self.credentials, **kwargs)
        except BaseException as e:  # noqa: BLE001 - reported by poll(); the watch goes on
            self._error = e

    def _report(self, w: Watcher, rep: CycleReport) -> None:
        mins = f"{self.every_s / 60:g} min"
        if self._error is not None:
            e = self._error
            # Salesforce errors are redacted by the client; anything else is named by its type.
            what = str(e) if isinstance(e, LeakwatchError) else f"{type(e).__name__}: {e}"
            rep.errors.append(f"salesforce pull failed: {what}; next try in {mins}")
            return
        r = self._result
        if r is None:
            return
        self._instance = r.instance
        self._pending.update(f.path for f in r.downloaded)
        # The watcher may have read a downloaded file to its end before this report arrived (the
        # file appears before the pull thread finishes): mark those scanned now.
        for f in r.downloaded:
            row = w.store.con.execute('SELECT "offset" FROM watch_files WHERE path = ?', [str(f.path)]).fetchone()
            with contextlib.suppress(OSError):
                if row is not None and row[0] >= os.path.getsize(f.path):
                    self.scanned(w, f.path)
        from leakwatch.detect import salesforce as sfmap

        if r.prefixes_learned:
            w.scanner.enricher.learned = sfmap.load_learned_prefixes(w.store.con)
        rep.notes.append(f"salesforce pull from {r.instance}: {r.listed} listed, {len(r.downloaded)} downloaded, "
                         f"{len(r.failed)} failed")
        rep.errors += [f"salesforce pull warning: {x}" for x in r.warnings]
        rep.errors += [f"salesforce pull failed: EventLogFile {f.log_id} ({f.event_type}): {f.error}; the next "
                       f"pull resumes there" for f in r.failed]

    def scanned(self, w: Watcher, path: str) -> None:
        """``path`` was read to its end: mark it scanned if this pull stored it."""
        if path in self._pending and self._instance is not None:
            from leakwatch.salesforce.pull import PullState

            self._pending.discard(path)
            with contextlib.suppress(StoreError):
                PullState(w.store, self._instance).mark_scanned([path])

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a running pull; True when none is running any more."""
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()


# ---------------------------------------------------------------------------------------------
# Signals


class StopOnSignals:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) ask the loop to stop after the current
    file (offsets are committed with each file's findings, so stopping there loses nothing). A
    second SIGINT interrupts at once. An ignored SIGHUP (``nohup``) stays ignored."""

    def __init__(self):
        self.event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                    continue
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.event.is_set() and signum == signal.SIGINT:
            self.restore()
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()

    def restore(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous = {}


__all__ = [
    "DRAIN_IDLE_S",
    "GZIP_SETTLE_S",
    "PARTIAL_IDLE_S",
    "POLL_INTERVAL_S",
    "CycleReport",
    "Delivery",
    "SalesforcePull",
    "StopOnSignals",
    "Watcher",
    "head_hash",
]
