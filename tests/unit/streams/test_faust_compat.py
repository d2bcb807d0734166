"""The consumer fast path: awaited directly only when the delivery cannot block."""

from __future__ import annotations

import asyncio
import collections
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.stores.rocksdb import Store as RocksStore
from faust.transport.consumer import Consumer
from faust.types import TP

from smsmon.streams import faust_compat
from smsmon.streams.faust_compat import StandbyApplier, apply_fast_drain, blocker

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


class Queue:
    def __init__(self, full: bool) -> None:
        self._full = full

    def full(self) -> bool:
        return self._full


def consumer(
    *, suspended: bool = False, flow: bool = True, buffered: int = 0, full: bool = False
) -> Any:
    suspend_flow = asyncio.Event()
    if suspended:
        suspend_flow.set()
    tp = ("events", 3)
    channels = [SimpleNamespace(queue=Queue(False)), SimpleNamespace(queue=Queue(full))]
    app = SimpleNamespace(
        flow_control=SimpleNamespace(is_active=lambda: flow),
        producer=SimpleNamespace(buffer=SimpleNamespace(size=buffered, max_messages=100)),
        topics=SimpleNamespace(_tp_index={tp: channels}),
    )
    return blocker(SimpleNamespace(app=app, suspend_flow=suspend_flow)), SimpleNamespace(tp=tp)


def test_a_delivery_that_cannot_block_takes_the_fast_path() -> None:
    may_block, message = consumer()
    assert not may_block(message)


@pytest.mark.parametrize(
    "why",
    [
        {"suspended": True},  # a rebalance suspended the flow
        {"flow": False},  # flow control suspended
        {"buffered": 101},  # Faust's producer buffer would flush first
        {"full": True},  # one channel's stream buffer is full
    ],
)
def test_anything_that_could_block_takes_faust_s_path(why: dict[str, Any]) -> None:
    may_block, message = consumer(**why)
    assert may_block(message)


def _restore_originals() -> None:
    for name, (cls, attr) in faust_compat.patch_targets().items():
        if name in faust_compat._ORIGINAL:
            setattr(cls, attr, faust_compat._ORIGINAL[name])


def test_installed_for_the_pinned_faust_and_refused_on_any_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = faust_compat._ORIGINAL.get("drain", Consumer._drain_messages)
    try:
        assert apply_fast_drain(True)
        assert Consumer._drain_messages is faust_compat._drain_messages
        assert Consumer.perform_seek.__wrapped__ is faust_compat._ORIGINAL["perform_seek"]
        from faust.tables.recovery import Recovery

        assert Recovery.on_recovery_completed is faust_compat._on_recovery_completed
        assert Recovery._resume_streams is faust_compat._resume_streams
        # the fast paths off: the loop (with its seek check) stays
        assert not apply_fast_drain(False)
        assert Consumer._drain_messages is faust_compat._drain_messages
        assert not faust_compat.HOOKS.fast
        _restore_originals()
        import faust

        monkeypatch.setattr(faust, "__version__", "9.9.9")
        with pytest.raises(faust_compat.UnsupportedFaust, match=r"faust-streaming 9\.9\.9"):
            apply_fast_drain(True)
        assert Consumer._drain_messages is original  # nothing half-installed
        assert Consumer.perform_seek is faust_compat._ORIGINAL["perform_seek"]
        assert Recovery.on_recovery_completed is faust_compat._ORIGINAL["recovery_completed"]
    finally:
        _restore_originals()
        faust_compat.HOOKS.fast = True


def test_a_seek_counts_when_it_starts_and_when_it_ends() -> None:
    seen: list[int] = []

    async def original(self: Any, tp: Any, offset: int) -> str:
        seen.append(self._smsmon_seeks)
        return "done"

    consumer = SimpleNamespace()
    wrapped = faust_compat._counting_seeks(original)
    assert asyncio.run(wrapped(consumer, "tp", 3)) == "done"
    assert seen == [1] and consumer._smsmon_seeks == 2


# -- the seek race ----------------------------------------------------------------------------


class Flag:
    def __init__(self) -> None:
        self.value = False

    def is_set(self) -> bool:
        return self.value


