"""`smsmon store` against the real broker, on SQLite and PostgreSQL: SIGKILLed between a
batch's database commit and its offset commit, then restarted, it holds exactly the topic's
distinct alert ids with the payload of each id's first record; consent and registry records
arrive hashed and up to date."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import TopicPartition
from sqlalchemy import Engine, MetaData, func, select

from smsmon.store import schema
from smsmon.store.db import make_engine, migrate
from tests.integration.conftest import REPO, Env, free_port, wait_until
from tests.integration.test_compliance_pipeline import read_all

pytestmark = pytest.mark.integration

SLOW_COMMIT = Path(__file__).with_name("slow_commit.py")
RULES = [
    ("port.unregistered", "critical"),
    ("port.suspended", "critical"),
    ("port.account", "critical"),
    ("port.category", "major"),
    ("signature.missing", "minor"),
    ("signature.unregistered", "critical"),
    ("signature.scope", "major"),
    ("consent.missing", "major"),
    ("consent.revoked", "critical"),
    ("content.optout_missing", "major"),
]
T0 = dt.datetime(2026, 11, 11, 0, 0, tzinfo=dt.UTC)


def create_topics(env: Env) -> None:
    admin = KafkaAdminClient(bootstrap_servers=env.bootstrap)
    compact = {"cleanup.policy": "compact"}
    admin.create_topics(
        [
            NewTopic(env.topic("sms.alerts"), env.partitions, 1),
            NewTopic(env.topic("sms.ref.consent"), env.partitions, 1, topic_configs=compact),
            NewTopic(env.topic("sms.ref.ports"), 1, 1, topic_configs=compact),
            NewTopic(env.topic("sms.ref.signatures"), 1, 1, topic_configs=compact),
        ]
    )
    admin.close()


def make_alerts(rng: random.Random, distinct: int, total: int) -> list[dict[str, Any]]:
    """`distinct` alerts, then repeats of earlier ids (a worker's replay: same id, later
    detected_at) mixed in until `total` records."""
    originals: list[dict[str, Any]] = []
    for i in range(distinct):
        rule, severity = RULES[i % len(RULES)]
        ts = T0 + dt.timedelta(seconds=i * 0.37)
        originals.append(
            {
                "schema_version": 1,
                "alert_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule}|ev{i}")),
                "rule": rule,
                "severity": severity,
                "ts": ts.isoformat(),
                "detected_at": (ts + dt.timedelta(milliseconds=40)).isoformat(),
                "event_id": f"ev{i}",
                "gateway": f"gw{i % 3}",
                "account": f"acc{i % 50}",
                "port": f"10690{i % 200:04d}",
                "signature": f"sig{i % 300}",
                "enterprise": f"ENT{i % 120}",
                "category": "marketing",
                "msisdn_hash": f"k1:{i:064x}",
                "msisdn_masked": "138****8000",
                "detail": f"evidence {i}",
            }
        )
    out = list(originals)
    for n in range(total - distinct):
        at = rng.randrange(len(out) // 2, len(out) + 1)
        again = dict(rng.choice(originals[: max(1, at)]))
        again["detected_at"] = (T0 + dt.timedelta(days=1, seconds=n)).isoformat()
        again["detail"] = "replayed by a worker"
        out.insert(at, again)
    return out


def produce_alerts(env: Env, alerts: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=env.bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024
    )
    topic = env.topic("sms.alerts")
    for a in alerts:
        producer.send(topic, key=a["alert_id"].encode(), value=json.dumps(a).encode())
    producer.flush(60)
    producer.close()


class StoreProcess:
    """One `smsmon store` subprocess with its log file."""

    def __init__(self, env: Env, db_url: str, name: str, slow: bool, **extra: str) -> None:
        self.log_path = env.tmp / f"store-{name}.log"
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            **env.settings_env(
                SMSMON_ALERT_DB_URL=db_url,
                SMSMON_STORE_BATCH_MAX="500",
                SMSMON_STORE_METRICS_PORT=str(self.metrics_port),
                **extra,
            ),
            "PYTHONPATH": str(REPO),
        }
        cmd = [sys.executable, str(SLOW_COMMIT)] if slow else [sys.executable, "-m", "smsmon.store"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=env.tmp
            )

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"store exited early:\n{self.log()[-4000:]}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sample(self, name: str, labels: dict[str, str]) -> float:
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def kill(self, sig: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


def committed_offsets(env: Env, topic: str) -> dict[int, int]:
    """The store group's committed offsets (OffsetFetch only: this consumer joins no group)."""
    consumer = KafkaConsumer(
        bootstrap_servers=env.bootstrap, group_id=f"{env.prefix}-store", enable_auto_commit=False
    )
    try:
        out = {}
        for p in range(env.partitions):
            offset = consumer.committed(TopicPartition(topic, p))
            out[p] = 0 if offset is None else int(offset)
        return out
    finally:
        consumer.close(autocommit=False)


