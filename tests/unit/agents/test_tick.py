"""The 1-s tick (`Pipeline.tick`) beside a batch transaction in flight.

The tick used to wait, under the batches' lock, for the transaction in flight before
queueing its markers: once a second the next batch could not start until that transaction
committed (12 % of a worker's wall time at full rate, docs/performance.md). Now it queues
them and chains their transaction after the one in flight, and returns at once; a marker
still never commits before the re-keyed records of the batches it covers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from smsmon.agents.pipeline import ORIGIN_HEADER, ORIGIN_WATERMARK
from tests.unit.agents import crashkit as ck
from tests.unit.agents.crashkit import Broken, Crasher, Inputs

pytestmark = pytest.mark.unit

S = ck.settings_for(Path("/nonexistent"))


def _is_marker(rec: ck.Record) -> bool:
    return (ORIGIN_HEADER, ORIGIN_WATERMARK) in rec.headers


def test_the_tick_does_not_wait_for_the_transaction_in_flight(tmp_path: Path) -> None:
    inp = Inputs(S, misplaced={0})  # subscriber 0's events are re-keyed
    inp.mt(0, 0)
    inp.mt(1, 0)

    async def scenario() -> None:
        broker = ck.Broker()
        ck.load_inputs(broker, inp.all())
        worker = ck.Worker(broker, tmp_path / "w", Crasher([]), inp.reference, Broken())
        p = worker.pipeline
        gate = asyncio.Event()
        commit = worker.producer.commit_transaction

        async def held_commit() -> None:
            await gate.wait()
            await commit()

        worker.producer.commit_transaction = held_commit  # type: ignore[method-assign]
        batch, ends = worker.next_batch(100)
        await worker.step_pipelined(batch, ends)
        in_flight = p._in_flight
        assert in_flight is not None
        await asyncio.sleep(0)
        assert not in_flight.done()  # held at its commit
        forwarded_txn = broker.txns and max(broker.txns)
        p._marker_sent.clear()  # every origin's marker is due again
        # the old tick waited here for the held transaction: a timeout
        await asyncio.wait_for(worker.tick(), timeout=2.0)
        chained = p._in_flight
        assert chained is not None and chained is not in_flight
        assert not chained.done()
        gate.set()
        await chained
        assert in_flight.done()
        markers = [
            rec
            for (topic, _), log in broker.logs.items()
            if topic == S.rekey_topic
            for rec in log
            if not rec.control and _is_marker(rec)
        ]
        forwarded = [
            rec
            for (topic, _), log in broker.logs.items()
            if topic == S.rekey_topic
            for rec in log
            if not rec.control and not _is_marker(rec)
        ]
        assert forwarded, "the input re-keys nothing: the test checks nothing"
        assert all(broker.visible(r) for r in markers + forwarded)
        tick_markers = [r for r in markers if r.txn is not None and r.txn > forwarded_txn]
        assert tick_markers, "the tick queued no marker"
        # the tick's own transaction commits after the batch's (which re-keyed subscriber 0)
        assert min(r.txn for r in tick_markers) > max(  # type: ignore[operator]
            r.txn  # type: ignore[misc]
            for r in forwarded
        )
        worker.close()

    with ck.frozen_clock():
        asyncio.run(scenario())


def test_ticks_between_batches_change_no_answer(tmp_path: Path) -> None:
    """Pipelined batches with a tick after each, re-keyed subscribers included: the same
    alerts, counts and consent as sequential batches without ticks."""
    inp = Inputs(S, misplaced={0, 2})
    inp.grant(1, 0)
    for sub in range(4):
        inp.mt(sub, 0)
        inp.mt(sub, 1, "ntf", "notification")
    inp.td(0, 0)
    inp.mt(0, 0)
    inp.flood(2, 1, 17)
    ref = ck.run(tmp_path / "ref", inp.all(), inp.reference, [3])
    ticked = ck.run(tmp_path / "ticked", inp.all(), inp.reference, [3], pipelined=True, ticks=True)
    assert ref.alerts, "the input raises no alert: the test checks nothing"
    assert ck.same(ref, ticked) == []
