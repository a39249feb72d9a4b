"""``leakwatch scan`` end to end: exit codes, JSON lines, what is (not) stored, file modes,
re-scans, path expansion and parallel workers, checked against the DuckDB file it wrote."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from leakwatch.pipeline import MIN_RANGE_BYTES, RANGE_BYTES
from leakwatch.sources.files import split_points

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
KEY = "sk-proj-FAKEtestKEY0a1b2c3d4e5f6g7h8i9j0kLmNoP"
IP = "93.184.216.34"
JSON_KEYS = {"source", "line", "start", "end", "rule", "entity", "confidence", "severity", "field", "masked",
             "value_hash"}
# Present when the record's format or destination says them (see pipeline._JSONL_EXTRA).
OPTIONAL_JSON_KEYS = {"field_path", "format", "detector", "ts", "dest_host", "dest_vendor", "dest_region",
                      "dest_jurisdiction", "residency_violation", "sf_object", "sf_field", "prompt_role"}


@pytest.fixture
def leaky(tmp_path) -> Path:
    """A small log with an email (medium), a card and a key (high) and a public IP (low)."""
    p = tmp_path / "app.log"
    p.write_text(
        "2024-05-01 10:00:00 INFO service started\n"
        f'{{"ts":"2024-05-01T10:00:01Z","customer":{{"email":"{EMAIL}"}},"msg":"signup"}}\n'
        f"2024-05-01 10:00:02 INFO charged card {CARD} ok\n"
        "\n"
        f"2024-05-01 10:00:03 WARN calling upstream with key {KEY}\n"
        f'{IP} - - [01/May/2024:10:00:04 +0000] "GET /health HTTP/1.1" 200 2 "-" "curl/8.0"\n'
    )
    return p


@pytest.fixture
def clean(tmp_path) -> Path:
    p = tmp_path / "clean.log"
    p.write_text("2024-05-01 10:00:00 INFO nothing to see\n2024-05-01 10:00:01 INFO order 42 done in 12 ms\n")
    return p


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def flat(text: str) -> str:
    """The summary with rich's line wrapping undone."""
    return " ".join(text.split())


def count(query, db) -> int:
    return query(db, "SELECT count(*) FROM findings")[0][0]


# --- entry points --------------------------------------------------------------------------------


