"""Reliability against the real broker: crashes, rebalances, state recovery, broker restarts,
reference changes in flight, hostile input and privacy.

Every test asserts a guarantee (the exact per-message alert set, exactly-once dead letters,
revocations that survive), never a timing. Completion is detected by the consumer group's
committed offsets reaching the end of every input topic: Faust flushes the producer before it
commits, so at that point every alert of every processed record is on the alerts topic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from smsmon.rules.catalog import ALERT_NAMESPACE
from smsmon.tools.scenario import ENTERPRISES, Builder, Scenario
from tests.integration.conftest import SCRIPT, Env, Worker, free_port, wait_ready, wait_until

# Fault-injection tests (issue 7): run with `make test-reliability`; not yet part of `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.reliability]

Row = tuple[bytes | None, bytes | None]
EVENT_KINDS = ("mt", "mo", "dlr")


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
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        for w in workers:
            if w.proc.poll() is not None:
                raise WorkerExitedError(
                    f"worker exited ({w.proc.returncode}) waiting for {what}:\n{w.log()[-6000:]}"
                )
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # metrics not up yet and the like
            last = exc
        time.sleep(every)
    for w in workers:
        print(w.log()[-3000:])
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


class WorkerExitedError(AssertionError):
    """A worker process ended while the test expected it to run."""


def events_seen(workers: list[Worker]) -> float:
    total = 0.0
    for w in workers:
        with contextlib.suppress(Exception):
            total += sum(w.sample("smsmon_events_total", {"kind": k}) for k in EVENT_KINDS)
    return total


# -- completion and the alert set ----------------------------------------------------------


def input_topics(env: Env) -> list[str]:
    return [env.topic("sms.events"), env.topic("sms.ref.consent"), f"{env.prefix}-rekey"]


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

    def done() -> bool:
        for w in workers:
            if w.proc.poll() is not None:
                raise AssertionError(f"worker exited:\n{w.log()[-4000:]}")
        return backlog(env) == 0

    try:
        wait_until(done, timeout, "the consumer group to commit every input record", every=1.0)
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
    """Every record of `topic` up to its end offsets as of now (fails if it cannot get there)."""
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTP

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
        }
    )
    try:
        meta = c.list_topics(topic, timeout=30).topics[topic]
        ends = {}
        for p in meta.partitions:
            low, high = c.get_watermark_offsets(CTP(topic, p), timeout=30)
            if high > low:
                ends[p] = high
        c.assign([CTP(topic, p, 0) for p in ends])
        out: list[Record] = []
        done = {p: 0 for p in ends}
        deadline = time.monotonic() + timeout
        while any(done[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, f"could not read {topic} to its end: {done} {ends}"
            for m in c.consume(10_000, timeout=1.0):
                if m.error():
                    continue
                out.append(Record(m.key(), m.value(), m.partition(), m.offset(), m.timestamp()[1]))
                done[m.partition()] = max(done[m.partition()], m.offset() + 1)
        return out
    finally:
        c.close()


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


def copy_log(worker: Worker, suffix: str) -> Path:
    """Keep a worker's log before a restart under the same name overwrites it."""
    dest = worker.log_path.with_name(f"{worker.log_path.stem}-{suffix}.log")
    shutil.copy(worker.log_path, dest)
    return dest


def kill_when(workers: list[Worker], victim: Worker, at_least: float, total: int) -> float:
    """SIGKILL `victim` once the workers processed `at_least` events; return the count then."""
    wait_for(workers, lambda: events_seen(workers) >= at_least, 120, f"{at_least} processed")
    seen = events_seen(workers)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=30)
    assert seen < total, "the kill must happen in the middle of the stream"
    return seen


# -- 1. SIGKILL and restart --------------------------------------------------------------------


_DIAG = re.compile(
    r"smsmon_(events|duplicate_events|invalid_events|processing_errors|consent_updates|rekeyed"
    r"|alerts_suppressed|reference_entries)"
)


