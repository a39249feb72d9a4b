# distutils: language = c++
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Native multi-pattern scanner: RE2::Set decides, per-rule RE2 extracts.

The buffer is cut into newline-aligned blocks of about ``block_size`` bytes. Each block goes
through the compiled ``RE2::Set`` (one DFA pass for all rules); only the rules the Set reports
are then searched inside that block with their own ``RE2`` to extract spans. Rules are compiled
with ``never_nl`` and multi-line ``^``/``$`` so that no match can cross a record boundary, which
makes a search over a block give exactly the matches a per-record search would give. On the
bench corpus (285-byte lines, 2% with PII, 42 rules) blocks of 128–256 bytes — in effect one or
two records — measured fastest (391/376 MB/s against 368 at 1 KB and 350 at 2 KB): a hit then
costs the extraction of one record, and the per-call overhead of ~200 ns stays small.
"""
from cython.operator cimport dereference as deref
from libc.stdint cimport int64_t
from libc.string cimport memchr
from libcpp.string cimport string
from libcpp.vector cimport vector
from libcpp.algorithm cimport sort as cpp_sort

import threading

import numpy as np
cimport numpy as cnp

from leakwatch._core.re2 cimport (
    RE2, RE2Options, RE2Set, SetErrorInfo, StringPiece,
    UNANCHORED, ANCHOR_START, ANCHOR_BOTH, EncodingLatin1, kNoError, kOutOfMemory,
)

cnp.import_array()

from leakwatch._core.types import ScanResult, PatternError, ScanError

# Status codes of the nogil loop.
cdef enum:
    ST_OK = 0
    ST_OOM = 1
    ST_SET_ERROR = 2

DEF_BLOCK_SIZE = 128
# RE2's default is 8 MiB; a Set over ~50 digit-heavy PII rules needs more DFA cache than that to
# stay at full speed on large inputs. The Set gets 2/3 of this budget.
DEF_MAX_MEM = 256 << 20


cdef str _re2_message(const string& err):
    # RE2 quotes the offending pattern, which carries our "(?m)" prefix; the user never wrote it.
    return err.decode("utf-8", "replace").replace("(?m)", "", 1)


# Contexts that decide zero-width assertions (^ $ \\b): what precedes and follows a position.
_EMPTY_PROBES = [(prev + nxt, len(prev)) for prev in (b"", b"\n", b"a", b" ") for nxt in (b"", b"\n", b"a", b" ")]


cdef bint _can_match_empty(RE2* rx) except -1:
    """A rule that can match the empty string (``a*``, ``\\b``, ``^``) would report a "finding" at
    countless positions and has no value to extract, so such rules are refused."""
    cdef bytes text
    for text, p in _EMPTY_PROBES:
        if rx.Match(StringPiece(<const char*>text, len(text)), p, p, ANCHOR_BOTH, NULL, 0):
            return True
    return False


cdef inline RE2Options make_options(int64_t max_mem) noexcept nogil:
    cdef RE2Options opts
    opts.set_encoding(EncodingLatin1)   # bytes in, one byte = one character, like Python's bytes re
    opts.set_log_errors(False)           # errors come back as exceptions, not stderr noise
    opts.set_never_nl(True)              # a match never crosses a record boundary
    opts.set_max_mem(max_mem)
    return opts


cdef class Scanner:
    """Compile a rule set once; scan many buffers from any number of threads.

    ``patterns`` are regexes (``str`` or ``bytes``, RE2 syntax, Latin-1: one byte is one
    character). ``scan(buf)`` returns a :class:`~leakwatch._core.types.ScanResult` whose arrays
    are sorted by (record, start, rule); offsets are absolute within ``buf``.
    """

    cdef vector[RE2*] _rules
    cdef vector[RE2Set*] _shards
    cdef vector[vector[int]] _shard_rules
    cdef vector[int] _unsharded       # rules whose Set ran out of memory alone: always searched
    cdef vector[char] _whole          # per rule: report the matching record, not each match span
    cdef vector[RE2Set*] _retired     # split shards stay allocated: a scan in flight may still use them
    cdef readonly Py_ssize_t block_size
    cdef readonly int64_t max_mem
    cdef readonly list patterns
    cdef readonly frozenset record_only
    cdef readonly int oom_splits
    cdef object _lock
    cdef int _inject_oom               # tests only: pretend shard 0 ran out of memory this many times

    def __cinit__(self):
        self.oom_splits = 0

    def __init__(self, patterns, *, record_only=(), Py_ssize_t block_size=DEF_BLOCK_SIZE,
                 int64_t max_mem=DEF_MAX_MEM, int _inject_oom=0):
        if block_size < 1:
            raise ValueError("block_size must be positive")
        self.block_size = block_size
        self.max_mem = max_mem
        self._lock = threading.Lock()
        self._inject_oom = _inject_oom
        self.patterns = [p.encode("latin-1") if isinstance(p, str) else bytes(p) for p in patterns]
        self.record_only = frozenset(int(i) for i in record_only)
        if any(i < 0 or i >= len(self.patterns) for i in self.record_only):
            raise ValueError("record_only holds an index that is not a pattern's")
        self._whole.assign(len(self.patterns), 0)
        for i in self.record_only:
            self._whole[i] = 1
        cdef RE2Options opts = make_options(max_mem)
        cdef bytes wrapped
        cdef RE2* rx
        for i, pat in enumerate(self.patterns):
            wrapped = b"(?m)" + pat
            rx = new RE2(StringPiece(<const char*>wrapped, len(wrapped)), opts)
            if not rx.ok():
                err = _re2_message(rx.error())
                del rx
                raise PatternError(i, err)
            self._rules.push_back(rx)
            if _can_match_empty(rx):
                raise PatternError(i, "pattern can match the empty string")
        if self.patterns:
            self._build_shard(list(range(len(self.patterns))))

    def __dealloc__(self):
        for rx in self._rules:
            del rx
        for s in self._shards:
            del s
        for s in self._retired:
            del s

    cdef _build_shard(self, list ids):
        """Compile ``ids`` into one RE2::Set, or split them (``_split``) if its program does not
        fit ``max_mem``."""
        cdef RE2Options opts = make_options(self.max_mem)
        cdef RE2Set* s = new RE2Set(opts, UNANCHORED)
        cdef string err
        cdef bytes wrapped
        cdef vector[int] members
        for i in ids:
            wrapped = b"(?m)" + self.patterns[i]
            if s.Add(StringPiece(<const char*>wrapped, len(wrapped)), &err) < 0:
                del s
                raise PatternError(i, _re2_message(err))
            members.push_back(i)
        if not s.Compile():
            del s
            self._split(ids)
            return
        self._shards.push_back(s)
        self._shard_rules.push_back(members)

    cdef _split(self, list ids):
        """Rules that cannot share one Set: two Sets of half each, or, for a single rule, no Set
        at all (it is searched in every block; RE2 falls back to its NFA if its DFA fails)."""
        if len(ids) == 1:
            self._unsharded.push_back(ids[0])
            return
        half = len(ids) // 2
        self._build_shard(ids[:half])
        self._build_shard(ids[half:])

    cdef _split_shard(self, int k):
        """The DFA of shard k ran out of memory: replace it by smaller ones (see ``_split``)."""
        cdef list ids = [x for x in self._shard_rules[k]]
        cdef RE2Set* old = self._shards[k]
        self._shards.erase(self._shards.begin() + k)
        self._shard_rules.erase(self._shard_rules.begin() + k)
        self._retired.push_back(old)
        self.oom_splits += 1
        self._split(ids)

    @property
    def n_rules(self):
        return <int>self._rules.size()

    @property
    def n_shards(self):
        return <int>self._shards.size()

    def scan(self, buf):
        """Scan newline-separated records in a bytes-like ``buf`` (bytes, bytearray, memoryview,
        mmap). The GIL is released for all RE2 work."""
        cdef const unsigned char[::1] view
        cdef Py_ssize_t n
        mv = memoryview(buf)
        if mv.ndim != 1 or mv.itemsize != 1 or mv.format not in ("B", "b", "c"):
            mv = mv.cast("B")
        n = mv.nbytes
        if n == 0 or self._rules.size() == 0:
            e = np.empty(0, dtype=np.int64)
            return ScanResult(e, e.astype(np.int32), e, e, e, _count_records(mv))
        view = mv
        cdef const char* data = <const char*>&view[0]
        cdef vector[int64_t] out_rec, out_start, out_end, out_ls
        cdef vector[int] out_rule
        cdef int status = ST_OK
        cdef int bad_shard = -1
        cdef int64_t n_records = 0
        cdef vector[RE2Set*] shards
        cdef vector[vector[int]] shard_rules
        cdef vector[int] unsharded
        while True:
            out_rec.clear(); out_rule.clear(); out_start.clear(); out_end.clear(); out_ls.clear()
            with self._lock:
                # The shard layout only changes under the lock, after an out-of-memory split.
                shards = self._shards
                shard_rules = self._shard_rules
                unsharded = self._unsharded
            with nogil:
                status = _scan_blocks(data, n, self.block_size, self._rules, self._whole, shards, shard_rules,
                                      unsharded, out_rec, out_rule, out_start, out_end, out_ls,
                                      &bad_shard, &n_records, &self._inject_oom)
            if status == ST_OK:
                break
            if status == ST_OOM:
                with self._lock:
                    # Another thread may already have split it; compare by membership.
                    if bad_shard < <int>self._shard_rules.size() and self._shard_rules[bad_shard] == shard_rules[bad_shard]:
                        self._split_shard(bad_shard)
                continue
            raise ScanError("RE2::Set match failed (inconsistent or not compiled)")
        cdef Py_ssize_t m = out_rec.size()
        rec = np.empty(m, dtype=np.int64)
        rule = np.empty(m, dtype=np.int32)
        start = np.empty(m, dtype=np.int64)
        end = np.empty(m, dtype=np.int64)
        ls = np.empty(m, dtype=np.int64)
        cdef int64_t[::1] a_rec = rec, a_start = start, a_end = end, a_ls = ls
        cdef int[::1] a_rule = rule
        cdef Py_ssize_t j
        for j in range(m):
            a_rec[j] = out_rec[j]; a_rule[j] = out_rule[j]
            a_start[j] = out_start[j]; a_end[j] = out_end[j]; a_ls[j] = out_ls[j]
        if m > 1:
            order = np.lexsort((rule, start, rec))
            rec, rule, start, end, ls = rec[order], rule[order], start[order], end[order], ls[order]
        return ScanResult(rec, rule, start, end, ls, n_records)


def _count_records(mv):
    if mv.nbytes == 0:
        return 0
    b = bytes(mv)
    return b.count(b"\n") + (0 if b.endswith(b"\n") else 1)


cdef int _scan_blocks(const char* data, Py_ssize_t n, Py_ssize_t block_size,
                      vector[RE2*]& rules, vector[char]& whole, vector[RE2Set*]& shards, vector[vector[int]]& shard_rules,
                      vector[int]& unsharded,
                      vector[int64_t]& out_rec, vector[int]& out_rule, vector[int64_t]& out_start,
                      vector[int64_t]& out_end, vector[int64_t]& out_ls,
                      int* bad_shard, int64_t* n_records, int* inject_oom) noexcept nogil:
    cdef Py_ssize_t pos = 0, bend, counted = 0, blen
    cdef int64_t rec = 0            # records fully before `counted`
    cdef const char* q
    cdef vector[int] hits, v
    cdef SetErrorInfo err
    cdef size_t k, j
    cdef int r
    cdef StringPiece block, m
    cdef Py_ssize_t p, s, e, cur, cur_ls
    cdef int64_t cur_rec
    cdef int single                 # -1: not yet known; 1: the block is one record
    while pos < n:
        bend = pos + block_size
        if bend >= n:
            bend = n
        else:
            q = <const char*>memchr(data + bend - 1, b'\n', n - bend + 1)
            bend = (q - data + 1) if q != NULL else n
        blen = bend - pos
        block = StringPiece(data + pos, blen)
        hits.clear()
        for k in range(shards.size()):
            v.clear()
            if k == 0 and inject_oom[0] > 0:
                inject_oom[0] -= 1
                bad_shard[0] = 0
                return ST_OOM
            if not shards[k].Match(block, &v, &err):
                if err.kind != kNoError:
                    bad_shard[0] = <int>k
                    return ST_OOM if err.kind == kOutOfMemory else ST_SET_ERROR
                continue
            for j in range(v.size()):
                hits.push_back(shard_rules[k][v[j]])
        for j in range(unsharded.size()):
            hits.push_back(unsharded[j])
        if hits.size() == 0:
            pos = bend
            continue
        # Bring the record counter up to this block's first byte.
        while counted < pos:
            q = <const char*>memchr(data + counted, b'\n', pos - counted)
            if q == NULL:
                counted = pos
                break
            rec += 1
            counted = (q - data) + 1
        cpp_sort(hits.begin(), hits.end())
        single = -1
        for j in range(hits.size()):
            r = hits[j]
            if whole[r]:
                # A marker: which records match, not where. When the block is one record the
                # Set has already said so; otherwise a yes/no search per record (RE2 stops at
                # the earliest match and needs no reverse pass for the start).
                if single < 0:
                    single = 1 if blen < 2 or memchr(data + pos, b'\n', blen - 1) == NULL else 0
                cur = pos
                cur_rec = rec
                while cur < bend:
                    q = <const char*>memchr(data + cur, b'\n', bend - cur)
                    e = (q - data) if q != NULL else bend
                    if single == 1 or rules[r].Match(block, cur - pos, e - pos, UNANCHORED, NULL, 0):
                        out_rec.push_back(cur_rec)
                        out_rule.push_back(r)
                        out_start.push_back(cur)
                        out_end.push_back(e)
                        out_ls.push_back(cur)
                    cur_rec += 1
                    cur = e + 1
                continue
            p = 0
            cur = pos
            cur_rec = rec
            cur_ls = pos
            while p < blen:
                if not rules[r].Match(block, p, blen, UNANCHORED, &m, 1):
                    break
                s = m.data() - data
                e = s + <Py_ssize_t>m.size()
                while True:
                    q = <const char*>memchr(data + cur, b'\n', s - cur) if s > cur else NULL
                    if q == NULL:
                        break
                    cur_rec += 1
                    cur = (q - data) + 1
                    cur_ls = cur
                out_rec.push_back(cur_rec)
                out_rule.push_back(r)
                out_start.push_back(s)
                out_end.push_back(e)
                out_ls.push_back(cur_ls)
                p = (e - pos) if e > s else (e - pos + 1)
        pos = bend
    # Total records: every newline ends one; trailing bytes without a newline form the last.
    while counted < n:
        q = <const char*>memchr(data + counted, b'\n', n - counted)
        if q == NULL:
            break
        rec += 1
        counted = (q - data) + 1
    if n > 0 and data[n - 1] != b'\n':
        rec += 1
    n_records[0] = rec
    return ST_OK


def check_pattern(pattern, int64_t max_mem=DEF_MAX_MEM):
    """Compile one pattern the way the scanner will and return RE2's program size (a measure of
    its cost). Raises PatternError with RE2's message when it does not compile or matches the
    empty string."""
    cdef bytes pat = pattern.encode("latin-1") if isinstance(pattern, str) else bytes(pattern)
    cdef bytes wrapped = b"(?m)" + pat
    cdef RE2Options opts = make_options(max_mem)
    cdef RE2* rx = new RE2(StringPiece(<const char*>wrapped, len(wrapped)), opts)
    try:
        if not rx.ok():
            raise PatternError(0, _re2_message(rx.error()))
        if _can_match_empty(rx):
            raise PatternError(0, "pattern can match the empty string")
        return rx.ProgramSize()
    finally:
        del rx



cdef class ValueMatch:
    """Spans of a :class:`ValueRegex` match, by group number (``(-1, -1)`` for a group that did
    not take part), like the ``span``/``start`` of a ``re.Match``."""

    cdef readonly tuple spans

    def span(self, int group=0):
        return self.spans[group]

    def start(self, int group=0):
        return self.spans[group][0]

    def end(self, int group=0):
        return self.spans[group][1]


cdef class ValueRegex:
    """One rule's regex compiled the way the scanner compiles it (Latin-1, ``never_nl``,
    multi-line anchors) for finding its groups inside a match the scanner reported: RE2's
    linear time where Python's backtracking ``re`` can take exponential time."""

    cdef RE2* _rx
    cdef int _ngroups
    cdef readonly dict groupindex
    cdef readonly bytes pattern

    def __cinit__(self):
        self._rx = NULL

    def __init__(self, pattern, int64_t max_mem=DEF_MAX_MEM):
        self.pattern = pattern.encode("latin-1") if isinstance(pattern, str) else bytes(pattern)
        cdef bytes wrapped = b"(?m)" + self.pattern
        cdef RE2Options opts = make_options(max_mem)
        self._rx = new RE2(StringPiece(<const char*>wrapped, len(wrapped)), opts)
        if not self._rx.ok():
            raise PatternError(0, _re2_message(self._rx.error()))
        self._ngroups = self._rx.NumberOfCapturingGroups()
        self.groupindex = {k.decode("latin-1"): v for k, v in dict(self._rx.NamedCapturingGroups()).items()}

    def __dealloc__(self):
        if self._rx != NULL:
            del self._rx

    def match(self, line, Py_ssize_t pos=0, endpos=None):
        """A match of the regex starting at ``pos`` and ending by ``endpos`` in ``line`` (the
        whole of ``line`` is the context of anchors and word boundaries), or None."""
        cdef const unsigned char[::1] view = memoryview(line).cast("B") if not isinstance(line, bytes) else line
        cdef Py_ssize_t n = view.shape[0]
        cdef Py_ssize_t end = n if endpos is None else min(<Py_ssize_t>endpos, n)
        if pos < 0 or pos > end:
            return None
        cdef const char* data = <const char*>&view[0] if n else <const char*>b""
        cdef vector[StringPiece] subs
        subs.resize(self._ngroups + 1)
        cdef bint ok
        with nogil:
            ok = self._rx.Match(StringPiece(data, n), pos, end, ANCHOR_START, &subs[0], self._ngroups + 1)
        if not ok:
            return None
        spans = []
        cdef int g
        for g in range(self._ngroups + 1):
            if subs[g].data() == NULL:
                spans.append((-1, -1))
            else:
                spans.append((subs[g].data() - data, subs[g].data() - data + <Py_ssize_t>subs[g].size()))
        cdef ValueMatch m = ValueMatch.__new__(ValueMatch)
        m.spans = tuple(spans)
        return m

    def search(self, text):
        """Whether the regex matches anywhere in ``text``."""
        cdef const unsigned char[::1] view = memoryview(text).cast("B") if not isinstance(text, bytes) else text
        cdef Py_ssize_t n = view.shape[0]
        cdef const char* data = <const char*>&view[0] if n else <const char*>b""
        cdef bint ok
        with nogil:
            ok = self._rx.Match(StringPiece(data, n), 0, n, UNANCHORED, NULL, 0)
        return ok
