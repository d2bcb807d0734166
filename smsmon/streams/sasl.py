"""A SASL handshake made with aiokafka, to tell wrong credentials from a lost connection
when kafka-python cannot (installed into smsmon.admin by the worker)."""

from __future__ import annotations

from smsmon.admin import kafka_client_config
from smsmon.config.settings import Settings


def sasl_rejected(settings: Settings, timeout_s: float) -> bool:
    """One SASL handshake with aiokafka: True if the broker answered that authentication
    failed (wrong user, password or mechanism).

    kafka-python can drop that answer: Kafka closes the connection right after a failed
    authentication, and when kafka-python sees the close before its handshake has read the
    answer, it reports only a lost connection (nothing about authentication reaches its log)
    and retries until the bootstrap times out. Which of the two a run sees depends on
    timing. aiokafka reads the buffered answer before it notices the close, so this verdict
    does not depend on timing."""
    import asyncio

    from aiokafka.conn import create_conn
    from aiokafka.errors import AuthenticationFailedError, SaslAuthenticationFailed

    cfg = kafka_client_config(settings)
    ssl_context = None
    if settings.kafka_security_protocol.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context

        ssl_context = create_ssl_context(cafile=cfg.get("ssl_cafile"))
    host, _, port = cfg["bootstrap_servers"][0].strip().rpartition(":")

    async def probe() -> bool:
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host or "localhost",
                    int(port),
                    client_id=f"{settings.app_id}-admin",
                    request_timeout_ms=int(timeout_s * 1000),
                    ssl_context=ssl_context,
                    security_protocol=cfg["security_protocol"],
                    sasl_mechanism=cfg["sasl_mechanism"],
                    sasl_plain_username=cfg["sasl_plain_username"],
                    sasl_plain_password=cfg["sasl_plain_password"],
                ),
                timeout_s,
            )
        except (SaslAuthenticationFailed, AuthenticationFailedError):
            return True
        except Exception:  # unreachable, timed out, TLS: not an answer about credentials
            return False
        conn.close()
        return False

    try:
        return asyncio.run(probe())
    except Exception:  # e.g. called inside a running loop: no verdict
        return False
