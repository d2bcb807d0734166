"""End-to-end throughput benchmark of one smsmon worker against a real local Kafka broker.

One run (issue 6) measures, on its own broker (scripts/kafka-local.sh, free loopback ports):

  (1) the raw ceiling: a plain aiokafka consumer reading the events topic, no processing;
  (2) the end-to-end rate of ONE worker with the full rule set: events/s from the first event
      consumed to the last input offset committed and the last alert published, after the
      worker has loaded a consent table of at least 1 million (msisdn x enterprise) pairs
      (the consent load is timed separately); the alerts must equal the expected set that
      OfflineRunner computes from the same records ("a fast wrong answer is not a result");
  (3) detection latency p50/p99 at a fixed offered load of half of (2), from the worker's
      histogram (bucket resolution) and from a consumer that matches alerts to produce times;
  (4) cost: worker CPU-seconds per 10,000 events, one worker and two workers in one group
      (broker and load-generator CPU reported separately);
  (5) peak RSS (VmHWM) of the worker.

    python -m bench.throughput                       # the full run (make bench)
    python -m bench.throughput --quick               # 30,000 events, 100,000 consent pairs
    python -m bench.throughput --json out.json --profile worker.pyspy

Every process it starts (broker, workers, py-spy) is stopped on exit, also on Ctrl-C.
See docs/performance.md for what each figure means and the recorded results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "kafka-local.sh"
SECRET = "bench-throughput-secret"
TZ = ZoneInfo("Asia/Shanghai")
SCENARIOS = frozenset({"bombing", "sublet", "spike", "complaints", "double11"})
SPAN_S = 10_200.0  # 07:20-10:10 local, see span_start
LATENCY_SPAN_S = 1800.0  # the latency phase continues at 10:10 (at least this long)
SUBSCRIBERS = 200_000  # simulated population (quick: 50,000)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# fmt: off
MSISDN_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151",
    "152", "155", "156", "157", "158", "159", "176", "177", "178", "180", "186", "188",
)
# fmt: on


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------
# processes: /proc accounting, the broker, workers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Processes:
    """Every child process this run started; `stop_all` ends them (TERM, then KILL)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def add(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc, 30.0)


class Broker:
    """A dedicated single-node broker started with scripts/kafka-local.sh."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.cport = free_port()
        while self.cport == self.port:
            self.cport = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.pid = 0
        self.started = False

    def _env(self) -> dict[str, str]:
        return dict(os.environ, SMSMON_PYTHON=sys.executable)

    def start(self) -> None:
        cmd = [str(SCRIPT), "start", "--port", str(self.port)]
        cmd += ["--controller-port", str(self.cport), "--dir", str(self.dir)]
        self.started = True  # stop() is safe even if start fails half-way
        r = subprocess.run(cmd, env=self._env(), capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"broker did not start:\n{r.stdout}\n{r.stderr}")
        self.pid = int((self.dir / "broker.pid").read_text().split()[0])

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                [str(SCRIPT), "stop", "--dir", str(self.dir)],
                env=self._env(),
                capture_output=True,
                timeout=90,
            )
            self.started = False


def app_env(bootstrap: str, prefix: str, partitions: int) -> dict[str, str]:
    """SMSMON_* settings of one isolated app: its own app id (consumer group) and topics."""
    p = prefix
    return {
        "SMSMON_KAFKA_BOOTSTRAP": bootstrap,
        "SMSMON_APP_ID": p,
        "SMSMON_PARTITIONS": str(partitions),
        "SMSMON_TOPIC_EVENTS": f"{p}.sms.events",
        "SMSMON_TOPIC_PORTS": f"{p}.sms.ref.ports",
        "SMSMON_TOPIC_SIGNATURES": f"{p}.sms.ref.signatures",
        "SMSMON_TOPIC_CONSENT": f"{p}.sms.ref.consent",
        "SMSMON_TOPIC_COMPLAINTS": f"{p}.sms.complaints",
        "SMSMON_TOPIC_EXEMPTIONS": f"{p}.sms.ref.exemptions",
        "SMSMON_TOPIC_ALERTS": f"{p}.sms.alerts",
        "SMSMON_TOPIC_DLQ": f"{p}.sms.events.dlq",
        "SMSMON_MSISDN_SECRET": SECRET,
        "SMSMON_STORE": "rocksdb://",
    }


def worker_env_option(ap: argparse.ArgumentParser, items: list[str]) -> dict[str, str]:
    """`--worker-env SMSMON_X=VALUE` items as a dict; the settings that isolate the bench's
    app (its id, topics, broker) cannot be overridden."""
    fixed = set(app_env("", "", 1)) | {"SMSMON_METRICS_PORT", "SMSMON_DATA_DIR"}
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("SMSMON_"):
            ap.error(f"--worker-env {item!r}: expected SMSMON_<SETTING>=<value>")
        if key in fixed:
            ap.error(f"--worker-env {key}: set by the bench itself")
        out[key] = value
    return out


def settings_of(env: dict[str, str]) -> Any:
    from smsmon.config.settings import Settings

    return Settings(**{k[len("SMSMON_") :].lower(): v for k, v in env.items()})


class Worker:
    """One `smsmon worker` process and its /metrics endpoint."""

    def __init__(self, procs: Processes, name: str, env: dict[str, str], root: Path) -> None:
        self.name = name
        self.metrics_port = free_port()
        self.log_path = root / f"worker-{name}.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith("SMSMON_")}
        full.update(env)
        # The worker runs this checkout's code (its `smsmon` package), not whatever the
        # venv's editable install points at: a bench run from a `git worktree` measures
        # that worktree's worker.
        full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), full.get("PYTHONPATH")) if p)
        full["SMSMON_METRICS_PORT"] = str(self.metrics_port)
        full["SMSMON_DATA_DIR"] = str(root / f"data-{name}")
        self.started_at = time.monotonic()
        with self.log_path.open("wb") as out:
            self.proc = procs.add(
                subprocess.Popen(
                    [sys.executable, "-m", "smsmon.cli", "worker"],
                    env=full,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                )
            )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            text = self.log_path.read_text(errors="replace")
            lines = text.splitlines()
            first = next(
                (i for i, ln in enumerate(lines) if "[ERROR]" in ln or "[CRITICAL]" in ln), None
            )
            head = "\n".join(lines[first : first + 60]) if first is not None else ""
            raise RuntimeError(
                f"worker {self.name} exited ({self.proc.returncode}), log {self.log_path}; "
                f"first error:\n{head}\n...\n{text[-2000:]}"
            )

    def samples(self) -> list[Any]:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            text = r.read().decode()
        return [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        want = labels or {}
        return sum(
            float(s.value)
            for s in self.samples()
            if s.name == name and all(s.labels.get(k) == v for k, v in want.items())
        )

    def try_sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        try:
            return self.sample(name, labels)
        except OSError:
            return -1.0

    def latency_buckets(self) -> list[tuple[float, float]]:
        """Cumulative (le, count) of smsmon_detection_latency_seconds."""
        out = [
            (float(s.labels["le"]), float(s.value))
            for s in self.samples()
            if s.name == "smsmon_detection_latency_seconds_bucket"
        ]
        return sorted(out)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def hwm_mib(self) -> float:
        return status_kib(self.pid, "VmHWM") / 1024


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except (OSError, ValueError) as exc:  # metrics endpoint not up yet
            last = exc
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


def wait_quiescent(pids: list[int], timeout: float = 180.0, max_util: float = 0.10) -> float:
    """Wait until each process uses less than `max_util` of a core over 2 s (background work
    such as changelog writes or standby replication done); returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = [cpu_seconds(p) for p in pids]
        time.sleep(2.0)
        if all((cpu_seconds(p) - b) / 2.0 < max_util for p, b in zip(pids, before, strict=True)):
            break
    return time.monotonic() - t0


