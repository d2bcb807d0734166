"""What one Kafka transaction costs the worker, phase by phase, and what the producer's retry
backoff changes (docs/performance.md, "Issue 16: the cost of the transactions").

Two transactions in a row, as the worker commits them under load: a big one (a batch of
stage 1: 4,000 records over 44 partitions, input offsets of 8 partitions) and, right after
it, a small one (stage 2: 150 records over 16 partitions, offsets); 40 rounds, 50 ms apart.
Each retry backoff given is run in turn, interleaved, on the same broker. Prints the median
and the maximum of each phase (begin, send, send_offsets_to_transaction, produce acks,
commit) in milliseconds, and the total time in transactions.

    scripts/kafka-local.sh start --port 39092 --controller-port 39093 --dir /tmp/txn-kafka
    .venv/bin/python -m bench.transactions --bootstrap 127.0.0.1:39092 --backoff 100,10,100,10
    scripts/kafka-local.sh stop --dir /tmp/txn-kafka
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import time
import uuid
from collections import defaultdict

#: aiokafka's produce retries (under KIP-890's partition verification a produce that
#: reaches the leader before the partition joined the transaction gets NOT_ENOUGH_REPLICAS)
RETRIES: collections.Counter[str] = collections.Counter()


class _CountRetries(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            RETRIES[record.getMessage().rpartition("Error: ")[2]] += 1


PHASES = ("begin", "send", "offsets", "acks", "commit", "total")
#: (name, partitions, records) of the two transactions of a round
SHAPES = (("stage1", 44, 4000), ("stage2", 16, 150))


async def run(
    bootstrap: str, backoff_ms: int, rounds: int, prefix: str
) -> dict[str, list[tuple[float, ...]]]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.structs import TopicPartition

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"{prefix}-{backoff_ms}-{uuid.uuid4().hex[:6]}",
        acks="all",
        retry_backoff_ms=backoff_ms,
    )
    await producer.start()
    phases: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    offset = 0
    try:
        for _ in range(rounds):
            for name, parts, n in SHAPES:
                t0 = time.monotonic()
                await producer.begin_transaction()
                t1 = time.monotonic()
                futures = []
                for p in range(parts):
                    batch = producer.create_batch()
                    for _ in range(n // parts):
                        batch.append(key=None, value=b"x" * 200, timestamp=None)
                    futures.append(
                        await producer.send_batch(batch, f"{prefix}-{name}", partition=p)
                    )
                t2 = time.monotonic()
                offset += 10
                await producer.send_offsets_to_transaction(
                    {TopicPartition(f"{prefix}-in", p): offset for p in range(8)}, f"{prefix}-group"
                )
                t3 = time.monotonic()
                await asyncio.gather(*futures)
                t4 = time.monotonic()
                await producer.commit_transaction()
                t5 = time.monotonic()
                phases[name].append((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0))
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    return phases


async def create_topics(bootstrap: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [NewTopic(f"{prefix}-{name}", parts, 1) for name, parts, _ in SHAPES]
        await admin.create_topics([*topics, NewTopic(f"{prefix}-in", 8, 1)])
    finally:
        await admin.close()
    await asyncio.sleep(2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--backoff", default="100,10,100,10", help="retry_backoff_ms values, in turn")
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    prefix = f"txnbench-{uuid.uuid4().hex[:6]}"
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(_CountRetries())
    aiokafka_log.propagate = False
    asyncio.run(create_topics(args.bootstrap, prefix))
    for backoff in (int(b) for b in args.backoff.split(",")):
        RETRIES.clear()
        phases = asyncio.run(run(args.bootstrap, backoff, args.rounds, prefix))
        for name, rows in phases.items():
            cols = list(zip(*rows, strict=True))
            med = " ".join(f"{sorted(c)[len(c) // 2] * 1e3:.1f}" for c in cols)
            top = " ".join(f"{max(c) * 1e3:.0f}" for c in cols)
            print(
                f"backoff {backoff:>3} ms {name}: median {'/'.join(PHASES)} = {med} ms | "
                f"max {top} ms | in transactions {sum(cols[-1]):.2f} s"
            )
        print(f"backoff {backoff:>3} ms: produce retries {dict(RETRIES)}")


if __name__ == "__main__":
    main()
