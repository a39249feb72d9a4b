"""Finding input files and reading them as newline-aligned byte chunks.

Memory stays flat whatever the file size: a file is read in chunks of ``chunk_size`` bytes, each
cut after its last newline, the tail carried into the next chunk. A record longer than a chunk
is handed over in pieces (and reported once), so a 50 MB line without a newline costs one chunk
of memory, not 50 MB.
"""
from __future__ import annotations

import codecs
import glob
import gzip
import io
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from leakwatch._core.rows import count_newlines

# Chunks of 4 MiB: per-chunk Python costs (the read loop, result arrays, compaction) vanish,
# and a worker still hands the thread that stores its matches work every ~10 ms. Measured on
# the bench corpus, one worker: 1 MiB 0.71 s of worker CPU, 4 MiB 0.66 s; the owner-side
# interleaving is set by the ranges (8 MiB), not by the chunks.
CHUNK_SIZE = 4 << 20
# A record longer than this is scanned in pieces (and reported): memory stays bounded.
MAX_RECORD = 8 << 20
# A file whose first 8 KiB are more than 30% control bytes is not a log: images, archives,
# DuckDB files. A few stray NULs in a log line are scanned normally.
SNIFF_BYTES = 8192
BINARY_CONTROL_RATIO = 0.30
# ... or more than 5% control bytes and more than 25% invalid UTF-8: random-looking data.
RANDOM_CONTROL_RATIO = 0.05
RANDOM_INVALID_UTF8_RATIO = 0.25
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\b\x1b")


@dataclass(frozen=True)
class InputFile:
    """One file to scan, as found on disk."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class InputProblem:
    """A path that could not be scanned, or a record that was scanned only in part."""

    path: str
    kind: str  # missing | unreadable | binary | truncated | encoding | long_line | ...
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"


@dataclass
class Chunk:
    """Newline-aligned bytes of one file: ``data[:end]``.

    ``data`` may be a buffer that the reader reuses for the next chunk, so a consumer finishes
    with a chunk before asking for the next one (and copies what it keeps). ``first_line`` is
    the 0-based line number of the chunk's first record. When that record is the continuation
    of an over-long line, ``first_line_offset`` is how many bytes of it came in earlier chunks
    (before this chunk's first byte), and ``overlap`` how many of this chunk's first bytes the
    previous chunk ended with (read with ``iter_chunks(overlap=…)``). ``cut``: the chunk ends
    inside its last record, whose next piece follows.
    """

    data: bytes | bytearray
    first_line: int
    first_line_offset: int = 0
    end: int = -1
    overlap: int = 0
    cut: bool = False

    def __post_init__(self):
        if self.end < 0:
            self.end = len(self.data)

    @property
    def view(self) -> memoryview:
        """The chunk's bytes without copying."""
        return memoryview(self.data)[: self.end]

    def tobytes(self) -> bytes:
        return bytes(self.view)


@dataclass
class ReadStats:
    """Filled in while a file is read."""

    bytes_read: int = 0
    records: int = 0
    compression: str | None = None
    encoding: str | None = None
    problems: list[InputProblem] = field(default_factory=list)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def expand_paths(args: list[str], *, exclude: set[str] | None = None,
                 empty_dirs: bool = False) -> tuple[list[InputFile], list[InputProblem]]:
    """Files, directories (recursively, sorted) and glob patterns → the files to scan.

    Paths in ``exclude`` (the database and its key file, for instance) are never scanned.
    ``empty_dirs``: a directory that holds no file is a problem (a one-off scan of a mistyped
    or not yet copied folder); a watched folder may well be empty for now.
    """
    exclude = {os.path.realpath(p) for p in (exclude or set())}
    files: list[InputFile] = []
    problems: list[InputProblem] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        real = os.path.realpath(p)
        if real in seen or real in exclude:
            return
        try:
            st = os.stat(p)
        except OSError as e:
            problems.append(InputProblem(p, "unreadable", _os_message(e)))
            return
        if not stat.S_ISREG(st.st_mode):
            problems.append(InputProblem(p, "unreadable", "not a regular file (a pipe or a device: save its "
                                                          "output to a file and scan that)"))
            return
        seen.add(real)
        files.append(InputFile(p, st.st_size, st.st_mtime_ns))

    for arg in args:
        if arg == "-":
            # Findings point at a file, a line and bytes in it: a pipe leaves nothing to point at.
            problems.append(InputProblem(arg, "unreadable", "standard input is not scanned: save it to a file "
                                                            "first (… > app.log) and scan that file"))
            continue
        if os.path.isdir(arg):
            before = len(files) + len(problems)
            # Linked folders are followed (evidence copied as a link to another disk must not read
            # as "no findings"); a folder reached twice, or a link back up the tree, is walked once.
            walked: set[str] = set()
            for root, dirs, names in os.walk(arg, followlinks=True, onerror=lambda e: problems.append(
                    InputProblem(e.filename or arg, "unreadable", _os_message(e)))):
                real_root = os.path.realpath(root)
                if real_root in walked:
                    dirs[:] = []
                    continue
                walked.add(real_root)
                dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) not in walked)
                for name in sorted(names):
                    add(os.path.join(root, name))
            if empty_dirs and len(files) + len(problems) == before and not _holds_excluded(arg, exclude):
                # A mistyped or not yet copied evidence folder must not read as "no findings".
                problems.append(InputProblem(arg, "missing", "directory holds no files"))
        elif os.path.lexists(arg):
            add(arg)
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                problems.append(InputProblem(arg, "missing", "pattern matched no files"))
            for m in matches:
                if os.path.isdir(m):
                    files_, problems_ = expand_paths([m], exclude=exclude)
                    for f in files_:
                        if os.path.realpath(f.path) not in seen:
                            seen.add(os.path.realpath(f.path))
                            files.append(f)
                    problems.extend(problems_)
                else:
                    add(m)
        else:
            problems.append(InputProblem(arg, "missing", "no such file or directory"))
    return files, problems


