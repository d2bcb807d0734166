"""Stage 2 of the traffic rules: volume.spike (quota and learned baseline), port.sublet,
complaint.rate, exactly-once application of partials, window closing and state round trips."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from smsmon.contract.models import Alert, Severity
from smsmon.rules.aggregate import Aggregator, Progress, SubjectState
from smsmon.rules.traffic import (
    COMPLAINT_PREFIX,
    DIM_ACCOUNT,
    DIM_PORT,
    DIM_SIGNATURE,
    SET_ACCOUNT,
    SET_IP,
    SET_SIGNATURE,
    SUBLET_FOREIGN,
    SUBLET_TOTAL,
    SUBLET_UNREGISTERED,
    Partial,
    TrafficConfig,
    aggregate_alert_id,
)
from smsmon.rules.windows import Windowing

pytestmark = pytest.mark.unit

T = 1_714_528_800_000  # 2024-05-01T02:00:00Z: a whole hour, so minute and hour windows align
MIN = 60_000
HOUR = 3_600_000
PORT = "10690001"
DETECTED = dt.datetime(2024, 5, 1, 3, 0, tzinfo=dt.UTC)
Key = tuple[str, str, int]


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


class Store:
    """In-memory SubjectStore."""

    def __init__(self) -> None:
        self.states: dict[str, SubjectState] = {}

    def get(self, key: str) -> SubjectState:
        return self.states.get(key) or SubjectState()

    def put(self, key: str, state: SubjectState) -> None:
        self.states[key] = state


class Stage2:
    """One stage-2 partition fed by one source; hands out consecutive offsets; wall time 0."""

    def __init__(
        self,
        cfg: TrafficConfig | None = None,
        quotas: dict[str, int] | None = None,
        source: str = "ev-0",
    ) -> None:
        self.cfg = cfg or TrafficConfig(complaint_per_million=2_000.0)  # pinned for the tests
        self.quotas = quotas or {}
        self.agg = Aggregator(self.cfg, lambda p: ("ENT_A", self.quotas.get(p)))
        self.progress = Progress()
        self.store = Store()
        self.source = source
        self.next = 0
        self.wm: int | None = None

    def partial(
        self,
        counts: dict[Key, int] | None = None,
        sets: dict[Key, set[str]] | None = None,
        watermark: int | None = None,
    ) -> Partial:
        """A partial covering the next offsets, one per counted message (at least one)."""
        lo = self.next
        offs: dict[Key, list[int]] = {}
        for key, n in (counts or {}).items():
            offs[key] = list(range(self.next, self.next + n))
            self.next += n
        self.next = max(self.next, lo + 1)
        if watermark is not None:
            self.wm = watermark
        return Partial(self.source, 0, lo, self.next - 1, self.wm, offs, dict(sets or {}))

    def apply(self, p: Partial) -> list[Alert]:
        return self.agg.apply(p, self.progress, self.store, 0, DETECTED)

    def send(
        self,
        counts: dict[Key, int] | None = None,
        sets: dict[Key, set[str]] | None = None,
        watermark: int | None = None,
    ) -> list[Alert]:
        return self.apply(self.partial(counts, sets, watermark))

    def tick(self, watermark: int) -> list[Alert]:
        """Advance time with an empty partial, then close what it passed."""
        out = self.send(watermark=watermark)
        return out + self.agg.close(self.progress, self.store, 0, DETECTED)

    def minutes(self, counts: list[int], dim: str = DIM_PORT, subject: str = PORT) -> list[Alert]:
        """Minute i gets counts[i] messages; each minute is closed before the next is sent."""
        out: list[Alert] = []
        for i, n in enumerate(counts):
            w = T + i * MIN
            out += self.send({(dim, subject, w): n}, watermark=w)
            out += self.tick(w + MIN + self.cfg.volume.grace_ms)
        return out

    def state(self, dim: str = DIM_PORT, subject: str = PORT) -> SubjectState:
        return self.store.get(f"{dim}|{subject}")


SPIKE = TrafficConfig(spike_warmup_windows=3, spike_min_count=20, spike_factor=3.0)


def spikes(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.rule == "volume.spike"]


# --- counting and closing ----------------------------------------------------------------


def test_counts_accumulate_until_the_window_closes_after_grace() -> None:
    """A window stays open until watermark - grace passes its end, then is judged and forgotten."""
    s = Stage2()
    s.send({(DIM_PORT, PORT, T): 3}, watermark=T)
    s.send({(DIM_PORT, PORT, T): 4}, watermark=T + 30_000)
    assert s.state().volume[T][0] == 7
    s.tick(T + MIN + 9_999)
    assert T in s.state().volume
    s.tick(T + MIN + 10_000)
    st = s.state()
    assert T not in st.volume
    assert st.windows_seen == 1 and st.ewma == 7


def test_close_without_a_watermark_does_nothing() -> None:
    """Before any watermark is known nothing can close."""
    s = Stage2()
    s.send({(DIM_PORT, PORT, T): 3})
    assert s.agg.close(s.progress, s.store, 0, DETECTED) == []
    assert s.state().volume[T][0] == 3


def test_windows_close_oldest_first_and_each_once() -> None:
    """Several due windows are judged in window order; a second close judges nothing again."""
    cfg = TrafficConfig(spike_warmup_windows=1, spike_min_count=5, spike_factor=2.0)
    s = Stage2(cfg)
    s.minutes([5])  # warm-up, baseline 5
    counts = {(DIM_PORT, PORT, T + i * MIN): n for i, n in ((1, 11), (2, 40), (3, 100))}
    s.send(counts, watermark=T + MIN)
    alerts = s.tick(T + 10 * MIN)
    assert [a.window_start for a in spikes(alerts)] == [utc(T + i * MIN) for i in (1, 2, 3)]
    assert s.agg.close(s.progress, s.store, 0, DETECTED) == []
    # the three alerting windows were judged once each and not learned from
    assert s.state().windows_seen == 1 and s.state().ewma == 5.0


def test_partial_for_a_closed_window_is_late_and_dropped() -> None:
    """Counts for a window that has already closed are counted as late, not reopened."""
    s = Stage2()
    s.send({(DIM_PORT, PORT, T): 3}, watermark=T)
    s.tick(T + 5 * MIN)
    s.send({(DIM_PORT, PORT, T): 2, (COMPLAINT_PREFIX + DIM_PORT, PORT, T - HOUR): 1})
    assert s.agg.late == 3
    assert T not in s.state().volume and T - HOUR not in s.state().hours


def test_counts_within_grace_are_still_applied() -> None:
    """Counts for a window the watermark passed, but within grace, are added before it closes."""
    s = Stage2()
    s.send({(DIM_PORT, PORT, T): 3}, watermark=T + MIN + 5_000)
    s.send({(DIM_PORT, PORT, T): 2}, watermark=T + MIN + 9_000)
    assert s.agg.late == 0
    assert s.state().volume[T][0] == 5


def test_a_batch_spanning_several_windows_counts_all_of_them() -> None:
    """Stage 1 judged these events on time: stage 2 must count them, whatever the batch span."""
    s = Stage2()
    counts = {(DIM_PORT, PORT, T + i * MIN): 10 for i in range(5)}
    s.send(counts, watermark=T + 4 * MIN + 30_000)
    assert s.agg.late == 0
    assert sorted(s.state().volume) == [T + i * MIN for i in range(5)]


def test_a_closed_window_is_never_reopened_by_a_source_rejoining_behind() -> None:
    """Emit each window's verdict once: evidence arriving after the close is late, not re-fired."""
    cfg = TrafficConfig()
    agg = Aggregator(cfg, lambda p: ("ENT_A", None))
    progress, store = Progress(), Store()
    sw = T  # sublet window [T, T+5min)
    agg.apply(Partial("rk-1", 1, 0, 0, T), progress, store, 0, DETECTED)
    counts = {(SUBLET_TOTAL, PORT, sw): [0, 1], (SUBLET_UNREGISTERED, PORT, sw): [0, 1]}
    agg.apply(
        Partial("ev-0", 0, 0, 1, T + MIN, counts, sets={(SET_ACCOUNT, PORT, sw): {"x", "y"}}),
        progress,
        store,
        0,
        DETECTED,
    )
    # rk-1 goes quiet; ev-0 moves 20 minutes on and the sublet window closes, judged once
    agg.apply(Partial("ev-0", 0, 2, 2, T + 20 * MIN), progress, store, 40_000, DETECTED)
    first = agg.close(progress, store, 40_000, DETECTED)
    assert [a.rule for a in first] == ["port.sublet"]
    assert sw not in store.get(f"port|{PORT}").sublet
    # rk-1 comes back with more evidence for the closed window
    again = agg.apply(
        Partial("rk-1", 1, 1, 2, T + MIN, sets={(SET_ACCOUNT, PORT, sw): {"u", "v"}}),
        progress,
        store,
        41_000,
        DETECTED,
    )
    again += agg.close(progress, store, 41_000, DETECTED)
    assert again == []
    assert sw not in store.get(f"port|{PORT}").sublet