def test_python_dash_m_and_console_script_help():
    p = subprocess.run([sys.executable, "-m", "leakwatch", "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: leakwatch") and "scan" in p.stdout
    script = Path(sys.executable).with_name("leakwatch")
    assert script.exists(), "the leakwatch console script is not installed next to the interpreter"
    p2 = subprocess.run([str(script), "scan", "--help"], capture_output=True, text=True, timeout=60)
    assert p2.returncode == 0, p2.stderr
    assert "usage: leakwatch scan" in p2.stdout and "exit codes:" in p2.stdout and "--fail-on" in p2.stdout
    p3 = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert p3.returncode == 0 and p3.stdout.startswith("leakwatch ")


def test_no_arguments_prints_help_and_exits_0(cli, cli_proc):
    r = cli()
    assert r.rc == 0
    assert r.out.startswith("usage: leakwatch") and "scan" in r.out
    p = cli_proc()
    assert p.rc == 0 and p.out.startswith("usage: leakwatch")


@pytest.mark.parametrize("args,needle", [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--workers", "-3"], "--workers must be at least 1"),
    (["--workers", "two"], "invalid int value"),
    (["--fail-on", "severe"], "invalid choice"),
])
def test_usage_errors_exit_2(tmp_path, cli, leaky, args, needle):
    db = tmp_path / "lw.duckdb"
    r = cli("scan", leaky, "--db", db, *args)
    assert r.rc == 2
    assert needle in r.err
    assert not db.exists()  # nothing was started


def test_scan_without_paths_is_a_usage_error(cli):
    r = cli("scan")
    assert r.rc == 2 and "PATH" in r.err


# --- exit codes and --fail-on ----------------------------------------------------------------------


def test_exit_0_without_findings(tmp_path, cli, query, clean):
    db = tmp_path / "lw.duckdb"
    r = cli("scan", clean, "--db", db)
    assert r.rc == 0, r.err
    assert "No findings." in r.out and "none at or above medium" in flat(r.out)
    assert r.err == ""
    assert count(query, db) == 0
    assert query(db, "SELECT status, n_files, n_records, n_findings, n_errors FROM scans") == [("ok", 1, 2, 0, 0)]


def test_exit_1_with_findings(tmp_path, cli, query, leaky):
    db = tmp_path / "lw.duckdb"
    r = cli("scan", leaky, "--db", db)
    assert r.rc == 1, r.err
    assert "EMAIL_ADDRESS" in r.out and "CREDIT_CARD" in r.out and "OPENAI_API_KEY" in r.out
    rows = query(db, "SELECT line, rule_id, severity FROM findings ORDER BY line")
    assert rows == [(2, "email", "medium"), (3, "payment_card", "high"), (5, "openai_api_key", "high"),
                    (6, "ipv4_public", "low")]
    assert query(db, "SELECT status, n_findings FROM scans") == [("ok", 4)]


@pytest.mark.parametrize("fail_on,rc", [("info", 1), ("low", 1), ("medium", 1), ("high", 1), ("critical", 0)])
def test_fail_on_threshold(tmp_path, cli, leaky, fail_on, rc):
    r = cli("scan", leaky, "--db", tmp_path / "lw.duckdb", "--fail-on", fail_on, "-q")
    assert r.rc == rc


@pytest.mark.parametrize("fail_on,rc", [("info", 1), ("low", 1), ("medium", 0)])
def test_fail_on_with_only_a_low_finding(tmp_path, cli, fail_on, rc):
    p = tmp_path / "access.log"
    p.write_text(f'{IP} - - [01/May/2024:10:00:04 +0000] "GET / HTTP/1.1" 200 2\n')
    assert cli("scan", p, "--db", tmp_path / "lw.duckdb", "--fail-on", fail_on, "-q").rc == rc


def test_fail_on_changes_exit_code_on_the_same_database(tmp_path, cli, leaky):
    db = tmp_path / "lw.duckdb"
    assert cli("scan", leaky, "--db", db, "--fail-on", "critical", "-q").rc == 0
    # The second run finds the file unchanged, and still judges its stored findings.
    assert cli("scan", leaky, "--db", db, "--fail-on", "low", "-q").rc == 1
    assert cli("scan", leaky, "--db", db, "--fail-on", "critical", "-q").rc == 0


# --- JSON lines --------------------------------------------------------------------------------------


def test_jsonl_stdout_is_valid_json_with_byte_offsets(tmp_path, cli, query, leaky):
    db = tmp_path / "lw.duckdb"
    r = cli("scan", leaky, "--db", db, "--jsonl", "-")
    assert r.rc == 1
    objs = jsonl(r.out)  # stdout holds only JSON lines...
    assert "scan 1:" in r.err and "Findings by entity" in r.err  # ...the summary went to stderr
    assert len(objs) == 4
    lines = leaky.read_bytes().split(b"\n")
    expected = {"email": EMAIL, "payment_card": CARD, "openai_api_key": KEY, "ipv4_public": IP}
    for o in objs:
        assert JSON_KEYS <= set(o) <= JSON_KEYS | OPTIONAL_JSON_KEYS
        assert o["format"] == "text" and o["detector"] == "regex"  # an app log without structure
        assert o["source"] == str(leaky)
        assert isinstance(o["line"], int) and isinstance(o["start"], int) and isinstance(o["end"], int)
        # line is 1-based; [start, end) are byte offsets within that line.
        assert lines[o["line"] - 1][o["start"]:o["end"]] == expected[o["rule"]].encode()
        assert 0 < o["confidence"] <= 1
        assert o["severity"] in ("info", "low", "medium", "high", "critical")
        assert expected[o["rule"]] not in o["masked"]
        assert len(o["value_hash"]) == 64
    by_rule = {o["rule"]: o for o in objs}
    assert by_rule["email"]["entity"] == "EMAIL_ADDRESS" and by_rule["email"]["field"] == "email"
    assert by_rule["email"]["masked"][0] == "j" and by_rule["email"]["masked"].endswith(".com")
    assert "@" in by_rule["email"]["masked"]
    assert by_rule["payment_card"]["masked"].endswith("1111") and "4111" not in by_rule["payment_card"]["masked"][:4]
    assert by_rule["openai_api_key"]["masked"].startswith("sk-proj-")
    assert by_rule["ipv4_public"]["masked"] == "93.x.x.x"
    # The same findings, the same hashes, in the database.
    stored = query(db, "SELECT line, start_byte, end_byte, rule_id, masked, value_hash FROM findings ORDER BY line")
    assert stored == [(o["line"], o["start"], o["end"], o["rule"], o["masked"], o["value_hash"]) for o in objs]


def test_jsonl_to_file_keeps_the_summary_on_stdout(tmp_path, cli, leaky):
    out = tmp_path / "findings.jsonl"
    r = cli("scan", leaky, "--db", tmp_path / "lw.duckdb", "--jsonl", out)
    assert r.rc == 1
    assert "scan 1:" in r.out and r.err == ""
    objs = jsonl(out.read_text())
    assert sorted(o["rule"] for o in objs) == ["email", "ipv4_public", "openai_api_key", "payment_card"]


def test_jsonl_subprocess_stdout_is_pure_json(tmp_path, cli_proc, leaky):
    p = cli_proc("scan", leaky, "--db", tmp_path / "lw.duckdb", "--jsonl", "-", "--no-progress")
    assert p.rc == 1, p.err
    assert len(jsonl(p.out)) == 4
    assert "scan 1:" in p.err


def test_quiet_prints_nothing(tmp_path, cli, leaky):
    r = cli("scan", leaky, "--db", tmp_path / "lw.duckdb", "-q")
    assert (r.rc, r.out, r.err) == (1, "", "")


# --- raw values --------------------------------------------------------------------------------------


def test_no_raw_value_anywhere_by_default(tmp_path, cli, query, leaky):
    db = tmp_path / "lw.duckdb"
    out = tmp_path / "f.jsonl"
    r1 = cli("scan", leaky, "--db", db, "--jsonl", out)
    r2 = cli("scan", leaky, "--db", tmp_path / "other.duckdb", "--jsonl", "-")
    assert r1.rc == r2.rc == 1
    assert query(db, "SELECT count(*), count(raw_value) FROM findings") == [(4, 0)]
    blob = db.read_bytes() + out.read_bytes() + r1.out.encode() + r1.err.encode() + r2.out.encode() + r2.err.encode()
    for secret in (EMAIL, CARD, CARD.replace(" ", ""), KEY, KEY[8:]):
        assert secret.encode() not in blob, secret
    assert all("raw" not in o for o in jsonl(out.read_text()))


def test_store_raw_keeps_raw_values(tmp_path, cli, query, leaky):
    db = tmp_path / "lw.duckdb"
    r = cli("scan", leaky, "--db", db, "--store-raw", "--jsonl", "-")
    assert r.rc == 1
    assert query(db, "SELECT rule_id, raw_value FROM findings ORDER BY line") == [
        ("email", EMAIL), ("payment_card", CARD), ("openai_api_key", KEY), ("ipv4_public", IP)]
    objs = jsonl(r.out)
    assert {o["rule"]: o["raw"] for o in objs}["openai_api_key"] == KEY
    assert all(JSON_KEYS | {"raw"} <= set(o) <= JSON_KEYS | OPTIONAL_JSON_KEYS | {"raw"} for o in objs)
    # The summary never shows raw values, even then.
    assert KEY not in r.err and EMAIL not in r.err


# --- the database files ------------------------------------------------------------------------------


def test_database_and_key_are_private(tmp_path, leaky):
    db = tmp_path / "lw.duckdb"
    out = tmp_path / "f.jsonl"
    p = subprocess.run([sys.executable, "-m", "leakwatch", "scan", str(leaky), "--db", str(db), "--jsonl", str(out)],
                       capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0o022))
    assert p.returncode == 1, p.stderr
    key = Path(f"{db}.key")
    for f in (db, key, out):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    wal = Path(f"{db}.wal")
    assert not wal.exists() or stat.S_IMODE(wal.stat().st_mode) == 0o600
    # Loosened permissions are tightened again on the next run.
    db.chmod(0o644)
    key.chmod(0o644)
    p = subprocess.run([sys.executable, "-m", "leakwatch", "scan", str(leaky), "--db", str(db), "-q"],
                       capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0o022))
    assert p.returncode == 1, p.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and stat.S_IMODE(key.stat().st_mode) == 0o600


