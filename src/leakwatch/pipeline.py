"""Headless scan: files → native core → scored findings → DuckDB (and optionally JSON lines).

The calling thread owns the database. A pool of ``workers`` threads (one by default) scans byte
ranges of the files (records never straddle a range) and hands back the matched records
(``Hits``), which the owner scores and inserts in file order while the workers scan on. Threads
rather than processes: the native scan, most of the work, releases the GIL; nothing is pickled
and nothing forks a process that holds DuckDB's threads. Each thread uses its own compiled
rules, kept warm between scans in the process (see ``_DetectorFactory``).

Paths are stored absolute, so the same file scanned from another directory is recognised as
unchanged and its findings are not stored twice; JSON lines and the summary show them as given.
"""
from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from datetime import datetime, timezone
from collections.abc import Callable
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import xxhash

from leakwatch.detect.engine import (
    SCANNERS, Detector, Hits, PieceTrim, batch_len, compact_hits, mark_every_record, offset_lines, scanner_args,
    sniff_csv_header,
)
from leakwatch.detect.rules import Rule, RuleError, Severity, default_rules_dir, load_rules, ruleset_hash
from leakwatch._core.rows import count_newlines
from leakwatch.errors import StoreError, UsageError
from leakwatch.sources.files import (
    CHUNK_SIZE, MAX_RECORD, SNIFF_BYTES, Chunk, InputFile, InputProblem, ReadStats, expand_paths, iter_chunks,
    close_stream, looks_binary, open_stream, read_head, split_points, text_sample,
)
from leakwatch.runtime import bulk_work
from leakwatch.store import Store
from leakwatch.store.db import storable_path

# Ranges a big file is cut into for parallel workers: small enough to keep every worker busy
# to the end and results streaming to the owner thread (which scores and stores them in file
# order, and is the slower side: with 64 MiB ranges 2 workers ran at 0.9x one worker, waiting
# for the first range and then flooding the owner), large enough that per-range setup (~1 ms)
# is noise.
RANGE_BYTES = 8 << 20
MIN_RANGE_BYTES = 8 << 20
# DuckDB memory limit during a scan (see scan_paths).
SCAN_MEMORY_LIMIT = "128MB"


@dataclass
class FileResult:
    """What happened to one input file."""

    path: str
    status: str = "ok"  # ok | error | skipped | unchanged
    bytes: int = 0
    records: int = 0
    findings: int = 0  # detected in this file (for an unchanged file: stored by earlier scans)
    new_findings: int = 0  # of those, not already in the database
    seconds: float = 0.0
    problems: list[InputProblem] = field(default_factory=list)
    fmt: str | None = None
    events: int = 0  # events stored (calls to AI endpoints, bulk/report/API rows, CDN AI hits)
    parse_problems: int = 0  # records that did not parse as the file's format (scanned as text)
    parse_samples: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class ScanSummary:
    """The outcome of :func:`scan_paths`; the CLI prints it and derives the exit code."""

    scan_id: int
    db_path: str
    files: list[FileResult]
    problems: list[InputProblem]
    rule_errors: list[RuleError]
    by_entity: list[dict]
    findings_at_or_above: int
    total_findings: int
    new_findings: int
    bytes: int
    records: int
    seconds: float
    interrupted: bool = False
    alerts: list = field(default_factory=list)  # new alerts of the failure-pattern detectors
    notes: list[str] = field(default_factory=list)  # what the user should know (NER not run, texts cut)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    @property
    def input_errors(self) -> int:
        return len(self.problems) + len(self.rule_errors)


# ---------------------------------------------------------------------------------------------
# Worker side


# Findings are inserted in batches of at least this many rows: each DuckDB insert has a fixed
# cost of ~5–10 ms (dedup check, WAL), small next to 50k rows, large next to one chunk's ~900.
INSERT_ROWS = 50_000


# Pieces of a line longer than MAX_RECORD overlap by this much: a value across a cut is read
# whole in the next piece (a value longer than this across a cut would still be missed).
PIECE_OVERLAP = 64 << 10


def _scan_range(path: str, start: int, stop: int | None, header: list[str] | None,
                detector, hashing: tuple | None, cancel=None,
                row_marker: int | None = None) -> tuple[list, int, int, list[InputProblem], str | None]:
    """Scan the records of ``path`` that begin in [start, stop). Returns (batches, records,
    bytes, problems, content hash or None, complete).

    ``hashing`` is None (the file's content hash is computed elsewhere) or (hasher, last): the
    range feeds ``hasher``, and the last range of the file returns its digest. One worker reads
    a file's ranges in order, so they can share one hasher.

    With a :class:`_DetectorFactory` (worker threads) the items are :class:`Hits` — the matched
    records only, not yet scored: scoring needs the GIL, so the owner thread does it while
    workers scan on. A CSV file with name-like columns (every cell is a candidate of a
    column rule) also gives batches of those cells' findings (dicts), scored here.

    ``row_marker`` (a marker's rule index) marks every record: a CSV file with free-text columns
    (a Case export's Description) under NER, whose rows must all be parsed to be read."""
    detector = detector.get()
    stats = ReadStats()
    column_rules = detector.column_rules_for(header)
    items = []
    records = 0
    hasher, last = hashing if hashing is not None else (None, False)
    trim = PieceTrim(PIECE_OVERLAP)
    for chunk in iter_chunks(path, stats, start=start, stop=stop or None, hasher=hasher, overlap=PIECE_OVERLAP):
        res = trim(chunk, detector.scanner.scan(chunk.view))
        n = res.n_records
        if row_marker is not None:
            res = mark_every_record(chunk.data, chunk.end, res, row_marker)
        if len(res.record):
            items.append(compact_hits(chunk.data, chunk.end, res, chunk.first_line, chunk.first_line_offset))
        if column_rules:
            batch = detector.column_batch(chunk, header, column_rules, start == 0)
            if batch_len(batch):
                items.append(batch)
        records += n if chunk.first_line_offset == 0 else max(n - 1, 0)
        if cancel is not None and cancel.requested:
            complete = False
            break  # Ctrl-C: hand back what was found so far; the owner stores it, then stops
    else:
        complete = True
    if column_rules:
        items = [i for i in items if isinstance(i, Hits)] + _merge([i for i in items if not isinstance(i, Hits)])
    return items, records, stats.bytes_read, stats.problems, (hasher.hexdigest() if hasher is not None and last else None), complete


def _with_all_columns(batch: dict, detector: str) -> dict:
    """Give a batch that did not pass through enrichment the same keys as one that did, so
    that batches merge column by column (their unknown values stay NULL)."""
    n = batch_len(batch)
    if "ts" not in batch:
        batch["ts"] = np.full(n, np.nan)
    if "residency_violation" not in batch:
        batch["residency_violation"] = np.full(n, -1, dtype=np.int8)
    if "detector" not in batch:
        batch["detector"] = [detector] * n
    for key in ("format", "dest_host", "dest_vendor", "dest_region", "dest_jurisdiction", "sf_object", "sf_field",
                "actor_hash", "prompt_role"):
        if key not in batch:
            batch[key] = [None] * n
    return batch


def _merge(batches: list[dict]) -> list[dict]:
    """Concatenate small batches into ones of about INSERT_ROWS rows."""
    out: list[dict] = []
    for b in batches:
        if out and batch_len(out[-1]) < INSERT_ROWS:
            last = out[-1]
            for k, col in b.items():
                if isinstance(col, np.ndarray) or isinstance(last[k], np.ndarray):
                    last[k] = np.concatenate([np.asarray(last[k]), np.asarray(col)])
                else:
                    last[k].extend(col)
        else:
            out.append(b)
    return out


# ---------------------------------------------------------------------------------------------
# Owner side