# --- volume.spike: learned baseline --------------------------------------------------------


def test_no_baseline_spike_before_warm_up() -> None:
    """Until spike_warmup_windows windows were seen, a huge window raises no baseline spike."""
    s = Stage2(SPIKE)
    alerts = s.minutes([5, 5, 500])  # third window: only two windows seen before it
    assert spikes(alerts) == []
    assert s.state().windows_seen == 3


def test_spike_after_warm_up_with_evidence() -> None:
    """After warm-up, count >= min_count and > factor x baseline fires one alert with evidence."""
    s = Stage2(SPIKE)
    alerts = s.minutes([10, 10, 10, 100])
    (a,) = spikes(alerts)
    start = T + 3 * MIN
    assert a.rule == "volume.spike" and a.severity is Severity.MAJOR
    assert a.subject_type == "port" and a.subject == PORT and a.port == PORT
    assert a.enterprise == "ENT_A"
    assert a.event_id == ""
    assert a.window_start == utc(start) and a.window_end == utc(start + MIN)
    assert a.observed == 100 and a.baseline == 10 and a.threshold == 30
    assert a.alert_id == aggregate_alert_id("volume.spike", "port", PORT, start)


@pytest.mark.parametrize(
    ("dim", "subject"), [(DIM_PORT, PORT), (DIM_SIGNATURE, "taobao"), (DIM_ACCOUNT, "acc_a")]
)
def test_spike_for_each_subject_type(dim: str, subject: str) -> None:
    """Ports, signatures and accounts each learn their own baseline and alert as themselves."""
    s = Stage2(SPIKE)
    (a,) = spikes(s.minutes([10, 10, 10, 100], dim, subject))
    assert a.subject_type == dim and a.subject == subject
    assert getattr(a, dim) == subject
    assert a.alert_id == aggregate_alert_id("volume.spike", dim, subject, T + 3 * MIN)


