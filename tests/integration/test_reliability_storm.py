"""The fault storm of issue 16: a violation-heavy stream into one worker, SIGKILLed and
restarted on its data dir three times while records are provably uncommitted, a second worker
that joins (rebalance) and is SIGKILLed, and one broker restart; at the end the published
answer must equal the fault-free one, exactly:

- per-message alerts as (event_id, rule) pairs, with the contract's alert ids;
- aggregate (windowed) alerts by alert_id, and each one's content (all but detected_at);
- consent revocations published on sms.ref.consent, as (pair, ts).

The fault-free answer is the same records through the same rules in-process
(`offline_expectation`, the audit's OfflineRunner, which test_traffic_detection shows equal to
a fault-free live run). Repeats of an alert id are allowed (at least once); a missing, an
invented or a changed alert or revocation is not. Alerts and revocations are read
read_committed. When anything differs, the counters of every worker generation and the tail
of each one's log are printed. Helpers: reliability.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.traffic import (
    REPEAT_FRACTION,
    SPAN_S,
    calibrated_rate,
    simulation,
    span_start,
    take_records,
    with_repeats,
)
from smsmon.contract.models import Alert
from smsmon.rules.catalog import ALERT_NAMESPACE
from tests.integration.conftest import SECRET, Broker, Env, Worker, wait_ready, wait_until
from tests.integration.reliability import (
    Record,
    Row,
    counter_lines,
    env_on,
    group_positions,
    local_broker,
    offline_expectation,
    produce_reference,
    produce_rows,
    read_records,
    storm_input_topics,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SEED = 16
RECORDS = 60_000  # events and complaints; about 2 % more are repeated event ids
SUBSCRIBERS = 20_000
# Faust reads BROKER_SESSION_TIMEOUT: how long the group waits for a SIGKILLed member (60 s
# by default); 10 s keeps four member deaths within the test's time.
FAST_SESSION = {"BROKER_SESSION_TIMEOUT": "10"}
KILL_AT = (0.10, 0.25, 0.40)  # committed share of sms.events at each kill of the first worker
TRIES = 3  # kills per stage until one shows outputs of uncommitted records
# no retry past this committed share: the second worker needs input left, and a worker
# restarted at 0.55 had committed all of the first 1 - HELD before the retry's kill (CI at
# bcc1c07: the kill then found only re-keyed records uncommitted)
RETRY_UNTIL = 0.5
HELD = 0.25  # share of sms.events produced only once the second worker joined


@dataclass
class Kill:
    """What one SIGKILL left behind."""

    label: str
    progress: float  # committed share of sms.events at the kill
    uncommitted: int  # input records past the group's committed offsets at the kill
    shown: int  # alerts the victim's generation published for events not yet committed
    committed: dict[int, int] = field(repr=False, default_factory=dict)  # sms.events offsets


@dataclass
class Storm:
    env: Env
    broker: Broker
    first: dict[str, tuple[int, int]]  # event_id -> (partition, offset) of its first copy
    events: int
    kills: list[Kill] = field(default_factory=list)
    generations: list[tuple[str, str, str]] = field(default_factory=list)  # name, metrics, log
    alerts_end: dict[int, int] = field(default_factory=dict)  # alerts read so far, per partition
    t0: float = field(default_factory=time.monotonic)

    def produce(self, rows: list[Row]) -> None:
        """Produce events in order; keep where the first copy of each event id landed."""
        placed = produce_rows(self.env.bootstrap, self.env.topic("sms.events"), rows)
        for (_, value), where in zip(rows, placed, strict=True):
            self.first.setdefault(json.loads(value or b"{}")["event_id"], where)
        print(f"[{time.monotonic() - self.t0:6.1f}s] produced {len(rows):,} events")

    def progress(self) -> float:
        pos = group_positions(self.env, [self.env.topic("sms.events")])
        return sum(c for c, _ in pos.values()) / self.events

    def wait_progress(self, share: float, workers: list[Worker], timeout: float = 240) -> float:
        return float(
            wait_for(
                workers,
                lambda: (p := self.progress()) >= share and max(p, 1e-9),
                timeout,
                f"{share:.0%} of sms.events committed",
                every=0.1,
            )
        )

    def wait_busy(
        self,
        victim: Worker,
        share: float,
        others: list[Worker] | tuple[()] = (),
        open_txn: bool = True,
    ) -> None:
        """Until `share` of sms.events is committed and then `victim` has published another
        200 alerts: a commit just moved the progress, so the kill lands between two commits
        of a worker that is publishing outputs of records past the committed offsets."""
        self.wait_progress(share, [victim, *others])
        before = victim.sample("smsmon_alerts_total")
        wait_for(
            [victim, *others],
            lambda: victim.sample("smsmon_alerts_total") >= before + 200,
            120,
            f"{victim.name} publishing alerts",
            every=0.05,
        )
        if open_txn:
            self.wait_open_transaction(2.0)

    def wait_open_transaction(self, timeout: float) -> bool:
        """Until a transaction with alerts in it is open (an alerts partition's last stable
        offset, what a read_committed reader may read up to, is below its end), for at most
        `timeout` seconds: a kill then leaves output of uncommitted records in an aborted
        transaction, the replay this test is about. A transaction is open for tens of
        milliseconds per batch, so a kill at a random instant often misses it."""
        from kafka import KafkaConsumer, TopicPartition

        topic = self.env.topic("sms.alerts")
        committed = KafkaConsumer(
            bootstrap_servers=self.env.bootstrap, isolation_level="read_committed"
        )
        uncommitted = KafkaConsumer(bootstrap_servers=self.env.bootstrap)
        try:
            tps = [TopicPartition(topic, p) for p in committed.partitions_for_topic(topic) or ()]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                stable = committed.end_offsets(tps)
                ends = uncommitted.end_offsets(tps)
                if any(stable[tp] < ends[tp] for tp in tps):
                    return True
            return False
        finally:
            committed.close()
            uncommitted.close()

    def where(self, v: Verdict) -> str:
        """Where the events of missing and invented per-message alerts were in the stream:
        per generation whose committed range holds them (gen i: committed between kill i-1
        and kill i), and whether the event has no alert at all."""
        bounds = [k.committed for k in self.kills if k.committed]

        def generation(eid: str) -> str:
            p, o = self.first[eid]
            for i, c in enumerate(bounds):
                if o < c.get(p, 0):
                    return f"range {i + 1} ({self.kills[i].label})"
            return "after the last kill"

        lines = []
        for what, pairs in (("missing", v.missing_pairs), ("invented", v.invented_pairs)):
            ids = {e for e, _ in pairs}
            bare = len(ids - v.alerted)
            lines.append(
                f"{what}: {len(ids)} events ({bare} without any alert) by committed range "
                f"{dict(Counter(generation(e) for e in ids).most_common())}"
            )
        return "\n".join(lines)

    def retire(self, w: Worker, label: str) -> None:
        """Keep a generation's counters (before it dies) and, after, its log."""
        text = ""
        with contextlib.suppress(Exception):
            text = w.metrics_text()
        self.generations.append((label, text, ""))

    def keep_log(self, w: Worker, label: str) -> None:
        name, text, _ = self.generations[-1]
        self.generations[-1] = (name, text, w.copy_log(label).read_text(errors="replace"))

    def kill(self, w: Worker, label: str) -> Kill:
        """SIGKILL `w`, then prove that records were uncommitted at that moment: the group's
        committed offsets are below the input ends, and alerts published since the previous
        check belong to events at or past the committed offset of their partition (processed,
        their output out, their offset not committed)."""
        self.retire(w, label)
        w.kill()
        pos = group_positions(self.env, storm_input_topics(self.env))
        uncommitted = sum(max(0, end - c) for c, end in pos.values())
        events_topic = self.env.topic("sms.events")
        committed = {p: c for (t, p), (c, _) in pos.items() if t == events_topic}
        fresh = read_records(
            self.env.bootstrap,
            self.env.topic("sms.alerts"),
            committed_only=False,  # also outputs of a transaction the kill left open
            start=self.alerts_end,
        )
        shown = 0
        for r in fresh:
            self.alerts_end[r.partition] = max(self.alerts_end.get(r.partition, 0), r.offset + 1)
            eid = json.loads(r.value or b"{}").get("event_id")
            if eid and eid in self.first:
                p, o = self.first[eid]
                shown += o >= committed[p]
        self.keep_log(w, label)
        k = Kill(label, sum(committed.values()) / self.events, uncommitted, shown, committed)
        self.kills.append(k)
        print(f"[{time.monotonic() - self.t0:6.1f}s] kill {k}")
        # events in flight: on sms.events, or already re-keyed and not yet committed there
        rekey_topic = self.env.rekey_topic
        gap = {
            (t, p): end - c for (t, p), (c, end) in pos.items() if t in (events_topic, rekey_topic)
        }
        assert sum(gap.values()) > 0, f"{label}: every event committed at the kill: {pos}"
        return k

    def settled(self, workers: list[Worker], timeout: float = 300) -> None:
        """Committed offsets at the end of every topic the group consumes, transaction
        markers included: the worker commits past a partition's trailing markers once it is
        quiet (`Transactions.commit_tail`), so lag reaches 0 for every reader."""

        def done() -> bool:
            pos = group_positions(self.env, storm_input_topics(self.env))
            return all(c >= end for c, end in pos.values())

        try:
            wait_until(done, timeout, "the group to commit every input", every=1.0, workers=workers)
        except AssertionError:
            pos = group_positions(self.env, storm_input_topics(self.env))
            print("behind:", {k: (c, end) for k, (c, end) in pos.items() if c < end})
            raise

    def report(self, survivors: list[tuple[str, Worker]]) -> str:
        """Counters and log tail of every generation (the dead ones as kept at their kill)."""
        gens = list(self.generations)
        for label, w in survivors:
            text = ""
            with contextlib.suppress(Exception):
                text = w.metrics_text()
            gens.append((label, text, w.log()))
        parts = []
        for label, text, log in gens:
            parts.append(f"===== {label}: counters\n{counter_lines(text) or '(no page)'}")
            parts.append(f"===== {label}: log tail\n{log[-2500:]}")
        return "\n".join(parts)


