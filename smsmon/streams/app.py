"""The one place that builds the Faust app, its topics and tables from Settings."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import faust

from smsmon.config.settings import Settings
from smsmon.streams.faust_compat import (
    apply_fast_drain,
    raise_producer_buffer,
    require_supported_faust,
    set_current_event,
    set_fetch_max_wait,
)

# Agent and table names are part of Kafka topic names (changelogs, internal topics):
# they are contract, never rename them casually.
CONSENT_TABLE = "consent"
# b"msisdn" -> recent senders and flood state of one subscriber (agents/pipeline.py)
SUBSCRIBERS_TABLE = "subscribers"
SUBJECTS_TABLE = "subjects"
PROGRESS_TABLE = "progress"
CHECK_AGENT = "check_events"
AGGREGATE_AGENT = "aggregate_counts"
VALIDATE_AGENT = "validate_reference"

ORIGIN_HEADER = "smsmon-origin"


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for SASL/TLS, or None for PLAINTEXT."""
    proto = settings.kafka_security_protocol
    ctx = None
    if proto in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
    if proto.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


@dataclass
class Wiring:
    """The app with the topics and tables the agents use."""

    app: faust.App
    inputs: Any  # union channel: events + consent + rekey (co-partitioned)
    reference: Any  # union channel: ports + signatures
    rekey: Any
    consent_out: Any
    alerts: Any
    dlq: Any
    consent: Any  # Table: b"msisdn|enterprise" -> ConsentState bytes
    subscribers: Any  # Table: b"msisdn" -> RecentSenders JSON, newline, FloodState JSON
    counts: Any  # internal topic of stage-1 partials, partitioned by subject
    subjects: Any  # Table: b"dim|subject" -> SubjectState bytes (stage 2)
    progress: Any  # Table: b"q<partition>" -> Progress bytes (stage 2)


def build_app(settings: Settings) -> Wiring:
    """Create the Faust app, topics and tables for these settings."""
    # Faust's producer buffer flushes synchronously once it holds 100 messages; a batch of
    # table writes (one changelog record per key) overflows that at once and stalls the
    # agent. Let a whole batch's changelog records queue; Faust still flushes before commit.
    require_supported_faust()
    raise_producer_buffer(settings.batch_max * 4)
    apply_fast_drain(settings.fast_drain)
    set_fetch_max_wait(settings.fetch_max_wait_ms)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=settings.standby_replicas,
        # static membership: a restarted worker gets its partitions back without a rebalance
        consumer_group_instance_id=settings.instance_id if settings.static_membership else None,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        # Commit on the 1 s timer only: a commit every N acks ran inside the consumer loop,
        # waiting there for the producer's flush and the commit round trip.
        broker_commit_every=1_000_000_000,
        broker_commit_interval=1.0,
        producer_max_request_size=1_048_576,
        # aiokafka sends one batch per partition per request and has one request in flight
        # per broker: with 16 KiB batches a batch's output to one partition needed several
        # round trips in a row. Under the broker's 1 MiB message.max.bytes.
        producer_max_batch_size=524_288,
        logging_config=None,
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    n = settings.partitions
    inputs = app.topic(
        settings.topic_events,
        settings.topic_consent,
        settings.topic_complaints,
        settings.rekey_topic,
        partitions=n,
        **raw,
    )
    reference = app.topic(
        settings.topic_ports, settings.topic_signatures, settings.topic_exemptions, **raw
    )
    rekey = app.topic(settings.rekey_topic, partitions=n, internal=False, **raw)
    consent_out = app.topic(settings.topic_consent, partitions=n, **raw)
    alerts = app.topic(settings.topic_alerts, **raw)
    dlq = app.topic(settings.topic_dlq, **raw)
    # bytes key and value types give the raw codec (no JSON round trip per access).
    table_args: dict[str, Any] = {"partitions": n, "key_type": bytes, "value_type": bytes}
    consent = app.Table(CONSENT_TABLE, **table_args)
    subscribers = app.Table(SUBSCRIBERS_TABLE, **table_args)
    counts = app.topic(settings.counts_topic, partitions=n, **raw)
    subjects = app.Table(SUBJECTS_TABLE, **table_args)
    progress = app.Table(PROGRESS_TABLE, **table_args)
    return Wiring(
        app,
        inputs,
        reference,
        rekey,
        consent_out,
        alerts,
        dlq,
        consent,
        subscribers,
        counts,
        subjects,
        progress,
    )


def bind_event(event: Any) -> None:
    """Make `event` Faust's current event.

    Faust routes table reads, writes and changelog records by the *current event's*
    partition. Inside `take_events` batches the current event is whichever arrived last,
    so before touching a table for a given record we bind that record's event: the
    state of an msisdn then lives in the partition smsmon's partitioner gives it.
    """
    set_current_event(event)
