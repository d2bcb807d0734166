"""Stage 1 of the traffic rules: recipient.flood, partials, complaint attribution, lateness."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from smsmon.contract.canonical import MsisdnHasher, mask_msisdn
from smsmon.contract.models import Alert, Complaint, MtEvent, Severity
from smsmon.rules import catalog as R
from smsmon.rules.compliance import MtVerdict, check_mt
from smsmon.rules.reference import ReferenceBook
from smsmon.rules.traffic import (
    AGGREGATE_RULES,
    COMPLAINT_PREFIX,
    DIM_ACCOUNT,
    DIM_PORT,
    DIM_SIGNATURE,
    SET_ACCOUNT,
    SET_IP,
    SET_SIGNATURE,
    SUBLET_TOTAL,
    FloodState,
    FloodWindow,
    Partial,
    PartialBuilder,
    Stage1,
    TrafficConfig,
    aggregate_alert_id,
    attribute_complaint,
    count_flood,
    subject_partition,
)
from smsmon.rules.windows import Windowing

if TYPE_CHECKING:
    from tests.unit.conftest import Factory

pytestmark = pytest.mark.unit

HASHER = MsisdnHasher(b"k", "k1")
MSISDN = "13800138000"
DETECTED = dt.datetime(2024, 5, 1, 3, 0, tzinfo=dt.UTC)
T0_MS = 1_714_528_800_000  # 2024-05-01T02:00:00Z (the factory's t0), a whole hour
FLOOD_MS = 300_000


def ms(ts: dt.datetime) -> int:
    return int(ts.timestamp() * 1000)


def verdict(event: MtEvent, book: ReferenceBook) -> MtVerdict:
    return check_mt(event, book, lambda _m, _e: None)


def flood(
    state: FloodState,
    event: MtEvent,
    offset: int,
    *,
    enterprise: str | None = "ENT_A",
    cfg: TrafficConfig | None = None,
    source: str = "ev-0",
) -> list[Alert]:
    return count_flood(
        state,
        event,
        enterprise,
        ms(event.ts),
        source,
        offset,
        cfg or TrafficConfig(),
        HASHER,
        DETECTED,
    )


def complaint(at: float, **fields: Any) -> Complaint:
    return Complaint.model_validate(
        {
            "complaint_id": f"c-{at}",
            "ts": dt.datetime.fromtimestamp(T0_MS / 1000 + at, tz=dt.UTC).isoformat(),
            "msisdn": MSISDN,
            **fields,
        }
    )


# --- configuration and identifiers -----------------------------------------------------------


def test_defaults_follow_the_issue() -> None:
    """volume.spike is judged on 1-minute windows; every rule has a positive grace."""
    cfg = TrafficConfig()
    assert cfg.volume.size_ms == 60_000
    for w in (cfg.volume, cfg.flood, cfg.sublet, cfg.complaint):
        assert w.size_ms > 0 and w.grace_ms > 0
    assert cfg.spike_warmup_windows >= 1
    assert 0 < cfg.ewma_alpha <= 1


def test_aggregate_rules_have_the_contract_ids() -> None:
    """The four aggregate rules exist under their contract ids and are registered by id."""
    assert {r.id for r in AGGREGATE_RULES} == {
        "volume.spike",
        "recipient.flood",
        "port.sublet",
        "complaint.rate",
    }
    for r in AGGREGATE_RULES:
        assert R.RULES_BY_ID[r.id] is r


def test_aggregate_alert_id_is_uuid5_of_rule_subject_type_subject_window_start_ms() -> None:
    """alert_id = uuid5(ns, "rule|subject_type|subject|window_start"), window start in epoch ms."""
    got = aggregate_alert_id("volume.spike", "port", "10690001", T0_MS)
    want = uuid.uuid5(R.ALERT_NAMESPACE, f"volume.spike|port|10690001|{T0_MS}")
    assert got == str(want)
    assert got != aggregate_alert_id("volume.spike", "port", "10690001", T0_MS + 60_000)
    assert got != aggregate_alert_id("volume.spike", "signature", "10690001", T0_MS)


def test_subject_partition_is_stable_in_range_and_colocates_complaints() -> None:
    """A subject's counts and its complaints go to the same stage-2 partition, deterministically."""
    for subject in ("10690001", "10660002", "taobao", "acc_a", "京东"):
        for dim in (DIM_PORT, DIM_SIGNATURE):
            q = subject_partition(dim, subject, 12)
            assert 0 <= q < 12
            assert q == subject_partition(dim, subject, 12)
            assert q == subject_partition(COMPLAINT_PREFIX + dim, subject, 12)
    spread = {subject_partition(DIM_PORT, str(10690000 + i), 8) for i in range(200)}
    assert len(spread) == 8


# --- recipient.flood -----------------------------------------------------------------------


