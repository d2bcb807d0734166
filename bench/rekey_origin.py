"""The origin's cost per misplaced gateway event: the full decode it did before issue 17
(`decode_event`, then the msisdn's partition) against `route_event` (msisdn from the key, or
from the value without a key; the event time), over the bench's own simulated events (light
mix), interleaved, CPU time per event, best and median of 7 rounds. In process, no Kafka:

    python -m bench.rekey_origin
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
import zoneinfo
from collections.abc import Callable

from bench.traffic import SPAN_S, simulation, span_start, take_records
from smsmon.contract.canonical import partition_for
from smsmon.contract.codec import DecodeContext, decode_event, key_msisdn, route_event


def main() -> int:
    start = span_start(dt.datetime.now(dt.UTC))
    sim = simulation(6, start, SPAN_S, 3.0, 20_000, "light")
    records, _ = take_records(sim, 20_000)
    events = [(k, v) for kind, k, v in records if kind == "event"]
    ctx = DecodeContext(tz=zoneinfo.ZoneInfo("Asia/Shanghai"))

    def full_decode() -> None:
        for k, v in events:
            partition_for(decode_event(v, k, ctx).msisdn, 8)

    def route_keyed() -> None:
        for k, v in events:
            m = key_msisdn(k) if k is not None else None
            if m is not None:
                partition_for(m, 8)
                route_event(v, m, ctx)

    def route_unkeyed() -> None:
        for _, v in events:
            r = route_event(v, None, ctx)
            if r is not None:
                partition_for(r[0], 8)

    sides: dict[str, Callable[[], None]] = {
        "before: full decode": full_decode,
        "after: route, keyed": route_keyed,
        "after: route, no key": route_unkeyed,
    }
    per_event: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(7):
        for name, run in sides.items():
            t = time.process_time()
            run()
            per_event[name].append((time.process_time() - t) / len(events) * 1e6)
    print(f"{len(events):,} events, CPU time per event:")
    for name, v in per_event.items():
        print(f"  {name}: best {min(v):.2f} µs, median {statistics.median(v):.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
