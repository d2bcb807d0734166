"""What every agent does with its output: publish an alert, or stop the process when output
or a batch fails (so the inputs are processed again after the restart)."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback

from smsmon.config.settings import Settings
from smsmon.contract.codec import encode_alert
from smsmon.contract.models import Alert
from smsmon.rules.reference import ReferenceBook
from smsmon.streams.metrics import Metrics
from smsmon.streams.output import BatchOutput

log = logging.getLogger(__name__)


def publish_alert(
    out: BatchOutput,
    settings: Settings,
    metrics: Metrics,
    book: ReferenceBook,
    alert: Alert,
    t_in: float,
) -> None:
    """Queue an alert unless an exemption covers it (then only count it as suppressed)."""
    sev = alert.severity.value
    if book.exemptions.by_id and book.exemptions.match(alert) is not None:
        metrics.alerts_suppressed.labels(alert.rule, sev).inc()
        return
    latency = metrics.detection_latency

    def acked() -> None:
        latency.observe(time.monotonic() - t_in)

    out.add(settings.topic_alerts, alert.alert_id.encode(), encode_alert(alert), on_ack=acked)
    metrics.alerts.labels(alert.rule, sev).inc()
    if alert.sector is not None:
        metrics.marketing_alerts.labels(alert.rule, alert.sector).inc()


def fail_fast(what: str) -> None:
    """Stop the process at once after an unexpected batch-level error.

    Records that break a rule are isolated per record (dead letters); an error outside that
    isolation means a bug or a broken Kafka connection. Faust would restart the agent and
    its `take_events` would ack the failed batch on the way out, losing it. Exiting before
    anything is acked or committed makes the restarted worker process the batch again.
    """
    # The stack, not the exception's message: a message may quote subscriber data.
    exc = sys.exc_info()[1]
    frames = "".join(traceback.format_tb(exc.__traceback__)) if exc is not None else ""
    log.critical(
        "%s failed with %s; exiting so the batch is processed again after restart\n%s",
        what,
        type(exc).__name__,
        frames,
    )
    logging.shutdown()
    os._exit(70)


def send_failed(exc: BaseException, topic: str) -> None:
    """A batch of output records was refused: exit before its inputs are committed.

    The records were queued by a processed batch whose offsets Faust will commit after the
    producer flush; the flush does not fail on a refused batch. Exiting now means the inputs
    are processed again after the restart instead of their outputs being lost.
    """
    log.critical(
        "sending to %s failed with %s; exiting so the inputs are processed again after restart",
        topic,
        type(exc).__name__,
    )
    logging.shutdown()
    os._exit(70)
