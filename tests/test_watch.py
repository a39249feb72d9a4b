"""``leakwatch watch`` follows real files into a real database: growing files (a line split
across writes), rotation by rename, copytruncate, truncation, deletion, new files in
subdirectories, gzip, bad input, restarts from stored offsets, and the at-least-once re-read of
a tail that the store's duplicate key absorbs. Time-dependent steps (an idle partial line, a
gzip file settling, a deleted file draining) use an injected clock."""
from __future__ import annotations

import gzip
import os
import shutil

import pytest

from leakwatch.sources.files import MAX_RECORD
from leakwatch.watch import HEAD_BYTES, Watcher, head_hash


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def pii(i: int) -> str:
    return f"2024-05-01T10:00:{i % 60:02d}Z INFO order {i} shipped to customer{i}.doe@example.com ok\n"


def plain(i: int) -> str:
    return f"2024-05-01T10:00:{i % 60:02d}Z INFO heartbeat {i} latency_ms={i % 97}\n"


def append(path, text: str | bytes) -> None:
    mode = "ab" if isinstance(text, bytes) else "a"
    with open(path, mode) as f:
        f.write(text)


def emails(w: Watcher, path=None) -> list[tuple]:
    """(path, line, start_byte) of every stored e-mail finding, in order."""
    sql = "SELECT source_path, line, start_byte FROM findings WHERE rule_id = 'email'"
    params = []
    if path is not None:
        sql += " AND source_path = ?"
        params.append(str(path))
    return w.store.con.execute(sql + " ORDER BY source_path, line, start_byte", params).fetchall()


def rows(w: Watcher) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in w.store.con.execute(
        'SELECT path, "offset", line, inode, head_hash FROM watch_files').fetchall()}


def open_watcher(tmp_path, paths=None, clock=None, **kw) -> Watcher:
    return Watcher([str(p) for p in (paths or [tmp_path / "logs"])], tmp_path / "lw.duckdb", notify=False,
                   clock=clock or Clock(), **kw).open()


