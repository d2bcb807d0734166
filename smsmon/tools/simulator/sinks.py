"""Where a run goes: files (JSON lines), or Kafka at a pace; and the span of a Kafka run."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from smsmon.tools.scenario import Reference
from smsmon.tools.simulator.run import SimRun
from smsmon.tools.simulator.simulation import Simulation

if TYPE_CHECKING:
    from smsmon.config.settings import Settings


def dumps(value: dict[str, Any]) -> str:
    """One record as compact JSON, Chinese text as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def write_truth(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ground-truth rows as JSON lines; returns how many."""
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    return n


def write_expected(path: Path, pairs: Iterable[tuple[str, str]]) -> int:
    """Write the expected per-message (event_id, rule) pairs as JSON lines; returns how many."""
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for event_id, rule in pairs:
            f.write(dumps({"event_id": event_id, "rule": rule}) + "\n")
            n += 1
    return n


def write_files(sim: Simulation, out: Path) -> SimRun:
    """Write a whole run to `out`: events.jsonl.gz, complaints.jsonl, ports.jsonl,
    signatures.jsonl, consent.jsonl, truth.jsonl and expected.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (
        ("ports", sim.reference.ports),
        ("signatures", sim.reference.signatures),
        ("consent", sim.reference.consent),
    ):
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for _, value in rows:
                if value is not None:
                    f.write(dumps(value) + "\n")
    run = sim.run()
    with (
        gzip.open(out / "events.jsonl.gz", "wt", encoding="utf-8", compresslevel=3) as ev_f,
        (out / "complaints.jsonl").open("w", encoding="utf-8") as c_f,
    ):
        for kind, _, value in run.records:
            (ev_f if kind == "event" else c_f).write(dumps(value) + "\n")
    write_truth(out / "truth.jsonl", sim.truth)
    write_expected(out / "expected.jsonl", run.expected)
    return run


class Sink(Protocol):
    """Where paced records go (the Kafka writer; a list in tests)."""

    def send(self, kind: str, key: str, value: dict[str, Any]) -> None: ...


class KafkaSink:
    """kafka-python producer keyed as the wire contract says (imported lazily)."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        from smsmon.admin import kafka_client_config

        self.settings = settings
        self.topics = {"event": settings.topic_events, "complaint": settings.topic_complaints}
        self.producer: Any = KafkaProducer(
            linger_ms=20, acks="all", batch_size=64 * 1024, **kafka_client_config(settings)
        )

    def reference(self, ref: Reference) -> int:
        """Publish ports, signatures, then consent; flush; return how many records."""
        n = 0
        s = self.settings
        for topic, rows in (
            (s.topic_ports, ref.ports),
            (s.topic_signatures, ref.signatures),
            (s.topic_consent, ref.consent),
        ):
            for key, value in rows:
                payload = None if value is None else dumps(value).encode()
                self.producer.send(topic, key=key.encode(), value=payload)
                n += 1
        self.producer.flush()
        return n

    def send(self, kind: str, key: str, value: dict[str, Any]) -> None:
        """Send one event (key: canonical msisdn) or complaint (key: msisdn)."""
        self.producer.send(self.topics[kind], key=key.encode(), value=dumps(value).encode())

    def close(self) -> None:
        """Flush everything sent and close the producer."""
        self.producer.flush()
        self.producer.close(timeout=10)


@dataclass(frozen=True, slots=True)
class PumpResult:
    """How a paced run ended: records sent, offset of the last one sent, whether all were."""

    sent: int
    last_offset: float | None
    finished: bool


def pump(
    run: SimRun,
    sink: Sink,
    *,
    speed: float = 0.0,
    rate: float = 0.0,
    seconds: float = 0.0,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PumpResult:
    """Send `run`'s records to `sink` at a pace.

    `speed`: simulated seconds per wall second; else `rate`: records per wall second; else as
    fast as possible. `seconds` > 0 limits the wall time; setting `stop` (a signal handler
    does) ends the run early. A record drawn but not sent is taken out of `run.expected`.
    """
    stop = stop or threading.Event()
    t0 = clock()
    deadline = t0 + seconds if seconds > 0 else math.inf
    sent = 0
    last: float | None = None
    for kind, key, value in run.records:
        due = t0 + run.t / speed if speed > 0 else (t0 + sent / rate if rate > 0 else t0)
        while True:
            now = clock()
            if stop.is_set() or now >= deadline:
                event_id = value.get("event_id")
                while run.expected and run.expected[-1][0] == event_id:
                    run.expected.pop()
                return PumpResult(sent, last, False)
            if due - now <= 0.001:
                break
            sleep(min(due - now, deadline - now, 0.2))
        sink.send(kind, key, value)
        sent += 1
        last = run.t
    return PumpResult(sent, last, True)


def kafka_span(
    now: dt.datetime,
    tz: ZoneInfo,
    scenarios: Iterable[str],
    duration: float | None,
    *,
    max_future_skew: float = 86_400.0,
    lead: float = 300.0,
    margin: float = 3600.0,
) -> tuple[dt.datetime, float]:
    """Default (start, duration) of a Kafka run so that no ts exceeds `now + max_future_skew`.

    Start `lead` seconds before now (with double11: at the latest 18:30 local before that, so
    the evening ramp comes early); duration defaults to the skew minus `margin`; a longer
    duration moves the start back so the span still ends by now + skew - margin.
    """
    limit = max_future_skew - margin
    if duration is None:
        duration = limit
    start = now - dt.timedelta(seconds=lead)
    if "double11" in scenarios:
        local = start.astimezone(tz)
        evening = local.replace(hour=18, minute=30, second=0, microsecond=0)
        if evening > local:
            evening -= dt.timedelta(days=1)
        start = evening
    latest_end = now + dt.timedelta(seconds=limit)
    if start + dt.timedelta(seconds=duration) > latest_end:
        start = latest_end - dt.timedelta(seconds=duration)
    return start, duration