def test_no_spike_below_the_factor_or_below_the_minimum_count() -> None:
    """Both conditions are needed: above factor x baseline and at least the minimum count."""
    s = Stage2(SPIKE)
    assert spikes(s.minutes([10, 10, 10, 30])) == []  # = 3 x baseline, not above it
    s = Stage2(SPIKE)
    assert spikes(s.minutes([1, 1, 1, 19])) == []  # 19 x baseline, but below min_count 20
    s = Stage2(SPIKE)
    assert len(spikes(s.minutes([1, 1, 1, 20]))) == 1  # min_count itself is enough


def test_steady_traffic_with_noise_raises_no_spike() -> None:
    """A stable subject with ordinary fluctuation never alerts (false-alarm guard)."""
    s = Stage2(SPIKE)
    counts = [40, 55, 38, 61, 47, 52, 44, 70, 35, 58] * 3
    assert spikes(s.minutes(counts)) == []


def test_a_spike_alerts_once_per_window_not_once_per_message() -> None:
    """Many partials inside one spiking window still give one alert for that window."""
    s = Stage2(SPIKE)
    s.minutes([10, 10, 10])
    out: list[Alert] = []
    for i in range(3, 5):
        w = T + i * MIN
        for _ in range(20):  # 20 partials of 10 messages each
            out += s.send({(DIM_PORT, PORT, w): 10}, watermark=w)
        out += s.tick(w + MIN + SPIKE.volume.grace_ms)
    got = spikes(out)
    assert [a.window_start for a in got] == [utc(T + 3 * MIN), utc(T + 4 * MIN)]
    assert len({a.alert_id for a in got}) == 2


def test_a_short_sustained_spike_alerts_in_each_of_its_windows() -> None:
    """A three-minute spike gives one alert per minute, each with its own id."""
    s = Stage2(TrafficConfig(spike_warmup_windows=5))
    alerts = spikes(s.minutes([10] * 5 + [200] * 3 + [10]))
    assert [a.window_start for a in alerts] == [utc(T + i * MIN) for i in (5, 6, 7)]
    assert len({a.alert_id for a in alerts}) == 3


