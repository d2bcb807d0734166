"""Reliability against the real broker: what smsmon publishes and logs carries no raw msisdn
or message text, and its records carry the current time. Helpers: test_reliability.py."""

from __future__ import annotations

import datetime as dt
import re
import signal
import time

import pytest

from smsmon.tools.scenario import Builder
from tests.integration.conftest import Env, wait_ready
from tests.integration.reliability import (
    bad,
    event_rows,
    mo,
    mt,
    produce_reference,
    produce_rows,
    read_topic,
    wait_settled,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


# -- 7. privacy ---------------------------------------------------------------------------------

SECRET_TEXT = "机密文本-PRIVACY-MARKER-7731"


def test_no_raw_msisdn_or_text_in_logs_metrics_or_alerts(kenv: Env) -> None:
    """After a full run (valid, malformed and hostile records, a restart), the worker logs, the
    /metrics page and every alert carry no raw subscriber number and no message text."""
    scenario = Builder(seed=9).build(stories=1_500)
    marked = [
        mt("p-1", "13711112222", 0, text=f"【淘宝】{SECRET_TEXT},回T退订"),
        mt("p-2", "13711113333", 1, category="notification", text=f"{SECRET_TEXT} 13711114444"),
        mo("p-3", "13711115555", 2, text=f"{SECRET_TEXT} 退订"),
    ]
    rows = event_rows(scenario.events + marked)
    rows += [(k, v) for k, v, _ in scenario.malformed]
    rows += [(b"13711116666", bad(msisdn="13711116666", text=f"{SECRET_TEXT}\x00"))]
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    produce_reference(kenv, scenario, [worker])
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows)
    wait_settled(kenv, [worker])
    metrics = worker.metrics_text()
    worker.stop(signal.SIGTERM)
    logs = worker.copy_log("run1").read_text(errors="replace")
    again = kenv.start_worker("w1")  # restart: recovery and shutdown paths log too
    wait_ready(again)
    metrics += again.metrics_text()
    again.stop(signal.SIGTERM)
    logs += again.log()

    numbers = {k for k, _ in scenario.events} | {
        "13711112222",
        "13711113333",
        "13711114444",
        "13711115555",
        "13711116666",
        "13912345678",  # in the malformed records
    }
    texts = {ev["text"] for _, ev in scenario.events + marked if len(ev.get("text", "")) > 6}
    texts.add(SECRET_TEXT)
    alerts = read_topic(kenv.bootstrap, kenv.topic("sms.alerts"))
    assert alerts
    corpus = {
        "worker log": logs,
        "/metrics": metrics,
        "alerts": "\n".join(
            (r.value or b"").decode() + " " + (r.key or b"").decode() for r in alerts
        ),
    }
    digits = re.compile(r"(?<!\d)1\d{10}(?!\d)")
    for where, text in corpus.items():
        leaked_numbers = sorted(n for n in set(digits.findall(text)) if n in numbers)
        assert not leaked_numbers, f"raw msisdns in the {where}: {leaked_numbers[:5]}"
        leaked_texts = [t for t in texts if t in text]
        assert not leaked_texts, f"message texts in the {where}: {leaked_texts[:3]}"
        assert "integration-test-secret" not in text, f"the msisdn secret in the {where}"


# -- records smsmon publishes ------------------------------------------------------------------


def test_published_records_carry_the_current_time(kenv: Env) -> None:
    """Alerts, dead letters, forwarded (re-keyed) events and published revocations carry the
    time they were produced. A wrong record timestamp is silent data loss: the broker's
    time-based retention (7 days) deletes records that look decades old within minutes, and
    consumers whose offsets fall into the deleted range skip to the earliest offset left."""
    scenario = Builder(seed=13).build(stories=300)
    t0_ms = int(time.time() * 1000) - 60_000
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    produce_reference(kenv, scenario, [worker])
    rows = event_rows(scenario.events) + [(k, v) for k, v, _ in scenario.malformed]
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows)
    wait_settled(kenv, [worker])
    t1_ms = int(time.time() * 1000) + 60_000
    published = {
        "alerts": read_topic(kenv.bootstrap, kenv.topic("sms.alerts")),
        "dead letters": read_topic(kenv.bootstrap, kenv.topic("sms.events.dlq")),
        "re-keyed events": read_topic(kenv.bootstrap, kenv.rekey_topic),
        "revocations": [
            r
            for r in read_topic(kenv.bootstrap, kenv.topic("sms.ref.consent"))
            if r.value and b'"source":"mo"' in r.value
        ],
    }
    for what, records in published.items():
        assert records, f"the scenario must produce {what}"
        wrong = [r.timestamp_ms for r in records if not t0_ms <= r.timestamp_ms <= t1_ms]
        assert not wrong, (
            f"{len(wrong)} of {len(records)} {what} carry a timestamp outside the run "
            f"(first: {wrong[0]} ms = "
            f"{dt.datetime.fromtimestamp(wrong[0] / 1000, dt.UTC).isoformat()})"
        )
