"""Deadline arithmetic for notification clocks: hours, calendar days, months and business or
working days with a country's public holidays.

Pure functions: every input time is a timezone-aware ``datetime``, every result is an aware
``datetime`` in UTC; naive datetimes raise :class:`ValueError` (a naive time has no single
meaning, and an hour's error on a 72 h clock is the kind of mistake this module exists to rule
out). Nothing here reads the system clock.

The choices, each tested in ``tests/test_deadlines.py``:

- **Hours** are real elapsed hours: ``72 h`` across a DST change is exactly 72 × 3600 s, so the
  local wall-clock reading moves by 71 or 73 h.
- **Calendar days and months** keep the local wall-clock time in the regime's zone: 30 days
  after 09:00 is 09:00, so across a DST change the span is 23 or 25 h off a multiple of 24 h.
  That is how people (and authorities) read "within 30 days". Months clamp the day to the end
  of the target month (31 Jan + 1 month = 28 Feb, or 29 Feb in a leap year).
- A wall-clock time that **does not exist** (skipped by a spring-forward change, e.g. 02:30 on
  2026-03-29 in Europe/Brussels) resolves to the instant the clocks jump (01:00 UTC, 03:00 local);
  one that **occurs twice** (fall back) resolves to its first occurrence. Both are "the first
  instant at which the local clock reads that time or later", which never makes a deadline later
  than any reading of the wall time.
- **Business/working days** exclude the start day; the deadline is the **end** of the n-th
  business day after it, written as 23:59:59.999999 local time (the last representable instant of
  that day, so that the due date printed in local time is the n-th business day itself). A day is
  a business day unless it is a weekend day (default Saturday, Sunday) or a public holiday of the
  calendar, taken from the ``holidays`` library (observed dates included, e.g. US New Year's Day
  2028 observed on Friday 2027-12-31).
"""
from __future__ import annotations

import calendar as _calendar
import difflib
import functools
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import holidays

_END_OF_DAY = time(23, 59, 59, 999999)
# Business-day counting walks day by day; a regime that asks for more than ten years of business
# days is a typo, and the bound keeps a bad file from spinning.
_MAX_DAYS = 3660


def _aware(dt: datetime, name: str = "start") -> datetime:
    if not isinstance(dt, datetime):
        raise TypeError(f"{name}: expected a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name}: naive datetime {dt.isoformat()} (give a timezone-aware time, e.g. UTC)")
    return dt.astimezone(UTC)


