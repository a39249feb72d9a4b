"""Bad input through the real CLI. For each: a clear message naming the file (and line or rule),
the rest of the scan goes on, what was stored stays stored, and the exit code says so (2)."""
from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EMAIL = "jane.doe@example.com"
EMAIL2 = "john.smith@example.com"
CARD = "4111 1111 1111 1111"
KEY = "sk-proj-FAKEtestKEY0a1b2c3d4e5f6g7h8i9j0kLmNoP"


@pytest.fixture
def good(tmp_path) -> Path:
    """A well-formed log with one finding on line 2: proves the rest of the scan still ran."""
    p = tmp_path / "good.log"
    p.write_text(f"2024-05-01 INFO start\n2024-05-01 INFO signup mail={EMAIL2}\n")
    return p


def findings(query, db, path=None):
    sql = "SELECT source_path, line, start_byte, end_byte, rule_id, masked, raw_value FROM findings"
    if path is None:
        return query(db, sql + " ORDER BY source_path, line, start_byte")
    return query(db, sql + " WHERE source_path = ? ORDER BY line, start_byte", str(path))


def errors(query, db):
    return query(db, "SELECT source_path, line, kind, message FROM scan_errors ORDER BY error_id")


def assert_good_scanned(query, db, good):
    rows = findings(query, db, good)
    assert [(r[1], r[4]) for r in rows] == [(2, "email")]


def input_error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("leakwatch: input error: ")]


# --- bytes inside lines ------------------------------------------------------------------------


def test_invalid_utf8_around_a_finding(tmp_path, cli, query, good):
    line1 = b"bad \xff\xfe bytes email=" + EMAIL.encode() + b" \xc3\x28 tail"
    line2 = b"2024 auth password=Hunter\xff\xfe2xyz! end"  # invalid UTF-8 inside the value
    p = tmp_path / "latin.log"
    p.write_bytes(line1 + b"\n" + line2 + b"\n")
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, good, "--db", db, "--jsonl", "-", "--store-raw")
    assert r.rc == 1, r.err
    objs = [json.loads(x) for x in r.out.splitlines()]
    by_rule = {o["rule"]: o for o in objs if o["source"] == str(p)}
    email = by_rule["email"]
    assert email["line"] == 1
    assert line1[email["start"]:email["end"]] == EMAIL.encode()
    assert email["raw"] == EMAIL and email["masked"] != EMAIL and email["masked"].endswith(".com")
    pw = by_rule["password"]
    assert pw["line"] == 2
    value = line2[pw["start"]:pw["end"]]
    assert value.startswith(b"Hunter\xff\xfe2")
    assert pw["raw"] == value.decode("utf-8", "backslashreplace")
    assert isinstance(pw["masked"], str) and "Hunter" not in pw["masked"]
    stored = findings(query, db, p)
    assert {(r[1], r[4]) for r in stored} == {(1, "email"), (2, "password")}
    assert_good_scanned(query, db, good)
    assert errors(query, db) == []


def test_nul_bytes_inside_lines_are_scanned(tmp_path, cli, query):
    p = tmp_path / "nul.log"
    p.write_bytes(b"a\x00b user=" + EMAIL.encode() + b" \x00 x\n"
                  + b"\x00\x00 payment card " + CARD.encode() + b" \x00\n"
                  + b"plain\n")
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, "--db", db, "-q")
    assert r.rc == 1, r.err
    assert r.err == ""
    rows = findings(query, db, p)
    assert [(x[1], x[4]) for x in rows] == [(1, "email"), (2, "payment_card")]
    assert rows[0][2] == len(b"a\x00b user=")
    assert query(db, "SELECT n_records, status FROM sources") == [(3, "ok")]


# --- a 50 MB line without a newline ------------------------------------------------------------


MAXRSS = textwrap.dedent(
    """\
    import resource, subprocess, sys
    p = subprocess.run([sys.executable, "-m", "leakwatch", *sys.argv[1:]], capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    sys.exit(p.returncode)
    """
)


def scan_measured(*args) -> tuple[int, str, str, int]:
    """Run ``leakwatch ARGS`` in a fresh process whose only child is the scan; returns
    (rc, stdout, stderr, peak RSS of the scan in bytes)."""
    p = subprocess.run([sys.executable, "-c", MAXRSS, *map(str, args)], capture_output=True, text=True, timeout=120)
    out, _, rss = p.stdout.rpartition("MAXRSS_KB ")
    return p.returncode, out, p.stderr, int(rss) * 1024


