"""``export`` and ``flows`` under the conditions a review found them failing: stdout redirected
in append mode, a database file named like a report, Ctrl-C and SIGTERM mid-export, a full disk
or a Latin-1 locale behind stdout, a database copied without its key, a host that reads as a
spreadsheet formula, a file name that reads as a Markdown link. Real CLI in subprocesses, real
DuckDB files."""
from __future__ import annotations

import os
import stat
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leakwatch.flows import FLOW_FIELDS, _md, render_csv
from leakwatch.store import Store

EMAIL = "olivia.martin@example.com"
KEY = "sk-proj-" + "Qx7Lm2Rt9Vb4Nc8Kd1Zp5Wy3Hs6Jf0Ga" * 2


def lw(*args, **kw):
    return subprocess.run([sys.executable, "-m", "leakwatch", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    log = d / "app.jsonl"
    log.write_text(f'{{"msg":"checkout","customer":"{EMAIL}"}}\n{{"msg":"llm","api_key":"{KEY}"}}\n')
    db = d / "small.duckdb"
    r = lw("scan", log, "--db", db)
    assert r.returncode == 1, r.stderr
    return db


@pytest.fixture(scope="module")
def big_db(tmp_path_factory):
    """A leakwatch database with 3,000,000 findings (inserted by SQL: a CSV export of it takes
    seconds, long enough to be interrupted)."""
    d = tmp_path_factory.mktemp("big")
    db = d / "big.duckdb"
    with Store.open(db) as s:
        s.con.execute(
            "INSERT INTO findings (scan_id, source_id, source_path, line, start_byte, end_byte, rule_id, entity, "
            "severity, severity_rank, field, masked, value_hash) "
            "SELECT 1, 1, '/logs/app.log', i, 0, 10, 'email', 'EMAIL_ADDRESS', 'medium', 2, 'customer', "
            "'o***@example.com', md5(i::VARCHAR) FROM range(3000000) t(i)")
    return db


def test_out_dev_stdout_appends_to_the_file_stdout_was_redirected_to(small_db, tmp_path):
    target = tmp_path / "collected.jsonl"
    target.write_text("EARLIER LINE\n")
    inode = target.stat().st_ino
    with open(target, "a") as out:
        r = subprocess.run([sys.executable, "-m", "leakwatch", "export", "--db", str(small_db), "--format", "jsonl",
                            "--out", "/dev/stdout"], stdout=out, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = target.read_text().splitlines()
    assert lines[0] == "EARLIER LINE" and len(lines) == 3
    assert target.stat().st_ino == inode  # written into, not replaced


def test_flows_refuses_to_write_over_the_database(small_db, tmp_path):
    d = tmp_path / "reports"
    d.mkdir()
    db = d / "data-flows.json"
    shutil.copy(small_db, db)
    shutil.copy(f"{small_db}.key", f"{db}.key")
    before = db.read_bytes()
    r = lw("flows", "--db", db, "--out-dir", d, "--format", "json")
    assert r.returncode == 2 and "the database's own file" in r.stderr
    assert db.read_bytes() == before
    # The same through a symbolic link that the report would replace.
    (d / "data-flows.md").symlink_to(db)
    r = lw("flows", "--db", db, "--out-dir", d, "--format", "md")
    assert r.returncode == 2 and "the database's own file" in r.stderr
    assert db.read_bytes() == before


def test_flows_with_a_missing_database_creates_no_folder(tmp_path):
    r = lw("flows", "--db", tmp_path / "nope.duckdb", "--out-dir", tmp_path / "new")
    assert r.returncode == 2 and not (tmp_path / "new").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_mid_export_exits_130_and_leaves_no_file(big_db, tmp_path, sig):
    out = tmp_path / "x.csv"
    p = subprocess.Popen([sys.executable, "-m", "leakwatch", "export", "--db", str(big_db), "--format", "csv",
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        while not list(tmp_path.glob(".x.csv.*.tmp")) and time.monotonic() < end and p.poll() is None:
            time.sleep(0.02)
        assert p.poll() is None, "the export finished before it could be interrupted"
        time.sleep(0.3)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_a_reader_that_goes_away_is_not_told_findings_were_stored(big_db):
    p = subprocess.Popen([sys.executable, "-m", "leakwatch", "export", "--db", str(big_db), "--format", "jsonl"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith("{")
    p.stdout.close()  # like `| head -1`
    err = p.stderr.read()
    p.wait(timeout=60)
    assert p.returncode == 130
    assert "broken pipe" in err and "stored" not in err


@pytest.mark.skipif(not (os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)),
                    reason="needs the /dev/full device (Linux; some sandboxes put a plain file there)")
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "ocsf"])
def test_a_full_disk_behind_stdout_is_a_clear_error(small_db, fmt):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "leakwatch", "export", "--db", str(small_db), "--format", fmt],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "cannot write to standard output: No space left on device" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "ocsf"])
def test_stdout_is_utf8_whatever_the_locale(small_db, fmt):
    r = subprocess.run([sys.executable, "-m", "leakwatch", "export", "--db", str(small_db), "--format", fmt],
                       capture_output=True, timeout=60, env={**os.environ, "PYTHONIOENCODING": "latin-1"})
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode("utf-8")  # a masked key is shortened with "…"
    assert "\u2026" in text and EMAIL not in text and KEY not in text


def test_a_database_copied_without_its_key_can_still_be_exported_and_mapped(small_db, tmp_path):
    db = tmp_path / "copy.duckdb"
    shutil.copy(small_db, db)
    r = lw("export", "--db", db, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
    r = lw("flows", "--db", db, "--out-dir", tmp_path / "map")
    assert r.returncode == 0, r.stderr
    assert not Path(f"{db}.key").exists()  # nothing created one either


def test_flows_csv_neutralises_cells_a_spreadsheet_would_evaluate():
    row = {k: None for k in FLOW_FIELDS}
    row.update(dest_host="-evil.openai.azure.com", system="=HYPERLINK(\"x\")", categories=[], source_files=[],
               findings=1, distinct_values=1, data_subjects=1)
    text = render_csv([row])
    assert "'-evil.openai.azure.com" in text and "'=HYPERLINK" in text
    assert ",-evil" not in text and ",=HYPERLINK" not in text


def test_markdown_cells_make_no_links_or_emphasis():
    cell = _md("[Verify your account](https:evil.example) *now* `x`.jsonl")
    assert "\\[Verify your account\\]" in cell and "\\*now\\*" in cell and "\\`x\\`" in cell


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm (Linux)")
def test_a_file_under_dev_is_still_replaced_whole_or_not_at_all(big_db):
    # Only stream names (/dev/stdout, /dev/fd/N, /proc/self/fd/N) are written in place; a file
    # of its own under /dev (a tmpfs) keeps the atomic replace: a stopped export leaves it alone.
    target = Path(f"/dev/shm/lw-export-test-{os.getpid()}.csv")
    target.write_text("GOOD\n")
    p = subprocess.Popen([sys.executable, "-m", "leakwatch", "export", "--db", str(big_db), "--format", "csv",
                          "--out", str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        tmp_glob = f".{target.name}.*.tmp"
        while not list(target.parent.glob(tmp_glob)) and time.monotonic() < end and p.poll() is None:
            time.sleep(0.02)
        assert p.poll() is None, "the export finished before it could be stopped"
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)
        assert p.returncode == 130
        assert target.read_text() == "GOOD\n" and not list(target.parent.glob(tmp_glob))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        target.unlink(missing_ok=True)


def test_parquet_to_dev_stdout_goes_to_the_redirected_file(small_db, tmp_path):
    import duckdb

    out = tmp_path / "f.parquet"
    with open(out, "wb") as f:
        r = subprocess.run([sys.executable, "-m", "leakwatch", "export", "--db", str(small_db), "--format", "parquet",
                            "--out", "/dev/stdout"], stdout=f, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert duckdb.sql(f"SELECT count(*) FROM '{out}'").fetchall() == [(2,)]
