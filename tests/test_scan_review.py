"""`leakwatch scan` on hostile and unusual input: defects found by a review with hand-made
files (each test failed before its fix)."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest


def _findings(db) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute("SELECT source_path, line, entity, value_hash FROM findings ORDER BY source_path, line")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        con.close()


def test_a_truncated_gzip_of_a_utf16_log_keeps_every_line_before_the_damage(tmp_path, cli):
    """The UTF-16 re-encoder read the gzip stream with read(), which raises at the damage and
    drops what it had decompressed in that call: 0 of 15,000 findings were kept."""
    text = "".join(f"line {i} user{i}@example.com\n" for i in range(30000))
    for name, payload in (("u16.log.gz", b"\xff\xfe" + text.encode("utf-16-le")), ("u8.log.gz", text.encode())):
        data = gzip.compress(payload)
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    kept = {}
    for name in ("u16.log.gz", "u8.log.gz"):
        db = tmp_path / f"{name}.duckdb"
        r = cli("scan", tmp_path / name, "--db", db, "-q")
        assert r.rc == 2 and "kept every line before this one" in r.err, r.err
        rows = _findings(db)
        kept[name] = len(rows)
        # Every line before the one the message names, in order, once.
        first_bad = int(r.err.split(f"{name}:", 1)[1].split(":", 1)[0])
        assert [f["line"] for f in rows] == list(range(1, first_bad))
    # UTF-16 takes twice the bytes: half its compressed stream holds about half the UTF-8 lines.
    assert kept["u16.log.gz"] > 10000 and kept["u8.log.gz"] > 10000, kept


@pytest.mark.parametrize("suffix", ["", ".wal", ".key"])
def test_jsonl_naming_the_database_files_about_to_be_created_is_refused(tmp_path, cli, suffix):
    """A new database's path (or its key's) as --jsonl was created empty first: the database
    was then 'damaged' and the key 'not a leakwatch key' for every later scan."""
    log = tmp_path / "p.log"
    log.write_text("jane.doe@example.com\n")
    db = tmp_path / "n1.duckdb"
    r = cli("scan", log, "--db", db, "--jsonl", f"{db}{suffix}", "-q")
    assert r.rc == 2 and "writing it would destroy it" in r.err, r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.log"]
    assert cli("scan", log, "--db", db, "-q").rc == 1


def test_a_linked_folder_inside_a_scanned_folder_is_scanned_once(tmp_path, cli):
    """os.walk did not follow linked folders: evidence linked in from another disk read as 'No
    findings' (exit 0). A link back up the tree is walked once, not forever."""
    ext = tmp_path / "ext"
    (ext / "sub").mkdir(parents=True)
    (ext / "e.log").write_text("jane.doe@example.com\n")
    (ext / "sub" / "up").symlink_to("..")  # a loop
    case = tmp_path / "case"
    case.mkdir()
    (case / "clean.log").write_text("nothing here\n")
    (case / "evidence").symlink_to(ext)
    (case / "again").symlink_to(ext)
    db = tmp_path / "lw.duckdb"
    r = cli("scan", case, "--db", db, "-q")
    assert r.rc == 1, r.err
    rows = _findings(db)
    assert len(rows) == 1 and rows[0]["entity"] == "EMAIL_ADDRESS"
    assert rows[0]["source_path"].endswith(os.path.join("again", "e.log"))  # the first name in sorted order


def test_control_characters_in_file_names_reach_the_terminal_escaped(tmp_path, cli):
    """A hostile file name could clear the screen or retitle the terminal of whoever scans it."""
    folder = tmp_path / "ev"
    folder.mkdir()
    (folder / "x\x1b[2J\x1b[31m.log").write_text("jane.doe@example.com\n")
    (folder / "y\x1b]0;owned\x07\u202e.bin").write_bytes(bytes(range(256)) * 12)
    r = cli("scan", folder, "--db", tmp_path / "lw.duckdb")
    assert r.rc == 2, r.err
    for text in (r.out, r.err):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[2J\\x1b[31m.log" in r.out
    assert "y\\x1b]0;owned\\x07\\u202e.bin" in r.err


def test_jsonl_of_a_rerun_says_why_unchanged_files_write_nothing(tmp_path, cli):
    log = tmp_path / "jr.log"
    log.write_text("jane.doe@example.com\n")
    db = tmp_path / "lw.duckdb"
    out = tmp_path / "a.jsonl"
    assert cli("scan", log, "--db", db, "--jsonl", out, "-q").rc == 1
    assert len(out.read_text().splitlines()) == 1
    r = cli("scan", log, "--db", db, "--jsonl", out, "-q")
    assert r.rc == 1 and out.read_text() == ""
    assert "1 unchanged file(s) with 1 finding(s)" in r.err and "--rescan" in r.err
    r = cli("scan", log, "--db", db, "--jsonl", out, "-q", "--rescan")
    assert r.rc == 1 and len(out.read_text().splitlines()) == 1 and "unchanged" not in r.err


def test_a_scan_with_another_format_is_not_skipped_as_unchanged(tmp_path, cli):
    log = tmp_path / "fm.jsonl"
    log.write_text('{"user":{"email":"jane.doe@example.com"}}\n')
    db = tmp_path / "lw.duckdb"
    assert cli("scan", log, "--db", db, "--format", "text", "-q").rc == 1
    out = tmp_path / "b.jsonl"
    r = cli("scan", log, "--db", db, "--format", "jsonl", "--jsonl", out)
    assert r.rc == 1 and "unchanged" not in r.out, r.out
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["format"] for x in rows] == ["jsonl"] and rows[0]["field_path"] == "user.email"


def test_distinct_values_never_exceed_the_runs_findings(tmp_path, cli):
    log = tmp_path / "dv.log"
    log.write_text("".join(f"u{i}@example.com\n" for i in range(50)))
    db = tmp_path / "lw.duckdb"
    assert cli("scan", log, "--db", db).rc == 1
    log.write_text("only x1@example.com\n")
    r = cli("scan", log, "--db", db)
    row = next(line for line in r.out.splitlines() if "EMAIL_ADDRESS" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[-2:] == ["1", "1"], row


def test_sigterm_stops_a_scan_like_ctrl_c(tmp_path):
    """SIGTERM (timeout, systemd, a cancelled CI job) killed the scan outright: exit 143, no
    summary, the scan and file rows left 'running'."""
    log = tmp_path / "t.log"
    with open(log, "w") as f:
        for k in range(40):
            f.write("".join(f"{i} u{i}@example.com\n" for i in range(k * 100000, (k + 1) * 100000)))
    db = tmp_path / "lw.duckdb"
    p = subprocess.Popen([sys.executable, "-m", "leakwatch", "scan", str(log), "--db", str(db), "-q", "--no-progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not os.path.exists(f"{db}.wal") and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT status FROM scans").fetchall() == [("interrupted",)]
        assert con.execute("SELECT status FROM sources").fetchall() == [("error",)]
    finally:
        con.close()