def test_sigkill_mid_stream_then_restart_loses_and_invents_no_alert(kenv: Env) -> None:
    """A worker killed with SIGKILL mid-stream and restarted on the same data dir: the
    per-message alert set equals the expected one (repeats allowed, none missing or invented).
    """
    scenario = Builder(seed=11).build(stories=16_600)
    rows = event_rows(scenario.events)
    assert len(rows) >= 20_000
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    produce_reference(kenv, scenario, [worker])

    first = int(len(rows) * 0.6)
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows[:first])
    kill_when([worker], worker, len(rows) * 0.25, len(rows))
    copy_log(worker, "killed")
    # the gateways keep sending while the worker is down
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows[first:])

    restarted = kenv.start_worker("w1")  # same data dir
    wait_ready(restarted)
    wait_settled(kenv, [restarted])
    try:
        seen = assert_alert_set(kenv, scenario.expected)
    except AssertionError:
        # Seen once in CI (round 5, docs/reliability.md): keep what tells loss from skipping.
        text = restarted.metrics_text()
        print("\n".join(line for line in text.splitlines() if _DIAG.match(line)))
        print(topic_layout(kenv))
        raise
    print(f"alerts: {sum(seen.values())} published for {len(seen)} distinct (at least once)")
    assert restarted.proc.poll() is None


def test_replay_of_uncommitted_records_gives_the_same_alerts(kenv: Env) -> None:
    """Deterministic form of a crash between the changelog flush and the offset commit.

    The worker processes a stream completely (state and changelog written), stops, and the
    group's input offsets are rewound, which is exactly what a crash before the commit leaves
    behind. The replay must publish the same per-message alerts, and no others.
    """
    from kafka.admin import OffsetSpec

    scenario = Builder(seed=21).build(stories=600)
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    produce_reference(kenv, scenario, [worker])
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), event_rows(scenario.events))
    wait_settled(kenv, [worker])
    assert_alert_set(kenv, scenario.expected)  # exact before the "crash"
    worker.stop(signal.SIGTERM)  # leaves the group, so its offsets can be rewound
    assert worker.proc.returncode is not None

    admin = KafkaAdminClient(bootstrap_servers=kenv.bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=kenv.bootstrap)
    try:
        topics = [kenv.topic("sms.events"), f"{kenv.prefix}-rekey"]
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
        result = admin.reset_group_offsets(kenv.prefix, {tp: OffsetSpec.EARLIEST for tp in tps})
        assert all(r["error"].errno == 0 for r in result.values()), result
    finally:
        consumer.close()
        admin.close()

    restarted = kenv.start_worker("w1")  # same data dir: state is ahead of the offsets
    wait_ready(restarted)
    wait_for([restarted], lambda: events_seen([restarted]) >= len(scenario.events), 120, "replay")
    wait_settled(kenv, [restarted])
    assert_alert_set(kenv, scenario.expected)


# -- 2. rebalance ------------------------------------------------------------------------------

# Faust reads BROKER_SESSION_TIMEOUT from the environment. The default (60 s) is how long the
# group waits for a SIGKILLed member; 10 s keeps the test short without changing what it checks.
FAST_SESSION = {"BROKER_SESSION_TIMEOUT": "10"}


def test_rebalance_kill_one_of_two_then_a_third_joins(kenv: Env) -> None:
    """Two workers share the group; one is SIGKILLed mid-stream, then a third joins: the alert
    set is exact (repeats allowed)."""
    scenario = Builder(seed=12).build(stories=9_000)
    rows = event_rows(scenario.events)
    w1 = kenv.start_worker("w1", **FAST_SESSION)
    w2 = kenv.start_worker("w2", **FAST_SESSION)
    wait_ready(w1)
    wait_ready(w2)
    produce_reference(kenv, scenario, [w1, w2])

    first = int(len(rows) * 0.6)
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows[:first])
    kill_when([w1, w2], w1, len(rows) * 0.25, len(rows))
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows[first:])
    w3 = kenv.start_worker("w3", **FAST_SESSION)
    wait_ready(w3)
    wait_settled(kenv, [w2, w3])
    assert w2.sample("smsmon_rebalances_total") >= 2  # w1 left, w3 joined
    assert_alert_set(kenv, scenario.expected)


def table_partitions(data_dir: Path) -> dict[tuple[str, int], Path]:
    """(table, partition) -> RocksDB directory, for every table partition a worker opened."""
    found = {}
    for db in data_dir.rglob("*.db"):
        name, _, partition = db.name[: -len(".db")].rpartition("-")
        found[(name, int(partition))] = db
    return found