def _prepare(f: InputFile, stats: ReadStats) -> tuple[str, list[str] | None, bytes]:
    """Sniff a file: returns ("binary"|"text", csv header or None, first bytes). Raises OSError.

    The first bytes are those of the text when the file begins with a run of NULs (a log
    zero-filled after a crash): the format is that of the lines after them."""
    stream = open_stream(f.path, stats)
    try:
        head = read_head(stream, SNIFF_BYTES)
        sample = text_sample(head, stream)
    finally:
        close_stream(stream)
    if looks_binary(sample):
        return "binary", None, head
    first = sample.split(b"\n", 1)[0]
    return "text", sniff_csv_header(first), sample


def scan_paths(
    paths: list[str],
    db_path: str | os.PathLike = "leakwatch.duckdb",
    *,
    workers: int = 1,
    rules_dirs: list[str | os.PathLike] | None = None,
    rules: list[Rule] | None = None,
    store_raw: bool = False,
    jsonl: object | None = None,
    fail_on: Severity | str = Severity.MEDIUM,
    progress: Callable[[int, int, str], None] | None = None,
    argv: list[str] | None = None,
    rescan: bool = False,
    config=None,
    fmt: str | None = None,
    ner: bool | None = None,
    run_patterns: bool = True,
) -> ScanSummary:
    """Scan files, directories and globs into the database at ``db_path``.

    ``jsonl`` is a text stream that receives one JSON object per new finding. ``progress`` is
    called as ``progress(bytes_done, bytes_total, current_path)``. Unchanged files (same path,
    size, mtime and rule set as a completed earlier scan) are skipped unless ``rescan``.
    ``config`` is a :class:`leakwatch.config.Config` (default: :func:`leakwatch.config.load_config`);
    ``fmt`` forces one format for every file; ``ner`` runs presidio NER on free-text fields
    (default: the config's ``ner.enabled``); ``run_patterns`` runs the failure-pattern detectors
    over the database at the end and stores their alerts.
    """
    t0 = time.perf_counter()
    if isinstance(fail_on, str):
        fail_on = Severity.parse(fail_on)
    rule_errors: list[RuleError] = []
    if rules is None:
        rules, rule_errors = load_rules(rules_dirs or [default_rules_dir()])
    rules = [r for r in rules if r.enabled]
    if not rules and not rule_errors:
        # Nothing could ever be found: "no findings" (exit 0) would be a false all-clear.
        where = ", ".join(str(d) for d in (rules_dirs or [default_rules_dir()]))
        raise UsageError(f"no enabled rules to scan with (rules from {where})")
    rhash = ruleset_hash(rules)
    db_path = str(db_path)
    exclude = {db_path, db_path + ".wal", db_path + ".key"}
    if isinstance(getattr(jsonl, "name", None), str) and os.path.isfile(jsonl.name):
        exclude.add(jsonl.name)  # the --jsonl file inside a scanned directory: output, not evidence
    files, problems = expand_paths(paths, exclude=exclude, empty_dirs=True)
    results: list[FileResult] = []
    interrupted = False
    # One DuckDB thread: inserts are small next to the scan, and DuckDB's own pool would compete
    # with the scanning threads for the same cores (measured: 2 workers 0.96 s → 0.90 s).
    # DuckDB keeps written pages cached up to its memory limit; a scan of a 2 GB export writes
    # millions of event rows, so the limit is what bounds its memory (it spills beyond it).
    # Quick GIL hand-offs and fewer garbage collections (runtime.bulk_work): the EventLogFile
    # writer waited on the GIL more than it ran, and the collector took ~8% of the scoring thread
    # (210 MB, one worker: 64 → 69 → 76 MB/s).
    with bulk_work(), Store.open(db_path, threads=1, memory_limit=SCAN_MEMORY_LIMIT) as store:
        store.mark_interrupted_scans()
        enricher = _make_enricher(config, store, ner)
        if enricher.ner is not None:
            # A file scanned before without NER is not "unchanged" for a scan with it: its
            # free text was never read.
            rhash = hashlib.sha256(f"{rhash}+ner".encode()).hexdigest()
        if fmt:
            # Nor for a scan that forces another reader (--format jsonl after a scan as text):
            # its fields, events and destinations were never read that way.
            rhash = hashlib.sha256(f"{rhash}+format={fmt}".encode()).hexdigest()
        scan_id = store.begin_scan(argv or [], rhash, workers)
        for err in rule_errors:
            store.add_error(scan_id, err.file, err.line, "rule", str(err))
        for p in problems:
            store.add_error(scan_id, p.path, p.line, p.kind, p.message)
        markers = enricher.marker_patterns
        # Scores findings: in this thread for one worker, and for the Hits that worker threads send.
        detector = Detector(rules, store.key, store_raw=store_raw, markers=markers)
        per_thread = _DetectorFactory(rules, store.key, store_raw, markers)
        tally = _Tally()
        total = sum(f.size for f in files)
        progress_state = {"done": 0}

        def advance(nbytes: int, path: str) -> None:
            progress_state["done"] += nbytes
            if progress:
                progress(min(progress_state["done"], total), total, path)

        # Jobs (byte ranges of files) run on the pool; results are consumed in file order, with
        # a bounded number in flight so memory does not grow with the input.
        pending: deque = deque()
        open_jobs: list[_FileJob] = []
        max_pending = 3 * workers
        stop = _StopOnSigint()
        # Scanning runs on the pool even with one worker: this thread scores and stores what the
        # worker found while it scans on (measured: 158 → 200 MB/s on one worker).
        pool = ThreadPoolExecutor(workers, thread_name_prefix="leakwatch-scan")
        event_writer = ThreadPoolExecutor(1, thread_name_prefix="leakwatch-events")

        def drain(limit: int) -> None:
            while len(pending) > limit:
                job, fut = pending.popleft()
                # After Ctrl-C a range may have stopped early: store it, but never close its file as complete.
                _consume(store, scan_id, job, fut.result(), tally, jsonl, advance, final=not stop.requested)
                stop.check()

        try:
            for f in files:
                stop.check()
                fr = FileResult(f.path)
                results.append(fr)
                stored_path = storable_path(os.path.abspath(f.path))
                found = None if rescan else store.unchanged(stored_path, f.size, f.mtime_ns, rhash)
                if found is not None:
                    counts, earlier = found
                    fr.status = "unchanged"
                    fr.findings = tally.add_counts(counts)
                    # What that scan found wrong with the file is still so: reported (and
                    # recorded for this scan) again, so the exit code does not change on a re-run.
                    fr.problems.extend(InputProblem(f.path, kind, f"{msg} (unchanged since an earlier scan)", line)
                                       for line, kind, msg in earlier)
                    _record_problems(store, scan_id, fr)
                    advance(f.size, f.path)
                    continue
                stats = ReadStats()
                try:
                    kind, header, head = _prepare(f, stats)
                except OSError as e:
                    fr.status = "error"
                    fr.problems.append(InputProblem(f.path, "unreadable", e.strerror or str(e)))
                    _record_problems(store, scan_id, fr)
                    advance(f.size, f.path)
                    continue
                source_id = store.begin_source(scan_id, stored_path, f.size, f.mtime_ns, stats.compression)
                if kind == "binary":
                    fr.status = "skipped"
                    fr.problems.append(InputProblem(f.path, "binary", "binary file (mostly control bytes), not scanned"))
                    _record_problems(store, scan_id, fr)
                    store.finish_source(source_id, "skipped", 0, 0, None, "binary file")
                    advance(f.size, f.path)
                    continue
                pattern = _custom_pattern(enricher, f.path)
                fctx = enricher.file_context(f.path, head, fmt or ("regex" if pattern else None), pattern)
                fr.fmt = fctx.fmt
                if fctx.format_problem:
                    fr.problems.append(InputProblem(f.path, "format", f"{fctx.format_problem}; scanned as text"))
                job = _FileJob(fr, source_id, stored_path, stats.compression is not None, time.perf_counter(),
                               detector=detector, header=header, size=f.size, fctx=fctx, enricher=enricher,
                               event_writer=event_writer)
                open_jobs.append(job)
                # Ranges let workers share a big file and let the owner score and store one range
                # while the next is scanned: with one worker they are smaller, read in order, and
                # share one content hasher; with several, the hash is a separate job.
                splittable = stats.compression is None and stats.encoding is None and f.size >= 2 * MIN_RANGE_BYTES
                parts = max(workers * 4, f.size // RANGE_BYTES) if workers > 1 else f.size // MIN_RANGE_BYTES
                try:
                    ranges = split_points(f.path, f.size, parts, min_part=MIN_RANGE_BYTES) if splittable else [(0, None)]
                except OSError:
                    ranges = [(0, None)]  # the read itself will report what is wrong with the file
                job.ranges_left = len(ranges)
                hasher = None
                if len(ranges) > 1 and workers > 1:
                    job.hash_future = pool.submit(_hash_file, f.path)
                else:
                    hasher = xxhash.xxh3_128()
                row_marker = _free_text_rows(enricher, fctx, header, len(rules))
                for i, (a, b) in enumerate(ranges):
                    hashing = (hasher, i == len(ranges) - 1) if hasher is not None else None
                    args = (f.path, a, b, header, per_thread, hashing, stop, row_marker)
                    pending.append((job, pool.submit(_scan_range_safe, *args)))
                    drain(max_pending)
            drain(0)
        except KeyboardInterrupt:
            interrupted = True
            stop.requested = True  # workers stop after their current chunk
            pool.shutdown(wait=False, cancel_futures=True)
            # Store what the ranges already scanned found, in order; a file whose ranges did not
            # all complete is closed as an error, so that a later scan does not take it as done.
            for job, fut in pending:
                if fut.cancelled():
                    job.broken = True
                    continue
                try:
                    result = fut.result()
                except Exception:  # noqa: BLE001 - the file is closed as an error below
                    job.broken = True
                    continue
                _consume(store, scan_id, job, result, tally, jsonl, advance, final=False)
            for job in open_jobs:
                if not job.finished:
                    _flush(store, scan_id, job, tally, jsonl)
                    _wait_events(job)
                    job.result.status = "error"
                    store.finish_source(job.source_id, "error", job.result.records, job.result.findings, None,
                                        "interrupted before the end of the file")
        except BaseException as exc:
            # Anything unexpected (a closed stdout under --jsonl -, a full disk): store what was
            # found, close the open files as errors and the scan as interrupted (the reader of
            # our output went away, a second Ctrl-C) or failed, then let the error go up.
            stop.requested = True
            pool.shutdown(wait=False, cancel_futures=True)
            stopped = isinstance(exc, (BrokenPipeError, KeyboardInterrupt))
            why = ("the reader of the output went away (broken pipe)" if isinstance(exc, BrokenPipeError)
                   else "interrupted" if isinstance(exc, KeyboardInterrupt) else f"scan failed: {type(exc).__name__}")
            for job in open_jobs:
                if job.finished:
                    continue
                with contextlib.suppress(Exception):
                    # Not to --jsonl again if that is what broke: the findings still go to the database.
                    _flush(store, scan_id, job, tally, None if isinstance(exc, BrokenPipeError) else jsonl)
                with contextlib.suppress(Exception):
                    _wait_events(job)
                with contextlib.suppress(Exception):
                    store.finish_source(job.source_id, "error", job.result.records, job.result.findings, None,
                                        f"{why} before the end of the file")
            with contextlib.suppress(Exception):
                store.finish_scan(scan_id, "interrupted" if stopped else "failed", n_files=len(results),
                                  n_bytes=sum(fr.bytes for fr in results), n_records=sum(fr.records for fr in results))
            raise
        finally:
            stop.restore()
            pool.shutdown(wait=True, cancel_futures=True)
            event_writer.shutdown(wait=True)
            per_thread.give_back()
        notes = list(enricher.notes) + _unread_registries(rules_dirs, enricher.config)
        skipped = [fr for fr in results if fr.status == "unchanged" and fr.findings]
        if jsonl is not None and skipped:
            # The summary and the exit code count an unchanged file's findings; the JSON lines
            # hold what this run read. Said, so that an empty stream is not taken for a clean run.
            notes.append(f"{len(skipped):,} unchanged file(s) with {sum(fr.findings for fr in skipped):,} finding(s) "
                         "were not read again, so their findings are not in --jsonl (an earlier scan wrote them; "
                         "add --rescan to write them again, or use leakwatch export)")
        if enricher.ner is not None and enricher.ner.stats["truncated"]:
            notes.append(f"NER read only the first {enricher.ner.max_chars:,} characters of "
                         f"{enricher.ner.stats['truncated']:,} long free-text value(s); regex rules read them whole")
        alerts = []
        if run_patterns and not interrupted:
            alerts = _run_patterns(store, enricher.config, enricher.registry, scan_id)
        all_problems = problems + [p for fr in results for p in fr.problems]
        n_findings = sum(fr.new_findings for fr in results)
        tally.paths = [storable_path(os.path.abspath(fr.path)) for fr in results if fr.findings]
        by_entity = tally.rows(store)
        status = "interrupted" if interrupted else ("partial" if all_problems or rule_errors else "ok")
        store.finish_scan(
            scan_id, status,
            n_files=len(results), n_bytes=sum(fr.bytes for fr in results),
            n_records=sum(fr.records for fr in results), n_findings=n_findings,
            n_errors=len(all_problems) + len(rule_errors),
        )
    elapsed = time.perf_counter() - t0
    return ScanSummary(
        scan_id=scan_id, db_path=db_path, files=results, problems=all_problems, rule_errors=rule_errors,
        by_entity=by_entity, findings_at_or_above=tally.at_or_above(int(fail_on)),
        total_findings=tally.total, new_findings=n_findings,
        bytes=sum(fr.bytes for fr in results), records=sum(fr.records for fr in results),
        seconds=elapsed, interrupted=interrupted, alerts=alerts, notes=notes,
    )


class _StopOnSigint:
    """Ctrl-C during a scan: stop at the next boundary between stored batches instead of
    wherever the signal lands. Raised in the middle of a DuckDB insert, KeyboardInterrupt
    becomes DuckDB's "Query interrupted" error and the scan could not be closed cleanly. A
    second Ctrl-C interrupts at once. SIGTERM (``timeout``, systemd, a cancelled CI job) stops
    the same way: the scan and its file rows are closed, not left 'running'."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous: dict | None = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self._SIGNALS}

    def _handle(self, signum, frame):
        if self.requested:
            self.restore()
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def restore(self) -> None:
        if self._previous is not None:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous = None


@dataclass
class _FileJob:
    result: FileResult
    source_id: int
    stored_path: str
    compressed: bool
    started: float
    ranges_left: int = 0
    content_hash: str | None = None
    hash_future: object = None
    finished: bool = False
    detector: Detector | None = None
    header: list[str] | None = None
    size: int = 0
    broken: bool = False  # a range stopped early (Ctrl-C): later ranges cannot be numbered
    buffer: list = field(default_factory=list)  # scored rows not yet inserted (see _flush)
    events: list = field(default_factory=list)  # event rows not yet inserted
    elf_rows: list = field(default_factory=list)  # EventLogFile event rows for store.elf_events
    elf_futures: list = field(default_factory=list)  # their inserts, running on event_writer
    write_futures: list = field(default_factory=list)  # findings and event inserts, running on event_writer
    event_writer: object = None  # a one-thread executor
    fctx: object = None  # leakwatch.detect.enrich.FileContext
    enricher: object = None
    counts: dict = field(default_factory=dict)


_LOCAL = threading.local()


class _DetectorFactory:
    """Gives each worker thread its own Detector on first use. Sharing one would serialise the
    threads on RE2's DFA cache lock, taken once per Set::Match call (hundreds of thousands per
    file); a private DFA per thread costs only its warm-up, and that is paid once per process:
    the scanners come from (and go back to) the process-wide :data:`SCANNERS` pool."""

    def __init__(self, rules, key, store_raw, markers=()):
        self.args = (rules, key, store_raw, tuple(markers))
        self._lock = threading.Lock()
        self._taken: list[Detector] = []

    def get(self) -> Detector:
        det = getattr(_LOCAL, "detector", None)
        if det is None or getattr(_LOCAL, "args", None) is not self.args:
            rules, key, store_raw, markers = self.args
            patterns, options = scanner_args(rules, markers)
            scanner = SCANNERS.take(patterns, **options)
            det = _LOCAL.detector = Detector(rules, key, store_raw=store_raw, scanner=scanner, markers=markers)
            _LOCAL.args = self.args
            with self._lock:
                self._taken.append(det)
        return det

    def give_back(self) -> None:
        """After the pool's threads have ended: their scanners go back for the next scan."""
        with self._lock:
            taken, self._taken = self._taken, []
        for det in taken:
            SCANNERS.give_back(det.scanner)