class FakeConsumer:
    """Enough of a Faust consumer to run `_drain_messages` over scripted fetches."""

    consumer_stopped_errors = (ConnectionError,)

    def __init__(self, tp: Any, chunks: list[list[int]], on_deliver: Any) -> None:
        self.tp = tp
        self.chunks = chunks
        self.on_deliver = on_deliver
        self.delivered: list[int] = []
        self.gaps: list[tuple[int, int]] = []
        self.sought: list[tuple[Any, int]] = []
        self.position = 0
        self._stopped = Flag()
        self._read_offset: dict[Any, int | None] = collections.defaultdict(lambda: None)
        self._commit_every = None
        self._n_acked = 0
        self.should_stop = False
        self.suspend_flow = asyncio.Event()
        self.diag = SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)
        self.log = SimpleNamespace(dev=lambda *a: None, info=print, exception=print)
        recovery = SimpleNamespace(standby_tps=set())
        self.app = SimpleNamespace(
            flow_control=SimpleNamespace(is_active=lambda: True),
            producer=SimpleNamespace(buffer=SimpleNamespace(size=0, max_messages=100)),
            topics=SimpleNamespace(_tp_index={}, acks_enabled_for=lambda topic: True),
            tables=SimpleNamespace(recovery=recovery, standbys_ready=True),
            monitor=SimpleNamespace(stream_inbound_time={}),
        )
        me = self

        class State:
            @property
            def _position(self) -> int:
                return me.position

        assignment = SimpleNamespace(state_value=lambda tp: State() if tp == me.tp else None)
        self._thread = SimpleNamespace(
            _consumer=SimpleNamespace(
                _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
            )
        )

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def assignment(self) -> set[Any]:
        return {self.tp}

    async def seek(self, tp: Any, offset: int) -> None:
        """Faust's seek as smsmon wraps it: counted, position and read offset moved."""
        self._smsmon_seeks = self.__dict__.get("_smsmon_seeks", 0) + 1
        self.sought.append((tp, offset))
        self.position = offset
        self._read_offset[tp] = offset
        self._smsmon_seeks += 1

    async def getmany(self, timeout: float) -> Any:
        if not self.chunks:
            self._stopped.value = True
            return
        chunk = self.chunks.pop(0)
        self.position = chunk[-1] + 1  # aiokafka hands the records out: position moves on
        for offset in chunk:
            yield (
                self.tp,
                SimpleNamespace(
                    tp=self.tp, offset=offset, topic=self.tp.topic, key=None, value=None
                ),
            )

    async def callback(self, message: Any) -> None:
        self.delivered.append(message.offset)
        await self.on_deliver(self, message.offset)

    async def wait_first(self, *coros: Any) -> None:
        await coros[0]
        coros[1].close()

    async def commit(self) -> None:
        pass

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        self.gaps.append((start, end))


def drain(chunks: list[list[int]], on_deliver: Any) -> FakeConsumer:
    consumer = FakeConsumer(TP("sms.ref.consent", 3), chunks, on_deliver)
    asyncio.run(faust_compat._drain_messages(consumer, SimpleNamespace(_stopped=Flag())))
    return consumer


def test_records_fetched_before_a_seek_are_neither_delivered_nor_marked_read() -> None:
    """A rebalance's `perform_seek` moves the position back to the committed offset 11 while
    record 13 of a batch fetched before it is being delivered: 14-19 are left for the fetch
    from 11, and the read offset stays at 11, so that fetch is not dropped."""

    async def on_deliver(consumer: FakeConsumer, offset: int) -> None:
        if offset == 13 and len(consumer.delivered) == 4:
            consumer._smsmon_seeks = 1  # perform_seek starts ...
            await asyncio.sleep(0)
            consumer.position = 11
            consumer._read_offset[consumer.tp] = 11
            consumer._smsmon_seeks = 2  # ... and ends

    consumer = drain([list(range(10, 20)), list(range(11, 25))], on_deliver)
    assert consumer.delivered == [10, 11, 12, 13, *range(11, 25)]
    assert consumer._read_offset[consumer.tp] == 24
    assert consumer.gaps == []  # 14 after the seek is no sign of missing offsets 12-13


