"""One Kafka transaction per processed batch: outputs, changelog records and input offsets.

This is the processing protocol of docs/reliability.md ("The processing protocol"). Each
agent batch is processed against its tables' per-batch overlays over RocksDB, which holds only
committed state. Then, in one transaction of the worker's transactional producer, every output
record of the batch (alerts, revocations, re-keyed records, watermark markers, stage-1
partials, dead letters), every changelog record of its table writes and its input offsets
(`send_offsets_to_transaction`) are sent and committed. Only after the commit are the batch's
table writes applied to RocksDB, each partition's writes with that partition's changelog
offset in one RocksDB write batch (`TableWriter.apply`).

A crash before the commit aborts the transaction (the restarted worker's producer, with the
same transactional id, aborts it at once; otherwise the broker does after
`transaction_timeout_ms`): a `read_committed` reader sees none of its records, its offsets
are not committed, and RocksDB never saw it, so the batch is processed again from the state
before it. A crash after the commit leaves RocksDB behind the committed changelog, which every
start reads (`read_committed`) from RocksDB's stored changelog offset. Either way each batch
changes state and output exactly once.

The agents of one worker share this producer, so their transactions run one at a time
(`lock`); a batch keeps its records unacknowledged until its transaction is committed, so a
rebalance waits for it (Faust waits for unacked records before it revokes partitions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from smsmon.streams import faust_compat

log = logging.getLogger(__name__)

#: A batch's records by (topic, partition): (key, value, headers) each.
Records = Mapping[tuple[str, int], list[tuple[bytes | None, bytes | None, list[Any]]]]


class Transactions:
    """The worker's transactional producer, shared by its agents."""

    def __init__(
        self,
        app: Any,
        transactional_id: str,
        group_id: str,
        timeout_ms: int,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.app = app
        self.transactional_id = transactional_id
        self.group_id = group_id
        self.timeout_ms = timeout_ms
        self.lock = asyncio.Lock()
        self._producer: Any = None
        self._starting: asyncio.Future[Any] | None = None
        # called with each commit's duration in seconds (a histogram)
        self.observe = observe
        self.committed = 0
        #: the offset this worker last committed per input (topic, partition)
        self.offsets: dict[tuple[str, int], int] = {}

    async def producer(self) -> Any:
        """The started producer; the first call starts it (which aborts a transaction the
        previous incarnation with this transactional id left open)."""
        if self._producer is not None:
            return self._producer
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        self._producer = await asyncio.shield(self._starting)
        return self._producer

    async def _start(self) -> Any:
        producer = faust_compat.new_transactional_producer(
            self.app, self.transactional_id, self.timeout_ms
        )
        await producer.start()
        log.info("transactional producer %s started", self.transactional_id)
        return producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def commit(
        self, records: Records, offsets: Mapping[tuple[str, int], int]
    ) -> dict[tuple[str, int], int]:
        """Send `records` and commit `offsets` (next offset to read, by input partition) in
        one transaction; return the offset of the last record sent per (topic, partition).

        Raises on any failure; the caller must then stop the process without applying or
        acknowledging anything (the transaction is aborted by the restarted producer)."""
        producer = await self.producer()
        async with self.lock:
            return await self._commit(producer, records, offsets)

    async def commit_tail(
        self,
        tail: Callable[[Mapping[tuple[str, int], int]], dict[tuple[str, int], int]],
    ) -> dict[tuple[str, int], int]:
        """Commit, in a transaction of offsets alone, the positions `tail` finds past this
        worker's committed offsets over transaction markers only
        (`faust_compat.markers_only_tail`); checked under the lock, so no batch commits in
        between. Returns what it committed."""
        producer = await self.producer()
        async with self.lock:
            offsets = tail(self.offsets)
            if offsets:
                await self._commit(producer, {}, offsets)
        return offsets

    async def _commit(
        self, producer: Any, records: Records, offsets: Mapping[tuple[str, int], int]
    ) -> dict[tuple[str, int], int]:
        t0 = time.monotonic()
        last: dict[tuple[str, int], int] = {}
        await producer.begin_transaction()
        futures: list[tuple[tuple[str, int], Any, int]] = []
        now = int(time.time() * 1000)
        for (topic, partition), recs in records.items():
            batch = producer.create_batch()
            count = 0
            for key, value, headers in recs:
                if batch.append(key=key, value=value, timestamp=now, headers=headers) is None:
                    fut = await producer.send_batch(batch, topic, partition=partition)
                    futures.append(((topic, partition), fut, count))
                    batch, count = producer.create_batch(), 0
                    batch.append(key=key, value=value, timestamp=now, headers=headers)
                count += 1
            if count:
                fut = await producer.send_batch(batch, topic, partition=partition)
                futures.append(((topic, partition), fut, count))
        if offsets:
            await producer.send_offsets_to_transaction(
                faust_compat.offsets_for_transaction(offsets), self.group_id
            )
        for tp, fut, count in futures:
            meta = await fut
            end = meta.offset + count - 1
            if end > last.get(tp, -1):
                last[tp] = end
        await producer.commit_transaction()
        self.offsets.update(offsets)
        self.committed += 1
        if self.observe is not None:
            self.observe(time.monotonic() - t0)
        return last