def _free_text_rows(enricher, fctx, header: list[str] | None, n_rules: int) -> int | None:
    """The rule index of the free-text marker when every row of this file must be parsed for
    NER: a CSV export (report, Case or chat export) with a free-text column. JSON and logfmt
    lines carry their keys and are marked by the scan itself."""
    if enricher.ner is None or not header or fctx is None or fctx.fmt != "csv":
        return None
    from leakwatch.detect.enrich import M_FREE_TEXT
    from leakwatch.detect.ner import is_free_text

    if not any(is_free_text(h) for h in header):
        return None
    kinds = [k for k, _ in enricher.markers]
    return n_rules + kinds.index(M_FREE_TEXT) if M_FREE_TEXT in kinds else None


def _make_enricher(config, store: Store, ner: bool | None):
    """The scan's :class:`~leakwatch.detect.enrich.Enricher`, from the config and what the
    database learned (custom Salesforce key prefixes)."""
    from leakwatch.config import load_config
    from leakwatch.detect import salesforce as sfmap
    from leakwatch.detect.egress import load_registry
    from leakwatch.detect.enrich import Enricher

    if config is None:
        config = load_config()
    registry = load_registry(config.egress.registry_path)
    use_ner = config.ner.enabled if ner is None else ner
    analyzer = None
    notes = []
    if use_ner:
        from leakwatch.detect.ner import NerAnalyzer

        analyzer = NerAnalyzer()
        if not analyzer.available:  # loads the model now (~1 s), as the first free text would
            notes.append(f"NER was asked for but cannot run, so free text was not read for names: {analyzer.reason}")
            analyzer = None
    enricher = Enricher(
        registry=registry, key=store.key, allowed_jurisdictions=config.residency.allowed_jurisdictions,
        is_gateway=config.egress.is_approved_gateway, gateway_sources=config.egress.is_gateway_source,
        cdn_ai_paths=config.cdn.ai_paths, learned_prefixes=sfmap.load_learned_prefixes(store.con), ner=analyzer,
    )
    enricher.config = config
    enricher.notes = notes
    return enricher