def test_scanning_the_database_directory_skips_the_database(tmp_path, cli, query, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("app.log").write_text(f"mail={EMAIL}\n")
    for _ in range(2):  # the second time the database and its key exist in the scanned directory
        r = cli("scan", ".", "--db", "lw.duckdb", "--rescan")
        assert r.rc == 1, r.err
        assert r.err == ""
    # Stored absolute: the same file scanned from elsewhere is the same source.
    assert query(tmp_path / "lw.duckdb", "SELECT DISTINCT path FROM sources") == [(str(tmp_path / "app.log"),)]


def test_same_file_from_another_directory_is_not_stored_twice(tmp_path, cli, query, monkeypatch):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "app.log").write_text(f"mail={EMAIL}\n")
    db = tmp_path / "lw.duckdb"
    monkeypatch.chdir(tmp_path)
    assert cli("scan", "logs/app.log", "--db", str(db), "--rescan").rc == 1
    monkeypatch.chdir(tmp_path / "logs")
    r = cli("scan", "app.log", "--db", str(db), "--rescan")
    assert r.rc == 1
    assert query(db, "SELECT count(*) FROM findings") == [(1,)]


# --- re-scans --------------------------------------------------------------------------------------


def test_rescanning_adds_no_duplicates_and_still_fails(tmp_path, cli, query, leaky):
    db = tmp_path / "lw.duckdb"
    assert cli("scan", leaky, "--db", db, "-q").rc == 1
    assert count(query, db) == 4
    r = cli("scan", leaky, "--db", db)
    assert r.rc == 1  # the findings are known, not gone
    assert "4 findings (0 new)" in flat(r.out)
    assert count(query, db) == 4
    r = cli("scan", leaky, "--db", db, "--rescan")
    assert r.rc == 1
    assert "4 findings (0 new)" in flat(r.out)
    assert count(query, db) == 4
    assert query(db, "SELECT scan_id, n_findings FROM scans ORDER BY scan_id") == [(1, 4), (2, 0), (3, 0)]
    # --rescan really read the file again.
    assert query(db, "SELECT scan_id, status, n_records FROM sources ORDER BY source_id") == [(1, "ok", 6), (3, "ok", 6)]