# Fields of an aggregate alert compared but not asserted. None: an aggregate alert's whole
# content (its count too) is a function of the input. (Before issue 16 a quota volume.spike
# reported the count at the batch that crossed the quota, which depended on how partials
# were cut: 14 to 22 of 500 aggregate alerts differed even without faults.)
VOLATILE: frozenset[str] = frozenset()


def content(a: Alert) -> dict[str, Any]:
    """What an aggregate alert says, without the wall time it was decided at."""
    return a.model_dump(mode="json", exclude={"detected_at"})


def stable(c: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in c.items() if k not in VOLATILE}


def ts_ms(value: str) -> int:
    return int(dt.datetime.fromisoformat(value).timestamp() * 1000)


def build_input() -> tuple[Any, list[tuple[str, bytes, bytes]]]:
    start = span_start(dt.datetime.now(dt.UTC))
    rate = calibrated_rate(SEED, start, SPAN_S, RECORDS, SUBSCRIBERS, "heavy")
    sim = simulation(SEED, start, SPAN_S, rate, SUBSCRIBERS, "heavy")
    records, _ = take_records(sim, RECORDS)
    return sim, with_repeats(records, REPEAT_FRACTION["heavy"], SEED)


@pytest.mark.timeout(900)
def test_fault_storm_publishes_the_fault_free_answer(tmp_path: Path) -> None:
    """Three SIGKILLs of the only worker while records are uncommitted, a second worker that
    joins and is SIGKILLed, a broker restart: the published answer equals the fault-free one."""
    run_storm(tmp_path, faults=True)