def _unread_registries(rules_dirs, config) -> list[str]:
    """A note for each edited copy of ``ai_endpoints.yaml`` in a ``--rules`` folder: the registry
    comes from ``[egress] registry``, so a copy edited there (a vendor marked sovereign, say)
    would be ignored without a word."""
    from pathlib import Path

    in_use = config.egress.registry_path
    out = []
    for d in rules_dirs or ():
        cand = Path(d) / "ai_endpoints.yaml"
        try:
            if not cand.is_file() or cand.resolve() == in_use.resolve() or cand.read_bytes() == in_use.read_bytes():
                continue
        except OSError:
            continue
        out.append(f"{cand} is not read: the AI-endpoint registry comes from [egress] registry (now {in_use}); "
                   f"set registry = \"{cand}\" in leakwatch.toml to use this copy")
    return out


def _run_patterns(store: Store, config, registry, scan_id: int, now: datetime | None = None) -> list:
    """Run the failure-pattern detectors over the whole database; return the new alerts
    (``now``: an injected clock's time for their ``created_at``)."""
    from leakwatch.detect.patterns import PatternSettings, run_patterns

    p = config.patterns
    settings = PatternSettings(
        window_minutes=p.bulk_then_ai_window_minutes, bulk_min_rows=p.bulk_min_rows,
        bulk_objects=tuple(p.bulk_objects), api_volume_factor=p.api_volume_factor,
        api_volume_min_events=p.api_volume_min_events,
        allowed_jurisdictions=tuple(config.residency.allowed_jurisdictions),
        allowed_edges=tuple(config.cdn.allowed_regions),
        edge_jurisdiction=registry.edge_jurisdiction,
    )
    with store._write("store alerts") as con:
        return run_patterns(con, settings, scan_id=scan_id, now=now)


def _custom_pattern(enricher, path: str) -> str | None:
    """The regex of the user-configured format whose path globs match ``path``, if any."""
    custom = enricher.config.formats.for_path(path)
    return custom.regex if custom is not None else None


def _hash_file(path: str) -> str:
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        buf = bytearray(CHUNK_SIZE)
        while n := fh.readinto(buf):
            hasher.update(memoryview(buf)[:n])
    return hasher.hexdigest()


def _scan_range_safe(*args):
    """_scan_range, with a read failure turned into a problem instead of an exception."""
    try:
        return _scan_range(*args)
    except OSError as e:
        return [], 0, 0, [InputProblem(args[0], "unreadable", f"read failed: {e.strerror or e}")], None, False


def _changed_while_read(path: str, size: int) -> str | None:
    """Why the file cannot have been read whole, when it shrank or went away during the scan
    (truncated, rotated by copy-and-truncate, deleted): the findings up to the change are kept,
    but its line count and completeness are not what the summary would say. A file that grew
    (a live log) is normal."""
    try:
        now = os.stat(path).st_size
    except OSError as e:
        return f"file went away while it was scanned ({e.strerror or e}): findings up to then are kept"
    if now < size:
        return (f"file shrank from {size:,} to {now:,} bytes while it was scanned (truncated or rotated): "
                "findings up to then are kept; scan it again")
    return None


