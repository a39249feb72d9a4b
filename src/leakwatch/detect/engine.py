"""From bytes to findings: the native scan, then per-candidate scoring, masking and hashing.

A :class:`Detector` is built from the enabled rules and the database's HMAC key, once per
scanning thread. ``process(chunk)`` returns a columnar batch ready for one DuckDB insert. Raw values never
leave this module unless ``store_raw`` is set: the batch carries a masked preview and a keyed
hash of the normalised value.
"""
from __future__ import annotations

import csv
import re
import threading

import numpy as np

from typing import NamedTuple

from leakwatch._core import ScanResult, Scanner
from leakwatch._core.rows import build_rows, compact_records
from leakwatch.detect.context import NOT_ROW_STARTS, normalize_field, without_custom_suffix
from leakwatch.detect.evaluate import Evaluator, value_regex
from leakwatch.detect.mask import get_masker, get_normalizer
from leakwatch.detect.rules import Rule, Severity
from leakwatch.hashing import keyed_hash
from leakwatch.sources.files import Chunk
from leakwatch.sources.formats._csv import separator_of, split_row
from leakwatch.sources.formats._record import TS_KEYS, AttrCollector, norm_key

BATCH_COLUMNS = (
    "line", "start_byte", "end_byte", "rule_id", "entity", "confidence", "score_base",
    "score_validator", "score_context", "severity", "severity_rank", "field", "masked",
    "value_hash", "raw_value", "field_path",
)

# A CSV header: 3+ separated column names, optionally quoted (EventLogFile, report exports).
# A column name: letters (also outside ASCII, UTF-8: Straße, Prénom), digits, spaces and the
# punctuation of report exports' labels ("Zip/Postal Code", "Company / Account", "Phone (Work)",
# "Account #", "Owner's Name"); in quotes, the separator too ("Company, Inc").
_HEADER_CELL = re.compile(rb"^[A-Za-z_\x80-\xff][A-Za-z0-9_ .\-()/#&%'?:,;\t\x80-\xff]*$")
# Values in name-like CSV columns longer than this are free text, not a person's name.
MAX_COLUMN_VALUE = 120
LOW = int(Severity.LOW)


class CsvHeader(list):
    """A CSV header's column names, and the separator its rows use (``sep``)."""

    sep: bytes = b","


def sniff_csv_header(first_line: bytes) -> CsvHeader | None:
    """Column names if ``first_line`` looks like a CSV header (comma-, semicolon- or
    tab-separated), else None."""
    line = first_line.rstrip(b"\r\n")
    sep = separator_of(line)
    if line.count(sep) < 2:
        return None
    spans, problem = split_row(line, sep)
    cells = [line[a:b].strip() for a, b in spans]
    if problem is not None or len(cells) < 3 or not all(_HEADER_CELL.match(c) for c in cells):
        return None
    header = CsvHeader(c.decode("utf-8", "replace") for c in cells)
    header.sep = sep
    return header


def _csv_cells(line: bytes, sep: bytes = b",") -> list[str]:
    return next(csv.reader([line.decode("latin-1")], delimiter=sep.decode("ascii")), [])


def column_at(line: bytes, offset: int, sep: bytes = b",") -> int:
    """Index of the CSV column holding byte ``offset`` of ``line`` (cells separated by ``sep``)."""
    prefix = line[:offset]
    if b'"' not in prefix:
        return prefix.count(sep)
    n = prefix.count(b'"' + sep + b'"')
    if n == prefix.count(sep) and b'""' not in prefix:
        return n  # fully quoted row (EventLogFile): every separator separates
    # Quoted values may hold separators: only those outside quotes separate columns. Splitting
    # on '"' alternates outside/inside segments (a doubled "" toggles twice, so it stays right).
    return b"".join(prefix.split(b'"')[::2]).count(sep)


def _column_finder(header):
    """:func:`column_at` for the rows of ``header`` (a :class:`CsvHeader` knows its separator)."""
    sep = getattr(header, "sep", b",")
    if sep == b",":
        return column_at
    return lambda line, offset: column_at(line, offset, sep)


def _columns(rows: list[tuple]) -> dict:
    """Row tuples → the batch's column lists (one C-level transpose instead of 15 appends a row)."""
    if not rows:
        return {c: [] for c in BATCH_COLUMNS}
    return {c: list(col) for c, col in zip(BATCH_COLUMNS, zip(*rows))}


