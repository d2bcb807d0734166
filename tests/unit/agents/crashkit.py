"""A broker, a transactional producer and a Faust wiring in memory, for crash-point tests of
the worker's batch logic (docs/reliability.md, "The processing protocol").

`run` drives the real `Pipeline.process_batch` and `Pipeline._commit` batch by batch over
input records held by `Broker`, with the tables in real RocksDB databases (Faust's own
RocksDB `Store`, its `apply_changelog_batch` for recovery). A `Crash` raised at a chosen step
stands for a SIGKILL: everything in memory is dropped, the open transaction is aborted (what
the restarted producer's `init_transactions` does), RocksDB keeps what it had, and a new
Pipeline over the same directories recovers its tables from the committed changelog above
each partition's stored offset and consumes again from the committed input offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import types
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from faust.stores.rocksdb import Store as RocksStore
from faust.types import TP
from prometheus_client import CollectorRegistry
from rocksdict import Options, Rdict

from smsmon.agents import pipeline as pipeline_module
from smsmon.agents.pipeline import Delivery, Pipeline
from smsmon.config.settings import Settings
from smsmon.contract.codec import DecodeContext
from smsmon.rules.reference import apply_reference
from smsmon.rules.traffic import Partial
from smsmon.streams import faust_compat
from smsmon.streams.metrics import Metrics

PARTITIONS = 2
# the wall clock the worker sees (detected_at of alerts, watermark idleness, marker pacing):
# frozen, so that two runs of the same input publish byte-identical alerts
NOW = dt.datetime(2026, 6, 1, 3, 0, tzinfo=dt.UTC)
TABLES = ("consent", "subscribers")


class Crash(Exception):
    """The process dies here."""


# -- the broker -------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    txn: int | None  # producing transaction; None: a plain (non-transactional) producer
    control: bool = False  # a transaction marker (takes an offset, never delivered)


class Broker:
    """Partition logs with transactions, and the consumer group's committed offsets."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], list[Record]] = defaultdict(list)
        self.txns: dict[int, str] = {}  # id -> open | committed | aborted
        self.group: dict[tuple[str, int], int] = {}  # committed input offsets

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        txn: int | None = None,
        control: bool = False,
    ) -> int:
        log = self.logs[(topic, partition)]
        log.append(Record(len(log), key, value, list(headers or []), txn, control))
        return len(log) - 1

    def visible(self, rec: Record) -> bool:
        """What a read_committed consumer is given."""
        return not rec.control and (rec.txn is None or self.txns[rec.txn] == "committed")

    def end(self, topic: str, partition: int) -> int:
        return len(self.logs[(topic, partition)])

    def next_visible(self, topic: str, partition: int, start: int) -> int:
        """The first offset >= start holding a visible record, else the log end."""
        log = self.logs[(topic, partition)]
        for i in range(start, len(log)):  # not log[start:]: a copy per record read
            if self.visible(log[i]):
                return i
        return len(log)

    def committed(self, topic: str) -> Iterator[tuple[int, Record]]:
        for (t, p), log in sorted(self.logs.items()):
            if t == topic:
                for rec in log:
                    if self.visible(rec):
                        yield p, rec

    def abort_open(self) -> int:
        """Abort every open transaction (the restarted producer fences its predecessor)."""
        n = 0
        for txn, state in self.txns.items():
            if state == "open":
                self.txns[txn] = "aborted"
                n += 1
        return n


# -- crash plans ------------------------------------------------------------------------

# The steps of one batch, in order. "send": after the k-th send_batch of the transaction;
# "apply": after the k-th RocksDB write of TableWriter.apply (one per table partition).
STEPS = ("processed", "send", "offsets", "commit-before", "commit-after", "apply", "applied")


@dataclasses.dataclass
class Plan:
    """Crash at the k-th `step` of the first batch numbered >= `batch` that has one."""

    step: str
    batch: int = 0
    k: int = 1
    fired_at: int | None = None  # batch number at which it crashed


