"""The transactional producer's retry of a transaction that failed before its commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, ProducerFenced

from smsmon.streams import transactions as txn_module
from smsmon.streams.transactions import Transactions


class FakeProducer:
    """Records what one producer incarnation did; fails at `fail_at` (a step name)."""

    def __init__(self, log: list[tuple[int, str]], n: int, fail_at: str | None, exc: Exception):
        self.log, self.n, self.fail_at, self.exc = log, n, fail_at, exc

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
        self._step("commit")


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
    assert [s for n, s in log if n == 3] == ["start", "begin", "send", "offsets", "commit"]
    assert (1, "stop") in log and (2, "stop") in log
    assert last == {("alerts", 0): 7} and offsets == {("events", 0): 5}


def test_a_failure_of_the_commit_request_is_not_retried() -> None:
    """The transaction may have committed: only a restart can tell (docs/reliability.md)."""
    with pytest.raises(KafkaConnectionError):
        run([("commit", KafkaConnectionError("lost the answer"))])


def test_a_fenced_producer_is_not_retried() -> None:
    with pytest.raises(ProducerFenced):
        run([("offsets", ProducerFenced())])
