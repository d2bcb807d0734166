"""Unit tests for the quiet-hours policy."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from smsmon.rules.content.hours import AllowedHours, outside_allowed_hours

pytestmark = pytest.mark.unit

SH = ZoneInfo("Asia/Shanghai")
DEFAULT = AllowedHours()


def at(hour: int, minute: int, second: int = 0, tz: ZoneInfo | timezone = SH) -> datetime:
    return datetime(2024, 6, 18, hour, minute, second, tzinfo=tz)


def test_defaults() -> None:
    assert AllowedHours(time(8, 0), time(21, 0), "Asia/Shanghai", True) == DEFAULT


@pytest.mark.parametrize(
    ("hour", "minute", "second", "outside"),
    [
        (7, 59, 0, True),  # minute before start
        (7, 59, 59, True),
        (8, 0, 0, False),  # start is inclusive
        (8, 1, 0, False),  # minute after start
        (12, 0, 0, False),
        (20, 59, 0, False),  # minute before end
        (20, 59, 59, False),
        (21, 0, 0, True),  # end is exclusive: 21:00:00 is outside
        (21, 1, 0, True),  # minute after end
        (0, 0, 0, True),
        (3, 30, 0, True),
        (23, 59, 59, True),
    ],
)
def test_boundaries_in_shanghai(hour: int, minute: int, second: int, outside: bool) -> None:
    assert outside_allowed_hours(at(hour, minute, second), DEFAULT) is outside


def test_last_microsecond_before_end_is_allowed() -> None:
    ts = at(21, 0) - timedelta(microseconds=1)
    assert not outside_allowed_hours(ts, DEFAULT)


@pytest.mark.parametrize(
    ("utc_hour", "utc_minute", "outside"),
    [
        (23, 59, True),  # 07:59 next day in Shanghai
        (0, 0, False),  # 08:00 Shanghai
        (0, 1, False),
        (12, 59, False),  # 20:59 Shanghai
        (13, 0, True),  # 21:00 Shanghai
        (13, 1, True),
    ],
)
def test_utc_timestamps_are_converted(utc_hour: int, utc_minute: int, outside: bool) -> None:
    ts = datetime(2024, 6, 18, utc_hour, utc_minute, tzinfo=UTC)
    assert outside_allowed_hours(ts, DEFAULT) is outside


def test_other_offset_is_converted() -> None:
    minus5 = timezone(timedelta(hours=-5))
    # 19:59 at UTC-5 is 00:59 UTC = 08:59 Shanghai: allowed.
    assert not outside_allowed_hours(at(19, 59, tz=minus5), DEFAULT)
    # 08:00 at UTC-5 is 13:00 UTC = 21:00 Shanghai: outside.
    assert outside_allowed_hours(at(8, 0, tz=minus5), DEFAULT)
    # 07:59 at UTC-5 is 20:59 Shanghai: allowed.
    assert not outside_allowed_hours(at(7, 59, tz=minus5), DEFAULT)
    tokyo = ZoneInfo("Asia/Tokyo")  # one hour ahead of Shanghai
    assert outside_allowed_hours(at(8, 30, tz=tokyo), DEFAULT)  # 07:30 Shanghai
    assert not outside_allowed_hours(at(9, 0, tz=tokyo), DEFAULT)  # 08:00 Shanghai


def test_disabled_policy_never_flags() -> None:
    off = AllowedHours(enabled=False)
    for hour in range(24):
        assert not outside_allowed_hours(at(hour, 30), off)


def test_naive_datetime_raises() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        outside_allowed_hours(datetime(2024, 6, 18, 12, 0), DEFAULT)  # noqa: DTZ001
    with pytest.raises(ValueError):
        outside_allowed_hours(datetime(2024, 6, 18, 12, 0), AllowedHours(enabled=False))  # noqa: DTZ001


def test_configurable_window_and_zone() -> None:
    policy = AllowedHours(start=time(9, 0), end=time(20, 0), tz="Asia/Urumqi")
    urumqi = ZoneInfo("Asia/Urumqi")
    assert outside_allowed_hours(at(8, 59, tz=urumqi), policy)
    assert not outside_allowed_hours(at(9, 0, tz=urumqi), policy)
    assert not outside_allowed_hours(at(19, 59, tz=urumqi), policy)
    assert outside_allowed_hours(at(20, 0, tz=urumqi), policy)


def test_window_wrapping_midnight() -> None:
    night = AllowedHours(start=time(22, 0), end=time(6, 0))
    assert not outside_allowed_hours(at(23, 0), night)
    assert not outside_allowed_hours(at(5, 59), night)
    assert outside_allowed_hours(at(6, 0), night)
    assert outside_allowed_hours(at(21, 59), night)


def test_invalid_policies_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        AllowedHours(tz="Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="empty"):
        AllowedHours(start=time(8, 0), end=time(8, 0))
    with pytest.raises(ValueError, match="tzinfo"):
        AllowedHours(start=time(8, 0, tzinfo=UTC))