class Crasher:
    """Counts the steps of the current batch and raises `Crash` where a plan says."""

    def __init__(self, plans: list[Plan]) -> None:
        self.plans = plans
        self.batch = -1  # -1: not in a batch (recovery, setup): never crash
        self.counts: dict[str, int] = {}

    def start(self, batch: int) -> None:
        self.batch = batch
        self.counts = {}

    def hit(self, step: str) -> None:
        if self.batch < 0:
            return
        n = self.counts[step] = self.counts.get(step, 0) + 1
        # plans fire one at a time, in order
        plan = next((p for p in self.plans if p.fired_at is None), None)
        if plan is not None and plan.step == step and self.batch >= plan.batch and n == plan.k:
            plan.fired_at = self.batch
            raise Crash(f"{step}#{n} in batch {self.batch}")


@dataclasses.dataclass(frozen=True)
class Broken:
    """A deliberately broken protocol, to show that a test can fail (none by default).

    `early_state`: RocksDB written while the batch is processed (TableWriter not deferred).
    `offsets`: "txn" in the transaction; "early" committed as soon as they are sent (before
    the outputs commit); "never" not committed (every restart starts over).
    `recover`: False skips the changelog catch-up at start (RocksDB taken as it is)."""

    early_state: bool = False
    offsets: str = "txn"
    recover: bool = True
    read_uncommitted: bool = False  # the recovery also applies aborted changelog records
    # table reads go to RocksDB only, blind to the writes of a transaction still committing
    blind_reads: bool = False


# -- the producer -----------------------------------------------------------------------


class FakeBatch:
    """aiokafka's BatchBuilder as Transactions uses it: append returns None when full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes | None, list[Any]]] = []

    def append(
        self, *, key: bytes | None, value: bytes | None, timestamp: int, headers: list[Any]
    ) -> Any:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, list(headers)))
        return types.SimpleNamespace(offset=len(self.records) - 1)


class EndTxnRequest:
    """What aiokafka's sender hands its client to end a transaction (named as aiokafka's)."""


class FakeClient:
    """aiokafka's client as the sender uses it (`faust_compat.EndTxnWatch` wraps `send`)."""

    async def send(self, node_id: Any, request: Any, **_: Any) -> None:
        return None


class FakeProducer:
    """A transactional producer on `Broker`: records of the open transaction are in the logs
    at once (they take offsets) but visible only once it commits."""

    def __init__(
        self, broker: Broker, crasher: Crasher, broken: Broken, batch_capacity: int = 4
    ) -> None:
        self.broker = broker
        self.crasher = crasher
        self.broken = broken
        self.batch_capacity = batch_capacity
        self.txn: int | None = None
        self._touched: set[tuple[str, int]] = set()
        self._offsets: dict[tuple[str, int], int] = {}
        self.client = FakeClient()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    async def begin_transaction(self) -> None:
        assert self.txn is None, "a transaction is already open"
        self.txn = len(self.broker.txns)
        self.broker.txns[self.txn] = "open"
        self._touched, self._offsets = set(), {}

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, partition: int) -> Any:
        assert self.txn is not None, "send outside a transaction"
        base = None
        for key, value, headers in batch.records:
            off = self.broker.append(topic, partition, key, value, headers, txn=self.txn)
            base = off if base is None else base
        self._touched.add((topic, partition))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(types.SimpleNamespace(offset=base))
        self.crasher.hit("send")
        return fut

    async def send_offsets_to_transaction(self, offsets: dict[Any, int], group_id: str) -> None:
        assert self.txn is not None
        for tp, off in offsets.items():
            self._offsets[(tp.topic, tp.partition)] = off
        if self.broken.offsets == "early":
            self.broker.group.update(self._offsets)
        self.crasher.hit("offsets")

    async def commit_transaction(self) -> None:
        assert self.txn is not None
        self.crasher.hit("commit-before")
        await self.client.send(0, EndTxnRequest())
        self.broker.txns[self.txn] = "committed"
        for topic, partition in sorted(self._touched):
            self.broker.append(topic, partition, None, None, txn=self.txn, control=True)
        if self.broken.offsets == "txn":
            self.broker.group.update(self._offsets)
        self.txn = None
        self.crasher.hit("commit-after")