def end_offsets(env: Env, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=env.bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(env.partitions)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def stored(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    schema.Alert.alert_id,
                    schema.Alert.payload,
                    schema.Alert.src_partition,
                    schema.Alert.src_offset,
                )
            )
        )


def count(engine: Engine, table: Any = schema.Alert) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The test's own connection; migrated here so that counting works before the store runs
    (the store's own migration at start is then a no-op)."""
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


def test_sigkill_between_db_and_offset_commit_loses_and_duplicates_nothing(
    kenv: Env, db_url: str, engine: Engine
) -> None:
    """20,000 alerts with repeated ids; the store is SIGKILLed with rows stored past its
    committed offsets; after a restart the table is exactly the topic's first records."""
    create_topics(kenv)
    topic = kenv.topic("sms.alerts")
    produce_alerts(kenv, make_alerts(random.Random(7), distinct=15_000, total=20_000))
    records = read_all(kenv.bootstrap, topic)
    assert len(records) == 20_000
    first: dict[str, tuple[str, int, int]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        first.setdefault(json.loads(r.value)["alert_id"], (r.value.decode(), r.partition, r.offset))
    assert len(first) == 15_000

    # Kill while the store is in the window (rows committed, offsets not): observed on the
    # first attempt almost always with the delayed commit; retried so the test never
    # passes without having exercised it.
    observed_window, killed_at = False, 0
    for attempt in range(5):
        store = StoreProcess(kenv, db_url, f"killed-{attempt}", slow=True)
        target = count(engine) + 2_000 if count(engine) else 2_000
        wait_until(
            lambda s=store, t=target: s.alive() and count(engine) >= t, 180, f"{target} rows"
        )
        assert store.kill(signal.SIGKILL) == -signal.SIGKILL
        committed = committed_offsets(kenv, topic)
        end = end_offsets(kenv, topic)
        rows = stored(engine)
        assert 0 < len(rows) < len(first), "killed mid-stream"
        assert sum(committed.values()) < sum(end.values()), (committed, end)
        ahead = [r for r in rows if r.src_offset >= committed.get(r.src_partition, 0)]
        print(
            f"kill {attempt}: {len(rows)} rows stored, {len(ahead)} past the committed offsets "
            f"{sum(committed.values())} of {sum(end.values())}"
        )
        if ahead:
            observed_window = True
            killed_at = len(rows)
            break
    assert observed_window, "never killed between the database commit and the offset commit"

    restarted = StoreProcess(kenv, db_url, "restarted", slow=False)

    def caught_up() -> bool:
        restarted.alive()
        return committed_offsets(kenv, topic) == end and count(engine) == len(first)

    wait_until(caught_up, 240, "the restarted store to catch up")
    inserted = restarted.sample("smsmon_store_rows_total", {"table": "alerts"})
    assert restarted.kill(signal.SIGTERM) == 0, restarted.log()[-3000:]
    assert "Traceback" not in restarted.log()

    rows = stored(engine)
    assert len(rows) == len({r.alert_id for r in rows}) == len(first)
    assert {r.alert_id: (r.payload, r.src_partition, r.src_offset) for r in rows} == first
    assert inserted == len(first) - killed_at  # the replayed rows were skipped, not re-added
    assert count(engine, schema.StoreReject) == 0


def test_consent_and_registries_are_stored_hashed_and_current(
    kenv: Env, db_url: str, engine: Engine
) -> None:
    """Consent records (registry and smsmon's own, tombstones), ports, signatures and a bad
    record, through Kafka: hashed consent, latest registry state, the bad one rejected."""
    create_topics(kenv)
    numbers = [f"139{i:08d}" for i in range(40)]
    producer = KafkaProducer(bootstrap_servers=kenv.bootstrap, acks="all")
    consent = kenv.topic("sms.ref.consent")
    for i, number in enumerate(numbers):
        key = f"{number}|ENT{i % 4}".encode()
        grant = {
            "msisdn": number,
            "enterprise": f"ENT{i % 4}",
            "status": "granted",
            "ts": "2026-11-11T09:00:00+08:00",
        }
        producer.send(consent, key=key, value=json.dumps(grant).encode())
        if i % 2:
            revoke = {
                **grant,
                "status": "revoked",
                "source": "mo",
                "ts": "2026-11-11T10:00:00+08:00",
            }
            producer.send(consent, key=key, value=json.dumps(revoke).encode())
        if i % 10 == 0:
            producer.send(consent, key=key, value=None)
    producer.send(consent, key=b"13800138000|E", value=b'{"msisdn": "13800138000", "status"')
    ports, sigs = kenv.topic("sms.ref.ports"), kenv.topic("sms.ref.signatures")
    for p in range(5):
        rec = {"port": f"1069000{p}", "enterprise": "ENT0", "status": "active"}
        producer.send(ports, key=rec["port"].encode(), value=json.dumps(rec).encode())
    producer.send(ports, key=b"10690003", value=None)
    producer.send(
        ports,
        key=b"10690004",
        value=json.dumps(
            {"port": "10690004", "enterprise": "ENT9", "status": "suspended"}
        ).encode(),
    )
    producer.send(
        sigs,
        key="【淘宝】".encode(),
        value=json.dumps(
            {"signature": "【淘宝】", "enterprise": "ENT0", "status": "active"}, ensure_ascii=False
        ).encode(),
    )
    producer.flush(60)
    producer.close()

    store = StoreProcess(kenv, db_url, "reference", slow=False)
    expected_consent = len(numbers) + len(numbers) // 2 + len(numbers) // 10
    wait_until(
        lambda: (
            store.alive()
            and count(engine, schema.ConsentEvent) == expected_consent
            and count(engine, schema.StoreReject) == 1
            and count(engine, schema.Signature) == 1
            and count(engine, schema.Port) == 4
        ),
        180,
        "reference records stored",
    )
    wait_until(
        lambda: store.sample("smsmon_store_rejects_total", {"reason": "json"}) == 1,
        30,
        "the reject counted",
    )
    assert store.kill(signal.SIGTERM) == 0

    with engine.connect() as conn:
        port_state = dict(conn.execute(select(schema.Port.key, schema.Port.enterprise)).all())
        mo = conn.scalar(
            select(func.count())
            .select_from(schema.ConsentEvent)
            .where(schema.ConsentEvent.published_by_smsmon)
        )
        sig = conn.scalar(select(schema.Signature.key))
    assert port_state == {
        "10690000": "ENT0",
        "10690001": "ENT0",
        "10690002": "ENT0",
        "10690004": "ENT9",
    }
    assert mo == len(numbers) // 2 and sig == "淘宝"
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        text = "\n".join(
            str(v)
            for table in meta.sorted_tables
            for row in conn.execute(select(table))
            for v in row
        )
    assert not re.search(r"(?<!\d)1\d{10}(?!\d)", text)
