"""Types shared by the native scanner and the pure-Python reference engine."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ScanResult(NamedTuple):
    """Matches in one buffer, sorted by (record, start, rule).

    ``start``/``end`` are absolute byte offsets in the scanned buffer (end exclusive);
    ``line_start`` is the offset of the record that holds the match, so
    ``start - line_start`` is the offset within the record. ``n_records`` counts the records in
    the buffer (a final record without a trailing newline counts).
    """

    record: np.ndarray  # int64
    rule: np.ndarray  # int32
    start: np.ndarray  # int64
    end: np.ndarray  # int64
    line_start: np.ndarray  # int64
    n_records: int


class PatternError(ValueError):
    """A rule's regex does not compile (or would match the empty string)."""

    def __init__(self, index: int, message: str):
        super().__init__(f"pattern {index}: {message}")
        self.index = index
        self.message = message


class ScanError(RuntimeError):
    """The native engine failed in a way that is not the input's fault."""