def test_50mb_line_without_newline(tmp_path, query, good):
    size = 50 << 20
    p = tmp_path / "huge.log"
    with open(p, "wb") as f:
        f.write(b"start token " + KEY.encode() + b" then ")
        block = b"abcdefghij" * 100_000
        for _ in range(size // len(block)):
            f.write(block)
        f.write(b"\nline two mail=" + EMAIL.encode() + b"\n")
    db = tmp_path / "lw.duckdb"
    rc, out, err, rss = scan_measured("scan", p, good, "--db", db, "--jsonl", "-", "-q")
    assert rc == 2, err  # the over-long line is reported as an input problem
    objs = [json.loads(x) for x in out.splitlines()]
    key = [o for o in objs if o["rule"] == "openai_api_key"]
    assert [(o["line"], o["start"], o["end"]) for o in key] == [(1, 12, 12 + len(KEY))]
    assert [o["line"] for o in objs if o["rule"] == "email" and o["source"] == str(p)] == [2]
    (msg,) = input_error_lines(err)
    assert msg.startswith(f"leakwatch: input error: {p}:1: line longer than")
    assert ("long_line", 1) in [(e[2], e[1]) for e in errors(query, db)]
    assert_good_scanned(query, db, good)
    assert query(db, "SELECT n_records FROM sources WHERE path = ?", str(p)) == [(2,)]
    # Memory stays flat: the line is never held whole.
    assert rss < 300 << 20, f"peak RSS {rss >> 20} MiB"
    rc0, _, _, base = scan_measured("scan", good, "--db", tmp_path / "base.duckdb", "-q")
    assert rc0 == 1
    assert rss - base < 40 << 20, f"a 50 MiB line cost {(rss - base) >> 20} MiB over a tiny file"


# --- compressed input --------------------------------------------------------------------------


def test_truncated_gzip_keeps_findings_before_the_cut(tmp_path, cli, query, good):
    rng = random.Random(3)
    lines = [f"2024-05-01 INFO order {i} mail=user{i:05d}@example.com".encode() for i in range(4000)]
    lines += [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz ") for _ in range(120)) for _ in range(4000)]  # compresses less
    gz = gzip.compress(b"\n".join(lines) + b"\n")
    p = tmp_path / "rotated.log.gz"
    p.write_bytes(gz[: len(gz) * 3 // 4])
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, good, "--db", db)
    assert r.rc == 2
    (msg,) = input_error_lines(r.err)
    assert msg.startswith(f"leakwatch: input error: {p}:")
    assert "compressed data ends early or is corrupt" in msg
    (err_row,) = errors(query, db)
    assert err_row[0] == str(p) and err_row[2] == "truncated"
    rows = findings(query, db, p)
    assert len(rows) == 4000  # every email line came before the cut
    assert [x[1] for x in rows] == list(range(1, 4001))
    assert err_row[1] > 4000 and "kept every line before this one" in err_row[3]
    assert query(db, "SELECT status FROM sources WHERE path = ?", str(p)) == [("error",)]
    assert_good_scanned(query, db, good)


@pytest.mark.parametrize("damage", ["header", "early", "corrupt"])
def test_gzip_broken_near_the_start(tmp_path, cli, query, good, damage):
    """Damage inside the first 8 KiB (the sniffed head) must not crash the scan."""
    gz = bytearray(gzip.compress(f"mail={EMAIL}\n".encode() * 200))
    if damage == "header":
        gz = gz[:5]
    elif damage == "early":
        gz = gz[:14]
    else:
        gz[20:40] = b"\x00" * 20
    p = tmp_path / f"{damage}.gz"
    p.write_bytes(bytes(gz))
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, good, "--db", db)
    assert r.rc == 2, r.err
    assert "Traceback" not in r.err
    (msg,) = input_error_lines(r.err)
    assert msg.startswith(f"leakwatch: input error: {p}:1: compressed data ends early or is corrupt")
    assert [(e[0], e[2]) for e in errors(query, db)] == [(str(p), "truncated")]
    assert_good_scanned(query, db, good)


def test_gzip_detected_by_magic_bytes_without_gz_name(tmp_path, cli, query):
    p = tmp_path / "app.log.1"
    p.write_bytes(gzip.compress(f"line one\nmail: {EMAIL}\n".encode()))
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, "--db", db, "-q")
    assert r.rc == 1, r.err
    assert [(x[1], x[4]) for x in findings(query, db, p)] == [(2, "email")]
    assert query(db, "SELECT compression, n_records FROM sources") == [("gzip", 2)]


@pytest.mark.parametrize("bom,enc", [(b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_utf16_log_with_bom(tmp_path, cli, query, bom, enc):
    text = f"Grüße, first line\r\nhello mail {EMAIL} bye\r\n"
    p = tmp_path / "win.log"
    p.write_bytes(bom + text.encode(enc))
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, "--db", db, "--jsonl", "-", "--store-raw")
    assert r.rc == 1, r.err
    (o,) = [json.loads(x) for x in r.out.splitlines()]
    assert (o["rule"], o["line"], o["raw"]) == ("email", 2, EMAIL)
    # Offsets are into the line as re-encoded to UTF-8 (what the scanner saw).
    line2 = text.encode("utf-8").split(b"\r\n")[1]
    assert line2[o["start"]:o["end"]] == EMAIL.encode()
    assert [(x[1], x[6]) for x in findings(query, db, p)] == [(2, EMAIL)]


# --- files that cannot be read -----------------------------------------------------------------


def test_dangling_symlink_and_non_files_are_reported(tmp_path, cli, query, good):
    dangling = tmp_path / "current.log"
    os.symlink(tmp_path / "rotated-away" / "app.log", dangling)
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    under_file = good / "inner.log"  # a file used as a directory
    db = tmp_path / "lw.duckdb"
    r = cli("scan", dangling, fifo, under_file, good, "--db", db)
    assert r.rc == 2
    msgs = input_error_lines(r.err)
    assert len(msgs) == 3
    assert f"leakwatch: input error: {dangling}: No such file or directory" in msgs
    assert any(m.startswith(f"leakwatch: input error: {fifo}: not a regular file (a pipe or a device") for m in msgs)
    assert any(m.startswith(f"leakwatch: input error: {under_file}: ") for m in msgs)
    assert {e[0] for e in errors(query, db)} == {str(dangling), str(fifo), str(under_file)}
    assert_good_scanned(query, db, good)
    assert query(db, "SELECT status FROM scans") == [("partial",)]


def test_dangling_symlink_inside_a_scanned_directory(tmp_path, cli, query):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "a.log").write_text(f"mail={EMAIL}\n")
    os.symlink(d / "gone.log", d / "b.log")
    db = tmp_path / "lw.duckdb"
    r = cli("scan", d, "--db", db)
    assert r.rc == 2
    assert input_error_lines(r.err) == [f"leakwatch: input error: {d / 'b.log'}: No such file or directory"]
    assert [(x[0], x[4]) for x in findings(query, db)] == [(str(d / "a.log"), "email")]


def test_chmod_000_file(tmp_path, cli, query, good):
    """Permission denied is reported like any unreadable file. Root reads the file anyway (CI
    runs as root): then it must simply be scanned."""
    p = tmp_path / "secret.log"
    p.write_text(f"mail={EMAIL}\n")
    p.chmod(0)
    try:
        db = tmp_path / "lw.duckdb"
        r = cli("scan", p, good, "--db", db)
        if os.geteuid() != 0:
            assert r.rc == 2
            assert input_error_lines(r.err) == [f"leakwatch: input error: {p}: Permission denied"]
            assert findings(query, db, p) == []
        else:
            assert r.rc == 1 and r.err == ""
            assert [x[4] for x in findings(query, db, p)] == ["email"]
        assert_good_scanned(query, db, good)
    finally:
        p.chmod(0o600)


def test_empty_file_is_fine(tmp_path, cli, query):
    p = tmp_path / "empty.log"
    p.write_bytes(b"")
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, "--db", db)
    assert r.rc == 0, r.err
    assert r.err == ""
    assert "No findings." in r.out
    assert query(db, "SELECT path, status, n_records, n_findings FROM sources") == [(str(p), "ok", 0, 0)]
    assert errors(query, db) == []
    assert query(db, "SELECT status, n_records FROM scans") == [("ok", 0)]


@pytest.mark.parametrize("kind", ["png", "random", "duckdb"])
def test_binary_file_is_skipped_with_a_message(tmp_path, cli, query, good, kind):
    rng = random.Random(1)
    noise = bytes(rng.randrange(256) for _ in range(20_000))
    if kind == "png":
        data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + noise[:4000] + f" mail={EMAIL} ".encode() + noise
    elif kind == "random":
        data = noise[:9000] + f"\n mail={EMAIL}\n".encode() + noise
    else:  # another database: a DuckDB file must never be scanned as a log
        cli("scan", good, "--db", tmp_path / "other.duckdb", "-q")
        data = (tmp_path / "other.duckdb").read_bytes()
    p = tmp_path / f"blob.{kind}"
    p.write_bytes(data)
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, good, "--db", db)
    assert r.rc == 2
    assert input_error_lines(r.err) == [f"leakwatch: input error: {p}: binary file (mostly control bytes), not scanned"]
    assert findings(query, db, p) == []
    assert query(db, "SELECT status FROM sources WHERE path = ?", str(p)) == [("skipped",)]
    assert [(e[0], e[2]) for e in errors(query, db)] == [(str(p), "binary")]
    assert_good_scanned(query, db, good)


