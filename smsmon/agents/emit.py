"""What every agent does with its output: publish an alert, or stop the process when output
or a batch fails (so the inputs are processed again after the restart)."""

from __future__ import annotations

import collections
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterable

from smsmon.config.settings import Settings
from smsmon.contract.codec import encode_alert
from smsmon.contract.models import Alert
from smsmon.rules.reference import ReferenceBook
from smsmon.streams.metrics import Metrics
from smsmon.streams.output import BatchOutput

log = logging.getLogger(__name__)


def publish_alerts(
    out: BatchOutput,
    settings: Settings,
    metrics: Metrics,
    book: ReferenceBook,
    alerts: Iterable[tuple[Alert, float]],
) -> None:
    """Queue a batch's alerts (each with the monotonic time its input arrived) unless an
    exemption covers one (then only count it as suppressed); counted once per batch and
    label set, not per alert (a labelled counter's lookup costs more than the increment)."""
    exemptions = book.exemptions
    latency = metrics.detection_latency
    topic = settings.topic_alerts
    add = out.add
    published: collections.Counter[tuple[str, str]] = collections.Counter()
    suppressed: collections.Counter[tuple[str, str]] = collections.Counter()
    marketing: collections.Counter[tuple[str, str]] = collections.Counter()
    for alert, t_in in alerts:
        sev = alert.severity.value
        if exemptions.by_id and exemptions.match(alert) is not None:
            suppressed[(alert.rule, sev)] += 1
            continue

        def acked(t_in: float = t_in) -> None:
            latency.observe(time.monotonic() - t_in)

        add(topic, alert.alert_id.encode(), encode_alert(alert), on_ack=acked)
        published[(alert.rule, sev)] += 1
        if alert.sector is not None:
            marketing[(alert.rule, alert.sector)] += 1
    for (rule, sev), n in published.items():
        metrics.alerts.labels(rule, sev).inc(n)
    for (rule, sev), n in suppressed.items():
        metrics.alerts_suppressed.labels(rule, sev).inc(n)
    for (rule, sector), n in marketing.items():
        metrics.marketing_alerts.labels(rule, sector).inc(n)


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
