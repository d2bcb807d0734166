"""Topic layout: create what is missing, refuse partition counts that break co-partitioning."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
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
    tables = ("consent", "subscribers", "subjects", "progress")
    return [f"{settings.app_id}-{t}-changelog" for t in tables]


class KafkaUnreachableError(SystemExit):
    """The broker could not be reached or refused our credentials."""


def connect_admin(settings: Settings, timeout_s: float = 30.0) -> KafkaAdminClient:
    """An admin client, or a clear error within `timeout_s` (never an endless retry)."""
    # kafka-python retries a refused SASL handshake until the bootstrap times out and then
    # reports only "Unable to bootstrap"; the authentication error shows in its log records.
    seen = _AuthErrors()
    kafka_log = logging.getLogger("kafka")
    kafka_log.addHandler(seen)
    try:
        return KafkaAdminClient(
            client_id=f"{settings.app_id}-admin",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            **kafka_client_config(settings),
        )
    except (KafkaError, OSError, ValueError) as exc:
        raise KafkaUnreachableError(_connect_error(settings, timeout_s, exc, seen)) from None
    finally:
        kafka_log.removeHandler(seen)


class _AuthErrors(logging.Handler):
    """Remembers whether kafka-python logged an authentication failure."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record must not break the connection attempt
            return
        if "Authentication" in text or "SaslAuthenticat" in text:
            self.failed = True


def _reachable(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when a TCP connection to any bootstrap address succeeds."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "localhost", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


#: A second opinion on a failed SASL handshake: True if the broker answered that the
#: credentials are wrong. kafka-python can drop that answer (see smsmon/streams/sasl.py); the
#: worker installs an aiokafka probe here, other tools keep kafka-python's verdict.
SaslProbe = Callable[[Settings, float], bool]
_SASL_PROBES: list[SaslProbe] = []


def set_sasl_probe(probe: SaslProbe | None) -> None:
    """Install (or, with None, remove) the SASL probe `_connect_error` consults."""
    _SASL_PROBES[:] = [probe] if probe is not None else []


def _connect_error(settings: Settings, timeout_s: float, exc: Exception, seen: _AuthErrors) -> str:
    """One clear sentence on why the connection failed (never the password)."""
    where = f"Kafka at {settings.kafka_bootstrap} ({settings.kafka_security_protocol}"
    if settings.kafka_security_protocol.startswith("SASL"):
        who = f"SASL {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username!r}"
        if seen.failed or _reachable(settings.kafka_bootstrap):
            rejected = seen.failed or any(
                probe(settings, min(timeout_s, 10.0)) for probe in _SASL_PROBES
            )
            cause = (
                "the broker rejected the credentials"
                if rejected
                else "the broker accepts connections but the SASL handshake did not complete"
            )
            return (
                f"smsmon: authentication failed for {who} at {where}): {cause}. Check "
                "SMSMON_KAFKA_SASL_USERNAME, SMSMON_KAFKA_SASL_PASSWORD and "
                "SMSMON_KAFKA_SASL_MECHANISM (and that the listener speaks SASL)."
            )
        where += f" with {who}"
    return (
        f"smsmon: cannot connect to {where}) within {timeout_s:.0f} s: "
        f"{type(exc).__name__}: {exc}. Check SMSMON_KAFKA_BOOTSTRAP, the security "
        "protocol and the credentials."
    )


def ensure_topics(settings: Settings) -> None:
    """Create missing topics; raise TopicLayoutError if existing ones don't fit."""
    admin = connect_admin(settings)
    try:
        existing = {
            (t.get("name") or t.get("topic")): len(t["partitions"])
            for t in admin.describe_topics()
            if not t.get("error_code")
        }
        # The table changelogs are created here too, not left to Faust: Faust creates them
        # while the group forms, and a changelog missing from the consumer's first metadata
        # snapshot counts as 0 partitions, so the first table write raised PartitionsMismatch
        # on a fresh app id (docs/reliability.md, defect 5).
        specs = topic_specs(settings) + [
            TopicSpec(name, settings.partitions, COMPACT, True)
            for name in changelog_topics(settings)
        ]
        wrong = [
            f"{s.name} has {existing[s.name]} partitions"
            for s in specs
            if s.copartitioned and s.name in existing and existing[s.name] != s.partitions
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