def test_a_ten_minute_spike_alerts_in_every_window_while_it_lasts() -> None:
    """Issue: a spike that lasts ten minutes gives one alert per window while it lasts."""
    s = Stage2(TrafficConfig(spike_warmup_windows=5))
    alerts = spikes(s.minutes([10] * 5 + [200] * 10))
    assert len(alerts) == 10
    assert len({a.alert_id for a in alerts}) == 10


def test_baseline_learns_a_new_normal_after_a_spike() -> None:
    """Learning continues from every window, so traffic returning to normal does not alert."""
    s = Stage2(SPIKE)
    alerts = spikes(s.minutes([10, 10, 10, 100, 10, 10, 10, 10]))
    assert len(alerts) == 1


# --- volume.spike: port quota --------------------------------------------------------------


def test_quota_crossing_fires_immediately_and_once_per_window() -> None:
    """Exceeding max_per_minute fires at once (no close needed), once however far it goes."""
    s = Stage2(quotas={PORT: 50})
    assert s.send({(DIM_PORT, PORT, T): 50}, watermark=T) == []  # at the quota: allowed
    (a,) = s.send({(DIM_PORT, PORT, T): 1}, watermark=T)
    assert a.rule == "volume.spike" and a.observed == 51 and a.threshold == 50
    assert a.baseline is None
    assert a.alert_id == aggregate_alert_id("volume.spike", "port", PORT, T)
    assert s.send({(DIM_PORT, PORT, T): 500}) == []
    assert s.tick(T + 10 * MIN) == []  # closing the window adds nothing for it
    # the alert is the same however the window's messages were cut into partials
    (c,) = Stage2(quotas={PORT: 50}).send({(DIM_PORT, PORT, T): 80}, watermark=T)
    assert (c.observed, c.detail, c.alert_id) == (a.observed, a.detail, a.alert_id)
    (b,) = s.send({(DIM_PORT, PORT, T + 10 * MIN): 51}, watermark=T + 10 * MIN)
    assert b.window_start == utc(T + 10 * MIN) and b.alert_id != a.alert_id


def test_quota_applies_during_warm_up() -> None:
    """The quota needs no history: it fires in the very first window."""
    s = Stage2(TrafficConfig(spike_warmup_windows=100), quotas={PORT: 5})
    assert len(spikes(s.minutes([6]))) == 1


def test_quota_window_is_not_judged_again_against_the_baseline() -> None:
    """A window that already fired on the quota gives no second volume.spike when it closes."""
    s = Stage2(SPIKE, quotas={PORT: 50})
    alerts = spikes(s.minutes([10, 10, 10, 200]))
    assert [a.baseline for a in alerts] == [None]


def test_quota_is_only_a_port_property() -> None:
    """A signature or account subject is not held to a port's quota."""
    s = Stage2(quotas={"taobao": 5, "acc_a": 5})
    counts = {(DIM_SIGNATURE, "taobao", T): 100, (DIM_ACCOUNT, "acc_a", T): 100}
    assert s.send(counts, watermark=T) == []


# --- port.sublet ---------------------------------------------------------------------------


def _sublet_counts(total: int, foreign: int = 0, unregistered: int = 0) -> dict[Key, int]:
    return {
        (SUBLET_TOTAL, PORT, T): total,
        (SUBLET_FOREIGN, PORT, T): foreign,
        (SUBLET_UNREGISTERED, PORT, T): unregistered,
    }


def _close_sublet(s: Stage2, start: int = T) -> list[Alert]:
    return [a for a in s.tick(start + 5 * MIN + 10_000) if a.rule == "port.sublet"]


@pytest.mark.parametrize(("kind", "limit"), [(SET_SIGNATURE, 3), (SET_ACCOUNT, 2), (SET_IP, 3)])
def test_sublet_fires_at_close_when_a_distinct_count_reaches_its_limit(
    kind: str, limit: int
) -> None:
    """Foreign signatures, unregistered accounts or their IPs: judged when the window closes,
    alerting at the limit and not below."""
    below, at = Stage2(), Stage2()
    counts = _sublet_counts(20, foreign=10, unregistered=10)
    below.send(counts, sets={(kind, PORT, T): {f"v{i}" for i in range(limit - 1)}}, watermark=T)
    assert _close_sublet(below) == []
    assert (
        at.send(counts, sets={(kind, PORT, T): {f"v{i}" for i in range(limit)}}, watermark=T) == []
    )
    (a,) = _close_sublet(at)
    assert a.severity is Severity.CRITICAL
    assert a.subject_type == "port" and a.subject == PORT and a.port == PORT
    assert a.observed == limit
    assert a.window_start == utc(T) and a.window_end == utc(T + 5 * MIN)
    assert a.alert_id == aggregate_alert_id("port.sublet", "port", PORT, T)


