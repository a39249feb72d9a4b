"""Third stage: what the record around a finding says — its field, time, destination and owner.

The native scan looks at raw bytes; only the records it flags (a candidate, or a *marker*) are
parsed here, with the reader of the file's format (:mod:`leakwatch.sources.formats`). Parsing
2–4% of the records keeps format awareness off the bulk path. From a parsed record a finding
gets:

- the field path as the format names it (CSV column, JSON path, logfmt key), which also feeds
  the rules' context scoring (a 10-digit number under ``Phone`` is a phone number);
- the record's own timestamp;
- the destination of the record's outbound call (AI vendor, region, jurisdiction) and whether
  it breaks the configured data residency;
- the Salesforce object and field the value belongs to, and the role of the LLM message
  that carries it.

Markers are extra regexes compiled into the same ``RE2::Set`` as the rules. They never become
findings; they make the records the failure patterns need visible to this stage: calls to AI
endpoints, EventLogFile rows of bulk, report and API events, CDN hits on AI-content paths,
EventLogFile header lines (a concatenation of files changes columns mid-file) and, with NER
on, LLM prompts and other free text.
"""
from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leakwatch._core import PatternError, ScanResult, check_pattern
from leakwatch.detect import salesforce as sfmap
from leakwatch.detect.egress import Registry, extract_host
from leakwatch.detect.context import DATA_MARKS, SECRET_PREFIXES, data_like_key, normalize_field
from leakwatch.detect.mask import get_normalizer, mask_actor, mask_email, mask_name, mask_shape, safe_label
from leakwatch.hashing import keyed_hash
from leakwatch.sources import formats
from leakwatch._core.rows import compact_records
from leakwatch.store.elf_events import ELF_EVENT_KINDS, PII_SEGMENT_RX
from leakwatch.sources.formats._record import KEY_ROLES, AttrCollector, norm_key
from leakwatch.sources.formats._text import kv_in_text

# Rules whose value is a Salesforce record id: its object comes from the key prefix.
_RECORD_ID_RULES = frozenset({"sf_record_id", "sf_custom_record_id"})

# Marker kinds (see module docstring).
M_AI_HOST = "ai_host"
M_ELF_EVENT = "elf_event"
M_ELF_HEADER = "elf_header"
M_W3C_FIELDS = "w3c_fields"
M_CDN_PATH = "cdn_path"
M_FREE_TEXT = "free_text"

_ELF_EVENT_MARKER = r'^"?(?:' + "|".join(sorted(ELF_EVENT_KINDS, key=len, reverse=True)) + r')"?,'  # quoted or not
# A UTF-8 byte order mark may lead it: two exports concatenated, each written with one.
_ELF_HEADER_MARKER = r'^(?:\xef\xbb\xbf)?"?EVENT_TYPE"?,'
# A W3C log's #Fields directive (IIS writes one again after a restart, maybe with other fields).
_W3C_FIELDS_MARKER = r"^#Fields:"

_NAN = float("nan")
_ner_normalize = get_normalizer("lower_ws")  # JSON escapes undone, spaces folded, lower case

# Where a request path starts in a raw line: at its start (also after the newline before it,
# when RE2 reads several lines at once), after a space (combined log), a tab (W3C, CloudFront),
# a quote (JSON, CSV), `path=` (logfmt) or a comma (unquoted CSV).
_PATH_START = r"""(?:^|[\n \t"'=,])"""


