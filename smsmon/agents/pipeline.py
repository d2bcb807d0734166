"""The Faust agents: thin loops that decode, call the pure engine, write state and publish.

`check_events` consumes the co-partitioned union of gateway events, consent records and the
re-keying topic in batches. Each record is handled in partition order against a per-batch
overlay of the tables, so a state change (an unsubscribe) applies to every later record of
the batch; table writes are coalesced to one per key per batch and routed to the partition of
the record that made them. `validate_reference` dead-letters invalid port and signature
records once for the whole group; every worker's ReferenceLoader applies the valid ones.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from smsmon.agents.aggregation import Aggregation
from smsmon.agents.emit import fail_fast, publish_alerts, send_failed
from smsmon.config.settings import Settings
from smsmon.contract.canonical import MsisdnHasher, partition_for
from smsmon.contract.codec import (
    DecodeContext,
    DecodeError,
    consent_key,
    dead_letter,
    decode_event,
    decode_model,
    key_msisdn,
    route_event,
)
from smsmon.contract.models import Alert, Complaint, ConsentRecord, MtEvent
from smsmon.contract.times import to_ms
from smsmon.rules.consent import ConsentState, RecentSenders
from smsmon.rules.content.checks import content_checker
from smsmon.rules.engine import BatchOverlay, Engine, EngineConfig, seen_in
from smsmon.rules.reference import ReferenceBook, apply_reference
from smsmon.rules.traffic import FloodState, Stage1, TrafficConfig
from smsmon.streams import faust_compat
from smsmon.streams.app import CHECK_AGENT, ORIGIN_HEADER, VALIDATE_AGENT, Wiring, bind_event
from smsmon.streams.loader import ReferenceLoader
from smsmon.streams.metrics import Metrics
from smsmon.streams.output import BatchOutput, Pending
from smsmon.streams.tables import Sealed, TableWriter
from smsmon.streams.transactions import Transactions

log = logging.getLogger(__name__)

ORIGIN_EVENTS = b"events"
ORIGIN_CONSENT = b"consent"
ORIGIN_COMPLAINTS = b"complaints"
# A watermark marker on the re-keying topic: no key, empty value, and the header
# WATERMARK_HEADER = b"<origin events partition>:<event time ms>".
ORIGIN_WATERMARK = b"watermark"
WATERMARK_HEADER = "smsmon-wm"
# An idle marker, WATERMARK_HEADER = b"<origin>:<event time ms or empty>:idle": the origin
# events partition had nothing pending and read nothing for `idle_ms` (docs/traffic.md).
WATERMARK_IDLE = "idle"
# On a forwarded gateway event: the events partition it was read from (b"<Q>"), so that the
# first record of an origin that had gone idle rejoins its marker source m<Q>.<P>.
FROM_HEADER = "smsmon-from"
# ... and its offset there (b"<offset>"): a forwarded record found invalid at its home is
# dead-lettered under the topic, partition and offset it was produced to.
FROM_OFFSET_HEADER = "smsmon-from-offset"


class SubscriberOverlay:
    """One batch's view of the `subscribers` table: each msisdn's recent senders, flood
    state and recent-id window, decoded at most once per batch and written once per batch.

    All three live in one value (RecentSenders JSON, a newline, FloodState JSON, a newline,
    the recent-id window; JSON text has no raw newline, the window is hex digits and
    commas; a value written before the window existed has two parts): an mt reads and
    writes them all, so one table instead of three cuts the RocksDB reads, writes and
    changelog records per message. A part nobody touched in the batch is written back as
    it was read, without decoding it.
    """

    def __init__(self, load: Callable[[bytes], bytes | None]) -> None:
        self._load = load
        # key -> [RecentSenders | None, FloodState | None, raw recent, raw flood, window]
        self._entries: dict[bytes, list[Any]] = {}
        self._dirty: dict[bytes, Any] = {}

    def _entry(self, key: bytes) -> list[Any]:
        entry = self._entries.get(key)
        if entry is None:
            recent, _, rest = (self._load(key) or b"").partition(b"\n")
            flood, _, window = rest.partition(b"\n")
            entry = self._entries[key] = [None, None, recent, flood, window]
        return entry

    def recent(self, key: bytes) -> RecentSenders:
        entry = self._entry(key)
        if entry[0] is None:
            entry[0] = RecentSenders.decode(entry[2])
        senders: RecentSenders = entry[0]
        return senders

    def flood(self, key: bytes) -> FloodState:
        entry = self._entry(key)
        if entry[1] is None:
            entry[1] = FloodState.decode(entry[3])
        flood: FloodState = entry[1]
        return flood

    def seen(self, key: bytes, event_id: str, capacity: int, writer: Any) -> bool:
        """True if `event_id` is in the subscriber's recent-id window; else adds it."""
        entry = self._entry(key)
        repeated, entry[4] = seen_in(entry[4], event_id, capacity)
        if not repeated and capacity > 0:
            self._dirty[key] = writer
        return repeated

    def set_recent(self, key: bytes, senders: RecentSenders, writer: Any) -> None:
        self._entry(key)[0] = senders
        self._dirty[key] = writer

    def set_flood(self, key: bytes, flood: FloodState, writer: Any) -> None:
        self._entry(key)[1] = flood
        self._dirty[key] = writer

    def drain(self) -> Iterator[tuple[bytes, bytes, Any]]:
        """(key, value, last writer) of each msisdn changed in the batch; then forget all."""
        for key, writer in self._dirty.items():
            recent, flood, raw_recent, raw_flood, window = self._entries[key]
            yield (
                key,
                (recent.encode() if recent is not None else raw_recent)
                + b"\n"
                + (flood.encode() if flood is not None else raw_flood)
                + b"\n"
                + window,
                writer,
            )
        self._dirty.clear()
        self._entries.clear()


