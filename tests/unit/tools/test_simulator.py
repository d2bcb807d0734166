"""Traffic simulator: valid records, determinism, order, scenarios and their ground truth."""

from __future__ import annotations

import datetime as dt
import gzip
import inspect
import json
import re
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smsmon.cli import build_parser, main
from smsmon.contract.canonical import MsisdnHasher, canonical_signature, extract_signature
from smsmon.contract.codec import DecodeContext, consent_key, decode_event, decode_model
from smsmon.contract.models import (
    Complaint,
    ConsentRecord,
    MoEvent,
    MtEvent,
    PortRecord,
    SignatureRecord,
)
from smsmon.rules.consent import is_unsubscribe
from smsmon.rules.engine import DictState, Engine, EngineConfig
from smsmon.rules.reference import ReferenceBook, signature_record_key
from smsmon.tools.simulator import (
    SCENARIOS,
    PumpResult,
    Record,
    SimConfig,
    Simulation,
    generate,
    kafka_span,
    pump,
    uscc_valid,
)

pytestmark = pytest.mark.unit

TZ = ZoneInfo("Asia/Shanghai")
SECRET = b"sim-test-secret"
START = dt.datetime(2024, 11, 10, 13, 0, tzinfo=TZ)
ALL = frozenset(SCENARIOS)


def small(**kw: Any) -> SimConfig:
    """A small, fast configuration; override what a test is about."""
    base: dict[str, Any] = {
        "seed": 11,
        "start": START,
        "duration": 7200.0,
        "base_rate": 4.0,
        "subscribers": 3000,
        "violation_rate": 0.03,
        "scenarios": ALL,
        "msisdn_secret": SECRET,
    }
    base.update(kw)
    return SimConfig(**base)


class Run:
    """A simulation with its records materialised (small runs only)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        run = sim.run()
        self.records: list[Record] = list(run.records)
        self.expected = list(run.expected)
        self.counts = run.counts
        self.ctx = DecodeContext(tz=TZ, now=sim.end + dt.timedelta(minutes=5))
        self.book = ReferenceBook()
        for code, value in sim.reference.ports:
            self.book.put_port(code, PortRecord.model_validate(value))
        for _, value in sim.reference.signatures:
            rec = SignatureRecord.model_validate(value)
            self.book.put_signature(signature_record_key(rec), rec)

    def events(self) -> list[dict[str, Any]]:
        return [v for kind, _, v in self.records if kind == "event"]

    def mts(self) -> list[dict[str, Any]]:
        return [v for v in self.events() if v["kind"] == "mt"]

    def complaints(self) -> list[dict[str, Any]]:
        return [v for kind, _, v in self.records if kind == "complaint"]

    def within(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """mt events inside a truth row's [start, end)."""
        lo, hi = ts(row["start"]), ts(row["end"])
        return [v for v in self.mts() if lo <= ts(v["ts"]) < hi]


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def canon(msisdn: str) -> str:
    return msisdn[-11:]


@pytest.fixture(scope="module")
def everything() -> Run:
    """Every scenario at once, with a 3% violation sprinkle."""
    return Run(generate(small()))


def truth_of(run: Run, rule: str, subject_type: str | None = None) -> dict[str, Any]:
    rows = [
        r
        for r in run.sim.truth
        if r["rule"] == rule and (subject_type is None or r["subject_type"] == subject_type)
    ]
    assert len(rows) == 1, rows
    return rows[0]


# -- validity ---------------------------------------------------------------------------------