def test_flood_fires_when_total_exceeds_the_bound_not_at_it(f: Factory) -> None:
    """N = flood_total messages is allowed; the (N+1)-th in the window fires recipient.flood."""
    cfg = TrafficConfig(flood_total=30, flood_per_enterprise=1000)
    st = FloodState()
    fired: list[Alert] = []
    for i in range(30):
        ev = f.mt(f"e{i}", at=i)
        fired += flood(st, ev, i, enterprise=f"ENT_{i}", cfg=cfg)
    assert fired == []
    fired = flood(st, f.mt("e30", at=30), 30, enterprise="ENT_X", cfg=cfg)
    assert [a.rule for a in fired] == ["recipient.flood"]
    assert fired[0].observed == 31 and fired[0].threshold == 30


def test_flood_fires_once_per_window_not_once_per_message(f: Factory) -> None:
    """A bombing of 200 messages in one window gives exactly one alert for that window."""
    cfg = TrafficConfig(flood_total=30, flood_per_enterprise=15)
    st = FloodState()
    alerts: list[Alert] = []
    for i in range(200):
        alerts += flood(st, f.mt(f"e{i}", at=i), i, enterprise=f"ENT_{i % 7}", cfg=cfg)
    assert len(alerts) == 1


def test_flood_by_one_sender(f: Factory) -> None:
    """More than flood_per_enterprise messages from one enterprise fire, below the total bound."""
    cfg = TrafficConfig(flood_total=40, flood_per_enterprise=15)
    st = FloodState()
    alerts: list[Alert] = []
    for i in range(15):
        alerts += flood(st, f.mt(f"a{i}", at=i), 2 * i, enterprise="ENT_A", cfg=cfg)
        alerts += flood(st, f.mt(f"b{i}", at=i), 2 * i + 1, enterprise="ENT_B", cfg=cfg)
    assert alerts == []  # 30 in total, 15 each: no bound exceeded
    alerts = flood(st, f.mt("a15", at=20), 100, enterprise="ENT_A", cfg=cfg)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.rule == "recipient.flood" and a.observed == 16 and a.threshold == 15
    # the total bound is crossed later in the same window: still no second alert
    later = [flood(st, f.mt(f"c{i}", at=30 + i), 200 + i, cfg=cfg) for i in range(20)]
    assert sum(w.total for w in st.windows.values()) > cfg.flood_total
    assert all(x == [] for x in later)


def test_flood_without_known_enterprise_counts_per_port(f: Factory) -> None:
    """Unknown senders are grouped by port, so one unregistered port can still flood."""
    cfg = TrafficConfig(flood_total=1000, flood_per_enterprise=3)
    st = FloodState()
    alerts: list[Alert] = []
    for i in range(4):
        alerts += flood(st, f.mt(f"e{i}", port="10669999", at=i), i, enterprise=None, cfg=cfg)
    assert len(alerts) == 1


def test_flood_alert_names_the_hash_never_the_msisdn(f: Factory) -> None:
    """Subject is the msisdn's keyed hash with its masked form; the number appears nowhere."""
    cfg = TrafficConfig(flood_total=2)
    st = FloodState()
    alerts: list[Alert] = []
    for i in range(3):
        alerts += flood(st, f.mt(f"e{i}", at=10 + i), i, cfg=cfg)
    (a,) = alerts
    assert a.subject_type == "msisdn"
    assert a.subject == HASHER(MSISDN) == a.msisdn_hash
    assert a.msisdn_masked == mask_msisdn(MSISDN) == "138****8000"
    assert a.event_id == ""
    assert a.severity is Severity.CRITICAL
    assert MSISDN not in a.model_dump_json()
    assert a.window_start == dt.datetime.fromtimestamp(T0_MS / 1000, tz=dt.UTC)
    assert a.window_end == dt.datetime.fromtimestamp((T0_MS + FLOOD_MS) / 1000, tz=dt.UTC)
    assert a.alert_id == aggregate_alert_id("recipient.flood", "msisdn", a.subject, T0_MS)


def test_flood_fires_again_in_the_next_window_with_a_new_id(f: Factory) -> None:
    """A bombing that lasts two windows gives one alert per window, with distinct ids."""
    cfg = TrafficConfig(flood_total=2)
    st = FloodState()
    alerts: list[Alert] = []
    for i in range(6):
        alerts += flood(st, f.mt(f"e{i}", at=100 * i), i, cfg=cfg)  # 3 in each 5-minute window
    assert len(alerts) == 2
    assert alerts[0].alert_id != alerts[1].alert_id
    assert alerts[1].window_start == alerts[0].window_end


def test_flood_is_idempotent_per_source_offset(f: Factory) -> None:
    """Replaying offsets already applied from a source does not count again (restart safety)."""
    cfg = TrafficConfig(flood_total=3)
    st = FloodState()
    for i in range(3):
        assert flood(st, f.mt(f"e{i}", at=i), i, cfg=cfg) == []
    for i in range(3):  # replay after a crash
        assert flood(st, f.mt(f"e{i}", at=i), i, cfg=cfg) == []
    assert sum(w.total for w in st.windows.values()) == 3
    # the same offset number from another source is a different record
    assert len(flood(st, f.mt("x", at=5), 1, cfg=cfg, source="rk-0")) == 1