class Detector:
    """Everything needed to turn a chunk of one file into a findings batch."""

    def __init__(self, rules: list[Rule], key: bytes, *, store_raw: bool = False, scanner: Scanner | None = None,
                 compiled: bool = True, markers: list[str] | tuple[str, ...] = ()):
        self.rules = [r for r in rules if r.enabled]
        self.key = key
        self.store_raw = store_raw
        # Markers (leakwatch.detect.enrich) share the rules' RE2::Set: scanner rule indexes at and
        # above len(self.rules) are markers, never findings. A marker says which records to
        # read, not where in them, so the scanner reports the record (no span extraction: a
        # quarter of an EventLogFile export is marked, and extracting cost 20% of the scan).
        self.markers = tuple(markers)
        if scanner is None:
            patterns, options = scanner_args(self.rules, self.markers)
            scanner = Scanner(patterns, **options)
        self.scanner = scanner
        self.evaluator = Evaluator(self.rules)
        # The compiled loop (leakwatch._core.rows) and the Python loop below give identical rows;
        # the Python one is the readable reference, and the tests compare the two.
        self.compiled = compiled
        self._plans = [
            (r.id, r.entity, str(r.severity), int(r.severity), get_masker(r.mask), get_normalizer(r.normalize))
            for r in self.rules
        ]
        # Rules tagged csv-column also take whole CSV cells of the columns their context.fields
        # name as candidates: a CSV row has no "key": before its values.
        self._same_entity: dict[int, list] = {}
        self._yields = yielding_rules(self.rules)
        self._column_rules = [
            i for i, r in enumerate(self.rules)
            if r.context is not None and r.context.fields and "csv-column" in r.tags
        ]

    def column_rules_for(self, header: list[str] | None) -> dict[int, list[int]]:
        """For a CSV header: column index → indexes of rules that take that column's cells
        (a custom field's by its name without ``__c``: ``PESEL__c`` is a PESEL column)."""
        if not header or not self._column_rules:
            return {}
        out: dict[int, list[int]] = {}
        for col, name in enumerate(header):
            norm = normalize_field(without_custom_suffix(name.strip()))
            for ri in self._column_rules:
                if norm in self.rules[ri].context.fields:
                    out.setdefault(col, []).append(ri)
        return out

    def process(self, chunk: Chunk, *, header: list[str] | None = None,
                column_rules: dict[int, list[int]] | None = None, file_start: bool = True) -> tuple[dict, int]:
        """Scan one chunk. Returns (batch columns, number of records in the chunk).

        ``line`` in the batch is 1-based and relative to the start of the range being read;
        ``start_byte``/``end_byte`` are offsets within the line.
        """
        res = self.scanner.scan(chunk.view)
        rows = self.rows(chunk.data, chunk.end, res, chunk.first_line, chunk.first_line_offset, header)
        if column_rules:
            self._column_candidates(rows, chunk, column_rules, header, file_start)
        return _columns(rows), res.n_records

    def batch_from_hits(self, hits: "Hits", header: list[str] | None = None) -> dict:
        """The batch for a chunk that a worker scanned and compacted (see :func:`compact_hits`)."""
        return _columns(self.rows(hits.data, len(hits.data), hits.result, hits.first_line, hits.first_line_offset,
                                  header))

    def rows(self, data, limit: int, res, first_line: int, first_off: int, header: list[str] | None,
             field_of=None) -> list[tuple]:
        """Score, mask and hash the matches ``res`` of ``data[:limit]``: one tuple per finding.

        ``field_of(line_start, offset)`` names the field holding a value when the record's format
        is known (see :mod:`leakwatch.detect.enrich`); otherwise the key before the value is used.
        """
        if len(res.rule) and int(res.rule.max()) >= len(self.rules):
            keep = res.rule < len(self.rules)
            res = ScanResult(res.record[keep], res.rule[keep], res.start[keep], res.end[keep], res.line_start[keep],
                             res.n_records)
        if self.compiled:
            rows = build_rows(data, limit, res.record.tolist(), res.rule.tolist(), res.start.tolist(),
                              res.end.tolist(), res.line_start.tolist(), self.evaluator._plans, self._plans,
                              self.key, self.store_raw, first_line + 1, first_off,
                              list(header) if header is not None else None, _column_finder(header), field_of)
            return drop_yielding(rows, self._yields) if self._yields else rows
        rows: list[tuple] = []
        add = rows.append
        evaluate = self.evaluator.evaluate
        value_start = self.evaluator.value_start
        plans = self._plans
        key = self.key
        store_raw = self.store_raw
        first_line = first_line + 1
        line = b""
        cur_ls = -1
        csv_header = header
        find_column = _column_finder(header)
        csv_line = False
        for rec, ri, s, e, ls in zip(res.record.tolist(), res.rule.tolist(), res.start.tolist(),
                                     res.end.tolist(), res.line_start.tolist()):
            if ls != cur_ls:
                nl = data.find(b"\n", e, limit)
                line = bytes(data[ls:nl if nl != -1 else limit])
                if line[-1:] == b"\r":
                    line = line[:-1]
                cur_ls = ls
                # Mixed files (a CSV export with JSON lines appended, say) keep the header only
                # for lines that look like rows of it.
                csv_line = csv_header is not None and field_of is None and line[:1] not in NOT_ROW_STARTS
            s -= ls
            e -= ls
            field = None
            if csv_line:
                ci = find_column(line, s)
                if ci < len(csv_header):
                    field = csv_header[ci]
            e = e if e <= len(line) else len(line)
            if field is None and field_of is not None:
                # The field holding the value, not the match: a rule's value group may start later.
                field = field_of(cur_ls, value_start(ri, line, s, e))
            v = evaluate(ri, line, s, e, field)
            if v is None:
                continue
            vs, ve, conf, sb, sv, sc, fld = v
            path = field if field is not None else fld
            rule_id, entity, severity, rank, mask, normalize = plans[ri]
            if sv < 0 and rank > LOW:
                # Kept although its validator failed (on_fail: penalize): a placeholder such as
                # sk-xxxx… or a 15-character id with a bad checksum is listed, but it is no live
                # secret and must not trip --fail-on high.
                severity, rank = "low", LOW
            value = line[vs:ve]
            off = first_off if rec == 0 else 0
            add((first_line + rec, vs + off, ve + off, rule_id, entity, conf, sb, sv, sc, severity, rank, fld,
                 mask(value), keyed_hash(key, normalize(value)),
                 value.decode("utf-8", "backslashreplace") if store_raw else None, path))
        return drop_yielding(rows, self._yields) if self._yields else rows

    def _claimed_elsewhere(self, ri: int, cell: bytes) -> bool:
        """Whether a rule of the same entity matches inside ``cell``: the scan of the line
        reports that match (``+44 20 7946 0958`` under Phone is phone_e164's; a codice fiscale
        in capitals is its own unanchored rule's), so the cell is not reported a second time.
        Rules whose context is required do not count: their match alone is no finding. Searched with RE2 (linear time, the scanner's
        settings). A name column's cell that is an e-mail address (USER_NAME holds the login) is
        the e-mail rule's, not a person's name."""
        if b"@" in cell and self.rules[ri].entity == "PERSON_NAME":
            return True
        others = self._same_entity.get(ri)
        if others is None:
            others = []
            for r in self.rules:
                # A rule that needs context (a phone word before a number in prose) does not
                # report a bare match: it claims nothing.
                if r.entity == self.rules[ri].entity and not (r.context is not None and r.context.required):
                    others.append(value_regex(r.regex))
            self._same_entity[ri] = others
        return any(rx.search(cell) for rx in others)

    def column_batch(self, chunk: Chunk, header: list[str], column_rules, file_start: bool) -> dict:
        """The findings batch of whole cells of name-like CSV columns in one chunk, with the
        time of each finding's row where the header names a timestamp column."""
        rows: list[tuple] = []
        ts: list[float] = []
        self._column_candidates(rows, chunk, column_rules, header, file_start, ts)
        batch = _columns(rows)
        if rows:
            batch["ts"] = np.asarray(ts, dtype=np.float64)
        return batch

    def _column_candidates(self, rows: list, chunk: Chunk, column_rules, header, file_start: bool,
                           ts_out: list[float] | None = None) -> None:
        """Whole cells of name-like CSV columns as candidates of the rules that claim them
        (and, into ``ts_out``, each one's row time as epoch seconds, NaN when unknown)."""
        key, store_raw = self.key, self.store_raw
        sep = getattr(header, "sep", b",")
        sep_text = sep.decode("ascii")
        ts_cols = _timestamp_columns(header) if ts_out is not None else []
        data = chunk.tobytes()
        ln = chunk.first_line
        for line in data.split(b"\n"):
            ln += 1
            line = line.rstrip(b"\r")
            if ((file_start and chunk.first_line == 0 and ln == 1) or (chunk.first_line_offset and ln == chunk.first_line + 1)
                    or not line or line[:1] in NOT_ROW_STARTS):
                continue  # the header, the rest of an over-long line, blank lines, lines that are not rows
            cells = _csv_cells(line, sep) if b'"' in line else line.decode("latin-1").split(sep_text)
            search_from = 0
            row_ts = None  # parsed once per row, when the row has a candidate
            for ci, cell in enumerate(cells):
                raw = cell.encode("latin-1")
                # In the line, a quote inside a quoted cell is written twice.
                written = raw.replace(b'"', b'""') if b'"' in raw else raw
                at = line.find(written, search_from) if raw else -1
                if at >= 0:
                    search_from = at + len(written)
                rules_here = column_rules.get(ci)
                if not rules_here or not raw.strip() or len(raw) > MAX_COLUMN_VALUE or at < 0:
                    continue
                for ri in rules_here:
                    rule = self.rules[ri]
                    s_val = 0.0
                    if rule.validator is not None:
                        # The cell is the value: it passes the rule's validator or is no candidate
                        # ("N/A" in a Phone column), like a match of the regex.
                        validator, drop_on_fail, v_boost, v_penalty = self.evaluator._plans[ri][2:6]
                        if validator(raw.strip()):
                            s_val = v_boost
                        elif drop_on_fail:
                            continue
                        else:
                            s_val = v_penalty
                    if self._claimed_elsewhere(ri, raw):
                        continue
                    rule_id, entity, severity, rank, mask, normalize = self._plans[ri]
                    if s_val < 0 and rank > LOW:
                        severity, rank = "low", LOW
                    base, boost = rule.confidence, rule.context.boost
                    conf = min(1.0, max(0.0, base + s_val + boost))
                    if ts_out is not None:
                        if row_ts is None:
                            row_ts = _row_time(cells, ts_cols)
                        ts_out.append(row_ts)
                    rows.append((ln, at, at + len(written), rule_id, entity, conf, base, s_val, boost,
                                 severity, rank, normalize_field(header[ci]), mask(raw), keyed_hash(key, normalize(raw)),
                                 # raw_value is the cell as written, like every finding's [start, end)
                                 written.decode("utf-8", "backslashreplace") if store_raw else None, header[ci]))


