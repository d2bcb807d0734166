"""The store's consumer loop with a fake consumer: database commit before offset commit,
replay after a crash, metrics, SIGTERM after the current batch, database retries."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from smsmon.store import schema
from smsmon.store.db import make_engine
from smsmon.store.service import StoreService
from smsmon.store.settings import StoreSettings

from .conftest import TOPICS, alert, src

pytestmark = pytest.mark.unit


@dataclass
class Rec:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 1_764_000_000_000


class Crash(Exception):
    """Stands for the process dying at that point."""


class FakeConsumer:
    """Hands out prepared batches; commit() records what the database held at that moment."""

    def __init__(self, batches: list[dict[TopicPartition, list[Rec]]], engine: Engine) -> None:
        self.batches = list(batches)
        self.engine = engine
        self.commits: list[tuple[dict[TopicPartition, int], int]] = []
        self.crash_on_commit = False
        self.on_poll: Any = None
        self.polls = 0
        self.closed = False

    def subscribe(self, topics: list[str]) -> None:
        self.topics = topics

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Rec]]:
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self.polls)
        return self.batches.pop(0) if self.batches else {}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        with self.engine.connect() as conn:
            stored = int(conn.scalar(select(func.count()).select_from(schema.Alert)) or 0)
        self.commits.append(({tp: o.offset for tp, o in offsets.items()}, stored))
        if self.crash_on_commit:
            raise Crash

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPICS.alerts, 0)}

    def close(self, autocommit: bool = True) -> None:
        self.closed = True


def _batch(start: int, n: int, partition: int = 0) -> dict[TopicPartition, list[Rec]]:
    recs = []
    for i in range(start, start + n):
        r = src(TOPICS.alerts, i, alert(i))
        recs.append(Rec(i, r.key, r.value))
    return {TopicPartition(TOPICS.alerts, partition): recs}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StoreSettings:
    monkeypatch.setenv("SMSMON_MSISDN_SECRET", "unit")
    monkeypatch.setenv("SMSMON_ALERT_DB_URL", f"sqlite:///{tmp_path / 'alerts.db'}")
    return StoreSettings(store_db_retry_seconds=2.0)


@pytest.fixture
def db(settings: StoreSettings) -> Iterator[Engine]:
    eng = make_engine(settings.alert_db_url)
    yield eng
    eng.dispose()


def _service(settings: StoreSettings, consumer: FakeConsumer, **kw: Any) -> StoreService:
    return StoreService(
        settings,
        engine=make_engine(settings.alert_db_url),
        registry=CollectorRegistry(),
        until_idle=0.0,
        consumer_factory=lambda _s: consumer,
        **kw,
    )


def test_offsets_are_committed_after_the_rows(settings: StoreSettings, db: Engine) -> None:
    """At each offset commit the batch's rows are already committed in the database."""
    consumer = FakeConsumer([_batch(0, 10), _batch(10, 5)], db)
    service = _service(settings, consumer)
    assert service.run() == 0
    tp = TopicPartition(TOPICS.alerts, 0)
    assert consumer.commits == [({tp: 10}, 10), ({tp: 15}, 15)]
    assert consumer.closed
    rows = service.registry.get_sample_value("smsmon_store_rows_total", {"table": "alerts"})
    assert rows == 15


def test_crash_before_offset_commit_replays_without_duplicates(
    settings: StoreSettings, db: Engine
) -> None:
    """Killed after the database commit, before the offsets: the replay adds nothing."""
    consumer = FakeConsumer([_batch(0, 10)], db)
    consumer.crash_on_commit = True
    with pytest.raises(Crash):
        _service(settings, consumer).run()
    replay = FakeConsumer([_batch(0, 10), _batch(10, 3)], db)
    service = _service(settings, replay)
    service.run()
    with db.connect() as conn:
        ids = conn.scalars(select(schema.Alert.alert_id)).all()
    assert len(ids) == len(set(ids)) == 13
    rows = service.registry.get_sample_value("smsmon_store_rows_total", {"table": "alerts"})
    assert rows == 3  # the replayed ten were already there