def test_flood_state_round_trips() -> None:
    """FloodState survives encode/decode, including its applied offsets; empty decodes empty."""
    st = FloodState({T0_MS: FloodWindow(7, {"ENT_A": 5, "port:1069": 2}, True)}, {"ev-0": 41})
    assert FloodState.decode(st.encode()) == st
    assert FloodState.decode(None) == FloodState()
    assert FloodState.decode(b"") == FloodState()


def test_flood_counts_an_out_of_order_event_within_grace(f: Factory) -> None:
    """An event for the previous flood window that is within grace still counts towards it."""
    cfg = TrafficConfig(flood_total=30, flood_per_enterprise=1000)
    s1 = Stage1(cfg, 1, HASHER)
    book = f.book()
    fl = FloodState()
    alerts: list[Alert] = []
    off = 0

    def feed(ev: MtEvent) -> None:
        nonlocal off
        off += 1
        alerts.extend(s1.on_mt("ev-0", 0, off, ev, verdict(ev, book), fl, ms(ev.ts), DETECTED))

    for i in range(30):
        feed(f.mt(f"e{i}", at=i))
    feed(f.mt("next", at=300.5))  # opens the next flood window
    feed(f.mt("straggler", at=299))  # 1.5 s behind: well within the 10 s grace
    assert s1.late == 0
    assert [a.window_start for a in alerts] == [f.at(0)]


# --- partials ------------------------------------------------------------------------------


def test_partial_round_trips() -> None:
    """A partial's counts, sets, meta, offsets and watermark survive the internal topic."""
    p = Partial(
        "ev-3",
        3,
        10,
        42,
        T0_MS,
        counts={
            (DIM_PORT, "10690001", T0_MS): [10, 11, 40],
            (COMPLAINT_PREFIX + DIM_SIGNATURE, "京东", T0_MS): [42],
        },
        sets={(SET_SIGNATURE, "10690001", T0_MS): {"b", "a"}},
        meta={(DIM_PORT, "10690001"): "ENT_A"},
    )
    assert Partial.decode(p.encode()) == p
    empty = Partial("rk-1", 1, 0, 0, None)
    assert Partial.decode(empty.encode()) == empty


def test_builder_counts_each_mt_by_port_signature_and_account(f: Factory) -> None:
    """One mt counts once under its registered port code (not the extension), signature, account."""
    book = f.book()
    b = PartialBuilder(1, TrafficConfig())
    ev = f.mt("e1", at=5, segments=3)
    b.touch("ev-0", 0, 7)
    b.add_mt("ev-0", 7, ms(ev.ts), ev, verdict(ev, book))
    ((q, p),) = b.build({0: T0_MS})
    assert q == 0
    assert p.counts == {
        (DIM_PORT, "10690001", T0_MS): [7],
        (DIM_ACCOUNT, "acc_a", T0_MS): [7],
        (DIM_SIGNATURE, "taobao", T0_MS): [7],
        (SUBLET_TOTAL, "10690001", T0_MS): [7],  # the port's traffic, for sublet shares
    }
    assert p.meta == {(DIM_PORT, "10690001"): "ENT_A", (DIM_SIGNATURE, "taobao"): "ENT_A"}
    assert p.sets == {}  # a compliant message is no sublet evidence
    assert (p.source, p.logical, p.lo, p.hi, p.watermark) == ("ev-0", 0, 7, 7, T0_MS)


def test_builder_unregistered_port_counts_under_the_address_and_gives_no_sublet_evidence(
    f: Factory,
) -> None:
    """Without a port record the event's port is the subject and there is no sublet evidence."""
    book = f.book()
    b = PartialBuilder(1, TrafficConfig())
    ev = f.mt("e1", port="10669999", account="someone", source_ip="10.0.0.1")
    b.touch("ev-0", 0, 1)
    b.add_mt("ev-0", 1, ms(ev.ts), ev, verdict(ev, book))
    ((_, p),) = b.build({})
    assert (DIM_PORT, "10669999", T0_MS) in p.counts
    assert p.sets == {}
    assert p.watermark is None


def _evidence(f: Factory, book: ReferenceBook, events: list[MtEvent]) -> dict[str, set[str]]:
    b = PartialBuilder(1, TrafficConfig())
    for i, ev in enumerate(events):
        b.touch("ev-0", 0, i)
        b.add_mt("ev-0", i, ms(ev.ts), ev, verdict(ev, book))
    ((_, p),) = b.build({})
    return {kind: vals for (kind, _port, _w), vals in p.sets.items()}


def test_sublet_evidence_foreign_and_unregistered_signatures(f: Factory) -> None:
    """On a dedicated port, another enterprise's or an unregistered signature is evidence."""
    book = f.book(sigs=[f.sig(), f.sig("Jd", "ENT_B")])
    ev = _evidence(
        f,
        book,
        [
            f.mt("own", text="【Taobao】hi"),
            f.mt("b", text="【Jd】hi"),
            f.mt("u", text="【Nobody】hi"),
        ],
    )
    assert ev == {SET_SIGNATURE: {"jd", "nobody"}}


