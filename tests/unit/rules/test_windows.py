"""Event-time windowing: tumbling window boundaries, grace and lateness, watermarks and idleness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmon.rules.windows import Watermarks, Windowing

pytestmark = pytest.mark.unit

MINUTE = 60_000
T = 1_714_528_800_000  # 2024-05-01T02:00:00Z, a whole minute in epoch ms


# --- window boundaries --------------------------------------------------------------------


def test_window_start_and_end_are_aligned_to_the_size() -> None:
    """A 1-minute window starts on the minute and ends (exclusive) a minute later."""
    w = Windowing(MINUTE, 10_000)
    assert w.start(T + 12_345) == T
    assert w.end(T) == T + MINUTE


def test_event_at_exactly_the_window_end_belongs_to_the_next_window() -> None:
    """Windows are half-open [start, end): ts == end opens the next window, end - 1 does not."""
    w = Windowing(MINUTE, 10_000)
    assert w.start(T + MINUTE - 1) == T
    assert w.start(T + MINUTE) == T + MINUTE
    assert w.start(T) == T


@given(ts=st.integers(min_value=0, max_value=2**50), size=st.integers(1, 10**8))
def test_every_timestamp_lies_in_exactly_its_window(ts: int, size: int) -> None:
    """For any event time, start <= ts < end and the start is a multiple of the size."""
    w = Windowing(size, 0)
    s = w.start(ts)
    assert s <= ts < w.end(s)
    assert s % size == 0


# --- lateness and closing -----------------------------------------------------------------


def test_nothing_is_late_before_any_watermark() -> None:
    """Without a watermark (nothing seen yet) no event is late and no window can close."""
    w = Windowing(MINUTE, 10_000)
    assert not w.is_late(0, None)
    assert not w.closable(0, None)


def test_event_behind_the_watermark_but_within_grace_is_not_late() -> None:
    """An event whose window ended less than `grace` before the watermark is still counted."""
    w = Windowing(MINUTE, 10_000)
    ts = T + 59_000  # window [T, T+60s)
    assert not w.is_late(ts, T + MINUTE + 9_999)
    assert not w.closable(T, T + MINUTE + 9_999)


def test_event_beyond_grace_is_late_and_its_window_closable() -> None:
    """Once watermark - grace reaches the window end, the window is closed: its events are late."""
    w = Windowing(MINUTE, 10_000)
    ts = T + 59_000
    assert w.is_late(ts, T + MINUTE + 10_000)
    assert w.closable(T, T + MINUTE + 10_000)
    assert w.is_late(T, T + 10 * MINUTE)


def test_lateness_is_judged_on_the_window_not_the_event_distance() -> None:
    """An event ~30 s behind the watermark is on time while its window is open (grace 10 s)."""
    w = Windowing(MINUTE, 10_000)
    assert not w.is_late(T + 40_000, T + 69_999)  # window [T, T+60s) closes at T+70s
    assert w.is_late(T + 40_000, T + 70_000)


def test_zero_grace_closes_a_window_at_its_end() -> None:
    """With no grace, the window closes as soon as the watermark reaches its end."""
    w = Windowing(MINUTE, 0)
    assert not w.closable(T, T + MINUTE - 1)
    assert w.closable(T, T + MINUTE)


def test_is_late_and_closable_agree() -> None:
    """An event is late exactly when the window holding it is closable."""
    w = Windowing(MINUTE, 10_000)
    for wm in (T, T + 69_999, T + 70_000, T + 200_000):
        for ts in (T, T + 30_000, T + 59_999, T + 60_000):
            assert w.is_late(ts, wm) == w.closable(w.start(ts), wm)


# --- watermarks ---------------------------------------------------------------------------


def test_combined_watermark_is_none_before_any_source() -> None:
    """No source reported yet: there is no watermark."""
    assert Watermarks(30_000).combined(0) is None


def test_combined_watermark_is_the_minimum_of_active_sources() -> None:
    """Several active sources: the slowest one holds the watermark."""
    wm = Watermarks(30_000)
    wm.advance("a", T + 50_000, 1_000)
    wm.advance("b", T + 20_000, 1_000)
    assert wm.combined(2_000) == T + 20_000


def test_a_source_never_moves_backwards() -> None:
    """An out-of-order event does not pull its source's event time back."""
    wm = Watermarks(30_000)
    wm.advance("a", T + 50_000, 1_000)
    wm.advance("a", T + 10_000, 1_500)
    assert wm.event_ms["a"] == T + 50_000
    assert wm.combined(2_000) == T + 50_000


def test_idle_source_stops_holding_the_watermark_back() -> None:
    """A source quiet for idle_ms of wall time no longer holds the combined watermark."""
    wm = Watermarks(30_000)
    wm.advance("quiet", T, 0)
    wm.advance("busy", T + 5_000, 0)
    assert wm.combined(29_999) == T
    wm.advance("busy", T + 120_000, 29_999)
    assert wm.combined(29_999) == T  # quiet is not idle yet
    assert wm.combined(30_000) == T + 120_000  # now it is


def test_idle_source_rejoins_when_it_advances_again() -> None:
    """A source that was idle takes part again once it reports later event time."""
    wm = Watermarks(30_000)
    wm.advance("quiet", T, 0)
    wm.advance("busy", T + 120_000, 40_000)
    assert wm.combined(40_000) == T + 120_000
    wm.advance("quiet", T + 100_000, 41_000)
    assert wm.combined(41_000) == T + 100_000


def test_a_source_without_progress_in_event_time_goes_idle() -> None:
    """Idleness means no advance in event time: repeating an old time does not keep it active."""
    wm = Watermarks(30_000)
    wm.advance("stuck", T, 0)
    wm.advance("busy", T + 60_000, 35_000)
    wm.advance("stuck", T, 35_000)  # same event time again
    assert wm.combined(35_000) == T + 60_000


def test_when_all_sources_are_idle_the_furthest_one_counts() -> None:
    """All sources quiet: the watermark is the furthest event time (time does not stall)."""
    wm = Watermarks(30_000)
    wm.advance("a", T, 0)
    wm.advance("b", T + 90_000, 0)
    assert wm.combined(1_000_000) == T + 90_000


# --- expected sources ----------------------------------------------------------------------


def test_an_expected_source_that_has_not_reported_holds_the_watermark() -> None:
    """A source known to exist holds the watermark (None) until it reports."""
    wm = Watermarks(30_000)
    wm.expect(["a", "b"], 0)
    wm.advance("a", T + 600_000, 0)
    assert wm.combined(1_000) is None
    wm.advance("b", T, 2_000)
    assert wm.combined(2_000) == T
    assert wm.expected == {}


def test_an_expected_source_stops_holding_after_idle_ms_with_nothing_pending() -> None:
    """An expected source that never reports is skipped after idle_ms, unless it has
    records pending (then it may simply not have been read yet)."""
    wm = Watermarks(30_000)
    wm.expect(["a", "quiet"], 0)
    wm.advance("a", T, 0)
    assert wm.combined(29_999) is None
    assert wm.combined(30_000, caught_up=lambda s: s != "quiet") is None  # pending
    assert wm.combined(30_000) == T
    assert wm.combined(30_000, caught_up=lambda s: True) == T


def test_expecting_a_source_that_already_reported_changes_nothing() -> None:
    wm = Watermarks(30_000)
    wm.advance("a", T, 0)
    wm.expect(["a"], 10)
    assert wm.expected == {}
    assert wm.combined(10) == T
