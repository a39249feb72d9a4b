"""Timestamps as the formats write them → aware UTC datetimes (or ``None``, never an error).

An unparseable timestamp is not a parse problem of the record: the record's fields are still
right, only its time is unknown (the caller falls back to the file's time).
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

# EventLogFile TIMESTAMP: 20240311160000.000 (always UTC).
_ELF = re.compile(r"(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.(\d{1,6}))?")
# Common Log Format / API Gateway requestTime: 10/Jun/2023:15:36:28 +0000.
_CLF = re.compile(r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:\s*([+-])(\d\d):?(\d\d))?")
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# ISO 8601 with a 7-9 digit fraction (Go, .NET, nanosecond loggers): fromisoformat wants <= 6.
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")
# Epoch numbers: the magnitude tells the unit. 1e9 s is 2001, 1e11 s is year 5138: anything from
# 10^11 up is milliseconds, from 10^14 microseconds, from 10^17 nanoseconds.
_EPOCH = re.compile(r"\d{9,19}(?:\.\d+)?")


def _utc(dt: datetime) -> datetime:
    # A timestamp without an offset is taken as UTC: EventLogFile, Mule on CloudHub and most
    # JSON loggers write UTC; a local-time log is off by its zone, not unusable.
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_timestamp(text: str | bytes | None) -> datetime | None:
    """``text`` as an aware UTC datetime, or ``None`` when it is no timestamp leakwatch knows.

    Accepts ISO 8601 / RFC 3339 (``T`` or space, ``,`` or ``.`` fraction, ``Z`` or offset, up to
    9 fraction digits), EventLogFile ``20240311160000.000``, Common Log Format
    ``10/Jun/2023:15:36:28 +0000``, epoch seconds/ms/µs/ns, and RFC 2822 dates.
    """
    if text is None:
        return None
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8", "replace")
    s = text.strip().strip('"').strip()
    if not s or len(s) > 64:
        return None
    try:
        c0 = s[0]
        if c0.isdigit():
            m = _ELF.fullmatch(s)
            if m:
                y, mo, d, h, mi, se, frac = m.groups()
                us = int((frac or "0").ljust(6, "0"))
                return datetime(int(y), int(mo), int(d), int(h), int(mi), int(se), us, tzinfo=UTC)
            if "/" in s[:6]:
                return _parse_clf(s)
            if _EPOCH.fullmatch(s):
                return _parse_epoch(s)
            if len(s) >= 10 and s[4] == "-":
                iso = s.replace(",", ".", 1) if "," in s else s
                if len(iso) > 26:
                    iso = _LONG_FRACTION.sub(r"\1", iso, count=1)
                return _utc(datetime.fromisoformat(iso))
            return None
        if c0.isalpha():
            return _utc(parsedate_to_datetime(s))
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    return None


def _parse_clf(s: str) -> datetime | None:
    m = _CLF.fullmatch(s)
    if not m:
        return None
    d, mon, y, h, mi, se, frac, sign, oh, om = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    tz = UTC
    if sign:
        delta = timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(-delta if sign == "-" else delta)
    us = int((frac or "0").ljust(6, "0"))
    return datetime(int(y), month, int(d), int(h), int(mi), int(se), us, tzinfo=tz).astimezone(UTC)


def _parse_epoch(s: str) -> datetime | None:
    v = float(s)
    if v >= 1e17:
        v /= 1e9
    elif v >= 1e14:
        v /= 1e6
    elif v >= 1e11:
        v /= 1e3
    return datetime.fromtimestamp(v, UTC)