@pytest.fixture
def logs(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    return d


START = len("2024-05-01T10:00:00Z INFO order 0 shipped to ")  # where the e-mail of pii(i) starts, for i < 10


def test_growing_file_in_pieces_each_finding_once_with_its_line_and_restart_resumes(tmp_path, logs):
    log = logs / "app.log"
    append(log, pii(1) + plain(2) + pii(3))
    w = open_watcher(tmp_path)
    try:
        r = w.cycle()
        assert r.findings == 2 and r.files == {str(log): 2}
        # A line split across two writes: nothing of it is read until its newline is there.
        line4 = pii(4)
        append(log, line4[:40])
        assert w.cycle().findings == 0
        append(log, line4[40:] + plain(5))
        assert w.cycle().findings == 1
        append(log, pii(6))
        assert w.cycle().findings == 1
        assert w.cycle().findings == 0  # nothing new: nothing stored
        assert emails(w) == [(str(log), n, START) for n in (1, 3, 4, 6)]
        size = log.stat().st_size
        assert rows(w)[str(log)][:3] == (size, 6, log.stat().st_ino)
    finally:
        w.close()

    # A new watch resumes at the stored offset: nothing is read twice, the next lines are numbered on.
    w = open_watcher(tmp_path)
    try:
        r = w.cycle()
        assert r.bytes == 0 and r.findings == 0
        append(log, plain(7) + pii(8))
        r = w.cycle()
        assert r.findings == 1 and r.bytes == len(plain(7) + pii(8))
        assert emails(w) == [(str(log), n, START) for n in (1, 3, 4, 6, 8)]
        assert w.store.con.execute("SELECT count(*) FROM findings").fetchone()[0] == 5
        assert rows(w)[str(log)][:2] == (log.stat().st_size, 8)
        # Two sessions, each recorded as a scan; the second read only the two new lines.
        scans = w.store.con.execute("SELECT argv, n_bytes FROM scans ORDER BY scan_id").fetchall()
        assert len(scans) == 2 and "watch" in scans[0][0]
    finally:
        w.close()


def test_an_idle_partial_line_is_scanned_and_its_rest_continues_the_same_line(tmp_path, logs):
    clock = Clock()
    log = logs / "app.log"
    head = "2024-05-01T10:00:00Z INFO first=jane.roe@example.com "
    append(log, plain(1) + head)
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        assert emails(w) == []  # the last line waits for its newline …
        clock.t += 1
        assert w.cycle().findings == 0
        clock.t += 3  # … until the file has been idle for 3 s
        assert w.cycle().findings == 1
        assert emails(w) == [(str(log), 2, head.index("jane"))]
        # The writer finishes the line later: the rest is the same line 2, offsets within the line.
        rest = "second=john.poe@example.com\n"
        append(log, rest + pii(3))
        assert w.cycle().findings == 2
        assert emails(w) == [(str(log), 2, head.index("jane")), (str(log), 2, len(head) + rest.index("john")),
                             (str(log), 3, START)]
    finally:
        w.close()
    # After a restart the part of line 2 already read is found again from the file itself.
    append(log, "x" * 10)  # a new partial line
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        clock.t += 5
        w.cycle()
        append(log, " tail=ann.moe@example.com\n")
        assert w.cycle().findings == 1
        assert emails(w)[-1] == (str(log), 4, 10 + len(" tail="))
    finally:
        w.close()


def test_rotation_by_rename_reads_the_old_file_to_its_end_and_the_new_one_from_its_start(tmp_path, logs):
    log, old = logs / "app.log", logs / "app.log.1"
    append(log, pii(1) + pii(2))
    w = open_watcher(tmp_path)
    try:
        w.cycle()
        # Between two cycles: two more lines, then logrotate renames and a new file starts.
        append(log, plain(3) + pii(4))
        os.rename(log, old)
        append(log, pii(1) + plain(2))
        r = w.cycle()
        assert r.findings == 2
        # The renamed inode went on at line 3 under its new name; nothing of it was read twice.
        assert emails(w, old) == [(str(old), 4, START)]
        # app.log: lines 1 and 2 of the first file, and line 1 of the new one, which holds the
        # same value at the same place: a finding of its own (another generation of the path).
        assert emails(w, log) == [(str(log), 1, START), (str(log), 1, START), (str(log), 2, START)]
        gens = w.store.con.execute("SELECT count(DISTINCT s.content_hash) FROM findings f JOIN sources s "
                                   "USING (source_id) WHERE f.source_path = ? AND f.line = 1", [str(log)]).fetchone()
        assert gens == (2,)
        ino_old, ino_new = old.stat().st_ino, log.stat().st_ino
        got = rows(w)
        assert got[str(old)][:3] == (old.stat().st_size, 4, ino_old)
        assert got[str(log)][:3] == (log.stat().st_size, 2, ino_new)
        # A second rotation: .1 -> .2, current -> .1, both in one cycle, every offset kept.
        two = logs / "app.log.2"
        append(log, pii(3))
        os.rename(old, two)
        os.rename(log, old)
        append(log, pii(9))
        assert w.cycle().findings == 2
        got = rows(w)
        assert got[str(two)][:3] == (two.stat().st_size, 4, ino_old)
        assert got[str(old)][:3] == (old.stat().st_size, 3, ino_new)
        assert got[str(log)][:2] == (log.stat().st_size, 1)
        assert w.store.con.execute("SELECT count(*) FROM findings").fetchone()[0] == 6
    finally:
        w.close()


def test_rotation_out_of_view_drains_the_old_inode_then_forgets_it(tmp_path, logs):
    clock = Clock()
    log = logs / "app.log"
    archive = tmp_path / "archive"
    archive.mkdir()
    append(log, pii(1))
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        os.rename(log, archive / "app.log.1")
        append(log, plain(1))  # the new file
        r = w.cycle()
        assert any("moved out of view" in n for n in r.notes)
        # The writer had not reopened its log yet: two more lines land in the moved file.
        append(archive / "app.log.1", pii(2) + pii(3))
        clock.t += 1
        assert w.cycle().findings == 2
        # Stored under the path where the lines were seen, with their real line numbers.
        assert emails(w) == [(str(log), n, START) for n in (1, 2, 3)]
        assert len(w.files) == 2
        clock.t += 60
        append(archive / "app.log.1", pii(4))  # a writer that logs once a minute: still read
        assert w.cycle().findings == 1 and len(w.files) == 2
        clock.t += 121
        r = w.cycle()
        assert len(w.files) == 1  # idle long enough: closed and forgotten, and said so
        assert any("out of view" in n and "closed after line 4" in n for n in r.notes)
        assert list(rows(w)) == [str(log)] and rows(w)[str(log)][2] == log.stat().st_ino
    finally:
        w.close()


def test_copytruncate_and_truncation_read_the_file_again_from_its_start(tmp_path, logs):
    log = logs / "app.log"
    append(log, "".join(pii(i) for i in range(1, 5)))
    w = open_watcher(tmp_path)
    try:
        assert w.cycle().findings == 4
        # copytruncate: the content is copied away (out of view), the file truncated in place,
        # and the writer has written more than before by the next look: the size alone does
        # not show it, the first bytes do.
        shutil.copy(log, tmp_path / "app.log.1")
        ino = log.stat().st_ino
        with open(log, "r+") as f:
            f.truncate(0)
        append(log, "".join(plain(i) for i in range(1, 9)) + f"{'x' * 30} contact=zed.new@example.com\n")
        assert log.stat().st_ino == ino and log.stat().st_size > 4 * len(pii(1))
        r = w.cycle()
        assert any("rewritten in place" in n for n in r.notes)
        assert r.findings == 1
        assert emails(w)[-1][1] == 9
        # Plain truncation to a shorter file.
        with open(log, "r+") as f:
            f.truncate(0)
        append(log, "2024-05-01 contact=amy.lee@example.com\n")
        r = w.cycle()
        assert any("truncated" in n for n in r.notes) and r.findings == 1
        assert rows(w)[str(log)][:2] == (log.stat().st_size, 1)
    finally:
        w.close()


def test_the_bytes_before_the_offset_catch_a_rewrite_that_keeps_the_first_bytes(tmp_path, logs):
    log = logs / "export.csv"
    header = "Id,Name,Email\n"
    rows_ = [f"{i},n{i},u{i}@example.com\n" for i in range(60)]
    append(log, header + "".join(rows_))
    w = open_watcher(tmp_path)
    try:
        w.cycle()
        assert w.store.con.execute("SELECT count(*) FROM findings WHERE rule_id = 'email'").fetchone()[0] == 60
        # Rewritten in place with the same first KiB and more lines: only the bytes just before
        # the old offset differ. The file is read again, as a new generation: all its values are
        # findings of that generation (counted again rather than missed).
        new = header + "".join(rows_[:59]) + "59,zz,changed.value@example.com\n" + "".join(
            f"{i},m{i},v{i}@example.com\n" for i in range(100, 110))
        assert new[:HEAD_BYTES] == (header + "".join(rows_))[:HEAD_BYTES]
        log.write_text(new)
        r = w.cycle()
        assert any("rewritten in place" in n for n in r.notes)
        assert r.findings == 70
        assert emails(w)[-1] == (str(log), 71, len("109,m109,"))
    finally:
        w.close()


def test_deleted_file_new_file_in_a_subdirectory_and_stale_offsets(tmp_path, logs):
    clock = Clock()
    (logs / "a.log").write_text(pii(1))
    (logs / "b.log").write_text(pii(2))
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        (logs / "a.log").unlink()
        sub = logs / "mule" / "app-1"
        sub.mkdir(parents=True)
        (sub / "mule-app.log").write_text(plain(1) + pii(2))
        r = w.cycle()
        assert r.files == {str(sub / "mule-app.log"): 1}
        assert str(logs / "a.log") not in rows(w)  # its offset is forgotten at once
        clock.t += 121  # a deleted file is read until idle DRAIN_IDLE_S (2 min), then closed
        w.cycle()
        assert sorted(s.path for s in w.files.values()) == [str(logs / "b.log"), str(sub / "mule-app.log")]
    finally:
        w.close()
    # Deleted while no watch ran: its row goes at the next start.
    (logs / "b.log").unlink()
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        assert sorted(rows(w)) == [str(sub / "mule-app.log")]
    finally:
        w.close()


def test_gzip_file_is_read_once_when_it_has_settled(tmp_path, logs):
    clock = Clock()
    gz = logs / "app.log.3.gz"
    with gzip.open(gz, "wt") as f:
        f.write(plain(1) + pii(2) + pii(3))
    w = open_watcher(tmp_path, clock=clock)
    try:
        assert w.cycle().findings == 0  # just appeared: it may still be being written
        clock.t += 2
        r = w.cycle()
        assert r.findings == 2
        assert emails(w) == [(str(gz), 2, START), (str(gz), 3, START)]
        clock.t += 2
        assert w.cycle().bytes == 0  # read once
        assert rows(w)[str(gz)][:2] == (gz.stat().st_size, 3)
    finally:
        w.close()
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        clock.t += 2
        assert w.cycle().bytes == 0  # not again after a restart
    finally:
        w.close()


def test_bad_input_is_reported_with_file_and_line_and_the_watch_goes_on(tmp_path, logs):
    clock = Clock()
    (logs / "core.bin").write_bytes(bytes(range(256)) * 64)
    (logs / "win.log").write_bytes("a=1\r\n".encode("utf-16"))
    log = logs / "app.log"
    append(log, pii(1))
    w = open_watcher(tmp_path, clock=clock)
    try:
        r = w.cycle()
        got = {(p.path, p.kind) for p in r.problems}
        assert (str(logs / "core.bin"), "binary") in got and (str(logs / "win.log"), "encoding") in got
        assert r.findings == 1
        append(log, b"2024-05-01 caf\xe9 \xff\xfe user bob.ray@example.com\n")
        r = w.cycle()
        assert [(p.path, p.kind, p.line) for p in r.problems] == [(str(log), "encoding", 2)]
        assert r.findings == 1  # scanned all the same
        # A line longer than MAX_RECORD without a newline: scanned in pieces, reported once.
        append(log, "y" * (MAX_RECORD + 100) + " mail=long.line@example.com\n" + pii(4))
        r = w.cycle()
        assert [(p.kind, p.line) for p in r.problems] == [("long_line", 3)]
        assert emails(w)[-2:] == [(str(log), 3, MAX_RECORD + 100 + len(" mail=")), (str(log), 4, START)]
        assert w.cycle().problems == []  # each problem once
        stored = w.store.con.execute("SELECT source_path, line, kind FROM scan_errors ORDER BY error_id").fetchall()
        assert (str(log), 2, "encoding") in stored and (str(log), 3, "long_line") in stored
        assert (str(logs / "core.bin"), None, "binary") in stored
    finally:
        w.close()


def test_a_tail_read_twice_adds_no_finding_twice(tmp_path, logs):
    """At least once: were the offset lost after the findings were stored (it is not: both are
    one transaction), the tail would be read again. The store's duplicate key absorbs that."""
    log = logs / "app.log"
    lines = [pii(i) if i % 3 == 0 else plain(i) for i in range(40)]
    append(log, "".join(lines))
    w = open_watcher(tmp_path)
    try:
        w.cycle()
        n = w.store.con.execute("SELECT count(*) FROM findings").fetchone()[0]
        assert n == len([i for i in range(40) if i % 3 == 0])
    finally:
        w.close()
    # Move the stored offset back 20 lines (past HEAD_BYTES, so the first-bytes check still holds).
    back = sum(len(x) for x in lines[:20])
    assert back > HEAD_BYTES
    import duckdb

    import xxhash

    # The stored tail hash goes with the offset (it is the offset's own check).
    tail = xxhash.xxh3_64_hexdigest(log.read_bytes()[back - 64:back])
    con = duckdb.connect(str(tmp_path / "lw.duckdb"))
    con.execute('UPDATE watch_files SET "offset" = ?, line = 20, tail_hash = ?', [back, tail])
    con.close()
    w = open_watcher(tmp_path)
    try:
        r = w.cycle()
        assert r.bytes == log.stat().st_size - back  # the tail was read again …
        assert r.findings == 0  # … and added nothing
        assert w.store.con.execute("SELECT count(*) FROM findings").fetchone()[0] == n
        assert w.store.con.execute(
            "SELECT count(*) FROM (SELECT source_path, line, start_byte, rule_id, value_hash FROM findings "
            "GROUP BY ALL HAVING count(*) > 1)").fetchone()[0] == 0
    finally:
        w.close()


def test_renamed_while_not_watched_resumes_by_inode(tmp_path, logs):
    log, old = logs / "app.log", logs / "app.log.1"
    append(log, "".join(pii(i) for i in range(1, 4)))
    w = open_watcher(tmp_path)
    try:
        w.cycle()
    finally:
        w.close()
    append(log, pii(4))
    os.rename(log, old)
    append(log, pii(1))
    w = open_watcher(tmp_path)
    try:
        r = w.cycle()
        assert r.findings == 2
        assert emails(w, old) == [(str(old), 4, START)]
        # app.log: lines 1-3 of the renamed file (stored before), line 1 of the new one.
        assert emails(w, log) == [(str(log), 1, START)] * 2 + [(str(log), 2, START), (str(log), 3, START)]
        assert rows(w)[str(old)][:2] == (old.stat().st_size, 4)
    finally:
        w.close()


def test_an_inode_reused_for_other_content_is_not_resumed(tmp_path, logs):
    """The same inode number with other first bytes (a file deleted while not watched and its
    inode given to a new one) is read from the start."""
    log = logs / "app.log"
    append(log, pii(1) + pii(2))
    w = open_watcher(tmp_path)
    try:
        w.cycle()
    finally:
        w.close()
    with open(log, "r+") as f:  # same inode, other content, longer than before
        f.truncate(0)
    append(log, "2024-06-01 other " + pii(5) + pii(6) + pii(7))
    w = open_watcher(tmp_path)
    try:
        r = w.cycle()
        assert any("changed in place" in n for n in r.notes)
        assert r.bytes == log.stat().st_size
        with open(log, "rb") as f:
            assert rows(w)[str(log)][3] == head_hash(f.fileno(), HEAD_BYTES)
    finally:
        w.close()


def test_excluded_files_and_the_database_itself_are_not_followed(tmp_path, logs):
    (logs / "keep.log").write_text(pii(1))
    (logs / "old.log.gz").write_bytes(gzip.compress(pii(2).encode()))
    w = Watcher([str(logs)], logs / "lw.duckdb", notify=False, clock=Clock(), exclude=["*.gz"]).open()
    try:
        w.cycle()
        assert sorted(os.path.basename(s.path) for s in w.files.values()) == ["keep.log"]
    finally:
        w.close()


def test_a_file_scanned_before_is_not_stored_twice_and_a_scan_after_adds_nothing(tmp_path, logs):
    from leakwatch.pipeline import scan_paths

    log = logs / "app.log"
    append(log, "".join(pii(i) if i % 2 else plain(i) for i in range(1, 30)))
    db = tmp_path / "lw.duckdb"
    s = scan_paths([str(log)], db, run_patterns=False)
    assert s.new_findings == 15
    append(log, pii(31))  # it grew after the scan: the scan's content hash covers a prefix
    w = open_watcher(tmp_path)
    try:
        r = w.cycle()
        assert r.bytes == log.stat().st_size and r.findings == 1  # read whole, only line 30 is new
        assert emails(w)[-1] == (str(log), 30, len("2024-05-01T10:00:31Z INFO order 31 shipped to "))
    finally:
        w.close()
    s = scan_paths([str(log)], db, run_patterns=False)
    assert s.new_findings == 0


def _apex_csv(email: str) -> bytes:
    """An EventLogFile ApexCallout blob (DOMAIN.md §1: every value quoted) whose callout URL carries an e-mail."""
    header = ('"EVENT_TYPE","TIMESTAMP","REQUEST_ID","ORGANIZATION_ID","USER_ID","RUN_TIME","CPU_TIME","URI",'
              '"SESSION_KEY","LOGIN_KEY","TYPE","METHOD","SUCCESS","STATUS_CODE","TIME","REQUEST_SIZE",'
              '"RESPONSE_SIZE","URL","TIMESTAMP_DERIVED","USER_ID_DERIVED","CLIENT_IP","URI_ID_DERIVED"\n')
    row = ('"ApexCallout","20240311160000.000","4ZmHG8Lm2Hd0dS1Hn9DRR-","00D5j00000AbCdE","0055j00000AT6I1","120","30",'
           '"","vMASKc2V0+Rt4Rpi","Ls8aXTPKNbBl5MvO","REST","POST","1","200","98","412","1530",'
           f'"https://api.openai.com/v1/chat/completions?user={email}","2024-03-11T16:00:00.000Z","0055j00000AT6I1AAL",'
           '"Salesforce.com IP",""\n')
    return (header + row).encode()


def test_pull_salesforce_lands_in_a_watched_directory_and_is_scanned(tmp_path, logs, monkeypatch):
    import datetime as dt
    import time

    from leakwatch.salesforce.pull import Credentials
    from leakwatch.salesforce.sim import SalesforceSim
    from leakwatch.watch import SalesforcePull

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    user, password, token = "ops@acme-corp.example", "Tr0ub4dor&3-horse", "Xq7RtP2mZk9LwB4nV6cH"
    clock = Clock()
    with SalesforceSim() as sim:
        sim.add_user(user, password, token)
        created = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        log_id = sim.add_event_log_file("ApexCallout", created.date(), created, _apex_csv("mia.wong@example.com"))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.ca_file)
        creds = Credentials.from_env({"SF_USERNAME": user, "SF_PASSWORD": password, "SF_SECURITY_TOKEN": token,
                                      "SF_DOMAIN": sim.url})
        pull = SalesforcePull(str(logs / "salesforce"), every_s=900, credentials=creds)
        w = open_watcher(tmp_path, clock=clock, pull=pull)
        try:
            found, notes = [], []
            deadline = time.monotonic() + 60
            while not found and time.monotonic() < deadline:
                r = w.cycle()
                notes += r.notes
                assert r.errors == []
                found = [e for e in emails(w) if "/salesforce/" in e[0]]
                time.sleep(0.05)
            assert len(found) == 1 and found[0][0].endswith(f"{log_id}.csv") and found[0][1] == 2

            def pulled():
                return any(n.startswith("salesforce pull from") and "1 downloaded" in n for n in notes)

            # The pull thread reports when it has finished, which can be a cycle after the watcher
            # already scanned the file it wrote.
            while not pulled() and time.monotonic() < deadline:
                r = w.cycle()
                notes += r.notes
                assert r.errors == []
                time.sleep(0.05)
            assert pulled()
            for _ in range(3):
                w.cycle()
            status = w.store.con.execute("SELECT status FROM pulled_files WHERE log_id = ?", [log_id]).fetchone()
            assert status == ("scanned",)  # a later `leakwatch pull` does not scan it again
            n_queries = len(sim.requests_to("query", "GET"))
            w.cycle()
            assert len(sim.requests_to("query", "GET")) == n_queries  # next pull only after --pull-every
            # A pull that fails (Salesforce refuses the login) is reported; the watch goes on.
            sim.expire_sessions()
            pull.credentials = Credentials.from_env({"SF_USERNAME": user, "SF_PASSWORD": "wrong", "SF_SECURITY_TOKEN": token,
                                                     "SF_DOMAIN": sim.url})
            clock.t += 901
            errors = []
            deadline = time.monotonic() + 60
            while not errors and time.monotonic() < deadline:
                append(logs / "app.log", pii(1))
                errors = w.cycle().errors
                time.sleep(0.05)
            assert errors and errors[0].startswith("salesforce pull failed") and "wrong" not in errors[0]
        finally:
            w.close()


