"""`leakwatch watch` and `leakwatch drill`: defects found by a review with files deleted and
written again, old rotated logs and odd options (each test failed before its fix)."""
from __future__ import annotations

import gzip
import os
import time

from test_watch import Clock, emails, open_watcher, pii


def test_watch_once_reads_an_old_gzip_and_an_idle_last_line_without_newline(tmp_path, cli):
    """One cycle counted idleness from when it opened the files: a day-old .gz and an hour-idle
    last line without a newline were never read by 'watch --once' (cron), exit 0."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with gzip.open(logs / "app.log.1.gz", "wt") as f:
        f.write("x alice.smith@example.com\ny card 4111 1111 1111 1111\n")
    (logs / "app.log").write_text("a bob@example.com\nb card 4111 1111 1111 1111")
    old = time.time() - 3600
    os.utime(logs / "app.log.1.gz", (old - 86400, old - 86400))
    os.utime(logs / "app.log", (old, old))
    db = tmp_path / "w.duckdb"
    r = cli("watch", logs, "--db", db, "--once", "--no-notify")
    assert r.rc == 0, r.err
    s = cli("scan", logs, "--db", tmp_path / "s.duckdb", "-q")
    assert s.rc == 1
    import duckdb

    def count(path):
        con = duckdb.connect(str(path), read_only=True)
        try:
            return con.execute("SELECT count(*) FROM findings").fetchone()[0]
        finally:
            con.close()

    assert count(db) == count(tmp_path / "s.duckdb") == 4


def test_a_file_deleted_and_written_again_with_the_same_lines_is_read_again(tmp_path):
    """The new app.log was taken for a copy of the deleted one (copytruncate) and skipped."""
    logs = tmp_path / "logs"
    logs.mkdir()
    clock = Clock()
    text = pii(1) + pii(2)
    (logs / "app.log").write_text(text)
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        assert len(emails(w)) == 2
        (logs / "app.log").unlink()
        (logs / "app.log").write_text(text)
        clock.t += 1
        r = w.cycle()
        clock.t += 1
        r2 = w.cycle()
        assert len(emails(w)) == 4, (r.notes, r2.notes)
        assert not any("a copy" in n for n in r.notes + r2.notes)
    finally:
        w.close()


def test_intervals_that_overflow_the_wait_and_a_missing_scenario_folder_are_usage_errors(tmp_path, cli):
    for value in ("inf", "1e300", "nan", "0"):
        r = cli("watch", tmp_path, "--db", tmp_path / "w.duckdb", "--once", "--interval", value)
        assert r.rc == 2 and "--interval must be more than 0 and at most 3600" in r.err, (value, r.err)
    r = cli("drill", "list", "--dir", tmp_path / "nonexist")
    assert r.rc == 2 and "no such folder" in r.err


def test_a_scenario_is_found_by_the_id_drill_list_shows(tmp_path, cli):
    from leakwatch.drills.scenarios import default_drills_dir

    src = (default_drills_dir() / "cdn-foreign-edge.yaml").read_text()
    (tmp_path / "cdn-copy.yaml").write_text(src.replace("id: cdn-foreign-edge", "id: eu-edges", 1))
    assert "eu-edges" in cli("drill", "list", "--dir", tmp_path).out
    r = cli("drill", "generate", "eu-edges", "--dir", tmp_path, "--out", tmp_path / "g")
    assert r.rc == 0, r.err
    assert (tmp_path / "g" / "manifest.json").is_file()