def cdn_path_marker(pattern: str) -> str:
    """The RE2 marker for a ``[cdn] ai_paths`` regex (Python syntax, searched in a request path):
    it matches every raw line whose path the regex finds, and maybe more (the parsed path is
    checked against the regex itself later).

    The path is a part of the line, so the regex can stay as it is, except its anchors: a start
    anchor (``^``, ``\\A``, in any alternative) becomes "where a path starts in a line", and an end
    anchor is dropped (a query string or the rest of the line follows the path). A regex RE2
    cannot compile (look-arounds, back-references) gets a marker for any line with a ``/``.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            esc = pattern[i:i + 2]
            out.append(_PATH_START if esc == "\\A" else "" if esc in ("\\Z", "\\z") else esc)
            i += 2
        elif c == "[":
            # A class is copied whole: `^` and `$` in it are characters, and a `]` right after
            # `[` or `[^` is one too.
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            out.append(pattern[i:j + 1])
            i = j + 1
        else:
            out.append(_PATH_START if c == "^" else "" if c == "$" else c)
            i += 1
    marker = "".join(out)
    try:
        check_pattern(marker)
    except PatternError:
        return "/"
    return marker


@dataclass
class FileContext:
    """How one file is read: its format and the parse problems met so far."""

    path: str
    fmt: str
    parser: Any
    gateway_source: bool = False  # the file is the approved AI gateway's own log
    format_problem: str | None = None  # why the requested format could not be used
    headers: list[list[str]] = field(default_factory=list)  # EventLogFile headers met, by id
    _header_ids: dict = field(default_factory=dict)
    parse_problems: int = 0
    problem_samples: list[tuple[int, str]] = field(default_factory=list)
    calls_seen: set = field(default_factory=set)  # Mule (correlation id, host) of AI calls met

    def header_id(self) -> int:
        """Index (in ``headers``) of the EventLogFile header now in effect."""
        cols = tuple(getattr(self.parser, "columns", ()) or ())
        hid = self._header_ids.get(cols)
        if hid is None:
            hid = self._header_ids[cols] = len(self.headers)
            self.headers.append(list(cols))
        return hid

    def note_problem(self, line: int, message: str) -> None:
        self.parse_problems += 1
        if len(self.problem_samples) < 3:
            self.problem_samples.append((line, message))


@dataclass
class _Record:
    """A parsed record and what was derived from it (once per record, shared by its findings)."""

    line: bytes
    parsed: Any
    fmt: str
    ts: float = _NAN
    dest: Any = None
    dest_host: str | None = None
    violation: int = -1
    actor_hash: str | None = None
    actor_masked: str | None = None


def _readable(r: _Record) -> formats.ParsedRecord:
    """The record's fields; for a plain-text line, its key=value pairs (the text reader keeps
    no fields): description="…" in a line of a file that is no logfmt as a whole."""
    parsed = r.parsed
    if r.fmt == "text" and not parsed.fields and b"=" in r.line:
        parsed = formats.ParsedRecord()
        kv_in_text(r.line, 0, len(r.line), "", parsed, AttrCollector())
        parsed.fields = [(p.lstrip("."), s, e) for p, s, e in parsed.fields]
    return parsed


def _sibling_rules(detector) -> dict[str, frozenset[str]]:
    """Rule id → the field names whose presence beside a finding drops it (context.not_siblings)."""
    got = getattr(detector, "_not_siblings", None)
    if got is None:
        got = {r.id: r.context.not_siblings for r in detector.rules
               if r.context is not None and r.context.not_siblings}
        detector._not_siblings = got
    return got


def _drop_by_siblings(rows: list[tuple], siblings: dict[str, frozenset[str]], records,
                      ls_of_line: dict[int, int]) -> list[tuple]:
    """Rows without those whose record holds, beside the finding's field, a field the rule's
    not_siblings names: {"sku": "MW-3102", "name": "Knit Sock"} is a product, not a person."""
    out = []
    readable: dict[int, formats.ParsedRecord] = {}
    for row in rows:
        names = siblings.get(row[3])
        path = row[15]
        ls = ls_of_line.get(row[0], -1)
        rec = records.get(ls) if names and path else None
        if rec is not None:
            dot = path.rfind(".")
            parent = path[:dot + 1] if dot >= 0 else ""
            # A Java toString() in a text line too: Product{id=7, sku='MW-1', name='Knit Sock'}.
            parsed = readable.get(ls)
            if parsed is None:
                parsed = readable[ls] = _readable(rec)
            fields = parsed.fields
            beside = False
            for p, _, _ in fields:
                if p.startswith(parent) and "." not in p[len(parent):] and normalize_field(p[len(parent):]) in names:
                    beside = True
                    break
            if beside:
                continue
        out.append(row)
    return out


class Enricher:
    """Per scan: the registry, residency rules, markers and HMAC key that enrichment needs.

    Used by the thread that owns the database (it scores and stores in file order, which the
    EventLogFile header tracking relies on)."""

    def __init__(self, *, registry: Registry, key: bytes, allowed_jurisdictions,
                 is_gateway: Callable[[str | None], bool] | None = None,
                 gateway_sources: Callable[[str], bool] | None = None, cdn_ai_paths=(),
                 learned_prefixes: dict[str, str] | None = None, ner=None):
        self.registry = registry
        self.key = key
        self.allowed = tuple(allowed_jurisdictions)
        self.is_gateway = is_gateway or (lambda host: False)
        self.gateway_sources = gateway_sources or (lambda path: False)
        self.cdn_rx = [re.compile(p) for p in cdn_ai_paths]
        self.learned = dict(learned_prefixes or {})
        self.ner = ner
        markers: list[tuple[str, str]] = [(M_AI_HOST, p) for p in registry.marker_patterns()]
        markers += [(M_ELF_EVENT, _ELF_EVENT_MARKER), (M_ELF_HEADER, _ELF_HEADER_MARKER),
                    (M_W3C_FIELDS, _W3C_FIELDS_MARKER)]
        markers += [(M_CDN_PATH, cdn_path_marker(p)) for p in cdn_ai_paths]
        if ner is not None:
            # Keys whose string values are prose (see leakwatch.detect.ner.is_free_text).
            from leakwatch.detect.ner import free_text_marker

            markers.append((M_FREE_TEXT, free_text_marker()))
        self.markers = markers
        self._kind_codes = np.asarray([_KIND_CODES.get(k, 0) for k, _ in markers], dtype=np.int8)
        self._parsers: dict[str, Any] = {}
        self._shapes: dict[bytes, str] = {}
        self._header_parsers: dict[bytes, Any] = {}
        self._actors: dict[str, tuple[str, str]] = {}  # user → (keyed hash, masked): users repeat
        self._dest_cache: dict[str, tuple] = {}
        self._marker_rx: dict[int, re.Pattern] = {}

    @property
    def marker_patterns(self) -> list[str]:
        return [p for _, p in self.markers]

    # -- files -------------------------------------------------------------------------------
    def file_context(self, path: str, head: bytes, forced: str | None = None, pattern: str | None = None) -> FileContext:
        """Pick the reader for a file from its first bytes (or ``forced`` by ``--format``)."""
        fmt = forced or formats.sniff(head, path)
        header_line = None
        if fmt in ("eventlogfile", "csv"):
            header_line = head.split(b"\n", 1)[0].rstrip(b"\r")
        elif fmt == "w3c":
            header_line = formats.fields_directive(head)
        problem = None
        try:
            parser = formats.make_parser(fmt, header_line=header_line, pattern=pattern)
        except formats.FormatError as e:
            # A forced --format the file does not have (a CSV without its header, say): the file
            # is still scanned, as text, and the reason is reported with it.
            problem = str(e)
            fmt, parser = "text", formats.make_parser("text")
        ctx = FileContext(path, fmt, parser, gateway_source=self.gateway_sources(path))
        ctx.format_problem = problem
        return ctx

    def _fallback(self, line: bytes):
        """A record that does not parse as its file's format (a mixed file, an appended JSON
        line): the reader its own shape suggests, if that is a self-describing line format.
        Sniffing costs ~45 µs; lines of one source start alike, so the verdict is kept per
        shape (the first 12 bytes with digits folded)."""
        shape = line[:12].translate(_FOLD_DIGITS)
        name = self._shapes.get(shape)
        if name is None:
            name = formats.sniff(line)
            if len(self._shapes) < 4096:
                self._shapes[shape] = name
        if name in ("text", "csv", "eventlogfile", "w3c"):
            return None
        return self._reader(name)

    def _reader(self, name: str):
        """The reader of format ``name``, built once; None for a format that needs
        configuration (a custom regex format)."""
        p = self._parsers.get(name)
        if p is None:
            try:
                p = self._parsers[name] = formats.make_parser(name)
            except Exception:  # noqa: BLE001 - a format that needs configuration is no fallback
                return None
        return p

    def _text_parser(self):
        return self._reader("text")

    # -- records -----------------------------------------------------------------------------
    def _switch_columns(self, fctx: FileContext, fmt: str, line: bytes, line_no: int, what: str) -> None:
        """A header line met inside a file (``fmt``'s reader built from it) rules the records
        after it. A malformed one is a parse problem; the columns in effect stay."""
        line = line.removeprefix(b"\xef\xbb\xbf")
        parser = self._header_parsers.get(line)
        if parser is None:
            try:
                parser = formats.make_parser(fmt, header_line=line)
            except formats.FormatError as e:
                fctx.note_problem(line_no, f"{what} not usable: {e}")
                parser = fctx.parser
            if len(self._header_parsers) < 256:
                self._header_parsers[line] = parser
        fctx.parser = parser

    def _parse(self, fctx: FileContext, line: bytes, line_no: int, header_marked: bool) -> _Record:
        if header_marked and fctx.fmt in ("eventlogfile", "csv"):
            # An EventLogFile header (files concatenated, or the first line of a range): its
            # columns rule from here.
            self._switch_columns(fctx, "eventlogfile", line, line_no, "header line")
        elif header_marked and fctx.fmt == "w3c" and line.startswith(b"#Fields:"):
            # A later #Fields directive: its names rule the lines after it.
            self._switch_columns(fctx, "w3c", line, line_no, "#Fields directive")
        fmt = fctx.fmt
        if fmt == "eventlogfile" and line[:1] != b'"' and not header_marked:
            # Not a quoted row of the export: a mixed file, an export written without quotes,
            # or the rest of a quoted value.
            alt = self._fallback(line)
            alt_rec = alt.parse(line) if alt is not None else None
            if alt_rec is not None and alt_rec.problem is None:
                r = _Record(line, alt_rec, alt.name)
                self._derive(r)
                return r
            rec = fctx.parser.parse(line)
            if rec.problem is not None:
                # Neither a row (an export written without quotes has the header's columns)
                # nor another format's line: most likely the rest of a quoted value that holds
                # a line break. Its cells are not the header's columns.
                fctx.note_problem(line_no, "not a row of the export (its first value is not quoted: "
                                           "the continuation of a value with a line break?); scanned as text")
                r = _Record(line, self._text_parser().parse(line), "text")
                self._derive(r)
                return r
        else:
            rec = fctx.parser.parse(line)
        if rec.problem is not None:
            alt = self._fallback(line)
            alt_rec = alt.parse(line) if alt is not None else None
            if alt_rec is not None and alt_rec.problem is None:
                rec, fmt = alt_rec, alt.name
            else:
                fctx.note_problem(line_no, rec.problem)
        r = _Record(line, rec, fmt)
        self._derive(r)
        return r

    def _quick_json(self, fctx: FileContext, line: bytes) -> _Record | None:
        """The attributes of a JSON record that holds no finding (a call to an AI endpoint in
        an app log), from ``json.loads`` alone: ~5 µs where keeping every value's byte span
        costs ~50. The same attribute rules as the reader's (formats.AttrCollector). None when
        the line is not a JSON object: the full reader then reports the problem."""
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # nested past the interpreter's limit
            return None
        if not isinstance(obj, dict):
            return None
        col = AttrCollector()
        _offer_json(col, obj, 0)
        fmt = fctx.fmt if fctx.fmt in ("jsonl", "apigw") else "jsonl"
        r = _Record(line, formats.ParsedRecord([], col.timestamp(), col.attrs()), fmt)
        self._derive(r)
        return r

    def _derive(self, r: _Record) -> None:
        """Timestamp, destination and actor of a parsed record."""
        rec = r.parsed
        if rec.ts is not None:
            r.ts = rec.ts.timestamp()
        attrs = rec.attrs
        if "operation" not in attrs and r.fmt == "eventlogfile":
            for path, s, e in rec.fields:
                if path == "OPERATION_TYPE":
                    attrs["operation"] = r.line[s:e].decode("latin-1")
                    break
        target = attrs.get("url") or attrs.get("host")
        if target:
            self._set_dest(r, target)
        user = attrs.get("user")
        if user:
            actor = self._actors.get(user)
            if actor is None:
                norm = user
                if len(user) == 15 and _SFID15.match(user):
                    norm = sfmap.to_18(user)  # USER_ID (15) and USER_ID_DERIVED (18) are one actor
                raw = norm.encode("utf-8", "replace")
                # An e-mail as the user (API Gateway, app logs) gets the e-mail mask; another user
                # name its first character only (as a person's name), a user id its key prefix.
                actor = (keyed_hash(self.key, raw), mask_email(raw) if b"@" in raw else mask_actor(raw))
                if len(self._actors) < 100_000:
                    self._actors[user] = actor
            r.actor_hash, r.actor_masked = actor

    # -- for store.elf_events ---------------------------------------------------------------
    def classify_hosts(self, hosts: list[str]) -> list[tuple]:
        """(host, vendor, region, jurisdiction, violation, via gateway) for hosts that are AI endpoints."""
        out = []
        for h in hosts:
            dest = self.registry.classify(h)
            if dest is not None:
                out.append((h, dest.vendor, dest.region, dest.jurisdiction, int(dest.violates(self.allowed)),
                            int(self.is_gateway(h))))
        return out

    def hash_actors(self, users: list[str]) -> list[tuple[str, str, str]]:
        """(user, keyed hash, masked preview), the same as findings and other events get."""
        out = []
        for u in users:
            r = _Record(b"", formats.ParsedRecord([], None, {"user": u}), "eventlogfile")
            self._derive(r)
            out.append((u, r.actor_hash, r.actor_masked))
        return out

    def _set_dest(self, r: _Record, target: str) -> None:
        cached = self._dest_cache.get(target)
        if cached is None:
            dest = self.registry.classify(target)
            host = dest.host if dest is not None else None
            violation = -1 if dest is None else int(dest.violates(self.allowed))
            cached = (dest, host, violation)
            if len(self._dest_cache) < 100_000:
                self._dest_cache[target] = cached
        r.dest, r.dest_host, r.violation = cached

    def process(self, fctx: FileContext, detector, data: bytes, res: ScanResult, first_line: int, first_off: int,
                header: list[str] | None) -> tuple[dict, list[tuple]]:
        """Findings batch (with the m003 columns) and event rows for one chunk's matches.

        ``data``/``res`` are a chunk (or its compacted hits) and the native scan of it;
        ``first_line`` is the 0-based line of the chunk's first record within its range."""
        from leakwatch.detect.engine import _columns  # engine imports this module

        n_rules = len(detector.rules)
        rule = res.rule
        marker_mask = rule >= n_rules
        limit = len(data)
        ls_all = res.line_start
        # The records (sorted line starts), each hit's record (inv) and each record's number.
        uniq, first_idx, inv = np.unique(ls_all, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        recnos = res.record[first_idx]
        marks_by_ls: dict[int, list[tuple[str, int]]] = {}  # record -> (kind, marker index)
        elf_rows: tuple | None = None
        plan = None  # (header line starts, parser in effect before/after each) when headers were read ahead
        todo_mask = None  # records still to parse here, when some went to DuckDB
        has_finding = None
        if marker_mask.any():
            has_finding = np.zeros(len(uniq), dtype=bool)
            has_finding[inv[~marker_mask]] = True
            m_inv = inv[marker_mask]
            m_rule = rule[marker_mask]
            if fctx.fmt == "eventlogfile":
                kinds = self._kind_codes[m_rule - n_rules]
                todo_mask, elf_rows, plan = self._split_elf(fctx, data, uniq, recnos, has_finding,
                                                            m_inv[kinds == _K_HEADER], m_inv[kinds == _K_CDN], first_line)
            m_ls = ls_all[marker_mask]
            if todo_mask is not None:
                keep = todo_mask[m_inv]
                m_ls, m_rule = m_ls[keep], m_rule[keep]
            for ls, ri in zip(m_ls.tolist(), m_rule.tolist()):
                marks_by_ls.setdefault(ls, []).append((self.markers[ri - n_rules][0], ri - n_rules))
        recno_of_ls = dict(zip(uniq.tolist(), recnos.tolist()))
        todo = uniq if todo_mask is None else uniq[todo_mask]
        marker_only = None
        if has_finding is not None:
            marker_only = set((uniq[~has_finding] if todo_mask is None else uniq[todo_mask & ~has_finding]).tolist())
        # Records in file order, each parsed once.
        records: dict[int, _Record] = {}
        for ls in todo.tolist():
            nl = data.find(b"\n", ls, limit)
            line = bytes(data[ls:nl if nl != -1 else limit])
            if line[-1:] == b"\r":
                line = line[:-1]
            marks = marks_by_ls.get(ls, ())
            if plan is not None:
                # The columns in effect at this record, not those of a header further down.
                fctx.parser = plan[1][bisect.bisect_right(plan[0], ls)]
            rec = None
            if first_off and recno_of_ls[ls] == 0:
                # The rest of a line longer than MAX_RECORD, after its first pieces: text (its
                # first piece was parsed, and reported if it did not parse, already).
                rec = _Record(line, self._text_parser().parse(line), "text")
            elif marker_only is not None and ls in marker_only and line[:1] == b"{" and not self.ner:
                rec = self._quick_json(fctx, line)  # an event only: attributes, no field spans
            records[ls] = rec if rec is not None else self._parse(
                fctx, line, first_line + 1 + recno_of_ls[ls],
                marks_have(marks, M_ELF_HEADER) or marks_have(marks, M_W3C_FIELDS))

        if plan is not None:
            fctx.parser = plan[1][-1]

        def field_of(ls: int, off: int) -> str | None:
            rec = records.get(ls)
            if rec is None:
                return None
            # Keys a header names (CSV, EventLogFile, W3C) are the file's schema; JSON keys and
            # the like are written by the data, and may be a customer's name.
            return safe_field_path(formats.field_at(rec.parsed, off), rec.fmt not in formats.HEADER_FORMATS)

        sub = res if not marker_mask.any() else ScanResult(
            res.record[~marker_mask], rule[~marker_mask], res.start[~marker_mask], res.end[~marker_mask],
            ls_all[~marker_mask], res.n_records)
        rows = detector.rows(data, limit, sub, first_line, first_off, header, field_of)
        # Each record's start by its line number in the file: for the sibling check and the
        # columns the parsed records give (_add_columns).
        ls_of_line = {first_line + 1 + rec: ls for ls, rec in recno_of_ls.items()}
        siblings = _sibling_rules(detector)
        if siblings and rows:
            rows = _drop_by_siblings(rows, siblings, records, ls_of_line)
        n_regex = len(rows)
        rows += self._ner_rows(detector, records, recno_of_ls, first_line, first_off)
        batch = _columns(rows)
        # Events first: an AI host named only in a message ("POST https://api.openai.com/…" in a
        # Mule log) gives the record its destination there, and the record's findings share it.
        events = self._events(fctx, records, marks_by_ls, recno_of_ls, first_line)
        self._add_columns(batch, records, ls_of_line, first_line, first_off)
        batch["detector"] = ["regex"] * n_regex + ["ner"] * (len(rows) - n_regex)
        return batch, events, elf_rows

    def _split_elf(self, fctx: FileContext, data: bytes, uniq, recnos, has_finding, header_idx, cdn_idx, first_line):
        """Set aside the EventLogFile rows that only hold markers (API calls, bulk jobs,
        callouts: up to a quarter of an export): no per-row Python, their text goes to DuckDB in
        one piece (see :mod:`leakwatch.store.elf_events`). ``uniq`` are the records' starts,
        ``has_finding`` flags those with a rule's match, ``header_idx``/``cdn_idx`` index the
        header rows and CDN-marked rows. Returns (mask over ``uniq`` of the records still to
        parse or None for all, (line numbers, header ids, row texts) or None, header plan).
        ``data`` is compacted hits: records are contiguous, each ends where the next begins."""
        is_header = np.zeros(len(uniq), dtype=bool)
        is_header[header_idx] = True
        special = is_header.copy()
        special[cdn_idx] = True
        first = np.frombuffer(data, dtype=np.uint8)[uniq]
        elf = (first == 0x22) & ~has_finding & ~special
        if not elf.any():
            return None, None, None
        header_at = np.flatnonzero(is_header)
        header_ls = uniq[header_at].tolist()
        # The header in effect for each row: the file's, or the last header line before it.
        hids = [fctx.header_id()]
        parsers = [fctx.parser]
        for ls, recno in zip(header_ls, recnos[header_at].tolist()):
            nl = data.find(b"\n", ls)
            line = bytes(data[ls:nl if nl != -1 else len(data)]).rstrip(b"\r")
            # The header line itself is a record to parse; parsing it switches the columns.
            self._parse(fctx, line, first_line + 1 + recno, True)
            hids.append(fctx.header_id())
            parsers.append(fctx.parser)
        starts = uniq[elf]
        which = np.searchsorted(np.asarray(header_ls, dtype=np.int64), starts, side="right")
        hid = np.asarray(hids, dtype=np.int32)[which]
        # The rows, each up to its newline, copied into one buffer without the GIL.
        text = compact_records(data, len(data), starts)[0][:-1].decode("utf-8", "replace")
        lines = recnos[elf] + (first_line + 1)
        # Still to parse: neither set aside nor a header row (parsed above).
        return ~elf & ~is_header, (lines, hid, text.split("\n")), (header_ls, parsers)

    # -- findings columns -------------------------------------------------------------------
    def column_findings(self, fctx: FileContext | None, batch: dict) -> dict:
        """A batch of whole CSV cells (see ``Detector.column_batch``): the file's format and
        each column's Salesforce object and field (``Phone`` → Contact.Phone). The rows are not
        parsed (no timestamp or destination: a report export has neither)."""
        n = len(batch["line"])
        batch["format"] = [fctx.fmt if fctx is not None else None] * n
        mapped = [sfmap.map_field(path) for path in batch["field_path"]]
        batch["sf_object"] = [m[0] if m else None for m in mapped]
        batch["sf_field"] = [m[1] if m else None for m in mapped]
        return batch

    def _add_columns(self, batch: dict, records: dict[int, _Record], ls_of_line: dict[int, int],
                     first_line: int, first_off: int) -> None:
        n = len(batch["line"])
        ts = np.full(n, _NAN)
        viol = np.full(n, -1, dtype=np.int8)
        cols = {k: [None] * n for k in ("format", "dest_host", "dest_vendor", "dest_region", "dest_jurisdiction",
                                          "sf_object", "sf_field", "actor_hash", "prompt_role")}
        for i, (line_no, path, rule_id, start, end) in enumerate(zip(
                batch["line"], batch["field_path"], batch["rule_id"], batch["start_byte"], batch["end_byte"])):
            r = records.get(ls_of_line.get(line_no, -1))
            if r is None:
                continue
            ts[i] = r.ts
            cols["format"][i] = r.fmt
            cols["actor_hash"][i] = r.actor_hash
            if r.dest is not None and _sent_with_call(r.fmt, path):
                d = r.dest
                cols["dest_host"][i] = r.dest_host
                cols["dest_vendor"][i] = d.vendor
                cols["dest_region"][i] = d.region
                cols["dest_jurisdiction"][i] = d.jurisdiction
                viol[i] = r.violation
            attrs = r.parsed.attrs
            off = first_off if line_no == first_line + 1 else 0  # the record's bytes before this chunk
            if rule_id in _RECORD_ID_RULES:
                value = r.line[start - off:end - off].decode("latin-1")
                obj = sfmap.object_for_id(value, self.learned)
                if obj:
                    cols["sf_object"][i] = obj
            else:
                if path and "*" in path:
                    # Stored with a data-like key masked (an e-mail address as a JSON key): the
                    # field it names is still the path's own (contacts.<address>.phone → Contact.Phone).
                    path = formats.field_at(r.parsed, start - off) or path
                mapped = sfmap.map_field(path, entity=attrs.get("entity"), event_type=attrs.get("event_type"))
                if mapped:
                    cols["sf_object"][i], cols["sf_field"][i] = mapped
            if path and r.parsed.roles:
                cols["prompt_role"][i] = formats.role_at(r.parsed, start - off)
        batch["ts"] = ts
        batch["residency_violation"] = viol
        batch.update(cols)

    # -- NER --------------------------------------------------------------------------------
    def _ner_rows(self, detector, records, recno_of_ls, first_line, first_off) -> list[tuple]:
        if self.ner is None:
            return []
        from leakwatch.detect.ner import is_free_text

        out: list[tuple] = []
        for ls, r in records.items():
            parsed = _readable(r)
            spans = [(s, e) for p, s, e in parsed.fields if is_free_text(p)]
            if not spans:
                continue
            line_no = first_line + 1 + recno_of_ls[ls]
            off = first_off if line_no == first_line + 1 else 0
            for s, e, entity, score in self.ner.analyze(r.line, spans):
                value = r.line[s:e]
                path = formats.field_at(parsed, s)
                mask = mask_name if entity == "PERSON_NAME" else mask_shape
                out.append((line_no, s + off, e + off, f"ner_{entity.lower()}", entity, round(float(score), 3),
                            float(score), 0.0, 0.0, "medium", 2, normalize_field(path) if path else None, mask(value),
                            # As written in the line: "Ren\u00e9e" and "Renée" are one person.
                            keyed_hash(detector.key, _ner_normalize(value)),
                            value.decode("utf-8", "backslashreplace") if detector.store_raw else None, path))
        return out

    # -- events -----------------------------------------------------------------------------
    def _events(self, fctx: FileContext, records, marks_by_ls, recno_of_ls, first_line) -> list[tuple]:
        out: list[tuple] = []
        for ls, marks in marks_by_ls.items():
            r = records.get(ls)
            if r is None:
                continue  # handed to DuckDB (see process)
            kinds = {k for k, _ in marks}
            attrs = r.parsed.attrs
            line_no = first_line + 1 + recno_of_ls[ls]
            if M_AI_HOST in kinds:
                if r.dest is None:
                    # The record names an AI host outside the fields its reader knows as the
                    # call's target (a URL inside a message): take the host the marker matched.
                    for k, mi in marks:
                        if k == M_AI_HOST:
                            self._dest_from_marker(r, mi)
                            if r.dest is not None:
                                break
                if r.dest is not None and not self._same_call_again(fctx, r):
                    out.append(self._event(fctx, r, line_no, "ai_call", attrs))
            if M_ELF_EVENT in kinds:
                kind = ELF_EVENT_KINDS.get(attrs.get("event_type", ""))
                if kind is not None:
                    out.append(self._event(fctx, r, line_no, kind, attrs))
            if M_CDN_PATH in kinds:
                path = attrs.get("path") or ""
                if any(rx.search(path) for rx in self.cdn_rx):
                    out.append(self._event(fctx, r, line_no, "cdn_ai", attrs))
        return out

    @staticmethod
    def _same_call_again(fctx: FileContext, r: _Record) -> bool:
        """Whether a Mule record is the error or warning of an AI call an earlier line of the same
        Mule event (correlation id) already made to the same host ("HTTP POST on resource
        'https://api.openai.com/…' failed" after the logger's "POST https://api.openai.com/…"):
        one call, not two. Two INFO lines of one event are two calls."""
        if r.fmt != "mule":
            return False
        spans = {name: (s, e) for name, s, e in r.parsed.fields if name in ("level", "event")}
        if "event" not in spans:
            return False
        key = (r.line[slice(*spans["event"])], r.dest_host)
        level = r.line[slice(*spans["level"])] if "level" in spans else b""
        if level in (b"ERROR", b"WARN") and key in fctx.calls_seen:
            return True
        if len(fctx.calls_seen) > 100_000:
            fctx.calls_seen.clear()
        fctx.calls_seen.add(key)
        return False

    def _dest_from_marker(self, r: _Record, mi: int) -> None:
        """The destination of a record by the host that marker ``mi`` found in its text. The
        scanner reports marked records, not spans (few records need this), so the marker is
        searched here again, with ``re`` (the patterns are in the syntax both engines share)."""
        rx = self._marker_rx.get(mi)
        if rx is None:
            rx = self._marker_rx[mi] = re.compile(self.markers[mi][1].encode("latin-1"), re.MULTILINE)
        for m in rx.finditer(r.line):
            text = m.group(0).decode("latin-1")
            # The match includes the boundaries around the host: before it a byte or "%2F" (or
            # nothing at the line's start), after it a byte or a final dot (or nothing).
            text = text[3:] if text[:3].lower() == "%2f" else text[1:] if not _HOST_BYTE.match(text) else text
            host = extract_host(_HOST_RUN.match(text).group(0))
            if host:
                self._set_dest(r, host)
            if r.dest is not None:
                return

    def _event(self, fctx: FileContext, r: _Record, line_no: int, kind: str, attrs: dict) -> tuple:
        d = r.dest if kind == "ai_call" else None
        url_host = r.dest_host if d is not None else _host_of(attrs.get("url") or attrs.get("host"))
        if kind == "ai_call":
            # Through the gateway: the file is the gateway's own log, the call went to the
            # gateway's host, or the record was served by it (a gateway access log line that
            # names its upstream AI endpoint), or the record's own URL is the gateway's (an app
            # log naming the gateway URL and, as "upstream", the AI endpoint behind it).
            via = 1 if (fctx.gateway_source or self.is_gateway(url_host)
                        or self.is_gateway(_host_of(attrs.get("host")))
                        or self.is_gateway(_host_of(attrs.get("url")))) else 0
        else:
            via = -1
        event_type = attrs.get("event_type") or attrs.get("method")
        if kind == "bulk" and attrs.get("operation"):
            event_type = f"{event_type}:{attrs['operation']}"  # the patterns tell reads from writes
        return (
            line_no, r.ts, r.fmt, kind, event_type, r.actor_hash, r.actor_masked,
            safe_label(attrs.get("app")), url_host, _path_of(attrs, prefer_url=kind == "ai_call"),
            _int(attrs.get("status")),
            d.vendor if d is not None else None, d.region if d is not None else None,
            d.jurisdiction if d is not None else None, r.violation if d is not None else -1, via,
            attrs.get("entity"), _int(attrs.get("rows")), attrs.get("edge"), attrs.get("cache"),
        )


_K_HEADER, _K_CDN = 1, 2
_KIND_CODES = {M_ELF_HEADER: _K_HEADER, M_CDN_PATH: _K_CDN}
_FOLD_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_SFID15 = re.compile(r"^[a-zA-Z0-9]{15}$")


# Lists of LLM message bodies hold prose, never a record's attributes.
_NO_ATTRS_IN = frozenset({"messages", "contents", "content", "system", "parts", "choices", "input"})


def _offer_json(col: AttrCollector, obj: dict, depth: int) -> None:
    for k, v in obj.items():
        key = norm_key(k)
        if isinstance(v, str):
            if key in KEY_ROLES:
                col.offer(key, v, depth)
        elif isinstance(v, dict):
            if key == "attributes" and isinstance(v.get("type"), str):
                col.offer("sobjecttype", v["type"], depth + 1)  # a Salesforce REST record's type
            if depth < 16:
                _offer_json(col, v, depth + 1)
        elif isinstance(v, list):
            if depth < 16 and key not in _NO_ATTRS_IN:
                for item in v[:64]:
                    if isinstance(item, dict):
                        _offer_json(col, item, depth + 1)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and key in KEY_ROLES:
            col.offer(key, str(v), depth)


# Fields that describe the call rather than travel with it: who made it and from where. A
# client address or the caller's id in an access log is not sent to the AI endpoint the record
# names, so a finding there gets no destination (and no residency flag).
_CALLER_FIELDS = frozenset({
    "ip", "sourceip", "clientip", "remoteip", "remoteaddr", "clientaddress", "callerip", "requestip",
    "fwd", "xforwardedfor", "forwardedfor", "cip", "userip", "clientipaddress", "sourceipaddress",
    "userid", "useridderived", "username", "caller", "principalid", "sessionkey", "loginkey",
    "uriidderived", "organizationid", "requestid",
})
# An API Gateway access log's `user` is the caller (the IAM or Cognito identity), its
# `userAgent` the client's. Not so in an LLM request body, where `user` (OpenAI's end-user id)
# is sent to the vendor.
_APIGW_CALLER_FIELDS = _CALLER_FIELDS | {"user", "useragent"}


def _sent_with_call(fmt: str | None, path: str | None) -> bool:
    """Whether a finding in field ``path`` of a record that names an AI destination went there
    with the call. An EventLogFile row describes a callout (only its URL is sent); elsewhere the
    caller's address and id are the record's, not the payload's."""
    if not path:
        return True  # free text of the record: it may well be what was sent
    last = normalize_field(path).rsplit(".", 1)[-1]
    if fmt == "eventlogfile":
        return last in ("url", "uri", "endpoint")
    # A combined access log's `user` is the authenticated caller (Apache's %u), like API
    # Gateway's: it stays with the request log, it is not the prompt sent upstream.
    return last not in (_APIGW_CALLER_FIELDS if fmt in ("apigw", "combined") else _CALLER_FIELDS)


def marks_have(marks, kind: str) -> bool:
    return any(k == kind for k, _ in marks)


_HOST_BYTE = re.compile(r"[A-Za-z0-9_.-]")
_HOST_RUN = re.compile(r"[A-Za-z0-9_.-]*")


def _int(v: Any) -> int:
    """A count or status as written, -1 when unknown or out of range (the columns are 32/64-bit)."""
    if v is None:
        return -1  # the usual case for rows: no exception to raise and catch (~1 µs each)
    try:
        n = int(str(v).strip())
        return n if 0 <= n < 2**31 else -1
    except (TypeError, ValueError):
        return -1


_HOST_RX = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/]*@)?([^/:?#\s\"]+)", re.IGNORECASE)


def _host_of(target: str | None) -> str | None:
    if not target:
        return None
    m = _HOST_RX.match(target.strip().strip('"'))
    return m.group(1).lower() if m else None


def _path_of(attrs: dict, prefer_url: bool = False) -> str | None:
    """The request path without its query string, identifier-like segments masked (see
    :func:`safe_path`). For a call to an AI endpoint the path of its URL (the endpoint's API),
    not the path the record itself was served at."""
    path = None if prefer_url else attrs.get("path")
    if not path:
        url = attrs.get("url")
        if url:
            m = re.match(r"^[a-z][a-z0-9+.-]*://[^/]*(/[^?#]*)?", url.strip('"'), re.IGNORECASE)
            path = m.group(1) if m else None
    if not path and prefer_url:
        path = attrs.get("path")
    if path:
        path = safe_path(path.split("?", 1)[0])
    return path or None


_PII_SEGMENT = re.compile(PII_SEGMENT_RX)
# What any match of PII_SEGMENT_RX must contain: "@", "%40", five digits in a row or in groups,
# 33 of its token characters in a row, or a credential's prefix. A path without one is returned
# as it is, without running the pattern, whose nested stars make Python's backtracking engine
# quadratic in a segment's length (~17 µs for a 60-byte URL path). The tests hold the shortcut
# to the full pattern.
_PII_SEGMENT_NEEDS = re.compile(DATA_MARKS.pattern + "|" + "|".join(re.escape(p) for p in SECRET_PREFIXES))
_SAFE_PATHS: dict[str, str] = {}
_REPORT_ID = re.compile(r"(?:00O|01Z)[0-9A-Za-z]{12}(?:[0-9A-Za-z]{3})?")
_REPORT_ID_IN = re.compile(r"(?:^|/)(?:00O|01Z)[0-9A-Za-z]{12}")


_SAFE_FIELDS: dict[tuple[str, bool], str] = {}


def safe_field_path(path: str | None, names: bool) -> str | None:
    """A field path (``body.messages[0].content``, a CSV column) as stored: :func:`safe_path`,
    and each dotted segment that is data rather than a name (``data_like_key``: a token, an
    AWS key id, with ``names`` a "First Last" JSON key) replaced by ``*``."""
    if path is None:
        return None
    out = _SAFE_FIELDS.get((path, names))
    if out is None:
        out = safe_path(path)
        segments = out.split(".")
        if any(data_like_key(s, names) for s in segments):
            out = ".".join("*" if data_like_key(s, names) else s for s in segments)
        if len(_SAFE_FIELDS) < 16_384:
            _SAFE_FIELDS[(path, names)] = out
    return out


def safe_path(path: str | None) -> str | None:
    """``path`` with segments that look like data (an e-mail address used as a JSON key, an id
    in a URL) replaced by ``*``: field paths and URL paths are stored unmasked."""
    if path is None:
        return None
    out = _SAFE_PATHS.get(path)
    if out is None:
        if not _PII_SEGMENT_NEEDS.search(path):
            out = path
        elif _REPORT_ID_IN.search(path):
            # A report's or dashboard's record id (00O…, 01Z…) names what was exported, not a
            # person: a responder needs it to find the report. Other segments as usual.
            out = "/".join(seg if _REPORT_ID.fullmatch(seg) else _PII_SEGMENT.sub("*", seg) for seg in path.split("/"))
        else:
            out = _PII_SEGMENT.sub("*", path)
        if len(_SAFE_PATHS) < 16_384:
            _SAFE_PATHS[path] = out
    return out