# ------------------------------------------------------------------------------------------
# data: simulated traffic, consent, the expected alert set


def span_start(now: dt.datetime) -> dt.datetime:
    """The latest 07:20 Asia/Shanghai not after `now`.

    07:20-10:10 exercises every rule: marketing before 08:00 breaks quiet hours (at the low
    morning rate), the simulator's Double 11 ramp (on spans without an evening) fills the
    second half, and the incident plan puts the complaint wave inside 09:00-10:00, an hourly
    window that closes before the span ends. No ts is more than a few hours in the future.
    """
    local = now.astimezone(TZ)
    start = local.replace(hour=7, minute=20, second=0, microsecond=0)
    if start > local:
        start -= dt.timedelta(days=1)
    return start


def simulation(
    seed: int, start: dt.datetime, duration: float, rate: float, subscribers: int
) -> Any:
    from smsmon.tools.simulator import SimConfig, generate

    return generate(
        SimConfig(
            seed=seed,
            start=start,
            duration=duration,
            base_rate=rate,
            scenarios=SCENARIOS,
            subscribers=subscribers,
            msisdn_secret=SECRET.encode(),
            incidents=1,
        )
    )


def calibrated_rate(
    seed: int, start: dt.datetime, duration: float, records: int, subscribers: int
) -> float:
    """The simulator's base_rate that yields about `records` records over the span."""
    probe = 2.0
    n = sum(1 for _ in simulation(seed, start, duration, probe, subscribers).records())
    return probe * records / max(n, 1)


