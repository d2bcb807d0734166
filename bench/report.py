"""What the benchmarks print and record: progress lines, the machine, the summary table."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "commit": commit,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(v: Any, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        s = f"{v:,.{digits}f}"
    elif isinstance(v, int):
        s = f"{v:,}"
    else:
        s = str(v)
    return f"{s} {unit}".strip()


def print_summary(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = res["machine"]
    t = Table(
        title=f"smsmon throughput ({res['params']['events']:,} events, "
        f"{res['params']['consent_pairs']:,} consent pairs, "
        f"{res['params']['partitions']} partitions) - {m['nproc']} x {m['cpu_model']}, "
        f"{m['ram_gib']} GiB, commit {m['commit']}",
        show_lines=False,
    )
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target (issue 6)")
    raw = res.get("raw", {}).get("events_per_s")
    one = res.get("one_worker", {})
    two = res.get("two_workers", {})
    lat = res.get("latency", {})
    corr1 = one.get("correctness", {})
    t.add_row("(1) raw ceiling, aiokafka, no processing", fmt(raw, "ev/s"), "best of 5")
    t.add_row("    median of the 5 reads", fmt(res.get("raw", {}).get("median_events_per_s"),
              "ev/s"), "")  # fmt: skip
    t.add_row("(2) end to end, one worker", fmt(one.get("rate"), "ev/s"), ">= 10,000 ev/s")
    if raw and one.get("rate"):
        t.add_row("    ratio (2)/(1)", f"{one['rate'] / raw:.3f}", "")
    t.add_row(
        "    alerts live = expected",
        f"{corr1.get('equal')} ({corr1.get('live')} / {corr1.get('expected')})",
        "must be True",
    )
    t.add_row(
        "    consent load (worker start -> all pairs)", fmt(one.get("consent_load_s"), "s", 1), ""
    )
    t.add_row("    consent load rate", fmt(one.get("consent_rate"), "pairs/s"), "")
    t.add_row(
        "    offline audit path, same records (in process, no Kafka)",
        fmt(res.get("offline", {}).get("events_per_s"), "ev/s"),
        "",
    )
    t.add_row("(3) offered load (half of (2))", fmt(lat.get("offered_rate"), "ev/s"), "")
    t.add_row(
        "    latency p50 / p99, worker histogram",
        f"{fmt(lat.get('hist_p50_s'), 's', 3)} / {fmt(lat.get('hist_p99_s'), 's', 3)}",
        "p99 < 1 s",
    )
    t.add_row(
        "    latency p50 / p99, produce -> alert",
        f"{fmt(lat.get('e2e_p50_s'), 's', 3)} / {fmt(lat.get('e2e_p99_s'), 's', 3)}",
        "p99 < 1 s",
    )
    t.add_row(
        "      produce -> batch start | batch start -> alert read, p99",
        f"{fmt(lat.get('to_batch_p99_s'), 's', 3)} | {fmt(lat.get('batch_to_read_p99_s'), 's', 3)}",
        "",
    )
    t.add_row("(4) worker CPU-s per 10k events, 1 worker", fmt(one.get("cpu_per_10k"), "s", 2), "")
    t.add_row(
        "    worker CPU-s per 10k events, 2 workers",
        fmt(two.get("cpu_per_10k"), "s", 2),
        "within 15% of 1 worker",
    )
    if two.get("cpu_per_10k") and one.get("cpu_per_10k"):
        t.add_row(
            "    ratio 2 workers / 1 worker",
            f"{two['cpu_per_10k'] / one['cpu_per_10k']:.2f}",
            "<= 1.15",
        )
    t.add_row("    end to end, two workers", fmt(two.get("rate"), "ev/s"), "")
    if two:
        c2 = two.get("correctness", {})
        t.add_row(
            "    alerts live = expected (2 workers)",
            f"{c2.get('equal')} ({c2.get('live')} / {c2.get('expected')})",
            "",
        )
        t.add_row(
            "    consent pairs loaded (2 workers)",
            f"{two.get('consent_loaded', 0):,.0f} of {res['params']['consent_pairs']:,}",
            "",
        )
    t.add_row(
        "    broker CPU-s per 10k events (1 worker run)",
        fmt(one.get("broker_cpu_per_10k"), "s", 2),
        "reported separately",
    )
    t.add_row(
        "    load generator CPU-s per 10k (1 worker run)",
        fmt(one.get("loadgen_cpu_per_10k"), "s", 2),
        "reported separately",
    )
    t.add_row(
        "(5) peak RSS (VmHWM), one worker",
        fmt(one.get("peak_rss_mib"), "MiB"),
        "< 1.5 GiB at 10M pairs",
    )
    Console(width=120).print(t)
    for label, r in (("one worker", one), ("two workers", two)):
        if r.get("stalled"):
            print(f"COMMITS STALLED ({label}): uncommitted {r.get('uncommitted')}")
        if r.get("consent_missing"):
            print(f"CONSENT PAIRS MISSING ({label}): {r['consent_missing']:,.0f}")
        if r.get("consent_uncommitted"):
            print(f"consent offsets not committed ({label}): {r['consent_uncommitted']}")
    for label, c in (("one worker", corr1), ("two workers", two.get("correctness") or {})):
        if c and not c.get("equal"):
            print(
                f"ALERTS DIFFER ({label}): {c['missing_count']} missing, {c['extra_count']} extra"
            )
            for line in c["missing"]:
                print(f"  missing: {line}")
            for line in c["extra"]:
                print(f"  extra:   {line}")
    prof = res.get("profile")
    if prof:
        print(
            f"\nprofile of the worker during the full-rate phase ({prof['samples']} samples, "
            f"{prof['seconds']} s at {prof['rate_hz']:.0f} Hz; % of wall time, inclusive):"
        )
        for g in prof["groups"]:
            print(f"  {g['pct']:5.1f}%  {g['group']}")
        print("top frames, inclusive:")
        for name, v in prof["top_inclusive"][:25]:
            print(f"  {v:5.1f}%  {name}")
        print("top frames, self:")
        for name, v in prof["top_self"][:15]:
            print(f"  {v:5.1f}%  {name}")