def test_sublet_needs_the_evidence_to_carry_a_share_of_the_port_traffic() -> None:
    """Stray per-message violations (under 10% of a busy port's messages) are not a resale."""
    s = Stage2()
    sigs = {(SET_SIGNATURE, PORT, T): {"a", "b", "c", "d"}}
    s.send(_sublet_counts(1000, foreign=40), sets=sigs, watermark=T)
    assert _close_sublet(s) == []
    s2 = Stage2()
    s2.send(_sublet_counts(1000, foreign=150), sets=sigs, watermark=T)
    assert len(_close_sublet(s2)) == 1


def test_sublet_values_are_distinct_across_partials() -> None:
    """The same value reported by several partials counts once."""
    s = Stage2()
    for _ in range(5):
        s.send(
            _sublet_counts(4, foreign=4), sets={(SET_SIGNATURE, PORT, T): {"a", "b"}}, watermark=T
        )
    assert _close_sublet(s) == []


def test_sublet_gives_one_alert_per_window_and_again_in_the_next() -> None:
    """More evidence in the same window gives one alert at close; the next window alerts anew."""
    s = Stage2()
    s.send(
        _sublet_counts(10, unregistered=8), sets={(SET_ACCOUNT, PORT, T): {"x", "y"}}, watermark=T
    )
    s.send(sets={(SET_ACCOUNT, PORT, T): {"z"}, (SET_IP, PORT, T): {"1", "2", "3"}})
    first = _close_sublet(s)
    assert len(first) == 1 and s.state().sublet == {}
    t2 = T + 5 * MIN
    nxt_counts = {(SUBLET_TOTAL, PORT, t2): 10, (SUBLET_UNREGISTERED, PORT, t2): 8}
    s.send(nxt_counts, sets={(SET_ACCOUNT, PORT, t2): {"x", "y"}})
    nxt = _close_sublet(s, t2)
    assert len(nxt) == 1 and nxt[0].alert_id != first[0].alert_id


def test_sublet_evidence_for_a_closed_window_is_dropped() -> None:
    """Evidence arriving after its window closed does not fire or reopen it."""
    s = Stage2()
    s.send(sets={(SET_ACCOUNT, PORT, T): {"x"}}, watermark=T)
    s.tick(T + 20 * MIN)
    assert s.send(sets={(SET_ACCOUNT, PORT, T): {"y", "z"}}) == []
    assert s.state().sublet == {}


# --- complaint.rate ------------------------------------------------------------------------


def _complaints(s: Stage2, sent: int, complaints: int, dim: str = DIM_PORT) -> list[Alert]:
    """Sends in minute 5 and complaints in minute 6 of the hour at T; the alerts of
    complaint.rate until the hour has closed (an early firing included)."""
    subject = PORT if dim == DIM_PORT else "taobao"
    got = s.send({(dim, subject, T + 5 * MIN): sent}, watermark=T + 5 * MIN)
    got += s.send({(COMPLAINT_PREFIX + dim, subject, T + 6 * MIN): complaints})
    got += s.tick(T + 7 * MIN + 9_999)  # minute 6 not folded yet (10 s grace)
    assert [a for a in got if a.rule == "complaint.rate"] == []
    got += s.tick(T + 7 * MIN + 10_000)
    got += s.tick(T + HOUR + 10_000)
    return [a for a in got if a.rule == "complaint.rate"]


def test_complaint_rate_fires_at_count_and_rate() -> None:
    """5 complaints against 1,000 messages (5,000 per million) fire as soon as the minute
    that crossed is folded (early), once: the hour's close does not fire it again."""
    (a,) = _complaints(Stage2(), sent=1_000, complaints=5)
    assert a.subject_type == "port" and a.subject == PORT and a.port == PORT
    assert a.observed == 5_000 and a.threshold == 2_000
    assert a.window_start == utc(T) and a.window_end == utc(T + HOUR)
    assert a.ts == utc(T + 7 * MIN)  # judged up to the end of minute 6
    assert "fired early, 7 of its 60 minutes judged" in a.detail
    assert a.alert_id == aggregate_alert_id("complaint.rate", "port", PORT, T)


