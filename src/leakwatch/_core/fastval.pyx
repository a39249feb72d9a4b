# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Checksum and entropy validators in C for the hot candidates (cards, record IDs, tokens).

They run once per regex candidate, so a 16-digit trace ID that fails Luhn costs well under a
microsecond instead of the ~3 µs of an equivalent Python loop. Each accepts ``bytes``.
"""
from libc.math cimport log2


def luhn(const unsigned char[:] s) -> bool:
    """Luhn mod-10 over the digits of ``s`` (separators ignored); needs at least 2 digits."""
    cdef Py_ssize_t i
    cdef int total = 0, n = 0, d
    cdef unsigned char c
    for i in range(s.shape[0] - 1, -1, -1):
        c = s[i]
        if c < 48 or c > 57:
            continue
        d = c - 48
        if n & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        n += 1
    return n >= 2 and total % 10 == 0


def shannon_entropy(const unsigned char[:] s) -> float:
    """Shannon entropy in bits per byte."""
    cdef Py_ssize_t i, n = s.shape[0]
    cdef int counts[256]
    cdef double h = 0.0, p
    if n == 0:
        return 0.0
    for i in range(256):
        counts[i] = 0
    for i in range(n):
        counts[s[i]] += 1
    for i in range(256):
        if counts[i]:
            p = <double>counts[i] / n
            h -= p * log2(p)
    return h


def sfid_suffix(const unsigned char[:] s) -> str:
    """The 3-character checksum suffix of a 15-character Salesforce ID (DOMAIN.md §2)."""
    cdef const char* alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    cdef int chunk, i, bits
    cdef unsigned char c
    if s.shape[0] < 15:
        raise ValueError("need 15 characters")
    out = bytearray(3)
    for chunk in range(3):
        bits = 0
        for i in range(5):
            c = s[chunk * 5 + i]
            if 65 <= c <= 90:
                bits |= 1 << i
        out[chunk] = alphabet[bits]
    return out.decode("ascii")
