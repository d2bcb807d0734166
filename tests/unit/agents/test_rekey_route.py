"""A misplaced gateway event is forwarded after reading only its msisdn and event time, and
decoded fully once, at its home partition (issue 17: the re-key path costs one extra produce
and fetch, not a second decode). One found invalid there is dead-lettered under the topic,
partition and offset it was produced to, with the reason its origin would have given.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from smsmon.contract.codec import DecodeContext, DecodeError, decode_event
from tests.unit.agents import crashkit as ck
from tests.unit.agents.crashkit import Broken, Crasher, Inputs

pytestmark = pytest.mark.unit


def test_a_misplaced_invalid_event_is_dead_lettered_at_home_under_its_origin(
    tmp_path: Path,
) -> None:
    s = ck.settings_for(tmp_path)
    inp = Inputs(s, misplaced={0})
    for sub in range(len(ck.SUBSCRIBERS)):
        inp.mt(sub, 0, "ntf", "notification")
    m0 = ck.SUBSCRIBERS[0]
    home, placed = inp.home[m0], inp.placed[m0]
    assert home != placed
    valid = json.loads(next(v for t, p, k, v in inp.records if k == m0.encode()))
    bad = json.dumps({**valid, "event_id": "bad-segments", "segments": 999}).encode()
    with pytest.raises(DecodeError) as refused:
        decode_event(bad, m0.encode(), DecodeContext(tz=s.tz))
    events = s.topic_events
    broker = ck.Broker()
    ck.load_inputs(broker, inp.all())
    bad_offset = broker.append(events, placed, m0.encode(), bad)

    async def scenario() -> None:
        worker = ck.Worker(broker, tmp_path / "w", Crasher([]), inp.reference, Broken())
        try:
            for _ in range(4):  # the origin forwards, the home partition decodes
                batch, ends = worker.next_batch(10_000)
                if batch:
                    await worker.step(batch, ends)
            metrics = worker.pipeline.metrics
            invalid = metrics.invalid.labels(refused.value.reason, "events")._value.get()
            assert invalid == 1
        finally:
            worker.close()

    with ck.frozen_clock():
        asyncio.run(scenario())

    forwarded = [rec for _, rec in broker.committed(s.rekey_topic) if rec.value == bad]
    assert len(forwarded) == 1  # routed without a full decode at its origin
    assert dict(forwarded[0].headers)["smsmon-from-offset"] == str(bad_offset).encode()
    dead = [json.loads(rec.value or b"") for _, rec in broker.committed(s.topic_dlq)]
    assert [(d["source_topic"], d["partition"], d["offset"], d["reason"]) for d in dead] == [
        (events, placed, bad_offset, refused.value.reason)
    ]
    assert dead[0]["value_text"] == bad.decode()


def test_a_misplaced_keyed_event_the_origin_cannot_route_is_forwarded_after_its_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyed by its msisdn but on another partition than that msisdn's: when the cheap read
    (`route_event`) cannot tell where it goes, the full decode at the origin does, and the
    record is forwarded all the same (not processed where it was read)."""
    from smsmon.agents import pipeline

    monkeypatch.setattr(pipeline, "route_event", lambda *_: None)
    s = ck.settings_for(tmp_path)
    inp = Inputs(s, misplaced={0})
    for sub in range(len(ck.SUBSCRIBERS)):
        inp.mt(sub, 0, "ntf", "notification")
    m0 = ck.SUBSCRIBERS[0]
    assert inp.home[m0] != inp.placed[m0]
    broker = ck.Broker()
    ck.load_inputs(broker, inp.all())

    async def scenario() -> None:
        worker = ck.Worker(broker, tmp_path / "w", Crasher([]), inp.reference, Broken())
        try:
            for _ in range(4):
                batch, ends = worker.next_batch(10_000)
                if batch:
                    await worker.step(batch, ends)
        finally:
            worker.close()

    with ck.frozen_clock():
        asyncio.run(scenario())

    forwarded = [rec for _, rec in broker.committed(s.rekey_topic) if rec.key == m0.encode()]
    assert forwarded, "the misplaced record was not forwarded"
    assert all(
        p == inp.home[m0] for p, rec in broker.committed(s.rekey_topic) if rec.key == m0.encode()
    )
