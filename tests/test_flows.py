"""``leakwatch flows``: the data-flow map derived from realistic stored findings.

Expected flows are computed here, in plain Python, from the rows the test inserted (the sample
of test_export.py), not copied from the output.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_export import APIGW, ELF, ELF2, RAW_VALUES, SAMPLE, build_db

from leakwatch import flows
from leakwatch.flows import (
    FLOW_FIELDS,
    flow_rows,
    render_csv,
    render_json,
    render_markdown,
    write_flows,
)
from leakwatch.store import Store

WHEN = datetime(2024, 3, 13, 9, 0, tzinfo=UTC)

# What the test expects each reader's records to be labelled as (from the brief: format → system).
SYSTEM_OF_FORMAT = {
    "eventlogfile": "Salesforce (Event Monitoring)",
    "apigw": "AWS API Gateway",
    "heroku": "Heroku",
    "jsonl": "application",
}


def system_of(r: dict) -> str:
    if r["format"] == "mule":
        name = os.path.basename(r["source_path"])
        assert name.startswith("mule-app-") and name.endswith(".log")
        return "MuleSoft app " + name[len("mule-app-"):-len(".log")]
    return SYSTEM_OF_FORMAT[r["format"]]


def iso(ts: str | None) -> str | None:
    if ts is None:
        return None
    dt = datetime.fromisoformat(ts.replace("+00", "+00:00")).astimezone(UTC)
    frac = f".{dt.microsecond // 1000:03d}" if dt.microsecond else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def expected_flows(sample, *, include_internal: bool) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for _, r in sample:
        if not include_internal and not (r.get("dest_host") or r.get("dest_vendor")):
            continue
        key = (r.get("sf_object"), r.get("sf_field") or r["entity"], r.get("sf_field") is not None, system_of(r),
               r.get("dest_vendor"), r.get("dest_host"), r.get("dest_region"), r.get("dest_jurisdiction"),
               r.get("residency_violation"))
        groups[key].append(r)
    out = []
    for key, rs in groups.items():
        values = {r["raw"].lower() for r in rs}  # the store hashes the normalised (lower-cased) value
        subjects = {r["raw"].lower() for r in rs if r["entity"] in flows.SUBJECT_ENTITIES}
        times = sorted(r["ts"] for r in rs if r["ts"] is not None)
        out.append(dict(zip(
            ("sf_object", "data_item", "mapped_field", "system", "dest_vendor", "dest_host", "dest_region",
             "dest_jurisdiction", "residency_violation"), key),
            categories=sorted({r["entity"] for r in rs}),
            findings=len(rs), distinct_values=len(values), data_subjects=len(subjects),
            first_seen=iso(times[0]) if times else None, last_seen=iso(times[-1]) if times else None,
            source_files=sorted({r["source_path"] for r in rs}),
        ))

    def none_last(v):
        return (v is None, v if v is not None else "")

    def sort_key(f):
        violation_order = {True: 0, False: 1, None: 2}[f["residency_violation"]]
        return (none_last(f["sf_object"]), f["data_item"], not f["mapped_field"], f["system"],
                none_last(f["dest_vendor"]), none_last(f["dest_host"]), none_last(f["dest_region"]),
                none_last(f["dest_jurisdiction"]), violation_order)

    return [{k: f[k] for k in FLOW_FIELDS} for f in sorted(out, key=sort_key)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return build_db(tmp_path / "incident.duckdb")


def rows_of(db: Path, **kw) -> list[dict]:
    with Store.open(db, read_only=True) as s:
        return flow_rows(s.con, **kw)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# -- the rows ------------------------------------------------------------------------------------


def test_flow_rows_match_the_inserted_findings(db):
    got = rows_of(db)
    assert got == expected_flows(SAMPLE, include_internal=False)
    assert len(got) == 6  # the API Gateway e-mail and the app's client IP went nowhere external
    email = next(f for f in got if f["data_item"] == "Email")
    # Two ApexCallout files, three findings, two different addresses, two people.
    assert (email["sf_object"], email["system"], email["dest_host"]) == ("Contact", "Salesforce (Event Monitoring)",
                                                                         "api.openai.com")
    assert (email["findings"], email["distinct_values"], email["data_subjects"]) == (3, 2, 2)
    assert email["source_files"] == [ELF, ELF2]
    assert (email["first_seen"], email["last_seen"]) == ("2024-03-11T16:00:00Z", "2024-03-12T08:00:00Z")
    key = next(f for f in got if f["data_item"] == "OPENAI_API_KEY")
    assert key["mapped_field"] is False and key["data_subjects"] == 0 and key["system"] == "MuleSoft app orders-sync"


def test_all_includes_internal_flows(db):
    got = rows_of(db, include_internal=True)
    assert got == expected_flows(SAMPLE, include_internal=True)
    internal = [f for f in got if f["dest_host"] is None]
    assert [(f["data_item"], f["system"]) for f in internal] == [("EMAIL_ADDRESS", "AWS API Gateway"),
                                                                  ("IP_ADDRESS", "application")]
    assert internal[0]["source_files"] == [APIGW] and internal[0]["first_seen"] is None


def test_subject_entities_are_identifying_kinds_only():
    assert "EMAIL_ADDRESS" in flows.SUBJECT_ENTITIES and "US_SSN" in flows.SUBJECT_ENTITIES
    for not_a_person in ("OPENAI_API_KEY", "IP_ADDRESS", "DATE_OF_BIRTH"):
        assert not_a_person not in flows.SUBJECT_ENTITIES


def test_order_does_not_depend_on_insertion_order(tmp_path):
    a = build_db(tmp_path / "a.duckdb")
    b = build_db(tmp_path / "b.duckdb", order=list(reversed(range(len(SAMPLE)))))
    ra, rb = rows_of(a, include_internal=True), rows_of(b, include_internal=True)
    assert ra == rb
    for render in (lambda r: render_markdown(r, database="x", generated_at=WHEN), render_csv,
                   lambda r: render_json(r, database="x", generated_at=WHEN)):
        assert render(ra) == render(rb)


def test_unknown_and_missing_formats_still_get_a_system(tmp_path):
    sample = [
        (1, dict(SAMPLE[0][1], format="cloudfront", source_path="/logs/cf/E2ABC.2024-03-11.gz")),
        (1, dict(SAMPLE[0][1], format="ourformat", source_path="/logs/x.log")),
        (1, dict(SAMPLE[0][1], format=None, source_path="/logs/y.log")),
    ]
    got = rows_of(build_db(tmp_path / "u.duckdb", sample))
    assert sorted(f["system"] for f in got) == ["ourformat", "unknown", "web/CDN"]


# -- the files -----------------------------------------------------------------------------------


def test_markdown_report_lists_residency_violations_first(db):
    rows = rows_of(db)
    md = render_markdown(rows, database="incident.duckdb", generated_at=WHEN)
    assert md.startswith("# ")
    assert "2024-03-13T09:00:00Z" in md and "GDPR Art. 30" in md
    for column in ("Salesforce object", "System", "Recipient", "Residency", "Data subjects", "Source files"):
        assert f"**{column}**" in md  # each column is explained
    v, a = md.index("## Residency violations"), md.index("## All flows")
    assert v < a
    section_v, section_a = md[v:a], md[a:]
    table_rows = lambda s: [ln for ln in s.splitlines() if ln.startswith("| ") and not ln.startswith("| Salesforce")]
    n_violations = sum(1 for f in expected_flows(SAMPLE, include_internal=False) if f["residency_violation"])
    assert n_violations == 5
    assert len(table_rows(section_v)) == n_violations
    assert all("**VIOLATION**" in ln for ln in table_rows(section_v))
    assert len(table_rows(section_a)) == len(rows)
    assert "AWS Bedrock (bedrock-runtime.eu-central-1.amazonaws.com)" in section_a
    assert "AWS Bedrock" not in section_v
    assert "*OPENAI_API_KEY*" in section_a  # unmapped data shows the entity, in italics


def test_markdown_cells_escape_pipes(tmp_path):
    sample = [(1, dict(SAMPLE[0][1], source_path="/logs/odd|name.csv"))]
    md = render_markdown(rows_of(build_db(tmp_path / "p.duckdb", sample)), database="p", generated_at=WHEN)
    row = next(ln for ln in md.splitlines() if "odd" in ln)
    assert "odd\\|name.csv" in row
    assert len(re.split(r"(?<!\\)\|", row)) == 13 + 2  # 13 columns between the outer pipes


def test_empty_database_gives_empty_but_valid_reports(tmp_path):
    with Store.open(tmp_path / "e.duckdb") as s:
        rows = flow_rows(s.con)
        assert rows == []
        md = render_markdown(rows, database="e", generated_at=WHEN)
        assert "None found." in md and "No flows found." in md
        assert render_csv(rows) == ",".join(FLOW_FIELDS) + "\n"
        assert json.loads(render_json(rows, database="e", generated_at=WHEN))["flows"] == []


def test_write_flows_files_are_private_parseable_and_raw_free(db, tmp_path):
    out = tmp_path / "records"
    out.mkdir()
    with Store.open(db, read_only=True) as s:
        rows, written = write_flows(s.con, out, database="incident.duckdb", generated_at=WHEN)
    assert sorted(written) == ["csv", "json", "md"]
    assert sorted(os.listdir(out)) == ["data-flows.csv", "data-flows.json", "data-flows.md"]
    for p in written.values():
        assert mode(p) == 0o600
        text = p.read_text(encoding="utf-8")
        for raw in RAW_VALUES:
            assert raw not in text
    table = list(csv.DictReader(io.StringIO(written["csv"].read_text(encoding="utf-8"))))
    assert list(table[0]) == list(FLOW_FIELDS)
    assert len(table) == len(rows) == 6
    email = next(t for t in table if t["data_item"] == "Email")
    assert email["source_files"] == f"{ELF}; {ELF2}" and email["residency_violation"] == "true"
    doc = json.loads(written["json"].read_text(encoding="utf-8"))
    assert doc["flows"] == rows == expected_flows(SAMPLE, include_internal=False)
    assert doc["generated_at"] == "2024-03-13T09:00:00Z"


# -- the command ---------------------------------------------------------------------------------


def test_cli_writes_the_three_files(db, tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    r = cli("flows", "--db", db, "--out-dir", out)
    assert r.rc == 0, r.err
    assert "6 flow(s), 5 residency violation(s)" in r.out
    assert sorted(os.listdir(out)) == ["data-flows.csv", "data-flows.json", "data-flows.md"]
    assert all(mode(out / n) == 0o600 for n in os.listdir(out))


def test_cli_format_and_all(db, tmp_path, cli):
    r = cli("flows", "--db", db, "--out-dir", tmp_path, "--format", "json", "--all")
    assert r.rc == 0, r.err
    assert not (tmp_path / "data-flows.md").exists()
    doc = json.loads((tmp_path / "data-flows.json").read_text())
    assert doc["include_internal"] is True and len(doc["flows"]) == 8


@pytest.mark.parametrize("args,needle", [
    (["--format", "md,xml"], "--format 'md,xml'"),
    (["--out-dir", "/proc/no-such-dir/art30"], "cannot create it"),
])
def test_cli_usage_errors(db, cli, args, needle):
    r = cli("flows", "--db", db, *args)
    assert r.rc == 2 and needle in r.err


def test_cli_creates_a_private_out_dir(db, cli, tmp_path):
    out = tmp_path / "records" / "art30"
    r = cli("flows", "--db", db, "--out-dir", out)
    assert r.rc == 0, r.err
    assert (out / "data-flows.md").exists()
    assert (out.stat().st_mode & 0o777) == 0o700


def test_cli_missing_database(tmp_path, cli):
    missing = tmp_path / "nope.duckdb"
    r = cli("flows", "--db", missing, "--out-dir", tmp_path)
    assert r.rc == 2 and "no such database" in r.err and str(missing) in r.err
    assert not missing.exists() and not (tmp_path / "data-flows.md").exists()
