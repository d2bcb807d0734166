"""Event time in one place: aware datetimes <-> epoch milliseconds <-> epoch microseconds.

Every conversion is exact integer arithmetic on `timedelta`s, never through the float of
`datetime.timestamp()`: a float of epoch seconds has about 0.2 µs of resolution today, so
`int(ts.timestamp() * 1000)` and a floor division can put the same instant into different
milliseconds (and so different windows) at the edges. Milliseconds are floored (towards the
past, also before 1970), microseconds are exact.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)  # noqa: DTZ001 (local wall-time arithmetic)
_MS = dt.timedelta(milliseconds=1)
_US = dt.timedelta(microseconds=1)


# The last datetime `to_ms` converted and its value: the worker and the rules convert one
# event's `ts` several times (routing, watermark, windows), and a datetime is immutable.
_LAST_MS: tuple[dt.datetime | None, int] = (None, 0)


def to_ms(ts: dt.datetime) -> int:
    """Epoch milliseconds of an aware datetime, floored."""
    global _LAST_MS
    last = _LAST_MS
    if last[0] is ts:
        return last[1]
    ms = (ts - EPOCH) // _MS
    _LAST_MS = (ts, ms)
    return ms


def to_us(ts: dt.datetime) -> int:
    """Exact epoch microseconds of an aware datetime."""
    return (ts - EPOCH) // _US


def from_ms(ms: int) -> dt.datetime:
    """The aware UTC datetime of epoch milliseconds (exact: the inverse of `to_ms`)."""
    return EPOCH + dt.timedelta(milliseconds=ms)


def from_us(us: int) -> dt.datetime:
    """The aware UTC datetime of epoch microseconds (exact: the inverse of `to_us`)."""
    return EPOCH + dt.timedelta(microseconds=us)


def us_to_ms(us: int) -> int:
    """Epoch milliseconds of epoch microseconds, floored like `to_ms`."""
    return us // 1000


def naive_to_us(ts: dt.datetime, tz: ZoneInfo) -> int:
    """`to_us(ts.replace(tzinfo=tz))` for a naive local wall time (fold 0), without building
    the aware datetime (the audit's sort key is computed once per archived record)."""
    offset = tz.utcoffset(ts)
    return (ts - _NAIVE_EPOCH) // _US - (offset // _US if offset else 0)