def test_findings_alerts_and_the_detection_clock_take_the_injected_time(tmp_path, logs):
    # A drill (or a replay) runs watch on a clock of its own: what it stores must be stamped
    # with that clock, or the incident's detection and awareness default to the wall clock.
    from datetime import UTC, datetime

    from leakwatch.incidents import book

    at = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    key = "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7zB9dF1hJ3kL5nP7rT9vX1zB3"
    append(logs / "app.jsonl", '{"ts":"2031-02-03T04:00:00Z","msg":"llm call","url":"https://api.openai.com/v1/chat",'
                               f'"prompt":"customer jane.doe@example.com","api_key":"{key}"}}\n')
    w = open_watcher(tmp_path, now=lambda: at)
    try:
        assert w.cycle().findings >= 2
        con = w.store.con
        assert con.execute("SELECT DISTINCT created_at FROM findings").fetchall() == [(at,)]
        stamped = con.execute("SELECT DISTINCT created_at FROM alerts").fetchall()
        assert stamped == [(at,)]  # the P1 key alert, from the same cycle
        book.group(w.store, w.config, actor="t", now=at)
        iid = book.list_incidents(con)[0]["incident_id"]
        clocks = dict(con.execute('SELECT event, "at" FROM incident_clocks WHERE incident_id = ?', [iid]).fetchall())
        assert clocks["detection"] == at and clocks["awareness"] == at
    finally:
        w.close()


