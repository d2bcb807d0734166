"""Metrics: the contract's smsmon_* names, types and labels on a fresh registry."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from smsmon.streams.metrics import Metrics

pytestmark = pytest.mark.unit


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


def labelled(metric: Any, **contract_labels: str) -> tuple[Any, dict[str, str]]:
    """The child for the contract's labels (filling any extra label with a fixed value)."""
    names: tuple[str, ...] = tuple(metric._labelnames)
    assert set(contract_labels) <= set(names), f"{names} lacks {set(contract_labels)}"
    labels = {n: contract_labels.get(n, "x") for n in names}
    return metric.labels(**labels), labels


def families(registry: CollectorRegistry) -> dict[str, str]:
    return {m.name: m.type for m in registry.collect()}


def test_contract_metrics_are_registered_with_their_types(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    """Every metric the contract names exists with the right type."""
    got = families(registry)
    assert got["smsmon_events"] == "counter"
    assert got["smsmon_alerts"] == "counter"
    assert got["smsmon_invalid_events"] == "counter"
    assert got["smsmon_rekeyed"] == "counter"
    assert got["smsmon_reference_entries"] == "gauge"
    assert got["smsmon_unsubscribes"] == "counter"
    assert got["smsmon_detection_latency_seconds"] == "histogram"


def test_events_total_counts_by_kind_and_category(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    """smsmon_events_total{kind,category}."""
    child, labels = labelled(metrics.events, kind="mt", category="marketing")
    child.inc()
    child.inc()
    assert registry.get_sample_value("smsmon_events_total", labels) == 2.0


def test_alerts_total_counts_by_rule_and_severity(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    """smsmon_alerts_total{rule,severity}."""
    child, labels = labelled(metrics.alerts, rule="consent.revoked", severity="critical")
    child.inc()
    assert registry.get_sample_value("smsmon_alerts_total", labels) == 1.0


def test_invalid_events_total_counts_by_reason(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    """smsmon_invalid_events_total{reason}."""
    child, labels = labelled(metrics.invalid, reason="schema:msisdn")
    child.inc(3)
    assert registry.get_sample_value("smsmon_invalid_events_total", labels) == 3.0


def test_rekeyed_total_counts_by_topic(registry: CollectorRegistry, metrics: Metrics) -> None:
    """smsmon_rekeyed_total{topic}."""
    child, labels = labelled(metrics.rekeyed, topic="sms.events")
    child.inc()
    assert registry.get_sample_value("smsmon_rekeyed_total", labels) == 1.0


def test_reference_entries_is_a_gauge_by_table(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    """smsmon_reference_entries{table} for ports, signatures and consent; it can go down."""
    for table, n in (("ports", 12), ("signatures", 30), ("consent", 1000)):
        child, labels = labelled(metrics.reference_entries, table=table)
        child.set(n)
        assert registry.get_sample_value("smsmon_reference_entries", labels) == float(n)
    child, labels = labelled(metrics.reference_entries, table="consent")
    child.dec(1)
    assert registry.get_sample_value("smsmon_reference_entries", labels) == 999.0


def test_unsubscribes_total_counts_by_attribution(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    """smsmon_unsubscribes_total{attributed}."""
    yes, yes_labels = labelled(metrics.unsubscribes, attributed="true")
    no, no_labels = labelled(metrics.unsubscribes, attributed="false")
    yes.inc()
    no.inc()
    no.inc()
    assert registry.get_sample_value("smsmon_unsubscribes_total", yes_labels) == 1.0
    assert registry.get_sample_value("smsmon_unsubscribes_total", no_labels) == 2.0


def test_detection_latency_is_a_histogram_in_seconds(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    """smsmon_detection_latency_seconds observes seconds into buckets, count and sum."""
    metrics.detection_latency.observe(0.02)
    metrics.detection_latency.observe(0.3)
    assert registry.get_sample_value("smsmon_detection_latency_seconds_count") == 2.0
    assert registry.get_sample_value("smsmon_detection_latency_seconds_sum") == pytest.approx(0.32)
    assert (
        registry.get_sample_value("smsmon_detection_latency_seconds_bucket", {"le": "+Inf"}) == 2.0
    )


def test_metrics_use_only_the_registry_given() -> None:
    """Two Metrics on two fresh registries do not clash and do not share values."""
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    m1, _ = Metrics(r1), Metrics(r2)
    child, labels = labelled(m1.rekeyed, topic="sms.ref.consent")
    child.inc()
    assert r1.get_sample_value("smsmon_rekeyed_total", labels) == 1.0
    assert r2.get_sample_value("smsmon_rekeyed_total", labels) is None
