"""`smsmon store`: consume alerts, consent and registry records into the alert store.

Order per poll batch: decode, write every row in ONE database transaction, commit it, THEN
commit the Kafka offsets. A crash before the database commit leaves nothing and the batch is
polled again; a crash between the two commits replays a batch whose rows are all there, and
the idempotent statements of `writer` skip them. Either way no row is lost or duplicated.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from smsmon.admin import kafka_client_config
from smsmon.contract.canonical import MsisdnHasher
from smsmon.contract.codec import DecodeContext
from smsmon.store.db import make_engine, migrate
from smsmon.store.records import Source
from smsmon.store.settings import StoreSettings
from smsmon.store.writer import BatchResult, Topics, Writer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoreMetrics:
    """The store's Prometheus metrics (labels: table, reason, topic: all bounded)."""

    rows: Counter
    rejects: Counter
    batch_seconds: Histogram
    lag: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> StoreMetrics:
        return cls(
            rows=Counter(
                "smsmon_store_rows_total",
                "Rows written by the alert store (new alerts, consent events, registry "
                "upserts and deletions, rejects)",
                ["table"],
                registry=registry,
            ),
            rejects=Counter(
                "smsmon_store_rejects_total",
                "Records the alert store could not store, by reason",
                ["reason"],
                registry=registry,
            ),
            batch_seconds=Histogram(
                "smsmon_store_batch_seconds",
                "Time to decode and write one poll batch and commit its offsets",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=registry,
            ),
            lag=Gauge(
                "smsmon_store_lag",
                "Records of the topic not yet stored (sum over the assigned partitions)",
                ["topic"],
                registry=registry,
            ),
        )

    def count(self, result: BatchResult) -> None:
        for table, n in result.rows.items():
            self.rows.labels(table=table).inc(n)
        for reason, n in result.rejects.items():
            self.rejects.labels(reason=reason).inc(n)


def kafka_consumer(settings: StoreSettings) -> Any:
    """The store's kafka-python consumer: its own group, offsets committed by hand, topics
    never auto-created (the consent topic is co-partitioned: the worker creates it)."""
    from kafka import KafkaConsumer

    return KafkaConsumer(
        # the workers write alerts and revocations in transactions (docs/reliability.md)
        isolation_level="read_committed",
        group_id=settings.store_group_id,
        client_id=settings.store_group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        max_poll_records=settings.store_batch_max,
        session_timeout_ms=settings.store_session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.store_session_timeout_ms // 4),
        # A database write may be retried for store_db_retry_seconds between polls.
        max_poll_interval_ms=max(300_000, int(settings.store_db_retry_seconds * 1000) + 60_000),
        **kafka_client_config(settings),
    )


