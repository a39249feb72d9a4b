"""Ctrl-C keeps what was stored, and a terminal gets a progress bar."""
from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import duckdb
import pytest

LINE = b'{"ts": "2024-03-11T16:00:00Z", "route": "/api/orders", "status": 200, "lb": "10.1.2.3"}\n'
LEAK = b'{"ts": "2024-03-11T16:00:01Z", "customer": {"email": "jane.doe@example.com"}}\n'


def _big_log(path, mb: int) -> None:
    block = (LINE * 49 + LEAK) * 200
    with open(path, "wb") as f:
        for _ in range(mb * (1 << 20) // len(block) + 1):
            f.write(block)


def test_ctrl_c_exits_130_and_keeps_stored_findings(tmp_path):
    """SIGINT in the middle of a multi-file scan: exit 130, the scan is marked interrupted, and
    the findings of the files finished before it stay in the database."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(40):
        _big_log(logs / f"part-{i:02d}.log", 6)
    db = tmp_path / "lw.duckdb"
    jsonl = tmp_path / "findings.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "leakwatch", "scan", str(logs), "--db", str(db), "-q",
                          "--jsonl", str(jsonl)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # JSON lines are written after each file's findings are stored: once the second file shows
    # up there, the first is finished. Interrupt then.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        if jsonl.exists() and b"part-01.log" in jsonl.read_bytes():
            break
        time.sleep(0.05)
    assert p.poll() is None, "the scan finished before it could be interrupted"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    con = duckdb.connect(str(db), read_only=True)
    status = con.execute("SELECT status FROM scans").fetchall()
    done = con.execute("SELECT count(*) FROM sources WHERE status = 'ok'").fetchone()[0]
    stored = con.execute("SELECT count(*) FROM findings").fetchone()[0]
    con.close()
    assert status == [("interrupted",)]
    assert 0 < done < 40
    assert f"leakwatch: interrupted: {done} file(s) finished" in err.decode()  # said, not only as 130
    # Every finished file holds all of its leaks (one in 50 lines).
    assert stored >= done * (6 * (1 << 20) // (len(LINE) * 49 + len(LEAK)))


def test_progress_bar_on_a_terminal(tmp_path):
    """On a TTY, stderr shows a progress bar while scanning; without one, nothing but the summary."""
    log = tmp_path / "app.log"
    _big_log(log, 30)
    db = tmp_path / "lw.duckdb"
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout and stderr are the terminal
        os.execv(sys.executable, [sys.executable, "-m", "leakwatch", "scan", str(log), "--db", str(db)])
    out = b""
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    text = out.decode("utf-8", "replace")
    assert "scanning" in text
    assert "Findings by entity" in text


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_inside_one_big_file_stops_promptly_and_marks_it_incomplete(tmp_path, workers):
    """One large file: Ctrl-C stops within a chunk or so, stores what was found, and the file is
    not recorded as completely scanned (a later scan will read it again)."""
    log = tmp_path / "big.log"
    _big_log(log, 400)
    db = tmp_path / "lw.duckdb"
    jsonl = tmp_path / "f.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "leakwatch", "scan", str(log), "--db", str(db), "-q",
                          "--jsonl", str(jsonl), "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)  # interpreter start, rule compilation, and some of the 400 MB
    assert p.poll() is None
    t = time.monotonic()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert time.monotonic() - t < 3.0  # the whole file would take several seconds more
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM scans").fetchall() == [("interrupted",)]
    assert con.execute("SELECT status FROM sources").fetchall() == [("error",)]
    con.close()


def test_jsonl_reader_going_away_stops_the_scan_and_keeps_the_findings(tmp_path):
    """`leakwatch scan … --jsonl - | head -1`: exit 130 with a message on stderr; the file is
    closed as an error (not left "running"), the scan as interrupted, the findings stored."""
    log = tmp_path / "many.log"
    log.write_text("".join(f"user mail=u{i}@example.com\n" for i in range(200_000)))
    db = tmp_path / "lw.duckdb"
    p = subprocess.Popen([sys.executable, "-m", "leakwatch", "scan", str(log), "--db", str(db), "--jsonl", "-"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()  # like head -1
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 130, err
    assert "broken pipe" in err
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM scans").fetchall() == [("interrupted",)]
    assert con.execute("SELECT status FROM sources").fetchall() == [("error",)]
    assert con.execute("SELECT count(*) FROM findings").fetchone()[0] > 0
    con.close()
