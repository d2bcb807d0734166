"""The worker's batch logic alone, in process: CPU time per record of `Pipeline.process_batch`
and its transaction's bookkeeping (`Pipeline._commit`), without Kafka's clients, the broker
or stage 2.

The end-to-end bench (`bench.throughput`) moves 10-30 % between runs on a shared machine, more
than most single changes to the hot path are worth. This one drives the real Pipeline over the
crash tests' in-memory broker and transactional producer (`tests/unit/agents/crashkit.py`,
tables in real RocksDB) with the bench's own simulated traffic, and measures only the batches
of gateway events and complaints (the consent load before them is not timed):

    python -m bench.hotpath                       # light and heavy x java and librdkafka
    python -m bench.hotpath --mix heavy --keying librdkafka --profile hot.prof

What it leaves out: the aiokafka fetch and produce (about a third of a live worker's CPU,
docs/performance.md), Faust's consumer thread, and stage 2. Re-keyed records are read again
from the in-memory re-keying topic, so a librdkafka-keyed run pays the forward twice in
Python, as live. Per-message alerts and recipient floods are checked against the offline
audit path (`bench.traffic.offline_alerts`); a run with a difference exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from bench.traffic import (
    REPEAT_FRACTION,
    SPAN_S,
    calibrated_rate,
    offline_alerts,
    simulation,
    span_start,
    take_records,
    with_repeats,
)
from bench.traffic import partition_for as smsmon_partition
from smsmon.agents.worker import tune_gc
from smsmon.config.settings import Settings
from smsmon.streams import faust_compat
from tests.unit.agents import crashkit

PARTITIONS = 8
SUBSCRIBERS = 50_000
#: the rules of stage 1 (stage 2's rules are not run here)
STAGE2_RULES = frozenset({"volume.spike", "port.sublet", "complaint.rate"})


def place(key: bytes, keying: str, partitions: int) -> int:
    """The partition a gateway's producer picks for `key` (`--keying`, bench/clients.py)."""
    if keying == "java":
        return smsmon_partition(key.decode(), partitions)
    return (zlib.crc32(key) & 0xFFFFFFFF) % partitions  # librdkafka's consistent_random


def inputs_for(
    mix: str, keying: str, n: int, seed: int
) -> tuple[
    list[tuple[str, int, bytes | None, bytes]], list[tuple[str, bytes, bytes]], Any, list[Any]
]:
    """(input records, reference records, simulation, records) of one run."""
    start = span_start(crashkit.NOW)
    rate = calibrated_rate(seed, start, SPAN_S, n, SUBSCRIBERS, mix)
    sim = simulation(seed, start, SPAN_S, rate, SUBSCRIBERS, mix)
    records, _ = take_records(sim, n)
    records = with_repeats(records, REPEAT_FRACTION[mix], seed)
    s = crashkit.settings_for(Path("/nonexistent"))
    reference = [
        (s.topic_ports, k.encode(), json.dumps(v).encode()) for k, v in sim.reference.ports if v
    ] + [
        (s.topic_signatures, k.encode(), json.dumps(v).encode())
        for k, v in sim.reference.signatures
        if v
    ]
    inputs: list[tuple[str, int, bytes | None, bytes]] = [
        (
            s.topic_consent,
            smsmon_partition(v["msisdn"], PARTITIONS),
            k.encode(),
            json.dumps(v, ensure_ascii=False).encode(),
        )
        for k, v in sim.reference.consent
    ]
    for kind, key, value in records:
        topic = s.topic_complaints if kind == "complaint" else s.topic_events
        inputs.append((topic, place(key, keying, PARTITIONS), key, value))
    return inputs, reference, sim, records


async def _drive(
    root: Path, inputs: list[Any], reference: list[Any], batch_size: int, prof: Any
) -> tuple[float, int, crashkit.Outcome]:
    broker = crashkit.Broker()
    crashkit.load_inputs(broker, inputs)
    crasher = crashkit.Crasher([])
    worker = crashkit.Worker(broker, root, crasher, reference, crashkit.Broken())
    # one fake batch per partition and send, as aiokafka's (the crash tests use small ones)
    worker.producer = crashkit.FakeProducer(broker, crasher, crashkit.Broken(), 1 << 30)
    assert worker.pipeline.txn is not None
    worker.pipeline.txn._producer = worker.producer
    worker.pipeline.txn._watch = faust_compat.EndTxnWatch(worker.producer)
    consent_topic = worker.settings.topic_consent
    cpu = 0.0
    batches = 0
    timed = False
    while True:
        batch, ends = worker.next_batch(batch_size)
        if not batch:
            break
        # from the first batch past the consent load (the revocations the worker
        # publishes come back on the consent topic and are part of the work)
        timed = timed or any(e.message.topic != consent_topic for e in batch)
        t = time.process_time()
        if timed and prof is not None:
            prof.enable()
        if timed and _VG is not None:
            _VG.start()
        await worker.step(batch, ends)
        if timed and _VG is not None:
            _VG.stop()
        if timed and prof is not None:
            prof.disable()
        if timed:
            cpu += time.process_time() - t
            batches += 1
    worker.close()
    out = crashkit.outcome(broker, worker.settings, {}, [], batches, 0, 0)
    return cpu, batches, out


