"""``drill`` commands on bad input: a bad --speed, a damaged/foreign/locked drill database,
folders that cannot be written, one bad scenario among good ones, and a drill stopped early
scored only on what it replayed. Each is a usage (2) or database (3) error, never a crash (70)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import duckdb
import pytest

from leakwatch.drills.run import MAX_SPEED, check_speed, run_drill
from leakwatch.drills.scenarios import default_drills_dir, find_scenario
from leakwatch.errors import UsageError


@pytest.fixture
def drill_cli(cli, monkeypatch):
    import leakwatch.cli

    if "leakwatch.commands.drill" not in leakwatch.cli.COMMAND_MODULES:
        monkeypatch.setattr(leakwatch.cli, "COMMAND_MODULES", (*leakwatch.cli.COMMAND_MODULES, "leakwatch.commands.drill"))
    return lambda *a: cli("drill", *a)


@pytest.fixture(scope="module")
def done_drill(tmp_path_factory):
    """A finished drill folder (cdn-foreign-edge, fast); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("done") / "cdn"
    run_drill(find_scenario("cdn-foreign-edge"), out, speed=3000, scale=0.3, interval=0.05)
    return out


@pytest.fixture
def drill_copy(done_drill, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(done_drill, d)
    return d


# -- 1. --speed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("speed", ["0", "nan", "1e12", "inf", "-3", str(MAX_SPEED * 2)])
def test_a_bad_speed_is_a_usage_error_and_writes_nothing(tmp_path, drill_cli, speed):
    out = tmp_path / "r1"
    r = drill_cli("run", "cdn-foreign-edge", "--speed", speed, "--out", out)
    assert r.rc == 2, r.err
    assert "--speed" in r.err and "internal error" not in r.err
    assert not out.exists()  # a rerun with the same --out is not refused


def test_check_speed_and_run_drill_refuse_before_the_folder_is_made(tmp_path):
    assert check_speed(60) == 60.0 and check_speed(MAX_SPEED) == MAX_SPEED
    for bad in (0, float("nan"), float("inf"), 1e12):
        with pytest.raises(UsageError, match="--speed"):
            check_speed(bad)
        with pytest.raises(UsageError, match="--speed"):
            run_drill(find_scenario("cdn-foreign-edge"), tmp_path / "x", speed=bad)
    with pytest.raises(UsageError, match="--scale"):
        run_drill(find_scenario("cdn-foreign-edge"), tmp_path / "x", scale=-1)
    assert not (tmp_path / "x").exists()


# -- 2. the drill's database -------------------------------------------------------------------------


def _drop_db(d):
    for p in d.glob("drill.duckdb*"):
        if p.name != "drill.duckdb.key":
            p.unlink()


def test_score_of_a_garbage_database_is_a_database_error(drill_copy, drill_cli):
    _drop_db(drill_copy)
    (drill_copy / "drill.duckdb").write_text("garbage\n")
    r = drill_cli("score", drill_copy)
    assert r.rc == 3, r.err
    assert "drill.duckdb: not a DuckDB database" in r.err


def test_score_of_someone_elses_duckdb_is_a_database_error(drill_copy, drill_cli):
    _drop_db(drill_copy)
    con = duckdb.connect(str(drill_copy / "drill.duckdb"))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    r = drill_cli("score", drill_copy)
    assert r.rc == 3, r.err
    assert "not leakwatch's" in r.err


def test_score_of_a_database_another_process_writes_is_a_database_error(drill_copy, drill_cli):
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
                                "sys.stdin.read()"), str(drill_copy / "drill.duckdb")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        r = drill_cli("score", drill_copy)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert r.rc == 3, r.err
    assert f"in use by process {holder.pid}" in r.err


# -- 3. folders and files that cannot be written -------------------------------------------------------


def test_an_out_folder_that_cannot_be_made_is_a_usage_error(tmp_path, drill_cli):
    # A regular file as the parent: no folder can be made under it, whoever runs the test (root too).
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    r = drill_cli("run", "cdn-foreign-edge", "--out", afile / "x")
    assert r.rc == 2, r.err
    assert f"cannot write {afile / 'x'}: Not a directory" in r.err
    r = drill_cli("generate", "cdn-foreign-edge", "--out", afile / "y")
    assert r.rc == 2, r.err
    assert f"cannot write {afile / 'y'}: Not a directory" in r.err
    r = drill_cli("generate", "cdn-foreign-edge", "--out", afile)
    assert r.rc == 2 and "a file, not a folder" in r.err, r.err


