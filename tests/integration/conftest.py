"""Real-broker fixtures: one local Apache Kafka per test session, isolated topics per test.

The process handling (broker, workers, readiness, metrics) is bench/harness.py, shared with
the benchmarks; its names are re-exported here for the test modules.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.harness import (
    REPO,
    SCRIPT,
    Broker,
    WaitTimeout,
    Worker,
    WorkerExitedError,
    app_env,
    free_port,
    start_worker,
    wait_ready,
    wait_until,
)

__all__ = [
    "REPO",
    "SCRIPT",
    "Broker",
    "Env",
    "WaitTimeout",
    "Worker",
    "WorkerExitedError",
    "free_port",
    "wait_ready",
    "wait_until",
]

SECRET = "integration-test-secret"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Start the repo's local Kafka broker (KRaft, loopback) for the whole session."""
    broker = Broker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except RuntimeError as exc:
        broker.stop(check=False)
        pytest.fail(f"local Kafka {exc}")
    try:
        yield broker
    finally:
        broker.stop(check=False)


@dataclass
class Env:
    """Per-test isolated names: app id, topic names, data dir."""

    bootstrap: str
    prefix: str
    tmp: Path
    partitions: int = 4
    workers: list[Worker] = field(default_factory=list)

    def settings_env(self, **extra: str) -> dict[str, str]:
        env = app_env(self.bootstrap, self.prefix, self.partitions, SECRET)
        env.update(extra)
        return env

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    @property
    def rekey_topic(self) -> str:
        """The worker's re-keying topic (`Settings.rekey_topic`: the app id is the prefix)."""
        return f"{self.prefix}-rekey"

    @property
    def counts_topic(self) -> str:
        """The worker's stage-1 partials topic (`Settings.counts_topic`)."""
        return f"{self.prefix}-counts"

    def start_worker(self, name: str = "w1", **extra: str) -> Worker:
        w = start_worker(name, self.settings_env(**extra), self.tmp)
        self.workers.append(w)
        return w


@pytest.fixture
def kenv(kafka_broker: Broker, tmp_path: Path) -> Iterator[Env]:
    """An isolated smsmon environment on the session broker; stops its workers after."""
    env = Env(kafka_broker.bootstrap, f"t{uuid.uuid4().hex[:10]}", tmp_path)
    try:
        yield env
    finally:
        for w in env.workers:
            w.stop()