def _timestamp_columns(header: list[str] | None) -> list[tuple[int, str]]:
    """(index, normalized name) of the header's timestamp columns."""
    return [(i, key) for i, name in enumerate(header or ()) if (key := norm_key(name)) in TS_KEYS]


def _row_time(cells: list[str], columns: list[tuple[int, str]]) -> float:
    """The row's time as parsed records get theirs (:meth:`AttrCollector.timestamp`: the
    best-ranked timestamp column that parses, TIMESTAMP_DERIVED before TIMESTAMP), epoch
    seconds; NaN when none does."""
    col = AttrCollector()
    for i, key in columns:
        if i < len(cells):
            col.offer(key, cells[i])
    t = col.timestamp()
    return t.timestamp() if t is not None else float("nan")


GENERIC_TAG = "generic"
YIELDS_TAG = "yields-to:"


def yielding_rules(rules: list[Rule]) -> dict[str, frozenset[str] | None]:
    """Rules whose finding gives way to another rule's on the same bytes: tag ``generic``
    (``bearer_token``, ``generic_api_key``: any specific rule wins, so one OpenAI key behind
    "Bearer" is one finding, not two) → None; tag ``yields-to:<rule id>`` → those rules
    (``email`` yields to ``password_in_url``: ``pw@host`` in ``https://user:pw@host`` is a
    password, not an address)."""
    out: dict[str, frozenset[str] | None] = {}
    for r in rules:
        if GENERIC_TAG in r.tags:
            out[r.id] = None
        targets = frozenset(t[len(YIELDS_TAG):] for t in r.tags if t.startswith(YIELDS_TAG))
        if targets and out.get(r.id, frozenset()) is not None:
            out[r.id] = targets
    return out