def run_storm(tmp_path: Path, *, faults: bool) -> Verdict:
    """The storm (or, with `faults` off, the same input into one undisturbed worker, which
    shows the live answer equal to the offline one); asserts it is exact."""
    sim, records = build_input()
    expected, revocations = offline_expectation(sim, records, SECRET)
    events: list[Row] = [(k, v) for kind, k, v in records if kind == "event"]
    complaints: list[Row] = [(k, v) for kind, k, v in records if kind == "complaint"]
    want_pairs = {(a.event_id, a.rule) for a in expected if a.event_id}
    want_agg = {a.alert_id: content(a) for a in expected if not a.event_id}
    want_rev = {(f"{r.msisdn}|{r.enterprise}", ts_ms(r.ts.isoformat())) for r in revocations}
    violating = len({e for e, _ in want_pairs}) / len(events)
    agg_rules = Counter(a.rule for a in expected if not a.event_id)
    print(
        f"input: {len(events):,} events ({len(events) - len({v for _, v in events}):,} repeated), "
        f"{len(complaints)} complaints; {violating:.1%} break a per-message rule; expected "
        f"{len(want_pairs):,} pairs, aggregates {dict(agg_rules)}, {len(want_rev)} revocations"
    )
    # The storm is only a test of what the input exercises.
    assert violating >= 0.30
    assert {"volume.spike", "port.sublet", "complaint.rate"} <= set(agg_rules), agg_rules
    assert len(want_rev) >= 100 and len(complaints) > 0

    with local_broker(tmp_path / "kafka") as broker, env_on(broker, tmp_path) as env:
        w1 = env.start_worker("w1", **FAST_SESSION)
        wait_ready(w1)
        produce_reference(env, sim, [w1])  # a Simulation has a Scenario's .reference
        produce_rows(env.bootstrap, env.topic("sms.complaints"), complaints)
        # With faults, the last quarter of sms.events is produced once the second worker
        # has taken partitions, so it has input to process however long the kills of the
        # first worker took.
        cut = len(events) - int(len(events) * HELD) if faults else len(events)
        storm = Storm(env, broker, {}, len(events))
        storm.produce(events[:cut])
        gen = 1
        if faults:
            # 1. three SIGKILLs of the only worker, each restarted on its own data dir; with
            # the last restart a second worker joins (rebalance)
            w2: Worker | None = None
            for stage, share in enumerate(KILL_AT, 1):
                for attempt in range(TRIES):
                    at_least = share if attempt == 0 else storm.progress() + 0.02
                    storm.wait_busy(w1, at_least)
                    k = storm.kill(w1, f"w1-gen{gen}")
                    gen += 1
                    w1 = env.start_worker("w1", **FAST_SESSION)  # same data dir
                    last = k.shown or attempt == TRIES - 1 or k.progress >= RETRY_UNTIL
                    if stage == len(KILL_AT) and last:
                        w2 = env.start_worker("w2", **FAST_SESSION)
                    wait_ready(w1)
                    if last:
                        break

            # 2. the second worker dies while busy; the broker restarts
            assert w2 is not None
            wait_ready(w2)
            wait_for(
                [w1, w2],
                lambda: w2.sample("smsmon_rebalances_total") >= 1,
                120,
                "the second worker to take partitions",
            )
            # the rest of the input once it is in the group: what was produced before may
            # all be committed on the partitions it took, and it would have nothing to do
            storm.produce(events[cut:])
            wait_for(
                [w1, w2],
                lambda: w2.sample("smsmon_events_total") > 0,
                120,
                "the second worker to process events",
            )
            print(f"[{time.monotonic() - storm.t0:6.1f}s] w2 processes")
            # not waited into an open transaction: with two workers the rest of sms.events
            # can be committed within that wait, and this kill must find records uncommitted
            storm.wait_busy(w2, 0.0, [w1], open_txn=False)
            storm.kill(w2, "w2")
            storm.wait_progress(min(storm.progress() + 0.1, 0.9), [w1])
            broker.restart()
            print(f"[{time.monotonic() - storm.t0:6.1f}s] broker restarted")

        # 3. the last generation finishes alone
        survivors = [(f"w1-gen{gen}", w1)]
        try:
            storm.settled([w1])
            # windows whose watermark passed close at the next partial or heartbeat
            with contextlib.suppress(AssertionError):
                wait_until(
                    lambda: set(want_agg) <= aggregate_ids(env), 60, "aggregate alerts", every=2
                )
            storm.settled([w1])
        except AssertionError:
            print(storm.report(survivors))
            raise
        elapsed = time.monotonic() - storm.t0
        verdict = compare(env, want_pairs, want_agg, want_rev)
        print(f"[{elapsed:6.1f}s] kills: {storm.kills}")
        print(verdict.summary())
        if not verdict.exact():
            print(storm.where(verdict))
            print(storm.report(survivors))
        if faults:
            # Under transactions a killed batch's outputs are in an aborted transaction:
            # visible only read_uncommitted, and only if the kill came after they were sent.
            # Records in aborted transactions (alerts of uncommitted events, or changelog and
            # re-keyed records) prove a replay of work that had produced output; every kill
            # already asserted that records were uncommitted.
            aborted = {
                t: len(read_records(env.bootstrap, t, committed_only=False))
                - len(read_records(env.bootstrap, t))
                for t in (
                    env.topic("sms.alerts"),
                    f"{env.prefix}-subscribers-changelog",
                    env.rekey_topic,
                )
            }
            print(f"records in aborted transactions: {aborted}")
            assert any(k.shown > 0 for k in storm.kills) or sum(aborted.values()) > 0, (
                storm.kills,
                aborted,
            )
        assert verdict.exact(), verdict.summary()
        assert w1.alive()
        return verdict


