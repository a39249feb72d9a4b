"""Pure-Python reference engine: the oracle the native scanner is tested against.

It splits the buffer into records on ``\\n`` and runs every rule's regex over every record with
the standard library's ``re`` (bytes mode, ASCII semantics, ``re.MULTILINE`` to mirror the native
``(?m)``). It is deliberately naive — one ``finditer`` per record per rule — so that it shares no
code or strategy with the native engine.
"""
from __future__ import annotations

import re

import numpy as np

from leakwatch._core.types import PatternError, ScanResult


# Every combination of what can precede and follow a position, for zero-width assertions.
_EMPTY_PROBES = [prev + nxt for prev in (b"", b"\n", b"a", b" ") for nxt in (b"", b"\n", b"a", b" ")]


class ReferenceScanner:
    """Same API as :class:`leakwatch._core.Scanner`, thousands of times slower."""

    def __init__(self, patterns, *, record_only=(), **_ignored):
        self.patterns = [p.encode("latin-1") if isinstance(p, str) else bytes(p) for p in patterns]
        self.record_only = frozenset(int(i) for i in record_only)
        if any(i < 0 or i >= len(self.patterns) for i in self.record_only):
            raise ValueError("record_only holds an index that is not a pattern's")
        self._compiled = []
        for i, pat in enumerate(self.patterns):
            try:
                rx = re.compile(pat, re.MULTILINE)
            except re.error as e:
                raise PatternError(i, str(e)) from e
            if any(m.start() == m.end() for probe in _EMPTY_PROBES for m in rx.finditer(probe)):
                raise PatternError(i, "pattern can match the empty string")
            self._compiled.append(rx)

    @property
    def n_rules(self) -> int:
        return len(self._compiled)

    def scan(self, buf) -> ScanResult:
        data = bytes(memoryview(buf).cast("B"))
        rec, rule, start, end, ls = [], [], [], [], []
        offset = 0
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()  # the empty tail after the final newline is not a record
        for i, line in enumerate(lines):
            for r, rx in enumerate(self._compiled):
                if r in self.record_only:
                    # One hit for the record, spanning all of it (the \n excluded).
                    if rx.search(line):
                        rec.append(i)
                        rule.append(r)
                        start.append(offset)
                        end.append(offset + len(line))
                        ls.append(offset)
                    continue
                for m in rx.finditer(line):
                    rec.append(i)
                    rule.append(r)
                    start.append(offset + m.start())
                    end.append(offset + m.end())
                    ls.append(offset)
            offset += len(line) + 1
        order = sorted(range(len(rec)), key=lambda k: (rec[k], start[k], rule[k]))
        return ScanResult(
            np.asarray([rec[k] for k in order], dtype=np.int64),
            np.asarray([rule[k] for k in order], dtype=np.int32),
            np.asarray([start[k] for k in order], dtype=np.int64),
            np.asarray([end[k] for k in order], dtype=np.int64),
            np.asarray([ls[k] for k in order], dtype=np.int64),
            len(lines) if data else 0,
        )
