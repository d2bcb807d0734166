"""Settings of `smsmon store`: smsmon's own (Kafka, topics, hashing secret) plus the database."""

from __future__ import annotations

from pydantic import Field

from smsmon.config.settings import Settings


class StoreSettings(Settings):
    """Environment variables with the `SMSMON_` prefix; Kafka ones are the worker's."""

    # SQLite file (embedded default) or `postgresql+psycopg://user:pass@host/db`.
    alert_db_url: str = "sqlite:///./data/alerts.db"
    # Prometheus endpoint of the store on `metrics_addr`; 0 serves none.
    store_metrics_port: int = Field(default=0, ge=0, le=65535)
    # Records per poll, i.e. per database transaction and offset commit.
    store_batch_max: int = Field(default=5000, ge=1, le=100_000)
    store_poll_timeout_ms: int = Field(default=500, ge=1, le=60_000)
    # Larger values are rejected (`too_large`): an alert is a few hundred bytes.
    store_max_record_bytes: int = Field(default=1 << 20, ge=1024)
    # A store that died is noticed by the group coordinator after this long, and its
    # replacement gets the partitions then (kafka-python's default is 45 s; heartbeats run in
    # a background thread, so a slow database write does not count against it).
    store_session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)
    # How long a failed database write is retried (doubling from 0.5 s) before the service
    # exits without committing offsets, so nothing polled is lost.
    store_db_retry_seconds: float = Field(default=300.0, ge=0)

    @property
    def store_group_id(self) -> str:
        """Consumer group of the store: `<app_id>-store`."""
        return f"{self.app_id}-store"

    def store_topics(self) -> list[str]:
        """The topics the store reads, in the order they are listed to the consumer."""
        return [self.topic_alerts, self.topic_consent, self.topic_ports, self.topic_signatures]
