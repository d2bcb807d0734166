"""Every worker's full copy of the port and signature registries, read straight from Kafka.

Each worker consumes all partitions of the (small, compacted) reference topics with no
consumer group, validates every record with the same function as the validating agent, and
applies the valid ones to its ReferenceBook. The validating agent, which runs in the consumer
group, dead-letters invalid records exactly once; here they are skipped and leave the book
unchanged. `ready` is set once the topics are read up to their end offsets at start-up, and
event processing waits for it so that a fresh worker never judges traffic on an empty book.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from smsmon.config.settings import Settings
from smsmon.contract.codec import DecodeContext, DecodeError
from smsmon.rules.reference import ReferenceBook, apply_reference
from smsmon.streams.faust_compat import force_metadata_update

log = logging.getLogger(__name__)


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """aiokafka connection settings (TLS, SASL) from Settings."""
    from smsmon.streams.app import broker_credentials

    cfg: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    creds = broker_credentials(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl_plain_username"] = settings.kafka_sasl_username
        pw = settings.kafka_sasl_password
        cfg["sasl_plain_password"] = pw.get_secret_value() if pw else None
    if creds is not None and getattr(creds, "context", None) is not None:
        cfg["ssl_context"] = creds.context
    return cfg


class ReferenceLoader:
    """Keeps a ReferenceBook in step with the reference topics."""

    def __init__(
        self,
        settings: Settings,
        book: ReferenceBook,
        on_change: Callable[[ReferenceBook], None] | None = None,
    ) -> None:
        self.settings = settings
        self.book = book
        self.ready = asyncio.Event()
        self._on_change = on_change

    async def run(self) -> None:
        """Load to the end, set `ready`, then follow updates until cancelled."""
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id=f"{s.app_id}-reference-loader",
            **aiokafka_security(s),
        )
        await consumer.start()
        try:
            tps: list[TopicPartition] = []
            for topic in (s.topic_ports, s.topic_signatures, s.topic_exemptions):
                parts = await self._partitions(consumer, topic)
                tps += [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if end[tp] > 0}
            ctx = DecodeContext(tz=s.tz, max_event_bytes=s.max_event_bytes)
            if not pending:
                self._mark_ready()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                changed = False
                for tp, records in batches.items():
                    for rec in records:
                        try:
                            apply_reference(self.book, s, tp.topic, rec.key, rec.value, ctx)
                            changed = True
                        except DecodeError:
                            pass  # dead-lettered and counted once by the validating agent
                for tp in list(pending):
                    if await consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
                if changed and self._on_change is not None:
                    self._on_change(self.book)
                if not pending and not self.ready.is_set():
                    self._mark_ready()
        finally:
            await consumer.stop()

    def _mark_ready(self) -> None:
        log.info(
            "reference data loaded: %d ports, %d signatures (%s)",
            len(self.book.ports),
            len(self.book.signatures),
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        if self._on_change is not None:
            self._on_change(self.book)
        self.ready.set()

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        for _ in range(60):
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return set(parts)
            await force_metadata_update(consumer)
            await asyncio.sleep(0.5)
        raise RuntimeError(f"reference topic {topic} not found; is `smsmon worker` creating it?")
