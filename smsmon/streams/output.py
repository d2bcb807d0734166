"""Batched output to Kafka: every record a batch produces, sent as per-partition batches.

Faust's `send_soon` costs a FutureMessage, a trip through its 100-message producer buffer
and one aiokafka `send` per record; at several output records per input event that, not
the rules, bounded the worker. Here the records of one processed batch are appended to
aiokafka `BatchBuilder`s per (topic, partition) and submitted with `send_batch` on the very
producer Faust uses, so Faust's commit (which flushes that producer before committing
offsets) still guarantees they are delivered before the input offsets are committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from smsmon.contract.canonical import murmur2

if TYPE_CHECKING:
    from smsmon.streams.transactions import Transactions

Ack = Callable[[], None]
#: Queued records: (topic, partition or None) -> (key, value, headers, on_ack) each.
Pending = dict[tuple[str, int | None], list[tuple[Any, ...]]]


class BatchOutput:
    """Collects (topic, partition, key, value, headers) records and sends them in batches."""

    def __init__(
        self,
        app: Any,
        on_error: Callable[[BaseException, str], None] | None = None,
        txn: Transactions | None = None,
    ) -> None:
        self.app = app
        # With a transactional producer (docs/reliability.md, "The processing protocol"),
        # `commit` sends everything queued and the batch's input offsets in one transaction.
        self.txn = txn
        # Called when the broker refuses a batch (after the producer's own retries). Faust's
        # flush before commit does not raise on a failed batch, so without this the records
        # would be lost while the input offsets are committed.
        self.on_error = on_error
        # topic -> called with (partition, offset of the last record) once a batch of that
        # topic is acknowledged (table changelogs: the store's persisted offset)
        self.on_sent: dict[str, Callable[[int, int], None]] = {}
        self._pending: Pending = {}
        self._partitions: dict[str, int] = {}
        self.sent = 0

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_ack: Ack | None = None,
    ) -> None:
        """Queue a record; `partition` None means Kafka's default partitioner on the key."""
        self._pending.setdefault((topic, partition), []).append((key, value, headers, on_ack))

    def __len__(self) -> int:
        return sum(len(v) for v in self._pending.values())

    async def _count(self, producer: Any, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            n = self._partitions[topic] = len(await producer.partitions_for(topic))
        return n

    def take(self) -> Pending:
        """Everything queued, removed from the queue (for `commit(offsets, pending)`)."""
        pending, self._pending = self._pending, {}
        return pending

    async def commit(
        self, offsets: Mapping[tuple[str, int], int], pending: Pending | None = None
    ) -> dict[tuple[str, int], int]:
        """In one transaction: send everything queued and commit `offsets` (the next offset
        to read per input (topic, partition)); return the last offset written per
        (topic, partition). Without a transactional producer: `flush`, and return {}.

        Raises if the transaction fails: nothing of the batch may then be applied or
        acknowledged (the caller stops the process)."""
        txn = self.txn
        if txn is None:
            await self.flush()
            return {}
        if pending is None:
            pending = self.take()
        if not pending and not offsets:
            return {}
        by_tp = await self._by_partition(await txn.started(), pending)
        records = {tp: [(r[0], r[1], r[2] or []) for r in recs] for tp, recs in by_tp.items()}
        last = await txn.commit(records, offsets)
        for recs in by_tp.values():
            for rec in recs:
                if rec[3] is not None:
                    rec[3]()
            self.sent += len(recs)
        return last

    async def _by_partition(
        self, producer: Any, pending: Pending | None = None
    ) -> dict[tuple[str, int], list[tuple[Any, ...]]]:
        if pending is None:
            pending = self.take()
        by_tp: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        for (topic, partition), records in pending.items():
            if partition is not None:
                by_tp.setdefault((topic, partition), []).extend(records)
                continue
            n = await self._count(producer, topic)
            for rec in records:
                key = rec[0]
                p = (murmur2(key) & 0x7FFFFFFF) % n if key is not None else 0
                by_tp.setdefault((topic, p), []).append(rec)
        return by_tp

    async def flush(self) -> None:
        """Submit everything queued; delivery is awaited by Faust's flush before commit.

        With a transactional producer: `commit` without input offsets."""
        if not self._pending:
            return
        if self.txn is not None:
            await self.commit({})
            return
        producer = self.app.producer._ensure_producer()
        by_tp = await self._by_partition(producer)
        now = int(time.time() * 1000)  # aiokafka batch timestamps are epoch ms
        for (topic, partition), records in by_tp.items():
            batch = producer.create_batch()
            acks: list[Ack] = []
            count = 0
            for key, value, headers, on_ack in records:
                meta = batch.append(key=key, value=value, timestamp=now, headers=headers or [])
                if meta is None:  # batch full: send it and start another
                    await self._send(producer, batch, topic, partition, acks, count)
                    batch, acks, count = producer.create_batch(), [], 0
                    batch.append(key=key, value=value, timestamp=now, headers=headers or [])
                if on_ack is not None:
                    acks.append(on_ack)
                count += 1
                self.sent += 1
            await self._send(producer, batch, topic, partition, acks, count)

    async def _send(
        self,
        producer: Any,
        batch: Any,
        topic: str,
        partition: int,
        acks: list[Ack],
        count: int = 0,
    ) -> None:
        fut = await producer.send_batch(batch, topic, partition=partition)
        on_error = self.on_error
        on_sent = self.on_sent.get(topic)

        def done(f: Any) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                if on_error is not None:
                    on_error(exc, topic)
                return
            for ack in acks:
                ack()
            if on_sent is not None and count:
                # the batch future carries the base offset; a batch's offsets are consecutive
                on_sent(partition, f.result().offset + count - 1)

        fut.add_done_callback(done)
