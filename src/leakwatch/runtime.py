"""Interpreter settings for bulk work (a scan): quick GIL hand-offs and fewer garbage collections.

Both are process-wide, so :func:`bulk_work` counts the blocks that use them: the values from
before the first of nested or concurrent blocks come back when the last one ends.

*GIL hand-offs.* While a scan runs, a thread in DuckDB takes the GIL back after every task it
executes (to see a Ctrl-C), and a thread that wants the GIL waits up to the switch interval
(5 ms by default) for a thread running Python to let go of it. 30,000 EventLogFile rows took
0.31 s instead of 0.07 beside a busy Python thread; with 0.5 ms, 0.08 s.

*Garbage collection.* Scoring a range makes hundreds of thousands of small tuples, lists and
dicts, and the rows wait in batches of 50,000 before an insert: with the default first-generation
threshold (700 allocations) the collector ran through them over and over, ~8% of the thread
that scores. The scan makes almost no reference cycles, so collecting less often costs no memory
to speak of (peak RSS of a 2 GB scan unchanged; measured in bench/).
"""
from __future__ import annotations

import contextlib
import gc
import sys
import threading

SWITCH_INTERVAL = 0.0005
GC_THRESHOLD = (20_000, 20, 100)

_lock = threading.Lock()
_users = 0
_saved: tuple[float, tuple[int, int, int]] = (0.005, (700, 10, 10))


@contextlib.contextmanager
def bulk_work(switch_interval: float = SWITCH_INTERVAL, gc_threshold: tuple[int, int, int] = GC_THRESHOLD):
    """Run the block with the switch interval at most ``switch_interval`` and the collector's
    thresholds at least ``gc_threshold`` (a setting the caller chose beyond these is kept)."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = (sys.getswitchinterval(), gc.get_threshold())
        _users += 1
        sys.setswitchinterval(min(sys.getswitchinterval(), switch_interval))
        now = gc.get_threshold()
        # A threshold of 0 disables collection: leave that as it is.
        gc.set_threshold(*(c if c == 0 else max(c, w) for c, w in zip(now, gc_threshold)))
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                sys.setswitchinterval(_saved[0])
                gc.set_threshold(*_saved[1])
