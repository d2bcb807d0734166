"""Shared helpers of the reliability suite: producing, completion, the exact alert set, event
builders and dedicated brokers. The tests are in the test_reliability_*.py files beside this
one, by theme (kills and recovery, the broker, input, outputs); test_security.py uses these
helpers too.

Every test asserts a guarantee (the exact per-message alert set, exactly-once dead letters,
revocations that survive), never a timing. Completion is detected by the consumer group's
committed offsets reaching the end of every input topic: Faust flushes the producer before it
commits, so at that point every alert of every processed record is on the alerts topic.

The tests carry the markers `integration` and `reliability`; `make test` runs them last
(`pytest -m reliability`), `make test-reliability` runs only them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from bench.harness import Broker, running_broker
from smsmon.rules.catalog import ALERT_NAMESPACE
from smsmon.tools.scenario import ENTERPRISES, Builder, Scenario
from tests.integration.conftest import Env, WaitTimeout, Worker, wait_until

Row = tuple[bytes | None, bytes | None]
EVENT_KINDS = ("mt", "mo", "dlr")

# A dedicated broker per test or module (test_security.py imports these names).
LocalBroker = Broker
local_broker = running_broker


@contextlib.contextmanager
def env_on(broker: Broker, tmp: Path, bootstrap: str | None = None) -> Iterator[Env]:
    """An isolated smsmon environment on `broker`; stops its workers after."""
    env = Env(bootstrap or broker.bootstrap, f"t{uuid.uuid4().hex[:10]}", tmp)
    try:
        yield env
    finally:
        for w in env.workers:
            w.stop()


# -- producing -------------------------------------------------------------------------------


def enc(value: Any) -> bytes | None:
    return None if value is None else json.dumps(value, ensure_ascii=False).encode()


def try_produce(
    bootstrap: str, topic: str, rows: list[Row], **config: Any
) -> tuple[list[tuple[int, int]], list[Any]]:
    """Produce in order (librdkafka's partitioner); (partition, offset) per row, and errors."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "message.max.bytes": 2_000_000,
            "enable.idempotence": True,
            **config,
        }
    )
    placed: list[tuple[int, int]] = [(-1, -1)] * len(rows)
    errors: list[Any] = []

    def on_delivery(i: int) -> Any:
        def cb(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)
            else:
                placed[i] = (msg.partition(), msg.offset())

        return cb

    for i, (key, value) in enumerate(rows):
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery(i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    return placed, errors


def produce_rows(
    bootstrap: str, topic: str, rows: list[Row], **config: Any
) -> list[tuple[int, int]]:
    """Produce in order and fail on any delivery error; (partition, offset) of each row."""
    placed, errors = try_produce(bootstrap, topic, rows, **config)
    assert not errors, errors[:3]
    return placed


def event_rows(events: list[tuple[str, dict[str, Any]]]) -> list[Row]:
    return [(k.encode(), enc(ev)) for k, ev in events]


def produce_reference(env: Env, scenario: Scenario, workers: list[Worker]) -> None:
    """Publish ports, signatures and consent; wait until the workers hold all of it."""
    ref = scenario.reference
    for name, rows in (
        ("sms.ref.ports", ref.ports),
        ("sms.ref.signatures", ref.signatures),
        ("sms.ref.consent", ref.consent),
    ):
        produce_rows(env.bootstrap, env.topic(name), [(k.encode(), enc(v)) for k, v in rows])
    pairs = len({k for k, _ in ref.consent})
    wait_for(
        workers,
        lambda: (
            sum(w.sample("smsmon_reference_entries", {"table": "consent"}) for w in workers)
            == pairs
            and all(
                w.sample("smsmon_reference_entries", {"table": "ports"}) == len(ref.ports)
                for w in workers
            )
        ),
        120,
        f"{pairs} consent pairs and {len(ref.ports)} ports loaded",
    )


def wait_for(
    workers: list[Worker], predicate: Any, timeout: float, what: str, every: float = 0.25
) -> Any:
    """Like wait_until, but fails at once (with the log) when one of `workers` exits."""
    try:
        return wait_until(predicate, timeout, what, every, workers=workers)
    except WaitTimeout:
        for w in workers:
            print(w.log()[-3000:])
        raise


def events_seen(workers: list[Worker]) -> float:
    total = 0.0
    for w in workers:
        with contextlib.suppress(Exception):
            total += sum(w.sample("smsmon_events_total", {"kind": k}) for k in EVENT_KINDS)
    return total


# -- completion and the alert set ----------------------------------------------------------


def input_topics(env: Env) -> list[str]:
    """Every topic the smsmon group consumes and commits (stage 2 reads `<app>-counts`)."""
    return [
        env.topic("sms.events"),
        env.topic("sms.ref.consent"),
        env.topic("sms.complaints"),
        env.rekey_topic,
        env.counts_topic,
    ]


def backlog(env: Env) -> int:
    """Records of the input topics not yet committed by the smsmon consumer group."""
    return sum(backlog_by_partition(env).values())


def backlog_by_partition(env: Env) -> dict[str, int]:
    """Uncommitted records per input topic-partition (the ones with any left)."""
    consumer = KafkaConsumer(bootstrap_servers=env.bootstrap, enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=env.bootstrap)
    try:
        tps = [
            TopicPartition(t, p)
            for t in input_topics(env)
            for p in consumer.partitions_for_topic(t) or ()
        ]
        end = consumer.end_offsets(tps)  # first the ends, then what is committed
        committed = admin.list_group_offsets({env.prefix: None}).get(env.prefix, {})
        left = {
            f"{tp.topic}[{tp.partition}]": end[tp]
            - (committed[tp].offset if tp in committed else 0)
            for tp in tps
        }
        return {k: v for k, v in left.items() if v > 0}
    finally:
        consumer.close()
        admin.close()


def wait_settled(env: Env, workers: list[Worker], timeout: float = 150) -> None:
    """Wait until the group committed every input record (so all outputs were flushed)."""

    try:
        wait_until(
            lambda: backlog(env) == 0,
            timeout,
            "the consumer group to commit every input record",
            every=1.0,
            workers=workers,
        )
    except AssertionError:
        for w in workers:
            print(w.log()[-4000:])
            with contextlib.suppress(Exception):
                print(w.metrics_text())
        print(topic_layout(env))
        with contextlib.suppress(Exception):
            print("backlog:", backlog_by_partition(env))
        raise


def topic_layout(env: Env) -> str:
    """Partition counts of this environment's topics (diagnostics for failures)."""
    with contextlib.suppress(Exception):
        admin = KafkaAdminClient(bootstrap_servers=env.bootstrap)
        try:
            found = []
            for t in admin.describe_topics():
                name = t.get("name") or t.get("topic")
                if name.startswith(env.prefix) or name.startswith("sms."):
                    found.append(f"{name}={len(t['partitions'])}")
            return "topics: " + ", ".join(sorted(found))
        finally:
            admin.close()
    return "topics: unavailable"


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp_ms: int


def read_topic(bootstrap: str, topic: str, timeout: float = 120) -> list[Record]:
    """Every committed record of `topic` up to its end as of now (fails if it cannot get
    there); read_committed, since the worker writes in transactions (`read_records`)."""
    return read_records(bootstrap, topic, timeout=timeout)


def per_message_alerts(env: Env) -> list[tuple[bytes, dict[str, Any]]]:
    """(key, alert) of every per-message alert (aggregate alerts have no event_id)."""
    out = []
    for r in read_topic(env.bootstrap, env.topic("sms.alerts")):
        assert r.key is not None and r.value is not None
        a = json.loads(r.value)
        if a.get("event_id"):
            out.append((r.key, a))
    return out


class InventedAlertsError(AssertionError):
    """Alerts were published that the input does not justify (nothing was missing)."""


def assert_alert_set(env: Env, expected: set[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """The per-message (event_id, rule) set equals `expected`; ids are the contract's uuid5.

    Returns how often each pair was published (duplicates are allowed: at least once).
    Raises AssertionError for missing alerts or bad ids, InventedAlertsError when the only
    discrepancy is alerts that should not exist.
    """
    alerts = per_message_alerts(env)
    seen: Counter[tuple[str, str]] = Counter()
    for key, a in alerts:
        want_id = str(uuid.uuid5(ALERT_NAMESPACE, f"{a['rule']}|{a['event_id']}"))
        assert a["alert_id"] == want_id, a
        assert key.decode() == want_id
        seen[(a["event_id"], a["rule"])] += 1
    got = set(seen)
    missing, invented = sorted(expected - got), sorted(got - expected)
    assert not missing, f"{len(missing)} alerts missing (first: {missing[:10]})"
    if invented:
        raise InventedAlertsError(f"{len(invented)} alerts invented (first: {invented[:10]})")
    return seen


def kill_when(workers: list[Worker], victim: Worker, at_least: float, total: int) -> float:
    """SIGKILL `victim` once the workers processed `at_least` events; return the count then."""
    wait_for(workers, lambda: events_seen(workers) >= at_least, 120, f"{at_least} processed")
    seen = events_seen(workers)
    victim.kill()
    assert seen < total, "the kill must happen in the middle of the stream"
    return seen


# -- event builders ---------------------------------------------------------------------------

BASE = dt.datetime.fromisoformat("2026-10-20T10:00:00+08:00")
ENT0 = ENTERPRISES[0][0]  # 淘宝: marketing port 10660000, notification port 10690001
MARKETING = "【淘宝】双11预售开启,满300减50,回T退订"
NOTIFICATION = "【淘宝】您的订单已发货,请注意查收"


def at(seconds: float) -> str:
    return (BASE + dt.timedelta(seconds=seconds)).isoformat()


def mt(
    event_id: str,
    msisdn: str,
    seconds: float,
    *,
    port: str = "10660000",
    category: str = "marketing",
    text: str = MARKETING,
    account: str = "acct-0",
) -> tuple[str, dict[str, Any]]:
    return msisdn, {
        "event_id": event_id,
        "ts": at(seconds),
        "kind": "mt",
        "gateway": "gw-1",
        "port": port,
        "msisdn": msisdn,
        "account": account,
        "category": category,
        "text": text,
    }


def mo(
    event_id: str, msisdn: str, seconds: float, text: str = "退订"
) -> tuple[str, dict[str, Any]]:
    return msisdn, {
        "event_id": event_id,
        "ts": at(seconds),
        "kind": "mo",
        "gateway": "gw-mo",
        "port": "106600000123",
        "msisdn": msisdn,
        "text": text,
    }


def consent(msisdn: str, status: str, ts: str, enterprise: str = ENT0) -> tuple[bytes, bytes]:
    record = {"msisdn": msisdn, "enterprise": enterprise, "status": status, "ts": ts}
    return f"{msisdn}|{enterprise}".encode(), json.dumps(record, ensure_ascii=False).encode()


def reference_only(seed: int) -> Scenario:
    """The scenario reference data (ports, signatures) with no stories."""
    return Builder(seed=seed).build(stories=0)


GOOD: dict[str, Any] = {
    "event_id": "bad",
    "ts": at(0),
    "kind": "mt",
    "gateway": "gw-1",
    "port": "10690001",
    "msisdn": "13912345678",
    "account": "acct-0",
    "category": "notification",
    "text": NOTIFICATION,
}
DROP = object()


def bad(**changes: Any) -> bytes:
    d = dict(GOOD)
    for k, v in changes.items():
        if v is DROP:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d, ensure_ascii=False).encode()


# -- the fault storm (test_reliability_storm.py) ------------------------------------------------


def storm_input_topics(env: Env) -> list[str]:
    """Every topic the smsmon group consumes (`input_topics`)."""
    return input_topics(env)


def group_positions(env: Env, topics: list[str]) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (committed offset of the smsmon group, end offset); the ends are
    read first, so committed <= end unless the group commits past an end read a moment ago."""
    consumer = KafkaConsumer(bootstrap_servers=env.bootstrap, enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=env.bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        end = consumer.end_offsets(tps)
        committed = admin.list_group_offsets({env.prefix: None}).get(env.prefix, {})
        return {
            (tp.topic, tp.partition): (committed[tp].offset if tp in committed else 0, end[tp])
            for tp in tps
        }
    finally:
        consumer.close()
        admin.close()


def read_records(
    bootstrap: str,
    topic: str,
    *,
    committed_only: bool = True,
    start: dict[int, int] | None = None,
    partitions: set[int] | None = None,
    timeout: float = 120,
) -> list[Record]:
    """Every record of `topic` (of `partitions`, if given) from `start` (partition -> offset;
    default the beginning) to the end as of the read, with isolation level read_committed (or
    read_uncommitted, which also shows records of open and aborted transactions). Ends at
    each partition's EOF, so transaction markers at the end of a partition do not stall it."""
    from confluent_kafka import Consumer, KafkaError
    from confluent_kafka import TopicPartition as CTP

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
            "fetch.max.bytes": 52_428_800,
        }
    )
    try:
        meta = c.list_topics(topic, timeout=30).topics[topic]
        parts = sorted(p for p in meta.partitions if partitions is None or p in partitions)
        begin = start or {}
        c.assign([CTP(topic, p, begin.get(p, 0)) for p in parts])
        out: list[Record] = []
        pending = set(parts)
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"could not read {topic} to its end: {pending}"
            for m in c.consume(10_000, timeout=1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                    continue
                p, o = m.partition(), m.offset()
                assert p is not None and o is not None
                out.append(Record(m.key(), m.value(), p, o, m.timestamp()[1]))
        return out
    finally:
        c.close()


def offline_expectation(
    sim: Any, records: list[tuple[str, bytes, bytes]], secret: str
) -> tuple[list[Any], list[Any]]:
    """The fault-free answer for simulator records: (alerts, published revocations), from the
    same rules run in-process (bench.traffic.offline_alerts, plus the revocations the engine
    returns for attributed unsubscribes, which the worker publishes on sms.ref.consent)."""
    from smsmon.config.settings import Settings
    from smsmon.contract.canonical import MsisdnHasher
    from smsmon.contract.codec import DecodeContext, decode_event, decode_model, signature_key
    from smsmon.contract.models import Complaint, ConsentRecord, PortRecord, SignatureRecord
    from smsmon.rules.content.checks import content_checker
    from smsmon.rules.engine import EngineConfig
    from smsmon.rules.offline import OfflineRunner
    from smsmon.rules.reference import ReferenceBook
    from smsmon.rules.traffic import TrafficConfig

    ctx = DecodeContext(tz=sim.tz)
    book = ReferenceBook()
    for key, value in sim.reference.ports:
        book.put_port(key, PortRecord.model_validate(value))
    for key, value in sim.reference.signatures:
        book.put_signature(signature_key(key.encode()), SignatureRecord.model_validate(value))
    runner = OfflineRunner(
        book,
        EngineConfig(
            hasher=MsisdnHasher(secret.encode(), "k1"),
            content=content_checker(Settings(msisdn_secret=secret)),
        ),
        TrafficConfig(),
    )
    revocations: list[Any] = []
    on_event = runner.engine.on_event

    def capturing(event: Any, state: Any, detected_at: Any) -> Any:
        out = on_event(event, state, detected_at)
        revocations.extend(out.revocations)
        return out

    runner.engine.on_event = capturing  # type: ignore[method-assign]

    def decoded() -> Iterator[Any]:
        # a repeated id is skipped by the runner's per-subscriber window, as by the worker's
        for _, value in sim.reference.consent:
            yield ConsentRecord.model_validate(value)
        for kind, key, value in records:
            if kind == "complaint":
                yield decode_model(Complaint, value, ctx)
            else:
                yield decode_event(value, key, ctx)

    alerts = list(runner.run(decoded()))
    return alerts, revocations


def counter_lines(metrics_text: str) -> str:
    """The smsmon_*_total samples of a /metrics page (what a storm failure prints)."""
    return "\n".join(
        line
        for line in metrics_text.splitlines()
        if line.startswith("smsmon_") and "_total" in line.split("{")[0].split(" ")[0]
    )