# --- bad rules ---------------------------------------------------------------------------------


BAD_RULES = textwrap.dedent(
    """\
    rules:
      - id: typo_rule
        entity: TEST_TOKEN
        regx: '\\bOTHER-[0-9]{6}\\b'
        severity: high
      - id: bad_regex
        entity: TEST_TOKEN
        regex: '(unclosed'
      - id: too_complex
        entity: TEST_TOKEN
        regex: '(?:[a-z0-9]{1,100}\\.){1,10}'
      - id: catastrophic
        entity: TEST_TOKEN
        regex: 'k=(?P<value>(a+)+)b'
      - id: still_fine
        entity: TEST_TOKEN
        regex: '\\bFINE-[0-9]{4}\\b'
        severity: low
    """
)
GOOD_RULES = textwrap.dedent(
    """\
    rules:
      - id: good_token
        entity: TEST_TOKEN
        regex: '\\bTOKEN-[0-9]{6}\\b'
        severity: high
    """
)


def test_bad_rules_are_named_skipped_and_the_rest_runs(tmp_path, cli, query):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a_bad.yaml").write_text(BAD_RULES)
    (rules / "b_good.yaml").write_text(GOOD_RULES)
    (rules / "c_broken.yml").write_text("rules:\n  - id: x\n    regex: [unclosed\n")
    p = tmp_path / "app.log"
    p.write_text("x TOKEN-123456 y OTHER-654321 FINE-1234 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaac (unclosed\n")
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, "--rules", rules, "--db", db, "--jsonl", "-")
    assert r.rc == 2
    errs = [ln for ln in r.err.splitlines() if ln.startswith("leakwatch: rule error: ")]
    bad = rules / "a_bad.yaml"
    assert len(errs) == 5, r.err
    assert errs[0] == (f"leakwatch: rule error: {bad}:4: rule 'typo_rule': field 'regx': "
                       "unknown field 'regx' (did you mean 'regex'?)")
    assert errs[1].startswith(f"leakwatch: rule error: {bad}:8: rule 'bad_regex': field 'regex': RE2 rejects it")
    assert errs[2].startswith(f"leakwatch: rule error: {bad}:11: rule 'too_complex': field 'regex': too complex")
    assert errs[3].startswith(f"leakwatch: rule error: {bad}:14: rule 'catastrophic': field 'regex': nested unbounded")
    assert errs[4].startswith(f"leakwatch: rule error: {rules / 'c_broken.yml'}:") and "YAML syntax error" in errs[4]
    assert sorted(json.loads(x)["rule"] for x in r.out.splitlines()) == ["good_token", "still_fine"]
    assert sorted(x[4] for x in findings(query, db, p)) == ["good_token", "still_fine"]
    stored = query(db, "SELECT source_path, kind, message FROM scan_errors ORDER BY error_id")
    assert [(s[0], s[1]) for s in stored] == [(str(bad), "rule")] * 4 + [(str(rules / "c_broken.yml"), "rule")]
    assert "typo_rule" in stored[0][2]


