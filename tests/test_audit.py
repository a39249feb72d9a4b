"""The audit trail's HMAC chain: an intact trail verifies; an edited, deleted, inserted or
truncated row, or a forged head, is detected (by the library and by ``leakwatch audit verify``'s
exit code); appending to a damaged trail is refused."""
from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from leakwatch.errors import StoreError
from leakwatch.exit_codes import ExitCode
from leakwatch.incidents import audit
from leakwatch.store import Store

T = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


@pytest.fixture
def trail(tmp_path):
    db = tmp_path / "a.duckdb"
    with Store.open(db) as s:
        for i in range(5):
            s.con.begin()
            audit.append(s.con, s.key, actor="alice", action="step.done", incident_id=1, at=T + timedelta(minutes=i),
                         detail={"step": f"s{i}", "evidence": {"ticket": f"INC-{i}"}}, reason=None if i % 2 else "why")
            s.con.commit()
    return db


def _verify(db):
    with Store.open(db, read_only=True) as s:
        return audit.verify(s.con, s.key)


def _cli(db):
    return subprocess.run([sys.executable, "-m", "leakwatch", "audit", "verify", "--db", str(db)],
                          capture_output=True, text=True, timeout=120)


def _tamper(db, sql, params=()):
    con = duckdb.connect(str(db))
    con.execute(sql, list(params))
    con.close()


def test_intact_trail_verifies(trail):
    res = _verify(trail)
    assert res.ok and res.n_rows == 5 and not res.problems
    p = _cli(trail)
    assert p.returncode == ExitCode.OK, p.stderr
    assert "intact: 5 row(s)" in p.stdout


def test_edited_detail_is_detected(trail):
    _tamper(trail, "UPDATE audit_log SET detail = replace(detail, 'INC-2', 'INC-9') WHERE seq = 3")
    res = _verify(trail)
    assert not res.ok
    assert any(p.startswith("row 3:") and "edited" in p for p in res.problems)
    p = _cli(trail)
    assert p.returncode == ExitCode.AUDIT_BROKEN and "row 3" in p.stderr


@pytest.mark.parametrize("column,value", [("actor", "mallory"), ("reason", "covered up"), ("action", "step.skipped")])
def test_every_column_is_covered(trail, column, value):
    _tamper(trail, f"UPDATE audit_log SET {column} = ? WHERE seq = 2", [value])
    assert any(p.startswith("row 2:") for p in _verify(trail).problems)


def test_back_dated_time_is_detected(trail):
    _tamper(trail, 'UPDATE audit_log SET "at" = "at" - INTERVAL 1 HOUR WHERE seq = 4')
    assert any(p.startswith("row 4:") for p in _verify(trail).problems)


def test_deleted_middle_row_is_detected(trail):
    _tamper(trail, "DELETE FROM audit_log WHERE seq = 3")
    res = _verify(trail)
    assert not res.ok
    assert any("missing" in p for p in res.problems)
    assert _cli(trail).returncode == ExitCode.AUDIT_BROKEN


def test_deleted_last_row_is_detected_by_the_head(trail):
    _tamper(trail, "DELETE FROM audit_log WHERE seq = 5")
    res = _verify(trail)
    assert not res.ok and any("head records 5 rows" in p for p in res.problems)


def test_rewritten_head_without_the_key_is_detected(trail):
    _tamper(trail, "DELETE FROM audit_log WHERE seq = 5")
    _tamper(trail, "UPDATE audit_head SET n_rows = 4, last_hash = (SELECT row_hash FROM audit_log WHERE seq = 4)")
    res = _verify(trail)
    assert any("head's HMAC is wrong" in p for p in res.problems)


def test_recomputed_row_without_the_key_is_detected(trail):
    # An attacker who knows the scheme but not the key recomputes a plain SHA-256: still wrong.
    import hashlib

    _tamper(trail, "UPDATE audit_log SET actor = 'mallory', row_hash = ? WHERE seq = 2",
            [hashlib.sha256(b"forged").hexdigest()])
    problems = _verify(trail).problems
    assert any(p.startswith("row 2:") for p in problems) and any(p.startswith("row 3:") for p in problems)


def test_appending_to_a_damaged_trail_is_refused(trail):
    _tamper(trail, "DELETE FROM audit_log WHERE seq = 5")
    with Store.open(trail) as s:
        s.con.begin()
        with pytest.raises(StoreError, match="does not match its head"):
            audit.append(s.con, s.key, actor="alice", action="x")
        s.con.rollback()
        assert s.con.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 4


def test_naive_time_refused(tmp_path):
    with Store.open(tmp_path / "b.duckdb") as s:
        with pytest.raises(ValueError, match="timezone-aware"):
            audit.append(s.con, s.key, actor="a", action="x", at=datetime(2026, 1, 1))