def _consume(store: Store, scan_id: int, job: _FileJob, result, tally: _Tally, jsonl, advance, final=True) -> None:
    """Store one range's findings (in file order) and close the file after its last range."""
    items, records, nbytes, probs, chash, complete = result
    fr = job.result
    if job.broken:
        return  # an earlier range stopped short: this one's line numbers would be wrong
    events: list[tuple] = []
    elf_rows: list[tuple] = []
    base = fr.records  # lines in this file before this range
    n_samples = len(job.fctx.problem_samples) if job.fctx is not None else 0
    rows = []
    for h in items:
        if not isinstance(h, Hits):
            # Whole cells of name/phone columns: the file's format and the column's Salesforce field.
            rows.append(_with_all_columns(job.enricher.column_findings(job.fctx, h), detector="column"))
            continue
        batch, ev, elf = job.enricher.process(job.fctx, job.detector, h.data, h.result, h.first_line,
                                              h.first_line_offset, job.header)
        rows.append(batch)
        events += ev
        if elf is not None:
            elf_rows.append(elf)
    batches = _merge([b for b in rows if batch_len(b)])
    if base and job.fctx is not None:
        # Parse problems were noted with line numbers within this range.
        samples = job.fctx.problem_samples
        samples[n_samples:] = [(ln + base, msg) for ln, msg in samples[n_samples:]]
    for batch in batches:
        offset_lines(batch, base)
        job.buffer = _merge(job.buffer + [batch])
    if events:
        if base:
            events = [(e[0] + base, *e[1:]) for e in events]
        job.events += events
    for lines, hid, text in elf_rows:
        job.elf_rows.append((lines + base, hid, text))
    fr.records += records
    fr.bytes += nbytes
    fr.problems.extend(p if p.line is None else InputProblem(p.path, p.kind, p.message, p.line + base) for p in probs)
    job.content_hash = chash or job.content_hash
    if not job.compressed:
        advance(nbytes, fr.path)
    if not complete:
        job.broken = True
    job.ranges_left -= 1
    # Ranges are small (8 MiB for one worker) and each insert has a fixed cost: rows wait here
    # until there are INSERT_ROWS of them or the file (or the scan) ends.
    if (not job.ranges_left or not final or job.broken or sum(batch_len(b) for b in job.buffer) >= INSERT_ROWS
            or len(job.events) >= INSERT_ROWS):
        _flush(store, scan_id, job, tally, jsonl)
    elif job.event_writer is not None and sum(len(t) for _, _, t in job.elf_rows) >= ELF_BATCH_ROWS:
        _submit_elf(store, scan_id, job)
    if not final or (job.ranges_left and not job.broken):
        return
    # The last range, or a range that failed to read (the file is closed as an error now: the
    # ranges after it cannot be numbered, and it must not stay "running").
    _wait_events(job)
    if job.hash_future is not None:
        try:
            job.content_hash = job.hash_future.result()
        except OSError as e:
            fr.problems.append(InputProblem(fr.path, "unreadable", f"read failed while hashing: {e.strerror or e}"))
    if job.compressed:
        advance(job.size, fr.path)
    changed = _changed_while_read(fr.path, job.size)
    if changed:
        fr.problems.append(InputProblem(fr.path, "changed", changed))
    fr.seconds = time.perf_counter() - job.started
    fr.status = "error" if any(p.kind in ("unreadable", "truncated", "changed") for p in fr.problems) else "ok"
    _record_problems(store, scan_id, fr)
    fctx = job.fctx
    if fctx is not None and fctx.parse_problems:
        fr.parse_problems = fctx.parse_problems
        fr.parse_samples = list(fctx.problem_samples)
    store.finish_source(job.source_id, fr.status, fr.records, fr.findings, job.content_hash,
                        "; ".join(str(p) for p in fr.problems) or None,
                        entity_counts=[(e, s, r, n) for (e, s, r), n in job.counts.items()],
                        fmt=fctx.fmt if fctx is not None else None,
                        parse_problems=fctx.parse_problems if fctx is not None else 0)
    job.finished = True


# EventLogFile event rows go to DuckDB in batches of about this many: large enough that the
# statement's fixed cost is small, small enough that it overlaps with the scan of the next range
# and that the rows held meanwhile stay small (measured on 2 GB: 20k rows 349 MiB peak and 51 MB/s,
# 30k 363 MiB, 40k 379 MiB and 61 MB/s, 122,880 — one DuckDB row group, written without the WAL —
# 452 MiB: over the 400 MiB target).
ELF_BATCH_ROWS = 30_000


def _submit_elf(store: Store, scan_id: int, job: _FileJob) -> None:
    """Hand the file's pending EventLogFile rows to the event writer thread. DuckDB reads them in
    C++ without the GIL, on a cursor of its own, while this thread scores the next range; the
    file is closed only once they are stored (:func:`_wait_events`)."""
    elf_rows, job.elf_rows = job.elf_rows, []
    if elf_rows:
        # Back-pressure: at most one batch queued, so memory stays flat if DuckDB falls behind.
        while len(job.elf_futures) >= 1:
            _count_elf(job, job.elf_futures.pop(0).result())
        job.elf_futures.append(job.event_writer.submit(
            store.insert_elf_events, scan_id, job.source_id, job.stored_path, elf_rows, list(job.fctx.headers),
            job.enricher.classify_hosts, job.enricher.hash_actors, cursor=True))


def _wait_events(job: _FileJob) -> None:
    """Wait for the file's writes on the writer thread to be stored (errors surface here)."""
    futures, job.elf_futures = job.elf_futures, []
    for fut in futures:
        _count_elf(job, fut.result())
    futures, job.write_futures = job.write_futures, []
    for fut in futures:
        _count_written(job, fut.result())


def _count_written(job: _FileJob, result: tuple[int, int]) -> None:
    new_findings, events = result
    job.result.new_findings += new_findings
    job.result.events += events


def _write_rows(store: Store, scan_id: int, source_id: int, path: str, events: list, batches: list,
                cursor: bool = True) -> tuple[int, int]:
    """Findings and event rows of a file: (new findings, new events). ``cursor``: on a cursor of
    its own (the writer thread)."""
    stored = store.insert_events(scan_id, source_id, path, events, cursor=cursor)
    new = 0
    for batch in batches:
        new += store.insert_findings(scan_id, source_id, path, batch, cursor=cursor)
    return new, stored


def _count_elf(job: _FileJob, result: tuple[int, int]) -> None:
    """Stored events, and EventLogFile rows whose cells did not match their header (a parse
    problem, like any record that does not parse)."""
    stored, dropped = result
    job.result.events += stored
    if dropped and job.fctx is not None:
        job.fctx.parse_problems += dropped


def _flush(store: Store, scan_id: int, job: _FileJob, tally: _Tally, jsonl) -> None:
    """Insert the rows a file's ranges have produced so far (in file order)."""
    fr = job.result
    batches, job.buffer = job.buffer, []
    events, job.events = job.events, []
    if job.event_writer is not None:
        # The inserts run on the writer thread (in order, after the file's earlier writes), so
        # this thread scores the next range meanwhile instead of waiting for DuckDB; the counts
        # come back when the file is closed (_wait_events). At most one batch queued (memory).
        _submit_elf(store, scan_id, job)
        if events or batches:
            while len(job.write_futures) >= 1:
                _count_written(job, job.write_futures.pop(0).result())
            job.write_futures.append(job.event_writer.submit(
                _write_rows, store, scan_id, job.source_id, job.stored_path, events, batches))
    else:
        _count_written(job, _write_rows(store, scan_id, job.source_id, job.stored_path, events, batches, cursor=False))
    elf_rows, job.elf_rows = job.elf_rows, []
    if elf_rows:
        _count_elf(job, store.insert_elf_events(scan_id, job.source_id, job.stored_path, elf_rows, job.fctx.headers,
                                                job.enricher.classify_hosts, job.enricher.hash_actors))
    for batch in batches:
        fr.findings += tally.add_batch(batch)
        _count_into(job.counts, batch)
        if jsonl is not None:
            _write_jsonl(jsonl, storable_path(fr.path), batch)


def _count_into(counts: dict, batch: dict) -> None:
    for k in zip(batch["entity"], batch["severity"], batch["severity_rank"]):
        counts[k] = counts.get(k, 0) + 1


