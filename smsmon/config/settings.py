"""Runtime settings for smsmon, read from the environment with the SMSMON_ prefix."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import socket
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")


def default_instance_id(data_dir: Path) -> str:
    """`<hostname>-<first 8 hex digits of sha256(absolute data dir)>`, in Kafka's alphabet."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:200] or "smsmon"
    digest = hashlib.sha256(str(data_dir.expanduser().resolve()).encode()).hexdigest()
    return f"{host}-{digest[:8]}"


class Settings(BaseSettings):
    """Every knob of a worker; see README "Configuration" for the table."""

    model_config = SettingsConfigDict(env_prefix="SMSMON_", extra="ignore")

    # Kafka connection
    kafka_bootstrap: str = "localhost:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None

    # Identity and partitioning
    app_id: str = "smsmon"
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)

    # Topics (names are the wire contract's defaults)
    topic_events: str = "sms.events"
    topic_ports: str = "sms.ref.ports"
    topic_signatures: str = "sms.ref.signatures"
    topic_consent: str = "sms.ref.consent"
    topic_complaints: str = "sms.complaints"
    topic_exemptions: str = "sms.ref.exemptions"
    topic_alerts: str = "sms.alerts"
    topic_dlq: str = "sms.events.dlq"

    # State
    store: str = "rocksdb://"
    data_dir: Path = Path("./data")

    # Group membership. The worker's identity in the consumer group (Kafka static
    # membership, group.instance.id) and its transactional id. Empty: "<hostname>-<8 hex of
    # the absolute data dir>", the same for a worker restarted on its data dir, different for
    # two workers on one machine. A static member that restarts within the session timeout
    # gets its partitions back without a rebalance; a static member does not leave the group
    # on a clean stop either, so its partitions move only after the session timeout
    # (docs/reliability.md, "Recovery blind time and standby replicas").
    instance_id: str = Field(default="", max_length=249)
    static_membership: bool = True
    # How long the group waits for a silent member before its partitions move; the broker
    # accepts 6 s and more (group.min.session.timeout.ms). Faust's BROKER_SESSION_TIMEOUT and
    # BROKER_HEARTBEAT_INTERVAL override them (defect 9).
    session_timeout_seconds: float = Field(default=10.0, ge=6.0, le=300.0)
    heartbeat_interval_seconds: float = Field(default=2.0, gt=0.0)

    # Privacy
    msisdn_secret: SecretStr | None = None
    msisdn_key_id: str = "k1"

    # Time
    timezone: str = "Asia/Shanghai"

    # Content rules (time.quiet_hours): marketing allowed from start (inclusive) to end
    # (exclusive), local time in allowed_hours_tz (default: SMSMON_TIMEZONE)
    quiet_hours_enabled: bool = True
    allowed_hours_start: dt.time = dt.time(8, 0)
    allowed_hours_end: dt.time = dt.time(21, 0)
    allowed_hours_tz: str | None = None
    content_rules_enabled: bool = True

    # Metrics endpoint
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    metrics_addr: str = "127.0.0.1"

    # Processing. Batches fill up to batch_max only when the worker has a backlog (a quiet
    # worker's batches are what arrived in batch_within_seconds); 20,000 rather than 5,000
    # halves the transactions of a backlogged worker: more events/s in 9 of 10
    # interleaved pairs, +13 % on their mean (docs/performance.md, fifth round).
    batch_max: int = Field(default=20_000, ge=1)
    batch_within_seconds: float = Field(default=0.05, gt=0)
    # Event and complaint ids remembered per subscriber, in the subscribers table (committed
    # state, so a repeat is skipped after a crash too); 0 turns dedup off.
    dedup_per_subscriber: int = Field(default=16, ge=0, le=1024)
    # Each events partition tells every re-keying partition how far it got in event time
    # (a watermark marker) at most this often: re-keyed records never drive the watermark
    # themselves (docs/traffic.md, "Watermarks").
    watermark_marker_interval_ms: int = Field(default=500, ge=0)
    # Table changelog records of a batch go out with its other output, one aiokafka batch
    # per partition, instead of one Faust send per key (docs/performance.md).
    batched_changelog: bool = True
    # Faust's per-record consumer loop awaits each delivery through four tasks; deliveries
    # that cannot block are awaited directly, and standby changelog records are written to
    # RocksDB directly (streams/faust_compat.py). The loop's seek fix is on either way.
    fast_drain: bool = True
    # The processing protocol (docs/reliability.md): "transactions" commits each batch's
    # outputs, changelog records and input offsets in one Kafka transaction and writes RocksDB
    # after it (no fault changes an alert); "at_least_once" is the earlier protocol (outputs
    # flushed before Faust's timer commits offsets), kept for comparison benchmarks.
    processing: Literal["transactions", "at_least_once"] = "transactions"
    # A transaction the worker left open when it died is aborted by its restart at once, or
    # by the broker after this long (until then read_committed readers of the partitions it
    # wrote wait). A batch's transaction must end within it.
    transaction_timeout_ms: int = Field(default=10_000, ge=1_000, le=900_000)
    # How long the broker may hold a fetch that finds no new records. Faust fixes 1,500 ms;
    # while such a fetch for quiet partitions is in flight, aiokafka cannot fetch the busy
    # ones again, and events waited up to 1.5 s before processing (docs/performance.md).
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=10_000)
    # Python's cyclic GC: objects allocated per batch outlived the default 700-allocation
    # young generation, were promoted, and triggered full collections that found nothing to
    # collect (docs/performance.md).
    gc_threshold0: int = Field(default=100_000, ge=700)
    # Standby copies of each table partition kept by other workers of the group: a worker
    # that takes over a partition from a stopped one has its state at once (docs/reliability.md,
    # 4.8 s instead of 46 s after SIGTERM) at the CPU cost of applying the other workers'
    # changelogs (docs/performance.md). Faust's own TABLE_STANDBY_REPLICAS overrides it.
    standby_replicas: int = Field(default=1, ge=0, le=3)
    # a safety cap, not a working limit: every port within the horizon is kept up to it
    recent_ports_per_msisdn: int = Field(default=128, ge=128, le=4096)
    recent_horizon_days: float = Field(default=30.0, gt=0)
    max_event_bytes: int = Field(default=65_536, ge=1024)
    max_text_chars: int = Field(default=4_000, ge=70)
    max_future_skew_seconds: int = Field(default=86_400, ge=0, le=10 * 365 * 86_400)
    log_level: str = "info"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}: use an IANA name") from exc
        return value

    @model_validator(mode="after")
    def _membership(self) -> Settings:
        if not self.instance_id:
            self.instance_id = default_instance_id(self.data_dir)
        elif not INSTANCE_ID.fullmatch(self.instance_id):
            raise ValueError(
                f"instance_id {self.instance_id!r}: use letters, digits, '.', '_' and '-' "
                "(Kafka's rule for group.instance.id)"
            )
        if self.heartbeat_interval_seconds * 3 > self.session_timeout_seconds:
            raise ValueError(
                f"heartbeat_interval_seconds {self.heartbeat_interval_seconds} must be at most "
                f"a third of session_timeout_seconds {self.session_timeout_seconds}"
            )
        return self

    @property
    def tz(self) -> ZoneInfo:
        """The configured timezone for naive event timestamps."""
        return ZoneInfo(self.timezone)

    @property
    def counts_topic(self) -> str:
        """Internal topic of stage-1 partial counts, partitioned by subject."""
        return f"{self.app_id}-counts"

    @property
    def rekey_topic(self) -> str:
        """Internal topic that carries records forwarded to smsmon's own partition."""
        return f"{self.app_id}-rekey"

    def require_secret(self) -> bytes:
        """Return the msisdn hashing secret or fail with an actionable message."""
        if self.msisdn_secret is None or not self.msisdn_secret.get_secret_value():
            raise SystemExit(
                "SMSMON_MSISDN_SECRET is not set: smsmon hashes subscriber numbers with a "
                "keyed HMAC and refuses to run without a secret. Set it to a long random "
                "string (e.g. `openssl rand -hex 32`), the same on every worker."
            )
        return self.msisdn_secret.get_secret_value().encode()
