"""Drills without the clock: scenario files validated with file/line/field errors, deterministic
generation, fictional values that pass their checksums, and — with the real scanner — every
planted leak of every shipped scenario found, no background finding above ``low``, and the
expected incidents grouped from what was found."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import read_rows
from stdnum.es import dni
from stdnum.nl import bsn

from leakwatch.config import load_config
from leakwatch.drills import synth
from leakwatch.drills.generate import DEFAULT_START, generate, tree_sha256
from leakwatch.drills.run import write_config
from leakwatch.drills.scenarios import ScenarioError, list_scenarios, load_scenario
from leakwatch.incidents import book
from leakwatch.pipeline import scan_paths
from leakwatch.store import Store

SHIPPED = {p.stem: p for p in list_scenarios()}
SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def test_the_six_scenarios_of_the_issue_are_shipped_and_valid():
    assert sorted(SHIPPED) == ["ai-key-exposed-gateway-bypass", "bulk-report-export", "bulk-sync-to-ai",
                               "cdn-foreign-edge", "prompt-system-identifiers", "unmapped-flow"]
    for name, path in SHIPPED.items():
        sc = load_scenario(path)
        assert sc.id == name  # the file name is the id `drill run` takes
        assert sc.plants and sc.expect_incidents and sc.expect_regimes


# -- generation ----------------------------------------------------------------------------------


def test_generation_is_deterministic_for_a_seed_across_processes(tmp_path):
    sc = load_scenario(SHIPPED["bulk-sync-to-ai"])
    generate(sc, 7, tmp_path / "a", scale=0.3)
    generate(sc, 7, tmp_path / "b", scale=0.3)
    generate(sc, 8, tmp_path / "c", scale=0.3)
    h = tree_sha256(tmp_path / "a")
    assert h == tree_sha256(tmp_path / "b")
    assert h != tree_sha256(tmp_path / "c")
    # Another interpreter with another hash seed gives the same bytes (no set or hash order).
    code = ("import sys; from leakwatch.drills.scenarios import load_scenario; "
            "from leakwatch.drills.generate import generate, tree_sha256; "
            f"generate(load_scenario({str(SHIPPED['bulk-sync-to-ai'])!r}), 7, sys.argv[1], scale=0.3); "
            "print(tree_sha256(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    assert out.stdout.strip() == h


def test_generated_files_are_real_formats_and_the_manifest_points_at_each_value(tmp_path):
    sc = load_scenario(SHIPPED["bulk-sync-to-ai"])
    g = generate(sc, 3, tmp_path / "out")
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m == g.manifest and m["start"] == "2024-03-11T09:00:00Z" and m["seed"] == 3
    # EventLogFile CSVs open with their quoted header; every row has as many cells.
    elf = (tmp_path / "out" / "salesforce" / "EventLogFile_BulkApiResult.csv").read_text().splitlines()
    assert elf[0].startswith('"EVENT_TYPE","TIMESTAMP","REQUEST_ID"')
    assert all(r.count('","') == elf[0].count('","') for r in elf[1:])
    assert sum('"Contact","48210"' in r for r in elf) == 1  # the planted bulk download
    timeline = json.loads((tmp_path / "out" / "timeline.json").read_text())["files"]
    for f in m["files"]:
        data = (tmp_path / "out" / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and data.count(b"\n") == f["lines"]
        assert len(timeline[f["path"]]) == f["lines"] and timeline[f["path"]] == sorted(timeline[f["path"]])
    raw = b"".join((tmp_path / "out" / f["path"]).read_bytes() for f in m["files"])
    for p in m["plants"]:
        data = (tmp_path / "out" / p["file"]).read_bytes()
        line = data[p["offset"]:].split(b"\n", 1)[0]
        assert data[:p["offset"]].count(b"\n") == p["line"] - 1
        value = line[p["start"]:p["end"]].decode()
        # The span holds the value itself: its hash is in the manifest, the value is not.
        assert hashlib.sha256(value.encode()).hexdigest() == p["value_sha256"]
        assert value not in json.dumps(m)
        assert 7 * 60 <= p["t"] < 60 * 60  # the scenario plants from minute 7 on
        assert p["incidents"] or p["entity"] == "SALESFORCE_RECORD_ID"  # a record id alone opens none
    assert [a["kind"] for a in m["activity"]] == ["bulk_download"] + ["ai_call"] * 5
    assert raw.count(b"api.openai.com/v1/embeddings") == 5 + 10  # 5 Apex callouts, 10 Mule posts


def test_start_moves_the_timestamps_only(tmp_path):
    from datetime import timedelta

    sc = load_scenario(SHIPPED["cdn-foreign-edge"])
    a = generate(sc, 1, tmp_path / "a", scale=0.2)
    b = generate(sc, 1, tmp_path / "b", scale=0.2, start=DEFAULT_START + timedelta(days=1))
    la, lb = a.files[0].lines, b.files[0].lines
    assert len(la) == len(lb) and la != lb
    assert [x.replace("11/Mar/2024", "12/Mar/2024") for x in la] == lb
    assert [p["start"] for p in a.manifest["plants"]] == [p["start"] for p in b.manifest["plants"]]


def test_synthetic_values_are_valid_and_fictional():
    import random

    r = random.Random(5)
    for _ in range(200):
        email = synth.value(r, "EMAIL_ADDRESS")
        assert email.rsplit("@", 1)[1] in ("example.com", "example.org", "example.net")
        card = synth.value(r, "CREDIT_CARD")
        assert synth.luhn_ok(card) and card[:6] in {b for b, _ in synth.CARD_BINS}
        iban = synth.value(r, "IBAN_CODE")
        assert int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1
        phone = synth.value(r, "PHONE_NUMBER")
        assert phone.startswith(("+44 20 7946 0", "+44 113 496 0", "+44 161 496 0"))  # Ofcom drama ranges
        assert dni.is_valid(synth.value(r, "ES_DNI")) and bsn.is_valid(synth.value(r, "NL_BSN"))
        sfid = synth.value(r, "SALESFORCE_RECORD_ID")
        assert sfid[:3] in ("003", "00Q", "001") and synth.sfid18(sfid[:15]) == sfid
        assert synth.value(r, "IP_ADDRESS").startswith(("192.0.2.", "198.51.100.", "203.0.113."))
        assert not synth.luhn_ok(synth.trace16(r))
    assert synth.sfid18("0055j00000AT6I1") == "0055j00000AT6I1AAL"  # DOMAIN.md's check value


# -- the real scan on every shipped scenario -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_planted_leak_is_found_and_background_stays_below_medium(tmp_path, name):
    sc = load_scenario(SHIPPED[name])
    g = generate(sc, 1, tmp_path / "logs")
    cfg = load_config(write_config(sc, tmp_path, "http://127.0.0.1:9/hook"), env={})
    db = tmp_path / "scan.duckdb"
    summary = scan_paths([str(tmp_path / "logs")], db, config=cfg)
    for f in summary.files:
        assert f.parse_problems == 0, (f.path, f.parse_samples)
    rows = read_rows(db, "SELECT source_path, line, start_byte, end_byte, entity, severity, raw_value FROM findings")
    logs = (tmp_path / "logs").resolve()
    found: dict[tuple[str, int], list[tuple]] = {}
    for path, line, s, e, entity, sev, raw in rows:
        assert raw is None  # a drill stores no raw value either
        found.setdefault((Path(path).resolve().relative_to(logs).as_posix(), line), []).append((s, e, entity, sev))
    spans: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for p in g.manifest["plants"]:
        spans.setdefault((p["file"], p["line"]), []).append((p["start"], p["end"]))
        hits = [f for f in found.get((p["file"], p["line"]), ()) if f[2] == p["entity"] and f[0] < p["end"]
                and p["start"] < f[1]]
        assert hits, f"{name}: planted {p['entity']} at {p['file']}:{p['line']} was not found"
    above_low = [(k, f) for k, fs in found.items() for f in fs if SEVERITY_RANK[f[3]] >= 2
                 and not any(f[0] < pe and ps < f[1] for ps, pe in spans.get(k, ()))]
    assert above_low == [], f"{name}: background findings above low: {above_low[:5]}"
    # The findings and alerts group into the incidents the scenario expects.
    store = Store.open(str(db))
    try:
        book.group(store, cfg)
    finally:
        store.close()
    keys = [json.loads(k) for (k,) in read_rows(db, "SELECT group_key FROM incidents")]
    for want in sc.expect_incidents:
        assert any(want.matches(k["pattern"], k["dest_vendor"]) for k in keys), (name, str(want), keys)


# -- scenario files: errors name file, line and field ---------------------------------------------

GOOD = """\
id: tiny
title: A tiny scenario
minutes: 20
systems:
  - {id: app, format: app-jsonl, file: app.jsonl, per_minute: 2}