class _Tally:
    """Counts what this run found, including findings the database already held (a re-scan of
    unchanged content must still fail a CI gate). Only counters live in memory; distinct values
    are counted by DuckDB at the end, so memory does not grow with the number of findings."""

    def __init__(self):
        self.counts: dict[tuple[str, str, int], int] = {}
        self.total = 0
        self.paths: list[str] = []

    def add_batch(self, batch: dict) -> int:
        _count_into(self.counts, batch)
        n = batch_len(batch)
        self.total += n
        return n

    def add_counts(self, rows: list[tuple[str, str, int, int]]) -> int:
        """Counts recorded for a file skipped as unchanged (see Store.unchanged)."""
        n = 0
        for ent, sev, rank, c in rows:
            k = (ent, sev, int(rank))
            self.counts[k] = self.counts.get(k, 0) + c
            n += c
        self.total += n
        return n

    def at_or_above(self, rank: int) -> int:
        return sum(n for (_, _, r), n in self.counts.items() if r >= rank)

    def rows(self, store: Store) -> list[dict]:
        distinct = {}
        if self.paths:
            distinct = {
                (e, s): d for e, s, d in store.con.execute(
                    "SELECT entity, severity, count(DISTINCT value_hash) FROM findings "
                    "WHERE source_path IN (SELECT unnest(?)) GROUP BY ALL", [self.paths]
                ).fetchall()
            }
        # The paths' stored findings include those of earlier versions of a file (rewritten since):
        # never more distinct values than this run's findings.
        out = [{"entity": e, "severity": s, "severity_rank": r, "findings": n,
                "distinct_values": min(n, distinct.get((e, s), 0))}
               for (e, s, r), n in self.counts.items()]
        out.sort(key=lambda d: (-d["severity_rank"], -d["findings"], d["entity"]))
        return out


def _record_problems(store: Store, scan_id: int, fr: FileResult) -> None:
    # Stored under the absolute path, as the file's row in `sources` is.
    for p in fr.problems:
        store.add_error(scan_id, os.path.abspath(p.path), p.line, p.kind, p.message)


# Optional keys of a JSON line, present when the record's format or destination gave them.
_JSONL_EXTRA = ("field_path", "format", "detector", "dest_host", "dest_vendor", "dest_region", "dest_jurisdiction",
                "sf_object", "sf_field", "prompt_role")


def _write_jsonl(out, path: str, batch: dict) -> None:
    lines = []
    raw = batch["raw_value"]
    for i in range(batch_len(batch)):
        obj = {
            "source": path,
            "line": int(batch["line"][i]),
            "start": int(batch["start_byte"][i]),
            "end": int(batch["end_byte"][i]),
            "rule": batch["rule_id"][i],
            "entity": batch["entity"][i],
            "confidence": round(float(batch["confidence"][i]), 3),
            "severity": batch["severity"][i],
            "field": batch["field"][i],
            "masked": batch["masked"][i],
            "value_hash": batch["value_hash"][i],
        }
        for key in _JSONL_EXTRA:
            col = batch.get(key)
            if col is not None and col[i] is not None:
                obj[key] = col[i]
        ts = batch.get("ts")
        if ts is not None and ts[i] == ts[i]:  # NaN: the record has no timestamp
            obj["ts"] = datetime.fromtimestamp(float(ts[i]), timezone.utc).isoformat().replace("+00:00", "Z")
        viol = batch.get("residency_violation")
        if viol is not None and viol[i] >= 0:
            obj["residency_violation"] = bool(viol[i])
        if raw[i] is not None:
            obj["raw"] = raw[i]
        lines.append(json.dumps(obj, ensure_ascii=False))
    out.write("\n".join(lines) + "\n")
    out.flush()


# ---------------------------------------------------------------------------------------------
# Appended bytes: ``leakwatch watch``
#
# A followed file is scanned piece by piece as it grows, through the same native scan,
# enrichment and scoring as scan_paths, and stored with the file's real path and real line
# numbers: a finding looks the same whichever command stored it, and the duplicate key (path,
# line, start, rule, value hash), checked within one generation of the file (see
# TailScanner.begin_generation), makes a re-read tail add nothing. One thread: a cycle's
# pieces are small, and the time from a line landing to its notification matters more here
# than throughput.

#: Most bytes of one file scanned per call: a backlog (a big file found at start) is worked off
#: over several cycles, so other files and the cycle's notifications wait at most ~0.2 s (at
#: ~200 MB/s), and one transaction stays small.
TAIL_MAX_BYTES = 32 << 20


@dataclass
class TailFile:
    """One followed file as :class:`TailScanner` reads it, kept by the caller between calls (one
    per file generation: a rotated or truncated file gets a new one). ``path`` is the absolute
    path findings are stored under; ``fctx``/``header`` come from the file's first bytes."""

    path: str
    fctx: object  # leakwatch.detect.enrich.FileContext
    header: list[str] | None
    column_rules: dict
    compressed: bool = False
    source_id: int | None = None  # this file's ``sources`` row in the current scan (watch session)
    generation: str | None = None  # see TailScanner.begin_generation
    dedup_ids: set = field(default_factory=set)  # sources whose findings this generation's are checked against
    records: int = 0
    findings: int = 0
    new_findings: int = 0
    events: int = 0
    reported: set = field(default_factory=set)  # problem kinds already reported for this file


@dataclass
class TailResult:
    """What one :meth:`TailScanner.scan` call read and stored. ``offset``/``line``/``line_offset``
    are where the next call starts: the byte after the last one scanned, the complete lines before
    it, and the bytes of the line at ``offset`` already scanned (a piece of an over-long line, or a
    last line that was scanned without its newline because the file went idle)."""

    offset: int
    line: int
    line_offset: int = 0
    bytes: int = 0
    records: int = 0
    findings: int = 0
    new_findings: int = 0
    events: int = 0
    problems: list[InputProblem] = field(default_factory=list)
    more: bool = False  # stopped at ``max_bytes``: complete lines are left for the next call
    partial: bool = False  # bytes after the last newline are waiting for theirs