# -- RocksDB ----------------------------------------------------------------------------


class DB:
    """One partition's Rdict; its `write` (a write batch) is a crash point."""

    def __init__(self, path: Path, crasher: Crasher) -> None:
        self.rdict = Rdict(str(path), Options(raw_mode=True))
        self.crasher = crasher

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.rdict.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self.rdict.put(key, value)

    def delete(self, key: bytes) -> None:
        self.rdict.delete(key)

    def write(self, batch: Any) -> None:
        self.rdict.write(batch)
        self.crasher.hit("apply")

    def keys(self) -> Any:
        return self.rdict.keys()

    def items(self) -> Any:
        return self.rdict.items()

    def close(self) -> None:
        self.rdict.close()


def rocks_store(root: Path, crasher: Crasher) -> Any:
    """A Faust RocksDB store over one directory per partition, without an app."""
    store: Any = object.__new__(RocksStore)
    store.use_rocksdict = True
    store._key_index = {}
    store._dbs = {}

    def open_partition(partition: int) -> DB:
        path = root / f"p{partition}"
        path.mkdir(parents=True, exist_ok=True)
        return DB(path, crasher)

    store._open_for_partition = open_partition
    return store


@dataclasses.dataclass
class FakeTable:
    name: str
    data: Any
    changelog_topic: Any


def changelog_name(table: str) -> str:
    return f"smsmon-{table}-changelog"


# -- the worker -------------------------------------------------------------------------


class _Assignment:
    """aiokafka's subscription assignment, as `faust_compat.fetch_position` reads it."""

    def __init__(self, positions: dict[tuple[str, int], int]) -> None:
        self.positions = positions

    def state_value(self, tp: Any) -> Any:
        pos = self.positions.get((tp.topic, tp.partition))
        return None if pos is None else types.SimpleNamespace(_position=pos)


class Consumer:
    """What the pipeline asks of Faust's consumer (and of aiokafka's, through faust_compat):
    highwaters, the assignment, committed offsets, fetch positions."""

    def __init__(self, broker: Broker, inputs: list[tuple[str, int]]) -> None:
        self.broker = broker
        self.inputs = inputs
        # the fetch positions (Worker.next_batch moves them as it hands records out)
        self.positions: dict[tuple[str, int], int] = {}
        subscription = types.SimpleNamespace(assignment=_Assignment(self.positions))
        self._thread = types.SimpleNamespace(
            _consumer=types.SimpleNamespace(
                _subscription=types.SimpleNamespace(subscription=subscription)
            )
        )

    def highwater(self, tp: Any) -> int:
        return self.broker.end(tp.topic, tp.partition)

    def assignment(self) -> set[Any]:
        return {TP(t, p) for t, p in self.inputs}

    @property
    def _committed_offset(self) -> dict[Any, int]:
        return {TP(t, p): o for (t, p), o in self.broker.group.items()}


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "store": "rocksdb://",
        "partitions": PARTITIONS,
        "msisdn_secret": "crash-test-secret",
        "data_dir": data_dir,
        "instance_id": "w1",
        "processing": "transactions",
        "batched_changelog": True,
    }
    values.update(overrides)
    return Settings(**values)


def input_order(s: Settings) -> list[tuple[str, int]]:
    """The order in which a batch takes input records: consent, re-keyed, events,
    complaints (each partition in offset order)."""
    topics = (s.topic_consent, s.rekey_topic, s.topic_events, s.topic_complaints)
    return [(t, p) for t in topics for p in range(PARTITIONS)]


