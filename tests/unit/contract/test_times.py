"""The one time module: exact, inverse conversions (property-tested)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmon.contract.times import from_ms, from_us, naive_to_us, to_ms, to_us, us_to_ms

pytestmark = pytest.mark.unit

SHANGHAI = ZoneInfo("Asia/Shanghai")
# China has kept no daylight saving time since 1991: no local time in a gap or a fold.
aware = st.datetimes(
    min_value=dt.datetime(1992, 1, 1),  # noqa: DTZ001
    max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([dt.UTC, SHANGHAI, dt.timezone(dt.timedelta(hours=-5))]),
)
epoch_us = st.integers(min_value=-(2**50), max_value=2**52)


@given(aware)
def test_microseconds_are_exact_and_invertible(ts: dt.datetime) -> None:
    us = to_us(ts)
    assert from_us(us) == ts
    assert from_us(us).tzinfo is dt.UTC


@given(aware)
def test_milliseconds_floor_the_microseconds(ts: dt.datetime) -> None:
    assert to_ms(ts) == to_us(ts) // 1000 == us_to_ms(to_us(ts))
    assert from_ms(to_ms(ts)) <= ts < from_ms(to_ms(ts) + 1)


@given(epoch_us)
def test_round_trip_from_integers(us: int) -> None:
    assert to_us(from_us(us)) == us
    assert to_ms(from_ms(us // 1000)) == us // 1000


@given(st.datetimes(min_value=dt.datetime(1992, 1, 1), max_value=dt.datetime(2100, 1, 1)))  # noqa: DTZ001
def test_naive_local_time_is_the_aware_fold_zero_instant(naive: dt.datetime) -> None:
    assert naive_to_us(naive, SHANGHAI) == to_us(naive.replace(tzinfo=SHANGHAI))


def test_a_float_edge_that_timestamp_gets_wrong() -> None:
    # 2^53 µs is past float precision of epoch seconds: timestamp()*1000 can round up into
    # the next millisecond, the integer path cannot.
    ts = dt.datetime(2026, 11, 11, 0, 0, 0, 999_999, tzinfo=dt.UTC)
    assert to_ms(ts) == to_us(ts) // 1000
    assert from_ms(to_ms(ts)).microsecond == 999_000


def test_before_1970_milliseconds_floor_towards_the_past() -> None:
    ts = dt.datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=dt.UTC)
    assert to_us(ts) == -500
    assert to_ms(ts) == -1  # int(ts.timestamp() * 1000) would give 0


def test_to_ms_remembers_only_the_same_object() -> None:
    """`to_ms` keeps its last answer for the identical datetime: equal instants in other
    objects, and other instants in between, are converted afresh."""
    a = dt.datetime(2026, 11, 11, 0, 0, 0, 999, tzinfo=dt.UTC)
    b = dt.datetime(2026, 11, 11, 8, 0, 0, 1000, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert to_ms(a) == to_ms(a) == 1_794_355_200_000
    assert to_ms(b) == 1_794_355_200_001
    assert to_ms(a) == 1_794_355_200_000
    before = dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
    assert to_ms(before) == to_ms(before) == -1
