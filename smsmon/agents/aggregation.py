"""The stage-2 Faust agent: applies stage-1 partials per subject partition, closes windows,
publishes volume.spike, port.sublet and complaint.rate alerts. Thin: decisions live in
`agents/rules/aggregate.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from smsmon.agents.emit import fail_fast, publish_alerts, send_failed
from smsmon.config.settings import Settings
from smsmon.contract.models import Alert
from smsmon.rules.aggregate import Aggregator, Progress, SubjectState
from smsmon.rules.reference import ReferenceBook
from smsmon.rules.traffic import Partial, TrafficConfig, subject_partition
from smsmon.streams import faust_compat
from smsmon.streams.app import AGGREGATE_AGENT, Wiring, bind_event
from smsmon.streams.metrics import Metrics
from smsmon.streams.output import BatchOutput
from smsmon.streams.tables import TableWriter
from smsmon.streams.transactions import Transactions

log = logging.getLogger(__name__)


# Decoded subject states kept between batches (per worker). Subjects are ports, signatures
# and accounts: thousands, not millions; past this many, the oldest clean ones are dropped
# after a batch and decoded again from the table when they next appear.
SUBJECT_CACHE_MAX = 50_000


class SubjectCache:
    """SubjectStore over the subjects table that keeps decoded states between batches.

    Stage 2 is the only writer of a subject partition while it is assigned, so a decoded
    state stays valid until the assignment changes (`clear`, on every rebalance). Each
    changed state is encoded and written once per batch (`drain`), not once per partial:
    JSON decoding and encoding of subject states was most of stage 2's time.
    """

    def __init__(self, load: Callable[[bytes], bytes | None], capacity: int) -> None:
        self._load = load
        self.capacity = capacity
        self.states: dict[str, SubjectState] = {}
        self._dirty: dict[str, Any] = {}
        self.writer: Any = None

    def get(self, key: str) -> SubjectState:
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = SubjectState.decode(self._load(key.encode()))
        return st

    def put(self, key: str, state: SubjectState) -> None:
        self.states[key] = state
        self._dirty[key] = self.writer

    def seed(self, key: str, state: SubjectState) -> None:
        """A state read from the table (rebuilding the index): keep it unless one is cached."""
        self.states.setdefault(key, state)

    def drain(self) -> Iterator[tuple[bytes, bytes, Any]]:
        """(key, encoded state, writer) of each state changed since the last drain."""
        for key, writer in self._dirty.items():
            yield key.encode(), self.states[key].encode(), writer
        self._dirty.clear()
        excess = len(self.states) - self.capacity
        if excess > 0:
            for key in list(itertools.islice(self.states, excess + self.capacity // 4)):
                del self.states[key]

    def clear(self) -> None:
        self.states.clear()
        self._dirty.clear()

    def __len__(self) -> int:
        return len(self.states)


class Aggregation:
    """Owns the stage-2 aggregator of one worker."""

    def __init__(
        self,
        settings: Settings,
        wiring: Wiring,
        metrics: Metrics,
        book: ReferenceBook,
        cfg: TrafficConfig,
        txn: Transactions | None = None,
        ready: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        self.w = wiring
        self.metrics = metrics
        self.book = book
        self.aggregator = Aggregator(cfg, self._quota)
        # set once the reference data is loaded: a port.sublet alert names the port's
        # enterprise, which a stage 2 that ran ahead of the registry would leave empty
        self.ready = ready
        self.progress: dict[int, Progress] = {}
        self.cfg = cfg
        # subjects of the last published top list per subject type (gauge labels to remove)
        self._top: dict[str, list[str]] = {}
        self.out = BatchOutput(wiring.app, on_error=send_failed, txn=txn)
        self.tables = TableWriter(self.out, settings.batched_changelog, txn is not None)
        self.store = SubjectCache(
            lambda key: self.tables.read(wiring.subjects, key, self.store.writer),
            SUBJECT_CACHE_MAX,
        )

    def register(self) -> None:
        self.w.app.agent(self.w.counts, name=AGGREGATE_AGENT)(self.aggregate_counts)
        self.w.app.on_rebalance_complete.connect(self._forget)

    async def _forget(self, sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        # Assignment changed: reload progress (and the open-window index) from the tables.
        self.progress.clear()
        self.store.clear()

    def _quota(self, port: str) -> tuple[str | None, int | None]:
        rec = self.book.ports.get(port)
        return (rec.enterprise, rec.max_per_minute) if rec is not None else (None, None)

    def _progress_for(self, q: int) -> Progress:
        p = self.progress.get(q)
        if p is None:
            raw = self.w.progress.get(f"q{q}".encode())
            p = self.progress[q] = Progress.decode(raw, self.cfg.idle_ms)
            n = self.settings.partitions
            # Every logical partition sends partials here; one that has not reported yet
            # holds the windows open (for idle_ms at most when it has nothing pending).
            p.watermarks.expect(range(n), int(time.time() * 1000))
            records = []
            for k, v in self.w.subjects.items():
                if not isinstance(k, bytes) or k.startswith(b"__faust"):
                    continue
                dim, _, subject = k.decode().partition("|")
                if subject_partition(dim, subject, n) == q:
                    records.append((k.decode(), SubjectState.decode(v)))
            self.aggregator.rebuild_index(p, records)
            for key, state in records:
                self.store.seed(key, state)
        return p

    async def aggregate_counts(self, stream: Any) -> AsyncIterator[None]:
        if self.ready is not None:
            await self.ready.wait()
        async for batch in stream.take_events(
            self.settings.batch_max, self.settings.batch_within_seconds
        ):
            try:
                self.process_batch(batch)
                if self.out.txn is None:
                    await self.out.flush()
                else:  # the transactional protocol: outputs, changelog and offsets at once
                    offsets: dict[tuple[str, int], int] = {}
                    for event in batch:
                        m = event.message
                        offsets[(m.topic, m.partition)] = max(
                            m.offset + 1, offsets.get((m.topic, m.partition), 0)
                        )
                    # past the commit marker that ends the partials' transaction, when the
                    # batch has everything fetched (else it stays one short of the end)
                    offsets = faust_compat.past_markers(self.w.app.consumer, offsets)
                    self.tables.apply(await self.out.commit(offsets))
            except Exception:
                fail_fast("aggregate_counts batch")
            yield None

    def process_batch(self, batch: list[Any]) -> None:
        now = dt.datetime.now(dt.UTC)
        wall_ms = int(time.time() * 1000)
        t_batch = time.monotonic()
        alerts: list[Alert] = []
        last: dict[int, Any] = {}
        late_before = self.aggregator.late
        for event in batch:
            m = event.message
            q = m.partition
            bind_event(event)
            self.store.writer = event
            last[q] = event
            try:
                partial = Partial.decode(m.value)
                alerts += self.aggregator.apply(
                    partial, self._progress_for(q), self.store, wall_ms, now
                )
            except Exception as exc:  # an internal record we cannot read: never stop
                self.metrics.processing_errors.labels("aggregate").inc()
                log.error("partial %s[%d]@%d raised %s", m.topic, q, m.offset, type(exc).__name__)
        write = self.tables.write
        for q, event in last.items():
            bind_event(event)  # Faust routes table reads by the current event's partition
            self.store.writer = event
            alerts += self.aggregator.close(self._progress_for(q), self.store, wall_ms, now)
            write(self.w.progress, f"q{q}".encode(), self.progress[q].encode(), event)
        for key, value, writer in self.store.drain():
            write(self.w.subjects, key, value, writer)
        self.tables.commit()
        self.metrics.late_events.inc(self.aggregator.late - late_before)
        self._top_subjects()
        publish_alerts(
            self.out, self.settings, self.metrics, self.book, ((a, t_batch) for a in alerts)
        )

    def _top_subjects(self) -> None:
        closed = self.aggregator.closed_counts
        if not closed:
            return
        gauge = self.metrics.window_messages
        by_dim: dict[str, list[tuple[int, str]]] = {}
        for dim, subject, count in closed:
            by_dim.setdefault(dim, []).append((count, subject))
        for dim, rows in by_dim.items():
            for subject in self._top.pop(dim, ()):  # drop the previous top list of this type
                gauge.remove(dim, subject)
            top = heapq.nlargest(10, rows)
            for count, subject in top:
                gauge.labels(dim, subject).set(count)
            self._top[dim] = [subject for _, subject in top]
        closed.clear()
