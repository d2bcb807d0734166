"""BatchOutput's submissions: in order across submissions, not waited for by `submit`, and a
batch's input is acknowledged only once its output is handed to the producer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from smsmon.agents import pipeline
from smsmon.streams.output import BatchOutput

pytestmark = pytest.mark.unit


class FakeBatch:
    def __init__(self) -> None:
        self.records: list[tuple[Any, Any]] = []

    def append(self, *, key: Any, value: Any, timestamp: int, headers: Any) -> object:
        self.records.append((key, value))
        return object()


class FakeProducer:
    """`send_batch` waits for `gate` as aiokafka's does for the batch before it to drain."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.sent: list[tuple[str, int, list[tuple[Any, Any]]]] = []
        self.fail: BaseException | None = None

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.sent.append((topic, partition, batch.records))
        return asyncio.get_running_loop().create_future()


class FakeApp:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = self
        self._producer = producer

    def _ensure_producer(self) -> FakeProducer:
        return self._producer


def values(producer: FakeProducer) -> list[Any]:
    return [v for _, _, records in producer.sent for _, v in records]


def test_submit_returns_before_the_producer_takes_the_records_and_keeps_their_order() -> None:
    async def run() -> None:
        producer = FakeProducer()
        out = BatchOutput(FakeApp(producer))
        producer.gate.clear()  # a request is in flight: the producer does not take batches
        out.add("t", None, b"1", partition=0)
        first = out.submit()
        out.add("t", None, b"2", partition=0)
        second = out.submit()  # returns at once, although the first is not submitted
        await asyncio.sleep(0.01)
        assert not first.done() and not second.done()
        assert producer.sent == []
        producer.gate.set()
        await out.submitted()
        assert first.done() and second.done()
        assert values(producer) == [b"1", b"2"]

    asyncio.run(run())


def test_flush_waits_for_earlier_submissions_and_an_empty_submit_is_the_last_one() -> None:
    async def run() -> None:
        producer = FakeProducer()
        out = BatchOutput(FakeApp(producer))
        producer.gate.clear()
        out.add("t", None, b"a", partition=1)
        first = out.submit()
        assert out.submit() is first  # nothing new queued: done when the last one is
        flush = asyncio.ensure_future(out.flush())
        await asyncio.sleep(0.01)
        assert not flush.done()
        producer.gate.set()
        await flush
        assert values(producer) == [b"a"]

    asyncio.run(run())


def test_a_refused_submission_fails_its_future_and_every_later_one() -> None:
    async def run() -> None:
        producer = FakeProducer()
        producer.fail = RuntimeError("broker refused")
        out = BatchOutput(FakeApp(producer))
        out.add("t", b"k", b"v")
        first = out.submit()
        out.add("t", b"k", b"w")
        second = out.submit()
        with pytest.raises(RuntimeError):
            await first
        with pytest.raises(RuntimeError):
            await second

    asyncio.run(run())


def test_a_batch_is_acked_only_after_its_output_is_submitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed: list[str] = []
    monkeypatch.setattr(pipeline, "fail_fast", failed.append)

    async def run() -> None:
        acked: list[int] = []
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        done.add_done_callback(lambda f: pipeline._ack_when_submitted(acked.append, [1, 2], f))
        await asyncio.sleep(0)
        assert acked == []  # not yet submitted
        done.set_result(None)
        await asyncio.sleep(0)
        assert acked == [1, 2]

        cancelled = loop.create_future()
        cancelled.cancel()
        pipeline._ack_when_submitted(acked.append, [3], cancelled)
        refused = loop.create_future()
        refused.set_exception(RuntimeError("refused"))
        pipeline._ack_when_submitted(acked.append, [4], refused)
        assert acked == [1, 2]
        assert failed == ["check_events output"]

    asyncio.run(run())
