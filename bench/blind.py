"""Blind time of a partition around a worker crash, seen from the alerts topic.

A steady trickle of events that each give alerts (an `mt` notification from a port and a
signature no registry knows: port.unregistered and signature.unregistered, whatever the
state) goes to every events partition, each event to smsmon's own partition for its msisdn
(nothing is re-keyed), its event id naming the partition. A collector reads the alerts
topic (read_committed) and keeps, per events partition, the producer timestamps (CreateTime,
set by the worker when it sends the alert) and the receive times of the alerts.

Blind time of partition p around a kill at t: the first alert of p created after t minus the
last alert of p created at or before t. Only a live worker creates alerts after t, so alerts
of the killed worker still in flight at t do not shorten it; the alerts a new owner makes
again for events the killed worker had processed but not committed do count (the partition
is processing again).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable

from bench.clients import Prod
from bench.traffic import partition_for

EVENT_PREFIX = "blind"
UNKNOWN_PORT = "1069000099999"
TEXT = "【盲区测试】您的验证码是4321,5分钟内有效"


def msisdns_per_partition(partitions: int, per_partition: int) -> list[list[str]]:
    """`per_partition` msisdns in each events partition (prefix 198, outside the consent
    entries of bench.recovery and its probes)."""
    out: list[list[str]] = [[] for _ in range(partitions)]
    i = 0
    while min(len(x) for x in out) < per_partition:
        m = f"198{i:08d}"
        part = partition_for(m, partitions)
        if len(out[part]) < per_partition:
            out[part].append(m)
        i += 1
    return out


def event_id(tag: str, part: int, seq: int) -> str:
    return f"{EVENT_PREFIX}-{tag}-{part}-{seq}"


def partition_of(eid: str) -> int | None:
    """The events partition named in an event id of `event_id`, else None."""
    bits = eid.split("-")
    if len(bits) < 4 or bits[0] != EVENT_PREFIX:
        return None
    try:
        return int(bits[-2])
    except ValueError:
        return None


def event(eid: str, msisdn: str, now: dt.datetime) -> bytes:
    return json.dumps(
        {
            "event_id": eid,
            "ts": now.isoformat(),
            "kind": "mt",
            "gateway": "gw-blind",
            "port": UNKNOWN_PORT,
            "msisdn": msisdn,
            "account": "acct-blind",
            "category": "notification",
            "text": TEXT,
        },
        ensure_ascii=False,
    ).encode()


class Traffic(threading.Thread):
    """`rate` events per second on each events partition until `stop`."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: float) -> None:
        super().__init__(daemon=True, name="blind-traffic")
        self.bootstrap, self.topic, self.partitions, self.rate = bootstrap, topic, partitions, rate
        self.tag = uuid.uuid4().hex[:6]
        self.pool = msisdns_per_partition(partitions, 64)
        self.sent = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            p = Prod(self.bootstrap, linger_ms=5)
            period = 1.0 / self.rate
            seq = 0
            next_t = time.monotonic()
            while not self.stopping.is_set():
                now = dt.datetime.now(dt.UTC)
                for part in range(self.partitions):
                    m = self.pool[part][seq % len(self.pool[part])]
                    p.produce(
                        self.topic, m.encode(), event(event_id(self.tag, part, seq), m, now), part
                    )
                    self.sent += 1
                p.p.poll(0)
                seq += 1
                next_t += period
                self.stopping.wait(max(0.0, next_t - time.monotonic()))
            p.flush()
        except BaseException as exc:  # reported by the run
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)


class Alerts(threading.Thread):
    """Reads the alerts topic from its start; per events partition (of `partition_of`) keeps
    (CreateTime in s, receive wall time) of every alert."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True, name="blind-alerts")
        self.bootstrap, self.topic = bootstrap, topic
        self.lock = threading.Lock()
        self.seen: dict[int, list[tuple[float, float]]] = defaultdict(list)
        self.count = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import Consumer

        try:
            c = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"blind-{uuid.uuid4().hex[:8]}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "fetch.wait.max.ms": 50,
                }
            )
            c.subscribe([self.topic])
            try:
                while not self.stopping.is_set():
                    for msg in c.consume(1000, 0.1):
                        if msg.error():
                            continue
                        got = time.time()
                        try:
                            eid = json.loads(msg.value() or b"{}").get("event_id", "")
                        except (ValueError, AttributeError):
                            continue
                        part = partition_of(str(eid))
                        if part is None:
                            continue
                        created = msg.timestamp()[1] / 1000.0
                        with self.lock:
                            self.seen[part].append((created, got))
                            self.count += 1
            finally:
                c.close()
        except BaseException as exc:
            self.error = exc

    def snapshot(self) -> dict[int, list[tuple[float, float]]]:
        with self.lock:
            return {p: list(v) for p, v in self.seen.items()}

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def covered(seen: dict[int, list[tuple[float, float]]], partitions: int, after: float) -> bool:
    """Every partition has an alert created after `after`."""
    return all(any(c > after for c, _ in seen.get(p, ())) for p in range(partitions))


def blind_times(
    seen: dict[int, list[tuple[float, float]]], partitions: Iterable[int], t_kill: float
) -> dict[int, dict[str, float | None]]:
    """Per partition: `blind_s` (first alert created after t_kill minus the last created at
    or before it), `last_before_s` (t_kill minus that last one), `first_after_s` (its
    creation minus t_kill) and `received_after_s` (when the first alert created after t_kill
    arrived, minus t_kill). None where there is no such alert."""
    out: dict[int, dict[str, float | None]] = {}
    for p in partitions:
        rows = seen.get(p, [])
        before = [c for c, _ in rows if c <= t_kill]
        after = sorted((c, g) for c, g in rows if c > t_kill)
        last = max(before) if before else None
        first = after[0] if after else None
        out[p] = {
            "blind_s": (first[0] - last) if first and last is not None else None,
            "last_before_s": (t_kill - last) if last is not None else None,
            "first_after_s": (first[0] - t_kill) if first else None,
            "received_after_s": (min(g for _, g in after) - t_kill) if after else None,
        }
    return out