class StoreService:
    """The consumer loop; `run` returns when stopped (SIGTERM/SIGINT) or idle (`until_idle`)."""

    def __init__(
        self,
        settings: StoreSettings,
        engine: Engine | None = None,
        registry: CollectorRegistry | None = None,
        until_idle: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        consumer_factory: Callable[[StoreSettings], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.alert_db_url)
        self.registry = registry or CollectorRegistry()
        self.metrics = StoreMetrics.create(self.registry)
        self.until_idle = until_idle
        self.sleep = sleep
        self.consumer_factory = consumer_factory or kafka_consumer
        self.stop = False
        s = settings
        self.writer = Writer(
            self.engine,
            Topics(s.topic_alerts, s.topic_consent, s.topic_ports, s.topic_signatures),
            MsisdnHasher(s.require_secret(), s.msisdn_key_id),
            DecodeContext(
                tz=s.tz,
                max_event_bytes=s.store_max_record_bytes,
                max_text_chars=s.max_text_chars,
                max_future_skew_seconds=float(s.max_future_skew_seconds),
            ),
            max_record_bytes=s.store_max_record_bytes,
        )
        self.batches = 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        self.stop = True

    def write_with_retry(self, sources: list[Source]) -> BatchResult:
        """`writer.write`, retried while the database is unreachable or locked (the polled
        records stay in memory, their offsets uncommitted); gives up after
        `store_db_retry_seconds` by raising, so a restart polls them again."""
        delay, waited = 0.5, 0.0
        while True:
            try:
                return self.writer.write(sources)
            except DBAPIError as exc:
                if waited >= self.settings.store_db_retry_seconds or self.stop:
                    raise
                log.warning(
                    "database write failed (%s); retrying in %.1f s",
                    type(exc.orig).__name__ if exc.orig else type(exc).__name__,
                    delay,
                )
                self.sleep(delay)
                waited += delay
                delay = min(delay * 2, 30.0)

    def run(self) -> int:
        """Migrate, then consume until stopped; 0 on a clean stop."""
        from kafka.errors import CommitFailedError, KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        s = self.settings
        migrate(self.engine)
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        if s.store_metrics_port:
            start_http_server(s.store_metrics_port, addr=s.metrics_addr, registry=self.registry)
        consumer: Any = None
        try:
            consumer = self.consumer_factory(s)
            consumer.subscribe(s.store_topics())
            log.info(
                "storing %s into %s (group %s)",
                ", ".join(s.store_topics()),
                self.engine.url.render_as_string(hide_password=True),
                s.store_group_id,
            )
            idle_since = time.monotonic()
            last_lag = 0.0
            while not self.stop:
                batch = consumer.poll(timeout_ms=s.store_poll_timeout_ms)
                now = time.monotonic()
                if not batch:
                    if now - last_lag >= 5.0:
                        self._update_lag(consumer)
                        last_lag = now
                    if self.until_idle is not None and self._idle(consumer, now, idle_since):
                        log.info("no new records for %.0f s: stopping", now - idle_since)
                        break
                    continue
                idle_since = now
                started = time.perf_counter()
                sources = [
                    Source(tp.topic, tp.partition, r.offset, r.key, r.value, r.timestamp)
                    for tp, recs in batch.items()
                    for r in recs
                ]
                result = self.write_with_retry(sources)
                offsets = {
                    TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(
                        recs[-1].offset + 1, "", -1
                    )
                    for tp, recs in batch.items()
                    if recs
                }
                try:
                    consumer.commit(offsets)
                except (CommitFailedError, KafkaError) as exc:
                    # A rebalance took the partitions: their new owner replays the batch,
                    # which the idempotent writes make harmless.
                    log.warning("offset commit failed (%s); the batch will be replayed", exc)
                self.metrics.count(result)
                self.metrics.batch_seconds.observe(time.perf_counter() - started)
                self.batches += 1
                if now - last_lag >= 5.0:
                    self._update_lag(consumer)
                    last_lag = now
            return 0
        finally:
            if consumer is not None:
                consumer.close(autocommit=False)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.engine.dispose()

    def _idle(self, consumer: Any, now: float, idle_since: float) -> bool:
        """`until_idle` has passed with partitions assigned, or a minute more without any
        (joining the group may take a session timeout after a crashed predecessor)."""
        assert self.until_idle is not None
        waited = now - idle_since
        if consumer.assignment():
            return waited >= self.until_idle
        return waited >= self.until_idle + 60.0

    def _update_lag(self, consumer: Any) -> None:
        """Lag per topic from the consumer's positions and the end offsets it already knows
        (no extra broker round trip)."""
        per_topic: dict[str, int] = dict.fromkeys(self.settings.store_topics(), 0)
        for tp in consumer.assignment():
            try:
                end = consumer.highwater(tp)
                position = consumer.position(tp, timeout_ms=1000)
            except Exception:  # lag is advisory: never stop the store for it
                continue
            if end is not None and position is not None and tp.topic in per_topic:
                per_topic[tp.topic] += max(0, end - position)
        for topic, lag in per_topic.items():
            self.metrics.lag.labels(topic=topic).set(lag)