def rocksdb_contents(path: Path) -> tuple[dict[bytes, bytes], int | None]:
    """A stopped worker's table partition: its keys and values, and its persisted offset."""
    from faust.stores.rocksdb import Store
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        data = dict(db.items())
    finally:
        db.close()
    offset = data.pop(Store.offset_key, None)
    return data, int(offset) if offset is not None else None


def test_standby_copies_equal_the_changelogs(kenv: Env) -> None:
    """Two workers with one standby replica: every table partition in either worker's RocksDB,
    active or standby, holds exactly what its changelog says up to the persisted offset, and
    standby records took smsmon's direct path (streams/faust_compat.py)."""
    scenario = Builder(seed=21).build(stories=4_000)
    rows = event_rows(scenario.events)
    w1 = kenv.start_worker("w1")
    w2 = kenv.start_worker("w2")
    wait_ready(w1)
    wait_ready(w2)
    produce_reference(kenv, scenario, [w1, w2])
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows)
    wait_settled(kenv, [w1, w2])
    assert_alert_set(kenv, scenario.expected)
    wait_for(
        [w1, w2],
        lambda: sum(w.sample("smsmon_standby_direct_writes_total") for w in (w1, w2)) > 0,
        60,
        "standby records written by the direct path",
    )
    time.sleep(3)  # the standbys read the last changelog records
    for w in (w1, w2):
        w.stop()
        assert w.proc.returncode == 0, w.log()[-4000:]
    copies = [table_partitions(kenv.tmp / f"data-{w}") for w in ("w1", "w2")]
    tables = {name for name, _ in copies[0]} | {name for name, _ in copies[1]}
    assert {"consent", "subscribers"} <= tables, tables
    changelogs = {
        name: read_topic(kenv.bootstrap, f"{kenv.prefix}-{name}-changelog") for name in tables
    }
    compared = 0
    for name, partition in sorted(set(copies[0]) & set(copies[1])):  # one active, one standby
        log = [r for r in changelogs[name] if r.partition == partition]
        for copy in copies:
            data, persisted = rocksdb_contents(copy[(name, partition)])
            if not log:
                assert data == {} and persisted is None
                continue
            assert persisted is not None, (name, partition)
            expected: dict[bytes, bytes] = {}
            for r in log:
                if r.offset <= persisted:
                    assert r.key is not None
                    if r.value is None:
                        expected.pop(r.key, None)
                    else:
                        expected[r.key] = r.value
            assert data == expected, (name, partition, len(data), len(expected))
            compared += bool(expected)
    assert compared >= 8, compared  # both copies of at least 4 non-empty partitions


# -- 3. state recovery from the changelog ------------------------------------------------------

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


def consent(msisdn: str, status: str, ts: str, enterprise: str = ENT0) -> Row:
    record = {"msisdn": msisdn, "enterprise": enterprise, "status": status, "ts": ts}
    return f"{msisdn}|{enterprise}".encode(), enc(record)


def reference_only(seed: int) -> Scenario:
    """The scenario reference data (ports, signatures) with no stories."""
    return Builder(seed=seed).build(stories=0)


def test_unsubscribe_before_a_crash_counts_after_restore_from_the_changelog(kenv: Env) -> None:
    """Unsubscribes processed before a SIGKILL still count on a worker with an EMPTY data dir:
    the consent table is restored from its Kafka changelog, not replayed from the input."""
    quitters = [f"137{i:08d}" for i in range(1, 41)]
    stayers = [f"137{i:08d}" for i in range(101, 111)]
    scenario = reference_only(3)
    scenario.reference.consent = [
        (k.decode(), json.loads(v or b"null"))
        for k, v in (consent(m, "granted", at(-30 * 86_400)) for m in quitters + stayers)
    ]
    w1 = kenv.start_worker("w1")
    wait_ready(w1)
    produce_reference(kenv, scenario, [w1])
    before = [mt(f"a-{m}", m, 0) for m in quitters + stayers] + [
        mo(f"u-{m}", m, 5) for m in quitters
    ]
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), event_rows(before))
    wait_for(
        [w1],
        lambda: w1.sample("smsmon_unsubscribes_total", {"attributed": "true"}) == len(quitters),
        60,
        "unsubscribes processed",
    )
    wait_settled(kenv, [w1])  # offsets (incl. the published revocations) committed
    assert_alert_set(kenv, set())  # granted marketing: clean
    w1.proc.send_signal(signal.SIGKILL)
    w1.proc.wait(timeout=30)

    fresh = kenv.start_worker("w1-fresh")  # another, empty data dir
    assert not (kenv.tmp / "data-w1-fresh").exists()
    wait_ready(fresh)
    # the table came back whole: every granted pair is there (revoked ones too)
    wait_for(
        [fresh],
        lambda: (
            fresh.sample("smsmon_reference_entries", {"table": "consent"})
            == len(quitters) + len(stayers)
        ),
        60,
        "consent table restored",
    )
    after = [mt(f"b-{m}", m, 60) for m in quitters + stayers]
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), event_rows(after))
    wait_for([fresh], lambda: events_seen([fresh]) >= len(after), 60, "later events processed")
    wait_settled(kenv, [fresh])
    assert_alert_set(kenv, {(f"b-{m}", "consent.revoked") for m in quitters})
    # nothing was re-processed: the revocations came from the changelog
    assert fresh.sample("smsmon_events_total", {"kind": "mo"}) == 0
    assert fresh.sample("smsmon_unsubscribes_total") == 0


