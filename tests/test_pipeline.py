"""The detector on realistic multi-format logs: the compiled per-candidate loop against the
Python reference loop, and line numbers / offsets when a file is read in many chunks."""
from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from leakwatch.detect.engine import Detector, batch_len, sniff_csv_header
from leakwatch.detect.rules import default_rules_dir, load_rules
from leakwatch.pipeline import scan_paths
from leakwatch.sources.files import ReadStats, iter_chunks

KEY = bytes(range(32))
FIRST = ["Jane", "John", "Zoë", "Łukasz", "Anna-Lena", "Müller", "O'Neil", "Chloé"]
LAST = ["Doe", "Smith", "Schäfer", "García", "Nowak", "Dubois"]
CARDS = ["4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444", "4111111111111112"]  # last fails Luhn


@pytest.fixture(scope="module")
def rules():
    rules, errors = load_rules([default_rules_dir()])
    assert errors == []
    return rules


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def json_and_access_log(n: int = 400, seed: int = 42) -> bytes:
    """JSON application lines, nginx access lines, key leaks and noise, mixed."""
    rng = random.Random(seed)
    jwt = f"eyJ{_b64({'alg': 'HS256', 'typ': 'JWT'})[3:]}.eyJ{_b64({'sub': '1234567890', 'name': 'Test'})[3:]}.c2lnbmF0dXJl"
    out = []
    for i in range(n):
        k = rng.randrange(9)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        if k == 0:
            out.append(json.dumps({"ts": f"2024-05-01T10:{i % 60:02d}:00Z", "level": "INFO",
                                   "customer": {"firstName": first, "lastName": last,
                                                "email": f"{first.lower()}.{i}@example.com",
                                                "phone": f"+49 30 1234{i:04d}"},
                                   "card": rng.choice(CARDS), "msg": "order placed"}, ensure_ascii=False))
        elif k == 1:
            ip = f"93.184.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
            out.append(f'{ip} - - [01/May/2024:10:00:{i % 60:02d} +0000] "GET /api/v1/orders/{i}?email=u{i}%40example.com '
                       f'HTTP/1.1" 200 {rng.randrange(100, 9000)} "-" "Mozilla/5.0 Chrome/120.0.0.0"')
        elif k == 2:
            out.append(f"2024-05-01 10:00:00 WARN upstream auth Authorization: Bearer sk-proj-FAKE{i:04d}abcdefGHIJKLmnopQRSTuv "
                       f"from 10.0.0.{rng.randrange(1, 255)}")
        elif k == 3:
            out.append(f"2024-05-01 10:00:00 DEBUG aws_secret_access_key=FAKEexampleKEYabcdefghij{i:04d}KLMNOPqrst "
                       f"AKIAFAKEEXAMPLE{i % 10}{i % 7}{i % 3}{i % 9}{i % 2}")
        elif k == 4:
            out.append(f'{{"event":"login","user":"{first} {last}","password":"Hunter{i}!x","token":"{jwt}",'
                       f'"client_ip":"2001:db8:85a3::8a2e:370:{i:x}"}}')
        elif k == 5:
            out.append(f"2024-05-01 INFO db url postgres://svc_user:S3cr3t{i}Pw@db.example.com:5432/app "
                       f"iban=DE89 3704 0044 0532 0130 00 dob=1985-0{1 + i % 9}-1{i % 10}")
        elif k == 6:
            out.append(b"2024-05-01 ERROR bad bytes \xff\xfe\xc3( in payload; mail=caf\xc3\xa9%d@example.com; ssn=123-45-%04d"
                       % (i, 6789 - i % 100))
        elif k == 7:
            out.append("")
        else:
            out.append(f"2024-05-01 10:00:00 INFO order {i} processed in {rng.randrange(1, 999)} ms by worker-{i % 8}")
    return b"\n".join(x if isinstance(x, bytes) else x.encode() for x in out) + b"\n"