def test_sublet_evidence_unregistered_accounts_and_their_ips(f: Factory) -> None:
    """Accounts not registered on the port, and those accounts' source IPs, are evidence."""
    book = f.book()
    ev = _evidence(
        f,
        book,
        [
            f.mt("own", source_ip="1.1.1.1"),  # registered account: its IP is no evidence
            f.mt("x", account="acc_x", source_ip="2.2.2.2"),
            f.mt("y", account="acc_y"),
        ],
    )
    assert ev == {SET_ACCOUNT: {"acc_x", "acc_y"}, SET_IP: {"2.2.2.2"}}


def test_shared_port_carrying_registered_signatures_is_no_sublet_evidence(f: Factory) -> None:
    """A platform port carries many enterprises' registered signatures by design."""
    shared = f.port("10690001", "PLATFORM", accounts=["acc_a"], shared=True)
    sigs = [f.sig("S1", "ENT_1"), f.sig("S2", "ENT_2"), f.sig("S3", "ENT_3", ports=["10690001"])]
    book = f.book(ports=[shared], sigs=sigs)
    ev = _evidence(f, book, [f.mt(f"e{i}", text=f"【S{i}】hi") for i in (1, 2, 3)])
    assert ev == {}


def test_shared_port_signature_registered_for_other_ports_is_evidence(f: Factory) -> None:
    """On a shared port, a signature restricted to other ports (or unregistered) is evidence."""
    shared = f.port("10690001", "PLATFORM", shared=True)
    sigs = [f.sig("S1", "ENT_1", ports=["10690002"])]
    book = f.book(ports=[shared], sigs=sigs)
    ev = _evidence(f, book, [f.mt("a", text="【S1】hi"), f.mt("b", text="【S9】hi")])
    assert ev == {SET_SIGNATURE: {"s1", "s9"}}


def test_builder_bounds_the_distinct_values_kept(f: Factory) -> None:
    """Sublet value sets are bounded by max_set_values."""
    book = f.book()
    b = PartialBuilder(1, TrafficConfig(max_set_values=4))
    for i in range(10):
        ev = f.mt(f"e{i}", account=f"acc_{i}")
        b.touch("ev-0", 0, i)
        b.add_mt("ev-0", i, ms(ev.ts), ev, verdict(ev, book))
    ((_, p),) = b.build({})
    assert len(p.sets[(SET_ACCOUNT, "10690001", T0_MS)]) == 4


def test_build_gives_one_partial_per_source_and_stage2_partition(f: Factory) -> None:
    """Every source seen ships a partial to every stage-2 partition, counts where they belong."""
    book = f.book(sigs=[f.sig(), f.sig("Jd", "ENT_B")])
    b = PartialBuilder(4, TrafficConfig())
    events = [f.mt("a", at=1), f.mt("b", at=2, text="【Jd】x")]
    for off, ev in zip((5, 9), events, strict=True):
        b.touch("ev-2", 2, off)
        b.add_mt("ev-2", off, ms(ev.ts), ev, verdict(ev, book))
    b.touch("rk-2", 2, 100)  # a source with no counts still reports progress
    out = b.build({2: T0_MS + 2_000})
    assert sorted((p.source, q) for q, p in out) == [
        (s, q) for s in ("ev-2", "rk-2") for q in range(4)
    ]
    for q, p in out:
        assert p.logical == 2 and p.watermark == T0_MS + 2_000
        assert (p.lo, p.hi) == ((5, 9) if p.source == "ev-2" else (100, 100))
        for dim, subject, _w in p.counts:
            assert subject_partition(dim, subject, 4) == q
    total = {k: v for _q, p in out for k, v in p.counts.items()}
    assert total[(DIM_PORT, "10690001", T0_MS)] == [5, 9]
    assert total[(DIM_SIGNATURE, "jd", T0_MS)] == [9]
    assert b.build({}) == []  # the builder starts empty again


# --- complaint attribution -------------------------------------------------------------------


def test_complaint_naming_port_and_signature_counts_against_both() -> None:
    """Named port and/or signature (normalised) are the targets; recent senders are ignored."""
    recent = [("10660002", "other", T0_MS)]
    cfg = TrafficConfig()
    c = complaint(100, port="10690001", signature="【TaoBao】")
    assert attribute_complaint(c, recent, cfg) == [
        (DIM_PORT, "10690001"),
        (DIM_SIGNATURE, "taobao"),
    ]
    assert attribute_complaint(complaint(100, port="10690001"), recent, cfg) == [
        (DIM_PORT, "10690001")
    ]
    assert attribute_complaint(complaint(100, signature="Taobao"), recent, cfg) == [
        (DIM_SIGNATURE, "taobao")
    ]


def test_complaint_with_only_the_msisdn_goes_to_recent_marketing_senders() -> None:
    """Without a named sender: every port and signature that sent marketing within the horizon."""
    cfg = TrafficConfig(complaint_horizon_ms=3 * 86_400_000)
    now = T0_MS + 100_000
    recent = [
        ("10690001", "taobao", now - 3_600_000),
        ("10660002", None, now - 86_400_000),
        ("10660003", "old", now - 4 * 86_400_000),  # beyond the horizon
        ("10660004", "future", now + 1_000),  # sent after the complaint
    ]
    got = attribute_complaint(complaint(100, text="too many ads"), recent, cfg)
    assert got == sorted(
        [(DIM_PORT, "10690001"), (DIM_SIGNATURE, "taobao"), (DIM_PORT, "10660002")]
    )