def test_every_event_and_complaint_validates_with_the_wire_models(everything: Run) -> None:
    """Each event decodes with its key (canonical msisdn); each complaint is a Complaint."""
    kinds: Counter[str] = Counter()
    for kind, key, value in everything.records:
        raw = json.dumps(value, ensure_ascii=False).encode()
        if kind == "event":
            ev = decode_event(raw, key.encode(), everything.ctx)
            kinds[ev.kind] += 1
            assert everything.sim.start <= ev.ts < everything.sim.end
        else:
            assert kind == "complaint"
            c = decode_model(Complaint, raw, everything.ctx)
            assert c.msisdn == key
            assert c.port is not None or c.signature is not None or c.msisdn
            kinds["complaint"] += 1
    assert kinds["mt"] > 10_000 and kinds["dlr"] > 1000 and kinds["mo"] > 50
    assert kinds["complaint"] >= 30


def test_every_reference_record_validates_and_is_keyed_as_the_contract_says(
    everything: Run,
) -> None:
    """Ports by code, signatures by their text, consent by `<msisdn>|<enterprise>`."""
    ctx = everything.ctx
    ref = everything.sim.reference
    for key, value in ref.ports:
        assert value is not None
        assert decode_model(PortRecord, json.dumps(value).encode(), ctx).port == key
    for key, value in ref.signatures:
        assert value is not None
        rec = decode_model(SignatureRecord, json.dumps(value, ensure_ascii=False).encode(), ctx)
        assert canonical_signature(key) == signature_record_key(rec)
    for key, value in ref.consent:
        assert value is not None
        consent = decode_model(ConsentRecord, json.dumps(value).encode(), ctx)
        assert consent_key(key.encode()) == (consent.msisdn, consent.enterprise)
        assert consent.ts < everything.sim.start


def test_population_has_the_right_port_classes_and_identifiers(everything: Run) -> None:
    """1066 commercial, 1069 notification, 10690 shared platform ports; valid USCCs."""
    ports = [PortRecord.model_validate(v) for _, v in everything.sim.reference.ports]
    shared = [p for p in ports if p.shared]
    assert shared and all(p.port.startswith("10690") for p in shared)
    for p in ports:
        cats = {c.value for c in p.categories}
        if p.port.startswith("1066"):
            assert cats == {"marketing", "notification"}
        elif not p.shared:
            assert re.fullmatch(r"1069[1-9]\d{3}", p.port)
            assert cats == {"notification", "verification"}
        assert uscc_valid(p.enterprise)
    assert any(p.status == "suspended" for p in ports)
    assert any(p.max_per_minute for p in ports)
    assert all(re.fullmatch(r"1[3-9]\d{9}", m) for m in everything.sim.population.msisdns)
    sigs = [SignatureRecord.model_validate(v) for _, v in everything.sim.reference.signatures]
    assert any(s.status == "revoked" for s in sigs)
    assert any(s.ports and any(sp.startswith("10690") for sp in s.ports) for s in sigs)


def test_mt_messages_look_like_chinese_gateway_traffic(everything: Run) -> None:
    """Signed texts, opt-outs on most marketing, codes in verification, 1-3 segments."""
    mts = everything.mts()
    marketing = [v for v in mts if v["category"] == "marketing"]
    optout = [v for v in marketing if re.search(r"回T|回TD|退订|拒收", v["text"])]
    assert len(optout) / len(marketing) > 0.85
    verification = [v for v in mts if v["category"] == "verification"]
    assert all(re.search(r"\d{6}", v["text"]) for v in verification)
    signed = [v for v in mts if extract_signature(v.get("signature"), v["text"])]
    assert len(signed) / len(mts) > 0.97
    assert {v["segments"] for v in mts} <= {1, 2, 3}
    assert all(v["source_ip"] for v in mts)
    assert any(len(v["port"]) > 8 for v in mts)  # extensions (扩展码)


# -- determinism and order --------------------------------------------------------------------


