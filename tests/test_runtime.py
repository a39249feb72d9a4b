"""leakwatch.runtime.bulk_work: the switch interval and collector thresholds a scan runs under,
and that the caller's values come back whatever happens."""
from __future__ import annotations

import gc
import sys
import threading

import pytest

from leakwatch.pipeline import scan_paths
from leakwatch.runtime import GC_THRESHOLD, SWITCH_INTERVAL, bulk_work


def near(value: float):
    return pytest.approx(value, rel=0.05)  # the interpreter keeps the interval in whole microseconds


@pytest.fixture(autouse=True)
def defaults():
    old = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(0.005)
    gc.set_threshold(700, 10, 10)
    yield
    sys.setswitchinterval(old[0])
    gc.set_threshold(*old[1])


def assert_defaults():
    assert sys.getswitchinterval() == near(0.005)
    assert gc.get_threshold() == (700, 10, 10)


def test_sets_both_and_restores_them():
    with bulk_work():
        assert sys.getswitchinterval() == near(SWITCH_INTERVAL)
        assert gc.get_threshold() == GC_THRESHOLD
    assert_defaults()


def test_restores_after_an_error():
    with pytest.raises(KeyError), bulk_work(0.001, (5000, 10, 10)):
        raise KeyError("x")
    assert_defaults()


def test_never_undoes_what_the_caller_chose_beyond_it():
    sys.setswitchinterval(0.0001)
    gc.set_threshold(100_000, 0, 5)  # a bigger first generation; the third never counts down
    with bulk_work(0.001, (20_000, 20, 100)):
        assert sys.getswitchinterval() == near(0.0001)
        assert gc.get_threshold() == (100_000, 0, 100)
    assert sys.getswitchinterval() == near(0.0001)
    assert gc.get_threshold() == (100_000, 0, 5)


def test_a_disabled_collector_stays_disabled():
    gc.set_threshold(0)
    with bulk_work():
        assert gc.get_threshold()[0] == 0
    assert gc.get_threshold()[0] == 0


def test_overlapping_blocks_restore_the_first_values_when_the_last_ends():
    """Two scans in two threads, the first to start ending first: the second still runs with
    the bulk settings, and the values from before both come back after the second."""
    first_in, first_out = threading.Event(), threading.Event()
    seen = {}

    def first():
        with bulk_work():
            first_in.set()
            assert first_out.wait(10)

    def second():
        assert first_in.wait(10)
        with bulk_work():
            first_out.set()
            t1.join(10)
            seen["after first ended"] = (sys.getswitchinterval(), gc.get_threshold())

    t1 = threading.Thread(target=first)
    t2 = threading.Thread(target=second)
    t1.start()
    t2.start()
    t2.join(10)
    assert not t1.is_alive() and not t2.is_alive()
    assert seen["after first ended"][0] == near(SWITCH_INTERVAL)
    assert seen["after first ended"][1] == GC_THRESHOLD
    assert_defaults()


def test_a_scan_runs_with_the_bulk_settings_and_gives_them_back(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("".join(f'{{"msg": "signup", "email": "user{i}@example.com"}}\n' for i in range(50)))
    during = []
    summary = scan_paths([str(log)], tmp_path / "x.duckdb",
                         progress=lambda done, total, path: during.append((sys.getswitchinterval(), gc.get_threshold())))
    assert summary.total_findings == 50
    assert during
    assert all(v == near(SWITCH_INTERVAL) and t == GC_THRESHOLD for v, t in during)
    assert_defaults()


def test_a_failing_scan_gives_them_back(tmp_path):
    log = tmp_path / "app.log"
    log.write_text('{"email": "someone@example.com"}\n')

    class Broken:
        name = "<broken>"

        def write(self, text):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        scan_paths([str(log)], tmp_path / "x.duckdb", jsonl=Broken())
    assert_defaults()