def test_score_still_prints_when_score_md_cannot_be_written(drill_copy, drill_cli):
    (drill_copy / "score.md").unlink()
    (drill_copy / "score.md").mkdir()  # cannot be written as a file, even by root
    r = drill_cli("score", drill_copy)
    assert r.rc == 0, r.err  # what the score says: this drill passed
    assert r.out.startswith("# DRILL score: cdn-foreign-edge") and "**Result: PASSED**" in r.out
    assert f"warning: cannot write {drill_copy / 'score.md'}" in r.err


# -- 4. drill list with a bad file ----------------------------------------------------------------------


def test_list_shows_the_good_scenarios_and_names_the_bad_file(tmp_path, drill_cli):
    shipped = default_drills_dir()
    for name in ("cdn-foreign-edge", "unmapped-flow"):
        shutil.copy(shipped / f"{name}.yaml", tmp_path / f"{name}.yaml")
    text = (shipped / "bulk-sync-to-ai.yaml").read_text()
    lines = text.splitlines(keepends=True)
    n = next(i for i, ln in enumerate(lines) if ln.startswith("minutes:"))
    lines[n] = "minutes: lots\n"
    bad = tmp_path / "bulk-sync-to-ai.yaml"
    bad.write_text("".join(lines))
    r = drill_cli("list", "--dir", tmp_path)
    assert r.rc == 2
    assert "cdn-foreign-edge" in r.out and "unmapped-flow" in r.out and "bulk-sync-to-ai" not in r.out
    assert f"{bad}:{n + 1}: minutes: expected an integer" in r.err
    r = drill_cli("list", "--dir", tmp_path, "--json")
    assert r.rc == 2 and [x["id"] for x in json.loads(r.out)] == ["cdn-foreign-edge", "unmapped-flow"]
    assert f"{bad}:{n + 1}: minutes" in r.err


# -- 5. a drill stopped early ------------------------------------------------------------------------------


def test_a_drill_stopped_early_is_scored_on_what_was_replayed(tmp_path, drill_cli):
    stop = threading.Event()

    def on_event(e):
        if e.kind == "cycle" and e.minute >= 10:
            stop.set()

    out = tmp_path / "stopped"
    res = run_drill(find_scenario("cdn-foreign-edge"), out, speed=300, scale=0.3, interval=0.05, stop=stop,
                    on_event=on_event)
    score = res.score
    dr, de = score["drill"], score["detection"]
    assert dr["stopped_early"] and score["passed"] is False
    manifest = json.loads((out / "source" / "manifest.json").read_text())
    until = dr["replayed_until_min"]
    assert 6 <= until <= dr["scenario_minutes"] < 45 and dr["lines_replayed"] < dr["lines"]
    # Plants whose line was written count; the others are not replayed, not missed.
    assert de["planted"] == len(manifest["plants"]) == de["replayed"] + len(de["not_replayed"])
    assert 0 < de["replayed"] < de["planted"]
    assert all(m["minute"] > until for m in de["not_replayed"])
    assert all(m["minute"] <= until for m in de["missed"])
    assert de["recall"] == round(de["detected"] / de["replayed"], 4)
    assert sum(v["planted"] for v in de["by_entity"].values()) == de["replayed"]
    md = (out / "score.md").read_text()
    assert f"{dr['lines_replayed']:,} of {dr['lines']:,} lines replayed" in md
    assert f"Not replayed (the drill stopped at T+{until:.1f}): " in md
    assert "T+28.2" not in md.split("Not replayed", 1)[0]  # no late plant is reported missed
    # `drill score` recomputes the same from the folder.
    r = drill_cli("score", out)
    assert r.rc == 1 and r.out == md


def test_the_console_summary_of_a_drill_stopped_before_any_plant_says_so():
    from leakwatch.tui.drill import score_summary

    score = {"passed": False,
             "detection": {"recall": None, "precision": None},
             "incidents": {"expected": [{"opened": False, "replayed": False}]},
             "notifications": {"verified": 0}, "playbooks": {"missed": []},
             "drill": {"stopped_early": True}}
    line = score_summary(score)
    assert line.startswith("FAILED · recall n/a (nothing replayed) · precision n/a")
    assert "None" not in line and line.endswith("stopped early")