def test_without_a_seek_every_record_is_delivered_once() -> None:
    async def on_deliver(consumer: FakeConsumer, offset: int) -> None:
        pass

    consumer = drain([list(range(0, 150)), list(range(150, 160)), [163, 164]], on_deliver)
    assert consumer.delivered == [*range(160), 163, 164]
    assert consumer._read_offset[consumer.tp] == 164
    assert consumer.gaps == [(160, 163)]  # offsets a compacted topic no longer has


def test_records_fetched_after_the_seek_moved_the_position_are_delivered() -> None:
    """A batch returned while a seek was running, from the new position: a seek ended after
    the batch arrived, but its records lie before the position, so they are valid."""

    async def on_deliver(consumer: FakeConsumer, offset: int) -> None:
        if offset == 0:
            consumer._smsmon_seeks += 1  # the seek that had started ends now

    def run() -> FakeConsumer:
        consumer = FakeConsumer(TP("sms.ref.consent", 3), [list(range(0, 5))], on_deliver)
        consumer._smsmon_seeks = 1  # started before the fetch returned
        asyncio.run(faust_compat._drain_messages(consumer, SimpleNamespace(_stopped=Flag())))
        return consumer

    consumer = run()
    assert consumer.delivered == [0, 1, 2, 3, 4]
    assert consumer._read_offset[consumer.tp] == 4


# -- standby changelog records ------------------------------------------------------------


class FakeRocks(RocksStore):
    """A RocksDB store class whose partitions are dicts, logging writes in order."""

    def __init__(self, log: list[tuple[Any, ...]]) -> None:  # no Faust service setup
        self.log = log
        self.dbs: dict[int, dict[bytes, bytes]] = {}
        self.persisted: dict[Any, int] = {}

    def _db_for_partition(self, partition: int) -> Any:
        log, db = self.log, self.dbs.setdefault(partition, {})

        class DB:
            def put(self, key: bytes, value: bytes) -> None:
                log.append(("put", partition, key, value))
                db[key] = value

            def delete(self, key: bytes) -> None:
                log.append(("delete", partition, key))
                db.pop(key, None)

        return DB()

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp] = offset


class Recovery:
    def __init__(self, table: Any, tps: set[Any], log: list[tuple[Any, ...]]) -> None:
        self.standby_tps = set(tps)
        self.standby_offsets: dict[Any, int] = {}
        self.tp_to_table = {tp: table for tp in tps}
        self.buffers: dict[Any, list[Any]] = {}
        self.log = log

    def flush_buffers(self) -> None:
        for table, buf in self.buffers.items():
            self.log.extend(("buffered", table.name, offset) for offset in buf)
            buf.clear()


STANDBY = TP("subscribers-changelog", 5)


class Table:
    def __init__(self, name: str, data: Any) -> None:
        self.name, self.data = name, data


def standby_setup(ready: bool = True, store: Any = None) -> tuple[Any, Any, list[Any]]:
    log: list[tuple[Any, ...]] = []
    table = Table("subscribers", store if store is not None else FakeRocks(log))
    recovery = Recovery(table, {STANDBY}, log)
    tables = SimpleNamespace(recovery=recovery, standbys_ready=ready)
    return StandbyApplier(SimpleNamespace(tables=tables)), recovery, log


def record(offset: int, key: bytes, value: bytes | None, tp: Any = STANDBY) -> Any:
    return SimpleNamespace(tp=tp, offset=offset, key=key, value=value)


def test_standby_records_are_written_in_order_and_their_offset_persisted_per_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    applier, recovery, log = standby_setup()
    counted: list[int] = []
    monkeypatch.setattr(faust_compat.HOOKS, "on_standby_applied", counted.append)
    assert applier.apply(record(10, b"k1", b"v1"))
    assert applier.apply(record(11, b"k2", b"v2"))
    assert applier.apply(record(12, b"k1", None))  # a tombstone deletes
    assert log == [("put", 5, b"k1", b"v1"), ("put", 5, b"k2", b"v2"), ("delete", 5, b"k1")]
    assert recovery.standby_offsets[STANDBY] == 12
    store = recovery.tp_to_table[STANDBY].data
    assert store.dbs[5] == {b"k2": b"v2"}
    assert store.persisted == {}  # once per fetched batch
    applier.flush()
    assert store.persisted == {STANDBY: 12}
    assert counted == [3]
    applier.flush()
    assert counted == [3]


