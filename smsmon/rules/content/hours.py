"""Quiet-hours policy: when marketing SMS may be sent (default 08:00-21:00 Asia/Shanghai)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["AllowedHours", "outside_allowed_hours"]


@dataclass(frozen=True)
class AllowedHours:
    """The local window in which marketing may be sent: `start` <= local time < `end`.

    `end` is exclusive: with the default policy 20:59:59.999999 is allowed and 21:00:00
    is already outside.  A window with `start` > `end` wraps midnight (22:00-06:00).
    `enabled=False` turns the rule off (nothing is ever outside).
    """

    start: time = time(8, 0)
    end: time = time(21, 0)
    tz: str = "Asia/Shanghai"
    enabled: bool = True

    def __post_init__(self) -> None:
        """Reject a policy that cannot be evaluated (unknown zone, empty or aware window)."""
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("AllowedHours.start and .end are local wall-clock times: no tzinfo")
        if self.start == self.end:
            raise ValueError("AllowedHours window is empty (start == end); use enabled=False")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.tz!r}") from exc


def outside_allowed_hours(ts: datetime, hours: AllowedHours) -> bool:
    """True if `ts`, read as local time in `hours.tz`, falls outside the allowed window.

    `ts` must be timezone-aware (any zone; it is converted to `hours.tz`); a naive
    datetime raises ValueError because its instant is unknown.  The window is
    start-inclusive and end-exclusive, so 08:00:00 is allowed and 21:00:00 is not.
    A disabled policy returns False for every `ts` (after the naive check).
    """
    if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
        raise ValueError("outside_allowed_hours needs a timezone-aware datetime")
    if not hours.enabled:
        return False
    local = ts.astimezone(ZoneInfo(hours.tz)).time()
    if hours.start < hours.end:
        allowed = hours.start <= local < hours.end
    else:  # wraps midnight, e.g. 22:00-06:00
        allowed = local >= hours.start or local < hours.end
    return not allowed