def test_rules_dir_without_rules_is_an_error(tmp_path, cli, good):
    empty = tmp_path / "rules"
    empty.mkdir()
    db = tmp_path / "lw.duckdb"
    r = cli("scan", good, "--rules", empty, "--db", db)
    assert r.rc == 2
    assert "no enabled rules" in r.err and str(empty) in r.err


# --- paths that do not exist -------------------------------------------------------------------


def test_missing_path_and_empty_glob(tmp_path, cli, query, good):
    missing = tmp_path / "nope.log"
    pattern = str(tmp_path / "archive-*.log.gz")
    db = tmp_path / "lw.duckdb"
    r = cli("scan", missing, pattern, good, "--db", db)
    assert r.rc == 2
    assert input_error_lines(r.err) == [
        f"leakwatch: input error: {missing}: no such file or directory",
        f"leakwatch: input error: {pattern}: pattern matched no files",
    ]
    assert [(e[0], e[2]) for e in errors(query, db)] == [(str(missing), "missing"), (pattern, "missing")]
    assert_good_scanned(query, db, good)


def test_long_paths_in_messages_are_not_wrapped(tmp_path, cli):
    d = tmp_path / ("very-long-directory-name-" * 4)
    d.mkdir()
    missing = d / "this-file-is-not-there-either.log"
    r = cli("scan", missing, "--db", tmp_path / "lw.duckdb", "-q")
    assert r.rc == 2
    assert r.err == f"leakwatch: input error: {missing}: no such file or directory\n"