def test_deleted_tail_and_head_cannot_be_resealed_by_the_next_change(trail):
    _tamper(trail, "DELETE FROM audit_log WHERE seq = 5")
    _tamper(trail, "DELETE FROM audit_head")
    assert any("head is missing" in p for p in _verify(trail).problems)
    with Store.open(trail) as s:
        s.con.begin()
        with pytest.raises(StoreError, match="does not match its head"):
            audit.append(s.con, s.key, actor="alice", action="x")
        s.con.rollback()
    assert not _verify(trail).ok


def test_wiped_trail_beside_incidents_is_detected(trail):
    _tamper(trail, "INSERT INTO incidents (title, origin, severity, severity_rank) VALUES ('x', 'manual', 'high', 3)")
    # An incident added behind leakwatch's back has no 'incident.opened' row: that is named too.
    res = _verify(trail)
    assert not res.ok and any("have no 'incident.opened' row" in p for p in res.problems)
    _tamper(trail, "DELETE FROM audit_log")
    _tamper(trail, "DELETE FROM audit_head")
    res = _verify(trail)
    assert not res.ok and any("trail was wiped" in p for p in res.problems)


def _append(db, action="fact.set", incident_id=1):
    with Store.open(db) as s:
        s.con.begin()
        try:
            audit.append(s.con, s.key, actor="mallory", action=action, incident_id=incident_id,
                         at=T + timedelta(hours=1), detail={"key": "measures"})
        except Exception:
            s.con.rollback()
            raise
        s.con.commit()


def test_a_cut_tail_with_a_copied_head_is_not_covered_by_the_next_write(trail):
    """Delete the last row and point the head at the one before (no key needed for that): the
    next ordinary write used to accept the head and sign a fresh one, and verify said 'intact'."""
    from leakwatch.errors import StoreError

    _tamper(trail, "DELETE FROM audit_log WHERE seq = 5")
    _tamper(trail, "UPDATE audit_head SET n_rows = 4, last_hash = (SELECT row_hash FROM audit_log WHERE seq = 4)")
    with pytest.raises(StoreError, match="does not match its head"):
        _append(trail)
    res = _verify(trail)
    assert not res.ok and any("HMAC is wrong" in p for p in res.problems)


def test_an_edited_last_row_is_not_covered_by_the_next_write(trail):
    from leakwatch.errors import StoreError

    _tamper(trail, "UPDATE audit_log SET actor = 'bob' WHERE seq = 5")
    with pytest.raises(StoreError):
        _append(trail)


def test_a_wiped_trail_written_to_again_is_still_found(tmp_path):
    """Both tables emptied, then one ordinary write: verify said 'intact: 1 row(s)'."""
    from leakwatch.config import load_config
    from leakwatch.incidents import book
    from leakwatch.pipeline import scan_paths

    log = tmp_path / "app.log"
    log.write_text('{"url": "https://api.openai.com/v1/chat/completions", "email": "jane.doe@example.com"}\n'
                   '{"url": "https://api.anthropic.com/v1/messages", "email": "john.roe@example.com"}\n')
    db = tmp_path / "w.duckdb"
    scan_paths([str(log)], db)
    with Store.open(db) as s:
        opened = book.group(s, load_config(None, env={}), actor="alice").opened
    assert len(opened) >= 1 and _verify(db).ok
    _tamper(db, "DELETE FROM audit_log")
    _tamper(db, "DELETE FROM audit_head")
    with Store.open(db) as s:
        book.set_fact(s, opened[0], "measures", "rotated the key", actor="mallory")
    res = _verify(db)
    assert not res.ok
    assert any(f"{len(opened)} incident(s) have no 'incident.opened' row" in p for p in res.problems), res.problems


@pytest.mark.parametrize("table", ["audit_log", "audit_head"])
def test_a_dropped_audit_table_is_a_broken_trail_not_a_crash(trail, table):
    """verify, list and every write were a CatalogException (exit 70)."""
    _tamper(trail, f"DROP TABLE {table}")
    p = _cli(trail)
    assert p.returncode == 5 and f"{table} are missing" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "leakwatch", "audit", "list", "--db", str(trail)],
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr
    if table == "audit_log":  # list reads only the rows (it still lists them without the head)
        assert p.returncode == 3 and "its table audit_log is missing" in p.stderr


@pytest.mark.parametrize("limit", ["-1", "0", "99999999999999999999", "ten"])
def test_audit_list_limit_out_of_range_is_a_usage_error(trail, limit):
    p = subprocess.run([sys.executable, "-m", "leakwatch", "audit", "list", "--db", str(trail), "--limit", limit],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--limit" in p.stderr and "Traceback" not in p.stderr


def test_audit_help_lists_exit_code_5():
    p = subprocess.run([sys.executable, "-m", "leakwatch", "audit", "--help"], capture_output=True, text=True, timeout=120)
    assert "5  audit verify: the chain is broken" in p.stdout


def test_audit_list_of_an_incident_that_does_not_exist_says_so(trail):
    p = subprocess.run([sys.executable, "-m", "leakwatch", "audit", "list", "--db", str(trail), "--incident", "99"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no incident 99" in p.stderr  # was an empty table, exit 0