def test_changed_file_is_rescanned_and_only_new_findings_are_added(tmp_path, cli, query, leaky):
    db = tmp_path / "lw.duckdb"
    assert cli("scan", leaky, "--db", db, "-q").rc == 1
    with open(leaky, "a") as f:
        f.write("2024-05-01 10:00:05 INFO contact mail=ops@example.com\n")
    r = cli("scan", leaky, "--db", db)
    assert r.rc == 1
    assert "5 findings (1 new)" in flat(r.out)
    assert query(db, "SELECT line, rule_id FROM findings ORDER BY line")[-1] == (7, "email")
    assert count(query, db) == 5


# --- paths -------------------------------------------------------------------------------------------


def test_directories_recursively_globs_and_gzip(tmp_path, cli, query, monkeypatch):
    root = tmp_path / "logs"
    (root / "2024" / "05" / "01").mkdir(parents=True)
    (root / "a.log").write_text(f"mail={EMAIL}\n")
    (root / "2024" / "b.txt").write_text(f"card {CARD}\n")
    (root / "2024" / "05" / "01" / "c.log.gz").write_bytes(gzip.compress(f"x\nkey {KEY}\n".encode()))
    (root / "2024" / "05" / "01" / "d.log").write_text(f"{IP} GET /\n")
    db = tmp_path / "lw.duckdb"
    r = cli("scan", root, "--db", db, "-q")
    assert r.rc == 1
    got = query(db, "SELECT source_path, line, rule_id FROM findings ORDER BY source_path")
    assert got == [
        (str(root / "2024" / "05" / "01" / "c.log.gz"), 2, "openai_api_key"),
        (str(root / "2024" / "05" / "01" / "d.log"), 1, "ipv4_public"),
        (str(root / "2024" / "b.txt"), 1, "payment_card"),
        (str(root / "a.log"), 1, "email"),
    ]
    assert query(db, "SELECT compression FROM sources WHERE path LIKE '%.gz'") == [("gzip",)]
    # A recursive glob, quoted so that leakwatch (not the shell) expands it: only *.log files.
    monkeypatch.chdir(tmp_path)
    db2 = tmp_path / "glob.duckdb"
    r = cli("scan", "logs/**/*.log", "--db", db2, "-q")
    assert r.rc == 1
    assert query(db2, "SELECT path FROM sources ORDER BY path") == [(str(tmp_path / "logs/2024/05/01/d.log"),), (str(tmp_path / "logs/a.log"),)]
    db3 = tmp_path / "glob3.duckdb"
    assert cli("scan", "logs/*/*/*/*.gz", "logs/a.log", "logs/a.log", "--db", db3, "-q").rc == 1
    assert query(db3, "SELECT path, n_findings FROM sources ORDER BY path") == [
        (str(tmp_path / "logs/2024/05/01/c.log.gz"), 1), (str(tmp_path / "logs/a.log"), 1)]


# --- parallel workers ----------------------------------------------------------------------------