def test_only_missing_inputs_still_exit_2_not_0(tmp_path, cli):
    r = cli("scan", tmp_path / "nope.log", "--db", tmp_path / "lw.duckdb", "--fail-on", "critical")
    assert r.rc == 2


# --- earlier findings survive a bad run --------------------------------------------------------


def test_findings_already_stored_stay_stored(tmp_path, cli, query, good):
    first = tmp_path / "first.log"
    first.write_text(f"mail={EMAIL}\ncard {CARD}\n")
    db = tmp_path / "lw.duckdb"
    assert cli("scan", first, "--db", db, "-q").rc == 1
    before = findings(query, db)
    assert len(before) == 2
    trunc = tmp_path / "cut.gz"
    trunc.write_bytes(gzip.compress(b"x\n" * 10_000)[:30])
    os.symlink(tmp_path / "gone", tmp_path / "dangling.log")
    r = cli("scan", tmp_path / "dangling.log", trunc, good, tmp_path / "nope", "--db", db, "-q")
    assert r.rc == 2
    assert len(input_error_lines(r.err)) == 3
    after = findings(query, db)
    assert set(before) <= set(after)
    assert_good_scanned(query, db, good)
    assert query(db, "SELECT scan_id, status FROM scans ORDER BY scan_id") == [(1, "ok"), (2, "partial")]


# --- the database itself -----------------------------------------------------------------------


def test_database_that_is_not_duckdb(tmp_path, cli, cli_proc, good):
    db = tmp_path / "findings.duckdb"
    junk = b"this is my spreadsheet, not a database\n" * 100
    db.write_bytes(junk)
    r = cli("scan", good, "--db", db)
    assert r.rc == 3
    assert r.err.startswith(f"leakwatch: database error: {db}: not a DuckDB database")
    assert db.read_bytes() == junk  # never overwritten
    assert not Path(f"{db}.key").exists()
    p = cli_proc("scan", good, "--db", db)
    assert p.rc == 3
    assert f"{db}: not a DuckDB database" in p.err and "Traceback" not in p.err
    assert db.read_bytes() == junk


def test_database_path_is_a_directory(tmp_path, cli, good):
    r = cli("scan", good, "--db", tmp_path)
    assert r.rc == 3
    assert r.err.startswith(f"leakwatch: database error: {tmp_path}:")


