"""leakwatch.sources.files against real files: chunking, ranges, path expansion, decoding."""
from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

import pytest

from leakwatch.sources.files import (
    InputProblem, ReadStats, expand_paths, iter_chunks, looks_binary, open_stream, split_points,
)


def collect(path, chunk_size=64, **kw):
    """Every chunk of ``path`` as (bytes, first_line, first_line_offset), plus the ReadStats."""
    stats = ReadStats()
    out = [(c.tobytes(), c.first_line, c.first_line_offset)
           for c in iter_chunks(str(path), stats, chunk_size=chunk_size, **kw)]
    return out, stats


def varied_lines(n: int, seed: int = 1) -> bytes:
    """n lines of random length 0..150 (some longer than a 64-byte chunk), ending in a newline."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        k = rng.choice([0, 1, 5, 20, 63, 64, 65, 100, 150])
        lines.append((f"{i}:" + "x" * k)[: max(k, 1)].encode() if k else b"")
    return b"\n".join(lines) + b"\n"


def assert_line_numbers(data: bytes, chunks) -> None:
    """first_line is the number of newlines before the chunk; first_line_offset is how far into
    that line the chunk starts."""
    pos = 0
    for piece, first_line, offset in chunks:
        assert first_line == data.count(b"\n", 0, pos)
        line_start = data.rfind(b"\n", 0, pos) + 1
        assert offset == pos - line_start
        pos += len(piece)


# --- iter_chunks ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [16, 64, 100, 4096])
@pytest.mark.parametrize("pieces", [False, True])
def test_iter_chunks_reassembles_the_file_exactly(tmp_path, chunk_size, pieces):
    """With ``pieces`` a line longer than chunk_size comes in pieces; without, the buffer grows
    to hold it whole (up to max_record)."""
    data = varied_lines(400)
    p = tmp_path / "a.log"
    p.write_bytes(data)
    kw = {"max_record": chunk_size} if pieces else {}
    chunks, stats = collect(p, chunk_size=chunk_size, **kw)
    assert b"".join(c[0] for c in chunks) == data
    assert stats.bytes_read == len(data)
    assert stats.records == data.count(b"\n")
    assert_line_numbers(data, chunks)
    longest = max(len(line) + 1 for line in data.split(b"\n"))
    for piece, _, offset in chunks:
        # Grown buffers double, so a chunk may hold a bit more than the longest line.
        assert 0 < len(piece) <= (chunk_size if pieces else 2 * max(chunk_size, longest))
        if not pieces:
            assert offset == 0 and piece.endswith(b"\n")
    assert bool([pr for pr in stats.problems if pr.kind == "long_line"]) == (pieces and longest > chunk_size)


def test_iter_chunks_long_line_in_pieces_beyond_max_record(tmp_path):
    data = b"short line\n" * 30 + b"L" * 300 + b"\nafter the long one\n" + b"tail without newline"
    p = tmp_path / "a.log"
    p.write_bytes(data)
    chunks, stats = collect(p, chunk_size=64, max_record=64)
    assert b"".join(c[0] for c in chunks) == data
    assert_line_numbers(data, chunks)
    # Only pieces of the 300-byte line 31 (and the unterminated last record) may lack a newline.
    for piece, first_line, offset in chunks[:-1]:
        if not piece.endswith(b"\n"):
            assert first_line == 30 and set(piece) == {ord("L")}
    long_pieces = [c for c in chunks if c[1] == 30]
    assert len(long_pieces) >= 5
    assert [c[2] for c in long_pieces] == [64 * k for k in range(len(long_pieces))]
    assert long_pieces[-1][0] == b"L" * (300 - long_pieces[-1][2]) + b"\nafter the long one\n"
    assert chunks[-1][0].endswith(b"tail without newline")
    # Reported once, naming the file and the (1-based) line.
    long = [pr for pr in stats.problems if pr.kind == "long_line"]
    assert len(long) == 1
    assert long[0].path == str(p) and long[0].line == 31
    assert str(long[0]).startswith(f"{p}:31: line longer than")


def test_iter_chunks_grows_for_a_long_line_below_max_record_then_shrinks(tmp_path):
    data = b"short line\n" * 30 + b"L" * 300 + b"\n" + b"after\n" * 100
    p = tmp_path / "a.log"
    p.write_bytes(data)
    chunks, stats = collect(p, chunk_size=64, max_record=1024)
    assert b"".join(c[0] for c in chunks) == data
    assert_line_numbers(data, chunks)
    assert stats.problems == []
    (k,) = [i for i, c in enumerate(chunks) if b"L" in c[0]]
    assert b"L" * 300 + b"\n" in chunks[k][0] and chunks[k][2] == 0  # whole, not in pieces
    assert k + 1 < len(chunks) and all(len(c[0]) <= 64 for c in chunks[k + 1:])  # shrunk back


def test_iter_chunks_line_numbers_after_several_long_lines(tmp_path):
    data = b"a\n" + b"x" * 200 + b"\n" + b"b\n" + b"y" * 129 + b"\n" + b"c\n"
    p = tmp_path / "a.log"
    p.write_bytes(data)
    chunks, _ = collect(p, chunk_size=64, max_record=64)
    assert b"".join(c[0] for c in chunks) == data
    assert_line_numbers(data, chunks)
    # The chunk holding "c" knows it is line index 4.
    (c_chunk,) = [c for c in chunks if c[0].endswith(b"c\n")]
    assert c_chunk[1] + c_chunk[0].count(b"\n") - 1 == 4


def test_iter_chunks_ranges_from_split_points_cover_the_file(tmp_path):
    data = varied_lines(2000, seed=7)
    p = tmp_path / "a.log"
    p.write_bytes(data)
    ranges = split_points(str(p), len(data), 7, min_part=1000)
    assert len(ranges) == 7
    pieces = []
    for a, b in ranges:
        chunks, stats = collect(p, chunk_size=256, start=a, stop=b)
        assert stats.bytes_read == b - a
        got = b"".join(c[0] for c in chunks)
        assert got == data[a:b]
        # first_line counts lines from the start of the range.
        assert_line_numbers(got, chunks)
        pieces.append(got)
    assert b"".join(pieces) == data


def test_iter_chunks_hasher_sees_every_byte(tmp_path):
    import hashlib

    data = varied_lines(300, seed=3)
    p = tmp_path / "a.log"
    p.write_bytes(data)
    h = hashlib.sha256()
    collect(p, chunk_size=64, hasher=h)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


def test_iter_chunks_empty_file(tmp_path):
    p = tmp_path / "empty.log"
    p.write_bytes(b"")
    chunks, stats = collect(p)
    assert chunks == [] and stats.problems == [] and stats.records == 0


def test_iter_chunks_reads_gzip_by_magic_bytes_not_name(tmp_path):
    data = varied_lines(500, seed=5)
    p = tmp_path / "app.log.1"  # rotated, lost its .gz
    p.write_bytes(gzip.compress(data))
    chunks, stats = collect(p, chunk_size=128)
    assert stats.compression == "gzip"
    assert b"".join(c[0] for c in chunks) == data
    assert_line_numbers(data, chunks)


def test_iter_chunks_truncated_gzip_keeps_complete_lines_before_the_cut(tmp_path):
    data = b"".join(b"line %05d user%05d@example.com\n" % (i, i) for i in range(3000))
    gz = gzip.compress(data)
    p = tmp_path / "cut.log.gz"
    p.write_bytes(gz[: len(gz) * 2 // 3])
    chunks, stats = collect(p, chunk_size=1 << 20)
    got = b"".join(c[0] for c in chunks)
    assert got, "nothing before the cut was delivered"
    assert data.startswith(got) and got.endswith(b"\n")  # whole lines only, in order
    assert len(got) > len(data) // 3
    (problem,) = [pr for pr in stats.problems if pr.kind == "truncated"]
    assert problem.path == str(p)
    assert problem.line == got.count(b"\n") + 1


@pytest.mark.parametrize("bom,enc", [(b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_utf16_with_bom_is_reencoded_to_utf8(tmp_path, bom, enc):
    text = "héllo mail=bob@example.com\nzweite Zeile ü\n" * 50
    p = tmp_path / "u16.log"
    p.write_bytes(bom + text.encode(enc))
    chunks, stats = collect(p, chunk_size=128)
    assert stats.encoding == "utf-16"
    assert b"".join(c[0] for c in chunks) == text.encode("utf-8")


def test_utf8_bom_is_dropped(tmp_path):
    p = tmp_path / "bom.log"
    p.write_bytes(b"\xef\xbb\xbfa,b,c\n1,2,3\n")
    chunks, stats = collect(p)
    assert stats.encoding == "utf-8-sig"
    assert b"".join(c[0] for c in chunks) == b"a,b,c\n1,2,3\n"


def test_open_stream_of_gzipped_utf16(tmp_path):
    text = "mail=carol@example.com\n"
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"\xff\xfe" + text.encode("utf-16-le")))
    stats = ReadStats()
    s = open_stream(str(p), stats)
    try:
        assert s.read() == text.encode()
    finally:
        s.close()
    assert stats.compression == "gzip" and stats.encoding == "utf-16"


# --- split_points -----------------------------------------------------------------------------


@pytest.mark.parametrize("parts,min_part", [(2, 100), (5, 100), (16, 50), (64, 1), (3, 10**9)])
def test_split_points_are_contiguous_and_start_after_newlines(tmp_path, parts, min_part):
    data = varied_lines(1500, seed=11) + b"Z" * 5000 + b"\n" + varied_lines(300, seed=12) + b"no newline at end"
    p = tmp_path / "a.log"
    p.write_bytes(data)
    ranges = split_points(str(p), len(data), parts, min_part=min_part)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert 1 <= len(ranges) <= parts
    for (a, b), (c, _) in zip(ranges, ranges[1:]):
        assert b == c
    for a, b in ranges:
        assert a < b
        assert a == 0 or data[a - 1 : a] == b"\n"
    if min_part == 10**9:
        assert ranges == [(0, len(data))]


def test_split_points_on_one_giant_line_does_not_cut_it(tmp_path):
    data = b"x" * 10_000 + b"\nshort\n"
    p = tmp_path / "a.log"
    p.write_bytes(data)
    ranges = split_points(str(p), len(data), 8, min_part=100)
    assert ranges[0] == (0, 10_001)
    assert ranges[-1][1] == len(data)
    for a, _ in ranges:
        assert a == 0 or data[a - 1 : a] == b"\n"


# --- expand_paths -----------------------------------------------------------------------------


def test_expand_paths_recurses_sorted_dedups_and_excludes_the_database(tmp_path):
    d = tmp_path / "logs"
    (d / "b").mkdir(parents=True)
    (d / "a").mkdir()
    for rel in ["a/2.log", "a/1.log", "b/x.log.gz", "top.log"]:
        (d / rel).write_text("line\n")
    db = d / "lw.duckdb"
    for extra in (db, Path(f"{db}.wal"), Path(f"{db}.key")):
        extra.write_text("not a log\n")
    os.symlink(d / "top.log", d / "link-to-top.log")  # same file under another name
    files, problems = expand_paths(
        [str(d), str(d / "a" / "1.log"), str(d / "a" / "*.log"), str(d / "**" / "*.gz")],
        exclude={str(db), f"{db}.wal", f"{db}.key"},
    )
    assert problems == []
    names = [os.path.relpath(f.path, d) for f in files]
    # Files of a directory before its subdirectories; top.log and its symlink count once.
    assert names[0] in ("link-to-top.log", "top.log")
    assert names[1:] == ["a/1.log", "a/2.log", "b/x.log.gz"]
    assert all(f.size == 5 and f.mtime_ns > 0 for f in files)


def test_expand_paths_reports_missing_paths_and_empty_globs(tmp_path):
    good = tmp_path / "good.log"
    good.write_text("x\n")
    dangling = tmp_path / "dangling.log"
    os.symlink(tmp_path / "nowhere" / "gone.log", dangling)
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    files, problems = expand_paths([str(tmp_path / "nope.log"), str(tmp_path / "*.xyz"), str(good),
                                    str(dangling), str(fifo)])
    assert [f.path for f in files] == [str(good)]
    by_path = {p.path: p for p in problems}
    assert by_path[str(tmp_path / "nope.log")].kind == "missing"
    assert "no such file" in by_path[str(tmp_path / "nope.log")].message
    assert by_path[str(tmp_path / "*.xyz")].kind == "missing"
    assert "matched no files" in by_path[str(tmp_path / "*.xyz")].message
    assert by_path[str(dangling)].kind == "unreadable"
    assert by_path[str(fifo)].kind == "unreadable"
    assert len(problems) == 4


def test_input_problem_str_names_file_and_line():
    assert str(InputProblem("a.log", "long_line", "too long", 7)) == "a.log:7: too long"
    assert str(InputProblem("a.log", "missing", "no such file")) == "a.log: no such file"


# --- looks_binary -----------------------------------------------------------------------------


def test_looks_binary():
    rng = random.Random(0)
    assert looks_binary(bytes(rng.randrange(256) for _ in range(8192)))  # compressed / random data
    assert looks_binary(b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(4000)))
    assert looks_binary(b"\x00\x01\x02\x03" * 1000)
    assert not looks_binary(b"")
    assert not looks_binary(b"2024-01-01 INFO ok \x1b[32mgreen\x1b[0m\r\n" * 100)
    assert not looks_binary(b"a\x00b user=x@example.com \x00 x\n" * 100)  # stray NULs in a log
    # Legacy 8-bit text (Latin-1, CP1251) is text, even though it is not valid UTF-8.
    assert not looks_binary("Grüße aus Köln, straße=Hauptstraße 1\n".encode("latin-1") * 100)
    assert not looks_binary("Привет, пользователь вошёл в систему\n".encode("cp1251") * 100)
