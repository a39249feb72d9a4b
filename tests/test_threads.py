"""leakwatch.threads.quick_gil_handoff: the switch interval a scan runs under, and that the
caller's value comes back whatever happens."""
from __future__ import annotations

import sys
import threading

import pytest

from leakwatch.pipeline import scan_paths
from leakwatch.threads import PIPELINE_SWITCH_INTERVAL, quick_gil_handoff


def near(value: float):
    return pytest.approx(value, rel=0.05)  # the interpreter keeps the interval in whole microseconds


@pytest.fixture(autouse=True)
def default_interval():
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(old)


def test_lowers_the_interval_and_restores_it():
    with quick_gil_handoff():
        assert sys.getswitchinterval() == near(PIPELINE_SWITCH_INTERVAL)
    assert sys.getswitchinterval() == near(0.005)


def test_restores_after_an_error():
    with pytest.raises(KeyError), quick_gil_handoff(0.001):
        raise KeyError("x")
    assert sys.getswitchinterval() == near(0.005)


def test_never_raises_an_interval_the_caller_lowered_further():
    sys.setswitchinterval(0.0001)
    with quick_gil_handoff(0.001):
        assert sys.getswitchinterval() == near(0.0001)
    assert sys.getswitchinterval() == near(0.0001)


def test_overlapping_blocks_restore_the_first_value_when_the_last_ends():
    """Two scans in two threads, the first to start ending first: the second still runs with
    quick hand-offs, and the value from before both comes back after the second."""
    first_in, first_out, second_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with quick_gil_handoff():
            first_in.set()
            assert first_out.wait(10)

    def second():
        assert first_in.wait(10)
        with quick_gil_handoff():
            first_out.set()
            t1.join(10)
            seen["after first ended"] = sys.getswitchinterval()
        second_out.set()

    t1 = threading.Thread(target=first)
    t2 = threading.Thread(target=second)
    t1.start()
    t2.start()
    t2.join(10)
    assert second_out.is_set()
    assert seen["after first ended"] == near(PIPELINE_SWITCH_INTERVAL)
    assert sys.getswitchinterval() == near(0.005)


def test_a_scan_runs_with_quick_handoffs_and_gives_the_interval_back(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("".join(f'{{"msg": "signup", "email": "user{i}@example.com"}}\n' for i in range(50)))
    during = []
    summary = scan_paths([str(log)], tmp_path / "x.duckdb",
                         progress=lambda done, total, path: during.append(sys.getswitchinterval()))
    assert summary.total_findings == 50
    assert during and all(v == near(PIPELINE_SWITCH_INTERVAL) for v in during)
    assert sys.getswitchinterval() == near(0.005)


def test_a_failing_scan_gives_the_interval_back(tmp_path):
    log = tmp_path / "app.log"
    log.write_text('{"email": "someone@example.com"}\n')

    class Broken:
        name = "<broken>"

        def write(self, text):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        scan_paths([str(log)], tmp_path / "x.duckdb", jsonl=Broken())
    assert sys.getswitchinterval() == near(0.005)