def drop_yielding(rows: list[tuple], yields: dict[str, frozenset[str] | None]) -> list[tuple]:
    """``rows`` (findings tuples: line, start, end, rule id, …) without those of a yielding
    rule (see :func:`yielding_rules`) whose span overlaps the span of a rule it yields to on
    the same line."""
    by_line: dict[int, list[tuple]] = {}
    for r in rows:
        if r[3] in yields:
            by_line.setdefault(r[0], [])
    if not by_line:
        return rows
    for r in rows:
        if r[0] in by_line:
            by_line[r[0]].append(r)
    drop = set()
    for line_rows in by_line.values():
        for r in line_rows:
            if r[3] not in yields:
                continue
            to = yields[r[3]]
            for o in line_rows:
                if o is r or o[1] >= r[2] or r[1] >= o[2]:
                    continue  # the same row, or no overlap
                if (to is None and o[3] not in yields) or (to is not None and o[3] in to):
                    drop.add(id(r))
                    break
    return [r for r in rows if id(r) not in drop] if drop else rows


def scanner_args(rules, markers) -> tuple[list[str], dict]:
    """The patterns and options of the scanner a :class:`Detector` over ``rules`` (enabled
    ones) and ``markers`` uses: the markers report whole records (``record_only``)."""
    patterns = [r.regex for r in rules if r.enabled] + list(markers)
    return patterns, {"record_only": range(len(patterns) - len(markers), len(patterns))}