def elf_csv(n: int = 300, seed: int = 7) -> bytes:
    """An EventLogFile-style export: quoted CSV with a header, FirstName/LastName/Email columns,
    then a few JSON lines appended (mixed files keep the header only for rows)."""
    rng = random.Random(seed)
    head = '"EVENT_TYPE","TIMESTAMP","USER_ID","FirstName","LastName","Email","CLIENT_IP","URI"'
    out = [head]
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        note = rng.choice(["", "contact, via phone", 'said ""hi""'])
        last_cell = f"{last} {note}" if note else last
        out.append(f'"API","2024050110{i % 60:02d}00.000","005000000000{i:03d}AAA","{first}","{last_cell}",'
                   f'"{first.lower()}{i}@example.com","198.51.{rng.randrange(0, 255)}.{rng.randrange(1, 255)}",'
                   f'"/services/data/v58.0"')
    for i in range(5):
        out.append(json.dumps({"FirstName": "Notcolumn", "email": f"json{i}@example.com"}))
    return "\n".join(out).encode() + b"\n"


SAMPLES = {"mixed.log": json_and_access_log, "elf.csv": elf_csv}


def run_detector(det: Detector, path: Path, chunk_size: int | None = None) -> dict:
    """Scan a whole file through ``det`` the way the pipeline does (one range); returns all rows
    as one batch, line numbers absolute."""
    first = path.read_bytes().split(b"\n", 1)[0]
    header = sniff_csv_header(first)
    column_rules = det.column_rules_for(header)
    kw = {} if chunk_size is None else {"chunk_size": chunk_size}
    merged: dict = {}
    stats = ReadStats()
    for chunk in iter_chunks(str(path), stats, **kw):
        batch, _ = det.process(chunk, header=header, column_rules=column_rules)
        for k, v in batch.items():
            merged.setdefault(k, []).extend(v)
    assert not [p for p in stats.problems if p.kind == "long_line"], "chunk size below the longest line"
    return merged


def as_rows(batch: dict) -> list[tuple]:
    keys = sorted(batch)
    return [tuple(batch[k][i] for k in keys) for i in range(batch_len(batch))]


@pytest.fixture(params=sorted(SAMPLES))
def sample(request, tmp_path) -> Path:
    p = tmp_path / request.param
    p.write_bytes(SAMPLES[request.param]())
    return p


def test_samples_are_realistic(sample, rules):
    """Guard for the tests below: the samples exercise many rules, CSV columns and raw bytes."""
    batch = run_detector(Detector(rules, KEY), sample)
    found = set(batch["rule_id"])
    if sample.name == "elf.csv":
        assert sniff_csv_header(sample.read_bytes().split(b"\n", 1)[0])[3] == "FirstName"
        assert {"email", "person_name", "ipv4_public"} <= found
        assert {"firstname", "lastname", "email", "clientip"} <= set(batch["field"])
    else:
        assert {"email", "payment_card", "ipv4_public", "openai_api_key", "jwt", "password"} <= found
        assert len(found) >= 9
    assert batch_len(batch) >= 200


@pytest.mark.parametrize("store_raw", [False, True])
@pytest.mark.parametrize("chunk_size", [None, 700])
def test_compiled_loop_equals_python_reference(sample, rules, store_raw, chunk_size):
    compiled = run_detector(Detector(rules, KEY, store_raw=store_raw, compiled=True), sample, chunk_size)
    reference = run_detector(Detector(rules, KEY, store_raw=store_raw, compiled=False), sample, chunk_size)
    assert batch_len(compiled) > 100
    assert set(compiled) == set(reference)
    for col in compiled:
        assert compiled[col] == reference[col], col
    # Types too: the DuckDB insert and JSONL writer see the same Python objects.
    assert [type(x) for x in compiled["confidence"]] == [type(x) for x in reference["confidence"]]