class Worker:
    """One incarnation of a worker process: stores opened and recovered, a new Pipeline."""

    def __init__(
        self,
        broker: Broker,
        root: Path,
        crasher: Crasher,
        reference: list[tuple[str, bytes, bytes]],
        broken: Broken,
    ) -> None:
        self.broker = broker
        self.crasher = crasher
        self.settings = s = settings_for(root)
        self.stores = {name: rocks_store(root / name, crasher) for name in TABLES}
        self.broken = broken
        self.recovered = self._recover() if broken.recover else 0
        self.order = input_order(s)
        consumer = Consumer(broker, self.order)
        app = types.SimpleNamespace(consumer=consumer, in_recovery=False)
        tables = {
            name: FakeTable(
                name,
                self.stores[name],
                types.SimpleNamespace(get_topic_name=lambda n=name: changelog_name(n)),
            )
            for name in TABLES
        }
        wiring: Any = types.SimpleNamespace(
            app=app,
            consent=tables["consent"],
            subscribers=tables["subscribers"],
            subjects=None,
            progress=None,
        )
        self.pipeline = Pipeline(s, wiring, Metrics(CollectorRegistry()))
        assert self.pipeline.txn is not None
        # the batch transactions (and those `Pipeline.tick` chains after one in flight) run
        # here, where a crash ends only this incarnation, not the test process
        self.pipeline._start_job = self._start_job  # type: ignore[method-assign]
        self.pipeline.loader.ready.set()
        self.producer = FakeProducer(broker, crasher, broken)
        self.pipeline.txn._producer = self.producer
        self.pipeline.txn._watch = faust_compat.EndTxnWatch(self.producer)
        if broken.blind_reads:
            writer = self.pipeline.tables
            writer.read = lambda table, key, reader: (  # type: ignore[method-assign]
                writer.direct_store(table)[0]._db_for_partition(reader.message.partition).get(key)
            )
        if broken.early_state:
            self.pipeline.tables.deferred = False
        ctx = DecodeContext(tz=s.tz)
        for topic, key, value in reference:
            apply_reference(self.pipeline.book, s, topic, key, value, ctx)
        # the consumer's positions: from the committed offsets
        consumer.positions.update({tp: broker.group.get(tp, 0) for tp in self.order})
        # a new process has handed nothing out; next_batch notes hand-outs as _getall does
        faust_compat._FETCHES["last"].clear()
        faust_compat._FETCHES["tracked"] = True
        self.positions = consumer.positions

    def _recover(self) -> int:
        """Faust's table recovery: committed changelog records above the stored offset."""
        n = 0
        for name, store in self.stores.items():
            topic = changelog_name(name)
            events = []
            for p in range(PARTITIONS):
                done = store.persisted_offset(TP(topic, p))
                for rec in self.broker.logs[(topic, p)]:
                    seen = self.broker.visible(rec) or (
                        self.broken.read_uncommitted and not rec.control
                    )
                    if (done is None or rec.offset > done) and seen:
                        message = types.SimpleNamespace(
                            tp=TP(topic, p),
                            partition=p,
                            offset=rec.offset,
                            key=rec.key,
                            value=rec.value,
                        )
                        events.append(types.SimpleNamespace(message=message))
            store.apply_changelog_batch(events, None, None)
            n += len(events)
        return n

    def next_batch(self, size: int) -> tuple[list[Any], dict[Any, int]]:
        """Up to `size` visible records from the consumer's positions, and the positions
        after them (past transaction markers and aborted records), by partition."""
        batch: list[Any] = []
        ends: dict[Any, int] = {}
        for topic, p in self.order:
            log = self.broker.logs[(topic, p)]
            pos = self.broker.next_visible(topic, p, self.positions[(topic, p)])
            took = False
            while pos < len(log) and len(batch) < size:
                rec = log[pos]
                message = types.SimpleNamespace(
                    topic=topic,
                    partition=p,
                    offset=rec.offset,
                    key=rec.key,
                    value=rec.value,
                    headers=list(rec.headers),
                    time_in=None,
                    tp=TP(topic, p),
                )
                batch.append(Delivery(message))
                took = True
                pos = self.broker.next_visible(topic, p, pos + 1)
            self.positions[(topic, p)] = pos
            if took:
                ends[TP(topic, p)] = pos
                # what aiokafka's FetchResult.getall notes (faust_compat._getall)
                faust_compat._FETCHES["last"][TP(topic, p)] = batch[-1].message.offset
        return batch, ends

    async def step(self, batch: list[Any], ends: dict[Any, int]) -> None:
        """One batch, as Pipeline.deliver runs it (without its Faust-only parts)."""
        self.pipeline.process_batch(batch)
        self.crasher.hit("processed")
        await self.pipeline._commit(batch, dict(ends))
        self.crasher.hit("applied")

    async def step_pipelined(self, batch: list[Any], ends: dict[Any, int]) -> None:
        """One batch as `Pipeline._deliver_pipelined` runs it: processed while the previous
        batch's transaction is still to commit, its own transaction started after that one,
        which is awaited before the next batch is fetched."""
        p = self.pipeline
        p.process_batch(batch)
        self.crasher.hit("processed")
        previous = p._in_flight
        p._in_flight = p._start_job(previous, p._seal(batch, dict(ends)), [])
        if previous is not None:
            await previous

    def _start_job(self, previous: Any, sealed: Any, messages: list[Any]) -> Any:
        return asyncio.ensure_future(self._commit_job(previous, sealed))

    async def _commit_job(self, previous: Any, sealed: Any) -> None:
        await self.pipeline._commit_after(previous, sealed, [])
        self.crasher.hit("applied")

    async def tick(self) -> None:
        """`Pipeline.tick`, with a failure raised here rather than exiting the process."""
        with mock.patch.object(pipeline_module, "fail_fast", _reraise):
            await self.pipeline.tick()

    async def die(self) -> None:
        """SIGKILL: a transaction job still in flight runs no further."""
        job = self.pipeline._in_flight
        if job is not None:
            job.cancel()
            with contextlib.suppress(BaseException):
                await job

    def close(self) -> None:
        for store in self.stores.values():
            for db in store._dbs.values():
                db.close()
            store._dbs.clear()
        faust_compat._FETCHES["tracked"] = False
        faust_compat._FETCHES["last"].clear()

    def table(self, name: str) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for p in range(PARTITIONS):
            for k, v in self.stores[name]._db_for_partition(p).items():
                if not k.startswith(b"__faust"):
                    out[k] = v
        return out


