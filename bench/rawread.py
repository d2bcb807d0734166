"""The raw ceiling's reads, in a process of their own: a plain aiokafka consumer (no group,
no processing, `getmany` of up to 10,000) reading a whole topic, several times.

`python -m bench.rawread --bootstrap HOST:PORT --topic T --partitions P --total N --runs R`
prints one JSON line: `{"runs": [events/s, ...]}`.

Why its own process: run inside the bench, the reads shared an interpreter with the bench's
simulation, its expected alerts (millions of live objects) and its alert collector's thread,
and one read of a run could be five times slower than another (69,624 and 403,507 events/s
in one bench, 2026-12-04; in their own process 307,569-429,402). Most likely the garbage
collections that the reads' 100,000 consumer records set off over that heap: a read beside
three million live objects in a test process had such slow reads now and then, one without
them none. A consumer application has no such heap; this process has only aiokafka's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def raw_read(bootstrap: str, topic: str, partitions: int, total: int) -> tuple[int, float]:
    """Read `total` records from the start of every partition; (records timed, seconds),
    timed from the first batch received (its records not counted) to the last."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        n, first_n = 0, 0
        t0 = t1 = 0.0
        deadline = time.monotonic() + 600
        while n < total and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=1000, max_records=10_000)
            got = sum(len(v) for v in batch.values())
            if got and not n:
                t0, first_n = time.perf_counter(), got
            n += got
            t1 = time.perf_counter()
        return n - first_n, t1 - t0
    finally:
        await c.stop()


def reads(bootstrap: str, topic: str, partitions: int, total: int, runs: int) -> list[float]:
    """events/s of `runs` reads, one consumer each."""
    out = []
    for _ in range(runs):
        n, secs = asyncio.run(raw_read(bootstrap, topic, partitions, total))
        out.append(n / secs if secs > 0 else 0.0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--total", type=int, required=True, help="records in the topic")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args(argv)
    rates = reads(a.bootstrap, a.topic, a.partitions, a.total, a.runs)
    print(json.dumps({"runs": rates}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
