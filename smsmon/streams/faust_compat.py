"""Everything smsmon does to Faust's (and aiokafka's, RocksDB store's, prometheus_client's)
internals, in one module: the only place that reads or replaces a private attribute of a
dependency. `REPLACED_INTERNALS` lists each one with the upstream issue or the reason. Since
these reach into one release's code, faust-streaming is pinned to `FAUST_VERSION` in
pyproject.toml and the worker refuses to start on any other (`require_supported_faust`).

The largest part is smsmon's copy of Faust's per-message consumer loop: two fixes and two
fast paths.

**The seek race (a fix).** After a rebalance Faust resumes the stream partitions and then
seeks them to their committed offsets (`Recovery.on_recovery_completed`:
`resume_partitions`, then `perform_seek`, which also resets the loop's *read offsets* to the
committed ones). A batch fetched in between is still being delivered when the seek ends, and
Faust's loop then stores the read offset of each of its records. The records fetched again
from the committed offset are below that read offset, so the loop drops them ("DROPPED
MESSAGE ROFF", a debug line): they are never processed, never acknowledged, and since Faust
commits only up to the first unacknowledged offset (`_new_offset`: a gap at the head of the
acked offsets returns None), that partition's committed offset never moves again. Seen in
the two-worker phase of `make bench` as a `sms.ref.consent` partition stuck thousands of
records short, its consent pairs missing and wrong `consent.missing` alerts (docs/reliability.md,
defect 11). The same race is in Faust's issue tracker in several shapes (faust-streaming#216,
#318; robinhood/faust#542, #681).

The fix: the seeks that reset read offsets (`perform_seek`, `seek`, `seek_wait`) count how
often they start and end (`_counting_seeks`); if a seek started after a batch was fetched, a
record of that batch at or past aiokafka's current fetch position for its partition
(`fetch_position`) was fetched before the seek moved that position, will be fetched again,
and is neither delivered nor marked as read. The check runs before and after the awaits
around each delivery; without a seek it costs one dict lookup per record. It is always on
for the patched versions, whatever `SMSMON_FAST_DRAIN` says.

**The resume race (a fix).** Two generations later the same window loses records *and*
commits them. During a table recovery Faust resumes its flow control (to read the
changelogs), so in `on_recovery_completed` (and `_resume_streams`) the stream partitions,
resumed before `perform_seek`, are fetched and delivered into the agents' queues while the
seek runs; right after it, `flow_control.resume()` clears those queues. The records are gone,
the seek's read-offset reset makes the next record look like it follows a gap in the
partition, `_add_gap` marks the missing offsets as done, and the commit moves past them (on a
group's first generation, with no committed offset, there is not even a gap to see). Seen in
the same bench as consent partitions fully committed with pairs missing (defect 11).
The fix is the order faust-streaming#217 gave `_resume_streams` upstream: seek the stream
partitions while they are still paused, then resume them (`_on_recovery_completed`,
`_resume_streams`: copies of Faust's methods with the two steps swapped).

**Fast path 1: direct delivery.**

Faust's `Consumer._drain_messages` hands every fetched record to the conductor with

    await self.wait_first(callback(message), self.suspend_flow.wait())

so that a delivery blocked on a full stream buffer, on suspended flow control or on a full
producer buffer can be abandoned when a rebalance suspends the flow. `wait_first` wraps four
awaitables in tasks (the callback, `suspend_flow`, and the service's `stopped` and `crashed`
events) and runs `asyncio.wait` over them: per record, a large share of the event loop's time
at full rate (docs/performance.md).

The patched loop checks, synchronously and just before the call, every condition under which
the delivery could block: flow control suspended, `suspend_flow` set, Faust's producer
buffer over its limit (`wait_until_ebb` would flush), or a full queue of any channel of the
record's topic-partition. If none holds, `on_message` runs to completion without suspending
(the queue puts are `put_nowait`), so it is awaited directly; otherwise the record takes
Faust's own `wait_first` path unchanged. Everything else (read offsets, gap tracking,
`commit_every`, yielding every 100 records, errors) is Faust's code, apart from the seek
check above.

**Fast path 2: standby changelogs.** It applies the changelog records of *standby* table
partitions (the copies a worker keeps of another worker's partitions,
`SMSMON_STANDBY_REPLICAS`). Faust sends each one through the conductor, an `Event`, the
changelog queue and the recovery task, which buffers 1,000 and writes them to RocksDB: in a
two-worker group that made each worker's CPU per event much higher (docs/performance.md).
`StandbyApplier` writes such a record to the partition's RocksDB at once (the same put or
delete `Store.apply_changelog_batch` does), advances the recovery service's standby offset,
and stores the persisted offset once per fetched batch. It takes a record only when Faust's
path has nothing of that partition in flight (see `StandbyApplier.apply`), so each
partition's changelog is applied in order; during a rebalance and the standby catch-up after
it, Faust's path runs unchanged.

`SMSMON_FAST_DRAIN=false` turns the two fast paths off: every record then takes Faust's
`wait_first` delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: The faust-streaming release whose code this module copies and reaches into.
FAUST_VERSION = "0.15.3"
PATCHED_VERSIONS = (FAUST_VERSION,)
_ORIGINAL: dict[str, Any] = {}
_UNSET = object()

#: Every internal of a dependency that smsmon reads or replaces, and why.
REPLACED_INTERNALS: dict[str, str] = {
    "faust.transport.consumer.Consumer._drain_messages": (
        "replaced: the seek race (faust-streaming#216, #318; robinhood/faust#542, #681) and "
        "the fast paths (per-record wait_first tasks)"
    ),
    "faust.transport.consumer.Consumer.perform_seek / seek, ThreadDelegateConsumer.seek_wait": (
        "wrapped to count seeks for the seek-race check"
    ),
    "faust.tables.recovery.Recovery.on_recovery_completed / _resume_streams": (
        "replaced: seek before resume, the order faust-streaming#217 gave _resume_streams"
    ),
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer": (
        "wrapped to set aiokafka's _fetch_max_wait_ms (Faust fixes 1,500 ms)"
    ),
    "aiokafka subscription state _position, consumer._thread._consumer": (
        "read: the fetch position for the seek-race check"
    ),
    "faust.App.topics._tp_index, app._fetcher": (
        "read: the channels of a partition; the fetcher restarted after a recovery"
    ),
    "faust.transport.consumer.Consumer._unacked_messages": (
        "written: records of the batch path are tracked as unacked (a rebalance waits for them)"
    ),
    "faust.transport.consumer.Consumer._committed_offset": "read: lag of a never-fetched partition",
    "faust.transport.producer.ProducerBuffer.max_messages": (
        "raised: Faust flushes synchronously at 100 buffered messages"
    ),
    "faust.streams._current_event": (
        "set: Faust's per-key table path (memory store, SMSMON_BATCHED_CHANGELOG=false) routes "
        "by the current event; smsmon's own path takes the partition as an argument"
    ),
    "faust.stores.rocksdb.Store._db_for_partition / _dbs_for_actives / _key_index": (
        "read and kept in step: table writes straight into a partition's RocksDB"
    ),
    "aiokafka.AIOKafkaConsumer._client.force_metadata_update": (
        "called: the reference loader sees new partitions of the reference topics at once"
    ),
    "faust.transport.drivers.aiokafka.Producer._settings_default / _settings_auth": (
        "read: the transactional producer gets the settings of Faust's own"
    ),
    "aiokafka.AIOKafkaConsumer._isolation_level": (
        "set to read_committed by the consumer wrapper under the transactional protocol"
    ),
    "faust.transport.consumer.Consumer._commit_offsets": (
        "wrapped: offsets of the transactional inputs are committed in the batch's "
        "transaction only, never by Faust's timer (an older offset could overwrite them)"
    ),
    "aiokafka.consumer.fetcher.FetchResult.getall": (
        "wrapped: notes the last offset handed out per partition (for the recovery's end)"
    ),
    "faust.tables.recovery.Recovery.active_remaining / standby_remaining, its asyncio": (
        "wrapped: a changelog partition whose fetch position passed its last offset is "
        "recovered (a transaction marker, never delivered, sits at the end); the recovery "
        "loop's 5 s idle wait is capped so that this is seen at once"
    ),
}


class UnsupportedFaust(RuntimeError):
    """The installed faust-streaming is not the release this module was written for."""


def require_supported_faust(version: str | None = None) -> None:
    """Refuse to run on a faust-streaming other than `FAUST_VERSION`.

    The loop fixes above copy that release's code; on another one they would silently not
    apply (and Faust's record-loss race would be back), or apply to code that changed."""
    if version is None:
        import faust

        version = str(faust.__version__)
    if version not in PATCHED_VERSIONS:
        raise UnsupportedFaust(
            f"faust-streaming {version} is installed, but smsmon's Faust compatibility module "
            f"(smsmon/streams/faust_compat.py) is written for {FAUST_VERSION} only: install "
            f"faust-streaming=={FAUST_VERSION} (pyproject.toml pins it)"
        )


@dataclass
class LoopHooks:
    """The patched loop's configuration. Faust's loop is a class method replaced for the
    whole process, so its configuration is process-wide too: this one object, set by
    `apply_fast_drain` and `set_batch_sink`, read by the loop."""

    #: The fast paths (off with `SMSMON_FAST_DRAIN=false`); the seek check is always on.
    fast: bool = True
    #: Called with the number of standby changelog records applied per fetched batch.
    on_standby_applied: Callable[[int], None] | None = None
    #: Called with (reason, count) for input records the loop leaves to be fetched again:
    #: "stale_fetch" (fetched before a seek moved the position back), "given_up" (the sink
    #: gave a batch up because a rebalance came first).
    on_skipped: Callable[[str, int], None] | None = None
    #: Called with the number of offsets passed without a record (markers, compaction).
    on_gap: Callable[[int], None] | None = None
    sink_topics: frozenset[str] = frozenset()
    deliver: BatchSink | None = None
    batch_max: int = 1000
    #: Input topics whose offsets the batch transactions commit (Faust's commit skips them).
    txn_topics: frozenset[str] = frozenset()


#: Called with a batch and, for the last batch of a fetch, aiokafka's fetch position of each
#: of its partitions (None otherwise): every record of the fetch is then in this batch or an
#: earlier one, so the position, past any transaction markers after them, may be committed.
#: Returns True once the records were processed and acknowledged, False if it gave them up
#: (a rebalance came first): then they are fetched again after the rebalance's seek.
BatchSink = Callable[[list[Any], "dict[Any, int | None] | None"], Awaitable[bool]]

HOOKS = LoopHooks()


# -- small accessors: the rest of the worker never names a private attribute -------------


def set_current_event(event: Any) -> None:
    """Make `event` Faust's current event (for Faust's per-key table path only)."""
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


def raise_producer_buffer(max_messages: int) -> None:
    """Let Faust's producer buffer hold `max_messages` before it flushes synchronously."""
    from faust.transport.producer import ProducerBuffer

    ProducerBuffer.max_messages = max(ProducerBuffer.max_messages, max_messages)


def mark_unacked(consumer: Any, messages: list[Any]) -> None:
    """Track records delivered outside Faust's streams as unacknowledged: a rebalance waits
    for them and the commit stops below them until `consumer.ack` is called for each."""
    consumer._unacked_messages.update(messages)


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset Faust last committed for `tp` (None before the first commit)."""
    value = getattr(consumer, "_committed_offset", {}).get(tp)
    return None if value is None else int(value)


def rocks_partition_db(store: Any, partition: int) -> Any:
    """The RocksDB database of one partition of a Faust RocksDB store."""
    return store._db_for_partition(partition)


def rocks_active_dbs(store: Any) -> Any:
    """`dbs()`: the active partitions' databases of a RocksDB store (None for other stores)."""
    return getattr(store, "_dbs_for_actives", None)


def rocks_index_put(store: Any, key: bytes, partition: int) -> None:
    """Keep the store's key -> partition index in step with a direct write."""
    store._key_index[key] = partition


def rocks_index_drop(store: Any, key: bytes) -> None:
    """Keep the store's key -> partition index in step with a direct delete."""
    store._key_index.pop(key, None)


async def force_metadata_update(consumer: Any) -> None:
    """Ask an aiokafka consumer to refresh its cluster metadata now."""
    await consumer._client.force_metadata_update()


# -- the transactional protocol (smsmon/streams/transactions.py) ----------------------------


#: The transactional producer's retry backoff. The broker writes a committed transaction's
#: markers after it answered EndTxn, and until they are written the next transaction's
#: AddPartitionsToTxn / AddOffsetsToTxn get CONCURRENT_TRANSACTIONS; aiokafka then waits
#: `retry_backoff_ms` (100 by default; its 20 ms override of KAFKA-5477 covers only an
#: AddPartitionsToTxn before any partition was added). Measured (docs/performance.md): a third
#: of the transactions waited 100-470 ms that way, one batch after another.
TXN_RETRY_BACKOFF_MS = 10


def new_transactional_producer(app: Any, transactional_id: str, timeout_ms: int) -> Any:
    """An aiokafka producer with the settings (servers, credentials, sizes) of Faust's own,
    transactional with `transactional_id`."""
    import aiokafka

    producer = app.producer
    settings = {**producer._settings_default(), **producer._settings_auth()}
    settings.pop("acks", None)
    settings["retry_backoff_ms"] = TXN_RETRY_BACKOFF_MS
    return aiokafka.AIOKafkaProducer(
        **settings,
        acks="all",
        transactional_id=transactional_id,
        transaction_timeout_ms=timeout_ms,
    )


class EndTxnWatch:
    """Counts the EndTxn requests a transactional producer handed to its client's `send`.

    aiokafka's sender looks up the transaction coordinator before it sends EndTxn, and a
    lookup that meets a closed connection kills the sender: `commit_transaction` then raises
    without telling whether EndTxn ever left. With this count unchanged since the commit was
    asked for, it did not (it is counted before the client tries to send it), so the
    transaction certainly did not commit and may be retried like a failure before the commit
    (`Transactions._retrying`). `blind` marks a watch that cannot see (no client to wrap)."""

    def __init__(self, producer: Any) -> None:
        self.sent = 0
        client: Any = getattr(producer, "client", None)
        original = getattr(client, "send", None)
        self.blind = original is None
        if original is None:
            return

        async def send(node_id: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            if type(request).__name__.startswith("EndTxn"):
                self.sent += 1
            return await original(node_id, request, *args, **kwargs)

        client.send = send


def offsets_for_transaction(offsets: Any) -> dict[Any, int]:
    """{(topic, partition): offset} as aiokafka's `send_offsets_to_transaction` takes them."""
    from aiokafka.structs import TopicPartition

    return {TopicPartition(t, p): o for (t, p), o in offsets.items()}


def rocks_offset_key(store: Any) -> bytes:
    """The reserved key under which a Faust RocksDB partition keeps its changelog offset."""
    key: bytes = store.offset_key
    return key


def use_transactions(topics: frozenset[str]) -> None:
    """Under the transactional protocol: read every topic `read_committed`, leave the offsets
    of `topics` to the batch transactions, and end a changelog recovery once the fetch
    position passed the changelog's last offset (a transaction marker is never delivered)."""
    from faust.tables import recovery
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    HOOKS.txn_topics = topics
    track_handouts()
    if "commit_offsets" not in _ORIGINAL:
        _ORIGINAL["commit_offsets"] = Consumer._commit_offsets
        _ORIGINAL["active_remaining"] = Recovery.active_remaining
        _ORIGINAL["standby_remaining"] = Recovery.standby_remaining
        _ORIGINAL["recovery_asyncio"] = recovery.asyncio  # type: ignore[attr-defined]
    Consumer._commit_offsets = _commit_offsets  # type: ignore[method-assign]
    Recovery.active_remaining = _remaining("active")  # type: ignore[method-assign]
    Recovery.standby_remaining = _remaining("standby")  # type: ignore[method-assign]
    recovery.asyncio = _RecoveryAsyncio()  # type: ignore[attr-defined,assignment]
    _CONSUMER_OPTIONS["read_committed"] = True


def track_handouts() -> None:
    """Note, per partition, the last record aiokafka hands out (`_getall`, `_FETCHES`):
    under either processing protocol, so that a partition that never handed a record out
    counts as read to its end (`untouched_position`, defect 14)."""
    from aiokafka.consumer.fetcher import FetchResult

    if "getall" not in _ORIGINAL:
        _ORIGINAL["getall"] = FetchResult.getall
    FetchResult.getall = _getall
    _FETCHES["tracked"] = True


async def _commit_offsets(self: Any, offsets: Any, start_new_transaction: bool = True) -> bool:
    own = HOOKS.txn_topics
    kept = {tp: o for tp, o in offsets.items() if tp.topic not in own}
    if not kept:
        return False
    result: bool = await _ORIGINAL["commit_offsets"](
        self, kept, start_new_transaction=start_new_transaction
    )
    return result


def _remaining(kind: str) -> Any:
    original = _ORIGINAL[f"{kind}_remaining"]

    def remaining(self: Any) -> Any:
        counts = original(self)
        if not counts:
            return counts
        position = fetch_position(self.app.consumer)
        highwaters = getattr(self, f"{kind}_highwaters")
        offsets = getattr(self, f"{kind}_offsets")
        for tp, left in list(counts.items()):
            if left > 0:
                # In this order (hand-outs run in the consumer's thread): aiokafka's position
                # (the next offset to hand out) first, then whether a hand-out is under way,
                # then the last record handed out. A position past the highwater (the last
                # offset) with every handed-out record applied leaves only control records.
                at = position(tp)
                if at is None or at <= highwaters[tp] or _FETCHES["active"]:
                    continue
                handed = _FETCHES["last"].get(tp)
                if handed is None or offsets[tp] >= handed:
                    offsets[tp] = highwaters[tp]
                    counts[tp] = 0
        return counts

    return remaining


class _RecoveryAsyncio:
    """faust.tables.recovery's `asyncio`, with its recovery loop's idle wait capped: the loop
    checks whether recovery ended only when a changelog record arrives or after that wait
    (5 s); the last records of a transactional changelog are markers, which never arrive."""

    IDLE_WAIT_MAX = 0.2

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def wait_for(self, aw: Any, timeout: float | None = None) -> Any:
        if timeout is not None:
            timeout = min(timeout, self.IDLE_WAIT_MAX)
        return await asyncio.wait_for(aw, timeout=timeout)


def _counting_seeks(original: Any) -> Any:
    """Wrap a Faust consumer seek so the drain loop can tell that one ran (see
    `_drain_messages`): the count goes up when the seek starts and again when it ends."""

    async def seek(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._smsmon_seeks = self.__dict__.get("_smsmon_seeks", 0) + 1
        try:
            return await original(self, *args, **kwargs)
        finally:
            self._smsmon_seeks += 1

    seek.__wrapped__ = original  # type: ignore[attr-defined]
    return seek


def patch_targets() -> dict[str, tuple[Any, str]]:
    """name -> (Faust class, attribute) of everything `apply_fast_drain` replaces."""
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer, ThreadDelegateConsumer

    return {
        "drain": (Consumer, "_drain_messages"),
        "perform_seek": (Consumer, "perform_seek"),
        "seek": (Consumer, "seek"),
        "seek_wait": (ThreadDelegateConsumer, "seek_wait"),
        "recovery_completed": (Recovery, "on_recovery_completed"),
        "resume_streams": (Recovery, "_resume_streams"),
    }


def apply_fast_drain(enabled: bool) -> bool:
    """Install smsmon's copy of the consumer loop; True if its fast paths are on.

    The copy is always installed, because it also closes two races in Faust's loop (see the
    module's docstring); `enabled` (`SMSMON_FAST_DRAIN`) turns only the fast paths on or off.
    Raises `UnsupportedFaust` on a faust-streaming other than `FAUST_VERSION`."""
    import faust
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer

    targets = patch_targets()
    for name, (cls, attr) in targets.items():
        if name not in _ORIGINAL:
            _ORIGINAL[name] = getattr(cls, attr)
    require_supported_faust(str(faust.__version__))
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    for name, (cls, attr) in targets.items():
        if name not in ("drain", "recovery_completed", "resume_streams"):
            setattr(cls, attr, _counting_seeks(_ORIGINAL[name]))
    Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
    Recovery._resume_streams = _resume_streams  # type: ignore[method-assign]
    HOOKS.fast = enabled
    return enabled


_CONSUMER_OPTIONS: dict[str, Any] = {"read_committed": False}
#: Written in the consumer's thread by `_getall`: hand-outs under way, and the offset of the
#: last record handed out per partition (read by the recovery's `_remaining`).
#: "tracked": `_getall` is installed (`use_transactions`), so "last" is to be trusted.
_FETCHES: dict[str, Any] = {"active": 0, "last": {}, "round": None, "tracked": False}


def _getall(self: Any, max_records: int | None = None) -> Any:
    # aiokafka's FetchResult.getall: takes a partition's buffered records and moves the
    # position past them (and past any control records after them), synchronously.
    _FETCHES["active"] += 1
    try:
        records = _ORIGINAL["getall"](self, max_records)
        if records:
            tp = self._topic_partition
            _FETCHES["last"][tp] = records[-1].offset
            handed = _FETCHES["round"]
            if handed is not None:  # the drain loop's current fetch: first and last offset
                first = handed.get(tp, (records[0].offset, 0))[0]
                handed[tp] = (first, records[-1].offset)
        return records
    finally:
        _FETCHES["active"] -= 1


def markers_only_tail(
    consumer: Any,
    committed: Mapping[tuple[str, int], int],
    seen: dict[tuple[str, int], int] | None = None,
) -> dict[tuple[str, int], int]:
    """The assigned partitions of the transactions' input topics (`use_transactions`) whose
    fetch position moved past their committed offset over transaction markers (or aborted
    records) alone, with that position: committing it lets the committed offset reach the
    end. `committed`: the offsets this worker committed; the offsets Faust read from the
    group at the last assignment count too (the greater of both).

    A partition written by transactions ends in a commit marker, which is never delivered,
    so a batch can commit only up to its last record plus whatever markers aiokafka skipped
    in the same fetch; a marker fetched on its own (the usual case for the stage-1 counts
    topic, and for any topic once it goes quiet) left the committed offset one short of the
    end forever, and with it every lag reader outside smsmon.

    Safe because aiokafka moves the position only when it hands records out, when it skips
    control or aborted records, or on a seek (to a committed offset, or back to records
    handed out before); a record handed out at or past the committed offset
    (`_FETCHES["last"]`, which every batch not yet committed has) rules the partition out.
    Read in the same order as `_remaining`: position, hand-out under way, last handed out.
    The caller holds the transactions' lock, so no batch commits between this check and
    the commit of its result.

    `seen` (kept by the caller between calls): each partition's position at the previous
    call; a partition qualifies only once its position stayed where it was (it is quiet),
    so a busy partition, whose next batch commits past the marker anyway, costs no
    transaction."""
    position = fetch_position(consumer)
    own = HOOKS.txn_topics
    out: dict[tuple[str, int], int] = {}
    assigned = {(tp.topic, tp.partition): tp for tp in consumer.assignment() if tp.topic in own}
    if seen is not None:
        for key in [k for k in seen if k not in assigned]:
            del seen[key]
    for key, tp in assigned.items():
        done = max(committed.get(key, -1), committed_offset(consumer, tp) or -1)
        if done < 0:
            continue
        at = position(tp)
        if at is None or at <= done or _FETCHES["active"]:
            continue
        if seen is not None:
            before, seen[key] = seen.get(key), at
            if before != at:
                continue
        handed = _FETCHES["last"].get(tp)
        if handed is None or handed < done:
            out[key] = at
    return out


def untouched_position(consumer: Any, tp: Any) -> int | None:
    """aiokafka's fetch position of `tp` if this process never handed out a record of it;
    None if it did, if a hand-out is under way, or if hand-outs are not tracked
    (`track_handouts`, which the worker calls under either processing protocol).

    Such a position was reached over nothing but transaction markers and aborted records, or
    is where an empty partition starts: everything below it is read. Without it, a partition
    that never held a record and was never committed (a gateway that writes to some
    partitions only, e.g. librdkafka's sticky partitioner with no key) never counted as read
    to its end, and its watermark source held its logical partition's windows open for good
    (docs/reliability.md, defect 14). Read in the same order as `_remaining`: position,
    hand-out under way, last handed out."""
    if not _FETCHES["tracked"]:
        return None
    at = fetch_position(consumer)(tp)
    if at is None or _FETCHES["active"] or tp in _FETCHES["last"]:
        return None
    return at


def past_markers(consumer: Any, ends: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """`ends` (the next offset to read per partition after a batch: its last record + 1),
    moved to aiokafka's fetch position where the batch holds the last record handed out of
    that partition, so that only transaction markers (or aborted records) lie between.

    A Faust stream (stage 2's counts) gets the records of a fetch from its buffer, so its
    batch cannot know whether the fetch position passed markers after its last record; this
    can: the same test as `markers_only_tail`, in the same order (position, hand-out under
    way, last handed out)."""
    from faust.types import TP

    position = fetch_position(consumer)
    out = dict(ends)
    for key, end in ends.items():
        tp = TP(*key)
        at = position(tp)
        if at is None or at <= end or _FETCHES["active"]:
            continue
        if _FETCHES["last"].get(tp) == end - 1:
            out[key] = at
    return out


def set_fetch_max_wait(ms: int) -> None:
    """Make Faust's worker consumer use `fetch_max_wait_ms=ms` (Faust passes 1,500).

    aiokafka keeps one fetch in flight per broker and leaves out of it the partitions whose
    records it still buffers. When the worker took those records while a fetch for only the
    quiet partitions (complaints, consent, re-keying) was waiting at the broker for data,
    the busy partitions could not be fetched again until that fetch returned: up to 1.5 s
    added to an event's detection latency. Any Faust version; aiokafka reads the attribute
    when the consumer starts."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = _ORIGINAL.setdefault(
        "create_worker_consumer", AIOKafkaConsumerThread._create_worker_consumer
    )

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms
        if _CONSUMER_OPTIONS["read_committed"]:
            consumer._isolation_level = "read_committed"  # read when the consumer starts
        return consumer

    create_worker_consumer.__wrapped__ = original  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def fetch_position(consumer: Any) -> Callable[[Any], int | None]:
    """`position(tp)`: the aiokafka consumer's fetch position of `tp` (None if unknown).

    Read from aiokafka's subscription state, which lives in the consumer thread; reading
    one attribute from this thread is safe under the GIL."""

    def position(tp: Any) -> int | None:
        try:
            sub = consumer._thread._consumer._subscription.subscription
            state = sub.assignment.state_value(tp)
        except AttributeError:
            return None
        return None if state is None else state._position

    return position


def blocker(consumer: Any) -> Callable[[Any], bool]:
    """`may_block(message)`: True if delivering it through the conductor could suspend.

    The objects it looks at are fixed for the consumer's lifetime (the events, the flow
    control, the producer buffer, the conductor's index, which is updated in place); only
    their state is read per record."""
    app = consumer.app
    suspended = consumer.suspend_flow.is_set
    flow_active = app.flow_control.is_active
    buffer = app.producer.buffer
    channels_of = app.topics._tp_index.get

    def may_block(message: Any) -> bool:
        if suspended() or not flow_active() or buffer.size > buffer.max_messages:
            return True
        channels = channels_of(message.tp)
        if channels:
            for chan in channels:
                if chan.queue.full():
                    return True
        return False

    return may_block


def set_batch_sink(topics: frozenset[str], deliver: BatchSink | None, batch_max: int) -> None:
    """Records of `topics` go to `deliver` in batches (fast path 3) instead of through
    Faust's conductor and the agent's stream; `deliver` None removes the sink."""
    HOOKS.sink_topics = topics if deliver is not None else frozenset()
    HOOKS.deliver = deliver
    HOOKS.batch_max = batch_max


def set_standby_counter(count: Callable[[int], None] | None) -> None:
    """Count the standby changelog records applied straight to RocksDB."""
    HOOKS.on_standby_applied = count


def set_gap_counter(count: Callable[[int], None] | None) -> None:
    """Count the offsets the loop passes without a record."""
    HOOKS.on_gap = count


def set_skip_counter(count: Callable[[str, int], None] | None) -> None:
    """Count the input records the loop leaves to be fetched again, by reason."""
    HOOKS.on_skipped = count


def _skipped(reason: str, ranges: dict[Any, list[int]]) -> None:
    """Log (at info, with topic, partition and offset range) and count skipped records."""
    total = 0
    for tp, (lo, hi, n) in sorted(ranges.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
        total += n
        log.info(
            "%s: %d records of %s[%d] offsets %d-%d left to be fetched again",
            reason,
            n,
            tp.topic,
            tp.partition,
            lo,
            hi,
        )
    hook = HOOKS.on_skipped
    if hook is not None and total:
        hook(reason, total)


def _gap(tp: Any, lo: int, hi: int) -> None:
    """Offsets the loop passes without a record: transaction markers (one offset between
    two transactions of a producer, at debug) or compacted or missing records (at info)."""
    n = hi - lo + 1
    level = logging.DEBUG if n == 1 else logging.INFO
    log.log(
        level,
        "offset gap: %d offsets of %s[%d] %d-%d had no record",
        n,
        tp.topic,
        tp.partition,
        lo,
        hi,
    )
    hook = HOOKS.on_gap
    if hook is not None:
        hook(n)


def _dropped(
    handed_out: dict[Any, tuple[int, int]] | None, received: dict[Any, int]
) -> dict[Any, tuple[int, int]]:
    """Offset ranges aiokafka handed out in a fetch that never reached the drain loop.

    Faust's `getmany` stops yielding a fetch's records when its flow stops or the group's
    generation changes (a rebalance starting), and aiokafka's position has already moved past
    the rest: they would be fetched again only after a seek, and a later commit would pass
    them (the symptom of defect 12, docs/reliability.md). The loop seeks such a partition
    back to the first dropped record, counts the records as "dropped_by_getmany" and does not
    commit its fetch position."""
    if not handed_out:
        return {}
    out: dict[Any, tuple[int, int]] = {}
    for tp, (first, last) in handed_out.items():
        got = received.get(tp)
        if got is None:
            out[tp] = (first, last)
        elif got < last:
            out[tp] = (got + 1, last)
    return out


def _note(ranges: dict[Any, list[int]], tp: Any, offset: int) -> None:
    r = ranges.get(tp)
    if r is None:
        ranges[tp] = [offset, offset, 1]
    else:
        r[0], r[1], r[2] = min(r[0], offset), max(r[1], offset), r[2] + 1


class StandbyApplier:
    """Applies standby changelog records straight to RocksDB, in each partition's order.

    Faust's own path for a standby record is: the conductor puts an `Event` on the changelog
    queue; the recovery task (`Recovery._slurp_changelogs`) takes it, sets
    `standby_offsets[tp]` to its offset and appends it to the table's buffer, which is
    written to RocksDB when it holds `standby_buffer_size` records, on revocation, or at the
    end of a recovery. A record may therefore sit in the queue, between the queue and the
    buffer, or in the buffer. `apply` takes a record only when none of its partition's
    records is in the first two places: every record this loop handed to Faust's path has
    been seen by the recovery task (`standby_offsets[tp]` reached it). The buffers are then
    written first (`flush_buffers`, what a revocation does), so the direct write comes after
    every earlier record of its partition. Records Faust's path would skip (offset not above
    `standby_offsets[tp]`) are skipped the same way.

    Only after the standbys have caught up once (`standbys_ready`, reset by every rebalance)
    and only for RocksDB stores; anything else takes Faust's path."""

    def __init__(self, app: Any) -> None:
        self.tables = app.tables
        self.recovery = app.tables.recovery
        self._stores: dict[Any, Any] = {}
        # per standby tp: the greatest offset handed to Faust's path
        self._handed: dict[Any, int] = {}
        # per standby tp: the greatest offset written here and not yet stored as persisted
        self._persist: dict[Any, int] = {}
        self.applied = 0

    def _store(self, table: Any) -> Any:
        store = self._stores.get(table.name, _UNSET)
        if store is _UNSET:
            from faust.stores.rocksdb import Store as RocksStore

            data = table.data
            store = self._stores[table.name] = data if isinstance(data, RocksStore) else None
        return store

    def apply(self, message: Any) -> bool:
        """True if the record was a standby changelog record and is dealt with here."""
        recovery = self.recovery
        tp = message.tp
        if tp not in recovery.standby_tps:
            return False
        offset = message.offset
        seen = recovery.standby_offsets.get(tp)
        handed = self._handed.get(tp)
        table = recovery.tp_to_table.get(tp)
        if (
            not self.tables.standbys_ready
            or table is None
            or (handed is not None and (seen is None or seen < handed))
            or (store := self._store(table)) is None
        ):
            self._handed[tp] = offset
            return False
        if seen is not None and offset <= seen:
            return True  # Faust's path skips it too
        if recovery.buffers.get(table):
            recovery.flush_buffers()
        recovery.standby_offsets[tp] = offset
        db = store._db_for_partition(tp.partition)
        value = message.value
        if value is None:
            db.delete(message.key)
        else:
            db.put(message.key, value)
        self._persist[tp] = offset
        self.applied += 1
        return True

    def flush(self) -> None:
        """Store the persisted offsets of the records written since the last flush.

        A persisted offset behind the data only makes a later recovery re-apply a few
        records, which is idempotent; it is never ahead of the data."""
        if self._persist:
            standby_tps = self.recovery.standby_tps
            for tp, offset in self._persist.items():
                table = self.recovery.tp_to_table.get(tp)
                if tp in standby_tps and table is not None:
                    table.data.set_persisted_offset(tp, offset)
            self._persist.clear()
        if self.applied:
            hook = HOOKS.on_standby_applied
            if hook is not None:
                hook(self.applied)
            self.applied = 0


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover
    # faust-streaming 0.15.3 faust/transport/consumer.py Consumer._drain_messages (BSD
    # licence), with smsmon's changes marked below.
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    from faust.transport.consumer import CONSUMER_FETCHING

    flag_consumer_fetching = CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    # smsmon: the fast paths, and the seek check
    fast = HOOKS.fast
    deliver = HOOKS.deliver if fast else None
    sink_topics = HOOKS.sink_topics if deliver is not None else frozenset()
    batch_max = HOOKS.batch_max
    pending: list[Any] = []
    now = time.monotonic
    # what Faust's stream sensor records per event; its "stream idle" check reads it
    monitor = getattr(self.app, "monitor", None)
    inbound: dict[Any, float] | None = getattr(monitor, "stream_inbound_time", None)
    if inbound is None:
        inbound = {}
    may_block = blocker(self)
    standby = StandbyApplier(self.app)
    apply_standby = standby.apply
    position = fetch_position(self)
    state = self.__dict__

    def seeks() -> int:
        return state.get("_smsmon_seeks", 0)  # type: ignore[no-any-return]

    def stale(tp: Any, offset: int, epoch: int) -> bool:
        """A record fetched before a seek that has since started: aiokafka's position was
        moved (to the committed offset), so it will be fetched again from there."""
        if seeks() == epoch:
            return False
        at = position(tp)
        return at is None or offset >= at

    async def deliver_pending(
        epoch: int, last: bool = False, dropped: dict[Any, tuple[int, int]] | None = None
    ) -> None:
        """Hand the batch to the sink, without the records a seek has made stale since.

        A batch the sink gives up (a rebalance came first) is never left marked as read:
        each of its partitions still assigned here is sought back to its first given-up
        record, so those records are fetched again (and the rest of this fetch becomes
        stale). Without that, later records of the partition could be processed and
        committed past them."""
        assert deliver is not None
        if seeks() == epoch:  # no seek since the fetch: nothing can be stale
            batch = pending.copy()
        else:
            batch = []
            for m in pending:
                if stale(m.tp, m.offset, epoch):
                    _note(stale_ranges, m.tp, m.offset)
                else:
                    batch.append(m)
        pending.clear()
        ends = None
        if last and seeks() == epoch:
            # a position past records Faust's getmany dropped is not committed (`_dropped`)
            ends = {m.tp: None if m.tp in (dropped or {}) else position(m.tp) for m in batch}
        if not batch or await deliver(batch, ends) is not False:
            return
        given_up: dict[Any, list[int]] = {}
        for m in batch:
            _note(given_up, m.tp, m.offset)
        _skipped("given_up", given_up)
        assigned = self.assignment()
        for tp, (lo, _, _) in given_up.items():
            if tp in assigned:
                try:
                    await self.seek(tp, lo)
                except Exception as exc:  # revoked meanwhile: its new owner reads it
                    log.info("seek of %s[%d] to %d failed: %r", tp.topic, tp.partition, lo, exc)

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = getmany(timeout=1.0)

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                epoch = -1
                stale_ranges: dict[Any, list[int]] = {}
                # smsmon: what aiokafka hands out in this fetch (see `_dropped`), and the
                # greatest offset of each partition that reached this loop
                handed_out: dict[Any, tuple[int, int]] | None = (
                    {} if "getall" in _ORIGINAL else None
                )
                _FETCHES["round"] = handed_out
                received: dict[Any, int] = {}
                async for tp, message in ait:
                    received[tp] = message.offset
                    if epoch < 0:  # smsmon: the records were fetched just now
                        epoch = seeks()
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    # smsmon: a record that a seek made stale is neither delivered nor marked
                    # as read, nor does it open a gap (checked here and after every await)
                    if stale(tp, offset, epoch):
                        _note(stale_ranges, tp, offset)
                        continue
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                await self._add_gap(tp, r_offset + 1, offset)
                            _gap(tp, r_offset + 1, offset - 1)  # smsmon: counted, logged
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if stale(tp, offset, epoch):
                            _note(stale_ranges, tp, offset)
                            continue
                        if message.topic in sink_topics:
                            # fast path 3: collected here, delivered per batch; marked as read
                            # now (a seek resets the read offsets it concerns)
                            message.time_in = inbound[tp] = now()
                            pending.append(message)
                            set_read_offset(tp, offset)
                            if len(pending) >= batch_max:
                                await deliver_pending(epoch)
                            continue
                        if fast and apply_standby(message):
                            pass
                        elif not fast or may_block(message):
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            await callback(message)
                        if stale(tp, offset, epoch):
                            _note(stale_ranges, tp, offset)
                            continue
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                _FETCHES["round"] = None
                # Also when nothing of the fetch was yielded (Faust filtered all of it): the
                # test is aiokafka's position, not the seek counter (a seek to the committed
                # offset after the hand-out already moved the position back before them).
                dropped = {
                    dtp: r
                    for dtp, r in _dropped(handed_out, received).items()
                    if (at := position(dtp)) is not None and at > r[0]
                }
                if pending:
                    await deliver_pending(epoch, last=True, dropped=dropped)
                for dtp, (lo, hi) in dropped.items():
                    _skipped("dropped_by_getmany", {dtp: [lo, hi, hi - lo + 1]})
                    if dtp in self.assignment():
                        try:
                            await self.seek(dtp, lo)
                        except Exception as exc:  # revoked meanwhile: its new owner reads it
                            log.info(
                                "seek of %s[%d] to %d failed: %r", dtp.topic, dtp.partition, lo, exc
                            )
                standby.flush()
                if stale_ranges:
                    _skipped("stale_fetch", stale_ranges)
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


# -- the resume race: seek the stream partitions before resuming them ----------------------


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:  # pragma: no cover
    # faust-streaming 0.15.3 faust/tables/recovery.py Recovery.on_recovery_completed (BSD
    # licence). smsmon: the stream partitions are sought to their committed offsets *before*
    # they are resumed, not after (see "The resume race" in this module's docstring).
    from typing import cast

    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    # This needs to happen if all goes well
    callback_coros = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table],
                self.standbys_for_table[table],
            )
        )
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            f"Recovery rebalancing again app id "
            f"{self.app.consumer_generation_id} param {generation_id}"
        )
        return
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.log.dev("Resume stream partitions")
    self.app.flow_control.resume()
    consumer.resume_flow()
    # finally make sure the fetcher is running.
    await cast(Any, self.app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


async def _resume_streams(self: Any, generation_id: int = 0) -> None:  # pragma: no cover
    # faust-streaming 0.15.3 faust/tables/recovery.py Recovery._resume_streams (BSD licence).
    # smsmon: seek before resuming, as in `_on_recovery_completed`.
    from typing import cast

    app = self.app
    consumer = app.consumer
    await app.on_rebalance_complete.send()
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again")
        return
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        self.log.dev("Resume stream partitions")
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    else:
        self.log.info("Resuming streams with empty assignment")
    self.completed.set()
    # Resume partitions and start fetching.
    self.log.info("Resuming flow...")
    app.flow_control.resume()
    consumer.resume_flow()
    # finally make sure the fetcher is running.
    await cast(Any, app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    self.tables.on_standbys_ready()
    app.on_rebalance_end()
    self.log.info("Worker ready")