class ScannerPool:
    """Compiled scanners kept warm between scans in one process.

    RE2 builds its DFA lazily, state by state, as the input needs them: on the bench corpus a
    fresh scanner spends ~0.25 s of its first 200 MB building states that a warm one already
    has (0.93 s against 0.69 s). A watch loop, a drill or the console scans again and again
    with the same rules; they take a warm scanner, use it from one thread, and give it back.
    One thread per scanner at a time keeps each DFA's cache lock uncontended. Only the most
    recent rule set is kept, and at most ``max_idle`` scanners of it (a warm DFA is tens of MB).
    """

    def __init__(self, max_idle: int = 4):
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._patterns: tuple | None = None  # (patterns, record_only) of the idle scanners
        self._idle: list[Scanner] = []

    def take(self, patterns, record_only=()) -> Scanner:
        key = (tuple(patterns), frozenset(record_only))
        with self._lock:
            if key == self._patterns and self._idle:
                return self._idle.pop()
        return Scanner(list(patterns), record_only=record_only)

    def give_back(self, scanner: Scanner) -> None:
        patterns = (tuple(p.decode("latin-1") for p in scanner.patterns), scanner.record_only)
        with self._lock:
            if patterns != self._patterns:
                self._patterns, self._idle = patterns, []
            if len(self._idle) < self.max_idle:
                self._idle.append(scanner)

    def clear(self) -> None:
        with self._lock:
            self._patterns, self._idle = None, []


SCANNERS = ScannerPool()


class Hits(NamedTuple):
    """The records of one chunk that hold matches, and the matches re-based onto them."""

    data: bytes
    result: ScanResult
    first_line: int
    first_line_offset: int


def compact_hits(data, limit: int, res: ScanResult, first_line: int, first_line_offset: int) -> Hits:
    """Keep only the records that hold matches (2–30% of a log), so that a worker thread can hand
    a chunk's matches to the database owner without holding on to the whole chunk. Offsets are
    moved onto the compacted bytes; record numbers stay those of the chunk. The copying runs
    without the GIL (``_core.rows.compact_records``); :func:`compact_hits_reference` is the
    same in Python, and the tests hold one to the other."""
    ls = res.line_start
    if len(ls) == 0:
        return Hits(b"", res, first_line, first_line_offset)
    starts, inverse = np.unique(ls, return_inverse=True)
    out, new_starts = compact_records(data, limit, starts)
    return _moved(res, ls, new_starts[inverse.reshape(-1)], out, first_line, first_line_offset)