def aggregate_ids(env: Env) -> set[str]:
    return {
        a["alert_id"]
        for a in (
            json.loads(r.value or b"{}")
            for r in read_records(env.bootstrap, env.topic("sms.alerts"))
        )
        if not a.get("event_id")
    }


@dataclass
class Verdict:
    missing_pairs: list[tuple[str, str]]
    invented_pairs: list[tuple[str, str]]
    bad_ids: list[str]
    missing_agg: list[dict[str, Any]]
    invented_agg: list[dict[str, Any]]
    changed_agg: list[tuple[dict[str, Any], dict[str, Any]]]  # other than in VOLATILE
    recounted_agg: list[tuple[dict[str, Any], dict[str, Any]]]  # only VOLATILE differs
    missing_rev: list[tuple[str, int]]
    invented_rev: list[tuple[str, int]]
    published: int
    distinct: int
    alerted: set[str] = field(default_factory=set)  # event ids with any per-message alert

    def exact(self) -> bool:
        return not any(
            (
                self.missing_pairs,
                self.invented_pairs,
                self.bad_ids,
                self.missing_agg,
                self.invented_agg,
                self.changed_agg,
                self.missing_rev,
                self.invented_rev,
            )
        )

    def summary(self) -> str:
        def rules(pairs: list[tuple[str, str]]) -> dict[str, int]:
            return dict(Counter(r for _, r in pairs).most_common())

        short = [
            (a["rule"], a["subject"], a["window_start"], a["observed"]) for a in self.missing_agg
        ]
        extra = [
            (a["rule"], a["subject"], a["window_start"], a["observed"]) for a in self.invented_agg
        ]
        changed = [
            (w["rule"], w["subject"], {k: (w[k], g[k]) for k in w if w[k] != g[k]})
            for w, g in self.changed_agg
        ]
        recounted = [
            (w["rule"], w["subject"], w["window_start"], w["observed"], g["observed"])
            for w, g in self.recounted_agg
        ]
        return "\n".join(
            [
                f"published {self.published:,} alert records, {self.distinct:,} distinct ids",
                f"per-message: {len(self.missing_pairs)} missing {rules(self.missing_pairs)} "
                f"(first {self.missing_pairs[:5]}), {len(self.invented_pairs)} invented "
                f"{rules(self.invented_pairs)} (first {self.invented_pairs[:5]}), "
                f"{len(self.bad_ids)} bad ids",
                f"aggregate: {len(self.missing_agg)} missing {short[:8]}, "
                f"{len(self.invented_agg)} invented {extra[:8]}, "
                f"{len(self.changed_agg)} changed {changed[:5]}; "
                f"{len(self.recounted_agg)} with other counts only (not asserted) "
                f"{recounted[:5]}",
                f"revocations: {len(self.missing_rev)} missing (first {self.missing_rev[:3]}), "
                f"{len(self.invented_rev)} invented (first {self.invented_rev[:3]})",
            ]
        )