def test_complaint_with_nothing_to_attribute_is_unattributed() -> None:
    """No named sender and no recent marketing: no target."""
    assert attribute_complaint(complaint(0), [], TrafficConfig()) == []


# --- Stage1 --------------------------------------------------------------------------------


class _Feed:
    """Drives a Stage1 with consecutive offsets per source at a fixed wall time (no idleness)."""

    def __init__(self, f: Factory, cfg: TrafficConfig, partitions: int = 1) -> None:
        self.f = f
        self.book = f.book()
        self.s1 = Stage1(cfg, partitions, HASHER)
        self.floods: dict[str, FloodState] = {}
        self.offsets: dict[str, int] = {}
        self.alerts: list[Alert] = []

    def mt(self, ev: MtEvent, source: str = "ev-0", logical: int = 0) -> None:
        off = self.offsets[source] = self.offsets.get(source, -1) + 1
        fl = self.floods.setdefault(ev.msisdn, FloodState())
        self.alerts += self.s1.on_mt(
            source, logical, off, ev, verdict(ev, self.book), fl, 0, DETECTED
        )

    def port_counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for _q, p in self.s1.flush(0):
            for (dim, _s, w), offs in p.counts.items():
                if dim == DIM_PORT:
                    out[w] = out.get(w, 0) + len(offs)
        return out


def test_stage1_counts_late_events_within_grace_and_drops_later_ones(f: Factory) -> None:
    """Behind the watermark but within grace: counted; beyond grace: dropped, counted as late."""
    feed = _Feed(f, TrafficConfig())
    feed.mt(f.mt("a", at=0))
    feed.mt(f.mt("b", at=65))  # watermark 65 s: window [0, 60) closes at 70 s
    feed.mt(f.mt("in-grace", at=59))
    assert feed.s1.late == 0
    feed.mt(f.mt("c", at=71))  # watermark 71 s: window [0, 60) is closed
    feed.mt(f.mt("too-late", at=58))
    assert feed.s1.late == 1
    assert feed.port_counts() == {T0_MS: 2, T0_MS + 60_000: 2}


def test_stage1_event_at_window_end_counts_in_the_next_window(f: Factory) -> None:
    """An mt stamped exactly at a window's end is counted in the following window."""
    feed = _Feed(f, TrafficConfig())
    feed.mt(f.mt("a", at=59.999))
    feed.mt(f.mt("b", at=60))
    assert feed.port_counts() == {T0_MS: 1, T0_MS + 60_000: 1}


def test_stage1_watermark_is_the_minimum_of_a_logical_partitions_sources(f: Factory) -> None:
    """A re-keying source behind the events source holds the partition's watermark back."""
    feed = _Feed(f, TrafficConfig())
    feed.mt(f.mt("r0", at=0), source="rk-0")
    feed.mt(f.mt("e0", at=200), source="ev-0")
    assert feed.s1.watermark(0, 0) == ms(f.at(0))
    feed.mt(f.mt("r1", at=30), source="rk-0")  # 170 s behind the events source: not late
    assert feed.s1.late == 0
    assert feed.s1.watermark(0, 0) == ms(f.at(30))
    # another logical partition has its own watermark
    feed.mt(f.mt("o", at=500), source="ev-1", logical=1)
    assert feed.s1.watermark(1, 0) == ms(f.at(500))
    assert feed.s1.watermark(0, 0) == ms(f.at(30))
    assert feed.s1.watermark(7, 0) is None


def test_stage1_first_rekeyed_record_is_not_late(f: Factory) -> None:
    """A record delayed by re-keying is judged by its own source's progress (Stage1 docstring)."""
    feed = _Feed(f, TrafficConfig())
    feed.mt(f.mt("e0", at=200), source="ev-0")
    feed.mt(f.mt("r0", at=30), source="rk-0")  # first record ever seen from the re-keying topic
    assert feed.s1.late == 0


def test_stage1_detects_flood_and_ships_counts(f: Factory) -> None:
    """Stage 1 raises recipient.flood itself and still ships every mt's counts to stage 2."""
    feed = _Feed(f, TrafficConfig(flood_total=5))
    for i in range(8):
        feed.mt(f.mt(f"e{i}", at=i))
    assert [a.rule for a in feed.alerts] == ["recipient.flood"]
    assert feed.port_counts() == {T0_MS: 8}