def test_a_file_name_that_is_not_utf8_is_scanned_like_any_other(tmp_path, cli_proc, query, good):
    """File names are bytes; DuckDB text is UTF-8. A name with a stray byte (\\xff) is stored
    with the byte escaped, and neither it nor the files after it are lost."""
    d = tmp_path / "drop"
    d.mkdir()
    odd = os.path.join(os.fsencode(d), b"x\xff.log")
    with open(odd, "wb") as f:
        f.write(f"user mail={EMAIL}\n".encode())
    db = tmp_path / "lw.duckdb"
    for extra in ([], ["--workers", "2", "--rescan"]):
        r = cli_proc("scan", good, d, "--db", db, "--jsonl", tmp_path / "out.jsonl", *extra)
        assert r.rc == 1, r.err
        shown = str(d / "x") + "\\xff.log"
        assert query(db, "SELECT path, status, n_findings FROM sources WHERE path = ? ORDER BY source_id", shown)[-1] == (
            shown, "ok", 1)
        assert findings(query, db, shown)[0][4] == "email"
        assert len(findings(query, db, good)) == 1
        sources = [json.loads(line)["source"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert len(sources) == 2
        assert any(s.endswith("x\\xff.log") for s in sources)
    assert query(db, "SELECT count(*) FROM findings") == [(2,)]  # the rescan added nothing


def test_a_value_group_that_backtracks_exponentially_cannot_hang_the_scan(tmp_path, cli_proc, query):
    """``(?:(?:a|a)*b)?(?:a|a)*c`` passes every load check (no nested unbounded repeat) and
    takes Python's backtracking re days on 40 "a"s; the value group is found with RE2."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "evil.yaml").write_text(
        "rules:\n  - id: evil_alt\n    entity: EVIL_ID\n    regex: 'ZQ(?P<value>(?:(?:a|a)*b)?(?:a|a)*c)'\n"
        "    severity: high\n")
    p = tmp_path / "evil.log"
    p.write_text("ZQ" + "a" * 40 + "c tail\n")
    db = tmp_path / "lw.duckdb"
    r = cli_proc("scan", p, "--rules", rules, "--db", db, timeout=60)
    assert r.rc == 1, r.err
    assert query(db, "SELECT rule_id, start_byte, end_byte FROM findings") == [("evil_alt", 2, 43)]


def test_a_log_that_starts_with_a_run_of_nuls_is_scanned(tmp_path, cli, query, good):
    """Preallocated or crash-zeroed logs begin with NULs; the text after them is judged, not
    the first 8 KiB alone. A file of nothing but NULs is empty text, not an error."""
    p = tmp_path / "nulhead.log"
    p.write_bytes(b"\0" * 9000 + b"".join(b"user mail=nh%d@example.com\n" % i for i in range(200)))
    z = tmp_path / "zeros.log"
    z.write_bytes(b"\0" * 50_000)
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, z, good, "--db", db)
    assert r.rc == 1, r.err
    assert input_error_lines(r.err) == []
    assert len(findings(query, db, p)) == 200
    assert query(db, "SELECT status, n_findings FROM sources WHERE path = ?", str(z)) == [("ok", 0)]


@pytest.mark.parametrize("enc", ["utf-16-le", "utf-16-be"])
def test_utf16_log_without_bom(tmp_path, cli, query, enc):
    p = tmp_path / "win.log"
    p.write_bytes(f"2024-05-01 start\r\nsignup mail={EMAIL}\r\n".encode(enc))
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, "--db", db)
    assert r.rc == 1, r.err
    assert [(x[1], x[2], x[3]) for x in findings(query, db, p)] == [(2, 12, 12 + len(EMAIL))]


def test_a_file_truncated_during_the_scan_is_not_recorded_complete(tmp_path, query):
    """Copy-and-truncate rotation while a scan reads the file: what was read stays stored, the
    file is an error with a "changed" problem, not "ok" with a short line count."""
    from leakwatch.pipeline import scan_paths

    p = tmp_path / "rotating.log"
    line = b"user mail=rot@example.com " + b"x" * 200 + b"\n"
    p.write_bytes(line * 400_000)  # ~90 MB: several ranges
    cut = []

    def progress(done, total, path):
        if not cut and done > 0:
            os.truncate(p, 1000)
            cut.append(done)

    db = tmp_path / "lw.duckdb"
    summary = scan_paths([str(p)], db, progress=progress)
    assert cut
    (fr,) = summary.files
    assert fr.status == "error"
    assert [(x.kind, "shrank" in x.message) for x in fr.problems] == [("changed", True)]
    assert summary.input_errors == 1
    assert query(db, "SELECT status FROM sources") == [("error",)]
    assert query(db, "SELECT kind FROM scan_errors") == [("changed",)]
    assert query(db, "SELECT count(*) FROM findings")[0][0] >= 1


def test_an_unchanged_file_reports_its_problems_again(tmp_path, cli, query, monkeypatch):
    """A re-run skips an unchanged file, but what was wrong with it still is: same message,
    same exit code (2), recorded for the new scan too. Paths given relative are recorded
    absolute, like the file's row in `sources`."""
    monkeypatch.chdir(tmp_path)
    Path("long.log").write_bytes(f"mail={EMAIL} ".encode() + b"x" * (9 << 20) + b"\n")
    db = tmp_path / "lw.duckdb"
    rcs, errs = [], []
    for _ in range(2):
        r = cli("scan", "long.log", "--db", db)
        rcs.append(r.rc)
        errs.append(input_error_lines(r.err))
    assert rcs == [2, 2]
    assert errs[0][0].startswith("leakwatch: input error: long.log:1: line longer than")
    assert errs[1][0].startswith(errs[0][0]) and errs[1][0].endswith("(unchanged since an earlier scan)")
    assert query(db, "SELECT scan_id, source_path, kind FROM scan_errors ORDER BY error_id") == [
        (1, str(tmp_path / "long.log"), "long_line"), (2, str(tmp_path / "long.log"), "long_line")]


# --- JSON nested past the interpreter's recursion limit ------------------------------------------


def test_json_nested_thousands_deep_neither_stops_the_scan_nor_loses_a_finding(tmp_path, cli, query, good):
    """Anyone who can put a bearer token or a JSON body into a logged request can nest it
    5,000 deep: json.loads raises RecursionError (not ValueError) there. The JWT validator, the
    quick JSON reader of AI calls and the format sniffer took only ValueError, so the scan died
    (exit 70) and the findings of the chunk were lost; such a line in the first KBs made the
    sniffer call the whole file text."""
    import base64

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    deep = "[" * 5000 + "]" * 5000
    jwt = ".".join([b64(b'{"alg":"HS256","typ":"JWT"}'), b64(('{"a":' + deep + "}").encode()), "c2ln"])
    p = tmp_path / "app.jsonl"
    p.write_text("\n".join([
        json.dumps({"ts": "2024-03-11T16:00:01Z", "email": EMAIL}),
        json.dumps({"ts": "2024-03-11T16:00:00Z", "msg": "deep", "deep": None}).replace("null", deep),
        json.dumps({"ts": "2024-03-11T16:00:02Z", "headers": {"Authorization": f"Bearer {jwt}"}}),
        json.dumps({"ts": "2024-03-11T16:00:03Z", "url": "https://api.openai.com/v1/chat/completions",
                    "body": None}).replace("null", deep),
        json.dumps({"ts": "2024-03-11T16:00:04Z", "email": EMAIL2}),
    ]) + "\n")
    db = tmp_path / "lw.duckdb"
    r = cli("scan", p, good, "--db", db)
    assert r.rc == 1, r.err
    assert "internal error" not in r.err
    assert [(x[1], x[4]) for x in findings(query, db, p) if x[4] == "email"] == [(1, "email"), (5, "email")]
    assert query(db, "SELECT format FROM sources WHERE path = ?", str(p)) == [("jsonl",)]
    # The e-mails were read as JSON fields, with their times.
    assert query(db, "SELECT field_path, ts IS NOT NULL FROM findings WHERE source_path = ? AND rule_id = 'email'"
                     " ORDER BY line", str(p)) == [("email", True), ("email", True)]
    # The AI call in the deep line was still seen.
    assert query(db, "SELECT line, url_host FROM events WHERE source_path = ?", str(p)) == [(4, "api.openai.com")]
    assert_good_scanned(query, db, good)


def test_a_json_line_over_the_record_limit_is_one_parse_problem(tmp_path):
    """A 9 MiB JSON line is scanned in pieces: its first piece does not parse (one problem),
    and the pieces after it are text, not a second "not JSON" problem each. The e-mails at its
    start and its end are found."""
    from helpers import read_rows

    from leakwatch.pipeline import scan_paths

    p = tmp_path / "big.jsonl"
    head = json.dumps({"ts": "2024-03-11T16:00:00Z", "e": EMAIL})
    filler = "x" * (9 << 20)
    p.write_text(head + "\n" + '{"ts":"2024-03-11T16:00:01Z","to":"' + EMAIL + '","blob":"' + filler
                 + '","phone_mail":"' + EMAIL2 + '"}\n')
    summary = scan_paths([str(p)], tmp_path / "lw.duckdb")
    (f,) = summary.files
    assert f.parse_problems == 1 and [ln for ln, _ in f.parse_samples] == [2]
    assert [(pr.kind, pr.line) for pr in f.problems] == [("long_line", 2)]
    assert read_rows(tmp_path / "lw.duckdb", "SELECT line, masked FROM findings ORDER BY line, start_byte") == [
        (1, "j***@e******.com"), (2, "j***@e******.com"), (2, "j***@e******.com")]