def test_same_seed_same_records_and_truth_different_seed_differs() -> None:
    """Generation is a pure function of the configuration."""
    cfg = small(duration=3600.0, base_rate=2.0, subscribers=500, scenarios=frozenset({"bombing"}))
    a, b = generate(cfg), generate(cfg)
    first = a.run()
    first_records = list(first.records)
    assert first_records and first.expected and first_records == list(b.records())
    # A finished run leaves the simulation as it found it: the next run replays it exactly.
    again = a.run()
    assert list(again.records) == first_records
    assert again.expected == first.expected and again.counts == first.counts
    assert a.truth == b.truth and a.reference == b.reference
    c = generate(small(seed=12, duration=3600.0, base_rate=2.0, subscribers=500))
    assert [v for _, _, v in c.records()][:50] != [v for _, _, v in a.records()][:50]


def test_records_come_in_ts_order_overall_and_per_msisdn(everything: Run) -> None:
    """Producers must publish each msisdn's events in ts order; the simulator does it all."""
    times = [ts(v["ts"]) for _, _, v in everything.records]
    assert times == sorted(times)
    per: dict[str, list[dt.datetime]] = defaultdict(list)
    for _, key, v in everything.records:
        per[key].append(ts(v["ts"]))
    assert all(t == sorted(t) for t in per.values())


def test_event_and_complaint_ids_are_unique(everything: Run) -> None:
    ids = [v["event_id"] for v in everything.events()]
    assert len(ids) == len(set(ids))
    cids = [v["complaint_id"] for v in everything.complaints()]
    assert len(cids) == len(set(cids))


def test_records_stream_from_a_generator() -> None:
    """Large runs are not held in memory."""
    sim = generate(small(scenarios=frozenset({"normal"})))
    assert inspect.isgenerator(sim.records())


# -- per-message violations -------------------------------------------------------------------


def test_engine_alerts_are_exactly_the_expected_violations(everything: Run) -> None:
    """The compliance engine, fed the simulated topics, flags exactly the injected messages."""
    engine = Engine(everything.book, EngineConfig(hasher=MsisdnHasher(SECRET, "k1")))
    state = DictState()
    for key, value in everything.sim.reference.consent:
        assert value is not None
        msisdn, enterprise = consent_key(key.encode())
        engine.on_consent(msisdn, enterprise, ConsentRecord.model_validate(value), state)
    got: set[tuple[str, str]] = set()
    unsubscribes = 0
    for kind, key, value in everything.records:
        if kind != "event":
            continue
        ev = decode_event(json.dumps(value).encode(), key.encode(), everything.ctx)
        out = engine.on_event(ev, state, everything.sim.end)
        got.update((a.event_id, a.rule) for a in out.alerts)
        unsubscribes += out.unsubscribe is True
    expected = set(everything.expected)
    assert got == expected
    rules = Counter(r for _, r in expected)
    for rule in (
        "port.unregistered",
        "port.suspended",
        "port.account",
        "port.category",
        "signature.missing",
        "signature.unregistered",
        "signature.scope",
        "consent.missing",
        "consent.revoked",
    ):
        assert rules[rule] > 0, rule
    assert unsubscribes == everything.counts["unsubscribes"] > 0


def test_normal_traffic_without_violations_raises_no_alert() -> None:
    run = Run(generate(small(scenarios=frozenset({"normal"}), violation_rate=0.0)))
    engine = Engine(run.book, EngineConfig(hasher=MsisdnHasher(SECRET, "k1")))
    state = DictState()
    for key, value in run.sim.reference.consent:
        assert value is not None
        m, e = consent_key(key.encode())
        engine.on_consent(m, e, ConsentRecord.model_validate(value), state)
    for _, key, value in run.records:
        ev = decode_event(json.dumps(value).encode(), key.encode(), run.ctx)
        assert engine.on_event(ev, state, run.sim.end).alerts == []
    assert run.expected == [] and run.sim.truth == []


