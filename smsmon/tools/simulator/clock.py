"""Simulated time: offsets in seconds from the start, as ISO-8601 strings and local hours."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


def iso(start: dt.datetime, tz: ZoneInfo, offset: float) -> str:
    """The instant `offset` seconds after `start`, local time with milliseconds."""
    ts = start + dt.timedelta(seconds=offset)
    return ts.astimezone(tz).isoformat(timespec="milliseconds")


def local_hour(ts: dt.datetime, tz: ZoneInfo) -> float:
    """Hour of day of `ts` in `tz`, fractional (13:30 is 13.5)."""
    local = ts.astimezone(tz)
    return local.hour + local.minute / 60 + local.second / 3600


class Clock:
    """ISO-8601 strings (milliseconds, local offset) for offsets; cached per whole second,
    since every record of a run needs one and `isoformat` is the dear part."""

    __slots__ = ("_off", "_pre", "_sec", "epoch0", "tz")

    def __init__(self, start: dt.datetime, tz: ZoneInfo) -> None:
        self.epoch0 = start.timestamp()
        self.tz = tz
        self._sec = -1
        self._pre = ""
        self._off = ""

    def iso(self, t: float) -> str:
        """The ts of a record at offset `t`."""
        sec, ms = divmod(int((self.epoch0 + t) * 1000), 1000)
        if sec != self._sec:
            s = dt.datetime.fromtimestamp(sec, self.tz).isoformat()
            self._sec, self._pre, self._off = sec, s[:19], s[19:]
        return f"{self._pre}.{ms:03d}{self._off}"