# -- 4. broker restart -------------------------------------------------------------------------


class LocalBroker:
    """A dedicated broker from scripts/kafka-local.sh (its own ports and directory)."""

    def __init__(self, directory: Path, sasl: bool = False) -> None:
        self.directory = directory
        self.sasl = sasl
        while True:
            self.port, self.cport = free_port(), free_port()
            if not sasl or (_port_free(self.port + 2) and self.cport != self.port + 2):
                break

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.port + 2}"

    def _run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, SMSMON_PYTHON=sys.executable)
        return subprocess.run(
            [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    def start(self, keep: bool = False) -> None:
        args = ["start", "--port", str(self.port), "--controller-port", str(self.cport)]
        args += ["--dir", str(self.directory)]
        args += ["--sasl"] if self.sasl else []
        args += ["--keep"] if keep else []
        done = self._run(*args)
        assert done.returncode == 0, f"broker did not start:\n{done.stdout}\n{done.stderr}"

    def stop(self) -> None:
        done = self._run("stop", "--dir", str(self.directory), timeout=90)
        assert done.returncode == 0, done.stderr


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def local_broker(directory: Path, sasl: bool = False) -> Iterator[LocalBroker]:
    broker = LocalBroker(directory, sasl)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.contextmanager
def env_on(broker: LocalBroker, tmp: Path, bootstrap: str | None = None) -> Iterator[Env]:
    env = Env(bootstrap or broker.bootstrap, f"t{uuid.uuid4().hex[:10]}", tmp)
    try:
        yield env
    finally:
        for w in env.workers:
            w.stop()


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


# -- 5. reference data changes while traffic flows ---------------------------------------------


def test_reference_changes_take_effect_for_later_events(kenv: Env) -> None:
    """A port suspended, a consent revoked and a port deleted (tombstone) on sms.ref.* apply to
    the events produced after the worker consumed the change, and not to earlier ones."""
    subscriber = "13712345678"
    scenario = reference_only(5)
    scenario.reference.consent = [
        (f"{subscriber}|{ENT0}", json.loads(consent(subscriber, "granted", at(-30 * 86_400))[1]))
    ]
    ports, events = kenv.topic("sms.ref.ports"), kenv.topic("sms.events")
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    produce_reference(kenv, scenario, [worker])
    n_ports = len(scenario.reference.ports)
    port = dict(next(v for k, v in scenario.reference.ports if k == "10690001") or {})

    def produce_events(*evs: tuple[str, dict[str, Any]]) -> None:
        produce_rows(kenv.bootstrap, events, event_rows(list(evs)))

    # before any change: a notification on 10690001 and granted marketing are clean
    produce_events(
        mt(
            "n-before",
            "13700000001",
            0,
            port="10690001",
            category="notification",
            text=NOTIFICATION,
        ),
        mt("m-before", subscriber, 1),
    )
    wait_settled(kenv, [worker])
    assert_alert_set(kenv, set())

    # suspend 10690001; a new marker port after it (same partition) shows the loader got there
    produce_rows(
        kenv.bootstrap,
        ports,
        [
            (b"10690001", enc({**port, "status": "suspended"})),
            (b"10695555", enc({**port, "port": "10695555"})),
        ],
    )
    wait_for(
        [worker],
        lambda: worker.sample("smsmon_reference_entries", {"table": "ports"}) == n_ports + 1,
        30,
        "suspension consumed",
    )
    produce_events(
        mt(
            "n-suspended",
            "13700000002",
            10,
            port="10690001",
            category="notification",
            text=NOTIFICATION,
        )
    )

    # revoke the subscriber's consent on sms.ref.consent
    applied = worker.sample("smsmon_consent_updates_total", {"result": "applied"})
    produce_rows(
        kenv.bootstrap, kenv.topic("sms.ref.consent"), [consent(subscriber, "revoked", at(-86_400))]
    )
    wait_for(
        [worker],
        lambda: worker.sample("smsmon_consent_updates_total", {"result": "applied"}) == applied + 1,
        30,
        "revocation consumed",
    )
    produce_events(mt("m-revoked", subscriber, 20))

    # delete 10690001 with a tombstone
    produce_rows(kenv.bootstrap, ports, [(b"10690001", None)])
    wait_for(
        [worker],
        lambda: worker.sample("smsmon_reference_entries", {"table": "ports"}) == n_ports,
        30,
        "tombstone consumed",
    )
    produce_events(
        mt(
            "n-deleted",
            "13700000003",
            30,
            port="10690001",
            category="notification",
            text=NOTIFICATION,
        )
    )
    wait_settled(kenv, [worker])
    assert_alert_set(
        kenv,
        {
            ("n-suspended", "port.suspended"),
            ("m-revoked", "consent.revoked"),
            ("n-deleted", "port.unregistered"),
        },
    )
    assert worker.sample("smsmon_invalid_events_total") == 0  # a tombstone is no dead letter


# -- 6. hostile input through the real broker ---------------------------------------------------

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
_DROP = object()


def bad(**changes: Any) -> bytes:
    d = dict(GOOD)
    for k, v in changes.items():
        if v is _DROP:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d, ensure_ascii=False).encode()


def hostile_records() -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, expected dead-letter reason): what a broken or hostile gateway may send."""
    k = b"13912345678"
    far_future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    return [
        (k, b"{not json", "json"),
        (k, bad()[:60], "json"),  # truncated (in its ASCII part)
        (k, b'{"event_id": "a\x00b", "kind": "mt"}', "json"),  # raw NUL byte inside a string
        (k, b"", "json"),
        (k, b"\xff\xfe\x00garbage", "encoding"),
        (k, bad(text="x").replace(b'"x"', b'"\xc3\x28"'), "encoding"),  # invalid UTF-8 in text
        (k, bad(text="nul\x00inside"), "schema:text"),  # escaped \u0000
        (k, bad(event_id="e\x00"), "schema:event_id"),
        (k, bad(event_id=42), "schema:event_id"),  # wrong types
        (k, bad(segments="many"), "schema:segments"),
        (k, bad(category=7), "schema:category"),
        (k, bad(text=["list"]), "schema:text"),
        (k, bad(msisdn=13912345678), "schema:msisdn"),  # numbers where strings belong
        (k, bad(gateway=5), "schema:gateway"),
        (k, bad(account=123), "schema:account"),
        (k, bad(text=_DROP), "schema:text"),  # missing fields
        (k, bad(ts=_DROP), "schema:ts"),
        (k, bad(msisdn=_DROP), "schema:msisdn"),
        (k, bad(kind=_DROP), "schema:kind"),
        (k, bad(kind="fax"), "schema:kind"),
        (k, bad(ts="2999-01-01T00:00:00+08:00"), "schema:ts"),  # far timestamps
        (k, bad(ts="1970-01-02T00:00:00Z"), "schema:ts"),
        (k, bad(ts=10**25), "schema:ts"),
        (k, bad(ts=far_future), "schema:ts"),
        (b"13700000000", bad(), "schema:key"),  # the key names another msisdn
        (b"not-a-number", bad(), "schema:key"),
        (k, None, "schema:value"),  # a tombstone on the events topic
        (k, b"[1,2,3]", "schema:value"),
        (k, b'"text"', "schema:value"),
        (k, bad(text="长" * 5_000), "schema:text"),  # over SMSMON_MAX_TEXT_CHARS
        (k, bad(text="x" * 100_000), "too_large"),  # over SMSMON_MAX_EVENT_BYTES
        (k, bad(text="y" * 900_000), "too_large"),  # near the broker's 1 MB limit
    ]


def test_hostile_input_is_dead_lettered_once_and_valid_events_are_exact(kenv: Env) -> None:
    """Invalid records mixed with valid ones: each lands in the DLQ exactly once with its
    reason, the worker keeps running, and the valid events' alert set is exact."""
    scenario = Builder(seed=6).build(stories=800)
    expected = set(scenario.expected)
    valid = event_rows(scenario.events)
    # valid events may carry unknown (extra) fields: they are processed like any other
    proto = next(
        ev for _, ev in scenario.events if (ev["event_id"], "port.unregistered") in expected
    )
    extra = {**proto, "event_id": "extra-fields", "priority": 5, "meta": {"x": [1, None]}}
    valid.append((proto["msisdn"][-11:].encode(), enc(extra)))
    expected |= {("extra-fields", r) for e, r in scenario.expected if e == proto["event_id"]}

    hostile = hostile_records()
    rows: list[Row] = []
    step = len(valid) // len(hostile)
    for i, (key, value, _) in enumerate(hostile):  # spread through the valid stream
        rows += valid[i * step : (i + 1) * step]
        rows.append((key, value))
    rows += valid[len(hostile) * step :]
    hostile_at = [i for i, r in enumerate(rows) if r in {(k, v) for k, v, _ in hostile}]

    worker = kenv.start_worker("w1")
    wait_ready(worker)
    produce_reference(kenv, scenario, [worker])

    # a record over the broker's limit (1 MB by default) cannot even be produced
    huge = bad(text="z" * 3_000_000)
    _, refused = try_produce(
        kenv.bootstrap,
        kenv.topic("sms.events"),
        [(b"13912345678", huge)],
        **{"message.max.bytes": 10_000_000, "enable.idempotence": False},
    )
    assert [e.code() for e in refused] == [KafkaError.MSG_SIZE_TOO_LARGE]

    placed = produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows)
    wait_for(
        [worker],
        lambda: worker.sample("smsmon_invalid_events_total") >= len(hostile),
        90,
        "hostile records dead-lettered",
    )
    wait_settled(kenv, [worker])
    assert worker.proc.poll() is None, "the worker must survive hostile input"

    # every hostile record is in the DLQ exactly once, with its reason and original bytes
    dead = [json.loads(r.value) for r in read_topic(kenv.bootstrap, kenv.topic("sms.events.dlq"))]
    by_place = Counter((d["source_topic"], d["partition"], d["offset"]) for d in dead)
    assert all(n == 1 for n in by_place.values()), by_place.most_common(3)
    assert len(dead) == len(hostile), "only the hostile records are dead letters"
    reasons = {(d["source_topic"], d["partition"], d["offset"]): d["reason"] for d in dead}
    for (_, value, reason), i in zip(hostile, hostile_at, strict=True):
        p, o = placed[i]
        got = reasons.get((kenv.topic("sms.events"), p, o))
        assert got == reason, (value[:80] if value else value, got, reason)
    for d in dead:
        assert (
            d.get("value_text") is not None
            or d.get("value_base64") is not None
            or (d["reason"] == "schema:value")
        )
    # the 900 KB record: its first 64 KiB are kept, with the size and hash of the whole
    big = max(dead, key=lambda d: d.get("original_size") or 0)
    assert big.get("truncated") is True and big["original_size"] > 900_000, big.keys()
    assert len(big.get("value_text") or big.get("value_base64") or "") >= 60_000
    for reason, n in Counter(r for _, _, r in hostile).items():
        assert worker.sample("smsmon_invalid_events_total", {"reason": reason}) == n, reason
    assert worker.sample("smsmon_invalid_events_total") == len(hostile)

    # the valid events around them: exact alerts
    assert_alert_set(kenv, expected)