class TableState:
    """`State` over the Faust tables through per-batch overlays."""

    def __init__(self, tables: TableWriter, consent: Any, subscribers: Any) -> None:
        # the Faust event of the record being handled: tables are read in its partition
        self.writer: Any = None
        self.consent_overlay: BatchOverlay[bytes, bytes, Any] = BatchOverlay(
            lambda key: tables.read(consent, key, self.writer)
        )
        self.subscribers = SubscriberOverlay(lambda key: tables.read(subscribers, key, self.writer))

    def consent(self, msisdn: str, enterprise: str) -> ConsentState | None:
        raw = self.consent_overlay.get(f"{msisdn}|{enterprise}".encode())
        return ConsentState.decode(raw) if raw else None

    def set_consent(self, msisdn: str, enterprise: str, state: ConsentState | None) -> None:
        key = f"{msisdn}|{enterprise}".encode()
        self.consent_overlay.set(key, state.encode() if state else None, self.writer)

    def recent(self, msisdn: str) -> RecentSenders:
        return self.subscribers.recent(msisdn.encode())

    def set_recent(self, msisdn: str, senders: RecentSenders) -> None:
        self.subscribers.set_recent(msisdn.encode(), senders, self.writer)


def _header(message: Any, name: str) -> bytes | None:
    headers = message.headers or ()
    items: Iterable[tuple[str, bytes]] = headers.items() if isinstance(headers, dict) else headers
    for k, v in items:
        if k == name:
            return v if isinstance(v, bytes) else str(v).encode()
    return None


