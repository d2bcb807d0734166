"""Kafka clients of the throughput benchmark: producing the input, committed offsets of the
worker group, the alerts collector, and the raw-consumer ceiling (no processing)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.traffic import Rec, enc


class Prod:
    """A confluent-kafka producer that retries on a full queue and fails on delivery errors."""

    def __init__(
        self,
        bootstrap: str,
        linger_ms: int = 20,
        compression: str = "none",
        partitioner: str = "murmur2_random",
        extra: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Producer

        self.errors: list[str] = []
        self.p: Any = Producer(
            {
                "compression.type": compression,
                "bootstrap.servers": bootstrap,
                # murmur2_random is Kafka's Java default partitioner (murmur2) on the key: on
                # the canonical msisdn, what smsmon's contract asks of producers, so no event
                # needs re-keying (KEYINGS for the others)
                "partitioner": partitioner,
                "linger.ms": linger_ms,
                "batch.size": 1_000_000,
                "acks": "all",
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "delivery.report.only.error": True,
                "on_delivery": self._on_error,
                **(extra or {}),
            }
        )

    def _on_error(self, err: Any, _msg: Any) -> None:
        self.errors.append(str(err))

    def produce(self, topic: str, key: bytes | None, value: bytes, partition: int = -1) -> None:
        while True:
            try:
                self.p.produce(topic, value=value, key=key, partition=partition)
                return
            except BufferError:
                self.p.poll(0.05)

    def poll(self) -> None:
        self.p.poll()

    def flush(self) -> None:
        """Wait for every record, then drop the producer (it breaks the reference cycle through
        the delivery callback, so librdkafka closes its connections now, not at exit)."""
        while self.p.flush(30) > 0:
            pass
        self.p = None
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} produce errors, first: {self.errors[0]}")


#: How a gateway keys and partitions its records (`--keying`): "java", Kafka's Java default
#: partitioner on the canonical msisdn (what smsmon expects; nothing is re-keyed);
#: "librdkafka", librdkafka's default partitioner (CRC32: most records are re-keyed); "none",
#: no key at all (the gateway does not know smsmon's partitioning; records land at random).
KEYINGS = {"java": "murmur2_random", "librdkafka": "consistent_random", "none": "random"}


def produce_records(
    bootstrap: str, env: dict[str, str], records: list[Rec], keying: str = "java"
) -> float:
    """Produce events and complaints as fast as possible; returns the seconds it took."""
    keyed = keying != "none"
    # Unkeyed records: librdkafka's sticky partitioner would put a short, fast run on two or
    # three partitions only, and the windows of the empty ones close only once their sources
    # are idle (30 s, docs/traffic.md): the run would measure that wait, not the re-keying.
    # Spread per record, as a long-running gateway's sticky partitions are over time.
    extra = {} if keyed else {"sticky.partitioning.linger.ms": 0}
    p = Prod(bootstrap, partitioner=KEYINGS[keying], extra=extra)
    topics = {"event": env["SMSMON_TOPIC_EVENTS"], "complaint": env["SMSMON_TOPIC_COMPLAINTS"]}
    t0 = time.monotonic()
    for i, (kind, key, value) in enumerate(records):
        p.produce(topics[kind], key if keyed else None, value)
        if i % 10_000 == 0:
            p.poll()
    p.flush()
    return time.monotonic() - t0


def load_reference(bootstrap: str, env: dict[str, str], sim: Any) -> None:
    p = Prod(bootstrap)
    for topic, rows in (
        (env["SMSMON_TOPIC_PORTS"], sim.reference.ports),
        (env["SMSMON_TOPIC_SIGNATURES"], sim.reference.signatures),
    ):
        for key, value in rows:
            p.produce(topic, key.encode(), enc(value))
    p.flush()


def load_consent(bootstrap: str, env: dict[str, str], stream: Iterable[Any]) -> int:
    p = Prod(bootstrap, linger_ms=50)
    topic = env["SMSMON_TOPIC_CONSENT"]
    n = 0
    for key, value, part in stream:
        p.produce(topic, key, value, part)
        n += 1
        if n % 20_000 == 0:
            p.poll()
    p.flush()
    return n


class Offsets:
    """Committed offsets of a consumer group against the end offsets of its input topics."""

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.group = group
        self.tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(self.consumer.partitions_for_topic(t) or ())
        ]

    def behind(self) -> int:
        """Records produced to the input topics and not yet committed by the group."""
        ends = self.consumer.end_offsets(self.tps)
        committed = self._committed()
        total = 0
        for tp in self.tps:
            c = committed.get(tp)
            done = c.offset if c is not None and c.offset >= 0 else 0
            total += max(0, ends.get(tp, 0) - done)
        return total

    def uncommitted(self, topics: list[str] | None = None) -> dict[str, int]:
        """`topic[partition]` -> records not committed, for every partition that has some."""
        from kafka import TopicPartition

        tps = self.tps
        if topics is not None:
            tps = [
                TopicPartition(t, p)
                for t in topics
                for p in sorted(self.consumer.partitions_for_topic(t) or ())
            ]
        ends = self.consumer.end_offsets(tps)
        committed = self._committed()
        out = {}
        for tp in tps:
            c = committed.get(tp)
            done = c.offset if c is not None and c.offset >= 0 else 0
            if ends.get(tp, 0) > done:
                out[f"{tp.topic}[{tp.partition}]"] = ends[tp] - done
        return out

    def _committed(self) -> dict[Any, Any]:
        if hasattr(self.admin, "list_consumer_group_offsets"):  # kafka-python 2.x
            return dict(self.admin.list_consumer_group_offsets(self.group))
        return dict(self.admin.list_group_offsets({self.group: None})[self.group])  # 3.x

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.admin.close()
        with contextlib.suppress(Exception):
            self.consumer.close()


class AlertCollector(threading.Thread):
    """Reads the alerts topic from the beginning; remembers every alert's arrival time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True, name="alerts")
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-alerts-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
            }
        )
        md = self.consumer.list_topics(topic, timeout=30)
        parts = sorted(md.topics[topic].partitions)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.lock = threading.Lock()
        self.first: dict[str, tuple[float, str, str]] = {}  # alert_id -> (wall, event_id, rule)
        self.detected: dict[str, float] = {}  # alert_id -> its detected_at (epoch seconds)
        self.records = 0
        self.last_new = 0.0  # monotonic time of the latest new alert id
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            msgs = self.consumer.consume(2000, timeout=0.05)
            if not msgs:
                continue
            wall, mono = time.time(), time.monotonic()
            with self.lock:
                for m in msgs:
                    value = m.value()
                    if m.error() is not None or value is None:
                        continue
                    self.records += 1
                    d = json.loads(value)
                    if d["alert_id"] not in self.first:
                        self.first[d["alert_id"]] = (wall, d.get("event_id") or "", d["rule"])
                        self.last_new = mono
                        with contextlib.suppress(KeyError, TypeError, ValueError):
                            ts = dt.datetime.fromisoformat(d["detected_at"])
                            self.detected[d["alert_id"]] = ts.timestamp()
        self.consumer.close()

    def count(self) -> int:
        with self.lock:
            return len(self.first)

    def snapshot(self) -> dict[str, tuple[float, str, str]]:
        with self.lock:
            return dict(self.first)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def raw_ceiling(bootstrap: str, topic: str, partitions: int, total: int) -> dict[str, Any]:
    """Best of five plain aiokafka reads of the whole topic (first batch not timed), in a
    process of their own (`bench.rawread`: the bench's own heap slowed reads made here); the
    median is reported too (single reads vary on a shared 2-core machine)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    )
    cmd = [sys.executable, "-m", "bench.rawread", "--bootstrap", bootstrap, "--topic", topic]
    cmd += ["--partitions", str(partitions), "--total", str(total), "--runs", "5"]
    done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"bench.rawread failed ({done.returncode}): {done.stderr[-2000:]}")
    runs: list[float] = json.loads(done.stdout.strip().splitlines()[-1])["runs"]
    return {
        "events_per_s": max(runs),
        "median_events_per_s": sorted(runs)[len(runs) // 2],
        "runs": [round(r) for r in runs],
        "process": "own",
    }