class TailScanner:
    """Scans bytes appended to files into an open :class:`Store` (``leakwatch watch``).

    Built once per session: the rules are compiled once and the enricher keeps its caches. Not
    thread-safe; the thread that owns ``store`` calls it. ``rules``/``rules_dirs``, ``config``,
    ``store_raw``, ``fmt`` and ``ner`` mean what they mean for :func:`scan_paths`. ``now`` is
    the clock findings are stamped with when stored (``created_at``; default: the database's).
    """

    def __init__(self, store: Store, *, rules: list[Rule] | None = None,
                 rules_dirs: list[str | os.PathLike] | None = None, config=None, store_raw: bool = False,
                 fmt: str | None = None, ner: bool | None = None, now: Callable[[], datetime] | None = None):
        rule_errors: list[RuleError] = []
        if rules is None:
            rules, rule_errors = load_rules(rules_dirs or [default_rules_dir()])
        rules = [r for r in rules if r.enabled]
        if not rules:
            where = ", ".join(str(d) for d in (rules_dirs or [default_rules_dir()]))
            raise UsageError(f"no enabled rules to scan with (rules from {where})")
        self.store = store
        self.rules = rules
        self.rule_errors = rule_errors
        self.rules_hash = ruleset_hash(rules)
        self.fmt = fmt
        self.enricher = _make_enricher(config, store, ner)
        self.config = self.enricher.config
        self.detector = Detector(rules, store.key, store_raw=store_raw, markers=self.enricher.marker_patterns)
        self.now = now

    def open_file(self, path: str, head: bytes, *, compressed: bool = False) -> TailFile:
        """A :class:`TailFile` for ``path`` whose first bytes (decompressed, without a byte-order
        mark) are ``head``: the format is sniffed from them as scan_paths does."""
        pattern = _custom_pattern(self.enricher, path)
        fctx = self.enricher.file_context(path, head, self.fmt or ("regex" if pattern else None), pattern)
        header = sniff_csv_header(head.split(b"\n", 1)[0])
        tf = TailFile(path, fctx, header, self.detector.column_rules_for(header), compressed)
        if fctx.format_problem:
            tf.reported.add("format")
        return tf

    def begin_generation(self, tf: TailFile, tag: str, fd: int | None = None, *, size: int | None = None,
                         mtime_ns: int | None = None, bom: int = 0) -> None:
        """Say which earlier findings ``tf``'s new findings are duplicates of.

        The store's duplicate key (path, line, start, rule, value hash) knows nothing of a file's
        generation: a rotated log's successor at the same path, holding the same value at the
        same line and offset (a daily job logging the same customers), would add nothing. So
        findings of a followed file are checked only against the ``sources`` rows of the same
        generation: those tagged ``tag`` (``watch:<device>:<inode>:<start>``, kept in their
        ``content_hash``: earlier sessions following the same file), and those of ``leakwatch
        scan`` runs that read a prefix of this very file (its first ``size`` bytes have the
        content hash they recorded; gzip: same size and mtime). ``fd`` is the open file
        (``size``/``mtime_ns`` its current ones), ``bom`` the length of a UTF-8 byte-order mark
        (scan hashes the text after it)."""
        con = self.store.con
        tf.generation = tag
        ids = {int(r[0]) for r in con.execute("SELECT source_id FROM sources WHERE content_hash = ?", [tag]).fetchall()}
        scans = con.execute(
            "SELECT source_id, size, mtime_ns, content_hash FROM sources WHERE path = ? AND content_hash IS NOT NULL"
            " AND content_hash NOT LIKE 'watch:%' ORDER BY source_id DESC", [storable_path(tf.path)]).fetchall()
        hashes: dict[int, str | None] = {}
        for sid, ssize, smtime, chash in scans:
            if ssize is None or size is None or ssize > size:
                continue
            if tf.compressed:
                if (ssize, smtime) == (size, mtime_ns):
                    ids.add(int(sid))
                continue
            if fd is None:
                continue
            if ssize not in hashes:
                try:
                    hashes[ssize] = _prefix_hash(fd, bom, ssize)
                except OSError:
                    hashes[ssize] = None
            if hashes[ssize] == chash:
                ids.add(int(sid))
        tf.dedup_ids = ids

    def scan(self, tf: TailFile, fd: int, start: int, stop: int, *, line: int, line_offset: int = 0,
             final: bool = False, scan_id: int, max_bytes: int = TAIL_MAX_BYTES,
             commit: Callable[[object, TailResult], None] | None = None,
             cut: int = 0) -> TailResult:
        """Scan bytes [``start``, ``stop``) of the open, uncompressed file ``fd`` up to the last
        newline, and store what they hold.

        ``line`` is the number of complete lines before ``start`` and ``line_offset`` the bytes of
        the line at ``start`` scanned earlier. Bytes after the last newline wait (``partial``)
        unless ``final`` (the file went idle or away: its last line is taken as it is); a line
        longer than MAX_RECORD is scanned in pieces. At most about ``max_bytes`` are read. The
        findings, events, problems and whatever ``commit(con, result)`` writes (the caller's
        offsets) are one transaction: all are stored, or none.

        ``cut``: the line at ``start`` (``line_offset`` 0) was scanned before up to ``cut`` bytes,
        taken as it was when its file went idle, and is read again whole now that it goes on. A
        value the pause cut (``jane@example.co`` of ``jane@example.com``) was stored then; the
        whole value found now takes its place (and its incident), so one value is not two.
        """
        res = TailResult(start, line, line_offset)
        work = [self._process(tf, c) for c in _appended_chunks(fd, tf, res, stop, final, max_bytes)]
        if res.bytes or res.problems:
            self._store(tf, scan_id, work, res, commit, (line + 1, cut) if cut else None)
        return res

    def scan_stream(self, tf: TailFile, *, scan_id: int,
                    commit: Callable[[object, TailResult], None] | None = None, skip_lines: int = 0,
                    hold: tuple[str, ...] = ()) -> TailResult:
        """Scan a whole file through :func:`leakwatch.sources.files.iter_chunks` (gzip: a
        compressed file is read once, when it looks complete), in one transaction with
        ``commit``. The first ``skip_lines`` lines are read, not scanned (their findings are
        stored already, under the file they were read from). Problems of the kinds in ``hold``
        are returned in ``res.problems`` but not stored (the caller says them later, or not).
        Raises OSError when the file cannot be opened."""
        stats = ReadStats()
        res = TailResult(0, 0)
        work = []
        for chunk in iter_chunks(tf.path, stats):
            if skip_lines:
                chunk = _after_lines(chunk, skip_lines)
                if chunk is None:
                    continue
            work.append(self._process(tf, chunk))
        res.line = res.records = stats.records
        res.bytes = stats.bytes_read
        res.problems.extend(p for p in stats.problems if p.kind not in hold)
        self._store(tf, scan_id, work, res, commit)
        res.problems.extend(p for p in stats.problems if p.kind in hold)
        return res

    # -- internals ------------------------------------------------------------------------------

    def _process(self, tf: TailFile, chunk) -> tuple[list[dict], list[tuple], list[tuple]]:
        """Findings batches, event rows and EventLogFile rows of one chunk (absolute line numbers)."""
        det = self.detector
        res = det.scanner.scan(chunk.view)
        batches: list[dict] = []
        events: list[tuple] = []
        elf: list[tuple] = []
        if len(res.record):
            h = compact_hits(chunk.data, chunk.end, res, chunk.first_line, chunk.first_line_offset)
            batch, ev, elf_rows = self.enricher.process(tf.fctx, det, h.data, h.result, h.first_line,
                                                        h.first_line_offset, tf.header)
            if batch_len(batch):
                batches.append(batch)
            events += ev
            if elf_rows is not None:
                elf.append(elf_rows)
        if tf.column_rules:
            batch = det.column_batch(chunk, tf.header, tf.column_rules, True)
            if batch_len(batch):
                batches.append(_with_all_columns(batch, detector="column"))
        return batches, events, elf

    def _store(self, tf: TailFile, scan_id: int, work: list, res: TailResult, commit,
               cut_line: tuple[int, int] | None = None) -> None:
        import duckdb

        store = self.store
        batches = _merge([b for w in work for b in w[0]])
        events = [e for w in work for e in w[1]]
        elf_rows = [r for w in work for r in w[2]]
        fctx = tf.fctx
        if fctx is not None and fctx.parse_problems and "parse" not in tf.reported and fctx.problem_samples:
            ln, msg = fctx.problem_samples[0]
            res.problems.append(InputProblem(tf.path, "parse", f"does not parse as {fctx.fmt}: {msg}; scanned as text", ln))
            tf.reported.add("parse")
        con = store.con
        new_source = tf.source_id is None
        try:
            con.begin()
        except duckdb.Error as e:
            raise StoreError(f"{store.path}: cannot store findings from {tf.path}: {e}") from e
        try:
            if new_source:
                tf.source_id = store.begin_source(scan_id, tf.path, None, None, "gzip" if tf.compressed else None)
                if tf.generation is not None:
                    con.execute("UPDATE sources SET content_hash = ? WHERE source_id = ?", [tf.generation, tf.source_id])
                    tf.dedup_ids.add(tf.source_id)
            created_at = self.now() if self.now is not None else None
            for batch in batches:
                if tf.generation is None:
                    res.new_findings += store.insert_findings(scan_id, tf.source_id, tf.path, batch, created_at=created_at)
                else:
                    res.new_findings += _insert_in_generation(store, scan_id, tf, batch, created_at)
                res.findings += batch_len(batch)
            if cut_line is not None and batches:
                _replace_cut_values(con, sorted(tf.dedup_ids | {tf.source_id}), *cut_line)
            res.events += store.insert_events(scan_id, tf.source_id, tf.path, events)
            if elf_rows:
                stored, _dropped = store.insert_elf_events(scan_id, tf.source_id, tf.path, elf_rows, fctx.headers,
                                                           self.enricher.classify_hosts, self.enricher.hash_actors)
                res.events += stored
            for p in res.problems:
                store.add_error(scan_id, p.path, p.line, p.kind, p.message)
            if commit is not None:
                commit(con, res)
            con.commit()
        except BaseException as e:
            with contextlib.suppress(duckdb.Error):
                con.rollback()
            if new_source:
                tf.dedup_ids.discard(tf.source_id)
                tf.source_id = None
            if isinstance(e, duckdb.Error):
                raise StoreError(f"{store.path}: cannot store findings from {tf.path}: {e}") from e
            raise
        tf.records += res.records
        tf.findings += res.findings
        tf.new_findings += res.new_findings
        tf.events += res.events

    def finish(self, tf: TailFile, status: str = "ok", error: str | None = None) -> None:
        """Close ``tf``'s ``sources`` row (at the end of a session, or when the file goes away).
        Size and mtime stay NULL: the row describes what was read while following, not the whole
        file, so a later ``leakwatch scan`` never takes the file as already scanned."""
        if tf.source_id is None:
            return
        fctx = tf.fctx
        self.store.finish_source(tf.source_id, status, tf.records, tf.findings, tf.generation, error,
                                 fmt=fctx.fmt if fctx is not None else None,
                                 parse_problems=fctx.parse_problems if fctx is not None else 0)
        tf.source_id = None