def test_a_record_faust_has_seen_already_is_skipped_as_faust_would() -> None:
    applier, recovery, log = standby_setup()
    recovery.standby_offsets[STANDBY] = 20
    assert applier.apply(record(20, b"k", b"old"))
    assert applier.apply(record(7, b"k", b"older"))
    assert log == []


def test_records_of_other_partitions_take_faust_s_path() -> None:
    applier, _, log = standby_setup()
    assert not applier.apply(record(1, b"k", b"v", tp=TP("subscribers-changelog", 6)))
    assert not applier.apply(record(1, b"k", b"v", tp=TP("sms.events", 5)))
    assert log == []


def test_a_store_that_is_not_rocksdb_takes_faust_s_path() -> None:
    applier, _, log = standby_setup(store=SimpleNamespace())
    assert not applier.apply(record(1, b"k", b"v"))
    assert log == []


def test_until_faust_s_path_has_seen_what_it_was_handed_records_stay_on_it() -> None:
    """Before the standbys caught up, records go Faust's way; the direct path resumes only
    once the recovery task has taken the last of them, and after its buffer is written."""
    applier, recovery, log = standby_setup(ready=False)
    assert not applier.apply(record(30, b"a", b"1"))
    assert not applier.apply(record(31, b"b", b"2"))
    applier.tables.standbys_ready = True
    # 31 is still in the changelog queue (or between the queue and the buffer)
    recovery.standby_offsets[STANDBY] = 30
    recovery.buffers[recovery.tp_to_table[STANDBY]] = [30]
    assert not applier.apply(record(32, b"c", b"3"))
    # the recovery task took 31 and 32 into its buffer
    recovery.standby_offsets[STANDBY] = 32
    recovery.buffers[recovery.tp_to_table[STANDBY]] += [31, 32]
    assert applier.apply(record(33, b"a", b"4"))
    assert log == [
        ("buffered", "subscribers", 30),
        ("buffered", "subscribers", 31),
        ("buffered", "subscribers", 32),
        ("put", 5, b"a", b"4"),
    ]


def test_no_persisted_offset_for_a_partition_revoked_before_the_flush() -> None:
    applier, recovery, _ = standby_setup()
    assert applier.apply(record(3, b"k", b"v"))
    store = recovery.tp_to_table[STANDBY].data
    recovery.standby_tps.clear()  # a rebalance took the standby away
    applier.flush()
    assert store.persisted == {}


# -- fast path 3: batches for the sink ------------------------------------------------------


@pytest.fixture
def sink() -> Any:
    batches: list[list[int]] = []
    consumer_box: list[FakeConsumer] = []
    script: dict[str, Any] = {"on_batch": None, "give_up": set()}

    async def deliver(messages: list[Any], ends: Any = None) -> bool:
        batches.append([m.offset for m in messages])
        script.setdefault("ends", []).append(ends)
        hook = script["on_batch"]
        if hook is not None:
            await hook(consumer_box[0], batches[-1])
        return len(batches) not in script["give_up"]

    faust_compat.set_batch_sink(frozenset({"sms.events"}), deliver, 4)
    try:
        yield SimpleNamespace(batches=batches, box=consumer_box, script=script)
    finally:
        faust_compat.set_batch_sink(frozenset(), None, 1000)


def drain_events(chunks: list[list[int]], sink: Any, on_deliver: Any = None) -> FakeConsumer:
    async def nothing(consumer: FakeConsumer, offset: int) -> None:
        pass

    consumer = FakeConsumer(TP("sms.events", 1), chunks, on_deliver or nothing)
    sink.box.append(consumer)
    asyncio.run(faust_compat._drain_messages(consumer, SimpleNamespace(_stopped=Flag())))
    return consumer


def test_sink_records_go_in_batches_of_at_most_batch_max_in_order(sink: Any) -> None:
    consumer = drain_events([list(range(0, 10)), [10, 11]], sink)
    assert sink.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10, 11]]
    # only the last batch of each fetch carries the fetch positions (all its records done)
    ends = sink.script["ends"]
    assert [e is not None for e in ends] == [False, False, True, True]
    assert set(ends[2]) == {consumer.tp}
    assert consumer.delivered == []  # nothing went through the conductor
    assert consumer._read_offset[consumer.tp] == 11
    # Faust's "stream idle" check sees the partition being processed
    assert consumer.tp in consumer.app.monitor.stream_inbound_time


