"""From bytes to findings: the native scan, then per-candidate scoring, masking and hashing.

A :class:`Detector` is built once per process from the enabled rules and the database's HMAC
key. ``process(chunk)`` returns a columnar batch ready for one DuckDB insert. Raw values never
leave this module unless ``store_raw`` is set: the batch carries a masked preview and a keyed
hash of the normalised value.
"""
from __future__ import annotations

import csv
import hmac
import re
from dataclasses import dataclass

import numpy as np

from leakwatch._core import Scanner
from leakwatch.detect.context import normalize_field
from leakwatch.detect.evaluate import Evaluator
from leakwatch.detect.mask import get_masker, get_normalizer
from leakwatch.detect.rules import Rule
from leakwatch.sources.files import Chunk

BATCH_COLUMNS = (
    "line", "start_byte", "end_byte", "rule_id", "entity", "confidence", "score_base",
    "score_validator", "score_context", "severity", "severity_rank", "field", "masked",
    "value_hash", "raw_value",
)

# A CSV header: 3+ comma-separated identifiers, optionally quoted (EventLogFile, report exports).
_HEADER_CELL = re.compile(rb'^"?[A-Za-z_][A-Za-z0-9_ .]*"?$')
# Values in name-like CSV columns longer than this are free text, not a person's name.
MAX_COLUMN_VALUE = 120


def sniff_csv_header(first_line: bytes) -> list[str] | None:
    """Column names if ``first_line`` looks like a CSV header, else None."""
    line = first_line.rstrip(b"\r\n")
    if line.count(b",") < 2:
        return None
    cells = line.split(b",")
    if not all(_HEADER_CELL.match(c.strip()) for c in cells):
        return None
    return [c.strip().strip(b'"').decode("ascii") for c in cells]


def _csv_cells(line: bytes) -> list[str]:
    return next(csv.reader([line.decode("latin-1")]), [])


def column_at(line: bytes, offset: int) -> int:
    """Index of the CSV column holding byte ``offset`` of ``line``."""
    prefix = line[:offset]
    if b'"' not in prefix:
        return prefix.count(b",")
    # Quoted values may hold commas: only commas outside quotes separate columns. Splitting on
    # '"' alternates outside/inside segments (a doubled "" toggles twice, so it stays right).
    return sum(seg.count(b",") for seg in prefix.split(b'"')[::2])


@dataclass
class _RulePlan:
    rule: Rule
    mask: object
    normalize: object
    severity: str
    rank: int