def _holds_excluded(folder: str, exclude: set[str]) -> bool:
    """Whether ``folder`` holds one of the excluded files (the database): then it is not empty."""
    real = os.path.realpath(folder) + os.sep
    return any(p.startswith(real) for p in exclude)


def _os_message(e: OSError) -> str:
    return e.strerror or str(e)




# Formats that are binary whatever their first bytes look like (a DuckDB or SQLite file starts
# with a page of mostly NULs and a little text).
_BINARY_MAGIC = (b"SQLite format 3\x00", b"\x7fELF", b"\x89PNG", b"PK\x03\x04", b"PAR1", b"\xff\xd8\xff")


def looks_binary(head: bytes) -> bool:
    """True when the sample is mostly control bytes (see BINARY_CONTROL_RATIO), or starts like a
    known binary format. A sample of NULs only says nothing (see :func:`text_sample`)."""
    if not head:
        return False
    if head.startswith(_BINARY_MAGIC) or head[8:12] == b"DUCK":
        return True
    ratio = sum(1 for b in head if b < 32 and b not in _TEXT_CONTROLS) / len(head)
    if ratio > BINARY_CONTROL_RATIO:
        return True
    # Compressed or encrypted bytes (the bodies of PNG, JPEG, ZIP files) are only ~10% control
    # bytes, but mostly invalid UTF-8. Legacy 8-bit text (Latin-1, CP1251) is invalid UTF-8 too,
    # yet has next to no control bytes, so it still counts as text.
    if ratio > RANDOM_CONTROL_RATIO:
        return head.decode("utf-8", "replace").count("\ufffd") / len(head) > RANDOM_INVALID_UTF8_RATIO
    return False


def text_sample(head: bytes, stream, size: int = SNIFF_BYTES, limit: int = 1 << 20) -> bytes:
    """What to judge a file by when its first bytes are mostly NULs (a log preallocated or
    zero-filled after a crash, the text after it): up to ``size`` bytes that are not NUL from
    the first ``limit`` bytes; ``head`` as it is otherwise. ``stream`` continues after ``head``."""
    if not head or head.count(0) < len(head) * 0.9:
        return head
    sample = head.replace(b"\x00", b"")
    read = len(head)
    while len(sample) < size and read < limit:
        more = read_head(stream, min(SNIFF_BYTES * 8, limit - read))
        if not more:
            break
        read += len(more)
        sample += more.replace(b"\x00", b"")
    return sample[:size]


def utf16_without_bom(sample: bytes) -> str | None:
    """``"utf-16-le"``/``"utf-16-be"`` when ``sample`` is UTF-16 text written without a BOM
    (every other byte NUL, the rest mostly printable ASCII), else None."""
    n = len(sample) // 2 * 2
    if n < 16:
        return None
    even, odd = sample[0:n:2], sample[1:n:2]
    for zeros, chars, enc in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros.count(0) >= 0.95 * len(zeros) and chars.count(0) <= 0.05 * len(chars):
            printable = sum(1 for b in chars if 32 <= b < 127 or b in (9, 10, 13))
            if printable >= 0.9 * len(chars):
                return enc
    return None


