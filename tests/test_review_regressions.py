"""Regression tests for bugs found in review: each failed before its fix."""
from __future__ import annotations

import os
import subprocess
import sys
import time


from leakwatch.pipeline import MIN_RANGE_BYTES, scan_paths
from helpers import read_rows as _q


def test_csv_name_column_keeps_the_row_at_every_range_boundary(tmp_path):
    """With 2 workers a CSV is split into ranges; only the file's first line is its header."""
    p = tmp_path / "contacts.csv"
    with open(p, "w") as f:
        f.write('"Id","FirstName","Note"\n')
        i = 0
        while f.tell() < 3 * MIN_RANGE_BYTES:
            f.write(f'"{i}","Name{i % 997}","{"x" * 60}"\n')
            i += 1
    one = scan_paths([str(p)], tmp_path / "a.duckdb", workers=1)
    two = scan_paths([str(p)], tmp_path / "b.duckdb", workers=2)
    assert one.total_findings == two.total_findings == i


def test_long_line_is_reported_at_its_line_in_the_file_whatever_the_workers(tmp_path):
    p = tmp_path / "long.log"
    with open(p, "wb") as f:
        line = b"x" * 99 + b"\n"
        n = 3 * MIN_RANGE_BYTES // len(line)
        f.write(line * n)
        f.write(b"y" * (9 << 20) + b"\n")
        f.write(line * 10)
    for w in (1, 2):
        s = scan_paths([str(p)], tmp_path / f"w{w}.duckdb", workers=w)
        assert [(x.kind, x.line) for x in s.problems] == [("long_line", n + 1)], w


def test_unchanged_file_reports_only_what_is_in_it_now(tmp_path):
    """A file rewritten between scans: a third scan that skips it as unchanged must not count the
    values of its first version (they are in the database, but no longer in the file)."""
    p = tmp_path / "app.log"
    db = tmp_path / "lw.duckdb"
    p.write_text("mail=alice@example.com\n")
    assert scan_paths([str(p)], db).total_findings == 1
    p.write_text("mail=bob@example.org\n")
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert scan_paths([str(p)], db).total_findings == 1
    third = scan_paths([str(p)], db)
    assert third.files[0].status == "unchanged"
    assert third.total_findings == 1 and third.findings_at_or_above == 1


def test_ctrl_c_with_workers_never_stores_wrong_line_numbers(tmp_path):
    """Each leak encodes its line number; after an interrupted 2-worker scan, every stored
    finding must sit on the line it names."""
    p = tmp_path / "big.log"
    with open(p, "w") as f:
        ln = 0
        while f.tell() < 300 << 20:
            ln += 1
            f.write(f'{{"n": {ln}, "mail": "user{ln}@example.com"}}\n' if ln % 7 == 0 else f'{{"n": {ln}, "ok": true}}\n')
    db = tmp_path / "lw.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "leakwatch", "scan", str(p), "--db", str(db), "-q",
                             "--workers", "2", "--store-raw"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    proc.send_signal(2)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rows = _q(db, "SELECT line, raw_value FROM findings WHERE rule_id = 'email'")
    assert rows, "something was stored before the interrupt"
    assert all(raw == f"user{line}@example.com" for line, raw in rows)


def test_file_names_are_not_read_as_markup(tmp_path, cli):
    d = tmp_path / "mk"
    d.mkdir()
    (d / "a[").mkdir()
    p = d / "a[" / "b].log"
    p.write_text("mail=jane@example.com\n")
    r = cli("scan", str(p), "--db", str(tmp_path / "lw.duckdb"))
    # Read as markup, "[/" + "b]" closes a tag that was never opened: MarkupError, exit 70.
    assert r.rc == 1, r.err
    assert r.err == ""
    assert "scan 1:" in r.out and "Files" in r.out


def test_jsonl_to_a_pipe_does_not_chmod_it(tmp_path, cli):
    """--jsonl into a FIFO (or a device) writes the findings and leaves the node's mode alone.

    A FIFO made here, not /dev/null: on some CI sandboxes /dev/null is a plain file, and a
    test must neither depend on nor change the host's /dev."""
    import json
    import stat

    from helpers import FifoReader

    fifo = tmp_path / "findings.pipe"
    reader = FifoReader(fifo)
    before = os.stat(fifo).st_mode
    assert stat.S_ISFIFO(before)
    p = tmp_path / "app.log"
    p.write_text("mail=jane@example.com\n")
    r = cli("scan", str(p), "--db", str(tmp_path / "lw.duckdb"), "--jsonl", str(fifo), "-q")
    got = [reader.join()]
    assert r.rc == 1, r.err
    assert os.stat(fifo).st_mode == before
    lines = [json.loads(line) for line in got[0].splitlines()]
    assert [x["rule"] for x in lines] == ["email"]
    assert "jane@example.com" not in got[0]


def test_closed_stdout_under_jsonl_dash_stops_quietly(tmp_path):
    """`leakwatch scan … --jsonl - | head -c 100`: no traceback, exit 130, scan not left running."""
    p = tmp_path / "app.log"
    p.write_text("".join(f"mail=user{i}@example.com\n" for i in range(200_000)))
    db = tmp_path / "lw.duckdb"
    cmd = f"{sys.executable} -m leakwatch scan {p} --db {db} --jsonl - -q | head -c 100 >/dev/null; echo ${{PIPESTATUS[0]}}"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "130", r.stderr
    assert "Traceback" not in r.stderr
    assert _q(db, "SELECT status FROM scans") != [("running",)]