def test_an_early_judgement_counts_only_the_minutes_the_watermark_passed() -> None:
    """A wave builds up over minutes 10-14 against sends of minutes 0-14: the alert fires at
    the first folded minute where both thresholds hold, with the counts up to it."""
    s = Stage2()
    got: list[Alert] = []
    for m in range(15):
        got += s.send({(DIM_PORT, PORT, T + m * MIN): 100}, watermark=T + m * MIN)
        if m >= 10:
            got += s.send({(COMPLAINT_PREFIX + DIM_PORT, PORT, T + m * MIN): 1})
    got += s.tick(T + 20 * MIN)
    (a,) = [x for x in got if x.rule == "complaint.rate"]
    # minute 14 brings the 5th complaint: 5 against 1,500 sends (3,333 per million)
    assert a.ts == utc(T + 15 * MIN) and a.observed == 3_333.3
    assert [x for x in s.tick(T + HOUR + 10_000) if x.rule == "complaint.rate"] == []


def test_a_window_that_crosses_only_with_late_complaints_is_judged_at_its_close() -> None:
    """Complaints arriving after their minute was folded count at the hour's close only."""
    s = Stage2()
    s.send({(DIM_PORT, PORT, T + 5 * MIN): 1_000}, watermark=T + 5 * MIN)
    s.send({(COMPLAINT_PREFIX + DIM_PORT, PORT, T + 6 * MIN): 4})
    assert [a for a in s.tick(T + 30 * MIN) if a.rule == "complaint.rate"] == []
    s.send({(COMPLAINT_PREFIX + DIM_PORT, PORT, T + 6 * MIN): 1})  # after minute 6 folded
    assert [a for a in s.tick(T + 50 * MIN) if a.rule == "complaint.rate"] == []
    (a,) = [a for a in s.tick(T + HOUR + 10_000) if a.rule == "complaint.rate"]
    assert a.ts == utc(T + HOUR) and a.observed == 5_000 and "early" not in a.detail


def test_early_firing_is_the_same_whatever_the_partials_interleave() -> None:
    """Stage 2 judges only folded minutes: the same traffic cut into partials differently
    (one partial per record, or all at once) gives the same alert, byte for byte."""

    def run(one_by_one: bool) -> list[str]:
        s = Stage2()
        items: list[tuple[Key, int]] = [((DIM_PORT, PORT, T + m * MIN), 50) for m in range(8)]
        items += [((COMPLAINT_PREFIX + DIM_PORT, PORT, T + m * MIN), 2) for m in (3, 5, 6)]
        got: list[Alert] = []
        if one_by_one:
            for key, n in items:
                for _ in range(n):
                    got += s.send({key: 1}, watermark=T + 8 * MIN)
        else:
            got += s.send(dict(items), watermark=T + 8 * MIN)
        got += s.tick(T + 9 * MIN) + s.tick(T + HOUR + 10_000)
        return [a.model_dump_json(exclude={"detected_at"}) for a in got]

    assert run(True) == run(False) and len(run(False)) == 1


def test_complaint_rate_on_a_signature() -> None:
    """Signatures are judged the same way as ports."""
    (a,) = _complaints(Stage2(), sent=1_000, complaints=6, dim=DIM_SIGNATURE)
    assert a.subject_type == "signature" and a.signature == "taobao"


def test_complaint_rate_boundaries_are_inclusive() -> None:
    """ "Reach": exactly complaint_min complaints at exactly the rate limit fires."""
    assert len(_complaints(Stage2(), sent=2_500, complaints=5)) == 1  # 2,000 per million


def test_complaint_rate_does_not_fire_on_a_low_rate() -> None:
    """Many complaints against a large volume stay below the rate: no alert."""
    assert _complaints(Stage2(), sent=100_000, complaints=50) == []  # 500 per million


def test_complaint_rate_does_not_fire_below_the_minimum_count() -> None:
    """A high rate from too few complaints is not enough."""
    assert _complaints(Stage2(), sent=10, complaints=4) == []


# --- exactly-once application ---------------------------------------------------------------


def test_a_replayed_partial_is_not_counted_twice() -> None:
    """Applying the same partial again (after a restart) changes nothing and fires nothing."""
    s = Stage2(quotas={PORT: 10})
    p = s.partial({(DIM_PORT, PORT, T): 11}, watermark=T)
    assert len(s.apply(p)) == 1
    assert s.apply(p) == []
    assert s.apply(Partial.decode(p.encode())) == []
    assert s.state().volume[T] == [11, 1]


