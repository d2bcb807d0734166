"""The measured phases of the throughput benchmark: one worker at full rate, the latency at a
fixed offered load, two workers in one group; each against the expected alert set."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import itertools
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.clients import (
    AlertCollector,
    Offsets,
    Prod,
    load_consent,
    load_reference,
    produce_records,
    raw_ceiling,
)
from bench.harness import (
    Broker,
    Processes,
    Worker,
    app_env,
    cpu_seconds,
    settings_of,
    wait_quiescent,
    wait_until,
)
from bench.profiling import summarize_profile
from bench.quiet import wait_quiet
from bench.report import log
from bench.traffic import LATENCY_SPAN_S, SECRET, SPAN_S, Rec, consent_stream, enc, simulation

# A worker's /metrics page not up yet (refused, reset, a half-written reply): poll again.
SCRAPE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


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
    keying: str = "java",
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
        produced["seconds"] = produce_records(bootstrap, env, records, keying)

    prod = threading.Thread(target=run_producer, name="producer")
    t_start = time.monotonic()
    prod.start()
    t_first: float | None = None
    t_commit: float | None = None
    t_alerts: float | None = None
    stalled = False
    behind, last_behind, t_progress = -1, -1, t_start
    t_shown = t_start
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
                if behind and now - t_shown > 15.0:
                    t_shown = now
                    log(f"waiting for commits: {behind} behind {offsets.uncommitted()}")
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


#: Rules whose verdict depends on the order of one subscriber's records (an unsubscribe
#: before or after a marketing message; who sent last when a complaint is attributed). With
#: `--keying none` a subscriber's records land on random partitions, and smsmon keeps their
#: order only per source partition (docs/contract.md): these may differ, nothing else may.
ORDER_DEPENDENT = frozenset(
    {"consent.missing", "consent.revoked", "consent.implicit", "complaint.rate"}
)


def correctness(collector: AlertCollector, expected: list[Any]) -> dict[str, Any]:
    got = collector.snapshot()
    want = {a.alert_id: a for a in expected}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differing = {want[i].rule for i in missing} | {got[i][2] for i in extra}
    return {
        "differing_rules": sorted(differing),
        "order_dependent_only": differing <= ORDER_DEPENDENT,
        "expected": len(want),
        "live": len(got),
        "live_records": collector.records,
        "equal": not missing and not extra,
        "missing": [
            f"{want[i].rule} {want[i].subject or want[i].event_id}"
            + (f" {want[i].window_start.isoformat()}" if want[i].window_start else "")
            for i in missing
        ][:20],
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
    workers = [procs.start_worker(n, env, root) for n in names]
    wait_until(
        lambda: all(w.sample("smsmon_reference_ready") == 1.0 for w in workers),
        300,
        "workers ready",
        workers=workers,
        retry=SCRAPE_ERRORS,
    )
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


def setup_app(
    broker: Broker, prefix: str, args: argparse.Namespace, sim: Any
) -> tuple[dict[str, str], float]:
    from smsmon.admin import ensure_topics

    env = app_env(broker.bootstrap, prefix, args.partitions, SECRET)
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
        res["quiet"] = {"one_worker": wait_quiet(log)}
        log(f"(2) producing {len(records):,} records as fast as possible into one worker")
        batches0 = (w.sample("smsmon_batch_events_count"), w.sample("smsmon_batch_events_sum"))
        txn0 = (
            w.sample("smsmon_transaction_seconds_count"),
            w.sample("smsmon_transaction_seconds_sum"),
            w.sample("smsmon_transaction_grouped_total"),
            w.sample("smsmon_batch_wait_seconds_total", {"reason": "lock"}),
            w.sample("smsmon_batch_wait_seconds_total", {"reason": "transaction"}),
        )
        r = measure(
            [w],
            broker,
            env,
            records,
            len(expected),
            collector,
            on_first=start_profile,
            keying=args.keying,
        )
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
        # under the transactional protocol: transactions committed and the time spent in them
        diag["transactions"] = w.sample("smsmon_transaction_seconds_count") - txn0[0]
        diag["transaction_s"] = w.sample("smsmon_transaction_seconds_sum") - txn0[1]
        # commit requests that rode in another's transaction (group commit)
        diag["transactions_grouped"] = w.sample("smsmon_transaction_grouped_total") - txn0[2]
        # the stage-1 batch loop's waits: for the batches' lock, for the previous transaction
        diag["wait_lock_s"] = (
            w.sample("smsmon_batch_wait_seconds_total", {"reason": "lock"}) - txn0[3]
        )
        diag["wait_transaction_s"] = (
            w.sample("smsmon_batch_wait_seconds_total", {"reason": "transaction"}) - txn0[4]
        )
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
        res["quiet"]["raw"] = wait_quiet(log)
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
        w.stop()


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
    sim3 = simulation(args.seed, start, span, sim.config.base_rate, args.subscribers, args.mix)
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
            if eid:  # a complaint has none; nor has a window alert, which must not match it
                sent_at[eid] = time.time()
            p.produce(topics[kind], key, value)
            i += 1
        p.poll()
        time.sleep(0.002)
    p.flush()
    produce_s = time.monotonic() - t0
    offsets = Offsets(broker.bootstrap, s.app_id, run_inputs(s))
    t_done = time.monotonic()
    wait_until(
        lambda: offsets.behind() == 0,
        600,
        "latency phase committed",
        every=0.1,
        retry=SCRAPE_ERRORS,
    )
    drain_s = time.monotonic() - t_done
    offsets.close()
    time.sleep(3.0)
    buckets1 = w.latency_buckets()
    delta = [(le, c1 - c0) for (le, c1), (_, c0) in zip(buckets1, buckets0, strict=True)]
    new = {k: v for k, v in collector.snapshot().items() if k not in alerts0}
    lat = [wall - sent_at[eid] for wall, eid, _ in new.values() if eid in sent_at]
    # the slowest alert of each rule (only per-message rules name an event)
    slowest: dict[str, float] = {}
    for wall, eid, rule in new.values():
        if eid in sent_at:
            slowest[rule] = max(slowest.get(rule, 0.0), wall - sent_at[eid])
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
        "e2e_max_by_rule_s": dict(sorted(slowest.items())),
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
        r = measure(workers, broker, env, records, len(expected), collector, keying=args.keying)
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
            w.stop()