class Detector:
    """Everything needed to turn a chunk of one file into a findings batch."""

    def __init__(self, rules: list[Rule], key: bytes, *, store_raw: bool = False, scanner: Scanner | None = None):
        self.rules = [r for r in rules if r.enabled]
        self.key = key
        self.store_raw = store_raw
        self.scanner = scanner or Scanner([r.regex for r in self.rules])
        self.evaluator = Evaluator(self.rules)
        self._plans = [
            _RulePlan(r, get_masker(r.mask), get_normalizer(r.normalize), str(r.severity), int(r.severity))
            for r in self.rules
        ]
        # Rules anchored on a field name (context.required with fields) also take whole CSV cells
        # of such columns as candidates: a CSV row has no "key": before its values.
        self._column_rules = [
            i for i, r in enumerate(self.rules)
            if r.context is not None and r.context.required and r.context.fields and "csv-column" in r.tags
        ]

    def column_rules_for(self, header: list[str] | None) -> dict[int, list[int]]:
        """For a CSV header: column index → indexes of rules that take that column's cells."""
        if not header or not self._column_rules:
            return {}
        out: dict[int, list[int]] = {}
        for col, name in enumerate(header):
            norm = normalize_field(name)
            for ri in self._column_rules:
                if norm in self.rules[ri].context.fields:
                    out.setdefault(col, []).append(ri)
        return out

    def process(self, chunk: Chunk, *, header: list[str] | None = None,
                column_rules: dict[int, list[int]] | None = None) -> tuple[dict, int]:
        """Scan one chunk. Returns (batch columns, number of records in the chunk).

        ``line`` in the batch is 1-based and relative to the start of the range being read;
        ``start_byte``/``end_byte`` are offsets within the line.
        """
        data = chunk.data
        res = self.scanner.scan(data)
        cols: dict[str, list] = {c: [] for c in BATCH_COLUMNS}
        evaluate = self.evaluator.evaluate
        plans = self._plans
        key = self.key
        digest = hmac.digest
        store_raw = self.store_raw
        first_line = chunk.first_line + 1
        first_off = chunk.first_line_offset
        line_bytes = b""
        cur_ls = -1
        line_col_names = header
        recs = res.record.tolist()
        rules_ = res.rule.tolist()
        starts = res.start.tolist()
        ends = res.end.tolist()
        lss = res.line_start.tolist()
        for rec, ri, s, e, ls in zip(recs, rules_, starts, ends, lss):
            if ls != cur_ls:
                nl = data.find(b"\n", e)
                line_bytes = data[ls:nl if nl != -1 else len(data)]
                if line_bytes.endswith(b"\r"):
                    line_bytes = line_bytes[:-1]
                cur_ls = ls
            field = None
            # Mixed files (a CSV export with JSON lines appended, say) keep the header only for
            # lines that look like rows of it.
            if line_col_names is not None and line_bytes[:1] not in (b"{", b"[", b"<"):
                ci = column_at(line_bytes, s - ls)
                if ci < len(line_col_names):
                    field = line_col_names[ci]
            v = evaluate(ri, line_bytes, s - ls, min(e, ls + len(line_bytes)) - ls, field)
            if v is None:
                continue
            self._append(cols, plans[ri], line_bytes, v.value_start, v.value_end, v.confidence, v.score_base,
                         v.score_validator, v.score_context, v.field,
                         first_line + rec, first_off if rec == 0 else 0, digest, key, store_raw)
        if column_rules:
            self._column_candidates(cols, data, chunk, column_rules, header)
        return cols, res.n_records

    def _append(self, cols, plan, line, vs, ve, conf, sb, sv, sc, field, line_no, line_off, digest, key, store_raw):
        value = line[vs:ve]
        cols["line"].append(line_no)
        cols["start_byte"].append(vs + line_off)
        cols["end_byte"].append(ve + line_off)
        cols["rule_id"].append(plan.rule.id)
        cols["entity"].append(plan.rule.entity)
        cols["confidence"].append(conf)
        cols["score_base"].append(sb)
        cols["score_validator"].append(sv)
        cols["score_context"].append(sc)
        cols["severity"].append(plan.severity)
        cols["severity_rank"].append(plan.rank)
        cols["field"].append(field)
        cols["masked"].append(plan.mask(value))
        cols["value_hash"].append(digest(key, plan.normalize(value), "sha256").hex())
        cols["raw_value"].append(value.decode("utf-8", "backslashreplace") if store_raw else None)

    def _column_candidates(self, cols, data: bytes, chunk: Chunk, column_rules, header) -> None:
        digest, key, store_raw = hmac.digest, self.key, self.store_raw
        ln = chunk.first_line
        pos = 0
        n = len(data)
        while pos < n:
            nl = data.find(b"\n", pos)
            end = nl if nl != -1 else n
            line = data[pos:end].rstrip(b"\r")
            ln += 1
            if chunk.first_line == 0 and ln == 1:
                pos = end + 1
                continue  # the header itself
            if b'"' in line:
                cells = _csv_cells(line)
                # Byte offsets of quoted cells: locate each cell's text after the previous one.
            else:
                cells = line.decode("latin-1").split(",")
            search_from = 0
            for ci, cell in enumerate(cells):
                raw = cell.encode("latin-1")
                at = line.find(raw, search_from) if raw else -1
                if at >= 0:
                    search_from = at + len(raw)
                rules_here = column_rules.get(ci)
                if not rules_here or not raw.strip() or len(raw) > MAX_COLUMN_VALUE or at < 0:
                    continue
                for ri in rules_here:
                    plan = self._plans[ri]
                    base = plan.rule.confidence
                    ctx_boost = plan.rule.context.boost
                    conf = min(1.0, base + ctx_boost)
                    self._append(cols, plan, line, at, at + len(raw), conf, base, 0.0, ctx_boost,
                                 header[ci], ln, 0, digest, key, store_raw)
            pos = end + 1


def empty_batch() -> dict:
    """A batch with no rows (same columns as :meth:`Detector.process`)."""
    return {c: [] for c in BATCH_COLUMNS}


def batch_len(batch: dict) -> int:
    """Number of rows in a batch."""
    return len(batch["line"])


def offset_lines(batch: dict, base: int) -> dict:
    """Shift a batch's line numbers by ``base`` lines (ranges of a file scanned in parallel)."""
    if base:
        batch["line"] = (np.asarray(batch["line"], dtype=np.int64) + base).tolist()
    return batch