#: `--callgrind`: the instrumentation switch of callgrind (valgrind's client requests, in
#: a helper library compiled on first use), so that only the timed batches are counted
_VG: Any = None
_VG_SOURCE = """#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


def callgrind_switch() -> Any:
    """ctypes handle of start()/stop() around CALLGRIND_{START,STOP}_INSTRUMENTATION."""
    import ctypes
    import subprocess

    build = Path(tempfile.gettempdir()) / "smsmon-bench-vgctl"
    build.mkdir(exist_ok=True)
    lib = build / "vgctl.so"
    if not lib.exists():
        (build / "vgctl.c").write_text(_VG_SOURCE)
        subprocess.run(
            ["cc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(build / "vgctl.c")], check=True
        )
    return ctypes.CDLL(str(lib))


def run_once(
    inputs: list[Any], reference: list[Any], batch_size: int, prof: Any = None
) -> tuple[float, int, crashkit.Outcome]:
    before = gc.get_threshold()
    with tempfile.TemporaryDirectory(prefix="smsmon-hotpath-") as tmp, crashkit.frozen_clock():
        # the worker's collector settings (smsmon.agents.worker.tune_gc); the inputs and
        # the simulation, which a worker does not hold, are frozen out of collections
        gc.collect()
        gc.freeze()
        tune_gc(Settings().gc_threshold0)
        try:
            return asyncio.run(_drive(Path(tmp) / "w", inputs, reference, batch_size, prof))
        finally:
            gc.set_threshold(*before)
            gc.unfreeze()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mix", choices=("light", "heavy"), action="append")
    ap.add_argument("--keying", choices=("java", "librdkafka"), action="append")
    ap.add_argument("--events", type=int, default=40_000, help="simulated records per run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per case (best and median)")
    ap.add_argument("--batch", type=int, default=2_000, help="records per batch")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--profile", help="cProfile of the timed batches (last case) to this file")
    ap.add_argument("--json", help="the figures as JSON")
    ap.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions instead (run under `valgrind --tool=callgrind "
        "--instr-atstart=no`; needs cc and valgrind's headers): only the timed batches "
        "are instrumented, and callgrind's total is their instruction count",
    )
    args = ap.parse_args(argv)
    if args.callgrind:
        global _VG
        _VG = callgrind_switch()
    crashkit.PARTITIONS = PARTITIONS  # read at call time by settings_for and input_order
    cases = [
        (m, k)
        for m in args.mix or ["light", "heavy"]
        for k in args.keying or ["java", "librdkafka"]
    ]
    results: list[dict[str, Any]] = []
    ok = True
    for mix, keying in cases:
        inputs, reference, sim, records = inputs_for(mix, keying, args.events, args.seed)
        expected = {
            a.alert_id
            for a in offline_alerts(sim, records, secret="crash-test-secret")
            if a.rule not in STAGE2_RULES
        }
        n = len(records)
        per: list[float] = []
        got: set[str] = set()
        equal = True
        for r in range(args.rounds):
            prof = cProfile.Profile() if args.profile and r == args.rounds - 1 else None
            cpu, batches, out = run_once(inputs, reference, args.batch, prof)
            per.append(cpu / n * 1e6)
            got = set(out.alerts)
            equal &= got == expected  # every round, not only the last
            if prof is not None:
                prof.dump_stats(args.profile)
        ok &= equal
        row = {
            "mix": mix,
            "keying": keying,
            "records": n,
            "batches": batches,
            "us_per_record_best": round(min(per), 2),
            "us_per_record_median": round(statistics.median(per), 2),
            "alerts": len(got),
            "expected": len(expected),
            "equal": equal,
        }
        results.append(row)
        print(
            f"{mix:5s} {keying:10s} {n:7,d} records  CPU per record: best {min(per):6.2f} µs,"
            f" median {statistics.median(per):6.2f} µs  alerts {len(got):,}"
            f" {'= expected' if equal else f'!= expected {len(expected):,}'}",
            f" ({batches} batches timed)",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
