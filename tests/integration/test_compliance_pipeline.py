"""End to end against the real broker: the exact alert set, dead letters and metrics."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition

from smsmon.contract.canonical import partition_for
from smsmon.rules.catalog import ALERT_NAMESPACE, RULES_BY_ID
from smsmon.tools.scenario import Builder
from tests.integration.conftest import Env, Worker, wait_ready, wait_until

pytestmark = pytest.mark.integration


def produce(
    bootstrap: str,
    topic: str,
    rows: list[tuple[bytes | None, bytes | None]],
    partition: int | None = None,
) -> list[int]:
    """Produce with librdkafka's default partitioner (not smsmon's), or all to `partition`;
    return the partitions used."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 2_000_000}
    )
    partitions: list[int] = [-1] * len(rows)

    def on_delivery(i: int) -> Any:
        def cb(err: Any, msg: Any) -> None:
            assert err is None, err
            partitions[i] = msg.partition()

        return cb

    for i, (key, value) in enumerate(rows):
        where = {} if partition is None else {"partition": partition}
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery(i), **where)
        producer.poll(0)
    assert producer.flush(60) == 0
    return partitions


def read_all(bootstrap: str, topic: str, timeout_ms: int = 60_000) -> list[Any]:
    """Every record currently on `topic`: polls until the end offsets seen at the start."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_ms / 1000
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end offsets {end}")
            for records in consumer.poll(timeout_ms=1000, max_records=10_000).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def alert_pairs(env: Env) -> set[tuple[str, str]]:
    """(event_id, rule) of the per-message alerts (aggregate alerts have no event_id)."""
    records = read_all(env.bootstrap, env.topic("sms.alerts"))
    pairs = {(json.loads(r.value)["event_id"], json.loads(r.value)["rule"]) for r in records}
    return {(e, r) for e, r in pairs if e}


def test_pipeline_alerts_dead_letters_and_metrics_are_exact(kenv: Env) -> None:
    """A few thousand events from a foreign partitioner give exactly the expected alerts."""
    scenario = Builder(seed=7).build(stories=1500)
    worker = kenv.start_worker()
    wait_ready(worker)

    ref = scenario.reference
    enc = lambda v: None if v is None else json.dumps(v, ensure_ascii=False).encode()  # noqa: E731
    produce(
        kenv.bootstrap, kenv.topic("sms.ref.ports"), [(k.encode(), enc(v)) for k, v in ref.ports]
    )
    produce(
        kenv.bootstrap,
        kenv.topic("sms.ref.signatures"),
        [(k.encode(), enc(v)) for k, v in ref.signatures],
    )
    produce(
        kenv.bootstrap,
        kenv.topic("sms.ref.consent"),
        [(k.encode(), enc(v)) for k, v in ref.consent],
    )
    consent_pairs = len({k for k, _ in ref.consent})
    wait_until(
        lambda: worker.sample("smsmon_reference_entries", {"table": "consent"}) == consent_pairs,
        90,
        f"{consent_pairs} consent pairs loaded",
    )
    assert worker.sample("smsmon_reference_entries", {"table": "ports"}) == len(ref.ports)
    assert worker.sample("smsmon_reference_entries", {"table": "signatures"}) == len(ref.signatures)

    # events (in per-msisdn order), a few repeated event_ids, then malformed records
    events = [
        (k.encode(), json.dumps(ev, ensure_ascii=False).encode()) for k, ev in scenario.events
    ]
    repeats = events[:25:5]
    rows: list[tuple[bytes | None, bytes | None]] = [*events, *repeats]
    rows += [(k, v) for k, v, _ in scenario.malformed]
    placed = produce(kenv.bootstrap, kenv.topic("sms.events"), rows)

    n_valid = len(events)
    wait_until(
        lambda: (
            sum(worker.sample("smsmon_events_total", {"kind": k}) for k in ("mt", "mo", "dlr"))
            >= n_valid
        ),
        120,
        "all events counted",
    )
    wait_until(
        lambda: worker.sample("smsmon_invalid_events_total") >= len(scenario.malformed),
        60,
        "dead letters counted",
    )
    got = wait_until(
        lambda: p if len(p := alert_pairs(kenv)) >= len(scenario.expected) else None,
        90,
        "alerts published",
    )

    # 1. the exact alert set, with contract ids and no raw subscriber data
    assert got == scenario.expected
    records = read_all(kenv.bootstrap, kenv.topic("sms.alerts"))
    texts = {ev["text"] for _, ev in scenario.events if "text" in ev}
    for r in records:
        a = json.loads(r.value)
        if not a.get("event_id"):
            continue  # aggregate alerts: covered by test_traffic_detection
        assert a["alert_id"] == str(uuid.uuid5(ALERT_NAMESPACE, f"{a['rule']}|{a['event_id']}"))
        assert r.key.decode() == a["alert_id"]
        assert a["severity"] == RULES_BY_ID[a["rule"]].severity.value
        assert a["msisdn_hash"].startswith("k1:") and len(a["msisdn_hash"]) == 3 + 64
        assert "****" in a["msisdn_masked"]
        raw = r.value.decode()
        assert not any(t in raw for t in texts if len(t) > 6)
    assert not any(
        m[:3] + m[3:] in r.value.decode() for r in records for m in {k for k, _ in scenario.events}
    )

    # 2. dead letters: one per malformed record, with its reason and original bytes
    dead = [json.loads(r.value) for r in read_all(kenv.bootstrap, kenv.topic("sms.events.dlq"))]
    assert Counter(d["reason"] for d in dead) == Counter(r for _, _, r in scenario.malformed)
    assert all(d["source_topic"] in (kenv.topic("sms.events"), kenv.rekey_topic) for d in dead)
    assert all(d.get("value_text") or d.get("value_base64") for d in dead)

    # 3. metrics agree with the scenario
    want_alerts = Counter(rule for _, rule in scenario.expected)
    for rule, n in want_alerts.items():
        sev = RULES_BY_ID[rule].severity.value
        assert worker.sample("smsmon_alerts_total", {"rule": rule, "severity": sev}) == n, rule
    for reason, n in Counter(r for _, _, r in scenario.malformed).items():
        assert worker.sample("smsmon_invalid_events_total", {"reason": reason}) == n, reason
    kinds = Counter((ev["kind"], ev.get("category", "none")) for _, ev in scenario.events)
    for (kind, cat), n in kinds.items():
        assert worker.sample("smsmon_events_total", {"kind": kind, "category": cat}) == n
    assert worker.sample("smsmon_duplicate_events_total") == len(repeats)
    assert (
        worker.sample("smsmon_unsubscribes_total", {"attributed": "true"}) == scenario.unsubscribes
    )
    misplaced = sum(
        1
        for (key, _), p in zip(events, placed[: len(events)], strict=True)
        if p != partition_for(key.decode(), kenv.partitions)
    ) + sum(
        1
        for (key, _), p in zip(
            repeats, placed[len(events) : len(events) + len(repeats)], strict=True
        )
        if p != partition_for(key.decode(), kenv.partitions)
    )
    assert misplaced > 0, "the foreign partitioner should misplace some events"
    # a malformed record is forwarded too when its msisdn and ts can be read (it is decoded,
    # and dead-lettered under its origin, at its home: docs/contract.md, "Partitioning")
    from smsmon.contract.codec import DecodeContext, key_msisdn, route_event

    ctx = DecodeContext(tz=ZoneInfo("Asia/Shanghai"))
    forwarded_bad = 0
    for (key, value, _), p in zip(
        scenario.malformed, placed[-len(scenario.malformed) :], strict=True
    ):
        home = key_msisdn(key) if key is not None else None
        routed = route_event(value, home, ctx) if key is None or home is not None else None
        if routed is not None and partition_for(routed[0], kenv.partitions) != p:
            forwarded_bad += 1
    assert worker.sample("smsmon_rekeyed_total", {"topic": "events"}) == misplaced + forwarded_bad
    assert worker.sample("smsmon_detection_latency_seconds_count") >= len(scenario.expected)
    assert worker.proc.poll() is None, "the worker must survive bad input"


def test_worker_refuses_topics_with_the_wrong_partition_count(kenv: Env) -> None:
    """An existing events topic with another partition count stops start-up with a clear error."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kenv.bootstrap)
    admin.create_topics([NewTopic(kenv.topic("sms.events"), 3, 1)])
    admin.close()
    worker: Worker = kenv.start_worker()
    assert worker.proc.wait(timeout=60) != 0
    log = worker.log()
    assert "SMSMON_PARTITIONS=4" in log and "has 3 partitions" in log
