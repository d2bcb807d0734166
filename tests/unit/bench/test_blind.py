"""bench.blind: the probe events, and blind time per partition from alert timestamps."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bench import blind
from bench.traffic import partition_for

pytestmark = pytest.mark.unit


def test_probe_msisdns_lie_in_their_own_partition_and_are_distinct() -> None:
    pools = blind.msisdns_per_partition(8, 5)
    assert [len(p) for p in pools] == [5] * 8
    assert all(partition_for(m, 8) == part for part, pool in enumerate(pools) for m in pool)
    flat = [m for pool in pools for m in pool]
    assert len(set(flat)) == len(flat)


def test_the_event_id_names_the_partition() -> None:
    eid = blind.event_id("ab12cd", 6, 41)
    assert blind.partition_of(eid) == 6
    assert blind.partition_of("ev-0000003") is None
    assert blind.partition_of("blind-x-y-z") is None
    body = json.loads(blind.event(eid, "19800000001", dt.datetime(2026, 12, 1, tzinfo=dt.UTC)))
    assert (body["event_id"], body["kind"], body["category"]) == (eid, "mt", "notification")


def test_blind_time_runs_from_the_last_alert_created_before_the_kill_to_the_first_after() -> None:
    t = 1_000.0
    seen = {
        0: [(t - 0.3, t - 0.2), (t - 0.1, t + 0.2), (t + 9.0, t + 9.4), (t + 9.1, t + 9.2)],
        1: [(t - 0.05, t - 0.01), (t + 0.05, t + 0.1)],
        2: [(t - 1.0, t - 0.9)],  # nothing after the kill yet
    }
    got = blind.blind_times(seen, range(4), t)
    # partition 0: an alert created before the kill but received after it is not "after"
    assert got[0]["blind_s"] == pytest.approx(9.1)
    assert got[0]["first_after_s"] == pytest.approx(9.0)
    assert got[0]["received_after_s"] == pytest.approx(9.2)
    assert got[1]["blind_s"] == pytest.approx(0.1)
    assert got[2]["blind_s"] is None and got[2]["last_before_s"] == pytest.approx(1.0)
    assert got[3] == {
        "blind_s": None,
        "last_before_s": None,
        "first_after_s": None,
        "received_after_s": None,
    }
    assert not blind.covered(seen, 2, t + 1.0)
    assert blind.covered({0: [(t + 2, t + 2)], 1: [(t + 3, t + 3)]}, 2, t + 1.0)
