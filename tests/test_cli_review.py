"""`leakwatch scan` cases from a reviewer's session (each failed before its fix): --jsonl
naming the evidence or the database, an empty evidence folder, a summary cut at 80 columns."""
from __future__ import annotations

import subprocess
import sys

import pytest

LINE = "email=jane.doe@example.com card=4111111111111111\n"


@pytest.mark.parametrize("target", ["input", "db", "key"])
def test_jsonl_never_overwrites_the_evidence_or_the_database(cli, tmp_path, target):
    log = tmp_path / "victim.log"
    log.write_text(LINE)
    db = tmp_path / "lw.duckdb"
    assert cli("scan", log, "--db", db).rc == 1
    path = {"input": log, "db": db, "key": tmp_path / "lw.duckdb.key"}[target]
    before = path.read_bytes()
    r = cli("scan", log, "--db", db, "--jsonl", path, "--rescan")
    assert r.rc == 2 and "--jsonl" in r.err and "destroy" in r.err
    assert path.read_bytes() == before
    assert cli("scan", log, "--db", db, "--rescan").rc == 1  # the database still works


def test_jsonl_inside_a_scanned_folder_is_not_scanned(cli, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text(LINE)
    out = logs / "findings.jsonl"
    r = cli("scan", logs, "--db", tmp_path / "lw.duckdb", "--jsonl", out)
    assert r.rc == 1
    assert "findings.jsonl" not in r.out
    assert len(out.read_text().splitlines()) == 2


def test_an_empty_folder_is_an_input_error(cli, tmp_path):
    empty = tmp_path / "evidence"
    empty.mkdir()
    r = cli("scan", empty, "--db", tmp_path / "lw.duckdb")
    assert r.rc == 2 and "directory holds no files" in r.err
    # A folder holding only the database is no empty evidence folder.
    (tmp_path / "only").mkdir()
    assert cli("scan", tmp_path / "only", "--db", tmp_path / "only" / "lw.duckdb").rc == 0


def test_a_redirected_summary_is_not_cut_at_80_columns(tmp_path):
    log = tmp_path / ("a_rather_long_evidence_file_name_from_the_gateway_" + "x" * 20 + ".log")
    log.write_text(LINE * 3)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "leakwatch", "scan", str(log), "--db", str(tmp_path / "lw.duckdb")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1
    assert str(log) in p.stdout  # one piece, not folded at 80 columns
    assert "…" not in p.stdout


def test_a_key_file_from_another_database_is_refused(cli, tmp_path):
    log = tmp_path / "a.log"
    log.write_text(LINE)
    one, two = tmp_path / "one.duckdb", tmp_path / "two.duckdb"
    assert cli("scan", log, "--db", one).rc == 1
    assert cli("scan", log, "--db", two).rc == 1
    own = (tmp_path / "one.duckdb.key").read_bytes()
    (tmp_path / "one.duckdb.key").write_bytes((tmp_path / "two.duckdb.key").read_bytes())
    r = cli("scan", log, "--db", one, "--rescan")
    assert r.rc == 3 and "not the key this database was made with" in r.err
    (tmp_path / "one.duckdb.key").write_bytes(own)
    assert cli("scan", log, "--db", one, "--rescan").rc == 1


def test_a_lost_key_of_a_database_without_findings_is_replaced(cli, tmp_path):
    log = tmp_path / "clean.log"
    log.write_text("nothing to see here\n")
    db = tmp_path / "lw.duckdb"
    assert cli("scan", log, "--db", db).rc == 0
    (tmp_path / "lw.duckdb.key").unlink()
    assert cli("scan", log, "--db", db, "--rescan").rc == 0


def test_standard_input_says_how_to_scan_it(cli, tmp_path):
    r = cli("scan", "-", "--db", tmp_path / "lw.duckdb")
    assert r.rc == 2 and "save it to a file first" in r.err


@pytest.mark.parametrize("how", ["glob", "folder"])
def test_jsonl_never_overwrites_evidence_a_glob_or_folder_names(cli, tmp_path, how):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text(LINE)
    (logs / "b.log").write_text("email=c@d.example.com\n")
    target = str(logs / "*.log") if how == "glob" else str(logs)
    r = cli("scan", target, "--db", tmp_path / "lw.duckdb", "--jsonl", logs / "b.log")
    assert r.rc == 2 and "destroy" in r.err
    assert (logs / "b.log").read_text() == "email=c@d.example.com\n"


def test_an_empty_watched_folder_is_no_error(cli, tmp_path):
    (tmp_path / "incoming").mkdir()
    r = cli("watch", tmp_path / "incoming", "--db", tmp_path / "lw.duckdb", "--once", "--no-notify")
    assert r.rc == 0, r.err