# -- a run ------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """What a read_committed reader sees after a run, and the final committed state."""

    alerts: dict[str, list[dict[str, Any]]]  # alert_id -> committed copies
    revocations: list[tuple[str, str, str, str]]  # (msisdn, enterprise, status, ts)
    counts: dict[tuple[str, str, int], int]  # (dim, subject, window) -> events counted
    sets: dict[tuple[str, str, int], frozenset[str]]
    consent: dict[bytes, bytes]  # the consent table after a final recovery
    dead_letters: int
    crashes: list[int]  # batch numbers at which a plan fired
    batches: int
    recovered: int  # changelog records applied by recoveries after crashes
    aborted: int  # transactions aborted by restarts

    def duplicates(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.alerts.items() if len(v) > 1}

    def distinct_alerts(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for alert_id, copies in self.alerts.items():
            assert all(c == copies[0] for c in copies), f"copies of {alert_id} differ"
            out[alert_id] = copies[0]
        return out


@contextlib.contextmanager
def frozen_clock() -> Iterator[None]:
    """The worker's wall clock stands still at NOW (monotonic time still runs)."""
    import time as real_time

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return NOW if tz is not None else NOW.replace(tzinfo=None)

    fake_dt = types.SimpleNamespace(datetime=Frozen, UTC=dt.UTC, timedelta=dt.timedelta)
    fake_time = types.SimpleNamespace(time=lambda: NOW.timestamp(), monotonic=real_time.monotonic)
    with (
        mock.patch.object(pipeline_module, "dt", fake_dt),
        mock.patch.object(pipeline_module, "time", fake_time),
    ):
        yield


def _reraise(what: str) -> None:
    """`fail_fast` in these tests: the failure (a `Crash`) goes on to the run loop."""
    raise  # called in an except block, as fail_fast is


def load_inputs(broker: Broker, inputs: list[tuple[str, int, bytes | None, bytes]]) -> None:
    for topic, partition, key, value in inputs:
        broker.append(topic, partition, key, value)


async def _run(
    root: Path,
    inputs: list[tuple[str, int, bytes | None, bytes]],
    reference: list[tuple[str, bytes, bytes]],
    sizes: list[int],
    plans: list[Plan],
    broken: Broken,
    max_batches: int,
    pipelined: bool,
    ticks: bool = False,
) -> Outcome:
    broker = Broker()
    load_inputs(broker, inputs)
    crasher = Crasher(plans)
    worker = Worker(broker, root, crasher, reference, broken)
    n = 0
    recovered = aborted = 0
    while True:
        batch, ends = worker.next_batch(sizes[n % len(sizes)])
        if not batch and (not pipelined or worker.pipeline._in_flight is None):
            break
        assert n < max_batches, "the run does not end"
        crasher.start(n)
        n += 1
        try:
            if not batch:  # the last transaction in flight
                await worker.pipeline._settle()
                worker.pipeline._in_flight = None
            elif pipelined:
                await worker.step_pipelined(batch, ends)
            else:
                await worker.step(batch, ends)
            if ticks and batch:  # the 1-s timer, here after every batch
                await worker.tick()
        except Crash:
            crasher.start(-1)
            await worker.die()
            worker.close()
            aborted += broker.abort_open()
            worker = Worker(broker, root, crasher, reference, broken)
            recovered += worker.recovered
        crasher.start(-1)
    worker.close()
    final = Worker(broker, root, crasher, reference, Broken())  # recovers everything committed
    consent = final.table("consent")
    final.close()
    return outcome(broker, final.settings, consent, plans, n, recovered, aborted)


def run(
    root: Path,
    inputs: list[tuple[str, int, bytes | None, bytes]],
    reference: list[tuple[str, bytes, bytes]],
    sizes: list[int],
    plans: list[Plan] | None = None,
    broken: Broken = Broken(),
    max_batches: int = 10_000,
    pipelined: bool = False,
    ticks: bool = False,
) -> Outcome:
    """Process `inputs` to the end in batches of `sizes` (cycled), crashing where `plans`
    say, in a fresh broker and fresh RocksDB directories under `root`; `pipelined`: each
    batch processed while the previous one's transaction is still to commit; `ticks`:
    `Pipeline.tick` after each batch (its markers and partials ride in its own transaction,
    or in one chained after the batch's still in flight)."""
    root.mkdir(parents=True, exist_ok=False)
    with frozen_clock():
        return asyncio.run(
            _run(root, inputs, reference, sizes, plans or [], broken, max_batches, pipelined, ticks)
        )


def outcome(
    broker: Broker,
    s: Settings,
    consent: dict[bytes, bytes],
    plans: list[Plan],
    batches: int,
    recovered: int,
    aborted: int,
) -> Outcome:
    alerts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, rec in broker.committed(s.topic_alerts):
        assert rec.value is not None
        body = json.loads(rec.value)
        alerts[body["alert_id"]].append(body)
    revocations = []
    for _, rec in broker.committed(s.topic_consent):
        if rec.txn is None:  # an input (a grant), not one the worker published
            continue
        assert rec.value is not None
        body = json.loads(rec.value)
        revocations.append((body["msisdn"], body["enterprise"], body["status"], body["ts"]))
    counts: dict[tuple[str, str, int], int] = defaultdict(int)
    sets: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for _, rec in broker.committed(s.counts_topic):
        assert rec.value is not None
        partial = Partial.decode(rec.value)
        for key, offsets in partial.counts.items():
            counts[key] += len(offsets)
        for key, values in partial.sets.items():
            sets[key] |= values
    return Outcome(
        alerts=dict(alerts),
        revocations=sorted(revocations),
        counts=dict(counts),
        sets={k: frozenset(v) for k, v in sets.items()},
        consent=consent,
        dead_letters=sum(1 for _ in broker.committed(s.topic_dlq)),
        crashes=[p.fired_at for p in plans if p.fired_at is not None],
        batches=batches,
        recovered=recovered,
        aborted=aborted,
    )


def same(a: Outcome, b: Outcome) -> list[str]:
    """What differs between two outcomes under the invariant (empty: nothing)."""
    diffs = []
    da, db = a.distinct_alerts(), b.distinct_alerts()
    for alert_id in sorted(da.keys() | db.keys()):
        if da.get(alert_id) != db.get(alert_id):
            one, two = da.get(alert_id), db.get(alert_id)
            rule = (one or two or {}).get("rule")
            diffs.append(
                f"alert {alert_id} ({rule}): {'present' if one else 'missing'} vs "
                f"{'present' if two else 'missing'}"
            )
    if sorted(set(a.revocations)) != sorted(set(b.revocations)):
        diffs.append(f"revocations {a.revocations} vs {b.revocations}")
    if a.counts != b.counts:
        keys = sorted(
            k for k in a.counts.keys() | b.counts.keys() if a.counts.get(k) != b.counts.get(k)
        )
        diffs.append(
            "counts " + ", ".join(f"{k}: {a.counts.get(k)} vs {b.counts.get(k)}" for k in keys[:6])
        )
    if a.sets != b.sets:
        diffs.append("sublet evidence sets differ")
    if a.consent != b.consent:
        diffs.append("consent table differs")
    if a.dead_letters != b.dead_letters:
        diffs.append(f"dead letters {a.dead_letters} vs {b.dead_letters}")
    return diffs


# -- inputs -----------------------------------------------------------------------------

# Event time: every event and complaint of a run falls in the minute from BASE, so that no
# window closes and nothing is late whatever the batching (watermarks are in memory).
BASE = dt.datetime(2026, 6, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 Asia/Shanghai
STEP_MS = 40


def subscribers() -> list[str]:
    """Two msisdns per partition."""
    from smsmon.contract.canonical import partition_for

    out: dict[int, list[str]] = defaultdict(list)
    n = 13_900_000_000
    while min((len(out[p]) for p in range(PARTITIONS)), default=0) < 2:
        n += 1
        p = partition_for(str(n), PARTITIONS)
        if len(out[p]) < 2:
            out[p].append(str(n))
    return [m for p in range(PARTITIONS) for m in out[p]]


SUBSCRIBERS = subscribers()


def reference_records(s: Settings) -> tuple[list[tuple[str, bytes, bytes]], list[dict[str, str]]]:
    """The scenario builder's reference data (ports incl. the shared one, signatures) and
    its enterprises."""
    from smsmon.tools.scenario import ENTERPRISES, Builder

    ref = Builder(0).ref
    records = [(s.topic_ports, k.encode(), json.dumps(v).encode()) for k, v in ref.ports if v] + [
        (s.topic_signatures, k.encode(), json.dumps(v).encode()) for k, v in ref.signatures if v
    ]
    b = Builder(0)
    ents = [dict(b.ent[name], name=name) for _, name in ENTERPRISES[:3]]
    return records, ents


class Inputs:
    """Builds the input records of a run: grants, gateway events, complaints."""

    def __init__(self, s: Settings, misplaced: set[int] | frozenset[int] = frozenset()) -> None:
        from smsmon.contract.canonical import partition_for
        from smsmon.tools.scenario import SHARED_PORT

        self.s = s
        self.shared = SHARED_PORT
        self.reference, self.ents = reference_records(s)
        self.records: list[tuple[str, int, bytes | None, bytes]] = []
        self.complaints: list[tuple[str, int, bytes | None, bytes]] = []
        self.home = {m: partition_for(m, PARTITIONS) for m in SUBSCRIBERS}
        # where a subscriber's events and complaints are written (misplaced: re-keyed)
        self.placed = {
            m: (self.home[m] + 1) % PARTITIONS if i in misplaced else self.home[m]
            for i, m in enumerate(SUBSCRIBERS)
        }
        self._n = 0
        self._by_sub: dict[str, list[tuple[str, int, bytes | None, bytes]]] = defaultdict(list)

    def _ts(self) -> str:
        self._n += 1
        ms = min(self._n * STEP_MS, 55_000)
        return (BASE + dt.timedelta(milliseconds=ms)).isoformat()

    def grant(self, sub: int, ent: int) -> None:
        m, e = SUBSCRIBERS[sub], self.ents[ent]
        value = {
            "msisdn": m,
            "enterprise": e["id"],
            "status": "granted",
            "ts": (BASE - dt.timedelta(days=30)).isoformat(),
        }
        self.records.append(
            (self.s.topic_consent, self.home[m], f"{m}|{e['id']}".encode(), _dumps(value))
        )

    def _event(self, sub: int, body: dict[str, Any]) -> None:
        m = SUBSCRIBERS[sub]
        rec = (self.s.topic_events, self.placed[m], m.encode(), _dumps(body))
        self.records.append(rec)
        self._by_sub[m].append(rec)

    def mt(self, sub: int, ent: int, port: str = "mkt", category: str = "marketing") -> str:
        e = self.ents[ent]
        eid = f"ev-{len(self.records):05d}"
        code = {
            "mkt": e["mkt"] + "0123",
            "ntf": e["ntf"],
            "shared": self.shared,
            "unregistered": "10611111",
        }[port]
        text = (
            f"【{e['name']}】双11预售开启,满300减50,回T退订"
            if category == "marketing"
            else f"【{e['name']}】您的订单已发货,请注意查收"
        )
        self._event(
            sub,
            {
                "event_id": eid,
                "ts": self._ts(),
                "kind": "mt",
                "gateway": "gw-1",
                "port": code,
                "msisdn": SUBSCRIBERS[sub],
                "account": "platform-1" if port == "shared" else e["acct"],
                "category": category,
                "text": text,
            },
        )
        return eid

    def td(self, sub: int, ent: int, port: str = "shared") -> None:
        code = self.shared if port == "shared" else self.ents[ent]["mkt"]
        self._event(
            sub,
            {
                "event_id": f"ev-{len(self.records):05d}",
                "ts": self._ts(),
                "kind": "mo",
                "gateway": "gw-mo",
                "port": code,
                "msisdn": SUBSCRIBERS[sub],
                "text": "TD",
            },
        )

    def dlr(self, sub: int, ent: int) -> None:
        self._event(
            sub,
            {
                "event_id": f"ev-{len(self.records):05d}",
                "ts": self._ts(),
                "kind": "dlr",
                "gateway": "gw-1",
                "port": self.ents[ent]["mkt"],
                "msisdn": SUBSCRIBERS[sub],
                "status": "DELIVRD",
            },
        )

    def flood(self, sub: int, ent: int, n: int = 16) -> None:
        for _ in range(n):
            self.mt(sub, ent)

    def repeat(self, sub: int, back: int) -> None:
        """The same record again (same id, same bytes), `back` records of the subscriber
        after it."""
        mine = self._by_sub[SUBSCRIBERS[sub]]
        if len(mine) >= back:
            rec = mine[-back]
            self.records.append(rec)
            mine.append(rec)

    def complaint(self, sub: int, ent: int, named: str, twice: bool = False) -> None:
        m, e = SUBSCRIBERS[sub], self.ents[ent]
        body: dict[str, Any] = {
            "complaint_id": f"c-{len(self.complaints):04d}",
            "ts": (BASE + dt.timedelta(seconds=58)).isoformat(),
            "msisdn": m,
        }
        if named == "port":
            body["port"] = e["mkt"]
        elif named == "signature":
            body["signature"] = e["name"]
        rec = (self.s.topic_complaints, self.placed[m], m.encode(), _dumps(body))
        self.complaints += [rec, rec] if twice else [rec]

    def all(self) -> list[tuple[str, int, bytes | None, bytes]]:
        return self.records + self.complaints


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()