def test_sink_batches_leave_out_what_a_seek_made_stale(sink: Any) -> None:
    """A seek back to 2 during the delivery of the first batch: the rest of that fetch is
    not delivered; the fetch again from 2 is, and is not dropped as already read."""

    async def on_batch(consumer: FakeConsumer, offsets: list[int]) -> None:
        if offsets == [0, 1, 2, 3]:
            consumer._smsmon_seeks = 1
            consumer.position = 2
            consumer._read_offset[consumer.tp] = 2
            consumer._smsmon_seeks = 2

    sink.script["on_batch"] = on_batch
    consumer = drain_events([list(range(0, 6)), list(range(2, 6))], sink)
    assert sink.batches == [[0, 1, 2, 3], [2, 3, 4, 5]]
    assert consumer._read_offset[consumer.tp] == 5


def test_with_the_fast_paths_off_the_sink_is_not_used(sink: Any) -> None:
    faust_compat.HOOKS.fast = False
    try:
        consumer = drain_events([[0, 1, 2]], sink)
    finally:
        faust_compat.HOOKS.fast = True
    assert sink.batches == []
    assert consumer.delivered == [0, 1, 2]


# -- the resume race ---------------------------------------------------------------------------


def fake_recovery(calls: list[str]) -> Any:
    async def perform_seek() -> None:
        calls.append("perform_seek")

    async def noop(*args: Any, **kwargs: Any) -> None:
        return None

    async def wait(coro: Any, timeout: float | None = None) -> None:
        await coro

    consumer = SimpleNamespace(
        assignment=lambda: {TP("sms.events", 0), TP("app-consent-changelog", 0)},
        perform_seek=perform_seek,
        resume_partitions=lambda tps: calls.append(f"resume_partitions {sorted(tps)}"),
        resume_flow=lambda: calls.append("resume_flow"),
    )
    app = SimpleNamespace(
        consumer=consumer,
        consumer_generation_id=3,
        on_rebalance_complete=SimpleNamespace(send=noop),
        flow_control=SimpleNamespace(resume=lambda: calls.append("flow_control.resume")),
        _fetcher=SimpleNamespace(maybe_start=noop),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        on_rebalance_end=lambda: None,
        conf=SimpleNamespace(broker_request_timeout=30),
    )
    return SimpleNamespace(
        app=app,
        log=SimpleNamespace(info=lambda *a: None, dev=lambda *a: None, warning=print),
        tables=SimpleNamespace(
            values=lambda: [], on_actives_ready=lambda: None, on_standbys_ready=lambda: None
        ),
        _set_recovery_ended=lambda: None,
        completed=asyncio.Event(),
        _wait=wait,
        _is_changelog_tp=lambda tp: tp.topic.endswith("-changelog"),
        actives_for_table={},
        standbys_for_table={},
    )


@pytest.mark.parametrize("method", ["_on_recovery_completed", "_resume_streams"])
def test_stream_partitions_are_sought_before_they_are_resumed(method: str) -> None:
    calls: list[str] = []
    asyncio.run(getattr(faust_compat, method)(fake_recovery(calls), 3))
    assert calls == [
        "perform_seek",
        f"resume_partitions {[TP('sms.events', 0)]}",
        "flow_control.resume",
        "resume_flow",
    ]


def test_the_worker_consumer_gets_the_configured_fetch_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    made = SimpleNamespace(_fetch_max_wait_ms=1500)
    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer", lambda self, t: made)
    monkeypatch.delitem(faust_compat._ORIGINAL, "create_worker_consumer", raising=False)
    faust_compat.set_fetch_max_wait(100)
    assert AIOKafkaConsumerThread._create_worker_consumer(object(), object()) is made
    assert made._fetch_max_wait_ms == 100
    monkeypatch.delitem(faust_compat._ORIGINAL, "create_worker_consumer")