class PieceTrim:
    """Keeps each match of an over-long line once, and whole, when the line is read in pieces
    that overlap (``iter_chunks(overlap=…)``): a piece drops the matches that start in its last
    ``overlap`` bytes (the next piece has them, with what follows the cut), and the next piece
    drops the matches that start where a kept one had not yet ended (the tail of a value the
    previous piece reported). Only a match longer than the overlap, across a cut, stays lost.
    Feed it the pieces of one reader in order."""

    def __init__(self, overlap: int):
        self.overlap = overlap
        self._kept_end = -1  # the farthest end, as a line offset, of a match kept before the cut

    def __call__(self, chunk: Chunk, res: ScanResult) -> ScanResult:
        if not (chunk.overlap or chunk.cut) or not len(res.record):
            if not chunk.cut:
                self._kept_end = -1
            return res
        keep = np.ones(len(res.record), dtype=bool)
        base = chunk.first_line_offset
        if chunk.overlap and self._kept_end >= 0:
            # Record 0 continues the line: its offsets in the line are base + offset.
            keep &= ~((res.record == 0) & (base + res.start < self._kept_end))
        self._kept_end = -1
        if chunk.cut:
            last = res.n_records - 1
            in_last = res.record == last
            keep &= ~(in_last & (res.start >= chunk.end - self.overlap))
            kept_last = in_last & keep
            if kept_last.any():
                line_base = base if last == 0 else 0
                self._kept_end = int((res.end[kept_last] - res.line_start[kept_last]).max()) + line_base
        if keep.all():
            return res
        return ScanResult(res.record[keep], res.rule[keep], res.start[keep], res.end[keep], res.line_start[keep],
                          res.n_records)


def mark_every_record(data, limit: int, res: ScanResult, marker: int) -> ScanResult:
    """``res`` plus one hit of rule ``marker`` (empty, at the record's start) on every non-empty
    record of ``data[:limit]``, sorted as the scanner sorts (record, start, rule)."""
    buf = np.frombuffer(data, dtype=np.uint8, count=limit)
    starts = np.concatenate((np.zeros(1, dtype=np.int64), np.flatnonzero(buf == 10).astype(np.int64) + 1))
    records = np.arange(len(starts), dtype=np.int64)
    keep = starts < limit
    keep[keep] = buf[starts[keep]] != 10  # blank lines hold nothing to read
    starts, records = starts[keep], records[keep]
    record = np.concatenate((res.record.astype(np.int64), records))
    rule = np.concatenate((res.rule.astype(np.int32), np.full(len(starts), marker, dtype=np.int32)))
    start = np.concatenate((res.start.astype(np.int64), starts))
    end = np.concatenate((res.end.astype(np.int64), starts))
    line_start = np.concatenate((res.line_start.astype(np.int64), starts))
    order = np.lexsort((rule, start, record))
    return ScanResult(record[order], rule[order], start[order], end[order], line_start[order], res.n_records)


def compact_hits_reference(data, limit: int, res: ScanResult, first_line: int, first_line_offset: int) -> Hits:
    """:func:`compact_hits` with ``bytes.find`` and ``join``: the oracle for the compiled copy."""
    ls = res.line_start
    if len(ls) == 0:
        return Hits(b"", res, first_line, first_line_offset)
    starts, inverse = np.unique(ls, return_inverse=True)
    parts = []
    new_starts = []
    pos = 0
    for u in starts.tolist():
        nl = data.find(b"\n", u, limit)
        end = nl if nl != -1 else limit
        parts.append(data[u:end])
        new_starts.append(pos)
        pos += end - u + 1
    new_ls = np.asarray(new_starts, dtype=np.int64)[inverse.reshape(-1)]
    return _moved(res, ls, new_ls, b"\n".join(parts) + b"\n", first_line, first_line_offset)


def _moved(res: ScanResult, ls, new_ls, out: bytes, first_line: int, first_line_offset: int) -> Hits:
    shift = new_ls - ls
    moved = ScanResult(res.record, res.rule, res.start + shift, res.end + shift, new_ls, res.n_records)
    return Hits(out, moved, first_line, first_line_offset)


def batch_len(batch: dict) -> int:
    """Number of rows in a batch."""
    return len(batch["line"])


def offset_lines(batch: dict, base: int) -> dict:
    """Shift a batch's line numbers by ``base`` lines (ranges of a file scanned in parallel)."""
    if base:
        batch["line"] = (np.asarray(batch["line"], dtype=np.int64) + base).tolist()
    return batch
