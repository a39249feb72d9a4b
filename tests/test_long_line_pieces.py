"""A line longer than the read buffer is scanned in pieces that overlap: every value is
reported once, whole, with its offset in the line, wherever the cuts fall (a reviewer hid a
card across the 8 MiB cut; it was missed, and a cut e-mail was reported by its head)."""
from __future__ import annotations

import random

import pytest

from leakwatch._core import Scanner
from leakwatch.detect.engine import PieceTrim
from leakwatch.sources.files import ReadStats, iter_chunks

PATTERNS = [rb"\b4111111111111111\b", rb"[a-z]+@example\.com\b", rb"key=[A-Za-z0-9]{8,40}"]


def _line_matches(data: bytes) -> set[tuple[int, int, int, int]]:
    """(line, rule, start, end) of every match, offsets within the line: the reference."""
    res = Scanner(PATTERNS).scan(data)
    return {(int(r), int(k), int(s - ls), int(e - ls)) for r, k, s, e, ls in
            zip(res.record, res.rule, res.start, res.end, res.line_start)}


def _piece_matches(path, max_record: int, overlap: int) -> set[tuple[int, int, int, int]]:
    sc = Scanner(PATTERNS)
    trim = PieceTrim(overlap)
    out = []
    for chunk in iter_chunks(str(path), ReadStats(), chunk_size=max_record, max_record=max_record, overlap=overlap):
        res = trim(chunk, sc.scan(chunk.view))
        for r, k, s, e, ls in zip(res.record, res.rule, res.start, res.end, res.line_start):
            off = chunk.first_line_offset if r == 0 else 0
            out.append((chunk.first_line + int(r), int(k), int(s - ls) + off, int(e - ls) + off))
    assert len(out) == len(set(out)), "a match reported twice"
    return set(out)


@pytest.mark.parametrize("seed", range(12))
def test_pieces_report_what_the_whole_line_holds(tmp_path, seed):
    rng = random.Random(seed)
    values = [b"4111111111111111", b"alice@example.com", b"key=" + bytes(rng.choice(b"abcXYZ0123") for _ in range(30))]
    parts = []
    for _ in range(60):
        parts.append(b"y" * rng.randrange(1, 400) + b" ")
        parts.append(rng.choice(values) + b" ")
    line = b"".join(parts)
    data = b"short key=abcdefgh1 line\n" + line + b"\nlast bob@example.com\n"
    path = tmp_path / "long.log"
    path.write_bytes(data)
    want = _line_matches(data)
    assert _piece_matches(path, 4096, 512) == want


def test_every_cut_position_of_one_value(tmp_path):
    without_overlap_wrong = 0
    for at in range(4096 - 40, 4096 + 5):
        data = b"x" * at + b" alice@example.com 4111111111111111 " + b"z" * 5000 + b"\n"
        path = tmp_path / f"l{at}.log"
        path.write_bytes(data)
        assert _piece_matches(path, 4096, 256) == _line_matches(data), at
        without_overlap_wrong += _piece_matches(path, 4096, 0) != _line_matches(data)
    assert without_overlap_wrong > 20  # the cut falls inside a value: lost or cut short


@pytest.mark.parametrize("size", [4096, 4096 + (4096 - 256), 2 * 4096 + 100])
def test_a_last_line_ending_right_at_a_cut_keeps_its_values(tmp_path, size):
    # No final newline, and the file ends exactly where a piece ends (or one overlap later):
    # the last piece's matches were left to a next piece that never came.
    tail = b" alice@example.com 4111111111111111 "
    data = b"x" * (size - len(tail)) + tail
    path = tmp_path / "end.log"
    path.write_bytes(data)
    assert _piece_matches(path, 4096, 256) == _line_matches(data)
    stats = ReadStats()
    assert sum(1 for _ in iter_chunks(str(path), stats, chunk_size=4096, max_record=4096, overlap=256)) >= 1
    assert stats.records == 1 and stats.bytes_read == len(data)