def test_unsubscribes_come_from_subscribers_who_got_marketing_from_that_port(
    everything: Run,
) -> None:
    book = everything.book
    marketed: dict[tuple[str, str], dt.datetime] = {}
    seen = 0
    for kind, key, v in everything.records:
        if kind != "event":
            continue
        p = book.port_for(v["port"])
        code = p.port if p else v["port"]
        if v["kind"] == "mt" and v["category"] == "marketing":
            marketed.setdefault((key, code), ts(v["ts"]))
        elif v["kind"] == "mo" and is_unsubscribe(v["text"]):
            seen += 1
            assert (key, code) in marketed
            assert marketed[(key, code)] < ts(v["ts"])
    assert seen > 10


# -- scenarios and ground truth ---------------------------------------------------------------


def test_every_anomaly_scenario_writes_its_ground_truth(everything: Run) -> None:
    rows = everything.sim.truth
    assert {(r["scenario"], r["rule"], r["subject_type"]) for r in rows} == {
        ("bombing", "recipient.flood", "msisdn"),
        ("sublet", "port.sublet", "port"),
        ("spike", "volume.spike", "port"),
        ("spike", "volume.spike", "signature"),
        ("spike", "volume.spike", "account"),
        ("complaints", "complaint.rate", "port"),
        ("complaints", "complaint.rate", "signature"),
    }
    for r in rows:
        assert everything.sim.start <= ts(r["start"]) < ts(r["end"]) <= everything.sim.end


def test_bombing_floods_one_subscriber_with_codes_from_many_senders(everything: Run) -> None:
    """60-200 verification codes within 5 minutes from at least 10 signatures."""
    row = truth_of(everything, "recipient.flood")
    assert ts(row["end"]) - ts(row["start"]) == dt.timedelta(minutes=5)
    hasher = MsisdnHasher(SECRET, "k1")
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in everything.within(row):
        if v["category"] == "verification":
            per[canon(v["msisdn"])].append(v)
    target = max(per, key=lambda m: len(per[m]))
    assert hasher(target) == row["msisdn_hash"]
    assert row["subject"] == f"{target[:3]}****{target[-4:]}"
    codes = per[target]
    # the injected codes, plus the odd ordinary code that subscriber got in those 5 minutes
    assert 60 <= row["count"] <= 200 and row["count"] <= len(codes) <= row["count"] + 5
    assert len({extract_signature(v.get("signature"), v["text"]) for v in codes}) >= 10
    others = sorted((len(v) for m, v in per.items() if m != target), reverse=True)
    assert not others or others[0] <= 5


def test_sublet_port_carries_foreign_signatures_accounts_and_ips(everything: Run) -> None:
    row = truth_of(everything, "port.sublet")
    port = everything.book.ports[row["subject"]]
    on_port = [v for v in everything.within(row) if v["port"].startswith(port.port)]

    def owner(v: dict[str, Any]) -> str | None:
        rec = everything.book.signature_for(extract_signature(v.get("signature"), v["text"]))
        return rec.enterprise if rec else None

    # other enterprises' signatures from accounts the port was not registered for
    foreign = [
        v
        for v in on_port
        if v["account"] not in port.accounts and owner(v) not in (None, port.enterprise)
    ]
    assert len(foreign) >= 100  # ~20 a minute for 10 minutes
    assert len({owner(v) for v in foreign}) >= 4
    assert len({v["account"] for v in foreign}) >= 2
    assert len({v["source_ip"] for v in foreign}) >= 2
    before = [
        v
        for v in everything.mts()
        if v["port"].startswith(port.port) and ts(v["ts"]) < ts(row["start"])
    ]
    assert sum(v["account"] not in port.accounts for v in before) <= 3  # only the sprinkle