def write_big_log(path: Path, size: int) -> tuple[int, dict[str, int]]:
    """~size bytes of log lines; every 61st line leaks an email that encodes its own line number,
    every 97th a card, every 89th a public IP. Returns (lines, expected findings per rule)."""
    cards = ["4111 1111 1111 1111", "5555 5555 5555 4444", "4012 8888 8888 1881"]
    n = 0
    want = {"email": 0, "payment_card": 0, "ipv4_public": 0}
    with open(path, "w") as f:
        buf = []
        written = 0
        while written < size:
            n += 1
            if n % 61 == 0:
                s = f'{{"ts":"2024-05-01T10:00:00Z","level":"INFO","user":{{"email":"user{n}@example.com"}}}}\n'
                want["email"] += 1
            elif n % 97 == 0:
                s = f"2024-05-01 10:00:00 INFO payment card {cards[n % 3]} accepted for order {n}\n"
                want["payment_card"] += 1
            elif n % 89 == 0:
                s = f'93.184.{n % 200 + 1}.{n % 250 + 1} - - [01/May/2024:10:00:00 +0000] "GET /o/{n} HTTP/1.1" 200 9\n'
                want["ipv4_public"] += 1
            else:
                s = f"2024-05-01 10:00:00 INFO order {n} processed in {n % 997} ms by worker-{n % 8} ok\n"
            buf.append(s)
            written += len(s)
            if len(buf) >= 10_000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))
    return n, want


def scan_set(query, db) -> set:
    return set(query(db, "SELECT source_path, line, start_byte, rule_id, value_hash FROM findings"))


def test_workers_2_equals_workers_1_on_a_big_file(tmp_path, cli, query):
    big = tmp_path / "big.log"
    n_lines, want = write_big_log(big, 40 << 20)
    size = big.stat().st_size
    # Guard: the file really is cut into several ranges for the workers.
    assert size >= 2 * MIN_RANGE_BYTES
    assert len(split_points(str(big), size, max(2 * 4, size // RANGE_BYTES), min_part=MIN_RANGE_BYTES)) >= 3
    db1, db2 = tmp_path / "w1.duckdb", tmp_path / "w2.duckdb"
    r1 = cli("scan", big, "--db", db1, "--workers", "1", "--store-raw", "-q")
    shutil.copy(f"{db1}.key", f"{db2}.key")  # same HMAC key, so value hashes are comparable
    r2 = cli("scan", big, "--db", db2, "--workers", "2", "--store-raw", "--jsonl", "-", "-q")
    assert r1.rc == r2.rc == 1
    one, two = scan_set(query, db1), scan_set(query, db2)
    assert dict(query(db1, "SELECT rule_id, count(*) FROM findings GROUP BY ALL")) == want
    assert two == one
    # Independently of workers=1: each email says which line it is on.
    emails = query(db2, "SELECT line, raw_value FROM findings WHERE rule_id = 'email'")
    assert len(emails) == want["email"]
    assert all(raw == f"user{line}@example.com" for line, raw in emails)
    assert query(db2, "SELECT n_records FROM sources") == [(n_lines,)]
    # JSON lines come out in file order even with workers.
    lines = [json.loads(x)["line"] for x in r2.out.splitlines()]
    assert len(lines) == len(two) and lines == sorted(lines)


def test_workers_2_equals_workers_1_on_a_directory(tmp_path, cli, query):
    d = tmp_path / "logs"
    (d / "sub").mkdir(parents=True)
    write_big_log(d / "mid.log", 18 << 20)  # big enough to be split in two ranges
    for i in range(4):
        write_big_log(d / "sub" / f"small{i}.log", 50_000 + i * 7_000)
    (d / "sub" / "z.log.gz").write_bytes(gzip.compress((d / "sub" / "small1.log").read_bytes()))
    (d / "empty.log").write_text("")
    db1, db2 = tmp_path / "w1.duckdb", tmp_path / "w2.duckdb"
    assert cli("scan", d, "--db", db1, "--workers", "1", "-q").rc == 1
    shutil.copy(f"{db1}.key", f"{db2}.key")
    assert cli("scan", d, "--db", db2, "--workers", "2", "-q").rc == 1
    one, two = scan_set(query, db1), scan_set(query, db2)
    assert len({s for s, *_ in one}) == 6
    assert two == one
    q = "SELECT path, status, n_records, n_findings FROM sources ORDER BY path"
    assert query(db1, q) == query(db2, q)


def test_building_the_cli_parser_stays_cheap():
    # Every `leakwatch` command builds the whole parser: registering the subcommands must not
    # load the scanning pipeline (numpy, DuckDB, the native core: ~0.3 s) — `leakwatch --help`
    # and `leakwatch incidents list` should not pay for it.
    import subprocess
    import sys

    code = ("import sys, leakwatch.cli; leakwatch.cli.build_parser(); "
            "print(sorted(m for m in ('numpy', 'duckdb', 'leakwatch.pipeline', 'leakwatch._core.scanner') "
            "if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]"
