# cython: language_level=3, boundscheck=False, wraparound=False
"""The per-candidate loop of :meth:`leakwatch.detect.engine.Detector.process`, compiled.

It does exactly what the pure-Python loop in ``engine.py`` does (``Detector(..., compiled=False)``
runs that one, and a test checks both give identical rows): find the record, score the match
through the same rule plans as :class:`~leakwatch.detect.evaluate.Evaluator`, mask, hash. The
Python-level calls that remain (validators, maskers, ``field_before``) are the rules' own
logic; what Cython removes is the interpreter overhead around them, about half of the cost
per finding.
"""
from libc.string cimport memchr, memcpy
from libc.stdint cimport int64_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

import numpy as np

from leakwatch.detect.context import NOT_ROW_STARTS, field_before, has_context, not_context
from leakwatch.detect.evaluate import _normalized

try:
    from _hashlib import hmac_digest as _hmac_digest
except ImportError:  # pragma: no cover
    from hmac import digest as _hmac_digest


def count_newlines(buf):
    """Number of ``\\n`` bytes in a bytes-like object (memchr: ~7 GB/s)."""
    cdef const unsigned char[::1] view = memoryview(buf).cast("B")
    cdef Py_ssize_t n = view.shape[0], pos = 0, count = 0
    cdef const char* data
    cdef const char* q
    if n == 0:
        return 0
    data = <const char*>&view[0]
    with nogil:
        while pos < n:
            q = <const char*>memchr(data + pos, b"\n", n - pos)
            if q == NULL:
                break
            count += 1
            pos = (q - data) + 1
    return count


def build_rows(data, Py_ssize_t limit, list recs, list rule_idx, list starts, list ends, list line_starts,
               list eval_plans, list out_plans, bytes key, bint store_raw, Py_ssize_t first_line,
               Py_ssize_t first_off, list header, column_at, field_of=None):
    """Rows (tuples in BATCH_COLUMNS order) for the matches of one chunk.

    ``field_of(line_start, offset)``, when given, names the field (as its format writes it) that
    holds byte ``offset`` of the record starting at ``line_start``, or returns None."""
    cdef list rows = []
    cdef Py_ssize_t i, m = len(recs), rec, ri, s, e, ls, cur_ls = -1, nl, vs, ve, off, ln
    cdef bytes line = b""
    cdef bint csv_line = False
    cdef double base, s_val, s_ctx, conf
    cdef object plan, m_, validator, ctx, field, value, path
    for i in range(m):
        rec = recs[i]
        ri = rule_idx[i]
        s = starts[i]
        e = ends[i]
        ls = line_starts[i]
        if ls != cur_ls:
            nl = data.find(b"\n", e, limit)
            line = bytes(data[ls:nl if nl != -1 else limit])
            ln = len(line)
            if ln and line[ln - 1] == 13:
                line = line[:ln - 1]
            cur_ls = ls
            # A format-aware reader (field_of) knows the columns in effect at this record, also
            # after a second header in a concatenated export; the file's first header does not.
            csv_line = header is not None and field_of is None and line[:1] not in NOT_ROW_STARTS
        s -= ls
        e -= ls
        if e > len(line):
            e = len(line)
        field = None
        if csv_line:
            ci = column_at(line, s)
            if ci < len(header):
                field = header[ci]
        # --- the same steps, in the same order, as Evaluator.evaluate -------------------------
        value_rx, group, validator, drop_on_fail, boost, penalty, ctx, base = eval_plans[ri]
        vs = s
        ve = e
        if value_rx is not None:
            m_ = value_rx.match(line, s, e)
            if m_ is not None:
                gs, ge = m_.span(group)
                if gs >= 0:
                    vs = gs
                    ve = ge
        s_val = 0.0
        if validator is not None:
            if validator(line[vs:ve]):
                s_val = boost
            elif drop_on_fail:
                continue
            else:
                s_val = penalty
        if field is None and field_of is not None:
            field = field_of(cur_ls, vs)
        if field is None:
            field = field_before(line, vs)
            path = field
        else:
            path = field
            field = _normalized(field)
        s_ctx = 0.0
        if ctx is not None:
            if ctx.has_negative and not_context(ctx, line, vs, field):
                continue
            if has_context(ctx, line, vs, ve, field):
                s_ctx = ctx.boost
            elif ctx.required:
                continue
        conf = base + s_val + s_ctx
        if conf > 1.0:
            conf = 1.0
        elif conf < 0.0:
            conf = 0.0
        # --- row -----------------------------------------------------------------------------
        rule_id, entity, severity, rank, mask, normalize = out_plans[ri]
        if s_val < 0 and rank > 1:
            severity, rank = "low", 1  # failed its validator (a placeholder key): see engine.py
        value = line[vs:ve]
        off = first_off if rec == 0 else 0
        rows.append((first_line + rec, vs + off, ve + off, rule_id, entity, conf, base, s_val, s_ctx, severity,
                     rank, field, mask(value), _hmac_digest(key, normalize(value), "sha256").hex(),
                     value.decode("utf-8", "backslashreplace") if store_raw else None, path))
    return rows


def compact_records(data, Py_ssize_t limit, starts):
    """The records beginning at ``starts`` (sorted byte offsets into ``data[:limit]``), each up
    to its ``\\n`` (or ``limit``), joined into one buffer with a ``\\n`` after each. Returns
    (buffer, the records' offsets in it as int64). Same result as the Python in
    :func:`leakwatch.detect.engine.compact_hits` built with ``bytes.find`` and ``join``; here
    without the GIL, so a worker thread compacting its hits does not hold up the owner."""
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    cdef const int64_t[::1] st = np.ascontiguousarray(starts, dtype=np.int64)
    cdef Py_ssize_t n = st.shape[0], i, s, e, total = 0, pos = 0
    cdef const char* base
    cdef const char* q
    out_starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] os_ = out_starts
    cdef int64_t[::1] en = ends
    if limit > view.shape[0]:
        limit = view.shape[0]
    if n == 0 or limit <= 0:
        return b"", out_starts
    base = <const char*>&view[0]
    with nogil:
        for i in range(n):
            s = st[i]
            if s < 0 or s > limit:
                with gil:
                    raise ValueError(f"record start {s} outside the buffer")
            q = <const char*>memchr(base + s, b"\n", limit - s) if s < limit else NULL
            e = (q - base) if q != NULL else limit
            en[i] = e
            os_[i] = total
            total += e - s + 1
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* dst = PyBytes_AS_STRING(out)
    with nogil:
        for i in range(n):
            s = st[i]
            e = en[i]
            memcpy(dst + pos, base + s, e - s)
            pos += e - s
            dst[pos] = 10
            pos += 1
    return out, out_starts