def test_the_pinned_version_is_the_installed_one_and_the_one_pyproject_pins() -> None:
    import tomllib

    import faust

    faust_compat.require_supported_faust()  # the venv's faust-streaming is accepted
    assert faust.__version__ == faust_compat.FAUST_VERSION
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert f"faust-streaming=={faust_compat.FAUST_VERSION}" in pyproject["project"]["dependencies"]
    with pytest.raises(faust_compat.UnsupportedFaust, match=r"install faust-streaming==0\.15\.3"):
        faust_compat.require_supported_faust("0.11.3")


# Private attributes of Faust, aiokafka, the RocksDB store or prometheus_client that smsmon
# reaches: only the compatibility module may name them.
PRIVATE_NAMES = re.compile(
    r"\._(?:drain_messages|resume_streams|current_event|unacked_messages|committed_offset"
    r"|db_for_partition|dbs_for_actives|key_index|tp_index|fetcher|client|thread|subscription"
    r"|metrics|position|fetch_max_wait_ms|create_worker_consumer|slurp_changelogs)\b"
    r"|\bProducerBuffer\b|faust\.streams\b"
)


def test_no_module_but_the_compatibility_module_names_a_dependency_s_internals() -> None:
    offenders = []
    for path in sorted((REPO / "smsmon").rglob("*.py")):
        if path.name == "faust_compat.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if PRIVATE_NAMES.search(code) and "self._" not in code:
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []


def test_a_given_up_batch_is_fetched_again_and_counted(sink: Any) -> None:
    """The sink gives the first batch up (a rebalance came first): the partition is sought
    back to the batch's first offset, the rest of that fetch is left (stale), and the next
    fetch delivers every record; both skips are counted by reason."""
    counted: list[tuple[str, int]] = []
    faust_compat.set_skip_counter(lambda reason, n: counted.append((reason, n)))
    sink.script["give_up"] = {1}
    try:
        consumer = drain_events([list(range(10, 16)), list(range(10, 16))], sink)
    finally:
        faust_compat.set_skip_counter(None)
    assert consumer.sought == [(consumer.tp, 10)]
    assert sink.batches == [[10, 11, 12, 13], [10, 11, 12, 13], [14, 15]]
    assert consumer._read_offset[consumer.tp] == 15
    assert counted == [("given_up", 4), ("stale_fetch", 2)]
    assert consumer.gaps == []


def test_a_given_up_batch_of_a_revoked_partition_is_not_sought(sink: Any) -> None:
    sink.script["give_up"] = {1}

    async def on_batch(consumer: FakeConsumer, offsets: list[int]) -> None:
        consumer.assignment = set  # type: ignore[method-assign]  # revoked meanwhile

    sink.script["on_batch"] = on_batch
    consumer = drain_events([list(range(0, 4))], sink)
    assert consumer.sought == []
    assert sink.batches == [[0, 1, 2, 3]]


def test_records_getmany_never_yielded_are_found_as_dropped() -> None:
    """aiokafka handed out offsets 10-19 of one partition and 5-6 of another, Faust's getmany
    stopped after offset 14 (its flow stopped) and never reached the other: both tails are
    dropped (sought back, not committed); a partition fully received is not."""
    a, b, c = TP("sms.events", 0), TP("sms.events", 1), TP("smsmon-rekey", 0)
    handed = {a: (10, 19), b: (5, 6), c: (0, 3)}
    received = {a: 14, c: 3}
    assert faust_compat._dropped(handed, received) == {a: (15, 19), b: (5, 6)}
    assert faust_compat._dropped(None, received) == {}
    assert faust_compat._dropped({}, received) == {}


class TailConsumer:
    """A consumer's assignment, aiokafka positions and Faust's committed offsets."""

    def __init__(self, positions: dict[Any, int], committed: dict[Any, int]) -> None:
        self.positions = positions
        self._committed_offset = committed
        states = {tp: SimpleNamespace(_position=at) for tp, at in positions.items()}
        assignment = SimpleNamespace(state_value=states.get)
        self._thread = SimpleNamespace(
            _consumer=SimpleNamespace(
                _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
            )
        )

    def assignment(self) -> set[Any]:
        return set(self.positions)


