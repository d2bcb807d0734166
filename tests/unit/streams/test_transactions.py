"""The transactional producer's retry of a transaction that failed before its commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, ProducerFenced
from aiokafka.protocol.transaction import EndTxnRequest

from smsmon.streams import faust_compat
from smsmon.streams import transactions as txn_module
from smsmon.streams.transactions import Transactions


class FakeClient:
    """aiokafka's client as the sender uses it: `send(node_id, request)`."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def send(self, node_id: int, request: Any, **_: Any) -> Any:
        self.requests.append(request)
        return None


class FakeProducer:
    """Records what one producer incarnation did; fails at `fail_at` (a step name).

    Its commit fails like aiokafka's sender: "commit" (the EndTxn request sent, the answer
    lost), "lookup" (the coordinator lookup before EndTxn met a closed connection)."""

    def __init__(self, log: list[tuple[int, str]], n: int, fail_at: str | None, exc: Exception):
        self.log, self.n, self.fail_at, self.exc = log, n, fail_at, exc
        self.client = FakeClient()

    def _step(self, name: str) -> None:
        self.log.append((self.n, name))
        if name == self.fail_at:
            raise self.exc

    async def start(self) -> None:
        self._step("start")

    async def stop(self) -> None:
        self.log.append((self.n, "stop"))

    async def begin_transaction(self) -> None:
        self._step("begin")

    def create_batch(self) -> Any:
        class Batch:
            def append(self, **_: Any) -> Any:
                return object()

        return Batch()

    async def send_batch(self, batch: Any, topic: str, partition: int) -> Any:
        self._step("send")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(type("Meta", (), {"offset": 7})())
        return fut

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        self._step("offsets")

    async def commit_transaction(self) -> None:
        self._step("lookup")
        await self.client.send(0, EndTxnRequest("app-w1", 1, 0, True))
        self._step("commit")


#: every step of one producer's successful transaction
FULL = ["start", "begin", "send", "offsets", "lookup", "commit"]


def run(failures: list[tuple[str | None, Exception]]) -> tuple[list[tuple[int, str]], Any, int]:
    """One commit; producer incarnation i fails at failures[i] (then none fails)."""
    log: list[tuple[int, str]] = []
    made = 0

    def new_producer(app: Any, tid: str, timeout: int) -> FakeProducer:
        nonlocal made
        fail, exc = failures[made] if made < len(failures) else (None, KafkaError())
        made += 1
        return FakeProducer(log, made, fail, exc)

    async def main() -> Any:
        t = Transactions(None, "app-w1", "app", 10_000)
        return await t.commit({("alerts", 0): [(b"k", b"v", [])]}, {("events", 0): 5}), t

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(txn_module.faust_compat, "new_transactional_producer", new_producer)
        mp.setattr(txn_module.faust_compat, "offsets_for_transaction", lambda o: o)
        mp.setattr(txn_module.asyncio, "sleep", _no_sleep)
        result, t = asyncio.run(main())
    return log, (result, t.offsets), t.retries


async def _no_sleep(_: float) -> None:
    return None


def test_a_broker_away_before_the_commit_retries_the_whole_transaction_on_a_new_producer() -> None:
    log, (last, offsets), retries = run(
        [
            ("offsets", KafkaError("Unexpected error during batch delivery")),
            ("start", KafkaConnectionError("broker away")),
        ]
    )
    assert retries == 1  # the failed start is waited out by `started`, not a retry
    # the first producer sent and failed; the second could not start; the third did it all
    assert [s for n, s in log if n == 3] == FULL
    assert (1, "stop") in log and (2, "stop") in log
    assert last == {("alerts", 0): 7} and offsets == {("events", 0): 5}


def test_a_failure_of_the_commit_request_is_not_retried() -> None:
    """The transaction may have committed: only a restart can tell (docs/reliability.md)."""
    with pytest.raises(KafkaConnectionError):
        run([("commit", KafkaConnectionError("lost the answer"))])


