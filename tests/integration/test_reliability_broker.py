"""Reliability against the real broker: the broker stops and comes back under a running
worker. Helpers: test_reliability.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from smsmon.tools.scenario import Builder
from tests.integration.conftest import wait_ready
from tests.integration.reliability import (
    assert_alert_set,
    env_on,
    event_rows,
    events_seen,
    local_broker,
    produce_reference,
    produce_rows,
    try_produce,
    wait_for,
    wait_settled,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def test_broker_restart_while_the_worker_runs(tmp_path: Path) -> None:
    """The broker stops and comes back (same data): the running worker reconnects by itself
    and every alert of the events produced before, during and after is published."""
    scenario = Builder(seed=4).build(stories=3_000)
    rows = event_rows(scenario.events)
    with local_broker(tmp_path / "kafka") as broker, env_on(broker, tmp_path) as env:
        worker = env.start_worker("w1")
        wait_ready(worker)
        produce_reference(env, scenario, [worker])
        half = len(rows) // 2
        produce_rows(env.bootstrap, env.topic("sms.events"), rows[:half])
        wait_for([worker], lambda: events_seen([worker]) >= half // 2, 90, "first events")

        broker.stop()
        # the gateways keep sending: their producer buffers until the broker is back
        sent: list[tuple[list[tuple[int, int]], list[Any]]] = []
        sender = threading.Thread(
            target=lambda: sent.append(
                try_produce(
                    env.bootstrap, env.topic("sms.events"), rows[half:], **{"linger.ms": 50}
                )
            )
        )
        sender.start()
        time.sleep(8)  # the worker runs without a broker for a while
        assert worker.proc.poll() is None, worker.log()[-3000:]
        broker.start(keep=True)
        sender.join(timeout=120)
        assert sent and not sent[0][1], sent[0][1][:3] if sent else "producer still blocked"

        wait_settled(env, [worker], timeout=180)
        assert worker.proc.poll() is None, "the worker must survive without operator action"
        assert_alert_set(env, scenario.expected)