def _prefix_hash(fd: int, skip: int, size: int) -> str:
    """xxh3-128 of bytes [skip, size) of ``fd``: what scan_paths records as a file's content hash."""
    hasher = xxhash.xxh3_128()
    pos = skip
    while pos < size:
        data = os.pread(fd, min(CHUNK_SIZE, size - pos), pos)
        if not data:
            break
        hasher.update(data)
        pos += len(data)
    return hasher.hexdigest()


def _after_lines(chunk: Chunk, n: int) -> Chunk | None:
    """The part of ``chunk`` after the file's first ``n`` lines (None: all of it is in them)."""
    if chunk.first_line >= n:
        return chunk
    view = chunk.view
    pos, line = 0, chunk.first_line
    while line < n:
        nl = chunk.data.find(b"\n", pos, chunk.end)
        if nl == -1:
            return None
        pos, line = nl + 1, line + 1
    if pos >= chunk.end:
        return None
    return Chunk(bytes(view[pos:]), n)


#: A value cut short by a pause may end a little before the cut: the writer paused after a
#: separator ("+44 20 7946 ", the space not part of the match).
CUT_SLACK = 8


def _replace_cut_values(con, source_ids: list[int], line: int, cut: int) -> None:
    """Findings of ``line`` that end where an earlier scan of it stopped (``cut``, or a few
    separator bytes before it) and that the whole line now gives longer (same rule, same start)
    are dropped; incidents that held them hold the longer ones instead. ``source_ids`` are the
    file's generation: after a restart the longer value is in a ``sources`` row of its own."""
    pairs = con.execute(
        """
        SELECT o.finding_id, min(n.finding_id)
        FROM findings AS o JOIN findings AS n
          ON n.line = o.line AND n.rule_id = o.rule_id
         AND n.start_byte = o.start_byte AND n.end_byte > o.end_byte
        WHERE list_contains($ids, o.source_id) AND list_contains($ids, n.source_id)
          AND o.line = $line AND o.end_byte BETWEEN $cut - $slack AND $cut
        GROUP BY o.finding_id
        """, {"ids": source_ids, "line": line, "cut": cut, "slack": CUT_SLACK}).fetchall()
    for old, new in pairs:
        con.execute("UPDATE incident_findings SET finding_id = $new WHERE finding_id = $old"
                    " AND NOT EXISTS (SELECT 1 FROM incident_findings WHERE finding_id = $new)",
                    {"old": old, "new": new})
        con.execute("DELETE FROM incident_findings WHERE finding_id = ?", [old])
        con.execute("DELETE FROM findings WHERE finding_id = ?", [old])


def _insert_in_generation(store: Store, scan_id: int, tf: TailFile, batch: dict,
                          created_at: datetime | None = None) -> int:
    """:meth:`Store.insert_findings`, with the duplicate check limited to the findings of
    ``tf.dedup_ids`` (see :meth:`TailScanner.begin_generation`) instead of every source of the path."""
    from leakwatch.store import ingest

    cols, n = ingest.prepare_batch(batch)
    if n == 0:
        return 0
    params = {"scan_id": scan_id, "source_id": tf.source_id, "path": storable_path(tf.path),
              "line_lo": int(cols["line"].min()), "line_hi": int(cols["line"].max())}
    if created_at is not None:
        params["created_at"] = created_at
    with store._write(f"store findings from {tf.path}") as con:
        con.register(ingest._VIEW, cols)
        try:
            row = con.execute(ingest._insert_sql(list(cols), sorted(tf.dedup_ids), ingest.may_repeat_keys(cols),
                                                 created_at is not None), params).fetchone()
        finally:
            con.unregister(ingest._VIEW)
    return int(row[0]) if row else 0


def _appended_chunks(fd: int, tf: TailFile, res: TailResult, stop: int, final: bool, max_bytes: int):
    """Newline-aligned chunks of ``fd`` from ``res.offset`` to ``stop``, read with ``pread``
    (the open file, not the path: a rotated file is finished from the inode that was followed).
    ``res`` is moved past each chunk once the consumer has it."""
    pos = res.offset
    size = CHUNK_SIZE
    while pos < stop:
        if res.bytes >= max_bytes:
            res.more = True
            return
        want = min(size, stop - pos)
        data = os.pread(fd, want, pos)
        if not data:
            return  # the file shrank since its size was taken: the caller sees the truncation
        at_end = len(data) < want or pos + len(data) >= stop
        cut = data.rfind(b"\n")
        if cut != -1:
            end = cut + 1
        elif not at_end and len(data) < MAX_RECORD:
            size = min(size * 2, MAX_RECORD)  # one line longer than the block: read a larger one
            continue
        elif at_end and not final and len(data) < MAX_RECORD:
            res.partial = True  # the rest of this line is not written yet
            return
        else:
            end = len(data)  # the idle file's last line, or a piece of an over-long line
            if len(data) >= MAX_RECORD and "long_line" not in tf.reported:
                res.problems.append(InputProblem(
                    tf.path, "long_line", f"line longer than {MAX_RECORD >> 20} MiB; scanned in pieces, so a "
                    "match spanning two pieces may be missed", res.line + 1))
                tf.reported.add("long_line")
        size = CHUNK_SIZE
        chunk = Chunk(data, res.line, res.line_offset, end)
        _check_text(tf, chunk, res)
        yield chunk
        n = count_newlines(chunk.view)
        last_nl = data.rfind(b"\n", 0, end)
        res.line += n
        res.records += n
        res.line_offset = res.line_offset + end if last_nl == -1 else end - last_nl - 1
        pos += end
        res.offset = pos
        res.bytes += end


def _check_text(tf: TailFile, chunk, res: TailResult) -> None:
    """Report (once per file) appended bytes that are not text: control bytes, or not UTF-8.
    They are scanned all the same (RE2 reads bytes; Latin-1 text matches as it is)."""
    data = chunk.view
    if "binary" not in tf.reported and looks_binary(bytes(data[:SNIFF_BYTES])):
        tf.reported.add("binary")
        res.problems.append(InputProblem(tf.path, "binary", "binary data (mostly control bytes) appended; scanned as "
                                         "bytes", chunk.first_line + 1))
    if "encoding" not in tf.reported:
        try:
            codecs.decode(data, "utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data" and e.start >= len(data) - 3:
                return  # a multi-byte character cut by a piece boundary of an over-long line
            at = chunk.first_line + 1 + count_newlines(data[:e.start])
            tf.reported.add("encoding")
            res.problems.append(InputProblem(tf.path, "encoding", "not valid UTF-8 from here on (Latin-1 or "
                                             "damaged text?); scanned as bytes", at))


__all__ = ["scan_paths", "ScanSummary", "FileResult", "TailScanner", "TailFile", "TailResult"]
