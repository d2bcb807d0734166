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
(`lock`), and requests that wait for one are committed together in the next (group commit,
`Transactions.commit`); a batch keeps its records unacknowledged until its transaction is
committed, so a rebalance waits for it (Faust waits for unacked records before it revokes
partitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from smsmon.streams import faust_compat

#: Fatal for a transactional producer: another incarnation took over its transactional id,
#: or it may not use it. Everything else Kafka raises before the commit is retried.
_FATAL = ("ProducerFenced", "TransactionalIdAuthorizationFailed", "OutOfOrderSequenceNumber")


def _retriable(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaError

    chain: BaseException | None = exc
    while chain is not None:
        if type(chain).__name__ in _FATAL:
            return False
        chain = chain.__cause__
    return isinstance(exc, KafkaError | ConnectionError | asyncio.TimeoutError)


log = logging.getLogger(__name__)

#: A batch's records by (topic, partition): (key, value, headers) each.
Records = Mapping[tuple[str, int], list[tuple[bytes | None, bytes | None, list[Any]]]]
#: What a transaction sent by (topic, partition): (base offset, records) of each produce
#: batch, in the order of the records.
Sent = dict[tuple[str, int], list[tuple[int, int]]]


class _Request(NamedTuple):
    """One caller's records and offsets waiting for a transaction (`Transactions.commit`)."""

    records: Records
    offsets: Mapping[tuple[str, int], int]
    done: asyncio.Future[dict[tuple[str, int], int]]


class _Group:
    """The requests of one transaction: their records merged by partition (in arrival
    order), their offsets merged, and per request the index of its last record in each
    partition's merged list."""

    def __init__(self) -> None:
        self.requests: list[_Request] = []
        self.records: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, list[Any]]]] = {}
        self.offsets: dict[tuple[str, int], int] = {}
        self.ends: list[dict[tuple[str, int], int]] = []

    def add(self, requests: list[_Request]) -> tuple[Records, dict[tuple[str, int], int]]:
        """Add `requests`; return their records and offsets (what is new to send)."""
        new_records: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, list[Any]]]] = {}
        new_offsets: dict[tuple[str, int], int] = {}
        for req in requests:
            own: dict[tuple[str, int], int] = {}
            for tp, recs in req.records.items():
                if recs:
                    into = self.records.setdefault(tp, [])
                    into.extend(recs)
                    new_records.setdefault(tp, []).extend(recs)
                    own[tp] = len(into) - 1
            for key, offset in req.offsets.items():
                if offset > self.offsets.get(key, -1):
                    self.offsets[key] = new_offsets[key] = offset
            self.requests.append(req)
            self.ends.append(own)
        return new_records, new_offsets


