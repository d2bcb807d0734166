"""Topic layout: create what is missing, refuse partition counts that break co-partitioning."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from smsmon.config.settings import Settings

log = logging.getLogger(__name__)

COMPACT = {"cleanup.policy": "compact"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic smsmon needs; `copartitioned` ones must have exactly `partitions`."""

    name: str
    partitions: int
    config: dict[str, str]
    copartitioned: bool


class TopicLayoutError(SystemExit):
    """Existing topics do not fit smsmon's design; the message says what to do."""


def kafka_client_config(settings: Settings) -> dict[str, Any]:
    """kafka-python connection settings (bootstrap, TLS, SASL) from Settings."""
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl_plain_username"] = settings.kafka_sasl_username
        cfg["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password
            else None
        )
    if settings.kafka_ssl_cafile is not None:
        cfg["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    return cfg


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic a worker reads or writes, except Faust's own internal ones."""
    n = settings.partitions
    return [
        TopicSpec(settings.topic_events, n, {}, True),
        TopicSpec(settings.topic_consent, n, COMPACT, True),
        TopicSpec(settings.topic_complaints, n, {}, True),
        TopicSpec(settings.rekey_topic, n, {}, True),
        TopicSpec(settings.counts_topic, n, {}, True),
        TopicSpec(settings.topic_ports, 1, COMPACT, False),
        TopicSpec(settings.topic_signatures, 1, COMPACT, False),
        TopicSpec(settings.topic_exemptions, 1, COMPACT, False),
        TopicSpec(settings.topic_alerts, n, {}, False),
        # Dead letters hold raw subscriber data: short retention (7 days) by default.
        TopicSpec(settings.topic_dlq, 1, {"retention.ms": str(7 * 86_400_000)}, False),
    ]


def changelog_topics(settings: Settings) -> list[str]:
    """Faust changelog topics of smsmon's tables (co-partitioned with events)."""
    tables = ("consent", "recent_senders", "flood", "subjects", "progress")
    return [f"{settings.app_id}-{t}-changelog" for t in tables]


class KafkaUnreachableError(SystemExit):
    """The broker could not be reached or refused our credentials."""


def connect_admin(settings: Settings, timeout_s: float = 30.0) -> KafkaAdminClient:
    """An admin client, or a clear error within `timeout_s` (never an endless retry)."""
    try:
        return KafkaAdminClient(
            client_id=f"{settings.app_id}-admin",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            **kafka_client_config(settings),
        )
    except (KafkaError, OSError, ValueError) as exc:
        auth = ""
        if settings.kafka_security_protocol.startswith("SASL"):
            auth = f" with SASL {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username!r}"
        raise KafkaUnreachableError(
            f"smsmon: cannot connect to Kafka at {settings.kafka_bootstrap} "
            f"({settings.kafka_security_protocol}{auth}) within {timeout_s:.0f} s: "
            f"{type(exc).__name__}: {exc}. Check SMSMON_KAFKA_BOOTSTRAP, the security "
            "protocol and the credentials."
        ) from None


def ensure_topics(settings: Settings) -> None:
    """Create missing topics; raise TopicLayoutError if existing ones don't fit."""
    admin = connect_admin(settings)
    try:
        existing = {
            (t.get("name") or t.get("topic")): len(t["partitions"])
            for t in admin.describe_topics()
            if not t.get("error_code")
        }
        specs = topic_specs(settings)
        wrong = [
            f"{s.name} has {existing[s.name]} partitions"
            for s in specs
            if s.copartitioned and s.name in existing and existing[s.name] != s.partitions
        ]
        wrong += [
            f"{name} has {existing[name]} partitions"
            for name in changelog_topics(settings)
            if name in existing and existing[name] != settings.partitions
        ]
        if wrong:
            raise TopicLayoutError(
                "smsmon co-partitions events, consent, re-keying and table changelog topics by "
                f"msisdn and needs each to have SMSMON_PARTITIONS={settings.partitions} "
                f"partitions, but {'; '.join(wrong)}. Set SMSMON_PARTITIONS to the existing "
                "count, or create the topics anew with that many partitions."
            )
        missing = [s for s in specs if s.name not in existing]
        if missing:
            new = [
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions,
                    replication_factor=settings.replication_factor,
                    topic_configs=s.config,
                )
                for s in missing
            ]
            # raise_errors=False: a concurrent worker may have created some already.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new, raise_errors=False, wait_for_metadata=True)
            log.info("created topics: %s", ", ".join(s.name for s in missing))
    finally:
        admin.close()