def _zone(tz: str | tzinfo) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def _count(n: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{what}: expected a whole number ≥ 0, got {n!r}")
    return n


def from_local(wall: datetime, tz: str | tzinfo) -> datetime:
    """The UTC instant at which the clock in ``tz`` first reads ``wall`` (a naive local time) or
    later: the time itself when it exists, its first occurrence when it occurs twice, and the
    moment the clocks jump when it falls in a spring-forward gap."""
    if wall.tzinfo is not None:
        raise ValueError("from_local: expected a naive local wall-clock time")
    zone = _zone(tz)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads it with the offset before the change (the later UTC instant), fold=1
    # with the offset after (the earlier one). The change lies between; find it to the
    # microsecond (≤ 2 h apart: ~33 halvings).
    lo = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = first
    if lo > hi:
        lo, hi = hi, lo
    step = timedelta(microseconds=1)
    while hi - lo > step:
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def add_hours(start: datetime, n: int) -> datetime:
    """``start`` plus ``n`` real hours (elapsed time, not wall-clock time), in UTC."""
    return _aware(start) + timedelta(hours=_count(n, "hours"))


def add_calendar_days(start: datetime, n: int, tz: str | tzinfo) -> datetime:
    """The same local wall-clock time in ``tz``, ``n`` calendar days after ``start``, in UTC.

    Across a DST change the result is 23 or 25 h (not 24 h) off per crossed change; see the
    module docstring for times that do not exist or occur twice.
    """
    zone = _zone(tz)
    local = _aware(start).astimezone(zone).replace(tzinfo=None)
    return from_local(local + timedelta(days=_count(n, "calendar_days")), zone)


def add_months(start: datetime, n: int, tz: str | tzinfo) -> datetime:
    """The same local wall-clock time in ``tz``, ``n`` months after ``start``, in UTC; the day is
    clamped to the target month's last day (31 Jan + 1 month = 28 Feb, or 29 Feb in a leap year)."""
    zone = _zone(tz)
    local = _aware(start).astimezone(zone).replace(tzinfo=None)
    total = local.month - 1 + _count(n, "months")
    year, month = local.year + total // 12, total % 12 + 1
    day = min(local.day, _calendar.monthrange(year, month)[1])
    return from_local(local.replace(year=year, month=month, day=day), zone)


def end_of_local_day(day: date, tz: str | tzinfo) -> datetime:
    """The last instant (23:59:59.999999 local) of ``day`` in ``tz``, in UTC."""
    return from_local(datetime.combine(day, _END_OF_DAY), _zone(tz))


def check_calendar(code: str, subdiv: str | None = None) -> None:
    """Raise :class:`ValueError` (with a did-you-mean hint) unless the ``holidays`` library has a
    calendar for country ``code`` (and its subdivision ``subdiv``, when given)."""
    supported = holidays.list_supported_countries()
    if code not in supported:
        same_len = sorted(k for k in supported if len(k) == len(str(code))) or sorted(supported)
        close = [str(code).upper()] if str(code).upper() in supported else \
            difflib.get_close_matches(str(code).upper(), same_len, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else " (use an ISO 3166-1 alpha-2 code such as US, BR, DE)"
        raise ValueError(f"unknown holiday calendar {code!r}{hint}")
    if subdiv is not None and subdiv not in supported[code]:
        subs = [str(s) for s in supported[code]]
        close = difflib.get_close_matches(str(subdiv), subs, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else (f" (valid: {', '.join(subs)})" if subs else
                                                               f" ({code} has no subdivisions)")
        raise ValueError(f"unknown subdivision {subdiv!r} of holiday calendar {code!r}{hint}")


@functools.lru_cache(maxsize=256)
def _holidays_of_year(code: str, subdiv: str | None, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(code, subdiv=subdiv, years=year).keys())


def is_business_day(day: date, calendar: str, subdiv: str | None = None,
                    weekend: Iterable[int] = (5, 6)) -> bool:
    """Whether ``day`` is neither a weekend day (``date.weekday()`` numbers, 5 = Saturday) nor a
    public holiday of ``calendar``/``subdiv``."""
    if day.weekday() in tuple(weekend):
        return False
    try:
        return day not in _holidays_of_year(calendar, subdiv, day.year)
    except NotImplementedError as e:  # the library's answer to an unknown country/subdivision
        raise ValueError(f"holiday calendar {calendar!r}{'/' + subdiv if subdiv else ''}: {e}") from None


def nth_business_day(start: datetime, n: int, tz: str | tzinfo, calendar: str,
                     subdiv: str | None = None, weekend: Iterable[int] = (5, 6)) -> date:
    """The local date of the ``n``-th business day after ``start``'s local date in ``tz`` (the
    start day itself never counts); ``n = 0`` gives the start day."""
    zone = _zone(tz)
    wk = tuple(weekend)
    if len(set(wk)) >= 7:
        raise ValueError("weekend: every day of the week cannot be a weekend day")
    day = _aware(start).astimezone(zone).date()
    left = _count(n, "business_days")
    walked = 0
    while left:
        day += timedelta(days=1)
        walked += 1
        if walked > _MAX_DAYS + 2 * n:
            raise ValueError(f"no {n} business days found within {walked} days (calendar {calendar!r})")
        if is_business_day(day, calendar, subdiv, wk):
            left -= 1
    return day


def add_business_days(start: datetime, n: int, tz: str | tzinfo, calendar: str,
                      subdiv: str | None = None, weekend: Iterable[int] = (5, 6)) -> datetime:
    """The end (23:59:59.999999 local in ``tz``) of the ``n``-th business day after the local day
    of ``start``, in UTC. Weekend days and ``calendar``'s public holidays do not count."""
    zone = _zone(tz)
    return end_of_local_day(nth_business_day(start, n, zone, calendar, subdiv, weekend), zone)


def add_working_days(start: datetime, n: int, tz: str | tzinfo, calendar: str,
                     subdiv: str | None = None, weekend: Iterable[int] = (5, 6)) -> datetime:
    """Working days (Brazil's *dias úteis*) count exactly like :func:`add_business_days`: weekend
    days and the country's public holidays are skipped, and the deadline is the end of the day."""
    return add_business_days(start, n, tz, calendar, subdiv, weekend)


def start_of_next_year(start: datetime, tz: str | tzinfo) -> datetime:
    """Midnight at the start of 1 January after ``start``'s local year in ``tz`` (the end of that
    calendar year), in UTC: HIPAA's annual report of small breaches counts from here."""
    zone = _zone(tz)
    year = _aware(start).astimezone(zone).year
    return from_local(datetime(year + 1, 1, 1), zone)


def format_utc(dt: datetime) -> str:
    """``2026-03-11 09:00 UTC`` (seconds shown only when not zero)."""
    u = _aware(dt, "time")
    return u.strftime("%Y-%m-%d %H:%M:%S UTC" if u.second or u.microsecond else "%Y-%m-%d %H:%M UTC")