def test_stage1_complaints_are_counted_under_their_targets(f: Factory) -> None:
    """An attributed complaint ships as a complaint count; an unattributed one ships nothing."""
    s1 = Stage1(TrafficConfig(), 1, HASHER)
    targets = s1.on_complaint("cp-0", 0, 3, complaint(10, port="10690001"), [], T0_MS)
    assert targets == [(DIM_PORT, "10690001")]
    assert s1.on_complaint("cp-0", 0, 4, complaint(11), [], T0_MS) == []
    ((_, p),) = s1.flush(0)
    assert p.counts == {(COMPLAINT_PREFIX + DIM_PORT, "10690001", T0_MS): [3]}
    assert (p.lo, p.hi) == (3, 4)


def test_stage1_counts_a_complaint_beyond_grace_as_late(f: Factory) -> None:
    """Late complaints are dropped from windows and counted in the late metric, like events."""
    cfg = TrafficConfig(complaint=Windowing(3_600_000, 10_000))
    s1 = Stage1(cfg, 1, HASHER)
    ev = f.mt("e", at=2 * 3600)  # watermark two hours on
    s1.on_mt("ev-0", 0, 0, ev, verdict(ev, f.book()), FloodState(), ms(ev.ts), DETECTED)
    s1.on_complaint("ev-0", 0, 1, complaint(10, port="10690001"), [], ms(ev.ts))
    shipped = {k for _q, p in s1.flush(0) for k in p.counts}
    assert not any(dim.startswith(COMPLAINT_PREFIX) for dim, _s, _w in shipped)
    assert s1.late == 1


# --- re-keyed records and watermark markers -------------------------------------------------


def _live_stage1(cfg: TrafficConfig) -> Stage1:
    """Two partitions as the live pipeline wires them: events partition e<P> and the markers
    m<Q>.<P> of the other events partition drive logical partition P."""
    return Stage1(
        cfg,
        2,
        HASHER,
        expected=lambda p: [f"e{p}"] + [f"m{q}.{p}" for q in range(2) if q != p],
    )


def test_rekeyed_records_are_not_late_when_the_direct_path_ran_ahead(f: Factory) -> None:
    """Logical partition 0 reads its own events far ahead while partition 1's re-keyed
    records for it arrive later: they are judged against partition 1's markers, not late."""
    cfg = TrafficConfig()
    s1 = _live_stage1(cfg)
    book = f.book()
    wall = T0_MS
    ahead = f.mt("direct", at=3600)  # an hour on, on the direct path
    s1.on_mt("e0", 0, 0, ahead, verdict(ahead, book), FloodState(), wall, DETECTED)
    assert s1.watermark(0, wall) is None  # m1.0 has not reported: held back
    s1.on_marker("r0", "m1.0", 0, 0, ms(f.mt("x", at=0).ts), wall)
    for i in range(5):  # re-keyed from partition 1, an hour behind the direct path
        ev = f.mt(f"rk{i}", at=i, msisdn=f"1380000{i:04d}")
        s1.on_mt("r0", 0, i + 1, ev, verdict(ev, book), FloodState(), wall, DETECTED, drives=False)
    assert s1.late == 0
    assert s1.watermark(0, wall) == ms(f.mt("x", at=0).ts)  # re-keyed records did not move it


def test_without_its_origins_marker_a_rekeyed_record_would_be_late(f: Factory) -> None:
    """The same records with the markers' source already an hour on: they are late."""
    cfg = TrafficConfig()
    s1 = _live_stage1(cfg)
    book = f.book()
    wall = T0_MS
    ahead = f.mt("direct", at=3600)
    s1.on_mt("e0", 0, 0, ahead, verdict(ahead, book), FloodState(), wall, DETECTED)
    s1.on_marker("r0", "m1.0", 0, 0, ms(ahead.ts), wall)
    ev = f.mt("rk", at=0, msisdn="13800000001")
    s1.on_mt("r0", 0, 1, ev, verdict(ev, book), FloodState(), wall, DETECTED, drives=False)
    assert s1.late == 1


def test_a_marker_ships_the_watermark_to_stage_two_without_counts(f: Factory) -> None:
    """A batch holding only a marker still sends partials carrying the new watermark."""
    s1 = _live_stage1(TrafficConfig())
    s1.on_progress("e0", 0, T0_MS + 5_000, T0_MS)
    s1.on_marker("r0", "m1.0", 0, 7, T0_MS, T0_MS)
    parts = [p for _q, p in s1.flush(T0_MS) if p.source == "r0"]
    assert parts and all(p.watermark == T0_MS and not p.counts for p in parts)
    assert all((p.lo, p.hi) == (7, 7) for p in parts)


def test_a_heartbeat_ships_a_watermark_that_moved_without_records(f: Factory) -> None:
    """Sources going idle move the watermark with no record to carry it: the heartbeat sends
    it (once) to every stage-2 partition, with no counts and no offsets."""
    s1 = _live_stage1(TrafficConfig(idle_ms=30_000))
    s1.on_progress("e0", 0, T0_MS, T0_MS)
    s1.flush(T0_MS)
    assert s1.heartbeat(T0_MS + 1_000) == []  # m1.0 expected and not idle yet: held
    beats = s1.heartbeat(T0_MS + 30_000)  # m1.0 idle with nothing pending: wm is e0's
    assert sorted(q for q, _ in beats) == [0, 1]
    assert all(p.watermark == T0_MS and p.hi == -1 and not p.counts for _q, p in beats)
    assert s1.heartbeat(T0_MS + 31_000) == []  # unchanged: nothing more to send


