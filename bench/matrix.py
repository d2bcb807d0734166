"""One worker on every traffic mix and gateway keying, in one run (issue 17).

Runs `python -m bench.throughput --no-two-workers --no-latency` once per (mix, keying), each
on its own broker with its own raw-consumer ceiling measured in that same run, and prints one
table: events/s, worker CPU-s per 10,000 records, the ratio to the raw ceiling, how many
records were re-keyed, and whether the one-worker alert set equalled the expected one (for
keying `none` only the order-dependent rules may differ, as the bench itself reports).

    python -m bench.matrix                               # light and heavy x java, librdkafka, none
    python -m bench.matrix --events 100000 --consent-pairs 200000 --json out.json
    python -m bench.matrix --mixes light --keyings java --repeat 3 -- --worker-env SMSMON_X=1

Arguments after `--` go to every bench.throughput run. Ratios are comparable within a run of
this tool on one machine; absolute rates are not comparable across machines
(docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.clients import KEYINGS
from bench.report import log, machine
from bench.traffic import MIXES


def one(
    mix: str, keying: str, events: int, pairs: int, extra: list[str], out: Path
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.throughput", "--no-two-workers", "--no-latency"]
    cmd += ["--mix", mix, "--keying", keying, "--events", str(events)]
    cmd += ["--consent-pairs", str(pairs), "--json", str(out), *extra]
    log(f"run: {' '.join(cmd[1:])}")
    rc = subprocess.call(cmd, stdout=subprocess.DEVNULL)
    d: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    ow = d.get("one_worker", {})
    raw = d.get("raw", {})
    # the best of the run's five reads, as bench.throughput's own ratio (since the reads run
    # in a process of their own, best and median differ by a third at most; until then this
    # took the median, which the bench's heap had halved: docs/performance.md)
    ceiling = raw.get("events_per_s") or 0.0
    corr = ow.get("correctness", {})
    row = {
        "mix": mix,
        "keying": keying,
        "rc": rc,
        "events_per_s": ow.get("rate"),
        "cpu_per_10k": ow.get("cpu_per_10k"),
        "raw_events_per_s": ceiling,
        "raw_median_events_per_s": raw.get("median_events_per_s"),
        "ratio": (ow["rate"] / ceiling) if ow.get("rate") and ceiling else None,
        "audit_events_per_s": d.get("offline", {}).get("events_per_s"),
        "rekeyed": ow.get("rekeyed"),
        "alerts_equal": corr.get("equal"),
        "order_dependent_only": corr.get("order_dependent_only"),
        "violating_event_share": d.get("data", {}).get("violating_event_share"),
        "expected_alerts": d.get("data", {}).get("expected_alerts"),
        "peak_rss_mib": ow.get("peak_rss_mib"),
        "error": d.get("error"),
        # bench.quiet before the timed phases: seconds waited, and whether it got quiet
        "quiet": d.get("quiet"),
    }
    log(
        f"{mix}/{keying}: {row['events_per_s'] or 0:,.0f} events/s, "
        f"{row['cpu_per_10k'] or 0:.2f} CPU-s/10k, ratio {row['ratio'] or 0:.4f}, "
        f"alerts equal {row['alerts_equal']} (rc {rc})"
    )
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| mix | keying | events/s | CPU-s / 10k | raw ceiling (best of 5) | ratio | re-keyed "
        "| alerts | offline audit path events/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["mix"], r["keying"]), []).append(r)
    for (mix, keying), rs in groups.items():
        ok = [r for r in rs if r["events_per_s"]]

        def med(key: str, rs: list[dict[str, Any]] = ok) -> float:
            vals = [r[key] for r in rs if r.get(key) is not None]
            return statistics.median(vals) if vals else 0.0

        verdict = (
            "equal"
            if all(r["alerts_equal"] for r in rs)
            else "order-dependent only"
            if all(r["alerts_equal"] or r["order_dependent_only"] for r in rs)
            else "DIFFERENT"
        )
        lines.append(
            f"| {mix} | {keying} | {med('events_per_s'):,.0f} | {med('cpu_per_10k'):.2f} | "
            f"{med('raw_events_per_s'):,.0f} | {med('ratio'):.4f} | "
            f"{med('rekeyed'):,.0f} | {verdict} ({len(rs)} run{'s' * (len(rs) > 1)}) | "
            f"{med('audit_events_per_s'):,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    ap = argparse.ArgumentParser(prog="python -m bench.matrix", description=__doc__.split("\n")[0])
    ap.add_argument("--mixes", default=",".join(MIXES), help="comma-separated (light,heavy)")
    ap.add_argument("--keyings", default=",".join(KEYINGS), help="comma-separated")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--consent-pairs", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per combination (interleaved)")
    ap.add_argument("--json", type=Path, help="write every run's row here")
    args = ap.parse_args(argv)
    mixes = [m for m in args.mixes.split(",") if m]
    keyings = [k for k in args.keyings.split(",") if k]
    for m in mixes:
        if m not in MIXES:
            ap.error(f"unknown mix {m!r}")
    for k in keyings:
        if k not in KEYINGS:
            ap.error(f"unknown keying {k!r}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="smsmon-matrix-") as tmp:
        for i in range(args.repeat):
            for mix in mixes:
                for keying in keyings:
                    out = Path(tmp) / f"{mix}-{keying}-{i}.json"
                    rows.append(one(mix, keying, args.events, args.consent_pairs, extra, out))
    print(table(rows))
    if args.json:
        doc = {"machine": machine(), "command": " ".join(["python -m bench.matrix", *sys.argv[1:]])}
        args.json.write_text(json.dumps(doc | {"runs": rows}, indent=2) + "\n")
        log(f"wrote {args.json}")
    failed = [
        r
        for r in rows
        if r["rc"] != 0
        or not (r["alerts_equal"] or (r["keying"] == "none" and r["order_dependent_only"]))
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
