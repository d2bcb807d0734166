"""Real-broker fixtures: one local Apache Kafka per test session, isolated topics per test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "kafka-local.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """Poll `predicate` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error on timeout
            last_exc = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


@dataclass
class Broker:
    bootstrap: str
    port: int
    directory: Path


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Start the repo's local Kafka broker (KRaft, loopback) for the whole session."""
    port, cport = free_port(), free_port()
    directory = tmp_path_factory.mktemp("kafka")
    env = dict(os.environ, SMSMON_PYTHON=sys.executable)
    cmd = [
        str(SCRIPT),
        "start",
        "--port",
        str(port),
        "--controller-port",
        str(cport),
        "--dir",
        str(directory),
    ]
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.fail(f"local Kafka broker did not start:\n{started.stdout}\n{started.stderr}")
    try:
        yield Broker(f"127.0.0.1:{port}", port, directory)
    finally:
        subprocess.run(
            [str(SCRIPT), "stop", "--dir", str(directory)], env=env, capture_output=True, timeout=60
        )


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    metrics_port: int
    log_path: Path
    env: dict[str, str]

    def metrics_text(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0.0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        want = labels or {}
        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in want.items()):
                    total += float(s.value)
        return total

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Env:
    """Per-test isolated names: app id, topic names, data dir."""

    bootstrap: str
    prefix: str
    tmp: Path
    partitions: int = 4
    workers: list[Worker] = field(default_factory=list)

    def settings_env(self, **extra: str) -> dict[str, str]:
        p = self.prefix
        env = {
            "SMSMON_KAFKA_BOOTSTRAP": self.bootstrap,
            "SMSMON_APP_ID": p,
            "SMSMON_PARTITIONS": str(self.partitions),
            "SMSMON_TOPIC_EVENTS": f"{p}.sms.events",
            "SMSMON_TOPIC_PORTS": f"{p}.sms.ref.ports",
            "SMSMON_TOPIC_SIGNATURES": f"{p}.sms.ref.signatures",
            "SMSMON_TOPIC_CONSENT": f"{p}.sms.ref.consent",
            "SMSMON_TOPIC_COMPLAINTS": f"{p}.sms.complaints",
            "SMSMON_TOPIC_EXEMPTIONS": f"{p}.sms.ref.exemptions",
            "SMSMON_TOPIC_ALERTS": f"{p}.sms.alerts",
            "SMSMON_TOPIC_DLQ": f"{p}.sms.events.dlq",
            "SMSMON_MSISDN_SECRET": "integration-test-secret",
            "SMSMON_STORE": "rocksdb://",
        }
        env.update(extra)
        return env

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def start_worker(self, name: str = "w1", **extra: str) -> Worker:
        port = free_port()
        data = self.tmp / f"data-{name}"
        log_path = self.tmp / f"worker-{name}.log"
        env = dict(os.environ)
        env.update(
            self.settings_env(SMSMON_METRICS_PORT=str(port), SMSMON_DATA_DIR=str(data), **extra)
        )
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "smsmon.cli", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
        w = Worker(proc, port, log_path, env)
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


def wait_ready(worker: Worker, timeout: float = 120) -> None:
    """Wait until the worker loaded its reference data and processes events."""

    def ready() -> bool:
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{worker.log()[-4000:]}")
        return worker.sample("smsmon_reference_ready") == 1.0

    try:
        wait_until(ready, timeout, "worker ready")
    except AssertionError:
        print(worker.log()[-6000:])
        raise
