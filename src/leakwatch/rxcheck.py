"""Patterns that would make Python's backtracking ``re`` take exponential time.

Rules run on RE2, which cannot backtrack, but some patterns also run on Python's ``re``: a rule's
value group (and the reference engine), a custom log format, a registry host regex, a CDN path.
Those come from files a person edits, and the text they run on comes from logs an attacker can
write to. An unbounded repeat inside another one (``(a+)+``, ``([a-z.@]+\\s?)+``) backtracks
exponentially on a line that almost matches: one log line held a scan for minutes. Light on
imports: the configuration loader uses it.
"""
from __future__ import annotations

import re
import re._parser as _sre


def nested_unbounded(items, inside: bool = False) -> bool:
    """Whether an unbounded repeat sits inside another one in the parsed pattern ``items``."""
    for op, av in items:
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            _lo, hi, sub = av
            unbounded = hi == _sre.MAXREPEAT
            if unbounded and inside:
                return True
            if nested_unbounded(sub, inside or unbounded):
                return True
        elif op == _sre.SUBPATTERN:
            if nested_unbounded(av[3], inside):
                return True
        elif op == _sre.BRANCH:
            if any(nested_unbounded(b, inside) for b in av[1]):
                return True
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            if nested_unbounded(av[1], inside):
                return True
    return False


def backtracks(pattern: str | bytes) -> bool:
    """Whether ``pattern`` nests unbounded repeats (False for a pattern ``re`` cannot parse: its
    compile error is reported where it is compiled)."""
    try:
        return nested_unbounded(_sre.parse(pattern))
    except (re.error, RecursionError):
        return False


BACKTRACK_MESSAGE = ("nested unbounded repetition like (a+)+: Python's re can take minutes on one line "
                     "that almost matches; bound the inner repeat ({1,64}) or drop one of the two")