class Delivery:
    """A record delivered by the consumer loop's batch path: what `process_batch` reads of a
    Faust `Event` (its message; weak-referenceable, for `bind_event`)."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message


@dataclass(slots=True)
class _Batch:
    """What the steps of one `process_batch` share."""

    ctx: DecodeContext
    now: dt.datetime
    t_batch: float
    wall_ms: int
    kinds: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    alerts: list[tuple[Alert, float]] = field(default_factory=list)
    # (topic, partition) -> [first offset, last offset, count] of records skipped as repeats
    repeats: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def repeat(self, m: Any) -> None:
        r = self.repeats.get((m.topic, m.partition))
        if r is None:
            self.repeats[(m.topic, m.partition)] = [m.offset, m.offset, 1]
        else:
            r[0], r[1], r[2] = min(r[0], m.offset), max(r[1], m.offset), r[2] + 1


class Pipeline:
    """Owns the engine, the reference book and the agents of one worker."""

    def __init__(self, settings: Settings, wiring: Wiring, metrics: Metrics) -> None:
        self.settings = settings
        self.w = wiring
        self.metrics = metrics
        self.book = ReferenceBook()
        self.loader = ReferenceLoader(settings, self.book, on_change=self._book_changed)
        self.engine = Engine(
            self.book,
            EngineConfig(
                hasher=MsisdnHasher(settings.require_secret(), settings.msisdn_key_id),
                recent_capacity=settings.recent_ports_per_msisdn,
                recent_horizon_ms=int(settings.recent_horizon_days * 86_400_000),
                content=content_checker(settings),
                dedup_ids=settings.dedup_per_subscriber,
            ),
        )
        self.book.exemptions.hasher = self.engine.config.hasher
        self.txn = transactions(settings, wiring, metrics)
        self.out = BatchOutput(wiring.app, on_error=send_failed, txn=self.txn)
        self.tables = TableWriter(self.out, settings.batched_changelog, self.txn is not None)
        self._direct_known: bool | None = None  # see _direct_tables
        self._rekeyed: collections.Counter[str] = collections.Counter()  # label -> forwarded
        self._sources: dict[tuple[bool, int], str] = {}  # see _source_name
        self._rekey_topic = settings.rekey_topic  # a property: an f-string per call
        self.state = TableState(self.tables, wiring.consent, wiring.subscribers)
        self.traffic_config = TrafficConfig()
        self.stage1 = Stage1(
            self.traffic_config,
            settings.partitions,
            self.engine.config.hasher,
            self._port_of,
            self._caught_up,
            self._expected_sources,
        )
        # per events partition: the greatest event time read; and the last marker sent
        self._origin_ts: dict[int, int] = {}
        self._marker_sent: dict[int, tuple[int, int]] = {}
        # per events partition: wall ms of the last record read; of the last idle marker
        self._origin_read_wall: dict[int, int] = {}
        self._idle_sent: dict[int, int] = {}
        self._out_lock = asyncio.Lock()
        # where the batch loop waited (smsmon_batch_wait_seconds_total)
        self._wait_lock = metrics.batch_wait.labels("lock")
        self._wait_txn = metrics.batch_wait.labels("transaction")
        self._ctx: DecodeContext | None = None
        # Exact count of consent pairs in the active partitions: recounted in full when the
        # assignment changes or a recovery ends, kept by per-batch deltas in between.
        self.consent_count = 0
        self._consent_delta = 0
        self._positions: dict[tuple[str, int], int] = {}
        # the batch transaction in flight (`_deliver_pipelined`)
        self._in_flight: asyncio.Future[None] | None = None
        # input positions at the last tick, for the trailing-marker commits (`tick`)
        self._tail_seen: dict[tuple[str, int], int] = {}
        self._counted_for: tuple[frozenset[Any], bool] | None = None
        self._source = {
            settings.topic_events: "events",
            settings.topic_consent: "consent",
            settings.topic_ports: "ports",
            settings.topic_signatures: "signatures",
            settings.rekey_topic: "rekey",
            settings.topic_complaints: "complaints",
            settings.topic_exemptions: "exemptions",
        }
        self.aggregation = Aggregation(
            settings, wiring, metrics, self.book, self.traffic_config, self.txn, self.loader.ready
        )

    def _expected_sources(self, logical: int) -> list[str]:
        """What drives a logical partition's watermark: its own events partition, and the
        markers of every other events partition (whose re-keyed records it receives)."""
        n = self.settings.partitions
        return [f"e{logical}"] + [f"m{q}.{logical}" for q in range(n) if q != logical]

    def _caught_up(self, source: Any) -> bool:
        """True if the source topic-partition has no records left to read (consumer lag 0).

        Sources: e<P> events partition P, r<P> re-keying partition P, c<P> complaints
        partition P, m<Q>.<P> markers of events partition Q read from re-keying partition P.
        """
        src = str(source)
        if src[:1] == "m":
            # A marker source is read from a re-keying partition whose lag says nothing of
            # its origin's backlog (its forwarded records may be in flight, uncommitted, or
            # not read yet by a slow or restarting owner): only the origin's idle marker
            # says it stopped (Stage1.on_marker).
            return False
        topic = {
            "e": self.settings.topic_events,
            "r": self.settings.rekey_topic,
            "m": self.settings.rekey_topic,
            "c": self.settings.topic_complaints,
        }.get(src[:1])
        if topic is None:
            return True
        from faust.types import TP

        return self._read_to_end(TP(topic, int(src[1:].rpartition(".")[2])))

    def _port_of(self, port: str) -> str:
        rec = self.book.port_for(port)
        return rec.port if rec is not None else port

    def register(self) -> None:
        """Attach agents, the reference loader and gauges to the app."""
        app = self.w.app
        app.agent(self.w.inputs, name=CHECK_AGENT)(self.check_events)
        app.agent(self.w.reference, name=VALIDATE_AGENT)(self.validate_reference)
        self.aggregation.register()
        app.task(self.loader.run)
        app.timer(2.0)(self.refresh_gauges)
        app.timer(1.0)(self.tick)
        # Read at scrape time (in the HTTP server's thread), not by the timer: while tables
        # restore, the timer did not get to run and the gauge stayed 0 for the whole restore.
        self.metrics.recovering.set_function(self._recovering)
        app.on_rebalance_complete.connect(self._on_rebalance)
        faust_compat.set_standby_counter(self.metrics.standby_direct_writes.inc)
        refetched = self.metrics.refetched
        faust_compat.set_skip_counter(lambda reason, n: refetched.labels(reason).inc(n))
        gaps = self.metrics.skipped.labels("offset_gap")
        faust_compat.set_gap_counter(gaps.inc)
        s = self.settings
        inputs = frozenset({s.topic_events, s.topic_consent, s.topic_complaints, s.rekey_topic})
        faust_compat.set_batch_sink(inputs, self.deliver, s.batch_max)
        if self.txn is not None:
            faust_compat.use_transactions(inputs | {s.counts_topic})
            app.task(self._start_transactions)
        else:
            faust_compat.track_handouts()
        from smsmon import __version__
        from smsmon.contract.models import SCHEMA_VERSION

        self.metrics.build_info.labels(__version__, str(SCHEMA_VERSION)).set(1)
        # Create every rule's series at 0 so that rate()/increase() see the first alert.
        from smsmon.rules import catalog, traffic

        for rule in (*catalog.PER_MESSAGE_RULES, *traffic.AGGREGATE_RULES):
            self.metrics.alerts.labels(rule.id, rule.severity.value)
            self.metrics.alerts_suppressed.labels(rule.id, rule.severity.value)

    async def _start_transactions(self) -> None:
        # At the app's start, not at the first batch: the restarted producer aborts the
        # transaction its previous incarnation left open, which holds recovery back.
        assert self.txn is not None
        await self.txn.started()

    async def _on_rebalance(self, sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        self.metrics.rebalances.inc()

    def context(self) -> DecodeContext:
        """One decode context for the worker's life (it reads the clock once a second)."""
        ctx = self._ctx
        if ctx is None:
            s = self.settings
            ctx = self._ctx = DecodeContext(
                tz=s.tz,
                max_event_bytes=s.max_event_bytes,
                max_text_chars=s.max_text_chars,
                max_future_skew_seconds=s.max_future_skew_seconds,
            )
        return ctx

    # -- agents ---------------------------------------------------------------------------

    async def check_events(self, stream: Any) -> AsyncIterator[None]:
        await self.loader.ready.wait()
        self.metrics.ready.set(1)
        async for batch in stream.take_events(
            self.settings.batch_max, self.settings.batch_within_seconds
        ):
            try:
                async with self._out_lock:
                    self.process_batch(batch)
                    # Submit (or commit) the batch's output before its input is acked.
                    await self._commit(batch)
            except Exception:
                fail_fast("check_events batch")
            yield None

    async def deliver(self, messages: list[Any], ends: dict[Any, int | None] | None = None) -> bool:
        """The records of `check_events`' topics, a batch straight from the consumer loop.

        With the consumer loop's fast paths on (`SMSMON_FAST_DRAIN`, streams/faust_compat.py)
        the records skip Faust's conductor, `Event`s, the agent's stream buffer and its
        per-event acks; the agent above then receives nothing. The guarantees are the same:
        the records are tracked as unacknowledged (a rebalance waits for them), processed in
        order, their output is submitted, and only then are they acknowledged, so their
        offsets are committed after Faust's flush of that output."""
        consumer: Any = self.w.app.consumer
        if not self.loader.ready.is_set():
            ready = asyncio.ensure_future(self.loader.ready.wait())
            rebalance = asyncio.ensure_future(consumer.suspend_flow.wait())
            await asyncio.wait({ready, rebalance}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            rebalance.cancel()
            if not self.loader.ready.is_set() or consumer.suspend_flow.is_set():
                return False
        faust_compat.mark_unacked(consumer, messages)
        if self.txn is not None:
            return await self._deliver_pipelined(messages, ends)
        try:
            async with self._out_lock:
                batch = [Delivery(m) for m in messages]
                self.process_batch(batch)
                await self._commit(batch, ends)
        except Exception:
            fail_fast("check_events batch")
        ack = consumer.ack
        for m in messages:
            ack(m)
        return True

    async def _deliver_pipelined(
        self, messages: list[Any], ends: dict[Any, int | None] | None
    ) -> bool:
        """The transactional protocol with the next batch processed while this one's
        transaction commits (docs/reliability.md, "Commits in flight").

        The batch is processed, then its output, changelog records and table writes are set
        aside (`BatchOutput.take`, `TableWriter.seal`: reads see the writes until RocksDB
        has them) and its transaction is started after the previous batch's, which is
        awaited before this returns: at most one transaction is in flight while the
        consumer loop fetches and processes the next batch. Its records stay unacknowledged
        until it committed. Any failure stops the process (`fail_fast`)."""
        try:
            asked = time.monotonic()
            async with self._out_lock:
                got = time.monotonic()
                self._wait_lock.inc(got - asked)
                batch = [Delivery(m) for m in messages]
                self.process_batch(batch)
                previous = self._in_flight
                self._in_flight = self._start_job(previous, self._seal(batch, ends), messages)
            if previous is not None:
                asked = time.monotonic()
                await previous
                self._wait_txn.inc(time.monotonic() - asked)
        except Exception:
            fail_fast("check_events batch")
        return True

    def _seal(self, batch: list[Any], ends: dict[Any, int | None] | None) -> _SealedBatch:
        """A processed batch's transaction contents, taken out of the shared queues."""
        offsets = self._offsets(batch, ends)
        delta, self._consent_delta = self._consent_delta, 0
        return _SealedBatch(self.out.take(), self.tables.seal(), offsets, delta)

    def _start_job(
        self, previous: asyncio.Future[None] | None, sealed: _SealedBatch, messages: list[Any]
    ) -> asyncio.Future[None]:
        """The transaction of `sealed`, started after `previous`; its failure stops the
        process."""
        job = asyncio.ensure_future(self._commit_after(previous, sealed, messages))
        job.add_done_callback(_stop_on_failure)
        return job

    async def _commit_after(
        self, previous: asyncio.Future[None] | None, sealed: _SealedBatch, messages: list[Any]
    ) -> None:
        if previous is not None:
            await previous
        last = await self.out.commit(sealed.offsets, sealed.output)
        self.tables.apply(last, sealed.tables)
        self.consent_count += sealed.consent_delta
        if messages:
            ack = self.w.app.consumer.ack
            for m in messages:
                ack(m)

    async def _settle(self) -> None:
        """Wait for the batch transaction in flight, if any (before any other commit of
        this pipeline's queue, which must come after it)."""
        job = self._in_flight
        if job is not None:
            await job

    def _offsets(
        self, batch: list[Any], ends: dict[Any, int | None] | None
    ) -> dict[tuple[str, int], int]:
        offsets = input_offsets(batch)
        for tp, end in (ends or {}).items():
            key = (tp.topic, tp.partition)
            if end is not None and key in offsets and end > offsets[key]:
                offsets[key] = self._positions[key] = end
        return offsets

    async def _commit(self, batch: list[Any], ends: dict[Any, int | None] | None = None) -> None:
        """The batch's output, changelog and input offsets: one transaction, then its table
        writes go to RocksDB (the transactional protocol); or a flush (at least once).

        `ends`: the consumer's fetch positions after the last batch of a fetch. A position
        past the batch's last record skips only transaction markers (which are never
        delivered); committing it lets the committed offset reach the end of a partition
        written by transactions (the re-keying topic), so lag reads 0 there."""
        if self.txn is None:
            await self.out.flush()
            return
        await self._settle()
        offsets = self._offsets(batch, ends)
        last = await self.out.commit(offsets)
        self.tables.apply(last)
        self.consent_count += self._consent_delta
        self._consent_delta = 0

    async def tick(self) -> None:
        """Every second: watermark markers that were due but had no batch to go with, and
        watermark-only partials for partitions whose watermark moved without records, so
        that the last windows before a quiet spell close (docs/traffic.md, "Watermarks").

        Under the same lock as a batch's output, so a marker is never sent before the
        re-keyed records of the batch it covers.

        First, under the transactional protocol: input partitions that stayed quiet since the
        last tick with only transaction markers left get their offsets committed past them
        (`Transactions.commit_tail`), so the committed offsets reach the end when traffic
        stops.

        While a batch's transaction is in flight (`_deliver_pipelined`), the tick neither
        waits for it nor commits the tails: what it queues is committed in a transaction
        chained after that one (`_commit_after`), and the lock is released at once. Waiting
        for it under the lock, as the tick used to, held the next batch back once a second
        for a whole transaction: 12 % of the worker's wall time at full rate
        (docs/performance.md)."""
        if not self.loader.ready.is_set():
            return
        try:
            async with self._out_lock:
                job = self._in_flight
                if job is not None and not job.done():
                    self._queue_tick_output(int(time.time() * 1000))
                    if len(self.out):
                        self._in_flight = self._start_job(job, self._seal([], None), [])
                    return
                await self._settle()
                if self.txn is not None:
                    consumer = self.w.app.consumer
                    seen = self._tail_seen
                    tail = await self.txn.commit_tail(
                        lambda done: faust_compat.markers_only_tail(consumer, done, seen)
                    )
                    for key, end in tail.items():
                        if key in self._positions:
                            self._positions[key] = max(self._positions[key], end)
                self._queue_tick_output(int(time.time() * 1000))
                await self.out.flush()
        except Exception:
            fail_fast("watermark tick")

    def _queue_tick_output(self, wall_ms: int) -> None:
        """The tick's markers and watermark-only partials, queued with the batches' output."""
        self._send_markers(wall_ms)
        for q, partial in self.stage1.heartbeat(wall_ms):
            self.out.add(self.settings.counts_topic, None, partial.encode(), partition=q)

    async def validate_reference(self, stream: Any) -> AsyncIterator[None]:
        scratch = ReferenceBook()
        async for event in stream.events():
            m = event.message
            # under the batches' lock: a dead letter queued here must not ride along in (or
            # be dropped with) a batch's transaction
            async with self._out_lock:
                try:
                    apply_reference(scratch, self.settings, m.topic, m.key, m.value, self.context())
                except DecodeError as exc:
                    self._dead_letter(m, exc.reason, exc.error)
                if len(self.out):
                    await self._settle()
                await self.out.flush()
            yield None

    # -- batch processing -----------------------------------------------------------------

    def process_batch(self, batch: list[Any]) -> None:
        """Handle one batch in partition order, then write tables once per key and publish.

        The steps: each record is routed by its topic (or, on the re-keying topic, by its
        origin header) to one handler; a handler forwards a record that sits in the wrong
        partition, skips a repeated id, or runs the rules against the batch's overlay of the
        tables; a record that cannot be decoded or that raises goes to the dead letters.
        Then `_finish_batch` writes the tables, sends the watermark markers and stage-1
        partials, counts, and queues the alerts."""
        b = _Batch(
            self.context(), dt.datetime.now(dt.UTC), time.monotonic(), int(time.time() * 1000)
        )
        late_before = self.stage1.late
        self.metrics.batch_size.observe(len(batch))
        positions = self._positions
        handlers = self._handlers
        state = self.state
        bind = not self._direct_tables
        rekey_topic = self._rekey_topic
        for event in batch:
            m = event.message
            positions[(m.topic, m.partition)] = m.offset + 1
            rekeyed = m.topic == rekey_topic
            origin = _header(m, ORIGIN_HEADER) if rekeyed else None
            if bind:
                bind_event(event)
            state.writer = event
            try:
                handler = handlers.get((origin or b"") if rekeyed else m.topic)
                if handler is None:
                    raise DecodeError("schema:origin", "re-keyed record without a known origin")
                handler(b, event, m, rekeyed)
            except DecodeError as exc:
                self._dead_letter(m, exc.reason, exc.error)
            except Exception as exc:  # a poison record must never stop the worker
                self.metrics.processing_errors.labels("rules").inc()
                log.error(
                    "record %s[%d]@%d raised %s; sent to dead letters",
                    m.topic,
                    m.partition,
                    m.offset,
                    type(exc).__name__,
                )
                self._dead_letter(m, "processing", type(exc).__name__)
        self._finish_batch(b, late_before)

    @property
    def _direct_tables(self) -> bool:
        """Both tables of stage 1 bypass Faust's per-key path (`TableWriter.direct_store`):
        then nothing of a batch reads Faust's current event, and binding each record's
        (`bind_event`, 2-3 % of the worker's CPU) is left out; the per-key path binds the
        record it reads or writes for itself."""
        known = self._direct_known
        if known is None:
            tables = self.tables
            known = all(
                tables.direct_store(t) is not None for t in (self.w.consent, self.w.subscribers)
            )
            self._direct_known = known
        return known

    @functools.cached_property
    def _handlers(self) -> dict[str | bytes, Callable[[_Batch, Any, Any, bool], None]]:
        """Record handler by topic, and by origin header for the re-keying topic."""
        s = self.settings
        return {
            s.topic_events: self._on_gateway_event,
            ORIGIN_EVENTS: self._on_gateway_event,
            s.topic_complaints: self._on_complaint,
            ORIGIN_COMPLAINTS: self._on_complaint,
            s.topic_consent: self._on_consent,
            ORIGIN_CONSENT: self._on_consent,
            ORIGIN_WATERMARK: self._on_marker,
        }

    def _on_gateway_event(self, b: _Batch, event: Any, m: Any, rekeyed: bool) -> None:
        """A gateway event: forward it if misplaced, skip a repeated id, else run the rules
        and stage 1.

        A misplaced record is forwarded as it came, after reading only its msisdn (from the
        key when it has one) and its event time (`route_event`); it is decoded fully once,
        at its home partition, and dead-lettered there if invalid, under its origin's
        topic, partition and offset (`_dead_letter`)."""
        key_ms = key_msisdn(m.key) if m.key is not None else None
        n_parts = self.settings.partitions
        # keyed by its msisdn and in that msisdn's partition: the contract's producers
        in_place = (
            not rekeyed and key_ms is not None and partition_for(key_ms, n_parts) == m.partition
        )
        if not rekeyed and not in_place:
            routed = self._misplaced(m, key_ms, b.ctx)
            if routed is not None:
                target, ts_ms = routed
                self._origin_read(m.partition, ts_ms, b.wall_ms)
                self._forward(m, target, ORIGIN_EVENTS, "events")
                self.stage1.on_progress(f"e{m.partition}", m.partition, ts_ms, b.wall_ms)
                return
        ev = decode_event(m.value, m.key, b.ctx, key_ms)
        if not rekeyed:
            ts_ms = to_ms(ev.ts)
            self._origin_read(m.partition, ts_ms, b.wall_ms)
            # in place: the decode checked that the value names the key's msisdn
            target = m.partition if in_place else partition_for(ev.msisdn, n_parts)
            if target != m.partition:
                self._forward(m, target, ORIGIN_EVENTS, "events")
                self.stage1.on_progress(f"e{m.partition}", m.partition, ts_ms, b.wall_ms)
                return
        mkey = ev.msisdn.encode()
        if self.state.subscribers.seen(mkey, ev.event_id, self.engine.config.dedup_ids, event):
            self.metrics.duplicates.inc()
            b.repeat(m)
            return
        out = self.engine.on_event(ev, self.state, b.now)
        # not getattr(ev, "category", None): a missing attribute goes through pydantic's
        # __getattr__ and an AttributeError
        b.kinds[(ev.kind, ev.category if ev.kind == "mt" else "none")] += 1
        t_in = m.time_in if m.time_in is not None else b.t_batch
        if out.alerts:
            b.alerts.extend((a, t_in) for a in out.alerts)
        source = self._source_name(rekeyed, m.partition)
        if isinstance(ev, MtEvent) and out.verdict is not None:
            subscribers = self.state.subscribers
            flood = subscribers.flood(mkey)
            found = self.stage1.on_mt(
                source,
                m.partition,
                m.offset,
                ev,
                out.verdict,
                flood,
                b.wall_ms,
                b.now,
                drives=not rekeyed,
                origin=self._origin_of(m) if rekeyed else None,
            )
            subscribers.set_flood(mkey, flood, event)
            if found:
                b.alerts.extend((a, t_in) for a in found)
        else:
            self.stage1.on_other(
                source, m.partition, m.offset, to_ms(ev.ts), b.wall_ms, drives=not rekeyed
            )
        if out.unsubscribe is not None:
            self.metrics.unsubscribes.labels(str(out.unsubscribe).lower()).inc()
            if out.unattributed is not None:
                self.metrics.unsubscribes_unattributed.labels(out.unattributed).inc()
        for rec in out.revocations:
            self._publish_consent(rec)

    def _source_name(self, rekeyed: bool, partition: int) -> str:
        """Stage 1's source name of a partition: e<P> (events), r<P> (re-keying topic)."""
        name = self._sources.get((rekeyed, partition))
        if name is None:
            name = self._sources[(rekeyed, partition)] = f"{'r' if rekeyed else 'e'}{partition}"
        return name

    def _misplaced(self, m: Any, msisdn: str | None, ctx: DecodeContext) -> tuple[int, int] | None:
        """(home partition, event time ms) of a gateway event read on another partition,
        told without decoding it fully; None: in place, or not told cheaply (decode it).
        `msisdn` is the record's key's (`key_msisdn`). The caller asks only for a record not
        known to be in place: keyless, keyed by something that is no msisdn (the decode
        dead-letters it), or keyed by the msisdn of another partition."""
        n = self.settings.partitions
        if m.key is not None and msisdn is None:
            return None
        routed = route_event(m.value, msisdn, ctx)
        if routed is None:
            return None
        target = partition_for(routed[0], n)
        return None if target == m.partition else (target, routed[1])

    def _origin_read(self, partition: int, ts_ms: int, wall_ms: int) -> None:
        """Events partition `partition` read a record of event time `ts_ms` (markers)."""
        if ts_ms > self._origin_ts.get(partition, -1):
            self._origin_ts[partition] = ts_ms
        self._origin_read_wall[partition] = wall_ms

    def _on_complaint(self, b: _Batch, event: Any, m: Any, rekeyed: bool) -> None:
        """A 12321 complaint: forward it if misplaced, skip a repeated id, else attribute it
        to the subscriber's recent marketing senders (stage 1)."""
        complaint = decode_model(Complaint, m.value, b.ctx)
        target = partition_for(complaint.msisdn, self.settings.partitions)
        if not rekeyed and target != m.partition:
            self._forward(m, target, ORIGIN_COMPLAINTS, "complaints")
            return
        if self.state.subscribers.seen(
            complaint.msisdn.encode(),
            "c:" + complaint.complaint_id,
            self.engine.config.dedup_ids,
            event,
        ):
            self.metrics.duplicates.inc()
            b.repeat(m)
            return
        source = f"{'r' if rekeyed else 'c'}{m.partition}"
        recent = self.state.recent(complaint.msisdn).marketing()
        targets = self.stage1.on_complaint(
            source, m.partition, m.offset, complaint, recent, b.wall_ms
        )
        self.metrics.complaints.labels("true" if targets else "false").inc()

    def _on_consent(self, b: _Batch, event: Any, m: Any, rekeyed: bool) -> None:
        """A consent record (or its tombstone): forward it if misplaced, else merge it."""
        msisdn, ent = consent_key(m.key)
        target = partition_for(msisdn, self.settings.partitions)
        if not rekeyed and target != m.partition:
            self._forward(m, target, ORIGIN_CONSENT, "consent")
            return
        record = None
        if m.value is not None:
            record = decode_model(ConsentRecord, m.value, b.ctx)
            if (record.msisdn, record.enterprise) != (msisdn, ent):
                raise DecodeError("schema:key", "key and value name different pairs")
        result = self.engine.on_consent(msisdn, ent, record, self.state)
        self.metrics.consent_updates.labels("deleted" if record is None else result).inc()

    def _origin_of(self, m: Any) -> str | None:
        """The marker source (m<Q>.<P>) of a forwarded gateway event, from its header."""
        raw = _header(m, FROM_HEADER)
        return f"m{int(raw)}.{m.partition}" if raw else None

    def _on_marker(self, b: _Batch, event: Any, m: Any, rekeyed: bool) -> None:
        """A watermark marker an events partition sent after its forwards (docs/traffic.md):
        b"<Q>:<ts>", or b"<Q>:<ts or empty>:idle" when Q is caught up and quiet."""
        from_p, mark_ts, *flags = (_header(m, WATERMARK_HEADER) or b"").decode().split(":")
        self.stage1.on_marker(
            f"r{m.partition}",
            f"m{int(from_p)}.{m.partition}",
            m.partition,
            m.offset,
            int(mark_ts) if mark_ts else None,
            b.wall_ms,
            idle=WATERMARK_IDLE in flags,
        )

    def _finish_batch(self, b: _Batch, late_before: int) -> None:
        """Write the batch's tables, send markers and stage-1 partials, count, publish."""
        for (topic, partition), (lo, hi, n) in b.repeats.items():
            log.info(
                "repeated ids: %d records of %s[%d] offsets %d-%d skipped",
                n,
                topic,
                partition,
                lo,
                hi,
            )
            self.metrics.skipped.labels("repeated_id").inc(n)
        self._flush_tables()
        self._send_markers(b.wall_ms)
        for q, partial in self.stage1.flush(b.wall_ms):
            self.out.add(self.settings.counts_topic, None, partial.encode(), partition=q)
        self.metrics.late_events.inc(self.stage1.late - late_before)
        for (kind, category), count in b.kinds.items():
            self.metrics.events.labels(kind, category).inc(count)
        for label, n in self._rekeyed.items():
            self.metrics.rekeyed.labels(label).inc(n)
        self._rekeyed.clear()
        publish_alerts(self.out, self.settings, self.metrics, self.book, b.alerts)

    def _flush_tables(self) -> None:
        write = self.tables.write
        consent = self.w.consent
        delta = 0
        for key, value, writer, before in self.state.consent_overlay.drain():
            delta += (value is not None) - (before is not None)
            write(consent, key, value, writer)
        if self.txn is None:
            self.consent_count += delta
        else:  # counted once RocksDB has the batch (a recount may run while it commits)
            self._consent_delta += delta
        subscribers = self.w.subscribers
        for key, value, writer in self.state.subscribers.drain():
            write(subscribers, key, value, writer)
        self.tables.commit()

    # -- outputs --------------------------------------------------------------------------

    def _publish_consent(self, record: ConsentRecord) -> None:
        self.out.add(
            self.settings.topic_consent,
            f"{record.msisdn}|{record.enterprise}".encode(),
            record.model_dump_json(exclude_none=True).encode(),
            partition=partition_for(record.msisdn, self.settings.partitions),
        )

    def _send_markers(self, wall_ms: int) -> None:
        """Tell every other re-keying partition how far each events partition got.

        Queued after the batch's forwarded records, on the same producer and partitions, so
        a marker is read after every record its origin re-keyed before it. At most one per
        origin per `watermark_marker_interval_ms`; one that is due goes out with the next
        batch of any partition.
        """
        interval = self.settings.watermark_marker_interval_ms
        for q, ts in self._origin_ts.items():
            sent = self._marker_sent.get(q)
            if sent is not None and (ts <= sent[0] or wall_ms - sent[1] < interval):
                continue
            self._marker_sent[q] = (ts, wall_ms)
            self._idle_sent.pop(q, None)
            self._add_marker(q, f"{q}:{ts}")
        self._send_idle_markers(wall_ms)

    def _send_idle_markers(self, wall_ms: int) -> None:
        """Say of each events partition this worker reads that is caught up (lag 0) and read
        nothing for `idle_ms` that it is idle, again every `idle_ms` while it stays so (a
        restarted reader of a re-keying partition may have skipped the earlier ones).

        A marker source holds its logical partitions' watermarks back until its origin says
        this (Pipeline._caught_up): its silence alone may mean a slow, restarting or
        rebalancing owner, and its forwarded records may still be in flight."""
        idle_ms = self.traffic_config.idle_ms
        events = self.settings.topic_events
        try:
            assigned = self.w.app.consumer.assignment()
        except Exception:  # no assignment yet
            return
        for tp in assigned:
            q = tp.partition
            if tp.topic != events or not self._origin_caught_up(tp):
                continue
            if wall_ms - self._origin_read_wall.setdefault(q, wall_ms) < idle_ms:
                continue
            if wall_ms - self._idle_sent.get(q, wall_ms - idle_ms) < idle_ms:
                continue
            self._idle_sent[q] = wall_ms
            ts = self._origin_ts.get(q)
            self._add_marker(q, f"{q}:{'' if ts is None else ts}:{WATERMARK_IDLE}")

    def _origin_caught_up(self, tp: Any) -> bool:
        """Events partition `tp` has nothing left to read (see `_read_to_end`)."""
        return self._read_to_end(tp)

    def _read_to_end(self, tp: Any) -> bool:
        """`tp` has nothing left to read: lag 0 from the last record handled or, if none was
        handled since the assignment, from the committed offset. Without that fallback a
        partition taken over with everything already committed (the previous owner died
        after its last commit) never counted as caught up, and a source that had not
        reported since held its logical partition's watermark back for good: the last
        windows never closed (the fault storm of issue 16, 100 sublet windows once in
        eight runs). A partition that never held a record and was never committed has
        neither: its fetch position, reached without handing out a record, says it is read
        (`faust_compat.untouched_position`). Without that, a gateway that leaves some events
        partitions empty (unkeyed records, librdkafka's sticky partitioner) kept every
        window of every subject open: no volume.spike, port.sublet or complaint.rate alert
        at all (defect 14)."""
        consumer = self.w.app.consumer
        try:
            high = consumer.highwater(tp)
        except Exception:  # not fetched yet: something may be pending
            return False
        done = self._positions.get((tp.topic, tp.partition))
        if done is None:
            done = faust_compat.committed_offset(consumer, tp)
            # nothing ever handed out: the fetch position (an empty, never committed
            # partition starts there; else only markers lie between it and `done`)
            at = faust_compat.untouched_position(consumer, tp)
            if at is not None and (done is None or at > done):
                done = at
        return high is not None and done is not None and done >= high

    def _add_marker(self, q: int, value: str) -> None:
        headers = [(ORIGIN_HEADER, ORIGIN_WATERMARK), (WATERMARK_HEADER, value.encode())]
        for p in range(self.settings.partitions):
            if p != q:
                self.out.add(self.settings.rekey_topic, None, b"", partition=p, headers=headers)

    def _forward(self, m: Any, target: int, origin: bytes, label: str) -> None:
        self.out.add(
            self._rekey_topic,
            m.key,
            m.value,
            partition=target,
            headers=[
                (ORIGIN_HEADER, origin),
                (FROM_HEADER, str(m.partition).encode()),
                (FROM_OFFSET_HEADER, str(m.offset).encode()),
            ],
        )
        self._rekeyed[label] += 1  # counted per batch (_finish_batch)

    def _dead_letter(self, m: Any, reason: str, error: str) -> None:
        topic, partition, offset = self._provenance(m)
        dl = dead_letter(
            reason=reason,
            error=error,
            topic=topic,
            partition=partition,
            offset=offset,
            key=m.key,
            value=m.value,
            now=dt.datetime.now(dt.UTC),
        )
        self.out.add(self.settings.topic_dlq, m.key, dl.model_dump_json(exclude_none=True).encode())
        self.metrics.invalid.labels(reason, self._source.get(topic, "other")).inc()

    def _provenance(self, m: Any) -> tuple[str, int, int]:
        """Where a record was produced: for one forwarded through the re-keying topic, the
        topic, partition and offset it was read from at its origin (its headers), else its
        own."""
        if m.topic == self.settings.rekey_topic:
            origin = self._origin_topics.get(_header(m, ORIGIN_HEADER) or b"")
            part, off = _header(m, FROM_HEADER), _header(m, FROM_OFFSET_HEADER)
            if origin is not None and part and off:
                try:
                    return origin, int(part), int(off)
                except ValueError:
                    pass
        return m.topic, m.partition, m.offset

    @functools.cached_property
    def _origin_topics(self) -> dict[bytes, str]:
        s = self.settings
        return {
            ORIGIN_EVENTS: s.topic_events,
            ORIGIN_COMPLAINTS: s.topic_complaints,
            ORIGIN_CONSENT: s.topic_consent,
        }

    # -- gauges ---------------------------------------------------------------------------

    def _book_changed(self, book: ReferenceBook) -> None:
        self.metrics.reference_entries.labels("ports").set(len(book.ports))
        self.metrics.reference_entries.labels("signatures").set(len(book.signatures))
        self.metrics.reference_entries.labels("exemptions").set(len(book.exemptions))

    def _recovering(self) -> float:
        # Only a plain attribute that Faust sets on the app: this runs in the metrics HTTP
        # thread, and touching `app.tables.recovery` there would create Faust's Recovery
        # service (a lazy property) outside the event loop, which hung the worker's start.
        return 1.0 if getattr(self.w.app, "in_recovery", False) else 0.0

    async def refresh_gauges(self) -> None:
        try:
            self._refresh_gauges()
        except Exception:  # a gauge must never take the worker down (Faust crashes on it)
            log.exception("refreshing gauges failed")

    def _refresh_gauges(self) -> None:
        self._refresh_lag()
        recovering = bool(self._recovering())
        if recovering:
            return
        actives = frozenset(self.w.app.assignor.assigned_actives())
        if self._counted_for != (actives, recovering):
            self._counted_for = (actives, recovering)
            self.consent_count = count_active(self.w.consent)
        self.metrics.reference_entries.labels("consent").set(self.consent_count)

    def _refresh_lag(self) -> None:
        consumer = self.w.app.consumer
        inputs = {
            self.settings.topic_events,
            self.settings.topic_consent,
            self.settings.topic_complaints,
            self.settings.rekey_topic,
            self.settings.counts_topic,
        }
        gauge = self.metrics.consumer_lag
        assigned = {tp for tp in consumer.assignment() if tp.topic in inputs}
        for tp in assigned:
            try:
                high = consumer.highwater(tp)
            except Exception:  # not fetched yet
                continue
            done = self._positions.get((tp.topic, tp.partition))
            if done is None and self.txn is not None:
                done = self.txn.offsets.get((tp.topic, tp.partition))
            if done is None:
                committed = faust_compat.committed_offset(consumer, tp)
                done = committed if committed is not None else high
            if high is None or done is None:
                # Right after an assignment there is neither a highwater nor a position:
                # nothing to report yet (this timer must never raise: Faust would crash the
                # app on it, docs/reliability.md defect 4).
                continue
            gauge.labels(tp.topic, str(tp.partition)).set(max(0, high - done))
        for key in list(self._positions):
            if key not in {(tp.topic, tp.partition) for tp in assigned}:
                self._positions.pop(key, None)
                with contextlib.suppress(KeyError):
                    gauge.remove(key[0], str(key[1]))


class _SealedBatch(NamedTuple):
    """What one batch's transaction commits, and what follows its commit."""

    output: Pending
    tables: Sealed
    offsets: dict[tuple[str, int], int]
    consent_delta: int


def _stop_on_failure(job: asyncio.Future[None]) -> None:
    """A batch transaction that failed stops the process (nothing of it was applied or
    acknowledged; the restarted worker processes the batch again)."""
    if job.cancelled():
        return
    exc = job.exception()
    if exc is not None:
        try:
            raise exc
        except Exception:
            fail_fast("check_events batch commit")


def input_offsets(batch: Iterable[Any]) -> dict[tuple[str, int], int]:
    """The next offset to read per input (topic, partition) after `batch` (Faust events or
    `Delivery`s)."""
    offsets: dict[tuple[str, int], int] = {}
    for event in batch:
        m = event.message
        key = (m.topic, m.partition)
        if m.offset >= offsets.get(key, 0):
            offsets[key] = m.offset + 1
    return offsets


def transactions(settings: Settings, wiring: Wiring, metrics: Metrics) -> Transactions | None:
    """The worker's transactional producer under `SMSMON_PROCESSING=transactions`."""
    if settings.processing != "transactions":
        return None
    if not settings.store.startswith("rocksdb") or not settings.batched_changelog:
        raise ValueError(
            "SMSMON_PROCESSING=transactions needs SMSMON_STORE=rocksdb:// and "
            "SMSMON_BATCHED_CHANGELOG=true (table writes must go out in the batch's "
            "transaction); set SMSMON_PROCESSING=at_least_once to run without them"
        )
    txn = Transactions(
        wiring.app,
        f"{settings.app_id}-{settings.instance_id}",
        settings.app_id,
        settings.transaction_timeout_ms,
        observe=metrics.transaction_seconds.observe,
    )
    txn.on_retry = metrics.transaction_retries.inc
    txn.on_grouped = metrics.transaction_grouped.inc
    return txn


def count_active(table: Any) -> int:
    """Exact number of entries of a table in this worker's active partitions."""
    store = table.data
    dbs = faust_compat.rocks_active_dbs(store)
    if dbs is None:  # memory store: one dict (includes standby partitions)
        return len(store.data) if hasattr(store, "data") else len(table)
    # Faust keeps its changelog offset under a reserved key in every partition database.
    return sum(sum(1 for k in db.keys() if not k.startswith(b"__faust")) for db in dbs())  # noqa: SIM118