class LostDeadLetterError(AssertionError):
    """A record was counted as a dead letter but never reached the dead-letter topic."""


def test_a_too_large_record_whose_dead_letter_exceeds_the_producer_limit(kenv: Env) -> None:
    """A 900 KB record of invalid UTF-8 (base64 grows it by 4/3) or of characters JSON must
    escape is still dead-lettered exactly once, and the worker goes on."""
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    scenario = Builder(seed=8).build(stories=200)
    produce_reference(kenv, scenario, [worker])
    hostile = [
        (b"13912345678", b"\xff" * 900_000, "too_large"),
        (b"13912345678", b'"' * 900_000, "too_large"),
    ]
    rows = [(k, v) for k, v, _ in hostile] + event_rows(scenario.events)
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), rows)
    wait_settled(kenv, [worker], timeout=90)
    assert worker.proc.poll() is None
    dead = [json.loads(r.value) for r in read_topic(kenv.bootstrap, kenv.topic("sms.events.dlq"))]
    counted = worker.sample("smsmon_invalid_events_total", {"reason": "too_large"})
    if Counter(d["reason"] for d in dead) != Counter(r for _, _, r in hostile):
        raise LostDeadLetterError(
            f"{counted:.0f} counted as dead letters, {len(dead)} on the dead-letter topic, and "
            "the group committed past them"
        )
    assert_alert_set(kenv, scenario.expected)


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
    logs = copy_log(worker, "run1").read_text(errors="replace")
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
        "re-keyed events": read_topic(kenv.bootstrap, f"{kenv.prefix}-rekey"),
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