def test_an_overlapping_partial_counts_only_its_new_offsets() -> None:
    """A partial re-covering applied offsets (re-processed batch) only adds what is beyond them."""
    s = Stage2()
    s.apply(Partial("ev-0", 0, 0, 9, T, {(DIM_PORT, PORT, T): list(range(10))}))
    overlap = Partial(
        "ev-0",
        0,
        5,
        14,
        T,
        {
            (DIM_PORT, PORT, T): list(range(5, 15)),
            (COMPLAINT_PREFIX + DIM_PORT, PORT, T): [6, 12],
        },
    )
    s.apply(overlap)
    st = s.state()
    assert st.volume[T][0] == 15
    assert st.hours[T][:2] == [15, 1]
    assert s.progress.applied == {"ev-0": 14}


def test_offsets_are_tracked_per_source() -> None:
    """The same offset numbers from another source (the re-keying topic) are new records."""
    s = Stage2()
    s.apply(Partial("ev-0", 0, 0, 4, T, {(DIM_PORT, PORT, T): list(range(5))}))
    s.apply(Partial("rk-0", 0, 0, 4, T, {(DIM_PORT, PORT, T): list(range(5))}))
    assert s.state().volume[T][0] == 10


def test_alerts_do_not_depend_on_how_partials_interleave() -> None:
    """The same counts split and ordered differently give the same alert ids."""
    cfg = TrafficConfig(spike_warmup_windows=2, spike_min_count=10, spike_factor=2.0)
    minutes = [5, 6, 40, 5, 30]
    results = []
    for sources in itertools.permutations(("a", "b", "c")):
        agg = Aggregator(cfg, lambda p: ("ENT_A", None))
        progress, store = Progress(), Store()
        alerts: list[Alert] = []
        for i, n in enumerate(minutes):
            w = T + i * MIN
            share = [n // 3, n // 3, n - 2 * (n // 3)]
            for k, src in enumerate(sources):
                offs = list(range(i * 100, i * 100 + share[k]))
                p = Partial(src, k, i * 100, i * 100 + 99, w, {(DIM_PORT, PORT, w): offs})
                alerts += agg.apply(p, progress, store, 0, DETECTED)
            for k, src in enumerate(sources):
                end = Partial(src, k, i * 100 + 100, i * 100 + 100, w + MIN + 10_000)
                alerts += agg.apply(end, progress, store, 0, DETECTED)
            alerts += agg.close(progress, store, 0, DETECTED)
        results.append(sorted(a.alert_id for a in alerts))
    expected = sorted(aggregate_alert_id("volume.spike", "port", PORT, T + i * MIN) for i in (2, 4))
    assert results[0] == expected
    assert all(r == results[0] for r in results)


def test_slowest_logical_partition_holds_windows_open() -> None:
    """Stage 2 closes a window only when every (active) stage-1 partition has passed it."""
    cfg = TrafficConfig()
    agg = Aggregator(cfg, lambda p: ("ENT_A", None))
    progress, store = Progress(), Store()
    agg.apply(
        Partial("ev-0", 0, 0, 2, T, {(DIM_PORT, PORT, T): [0, 1, 2]}), progress, store, 0, DETECTED
    )
    agg.apply(Partial("ev-1", 1, 0, 0, T + 10 * MIN), progress, store, 0, DETECTED)
    agg.close(progress, store, 0, DETECTED)
    assert T in store.get(f"port|{PORT}").volume
    agg.apply(Partial("ev-0", 0, 3, 3, T + 10 * MIN), progress, store, 0, DETECTED)
    agg.close(progress, store, 0, DETECTED)
    assert T not in store.get(f"port|{PORT}").volume


# --- state round trips and restart -----------------------------------------------------------


def test_subject_state_round_trips() -> None:
    """A subject's open windows, fired marks and baseline survive encode/decode."""
    st = SubjectState(
        volume={T: [12, 1], T + MIN: [3, 0]},
        sublet={T: {SET_ACCOUNT: ["x", "y"], SET_IP: ["1.1.1.1"], "n": [9, 0, 4]}},
        hours={T: [15, 2, 10, 1, 0]},
        cmin={T + MIN: 1},
        smin={T: 10},
        ewma=7.25,
        windows_seen=11,
        enterprise="ENT_A",
        quota=50,
    )
    assert SubjectState.decode(st.encode()) == st
    assert SubjectState.decode(None) == SubjectState()
    assert SubjectState().empty() and not st.empty()
    # a value written before early firing: hours as [sent, complaints]
    old = b'{"v":{},"s":{},"h":{"5":[15,2]},"e":0.0,"n":0,"ent":null,"q":null}'
    assert SubjectState.decode(old).hours == {5: [15, 2, 0, 0, 0]}


def test_progress_round_trips_applied_offsets_and_watermarks() -> None:
    """Applied offsets per source and watermarks per logical partition survive a restart."""
    p = Progress()
    p.applied = {"ev-0": 41, "rk-0": 7}
    p.watermarks.advance(0, T, 0)
    p.watermarks.advance(3, T + MIN, 0)
    q = Progress.decode(p.encode(), idle_ms=30_000)
    assert q.applied == p.applied
    assert q.watermarks.event_ms == {0: T, 3: T + MIN}
    assert q.watermarks.combined(0) == T
    assert Progress.decode(None, 30_000).applied == {}


def test_restart_rebuilds_the_index_and_closes_restored_windows() -> None:
    """After a restart, the open-window index is rebuilt from states and windows still close."""
    cfg = TrafficConfig(spike_warmup_windows=1, spike_min_count=10, spike_factor=2.0)
    s = Stage2(cfg, quotas={})
    s.minutes([10])
    s.send({(DIM_PORT, PORT, T + MIN): 50, (COMPLAINT_PREFIX + DIM_PORT, PORT, T): 1})
    # restart: states and progress come back from their changelogs, the index does not
    progress = Progress.decode(s.progress.encode(), cfg.idle_ms)
    store = Store()
    for k, st in s.store.states.items():
        store.put(k, SubjectState.decode(st.encode()))
    agg = Aggregator(cfg, lambda p: ("ENT_A", None))
    agg.rebuild_index(progress, store.states.items())
    assert f"v|{T + 2 * MIN}" in progress.open_index
    assert f"h|{T + HOUR}" in progress.open_index
    # replaying the partial already applied before the crash is ignored
    replay = Partial(
        "ev-0", 0, s.next - 2, s.next - 1, None, {(DIM_PORT, PORT, T + MIN): [s.next - 2]}
    )
    assert agg.apply(replay, progress, store, 0, DETECTED) == []
    agg.apply(Partial("ev-0", 0, s.next, s.next, T + 2 * HOUR), progress, store, 0, DETECTED)
    alerts = agg.close(progress, store, 0, DETECTED)
    assert [a.window_start for a in spikes(alerts)] == [utc(T + MIN)]
    assert store.get(f"port|{PORT}").volume == {}
    assert store.get(f"port|{PORT}").hours == {}


def test_complaint_window_grace_is_its_own() -> None:
    """Each rule closes its windows with its own grace (here a long complaint grace, which
    the early judgement of the hour's minutes keeps too)."""
    cfg = TrafficConfig(complaint=Windowing(HOUR, 5 * MIN))
    s = Stage2(cfg)
    s.send({(DIM_PORT, PORT, T): 100}, watermark=T)
    s.send({(COMPLAINT_PREFIX + DIM_PORT, PORT, T + 50 * MIN): 4})
    assert all(a.rule != "complaint.rate" for a in s.tick(T + HOUR + 4 * MIN))
    assert T in s.state().hours
    late_ok = s.send({(COMPLAINT_PREFIX + DIM_PORT, PORT, T): 1})
    assert late_ok == [] and s.agg.late == 0
    (a,) = [x for x in s.tick(T + HOUR + 5 * MIN) if x.rule == "complaint.rate"]
    assert a.observed == 50_000  # 5 complaints against 100 messages, judged at the close
    # the minutes of the next hour fold with the same 5-minute grace
    s.send({(DIM_PORT, PORT, T + HOUR + 10 * MIN): 100}, watermark=T + HOUR + 10 * MIN)
    s.send({(COMPLAINT_PREFIX + DIM_PORT, PORT, T + HOUR + 10 * MIN): 5})
    early = T + HOUR + 11 * MIN
    assert all(x.rule != "complaint.rate" for x in s.tick(early + 5 * MIN - 1))
    (b,) = [x for x in s.tick(early + 5 * MIN) if x.rule == "complaint.rate"]
    assert b.ts == utc(early) and b.window_start == utc(T + HOUR)
