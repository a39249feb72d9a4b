"""`make demo` without a terminal (CI): the script the Makefile runs completes a drill headless
and prints its score, and exits with the drill's verdict. Run shorter through the environment
variables the Makefile passes on (``LEAKWATCH_DEMO_SPEED``/``LEAKWATCH_DEMO_SCALE``)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.py"


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEMO), *args], check=False, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def test_make_demo_headless_runs_the_drill_and_prints_the_score(tmp_path):
    out = tmp_path / "drill"
    r = run_demo("--out", str(out), env={"LEAKWATCH_DEMO_SPEED": "1500", "LEAKWATCH_DEMO_SCALE": "0.5"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = r.stdout
    # The command it runs is shown, without --tui: stdout is not a terminal.
    first = text.splitlines()[0]
    assert first.startswith("$ leakwatch drill run ai-key-exposed-gateway-bypass --speed 1500 --scale 0.5")
    assert "--tui" not in first and first.endswith(f"--out {out}")
    # Progress in scenario time, then the score.
    assert re.search(r"\[DRILL T\+\d\d:\d\d\] .*opened incident #1", text)
    assert "# DRILL score: ai-key-exposed-gateway-bypass" in text and "**Result: PASSED**" in text
    assert "| P1_key_exposed/OpenAI | yes |" in text
    assert "leakwatch tui --db" in text
    score = json.loads((out / "score.json").read_text())
    assert score["passed"] and score["detection"]["recall"] == 1.0 and score["drill"]["speed"] == 1500
    assert (out / "score.md").read_text() in text  # what was printed is the score file


def test_the_demo_replaces_its_own_earlier_drill_but_nothing_else(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    r = run_demo("--out", str(other), "--speed", "1500")
    assert r.returncode != 0 and "is not a drill folder" in r.stderr
    assert (other / "mine.txt").read_text() == "keep me"
    # An earlier drill folder (marked by its DRILL.txt) is replaced.
    old = tmp_path / "old-drill"
    old.mkdir()
    (old / "DRILL.txt").write_text("an earlier drill")
    (old / "score.json").write_text("{}")
    r = run_demo("--out", str(old), "--speed", "1800", "--scale", "0.3", "--scenario", "cdn-foreign-edge")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads((old / "score.json").read_text())["drill"]["scenario"] == "cdn-foreign-edge"