def test_more_files_than_the_open_file_limit_are_followed_as_far_as_it_goes(tmp_path):
    """Each followed file holds a descriptor. Past the process's limit the watch follows what
    fits, keeps descriptors for the database and rules, and says why the rest is not followed
    (before: every file 'unreadable' and a rules file blamed, nothing stored)."""
    import resource
    import subprocess
    import sys

    import duckdb

    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(300):
        (logs / f"f{i:03d}.log").write_text(f"user mail=u{i}@example.com\n")
    db = tmp_path / "w.duckdb"

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    p = subprocess.run([sys.executable, "-m", "leakwatch", "watch", str(logs), "--db", str(db), "--no-notify",
                        "--once"], preexec_fn=low_limit, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "open-file limit" in p.stderr and "ulimit -n" in p.stderr
    assert "salesforce_fields" not in p.stderr
    con = duckdb.connect(str(db), read_only=True)
    n = con.execute("SELECT count(*) FROM findings").fetchone()[0]
    con.close()
    assert 100 <= n < 300  # as many as the limit allows, less its reserve


def test_a_file_rewritten_behind_an_unchanged_banner_is_read_again_after_a_restart(tmp_path):
    """A restarted watch trusted a stored offset when the file's first KiB was unchanged; an app
    that rewrites its log after a fixed start-up banner hid the new lines before that offset."""
    import subprocess
    import sys

    import duckdb

    logs = tmp_path / "logs"
    logs.mkdir()
    banner = ("#" * 79 + "\n") * 16  # 1,280 bytes: past the head hash's 1,024
    log = logs / "app.log"
    db = tmp_path / "lw.duckdb"
    cmd = [sys.executable, "-m", "leakwatch", "watch", str(logs), "--db", str(db), "--no-notify", "--once", "-v"]
    log.write_text(banner + "".join(f"req {i} email=olduser{i}@example.com\n" for i in range(5)))
    assert subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
    log.write_text(banner + "".join(f"req {i} email=newuser{i}@example.com\n" for i in range(8)))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "changed in place while not watched" in p.stdout + p.stderr
    con = duckdb.connect(str(db), read_only=True)
    lines = [r[0] for r in con.execute("SELECT line FROM findings WHERE masked LIKE 'n%' ORDER BY line").fetchall()]
    con.close()
    assert lines == list(range(17, 25))  # all eight new lines, not the last three


@pytest.mark.parametrize("n", [30, 3])  # 3 lines: under HEAD_BYTES, the hash covers all that was read
@pytest.mark.parametrize("order", ["copy-seen-first", "truncation-seen-first"])
def test_copytruncate_rotation_stores_each_line_once(tmp_path, logs, order, n):
    """logrotate's copytruncate copies the log to app.log.1 and truncates app.log: the copy
    holds lines already read, which are not stored a second time (whichever of the two changes a
    cycle sees first); lines the copy has beyond them are read."""
    import shutil

    log = logs / "app.log"
    append(log, "".join(pii(i) for i in range(n)))
    assert (os.path.getsize(log) >= HEAD_BYTES) == (n == 30)
    w = open_watcher(tmp_path)
    try:
        w.cycle()
        assert len(emails(w)) == n
        if order == "copy-seen-first":
            shutil.copy(log, logs / "app.log.1")
            append(logs / "app.log.1", pii(n))  # written between the copy and the truncate
            w.cycle()
            log.write_text("")
        else:
            shutil.copy(log, tmp_path / "copy")
            append(tmp_path / "copy", pii(n))
            log.write_text("")
            w.cycle()
            shutil.move(tmp_path / "copy", logs / "app.log.1")
        append(log, pii(31))
        r = w.cycle()
        r2 = w.cycle()
        notes = " ".join(r.notes + r2.notes)
        # n lines once, line n + 1 of the copy (written before the truncate), the new line 1.
        assert len(emails(w)) == n + 2, notes
        assert [e[1] for e in emails(w, logs / "app.log.1")] == [n + 1]
    finally:
        w.close()


def test_a_value_cut_by_a_write_pause_gives_way_to_the_whole_value(tmp_path, logs):
    """'contact=jane.doe@example.co' taken as it was when the file went idle is an e-mail too;
    when 'm card=…' completes the line, the whole e-mail replaces the cut one (one value, one
    data subject), in its incident as well, and a value the pause did not cut stays as stored."""
    clock = Clock()
    log = logs / "c.log"
    line = "ts=1 ip=81.2.69.160 contact=jane.doe@example.com card=4111111111111111 ok\n"
    cut = line.index(".com") + 3
    append(log, line[:cut])
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        clock.t += 4.5
        w.cycle()
        con = w.store.con
        before = dict(con.execute("SELECT rule_id, finding_id FROM findings").fetchall())
        assert sorted(before) == ["email", "ipv4_public"]
        incident = con.execute("SELECT incident_id FROM incident_findings WHERE finding_id = ?",
                               [before["email"]]).fetchone()
        assert incident is not None
        append(log, line[cut:])
        clock.t += 0.3
        w.cycle()
        after = con.execute("SELECT rule_id, finding_id, start_byte, end_byte, masked FROM findings"
                            " ORDER BY start_byte").fetchall()
        start = line.index("jane")
        assert [(r, s_, e, m) for r, _, s_, e, m in after] == [
            ("ipv4_public", len("ts=1 ip="), len("ts=1 ip=81.2.69.160"), "81.x.x.x"),
            ("email", start, start + len("jane.doe@example.com"), "j***@e******.com"),
            ("payment_card", line.index("4111"), line.index("4111") + 16, "************1111"),
        ]
        ids = {r: i for r, i, *_ in after}
        assert ids["ipv4_public"] == before["ipv4_public"]  # not cut: kept as it was
        assert con.execute("SELECT incident_id FROM incident_findings WHERE finding_id = ?",
                           [ids["email"]]).fetchone() == incident
        assert con.execute("SELECT count(*) FROM incident_findings WHERE finding_id = ?",
                           [before["email"]]).fetchone() == (0,)
    finally:
        w.close()


@pytest.mark.parametrize("late", [False, True])  # the gzip shows up after app.log.1 was let go
@pytest.mark.parametrize("n", [3, 30])  # under and over HEAD_BYTES read
def test_rotation_with_compress_does_not_store_the_compressed_copy_again(tmp_path, logs, n, late):
    """logrotate with ``compress``: app.log → app.log.1 (followed by inode), then app.log.1.gz
    written from it and app.log.1 deleted. The gzip's lines were read already; a line the
    writer added to app.log.1 after the last look is read once, and a gzip of other lines is
    read whole."""
    clock = Clock()
    log = logs / "app.log"
    append(log, "".join(pii(i) for i in range(n)))
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        assert len(emails(w)) == n
        os.rename(log, logs / "app.log.1")
        append(log, plain(100))
        w.cycle()
        append(logs / "app.log.1", pii(n))  # the writer had not reopened its log yet
        w.cycle()
        with open(logs / "app.log.1", "rb") as f, gzip.open(tmp_path / "app.log.1.gz", "wb") as g:
            g.write(f.read())
        os.remove(logs / "app.log.1")
        if late:
            w.cycle()
            clock.t += 121  # DRAIN_IDLE_S
            w.cycle()
            assert len(w.files) == 1  # app.log.1 drained and closed
        os.rename(tmp_path / "app.log.1.gz", logs / "app.log.1.gz")
        # An archive of other lines, dropped into the folder at the same time.
        with gzip.open(logs / "old.log.gz", "wb") as g:
            g.write("".join(pii(i) for i in range(200, 203)).encode())
        notes = []
        for _ in range(4):
            clock.t += 2.0
            notes += w.cycle().notes
        assert any("app.log.1.gz: begins with the" in x for x in notes), notes
        assert emails(w, logs / "app.log.1.gz") == []
        assert len(emails(w)) == n + 1 + 3
        assert [e[1] for e in emails(w, logs / "old.log.gz")] == [1, 2, 3]
    finally:
        w.close()


def test_rotation_with_compress_after_a_last_line_read_at_idle(tmp_path, logs):
    """app.log.1's last line had no newline and was read as it was when the file went idle;
    the gzip made from it holds that line too, and it is not stored a second time."""
    clock = Clock()
    log = logs / "app.log"
    append(log, pii(1) + pii(2) + pii(3).rstrip("\n"))
    w = open_watcher(tmp_path, clock=clock)
    try:
        for _ in range(4):
            w.cycle()
            clock.t += 2.0
        assert [e[1] for e in emails(w)] == [1, 2, 3]
        os.rename(log, logs / "app.log.1")
        append(log, plain(100))
        w.cycle()
        with open(logs / "app.log.1", "rb") as f, gzip.open(tmp_path / "app.log.1.gz", "wb") as g:
            g.write(f.read())
        os.remove(logs / "app.log.1")
        os.rename(tmp_path / "app.log.1.gz", logs / "app.log.1.gz")
        for _ in range(6):
            clock.t += 2.0
            w.cycle()
        assert emails(w, logs / "app.log.1.gz") == []
        assert [e[1] for e in emails(w)] == [1, 2, 3]
    finally:
        w.close()


def test_a_small_new_log_that_begins_like_another_is_read_whole(tmp_path, logs):
    """Near miss of the copytruncate check: a new file, not named after a followed one, whose
    one line equals all that was read of it (a short start-up line with the same key) is its
    own file, and its findings are stored under it."""
    append(logs / "api.log", pii(1))
    w = open_watcher(tmp_path)
    try:
        w.cycle()
        append(logs / "worker.log", pii(1))
        w.cycle()
        assert [e[1] for e in emails(w, logs / "worker.log")] == [1]
    finally:
        w.close()


def test_a_value_split_by_a_long_write_pause_is_found(tmp_path, logs):
    """A buffered writer flushes 'email=beta.two@exam' and, after a quiet spell longer than
    the partial-line wait, 'ple.com ok\\n': the line is read again whole, and the e-mail found."""
    clock = Clock()
    log = logs / "b.log"
    append(log, "ts=1 email=beta.two@exam")
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        clock.t += 4.5
        w.cycle()  # taken as it is: no e-mail in "beta.two@exam"
        assert emails(w) == []
        append(log, "ple.com ok\n")
        clock.t += 0.3
        assert w.cycle().findings == 1
        assert emails(w) == [(str(log), 1, len("ts=1 email="))]
    finally:
        w.close()


# --- review: rotation seen at awkward moments, a crash's zero fill ------------------------------


def test_a_zero_filled_gap_after_a_crash_does_not_stop_the_file_being_followed(tmp_path, logs):
    log = logs / "app.log"
    append(log, "".join(pii(i) for i in range(1, 4)))
    w = open_watcher(tmp_path)
    w.cycle()
    w.close()
    append(log, b"\x00" * 16384 + "".join(pii(i) for i in range(4, 7)).encode())
    w = open_watcher(tmp_path)
    try:
        r = w.cycle()
        assert not any("not followed" in str(p) for p in r.problems)
        assert [e[1] for e in emails(w)] == [1, 2, 3, 4, 5, 6]
    finally:
        w.close()
    # A new file that is one line and a zero fill: followed too (scan reads it the same way).
    fresh = logs / "nul.log"
    append(fresh, pii(1).encode() + b"\x00" * 8192)
    w = open_watcher(tmp_path)
    try:
        w.cycle()
        append(fresh, pii(2))
        w.cycle()
        assert len(emails(w, fresh)) == 2
    finally:
        w.close()


@pytest.mark.parametrize("how", ["empty", "partial"])
def test_a_copytruncate_copy_seen_before_it_is_complete_is_not_counted_twice(tmp_path, logs, how):
    """cp leaves the copy empty, then writes it in blocks; the watch looked at it on the way and
    read it from its start: every line of the log stored a second time."""
    clock = Clock()
    log = logs / "app.log"
    body = "".join(pii(i) for i in range(20)).encode()
    append(log, body)
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        copy = logs / "app.log.1"
        append(copy, b"" if how == "empty" else body[:len(body) // 2])
        clock.t += 0.5
        w.cycle()
        append(copy, body if how == "empty" else body[len(body) // 2:])
        with open(log, "r+b") as f:
            f.truncate(0)
        append(log, pii(20))
        for _ in range(3):
            clock.t += 1
            w.cycle()
        assert len(emails(w)) == 21 and emails(w, copy) == []
    finally:
        w.close()


@pytest.mark.parametrize("rotation", ["copytruncate", "rename+compress"])
def test_a_rotation_while_the_watch_was_down_does_not_count_the_old_lines_twice(tmp_path, logs, rotation):
    import gzip
    import shutil

    clock = Clock()
    log = logs / "app.log"
    append(log, "".join(pii(i) for i in range(10)))
    w = open_watcher(tmp_path, clock=clock)
    w.cycle()
    w.close()
    if rotation == "copytruncate":
        shutil.copyfile(log, logs / "app.log.1")
        with open(log, "r+b") as f:
            f.truncate(0)
    else:
        os.rename(log, logs / "app.log.1")
        with open(logs / "app.log.1", "rb") as f, gzip.open(logs / "app.log.1.gz", "wb") as g:
            g.write(f.read())
        os.remove(logs / "app.log.1")
    append(log, pii(10))
    w = open_watcher(tmp_path, clock=clock)
    try:
        for _ in range(3):
            clock.t += 2
            w.cycle()
        assert len(emails(w)) == 11
    finally:
        w.close()


@pytest.mark.parametrize("restart", [False, True])
def test_a_value_cut_after_a_separator_or_across_a_restart_gives_way_to_the_whole_value(tmp_path, logs, restart):
    """The writer paused right after the space inside '+44 20 7946 0958' (the cut value ends one
    byte before the cut), or the watch was killed before the line was completed (the whole value
    lands in a sources row of its own): the partial phone stayed next to the whole one."""
    clock = Clock()
    log = logs / "p.log"
    line = "ts=1 note=call back phone +44 20 7946 0958 please\n"
    cut = line.index("7946 ") + 5
    append(log, line[:cut])
    w = open_watcher(tmp_path, clock=clock)
    try:
        w.cycle()
        clock.t += 4.5
        w.cycle()
        assert w.store.con.execute("SELECT count(*) FROM findings WHERE entity = 'PHONE_NUMBER'").fetchone()[0] == 1
        if restart:
            w.close()
            w = open_watcher(tmp_path, clock=clock)
            w.cycle()
        append(log, line[cut:])
        clock.t += 0.3
        w.cycle()
        phones = w.store.con.execute("SELECT start_byte, end_byte FROM findings WHERE entity = 'PHONE_NUMBER'").fetchall()
        start = line.index("+44")
        assert phones == [(start, start + len("+44 20 7946 0958"))]
    finally:
        w.close()


def test_a_gzip_member_appended_to_a_small_gzip_adds_only_its_own_lines(tmp_path, logs):
    import gzip

    clock = Clock()
    gz = logs / "a.log.gz"
    gz.write_bytes(gzip.compress("".join(pii(i) for i in range(5)).encode()))  # well under HEAD_BYTES
    w = open_watcher(tmp_path, clock=clock)
    try:
        for _ in range(2):
            clock.t += 2
            w.cycle()
        assert len(emails(w, gz)) == 5
        with open(gz, "ab") as f:
            f.write(gzip.compress("".join(pii(i) for i in range(5, 8)).encode()))
        for _ in range(2):
            clock.t += 2
            w.cycle()
        assert [e[1] for e in emails(w, gz)] == [1, 2, 3, 4, 5, 6, 7, 8]
    finally:
        w.close()


def test_a_gzip_still_being_written_is_not_called_truncated_unless_it_stays_short(tmp_path, logs):
    import gzip

    clock = Clock()
    whole = gzip.compress("".join(pii(i) for i in range(40)).encode())
    gz = logs / "b.log.gz"
    gz.write_bytes(whole[:len(whole) // 2])  # the compressor stalled half-way
    w = open_watcher(tmp_path, clock=clock)
    try:
        problems = []
        for _ in range(2):
            clock.t += 2
            problems += w.cycle().problems
        assert problems == []  # not yet: it may still be written
        with open(gz, "ab") as f:
            f.write(whole[len(whole) // 2:])
        for _ in range(2):
            clock.t += 2
            problems += w.cycle().problems
        assert problems == [] and len(emails(w, gz)) == 40
        assert w.store.con.execute("SELECT count(*) FROM scan_errors").fetchone()[0] == 0
        # One that stays short is a truncated file after all: said once it has not changed for 30 s.
        short = logs / "c.log.gz"
        short.write_bytes(whole[:len(whole) // 2])
        for _ in range(2):
            clock.t += 2
            problems += w.cycle().problems
        assert problems == []
        clock.t += 31
        problems += w.cycle().problems
        assert [(p.path, p.kind) for p in problems] == [(str(short), "truncated")]
    finally:
        w.close()


def test_a_target_that_never_answers_does_not_hold_up_the_scanning(tmp_path, logs, monkeypatch):
    # A webhook receiver that accepts the connection (the kernel's backlog) and never answers:
    # each attempt waits its whole timeout. The dispatcher sends from its own thread, so the
    # watch goes on scanning meanwhile, and stopping does not wait for the silent target.
    import socket
    import threading
    import time

    from leakwatch.config import load_config

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    monkeypatch.setenv("LW_SILENT_SECRET", "whsec_" + "c2lsZW50LXRhcmdldC1zZWNyZXQtMzJieXRlc3h4eA==")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    cfg = tmp_path / "leakwatch.toml"
    cfg.write_text(f"""
[[notify.targets]]
name = "silent"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
timeout_s = 30
credentials = {{ secret = "LW_SILENT_SECRET" }}

[[notify.targets]]
name = "silent2"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook2"
timeout_s = 30
credentials = {{ secret = "LW_SILENT_SECRET" }}

[[notify.rules]]
on = ["incident.opened"]
targets = ["silent", "silent2"]
""")
    log = logs / "app.log"
    log.write_text(plain(0))
    w = Watcher([str(logs)], tmp_path / "lw.duckdb", config=load_config(cfg)).open()
    stop = threading.Event()
    t = threading.Thread(target=w.run, kwargs={"interval": 0.05, "stop": stop}, daemon=True)
    try:
        t.start()
        append(log, pii(1))  # opens an incident: its notification goes to the silent target
        end = time.monotonic() + 20
        while time.monotonic() < end and not w.store.con.cursor().execute(
                "SELECT count(*) FROM outbox WHERE status = 'sending'").fetchone()[0]:
            time.sleep(0.05)
        # Two sends hang at once, on the dispatcher's send threads.
        end = time.monotonic() + 10
        while time.monotonic() < end and w.store.con.cursor().execute(
                "SELECT count(*) FROM outbox WHERE status = 'sending'").fetchone()[0] < 2:
            time.sleep(0.05)
        assert w.store.con.cursor().execute("SELECT count(*) FROM outbox WHERE status = 'sending'").fetchone()[0] == 2
        append(log, pii(2))  # while that send hangs, the next line is scanned all the same
        end = time.monotonic() + 10
        while time.monotonic() < end and len(w.store.con.cursor().execute(
                "SELECT 1 FROM findings WHERE rule_id = 'email'").fetchall()) < 2:
            time.sleep(0.05)
        n = len(w.store.con.cursor().execute("SELECT 1 FROM findings WHERE rule_id = 'email'").fetchall())
        assert n == 2, "the watch stopped scanning while a notification hung"
        t0 = time.monotonic()
        stop.set()
        t.join(15)
        assert not t.is_alive()
        w.close()
        assert time.monotonic() - t0 < 15  # not the 30 s the silent target would take
    finally:
        stop.set()
        silent.close()


def test_a_database_deleted_under_the_watch_stops_it(tmp_path, logs):
    from leakwatch.errors import StoreError

    log = logs / "app.log"
    log.write_text(pii(1))
    w = open_watcher(tmp_path)
    try:
        w.cycle()
        os.remove(tmp_path / "lw.duckdb")
        append(log, pii(2))
        with pytest.raises(StoreError, match="deleted or replaced while the watch ran"):
            w.cycle()
    finally:
        w.close("failed")


def test_once_with_a_rule_file_that_cannot_be_read_exits_2_like_scan(tmp_path):
    """A broken rule file: scan exits 2 and records the scan as partial; watch --once said the
    error, then exited 0 with its session recorded 'ok'."""
    import subprocess
    import sys

    import duckdb

    from leakwatch.detect.rules import default_rules_dir

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("signup email=jane.doe@example.com\n")
    rules = tmp_path / "rules"
    shutil.copytree(default_rules_dir(), rules)
    (rules / "zz-mine.yaml").write_text("rules:\n  - id: mine\n    entity: X\n    regex: '(unclosed'\n")
    db = tmp_path / "lw.duckdb"
    p = subprocess.run([sys.executable, "-m", "leakwatch", "watch", str(logs), "--db", str(db), "--rules", str(rules),
                        "--no-notify", "--once"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "zz-mine.yaml" in p.stderr and "rule error" in p.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT status FROM scans").fetchall() == [("partial",)]
        assert con.execute("SELECT count(*) FROM findings").fetchone()[0] == 1  # the other rules still ran
    finally:
        con.close()
