"""The benchmarks' input: simulated gateway traffic, consent pairs keyed and partitioned as
smsmon expects, and the alert set the same records must give (OfflineRunner, no Kafka)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

SECRET = "bench-throughput-secret"
TZ = ZoneInfo("Asia/Shanghai")
SCENARIOS = frozenset({"bombing", "sublet", "spike", "complaints", "double11"})
SPAN_S = 10_200.0  # 07:20-10:10 local, see span_start
LATENCY_SPAN_S = 1800.0  # the latency phase continues at 10:10 (at least this long)
SUBSCRIBERS = 200_000  # simulated population (quick: 50,000)
# fmt: off
MSISDN_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151",
    "152", "155", "156", "157", "158", "159", "176", "177", "178", "180", "186", "188",
)
# fmt: on


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


#: `--mix`: "light", the simulator's ordinary traffic (about 5 alerts per 100 events);
#: "heavy", violation-heavy traffic (at least 30 % of events break a per-message rule, ten
#: times the unsubscribes, and 2 % of the events repeated with the same event id).
MIXES: dict[str, dict[str, float]] = {
    "light": {},
    "heavy": {"violation_rate": 0.45, "unsubscribe_prob": 0.05, "reply_prob": 0.02},
}
REPEAT_FRACTION = {"light": 0.0, "heavy": 0.02}


def simulation(
    seed: int,
    start: dt.datetime,
    duration: float,
    rate: float,
    subscribers: int,
    mix: str = "light",
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
            **MIXES[mix],  # type: ignore[arg-type]
        )
    )


def calibrated_rate(
    seed: int,
    start: dt.datetime,
    duration: float,
    records: int,
    subscribers: int,
    mix: str = "light",
) -> float:
    """The simulator's base_rate that yields about `records` records over the span."""
    probe = 2.0
    n = sum(1 for _ in simulation(seed, start, duration, probe, subscribers, mix).records())
    return probe * records / max(n, 1)


def with_repeats(records: list[Rec], fraction: float, seed: int) -> list[Rec]:
    """`records` with `fraction` of the events sent again, unchanged, a few records later (a
    gateway retrying): the worker skips them as repeated event ids."""
    if fraction <= 0:
        return records
    rng = random.Random(f"bench-repeats:{seed}")
    out: list[Rec] = []
    pending: list[tuple[int, Rec]] = []
    for i, rec in enumerate(records):
        out.append(rec)
        if rec[0] == "event" and rng.random() < fraction:
            pending.append((i + rng.randrange(1, 50), rec))
        while pending and pending[0][0] <= i:
            out.append(pending.pop(0)[1])
        pending.sort(key=lambda p: p[0])
    out.extend(rec for _, rec in pending)
    return out


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


def offline_alerts(
    sim: Any, records: list[Rec], secret: str = SECRET, timing: dict[str, float] | None = None
) -> list[Any]:
    """The same records through the same rules without Kafka (what `smsmon audit` runs; the
    traffic integration test uses this too); synthetic consent pairs are left out: no event
    names them. `timing` gets "records_s": the seconds from the first record after the
    consent table to the end (decode and rules of the records alone)."""
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
    settings = Settings(msisdn_secret=secret)
    runner = OfflineRunner(
        book,
        EngineConfig(hasher=MsisdnHasher(secret.encode(), "k1"), content=content_checker(settings)),
        TrafficConfig(),
    )
    consent = [ConsentRecord.model_validate(v) for _, v in sim.reference.consent]

    started: list[float] = []

    def decoded() -> Iterator[Any]:
        # a repeated id is skipped by the runner's per-subscriber window, as by the worker's
        yield from consent
        started.append(time.monotonic())
        for kind, key, value in records:
            if kind == "complaint":
                yield decode_model(Complaint, value, ctx)
            else:
                yield decode_event(value, key, ctx)

    alerts = list(runner.run(decoded()))
    if timing is not None and started:
        timing["records_s"] = time.monotonic() - started[0]
    return alerts


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
