"""Group commit (`Transactions.commit`): requests that arrive while a transaction runs are
committed together in the next one, each with its own last offsets."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.errors import ProducerFenced
from aiokafka.protocol.transaction import EndTxnRequest

from smsmon.streams import transactions as txn_module
from smsmon.streams.transactions import Transactions

pytestmark = pytest.mark.unit


class Client:
    async def send(self, node_id: int, request: Any, **_: Any) -> None:
        return None


class Batch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.values: list[bytes | None] = []

    def append(self, *, key: Any, value: bytes | None, timestamp: int, headers: Any) -> Any:
        if len(self.values) >= self.capacity:
            return None
        self.values.append(value)
        return object()


class Producer:
    """A transactional producer over partition logs: offsets per partition, records and
    offsets per committed transaction; `hold` keeps a commit waiting; `fail` raises at the
    commit of the transaction with that number."""

    def __init__(
        self,
        hold: asyncio.Event | None,
        fail: int | None = None,
        acks: asyncio.Event | None = None,
    ) -> None:
        self.hold = hold
        self.fail = fail
        self.acks = acks  # the first transaction's produce acknowledgements wait for it
        self.acking: list[asyncio.Future[None]] = []
        self.client = Client()
        self.ends: dict[tuple[str, int], int] = defaultdict(int)
        self.log: dict[tuple[str, int], list[bytes | None]] = defaultdict(list)
        self.txns: list[dict[str, Any]] = []
        self.begun = 0
        self.current: dict[str, Any] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def begin_transaction(self) -> None:
        self.begun += 1
        self.current = {"records": defaultdict(list), "offsets": {}}

    def create_batch(self) -> Batch:
        return Batch(2)

    async def send_batch(self, batch: Batch, topic: str, partition: int) -> Any:
        tp = (topic, partition)
        base = self.ends[tp]
        self.ends[tp] += len(batch.values)
        self.log[tp].extend(batch.values)
        self.current["records"][tp].extend(batch.values)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        meta = type("Meta", (), {"offset": base})()
        if self.acks is not None and self.begun == 1 and not self.acks.is_set():
            acks = self.acks

            async def ack() -> None:
                await acks.wait()
                fut.set_result(meta)

            self.acking.append(asyncio.ensure_future(ack()))
        else:
            fut.set_result(meta)
        return fut

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        self.current["offsets"].update(offsets)

    async def commit_transaction(self) -> None:
        await self.client.send(0, EndTxnRequest("app-w1", 1, 0, True))
        if self.hold is not None and self.begun == 1:
            await self.hold.wait()
        if self.fail == self.begun:
            raise ProducerFenced()
        self.txns.append(self.current)


@pytest.fixture
def patched() -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {}

    def new_producer(app: Any, tid: str, timeout: int) -> Producer:
        made["producer"] = p = Producer(made.get("hold"), made.get("fail"), made.get("acks"))
        return p

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(txn_module.faust_compat, "new_transactional_producer", new_producer)
        mp.setattr(txn_module.faust_compat, "offsets_for_transaction", lambda o: o)
        yield made


def recs(*values: str) -> list[tuple[bytes | None, bytes | None, list[Any]]]:
    return [(None, v.encode(), []) for v in values]


def test_requests_that_arrive_during_a_transaction_share_the_next(
    patched: dict[str, Any],
) -> None:
    """b and c arrive while a's transaction waits for its EndTxn (too late to join it):
    they are committed together in the next one."""

    async def main() -> tuple[list[Any], Producer, Transactions]:
        hold = patched["hold"] = asyncio.Event()
        t = Transactions(None, "app-w1", "app", 10_000)
        a = asyncio.ensure_future(t.commit({("out", 0): recs("a1", "a2", "a3")}, {("in", 0): 3}))
        await asyncio.sleep(0.01)  # a's transaction is held at its commit
        b = asyncio.ensure_future(
            t.commit({("out", 0): recs("b1", "b2", "b3"), ("out", 1): recs("b4")}, {("in", 1): 9})
        )
        c = asyncio.ensure_future(t.commit({("out", 0): recs("c1")}, {("counts", 0): 4}))
        await asyncio.sleep(0.01)
        hold.set()
        return list(await asyncio.gather(a, b, c)), patched["producer"], t

    (last_a, last_b, last_c), producer, t = asyncio.run(main())
    assert len(producer.txns) == 2  # not three
    first, second = producer.txns
    assert first["records"] == {("out", 0): [b"a1", b"a2", b"a3"]}
    assert second["records"] == {("out", 0): [b"b1", b"b2", b"b3", b"c1"], ("out", 1): [b"b4"]}
    assert second["offsets"] == {("in", 1): 9, ("counts", 0): 4}
    # each its own last record's offset, across produce batches of two
    assert producer.log[("out", 0)] == [b"a1", b"a2", b"a3", b"b1", b"b2", b"b3", b"c1"]
    assert last_a == {("out", 0): 2}
    assert last_b == {("out", 0): 5, ("out", 1): 0}
    assert last_c == {("out", 0): 6}
    assert t.offsets == {("in", 0): 3, ("in", 1): 9, ("counts", 0): 4}
    assert t.grouped == 1 and t.committed == 2


def test_a_failed_group_fails_every_request_in_it(patched: dict[str, Any]) -> None:
    async def main() -> list[Any]:
        hold = patched["hold"] = asyncio.Event()
        patched["fail"] = 2  # the second transaction: b's and c's
        t = Transactions(None, "app-w1", "app", 10_000)
        a = asyncio.ensure_future(t.commit({("out", 0): recs("a")}, {}))
        await asyncio.sleep(0.01)
        b = asyncio.ensure_future(t.commit({("out", 0): recs("b")}, {("in", 0): 1}))
        c = asyncio.ensure_future(t.commit({("out", 1): recs("c")}, {("in", 1): 1}))
        await asyncio.sleep(0.01)
        hold.set()
        return list(await asyncio.gather(a, b, c, return_exceptions=True))

    a, b, c = asyncio.run(main())
    assert a == {("out", 0): 0}
    assert isinstance(b, ProducerFenced) and isinstance(c, ProducerFenced)


def test_a_request_cancelled_while_waiting_is_not_committed(patched: dict[str, Any]) -> None:
    async def main() -> Producer:
        hold = patched["hold"] = asyncio.Event()
        t = Transactions(None, "app-w1", "app", 10_000)
        a = asyncio.ensure_future(t.commit({("out", 0): recs("a")}, {}))
        await asyncio.sleep(0.01)
        b = asyncio.ensure_future(t.commit({("out", 0): recs("b")}, {("in", 0): 1}))
        c = asyncio.ensure_future(t.commit({("out", 0): recs("c")}, {("in", 1): 1}))
        await asyncio.sleep(0.01)
        b.cancel()
        hold.set()
        await asyncio.gather(a, c)
        with pytest.raises(asyncio.CancelledError):
            await b
        producer: Producer = patched["producer"]
        return producer

    producer = asyncio.run(main())
    assert [txn["records"] for txn in producer.txns] == [
        {("out", 0): [b"a"]},
        {("out", 0): [b"c"]},
    ]
    assert producer.txns[1]["offsets"] == {("in", 1): 1}


def test_a_request_that_comes_before_the_commit_joins_the_transaction(
    patched: dict[str, Any],
) -> None:
    """While the first transaction waits for its produce acknowledgements, b and c arrive:
    they join it (sent after a's records, before the EndTxn); one transaction in all."""

    async def main() -> tuple[list[Any], Producer, Transactions]:
        acks = patched["acks"] = asyncio.Event()
        t = Transactions(None, "app-w1", "app", 10_000)
        a = asyncio.ensure_future(t.commit({("out", 0): recs("a1", "a2", "a3")}, {("in", 0): 3}))
        await asyncio.sleep(0.01)
        b = asyncio.ensure_future(
            t.commit({("out", 0): recs("b1"), ("out", 1): recs("b2")}, {("counts", 0): 4})
        )
        c = asyncio.ensure_future(t.commit({("out", 0): recs("c1", "c2")}, {("in", 1): 2}))
        await asyncio.sleep(0.01)
        acks.set()
        return list(await asyncio.gather(a, b, c)), patched["producer"], t

    (last_a, last_b, last_c), producer, t = asyncio.run(main())
    assert len(producer.txns) == 1
    (only,) = producer.txns
    assert only["records"] == {
        ("out", 0): [b"a1", b"a2", b"a3", b"b1", b"c1", b"c2"],
        ("out", 1): [b"b2"],
    }
    assert only["offsets"] == {("in", 0): 3, ("counts", 0): 4, ("in", 1): 2}
    assert last_a == {("out", 0): 2}
    assert last_b == {("out", 0): 3, ("out", 1): 0}
    assert last_c == {("out", 0): 5}
    assert t.grouped == 2 and t.committed == 1
    assert t.offsets == {("in", 0): 3, ("counts", 0): 4, ("in", 1): 2}
