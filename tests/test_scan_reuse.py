"""One worker scans a big file in ranges while the owner stores; scanners are reused between scans."""
from __future__ import annotations

import xxhash

from leakwatch.detect.engine import SCANNERS, ScannerPool
from leakwatch.pipeline import MIN_RANGE_BYTES, scan_paths
from helpers import read_rows as _q


def _write(p, size):
    n = 0
    with open(p, "w") as f:
        while f.tell() < size:
            f.write(f"2024-05-01T10:00:00Z order={n} contact=user{n}@example.com status=ok\n" if n % 50 == 0
                    else f"2024-05-01T10:00:00Z order={n} status=ok latency_ms={n % 997}\n")
            n += 1
    return n


def test_one_worker_in_ranges_numbers_lines_and_hashes_the_whole_file(tmp_path):
    p = tmp_path / "big.log"
    n = _write(p, 3 * MIN_RANGE_BYTES)
    db = tmp_path / "one.duckdb"
    s = scan_paths([str(p)], db, workers=1, store_raw=True)
    assert s.records == n
    assert s.total_findings == len(range(0, n, 50))
    rows = _q(db, "SELECT line, raw_value FROM findings WHERE rule_id = 'email' ORDER BY line")
    # Line k (1-based) holds order k-1; every 50th order has an email.
    assert rows == [(k + 1, f"user{k}@example.com") for k in range(0, n, 50)]
    # The content hash is the hash of the whole file, though the worker read it in several ranges.
    want = xxhash.xxh3_128(p.read_bytes()).hexdigest()
    assert _q(db, "SELECT content_hash, status FROM sources") == [(want, "ok")]


def test_scanner_pool_hands_back_the_same_warm_scanner_for_the_same_rules():
    pool = ScannerPool(max_idle=2)
    a = pool.take(["a+b", "[0-9]{3}"])
    pool.give_back(a)
    assert pool.take(["a+b", "[0-9]{3}"]) is a
    # Taken scanners are never handed out twice at once.
    b = pool.take(["a+b", "[0-9]{3}"])
    assert b is not a
    # Other rules: a fresh scanner, and the old rule set's idle scanners are dropped.
    pool.give_back(a)
    c = pool.take(["x+"])
    assert c is not a and c.patterns == [b"x+"]
    pool.give_back(c)
    assert pool.take(["a+b", "[0-9]{3}"]) is not a
    # At most max_idle are kept.
    many = [pool.take(["y"]) for _ in range(4)]
    for s in many:
        pool.give_back(s)
    assert sum(pool.take(["y"]) in many for _ in range(4)) == 2


def test_scan_paths_returns_its_scanners_for_the_next_scan(tmp_path):
    p = tmp_path / "a.log"
    p.write_text("mail alice@example.com\n")
    SCANNERS.clear()
    scan_paths([str(p)], tmp_path / "1.duckdb", workers=1)
    warm = list(SCANNERS._idle)
    assert len(warm) == 1
    scan_paths([str(p)], tmp_path / "2.duckdb", workers=1)
    assert SCANNERS._idle == warm  # the same object went out and came back
