"""A partition taken over with everything already committed counts as read to the end.

The fault storm of issue 16 once ended with 100 sublet windows that never closed: a worker
took over partitions from one that died right after its last commit, read nothing on an
events partition (nothing was left), and `Pipeline._caught_up` looked only at positions of
records handled, so that partition was never caught up and its source held the watermark of
its logical partition back for good (docs/traffic.md, "Watermarks"). With nothing handled
since the assignment, the committed offset is the position.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.unit.agents import crashkit as ck
from tests.unit.agents.crashkit import Broken, Crasher, Inputs

pytestmark = pytest.mark.unit


def test_a_partition_committed_to_its_end_before_the_assignment_is_caught_up(
    tmp_path: Path,
) -> None:
    s = ck.settings_for(tmp_path)
    inp = Inputs(s)
    for sub in range(len(ck.SUBSCRIBERS)):
        inp.mt(sub, 0, "ntf", "notification")
    broker = ck.Broker()
    ck.load_inputs(broker, inp.all())
    events = s.topic_events
    ends = {p: broker.end(events, p) for p in range(ck.PARTITIONS)}
    assert all(ends.values()), ends  # events on every partition
    broker.group[(events, 1)] = ends[1]  # the previous owner committed partition 1 whole

    async def scenario() -> None:
        worker = ck.Worker(broker, tmp_path / "w", Crasher([]), inp.reference, Broken())
        p = worker.pipeline
        try:
            assert p._caught_up("e1")  # nothing handled, nothing left
            assert p._caught_up("m0.1") is False  # markers: only an idle marker says so
            assert not p._caught_up("e0")  # records left
            batch, batch_ends = worker.next_batch(10_000)
            assert {d.message.partition for d in batch if d.message.topic == events} == {0}
            await worker.step(batch, batch_ends)
            assert p._caught_up("e0") and p._caught_up("e1")
            assert p._origin_caught_up(ck.TP(events, 1))
        finally:
            worker.close()

    with ck.frozen_clock():
        asyncio.run(scenario())


def test_a_partition_that_never_held_a_record_is_caught_up(tmp_path: Path) -> None:
    """Defect 14: an events partition with no record and no committed offset (a gateway that
    writes to some partitions only) was never caught up, so its sources held the watermark
    of every logical partition at None and stage 2 closed no window at all. Its fetch
    position, reached without handing a record out, says it is read; records handed out
    and not handled yet still count as pending."""
    s = ck.settings_for(tmp_path)
    inp = Inputs(s)
    for sub in range(len(ck.SUBSCRIBERS)):
        if inp.home[ck.SUBSCRIBERS[sub]] == 0:
            inp.mt(sub, 0, "ntf", "notification")
    broker = ck.Broker()
    ck.load_inputs(broker, inp.all())
    events = s.topic_events
    assert broker.end(events, 0) > 0 and broker.end(events, 1) == 0
    assert (events, 1) not in broker.group  # never committed

    async def scenario() -> None:
        worker = ck.Worker(broker, tmp_path / "w", Crasher([]), inp.reference, Broken())
        p = worker.pipeline
        try:
            assert p._caught_up("e1")  # empty, nothing handed out
            assert p._origin_caught_up(ck.TP(events, 1))  # so it may send idle markers
            assert p._caught_up("m1.0") is False  # markers: only an idle marker says so
            assert not p._caught_up("e0")
            batch, batch_ends = worker.next_batch(10_000)
            assert {d.message.partition for d in batch if d.message.topic == events} == {0}
            # handed out, not handled: its fetch position is at the end, yet it is pending
            assert worker.positions[(events, 0)] == broker.end(events, 0)
            assert not p._caught_up("e0")
            await worker.step(batch, batch_ends)
            assert p._caught_up("e0") and p._caught_up("e1")
        finally:
            worker.close()

    with ck.frozen_clock():
        asyncio.run(scenario())
