"""The console's clock, injected: every countdown, deadline and "now" of a change reads it.

Three kinds:

- :class:`RealClock` – the wall clock (UTC), for responders;
- :class:`FrozenClock` – stands still until moved (:meth:`FrozenClock.advance`/``set``): tests
  and snapshots, which must draw the same screen on every run;
- :class:`AcceleratedClock` – runs ``factor`` times faster than real time from a chosen start:
  drills replay a 72-hour clock in 72 minutes at 60×.

A clock is called like the ``clock()`` callables the core takes (``triggers.hook(clock=…)``,
``Dispatcher(clock=…)``), so the same object can be handed on. No Textual import.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("naive datetime: the console keeps UTC times, give a zone")
    return t.astimezone(UTC)


class Clock:
    """What the console asks for the time: ``now()`` (aware, UTC); calling the clock is the same."""

    #: Seconds of real time between two countdown refreshes. An accelerated clock refreshes as
    #: often: at 60× one refresh is one simulated minute.
    tick_s: float = 1.0

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        raise NotImplementedError

    def __call__(self) -> datetime:
        return self.now()

    @property
    def label(self) -> str:
        """A short word for the header when the clock is not the real one ("" when it is)."""
        return ""


class RealClock(Clock):
    """The machine's clock."""

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)


class FrozenClock(Clock):
    """A clock that shows ``at`` until it is moved; thread-safe."""

    def __init__(self, at: datetime) -> None:
        self._at = _aware(at)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The frozen time."""
        with self._lock:
            return self._at

    def set(self, at: datetime) -> None:
        """Move the clock to ``at``."""
        with self._lock:
            self._at = _aware(at)

    def advance(self, delta: timedelta | float) -> datetime:
        """Move the clock forward by ``delta`` (a timedelta or seconds); returns the new time."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=float(delta))
        with self._lock:
            self._at += delta
            return self._at

    @property
    def label(self) -> str:
        """``frozen``."""
        return "frozen"


class AcceleratedClock(Clock):
    """Simulated time that starts at ``start`` (default: now) and runs ``factor`` times as fast
    as ``monotonic`` (default :func:`time.monotonic`, injectable for tests)."""

    def __init__(self, factor: float = 60.0, start: datetime | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if factor <= 0:
            raise ValueError(f"clock factor must be positive, got {factor}")
        self.factor = float(factor)
        self._start = _aware(start) if start is not None else datetime.now(UTC)
        self._mono = monotonic
        self._t0 = monotonic()

    def now(self) -> datetime:
        """``start + factor × (real seconds since the clock was made)``."""
        return self._start + timedelta(seconds=(self._mono() - self._t0) * self.factor)

    @property
    def label(self) -> str:
        """``drill 60×``."""
        return f"drill {self.factor:g}×"


def as_clock(clock: Clock | Callable[[], datetime] | datetime | None) -> Clock:
    """A :class:`Clock` from what a caller has: a clock, a ``() -> datetime`` callable, a fixed
    datetime (frozen there) or ``None`` (the real clock)."""
    if clock is None:
        return RealClock()
    if isinstance(clock, Clock):
        return clock
    if isinstance(clock, datetime):
        return FrozenClock(clock)
    if callable(clock):
        fn = clock

        class _Wrapped(Clock):
            def now(self) -> datetime:
                return _aware(fn())

        return _Wrapped()
    raise TypeError(f"not a clock: {clock!r}")
