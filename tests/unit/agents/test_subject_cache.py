"""Stage 2's cache of decoded subject states: one table read per subject, one write per
changed subject per batch, bounded size, never an older state over a newer one."""

from __future__ import annotations

import pytest

from smsmon.agents.aggregation import SubjectCache
from smsmon.rules.aggregate import SubjectState

pytestmark = pytest.mark.unit


class Table:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return self.data.get(key)


def test_reads_a_subject_once_and_writes_each_change_once_per_drain() -> None:
    table = Table()
    table.data[b"port|1069"] = SubjectState(ewma=3.5, windows_seen=4).encode()
    cache = SubjectCache(table.get, capacity=10)
    for n in range(3):  # three partials of one batch touch the same subject
        cache.writer = f"event{n}"
        st = cache.get("port|1069")
        st.volume.setdefault(60_000, [0, 0])[0] += 1
        cache.put("port|1069", st)
    assert table.reads == 1
    drained = list(cache.drain())
    assert len(drained) == 1
    key, value, writer = drained[0]
    assert (key, writer) == (b"port|1069", "event2")  # the last writer's partition
    decoded = SubjectState.decode(value)
    assert decoded.volume == {60_000: [3, 0]} and decoded.ewma == 3.5
    assert list(cache.drain()) == []  # nothing changed since
    assert cache.get("port|1069").volume == {60_000: [3, 0]} and table.reads == 1


def test_a_missing_subject_starts_empty() -> None:
    cache = SubjectCache(Table().get, capacity=10)
    assert cache.get("sig|淘宝").empty()


def test_seed_never_replaces_a_cached_state() -> None:
    cache = SubjectCache(Table().get, capacity=10)
    newer = cache.get("port|1")
    newer.windows_seen = 9
    cache.seed("port|1", SubjectState(windows_seen=1))
    cache.seed("port|2", SubjectState(windows_seen=2))
    assert cache.get("port|1").windows_seen == 9
    assert cache.get("port|2").windows_seen == 2


def test_size_is_bounded_and_evicted_states_are_read_again() -> None:
    table = Table()
    cache = SubjectCache(table.get, capacity=8)
    for i in range(20):
        cache.writer = i
        st = cache.get(f"port|{i}")
        st.windows_seen = i
        cache.put(f"port|{i}", st)
    for key, value, _ in cache.drain():
        table.data[key] = value
    assert len(cache) <= 8
    reads = table.reads
    assert cache.get("port|0").windows_seen == 0  # evicted, read back from the table
    assert table.reads == reads + 1


def test_clear_forgets_everything_after_a_rebalance() -> None:
    table = Table()
    cache = SubjectCache(table.get, capacity=10)
    cache.get("port|1").windows_seen = 5
    cache.clear()
    assert cache.get("port|1").windows_seen == 0 and len(cache) == 1