@pytest.fixture()
def txn_topics(monkeypatch: pytest.MonkeyPatch) -> dict[Any, int]:
    monkeypatch.setattr(faust_compat.HOOKS, "txn_topics", frozenset({"counts", "rekey"}))
    last: dict[Any, int] = {}
    monkeypatch.setitem(faust_compat._FETCHES, "last", last)
    monkeypatch.setitem(faust_compat._FETCHES, "active", 0)
    return last


def test_a_position_past_the_committed_offset_over_markers_alone_is_committed(
    txn_topics: dict[Any, int],
) -> None:
    """Partition 0 ends in a marker fetched on its own (last record 41 committed as 42,
    position 43): 43 is committed. Partition 1's record 50 is handed out and not committed
    yet; partition 2 is where it was committed; partition 3 is not a transactions' input;
    partition 4 was never committed by this worker, but Faust read its committed offset at
    the assignment; partition 5 has neither."""
    c0, c1, c2, c4, c5 = (TP("counts", p) for p in (0, 1, 2, 4, 5))
    other = TP("sms.ref.ports", 3)
    txn_topics.update({c0: 41, c1: 50, c2: 9, c4: 6})
    consumer = TailConsumer(
        {c0: 43, c1: 51, c2: 10, c4: 8, c5: 3, other: 99}, committed={c4: 7, other: 12}
    )
    mine = {("counts", 0): 42, ("counts", 1): 50, ("counts", 2): 10}
    assert faust_compat.markers_only_tail(consumer, mine) == {("counts", 0): 43, ("counts", 4): 8}


def test_nothing_is_committed_while_a_hand_out_is_under_way(txn_topics: dict[Any, int]) -> None:
    c0 = TP("counts", 0)
    txn_topics[c0] = 41
    consumer = TailConsumer({c0: 43}, committed={})
    faust_compat._FETCHES["active"] = 1
    assert faust_compat.markers_only_tail(consumer, {("counts", 0): 42}) == {}
    faust_compat._FETCHES["active"] = 0
    assert faust_compat.markers_only_tail(consumer, {("counts", 0): 42}) == {("counts", 0): 43}


def test_a_partition_assigned_elsewhere_is_left_to_its_owner(txn_topics: dict[Any, int]) -> None:
    consumer = TailConsumer({TP("counts", 1): 43}, committed={})
    assert faust_compat.markers_only_tail(consumer, {("counts", 0): 42}) == {}


def test_a_partition_is_committed_past_its_markers_only_once_it_is_quiet(
    txn_topics: dict[Any, int],
) -> None:
    """With `seen`, the first call only notes the position; a position that moved since
    waits another call (the next batch commits past the marker anyway)."""
    c0 = TP("counts", 0)
    txn_topics[c0] = 41
    consumer = TailConsumer({c0: 43}, committed={})
    seen: dict[tuple[str, int], int] = {("counts", 9): 5}  # no longer assigned: forgotten
    mine = {("counts", 0): 42}
    assert faust_compat.markers_only_tail(consumer, mine, seen) == {}
    assert seen == {("counts", 0): 43}
    consumer = TailConsumer({c0: 44}, committed={})
    assert faust_compat.markers_only_tail(consumer, mine, seen) == {}
    assert faust_compat.markers_only_tail(consumer, mine, seen) == {("counts", 0): 44}


def test_a_batch_with_the_last_record_handed_out_ends_past_the_markers(
    txn_topics: dict[Any, int],
) -> None:
    """Stage 2's batch ends at offset 41 of partition 0, the last record aiokafka handed out,
    and the position is 43 (a commit marker at 42): it ends at 43. Partition 1's last
    handed-out record (50) is not in the batch: it stays at 41. Partition 2 is at the
    position already."""
    c0, c1, c2 = (TP("counts", p) for p in (0, 1, 2))
    txn_topics.update({c0: 41, c1: 50, c2: 9})
    consumer = TailConsumer({c0: 43, c1: 51, c2: 10}, committed={})
    ends = {("counts", 0): 42, ("counts", 1): 41, ("counts", 2): 10}
    assert faust_compat.past_markers(consumer, ends) == {
        ("counts", 0): 43,
        ("counts", 1): 41,
        ("counts", 2): 10,
    }
    faust_compat._FETCHES["active"] = 1
    assert faust_compat.past_markers(consumer, ends) == ends
    faust_compat._FETCHES["active"] = 0