class _Utf16ToUtf8(io.RawIOBase):
    """Re-encode a UTF-16 stream (with BOM) to UTF-8 on the fly, so the byte-level scanner and
    the rules see the same text they would in a UTF-8 log."""

    def __init__(self, raw, encoding: str):
        self._raw = raw
        self._dec = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._buf = b""
        # read1: a gzip stream's plain read() that meets the damage of a truncated file raises
        # and drops what it had decompressed in the same call (up to a chunk of lines).
        self._read = getattr(raw, "read1", raw.read)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        # BufferedReader closes only this object: close the file (and gzip stream) under it too.
        if not self.closed:
            close_stream(self._raw)
        super().close()

    def readinto(self, b) -> int:
        while not self._buf:
            data = self._read(len(b))
            if not data:
                self._buf = self._dec.decode(b"", final=True).encode("utf-8")
                if not self._buf:
                    return 0
                break
            self._buf = self._dec.decode(data).encode("utf-8")
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def close_stream(stream) -> None:
    """Close what :func:`open_stream` returned, including the file under a gzip stream."""
    stream.close()
    raw = getattr(stream, "_leakwatch_raw", None)
    if raw is not None:
        raw.close()


def open_stream(path: str, stats: ReadStats):
    """Open ``path`` for reading decoded bytes: gzip is decompressed, UTF-16 re-encoded, a
    UTF-8 BOM dropped. Raises OSError for unreadable files."""
    raw = open(path, "rb")
    head = raw.read(512)
    raw.seek(0)
    if head[:2] == b"\x1f\x8b":
        stats.compression = "gzip"
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
        stream._leakwatch_raw = raw  # keep the file object alive and closable
        try:
            inner_head = stream.peek(512)[:512]
        except _CORRUPT:
            # Truncated or corrupt from the start. A GzipFile that raised may read on as if at a
            # clean end, so start over: the first read raises again, and iter_chunks reports it.
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
            stream._leakwatch_raw = raw
            inner_head = b""
    else:
        stream = raw
        inner_head = head
    if inner_head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        stats.encoding = "utf-16"
        stream.read(2)
        enc = "utf-16-le" if inner_head[:2] == b"\xff\xfe" else "utf-16-be"
        return io.BufferedReader(_Utf16ToUtf8(stream, enc), CHUNK_SIZE)
    enc = utf16_without_bom(inner_head)
    if enc is not None:
        stats.encoding = enc  # no BOM: told by its NULs
        return io.BufferedReader(_Utf16ToUtf8(stream, enc), CHUNK_SIZE)
    if inner_head[:3] == b"\xef\xbb\xbf":
        stats.encoding = "utf-8-sig"
        stream.read(3)
    return stream