# --- one batch, several partials: the watermark rides on the last one ----------------------


class _Subjects:
    """In-memory stage-2 subject store."""

    def __init__(self) -> None:
        from smsmon.rules.aggregate import SubjectState

        self.states: dict[str, SubjectState] = {}
        self._new = SubjectState

    def get(self, key: str) -> Any:
        return self.states.get(key) or self._new()

    def put(self, key: str, state: Any) -> None:
        self.states[key] = state


def _batch_that_moves_the_watermark(f: Factory) -> list[tuple[int, Partial]]:
    """One stage-1 batch of logical partition 0: its events partition starts at 0 s; then
    re-keyed records of the first minute arrive (judged against watermark 0 s, in time);
    then the events partition and partition 1's marker move the watermark to 200 s, which
    closes the first minute. The batch ships one partial per source (e0, then r0)."""
    s1 = _live_stage1(TrafficConfig())
    book = f.book()
    wall = T0_MS
    first = f.mt("direct-0", at=0)
    s1.on_mt("e0", 0, 0, first, verdict(first, book), FloodState(), wall, DETECTED)
    s1.on_marker("r0", "m1.0", 0, 0, ms(first.ts), wall)
    for i in range(3):
        ev = f.mt(f"rk{i}", at=50 + i, msisdn=f"1380000{i:04d}")
        s1.on_mt("r0", 0, i + 1, ev, verdict(ev, book), FloodState(), wall, DETECTED, drives=False)
    ahead = f.mt("direct-1", at=200, msisdn="13800009999")
    s1.on_mt("e0", 0, 1, ahead, verdict(ahead, book), FloodState(), wall, DETECTED)
    s1.on_marker("r0", "m1.0", 0, 4, ms(ahead.ts), wall)
    assert s1.late == 0  # every record was in time when stage 1 judged it
    return s1.flush(wall)


def test_a_batch_moves_stage_two_watermark_only_with_its_last_partial(f: Factory) -> None:
    """Partials of one batch reach stage 2 in order but may straddle two of its batches, and
    stage 2 closes windows after each batch. The batch's new watermark rides on its last
    partial to each stage-2 partition (earlier ones repeat the watermark shipped before), so
    no partial can close a window that a later partial of the same batch still counts in.
    (issue 16: 67 late events when stage 2 split a batch's partials under load.)"""
    from smsmon.rules.aggregate import Aggregator, Progress

    shipped = _batch_that_moves_the_watermark(f)
    late, closed = 0, []
    for q in (0, 1):  # stage-2 partitions
        parts = [p for qq, p in shipped if qq == q]
        assert [p.source for p in parts] == ["e0", "r0"]
        assert [p.watermark for p in parts] == [None, T0_MS + 200_000]
        agg, progress = Aggregator(TrafficConfig(), lambda p: ("ENT_A", None)), Progress()
        store = _Subjects()
        for part in parts:  # the worst split: stage 2 closes windows after every partial
            agg.apply(part, progress, store, 0, DETECTED)
            agg.close(progress, store, 0, DETECTED)
        late += agg.late
        closed.append(progress.closed.get("v", -1))
    assert late == 0
    assert all(c >= T0_MS + 60_000 for c in closed)  # and the first minute did close


def test_the_watermark_of_a_batch_is_shipped_once_per_stage_two_partition(f: Factory) -> None:
    """With several stage-2 partitions, each gets the new watermark on its own last partial;
    in a later batch the partials before the last repeat the watermark already shipped."""
    s1 = Stage1(TrafficConfig(), 3, HASHER)
    book = f.book()

    def mt(source: str, offset: int, at: float, drives: bool = True) -> None:
        ev = f.mt(f"{source}-{offset}", at=at, msisdn=f"1380000{offset:04d}")
        s1.on_mt(source, 0, offset, ev, verdict(ev, book), FloodState(), T0_MS, DETECTED, drives)

    mt("e0", 0, 0)
    mt("r0", 1, 10, drives=False)
    mt("e0", 2, 20)
    out = s1.flush(T0_MS)
    for q in range(3):
        assert [(p.source, p.watermark) for qq, p in out if qq == q] == [
            ("e0", None),
            ("r0", T0_MS + 20_000),
        ]
    mt("e0", 3, 30)
    s1.on_other("r0", 0, 4, T0_MS + 35_000, T0_MS, drives=False)
    out = s1.flush(T0_MS)
    for q in range(3):
        assert [p.watermark for qq, p in out if qq == q] == [T0_MS + 20_000, T0_MS + 30_000]
    assert s1.heartbeat(T0_MS) == []  # the new watermark was shipped: nothing to repeat


# --- marker sources go idle only when their origin says so -------------------------------


