"""The `subscribers` table value: recent senders and flood state of one msisdn in one record,
read and decoded once per batch, written once per batch, untouched parts kept byte for byte."""

from __future__ import annotations

import pytest

from smsmon.agents.pipeline import SubscriberOverlay
from smsmon.rules.consent import RecentSender, RecentSenders
from smsmon.rules.traffic import FloodState, FloodWindow

pytestmark = pytest.mark.unit

KEY = b"13900000001"


def stored(recent: RecentSenders, flood: FloodState) -> bytes:
    return recent.encode() + b"\n" + flood.encode()


class Table:
    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data = data or {}
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self.data.get(key)


def test_a_new_subscriber_starts_empty_and_reads_once() -> None:
    table = Table()
    overlay = SubscriberOverlay(table.get)
    assert overlay.recent(KEY).entries == []
    assert overlay.flood(KEY).windows == {}
    assert table.reads == 1
    assert list(overlay.drain()) == []  # reads alone write nothing


def test_both_parts_round_trip_and_the_last_writer_wins() -> None:
    overlay = SubscriberOverlay(Table().get)
    senders = overlay.recent(KEY)
    senders.record(RecentSender("10690001", "ent-a", 1_000, "淘宝", 1_000), 8, 10**9)
    overlay.set_recent(KEY, senders, "event1")
    flood = overlay.flood(KEY)
    flood.windows[60_000] = FloodWindow(3, {"ent-a": 3}, False)
    overlay.set_flood(KEY, flood, "event2")
    [(key, value, writer)] = list(overlay.drain())
    assert (key, writer) == (KEY, "event2")
    table = Table({KEY: value})
    again = SubscriberOverlay(table.get)
    assert again.recent(KEY).lookup("10690001", 2_000, 10**9) == "ent-a"
    assert again.flood(KEY).windows[60_000].by_enterprise == {"ent-a": 3}


def test_a_part_not_touched_in_the_batch_is_written_back_unchanged() -> None:
    recent = RecentSenders([RecentSender("10690001", "ent-a", 5, "京东", 0)])
    flood = FloodState({0: FloodWindow(1, {"ent-a": 1}, False)}, {"e1": 7})
    original = stored(recent, flood)
    overlay = SubscriberOverlay(Table({KEY: original}).get)
    fl = overlay.flood(KEY)
    fl.windows[0].total += 1
    overlay.set_flood(KEY, fl, "ev")
    [(_, value, _)] = list(overlay.drain())
    recent_part, _, flood_part = value.partition(b"\n")
    assert recent_part == original.partition(b"\n")[0]
    assert FloodState.decode(flood_part).windows[0].total == 2


def test_text_with_newlines_cannot_split_the_value() -> None:
    recent = RecentSenders([RecentSender("1069\n0001", "ent\na", 5, "sig\n", 0)])
    value = stored(recent, FloodState())
    overlay = SubscriberOverlay(Table({KEY: value}).get)
    assert overlay.recent(KEY).entries == recent.entries


def test_drain_forgets_the_batch() -> None:
    table = Table()
    overlay = SubscriberOverlay(table.get)
    overlay.set_flood(KEY, overlay.flood(KEY), "ev")
    assert len(list(overlay.drain())) == 1
    overlay.recent(KEY)
    assert table.reads == 2  # the next batch reads the table again