def _offset_of(batches: list[tuple[int, int]], index: int) -> int:
    """The offset of the `index`-th record sent to a partition, from its produce batches."""
    for base, count in batches:
        if index < count:
            return base + index
        index -= count
    raise IndexError("record index beyond what the transaction sent")


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
        # requests waiting for the lock (`commit`), and how many rode in another's transaction
        self._waiting: list[_Request] = []
        self.grouped = 0
        self.on_grouped: Callable[[float], None] | None = None  # a counter's `inc`
        #: the offset this worker last committed per input (topic, partition)
        self.offsets: dict[tuple[str, int], int] = {}
        # transactions retried on a new producer (`commit`), and a counter to call per retry
        self.retries = 0
        self.on_retry: Callable[[], None] | None = None
        self._ending = False
        # EndTxn requests of the current producer, and their count when the commit was asked
        self._watch: faust_compat.EndTxnWatch | None = None
        self._sent_before = 0
        # False once a commit succeeded without the watch seeing its EndTxn (an aiokafka
        # that sends it another way): from then on no failure of the commit is retried
        self._watch_sees = True

    async def producer(self) -> Any:
        """The started producer; the first call starts it (which aborts a transaction the
        previous incarnation with this transactional id left open)."""
        if self._producer is not None:
            return self._producer
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        self._producer = await asyncio.shield(self._starting)
        return self._producer

    async def started(self) -> Any:
        """`producer`, waiting (with the retry backoff) while it cannot start because the
        broker is away."""
        attempt = 0
        while True:
            try:
                return await self.producer()
            except Exception as exc:
                if not _retriable(exc):
                    raise
                attempt += 1
                log.warning(
                    "transactional producer cannot start (%s: %s); retrying (attempt %d)",
                    type(exc).__name__,
                    exc,
                    attempt,
                )
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))

    async def _start(self) -> Any:
        # a start that fails (the broker is away) is retried by the next call
        try:
            return await self._start_producer()
        except BaseException:
            self._starting = None
            raise

    async def _start_producer(self) -> Any:
        producer = faust_compat.new_transactional_producer(
            self.app, self.transactional_id, self.timeout_ms
        )
        self._watch = faust_compat.EndTxnWatch(producer)
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
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

        A Kafka error before the EndTxn request was sent (a broker restart: aiokafka's sender
        gives up on a closed connection while it looks up a coordinator, and its producer is
        dead) retries the whole transaction on a new producer with the same transactional
        id, whose start aborts the failed one: the same records and offsets, so the same
        outcome, without a restart. Anything else, and any failure once EndTxn may have left
        (the transaction may have committed), raises; the caller must then stop the
        process without applying or acknowledging anything (the restarted producer aborts
        the transaction, or it committed and the restart recovers it).

        **Group commit.** A request that arrives while a transaction runs joins it if that
        transaction has not asked for its commit yet (its records are sent and its offsets
        added after the others', just before the EndTxn request); otherwise it waits for the
        lock, and the first waiter to get it commits every waiting request in one
        transaction. Each partition's records stay in arrival order, the input offsets are
        merged (the agents read different topics), and each request gets the last offsets
        of its own records. A worker's stage-1 and stage-2 agents used to commit one
        transaction each, one after the other, and on a busy 2-core machine a transaction
        takes 100-200 ms (docs/performance.md). All of a transaction's requests fail
        together if it does."""
        done: asyncio.Future[dict[tuple[str, int], int]] = (
            asyncio.get_running_loop().create_future()
        )
        request = _Request(records, offsets, done)
        self._waiting.append(request)
        try:
            async with self.lock:
                if not done.done():
                    group = _Group()
                    group.add(self._take_waiting())
                    await self._commit_group(group)
        except asyncio.CancelledError:
            # not taken into a transaction yet: it never will be (by identity: two requests
            # may hold equal records)
            self._waiting = [r for r in self._waiting if r is not request]
            raise
        return done.result()

    def _take_waiting(self) -> list[_Request]:
        waiting, self._waiting = self._waiting, []
        return waiting

    async def _commit_group(self, group: _Group) -> None:
        """One transaction for `group`'s requests and those that join it (see `commit`);
        each request's future gets its own last offsets, or the transaction's exception.
        Called with the lock held."""
        try:
            sent = await self._retrying(group)
        except Exception as exc:
            for req in group.requests:
                if not req.done.done():
                    req.done.set_exception(exc)
            return
        except BaseException:  # cancelled (the process stops): so are the others
            for req in group.requests:
                req.done.cancel()
            raise
        if len(group.requests) > 1:
            self.grouped += len(group.requests) - 1
            if self.on_grouped is not None:
                self.on_grouped(len(group.requests) - 1)
        for req, own in zip(group.requests, group.ends, strict=True):
            if not req.done.done():
                req.done.set_result({tp: _offset_of(sent[tp], i) for tp, i in own.items()})

    async def _retrying(self, group: _Group, join: bool = True) -> Sent:
        """`_commit` on the current producer, again on a new one after a retriable failure
        before the commit request (`commit`). Called with the lock held."""
        attempt = 0
        while True:
            producer = await self.started()
            try:
                self._ending = False
                return await self._commit(producer, group, join)
            except Exception as exc:
                if not _retriable(exc) or (self._ending and self._end_may_have_left()):
                    raise
                attempt += 1
                self.retries += 1
                if self.on_retry is not None:
                    self.on_retry()
                log.warning(
                    "transaction of %d records failed before its %s (%s: %s); "
                    "retrying it on a new producer (attempt %d)",
                    sum(len(r) for r in group.records.values()),
                    "EndTxn request was sent" if self._ending else "commit",
                    type(exc).__name__,
                    exc,
                    attempt,
                )
                await self._discard_producer()
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))

    def _end_may_have_left(self) -> bool:
        """Whether the failed commit's EndTxn request may have been sent (`EndTxnWatch`)."""
        watch = self._watch
        if watch is None or watch.blind or not self._watch_sees:
            return True
        return watch.sent != self._sent_before

    async def _discard_producer(self) -> None:
        producer, self._producer, self._starting = self._producer, None, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def commit_tail(
        self,
        tail: Callable[[Mapping[tuple[str, int], int]], dict[tuple[str, int], int]],
    ) -> dict[tuple[str, int], int]:
        """Commit, in a transaction of offsets alone, the positions `tail` finds past this
        worker's committed offsets over transaction markers only
        (`faust_compat.markers_only_tail`); checked under the lock, so no batch commits in
        between. Returns what it committed."""
        async with self.lock:
            offsets = tail(self.offsets)
            if offsets:
                only = _Group()
                only.offsets.update(offsets)
                await self._retrying(only, join=False)
        return offsets

    async def _commit(self, producer: Any, group: _Group, join: bool) -> Sent:
        t0 = time.monotonic()
        sent: Sent = {}
        await producer.begin_transaction()
        await self._send(producer, group.records, group.offsets, sent)
        if join and self._waiting:
            # requests that came while this one was sent: theirs go out after it
            joined = self._take_waiting()
            records, offsets = group.add(joined)
            await self._send(producer, records, offsets, sent)
        watch = self._watch
        self._sent_before = watch.sent if watch is not None else 0
        self._ending = True  # from here on the transaction may commit
        await producer.commit_transaction()
        if (
            self._watch_sees
            and (sent or group.offsets)
            and (watch is None or watch.blind or watch.sent == self._sent_before)
        ):
            self._watch_sees = False
            why = (
                "the watch cannot see this producer's requests (it has no client to wrap)"
                if watch is None or watch.blind
                else "this aiokafka sends EndTxn another way"
            )
            log.warning(
                "a transaction committed without an EndTxn request seen by the watch (%s); "
                "a failed commit is no longer retried",
                why,
            )
        self.offsets.update(group.offsets)
        self.committed += 1
        if self.observe is not None:
            self.observe(time.monotonic() - t0)
        return sent

    async def _send(
        self,
        producer: Any,
        records: Records,
        offsets: Mapping[tuple[str, int], int],
        sent: Sent,
    ) -> None:
        """Send `records` and `offsets` in the open transaction; note each produce batch's
        base offset and size in `sent` (in record order)."""
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
            sent.setdefault(tp, []).append((meta.offset, count))