def enc(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


Rec = tuple[str, bytes, bytes]  # kind ("event" | "complaint"), key, value


def take_records(sim: Any, n: int) -> tuple[list[Rec], list[str]]:
    recs: list[Rec] = []
    ids: list[str] = []
    for kind, key, value in itertools.islice(sim.records(), n):
        recs.append((kind, key.encode(), enc(value)))
        ids.append(value.get("event_id") or value.get("complaint_id") or "")
    return recs, ids


def offline_alerts(sim: Any, records: list[Rec], secret: str = SECRET) -> list[Any]:
    """The same records through the same rules without Kafka (what `smsmon audit` runs; the
    traffic integration test uses this too); synthetic consent pairs are left out: no event
    names them."""
    from smsmon.agents.pipeline import content_checker
    from smsmon.config.settings import Settings
    from smsmon.contract.canonical import MsisdnHasher
    from smsmon.contract.codec import DecodeContext, decode_event, decode_model, signature_key
    from smsmon.contract.models import Complaint, ConsentRecord, PortRecord, SignatureRecord
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
    settings = Settings(msisdn_secret=secret)
    runner = OfflineRunner(
        book,
        EngineConfig(hasher=MsisdnHasher(secret.encode(), "k1"), content=content_checker(settings)),
        TrafficConfig(),
    )
    consent = [ConsentRecord.model_validate(v) for _, v in sim.reference.consent]

    def decoded() -> Iterator[Any]:
        yield from consent
        for kind, key, value in records:
            if kind == "complaint":
                yield decode_model(Complaint, value, ctx)
            else:
                yield decode_event(value, key, ctx)

    return list(runner.run(decoded()))


def partition_for(msisdn: str, partitions: int) -> int:
    from smsmon.contract.canonical import partition_for as pf

    return int(pf(msisdn, partitions))


def consent_stream(
    sim: Any, total: int, partitions: int, seed: int
) -> Iterator[tuple[bytes, bytes, int]]:
    """(key, value, partition) of the simulator's consent pairs, then synthetic pairs of extra
    subscribers (never in the simulated population, so they change no alert) up to `total`.

    Every record goes to smsmon's partition for its msisdn (a consent platform that keys by
    `<msisdn>|<enterprise>` but partitions like smsmon), so the load measures table writes,
    not re-keying. Deterministic: a second call yields the same records.
    """
    n = 0
    for key, value in sim.reference.consent:
        yield key.encode(), enc(value), partition_for(value["msisdn"], partitions)
        n += 1
    taken = set(sim.population.msisdns)
    ents = [e.uscc for e in sim.population.enterprises]
    rng = random.Random(f"bench-consent:{seed}")
    base = sim.start - dt.timedelta(days=1)
    counter = 0
    np_ = len(MSISDN_PREFIXES)
    while n < total:
        prefix = MSISDN_PREFIXES[counter % np_]
        # a bijection of the 8-digit counter: unique numbers that don't look sequential
        number = ((counter // np_) * 48_271 + 1_234_567) % 100_000_000
        counter += 1
        m = f"{prefix}{number:08d}"
        if m in taken:
            continue
        part = partition_for(m, partitions)
        k = min(1 + int(rng.expovariate(0.7)), 5, len(ents), total - n)
        for e in rng.sample(ents, k):
            status = "revoked" if rng.random() < 0.03 else "granted"
            ts = (base - dt.timedelta(seconds=rng.randrange(400 * 86_400))).isoformat()
            value = (
                f'{{"msisdn":"{m}","enterprise":"{e}","status":"{status}",'
                f'"ts":"{ts}","source":"app"}}'
            )
            yield f"{m}|{e}".encode(), value.encode(), part
            n += 1


# ------------------------------------------------------------------------------------------
# Kafka clients: producing, committed offsets, the alerts collector, the raw consumer


class Prod:
    """A confluent-kafka producer that retries on a full queue and fails on delivery errors."""

    def __init__(self, bootstrap: str, linger_ms: int = 20) -> None:
        from confluent_kafka import Producer

        self.errors: list[str] = []
        self.p = Producer(
            {
                "bootstrap.servers": bootstrap,
                # Kafka's Java default partitioner (murmur2) on the canonical msisdn key: what
                # smsmon's contract asks of producers, so no event needs re-keying.
                "partitioner": "murmur2_random",
                "linger.ms": linger_ms,
                "batch.size": 1_000_000,
                "acks": "all",
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "delivery.report.only.error": True,
                "on_delivery": self._on_error,
            }
        )

    def _on_error(self, err: Any, _msg: Any) -> None:
        self.errors.append(str(err))

    def produce(self, topic: str, key: bytes, value: bytes, partition: int = -1) -> None:
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


def produce_records(bootstrap: str, env: dict[str, str], records: list[Rec]) -> float:
    """Produce events and complaints as fast as possible; returns the seconds it took."""
    p = Prod(bootstrap)
    topics = {"event": env["SMSMON_TOPIC_EVENTS"], "complaint": env["SMSMON_TOPIC_COMPLAINTS"]}
    t0 = time.monotonic()
    for i, (kind, key, value) in enumerate(records):
        p.produce(topics[kind], key, value)
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
                    if m.error() is not None or m.value() is None:
                        continue
                    self.records += 1
                    d = json.loads(m.value())
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


async def _raw_read(bootstrap: str, topic: str, partitions: int, total: int) -> tuple[int, float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        n, first_n = 0, 0
        t0 = t1 = 0.0
        deadline = time.monotonic() + 600
        while n < total and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=1000, max_records=10_000)
            got = sum(len(v) for v in batch.values())
            if got and not n:
                t0, first_n = time.perf_counter(), got
            n += got
            t1 = time.perf_counter()
        return n - first_n, t1 - t0
    finally:
        await c.stop()


def raw_ceiling(bootstrap: str, topic: str, partitions: int, total: int) -> dict[str, Any]:
    """Best of five plain aiokafka reads of the whole topic (first batch not timed); the
    median is reported too (single reads vary a lot on a shared 2-core machine)."""
    runs = []
    for _ in range(5):
        n, secs = asyncio.run(_raw_read(bootstrap, topic, partitions, total))
        runs.append(n / secs if secs > 0 else 0.0)
    return {
        "events_per_s": max(runs),
        "median_events_per_s": sorted(runs)[len(runs) // 2],
        "runs": [round(r) for r in runs],
    }


# ------------------------------------------------------------------------------------------
# measuring a worker group end to end


def quantile_from_buckets(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus-style quantile of a cumulative histogram: linear inside the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return prev_le  # beyond the last finite bucket: its bound is all we know
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return None


def exact_quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


@dataclasses.dataclass
class RunResult:
    events: int
    seconds: float
    rate: float
    first_event_after_s: float
    produce_s: float
    commit_done_s: float | None
    alerts_done_s: float | None
    worker_cpu_s: float
    broker_cpu_s: float
    loadgen_cpu_s: float
    alerts_live: int
    alert_records: int
    stalled: bool
    uncommitted: dict[str, int]


def measure(
    workers: list[Worker],
    broker: Broker,
    env: dict[str, str],
    records: list[Rec],
    expected_count: int,
    collector: AlertCollector,
    *,
    on_first: Callable[[], None] | None = None,
    settle_s: float = 45.0,
    stall_s: float = 120.0,
    timeout_s: float = 3600.0,
) -> RunResult:
    """Produce `records` as fast as possible into the group's input topics and time the run:
    from the first event consumed (first nonzero smsmon_events_total, polled every 100 ms) to
    the last input offset committed and the last expected alert published."""
    bootstrap = broker.bootstrap
    s = settings_of(env)
    offsets = Offsets(bootstrap, s.app_id, run_inputs(s))
    cpu0 = [w.cpu() for w in workers]
    bcpu0, lcpu0 = cpu_seconds(broker.pid), self_cpu()
    alerts0 = collector.count()
    produced: dict[str, float] = {}

    def run_producer() -> None:
        produced["seconds"] = produce_records(bootstrap, env, records)

    prod = threading.Thread(target=run_producer, name="producer")
    t_start = time.monotonic()
    prod.start()
    t_first: float | None = None
    t_commit: float | None = None
    t_alerts: float | None = None
    stalled = False
    behind, last_behind, t_progress = -1, -1, t_start
    deadline = t_start + timeout_s
    try:
        while time.monotonic() < deadline:
            for w in workers:
                w.check()
            now = time.monotonic()
            if t_first is None:
                if sum(max(0.0, w.try_sample("smsmon_events_total")) for w in workers) > 0:
                    t_first = now
                    if on_first is not None:
                        on_first()
                time.sleep(0.1)
                continue
            if prod.is_alive():
                time.sleep(0.1)
                continue
            if t_commit is None:
                behind = offsets.behind()
                if behind == 0:
                    t_commit = time.monotonic()
                elif behind != last_behind:
                    last_behind, t_progress = behind, now
                elif now - max(t_progress, collector.last_new) > stall_s:
                    stalled = True  # committed offsets stopped moving: report, don't hang
                    break
            n_alerts = collector.count() - alerts0
            if t_alerts is None and n_alerts >= expected_count:
                t_alerts = collector.last_new if n_alerts else t_first
            if t_commit is not None and t_alerts is not None:
                break
            if t_commit is not None and now - max(collector.last_new, t_commit) > settle_s:
                break  # the expected count is not reached: the correctness check reports it
            time.sleep(0.1)
        else:
            raise TimeoutError(f"run not finished after {timeout_s:.0f}s")
    finally:
        prod.join()
    assert t_first is not None
    cpu1 = [w.cpu() for w in workers]
    bcpu1, lcpu1 = cpu_seconds(broker.pid), self_cpu()
    # Settle: anything published after the expected set would be an extra alert.
    time.sleep(3.0)
    last_alert = t_alerts if t_alerts is not None else collector.last_new
    t_end = max(t_commit if t_commit is not None else t_progress, last_alert or 0.0)
    uncommitted = offsets.uncommitted()
    offsets.close()
    if stalled:
        log(f"warning: committed offsets stopped moving {behind} records short: {uncommitted}")
    secs = t_end - t_first
    return RunResult(
        events=len(records),
        seconds=secs,
        rate=len(records) / secs if secs > 0 else 0.0,
        first_event_after_s=t_first - t_start,
        produce_s=produced.get("seconds", float("nan")),
        commit_done_s=(t_commit - t_first) if t_commit is not None else None,
        alerts_done_s=(t_alerts - t_first) if t_alerts is not None else None,
        worker_cpu_s=sum(c1 - c0 for c0, c1 in zip(cpu0, cpu1, strict=True)),
        broker_cpu_s=bcpu1 - bcpu0,
        loadgen_cpu_s=lcpu1 - lcpu0,
        alerts_live=collector.count() - alerts0,
        alert_records=collector.records,
        stalled=stalled,
        uncommitted=uncommitted,
    )


def consent_uncommitted(bootstrap: str, env: dict[str, str]) -> dict[str, int]:
    s = settings_of(env)
    o = Offsets(bootstrap, s.app_id, [s.topic_consent])
    try:
        return o.uncommitted()
    finally:
        o.close()


def run_inputs(s: Any) -> list[str]:
    """The group's input topics that the measured run writes to (events, complaints, and the
    internal re-keying and stage-1 counts topics). The consent topic is left out: its records
    were loaded (and their offsets committed, or not) before the run; see `uncommitted`."""
    return [s.topic_events, s.topic_complaints, s.rekey_topic, s.counts_topic]


def correctness(collector: AlertCollector, expected: list[Any]) -> dict[str, Any]:
    got = collector.snapshot()
    want = {a.alert_id: a for a in expected}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    return {
        "expected": len(want),
        "live": len(got),
        "live_records": collector.records,
        "equal": not missing and not extra,
        "missing": [f"{want[i].rule} {want[i].subject or want[i].event_id}" for i in missing][:20],
        "extra": [f"{got[i][2]} {got[i][1] or i}" for i in extra][:20],
        "missing_count": len(missing),
        "extra_count": len(extra),
        "by_rule": dict(sorted(Counter(a.rule for a in expected).items())),
    }


def start_workers(
    procs: Processes, names: list[str], env: dict[str, str], root: Path, consent_pairs: int
) -> tuple[list[Worker], dict[str, float]]:
    """Start workers after their consent topic is loaded; time readiness and the consent load
    (until smsmon_reference_entries{table="consent"} summed over workers reaches the pairs)."""
    t0 = time.monotonic()
    workers = [Worker(procs, n, env, root) for n in names]

    def ready() -> bool:
        for w in workers:
            w.check()
        return all(w.sample("smsmon_reference_ready") == 1.0 for w in workers)

    wait_for(ready, 300, "workers ready")
    t_ready = time.monotonic()
    # The gauge is refreshed every 2 s. If it stops moving short of the total for a minute
    # (records lost in a rebalance, see docs/performance.md) go on and report the shortfall.
    loaded, last, t_change = 0.0, -1.0, time.monotonic()
    deadline = time.monotonic() + 600 + consent_pairs / 500
    while time.monotonic() < deadline:
        for w in workers:
            w.check()
        with contextlib.suppress(OSError, ValueError):
            counts = [w.sample("smsmon_reference_entries", {"table": "consent"}) for w in workers]
            loaded = sum(counts)
            if loaded == consent_pairs and all(c > 0 for c in counts):
                break
            if loaded != last:
                last, t_change = loaded, time.monotonic()
            elif loaded > 0 and time.monotonic() - t_change > 60:
                log(f"warning: consent load stopped at {loaded:,.0f} of {consent_pairs:,} pairs")
                break
        time.sleep(0.5)
    else:
        raise TimeoutError(f"consent load: {loaded:,.0f} of {consent_pairs:,} pairs")
    t_loaded = time.monotonic() if loaded == consent_pairs else t_change
    quiet = wait_quiescent([w.pid for w in workers])
    return workers, {
        "ready_s": t_ready - t0,
        "consent_load_s": t_loaded - t0,
        "consent_load_after_ready_s": t_loaded - t_ready,
        "consent_loaded": loaded,
        "consent_missing": consent_pairs - loaded,
        "quiesce_s": quiet,
    }


# ------------------------------------------------------------------------------------------
# py-spy profile summary


# (label, regex on one frame of a py-spy raw stack "Class.func (path/file.py:line)"); a stack
# counts for a group once if any of its frames matches (inclusive time).
PROFILE_GROUPS: list[tuple[str, str]] = [
    ("event loop thread (all of it)", r"^cmd_worker \("),
    ("  check_events: Pipeline.process_batch (ours)", r"^Pipeline\.process_batch \("),
    ("    decode_event (pydantic JSON decode)", r"^decode_event \("),
    ("    Engine.on_event (per-message rules)", r"^Engine\.on_event \("),
    ("    Stage1.on_* (traffic stage 1 partials)", r"^Stage1\.on_\w+ \("),
    ("    table reads (TableState/BatchOverlay.get)", r"^BatchOverlay\.get \("),
    ("    Pipeline._flush_tables (table writes)", r"^Pipeline\._flush_tables \("),
    ("      Faust changelog send_soon per key", r"^Collection\.send_changelog \("),
    ("  RocksDB store calls (all callers)", r"\(faust/stores/rocksdb\.py"),
    ("  aggregate_counts: Aggregation.process_batch", r"^Aggregation\.process_batch \("),
    ("  BatchOutput.flush (alerts, partials)", r"^BatchOutput\.flush \("),
    ("  Faust ProducerBuffer (changelog -> aiokafka)", r"^ProducerBuffer\.\w+ \("),
    ("  aiokafka producer (send, sender, conn)", r"\(aiokafka/(producer/|client\.py|conn\.py)"),
    (
        "  Faust commit (Consumer.commit/_commit_*)",
        r"^Consumer\.(commit|force_commit|_commit\w*) \("
        r"faust/",
    ),
    ("  Faust stream/ack (Stream.*, Event.ack)", r"^(Stream\.\w+|Event\.ack|Message\.ack) \("),
    (
        "  Faust consumer dispatch (Fetcher, Conductor)",
        r"^(Fetcher\._fetcher|Consumer\._drain_messages"
        r"|Conductor\.\S+) \(faust/",
    ),
    ("  Pipeline.refresh_gauges (2 s timer)", r"^Pipeline\.(refresh_gauges|_refresh_lag) \("),
    ("  epoll wait on the event loop", r"^EpollSelector\.select \(selectors"),
    ("Faust consumer thread (aiokafka fetch)", r"^WorkerThread\.run \("),
    ("prometheus /metrics server thread", r"^BaseServer\.serve_forever \("),
]


def _frame_name(frame: str) -> str:
    """`Class.func (path/file.py:123)` -> `Class.func (dir/file.py)`, short enough for a table."""
    m = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    short = "/".join(m.group(2).split("/")[-2:])
    return f"{m.group(1)} ({short})"


def summarize_profile(path: Path, seconds: float, rate: float, top: int = 25) -> dict[str, Any]:
    """Inclusive and self shares of a py-spy raw profile, in % of the wall time sampled
    (`seconds` x `rate` samples = 100 %: one thread busy all the time). py-spy records only
    threads that are not idle, so the event-loop thread's total is how busy it was."""
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.strip().rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    full = seconds * rate
    pct = lambda n: round(100 * n / full, 1) if full else 0.0  # noqa: E731
    groups = []
    for label, pattern in PROFILE_GROUPS:
        rx = re.compile(pattern)
        n = sum(c for frames, c in stacks if any(rx.search(f) for f in frames))
        groups.append({"group": label, "pct": pct(n)})
    incl: Counter[str] = Counter()
    selfc: Counter[str] = Counter()
    for frames, c in stacks:
        for name in {_frame_name(f) for f in frames}:
            incl[name] += c
        if frames:
            selfc[_frame_name(frames[-1])] += c
    return {
        "samples": sum(c for _, c in stacks),
        "seconds": seconds,
        "rate_hz": rate,
        "groups": groups,
        "top_inclusive": [(k, pct(v)) for k, v in incl.most_common(top)],
        "top_self": [(k, pct(v)) for k, v in selfc.most_common(top)],
    }


# ------------------------------------------------------------------------------------------
# reporting


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "commit": commit,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(v: Any, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        s = f"{v:,.{digits}f}"
    elif isinstance(v, int):
        s = f"{v:,}"
    else:
        s = str(v)
    return f"{s} {unit}".strip()


def print_summary(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = res["machine"]
    t = Table(
        title=f"smsmon throughput ({res['params']['events']:,} events, "
        f"{res['params']['consent_pairs']:,} consent pairs, "
        f"{res['params']['partitions']} partitions) - {m['nproc']} x {m['cpu_model']}, "
        f"{m['ram_gib']} GiB, commit {m['commit']}",
        show_lines=False,
    )
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target (issue 6)")
    raw = res.get("raw", {}).get("events_per_s")
    one = res.get("one_worker", {})
    two = res.get("two_workers", {})
    lat = res.get("latency", {})
    corr1 = one.get("correctness", {})
    t.add_row("(1) raw ceiling, aiokafka, no processing", fmt(raw, "ev/s"), "best of 5")
    t.add_row("    median of the 5 reads", fmt(res.get("raw", {}).get("median_events_per_s"),
              "ev/s"), "")  # fmt: skip
    t.add_row("(2) end to end, one worker", fmt(one.get("rate"), "ev/s"), ">= 10,000 ev/s")
    if raw and one.get("rate"):
        t.add_row("    ratio (2)/(1)", f"{one['rate'] / raw:.3f}", "")
    t.add_row(
        "    alerts live = expected",
        f"{corr1.get('equal')} ({corr1.get('live')} / {corr1.get('expected')})",
        "must be True",
    )
    t.add_row(
        "    consent load (worker start -> all pairs)", fmt(one.get("consent_load_s"), "s", 1), ""
    )
    t.add_row("    consent load rate", fmt(one.get("consent_rate"), "pairs/s"), "")
    t.add_row("(3) offered load (half of (2))", fmt(lat.get("offered_rate"), "ev/s"), "")
    t.add_row(
        "    latency p50 / p99, worker histogram",
        f"{fmt(lat.get('hist_p50_s'), 's', 3)} / {fmt(lat.get('hist_p99_s'), 's', 3)}",
        "p99 < 1 s",
    )
    t.add_row(
        "    latency p50 / p99, produce -> alert",
        f"{fmt(lat.get('e2e_p50_s'), 's', 3)} / {fmt(lat.get('e2e_p99_s'), 's', 3)}",
        "p99 < 1 s",
    )
    t.add_row(
        "      produce -> batch start | batch start -> alert read, p99",
        f"{fmt(lat.get('to_batch_p99_s'), 's', 3)} | {fmt(lat.get('batch_to_read_p99_s'), 's', 3)}",
        "",
    )
    t.add_row("(4) worker CPU-s per 10k events, 1 worker", fmt(one.get("cpu_per_10k"), "s", 2), "")
    t.add_row(
        "    worker CPU-s per 10k events, 2 workers",
        fmt(two.get("cpu_per_10k"), "s", 2),
        "within 15% of 1 worker",
    )
    if two.get("cpu_per_10k") and one.get("cpu_per_10k"):
        t.add_row(
            "    ratio 2 workers / 1 worker",
            f"{two['cpu_per_10k'] / one['cpu_per_10k']:.2f}",
            "<= 1.15",
        )
    t.add_row("    end to end, two workers", fmt(two.get("rate"), "ev/s"), "")
    if two:
        c2 = two.get("correctness", {})
        t.add_row(
            "    alerts live = expected (2 workers)",
            f"{c2.get('equal')} ({c2.get('live')} / {c2.get('expected')})",
            "",
        )
        t.add_row(
            "    consent pairs loaded (2 workers)",
            f"{two.get('consent_loaded', 0):,.0f} of {res['params']['consent_pairs']:,}",
            "",
        )
    t.add_row(
        "    broker CPU-s per 10k events (1 worker run)",
        fmt(one.get("broker_cpu_per_10k"), "s", 2),
        "reported separately",
    )
    t.add_row(
        "    load generator CPU-s per 10k (1 worker run)",
        fmt(one.get("loadgen_cpu_per_10k"), "s", 2),
        "reported separately",
    )
    t.add_row(
        "(5) peak RSS (VmHWM), one worker",
        fmt(one.get("peak_rss_mib"), "MiB"),
        "< 1.5 GiB at 10M pairs",
    )
    Console(width=120).print(t)
    for label, r in (("one worker", one), ("two workers", two)):
        if r.get("stalled"):
            print(f"COMMITS STALLED ({label}): uncommitted {r.get('uncommitted')}")
        if r.get("consent_missing"):
            print(f"CONSENT PAIRS MISSING ({label}): {r['consent_missing']:,.0f}")
        if r.get("consent_uncommitted"):
            print(f"consent offsets not committed ({label}): {r['consent_uncommitted']}")
    for label, c in (("one worker", corr1), ("two workers", two.get("correctness") or {})):
        if c and not c.get("equal"):
            print(
                f"ALERTS DIFFER ({label}): {c['missing_count']} missing, {c['extra_count']} extra"
            )
            for line in c["missing"]:
                print(f"  missing: {line}")
            for line in c["extra"]:
                print(f"  extra:   {line}")
    prof = res.get("profile")
    if prof:
        print(
            f"\nprofile of the worker during the full-rate phase ({prof['samples']} samples, "
            f"{prof['seconds']} s at {prof['rate_hz']:.0f} Hz; % of wall time, inclusive):"
        )
        for g in prof["groups"]:
            print(f"  {g['pct']:5.1f}%  {g['group']}")
        print("top frames, inclusive:")
        for name, v in prof["top_inclusive"][:25]:
            print(f"  {v:5.1f}%  {name}")
        print("top frames, self:")
        for name, v in prof["top_self"][:15]:
            print(f"  {v:5.1f}%  {name}")


# ------------------------------------------------------------------------------------------
# the run


def run(args: argparse.Namespace, procs: Processes, root: Path, res: dict[str, Any]) -> None:
    res |= {
        "machine": machine(),
        "command": " ".join(["python -m bench.throughput", *sys.argv[1:]]),
        "params": {
            "events": args.events,
            "consent_pairs": args.consent_pairs,
            "partitions": args.partitions,
            "quick": args.quick,
            "seed": args.seed,
            "profiled": bool(args.profile),
            "no_complaints": args.no_complaints,
            "worker_env": args.worker_env,
        },
    }
    # -- data (before anything runs on the broker)
    start = span_start(dt.datetime.now(dt.UTC))
    t0 = time.monotonic()
    rate = calibrated_rate(args.seed, start, SPAN_S, args.events, args.subscribers)
    sim = simulation(args.seed, start, SPAN_S, rate, args.subscribers)
    records, _ = take_records(sim, args.events)
    if args.no_complaints:
        records = [r for r in records if r[0] == "event"]
    kinds = Counter(k for k, _, _ in records)
    log(
        f"simulated {len(records):,} records ({kinds['event']:,} events, "
        f"{kinds['complaint']:,} complaints; base_rate {rate:.1f}/s over "
        f"{SPAN_S / 3600:.1f} h from {start.isoformat()}) in {time.monotonic() - t0:.1f}s"
    )
    t0 = time.monotonic()
    expected = offline_alerts(sim, records)
    log(f"offline: {len(expected):,} expected alerts in {time.monotonic() - t0:.1f}s")
    res["data"] = {
        "records": len(records),
        "events": kinds["event"],
        "complaints": kinds["complaint"],
        "sim_start": start.isoformat(),
        "sim_span_h": SPAN_S / 3600,
        "base_rate": round(rate, 2),
        "subscribers": args.subscribers,
        "sim_consent_pairs": len({k for k, _ in sim.reference.consent}),
        "expected_alerts": len(expected),
        "expected_by_rule": dict(sorted(Counter(a.rule for a in expected).items())),
        "scenarios": sorted(SCENARIOS),
    }
    if args.consent_pairs < res["data"]["sim_consent_pairs"]:
        log(f"consent pairs raised to the simulator's {res['data']['sim_consent_pairs']:,}")
        args.consent_pairs = res["params"]["consent_pairs"] = res["data"]["sim_consent_pairs"]

    broker = Broker(root / "kafka")
    try:
        log("starting the broker")
        broker.start()
        log(f"broker ready at {broker.bootstrap} (pid {broker.pid})")
        if not args.no_one_worker:
            one_worker_phases(args, procs, root, broker, sim, records, expected, res)
        if not args.no_two_workers:
            two_worker_phase(args, procs, root, broker, sim, records, expected, res)
    finally:
        procs.stop_all()
        broker.stop()


def setup_app(
    broker: Broker, prefix: str, args: argparse.Namespace, sim: Any
) -> tuple[dict[str, str], float]:
    from smsmon.admin import ensure_topics

    env = app_env(broker.bootstrap, prefix, args.partitions)
    env.update(args.worker_env)
    settings = settings_of(env)
    ensure_topics(settings)  # also creates the tables' changelogs (PartitionsMismatch otherwise)
    load_reference(broker.bootstrap, env, sim)
    t0 = time.monotonic()
    n = load_consent(
        broker.bootstrap, env, consent_stream(sim, args.consent_pairs, args.partitions, args.seed)
    )
    secs = time.monotonic() - t0
    log(f"{prefix}: produced {n:,} consent records in {secs:.1f}s")
    return env, secs


def one_worker_phases(
    args: argparse.Namespace,
    procs: Processes,
    root: Path,
    broker: Broker,
    sim: Any,
    records: list[Rec],
    expected: list[Any],
    res: dict[str, Any],
) -> None:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    env, consent_produce_s = setup_app(broker, prefix, args, sim)
    (workers, times) = start_workers(procs, ["w1"], env, root, args.consent_pairs)
    w = workers[0]
    log(
        f"worker ready after {times['ready_s']:.1f}s; {args.consent_pairs:,} consent pairs "
        f"loaded after {times['consent_load_s']:.1f}s (quiet after {times['quiesce_s']:.0f}s more)"
    )
    rss_after_consent = w.hwm_mib()
    collector = AlertCollector(broker.bootstrap, env["SMSMON_TOPIC_ALERTS"])
    collector.start()
    profiler: dict[str, Any] = {}

    def start_profile() -> None:
        if args.profile:
            spy = Path(sys.executable).with_name("py-spy")
            cmd = [str(spy), "record", "-p", str(w.pid), "-d", str(args.profile_seconds)]
            cmd += ["-r", "200", "-f", "raw", "-o", str(args.profile)]
            profiler["proc"] = procs.add(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            )

    try:
        log(f"(2) producing {len(records):,} records as fast as possible into one worker")
        batches0 = (w.sample("smsmon_batch_events_count"), w.sample("smsmon_batch_events_sum"))
        r = measure([w], broker, env, records, len(expected), collector, on_first=start_profile)
        corr = correctness(collector, expected)
        log(
            f"(2) {r.rate:,.0f} events/s ({r.events:,} in {r.seconds:.1f}s; produced in "
            f"{r.produce_s:.1f}s); alerts live {corr['live']} / expected {corr['expected']}"
            f" -> {'EQUAL' if corr['equal'] else 'DIFFERENT'}"
        )
        if "proc" in profiler:
            p = profiler["proc"]
            p.wait(timeout=args.profile_seconds + 60)
            if p.returncode == 0:
                res["profile"] = summarize_profile(Path(args.profile), args.profile_seconds, 200.0)
                res["profile"]["file"] = str(args.profile)
            else:
                res["profile_error"] = (p.stderr.read() if p.stderr else b"").decode()[-2000:]
        rekeyed = w.sample("smsmon_rekeyed_total")
        dead = w.sample("smsmon_invalid_events_total")
        events_total = w.sample("smsmon_events_total")
        diag = {
            "complaints_attributed": w.sample("smsmon_complaints_total", {"attributed": "true"}),
            "complaints_unattributed": w.sample("smsmon_complaints_total", {"attributed": "false"}),
            "late_events": w.sample("smsmon_late_events_total"),
        }
        nb = w.sample("smsmon_batch_events_count") - batches0[0]
        diag["batches"] = nb
        diag["mean_batch"] = (w.sample("smsmon_batch_events_sum") - batches0[1]) / max(1.0, nb)
        res["one_worker"] = {
            "rate": r.rate,
            "seconds": r.seconds,
            "events": r.events,
            "produce_s": r.produce_s,
            "produce_rate": r.events / r.produce_s if r.produce_s else None,
            "first_event_after_s": r.first_event_after_s,
            "commit_done_s": r.commit_done_s,
            "alerts_done_s": r.alerts_done_s,
            "worker_cpu_s": r.worker_cpu_s,
            "worker_cpu_util": r.worker_cpu_s / r.seconds if r.seconds else None,
            "cpu_per_10k": r.worker_cpu_s / r.events * 10_000,
            "broker_cpu_s": r.broker_cpu_s,
            "broker_cpu_per_10k": r.broker_cpu_s / r.events * 10_000,
            "loadgen_cpu_s": r.loadgen_cpu_s,
            "loadgen_cpu_per_10k": r.loadgen_cpu_s / r.events * 10_000,
            "events_total_metric": events_total,
            "rekeyed": rekeyed,
            "dead_letters": dead,
            "correctness": corr,
            "stalled": r.stalled,
            "uncommitted": r.uncommitted,
            "consent_uncommitted": consent_uncommitted(broker.bootstrap, env),
            "diagnostics": diag,
            "consent_produce_s": consent_produce_s,
            "rss_after_consent_mib": rss_after_consent,
            "consent_rate": args.consent_pairs / times["consent_load_s"],
            **times,
        }

        # -- (1) raw ceiling on the same events topic (the worker is idle now)
        log("(1) raw ceiling: plain aiokafka consumer over the same events topic")
        res["raw"] = raw_ceiling(
            broker.bootstrap, env["SMSMON_TOPIC_EVENTS"], args.partitions, kinds_events(records)
        )
        log(f"(1) {res['raw']['events_per_s']:,.0f} events/s (runs {res['raw']['runs']})")

        # -- (3) latency at half the measured maximum
        if not args.no_latency:
            res["latency"] = latency_phase(args, broker, env, sim, w, collector, r.rate / 2)
        res["one_worker"]["peak_rss_mib"] = w.hwm_mib()
    finally:
        collector.stop()
        Processes.stop(w.proc)


def kinds_events(records: list[Rec]) -> int:
    return sum(1 for k, _, _ in records if k == "event")


def latency_phase(
    args: argparse.Namespace,
    broker: Broker,
    env: dict[str, str],
    sim: Any,
    w: Worker,
    collector: AlertCollector,
    offered: float,
) -> dict[str, Any]:
    """Produce new events at a fixed rate into the same worker for `latency_seconds`."""
    n = max(1000, int(offered * args.latency_seconds))
    # The same seed and base rate give the same population and reference (quotas depend on
    # the rate); the span continues where (2) ended and is long enough for n records.
    start = sim.start + dt.timedelta(seconds=SPAN_S)
    per_s = args.events / SPAN_S
    span = max(LATENCY_SPAN_S, 1.5 * n / per_s)
    sim3 = simulation(args.seed, start, span, sim.config.base_rate, args.subscribers)
    if dict(sim3.reference.ports) != dict(sim.reference.ports):
        log("warning: the latency phase's population differs from the loaded reference")
    recs = [
        (kind, key.encode(), enc(value), value.get("event_id") or "")
        for kind, key, value in itertools.islice(sim3.records(), n)
        if kind == "event" or not args.no_complaints
    ]
    log(f"(3) offering {offered:,.0f} events/s for ~{len(recs) / offered:.0f}s ({len(recs):,})")
    s = settings_of(env)
    topics = {"event": s.topic_events, "complaint": s.topic_complaints}
    buckets0 = w.latency_buckets()
    alerts0 = set(collector.snapshot())
    p = Prod(broker.bootstrap, linger_ms=5)
    sent_at: dict[str, float] = {}
    t0 = time.monotonic()
    i = 0
    while i < len(recs):
        due = min(len(recs), int((time.monotonic() - t0) * offered) + 1)
        while i < due:
            kind, key, value, eid = recs[i]
            sent_at[eid] = time.time()
            p.produce(topics[kind], key, value)
            i += 1
        p.poll()
        time.sleep(0.002)
    p.flush()
    produce_s = time.monotonic() - t0
    offsets = Offsets(broker.bootstrap, s.app_id, run_inputs(s))
    t_done = time.monotonic()
    wait_for(lambda: offsets.behind() == 0, 600, "latency phase committed", every=0.1)
    drain_s = time.monotonic() - t_done
    offsets.close()
    time.sleep(3.0)
    buckets1 = w.latency_buckets()
    delta = [(le, c1 - c0) for (le, c1), (_, c0) in zip(buckets1, buckets0, strict=True)]
    new = {k: v for k, v in collector.snapshot().items() if k not in alerts0}
    lat = [wall - sent_at[eid] for wall, eid, _ in new.values() if eid in sent_at]
    # Split with the alert's detected_at (the worker's clock when it processed the batch):
    # produce -> batch processing started, and batch start -> alert read back by the bench.
    det = collector.detected
    before = [det[k] - sent_at[v[1]] for k, v in new.items() if v[1] in sent_at and k in det]
    after = [v[0] - det[k] for k, v in new.items() if v[1] in sent_at and k in det]
    return {
        "offered_rate": offered,
        "achieved_rate": len(recs) / produce_s,
        "records": len(recs),
        "produce_s": produce_s,
        "drain_after_produce_s": drain_s,
        "alerts": len(new),
        "hist_count": delta[-1][1] if delta else 0,
        "hist_p50_s": quantile_from_buckets(delta, 0.50),
        "hist_p99_s": quantile_from_buckets(delta, 0.99),
        "hist_buckets": delta,
        "e2e_count": len(lat),
        "e2e_p50_s": exact_quantile(lat, 0.50),
        "e2e_p99_s": exact_quantile(lat, 0.99),
        "e2e_max_s": max(lat) if lat else None,
        "to_batch_p50_s": exact_quantile(before, 0.50),
        "to_batch_p99_s": exact_quantile(before, 0.99),
        "batch_to_read_p50_s": exact_quantile(after, 0.50),
        "batch_to_read_p99_s": exact_quantile(after, 0.99),
    }


def two_worker_phase(
    args: argparse.Namespace,
    procs: Processes,
    root: Path,
    broker: Broker,
    sim: Any,
    records: list[Rec],
    expected: list[Any],
    res: dict[str, Any],
) -> None:
    """A fresh app with the same data and two workers in one group: CPU per 10k events."""
    prefix = f"b{uuid.uuid4().hex[:8]}"
    env, _ = setup_app(broker, prefix, args, sim)
    workers, times = start_workers(procs, ["g1", "g2"], env, root, args.consent_pairs)
    log(f"two workers: consent loaded after {times['consent_load_s']:.1f}s")
    collector = AlertCollector(broker.bootstrap, env["SMSMON_TOPIC_ALERTS"])
    collector.start()
    try:
        log(f"(4) producing {len(records):,} records into two workers")
        batches0 = [
            (w.sample("smsmon_batch_events_count"), w.sample("smsmon_batch_events_sum"))
            for w in workers
        ]
        r = measure(workers, broker, env, records, len(expected), collector)
        corr = correctness(collector, expected)
        batches = [
            w.sample("smsmon_batch_events_count") - b[0]
            for w, b in zip(workers, batches0, strict=True)
        ]
        mean_batch = [
            (w.sample("smsmon_batch_events_sum") - b[1]) / max(1.0, n)
            for w, b, n in zip(workers, batches0, batches, strict=True)
        ]
        log(
            f"(4) two workers: {r.rate:,.0f} events/s, worker CPU {r.worker_cpu_s:.1f}s; alerts "
            f"{'EQUAL' if corr['equal'] else 'DIFFERENT'} ({corr['live']} / {corr['expected']}); "
            f"mean batch {' / '.join(f'{m:.0f}' for m in mean_batch)} records"
        )
        res["two_workers"] = {
            "rate": r.rate,
            "seconds": r.seconds,
            "worker_cpu_s": r.worker_cpu_s,
            "worker_cpu_util": r.worker_cpu_s / r.seconds if r.seconds else None,
            "cpu_per_10k": r.worker_cpu_s / r.events * 10_000,
            "broker_cpu_per_10k": r.broker_cpu_s / r.events * 10_000,
            "loadgen_cpu_per_10k": r.loadgen_cpu_s / r.events * 10_000,
            "peak_rss_mib": [w.hwm_mib() for w in workers],
            "correctness": corr,
            "stalled": r.stalled,
            "uncommitted": r.uncommitted,
            "consent_uncommitted": consent_uncommitted(broker.bootstrap, env),
            "late_events": sum(w.sample("smsmon_late_events_total") for w in workers),
            "rebalances": [w.sample("smsmon_rebalances_total") for w in workers],
            "batches": batches,
            "mean_batch": mean_batch,
            **times,
        }
    finally:
        collector.stop()
        for w in workers:
            Processes.stop(w.proc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--events", type=int, help="simulated records (default 300,000; quick 30,000)")
    ap.add_argument(
        "--consent-pairs",
        type=int,
        help="consent pairs loaded before the events (default 1,000,000; quick 100,000)",
    )
    ap.add_argument("--partitions", type=int, default=8, help="SMSMON_PARTITIONS (default 8)")
    ap.add_argument("--quick", action="store_true", help="a small smoke run (not a result)")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--latency-seconds", type=float, help="latency phase length (default 60)")
    ap.add_argument("--json", type=Path, help="write all figures here as JSON")
    ap.add_argument("--profile", type=Path, help="py-spy raw profile of the worker during (2)")
    ap.add_argument("--profile-seconds", type=int, default=15)
    ap.add_argument("--no-two-workers", action="store_true", help="skip the two-worker phase")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency phase")
    ap.add_argument("--no-one-worker", action="store_true", help="skip (1), (2), (3) (debugging)")
    ap.add_argument(
        "--no-complaints",
        action="store_true",
        help="diagnostic: leave the 12321 complaints out of the input (and the expected set)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    ap.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="SMSMON_X=VALUE",
        help="a worker setting for this run (repeatable); the caller's SMSMON_* are not passed",
    )
    args = ap.parse_args(argv)
    args.worker_env = worker_env_option(ap, args.worker_env)
    args.events = args.events or (30_000 if args.quick else 300_000)
    args.consent_pairs = args.consent_pairs or (100_000 if args.quick else 1_000_000)
    args.latency_seconds = args.latency_seconds or (20.0 if args.quick else 60.0)
    args.subscribers = 50_000 if args.quick else SUBSCRIBERS

    def on_term(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # also when started with SIGINT ignored
    procs = Processes()
    root = Path(tempfile.mkdtemp(prefix="smsmon-bench-"))
    log(f"work dir {root}")
    res: dict[str, Any] = {}
    rc = 0
    try:
        run(args, procs, root, res)
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        res["error"] = "interrupted"
        rc = 130
    except Exception as exc:
        import traceback

        traceback.print_exc()
        res["error"] = f"{type(exc).__name__}: {exc}"
        rc = 2
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
        if args.json and res:
            args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str) + "\n")
            log(f"wrote {args.json}")
    if rc == 130:
        return rc
    with contextlib.suppress(Exception):
        print_summary(res)
    if rc:
        print(f"run failed: {res['error']}")
        return rc
    ok = res.get("one_worker", {}).get("correctness", {}).get("equal", False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
