"""A thread pool of daemon threads.

``concurrent.futures.ThreadPoolExecutor`` threads are joined when the interpreter exits, so a
send or a download blocked on a silent server (up to its whole read timeout) holds a stopped
process for that long. The work leakwatch hands to threads — HTTP sends, blob downloads — is
safe to cut short at exit (an outbox row left ``sending`` is taken over by the next
dispatcher; a ``.part`` file is resumed by the next pull), so its threads are daemons.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class DaemonPool:
    """``submit(fn, *args, **kwargs) -> Future`` on up to ``workers`` daemon threads, started
    as work arrives. :meth:`shutdown` ends them (waiting for their work when ``wait``)."""

    def __init__(self, workers: int, name: str = "leakwatch-pool") -> None:
        self.workers = max(1, workers)
        self.name = name
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            self._q.put((fut, fn, args, kwargs))
            if len(self._threads) < self.workers:
                t = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
        return fut

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fut, fn, args, kwargs = item
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args, **kwargs))
                except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the future
                    fut.set_exception(e)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """No more work; the threads end after what is queued. ``wait``: join them (each for
        up to ``timeout`` seconds)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._q.put(None)
        if wait:
            for t in threads:
                t.join(timeout)