def test_rejects_are_counted_in_the_metric(settings: StoreSettings, db: Engine) -> None:
    """Invalid records: smsmon_store_rejects_total{reason} and a store_rejects row each."""
    batch = _batch(0, 2)
    batch[TopicPartition(TOPICS.alerts, 0)].append(Rec(2, None, b"{oops"))
    service = _service(settings, FakeConsumer([batch], db))
    service.run()
    reg = service.registry
    assert reg.get_sample_value("smsmon_store_rejects_total", {"reason": "json"}) == 1
    assert reg.get_sample_value("smsmon_store_rows_total", {"table": "store_rejects"}) == 1
    assert reg.get_sample_value("smsmon_store_batch_seconds_count") == 1


def test_sigterm_stops_after_the_current_batch(settings: StoreSettings, db: Engine) -> None:
    """SIGTERM during a poll: that batch is stored and committed, no further poll."""
    consumer = FakeConsumer([_batch(0, 4), _batch(4, 4)], db)

    def term(n: int) -> None:
        if n == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    consumer.on_poll = term
    service = StoreService(
        settings,
        engine=make_engine(settings.alert_db_url),
        registry=CollectorRegistry(),
        consumer_factory=lambda _s: consumer,
    )
    assert service.run() == 0
    assert consumer.polls == 1
    assert consumer.commits == [({TopicPartition(TOPICS.alerts, 0): 4}, 4)]
    assert signal.getsignal(signal.SIGTERM) is not service._on_signal


def test_database_outage_is_retried_without_committing(
    settings: StoreSettings, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing database write is retried; offsets wait for it; success then commits."""
    consumer = FakeConsumer([_batch(0, 3)], db)
    sleeps: list[float] = []
    service = _service(settings, consumer, sleep=sleeps.append)
    real = service.writer.write
    failures = iter([True, True, False])

    def flaky(sources: Any) -> Any:
        if next(failures):
            assert consumer.commits == []
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(sources)

    monkeypatch.setattr(service.writer, "write", flaky)
    service.run()
    assert sleeps == [0.5, 1.0]
    assert consumer.commits == [({TopicPartition(TOPICS.alerts, 0): 3}, 3)]


def test_database_gone_for_good_exits_without_committing(
    settings: StoreSettings, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After store_db_retry_seconds the service raises and commits nothing."""
    consumer = FakeConsumer([_batch(0, 3)], db)
    service = _service(settings, consumer, sleep=lambda _s: None)

    def down(_sources: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(service.writer, "write", down)
    with pytest.raises(OperationalError):
        service.run()
    assert consumer.commits == [] and consumer.closed


def test_until_idle_waits_for_an_assignment(settings: StoreSettings, db: Engine) -> None:
    """--until-idle counts idle time only once partitions are assigned (or a minute more)."""

    class Unassigned(FakeConsumer):
        def assignment(self) -> set[TopicPartition]:
            return set()

    service = _service(settings, Unassigned([], db))
    service.until_idle = 5.0
    assert not service._idle(Unassigned([], db), now=30.0, idle_since=0.0)
    assert service._idle(Unassigned([], db), now=66.0, idle_since=0.0)
    assert service._idle(FakeConsumer([], db), now=5.0, idle_since=0.0)


def test_lag_is_summed_per_topic_over_assigned_partitions(
    settings: StoreSettings, db: Engine
) -> None:
    """smsmon_store_lag{topic} = end offset - position, summed over the partitions (no
    partition label: the label set stays bounded)."""

    class LagConsumer(FakeConsumer):
        def assignment(self) -> set[TopicPartition]:
            return {
                TopicPartition(TOPICS.alerts, 0),
                TopicPartition(TOPICS.alerts, 1),
                TopicPartition(TOPICS.consent, 0),
            }

        def highwater(self, tp: TopicPartition) -> int:
            return {0: 100, 1: 50}[tp.partition] if tp.topic == TOPICS.alerts else 7

        def position(self, tp: TopicPartition, timeout_ms: int = 0) -> int:
            return {0: 90, 1: 50}[tp.partition] if tp.topic == TOPICS.alerts else 7

    service = _service(settings, LagConsumer([], db))
    service._update_lag(LagConsumer([], db))
    reg = service.registry
    assert reg.get_sample_value("smsmon_store_lag", {"topic": TOPICS.alerts}) == 10
    assert reg.get_sample_value("smsmon_store_lag", {"topic": TOPICS.consent}) == 0
    assert reg.get_sample_value("smsmon_store_lag", {"topic": TOPICS.ports}) == 0