# -- 9. compressed input ------------------------------------------------------------------------


def test_compressed_input_from_gateways_is_read(kenv: Env) -> None:
    """Gateways commonly compress: events and consent written with lz4, snappy, zstd and gzip
    give the exact alert set, and the worker keeps running (aiokafka needs cramjam for the
    first three; without it the fetcher crashed and the worker exited)."""
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    scenario = Builder(seed=10).build(stories=400)
    ref = scenario.reference
    for name, rows in (
        ("sms.ref.ports", ref.ports),
        ("sms.ref.signatures", ref.signatures),
    ):
        produce_rows(kenv.bootstrap, kenv.topic(name), [(k.encode(), enc(v)) for k, v in rows])
    produce_rows(
        kenv.bootstrap,
        kenv.topic("sms.ref.consent"),
        [(k.encode(), enc(v)) for k, v in ref.consent],
        **{"compression.type": "zstd"},
    )
    pairs = len({k for k, _ in ref.consent})
    wait_for(
        [worker],
        lambda: (
            worker.sample("smsmon_reference_entries", {"table": "consent"}) == pairs
            and worker.sample("smsmon_reference_entries", {"table": "ports"}) == len(ref.ports)
        ),
        timeout=120,
        what="compressed consent and the ports loaded",
    )
    rows = event_rows(scenario.events)
    codecs = ["lz4", "snappy", "zstd", "gzip"]
    step = -(-len(rows) // len(codecs))
    for i, codec in enumerate(codecs):
        chunk = rows[i * step : (i + 1) * step]
        produce_rows(kenv.bootstrap, kenv.topic("sms.events"), chunk, **{"compression.type": codec})
    wait_settled(kenv, [worker], timeout=120)
    assert worker.proc.poll() is None, worker.log()[-3000:]
    assert_alert_set(kenv, scenario.expected)


# -- 10. first start of a consumer group over a backlog -------------------------------------------


def test_first_start_processes_records_produced_before_it(kenv: Env) -> None:
    """A new deployment over topics that already hold reference data and events: the new
    consumer group starts from the earliest offsets and judges every event."""
    from smsmon.admin import ensure_topics
    from smsmon.config.settings import Settings

    settings = Settings(
        **{k.removeprefix("SMSMON_").lower(): v for k, v in kenv.settings_env().items()}  # type: ignore[arg-type]
    )
    ensure_topics(settings)
    scenario = Builder(seed=12).build(stories=300)
    ref = scenario.reference
    for name, rows in (
        ("sms.ref.ports", ref.ports),
        ("sms.ref.signatures", ref.signatures),
        ("sms.ref.consent", ref.consent),
    ):
        produce_rows(kenv.bootstrap, kenv.topic(name), [(k.encode(), enc(v)) for k, v in rows])
    produce_rows(kenv.bootstrap, kenv.topic("sms.events"), event_rows(scenario.events))
    worker = kenv.start_worker("w1")
    wait_ready(worker)
    wait_settled(kenv, [worker])
    assert events_seen([worker]) == len(scenario.events)