def _marker_stage1(lag_says_caught_up: bool) -> Stage1:
    """Two partitions wired as live. `caught_up` answers for the partition a source is read
    from; for a marker source m1.0 that is the re-keying partition 0, whose lag is 0 while
    partition 1's forwarded records are in flight (or uncommitted), so it cannot tell."""
    return Stage1(
        TrafficConfig(idle_ms=30_000),
        2,
        HASHER,
        caught_up=lambda src: lag_says_caught_up or not str(src).startswith("m"),
        expected=lambda p: [f"e{p}"] + [f"m{q}.{p}" for q in range(2) if q != p],
    )


def _origin_silent_then_forwards(f: Factory, s1: Stage1) -> None:
    """Partition 1 reports t=0 once, then is silent for 40 s of wall time (its worker slow or
    restarting) while partition 0 reads an hour ahead; then partition 1's forwarded record
    of t=10 s arrives on re-keying partition 0."""
    book = f.book()
    first = f.mt("direct-0", at=0)
    s1.on_mt("e0", 0, 0, first, verdict(first, book), FloodState(), T0_MS, DETECTED)
    s1.on_marker("r0", "m1.0", 0, 0, ms(first.ts), T0_MS)
    ahead = f.mt("direct-1", at=3600, msisdn="13800009999")
    s1.on_mt("e0", 0, 1, ahead, verdict(ahead, book), FloodState(), T0_MS + 40_000, DETECTED)
    rk = f.mt("rk", at=10, msisdn="13800000001")
    s1.on_mt(
        "r0", 0, 1, rk, verdict(rk, book), FloodState(), T0_MS + 41_000, DETECTED, False, "m1.0"
    )


def test_a_silent_marker_source_judged_idle_by_lag_makes_forwarded_records_late(
    f: Factory,
) -> None:
    """The failure mode: lag 0 on the re-keying partition taken as "nothing pending"."""
    s1 = _marker_stage1(lag_says_caught_up=True)
    _origin_silent_then_forwards(f, s1)
    assert s1.late == 1


def test_a_silent_marker_source_holds_the_watermark_until_its_origin_says_idle(
    f: Factory,
) -> None:
    """Silence of a marker source is not idleness: it holds the watermark back however long
    (the caller never calls a marker source caught up), so the forwarded record is in time."""
    s1 = _marker_stage1(lag_says_caught_up=False)
    _origin_silent_then_forwards(f, s1)
    assert s1.late == 0
    assert s1.watermark(0, T0_MS + 41_000) == T0_MS  # still m1.0's t=0


def test_an_idle_marker_releases_the_watermark_and_a_record_of_that_origin_rejoins(
    f: Factory,
) -> None:
    """The origin says it is caught up and quiet: once the source is also silent here for
    idle_ms the direct path alone drives the watermark. A later forwarded record of that
    origin rejoins before it is judged (in time), and its next marker keeps it joined."""
    s1 = _marker_stage1(lag_says_caught_up=False)
    book = f.book()
    first = f.mt("direct-0", at=0)
    s1.on_mt("e0", 0, 0, first, verdict(first, book), FloodState(), T0_MS, DETECTED)
    s1.on_marker("r0", "m1.0", 0, 0, ms(first.ts), T0_MS)
    ahead = f.mt("direct-1", at=600, msisdn="13800009999")
    s1.on_mt("e0", 0, 1, ahead, verdict(ahead, book), FloodState(), T0_MS + 1_000, DETECTED)
    s1.on_marker("r0", "m1.0", 0, 1, ms(first.ts), T0_MS + 30_000, idle=True)
    assert s1.watermark(0, T0_MS + 29_000) == T0_MS  # idle, but not silent for idle_ms yet
    assert s1.watermark(0, T0_MS + 31_000) == ms(ahead.ts)  # released
    rk = f.mt("rk", at=100, msisdn="13800000001")  # 500 s behind: late against e0 alone
    s1.on_mt(
        "r0", 0, 2, rk, verdict(rk, book), FloodState(), T0_MS + 32_000, DETECTED, False, "m1.0"
    )
    assert s1.late == 0
    assert s1.watermark(0, T0_MS + 32_000) == ms(rk.ts)  # rejoined at its record
    s1.on_marker("r0", "m1.0", 0, 3, ms(rk.ts) + 1_000, T0_MS + 33_000)
    assert s1.watermark(0, T0_MS + 90_000) == ms(rk.ts) + 1_000  # joined: silence holds


def test_an_origin_that_never_read_a_record_can_declare_itself_idle(f: Factory) -> None:
    """A restarted worker owning a quiet partition has no event time to send: its idle
    marker without one lets the expected source stop holding the watermark after idle_ms."""
    s1 = _marker_stage1(lag_says_caught_up=False)
    s1.on_progress("e0", 0, T0_MS + 5_000, T0_MS)
    assert s1.watermark(0, T0_MS + 60_000) is None  # m1.0 expected, never reported: held
    s1.on_marker("r0", "m1.0", 0, 0, None, T0_MS + 60_000, idle=True)
    assert s1.watermark(0, T0_MS + 60_000) == T0_MS + 5_000
    ((_q, beat), *_rest) = s1.heartbeat(T0_MS + 60_000)
    assert beat.watermark == T0_MS + 5_000 and beat.caught_up
