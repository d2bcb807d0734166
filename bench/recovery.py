"""Recovery blind time of smsmon workers restoring the consent table, and what standbys change.

On its own broker (scripts/kafka-local.sh, free loopback ports, a temp dir) every run creates
a fresh app id, fills `<app>-consent-changelog` (8 partitions, compacted) with N consent
entries exactly as smsmon's table writes them (key `<msisdn>|<enterprise>`, value
`g:<ts_us>`, partition = smsmon's `partition_for(msisdn, 8)`), commits one earlier event per
events partition for the group (a worker after a rebalance resumes from committed offsets), then:

  --mode fresh    one `smsmon worker` with an EMPTY data dir: one valid `mo` event is waiting
                  on each of the 8 events partitions when the process starts; the blind time is
                  process start -> all 8 counted in smsmon_events_total. The restore itself is
                  read from the worker log ("Highwater for active changelog partitions" ->
                  "Recovery complete"); /metrics is polled every 0.25 s to see whether
                  smsmon_recovering reads 1 during the restore; peak RSS is VmHWM.
  --mode standby  two workers in one group (started one after the other), wait until both
                  are ready and the standbys caught up, stop worker 1 (SIGTERM: a clean leave;
                  --stop kill: SIGKILL, then the group waits for the session timeout), produce
                  one event per partition and time until worker 2 has processed all 8. Once
                  per value of --standby-replicas (default "1,0": Faust's
                  TABLE_STANDBY_REPLICAS=0 turns the standbys of streams/app.py off).
  --mode crash    blind time of a SIGKILL under steady traffic (bench/blind.py): two workers
                  as in standby mode, --rate alerting events per second on each events
                  partition, then per --cases: "restart" SIGKILLs worker 1 and starts it again
                  at once on its data dir (static membership: the same instance id),
                  "takeover" SIGKILLs worker 1 for good (worker 2 takes over); "term-restart"
                  and "term-takeover" stop it with SIGTERM instead. Per partition
                  the blind time is the first alert created after the kill minus the last one
                  created before it; once per value of --standby-replicas.

    python -m bench.recovery --mode fresh --pairs 1000000
    python -m bench.recovery --mode fresh --pairs 10000000 --json recovery-10m.json
    python -m bench.recovery --mode standby --pairs 1000000 --standby-replicas 1,0
    python -m bench.recovery --mode standby --pairs 1000000 --stop kill
    python -m bench.recovery --mode crash --pairs 1000000 --standby-replicas 1 \
        --cases restart,takeover
    python -m bench.recovery --mode crash --pairs 1000000 --standby-replicas 0 --cases takeover

Every process it starts (broker, workers) is stopped on exit, also on Ctrl-C.
See docs/reliability.md, "Recovery blind time and standby replicas", for the recorded results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import blind
from bench.clients import Prod
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
from bench.report import fmt, log, machine
from bench.traffic import MSISDN_PREFIXES, SECRET, partition_for

ENTERPRISES = tuple(f"9133010{i:04d}MA2AAAA{i % 10}X" for i in range(50))  # 18-char USCCs
CONSENT_VALUE = b"g:1790000000000000"  # ConsentState.encode() of a grant
POLL_S = 0.25


# ------------------------------------------------------------------------------------------
# data: the consent changelog and the probe events


def consent_entries(n: int, partitions: int, per_msisdn: int) -> Iterator[tuple[bytes, int]]:
    """(key, partition) of n table entries: `per_msisdn` enterprises per subscriber, unique
    msisdns that don't look sequential (the same bijection as bench.traffic)."""
    np_ = len(MSISDN_PREFIXES)
    made, counter = 0, 0
    while made < n:
        prefix = MSISDN_PREFIXES[counter % np_]
        number = ((counter // np_) * 48_271 + 1_234_567) % 100_000_000
        counter += 1
        m = f"{prefix}{number:08d}"
        part = partition_for(m, partitions)
        for j in range(min(per_msisdn, n - made)):
            ent = ENTERPRISES[(counter + j) % len(ENTERPRISES)]
            yield f"{m}|{ent}".encode(), part
            made += 1


def producer(bootstrap: str) -> Prod:
    """gzip (the codec every Kafka client decodes) and big batches: the changelog fill is
    millions of small records."""
    return Prod(bootstrap, linger_ms=100, compression="gzip")


def fill_changelog(bootstrap: str, topic: str, args: argparse.Namespace) -> dict[str, Any]:
    p = producer(bootstrap)
    per_part: Counter[int] = Counter()
    t0 = time.monotonic()
    for i, (key, part) in enumerate(consent_entries(args.pairs, args.partitions, args.per_msisdn)):
        p.produce(topic, key, CONSENT_VALUE, part)
        per_part[part] += 1
        if i % 50_000 == 0:
            p.p.poll(0)
            if i and i % 1_000_000 == 0:
                log(f"  {i:,} entries queued")
    p.flush()
    secs = time.monotonic() - t0
    log(
        f"filled {topic} with {args.pairs:,} entries in {secs:.1f}s "
        f"(per partition {dict(sorted(per_part.items()))})"
    )
    return {"fill_s": secs, "per_partition": dict(sorted(per_part.items()))}


def probe_msisdns(partitions: int) -> list[str]:
    """One msisdn per partition (never one of the consent entries: another prefix)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        m = f"199{i:08d}"
        found.setdefault(partition_for(m, partitions), m)
        i += 1
    return [found[p] for p in range(partitions)]


def produce_probes(bootstrap: str, topic: str, partitions: int, tag: str) -> float:
    """One valid `mo` event (not an unsubscribe) on each events partition; returns the wall
    time when all were acknowledged."""
    p = producer(bootstrap)
    now = dt.datetime.now(dt.UTC).isoformat()
    for part, m in enumerate(probe_msisdns(partitions)):
        value = {
            "event_id": f"recovery-{tag}-{part}",
            "ts": now,
            "kind": "mo",
            "gateway": "gw-bench",
            "port": "106600000123",
            "msisdn": m,
            "text": "好的",
        }
        p.produce(topic, m.encode(), json.dumps(value, ensure_ascii=False).encode(), part)
    p.flush()
    return time.time()


def prime_group(bootstrap: str, settings: Any) -> None:
    """Make the group look like one that has run before: one event on every events partition,
    committed as processed. A worker joining after a rebalance resumes from committed offsets,
    so this is the case being measured; it also keeps the probes from depending on where a
    group without committed offsets starts reading."""
    from confluent_kafka import Consumer, TopicPartition

    produce_probes(bootstrap, settings.topic_events, settings.partitions, "prime")
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": settings.app_id, "enable.auto.commit": False}
    )
    try:
        tps = []
        for part in range(settings.partitions):
            _, high = c.get_watermark_offsets(
                TopicPartition(settings.topic_events, part), timeout=30
            )
            tps.append(TopicPartition(settings.topic_events, part, high))
        c.commit(offsets=tps, asynchronous=False)
    finally:
        c.close()


# ------------------------------------------------------------------------------------------
# watching a worker: /metrics every 0.25 s, the load average, the log


class Poller(threading.Thread):
    """Scrapes one worker's /metrics every POLL_S; keeps (wall time, values) per scrape."""

    NAMES = ("smsmon_events_total", "smsmon_recovering", "smsmon_reference_ready")

    def __init__(self, worker: Worker) -> None:
        super().__init__(daemon=True, name=f"poll-{worker.name}")
        self.w = worker
        self.lock = threading.Lock()
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.failures: list[float] = []  # wall times of failed scrapes (worker not serving)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            t = time.time()
            try:
                vals: dict[str, float] = dict.fromkeys(self.NAMES, 0.0)
                vals["consent"] = 0.0
                for s in self.w.samples():
                    if s.name in self.NAMES:
                        vals[s.name] += float(s.value)
                    elif (
                        s.name == "smsmon_reference_entries" and s.labels.get("table") == "consent"
                    ):
                        vals["consent"] = float(s.value)
                with self.lock:
                    self.samples.append((t, vals))
            except Exception:  # not serving yet, or a timeout / broken reply under load
                with self.lock:
                    self.failures.append(t)
            self.stopping.wait(max(0.0, POLL_S - (time.time() - t)))

    def latest(self) -> dict[str, float]:
        with self.lock:
            return dict(self.samples[-1][1]) if self.samples else {}

    def first(self, name: str, at_least: float, after: float = 0.0) -> float | None:
        """Wall time of the first scrape (after `after`) where `name` >= at_least."""
        with self.lock:
            return next(
                (t for t, v in self.samples if t >= after and v.get(name, 0.0) >= at_least), None
            )

    def recovering_between(self, t0: float, t1: float) -> dict[str, Any]:
        with self.lock:
            inside = [(t, v["smsmon_recovering"]) for t, v in self.samples if t0 <= t <= t1]
            fails = [t for t in self.failures if t0 <= t <= t1]
        ones = [t for t, v in inside if v >= 1.0]
        return {
            "scrapes": len(inside),
            "scrapes_failed": len(fails),
            "scrapes_reading_1": len(ones),
            "first_1_after_restore_start_s": (ones[0] - t0) if ones else None,
            "last_1_before_restore_end_s": (t1 - ones[-1]) if ones else None,
        }

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class Load(threading.Thread):
    """1-minute load average every 5 s while a run lasts."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="loadavg")
        self.values: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.values.append(os.getloadavg()[0])
            self.stopping.wait(5.0)

    def summary(self) -> dict[str, Any]:
        self.stopping.set()
        self.join(10)
        v = self.values or [os.getloadavg()[0]]
        return {"min": round(min(v), 2), "mean": round(sum(v) / len(v), 2), "max": round(max(v), 2)}


# `[2026-11-29 04:10:24,817] [4223] [INFO] [^---Recovery]: Recovery complete `
LOG_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[\d+\] \[(\w+)\] (?:\[[^\]]*\]: )?(.*?)\s*$"
)
TABLE_ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*(\d+)\s*\|\s*(-?\d+)\s*\|\s*$")


def log_entries(path: Path) -> list[tuple[float, str, list[str]]]:
    """(wall time, message, continuation lines) of every timestamped worker log line."""
    out: list[tuple[float, str, list[str]]] = []
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if m:
            # the worker logs local time with milliseconds
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
            out.append((t, m.group(3), []))
        elif out:
            out[-1][2].append(line)
    return out


def _table(lines: list[str], suffix: str) -> dict[int, int]:
    """partition -> value of the rows of one Faust log table whose topic ends in `suffix`."""
    rows: dict[int, int] = {}
    topic = ""
    for line in lines:
        m = TABLE_ROW.match(line)
        if not m or m.group(1) == "topic":
            continue
        topic = topic if m.group(1) == "〃" else m.group(1)
        if topic.endswith(suffix):
            rows[int(m.group(2))] = int(m.group(3))
    return rows


def restore_window(path: Path, after: float, changelog: str) -> dict[str, Any]:
    """The first active-partition restore that starts after `after` (wall time): from Faust's
    "Highwater for active changelog partitions" to the next "Recovery complete", and how many
    consent changelog records it had to read (highwater - start offset, from the log tables of
    the last attempt; a RebalanceAgain restarts the restore)."""
    entries = [e for e in log_entries(path) if e[0] >= after]
    start = next((e for e in entries if e[1].startswith("Highwater for active")), None)
    if start is None:
        return {}
    end = next((e for e in entries if e[0] >= start[0] and e[1] == "Recovery complete"), None)
    upto = end[0] if end else float("inf")
    inside = [e for e in entries if start[0] <= e[0] <= upto]
    attempts = [e for e in inside if e[1].startswith("Highwater for active")]
    offsets = [e for e in inside if e[1].startswith("active offsets at start of reading")]
    hw = _table(attempts[-1][2], changelog)
    off = _table(offsets[-1][2], changelog) if offsets else {}
    to_read = sum(max(0, h - off.get(p, -1)) for p, h in hw.items())
    return {
        "start": start[0],
        "end": end[0] if end else None,
        "seconds": (end[0] - start[0]) if end else None,
        "attempts": len(attempts),
        "active_partitions": sorted(hw),
        "records_to_read": to_read,
    }


REMAINING = re.compile(r"Still fetching changelog topics for recovery.*total remaining=(\d+)")


def restore_progress(path: Path) -> dict[str, Any]:
    """Faust's own progress lines during an active restore ("Still fetching changelog topics
    for recovery ... total remaining=N", every 5 s): the rate over the part they cover, which
    is the figure to report when a restore is cut short."""
    points = [
        (t, int(m.group(1))) for t, msg, _ in log_entries(path) if (m := REMAINING.search(msg))
    ]
    if len(points) < 2:
        return {"samples": len(points)}
    (t0, r0), (t1, r1) = points[0], points[-1]
    return {
        "samples": len(points),
        "first_remaining": r0,
        "last_remaining": r1,
        "seconds": t1 - t0,
        "rate": (r0 - r1) / (t1 - t0) if t1 > t0 else None,
    }


def active_partitions_before(path: Path, before: float, changelog: str) -> list[int] | None:
    """The consent changelog partitions of the last "Highwater for active changelog
    partitions" table logged before `before`: the worker's active partitions then."""
    tables = [
        e for e in log_entries(path) if e[0] <= before and e[1].startswith("Highwater for active")
    ]
    return sorted(_table(tables[-1][2], changelog)) if tables else None


REBALANCE_MARKS = ("Highwater for active", "Elected group leader", "Joined group")


def rebalance_marks(path: Path, after: float) -> dict[str, int]:
    """How often the log shows a rebalance step after `after` (Faust's restore start,
    aiokafka's join lines when they are logged)."""
    out = dict.fromkeys(REBALANCE_MARKS, 0)
    for t, msg, _ in log_entries(path):
        if t > after:
            for mark in REBALANCE_MARKS:
                if mark in msg:
                    out[mark] += 1
    return out


# ------------------------------------------------------------------------------------------
# the runs


def new_app(broker: Broker, args: argparse.Namespace, label: str) -> tuple[dict[str, str], Any]:
    from smsmon.admin import ensure_topics

    prefix = f"r{label}{uuid.uuid4().hex[:6]}"
    env = app_env(broker.bootstrap, prefix, args.partitions, SECRET)
    settings = settings_of(env)
    ensure_topics(settings)  # also creates the table changelogs, compacted, 8 partitions
    prime_group(broker.bootstrap, settings)
    return env, settings


def start_worker(
    procs: Processes, name: str, env: dict[str, str], root: Path
) -> tuple[Worker, Poller, float]:
    t0 = time.time()
    w = procs.start_worker(name, env, root)
    poller = Poller(w)
    poller.start()
    return w, poller, t0


def wait_for(pred: Any, timeout: float, what: str, workers: list[Worker]) -> float:
    """Poll `pred` (cheap: reads Poller state) every 0.1 s, failing at once when one of
    `workers` exits; returns the wall time it held."""
    wait_until(pred, timeout, what, 0.1, workers=workers, retry=())
    return time.time()


def run_fresh(
    args: argparse.Namespace, procs: Processes, root: Path, broker: Broker, out: dict[str, Any]
) -> dict[str, Any]:
    env, s = new_app(broker, args, "f")
    changelog = f"{s.app_id}-consent-changelog"
    fill = fill_changelog(broker.bootstrap, changelog, args)
    produce_probes(broker.bootstrap, s.topic_events, args.partitions, s.app_id)
    load = Load()
    load.start()
    log(f"fresh: starting one worker with an empty data dir (load {os.getloadavg()[0]:.2f})")
    w, poller, t0 = start_worker(procs, "fresh", env, root)
    # what is known if the run is cut short (see main)
    out["partial"] = {"mode": "fresh", "pairs": args.pairs, "log": str(w.log_path), "t0": t0}
    try:
        timeout = 900 + args.pairs / 2_000
        last_log = time.monotonic()

        def all_counted() -> bool:
            nonlocal last_log
            if time.monotonic() - last_log > 60:
                last_log = time.monotonic()
                log(f"  {time.time() - t0:.0f}s, load {os.getloadavg()[0]:.2f}: {poller.latest()}")
            return poller.latest().get("smsmon_events_total", 0.0) >= float(args.partitions)

        wait_for(all_counted, timeout, "the 8 probe events", [w])
        t_all = poller.first("smsmon_events_total", args.partitions) or time.time()
        t_one = poller.first("smsmon_events_total", 1) or t_all
        log(f"fresh: all {args.partitions} probe events counted {t_all - t0:.1f}s after start")
        t_count: float | None = None
        with contextlib.suppress(TimeoutError):
            # smsmon_reference_entries{table="consent"} is counted by a 2 s timer
            wait_for(
                lambda: poller.latest().get("consent", 0.0) >= args.pairs,
                120 + args.pairs / 50_000,
                "consent entries gauge",
                [w],
            )
            t_count = poller.first("consent", args.pairs)
        rss = w.hwm_mib()
        cpu = w.cpu()
    finally:
        poller.stop()
        w.stop()
    win = restore_window(w.log_path, t0, changelog)
    rec = poller.recovering_between(win["start"], win["end"]) if win.get("end") else {}
    res = {
        "mode": "fresh",
        "pairs": args.pairs,
        **fill,
        "blind_s": t_all - t0,
        "first_event_s": t_one - t0,
        "restore_s": win.get("seconds"),
        "restore_started_after_s": (win["start"] - t0) if win else None,
        "restore_attempts": win.get("attempts"),
        "records_to_read": win.get("records_to_read"),
        "restore_rate": (win["records_to_read"] / win["seconds"] if win.get("seconds") else None),
        "consent_gauge_full_s": (t_count - t0) if t_count else None,
        "recovering_gauge": rec,
        "faust_progress": restore_progress(w.log_path),
        "peak_rss_mib": rss,
        "worker_cpu_s": cpu,
        "load": load.summary(),
        "log": str(w.log_path),
    }
    log(
        f"fresh: blind {res['blind_s']:.1f}s, restore {fmt(res['restore_s'], 's', 1)}, "
        f"smsmon_recovering=1 in {rec.get('scrapes_reading_1')} of {rec.get('scrapes')} scrapes"
    )
    out.pop("partial", None)
    return res


def run_standby(
    args: argparse.Namespace, procs: Processes, root: Path, broker: Broker, replicas: int
) -> dict[str, Any]:
    env, s = new_app(broker, args, f"s{replicas}")
    env = dict(env, TABLE_STANDBY_REPLICAS=str(replicas))  # read by Faust (defect 9)
    changelog = f"{s.app_id}-consent-changelog"
    fill = fill_changelog(broker.bootstrap, changelog, args)
    load = Load()
    load.start()
    w1, p1, t1 = start_worker(procs, f"s{replicas}-w1", env, root)
    w2: Worker | None = None
    p2: Poller | None = None
    try:
        timeout = 600 + args.pairs / 2_000
        wait_for(
            lambda: (
                p1.latest().get("smsmon_reference_ready") == 1.0
                and p1.latest().get("consent", 0.0) >= args.pairs
            ),
            timeout,
            "worker 1 ready with the whole table",
            [w1],
        )
        log(f"standby={replicas}: worker 1 has the whole table after {time.time() - t1:.1f}s")
        w2, p2, t2 = start_worker(procs, f"s{replicas}-w2", env, root)
        q1, q2 = p1, p2

        def both_ready() -> bool:
            a, b = q1.latest(), q2.latest()
            return (
                b.get("smsmon_reference_ready") == 1.0
                and a.get("consent", 0.0) > 0
                and b.get("consent", 0.0) > 0
                and a.get("consent", 0.0) + b.get("consent", 0.0) == args.pairs
                and bool(restore_window(w2.log_path, t2, changelog).get("end"))
            )

        t_both = wait_for(both_ready, timeout, "both workers ready", [w1, w2])
        log(f"standby={replicas}: both workers active {t_both - t2:.1f}s after worker 2 started")
        # Standbys catch up in the background after "Recovery complete": wait until neither
        # worker uses more than 10 % of a core, then --settle seconds more.
        quiet = wait_quiescent([w1.pid, w2.pid], timeout=600 + args.pairs / 5_000)
        time.sleep(args.settle)
        standby_started = any(
            e[1].startswith("Starting standby partitions") and e[0] >= t2
            for e in log_entries(w2.log_path)
        )
        rss_before = [w1.hwm_mib(), w2.hwm_mib()]
        log(
            f"standby={replicas}: quiet after {quiet:.0f}s (+{args.settle:.0f}s); "
            f"worker 2 standby partitions started: {standby_started}; stopping worker 1 "
            f"({args.stop}, load {os.getloadavg()[0]:.2f})"
        )
        t_stop = time.time()
        w1.proc.send_signal(signal.SIGKILL if args.stop == "kill" else signal.SIGTERM)
        w1.proc.wait(timeout=120)
        t_exit = time.time()
        p1.stop()
        # Produced after worker 1 is gone, so none of them can be processed by it.
        produce_probes(broker.bootstrap, s.topic_events, args.partitions, f"{s.app_id}-x")
        base = p2.latest().get("smsmon_events_total", 0.0)
        q = p2
        wait_for(
            lambda: q.latest().get("smsmon_events_total", 0.0) >= base + args.partitions,
            300 + args.pairs / 2_000,
            "worker 2 processed the 8 probe events",
            [w2],
        )
        t_all = p2.first("smsmon_events_total", base + args.partitions, t_stop) or time.time()
        t_one = p2.first("smsmon_events_total", base + 1, t_stop) or t_all
        win = restore_window(w2.log_path, t_stop, changelog)
        rss_after = w2.hwm_mib()
        cpu2 = cpu_seconds(w2.pid)
    finally:
        p1.stop()
        if p2 is not None:
            p2.stop()
        w1.stop()
        if w2 is not None:
            w2.stop()
    res = {
        "mode": "standby",
        "standby_replicas": replicas,
        "stop": args.stop,
        "pairs": args.pairs,
        **fill,
        "worker2_active_after_s": t_both - t2,
        "quiet_wait_s": quiet,
        "standby_partitions_started_on_w2": standby_started,
        "worker1_exit_s": t_exit - t_stop,
        "takeover_s": t_all - t_stop,
        "first_event_s": t_one - t_stop,
        "restore_s": win.get("seconds"),
        "restore_started_after_stop_s": (win["start"] - t_stop) if win else None,
        "restore_attempts": win.get("attempts"),
        "records_to_read": win.get("records_to_read"),
        "active_partitions_w2": win.get("active_partitions"),
        "peak_rss_mib_before_stop": rss_before,
        "peak_rss_mib_w2": rss_after,
        "worker2_cpu_s": cpu2,
        "load": load.summary(),
        "logs": [str(w1.log_path), str(w2.log_path)],
    }
    log(
        f"standby={replicas}: worker 2 processed all {args.partitions} events "
        f"{res['takeover_s']:.1f}s after the {args.stop} (restore {fmt(res['restore_s'], 's', 1)}"
        f", {fmt(res['records_to_read'])} changelog records)"
    )
    return res


def two_workers(
    args: argparse.Namespace,
    procs: Processes,
    root: Path,
    env: dict[str, str],
    changelog: str,
    label: str,
) -> tuple[Worker, Poller, Worker, Poller, float]:
    """Worker 1 restores the whole table, then worker 2 joins; returns once both are active,
    idle and --settle seconds more have passed (and the seconds worker 2 took)."""
    w1, p1, t1 = start_worker(procs, f"{label}-w1", env, root)
    timeout = 600 + args.pairs / 2_000
    wait_for(
        lambda: (
            p1.latest().get("smsmon_reference_ready") == 1.0
            and p1.latest().get("consent", 0.0) >= args.pairs
        ),
        timeout,
        "worker 1 ready with the whole table",
        [w1],
    )
    log(f"{label}: worker 1 has the whole table after {time.time() - t1:.1f}s")
    w2, p2, t2 = start_worker(procs, f"{label}-w2", env, root)
    wait_both(args, (p1, p2), (w1, w2), w2, t2, changelog, timeout)
    t_both = time.time()
    log(f"{label}: both workers active {t_both - t2:.1f}s after worker 2 started")
    return w1, p1, w2, p2, t_both - t2


def wait_both(
    args: argparse.Namespace,
    pollers: tuple[Poller, Poller],
    workers: tuple[Worker, Worker],
    late: Worker,
    since: float,
    changelog: str,
    timeout: float,
    quiet: bool = True,
) -> None:
    """Both ready, the table split between them, the restore of `late` (the one that started
    last, at `since`) complete, both idle (unless not `quiet`: under traffic they never
    are), then --settle seconds."""
    p1, p2 = pollers
    w1, w2 = workers

    def both_ready() -> bool:
        a, b = p1.latest(), p2.latest()
        return (
            a.get("smsmon_reference_ready") == 1.0
            and b.get("smsmon_reference_ready") == 1.0
            and a.get("consent", 0.0) > 0
            and b.get("consent", 0.0) > 0
            and a.get("consent", 0.0) + b.get("consent", 0.0) == args.pairs
            and bool(restore_window(late.log_path, abs(since), changelog).get("end"))
        )

    wait_for(both_ready, timeout, "both workers ready", [w1, w2])
    if quiet:
        wait_quiescent([w1.pid, w2.pid], timeout=600 + args.pairs / 5_000)
    time.sleep(args.settle)


def crash_once(
    args: argparse.Namespace,
    case: str,
    procs: Processes,
    root: Path,
    env: dict[str, str],
    changelog: str,
    label: str,
    workers: tuple[Worker, Poller, Worker, Poller],
    alerts: blind.Alerts,
) -> tuple[dict[str, Any], tuple[Worker, Poller, Worker, Poller] | None]:
    """SIGKILL worker 1 under traffic (SIGTERM for the `term-` cases, a clean stop);
    `restart` starts it again on its data dir at once, `takeover` leaves its partitions to
    worker 2. Returns the figures and, after a restart, the two running workers."""
    sig = signal.SIGTERM if case.startswith("term-") else signal.SIGKILL
    restart = case.endswith("restart")
    w1, p1, w2, p2 = workers
    # traffic flowing on every partition through both workers for a few seconds
    t_warm = time.time()
    wait_for(
        lambda: blind.covered(alerts.snapshot(), args.partitions, t_warm + 3.0),
        120,
        "alerts on every partition",
        [w1, w2],
    )
    before = active_partitions_before(w1.log_path, time.time(), changelog)
    log(
        f"{label}/{case}: {sig.name} worker 1 (active partitions {before}; "
        f"load {os.getloadavg()[0]:.2f})"
    )
    t_kill = time.time()
    w1.proc.send_signal(sig)
    w1.proc.wait(timeout=90)
    t_exit = time.time()
    # after a SIGTERM worker 1 may still send alerts until it exits: the gap spans its exit
    t_ref = t_exit if sig == signal.SIGTERM else t_kill
    p1.stop()
    t_restart: float | None = None
    owner = w2
    if restart:
        old_log = w1.copy_log(f"before-restart-{int(t_kill)}")
        w1, p1, t_restart = start_worker(procs, w1.name, env, root)
        owner = w1
    else:
        old_log = w1.log_path
    timeout = 300 + args.pairs / 2_000
    running = [w1, w2] if restart else [w2]
    wait_for(
        lambda: blind.covered(alerts.snapshot(), args.partitions, t_ref),
        timeout,
        "an alert created after the kill on every partition",
        running,
    )
    time.sleep(2.0)
    per = blind.blind_times(alerts.snapshot(), range(args.partitions), t_ref)
    win = restore_window(owner.log_path, t_kill, changelog)
    after = None
    if restart:
        with contextlib.suppress(OSError):
            wins = restore_window(w1.log_path, t_restart or t_kill, changelog)
            after = wins.get("active_partitions")
    moved = sorted(before or [])
    worst = max((v["blind_s"] for p, v in per.items() if v["blind_s"] is not None), default=None)
    worst_moved = max(
        (per[p]["blind_s"] or 0.0 for p in moved if per[p]["blind_s"] is not None),
        default=None,
    )
    others = [p for p in range(args.partitions) if p not in moved]
    worst_others = max(
        (per[p]["blind_s"] or 0.0 for p in others if per[p]["blind_s"] is not None),
        default=None,
    )
    res = {
        "case": case,
        "killed_worker_partitions": before,
        "restarted_worker_partitions": after,
        "signal": sig.name,
        "worker1_exit_s": t_exit - t_kill,
        "same_assignment": (after == before) if restart else None,
        "blind_max_s": worst,
        "blind_max_killed_partitions_s": worst_moved,
        "blind_max_other_partitions_s": worst_others,
        "per_partition": per,
        "restart_started_after_s": (t_restart - t_kill) if t_restart else None,
        "restore_s": win.get("seconds"),
        "restore_started_after_kill_s": (win["start"] - t_kill) if win else None,
        "records_to_read": win.get("records_to_read"),
        "restore_attempts": win.get("attempts"),
        "worker2_rebalance_marks": rebalance_marks(w2.log_path, t_kill),
        "logs": [str(old_log), str(w1.log_path), str(w2.log_path)],
    }
    log(
        f"{label}/{case}: blind max {fmt(worst, 's', 1)} (killed worker's partitions "
        f"{fmt(worst_moved, 's', 1)}, others {fmt(worst_others, 's', 1)}); restore "
        f"{fmt(res['restore_s'], 's', 1)} of {fmt(res['records_to_read'])} records; "
        f"same assignment after restart: {res['same_assignment']}; worker 2 log marks "
        f"{res['worker2_rebalance_marks']}"
    )
    if restart:
        return res, (w1, p1, w2, p2)
    return res, None


def run_crash(
    args: argparse.Namespace, procs: Processes, root: Path, broker: Broker, replicas: int
) -> dict[str, Any]:
    env, s = new_app(broker, args, f"c{replicas}")
    env = dict(env, TABLE_STANDBY_REPLICAS=str(replicas))  # read by Faust (defect 9)
    for kv in args.worker_env:
        k, _, v = kv.partition("=")
        env[k] = v
    changelog = f"{s.app_id}-consent-changelog"
    fill = fill_changelog(broker.bootstrap, changelog, args)
    load = Load()
    load.start()
    label = f"crash-s{replicas}"
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    known = {"restart", "takeover", "term-restart", "term-takeover"}
    if set(cases) - known or any(c.endswith("takeover") for c in cases[:-1]):
        raise SystemExit(
            f"--cases: of {sorted(known)}; a takeover ends worker 1 for good, so it comes last"
        )
    alerts = blind.Alerts(broker.bootstrap, s.topic_alerts)
    traffic = blind.Traffic(broker.bootstrap, s.topic_events, args.partitions, args.rate)
    pollers: list[Poller] = []
    runs: list[dict[str, Any]] = []
    try:
        w1, p1, w2, p2, w2_active = two_workers(args, procs, root, env, changelog, label)
        pollers += [p1, p2]
        alerts.start()
        traffic.start()
        state: tuple[Worker, Poller, Worker, Poller] | None = (w1, p1, w2, p2)
        for i, case in enumerate(cases):
            assert state is not None
            if i:
                w1, p1, w2, p2 = state
                log(f"{label}: waiting until both workers are ready again")
                wait_both(args, (p1, p2), (w1, w2), w1, 0.0, changelog, 600, quiet=False)
            res, state = crash_once(args, case, procs, root, env, changelog, label, state, alerts)
            if state is not None:
                pollers += [state[1]]
            runs.append(res)
            for t in (traffic, alerts):
                if t.error is not None:
                    raise RuntimeError(f"{t.name} failed: {t.error!r}")
    finally:
        traffic.stop()
        alerts.stop()
        for p in pollers:
            p.stop()
        procs.stop_all()
    return {
        "mode": "crash",
        "standby_replicas": replicas,
        "pairs": args.pairs,
        "rate_per_partition": args.rate,
        "worker_env": args.worker_env,
        **fill,
        "worker2_active_after_s": w2_active,
        "events_sent": traffic.sent,
        "alerts_seen": alerts.count,
        "cases": runs,
        "load": load.summary(),
    }


# ------------------------------------------------------------------------------------------
# reporting


def print_table(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(
        f"\nsmsmon recovery ({res['params']['partitions']} partitions) - {m['nproc']} x "
        f"{m['cpu_model']}, {m['ram_gib']} GiB, commit {m['commit']}, {res['command']}"
    )
    fresh = [r for r in res["runs"] if r["mode"] == "fresh"]
    if fresh:
        print(
            "\n| consent pairs | restore (Highwater -> Recovery complete) | records/s "
            "| process start -> all 8 events processed | smsmon_recovering=1 (scrapes) "
            "| peak RSS | load 1 min (min-max) |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in fresh:
            g = r["recovering_gauge"]
            print(
                f"| {r['pairs']:,} | {fmt(r['restore_s'], 's', 1)} | {fmt(r['restore_rate'])} "
                f"| {r['blind_s']:.1f} s | {g.get('scrapes_reading_1')} of {g.get('scrapes')} "
                f"| {r['peak_rss_mib']:.0f} MiB | {r['load']['min']}-{r['load']['max']} |"
            )
    sb = [r for r in res["runs"] if r["mode"] == "standby"]
    if sb:
        print(
            "\n| standby replicas | worker 1 stopped by | worker 1 exited | stop -> all 8 "
            "events processed by worker 2 | restore on worker 2 | changelog records read "
            "| load 1 min |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in sb:
            print(
                f"| {r['standby_replicas']} | {r['stop'].upper()} | {r['worker1_exit_s']:.1f} s "
                f"| {r['takeover_s']:.1f} s "
                f"| {fmt(r['restore_s'], 's', 1)} | {fmt(r['records_to_read'])} "
                f"| {r['load']['min']}-{r['load']['max']} |"
            )
    cr = [r for r in res["runs"] if r["mode"] == "crash"]
    if cr:
        print(
            "\n| case | standby replicas | blind time, killed worker's partitions (max) "
            "| other partitions (max) | restore after the kill | changelog records read "
            "| same assignment | load 1 min |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in cr:
            for c in r["cases"]:
                print(
                    f"| {c['signal']} + {c['case'].removeprefix('term-')} "
                    f"| {r['standby_replicas']} "
                    f"| {fmt(c['blind_max_killed_partitions_s'], 's', 1)} "
                    f"| {fmt(c['blind_max_other_partitions_s'], 's', 1)} "
                    f"| {fmt(c['restore_s'], 's', 1)} | {fmt(c['records_to_read'])} "
                    f"| {c['same_assignment']} | {r['load']['min']}-{r['load']['max']} |"
                )
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.recovery",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
    )
    ap.add_argument("--mode", choices=("fresh", "standby", "both", "crash"), default="fresh")
    ap.add_argument("--pairs", type=int, default=1_000_000, help="consent entries (default 1M)")
    ap.add_argument("--partitions", type=int, default=8, help="SMSMON_PARTITIONS (default 8)")
    ap.add_argument(
        "--per-msisdn",
        type=int,
        default=1,
        help="enterprises per subscriber in the consent table (default 1)",
    )
    ap.add_argument(
        "--standby-replicas",
        default="1,0",
        help="standby mode: comma-separated TABLE_STANDBY_REPLICAS values (default 1,0)",
    )
    ap.add_argument(
        "--stop",
        choices=("term", "kill"),
        default="term",
        help="standby mode: how worker 1 is stopped (kill: the ~60 s session timeout counts)",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help="standby mode: seconds to wait after both workers are idle (default 10)",
    )
    ap.add_argument(
        "--cases",
        default="restart,takeover",
        help="crash mode: restart and/or takeover after a SIGKILL (term-restart, "
        "term-takeover: after a SIGTERM), a takeover last (default restart,takeover)",
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="crash mode: alerting events per second on each events partition (default 10)",
    )
    ap.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="crash mode: extra environment of both workers (repeatable), e.g. "
        "SMSMON_STATIC_MEMBERSHIP=false",
    )
    ap.add_argument("--label", default="", help="a note stored with the figures")
    ap.add_argument("--json", type=Path, help="write all figures here as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    args = ap.parse_args(argv)
    replicas = [int(x) for x in args.standby_replicas.split(",") if x.strip()]
    if "TABLE_STANDBY_REPLICAS" in os.environ:
        log("note: TABLE_STANDBY_REPLICAS in the environment is overridden per run")

    def on_term(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    procs = Processes()
    root = Path(tempfile.mkdtemp(prefix="smsmon-recovery-"))
    log(f"work dir {root}")
    res: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["python -m bench.recovery", *sys.argv[1:]]),
        "params": vars(args) | {"json": str(args.json) if args.json else None},
        "runs": [],
    }
    rc = 0
    broker = Broker(root / "kafka")
    try:
        log("starting the broker")
        broker.start()
        log(f"broker ready at {broker.bootstrap} (pid {broker.pid})")
        if args.mode in ("fresh", "both"):
            res["runs"].append(run_fresh(args, procs, root, broker, res))
        if args.mode in ("standby", "both"):
            for n in replicas:
                res["runs"].append(run_standby(args, procs, root, broker, n))
        if args.mode == "crash":
            for n in replicas:
                res["runs"].append(run_crash(args, procs, root, broker, n))
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
        broker.stop(check=False)
        if "partial" in res:  # a fresh restore cut short: how far it got, and how fast
            part = res["partial"]
            part["seconds_since_start"] = time.time() - part["t0"]
            with contextlib.suppress(OSError):
                part["faust_progress"] = restore_progress(Path(part["log"]))
            log(f"cut short: {part}")
        res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep or rc:
            log(f"kept {root} (logs)")
        else:
            shutil.rmtree(root, ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str) + "\n")
            log(f"wrote {args.json}")
    if res["runs"]:
        print_table(res)
    return rc


if __name__ == "__main__":
    sys.exit(main())
