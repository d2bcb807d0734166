"""publish_alerts: a batch's alerts queued one by one, counted once per label set."""

from __future__ import annotations

import types
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from smsmon.agents import emit
from smsmon.config.settings import Settings
from smsmon.streams.metrics import Metrics


class Out:
    def __init__(self) -> None:
        self.added: list[tuple[str, bytes, Any]] = []

    def add(self, topic: str, key: bytes, value: bytes, on_ack: Any = None) -> None:
        self.added.append((topic, key, on_ack))


def alert(n: int, rule: str, sector: str | None = None) -> Any:
    return types.SimpleNamespace(
        alert_id=f"a{n}", rule=rule, severity=types.SimpleNamespace(value="high"), sector=sector
    )


def test_counts_per_batch_equal_the_alerts_published_and_suppressed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(emit, "encode_alert", lambda a: a.alert_id.encode())
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    exempt = object()
    book: Any = types.SimpleNamespace(
        exemptions=types.SimpleNamespace(
            by_id={"e1": exempt}, match=lambda a: exempt if a.rule == "port.account" else None
        )
    )
    out = Out()
    batch = [
        (alert(1, "consent.missing", "ecommerce"), 1.0),
        (alert(2, "consent.missing", "ecommerce"), 2.0),
        (alert(3, "port.account"), 3.0),
        (alert(4, "content.optout_missing", "finance"), 4.0),
        (alert(5, "consent.missing"), 5.0),
    ]
    emit.publish_alerts(out, Settings(), metrics, book, iter(batch))  # type: ignore[arg-type]

    assert [k for _, k, _ in out.added] == [b"a1", b"a2", b"a4", b"a5"]
    assert {t for t, _, _ in out.added} == {Settings().topic_alerts}

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("smsmon_alerts_total", rule="consent.missing", severity="high") == 3
    assert value("smsmon_alerts_total", rule="content.optout_missing", severity="high") == 1
    assert value("smsmon_alerts_total", rule="port.account", severity="high") is None
    assert value("smsmon_alerts_suppressed_total", rule="port.account", severity="high") == 1
    assert value("smsmon_marketing_alerts_total", rule="consent.missing", sector="ecommerce") == 2
    assert (
        value("smsmon_marketing_alerts_total", rule="content.optout_missing", sector="finance") == 1
    )

    # each alert's acknowledgement observes its own input's arrival time
    monkeypatch.setattr(emit.time, "monotonic", lambda: 10.0)
    for _, _, acked in out.added:
        acked()
    assert value("smsmon_detection_latency_seconds_count") == 4
    assert value("smsmon_detection_latency_seconds_sum") == (9.0 + 8.0 + 6.0 + 5.0)