plants:
  - entity: EMAIL_ADDRESS
    system: app
    where: field:email
    at: 5
    incident: pii_exposure/none
expect:
  incidents: [{pattern: pii_exposure, vendor: none}]
  regimes: [gdpr-33]
"""


def _bad(tmp_path, text: str) -> str:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    return str(e.value)


def test_a_small_valid_scenario_loads(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(GOOD)
    sc = load_scenario(p)
    assert sc.plants[0].minutes == (5.0,) and str(sc.plants[0].incidents[0]) == "pii_exposure/none"


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("    where: field:email", "    wher: field:email", ":9: plants[0].wher: unknown field 'wher' (did you mean 'where'?)"),
    ("    where: field:email", "    where: prompt.sytem",
     ":9: plants[0].where: 'prompt.sytem' is not a placement of format app-jsonl"),
    ("    at: 5", "    at: 25", ":10: plants[0].at: minute 25 (line 1) is outside the scenario (0 … 20"),
    ("    system: app\n", "    system: ap\n", ":8: plants[0].system: unknown system 'ap' (did you mean 'app'?)"),
    ("    incident: pii_exposure/none", "    incident: P3_prompt_pii/OpenAI",
     ":11: plants[0].incident: 'P3_prompt_pii/OpenAI' is not one of expect.incidents"),
    ("format: app-jsonl", "format: app-json", ":5: systems[0].format: unknown format 'app-json'"),
    ("  regimes: [gdpr-33]", "  regimes: [gdpr-3]", ":14: expect.regimes: unknown regime 'gdpr-3'"),
    ("minutes: 20", "minutes: twenty", ":3: minutes: expected an integer"),
    ("- entity: EMAIL_ADDRESS\n    system: app\n    where: field:email",
     "- entity: OPENAI_API_KEY\n    system: app\n    where: prompt.user",
     ":9: plants[0].where: a credential goes into a header"),
    ("    at: 5\n", "    at: 5\n    same_value: maybe\n", ":11: plants[0].same_value: expected true or false"),
])
def test_bad_scenario_errors_name_file_line_and_field(tmp_path, old, new, expected):
    assert old in GOOD
    msg = _bad(tmp_path, GOOD.replace(old, new))
    assert str(tmp_path / "bad.yaml") + expected in msg, msg


def test_bad_settings_are_checked_by_the_config_loader(tmp_path):
    msg = _bad(tmp_path, GOOD + "settings:\n  egress: {approved_gateways: 5}\n")
    assert f"{tmp_path / 'bad.yaml'}:16: settings.egress:" in msg and "approved_gateways" in msg, msg
    msg = _bad(tmp_path, GOOD + "organisation: {nis2_entity: huge}\n")
    assert f"{tmp_path / 'bad.yaml'}:15: organisation:" in msg and "nis2_entity" in msg, msg


def test_every_mistake_of_a_file_is_reported_and_yaml_syntax_errors_have_a_line(tmp_path):
    msg = _bad(tmp_path, GOOD.replace("id: tiny", "id: Tiny!").replace("minutes: 20", "minutes: 3"))
    assert ":1: id: 'Tiny!' is not an id" in msg and ":3: minutes: 3 is out of range" in msg
    msg = _bad(tmp_path, GOOD.replace("  - {id: app,", "  - {id: app"))
    assert "YAML syntax error (line" in msg
    msg = _bad(tmp_path, GOOD.replace("expect:\n  incidents: [{pattern: pii_exposure, vendor: none}]",
                                      "expect:\n  incidents: [{pattern: pii_exposure, vendor: none}, "
                                      "{pattern: bulk_export, vendor: none}]"))
    assert "expect.incidents: bulk_export/none: no plant or activity names it" in msg


# -- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def drill_cli(cli, monkeypatch):
    """``leakwatch drill …`` through the real CLI (registered here until cli.COMMAND_MODULES lists it)."""
    import leakwatch.cli

    if "leakwatch.commands.drill" not in leakwatch.cli.COMMAND_MODULES:
        monkeypatch.setattr(leakwatch.cli, "COMMAND_MODULES", (*leakwatch.cli.COMMAND_MODULES, "leakwatch.commands.drill"))
    return lambda *a: cli("drill", *a)


def test_cli_list_generate_and_errors(tmp_path, drill_cli):
    r = drill_cli("list")
    assert r.rc == 0 and all(name in r.out for name in SHIPPED)
    r = drill_cli("generate", "unmapped-flow", "--seed", "4", "--out", tmp_path / "g", "--scale", "0.2")
    assert r.rc == 0, r.err
    assert "DRILL data (synthetic" in r.out and (tmp_path / "g" / "manifest.json").is_file()
    assert (tmp_path / "g" / "mule" / "mule-app-customers-papi.log").is_file()
    r = drill_cli("generate", "unmapped-flow", "--seed", "4", "--out", tmp_path / "g")
    assert r.rc == 2 and "not empty" in r.err
    r = drill_cli("generate", "unmaped-flow", "--out", tmp_path / "h")
    assert r.rc == 2 and "did you mean 'unmapped-flow'" in r.err
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("where: field:email", "where: nowhere"))
    r = drill_cli("generate", bad, "--out", tmp_path / "i")
    assert r.rc == 2 and f"{bad}:9: plants[0].where" in r.err