def test_spike_bursts_past_the_quota_and_far_above_normal(everything: Run) -> None:
    port_row = truth_of(everything, "volume.spike", "port")
    sig_row = truth_of(everything, "volume.spike", "signature")
    acct_row = truth_of(everything, "volume.spike", "account")
    code = port_row["subject"]
    quota = everything.book.ports[code].max_per_minute
    assert quota is not None
    start, end = ts(port_row["start"]), ts(port_row["end"])

    def minute(v: dict[str, Any]) -> dt.datetime:
        return ts(v["ts"]).replace(second=0, microsecond=0)

    def per_minute(pred: Any) -> Counter[dt.datetime]:
        return Counter(minute(v) for v in everything.mts() if pred(v))

    for pred in (
        lambda v: v["port"].startswith(code),
        lambda v: (
            extract_signature(v.get("signature"), v["text"])
            == canonical_signature(sig_row["subject"])
        ),
        lambda v: v["account"] == acct_row["subject"],
    ):
        counts = per_minute(pred)
        inside = [n for m, n in counts.items() if start <= m and m + dt.timedelta(minutes=1) <= end]
        before = sorted(n for m, n in counts.items() if m + dt.timedelta(minutes=1) <= start)
        normal = before[len(before) // 2] if before else 0
        assert len(inside) >= 4
        assert min(inside) >= 5 * max(normal, 1)
    port_inside = [
        n
        for m, n in per_minute(lambda v: v["port"].startswith(code)).items()
        if start <= m and m + dt.timedelta(minutes=1) <= end
    ]
    assert min(port_inside) > quota


def test_complaint_wave_names_a_signature_whose_marketing_the_complainants_got(
    everything: Run,
) -> None:
    row = truth_of(everything, "complaint.rate", "signature")
    port_row = truth_of(everything, "complaint.rate", "port")
    sig = canonical_signature(row["subject"])
    received: dict[str, dt.datetime] = {}
    for v in everything.mts():
        if (
            v["category"] == "marketing"
            and v["port"].startswith(port_row["subject"])
            and extract_signature(v.get("signature"), v["text"]) == sig
        ):
            received.setdefault(canon(v["msisdn"]), ts(v["ts"]))
    lo, hi = ts(row["start"]), ts(row["end"])
    wave = [
        c
        for c in everything.complaints()
        if lo <= ts(c["ts"]) < hi
        and (
            canonical_signature(c.get("signature")) == sig
            or c.get("port", "").startswith(port_row["subject"])
            or ("signature" not in c and "port" not in c)
        )
    ]
    assert len(wave) >= row["count"] * 0.9
    assert len({c["msisdn"] for c in wave}) == len(wave)
    for c in wave:
        assert c["msisdn"] in received and received[c["msisdn"]] < ts(c["ts"])
    outside = [c for c in everything.complaints() if not lo <= ts(c["ts"]) < hi]
    assert len(outside) < len(wave) / 2  # the background is thin


def count_marketing(sim: Simulation, lo_hour: float, hi_hour: float) -> float:
    """Marketing mt per simulated hour between two local hours of the first day."""
    day = sim.start.astimezone(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    lo, hi = day + dt.timedelta(hours=lo_hour), day + dt.timedelta(hours=hi_hour)
    n = sum(
        1
        for _, _, v in sim.records()
        if v.get("category") == "marketing" and lo <= ts(v["ts"]) < hi
    )
    return n / (hi_hour - lo_hour)


def test_double11_evening_marketing_is_at_least_5x_the_afternoon() -> None:
    cfg = small(
        start=dt.datetime(2024, 11, 10, 14, 0, tzinfo=TZ),
        duration=8 * 3600.0,
        base_rate=0.6,
        subscribers=2000,
        violation_rate=0.0,
    )
    d11 = generate(SimConfig(**{**cfg.__dict__, "scenarios": frozenset({"double11"})}))
    ratio = count_marketing(d11, 20, 22) / count_marketing(d11, 14, 16)
    assert 5 <= ratio <= 25
    plain = generate(SimConfig(**{**cfg.__dict__, "scenarios": frozenset({"normal"})}))
    assert count_marketing(plain, 20, 22) / count_marketing(plain, 14, 16) < 3


def test_double11_without_an_evening_ramps_over_the_second_half() -> None:
    sim = generate(
        small(
            start=dt.datetime(2024, 11, 10, 9, 0, tzinfo=TZ),
            duration=4 * 3600.0,
            base_rate=1.0,
            subscribers=2000,
            scenarios=frozenset({"double11"}),
        )
    )
    assert count_marketing(sim, 12, 13) / count_marketing(sim, 9, 11) >= 5


def test_ground_truth_never_holds_a_raw_msisdn(everything: Run) -> None:
    text = json.dumps(everything.sim.truth, ensure_ascii=False)
    assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", text)
    assert not any(m in text for m in everything.sim.population.msisdns)
    without_secret = generate(small(msisdn_secret=None, duration=3600.0, base_rate=1.0))
    row = next(r for r in without_secret.truth if r["subject_type"] == "msisdn")
    assert row["msisdn_hash"] is None and "****" in row["subject"]


def test_incidents_are_spread_and_repeatable() -> None:
    """`incidents` per scenario, after the warm-up, on distinct subjects."""
    sim = generate(
        small(duration=6 * 3600.0, base_rate=1.0, incidents=3, scenarios=frozenset({"bombing"}))
    )
    starts = [ts(r["start"]) for r in sim.truth]
    assert len(starts) == 3 and len({r["msisdn_hash"] for r in sim.truth}) == 3
    assert min(starts) >= sim.start + dt.timedelta(hours=1)
    assert starts == sorted(starts)


def test_config_rejects_unknown_scenarios_and_spans_too_short_for_them() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        SimConfig(scenarios=frozenset({"tsunami"}))
    with pytest.raises(ValueError, match="too short"):
        generate(small(duration=600.0))


# -- Kafka pacing, span, truth of partial runs ------------------------------------------------


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ListSink:
    def __init__(self) -> None:
        self.sent: list[Record] = []

    def send(self, kind: str, key: str, value: dict[str, Any]) -> None:
        self.sent.append((kind, key, value))


def test_pump_paces_by_rate_and_stops_at_the_wall_clock_limit() -> None:
    sim = generate(small(scenarios=frozenset({"normal"})))
    fake, sink = FakeTime(), ListSink()
    result = pump(sim.run(), sink, rate=100.0, seconds=2.0, clock=fake.clock, sleep=fake.sleep)
    assert not result.finished
    assert 195 <= result.sent <= 201 and result.sent == len(sink.sent)


def test_pump_paces_by_speed_in_simulated_seconds() -> None:
    sim = generate(small(scenarios=frozenset({"normal"})))
    fake = FakeTime()
    result = pump(
        sim.run(), ListSink(), speed=60.0, seconds=5.0, clock=fake.clock, sleep=fake.sleep
    )
    assert result.last_offset is not None and 290 <= result.last_offset <= 300


def test_pump_as_fast_as_possible_finishes_and_a_stop_sends_nothing_more() -> None:
    sim = generate(small(duration=600.0, base_rate=2.0, scenarios=frozenset({"normal"})))
    sink = ListSink()
    assert pump(sim.run(), sink).finished
    assert sink.sent == list(sim.records())
    stop = threading.Event()
    stop.set()
    run = sim.run()
    assert pump(run, ListSink(), stop=stop) == PumpResult(0, None, False)
    assert run.expected == []


def test_truth_of_a_partial_run_has_only_begun_incidents_clipped() -> None:
    sim = generate(small())
    first = min(ts(r["start"]) for r in sim.truth)
    offset = (first - sim.start).total_seconds() + 60
    rows = sim.truth_until(offset)
    assert rows and all(r["truncated"] for r in rows)
    assert all(ts(r["end"]) == first + dt.timedelta(seconds=60) for r in rows)
    assert sim.truth_until(-1.0) == [] and sim.truth_until(None) == sim.truth


def test_kafka_span_keeps_every_ts_within_the_future_skew() -> None:
    now = dt.datetime(2024, 11, 10, 3, 0, tzinfo=dt.UTC)  # 11:00 in Shanghai
    skew = dt.timedelta(days=1)
    start, duration = kafka_span(now, TZ, {"normal"}, None)
    assert start == now - dt.timedelta(minutes=5)
    assert start + dt.timedelta(seconds=duration) <= now + skew
    start, duration = kafka_span(now, TZ, {"double11"}, None)
    local = start.astimezone(TZ)
    assert (local.hour, local.minute) == (18, 30) and start <= now
    assert start + dt.timedelta(seconds=duration) <= now + skew
    start, duration = kafka_span(now, TZ, {"normal"}, 3 * 86_400.0)
    assert duration == 3 * 86_400.0 and start + dt.timedelta(seconds=duration) <= now + skew


# -- command line -----------------------------------------------------------------------------


def test_cli_registers_simulate_like_the_other_commands() -> None:
    args = build_parser().parse_args(
        ["simulate", "--scenario", "double11", "--rate", "300", "--seconds", "5"]
    )
    assert args.command == "simulate" and args.rate == 300.0 and args.seconds == 5.0
    assert args.func.__name__ == "cmd_simulate"


def test_cli_out_writes_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`smsmon simulate --out DIR` writes events, complaints, reference data and truth."""
    monkeypatch.setenv("SMSMON_MSISDN_SECRET", SECRET.decode())
    monkeypatch.setenv("SMSMON_TIMEZONE", "Asia/Shanghai")
    out = tmp_path / "sim"
    argv = [
        "simulate",
        "--out",
        str(out),
        "--seed",
        "4",
        "--start",
        "2024-11-10T12:00:00",
        "--duration",
        "3600",
        "--base-rate",
        "2",
        "--subscribers",
        "800",
        "--scenario",
        "bombing,complaints",
    ]
    assert main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "events.jsonl.gz",
        "complaints.jsonl",
        "ports.jsonl",
        "signatures.jsonl",
        "consent.jsonl",
        "truth.jsonl",
        "expected.jsonl",
    } <= names
    with gzip.open(out / "events.jsonl.gz", "rt", encoding="utf-8") as f:
        events = [json.loads(line) for line in f]
    ctx = DecodeContext(tz=TZ, now=dt.datetime(2024, 11, 11, tzinfo=TZ))
    for ev in events[:500]:
        decode_event(json.dumps(ev).encode(), None, ctx)
    assert any(e["kind"] == "mo" for e in events)
    truth = [json.loads(line) for line in (out / "truth.jsonl").read_text().splitlines()]
    assert {r["rule"] for r in truth} == {"recipient.flood", "complaint.rate"}
    bomb = next(r for r in truth if r["rule"] == "recipient.flood")
    assert bomb["msisdn_hash"].startswith("k1:")
    ports = (out / "ports.jsonl").read_text().splitlines()
    assert all(decode_model(PortRecord, line.encode(), ctx) for line in ports)
    # the files hold the same run as the API
    sim = generate(
        SimConfig(
            seed=4,
            start=dt.datetime(2024, 11, 10, 12, 0, tzinfo=TZ),
            duration=3600,
            base_rate=2,
            subscribers=800,
            scenarios=frozenset({"bombing", "complaints"}),
            msisdn_secret=SECRET,
        )
    )
    assert events == [v for kind, _, v in sim.records() if kind == "event"]
    assert truth == sim.truth


def test_cli_rejects_an_unknown_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--out", str(tmp_path), "--scenario", "tsunami"]) == 2
    assert "unknown scenario" in capsys.readouterr().err


def test_mo_and_mt_models_round_trip_a_sample(everything: Run) -> None:
    """Spot-check typed fields: mt account/category, mo text (models, not only the codec)."""
    for v in everything.events()[:2000]:
        if v["kind"] == "mt":
            assert MtEvent.model_validate(v, context={"tz": TZ}).account
        elif v["kind"] == "mo":
            assert MoEvent.model_validate(v, context={"tz": TZ}).text