@pytest.mark.parametrize("compiled", [True, False])
def test_line_numbers_and_offsets_are_right_across_chunks(sample, rules, compiled):
    data = sample.read_bytes()
    lines = data.split(b"\n")
    det = Detector(rules, KEY, store_raw=True, compiled=compiled)
    whole = run_detector(det, sample)
    small = run_detector(det, sample, chunk_size=700)
    assert len(data) > 20 * 700  # really many chunks
    assert sorted(as_rows(small), key=repr) == sorted(as_rows(whole), key=repr)
    # Independent check: the raw value is exactly the bytes [start, end) of the 1-based line.
    for line, s, e, raw in zip(small["line"], small["start_byte"], small["end_byte"], small["raw_value"]):
        assert 1 <= line <= len(lines)
        assert 0 <= s < e <= len(lines[line - 1])
        assert lines[line - 1][s:e].decode("utf-8", "backslashreplace") == raw


def test_default_batches_hold_no_raw_values(sample, rules):
    batch = run_detector(Detector(rules, KEY), sample)
    assert set(batch["raw_value"]) == {None}
    text = sample.read_bytes()
    lines = text.split(b"\n")
    for line, s, e, masked, h in zip(batch["line"], batch["start_byte"], batch["end_byte"], batch["masked"],
                                      batch["value_hash"]):
        value = lines[line - 1][s:e].decode("utf-8", "backslashreplace")
        assert masked != value or len(value) <= 4, (masked, value)
        assert len(h) == 64 and value not in h


def test_scan_paths_on_samples_matches_the_detector(sample, rules, tmp_path, query):
    """The whole pipeline stores exactly the rows the detector produces."""
    db = tmp_path / "lw.duckdb"
    summary = scan_paths([str(sample)], db, rules=rules)
    assert summary.problems == [] and summary.rule_errors == []
    from leakwatch.store import Store

    with Store.open(db) as s:
        det = Detector(rules, s.key)
    batch = run_detector(det, sample)
    want = sorted(zip(batch["line"], batch["start_byte"], batch["end_byte"], batch["rule_id"], batch["value_hash"],
                      batch["masked"], batch["field"]))
    got = sorted(query(db, "SELECT line, start_byte, end_byte, rule_id, value_hash, masked, field FROM findings"))
    assert got == want
    assert summary.total_findings == len(want) == summary.new_findings
    assert summary.records == sample.read_bytes().count(b"\n")


def test_csv_name_cell_with_escaped_quotes_is_found_at_its_written_span(tmp_path):
    """A quoted CSV cell holding quotes ("" in the file) is still a candidate, and its offsets
    cover the cell as written in the line."""
    from leakwatch.detect.engine import Detector, sniff_csv_header
    from leakwatch.detect.rules import default_rules_dir, load_rules
    from leakwatch.sources.files import ReadStats, iter_chunks

    rules, errors = load_rules([default_rules_dir()])
    assert not errors
    path = tmp_path / "contacts.csv"
    row = b'"003000000000001","Jane ""JJ"" Doe","Smith"'
    path.write_bytes(b'"Id","FirstName","LastName"\n' + row + b"\n")
    header = sniff_csv_header(path.read_bytes().split(b"\n", 1)[0])
    det = Detector(rules, b"k" * 32)
    cols = det.column_rules_for(header)
    (chunk,) = list(iter_chunks(str(path), ReadStats()))
    batch, _ = det.process(chunk, header=header, column_rules=cols)
    found = {(f, s, e, m) for f, s, e, m, r in zip(batch["field"], batch["start_byte"], batch["end_byte"],
                                                  batch["masked"], batch["rule_id"]) if r == "person_name"}
    written = b'Jane ""JJ"" Doe'
    start = row.index(written)
    assert ("firstname", start, start + len(written), "J***") in found
    assert ("lastname", row.index(b"Smith"), row.index(b"Smith") + 5, "S***") in found
