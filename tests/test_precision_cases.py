"""Precision and recall cases left open by earlier reviews, each built by hand from what real
logs hold, each failing before its fix."""
from __future__ import annotations

import json


def _jsonl_findings(cli, tmp_path, text: str, *extra: str, name: str = "app.log"):
    log = tmp_path / name
    log.write_text(text)
    r = cli("scan", log, "--db", tmp_path / "lw.duckdb", "--jsonl", "-", *extra)
    return r, [json.loads(line) for line in r.out.splitlines() if line.startswith("{")]


def test_a_placeholder_key_is_listed_low_and_does_not_trip_fail_on_high(cli, tmp_path):
    placeholder = "OPENAI_API_KEY=sk-" + "x" * 48 + "\n"
    r, found = _jsonl_findings(cli, tmp_path, placeholder, "--fail-on", "high")
    assert [(f["rule"], f["severity"]) for f in found] == [("openai_api_key", "low")]
    assert r.rc == 0
    real = placeholder + "key=sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vX7zB9dF1hJ3lN5\n"
    r, found = _jsonl_findings(cli, tmp_path, real, "--fail-on", "high", name="b.log")
    assert sorted((f["line"], f["severity"]) for f in found) == [(1, "low"), (2, "high")]
    assert r.rc == 1