def iter_chunks(
    path: str,
    stats: ReadStats,
    *,
    chunk_size: int = CHUNK_SIZE,
    max_record: int = MAX_RECORD,
    start: int = 0,
    stop: int | None = None,
    hasher=None,
    overlap: int = 0,
) -> Iterator[Chunk]:
    """Yield newline-aligned chunks of ``path``, reading into one reused buffer (a fresh buffer
    per chunk costs more in page faults than the scan of its contents).

    The buffer grows past ``chunk_size`` only to hold one record of up to ``max_record``
    bytes; a longer record is handed over in pieces of that size, each piece after the first
    starting with the last ``overlap`` bytes of the one before (so that a value across the cut
    is whole in one of them; see :class:`leakwatch.detect.engine.PieceTrim`). ``start``/``stop``
    (uncompressed files only) must be record boundaries, as returned by
    :func:`split_points`; parallel workers each read one such range. ``hasher`` (anything with
    ``update``) sees every byte read, in order. Problems that do not stop the read (a truncated
    gzip stream after some data, over-long lines) are appended to ``stats.problems``; a file
    that cannot be opened raises OSError.
    """
    stream = open_stream(path, stats)
    compressed = stats.compression is not None
    try:
        if start:
            stream.seek(start)
        remaining = None if stop is None else stop - start
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        filled = 0  # bytes at the front of buf carried over from the previous read
        line = 0
        carry_offset = 0  # bytes of the carried line already handed over in earlier chunks
        piece_overlap = 0  # bytes at the front of buf that the previous piece ended with
        long_line_reported = False
        max_record = max(max_record, chunk_size)
        while True:
            if filled == len(buf) and len(buf) < max_record:
                # One record fills the buffer: grow it rather than cut the record.
                view.release()
                buf.extend(bytes(min(len(buf), max_record - len(buf))))
                view = memoryview(buf)
            elif filled == len(buf):
                # A record longer than max_record: hand it over in pieces.
                if not long_line_reported:
                    stats.problems.append(InputProblem(
                        path, "long_line",
                        f"line longer than {_size(max_record)}; scanned in pieces that overlap by "
                        f"{_size(overlap) if overlap else 'nothing'}, so only a value longer than that "
                        "across two pieces may be missed", line + 1))
                    long_line_reported = True
                stats.bytes_read += filled - piece_overlap
                yield Chunk(buf, line, carry_offset, filled, piece_overlap, True)
                keep = min(overlap, filled // 2)
                if keep:
                    buf[:keep] = buf[filled - keep:filled]
                carry_offset += filled - keep
                filled = piece_overlap = keep
            want = len(buf) - filled
            if remaining is not None:
                want = min(want, remaining)
            got, corrupt = _fill(stream, view[filled : filled + want], compressed) if want > 0 else (0, None)
            if corrupt is not None:
                # Keep the whole records read before the damage; the record it cut is not
                # trustworthy and is dropped.
                cut = buf.rfind(b"\n", filled, filled + got)
                if hasher is not None:
                    hasher.update(view[filled : filled + got])
                if cut != -1:
                    n = count_newlines(view[: cut + 1])
                    stats.bytes_read += cut + 1 - piece_overlap
                    stats.records += n
                    yield Chunk(buf, line, carry_offset, cut + 1, piece_overlap)
                    line += n
                stats.problems.append(InputProblem(
                    path, "truncated",
                    f"compressed data ends early or is corrupt ({corrupt}); kept every line before this one",
                    line + 1))
                break
            if not got:
                # Also when only the overlap is left (the line ended right at a cut): the piece
                # before left the matches in those bytes to this one.
                if filled:
                    stats.bytes_read += filled - piece_overlap
                    stats.records += 1
                    yield Chunk(buf, line, carry_offset, filled, piece_overlap)
                break
            if hasher is not None:
                hasher.update(view[filled : filled + got])
            if remaining is not None:
                remaining -= got
            new_end = filled + got
            cut = buf.rfind(b"\n", filled, new_end)
            if cut == -1:
                filled = new_end
                continue
            n = count_newlines(view[: cut + 1])
            stats.bytes_read += cut + 1 - piece_overlap
            stats.records += n
            yield Chunk(buf, line, carry_offset, cut + 1, piece_overlap)
            line += n
            carry_offset = piece_overlap = 0
            rest = new_end - cut - 1
            if rest:
                buf[:rest] = buf[cut + 1 : new_end]
            filled = rest
            if len(buf) > chunk_size and rest < chunk_size:
                # The long record is done: shrink back so memory follows the common case.
                view.release()
                del buf[max(chunk_size, rest):]
                view = memoryview(buf)
    finally:
        close_stream(stream)


_CORRUPT = (EOFError, gzip.BadGzipFile, zlib.error)


def _fill(stream, view: memoryview, compressed: bool) -> tuple[int, Exception | None]:
    """Read into ``view``; returns (bytes read, the corruption error that stopped the read).

    A plain file is read with one ``readinto``. A compressed stream is read with ``readinto1``
    until ``view`` is full: a plain ``readinto`` that hits a truncated or corrupt stream raises
    and loses everything it had decompressed into ``view`` in the same call."""
    if not compressed:
        return stream.readinto(view), None
    got = 0
    try:
        while got < len(view):
            n = stream.readinto1(view[got:])
            if not n:
                break
            got += n
    except _CORRUPT as e:
        return got, e
    return got, None


def read_head(stream, size: int) -> bytes:
    """Up to ``size`` bytes from the start of an :func:`open_stream` stream. A compressed stream
    that ends early or is corrupt gives what came before the damage (:func:`iter_chunks`
    reports the problem when the file is read)."""
    buf = bytearray(size)
    got, _ = _fill(stream, memoryview(buf), True)
    return bytes(buf[:got])


def split_points(path: str, size: int, parts: int, *, min_part: int = 16 << 20) -> list[tuple[int, int]]:
    """Cut an uncompressed file into up to ``parts`` byte ranges that start and end on record
    boundaries, so that workers can scan one file in parallel."""
    parts = max(1, min(parts, size // min_part or 1))
    if parts == 1:
        return [(0, size)]
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            target = size * k // parts
            if target <= cuts[-1]:
                continue
            f.seek(target - 1)
            cut = target - 1
            while True:  # find the newline that closes the record holding `target - 1`
                block = f.read(1 << 20)
                nl = block.find(b"\n")
                if nl != -1 or not block:
                    cut += (nl + 1) if nl != -1 else len(block)
                    break
                cut += len(block)
            if cut >= size:
                break
            if cut > cuts[-1]:
                cuts.append(cut)
    cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:]))