def compare(
    env: Env,
    want_pairs: set[tuple[str, str]],
    want_agg: dict[str, dict[str, Any]],
    want_rev: set[tuple[str, int]],
) -> Verdict:
    alerts: list[Record] = read_records(env.bootstrap, env.topic("sms.alerts"))
    pairs: set[tuple[str, str]] = set()
    bad_ids: list[str] = []
    agg: dict[str, list[dict[str, Any]]] = {}
    for r in alerts:
        a = Alert.model_validate_json(r.value or b"")
        assert r.key is not None and r.key.decode() == a.alert_id, a
        if a.event_id:
            pairs.add((a.event_id, a.rule))
            if a.alert_id != str(uuid.uuid5(ALERT_NAMESPACE, f"{a.rule}|{a.event_id}")):
                bad_ids.append(a.alert_id)
        else:
            agg.setdefault(a.alert_id, []).append(content(a))
    differing = [
        (want_agg[i], got)
        for i, seen in agg.items()
        if i in want_agg
        for got in seen
        if got != want_agg[i]
    ]
    changed = [(w, g) for w, g in differing if stable(w) != stable(g)]
    counts = [(w, g) for w, g in differing if stable(w) == stable(g)]
    rev: set[tuple[str, int]] = set()
    for r in read_records(env.bootstrap, env.topic("sms.ref.consent")):
        v = json.loads(r.value or b"null")
        if isinstance(v, dict) and v.get("source") == "mo":
            assert v["status"] == "revoked", v
            rev.add(((r.key or b"").decode(), ts_ms(v["ts"])))
    return Verdict(
        sorted(want_pairs - pairs),
        sorted(pairs - want_pairs),
        bad_ids,
        [want_agg[i] for i in sorted(set(want_agg) - set(agg))],
        [seen[0] for i, seen in sorted(agg.items()) if i not in want_agg],
        changed,
        counts,
        sorted(want_rev - rev),
        sorted(rev - want_rev),
        len(alerts),
        len({r.key for r in alerts}),
        {e for e, _ in pairs},
    )