def test_a_commit_that_failed_before_its_end_txn_was_sent_is_retried() -> None:
    """The coordinator lookup before EndTxn met a closed connection (the broker-restart test,
    run 6 at 21aa30f): EndTxn never left, so the transaction did not commit."""
    lost = KafkaError("Unexpected error during batch delivery")
    log, (last, offsets), retries = run([("lookup", lost)])
    assert retries == 1
    assert [s for n, s in log if n == 2] == FULL
    assert last == {("alerts", 0): 7} and offsets == {("events", 0): 5}


def test_after_a_commit_the_watch_did_not_see_no_commit_failure_is_retried() -> None:
    """An aiokafka that sends EndTxn some other way: the watch's silence proves nothing."""

    def silent(self: FakeProducer) -> Any:
        async def commit() -> None:
            self._step("lookup")
            self._step("commit")

        return commit

    async def main() -> None:
        made: list[FakeProducer] = []

        def new_producer(app: Any, tid: str, timeout: int) -> FakeProducer:
            fail = "lookup" if made else None
            p = FakeProducer([], len(made) + 1, fail, KafkaError("sender died"))
            p.commit_transaction = silent(p)  # type: ignore[method-assign]
            made.append(p)
            return p

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(txn_module.faust_compat, "new_transactional_producer", new_producer)
            mp.setattr(txn_module.faust_compat, "offsets_for_transaction", lambda o: o)
            mp.setattr(txn_module.asyncio, "sleep", _no_sleep)
            t = Transactions(None, "app-w1", "app", 10_000)
            await t.commit({("alerts", 0): [(b"k", b"v", [])]}, {("events", 0): 5})
            await t._discard_producer()  # the next commit runs on a producer that fails
            with pytest.raises(KafkaError):
                await t.commit({("alerts", 0): [(b"k", b"v", [])]}, {("events", 0): 6})

    asyncio.run(main())


@pytest.mark.parametrize("blind", [False, True])
def test_the_warning_says_why_the_watch_did_not_see_the_end_txn(
    blind: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A producer without a client (the watch is blind) and an aiokafka that sends EndTxn
    another way are told apart in the one warning, and it comes once."""

    def new_producer(app: Any, tid: str, timeout: int) -> FakeProducer:
        p = FakeProducer([], 1, None, KafkaError())
        if blind:
            del p.client  # nothing for the watch to wrap

        async def commit() -> None:  # EndTxn not through `client.send`
            p._step("commit")

        p.commit_transaction = commit  # type: ignore[method-assign]
        return p

    async def main() -> None:
        t = Transactions(None, "app-w1", "app", 10_000)
        for offset in (5, 6):
            await t.commit({("alerts", 0): [(b"k", b"v", [])]}, {("events", 0): offset})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(txn_module.faust_compat, "new_transactional_producer", new_producer)
        mp.setattr(txn_module.faust_compat, "offsets_for_transaction", lambda o: o)
        with caplog.at_level("WARNING", logger=txn_module.log.name):
            asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if "EndTxn" in r.getMessage()]
    assert len(warnings) == 1
    expected = "no client to wrap" if blind else "sends EndTxn another way"
    assert expected in warnings[0] and "no longer retried" in warnings[0]


def test_the_watch_counts_aiokafkas_own_end_txn_request() -> None:
    """On a real aiokafka producer (no broker: the client's send fails after the count)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.protocol.transaction import AddOffsetsToTxnRequest

    async def main() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers="127.0.0.1:9", transactional_id="app-w1", request_timeout_ms=100
        )
        watch = faust_compat.EndTxnWatch(producer)
        assert not watch.blind
        with pytest.raises(KafkaError):
            await producer.client.send(0, AddOffsetsToTxnRequest("app-w1", 1, 0, "app"))
        assert watch.sent == 0
        with pytest.raises(KafkaError):
            await producer.client.send(0, EndTxnRequest("app-w1", 1, 0, True))
        assert watch.sent == 1
        await producer.stop()

    asyncio.run(main())


def test_a_fenced_producer_is_not_retried() -> None:
    with pytest.raises(ProducerFenced):
        run([("offsets", ProducerFenced())])
